//! Roots, inclusion proofs and consistency proofs over stored hashes (RFC 9162 §2.1.3,
//! §2.1.4), and their verifiers.

use super::*;

/// The RFC 6962 root hash of the first `size` records (the Merkle Tree Hash `MTH(D[0:size])`).
/// Reads at most `log2(size) + 1` stored hashes, in one call.
pub fn tree_hash(size: u64, r: &impl HashReader) -> Result<Hash, TlogError> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_TREE_HASH);
    }
    let mut indexes = Vec::with_capacity(64);
    push_subtree_indexes(0, size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    Ok(fold_right(&hashes))
}

/// The RFC 9162 §2.1.3.1 inclusion proof (audit path) of record `index` in the tree of the
/// first `size` records, leaf side first. Reads `O(log size)` stored hashes, in one call.
pub fn prove_inclusion(size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    check_size(size)?;
    if index >= size {
        return Err(TlogError::IndexOutOfRange { index, size });
    }
    // Walk from the root to the leaf; at each split the sibling range joins the path.
    let mut siblings = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let mid = lo + largest_power_of_two_below(hi - lo);
        if index < mid {
            siblings.push((mid, hi));
            hi = mid;
        } else {
            siblings.push((lo, mid));
            lo = mid;
        }
    }
    // The path lists the deepest sibling first.
    siblings.reverse();
    hash_ranges(&siblings, r)
}

/// Checks an RFC 9162 inclusion proof (§2.1.3.2): that `leaf` is the leaf hash of record
/// `index` in the tree of `size` records whose root is `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    index: u64,
    root: &Hash,
    leaf: &Hash,
) -> Result<(), TlogError> {
    if index >= size {
        return Err(TlogError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(TlogError::InvalidProof("inclusion proof too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(TlogError::InvalidProof("inclusion proof too short"));
    }
    if r != *root {
        return Err(TlogError::InvalidProof("root hash mismatch"));
    }
    Ok(())
}

/// The RFC 9162 §2.1.4.1 consistency proof between the tree of the first `old_size` records
/// and the tree of the first `new_size`. Empty when `old_size` is 0 or equals `new_size`.
/// Reads `O(log new_size)` stored hashes, in one call.
pub fn prove_consistency(
    new_size: u64,
    old_size: u64,
    r: &impl HashReader,
) -> Result<Vec<Hash>, TlogError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: `tail` collects the hashes appended after each
    // recursive call, in descent order; `head` is the result of the innermost call.
    let mut tail = Vec::with_capacity(64);
    let mut head = None;
    let (mut lo, mut hi, mut m, mut complete) = (0u64, new_size, old_size, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                head = Some((lo, hi));
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            tail.push((lo + k, hi));
            hi = lo + k;
        } else {
            tail.push((lo, lo + k));
            lo += k;
            m -= k;
            complete = false;
        }
    }
    let mut ranges = Vec::with_capacity(tail.len() + 1);
    ranges.extend(head);
    ranges.extend(tail.iter().rev());
    hash_ranges(&ranges, r)
}

/// Checks an RFC 9162 consistency proof (§2.1.4.2): that the tree of `old_size` records with
/// root `old_root` is a prefix of the tree of `new_size` records with root `new_root`.
///
/// Equal sizes need an empty proof and equal roots; an old size of 0 needs an empty proof and
/// `old_root` = [`EMPTY_TREE_HASH`].
pub fn verify_consistency(
    proof: &[Hash],
    new_size: u64,
    old_size: u64,
    new_root: &Hash,
    old_root: &Hash,
) -> Result<(), TlogError> {
    if old_size > new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(TlogError::InvalidProof(
                "proof between equal sizes must be empty",
            ));
        }
        if new_root != old_root {
            return Err(TlogError::InvalidProof("equal sizes with different roots"));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(TlogError::InvalidProof(
                "proof from the empty tree must be empty",
            ));
        }
        if *old_root != EMPTY_TREE_HASH {
            return Err(TlogError::InvalidProof(
                "old root is not the empty-tree hash",
            ));
        }
        return Ok(());
    }
    // When the old tree is a complete subtree, its root is the proof's implicit first node.
    let (fr, sr) = if old_size.is_power_of_two() {
        roots_from_nodes(old_root, proof, new_size, old_size)?
    } else {
        consistency_proof_roots(proof, new_size, old_size)?
    };
    if fr != *old_root {
        return Err(TlogError::InvalidProof("old root hash mismatch"));
    }
    if sr != *new_root {
        return Err(TlogError::InvalidProof("new root hash mismatch"));
    }
    Ok(())
}

/// The two roots an RFC 9162 consistency proof from `old_size` to `new_size` leads to,
/// computed from the proof alone (§2.1.4.2 without the final comparisons): `(old root, new
/// root)`.
///
/// Only for `0 < old_size < new_size` with `old_size` not a power of two: otherwise the
/// proof does not carry the old tree (it is empty, or the old root is its implicit first
/// node) and this refuses. When the new root it gives is a checkpoint's root, the proof's
/// nodes are that tree's own (anything else would be a SHA-256 collision), so the old
/// root it gives is the root of that tree's first `old_size` records: a checkpoint of
/// `old_size` with another root cannot be a prefix of it.
pub fn consistency_proof_roots(
    proof: &[Hash],
    new_size: u64,
    old_size: u64,
) -> Result<(Hash, Hash), TlogError> {
    if old_size >= new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size.is_power_of_two() {
        return Err(TlogError::InvalidProof(
            "the proof does not carry the old tree's root",
        ));
    }
    match proof.split_first() {
        Some((first, rest)) => roots_from_nodes(first, rest, new_size, old_size),
        None => Err(TlogError::InvalidProof("consistency proof is empty")),
    }
}

/// §2.1.4.2 steps 3 to 6: the old and new roots from the first node and the rest of the
/// proof (`0 < old_size < new_size`).
fn roots_from_nodes(
    first: &Hash,
    rest: &[Hash],
    new_size: u64,
    old_size: u64,
) -> Result<(Hash, Hash), TlogError> {
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(TlogError::InvalidProof("consistency proof too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(TlogError::InvalidProof("consistency proof too short"));
    }
    Ok((fr, sr))
}

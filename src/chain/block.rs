//! Block headers: what the appliance seals every `seal_interval`, signs in the HSM and
//! time-stamps with its own TSA.
//!
//! Header bytes (all integers big-endian), the exact bytes that are signed and hashed:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 0x01 |
//! | 8 | height (the first block is 0) |
//! | 32 | previous header hash (zeros for block 0) |
//! | 8 | tree size after this block |
//! | 32 | RFC 6962 root hash of that tree |
//! | 8 | index of the block's first event |
//! | 8 | number of events in the block |
//! | 8 | sealed_at, Unix milliseconds |
//! | 32 | key id: SHA-256 of the signing key's DER SubjectPublicKeyInfo |
//!
//! header hash = SHA-256(header bytes). A sealed block is stored as the header bytes, the
//! Ed25519 signature over them, and the DER RFC 3161 token whose imprint is the header
//! hash (SHA-256), each as u32-BE length + bytes.

use sha2::{Digest, Sha256};

use super::tlog::Hash;

/// Header encoding version.
pub const HEADER_VERSION: u8 = 1;
/// Length of an encoded header.
pub const HEADER_LEN: usize = 1 + 8 + 32 + 8 + 32 + 8 + 8 + 8 + 32;

/// What can go wrong decoding a block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// The bytes are not a block of this format.
    #[error("malformed block: {0}")]
    Malformed(&'static str),
}

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Height: 0 for the first block.
    pub height: u64,
    /// Hash of the previous header (zeros for block 0).
    pub prev_hash: Hash,
    /// Tree size after this block.
    pub tree_size: u64,
    /// RFC 6962 root of that tree.
    pub root: Hash,
    /// Index of the first event in this block.
    pub first_index: u64,
    /// Events in this block.
    pub event_count: u64,
    /// When the block was sealed (Unix ms): its token's genTime, never earlier than the
    /// previous block's.
    pub sealed_at_ms: u64,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo.
    pub key_id: Hash,
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], BlockError> {
    if b.len() < n {
        return Err(BlockError::Malformed("truncated"));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn take_u64(b: &mut &[u8]) -> Result<u64, BlockError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(b, 8)?);
    Ok(u64::from_be_bytes(a))
}

fn take_hash(b: &mut &[u8]) -> Result<Hash, BlockError> {
    let mut a = [0u8; 32];
    a.copy_from_slice(take(b, 32)?);
    Ok(a)
}

impl BlockHeader {
    /// The canonical header bytes (signed and hashed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.push(HEADER_VERSION);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.first_index.to_be_bytes());
        out.extend_from_slice(&self.event_count.to_be_bytes());
        out.extend_from_slice(&self.sealed_at_ms.to_be_bytes());
        out.extend_from_slice(&self.key_id);
        out
    }

    /// Decodes header bytes; refuses any other length or version.
    pub fn decode(mut b: &[u8]) -> Result<BlockHeader, BlockError> {
        if b.len() != HEADER_LEN {
            return Err(BlockError::Malformed("a header is exactly 137 bytes"));
        }
        if take(&mut b, 1)? != [HEADER_VERSION] {
            return Err(BlockError::Malformed("unknown header version"));
        }
        Ok(BlockHeader {
            height: take_u64(&mut b)?,
            prev_hash: take_hash(&mut b)?,
            tree_size: take_u64(&mut b)?,
            root: take_hash(&mut b)?,
            first_index: take_u64(&mut b)?,
            event_count: take_u64(&mut b)?,
            sealed_at_ms: take_u64(&mut b)?,
            key_id: take_hash(&mut b)?,
        })
    }

    /// SHA-256 of the header bytes.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.encode()).into()
    }
}

/// A header with its HSM signature and its time-stamp token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlock {
    /// The header.
    pub header: BlockHeader,
    /// Ed25519 signature over the header bytes.
    pub signature: Vec<u8>,
    /// DER RFC 3161 TimeStampToken over the header hash.
    pub token: Vec<u8>,
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

fn get<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], BlockError> {
    let mut l = [0u8; 4];
    l.copy_from_slice(take(b, 4)?);
    let len =
        usize::try_from(u32::from_be_bytes(l)).map_err(|_| BlockError::Malformed("length"))?;
    take(b, len)
}

impl SealedBlock {
    /// The stored form: header, signature and token, each length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, &self.header.encode());
        put(&mut out, &self.signature);
        put(&mut out, &self.token);
        out
    }

    /// Decodes the stored form; refuses trailing bytes.
    pub fn decode(mut b: &[u8]) -> Result<SealedBlock, BlockError> {
        let header = BlockHeader::decode(get(&mut b)?)?;
        let signature = get(&mut b)?.to_vec();
        let token = get(&mut b)?.to_vec();
        if !b.is_empty() {
            return Err(BlockError::Malformed("trailing bytes"));
        }
        Ok(SealedBlock {
            header,
            signature,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn headers_and_blocks_round_trip(h in any::<u64>(), s in any::<u64>(), f in any::<u64>(), c in any::<u64>(), t in any::<u64>(),
                                         p in any::<[u8; 32]>(), r in any::<[u8; 32]>(), k in any::<[u8; 32]>(),
                                         sig in proptest::collection::vec(any::<u8>(), 0..80), tok in proptest::collection::vec(any::<u8>(), 0..300)) {
            let header = BlockHeader { height: h, prev_hash: p, tree_size: s, root: r, first_index: f, event_count: c, sealed_at_ms: t, key_id: k };
            let bytes = header.encode();
            prop_assert_eq!(bytes.len(), HEADER_LEN);
            prop_assert_eq!(&BlockHeader::decode(&bytes).unwrap(), &header);
            let block = SealedBlock { header, signature: sig, token: tok };
            let enc = block.encode();
            prop_assert_eq!(&SealedBlock::decode(&enc).unwrap(), &block);
            let mut longer = enc.clone();
            longer.push(0);
            prop_assert!(SealedBlock::decode(&longer).is_err());
            prop_assert!(SealedBlock::decode(&enc[..enc.len() - 1]).is_err());
        }
    }
}

//! The witness store's tests, on its sled engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::chain::store::reopen_in_process;
use crate::witness::store::*;

fn state(size: u64, root: u8) -> LogState {
    LogState {
        size,
        root: [root; 32],
        cosigned_at: 1_700_000_000 + size,
        checkpoint: format!("log\n{size}\nroot{root}\n\n\u{2014} log AAAA\n"),
    }
}

fn evidence(kind: EvidenceKind, n: u64) -> Evidence {
    Evidence {
        kind,
        seen_at: 1_700_000_000 + n,
        cosigned_size: n,
        cosigned: format!("cosigned {n:08}"),
        size: n + 1,
        submitted: format!("submitted {n:08}"),
        old_size: n,
        proof: (0..(n % 4)).map(|i| [i as u8; 32]).collect(),
    }
}

fn legacy(kind: LegacyAlertKind, n: u64) -> LegacyAlert {
    LegacyAlert {
        kind,
        at: n,
        old_size: n,
        size: n + 1,
        recorded_size: n.is_multiple_of(2).then_some(n),
        submitted: format!("submitted {n:08}"),
        recorded: n.is_multiple_of(3).then(|| format!("recorded {n:08}")),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

fn origins(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("log-{i}.example/chain")).collect()
}

#[test]
fn records_encode_and_decode_strictly() {
    let s = state(42, 7);
    assert_eq!(LogState::decode(&s.encode()).unwrap(), s);
    let enc = s.encode();
    for cut in 0..enc.len() {
        assert!(LogState::decode(&enc[..cut]).is_err(), "{cut}");
    }
    let mut long = enc.clone();
    long.push(0);
    assert!(LogState::decode(&long).is_err());
    let mut v2 = enc;
    v2[0] = 2;
    assert!(LogState::decode(&v2).is_err());

    for (i, kind) in EvidenceKind::ALL.into_iter().enumerate() {
        let e = evidence(kind, 3 + i as u64);
        let enc = e.encode();
        assert_eq!(Evidence::decode(&enc).unwrap(), e);
        for cut in 0..enc.len() {
            assert!(Evidence::decode(&enc[..cut]).is_err(), "{cut}");
        }
        let mut bad_kind = enc.clone();
        bad_kind[1] = 3;
        assert!(Evidence::decode(&bad_kind).is_err());
    }
    // The id is the two notes: not the kind, the time, the sizes or the proof.
    let a = evidence(EvidenceKind::Fork, 4);
    let mut b = a.clone();
    (b.kind, b.seen_at, b.old_size, b.proof) = (EvidenceKind::BadProof, 9, 0, vec![]);
    assert_eq!(a.id(), b.id());
    b.submitted.push('x');
    assert_ne!(a.id(), b.id());
    // The notes are length-prefixed: moving bytes from one to the other changes the id.
    let mut c = a.clone();
    c.cosigned.push('s');
    c.submitted.remove(0);
    assert_ne!(a.id(), c.id());

    let mut old = LegacyAlerts::default();
    for n in 0..5 {
        old.counts[n as usize % 4] += 1;
        old.recent
            .push(legacy(LegacyAlertKind::ALL[n as usize % 4], n));
    }
    assert_eq!(LegacyAlerts::decode(&old.encode()).unwrap(), old);
    let enc = old.encode();
    for cut in 0..enc.len() {
        assert!(LegacyAlerts::decode(&enc[..cut]).is_err(), "{cut}");
    }
}

/// The record bytes kept by the committer are those a recount finds, after states
/// replaced past the history's length (history records written and removed), evidence
/// added, and a reopen; concurrent replaces share commits.
#[test]
fn record_bytes_are_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let o = origins(3);
    let recount =
        |w: &SledWitnessStore| count_record_bytes(&w.shared.tree, &w.shared.evidence).unwrap();
    {
        let store = reopen_in_process(dir.path());
        let w = SledWitnessStore::open(&store, &o).unwrap();
        assert_eq!(w.record_bytes(), 0);
        let mut previous = None;
        // Sizes with more digits as they go: the values' lengths change.
        for (i, size) in [1u64, 9, 10, 99, 100, 1000, 10_000, 100_000]
            .into_iter()
            .enumerate()
        {
            let next = state(size, i as u8);
            let r = rt
                .block_on(w.replace(&o[0], previous, next.clone()))
                .unwrap();
            assert_eq!(r, Outcome::Stored);
            previous = Some((next.size, next.root));
            assert_eq!(w.record_bytes(), recount(&w), "after size {size}");
        }
        rt.block_on(async {
            let tasks: Vec<_> = (1..=20u64)
                .map(|n| {
                    let (w, o) = (w.clone(), o[1].clone());
                    tokio::spawn(async move {
                        // Each against "nothing": one is stored, the rest moved.
                        w.replace(&o, None, state(n, n as u8)).await.unwrap()
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        for n in 0..3 {
            let r = rt
                .block_on(w.record_evidence(&o[2], evidence(EvidenceKind::Rollback, n)))
                .unwrap();
            assert_eq!(r, EvidenceOutcome::Stored);
        }
        assert_eq!(w.record_bytes(), recount(&w));
    }
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o[1..]).unwrap();
    let before = w.record_bytes();
    assert_eq!(
        before,
        recount(&w),
        "unregistered origins' records count too"
    );
    let r = rt.block_on(w.replace(&o[2], None, state(3, 3))).unwrap();
    assert_eq!(r, Outcome::Stored);
    assert!(w.record_bytes() > before);
    assert_eq!(w.record_bytes(), recount(&w));
}

#[test]
fn replace_is_a_compare_and_swap_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let o = origins(2);
    {
        let store = reopen_in_process(dir.path());
        let w = SledWitnessStore::open(&store, &o).unwrap();
        assert_eq!(w.latest(&o[0]).unwrap(), None);
        assert!(matches!(
            w.latest("other"),
            Err(WitnessStoreError::UnknownOrigin(_))
        ));
        let r = rt.block_on(w.replace(&o[0], None, state(5, 1))).unwrap();
        assert_eq!(r, Outcome::Stored);
        // Checked against "nothing" again: moved, with the current state.
        let r = rt.block_on(w.replace(&o[0], None, state(6, 2))).unwrap();
        assert_eq!(r, Outcome::Moved(Some(state(5, 1))));
        // Against the right size but another root: moved.
        let r = rt
            .block_on(w.replace(&o[0], Some((5, [9; 32])), state(6, 2)))
            .unwrap();
        assert!(matches!(r, Outcome::Moved(_)));
        let r = rt
            .block_on(w.replace(&o[0], Some((5, [1; 32])), state(9, 3)))
            .unwrap();
        assert_eq!(r, Outcome::Stored);
        let r = rt
            .block_on(w.record_evidence(&o[1], evidence(EvidenceKind::Rollback, 3)))
            .unwrap();
        assert_eq!(r, EvidenceOutcome::Stored);
        assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
        assert!(w.record_bytes() > 0);
        w.health().unwrap();
    }
    // Another registration: o[1] still there, o[0] kept on disk but not loaded.
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o[1..]).unwrap();
    assert_eq!(w.unregistered(), 1);
    let rec = w.record(&o[1]).unwrap();
    assert_eq!(rec.state, None);
    assert_eq!(rec.evidence.count(EvidenceKind::Rollback), 1);
    assert_eq!(w.all_evidence().unwrap().len(), 1);
    drop(w);
    drop(store);
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o).unwrap();
    assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
    assert_eq!(w.cosigned(&o[0], 5).unwrap(), Some(state(5, 1)));
    assert_eq!(w.unregistered(), 0);
}

/// The latest state and the `HISTORY` before it are kept, on disk and in memory; a
/// checkpoint cosigned again at the same size does not enter the history twice.
#[test]
fn the_history_keeps_the_last_cosigned_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let o = origins(2);
    let mut expected = None;
    {
        let store = reopen_in_process(dir.path());
        let w = SledWitnessStore::open(&store, &o).unwrap();
        for size in 1..=(HISTORY as u64 + 5) {
            let new = state(size * 10, size as u8);
            let r = rt
                .block_on(w.replace(&o[0], expected, new.clone()))
                .unwrap();
            assert_eq!(r, Outcome::Stored);
            expected = Some((new.size, new.root));
        }
        // The same checkpoint cosigned again (a later time): the state is replaced,
        // the history unchanged.
        let mut again = w.latest(&o[0]).unwrap().unwrap();
        again.cosigned_at += 5;
        let before = w.record(&o[0]).unwrap().history;
        let r = rt
            .block_on(w.replace(&o[0], expected, again.clone()))
            .unwrap();
        assert_eq!(r, Outcome::Stored);
        let rec = w.record(&o[0]).unwrap();
        assert_eq!((rec.state, &rec.history), (Some(again), &before));
        let sizes: Vec<u64> = rec.history.iter().map(|s| s.size).collect();
        let want: Vec<u64> = (5..=(HISTORY as u64 + 4)).map(|s| s * 10).collect();
        assert_eq!(sizes, want);
        assert_eq!(w.cosigned(&o[0], 50).unwrap(), Some(state(50, 5)));
        assert_eq!(w.cosigned(&o[0], 40).unwrap(), None);
        assert_eq!(w.cosigned(&o[1], 50).unwrap(), None);
    }
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o).unwrap();
    let rec = w.record(&o[0]).unwrap();
    assert_eq!(rec.history.len(), HISTORY);
    assert_eq!(rec.history[0], state(50, 5));
    // On disk: exactly the kept ones (the older were removed).
    let on_disk = store.tree(TREE).unwrap().scan_prefix([COSIGNED]).count();
    assert_eq!(on_disk, HISTORY);
}

/// A real checkpoint note of `origin`, signed under `name`, with `extensions`.
fn signed(origin: &str, name: &str, size: u64, extensions: &[&str]) -> LogState {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let root = [size as u8; 32];
    let text = Checkpoint {
        origin: origin.into(),
        size,
        root,
        extensions: extensions.iter().map(|e| e.to_string()).collect(),
    }
    .body();
    let signature = key.sign(text.as_bytes()).to_bytes().to_vec();
    let checkpoint = SignedNote {
        text,
        signatures: vec![NoteSignature {
            name: name.into(),
            id: [1, 2, 3, 4],
            signature,
        }],
    }
    .format();
    LogState {
        size,
        root,
        cosigned_at: 1_700_000_000,
        checkpoint,
    }
}

/// Earlier checkpoints are stored in the compact form when it rebuilds them byte for
/// byte, else in full; both read back exactly.
#[test]
fn earlier_checkpoints_are_stored_compactly_and_read_back_exactly() {
    let origin = "log-0.example/chain";
    for (st, compact_form) in [
        (signed(origin, origin, 1234, &[]), true),
        (signed(origin, origin, 0, &["ext one", "ext two"]), true),
        (signed(origin, "another-name.example", 99, &[]), true),
        // Not this origin's, or not a note: kept whole.
        (signed("other.example/x", "other.example/x", 5, &[]), false),
        (state(5, 1), false),
    ] {
        let enc = encode_cosigned(&st, origin);
        assert_eq!(enc[0] == COMPACT, compact_form, "{st:?}");
        assert_eq!(decode_cosigned(&enc, origin).unwrap(), st);
        if compact_form {
            assert!(enc.len() < st.encode().len() - 60, "{} bytes", enc.len());
            for cut in 0..enc.len() {
                assert!(decode_cosigned(&enc[..cut], origin).is_err(), "{cut}");
            }
        }
    }
    let mut two = SignedNote::parse(&signed(origin, origin, 7, &[]).checkpoint).unwrap();
    two.signatures.push(two.signatures[0].clone());
    let st = LogState {
        checkpoint: two.format(),
        ..signed(origin, origin, 7, &[])
    };
    assert_eq!(encode_cosigned(&st, origin)[0], VERSION);
}

/// Evidence is written once however often it comes, never evicted, survives a restart,
/// and stops being stored (only counted) at the cap.
#[test]
fn evidence_is_kept_once_and_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let o = origins(2);
    let first = evidence(EvidenceKind::Fork, 1);
    {
        let store = reopen_in_process(dir.path());
        let w = SledWitnessStore::open(&store, &o).unwrap();
        let r = rt
            .block_on(w.record_evidence(&o[0], first.clone()))
            .unwrap();
        assert_eq!(r, EvidenceOutcome::Stored);
        let bytes = w.record_bytes();
        // The same again, also concurrently: nothing more written.
        let outcomes: Vec<EvidenceOutcome> = rt.block_on(async {
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let (w, o) = (w.clone(), o[0].clone());
                    let mut e = first.clone();
                    e.seen_at += i;
                    tokio::spawn(async move { w.record_evidence(&o, e).await.unwrap() })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert!(outcomes.iter().all(|r| *r == EvidenceOutcome::AlreadyKept));
        assert_eq!(w.record_bytes(), bytes);
        // Two new ones at once in one batch: each once.
        let second = evidence(EvidenceKind::BadProof, 2);
        let (a, b) = rt.block_on(async {
            tokio::join!(
                w.record_evidence(&o[0], second.clone()),
                w.record_evidence(&o[0], second.clone())
            )
        });
        let mut ab = [a.unwrap(), b.unwrap()];
        ab.sort_by_key(|r| *r == EvidenceOutcome::Stored);
        assert_eq!(ab, [EvidenceOutcome::AlreadyKept, EvidenceOutcome::Stored]);
        assert_eq!(w.evidence(&o[0]).unwrap(), vec![first.clone(), second]);
        assert_eq!(w.evidence(&o[1]).unwrap(), vec![]);
        // Up to the cap; then counted, not kept: the first ones stay.
        for n in 3..(MAX_EVIDENCE_PER_LOG as u64 + 10) {
            let r = rt
                .block_on(w.record_evidence(&o[0], evidence(EvidenceKind::Rollback, n)))
                .unwrap();
            let want = if n <= MAX_EVIDENCE_PER_LOG as u64 {
                EvidenceOutcome::Stored
            } else {
                EvidenceOutcome::Full
            };
            assert_eq!(r, want, "{n}");
        }
        let counts = w.record(&o[0]).unwrap().evidence;
        assert_eq!(counts.total(), MAX_EVIDENCE_PER_LOG as u64);
        assert_eq!(counts.not_kept, 9);
        // The same evidence not kept, submitted again: not counted again.
        for _ in 0..5 {
            let last = evidence(EvidenceKind::Rollback, MAX_EVIDENCE_PER_LOG as u64 + 9);
            let r = rt.block_on(w.record_evidence(&o[0], last)).unwrap();
            assert_eq!(r, EvidenceOutcome::Full);
        }
        assert_eq!(w.record(&o[0]).unwrap().evidence.not_kept, 9);
    }
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o).unwrap();
    let kept = w.evidence(&o[0]).unwrap();
    assert_eq!(kept.len(), MAX_EVIDENCE_PER_LOG);
    assert_eq!(kept[0], first);
    let counts = w.record(&o[0]).unwrap().evidence;
    assert_eq!(
        (
            counts.count(EvidenceKind::Fork),
            counts.count(EvidenceKind::BadProof),
            counts.count(EvidenceKind::Rollback),
            counts.not_kept
        ),
        (1, 1, MAX_EVIDENCE_PER_LOG as u64 - 2, 0)
    );
    assert_eq!(
        rt.block_on(w.record_evidence(&o[0], first)).unwrap(),
        EvidenceOutcome::AlreadyKept
    );
}

/// An evidence record damaged on disk is counted and reported, never silently left out.
#[test]
fn a_damaged_evidence_record_is_counted_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let o = origins(1);
    let (first, second) = (
        evidence(EvidenceKind::Fork, 1),
        evidence(EvidenceKind::Rollback, 2),
    );
    {
        let store = reopen_in_process(dir.path());
        let w = SledWitnessStore::open(&store, &o).unwrap();
        for e in [&first, &second] {
            let r = rt.block_on(w.record_evidence(&o[0], e.clone())).unwrap();
            assert_eq!(r, EvidenceOutcome::Stored);
        }
        // Damage the second record on disk.
        let tree = store.tree(EVIDENCE_TREE).unwrap();
        let (k, v) = tree
            .iter()
            .map(Result::unwrap)
            .find(|(_, v)| Evidence::decode(v).unwrap() == second)
            .unwrap();
        tree.insert(k, &v[..v.len() - 1]).unwrap();
        store.db().flush().unwrap();
    }
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o).unwrap();
    let counts = w.record(&o[0]).unwrap().evidence;
    assert_eq!((counts.total(), counts.damaged), (1, 1));
    assert_eq!(w.evidence(&o[0]).unwrap(), vec![first]);
    let all = w.all_evidence().unwrap();
    assert_eq!(all.iter().filter(|(_, e)| e.is_err()).count(), 1);
}

/// A store an older version wrote (state and alerts records): it opens, its state is
/// served and its alerts are readable, and they are not written again.
#[test]
fn a_store_of_an_older_version_opens() {
    let dir = tempfile::tempdir().unwrap();
    let o = origins(1);
    let mut old = LegacyAlerts {
        counts: [0, 1, 0, 20],
        ..LegacyAlerts::default()
    };
    old.recent.push(legacy(LegacyAlertKind::Fork, 3));
    old.recent.push(legacy(LegacyAlertKind::BadSignature, 4));
    {
        let store = reopen_in_process(dir.path());
        let tree = store.tree(TREE).unwrap();
        tree.insert(key(STATE, &o[0]), state(7, 1).encode())
            .unwrap();
        tree.insert(key(LEGACY_ALERTS, &o[0]), old.encode())
            .unwrap();
        store.flush().unwrap();
    }
    let store = reopen_in_process(dir.path());
    let w = SledWitnessStore::open(&store, &o).unwrap();
    assert_eq!(w.unregistered(), 0);
    assert_eq!(w.latest(&o[0]).unwrap(), Some(state(7, 1)));
    assert_eq!(w.legacy_alerts(&o[0]).unwrap(), Some(old.clone()));
    let r = rt()
        .block_on(w.replace(&o[0], Some((7, [1; 32])), state(8, 2)))
        .unwrap();
    assert_eq!(r, Outcome::Stored);
    assert_eq!(w.legacy_alerts(&o[0]).unwrap(), Some(old));
    assert_eq!(w.cosigned(&o[0], 7).unwrap(), Some(state(7, 1)));
}

/// The race of c2sp.org/tlog-witness: many requests checked against the same state,
/// committed concurrently: exactly one wins, the others see it.
#[test]
fn concurrent_replacements_from_one_state_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen_in_process(dir.path());
    let o = origins(3);
    let w = SledWitnessStore::open(&store, &o).unwrap();
    let rt = rt();
    for origin in &o {
        rt.block_on(w.replace(origin, None, state(10, 0))).unwrap();
    }
    let outcomes: Vec<(usize, u64, Outcome)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, origin) in o.iter().enumerate() {
            for k in 1..=30u64 {
                let (w, origin) = (w.clone(), origin.clone());
                tasks.push(tokio::spawn(async move {
                    let r = w
                        .replace(&origin, Some((10, [0; 32])), state(10 + k, k as u8))
                        .await
                        .unwrap();
                    (i, 10 + k, r)
                }));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, origin) in o.iter().enumerate() {
        let mine: Vec<_> = outcomes.iter().filter(|(j, _, _)| *j == i).collect();
        let winners: Vec<u64> = mine
            .iter()
            .filter(|(_, _, r)| *r == Outcome::Stored)
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(winners.len(), 1, "{origin}: {winners:?}");
        let latest = w.latest(origin).unwrap().unwrap();
        assert_eq!(latest.size, winners[0]);
        for (_, _, r) in mine {
            if let Outcome::Moved(Some(s)) = r {
                assert_eq!(s.size, winners[0]);
            }
        }
        // The loser's states never entered the history.
        let history = w.record(origin).unwrap().history;
        assert_eq!(history, vec![state(10, 0)]);
    }
}

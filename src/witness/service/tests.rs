//! Tests of `service`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::chain::note::{key_id, verifier_key};
use crate::witness::protocol::add_checkpoint_body;
use crate::witness::store::{SledWitnessStore, HISTORY};
use ed25519_dalek::Signer as _;

/// A simulated appliance: its tree and key.
pub(crate) struct Sim {
    origin: String,
    key: ed25519_dalek::SigningKey,
    hashes: Vec<Hash>,
    size: u64,
    /// Leaves get this prefix: a sim with another salt has another history.
    salt: u8,
}

pub(crate) const ORIGIN: &str = "sim.example/chain";

impl Sim {
    pub(crate) fn new() -> Sim {
        Sim::named(ORIGIN, 1)
    }
    pub(crate) fn named(origin: &str, seed: u8) -> Sim {
        Sim {
            origin: origin.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            hashes: Vec::new(),
            size: 0,
            salt: 0,
        }
    }
    /// The same log (origin and key) with another history from its first record.
    pub(crate) fn forked(&self) -> Sim {
        Sim {
            origin: self.origin.clone(),
            key: self.key.clone(),
            hashes: Vec::new(),
            size: 0,
            salt: self.salt + 1,
        }
    }
    fn verifier(&self) -> VerifierKey {
        VerifierKey::parse(&verifier_key(
            &self.origin,
            &self.key.verifying_key().to_bytes(),
        ))
        .unwrap()
    }
    pub(crate) fn grow(&mut self, n: u64) {
        for _ in 0..n {
            let mut data = vec![self.salt];
            data.extend_from_slice(&self.size.to_be_bytes());
            let leaf = tlog::leaf_hash(&data);
            let add = tlog::stored_hashes_for_record(self.size, leaf, &self.hashes).unwrap();
            self.hashes.extend(add);
            self.size += 1;
        }
    }
    pub(crate) fn root(&self, size: u64) -> Hash {
        tlog::tree_hash(size, &self.hashes).unwrap()
    }
    pub(crate) fn note(&self, size: u64, root: Hash) -> String {
        let text = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: vec![],
        }
        .body();
        let pk = self.key.verifying_key().to_bytes();
        SignedNote {
            signatures: vec![NoteSignature {
                name: self.origin.clone(),
                id: key_id(&self.origin, &pk),
                signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        }
        .format()
    }
    pub(crate) fn body(&self, old: u64, size: u64) -> String {
        let proof = tlog::prove_consistency(size, old, &self.hashes).unwrap();
        add_checkpoint_body(old, &proof, &self.note(size, self.root(size))).unwrap()
    }
    fn request(&self, old: u64, size: u64) -> AddCheckpoint {
        AddCheckpoint::parse(self.body(old, size).as_bytes()).unwrap()
    }
}

fn state_of(req: &AddCheckpoint) -> LogState {
    LogState {
        size: req.checkpoint.size,
        root: req.checkpoint.root,
        cosigned_at: 1,
        checkpoint: req.note.format(),
    }
}

#[test]
fn evaluate_follows_the_spec() {
    let mut sim = Sim::new();
    sim.grow(20);
    // First contact: old 0, any size, empty proof.
    assert_eq!(evaluate(None, &sim.request(0, 10)), Ok(()));
    assert_eq!(evaluate(None, &sim.request(0, 0)), Ok(()));
    // Old size the witness never cosigned.
    assert_eq!(
        evaluate(None, &sim.request(5, 10)),
        Err(Refusal::OldSizeMismatch {
            old: 5,
            recorded: 0
        })
    );
    let rec = state_of(&sim.request(0, 10));
    // The next one, with a proof from 10.
    assert_eq!(evaluate(Some(&rec), &sim.request(10, 15)), Ok(()));
    // The same checkpoint again is fine.
    assert_eq!(evaluate(Some(&rec), &sim.request(10, 10)), Ok(()));
    // A stale old size: 409.
    assert_eq!(
        evaluate(Some(&rec), &sim.request(5, 15)),
        Err(Refusal::OldSizeMismatch {
            old: 5,
            recorded: 10
        })
    );
    // A checkpoint smaller than the recorded one: 409, or 400 with an old size above it.
    assert_eq!(
        evaluate(Some(&rec), &sim.request(5, 5))
            .unwrap_err()
            .status(),
        409
    );
    let mut smaller = sim.request(0, 5);
    smaller.old_size = 10;
    assert_eq!(
        evaluate(Some(&rec), &smaller),
        Err(Refusal::OldSizeAboveSize { old: 10, size: 5 })
    );
    // An old size above the recorded: 409.
    assert_eq!(
        evaluate(Some(&rec), &sim.request(12, 15)),
        Err(Refusal::OldSizeMismatch {
            old: 12,
            recorded: 10
        })
    );
    // Same size, another root.
    let mut fork = sim.request(10, 10);
    fork.checkpoint.root = [7; 32];
    assert_eq!(
        evaluate(Some(&rec), &fork),
        Err(Refusal::Fork { recorded: 10 })
    );
    // A larger tree that does not extend the recorded one, or a cut proof: 422.
    let mut other = sim.request(10, 15);
    other.checkpoint.root = [8; 32];
    assert!(matches!(
        evaluate(Some(&rec), &other),
        Err(Refusal::BadProof(_))
    ));
    let mut cut = sim.request(10, 15);
    cut.proof.pop();
    assert!(matches!(
        evaluate(Some(&rec), &cut),
        Err(Refusal::BadProof(_))
    ));
    // A proof from old size 0 must be empty.
    let mut padded = sim.request(0, 10);
    padded.proof.push([1; 32]);
    assert!(matches!(evaluate(None, &padded), Err(Refusal::BadProof(_))));
    for r in [
        Refusal::OldSizeMismatch {
            old: 1,
            recorded: 2,
        },
        Refusal::Fork { recorded: 2 },
    ] {
        assert_eq!((r.status(), r.conflict_size()), (409, Some(2)));
    }
    assert_eq!(Refusal::BadSignature.status(), 403);
    assert!(Refusal::REASONS.contains(&Refusal::BadProof(String::new()).reason()));
}

/// What counts as evidence: only two signed checkpoints that contradict each other;
/// never a replay, a stale old size, a broken proof, or what the witness cannot compare.
#[test]
fn only_contradicting_signed_checkpoints_are_evidence() {
    let mut a = Sim::new();
    a.grow(60);
    let mut f = a.forked();
    f.grow(60);
    // The witness cosigned 6, 12, 20 and, last, 40.
    let cosigned: Vec<LogState> = [6u64, 12, 20, 40]
        .iter()
        .map(|&s| state_of(&a.request(0, s)))
        .collect();
    let lookup = |size: u64| cosigned.iter().find(|s| s.size == size).cloned();
    let find = |req: &AddCheckpoint| find_inconsistency(40, lookup, req);

    // Replays of what it cosigned, with any old size: nothing.
    for (old, size) in [
        (0, 40),
        (20, 40),
        (40, 40),
        (6, 12),
        (0, 6),
        (12, 20),
        (40, 12),
    ] {
        let mut req = a.request(old.min(size), size);
        req.old_size = old;
        assert_eq!(find(&req), None, "{old} -> {size}");
    }
    // Genuine checkpoints it never cosigned, smaller or larger, with their right proofs,
    // with a stale old size, or with a proof the submitter broke: nothing.
    for (old, size) in [(0, 15), (6, 15), (40, 50), (20, 50), (13, 50), (0, 59)] {
        assert_eq!(find(&a.request(old, size)), None, "{old} -> {size}");
    }
    for i in 0..a.request(40, 50).proof.len() {
        let mut broken = a.request(40, 50);
        broken.proof[i][3] ^= 1;
        assert_eq!(find(&broken), None, "{i}");
    }
    let mut short = a.request(40, 50);
    short.proof.pop();
    assert_eq!(find(&short), None);
    // Another history at a size it cosigned: the latest (a fork), or an earlier one (a
    // rollback), whatever the old size and proof.
    let fork = find(&f.request(40, 40)).unwrap();
    assert_eq!(
        (fork.kind, fork.cosigned.size, fork.by_proof),
        (EvidenceKind::Fork, 40, false)
    );
    assert_eq!(find(&f.request(0, 40)).unwrap().kind, EvidenceKind::Fork);
    let back = find(&f.request(6, 12)).unwrap();
    assert_eq!(
        (back.kind, back.cosigned, back.by_proof),
        (EvidenceKind::Rollback, cosigned[1].clone(), false)
    );
    // Another history larger than the latest, whose own proof from a cosigned size
    // leads to its root from another root there.
    let ext = find(&f.request(40, 50)).unwrap();
    assert_eq!(
        (ext.kind, ext.cosigned.size, ext.by_proof),
        (EvidenceKind::BadProof, 40, true)
    );
    assert_eq!(
        find(&f.request(20, 59)).unwrap().cosigned.size,
        20,
        "from an earlier cosigned size"
    );
    // Smaller than the latest, of a size it did not cosign, by proof from one it did.
    let smaller = find(&f.request(12, 15)).unwrap();
    assert_eq!(
        (smaller.kind, smaller.cosigned.size, smaller.by_proof),
        (EvidenceKind::Rollback, 12, true)
    );
    // ... but its proof altered: nothing (the new root no longer follows).
    let mut altered = f.request(40, 50);
    altered.proof[0][0] ^= 1;
    assert_eq!(find(&altered), None);
    // From a size whose proof does not carry the old root (6 is not a power of two, but
    // 32 is, were it cosigned), or from a size it does not hold: nothing to prove with.
    let cosigned_32: Vec<LogState> = vec![state_of(&a.request(0, 32))];
    let lookup_32 = |size: u64| cosigned_32.iter().find(|s| s.size == size).cloned();
    assert_eq!(find_inconsistency(32, lookup_32, &f.request(32, 50)), None);
    assert_eq!(find(&f.request(30, 50)), None);
    // Another history below every cosigned size: nothing to compare with.
    assert_eq!(find(&f.request(0, 5)), None);
}

#[test]
fn kept_notes_keep_only_the_logs_signature() {
    let mut sim = Sim::new();
    sim.grow(3);
    let mut req = sim.request(0, 3);
    let vk = sim.verifier();
    let keep = |req: &AddCheckpoint| kept_note(&req.note.text, req.note.verified_by(&vk).unwrap());
    let alone = keep(&req);
    assert_eq!(alone, sim.note(3, sim.root(3)), "byte for byte as signed");
    req.note.signatures.insert(
        0,
        NoteSignature {
            name: "witness.other/w".into(),
            id: [1, 2, 3, 4],
            signature: vec![0; 72],
        },
    );
    let kept = SignedNote::parse(&keep(&req)).unwrap();
    assert_eq!(kept.signatures.len(), 1);
    kept.verify(&vk).unwrap();
    assert_eq!(keep(&req), alone);
}

/// A witness in-process over SoftHSM, for `sims`, its store in `dir`; with the HSM
/// handle that keeps its login.
pub(crate) fn witness(
    dir: &std::path::Path,
    sims: &[&Sim],
) -> (Arc<WitnessService>, crate::signer::Hsm) {
    witness_with_clock(dir, sims, Arc::new(crate::clock::SystemClock))
}

fn witness_with_clock(
    dir: &std::path::Path,
    sims: &[&Sim],
    clock: Arc<dyn Clock>,
) -> (Arc<WitnessService>, crate::signer::Hsm) {
    use crate::chain::store::reopen_in_process;
    use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};

    let token = testsupport::new_token();
    let hsm = token.open();
    hsm.generate_key("witness", KeyAlgorithm::Ed25519, KeyPurpose::Witness)
        .unwrap();
    let pool = SigningPool::start(&hsm, "witness", 2, true).unwrap();
    let store = reopen_in_process(dir);
    let origins: Vec<String> = sims.iter().map(|s| s.origin.clone()).collect();
    let wstore: Arc<dyn WitnessStore> = Arc::new(SledWitnessStore::open(&store, &origins).unwrap());
    let logs = sims
        .iter()
        .map(|s| RegisteredLog {
            origin: s.origin.clone(),
            key: s.verifier(),
            url: None,
        })
        .collect();
    let service = Arc::new(
        WitnessService::new(
            WitnessSettings {
                name: "witness.test/w1".into(),
                stale_after_secs: 60,
            },
            logs,
            wstore,
            Arc::new(pool),
            clock,
        )
        .unwrap(),
    );
    (service, hsm)
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// The use case in-process, against SoftHSM: a sequence is cosigned (each cosignature
/// verifies), of many concurrent requests from one state exactly one wins, refusals
/// without evidence leave nothing behind.
#[test]
fn cosigns_through_the_hsm_and_lets_one_concurrent_request_win() {
    use crate::witness::protocol::parse_cosignatures;

    let dir = tempfile::tempdir().unwrap();
    let mut a = Sim::named("a.example/chain", 1);
    let b = Sim::named("b.example/chain", 2);
    let (service, _hsm) = witness(dir.path(), &[&a, &b]);
    let cosigner = Cosigner::parse(&service.verifier_key()).unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut old = 0;
        for step in [1u64, 4, 11, 1, 40] {
            a.grow(step);
            let lines = service
                .add_checkpoint(a.body(old, a.size).as_bytes())
                .await
                .unwrap();
            let text = SignedNote::parse(&a.note(a.size, a.root(a.size)))
                .unwrap()
                .text;
            let t = cosigner
                .verify(&parse_cosignatures(&text, &lines).unwrap())
                .unwrap();
            assert!(t > 1_700_000_000);
            old = a.size;
        }
        // Twenty requests for the same checkpoint checked against the same state: one
        // wins, the others get the new size in a 409.
        a.grow(20);
        let tasks: Vec<_> = (1..=20)
            .map(|_| {
                let (service, body) = (Arc::clone(&service), a.body(old, old + 20));
                tokio::spawn(async move { (20, service.add_checkpoint(body.as_bytes()).await) })
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (k, Ok(_)) => winners.push(old + k),
                (_, Err(WitnessError::Refused(Refusal::OldSizeMismatch { recorded, .. }))) => {
                    conflicts.push(recorded)
                }
                (_, Err(e)) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert!(conflicts.iter().all(|r| *r == winners[0]), "{conflicts:?}");
        let st = service.status_of(&a.origin).unwrap();
        assert_eq!(st.state.as_ref().unwrap().size, winners[0]);
        assert!(!st.stale);
        let sizes: Vec<u64> = st.history.iter().map(|s| s.size).collect();
        assert_eq!(sizes, [1, 5, 16, 17, 57][5 - HISTORY..]);
        // An old checkpoint replayed, and a forged one: refused, nothing kept; another
        // log untouched.
        let bytes = service.store().record_bytes();
        let e = service
            .add_checkpoint(a.body(0, 3).as_bytes())
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            WitnessError::Refused(Refusal::OldSizeMismatch { .. })
        ));
        let forged = b.body(0, 0).replace(&b.origin, &a.origin);
        let e = service.add_checkpoint(forged.as_bytes()).await.unwrap_err();
        assert!(
            matches!(e, WitnessError::Refused(Refusal::BadSignature)),
            "{e}"
        );
        assert_eq!(service.store().record_bytes(), bytes);
        let st = service.status_of(&a.origin).unwrap();
        assert_eq!((st.evidence.total(), st.unsigned), (0, 1));
        let summary = service.summary();
        assert_eq!((summary.registered, summary.stale), (2, 1));
        assert_eq!(summary.evidence, [0, 0, 0]);
        assert_eq!(service.unsigned()[1].1, 0);
        let e = service
            .add_checkpoint(Sim::named("c.example/chain", 3).body(0, 0).as_bytes())
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            WitnessError::Refused(Refusal::UnknownOrigin(_))
        ));
        let (h, s) = service.readiness().await;
        assert_eq!((h, s), (Ok(()), Ok(())));
    });
}

/// The latest cosigned checkpoint submitted again (anyone can: checkpoints are public)
/// stores nothing and keeps its cosigned time (so replays do not keep a silent log from
/// going stale); the HSM signs again only once the last cosignature is a minute old.
#[test]
fn replays_of_the_latest_checkpoint_store_nothing_and_sign_once_a_minute() {
    use crate::service::tsa::tests::ManualClock;
    use crate::witness::protocol::parse_cosignatures;

    const T0: u64 = 1_800_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut a = Sim::new();
    let clock = ManualClock::at(T0);
    let (service, _hsm) = witness_with_clock(dir.path(), &[&a], clock.clone());
    let cosigner = Cosigner::parse(&service.verifier_key()).unwrap();
    let time_of = |a: &Sim, lines: &str| {
        let text = SignedNote::parse(&a.note(a.size, a.root(a.size)))
            .unwrap()
            .text;
        cosigner
            .verify(&parse_cosignatures(&text, lines).unwrap())
            .unwrap()
    };
    rt().block_on(async {
        a.grow(5);
        let first = service
            .add_checkpoint(a.body(0, 5).as_bytes())
            .await
            .unwrap();
        let stored = service.store().latest(&a.origin).unwrap().unwrap();
        assert_eq!(stored.cosigned_at, T0 / 1000);
        for k in 1..=200u64 {
            clock.set(T0 + k * 295);
            let again = service
                .add_checkpoint(a.body(5, 5).as_bytes())
                .await
                .unwrap();
            assert_eq!(again, first, "replay {k}");
        }
        assert_eq!(service.store().latest(&a.origin).unwrap().unwrap(), stored);
        // A minute later: one new cosignature, of the new time; still nothing stored.
        clock.set(T0 + 61_000);
        let fresh = service
            .add_checkpoint(a.body(5, 5).as_bytes())
            .await
            .unwrap();
        assert_eq!(time_of(&a, &fresh), T0 / 1000 + 61);
        let again = service
            .add_checkpoint(a.body(5, 5).as_bytes())
            .await
            .unwrap();
        assert_eq!(again, fresh);
        assert_eq!(service.store().latest(&a.origin).unwrap().unwrap(), stored);
        // Replays do not keep a log that stopped growing from going stale.
        clock.set(T0 + 120_000);
        service
            .add_checkpoint(a.body(5, 5).as_bytes())
            .await
            .unwrap();
        assert!(service.status_of(&a.origin).unwrap().stale);
        // The log moving on is cosigned and stored as before.
        a.grow(3);
        let next = service
            .add_checkpoint(a.body(5, 8).as_bytes())
            .await
            .unwrap();
        assert_eq!(time_of(&a, &next), T0 / 1000 + 120);
        let st = service.status_of(&a.origin).unwrap();
        assert_eq!((st.state.unwrap().size, st.stale), (8, false));
    });
}

/// A fork, then 10,000 posts anyone can make naming the log (bad signatures, a key it
/// does not know, malformed bodies, replays of its public checkpoints): the fork's
/// evidence is kept with both notes as signed, the junk is counted and not stored.
#[test]
fn ten_thousand_junk_posts_after_a_fork_leave_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Sim::new();
    let (service, _hsm) = witness(dir.path(), &[&a]);
    let rt = rt();
    a.grow(30);
    let mut f = a.forked();
    f.grow(30);
    let (cosigned, forked) = (a.note(30, a.root(30)), f.note(30, f.root(30)));
    let stranger = Sim::named(ORIGIN, 9);
    let mut bad = SignedNote::parse(&a.note(31, [3; 32])).unwrap();
    bad.signatures[0].signature[7] ^= 1;
    let junk: Vec<String> = vec![
        add_checkpoint_body(30, &[], &bad.format()).unwrap(),
        add_checkpoint_body(30, &[], &stranger.note(30, [4; 32])).unwrap(),
        "old 30\n\nnot a note\n".into(),
        a.body(0, 12),
    ];
    rt.block_on(async {
        service
            .add_checkpoint(a.body(0, 30).as_bytes())
            .await
            .unwrap();
        let body = add_checkpoint_body(30, &[], &forked).unwrap();
        let e = service.add_checkpoint(body.as_bytes()).await.unwrap_err();
        assert!(matches!(
            e,
            WitnessError::Refused(Refusal::Fork { recorded: 30 })
        ));
        let bytes = service.store().record_bytes();
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let (service, junk) = (Arc::clone(&service), junk.clone());
                tokio::spawn(async move {
                    for n in 0..2500 {
                        let body = &junk[(n + t) % junk.len()];
                        let e = service.add_checkpoint(body.as_bytes()).await.unwrap_err();
                        assert!(matches!(e, WitnessError::Refused(_)), "{e}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(service.store().record_bytes(), bytes);
        assert_eq!(service.unsigned()[0].1, 5000);
    });
    let kept = rt.block_on(service.evidence_of(ORIGIN)).unwrap().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].kind, EvidenceKind::Fork);
    assert_eq!(kept[0].cosigned, cosigned);
    assert_eq!(kept[0].submitted, forked);
    assert_eq!(service.summary().evidence, [0, 1, 0]);
}

/// A store of an older version with alerts: the fork they prove becomes evidence (once,
/// however often the witness starts); the rest is not carried over.
#[test]
fn forks_an_older_version_recorded_are_carried_over() {
    use crate::witness::store::{LegacyAlertKind, LegacyAlerts};

    let dir = tempfile::tempdir().unwrap();
    let mut a = Sim::new();
    a.grow(10);
    let mut f = a.forked();
    f.grow(10);
    let alert = |kind, size, submitted: String, recorded: Option<String>| LegacyAlert {
        kind,
        at: 1_700_000_000 + size,
        old_size: 10,
        size,
        recorded_size: Some(10),
        submitted,
        recorded,
    };
    let mut forged = SignedNote::parse(&f.note(10, f.root(10))).unwrap();
    forged.signatures[0].signature[0] ^= 1;
    let old = LegacyAlerts {
        counts: [1, 3, 0, 1],
        recent: vec![
            // A rollback (not provable without a proof), a fork, a "fork" whose
            // submitted note does not verify, the same fork again, a bad signature.
            alert(
                LegacyAlertKind::Rollback,
                5,
                a.note(5, a.root(5)),
                Some(a.note(10, a.root(10))),
            ),
            alert(
                LegacyAlertKind::Fork,
                10,
                f.note(10, f.root(10)),
                Some(a.note(10, a.root(10))),
            ),
            alert(
                LegacyAlertKind::Fork,
                10,
                forged.format(),
                Some(a.note(10, a.root(10))),
            ),
            alert(
                LegacyAlertKind::Fork,
                10,
                f.note(10, f.root(10)),
                Some(a.note(10, a.root(10))),
            ),
            alert(LegacyAlertKind::BadSignature, 10, forged.text.clone(), None),
        ],
    };
    {
        let store = crate::chain::store::Store::open(dir.path()).unwrap();
        let tree = store.tree("witness").unwrap();
        let mut k = vec![b's'];
        k.extend_from_slice(ORIGIN.as_bytes());
        tree.insert(k, state_of(&a.request(0, 10)).encode())
            .unwrap();
        let mut k = vec![b'a'];
        k.extend_from_slice(ORIGIN.as_bytes());
        tree.insert(k, old.encode()).unwrap();
        store.flush().unwrap();
    }
    let rt = rt();
    for _ in 0..2 {
        let (service, _hsm) = witness(dir.path(), &[&a]);
        let done = rt.block_on(service.carry_over_legacy_alerts()).unwrap();
        assert_eq!(
            done,
            CarriedOver {
                alerts: 5,
                evidence: 2
            }
        );
        let kept = rt.block_on(service.evidence_of(ORIGIN)).unwrap().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kind, EvidenceKind::Fork);
        assert_eq!(kept[0].seen_at, 1_700_000_010);
        assert_eq!(kept[0].submitted, f.note(10, f.root(10)));
        assert_eq!(kept[0].cosigned, a.note(10, a.root(10)));
        // It still cosigns from its state.
        a.grow(1);
        rt.block_on(service.add_checkpoint(a.body(a.size - 1, a.size).as_bytes()))
            .unwrap();
    }
}

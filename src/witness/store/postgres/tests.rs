//! The witness store on a real PostgreSQL (a throw-away cluster per test, from Debian's
//! package): the schema's migration, the compare-and-swap across two stores (two witness
//! servers), the history, evidence, and readiness while the database is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testkit::TestPostgres;

fn state(size: u64, root: u8) -> LogState {
    LogState {
        size,
        root: [root; 32],
        cosigned_at: 1_700_000_000 + size,
        checkpoint: format!("log\n{size}\nroot{root}\n\n\u{2014} log AAAA\n"),
    }
}

fn evidence(n: u64) -> Evidence {
    Evidence {
        kind: EvidenceKind::Fork,
        seen_at: 1_700_000_000 + n,
        cosigned_size: n,
        cosigned: format!("cosigned {n:08}"),
        size: n,
        submitted: format!("submitted {n:08}"),
        old_size: n,
        proof: Vec::new(),
    }
}

fn origins(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("log-{i}.example/chain")).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn cluster() -> TestPostgres {
    TestPostgres::start().unwrap_or_else(|e| panic!("{e}"))
}

fn settings(pg: &TestPostgres) -> PostgresSettings {
    PostgresSettings {
        url: pg.url("postgres"),
        password: Some(pg.password().to_owned().into()),
        ca_file: None,
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        refresh: Duration::from_millis(100),
    }
}

#[test]
fn the_schema_is_made_by_migrate_only_and_once() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    rt.block_on(async {
        let e = PostgresWitnessStore::open(&s, &origins(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("auditstamp witness migrate"), "{e}");
        assert_eq!(migrate(&s).await.unwrap(), (0, SCHEMA_VERSION));
        assert_eq!(migrate(&s).await.unwrap(), (SCHEMA_VERSION, SCHEMA_VERSION));
        let store = PostgresWitnessStore::open(&s, &origins(2)).await.unwrap();
        assert_eq!(store.origins(), origins(2));
        assert_eq!(store.latest(&origins(1)[0]).unwrap(), None);
        store.health().unwrap();
        let e = PostgresWitnessStore::open(&s, &[origins(1)[0].clone(), origins(1)[0].clone()])
            .await
            .unwrap_err();
        assert!(matches!(e, WitnessStoreError::DuplicateOrigin(_)), "{e}");
    });
}

/// A database made by the first release (schema 1) is refused by a server until `migrate`
/// moves it on, keeping what it holds.
#[test]
fn a_schema_1_database_is_moved_on_by_migrate_and_keeps_its_states() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    let o = origins(1);
    rt.block_on(async {
        assert_eq!(schema::migrate_to(&s, 1).await.unwrap(), (0, 1));
        // Version 1's own compare-and-swap: 5, 7, 9 (the history 5, 7 in its own table).
        let direct = settings::Direct::open(&s).await.unwrap();
        let mut expected = (false, 0i64, Vec::new());
        for n in [5u8, 7, 9] {
            let new = state(u64::from(n), n);
            let stored: bool = direct
                .client
                .query_one(
                    "SELECT o_stored FROM witness_replace($1, $2, $3, $4, $5, $6, $7, $8, 4)",
                    &[
                        &o[0],
                        &expected.0,
                        &expected.1,
                        &expected.2,
                        &i64::from(n),
                        &new.root.to_vec(),
                        &(new.cosigned_at as i64),
                        &new.checkpoint,
                    ],
                )
                .await
                .unwrap()
                .get(0);
            assert!(stored);
            expected = (true, i64::from(n), new.root.to_vec());
        }
        direct.close().await;
        let e = PostgresWitnessStore::open(&s, &o).await.unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        assert!(e.to_string().contains("auditstamp witness migrate"), "{e}");
        assert_eq!(migrate(&s).await.unwrap(), (1, SCHEMA_VERSION));
        let store = PostgresWitnessStore::open(&s, &o).await.unwrap();
        let want = LogRecord {
            state: Some(state(9, 9)),
            history: vec![state(5, 5), state(7, 7)],
            evidence: EvidenceCounts::default(),
        };
        assert_eq!(store.record(&o[0]).unwrap(), want);
        assert_eq!(store.current(&o[0]).await.unwrap(), want);
        assert_eq!(
            store
                .replace(&o[0], Some((9, [9; 32])), state(10, 10))
                .await
                .unwrap(),
            Outcome::Stored
        );
        assert_eq!(
            store.current(&o[0]).await.unwrap().history,
            vec![state(5, 5), state(7, 7), state(9, 9)]
        );
    });
}

#[test]
fn a_password_in_the_url_and_a_wrong_password_are_refused_without_showing_it() {
    let pg = cluster();
    let rt = rt();
    let mut s = settings(&pg);
    s.url = format!("{} password=inline-secret", pg.url("postgres"));
    let e = s.pg_config().unwrap_err().to_string();
    assert!(e.contains("password_file"), "{e}");
    assert!(!e.contains("inline-secret"), "{e}");
    let mut s = settings(&pg);
    s.password = Some("not-the-password".to_owned().into());
    let e = rt.block_on(migrate(&s)).unwrap_err().to_string();
    assert!(e.contains("password"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    assert!(!e.contains(pg.password()), "{e}");
}

/// Two stores on one database are two witness servers: a compare-and-swap against a state
/// the other one replaced answers Moved with what it stored, and history and records are
/// the same seen from either.
#[test]
fn two_servers_share_one_log_state() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    let o = origins(2);
    rt.block_on(async {
        migrate(&s).await.unwrap();
        let a = PostgresWitnessStore::open(&s, &o).await.unwrap();
        let b = PostgresWitnessStore::open(&s, &o).await.unwrap();
        assert_eq!(
            a.replace(&o[0], None, state(5, 1)).await.unwrap(),
            Outcome::Stored
        );
        // b has not seen it yet: its swap from "none" is refused with a's state.
        assert_eq!(
            b.replace(&o[0], None, state(6, 2)).await.unwrap(),
            Outcome::Moved(Some(state(5, 1)))
        );
        assert_eq!(b.latest(&o[0]).unwrap(), Some(state(5, 1)));
        assert_eq!(
            b.replace(&o[0], Some((5, [1; 32])), state(9, 3))
                .await
                .unwrap(),
            Outcome::Stored
        );
        // a's expectation is old now; the wrong root is refused as well.
        assert_eq!(
            a.replace(&o[0], Some((5, [1; 32])), state(7, 4))
                .await
                .unwrap(),
            Outcome::Moved(Some(state(9, 3)))
        );
        assert_eq!(
            a.replace(&o[0], Some((9, [4; 32])), state(10, 4))
                .await
                .unwrap(),
            Outcome::Moved(Some(state(9, 3)))
        );
        for (size, root) in [(12, 5), (20, 6), (30, 7), (40, 8), (50, 9)] {
            let current = a.latest(&o[0]).unwrap().unwrap();
            let expected = Some((current.size, current.root));
            assert_eq!(
                a.replace(&o[0], expected, state(size, root)).await.unwrap(),
                Outcome::Stored
            );
        }
        let want = LogRecord {
            state: Some(state(50, 9)),
            history: vec![state(12, 5), state(20, 6), state(30, 7), state(40, 8)],
            evidence: EvidenceCounts::default(),
        };
        assert_eq!(a.record(&o[0]).unwrap(), want);
        assert_eq!(b.current(&o[0]).await.unwrap(), want);
        assert_eq!(b.record(&o[0]).unwrap(), want);
        assert_eq!(a.current(&o[1]).await.unwrap(), LogRecord::default());
        // b learns the other server's writes by itself, too.
        let c = PostgresWitnessStore::open(&s, &o).await.unwrap();
        a.replace(&o[1], None, state(3, 3)).await.unwrap();
        wait_for(|| c.latest(&o[1]).unwrap() == Some(state(3, 3))).await;
        assert!(matches!(
            a.replace("not.registered/log", None, state(1, 1)).await,
            Err(WitnessStoreError::UnknownOrigin(_))
        ));
    });
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "not within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Many swaps from the same state at once, half on each of two stores: exactly one is
/// stored, every other one sees the winner's state.
#[test]
fn of_simultaneous_swaps_from_one_state_exactly_one_wins() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    let o = origins(1);
    rt.block_on(async {
        migrate(&s).await.unwrap();
        let a = Arc::new(PostgresWitnessStore::open(&s, &o).await.unwrap());
        let b = Arc::new(PostgresWitnessStore::open(&s, &o).await.unwrap());
        a.replace(&o[0], None, state(10, 1)).await.unwrap();
        for round in 0..5u8 {
            let current = a.current(&o[0]).await.unwrap().state.unwrap();
            let expected = Some((current.size, current.root));
            let tasks: Vec<_> = (0..16u64)
                .map(|i| {
                    let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                    let origin = o[0].clone();
                    let new = state(
                        current.size + 1 + i,
                        round.wrapping_mul(16).wrapping_add(i as u8),
                    );
                    tokio::spawn(async move {
                        (
                            new.clone(),
                            store.replace(&origin, expected, new).await.unwrap(),
                        )
                    })
                })
                .collect();
            let mut winners = Vec::new();
            let mut moved = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    (new, Outcome::Stored) => winners.push(new),
                    (_, Outcome::Moved(now)) => moved.push(now),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}");
            for now in moved {
                assert_eq!(now.as_ref(), Some(&winners[0]));
            }
            assert_eq!(
                b.current(&o[0]).await.unwrap().state,
                Some(winners[0].clone())
            );
        }
    });
}

#[test]
fn evidence_is_kept_once_and_capped_across_servers() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    let o = origins(2);
    rt.block_on(async {
        migrate(&s).await.unwrap();
        let a = PostgresWitnessStore::open(&s, &o).await.unwrap();
        let b = PostgresWitnessStore::open(&s, &o).await.unwrap();
        assert_eq!(
            a.record_evidence(&o[0], evidence(1)).await.unwrap(),
            EvidenceOutcome::Stored
        );
        assert_eq!(
            b.record_evidence(&o[0], evidence(1)).await.unwrap(),
            EvidenceOutcome::AlreadyKept
        );
        assert_eq!(a.evidence(&o[0]).await.unwrap(), vec![evidence(1)]);
        assert_eq!(b.evidence(&o[1]).await.unwrap(), vec![]);
        wait_for(|| b.evidence_counts(&o[0]).unwrap().count(EvidenceKind::Fork) == 1).await;
        // Up to the cap from both servers at once, then counted, not kept.
        let tasks: Vec<_> = (2..=MAX_EVIDENCE_PER_LOG as u64 + 5)
            .map(|n| {
                let store = if n % 2 == 0 { a.clone() } else { b.clone() };
                let origin = o[0].clone();
                tokio::spawn(async move { store.record_evidence(&origin, evidence(n)).await })
            })
            .collect();
        let mut full = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() == EvidenceOutcome::Full {
                full += 1;
            }
        }
        assert_eq!(full, 5);
        assert_eq!(a.evidence(&o[0]).await.unwrap().len(), MAX_EVIDENCE_PER_LOG);
        let counts = a.current(&o[0]).await.unwrap().evidence;
        assert_eq!(counts.total(), MAX_EVIDENCE_PER_LOG as u64);
    });
}

/// While the database is down, reads from memory still answer, writes fail with an error
/// that says so, and health fails; when it is back, all of it recovers by itself.
#[test]
fn a_database_that_goes_away_is_reported_and_recovered_from() {
    let pg = cluster();
    let rt = rt();
    let s = settings(&pg);
    let o = origins(1);
    rt.block_on(async {
        migrate(&s).await.unwrap();
        let a = PostgresWitnessStore::open(&s, &o).await.unwrap();
        a.replace(&o[0], None, state(5, 1)).await.unwrap();
        pg.stop_now().unwrap();
        wait_for(|| a.health().is_err()).await;
        let e = a
            .replace(&o[0], Some((5, [1; 32])), state(6, 2))
            .await
            .unwrap_err();
        assert!(matches!(e, WitnessStoreError::Database(_)), "{e}");
        assert_eq!(a.latest(&o[0]).unwrap(), Some(state(5, 1)));
        pg.start_again().unwrap();
        wait_for(|| a.health().is_ok()).await;
        // The acknowledged state survived the crash; writes go through again (the pool's
        // dead connections are replaced).
        let mut outcome = a.replace(&o[0], Some((5, [1; 32])), state(6, 2)).await;
        for _ in 0..10 {
            if outcome.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            outcome = a.replace(&o[0], Some((5, [1; 32])), state(6, 2)).await;
        }
        assert_eq!(outcome.unwrap(), Outcome::Stored);
        assert_eq!(a.current(&o[0]).await.unwrap().history, vec![state(5, 1)]);
    });
}

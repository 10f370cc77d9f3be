//! Moving a store in ([`import`], a sled store's export) and reading every evidence record
//! out ([`all_postgres_evidence`]), each on one connection outside the pool.

use super::schema::{newer, schema_version, SCHEMA_VERSION};
use super::settings::{db, state_of, to_i64, Direct, PostgresSettings, StateArrays};
use crate::witness::store::{Evidence, LogState, WitnessStoreError};

/// Every evidence record in the database, registered origin or not, by origin then oldest
/// first; damaged records are reported as errors beside them.
pub async fn all_postgres_evidence(
    settings: &PostgresSettings,
) -> Result<Vec<crate::witness::store::StoredEvidence>, WitnessStoreError> {
    let direct = Direct::open(settings).await?;
    let client = &direct.client;
    let result = async {
        match schema_version(client).await? {
            Some(SCHEMA_VERSION) => {}
            Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
            _ => return Ok(Vec::new()),
        }
        let rows = client
            .query(
                "SELECT origin, record FROM witness_evidence ORDER BY origin, seen_at, id",
                &[],
            )
            .await
            .map_err(|e| db(&e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Evidence::decode(&r.get::<_, Vec<u8>>(1)),
                )
            })
            .collect())
    }
    .await;
    direct.close().await;
    result
}

/// What [`import`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Origins with records.
    pub logs: usize,
    /// Latest states written (those already there, equal, are not counted).
    pub states: usize,
    /// History entries written (with the latest states written).
    pub history: usize,
    /// Evidence records written.
    pub evidence: usize,
}

/// Moves `logs` (a sled store's [`export`](super::SledWitnessStore::export)) into the
/// database, in one transaction, with the schema at [`SCHEMA_VERSION`]. Safe to run again:
/// what is there already is left; a latest state that differs from the database's is
/// refused (the database has moved on: nothing is written).
pub async fn import(
    settings: &PostgresSettings,
    logs: &[crate::witness::store::ExportedLog],
) -> Result<Imported, WitnessStoreError> {
    let mut direct = Direct::open(settings).await?;
    let client = &mut direct.client;
    let result = async {
        let tx = client.transaction().await.map_err(|e| db(&e))?;
        match schema_version(&tx).await? {
            Some(SCHEMA_VERSION) => {}
            Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
            found => {
                return Err(WitnessStoreError::Database(format!(
                    "the witness schema is at version {}: run `auditstamp witness migrate` first",
                    found.unwrap_or(0)
                )))
            }
        }
        let mut done = Imported::default();
        let insert_state = tx
            .prepare(
                "INSERT INTO witness_log (origin, size, root, cosigned_at, checkpoint,
                                          h_size, h_root, h_cosigned_at, h_checkpoint)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (origin) DO NOTHING",
            )
            .await
            .map_err(|e| db(&e))?;
        let insert_evidence = tx
            .prepare(
                "INSERT INTO witness_evidence (origin, id, kind, seen_at, record)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin, id) DO NOTHING",
            )
            .await
            .map_err(|e| db(&e))?;
        for log in logs {
            let origin = &log.origin;
            done.logs += 1;
            // The history goes with the state, in its row (oldest first, as kept).
            if let Some(state) = &log.state {
                let mut history: Vec<&LogState> = log.history.iter().collect();
                history.sort_by_key(|h| h.size);
                let mut h = StateArrays::default();
                for s in history {
                    h.push(s)?;
                }
                let n = tx
                    .execute(
                        &insert_state,
                        &[
                            origin,
                            &to_i64(state.size, "size")?,
                            &state.root.to_vec(),
                            &to_i64(state.cosigned_at, "cosigned_at")?,
                            &state.checkpoint,
                            &h.size,
                            &h.root,
                            &h.cosigned_at,
                            &h.checkpoint,
                        ],
                    )
                    .await
                    .map_err(|e| db(&e))?;
                if n == 1 {
                    done.states += 1;
                    done.history += h.size.len();
                } else {
                    let there = tx
                        .query_one(
                            "SELECT size, root, cosigned_at, checkpoint FROM witness_log
                             WHERE origin = $1",
                            &[origin],
                        )
                        .await
                        .map_err(|e| db(&e))?;
                    let there = state_of(&there, 0)?;
                    if &there != state {
                        return Err(WitnessStoreError::Database(format!(
                            "the database already holds another state of {origin:?} (size {}, \
                             the sled store's: {}): nothing moved",
                            there.size, state.size
                        )));
                    }
                }
            }
            for e in &log.evidence {
                let kind = i16::try_from(e.kind.index()).unwrap_or(i16::MAX);
                done.evidence += tx
                    .execute(
                        &insert_evidence,
                        &[
                            origin,
                            &e.id().to_vec(),
                            &kind,
                            &to_i64(e.seen_at, "seen_at")?,
                            &e.encode(),
                        ],
                    )
                    .await
                    .map_err(|e| db(&e))? as usize;
            }
            if let Some(alerts) = &log.legacy {
                tx.execute(
                    "INSERT INTO witness_legacy_alerts (origin, record) VALUES ($1, $2)
                     ON CONFLICT (origin) DO NOTHING",
                    &[origin, &alerts.encode()],
                )
                .await
                .map_err(|e| db(&e))?;
            }
        }
        tx.commit().await.map_err(|e| db(&e))?;
        Ok(done)
    }
    .await;
    direct.close().await;
    result
}

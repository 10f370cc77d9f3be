//! The schema of the witness's tables: its versions, the SQL of each migration, and
//! [`migrate`], which runs what is missing.

use super::settings::{db, Direct, PostgresSettings};
use crate::witness::store::WitnessStoreError;

/// The schema version this binary reads and writes.
pub const SCHEMA_VERSION: i32 = 2;

/// The component's row in `auditstamp_schema`.
const COMPONENT: &str = "witness";

/// Serialises migrations (a transaction-scoped advisory lock; any constant of our own).
const MIGRATION_LOCK: i64 = 0x6175_6469_7473_7461;

/// The migrations, in order: the SQL that takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [
    // 1: the tables, the compare-and-swap of one origin, the evidence.
    r#"
CREATE TABLE witness_log (
    origin      text PRIMARY KEY,
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea  NOT NULL CHECK (octet_length(root) = 32),
    cosigned_at bigint NOT NULL,
    checkpoint  text   NOT NULL
);
CREATE TABLE witness_history (
    origin      text   NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea  NOT NULL CHECK (octet_length(root) = 32),
    cosigned_at bigint NOT NULL,
    checkpoint  text   NOT NULL,
    PRIMARY KEY (origin, size)
);
CREATE TABLE witness_evidence (
    origin  text     NOT NULL,
    id      bytea    NOT NULL CHECK (octet_length(id) = 32),
    kind    smallint NOT NULL,
    seen_at bigint   NOT NULL,
    record  bytea    NOT NULL,
    PRIMARY KEY (origin, id)
);
CREATE TABLE witness_legacy_alerts (
    origin text PRIMARY KEY,
    record bytea NOT NULL
);

-- The compare-and-swap of one origin's state: stores the new state when the current one
-- is the expected one (none: p_expected false), moving the replaced one into the history
-- when the new one is larger and keeping the p_history largest there; otherwise changes
-- nothing. Answers whether it stored, and the state now recorded.
CREATE FUNCTION witness_replace(
    p_origin text, p_expected boolean, p_size bigint, p_root bytea,
    n_size bigint, n_root bytea, n_cosigned_at bigint, n_checkpoint text, p_history integer,
    OUT o_stored boolean, OUT o_size bigint, OUT o_root bytea, OUT o_cosigned_at bigint,
    OUT o_checkpoint text)
LANGUAGE plpgsql AS $fn$
DECLARE
    cur witness_log%ROWTYPE;
BEGIN
    SELECT * INTO cur FROM witness_log l WHERE l.origin = p_origin FOR UPDATE;
    IF NOT FOUND THEN
        IF NOT p_expected THEN
            INSERT INTO witness_log (origin, size, root, cosigned_at, checkpoint)
                VALUES (p_origin, n_size, n_root, n_cosigned_at, n_checkpoint)
                ON CONFLICT (origin) DO NOTHING;
            IF FOUND THEN
                o_stored := true;
                o_size := n_size; o_root := n_root;
                o_cosigned_at := n_cosigned_at; o_checkpoint := n_checkpoint;
                RETURN;
            END IF;
            SELECT * INTO cur FROM witness_log l WHERE l.origin = p_origin;
        END IF;
        o_stored := false;
        o_size := cur.size; o_root := cur.root;
        o_cosigned_at := cur.cosigned_at; o_checkpoint := cur.checkpoint;
        RETURN;
    END IF;
    IF NOT p_expected OR cur.size <> p_size OR cur.root <> p_root THEN
        o_stored := false;
        o_size := cur.size; o_root := cur.root;
        o_cosigned_at := cur.cosigned_at; o_checkpoint := cur.checkpoint;
        RETURN;
    END IF;
    UPDATE witness_log l
        SET size = n_size, root = n_root, cosigned_at = n_cosigned_at, checkpoint = n_checkpoint
        WHERE l.origin = p_origin;
    IF n_size > cur.size THEN
        INSERT INTO witness_history (origin, size, root, cosigned_at, checkpoint)
            VALUES (p_origin, cur.size, cur.root, cur.cosigned_at, cur.checkpoint)
            ON CONFLICT (origin, size) DO UPDATE
                SET root = EXCLUDED.root, cosigned_at = EXCLUDED.cosigned_at,
                    checkpoint = EXCLUDED.checkpoint;
        DELETE FROM witness_history h
            WHERE h.origin = p_origin
              AND h.size < (SELECT min(k.size) FROM (
                  SELECT x.size FROM witness_history x WHERE x.origin = p_origin
                  ORDER BY x.size DESC LIMIT p_history) k);
    END IF;
    o_stored := true;
    o_size := n_size; o_root := n_root;
    o_cosigned_at := n_cosigned_at; o_checkpoint := n_checkpoint;
END
$fn$;

-- Keeps one evidence record: 'kept' when the same is kept already, 'full' when the
-- origin has p_max records, else 'stored'. Serialised per origin, so the cap holds across
-- servers.
CREATE FUNCTION witness_keep_evidence(
    p_origin text, p_id bytea, p_kind smallint, p_seen_at bigint, p_record bytea,
    p_max integer) RETURNS text
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('auditstamp witness evidence ' || p_origin, 0));
    IF EXISTS (SELECT 1 FROM witness_evidence e WHERE e.origin = p_origin AND e.id = p_id) THEN
        RETURN 'kept';
    END IF;
    IF (SELECT count(*) FROM witness_evidence e WHERE e.origin = p_origin) >= p_max THEN
        RETURN 'full';
    END IF;
    INSERT INTO witness_evidence (origin, id, kind, seen_at, record)
        VALUES (p_origin, p_id, p_kind, p_seen_at, p_record);
    RETURN 'stored';
END
$fn$;
"#,
    // 2: the history moves into the log's row (arrays, oldest first: one row written per
    // cosignature, not three), and the compare-and-swaps of a group commit run in one call
    // (one round trip, not one per swap).
    r#"
ALTER TABLE witness_log
    ADD COLUMN h_size        bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN h_root        bytea[]  NOT NULL DEFAULT '{}',
    ADD COLUMN h_cosigned_at bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN h_checkpoint  text[]   NOT NULL DEFAULT '{}';
UPDATE witness_log l
    SET h_size = h.s, h_root = h.r, h_cosigned_at = h.c, h_checkpoint = h.p
    FROM (SELECT origin, array_agg(size ORDER BY size) s, array_agg(root ORDER BY size) r,
                 array_agg(cosigned_at ORDER BY size) c, array_agg(checkpoint ORDER BY size) p
            FROM witness_history GROUP BY origin) h
    WHERE l.origin = h.origin;
DROP TABLE witness_history;
DROP FUNCTION witness_replace(text, boolean, bigint, bytea, bigint, bytea, bigint, text, integer);
-- Room in each page for the next version of a row (an update in place, no index touched).
ALTER TABLE witness_log SET (fillfactor = 70);

-- The compare-and-swaps of one group commit, in the order given: each stores the new state
-- when the current one is the expected one (none: p_expected false), moving the replaced
-- one into the history when the new one is larger and keeping the p_history largest there;
-- otherwise it changes nothing. Answers, for each, whether it stored and the state now
-- recorded. A swap meeting a row another transaction is changing waits for its commit and
-- compares with what that stored.
CREATE FUNCTION witness_replace_all(
    p_origin text[], p_expected boolean[], p_size bigint[], p_root bytea[],
    n_size bigint[], n_root bytea[], n_cosigned_at bigint[], n_checkpoint text[],
    p_history integer)
RETURNS TABLE (o_index integer, o_stored boolean, o_size bigint, o_root bytea,
               o_cosigned_at bigint, o_checkpoint text)
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := cardinality(p_origin);
BEGIN
    IF cardinality(p_expected) <> n OR cardinality(p_size) <> n OR cardinality(p_root) <> n
       OR cardinality(n_size) <> n OR cardinality(n_root) <> n
       OR cardinality(n_cosigned_at) <> n OR cardinality(n_checkpoint) <> n THEN
        RAISE EXCEPTION 'witness_replace_all: arrays of different lengths';
    END IF;
    FOR i IN 1 .. n LOOP
        o_index := i;
        o_stored := false;
        IF p_expected[i] THEN
            UPDATE witness_log l
                SET size = n_size[i], root = n_root[i], cosigned_at = n_cosigned_at[i],
                    checkpoint = n_checkpoint[i],
                    h_size = CASE WHEN n_size[i] > l.size
                        THEN (l.h_size || l.size)[greatest(cardinality(l.h_size) + 2 - p_history, 1):]
                        ELSE l.h_size END,
                    h_root = CASE WHEN n_size[i] > l.size
                        THEN (l.h_root || l.root)[greatest(cardinality(l.h_root) + 2 - p_history, 1):]
                        ELSE l.h_root END,
                    h_cosigned_at = CASE WHEN n_size[i] > l.size
                        THEN (l.h_cosigned_at || l.cosigned_at)[greatest(cardinality(l.h_cosigned_at) + 2 - p_history, 1):]
                        ELSE l.h_cosigned_at END,
                    h_checkpoint = CASE WHEN n_size[i] > l.size
                        THEN (l.h_checkpoint || l.checkpoint)[greatest(cardinality(l.h_checkpoint) + 2 - p_history, 1):]
                        ELSE l.h_checkpoint END
                WHERE l.origin = p_origin[i] AND l.size = p_size[i] AND l.root = p_root[i];
            o_stored := FOUND;
        ELSE
            INSERT INTO witness_log (origin, size, root, cosigned_at, checkpoint)
                VALUES (p_origin[i], n_size[i], n_root[i], n_cosigned_at[i], n_checkpoint[i])
                ON CONFLICT (origin) DO NOTHING;
            o_stored := FOUND;
        END IF;
        IF o_stored THEN
            o_size := n_size[i]; o_root := n_root[i];
            o_cosigned_at := n_cosigned_at[i]; o_checkpoint := n_checkpoint[i];
        ELSE
            -- FOR SHARE: waits for a transaction changing the row, to answer what it stored.
            o_size := NULL; o_root := NULL; o_cosigned_at := NULL; o_checkpoint := NULL;
            SELECT l.size, l.root, l.cosigned_at, l.checkpoint
                INTO o_size, o_root, o_cosigned_at, o_checkpoint
                FROM witness_log l WHERE l.origin = p_origin[i] FOR SHARE;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
"#,
];

/// The schema version the database is at (`None`: no schema yet).
pub(super) async fn schema_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<i32>, WitnessStoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('auditstamp_schema') IS NOT NULL", &[])
        .await
        .map_err(|e| db(&e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT version FROM auditstamp_schema WHERE component = $1",
            &[&COMPONENT],
        )
        .await
        .map_err(|e| db(&e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Creates the schema, or moves it on to [`SCHEMA_VERSION`], in one transaction (two
/// migrations at once wait for each other). Returns the versions before and after.
/// Refuses a database whose schema is newer than this binary's.
pub async fn migrate(settings: &PostgresSettings) -> Result<(i32, i32), WitnessStoreError> {
    migrate_to(settings, SCHEMA_VERSION).await
}

/// [`migrate`] up to version `target` only (the tests make older schemas with it).
pub(super) async fn migrate_to(
    settings: &PostgresSettings,
    target: i32,
) -> Result<(i32, i32), WitnessStoreError> {
    let target = target.clamp(0, SCHEMA_VERSION);
    let mut direct = Direct::open(settings).await?;
    let client = &mut direct.client;
    let result = async {
        let tx = client.transaction().await.map_err(|e| db(&e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| db(&e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS auditstamp_schema (
                 component text PRIMARY KEY,
                 version integer NOT NULL)",
        )
        .await
        .map_err(|e| db(&e))?;
        let before = schema_version(&tx).await?.unwrap_or(0);
        if before > SCHEMA_VERSION {
            return Err(newer(before));
        }
        let after = before.max(target);
        let index = |v: i32| usize::try_from(v).unwrap_or(0);
        let todo = MIGRATIONS.iter().enumerate().take(index(after));
        for (from, sql) in todo.skip(index(before)) {
            tx.batch_execute(sql).await.map_err(|e| {
                let e = db(&e);
                WitnessStoreError::Database(format!(
                    "migration from version {from} to {}: {e}",
                    from + 1
                ))
            })?;
        }
        tx.execute(
            "INSERT INTO auditstamp_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            &[&COMPONENT, &after],
        )
        .await
        .map_err(|e| db(&e))?;
        tx.commit().await.map_err(|e| db(&e))?;
        Ok((before, after))
    }
    .await;
    direct.close().await;
    result
}

/// The refusal of a schema newer than this binary's.
pub(super) fn newer(version: i32) -> WitnessStoreError {
    WitnessStoreError::Database(format!(
        "the witness schema is at version {version}, newer than this binary's \
         ({SCHEMA_VERSION}): run a newer auditstamp"
    ))
}

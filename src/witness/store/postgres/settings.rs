//! Where the database is, how it is reached (the pool, or one connection outside it), and
//! the conversions between its rows and the store's types.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;

use crate::chain::tlog::Hash;
use crate::witness::store::{LogState, WitnessStoreError};

/// Where the database is and how the pool reaches it.
#[derive(Clone)]
pub struct PostgresSettings {
    /// A libpq connection string or URL without a password (`host=/run/postgresql
    /// dbname=witness user=witness`, `postgresql://witness@db.example/witness`).
    pub url: String,
    /// The password, from a file or the environment (never the configuration).
    pub password: Option<SecretString>,
    /// Connections in this process's pool.
    pub pool_size: usize,
    /// How long a connection, or a free one from the pool, is waited for.
    pub connect_timeout: Duration,
    /// How often the records of every log are read again (the other servers' writes).
    pub refresh: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl PostgresSettings {
    /// The connection's configuration: `url` parsed, with the password added. A URL that
    /// carries a password itself is refused (it belongs in a file or the environment).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, WitnessStoreError> {
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| {
            WitnessStoreError::Database(format!("the database URL does not parse: {e}"))
        })?;
        if config.get_password().is_some() {
            return Err(WitnessStoreError::Database(
                "the database URL holds a password: give it in password_file or password_env"
                    .into(),
            ));
        }
        if let Some(p) = &self.password {
            config.password(p.expose_secret().as_bytes());
        }
        config.connect_timeout(self.connect_timeout);
        config.application_name("auditstamp-witness");
        Ok(config)
    }

    pub(super) fn pool(&self) -> Result<Pool, WitnessStoreError> {
        let manager = Manager::from_config(
            self.pg_config()?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| WitnessStoreError::Database(format!("connection pool: {e}")))
    }
}

pub(super) fn db(e: &tokio_postgres::Error) -> WitnessStoreError {
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => crate::client::error_chain(e),
    };
    WitnessStoreError::Database(text)
}

pub(super) fn pool_error(e: &deadpool_postgres::PoolError) -> WitnessStoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        other => WitnessStoreError::Database(format!("no database connection: {other}")),
    }
}

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, WitnessStoreError> {
    i64::try_from(v).map_err(|_| WitnessStoreError::Corrupt(format!("{what} {v} is too large")))
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, WitnessStoreError> {
    u64::try_from(v).map_err(|_| WitnessStoreError::Corrupt(format!("a negative {what}: {v}")))
}

pub(super) fn to_hash(v: &[u8]) -> Result<Hash, WitnessStoreError> {
    v.try_into()
        .map_err(|_| WitnessStoreError::Corrupt(format!("a root of {} bytes", v.len())))
}

/// One connection outside the pool (migrate, import, the evidence command), with the task
/// that drives it.
pub(super) struct Direct {
    pub(super) client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Direct {
    pub(super) async fn open(settings: &PostgresSettings) -> Result<Direct, WitnessStoreError> {
        let (client, connection) = settings
            .pg_config()?
            .connect(NoTls)
            .await
            .map_err(|e| db(&e))?;
        Ok(Direct {
            client,
            task: tokio::spawn(connection),
        })
    }

    /// Closes the connection and waits for its task.
    pub(super) async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

/// A row's `size, root, cosigned_at, checkpoint` from column `at` on.
pub(super) fn state_of(
    row: &tokio_postgres::Row,
    at: usize,
) -> Result<LogState, WitnessStoreError> {
    let root: Vec<u8> = row.try_get(at + 1).map_err(|e| db(&e))?;
    Ok(LogState {
        size: to_u64(row.try_get(at).map_err(|e| db(&e))?, "size")?,
        root: to_hash(&root)?,
        cosigned_at: to_u64(row.try_get(at + 2).map_err(|e| db(&e))?, "cosigned_at")?,
        checkpoint: row.try_get(at + 3).map_err(|e| db(&e))?,
    })
}

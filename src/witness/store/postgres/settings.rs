//! Where the database is, how it is reached (the pool, or one connection outside it), and
//! the conversions between its rows and the store's types.

use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

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
    /// With `sslmode=require` in `url`: the CA certificates (PEM) the database's
    /// certificate must chain to (`None`: the system's roots). The name in the certificate
    /// is checked against the host.
    pub ca_file: Option<PathBuf>,
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
            .field("ca_file", &self.ca_file)
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

    /// The TLS connector when the URL asks for TLS (`sslmode=require`): the server's
    /// certificate is checked against `ca_file` (or the system's roots) and the host name,
    /// as libpq's `verify-full` does. `None`: no TLS (`disable`, or `prefer`, which tries
    /// it without checking anything and is as good as none).
    pub(super) fn tls(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Option<MakeRustlsConnect>, WitnessStoreError> {
        if config.get_ssl_mode() != SslMode::Require {
            return Ok(None);
        }
        let trust = match &self.ca_file {
            Some(f) => crate::client::Trust::Only(vec![f.clone()]),
            None => crate::client::Trust::System,
        };
        let tls = crate::client::ClientTls {
            trust,
            identity: None,
        };
        let mut rustls = crate::client::rustls_config(&tls)
            .map_err(|e| WitnessStoreError::Database(format!("TLS to the database: {e}")))?;
        rustls.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Some(MakeRustlsConnect::new(rustls)))
    }

    pub(super) fn pool(&self) -> Result<Pool, WitnessStoreError> {
        let config = self.pg_config()?;
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match self.tls(&config)? {
            Some(tls) => Manager::from_config(config, tls, recycling),
            None => Manager::from_config(config, NoTls, recycling),
        };
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
        let config = settings.pg_config()?;
        let (client, task) = match settings.tls(&config)? {
            Some(tls) => {
                let (client, connection) = config.connect(tls).await.map_err(|e| db(&e))?;
                (client, tokio::spawn(connection))
            }
            None => {
                let (client, connection) = config.connect(NoTls).await.map_err(|e| db(&e))?;
                (client, tokio::spawn(connection))
            }
        };
        Ok(Direct { client, task })
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

/// States as columns of arrays (`bigint[]`, `bytea[]`, `bigint[]`, `text[]`), the form
/// the database takes them in: a history, or a group commit's new states.
#[derive(Default)]
pub(super) struct StateArrays<'a> {
    pub(super) size: Vec<i64>,
    pub(super) root: Vec<Vec<u8>>,
    pub(super) cosigned_at: Vec<i64>,
    pub(super) checkpoint: Vec<&'a str>,
}

impl<'a> StateArrays<'a> {
    /// Adds `state` at the end.
    pub(super) fn push(&mut self, state: &'a LogState) -> Result<(), WitnessStoreError> {
        self.size.push(to_i64(state.size, "size")?);
        self.root.push(state.root.to_vec());
        self.cosigned_at
            .push(to_i64(state.cosigned_at, "cosigned_at")?);
        self.checkpoint.push(&state.checkpoint);
        Ok(())
    }
}

/// The columns a state row is read with: the state, then its history (see [`record_of`]).
pub(super) const RECORD_COLUMNS: &str =
    "size, root, cosigned_at, checkpoint, h_size, h_root, h_cosigned_at, h_checkpoint";

/// A `witness_log` row's state and history ([`RECORD_COLUMNS`] from column `at` on). The
/// history arrays are oldest first and of one length.
pub(super) fn record_of(
    row: &tokio_postgres::Row,
    at: usize,
) -> Result<(LogState, Vec<LogState>), WitnessStoreError> {
    let state = state_of(row, at)?;
    let sizes: Vec<i64> = row.try_get(at + 4).map_err(|e| db(&e))?;
    let roots: Vec<Vec<u8>> = row.try_get(at + 5).map_err(|e| db(&e))?;
    let times: Vec<i64> = row.try_get(at + 6).map_err(|e| db(&e))?;
    let checkpoints: Vec<String> = row.try_get(at + 7).map_err(|e| db(&e))?;
    let n = sizes.len();
    if roots.len() != n || times.len() != n || checkpoints.len() != n {
        return Err(WitnessStoreError::Corrupt(format!(
            "a history of {n} sizes, {} roots, {} times and {} checkpoints",
            roots.len(),
            times.len(),
            checkpoints.len()
        )));
    }
    let mut history = Vec::with_capacity(n);
    for (((size, root), at), checkpoint) in sizes.into_iter().zip(roots).zip(times).zip(checkpoints)
    {
        history.push(LogState {
            size: to_u64(size, "size")?,
            root: to_hash(&root)?,
            cosigned_at: to_u64(at, "cosigned_at")?,
            checkpoint,
        });
    }
    Ok((state, history))
}

//! Throw-away servers the test suite runs against (never mocks): a PostgreSQL cluster of
//! Debian's `postgresql` package, made with `initdb` in a temporary directory, serving on a
//! Unix socket (and, with TLS only, on a loopback port), with a random password, stopped
//! when dropped. Reached by the tests
//! through [`crate::internal`]; not part of the library's interface.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PostgreSQL superuser the cluster is made with.
pub const PG_USER: &str = "auditstamp";

/// The socket's port number when nothing listens on TCP (it names the socket file).
const PG_PORT: u16 = 5432;

/// A PostgreSQL cluster in a temporary directory, stopped (immediately) when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server programs as this user (initdb refuses root).
    run_as: Option<String>,
    password: String,
    /// The port: of the socket file and, with TLS, of the TCP listener on 127.0.0.1.
    port: u16,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The directory of `initdb` and `pg_ctl`: on the PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn server_bin() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file());
    if let Some(d) = on_path {
        return Ok(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: \
         `apt-get install postgresql` (./deploy/test.sh installs it)"
            .to_owned()
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// `uid` and `gid` of the user `name`, from /etc/passwd.
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            format!(
                "running as root, the test PostgreSQL runs as the user {name:?}, which does not \
                 exist (Debian's postgresql package creates it)"
            )
        })
}

impl TestPostgres {
    /// Makes a cluster and starts it; waits until it accepts connections.
    pub fn start() -> Result<TestPostgres, String> {
        TestPostgres::make(None)
    }

    /// [`TestPostgres::start`], listening on 127.0.0.1 as well ([`TestPostgres::tcp_url`]),
    /// where it speaks TLS only, with the certificate (PEM, with its chain) and private key
    /// (PEM) given; a connection without TLS over TCP is refused.
    pub fn start_tls(cert: &Path, key: &Path) -> Result<TestPostgres, String> {
        TestPostgres::make(Some((cert, key)))
    }

    fn make(tls: Option<(&Path, &Path)>) -> Result<TestPostgres, String> {
        let bin = server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("auditstamp-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let mut pw = [0u8; 18];
        getrandom::getrandom(&mut pw).map_err(|e| e.to_string())?;
        let port = match tls {
            // A free port now (the server takes it a moment later).
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free port: {e}"))?
                .port(),
            None => PG_PORT,
        };
        let pg = TestPostgres {
            dir,
            bin,
            run_as,
            password: hex::encode(pw),
            port,
        };
        let socket = pg.socket_dir();
        std::fs::create_dir(&socket).map_err(|e| e.to_string())?;
        let pwfile = pg.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", pg.password)).map_err(|e| e.to_string())?;
        let mut owned = vec![socket.clone(), pwfile.clone()];
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let to = pg.dir.path().join(to);
                std::fs::copy(from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
                owned.push(to);
            }
        }
        if let Some(user) = &pg.run_as {
            use std::os::unix::fs::PermissionsExt as _;
            let (uid, gid) = user_ids(user)?;
            std::fs::set_permissions(pg.dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            for p in &owned {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
        }
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--pwfile",
                path_str(&pwfile)?,
                "--no-sync",
            ],
        )?;
        let listen = if tls.is_some() { "127.0.0.1" } else { "" };
        let mut conf = format!(
            "listen_addresses = '{listen}'\nunix_socket_directories = '{}'\nport = {port}\n\
             max_connections = 60\nshared_buffers = 32MB\n",
            socket.display()
        );
        if tls.is_some() {
            let dir = pg.dir.path().display();
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n"
            ));
            // TLS only over TCP; the socket for the tests' own psql.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all all all reject\n",
            )
            .map_err(|e| e.to_string())?;
        }
        let conf_path = data.join("postgresql.conf");
        let mut all = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
        all.push_str(&conf);
        std::fs::write(&conf_path, all).map_err(|e| e.to_string())?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs one of the server programs (as the postgres user when root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--clear-groups", "--"])
                    .arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {}: {}\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let (data, log) = (self.data_dir(), self.log_file());
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint; the next start replays the WAL).
    pub fn stop_now(&self) -> Result<(), String> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )
    }

    /// The connection string (without the password) of database `dbname`, on the socket.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={PG_USER} dbname={dbname}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// The connection string of database `dbname` over TCP to `host` (`127.0.0.1` or
    /// `localhost`), with TLS required (a cluster of [`TestPostgres::start_tls`]).
    pub fn tcp_url(&self, host: &str, dbname: &str) -> String {
        format!(
            "host={host} port={} user={PG_USER} dbname={dbname} sslmode=require",
            self.port
        )
    }

    /// The password, for a client of this test cluster only.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates database `name` (owned by [`PG_USER`]) and returns its connection string.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url("postgres"),
            ])
            .args(["-c", &format!("CREATE DATABASE \"{name}\"")])
            .env("PGPASSWORD", &self.password)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "CREATE DATABASE {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(self.url(name))
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

//! Throw-away servers the test suite runs against (never mocks), each in a temporary
//! directory and stopped when dropped:
//! - [`TestPostgres`]: a PostgreSQL cluster of Debian's `postgresql` package, made with
//!   `initdb`, serving on a Unix socket (and, with TLS only, on a loopback port), with a
//!   random password.
//! - [`TestS3`]: moto's S3 server (PyPI's `moto[server]`, installed by `deploy/test.sh`) on
//!   a loopback port, which can be killed and started again with its objects.
//!
//! Reached by the tests through [`crate::internal`]; not part of the library's interface.

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

/// The access key id [`TestS3`] is used with (moto accepts any).
pub const S3_ACCESS_KEY: &str = "test";

/// The secret access key [`TestS3`] is used with (moto accepts any; it checks no signature).
pub const S3_SECRET_KEY: &str = "test";

/// The region [`TestS3`] serves (moto's default).
pub const S3_REGION: &str = "us-east-1";

/// The longest wait for a started moto to answer (its replay of the journal included).
const S3_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The path, not a valid bucket name, where the launcher answers that it is ready.
const S3_READY_PATH: &str = "/_testkit/ready";

/// The PyPI requirement `deploy/lib.sh`'s `ensure_moto` installs.
const MOTO_REQUIREMENT: &str = "moto[server]>=5.2,<6";

/// The program that runs moto's S3 server for [`TestS3`], with the venv's Python: moto's own
/// WSGI application and request handler (those of `moto_server`), with a journal of the
/// writes, replayed at start, so that a killed server's objects are there after a restart.
const MOTO_LAUNCHER: &str = r##"
"""moto's S3 server (moto.server's own WSGI application and request handler) with a
journal, so that a restarted server holds what the killed one held.

Usage: python serve.py HOST PORT JOURNAL

Each request is handled under one lock, so that moto's check of a condition (If-None-Match,
If-Match) and its write are atomic, and the journal's order is the order of the writes.
Each state-changing request that succeeded (PUT, POST, DELETE, PATCH with a 2xx status) is
appended to JOURNAL as one JSON line (its WSGI environ and body) before its response is
sent: a response the client saw is in the journal, even if the process is killed right
after (kill -9: the page cache keeps the write). At start, the journal is replayed into the
application in order, before the port is bound; a last line cut short by a kill (its client
never had a response) is dropped. Multipart upload ids, new at each replay, are mapped from
the recorded ones to the new. The process exits when its parent (the test) is gone.
"""

import base64
import io
import json
import os
import re
import sys
import threading
import time

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
from werkzeug.test import EnvironBuilder

try:
    from moto.server import MotoRequestHandler
except ImportError:
    MotoRequestHandler = None

MUTATING = {"PUT", "POST", "DELETE", "PATCH"}
UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
READY = "/_testkit/ready"


def main():
    host, port, journal = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    os.environ["MOTO_PORT"] = str(port)
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def call(environ):
        """Runs one request through moto: (status, headers, body)."""
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        chunks = app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return seen["status"], seen["headers"], body

    started = time.monotonic()
    replayed = replay(journal, port, call)
    print(f"replayed {replayed} requests in {time.monotonic() - started:.2f} s", flush=True)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def application(environ, start_response):
        if environ.get("PATH_INFO") == READY:
            text = json.dumps({"pid": os.getpid(), "replayed": replayed}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [text]
        body = read_body(environ)
        with lock:
            status, headers, out = call(environ)
            if environ["REQUEST_METHOD"] in MUTATING and status.startswith("2"):
                entry = {"environ": recordable(environ), "body": base64.b64encode(body).decode()}
                if "uploads" in environ.get("QUERY_STRING", ""):
                    found = UPLOAD_ID.search(out)
                    if found:
                        entry["upload_id"] = found.group(1).decode()
                line = (json.dumps(entry) + "\n").encode()
                while line:
                    line = line[os.write(fd, line):]
        start_response(status, headers)
        return [out]

    options = {"request_handler": MotoRequestHandler} if MotoRequestHandler else {}
    run_simple(host, port, application, threaded=True, **options)


def watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def read_body(environ):
    """Reads the request's body, and puts it back for moto."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def recordable(environ):
    """The parts of a WSGI environ that JSON holds: the request, not the server's objects."""
    return {
        k: v
        for k, v in environ.items()
        if isinstance(v, (str, dict)) and not k.startswith(("wsgi.", "werkzeug."))
    }


def replay(journal, port, call):
    """Replays the journal into moto; returns how many requests it held."""
    try:
        with open(journal, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        print(f"dropping a cut-short last line of {len(data) - len(complete)} bytes", flush=True)
        with open(journal, "r+b") as f:
            f.truncate(len(complete))
    uploads = {}
    count = 0
    for line in complete.splitlines():
        entry = json.loads(line)
        environ = EnvironBuilder(base_url=f"http://127.0.0.1:{port}").get_environ()
        environ.update(entry["environ"])
        for old, new in uploads.items():
            for key in ("QUERY_STRING", "RAW_URI", "REQUEST_URI"):
                if key in environ:
                    environ[key] = environ[key].replace(f"uploadId={old}", f"uploadId={new}")
        body = base64.b64decode(entry["body"])
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
        status, _, out = call(environ)
        count += 1
        if not status.startswith("2"):
            print(f"replay: request {count} ({environ['REQUEST_METHOD']} "
                  f"{environ.get('RAW_URI')}) now answers {status}", flush=True)
        if "upload_id" in entry:
            found = UPLOAD_ID.search(out)
            if found:
                uploads[entry["upload_id"]] = found.group(1).decode()
    return count


if __name__ == "__main__":
    main()
"##;

/// A throw-away S3-compatible server: moto's S3 server (PyPI's `moto[server]` 5.x, installed
/// by `deploy/lib.sh`'s `ensure_moto`) on 127.0.0.1, in a temporary directory, killed when
/// dropped.
///
/// moto keeps its objects in memory only. To let a test crash it ([`TestS3::stop`], a
/// `kill -9`) and start it again with its objects, it runs under a small launcher
/// (`MOTO_LAUNCHER` in this module) around moto's own WSGI application: requests are handled one at a
/// time (so a conditional write's check and write are atomic, as on S3), each write that
/// succeeded is appended to a journal before its response is sent, and a start replays the
/// journal into moto before taking connections. What a client was told was written is
/// there after a restart, with the same bytes and ETag (its `Last-Modified` is the time of
/// the replay; an unfinished multipart upload gets a new id, and versioned buckets' version
/// ids are new).
///
/// Requests are signed with AWS Signature Version 4 ([`TestS3::sign`]) with [`S3_ACCESS_KEY`],
/// [`S3_SECRET_KEY`] and [`S3_REGION`]; moto checks no signature, but without one it answers
/// object requests as to an anonymous user (403).
pub struct TestS3 {
    dir: tempfile::TempDir,
    python: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(std::process::Child::id))
            .finish_non_exhaustive()
    }
}

/// Where `deploy/lib.sh`'s `ensure_moto` makes moto's venv.
fn moto_venv() -> Option<PathBuf> {
    match std::env::var_os("AUDITSTAMP_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("moto-venv")),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".cache/auditstamp/moto-venv")),
    }
}

/// moto's `moto_server` program: `AUDITSTAMP_MOTO_SERVER`, else the venv of `ensure_moto`,
/// else on the PATH.
fn moto_server() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("AUDITSTAMP_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "AUDITSTAMP_MOTO_SERVER is {}, which is not a file (moto's moto_server)",
                p.display()
            ))
        };
    }
    let venv = moto_venv();
    if let Some(p) = venv.as_ref().map(|v| v.join("bin/moto_server")) {
        if p.is_file() {
            return Ok(p);
        }
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        let venv = venv.map_or_else(
            || "~/.cache/auditstamp/moto-venv".to_owned(),
            |v| v.display().to_string(),
        );
        format!(
            "moto's S3 server (moto_server, PyPI's {MOTO_REQUIREMENT}) is not installed: \
             ./deploy/test.sh installs it, or: python3 -m venv {venv} && \
             {venv}/bin/pip install '{MOTO_REQUIREMENT}' (or set AUDITSTAMP_MOTO_SERVER to \
             a moto_server)"
        )
    })
}

/// The Python that runs `moto_server`: the venv's beside it, else its `#!` line's.
fn moto_python(server: &Path) -> Result<PathBuf, String> {
    if let Some(dir) = server.parent() {
        for name in ["python3", "python"] {
            if dir.join(name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    let text = std::fs::read(server).map_err(|e| format!("{}: {e}", server.display()))?;
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let words: Vec<&str> = std::str::from_utf8(first)
        .unwrap_or_default()
        .strip_prefix("#!")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let python = match words.as_slice() {
        [env, python, ..] if env.ends_with("/env") => python,
        [python, ..] => python,
        [] => "",
    };
    if python.is_empty() {
        return Err(format!(
            "{}: cannot tell its Python (no #! line)",
            server.display()
        ));
    }
    Ok(PathBuf::from(python))
}

/// A port on 127.0.0.1 free now, below the kernel's range of ephemeral ports, so that no
/// client's connection takes it while the server is stopped.
fn free_port_below_ephemeral() -> Result<u16, String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 12000 {
        for _ in 0..200 {
            let mut r = [0u8; 2];
            getrandom::getrandom(&mut r).map_err(|e| e.to_string())?;
            let port = 10000 + u16::from_le_bytes(r) % (low - 10000);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port` (the request ends with `Connection: close`):
/// the status code and the body.
fn http_exchange(
    port: u16,
    request: &[u8],
    timeout: std::time::Duration,
) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream.write_all(request).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response's header")?;
    let status = std::str::from_utf8(&response[..end])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1)?.parse().ok())
        .ok_or("no status line")?;
    Ok((status, response[end + 4..].to_vec()))
}

/// `YYYYMMDD'T'HHMMSS'Z'`, SigV4's `x-amz-date`.
fn amz_date(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    use aws_lc_rs::hmac;
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The `Authorization` header of AWS Signature Version 4 for S3, over all of `headers`
/// (names in any case; `host`, `x-amz-date` and `x-amz-content-sha256` among them).
/// `path_and_query` is as sent, percent-encoded.
fn sigv4_authorization(
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> Result<String, String> {
    use sha2::Digest as _;
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .ok_or(format!("no {name} header to sign"))
    };
    let (date_time, payload) = (find("x-amz-date")?, find("x-amz-content-sha256")?);
    let date = date_time.get(..8).ok_or("x-amz-date is too short")?;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    params.sort_unstable();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    canonical.sort_unstable();
    let signed = canonical
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let header_lines: String = canonical
        .iter()
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect();
    let request = format!("{method}\n{path}\n{query}\n{header_lines}\n{signed}\n{payload}");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date);
    for part in [region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex::encode(hmac_sha256(&key, &to_sign));
    Ok(format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, \
         Signature={signature}"
    ))
}

impl TestS3 {
    /// Starts moto's S3 server on 127.0.0.1, on a free port (below the kernel's ephemeral
    /// range), in a new temporary directory, and waits (at most 60 s) until it answers.
    pub fn start() -> Result<TestS3, String> {
        let python = moto_python(&moto_server()?)?;
        let dir = tempfile::Builder::new()
            .prefix("auditstamp-s3-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        std::fs::write(dir.path().join("serve.py"), MOTO_LAUNCHER)
            .map_err(|e| format!("{}: {e}", dir.path().display()))?;
        let mut s3 = TestS3 {
            dir,
            python,
            port: free_port_below_ephemeral()?,
            child: None,
        };
        // Another test may take the port between our check and moto's bind: then another.
        let mut tries = 0;
        loop {
            match s3.start_again() {
                Ok(()) => return Ok(s3),
                Err(e) if tries < 3 && e.contains("Address already in use") => {
                    tries += 1;
                    s3.port = free_port_below_ephemeral()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's URL: `http://127.0.0.1:PORT` (path-style: `/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1 (the same after [`TestS3::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The access key id to use: [`S3_ACCESS_KEY`].
    pub fn access_key(&self) -> &'static str {
        S3_ACCESS_KEY
    }

    /// The secret access key to use: [`S3_SECRET_KEY`].
    pub fn secret_key(&self) -> &'static str {
        S3_SECRET_KEY
    }

    /// The region: [`S3_REGION`].
    pub fn region(&self) -> &'static str {
        S3_REGION
    }

    /// The server's output (moto's log of requests, and the launcher's of each replay), kept
    /// across restarts.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The journal of writes a restart replays.
    pub fn journal_file(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The headers to send with a request to this server, signed (AWS Signature Version 4,
    /// now): `headers` (each signed, e.g. `If-None-Match`), `host`, `x-amz-date`,
    /// `x-amz-content-sha256` and `authorization`. `path_and_query` is as sent,
    /// percent-encoded (`/bucket/key?list-type=2&prefix=a%2F`); `body` is the request's.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        use sha2::Digest as _;
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        all.push(("host".into(), format!("127.0.0.1:{}", self.port)));
        all.push((
            "x-amz-date".into(),
            amz_date(time::OffsetDateTime::now_utc()),
        ));
        all.push((
            "x-amz-content-sha256".into(),
            hex::encode(sha2::Sha256::digest(body)),
        ));
        let auth = sigv4_authorization(
            method,
            path_and_query,
            &all,
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
            S3_REGION,
        )?;
        all.push(("authorization".into(), auth));
        Ok(all)
    }

    /// Creates bucket `name` (3 to 63 lowercase letters, digits, `-` and `.`), with a signed
    /// `PUT /name`.
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "{name:?} is not a bucket name (3 to 63 of a-z, 0-9, '-' and '.')"
            ));
        }
        let path = format!("/{name}");
        let mut request = format!("PUT {path} HTTP/1.1\r\n");
        for (n, v) in self.sign("PUT", &path, &[], b"")? {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        let timeout = std::time::Duration::from_secs(30);
        let (status, body) = http_exchange(self.port, request.as_bytes(), timeout)
            .map_err(|e| format!("PUT {path} to {}: {e}", self.endpoint()))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "PUT {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ))
        }
    }

    /// Kills the server at once (`kill -9`, as a crash would) and waits for it to end; does
    /// nothing when it is stopped. Its objects come back with [`TestS3::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the (stopped) server again on the same port, holding the objects it held, and
    /// waits until it answers (at most 60 s, its replay of the journal included).
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err(format!("the S3 server on port {} is running", self.port));
        }
        let log_path = self.log_file();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.python)
            .arg(self.dir.path().join("serve.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.journal_file())
            .current_dir(self.dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("MOTO_ENABLE_RECORDING")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.python.display()))?;
        self.child = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stop();
                Err(format!(
                    "moto's S3 server on port {}: {e}; the end of its log ({}):\n{}",
                    self.port,
                    log_path.display(),
                    self.log_tail()
                ))
            }
        }
    }

    /// Polls the launcher's ready path until this process answers it.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = std::time::Instant::now();
        let request = format!(
            "GET {S3_READY_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        loop {
            let child = self.child.as_mut().ok_or("not started")?;
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status})"));
            }
            let pid = child.id();
            let timeout = std::time::Duration::from_secs(2);
            let last = match http_exchange(self.port, request.as_bytes(), timeout) {
                Ok((200, body))
                    if String::from_utf8_lossy(&body).contains(&format!("\"pid\": {pid},")) =>
                {
                    return Ok(())
                }
                Ok((status, body)) => format!(
                    "another server answers on the port: {status} {}",
                    String::from_utf8_lossy(&body)
                ),
                Err(e) => e,
            };
            if started.elapsed() > S3_READY_TIMEOUT {
                return Err(format!(
                    "not ready after {} s ({last})",
                    S3_READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }

    /// The last 40 lines of the log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends the server `signal` (it must be running).
    fn signal(&self, signal: libc::c_int) -> Result<(), String> {
        let child = self.child.as_ref().ok_or("the S3 server is stopped")?;
        let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill has no memory preconditions; the pid is our child's, not yet waited
        // for, so it names no other process.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("kill {pid}: {}", std::io::Error::last_os_error()))
        }
    }

    /// Freezes the server (SIGSTOP), as a hung one: connections are accepted by the kernel
    /// but nothing is answered until [`TestS3::resume`].
    pub fn pause(&self) -> Result<(), String> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) -> Result<(), String> {
        self.signal(libc::SIGCONT)
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example "GET Object" of AWS's documentation of Signature Version 4 for S3
    /// ("Signature Calculations for the Authorization Header: Transferring Payload in a
    /// Single Chunk").
    #[test]
    fn sigv4_matches_aws_example() {
        let headers: Vec<(String, String)> = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            (
                "x-amz-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let auth = sigv4_authorization(
            "GET",
            "/test.txt",
            &headers,
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        assert_eq!(
            auth.as_deref(),
            Ok(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/\
                aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
    }
}

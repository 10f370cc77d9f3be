//! A real HAProxy (Debian's) running one of the shipped configurations in deploy/haproxy/,
//! its addresses given through its environment; killed when dropped.
#![allow(unused_imports)]

use super::*;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// HAProxy's binary: `AUDITSTAMP_HAPROXY`, else Debian's.
pub fn haproxy_bin() -> PathBuf {
    let path = std::env::var_os("AUDITSTAMP_HAPROXY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"));
    assert!(
        path.exists(),
        "HAProxy ({}) is missing: install it with `apt-get install -y haproxy` \
         (or run ./deploy/test.sh, which installs it)",
        path.display()
    );
    path
}

/// `N` different loopback addresses nothing listens on now.
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// HAProxy with a shipped configuration.
pub struct Haproxy {
    pub child: Child,
    /// The frontend clients connect to.
    pub listen: SocketAddr,
    /// Its read-only status page.
    pub stats: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Haproxy {
    /// Starts `haproxy -f deploy/haproxy/<config> -db`, listening where `listen_var` says
    /// and serving its status page where `stats_var` says (both free loopback addresses
    /// chosen here), with `env` (the servers' addresses) in its environment.
    pub fn start(
        config: &str,
        listen_var: &str,
        stats_var: &str,
        env: &[(String, String)],
    ) -> Haproxy {
        let config = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/haproxy")
            .join(config);
        let [listen, stats] = free_addrs();
        let mut cmd = Command::new(haproxy_bin());
        cmd.arg("-f")
            .arg(&config)
            .arg("-db")
            .env(listen_var, listen.to_string())
            .env(stats_var, stats.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let out: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in out {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Haproxy {
            child,
            listen,
            stats,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Server `server` of `backend`'s state ("UP", "DOWN", "UP 1/2", ...), from the status
    /// page's CSV.
    pub async fn state(&mut self, backend: &str, server: &str) -> Option<String> {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("HAProxy exited ({status}):\n{}", self.log());
        }
        let csv = reqwest::get(format!("http://{}/;csv", self.stats))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        csv.lines().find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() > 17 && f[0] == backend && f[1] == server).then(|| f[17].to_owned())
        })
    }

    /// Waits (20 s at most) until HAProxy marks `server` of `backend` `want`.
    pub async fn wait_state(&mut self, backend: &str, server: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.state(backend, server).await;
            if state.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy does not mark {backend}/{server} {want} (it says {state:?}):\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

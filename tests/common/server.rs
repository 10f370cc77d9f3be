//! A running server process (`auditstamp serve` or `witness serve`) and how one starts.
#![allow(unused_imports)]

use super::*;

/// A running `auditstamp serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "server exited with {status}: {}",
                    self.log.lock().unwrap()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop on SIGTERM");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 10 s for the server to log a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the server `cmd` runs and waits (30 s at most) for the log line holding
/// `marker` followed by its `http(s)://ADDR/...` URL.
pub fn spawn_server(mut cmd: Command, marker: &'static str) -> Server {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    // Dropped by the reader when the server's stderr ends.
    let (ended_tx, ended) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ended = ended_tx;
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let at = line.split(marker).nth(1).map(|r| {
                r.trim_start_matches("https://")
                    .trim_start_matches("http://")
            });
            if let Some(rest) = at {
                let addr = rest.split('/').next().unwrap().to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Server {
            child,
            addr: addr.parse().unwrap(),
            log,
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            // The whole log: wait until the reader has read it to the end.
            let _ = ended.recv_timeout(Duration::from_secs(5));
            panic!("server did not start ({status}): {}", log.lock().unwrap());
        }
    }
}

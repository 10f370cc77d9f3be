//! A real headless Chromium for the web consoles' tests: Debian's `chromium` driven through
//! WebDriver by its `chromium-driver` (chromedriver), with the `fantoccini` client.
//!
//! Each [`Browser`] is independent (tests run in parallel): its own chromedriver on a free
//! loopback port, started in its own process group from a temporary directory, and its own
//! Chromium profile there. Dropping it (also when a test panics) kills that whole process
//! group, chromedriver and every Chromium process it started, with SIGKILL, and waits.
//!
//! The helpers panic with what they saw: a browser test has nothing to recover from.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where Debian's `chromium` puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_START: Duration = Duration::from_secs(30);
/// Ports tried before giving up (another process may take a port between our pick and
/// chromedriver's bind).
const PORT_ATTEMPTS: usize = 5;
/// How often [`Browser::wait_for_text`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// A headless Chromium behind its own chromedriver.
pub struct Browser {
    client: Option<Client>,
    driver: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the browser tests need Debian's `chromium` and `chromium-driver`; \
         install them with `apt-get install -y chromium chromium-driver` (as root), or run \
         ./deploy/test.sh, which installs them (missing package: {package})"
    );
}

/// A loopback port nobody listened on a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// The driver's log, to show when it fails.
fn driver_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
}

/// `GET /status` of a chromedriver: whether it answers as a chromedriver ready for a session.
async fn driver_ready(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    // chromedriver keeps the connection open: read until the body has its Content-Length.
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(json) = status_body(&buf) {
            return serde_json::from_slice::<Value>(json)
                .ok()
                .and_then(|v| v["value"]["ready"].as_bool())
                .unwrap_or(false);
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

/// The body of a complete HTTP/1.1 answer with a Content-Length, once all of it is in `buf`.
fn status_body(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len: usize = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    buf.get(end..end + len)
}

/// The directory screenshots go to: `<target dir>/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| manifest.join(t))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("screenshots")
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub async fn start() -> Browser {
        require(CHROMIUM, "chromium");
        require(CHROMEDRIVER, "chromium-driver");
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().expect("a temporary directory for the browser");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("chromedriver.log"))
                .expect("chromedriver's log file");
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .current_dir(dir.path())
                // Chromium's own temporary files (its singleton socket directory, which a
                // killed browser leaves) go into this directory, removed with it.
                .env("TMPDIR", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                // Its own process group: Drop kills chromedriver and the browsers it starts.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let mut browser = Browser {
                client: None,
                driver: Some(child),
                port,
                dir,
            };
            match browser.wait_ready().await {
                Ok(()) => {
                    browser.open_session().await;
                    return browser;
                }
                Err(why) => {
                    failures.push(format!("port {port}: {why}"));
                    browser.kill();
                }
            }
        }
        panic!(
            "chromedriver did not start after {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Polls chromedriver's `/status` until it is ready; an error if it exits or takes too
    /// long (the port may have been taken).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Some(child) = self.driver.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "chromedriver exited ({status}): {}",
                        driver_log(self.dir.path())
                    ));
                }
            }
            // Ours, not another test's that took the port first: only ours writes our log.
            let started = format!("started successfully on port {}", self.port);
            if driver_log(self.dir.path()).contains(&started) && driver_ready(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready within {DRIVER_START:?}; its log:\n{}",
                    driver_log(self.dir.path())
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn open_session(&mut self) {
        let profile = self.dir.path().join("profile");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                ],
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{}", self.port);
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver at {url} did not open a Chromium session: {e}\nits log:\n{}",
                    driver_log(self.dir.path())
                )
            });
        self.client = Some(client);
    }

    /// The process group of chromedriver and the browsers it started (chromedriver's pid).
    pub fn process_group(&self) -> i32 {
        self.driver
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .expect("chromedriver is running")
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Loads `url` (returns once the page has loaded).
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
    }

    /// The URL shown.
    pub async fn url(&self) -> String {
        self.client()
            .current_url()
            .await
            .expect("current URL")
            .to_string()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client().title().await.expect("title")
    }

    /// The first element matching the CSS selector `css`.
    pub async fn find(&self, css: &str) -> Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no element matches {css:?} on {}: {e}", self.url().await),
        }
    }

    /// Every element matching `css` (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("cannot look for {css:?}: {e}"))
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// The rendered texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.find_all(css).await {
            out.push(e.text().await.expect("element text"));
        }
        out
    }

    /// Waits until an element matching `css` contains `needle` in its text (polling, so
    /// what scripts write can be awaited); returns that text. Panics after `timeout` with
    /// what was last seen.
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            if let Ok(elements) = self.client().find_all(Locator::Css(css)).await {
                seen.clear();
                for e in elements {
                    if let Ok(t) = e.text().await {
                        if t.contains(needle) {
                            return t;
                        }
                        seen.push(t);
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} with the text {needle:?} within {timeout:?} on {}; seen: {seen:?}",
                    self.url().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Saves a PNG of the window to `<target dir>/screenshots/<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshots directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot file");
        path
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            // A session that cannot end cleanly is killed with the rest below.
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
        self.kill();
    }

    /// SIGKILL to chromedriver's process group, then waits for chromedriver and until no
    /// process of the group is left.
    fn kill(&mut self) {
        self.client = None;
        let Some(mut child) = self.driver.take() else {
            return;
        };
        let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
            return;
        };
        killpg(pgid, libc::SIGKILL);
        let _ = child.wait();
        // The browsers were chromedriver's children: once it is gone they are reparented
        // and reaped by init; wait (bounded) until the group is empty.
        let deadline = Instant::now() + Duration::from_secs(5);
        while killpg(pgid, 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `signal` to the process group `pgid` (0: only checks that it exists); whether
/// the group exists.
#[allow(unsafe_code)]
fn killpg(pgid: libc::pid_t, signal: libc::c_int) -> bool {
    // SAFETY: killpg(2) only sends a signal; it touches no memory of ours. The group is
    // the one this Browser created for its chromedriver.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

/// The pids of the processes in process group `pgid` (zombies included), read from /proc.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so read after the last ')'.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<i32>().ok());
        if pgrp == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

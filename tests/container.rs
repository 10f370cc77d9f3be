//! The container image's files, checked without a container engine: the build context
//! that `.dockerignore` leaves (sources only: no target/, var/, .git, PIN or key files),
//! and the Containerfile's HEALTHCHECK command run as the image would run it, against a
//! real appliance serving plain HTTP, TLS, and TLS with client certificates required.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Docker's glob (moby/patternmatcher): `*` and `?` within one path element, `**` across
/// elements; the whole path must match.
fn glob(p: &[u8], s: &[u8]) -> bool {
    if let Some(rest) = p.strip_prefix(b"**/") {
        return glob(rest, s)
            || s.iter()
                .enumerate()
                .any(|(i, c)| *c == b'/' && glob(rest, &s[i + 1..]));
    }
    if let Some(rest) = p.strip_prefix(b"**") {
        return (0..=s.len()).any(|i| glob(rest, &s[i..]));
    }
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let end = s.iter().position(|c| *c == b'/').unwrap_or(s.len());
            (0..=end).any(|i| glob(&p[1..], &s[i..]))
        }
        Some(b'?') => s.first().is_some_and(|c| *c != b'/') && glob(&p[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob(&p[1..], &s[1..]),
    }
}

/// The patterns of `.dockerignore`: (pattern, is an exception `!...`).
fn dockerignore() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(root().join(".dockerignore"))
        .expect("no .dockerignore: the whole tree (target/, var/) would go to the build");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (pattern, exception) = match l.strip_prefix('!') {
                Some(p) => (p, true),
                None => (l, false),
            };
            assert!(
                !pattern.contains(['[', '\\']),
                "{l}: this check knows no character classes or escapes"
            );
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            (pattern.to_owned(), exception)
        })
        .collect()
}

/// Whether the build context leaves out `path` (relative, `/`-separated): as Docker
/// decides, the last pattern matching the path or one of its parent directories wins.
fn excluded(patterns: &[(String, bool)], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = false;
    for (pattern, exception) in patterns {
        if *exception != out {
            continue;
        }
        let matches =
            (1..=parts.len()).any(|n| glob(pattern.as_bytes(), parts[..n].join("/").as_bytes()));
        if matches {
            out = !exception;
        }
    }
    out
}

/// Every file under `dir`, relative to the repository root.
fn files_under(dir: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(root().join(dir)).unwrap() {
        let e = e.unwrap();
        let rel = format!("{dir}/{}", e.file_name().to_str().unwrap());
        if e.file_type().unwrap().is_dir() {
            files_under(&rel, out);
        } else {
            out.push(rel);
        }
    }
}

#[test]
fn build_context_keeps_state_and_secrets_out() {
    let patterns = dockerignore();
    for path in [
        "target/release/auditstamp",
        "target/debug/deps/libauditstamp.rlib",
        "var/hsm/user.pin",
        "var/hsm/so.pin",
        "var/hsm/tokens/x/token.object",
        "var/store/db",
        "var/pki/dev-root-ca.pem",
        "tests/fuzz/target/debug/fuzz_checkpoint",
        "tests/vectors/verify/root-ca.key",
        ".git/config",
        ".git/objects/ab/cdef",
        ".ci/run",
        ".env",
        "notes/user.pin",
        "deploy/hsm.pin",
        "firmware-config/tls/server.key",
        "src/leftover.key",
        "hsm-sim/user.pin",
        "deploy/.env",
        "agency.p12",
    ] {
        assert!(
            excluded(&patterns, path),
            "{path} would be in the build context"
        );
    }
    // What the image is built from stays: the crate, and every file the Containerfile
    // copies out of the build stage.
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for dir in ["src", "firmware-config", "hsm-sim", "deploy"] {
        files_under(dir, &mut needed);
    }
    let containerfile = std::fs::read_to_string(root().join("deploy/Containerfile")).unwrap();
    let copied: Vec<&str> = containerfile
        .lines()
        .filter(|l| l.starts_with("COPY --from=build "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix("/src/"))
        .filter(|p| !p.starts_with("target/"))
        .collect();
    assert!(copied.contains(&"deploy/healthcheck.sh"), "{containerfile}");
    for path in copied {
        assert!(
            root().join(path).exists(),
            "the Containerfile copies {path}"
        );
        needed.push(path.to_owned());
    }
    for path in &needed {
        assert!(
            !excluded(&patterns, path),
            "{path} is needed but left out of the build context"
        );
    }
}

/// The Containerfile's `ENV` settings.
fn image_env(containerfile: &str) -> Vec<(String, String)> {
    containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Runs the Containerfile's HEALTHCHECK command as the image would, with the image's
/// files (under /opt/auditstamp there) taken from this checkout and `env` on top of the
/// image's environment.
fn healthcheck(env: &[(&str, String)]) -> Output {
    let containerfile = std::fs::read_to_string(root().join("deploy/Containerfile")).unwrap();
    let line = containerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("the Containerfile has no HEALTHCHECK");
    let (_, cmd) = line.split_once(" CMD ").unwrap();
    let image_root = format!("{}/", root().display());
    let cmd = cmd.trim().replace("/opt/auditstamp/", &image_root);
    let mut c = if cmd.starts_with('[') {
        let argv: Vec<String> = serde_json::from_str(&cmd).unwrap();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", &cmd]);
        c
    };
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .current_dir("/");
    for (k, v) in image_env(&containerfile) {
        c.env(k, v);
    }
    c.env("AUDITSTAMP_BIN", bin());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The environment that points the health check at `app`'s server.
fn env_for(app: &Appliance, server: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("AUDITSTAMP_CONFIG", app.config.display().to_string()),
        ("AUDITSTAMP_STATE_DIR", app.path().display().to_string()),
        (
            "AUDITSTAMP_LISTEN",
            format!("127.0.0.1:{}", server.addr.port()),
        ),
    ]
}

fn assert_healthy(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: the health check failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The appliance's config serving TLS with `cert`/`key`, client certificates required
/// for every route group.
fn tls_config(app: &Appliance, pki: &Pki, cert: &str, key: &str) {
    app.write_config(&[
        ("plain_http = true\n", ""),
        (
            "\n[chain]\n",
            &format!(
                "\n[http.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {:?}\n\
                 require_client_cert = [\"tsa\", \"events\", \"read\", \"ops\"]\n\n[chain]\n",
                pki.path("agencies-ca.pem"),
            ),
        ),
    ]);
}

#[test]
fn healthcheck_reaches_plain_and_tls_listeners() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));

    // Plain HTTP (the development configuration).
    let server = app.start();
    assert_healthy(&healthcheck(&env_for(&app, &server)), "plain HTTP");
    let env = env_for(&app, &server);
    server.stop();
    // Nothing listening: unhealthy, with the reason.
    let out = healthcheck(&env);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TLS with client certificates required for every route group: /healthz needs none.
    // The server certificate is a CA-issued leaf (the check trusts it as an anchor).
    tls_config(&app, &pki, &pki.path("server.pem"), &pki.path("server.key"));
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());
    assert_healthy(&healthcheck(&env_for(&app, &server)), "TLS, localhost");
    // The same with the operator's own CA instead.
    let mut env = env_for(&app, &server);
    env.push(("AUDITSTAMP_HEALTHCHECK_CA", pki.path("server-ca.pem")));
    assert_healthy(&healthcheck(&env), "TLS, AUDITSTAMP_HEALTHCHECK_CA");
    // A CA that did not issue the server's certificate: unhealthy.
    let mut env = env_for(&app, &server);
    env.push(("AUDITSTAMP_HEALTHCHECK_CA", pki.path("agencies-ca.pem")));
    assert!(!healthcheck(&env).status.success());
    server.stop();

    // A certificate naming only a DNS name that does not resolve here (as a production
    // certificate would): the check connects to the listen address under that name.
    let name = dns_only_leaf(&pki, &["tsa.office.invalid"]);
    tls_config(&app, &pki, &name.0, &name.1);
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());
    assert_healthy(&healthcheck(&env_for(&app, &server)), "TLS, DNS name only");
    server.stop();

    // A wildcard name first: the check uses the first name it can put in a URL.
    let name = dns_only_leaf(&pki, &["*.office.invalid", "tsa.office.invalid"]);
    tls_config(&app, &pki, &name.0, &name.1);
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());
    assert_healthy(
        &healthcheck(&env_for(&app, &server)),
        "TLS, a wildcard first",
    );
    server.stop();
}

/// A server certificate from the test server CA naming only the DNS names `dns`; (cert,
/// key) paths.
fn dns_only_leaf(pki: &Pki, dns: &[&str]) -> (String, String) {
    let san: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
    let san = san.join(",");
    let (cert, key, csr, ext) = (
        pki.path("dns-only.pem"),
        pki.path("dns-only.key"),
        pki.path("dns-only.csr"),
        pki.path("dns-only.ext"),
    );
    std::fs::write(
        &ext,
        format!("basicConstraints=CA:FALSE\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &format!("/CN={}", dns.last().copied().unwrap_or("x")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &pki.path("server-ca.pem"),
        "-CAkey",
        &pki.path("server-ca.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (cert, key)
}

/// `auditstamp listener --config FILE` with `env`: (success, stdout, stderr).
fn listener(config: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(bin());
    c.args(["listener", "--config"])
        .arg(config)
        .env_remove("AUDITSTAMP_LISTEN")
        .env_remove("AUDITSTAMP_STATE_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn listener_names_where_to_connect() {
    let templates = root().join("firmware-config");
    // The development configuration: plain HTTP.
    let (ok, out, err) = listener(&templates.join("dev.toml"), &[]);
    assert!(ok, "{err}");
    assert_eq!(out, "scheme=http\naddress=127.0.0.1:8318\n");
    // The production templates: TLS; a wildcard address is reached on loopback.
    let (ok, out, err) = listener(&templates.join("appliance.toml"), &[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "scheme=https\naddress=127.0.0.1:8318\ncert_file=/etc/auditstamp/tls/server.pem\n"
    );
    let (ok, out, err) = listener(
        &templates.join("witness.toml"),
        &[("AUDITSTAMP_LISTEN", "[::]:9320")],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "scheme=https\naddress=[::1]:9320\ncert_file=/etc/auditstamp-witness/tls/server.pem\n"
    );
    // A port chosen at start cannot be checked from outside: a clear error.
    let (ok, _, err) = listener(
        &templates.join("dev.toml"),
        &[("AUDITSTAMP_LISTEN", "127.0.0.1:0")],
    );
    assert!(!ok);
    assert!(
        err.contains("port 0") && err.contains("AUDITSTAMP_LISTEN"),
        "{err}"
    );
    // A missing file is named.
    let (ok, _, err) = listener(Path::new("/nonexistent/auditstamp.toml"), &[]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/auditstamp.toml"), "{err}");
}

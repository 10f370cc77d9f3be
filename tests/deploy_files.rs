//! The deployment files are valid: the systemd unit passes `systemd-analyze verify` and
//! keeps its exposure score low, and the shell scripts parse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn systemd_unit_is_valid_and_hardened() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        panic!("systemd-analyze is missing; install it with: apt-get install -y systemd");
    };
    assert!(probe.status.success());
    // (--threshold is on the 0..100 scale behind the printed 0..10 score.)
    // Point ExecStart at a binary that exists here, so that verify can check it.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root().join("deploy/auditstamp.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/auditstamp",
            env!("CARGO_BIN_EXE_auditstamp"),
        );
    let path = dir.path().join("auditstamp.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=30"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 3.0: {text}");
    assert!(text.contains("Overall exposure level"), "{text}");
}

#[test]
fn shell_scripts_parse() {
    for f in [
        "deploy/quickstart.sh",
        "deploy/test.sh",
        "deploy/lib.sh",
        "deploy/bench.sh",
        "deploy/container-entrypoint.sh",
        "deploy/healthcheck.sh",
        "deploy/demo-witness.sh",
        "deploy/bench-witness.sh",
        "hsm-sim/create-token.sh",
    ] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(root().join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `(major, minor, patch)` of a version such as "1.88" or "1.88.0".
fn rust_version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap());
    let major = parts.next().unwrap();
    (major, parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The `rust-version` Cargo.toml states.
fn stated_rust_version() -> String {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    manifest["package"]["rust-version"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn stated_rust_version_covers_the_locked_dependencies() {
    let stated = stated_rust_version();
    // The packages a `cargo build` and `cargo test` on this machine's platform compile:
    // from our crate along every dependency (ours: also dev and build), theirs: normal
    // and build ones.
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages: std::collections::HashMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![meta["resolve"]["root"].as_str().unwrap()];
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            todo.extend(
                nodes[id]["deps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["pkg"].as_str().unwrap()),
            );
        }
    }
    assert!(seen.len() > 100, "only {} packages", seen.len());
    let mut newer: Vec<String> = seen
        .iter()
        .filter_map(|id| {
            let p = packages[id];
            let needs = p["rust_version"].as_str()?;
            (rust_version(needs) > rust_version(&stated))
                .then(|| {
                    let (name, version) = (p["name"].as_str()?, p["version"].as_str()?);
                    Some(format!("{name} {version} needs Rust {needs}"))
                })
                .flatten()
        })
        .collect();
    newer.sort();
    assert!(
        newer.is_empty(),
        "Cargo.toml says rust-version = {stated:?}, but the locked dependencies need more; \
         raise it (and README.md) to the highest of:\n{}",
        newer.join("\n")
    );
}

#[test]
fn docs_state_the_same_rust_version() {
    let stated = stated_rust_version();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust {stated}+")),
        "README.md does not say Rust {stated}+"
    );
}

/// Runs deploy/lib.sh's `ensure_rust` with `manifest` (this checkout's when `None`).
fn ensure_rust(manifest: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(". deploy/lib.sh && ensure_rust \"$1\"")
        .arg("ensure_rust")
        .arg(manifest.map(|m| m.as_os_str()).unwrap_or_default())
        .current_dir(root());
    c.output().unwrap()
}

#[test]
fn ensure_rust_checks_the_installed_rustc_against_rust_version() {
    // This machine's rustc is new enough for the checkout's own rust-version.
    let out = ensure_rust(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A manifest asking for more than any rustc is: the exact fix is printed.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("Cargo.toml");
    std::fs::write(
        &manifest,
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\nrust-version = \"99.0\"\n",
    )
    .unwrap();
    let out = ensure_rust(Some(&manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("older than Rust 99.0"), "{stderr}");
    // The fix for this machine's kind of install: rustup's update, or installing rustup
    // over a distribution's rustc.
    assert!(
        stderr.contains("rustup update stable") || stderr.contains("sh.rustup.rs"),
        "{stderr}"
    );
}

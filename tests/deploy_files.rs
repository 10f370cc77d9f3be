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

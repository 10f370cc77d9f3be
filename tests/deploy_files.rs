//! The deployment files are valid: the systemd unit passes `systemd-analyze verify` and
//! keeps its exposure score low, the shell scripts parse, and the documentation's links
//! resolve inside the repository.
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
        "deploy/demo-cluster.sh",
        "deploy/bench-cluster.sh",
        "deploy/bench-witness.sh",
        "deploy/bench-witness-postgres.sh",
        "deploy/bench-archive.sh",
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

/// The anchor GitHub gives a Markdown heading: lower case, spaces to `-`, every character
/// but letters, digits, `-` and `_` dropped.
fn heading_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of `text`'s headings (outside fenced code), with GitHub's `-1`, `-2`
/// suffixes for repeated ones.
fn anchors(text: &str) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut out = std::collections::HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(rest) = (!fenced).then(|| line.trim_start_matches('#')) else {
            continue;
        };
        if rest.len() == line.len() || !rest.starts_with(' ') {
            continue;
        }
        let slug = heading_slug(&rest.replace('`', ""));
        let n = seen.entry(slug.clone()).or_default();
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// Every relative link of `text` (outside fenced code): `](target)`.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
        }
    }
    links
}

#[test]
fn documentation_links_resolve_inside_the_repository() {
    let mut pages = vec![
        root().join("README.md"),
        root().join("firmware-config/README.md"),
    ];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    assert!(pages.len() > 4, "docs/ holds the documentation pages");
    let repo = root().canonicalize().unwrap();
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for link in relative_links(&text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let shown = format!("{}: ({link})", page.strip_prefix(root()).unwrap().display());
            let Ok(resolved) = target.canonicalize() else {
                broken.push(format!("{shown}: no such file"));
                continue;
            };
            if !resolved.starts_with(&repo) {
                broken.push(format!("{shown}: outside the repository"));
                continue;
            }
            if !anchor.is_empty() {
                let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{shown}: no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn heading_anchors_follow_github() {
    let text = "# Operator's runbook\n## `bench tokens` figures\n```\n# not a heading\n```\n## Witness\n## Witness\n#nospace\n";
    let a = anchors(text);
    for want in [
        "operators-runbook",
        "bench-tokens-figures",
        "witness",
        "witness-1",
    ] {
        assert!(a.contains(want), "{want} in {a:?}");
    }
    assert_eq!(a.len(), 4, "{a:?}");
    assert_eq!(
        relative_links("[a](docs/x.md#y) [b](https://e.org) `x`\n```\n[c](z.md)\n```"),
        vec!["docs/x.md#y".to_owned()]
    );
}

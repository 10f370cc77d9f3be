//! `GET /metrics` of a real appliance and a real witness, read the way a scraper reads it:
//! every scrape parses under the text format's rules (checked strictly here, and by the
//! Prometheus Python client's parser), label values come back exactly as configured (a
//! witness named with `"` and `\`), every documented metric keeps its name and type, and
//! the standard process metrics are there and plausible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::verifier_key;
use common::*;

/// A sample's labels: (name, value unescaped), in the order written.
type Labels = Vec<(String, String)>;

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// A scrape, parsed: each family's type, and the samples in order.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
            .value
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// A value as the format writes it (Go's ParseFloat, with +Inf, -Inf and NaN).
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.contains(['i', 'I', 'n', 'N']) => Err(format!("bad value {s:?}")),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// `{name="value",...}` at the start of `rest`: the labels, unescaped, and what follows.
fn parse_labels(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("expected name=\" in {rest:?}"))?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {after:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape \\{other:?} in {after:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} in {rest:?}"));
        }
    }
}

/// Parses a scrape in the text exposition format 0.0.4, refusing what a strict parser
/// (Prometheus's own) refuses: malformed lines, bad escapes, a second TYPE or HELP for a
/// family, samples of a family not together or before its TYPE, a sample of a typed
/// family under a name the type does not allow, duplicate series.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    if !text.ends_with('\n') {
        return Err("the text does not end with a line feed".into());
    }
    let mut helps = HashSet::new();
    let mut done = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_name(name, true) || !helps.insert(name.to_owned()) {
                return Err(at("bad or second HELP".into()));
            }
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err(at("invalid escape in HELP".into()));
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            if !is_name(name, true)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(at("bad TYPE".into()));
            }
            if scrape
                .types
                .insert(name.to_owned(), kind.to_owned())
                .is_some()
            {
                return Err(at("second TYPE".into()));
            }
            if let Some(previous) = current.replace(name.to_owned()) {
                done.insert(previous);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..end];
        if !is_name(name, true) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = match line[end..].strip_prefix('{') {
            Some(rest) => parse_labels(rest).map_err(at)?,
            None => (Vec::new(), &line[end..]),
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| at(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() || !rest.starts_with(' ') {
            return Err(at("junk after the value".into()));
        }
        // The family this sample belongs to, by the rules of its type.
        let family = scrape
            .types
            .iter()
            .find(|(f, kind)| match kind.as_str() {
                "histogram" => [
                    format!("{f}_bucket"),
                    format!("{f}_sum"),
                    format!("{f}_count"),
                ]
                .contains(&name.to_owned()),
                "summary" => {
                    name == f.as_str() || name == format!("{f}_sum") || name == format!("{f}_count")
                }
                _ => name == f.as_str(),
            })
            .map(|(f, _)| f.clone())
            .ok_or_else(|| at("sample of no TYPE'd family (or before its TYPE)".into()))?;
        if done.contains(&family) || current.as_deref() != Some(family.as_str()) {
            return Err(at(format!("sample of {family} away from its family")));
        }
        if name.ends_with("_bucket") && !labels.iter().any(|(k, _)| k == "le") {
            return Err(at("bucket without le".into()));
        }
        let mut key: Labels = labels.clone();
        key.sort();
        if !series.insert((name.to_owned(), key)) {
            return Err(at("duplicate series".into()));
        }
        scrape.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(scrape)
}

/// The Prometheus project's Python client parses `text` (Debian's
/// python3-prometheus-client, run with Debian's python3).
fn python_parses(text: &str) -> Result<(), String> {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families as p\n\
             n = sum(len(f.samples) for f in p(sys.stdin.read()))\n\
             print(n)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 is missing: apt-get install -y python3-prometheus-client");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "the Prometheus Python client is missing: apt-get install -y python3-prometheus-client \
         (./deploy/test.sh installs it)"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr.into_owned())
    }
}

fn scrape(url: &str) -> (String, String) {
    let rt = rt();
    rt.block_on(async {
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (ct, r.text().await.unwrap())
    })
}

/// Parses `text` both ways; panics with the text on a refusal.
fn parse_strictly(text: &str) -> Scrape {
    let parsed = parse(text).unwrap_or_else(|e| panic!("{e}\nin the scrape:\n{text}"));
    if let Err(e) = python_parses(text) {
        panic!("the Prometheus Python client refuses the scrape: {e}\n{text}");
    }
    parsed
}

/// The process metrics are there and plausible.
fn check_process_metrics(s: &Scrape) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = s.value("process_start_time_seconds", &[]);
    assert!(
        start <= now + 1.0 && start > now - 3600.0,
        "process_start_time_seconds {start}, now {now}"
    );
    let rss = s.value("process_resident_memory_bytes", &[]);
    assert!(rss > 1_000_000.0, "rss {rss}");
    assert!(s.value("process_virtual_memory_bytes", &[]) >= rss);
    let open = s.value("process_open_fds", &[]);
    assert!(
        open >= 5.0 && open <= s.value("process_max_fds", &[]),
        "{open}"
    );
    assert!(s.value("process_threads", &[]) >= 2.0);
    assert!(s.value("process_cpu_seconds_total", &[]) >= 0.0);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ] {
        assert_eq!(s.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
}

/// The name of the appliance's witness: a quote and a backslash, which a note key allows.
const ODD_WITNESS: &str = r#"witness"7\x.example"#;

#[test]
fn appliance_scrape_parses_with_odd_witness_names() {
    let app = Appliance::new("ecdsa-p256");
    let cosigner = Cosigner {
        name: ODD_WITNESS.into(),
        public_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes(),
    };
    // A witness nobody listens for: its submissions fail, and are counted.
    app.write_config(&[(
        "seal_interval_ms = 200\n",
        &format!(
            "seal_interval_ms = 200\nwitness_timeout_ms = 500\n[[chain.witness]]\n\
             url = \"http://127.0.0.1:9\"\nkey = {:?}\n",
            cosigner.verifier_key()
        ),
    )]);
    let server = app.start();
    let (content_type, text) = scrape(&server.url("/metrics"));
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let s = parse_strictly(&text);
    // The label value comes back exactly as configured.
    let witness = [("witness", ODD_WITNESS)];
    assert_eq!(s.value("auditstamp_witness_cosigned_total", &witness), 0.0);
    assert!(s.value("auditstamp_witness_failures_total", &witness) >= 0.0);
    // Every metric the README, the tests and dashboards name keeps its name and type
    // (auditstamp_witness_size shows once a witness has cosigned).
    for (name, kind) in [
        ("auditstamp_tokens_issued_total", "counter"),
        ("auditstamp_tokens_refused_total", "counter"),
        ("auditstamp_http_responses_total", "counter"),
        ("auditstamp_request_duration_seconds", "histogram"),
        ("auditstamp_hsm_signatures_total", "counter"),
        ("auditstamp_hsm_errors_total", "counter"),
        ("auditstamp_hsm_reconnects_total", "counter"),
        ("auditstamp_chain_events", "gauge"),
        ("auditstamp_chain_commits_total", "counter"),
        ("auditstamp_chain_sealed_events", "gauge"),
        ("auditstamp_witness_cosigned_total", "counter"),
        ("auditstamp_witness_failures_total", "counter"),
        ("auditstamp_certificate_days_remaining", "gauge"),
        ("auditstamp_certificate_not_after_seconds", "gauge"),
    ] {
        assert_eq!(
            s.types.get(name).map(String::as_str),
            Some(kind),
            "{name} in\n{text}"
        );
    }
    assert_eq!(
        s.value(
            "auditstamp_tokens_refused_total",
            &[("fail_info", "badAlg")]
        ),
        0.0
    );
    assert_eq!(
        s.value(
            "auditstamp_request_duration_seconds_count",
            &[("route", "tsa")]
        ),
        0.0
    );
    assert_eq!(
        s.value("auditstamp_hsm_errors_total", &[("key", "chain")]),
        0.0
    );
    assert!(s.value("auditstamp_certificate_days_remaining", &[]) > 0.0);
    check_process_metrics(&s);
    server.stop();
}

#[test]
fn witness_scrape_parses_with_process_metrics() {
    let origin = "metrics.test.example/chain";
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let w = WitnessNode::new(&format!(
        "[[log]]\norigin = \"{origin}\"\nkey = \"{}\"\nurl = \"https://metrics.test.example\"\n",
        verifier_key(origin, &key.to_bytes())
    ));
    let server = w.start();
    let (content_type, text) = scrape(&server.url("/metrics"));
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let s = parse_strictly(&text);
    for (name, kind) in [
        ("auditstamp_witness_cosigned_total", "counter"),
        ("auditstamp_witness_refused_total", "counter"),
        ("auditstamp_witness_failed_total", "counter"),
        ("auditstamp_witness_appliances", "gauge"),
        ("auditstamp_witness_appliances_stale", "gauge"),
        ("auditstamp_witness_alerts_total", "counter"),
        ("auditstamp_witness_store_disk_bytes", "gauge"),
        ("auditstamp_witness_store_record_bytes", "gauge"),
    ] {
        assert_eq!(
            s.types.get(name).map(String::as_str),
            Some(kind),
            "{name} in\n{text}"
        );
    }
    assert_eq!(
        s.value("auditstamp_witness_refused_total", &[("reason", "fork")]),
        0.0
    );
    assert_eq!(s.value("auditstamp_witness_appliances", &[]), 1.0);
    assert_eq!(s.value("auditstamp_witness_appliances_stale", &[]), 1.0);
    check_process_metrics(&s);
    server.stop();
}

#[test]
fn the_strict_parser_refuses_what_prometheus_refuses() {
    // Cases that break a scrape; each must be refused, or the checks above prove nothing.
    for bad in [
        "# TYPE a_total counter\na_total{w=\"x\"y\"} 1\n",
        "# TYPE a_total counter\na_total{w=\"x\ny\"} 1\n",
        "# TYPE a_total counter\na_total{w=\"x\\y\"} 1\n",
        "# TYPE a_total counter\na_total{w=\"x\\\"} 1\n",
        "# TYPE a counter\n# TYPE b counter\na 1\n",
        "a 1\n",
        "# TYPE a gauge\na 1\na 2\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\na 1",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
    let good = "# HELP a_total x\\\\y\n# TYPE a_total counter\na_total{w=\"q\\\"\\\\\\n\"} 1\n";
    let s = parse(good).unwrap();
    assert_eq!(s.samples[0].labels[0].1, "q\"\\\n");
    python_parses(good).unwrap();
    assert!(python_parses("# TYPE a_total counter\na_total{w=\"x\"y\"} 1\n").is_err());
}

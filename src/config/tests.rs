//! Tests of `config`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

const GOOD: &str = r#"
[node]
id = 7
name = "test"
state_dir = "/tmp/x"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "PIN"

[tsa]
key_label = "tsa"
hash_algorithms = ["sha256", "sha512"]
policies = ["1.2.3.4", "1.2.3.5"]
default_policy = "1.2.3.4"
accuracy = { seconds = 1 }

[http]
listen = "127.0.0.1:8318"
plain_http = true

[chain]
key_label = "chain"
"#;

fn err(text: &str) -> String {
    parse(text, &Overrides::default()).unwrap_err().to_string()
}

#[test]
fn good_config_parses() {
    let v = parse(GOOD, &Overrides::default()).unwrap();
    assert_eq!(
        v.raw.http.listener_limits(),
        ListenerLimits {
            header_timeout_ms: 5000,
            max_connections: 4096,
            max_connections_per_address: 64,
            idle_timeout_ms: 30_000,
            http2_ping_interval_ms: 10_000,
            http2_ping_timeout_ms: 10_000,
        }
    );
    assert_eq!(v.raw.node.id, 7);
    assert_eq!(v.policies.len(), 2);
    assert_eq!(v.pin, PinSource::Env("PIN".into()));
    assert_eq!(v.raw.hsm.sessions, 2);
    assert!(v.raw.tsa.include_chain);
    assert!(!v.raw.clock.require_sync);
}

#[test]
fn shipped_configs_parse() {
    for f in ["firmware-config/dev.toml", "firmware-config/appliance.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        parse(&text, &Overrides::default()).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn overrides_apply() {
    let o = Overrides {
        state_dir: Some("/srv/a".into()),
        listen: Some("127.0.0.1:9".into()),
    };
    let v = parse(GOOD, &o).unwrap();
    assert_eq!(v.state_dir(), Path::new("/srv/a"));
    assert_eq!(v.listen.port(), 9);
}

#[test]
fn unknown_key_is_named() {
    let e = err(&GOOD.replace("[http]", "[http]\nlisten_port = 5"));
    assert!(e.contains("listen_port"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let cases = [
        (
            GOOD.replace("\"sha512\"", "\"sha1\""),
            "tsa.hash_algorithms",
        ),
        (GOOD.replace("\"1.2.3.5\"", "\"nope\""), "tsa.policies"),
        (
            GOOD.replace(
                "\"1.2.3.5\"",
                "\"2.25.176516865631286782691444617091934544541\"",
            ),
            "tsa.policies",
        ),
        (GOOD.replace("\"1.2.3.5\"", "\"1.2\""), "tsa.policies"),
        (
            GOOD.replace("default_policy = \"1.2.3.4\"", "default_policy = \"1.9\""),
            "tsa.default_policy",
        ),
        (GOOD.replace("seconds = 1", "seconds = 0"), "tsa.accuracy"),
        (
            GOOD.replace("seconds = 1", "millis = 1000"),
            "tsa.accuracy.millis",
        ),
        (GOOD.replace("127.0.0.1:8318", "localhost"), "http.listen"),
        (
            GOOD.replace(
                "listen = \"127.0.0.1:8318\"",
                "listen = \"127.0.0.1:8318\"\nworker_threads = 5000",
            ),
            "http.worker_threads",
        ),
        (
            GOOD.replace("pin_env = \"PIN\"", "pin = \"1234\""),
            "hsm.pin",
        ),
        (GOOD.replace("pin_env = \"PIN\"", ""), "hsm.pin_env"),
        (GOOD.replace("token_label = \"t\"", ""), "hsm.token_label"),
        (
            GOOD.replace("key_label = \"chain\"", "key_label = \"\""),
            "chain.key_label",
        ),
        (
            GOOD.replace(
                "key_label = \"chain\"",
                "key_label = \"c\"\norigin = \"a b\"",
            ),
            "chain.origin",
        ),
        (
            GOOD.replace(
                "key_label = \"chain\"",
                "key_label = \"c\"\nseal_interval_ms = 1",
            ),
            "chain.seal_interval_ms",
        ),
        (
            GOOD.replace(
                "key_label = \"chain\"",
                "key_label = \"c\"\nmax_block_events = 0",
            ),
            "chain.max_block_events",
        ),
        (
            GOOD.replace(
                "key_label = \"chain\"",
                "key_label = \"c\"\nmax_batch_bytes = 10",
            ),
            "chain.max_batch_bytes",
        ),
        (GOOD.replace("[chain]\nkey_label = \"chain\"", ""), "chain"),
        (GOOD.replace("plain_http = true", ""), "http.tls"),
        (
            GOOD.replace(
                "plain_http = true",
                "plain_http = true\n[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"",
            ),
            "http.plain_http",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nrequire_client_cert = [\"tsa\"]",
            ),
            "http.tls.require_client_cert",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_ca_file = \"ca\"\nrequire_client_cert = [\"all\"]",
            ),
            "http.tls.require_client_cert",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nauditors_of_all = [\"audit-office\"]",
            ),
            "http.tls.auditors_of_all",
        ),
        (
            GOOD.replace("plain_http = true", "plain_http = true\nheader_timeout_ms = 5"),
            "http.header_timeout_ms",
        ),
        (
            GOOD.replace("plain_http = true", "plain_http = true\nmax_connections = 0"),
            "http.max_connections",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "plain_http = true\nmax_connections_per_address = 0",
            ),
            "http.max_connections_per_address",
        ),
        (
            GOOD.replace("plain_http = true", "plain_http = true\nidle_timeout_ms = 10"),
            "http.idle_timeout_ms",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "plain_http = true\nhttp2_ping_interval_ms = 0",
            ),
            "http.http2_ping_interval_ms",
        ),
        (
            GOOD.replace(
                "plain_http = true",
                "plain_http = true\nhttp2_ping_timeout_ms = 9999999",
            ),
            "http.http2_ping_timeout_ms",
        ),
    ];
    for (text, key) in cases {
        let e = err(&text);
        assert!(e.contains(key), "expected {key} in {e}");
        assert!(!e.contains("1234"), "PIN leaked: {e}");
    }
}

#[test]
fn pin_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pin"), "s3cret\n").unwrap();
    let text = GOOD
        .replace("pin_env = \"PIN\"", "pin_file = \"pin\"")
        .replace("/tmp/x", dir.path().to_str().unwrap());
    let v = parse(&text, &Overrides::default()).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(v.pin.read().unwrap().expose_secret(), "s3cret");
    let missing = PinSource::File(dir.path().join("nope")).read().unwrap_err();
    assert!(missing.to_string().contains("hsm.pin_file"));
}

#[test]
fn archive_section_is_checked_by_key() {
    let with = |section: &str| format!("{GOOD}\n[archive]\n{section}\n");
    let v = parse(&with("url = \"s3://bucket/app-1\""), &Overrides::default()).unwrap();
    let a = v.raw.archive.unwrap();
    assert_eq!(a.region, "us-east-1");
    assert_eq!(a.secret_access_key_env, "AWS_SECRET_ACCESS_KEY");
    assert_eq!((a.concurrency, a.timeout_ms), (16, 30_000));
    assert!(!a.witness_after_archive);
    assert_eq!(a.retain_events, None);
    assert!(parse(GOOD, &Overrides::default())
        .unwrap()
        .raw
        .archive
        .is_none());

    for (section, key, says) in [
        ("url = \"s3:///app\"", "archive.url", "names no bucket"),
        ("url = \"ftp://x/y\"", "archive.url", "give s3://"),
        ("url = \"file://relative\"", "archive.url", "give s3://"),
        (
            "url = \"file:///srv/a\"\nendpoint = \"https://s3.example\"",
            "archive.endpoint",
            "s3:// archives only",
        ),
        (
            "url = \"s3://b\"\nendpoint = \"s3.example:9000\"",
            "archive.endpoint",
            "https://",
        ),
        (
            "url = \"s3://b\"\nconcurrency = 0",
            "archive.concurrency",
            "between 1 and 256",
        ),
        (
            "url = \"s3://b\"\ntimeout_ms = 10",
            "archive.timeout_ms",
            "between 1000",
        ),
        (
            "url = \"s3://b\"\nretain_events = 0",
            "archive.retain_events",
            "at least 1",
        ),
    ] {
        let e = err(&with(section));
        assert!(e.contains(key) && e.contains(says), "{section}: {e}");
    }
    // A secret written in the file is refused by name.
    let e = err(&with("url = \"s3://b\"\nsecret_access_key = \"x\""));
    assert!(e.contains("secret_access_key"), "{e}");
    assert!(!e.contains("\"x\""), "{e}");
}

//! `auditstamp verify token|proof|chain`: the data center's checks, in software, offline
//! (no HSM, no configuration): one line per check for people, `--json` for scripts.
//!
//! Exit codes (as every command, [`CliError::exit_code`]): 0 when what was checked is
//! valid, 1 when it is not (the output names the check that failed), 2 when it could not be
//! checked (bad arguments, an unreadable file, an unreachable appliance).
//!
//! - `verify token` runs the whole checklist of `auditstamp::verify` on a TimeStampResp or
//!   a bare token ([`verify_any_detailed`]).
//! - `verify proof` checks an event's proof bundle (`GET /v1/events/{i}`) or a bare C2SP
//!   tlog-proof: the leaf, the inclusion proof, the checkpoint's signature, and for a
//!   bundle the block header, its signature and its RFC 3161 token.
//! - `verify chain` audits a whole log, from an export or from a live appliance's public
//!   read API, with the drivers `chain verify` uses ([`super::audit`]).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use const_oid::ObjectIdentifier;
use der::Decode;
use serde_json::{json, Value};

use super::audit;
use super::CliError;
use crate::chain::block::SealedBlock;
use crate::chain::event::StoredEvent;
use crate::chain::note::{Checkpoint, SignedNote, VerifierKey};
use crate::chain::proof::TlogProof;
use crate::chain::tlog::{self, Hash};
use crate::tsp::HashAlgorithm;
use crate::verify::chain::{ed25519_key_id, tiles};
use crate::verify::{verify_any_detailed, Report, Rule, TokenOptions, ValidAt, VerifiedToken};

/// `auditstamp verify ...`
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Check an RFC 3161 time-stamp token (a TimeStampResp or a bare token) against the
    /// data and pinned roots: every rule of the checklist.
    Token(TokenArgs),
    /// Check an event's proof bundle (`GET /v1/events/{i}`) or a bare C2SP tlog-proof.
    Proof(ProofArgs),
    /// Audit a whole appliance log: a stopped appliance's store, an export, or a live
    /// appliance (`chain verify` is the same command).
    Chain(super::audit::AuditArgs),
}

/// When the TSA's certificate path must be valid.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum At {
    /// At the token's genTime (the time the TSA vouches for).
    Gentime,
    /// Now.
    Now,
    /// At both.
    Both,
}

/// `verify token`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("imprint").required(true).args(["data", "digest"]))]
pub struct TokenArgs {
    /// The token: a DER TimeStampResp (.tsr) or TimeStampToken (.tst).
    #[arg(long = "in", value_name = "TOKEN")]
    pub input: PathBuf,
    /// The time-stamped data (hashed with --hash, or with the token's own imprint
    /// algorithm when --hash is not given).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// The data's digest, in hex (its algorithm from --hash, or from its length).
    #[arg(long, value_name = "HEX")]
    pub digest: Option<String>,
    /// The data's hash algorithm.
    #[arg(long, value_enum)]
    pub hash: Option<HashArg>,
    /// The pinned root certificates (PEM, or one DER certificate).
    #[arg(long, value_name = "ROOTS.pem")]
    pub ca: PathBuf,
    /// Certificates that help to build the path (the TSA's and intermediates, for tokens
    /// without them); never trusted. May be given more than once.
    #[arg(long, value_name = "CHAIN.pem")]
    pub untrusted: Vec<PathBuf>,
    /// The nonce sent in the request: decimal, or hex with 0x.
    #[arg(long, value_name = "N")]
    pub nonce: Option<String>,
    /// An accepted policy OID; may be given more than once (default: any policy).
    #[arg(long = "policy", value_name = "OID")]
    pub policies: Vec<String>,
    /// When the TSA's certificate path must be valid.
    #[arg(long, value_enum, default_value = "gentime")]
    pub at: At,
    /// Accept an ESSCertID v1 (signingCertificate, SHA-1) when signingCertificateV2 is
    /// absent (OpenSSL's default before 3.x configurations set ess_cert_id_alg).
    #[arg(long)]
    pub legacy_ess_v1: bool,
    /// Accept a response whose status is grantedWithMods.
    #[arg(long)]
    pub allow_granted_with_mods: bool,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

/// An imprint hash algorithm.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HashArg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl From<HashArg> for HashAlgorithm {
    fn from(h: HashArg) -> Self {
        match h {
            HashArg::Sha256 => HashAlgorithm::Sha256,
            HashArg::Sha384 => HashAlgorithm::Sha384,
            HashArg::Sha512 => HashAlgorithm::Sha512,
        }
    }
}

/// `verify proof`
#[derive(Debug, Args)]
pub struct ProofArgs {
    /// The proof bundle (the JSON `GET /v1/events/{i}` returns) or a bare C2SP tlog-proof
    /// (`c2sp.org/tlog-proof@v1`).
    #[arg(long = "in", value_name = "BUNDLE")]
    pub input: PathBuf,
    /// The appliance's verifier key (`name+id+key`, as its startup log and
    /// `verifier-key.txt` show), or a file holding it.
    #[arg(long, value_name = "APPLIANCE_KEY")]
    pub key: String,
    /// The TSA's root certificates (PEM), to check the block's time-stamp token; needed
    /// for a bundle.
    #[arg(long, value_name = "ROOTS.pem")]
    pub ca: Option<PathBuf>,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `verify` subcommand.
pub fn run(cmd: VerifyCommand) -> Result<(), CliError> {
    match cmd {
        VerifyCommand::Token(a) => token(&a),
        VerifyCommand::Proof(a) => proof(&a),
        VerifyCommand::Chain(a) => super::audit::run(&a),
    }
}

// ---------------------------------------------------------------------------------------
// Lines of checks
// ---------------------------------------------------------------------------------------

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    Fail,
    /// Not asked for by the options, or not possible for this input.
    Skipped,
    /// Not reached: an earlier check failed.
    NotChecked,
}

/// One check, as printed.
#[derive(Debug, Clone)]
struct Check {
    name: &'static str,
    state: State,
    detail: String,
}

impl Check {
    fn new(name: &'static str, state: State, detail: impl Into<String>) -> Check {
        Check {
            name,
            state,
            detail: detail.into(),
        }
    }

    fn line(&self) -> String {
        let tag = match self.state {
            State::Ok => "ok",
            State::Fail => "FAIL",
            State::Skipped => "skip",
            State::NotChecked => "-",
        };
        format!("{tag:<4} {:<19} {}", self.name, self.detail)
    }

    fn json(&self) -> Value {
        json!({
            "rule": self.name,
            "ok": match self.state {
                State::Ok => Value::Bool(true),
                State::Fail => Value::Bool(false),
                State::Skipped | State::NotChecked => Value::Null,
            },
            "status": match self.state {
                State::Ok => "ok",
                State::Fail => "fail",
                State::Skipped => "skipped",
                State::NotChecked => "not-checked",
            },
            "detail": self.detail,
        })
    }
}

/// Prints `checks` (lines, or the JSON `extra` with `valid` and `checks` added); the
/// error of the first failed check, if any.
fn finish(
    checks: &[Check],
    json: bool,
    mut extra: serde_json::Map<String, Value>,
) -> Result<(), CliError> {
    let failed = checks.iter().find(|c| c.state == State::Fail);
    if json {
        extra.insert("valid".into(), Value::Bool(failed.is_none()));
        extra.insert(
            "checks".into(),
            Value::Array(checks.iter().map(Check::json).collect()),
        );
        extra.insert(
            "failed".into(),
            failed.map_or(Value::Null, |c| Value::String(c.name.into())),
        );
        println!("{}", Value::Object(extra));
    } else {
        for c in checks {
            println!("{}", c.line());
        }
        println!("{}", if failed.is_some() { "INVALID" } else { "VALID" });
    }
    match failed {
        Some(c) => Err(CliError::Invalid(format!("{}: {}", c.name, c.detail))),
        None => Ok(()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    audit::read(path)
}

// ---------------------------------------------------------------------------------------
// verify token
// ---------------------------------------------------------------------------------------

/// A nonce as big-endian unsigned bytes: decimal digits, or hex after `0x`.
fn parse_nonce(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let bad = || format!("--nonce {text:?}: give a non-negative integer, decimal or 0xHEX");
    let mut bytes = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let even = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_owned()
        };
        hex::decode(even).map_err(|_| bad())?
    } else {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Decimal to big-endian base 256.
        let mut out: Vec<u8> = Vec::new();
        for d in t.bytes() {
            let mut carry = u32::from(d - b'0');
            for byte in out.iter_mut().rev() {
                let v = u32::from(*byte) * 10 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                out.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        out
    };
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    if bytes.len() > 64 {
        return Err(format!("--nonce {text:?}: longer than 512 bits"));
    }
    Ok(bytes)
}

/// The imprint algorithm the token states, if it can be read (to hash `--data` with).
fn token_imprint_algorithm(der: &[u8]) -> Option<HashAlgorithm> {
    let token = match crate::tsp::decode_response_status(der) {
        Ok(status) => status.token?,
        Err(_) => der.to_vec(),
    };
    crate::tsp::decode_tst_info_from_token(&token).ok()?.hash
}

fn hex_of(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn subject_of(cert: &x509_cert::Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

/// What each passed rule says, for people.
fn detail(rule: Rule, v: &VerifiedToken, size: usize, is_response: bool, at: At) -> String {
    let t = &v.tst_info;
    match rule {
        Rule::Der => format!(
            "a DER {}, {size} bytes",
            if is_response {
                "TimeStampResp"
            } else {
                "TimeStampToken"
            }
        ),
        Rule::Status => "granted".into(),
        Rule::CmsStructure => {
            "signedData, eContentType id-ct-TSTInfo, one SignerInfo, signed attributes in DER order"
                .into()
        }
        Rule::MessageDigest => "the messageDigest attribute is the eContent's digest".into(),
        Rule::TstInfo => "TSTInfo version 1".into(),
        Rule::GenTime => format!("{} ({})", t.gen_time, rfc3339(t.gen_time.to_system_time())),
        Rule::SignerBySid => format!("the sid names {}", subject_of(&v.signer)),
        Rule::SigningCertificate => {
            "the signing certificate attribute names the signer certificate".into()
        }
        Rule::Eku => {
            "extendedKeyUsage critical and solely timeStamping; not a CA; keyUsage allowed".into()
        }
        Rule::Chain => {
            let path: Vec<String> = v.chain.iter().map(subject_of).collect();
            let when = match at {
                At::Gentime => "at genTime",
                At::Now => "now",
                At::Both => "at genTime and now",
            };
            format!("{} (pinned); valid {when}", path.join(" <- "))
        }
        Rule::Signature => v.signature_algorithm.clone(),
        Rule::Imprint => format!(
            "{} {} is the data's",
            t.hash.map_or("?", |h| h.name()),
            hex::encode(&t.digest)
        ),
        Rule::Nonce => t.nonce.as_ref().map_or_else(
            || "?".into(),
            |n| format!("{} is the one sent", hex_of(n.as_bytes())),
        ),
        Rule::Policy => format!("{} is accepted", t.policy),
        Rule::TsaName => match &t.tsa {
            None => "absent".into(),
            Some(n) => format!("{} names the signer", general_name(n)),
        },
        Rule::Serial => format!("{} ({} bits)", hex_of(&t.serial), bits(&t.serial)),
        Rule::Extensions => "no critical extension".into(),
    }
}

/// A GeneralName for people: a directory name as RFC 4514 text, others as they are.
fn general_name(n: &x509_cert::ext::pkix::name::GeneralName) -> String {
    use x509_cert::ext::pkix::name::GeneralName;
    match n {
        GeneralName::DirectoryName(name) => name.to_string(),
        GeneralName::DnsName(s) => format!("DNS:{s}"),
        GeneralName::Rfc822Name(s) => format!("email:{s}"),
        GeneralName::UniformResourceIdentifier(s) => format!("URI:{s}"),
        other => format!("{other:?}"),
    }
}

fn bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (bytes.len() - i - 1) * 8 + (8 - bytes[i].leading_zeros() as usize),
    }
}

/// Why a rule was not run though the token got that far.
fn skipped_because(
    rule: Rule,
    is_response: Option<bool>,
    opts: &TokenOptions<'_>,
) -> Option<&'static str> {
    match rule {
        Rule::Status if is_response == Some(false) => Some("a bare TimeStampToken has no status"),
        Rule::Imprint if opts.imprint.is_none() => Some("no --data or --digest given"),
        Rule::Nonce if opts.nonce.is_none() => {
            Some("no --nonce given (a token with or without a nonce is accepted)")
        }
        Rule::Policy if opts.policies.is_none() => {
            Some("no --policy given (any policy is accepted)")
        }
        _ => None,
    }
}

/// The checks of a report, one per rule.
fn token_checks(report: &Report, opts: &TokenOptions<'_>, size: usize, at: At) -> Vec<Check> {
    let failed = report.result.as_ref().err().map(|e| e.rule());
    let mut checks = Vec::new();
    for rule in Rule::ALL {
        let name = rule.name();
        let check = if Some(rule) == failed {
            let message = report
                .result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            let message = message
                .strip_prefix(&format!("{name}: "))
                .map(str::to_owned)
                .unwrap_or(message);
            Check::new(name, State::Fail, message)
        } else if let Some(why) = skipped_because(rule, report.is_response, opts) {
            Check::new(name, State::Skipped, format!("not checked: {why}"))
        } else if let (true, Ok(v)) = (report.passed.contains(&rule), &report.result) {
            Check::new(
                name,
                State::Ok,
                detail(rule, v, size, report.is_response.unwrap_or(true), at),
            )
        } else if report.passed.contains(&rule) {
            Check::new(name, State::Ok, "passed")
        } else {
            Check::new(
                name,
                State::NotChecked,
                format!(
                    "not checked: verification stopped at {}",
                    failed.map_or("?", Rule::name)
                ),
            )
        };
        checks.push(check);
    }
    checks
}

fn tst_info_json(v: &VerifiedToken) -> Value {
    let t = &v.tst_info;
    json!({
        "serial": hex::encode(&t.serial),
        "gen_time": rfc3339(t.gen_time.to_system_time()),
        "gen_time_der": t.gen_time.to_string(),
        "policy": t.policy.to_string(),
        "hash_algorithm": t.hash.map(|h| h.name()),
        "digest": hex::encode(&t.digest),
        "nonce": t.nonce.as_ref().map(|n| hex::encode(n.as_bytes())),
        "accuracy_micros": t.accuracy.map(|a| u64::try_from(a.as_duration().as_micros()).unwrap_or(u64::MAX)),
        "ordering": t.ordering,
        "tsa": t.tsa.as_ref().map(general_name),
        "signer": subject_of(&v.signer),
        "chain": v.chain.iter().map(subject_of).collect::<Vec<_>>(),
        "signature_algorithm": v.signature_algorithm,
    })
}

fn token(a: &TokenArgs) -> Result<(), CliError> {
    let der = read(&a.input)?;
    let roots = audit::read_roots(&a.ca)?;
    let mut untrusted = Vec::new();
    for path in &a.untrusted {
        for (i, cert) in super::read_certificate_file(path)?.iter().enumerate() {
            untrusted.push(x509_cert::Certificate::from_der(cert).map_err(|e| {
                CliError::Other(format!(
                    "{} certificate {}: not a DER certificate: {e}",
                    path.display(),
                    i + 1
                ))
            })?);
        }
    }
    let (hash, digest) = match (&a.data, &a.digest) {
        (Some(path), _) => {
            let hash = a
                .hash
                .map(HashAlgorithm::from)
                .or_else(|| token_imprint_algorithm(&der))
                .unwrap_or(HashAlgorithm::Sha256);
            (hash, hash.digest(&read(path)?))
        }
        (None, Some(hexd)) => {
            let digest = hex::decode(hexd.trim())
                .map_err(|_| CliError::Other(format!("--digest {hexd:?}: not hex")))?;
            let hash = match a.hash {
                Some(h) => HashAlgorithm::from(h),
                None => match digest.len() {
                    32 => HashAlgorithm::Sha256,
                    48 => HashAlgorithm::Sha384,
                    64 => HashAlgorithm::Sha512,
                    n => {
                        return Err(CliError::Other(format!(
                            "--digest: {n} bytes is no SHA-256/384/512 digest; give --hash"
                        )))
                    }
                },
            };
            if digest.len() != hash.output_len() {
                return Err(CliError::Other(format!(
                    "--digest: {} bytes, but a {} digest has {}",
                    digest.len(),
                    hash.name(),
                    hash.output_len()
                )));
            }
            (hash, digest)
        }
        (None, None) => return Err(CliError::Other("give --data FILE or --digest HEX".into())),
    };
    let nonce = a
        .nonce
        .as_deref()
        .map(parse_nonce)
        .transpose()
        .map_err(CliError::Other)?;
    let policies = if a.policies.is_empty() {
        None
    } else {
        let mut list = Vec::new();
        for p in &a.policies {
            list.push(
                p.parse::<ObjectIdentifier>()
                    .map_err(|e| CliError::Other(format!("--policy {p:?}: not an OID: {e}")))?,
            );
        }
        Some(list)
    };
    let opts = TokenOptions {
        untrusted: &untrusted,
        imprint: Some((hash, &digest)),
        nonce: nonce.as_deref(),
        policies: policies.as_deref(),
        valid_at: match a.at {
            At::Gentime => ValidAt::GenTime,
            At::Now => ValidAt::Now,
            At::Both => ValidAt::Both,
        },
        allow_granted_with_mods: a.allow_granted_with_mods,
        legacy_ess_v1: a.legacy_ess_v1,
        ..TokenOptions::new(&roots)
    };
    let report = verify_any_detailed(&der, &opts);
    let checks = token_checks(&report, &opts, der.len(), a.at);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "form".into(),
        match report.is_response {
            Some(true) => "TimeStampResp".into(),
            Some(false) => "TimeStampToken".into(),
            None => Value::Null,
        },
    );
    extra.insert(
        "tst_info".into(),
        report.result.as_ref().map_or(Value::Null, tst_info_json),
    );
    finish(&checks, a.json, extra)
}

// ---------------------------------------------------------------------------------------
// verify proof
// ---------------------------------------------------------------------------------------

/// `--key`: a verifier key, or a file holding one.
fn verifier_key(arg: &str) -> Result<VerifierKey, CliError> {
    let text = if !arg.contains('+') && Path::new(arg).is_file() {
        String::from_utf8(read(Path::new(arg))?)
            .map_err(|_| CliError::Other(format!("--key {arg}: not a text file")))?
    } else {
        arg.to_owned()
    };
    VerifierKey::parse(text.trim()).map_err(|e| {
        CliError::Other(format!(
            "--key {arg:?}: not a verifier key (name+id+key): {e}"
        ))
    })
}

/// A proof bundle's parts, as found (each may be missing or malformed: the check that
/// needs it says so).
struct Bundle {
    index: Option<u64>,
    leaf: Result<Vec<u8>, String>,
    leaf_hash: Option<String>,
    tree_size: Option<u64>,
    path: Result<Vec<Hash>, String>,
    checkpoint: Option<String>,
    tlog_proof: Option<String>,
    block: Option<Value>,
}

fn parse_bundle(v: &Value) -> Bundle {
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let text = v
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the bundle has no {name}"))?;
        B64.decode(text)
            .map_err(|_| format!("{name} is not base64"))
    };
    let path = match v.get("inclusion_proof").and_then(Value::as_array) {
        None => Err("the bundle has no inclusion_proof list".to_owned()),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.as_str()
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or_else(|| format!("inclusion_proof[{i}] is not a base64 SHA-256 hash"))
            })
            .collect(),
    };
    Bundle {
        index: v
            .get("event")
            .and_then(|e| e.get("index"))
            .and_then(Value::as_u64),
        leaf: b64("leaf"),
        leaf_hash: v
            .get("leaf_hash")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tree_size: v.get("tree_size").and_then(Value::as_u64),
        path,
        checkpoint: v
            .get("checkpoint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tlog_proof: v
            .get("tlog_proof")
            .and_then(Value::as_str)
            .map(str::to_owned),
        block: v.get("block").cloned(),
    }
}

/// The checks every proof has: leaf, inclusion, checkpoint. Returns the checkpoint when
/// its signature verified.
/// What a proof says, bundle or tlog-proof (each part may be missing: the check that needs
/// it says so).
struct ProofParts<'a> {
    /// The event's index.
    index: Option<u64>,
    /// The leaf bytes.
    leaf: Result<&'a [u8], String>,
    /// The leaf hash shown beside them (hex).
    claimed_leaf_hash: Option<&'a str>,
    /// The event shown beside them: its JSON text as found, or why it could not be found.
    claimed_event: Option<Result<&'a str, String>>,
    /// The tree size the proof is for.
    tree_size: Option<u64>,
    /// The inclusion proof.
    path: Result<&'a [Hash], String>,
    /// The signed checkpoint note.
    checkpoint: Option<&'a str>,
}

fn proof_core(
    checks: &mut Vec<Check>,
    key: &VerifierKey,
    parts: ProofParts<'_>,
) -> Option<Checkpoint> {
    let ProofParts {
        index,
        leaf,
        claimed_leaf_hash,
        claimed_event,
        tree_size,
        path,
        checkpoint,
    } = parts;
    // The leaf.
    let mut leaf_hash = None;
    let leaf_check = (|| -> Result<String, String> {
        let leaf = leaf?;
        let h = tlog::leaf_hash(leaf);
        leaf_hash = Some(h);
        if let Some(claimed) = claimed_leaf_hash {
            if claimed != hex::encode(h) {
                return Err(format!(
                    "the leaf bytes hash to {}, not to the leaf_hash {claimed}",
                    hex::encode(h)
                ));
            }
        }
        let event = StoredEvent::from_leaf_bytes(leaf)
            .map_err(|e| format!("the leaf bytes are not an event: {e}"))?;
        let index = index.ok_or("no event index in the proof")?;
        if event.index != index {
            return Err(format!(
                "the leaf is event {}, but the proof is for event {index}",
                event.index
            ));
        }
        if let Some(claimed) = claimed_event {
            // Compared exactly, in canonical form: a repeated key or a number written
            // otherwise than in the leaf is a difference, though a JSON `Value` would hide it.
            let exact = |text: &str| crate::chain::exact_json::canonical(text, "event", 128);
            let claimed = claimed
                .and_then(|text| exact(text).map_err(|e| e.to_string()))
                .map_err(|e| format!("the event shown cannot be read exactly: {e}"))?;
            let stored = serde_json::to_string(&event.view())
                .map_err(|e| e.to_string())
                .and_then(|text| exact(&text).map_err(|e| e.to_string()))
                .map_err(|e| format!("the leaf's event cannot be shown: {e}"))?;
            if claimed != stored {
                return Err("the event shown is not what the leaf bytes say".into());
            }
        }
        Ok(format!(
            "event {index} ({} by {}), leaf hash {}",
            event.event.action.name(),
            event.event.auditor,
            hex::encode(h)
        ))
    })();
    checks.push(match leaf_check {
        Ok(d) => Check::new("leaf", State::Ok, d),
        Err(e) => Check::new("leaf", State::Fail, e),
    });

    // The checkpoint's signature.
    let cp = (|| -> Result<(Checkpoint, String), String> {
        let text = checkpoint.ok_or("the proof has no checkpoint")?;
        let signed = SignedNote::parse(text).map_err(|e| format!("not a signed note: {e}"))?;
        let cp = Checkpoint::parse(&signed.text).map_err(|e| format!("not a checkpoint: {e}"))?;
        if cp.origin != key.name {
            return Err(format!(
                "its origin is {:?}, but --key names {:?}",
                cp.origin, key.name
            ));
        }
        signed
            .verify(key)
            .map_err(|e| format!("the signature does not verify with --key: {e}"))?;
        let detail = format!(
            "{} size {} signed by {}+{}",
            cp.origin,
            cp.size,
            key.name,
            hex::encode(key.id)
        );
        Ok((cp, detail))
    })();

    let verified = match cp {
        Ok((cp, d)) => {
            checks.push(Check::new("checkpoint", State::Ok, d));
            Some(cp)
        }
        Err(e) => {
            checks.push(Check::new("checkpoint", State::Fail, e));
            None
        }
    };
    // The inclusion proof against the checkpoint's root (checked even when the signature
    // is not, to say which is wrong).
    let parsed_cp = checkpoint
        .and_then(|t| SignedNote::parse(t).ok())
        .and_then(|s| Checkpoint::parse(&s.text).ok());
    let inclusion = (|| -> Result<String, String> {
        let path = path?;
        let cp = parsed_cp
            .as_ref()
            .ok_or("no readable checkpoint to check against")?;
        let index = index.ok_or("no event index")?;
        let leaf_hash = leaf_hash.ok_or("no leaf to check")?;
        if let Some(size) = tree_size {
            if size != cp.size {
                return Err(format!(
                    "the proof is for tree size {size}, the checkpoint's is {}",
                    cp.size
                ));
            }
        }
        tlog::verify_inclusion(path, cp.size, index, &cp.root, &leaf_hash).map_err(|e| {
            format!("the inclusion proof does not lead to the checkpoint's root: {e}")
        })?;
        Ok(format!(
            "{} hashes from event {index} to the root of tree size {}",
            path.len(),
            cp.size
        ))
    })();
    checks.push(match inclusion {
        Ok(d) => Check::new("inclusion", State::Ok, d),
        Err(e) => Check::new("inclusion", State::Fail, e),
    });
    verified
}

fn proof(a: &ProofArgs) -> Result<(), CliError> {
    let key = verifier_key(&a.key)?;
    let bytes = read(&a.input)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::Other(format!(
            "{}: not text (a proof bundle is JSON, a tlog-proof is text)",
            a.input.display()
        ))
    })?;
    let trimmed = text.trim_start();
    let mut checks = Vec::new();
    let mut extra = serde_json::Map::new();
    if trimmed.starts_with(crate::chain::proof::HEADER) {
        // A bare tlog-proof: no block.
        let p = TlogProof::parse(trimmed)
            .map_err(|e| CliError::Invalid(format!("{}: {e}", a.input.display())))?;
        extra.insert("form".into(), "tlog-proof".into());
        proof_core(
            &mut checks,
            &key,
            ProofParts {
                index: Some(p.index),
                leaf: p
                    .extra
                    .as_deref()
                    .ok_or_else(|| "the tlog-proof has no extra (the leaf bytes)".to_owned()),
                claimed_leaf_hash: None,
                claimed_event: None,
                tree_size: None,
                path: Ok(&p.path),
                checkpoint: Some(&p.checkpoint),
            },
        );
        let why = "not checked: a bare tlog-proof has no block (only leaf, inclusion and checkpoint can be checked)";
        for name in ["header", "header-tree", "header-signature", "token"] {
            checks.push(Check::new(name, State::Skipped, why));
        }
        return finish(&checks, a.json, extra);
    }
    if !trimmed.starts_with('{') {
        return Err(CliError::Other(format!(
            "{}: neither a proof bundle (JSON) nor a tlog-proof ({})",
            a.input.display(),
            crate::chain::proof::HEADER
        )));
    }
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Other(format!("{}: not JSON: {e}", a.input.display())))?;
    let ca = a.ca.as_deref().ok_or_else(|| {
        CliError::Other("a proof bundle's block token needs --ca ROOTS.pem".into())
    })?;
    let roots = audit::read_roots(ca)?;
    extra.insert("form".into(), "bundle".into());
    let b = parse_bundle(&json);
    /// The event of a bundle, as its text.
    #[derive(serde::Deserialize)]
    struct Shown<'a> {
        #[serde(borrow)]
        event: Option<&'a serde_json::value::RawValue>,
    }
    let shown = match serde_json::from_str::<Shown<'_>>(&text) {
        // `Option` reads an `"event": null` as None: it is an event shown all the same.
        Ok(Shown { event }) => event
            .map(|e| Ok(e.get()))
            .or_else(|| json.get("event").map(|_| Ok("null"))),
        Err(e) => Some(Err(e.to_string())),
    };
    let cp = proof_core(
        &mut checks,
        &key,
        ProofParts {
            index: b.index,
            leaf: b.leaf.as_deref().map_err(Clone::clone),
            claimed_leaf_hash: b.leaf_hash.as_deref(),
            claimed_event: shown,
            tree_size: b.tree_size,
            path: b.path.as_deref().map_err(Clone::clone),
            checkpoint: b.checkpoint.as_deref(),
        },
    );
    // The bundle's tlog_proof must say the same.
    if let Some(tp) = &b.tlog_proof {
        let same = TlogProof::parse(tp).ok().is_some_and(|p| {
            Some(p.index) == b.index
                && p.extra.as_deref() == b.leaf.as_deref().ok()
                && Ok(p.path.as_slice()) == b.path.as_deref().map_err(|_| ())
                && Some(p.checkpoint.as_str()) == b.checkpoint.as_deref()
        });
        checks.push(if same {
            Check::new(
                "tlog-proof",
                State::Ok,
                "says the same index, leaf, proof and checkpoint",
            )
        } else {
            Check::new(
                "tlog-proof",
                State::Fail,
                "the bundle's tlog_proof does not say the same as its other fields",
            )
        });
    }
    // The block.
    let block = b
        .block
        .as_ref()
        .ok_or_else(|| "the bundle has no block".to_owned())
        .and_then(tiles::block_from_json);
    let block = match block {
        Ok(block) => {
            checks.push(Check::new(
                "header",
                State::Ok,
                format!(
                    "block {}: header bytes decode and match the block's fields",
                    block.header.height
                ),
            ));
            Some(block)
        }
        Err(e) => {
            checks.push(Check::new("header", State::Fail, e));
            None
        }
    };
    check_block(&mut checks, block.as_ref(), cp.as_ref(), &key, &roots);
    finish(&checks, a.json, extra)
}

/// The header's tree against the checkpoint, its signature, its token.
fn check_block(
    checks: &mut Vec<Check>,
    block: Option<&SealedBlock>,
    cp: Option<&Checkpoint>,
    key: &VerifierKey,
    roots: &[x509_cert::Certificate],
) {
    let Some(block) = block else {
        for name in ["header-tree", "header-signature", "token"] {
            checks.push(Check::new(
                name,
                State::NotChecked,
                "not checked: no readable header",
            ));
        }
        return;
    };
    let h = &block.header;
    checks.push(match cp {
        None => Check::new(
            "header-tree",
            State::NotChecked,
            "not checked: no verified checkpoint to compare with",
        ),
        Some(cp) if cp.size == h.tree_size && cp.root == h.root => Check::new(
            "header-tree",
            State::Ok,
            format!("tree size {} and root are the checkpoint's", h.tree_size),
        ),
        Some(cp) => Check::new(
            "header-tree",
            State::Fail,
            format!(
                "the header seals tree size {} (root {}), the checkpoint states {} (root {})",
                h.tree_size,
                hex::encode(h.root),
                cp.size,
                hex::encode(cp.root)
            ),
        ),
    });
    let signature = (|| -> Result<String, String> {
        let id = ed25519_key_id(&key.public_key);
        if h.key_id != id {
            return Err(format!(
                "the header's key id {} is not --key's ({})",
                hex::encode(h.key_id),
                hex::encode(id)
            ));
        }
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key)
            .map_err(|_| "--key is not a valid Ed25519 key".to_owned())?;
        let sig = ed25519_dalek::Signature::from_slice(&block.signature)
            .map_err(|_| "the signature is not 64 bytes".to_owned())?;
        vk.verify_strict(&h.encode(), &sig).map_err(|_| {
            "the Ed25519 signature over the header does not verify with --key".to_owned()
        })?;
        Ok(format!("Ed25519 by key id {}", hex::encode(id)))
    })();
    checks.push(match signature {
        Ok(d) => Check::new("header-signature", State::Ok, d),
        Err(e) => Check::new("header-signature", State::Fail, e),
    });
    let header_hash = h.hash();
    let opts = TokenOptions {
        imprint: Some((HashAlgorithm::Sha256, &header_hash)),
        ..TokenOptions::new(roots)
    };
    checks.push(match crate::verify::verify_token(&block.token, &opts) {
        Ok(v) => Check::new(
            "token",
            State::Ok,
            format!(
                "RFC 3161 over SHA-256(header) {}, genTime {}, by {} ({})",
                hex::encode(header_hash),
                rfc3339(v.tst_info.gen_time.to_system_time()),
                subject_of(&v.signer),
                v.signature_algorithm
            ),
        ),
        Err(e) => Check::new("token", State::Fail, format!("[{}] {e}", e.rule())),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn nonces_in_decimal_and_hex() {
        assert_eq!(parse_nonce("0").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_nonce("255").unwrap(), [0xff]);
        assert_eq!(parse_nonce("256").unwrap(), [0x01, 0x00]);
        assert_eq!(
            parse_nonce("18446744073709551616").unwrap(),
            [1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(parse_nonce("0x00ff").unwrap(), [0xff]);
        assert_eq!(parse_nonce("0xABC").unwrap(), [0x0a, 0xbc]);
        for bad in ["", "-1", "0x", "12a", "0xfg", " "] {
            assert!(parse_nonce(bad).is_err(), "{bad:?}");
        }
        assert!(parse_nonce(&"9".repeat(200)).is_err());
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bits(&[]), 0);
        assert_eq!(bits(&[0, 1]), 1);
        assert_eq!(bits(&[0x80, 0]), 16);
    }
}

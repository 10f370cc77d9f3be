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
//!   tlog-proof ([`crate::verify::proof`]): the leaf, the inclusion proof, the
//!   checkpoint's signature, and for a bundle the block header, its signature and its RFC
//!   3161 token.
//! - `verify chain` (also `chain verify`) audits a whole log: a stopped appliance's store,
//!   an export, or a live appliance's public read API ([`super::audit`]).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use const_oid::ObjectIdentifier;
use der::Decode;
use serde_json::{json, Value};

use super::audit;
use super::CliError;
use crate::chain::note::VerifierKey;
use crate::tsp::HashAlgorithm;
use crate::verify::proof::{
    rfc3339, subject_of, Check, CheckState as State, ProofError, ProofInput,
};
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

/// One check, as printed on a line.
fn line(c: &Check) -> String {
    let tag = match c.state {
        State::Ok => "ok",
        State::Fail => "FAIL",
        State::Skipped => "skip",
        State::NotChecked => "-",
    };
    format!("{tag:<4} {:<19} {}", c.name, c.detail)
}

/// One check, as JSON.
fn check_json(c: &Check) -> Value {
    json!({
        "rule": c.name,
        "ok": match c.state {
            State::Ok => Value::Bool(true),
            State::Fail => Value::Bool(false),
            State::Skipped | State::NotChecked => Value::Null,
        },
        "status": match c.state {
            State::Ok => "ok",
            State::Fail => "fail",
            State::Skipped => "skipped",
            State::NotChecked => "not-checked",
        },
        "detail": c.detail,
    })
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
            Value::Array(checks.iter().map(check_json).collect()),
        );
        extra.insert(
            "failed".into(),
            failed.map_or(Value::Null, |c| Value::String(c.name.into())),
        );
        println!("{}", Value::Object(extra));
    } else {
        for c in checks {
            println!("{}", line(c));
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

fn proof(a: &ProofArgs) -> Result<(), CliError> {
    let key = verifier_key(&a.key)?;
    let bytes = read(&a.input)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::Other(format!(
            "{}: not text (a proof bundle is JSON, a tlog-proof is text)",
            a.input.display()
        ))
    })?;
    let input = ProofInput::parse(&text).map_err(|e| match e {
        ProofError::Malformed(_) => CliError::Invalid(format!("{}: {e}", a.input.display())),
        e => CliError::Other(format!("{}: {e}", a.input.display())),
    })?;
    let roots = if input.needs_roots() {
        let ca = a.ca.as_deref().ok_or_else(|| {
            CliError::Other("a proof bundle's block token needs --ca ROOTS.pem".into())
        })?;
        audit::read_roots(ca)?
    } else {
        Vec::new()
    };
    let checks = input.check(&key, &roots);
    let mut extra = serde_json::Map::new();
    extra.insert("form".into(), input.form().into());
    finish(&checks, a.json, extra)
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

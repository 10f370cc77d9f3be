//! The one HTTP(S) client of every outgoing call: `verify chain --url`, the `bench` load
//! generators and the appliance's submissions to its witnesses. reqwest over rustls with
//! the AWS-LC provider (the listeners' TLS library), set up here once: the CAs trusted, the
//! client certificate for servers that require mutual TLS, ALPN, and the timeouts.
//!
//! Trust ([`Trust`]): with CA files, the server's certificate must chain to one of those
//! CAs and to nothing else (pinning the private CA of an appliance or a witness, the norm
//! here); without, to one of the system's roots.
//!
//! Also here, because the listeners' TLS (`http::tls`) and this client both need
//! them: the PEM loading of certificates and private keys (an error names the file, never
//! a key's contents), the cause chain of an error as one line ([`error_chain`]), and the
//! redaction of user information in URLs ([`redact_userinfo`]). Imports nothing of ours.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What can go wrong setting up the client; every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the configuration (e.g. the client key does not match its
    /// certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

fn file_err(path: &Path, problem: impl std::fmt::Display) -> ClientError {
    ClientError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// A PEM reading error in words that never quote the file (it may be a private key).
fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "nothing of the expected kind in it".into(),
        Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        Error::IllegalSectionStart { .. } => "a PEM section starts inside another".into(),
        Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        _ => "not a PEM file".into(),
    }
}

/// The certificates of PEM file `path`, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, pem_problem(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in it"));
    }
    Ok(certs)
}

/// The private key of PEM file `path` (PKCS#8, SEC1 or PKCS#1). Errors name the file and
/// never quote it.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_err(path, "no PRIVATE KEY in it"),
        e => file_err(path, pem_problem(&e)),
    })
}

/// Which certificates a server's must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's root CAs (as found by rustls-native-certs: `SSL_CERT_FILE`, or the
    /// distribution's bundle).
    System,
    /// Only the CAs in these PEM files (none: no `https://` server is trusted).
    Only(Vec<PathBuf>),
}

/// The TLS side of a client: whom it trusts, and who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CAs a server's certificate must chain to.
    pub trust: Trust,
    /// A client certificate (PEM, with its intermediates) and its private key (PEM file),
    /// for servers that require mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Default for ClientTls {
    /// The system's roots, no client certificate.
    fn default() -> Self {
        ClientTls {
            trust: Trust::System,
            identity: None,
        }
    }
}

/// The TLS options of every command that talks to a server over `https://` (flattened
/// into the `verify`, `bench` and `witness` subcommands' arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// The CA certificates (PEM) the server's certificate must chain to, instead of the
    /// system's roots: pin the appliance's (or witness's) private CA.
    #[arg(long, value_name = "CA.pem")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM, with its intermediates) for a server that requires
    /// mutual TLS; with --tls-key.
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (a PEM file; never given on the command line).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The client's TLS settings these options name.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            trust: match &self.tls_ca {
                Some(ca) => Trust::Only(vec![ca.clone()]),
                None => Trust::System,
            },
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }

    /// A reqwest client builder with these options and `timeout` per request ([`builder`]).
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::ClientBuilder, ClientError> {
        builder(&self.client_tls(), timeout)
    }
}

/// The rustls client configuration for `tls`, on the AWS-LC provider: TLS 1.2 and 1.3,
/// ALPN `http/1.1` (the same protocol as over plain HTTP).
pub fn rustls_config(tls: &ClientTls) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.trust {
        Trust::Only(files) => {
            for path in files {
                for c in certificates(path)? {
                    roots.add(c).map_err(|e| file_err(path, e))?;
                }
            }
        }
        Trust::System => {
            // Unreadable entries of the system's store are skipped, as browsers do; with
            // no root at all every handshake fails with UnknownIssuer, which names it.
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key_der = private_key(key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                ClientError::Config(format!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Longest wait for a TCP connection and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reqwest client builder speaking `http://` and `https://` with `tls`, every request
/// bounded by `timeout` (connecting by at most 10 s of it); callers add their pool
/// settings and build.
pub fn builder(tls: &ClientTls, timeout: Duration) -> Result<reqwest::ClientBuilder, ClientError> {
    let config = rustls_config(tls)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout)))
}

/// Makes AWS-LC the process's default rustls provider (once; later calls do nothing).
/// Code that builds a client without [`builder`] (reqwest's own TLS set-up, which asks
/// rustls for the process default) then uses it instead of panicking for want of one.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `e` and each of its causes, as one line: `e: caused by: cause: caused by: ...`; a cause
/// whose words are already in the line (an error that prints its source) is left out.
/// User information in URLs is redacted ([`redact_userinfo`]).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": caused by: ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    redact_userinfo(&line)
}

/// `text` with the user information of every URL in it (`https://user:secret@host/`)
/// replaced by `***`.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, the query, the fragment, or the end of the URL.
        let end = after
            .find(|c: char| "/?#\"'<>`) ".contains(c) || c.is_whitespace() || c.is_control())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***");
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn user_information_in_urls_is_redacted() {
        assert_eq!(
            redact_userinfo("GET https://alice:s3cret@host:8318/checkpoint: refused"),
            "GET https://***@host:8318/checkpoint: refused"
        );
        assert_eq!(
            redact_userinfo("\"http://tok@h\" and http://h2/x?a=b@c"),
            "\"http://***@h\" and http://h2/x?a=b@c"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
        assert_eq!(redact_userinfo("https://a:b@"), "https://***@");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Prints(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            error_chain(&e),
            "outer: caused by: invalid peer certificate: UnknownIssuer"
        );
        let e = Prints(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "wrapped: disk full");
    }

    #[test]
    fn key_files_are_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = private_key(&key).unwrap_err().to_string();
        assert!(e.contains("client.key"), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n").unwrap();
        let e = private_key(&key).unwrap_err().to_string();
        assert!(!e.contains("TOPSECRET"), "{e}");
        std::fs::write(&key, "").unwrap();
        let e = private_key(&key).unwrap_err().to_string();
        assert!(e.contains("no PRIVATE KEY"), "{e}");
        let e = private_key(&dir.path().join("nope.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.key"), "{e}");
    }

    #[test]
    fn a_client_builds_with_the_system_roots_and_without_any() {
        let http = builder(&ClientTls::default(), Duration::from_secs(5))
            .unwrap()
            .build();
        assert!(http.is_ok());
        let none = ClientTls {
            trust: Trust::Only(Vec::new()),
            identity: None,
        };
        assert!(builder(&none, Duration::from_secs(5))
            .unwrap()
            .build()
            .is_ok());
    }
}

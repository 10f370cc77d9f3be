//! TLS for the listeners (rustls, aws-lc-rs provider), and agency identity from client
//! certificates (mutual TLS).
//!
//! The server certificate chain and its key come from PEM files (the TLS key is not a
//! signing key of the appliance and may be a file). With a client CA configured, clients
//! may present a certificate issued by it: the handshake verifies it (chain and validity),
//! and the certificate's subject common name becomes the caller's identity. Which routes
//! require one is decided per request (see [`super::limits`]); a client without a
//! certificate can still connect for the others.

use std::path::Path;
use std::sync::Arc;

use der::{Decode, Tagged};
use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;

/// What can go wrong setting up TLS; every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    crate::client::certificates(path).map_err(TlsError::from)
}

impl From<crate::client::ClientError> for TlsError {
    fn from(e: crate::client::ClientError) -> Self {
        match e {
            crate::client::ClientError::File { path, problem } => TlsError::File { path, problem },
            other => TlsError::Config(other.to_string()),
        }
    }
}

/// The files of a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// The server certificate, then its intermediates (PEM).
    pub cert: &'a Path,
    /// The server's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: &'a Path,
    /// CA certificates that issue agencies' client certificates (PEM); `None`: no mTLS.
    pub client_ca: Option<&'a Path>,
}

/// The rustls server configuration for `files`: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by
/// ALPN, client certificates verified against the client CA when one is given.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates(files.cert)?;
    let key = crate::client::private_key(files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| file_err(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", files.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity a verified client certificate gives its holder: its subject common name.
pub fn identity_of(cert_der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(cert_der).ok()?;
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid::db::rfc4519::CN {
                let value = &atv.value;
                let text = match value.tag() {
                    der::Tag::Utf8String | der::Tag::PrintableString | der::Tag::Ia5String => {
                        std::str::from_utf8(value.value()).ok()?.to_owned()
                    }
                    _ => return None,
                };
                if text.is_empty() {
                    return None;
                }
                return Some(text);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = server_config(&TlsFiles {
            cert: &empty,
            key: &empty,
            client_ca: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("empty.pem"), "{e}");
        let e = server_config(&TlsFiles {
            cert: &dir.path().join("nope.pem"),
            key: &empty,
            client_ca: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn garbage_is_no_identity() {
        assert_eq!(identity_of(b"not a certificate"), None);
    }
}

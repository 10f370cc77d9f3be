//! The TSA certificate's purpose and its certification path to a pinned root.
//!
//! [`verify_path`] is a pure function of its inputs (the signer certificate, the candidate
//! intermediates, the roots and the times), so that a cache of verified paths can wrap it
//! without changing what is checked: [`search_path`] also says whether the times decided
//! anything but the found path's own validity (see [`PathSearch::time_sensitive`]), which
//! is what the cache of [`TokenVerifier`](super::TokenVerifier) relies on.

use std::collections::HashSet;
use std::time::SystemTime;

use const_oid::db::rfc5280::ID_KP_TIME_STAMPING;
use const_oid::db::rfc5912::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use const_oid::AssociatedOid;
use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use super::signature::{self, Backend};
use super::TokenError;
use crate::tsp::token::is_self_signed;

/// The most certificates a path may have, signer and root included.
pub const MAX_PATH_LEN: usize = 8;

/// The most certificate signatures one path search verifies (a bound on the work a token
/// full of look-alike certificates can cause).
const MAX_SIGNATURE_CHECKS: usize = 64;

/// The extensions this verifier processes; any other marked critical fails the path
/// (RFC 5280 §4.2).
const UNDERSTOOD: [const_oid::ObjectIdentifier; 6] = [
    ID_CE_BASIC_CONSTRAINTS,
    ID_CE_KEY_USAGE,
    ID_CE_EXT_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME,
    ID_CE_SUBJECT_KEY_IDENTIFIER,
    ID_CE_AUTHORITY_KEY_IDENTIFIER,
];

/// A time at which every certificate of the path must be valid, with its name for errors
/// (`genTime` or `now`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckTime {
    /// `genTime` or `now`.
    pub label: &'static str,
    /// The time.
    pub at: SystemTime,
}

/// Checks that `leaf` may sign time-stamp tokens (RFC 3161 §2.3, ETSI EN 319 422): an
/// extendedKeyUsage that is critical and lists only id-kp-timeStamping; not a CA; a
/// keyUsage, if present, of digitalSignature and/or nonRepudiation only.
pub fn check_tsa_leaf(leaf: &Certificate) -> Result<(), TokenError> {
    match extension::<ExtendedKeyUsage>(leaf)? {
        None => return Err(TokenError::EkuMissing),
        Some((false, _)) => return Err(TokenError::EkuNotCritical),
        Some((true, eku)) if eku.0 != [ID_KP_TIME_STAMPING] => {
            return Err(TokenError::EkuNotSoleTimeStamping { found: eku.0 });
        }
        Some(_) => {}
    }
    if let Some((_, bc)) = extension::<BasicConstraints>(leaf)? {
        if bc.ca {
            return Err(TokenError::LeafIsCa);
        }
    }
    if let Some((_, usage)) = extension::<KeyUsage>(leaf)? {
        let allowed = KeyUsages::DigitalSignature | KeyUsages::NonRepudiation;
        if usage.0.is_empty() || !(usage.0 & !allowed).is_empty() {
            return Err(TokenError::LeafKeyUsage);
        }
    }
    Ok(())
}

/// The certificate's extension of type `T`, if it has one, and whether it is critical.
///
/// Refused when it is there twice or does not decode ([`TokenError::BadExtension`]), and
/// when its value does not re-encode to its own octets ([`TokenError::ExtensionNotDer`]):
/// the value is DER inside an OCTET STRING, which the certificate's own check leaves
/// alone, and its decoder takes what DER forbids (a DEFAULT written out, such as
/// basicConstraints' cA FALSE; a keyUsage with trailing zero bits).
pub(super) fn extension<T>(cert: &Certificate) -> Result<Option<(bool, T)>, TokenError>
where
    T: AssociatedOid + for<'a> Decode<'a> + Encode,
{
    let tbs = &cert.tbs_certificate;
    let bad = || TokenError::BadExtension {
        subject: tbs.subject.to_string(),
    };
    let mut found = tbs
        .extensions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|e| e.extn_id == T::OID);
    let Some(ext) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(bad());
    }
    let octets = ext.extn_value.as_bytes();
    let value = T::from_der(octets).map_err(|_| bad())?;
    if value.to_der().map_err(|_| bad())? != octets {
        return Err(TokenError::ExtensionNotDer {
            subject: tbs.subject.to_string(),
            oid: T::OID,
        });
    }
    Ok(Some((ext.critical, value)))
}

/// Finds and checks a certification path from `leaf` to one of `roots`, and returns it,
/// leaf first and root last.
///
/// Issuers are looked for among `roots` first, then `intermediates` (the token's
/// certificates and the caller's untrusted ones): a candidate's subject must equal the
/// child's issuer and its key must verify the child's signature. A path ends only at a
/// certificate of `roots`; a self-signed certificate that is not one of them ends the
/// search on that branch ([`TokenError::UntrustedRoot`]). `leaf` itself may be a root
/// (a pinned TSA certificate); the path is then `[leaf]`.
///
/// Every certificate of the path, root included, must have a signatureAlgorithm that is
/// its tbsCertificate's signature field (RFC 5280 §4.1.1.2; a pinned root too: its name,
/// key and dates are relied on, and a root that breaks this is refused, not trusted), must
/// be valid at each of `times` and must not have a critical extension other than
/// basicConstraints, keyUsage, extendedKeyUsage, subjectAltName and the key identifiers.
/// Every issuer must be a CA (basicConstraints cA true), with keyCertSign if it has a
/// keyUsage, and its pathLenConstraint must allow the CAs below it; the extensions read
/// must be DER ([`TokenError::ExtensionNotDer`]). The leaf's own purpose is checked by
/// [`check_tsa_leaf`], not here.
///
/// When no path is found, the error is that of the branch that came closest: a validity
/// or CA problem over an untrusted self-signed root, over a signature that does not
/// verify, over a missing issuer.
pub fn verify_path(
    leaf: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
    times: &[CheckTime],
) -> Result<Vec<Certificate>, TokenError> {
    search_path(leaf, intermediates, roots, times, Backend::default()).result
}

/// What one path search found.
#[derive(Debug)]
pub(super) struct PathSearch {
    /// [`verify_path`]'s answer.
    pub result: Result<Vec<Certificate>, TokenError>,
    /// Whether some candidate issuer was set aside because it was not valid at one of the
    /// times. When it is false and the search succeeded, the search made the same choices
    /// at any times inside the found path's common validity interval, and so returns the
    /// same path: nothing but the found path's own certificates' dates depended on the
    /// times.
    pub time_sensitive: bool,
}

/// [`verify_path`] with the signature backend given, saying whether the times decided more
/// than the found path's validity.
pub(super) fn search_path(
    leaf: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
    times: &[CheckTime],
    backend: Backend,
) -> PathSearch {
    if let Err(e) = check_certificate(leaf, times) {
        return PathSearch {
            result: Err(e),
            time_sensitive: true,
        };
    }
    if roots.contains(leaf) {
        return PathSearch {
            result: Ok(vec![leaf.clone()]),
            time_sensitive: false,
        };
    }
    let mut search = Search {
        intermediates,
        roots,
        times,
        backend,
        signature_checks: 0,
        time_sensitive: false,
    };
    let mut path = vec![leaf.clone()];
    let result = match search.extend(&mut path) {
        Ok(()) => Ok(path),
        Err(ranked) => Err(ranked.error),
    };
    PathSearch {
        result,
        time_sensitive: search.time_sensitive,
    }
}

/// The interval in which every certificate of `path` is valid: (latest notBefore,
/// earliest notAfter), as [`check_certificate`] compares them (both ends included).
pub(super) fn common_validity(path: &[Certificate]) -> Option<(SystemTime, SystemTime)> {
    let mut it = path.iter().map(|c| {
        let v = &c.tbs_certificate.validity;
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    });
    let first = it.next()?;
    Some(it.fold(first, |(lo, hi), (nb, na)| (lo.max(nb), hi.min(na))))
}

/// An error of one branch of the search, ranked by how far that branch got.
struct Ranked {
    rank: u8,
    error: TokenError,
}

const RANK_NO_ISSUER: u8 = 0;
const RANK_SIGNATURE: u8 = 1;
const RANK_UNTRUSTED_ROOT: u8 = 2;
const RANK_CERTIFICATE: u8 = 3;
const RANK_LIMIT: u8 = 4;

fn keep_best(best: &mut Ranked, other: Ranked) {
    if other.rank > best.rank {
        *best = other;
    }
}

struct Search<'a> {
    intermediates: &'a [Certificate],
    roots: &'a [Certificate],
    times: &'a [CheckTime],
    backend: Backend,
    signature_checks: usize,
    /// A candidate was set aside for its dates.
    time_sensitive: bool,
}

impl Search<'_> {
    /// Extends `path` (whose last certificate still needs an issuer) up to a root.
    fn extend(&mut self, path: &mut Vec<Certificate>) -> Result<(), Ranked> {
        let Some(child) = path.last().cloned() else {
            return Err(Ranked {
                rank: RANK_NO_ISSUER,
                error: TokenError::PathTooLong(MAX_PATH_LEN),
            });
        };
        if path.len() >= MAX_PATH_LEN {
            return Err(Ranked {
                rank: RANK_LIMIT,
                error: TokenError::PathTooLong(MAX_PATH_LEN),
            });
        }
        let mut best = Ranked {
            rank: RANK_NO_ISSUER,
            error: TokenError::NoIssuer {
                subject: child.tbs_certificate.subject.to_string(),
            },
        };
        let candidates = self
            .roots
            .iter()
            .map(|c| (c, true))
            .chain(self.intermediates.iter().map(|c| (c, false)));
        for (candidate, is_root) in candidates {
            if candidate.tbs_certificate.subject != child.tbs_certificate.issuer
                || path.contains(candidate)
            {
                continue;
            }
            if self.signature_checks >= MAX_SIGNATURE_CHECKS {
                return Err(Ranked {
                    rank: RANK_LIMIT,
                    error: TokenError::PathTooLong(MAX_PATH_LEN),
                });
            }
            self.signature_checks += 1;
            if let Err(problem) = check_signed_by(&child, candidate, self.backend) {
                keep_best(
                    &mut best,
                    Ranked {
                        rank: RANK_SIGNATURE,
                        error: TokenError::CertificateSignature {
                            subject: child.tbs_certificate.subject.to_string(),
                            problem,
                        },
                    },
                );
                continue;
            }
            if !is_root && is_self_signed(candidate) {
                keep_best(
                    &mut best,
                    Ranked {
                        rank: RANK_UNTRUSTED_ROOT,
                        error: TokenError::UntrustedRoot {
                            subject: candidate.tbs_certificate.subject.to_string(),
                        },
                    },
                );
                continue;
            }
            // The candidate would sit at index path.len(), above path.len() - 1 CAs.
            if let Err(error) = check_issuer(candidate, path.len() - 1)
                .and_then(|()| check_certificate(candidate, self.times))
            {
                if matches!(error, TokenError::NotValidAt { .. }) {
                    self.time_sensitive = true;
                }
                keep_best(
                    &mut best,
                    Ranked {
                        rank: RANK_CERTIFICATE,
                        error,
                    },
                );
                continue;
            }
            path.push(candidate.clone());
            if is_root {
                return Ok(());
            }
            match self.extend(path) {
                Ok(()) => return Ok(()),
                Err(ranked) => {
                    path.pop();
                    if ranked.rank == RANK_LIMIT {
                        return Err(ranked);
                    }
                    keep_best(&mut best, ranked);
                }
            }
        }
        Err(best)
    }
}

/// Whether `issuer`'s key verifies the signature on `child`.
fn check_signed_by(
    child: &Certificate,
    issuer: &Certificate,
    backend: Backend,
) -> Result<(), super::SignatureProblem> {
    let tbs = child
        .tbs_certificate
        .to_der()
        .map_err(|_| super::SignatureProblem::Invalid)?;
    let sig = child
        .signature
        .as_bytes()
        .ok_or(super::SignatureProblem::Invalid)?;
    signature::verify(
        backend,
        &issuer.tbs_certificate.subject_public_key_info,
        &child.signature_algorithm.owned_to_ref(),
        None,
        &tbs,
        sig,
    )
}

/// Checks that `ca` may issue the certificate below it, which has `cas_below` CAs under it
/// (not counting the leaf).
fn check_issuer(ca: &Certificate, cas_below: usize) -> Result<(), TokenError> {
    let subject = || ca.tbs_certificate.subject.to_string();
    match extension::<BasicConstraints>(ca)? {
        Some((_, bc)) if bc.ca => {
            if let Some(limit) = bc.path_len_constraint {
                if cas_below > usize::from(limit) {
                    return Err(TokenError::PathLength { subject: subject() });
                }
            }
        }
        _ => return Err(TokenError::IssuerNotCa { subject: subject() }),
    }
    if let Some((_, usage)) = extension::<KeyUsage>(ca)? {
        if !usage.0.contains(KeyUsages::KeyCertSign) {
            return Err(TokenError::IssuerKeyUsage { subject: subject() });
        }
    }
    Ok(())
}

/// Checks what every certificate of a path must satisfy: its signatureAlgorithm is its
/// tbsCertificate's signature, valid at each of `times`, no extension twice, no critical
/// extension that is not understood.
fn check_certificate(cert: &Certificate, times: &[CheckTime]) -> Result<(), TokenError> {
    let tbs = &cert.tbs_certificate;
    // RFC 5280 §4.1.1.2: the same AlgorithmIdentifier, parameters included (`Any`
    // compares tags and contents octets, so this compares the encodings).
    if cert.signature_algorithm != tbs.signature {
        return Err(TokenError::SignatureAlgorithmMismatch {
            subject: tbs.subject.to_string(),
        });
    }
    let mut seen = HashSet::new();
    for ext in tbs.extensions.as_deref().unwrap_or(&[]) {
        if !seen.insert(ext.extn_id) {
            return Err(TokenError::BadExtension {
                subject: tbs.subject.to_string(),
            });
        }
        if ext.critical && !UNDERSTOOD.contains(&ext.extn_id) {
            return Err(TokenError::UnknownCriticalExtension {
                subject: tbs.subject.to_string(),
                oid: ext.extn_id,
            });
        }
    }
    let validity = &tbs.validity;
    for time in times {
        if time.at < validity.not_before.to_system_time()
            || time.at > validity.not_after.to_system_time()
        {
            return Err(TokenError::NotValidAt {
                subject: tbs.subject.to_string(),
                at: time.label,
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            });
        }
    }
    Ok(())
}

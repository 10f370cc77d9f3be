//! The caches behind [`TokenVerifier`](super::TokenVerifier): verified certification
//! paths ([`PathCache`], keyed by the exact inputs of the path search and answered only
//! inside the path's common validity interval) and decoded certificates ([`CertCache`],
//! by their exact DER). Used by the checklist in `token.rs` and owned by the verifier; the
//! verifier's module documentation says why a cached answer is always the uncached one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use der::Encode;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::path::{common_validity, search_path, CheckTime};
use super::signature::Backend;
use super::TokenError;

/// A SHA-256 digest.
type Digest32 = [u8; 32];

/// One verified path and the interval in which it stays valid.
#[derive(Debug, Clone)]
pub(super) struct CachedPath {
    chain: Vec<Certificate>,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// What the path search of one token takes (see [`search_path`]), with the DER of the
/// signer and of the pool for the cache key.
pub(super) struct PathInputs<'a> {
    /// The signer certificate.
    pub signer: &'a Certificate,
    /// Its DER.
    pub signer_der: &'a [u8],
    /// The candidate issuers, in search order (made only when the cache cannot answer).
    pub pool: &'a dyn Fn() -> Vec<Certificate>,
    /// Their DER, in the same order.
    pub pool_ders: &'a [Cow<'a, [u8]>],
    /// The pinned roots.
    pub roots: &'a [Certificate],
    /// When the path must be valid.
    pub times: &'a [CheckTime],
}

/// The cache of verified paths; shared between threads.
#[derive(Debug)]
pub(super) struct PathCache {
    pub(super) entries: RwLock<HashMap<Digest32, CachedPath>>,
    capacity: usize,
    /// The verifier's own roots: (address, length, digest), so that their digest is not
    /// recomputed for every token.
    own_roots: (usize, usize, Digest32),
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
}

/// The digest of a root set: SHA-256 over each root's length and DER, in order.
fn digest_roots(roots: &[Certificate]) -> Result<Digest32, TokenError> {
    let mut h = Sha256::new();
    h.update((roots.len() as u64).to_be_bytes());
    for root in roots {
        let der = root.to_der().map_err(TokenError::der("pinned root"))?;
        h.update((der.len() as u64).to_be_bytes());
        h.update(&der);
    }
    Ok(h.finalize().into())
}

impl PathCache {
    pub(super) fn new(roots: &[Certificate], capacity: usize) -> Result<Self, TokenError> {
        Ok(PathCache {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            own_roots: (roots.as_ptr() as usize, roots.len(), digest_roots(roots)?),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn roots_digest(&self, roots: &[Certificate]) -> Result<Digest32, TokenError> {
        let (at, len, digest) = self.own_roots;
        if roots.as_ptr() as usize == at && roots.len() == len {
            return Ok(digest);
        }
        digest_roots(roots)
    }

    fn key(&self, inputs: &PathInputs<'_>, backend: Backend) -> Result<Digest32, TokenError> {
        let mut h = Sha256::new();
        h.update(b"auditstamp verified path v1\0");
        h.update([match backend {
            Backend::AwsLc => 1u8,
            Backend::RustCrypto => 2u8,
        }]);
        h.update(self.roots_digest(inputs.roots)?);
        h.update((inputs.signer_der.len() as u64).to_be_bytes());
        h.update(inputs.signer_der);
        h.update((inputs.pool_ders.len() as u64).to_be_bytes());
        for der in inputs.pool_ders {
            h.update((der.len() as u64).to_be_bytes());
            h.update(der);
        }
        Ok(h.finalize().into())
    }

    /// The path [`search_path`] would find for `inputs`: from the cache when it provably is
    /// the same, else searched (and stored when it may be).
    pub(super) fn verify_path(
        &self,
        inputs: &PathInputs<'_>,
        backend: Backend,
    ) -> Result<Vec<Certificate>, TokenError> {
        let key = self.key(inputs, backend)?;
        {
            let entries = self
                .entries
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(hit) = entries.get(&key) {
                let inside = inputs
                    .times
                    .iter()
                    .all(|t| t.at >= hit.not_before && t.at <= hit.not_after);
                if inside {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(hit.chain.clone());
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let found = search_path(
            inputs.signer,
            &(inputs.pool)(),
            inputs.roots,
            inputs.times,
            backend,
        );
        if let (Ok(chain), false) = (&found.result, found.time_sensitive) {
            if let Some((not_before, not_after)) = common_validity(chain) {
                let mut entries = self
                    .entries
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
                entries.insert(
                    key,
                    CachedPath {
                        chain: chain.clone(),
                        not_before,
                        not_after,
                    },
                );
            }
        }
        found.result
    }
}

/// Certificates already decoded and checked to re-encode to their own bytes and to be DER
/// throughout, by those bytes: decoding is a pure function of them, so a hit changes
/// nothing but the time.
#[derive(Debug)]
pub(super) struct CertCache {
    map: RwLock<HashMap<Vec<u8>, Arc<Certificate>>>,
    capacity: usize,
}

impl CertCache {
    pub(super) fn new(capacity: usize) -> Self {
        CertCache {
            map: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The certificate whose DER is `der`, if it was seen.
    pub(super) fn get(&self, der: &[u8]) -> Option<Arc<Certificate>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(der)
            .cloned()
    }

    /// Remembers `cert`, decoded from `der` and found strict.
    pub(super) fn insert(&self, der: &[u8], cert: &Arc<Certificate>) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(der.to_vec(), Arc::clone(cert));
    }
}

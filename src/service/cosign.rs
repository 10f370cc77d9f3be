//! The appliance's side of C2SP tlog-witness: each new checkpoint goes to every configured
//! witness with a consistency proof from the size that witness last cosigned; the
//! cosignatures that come back are verified and published with the checkpoint.
//!
//! Each witness has one submitter (run by the chain service) that always submits the newest
//! sealed checkpoint the witness has not cosigned yet: checkpoints sealed while a submission
//! is in flight are coalesced, and the newest of them goes out as soon as that submission
//! returns; a failed submission is tried again after a [`Backoff`] wait, with whatever
//! checkpoint is the newest by then, until one is cosigned. A witness that is down, slow or
//! refusing never holds anything up: submissions run in the background with a timeout;
//! failures are logged and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::chain::cosignature::Cosigner;
use crate::chain::note::{NoteSignature, SignedNote};
use crate::chain::tlog::Hash;
use crate::witness::protocol::{add_checkpoint_body, parse_cosignatures, parse_size_body};

/// The HTTP(S) client to witnesses: the one client of [`crate::client`] (reqwest, rustls on
/// AWS-LC) trusting the configured CAs, every request bounded by a timeout.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    client: reqwest::Client,
    timeout: std::time::Duration,
}

/// Most bytes read of a witness's answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

impl WitnessClient {
    /// A client with `tls` (the witnesses' CAs), giving up after `timeout`.
    pub fn new(
        tls: &crate::client::ClientTls,
        timeout: std::time::Duration,
    ) -> Result<Self, crate::client::ClientError> {
        let client = crate::client::builder(tls, timeout)?
            .build()
            .map_err(crate::client::ClientError::Build)?;
        Ok(WitnessClient { client, timeout })
    }

    /// POSTs `body` to `url`; the status and the body of the answer (at most 64 KiB). An
    /// error names the URL (user information redacted) and every cause.
    pub async fn post(&self, url: &str, body: String) -> Result<(u16, String), String> {
        let shown = crate::client::redact_userinfo(url);
        let failed = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                format!("{shown}: no answer within {:?}", self.timeout)
            } else {
                format!("{shown}: {}", crate::client::error_chain(&e))
            }
        };
        let mut resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        let status = resp.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "{shown}: reading the answer: more than {MAX_ANSWER_BYTES} bytes"
                ));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// A witness the appliance submits to.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// The submission prefix (`<url>/add-checkpoint` is posted to).
    pub url: String,
    /// The witness's name and cosigning key.
    pub cosigner: Cosigner,
}

/// What a submission came to.
#[derive(Debug)]
pub enum Outcome {
    /// Cosigned: the cosignature line, verified.
    Cosigned(NoteSignature),
    /// The witness has cosigned a different size; submit again from it.
    Conflict(u64),
    /// Refused or failed; the reason, for the log.
    Failed(String),
}

/// One witness's link: its target, what it last cosigned, its counters. Its one submitter
/// (the chain service's) makes one submission at a time.
#[derive(Debug)]
pub struct WitnessLink {
    target: WitnessTarget,
    /// The size this witness last cosigned for this log (u64::MAX: not known yet).
    known_size: AtomicU64,
    cosigned: AtomicU64,
    failed: AtomicU64,
}

/// Counters of one witness link, for metrics.
#[derive(Debug, Clone)]
pub struct LinkCounts {
    /// The witness's name.
    pub name: String,
    /// Checkpoints it cosigned.
    pub cosigned: u64,
    /// Submissions that failed (down, refused, bad answer).
    pub failed: u64,
    /// The size it last cosigned, if known.
    pub size: Option<u64>,
}

const UNKNOWN: u64 = u64::MAX;

impl WitnessLink {
    /// A link to `target`, knowing nothing of its state yet.
    pub fn new(target: WitnessTarget) -> Self {
        WitnessLink {
            target,
            known_size: AtomicU64::new(UNKNOWN),
            cosigned: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.target.cosigner.name
    }

    /// Its counters.
    pub fn counts(&self) -> LinkCounts {
        let size = self.known_size.load(Ordering::Relaxed);
        LinkCounts {
            name: self.name().to_owned(),
            cosigned: self.cosigned.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            size: (size != UNKNOWN).then_some(size),
        }
    }

    /// Whether `note` (the signed checkpoint of a tree of `size`, as stored) already carries
    /// a valid cosignature of this witness; if so, the witness is known to have cosigned
    /// `size` (a hint for the next submission's old size: a 409 corrects it).
    pub fn has_cosigned(&self, note: &str, size: u64) -> bool {
        let cosigned =
            SignedNote::parse(note).is_ok_and(|n| self.target.cosigner.verify(&n).is_ok());
        if cosigned && self.known_size.load(Ordering::Relaxed) == UNKNOWN {
            self.known_size.store(size, Ordering::Relaxed);
        }
        cosigned
    }

    /// Submits `note` (the signed checkpoint of a tree of `size`) and returns the verified
    /// cosignature, or why there is none (the failure is counted; the caller logs it).
    /// `proof(old)` gives the consistency proof from `old` to `size`. The old size sent is
    /// the size this witness last cosigned (0 when not known), or the size its 409 names.
    /// Only the link's one submitter calls this, so submissions never overlap.
    pub async fn submit(
        &self,
        client: &WitnessClient,
        note: &str,
        size: u64,
        proof: impl Fn(u64) -> Result<Vec<Hash>, String>,
    ) -> Result<NoteSignature, String> {
        let mut old = match self.known_size.load(Ordering::Relaxed) {
            UNKNOWN => 0,
            s => s,
        };
        // At most: the first try, and one more from the size a 409 names.
        for _ in 0..2 {
            if old > size {
                // Asked again next time with old size 0, so that a witness whose record
                // was reset (or a stale size learned here) is heard from again.
                self.known_size.store(UNKNOWN, Ordering::Relaxed);
                return Err(self.fail(format!(
                    "it has cosigned {old} entries, more than this checkpoint's {size}"
                )));
            }
            match self.try_once(client, note, size, old, &proof).await {
                Outcome::Cosigned(sig) => {
                    self.known_size.store(size, Ordering::Relaxed);
                    self.cosigned.fetch_add(1, Ordering::Relaxed);
                    return Ok(sig);
                }
                Outcome::Conflict(s) => {
                    self.known_size.store(s, Ordering::Relaxed);
                    old = s;
                }
                Outcome::Failed(why) => return Err(self.fail(why)),
            }
        }
        Err(self.fail("it keeps answering 409".into()))
    }

    /// Asks the witness what it has cosigned of this log, by submitting `note` (the signed
    /// checkpoint of a tree of `size`) as extending itself: the size it has cosigned (it
    /// cosigns `note` when that is `size`, or names its own size with a 409), or why it
    /// cannot tell (down, refusing, or holding another tree of `size`). A restore asks
    /// this before it continues a log from an archive.
    pub async fn probe(
        &self,
        client: &WitnessClient,
        note: &str,
        size: u64,
    ) -> Result<u64, String> {
        let none = |_: u64| Ok(Vec::new());
        match self.try_once(client, note, size, size, &none).await {
            Outcome::Cosigned(_) => Ok(size),
            Outcome::Conflict(s) => Ok(s),
            Outcome::Failed(why) => Err(crate::client::redact_userinfo(&why)),
        }
    }

    /// Counts a failure; its reason, with any user information in URLs redacted.
    fn fail(&self, why: String) -> String {
        self.failed.fetch_add(1, Ordering::Relaxed);
        crate::client::redact_userinfo(&why)
    }

    async fn try_once(
        &self,
        client: &WitnessClient,
        note: &str,
        size: u64,
        old: u64,
        proof: &impl Fn(u64) -> Result<Vec<Hash>, String>,
    ) -> Outcome {
        let path = if old == 0 || old == size {
            Vec::new()
        } else {
            match proof(old) {
                Ok(p) => p,
                Err(e) => return Outcome::Failed(format!("no consistency proof from {old}: {e}")),
            }
        };
        let body = match add_checkpoint_body(old, &path, note) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let url = format!("{}/add-checkpoint", self.target.url.trim_end_matches('/'));
        let (status, text) = match client.post(&url, body).await {
            Ok(a) => a,
            Err(e) => return Outcome::Failed(e),
        };
        match status {
            200 => {
                let Ok(parsed) = SignedNote::parse(note) else {
                    return Outcome::Failed("our own checkpoint does not parse".into());
                };
                let cosigned = match parse_cosignatures(&parsed.text, &text) {
                    Ok(n) => n,
                    Err(e) => return Outcome::Failed(format!("{url}: {e}")),
                };
                let cosigner = &self.target.cosigner;
                if let Err(e) = cosigner.verify(&cosigned) {
                    return Outcome::Failed(format!("{url}: {e}"));
                }
                match cosigned.signatures.into_iter().find(|s| {
                    s.name == cosigner.name
                        && s.id
                            == crate::chain::cosignature::key_id(&cosigner.name, &cosigner.public_key)
                }) {
                    Some(sig) => Outcome::Cosigned(sig),
                    None => Outcome::Failed(format!("{url}: no cosignature by {}", cosigner.name)),
                }
            }
            409 => match parse_size_body(&text) {
                Ok(s) if s != old => Outcome::Conflict(s),
                Ok(_) => Outcome::Failed(format!(
                    "{url}: 409 at the size it last cosigned: a fork of this log, or it holds another root"
                )),
                Err(e) => Outcome::Failed(format!("{url}: 409: {e}")),
            },
            s => Outcome::Failed(format!("{url}: HTTP {s}: {}", text.trim())),
        }
    }
}

/// The links to every configured witness.
#[derive(Debug, Default)]
pub struct Witnesses {
    client: Option<WitnessClient>,
    links: Vec<Arc<WitnessLink>>,
}

impl Witnesses {
    /// Links to `targets` through `client` (which carries the timeout and TLS roots).
    pub fn new(client: WitnessClient, targets: Vec<WitnessTarget>) -> Self {
        Witnesses {
            client: Some(client),
            links: targets
                .into_iter()
                .map(|t| Arc::new(WitnessLink::new(t)))
                .collect(),
        }
    }

    /// The links.
    pub fn links(&self) -> &[Arc<WitnessLink>] {
        &self.links
    }

    /// The HTTP client, when there are witnesses.
    pub fn client(&self) -> Option<&WitnessClient> {
        self.client.as_ref()
    }
}

/// When a failed submission is tried again: after [`Backoff::FIRST`], the wait doubling
/// with each failure in a row up to [`Backoff::MAX`]; each wait is shortened by a random
/// part of up to half, so that appliances that lost the same witness do not all come back
/// to it at the same moment.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    /// The longest wait after the first failure.
    pub const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    /// The longest wait ever: how late a witness that is back can be tried again.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(60);

    /// The wait before the next try, after one more failure.
    pub fn next_wait(&mut self) -> std::time::Duration {
        let full = self.next;
        self.next = (full * 2).min(Self::MAX);
        let mut r = [0u8; 4];
        // Without randomness (never seen on Linux) the full wait is no worse.
        let part = match getrandom::getrandom(&mut r) {
            Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        full / 2 + (full / 2).mul_f64(part)
    }

    /// After a success: the next failure waits [`Backoff::FIRST`] again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_starts_again_after_a_success() {
        let mut b = Backoff::default();
        let mut full = Backoff::FIRST;
        for _ in 0..12 {
            let w = b.next_wait();
            assert!(
                w >= full / 2 && w <= full,
                "{w:?} outside {full:?}/2..={full:?}"
            );
            full = (full * 2).min(Backoff::MAX);
        }
        assert_eq!(full, Backoff::MAX);
        b.reset();
        assert!(b.next_wait() <= Backoff::FIRST);
    }

    /// A witness that names more entries than the checkpoint has (its record was reset,
    /// or a stale size was learned) is asked again with old size 0 next time, not skipped
    /// forever.
    #[test]
    fn a_size_above_the_checkpoint_is_forgotten_after_the_failure() {
        let link = WitnessLink::new(WitnessTarget {
            url: "http://127.0.0.1:9".into(),
            cosigner: Cosigner {
                name: "witness.test/w".into(),
                public_key: [1; 32],
            },
        });
        link.known_size.store(100, Ordering::Relaxed);
        let client = WitnessClient::new(
            &crate::client::ClientTls::default(),
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(link.submit(&client, "note", 10, |_| Ok(Vec::new())))
            .unwrap_err();
        assert!(e.contains("more than this checkpoint's 10"), "{e}");
        assert_eq!(link.known_size.load(Ordering::Relaxed), UNKNOWN);
    }
}

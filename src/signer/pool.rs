//! A pool of worker threads that sign with one HSM key, each on its own session.
//!
//! Jobs go through a bounded queue; a semaphore with as many permits as the queue has
//! places gives async callers back-pressure without blocking the runtime (a caller
//! waits for a permit, then its job is sure to fit). Each worker owns one cryptoki
//! [`Session`] (sessions are `Send` but not `Sync`) and the key's handle in it.
//!
//! A worker answers a signature as soon as the HSM returns it; its software verification
//! (verify-after-sign) is made once, by whichever side claims it first: the caller, once
//! it has the answer, or a worker with no job waiting (it takes the newest signatures it
//! made, which their callers will reach last). The session is never held for a
//! verification while a job waits, and an idle signing thread's CPU takes work off the
//! callers' threads. A signature that fails verification is made once more, and none is
//! handed out before it passed.
//!
//! When a worker sees a device or session error it answers
//! [`SignerError::HsmUnavailable`], drops its session and reopens one (logging in again
//! if the token lost its login, looking the key up again) with a backoff from 100 ms
//! to 2 s. Until it succeeds it answers every job at once with `HsmUnavailable`, so no
//! caller ever hangs on a dead HSM.
//!
//! When reopening says the token is gone (not listed any more, device removed or in
//! error, library not initialised), the worker re-initialises the PKCS#11 library
//! (`Module::reset`, at most once a second per module), because some libraries
//! (SoftHSM among them) never rediscover a token that vanished. Every PKCS#11 call a
//! worker makes runs under a shared guard on the module, so a re-initialisation never
//! runs under a signature in flight; a session from before it is forgotten, never
//! closed (its handle number may belong to a new session), and reopened.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use cryptoki::object::{AttributeType, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::pkcs11::{find_private_key, open_session, Credentials, Live, Module, TokenSession};
use super::signing::{passes, sign_input, signing_input};
use super::soft_verify::SoftVerifier;
use super::{
    Hsm, KeyAlgorithm, KeyInfo, Pkcs11Failure, SignFuture, SignatureAlgorithm, Signer, SignerError,
    TokenSelector,
};

/// Queue places per session.
const QUEUE_PER_SESSION: usize = 64;
/// First reconnect delay after a failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// While a worker waits to retry, how often it looks whether the library was
/// re-initialised meanwhile (by another worker or the anchor): then it retries at once.
const EPOCH_POLL: Duration = Duration::from_millis(250);
/// How long an idle worker waits before looking at its state again.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Signatures a worker keeps for verifying when idle; older ones are left to their callers.
const PENDING_PER_WORKER: usize = 32;

type Reply<T> = oneshot::Sender<Result<T, SignerError>>;

enum Job {
    /// One signature of a signing input (what `signing_input` made of the message);
    /// answered with the encoded signature, or `None` for a malformed one.
    Sign {
        input: Arc<Vec<u8>>,
        /// What the signature must verify against, when verify-after-sign is on.
        check: Option<CheckRequest>,
        reply: Reply<Option<Signed>>,
        _permit: OwnedSemaphorePermit,
    },
    Health {
        reply: Reply<()>,
        _permit: OwnedSemaphorePermit,
    },
}

/// The message of a signature and the verifier it must pass.
struct CheckRequest {
    message: Arc<Vec<u8>>,
    verifier: Arc<SoftVerifier>,
}

/// A worker's answer: the encoded signature, and when verify-after-sign is on, the
/// verification, which the caller makes unless a worker has claimed it.
struct Signed {
    signature: Vec<u8>,
    check: Option<SharedCheck>,
}

/// The caller's side of a verification that either it or a worker makes.
struct SharedCheck {
    /// Set by whichever side makes the verification.
    claimed: Arc<AtomicBool>,
    /// The verdict, when a worker made it.
    verdict: oneshot::Receiver<bool>,
}

/// The worker's side: a signature it may verify when it has no job.
struct Pending {
    claimed: Arc<AtomicBool>,
    request: CheckRequest,
    signature: Vec<u8>,
    verdict: oneshot::Sender<bool>,
}

impl Pending {
    /// The two sides of the verification of `signature`, not claimed yet.
    fn new(request: CheckRequest, signature: Vec<u8>) -> (Pending, SharedCheck) {
        let claimed = Arc::new(AtomicBool::new(false));
        let (verdict, verdict_rx) = oneshot::channel();
        let pending = Pending {
            claimed: Arc::clone(&claimed),
            request,
            signature,
            verdict,
        };
        let check = SharedCheck {
            claimed,
            verdict: verdict_rx,
        };
        (pending, check)
    }

    /// Verifies the signature unless its caller claimed it first, and sends the verdict.
    /// Whether it made the verification.
    fn verify(self, algorithm: KeyAlgorithm) -> bool {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let verdict = passes(
            Some(&self.request.verifier),
            algorithm,
            &self.request.message,
            &self.signature,
        );
        // A caller that went away does not need the verdict.
        let _ = self.verdict.send(verdict);
        true
    }
}

impl Job {
    fn fail(self, error: SignerError) {
        // A caller that went away does not need its answer.
        match self {
            Job::Sign { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Job::Health { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// Signs with one HSM key through `sessions` worker threads; implements [`Signer`].
///
/// Dropping the pool stops the workers (jobs still queued are answered with
/// [`SignerError::PoolStopped`]) and closes their sessions.
pub struct SigningPool {
    key: Arc<KeyInfo>,
    counters: Arc<Counters>,
    algorithm: SignatureAlgorithm,
    /// Checks every signature on the caller's thread, once the session is free again.
    verifier: Option<Arc<SoftVerifier>>,
    jobs: Sender<Job>,
    permits: Arc<Semaphore>,
    /// Dropped to tell the workers to stop.
    stop: Option<Sender<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// The pool's counters, shared with its workers.
#[derive(Debug, Default)]
struct Counters {
    signatures: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    reconnects: std::sync::atomic::AtomicU64,
}

impl Counters {
    fn bump(c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SigningPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningPool")
            .field("key", &self.key.label)
            .field("algorithm", &self.algorithm)
            .field("sessions", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl SigningPool {
    /// Starts `sessions` workers signing with the key labelled `key_label` on `hsm`'s
    /// token. Every worker's session is opened and the key found before this returns,
    /// so a missing key or an unusable token fails here, not at the first request.
    ///
    /// `verify_after_sign` switches the software verification of every signature (on
    /// in production; off only to measure what it costs).
    pub fn start(
        hsm: &Hsm,
        key_label: &str,
        sessions: usize,
        verify_after_sign: bool,
    ) -> Result<SigningPool, SignerError> {
        if sessions == 0 {
            return Err(SignerError::InvalidArgument(
                "a signing pool needs at least one session",
            ));
        }
        let key = Arc::new(hsm.find_key(key_label)?);
        let verifier = Arc::new(SoftVerifier::from_spki_der(&key.public_key_der)?);
        let capacity = sessions.saturating_mul(QUEUE_PER_SESSION);
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(capacity);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut workers = Vec::with_capacity(sessions);
        let counters = Arc::new(Counters::default());
        for index in 0..sessions {
            let conn = {
                let live = hsm.module().read();
                Connection::open(&live, hsm.selector(), hsm.credentials(), &key)
            }?;
            let worker = Worker {
                index,
                module: hsm.module(),
                selector: hsm.selector().clone(),
                credentials: Arc::clone(hsm.credentials()),
                key: Arc::clone(&key),
                conn: Some(conn),
                backoff: BACKOFF_MIN,
                retry_at: Instant::now(),
                last_attempt: Instant::now(),
                failed_epoch: None,
                last_failure: None,
                jobs: jobs_rx.clone(),
                stop: stop_rx.clone(),
                counters: Arc::clone(&counters),
                pending: VecDeque::new(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("hsm-signer-{index}"))
                .spawn(move || worker.run())
                .map_err(SignerError::WorkerSpawn)?;
            workers.push(handle);
        }
        tracing::info!(
            key = %key.label,
            algorithm = %key.algorithm,
            sessions,
            verify_after_sign,
            "signing pool started"
        );
        Ok(SigningPool {
            algorithm: SignatureAlgorithm::for_key(key.algorithm),
            verifier: verify_after_sign.then_some(verifier),
            key,
            counters,
            jobs: jobs_tx,
            permits: Arc::new(Semaphore::new(capacity)),
            stop: Some(stop_tx),
            workers,
        })
    }

    /// Checks signatures against `verifier` instead of the key's own: a test of what a
    /// signature that fails verify-after-sign does.
    #[cfg(test)]
    fn checking_with(mut self, verifier: SoftVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// The key this pool signs with.
    #[cfg(test)]
    pub(crate) fn key_info(&self) -> &KeyInfo {
        &self.key
    }

    /// The DER SubjectPublicKeyInfo of the signing key, as read from the HSM.
    pub fn public_key_der(&self) -> &[u8] {
        &self.key.public_key_der
    }

    /// Readiness check: a worker checks that its session is logged in (C_GetSessionInfo)
    /// and that the key's handle still works (C_GetAttributeValue). A worker without a
    /// session first tries to reopen one (re-initialising the library if the token is
    /// gone, throttled), so recovery shows here without a signing request coming first.
    /// Blocks the calling thread; use [`Self::health_async`] from async code.
    pub fn health(&self) -> Result<(), SignerError> {
        block_on(self.health_async())
    }

    /// [`Self::health`] without blocking an async runtime.
    pub fn health_async(&self) -> impl Future<Output = Result<(), SignerError>> + Send + 'static {
        let (permits, jobs) = (Arc::clone(&self.permits), self.jobs.clone());
        async move {
            let permit = acquire(permits).await?;
            let (reply, answer) = oneshot::channel();
            submit(
                jobs,
                Job::Health {
                    reply,
                    _permit: permit,
                },
            )?;
            answer.await.map_err(|_| SignerError::PoolStopped)?
        }
    }
}

async fn acquire(permits: Arc<Semaphore>) -> Result<OwnedSemaphorePermit, SignerError> {
    permits
        .acquire_owned()
        .await
        .map_err(|_| SignerError::PoolStopped)
}

/// Signs `message` through the workers: a signature that fails software verification
/// (made by the caller here, or by an idle worker, never while a job waits for the
/// session) is made once more; a second failure is [`SignerError::SignatureVerification`].
async fn sign_verified(
    algorithm: KeyAlgorithm,
    message: Vec<u8>,
    verifier: Option<Arc<SoftVerifier>>,
    permits: &Arc<Semaphore>,
    jobs: &Sender<Job>,
) -> Result<Vec<u8>, SignerError> {
    let input = Arc::new(signing_input(algorithm, &message)?);
    let message = Arc::new(message);
    for _attempt in 1..=2 {
        let permit = acquire(Arc::clone(permits)).await?;
        let (reply, answer) = oneshot::channel();
        submit(
            jobs.clone(),
            Job::Sign {
                input: Arc::clone(&input),
                check: verifier.as_ref().map(|verifier| CheckRequest {
                    message: Arc::clone(&message),
                    verifier: Arc::clone(verifier),
                }),
                reply,
                _permit: permit,
            },
        )?;
        let signed = answer.await.map_err(|_| SignerError::PoolStopped)??;
        if let Some(Signed { signature, check }) = signed {
            if verified(check, algorithm, &message, &signature, verifier.as_deref()).await {
                return Ok(signature);
            }
        }
    }
    Err(SignerError::SignatureVerification)
}

/// Whether a worker's signature passed verify-after-sign: verified here unless a worker
/// claimed it first, in which case its verdict is awaited.
async fn verified(
    check: Option<SharedCheck>,
    algorithm: KeyAlgorithm,
    message: &[u8],
    signature: &[u8],
    verifier: Option<&SoftVerifier>,
) -> bool {
    let Some(verifier) = verifier else {
        return true;
    };
    if let Some(check) = check {
        if check.claimed.swap(true, Ordering::AcqRel) {
            // A worker is verifying it; a worker that stopped meanwhile gave no verdict.
            return check.verdict.await.unwrap_or(false);
        }
    }
    passes(Some(verifier), algorithm, message, signature)
}

/// Queues `job`; consumes the sender so that a queued job never keeps the queue alive.
fn submit(jobs: Sender<Job>, job: Job) -> Result<(), SignerError> {
    match jobs.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Disconnected(_)) => Err(SignerError::PoolStopped),
        // Cannot happen: a job holds one of as many permits as the queue has places.
        Err(TrySendError::Full(_)) => Err(SignerError::HsmUnavailable { last: None }),
    }
}

impl Signer for SigningPool {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn counts(&self) -> super::SignerCounts {
        use std::sync::atomic::Ordering::Relaxed;
        super::SignerCounts {
            signatures: self.counters.signatures.load(Relaxed),
            errors: self.counters.errors.load(Relaxed),
            reconnects: self.counters.reconnects.load(Relaxed),
        }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.key.public_key_der
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        block_on(self.sign_async(message.to_vec()))
    }

    fn sign_async(&self, message: Vec<u8>) -> SignFuture {
        let (permits, jobs) = (Arc::clone(&self.permits), self.jobs.clone());
        let (verifier, counters) = (self.verifier.clone(), Arc::clone(&self.counters));
        let algorithm = self.key.algorithm;
        Box::pin(async move {
            let result = sign_verified(algorithm, message, verifier, &permits, &jobs).await;
            Counters::bump(if result.is_ok() {
                &counters.signatures
            } else {
                &counters.errors
            });
            result
        })
    }

    fn health(&self) -> Result<(), SignerError> {
        SigningPool::health(self)
    }
}

impl Drop for SigningPool {
    fn drop(&mut self) {
        self.permits.close();
        drop(self.stop.take());
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("a signing worker panicked");
            }
        }
        tracing::info!(key = %self.key.label, "signing pool stopped");
    }
}

/// Polls `future` to completion on the calling thread, parking it between wake-ups.
/// Unlike `blocking_recv`, it does not panic when called from inside a runtime (it
/// does block that runtime thread: async code should await `sign_async`).
fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// A worker's session and the key's handle in it.
struct Connection {
    session: TokenSession,
    key: ObjectHandle,
}

impl Connection {
    /// Opens a session under `live`, logs in and finds the key. On an error the bare
    /// session is closed here, still under `live`.
    fn open(
        live: &Live,
        selector: &TokenSelector,
        credentials: &Credentials,
        key: &KeyInfo,
    ) -> Result<Connection, SignerError> {
        let session = open_session(live, selector, credentials, false)?;
        let key = find_private_key(&session, &key.label, Some(&key.id))?;
        Ok(Connection {
            session: live.adopt(session),
            key,
        })
    }
}

/// The readiness check on a worker's session: it is logged in, and the key's handle
/// still works (a token that went away leaves the session itself looking healthy, but
/// its objects answer CKR_OBJECT_HANDLE_INVALID).
fn check(session: &Session, key: ObjectHandle) -> Result<(), SignerError> {
    let state = session.get_session_info()?.session_state();
    if !matches!(state, SessionState::RoUser | SessionState::RwUser) {
        return Err(SignerError::HsmUnavailable {
            last: Some(Pkcs11Failure {
                function: cryptoki::context::Function::GetSessionInfo,
                rv: cryptoki::error::RvError::UserNotLoggedIn,
            }),
        });
    }
    session.get_attributes(key, &[AttributeType::Sign])?;
    Ok(())
}

struct Worker {
    index: usize,
    module: &'static Module,
    selector: TokenSelector,
    credentials: Arc<Credentials>,
    key: Arc<KeyInfo>,
    conn: Option<Connection>,
    backoff: Duration,
    retry_at: Instant,
    /// When the last reconnect attempt started.
    last_attempt: Instant,
    /// The library epoch under which the last reconnect attempt failed.
    failed_epoch: Option<u64>,
    last_failure: Option<Pkcs11Failure>,
    jobs: Receiver<Job>,
    stop: Receiver<()>,
    counters: Arc<Counters>,
    /// Signatures this worker made whose verification nobody has claimed yet, newest last.
    pending: VecDeque<Pending>,
}

impl Worker {
    /// Whether the worker should try to reopen its session (it has none, and the token
    /// has not refused the PIN: a refused PIN is never sent again).
    fn wants_session(&self) -> bool {
        self.conn.is_none() && self.credentials.refused().is_none()
    }

    fn run(mut self) {
        loop {
            if self.wants_session() && (Instant::now() >= self.retry_at || self.epoch_moved()) {
                self.reconnect();
            }
            // With no job waiting, verify the newest signature whose caller has not got
            // to it yet (one at a time: a job that arrives meanwhile waits for one
            // verification at most).
            if self.jobs.is_empty() {
                if let Some(pending) = self.pending.pop_back() {
                    pending.verify(self.key.algorithm);
                    continue;
                }
            }
            let wait = if self.wants_session() {
                self.retry_at
                    .saturating_duration_since(Instant::now())
                    .min(EPOCH_POLL)
            } else {
                IDLE_TICK
            };
            select! {
                recv(self.stop) -> _ => break,
                recv(self.jobs) -> job => match job {
                    Ok(job) => self.handle(job),
                    Err(_) => break,
                },
                default(wait) => self.refresh_if_stale(),
            }
        }
        while let Ok(job) = self.jobs.try_recv() {
            job.fail(SignerError::PoolStopped);
        }
        // `self.conn` is dropped here, with no guard held: closed if current, forgotten
        // if the library was re-initialised since it was opened.
    }

    /// Opens a session (re-initialising the library first if the token is gone, at
    /// most once a second per module) and finds the key again.
    fn reconnect(&mut self) {
        self.last_attempt = Instant::now();
        let opened = self.module.with_recovery(|live| {
            Connection::open(live, &self.selector, &self.credentials, &self.key)
        });
        match opened {
            Ok(conn) => {
                tracing::info!(
                    worker = self.index,
                    key = %self.key.label,
                    epoch = conn.session.epoch(),
                    "HSM session reopened"
                );
                self.conn = Some(conn);
                Counters::bump(&self.counters.reconnects);
                self.backoff = BACKOFF_MIN;
                self.last_failure = None;
                self.failed_epoch = None;
            }
            Err(e @ (SignerError::WrongPin | SignerError::PinLocked)) => {
                tracing::error!(
                    worker = self.index,
                    error = %e,
                    "the token refused the PIN on reconnect; it will not be tried again"
                );
            }
            Err(e) => {
                if let SignerError::HsmUnavailable { last: Some(f) } | SignerError::Pkcs11(f) = &e {
                    self.last_failure = Some(*f);
                }
                tracing::warn!(
                    worker = self.index,
                    error = %e,
                    retry_in_ms = self.backoff.as_millis(),
                    "cannot reopen the HSM session"
                );
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.failed_epoch = Some(self.module.read().epoch());
            }
        }
    }

    /// Whether the library was re-initialised since the last reconnect attempt failed:
    /// the token may be back, so the backoff need not be waited out.
    fn epoch_moved(&self) -> bool {
        self.failed_epoch
            .is_some_and(|epoch| !self.module.is_current(epoch))
    }

    /// When idle: replaces a session opened before the library was re-initialised by
    /// someone else (so the token stays logged in and the next job does not wait).
    fn refresh_if_stale(&mut self) {
        let stale = self
            .conn
            .as_ref()
            .is_some_and(|c| !self.module.is_current(c.session.epoch()));
        if stale {
            self.conn = None;
            self.reconnect();
        }
    }

    fn unavailable(&self) -> SignerError {
        match self.credentials.refused() {
            Some(refused) => refused,
            None => SignerError::HsmUnavailable {
                last: self.last_failure,
            },
        }
    }

    /// After a device or session error: forget the session and reconnect at once.
    fn disconnect(&mut self, error: &SignerError) {
        if let SignerError::HsmUnavailable { last } = error {
            tracing::warn!(worker = self.index, error = %error, "dropping the HSM session");
            self.last_failure = *last;
            self.conn = None;
            self.retry_at = Instant::now();
            self.backoff = BACKOFF_MIN;
        }
    }

    /// Runs `op` on the session and key handle under a shared guard on the module.
    ///
    /// Without a session it answers [`Self::unavailable`] at once (no PKCS#11 call). A
    /// session from before a re-initialisation is replaced first (once). A device or
    /// session error drops the session. The hot path is one uncontended read lock and
    /// an epoch comparison around `op`.
    fn run_op<T>(
        &mut self,
        op: impl FnOnce(&Self, &Session, ObjectHandle) -> Result<T, SignerError>,
    ) -> Result<T, SignerError> {
        let mut op = Some(op);
        for _ in 0..2 {
            let Some(conn) = &self.conn else {
                return Err(self.unavailable());
            };
            let outcome = {
                let live = self.module.read();
                match conn.session.get(&live) {
                    Some(session) => op.take().map(|op| op(self, session, conn.key)),
                    None => None,
                }
            };
            // The guard is released: dropping a session below takes its own.
            match outcome {
                Some(result) => {
                    if let Err(e) = &result {
                        self.disconnect(e);
                    }
                    return result;
                }
                None => {
                    tracing::info!(
                        worker = self.index,
                        "the PKCS#11 library was re-initialised; reopening the HSM session"
                    );
                    self.conn = None;
                    self.reconnect();
                }
            }
        }
        Err(self.unavailable())
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Sign {
                input,
                check,
                reply,
                _permit,
            } => {
                let algorithm = self.key.algorithm;
                let result =
                    self.run_op(|_, session, key| sign_input(session, key, algorithm, &input));
                let answer = match (result, check) {
                    (Ok(Some(signature)), Some(request)) => {
                        let (pending, check) = Pending::new(request, signature.clone());
                        if self.pending.len() == PENDING_PER_WORKER {
                            self.pending.pop_front();
                        }
                        self.pending.push_back(pending);
                        Ok(Some(Signed {
                            signature,
                            check: Some(check),
                        }))
                    }
                    (result, _) => result.map(|signature| {
                        signature.map(|signature| Signed {
                            signature,
                            check: None,
                        })
                    }),
                };
                let _ = reply.send(answer);
            }
            Job::Health { reply, _permit } => {
                // A readiness probe does not wait for the backoff to pass: it may itself
                // reopen the session (and re-initialise the library, throttled), though
                // not more often than every BACKOFF_MIN.
                if self.wants_session() && self.last_attempt.elapsed() >= BACKOFF_MIN {
                    self.reconnect();
                }
                let result = self.run_op(|_, session, key| check(session, key));
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests;

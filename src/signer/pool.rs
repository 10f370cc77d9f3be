//! A pool of worker threads that sign with one HSM key, each on its own session.
//!
//! Jobs go through a bounded queue; a semaphore with as many permits as the queue has
//! places gives async callers back-pressure without blocking the runtime (a caller
//! waits for a permit, then its job is sure to fit). Each worker owns one cryptoki
//! [`Session`] (sessions are `Send` but not `Sync`) and the key's handle in it.
//!
//! When a worker sees a device or session error it answers
//! [`SignerError::HsmUnavailable`], drops its session and reopens one (logging in again
//! if the token lost its login, looking the key up again) with a backoff from 100 ms
//! to 2 s. Until it succeeds it answers every job at once with `HsmUnavailable`, so no
//! caller ever hangs on a dead HSM.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use cryptoki::context::Pkcs11;
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState};
use secrecy::SecretString;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::pkcs11::{find_private_key, open_session};
use super::signing::sign_message;
use super::soft_verify::SoftVerifier;
use super::{
    Hsm, KeyInfo, Pkcs11Failure, SignFuture, SignatureAlgorithm, Signer, SignerError, TokenSelector,
};

/// Queue places per session.
const QUEUE_PER_SESSION: usize = 64;
/// First reconnect delay after a failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long an idle worker waits before looking at its state again.
const IDLE_TICK: Duration = Duration::from_secs(1);

type Reply<T> = oneshot::Sender<Result<T, SignerError>>;

enum Job {
    Sign {
        message: Vec<u8>,
        reply: Reply<Vec<u8>>,
        _permit: OwnedSemaphorePermit,
    },
    Health {
        reply: Reply<()>,
        _permit: OwnedSemaphorePermit,
    },
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
    algorithm: SignatureAlgorithm,
    jobs: Sender<Job>,
    permits: Arc<Semaphore>,
    /// Dropped to tell the workers to stop.
    stop: Option<Sender<()>>,
    workers: Vec<JoinHandle<()>>,
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
        for index in 0..sessions {
            let conn = Connection::open(hsm.context(), hsm.selector(), hsm.pin(), &key)?;
            let worker = Worker {
                index,
                ctx: hsm.context().clone(),
                selector: hsm.selector().clone(),
                pin: hsm.pin().clone(),
                key: Arc::clone(&key),
                verifier: verify_after_sign.then(|| Arc::clone(&verifier)),
                conn: Some(conn),
                backoff: BACKOFF_MIN,
                retry_at: Instant::now(),
                last_failure: None,
                pin_refused: false,
                jobs: jobs_rx.clone(),
                stop: stop_rx.clone(),
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
            key,
            jobs: jobs_tx,
            permits: Arc::new(Semaphore::new(capacity)),
            stop: Some(stop_tx),
            workers,
        })
    }

    /// The key this pool signs with.
    pub fn key_info(&self) -> &KeyInfo {
        &self.key
    }

    /// The scheme this pool's signatures are made with.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo of the signing key, as read from the HSM.
    pub fn public_key_der(&self) -> &[u8] {
        &self.key.public_key_der
    }

    /// Readiness check: a worker checks that its session still works and is logged in
    /// (C_GetSessionInfo). Blocks the calling thread; use [`Self::health_async`] from
    /// async code.
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

    fn public_key_der(&self) -> &[u8] {
        &self.key.public_key_der
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        block_on(self.sign_async(message.to_vec()))
    }

    fn sign_async(&self, message: Vec<u8>) -> SignFuture {
        let (permits, jobs) = (Arc::clone(&self.permits), self.jobs.clone());
        Box::pin(async move {
            let permit = acquire(permits).await?;
            let (reply, answer) = oneshot::channel();
            submit(
                jobs,
                Job::Sign {
                    message,
                    reply,
                    _permit: permit,
                },
            )?;
            answer.await.map_err(|_| SignerError::PoolStopped)?
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
    session: Session,
    key: ObjectHandle,
}

impl Connection {
    fn open(
        ctx: &Pkcs11,
        selector: &TokenSelector,
        pin: &SecretString,
        key: &KeyInfo,
    ) -> Result<Connection, SignerError> {
        let session = open_session(ctx, selector, pin, false)?;
        let key = find_private_key(&session, &key.label, Some(&key.id))?;
        Ok(Connection { session, key })
    }

    fn check(&self) -> Result<(), SignerError> {
        let state = self.session.get_session_info()?.session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            Ok(())
        } else {
            Err(SignerError::HsmUnavailable {
                last: Some(Pkcs11Failure {
                    function: cryptoki::context::Function::GetSessionInfo,
                    rv: cryptoki::error::RvError::UserNotLoggedIn,
                }),
            })
        }
    }
}

struct Worker {
    index: usize,
    ctx: Pkcs11,
    selector: TokenSelector,
    pin: SecretString,
    key: Arc<KeyInfo>,
    verifier: Option<Arc<SoftVerifier>>,
    conn: Option<Connection>,
    backoff: Duration,
    retry_at: Instant,
    last_failure: Option<Pkcs11Failure>,
    /// The token refused the PIN on a reconnect: never try it again (a real HSM would
    /// lock the PIN after a few tries).
    pin_refused: bool,
    jobs: Receiver<Job>,
    stop: Receiver<()>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let reconnecting = self.conn.is_none() && !self.pin_refused;
            if reconnecting && Instant::now() >= self.retry_at {
                self.reconnect();
            }
            let wait = if self.conn.is_none() && !self.pin_refused {
                self.retry_at.saturating_duration_since(Instant::now())
            } else {
                IDLE_TICK
            };
            select! {
                recv(self.stop) -> _ => break,
                recv(self.jobs) -> job => match job {
                    Ok(job) => self.handle(job),
                    Err(_) => break,
                },
                default(wait) => {}
            }
        }
        while let Ok(job) = self.jobs.try_recv() {
            job.fail(SignerError::PoolStopped);
        }
    }

    fn reconnect(&mut self) {
        match Connection::open(&self.ctx, &self.selector, &self.pin, &self.key) {
            Ok(conn) => {
                tracing::info!(worker = self.index, key = %self.key.label, "HSM session reopened");
                self.conn = Some(conn);
                self.backoff = BACKOFF_MIN;
                self.last_failure = None;
            }
            Err(e @ (SignerError::WrongPin | SignerError::PinLocked)) => {
                tracing::error!(
                    worker = self.index,
                    error = %e,
                    "the token refused the PIN on reconnect; this worker will not retry"
                );
                self.pin_refused = true;
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
            }
        }
    }

    fn unavailable(&self) -> SignerError {
        if self.pin_refused {
            SignerError::WrongPin
        } else {
            SignerError::HsmUnavailable {
                last: self.last_failure,
            }
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

    fn handle(&mut self, job: Job) {
        match job {
            Job::Sign {
                message,
                reply,
                _permit,
            } => {
                let result = match &self.conn {
                    None => Err(self.unavailable()),
                    Some(conn) => sign_message(
                        &conn.session,
                        conn.key,
                        self.key.algorithm,
                        self.verifier.as_deref(),
                        &message,
                    ),
                };
                if let Err(e) = &result {
                    self.disconnect(e);
                }
                let _ = reply.send(result);
            }
            Job::Health { reply, _permit } => {
                let result = match &self.conn {
                    None => Err(self.unavailable()),
                    Some(conn) => conn.check(),
                };
                if let Err(e) = &result {
                    self.disconnect(e);
                }
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::signer::testsupport;
    use crate::signer::{KeyAlgorithm, KeyPurpose};

    #[test]
    fn two_sessions_sign_500_messages_from_several_threads() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let key = hsm
            .generate_key("pool-p256", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let pool = Arc::new(SigningPool::start(&hsm, "pool-p256", 2, true).unwrap());
        assert_eq!(pool.key_info(), &key);
        assert_eq!(Signer::algorithm(&*pool), SignatureAlgorithm::EcdsaSha256);
        pool.health().unwrap();

        let verifier = SoftVerifier::from_spki_der(pool.public_key_der()).unwrap();
        let threads: Vec<_> = (0..5)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| {
                            let message = format!("thread {t} message {i}").into_bytes();
                            let sig = pool.sign(&message).unwrap();
                            (message, sig)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut count = 0;
        for t in threads {
            for (message, sig) in t.join().unwrap() {
                verifier.verify(&message, &sig).unwrap();
                count += 1;
            }
        }
        assert_eq!(count, 500);
    }

    #[test]
    fn sign_async_from_a_tokio_runtime() {
        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("pool-ed", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap();
        let pool: Arc<dyn Signer> = Arc::new(SigningPool::start(&hsm, "pool-ed", 2, true).unwrap());
        let verifier = SoftVerifier::from_spki_der(pool.public_key_der()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let results = runtime.block_on(async {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move {
                        let message = format!("checkpoint {i}").into_bytes();
                        let sig = pool.sign_async(message.clone()).await.unwrap();
                        (message, sig)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert_eq!(results.len(), 200);
        for (message, sig) in results {
            verifier.verify(&message, &sig).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_async_and_rsa_without_verification() {
        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("pool-rsa", KeyAlgorithm::Rsa(2048), KeyPurpose::Tsa)
            .unwrap();
        let pool = SigningPool::start(&hsm, "pool-rsa", 1, false).unwrap();
        pool.health_async().await.unwrap();
        let sig = pool.sign_async(b"tst-info".to_vec()).await.unwrap();
        SoftVerifier::from_spki_der(pool.public_key_der())
            .unwrap()
            .verify(b"tst-info", &sig)
            .unwrap();
    }

    #[test]
    fn start_fails_fast_on_a_missing_key_or_zero_sessions() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let err = SigningPool::start(&hsm, "absent", 2, true).unwrap_err();
        assert!(matches!(err, SignerError::KeyNotFound(_)), "{err}");
        hsm.generate_key("k", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        assert!(matches!(
            SigningPool::start(&hsm, "k", 0, true),
            Err(SignerError::InvalidArgument(_))
        ));
    }

    #[test]
    fn workers_log_in_again_after_a_logout() {
        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("rc", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let pool = SigningPool::start(&hsm, "rc", 2, true).unwrap();
        pool.sign(b"before").unwrap();

        // C_Logout on the anchor logs every session of the token out: the workers'
        // key handles stop working until they log in again.
        hsm.logout_for_test().unwrap();

        // Jobs fail with HsmUnavailable (never hang) until the workers have reconnected.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut unavailable = 0;
        loop {
            match pool.sign(b"after") {
                Ok(_) => break,
                Err(e) if e.is_unavailable() => unavailable += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
            assert!(Instant::now() < deadline, "the pool did not reconnect");
        }
        assert!(unavailable >= 1, "the closed session went unnoticed");
        for _ in 0..20 {
            pool.sign(b"steady").unwrap();
        }
        pool.health().unwrap();
        // The anchor logs in again too.
        let key = hsm.find_key("rc").unwrap();
        hsm.sign(&key, b"anchor").unwrap();
    }

    #[test]
    fn dropping_the_pool_answers_pending_async_callers() {
        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("stop", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let pool = SigningPool::start(&hsm, "stop", 1, true).unwrap();
        let pending = pool.sign_async(b"late".to_vec());
        drop(pool);
        let result = block_on(pending);
        assert!(
            matches!(result, Err(SignerError::PoolStopped)),
            "{result:?}"
        );
    }
}

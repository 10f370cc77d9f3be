//! Tests of `pool`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::signer::pkcs11::{needs_reinit, Reset};
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

/// A signature that fails verify-after-sign is made once more, and when that fails
/// too, no signature is handed out: the caller gets SignatureVerification, counted as
/// an error. (Checked against another key's verifier, as a broken HSM would look.)
#[test]
fn a_signature_that_fails_verification_is_never_handed_out() {
    let token = testsupport::new_token();
    let hsm = token.open();
    hsm.generate_key("bad-sig", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let other = hsm
        .generate_key("other-key", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let pool = SigningPool::start(&hsm, "bad-sig", 1, true)
        .unwrap()
        .checking_with(SoftVerifier::from_spki_der(&other.public_key_der).unwrap());
    let err = pool.sign(b"tst-info").unwrap_err();
    assert!(matches!(err, SignerError::SignatureVerification), "{err}");
    let counts = Signer::counts(&pool);
    assert_eq!((counts.signatures, counts.errors), (0, 1));
}

/// Verify-after-sign is made once, by whichever side claims it first: an idle worker's
/// verdict is what the caller goes by (here a worker checking against another key
/// refuses a signature the caller's own check would pass), a caller that claimed first
/// checks for itself and the worker skips it, and a claim that never gives a verdict
/// (a worker that stopped) hands nothing out.
#[test]
fn a_verification_is_made_once_by_whichever_side_claims_it() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let key = hsm
        .generate_key("claims", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let other = hsm
        .generate_key("claims-other", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let right = Arc::new(SoftVerifier::from_spki_der(&key.public_key_der).unwrap());
    let wrong = Arc::new(SoftVerifier::from_spki_der(&other.public_key_der).unwrap());
    let message = b"signed attributes".to_vec();
    let signature = hsm.sign(&key, &message).unwrap();
    let alg = KeyAlgorithm::EcdsaP256;
    let request = |verifier: &Arc<SoftVerifier>| CheckRequest {
        message: Arc::new(message.clone()),
        verifier: Arc::clone(verifier),
    };
    let check =
        |c, v: &SoftVerifier| block_on(verified(Some(c), alg, &message, &signature, Some(v)));

    // The worker claims first: its verdict counts, both ways.
    let (pending, shared) = Pending::new(request(&wrong), signature.clone());
    assert!(pending.verify(alg));
    assert!(!check(shared, &right));
    let (pending, shared) = Pending::new(request(&right), signature.clone());
    assert!(pending.verify(alg));
    assert!(check(shared, &wrong));

    // The caller claims first: it checks with its own verifier; the worker skips.
    let (pending, shared) = Pending::new(request(&right), signature.clone());
    assert!(!check(shared, &wrong));
    assert!(!pending.verify(alg));
    let (pending, shared) = Pending::new(request(&wrong), signature.clone());
    assert!(check(shared, &right));
    assert!(!pending.verify(alg));

    // Claimed by a worker that stopped before its verdict: refused.
    let (pending, shared) = Pending::new(request(&right), signature.clone());
    pending.claimed.store(true, Ordering::Release);
    drop(pending);
    assert!(!check(shared, &right));
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
    // One worker answering does not mean both have logged in again: wait (bounded)
    // until 20 signatures in a row succeed.
    let mut in_a_row = 0;
    while in_a_row < 20 {
        match pool.sign(b"steady") {
            Ok(_) => in_a_row += 1,
            Err(e) if e.is_unavailable() => in_a_row = 0,
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(Instant::now() < deadline, "the pool did not settle");
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

/// The environment variable that lets [`library_reset_child`] run.
const RESET_CHILD: &str = "AUDITSTAMP_TEST_RESET_CHILD";

/// Runs [`library_reset_child`] alone in a process of its own: a reset finalises the
/// library for the whole process, which would disturb the tests running beside it
/// in this one (and SoftHSM's token directory is per process anyway).
#[test]
fn library_reset_in_a_process_of_its_own() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "signer::pool::tests::library_reset_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(RESET_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{stderr}"
    );
}

/// A re-initialisation of the library: the pool and the anchor reopen their sessions
/// and log in again; a session of the old epoch is forgotten, never closed (closing
/// it would close whichever new session got its handle number); reset is once per
/// epoch and throttled.
#[test]
#[ignore = "run by library_reset_in_a_process_of_its_own"]
fn library_reset_child() {
    if std::env::var_os(RESET_CHILD).is_none() {
        return;
    }
    let token = testsupport::new_token();
    let hsm = token.open();
    let key = hsm
        .generate_key("reset", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let pool = SigningPool::start(&hsm, "reset", 2, true).unwrap();
    pool.sign(b"before").unwrap();
    let module = hsm.module();
    let old_epoch = hsm.anchor_epoch_for_test().unwrap();
    let old_handle = {
        let live = module.read();
        hsm.anchor_handle_for_test(&live).unwrap()
    };

    assert_eq!(module.reset(old_epoch), Reset::Done);
    let epoch = old_epoch + 1;
    assert!(module.is_current(epoch));
    // Somebody else's reset of the same epoch is not repeated; a new one waits.
    assert_eq!(module.reset(old_epoch), Reset::AlreadyDone);
    assert_eq!(module.reset(epoch), Reset::Throttled);
    assert!(module.is_current(epoch));

    // New sessions until one gets the anchor's old handle number (SoftHSM numbers
    // sessions from 1 again after C_Initialize).
    let mut fresh = Vec::new();
    let reused = {
        let live = module.read();
        let mut reused = None;
        for i in 0..32 {
            let session = open_session(&live, hsm.selector(), hsm.credentials(), false).unwrap();
            if session.handle() == old_handle {
                reused = Some(i);
            }
            fresh.push(live.adopt(session));
            if reused.is_some() {
                break;
            }
        }
        reused
    };
    assert!(reused.is_some(), "no new session got handle {old_handle}");

    // The anchor is stale: the next call replaces it (forgetting the old session) and
    // works, logged in again.
    let found = hsm.find_key("reset").unwrap();
    assert_eq!(found, key);
    hsm.sign(&key, b"anchor after reset").unwrap();
    assert_eq!(hsm.anchor_epoch_for_test(), Some(epoch));
    {
        let live = module.read();
        let reused = fresh.last().unwrap().get(&live).unwrap();
        assert_eq!(reused.handle(), old_handle);
        reused
            .get_session_info()
            .expect("the new session with the old anchor's handle number was closed");
    }

    // The workers reopen their sessions at their next job, without failing it.
    let verifier = SoftVerifier::from_spki_der(pool.public_key_der()).unwrap();
    for i in 0..20 {
        let message = format!("after reset {i}").into_bytes();
        let sig = pool.sign(&message).unwrap();
        verifier.verify(&message, &sig).unwrap();
    }
    pool.health().unwrap();
    drop(fresh);
    drop(pool);
    drop(hsm);
}

#[test]
fn which_failures_re_initialise_the_library() {
    use cryptoki::context::Function;
    use cryptoki::error::RvError;
    let failure = |rv| SignerError::HsmUnavailable {
        last: Some(Pkcs11Failure {
            function: Function::GetSlotList,
            rv,
        }),
    };
    assert!(needs_reinit(&SignerError::TokenNotFound {
        wanted: "label \"t\"".into(),
        seen: Vec::new(),
    }));
    for rv in [
        RvError::TokenNotPresent,
        RvError::DeviceRemoved,
        RvError::DeviceError,
        RvError::CryptokiNotInitialized,
    ] {
        assert!(needs_reinit(&failure(rv)), "{rv:?}");
    }
    for e in [
        SignerError::WrongPin,
        SignerError::PinLocked,
        SignerError::KeyNotFound("k".into()),
        failure(RvError::ObjectHandleInvalid),
        failure(RvError::SessionHandleInvalid),
        failure(RvError::UserNotLoggedIn),
        SignerError::HsmUnavailable { last: None },
    ] {
        assert!(!needs_reinit(&e), "{e:?}");
    }
}

//! Test support: a SoftHSM token per test, in a token directory private to this test
//! process.
//!
//! One process sees one PKCS#11 context, and SoftHSM reads `SOFTHSM2_CONF` only at the
//! first `C_Initialize`; so the first call here writes a `softhsm2.conf` in a fresh
//! temporary directory and points `SOFTHSM2_CONF` at it before any module is loaded.
//! Every test then gets its own token with a unique label (made with [`init_token`],
//! the same PKCS#11 path the simulator uses). Any test in this crate that needs an HSM
//! must come through here.
//!
//! The module is `AUDITSTAMP_PKCS11_MODULE`, by default SoftHSM2's; if it is missing
//! the tests fail and say how to install it — they never skip silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use der::asn1::{BitString, GeneralizedTime};
use der::{Decode, Encode};
use secrecy::SecretString;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::pkcs11::init_token;
use super::{Hsm, KeyInfo, TokenSelector};

/// The user PIN of every test token.
pub(crate) const USER_PIN: &str = "test-user-pin-5081";
/// The SO PIN of every test token.
pub(crate) const SO_PIN: &str = "test-so-pin-7723";

const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const DIR_PREFIX: &str = "auditstamp-softhsm-";

/// The PKCS#11 module the tests use; panics with install instructions if it is missing.
pub(crate) fn module_path() -> PathBuf {
    let module = std::env::var_os("AUDITSTAMP_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE));
    assert!(
        module.is_file(),
        "the PKCS#11 module {} is missing: install SoftHSM2 (`apt-get install softhsm2`) \
         or point AUDITSTAMP_PKCS11_MODULE at a PKCS#11 module",
        module.display()
    );
    module
}

/// Creates this process's token directory and config and sets `SOFTHSM2_CONF`, once.
pub(crate) fn ensure_config() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("create a temporary directory for SoftHSM")
            .keep();
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).expect("create the token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        std::env::set_var("SOFTHSM2_CONF", &conf);
        dir
    })
}

/// Token directories of earlier test processes that have exited (the directory of a
/// running test process is never removed: its pid is in the name).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh token for one test.
pub(crate) struct TestToken {
    /// The token's unique label.
    pub label: String,
    /// A selector for it.
    pub selector: TokenSelector,
}

impl TestToken {
    /// Opens the token with the test user PIN.
    pub(crate) fn open(&self) -> Hsm {
        Hsm::open(&self.selector, SecretString::from(USER_PIN)).expect("open the test token")
    }
}

/// Initialises a new token with a unique label, [`SO_PIN`] and [`USER_PIN`].
pub(crate) fn new_token() -> TestToken {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    ensure_config();
    let module = module_path();
    let label = format!("test-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    init_token(
        &module,
        &label,
        &SecretString::from(SO_PIN),
        &SecretString::from(USER_PIN),
    )
    .expect("initialise a test token");
    TestToken {
        selector: TokenSelector::by_label(module, label.clone()),
        label,
    }
}

/// A minimal self-signed certificate of `key` (no extensions), signed through the HSM.
pub(crate) fn self_signed_certificate(hsm: &Hsm, key: &KeyInfo, serial: u64) -> Vec<u8> {
    let name: Name = format!("CN={}", key.label).parse().unwrap();
    let now = SystemTime::now();
    let time = |t: SystemTime| {
        Time::GeneralTime(
            GeneralizedTime::from_unix_duration(Duration::from_secs(
                t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            ))
            .unwrap(),
        )
    };
    let algorithm = key.signature_algorithm().algorithm_identifier();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::from(serial),
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: time(now),
            not_after: time(now + Duration::from_secs(3600)),
        },
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&key.public_key_der).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signature = hsm.sign(key, &tbs.to_der().unwrap()).unwrap();
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).unwrap(),
    }
    .to_der()
    .unwrap()
}

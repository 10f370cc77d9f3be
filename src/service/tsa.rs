//! Issuing RFC 3161 time-stamp tokens.
//!
//! One request: validate it (`tsp`), take a genTime the clock guard vouches for, check
//! that the signer certificate is valid at that genTime (notBefore to notAfter, else
//! systemFailure), take a serial number, encode the TSTInfo and the signed attributes,
//! have the HSM sign them (verified in software by the signer before it answers),
//! assemble the reply, and record the issuance as a durable `tsa.issued` event in the
//! chain before answering: a token the appliance cannot record is not handed out
//! (systemFailure). That event is what makes every answered genTime durable
//! ([`gen_time`](super::gen_time)).

use std::sync::{Arc, RwLock};

use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

use super::serial::SerialAllocator;
use super::writer::EventWriter;
use super::ServiceError;
use crate::chain::event::{Action, Event};
use crate::chain::store::Store;
use crate::clock::ClockGuard;
use crate::signer::{SignatureAlgorithm, Signer};
use crate::tsp::{
    encode_tst_info, parse_request, Accuracy, GenTime, HashAlgorithm, RequestRules, TokenTemplate,
    TstParams,
};

/// The token profile, from the configuration.
#[derive(Debug, Clone)]
pub struct TsaSettings {
    /// Node id: the high bits of every serial number.
    pub node_id: u32,
    /// What requests are accepted.
    pub rules: RequestRules,
    /// The accuracy stated in every token.
    pub accuracy: Accuracy,
    /// Put the signer's subject in the TSTInfo's `tsa` field.
    pub include_tsa_name: bool,
    /// The appliance's name: the `agency` of its own `tsa.issued` events.
    pub appliance_name: String,
}

/// A key in the HSM with its certificate and chain: what tokens are signed with.
pub struct SigningIdentity {
    signer: Arc<dyn Signer>,
    template: TokenTemplate,
    certificates: Vec<Certificate>,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("algorithm", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

/// The X.509/CMS algorithm identifier and the messageDigest hash for a signer's scheme.
fn scheme(alg: SignatureAlgorithm) -> (AlgorithmIdentifierOwned, HashAlgorithm) {
    let (oid, null_params, digest) = match alg {
        SignatureAlgorithm::EcdsaSha256 => (
            const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            false,
            HashAlgorithm::Sha256,
        ),
        SignatureAlgorithm::EcdsaSha384 => (
            const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
            false,
            HashAlgorithm::Sha384,
        ),
        SignatureAlgorithm::RsaPkcs1Sha256 => (
            const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            true,
            HashAlgorithm::Sha256,
        ),
        // RFC 8419: with Ed25519 the message digest is SHA-512.
        SignatureAlgorithm::Ed25519 => (
            ObjectIdentifier::new_unwrap("1.3.101.112"),
            false,
            HashAlgorithm::Sha512,
        ),
    };
    let parameters = null_params.then(|| der::Any::from(der::asn1::Null));
    (AlgorithmIdentifierOwned { oid, parameters }, digest)
}

impl SigningIdentity {
    /// Binds `signer` to its certificate and chain. Refuses a certificate whose public key
    /// is not the signer's (the HSM key) — the check that stops a server from starting
    /// with someone else's certificate. `previous` are certificates of keys that signed
    /// before this one: published beside the chain so older tokens stay verifiable.
    pub fn new(
        signer: Arc<dyn Signer>,
        certificate: Certificate,
        chain: Vec<Certificate>,
        include_chain: bool,
        previous: Vec<Certificate>,
    ) -> Result<Self, ServiceError> {
        let cert_spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| {
                ServiceError::Identity(format!("cannot encode the certificate's key: {e}"))
            })?;
        let hsm_spki = SubjectPublicKeyInfoOwned::from_der(signer.public_key_der())
            .and_then(|k| k.to_der())
            .map_err(|e| ServiceError::Identity(format!("cannot read the HSM public key: {e}")))?;
        if cert_spki != hsm_spki {
            return Err(ServiceError::Identity(
                "the certificate's public key is not the HSM key's: this certificate belongs to another key"
                    .into(),
            ));
        }
        let (signature_algorithm, digest) = scheme(signer.algorithm());
        let token_chain: &[Certificate] = if include_chain { &chain } else { &[] };
        let template = TokenTemplate::new(&certificate, token_chain, digest, signature_algorithm)?;
        let validity = &certificate.tbs_certificate.validity;
        let millis = |t: &x509_cert::time::Time| {
            u64::try_from(t.to_unix_duration().as_millis()).unwrap_or(u64::MAX)
        };
        let not_before_ms = millis(&validity.not_before);
        let not_after_ms = millis(&validity.not_after);
        let mut certificates = vec![certificate];
        for c in chain.into_iter().chain(previous) {
            if !certificates.contains(&c) {
                certificates.push(c);
            }
        }
        Ok(SigningIdentity {
            signer,
            template,
            certificates,
            not_before_ms,
            not_after_ms,
        })
    }

    /// Whether a token with genTime `ms` may be signed with this certificate (RFC 5280
    /// validity: notBefore and notAfter inclusive).
    fn check_valid_at(&self, ms: u64) -> Result<(), ServiceError> {
        if ms < self.not_before_ms {
            return Err(ServiceError::CertificateNotYetValid {
                not_before: self
                    .certificate()
                    .tbs_certificate
                    .validity
                    .not_before
                    .to_string(),
            });
        }
        if ms > self.not_after_ms {
            return Err(ServiceError::CertificateExpired);
        }
        Ok(())
    }

    /// When the signer certificate's validity begins (Unix milliseconds).
    #[cfg(test)]
    pub fn not_before_ms(&self) -> u64 {
        self.not_before_ms
    }

    /// When the signer certificate expires (Unix milliseconds).
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms
    }

    /// Whole days from `now_ms` until the signer certificate expires (negative once expired).
    pub fn days_remaining(&self, now_ms: u64) -> i64 {
        let diff = i128::from(self.not_after_ms) - i128::from(now_ms);
        i64::try_from(diff.div_euclid(86_400_000)).unwrap_or(i64::MIN)
    }

    /// The signer certificate followed by its chain, root included, then the certificates
    /// of keys that signed before.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// The counters of the HSM signer of this identity.
    pub fn signer_counts(&self) -> crate::signer::SignerCounts {
        self.signer.counts()
    }

    /// The signer certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificates[0]
    }
}

/// The state of the three things a token needs, for the readiness probe.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The HSM answers on a session.
    pub hsm: Result<(), String>,
    /// The clock is trustworthy.
    pub clock: Result<(), String>,
    /// The store answers.
    pub store: Result<(), String>,
    /// The signer certificate is valid now (by the TSA's clock); the days it has left.
    pub certificate: Result<i64, String>,
}

impl Readiness {
    /// True when every part is ready.
    pub fn ready(&self) -> bool {
        self.hsm.is_ok() && self.clock.is_ok() && self.store.is_ok() && self.certificate.is_ok()
    }
}

/// The `details` of a `tsa.issued` event. Fields in key order and compact, so serde_json
/// writes exactly what [`canonical_details`](crate::chain::event::canonical_details) writes
/// for the same keys and values.
#[derive(serde::Serialize)]
struct IssuedDetails<'a> {
    digest: String,
    gen_time: String,
    hash_algorithm: &'a str,
    policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    requester: Option<&'a str>,
    serial: String,
}

/// The time-stamp authority.
pub struct TsaService {
    settings: TsaSettings,
    identity: RwLock<Arc<SigningIdentity>>,
    clock: ClockGuard,
    serials: SerialAllocator,
    store: Store,
    /// The event log's one writer, shared with the chain.
    writer: Arc<EventWriter>,
}

/// A genTime the clock guard handed out ([`TsaService::take_gen_time`]), in Unix
/// milliseconds: only the guard makes one, so a token is never given a time it did not
/// vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardedTime(u64);

impl GuardedTime {
    /// Unix milliseconds.
    pub fn unix_millis(self) -> u64 {
        self.0
    }
}

/// One token, signed.
struct Issued {
    response: Vec<u8>,
    serial: u128,
    gen_time_ms: u64,
}

/// What a token is issued over.
struct TokenRequest<'a> {
    policy: &'a ObjectIdentifier,
    hash: HashAlgorithm,
    hash_params_null: bool,
    digest: &'a [u8],
    nonce: Option<&'a der::asn1::Int>,
    cert_req: bool,
}

impl std::fmt::Debug for TsaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsaService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TsaService {
    /// A TSA signing with `identity`, handing out genTimes from `clock` and serial numbers
    /// from `store`, and recording every token in the event log through `writer`.
    pub fn new(
        settings: TsaSettings,
        identity: SigningIdentity,
        clock: ClockGuard,
        store: Store,
        writer: Arc<EventWriter>,
    ) -> Self {
        let serials = SerialAllocator::new(
            settings.node_id,
            store.clone(),
            super::serial::DEFAULT_BLOCK,
        );
        TsaService {
            settings,
            identity: RwLock::new(Arc::new(identity)),
            clock,
            serials,
            store,
            writer,
        }
    }

    /// The identity tokens are signed with now.
    pub fn identity(&self) -> Arc<SigningIdentity> {
        self.identity
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Signs with `identity` from now on. Requests already under way finish with the
    /// identity they started with (they hold it); nothing is refused during the switch.
    pub fn replace_identity(&self, identity: SigningIdentity) {
        *self
            .identity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(identity);
    }

    /// Answers one DER TimeStampReq with a granted DER TimeStampResp, or says why not.
    /// `requester` is the caller's identity, when the transport knows it; it goes into the
    /// `tsa.issued` event, which is durable before this returns.
    pub async fn issue(
        &self,
        request: &[u8],
        requester: Option<&str>,
    ) -> Result<Vec<u8>, ServiceError> {
        let req = parse_request(request, &self.settings.rules).map_err(ServiceError::Rejected)?;
        let issued = self
            .sign(
                &TokenRequest {
                    policy: &req.policy,
                    hash: req.hash,
                    hash_params_null: req.hash_params_null,
                    digest: &req.digest,
                    nonce: req.nonce.as_ref(),
                    cert_req: req.cert_req,
                },
                None,
            )
            .await?;
        let token = crate::tsp::granted_token(&issued.response)?;
        let event = self.issued_event(&issued, &req, token, requester)?;
        self.writer.append(vec![event]).await?;
        Ok(issued.response)
    }

    /// Takes a genTime from the clock guard now, for a token issued with it later by
    /// [`TsaService::token_for_digest`]: never earlier than a genTime handed out before,
    /// and refused (timeNotAvailable) while the clock is behind one or not trustworthy.
    /// What a block header's sealed time is, so that it is its token's genTime.
    pub fn take_gen_time(&self) -> Result<GuardedTime, ServiceError> {
        Ok(GuardedTime(self.clock.gen_time()?))
    }

    /// A token (the DER ContentInfo) over a SHA-256 `digest`, with the default policy and
    /// the signer certificate, whose genTime is `gen_time`: what block headers are
    /// time-stamped with. The caller records it (a block carries its own token).
    pub async fn token_for_digest(
        &self,
        digest: &[u8; 32],
        gen_time: GuardedTime,
    ) -> Result<Vec<u8>, ServiceError> {
        let issued = self
            .sign(
                &TokenRequest {
                    policy: &self.settings.rules.default_policy,
                    hash: HashAlgorithm::Sha256,
                    hash_params_null: false,
                    digest,
                    nonce: None,
                    cert_req: true,
                },
                Some(gen_time),
            )
            .await?;
        Ok(crate::tsp::granted_token(&issued.response)?.to_vec())
    }

    /// Signs a token with genTime `gen_time`, or one taken from the clock guard now.
    async fn sign(
        &self,
        req: &TokenRequest<'_>,
        gen_time: Option<GuardedTime>,
    ) -> Result<Issued, ServiceError> {
        let identity = self.identity();
        let gen_time = match gen_time {
            Some(t) => t.0,
            None => self.clock.gen_time()?,
        };
        identity.check_valid_at(gen_time)?;
        let serial = self.serials.next()?;
        let tsa_name = self
            .settings
            .include_tsa_name
            .then(|| identity.template.subject());
        let tst_info = encode_tst_info(&TstParams {
            policy: req.policy,
            hash: req.hash,
            hash_params_null: req.hash_params_null,
            digest: req.digest,
            serial,
            gen_time: GenTime::from_unix_millis(gen_time),
            accuracy: &self.settings.accuracy,
            nonce: req.nonce,
            tsa_name,
        })?;
        let signed_attrs = identity.template.signed_attributes(&tst_info)?;
        let signature = identity.signer.sign_async(signed_attrs.clone()).await?;
        let response = identity.template.granted_response(
            &tst_info,
            &signed_attrs,
            &signature,
            req.cert_req,
        )?;
        tracing::debug!(serial = %format_args!("{serial:x}"), gen_time, "token issued");
        Ok(Issued {
            response,
            serial,
            gen_time_ms: gen_time,
        })
    }

    /// The `tsa.issued` event of a token: its data hash is SHA-256 of the token's DER.
    fn issued_event(
        &self,
        issued: &Issued,
        req: &crate::tsp::ValidRequest,
        token: &[u8],
        requester: Option<&str>,
    ) -> Result<Event, ServiceError> {
        use sha2::Digest;
        let occurred_at_ns = i64::try_from(issued.gen_time_ms)
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or(i64::MAX);
        let details = IssuedDetails {
            digest: hex::encode(&req.digest),
            gen_time: crate::chain::event::format_time_ns(occurred_at_ns),
            hash_algorithm: req.hash.name(),
            policy: req.policy.to_string(),
            requester,
            serial: format!("{:x}", issued.serial),
        };
        let details = serde_json::to_string(&details)
            .ok()
            .filter(|d| d.len() <= crate::chain::event::MAX_DETAILS_BYTES)
            .ok_or_else(|| ServiceError::Chain("tsa.issued event: details too large".into()))?;
        Ok(Event {
            agency: self.settings.appliance_name.clone(),
            auditor: "tsa".into(),
            action: Action::TsaIssued,
            subject: format!("serial:{:x}", issued.serial),
            data_sha256: sha2::Sha256::digest(token).into(),
            occurred_at_ns,
            details,
        })
    }

    /// What the TSA's clock reads now (Unix milliseconds; 0 if it reads an impossible
    /// time), whether or not it can be trusted: for figures such as a certificate's days
    /// left.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms().unwrap_or(0)
    }

    /// What the TSA's clock reads now, whether or not it can be trusted: the time at
    /// which a new signing identity is checked.
    pub fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// The certificate chain as PEM: signer certificate first, root last.
    pub fn certificates_pem(&self) -> Result<String, ServiceError> {
        use der::EncodePem;
        let mut out = String::new();
        for c in self.identity().certificates() {
            out.push_str(&c.to_pem(der::pem::LineEnding::LF).map_err(|e| {
                ServiceError::Identity(format!("cannot encode a certificate: {e}"))
            })?);
        }
        Ok(out)
    }

    /// Checks the HSM, the clock and the store.
    pub async fn readiness(&self) -> Readiness {
        let signer = self.identity().signer.clone();
        let hsm = tokio::task::spawn_blocking(move || signer.health())
            .await
            .map_err(|e| format!("health check did not finish: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let identity = self.identity();
        // The time the clock would give a token now (the clock's own health is `clock`).
        let certificate = match self.clock.now_ms() {
            Err(e) => Err(format!("cannot read the clock: {e}")),
            Ok(now) => match identity.check_valid_at(now) {
                Ok(()) => Ok(identity.days_remaining(now)),
                Err(ServiceError::CertificateNotYetValid { not_before }) => Err(format!(
                    "the TSA certificate is not valid before {not_before}; tokens are refused until then"
                )),
                Err(_) => Err(
                    "the TSA certificate has expired; activate a key with a valid certificate"
                        .into(),
                ),
            },
        };
        Readiness {
            hsm,
            clock: self.clock.check().map_err(|e| e.to_string()),
            store: self.store.health().map_err(|e| e.to_string()),
            certificate,
        }
    }

    /// Makes the genTime mark durable: the last genTime issued, with the event log's size
    /// read before it (see [`GenTimeMark`](crate::chain::store::GenTimeMark)), so the
    /// floor at the next start needs to look only at the events committed since. Called
    /// every second and at a clean stop; never per token.
    pub fn persist_clock(&self) -> Result<(), ServiceError> {
        // In this order: a genTime later than the one read was handed out after the size
        // was read, and its event is committed after that.
        let log_size = self.writer.log().size();
        let gen_time = self.clock.last_issued();
        self.store.record_gen_time(gen_time, log_size)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::event::canonical_details;
    use crate::signer::Hsm;
    use std::time::Duration;

    /// The clock a test sets by hand (synchronised).
    pub(crate) use crate::clock::ManualClock;

    /// A TSA over a real SoftHSM key (certificate valid for an hour from its notBefore),
    /// a real store and event log, and `clock`; with the certificate's (notBefore,
    /// notAfter) in Unix milliseconds.
    fn tsa_with_clock(clock: Arc<ManualClock>) -> (TsaService, (u64, u64), tempfile::TempDir) {
        let hsm = crate::signer::testsupport::new_token().open();
        let (tsa, validity, dir, _log) = tsa_on(&hsm, clock);
        (tsa, validity, dir)
    }

    /// [`tsa_with_clock`] with its key on `hsm`'s token; with the event log's writer.
    pub(crate) fn tsa_on(
        hsm: &Hsm,
        clock: Arc<ManualClock>,
    ) -> (TsaService, (u64, u64), tempfile::TempDir, Arc<EventWriter>) {
        use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};
        let key = hsm
            .generate_key("tsa", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let cert =
            Certificate::from_der(&testsupport::self_signed_certificate(hsm, &key, 7)).unwrap();
        let pool = SigningPool::start(hsm, "tsa", 1, true).unwrap();
        let identity =
            SigningIdentity::new(Arc::new(pool), cert, Vec::new(), false, Vec::new()).unwrap();
        let validity = (identity.not_before_ms(), identity.not_after_ms());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = crate::chain::log::EventLog::open_with_clock(&store, clock.clone()).unwrap();
        let log = Arc::new(EventWriter::new(log));
        let policy: ObjectIdentifier = "1.3.6.1.5.5.7.13.1".parse().unwrap();
        let settings = TsaSettings {
            node_id: 1,
            rules: RequestRules {
                accepted_hashes: vec![HashAlgorithm::Sha256],
                accepted_policies: vec![policy],
                default_policy: policy,
            },
            accuracy: Accuracy::new(1, 0, 0).unwrap(),
            include_tsa_name: false,
            appliance_name: "test-appliance".into(),
        };
        let guard = ClockGuard::new(clock, false, Duration::from_secs(1), 0);
        (
            TsaService::new(settings, identity, guard, store, log.clone()),
            validity,
            dir,
            log,
        )
    }

    fn request() -> Vec<u8> {
        crate::tsp::encode_request(&crate::tsp::RequestParams {
            hash: HashAlgorithm::Sha256,
            digest: &[7u8; 32],
            policy: None,
            nonce: None,
            cert_req: true,
        })
        .unwrap()
    }

    /// Before the certificate's notBefore (by the TSA's clock) nothing is signed: requests
    /// and block tokens are refused as not-yet-valid, and readiness says why; from
    /// notBefore on, tokens are issued; after notAfter, refused as expired.
    #[test]
    fn no_token_outside_the_certificate_validity() {
        let clock = ManualClock::at(0);
        let (tsa, (not_before_ms, not_after_ms), _dir) = tsa_with_clock(clock.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            clock.set(not_before_ms - 1_000);
            let err = tsa.issue(&request(), None).await.unwrap_err();
            assert!(
                matches!(err, ServiceError::CertificateNotYetValid { .. }),
                "{err}"
            );
            let at = tsa.take_gen_time().unwrap();
            assert!(matches!(
                tsa.token_for_digest(&[1; 32], at).await,
                Err(ServiceError::CertificateNotYetValid { .. })
            ));
            let ready = tsa.readiness().await;
            assert!(!ready.ready());
            let why = ready.certificate.unwrap_err();
            assert!(why.contains("not valid before"), "{why}");
            assert_eq!(tsa.writer.log().size(), 0, "a refused token was recorded");

            clock.set(not_before_ms);
            let reply = tsa.issue(&request(), None).await.unwrap();
            let token = crate::tsp::granted_token(&reply).unwrap();
            let info = crate::tsp::decode_tst_info_from_token(token).unwrap();
            assert_eq!(info.gen_time.unix_millis(), not_before_ms);
            assert!(tsa.readiness().await.certificate.is_ok());

            clock.set(not_after_ms + 1);
            assert!(matches!(
                tsa.issue(&request(), None).await,
                Err(ServiceError::CertificateExpired)
            ));
            let why = tsa.readiness().await.certificate.unwrap_err();
            assert!(why.contains("expired"), "{why}");
        });
    }

    /// The typed details are byte for byte what the generic canonical form gives for the
    /// same keys and values, with and without a requester, whatever it holds.
    #[test]
    fn issued_details_are_the_canonical_json() {
        for requester in [None, Some("agency-7"), Some("Ag\u{e9}ncy \"q\" \\ \u{1}\n")] {
            let d = IssuedDetails {
                digest: "ab".repeat(32),
                gen_time: "2026-12-04T13:25:29.123Z".into(),
                hash_algorithm: "sha256",
                policy: "1.3.6.1.5.5.7.13.1".into(),
                requester,
                serial: "1000000000000002a".into(),
            };
            let mut map = serde_json::Map::new();
            map.insert("serial".into(), d.serial.clone().into());
            map.insert("gen_time".into(), d.gen_time.clone().into());
            map.insert("policy".into(), d.policy.clone().into());
            map.insert("hash_algorithm".into(), d.hash_algorithm.into());
            map.insert("digest".into(), d.digest.clone().into());
            if let Some(r) = requester {
                map.insert("requester".into(), r.into());
            }
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                canonical_details(&map).unwrap()
            );
        }
    }
}

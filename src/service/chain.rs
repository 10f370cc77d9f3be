//! The auditor event chain: append events durably, seal blocks, publish checkpoints, and
//! answer with proofs and tiles.
//!
//! Sealing (every `seal_interval` when there are new events, or as soon as
//! `max_block_events` wait; a block holds at most that many): the root of the durable tree
//! is computed and checked, with a consistency proof, to extend the root the previous
//! block signed; only then is a C2SP checkpoint signed with the chain's Ed25519 key in the
//! HSM, the block header signed with the same key and time-stamped by the appliance's own
//! TSA, and block and checkpoint stored in one durable write. The header's sealed time is
//! its token's genTime, taken from the TSA's clock guard before the header is signed: it
//! never goes back from one block to the next, and no block is sealed while the clock is
//! behind a genTime already handed out. A block's token is kept in
//! the block itself rather than as a `tsa.issued` event: that event would need a block of
//! its own, and so on without end.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::tsa::TsaService;
use super::writer::EventWriter;
use super::ServiceError;
use crate::chain::block::{BlockHeader, SealedBlock};
use crate::chain::event::{Event, StoredEvent};
use crate::chain::index::{IndexError, Order, Page, Query, SearchIndex};
use crate::chain::log::{Appended, EventLog};
use crate::chain::note::{self, Checkpoint, NoteSignature, SignedNote};
use crate::chain::proof::TlogProof;
use crate::chain::tlog::{self, Hash, Tile, TileKind};
use crate::signer::ed25519::ed25519_key_of;
use crate::signer::{SignatureAlgorithm, Signer};

/// The chain's settings.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// The checkpoint origin and note key name (the appliance's log name).
    pub origin: String,
    /// Seal at least this often when there are new events.
    pub seal_interval: Duration,
    /// Seal as soon as this many events wait; no block holds more.
    pub max_block_events: u64,
}

/// The last block sealed, with the checkpoint signed over the same tree.
#[derive(Debug, Clone)]
pub struct Published {
    /// The block.
    pub block: SealedBlock,
    /// The signed checkpoint note of the block's tree.
    pub checkpoint: String,
}

struct SealState {
    next_height: u64,
    prev_hash: Hash,
    sealed_size: u64,
    sealed_root: Hash,
}

/// The event chain of this appliance.
pub struct ChainService {
    /// The log's one writer, shared with the TSA.
    writer: Arc<EventWriter>,
    signer: Arc<dyn Signer>,
    public_key: [u8; 32],
    key_id: Hash,
    settings: ChainSettings,
    tsa: Arc<TsaService>,
    seal: tokio::sync::Mutex<SealState>,
    /// Held while a witness's cosignature is added to the published checkpoint.
    cosigning: tokio::sync::Mutex<()>,
    published: RwLock<Option<Arc<Published>>>,
    witnesses: super::cosign::Witnesses,
    /// The newest sealed checkpoint, as sealed (what the archive copies next).
    sealed: tokio::sync::watch::Sender<Option<Arc<Published>>>,
    /// The newest checkpoint each witness's submitter submits next: the newest sealed one,
    /// or with [`ChainService::witness_after_archive`] the newest archived one.
    to_witness: tokio::sync::watch::Sender<Option<Arc<Published>>>,
    /// Whether checkpoints go to the witnesses only once archived.
    after_archive: bool,
    /// The search index, when it is on.
    search: Option<SearchIndex>,
}

impl std::fmt::Debug for ChainService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainService")
            .field("settings", &self.settings)
            .field("size", &self.log().size())
            .finish_non_exhaustive()
    }
}

/// Everything a verifier needs to check one event offline.
#[derive(Debug, Clone)]
pub struct EventProof {
    /// The event as stored.
    pub event: StoredEvent,
    /// Its leaf bytes (the verifier re-hashes them).
    pub leaf: Vec<u8>,
    /// The inclusion proof, as a C2SP tlog-proof against the published checkpoint.
    pub proof: TlogProof,
    /// The block sealed with that checkpoint.
    pub block: SealedBlock,
}

fn damaged(what: String) -> ServiceError {
    ServiceError::Chain(what)
}

/// `d` in whole milliseconds, for the log.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn tree(e: tlog::TlogError) -> ServiceError {
    ServiceError::Chain(e.to_string())
}

/// The checkpoint body of `origin`'s tree of `size` events with `root`.
fn checkpoint_body(origin: &str, size: u64, root: Hash) -> String {
    Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        extensions: Vec::new(),
    }
    .body()
}

/// The checkpoint note of `body`, with `signature` by the chain key `public_key`.
fn checkpoint_note(
    origin: &str,
    public_key: &[u8; 32],
    body: String,
    signature: Vec<u8>,
) -> String {
    SignedNote {
        text: body,
        signatures: vec![NoteSignature {
            name: origin.to_owned(),
            id: note::key_id(origin, public_key),
            signature,
        }],
    }
    .format()
}

impl ChainService {
    /// The chain over `log`, signing with `signer` (an Ed25519 key in the HSM) and
    /// time-stamping block headers with `tsa`. Refuses a stored chain whose last block
    /// does not decode, or was signed by another key.
    pub fn new(
        writer: Arc<EventWriter>,
        signer: Arc<dyn Signer>,
        settings: ChainSettings,
        tsa: Arc<TsaService>,
    ) -> Result<Self, ServiceError> {
        if signer.algorithm() != SignatureAlgorithm::Ed25519 {
            return Err(ServiceError::Identity(
                "the chain key must be an Ed25519 key \
                 (auditstamp keys generate --algorithm ed25519 --purpose chain)"
                    .into(),
            ));
        }
        let public_key = ed25519_key_of(signer.public_key_der())
            .ok_or_else(|| ServiceError::Identity("the chain key is not an Ed25519 key".into()))?;
        let key_id: Hash = Sha256::digest(signer.public_key_der()).into();
        let log = writer.log();
        let (state, published) = match log.latest_block()? {
            None => (
                SealState {
                    next_height: 0,
                    prev_hash: [0; 32],
                    sealed_size: 0,
                    sealed_root: tlog::EMPTY_TREE_HASH,
                },
                None,
            ),
            Some((height, bytes)) => {
                let block = SealedBlock::decode(&bytes)
                    .map_err(|e| damaged(format!("block {height} is damaged: {e}")))?;
                if block.header.height != height {
                    return Err(damaged(format!(
                        "block {height} says it is block {}",
                        block.header.height
                    )));
                }
                let mut checkpoint = log
                    .checkpoint()?
                    .ok_or_else(|| damaged("blocks exist but no checkpoint".into()))?;
                let of_block = SignedNote::parse(&checkpoint)
                    .ok()
                    .and_then(|n| Checkpoint::parse(&n.text).ok())
                    .is_some_and(|c| {
                        (c.size, c.root) == (block.header.tree_size, block.header.root)
                    });
                if !of_block {
                    // An earlier version could store an older checkpoint with a witness's
                    // cosignature over a newer block's while sealing: sign the last block's
                    // checkpoint again (its witnesses cosign it anew).
                    tracing::warn!(
                        height,
                        "the stored checkpoint is not the last block's; signing the block's checkpoint again"
                    );
                    let body = checkpoint_body(
                        &settings.origin,
                        block.header.tree_size,
                        block.header.root,
                    );
                    let signature = signer.sign(body.as_bytes())?;
                    checkpoint = checkpoint_note(&settings.origin, &public_key, body, signature);
                    log.put_checkpoint(&checkpoint)?;
                }
                let state = SealState {
                    next_height: height + 1,
                    prev_hash: block.header.hash(),
                    sealed_size: block.header.tree_size,
                    sealed_root: block.header.root,
                };
                (state, Some(Arc::new(Published { block, checkpoint })))
            }
        };
        if state.sealed_size > log.size() {
            return Err(damaged(format!(
                "the last block seals {} events but the log holds {}",
                state.sealed_size,
                log.size()
            )));
        }
        log.record_chain_key(&key_id, signer.public_key_der())?;
        if let Some(p) = &published {
            if p.block.header.key_id != key_id {
                tracing::warn!(
                    "the chain key changed since the last block; new blocks are signed with the configured key"
                );
            }
        }
        let sealed = tokio::sync::watch::Sender::new(published.clone());
        let to_witness = tokio::sync::watch::Sender::new(published.clone());
        writer.attach_sealer(state.sealed_size, settings.max_block_events);
        Ok(ChainService {
            writer,
            signer,
            public_key,
            key_id,
            settings,
            tsa,
            seal: tokio::sync::Mutex::new(state),
            cosigning: tokio::sync::Mutex::new(()),
            published: RwLock::new(published),
            witnesses: super::cosign::Witnesses::default(),
            sealed,
            to_witness,
            after_archive: false,
            search: None,
        })
    }

    /// Submits a checkpoint to the witnesses only once the archive holds it (and everything
    /// it covers), through [`ChainService::archived`]: whatever a witness has cosigned can
    /// then be restored from the bucket, so a rebuilt appliance continues the log without
    /// a fork. Until the archive confirms one, nothing is submitted.
    pub fn witness_after_archive(mut self) -> Self {
        self.after_archive = true;
        self.to_witness.send_replace(None);
        self
    }

    /// The newest sealed block and checkpoint, as they are sealed (the archive waits on
    /// it).
    pub fn subscribe_sealed(&self) -> tokio::sync::watch::Receiver<Option<Arc<Published>>> {
        self.sealed.subscribe()
    }

    /// The archive holds `published` and everything before it: with
    /// [`ChainService::witness_after_archive`], its checkpoint goes to the witnesses now
    /// (unless a newer one went already).
    pub fn archived(&self, published: &Arc<Published>) {
        if !self.after_archive {
            return;
        }
        let height = published.block.header.height;
        self.to_witness.send_if_modified(|current| {
            let newer = current
                .as_ref()
                .is_none_or(|c| c.block.header.height < height);
            if newer {
                *current = Some(published.clone());
            }
            newer
        });
    }

    /// Submits every new checkpoint to `witnesses` and publishes their cosignatures.
    pub fn with_witnesses(mut self, witnesses: super::cosign::Witnesses) -> Self {
        self.witnesses = witnesses;
        self
    }

    /// Answers searches with `index`, which this service keeps up to date from now on
    /// (it indexes each commit of the log in a thread of its own).
    pub fn with_search_index(mut self, index: SearchIndex) -> Result<Self, ServiceError> {
        index.follow(self.log().clone())?;
        self.search = Some(index);
        Ok(self)
    }

    /// The search index, when search is on.
    pub fn search_index(&self) -> Option<&SearchIndex> {
        self.search.as_ref()
    }

    /// One page of the events matching `query` ([`SearchIndex::search`]); `pruned` gives
    /// a bundle pruned from the local disk, read back from the archive. Blocks on reads:
    /// call it from a blocking thread.
    pub fn search(
        &self,
        query: &Query,
        order: Order,
        limit: usize,
        cursor: Option<&str>,
        pruned: &dyn Fn(u64) -> Result<Vec<Vec<u8>>, IndexError>,
    ) -> Result<Page, ServiceError> {
        let index = self.search.as_ref().ok_or(ServiceError::SearchOff)?;
        Ok(index.search(self.log(), query, order, limit, cursor, pruned)?)
    }

    /// The counters of each witness link.
    pub fn witness_counts(&self) -> Vec<super::cosign::LinkCounts> {
        self.witnesses.links().iter().map(|l| l.counts()).collect()
    }

    /// The log.
    pub fn log(&self) -> &EventLog {
        self.writer.log()
    }

    /// The settings.
    pub fn settings(&self) -> &ChainSettings {
        &self.settings
    }

    /// The note verifier key of this appliance's checkpoints (`name+id+key`).
    pub fn verifier_key(&self) -> String {
        note::verifier_key(&self.settings.origin, &self.public_key)
    }

    /// The counters of the chain key's HSM signer.
    pub fn signer_counts(&self) -> crate::signer::SignerCounts {
        self.signer.counts()
    }

    /// The chain key's DER SubjectPublicKeyInfo (block header signatures verify with it).
    pub fn public_key_der(&self) -> &[u8] {
        self.signer.public_key_der()
    }

    /// Appends `events` through the log's one writer; returns once they are durable.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, ServiceError> {
        Ok(self.writer.append(events).await?)
    }

    /// The last block and checkpoint, if one was sealed.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The tree size of the last block (0 before the first).
    pub fn sealed_size(&self) -> u64 {
        self.published().map_or(0, |p| p.block.header.tree_size)
    }

    /// Seals every `seal_interval`, or when enough events wait, until `stop` completes;
    /// then seals once more, so that what was acknowledged before shutdown is sealed.
    /// Meanwhile each witness's submitter runs beside it (see [`super::cosign`]), starting
    /// with the checkpoint stored at the last run if that witness has not cosigned it; a
    /// submission still in flight at the end is dropped (the next start submits again).
    pub async fn run_sealer(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let submitters: Vec<_> = match self.witnesses.client() {
            None => Vec::new(),
            Some(client) => self
                .witnesses
                .links()
                .iter()
                .map(|link| {
                    tokio::spawn(self.clone().run_submitter(
                        link.clone(),
                        client.clone(),
                        self.to_witness.subscribe(),
                    ))
                })
                .collect(),
        };
        self.sealing(stop).await;
        for s in submitters {
            s.abort();
        }
    }

    async fn sealing(self: &Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.writer.block_full() => {},
                () = tokio::time::sleep(self.settings.seal_interval) => {},
            }
            self.seal_logging().await;
        }
        self.seal_logging().await;
    }

    async fn seal_logging(self: &Arc<Self>) {
        match self.seal().await {
            Ok(Some(b)) => {
                tracing::debug!(
                    height = b.header.height,
                    size = b.header.tree_size,
                    "sealed a block"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sealing failed; retrying at the next interval"),
        }
    }

    /// Seals the events committed since the last block (at most `max_block_events`), if
    /// any.
    pub async fn seal(&self) -> Result<Option<SealedBlock>, ServiceError> {
        let mut state = self.seal.lock().await;
        let size = self.log().size().min(
            state
                .sealed_size
                .saturating_add(self.settings.max_block_events),
        );
        if size == state.sealed_size {
            return Ok(None);
        }
        let root = {
            let r = self.log().hashes_at(size);
            let root = tlog::tree_hash(size, &r).map_err(tree)?;
            if state.sealed_size > 0 {
                // Never sign a tree that does not extend the one the last block signed.
                let proof = tlog::prove_consistency(size, state.sealed_size, &r).map_err(tree)?;
                tlog::verify_consistency(
                    &proof,
                    size,
                    state.sealed_size,
                    &root,
                    &state.sealed_root,
                )
                .map_err(|e| {
                    damaged(format!(
                        "the stored tree of {size} events does not extend the last signed one \
                             ({} events): {e}; refusing to seal",
                        state.sealed_size
                    ))
                })?;
            }
            root
        };
        // The sealed time is the genTime of the block's token, from the TSA's clock guard:
        // never earlier than a genTime handed out before (so never earlier than the last
        // block's), and no block is sealed while the clock is behind (taken before anything
        // is signed, so a clock that is behind costs no HSM signature).
        let sealed_at = self.tsa.take_gen_time()?;
        let body = checkpoint_body(&self.settings.origin, size, root);
        let body_sig = self.signer.sign_async(body.clone().into_bytes()).await?;
        let checkpoint = checkpoint_note(&self.settings.origin, &self.public_key, body, body_sig);
        let header = BlockHeader {
            height: state.next_height,
            prev_hash: state.prev_hash,
            tree_size: size,
            root,
            first_index: state.sealed_size,
            event_count: size - state.sealed_size,
            sealed_at_ms: sealed_at.unix_millis(),
            key_id: self.key_id,
        };
        let signature = self.signer.sign_async(header.encode()).await?;
        let token = self.tsa.token_for_digest(&header.hash(), sealed_at).await?;
        let block = SealedBlock {
            header,
            signature,
            token,
        };
        self.log()
            .put_block(block.header.height, &block.encode(), &checkpoint)?;
        state.next_height += 1;
        state.prev_hash = block.header.hash();
        state.sealed_size = size;
        state.sealed_root = root;
        let published = Arc::new(Published {
            block: block.clone(),
            checkpoint,
        });
        *self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(published.clone());
        if !self.after_archive {
            self.to_witness.send_replace(Some(published.clone()));
        }
        self.sealed.send_replace(Some(published));
        // Wakes the sealer again at once if another block's worth waits.
        self.writer.sealed_up_to(size);
        Ok(Some(block))
    }

    /// One witness's submitter: waits for a sealed checkpoint newer than the last one the
    /// witness cosigned, submits it (when several were sealed meanwhile, only the newest)
    /// and publishes the cosignature; after a failure, waits as `Backoff` says and tries
    /// again with the newest checkpoint. Runs until aborted.
    async fn run_submitter(
        self: Arc<Self>,
        link: Arc<super::cosign::WitnessLink>,
        client: super::cosign::WitnessClient,
        mut sealed: tokio::sync::watch::Receiver<Option<Arc<Published>>>,
    ) {
        // The height of the newest checkpoint this witness cosigned.
        let mut done: Option<u64> = None;
        let mut backoff = super::cosign::Backoff::default();
        loop {
            let newer = |p: &Option<Arc<Published>>| {
                p.as_ref()
                    .is_some_and(|p| done.is_none_or(|d| p.block.header.height > d))
            };
            let next = match sealed.wait_for(newer).await {
                Ok(p) => p.clone(),
                // The chain service is gone.
                Err(_) => return,
            };
            let Some(next) = next else { continue };
            let (height, size) = (next.block.header.height, next.block.header.tree_size);
            if link.has_cosigned(&next.checkpoint, size) {
                done = Some(height);
                continue;
            }
            let submitted = link
                .submit(&client, &next.checkpoint, size, |old| {
                    self.consistency(old, size).map_err(|e| e.to_string())
                })
                .await;
            let added = match submitted {
                Ok(sig) => Ok(self.add_cosignature(height, sig).await),
                Err(why) => Err(why),
            };
            let wait = match added {
                Ok(Ok(published)) => {
                    if !published {
                        tracing::debug!(
                            witness = %link.name(),
                            size,
                            "a newer checkpoint was sealed while this one was being cosigned; submitting that one"
                        );
                    }
                    done = Some(height);
                    backoff.reset();
                    continue;
                }
                Ok(Err(e)) => {
                    let wait = backoff.next_wait();
                    tracing::error!(
                        witness = %link.name(),
                        size,
                        error = %e,
                        retry_in_ms = millis(wait),
                        "cannot store a witness's cosignature; submitting the checkpoint again"
                    );
                    wait
                }
                Err(why) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        witness = %link.name(),
                        size,
                        reason = %why,
                        retry_in_ms = millis(wait),
                        "witness did not cosign"
                    );
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Adds (or replaces) a witness's cosignature on the checkpoint of block `height`, if
    /// that is still the published one, and stores the cosigned checkpoint; whether it was.
    /// (A cosignature covers one checkpoint: an older one's is not kept, its witness's
    /// submitter submits the newer one next.)
    ///
    /// Cosignatures are added one at a time, and the store takes the note only if it still
    /// holds the one the cosignature was added to (a compare-and-swap): a cosigned older
    /// checkpoint can never replace a newer block's, whatever the order of a seal and of
    /// the witnesses' answers, and no lock readers wait on is held while it is written.
    async fn add_cosignature(&self, height: u64, sig: NoteSignature) -> Result<bool, ServiceError> {
        let _one_at_a_time = self.cosigning.lock().await;
        let Some(current) = self.published() else {
            return Ok(false);
        };
        if current.block.header.height != height {
            return Ok(false);
        }
        let mut note = SignedNote::parse(&current.checkpoint)
            .map_err(|e| damaged(format!("the published checkpoint: {e}")))?;
        note.signatures
            .retain(|s| !(s.name == sig.name && s.id == sig.id));
        note.signatures.push(sig);
        let checkpoint = note.format();
        if !self
            .log()
            .replace_checkpoint(&current.checkpoint, &checkpoint)?
        {
            // A newer block's checkpoint was stored meanwhile.
            return Ok(false);
        }
        let mut published = self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Unless a newer block was published meanwhile.
        if published.as_ref().is_some_and(|p| Arc::ptr_eq(p, &current)) {
            *published = Some(Arc::new(Published {
                block: current.block.clone(),
                checkpoint,
            }));
        }
        Ok(true)
    }

    /// Sealed block `height`.
    pub fn block(&self, height: u64) -> Result<Option<SealedBlock>, ServiceError> {
        self.log()
            .block(height)?
            .map(|b| SealedBlock::decode(&b).map_err(|e| damaged(format!("block {height}: {e}"))))
            .transpose()
    }

    /// Event `index` with its proof against the last block; `None` if the event does not
    /// exist or is not sealed yet.
    pub fn event_proof(&self, index: u64) -> Result<Option<EventProof>, ServiceError> {
        self.event_proof_with(index, None)
    }

    /// [`ChainService::event_proof`] with the event's leaf bytes given (read from the
    /// archive after its bundle was pruned, and checked against the stored hashes), or
    /// read from the log when `None`.
    pub fn event_proof_with(
        &self,
        index: u64,
        leaf: Option<Vec<u8>>,
    ) -> Result<Option<EventProof>, ServiceError> {
        let Some(published) = self.published() else {
            return Ok(None);
        };
        let size = published.block.header.tree_size;
        if index >= size {
            return Ok(None);
        }
        let leaf = match leaf {
            Some(l) => l,
            None => self
                .log()
                .leaf(index)?
                .ok_or_else(|| damaged(format!("event {index} is missing")))?,
        };
        let event = StoredEvent::from_leaf_bytes(&leaf)
            .map_err(|e| damaged(format!("event {index} is damaged: {e}")))?;
        let path = tlog::prove_inclusion(size, index, &self.log().hashes_at(size)).map_err(tree)?;
        Ok(Some(EventProof {
            event,
            proof: TlogProof {
                extra: Some(leaf.clone()),
                index,
                path,
                checkpoint: published.checkpoint.clone(),
            },
            leaf,
            block: published.block.clone(),
        }))
    }

    /// A consistency proof from tree size `from` to `to` (both at most the sealed size).
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, ServiceError> {
        tlog::prove_consistency(to, from, &self.log().hashes_at(to)).map_err(tree)
    }

    /// The bytes of a C2SP tile or entry bundle within the published tree, and whether it
    /// is a full (immutable) one; `None` when it is beyond the published tree.
    pub fn tile(&self, kind: TileKind, tile: &Tile) -> Result<Option<Vec<u8>>, ServiceError> {
        let size = self.sealed_size();
        if !tile.is_within(size) {
            return Ok(None);
        }
        match kind {
            TileKind::Hashes => {
                let data = tlog::read_tile_data(tile, &self.log().hashes_at(size)).map_err(tree)?;
                Ok(Some(data))
            }
            TileKind::Entries => {
                if !tile.is_partial() {
                    // Complete bundles are stored in exactly the served form.
                    if let Some(b) = self.log().full_bundle(tile.index())? {
                        return Ok(Some(b));
                    }
                }
                let range = tlog::entries_tile_range(tile);
                let leaves = self.log().leaves(range)?;
                let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
                Ok(Some(tlog::encode_entry_bundle(&refs).map_err(tree)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::event::Action;
    use crate::service::tsa::tests::{tsa_on, ManualClock};
    use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};

    fn event(n: u64) -> Event {
        Event {
            agency: "agency".into(),
            auditor: format!("auditor-{n}"),
            action: Action::Access,
            subject: format!("record/{n}"),
            data_sha256: [7; 32],
            occurred_at_ns: 1_700_000_000_000_000_000,
            details: "{}".into(),
        }
    }

    fn token_gen_time(block: &SealedBlock) -> u64 {
        crate::tsp::decode_tst_info_from_token(&block.token)
            .unwrap()
            .gen_time
            .unix_millis()
    }

    /// A block's sealed time comes from the TSA's guarded clock (the one that gives
    /// genTimes), not the raw system clock: it is its token's genTime, so it never goes
    /// back from one block to the next; while the clock is behind the last genTime (it was
    /// stepped back), no block is sealed.
    #[test]
    fn a_block_is_sealed_at_its_tokens_guarded_gen_time_never_earlier() {
        let hsm = testsupport::new_token().open();
        // The injected clock is half an hour ahead of the system clock.
        let clock = ManualClock::at(0);
        let (tsa, (not_before_ms, _), _dir, log) = tsa_on(&hsm, clock.clone());
        hsm.generate_key("chain", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap();
        let signer = SigningPool::start(&hsm, "chain", 1, true).unwrap();
        let chain = ChainService::new(
            log,
            Arc::new(signer),
            ChainSettings {
                origin: "test/log".into(),
                seal_interval: Duration::from_secs(3600),
                max_block_events: 1000,
            },
            Arc::new(tsa),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let t0 = not_before_ms + 1_800_000;
            clock.set(t0);
            chain.append(vec![event(0)]).await.unwrap();
            let first = chain.seal().await.unwrap().unwrap();
            assert_eq!(first.header.sealed_at_ms, t0, "sealed at the guarded time");
            assert_eq!(token_gen_time(&first), t0);

            // The clock steps back: nothing is sealed at an earlier time.
            clock.set(t0 - 30_000);
            chain.append(vec![event(1)]).await.unwrap();
            let e = chain.seal().await.unwrap_err();
            assert!(matches!(e, ServiceError::Clock(_)), "{e}");
            assert_eq!(chain.published().unwrap().block.header.height, 0);

            // Back past the last genTime: the next block is sealed then.
            clock.set(t0 + 5);
            let second = chain.seal().await.unwrap().unwrap();
            assert_eq!(second.header.height, 1);
            assert_eq!(second.header.sealed_at_ms, t0 + 5);
            assert_eq!(token_gen_time(&second), t0 + 5);
            assert!(second.header.sealed_at_ms >= token_gen_time(&first));
        });
    }

    /// The TSA's own `tsa.issued` records go through the log's one writer: a block's worth
    /// of them wakes the sealer at once, as auditors' events do (the seal interval here is
    /// an hour, so only the wake-up can seal within the wait).
    #[test]
    fn tokens_alone_fill_a_block_and_wake_the_sealer() {
        let hsm = testsupport::new_token().open();
        let clock = ManualClock::at(0);
        let (tsa, (not_before_ms, _), _dir, log) = tsa_on(&hsm, clock.clone());
        clock.set(not_before_ms + 1_000);
        hsm.generate_key("chain", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap();
        let signer = SigningPool::start(&hsm, "chain", 1, true).unwrap();
        let tsa = Arc::new(tsa);
        let chain = Arc::new(
            ChainService::new(
                log,
                Arc::new(signer),
                ChainSettings {
                    origin: "test/log".into(),
                    seal_interval: Duration::from_secs(3600),
                    max_block_events: 2,
                },
                tsa.clone(),
            )
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let sealer = tokio::spawn(chain.clone().run_sealer(async {
                let _ = stopped.await;
            }));
            let request = crate::tsp::encode_request(&crate::tsp::RequestParams {
                hash: crate::tsp::HashAlgorithm::Sha256,
                digest: &[7u8; 32],
                policy: None,
                nonce: None,
                cert_req: false,
            })
            .unwrap();
            for _ in 0..2 {
                tsa.issue(&request, None).await.unwrap();
            }
            let sealed = tokio::time::timeout(Duration::from_secs(60), async {
                while chain.sealed_size() < 2 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(sealed.is_ok(), "two tokens' events did not wake the sealer");
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(60), sealer)
                .await
                .unwrap()
                .unwrap();
        });
        assert_eq!(chain.published().unwrap().block.header.event_count, 2);
    }

    /// A witness's cosignature of an older checkpoint never replaces a newer block's
    /// stored checkpoint, and a store where it did (an earlier version's race between a
    /// seal and a cosignature) gets the last block's checkpoint signed again at startup.
    #[test]
    fn a_cosigned_older_checkpoint_never_replaces_a_newer_blocks() {
        let hsm = testsupport::new_token().open();
        let clock = ManualClock::at(0);
        let (tsa, (not_before_ms, _), _dir, log) = tsa_on(&hsm, clock.clone());
        clock.set(not_before_ms + 1_000);
        hsm.generate_key("chain", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap();
        let signer: Arc<dyn Signer> = Arc::new(SigningPool::start(&hsm, "chain", 1, true).unwrap());
        let tsa = Arc::new(tsa);
        let settings = ChainSettings {
            origin: "test/log".into(),
            seal_interval: Duration::from_secs(3600),
            max_block_events: 1000,
        };
        let chain =
            ChainService::new(log.clone(), signer.clone(), settings.clone(), tsa.clone()).unwrap();
        let witness = NoteSignature {
            name: "witness.test/w".into(),
            id: [1, 2, 3, 4],
            signature: vec![7; 72],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let size_of = |note: &str| {
            Checkpoint::parse(&SignedNote::parse(note).unwrap().text)
                .unwrap()
                .size
        };
        rt.block_on(async {
            chain.append(vec![event(0)]).await.unwrap();
            let first = chain.seal().await.unwrap().unwrap();
            // A cosignature is added and stored.
            assert!(chain.add_cosignature(0, witness.clone()).await.unwrap());
            let cosigned = log.log().checkpoint().unwrap().unwrap();
            assert!(cosigned.contains("witness.test/w"));
            // The next block's checkpoint is stored (as a seal does) before it is published:
            // a cosignature of the older one arriving now is not stored over it.
            chain.append(vec![event(1)]).await.unwrap();
            let newer = "test/log\n2\nnewer\n\n".to_owned();
            log.log().put_checkpoint(&newer).unwrap();
            let mut other = witness.clone();
            other.name = "witness.test/w2".into();
            assert!(!chain.add_cosignature(0, other).await.unwrap());
            assert_eq!(log.log().checkpoint().unwrap().unwrap(), newer);

            // A store left with an older block's checkpoint over the last block: at startup
            // the last block's checkpoint is signed again.
            log.log().put_checkpoint(&cosigned).unwrap();
            let second = chain.seal().await.unwrap().unwrap();
            assert_eq!(second.header.height, 1);
            log.log().put_checkpoint(&cosigned).unwrap();
            assert_eq!(
                size_of(&log.log().checkpoint().unwrap().unwrap()),
                first.header.tree_size
            );
            let again =
                ChainService::new(log.clone(), signer.clone(), settings, tsa.clone()).unwrap();
            let published = again.published().unwrap();
            assert_eq!(published.block.header.height, 1);
            assert_eq!(size_of(&published.checkpoint), second.header.tree_size);
            assert_eq!(
                log.log().checkpoint().unwrap().unwrap(),
                published.checkpoint
            );
            let note = SignedNote::parse(&published.checkpoint).unwrap();
            let key = crate::chain::note::VerifierKey {
                name: "test/log".into(),
                id: note::key_id("test/log", &again.public_key),
                public_key: again.public_key,
            };
            note.verify(&key).unwrap();
        });
    }
}

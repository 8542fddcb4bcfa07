//! [`Mvcc`]: opening (and rebuilding the index), applying entries, reads, compaction.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use batchkv_codec::{Op, Range};
use batchkv_engine::{Cf, Engine, EngineConfig, KeyRange, StagedBatch, WriteMode};
use bytes::Bytes;

use crate::apply::{Entry, Limits};
use crate::error::{MvccError, OpError};
use crate::kv::{Event, KeyValue};
use crate::lease::{
    DEFAULT_MIN_LEASE_TTL, Lease, LeaseChanges, LeaseTable, LeaseTimeToLive, ttl_duration,
};
use crate::response::{OpResponse, RangeResponse};
use crate::revision::Revision;
use crate::tree_index::TreeIndex;
use crate::view::View;
use crate::watch::{Hub, WatchRequest, Watcher};
use batchkv_codec::record;

mod check;
mod image;

pub use image::store_image;

pub use self::check::{CheckReport, KvHash};

/// The column family of revision-keyed records.
pub const KV_CF: &str = "kv";
/// The column family of leases (id → granted TTL).
pub const LEASE_CF: &str = "lease";
/// The column family of the store's own state (revisions, applied index, format version).
pub const META_CF: &str = "meta";
/// The storage format this build reads and writes (docs/FORMAT.md).
pub const FORMAT_VERSION: u32 = 1;
/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Records a compaction step visits at most (etcd's `CompactionBatchLimit`).
pub const DEFAULT_COMPACTION_BATCH: usize = 1000;

/// The default budget of the value cache ([`MvccConfig::value_cache_bytes`]): 256 MiB.
pub const DEFAULT_VALUE_CACHE_BYTES: usize = 256 << 20;

const META_FORMAT: &[u8] = b"format_version";
const META_CURRENT: &[u8] = b"current_revision";
const META_APPLIED: &[u8] = b"applied_index";
const META_COMPACTED: &[u8] = b"compacted_revision";
const META_FINISHED: &[u8] = b"finished_compact_revision";
pub(crate) const META_NEXT_LEASE: &[u8] = b"next_lease_id";
const META_PRUNED: &[u8] = b"pruned_revision";
/// `floor/<key>` → the key's pruning floor (`i64` BE).
const META_FLOOR_PREFIX: &[u8] = b"floor/";

/// How to open an [`Mvcc`].
#[derive(Clone, Debug, PartialEq)]
pub struct MvccConfig {
    /// The engine (path, tuning). The `kv` and `meta` column families are added.
    pub engine: EngineConfig,
    /// How each entry's batch is written. [`WriteMode::SYNC`] (the default) makes an applied
    /// entry survive a machine crash; [`WriteMode::WAL`] a process crash, which is enough
    /// when the entries come from a durable log that is replayed on restart.
    pub write_mode: WriteMode,
    /// Largest encoded op accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most compares, or ops in one branch, of a txn (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Records each compaction step visits after an entry is applied; 0 leaves compaction to
    /// [`Mvcc::compact_step`].
    pub compaction_batch: usize,
    /// The shortest lease TTL, in seconds: shorter grants get it (etcd: 2 with its default
    /// heartbeat and election timeout).
    pub min_lease_ttl: i64,
    /// Bytes of memory the value cache may take: each live key's latest value and lease, kept
    /// in the in-memory index so reads of the latest state skip storage (0: no cache). Values
    /// are cached as they are written, while the budget has room; the rest are read from
    /// storage. Default [`DEFAULT_VALUE_CACHE_BYTES`].
    pub value_cache_bytes: usize,
}

impl MvccConfig {
    /// A store at `path` with etcd's defaults and syncing writes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MvccConfig {
            engine: EngineConfig::new(path),
            write_mode: WriteMode::SYNC,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            compaction_batch: DEFAULT_COMPACTION_BATCH,
            min_lease_ttl: DEFAULT_MIN_LEASE_TTL,
            value_cache_bytes: DEFAULT_VALUE_CACHE_BYTES,
        }
    }

    /// Sets the value cache's budget in bytes (0: no cache).
    pub fn value_cache_bytes(mut self, bytes: usize) -> Self {
        self.value_cache_bytes = bytes;
        self
    }

    /// Sets the minimum lease TTL (seconds).
    pub fn min_lease_ttl(mut self, secs: i64) -> Self {
        self.min_lease_ttl = secs;
        self
    }

    /// Sets the write mode.
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// Sets the request size limit.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Sets the txn op limit.
    pub fn max_txn_ops(mut self, ops: usize) -> Self {
        self.max_txn_ops = ops;
        self
    }

    /// Sets the compaction step size (0: only [`Mvcc::compact_step`] compacts storage).
    pub fn compaction_batch(mut self, records: usize) -> Self {
        self.compaction_batch = records;
        self
    }
}

/// What [`Mvcc::apply`] did with an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry's index.
    pub index: u64,
    /// The entry was at or below the applied index and was not applied again (replay).
    pub skipped: bool,
    /// The revision after the entry.
    pub revision: i64,
    /// One result per op, in order (empty when skipped).
    pub results: Vec<Result<OpResponse, OpError>>,
    /// Events the entry made. Through [`Mvcc::apply`] 0 when nobody listened or watched (they
    /// are not even built); through the phases every event, since [`Mvcc::prepare`] builds them
    /// in case a watcher registers before [`Mvcc::finish`].
    pub events: usize,
}

/// What [`Mvcc::prepare`] made of an entry: the first of the three apply phases.
///
/// [`Mvcc::apply`] is prepare, commit and finish in one call, holding the store exclusively.
/// A caller that wants reads to go on during the commit's fsync runs the phases itself:
///
/// 1. [`Mvcc::prepare`] (`&self`, e.g. under a read lock) checks every op and stages the
///    entry's writes; it changes nothing. An entry at or below the applied index comes back as
///    [`Prepared::Skipped`], already answered; otherwise as [`Prepared::Ready`].
/// 2. [`Mvcc::commit_prepared`] (no store access at all, only the shared [`Engine`]) writes the
///    [`PreparedEntry`] as one batch and returns a [`CommittedEntry`], the only proof of a commit.
/// 3. [`Mvcc::finish`] (`&mut self`, e.g. under the write lock) takes that [`CommittedEntry`]
///    and moves the in-memory state: index, revision, applied index, leases, events.
///
/// The types enforce the order: only a commit makes a `CommittedEntry`, and only a
/// `CommittedEntry` can be finished. What they cannot enforce is one entry at a time: prepare
/// the next entry only after the previous one is finished (or dropped after a failed commit),
/// on the same store, in index order. The facade holds its log lock across all three.
///
/// ```
/// use std::sync::RwLock;
///
/// use batchkv_codec::{Op, Put};
/// use batchkv_mvcc::{Mvcc, MvccConfig, Prepared};
///
/// let dir = tempfile::tempdir()?;
/// let store = RwLock::new(Mvcc::open(MvccConfig::new(dir.path()))?);
/// let (engine, mode) = {
///     let s = store.read().expect("not poisoned");
///     (s.shared_engine(), s.config().write_mode)
/// };
/// let ops = [Op::Put(Put::new("k", "v"))];
/// // Bind the result first: the read guard must be gone before `write()` below.
/// let prepared = store.read().expect("not poisoned").prepare(1, &ops)?;
/// let applied = match prepared {
///     Prepared::Skipped(applied) => applied,
///     Prepared::Ready(entry) => {
///         let committed = Mvcc::commit_prepared(&engine, entry, mode)?;
///         store.write().expect("not poisoned").finish(committed)
///     }
/// };
/// assert_eq!((applied.index, applied.revision), (1, 2));
/// // A replay of the same index is answered without a commit.
/// let again = store.read().expect("not poisoned").prepare(1, &ops)?;
/// assert!(matches!(again, Prepared::Skipped(a) if a.skipped && a.results.is_empty()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a prepared entry must be committed and finished, or its skip answered"]
// Made once per entry and matched at once: boxing `Ready` would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// The entry is at or below the applied index (a replay): nothing to commit; this is its
    /// answer (`skipped` set, no results).
    Skipped(Applied),
    /// The entry is prepared: commit it with [`Mvcc::commit_prepared`], then [`Mvcc::finish`].
    Ready(PreparedEntry),
}

/// An entry prepared by [`Mvcc::prepare`] and not yet written: its one staged batch (records,
/// revision, applied index) and what [`Mvcc::finish`] will apply in memory. Dropping it
/// abandons the entry; nothing of it is on disk or in memory. See [`Prepared`].
#[derive(Debug)]
#[must_use = "a prepared entry does nothing until it is committed"]
pub struct PreparedEntry {
    batch: StagedBatch,
    pending: Pending,
}

impl PreparedEntry {
    /// The entry's log index.
    pub fn index(&self) -> u64 {
        self.pending.index
    }

    /// The revision the store will be at once the entry is finished.
    pub fn revision(&self) -> i64 {
        self.pending.rev
    }
}

/// An entry whose batch [`Mvcc::commit_prepared`] wrote: on disk, not yet in memory. Only a
/// successful commit makes one; hand it to [`Mvcc::finish`] on the store that prepared it.
/// See [`Prepared`].
#[derive(Debug)]
#[must_use = "a committed entry must be finished, or memory falls behind disk"]
pub struct CommittedEntry {
    pending: Pending,
}

impl CommittedEntry {
    /// The entry's log index.
    pub fn index(&self) -> u64 {
        self.pending.index
    }

    /// The revision the store will be at once the entry is finished.
    pub fn revision(&self) -> i64 {
        self.pending.rev
    }
}

/// What [`Mvcc::finish`] applies in memory after the commit.
#[derive(Debug)]
struct Pending {
    index: u64,
    results: Vec<Result<OpResponse, OpError>>,
    changes: Vec<crate::apply::Change>,
    events: Vec<Event>,
    rev: i64,
    compact: Option<i64>,
    lease_changes: LeaseChanges,
    /// The applied index when the entry was prepared: `finish` checks it is still so.
    base_applied: u64,
}

/// Receives the events of every committed entry, in order.
pub type EventListener = Box<dyn FnMut(&[Event]) + Send + Sync>;

/// Physical compaction not yet done: records at or below `at` that the index no longer holds
/// are still in storage, from `cursor` on.
#[derive(Clone, Debug)]
struct PendingCompaction {
    at: i64,
    cursor: Revision,
}

/// What [`Mvcc::prune_old_versions`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Keys that lost history.
    pub keys: usize,
    /// Records removed.
    pub removed: usize,
    /// The highest new floor (0: nothing pruned).
    pub floor: i64,
}

/// Progress of physical compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStatus {
    /// The revision storage is being compacted to, if work is left.
    pub pending: Option<i64>,
    /// The last step's error, if it failed (the next step retries).
    pub last_error: Option<String>,
    /// Records deleted from storage since the store opened.
    pub removed: u64,
}

/// etcd's revisioned key space on a RocksDB engine. See the crate docs.
pub struct Mvcc {
    engine: Arc<Engine>,
    kv_cf: Cf,
    meta_cf: Cf,
    lease_cf: Cf,
    leases: LeaseTable,
    hub: Arc<Hub>,
    config: MvccConfig,
    index: TreeIndex,
    current: i64,
    compacted: i64,
    /// The highest pruning floor of any key (0: never pruned).
    pruned: i64,
    applied: u64,
    pending: Option<PendingCompaction>,
    status: CompactionStatus,
    listener: Option<EventListener>,
}

impl Drop for Mvcc {
    fn drop(&mut self) {
        self.hub.close();
    }
}

impl fmt::Debug for Mvcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mvcc")
            .field("path", &self.engine.path())
            .field("current", &self.current)
            .field("compacted", &self.compacted)
            .field("applied", &self.applied)
            .field("keys", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Mvcc {
    /// Opens (or creates) a store and rebuilds its index from storage: one pass over the
    /// `kv` column family in revision order.
    ///
    /// # Errors
    /// The engine's open errors; [`MvccError::Corrupt`], [`MvccError::History`] or
    /// [`MvccError::FormatVersion`] for a store this build cannot read.
    pub fn open(config: MvccConfig) -> Result<Mvcc, MvccError> {
        if config.max_txn_ops == 0 || config.max_request_bytes == 0 {
            return Err(MvccError::InvalidConfig(
                "max_txn_ops and max_request_bytes must be above 0".into(),
            ));
        }
        let engine = Engine::open(
            config
                .engine
                .clone()
                .column_families([KV_CF, META_CF, LEASE_CF]),
        )?;
        let kv_cf = engine.cf(KV_CF)?;
        let meta_cf = engine.cf(META_CF)?;
        let lease_cf = engine.cf(LEASE_CF)?;
        let mut m = Mvcc {
            engine: Arc::new(engine),
            kv_cf,
            meta_cf,
            lease_cf,
            leases: LeaseTable::default(),
            hub: Arc::new(Hub::new(1, -1)),
            index: TreeIndex::with_value_cache(config.value_cache_bytes),
            config,
            current: 1,
            compacted: -1,
            pruned: 0,
            applied: 0,
            pending: None,
            status: CompactionStatus::default(),
            listener: None,
        };
        let started = std::time::Instant::now();
        m.recover()?;
        tracing::info!(
            path = %m.engine.path().display(),
            revision = m.current,
            compacted = m.compacted,
            applied_index = m.applied,
            keys = m.index.len(),
            leases = m.leases.leases.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "mvcc opened; index rebuilt from storage"
        );
        Ok(m)
    }

    fn corrupt(&self, what: impl Into<String>) -> MvccError {
        MvccError::Corrupt {
            path: self.engine.path().to_path_buf(),
            what: what.into(),
        }
    }

    fn meta_i64(&self, key: &[u8]) -> Result<Option<i64>, MvccError> {
        match self.engine.get(self.meta_cf, key)? {
            None => Ok(None),
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(b) => Ok(Some(i64::from_be_bytes(b))),
                Err(_) => Err(self.corrupt(format!(
                    "meta {} is {} bytes, not 8",
                    String::from_utf8_lossy(key),
                    v.len()
                ))),
            },
        }
    }

    fn recover(&mut self) -> Result<(), MvccError> {
        let path = self.engine.path().to_path_buf();
        match self.engine.get(self.meta_cf, META_FORMAT)? {
            // A new store has no history either; one with history lost its format version.
            None if self.meta_i64(META_CURRENT)?.is_some() => {
                return Err(
                    self.corrupt("meta format_version is missing from a store with history")
                );
            }
            // A new store, opened read-only: nothing to write (and nothing may be).
            None if self.engine.is_read_only() => {}
            None => {
                let mut b = self.engine.begin_batch();
                b.put(self.meta_cf, META_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
                b.commit(WriteMode::SYNC)?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| self.corrupt("format_version is not 4 bytes"))?;
                if found != FORMAT_VERSION {
                    return Err(MvccError::FormatVersion {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
        }
        self.current = self.meta_i64(META_CURRENT)?.unwrap_or(1);
        self.applied = self.meta_i64(META_APPLIED)?.unwrap_or(0) as u64;
        self.compacted = self.meta_i64(META_COMPACTED)?.unwrap_or(-1);
        let finished = self.meta_i64(META_FINISHED)?.unwrap_or(-1);
        self.pruned = self.meta_i64(META_PRUNED)?.unwrap_or(0);
        let mut leases = LeaseTable {
            next_id: self.meta_i64(META_NEXT_LEASE)?.unwrap_or(1),
            ..LeaseTable::default()
        };
        let mut bad_lease = None;
        self.engine
            .scan(self.lease_cf, &KeyRange::all(), false, |k, v| {
                match (<[u8; 8]>::try_from(k), <[u8; 8]>::try_from(v)) {
                    (Ok(id), Ok(ttl)) => {
                        leases.leases.insert(
                            i64::from_be_bytes(id),
                            Lease {
                                ttl: i64::from_be_bytes(ttl),
                                keys: Default::default(),
                            },
                        );
                        true
                    }
                    _ => {
                        bad_lease = Some(k.to_vec());
                        false
                    }
                }
            })?;
        if let Some(k) = bad_lease {
            return Err(self.corrupt(format!("lease record {k:02x?} is not an id and a TTL")));
        }
        // The lease each live key's latest put attached (0: none).
        let mut key_lease: HashMap<Bytes, i64> = HashMap::new();

        let mut index = TreeIndex::with_value_cache(self.config.value_cache_bytes);
        let mut failure: Option<MvccError> = None;
        let mut last = Revision::default();
        self.engine
            .scan(self.kv_cf, &KeyRange::all(), false, |k, v| {
                let step = (|| {
                    let rev = Revision::from_bytes(k).ok_or_else(|| MvccError::Corrupt {
                        path: path.clone(),
                        what: format!("kv key {k:02x?} is not a revision"),
                    })?;
                    let rec = record::decode_record(v).ok_or_else(|| MvccError::Corrupt {
                        path: path.clone(),
                        what: format!("undecodable record at revision {rev}"),
                    })?;
                    last = rev;
                    if rec.lease != 0 && !rec.tombstone {
                        key_lease.insert(Bytes::copy_from_slice(rec.key), rec.lease);
                    } else if !key_lease.is_empty() {
                        key_lease.remove(rec.key);
                    }
                    let history = |e: crate::key_index::KeyIndexError| MvccError::History {
                        path: path.clone(),
                        key: String::from_utf8_lossy(rec.key).into_owned(),
                        revision: rev,
                        reason: e.to_string(),
                    };
                    // A delete whose generation was compacted away before the compaction
                    // finished is skipped; the compaction walk removes it.
                    index
                        .replay(
                            rec.key,
                            rev,
                            rec.tombstone,
                            Revision::new(rec.created.0, rec.created.1),
                            rec.version,
                            (!rec.tombstone).then_some((rec.value, rec.lease)),
                        )
                        .map_err(history)
                })();
                match step {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if last.main > self.current {
            return Err(self.corrupt(format!(
                "record at revision {last} is above the current revision {}",
                self.current
            )));
        }
        if self.compacted >= 0 {
            index.compact(self.compacted);
            if finished < self.compacted {
                self.pending = Some(PendingCompaction {
                    at: self.compacted,
                    cursor: Revision::default(),
                });
            }
        }
        let mut floors: Vec<(Vec<u8>, i64)> = Vec::new();
        self.engine.scan(
            self.meta_cf,
            &KeyRange::prefix(META_FLOOR_PREFIX.to_vec()),
            false,
            |k, v| {
                if let Ok(b) = <[u8; 8]>::try_from(v) {
                    floors.push((k[META_FLOOR_PREFIX.len()..].to_vec(), i64::from_be_bytes(b)));
                }
                true
            },
        )?;
        for (key, floor) in floors {
            index.set_floor(&key, floor);
        }
        self.index = index;
        self.status.pending = self.pending.as_ref().map(|p| p.at);
        // Deadlines are not stored: after a restart every lease gets its whole TTL again, as
        // etcd's lessor does when it is promoted (a restart never expires a lease early).
        let now = Instant::now();
        for (id, l) in &leases.leases {
            leases.deadlines.insert(*id, now + ttl_duration(l.ttl));
        }
        for (key, id) in key_lease {
            leases.attach(key, id);
        }
        self.leases = leases;
        self.hub = Arc::new(Hub::new(self.current, self.history_start()));
        Ok(())
    }

    /// How compaction and pruning write their deletes: with the WAL, not synced (a lost step
    /// is redone), unless entries are written without the WAL. Then neither may be: a delete
    /// that survives a crash while the entries before it do not (they lived in memtables only)
    /// would remove the last durable version of a key, or compact below a compaction that never
    /// happened. Without the WAL, both sit in the memtables behind the entries they follow,
    /// and RocksDB's atomic flush makes them durable together or not at all.
    fn maintenance_mode(&self) -> WriteMode {
        if self.config.write_mode.wal {
            WriteMode::WAL
        } else {
            WriteMode::NO_WAL
        }
    }

    /// Below this revision history is incomplete (compacted, or pruned for some key): watches
    /// starting below it are cancelled.
    fn history_start(&self) -> i64 {
        self.compacted.max(self.pruned)
    }

    /// Keeps the newest `keep` versions (puts and deletes) of every key and removes the rest,
    /// as compaction does for one revision: a read of a key below its oldest kept revision
    /// fails with etcd's "required revision has been compacted", and a watch from below the
    /// highest such revision is cancelled with it. The index changes at once; the records go
    /// in batches of 10,000 deletes (WAL without sync, or no WAL when entries have none: a
    /// crash before the end leaves records that no read reaches, removed by the next prune or
    /// compaction). `keep` 0 counts as 1.
    ///
    /// Pruning is local maintenance, not an entry: run it at the same applied index on every
    /// replica (or let the facade put it in the log) if their answers to old reads must agree.
    ///
    /// # Errors
    /// A storage error; what was committed before it stays pruned.
    pub fn prune_old_versions(&mut self, keep: usize) -> Result<PruneReport, MvccError> {
        // Finish physical compaction first. The records it has yet to remove are gone from the
        // index already; pruning the versions above them would leave them behind as their key's
        // oldest records, with a gap after them, and an index rebuilt from storage after a crash
        // would count the key's versions from there, one short (found by the torture campaign).
        while self.pending.is_some() {
            self.compact_step(self.config.compaction_batch.max(DEFAULT_COMPACTION_BATCH))?;
        }
        let (floors, removed) = self.index.prune(keep);
        let floor = floors.iter().map(|(_, f)| *f).max().unwrap_or(0);
        let mut batch = self.engine.begin_batch();
        for (key, f) in &floors {
            let mut k = META_FLOOR_PREFIX.to_vec();
            k.extend_from_slice(key);
            batch.put(self.meta_cf, &k, &f.to_be_bytes())?;
        }
        if floor > self.pruned {
            self.pruned = floor;
            batch.put(self.meta_cf, META_PRUNED, &floor.to_be_bytes())?;
        }
        for chunk in removed.chunks(10_000) {
            for rev in chunk {
                batch.delete(self.kv_cf, &rev.to_bytes())?;
            }
            batch.commit(self.maintenance_mode())?;
            batch = self.engine.begin_batch();
        }
        batch.commit(self.maintenance_mode())?;
        self.hub.publish(self.current, self.history_start(), &[]);
        Ok(PruneReport {
            keys: floors.len(),
            removed: removed.len(),
            floor,
        })
    }

    /// The current revision (1 for a new store).
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// The compacted revision, if the store was ever compacted.
    pub fn compacted_revision(&self) -> Option<i64> {
        (self.compacted >= 0).then_some(self.compacted)
    }

    /// The index of the last applied entry (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Watchers registered.
    pub fn watcher_count(&self) -> usize {
        self.hub.watcher_count()
    }

    /// Keys with history in the index (live or deleted but not yet compacted).
    pub fn indexed_keys(&self) -> usize {
        self.index.len()
    }

    /// The engine underneath (statistics, checkpoints, fault injection in tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, shared: for threads that sync its WAL or take checkpoints while entries are
    /// applied (everything they may do leaves the store's state alone).
    pub fn shared_engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &MvccConfig {
        &self.config
    }

    /// Sets the receiver of every committed entry's events (replacing any other).
    pub fn set_event_listener(&mut self, listener: impl FnMut(&[Event]) + Send + Sync + 'static) {
        self.listener = Some(Box::new(listener));
    }

    fn view(&self) -> View<'_> {
        View {
            index: &self.index,
            engine: &self.engine,
            kv_cf: self.kv_cf,
            path: self.engine.path(),
            overlay: HashMap::new(),
            leases: &self.leases,
        }
    }

    /// Applies entry `index`: prepares every op against the state the ops before it left,
    /// writes all of the entry's changes with the new revision and the applied index as ONE
    /// engine batch, commits it once, and only then updates the in-memory index, publishes
    /// the events and returns one result per op. An op that fails its checks gets its
    /// [`OpError`] and changes nothing; the others go on.
    ///
    /// An entry at or below [`Mvcc::applied_index`] is skipped (replay after a restart).
    ///
    /// # Errors
    /// The commit failed (or storage could not be read while preparing): nothing of the
    /// entry is applied, neither on disk nor in memory; the error stands for every op.
    pub fn apply(&mut self, index: u64, ops: &[Op]) -> Result<Applied, MvccError> {
        // Exclusive: no watcher can register before `finish`, so events are built only if
        // someone listens now.
        let collect = self.listener.is_some() || self.hub.has_watchers();
        match self.prepare_inner(index, ops, collect)? {
            Prepared::Skipped(applied) => Ok(applied),
            Prepared::Ready(entry) => {
                let committed = Mvcc::commit_prepared(&self.engine, entry, self.config.write_mode)?;
                Ok(self.finish(committed))
            }
        }
    }

    /// The first phase of [`Mvcc::apply`], for callers that commit without holding the store
    /// exclusively (see [`Prepared`] for the protocol): prepares every op of entry `index` and
    /// stages its writes, changing nothing. An entry at or below the applied index is
    /// [`Prepared::Skipped`] (replay).
    ///
    /// # Errors
    /// A storage read failed while preparing.
    pub fn prepare(&self, index: u64, ops: &[Op]) -> Result<Prepared, MvccError> {
        // A watcher may register between this and `finish`: always build the events.
        self.prepare_inner(index, ops, true)
    }

    fn prepare_inner(
        &self,
        index: u64,
        ops: &[Op],
        collect_events: bool,
    ) -> Result<Prepared, MvccError> {
        if index <= self.applied {
            return Ok(Prepared::Skipped(Applied {
                index,
                skipped: true,
                revision: self.current,
                results: Vec::new(),
                events: 0,
            }));
        }
        let limits = Limits {
            max_txn_ops: self.config.max_txn_ops,
            max_request_bytes: self.config.max_request_bytes,
            min_lease_ttl: self.config.min_lease_ttl,
        };
        let mut entry = Entry {
            view: self.view(),
            // Records are the key and value plus a 17-byte key and a few bytes of framing.
            batch: self.engine.batch_with_capacity_bytes(
                ops.iter()
                    .map(|op| match op {
                        Op::Put(p) => p.key.len() + p.value.len() + 48,
                        _ => 64,
                    })
                    .sum::<usize>()
                    + 128,
            ),
            changes: Vec::with_capacity(ops.len()),
            events: Vec::with_capacity(if collect_events { ops.len() } else { 0 }),
            collect_events,
            rev: self.current,
            compacted: self.compacted,
            compact: None,
            limits,
            scratch: Vec::new(),
            lease_changes: LeaseChanges::default(),
            lease_cf: self.lease_cf,
            meta_cf: self.meta_cf,
        };
        let results = ops
            .iter()
            .map(|op| entry.op(op))
            .collect::<Result<Vec<_>, MvccError>>()?;
        let Entry {
            mut batch,
            changes,
            events,
            rev,
            compact,
            lease_changes,
            ..
        } = entry;
        batch.put(self.meta_cf, META_CURRENT, &rev.to_be_bytes())?;
        batch.put(self.meta_cf, META_APPLIED, &(index as i64).to_be_bytes())?;
        if let Some(at) = compact {
            batch.put(self.meta_cf, META_COMPACTED, &at.to_be_bytes())?;
        }
        Ok(Prepared::Ready(PreparedEntry {
            batch: batch.into_staged(),
            pending: Pending {
                index,
                results,
                changes,
                events,
                rev,
                compact,
                lease_changes,
                base_applied: self.applied,
            },
        }))
    }

    /// The second phase of [`Mvcc::apply`] (see [`Prepared`]): writes a prepared entry's one
    /// batch with `mode` (normally the store's [`MvccConfig::write_mode`]). It needs only the
    /// shared engine ([`Mvcc::shared_engine`]), not the store, so no lock of the store is held
    /// during the write and its fsync.
    ///
    /// # Errors
    /// The write failed: nothing of the entry is on disk, and the entry is gone (prepare it
    /// again to retry); the store's memory is untouched.
    pub fn commit_prepared(
        engine: &Engine,
        entry: PreparedEntry,
        mode: WriteMode,
    ) -> Result<CommittedEntry, MvccError> {
        let PreparedEntry { batch, pending } = entry;
        engine.commit_staged(batch, mode)?;
        Ok(CommittedEntry { pending })
    }

    /// The last phase of [`Mvcc::apply`] (see [`Prepared`]), after the commit: the index,
    /// revision, applied index, leases and compaction change, events go out, and the entry's
    /// answer comes back.
    ///
    /// # Panics
    /// If another entry was finished on this store since `entry` was prepared (entries must go
    /// through the phases one at a time): its changes were computed against a state that is
    /// gone, and applying them would put memory out of step with disk.
    pub fn finish(&mut self, entry: CommittedEntry) -> Applied {
        let Pending {
            index,
            results,
            changes,
            events,
            rev,
            compact,
            lease_changes,
            base_applied,
        } = entry.pending;
        assert_eq!(
            base_applied, self.applied,
            "entry {index} was prepared on another state: entries must be prepared, committed \
             and finished one at a time"
        );
        // Committed: now, and only now, the in-memory state and the watchers learn of it.
        for c in &changes {
            let r = if c.tombstone {
                self.index.tombstone(&c.key, c.rev)
            } else {
                self.index
                    .put_value(&c.key, c.rev, c.latest.as_ref().map(|(v, l)| (&v[..], *l)))
            };
            debug_assert!(r.is_ok(), "index refused a committed change: {r:?}");
        }
        self.current = rev;
        self.applied = index;
        if !lease_changes.is_empty() || lease_changes.next_id.is_some() {
            self.leases.commit(lease_changes, Instant::now());
        }
        if let Some(at) = compact {
            self.compacted = at;
            self.index.compact(at);
            // Records kept for an earlier compaction may be removable now: start over.
            self.pending = Some(PendingCompaction {
                at,
                cursor: Revision::default(),
            });
            self.status.pending = Some(at);
        }
        self.hub.publish(rev, self.history_start(), &events);
        if !events.is_empty()
            && let Some(listener) = self.listener.as_mut()
        {
            listener(&events);
        }
        if self.pending.is_some() && self.config.compaction_batch > 0 {
            // Bounded work; a failure is kept in the status and retried by the next step.
            let _ = self.compact_step(self.config.compaction_batch);
        }
        Applied {
            index,
            skipped: false,
            revision: rev,
            results,
            events: events.len(),
        }
    }

    /// Starts a watch. From `start_revision` (at or below the current revision) it first
    /// replays history from storage, then follows live events; from 0 (or above the current
    /// revision) it waits for new ones. Starting below the compacted revision gives one
    /// cancelled response carrying the compacted revision, as etcd.
    pub fn watch(&self, req: WatchRequest) -> Watcher {
        crate::watch::register(&self.hub, &self.engine, self.kv_cf, req)
    }

    /// Sends a progress notification (the current revision, no events) to every watcher that
    /// asked for them and is up to date; the caller runs this periodically (etcd: every 10
    /// minutes).
    pub fn notify_progress(&self) {
        self.hub.notify_progress();
    }

    /// Refreshes lease `id`'s deadline to its whole TTL from now (etcd's keep-alive: no
    /// revision, nothing written). Returns the TTL.
    ///
    /// # Errors
    /// [`OpError::LeaseNotFound`].
    pub fn keep_alive(&mut self, id: i64) -> Result<i64, OpError> {
        let ttl = self
            .leases
            .leases
            .get(&id)
            .map(|l| l.ttl)
            .ok_or(OpError::LeaseNotFound { id })?;
        self.leases
            .deadlines
            .insert(id, Instant::now() + ttl_duration(ttl));
        Ok(ttl)
    }

    /// Restarts every lease's deadline: its whole TTL from `now` (etcd's lessor `Promote`, when
    /// a member becomes the leader: the old leader's keep-alives are unknown here, so no lease
    /// may expire before a full TTL under the new leader).
    pub fn promote_leases(&mut self, now: Instant) {
        for (id, l) in &self.leases.leases {
            self.leases.deadlines.insert(*id, now + ttl_duration(l.ttl));
        }
    }

    /// Lease `id`'s remaining TTL (whole seconds, rounded down as etcd's) and granted TTL, with
    /// its keys when `keys` (etcd's TimeToLive; a lease that does not exist has TTL -1).
    pub fn time_to_live(&self, id: i64, keys: bool) -> LeaseTimeToLive {
        match (self.leases.leases.get(&id), self.leases.deadlines.get(&id)) {
            (Some(l), Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                LeaseTimeToLive {
                    id,
                    ttl: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    granted_ttl: l.ttl,
                    keys: if keys {
                        l.keys.iter().cloned().collect()
                    } else {
                        Vec::new()
                    },
                }
            }
            _ => LeaseTimeToLive {
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        }
    }

    /// Every lease id, ascending.
    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Leases whose deadline has passed at `now`, soonest first. Expiry is decided here, outside
    /// `apply`, which stays deterministic: the caller proposes a [`batchkv_codec::LeaseRevoke`]
    /// entry for each (and a lease kept alive meanwhile simply is not due any more).
    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        self.leases.expired(now)
    }

    /// A range read of the committed state (etcd's Range, serializable).
    ///
    /// # Errors
    /// [`MvccError::Op`] with etcd's errors (empty key, compacted, future revision); a
    /// storage error.
    pub fn range(&self, r: &Range) -> Result<RangeResponse, MvccError> {
        Ok(self.view().range(r, self.current, self.compacted)??)
    }

    /// The value cache: the bytes it holds and its budget ([`MvccConfig::value_cache_bytes`]).
    pub fn value_cache(&self) -> (usize, usize) {
        self.index.value_cache_bytes()
    }

    /// The latest value of `key`, if it exists: one index lookup, and one point read unless
    /// the value cache holds the value.
    ///
    /// # Errors
    /// A storage error.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        self.get_at(key, self.current)
    }

    /// `key` as of revision `at` (at or below the current revision, not below the compacted
    /// one).
    ///
    /// # Errors
    /// Compacted or future revision; a storage error.
    pub fn get_at(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>, MvccError> {
        let at = crate::view::check_read_revision(at, self.current, self.compacted)?;
        // One search of the index for the floor and the revision.
        match self.index.get_checked(key, at) {
            Err(floor) => Err(OpError::Compacted {
                requested: at,
                compacted: floor,
            }
            .into()),
            Ok(None) => Ok(None),
            Ok(Some((found, Some(cached)))) => Ok(Some(crate::view::cached_kv(
                Bytes::copy_from_slice(key),
                &found,
                &cached,
            ))),
            Ok(Some((found, None))) => Ok(Some(
                self.view()
                    .fetch_stored(Bytes::copy_from_slice(key), &found)?,
            )),
        }
    }

    /// The record written at `rev` (a put's key-value, or a delete's key and revision), while
    /// compaction has not removed it: how watchers read an [`Event::prev`].
    ///
    /// # Errors
    /// A storage error or an undecodable record.
    pub fn kv_at(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        let Some(raw) = self.engine.get(self.kv_cf, &rev.to_bytes())? else {
            return Ok(None);
        };
        crate::watch::record_kv(&raw, rev)
            .map(Some)
            .ok_or_else(|| self.corrupt(format!("undecodable record at {rev}")))
    }

    /// Where physical compaction stands.
    pub fn compaction_status(&self) -> &CompactionStatus {
        &self.status
    }

    /// One bounded step of physical compaction: visits at most `max_records` stored records
    /// at or below the compacted revision and deletes those no read can reach any more, in one
    /// batch. Returns whether compaction is complete. Reads and applies are correct whether or
    /// not it has run (the index decides what is visible).
    ///
    /// # Errors
    /// A storage error (also kept in [`Mvcc::compaction_status`]); the next step retries.
    pub fn compact_step(&mut self, max_records: usize) -> Result<bool, MvccError> {
        let result = self.compact_step_inner(max_records.max(1));
        self.status.last_error = result.as_ref().err().map(ToString::to_string);
        self.status.pending = self.pending.as_ref().map(|p| p.at);
        result
    }

    fn compact_step_inner(&mut self, max_records: usize) -> Result<bool, MvccError> {
        let Some(p) = self.pending.clone() else {
            return Ok(true);
        };
        let range = KeyRange::between(
            p.cursor.to_bytes().to_vec(),
            Revision::new(p.at + 1, 0).to_bytes().to_vec(),
        );
        let path = self.engine.path().to_path_buf();
        let mut batch = self.engine.begin_batch();
        let mut visited = 0usize;
        let mut next: Option<Revision> = None;
        let mut failure: Option<MvccError> = None;
        let index = &self.index;
        let kv_cf = self.kv_cf;
        self.engine.scan(kv_cf, &range, false, |k, v| {
            if visited == max_records {
                next = Revision::from_bytes(k);
                return false;
            }
            visited += 1;
            let step = (|| {
                let rev = Revision::from_bytes(k).ok_or_else(|| MvccError::Corrupt {
                    path: path.clone(),
                    what: format!("kv key {k:02x?} is not a revision"),
                })?;
                let rec = record::decode_record(v).ok_or_else(|| MvccError::Corrupt {
                    path: path.clone(),
                    what: format!("undecodable record at revision {rev}"),
                })?;
                if !index.holds(rec.key, rev) {
                    batch.delete(kv_cf, k)?;
                }
                Ok(())
            })();
            match step {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let removed = batch.len() as u64;
        let done = next.is_none();
        if done {
            batch.put(self.meta_cf, META_FINISHED, &p.at.to_be_bytes())?;
        }
        // No fsync: a lost step is redone on open (finished < compacted).
        batch.commit(self.maintenance_mode())?;
        self.status.removed += removed;
        self.pending = next.map(|cursor| PendingCompaction { at: p.at, cursor });
        Ok(done)
    }
}

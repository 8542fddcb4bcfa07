//! [`Store`] and [`StoreBuilder`].

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use batchkv_batcher::{
    AdaptiveBatchConfig, AdaptiveBatchResult, BatchConfig, Batcher, ChunkController, Shutdown,
    Stats as BatcherStats, SubmitError,
};
use batchkv_batcher::{FlushInfo, FlushObserver};
use batchkv_codec::{
    Compact, DeleteRange, InvalidReason, LeaseGrant, LeaseRevoke, Op, Put, Range, Txn,
};
use batchkv_engine::{Engine, EngineConfig, EngineError, EngineStats, Profile, Tuning};
use batchkv_metrics::{MaintenanceTask, Metrics, MetricsServer, OpLabel, StateSample};
use batchkv_mvcc::{
    AutoCompaction, AutoCompactor, CheckReport, CompactResponse, DeleteRangeResponse, KeyValue,
    KvHash, LeaseGrantResponse, LeaseRevokeResponse, LeaseTimeToLive, Mvcc, MvccConfig, OpError,
    OpResponse, PruneReport, PutResponse, RangeResponse, TxnResponse, WatchRequest, Watcher,
};
use bytes::{Bytes, BytesMut};

use crate::durability::{Durability, FlushStats, WalSync};
use crate::error::{Result, StoreError};
use crate::future::{ReadBarrier, SubmitFuture, store_error};
use crate::halt::Halt;
use crate::log::{LocalLog, Log};
use crate::pipeline::{Backend, Core, Pipeline, Request};
use crate::replicated::MvccMachine;

/// A replicated store's raft member: what [`StoreBuilder::replicated`] takes.
struct RaftSetup {
    config: batchkv_raft::NodeConfig,
    storage: batchkv_raft::RaftStorage,
    transport: Arc<dyn batchkv_raft::Transport>,
}

/// How to open a [`Store`]. [`Store::open`] uses the defaults.
pub struct StoreBuilder {
    path: PathBuf,
    durability: Durability,
    batch: BatchConfig,
    tuning: Tuning,
    log: Option<Box<dyn Log>>,
    raft: Option<RaftSetup>,
    lease_check: Duration,
    auto_compaction: Option<AutoCompaction>,
    mvcc: Option<Box<dyn FnOnce(MvccConfig) -> MvccConfig>>,
    metrics: bool,
    read_only: bool,
    fail_on_write_stall: bool,
    writer_commits: bool,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// A store at `path`: `Sync` durability, the batcher's defaults (adaptive linger up to
    /// 1 ms, 1,000 ops per entry), the engine's default profile, a lease check every 500 ms,
    /// no auto-compaction.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreBuilder {
            path: path.into(),
            durability: Durability::Sync,
            batch: BatchConfig::default(),
            tuning: Tuning::default(),
            log: None,
            raft: None,
            lease_check: Duration::from_millis(500),
            auto_compaction: None,
            mvcc: None,
            metrics: false,
            read_only: false,
            fail_on_write_stall: false,
            writer_commits: true,
        }
    }

    /// Whether a blocking write ([`Store::submit`], [`Store::put`], ...) that finds the write
    /// pipeline idle commits its entry on the caller's own thread, as RocksDB's write-thread
    /// leader does, instead of handing it to the batcher's worker and sleeping until it
    /// answers (two thread wake-ups per write, which dominate a lone writer's latency). On by
    /// default; a single-node store only (a replicated store always hands off). Writers that
    /// arrive while the pipeline is busy queue and are group-committed either way. Off, every
    /// write goes through the worker (a caller's thread then never runs RocksDB's write).
    pub fn writer_commits(mut self, on: bool) -> Self {
        self.writer_commits = on;
        self
    }

    /// Opens the store read-only: nothing is written, not even at open (RocksDB's read-only
    /// mode replays the WAL into memory instead of flushing it), so it opens on a full disk,
    /// and beside a process that has it open for writing (seeing the state of the moment it
    /// opened). Reads, watches of history and [`Store::check`] work; every write fails with
    /// [`EngineError::ReadOnly`]; no lease expires. The store must exist.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// A write that would wait out a RocksDB write stall (compaction behind: too many level-0
    /// files, memtables or pending compaction bytes) fails at once with
    /// [`EngineError::WriteStall`] instead; nothing of its entry is written. Off by default
    /// (writes wait, as RocksDB's do).
    pub fn fail_on_write_stall(mut self, on: bool) -> Self {
        self.fail_on_write_stall = on;
        self
    }

    /// Collects metrics ([`Store::metrics`], [`Store::metrics_text`], [`Store::serve_metrics`]).
    /// Off by default; a store without them does not measure anything.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// What an acknowledged write survives.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Group commit: batch size, bytes, linger policy, queue.
    pub fn batch(mut self, config: BatchConfig) -> Self {
        self.batch = config;
        self
    }

    /// A ready-made engine profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.tuning = Tuning::profile(profile);
        self
    }

    /// The engine's tuning.
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The log entries go through (default: [`LocalLog`], single node). Its indexes must
    /// continue above the store's applied index.
    pub fn log(mut self, log: impl Log) -> Self {
        self.log = Some(Box::new(log));
        self
    }

    /// Makes the store one member of a raft cluster (instead of the single-node [`LocalLog`]):
    /// `config` names this member and the initial voters (the same list on every member, as
    /// etcd's `--initial-cluster`), `storage` holds raft's log and state, and `transport` sends
    /// raft's messages to the other members; hand the messages they send to this member to
    /// [`Store::raft_mailbox`].
    ///
    /// Every committed entry is applied by this member's node thread, in index order,
    /// whoever proposed it; a write submitted here is proposed here (a follower forwards it to
    /// the leader: `config.forward_proposals` is set) and answered when this member applies it.
    /// Log compaction: every `config.snapshot_entries` applied entries (0: never) the member
    /// takes a snapshot of its MVCC (an image of every column family, in memory) and drops
    /// its raft log up to `config.catch_up_entries` below it; a member too far behind gets the
    /// leader's snapshot and installs it atomically (`MvccMachine::restore`).
    ///
    /// Where to keep `storage`: `RaftStorage::open_dir(Store::raft_dir(path))`, a RocksDB
    /// database of its own in the data dir's `raft` subdirectory (the data dir must exist:
    /// create it first). Its own database keeps the MVCC's column families and checkpoints
    /// (`Store::checkpoint`, the Snapshot RPC) free of raft's log.
    ///
    /// # Examples
    /// ```
    /// use batchkv::{LocalNetwork, NodeConfig, RaftStorage, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let data = dir.path().join("data");
    /// std::fs::create_dir_all(&data)?;
    /// let net = LocalNetwork::new(1);
    /// let store = Store::builder(&data)
    ///     .replicated(
    ///         NodeConfig::new(1, &[1]),
    ///         RaftStorage::open_dir(Store::raft_dir(&data))?,
    ///         net.transport(1),
    ///     )
    ///     .open()?;
    /// net.register(1, store.raft_mailbox().expect("replicated"));
    /// // A one-member cluster elects itself after an election timeout; until then writes
    /// // answer `NoLeader`.
    /// let put = loop {
    ///     match store.put("k", "v") {
    ///         Err(batchkv::StoreError::NoLeader) => std::thread::sleep(std::time::Duration::from_millis(50)),
    ///         other => break other?,
    ///     }
    /// };
    /// assert_eq!(put.revision, 2);
    /// assert!(store.raft_status().expect("replicated").is_leader);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replicated(
        mut self,
        config: batchkv_raft::NodeConfig,
        storage: batchkv_raft::RaftStorage,
        transport: Arc<dyn batchkv_raft::Transport>,
    ) -> Self {
        self.raft = Some(RaftSetup {
            config,
            storage,
            transport,
        });
        self
    }

    /// How often expired leases are looked for (and revoked through the pipeline).
    pub fn lease_check_interval(mut self, every: Duration) -> Self {
        self.lease_check = every;
        self
    }

    /// Compacts automatically, as etcd's `--auto-compaction-mode`.
    pub fn auto_compaction(mut self, mode: AutoCompaction) -> Self {
        self.auto_compaction = Some(mode);
        self
    }

    /// Adjusts the MVCC's settings (request size, txn ops, minimum lease TTL, ...).
    pub fn mvcc(mut self, f: impl FnOnce(MvccConfig) -> MvccConfig + 'static) -> Self {
        self.mvcc = Some(Box::new(f));
        self
    }

    /// Opens the store and starts its threads.
    ///
    /// # Errors
    /// Opening the MVCC (engine errors, a corrupt store), a bad batch config.
    pub fn open(self) -> Result<Store> {
        let mut mode = self.durability.write_mode();
        mode.no_slowdown = self.fail_on_write_stall;
        let mut mc = MvccConfig::new(&self.path).write_mode(mode);
        mc.engine = EngineConfig::new(&self.path)
            .tuning(self.tuning)
            .read_only(self.read_only);
        if let Some(f) = self.mvcc {
            mc = f(mc);
        }
        let mvcc = Mvcc::open(mc)?;
        let engine = mvcc.shared_engine();
        let next_index = mvcc.applied_index() + 1;
        let compacted = mvcc.compacted_revision().unwrap_or(-1);
        let mvcc = Arc::new(RwLock::new(mvcc));
        let metrics = self.metrics.then(|| Arc::new(Metrics::new()));
        let maintenance_errors = Arc::new(AtomicU64::new(0));
        let halt = Arc::new(Halt::default());
        let wal = match self.durability {
            Durability::Wal { flush } if !self.read_only => Some(WalSync::new(
                flush,
                Arc::clone(&maintenance_errors),
                metrics.clone(),
                Arc::clone(&halt),
            )),
            _ => None,
        };
        let backend = match self.raft {
            None => Backend::Local(Mutex::new(
                self.log
                    .unwrap_or_else(|| Box::new(LocalLog::starting_at(next_index))),
            )),
            Some(raft) => {
                if self.read_only || self.log.is_some() {
                    return Err(StoreError::Config(
                        "a replicated store is neither read-only nor on a log of its own".into(),
                    ));
                }
                // Raft persists an entry before any member applies it, so the state machine is
                // never past a new raft log: a store that is (its history written by a
                // single-node store, or raft's storage from another store) would skip the
                // cluster's entries. (A member's own raft storage may end below its state: a
                // snapshot is installed before raft's storage records it.)
                let raft_last = batchkv_raft::raft::Storage::last_index(&raft.storage)
                    .map_err(|e| StoreError::Internal(format!("raft storage: {e}")))?;
                if next_index - 1 > raft_last && !raft.storage.is_initialized() {
                    return Err(StoreError::Config(format!(
                        "the store has applied index {} but its raft log ends at {raft_last}: it \
                         cannot join this cluster with that history (open it with the raft \
                         storage it was replicated with)",
                        next_index - 1
                    )));
                }
                let apply_lock = Arc::new(Mutex::new(()));
                let mut write_mode = mvcc
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .config()
                    .write_mode;
                // Raft's log is the durable record: an entry is fsynced there (by a quorum)
                // before any member applies it, and the MVCC's WriteBatch carries the applied
                // index, so replaying the log above it after a crash is idempotent. The
                // WriteBatch goes to the WAL without its own fsync (`Sync`: one fsync per entry
                // instead of two); what must be durable before raft's log drops entries is made
                // so by `MvccMachine::sync` (ARCHITECTURE.md, "Durability of a member").
                write_mode.sync = false;
                let machine = MvccMachine {
                    mvcc: Arc::clone(&mvcc),
                    engine: Arc::clone(&engine),
                    write_mode,
                    apply_lock: Arc::clone(&apply_lock),
                    halt: Arc::clone(&halt),
                    wal: wal.clone(),
                    metrics: metrics.clone(),
                };
                let mut config = raft.config;
                config.forward_proposals = true;
                let node = batchkv_raft::RaftNode::start(
                    config,
                    raft.storage,
                    Box::new(machine),
                    raft.transport,
                )?;
                Backend::Raft {
                    node: RwLock::new(Some(node)),
                    apply_lock,
                }
            }
        };
        let core = Arc::new(Core::new(
            Arc::clone(&mvcc),
            backend,
            wal.clone(),
            metrics.clone(),
            Arc::clone(&halt),
        ));
        let pipeline = Pipeline {
            core: Arc::clone(&core),
            buf: BytesMut::new(),
        };
        let observer = metrics.clone().map(|m| {
            Arc::new(move |f: &FlushInfo| {
                m.record_batch(
                    f.items,
                    f.bytes,
                    f.waited,
                    f.linger,
                    f.trigger.as_str(),
                    f.sink_time,
                    f.queue_depth,
                );
            }) as Arc<dyn FlushObserver>
        });
        let batcher = Batcher::start_observed(pipeline, self.batch, observer)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let writer_commits = self.writer_commits && core.is_local();
        let inner = Arc::new(Inner {
            writer_commits,
            mvcc,
            engine: Arc::clone(&engine),
            core,
            batcher,
            durability: self.durability,
            wal: wal.clone(),
            threads: Mutex::new(Vec::new()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            closed: AtomicBool::new(false),
            metrics,
            maintenance_errors,
            read_only: self.read_only,
            halt,
        });
        let mut threads = Vec::new();
        if self.read_only {
            // Nothing to sync, and expired leases cannot be revoked.
            return Ok(Store { inner });
        }
        if let Some(w) = &wal {
            threads.push(
                w.spawn(engine)
                    .map_err(|e| StoreError::Config(format!("start the WAL syncer: {e}")))?,
            );
        }
        threads.push(spawn_maintenance(
            Arc::downgrade(&inner),
            Arc::clone(&inner.stop),
            self.lease_check,
            self.auto_compaction
                .map(|m| AutoCompactor::new(m, compacted)),
        )?);
        *inner.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(Store { inner })
    }
}

struct Inner {
    /// Blocking writes use `Batcher::submit_wait` (single node, unless turned off).
    writer_commits: bool,
    mvcc: Arc<RwLock<Mvcc>>,
    engine: Arc<Engine>,
    core: Arc<Core>,
    batcher: Batcher<Request, OpResponse, StoreError>,
    durability: Durability,
    wal: Option<Arc<WalSync>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    closed: AtomicBool,
    metrics: Option<Arc<Metrics>>,
    /// Failures of the maintenance thread and the WAL syncer, since open.
    maintenance_errors: Arc<AtomicU64>,
    read_only: bool,
    halt: Arc<Halt>,
}

impl Inner {
    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Every queued write is applied and answered; then nothing new is taken.
        self.batcher.shutdown(Shutdown::Graceful);
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(w) = &self.wal {
            w.stop();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            // The maintenance thread may be the one closing (it held the last handle).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        // Replicated: the member leaves the cluster (its node thread applies nothing more).
        let replicated = self.core.with_raft(|_| Ok(())).is_some();
        self.core.stop_raft();
        if self.read_only {
            return Ok(());
        }
        match self.durability {
            // Replicated, the MVCC's writes skipped their fsync (raft's log is the durable
            // record): a clean close leaves the state machine durable too.
            Durability::Sync if replicated => self
                .engine
                .flush_wal(true)
                .map_err(|e| StoreError::Storage(Arc::new(e.into()))),
            Durability::Sync => Ok(()),
            Durability::Wal { .. } => match &self.wal {
                Some(w) => w
                    .sync_now(&self.engine)
                    .map_err(|e| StoreError::Storage(Arc::new(e.into()))),
                None => Ok(()),
            },
            Durability::None => self
                .engine
                .flush()
                .map_err(|e| StoreError::Storage(Arc::new(e.into()))),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The lease-expiry and auto-compaction thread. It holds the store weakly, so dropping the
/// last handle closes the store.
fn spawn_maintenance(
    inner: std::sync::Weak<Inner>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    lease_check: Duration,
    mut compactor: Option<AutoCompactor>,
) -> Result<JoinHandle<()>> {
    let tick = lease_check.clamp(Duration::from_millis(10), Duration::from_secs(1));
    std::thread::Builder::new()
        .name("batchkv-maintenance".into())
        .spawn(move || {
            // The term this member leads in, as last seen (replicated only).
            let mut led_term: Option<u64> = None;
            loop {
                {
                    let (lock, cv) = &*stop;
                    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (guard, _) = cv
                        .wait_timeout_while(guard, tick, |stopped| !*stopped)
                        .unwrap_or_else(|e| e.into_inner());
                    if *guard {
                        return;
                    }
                }
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let store = Store { inner };
                let now = Instant::now();
                // Replicated: only the leader expires leases and compacts (a proposal like any
                // write, applied by every member). A new leader first gives every lease its
                // whole TTL again (etcd's promote): keep-alives went to the old leader.
                if let Some(status) = store.raft_status() {
                    if !status.is_leader {
                        led_term = None;
                        continue;
                    }
                    if led_term != Some(status.term) {
                        store
                            .inner
                            .mvcc
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .promote_leases(now);
                        led_term = Some(status.term);
                    }
                }
                let (expired, current) = {
                    let m = store.mvcc();
                    (m.expired_leases(now), m.current_revision())
                };
                // Revoked through the pipeline, like any write: every replica applies it. A
                // failed revoke is logged and counted; the lease is still expired, so the next
                // tick tries it again.
                for id in expired {
                    match store.lease_revoke(id) {
                        Ok(r) => tracing::debug!(
                            lease = id,
                            revision = r.revision,
                            "revoked an expired lease"
                        ),
                        // Revoked by someone else meanwhile.
                        Err(StoreError::Op(OpError::LeaseNotFound { .. })) => {}
                        Err(StoreError::Closed | StoreError::Stopped) => return,
                        // Leadership moved on: the new leader expires it.
                        Err(
                            StoreError::NoLeader
                            | StoreError::NotLeader { .. }
                            | StoreError::LeaderLost,
                        ) => {
                            tracing::debug!(lease = id, "lease revoke: leadership moved");
                        }
                        Err(e) => store.maintenance_failed(MaintenanceTask::LeaseRevoke, &e),
                    }
                }
                if let Some(rev) = compactor.as_mut().and_then(|c| c.poll(now, current)) {
                    match store.compact(rev) {
                        Ok(_) => tracing::info!(revision = rev, "auto-compacted"),
                        // A manual compaction went further meanwhile: nothing to do.
                        Err(StoreError::Op(OpError::Compacted { .. })) => {
                            tracing::debug!(revision = rev, "auto-compaction: already compacted");
                        }
                        Err(StoreError::Closed | StoreError::Stopped) => return,
                        // The compactor asks for a later revision at its next interval.
                        Err(e) => store.maintenance_failed(MaintenanceTask::Compact, &e),
                    }
                }
            }
        })
        .map_err(|e| StoreError::Config(format!("start the maintenance thread: {e}")))
}

/// What [`Store::stats`] reports.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// The current revision.
    pub revision: i64,
    /// The compacted revision, if any.
    pub compacted: Option<i64>,
    /// The last applied log index.
    pub applied_index: u64,
    /// Keys with history in the index.
    pub indexed_keys: usize,
    /// Leases.
    pub leases: usize,
    /// Group commit.
    pub batcher: BatcherStats,
    /// The WAL syncer (only with [`Durability::Wal`]).
    pub flush: Option<FlushStats>,
    /// RocksDB.
    pub engine: EngineStats,
    /// Failures of the background tasks (lease expiry, auto-compaction, WAL sync) since open;
    /// each is logged (`tracing`) and, with metrics on, counted in
    /// `batchkv_maintenance_errors_total`.
    pub maintenance_errors: u64,
    /// Why the store takes no more writes, if a storage failure stopped it
    /// ([`StoreError::Halted`]).
    pub halted: Option<String>,
}

/// The largest chunk a bulk load commits as one entry (the codec's op limit is far above).
const MAX_BULK_CHUNK: usize = 10_000;

/// What [`Store::bulk_load`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkReport {
    /// Puts committed.
    pub committed: usize,
    /// Entries (one WriteBatch each) they took.
    pub entries: usize,
    /// The revision after the load.
    pub revision: i64,
}

/// A failed [`Store::bulk_load`]: exactly the first `committed` puts are in the store.
#[derive(Clone, Debug, thiserror::Error)]
#[error("bulk load failed after {committed} committed puts: {error}")]
pub struct BulkError {
    /// Puts committed (a prefix of the input).
    pub committed: usize,
    /// Why it stopped.
    pub error: StoreError,
}

/// A handle to an open store; clone it freely and use it from any thread. Writes go through
/// group commit (one entry, one WriteBatch per batch); reads see every write acknowledged
/// before them.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.engine.path())
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with the defaults ([`StoreBuilder::new`]).
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    ///
    /// # Examples
    /// ```
    /// use batchkv::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// store.close()?;
    /// drop(store); // the files stay locked until the last handle is gone
    /// let again = Store::open(dir.path())?; // reopens with everything acknowledged
    /// assert_eq!(again.get("k")?.map(|kv| kv.value), Some("v".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        StoreBuilder::new(path.as_ref()).open()
    }

    /// A builder for everything else.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use batchkv::{AutoFlushConfig, BatchConfig, Durability, Profile, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::builder(dir.path())
    ///     .durability(Durability::Wal { flush: AutoFlushConfig::default() })
    ///     .batch(BatchConfig { max_ops: 256, ..BatchConfig::default() })
    ///     .profile(Profile::WriteHeavy)
    ///     .lease_check_interval(Duration::from_millis(100))
    ///     .metrics(true)
    ///     .open()?;
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(path: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder::new(path)
    }

    /// Logs and counts a failure of a background task (the task goes on).
    fn maintenance_failed(&self, task: MaintenanceTask, error: &StoreError) {
        self.inner
            .maintenance_errors
            .fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.inner.metrics {
            m.record_maintenance_error(task);
        }
        tracing::warn!(task = task.as_str(), %error, "store maintenance failed; it goes on");
    }

    pub(crate) fn mvcc(&self) -> RwLockReadGuard<'_, Mvcc> {
        self.inner.mvcc.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits one op through the pipeline and waits for its answer.
    ///
    /// # Errors
    /// etcd's errors for the op; [`StoreError::Storage`] if its entry failed to commit;
    /// [`StoreError::Closed`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{Op, OpResponse, Put};
    ///
    /// match store.submit(Op::Put(Put::new("k", "v")))? {
    ///     OpResponse::Put(r) => assert_eq!(r.revision, 2),
    ///     other => panic!("a put answered {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, op: Op) -> Result<OpResponse> {
        let Some(m) = &self.inner.metrics else {
            return self.submit_inner(op);
        };
        let kind = op_label(&op);
        let start = Instant::now();
        let r = self.submit_inner(op);
        m.record_op(kind, r.is_ok(), start.elapsed());
        r
    }

    fn submit_inner(&self, op: Op) -> Result<OpResponse> {
        let request = self.request(op)?;
        let answer = if self.inner.writer_commits {
            // Single node: a lone writer finding the batcher idle commits its entry on this
            // thread (no hand-off to the worker and back); otherwise it queues and waits.
            self.inner.batcher.submit_wait(request)
        } else {
            // Replicated (the worker proposes and waits for raft, as ever), or turned off.
            self.inner
                .batcher
                .submit(request)
                .map(|ticket| ticket.wait())
        };
        answer.map_err(|_| StoreError::Closed)?.map_err(store_error)
    }

    /// Submits every op in order and waits once for all their answers: one answer per op, in
    /// the order given, each exactly what [`Store::submit`] would have answered for it.
    ///
    /// The ops are queued together (in one entry or a few, with whatever else is queued), and
    /// the caller sleeps once, on the last op's answer: answers come in queue order, so the
    /// others are in by then. One thread hand-off for many writes, where a loop of `submit`
    /// pays one per write. They are not a transaction: each op commits or fails on its own (an
    /// invalid op is refused alone, before anything is queued; an entry that fails fails the
    /// ops in it), like separate calls from one thread; use a [`Txn`] for all-or-nothing.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{Op, OpResponse, Put};
    ///
    /// let answers = store.submit_many((0..3).map(|i| Op::Put(Put::new(format!("k{i}"), "v"))));
    /// let revisions: Vec<i64> = answers
    ///     .into_iter()
    ///     .map(|a| match a {
    ///         Ok(OpResponse::Put(r)) => r.revision,
    ///         other => panic!("a put answered {other:?}"),
    ///     })
    ///     .collect();
    /// assert_eq!(revisions, [2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_many<I: IntoIterator<Item = Op>>(&self, ops: I) -> Vec<Result<OpResponse>> {
        let start = Instant::now();
        let mut answers: Vec<Option<Result<OpResponse>>> = Vec::new();
        let mut labels = Vec::new();
        let mut tickets = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            if self.inner.metrics.is_some() {
                labels.push(op_label(&op));
            }
            let answer = match self.request(op) {
                Ok(request) => match self.inner.batcher.submit(request) {
                    Ok(ticket) => {
                        tickets.push((i, ticket));
                        None
                    }
                    Err(_) => Some(Err(StoreError::Closed)),
                },
                Err(e) => Some(Err(e)),
            };
            answers.push(answer);
        }
        // Last first: once it is answered, every earlier op is (a producer's items are flushed
        // in queue order, and a batch is answered in order), so the thread parks at most once.
        for (i, ticket) in tickets.into_iter().rev() {
            answers[i] = Some(ticket.wait().map_err(store_error));
        }
        let answers: Vec<Result<OpResponse>> = answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(StoreError::Closed)))
            .collect();
        if let Some(m) = &self.inner.metrics {
            let elapsed = start.elapsed();
            for (label, answer) in labels.into_iter().zip(&answers) {
                m.record_op(label, answer.is_ok(), elapsed);
            }
        }
        answers
    }

    /// The checks every write passes before it is queued (blocking or async alike).
    fn request(&self, op: Op) -> Result<Request> {
        if self.inner.read_only {
            return Err(self.read_only_error());
        }
        if let Err(e) = op.validate() {
            return Err(match e.reason {
                InvalidReason::EmptyKey => OpError::EmptyKey,
                _ => OpError::Invalid(e),
            }
            .into());
        }
        Ok(Request(op))
    }

    /// Submits one op through the pipeline without blocking: the op is checked and queued
    /// now, by this call, and the returned future resolves to its answer, which is exactly what
    /// [`Store::submit`] would have answered (the same errors, the same revisions), with one
    /// more error: [`StoreError::Busy`] when the write queue is full
    /// ([`BatchConfig::queue_capacity`]), where the blocking call would wait for room.
    ///
    /// No thread waits for the answer: the batcher's worker wakes the task when the op's entry
    /// is applied. The future is `Send + 'static` and needs no particular runtime (the store
    /// depends on none).
    ///
    /// **Dropping the future** (a cancelled request, a timeout, a `select!` that chose another
    /// branch) does not withdraw the op: it was queued when this returned, and it commits (or
    /// fails) as part of one entry exactly once, as if someone were waiting; only its answer is
    /// lost. An op refused before it was queued (invalid, read-only store, closed, busy) is
    /// never written.
    ///
    /// **On `Busy`**, the queue holds `queue_capacity` ops the pipeline has not reached: shed the
    /// load (a server answers etcd's `etcdserver: too many requests`, the error's own text) or
    /// retry after a delay; never retry in a tight loop.
    ///
    /// Reads ([`Store::get`], [`Store::range`]) stay synchronous: they do not go through the
    /// batcher and take only the state machine's read lock.
    ///
    /// # Errors
    /// The future resolves to [`Store::submit`]'s errors, or [`StoreError::Busy`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{Op, OpResponse, Put};
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let answer = rt.block_on(store.submit_async(Op::Put(Put::new("k", "v"))))?;
    /// match answer {
    ///     OpResponse::Put(r) => assert_eq!(r.revision, 2),
    ///     other => panic!("a put answered {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_async(&self, op: Op) -> SubmitFuture {
        let metrics = self
            .inner
            .metrics
            .as_ref()
            .map(|m| (Arc::clone(m), op_label(&op)));
        let start = Instant::now();
        let request = match self.request(op) {
            Ok(r) => r,
            Err(e) => return SubmitFuture::ready(Err(e), metrics),
        };
        match self.inner.batcher.try_submit(request) {
            Ok(ticket) => SubmitFuture::queued(
                ticket.into_future(),
                metrics.map(|(m, label)| (m, label, start)),
            ),
            Err(SubmitError::Full(_)) => SubmitFuture::ready(Err(StoreError::Busy), metrics),
            Err(SubmitError::Closed(_)) => SubmitFuture::ready(Err(StoreError::Closed), metrics),
        }
    }

    /// [`Store::put`] without blocking: queued now, answered by the future (see
    /// [`Store::submit_async`], which says what dropping it does).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let (a, b) = rt.block_on(async {
    ///     // Both are queued before either is awaited: one entry may carry them both.
    ///     let a = store.put_async("a", "1");
    ///     let b = store.put_async("b", "2");
    ///     (a.await, b.await)
    /// });
    /// assert_eq!((a?.revision, b?.revision), (2, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_async(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> SubmitFuture<PutResponse> {
        self.put_with_async(Put::new(key, value))
    }

    /// [`Store::put_with`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn put_with_async(&self, put: Put) -> SubmitFuture<PutResponse> {
        self.submit_async(Op::Put(put)).typed(|r| match r {
            OpResponse::Put(r) => Ok(r),
            other => Err(unexpected("put", &other)),
        })
    }

    /// [`Store::delete`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn delete_async(&self, key: impl Into<Bytes>) -> SubmitFuture<DeleteRangeResponse> {
        self.delete_range_async(DeleteRange::key(key))
    }

    /// [`Store::delete_range`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn delete_range_async(&self, d: DeleteRange) -> SubmitFuture<DeleteRangeResponse> {
        self.submit_async(Op::DeleteRange(d)).typed(|r| match r {
            OpResponse::DeleteRange(r) => Ok(r),
            other => Err(unexpected("delete_range", &other)),
        })
    }

    /// [`Store::txn`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{Compare, CompareOp, CompareTarget, Op, Put, Txn};
    ///
    /// let if_absent = Txn {
    ///     compares: vec![Compare::new("lock", CompareOp::Equal, CompareTarget::CreateRevision(0))],
    ///     success: vec![Op::Put(Put::new("lock", "me"))],
    ///     failure: vec![],
    /// };
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// assert!(rt.block_on(store.txn_async(if_absent.clone()))?.succeeded);
    /// assert!(!rt.block_on(store.txn_async(if_absent))?.succeeded);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn txn_async(&self, t: Txn) -> SubmitFuture<TxnResponse> {
        self.submit_async(Op::Txn(t)).typed(|r| match r {
            OpResponse::Txn(r) => Ok(r),
            other => Err(unexpected("txn", &other)),
        })
    }

    /// [`Store::compact`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn compact_async(&self, revision: i64) -> SubmitFuture<CompactResponse> {
        self.submit_async(Op::Compact(Compact { revision }))
            .typed(|r| match r {
                OpResponse::Compact(r) => Ok(r),
                other => Err(unexpected("compact", &other)),
            })
    }

    /// [`Store::lease_grant`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn lease_grant_async(&self, id: i64, ttl: i64) -> SubmitFuture<LeaseGrantResponse> {
        self.submit_async(Op::LeaseGrant(LeaseGrant { id, ttl }))
            .typed(|r| match r {
                OpResponse::LeaseGrant(r) => Ok(r),
                other => Err(unexpected("lease_grant", &other)),
            })
    }

    /// [`Store::lease_revoke`] without blocking (see [`Store::submit_async`]).
    ///
    /// # Errors
    /// As [`Store::submit_async`].
    pub fn lease_revoke_async(&self, id: i64) -> SubmitFuture<LeaseRevokeResponse> {
        self.submit_async(Op::LeaseRevoke(LeaseRevoke { id }))
            .typed(|r| match r {
                OpResponse::LeaseRevoke(r) => Ok(r),
                other => Err(unexpected("lease_revoke", &other)),
            })
    }

    /// Puts `value` at `key`.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// let r = store.put("greeting", "hello")?;
    /// assert_eq!(r.revision, 2); // a new store is at revision 1
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResponse> {
        self.put_with(Put::new(key, value))
    }

    /// A put with etcd's options (lease, prev_kv, ignore_value, ignore_lease).
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Put;
    ///
    /// store.put("k", "v1")?;
    /// let r = store.put_with(Put { prev_kv: true, ..Put::new("k", "v2") })?;
    /// assert_eq!(r.prev_kv.map(|kv| kv.value), Some("v1".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_with(&self, put: Put) -> Result<PutResponse> {
        match self.submit(Op::Put(put))? {
            OpResponse::Put(r) => Ok(r),
            other => Err(unexpected("put", &other)),
        }
    }

    /// The latest value of `key` (serializable: the applied state).
    ///
    /// # Errors
    /// A storage error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let kv = store.get("k")?.expect("just put");
    /// assert_eq!((kv.value.as_ref(), kv.version), (&b"v"[..], 1));
    /// assert!(store.get("missing")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        let start = Instant::now();
        let r = self.mvcc().get(key.as_ref()).map_err(StoreError::from);
        if let Some(m) = &self.inner.metrics {
            m.record_op(OpLabel::Range, r.is_ok(), start.elapsed());
        }
        r
    }

    /// etcd's range read (serializable).
    ///
    /// # Errors
    /// etcd's errors (compacted, future revision, empty key); a storage error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Range;
    ///
    /// for k in ["app/a", "app/b", "other"] {
    ///     store.put(k, "v")?;
    /// }
    /// let r = store.range(&Range { limit: 1, ..Range::prefix("app/") })?;
    /// assert_eq!((r.kvs.len(), r.count, r.more), (1, 2, true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range(&self, r: &Range) -> Result<RangeResponse> {
        let start = Instant::now();
        let resp = self.mvcc().range(r).map_err(StoreError::from);
        if let Some(m) = &self.inner.metrics {
            m.record_op(OpLabel::Range, resp.is_ok(), start.elapsed());
        }
        resp
    }

    /// etcd's linearizable range read: it sees every write acknowledged anywhere in the cluster
    /// before the call. Replicated, the member first gets a read index from the leader (raft's
    /// ReadIndex: a heartbeat round confirms the leader still leads) and waits until it has
    /// applied up to it, then reads its own state ([`Store::range`]); a single-node store is
    /// [`Store::range`] itself. etcd's Range without `serializable`.
    ///
    /// # Errors
    /// As [`Store::range`]; replicated, [`StoreError::Timeout`] when no leader or quorum
    /// answers within the request timeout, [`StoreError::Stopped`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let r = store.range_linearizable(&batchkv::Range::key("k"))?;
    /// assert_eq!(r.kvs.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range_linearizable(&self, r: &Range) -> Result<RangeResponse> {
        self.read_barrier()?;
        self.range(r)
    }

    /// Waits until this member's state includes every write acknowledged in the cluster before
    /// the call (raft's ReadIndex; nothing to wait for on a single node): a local read
    /// afterwards is linearizable. Returns the read index (single node: the applied index).
    ///
    /// # Errors
    /// Replicated: [`StoreError::Timeout`] (no leader, no quorum), [`StoreError::Stopped`].
    pub fn read_barrier(&self) -> Result<u64> {
        match self.inner.core.with_raft(|node| Ok(node.read_index()?)) {
            Some(r) => r,
            None => Ok(self.mvcc().applied_index()),
        }
    }

    /// A linearizable read point that needs no ReadIndex round: `Some(index)` when this store
    /// is the leader and only voter of its raft cluster (a 1-member cluster, with or without
    /// learners), has committed an entry in its term and applied everything committed; no
    /// other member can then commit anything, so a local read now is linearizable (what
    /// [`Store::read_barrier`] does then, without the raft thread). `None` otherwise, and on a
    /// single node.
    pub fn local_read_index(&self) -> Option<u64> {
        self.inner
            .core
            .with_raft(|node| Ok(node.local_read_index()))
            .and_then(|r| r.ok().flatten())
    }

    /// [`Store::read_barrier`] without blocking a thread: the read is asked now, the future
    /// answers once this member has applied up to the read index (at once on a single node, and
    /// on a 1-member cluster's leader that has applied its commit index: no ReadIndex round).
    /// Then a [`Store::range`] (or [`Store::try_range`]) is linearizable.
    ///
    /// # Errors
    /// As [`Store::read_barrier`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let index = rt.block_on(store.read_barrier_async())?;
    /// assert!(index >= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_barrier_async(&self) -> ReadBarrier {
        match self
            .inner
            .core
            .with_raft(|node| Ok(node.read_index_async()))
        {
            Some(Ok(f)) => ReadBarrier::raft(f),
            Some(Err(e)) => ReadBarrier::ready(Err(e)),
            None => ReadBarrier::ready(Ok(self.mvcc().applied_index())),
        }
    }

    /// Where [`StoreBuilder::replicated`] suggests keeping raft's storage for a store at
    /// `path`: the `raft` subdirectory of the data dir.
    pub fn raft_dir(path: impl AsRef<Path>) -> PathBuf {
        path.as_ref().join("raft")
    }

    /// Whether the store is a raft member ([`StoreBuilder::replicated`]).
    pub fn is_replicated(&self) -> bool {
        self.inner.core.with_raft(|_| Ok(())).is_some()
    }

    /// Where the transport delivers the raft messages sent to this member (`None` for a
    /// single-node store).
    pub fn raft_mailbox(&self) -> Option<batchkv_raft::Mailbox> {
        self.inner
            .core
            .with_raft(|node| Ok(node.mailbox()))
            .and_then(Result::ok)
    }

    /// How the transport tells this member the others refuse its traffic because it was
    /// removed (`RaftNode::removal_notice`; `None` for a single-node store).
    pub fn raft_removal_notice(&self) -> Option<batchkv_raft::RemovalNotice> {
        self.inner
            .core
            .with_raft(|node| Ok(node.removal_notice()))
            .and_then(Result::ok)
    }

    /// This member's view of the cluster (`None` for a single-node store, or once closed):
    /// its id, the leader, the term, the commit and applied indexes.
    pub fn raft_status(&self) -> Option<batchkv_raft::NodeStatus> {
        self.inner
            .core
            .with_raft(|node| Ok(node.status()))
            .and_then(Result::ok)
    }

    /// The cluster's membership as this member applied it (`None` for a single-node store, or
    /// once closed): voters, learners, each member's record.
    ///
    /// # Examples
    /// ```
    /// use batchkv::{LocalNetwork, NodeConfig, RaftStorage, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let data = dir.path().join("data");
    /// std::fs::create_dir_all(&data)?;
    /// let net = LocalNetwork::new(1);
    /// let mut config = NodeConfig::new(1, &[1]);
    /// config.initial_records = vec![(1, b"n1".to_vec())];
    /// let store = Store::builder(&data)
    ///     .replicated(config, RaftStorage::open_dir(Store::raft_dir(&data))?, net.transport(1))
    ///     .open()?;
    /// let m = store.membership().expect("replicated");
    /// assert_eq!((m.voters, m.initial_voters), (vec![1], vec![1]));
    /// assert_eq!(m.records.get(&1).map(Vec::as_slice), Some(&b"n1"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn membership(&self) -> Option<batchkv_raft::Membership> {
        self.inner
            .core
            .with_raft(|node| Ok(node.membership()))
            .and_then(Result::ok)
    }

    /// Proposes a membership change through raft (`RaftNode::propose_conf_change`) and waits
    /// until this member applied it; returns the membership after it. `context` becomes the
    /// member's record (empty: kept as it is).
    ///
    /// # Errors
    /// batchkv-raft's: `NotLeader` (no leader; a promotion asked of a follower),
    /// `LearnerNotReady`, `ConfChangeInProgress`, `Timeout`, `Ambiguous`, `Stopped`; `Raft`
    /// when raft refused the change, or the store is not replicated.
    ///
    /// # Examples
    /// ```
    /// use batchkv::{ConfChangeKind, LocalNetwork, NodeConfig, RaftError, RaftStorage, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let data = dir.path().join("data");
    /// std::fs::create_dir_all(&data)?;
    /// let net = LocalNetwork::new(1);
    /// let store = Store::builder(&data)
    ///     .replicated(
    ///         NodeConfig::new(1, &[1]),
    ///         RaftStorage::open_dir(Store::raft_dir(&data))?,
    ///         net.transport(1),
    ///     )
    ///     .open()?;
    /// net.register(1, store.raft_mailbox().expect("replicated"));
    /// // Node 2 as a learner, with its record (the server keeps etcd's member JSON there).
    /// let m = loop {
    ///     match store.propose_conf_change(ConfChangeKind::AddLearner, 2, b"n2".to_vec()) {
    ///         Err(RaftError::NotLeader { .. }) => {
    ///             std::thread::sleep(std::time::Duration::from_millis(50))
    ///         }
    ///         other => break other?,
    ///     }
    /// };
    /// assert_eq!((m.voters, m.learners), (vec![1], vec![2]));
    /// assert_eq!(m.records.get(&2).map(Vec::as_slice), Some(&b"n2"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn propose_conf_change(
        &self,
        kind: batchkv_raft::ConfChangeKind,
        node: u64,
        context: Vec<u8>,
    ) -> std::result::Result<batchkv_raft::Membership, batchkv_raft::RaftError> {
        self.on_raft_node(|n| n.propose_conf_change(kind, node, context))
    }

    /// Asks this member, the leader, to hand its leadership to voter `to`
    /// (`RaftNode::transfer_leader`); returns once the transfer started (watch
    /// [`Store::raft_status`] for the new leader).
    ///
    /// # Errors
    /// `NotLeader`, `Stopped`; `Raft` when the store is not replicated.
    pub fn transfer_leader(&self, to: u64) -> std::result::Result<(), batchkv_raft::RaftError> {
        self.on_raft_node(|n| n.transfer_leader(to))
    }

    /// Asks this member, the leader, to hand its leadership to the voter most up to date
    /// (`RaftNode::hand_off_leadership`): what `batchkv serve` does before it stops, as etcd.
    /// Returns the transferee once the transfer started (`None`: no other voter).
    ///
    /// # Errors
    /// `NotLeader`, `Stopped`; `Raft` when the store is not replicated.
    pub fn hand_off_leadership(&self) -> std::result::Result<Option<u64>, batchkv_raft::RaftError> {
        self.on_raft_node(|n| n.hand_off_leadership())
    }

    /// Runs `f` on the raft node: `Stopped` once it stopped, `Raft` when the store is not
    /// replicated.
    fn on_raft_node<T>(
        &self,
        f: impl FnOnce(
            &batchkv_raft::RaftNode<crate::replicated::RaftOutput>,
        ) -> std::result::Result<T, batchkv_raft::RaftError>,
    ) -> std::result::Result<T, batchkv_raft::RaftError> {
        let mut out = None;
        let ran = self.inner.core.with_raft(|n| {
            out = Some(f(n));
            Ok(())
        });
        match (ran, out) {
            (_, Some(r)) => r,
            (Some(_), None) => Err(batchkv_raft::RaftError::Stopped),
            (None, _) => Err(batchkv_raft::RaftError::Raft(
                "the store is not replicated".into(),
            )),
        }
    }

    /// Replicated: the error for a request only the leader serves, if this member is not it.
    fn leader_only(&self) -> Result<()> {
        match self.raft_status() {
            Some(s) if !s.is_leader => Err(match s.leader {
                Some(leader) => StoreError::NotLeader { leader },
                None => StoreError::NoLeader,
            }),
            _ => Ok(()),
        }
    }

    /// [`Store::range`] if it can start at once: `None`, having done nothing, when the state
    /// machine's lock is taken or awaited (an entry being applied, a maintenance step), so that
    /// a caller on an async runtime's worker can run a cheap read in place and hand only those
    /// that would wait to a blocking thread.
    ///
    /// # Errors
    /// As [`Store::range`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Range;
    ///
    /// store.put("k", "v")?;
    /// let r = Range::key("k");
    /// let resp = match store.try_range(&r) {
    ///     Some(resp) => resp?,
    ///     None => store.range(&r)?, // busy: a blocking thread would do this
    /// };
    /// assert_eq!(resp.kvs[0].value.as_ref(), b"v");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_range(&self, r: &Range) -> Option<Result<RangeResponse>> {
        let start = Instant::now();
        let mvcc = match self.inner.mvcc.try_read() {
            Ok(m) => m,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let resp = mvcc.range(r).map_err(StoreError::from);
        drop(mvcc);
        if let Some(m) = &self.inner.metrics {
            m.record_op(OpLabel::Range, resp.is_ok(), start.elapsed());
        }
        Some(resp)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// assert_eq!(store.delete("k")?.deleted, 1);
    /// assert_eq!(store.delete("k")?.deleted, 0); // nothing to delete: no new revision
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: impl Into<Bytes>) -> Result<DeleteRangeResponse> {
        self.delete_range(DeleteRange::key(key))
    }

    /// etcd's DeleteRange.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::DeleteRange;
    ///
    /// store.put("tmp/1", "v")?;
    /// store.put("tmp/2", "v")?;
    /// let r = store.delete_range(DeleteRange { prev_kv: true, ..DeleteRange::prefix("tmp/") })?;
    /// assert_eq!((r.deleted, r.prev_kvs.len()), (2, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range(&self, d: DeleteRange) -> Result<DeleteRangeResponse> {
        match self.submit(Op::DeleteRange(d))? {
            OpResponse::DeleteRange(r) => Ok(r),
            other => Err(unexpected("delete_range", &other)),
        }
    }

    /// etcd's Txn.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{Compare, CompareOp, CompareTarget, Op, Put, Txn};
    ///
    /// // Create "lock" only if it does not exist (its create revision is 0).
    /// let if_absent = Txn {
    ///     compares: vec![Compare::new("lock", CompareOp::Equal, CompareTarget::CreateRevision(0))],
    ///     success: vec![Op::Put(Put::new("lock", "me"))],
    ///     failure: vec![],
    /// };
    /// assert!(store.txn(if_absent.clone())?.succeeded);
    /// assert!(!store.txn(if_absent)?.succeeded);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn txn(&self, t: Txn) -> Result<TxnResponse> {
        match self.submit(Op::Txn(t))? {
            OpResponse::Txn(r) => Ok(r),
            other => Err(unexpected("txn", &other)),
        }
    }

    /// Compacts history at or below `revision`.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::{OpError, Range, StoreError};
    ///
    /// let first = store.put("k", "v1")?.revision;
    /// store.put("k", "v2")?;
    /// store.compact(first + 1)?;
    /// let old = store.range(&Range { revision: first, ..Range::key("k") });
    /// assert!(matches!(old, Err(StoreError::Op(OpError::Compacted { .. }))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self, revision: i64) -> Result<CompactResponse> {
        match self.submit(Op::Compact(Compact { revision }))? {
            OpResponse::Compact(r) => Ok(r),
            other => Err(unexpected("compact", &other)),
        }
    }

    /// Grants a lease of `ttl` seconds (id 0: allocated).
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Put;
    ///
    /// let lease = store.lease_grant(0, 30)?; // id 0: the store picks one
    /// store.put_with(Put { lease: lease.id, ..Put::new("session", "alive") })?;
    /// assert_eq!(store.lease_time_to_live(lease.id, true).keys, vec!["session"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse> {
        match self.submit(Op::LeaseGrant(LeaseGrant { id, ttl }))? {
            OpResponse::LeaseGrant(r) => Ok(r),
            other => Err(unexpected("lease_grant", &other)),
        }
    }

    /// Revokes a lease, deleting its keys at one revision.
    ///
    /// # Errors
    /// As [`Store::submit`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Put;
    ///
    /// let lease = store.lease_grant(0, 30)?;
    /// store.put_with(Put { lease: lease.id, ..Put::new("a", "1") })?;
    /// store.put_with(Put { lease: lease.id, ..Put::new("b", "1") })?;
    /// store.lease_revoke(lease.id)?; // both keys go, at one revision
    /// assert!(store.get("a")?.is_none() && store.get("b")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        match self.submit(Op::LeaseRevoke(LeaseRevoke { id }))? {
            OpResponse::LeaseRevoke(r) => Ok(r),
            other => Err(unexpected("lease_revoke", &other)),
        }
    }

    /// Refreshes a lease's deadline; returns its TTL.
    ///
    /// # Errors
    /// Lease not found; replicated, on a member that is not the leader,
    /// [`StoreError::NotLeader`] or [`StoreError::NoLeader`] (send keep-alives to the leader).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// let lease = store.lease_grant(0, 30)?;
    /// assert_eq!(store.lease_keep_alive(lease.id)?, 30);
    /// assert!(store.lease_keep_alive(lease.id + 1).is_err()); // lease not found
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        // Replicated, only the leader's deadlines decide expiry: a keep-alive elsewhere would
        // be a false success.
        self.leader_only()?;
        Ok(self
            .inner
            .mvcc
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .keep_alive(id)?)
    }

    /// A lease's remaining and granted TTL (and keys); TTL -1 if it does not exist.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// let lease = store.lease_grant(0, 30)?;
    /// let ttl = store.lease_time_to_live(lease.id, false);
    /// assert_eq!(ttl.granted_ttl, 30);
    /// assert!(ttl.ttl > 0 && ttl.ttl <= 30);
    /// assert_eq!(store.lease_time_to_live(12345, false).ttl, -1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> LeaseTimeToLive {
        self.mvcc().time_to_live(id, keys)
    }

    /// Every lease id.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// let a = store.lease_grant(0, 30)?.id;
    /// let b = store.lease_grant(0, 30)?.id;
    /// assert_eq!(store.leases(), vec![a.min(b), a.max(b)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn leases(&self) -> Vec<i64> {
        self.mvcc().leases()
    }

    /// Starts a watch: history from `req`'s start revision, then live events (see [`Watcher`]).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use std::time::Duration;
    /// use batchkv::{EventKind, WatchRequest};
    ///
    /// let mut w = store.watch(WatchRequest::key("k"));
    /// store.put("k", "v")?;
    /// let resp = w.recv_timeout(Duration::from_secs(10))?.expect("an event");
    /// assert_eq!(resp.events[0].kind, EventKind::Put);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self, req: WatchRequest) -> Watcher {
        let start = Instant::now();
        let w = self.mvcc().watch(req);
        if let Some(m) = &self.inner.metrics {
            m.record_op(OpLabel::Watch, true, start.elapsed());
        }
        w
    }

    /// The store's metrics, if it collects them ([`StoreBuilder::metrics`]).
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_deref()
    }

    /// The Prometheus text exposition of the store's metrics, with its state (revision, keys,
    /// leases, watchers, queue, RocksDB figures, WAL syncs) sampled now; `None` without metrics.
    ///
    /// # Examples
    /// ```
    /// use batchkv::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::builder(dir.path()).metrics(true).open()?;
    /// store.put("k", "v")?;
    /// let text = store.metrics_text().expect("metrics are on");
    /// assert!(text.contains("batchkv_ops_total{op=\"put\",outcome=\"ok\"} 1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics_text(&self) -> Option<String> {
        let m = self.inner.metrics.as_ref()?;
        m.set_state(&self.state_sample());
        Some(m.encode())
    }

    fn state_sample(&self) -> StateSample {
        let mut s = {
            let m = self.mvcc();
            StateSample {
                revision: m.current_revision(),
                compacted_revision: m.compacted_revision().unwrap_or(-1),
                keys: m.indexed_keys() as u64,
                leases: m.leases().len() as u64,
                watchers: m.watcher_count() as u64,
                ..StateSample::default()
            }
        };
        s.queue_depth = self.inner.batcher.stats().queue_depth as u64;
        if let Some(w) = &self.inner.wal {
            let f = w.stats();
            s.wal_syncs = f.syncs;
            s.wal_unsynced_bytes = f.unsynced_bytes;
        }
        if let Ok(e) = self.inner.engine.stats() {
            let t = e.totals();
            s.engine = vec![
                ("sst_bytes".into(), t.sst_bytes as f64),
                ("memtable_bytes".into(), t.memtable_bytes as f64),
                (
                    "pending_compaction_bytes".into(),
                    t.pending_compaction_bytes as f64,
                ),
                ("running_compactions".into(), t.running_compactions as f64),
                ("estimated_keys".into(), t.estimated_keys as f64),
                ("block_cache_usage_bytes".into(), e.block_cache_usage as f64),
            ];
            if let Some(tk) = &e.tickers {
                s.engine.extend([
                    (
                        "block_cache_hit_ratio".into(),
                        tk.block_cache_hit_rate().unwrap_or(0.0),
                    ),
                    ("stall_micros".into(), tk.stall_micros as f64),
                    ("compactions".into(), tk.compactions as f64),
                    ("compaction_micros".into(), tk.compaction_micros as f64),
                    ("rocksdb_wal_syncs".into(), tk.wal_syncs as f64),
                    ("bytes_written".into(), tk.bytes_written as f64),
                ]);
            }
        }
        s
    }

    /// Serves the metrics over HTTP at `GET /metrics` (and `GET /health`) on `addr`, e.g.
    /// `127.0.0.1:9100` (bind elsewhere only on purpose). The server holds the store weakly and
    /// stops when the returned handle is dropped.
    ///
    /// # Errors
    /// The store collects no metrics, or `addr` cannot be bound.
    pub fn serve_metrics(&self, addr: &str) -> Result<MetricsServer> {
        if self.inner.metrics.is_none() {
            return Err(StoreError::Config(
                "this store collects no metrics: open it with StoreBuilder::metrics(true)".into(),
            ));
        }
        let weak = Arc::downgrade(&self.inner);
        batchkv_metrics::serve(addr, move || {
            weak.upgrade()
                .and_then(|inner| Store { inner }.metrics_text())
                .unwrap_or_default()
        })
        .map_err(|e| StoreError::Config(e.to_string()))
    }

    /// The current revision.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// assert_eq!(store.current_revision(), 1);
    /// store.put("k", "v")?;
    /// assert_eq!(store.current_revision(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn current_revision(&self) -> i64 {
        self.mvcc().current_revision()
    }

    /// Writes a consistent copy of the store to `dir` (a RocksDB checkpoint: every column
    /// family at one point, so whole entries only). Open it with [`Store::open`].
    ///
    /// # Errors
    /// The engine's checkpoint errors (e.g. `dir` exists).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let copy = dir.path().join("copy");
    /// store.checkpoint(&copy)?;
    /// let from_copy = batchkv::Store::open(&copy)?;
    /// assert!(from_copy.get("k")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.inner
            .engine
            .create_checkpoint(dir)
            .map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Makes every acknowledged write durable now: syncs the WAL (`Wal`, and a replicated
    /// `Sync` store, whose MVCC writes rely on raft's fsynced log), or flushes the memtables
    /// (`None`); a single-node `Sync` store has nothing to do.
    ///
    /// # Errors
    /// A storage error (which halts the store, as a failed commit does, unless the disk is
    /// full); [`StoreError::Halted`].
    pub fn flush(&self) -> Result<()> {
        self.inner.halt.check()?;
        let e = &self.inner.engine;
        let r = match (&self.inner.durability, &self.inner.wal) {
            (Durability::Wal { .. }, Some(w)) => w.sync_now(e),
            (Durability::Sync, _) if self.is_replicated() => e
                .flush_wal(true)
                .inspect_err(|err| self.inner.halt.on_sync_error("syncing the WAL", err)),
            (Durability::None, _) if !self.inner.read_only => e
                .flush()
                .inspect_err(|err| self.inner.halt.on_sync_error("flushing the memtables", err)),
            _ => Ok(()),
        };
        r.map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Why the store takes no more writes, if a storage failure stopped it (fail-stop:
    /// [`StoreError::Halted`]); `None` while it takes writes.
    pub fn halted(&self) -> Option<String> {
        self.inner.halt.cause()
    }

    /// The store's data dir (as given to [`Store::open`]). Its files are RocksDB's; a caller
    /// may keep small files of its own there (the server's persisted alarm), named so they
    /// cannot clash with RocksDB's (`batchkv-...`).
    pub fn path(&self) -> &Path {
        self.inner.engine.path()
    }

    /// Whether the store was opened read-only ([`StoreBuilder::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn read_only_error(&self) -> StoreError {
        StoreError::Storage(Arc::new(
            EngineError::ReadOnly {
                path: self.inner.engine.path().to_path_buf(),
            }
            .into(),
        ))
    }

    /// etcd's HashKV at `rev` (0: the current revision): a CRC-32C over the key space's
    /// history up to `rev`, equal for every copy of the same history, and equal to what etcd
    /// itself returns for the same requests (see [`batchkv_mvcc::Mvcc::hash_kv`]).
    ///
    /// # Errors
    /// etcd's compacted and future-revision errors; a storage error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let copy = dir.path().join("copy");
    /// store.checkpoint(&copy)?;
    /// let other = batchkv::Store::open(&copy)?;
    /// assert_eq!(other.hash_kv(0)?, store.hash_kv(0)?); // same history, same digest
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        Ok(self.mvcc().hash_kv(rev)?)
    }

    /// Checks the whole stored state (checksums of every block, meta values, contiguous
    /// history, the index against the records, leases against keys) and returns what it read,
    /// with the HashKV digest at the current revision: `batchkv check` prints it. It waits for
    /// the entry in flight to finish and reads everything with none in flight (the log lock
    /// and the state machine's read lock), so writes wait until it is done.
    ///
    /// # Errors
    /// The first problem found ([`batchkv_mvcc::Mvcc::check`]): RocksDB's corruption error naming
    /// the file, or [`crate::MvccError::Corrupt`] saying what disagrees with what.
    pub fn check(&self) -> Result<CheckReport> {
        Ok(self.inner.core.quiescent(Mvcc::check)?)
    }

    /// Keeps the newest `keep` versions of every key and deletes the rest from storage (see
    /// [`batchkv_mvcc::Mvcc::prune_old_versions`]), with no entry in flight. Local
    /// maintenance: it is not an entry of the log.
    ///
    /// # Errors
    /// A storage error (what committed before it stays pruned); [`StoreError::Halted`].
    pub fn prune_old_versions(&self, keep: usize) -> Result<PruneReport> {
        if self.inner.read_only {
            return Err(self.read_only_error());
        }
        self.inner.halt.check()?;
        let core = &self.inner.core;
        core.exclusive(|m| m.prune_old_versions(keep))
            .inspect_err(|e| core.halt.on_write_error("pruning old versions", e))
            .map_err(StoreError::from)
    }

    /// etcd's Defragment: finishes the physical compaction still pending (the records below
    /// the compacted revision no read can reach, deleted a step at a time between entries),
    /// then has RocksDB compact every column family over its whole range, the bottommost level
    /// too ([`batchkv_engine::Engine::compact_all`]), so deleted data and tombstones leave the
    /// files and the store's size ([`StoreStats::engine`]) shrinks to its live data. Blocking,
    /// for as long as RocksDB takes; writes wait only for each compaction step, not for RocksDB.
    ///
    /// # Errors
    /// The store is read-only; a storage error; [`StoreError::Halted`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// store.defragment()?;
    /// assert!(store.get("k")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defragment(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(self.read_only_error());
        }
        self.inner.halt.check()?;
        let core = &self.inner.core;
        // One bounded step per turn of the log lock, so writes interleave.
        loop {
            let done = core
                .exclusive(|m| m.compact_step(batchkv_mvcc::DEFAULT_COMPACTION_BATCH))
                .inspect_err(|e| core.halt.on_write_error("compacting old revisions", e))?;
            if done {
                break;
            }
        }
        self.inner
            .engine
            .compact_all()
            .map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Figures for monitoring.
    ///
    /// # Errors
    /// The engine's statistics errors.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let s = store.stats()?;
    /// assert_eq!((s.revision, s.indexed_keys, s.batcher.items), (2, 1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<StoreStats> {
        let engine = self
            .inner
            .engine
            .stats()
            .map_err(|e| StoreError::Storage(Arc::new(e.into())))?;
        let m = self.mvcc();
        Ok(StoreStats {
            revision: m.current_revision(),
            compacted: m.compacted_revision(),
            applied_index: m.applied_index(),
            indexed_keys: m.indexed_keys(),
            leases: m.leases().len(),
            batcher: self.inner.batcher.stats(),
            flush: self.inner.wal.as_ref().map(|w| w.stats()),
            engine,
            maintenance_errors: self.inner.maintenance_errors.load(Ordering::Relaxed),
            halted: self.inner.halt.cause(),
        })
    }

    /// The bytes the data takes on disk and in memory: RocksDB's SST and memtable bytes, the
    /// same figure as `stats()?.engine.totals()`' `sst_bytes + memtable_bytes` (etcd's
    /// `dbSize`), read from two RocksDB properties per column family, cheap enough for a space
    /// quota to check on the write path.
    ///
    /// # Errors
    /// A RocksDB property error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("k", "v")?;
    /// let t = store.stats()?.engine.totals();
    /// assert_eq!(store.space_used()?, t.sst_bytes + t.memtable_bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn space_used(&self) -> Result<u64> {
        self.inner
            .engine
            .space_used()
            .map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Loads many puts fast: `chunk` puts per entry (one WriteBatch each), through the same
    /// codec, log and state machine as every write, bypassing only the batcher's queue. On
    /// failure, exactly the first `committed` puts are in the store.
    ///
    /// # Errors
    /// [`BulkError`] with the committed count.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::Bytes;
    ///
    /// let puts = (0..10_000).map(|i| (Bytes::from(format!("key/{i:05}")), Bytes::from("v")));
    /// let report = store.bulk_load(puts, 1_000)?;
    /// assert_eq!((report.committed, report.entries), (10_000, 10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bulk_load<I>(&self, puts: I, chunk: usize) -> Result<BulkReport, BulkError>
    where
        I: IntoIterator<Item = (Bytes, Bytes)>,
    {
        let chunk = chunk.clamp(1, MAX_BULK_CHUNK);
        self.bulk_load_with(puts.into_iter(), |_| chunk, |_, _| {})
    }

    /// [`Store::bulk_load`] with the chunk size steered by the batcher's [`ChunkController`]
    /// (throughput variance over a sliding window, the reference system's adaptive writes),
    /// configured by `config` (typically [`AdaptiveBatchConfig::default_for`] the number of
    /// puts); also returns the controller's report. Reads no environment.
    ///
    /// # Errors
    /// [`BulkError`] with the committed count; an invalid `config` before anything is written.
    pub fn bulk_load_adaptive(
        &self,
        puts: Vec<(Bytes, Bytes)>,
        config: AdaptiveBatchConfig,
    ) -> Result<(BulkReport, AdaptiveBatchResult), BulkError> {
        let ctl = std::cell::RefCell::new(ChunkController::new(config).map_err(|e| BulkError {
            committed: 0,
            error: StoreError::Config(e.to_string()),
        })?);
        let report = self.bulk_load_with(
            puts.into_iter(),
            |_| ctl.borrow().next_chunk_size().clamp(1, MAX_BULK_CHUNK),
            |len, took| ctl.borrow_mut().record(len, took),
        )?;
        let result = ctl.borrow().report();
        Ok((report, result))
    }

    fn bulk_load_with(
        &self,
        puts: impl Iterator<Item = (Bytes, Bytes)>,
        next_chunk: impl Fn(usize) -> usize,
        mut record: impl FnMut(usize, Duration),
    ) -> Result<BulkReport, BulkError> {
        let max_request = self.mvcc().config().max_request_bytes;
        let mut report = BulkReport {
            committed: 0,
            entries: 0,
            revision: self.current_revision(),
        };
        let mut buf = BytesMut::new();
        let mut ops: Vec<Op> = Vec::new();
        let mut iter = puts.peekable();
        while iter.peek().is_some() {
            let chunk = next_chunk(report.committed);
            ops.clear();
            ops.extend(
                iter.by_ref()
                    .take(chunk)
                    .map(|(k, v)| Op::Put(Put::new(k, v))),
            );
            let fail = |error: StoreError, committed| BulkError { committed, error };
            // Refuse the chunk before committing any of it, so the committed puts stay a prefix.
            if let Some(e) = ops.iter().find_map(|op| check_bulk_put(op, max_request)) {
                return Err(fail(e.into(), report.committed));
            }
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(fail(StoreError::Closed, report.committed));
            }
            let start = Instant::now();
            let applied = self
                .inner
                .core
                .commit(&ops, &mut buf)
                .map_err(|e| fail(e, report.committed))?;
            record(ops.len(), start.elapsed());
            if let Some(e) = applied.results.iter().find_map(|r| r.as_ref().err()) {
                // Checked above; a refusal here means the checks are out of date (the rest of
                // this chunk did commit).
                return Err(fail(
                    StoreError::Internal(format!("bulk put refused after its checks: {e}")),
                    report.committed,
                ));
            }
            report.committed += ops.len();
            report.entries += 1;
            report.revision = applied.revision;
        }
        Ok(report)
    }

    /// Makes every storage write after the next `successful` ones fail (an injected engine
    /// error), until [`Store::clear_injected_failures`]: for tests of failure handling.
    #[cfg(feature = "fault-injection")]
    pub fn inject_write_failures_after(&self, successful: u64) {
        self.inner.engine.inject_write_failures_after(successful);
    }

    /// Stops injecting failures.
    #[cfg(feature = "fault-injection")]
    pub fn clear_injected_failures(&self) {
        self.inner.engine.clear_injected_failures();
    }

    /// Closes the store: every queued write is applied and answered, the threads stop, and the
    /// data is made durable as the mode promises (`Wal`: synced; `None`: memtables flushed).
    /// Dropping the last handle does the same. Later writes answer [`StoreError::Closed`];
    /// reads still work. The database's files stay locked until the last handle and every
    /// [`Watcher`] are dropped.
    ///
    /// # Errors
    /// The final sync or flush failed.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// use batchkv::StoreError;
    ///
    /// store.put("k", "v")?;
    /// store.close()?;
    /// assert!(matches!(store.put("k", "w"), Err(StoreError::Closed)));
    /// assert!(store.get("k")?.is_some()); // reads still work
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

/// What the MVCC would refuse a bulk put for.
fn check_bulk_put(op: &Op, max_request: usize) -> Option<OpError> {
    let Op::Put(p) = op else { return None };
    if p.key.is_empty() {
        return Some(OpError::EmptyKey);
    }
    let size = op.encoded_len();
    (size > max_request).then_some(OpError::RequestTooLarge {
        size,
        max: max_request,
    })
}

/// The metrics label of an op.
fn op_label(op: &Op) -> OpLabel {
    match op {
        Op::Put(_) => OpLabel::Put,
        Op::DeleteRange(_) => OpLabel::Delete,
        Op::Txn(_) => OpLabel::Txn,
        Op::Range(_) => OpLabel::Range,
        Op::LeaseGrant(_) | Op::LeaseRevoke(_) => OpLabel::Lease,
        Op::Compact(_) => OpLabel::Compact,
    }
}

fn unexpected(what: &str, got: &OpResponse) -> StoreError {
    StoreError::Internal(format!("{what} answered with {got:?}"))
}

//! [`Store`] and [`StoreBuilder`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use batchkv_batcher::{
    AdaptiveBatchConfig, AdaptiveBatchResult, BatchConfig, BatchError, Batcher, ChunkController,
    Shutdown, Stats as BatcherStats,
};
use batchkv_batcher::{FlushInfo, FlushObserver};
use batchkv_codec::{
    Compact, DeleteRange, InvalidReason, LeaseGrant, LeaseRevoke, Op, Put, Range, Txn,
};
use batchkv_engine::{Engine, EngineConfig, EngineStats, Profile, Tuning};
use batchkv_metrics::{Metrics, MetricsServer, StateSample};
use batchkv_mvcc::{
    AutoCompaction, AutoCompactor, CompactResponse, DeleteRangeResponse, KeyValue,
    LeaseGrantResponse, LeaseRevokeResponse, LeaseTimeToLive, Mvcc, MvccConfig, OpError,
    OpResponse, PutResponse, RangeResponse, TxnResponse, WatchRequest, Watcher,
};
use bytes::{Bytes, BytesMut};

use crate::durability::{Durability, FlushStats, WalSync};
use crate::error::{Result, StoreError};
use crate::log::{LocalLog, Log};
use crate::pipeline::{Core, Pipeline, Request};

/// How to open a [`Store`]. [`Store::open`] uses the defaults.
pub struct StoreBuilder {
    path: PathBuf,
    durability: Durability,
    batch: BatchConfig,
    tuning: Tuning,
    log: Option<Box<dyn Log>>,
    lease_check: Duration,
    auto_compaction: Option<AutoCompaction>,
    mvcc: Option<Box<dyn FnOnce(MvccConfig) -> MvccConfig>>,
    metrics: bool,
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
            lease_check: Duration::from_millis(500),
            auto_compaction: None,
            mvcc: None,
            metrics: false,
        }
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
        let mut mc = MvccConfig::new(&self.path).write_mode(self.durability.write_mode());
        mc.engine = EngineConfig::new(&self.path).tuning(self.tuning);
        if let Some(f) = self.mvcc {
            mc = f(mc);
        }
        let mvcc = Mvcc::open(mc)?;
        let engine = mvcc.shared_engine();
        let next_index = mvcc.applied_index() + 1;
        let compacted = mvcc.compacted_revision().unwrap_or(-1);
        let mvcc = Arc::new(RwLock::new(mvcc));
        let wal = match self.durability {
            Durability::Wal { flush } => Some(WalSync::new(flush)),
            _ => None,
        };
        let log = self
            .log
            .unwrap_or_else(|| Box::new(LocalLog::starting_at(next_index)));
        let metrics = self.metrics.then(|| Arc::new(Metrics::new()));
        let core = Arc::new(Core::new(
            Arc::clone(&mvcc),
            log,
            wal.clone(),
            metrics.clone(),
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
        let inner = Arc::new(Inner {
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
        });
        let mut threads = Vec::new();
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
        match self.durability {
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
                let (expired, current) = {
                    let m = store.mvcc();
                    (m.expired_leases(now), m.current_revision())
                };
                // Revoked through the pipeline, like any write: every replica applies it.
                for id in expired {
                    match store.lease_revoke(id) {
                        Ok(_) | Err(StoreError::Op(OpError::LeaseNotFound { .. })) => {}
                        Err(_) => break,
                    }
                }
                if let Some(rev) = compactor.as_mut().and_then(|c| c.poll(now, current)) {
                    let _ = store.compact(rev);
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
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        StoreBuilder::new(path.as_ref()).open()
    }

    /// A builder for everything else.
    pub fn builder(path: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder::new(path)
    }

    pub(crate) fn mvcc(&self) -> RwLockReadGuard<'_, Mvcc> {
        self.inner.mvcc.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits one op through the pipeline and waits for its answer.
    ///
    /// # Errors
    /// etcd's errors for the op; [`StoreError::Storage`] if its entry failed to commit;
    /// [`StoreError::Closed`].
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
        if let Err(e) = op.validate() {
            return Err(match e.reason {
                InvalidReason::EmptyKey => OpError::EmptyKey,
                _ => OpError::Invalid(e),
            }
            .into());
        }
        let ticket = self
            .inner
            .batcher
            .submit(Request(op))
            .map_err(|_| StoreError::Closed)?;
        ticket.wait().map_err(|e| match e {
            BatchError::Item(e) => e,
            BatchError::Batch(e) => (*e).clone(),
            BatchError::Closed => StoreError::Closed,
            other => StoreError::Internal(other.to_string()),
        })
    }

    /// Puts `value` at `key`.
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResponse> {
        self.put_with(Put::new(key, value))
    }

    /// A put with etcd's options (lease, prev_kv, ignore_value, ignore_lease).
    ///
    /// # Errors
    /// As [`Store::submit`].
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
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        let start = Instant::now();
        let r = self.mvcc().get(key.as_ref()).map_err(StoreError::from);
        if let Some(m) = &self.inner.metrics {
            m.record_op("range", r.is_ok(), start.elapsed());
        }
        r
    }

    /// etcd's range read (serializable).
    ///
    /// # Errors
    /// etcd's errors (compacted, future revision, empty key); a storage error.
    pub fn range(&self, r: &Range) -> Result<RangeResponse> {
        let start = Instant::now();
        let resp = self.mvcc().range(r).map_err(StoreError::from);
        if let Some(m) = &self.inner.metrics {
            m.record_op("range", resp.is_ok(), start.elapsed());
        }
        resp
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub fn delete(&self, key: impl Into<Bytes>) -> Result<DeleteRangeResponse> {
        self.delete_range(DeleteRange::key(key))
    }

    /// etcd's DeleteRange.
    ///
    /// # Errors
    /// As [`Store::submit`].
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
    pub fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        match self.submit(Op::LeaseRevoke(LeaseRevoke { id }))? {
            OpResponse::LeaseRevoke(r) => Ok(r),
            other => Err(unexpected("lease_revoke", &other)),
        }
    }

    /// Refreshes a lease's deadline; returns its TTL.
    ///
    /// # Errors
    /// Lease not found.
    pub fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        Ok(self
            .inner
            .mvcc
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .keep_alive(id)?)
    }

    /// A lease's remaining and granted TTL (and keys); TTL -1 if it does not exist.
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> LeaseTimeToLive {
        self.mvcc().time_to_live(id, keys)
    }

    /// Every lease id.
    pub fn leases(&self) -> Vec<i64> {
        self.mvcc().leases()
    }

    /// Starts a watch (see [`batchkv_mvcc::Mvcc::watch`]).
    pub fn watch(&self, req: WatchRequest) -> Watcher {
        let start = Instant::now();
        let w = self.mvcc().watch(req);
        if let Some(m) = &self.inner.metrics {
            m.record_op("watch", true, start.elapsed());
        }
        w
    }

    /// The store's metrics, if it collects them ([`StoreBuilder::metrics`]).
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_deref()
    }

    /// The Prometheus text exposition of the store's metrics, with its state (revision, keys,
    /// leases, watchers, queue, RocksDB figures, WAL syncs) sampled now; `None` without metrics.
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
    pub fn current_revision(&self) -> i64 {
        self.mvcc().current_revision()
    }

    /// Writes a consistent copy of the store to `dir` (a RocksDB checkpoint: every column
    /// family at one point, so whole entries only). Open it with [`Store::open`].
    ///
    /// # Errors
    /// The engine's checkpoint errors (e.g. `dir` exists).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.inner
            .engine
            .create_checkpoint(dir)
            .map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Makes every acknowledged write durable now: syncs the WAL (`Wal`), or flushes the
    /// memtables (`None`); `Sync` has nothing to do.
    ///
    /// # Errors
    /// A storage error.
    pub fn flush(&self) -> Result<()> {
        let e = &self.inner.engine;
        let r = match (&self.inner.durability, &self.inner.wal) {
            (Durability::Wal { .. }, Some(w)) => w.sync_now(e),
            (Durability::None, _) => e.flush(),
            _ => Ok(()),
        };
        r.map_err(|e| StoreError::Storage(Arc::new(e.into())))
    }

    /// Figures for monitoring.
    ///
    /// # Errors
    /// The engine's statistics errors.
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
        })
    }

    /// Loads many puts fast: `chunk` puts per entry (one WriteBatch each), through the same
    /// codec, log and state machine as every write, bypassing only the batcher's queue. On
    /// failure, exactly the first `committed` puts are in the store.
    ///
    /// # Errors
    /// [`BulkError`] with the committed count.
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

    /// Closes the store: every queued write is applied and answered, the threads stop, and the
    /// data is made durable as the mode promises (`Wal`: synced; `None`: memtables flushed).
    /// Dropping the last handle does the same. Later writes answer [`StoreError::Closed`];
    /// reads still work. The database's files stay locked until the last handle and every
    /// [`batchkv_mvcc::Watcher`] are dropped.
    ///
    /// # Errors
    /// The final sync or flush failed.
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
fn op_label(op: &Op) -> &'static str {
    match op {
        Op::Put(_) => "put",
        Op::DeleteRange(_) => "delete",
        Op::Txn(_) => "txn",
        Op::Range(_) => "range",
        Op::LeaseGrant(_) | Op::LeaseRevoke(_) => "lease",
        Op::Compact(_) => "compact",
    }
}

fn unexpected(what: &str, got: &OpResponse) -> StoreError {
    StoreError::Internal(format!("{what} answered with {got:?}"))
}

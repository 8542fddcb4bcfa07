//! Durability modes, and the WAL syncer of [`Durability::Wal`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use batchkv_engine::{Engine, WriteMode};
use batchkv_metrics::{MaintenanceTask, Metrics};

use crate::halt::Halt;

/// What an acknowledged write survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every group commit is fsynced before anyone is answered: an acknowledged write survives
    /// a process crash and a power loss. The default.
    Sync,
    /// The WAL is written with every group commit (an acknowledged write survives a process
    /// crash) and fsynced in the background on two triggers, time and amount
    /// ([`AutoFlushConfig`]): a power loss loses at most what was written since the last sync.
    Wal {
        /// When the WAL is synced.
        flush: AutoFlushConfig,
    },
    /// No WAL: writes live in RocksDB's memtables until a flush ([`crate::Store::flush`], a
    /// memtable filling up, or [`crate::Store::close`]). A crash loses what was not flushed;
    /// what survives is whole entries only.
    None,
}

impl Durability {
    pub(crate) fn write_mode(&self) -> WriteMode {
        match self {
            Durability::Sync => WriteMode::SYNC,
            Durability::Wal { .. } => WriteMode::WAL,
            Durability::None => WriteMode::NO_WAL,
        }
    }
}

/// When [`Durability::Wal`] syncs the WAL: whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoFlushConfig {
    /// At most this long after a write.
    pub interval: Duration,
    /// As soon as this many bytes of entries are unsynced.
    pub bytes: usize,
}

impl Default for AutoFlushConfig {
    /// 100 ms or 4 MiB.
    fn default() -> Self {
        AutoFlushConfig {
            interval: Duration::from_millis(100),
            bytes: 4 << 20,
        }
    }
}

/// What the WAL syncer has done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// WAL syncs done.
    pub syncs: u64,
    /// Of which triggered by the interval.
    pub by_interval: u64,
    /// Of which triggered by the amount of unsynced data.
    pub by_bytes: u64,
    /// Of which at close or by an explicit flush.
    pub explicit: u64,
    /// Entry bytes made durable.
    pub bytes_synced: u64,
    /// Bytes written but not synced yet.
    pub unsynced_bytes: u64,
    /// How long the last sync took.
    pub last_sync: Duration,
    /// Syncs that failed. A failed sync halts the store (fail-stop: see
    /// [`crate::StoreError::Halted`]), except on a full disk, where it is retried at the next
    /// trigger.
    pub errors: u64,
}

#[derive(Default)]
struct State {
    unsynced: u64,
    first_unsynced: Option<Instant>,
    stop: bool,
    stats: FlushStats,
}

/// The background WAL syncer.
pub(crate) struct WalSync {
    state: Mutex<State>,
    wake: Condvar,
    config: AutoFlushConfig,
    /// The store's count of background failures (shared with the maintenance thread).
    errors: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
    halt: Arc<Halt>,
}

impl WalSync {
    pub(crate) fn new(
        config: AutoFlushConfig,
        errors: Arc<AtomicU64>,
        metrics: Option<Arc<Metrics>>,
        halt: Arc<Halt>,
    ) -> Arc<Self> {
        Arc::new(WalSync {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            config,
            errors,
            metrics,
            halt,
        })
    }

    fn failed(&self, error: &batchkv_engine::EngineError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.record_maintenance_error(MaintenanceTask::WalSync);
        }
        tracing::error!(%error, "WAL sync failed; acknowledged writes since the last sync are not yet durable against a power loss");
        // A retried fsync that succeeds proves nothing about the pages the failed one could
        // not write: stop taking writes.
        self.halt.on_sync_error("syncing the WAL", error);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `bytes` of entries written to the WAL, not synced.
    pub(crate) fn written(&self, bytes: usize) {
        let mut st = self.lock();
        st.unsynced += bytes as u64;
        st.first_unsynced.get_or_insert_with(Instant::now);
        if st.unsynced >= self.config.bytes as u64 {
            self.wake.notify_one();
        }
    }

    pub(crate) fn stats(&self) -> FlushStats {
        let st = self.lock();
        FlushStats {
            unsynced_bytes: st.unsynced,
            ..st.stats.clone()
        }
    }

    /// Syncs now (close, `Store::flush`).
    pub(crate) fn sync_now(&self, engine: &Engine) -> Result<(), batchkv_engine::EngineError> {
        let pending = std::mem::take(&mut self.lock().unsynced);
        let start = Instant::now();
        let r = engine.flush_wal(true);
        let mut st = self.lock();
        st.first_unsynced = None;
        match &r {
            Ok(()) => {
                st.stats.syncs += 1;
                st.stats.explicit += 1;
                st.stats.bytes_synced += pending;
                st.stats.last_sync = start.elapsed();
            }
            Err(e) => {
                st.stats.errors += 1;
                st.unsynced += pending;
                drop(st);
                self.failed(e);
            }
        }
        r
    }

    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// Starts the syncing thread.
    pub(crate) fn spawn(self: &Arc<Self>, engine: Arc<Engine>) -> std::io::Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("batchkv-wal-sync".into())
            .spawn(move || me.run(&engine))
    }

    fn run(&self, engine: &Engine) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            let due_by_bytes = st.unsynced >= self.config.bytes as u64;
            let due_by_time = st
                .first_unsynced
                .is_some_and(|t| t.elapsed() >= self.config.interval);
            if !(due_by_bytes || due_by_time) {
                let wait = st.first_unsynced.map_or(self.config.interval, |t| {
                    self.config.interval.saturating_sub(t.elapsed())
                });
                st = self
                    .wake
                    .wait_timeout(st, wait.max(Duration::from_micros(100)))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let pending = std::mem::take(&mut st.unsynced);
            st.first_unsynced = None;
            drop(st);
            let start = Instant::now();
            let r = engine.flush_wal(true);
            st = self.lock();
            match r {
                Ok(()) => {
                    st.stats.syncs += 1;
                    if due_by_bytes {
                        st.stats.by_bytes += 1;
                    } else {
                        st.stats.by_interval += 1;
                    }
                    st.stats.bytes_synced += pending;
                    st.stats.last_sync = start.elapsed();
                }
                Err(e) => {
                    st.stats.errors += 1;
                    st.unsynced += pending;
                    st.first_unsynced.get_or_insert_with(Instant::now);
                    drop(st);
                    self.failed(&e);
                    if self.halt.cause().is_some() {
                        return;
                    }
                    // Retry after one interval, not at once: the byte trigger still holds and
                    // would otherwise spin on a failing sync.
                    st = self.lock();
                    if !st.stop {
                        st = self
                            .wake
                            .wait_timeout(st, self.config.interval.max(Duration::from_millis(1)))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }
}

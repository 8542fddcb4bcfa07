//! The Store on a raft node: [`MvccMachine`], the one applier per member.
//!
//! Proposing and applying are split. A write's entry is encoded by the batcher's flush
//! (`Core::commit`) and proposed through the member's `RaftNode`; the node's thread applies
//! every committed entry, in index order and whoever proposed it, through
//! [`MvccMachine::apply`]: `decode_entry` → `Mvcc::prepare` → `commit_prepared` → `finish`,
//! the same path as the single-node `LocalLog`. The proposer gets the `Applied` its own
//! member produced for its entry.
//!
//! **Durability.** Raft's log is the durable record: an entry is fsynced in raft's log (by a
//! quorum) before any member applies it. The MVCC's WriteBatch of an entry carries the applied
//! index and is written to RocksDB's WAL without an fsync (`Durability::Sync` opens the
//! machine with `WriteMode::WAL`): after a process crash the WAL has it; after a power loss
//! the MVCC may come back at an older applied index, consistently (one WriteBatch per entry),
//! and `RaftNode::start` replays raft's log above it. The one promise this needs: raft's log
//! keeps every entry above the MVCC's *durable* applied index. Log compaction must therefore
//! make the state machine durable first: [`MvccMachine::sync`], which
//! [`StateMachine::sync`] calls (the node compacts only after it succeeded).
//!
//! **Snapshots for followers** are built when one needs them, off the node thread
//! ([`StateMachine::snapshot_builder`]): the MVCC's image copied from one RocksDB snapshot.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use batchkv_codec::decode_entry;
use batchkv_engine::{Engine, WriteMode};
use batchkv_metrics::Metrics;
use batchkv_mvcc::{Applied, Mvcc, Prepared};
use batchkv_raft::{SnapshotBuilder, StateMachine};

use crate::durability::WalSync;
use crate::error::StoreError;
use crate::halt::Halt;

/// What applying an entry answers its proposer.
pub(crate) type RaftOutput = Result<Applied, StoreError>;

/// `batchkv_raft::StateMachine` over the store's MVCC: the node thread is the only writer of
/// the state machine, in index order.
pub(crate) struct MvccMachine {
    pub(crate) mvcc: Arc<RwLock<Mvcc>>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) write_mode: WriteMode,
    /// Held through each apply; local maintenance (pruning, the check) takes it to run with
    /// no entry in flight.
    pub(crate) apply_lock: Arc<Mutex<()>>,
    pub(crate) halt: Arc<Halt>,
    pub(crate) wal: Option<Arc<WalSync>>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl MvccMachine {
    /// Makes every entry applied so far durable (syncs RocksDB's WAL; the entries' WriteBatches
    /// skipped their fsync, raft's log being the durable record). Must run before raft's log
    /// drops entries the state machine has applied: log compaction (`snapshot`).
    ///
    /// # Errors
    /// The WAL sync failed (the member then halts: what the failed sync dropped is unknown).
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.engine.flush_wal(true).map_err(|e| {
            self.halt
                .on_sync_error("syncing the WAL before raft log compaction", &e);
            StoreError::Storage(Arc::new(e.into()))
        })
    }

    fn apply_entry(&self, index: u64, entry: &[u8]) -> RaftOutput {
        let t0 = self.metrics.as_ref().map(|_| Instant::now());
        let decoded = decode_entry(entry)
            .map_err(|e| StoreError::Internal(format!("decoding committed entry {index}: {e}")))?;
        let t1 = t0.map(|_| Instant::now());
        // As `Core::commit`: prepare under the read lock, the commit (the fsync) under none, so
        // reads go on and see the state before the entry, finish under the write lock.
        let prepared = self
            .mvcc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .prepare(index, &decoded.ops)?;
        let applied = match prepared {
            Prepared::Skipped(applied) => applied,
            Prepared::Ready(e) => {
                let committed = Mvcc::commit_prepared(&self.engine, e, self.write_mode)?;
                self.mvcc
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .finish(committed)
            }
        };
        if let (Some(m), Some(t0), Some(t1)) = (&self.metrics, t0, t1) {
            let format = match decoded.format {
                batchkv_codec::Format::Entry => "entry",
                batchkv_codec::Format::Operation => "operation",
                batchkv_codec::Format::Legacy => "legacy",
            };
            m.record_entry(entry.len(), std::time::Duration::ZERO, t1 - t0, format);
            m.record_apply(decoded.ops.len(), t1.elapsed(), applied.events);
        }
        if let Some(w) = &self.wal {
            w.written(entry.len());
        }
        Ok(applied)
    }
}

impl StateMachine for MvccMachine {
    type Output = RaftOutput;

    fn apply(&mut self, index: u64, entry: &[u8]) -> RaftOutput {
        // A committed entry cannot be skipped: after any failure to apply one, this member
        // applies nothing more (its applied index stays before the entry, so a reopen replays
        // it from raft's log) and takes no writes. Reads go on, of the state before it.
        self.halt.check()?;
        let _apply = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_entry(index, entry).inspect_err(|e| {
            self.halt
                .halt(format!("applying committed raft entry {index}: {e}"));
        })
    }

    fn applied_index(&self) -> u64 {
        self.mvcc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .applied_index()
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        // The whole image on the calling thread (the node uses `sync` and `snapshot_builder`
        // instead). Between two entries: the image is the state at the applied index. The
        // apply lock keeps local maintenance (pruning) out meanwhile.
        self.halt.check().map_err(|e| e.to_string())?;
        // Raft's log below this index is dropped right after: every applied entry must be
        // durable in the MVCC first (its WriteBatches skip their fsync; raft's log was their
        // durable record). A failed sync halts the member (`sync`) and compacts nothing.
        self.sync().map_err(|e| e.to_string())?;
        let _apply = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mvcc = self.mvcc.read().unwrap_or_else(|e| e.into_inner());
        let image = mvcc.snapshot_image().map_err(|e| {
            tracing::error!(error = %e, "no raft snapshot of the mvcc: the raft log is not compacted");
            e.to_string()
        })?;
        tracing::info!(
            applied_index = mvcc.applied_index(),
            revision = mvcc.current_revision(),
            bytes = image.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "raft snapshot of the mvcc taken"
        );
        Ok(image)
    }

    fn sync(&mut self) -> Result<(), String> {
        // Raft's log below the applied index is dropped right after: every applied entry must
        // be durable in the MVCC first (its WriteBatches skip their fsync). A failed sync halts
        // the member (`MvccMachine::sync`) and compacts nothing.
        self.halt.check().map_err(|e| e.to_string())?;
        MvccMachine::sync(self).map_err(|e| e.to_string())
    }

    fn snapshot_builder(&mut self) -> Result<SnapshotBuilder, String> {
        // On the node thread: nothing but handles. The builder, on a thread of its own, takes
        // a RocksDB snapshot of the MVCC's engine (under the apply lock for that instant, so no
        // entry or pruning is half-way; the applied index inside it says which state it is)
        // and copies every column family from it while the node goes on applying.
        self.halt.check().map_err(|e| e.to_string())?;
        let engine = Arc::clone(&self.engine);
        let apply_lock = Arc::clone(&self.apply_lock);
        Ok(Box::new(move || {
            let started = Instant::now();
            let guard = apply_lock.lock().unwrap_or_else(|e| e.into_inner());
            let snap = engine.snapshot();
            drop(guard);
            let (applied, image) = batchkv_mvcc::store_image(&engine, &snap).map_err(|e| {
                tracing::error!(error = %e, "no raft snapshot of the mvcc for a follower");
                e.to_string()
            })?;
            tracing::info!(
                applied_index = applied,
                bytes = image.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "raft snapshot of the mvcc built for a follower"
            );
            Ok((applied, image))
        }))
    }

    fn verify_snapshot(&self, data: &[u8]) -> Result<(), String> {
        // The image's CRC-32C and layout, before raft takes the snapshot: a damaged one is
        // dropped (and sent again), not installed (which would halt the member).
        self.mvcc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .image_applied_index(data)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, index: u64, data: &[u8]) {
        // A halted member changes nothing more (reopening retries: the snapshot is in raft's
        // storage, and the node restores it at start when the MVCC is behind it).
        if self.halt.check().is_err() {
            return;
        }
        let _apply = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut mvcc = self.mvcc.write().unwrap_or_else(|e| e.into_inner());
        let from = mvcc.applied_index();
        // The image may be older than `index` (only empty entries or configuration changes
        // after it): the store's applied index becomes `index` either way.
        let outcome = mvcc.restore_image(data, index);
        match outcome {
            Ok(()) => tracing::info!(
                index,
                from,
                revision = mvcc.current_revision(),
                bytes = data.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "raft snapshot installed"
            ),
            // The old state stays if nothing was written (a damaged image, a failed write);
            // either way this member applies nothing more until it is reopened.
            Err(e) => self.halt.halt(format!(
                "installing the raft snapshot at index {index}: {e}"
            )),
        }
    }
}

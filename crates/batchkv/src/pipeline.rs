//! The write path: a batch of ops → one encoded entry → the log → decoded → applied by the MVCC
//! as one WriteBatch → one answer per op. Every write goes through here, single node or not.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use batchkv_engine::{Engine, WriteMode};
use batchkv_metrics::Metrics;

use batchkv_batcher::{BatchItem, Sink};
use batchkv_codec::{Encoder, Op, decode_entry};
use batchkv_mvcc::{Applied, Mvcc, OpResponse, Prepared};
use bytes::BytesMut;

use crate::durability::WalSync;
use crate::error::StoreError;
use crate::halt::Halt;
use crate::log::Log;
use crate::replicated::RaftOutput;

/// Where entries go: today's single-node log, or a raft node.
pub(crate) enum Backend {
    /// Append, then apply here under the log lock (the single-node path).
    Local(Mutex<Box<dyn Log>>),
    /// Propose through the member's raft node; its thread applies (`MvccMachine`).
    Raft {
        /// `None` once the store closed.
        node: RwLock<Option<batchkv_raft::RaftNode<RaftOutput>>>,
        /// Held by every apply: maintenance that needs no entry in flight takes it.
        apply_lock: Arc<Mutex<()>>,
    },
}

/// What keeps entries out while held: the log lock, or the raft apply lock.
enum Quiet<'a> {
    Log {
        _guard: MutexGuard<'a, Box<dyn Log>>,
    },
    Apply {
        _guard: MutexGuard<'a, ()>,
    },
}

/// One op waiting in the batcher.
#[derive(Debug)]
pub(crate) struct Request(pub(crate) Op);

impl BatchItem for Request {
    fn size_bytes(&self) -> usize {
        match &self.0 {
            // A put's encoding is its key and value plus a few bytes: no need to measure it.
            Op::Put(p) => p.key.len() + p.value.len() + 16,
            op => op.encoded_len(),
        }
    }
}

/// What the batcher's sink and the bulk loader share: the log, the codec and the state machine.
pub(crate) struct Core {
    pub(crate) mvcc: Arc<RwLock<Mvcc>>,
    backend: Backend,
    encoder: Encoder,
    wal: Option<Arc<WalSync>>,
    metrics: Option<Arc<Metrics>>,
    engine: Arc<Engine>,
    write_mode: WriteMode,
    /// Fail-stop after a storage failure that leaves the write path in doubt.
    pub(crate) halt: Arc<Halt>,
}

impl Core {
    pub(crate) fn new(
        mvcc: Arc<RwLock<Mvcc>>,
        backend: Backend,
        wal: Option<Arc<WalSync>>,
        metrics: Option<Arc<Metrics>>,
        halt: Arc<Halt>,
    ) -> Self {
        let (engine, write_mode) = {
            let m = mvcc.read().unwrap_or_else(|e| e.into_inner());
            (m.shared_engine(), m.config().write_mode)
        };
        Core {
            engine,
            write_mode,
            mvcc,
            backend,
            encoder: Encoder::default(),
            wal,
            metrics,
            halt,
        }
    }

    /// The log lock (single node) or the raft apply lock: no entry is in flight while held.
    fn quiet(&self) -> Quiet<'_> {
        match &self.backend {
            Backend::Local(log) => Quiet::Log {
                _guard: log.lock().unwrap_or_else(|e| e.into_inner()),
            },
            Backend::Raft { apply_lock, .. } => Quiet::Apply {
                _guard: apply_lock.lock().unwrap_or_else(|e| e.into_inner()),
            },
        }
    }

    /// Runs `f` on the state machine with no entry in flight (the log or apply lock, then the
    /// write lock): for local maintenance that writes, such as pruning.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce(&mut Mvcc) -> T) -> T {
        let _quiet = self.quiet();
        f(&mut self.mvcc.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the state machine with no entry in flight (the log or apply lock, then the
    /// read lock): for whole-state reads that must not see an entry half applied, such as the
    /// check (between an entry's commit and its finish, storage is ahead of the memory).
    pub(crate) fn quiescent<T>(&self, f: impl FnOnce(&Mvcc) -> T) -> T {
        let _quiet = self.quiet();
        f(&self.mvcc.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether this is the single-node backend (the batcher's lone-writer path is used there).
    pub(crate) fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// Runs `f` on the raft node, if the store is replicated: `None` when it is not.
    pub(crate) fn with_raft<T>(
        &self,
        f: impl FnOnce(&batchkv_raft::RaftNode<RaftOutput>) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Raft { node, .. } => {
                let node = node.read().unwrap_or_else(|e| e.into_inner());
                Some(match node.as_ref() {
                    Some(n) => f(n),
                    None => Err(StoreError::Stopped),
                })
            }
        }
    }

    /// Stops the raft node (its thread, and its hold on the state machine), if any.
    pub(crate) fn stop_raft(&self) {
        if let Backend::Raft { node, .. } = &self.backend {
            let n = node.write().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(n) = n {
                n.stop();
            }
        }
    }

    /// Commits `ops` as one entry: encode, append to the log, decode what was logged, apply.
    /// Replicated: encode, propose, and answer what this member applied for the entry.
    pub(crate) fn commit(&self, ops: &[Op], buf: &mut BytesMut) -> Result<Applied, StoreError> {
        let log = match &self.backend {
            Backend::Local(log) => log,
            Backend::Raft { .. } => return self.commit_replicated(ops, buf),
        };
        self.halt.check()?;
        buf.clear();
        let t0 = self.metrics.as_ref().map(|_| Instant::now());
        self.encoder
            .encode_entry(ops, buf)
            .map_err(|e| StoreError::Internal(format!("encoding an entry of checked ops: {e}")))?;
        // The log lock is held through apply, so entries are applied in index order.
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        let index = log
            .append(buf)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let t1 = t0.map(|_| Instant::now());
        // Apply what the log holds, exactly as a follower replaying it would.
        let decoded = decode_entry(buf)
            .map_err(|e| StoreError::Internal(format!("decoding a logged entry: {e}")))?;
        let t2 = t0.map(|_| Instant::now());
        // Prepare under the read lock, commit (the fsync) under no lock, so reads go on
        // meanwhile and see the state before the entry; then finish under the write lock.
        // The log lock, held throughout, keeps entries one at a time and in order.
        let prepared = self
            .mvcc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .prepare(index, &decoded.ops)?;
        let applied = match prepared {
            Prepared::Skipped(applied) => applied,
            Prepared::Ready(entry) => {
                let committed = Mvcc::commit_prepared(&self.engine, entry, self.write_mode)
                    .inspect_err(|e| {
                        self.halt
                            .on_write_error(&format!("committing entry {index}"), e);
                    })?;
                self.mvcc
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .finish(committed)
            }
        };
        drop(log);
        if let (Some(m), Some(t0), Some(t1), Some(t2)) = (&self.metrics, t0, t1, t2) {
            let format = match decoded.format {
                batchkv_codec::Format::Entry => "entry",
                batchkv_codec::Format::Operation => "operation",
                batchkv_codec::Format::Legacy => "legacy",
            };
            // The log append sits between encode and decode; for `LocalLog` it is nothing.
            m.record_entry(buf.len(), t1 - t0, t2 - t1, format);
            m.record_apply(ops.len(), t2.elapsed(), applied.events);
        }
        if let Some(w) = &self.wal {
            w.written(buf.len());
        }
        Ok(applied)
    }
}

impl Core {
    /// One raft entry per call (per batcher flush: group commit stays), proposed at this
    /// member (a follower forwards it to the leader) and answered from this member's apply.
    fn commit_replicated(&self, ops: &[Op], buf: &mut BytesMut) -> Result<Applied, StoreError> {
        self.halt.check()?;
        buf.clear();
        self.encoder
            .encode_entry(ops, buf)
            .map_err(|e| StoreError::Internal(format!("encoding an entry of checked ops: {e}")))?;
        let entry = buf.to_vec();
        let proposed = self
            .with_raft(|node| Ok(node.propose_for_output(entry)?))
            .unwrap_or_else(|| Err(StoreError::Internal("not replicated".into())))?;
        match proposed {
            (_, Some(applied)) => applied,
            (index, None) => Err(StoreError::Internal(format!(
                "raft entry {index} was not applied by its proposer's state machine"
            ))),
        }
    }
}

/// The batcher's sink.
pub(crate) struct Pipeline {
    pub(crate) core: Arc<Core>,
    pub(crate) buf: BytesMut,
}

impl Sink<Request> for Pipeline {
    type Output = OpResponse;
    type Error = StoreError;

    fn flush(
        &mut self,
        batch: Vec<Request>,
    ) -> Result<Vec<Result<OpResponse, StoreError>>, StoreError> {
        let ops: Vec<Op> = batch.into_iter().map(|r| r.0).collect();
        let applied = self.core.commit(&ops, &mut self.buf)?;
        if applied.skipped {
            return Err(StoreError::Internal(format!(
                "the log returned index {}, already applied",
                applied.index
            )));
        }
        Ok(applied
            .results
            .into_iter()
            .map(|r| r.map_err(StoreError::Op))
            .collect())
    }
}

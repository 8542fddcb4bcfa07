//! The write path: a batch of ops → one encoded entry → the log → decoded → applied by the MVCC
//! as one WriteBatch → one answer per op. Every write goes through here, single node or not.

use std::sync::{Arc, Mutex, RwLock};
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
    log: Mutex<Box<dyn Log>>,
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
        log: Box<dyn Log>,
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
            log: Mutex::new(log),
            encoder: Encoder::default(),
            wal,
            metrics,
            halt,
        }
    }

    /// Runs `f` on the state machine with no entry in flight (the log lock, then the write
    /// lock): for local maintenance that writes, such as pruning.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce(&mut Mvcc) -> T) -> T {
        let _log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut self.mvcc.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the state machine with no entry in flight (the log lock, then the read
    /// lock): for whole-state reads that must not see an entry half applied, such as the
    /// check (between an entry's commit and its finish, storage is ahead of the memory).
    pub(crate) fn quiescent<T>(&self, f: impl FnOnce(&Mvcc) -> T) -> T {
        let _log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&self.mvcc.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Commits `ops` as one entry: encode, append to the log, decode what was logged, apply.
    pub(crate) fn commit(&self, ops: &[Op], buf: &mut BytesMut) -> Result<Applied, StoreError> {
        self.halt.check()?;
        buf.clear();
        let t0 = self.metrics.as_ref().map(|_| Instant::now());
        self.encoder
            .encode_entry(ops, buf)
            .map_err(|e| StoreError::Internal(format!("encoding an entry of checked ops: {e}")))?;
        // The log lock is held through apply, so entries are applied in index order.
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
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

//! Large writes: the reference system's Mono, Chunked and Adaptive strategies.

use std::time::{Duration, Instant};

use batchkv_batcher::{AdaptiveBatchConfig, AdaptiveBatchResult, ChunkController};
use rocksdb::ColumnFamily;

use crate::engine::{Cf, Engine, WriteMode};
use crate::error::{EngineError, PartialWrite, Result};

/// One key/value mutation of a large write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set `key` to `value`.
    Put {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
    },
    /// Delete `[from, to)`.
    DeleteRange {
        /// Column family.
        cf: Cf,
        /// First key, inclusive.
        from: Vec<u8>,
        /// End, exclusive.
        to: Vec<u8>,
    },
}

impl Mutation {
    /// A put in `cf`.
    pub fn put(cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Mutation::Put {
            cf,
            key: key.into(),
            value: value.into(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Mutation::Put { key, value, .. } => key.len() + value.len(),
            Mutation::Delete { key, .. } => key.len(),
            Mutation::DeleteRange { from, to, .. } => from.len() + to.len(),
        }
    }
}

/// What a large write did.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteReport {
    /// Operations committed (all of them on success).
    pub committed: usize,
    /// WriteBatches written.
    pub chunks: usize,
    /// Wall time of the whole write.
    pub elapsed: Duration,
    /// The chunk controller's run (adaptive writes only).
    pub adaptive: Option<AdaptiveBatchResult>,
}

impl WriteReport {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.committed as f64 / s
        } else {
            0.0
        }
    }
}

impl Mutation {
    fn cf(&self) -> Cf {
        match self {
            Mutation::Put { cf, .. }
            | Mutation::Delete { cf, .. }
            | Mutation::DeleteRange { cf, .. } => *cf,
        }
    }
}

/// Adds `ops` to `batch`; every column family was checked by [`Engine::check_cfs`] first.
fn fill(batch: &mut rocksdb::WriteBatch, handles: &[&ColumnFamily], ops: &[Mutation]) {
    let h = |cf: Cf| handles[cf.0];
    for op in ops {
        match op {
            Mutation::Put { cf, key, value } => batch.put_cf(h(*cf), key, value),
            Mutation::Delete { cf, key } => batch.delete_cf(h(*cf), key),
            Mutation::DeleteRange { cf, from, to } => batch.delete_range_cf(h(*cf), from, to),
        }
    }
}

impl Engine {
    /// Checks every mutation's column family before anything is written, so that a chunked
    /// write never commits a prefix and then trips over a bad column family. The error is
    /// [`Engine::handle`]'s, naming the open column families.
    fn check_cfs(&self, ops: &[Mutation]) -> Result<()> {
        let open = self.column_families().len();
        match ops.iter().find(|op| op.cf().0 >= open) {
            None => Ok(()),
            Some(op) => self.handle(op.cf()).map(drop),
        }
    }

    fn write_chunk(
        &self,
        handles: &[&ColumnFamily],
        ops: &[Mutation],
        mode: WriteMode,
    ) -> Result<()> {
        let bytes: usize = ops.iter().map(Mutation::bytes).sum();
        // Keys, values and RocksDB's per-record framing (tag + two varints).
        let mut batch = rocksdb::WriteBatch::with_capacity_bytes(bytes + ops.len() * 8 + 12);
        fill(&mut batch, handles, ops);
        self.write_raw(batch, mode)
    }

    /// Mono: every op in one WriteBatch, atomic: all committed or none.
    ///
    /// # Errors
    /// An invalid mode or unknown column family (nothing written), or the write error (nothing
    /// written).
    pub fn write_batch_with_options(
        &self,
        ops: &[Mutation],
        mode: WriteMode,
    ) -> Result<WriteReport> {
        mode.write_options()?;
        let start = Instant::now();
        let handles = self.handles()?;
        self.check_cfs(ops)?;
        self.write_chunk(&handles, ops, mode)?;
        Ok(WriteReport {
            committed: ops.len(),
            chunks: 1,
            elapsed: start.elapsed(),
            adaptive: None,
        })
    }

    /// Chunked: WriteBatches of `chunk` ops, in order. Not atomic across chunks.
    ///
    /// # Errors
    /// [`EngineError::PartialWrite`] saying how many ops committed (a prefix) and which chunk
    /// failed; resume with `ops[committed..]`. An invalid mode, a zero chunk or an unknown
    /// column family fail before anything is written.
    pub fn write_batch_chunked(
        &self,
        ops: &[Mutation],
        chunk: usize,
        mode: WriteMode,
    ) -> Result<WriteReport> {
        if chunk == 0 {
            return Err(EngineError::config("chunk", "must be at least 1, got 0"));
        }
        mode.write_options()?;
        let handles = self.handles()?;
        self.check_cfs(ops)?;
        let start = Instant::now();
        let mut committed = 0;
        for (i, part) in ops.chunks(chunk).enumerate() {
            if let Err(source) = self.write_chunk(&handles, part, mode) {
                return Err(partial(committed, ops.len(), i, part.len(), source));
            }
            committed += part.len();
        }
        Ok(WriteReport {
            committed,
            chunks: ops.len().div_ceil(chunk),
            elapsed: start.elapsed(),
            adaptive: None,
        })
    }

    /// Adaptive: chunks sized by a [`ChunkController`] with the defaults for this batch
    /// ([`AdaptiveBatchConfig::default_for`]). Reads no environment: to apply the reference
    /// system's `ADAPT_*` overrides, build the configuration with
    /// [`AdaptiveBatchConfig::with_env_from`] and call
    /// [`Engine::write_batch_adaptive_with_config`].
    ///
    /// # Errors
    /// As [`Engine::write_batch_adaptive_with_config`].
    pub fn write_batch_adaptive(&self, ops: &[Mutation], mode: WriteMode) -> Result<WriteReport> {
        let cfg = AdaptiveBatchConfig::default_for(ops.len());
        self.write_batch_adaptive_with_config(ops, cfg, mode)
    }

    /// Adaptive with an explicit configuration.
    ///
    /// # Errors
    /// [`EngineError::PartialWrite`] as for chunked writes; an invalid configuration
    /// ([`EngineError::ChunkConfig`]) or mode before anything is written.
    pub fn write_batch_adaptive_with_config(
        &self,
        ops: &[Mutation],
        cfg: AdaptiveBatchConfig,
        mode: WriteMode,
    ) -> Result<WriteReport> {
        let mut ctl = ChunkController::new(cfg)?;
        mode.write_options()?;
        let handles = self.handles()?;
        self.check_cfs(ops)?;
        let start = Instant::now();
        let mut committed = 0;
        let mut index = 0;
        while committed < ops.len() {
            let n = ctl.next_chunk_size().min(ops.len() - committed);
            let part = &ops[committed..committed + n];
            let t = Instant::now();
            if let Err(source) = self.write_chunk(&handles, part, mode) {
                return Err(partial(committed, ops.len(), index, n, source));
            }
            ctl.record(n, t.elapsed());
            committed += n;
            index += 1;
        }
        Ok(WriteReport {
            committed,
            chunks: index,
            elapsed: start.elapsed(),
            adaptive: Some(ctl.report()),
        })
    }
}

fn partial(
    committed: usize,
    total: usize,
    chunk: usize,
    len: usize,
    source: EngineError,
) -> EngineError {
    EngineError::PartialWrite(Box::new(PartialWrite {
        committed,
        total,
        failed_chunk: chunk,
        failed_range: committed..committed + len,
        source,
    }))
}

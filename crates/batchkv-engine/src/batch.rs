//! Atomic batches: a builder of puts and deletes across column families, committed at once.

use rocksdb::ColumnFamily;

use crate::engine::{Cf, Engine, WriteMode};
use crate::error::Result;

/// A staged, atomic write: every put and delete in it lands together or not at all.
///
/// Made by [`Engine::begin_batch`] or [`Engine::batch_with_capacity_bytes`]. Nothing is written
/// until [`Batch::commit`]; [`Batch::rollback`], or dropping it uncommitted, discards it.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use batchkv_engine::{Cf, Engine, EngineConfig, WriteMode};
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(EngineConfig::new(dir.path()).column_families(["kv"]))?;
/// let kv = engine.cf("kv")?;
/// let mut batch = engine.begin_batch();
/// batch.put(kv, b"a", b"1")?;
/// batch.put(Cf::DEFAULT, b"meta", b"rev=1")?;
/// batch.commit(WriteMode::SYNC)?;
/// assert_eq!(engine.get(kv, b"a")?, Some(b"1".to_vec()));
/// # Ok(()) }
/// ```
pub struct Batch<'e> {
    engine: &'e Engine,
    handles: Vec<&'e ColumnFamily>,
    inner: rocksdb::WriteBatch,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len())
            .field("size_in_bytes", &self.size_in_bytes())
            .finish()
    }
}

impl<'e> Batch<'e> {
    fn handle(&self, cf: Cf) -> Result<&'e ColumnFamily> {
        match self.handles.get(cf.0) {
            Some(h) => Ok(h),
            None => self.engine.handle(cf),
        }
    }

    /// Stages a put.
    ///
    /// # Errors
    /// An unknown column family.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        let h = self.handle(cf)?;
        self.inner.put_cf(h, key, value);
        Ok(())
    }

    /// Stages a delete.
    ///
    /// # Errors
    /// An unknown column family.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) -> Result<()> {
        let h = self.handle(cf)?;
        self.inner.delete_cf(h, key);
        Ok(())
    }

    /// Stages the deletion of `[from, to)`.
    ///
    /// # Errors
    /// An unknown column family.
    pub fn delete_range(&mut self, cf: Cf, from: &[u8], to: &[u8]) -> Result<()> {
        let h = self.handle(cf)?;
        self.inner.delete_range_cf(h, from, to);
        Ok(())
    }

    /// Operations staged.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Size of the encoded batch, bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.inner.size_in_bytes()
    }

    /// Writes everything staged, atomically, as `mode` says.
    ///
    /// # Errors
    /// [`crate::EngineError::SyncWithoutWal`] for an invalid mode (nothing written), or the
    /// RocksDB write error (nothing written).
    pub fn commit(self, mode: WriteMode) -> Result<()> {
        self.engine.write_raw(self.inner, mode)
    }

    /// Discards everything staged. Dropping the batch does the same.
    pub fn rollback(self) {}

    /// Detaches the staged writes from the engine borrow, to commit later with
    /// [`Engine::commit_staged`] (for example after releasing a lock the batch was built under).
    pub fn into_staged(self) -> StagedBatch {
        StagedBatch { inner: self.inner }
    }
}

/// Staged writes not tied to a borrow of the engine ([`Batch::into_staged`]).
pub struct StagedBatch {
    inner: rocksdb::WriteBatch,
}

impl std::fmt::Debug for StagedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedBatch")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl StagedBatch {
    /// Writes staged.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl Engine {
    /// Commits a [`StagedBatch`] of this engine, atomically, as `mode` says.
    ///
    /// # Errors
    /// As [`Batch::commit`].
    pub fn commit_staged(&self, batch: StagedBatch, mode: WriteMode) -> Result<()> {
        self.write_raw(batch.inner, mode)
    }

    /// Starts an empty staged batch.
    pub fn begin_batch(&self) -> Batch<'_> {
        self.batch_with_capacity_bytes(0)
    }

    /// Starts a staged batch with `bytes` preallocated (avoids regrowth for large batches).
    pub fn batch_with_capacity_bytes(&self, bytes: usize) -> Batch<'_> {
        Batch {
            engine: self,
            // Only unknown indices fail; an engine always has its own handles.
            handles: self.handles().unwrap_or_default(),
            inner: rocksdb::WriteBatch::with_capacity_bytes(bytes),
        }
    }
}

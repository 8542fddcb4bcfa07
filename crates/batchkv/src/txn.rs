//! Optimistic multi-key transactions: read at a snapshot revision, buffer writes, commit as one
//! etcd Txn whose compares check that nothing read has changed; retry on conflict.

use std::collections::BTreeMap;

use batchkv_codec::{Compare, CompareOp, CompareTarget, DeleteRange, Op, Put, Txn};
use batchkv_mvcc::{MvccError, OpError};
use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Attempts [`Store::transaction`] makes before answering [`StoreError::Conflict`].
pub const DEFAULT_TXN_ATTEMPTS: usize = 16;

/// One attempt of an optimistic transaction: reads see the store as of one revision (and the
/// transaction's own writes); writes are buffered until commit.
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s Store,
    revision: i64,
    /// Key → the mod revision read (0: absent).
    reads: BTreeMap<Bytes, i64>,
    /// Key → the new value (`None`: delete).
    writes: BTreeMap<Bytes, Option<Bytes>>,
}

impl Transaction<'_> {
    /// The snapshot revision reads see.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The value of `key` as of the snapshot, or as this transaction wrote it.
    ///
    /// # Errors
    /// A storage error, or the snapshot was compacted away (the attempt is retried).
    pub fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let key = key.into();
        if let Some(w) = self.writes.get(&key) {
            return Ok(w.clone());
        }
        let kv = self.store.mvcc().get_at(&key, self.revision);
        let kv = match kv {
            Ok(kv) => kv,
            Err(MvccError::Op(OpError::Compacted { .. })) => {
                return Err(StoreError::Conflict { attempts: 0 });
            }
            Err(e) => return Err(e.into()),
        };
        self.reads
            .entry(key)
            .or_insert(kv.as_ref().map_or(0, |kv| kv.mod_revision));
        Ok(kv.map(|kv| kv.value))
    }

    /// Writes `value` at `key` when the transaction commits.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.writes.insert(key.into(), Some(value.into()));
    }

    /// Deletes `key` when the transaction commits.
    pub fn delete(&mut self, key: impl Into<Bytes>) {
        self.writes.insert(key.into(), None);
    }

    /// The txn that commits this attempt: every read key unchanged (same mod revision, or still
    /// absent), then the writes.
    fn to_txn(&self) -> Txn {
        let compares = self
            .reads
            .iter()
            .map(|(k, rev)| {
                if *rev == 0 {
                    Compare::new(
                        k.clone(),
                        CompareOp::Equal,
                        CompareTarget::CreateRevision(0),
                    )
                } else {
                    Compare::new(
                        k.clone(),
                        CompareOp::Equal,
                        CompareTarget::ModRevision(*rev),
                    )
                }
            })
            .collect();
        let success = self
            .writes
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Op::Put(Put::new(k.clone(), v.clone())),
                None => Op::DeleteRange(DeleteRange::key(k.clone())),
            })
            .collect();
        Txn {
            compares,
            success,
            failure: Vec::new(),
        }
    }
}

impl Store {
    /// Runs `f` as an optimistic, serializable transaction: `f` reads through the
    /// [`Transaction`] at a snapshot revision and buffers writes; they commit as one etcd Txn
    /// that first checks every key read is unchanged. If one changed, `f` runs again on a newer
    /// snapshot, up to [`DEFAULT_TXN_ATTEMPTS`] times in all. `f` must have no other effects
    /// (it may run more than once). A read-only transaction commits nothing.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] after the last attempt; what `f` returns; the commit's errors.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = batchkv::Store::open(dir.path())?;
    /// store.put("alice", 100u64.to_be_bytes().to_vec())?;
    /// store.put("bob", 0u64.to_be_bytes().to_vec())?;
    /// let balance = |v: Option<batchkv::Bytes>| {
    ///     v.and_then(|b| b.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes)
    /// };
    /// // Move 30 from alice to bob: both writes or neither, retried if either key changes.
    /// store.transaction(|tx| {
    ///     let (a, b) = (balance(tx.get("alice")?), balance(tx.get("bob")?));
    ///     tx.put("alice", (a - 30).to_be_bytes().to_vec());
    ///     tx.put("bob", (b + 30).to_be_bytes().to_vec());
    ///     Ok(())
    /// })?;
    /// assert_eq!(balance(store.get("bob")?.map(|kv| kv.value)), 30);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction<T>(&self, f: impl FnMut(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        self.transaction_with_attempts(DEFAULT_TXN_ATTEMPTS, f)
    }

    /// [`Store::transaction`] with a chosen number of attempts.
    ///
    /// # Errors
    /// As [`Store::transaction`].
    pub fn transaction_with_attempts<T>(
        &self,
        attempts: usize,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let attempts = attempts.max(1);
        for _ in 0..attempts {
            let mut tx = Transaction {
                store: self,
                revision: self.current_revision(),
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            };
            let value = match f(&mut tx) {
                Ok(v) => v,
                // Its snapshot was compacted away under it: try again on a newer one.
                Err(StoreError::Conflict { attempts: 0 }) => continue,
                Err(e) => return Err(e),
            };
            if tx.writes.is_empty() {
                return Ok(value);
            }
            if self.txn(tx.to_txn())?.succeeded {
                return Ok(value);
            }
        }
        Err(StoreError::Conflict { attempts })
    }
}

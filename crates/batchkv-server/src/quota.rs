//! The space quota (etcd's `--quota-backend-bytes`) and its NOSPACE alarm, as etcd 3.4's
//! `quotaKVServer` and capped applier: a write that would take the store past the quota raises
//! the alarm and is refused; while the alarm is raised every write that needs space (Put, a Txn
//! with puts, LeaseGrant) gets `etcdserver: mvcc: database space exceeded`
//! (ResourceExhausted), while reads, deletes, compaction and lease revokes go on. Disarming
//! (Alarm DEACTIVATE NOSPACE) clears it; the next write measures again, and raises it again if
//! the store is still over the quota, as etcd does.
//!
//! The size is RocksDB's SST and memtable bytes (Status' `dbSize`), measured at most every
//! [`MEASURE_EVERY`] (a few RocksDB property reads). The alarm lives in memory: a restart clears
//! it (etcd keeps it in its backend).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv::{Op, Store};
use tonic::Status;

use crate::blocking;
use crate::error::{NO_SPACE, status};

/// How long a measured size is reused.
pub const MEASURE_EVERY: Duration = Duration::from_millis(100);
/// What etcd counts for a lease grant's space (its `leaseOverhead`).
const LEASE_COST: i64 = 64;

/// The quota and the alarm.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Bytes; 0 or less: no quota (etcd: a negative `--quota-backend-bytes`).
    limit: i64,
    nospace: AtomicBool,
    measured: Mutex<Option<(Instant, i64)>>,
    /// One measurement at a time: when the figure is stale, the first write measures (on the
    /// blocking pool) and the others await this lock (a task each, no thread) and take its
    /// figure; without it every concurrent write took a blocking thread to measure.
    measuring: tokio::sync::Mutex<()>,
}

impl Quota {
    pub fn new(limit: i64) -> Self {
        Quota {
            limit,
            nospace: AtomicBool::new(false),
            measured: Mutex::new(None),
            measuring: tokio::sync::Mutex::new(()),
        }
    }

    pub fn limit(&self) -> i64 {
        self.limit
    }

    /// Whether the NOSPACE alarm is raised.
    pub fn raised(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Raises the alarm; whether it was down.
    pub fn raise(&self) -> bool {
        !self.nospace.swap(true, Ordering::AcqRel)
    }

    /// Clears the alarm (the next write measures afresh); whether it was raised.
    pub fn clear(&self) -> bool {
        *self.measured.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.nospace.swap(false, Ordering::AcqRel)
    }

    /// Admits `op`, or refuses it with etcd's NOSPACE error.
    pub async fn admit(&self, store: &Store, op: &Op) -> Result<(), Status> {
        let cost = cost(op);
        if cost == 0 {
            return Ok(());
        }
        if self.raised() {
            return Err(no_space());
        }
        if self.limit <= 0 {
            return Ok(());
        }
        let size = self.size(store).await?;
        if size.saturating_add(cost) > self.limit {
            if self.raise() {
                tracing::warn!(
                    size,
                    quota = self.limit,
                    "the store is over its space quota: NOSPACE alarm raised, writes refused"
                );
            }
            return Err(no_space());
        }
        Ok(())
    }

    /// The measured size, if measured within [`MEASURE_EVERY`].
    fn fresh(&self) -> Option<i64> {
        match *self.measured.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, size)) if at.elapsed() < MEASURE_EVERY => Some(size),
            _ => None,
        }
    }

    async fn size(&self, store: &Store) -> Result<i64, Status> {
        if let Some(size) = self.fresh() {
            return Ok(size);
        }
        let _one = self.measuring.lock().await;
        if let Some(size) = self.fresh() {
            return Ok(size);
        }
        let size = db_size(
            &blocking::run(store, |s| s.stats())
                .await?
                .map_err(|e| status(&e))?,
        );
        *self.measured.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), size));
        Ok(size)
    }
}

/// The store's size as Status reports it: SST and memtable bytes.
pub(crate) fn db_size(stats: &batchkv::StoreStats) -> i64 {
    let t = stats.engine.totals();
    i64::try_from(t.sst_bytes + t.memtable_bytes).unwrap_or(i64::MAX)
}

pub(crate) fn no_space() -> Status {
    Status::resource_exhausted(NO_SPACE)
}

/// The space a write needs, as etcd counts it (0: none, so never refused).
fn cost(op: &Op) -> i64 {
    let len = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    match op {
        Op::Put(p) => len(p.key.len() + p.value.len()),
        Op::Txn(t) => {
            let branch = |ops: &[Op]| ops.iter().map(cost).sum::<i64>();
            branch(&t.success).max(branch(&t.failure))
        }
        Op::LeaseGrant(_) => LEASE_COST,
        Op::DeleteRange(_) | Op::Range(_) | Op::LeaseRevoke(_) | Op::Compact(_) => 0,
    }
}

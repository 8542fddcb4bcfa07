//! The space quota (etcd's `--quota-backend-bytes`) and its NOSPACE alarm, as etcd 3.4's
//! `quotaKVServer` and capped applier: a write that would take the store past the quota raises
//! the alarm and is refused; while the alarm is raised every write that needs space (Put, a Txn
//! with puts, LeaseGrant) gets `etcdserver: mvcc: database space exceeded`
//! (ResourceExhausted), while reads, deletes, compaction and lease revokes go on. Disarming
//! (Alarm DEACTIVATE NOSPACE) clears it; the next write measures again, and raises it again if
//! the store is still over the quota, as etcd does.
//!
//! The size is RocksDB's SST and memtable bytes (Status' `dbSize`): [`Store::space_used`], two
//! RocksDB properties per column family (microseconds, read on the request's own task), measured
//! at most every [`MEASURE_EVERY`]; between measurements each admitted write's cost is added to
//! the figure, so a burst of writes trips the alarm as soon as its costs take the size past the
//! quota, without waiting for the next measurement. (`Store::stats`, which this used before,
//! also aggregates every SST file's table properties: about 3% of the server's CPU under puts.)
//! A raised alarm is also a file in the data dir ([`ALARM_FILE`], written atomically and
//! fsynced; removed when disarmed), so it survives a restart, as etcd keeps its alarms in its
//! backend.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv::{Op, Store};
use tonic::Status;

use crate::error::{NO_SPACE, status};

/// How long a measured size is reused (with the costs of the writes admitted since added).
pub const MEASURE_EVERY: Duration = Duration::from_millis(100);
/// The file in the data dir whose presence is a raised NOSPACE alarm.
pub const ALARM_FILE: &str = "batchkv-alarm-NOSPACE";
/// What etcd counts for a lease grant's space (its `leaseOverhead`).
const LEASE_COST: i64 = 64;

/// The quota and the alarm.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Bytes; 0 or less: no quota (etcd: a negative `--quota-backend-bytes`).
    limit: i64,
    /// [`MEASURE_EVERY`] (a field so that a test can make it longer than itself).
    measure_every: Duration,
    nospace: AtomicBool,
    /// When the size was last measured, and that size plus the costs of the writes admitted
    /// since. One lock for both: a write reads, maybe measures, and adds its cost at once.
    measured: Mutex<Option<(Instant, i64)>>,
    /// Where the raised alarm is kept ([`ALARM_FILE`] in the data dir); None: in memory only.
    file: Option<PathBuf>,
    /// One file update at a time (each writes the flag's state as it is then).
    persisting: Mutex<()>,
}

impl Quota {
    /// The quota, with the alarm raised if `file` (see [`ALARM_FILE`]) exists.
    ///
    /// # Errors
    /// `file`'s existence cannot be checked.
    pub fn open(limit: i64, file: Option<PathBuf>) -> std::io::Result<Self> {
        let raised = match &file {
            Some(f) => f.try_exists()?,
            None => false,
        };
        if raised {
            tracing::warn!(file = ?file, "the NOSPACE alarm raised before the restart is still raised: writes are refused until it is disarmed");
        }
        Ok(Quota {
            limit,
            measure_every: MEASURE_EVERY,
            nospace: AtomicBool::new(raised),
            measured: Mutex::new(None),
            file,
            persisting: Mutex::new(()),
        })
    }

    pub fn limit(&self) -> i64 {
        self.limit
    }

    /// Whether the NOSPACE alarm is raised.
    pub fn raised(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Raises the alarm (and keeps it in the data dir); whether it was down.
    pub fn raise(&self) -> bool {
        let was_down = !self.nospace.swap(true, Ordering::AcqRel);
        if was_down {
            self.persist();
        }
        was_down
    }

    /// Clears the alarm (the next write measures afresh; the file is removed); whether it was
    /// raised.
    pub fn clear(&self) -> bool {
        *self.measured.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let was_raised = self.nospace.swap(false, Ordering::AcqRel);
        if was_raised {
            self.persist();
        }
        was_raised
    }

    /// Makes the file say what the flag says now (a raise and a clear racing leave the file
    /// as the flag ends). A few small file operations and fsyncs, on the caller's thread: the
    /// alarm changes rarely. A failure is logged: the alarm still holds in memory.
    fn persist(&self) {
        let Some(file) = &self.file else { return };
        let _one = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        let raised = self.raised();
        let done = if raised {
            write_durably(file, b"NOSPACE\n")
        } else {
            remove_durably(file)
        };
        if let Err(e) = done {
            tracing::error!(file = %file.display(), raised, error = %e, "cannot persist the NOSPACE alarm; a restart will not see this change");
        }
    }

    /// Admits `op`, or refuses it with etcd's NOSPACE error.
    pub fn admit(&self, store: &Store, op: &Op) -> Result<(), Status> {
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
        if let Err(size) = self.reserve(store, cost)? {
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

    /// Checks that `cost` more bytes fit under the quota and counts them if they do; Err with
    /// the size when they do not. The size is measured afresh when the last measurement is
    /// older than [`MEASURE_EVERY`] (or was cleared), under the lock: two cheap RocksDB property
    /// reads per column family, so concurrent writes wait microseconds for one measurement.
    fn reserve(&self, store: &Store, cost: i64) -> Result<Result<(), i64>, Status> {
        let mut measured = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let size = match *measured {
            Some((at, size)) if at.elapsed() < self.measure_every => size,
            _ => {
                let used = store.space_used().map_err(|e| status(&e))?;
                let size = i64::try_from(used).unwrap_or(i64::MAX);
                *measured = Some((Instant::now(), size));
                size
            }
        };
        if size.saturating_add(cost) > self.limit {
            return Ok(Err(size));
        }
        // Admitted: its bytes count until the next measurement sees them.
        *measured = measured.map(|(at, size)| (at, size.saturating_add(cost)));
        Ok(Ok(()))
    }
}

/// The store's size as Status reports it: SST and memtable bytes.
pub(crate) fn db_size(stats: &batchkv::StoreStats) -> i64 {
    let t = stats.engine.totals();
    i64::try_from(t.sst_bytes + t.memtable_bytes).unwrap_or(i64::MAX)
}

/// Writes `file` atomically (a temp file in the same dir, fsynced, renamed over it) and fsyncs
/// the dir, so the rename is durable.
fn write_durably(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `file` (gone already is fine) and fsyncs its dir.
fn remove_durably(file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::File::open(file.parent().unwrap_or(Path::new(".")))?.sync_all()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use batchkv::{Op, Put, Store};

    use super::Quota;

    fn put(value_bytes: usize) -> Op {
        Op::Put(Put {
            key: "k".into(),
            value: vec![0u8; value_bytes].into(),
            ..Put::default()
        })
    }

    #[test]
    fn admitted_costs_count_until_the_next_measurement() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let size = i64::try_from(store.space_used().expect("size")).expect("fits");
        // Room for two 100-byte puts; no measurement after the first in this test's life.
        let mut quota = Quota::open(size + 250, None).expect("quota");
        quota.measure_every = Duration::from_secs(24 * 60 * 60);
        assert!(quota.admit(&store, &put(99)).is_ok());
        assert!(quota.admit(&store, &put(99)).is_ok());
        // Nothing was written, yet the two admitted costs take a third past the quota.
        assert!(!quota.raised());
        assert!(quota.admit(&store, &put(99)).is_err());
        assert!(quota.raised());
        // Disarmed, the next write measures afresh: the store itself still has room.
        assert!(quota.clear());
        assert!(quota.admit(&store, &put(99)).is_ok());
        store.close().expect("close");
    }
}

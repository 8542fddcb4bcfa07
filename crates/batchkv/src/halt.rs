//! Fail-stop: after a storage failure that may have left the write path in an unknown state
//! (an I/O error on a WAL write or fsync, corruption), the store takes no more writes.
//!
//! A failed fsync is the case that matters: the kernel may have dropped the dirty pages it could
//! not write, and a later fsync that succeeds says nothing about them (PostgreSQL's "fsyncgate").
//! RocksDB stops writing after such an error too (a background error); the store makes it
//! permanent and says why, instead of passing on whatever RocksDB answers next. A full disk is
//! not fatal: nothing acknowledged is in doubt, RocksDB resumes by itself once space is free,
//! and so do the store's writes.

use std::sync::Mutex;

use batchkv_engine::{EngineError, StatusKind};
use batchkv_mvcc::MvccError;

use crate::error::StoreError;

/// Whether the store has stopped taking writes, and why.
#[derive(Debug, Default)]
pub(crate) struct Halt {
    cause: Mutex<Option<String>>,
}

impl Halt {
    /// Stops writes for good because of `cause` (the first cause is kept).
    pub(crate) fn halt(&self, cause: String) {
        let mut c = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            tracing::error!(%cause, "storage failure: the store takes no more writes (fail-stop); reopen it to recover");
            *c = Some(cause);
        }
    }

    /// The cause, once halted.
    pub(crate) fn cause(&self) -> Option<String> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `Ok` while writes are taken, [`StoreError::Halted`] after.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self.cause() {
            None => Ok(()),
            Some(cause) => Err(StoreError::Halted { cause }),
        }
    }

    /// Halts if `e`, from writing to storage, leaves the write path in doubt.
    pub(crate) fn on_write_error(&self, what: &str, e: &MvccError) {
        if let MvccError::Engine(engine) = e
            && halts(engine)
        {
            self.halt(format!("{what}: {e}"));
        }
    }

    /// Halts if `e`, from syncing the WAL, leaves the write path in doubt.
    pub(crate) fn on_sync_error(&self, what: &str, e: &EngineError) {
        if halts(e) {
            self.halt(format!("{what}: {e}"));
        }
    }
}

/// An I/O error (except a full disk) or corruption: fatal. Nothing was written for the others
/// (a write stall, a read-only store, an injected failure, a full disk that RocksDB recovers).
fn halts(e: &EngineError) -> bool {
    matches!(
        e.status_kind(),
        Some(StatusKind::Io | StatusKind::Corruption)
    ) && !e.is_no_space()
}

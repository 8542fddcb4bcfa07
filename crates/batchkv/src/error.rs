//! [`StoreError`]: what a store call can fail with.

use std::sync::Arc;

use batchkv_mvcc::{MvccError, OpError};

/// Why a store call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The operation was refused, with etcd's error (nothing of it was applied).
    #[error(transparent)]
    Op(#[from] OpError),
    /// Storage failed. For a write this means its whole entry did not commit: nothing of it was
    /// applied (the entry's other callers get the same error).
    #[error("{0}")]
    Storage(Arc<MvccError>),
    /// An optimistic transaction kept conflicting with concurrent writes.
    #[error("transaction conflicted {attempts} times with concurrent writes; giving up")]
    Conflict {
        /// Attempts made.
        attempts: usize,
    },
    /// The store is closed (or closing) and took no new work.
    #[error("the store is closed")]
    Closed,
    /// The write queue is full: the async submits ([`crate::Store::submit_async`] and its
    /// typed twins) refuse the op instead of blocking a thread until there is room (the
    /// blocking calls wait). Nothing of it was queued. This is etcd's `ErrTooManyRequests`,
    /// with its text: a server answers it as is, and the client backs off and retries.
    #[error("etcdserver: too many requests")]
    Busy,
    /// A storage failure stopped the store from taking writes (fail-stop): an I/O error while
    /// writing or syncing, or corruption. Writes acknowledged before it are durable as their
    /// mode promises; reads still work; reopen the store (after fixing the cause) to write again.
    #[error(
        "the store takes no more writes after a storage failure ({cause}); writes acknowledged \
         before it are durable and reads still work; fix the cause and reopen the store"
    )]
    Halted {
        /// The failure that stopped it.
        cause: String,
    },
    /// The pipeline failed in a way that is a bug (the write was not applied).
    #[error("internal error: {0}")]
    Internal(String),
    /// A bad configuration.
    #[error("invalid store config: {0}")]
    Config(String),
}

impl From<MvccError> for StoreError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Op(op) => StoreError::Op(op),
            other => StoreError::Storage(Arc::new(other)),
        }
    }
}

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

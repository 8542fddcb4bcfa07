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
    /// Replicated: no leader is known (an election is under way, or this member is cut off),
    /// so the write was not proposed. etcd's `ErrNoLeader`.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Replicated: this member is not the leader and the request must go to the leader
    /// (`leader`): nothing was done. etcd's `ErrNotLeader`.
    #[error("etcdserver: not leader")]
    NotLeader {
        /// The leader's raft id.
        leader: u64,
    },
    /// Replicated: the leader that took the write lost its leadership before the write was
    /// known committed. It MAY have been applied (by the new leader's log) or not: read before
    /// retrying a write that is not idempotent. etcd's `ErrTimeoutDueToLeaderFail`.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    LeaderLost,
    /// Replicated: no answer within the raft request timeout (no quorum, say). A write MAY
    /// still be applied later. etcd's `ErrTimeout`.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Replicated: the raft node stopped (the store is closing) before answering. etcd's
    /// `ErrStopped`.
    #[error("etcdserver: server stopped")]
    Stopped,
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

impl From<batchkv_raft::RaftError> for StoreError {
    fn from(e: batchkv_raft::RaftError) -> Self {
        use batchkv_raft::RaftError;
        match e {
            RaftError::NotLeader { leader: None } => StoreError::NoLeader,
            RaftError::NotLeader {
                leader: Some(leader),
            } => StoreError::NotLeader { leader },
            RaftError::Ambiguous => StoreError::LeaderLost,
            RaftError::Timeout => StoreError::Timeout,
            RaftError::Stopped => StoreError::Stopped,
            RaftError::Storage(e) => StoreError::Storage(Arc::new(e.into())),
            e @ (RaftError::Corrupt(_)
            | RaftError::Raft(_)
            | RaftError::ConfChangeInProgress
            | RaftError::LearnerNotReady) => StoreError::Internal(e.to_string()),
        }
    }
}

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

//! [`RaftError`]: what a proposal, a read or the storage can fail with (etcd's texts where etcd
//! has one).

use batchkv_engine::EngineError;

/// Why a proposal, a linearizable read or the raft storage failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// This node is not the leader; `leader` is the one it knows of, if any. Nothing was
    /// proposed: the caller may retry there.
    #[error("etcdserver: not leader")]
    NotLeader {
        /// The leader's id, if this node knows one.
        leader: Option<u64>,
    },
    /// The node lost its leadership after the entry was appended to its log and before it
    /// learned the entry committed: the entry may or may not be applied (etcd's
    /// `ErrTimeoutDueToLeaderFail`).
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    Ambiguous,
    /// No answer within the request timeout (no quorum, no leader): for a proposal, the entry
    /// may or may not be applied later.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A configuration change is proposed while the previous one is not applied yet: raft
    /// takes one at a time.
    #[error("raft: a configuration change is already in progress")]
    ConfChangeInProgress,
    /// Promoting a learner that has less than 90% of the leader's log (etcd's
    /// `ErrLearnerNotReady`).
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The node was stopped (or its thread ended) before answering.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The storage under raft failed.
    #[error("raft storage: {0}")]
    Storage(#[from] EngineError),
    /// raft's stored state or a message does not decode, or is inconsistent.
    #[error("raft state corrupt: {0}")]
    Corrupt(String),
    /// raft-rs refused (its text).
    #[error("raft: {0}")]
    Raft(String),
}

impl From<raft::Error> for RaftError {
    fn from(e: raft::Error) -> Self {
        RaftError::Raft(e.to_string())
    }
}

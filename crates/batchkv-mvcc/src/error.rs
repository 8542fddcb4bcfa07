//! Errors: [`OpError`] for one refused operation (etcd's errors, with etcd's messages), and
//! [`MvccError`] for the store itself (opening, storage, a failed commit).

use std::path::PathBuf;

use batchkv_codec::InvalidOp;
use batchkv_engine::EngineError;

use crate::revision::Revision;

/// Why one operation was refused. Nothing of it was applied and the revision did not move.
///
/// The messages are etcd's, word for word, so clients that match on them keep working; the
/// fields carry the details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A read or compaction below the compacted revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compacted revision.
        compacted: i64,
    },
    /// A read or compaction above the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The current revision.
        current: i64,
    },
    /// An empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A txn with more compares or ops in one branch than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps {
        /// The largest of its compare, success and failure counts.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An operation whose encoding exceeds the request size limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge {
        /// Its encoded size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A txn writing the same key twice on one path (put+put, delete+put).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound {
        /// The lease id.
        id: i64,
    },
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// Structurally invalid (e.g. a lease grant inside a txn); the codec refuses to encode these.
    #[error("invalid operation: {0}")]
    Invalid(InvalidOp),
    /// A grant of a lease id that exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists {
        /// The lease id.
        id: i64,
    },
    /// A grant above [`crate::MAX_LEASE_TTL`].
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge {
        /// The TTL asked for.
        ttl: i64,
    },
}

/// An error of the store: opening it, reading or writing storage.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The operation was refused (reads answer with these too).
    #[error(transparent)]
    Op(#[from] OpError),
    /// The engine failed. During [`crate::Mvcc::apply`] this means the entry's one WriteBatch
    /// did not commit: nothing of the entry is applied, in storage or in memory.
    #[error("storage: {0}")]
    Engine(#[from] EngineError),
    /// A stored record or meta value that cannot be decoded.
    #[error("corrupt store at {path}: {what}")]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A stored record whose revision breaks the key's history (rebuilding the index).
    #[error("corrupt store at {path}: record {revision} of key {key:?}: {reason}")]
    History {
        /// The store's directory.
        path: PathBuf,
        /// The key.
        key: String,
        /// The record's revision.
        revision: Revision,
        /// What is wrong.
        reason: String,
    },
    /// A store written by a newer format.
    #[error("store at {path} has format version {found}; this build reads {supported}")]
    FormatVersion {
        /// The store's directory.
        path: PathBuf,
        /// The version on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A broken internal invariant (a bug): the entry was not committed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The configuration is unusable.
    #[error("invalid mvcc config: {0}")]
    InvalidConfig(String),
}

impl MvccError {
    /// The operation error, if this is one.
    pub fn op(&self) -> Option<&OpError> {
        match self {
            MvccError::Op(e) => Some(e),
            _ => None,
        }
    }
}

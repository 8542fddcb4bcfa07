//! batchkv's `Store`: one handle over the whole write path.
//!
//! ```text
//! Store::put ─► batcher (group commit) ─► codec: one entry ─► Log (LocalLog now, Raft later)
//!            ─► codec: decode ─► mvcc: apply as ONE WriteBatch ─► every caller answered ─► watch events
//! ```
//!
//! Every write takes that path (`pipeline.rs`); reads go straight to the MVCC's applied state.
//! [`Durability`] says what an acknowledged write survives. Leases expire through the pipeline
//! (a maintenance thread proposes the revokes), and [`Store::transaction`] gives optimistic,
//! serializable multi-key transactions on top of etcd's Txn.
//!
//! Async callers write without a thread per request: [`Store::submit_async`] and its typed twins
//! (`put_async`, `txn_async`, ...) queue the op at once and return a [`SubmitFuture`] that the
//! batcher's worker wakes; [`Watcher::recv_async`] awaits watch responses. The crate depends on
//! no async runtime.
//!
//! ```
//! use batchkv::Store;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! store.put("greeting", "hello")?;
//! assert_eq!(store.get("greeting")?.map(|kv| kv.value), Some("hello".into()));
//! store.transaction(|tx| {
//!     let n = tx.get("counter")?.map_or(0, |v| v[0]);
//!     tx.put("counter", vec![n + 1]);
//!     Ok(())
//! })?;
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod durability;
mod error;
mod future;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod halt;
mod log;
mod pipeline;
mod replicated;
mod store;
mod txn;

// Every type that appears in a public signature of the facade, re-exported flat (as `bytes`
// does), so a user who depends on `batchkv` alone can name them all.

/// Byte strings: keys and values (`bytes::Bytes`).
pub use bytes::Bytes;

// The ops (batchkv-codec).
pub use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, InvalidOp, InvalidReason, LeaseGrant,
    LeaseRevoke, MAX_TXN_DEPTH, Op, OpKind, Put, Range, SortOrder, SortTarget, Txn, prefix_end,
    prefix_range,
};
// Answers, errors, watch, leases, retention, the state machine's settings (batchkv-mvcc).
pub use batchkv_mvcc::{
    AutoCompaction, CheckReport, CompactResponse, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS,
    DEFAULT_MIN_LEASE_TTL, DEFAULT_VALUE_CACHE_BYTES, DEFAULT_WATCH_BUFFER, DeleteRangeResponse,
    EventKind, KeyValue, KvHash, LeaseGrantResponse, LeaseRevokeResponse, LeaseTimeToLive,
    MAX_LEASE_TTL, MvccConfig, MvccError, OpError, OpResponse, PruneReport, PutResponse,
    RangeResponse, Revision, TxnResponse, WatchEvent, WatchRequest, WatchResponse, Watcher,
};
// Group commit (batchkv-batcher).
pub use batchkv_batcher::{
    AdaptiveBatchConfig, AdaptiveBatchResult, BatchConfig, ChunkRecord, Stats as BatcherStats,
    WaitPolicy,
};
// RocksDB's settings, statistics and errors (batchkv-engine).
pub use batchkv_engine::{
    CfStats, Codec, Compression, EngineConfig, EngineError, EngineStats, Profile, StatusKind,
    Tickers, Tuning, VerifyReport, WriteMode,
};
// Metrics (batchkv-metrics).
pub use batchkv_metrics::{
    LatencySummary, MaintenanceTask, Metrics, MetricsServer, OpLabel, StateSample,
};

// Replication (batchkv-raft): what `StoreBuilder::replicated` takes and `Store::raft_status`
// returns.
pub use batchkv_raft::{
    ConfChangeKind, LocalNetwork, Mailbox, Membership, NodeConfig, NodeStatus, RaftError,
    RaftStorage, RemovalNotice, Transport,
};

pub use crate::durability::{AutoFlushConfig, Durability, FlushStats};
pub use crate::error::{Result, StoreError};
pub use crate::future::{ReadBarrier, SubmitFuture};
pub use crate::log::{LocalLog, Log, LogError};
pub use crate::store::{BulkError, BulkReport, Store, StoreBuilder, StoreStats};
pub use crate::txn::{DEFAULT_TXN_ATTEMPTS, Transaction};

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
mod log;
mod pipeline;
mod store;
mod txn;

pub use batchkv_codec::{
    Compare, CompareOp, CompareTarget, DeleteRange, Op, Put, Range, SortOrder, SortTarget, Txn,
};
pub use batchkv_mvcc::{
    AutoCompaction, EventKind, KeyValue, OpError, OpResponse, WatchEvent, WatchRequest,
    WatchResponse, Watcher,
};

pub use crate::durability::{AutoFlushConfig, Durability, FlushStats};
pub use crate::error::{Result, StoreError};
pub use crate::log::{LocalLog, Log, LogError};
pub use crate::store::{BulkError, BulkReport, Store, StoreBuilder, StoreStats};
pub use crate::txn::{DEFAULT_TXN_ATTEMPTS, Transaction};

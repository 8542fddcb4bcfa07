//! etcd v3's data model on `batchkv-engine`: a revisioned key space where every applied entry
//! of operations is one RocksDB WriteBatch.
//!
//! [`Mvcc::apply`] takes an entry (its log index and its decoded [`Op`]s) and follows
//! prepare-batch-notify: each op is checked and prepared against the state the ops before it
//! left, all writes of the entry go into one engine batch together with the new revision and
//! the applied index, the batch commits once, and only then does the in-memory index change,
//! do events go out and do results come back. The three phases are also callable one by one,
//! their order enforced by their types ([`Mvcc::prepare`] → [`Prepared`] / [`PreparedEntry`],
//! [`Mvcc::commit_prepared`] → [`CommittedEntry`], [`Mvcc::finish`] → [`Applied`]), so a caller
//! can commit without holding the store exclusively. Behaviour (revisions, txn, ranges, errors,
//! compaction, leases, watch) is etcd 3.4's, checked against a real etcd server
//! (docs/ETCD-COMPAT.md).
//!
//! Storage (docs/FORMAT.md): the `kv` column family maps each revision to the record written
//! at it; the `meta` column family holds the current and compacted revisions and the applied
//! index; the `lease` column family the granted leases. The in-memory tree index (key →
//! generations of revisions, as etcd's `treeIndex`) is rebuilt on open; it makes a point read
//! one index lookup and one RocksDB get, and a range read O(log n + k) plus one multi-get.
//!
//! ```
//! use batchkv_codec::{Op, Put, Range};
//! use batchkv_mvcc::{Mvcc, MvccConfig, OpResponse};
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = Mvcc::open(MvccConfig::new(dir.path()))?;
//! let applied = store.apply(1, &[Op::Put(Put::new("foo", "v1")), Op::Put(Put::new("foo", "v2"))])?;
//! assert_eq!(applied.revision, 3); // a new store is at revision 1; each put adds one
//! let foo = store.range(&Range::key("foo"))?.kvs.remove(0);
//! assert_eq!((foo.create_revision, foo.mod_revision, foo.version), (2, 3, 2));
//! assert!(matches!(applied.results[1], Ok(OpResponse::Put(ref p)) if p.revision == 3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Leases: [`Op::LeaseGrant`] and [`Op::LeaseRevoke`] are ops of entries like any other; expiry
//! is decided outside `apply` (the caller polls [`Mvcc::expired_leases`] and proposes revokes),
//! so every replica applies the same entries to the same result. Watch: [`Mvcc::watch`] returns
//! a [`Watcher`] that replays history from storage, then follows live events, and never slows
//! `apply` down. Retention: [`Mvcc::prune_old_versions`] and [`AutoCompactor`] (etcd's
//! auto-compaction modes, as a policy the caller polls).

#![warn(missing_docs)]

mod apply;
mod error;
mod key_index;
mod kv;
mod lease;
mod response;
mod retention;
mod revision;
mod store;
mod tree_index;
mod view;
mod watch;

pub use batchkv_codec::Op;

pub use crate::error::{MvccError, OpError};
pub use crate::kv::{Event, EventKind, KeyValue};
pub use crate::lease::{DEFAULT_MIN_LEASE_TTL, LeaseTimeToLive, MAX_LEASE_TTL};
pub use crate::response::{
    CompactResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, OpResponse,
    PutResponse, RangeResponse, TxnResponse,
};
pub use crate::retention::{AutoCompaction, AutoCompactor};
pub use crate::revision::Revision;
pub use crate::store::{
    Applied, CheckReport, CommittedEntry, CompactionStatus, DEFAULT_COMPACTION_BATCH,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, DEFAULT_VALUE_CACHE_BYTES, EventListener,
    FORMAT_VERSION, KV_CF, KvHash, LEASE_CF, META_CF, Mvcc, MvccConfig, Prepared, PreparedEntry,
    PruneReport, store_image,
};
pub use crate::watch::{DEFAULT_WATCH_BUFFER, WatchEvent, WatchRequest, WatchResponse, Watcher};

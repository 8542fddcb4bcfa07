//! etcd v3's data model on `batchkv-engine`: revisions, ranges at a revision, txns, leases,
//! watch and compaction, with every applied entry one WriteBatch.
//!
//! **In progress.** What exists so far is the in-memory index: [`KeyIndex`] holds one key's
//! revisions, grouped into generations as etcd's `keyIndex`, answers reads at a revision and
//! decides what compaction may drop; [`TreeIndex`] orders every key's index for point and range
//! reads at a revision (etcd's `treeIndex`). Storage, apply, txn, leases and
//! watch are the rest of issue 5 and 6.

#![warn(missing_docs)]

mod key_index;
mod revision;
mod tree_index;

pub use crate::key_index::{Found, Generation, KeyIndex, KeyIndexError};
pub use crate::revision::Revision;
pub use crate::tree_index::{KeySpan, RangeResult, TreeIndex};

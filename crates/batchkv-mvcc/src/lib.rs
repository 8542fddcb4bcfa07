//! etcd v3's data model on `batchkv-engine`: revisions, ranges at a revision, txns, leases,
//! watch and compaction, with every applied entry one WriteBatch.
//!
//! **In progress.** What exists so far is the in-memory key index ([`KeyIndex`]): per key, the
//! revisions at which it changed, grouped into generations as etcd's `keyIndex`, which answers
//! reads at a revision and decides what compaction may drop. Storage, apply, txn, leases and
//! watch are the rest of issue 5 and 6.

#![warn(missing_docs)]

mod key_index;
mod revision;

pub use crate::key_index::{Found, Generation, KeyIndex, KeyIndexError};
pub use crate::revision::Revision;

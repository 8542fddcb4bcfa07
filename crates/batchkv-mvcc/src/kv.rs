//! Key-values as etcd returns them, and watch events. The record stored per revision is
//! [`batchkv_codec::record`]'s.

use bytes::Bytes;

use crate::revision::Revision;

/// A key as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Revision of the last creation.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Changes since creation (1 after creation).
    pub version: i64,
    /// The value (empty for `keys_only` reads).
    pub value: Bytes,
    /// The attached lease, 0 for none.
    pub lease: i64,
}

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, published after the entry that made it has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete only `key` and `mod_revision` (the delete's
    /// revision) are set, as etcd.
    pub kv: KeyValue,
    /// Where the previous value lives, if the key existed before this change: read it with
    /// [`crate::Mvcc::kv_at`] (watchers asking for `prev_kv` do; the write path does not pay
    /// for it).
    pub prev: Option<Revision>,
}

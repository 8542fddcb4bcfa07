//! The operations an entry carries: the domain types, separate from the wire structs.

use std::fmt;

use bytes::Bytes;

use crate::error::{InvalidOp, InvalidReason};

/// One operation of the etcd v3 vocabulary, as `batchkv-mvcc` applies it.
///
/// Values of this type are only produced by the decoder after validation, or built by callers;
/// [`Op::validate`] checks the rules the decoder enforces (non-empty keys, what a txn may hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write one key.
    Put(Put),
    /// Delete one key or a range of keys.
    DeleteRange(DeleteRange),
    /// A transaction: compares, then one of two branches.
    Txn(Txn),
    /// A read (inside a txn, or as a linearizable read through the log).
    Range(Range),
    /// Grant a lease.
    LeaseGrant(LeaseGrant),
    /// Revoke a lease and delete its keys.
    LeaseRevoke(LeaseRevoke),
    /// Compact history at or below a revision.
    Compact(Compact),
}

/// The kind of an [`Op`], without its data: for messages and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Op::Put`].
    Put,
    /// [`Op::DeleteRange`].
    DeleteRange,
    /// [`Op::Txn`].
    Txn,
    /// [`Op::Range`].
    Range,
    /// [`Op::LeaseGrant`].
    LeaseGrant,
    /// [`Op::LeaseRevoke`].
    LeaseRevoke,
    /// [`Op::Compact`].
    Compact,
}

impl OpKind {
    /// The lowercase name used in error messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::DeleteRange => "delete_range",
            OpKind::Txn => "txn",
            OpKind::Range => "range",
            OpKind::LeaseGrant => "lease_grant",
            OpKind::LeaseRevoke => "lease_revoke",
            OpKind::Compact => "compact",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// etcd's PutRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Put {
    /// The key; never empty.
    pub key: Bytes,
    /// The new value (ignored when `ignore_value`).
    pub value: Bytes,
    /// The lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value, change only the metadata.
    pub ignore_value: bool,
    /// Keep the current lease.
    pub ignore_lease: bool,
}

impl Put {
    /// A plain put of `value` at `key`.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Put {
            key: key.into(),
            value: value.into(),
            ..Put::default()
        }
    }
}

/// etcd's DeleteRangeRequest: `key` alone, or `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRange {
    /// The first key; never empty.
    pub key: Bytes,
    /// Empty: only `key`. `\0`: every key from `key` on. Otherwise the exclusive end.
    pub range_end: Bytes,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

impl DeleteRange {
    /// Delete exactly `key`.
    pub fn key(key: impl Into<Bytes>) -> Self {
        DeleteRange {
            key: key.into(),
            ..DeleteRange::default()
        }
    }

    /// Delete `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        DeleteRange {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        }
    }

    /// Delete every key starting with `prefix` (clientv3's `WithPrefix`; an empty prefix: every
    /// key). See [`prefix_range`].
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        let (key, range_end) = prefix_range(prefix.as_ref());
        DeleteRange::range(key, range_end)
    }
}

/// Sort order of a [`Range`], as etcd's `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// No sorting (key order).
    #[default]
    None,
    /// Ascending by the sort target.
    Ascend,
    /// Descending by the sort target.
    Descend,
}

/// What a [`Range`] sorts by, as etcd's `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// etcd's RangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// The first key; never empty.
    pub key: Bytes,
    /// Empty: only `key`. `\0`: every key from `key` on. Otherwise the exclusive end.
    pub range_end: Bytes,
    /// Most keys to return, 0 for no limit.
    pub limit: i64,
    /// Read at this revision, 0 for the current one.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filter: mod revision at least this (0: no filter).
    pub min_mod_revision: i64,
    /// Filter: mod revision at most this (0: no filter).
    pub max_mod_revision: i64,
    /// Filter: create revision at least this (0: no filter).
    pub min_create_revision: i64,
    /// Filter: create revision at most this (0: no filter).
    pub max_create_revision: i64,
}

impl Range {
    /// Read exactly `key` at the current revision.
    pub fn key(key: impl Into<Bytes>) -> Self {
        Range {
            key: key.into(),
            ..Range::default()
        }
    }

    /// Read `[key, range_end)` at the current revision.
    // Named as `DeleteRange::range`: the two requests build their spans alike.
    #[allow(clippy::self_named_constructors)]
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        Range {
            key: key.into(),
            range_end: range_end.into(),
            ..Range::default()
        }
    }

    /// Read every key starting with `prefix` (clientv3's `WithPrefix`; an empty prefix: every
    /// key). See [`prefix_range`].
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        let (key, range_end) = prefix_range(prefix.as_ref());
        Range::range(key, range_end)
    }
}

/// The smallest key above every key that starts with `prefix`: clientv3's `GetPrefixRangeEnd`.
/// Where there is none (an empty prefix, or one of only `0xff` bytes) it is `"\0"`, etcd's
/// "every key from `key` on".
///
/// ```
/// use batchkv_codec::prefix_end;
/// assert_eq!(prefix_end(b"a/"), b"a0".as_slice());
/// assert_eq!(prefix_end(b"a\xff"), b"b".as_slice());
/// assert_eq!(prefix_end(b"\xff\xff"), b"\0".as_slice());
/// ```
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(b"\0")
}

/// The `(key, range_end)` of a prefix request as clientv3 builds it: `(prefix,
/// prefix_end(prefix))`, and `("\0", "\0")` (every key) for an empty prefix.
pub fn prefix_range(prefix: &[u8]) -> (Bytes, Bytes) {
    if prefix.is_empty() {
        let all = Bytes::from_static(b"\0");
        return (all.clone(), all);
    }
    (Bytes::copy_from_slice(prefix), prefix_end(prefix))
}

/// How a [`Compare`] compares, as etcd's `Compare.CompareResult`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    #[default]
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// What a [`Compare`] looks at, with the operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version.
    Version(i64),
    /// The key's create revision.
    CreateRevision(i64),
    /// The key's mod revision.
    ModRevision(i64),
    /// The key's value.
    Value(Bytes),
    /// The key's lease.
    Lease(i64),
}

/// One condition of a [`Txn`], as etcd's Compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key (the first key of a range); never empty.
    pub key: Bytes,
    /// Empty for one key, else the exclusive end of a range every key of which must match.
    pub range_end: Bytes,
    /// The comparison.
    pub op: CompareOp,
    /// The target and its operand.
    pub target: CompareTarget,
}

impl Compare {
    /// Compare one key's `target` with `op`.
    pub fn new(key: impl Into<Bytes>, op: CompareOp, target: CompareTarget) -> Self {
        Compare {
            key: key.into(),
            range_end: Bytes::new(),
            op,
            target,
        }
    }
}

/// etcd's TxnRequest: if every compare holds, the success ops run, else the failure ops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Ops when they hold: put, delete_range, range or txn.
    pub success: Vec<Op>,
    /// Ops when they do not: put, delete_range, range or txn.
    pub failure: Vec<Op>,
}

/// Grant a lease of `ttl` seconds; `id` 0 lets the state machine choose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease id, or 0.
    pub id: i64,
    /// Time to live, in seconds.
    pub ttl: i64,
}

/// Revoke lease `id` and delete its keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevoke {
    /// The lease id.
    pub id: i64,
}

/// Compact history at or below `revision`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compact {
    /// The compact revision.
    pub revision: i64,
}

/// How deeply txns may nest (a txn directly in an entry is depth 1).
///
/// Each level costs two protobuf message levels, and the decoder (prost) stops at 100; 32 keeps
/// every entry the encoder accepts decodable, with room to spare. etcd bounds nesting only by its
/// request size.
pub const MAX_TXN_DEPTH: usize = 32;

impl Op {
    /// The kind of this op.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Put(_) => OpKind::Put,
            Op::DeleteRange(_) => OpKind::DeleteRange,
            Op::Txn(_) => OpKind::Txn,
            Op::Range(_) => OpKind::Range,
            Op::LeaseGrant(_) => OpKind::LeaseGrant,
            Op::LeaseRevoke(_) => OpKind::LeaseRevoke,
            Op::Compact(_) => OpKind::Compact,
        }
    }

    /// Checks the rules every encoded and decoded op obeys.
    ///
    /// These are structural rules only; semantic limits (128 ops per txn, duplicate keys in a
    /// txn, request size) belong to the state machine, which answers with etcd's errors.
    ///
    /// # Errors
    /// [`InvalidOp`] with the path of the offending field: an empty key (put, delete_range,
    /// range, compare), an op inside a txn branch other than put, delete_range, range, txn, or
    /// txns nested deeper than [`MAX_TXN_DEPTH`].
    pub fn validate(&self) -> Result<(), InvalidOp> {
        self.validate_at(1)
    }

    fn validate_at(&self, depth: usize) -> Result<(), InvalidOp> {
        fn key(field: &'static str, key: &Bytes) -> Result<(), InvalidOp> {
            if key.is_empty() {
                Err(InvalidOp::at(field, InvalidReason::EmptyKey))
            } else {
                Ok(())
            }
        }
        match self {
            Op::Put(p) => key("put.key", &p.key),
            Op::DeleteRange(d) => key("delete_range.key", &d.key),
            Op::Range(r) => key("range.key", &r.key),
            Op::Txn(t) => {
                if depth > MAX_TXN_DEPTH {
                    return Err(InvalidOp::at(
                        "",
                        InvalidReason::TooDeep { max: MAX_TXN_DEPTH },
                    ));
                }
                for (i, c) in t.compares.iter().enumerate() {
                    key("key", &c.key).map_err(|e| e.within(format!("txn.compare[{i}]")))?;
                }
                for (branch, ops) in [("success", &t.success), ("failure", &t.failure)] {
                    for (i, op) in ops.iter().enumerate() {
                        let within = || format!("txn.{branch}[{i}]");
                        match op.kind() {
                            OpKind::Put | OpKind::DeleteRange | OpKind::Range => {
                                op.validate_at(depth).map_err(|e| e.within(within()))?;
                            }
                            OpKind::Txn => {
                                op.validate_at(depth + 1).map_err(|e| e.within(within()))?;
                            }
                            kind => {
                                return Err(InvalidOp::at(
                                    String::new(),
                                    InvalidReason::NotAllowedInTxn { kind },
                                )
                                .within(within()));
                            }
                        }
                    }
                }
                Ok(())
            }
            Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::Compact(_) => Ok(()),
        }
    }
}

impl From<Put> for Op {
    fn from(v: Put) -> Self {
        Op::Put(v)
    }
}

impl From<DeleteRange> for Op {
    fn from(v: DeleteRange) -> Self {
        Op::DeleteRange(v)
    }
}

impl From<Txn> for Op {
    fn from(v: Txn) -> Self {
        Op::Txn(v)
    }
}

impl From<Range> for Op {
    fn from(v: Range) -> Self {
        Op::Range(v)
    }
}

impl From<LeaseGrant> for Op {
    fn from(v: LeaseGrant) -> Self {
        Op::LeaseGrant(v)
    }
}

impl From<LeaseRevoke> for Op {
    fn from(v: LeaseRevoke) -> Self {
        Op::LeaseRevoke(v)
    }
}

impl From<Compact> for Op {
    fn from(v: Compact) -> Self {
        Op::Compact(v)
    }
}

//! Responses, shaped as etcd's (the header reduced to its revision).

use crate::kv::KeyValue;

/// etcd's RangeResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's revision when the read ran (also when it read an older revision).
    pub revision: i64,
    /// The keys, at most `limit`.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys than `limit` matched (after the revision filters).
    pub more: bool,
    /// How many keys the range held at the read revision (before the revision filters and
    /// the limit), as etcd counts.
    pub count: i64,
}

/// etcd's PutResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The put's revision.
    pub revision: i64,
    /// The key before the put, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's DeleteRangeResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// The delete's revision, or the current one when nothing was deleted.
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted keys, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// etcd's TxnResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// The txn's revision (the current one for a txn that wrote nothing). A txn nested in
    /// another has 0 here, as etcd.
    pub revision: i64,
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    /// One response per op of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// etcd's CompactionResponse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactResponse {
    /// The current revision (compaction does not move it).
    pub revision: i64,
}

/// etcd's LeaseGrantResponse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    /// The current revision (a grant does not move it).
    pub revision: i64,
    /// The lease id (allocated when the request gave 0).
    pub id: i64,
    /// The TTL granted (at least the minimum TTL).
    pub ttl: i64,
}

/// etcd's LeaseRevokeResponse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    /// The revision that deleted the lease's keys, or the current one if it had none.
    pub revision: i64,
}

/// The answer to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResponse {
    /// To a put.
    Put(PutResponse),
    /// To a delete.
    DeleteRange(DeleteRangeResponse),
    /// To a read.
    Range(RangeResponse),
    /// To a txn.
    Txn(TxnResponse),
    /// To a compaction.
    Compact(CompactResponse),
    /// To a lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// To a lease revoke.
    LeaseRevoke(LeaseRevokeResponse),
}

impl OpResponse {
    /// The header revision.
    pub fn revision(&self) -> i64 {
        match self {
            OpResponse::Put(r) => r.revision,
            OpResponse::DeleteRange(r) => r.revision,
            OpResponse::Range(r) => r.revision,
            OpResponse::Txn(r) => r.revision,
            OpResponse::Compact(r) => r.revision,
            OpResponse::LeaseGrant(r) => r.revision,
            OpResponse::LeaseRevoke(r) => r.revision,
        }
    }
}

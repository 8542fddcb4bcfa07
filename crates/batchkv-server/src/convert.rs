//! etcd's protobuf messages to batchkv's ops, and batchkv's answers back.

use batchkv::{
    Compare, CompareOp, CompareTarget, DeleteRange, EventKind, KeyValue, Op, OpResponse, Put,
    Range, SortOrder, SortTarget, Txn, WatchEvent,
};
use tonic::Status;

use crate::error::bad_enum;
use crate::pb::{etcdserverpb as pb, mvccpb};

/// A header with the revision only: what etcd puts in the responses nested in a txn's.
fn rev_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..pb::ResponseHeader::default()
    })
}

pub fn range(r: pb::RangeRequest) -> Result<Range, Status> {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    let sort_order = match O::try_from(r.sort_order) {
        Ok(O::None) => SortOrder::None,
        Ok(O::Ascend) => SortOrder::Ascend,
        Ok(O::Descend) => SortOrder::Descend,
        Err(_) => return Err(bad_enum("sort order", r.sort_order)),
    };
    let sort_target = match T::try_from(r.sort_target) {
        Ok(T::Key) => SortTarget::Key,
        Ok(T::Version) => SortTarget::Version,
        Ok(T::Create) => SortTarget::Create,
        Ok(T::Mod) => SortTarget::Mod,
        Ok(T::Value) => SortTarget::Value,
        Err(_) => return Err(bad_enum("sort target", r.sort_target)),
    };
    Ok(Range {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put(r: pb::PutRequest) -> Put {
    Put {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_range(r: pb::DeleteRangeRequest) -> DeleteRange {
    DeleteRange {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

pub fn txn(r: pb::TxnRequest) -> Result<Txn, Status> {
    Ok(Txn {
        compares: r
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: r
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: r
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let op = match R::try_from(c.result) {
        Ok(R::Equal) => CompareOp::Equal,
        Ok(R::Greater) => CompareOp::Greater,
        Ok(R::Less) => CompareOp::Less,
        Ok(R::NotEqual) => CompareOp::NotEqual,
        Err(_) => return Err(bad_enum("compare result", c.result)),
    };
    // As etcd: the target says which value to compare; a value of another kind reads as
    // the zero value (Go's getters).
    let u = c.target_union;
    let num = |pick: fn(&U) -> Option<i64>| u.as_ref().and_then(pick).unwrap_or(0);
    let target = match T::try_from(c.target) {
        Ok(T::Version) => CompareTarget::Version(num(|u| match u {
            U::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Create) => CompareTarget::CreateRevision(num(|u| match u {
            U::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Mod) => CompareTarget::ModRevision(num(|u| match u {
            U::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Lease) => CompareTarget::Lease(num(|u| match u {
            U::Lease(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Value) => CompareTarget::Value(match u {
            Some(U::Value(v)) => v,
            _ => Default::default(),
        }),
        Err(_) => return Err(bad_enum("compare target", c.target)),
    };
    Ok(Compare {
        key: c.key,
        range_end: c.range_end,
        op,
        target,
    })
}

fn request_op(op: pb::RequestOp) -> Result<Op, Status> {
    use pb::request_op::Request as R;
    Ok(match op.request {
        Some(R::RequestRange(r)) => Op::Range(range(r)?),
        Some(R::RequestPut(r)) => Op::Put(put(r)),
        Some(R::RequestDeleteRange(r)) => Op::DeleteRange(delete_range(r)),
        Some(R::RequestTxn(r)) => Op::Txn(txn(r)?),
        None => {
            return Err(Status::invalid_argument(
                "etcdserver: a txn request op is empty",
            ));
        }
    })
}

pub fn kv(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_response(
    header: Option<pb::ResponseHeader>,
    r: batchkv::RangeResponse,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(
    header: Option<pb::ResponseHeader>,
    r: batchkv::PutResponse,
) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: r.prev_kv.map(kv),
    }
}

pub fn delete_response(
    header: Option<pb::ResponseHeader>,
    r: batchkv::DeleteRangeResponse,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

pub fn txn_response(
    header: Option<pb::ResponseHeader>,
    r: batchkv::TxnResponse,
) -> pb::TxnResponse {
    pb::TxnResponse {
        header,
        succeeded: r.succeeded,
        responses: r.responses.into_iter().map(response_op).collect(),
    }
}

fn response_op(r: OpResponse) -> pb::ResponseOp {
    use pb::response_op::Response as R;
    let h = rev_header(r.revision());
    let response = match r {
        OpResponse::Range(r) => R::ResponseRange(range_response(h, r)),
        OpResponse::Put(r) => R::ResponsePut(put_response(h, r)),
        OpResponse::DeleteRange(r) => R::ResponseDeleteRange(delete_response(h, r)),
        OpResponse::Txn(r) => R::ResponseTxn(txn_response(h, r)),
        // A txn holds only the four above (the codec refuses others inside one).
        OpResponse::Compact(_) | OpResponse::LeaseGrant(_) | OpResponse::LeaseRevoke(_) => {
            return pb::ResponseOp { response: None };
        }
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

pub fn event(e: WatchEvent) -> mvccpb::Event {
    let kind = match e.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(kv(e.kv)),
        prev_kv: e.prev_kv.map(kv),
    }
}

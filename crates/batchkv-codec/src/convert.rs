//! Conversion between the wire structs and the domain types.
//!
//! Domain to wire is infallible (byte fields are `Bytes`, so this copies no key or value).
//! Wire to domain checks structure (enum values, type/body agreement, compare operands), then
//! [`Op::validate`] checks the rules shared with the encoder.

use crate::error::{InvalidOp, InvalidReason};
use crate::op::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, LeaseGrant, LeaseRevoke, Op, OpKind,
    Put, Range, SortOrder, SortTarget, Txn,
};
use crate::wire::{self, compare, operation::Request, range_request};

pub(crate) fn op_to_wire(op: &Op) -> wire::Operation {
    let (ty, request) = match op {
        Op::Put(p) => (
            wire::OpType::Put,
            Request::Put(wire::PutRequest {
                key: p.key.clone(),
                value: p.value.clone(),
                lease: p.lease,
                prev_kv: p.prev_kv,
                ignore_value: p.ignore_value,
                ignore_lease: p.ignore_lease,
            }),
        ),
        Op::DeleteRange(d) => (
            wire::OpType::DeleteRange,
            Request::DeleteRange(wire::DeleteRangeRequest {
                key: d.key.clone(),
                range_end: d.range_end.clone(),
                prev_kv: d.prev_kv,
            }),
        ),
        Op::Txn(t) => (
            wire::OpType::Txn,
            Request::Txn(wire::TxnRequest {
                compare: t.compares.iter().map(compare_to_wire).collect(),
                success: t.success.iter().map(op_to_wire).collect(),
                failure: t.failure.iter().map(op_to_wire).collect(),
            }),
        ),
        Op::Range(r) => (
            wire::OpType::Range,
            Request::Range(wire::RangeRequest {
                key: r.key.clone(),
                range_end: r.range_end.clone(),
                limit: r.limit,
                revision: r.revision,
                sort_order: sort_order_to_wire(r.sort_order) as i32,
                sort_target: sort_target_to_wire(r.sort_target) as i32,
                keys_only: r.keys_only,
                count_only: r.count_only,
                min_mod_revision: r.min_mod_revision,
                max_mod_revision: r.max_mod_revision,
                min_create_revision: r.min_create_revision,
                max_create_revision: r.max_create_revision,
            }),
        ),
        Op::LeaseGrant(g) => (
            wire::OpType::LeaseGrant,
            Request::LeaseGrant(wire::LeaseGrantRequest {
                ttl: g.ttl,
                id: g.id,
            }),
        ),
        Op::LeaseRevoke(r) => (
            wire::OpType::LeaseRevoke,
            Request::LeaseRevoke(wire::LeaseRevokeRequest { id: r.id }),
        ),
        Op::Compact(c) => (
            wire::OpType::Compact,
            Request::Compact(wire::CompactRequest {
                revision: c.revision,
            }),
        ),
    };
    wire::Operation {
        r#type: ty as i32,
        request: Some(request),
    }
}

fn compare_to_wire(c: &Compare) -> wire::Compare {
    let (target, operand) = match &c.target {
        CompareTarget::Version(v) => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(*v),
        ),
        CompareTarget::CreateRevision(v) => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(*v),
        ),
        CompareTarget::ModRevision(v) => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(*v),
        ),
        CompareTarget::Value(v) => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(v.clone()),
        ),
        CompareTarget::Lease(v) => (
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(*v),
        ),
    };
    let result = match c.op {
        CompareOp::Equal => compare::CompareResult::Equal,
        CompareOp::Greater => compare::CompareResult::Greater,
        CompareOp::Less => compare::CompareResult::Less,
        CompareOp::NotEqual => compare::CompareResult::NotEqual,
    };
    wire::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key.clone(),
        target_union: Some(operand),
        range_end: c.range_end.clone(),
    }
}

fn sort_order_to_wire(o: SortOrder) -> range_request::SortOrder {
    match o {
        SortOrder::None => range_request::SortOrder::None,
        SortOrder::Ascend => range_request::SortOrder::Ascend,
        SortOrder::Descend => range_request::SortOrder::Descend,
    }
}

fn sort_target_to_wire(t: SortTarget) -> range_request::SortTarget {
    match t {
        SortTarget::Key => range_request::SortTarget::Key,
        SortTarget::Version => range_request::SortTarget::Version,
        SortTarget::Create => range_request::SortTarget::Create,
        SortTarget::Mod => range_request::SortTarget::Mod,
        SortTarget::Value => range_request::SortTarget::Value,
    }
}

fn op_kind_from_wire(ty: i32) -> Result<OpKind, InvalidOp> {
    let kind = match wire::OpType::try_from(ty) {
        Ok(wire::OpType::Put) => OpKind::Put,
        Ok(wire::OpType::DeleteRange) => OpKind::DeleteRange,
        Ok(wire::OpType::Txn) => OpKind::Txn,
        Ok(wire::OpType::Range) => OpKind::Range,
        Ok(wire::OpType::LeaseGrant) => OpKind::LeaseGrant,
        Ok(wire::OpType::LeaseRevoke) => OpKind::LeaseRevoke,
        Ok(wire::OpType::Compact) => OpKind::Compact,
        Ok(wire::OpType::Unspecified) | Err(_) => {
            return Err(InvalidOp::at("type", InvalidReason::UnknownOpType(ty)));
        }
    };
    Ok(kind)
}

/// Converts a wire operation and validates it.
pub(crate) fn op_from_wire(w: wire::Operation) -> Result<Op, InvalidOp> {
    let op = op_from_wire_unchecked(w)?;
    op.validate()?;
    Ok(op)
}

impl TryFrom<wire::Operation> for Op {
    type Error = InvalidOp;

    /// Checks a raw protobuf operation (structure, then [`Op::validate`]) and converts it, for
    /// tools that decode the wire messages themselves. The decoder uses the same conversion.
    fn try_from(w: wire::Operation) -> Result<Op, InvalidOp> {
        op_from_wire(w)
    }
}

/// Structural conversion only; [`Op::validate`] runs once, at the top, on the whole tree.
fn op_from_wire_unchecked(w: wire::Operation) -> Result<Op, InvalidOp> {
    let Some(request) = w.request else {
        let kind = op_kind_from_wire(w.r#type)?;
        return Err(InvalidOp::at("", InvalidReason::MissingRequest { kind }));
    };
    // The body decides the op; the declared type only has to agree with it.
    let (body, op) = match request {
        Request::Put(p) => (
            wire::OpType::Put,
            Op::Put(Put {
                key: p.key,
                value: p.value,
                lease: p.lease,
                prev_kv: p.prev_kv,
                ignore_value: p.ignore_value,
                ignore_lease: p.ignore_lease,
            }),
        ),
        Request::DeleteRange(d) => (
            wire::OpType::DeleteRange,
            Op::DeleteRange(DeleteRange {
                key: d.key,
                range_end: d.range_end,
                prev_kv: d.prev_kv,
            }),
        ),
        Request::Range(r) => (
            wire::OpType::Range,
            Op::Range(range_from_wire(r).map_err(|e| e.within("range"))?),
        ),
        Request::Txn(t) => {
            let compares = t
                .compare
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    compare_from_wire(c).map_err(|e| e.within(format!("txn.compare[{i}]")))
                })
                .collect::<Result<_, _>>()?;
            let branch = |name: &str, ops: Vec<wire::Operation>| {
                ops.into_iter()
                    .enumerate()
                    .map(|(i, o)| {
                        op_from_wire_unchecked(o).map_err(|e| e.within(format!("txn.{name}[{i}]")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let txn = Txn {
                compares,
                success: branch("success", t.success)?,
                failure: branch("failure", t.failure)?,
            };
            (wire::OpType::Txn, Op::Txn(txn))
        }
        Request::LeaseGrant(g) => (
            wire::OpType::LeaseGrant,
            Op::LeaseGrant(LeaseGrant {
                id: g.id,
                ttl: g.ttl,
            }),
        ),
        Request::LeaseRevoke(r) => (
            wire::OpType::LeaseRevoke,
            Op::LeaseRevoke(LeaseRevoke { id: r.id }),
        ),
        Request::Compact(c) => (
            wire::OpType::Compact,
            Op::Compact(Compact {
                revision: c.revision,
            }),
        ),
    };
    if w.r#type != body as i32 {
        let kind = op_kind_from_wire(w.r#type)?;
        return Err(InvalidOp::at(
            "",
            InvalidReason::TypeMismatch {
                kind,
                body: op.kind(),
            },
        ));
    }
    Ok(op)
}

fn range_from_wire(r: wire::RangeRequest) -> Result<Range, InvalidOp> {
    let sort_order = match range_request::SortOrder::try_from(r.sort_order) {
        Ok(range_request::SortOrder::None) => SortOrder::None,
        Ok(range_request::SortOrder::Ascend) => SortOrder::Ascend,
        Ok(range_request::SortOrder::Descend) => SortOrder::Descend,
        Err(_) => return Err(unknown_enum("sort_order", r.sort_order)),
    };
    let sort_target = match range_request::SortTarget::try_from(r.sort_target) {
        Ok(range_request::SortTarget::Key) => SortTarget::Key,
        Ok(range_request::SortTarget::Version) => SortTarget::Version,
        Ok(range_request::SortTarget::Create) => SortTarget::Create,
        Ok(range_request::SortTarget::Mod) => SortTarget::Mod,
        Ok(range_request::SortTarget::Value) => SortTarget::Value,
        Err(_) => return Err(unknown_enum("sort_target", r.sort_target)),
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

fn unknown_enum(field: &'static str, value: i32) -> InvalidOp {
    InvalidOp::at(field, InvalidReason::UnknownEnum { field, value })
}

fn compare_from_wire(c: wire::Compare) -> Result<Compare, InvalidOp> {
    let op = match compare::CompareResult::try_from(c.result) {
        Ok(compare::CompareResult::Equal) => CompareOp::Equal,
        Ok(compare::CompareResult::Greater) => CompareOp::Greater,
        Ok(compare::CompareResult::Less) => CompareOp::Less,
        Ok(compare::CompareResult::NotEqual) => CompareOp::NotEqual,
        Err(_) => return Err(unknown_enum("result", c.result)),
    };
    let target_name = |t: compare::CompareTarget| match t {
        compare::CompareTarget::Version => "version",
        compare::CompareTarget::Create => "create_revision",
        compare::CompareTarget::Mod => "mod_revision",
        compare::CompareTarget::Value => "value",
        compare::CompareTarget::Lease => "lease",
    };
    let declared =
        compare::CompareTarget::try_from(c.target).map_err(|_| unknown_enum("target", c.target))?;
    let operand = c
        .target_union
        .ok_or_else(|| InvalidOp::at("", InvalidReason::MissingCompareValue))?;
    let (found, target) = match operand {
        compare::TargetUnion::Version(v) => {
            (compare::CompareTarget::Version, CompareTarget::Version(v))
        }
        compare::TargetUnion::CreateRevision(v) => (
            compare::CompareTarget::Create,
            CompareTarget::CreateRevision(v),
        ),
        compare::TargetUnion::ModRevision(v) => {
            (compare::CompareTarget::Mod, CompareTarget::ModRevision(v))
        }
        compare::TargetUnion::Value(v) => (compare::CompareTarget::Value, CompareTarget::Value(v)),
        compare::TargetUnion::Lease(v) => (compare::CompareTarget::Lease, CompareTarget::Lease(v)),
    };
    if found != declared {
        return Err(InvalidOp::at(
            "",
            InvalidReason::CompareMismatch {
                target: target_name(declared),
                operand: target_name(found),
            },
        ));
    }
    Ok(Compare {
        key: c.key,
        range_end: c.range_end,
        op,
        target,
    })
}

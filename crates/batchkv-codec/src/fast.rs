//! The decoder's fast path: the common operations, decoded straight into domain types.
//!
//! A batch is mostly puts and deletes. Decoding them with prost builds a `wire::Operation` per op
//! and then moves every field into an [`Op`]; here the bytes go straight into the `Op`. Only the
//! canonical form the encoder writes is handled: `type` first, then the one request field, and
//! nothing after it, with known fields only. Anything else (other op types, unknown or repeated
//! fields out of order, malformed input, an op that fails validation) returns `None`, and the
//! general path (prost, then the checked conversion) decodes it and produces every error message.
//! A property test and the `codec_decode` fuzz target check that whatever this path accepts, the
//! general path decodes to the same op.

use bytes::Bytes;

use crate::op::{DeleteRange, Op, Put};
use crate::scan::{take, varint};

/// Key bytes of the fields this path reads (field number << 3 | wire type).
const TYPE: u64 = 0x08;
const PUT_BODY: u64 = 0x12;
const DELETE_RANGE_BODY: u64 = 0x1a;
const PUT: u64 = 1;
const DELETE_RANGE: u64 = 2;

fn bytes_field(b: &mut &[u8]) -> Option<Bytes> {
    let len = varint(b).ok()?;
    take(b, len).ok().map(Bytes::copy_from_slice)
}

fn varint_field(b: &mut &[u8]) -> Option<u64> {
    varint(b).ok()
}

fn put(mut b: &[u8]) -> Option<Put> {
    let mut p = Put::default();
    while !b.is_empty() {
        // Repeated scalar fields: the last one wins, as protobuf (and prost) have it.
        match varint(&mut b).ok()? {
            0x0a => p.key = bytes_field(&mut b)?,
            0x12 => p.value = bytes_field(&mut b)?,
            0x18 => p.lease = varint_field(&mut b)? as i64,
            0x20 => p.prev_kv = varint_field(&mut b)? != 0,
            0x28 => p.ignore_value = varint_field(&mut b)? != 0,
            0x30 => p.ignore_lease = varint_field(&mut b)? != 0,
            _ => return None,
        }
    }
    Some(p)
}

fn delete_range(mut b: &[u8]) -> Option<DeleteRange> {
    let mut d = DeleteRange::default();
    while !b.is_empty() {
        match varint(&mut b).ok()? {
            0x0a => d.key = bytes_field(&mut b)?,
            0x12 => d.range_end = bytes_field(&mut b)?,
            0x18 => d.prev_kv = varint_field(&mut b)? != 0,
            _ => return None,
        }
    }
    Some(d)
}

/// Decodes one encoded `Operation` if it is a canonical, valid put or delete_range.
pub(crate) fn decode_op(mut bytes: &[u8]) -> Option<Op> {
    if varint(&mut bytes).ok()? != TYPE {
        return None;
    }
    let ty = varint(&mut bytes).ok()?;
    let body_key = varint(&mut bytes).ok()?;
    let len = varint(&mut bytes).ok()?;
    let body = take(&mut bytes, len).ok()?;
    if !bytes.is_empty() {
        return None;
    }
    let op = match (ty, body_key) {
        (PUT, PUT_BODY) => Op::Put(put(body)?),
        (DELETE_RANGE, DELETE_RANGE_BODY) => Op::DeleteRange(delete_range(body)?),
        _ => return None,
    };
    op.validate().ok()?;
    Some(op)
}

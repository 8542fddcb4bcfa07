//! The codec's properties as functions, for the fuzz targets (`fuzz/fuzz_targets/codec_*.rs`) and
//! the property tests, which call the same code. Each panics when its property fails.
//!
//! Enabled by the `fuzzing` feature; not part of the stable API.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};

use crate::{
    Compact, Compare, CompareOp, CompareTarget, Compression, Decoder, DeleteRange, Encoder, Format,
    LeaseGrant, LeaseRevoke, Limits, Op, Put, Range, SortOrder, SortTarget, Txn, encode_legacy,
    encode_operation,
};

/// Re-encodes decoded ops in the format they came in.
fn reencode(ops: &[Op], format: Format) -> Vec<u8> {
    let mut buf = BytesMut::new();
    match format {
        Format::Entry => {
            Encoder::default()
                .encode_entry(ops, &mut buf)
                .expect("decoded ops re-encode as an entry");
        }
        Format::Operation => {
            encode_operation(&ops[0], &mut buf).expect("a decoded op re-encodes bare");
        }
        Format::Legacy => return encode_legacy(&ops[0]).expect("a legacy op re-encodes"),
    }
    buf.to_vec()
}

/// Property: whatever the decoder's fast path accepts as an operation, the general path (prost
/// and the checked conversion) decodes to the same op.
pub fn fast_path_agrees(data: &[u8]) {
    if let Some(op) = crate::fast::decode_op(data) {
        let general = crate::decode::decode_op_general(0, data)
            .unwrap_or_else(|e| panic!("fast path took {op:?}, general path refused: {e}"));
        assert_eq!(general, op, "fast and general paths disagree");
    }
}

/// Property: decoding arbitrary bytes never panics, and whatever decodes re-encodes (in the
/// format it matched) to bytes that decode to the same ops in the same format.
pub fn decode(data: &[u8]) {
    fast_path_agrees(data);
    let tight = Decoder::new(Limits {
        max_entry_bytes: 4096,
        max_ops: 4,
    });
    for decoder in [Decoder::default(), tight] {
        let Ok(decoded) = decoder.decode(data) else {
            continue;
        };
        assert!(!decoded.ops.is_empty(), "a decoded entry has ops");
        let first = data[0];
        let expected_first = match decoded.format {
            Format::Entry => crate::ENTRY_FIRST_BYTE,
            Format::Operation => crate::OPERATION_FIRST_BYTE,
            Format::Legacy => crate::LEGACY_FIRST_BYTE,
        };
        assert_eq!(
            first, expected_first,
            "format {:?} starts with its byte",
            decoded.format
        );
        let again = Decoder::default()
            .decode(&reencode(&decoded.ops, decoded.format))
            .expect("re-encoded ops decode");
        assert_eq!(again.format, decoded.format);
        assert_eq!(again.ops, decoded.ops);
    }
}

/// Property: arbitrary valid ops encode and decode back to themselves, in every format that can
/// carry them, compressed or not, and `encoded_len` is exact.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = arbitrary_ops(&mut u, 64) else {
        return;
    };
    check_roundtrip(&ops);
}

/// The roundtrip property for given ops (1 or more, valid).
pub fn check_roundtrip(ops: &[Op]) {
    let plain = Encoder::default();
    let mut buf = BytesMut::new();
    let written = plain.encode_entry(ops, &mut buf).expect("valid ops encode");
    assert_eq!(written, buf.len());
    assert_eq!(plain.encoded_len(ops), buf.len(), "encoded_len is exact");
    let decoded = Decoder::default()
        .decode(&buf)
        .expect("an encoded entry decodes");
    assert_eq!(decoded.format, Format::Entry);
    assert!(!decoded.compressed);
    assert_eq!(decoded.ops, ops);

    let lz4 = Encoder::new(Limits::default(), Compression::Lz4 { min_bytes: 0 });
    let mut buf = BytesMut::new();
    lz4.encode_entry(ops, &mut buf)
        .expect("valid ops encode compressed");
    let decoded = Decoder::default()
        .decode(&buf)
        .expect("a compressed entry decodes");
    assert_eq!(decoded.format, Format::Entry);
    assert_eq!(decoded.ops, ops);

    for op in ops {
        let mut buf = BytesMut::new();
        encode_operation(op, &mut buf).expect("a valid op encodes bare");
        let decoded = Decoder::default().decode(&buf).expect("a bare op decodes");
        assert_eq!(decoded.format, Format::Operation);
        assert_eq!(decoded.ops, std::slice::from_ref(op));
        if let Ok(record) = encode_legacy(op) {
            let decoded = Decoder::default()
                .decode(&record)
                .expect("a legacy record decodes");
            assert_eq!(decoded.format, Format::Legacy);
            assert_eq!(decoded.ops, std::slice::from_ref(op));
        }
    }
}

fn bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    let len = u.int_in_range(0..=24)?;
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

fn key(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    let len = u.int_in_range(1..=16)?;
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

/// Builds between 1 and `max` valid ops from fuzzer input.
///
/// # Errors
/// When the input runs out before one op is built.
pub fn arbitrary_ops(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<Vec<Op>> {
    let n = u.int_in_range(1..=max.max(1))?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        match arbitrary_op(u, 2) {
            Ok(op) => ops.push(op),
            Err(e) if ops.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(ops)
}

fn arbitrary_op(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Op> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Op::Put(Put {
            key: key(u)?,
            value: bytes(u)?,
            lease: i64::arbitrary(u)?,
            prev_kv: bool::arbitrary(u)?,
            ignore_value: bool::arbitrary(u)?,
            ignore_lease: bool::arbitrary(u)?,
        }),
        1 => Op::DeleteRange(DeleteRange {
            key: key(u)?,
            range_end: bytes(u)?,
            prev_kv: bool::arbitrary(u)?,
        }),
        2 => Op::Range(arbitrary_range(u)?),
        3 if depth > 0 => Op::Txn(arbitrary_txn(u, depth - 1)?),
        3 | 4 => Op::LeaseGrant(LeaseGrant {
            id: i64::arbitrary(u)?,
            ttl: i64::arbitrary(u)?,
        }),
        5 => Op::LeaseRevoke(LeaseRevoke {
            id: i64::arbitrary(u)?,
        }),
        _ => Op::Compact(Compact {
            revision: i64::arbitrary(u)?,
        }),
    })
}

fn arbitrary_range(u: &mut Unstructured<'_>) -> arbitrary::Result<Range> {
    Ok(Range {
        key: key(u)?,
        range_end: bytes(u)?,
        limit: i64::arbitrary(u)?,
        revision: i64::arbitrary(u)?,
        sort_order: *u.choose(&[SortOrder::None, SortOrder::Ascend, SortOrder::Descend])?,
        sort_target: *u.choose(&[
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ])?,
        keys_only: bool::arbitrary(u)?,
        count_only: bool::arbitrary(u)?,
        min_mod_revision: i64::arbitrary(u)?,
        max_mod_revision: i64::arbitrary(u)?,
        min_create_revision: i64::arbitrary(u)?,
        max_create_revision: i64::arbitrary(u)?,
    })
}

fn arbitrary_txn(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Txn> {
    let mut compares = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let target = match u.int_in_range(0..=4)? {
            0 => CompareTarget::Version(i64::arbitrary(u)?),
            1 => CompareTarget::CreateRevision(i64::arbitrary(u)?),
            2 => CompareTarget::ModRevision(i64::arbitrary(u)?),
            3 => CompareTarget::Value(bytes(u)?),
            _ => CompareTarget::Lease(i64::arbitrary(u)?),
        };
        compares.push(Compare {
            key: key(u)?,
            range_end: bytes(u)?,
            op: *u.choose(&[
                CompareOp::Equal,
                CompareOp::Greater,
                CompareOp::Less,
                CompareOp::NotEqual,
            ])?,
            target,
        });
    }
    let branch = |u: &mut Unstructured<'_>| -> arbitrary::Result<Vec<Op>> {
        let mut ops = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let op = match u.int_in_range(0..=3)? {
                0 => Op::Put(Put {
                    key: key(u)?,
                    value: bytes(u)?,
                    ..Put::default()
                }),
                1 => Op::DeleteRange(DeleteRange::range(key(u)?, bytes(u)?)),
                2 => Op::Range(arbitrary_range(u)?),
                _ if depth > 0 => Op::Txn(arbitrary_txn(u, depth - 1)?),
                _ => Op::Range(Range::key(key(u)?)),
            };
            ops.push(op);
        }
        Ok(ops)
    };
    Ok(Txn {
        compares,
        success: branch(u)?,
        failure: branch(u)?,
    })
}

/// A stored MVCC record: decoding any bytes never panics, and what decodes re-encodes to the
/// same bytes when they were canonical (minimal varints), or to a record that decodes equal.
pub fn record(data: &[u8]) {
    let Some(r) = crate::record::decode_record(data) else {
        return;
    };
    let mut out = Vec::new();
    if r.tombstone {
        crate::record::encode_delete(&mut out, r.prev, r.key);
    } else {
        crate::record::encode_put(
            &mut out, r.created, r.version, r.lease, r.prev, r.key, r.value,
        );
    }
    assert_eq!(
        crate::record::decode_record(&out),
        Some(r),
        "a decoded record re-encodes to one that decodes differently"
    );
}

//! Property tests: encode/decode identity, format classification, and no panic on any input.
//!
//! The fuzz targets check the same properties through `batchkv_codec::fuzzing`.

use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, Compression, Decoder, DeleteRange, Encoder, Format,
    LeaseGrant, LeaseRevoke, Limits, Op, Put, Range, SortOrder, SortTarget, Txn, decode_entry,
    encode_entry, encode_legacy, encode_operation, encoded_len, fuzzing, prefix_range,
};
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

fn key() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..24).prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn put() -> impl Strategy<Value = Op> {
    (key(), value(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, f)| {
        Op::Put(Put {
            key,
            value,
            lease,
            prev_kv: f[0],
            ignore_value: f[1],
            ignore_lease: f[2],
        })
    })
}

fn delete() -> impl Strategy<Value = Op> {
    (key(), value(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
        Op::DeleteRange(DeleteRange {
            key,
            range_end,
            prev_kv,
        })
    })
}

fn range() -> impl Strategy<Value = Op> {
    let order = prop_oneof![
        Just(SortOrder::None),
        Just(SortOrder::Ascend),
        Just(SortOrder::Descend)
    ];
    let target = prop_oneof![
        Just(SortTarget::Key),
        Just(SortTarget::Version),
        Just(SortTarget::Create),
        Just(SortTarget::Mod),
        Just(SortTarget::Value)
    ];
    (
        key(),
        value(),
        any::<[i64; 6]>(),
        order,
        target,
        any::<[bool; 2]>(),
    )
        .prop_map(|(key, range_end, n, sort_order, sort_target, f)| {
            Op::Range(Range {
                key,
                range_end,
                limit: n[0],
                revision: n[1],
                sort_order,
                sort_target,
                keys_only: f[0],
                count_only: f[1],
                min_mod_revision: n[2],
                max_mod_revision: n[3],
                min_create_revision: n[4],
                max_create_revision: n[5],
            })
        })
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        any::<i64>().prop_map(CompareTarget::Version),
        any::<i64>().prop_map(CompareTarget::CreateRevision),
        any::<i64>().prop_map(CompareTarget::ModRevision),
        value().prop_map(CompareTarget::Value),
        any::<i64>().prop_map(CompareTarget::Lease),
    ];
    let op = prop_oneof![
        Just(CompareOp::Equal),
        Just(CompareOp::Greater),
        Just(CompareOp::Less),
        Just(CompareOp::NotEqual)
    ];
    (key(), value(), op, target).prop_map(|(key, range_end, op, target)| Compare {
        key,
        range_end,
        op,
        target,
    })
}

/// Ops a txn branch may hold, nested up to two txns deep.
fn txn_branch_op() -> impl Strategy<Value = Op> {
    prop_oneof![put(), delete(), range()].prop_recursive(2, 12, 3, |inner| {
        (
            vec(compare(), 0..3),
            vec(inner.clone(), 0..3),
            vec(inner, 0..3),
        )
            .prop_map(|(compares, success, failure)| {
                Op::Txn(Txn {
                    compares,
                    success,
                    failure,
                })
            })
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => put(),
        2 => delete(),
        1 => range(),
        2 => txn_branch_op(),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(id, ttl)| Op::LeaseGrant(LeaseGrant { id, ttl })),
        1 => any::<i64>().prop_map(|id| Op::LeaseRevoke(LeaseRevoke { id })),
        1 => any::<i64>().prop_map(|revision| Op::Compact(Compact { revision })),
    ]
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..=max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// encode -> decode is the identity for 1 to 1000 ops, and every entry is classified Entry.
    #[test]
    fn entry_roundtrip_up_to_1000_ops(ops in ops(1000)) {
        let mut buf = BytesMut::new();
        encode_entry(&ops, &mut buf).expect("valid ops encode");
        prop_assert_eq!(buf.len(), encoded_len(&ops));
        let decoded = decode_entry(&buf).expect("encoded entry decodes");
        prop_assert_eq!(decoded.format, Format::Entry);
        prop_assert_eq!(decoded.ops, ops);
    }

    /// Compressed batches decode to the same ops, and are only used when smaller.
    #[test]
    fn compressed_roundtrip(ops in ops(200)) {
        let lz4 = Encoder::new(Limits::default(), Compression::Lz4 { min_bytes: 0 });
        let mut buf = BytesMut::new();
        lz4.encode_entry(&ops, &mut buf).expect("valid ops encode");
        prop_assert!(buf.len() <= encoded_len(&ops));
        let decoded = decode_entry(&buf).expect("compressed entry decodes");
        prop_assert_eq!(decoded.format, Format::Entry);
        prop_assert_eq!(decoded.ops, ops);
    }

    /// Every bare operation is classified Operation, every legacy record Legacy.
    #[test]
    fn bare_and_legacy_classify(op in op()) {
        let mut buf = BytesMut::new();
        encode_operation(&op, &mut buf).expect("valid op encodes");
        let decoded = decode_entry(&buf).expect("bare op decodes");
        prop_assert_eq!(decoded.format, Format::Operation);
        prop_assert_eq!(&decoded.ops, std::slice::from_ref(&op));
        match encode_legacy(&op) {
            Ok(record) => {
                let decoded = decode_entry(&record).expect("legacy record decodes");
                prop_assert_eq!(decoded.format, Format::Legacy);
                prop_assert_eq!(&decoded.ops, std::slice::from_ref(&op));
            }
            Err(e) => prop_assert!(matches!(op, Op::Txn(_) | Op::Range(_)), "{e}"),
        }
    }

    /// Arbitrary bytes never panic, and what decodes re-encodes to itself.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512)) {
        fuzzing::decode(&data);
    }

    /// Arbitrary bytes behind each format's first byte reach deeper layers, still without panic.
    #[test]
    fn arbitrary_bytes_behind_each_first_byte(first in prop::sample::select(vec![0x0du8, 0x08, b'{']), rest in vec(any::<u8>(), 0..256)) {
        let mut data = vec![first];
        if first == 0x0d {
            data.extend_from_slice(b"BKV1");
        }
        data.extend_from_slice(&rest);
        fuzzing::decode(&data);
    }

    /// Valid entries with bytes flipped, cut or extended never panic.
    #[test]
    fn mutated_entries_never_panic(ops in ops(20), edits in vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut buf = BytesMut::new();
        encode_entry(&ops, &mut buf).expect("valid ops encode");
        let mut data = buf.to_vec();
        for (at, byte) in edits {
            let at = at % data.len();
            data[at] ^= byte;
        }
        data.truncate(cut % (data.len() + 1));
        fuzzing::decode(&data);
    }

    /// The fast path and the general path agree on everything the fast path accepts: random
    /// bodies behind a put or delete_range header, and encoded ops with bytes flipped.
    #[test]
    fn fast_path_agrees_with_prost(
        header in prop::sample::select(vec![vec![0x08u8, 0x01, 0x12], vec![0x08, 0x02, 0x1a]]),
        body in vec(any::<u8>(), 0..48),
        op in prop_oneof![put(), delete()],
        flips in vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        let mut data = header;
        data.push(body.len() as u8);
        data.extend_from_slice(&body);
        fuzzing::fast_path_agrees(&data);

        let mut buf = BytesMut::new();
        encode_operation(&op, &mut buf).expect("valid op encodes");
        let mut data = buf.to_vec();
        for (at, byte) in flips {
            let at = at % data.len();
            data[at] ^= byte;
        }
        fuzzing::fast_path_agrees(&data);
    }

    /// The structured fuzz property, driven by proptest.
    #[test]
    fn prefix_range_holds_exactly_the_keys_with_the_prefix(
        prefix in vec(prop::sample::select(vec![0u8, 1, 0x7f, 0xfe, 0xff]), 0..4),
        key in vec(prop::sample::select(vec![0u8, 1, 0x7f, 0xfe, 0xff]), 0..6),
    ) {
        // etcd's range: `[key, range_end)`, with range_end "\0" meaning "no end".
        let (start, end) = prefix_range(&prefix);
        let inside = key.as_slice() >= start.as_ref() && (end.as_ref() == b"\0" || key.as_slice() < end.as_ref());
        let starts = key.starts_with(&prefix) && !(prefix.is_empty() && key.is_empty());
        prop_assert_eq!(inside, starts, "prefix {:?} range [{:?}, {:?}) key {:?}", prefix, start, end, key);
        prop_assert_eq!(Range::prefix(&prefix).range_end, end.clone());
        prop_assert_eq!(DeleteRange::prefix(&prefix).key, start);
    }

    #[test]
    fn fuzz_roundtrip_property(data in vec(any::<u8>(), 0..2048)) {
        fuzzing::roundtrip(&data);
    }
}

#[test]
fn too_many_ops_is_refused_before_decoding() {
    let ops: Vec<Op> = (0..10)
        .map(|i| Op::Put(Put::new(format!("k{i}"), "v")))
        .collect();
    let mut buf = BytesMut::new();
    encode_entry(&ops, &mut buf).expect("encodes");
    let tight = Decoder::new(Limits {
        max_entry_bytes: 1 << 20,
        max_ops: 9,
    });
    let err = tight.decode(&buf).expect_err("over the op limit");
    assert!(
        err.to_string()
            .contains("as entry: 10 operations exceed the limit of 9"),
        "{err}"
    );
    let small = Decoder::new(Limits {
        max_entry_bytes: buf.len() - 1,
        max_ops: 100,
    });
    assert_eq!(
        small
            .decode(&buf)
            .expect_err("over the size limit")
            .to_string(),
        format!(
            "entry of {} bytes exceeds the limit of {} bytes",
            buf.len(),
            buf.len() - 1
        )
    );
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let limits = Limits {
        max_entry_bytes: 64,
        max_ops: 2,
    };
    let enc = Encoder::new(limits, Compression::None);
    let three: Vec<Op> = (0..3).map(|i| Op::Put(Put::new(vec![i + 1], ""))).collect();
    let mut buf = BytesMut::new();
    assert_eq!(
        enc.encode_entry(&three, &mut buf)
            .expect_err("3 ops")
            .to_string(),
        "3 operations exceed the limit of 2"
    );
    let big = [Op::Put(Put::new("k", vec![0u8; 100]))];
    assert!(
        enc.encode_entry(&big, &mut buf)
            .expect_err("too large")
            .to_string()
            .starts_with("entry of 1")
    );
    assert!(buf.is_empty(), "a failed encode writes nothing");
    assert_eq!(
        enc.encode_entry(&[], &mut buf)
            .expect_err("empty")
            .to_string(),
        "an entry needs at least one operation"
    );
}

#[test]
fn compression_flags_and_shrinks_compressible_batches() {
    let ops: Vec<Op> = (0..1000)
        .map(|i| Op::Put(Put::new(format!("key-{i:012}"), vec![b'x'; 100])))
        .collect();
    let lz4 = Encoder::new(Limits::default(), Compression::Lz4 { min_bytes: 4096 });
    let mut buf = BytesMut::new();
    lz4.encode_entry(&ops, &mut buf).expect("encodes");
    assert!(
        buf.len() * 4 < encoded_len(&ops),
        "{} vs {}",
        buf.len(),
        encoded_len(&ops)
    );
    let decoded = decode_entry(&buf).expect("decodes");
    assert!(decoded.compressed);
    assert_eq!(decoded.ops, ops);

    // Below the threshold nothing is compressed.
    let mut small = BytesMut::new();
    lz4.encode_entry(&ops[..2], &mut small).expect("encodes");
    assert!(!decode_entry(&small).expect("decodes").compressed);
}

#[test]
fn lz4_payload_claiming_more_than_it_can_hold_is_refused() {
    // 8 compressed bytes declaring 1 MiB: within the entry limit, impossible for LZ4.
    let mut payload = (1u32 << 20).to_le_bytes().to_vec();
    payload.extend_from_slice(&[0x1f; 8]);
    let mut data = vec![0x0d];
    data.extend_from_slice(b"BKV1");
    data.push(0x22);
    data.push(payload.len() as u8);
    data.extend_from_slice(&payload);
    let err = decode_entry(&data)
        .expect_err("impossible claim")
        .to_string();
    assert!(
        err.contains("lz4: declared size 1048576 is more than 8 compressed bytes can hold"),
        "{err}"
    );
}

#[test]
fn compressed_bomb_is_refused_before_allocating() {
    // An lz4 payload that declares 1 GiB of output.
    let mut payload = (1u32 << 30).to_le_bytes().to_vec();
    payload.extend_from_slice(&[0x1f, 0x00]);
    let mut data = vec![0x0d];
    data.extend_from_slice(b"BKV1");
    data.push(0x22); // field 4, length-delimited
    data.push(payload.len() as u8);
    data.extend_from_slice(&payload);
    let err = decode_entry(&data).expect_err("bomb").to_string();
    assert!(
        err.contains("uncompressed batch of 1073741824 bytes exceeds the limit of 33554432 bytes"),
        "{err}"
    );
}

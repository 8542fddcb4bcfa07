//! Every rejected input gets a typed error whose message says which layers were tried and why.

use batchkv_codec::{Attempts, DecodeError, LayerError, decode_entry};

/// Decodes `input` and checks the whole error message.
#[track_caller]
fn check(input: &[u8], expect: &str) {
    match decode_entry(input) {
        Ok(d) => panic!("decoded {:?} from {}", d, hex::encode(input)),
        Err(e) => assert_eq!(e.to_string(), expect, "input {}", hex::encode(input)),
    }
}

fn entry(payload_hex: &str) -> Vec<u8> {
    let mut v = b"\x0dBKV1".to_vec();
    v.extend(hex::decode(payload_hex).expect("hex"));
    v
}

const NOT_OP: &str = "as operation: first byte 0x0d is not 0x08";
const NOT_LEGACY: &str = "as legacy: first byte 0x0d is not 0x7b";

#[test]
fn empty_and_unclassifiable_input() {
    check(
        b"",
        "entry of 0 bytes matches no format: as entry: empty input; as operation: empty input; as legacy: empty input",
    );
    check(
        b"\xff",
        "entry of 1 bytes matches no format: as entry: first byte 0xff is not 0x0d; as operation: first byte 0xff is not 0x08; as legacy: first byte 0xff is not 0x7b",
    );
}

#[test]
fn entry_layer_reasons() {
    check(
        b"\x0dBKV2\x12\x00",
        &format!(
            "entry of 7 bytes matches no format: as entry: magic 0x32564b42 is not 0x31564b42 (\"BKV1\"); {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    check(
        b"\x0dBK",
        &format!(
            "entry of 3 bytes matches no format: as entry: protobuf: entry shorter than its magic; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    check(
        &entry(""),
        &format!(
            "entry of 5 bytes matches no format: as entry: entry has no payload; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    check(
        &entry("1a00"),
        &format!(
            "entry of 7 bytes matches no format: as entry: batch has no operations; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // A batch field whose length runs past the end.
    check(
        &entry("1a05"),
        &format!(
            "entry of 7 bytes matches no format: as entry: protobuf: field runs past the end of the buffer; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
}

#[test]
fn invalid_operations_name_the_field() {
    // single { type: 0 }
    check(
        &entry("12020800"),
        &format!(
            "entry of 9 bytes matches no format: as entry: operation 0: type: unknown op type 0; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // single { type: PUT } with no body
    check(
        &entry("12020801"),
        &format!(
            "entry of 9 bytes matches no format: as entry: operation 0: op type put has no request body; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // single { type: PUT delete_range { key: "a" } }
    check(
        &entry("120708011a030a0161"),
        &format!(
            "entry of 14 bytes matches no format: as entry: operation 0: op type put carries a delete_range request; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // single { type: PUT put { value: "v" } }: empty key, etcd's message
    check(
        &entry("120708011203120176"),
        &format!(
            "entry of 14 bytes matches no format: as entry: operation 0: put.key: key is not provided; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
}

#[test]
fn txn_branch_rules_and_compare_operands() {
    // single { type: TXN txn { success { type: LEASE_REVOKE lease_revoke { id: 1 } } } }
    check(
        &entry("120c08032208120608063a020801"),
        &format!(
            "entry of 19 bytes matches no format: as entry: operation 0: txn.success[0]: lease_revoke is not allowed inside a txn; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // single { type: TXN txn { compare { target: MOD key: "k" } } }: no operand
    check(
        &entry("120b080322070a0510021a016b"),
        &format!(
            "entry of 18 bytes matches no format: as entry: operation 0: txn.compare[0]: compare has no target value; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // single { type: TXN txn { compare { target: MOD key: "k" version: 1 } } }
    check(
        &entry("120d080322090a0710021a016b2001"),
        &format!(
            "entry of 20 bytes matches no format: as entry: operation 0: txn.compare[0]: compare target mod_revision carries a version value; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
}

#[test]
fn bare_operation_reasons() {
    let not_entry = "as entry: first byte 0x08 is not 0x0d";
    let not_legacy = "as legacy: first byte 0x08 is not 0x7b";
    check(
        b"\x08\x09",
        &format!(
            "entry of 2 bytes matches no format: {not_entry}; as operation: operation 0: type: unknown op type 9; {not_legacy}"
        ),
    );
    check(
        b"\x08\x01\x12\x03\x0a\x01",
        &format!(
            "entry of 6 bytes matches no format: {not_entry}; as operation: protobuf: failed to decode Protobuf message: Operation.request: buffer underflow; {not_legacy}"
        ),
    );
}

#[test]
fn legacy_reasons() {
    let prefix = "matches no format: as entry: first byte 0x7b is not 0x0d; as operation: first byte 0x7b is not 0x08; as legacy:";
    let cases: &[(&str, &str)] = &[
        (
            r#"{"op":"PUT","key":"Zm9v","colour":"red"}"#,
            "json: unknown field `colour`",
        ),
        (
            r#"{"op":"PUT","key":"Zm9v","key":"YQ=="}"#,
            "json: duplicate field `key`",
        ),
        (
            r#"{"op":"PUT","value":"YQ=="}"#,
            "operation 0: key: missing field `key`",
        ),
        (
            r#"{"op":"PUT","key":""}"#,
            "operation 0: put.key: key is not provided",
        ),
        (
            r#"{"op":"PUT","key":"!!"}"#,
            "operation 0: key: field `key` is not valid base64",
        ),
        (
            r#"{"op":"DELETE","key":"YQ==","ttl":3}"#,
            "operation 0: ttl: field `ttl` does not belong to op DELETE",
        ),
        (
            r#"{"op":"TXN"}"#,
            "operation 0: op: unknown legacy op \"TXN\"",
        ),
        (
            r#"{"op":"LEASE_GRANT","id":1}"#,
            "operation 0: ttl: missing field `ttl`",
        ),
        (
            r#"{"op":"PUT","key":"YQ=="} trailing"#,
            "json: trailing characters",
        ),
    ];
    for (input, reason) in cases {
        let err = decode_entry(input.as_bytes()).expect_err(input).to_string();
        let expected_start = format!("entry of {} bytes {prefix} {reason}", input.len());
        assert!(
            err.starts_with(&expected_start),
            "{input}\n  got:  {err}\n  want: {expected_start}"
        );
    }
}

#[test]
fn errors_are_structured() {
    let err = decode_entry(b"\x08\x09").expect_err("unknown type");
    let DecodeError::NoFormat(attempts) = err else {
        panic!("expected NoFormat, got {err:?}");
    };
    let Attempts {
        len,
        entry,
        operation,
        legacy,
    } = *attempts;
    assert_eq!(len, 2);
    assert_eq!(
        entry,
        LayerError::FirstByte {
            found: 0x08,
            expected: 0x0d
        }
    );
    assert!(matches!(operation, LayerError::Invalid { index: 0, .. }));
    assert_eq!(
        legacy,
        LayerError::FirstByte {
            found: 0x08,
            expected: b'{'
        }
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // txn { success { txn { success { ... } } } } nested 10,000 deep, as one bare operation.
    let mut msg: Vec<u8> = vec![0x08, 0x03];
    for _ in 0..10_000 {
        // Operation { type: TXN, txn (field 4) { success (field 2) { msg } } }
        let mut success = vec![0x12];
        push_varint(&mut success, msg.len());
        success.extend_from_slice(&msg);
        let mut op = vec![0x08, 0x03, 0x22];
        push_varint(&mut op, success.len());
        op.extend_from_slice(&success);
        msg = op;
    }
    let err = decode_entry(&msg).expect_err("too deep").to_string();
    assert!(err.contains("recursion limit reached"), "{err}");
}

fn push_varint(buf: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[test]
fn envelope_fields_appear_once_and_unknown_ones_are_skipped() {
    // single { type: PUT put { key: "k" } }, the payload of a valid one-op entry.
    let single = "1207080112030a016b";
    let ok = decode_entry(&entry(single)).expect("valid entry");
    assert_eq!(ok.ops.len(), 1);
    check(
        &entry(&format!("{single}{single}")),
        &format!(
            "entry of 23 bytes matches no format: as entry: payload given twice; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    check(
        &entry(&format!("0d424b5631{single}")),
        &format!(
            "entry of 19 bytes matches no format: as entry: magic given twice; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    check(
        &entry("1008"),
        &format!(
            "entry of 7 bytes matches no format: as entry: protobuf: payload field 2 has wire type 0, not 2; {NOT_OP}; {NOT_LEGACY}"
        ),
    );
    // Field 15 (varint) and field 16 (bytes) are unknown to this version: skipped.
    let with_unknown =
        decode_entry(&entry(&format!("7801{single}820100"))).expect("unknown fields skipped");
    assert_eq!(with_unknown.ops, ok.ops);
}

fn nested_txn(depth: usize) -> batchkv_codec::Op {
    use batchkv_codec::{Op, Put, Txn};
    let mut op = Op::Put(Put::new("k", "v"));
    for _ in 0..depth {
        op = Op::Txn(Txn {
            compares: vec![],
            success: vec![op],
            failure: vec![],
        });
    }
    op
}

#[test]
fn txn_nesting_is_bounded_alike_for_encoder_and_decoder() {
    use batchkv_codec::{MAX_TXN_DEPTH, encode_entry};
    use bytes::BytesMut;
    // The deepest txn the format allows encodes and decodes.
    let deepest = [nested_txn(MAX_TXN_DEPTH), nested_txn(1)];
    let mut buf = BytesMut::new();
    encode_entry(&deepest, &mut buf).expect("deepest allowed txn encodes");
    assert_eq!(decode_entry(&buf).expect("and decodes").ops, deepest);
    // One level more is refused by the encoder...
    let too_deep = [nested_txn(MAX_TXN_DEPTH + 1)];
    let err = encode_entry(&too_deep, &mut BytesMut::new()).expect_err("too deep");
    let path = "txn.success[0].".repeat(MAX_TXN_DEPTH);
    assert_eq!(
        err.to_string(),
        format!(
            "operation 0: {}: txns nested deeper than 32 levels",
            path.trim_end_matches('.')
        )
    );
    // ...and by the decoder, when another writer produced it (built through prost directly).
    let wire = batchkv_codec::wire::Entry {
        magic: batchkv_codec::ENTRY_MAGIC,
        payload: Some(batchkv_codec::wire::entry::Payload::Single(to_wire(
            &too_deep[0],
        ))),
    };
    let bytes = prost::Message::encode_to_vec(&wire);
    let err = decode_entry(&bytes).expect_err("too deep").to_string();
    assert!(err.contains("txns nested deeper than 32 levels"), "{err}");
}

/// Builds the wire form by hand (the crate's own conversion is private).
fn to_wire(op: &batchkv_codec::Op) -> batchkv_codec::wire::Operation {
    use batchkv_codec::Op;
    use batchkv_codec::wire::{self, operation::Request};
    match op {
        Op::Put(p) => wire::Operation {
            r#type: wire::OpType::Put as i32,
            request: Some(Request::Put(wire::PutRequest {
                key: p.key.clone(),
                value: p.value.clone(),
                ..Default::default()
            })),
        },
        Op::Txn(t) => wire::Operation {
            r#type: wire::OpType::Txn as i32,
            request: Some(Request::Txn(wire::TxnRequest {
                compare: vec![],
                success: t.success.iter().map(to_wire).collect(),
                failure: vec![],
            })),
        },
        other => panic!("not used here: {other:?}"),
    }
}

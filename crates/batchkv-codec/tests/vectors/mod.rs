//! Named test vectors shared by the golden and protoc-oracle tests.

use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, Compression, DeleteRange, Encoder, Format,
    LeaseGrant, LeaseRevoke, Limits, Op, Put, Range, SortOrder, SortTarget, Txn, encode_legacy,
    encode_operation,
};
use bytes::BytesMut;

pub struct Vector {
    /// File stem under tests/golden/.
    pub name: &'static str,
    pub format: Format,
    pub compressed: bool,
    pub ops: Vec<Op>,
    /// The message in protobuf text format, for protoc (entry and operation formats only). Written
    /// as protoc prints it: proto3 fields at their default (`result: EQUAL`, `target: VERSION`,
    /// zeros) are not on the wire, so they are left out.
    pub text: Option<&'static str>,
}

impl Vector {
    /// The bytes batchkv writes for this vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        match self.format {
            Format::Entry => {
                let compression = if self.compressed {
                    Compression::Lz4 { min_bytes: 0 }
                } else {
                    Compression::None
                };
                Encoder::new(Limits::default(), compression)
                    .encode_entry(&self.ops, &mut buf)
                    .expect("vector encodes");
            }
            Format::Operation => {
                encode_operation(&self.ops[0], &mut buf).expect("vector encodes");
            }
            Format::Legacy => return encode_legacy(&self.ops[0]).expect("vector encodes"),
        }
        buf.to_vec()
    }

    /// The protobuf message type protoc should use.
    pub fn message_type(&self) -> &'static str {
        match self.format {
            Format::Entry => "batchkv.v1.Entry",
            _ => "batchkv.v1.Operation",
        }
    }
}

fn put(k: &str, v: &str) -> Op {
    Op::Put(Put::new(k.to_owned(), v.to_owned()))
}

pub fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "entry_single_put",
            format: Format::Entry,
            compressed: false,
            ops: vec![put("foo", "bar")],
            text: Some(
                r#"magic: 0x31564B42
                   single { type: OP_TYPE_PUT put { key: "foo" value: "bar" } }"#,
            ),
        },
        Vector {
            name: "entry_batch_mixed",
            format: Format::Entry,
            compressed: false,
            ops: vec![
                Op::Put(Put {
                    key: "foo".into(),
                    value: "bar".into(),
                    lease: 7,
                    prev_kv: true,
                    ignore_value: false,
                    ignore_lease: false,
                }),
                Op::Put(Put {
                    key: "meta".into(),
                    value: "".into(),
                    lease: 0,
                    prev_kv: false,
                    ignore_value: true,
                    ignore_lease: true,
                }),
                Op::DeleteRange(DeleteRange {
                    key: "a".into(),
                    range_end: "z".into(),
                    prev_kv: true,
                }),
                Op::LeaseGrant(LeaseGrant { id: 42, ttl: 10 }),
                Op::LeaseRevoke(LeaseRevoke { id: 42 }),
                Op::Compact(Compact { revision: 5 }),
            ],
            text: Some(
                r#"magic: 0x31564B42
                   batch {
                     operations { type: OP_TYPE_PUT put { key: "foo" value: "bar" lease: 7 prev_kv: true } }
                     operations { type: OP_TYPE_PUT put { key: "meta" ignore_value: true ignore_lease: true } }
                     operations { type: OP_TYPE_DELETE_RANGE delete_range { key: "a" range_end: "z" prev_kv: true } }
                     operations { type: OP_TYPE_LEASE_GRANT lease_grant { ttl: 10 id: 42 } }
                     operations { type: OP_TYPE_LEASE_REVOKE lease_revoke { id: 42 } }
                     operations { type: OP_TYPE_COMPACT compact { revision: 5 } }
                   }"#,
            ),
        },
        Vector {
            name: "entry_txn",
            format: Format::Entry,
            compressed: false,
            ops: vec![Op::Txn(Txn {
                compares: vec![
                    Compare::new("foo", CompareOp::Equal, CompareTarget::ModRevision(2)),
                    Compare::new("bar", CompareOp::NotEqual, CompareTarget::Value("x".into())),
                    Compare::new("absent", CompareOp::Equal, CompareTarget::CreateRevision(0)),
                    Compare {
                        key: "p/".into(),
                        range_end: "p0".into(),
                        op: CompareOp::Less,
                        target: CompareTarget::Version(3),
                    },
                    Compare::new("l", CompareOp::Greater, CompareTarget::Lease(-1)),
                ],
                success: vec![
                    put("foo", "v"),
                    Op::Range(Range::key("foo")),
                    Op::Txn(Txn {
                        compares: vec![],
                        success: vec![put("nested", "1")],
                        failure: vec![],
                    }),
                ],
                failure: vec![Op::DeleteRange(DeleteRange::key("foo"))],
            })],
            text: Some(
                r#"magic: 0x31564B42
                   single { type: OP_TYPE_TXN txn {
                     compare { target: MOD key: "foo" mod_revision: 2 }
                     compare { result: NOT_EQUAL target: VALUE key: "bar" value: "x" }
                     compare { target: CREATE key: "absent" create_revision: 0 }
                     compare { result: LESS key: "p/" version: 3 range_end: "p0" }
                     compare { result: GREATER target: LEASE key: "l" lease: -1 }
                     success { type: OP_TYPE_PUT put { key: "foo" value: "v" } }
                     success { type: OP_TYPE_RANGE range { key: "foo" } }
                     success { type: OP_TYPE_TXN txn { success { type: OP_TYPE_PUT put { key: "nested" value: "1" } } } }
                     failure { type: OP_TYPE_DELETE_RANGE delete_range { key: "foo" } }
                   } }"#,
            ),
        },
        Vector {
            name: "entry_range_all_fields",
            format: Format::Entry,
            compressed: false,
            ops: vec![Op::Range(Range {
                key: b"\x00\xffk".to_vec().into(),
                range_end: b"\x00".to_vec().into(),
                limit: 10,
                revision: 99,
                sort_order: SortOrder::Descend,
                sort_target: SortTarget::Mod,
                keys_only: true,
                count_only: true,
                min_mod_revision: 1,
                max_mod_revision: 2,
                min_create_revision: 3,
                max_create_revision: 4,
            })],
            text: Some(
                r#"magic: 0x31564B42
                   single { type: OP_TYPE_RANGE range {
                     key: "\000\377k" range_end: "\000" limit: 10 revision: 99
                     sort_order: DESCEND sort_target: MOD keys_only: true count_only: true
                     min_mod_revision: 1 max_mod_revision: 2 min_create_revision: 3 max_create_revision: 4
                   } }"#,
            ),
        },
        Vector {
            name: "entry_lz4_batch",
            format: Format::Entry,
            compressed: true,
            ops: (0..50)
                .map(|i| put(&format!("key-{i:04}"), &"v".repeat(64)))
                .collect(),
            text: None,
        },
        Vector {
            name: "operation_put",
            format: Format::Operation,
            compressed: false,
            ops: vec![Op::Put(Put {
                key: "foo".into(),
                value: "bar".into(),
                lease: 0x1234,
                prev_kv: true,
                ignore_value: false,
                ignore_lease: false,
            })],
            text: Some(
                r#"type: OP_TYPE_PUT put { key: "foo" value: "bar" lease: 4660 prev_kv: true }"#,
            ),
        },
        Vector {
            name: "operation_lease_grant",
            format: Format::Operation,
            compressed: false,
            ops: vec![Op::LeaseGrant(LeaseGrant { id: 0, ttl: 60 })],
            text: Some(r#"type: OP_TYPE_LEASE_GRANT lease_grant { ttl: 60 }"#),
        },
        Vector {
            name: "legacy_put",
            format: Format::Legacy,
            compressed: false,
            ops: vec![Op::Put(Put {
                key: "foo".into(),
                value: "bar".into(),
                lease: 7,
                prev_kv: false,
                ignore_value: false,
                ignore_lease: true,
            })],
            text: None,
        },
        Vector {
            name: "legacy_delete",
            format: Format::Legacy,
            compressed: false,
            ops: vec![Op::DeleteRange(DeleteRange {
                key: "a".into(),
                range_end: "b".into(),
                prev_kv: true,
            })],
            text: None,
        },
        Vector {
            name: "legacy_lease_revoke",
            format: Format::Legacy,
            compressed: false,
            ops: vec![Op::LeaseRevoke(LeaseRevoke { id: 42 })],
            text: None,
        },
    ]
}

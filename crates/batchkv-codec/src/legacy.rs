//! The legacy format: one operation per entry as a JSON object (docs/FORMAT.md, "Legacy").
//!
//! It is how the first writers encoded entries. It covers put, delete, lease grant, lease revoke
//! and compact; txn and range never had a legacy form. Byte strings are standard base64 with
//! padding. Unknown fields and duplicate fields are errors, so a record means one thing only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{EncodeError, InvalidOp, InvalidReason, LayerError};
use crate::op::{Compact, DeleteRange, LeaseGrant, LeaseRevoke, Op, Put};

/// The legacy record. Field order here is the order the encoder writes them in.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_kv: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore_value: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore_lease: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<i64>,
}

const PUT: &str = "PUT";
const DELETE: &str = "DELETE";
const LEASE_GRANT: &str = "LEASE_GRANT";
const LEASE_REVOKE: &str = "LEASE_REVOKE";
const COMPACT: &str = "COMPACT";

fn b64(field: &'static str, value: Option<String>) -> Result<Option<Bytes>, InvalidOp> {
    value
        .map(|v| {
            STANDARD.decode(v).map(Bytes::from).map_err(|e| {
                InvalidOp::at(
                    field,
                    InvalidReason::Base64 {
                        field,
                        reason: e.to_string(),
                    },
                )
            })
        })
        .transpose()
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, InvalidOp> {
    value.ok_or_else(|| InvalidOp::at(field, InvalidReason::MissingField { field }))
}

impl Record {
    /// Names of the fields that are set, for the "does not belong" check.
    fn present(&self) -> [(&'static str, bool); 10] {
        [
            ("key", self.key.is_some()),
            ("value", self.value.is_some()),
            ("range_end", self.range_end.is_some()),
            ("lease", self.lease.is_some()),
            ("prev_kv", self.prev_kv.is_some()),
            ("ignore_value", self.ignore_value.is_some()),
            ("ignore_lease", self.ignore_lease.is_some()),
            ("id", self.id.is_some()),
            ("ttl", self.ttl.is_some()),
            ("revision", self.revision.is_some()),
        ]
    }

    fn only(&self, op: &'static str, allowed: &[&str]) -> Result<(), InvalidOp> {
        for (field, set) in self.present() {
            if set && !allowed.contains(&field) {
                return Err(InvalidOp::at(
                    field,
                    InvalidReason::UnexpectedField { field, op },
                ));
            }
        }
        Ok(())
    }

    fn into_op(self) -> Result<Op, InvalidOp> {
        let op = match self.op.as_str() {
            PUT => {
                self.only(
                    PUT,
                    &[
                        "key",
                        "value",
                        "lease",
                        "prev_kv",
                        "ignore_value",
                        "ignore_lease",
                    ],
                )?;
                Op::Put(Put {
                    key: required("key", b64("key", self.key)?)?,
                    value: b64("value", self.value)?.unwrap_or_default(),
                    lease: self.lease.unwrap_or(0),
                    prev_kv: self.prev_kv.unwrap_or(false),
                    ignore_value: self.ignore_value.unwrap_or(false),
                    ignore_lease: self.ignore_lease.unwrap_or(false),
                })
            }
            DELETE => {
                self.only(DELETE, &["key", "range_end", "prev_kv"])?;
                Op::DeleteRange(DeleteRange {
                    key: required("key", b64("key", self.key)?)?,
                    range_end: b64("range_end", self.range_end)?.unwrap_or_default(),
                    prev_kv: self.prev_kv.unwrap_or(false),
                })
            }
            LEASE_GRANT => {
                self.only(LEASE_GRANT, &["id", "ttl"])?;
                Op::LeaseGrant(LeaseGrant {
                    id: self.id.unwrap_or(0),
                    ttl: required("ttl", self.ttl)?,
                })
            }
            LEASE_REVOKE => {
                self.only(LEASE_REVOKE, &["id"])?;
                Op::LeaseRevoke(LeaseRevoke {
                    id: required("id", self.id)?,
                })
            }
            COMPACT => {
                self.only(COMPACT, &["revision"])?;
                Op::Compact(Compact {
                    revision: required("revision", self.revision)?,
                })
            }
            _ => return Err(InvalidOp::at("op", InvalidReason::UnknownLegacyOp(self.op))),
        };
        op.validate()?;
        Ok(op)
    }
}

/// Decodes one legacy record (the caller has checked the first byte).
pub(crate) fn decode(bytes: &[u8]) -> Result<Op, LayerError> {
    let record: Record =
        serde_json::from_slice(bytes).map_err(|e| LayerError::Json(e.to_string()))?;
    record
        .into_op()
        .map_err(|source| LayerError::Invalid { index: 0, source })
}

fn some_if<T: PartialEq + Default>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// Encodes `op` as a legacy record.
///
/// Nothing in batchkv writes this format any more; it exists for migration tools and for the
/// tests that prove old entries still decode. Fields equal to their default are omitted, except
/// a put's `value`, which is always written.
///
/// # Errors
/// [`EncodeError::NotInLegacy`] for a txn or a range, which had no legacy form;
/// [`EncodeError::Invalid`] for an op that breaks [`Op::validate`].
pub fn encode_legacy(op: &Op) -> Result<Vec<u8>, EncodeError> {
    op.validate()
        .map_err(|source| EncodeError::Invalid { index: 0, source })?;
    let text = |b: &Bytes| Some(STANDARD.encode(b));
    let record = match op {
        Op::Put(p) => Record {
            op: PUT.to_owned(),
            key: text(&p.key),
            value: text(&p.value),
            lease: some_if(p.lease),
            prev_kv: some_if(p.prev_kv),
            ignore_value: some_if(p.ignore_value),
            ignore_lease: some_if(p.ignore_lease),
            ..Record::default()
        },
        Op::DeleteRange(d) => Record {
            op: DELETE.to_owned(),
            key: text(&d.key),
            range_end: some_if(d.range_end.clone()).as_ref().and_then(text),
            prev_kv: some_if(d.prev_kv),
            ..Record::default()
        },
        Op::LeaseGrant(g) => Record {
            op: LEASE_GRANT.to_owned(),
            id: some_if(g.id),
            ttl: Some(g.ttl),
            ..Record::default()
        },
        Op::LeaseRevoke(r) => Record {
            op: LEASE_REVOKE.to_owned(),
            id: Some(r.id),
            ..Record::default()
        },
        Op::Compact(c) => Record {
            op: COMPACT.to_owned(),
            revision: Some(c.revision),
            ..Record::default()
        },
        Op::Txn(_) | Op::Range(_) => return Err(EncodeError::NotInLegacy { kind: op.kind() }),
    };
    Ok(serde_json::to_vec(&record).expect("a record of strings, integers and bools serializes"))
}

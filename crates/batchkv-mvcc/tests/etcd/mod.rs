//! What the differential tests share: bringing etcd's and batchkv-mvcc's answers into one
//! comparable shape ([`Resp`]). The etcd server itself, the seeded Rng and the replay-script
//! quoting come from batchkv-testkit.

use std::fmt;

use base64::Engine as _;
use batchkv_mvcc::{KeyValue, MvccError, OpError, OpResponse};
use batchkv_testkit::CtlOutput;
use serde_json::Value;

/// A key-value as both sides return it.
#[derive(Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create: i64,
    pub modified: i64,
    pub version: i64,
    pub lease: i64,
}

/// Bytes for messages: long values are shortened to their length.
pub fn show_bytes(b: &[u8]) -> String {
    if b.len() > 24 && b.iter().all(|&c| c == b'x') {
        format!("x{{{}}}", b.len())
    } else if b.len() > 48 {
        format!("{}…(len {})", String::from_utf8_lossy(&b[..32]), b.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(b))
    }
}

impl fmt::Debug for Kv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} c{} m{} v{}",
            show_bytes(&self.key),
            show_bytes(&self.value),
            self.create,
            self.modified,
            self.version
        )?;
        if self.lease != 0 {
            write!(f, " lease {}", self.lease)?;
        }
        Ok(())
    }
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Self {
        Kv {
            key: kv.key.to_vec(),
            value: kv.value.to_vec(),
            create: kv.create_revision,
            modified: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// One answer, reduced to what both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// Refused: the error kind (see [`etcd_error_kind`]).
    Err(String),
    Put {
        rev: i64,
        prev_kv: Option<Kv>,
    },
    Del {
        rev: i64,
        deleted: i64,
        prev_kvs: Vec<Kv>,
    },
    Range {
        rev: i64,
        kvs: Vec<Kv>,
        more: bool,
        count: i64,
    },
    Txn {
        rev: i64,
        succeeded: bool,
        responses: Vec<Resp>,
    },
    /// etcdctl prints only "compacted revision N", so a compaction's header is not compared.
    Compact,
    LeaseGrant {
        rev: i64,
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        rev: i64,
    },
}

/// An answer and, for a refusal, its message (checked separately: batchkv's Display must be
/// the end of etcd's message).
#[derive(Clone, Debug)]
pub struct Answer {
    pub resp: Resp,
    pub message: Option<String>,
}

/// Which response shape etcdctl's JSON has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Put,
    Del,
    Range,
    Txn,
    Compact,
}

/// The error kind of etcd's message.
pub fn etcd_error_kind(message: &str) -> String {
    const KINDS: [(&str, &str); 10] = [
        ("required revision has been compacted", "compacted"),
        ("required revision is a future revision", "future-revision"),
        ("key is not provided", "empty-key"),
        ("too many operations in txn request", "too-many-ops"),
        ("request is too large", "request-too-large"),
        ("duplicate key given in txn request", "duplicate-key"),
        ("requested lease not found", "lease-not-found"),
        ("key not found", "key-not-found"),
        ("value is provided", "value-provided"),
        ("lease is provided", "lease-provided"),
    ];
    KINDS
        .iter()
        .find(|(text, _)| message.contains(text))
        .map_or_else(
            || format!("other: {message}"),
            |(_, kind)| (*kind).to_string(),
        )
}

/// batchkv's error kind, by variant (not by message).
pub fn our_error_kind(e: &OpError) -> String {
    match e {
        OpError::Compacted { .. } => "compacted".into(),
        OpError::FutureRevision { .. } => "future-revision".into(),
        OpError::EmptyKey => "empty-key".into(),
        OpError::TooManyOps { .. } => "too-many-ops".into(),
        OpError::RequestTooLarge { .. } => "request-too-large".into(),
        OpError::DuplicateKey => "duplicate-key".into(),
        OpError::LeaseNotFound { .. } => "lease-not-found".into(),
        OpError::KeyNotFound => "key-not-found".into(),
        OpError::ValueProvided => "value-provided".into(),
        OpError::LeaseProvided => "lease-provided".into(),
        other => format!("other: {other}"),
    }
}

/// batchkv's answer to an applied op.
pub fn ours(result: &Result<OpResponse, OpError>) -> Answer {
    match result {
        Ok(r) => Answer {
            resp: our_resp(r),
            message: None,
        },
        Err(e) => Answer {
            resp: Resp::Err(our_error_kind(e)),
            message: Some(e.to_string()),
        },
    }
}

/// batchkv's answer to a read through [`batchkv_mvcc::Mvcc::range`].
pub fn ours_read(result: Result<batchkv_mvcc::RangeResponse, MvccError>) -> Answer {
    match result {
        Ok(r) => ours(&Ok(OpResponse::Range(r))),
        Err(MvccError::Op(e)) => ours(&Err(e)),
        Err(e) => Answer {
            resp: Resp::Err(format!("store error: {e}")),
            message: Some(e.to_string()),
        },
    }
}

fn our_resp(r: &OpResponse) -> Resp {
    match r {
        OpResponse::Put(p) => Resp::Put {
            rev: p.revision,
            prev_kv: p.prev_kv.as_ref().map(Kv::from),
        },
        OpResponse::DeleteRange(d) => Resp::Del {
            rev: d.revision,
            deleted: d.deleted,
            prev_kvs: d.prev_kvs.iter().map(Kv::from).collect(),
        },
        OpResponse::Range(g) => Resp::Range {
            rev: g.revision,
            kvs: g.kvs.iter().map(Kv::from).collect(),
            more: g.more,
            count: g.count,
        },
        OpResponse::Txn(t) => Resp::Txn {
            rev: t.revision,
            succeeded: t.succeeded,
            responses: t.responses.iter().map(our_resp).collect(),
        },
        OpResponse::Compact(_) => Resp::Compact,
        OpResponse::LeaseGrant(g) => Resp::LeaseGrant {
            rev: g.revision,
            id: g.id,
            ttl: g.ttl,
        },
        OpResponse::LeaseRevoke(r) => Resp::LeaseRevoke { rev: r.revision },
    }
}

/// etcd's answer, from what etcdctl printed.
pub fn etcds(out: &CtlOutput, shape: Shape) -> Answer {
    if !out.ok {
        let message = out
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Error: "))
            .map_or_else(
                || {
                    format!(
                        "etcdctl failed without an Error line: {}",
                        out.stderr.trim()
                    )
                },
                str::to_string,
            );
        return Answer {
            resp: Resp::Err(etcd_error_kind(&message)),
            message: Some(message),
        };
    }
    let unparsable = |why: &str| Answer {
        resp: Resp::Err(format!(
            "other: unparsable etcdctl output ({why}): {}",
            out.stdout.trim()
        )),
        message: None,
    };
    if shape == Shape::Compact {
        // `-w json` does not apply to compaction: it prints "compacted revision N".
        return if out.stdout.trim().starts_with("compacted revision ") {
            Answer {
                resp: Resp::Compact,
                message: None,
            }
        } else {
            unparsable("expected \"compacted revision N\"")
        };
    }
    let json: Value = match serde_json::from_str(out.stdout.trim()) {
        Ok(v) => v,
        Err(e) => return unparsable(&e.to_string()),
    };
    match parse(&json, shape) {
        Some(resp) => Answer {
            resp,
            message: None,
        },
        None => unparsable("unexpected shape"),
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    match v.get(field) {
        None => Some(Vec::new()),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_str()?)
            .ok(),
    }
}

/// A key-value of etcd's JSON (base64 key and value, zero fields omitted).
pub fn kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        key: b64(v, "key")?,
        value: b64(v, "value")?,
        create: int(v, "create_revision"),
        modified: int(v, "mod_revision"),
        version: int(v, "version"),
        lease: int(v, "lease"),
    })
}

fn kvs(v: &Value, field: &str) -> Option<Vec<Kv>> {
    match v.get(field) {
        None => Some(Vec::new()),
        Some(list) => list.as_array()?.iter().map(kv).collect(),
    }
}

/// One response of etcd's JSON (`-w json` omits zero-valued fields: deleted 0, count 0,
/// more false, succeeded false, empty lists, empty values, lease 0).
fn parse(v: &Value, shape: Shape) -> Option<Resp> {
    // A nested txn's header carries no revision; everything else has one.
    let rev = int(v.get("header")?, "revision");
    Some(match shape {
        Shape::Put => Resp::Put {
            rev,
            prev_kv: match v.get("prev_kv") {
                None => None,
                Some(p) => Some(kv(p)?),
            },
        },
        Shape::Del => Resp::Del {
            rev,
            deleted: int(v, "deleted"),
            prev_kvs: kvs(v, "prev_kvs")?,
        },
        Shape::Range => Resp::Range {
            rev,
            kvs: kvs(v, "kvs")?,
            more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
            count: int(v, "count"),
        },
        Shape::Txn => {
            let responses = match v.get("responses") {
                None => Vec::new(),
                Some(list) => list
                    .as_array()?
                    .iter()
                    .map(|r| {
                        let r = r.get("Response")?.as_object()?;
                        let (name, body) = r.iter().next()?;
                        let shape = match name.as_str() {
                            "ResponsePut" => Shape::Put,
                            "ResponseDeleteRange" => Shape::Del,
                            "ResponseRange" => Shape::Range,
                            "ResponseTxn" => Shape::Txn,
                            _ => return None,
                        };
                        parse(body, shape)
                    })
                    .collect::<Option<Vec<_>>>()?,
            };
            Resp::Txn {
                rev,
                succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
                responses,
            }
        }
        Shape::Compact => Resp::Compact,
    })
}

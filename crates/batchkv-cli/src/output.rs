//! What a command prints: etcdctl's `-w simple` (its `simplePrinter`) and `-w json` (clientv3's
//! response structs through Go's `encoding/json`).
//!
//! JSON comes from the `#[derive(Serialize)]` structs below: a struct's field order is etcd's,
//! and a field Go tags `omitempty` is skipped when zero or empty, so the output matches
//! etcdctl's byte for byte where the differential test compares it.

use batchkv::{DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse};
use batchkv::{EventKind, KeyValue, OpResponse, StoreStats, WatchEvent};
use serde::{Serialize, Serializer};

use crate::error::{CliError, CliResult, exit};

/// The header ids of the CLI's answers are the server's (one node: one member, one term), so
/// `batchkv` on a data dir and `etcdctl` against `batchkv serve` on it print the same headers.
pub use batchkv_server::{CLUSTER_ID, MEMBER_ID, RAFT_TERM};

/// `-w`: how a command prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// etcdctl's default.
    Simple,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The `-w` value.
    ///
    /// # Errors
    ///
    /// etcdctl's other formats, and unknown ones: exit 4.
    pub fn parse(s: &str) -> CliResult<Format> {
        match s {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" | "protobuf" | "table" => Err(CliError::new(
                exit::BAD_FEATURE,
                "batchkv writes `-w simple` and `-w json` only",
            )),
            other => Err(CliError::new(
                exit::BAD_FEATURE,
                format!(
                    "unsupported output format {}",
                    crate::golit::go_quote(other)
                ),
            )),
        }
    }
}

/// What a command printed (written out when it ends, after the store is closed).
#[derive(Debug, Default)]
pub struct Out {
    /// For stdout.
    pub stdout: Vec<u8>,
    /// For stderr (before the `Error: ` line, if any).
    pub stderr: Vec<u8>,
    /// `--hex`: keys and values as `\xNN` escapes in simple output.
    pub hex: bool,
}

impl Out {
    /// A line on stdout.
    pub fn line(&mut self, s: impl AsRef<[u8]>) {
        self.stdout.extend_from_slice(s.as_ref());
        self.stdout.push(b'\n');
    }

    /// A line on stderr.
    pub fn err_line(&mut self, s: impl AsRef<[u8]>) {
        self.stderr.extend_from_slice(s.as_ref());
        self.stderr.push(b'\n');
    }

    /// `v` as one line of JSON on stdout.
    pub fn json(&mut self, v: &impl Serialize) -> CliResult {
        serde_json::to_writer(&mut self.stdout, v)
            .map_err(|e| CliError::new(exit::ERROR, format!("writing JSON: {e}")))?;
        self.stdout.push(b'\n');
        Ok(())
    }

    /// Key or value bytes as simple output prints them.
    fn bytes(&mut self, b: &[u8]) {
        if self.hex {
            let hex: String = b.iter().map(|c| format!("\\x{c:02x}")).collect();
            self.line(hex);
        } else {
            self.line(b);
        }
    }

    // --- simple output (etcdctl's `simplePrinter`) ----------------------------------------

    /// A key (unless `value_only`) and its value, a line each.
    pub fn kv(&mut self, kv: &KeyValue, value_only: bool) {
        if !value_only {
            self.bytes(&kv.key);
        }
        self.bytes(&kv.value);
    }

    /// `put`.
    pub fn put(&mut self, r: &PutResponse) {
        self.line("OK");
        if let Some(prev) = &r.prev_kv {
            self.kv(prev, false);
        }
    }

    /// `get`.
    pub fn range(&mut self, r: &RangeResponse, value_only: bool) {
        for kv in &r.kvs {
            self.kv(kv, value_only);
        }
    }

    /// `del`.
    pub fn del(&mut self, r: &DeleteRangeResponse) {
        self.line(r.deleted.to_string());
        for kv in &r.prev_kvs {
            self.kv(kv, false);
        }
    }

    /// `txn`.
    pub fn txn(&mut self, r: &TxnResponse) {
        self.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
        for resp in &r.responses {
            self.line("");
            match resp {
                OpResponse::Put(p) => self.put(p),
                OpResponse::Range(g) => self.range(g, false),
                OpResponse::DeleteRange(d) => self.del(d),
                OpResponse::Txn(t) => self.txn(t),
                other => self.line(format!("unexpected response {other:?}")),
            }
        }
    }

    /// A watch event.
    pub fn event(&mut self, e: &WatchEvent) {
        self.line(match e.kind {
            EventKind::Put => "PUT",
            EventKind::Delete => "DELETE",
        });
        if let Some(prev) = &e.prev_kv {
            self.kv(prev, false);
        }
        self.kv(&e.kv, false);
    }
}

// --- JSON -------------------------------------------------------------------------------------

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_empty(b: &[u8]) -> bool {
    b.is_empty()
}

/// Bytes as Go's `encoding/json` writes a `[]byte`: standard base64.
fn base64<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
}

fn base64_list<S: Serializer>(keys: &Option<Vec<&[u8]>>, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    let b64 = &base64::engine::general_purpose::STANDARD;
    match keys {
        None => s.serialize_none(),
        Some(keys) => s.collect_seq(keys.iter().map(|k| b64.encode(k))),
    }
}

/// etcd's `ResponseHeader`. At the top of an answer it names the cluster ([`CLUSTER_ID`]);
/// inside a txn only the revision is set, and the zero fields are left out, as etcd's.
#[derive(Debug, Serialize)]
pub struct Header {
    #[serde(skip_serializing_if = "is_zero")]
    cluster_id: u64,
    #[serde(skip_serializing_if = "is_zero")]
    member_id: u64,
    #[serde(skip_serializing_if = "is_zero")]
    revision: i64,
    #[serde(skip_serializing_if = "is_zero")]
    raft_term: u64,
}

impl Header {
    /// The header of an answer.
    pub fn top(revision: i64) -> Header {
        Header {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision,
            raft_term: RAFT_TERM,
        }
    }

    /// The header of a response inside a txn.
    fn nested(revision: i64) -> Header {
        Header {
            cluster_id: 0,
            member_id: 0,
            revision,
            raft_term: 0,
        }
    }

    fn new(revision: i64, top: bool) -> Header {
        if top {
            Header::top(revision)
        } else {
            Header::nested(revision)
        }
    }
}

/// etcd's `mvccpb.KeyValue`.
#[derive(Debug, Serialize)]
pub struct Kv<'a> {
    #[serde(skip_serializing_if = "is_empty", serialize_with = "base64")]
    key: &'a [u8],
    #[serde(skip_serializing_if = "is_zero")]
    create_revision: i64,
    #[serde(skip_serializing_if = "is_zero")]
    mod_revision: i64,
    #[serde(skip_serializing_if = "is_zero")]
    version: i64,
    #[serde(skip_serializing_if = "is_empty", serialize_with = "base64")]
    value: &'a [u8],
    #[serde(skip_serializing_if = "is_zero")]
    lease: i64,
}

impl<'a> From<&'a KeyValue> for Kv<'a> {
    fn from(kv: &'a KeyValue) -> Self {
        Kv {
            key: &kv.key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: &kv.value,
            lease: kv.lease,
        }
    }
}

/// etcd's `PutResponse`.
#[derive(Debug, Serialize)]
pub struct PutJson<'a> {
    header: Header,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_kv: Option<Kv<'a>>,
}

impl<'a> PutJson<'a> {
    /// `r` at the top of an answer (`top`) or inside a txn.
    pub fn new(r: &'a PutResponse, top: bool) -> Self {
        PutJson {
            header: Header::new(r.revision, top),
            prev_kv: r.prev_kv.as_ref().map(Kv::from),
        }
    }
}

/// etcd's `RangeResponse`.
#[derive(Debug, Serialize)]
pub struct RangeJson<'a> {
    header: Header,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kvs: Vec<Kv<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    more: bool,
    #[serde(skip_serializing_if = "is_zero")]
    count: i64,
}

impl<'a> RangeJson<'a> {
    /// `r` at the top of an answer (`top`) or inside a txn.
    pub fn new(r: &'a RangeResponse, top: bool) -> Self {
        RangeJson {
            header: Header::new(r.revision, top),
            kvs: r.kvs.iter().map(Kv::from).collect(),
            more: r.more,
            count: r.count,
        }
    }
}

/// etcd's `DeleteRangeResponse`.
#[derive(Debug, Serialize)]
pub struct DelJson<'a> {
    header: Header,
    #[serde(skip_serializing_if = "is_zero")]
    deleted: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    prev_kvs: Vec<Kv<'a>>,
}

impl<'a> DelJson<'a> {
    /// `r` at the top of an answer (`top`) or inside a txn.
    pub fn new(r: &'a DeleteRangeResponse, top: bool) -> Self {
        DelJson {
            header: Header::new(r.revision, top),
            deleted: r.deleted,
            prev_kvs: r.prev_kvs.iter().map(Kv::from).collect(),
        }
    }
}

/// etcd's `TxnResponse`.
#[derive(Debug, Serialize)]
pub struct TxnJson<'a> {
    header: Header,
    #[serde(skip_serializing_if = "is_zero")]
    succeeded: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    responses: Vec<ResponseOp<'a>>,
}

impl<'a> TxnJson<'a> {
    /// `r` at the top of an answer (`top`) or inside a txn.
    pub fn new(r: &'a TxnResponse, top: bool) -> Self {
        TxnJson {
            header: Header::new(r.revision, top),
            succeeded: r.succeeded,
            responses: r
                .responses
                .iter()
                .map(|resp| ResponseOp {
                    response: match resp {
                        OpResponse::Put(p) => Response::ResponsePut(PutJson::new(p, false)),
                        OpResponse::Range(g) => Response::ResponseRange(RangeJson::new(g, false)),
                        OpResponse::DeleteRange(d) => {
                            Response::ResponseDeleteRange(DelJson::new(d, false))
                        }
                        OpResponse::Txn(t) => {
                            Response::ResponseTxn(Box::new(TxnJson::new(t, false)))
                        }
                        other => Response::Unexpected {
                            revision: other.revision(),
                        },
                    },
                })
                .collect(),
        }
    }
}

/// etcd's `ResponseOp`: `{"Response":{"ResponsePut":{...}}}` (Go's oneof wrapper).
#[derive(Debug, Serialize)]
struct ResponseOp<'a> {
    #[serde(rename = "Response")]
    response: Response<'a>,
}

/// The oneof of a [`ResponseOp`], named as Go names its wrapper types.
#[derive(Debug, Serialize)]
#[allow(clippy::enum_variant_names)]
enum Response<'a> {
    ResponsePut(PutJson<'a>),
    ResponseRange(RangeJson<'a>),
    ResponseDeleteRange(DelJson<'a>),
    ResponseTxn(Box<TxnJson<'a>>),
    /// A txn answers only the four above; anything else would be a bug, shown rather than lost.
    Unexpected {
        #[serde(skip_serializing_if = "is_zero")]
        revision: i64,
    },
}

/// A top-level header's fields: clientv3's lease responses embed the header's fields rather
/// than a `header` object.
#[derive(Debug, Serialize)]
pub struct LeaseGrantJson {
    #[serde(flatten)]
    header: Header,
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "TTL")]
    ttl: i64,
    #[serde(rename = "Error")]
    error: &'static str,
}

impl LeaseGrantJson {
    /// A granted lease.
    pub fn new(revision: i64, id: i64, ttl: i64) -> Self {
        LeaseGrantJson {
            header: Header::top(revision),
            id,
            ttl,
            error: "",
        }
    }
}

/// etcd's `LeaseRevokeResponse`.
#[derive(Debug, Serialize)]
pub struct HeaderOnlyJson {
    header: Header,
}

impl HeaderOnlyJson {
    /// An answer that is only a header.
    pub fn new(revision: i64) -> Self {
        HeaderOnlyJson {
            header: Header::top(revision),
        }
    }
}

/// clientv3's `LeaseTimeToLiveResponse`.
#[derive(Debug, Serialize)]
pub struct TimeToLiveJson<'a> {
    #[serde(flatten)]
    header: Header,
    id: i64,
    ttl: i64,
    #[serde(rename = "granted-ttl")]
    granted_ttl: i64,
    /// `null` when there are none (Go's nil slice).
    #[serde(serialize_with = "base64_list")]
    keys: Option<Vec<&'a [u8]>>,
}

impl<'a> TimeToLiveJson<'a> {
    /// A lease's time to live, with its keys when any were asked for and found.
    pub fn new(
        revision: i64,
        id: i64,
        ttl: i64,
        granted_ttl: i64,
        keys: &'a [bytes::Bytes],
    ) -> Self {
        TimeToLiveJson {
            header: Header::top(revision),
            id,
            ttl,
            granted_ttl,
            keys: (!keys.is_empty()).then(|| keys.iter().map(|k| k.as_ref()).collect()),
        }
    }
}

/// clientv3's `LeaseKeepAliveResponse`.
#[derive(Debug, Serialize)]
pub struct KeepAliveJson {
    #[serde(flatten)]
    header: Header,
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "TTL")]
    ttl: i64,
}

impl KeepAliveJson {
    /// A renewed lease.
    pub fn new(revision: i64, id: i64, ttl: i64) -> Self {
        KeepAliveJson {
            header: Header::top(revision),
            id,
            ttl,
        }
    }
}

/// clientv3's `LeaseLeasesResponse`.
#[derive(Debug, Serialize)]
pub struct LeasesJson {
    #[serde(flatten)]
    header: Header,
    leases: Vec<LeaseIdJson>,
}

#[derive(Debug, Serialize)]
struct LeaseIdJson {
    id: i64,
}

impl LeasesJson {
    /// The live leases.
    pub fn new(revision: i64, ids: &[i64]) -> Self {
        LeasesJson {
            header: Header::top(revision),
            leases: ids.iter().map(|&id| LeaseIdJson { id }).collect(),
        }
    }
}

/// clientv3's `WatchResponse` (no `omitempty`: every field is written).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WatchJson<'a> {
    header: Header,
    events: Vec<EventJson<'a>>,
    compact_revision: i64,
    canceled: bool,
    created: bool,
}

impl<'a> WatchJson<'a> {
    /// Events at the header's `revision`.
    pub fn events(revision: i64, events: &'a [WatchEvent]) -> Self {
        WatchJson {
            header: Header::top(revision),
            events: events.iter().map(EventJson::from).collect(),
            compact_revision: 0,
            canceled: false,
            created: false,
        }
    }

    /// A watch cancelled because its start revision is below `compacted` (etcd sends no
    /// revision in that header).
    pub fn canceled(compacted: i64) -> Self {
        WatchJson {
            header: Header::top(0),
            events: Vec::new(),
            compact_revision: compacted,
            canceled: true,
            created: false,
        }
    }
}

/// etcd's `mvccpb.Event`: `type` is 0 (PUT, left out) or 1 (DELETE).
#[derive(Debug, Serialize)]
struct EventJson<'a> {
    #[serde(rename = "type", skip_serializing_if = "is_zero")]
    kind: i32,
    kv: Kv<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_kv: Option<Kv<'a>>,
}

impl<'a> From<&'a WatchEvent> for EventJson<'a> {
    fn from(e: &'a WatchEvent) -> Self {
        EventJson {
            kind: match e.kind {
                EventKind::Put => 0,
                EventKind::Delete => 1,
            },
            kv: Kv::from(&e.kv),
            prev_kv: e.prev_kv.as_ref().map(Kv::from),
        }
    }
}

/// `stats` (batchkv's own).
#[derive(Debug, Serialize)]
pub struct StatsJson<'a> {
    header: Header,
    revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    compacted: Option<i64>,
    applied_index: u64,
    keys: usize,
    leases: usize,
    engine: EngineJson<'a>,
}

#[derive(Debug, Serialize)]
struct EngineJson<'a> {
    column_families: Vec<CfJson<'a>>,
    block_cache_usage: u64,
    block_cache_capacity: u64,
}

#[derive(Debug, Serialize)]
struct CfJson<'a> {
    name: &'a str,
    estimated_keys: u64,
    sst_bytes: u64,
    memtable_bytes: u64,
    live_data_bytes: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
    pending_compaction_bytes: u64,
}

impl<'a> From<&'a StoreStats> for StatsJson<'a> {
    fn from(st: &'a StoreStats) -> Self {
        StatsJson {
            header: Header::top(st.revision),
            revision: st.revision,
            compacted: st.compacted,
            applied_index: st.applied_index,
            keys: st.indexed_keys,
            leases: st.leases,
            engine: EngineJson {
                column_families: st
                    .engine
                    .column_families
                    .iter()
                    .map(|c| CfJson {
                        name: &c.name,
                        estimated_keys: c.estimated_keys,
                        sst_bytes: c.sst_bytes,
                        memtable_bytes: c.memtable_bytes,
                        live_data_bytes: c.live_data_bytes,
                        raw_key_bytes: c.raw_key_bytes,
                        raw_value_bytes: c.raw_value_bytes,
                        pending_compaction_bytes: c.pending_compaction_bytes,
                    })
                    .collect(),
                block_cache_usage: st.engine.block_cache_usage,
                block_cache_capacity: st.engine.block_cache_capacity,
            },
        }
    }
}

/// `checkpoint` (batchkv's own).
#[derive(Debug, Serialize)]
pub struct CheckpointJson {
    header: Header,
    path: String,
}

impl CheckpointJson {
    /// A checkpoint of the store at `revision`, written to `path`.
    pub fn new(revision: i64, path: String) -> Self {
        CheckpointJson {
            header: Header::top(revision),
            path,
        }
    }
}

/// `check` (batchkv's own): etcd's HashKV fields, then what was verified.
#[derive(Debug, Serialize)]
pub struct CheckJson {
    header: Header,
    hash: u32,
    hash_revision: i64,
    compact_revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_at_rev: Option<HashJson>,
    records: u64,
    live_keys: u64,
    leases: u64,
    leased_keys: u64,
    applied_index: u64,
    pruned_revision: i64,
    entries: std::collections::BTreeMap<String, u64>,
    sst_files: usize,
    sst_bytes: u64,
}

/// One HashKV digest.
#[derive(Debug, Serialize)]
struct HashJson {
    hash: u32,
    hash_revision: i64,
    compact_revision: i64,
}

impl CheckJson {
    /// The report of a check, with the digest at `--rev` if asked for.
    pub fn new(r: &batchkv::CheckReport, at: Option<&batchkv::KvHash>) -> Self {
        CheckJson {
            header: Header::top(r.current_revision),
            hash: r.hash.hash,
            hash_revision: r.hash.revision,
            compact_revision: r.hash.compact_revision,
            hash_at_rev: at.map(|h| HashJson {
                hash: h.hash,
                hash_revision: h.revision,
                compact_revision: h.compact_revision,
            }),
            records: r.records,
            live_keys: r.live_keys,
            leases: r.leases,
            leased_keys: r.leased_keys,
            applied_index: r.applied_index,
            pruned_revision: r.pruned_revision,
            entries: r.verified.entries.iter().cloned().collect(),
            sst_files: r.verified.sst_files.len(),
            sst_bytes: r.verified.sst_files.iter().map(|(_, _, b)| b).sum(),
        }
    }
}

/// `bench` (batchkv's own).
#[derive(Debug, Serialize)]
pub struct BenchJson {
    /// At the revision after the last put.
    pub header: Header,
    /// Puts in all.
    pub ops: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// Median put latency.
    pub p50_ms: f64,
    /// 99th percentile put latency.
    pub p99_ms: f64,
    /// Slowest put.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn kv(key: &'static [u8], value: &'static [u8], lease: i64) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(key),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: Bytes::from_static(value),
            lease,
        }
    }

    fn json(v: &impl Serialize) -> String {
        serde_json::to_string(v).expect("JSON")
    }

    #[test]
    fn json_shapes() {
        let r = RangeResponse {
            revision: 3,
            kvs: vec![kv(b"k1", b"v2", 0)],
            more: false,
            count: 1,
        };
        assert_eq!(
            json(&RangeJson::new(&r, false)),
            r#"{"header":{"revision":3},"kvs":[{"key":"azE=","create_revision":2,"mod_revision":3,"version":2,"value":"djI="}],"count":1}"#
        );
        let empty = RangeResponse {
            revision: 3,
            kvs: Vec::new(),
            more: false,
            count: 0,
        };
        assert_eq!(
            json(&RangeJson::new(&empty, true)),
            format!(
                r#"{{"header":{{"cluster_id":{CLUSTER_ID},"member_id":1,"revision":3,"raft_term":1}}}}"#
            )
        );
        let t = TxnResponse {
            revision: 4,
            succeeded: true,
            responses: vec![
                OpResponse::Put(PutResponse {
                    revision: 4,
                    prev_kv: Some(kv(b"a", b"", 5)),
                }),
                OpResponse::DeleteRange(DeleteRangeResponse {
                    revision: 4,
                    deleted: 0,
                    prev_kvs: Vec::new(),
                }),
            ],
        };
        assert_eq!(
            json(&TxnJson::new(&t, false)),
            r#"{"header":{"revision":4},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":4},"prev_kv":{"key":"YQ==","create_revision":2,"mod_revision":3,"version":2,"lease":5}}}},{"Response":{"ResponseDeleteRange":{"header":{"revision":4}}}}]}"#
        );
    }

    #[test]
    fn lease_and_watch_shapes() {
        assert_eq!(
            json(&LeaseGrantJson::new(1, 7, 60)),
            format!(
                r#"{{"cluster_id":{CLUSTER_ID},"member_id":1,"revision":1,"raft_term":1,"ID":7,"TTL":60,"Error":""}}"#
            )
        );
        let keys = [Bytes::from_static(b"k")];
        let with = json(&TimeToLiveJson::new(1, 7, 59, 60, &keys));
        assert!(
            with.ends_with(r#""id":7,"ttl":59,"granted-ttl":60,"keys":["aw=="]}"#),
            "{with}"
        );
        let without = json(&TimeToLiveJson::new(1, 7, -1, 0, &[]));
        assert!(
            without.ends_with(r#""granted-ttl":0,"keys":null}"#),
            "{without}"
        );
        assert!(json(&LeasesJson::new(1, &[])).ends_with(r#""leases":[]}"#));
        assert_eq!(
            json(&WatchJson::canceled(6)),
            format!(
                r#"{{"Header":{{"cluster_id":{CLUSTER_ID},"member_id":1,"raft_term":1}},"Events":[],"CompactRevision":6,"Canceled":true,"Created":false}}"#
            )
        );
        let events = [WatchEvent {
            kind: EventKind::Delete,
            kv: kv(b"a", b"", 0),
            prev_kv: None,
        }];
        let w = json(&WatchJson::events(9, &events));
        assert!(
            w.contains(r#""Events":[{"type":1,"kv":{"key":"YQ==""#),
            "{w}"
        );
    }
}

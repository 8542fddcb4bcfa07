//! etcd's HTTP/JSON gateway (`POST /v3/...`, grpc-gateway's JSON) against `batchkv serve` and
//! against a real etcd 3.4, side by side: every test starts both on free loopback ports
//! (testkit's [`BatchkvServer`] and [`Etcd`]), sends the same HTTP requests to both, and
//! compares the HTTP status and the whole JSON answer after [`normalize`] (the cluster and
//! member ids and the raft term; a lease's remaining TTL; `Status`'s sizes and indexes; JSON
//! decoder texts, which are Go's on one side and serde's on the other). Streams (`/v3/watch`,
//! `/v3/lease/keepalive`) are read line by line as they arrive.
//!
//! etcd and etcdctl (`cargo xtask doctor` installs them) and the `batchkv` binary are needed; a
//! machine without them fails these tests, never skips them.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use batchkv_testkit::{BatchkvServer, Etcd, ServeOptions};
use serde_json::{Value, json};

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
/// The testkit's etcd calls its single member `m0`; batchkv gets the same name.
const MEMBER_NAME: &str = "m0";
/// Every HTTP exchange, streams included, ends within this (a hang fails the test).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The two servers, etcd first.
struct Pair {
    _etcd: Etcd,
    _batchkv: BatchkvServer,
    /// `http://127.0.0.1:port` of etcd, then of batchkv.
    bases: [String; 2],
    agent: ureq::Agent,
}

/// Side 0 is etcd, side 1 batchkv.
fn name(side: usize) -> &'static str {
    ["etcd 3.4", "batchkv"][side]
}

impl Pair {
    fn start() -> Pair {
        let etcd = Etcd::start();
        let batchkv = BatchkvServer::start_with(
            BATCHKV,
            ServeOptions {
                args: vec![format!("--name={MEMBER_NAME}")],
                ..ServeOptions::default()
            },
        );
        let bases = [format!("http://{}", etcd.endpoint()), batchkv.client_url()];
        Pair {
            _etcd: etcd,
            _batchkv: batchkv,
            bases,
            agent: agent(),
        }
    }

    /// `POST base+path` with `body`: the status and the body as JSON (a non-JSON body as a
    /// string).
    fn post(&self, side: usize, path: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.bases[side]);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("{}: POST {path} {body}: {e}", name(side)));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{}: read the answer to {path}: {e}", name(side)));
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Sends `path` `body` to both and asserts the same status and normalized JSON; returns
    /// batchkv's answer.
    fn same(&self, path: &str, body: &str) -> (u16, Value) {
        let answers = [0, 1].map(|side| {
            let (status, mut v) = self.post(side, path, body);
            normalize(&mut v);
            (status, v)
        });
        assert_eq!(
            answers[0], answers[1],
            "POST {path} {body}: etcd 3.4 (left) and batchkv (right) differ"
        );
        answers[1].clone()
    }

    /// A streamed answer: `POST path body`, then the first `lines` JSON lines (normalized).
    fn stream_lines(&self, side: usize, path: &str, body: &str, lines: usize) -> Vec<Value> {
        let mut reader = self.open_stream(side, path, body);
        (0..lines)
            .map(|i| read_line(&mut reader, &format!("{} {path} line {i}", name(side))))
            .collect()
    }

    fn open_stream(&self, side: usize, path: &str, body: &str) -> BufReader<impl Read + use<>> {
        let url = format!("{}{path}", self.bases[side]);
        let resp = self
            .agent
            .post(&url)
            .send(body)
            .unwrap_or_else(|e| panic!("{}: POST {path}: {e}", name(side)));
        assert_eq!(resp.status().as_u16(), 200, "{}: POST {path}", name(side));
        BufReader::new(resp.into_body().into_reader())
    }
}

/// An HTTP client that returns error statuses as answers and gives up after [`HTTP_TIMEOUT`].
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into()
}

/// The next line of a stream, as normalized JSON.
fn read_line(reader: &mut impl BufRead, what: &str) -> Value {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(n > 0, "{what}: the stream ended");
    let mut v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
    normalize(&mut v);
    v
}

/// What may differ between etcd and batchkv, each with its reason:
/// - `cluster_id`, `member_id`, `raft_term` (and `leader`, a member id): each cluster's own;
///   member `ID`s and `peerURLs` (batchkv has no peers), the client URLs (the ports);
/// - `TTL` beside `grantedTTL` (TimeToLive): seconds left, checked to be in (0, granted];
/// - Status's sizes and indexes (checked to be above 0), its version, and `dbSizeQuota`
///   (etcd 3.5's field, which batchkv also fills);
/// - an error's text when it is a JSON decoder's (Go's text on etcd, serde's on batchkv; the
///   code and status must match).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["cluster_id", "member_id", "raft_term", "peerURLs", "leader"] {
                m.remove(k);
            }
            if let Some(granted) = m.get("grantedTTL").and_then(as_i64)
                && let Some(ttl) = m.get("TTL").and_then(as_i64)
            {
                assert!(0 < ttl && ttl <= granted, "TTL {ttl} of {granted}: {m:?}");
                m.insert("TTL".into(), json!("{ttl}"));
            }
            if m.contains_key("dbSize") {
                for k in [
                    "dbSize",
                    "dbSizeInUse",
                    "raftIndex",
                    "raftAppliedIndex",
                    "raftTerm",
                ] {
                    let n = m.get(k).and_then(as_i64);
                    assert!(n > Some(0), "status: {k} is not above 0: {m:?}");
                    m.insert(k.into(), json!("{n}"));
                }
                let version = m.remove("version");
                assert!(
                    version
                        .as_ref()
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.starts_with("3.4.")),
                    "status: version {version:?}"
                );
                m.remove("dbSizeQuota");
            }
            if let Some(Value::Array(members)) = m.get_mut("members") {
                for member in members.iter_mut().filter_map(Value::as_object_mut) {
                    member.remove("ID");
                    if let Some(Value::Array(urls)) = member.get_mut("clientURLs") {
                        for url in urls {
                            *url = json!("{client-url}");
                        }
                    }
                }
            }
            let decoder_error = m.get("code") == Some(&json!(3))
                && m.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.starts_with("etcdserver:"));
            if decoder_error {
                m.insert("error".into(), json!("{decoder}"));
                m.insert("message".into(), json!("{decoder}"));
            }
            for x in m.values_mut() {
                normalize(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// A JSON number or a protobuf-JSON int64 string.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn kv_lease_and_maintenance_answer_as_etcd_does() {
    let p = Pair::start();
    let (foo, bar, baz) = (b64("foo"), b64("bar"), b64("baz"));
    let put = |k: &str, v: &str, extra: &str| format!(r#"{{"key":"{k}","value":"{v}"{extra}}}"#);

    // KV: puts, ranges (sorted, limited, keys only, count only, at a revision), the v3beta
    // alias, deletes.
    let (status, first) = p.same("/v3/kv/put", &put(&foo, &bar, ""));
    assert_eq!(status, 200);
    assert_eq!(first["header"]["revision"], json!("2"), "{first}");
    p.same("/v3/kv/put", &put(&foo, &baz, r#","prev_kv":true"#));
    for k in ["foo1", "foo2", "fop"] {
        p.same("/v3/kv/put", &put(&b64(k), &b64(&format!("v-{k}")), ""));
    }
    p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}"}}"#));
    let prefix = format!(r#""key":"{foo}","range_end":"{}""#, b64("fop"));
    for extra in [
        "",
        r#","sort_order":"DESCEND","sort_target":"MOD""#,
        r#","sortOrder":"ASCEND","sortTarget":"VALUE""#,
        r#","limit":"2""#,
        r#","limit":1,"keys_only":true"#,
        r#","count_only":true"#,
        r#","revision":"3""#,
        r#","min_mod_revision":"4","max_create_revision":"5""#,
        r#","serializable":true,"unknown_field":[1,2]"#,
    ] {
        p.same("/v3/kv/range", &format!("{{{prefix}{extra}}}"));
    }
    p.same(
        "/v3beta/kv/range",
        &format!(r#"{{"key":"{}","range_end":"AA=="}}"#, b64("a")),
    );
    p.same(
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("missing")),
    );
    p.same(
        "/v3/kv/deleterange",
        &format!(
            r#"{{"key":"{}","range_end":"{}","prev_kv":true}}"#,
            b64("foo1"),
            b64("foo3")
        ),
    );
    p.same(
        "/v3/kv/deleterange",
        &format!(r#"{{"key":"{}"}}"#, b64("missing")),
    );

    // Txn: both branches, nested requests of every kind.
    let txn = |value: &str| {
        format!(
            r#"{{"compare":[{{"key":"{foo}","result":"EQUAL","target":"VALUE","value":"{value}"}}],
                "success":[{{"request_put":{{"key":"{foo}","value":"{}","prev_kv":true}}}},
                           {{"request_range":{{"key":"{foo}"}}}}],
                "failure":[{{"request_delete_range":{{"key":"{}","prev_kv":true}}}},
                           {{"request_txn":{{}}}}]}}"#,
            b64("txn"),
            b64("fop"),
        )
    };
    let (_, won) = p.same("/v3/kv/txn", &txn(&baz));
    assert_eq!(won["succeeded"], json!(true), "{won}");
    let (_, lost) = p.same("/v3/kv/txn", &txn(&baz));
    assert!(lost.get("succeeded").is_none(), "{lost}");
    p.same(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{foo}","target":"CREATE","result":"GREATER","create_revision":"1"}},
                            {{"key":"{foo}","target":"VERSION","result":"LESS","version":"100"}}],
                "success":[{{"request_range":{{"key":"{foo}","keys_only":true}}}}]}}"#
        ),
    );

    // Compaction, then reads below it.
    p.same("/v3/kv/compaction", r#"{"revision":"4"}"#);
    p.same(
        "/v3/kv/range",
        &format!(r#"{{"key":"{foo}","revision":"5"}}"#),
    );

    // Leases: grant (a chosen id), a key on it, TimeToLive with keys (both paths), Leases
    // (both paths), revoke (both paths), and TimeToLive after it.
    p.same("/v3/lease/grant", r#"{"TTL":"60","ID":"1000"}"#);
    p.same("/v3/lease/grant", r#"{"TTL":120,"ID":2000}"#);
    p.same(
        "/v3/kv/put",
        &put(&b64("leased"), &bar, r#","lease":"1000""#),
    );
    p.same("/v3/lease/timetolive", r#"{"ID":"1000","keys":true}"#);
    p.same("/v3/kv/lease/timetolive", r#"{"ID":"2000"}"#);
    p.same("/v3/lease/timetolive", r#"{"ID":"77"}"#);
    p.same("/v3/lease/leases", "{}");
    p.same("/v3/kv/lease/leases", "");
    p.same("/v3/lease/revoke", r#"{"ID":"1000"}"#);
    p.same("/v3/kv/lease/revoke", r#"{"ID":"2000"}"#);
    p.same("/v3/lease/timetolive", r#"{"ID":"1000","keys":true}"#);
    p.same("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("leased")));
    // A lease with an id of the server's choosing: a fresh one on each side.
    for side in 0..2 {
        let (status, g) = p.post(side, "/v3/lease/grant", r#"{"TTL":"30"}"#);
        assert_eq!(status, 200, "{}: {g}", name(side));
        assert!(
            g["ID"].as_str().and_then(|s| s.parse::<i64>().ok()) > Some(0),
            "{g}"
        );
        assert_eq!(g["TTL"], json!("30"), "{}: {g}", name(side));
    }

    // Maintenance and cluster.
    p.same("/v3/maintenance/status", "{}");
    p.same("/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    let (_, members) = p.same("/v3/cluster/member/list", "{}");
    assert_eq!(
        members["members"][0]["name"],
        json!(MEMBER_NAME),
        "{members}"
    );
    for side in 0..2 {
        let (status, v) = p.post(side, "/v3/maintenance/hash", "{}");
        assert_eq!(status, 200, "{}: {v}", name(side));
        assert!(v["hash"].as_u64().is_some(), "{}: {v}", name(side));
    }

    // etcd's version endpoint (etcd3gw reads it).
    for side in 0..2 {
        let mut resp = p
            .agent
            .get(&format!("{}/version", p.bases[side]))
            .call()
            .expect("GET /version");
        let v: Value = resp.body_mut().read_json().expect("JSON");
        let server = v["etcdserver"].as_str().unwrap_or_default();
        assert!(server.starts_with("3.4."), "{}: {v}", name(side));
    }
}

#[test]
fn errors_answer_as_etcd_does() {
    let p = Pair::start();
    let foo = b64("foo");
    for _ in 0..3 {
        p.same(
            "/v3/kv/put",
            &format!(r#"{{"key":"{foo}","value":"{}"}}"#, b64("v")),
        );
    }
    p.same("/v3/kv/compaction", r#"{"revision":"3"}"#);
    let cases = [
        // A compacted revision and a future one (OutOfRange: 400, code 11).
        (
            "/v3/kv/range",
            format!(r#"{{"key":"{foo}","revision":"2"}}"#),
            400,
        ),
        (
            "/v3/kv/range",
            format!(r#"{{"key":"{foo}","revision":"99"}}"#),
            400,
        ),
        ("/v3/kv/compaction", r#"{"revision":"2"}"#.to_owned(), 400),
        ("/v3/kv/compaction", r#"{"revision":"99"}"#.to_owned(), 400),
        // An unknown lease (NotFound: 404, code 5).
        ("/v3/lease/revoke", r#"{"ID":"12345"}"#.to_owned(), 404),
        (
            "/v3/kv/put",
            format!(r#"{{"key":"{foo}","value":"","lease":"12345"}}"#),
            404,
        ),
        // No key, an empty body (InvalidArgument: 400, code 3).
        ("/v3/kv/put", r#"{"key":""}"#.to_owned(), 400),
        ("/v3/kv/range", String::new(), 400),
        // A txn putting one key twice.
        (
            "/v3/kv/txn",
            format!(
                r#"{{"success":[{{"request_put":{{"key":"{foo}"}}}},{{"request_put":{{"key":"{foo}"}}}}]}}"#
            ),
            400,
        ),
        // A lease already granted (FailedPrecondition: 412, code 9).
        (
            "/v3/lease/grant",
            r#"{"TTL":"60","ID":"5"}"#.to_owned(),
            200,
        ),
        (
            "/v3/lease/grant",
            r#"{"TTL":"60","ID":"5"}"#.to_owned(),
            412,
        ),
        // Unreadable JSON, bad base64, an unknown enum name (the decoder's error: 400, code 3).
        ("/v3/kv/range", r#"{"key":"Zm9v","#.to_owned(), 400),
        ("/v3/kv/range", r#"{"key":"!!"}"#.to_owned(), 400),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","sort_order":"NOPE"}"#.to_owned(),
            400,
        ),
    ];
    for (path, body, want) in &cases {
        let (status, v) = p.same(path, body);
        assert_eq!(status, *want, "POST {path} {body}: {v}");
        if status != 200 {
            let code = v["code"].as_i64().unwrap_or_default();
            assert!(
                code > 0 && v["error"] == v["message"],
                "POST {path} {body}: {v}"
            );
        }
    }
    // A request over the size limit: grpc's ResourceExhausted (429, code 8), whose text
    // carries each side's numbers.
    let big = format!(
        r#"{{"key":"{foo}","value":"{}"}}"#,
        b64(&"x".repeat(5 << 20))
    );
    for side in 0..2 {
        let (status, v) = p.post(side, "/v3/kv/put", &big);
        assert_eq!(status, 429, "{}: {v}", name(side));
        assert_eq!(v["code"], json!(8), "{}: {v}", name(side));
        let text = v["message"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("grpc: received message larger than max"),
            "{}: {v}",
            name(side)
        );
    }
    // Not a gateway path; not POST.
    for side in 0..2 {
        let (status, _) = p.post(side, "/v3/kv/nothing", "{}");
        assert_eq!(status, 404, "{}: /v3/kv/nothing", name(side));
        let resp = p
            .agent
            .get(&format!("{}/v3/kv/range", p.bases[side]))
            .call()
            .expect("GET /v3/kv/range");
        assert_eq!(
            resp.status().as_u16(),
            405,
            "{}: GET /v3/kv/range",
            name(side)
        );
    }
}

#[test]
fn streams_answer_as_etcd_does() {
    let p = Pair::start();
    let (w, w2) = (b64("w"), b64("w2"));
    let put = |side: usize, k: &str, v: &str| {
        let (status, _) = p.post(
            side,
            "/v3/kv/put",
            &format!(r#"{{"key":"{k}","value":"{v}"}}"#),
        );
        assert_eq!(status, 200, "{}: put", name(side));
    };

    // A live watch (prefix, prev_kv): created, then one line per write, in order.
    let mut seen = Vec::new();
    for side in 0..2 {
        let mut reader = p.open_stream(
            side,
            "/v3/watch",
            &format!(
                r#"{{"create_request":{{"key":"{w}","range_end":"{}","prev_kv":true}}}}"#,
                b64("x")
            ),
        );
        let what = |i: usize| format!("{} watch line {i}", name(side));
        let mut lines = vec![read_line(&mut reader, &what(0))];
        put(side, &w, &b64("1"));
        put(side, &w2, &b64("2"));
        put(side, &w, &b64("3"));
        let (status, _) = p.post(
            side,
            "/v3/kv/deleterange",
            &format!(r#"{{"key":"{w}","prev_kv":true}}"#),
        );
        assert_eq!(status, 200);
        for i in 1..5 {
            lines.push(read_line(&mut reader, &what(i)));
        }
        assert_eq!(lines[0]["result"]["created"], json!(true), "{lines:?}");
        seen.push(lines);
    }
    assert_eq!(
        seen[0], seen[1],
        "/v3/watch: etcd 3.4 (left) and batchkv (right) differ"
    );
    assert_eq!(seen[1][4]["result"]["events"][0]["type"], json!("DELETE"));

    // Several requests in one body: a bad range, a chosen id, a progress request, a cancel;
    // then a watch from a compacted revision.
    p.same("/v3/kv/compaction", r#"{"revision":"4"}"#);
    let body = format!(
        r#"{{"create_request":{{"key":"{w}","range_end":"{}"}}}}
           {{"create_request":{{"key":"{w}","watch_id":"7"}}}} {{"progress_request":{{}}}}
           {{"cancel_request":{{"watch_id":"7"}}}}
           {{"create_request":{{"key":"{w}","start_revision":"2","watch_id":"8"}}}}"#,
        b64("a")
    );
    let answers = [0, 1].map(|side| p.stream_lines(side, "/v3/watch", &body, 6));
    assert_eq!(
        answers[0], answers[1],
        "/v3/watch: etcd 3.4 (left) and batchkv (right) differ"
    );
    assert_eq!(
        answers[1][5]["result"]["compact_revision"],
        json!("4"),
        "{:?}",
        answers[1]
    );

    // Keep-alives: a lease's, then an unknown lease's (TTL 0, left out); the stream ends with
    // the body.
    p.same("/v3/lease/grant", r#"{"TTL":"60","ID":"42"}"#);
    let answers = [0, 1].map(|side| {
        let mut reader = p.open_stream(side, "/v3/lease/keepalive", r#"{"ID":"42"} {"ID":"43"}"#);
        let lines: Vec<Value> = (0..2)
            .map(|i| read_line(&mut reader, &format!("{} keepalive line {i}", name(side))))
            .collect();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("the stream ends");
        assert_eq!(rest.trim(), "", "{}: keepalive after the body", name(side));
        lines
    });
    assert_eq!(
        answers[0], answers[1],
        "/v3/lease/keepalive: etcd 3.4 (left) and batchkv (right)"
    );
    assert_eq!(answers[1][0]["result"]["TTL"], json!("60"));

    // A snapshot streams base64 blobs (the contents are each server's own).
    for side in 0..2 {
        let line = p.stream_lines(side, "/v3/maintenance/snapshot", "{}", 1);
        assert!(
            line[0]["result"]["blob"]
                .as_str()
                .is_some_and(|b| !b.is_empty()),
            "{line:?}"
        );
    }
}

/// batchkv's own (etcd cannot be stopped under its gateway this way): SIGTERM ends a gateway
/// watch stream with grpc-gateway's error line (Unavailable, etcd's "server stopped"), then the
/// body ends and the server exits 0.
#[test]
fn a_stopping_server_ends_gateway_streams_with_an_error_line() {
    let mut server = BatchkvServer::start(BATCHKV);
    let resp = agent()
        .post(&format!("{}/v3/watch", server.client_url()))
        .send(r#"{"create_request":{"key":"YQ=="}}"#)
        .expect("POST /v3/watch");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let created = read_line(&mut reader, "the watch's first line");
    assert_eq!(created["result"]["created"], json!(true), "{created}");
    let status = server.stop();
    assert!(status.success(), "batchkv serve exited with {status}");
    let last = read_line(&mut reader, "the line after SIGTERM");
    assert_eq!(
        last,
        json!({"error": {
            "grpc_code": 14,
            "http_code": 503,
            "message": "etcdserver: server stopped",
            "http_status": "Service Unavailable",
        }})
    );
    let mut rest = String::new();
    reader.read_to_string(&mut rest).expect("the body ends");
    assert_eq!(rest, "", "after the error line");
}

/// etcd's `--enable-grpc-gateway=false`: the gateway's paths are gone (404), gRPC is served.
#[test]
fn the_gateway_can_be_turned_off() {
    let server = BatchkvServer::start_with(
        BATCHKV,
        ServeOptions {
            args: vec!["--enable-grpc-gateway=false".into()],
            ..ServeOptions::default()
        },
    );
    let resp = agent()
        .post(&format!("{}/v3/kv/range", server.client_url()))
        .send(r#"{"key":"YQ=="}"#)
        .expect("POST /v3/kv/range");
    assert_eq!(resp.status().as_u16(), 404);
    let put = server.ctl(&["put", "a", "1"], None);
    assert!(put.ok, "etcdctl put over gRPC: {put:?}");
}

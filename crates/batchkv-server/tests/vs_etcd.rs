//! The same requests through `etcd-client` to a real etcd 3.4 (testkit's, on loopback ports of
//! its own) and to batchkv-server: the same answers (revisions, key-values, counts, txn
//! branches, error codes and texts), ids and cluster fields aside.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};

use common::TestServer;

fn kvs(kvs: &[etcd_client::KeyValue]) -> String {
    kvs.iter()
        .map(|kv| {
            format!(
                "{}={}@{}/{}/v{}",
                String::from_utf8_lossy(kv.key()),
                String::from_utf8_lossy(kv.value()),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn err(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("error {:?}: {}", s.code(), s.message()),
        other => format!("error {other}"),
    }
}

fn rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(-1, |h| h.revision())
}

/// Runs the script on `c`; one line per request.
async fn script(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! get {
        ($key:expr, $opts:expr) => {
            out.push(match c.get($key, $opts).await {
                Ok(r) => format!(
                    "get rev={} count={} more={} [{}]",
                    rev(r.header()),
                    r.count(),
                    r.more(),
                    kvs(r.kvs())
                ),
                Err(e) => err(e),
            })
        };
    }
    macro_rules! put {
        ($key:expr, $value:expr, $opts:expr) => {
            out.push(match c.put($key, $value, $opts).await {
                Ok(r) => format!(
                    "put rev={} prev=[{}]",
                    rev(r.header()),
                    kvs(r
                        .prev_key()
                        .into_iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .as_slice())
                ),
                Err(e) => err(e),
            })
        };
    }
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c/x", "3"),
        ("c/y", "4"),
        ("a", "5"),
    ] {
        put!(k, v, Some(PutOptions::new().with_prev_key()));
    }
    get!("a", None);
    get!("", Some(GetOptions::new().with_all_keys()));
    get!(
        "c/",
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Value, SortOrder::Descend)
                .with_limit(1)
        )
    );
    get!("a", Some(GetOptions::new().with_revision(2)));
    get!("b", Some(GetOptions::new().with_range("c/y")));
    get!(
        "a",
        Some(GetOptions::new().with_from_key().with_count_only())
    );
    get!(
        "",
        Some(
            GetOptions::new()
                .with_all_keys()
                .with_keys_only()
                .with_max_create_revision(3)
        )
    );
    let txn = Txn::new()
        .when([
            Compare::value("a", CompareOp::Equal, "5"),
            Compare::version("b", CompareOp::Greater, 0),
        ])
        .and_then([
            TxnOp::put("t", "yes", Some(PutOptions::new().with_prev_key())),
            TxnOp::delete("b", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::get("c/", Some(GetOptions::new().with_prefix())),
            TxnOp::txn(Txn::new().and_then([TxnOp::put("u", "nested", None)])),
        ])
        .or_else([TxnOp::put("t", "no", None)]);
    out.push(match c.txn(txn).await {
        Ok(r) => {
            let ops: Vec<String> = r
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    TxnOpResponse::Put(p) => format!("put rev={}", rev(p.header())),
                    TxnOpResponse::Delete(d) => format!(
                        "del rev={} deleted={} [{}]",
                        rev(d.header()),
                        d.deleted(),
                        kvs(d.prev_kvs())
                    ),
                    TxnOpResponse::Get(g) => {
                        format!("get rev={} [{}]", rev(g.header()), kvs(g.kvs()))
                    }
                    TxnOpResponse::Txn(t) => {
                        format!("txn rev={} ok={}", rev(t.header()), t.succeeded())
                    }
                })
                .collect();
            format!(
                "txn rev={} ok={} {}",
                rev(r.header()),
                r.succeeded(),
                ops.join("; ")
            )
        }
        Err(e) => err(e),
    });
    let txn = Txn::new()
        .when([Compare::mod_revision("a", CompareOp::Less, 2)])
        .and_then([TxnOp::put("never", "x", None)])
        .or_else([TxnOp::get("t", None)]);
    out.push(match c.txn(txn).await {
        Ok(r) => format!("txn rev={} ok={}", rev(r.header()), r.succeeded()),
        Err(e) => err(e),
    });
    out.push(
        match c
            .delete(
                "c/",
                Some(DeleteOptions::new().with_prefix().with_prev_key()),
            )
            .await
        {
            Ok(d) => format!(
                "del rev={} deleted={} [{}]",
                rev(d.header()),
                d.deleted(),
                kvs(d.prev_kvs())
            ),
            Err(e) => err(e),
        },
    );
    out.push(match c.delete("nothing", None).await {
        Ok(d) => format!("del rev={} deleted={}", rev(d.header()), d.deleted()),
        Err(e) => err(e),
    });
    out.push(match c.compact(4, None).await {
        Ok(r) => format!("compact rev={}", rev(r.header())),
        Err(e) => err(e),
    });
    get!("a", Some(GetOptions::new().with_revision(3)));
    get!("a", Some(GetOptions::new().with_revision(4)));
    get!("a", Some(GetOptions::new().with_revision(1000)));
    out.push(match c.compact(3, None).await {
        Ok(r) => format!("compact rev={}", rev(r.header())),
        Err(e) => err(e),
    });
    put!("", "v", None);
    put!("x", "v", Some(PutOptions::new().with_lease(999)));
    put!("missing", "", Some(PutOptions::new().with_ignore_value()));
    out.push(
        match c
            .txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
            .await
        {
            Ok(r) => format!("txn rev={}", rev(r.header())),
            Err(e) => err(e),
        },
    );
    out.push(match c.lease_grant(1, None).await {
        Ok(g) => format!("grant ttl={} rev={}", g.ttl(), rev(g.header())),
        Err(e) => err(e),
    });
    out.push(match c.lease_revoke(999).await {
        Ok(r) => format!("revoke rev={}", rev(r.header())),
        Err(e) => err(e),
    });
    out.push(match c.lease_time_to_live(999, None).await {
        Ok(t) => format!("ttl ttl={} granted={}", t.ttl(), t.granted_ttl()),
        Err(e) => err(e),
    });
    // A watch replaying history from revision 4 (the compacted one) up to the current revision:
    // its events (etcd groups a catch-up's revisions into fewer responses: not compared).
    let current = match c.get("a", None).await {
        Ok(r) => rev(r.header()),
        Err(e) => {
            out.push(err(e));
            return out;
        }
    };
    match c
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(4)
                    .with_prev_key(),
            ),
        )
        .await
    {
        Ok(mut s) => {
            let mut last = 0;
            while last < current {
                let Ok(Some(r)) = s.message().await else {
                    out.push("watch ended".into());
                    break;
                };
                if r.created() {
                    out.push(format!("watch created id={}", r.watch_id()));
                    continue;
                }
                for e in r.events() {
                    last = e.kv().map_or(last, |kv| kv.mod_revision());
                    out.push(format!(
                        "event {:?} [{}] prev=[{}]",
                        e.event_type(),
                        kvs(e.kv().into_iter().cloned().collect::<Vec<_>>().as_slice()),
                        kvs(e
                            .prev_kv()
                            .into_iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .as_slice())
                    ));
                }
            }
            // A progress request, then watches from a compacted revision and on an empty
            // range, on the same stream.
            out.push(match s.request_progress().await {
                Ok(()) => next_watch(&mut s).await,
                Err(e) => err(e),
            });
            out.push(
                match s
                    .watch("a", Some(WatchOptions::new().with_start_revision(2)))
                    .await
                {
                    Ok(()) => next_watch(&mut s).await + " / " + &next_watch(&mut s).await,
                    Err(e) => err(e),
                },
            );
            out.push(
                match s
                    .watch("b", Some(WatchOptions::new().with_range("a")))
                    .await
                {
                    Ok(()) => next_watch(&mut s).await,
                    Err(e) => err(e),
                },
            );
            // A chosen watch id, then the same id again.
            for _ in 0..2 {
                let sent = s
                    .watch("z", Some(WatchOptions::new().with_watch_id(5)))
                    .await;
                out.push(match sent {
                    Ok(()) => next_watch(&mut s).await,
                    Err(e) => err(e),
                });
            }
        }
        Err(e) => out.push(err(e)),
    }
    out
}

async fn next_watch(s: &mut etcd_client::WatchStream) -> String {
    match s.message().await {
        Ok(Some(r)) => format!(
            "watch id={} created={} canceled={} compact={} reason={:?} rev={} events={}",
            r.watch_id(),
            r.created(),
            r.canceled(),
            r.compact_revision(),
            r.cancel_reason(),
            rev(r.header()),
            r.events().len()
        ),
        Ok(None) => "watch ended".into(),
        Err(e) => err(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_answers_as_etcd() {
    let etcd = batchkv_testkit::Etcd::start();
    let mut ec = Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect to etcd");
    let expected = script(&mut ec).await;
    let server = TestServer::start().await;
    let mut bc = server.client().await;
    let got = script(&mut bc).await;
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(g, e, "request {i} differs (etcd first):\n{e}\n{g}");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}\n{expected:#?}");
    server.stop().await.unwrap();
}

/// One revision's events larger than `--max-request-bytes` (etcd's default, 1.5 MiB) plus
/// etcd's 512 KiB allowance for gRPC: a watch
/// created with `fragment` gets them in several responses, each under the limit; a watch
/// without it gets one response. Returns, per watch, the event counts of its responses.
async fn fragment_script(c: &mut Client) -> Vec<String> {
    const KEYS: usize = 12;
    let value = vec![b'v'; 200 * 1024];
    for i in 0..KEYS {
        c.put(format!("frag/{i:02}"), value.clone(), None)
            .await
            .unwrap();
    }
    let opts = || WatchOptions::new().with_prefix().with_prev_key();
    let mut fragmented = c
        .watch("frag/", Some(opts().with_fragment()))
        .await
        .unwrap();
    let mut whole = c.watch("frag/", Some(opts())).await.unwrap();
    for s in [&mut fragmented, &mut whole] {
        let created = s.message().await.unwrap().unwrap();
        assert!(created.created(), "{created:?}");
    }
    let deleted = c
        .delete("frag/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), KEYS as i64);
    let mut out = Vec::new();
    for (name, s) in [("fragment", &mut fragmented), ("whole", &mut whole)] {
        let mut counts = Vec::new();
        let mut keys = Vec::new();
        while keys.len() < KEYS {
            let r = tokio::time::timeout(std::time::Duration::from_secs(60), s.message())
                .await
                .expect("the events within a minute")
                .unwrap()
                .expect("the stream goes on");
            counts.push(r.events().len());
            for e in r.events() {
                let kv = e.kv().unwrap();
                let prev = e.prev_kv().map_or(0, |p| p.value().len());
                keys.push(format!("{}:{prev}", String::from_utf8_lossy(kv.key())));
            }
        }
        out.push(format!(
            "{name}: responses {counts:?}, events {}",
            keys.join(",")
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_watch_responses_as_etcd() {
    let etcd = batchkv_testkit::Etcd::start();
    let mut ec = Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect to etcd");
    let expected = fragment_script(&mut ec).await;
    assert!(
        expected[0].starts_with("fragment: responses [") && !expected[0].contains("[12]"),
        "etcd fragmented: {expected:?}"
    );
    let server = TestServer::start().await;
    let mut bc = server.client().await;
    let got = fragment_script(&mut bc).await;
    assert_eq!(got, expected);
    server.stop().await.unwrap();
}

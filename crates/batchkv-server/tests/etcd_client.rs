//! The Rust `etcd-client` crate against `batchkv-server` in this process: every served RPC,
//! the watch and keep-alive streams, etcd's errors by code and text, many clients at once.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Compare, CompareOp, DeleteOptions, EventType, GetOptions,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchFilterType, WatchOptions,
};
use tonic::Code;

use common::{TestServer, grpc};

/// A bound on every wait for a stream message (a hang fails the test instead of blocking it).
const WAIT: Duration = Duration::from_secs(20);

async fn next_watch(stream: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a watch response in time")
        .expect("a watch response")
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_range_delete_txn_compact() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    let put = c.put("a/1", "v1", None).await.unwrap();
    let header = put.header().unwrap();
    assert_eq!(header.revision(), 2);
    assert_eq!(header.cluster_id(), batchkv_server::CLUSTER_ID);
    assert_eq!(header.member_id(), batchkv_server::MEMBER_ID);
    c.put("a/2", "v2", None).await.unwrap();
    c.put("a/3", "v3", None).await.unwrap();
    let prev = c
        .put("a/1", "v1b", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(prev.prev_key().unwrap().value(), b"v1");
    c.put("b", "other", None).await.unwrap(); // revision 6

    // Prefix, limit, sort, keys only, count only, revision, min/max revisions.
    let r = c
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_limit(2)
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, [&b"a/3"[..], b"a/2"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);
    assert_eq!(r.header().unwrap().revision(), 6);
    let r = c
        .get("a/", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));
    let r = c
        .get(
            "a/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.count()), (0, 3));
    let r = c
        .get("a/1", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"v1");
    let r = c
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(4)
                    .with_serializable(),
            ),
        )
        .await
        .unwrap();
    let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, [&b"a/1"[..], b"a/3"]);
    let kv = &c.get("a/1", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 5, 2)
    );

    // A nested txn.
    let inner = Txn::new()
        .when([Compare::value("b", CompareOp::Equal, "other")])
        .and_then([TxnOp::put("c", "from-inner", None)]);
    let txn = Txn::new()
        .when([Compare::version("a/1", CompareOp::Greater, 1)])
        .and_then([
            TxnOp::get("a/", Some(GetOptions::new().with_prefix())),
            TxnOp::txn(inner),
        ])
        .or_else([TxnOp::put("never", "x", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 7);
    let ops = r.op_responses();
    match &ops[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.count(), 3),
        other => panic!("expected a range answer, got {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Txn(t) => assert!(t.succeeded()),
        other => panic!("expected a txn answer, got {other:?}"),
    }
    assert_eq!(
        c.get("c", None).await.unwrap().kvs()[0].value(),
        b"from-inner"
    );

    // Delete with prev_kv.
    let d = c
        .delete(
            "a/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!((d.deleted(), d.prev_kvs().len()), (3, 3));
    assert_eq!(d.header().unwrap().revision(), 8);

    // Compact, then the old revision is gone with etcd's error.
    c.compact(5, None).await.unwrap();
    let e = grpc(
        c.get("a/1", Some(GetOptions::new().with_revision(3)))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_etcds() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let check = |e: etcd_client::Error, code: Code, text: &str| {
        let s = grpc(e);
        assert_eq!((s.code(), s.message()), (code, text));
    };
    check(
        c.put("", "v", None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    check(
        c.get("", None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    check(
        c.get("k", Some(GetOptions::new().with_revision(100)))
            .await
            .unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    check(
        c.compact(100, None).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    check(
        c.lease_revoke(12345).await.unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    check(
        c.put("k", "v", Some(PutOptions::new().with_lease(12345)))
            .await
            .unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    check(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    check(
        c.txn(dup).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("m{i}"), "v", None))
        .collect();
    check(
        c.txn(Txn::new().and_then(many)).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    // Above --max-request-bytes (1.5 MiB) but within the gRPC allowance: etcd's error.
    check(
        c.put("big", vec![b'x'; 1_700_000], None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    // Past the allowance the transport refuses it (etcd: ResourceExhausted from grpc-go).
    let e = grpc(c.put("huge", vec![b'x'; 3 << 20], None).await.unwrap_err());
    assert_ne!(e.code(), Code::Ok);
    // Nothing of it was stored, and the server still answers.
    assert_eq!(c.get("big", None).await.unwrap().count(), 0);
    // Not served: Unimplemented, naming the RPC.
    let e = grpc(c.user_add("u", "p", None).await.unwrap_err());
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("Auth/UserAdd"), "{}", e.message());
    let e = grpc(
        c.member_add(["http://127.0.0.1:1"], None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("Cluster/MemberAdd"), "{}", e.message());
    // MoveLeader on one member: to another id, etcd's refusal; to itself, done at once.
    check(
        c.move_leader(2).await.unwrap_err(),
        Code::FailedPrecondition,
        "etcdserver: bad leader transferee",
    );
    c.move_leader(batchkv_server::MEMBER_ID).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_the_keep_alive_stream() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let g = c.lease_grant(60, None).await.unwrap();
    assert_eq!(g.ttl(), 60);
    let id = g.id();
    c.put("l/1", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    c.put("l/2", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let t = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(t.granted_ttl(), 60);
    assert!(t.ttl() > 0 && t.ttl() <= 60, "{}", t.ttl());
    assert_eq!(t.keys(), [b"l/1".to_vec(), b"l/2".to_vec()]);
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(listed, [id]);

    // The keep-alive stream: a few renewals, each answering the whole TTL.
    let (mut keeper, mut renewals) = c.lease_keep_alive(id).await.unwrap();
    for _ in 0..3 {
        keeper.keep_alive().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(20), renewals.message())
            .await
            .expect("a renewal in time")
            .unwrap()
            .expect("a renewal");
        assert_eq!((r.id(), r.ttl()), (id, 60));
    }

    // Revoke deletes the keys; then the lease is unknown everywhere, each as etcd answers.
    let rev = c
        .lease_revoke(id)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(rev, 4);
    assert_eq!(
        c.get("l/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!((t.ttl(), t.granted_ttl()), (-1, 0));
    // A keep-alive of an unknown lease answers TTL 0 (etcd's answer, not an error).
    keeper.keep_alive().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), renewals.message())
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
    assert_eq!((r.id(), r.ttl()), (id, 0));

    // A short lease expires by itself, deleting its key.
    let short = c.lease_grant(2, None).await.unwrap().id();
    c.put("short", "v", Some(PutOptions::new().with_lease(short)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.get("short", None).await.unwrap().count() == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_filters_cancel_and_progress() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.put("w/0", "before", None).await.unwrap(); // revision 2

    // From revision 2 with prev_kv: history first, then live events.
    let mut s = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(2)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let created = next_watch(&mut s).await;
    assert!(created.created());
    assert_eq!(created.watch_id(), 0);
    let r = next_watch(&mut s).await;
    assert_eq!(r.events()[0].kv().unwrap().value(), b"before");
    c.put("w/0", "after", None).await.unwrap(); // 3
    let r = next_watch(&mut s).await;
    let e = &r.events()[0];
    assert_eq!(e.event_type(), EventType::Put);
    assert_eq!(e.kv().unwrap().value(), b"after");
    assert_eq!(e.prev_kv().unwrap().value(), b"before");
    assert_eq!(r.header().unwrap().revision(), 3);

    // A second watch on the same stream, with a chosen id and no puts.
    s.watch(
        "w/",
        Some(
            WatchOptions::new()
                .with_prefix()
                .with_watch_id(7)
                .with_filters([WatchFilterType::NoPut]),
        ),
    )
    .await
    .unwrap();
    let created = next_watch(&mut s).await;
    assert!(created.created());
    assert_eq!(created.watch_id(), 7);
    // A duplicate id is refused as etcd refuses it.
    s.watch("x", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let dup = next_watch(&mut s).await;
    assert!(dup.created() && dup.canceled());
    assert_eq!(dup.watch_id(), -1);
    assert_eq!(
        dup.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    c.delete("w/0", None).await.unwrap(); // 4: both watches see it
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = next_watch(&mut s).await;
        assert_eq!(r.events()[0].event_type(), EventType::Delete);
        seen.push(r.watch_id());
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 7]);

    // Cancel watch 0; a progress request answers watch id -1 at the current revision.
    s.cancel(0).await.unwrap();
    let r = next_watch(&mut s).await;
    assert!(r.canceled());
    assert_eq!(r.watch_id(), 0);
    c.put("w/1", "x", None).await.unwrap(); // 5: only watch 7 wanted it, and it filters puts
    s.request_progress().await.unwrap();
    let r = next_watch(&mut s).await;
    assert_eq!(r.watch_id(), -1);
    assert!(r.events().is_empty());
    assert_eq!(r.header().unwrap().revision(), 5);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_notify_and_compaction_cancel() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for i in 0..5 {
        c.put("p", format!("v{i}"), None).await.unwrap(); // revisions 2..=6
    }
    // progress_notify: an idle watch gets empty responses at the current revision.
    let mut s = c
        .watch("p", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    assert!(next_watch(&mut s).await.created());
    let r = next_watch(&mut s).await;
    assert!(r.events().is_empty() && !r.canceled());
    assert_eq!(r.header().unwrap().revision(), 6);

    // A watch from a compacted revision is created, then cancelled with the compacted revision.
    c.compact(5, None).await.unwrap();
    let mut s = c
        .watch("p", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .unwrap();
    assert!(next_watch(&mut s).await.created());
    let r = next_watch(&mut s).await;
    assert!(r.canceled());
    assert_eq!(r.compact_revision(), 5);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_and_cluster() {
    let server = TestServer::start_with(|c| batchkv_server::ServerConfig {
        name: "node-a".into(),
        ..c
    })
    .await;
    let mut c = server.client().await;
    for i in 0..10 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let st = c.status().await.unwrap();
    assert_eq!(st.version(), batchkv_server::ETCD_VERSION);
    assert_eq!(st.leader(), batchkv_server::MEMBER_ID);
    assert_eq!(st.header().unwrap().revision(), 11);
    assert!(st.raft_index() >= 10 && st.raft_index() == st.raft_applied_index());
    assert!(st.errors().is_empty());

    let h = c.hash_kv(0).await.unwrap();
    let mine = server.store.hash_kv(0).unwrap();
    assert_eq!((h.hash(), h.hash_revision()), (mine.hash, 11));
    assert_eq!(c.hash().await.unwrap().hash(), mine.hash);
    let e = grpc(c.hash_kv(100).await.unwrap_err());
    assert_eq!(e.code(), Code::OutOfRange);

    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert!(alarms.alarms().is_empty());
    c.defragment().await.unwrap();

    let members = c.member_list().await.unwrap();
    let m = &members.members()[0];
    assert_eq!(members.members().len(), 1);
    assert_eq!((m.id(), m.name()), (batchkv_server::MEMBER_ID, "node-a"));
    assert_eq!(m.client_urls(), [format!("http://{}", server.endpoint)]);

    // Snapshot: a tar of a consistent checkpoint; unpacked, it opens with every key.
    let mut snap = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut last_remaining = u64::MAX;
    while let Some(chunk) = snap.message().await.unwrap() {
        bytes.extend_from_slice(chunk.blob());
        last_remaining = chunk.remaining_bytes();
    }
    assert_eq!(last_remaining, 0);
    // etcd's trailer: the SHA-256 of the archive before it.
    let (archive, sum) = bytes.split_at(bytes.len() - 32);
    assert_eq!(archive.len() % 512, 0);
    use sha2::Digest;
    assert_eq!(sha2::Sha256::digest(archive).as_slice(), sum);
    let out = server.dir.path().join("restored");
    tar::Archive::new(archive).unpack(&out).unwrap();
    let copy = batchkv::Store::open(out.join("snapshot")).unwrap();
    assert_eq!(copy.current_revision(), 11);
    assert_eq!(copy.hash_kv(0).unwrap().hash, mine.hash);
    copy.close().unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for t in 0..64 {
        let mut c = server.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                c.put(format!("c/{t:02}/{i:02}"), "v", None).await.unwrap();
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        format!("c/{t:02}/{i:02}"),
                        CompareOp::Greater,
                        0,
                    )])
                    .and_then([TxnOp::get(format!("c/{t:02}/{i:02}"), None)]);
                assert!(c.txn(txn).await.unwrap().succeeded());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = server.client().await;
    let r = c
        .get(
            "c/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(r.count(), 64 * 20);
    assert_eq!(r.header().unwrap().revision(), 1 + 64 * 20);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_keeps_acknowledged_writes() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.put("durable", "yes", None).await.unwrap();
    let mut s = c.watch("x", None).await.unwrap();
    assert!(next_watch(&mut s).await.created());
    let (served, dir) = server.stop_keeping_dir().await;
    served.unwrap();
    // The watch stream ended (an error or its end), it did not hang.
    let end = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("the stream ends in time");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    // The acknowledged write is in the store (reopened once the last watch thread let go).
    let deadline = tokio::time::Instant::now() + WAIT;
    let store = loop {
        match batchkv::Store::open(dir.path().join("data")) {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen the store: {e}"),
        }
    };
    assert_eq!(store.get("durable").unwrap().unwrap().value, "yes");
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_stalls_no_write_and_catches_up() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut s = c
        .watch("slow/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next_watch(&mut s).await.created());
    // Far more than every buffer on the way holds (watcher, bridge, stream, HTTP/2 window),
    // while the watcher reads nothing: every write still completes.
    let mut w = server.client().await;
    let n: i64 = 3000;
    for i in 0..n {
        w.put(format!("slow/{i:05}"), vec![b'v'; 1024], None)
            .await
            .unwrap();
    }
    // Then it reads: every event, once, in revision order.
    let mut next_rev = 2;
    while next_rev < 2 + n {
        let r = next_watch(&mut s).await;
        for e in r.events() {
            let kv = e.kv().unwrap();
            assert_eq!(kv.mod_revision(), next_rev);
            assert_eq!(kv.key(), format!("slow/{:05}", next_rev - 2).as_bytes());
            next_rev += 1;
        }
    }
    server.stop().await.unwrap();
}

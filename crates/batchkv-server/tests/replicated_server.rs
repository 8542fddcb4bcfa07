//! etcd's gRPC API over replicated `Store`s: three members in this process (raft over the
//! in-process `LocalNetwork`, each store on real RocksDB in a temp dir), each behind its own
//! server, and the Rust `etcd-client`. A write on any member's endpoint is seen by a
//! linearizable read on every other at once; a member cut off from the others refuses a
//! linearizable read and a write with etcd's errors, and still serves a serializable read.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use batchkv::{LocalNetwork, NodeConfig, RaftStorage, Store};
use batchkv_server::{Server, ServerConfig};
use etcd_client::GetOptions;
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(30);

struct Member {
    endpoint: String,
    store: Store,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    _dir: tempfile::TempDir,
}

async fn member(net: &LocalNetwork, id: u64, peers: &[u64]) -> Member {
    let dir = batchkv_testkit::temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut config = NodeConfig::new(id, peers);
    config.tick = Duration::from_millis(20);
    config.heartbeat_ticks = 2;
    config.request_timeout = Duration::from_secs(3);
    let store = Store::builder(&data)
        .replicated(
            config,
            RaftStorage::open_dir(Store::raft_dir(&data)).unwrap(),
            net.transport(id),
        )
        .open()
        .unwrap();
    net.register(id, store.raft_mailbox().unwrap());
    let server = Server::bind(
        store.clone(),
        ServerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let endpoint = server.local_addrs()[0].to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Member {
        endpoint,
        store,
        stop,
        serving,
        _dir: dir,
    }
}

async fn client(m: &Member) -> etcd_client::Client {
    etcd_client::Client::connect([m.endpoint.as_str()], None)
        .await
        .unwrap()
}

/// The member every member follows.
async fn wait_leader(members: &[&Member]) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let st: Vec<_> = members
            .iter()
            .map(|m| m.store.raft_status().unwrap())
            .collect();
        if let Some(l) = st.iter().find(|s| s.is_leader)
            && st
                .iter()
                .all(|s| s.leader == Some(l.id) && s.term == l.term)
        {
            return l.id;
        }
        assert!(Instant::now() < deadline, "no leader: {st:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_anywhere_linearizable_reads_everywhere_and_a_cut_off_member_refuses() {
    let net = LocalNetwork::new(11);
    let peers = [1, 2, 3];
    let mut members = Vec::new();
    for id in peers {
        members.push(member(&net, id, &peers).await);
    }
    let all: Vec<&Member> = members.iter().collect();
    let leader = wait_leader(&all).await;
    let followers: Vec<usize> = (0..3).filter(|&i| peers[i] != leader).collect();

    // A put on each member's endpoint; a linearizable get on every endpoint sees it at once.
    for (i, m) in members.iter().enumerate() {
        let key = format!("from/{}", peers[i]);
        let put = client(m).await.put(key.as_str(), "v", None).await.unwrap();
        for other in &members {
            let got = client(other).await.get(key.as_str(), None).await.unwrap();
            assert_eq!(got.kvs().len(), 1, "{key} at {}", other.endpoint);
            assert!(got.header().unwrap().revision() >= put.header().unwrap().revision());
        }
    }

    // A follower cut off from the others.
    let lonely = &members[followers[0]];
    let rest: Vec<u64> = peers
        .iter()
        .copied()
        .filter(|&id| id != peers[followers[0]])
        .collect();
    net.partition(&[&[peers[followers[0]]], &rest]);
    let mut c = client(lonely).await;
    let texts = [
        "etcdserver: request timed out",
        "etcdserver: no leader",
        "etcdserver: request timed out, possibly due to previous leader failure",
    ];
    // A write: forwarded into the void (timed out) or refused (no leader); never a success.
    let e = c.put("from/lonely", "v", None).await.unwrap_err();
    let etcd_client::Error::GRpcStatus(s) = e else {
        panic!("a gRPC status: {e:?}")
    };
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(texts.contains(&s.message()), "{s:?}");
    // A linearizable read cannot be served; a serializable one reads the member's state.
    let e = c.get("from/1", None).await.unwrap_err();
    let etcd_client::Error::GRpcStatus(s) = e else {
        panic!("a gRPC status: {e:?}")
    };
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unavailable, "etcdserver: request timed out")
    );
    let local = c
        .get("from/1", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(local.kvs().len(), 1);

    // Healed, the member serves linearizable reads again, and never saw the refused write.
    net.heal();
    let deadline = Instant::now() + PATIENCE;
    let got = loop {
        match c.get("from/", Some(GetOptions::new().with_prefix())).await {
            Ok(r) => break r,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
    };
    assert_eq!(got.kvs().len(), 3);

    for m in members {
        let _ = m.stop.send(());
        m.serving.await.unwrap().unwrap();
        batchkv_server::blocking::close(&m.store).await.unwrap();
    }
}

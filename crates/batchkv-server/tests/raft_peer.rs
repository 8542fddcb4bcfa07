//! Raft over batchkv's own tonic peer service (`batchkvpb.Peer`): three `RaftNode`s in one
//! process, each serving `PeerService` on its own loopback port and sending through a
//! `GrpcTransport` to the other two. They elect a leader and apply the same entries in the same
//! order; a follower whose peer server is down falls behind while the majority commits, and
//! catches up when its server is back on the same port. A peer that is down never blocks
//! `send`: its queue drops.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use batchkv_raft::{
    NodeConfig, NodeStatus, RaftError, RaftNode, RaftStorage, StateMachine, Transport,
};
use batchkv_server::peer::{GrpcTransport, PeerService, TransportConfig, serve_peer};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the test waits for the cluster to get somewhere before it fails (a hang guard,
/// not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

type History = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records every entry applied, in memory (the nodes are not restarted here).
struct Memory {
    history: History,
    applied: u64,
}

impl StateMachine for Memory {
    type Output = ();

    fn apply(&mut self, index: u64, entry: &[u8]) {
        lock(&self.history).push((index, entry.to_vec()));
        self.applied = index;
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for (i, e) in lock(&self.history).iter() {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&(e.len() as u64).to_be_bytes());
            out.extend_from_slice(e);
        }
        Ok(out)
    }

    fn restore(&mut self, index: u64, data: &[u8]) {
        let mut entries = Vec::new();
        let mut rest = data;
        while rest.len() >= 16 {
            let i = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let n = usize::try_from(u64::from_be_bytes(rest[8..16].try_into().expect("8 bytes")))
                .expect("length");
            entries.push((i, rest[16..16 + n].to_vec()));
            rest = &rest[16 + n..];
        }
        *lock(&self.history) = entries;
        self.applied = index;
    }
}

/// Two workers, with sockets and timers (tonic's servers and the transports' tasks).
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A running peer server: its stop signal and its task.
type Server = (
    oneshot::Sender<()>,
    JoinHandle<Result<(), tonic::transport::Error>>,
);

struct Member {
    id: u64,
    port: u16,
    node: RaftNode<()>,
    history: History,
    transport: Arc<GrpcTransport>,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

struct Cluster {
    rt: Runtime,
    members: Vec<Member>,
}

fn config(id: u64, peers: &[u64]) -> NodeConfig {
    let mut c = NodeConfig::new(id, peers);
    c.tick = Duration::from_millis(20);
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.request_timeout = Duration::from_secs(3);
    c
}

/// Serves member `id`'s peer service on `port` (retrying the bind: the port was free a moment
/// ago, or was just released by the member's previous server).
fn start_server(rt: &Runtime, id: u64, port: u16, node: &RaftNode<()>) -> Server {
    let deadline = Instant::now() + PATIENCE;
    let listener = loop {
        match rt.block_on(TcpListener::bind(("127.0.0.1", port))) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "bind 127.0.0.1:{port}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let service = PeerService::new(id, node.mailbox());
    let handle = rt.spawn(serve_peer(listener, service, async {
        let _ = stopped.await;
    }));
    (stop, handle)
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_config(config)
    }

    fn with_config(config: fn(u64, &[u64]) -> NodeConfig) -> Cluster {
        let rt = runtime();
        let ports = batchkv_testkit::free_ports::<3>();
        let ids = [1u64, 2, 3];
        let mut members = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let peers: Vec<(u64, String)> = ids
                .iter()
                .zip(ports)
                .filter(|(other, _)| **other != id)
                .map(|(other, port)| (*other, format!("http://127.0.0.1:{port}")))
                .collect();
            let transport = Arc::new(
                GrpcTransport::new(rt.handle(), id, &peers, &TransportConfig::default())
                    .expect("transport"),
            );
            let dir = batchkv_testkit::temp_dir();
            let storage = RaftStorage::open_dir(dir.path().join("raft")).expect("raft storage");
            let history = History::default();
            let sm = Memory {
                history: Arc::clone(&history),
                applied: 0,
            };
            let node = RaftNode::start(
                config(id, &ids),
                storage,
                Box::new(sm),
                Arc::clone(&transport) as Arc<dyn Transport>,
            )
            .expect("start node");
            let server = Some(start_server(&rt, id, ports[i], &node));
            members.push(Member {
                id,
                port: ports[i],
                node,
                history,
                transport,
                server,
                _dir: dir,
            });
        }
        Cluster { rt, members }
    }

    fn member(&self, id: u64) -> &Member {
        &self.members[usize::try_from(id - 1).expect("id")]
    }

    fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Waits until one member of `among` leads and every member of `among` follows it.
    fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st: Vec<NodeStatus> = among
                .iter()
                .map(|id| self.member(*id).node.status())
                .collect();
            let leaders: Vec<&NodeStatus> = st.iter().filter(|s| s.is_leader).collect();
            if let [l] = leaders.as_slice()
                && st
                    .iter()
                    .all(|s| s.leader == Some(l.id) && s.term == l.term)
            {
                return l.id;
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?}: {st:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proposes `data` through the leader of `among` until acknowledged; its index.
    fn propose(&self, among: &[u64], data: &[u8]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leader = self.wait_leader(among);
            match self.member(leader).node.propose(data.to_vec()) {
                Ok(index) => return index,
                Err(RaftError::NotLeader { .. } | RaftError::Ambiguous | RaftError::Timeout) => {}
                Err(e) => panic!("propose at {leader}: {e}"),
            }
            assert!(Instant::now() < deadline, "{data:?} never committed");
        }
    }

    /// Waits until every member of `among` applied `index`.
    fn wait_applied(&self, among: &[u64], index: u64) {
        let deadline = Instant::now() + PATIENCE;
        while !among
            .iter()
            .all(|id| self.member(*id).node.status().applied >= index)
        {
            let st: Vec<NodeStatus> = self.members.iter().map(|m| m.node.status()).collect();
            assert!(
                Instant::now() < deadline,
                "{among:?} did not apply {index}: {st:#?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn history(&self, id: u64) -> Vec<(u64, Vec<u8>)> {
        lock(&self.member(id).history).clone()
    }

    fn assert_same_history(&self, among: &[u64]) {
        let first = self.history(among[0]);
        for id in &among[1..] {
            assert_eq!(
                self.history(*id),
                first,
                "members {id} and {} applied different entries",
                among[0]
            );
        }
    }

    fn stop_server(&mut self, id: u64) {
        let m = &mut self.members[usize::try_from(id - 1).expect("id")];
        let (stop, handle) = m.server.take().expect("the server runs");
        let _ = stop.send(());
        batchkv_testkit::rt::within(&self.rt, handle)
            .expect("the server task")
            .expect("the server stops cleanly");
    }

    fn restart_server(&mut self, id: u64) {
        let i = usize::try_from(id - 1).expect("id");
        assert!(
            self.members[i].server.is_none(),
            "member {id}'s server runs"
        );
        let server = start_server(&self.rt, id, self.members[i].port, &self.members[i].node);
        self.members[i].server = Some(server);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.drain(..) {
            m.node.stop();
            if let Some((stop, _)) = m.server {
                let _ = stop.send(());
            }
        }
    }
}

#[test]
fn three_members_replicate_over_grpc_and_a_follower_catches_up_after_its_server_restarts() {
    let mut c = Cluster::new();
    let all = c.ids();
    c.wait_leader(&all);

    let mut last = 0;
    for i in 0..100 {
        last = c.propose(&all, format!("first-{i}").as_bytes());
    }
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let payloads: Vec<Vec<u8>> = c.history(1).into_iter().map(|(_, e)| e).collect();
    for i in 0..100 {
        assert!(
            payloads.contains(&format!("first-{i}").into_bytes()),
            "first-{i} not applied"
        );
    }
    let indexes: Vec<u64> = c.history(1).iter().map(|(i, _)| *i).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "applied out of index order: {indexes:?}"
    );

    // A follower's peer server goes down: nothing reaches it, the other two still commit.
    let leader = c.wait_leader(&all);
    let down = *all.iter().find(|id| **id != leader).expect("a follower");
    let up: Vec<u64> = all.iter().copied().filter(|id| *id != down).collect();
    c.stop_server(down);
    let behind = c.member(down).node.status().applied;
    for i in 0..30 {
        last = c.propose(&up, format!("second-{i}").as_bytes());
    }
    c.wait_applied(&up, last);
    c.assert_same_history(&up);
    assert!(
        c.member(down).node.status().applied < last,
        "member {down} applied {last} with its peer server down (it was at {behind})"
    );

    // Back on the same port: the leader's stream reconnects and the follower catches up.
    c.restart_server(down);
    let last = c.propose(&up, b"after-restart");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let leader = c.wait_leader(&up);
    assert!(
        c.member(leader).transport.reconnects_to(down) > 0,
        "the leader's stream to member {down} never broke"
    );
    assert_eq!(
        c.history(down)
            .iter()
            .filter(|(_, e)| e.starts_with(b"second-"))
            .count(),
        c.history(leader)
            .iter()
            .filter(|(_, e)| e.starts_with(b"second-"))
            .count()
    );
}

#[test]
fn send_to_a_peer_that_is_down_never_blocks_and_counts_drops() {
    let rt = runtime();
    // Nothing listens on this port: every stream to it fails, and is retried with backoff.
    let port = batchkv_testkit::free_port();
    let config = TransportConfig {
        queue: 16,
        ..TransportConfig::default()
    };
    let transport = Arc::new(
        GrpcTransport::new(
            rt.handle(),
            1,
            &[(2, format!("http://127.0.0.1:{port}"))],
            &config,
        )
        .expect("transport"),
    );
    const SENDS: u64 = 20_000;
    // From a plain thread, as the Ready loop calls it; a send that blocked would never finish.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let t = Arc::clone(&transport);
    std::thread::spawn(move || {
        for i in 0..SENDS {
            t.send(2, i.to_be_bytes().to_vec());
        }
        t.send(9, b"no such member".to_vec());
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(PATIENCE)
        .expect("send blocked on a peer that is down");
    // Only the queue, and what the sender task took from it for its failed attempts (a stream's
    // buffer each, one every backoff), got past `send`; the rest was dropped at once.
    let dropped = transport.dropped_to(2);
    assert!(dropped >= SENDS / 2, "only {dropped} of {SENDS} dropped");
    assert!(dropped <= SENDS, "{dropped}");
    assert_eq!(
        transport.dropped(),
        dropped + 1,
        "the unknown member's message"
    );
}

#[test]
fn a_frame_for_another_member_is_refused_and_garbage_does_not_stop_the_node() {
    use batchkv_server::pb::batchkvpb::RaftFrame;
    use batchkv_server::pb::batchkvpb::peer_client::PeerClient;

    let c = Cluster::new();
    let all = c.ids();
    let leader = c.wait_leader(&all);
    let target = c.member(leader);
    let url = format!("http://127.0.0.1:{}", target.port);
    let frames = vec![
        // Not a raft message: the node drops it (and logs it).
        RaftFrame {
            from: 7,
            to: target.id,
            message: b"not a raft message".to_vec(),
            more: false,
        },
        // Misrouted: the stream is refused.
        RaftFrame {
            from: 7,
            to: 99,
            message: Vec::new(),
            more: false,
        },
    ];
    let status = batchkv_testkit::rt::within(&c.rt, async move {
        let mut client = PeerClient::connect(url).await.expect("connect");
        client
            .send(tokio_stream::iter(frames))
            .await
            .expect_err("a frame for member 99 is refused")
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "raft frame from member 7 is for member 63, this is member {:x}",
            target.id
        )
    );

    // The node still leads (or a new leader is elected) and the cluster still commits.
    let last = c.propose(&all, b"after garbage");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
}

#[test]
fn a_message_larger_than_a_chunk_goes_in_chunks_and_arrives_whole() {
    let c = Cluster::new();
    let all = c.ids();
    c.wait_leader(&all);
    // One entry of 3.5 chunks: its append message is sent as 4 frames to each follower (the
    // peer service refuses a frame above 2 chunks: it arrives only if it was cut).
    let big: Vec<u8> = (0..batchkv_server::peer::CHUNK_BYTES * 7 / 2)
        .map(|i| (i % 251) as u8)
        .collect();
    let last = c.propose(&all, &big);
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    for id in &all {
        let h = c.history(*id);
        assert!(
            h.iter().any(|(_, e)| *e == big),
            "member {id} lacks the big entry"
        );
    }
}

#[test]
fn a_snapshot_of_tens_of_megabytes_catches_up_a_member_over_grpc() {
    let mut c = Cluster::with_config(|id, peers| {
        let mut cfg = config(id, peers);
        cfg.snapshot_entries = 8;
        cfg.catch_up_entries = 2;
        cfg
    });
    let all = c.ids();
    c.wait_leader(&all);
    let leader = c.wait_leader(&all);
    let down = *all.iter().find(|id| **id != leader).expect("a follower");
    let up: Vec<u64> = all.iter().copied().filter(|id| *id != down).collect();
    c.stop_server(down);
    // 24 entries of 1.5 chunks each: the state, hence the snapshot, is about 36 chunks
    // (36 MiB), sent in 1 MiB frames and built off the leader's node thread.
    let mut last = 0;
    for i in 0..24u8 {
        let big: Vec<u8> = (0..batchkv_server::peer::CHUNK_BYTES * 3 / 2)
            .map(|j| (j % 251) as u8 ^ i)
            .collect();
        last = c.propose(&up, &big);
    }
    c.wait_applied(&up, last);
    let leader = c.wait_leader(&up);
    assert!(
        c.member(leader).node.status().first_index > c.member(down).node.status().applied + 1,
        "the leader's log was compacted past the member that is down"
    );
    c.restart_server(down);
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let bytes: usize = c.history(down).iter().map(|(_, e)| e.len()).sum();
    assert!(
        bytes > 24 * batchkv_server::peer::CHUNK_BYTES,
        "the member holds {bytes} bytes"
    );
}

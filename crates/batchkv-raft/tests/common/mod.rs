//! The tests' cluster: N nodes over real RocksDB on temp dirs, a [`LocalNetwork`] the test
//! controls, and a state machine that records what it applied (and persists it).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use batchkv_engine::{Cf, Engine, EngineConfig, KeyRange, WriteMode};
use batchkv_raft::{
    LocalNetwork, NodeConfig, NodeStatus, RaftError, RaftNode, RaftStorage, SnapshotBuilder,
    StateMachine,
};

/// How long a test waits for the cluster to get somewhere before it fails (a hang guard, not a
/// timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A node's applied entries: (index, data) in index order.
pub type History = Vec<(u64, Vec<u8>)>;

/// Makes node `id`'s settings, given the cluster's ids.
pub type ConfigFn = Box<dyn Fn(u64, &[u64]) -> NodeConfig + Send + Sync>;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a node's state machine saw, shared with the test.
#[derive(Debug, Default)]
pub struct Applied {
    /// The state: every entry applied (or restored from a snapshot), in index order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// `apply` calls in this incarnation.
    pub apply_calls: u64,
    /// Snapshots restored in this incarnation.
    pub restores: u64,
    /// Broken promises: an entry applied at or below the applied index.
    pub violations: Vec<String>,
    /// Snapshot builders started for followers in this incarnation.
    pub builds_started: u64,
    /// While true, snapshot builders wait (on their worker thread) until it is false again
    /// ([`Applied::hold_builds`], [`Applied::release_builds`]).
    pub hold: Arc<(Mutex<bool>, Condvar)>,
}

impl Applied {
    /// Snapshot builders started from now on wait until [`Applied::release_builds`].
    pub fn hold_builds(&self) {
        *lock(&self.hold.0) = true;
    }

    /// Lets held snapshot builders finish.
    pub fn release_builds(&self) {
        *lock(&self.hold.0) = false;
        self.hold.1.notify_all();
    }
}

/// Appends each entry to a list, persisted with its applied index in RocksDB (one WriteBatch
/// per entry, WAL without fsync: raft's log is the durable record).
pub struct ListMachine {
    engine: Engine,
    applied: u64,
    shared: Arc<Mutex<Applied>>,
}

const APPLIED: &[u8] = b"applied";

fn entry_key(index: u64) -> Vec<u8> {
    let mut k = b"e".to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl ListMachine {
    pub fn open(dir: &std::path::Path, shared: Arc<Mutex<Applied>>) -> ListMachine {
        let engine = Engine::open(EngineConfig::new(dir)).expect("open the state machine's db");
        let applied = engine
            .get(Cf::DEFAULT, APPLIED)
            .expect("read applied")
            .map(|b| u64::from_be_bytes(b[..8].try_into().expect("8 bytes")))
            .unwrap_or(0);
        let entries = engine
            .range(Cf::DEFAULT, &KeyRange::prefix(b"e".to_vec()), 0)
            .expect("read entries")
            .into_iter()
            .map(|(k, v)| (u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")), v))
            .collect();
        let mut s = lock(&shared);
        s.entries = entries;
        s.apply_calls = 0;
        s.restores = 0;
        drop(s);
        ListMachine {
            engine,
            applied,
            shared,
        }
    }
}

impl StateMachine for ListMachine {
    type Output = usize;

    /// The length of the history after this entry.
    fn apply(&mut self, index: u64, entry: &[u8]) -> usize {
        let mut s = lock(&self.shared);
        s.apply_calls += 1;
        if index <= self.applied {
            s.violations.push(format!(
                "applied {index} again (applied index {})",
                self.applied
            ));
        }
        let mut b = self.engine.begin_batch();
        b.put(Cf::DEFAULT, &entry_key(index), entry).expect("stage");
        b.put(Cf::DEFAULT, APPLIED, &index.to_be_bytes())
            .expect("stage");
        b.commit(WriteMode::WAL).expect("apply");
        self.applied = index;
        s.entries.push((index, entry.to_vec()));
        s.entries.len()
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        self.engine.flush_wal(true).expect("sync the wal");
        let s = lock(&self.shared);
        let mut out = Vec::new();
        for (i, e) in &s.entries {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&(e.len() as u64).to_be_bytes());
            out.extend_from_slice(e);
        }
        Ok(out)
    }

    /// The history is copied here, on the node thread; the builder, on its worker thread, waits
    /// while the test holds builders.
    fn snapshot_builder(&mut self) -> Result<SnapshotBuilder, String> {
        let index = self.applied;
        let data = self.snapshot()?;
        let hold = {
            let mut s = lock(&self.shared);
            s.builds_started += 1;
            Arc::clone(&s.hold)
        };
        Ok(Box::new(move || {
            let (held, cv) = &*hold;
            let mut held = lock(held);
            while *held {
                held = cv.wait(held).unwrap_or_else(|e| e.into_inner());
            }
            Ok((index, data))
        }))
    }

    fn restore(&mut self, index: u64, data: &[u8]) {
        let mut entries = Vec::new();
        let mut rest = data;
        while rest.len() >= 16 {
            let i = u64::from_be_bytes(rest[..8].try_into().expect("8"));
            let n = u64::from_be_bytes(rest[8..16].try_into().expect("8")) as usize;
            entries.push((i, rest[16..16 + n].to_vec()));
            rest = &rest[16 + n..];
        }
        let mut b = self.engine.begin_batch();
        b.delete_range(Cf::DEFAULT, b"e", b"f").expect("stage");
        for (i, e) in &entries {
            b.put(Cf::DEFAULT, &entry_key(*i), e).expect("stage");
        }
        b.put(Cf::DEFAULT, APPLIED, &index.to_be_bytes())
            .expect("stage");
        b.commit(WriteMode::SYNC).expect("restore");
        self.applied = index;
        let mut s = lock(&self.shared);
        s.restores += 1;
        s.entries = entries;
    }
}

/// Settings for the tests: fast ticks, small snapshots when asked.
pub fn test_config(id: u64, peers: &[u64]) -> NodeConfig {
    let mut c = NodeConfig::new(id, peers);
    c.tick = Duration::from_millis(20);
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.request_timeout = Duration::from_secs(3);
    c
}

pub struct Cluster {
    pub net: LocalNetwork,
    pub ids: Vec<u64>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, RaftNode<usize>>,
    pub applied: BTreeMap<u64, Arc<Mutex<Applied>>>,
    raft_engines: BTreeMap<u64, Weak<Engine>>,
    config: ConfigFn,
}

impl Cluster {
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, test_config)
    }

    pub fn with_config(
        n: u64,
        seed: u64,
        config: impl Fn(u64, &[u64]) -> NodeConfig + Send + Sync + 'static,
    ) -> Cluster {
        let ids: Vec<u64> = (1..=n).collect();
        let mut c = Cluster {
            net: LocalNetwork::new(seed),
            ids: ids.clone(),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            applied: BTreeMap::new(),
            raft_engines: BTreeMap::new(),
            config: Box::new(config),
        };
        for id in ids {
            c.dirs.insert(id, batchkv_testkit::temp_dir());
            c.applied.insert(id, Arc::default());
            c.start(id);
        }
        c
    }

    /// Starts node `id` from its directories (again, after [`Cluster::stop`]).
    pub fn start(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        let dir = self.dirs[&id].path();
        let storage = RaftStorage::open_dir(dir.join("raft")).expect("open raft storage");
        self.raft_engines
            .insert(id, Arc::downgrade(storage.engine()));
        let sm = ListMachine::open(&dir.join("sm"), Arc::clone(&self.applied[&id]));
        let node = RaftNode::start(
            (self.config)(id, &self.ids),
            storage,
            Box::new(sm),
            self.net.transport(id),
        )
        .expect("start node");
        self.net.register(id, node.mailbox());
        self.nodes.insert(id, node);
    }

    /// Stops node `id` (its thread and databases close; its disk stays).
    pub fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        if let Some(n) = self.nodes.remove(&id) {
            n.stop();
        }
    }

    /// Node `id`'s raft storage, opened from its directory (the node must be stopped).
    pub fn open_raft_storage(&self, id: u64) -> RaftStorage {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        RaftStorage::open_dir(self.dirs[&id].path().join("raft")).expect("open raft storage")
    }

    /// The engine under node `id`'s raft storage, while the node runs.
    pub fn raft_engine(&self, id: u64) -> Option<Arc<Engine>> {
        self.raft_engines.get(&id).and_then(Weak::upgrade)
    }

    pub fn node(&self, id: u64) -> &RaftNode<usize> {
        &self.nodes[&id]
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes.values().map(RaftNode::status).collect()
    }

    /// Waits until one node of `among` leads and every node of `among` follows it.
    pub fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st: Vec<NodeStatus> = among.iter().map(|id| self.node(*id).status()).collect();
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

    /// Proposes `data` through the leader of `among`, retrying what was not (or may not have
    /// been) committed, until acknowledged; returns its index.
    pub fn propose(&self, among: &[u64], data: &[u8]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leader = self.wait_leader(among);
            match self.node(leader).propose(data.to_vec()) {
                Ok(index) => return index,
                Err(RaftError::NotLeader { .. } | RaftError::Ambiguous | RaftError::Timeout) => {}
                Err(e) => panic!("propose at {leader}: {e}"),
            }
            assert!(Instant::now() < deadline, "{data:?} never committed");
        }
    }

    /// Waits until every node of `among` applied `index`.
    pub fn wait_applied(&self, among: &[u64], index: u64) {
        let deadline = Instant::now() + PATIENCE;
        while !among
            .iter()
            .all(|id| self.node(*id).status().applied >= index)
        {
            assert!(
                Instant::now() < deadline,
                "{among:?} did not apply {index}: {:#?}",
                self.statuses()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `id`'s state machine's entries (index, data).
    pub fn history(&self, id: u64) -> History {
        lock(&self.applied[&id]).entries.clone()
    }

    /// Asserts no state machine was handed an entry at or below its applied index.
    pub fn assert_no_reapply(&self) {
        for (id, a) in &self.applied {
            let a = lock(a);
            assert!(a.violations.is_empty(), "node {id}: {:?}", a.violations);
        }
    }

    /// Asserts the histories of `among` are equal.
    pub fn assert_same_history(&self, among: &[u64]) {
        let first = self.history(among[0]);
        for id in &among[1..] {
            assert_eq!(
                self.history(*id),
                first,
                "node {id} and node {} applied different entries",
                among[0]
            );
        }
    }
}

/// Asserts every pair of histories is one a prefix of the other.
pub fn assert_prefixes(histories: &[(u64, History)]) {
    for (a, ha) in histories {
        for (b, hb) in histories {
            let n = ha.len().min(hb.len());
            assert_eq!(ha[..n], hb[..n], "nodes {a} and {b} diverge");
        }
    }
}

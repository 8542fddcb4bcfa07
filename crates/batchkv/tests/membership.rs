//! Replicated `Store`s over `LocalNetwork` (a network the test controls), each member a real
//! RocksDB store on a temp dir: 5-member clusters under a leader crash, a minority partition
//! and a partition that leaves no quorum anywhere; membership changes through raft's
//! configuration changes while a writer keeps writing: a member added (it catches up from the
//! leader's log), members removed (the leader included), a learner added and promoted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv::{ConfChangeKind, LocalNetwork, RaftError, RaftStorage, Range, Store, StoreError};

mod common;
use common::{PATIENCE, config, retryable};

/// A member's record, as a server would keep it (opaque to raft).
fn record(id: u64) -> Vec<u8> {
    format!("member-{id}").into_bytes()
}

struct Cluster {
    net: LocalNetwork,
    initial: Vec<u64>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    stores: BTreeMap<u64, Store>,
    /// Raft snapshots every so many entries, keeping so many (`None`: the defaults).
    snapshots: Option<(u64, u64)>,
}

impl Cluster {
    fn new(seed: u64, size: u64) -> Cluster {
        Cluster::build(seed, size, None)
    }

    fn build(seed: u64, size: u64, snapshots: Option<(u64, u64)>) -> Cluster {
        let initial: Vec<u64> = (1..=size).collect();
        let mut c = Cluster {
            net: LocalNetwork::new(seed),
            initial: initial.clone(),
            dirs: BTreeMap::new(),
            stores: BTreeMap::new(),
            snapshots,
        };
        for id in initial {
            c.start(id);
        }
        c
    }

    fn data(&self, id: u64) -> PathBuf {
        self.dirs[&id].path().join("data")
    }

    /// Opens member `id` from its disk (bootstrapped with the initial voters and records if
    /// new: an initial member, or one joining later, which replays the log from its start).
    fn start(&mut self, id: u64) {
        self.dirs
            .entry(id)
            .or_insert_with(batchkv_testkit::temp_dir);
        let data = self.data(id);
        std::fs::create_dir_all(&data).expect("create the data dir");
        let storage = RaftStorage::open_dir(Store::raft_dir(&data)).expect("open raft storage");
        let mut cfg = config(id, &self.initial);
        cfg.initial_records = self.initial.iter().map(|i| (*i, record(*i))).collect();
        if let Some((every, keep)) = self.snapshots {
            cfg.snapshot_entries = every;
            cfg.catch_up_entries = keep;
        }
        let store = Store::builder(&data)
            .replicated(cfg, storage, self.net.transport(id))
            .open()
            .expect("open a replicated store");
        self.net
            .register(id, store.raft_mailbox().expect("a replicated store"));
        self.stores.insert(id, store);
    }

    /// Closes member `id` (its disk stays).
    fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        let store = self.stores.remove(&id).expect("running");
        // A removed member's node has stopped: closing may report it.
        let _ = store.close();
    }

    fn ids(&self) -> Vec<u64> {
        self.stores.keys().copied().collect()
    }

    fn store(&self, id: u64) -> &Store {
        &self.stores[&id]
    }

    /// Waits until one member of `among` leads and all of `among` follow it in its term.
    fn wait_leader(&self, among: &[u64]) -> u64 {
        common::wait_leader(&self.stores, among)
    }

    /// Waits until every member of `among` applied everything committed before the call.
    fn wait_caught_up(&self, among: &[u64]) {
        common::wait_caught_up(&self.stores, among)
    }

    /// A put at member `id`, retried while it failed for want of a leader (retrying a put of
    /// the same value is harmless: the key ends with it either way).
    fn put(&self, id: u64, key: &str, value: &str) -> i64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.store(id).put(key.to_owned(), value.to_owned()) {
                Ok(r) => return r.revision,
                Err(e) if retryable(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("put {key} at member {id}: {e}"),
            }
        }
    }

    /// A membership change proposed at member `at`, retried while no leader is known or a
    /// change is in progress.
    fn change(&self, at: u64, kind: ConfChangeKind, node: u64) -> batchkv::Membership {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.store(at).propose_conf_change(kind, node, record(node)) {
                Ok(m) => return m,
                Err(
                    e @ (RaftError::NotLeader { .. }
                    | RaftError::ConfChangeInProgress
                    | RaftError::Timeout),
                ) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{kind:?} {node} at member {at}: {e}"),
            }
        }
    }

    /// Every member of `among` holds the same history: HashKV, revision, every key.
    fn assert_same_state(&self, among: &[u64]) {
        let all = Range::prefix("");
        let first = self.store(among[0]);
        let hash = first.hash_kv(0).expect("hash");
        let kvs = first.range(&all).expect("range").kvs;
        for id in &among[1..] {
            let s = self.store(*id);
            assert_eq!(s.hash_kv(0).expect("hash"), hash, "member {id}'s HashKV");
            assert_eq!(s.range(&all).expect("range").kvs, kvs, "member {id}'s keys");
        }
    }
}

/// A writer thread putting `load/NNNNN` at the members it is given (round robin), keeping
/// the keys it was acknowledged, until stopped. A member removed (its node stopped) or closed
/// refuses; the writer moves on to the next.
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(stores: Vec<Store>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let key = format!("load/{i:05}");
                let store = &stores[(i as usize) % stores.len()];
                match store.put(key.clone(), "x") {
                    Ok(_) => acked.push(key),
                    // A member the test stopped (closed) or whose node stopped took nothing.
                    Err(e)
                        if retryable(&e)
                            || matches!(e, StoreError::Stopped | StoreError::Closed) =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("load put {key}: {e}"),
                }
                i += 1;
            }
            acked
        });
        Load { stop, thread }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

/// Every acknowledged key is on member `id`.
fn assert_has(c: &Cluster, id: u64, keys: &[String]) {
    for k in keys {
        assert!(
            c.store(id).get(k.clone()).expect("get").is_some(),
            "member {id} lost acknowledged {k}"
        );
    }
}

#[test]
fn five_members_outlive_a_leader_crash_and_a_minority_partition() {
    let mut c = Cluster::new(11, 5);
    let all = c.ids();
    let leader = c.wait_leader(&all);
    for i in 0..20 {
        c.put(all[i % 5], &format!("before/{i:02}"), "a");
    }
    // The leader crashes: the other four elect a leader and take writes.
    c.stop(leader);
    let rest: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    let new = c.wait_leader(&rest);
    assert_ne!(new, leader);
    for i in 0..20 {
        c.put(rest[i % 4], &format!("during/{i:02}"), "b");
    }
    // Restarted from its disk, it catches up.
    c.start(leader);
    c.wait_caught_up(&all);
    c.assert_same_state(&all);

    // A minority of two is cut off from the other three.
    let minority = vec![all[0], all[1]];
    let majority = vec![all[2], all[3], all[4]];
    c.net.partition(&[&minority, &majority]);
    let maj_leader = c.wait_leader(&majority);
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("partitioned/{i:02}");
        c.put(majority[i % 3], &key, "c");
        acked.push(key);
    }
    assert_eq!(
        c.store(maj_leader)
            .get("partitioned/19")
            .expect("get")
            .map(|kv| kv.value),
        Some("c".into())
    );
    // The minority can neither write nor read linearizably (it may still believe in a
    // leader of the majority for an election timeout: no answer comes either way).
    for &id in &minority {
        match c.store(id).put(format!("minority/{id}"), "never") {
            Err(e) => assert!(retryable(&e), "member {id}: {e}"),
            Ok(r) => panic!(
                "member {id} of the minority wrote at revision {}",
                r.revision
            ),
        }
        match c
            .store(id)
            .range_linearizable(&Range::key("partitioned/00"))
        {
            Err(e) => assert!(retryable(&e), "member {id}: {e}"),
            Ok(r) => panic!("member {id} of the minority read linearizably: {r:?}"),
        }
        // A serializable read is local: the state before the partition.
        assert!(c.store(id).get("before/00").expect("get").is_some());
    }
    // Healed: the minority catches up, every member holds the same history.
    c.net.heal();
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
    for &id in &all {
        assert_has(&c, id, &acked);
    }
}

#[test]
fn no_write_is_acknowledged_where_there_is_no_quorum() {
    let c = Cluster::new(12, 5);
    let all = c.ids();
    c.wait_leader(&all);
    c.put(all[0], "k", "before");
    c.wait_caught_up(&all);
    // No group holds three of five.
    c.net.partition(&[&all[0..2], &all[2..4], &all[4..5]]);
    for round in 0..2 {
        for &id in &all {
            match c.store(id).put(format!("split/{id}/{round}"), "x") {
                Err(e) => assert!(retryable(&e), "member {id}: {e}"),
                Ok(r) => panic!(
                    "member {id} wrote at revision {} without a quorum",
                    r.revision
                ),
            }
        }
    }
    // Healed: the cluster writes again and agrees (writes that timed out may or may not have
    // been applied, the same way on every member).
    c.net.heal();
    let after = c.put(all[4], "k", "after");
    assert!(after > 2);
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
    assert_eq!(
        c.store(all[0]).get("k").expect("get").map(|kv| kv.value),
        Some("after".into())
    );
}

#[test]
fn members_are_added_and_removed_under_a_write_load() {
    let mut c = Cluster::new(13, 3);
    let initial = c.ids();
    let leader = c.wait_leader(&initial);
    for i in 0..50 {
        c.put(initial[i % 3], &format!("pre/{i:02}"), "v");
    }
    let load = Load::start(initial.iter().map(|id| c.store(*id).clone()).collect());

    // Member 4 is added (at a follower: forwarded to the leader), then started empty; it
    // replays the leader's log from the start.
    let follower = *initial
        .iter()
        .find(|&&id| id != leader)
        .expect("a follower");
    let m = c.change(follower, ConfChangeKind::AddVoter, 4);
    assert_eq!(m.voters.len(), 4);
    assert!(m.voters.contains(&4));
    assert_eq!(m.records.get(&4), Some(&record(4)));
    assert_eq!(m.initial_voters, initial);
    c.start(4);
    let four = vec![1, 2, 3, 4];
    c.wait_caught_up(&four);
    assert_eq!(
        c.store(4).membership().expect("replicated").voters.len(),
        4,
        "member 4 went through the same configurations"
    );

    // A follower is removed, then the leader itself.
    let leader = c.wait_leader(&four);
    let victim = *four
        .iter()
        .find(|&&id| id != leader && id != 4)
        .expect("a follower");
    let m = c.change(leader, ConfChangeKind::Remove, victim);
    assert!(!m.voters.contains(&victim));
    assert!(!m.records.contains_key(&victim));
    // raft sends nothing more to a removed member; the leader sends it the log up to its
    // removal, so it learns it and stops its node.
    let deadline = Instant::now() + PATIENCE;
    while !c.store(victim).raft_status().is_none_or(|s| s.removed) {
        assert!(
            Instant::now() < deadline,
            "the removed follower did not learn it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.stop(victim);
    let three: Vec<u64> = four.iter().copied().filter(|&id| id != victim).collect();
    c.wait_caught_up(&three);

    let leader = c.wait_leader(&three);
    let m = c.change(leader, ConfChangeKind::Remove, leader);
    assert_eq!(m.voters.len(), 2);
    // The removed leader stops its node after a few ticks; the other two elect a leader.
    let deadline = Instant::now() + PATIENCE;
    while !c.store(leader).raft_status().is_none_or(|s| s.removed) {
        assert!(Instant::now() < deadline, "the removed leader did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.stop(leader);
    let two: Vec<u64> = three.iter().copied().filter(|&id| id != leader).collect();
    let new = c.wait_leader(&two);
    assert_ne!(new, leader);
    c.put(two[0], "after-removals", "v");
    let acked = load.finish();
    assert!(!acked.is_empty());
    c.wait_caught_up(&two);
    c.assert_same_state(&two);
    for &id in &two {
        assert_has(&c, id, &acked);
        let m = c.store(id).membership().expect("replicated");
        assert_eq!(m.voters.len(), 2, "member {id}: {m:?}");
        assert!(m.records.contains_key(&4));
    }

    // Membership survives a restart.
    c.stop(4);
    c.start(4);
    let m = c.store(4).membership().expect("replicated");
    let mut voters = m.voters.clone();
    voters.sort_unstable();
    let mut want = two.clone();
    want.sort_unstable();
    assert_eq!(voters, want);
    c.wait_caught_up(&two);
    c.assert_same_state(&two);
}

/// Waits until `f` holds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of `key` read linearizably at `store`, blocking and awaited.
fn read_both_ways(store: &Store, key: &str) -> Option<String> {
    let r = store
        .range_linearizable(&Range::key(key.to_owned()))
        .expect("a linearizable read");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let index = rt
        .block_on(store.read_barrier_async())
        .expect("an awaited read barrier");
    assert!(
        store.raft_status().expect("replicated").applied >= index,
        "the barrier passed before its index was applied"
    );
    let after = store.get(key).expect("a read after the barrier");
    let value = |kv: Option<&batchkv::KeyValue>| {
        kv.map(|kv| String::from_utf8(kv.value.to_vec()).expect("UTF-8"))
    };
    let (blocking, awaited) = (value(r.kvs.first()), value(after.as_ref()));
    // Nothing writes between the two reads.
    assert_eq!(blocking, awaited, "the two read paths disagree on {key}");
    blocking
}

#[test]
fn a_one_member_cluster_reads_without_a_round_until_it_gains_a_voter() {
    let mut c = Cluster::new(15, 1);
    c.wait_leader(&[1]);
    // The sole voter reads without a ReadIndex round once it has committed in its term, and
    // a read right after a write sees it.
    for i in 0..50 {
        c.put(1, "k", &i.to_string());
        wait_for("the sole voter never read locally", || {
            c.store(1).local_read_index().is_some()
        });
        assert_eq!(read_both_ways(c.store(1), "k"), Some(i.to_string()));
    }
    // A learner does not vote: still the sole voter. Writes the learner forwards are answered
    // when the learner applies them, which may be before the leader does: a read at the
    // leader afterwards still sees each (its read point is its commit index, published before
    // any message carries it).
    c.change(1, ConfChangeKind::AddLearner, 2);
    c.start(2);
    wait_for("a learner turned the leader's local reads off", || {
        c.store(1).local_read_index().is_some()
    });
    for i in 0..30 {
        let value = format!("learner-{i}");
        c.put(2, "k", &value);
        assert_eq!(read_both_ways(c.store(1), "k"), Some(value));
    }
    // Promoted, the learner is a voter: from the change on, the leader confirms each read with
    // a quorum again.
    wait_for("the learner did not catch up", || {
        c.store(2).raft_status().expect("replicated").applied
            >= c.store(1).raft_status().expect("replicated").commit
    });
    let m = c.change(1, ConfChangeKind::AddVoter, 2);
    assert_eq!(m.voters, vec![1, 2]);
    assert_eq!(
        c.store(1).local_read_index(),
        None,
        "two voters, no local read"
    );
    let leader = c.wait_leader(&[1, 2]);
    c.put(2, "k", "two voters");
    assert_eq!(
        read_both_ways(c.store(leader), "k"),
        Some("two voters".into())
    );
    assert_eq!(c.store(leader).local_read_index(), None);
    // Cut off from the other voter, the old sole voter answers no linearizable read.
    c.net.partition(&[&[1], &[2]]);
    match c.store(1).read_barrier() {
        Err(StoreError::Timeout) => {}
        other => panic!("a partitioned member passed a read barrier: {other:?}"),
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    match rt.block_on(c.store(1).read_barrier_async()) {
        Err(StoreError::Timeout) => {}
        other => panic!("a partitioned member passed an awaited read barrier: {other:?}"),
    }
    assert_eq!(c.store(1).local_read_index(), None);
    c.net.heal();
    c.wait_leader(&[1, 2]);
    assert_eq!(read_both_ways(c.store(1), "k"), Some("two voters".into()));
}

#[test]
fn a_learner_catches_up_then_is_promoted() {
    let mut c = Cluster::new(14, 3);
    let initial = c.ids();
    let leader = c.wait_leader(&initial);
    for i in 0..30 {
        c.put(initial[i % 3], &format!("k/{i:02}"), "v");
    }
    let m = c.change(leader, ConfChangeKind::AddLearner, 4);
    assert_eq!(m.learners, vec![4]);
    assert_eq!(m.voters.len(), 3);
    // A learner that has not started is far behind: promoting it is refused.
    match c
        .store(leader)
        .propose_conf_change(ConfChangeKind::AddVoter, 4, Vec::new())
    {
        Err(RaftError::LearnerNotReady) => {}
        other => panic!("promoting a learner with nothing: {other:?}"),
    }
    c.start(4);
    let deadline = Instant::now() + PATIENCE;
    while c.store(4).raft_status().expect("replicated").applied
        < c.store(leader).raft_status().expect("replicated").commit
    {
        assert!(Instant::now() < deadline, "the learner did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A learner never leads nor counts for a quorum; it still serves serializable reads.
    assert!(c.store(4).get("k/29").expect("get").is_some());
    let leader = c.wait_leader(&initial);
    let m = c.change(leader, ConfChangeKind::AddVoter, 4);
    assert!(m.learners.is_empty());
    assert_eq!(m.voters.len(), 4);
    // The promoted member keeps its record (an empty context keeps it).
    assert_eq!(m.records.get(&4), Some(&record(4)));
    let all = vec![1, 2, 3, 4];
    c.put(4, "promoted", "yes");
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
}

#[test]
fn a_member_added_after_compactions_gets_a_snapshot_with_the_membership() {
    let mut c = Cluster::build(17, 3, Some((20, 5)));
    let initial = c.ids();
    let leader = c.wait_leader(&initial);
    let m = c.change(leader, ConfChangeKind::AddVoter, 4);
    assert_eq!(m.records.get(&4), Some(&record(4)));
    // Past several snapshots: the log no longer holds the change adding member 4.
    for i in 0..100 {
        c.put(initial[i % 3], &format!("k/{i:03}"), "v");
    }
    c.wait_caught_up(&initial);
    let first = c
        .store(leader)
        .raft_status()
        .expect("replicated")
        .first_index;
    assert!(first > m.index, "the log still starts at {first}");
    // Member 4 starts empty (bootstrapped with the initial members only) and is caught up by
    // a snapshot, which carries the membership with its own record.
    c.start(4);
    let four = vec![1, 2, 3, 4];
    c.wait_caught_up(&four);
    c.assert_same_state(&four);
    let want = c.store(leader).membership().expect("replicated");
    for id in [4, leader] {
        let got = c.store(id).membership().expect("replicated");
        assert_eq!(got.voters.len(), 4, "member {id}: {got:?}");
        assert_eq!(got.records, want.records, "member {id}");
    }
    // And keeps it across a restart.
    c.stop(4);
    c.start(4);
    assert_eq!(
        c.store(4).membership().expect("replicated").records,
        want.records
    );
    c.put(4, "after", "restart");
    c.wait_caught_up(&four);
    c.assert_same_state(&four);
}

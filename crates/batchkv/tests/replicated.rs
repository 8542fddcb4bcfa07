//! Replicated `Store`s: 3-member clusters over `LocalNetwork`, each member a real RocksDB store
//! (and raft's own RocksDB) on temp dirs. Every member applies every committed entry in the
//! same order through the same decode → MVCC path: equal HashKV, ranges and watch events;
//! revisions contiguous across a leader change; a restarted member catches up from disk; a
//! write on a cut-off old leader never succeeds; writes on followers are forwarded; leases
//! expire only through the leader, which restarts their deadlines when it takes over.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use batchkv::{
    AutoCompaction, Bytes, Compare, CompareOp, CompareTarget, EventKind, LocalNetwork, Op, Put,
    RaftStorage, Range, Store, StoreError, Txn, WatchRequest, Watcher,
};

mod common;
use common::{PATIENCE, config, retryable};

struct Cluster {
    net: LocalNetwork,
    ids: Vec<u64>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    stores: BTreeMap<u64, Store>,
    auto_compaction: Option<AutoCompaction>,
    /// Raft snapshots: every so many applied entries, keeping so many below (`None`: the
    /// defaults, 10,000 and 5,000, which these tests never reach).
    snapshots: Option<(u64, u64)>,
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        Cluster::with(seed, None)
    }

    fn with(seed: u64, auto_compaction: Option<AutoCompaction>) -> Cluster {
        Cluster::build(seed, auto_compaction, None)
    }

    /// A cluster whose members snapshot every `every` applied entries and keep `keep` below.
    fn with_snapshots(seed: u64, every: u64, keep: u64) -> Cluster {
        Cluster::build(seed, None, Some((every, keep)))
    }

    fn build(
        seed: u64,
        auto_compaction: Option<AutoCompaction>,
        snapshots: Option<(u64, u64)>,
    ) -> Cluster {
        let ids = vec![1, 2, 3];
        let mut c = Cluster {
            net: LocalNetwork::new(seed),
            ids: ids.clone(),
            dirs: BTreeMap::new(),
            stores: BTreeMap::new(),
            auto_compaction,
            snapshots,
        };
        for id in ids {
            c.dirs.insert(id, batchkv_testkit::temp_dir());
            c.start(id);
        }
        c
    }

    fn data(&self, id: u64) -> PathBuf {
        self.dirs[&id].path().join("data")
    }

    /// Opens member `id` from its disk (again, after `stop`).
    fn start(&mut self, id: u64) {
        let data = self.data(id);
        std::fs::create_dir_all(&data).expect("create the data dir");
        let storage = RaftStorage::open_dir(Store::raft_dir(&data)).expect("open raft storage");
        let mut node = config(id, &self.ids);
        if let Some((every, keep)) = self.snapshots {
            node.snapshot_entries = every;
            node.catch_up_entries = keep;
        }
        let mut builder = Store::builder(&data)
            .lease_check_interval(Duration::from_millis(50))
            .replicated(node, storage, self.net.transport(id));
        if let Some(mode) = self.auto_compaction {
            builder = builder.auto_compaction(mode);
        }
        let store = builder.open().expect("open a replicated store");
        self.net
            .register(id, store.raft_mailbox().expect("a replicated store"));
        self.stores.insert(id, store);
    }

    /// Closes member `id` (its disk stays).
    fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        let store = self.stores.remove(&id).expect("running");
        store.close().expect("close");
    }

    fn store(&self, id: u64) -> &Store {
        &self.stores[&id]
    }

    /// Waits until one member of `among` leads and all of `among` follow it in its term.
    fn wait_leader(&self, among: &[u64]) -> u64 {
        common::wait_leader(&self.stores, among)
    }

    /// Waits until every member of `among` applied everything committed before the call (a
    /// read index from their leader covers every acknowledged write; a member's published
    /// status may lag the answers it already gave).
    fn wait_caught_up(&self, among: &[u64]) {
        common::wait_caught_up(&self.stores, among)
    }

    /// Runs a write at member `id`, retrying only what was certainly not proposed (no leader
    /// known yet).
    fn write<T>(&self, id: u64, f: impl Fn(&Store) -> batchkv::Result<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match f(self.store(id)) {
                Ok(v) => return v,
                Err(StoreError::NoLeader | StoreError::NotLeader { .. })
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("write at member {id}: {e}"),
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

type Event = (i64, EventKind, Bytes, Bytes);

/// What a watcher receives until it has seen revision `upto`.
fn events_until(w: &mut Watcher, upto: i64) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while out.last().is_none_or(|e| e.0 < upto) {
        assert!(
            Instant::now() < deadline,
            "watch stopped at {:?}",
            out.last()
        );
        if let Some(resp) = w.recv_timeout(Duration::from_millis(200)).expect("watch") {
            out.extend(
                resp.events
                    .into_iter()
                    .map(|e| (e.kv.mod_revision, e.kind, e.kv.key, e.kv.value)),
            );
        }
    }
    out
}

fn watch_all() -> WatchRequest {
    WatchRequest::range("\0", "\0")
}

#[test]
fn writes_through_the_leader_are_applied_by_every_member_in_the_same_order() {
    let c = Cluster::new(1);
    let leader = c.wait_leader(&c.ids);
    let follower = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    // A live watch on a follower, opened before any write.
    let mut live = c.store(follower).watch(watch_all());

    let mut rev = 1;
    for i in 0..30 {
        let r = c.write(leader, |s| s.put(format!("k/{i:02}"), format!("v{i}")));
        assert_eq!(r.revision, rev + 1, "one revision per put");
        rev = r.revision;
    }
    let swap = Txn {
        compares: vec![Compare::new(
            "k/00",
            CompareOp::Equal,
            CompareTarget::Value("v0".into()),
        )],
        success: vec![
            Op::Put(Put::new("k/00", "swapped")),
            Op::Put(Put::new("k/99", "new")),
        ],
        failure: vec![],
    };
    let t = c.write(leader, |s| s.txn(swap.clone()));
    assert!(t.succeeded);
    assert_eq!(t.revision, rev + 1);
    let d = c.write(leader, |s| s.delete("k/01"));
    assert_eq!((d.deleted, d.revision), (1, rev + 2));
    rev = d.revision;
    // The async path and group commit: many writes queued at once, fewer entries.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let many: Vec<_> = (0..50)
        .map(|i| c.store(leader).put_async(format!("a/{i:02}"), "x"))
        .collect();
    for f in many {
        let r = rt.block_on(f).expect("async put");
        rev = rev.max(r.revision);
    }
    assert_eq!(rev, 1 + 30 + 1 + 1 + 50);
    // A bulk load through a follower: one raft entry per chunk, forwarded to the leader.
    let puts = (0..1_000).map(|i| (Bytes::from(format!("b/{i:04}")), Bytes::from("v")));
    let loaded = c.store(follower).bulk_load(puts, 100).expect("bulk load");
    assert_eq!((loaded.committed, loaded.entries), (1_000, 10));
    assert_eq!(loaded.revision, rev + 1_000);
    rev = loaded.revision;

    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    for id in &c.ids {
        assert_eq!(c.store(*id).current_revision(), rev, "member {id}");
        let got = c.store(*id).get("k/00").expect("get").map(|kv| kv.value);
        assert_eq!(got.as_deref(), Some(&b"swapped"[..]));
    }
    // The same events in the same order on every member, from history and live.
    let history: Vec<Vec<Event>> = c
        .ids
        .iter()
        .map(|id| events_until(&mut c.store(*id).watch(watch_all().from_revision(1)), rev))
        .collect();
    assert!(history.iter().all(|h| *h == history[0]));
    assert_eq!(events_until(&mut live, rev), history[0]);
    let revs: Vec<i64> = history[0].iter().map(|e| e.0).collect();
    assert!(revs.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
    assert_eq!((revs.first(), revs.last()), (Some(&2), Some(&rev)));
}

#[test]
fn writes_on_followers_are_forwarded_and_reads_can_be_linearizable() {
    let c = Cluster::new(2);
    let leader = c.wait_leader(&c.ids);
    let followers: Vec<u64> = c.ids.iter().copied().filter(|&id| id != leader).collect();
    for (n, &f) in followers.iter().enumerate() {
        let key = format!("from/{f}");
        let r = c.write(f, |s| s.put(key.clone(), "v"));
        // A linearizable read anywhere else sees it at once: no waiting for replication.
        let other = followers[(n + 1) % followers.len()];
        for at in [other, leader] {
            let got = c
                .store(at)
                .range_linearizable(&Range::key(key.clone()))
                .expect("linearizable range");
            assert_eq!(got.kvs.len(), 1, "member {at} reads {key}");
            assert!(got.revision >= r.revision);
        }
        // A txn and a lease through a follower answer with the member's own results.
        let lease = c.write(f, |s| s.lease_grant(0, 60));
        assert!(lease.id > 0);
        let t = c.write(f, |s| {
            s.txn(Txn {
                compares: vec![Compare::new(
                    key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Version(1),
                )],
                success: vec![Op::Put(Put {
                    lease: lease.id,
                    ..Put::new(key.clone(), "leased")
                })],
                failure: vec![],
            })
        });
        assert!(t.succeeded);
    }
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    assert_eq!(c.store(leader).leases().len(), 2);
    // Keep-alives go to the leader: a follower refuses rather than pretend.
    let id = c.store(leader).leases()[0];
    assert!(c.store(leader).lease_keep_alive(id).is_ok());
    match c.store(followers[0]).lease_keep_alive(id) {
        Err(StoreError::NotLeader { leader: l }) => assert_eq!(l, leader),
        other => panic!("a keep-alive on a follower: {other:?}"),
    }
}

#[test]
fn revisions_stay_contiguous_across_a_leader_change_and_a_cut_off_leader_never_succeeds() {
    let mut c = Cluster::new(3);
    let all = c.ids.clone();
    let old = c.wait_leader(&all);
    for i in 0..20 {
        c.write(old, |s| s.put(format!("before/{i:02}"), "v"));
    }
    let majority: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();

    // The leader alone: its write cannot commit, and it says so: ambiguous (it lost its
    // leadership with the entry in flight), no leader, or timed out. Never a success.
    c.net.partition(&[&[old], &majority]);
    match c.store(old).put("from/old-leader", "lost") {
        Err(e) if retryable(&e) => {}
        other => panic!("a write on a cut-off leader: {other:?}"),
    }
    // Nor a linearizable read.
    assert!(matches!(
        c.store(old).range_linearizable(&Range::key("before/00")),
        Err(StoreError::Timeout | StoreError::NoLeader)
    ));
    // Once it stepped down, it knows no leader and refuses at once.
    let deadline = Instant::now() + PATIENCE;
    while c.store(old).raft_status().expect("replicated").is_leader {
        assert!(
            Instant::now() < deadline,
            "the old leader never stepped down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        c.store(old).put("from/old-leader", "lost"),
        Err(StoreError::NoLeader)
    ));

    // The majority elects a new leader and goes on; writes on either of its members.
    let new = c.wait_leader(&majority);
    assert_ne!(new, old);
    for i in 0..20 {
        let at = majority[i % 2];
        c.write(at, |s| s.put(format!("after/{i:02}"), "v"));
    }

    // Heal: the old leader follows, drops its uncommitted entry and catches up.
    c.net.heal();
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
    let rev = c.store(new).current_revision();
    assert_eq!(
        rev,
        1 + 40,
        "one revision per acknowledged put, no gap, nothing else"
    );
    for id in &all {
        assert!(c.store(*id).get("from/old-leader").expect("get").is_none());
        let revs: Vec<i64> =
            events_until(&mut c.store(*id).watch(watch_all().from_revision(1)), rev)
                .iter()
                .map(|e| e.0)
                .collect();
        assert_eq!(
            revs,
            (2..=rev).collect::<Vec<_>>(),
            "member {id}'s revisions"
        );
    }

    // The old leader takes writes again (forwarded to the new leader).
    c.write(old, |s| s.put("from/old-member", "v"));
    c.wait_caught_up(&all);
    c.assert_same_state(&all);

    // A member restarted from disk catches up with what it missed.
    let down = *all
        .iter()
        .find(|&&id| id != c.wait_leader(&all))
        .expect("a follower");
    c.stop(down);
    let up: Vec<u64> = all.iter().copied().filter(|&id| id != down).collect();
    for i in 0..20 {
        c.write(up[i % 2], |s| s.put(format!("while-down/{i:02}"), "v"));
    }
    c.start(down);
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
    assert_eq!(c.store(down).current_revision(), 1 + 40 + 1 + 20);
    c.store(down)
        .check()
        .expect("the restarted member's state checks");
}

#[test]
fn a_lease_expires_once_through_the_leader() {
    let c = Cluster::new(4);
    let leader = c.wait_leader(&c.ids);
    let lease = c.write(leader, |s| s.lease_grant(0, 2));
    let put = c.write(leader, |s| {
        s.put_with(Put {
            lease: lease.id,
            ..Put::new("session", "alive")
        })
    });
    let deadline = Instant::now() + PATIENCE;
    while c.ids.iter().any(|id| !c.store(*id).leases().is_empty()) {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    for id in &c.ids {
        let s = c.store(*id);
        assert!(s.get("session").expect("get").is_none());
        // One revoke: the key's delete is the one revision after the put.
        assert_eq!(s.current_revision(), put.revision + 1, "member {id}");
        assert_eq!(s.stats().expect("stats").maintenance_errors, 0);
    }
}

#[test]
fn a_new_leader_gives_every_lease_its_whole_ttl_again() {
    let mut c = Cluster::new(5);
    let all = c.ids.clone();
    let old = c.wait_leader(&all);
    let ttl = 4;
    let lease = c.write(old, |s| s.lease_grant(0, ttl));
    let put = c.write(old, |s| {
        s.put_with(Put {
            lease: lease.id,
            ..Put::new("session", "alive")
        })
    });
    c.wait_caught_up(&all);
    // Most of the TTL passes under the old leader, then it is cut off.
    std::thread::sleep(Duration::from_millis(1_500));
    let cut = Instant::now();
    let majority: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();
    c.net.partition(&[&[old], &majority]);
    let new = c.wait_leader(&majority);
    assert_ne!(new, old);
    // The new leader was elected after `cut`, so the lease lives until `cut + ttl` at least,
    // though its first deadline (about `cut + 2.5 s`) has passed. Asserted only while the clock,
    // read after the lease, is still before that bound.
    let bound = cut + Duration::from_secs(ttl as u64);
    while Instant::now() < bound {
        let alive = majority
            .iter()
            .all(|id| c.store(*id).lease_time_to_live(lease.id, false).ttl >= 0);
        if Instant::now() < bound {
            assert!(
                alive,
                "the lease expired before a whole TTL under the new leader"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Then it expires, once, through the new leader.
    let deadline = Instant::now() + PATIENCE;
    while !c.store(new).leases().is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.net.heal();
    c.wait_caught_up(&all);
    c.assert_same_state(&all);
    for id in &all {
        assert!(c.store(*id).leases().is_empty(), "member {id}");
        assert_eq!(
            c.store(*id).current_revision(),
            put.revision + 1,
            "member {id}"
        );
    }
    c.stop(old);
}

#[test]
fn a_write_forwarded_into_a_partition_never_succeeds() {
    let c = Cluster::new(6);
    let leader = c.wait_leader(&c.ids);
    let lonely = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    let rest: Vec<u64> = c.ids.iter().copied().filter(|&id| id != lonely).collect();
    c.net.partition(&[&[lonely], &rest]);
    // Forwarded to a leader it cannot reach (timed out), or refused once it knows no leader.
    match c.store(lonely).put("lost", "v") {
        Err(StoreError::Timeout | StoreError::NoLeader | StoreError::LeaderLost) => {}
        other => panic!("a write on a cut-off follower: {other:?}"),
    }
    c.write(leader, |s| s.put("kept", "v"));
    c.net.heal();
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    for id in &c.ids {
        assert!(
            c.store(*id).get("lost").expect("get").is_none(),
            "member {id}"
        );
        assert!(
            c.store(*id).get("kept").expect("get").is_some(),
            "member {id}"
        );
    }
}

#[test]
fn a_store_with_history_cannot_join_a_new_cluster() {
    let dir = batchkv_testkit::temp_dir();
    let data = dir.path().join("data");
    let single = Store::open(&data).expect("open");
    single.put("k", "v").expect("put");
    single.close().expect("close");
    drop(single);
    let net = LocalNetwork::new(7);
    let storage = RaftStorage::open_dir(Store::raft_dir(&data)).expect("raft storage");
    let refused = Store::builder(&data)
        .replicated(config(1, &[1, 2, 3]), storage, net.transport(1))
        .open();
    match refused {
        Err(StoreError::Config(msg)) => assert!(msg.contains("cannot join"), "{msg}"),
        other => panic!("a store with history joined a new cluster: {other:?}"),
    }
    // Untouched: it still opens as the single-node store it was.
    let again = Store::open(&data).expect("reopen");
    assert_eq!(again.current_revision(), 2);
}

#[test]
fn concurrent_writers_on_every_member_under_message_loss_agree() {
    let c = Cluster::new(8);
    c.wait_leader(&c.ids);
    c.net.set_loss(5);
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for &id in &c.ids {
            for t in 0..2 {
                let store = c.store(id).clone();
                let acked = &acked;
                s.spawn(move || {
                    for i in 0..40 {
                        let key = format!("w/{id}/{t}/{i:02}");
                        match store.put(key.clone(), "v") {
                            Ok(r) => acked
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((key, r.revision)),
                            // In doubt or refused: no claim either way.
                            Err(e) if retryable(&e) => {}
                            Err(e) => panic!("put at member {id}: {e}"),
                        }
                    }
                });
            }
        }
    });
    c.net.set_loss(0);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    let acked = acked.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(!acked.is_empty(), "no write got through");
    let rev = c.store(c.ids[0]).current_revision();
    for id in &c.ids {
        let s = c.store(*id);
        // Every acknowledged put is there, at the revision it was answered with.
        for (key, r) in &acked {
            let kv = s.get(key).expect("get").expect("an acknowledged put");
            assert_eq!(kv.mod_revision, *r, "member {id}, {key}");
        }
        // One revision per applied put, none skipped.
        let revs: Vec<i64> = events_until(&mut s.watch(watch_all().from_revision(1)), rev)
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            revs,
            (2..=rev).collect::<Vec<_>>(),
            "member {id}'s revisions"
        );
    }
}

#[test]
fn auto_compaction_is_proposed_by_the_leader_and_applied_everywhere() {
    let c = Cluster::with(9, Some(AutoCompaction::Periodic(Duration::from_secs(1))));
    let leader = c.wait_leader(&c.ids);
    let mut last = 1;
    for i in 0..10 {
        last = c
            .write(leader, |s| s.put(format!("k/{i}"), format!("v{i}")))
            .revision;
    }
    // Compacted once the revision of a second ago is older than the retention: at the latest
    // revision, with no more writes.
    let deadline = Instant::now() + PATIENCE;
    while c.store(leader).stats().expect("stats").compacted != Some(last) {
        assert!(Instant::now() < deadline, "never auto-compacted to {last}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    for id in &c.ids {
        let st = c.store(*id).stats().expect("stats");
        assert_eq!(st.compacted, Some(last), "member {id}");
        assert_eq!(st.maintenance_errors, 0, "member {id}");
    }
}

#[test]
fn the_whole_cluster_restarts_from_disk_and_goes_on() {
    let mut c = Cluster::new(10);
    let leader = c.wait_leader(&c.ids);
    for i in 0..10 {
        c.write(leader, |s| s.put(format!("k/{i}"), "v"));
    }
    c.wait_caught_up(&c.ids);
    let hash = c.store(leader).hash_kv(0).expect("hash");
    for id in c.ids.clone() {
        c.stop(id);
    }
    for id in c.ids.clone() {
        c.start(id);
    }
    // Nothing applied twice, nothing lost: the same history on every member.
    for id in &c.ids {
        assert_eq!(c.store(*id).hash_kv(0).expect("hash"), hash, "member {id}");
    }
    let leader = c.wait_leader(&c.ids);
    let r = c.write(leader, |s| s.put("after", "restart"));
    assert_eq!(r.revision, 12);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
}

/// Many linearizable reads at once on every member (they share ReadIndex rounds: each round
/// serves the reads queued when it was asked) while two members write: every read sees every
/// write acknowledged before it started.
#[test]
fn concurrent_linearizable_reads_see_every_write_acknowledged_before_they_began() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let c = Cluster::new(21);
    let leader = c.wait_leader(&c.ids);
    let follower = c
        .ids
        .iter()
        .copied()
        .find(|&id| id != leader)
        .expect("a follower");
    const WRITES: u64 = 150;
    const READERS_PER_MEMBER: usize = 6;
    let writers = [leader, follower];
    let acked: Vec<AtomicU64> = writers.iter().map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let value = |range: &batchkv::RangeResponse, key: &str| -> u64 {
        range
            .kvs
            .iter()
            .find(|kv| kv.key.as_ref() == key.as_bytes())
            .map_or(0, |kv| {
                std::str::from_utf8(&kv.value)
                    .expect("UTF-8")
                    .parse()
                    .expect("a counter")
            })
    };
    std::thread::scope(|s| {
        let writing: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                let (c, acked) = (&c, &acked);
                s.spawn(move || {
                    for n in 1..=WRITES {
                        c.write(w, |st| st.put(format!("w{j}"), n.to_string()));
                        acked[j].store(n, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let readers: Vec<_> = c
            .ids
            .iter()
            .flat_map(|&id| std::iter::repeat_n(id, READERS_PER_MEMBER))
            .map(|id| {
                let (c, acked, done, reads) = (&c, &acked, &done, &reads);
                s.spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        let before: Vec<u64> =
                            acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                        let got = match c.store(id).range_linearizable(&Range::prefix("w")) {
                            Ok(r) => r,
                            // No leader for a moment: not a read that happened.
                            Err(StoreError::Timeout) => continue,
                            Err(e) => panic!("linearizable read on member {id}: {e}"),
                        };
                        for (j, b) in before.iter().enumerate() {
                            let seen = value(&got, &format!("w{j}"));
                            assert!(
                                seen >= *b,
                                "member {id} read w{j} = {seen} after write {b} was acknowledged"
                            );
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // The writers end first; then the readers.
        for w in writing {
            w.join().expect("a writer");
        }
        done.store(true, Ordering::SeqCst);
        for r in readers {
            r.join().expect("a reader");
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0, "no read completed");
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
}

/// Raft's log on every member of `among` holds at most `every + keep` entries (a snapshot every
/// `every` applied entries drops all but `keep` below it), and was compacted at least once.
fn assert_log_bounded(c: &Cluster, among: &[u64], every: u64, keep: u64) {
    for id in among {
        let st = c.store(*id).raft_status().expect("replicated");
        assert!(
            st.first_index > 1,
            "member {id}'s log was never compacted: {st:?}"
        );
        assert!(
            st.last_index + 1 - st.first_index <= every + keep,
            "member {id}'s log holds more than {every} + {keep} entries: {st:?}"
        );
    }
}

#[test]
fn the_raft_log_stays_bounded_under_many_writes() {
    let (every, keep) = (20, 5);
    let c = Cluster::with_snapshots(11, every, keep);
    let leader = c.wait_leader(&c.ids);
    let follower = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    let mut rev = 1;
    for i in 0..300 {
        // On the leader and on a follower (forwarded): one raft entry per write.
        let at = if i % 2 == 0 { leader } else { follower };
        rev = c
            .write(at, |s| s.put(format!("k/{:03}", i % 50), format!("v{i}")))
            .revision;
    }
    c.wait_caught_up(&c.ids);
    assert_log_bounded(&c, &c.ids, every, keep);
    c.assert_same_state(&c.ids);
    for id in &c.ids {
        assert_eq!(c.store(*id).current_revision(), rev, "member {id}");
    }
}

/// Partitions `lagging` away and writes through the others until the leader's log no longer
/// holds the entry `lagging` needs next (so only a snapshot can catch it up). Returns the
/// leader and the revision reached.
fn leave_behind(c: &Cluster, lagging: u64, writes: usize) -> (u64, i64) {
    let rest: Vec<u64> = c.ids.iter().copied().filter(|&id| id != lagging).collect();
    c.net.partition(&[&[lagging], &rest]);
    let leader = c.wait_leader(&rest);
    let mut rev = 0;
    for i in 0..writes {
        rev = c
            .write(leader, |s| s.put(format!("behind/{i:04}"), format!("v{i}")))
            .revision;
    }
    let behind = c.store(lagging).raft_status().expect("replicated").applied;
    let first = c
        .store(leader)
        .raft_status()
        .expect("replicated")
        .first_index;
    assert!(
        first > behind + 1,
        "the leader's log (from {first}) still holds what member {lagging} needs ({})",
        behind + 1
    );
    (leader, rev)
}

#[test]
fn a_member_far_behind_is_caught_up_by_a_snapshot_and_goes_on() {
    let (every, keep) = (20, 5);
    let mut c = Cluster::with_snapshots(12, every, keep);
    let leader = c.wait_leader(&c.ids);
    let lagging = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    // History the snapshot must carry: overwrites, a delete, a compaction, a lease with a key.
    for i in 0..10 {
        c.write(leader, |s| s.put(format!("k/{i}"), format!("v{i}")));
    }
    let compact_at = c.write(leader, |s| s.put("k/0", "again")).revision;
    c.write(leader, |s| s.delete("k/1"));
    c.write(leader, |s| s.compact(compact_at));
    let lease = c.write(leader, |s| s.lease_grant(0, 600)).id;
    c.write(leader, |s| {
        s.txn(Txn {
            compares: vec![],
            success: vec![Op::Put(Put {
                lease,
                ..Put::new("leased", "v")
            })],
            failure: vec![],
        })
    });
    c.wait_caught_up(&c.ids);
    // Live watches on the lagging member and on the leader, from now on.
    let mut lagging_watch = c.store(lagging).watch(watch_all());
    let mut leader_watch = c.store(leader).watch(watch_all());

    let (leader, rev) = leave_behind(&c, lagging, 200);
    let before = c.store(lagging).current_revision();
    assert!(before < rev);
    c.net.heal();
    c.wait_caught_up(&c.ids);

    c.assert_same_state(&c.ids);
    for id in &c.ids {
        let s = c.store(*id);
        assert_eq!(s.current_revision(), rev, "member {id}");
        assert_eq!(
            s.stats().expect("stats").compacted,
            Some(compact_at),
            "member {id}"
        );
        assert_eq!(s.leases(), vec![lease], "member {id}");
        let ttl = s.lease_time_to_live(lease, true);
        assert_eq!(ttl.granted_ttl, 600, "member {id}");
        assert_eq!(ttl.keys, vec![Bytes::from("leased")], "member {id}");
        assert!(s.halted().is_none(), "member {id} halted");
    }
    // A read below the compaction fails on the restored member as on the others.
    let old = Range {
        revision: compact_at - 1,
        ..Range::key("k/0")
    };
    assert!(c.store(lagging).range(&old).is_err());
    assert!(c.store(leader).range(&old).is_err());
    // The lagging member's watcher sees every event the leader's does, in order: the
    // revisions it missed come from the restored storage.
    let seen = events_until(&mut lagging_watch, rev);
    assert_eq!(seen, events_until(&mut leader_watch, rev));
    assert_eq!(seen.len(), 200);
    assert_log_bounded(&c, &c.ids, every, keep);

    // It takes writes (forwarded) and applies the others' afterwards.
    let r = c.write(lagging, |s| s.put("after", "snapshot"));
    assert_eq!(r.revision, rev + 1);
    c.write(leader, |s| s.put("after/2", "snapshot"));
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);

    // Restarted, it reopens the installed state from its disk and goes on. (A watcher keeps
    // its store's engine open.)
    drop((lagging_watch, leader_watch));
    let hash = c.store(lagging).hash_kv(0).expect("hash");
    c.stop(lagging);
    c.start(lagging);
    assert_eq!(c.store(lagging).hash_kv(0).expect("hash"), hash);
    assert_eq!(c.store(lagging).leases(), vec![lease]);
    let r = c.write(lagging, |s| s.put("after", "restart"));
    assert_eq!(r.revision, rev + 3);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
}

#[test]
fn a_stopped_member_restarted_after_compactions_is_caught_up_by_a_snapshot() {
    let (every, keep) = (10, 3);
    let mut c = Cluster::with_snapshots(13, every, keep);
    let leader = c.wait_leader(&c.ids);
    let stopped = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    for i in 0..5 {
        c.write(leader, |s| s.put(format!("k/{i}"), "v"));
    }
    c.wait_caught_up(&c.ids);
    c.stop(stopped);
    let rest: Vec<u64> = c.ids.iter().copied().filter(|&id| id != stopped).collect();
    let mut rev = 0;
    for i in 0..100 {
        let at = rest[i % 2];
        rev = c
            .write(at, |s| s.put(format!("k/{}", i % 7), format!("v{i}")))
            .revision;
    }
    c.start(stopped);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    assert_eq!(c.store(stopped).current_revision(), rev);
    let r = c.write(stopped, |s| s.put("k/last", "v"));
    assert_eq!(r.revision, rev + 1);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
}

/// A cluster (snapshots every 20 entries, 5 kept) with one follower partitioned away while
/// the others wrote 100 entries past it: healing the partition sends it a snapshot.
struct Behind {
    c: Cluster,
    lagging: u64,
    /// The others' revision.
    rev: i64,
    /// The follower's HashKV and revision, before any snapshot.
    old_hash: batchkv::KvHash,
    old_rev: i64,
}

fn behind_a_snapshot(seed: u64) -> Behind {
    let (every, keep) = (20, 5);
    let c = Cluster::with_snapshots(seed, every, keep);
    let leader = c.wait_leader(&c.ids);
    let lagging = *c.ids.iter().find(|&&id| id != leader).expect("a follower");
    for i in 0..10 {
        c.write(leader, |s| s.put(format!("k/{i}"), "v"));
    }
    c.wait_caught_up(&c.ids);
    let (_, rev) = leave_behind(&c, lagging, 100);
    let old_hash = c.store(lagging).hash_kv(0).expect("hash");
    let old_rev = c.store(lagging).current_revision();
    Behind {
        c,
        lagging,
        rev,
        old_hash,
        old_rev,
    }
}

#[test]
fn a_snapshot_that_fails_to_install_leaves_the_old_state_and_reopening_installs_it() {
    let Behind {
        mut c,
        lagging,
        rev,
        old_hash,
        old_rev,
    } = behind_a_snapshot(14);
    // The install's one WriteBatch fails (a full disk, say): nothing of it is written.
    c.store(lagging).inject_write_failures_after(0);
    c.net.heal();
    let deadline = Instant::now() + PATIENCE;
    let cause = loop {
        if let Some(cause) = c.store(lagging).halted() {
            break cause;
        }
        assert!(Instant::now() < deadline, "member {lagging} never halted");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(cause.contains("installing the raft snapshot"), "{cause}");
    // The old state, whole: a crash here would reopen the same.
    assert_eq!(c.store(lagging).current_revision(), old_rev);
    assert_eq!(c.store(lagging).hash_kv(0).expect("hash"), old_hash);
    // Reopened (the disk works again), the member installs the snapshot raft stored and
    // catches up.
    c.net.unregister(lagging);
    let store = c.stores.remove(&lagging).expect("running");
    let _ = store.close();
    drop(store);
    c.start(lagging);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    assert_eq!(c.store(lagging).current_revision(), rev);
}

#[test]
fn a_damaged_snapshot_is_refused_and_the_member_is_caught_up_by_the_next() {
    let Behind {
        c,
        lagging,
        rev,
        old_hash,
        old_rev,
    } = behind_a_snapshot(16);
    // The link damages every snapshot: the member refuses each one (its checksum), keeps its
    // state and goes on running.
    c.net.set_corrupt_snapshots(true);
    c.net.heal();
    let deadline = Instant::now() + PATIENCE;
    while c.net.corrupted_snapshots() < 2 && c.store(lagging).halted().is_none() {
        assert!(Instant::now() < deadline, "no snapshot was sent again");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        c.store(lagging).halted(),
        None,
        "a damaged snapshot halted the member"
    );
    assert_eq!(c.store(lagging).current_revision(), old_rev);
    assert_eq!(c.store(lagging).hash_kv(0).expect("hash"), old_hash);
    // An intact one is sent again and installed.
    c.net.set_corrupt_snapshots(false);
    c.wait_caught_up(&c.ids);
    c.assert_same_state(&c.ids);
    assert_eq!(c.store(lagging).current_revision(), rev);
    assert_eq!(c.store(lagging).halted(), None);
}

//! In-process clusters of `RaftNode`s over real RocksDB on temp dirs, with the faults of a
//! `LocalNetwork`: elections, replication in one order, leader crash, partitions, restart from
//! disk, catch-up by snapshot, a 5-node cluster.

mod common;

use std::time::Duration;

use batchkv_raft::RaftError;
use common::{Cluster, assert_prefixes, lock, test_config};

fn entry(tag: &str, i: u64) -> Vec<u8> {
    format!("{tag}-{i}").into_bytes()
}

#[test]
fn three_nodes_elect_replicate_and_apply_the_same_entries_in_the_same_order() {
    let c = Cluster::new(3, 1);
    let all = c.ids.clone();
    let leader = c.wait_leader(&all);

    // A follower refuses, naming the leader.
    let follower = *all.iter().find(|&&id| id != leader).expect("a follower");
    match c.node(follower).propose(b"at a follower".to_vec()) {
        Err(RaftError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("a follower's proposal: {other:?}"),
    }

    let mut last = 0;
    for i in 0..50 {
        let index = c.propose(&all, &entry("a", i));
        assert!(index > last, "indexes grow: {index} after {last}");
        last = index;
    }
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let h = c.history(leader);
    let data: Vec<Vec<u8>> = h.iter().map(|(_, d)| d.clone()).collect();
    let want: Vec<Vec<u8>> = (0..50).map(|i| entry("a", i)).collect();
    assert_eq!(data, want, "every proposal applied once, in order");
    assert_eq!(h.last().map(|(i, _)| *i), Some(last));

    // A linearizable read at a follower: its read index covers every acknowledged write, and
    // the follower has applied it when read_index returns.
    let ri = c.node(follower).read_index().expect("read index");
    assert!(ri >= last, "read index {ri} < last acknowledged {last}");
    assert!(c.node(follower).status().applied >= ri);
    assert_eq!(c.history(follower).last().map(|(i, _)| *i), Some(last));

    // The proposer gets what its own node's state machine answered for its entry.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let (index, len) = loop {
        let l = c.wait_leader(&all);
        match c.node(l).propose_for_output(b"with output".to_vec()) {
            Ok((index, len)) => break (index, len.map(|n| (l, n))),
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
    };
    let (at, len) = len.expect("applied at the proposer");
    let h = c.history(at);
    let pos = h.iter().position(|(i, _)| *i == index).expect("applied");
    assert_eq!((len, &h[pos].1[..]), (pos + 1, &b"with output"[..]));
    last = index;
    c.wait_applied(&all, last);
    c.assert_same_history(&all);

    let st = c.node(leader).status();
    assert!(st.commit >= last && st.applied >= last && st.term >= 1);
    c.assert_no_reapply();
}

#[test]
fn leader_crash_elects_a_new_leader_and_keeps_every_acknowledged_entry() {
    let mut c = Cluster::new(3, 2);
    let all = c.ids.clone();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push((c.propose(&all, &entry("before", i)), entry("before", i)));
    }
    let old = c.wait_leader(&all);
    c.stop(old);
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();
    let new = c.wait_leader(&live);
    assert_ne!(new, old);
    for i in 0..20 {
        acked.push((c.propose(&live, &entry("after", i)), entry("after", i)));
    }
    let last = acked.iter().map(|(i, _)| *i).max().unwrap_or(0);
    c.wait_applied(&live, last);
    c.assert_same_history(&live);
    let h = c.history(live[0]);
    for (index, data) in &acked {
        assert!(
            h.contains(&(*index, data.clone())),
            "acknowledged {index} missing"
        );
    }

    // The old leader comes back from its disk and catches up.
    c.start(old);
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    c.assert_no_reapply();
}

#[test]
fn a_minority_cannot_commit_the_majority_can_and_healing_catches_up() {
    let c = Cluster::new(3, 3);
    let all = c.ids.clone();
    let first = c.propose(&all, b"first");
    let old = c.wait_leader(&all);
    let majority: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();

    // The leader alone: its proposal cannot commit. It fails with a typed error (the leader
    // steps down: Ambiguous; or the request times out), never hangs.
    c.net.partition(&[&[old], &majority]);
    let minority = c.node(old).propose(b"in the minority".to_vec());
    assert!(
        matches!(
            minority,
            Err(RaftError::Ambiguous | RaftError::Timeout | RaftError::NotLeader { .. })
        ),
        "{minority:?}"
    );
    // Once it knows it lost the quorum, it refuses at once.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while c.node(old).status().is_leader {
        assert!(
            std::time::Instant::now() < deadline,
            "old leader never stepped down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        c.node(old).propose(b"again".to_vec()),
        Err(RaftError::NotLeader { .. })
    ));
    // Nor can it serve a linearizable read.
    assert!(matches!(c.node(old).read_index(), Err(RaftError::Timeout)));

    // The majority elects a leader and commits.
    let mut last = first;
    for i in 0..20 {
        last = c.propose(&majority, &entry("majority", i));
    }
    c.wait_applied(&majority, last);
    assert!(c.node(old).status().applied < last);

    c.net.heal();
    c.wait_leader(&all);
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let h = c.history(old);
    assert!(
        !h.iter().any(|(_, d)| d == b"in the minority"),
        "an entry the isolated leader alone held was applied"
    );
    c.assert_no_reapply();
}

#[test]
fn a_restarted_node_resumes_from_its_applied_index_without_reapplying() {
    let mut c = Cluster::new(3, 4);
    let all = c.ids.clone();
    let mut last = 0;
    for i in 0..30 {
        last = c.propose(&all, &entry("a", i));
    }
    c.wait_applied(&all, last);
    let leader = c.wait_leader(&all);
    let follower = *all.iter().find(|&&id| id != leader).expect("a follower");
    let had = c.history(follower).len() as u64;
    c.stop(follower);
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != follower).collect();
    for i in 0..30 {
        last = c.propose(&live, &entry("b", i));
    }
    c.start(follower);
    // What it applied is back from its disk, and only the entries it missed are applied.
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let now = c.history(follower).len() as u64;
    assert!(now >= had + 30);
    assert_eq!(lock(&c.applied[&follower]).apply_calls, now - had);

    // The whole cluster restarts from disk.
    for id in &all {
        c.stop(*id);
    }
    for id in &all {
        c.start(*id);
        assert_eq!(
            c.history(*id).len() as u64,
            now,
            "node {id} lost applied entries"
        );
    }
    last = c.propose(&all, b"after the restart");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let after = c.history(all[0]).len() as u64;
    for id in &all {
        assert_eq!(
            lock(&c.applied[id]).apply_calls,
            after - now,
            "node {id} re-applied entries"
        );
    }
    let data: Vec<Vec<u8>> = c.history(all[0]).into_iter().map(|(_, d)| d).collect();
    for i in 0..30 {
        assert!(data.contains(&entry("a", i)) && data.contains(&entry("b", i)));
    }
    c.assert_no_reapply();
}

#[test]
fn a_node_far_behind_catches_up_by_snapshot_after_log_compaction() {
    let mut c = Cluster::with_config(3, 5, |id, peers| {
        let mut cfg = test_config(id, peers);
        cfg.snapshot_entries = 20;
        cfg.catch_up_entries = 5;
        cfg
    });
    let all = c.ids.clone();
    c.propose(&all, b"first");
    let leader = c.wait_leader(&all);
    let behind = *all.iter().find(|&&id| id != leader).expect("a follower");
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != behind).collect();
    c.net.partition(&[&live, &[behind]]);
    let mut last = 0;
    for i in 0..80 {
        last = c.propose(&live, &entry("x", i));
    }
    c.wait_applied(&live, last);
    let leader = c.wait_leader(&live);
    assert!(
        c.node(leader).status().first_index > c.node(behind).status().applied + 1,
        "the leader's log was compacted past the lagging node: {:#?}",
        c.statuses()
    );
    c.net.heal();
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    assert!(
        lock(&c.applied[&behind]).restores >= 1,
        "caught up without a snapshot"
    );
    c.assert_no_reapply();
    // The state machine installed it durably: raft's storage keeps the snapshot's metadata,
    // not a second copy of its data, and the node restarts from the state machine.
    c.stop(behind);
    let s = c.open_raft_storage(behind);
    assert!(s.snapshot_metadata().index > 1, "no snapshot recorded");
    assert!(
        !s.snapshot_stored(),
        "the installed snapshot's data was stored again"
    );
    drop(s);
    c.start(behind);
    let last = c.propose(&all, b"after the restart");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    c.assert_no_reapply();
}

#[test]
fn a_snapshot_is_built_off_the_node_thread_while_the_cluster_goes_on() {
    let c = Cluster::with_config(3, 12, |id, peers| {
        let mut cfg = test_config(id, peers);
        cfg.snapshot_entries = 20;
        cfg.catch_up_entries = 5;
        cfg
    });
    let all = c.ids.clone();
    c.propose(&all, b"first");
    let leader = c.wait_leader(&all);
    let behind = *all.iter().find(|&&id| id != leader).expect("a follower");
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != behind).collect();
    // Every snapshot builder waits until the test lets it go.
    for a in c.applied.values() {
        lock(a).hold_builds();
    }
    c.net.partition(&[&live, &[behind]]);
    let mut last = 0;
    for i in 0..80 {
        last = c.propose(&live, &entry("x", i));
    }
    c.wait_applied(&live, last);
    c.net.heal();
    // The lagging member needs a snapshot: the leader starts building one.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while live
        .iter()
        .all(|id| lock(&c.applied[id]).builds_started == 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot builder started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // While it is held, the cluster commits and applies entries: the node thread does not wait
    // for the builder (ticks, heartbeats and the log go on).
    for i in 0..30 {
        last = c.propose(&live, &entry("y", i));
    }
    c.wait_applied(&live, last);
    assert_eq!(
        lock(&c.applied[&behind]).restores,
        0,
        "no snapshot was ready"
    );
    assert!(c.node(behind).status().applied < last);
    for a in c.applied.values() {
        lock(a).release_builds();
    }
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    assert!(
        lock(&c.applied[&behind]).restores >= 1,
        "caught up without a snapshot"
    );
    c.assert_no_reapply();
    // Sent and installed: the leader lets go of the snapshot's memory.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while c.statuses().iter().any(|s| s.snapshot_bytes > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "a snapshot is still held: {:#?}",
            c.statuses()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_lost_snapshot_is_sent_again() {
    let c = Cluster::with_config(3, 9, |id, peers| {
        let mut cfg = test_config(id, peers);
        cfg.snapshot_entries = 20;
        cfg.catch_up_entries = 5;
        cfg
    });
    let all = c.ids.clone();
    c.propose(&all, b"first");
    let leader = c.wait_leader(&all);
    let behind = *all.iter().find(|&&id| id != leader).expect("a follower");
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != behind).collect();
    c.net.partition(&[&live, &[behind]]);
    let mut last = 0;
    for i in 0..80 {
        // Big enough that the snapshot (every entry) is far larger than any other message.
        last = c.propose(&live, format!("{i:0>64}").as_bytes());
    }
    c.wait_applied(&live, last);
    // Reconnected, but the link loses the snapshot (raft's other messages pass): raft-rs waits
    // for the snapshot's fate, which the transport never reports.
    c.net.heal();
    c.net.set_max_message_bytes(Some(2048));
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while c.net.oversize_dropped() == 0 {
        assert!(std::time::Instant::now() < deadline, "no snapshot was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.net.heal();
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    assert!(lock(&c.applied[&behind]).restores >= 1);
    c.assert_no_reapply();
}

#[test]
fn five_nodes_survive_a_minority_partition_and_a_leader_crash() {
    let mut c = Cluster::new(5, 6);
    let all = c.ids.clone();
    let mut last = c.propose(&all, b"start");
    let leader = c.wait_leader(&all);
    // The leader and one follower are cut off; the three others carry on.
    let other = *all.iter().find(|&&id| id != leader).expect("a follower");
    let minority = [leader, other];
    let majority: Vec<u64> = all
        .iter()
        .copied()
        .filter(|id| !minority.contains(id))
        .collect();
    c.net.partition(&[&minority, &majority]);
    for i in 0..10 {
        last = c.propose(&majority, &entry("m", i));
    }
    c.net.heal();
    c.wait_applied(&all, last);
    c.assert_same_history(&all);

    // Crash the current leader; four nodes go on.
    let leader = c.wait_leader(&all);
    c.stop(leader);
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    for i in 0..10 {
        last = c.propose(&live, &entry("n", i));
    }
    c.wait_applied(&live, last);
    c.assert_same_history(&live);
    c.start(leader);
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let histories: Vec<_> = all.iter().map(|&id| (id, c.history(id))).collect();
    assert_prefixes(&histories);
    c.assert_no_reapply();
}

#[test]
fn message_loss_and_delay_slow_the_cluster_but_it_agrees() {
    let c = Cluster::new(3, 7);
    let all = c.ids.clone();
    c.net.set_loss(20);
    c.net.set_delay(Duration::from_millis(5));
    let mut last = 0;
    for i in 0..20 {
        last = c.propose(&all, &entry("lossy", i));
    }
    c.net.heal();
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let (sent, dropped) = c.net.counts();
    assert!(
        dropped > 0 && sent > dropped,
        "sent {sent}, dropped {dropped}"
    );
    c.assert_no_reapply();
}

#[test]
fn a_follower_that_cannot_persist_never_acknowledges() {
    let mut c = Cluster::new(3, 8);
    let all = c.ids.clone();
    let first = c.propose(&all, b"first");
    c.wait_applied(&all, first);
    let leader = c.wait_leader(&all);
    let others: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    let (failing, stopped) = (others[0], others[1]);
    c.stop(stopped);
    c.raft_engine(failing)
        .expect("the follower runs")
        .inject_write_failures_after(0);

    // The only follower left cannot make the append durable, so it must not acknowledge it:
    // the entry cannot commit.
    let r = c
        .node(leader)
        .propose(b"never durable on a quorum".to_vec());
    assert!(
        matches!(r, Err(RaftError::Ambiguous | RaftError::Timeout)),
        "{r:?}"
    );
    assert!(
        !c.history(leader)
            .iter()
            .any(|(_, d)| d == b"never durable on a quorum"),
        "applied without a durable quorum"
    );
    // The follower's node stopped on the failed write and says so.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !matches!(c.node(failing).read_index(), Err(RaftError::Stopped)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the failing node goes on"
        );
    }

    // A working disk again: both come back from disk and the cluster agrees.
    c.stop(failing);
    c.start(failing);
    c.start(stopped);
    let last = c.propose(&all, b"after");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    c.assert_no_reapply();
}

#[test]
fn concurrent_proposers_get_distinct_indexes_and_every_node_applies_one_order() {
    let c = std::sync::Arc::new(Cluster::new(3, 10));
    let all = c.ids.clone();
    c.wait_leader(&all);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = std::sync::Arc::clone(&c);
            let all = all.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        (
                            c.propose(&all, &entry(&format!("t{t}"), i)),
                            entry(&format!("t{t}"), i),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("proposer thread"))
        .collect();
    acked.sort();
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    indexes.dedup();
    assert_eq!(
        indexes.len(),
        200,
        "every acknowledged proposal has its own index"
    );
    let last = *indexes.last().expect("200 indexes");
    c.wait_applied(&all, last);
    c.assert_same_history(&all);
    let h = c.history(all[0]);
    for a in &acked {
        assert!(h.contains(a), "acknowledged {a:?} not applied at its index");
    }
    c.assert_no_reapply();
}

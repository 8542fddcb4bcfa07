//! A property over random fault schedules (partitions, message loss, delays, nodes stopped and
//! restarted from disk, proposals anywhere): at every step the applied histories of all nodes
//! are prefixes of one another, every acknowledged entry is applied where it was acknowledged,
//! and after healing every node has the same history holding every acknowledged entry.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, assert_prefixes, test_config};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Proposes `n` entries at every node that believes it leads.
    Propose(u8),
    /// Splits the nodes: bit i of the mask puts node i+1 on the first side.
    Partition(u8),
    Heal,
    Loss(u8),
    Delay(u8),
    Stop(u8),
    Start(u8),
    Sleep(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..6).prop_map(Op::Propose),
        2 => (1u8..7).prop_map(Op::Partition),
        2 => Just(Op::Heal),
        1 => (0u8..40).prop_map(Op::Loss),
        1 => (0u8..20).prop_map(Op::Delay),
        1 => (1u8..4).prop_map(Op::Stop),
        1 => (1u8..4).prop_map(Op::Start),
        1 => (0u8..200).prop_map(Op::Sleep),
    ]
}

fn check_prefixes(c: &Cluster) {
    let histories: Vec<_> = c.ids.iter().map(|&id| (id, c.history(id))).collect();
    assert_prefixes(&histories);
}

proptest! {
    #![proptest_config(ProptestConfig {
        // BATCHKV_RAFT_CASES=N runs a longer campaign.
        cases: batchkv_testkit::env_u64("BATCHKV_RAFT_CASES").map_or(4, |n| n as u32),
        max_shrink_iters: 4,
        ..ProptestConfig::default()
    })]

    #[test]
    fn applied_histories_stay_prefixes_of_one_another(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 8..24),
    ) {
        let mut c = Cluster::with_config(3, seed, |id, peers| {
            let mut cfg = test_config(id, peers);
            cfg.request_timeout = Duration::from_millis(800);
            cfg.snapshot_entries = 8;
            cfg.catch_up_entries = 2;
            cfg
        });
        let all = c.ids.clone();
        c.wait_leader(&all);
        let mut acked: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut tag = 0u64;
        for op in &ops {
            match *op {
                Op::Propose(n) => {
                    // Give an election a moment (there may be no majority: then nothing).
                    let until = Instant::now() + Duration::from_secs(1);
                    while Instant::now() < until
                        && !c.running().iter().any(|&id| c.node(id).status().is_leader)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    for id in c.running() {
                        if !c.node(id).status().is_leader {
                            continue;
                        }
                        for _ in 0..n {
                            tag += 1;
                            let data = format!("p{tag}").into_bytes();
                            if let Ok(index) = c.node(id).propose(data.clone()) {
                                acked.push((id, index, data));
                            }
                        }
                    }
                }
                Op::Partition(mask) => {
                    let (a, b): (Vec<u64>, Vec<u64>) =
                        all.iter().partition(|&&id| mask & (1 << (id - 1)) != 0);
                    c.net.partition(&[&a, &b]);
                }
                Op::Heal => c.net.heal(),
                Op::Loss(p) => c.net.set_loss(u64::from(p)),
                Op::Delay(ms) => c.net.set_delay(Duration::from_millis(u64::from(ms))),
                Op::Stop(id) => c.stop(u64::from(id)),
                Op::Start(id) => {
                    if !c.running().contains(&u64::from(id)) {
                        c.start(u64::from(id));
                    }
                }
                Op::Sleep(ms) => std::thread::sleep(Duration::from_millis(u64::from(ms))),
            }
            check_prefixes(&c);
        }
        // Acknowledged where it was proposed: applied there at that index.
        for (id, index, data) in &acked {
            prop_assert!(c.history(*id).contains(&(*index, data.clone())));
        }

        c.net.heal();
        for id in &all {
            if !c.running().contains(id) {
                c.start(*id);
            }
        }
        let last = c.propose(&all, b"final");
        c.wait_applied(&all, last);
        c.assert_same_history(&all);
        let h = c.history(all[0]);
        for (_, index, data) in &acked {
            prop_assert!(h.contains(&(*index, data.clone())), "acknowledged {} lost", index);
        }
        c.assert_no_reapply();
    }
}

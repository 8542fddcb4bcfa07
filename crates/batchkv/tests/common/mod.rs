//! What the replicated-Store tests share: the raft timing of their in-process members and the
//! waits for a leader and for members to catch up (`replicated.rs`, `membership.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use batchkv::{NodeConfig, Store, StoreError};

/// How long a wait for the cluster lasts before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A member's raft configuration: 20 ms ticks, elections in 10 ticks, heartbeats every 2, 3 s
/// for a request.
pub fn config(id: u64, peers: &[u64]) -> NodeConfig {
    let mut c = NodeConfig::new(id, peers);
    c.tick = Duration::from_millis(20);
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.request_timeout = Duration::from_secs(3);
    c
}

/// Errors a write gets for want of a leader (or of one that stayed): worth trying again.
pub fn retryable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NoLeader
            | StoreError::NotLeader { .. }
            | StoreError::LeaderLost
            | StoreError::Timeout
    )
}

/// Waits until one member of `among` leads and all of `among` follow it in its term.
pub fn wait_leader(stores: &BTreeMap<u64, Store>, among: &[u64]) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let st: Vec<_> = among
            .iter()
            .map(|id| stores[id].raft_status().expect("replicated"))
            .collect();
        let leaders: Vec<_> = st.iter().filter(|s| s.is_leader).collect();
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

/// Waits until every member of `among` applied everything committed before the call (a read
/// index from their leader covers every acknowledged write; a member's published status may
/// lag the answers it already gave).
pub fn wait_caught_up(stores: &BTreeMap<u64, Store>, among: &[u64]) {
    let deadline = Instant::now() + PATIENCE;
    let commit = loop {
        let leader = wait_leader(stores, among);
        match stores[&leader].read_barrier() {
            Ok(index) => break index,
            Err(e) => assert!(Instant::now() < deadline, "no read index: {e}"),
        }
    };
    while !among
        .iter()
        .all(|id| stores[id].raft_status().expect("replicated").applied >= commit)
    {
        assert!(
            Instant::now() < deadline,
            "{among:?} did not apply {commit}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

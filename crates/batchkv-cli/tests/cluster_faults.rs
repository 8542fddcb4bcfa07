//! The cluster fault run (issue 14) in its short setting: etcd clients (and etcdctl) load a
//! 3-member cluster on loopback while its leader is killed with SIGKILL and restarted; then
//! every acknowledged write, contiguous revisions, equal HashKV on every member and a
//! linearizable history are checked (see `batchkv_faults`). Against a real etcd 3.4 (which
//! proves the harness) and against a 3-member `batchkv serve` cluster, through the same
//! `batchkv_faults::Cluster` trait.
//!
//! `BATCHKV_FAULT_ROUNDS=N` runs N leader kills instead of 2; `cargo xtask faults` runs the
//! long campaign.

use batchkv_faults::{Config, run};
use batchkv_testkit::{Etcd, env_u64};

#[test]
fn etcd_survives_leader_kills_with_every_write_and_a_linearizable_history() {
    let rounds = env_u64("BATCHKV_FAULT_ROUNDS").map_or(2, |n| n as usize);
    let config = Config {
        rounds,
        seed: env_u64("BATCHKV_FAULT_SEED").unwrap_or(1),
        ..Config::default()
    };
    let mut etcd = Etcd::start_cluster(3);
    let report = run(&mut etcd, &config)
        .unwrap_or_else(|e| panic!("fault run (seed {}): {e:#}", config.seed));
    println!("{report}");
    assert_eq!(report.killed.len(), rounds);
    assert!(report.ok > 0 && report.revision > 1, "{report}");
    assert!(report.etcdctl_ops > 0, "etcdctl ran no command: {report}");
}

#[test]
fn batchkv_survives_leader_kills_with_every_write_and_a_linearizable_history() {
    let rounds = env_u64("BATCHKV_FAULT_ROUNDS").map_or(2, |n| n as usize);
    let config = Config {
        rounds,
        seed: env_u64("BATCHKV_FAULT_SEED").unwrap_or(1),
        ..Config::default()
    };
    let mut cluster = batchkv_testkit::BatchkvCluster::start(env!("CARGO_BIN_EXE_batchkv"), 3, &[]);
    let report = run(&mut cluster, &config)
        .unwrap_or_else(|e| panic!("fault run (seed {}): {e:#}", config.seed));
    println!("{report}");
    assert_eq!(report.killed.len(), rounds);
    assert!(report.ok > 0 && report.revision > 1, "{report}");
    assert!(report.etcdctl_ops > 0, "etcdctl ran no command: {report}");
}

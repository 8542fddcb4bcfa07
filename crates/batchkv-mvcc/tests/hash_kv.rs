//! `Mvcc::hash_kv` against a real etcd 3.4's `HashKV`: the same random history (puts, deletes,
//! prefix deletes, two-key txns, leased puts, revokes, compactions) goes to both; at points
//! along the way `etcdctl endpoint hashkv --rev=R` and `hash_kv(R)` must be the same number,
//! and so must `check()`'s digest after a reopen and in a checkpoint.

mod common;

use batchkv_codec::{Compact, DeleteRange, LeaseGrant, LeaseRevoke, Op, Put, Txn};
use batchkv_mvcc::{Mvcc, OpError};
use batchkv_testkit::{Etcd, Rng, env_u64, temp_dir};
use serde_json::Value;

/// etcd's `(hash, compact_revision)` at `rev` (0: current).
fn etcd_hash(etcd: &Etcd, rev: i64) -> (u32, i64) {
    let out = etcd.ctl_json(&["endpoint", "hashkv", &format!("--rev={rev}")], None);
    assert!(out.ok, "etcdctl endpoint hashkv failed: {}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("hashkv JSON");
    let h = &v[0]["HashKV"];
    let hash = h["hash"].as_u64().expect("hash") as u32;
    (hash, h["compact_revision"].as_i64().unwrap_or(0))
}

fn apply(m: &mut Mvcc, op: Op) {
    let index = m.applied_index() + 1;
    let applied = m.apply(index, &[op]).expect("entry commits");
    if let Some(Err(e)) = applied.results.first() {
        panic!("batchkv refused an op etcd took: {e}");
    }
}

#[test]
fn hash_kv_equals_etcds_for_the_same_history() {
    let seed = env_u64("BATCHKV_HASH_SEED").unwrap_or(0x4a5b_0001);
    eprintln!("seed {seed} (BATCHKV_HASH_SEED replays)");
    let mut rng = Rng(seed);
    let etcd = Etcd::start();
    let dir = temp_dir();
    let mut m = common::open(dir.path());
    let keys = ["a", "b", "c", "d/1", "d/2", "d/3", "e"];
    let mut leases: Vec<i64> = Vec::new();
    let mut compared = 0;
    for step in 0..160 {
        let key = keys[rng.below(keys.len())];
        let value = format!("v{}", rng.below(1000));
        match rng.below(20) {
            0..=7 => {
                assert!(etcd.ctl(&["put", key, &value], None).ok);
                apply(&mut m, Op::Put(Put::new(key, value)));
            }
            8..=9 => {
                assert!(etcd.ctl(&["del", key], None).ok);
                apply(&mut m, Op::DeleteRange(DeleteRange::key(key)));
            }
            10 => {
                assert!(etcd.ctl(&["del", "--prefix", "d/"], None).ok);
                apply(&mut m, Op::DeleteRange(DeleteRange::prefix("d/")));
            }
            11..=12 => {
                // Two puts at one revision: sub revisions 0 and 1.
                let other = keys[rng.below(keys.len())];
                if other == key {
                    continue;
                }
                let input = format!("\nput {key} {value}\nput {other} {value}\n\n\n");
                assert!(etcd.ctl(&["txn"], Some(input.as_bytes())).ok);
                apply(
                    &mut m,
                    Op::Txn(Txn {
                        compares: vec![],
                        success: vec![
                            Op::Put(Put::new(key, value.clone())),
                            Op::Put(Put::new(other, value)),
                        ],
                        failure: vec![],
                    }),
                );
            }
            13..=14 => {
                // etcd picks the id; batchkv is granted the same one.
                let out = etcd.ctl_json(&["lease", "grant", "600"], None);
                let v: Value = serde_json::from_str(&out.stdout).expect("grant JSON");
                let id = v["ID"].as_i64().expect("lease id");
                apply(&mut m, Op::LeaseGrant(LeaseGrant { id, ttl: 600 }));
                leases.push(id);
                let hex = format!("{id:x}");
                assert!(etcd.ctl(&["put", key, &value, "--lease", &hex], None).ok);
                apply(
                    &mut m,
                    Op::Put(Put {
                        lease: id,
                        ..Put::new(key, value)
                    }),
                );
            }
            15 if !leases.is_empty() => {
                let id = leases.swap_remove(rng.below(leases.len()));
                assert!(etcd.ctl(&["lease", "revoke", &format!("{id:x}")], None).ok);
                apply(&mut m, Op::LeaseRevoke(LeaseRevoke { id }));
            }
            16 => {
                let low = m.compacted_revision().unwrap_or(0) + 1;
                let current = m.current_revision();
                if low < current {
                    let at = low + rng.below((current - low) as usize) as i64;
                    assert!(etcd.ctl(&["compaction", &at.to_string()], None).ok);
                    apply(&mut m, Op::Compact(Compact { revision: at }));
                }
            }
            _ => {}
        }
        if step % 20 == 19 {
            let current = m.current_revision();
            let low = m.compacted_revision().unwrap_or(0) + 1;
            let at = low + rng.below((current - low + 1) as usize) as i64;
            for rev in [0, at] {
                let ours = m.hash_kv(rev).expect("hash_kv");
                let (theirs, compact) = etcd_hash(&etcd, rev);
                assert_eq!(
                    (ours.hash, ours.compact_revision),
                    (theirs, compact),
                    "seed {seed}, step {step}: hash at revision {rev} (current {current})"
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} hashes equal to etcd's");
    // A revision at or below the compacted one is refused, as etcd refuses it.
    if let Some(c) = m.compacted_revision() {
        assert!(matches!(
            m.hash_kv(c),
            Err(batchkv_mvcc::MvccError::Op(OpError::Compacted { .. }))
        ));
    }
    // The same digest after a reopen (index rebuilt from storage) and in a checkpoint, and the
    // full check passes on both.
    let before = m.hash_kv(0).expect("hash");
    let report = m.check().expect("check");
    assert_eq!(report.hash, before);
    let ckpt = dir.path().join("ckpt");
    m.engine().create_checkpoint(&ckpt).expect("checkpoint");
    drop(m);
    let m = common::open(dir.path());
    assert_eq!(m.hash_kv(0).expect("hash"), before);
    assert_eq!(m.check().expect("check after reopen").hash, before);
    let copy = common::open(&ckpt);
    assert_eq!(copy.check().expect("check of the checkpoint").hash, before);
}

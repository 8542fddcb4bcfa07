//! A 3-member `batchkv serve` cluster (processes on loopback, etcd's bootstrap flags) under
//! etcdctl 3.4:
//!
//! - every member answers as one cluster: MemberList names the three members with the ids
//!   etcd computes for the same flags, `endpoint status --cluster` finds them all under one
//!   leader and term, and a write on any member (a follower forwards it) is read back from
//!   every member, linearizable and serializable;
//! - the leader killed with SIGKILL: the other two elect a new leader and take writes, the
//!   killed member restarts from its data dir and catches up, and afterwards every member
//!   holds the same keys, the same revisions (contiguous) and the same HashKV;
//! - leases on followers: only the leader holds lease deadlines, and a follower forwards
//!   keep-alives and TimeToLive to it (as etcd does): a lease granted on one follower and kept
//!   alive only through another outlives its TTL many times over, one not kept alive expires
//!   and its key goes from every member.
//! - a leader stopped with SIGTERM hands its leadership to a follower first, as etcd's does;
//! - a member killed while the others write past several raft snapshots (`--snapshot-count`)
//!   is caught up by a snapshot when it restarts, and takes writes again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use batchkv_server::membership::{DEFAULT_CLUSTER_TOKEN, member_id};
use batchkv_testkit::{BatchkvCluster, BatchkvServer, CtlOutput};
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
/// How long a cluster may take to agree again (elect, catch up) before the test fails.
const SETTLE: Duration = Duration::from_secs(30);

fn b64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .expect("etcdctl's JSON has base64 bytes");
    String::from_utf8(bytes).expect("UTF-8 keys and values")
}

fn json(out: &CtlOutput, what: &str) -> Value {
    assert!(out.ok, "{what}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {out:?}"))
}

/// Every key with its value and mod revision, read from `member` (`consistency` "l" or "s").
fn contents(member: &BatchkvServer, consistency: &str) -> BTreeMap<String, (String, i64)> {
    let out = member.ctl_json(
        &[
            "get",
            "",
            "--prefix",
            &format!("--consistency={consistency}"),
        ],
        None,
    );
    let v = json(&out, "get everything");
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        b64(&kv["key"]),
                        (
                            b64(&kv["value"]),
                            kv["mod_revision"].as_i64().unwrap_or_default(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Retries `f` until it returns Some, for at most [`SETTLE`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < SETTLE, "{what}: not within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `etcdctl put` on `member`, retried while the cluster has no leader (a put that failed
/// ambiguously is retried with the same value: the key ends with it either way).
fn put(member: &BatchkvServer, key: &str, value: &str) {
    eventually(&format!("put {key} on {}", member.endpoint()), || {
        member.ctl(&["put", key, value], None).ok.then_some(())
    });
}

/// The member's (member_id, leader, raft_term, revision) from `endpoint status`.
fn status(member: &BatchkvServer) -> (u64, u64, u64, i64) {
    let v = json(
        &member.ctl_json(&["endpoint", "status"], None),
        "endpoint status",
    );
    let st = &v[0]["Status"];
    (
        st["header"]["member_id"].as_u64().unwrap_or_default(),
        st["leader"].as_u64().unwrap_or_default(),
        st["raftTerm"].as_u64().unwrap_or_default(),
        st["header"]["revision"].as_i64().unwrap_or_default(),
    )
}

/// HashKV of `member` at `revision`.
fn hash_kv(member: &BatchkvServer, revision: i64) -> u64 {
    let v = json(
        &member.ctl_json(&["endpoint", "hashkv", &format!("--rev={revision}")], None),
        "endpoint hashkv",
    );
    v[0]["HashKV"]["hash"].as_u64().expect("a hash")
}

#[test]
fn three_members_answer_as_one_cluster() {
    let cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    // MemberList: etcd's ids for these flags; every member's name and client URL once each
    // member has said who it is.
    let members = eventually("every member listed with its client URL", || {
        let v = json(
            &cluster.member(1).ctl_json(&["member", "list"], None),
            "member list",
        );
        let list = v["members"].as_array().cloned().unwrap_or_default();
        let complete = list.len() == 3
            && list
                .iter()
                .all(|m| m["name"].as_str().is_some() && m["clientURLs"].as_array().is_some());
        complete.then_some(list)
    });
    for m in &members {
        let peer: Vec<String> = m["peerURLs"]
            .as_array()
            .expect("peer URLs")
            .iter()
            .map(|u| u.as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            m["ID"].as_u64(),
            Some(member_id(&peer, DEFAULT_CLUSTER_TOKEN)),
            "{m}"
        );
        let client = m["clientURLs"][0].as_str().unwrap_or_default();
        let i = cluster
            .endpoints()
            .iter()
            .position(|e| client.ends_with(e.as_str()))
            .unwrap_or_else(|| panic!("{client} is no member's endpoint"));
        assert_eq!(m["name"].as_str(), Some(format!("n{}", i + 1).as_str()));
    }

    // One leader and term, seen by all.
    let statuses: Vec<_> = (0..3).map(|i| status(cluster.member(i))).collect();
    let (_, leader, term, _) = statuses[0];
    assert!(leader != 0, "{statuses:?}");
    for s in &statuses {
        assert_eq!((s.1, s.2), (leader, term), "{statuses:?}");
    }
    let ids: Vec<u64> = statuses.iter().map(|s| s.0).collect();
    assert!(
        ids.contains(&leader),
        "the leader {leader:x} is a member: {ids:x?}"
    );
    let cluster_status = cluster
        .member(2)
        .ctl_json(&["endpoint", "status", "--cluster"], None);
    let v = json(&cluster_status, "endpoint status --cluster");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");

    // A write on each member, the followers included, read back from every member.
    for i in 0..3 {
        put(cluster.member(i), &format!("k{i}"), &format!("v{i}"));
    }
    for i in 0..3 {
        let all = contents(cluster.member(i), "l");
        let want: Vec<(String, String)> =
            (0..3).map(|j| (format!("k{j}"), format!("v{j}"))).collect();
        let got: Vec<(String, String)> = all.into_iter().map(|(k, (v, _))| (k, v)).collect();
        assert_eq!(got, want, "member {i}, linearizable");
    }
    // Serializable reads are local: each member gets there once it applied the writes.
    let linear = contents(cluster.member(0), "l");
    for i in 0..3 {
        eventually(&format!("member {i} applied every write"), || {
            (contents(cluster.member(i), "s") == linear).then_some(())
        });
    }
}

#[test]
fn the_cluster_outlives_its_leader() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    for i in 0..10 {
        put(cluster.member(i % 3), &format!("before/{i}"), "x");
    }
    let old = eventually("a leader", || cluster.leader());
    cluster.member_mut(old).kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    for i in 0..10 {
        put(cluster.member(others[i % 2]), &format!("during/{i}"), "y");
    }
    let new = eventually("a new leader", || cluster.leader());
    assert_ne!(new, old, "a killed member cannot lead");

    cluster.member_mut(old).restart();
    for i in 0..10 {
        put(cluster.member(i % 3), &format!("after/{i}"), "z");
    }
    let want = contents(cluster.member(new), "l");
    assert_eq!(want.len(), 30, "{want:?}");
    // Revisions contiguous across the leader change: every revision after the first is one
    // put (a put retried after an ambiguous failure is a second version of its key).
    let rev = status(cluster.member(new)).3;
    let v = json(
        &cluster
            .member(new)
            .ctl_json(&["get", "", "--prefix", &format!("--rev={rev}")], None),
        "get at the current revision",
    );
    let versions: i64 = v["kvs"]
        .as_array()
        .expect("kvs")
        .iter()
        .map(|kv| kv["version"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(versions, rev - 1, "every revision 2..={rev} is one put");
    for i in 0..3 {
        eventually(&format!("member {i} caught up"), || {
            (contents(cluster.member(i), "s") == want).then_some(())
        });
    }
    let hashes: Vec<u64> = (0..3).map(|i| hash_kv(cluster.member(i), rev)).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

/// A leader stopped with SIGTERM hands its leadership to a follower before it exits (etcd's
/// transfer on stop), so the others need not wait out an election timeout: the member it names
/// leads after it, in a later term, and holds every write.
#[test]
fn a_stopped_leader_hands_over_its_leadership() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    for i in 0..6 {
        put(cluster.member(i % 3), &format!("k{i}"), "v");
    }
    let old = eventually("a leader", || cluster.leader());
    let (old_id, _, term, _) = status(cluster.member(old));
    let exit = cluster.member_mut(old).stop();
    assert!(exit.success(), "{exit}: {}", cluster.member(old).log_tail());
    let log = cluster.member(old).log_tail();
    let line = log
        .lines()
        .find(|l| l.contains("leadership transferred"))
        .unwrap_or_else(|| panic!("no transfer in the stopped leader's log:\n{log}"));
    let named = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("to="))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no transferee in {line:?}"));
    assert_ne!(named, old_id, "{line}");
    for i in (0..3).filter(|i| *i != old) {
        let (_, leader, now, _) = status(cluster.member(i));
        assert_eq!(
            leader, named,
            "member {i} follows the member the old leader named"
        );
        assert!(now > term, "member {i}: term {now}, before the stop {term}");
    }
    let survivor = (0..3).find(|i| *i != old).expect("another member");
    put(cluster.member(survivor), "after", "x");
    assert_eq!(contents(cluster.member(survivor), "l").len(), 7);
}

/// Starts `etcdctl lease keep-alive ID` against `member` (runs until killed).
fn keep_alive(member: &BatchkvServer, id: &str) -> std::process::Child {
    member
        .etcdctl()
        .args(["lease", "keep-alive", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start etcdctl lease keep-alive")
}

/// `lease timetolive ID --keys` on `member`: (ttl, granted ttl, keys).
fn time_to_live(member: &BatchkvServer, id: &str) -> (i64, i64, Vec<String>) {
    let v = json(
        &member.ctl_json(&["lease", "timetolive", id, "--keys"], None),
        "lease timetolive",
    );
    let keys = v["keys"]
        .as_array()
        .map(|ks| ks.iter().map(b64).collect())
        .unwrap_or_default();
    (
        v["ttl"].as_i64().expect("ttl"),
        v["granted-ttl"].as_i64().unwrap_or_default(),
        keys,
    )
}

#[test]
fn leases_kept_alive_through_followers() {
    let cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    let leader = eventually("a leader", || cluster.leader());
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (cluster.member(followers[0]), cluster.member(followers[1]));
    const TTL: i64 = 4;
    // Granted on a follower (a proposal, forwarded like any write).
    let grant = |name: &str| {
        let v = json(
            &f1.ctl_json(&["lease", "grant", &TTL.to_string()], None),
            "lease grant",
        );
        let id = format!("{:x}", v["ID"].as_i64().expect("a lease id"));
        let out = f1.ctl(&["put", name, "v", &format!("--lease={id}")], None);
        assert!(out.ok, "put {name} with lease {id}: {out:?}");
        id
    };
    let kept = grant("kept");
    let dropped = grant("dropped");
    // Kept alive through the other follower only (etcdctl's keep-alive stream).
    let mut renewer = keep_alive(f2, &kept);
    // A TimeToLive on each member, the followers' forwarded to the leader: the same lease.
    for i in 0..3 {
        let (ttl, granted, keys) = time_to_live(cluster.member(i), &kept);
        assert!(ttl > 0 && ttl <= TTL, "member {i}: ttl {ttl}");
        assert_eq!(
            (granted, keys),
            (TTL, vec!["kept".to_owned()]),
            "member {i}"
        );
    }
    // The lease not kept alive expires (the leader revokes it) and its key goes everywhere.
    for i in 0..3 {
        eventually(&format!("member {i} lost the expired lease's key"), || {
            (!contents(cluster.member(i), "s").contains_key("dropped")).then_some(())
        });
        assert_eq!(
            time_to_live(cluster.member(i), &dropped).0,
            -1,
            "member {i}"
        );
    }
    // By then the kept lease has lived past its TTL; keep going for three TTLs more.
    std::thread::sleep(Duration::from_secs(3 * TTL as u64));
    for i in 0..3 {
        let (ttl, granted, keys) = time_to_live(cluster.member(i), &kept);
        assert!(
            ttl > 0 && ttl <= TTL,
            "member {i}: the kept lease has ttl {ttl}"
        );
        assert_eq!(
            (granted, keys),
            (TTL, vec!["kept".to_owned()]),
            "member {i}"
        );
        assert!(
            contents(cluster.member(i), "l").contains_key("kept"),
            "member {i}"
        );
    }
    // A one-off keep-alive on a follower: the leader's answer (the whole TTL).
    let once = json(
        &f1.ctl_json(&["lease", "keep-alive", "--once", &kept], None),
        "lease keep-alive --once on a follower",
    );
    assert_eq!(once["TTL"].as_i64(), Some(TTL), "{once}");
    // An expired lease's keep-alive fails alike on a follower and on the leader.
    let errors: Vec<(i32, String)> = [f1, cluster.member(leader)]
        .iter()
        .map(|m| {
            let out = m.ctl(&["lease", "keep-alive", "--once", &dropped], None);
            let line = out
                .stderr
                .lines()
                .find(|l| l.starts_with("Error: "))
                .unwrap_or_default()
                .to_owned();
            (out.code, line)
        })
        .collect();
    assert_ne!(errors[0].0, 0, "{errors:?}");
    assert_eq!(errors[0], errors[1], "follower (left) and leader (right)");
    let _ = renewer.kill();
    let _ = renewer.wait();
    // No keep-alives now: the kept lease expires too.
    for i in 0..3 {
        eventually(&format!("member {i} lost the kept lease's key"), || {
            (!contents(cluster.member(i), "s").contains_key("kept")).then_some(())
        });
    }
}

/// Raft's log is the durable record (the MVCC's WriteBatches skip their fsync): members killed
/// with SIGKILL right after acknowledging writes come back with every one of them (replayed
/// from raft's log above the MVCC's applied index), and the same HashKV as the member that
/// stayed up.
#[test]
fn acknowledged_writes_survive_sigkill_of_two_members() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    let leader = eventually("a leader", || cluster.leader());
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let survivor = (0..3)
        .find(|i| *i != leader && *i != follower)
        .expect("a third member");
    let mut acked = BTreeMap::new();
    for i in 0..30 {
        // Acknowledged by the member written to once it applied the write.
        let at = if i % 2 == 0 { follower } else { leader };
        let (k, v) = (format!("acked/{i:02}"), format!("v{i}"));
        put(cluster.member(at), &k, &v);
        acked.insert(k, v);
    }
    cluster.member_mut(follower).kill();
    cluster.member_mut(leader).kill();
    cluster.member_mut(follower).restart();
    cluster.member_mut(leader).restart();
    let want = contents(cluster.member(survivor), "l");
    let got: BTreeMap<String, String> = want
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        got, acked,
        "the acknowledged writes, read after the restarts"
    );
    for i in 0..3 {
        eventually(&format!("member {i} replayed every write"), || {
            (contents(cluster.member(i), "s") == want).then_some(())
        });
    }
    let rev = status(cluster.member(survivor)).3;
    let hashes: Vec<u64> = (0..3).map(|i| hash_kv(cluster.member(i), rev)).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

#[test]
fn a_member_killed_past_several_snapshots_is_caught_up_by_one() {
    let extra = [
        "--snapshot-count=20".to_string(),
        "--experimental-snapshot-catchup-entries=5".to_string(),
    ];
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &extra);
    for i in 0..10 {
        put(cluster.member(i % 3), &format!("before/{i}"), "x");
    }
    let leader = eventually("a leader", || cluster.leader());
    let killed = (leader + 1) % 3;
    cluster.member_mut(killed).kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != killed).collect();
    // Far more entries than the others keep in their raft logs (20 + 5).
    for i in 0..100 {
        put(
            cluster.member(others[i % 2]),
            &format!("during/{i:03}"),
            "y",
        );
    }
    cluster.member_mut(killed).restart();
    // It takes writes again (forwarded to the leader), once it has caught up.
    for i in 0..5 {
        put(cluster.member(killed), &format!("after/{i}"), "z");
    }
    let now = eventually("a leader", || cluster.leader());
    let want = contents(cluster.member(now), "l");
    assert_eq!(want.len(), 115, "{want:?}");
    for i in 0..3 {
        eventually(&format!("member {i} caught up"), || {
            (contents(cluster.member(i), "s") == want).then_some(())
        });
    }
    let rev = status(cluster.member(now)).3;
    let hashes: Vec<u64> = (0..3).map(|i| hash_kv(cluster.member(i), rev)).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    // The log it needed was gone: it installed a snapshot.
    let log = std::fs::read_to_string(cluster.member(killed).scratch_dir().join("serve.log"))
        .expect("the member's log");
    assert!(
        log.contains("raft snapshot installed"),
        "member {killed} caught up without a snapshot:\n{}",
        cluster.member(killed).log_tail()
    );
}

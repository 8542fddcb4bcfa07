//! The etcd launcher against the real etcd: one member, a three-member cluster that replicates,
//! a member killed with SIGKILL and restarted from its data dir, and nothing left running after
//! a drop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchkv_testkit::{Etcd, endpoint_health};

fn healthy(endpoint: &str) -> bool {
    endpoint_health(endpoint).status.success()
}

/// A serializable read of `key` from one member's own copy (no round trip to the leader).
fn local_value(etcd: &Etcd, member: usize, key: &str) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints()[member]))
        .args(["get", key, "--consistency=s", "--print-value-only"])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl get");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_single_member_answers_and_is_gone_after_drop() {
    let etcd = Etcd::start();
    assert_eq!(etcd.members(), 1);
    assert_eq!(etcd.endpoints(), [etcd.endpoint()]);
    let put = etcd.ctl(&["put", "k", "v1"], None);
    assert!(put.ok, "{}", put.stderr);
    assert_eq!(put.stdout.trim(), "OK");
    let got = etcd.ctl_json(&["get", "k"], None);
    assert!(got.ok, "{}", got.stderr);
    // base64("k") and base64("v1"); a fresh etcd is at revision 1, the put made 2.
    assert!(got.stdout.contains(r#""key":"aw==""#), "{}", got.stdout);
    assert!(got.stdout.contains(r#""value":"djE=""#), "{}", got.stdout);
    assert!(got.stdout.contains(r#""revision":2"#), "{}", got.stdout);
    // stdin reaches etcdctl (a txn reads its compares, success and failure ops from it, each
    // list ended by an empty line).
    let txn = etcd.ctl(&["txn"], Some(b"\nput k2 v2\n\n\n"));
    assert!(txn.ok, "{}", txn.stderr);
    assert!(txn.stdout.starts_with("SUCCESS"), "{}", txn.stdout);
    let refused = etcd.ctl(&["get", ""], None);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("key is not provided"),
        "{}",
        refused.stderr
    );

    let endpoint = etcd.endpoint().to_owned();
    assert!(healthy(&endpoint));
    drop(etcd);
    assert!(
        !healthy(&endpoint),
        "etcd still answers at {endpoint} after drop"
    );
}

#[test]
fn a_three_member_cluster_becomes_healthy_and_replicates_a_put() {
    let etcd = Etcd::start_cluster(3);
    assert_eq!(etcd.members(), 3);
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| e.to_string()).collect();
    for (i, e) in endpoints.iter().enumerate() {
        assert!(!endpoints[..i].contains(e), "{endpoints:?}");
        assert!(healthy(e), "member at {e}");
    }
    let members = etcd.ctl(&["member", "list"], None);
    assert!(members.ok, "{}", members.stderr);
    assert_eq!(members.stdout.lines().count(), 3, "{}", members.stdout);
    for i in 0..3 {
        assert!(
            members
                .stdout
                .contains(&format!(", m{i}, http://127.0.0.1:")),
            "{}",
            members.stdout
        );
    }

    // Write through the first member only; every member's own copy gets it.
    let put = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints[0]))
        .args(["put", "replicated", "yes"])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl put");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    for member in 0..3 {
        // A follower applies the committed entry shortly after the leader answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut value = local_value(&etcd, member, "replicated");
        while value != "yes" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            value = local_value(&etcd, member, "replicated");
        }
        assert_eq!(
            value,
            "yes",
            "member {member} (log:\n{})",
            etcd.log_tail(member)
        );
    }

    drop(etcd);
    for e in &endpoints {
        assert!(!healthy(e), "a member still answers at {e} after drop");
    }
}

#[test]
fn a_killed_member_restarts_from_its_data_dir_and_catches_up() {
    let mut etcd = Etcd::start_cluster(3);
    assert!(etcd.ctl(&["put", "before", "1"], None).ok);
    let endpoint = etcd.endpoints()[1].to_owned();
    etcd.kill(1);
    assert!(!etcd.is_running(1));
    assert!(!healthy(&endpoint), "a killed member still answers");
    // The other two keep the quorum: writes go on while it is down. If it was the leader, a
    // put during the election may time out (etcd's "request timed out", ambiguous): retried
    // with the same value until the new leader takes it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut put = etcd.ctl(&["put", "during", "2"], None);
    while !put.ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        put = etcd.ctl(&["put", "during", "2"], None);
    }
    assert!(put.ok, "{}", put.stderr);
    etcd.restart(1);
    assert!(etcd.is_running(1));
    assert_eq!(etcd.endpoints()[1], endpoint, "same ports after a restart");
    // Its own data (the earlier put) and what it missed, read from its own copy: healthy means
    // it answered a linearizable read, so it has applied the put it missed.
    assert_eq!(local_value(&etcd, 1, "before"), "1");
    assert_eq!(local_value(&etcd, 1, "during"), "2");
}

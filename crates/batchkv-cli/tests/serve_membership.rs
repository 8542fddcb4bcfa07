//! Membership changes of a `batchkv serve` cluster (processes on loopback) under etcdctl 3.4,
//! etcd's workflow: `etcdctl member add n4 --peer-urls=...` prints the new member's
//! `ETCD_INITIAL_CLUSTER`; n4 starts with it and `--initial-cluster-state existing`, learns
//! its id from the running cluster and catches up from the leader's log (HashKV equal);
//! `member list` shows it unstarted, then started; `member remove` takes a member out (the
//! removed process stops itself); a learner is added, refused promotion while it is behind,
//! and promoted once it caught up. Error texts are etcd's (checked against a real etcd 3.4:
//! `etcdserver: member not found`, `etcdserver: Peer URLs already exists`, ...).

use std::time::{Duration, Instant};

use batchkv_testkit::{BatchkvCluster, BatchkvServer, CtlOutput};
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
const SETTLE: Duration = Duration::from_secs(30);

fn json(out: &CtlOutput, what: &str) -> Value {
    assert!(out.ok, "{what}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {out:?}"))
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < SETTLE, "{what}: not within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn put(member: &BatchkvServer, key: &str, value: &str) {
    eventually(&format!("put {key} on {}", member.endpoint()), || {
        member.ctl(&["put", key, value], None).ok.then_some(())
    });
}

/// `member list -w json`'s members.
fn members(member: &BatchkvServer) -> Vec<Value> {
    json(&member.ctl_json(&["member", "list"], None), "member list")["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The member listed with peer URL `url`.
fn listed<'a>(list: &'a [Value], url: &str) -> Option<&'a Value> {
    list.iter().find(|m| {
        m["peerURLs"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u == url))
    })
}

/// HashKV of `member` at `revision`.
fn hash_kv(member: &BatchkvServer, revision: i64) -> u64 {
    let v = json(
        &member.ctl_json(&["endpoint", "hashkv", &format!("--rev={revision}")], None),
        "endpoint hashkv",
    );
    v[0]["HashKV"]["hash"].as_u64().expect("a hash")
}

fn revision(member: &BatchkvServer) -> i64 {
    let v = json(
        &member.ctl_json(&["endpoint", "status"], None),
        "endpoint status",
    );
    v[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("a revision")
}

/// Every running member among `members` has applied up to `rev` and holds the same history.
fn same_history(cluster: &BatchkvCluster, among: &[usize]) {
    put(cluster.member(among[0]), "sync", "x");
    let rev = revision(cluster.member(among[0]));
    let want = hash_kv(cluster.member(among[0]), rev);
    for &i in among {
        eventually(&format!("member {i} caught up to {rev}"), || {
            (revision(cluster.member(i)) >= rev && hash_kv(cluster.member(i), rev) == want)
                .then_some(())
        });
    }
}

/// `member add`'s simple output: the new member's id, and its ETCD_* lines.
fn parse_add(out: &CtlOutput) -> (u64, Vec<(String, String)>) {
    assert!(out.ok, "member add: {out:?}");
    let first = out.stdout.lines().next().unwrap_or_default();
    let id = first
        .strip_prefix("Member ")
        .and_then(|r| r.split(' ').next())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("member add printed {:?}", out.stdout));
    assert!(first.contains(" added to cluster "), "{first}");
    let vars = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    (id, vars)
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> &'a str {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {vars:?}"))
}

#[test]
fn etcdctl_adds_a_member_that_joins_and_removes_members() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    for i in 0..30 {
        put(cluster.member(i % 3), &format!("pre/{i:02}"), "v");
    }
    let url = format!("http://127.0.0.1:{}", batchkv_testkit::free_port());

    // member add, on a follower or the leader alike.
    let out = cluster.member(1).ctl(
        &["member", "add", "n4", &format!("--peer-urls={url}")],
        None,
    );
    let (id, vars) = parse_add(&out);
    assert_eq!(var(&vars, "ETCD_NAME"), "n4");
    assert_eq!(var(&vars, "ETCD_INITIAL_ADVERTISE_PEER_URLS"), url);
    assert_eq!(var(&vars, "ETCD_INITIAL_CLUSTER_STATE"), "existing");
    let initial = var(&vars, "ETCD_INITIAL_CLUSTER").to_owned();
    assert_eq!(initial.split(',').count(), 4, "{initial}");
    assert!(initial.contains(&format!("n4={url}")), "{initial}");
    // Listed, unstarted: no name, no client URLs (as etcd lists it).
    let list = members(cluster.member(0));
    assert_eq!(list.len(), 4);
    let new = listed(&list, &url).expect("the new member is listed");
    assert_eq!(new["ID"].as_u64(), Some(id));
    assert!(
        new.get("name").is_none() && new.get("clientURLs").is_none(),
        "{new}"
    );
    // The same peer URL again: etcd's refusal.
    let again = cluster.member(0).ctl(
        &["member", "add", "n5", &format!("--peer-urls={url}")],
        None,
    );
    assert!(!again.ok);
    assert!(
        again
            .stderr
            .contains("Error: etcdserver: Peer URLs already exists"),
        "{again:?}"
    );

    // n4 joins with the printed flags and catches up from the leader's log, under writes.
    let n4 = cluster.join("n4", &url, &initial);
    for i in 0..10 {
        put(cluster.member(i % 4), &format!("joined/{i:02}"), "w");
    }
    same_history(&cluster, &[0, 1, 2, n4]);
    let list = eventually("n4 listed as started", || {
        let list = members(cluster.member(0));
        listed(&list, &url)
            .is_some_and(|m| m["name"] == "n4" && m["clientURLs"].is_array())
            .then_some(list)
    });
    assert_eq!(list.len(), 4);
    let simple = cluster.member(n4).ctl(&["member", "list"], None);
    assert!(
        simple
            .stdout
            .contains(&format!("{id:x}, started, n4, {url}, ")),
        "{simple:?}"
    );

    // Remove a follower that is not n4: the cluster goes on with three; the removed
    // process stops itself.
    let leader = eventually("a leader", || cluster.leader());
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let victim_id = json(
        &cluster
            .member(victim)
            .ctl_json(&["endpoint", "status"], None),
        "status",
    )[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member id");
    let out = cluster
        .member(leader)
        .ctl(&["member", "remove", &format!("{victim_id:x}")], None);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("Member {victim_id:x} removed from cluster ")),
        "{out:?}"
    );
    eventually("the removed member stops", || {
        cluster.member_mut(victim).try_exited().then_some(())
    });
    let rest: Vec<usize> = [0, 1, 2, n4].into_iter().filter(|i| *i != victim).collect();
    assert_eq!(members(cluster.member(rest[0])).len(), 3);
    let gone = cluster
        .member(rest[0])
        .ctl(&["member", "remove", &format!("{victim_id:x}")], None);
    assert!(
        gone.stderr.contains("Error: etcdserver: member not found"),
        "{gone:?}"
    );
    for i in 0..10 {
        put(cluster.member(rest[i % 3]), &format!("after/{i:02}"), "z");
    }
    same_history(&cluster, &rest);
}

#[test]
fn etcdctl_adds_a_learner_and_promotes_it_once_caught_up() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    for i in 0..30 {
        put(cluster.member(i % 3), &format!("k/{i:02}"), "v");
    }
    let url = format!("http://127.0.0.1:{}", batchkv_testkit::free_port());
    let out = cluster.member(0).ctl(
        &[
            "member",
            "add",
            "n4",
            "--learner",
            &format!("--peer-urls={url}"),
        ],
        None,
    );
    let (id, vars) = parse_add(&out);
    let list = members(cluster.member(0));
    assert_eq!(
        listed(&list, &url).map(|m| m["isLearner"].clone()),
        Some(Value::Bool(true))
    );
    // etcd 3.4 takes one learner at a time.
    let second = cluster.member(0).ctl(
        &[
            "member",
            "add",
            "n5",
            "--learner",
            &format!(
                "--peer-urls=http://127.0.0.1:{}",
                batchkv_testkit::free_port()
            ),
        ],
        None,
    );
    assert!(
        second
            .stderr
            .contains("Error: etcdserver: too many learner members in cluster"),
        "{second:?}"
    );
    // Not started: far behind the leader, promotion refused with etcd's text.
    let leader = eventually("a leader", || cluster.leader());
    let early = cluster
        .member(leader)
        .ctl(&["member", "promote", &format!("{id:x}")], None);
    assert!(
        early.stderr.contains(
            "Error: etcdserver: can only promote a learner member which is in sync with leader"
        ),
        "{early:?}"
    );
    let n4 = cluster.join("n4", &url, var(&vars, "ETCD_INITIAL_CLUSTER"));
    same_history(&cluster, &[0, 1, 2, n4]);
    let promoted = eventually("the learner promoted", || {
        let leader = cluster.leader()?;
        let out = cluster
            .member(leader)
            .ctl(&["member", "promote", &format!("{id:x}")], None);
        out.ok.then_some(out)
    });
    assert!(
        promoted
            .stdout
            .starts_with(&format!("Member {id:x} promoted in cluster ")),
        "{promoted:?}"
    );
    let list = members(cluster.member(n4));
    assert!(
        list.iter().all(|m| m.get("isLearner").is_none()),
        "{list:?}"
    );
    // A voter cannot be promoted.
    let leader = eventually("a leader", || cluster.leader());
    let voter = cluster
        .member(leader)
        .ctl(&["member", "promote", &format!("{id:x}")], None);
    assert!(
        voter
            .stderr
            .contains("Error: etcdserver: can only promote a learner member"),
        "{voter:?}"
    );
    // A four-voter cluster: it still writes with one member down.
    cluster.member_mut(0).kill();
    put(cluster.member(n4), "with-three-of-four", "x");
    same_history(&cluster, &[1, 2, n4]);
}

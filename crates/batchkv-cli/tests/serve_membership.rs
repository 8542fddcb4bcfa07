//! Membership changes of a `batchkv serve` cluster (processes on loopback) under etcdctl 3.4,
//! etcd's workflow: `etcdctl member add n4 --peer-urls=...` prints the new member's
//! `ETCD_INITIAL_CLUSTER`; n4 starts with it and `--initial-cluster-state existing`, learns
//! its id from the running cluster and catches up from the leader's log (HashKV equal);
//! `member list` shows it unstarted, then started; `member remove` takes a member out (the
//! removed process stops itself); a learner is added, refused promotion while it is behind,
//! and promoted once it caught up (asked of a follower, which forwards it to the leader). Error texts are etcd's (checked against a real etcd 3.4:
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
    // etcdctl prints the id with `%16x`: padded with spaces to 16 characters.
    let id = first
        .strip_prefix("Member ")
        .and_then(|r| r.split_whitespace().next())
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

    // A member that was never added cannot join: no member has its peer URL.
    let stray = format!("http://127.0.0.1:{}", batchkv_testkit::free_port());
    let dir = batchkv_testkit::temp_dir();
    let refused = std::process::Command::new(BATCHKV)
        .args([
            "serve".to_owned(),
            format!("--data-dir={}", dir.path().join("data").display()),
            "--name=n9".to_owned(),
            format!("--initial-cluster={initial},n9={stray}"),
            "--initial-cluster-state=existing".to_owned(),
            format!("--initial-advertise-peer-urls={stray}"),
            format!("--listen-peer-urls={stray}"),
            format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                batchkv_testkit::free_port()
            ),
        ])
        .output()
        .expect("run batchkv serve");
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            "error validating peerURLs: no member of the running cluster has the peer URLs"
        ),
        "{err}"
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

    // Restarted, n4 knows who it is (its id was learned from the cluster, not computed).
    cluster.member_mut(n4).kill();
    cluster.member_mut(n4).restart();
    put(cluster.member(n4), "n4-restarted", "y");
    same_history(&cluster, &[0, 1, 2, n4]);
    let status = json(
        &cluster.member(n4).ctl_json(&["endpoint", "status"], None),
        "status",
    );
    assert_eq!(
        status[0]["Status"]["header"]["member_id"].as_u64(),
        Some(id)
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
            .starts_with(&format!("Member {victim_id:>16x} removed from cluster ")),
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
    // A learner's URLs updated (to the same ones): still a learner.
    let updated = cluster.member(2).ctl(
        &[
            "member",
            "update",
            &format!("{id:x}"),
            &format!("--peer-urls={url}"),
        ],
        None,
    );
    assert!(
        updated
            .stdout
            .starts_with(&format!("Member {id:>16x} updated in cluster ")),
        "{updated:?}"
    );
    let list = members(cluster.member(1));
    assert_eq!(
        listed(&list, &url).map(|m| m["isLearner"].clone()),
        Some(Value::Bool(true))
    );
    // Not started: far behind the leader, promotion refused with etcd's text (asked of a
    // follower: forwarded to the leader, which alone knows how far the learner is).
    let leader = eventually("a leader", || cluster.leader());
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let early = cluster
        .member(follower)
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
        let out = cluster
            .member(follower)
            .ctl(&["member", "promote", &format!("{id:x}")], None);
        out.ok.then_some(out)
    });
    assert!(
        promoted
            .stdout
            .starts_with(&format!("Member {id:>16x} promoted in cluster ")),
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

/// A member added after the cluster started, then made its leader with `etcdctl move-leader`
/// (Maintenance MoveLeader: raft's leadership transfer), is where the old members forward
/// lease keep-alives and TimeToLive: their peer clients follow the live membership, not
/// `--initial-cluster`. MoveLeader's refusals are etcd's.
#[test]
fn a_joined_member_made_leader_serves_the_forwarded_lease_requests() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    put(cluster.member(0), "pre", "v");
    let url = format!("http://127.0.0.1:{}", batchkv_testkit::free_port());
    let out = cluster.member(0).ctl(
        &["member", "add", "n4", &format!("--peer-urls={url}")],
        None,
    );
    let (id, vars) = parse_add(&out);
    let n4 = cluster.join("n4", &url, var(&vars, "ETCD_INITIAL_CLUSTER"));
    same_history(&cluster, &[0, 1, 2, n4]);

    let all = format!("--endpoints={}", cluster.endpoints().join(","));
    // Not a member: etcd's refusal.
    let bad = cluster
        .member(0)
        .ctl(&[all.as_str(), "move-leader", "1234"], None);
    assert!(
        bad.stderr
            .contains("Error: etcdserver: bad leader transferee"),
        "{bad:?}"
    );
    let moved = eventually("leadership moved to n4", || {
        let out = cluster
            .member(0)
            .ctl(&[all.as_str(), "move-leader", &format!("{id:x}")], None);
        out.ok.then_some(out)
    });
    assert!(
        moved.stdout.starts_with("Leadership transferred from ")
            && moved.stdout.trim_end().ends_with(&format!(" to {id:x}")),
        "{moved:?}"
    );
    eventually("n4 leads", || (cluster.leader() == Some(n4)).then_some(()));
    // Already the leader: a transfer to itself succeeds at once (as etcd's does).
    let again = cluster
        .member(1)
        .ctl(&[all.as_str(), "move-leader", &format!("{id:x}")], None);
    assert!(again.ok, "{again:?}");

    // A lease granted on an old member (forwarded as a proposal), kept alive and asked about on
    // the old members: both forwarded to n4, the leader they were never told of at start.
    let granted = cluster.member(1).ctl(&["lease", "grant", "60"], None);
    assert!(granted.ok, "{granted:?}");
    let lease = granted
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    for i in [0, 1, 2] {
        let kept = cluster
            .member(i)
            .ctl(&["lease", "keep-alive", "--once", &lease], None);
        assert!(kept.ok, "member {i}: {kept:?}");
        assert!(
            kept.stdout
                .contains(&format!("lease {lease} keepalived with TTL(60)")),
            "member {i}: {kept:?}"
        );
        let ttl = json(
            &cluster
                .member(i)
                .ctl_json(&["lease", "timetolive", &lease], None),
            "lease timetolive",
        );
        assert_eq!(ttl["granted-ttl"].as_i64(), Some(60), "member {i}: {ttl}");
        assert!(
            ttl["ttl"].as_i64().is_some_and(|t| t > 0),
            "member {i}: {ttl}"
        );
    }
    assert_eq!(cluster.leader(), Some(n4));
}

/// `etcdctl member update`: against a 3-member etcd 3.4 and a 3-member batchkv cluster, the
/// same outputs and refusals (an unknown member, another member's URL); the new URLs listed by
/// every member, and the cluster writing on.
#[test]
fn etcdctl_member_update_matches_etcd() {
    let etcd = batchkv_testkit::Etcd::start_cluster(3);
    let cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    put(cluster.member(0), "pre", "v");

    // (id, first peer URL) of each member, as `member list` gives them.
    let urls = |list: &[Value]| -> Vec<(u64, String)> {
        list.iter()
            .map(|m| {
                (
                    m["ID"].as_u64().expect("id"),
                    m["peerURLs"][0].as_str().expect("a peer URL").to_owned(),
                )
            })
            .collect()
    };
    let etcd_members = urls(
        json(
            &etcd.ctl_json(&["member", "list"], None),
            "etcd member list",
        )["members"]
            .as_array()
            .expect("members"),
    );
    let ours = urls(&members(cluster.member(0)));
    let run_both = |args: &[String]| {
        let theirs = etcd.ctl(args, None);
        let mine = cluster.member(1).ctl(args, None);
        (theirs, mine)
    };
    // The id of the cluster, as `member update` prints it.
    let strip_ids = |s: &str| -> String {
        s.split_whitespace()
            .filter(|w| u64::from_str_radix(w, 16).is_err())
            .collect::<Vec<_>>()
            .join(" ")
    };

    // An unknown member.
    let args = |id: u64, urls: &str| {
        vec![
            "member".to_owned(),
            "update".to_owned(),
            format!("{id:x}"),
            format!("--peer-urls={urls}"),
        ]
    };
    let (theirs, mine) = run_both(&args(0x1234, "http://127.0.0.1:1"));
    assert!(!theirs.ok && !mine.ok);
    assert_eq!(theirs.code, mine.code);
    assert!(
        theirs
            .stderr
            .contains("Error: etcdserver: member not found"),
        "{theirs:?}"
    );
    assert!(
        mine.stderr.contains("Error: etcdserver: member not found"),
        "{mine:?}"
    );

    // Another member's URL.
    let theirs = etcd.ctl(&args(etcd_members[0].0, &etcd_members[1].1), None);
    let mine = cluster.member(1).ctl(&args(ours[0].0, &ours[1].1), None);
    assert!(!theirs.ok && !mine.ok);
    assert_eq!(theirs.code, mine.code);
    for out in [&theirs, &mine] {
        assert!(
            out.stderr
                .contains("Error: etcdserver: Peer URLs already exists"),
            "{out:?}"
        );
    }

    // A second URL for member 0 (its first stays, so its traffic goes on).
    let extra = |first: &str| format!("{first},http://127.0.0.1:{}", batchkv_testkit::free_port());
    let etcd_new = extra(&etcd_members[0].1);
    let our_new = extra(&ours[0].1);
    let theirs = etcd.ctl(&args(etcd_members[0].0, &etcd_new), None);
    let mine = cluster.member(1).ctl(&args(ours[0].0, &our_new), None);
    assert!(theirs.ok, "{theirs:?}");
    assert!(mine.ok, "{mine:?}");
    assert_eq!(strip_ids(&theirs.stdout), strip_ids(&mine.stdout));
    assert!(
        mine.stdout
            .starts_with(&format!("Member {:>16x} updated in cluster ", ours[0].0)),
        "{mine:?}"
    );
    let want: Vec<String> = our_new.split(',').map(str::to_owned).collect();
    for i in 0..3 {
        eventually(&format!("member {i} lists the new URLs"), || {
            let list = members(cluster.member(i));
            let m = list.iter().find(|m| m["ID"].as_u64() == Some(ours[0].0))?;
            (m["peerURLs"] == serde_json::json!(want)).then_some(())
        });
    }
    let etcd_list = json(
        &etcd.ctl_json(&["member", "list"], None),
        "etcd member list",
    )["members"]
        .clone();
    let updated = etcd_list
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|m| m["ID"].as_u64() == Some(etcd_members[0].0))
        })
        .cloned()
        .expect("the updated etcd member");
    assert_eq!(updated["peerURLs"].as_array().map(Vec::len), Some(2));
    // The member's own URLs again: allowed (only another member's are refused).
    let mine = cluster.member(2).ctl(&args(ours[0].0, &ours[0].1), None);
    assert!(mine.ok, "{mine:?}");
    for i in 0..3 {
        put(cluster.member(i), &format!("after/{i}"), "w");
    }
    same_history(&cluster, &[0, 1, 2]);
}

/// Sends `signal` (`STOP`, `CONT`) to `member`'s process.
fn signal(member: &BatchkvServer, signal: &str) {
    let pid = member.pid().expect("a running member");
    let ok = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A member frozen (SIGSTOP) while it is removed never applies its removal; resumed, it
/// campaigns, the others refuse its traffic as a removed member's (etcd's peers answer it
/// "removed"), and it stops with etcd's text. The others write on.
#[test]
fn a_member_cut_off_during_its_removal_is_told_and_stops() {
    let mut cluster = BatchkvCluster::start(BATCHKV, 3, &[]);
    for i in 0..10 {
        put(cluster.member(i % 3), &format!("pre/{i}"), "v");
    }
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
    signal(cluster.member(victim), "STOP");
    let out = cluster
        .member(leader)
        .ctl(&["member", "remove", &format!("{victim_id:x}")], None);
    assert!(out.ok, "{out:?}");
    let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    // Past the ticks the leader tells a removed member of its removal.
    for i in 0..20 {
        put(cluster.member(rest[i % 2]), &format!("during/{i:02}"), "w");
    }
    std::thread::sleep(Duration::from_secs(3));
    signal(cluster.member(victim), "CONT");
    eventually("the removed member stops", || {
        cluster.member_mut(victim).try_exited().then_some(())
    });
    let log = cluster.member(victim).log_tail();
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{log}"
    );
    for i in 0..10 {
        put(cluster.member(rest[i % 2]), &format!("after/{i}"), "z");
    }
    same_history(&cluster, &rest);
    assert_eq!(members(cluster.member(rest[0])).len(), 2);
}

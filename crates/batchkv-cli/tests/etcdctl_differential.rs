//! etcdctl 3.4 over gRPC against `batchkv serve` and against a real etcd 3.4, side by side:
//! every test starts both on free loopback ports (testkit's [`BatchkvServer`] and [`Etcd`]),
//! runs the same etcdctl command lines (`-w json`) on both and compares the whole JSON, after
//! [`normalize`] (the ids and cluster fields, and batchkv's deliberate differences, each with
//! its reason, all in that one function). Errors: the same exit code and the same `Error: ...`
//! line. Streams (a live `watch`, `lease keep-alive`) are read until a sentinel or a count,
//! then stopped, and their responses compared. [`random_history`] runs a seeded random
//! sequence of puts, deletes, reads, txns and compactions (`BATCHKV_SERVE_DIFF_SEED`,
//! `BATCHKV_SERVE_DIFF_OPS`) and then compares whole ranges at several revisions.
//!
//! The same scripts run against 3-member clusters too (the `cluster_*` tests: a real etcd
//! cluster and a `batchkv serve` cluster, testkit's `Etcd::start_cluster` and
//! [`BatchkvCluster`]), with etcdctl given all three endpoints, so its requests reach the
//! followers (which forward writes, lease keep-alives and TimeToLive to the leader, and read
//! linearizably through raft's ReadIndex): the answers must be the same, after the same
//! normalisation (a header's member id and raft term are dropped on both sides).
//!
//! Debugging the comparisons themselves: `BATCHKV_DIFF_SUBJECT=etcd` puts a second real etcd
//! where batchkv would be (everything must then pass; the restart steps, batchkv's own, are
//! left out).
//!
//! etcd, etcdctl (`cargo xtask doctor` installs them) and the `batchkv` binary are needed; a
//! machine without them fails these tests, never skips them.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use batchkv_testkit::keyspace::{BOUNDS, KEYS, ORDERS, PREFIXES, SORT_TARGETS, VALUES};
use batchkv_testkit::{
    BatchkvCluster, BatchkvServer, Etcd, Rng, ServeOptions, env_u64, shell_words,
};
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
/// batchkv's member name: the testkit's etcd calls its single member `m0`.
const MEMBER_NAME: &str = "m0";

// ---------------------------------------------------------------------------------------------
// The two servers.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Etcd,
    Batchkv,
}

const SIDES: [Side; 2] = [Side::Etcd, Side::Batchkv];

/// How many members each side has: one (a single `batchkv serve`, a single-member etcd) or
/// three (a cluster on each side; etcdctl gets every member's endpoint).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Members {
    One,
    Three,
}

impl Members {
    fn count(self) -> usize {
        match self {
            Members::One => 1,
            Members::Three => 3,
        }
    }
}

/// What stands where batchkv is compared: `batchkv serve` (one, or a cluster), or (to debug
/// this test) an etcd.
#[derive(Debug)]
enum Subject {
    Batchkv(BatchkvServer),
    Cluster(BatchkvCluster),
    Etcd(Etcd),
}

impl Subject {
    fn start(members: Members) -> Subject {
        match (std::env::var("BATCHKV_DIFF_SUBJECT").as_deref(), members) {
            (Ok("etcd"), m) => Subject::Etcd(Etcd::start_cluster(m.count())),
            (Ok("batchkv") | Err(_), Members::One) => Subject::Batchkv(BatchkvServer::start_with(
                BATCHKV,
                ServeOptions {
                    args: vec![format!("--name={MEMBER_NAME}")],
                    ..ServeOptions::default()
                },
            )),
            (Ok("batchkv") | Err(_), m) => {
                Subject::Cluster(BatchkvCluster::start(BATCHKV, m.count(), &[]))
            }
            (Ok(other), _) => panic!("BATCHKV_DIFF_SUBJECT={other:?}: batchkv or etcd"),
        }
    }

    /// etcdctl's `--endpoints`: every member's.
    fn endpoints(&self) -> String {
        match self {
            Subject::Batchkv(s) => s.endpoint(),
            Subject::Cluster(c) => c.endpoints().join(","),
            Subject::Etcd(e) => e.endpoints().join(","),
        }
    }
}

/// What one etcdctl call printed.
#[derive(Debug, Clone)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// etcdctl's `Error: ...` line (it also logs a JSON warning line on stderr).
    fn error_line(&self) -> Option<&str> {
        self.stderr.lines().find(|l| l.starts_with("Error: "))
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (stderr {:?})",
                self.stdout, self.stderr
            )
        })
    }
}

/// A lease granted on both sides: its name in the tests (`{NAME}` in arguments) and each
/// side's id.
#[derive(Debug)]
struct Lease {
    name: String,
    etcd: i64,
    batchkv: i64,
}

/// A fresh etcd and a fresh batchkv, side by side.
#[derive(Debug)]
struct Pair {
    etcd: Etcd,
    subject: Subject,
    leases: Vec<Lease>,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(Members::One)
    }

    /// An etcd and a batchkv of `members` members each.
    fn with(members: Members) -> Pair {
        let (etcd, subject) = std::thread::scope(|s| {
            let etcd = s.spawn(move || Etcd::start_cluster(members.count()));
            let subject = Subject::start(members);
            (etcd.join().expect("start etcd"), subject)
        });
        Pair {
            etcd,
            subject,
            leases: Vec::new(),
        }
    }

    /// etcdctl's `--endpoints` for one side (every member's, comma-separated).
    fn endpoint(&self, side: Side) -> String {
        match side {
            Side::Etcd => self.etcd.endpoints().join(","),
            Side::Batchkv => self.subject.endpoints(),
        }
    }

    fn batchkv(&mut self) -> Option<&mut BatchkvServer> {
        match &mut self.subject {
            Subject::Batchkv(s) => Some(s),
            Subject::Cluster(_) | Subject::Etcd(_) => None,
        }
    }

    /// `etcdctl -w FORMAT --command-timeout=30s` aimed at one side.
    fn etcdctl(&self, side: Side, format: &str) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint(side)))
            .args(["-w", format, "--command-timeout=30s"]);
        cmd
    }

    /// `args` with `{NAME}` replaced by the side's id (hex) of lease NAME.
    fn args(&self, side: Side, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| {
                let mut a = (*a).to_owned();
                for l in &self.leases {
                    a = a.replace(&format!("{{{}}}", l.name), &format!("{:x}", l.id(side)));
                }
                a
            })
            .collect()
    }

    /// Runs `args` on one side; `{NAME}` lease names are replaced in `args` and `stdin` (a
    /// txn's lines).
    fn run(&self, side: Side, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.etcdctl(side, "json");
        cmd.args(self.args(side, args));
        let stdin = stdin.map(|s| self.args(side, &[s]).concat());
        run(cmd, stdin.as_deref())
    }

    /// The same command on both sides at once (they are independent servers).
    fn both(&self, args: &[&str], stdin: Option<&str>) -> (Run, Run) {
        std::thread::scope(|s| {
            let e = s.spawn(|| self.run(Side::Etcd, args, stdin));
            let b = self.run(Side::Batchkv, args, stdin);
            (e.join().expect("the etcd side's etcdctl"), b)
        })
    }

    fn norm(&self, side: Side) -> Norm {
        Norm {
            leases: self
                .leases
                .iter()
                .map(|l| (l.id(side), format!("{{{}}}", l.name)))
                .collect(),
            endpoint: self.endpoint(side),
        }
    }

    /// Both sides' JSON answers, normalized; both must succeed.
    fn both_json(&self, args: &[&str], stdin: Option<&str>) -> (Value, Value) {
        let (e, b) = self.both(args, stdin);
        assert_eq!(
            (e.code, b.code),
            (0, 0),
            "{args:?} failed: etcd {e:?}, batchkv {b:?}"
        );
        let (mut ej, mut bj) = (e.json(), b.json());
        normalize(&mut ej, &self.norm(Side::Etcd));
        normalize(&mut bj, &self.norm(Side::Batchkv));
        (ej, bj)
    }

    /// The same JSON answer on both sides (normalized); returns it.
    fn same(&self, args: &[&str]) -> Value {
        self.same_in(args, None)
    }

    fn same_in(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let (e, b) = self.both_json(args, stdin);
        assert_eq!(
            e, b,
            "{args:?} (stdin {stdin:?}): etcd (left) and batchkv (right) differ"
        );
        e
    }

    /// Both print the same text (commands `-w json` does not apply to).
    fn same_text(&self, args: &[&str]) -> String {
        let (e, b) = self.both(args, None);
        assert_eq!(e.code, 0, "{args:?} on etcd: {e:?}");
        assert_eq!(
            (b.code, &b.stdout),
            (e.code, &e.stdout),
            "{args:?}: batchkv (left) and etcd (right) differ; batchkv's stderr {:?}",
            b.stderr
        );
        e.stdout
    }

    /// Both fail with the same exit code and the same `Error: ...` line; returns the line.
    fn same_error(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (e, b) = self.both(args, stdin);
        assert_ne!(e.code, 0, "{args:?}: etcdctl succeeded on etcd: {e:?}");
        assert_eq!(
            (e.code, e.error_line()),
            (b.code, b.error_line()),
            "{args:?} (stdin {stdin:?}): errors differ: etcd {e:?}, batchkv {b:?}"
        );
        e.error_line().unwrap_or_default().to_owned()
    }

    /// Grants a lease of `ttl` s on both sides under `name`; compares the answers.
    fn grant(&mut self, name: &str, ttl: i64) -> Value {
        let (e, b) = self.both(&["lease", "grant", &ttl.to_string()], None);
        assert_eq!((e.code, b.code), (0, 0), "lease grant: {e:?} {b:?}");
        let id = |r: &Run| {
            r.json()["ID"]
                .as_i64()
                .expect("a lease grant answers an ID")
        };
        self.leases.push(Lease {
            name: name.to_owned(),
            etcd: id(&e),
            batchkv: id(&b),
        });
        let (mut ej, mut bj) = (e.json(), b.json());
        normalize(&mut ej, &self.norm(Side::Etcd));
        normalize(&mut bj, &self.norm(Side::Batchkv));
        assert_eq!(ej, bj, "lease grant {ttl}: answers differ");
        ej
    }

    /// The current revision, the same on both sides.
    fn revision(&self) -> i64 {
        revision(&self.same(&["get", "revision-probe"]))
    }
}

impl Lease {
    fn id(&self, side: Side) -> i64 {
        match side {
            Side::Etcd => self.etcd,
            Side::Batchkv => self.batchkv,
        }
    }
}

fn run(cmd: Command, stdin: Option<&str>) -> Run {
    let out = batchkv_testkit::run_ctl(cmd, stdin.map(str::as_bytes));
    Run {
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn revision(v: &Value) -> i64 {
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header revision in {v}"))
}

// ---------------------------------------------------------------------------------------------
// Normalisation: the one place where the two sides' answers are made comparable.

/// What one side's answers are normalized with.
#[derive(Debug)]
struct Norm {
    /// Its lease ids, by the tests' names (`{L1}`).
    leases: HashMap<i64, String>,
    /// Its `127.0.0.1:port`.
    endpoint: String,
}

/// Brings one side's JSON answer into the comparable shape. Every rule, and why:
///
/// - **Cluster identity**: `cluster_id`, `member_id` and `raft_term` (in headers, and at the
///   top of `lease keep-alive`/`timetolive`/`list` answers) are dropped: random per cluster in
///   etcd, batchkv's own. A member's `ID` and a status's `leader` that equal the header's
///   `member_id` become `{self}` (any other value stays, and differs).
/// - **Lease ids** become the tests' names (`{L1}`): each server allocates its own.
/// - **Addresses**: the side's own endpoint and client URL become `{endpoint}` and
///   `{client-url}` (each server has its own port).
/// - **Deliberate differences of batchkv** (checked for their type, then replaced):
///   - a member's `peerURLs`: batchkv has no raft peers (etcd's are the testkit's peer port);
///   - `endpoint status`: `version` (batchkv names its own), `dbSize` and `dbSizeInUse`
///     (RocksDB's files, not bbolt's pages; both must be above 0), and `raftIndex`,
///     `raftAppliedIndex`, `raftTerm` (batchkv has no raft log: its own counters; both must be
///     above 0 and the applied index at most the index, as in etcd);
///   - `endpoint health`'s `took` (a duration).
fn normalize(v: &mut Value, n: &Norm) {
    match v {
        Value::Object(m) => {
            let self_id = m
                .get("header")
                .and_then(|h| h.get("member_id"))
                .and_then(Value::as_u64);
            if let Some(me) = self_id {
                if let Some(leader) = m.get_mut("leader")
                    && leader.as_u64() == Some(me)
                {
                    *leader = Value::String("{self}".into());
                }
                if let Some(Value::Array(members)) = m.get_mut("members") {
                    for member in members {
                        if let Some(id) = member.get_mut("ID")
                            && id.as_u64() == Some(me)
                        {
                            *id = Value::String("{self}".into());
                        }
                    }
                }
            }
            // endpoint status's Status (it has a leader and a raft index).
            if m.contains_key("raftIndex") || m.contains_key("dbSize") {
                deliberate_status(m);
            }
            for k in ["cluster_id", "member_id", "raft_term", "peerURLs", "took"] {
                m.remove(k);
            }
            for (k, x) in m.iter_mut() {
                if matches!(k.as_str(), "ID" | "id" | "lease")
                    && let Some(name) = x.as_i64().and_then(|id| n.leases.get(&id))
                {
                    *x = Value::String(name.clone());
                }
                normalize(x, n);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalize(x, n);
            }
        }
        Value::String(s) => {
            if *s == n.endpoint {
                *s = "{endpoint}".into();
            } else if *s == format!("http://{}", n.endpoint) {
                *s = "{client-url}".into();
            }
        }
        _ => {}
    }
}

/// `endpoint status`'s deliberate differences (see [`normalize`]).
fn deliberate_status(m: &mut serde_json::Map<String, Value>) {
    let num = |m: &serde_json::Map<String, Value>, k: &str| m.get(k).and_then(Value::as_i64);
    let version = m.get("version").and_then(Value::as_str).unwrap_or_default();
    assert!(
        !version.is_empty(),
        "endpoint status without a version: {m:?}"
    );
    for k in [
        "dbSize",
        "dbSizeInUse",
        "raftIndex",
        "raftAppliedIndex",
        "raftTerm",
    ] {
        assert!(
            num(m, k) > Some(0),
            "endpoint status: {k} is not above 0: {m:?}"
        );
    }
    assert!(
        num(m, "raftAppliedIndex") <= num(m, "raftIndex"),
        "endpoint status: applied index past the index: {m:?}"
    );
    for k in [
        "version",
        "dbSize",
        "dbSizeInUse",
        "raftIndex",
        "raftAppliedIndex",
        "raftTerm",
    ] {
        m.insert(k.into(), Value::String(format!("{{{k}}}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Streams: etcdctl commands that run until stopped.

/// A running `etcdctl` whose stdout lines arrive on a channel.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Stream {
    fn start(p: &Pair, side: Side, args: &[&str]) -> Stream {
        let mut cmd = p.etcdctl(side, "json");
        cmd.args(p.args(side, args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start etcdctl");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        Stream {
            child,
            lines,
            stderr,
        }
    }

    /// Reads JSON lines until `done` says the last one ends it, etcdctl exits, or `timeout`
    /// passes; then stops etcdctl. Returns the lines read, its stderr and its exit code (None
    /// when it was stopped).
    fn collect(
        mut self,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> (Vec<Value>, String, Option<i32>) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut exited = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.lines.recv_timeout(deadline - now) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("etcdctl printed {line:?}: {e}"));
                    let end = done(&v);
                    got.push(v);
                    if end {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    exited = true;
                    break;
                }
            }
        }
        let code = if exited {
            self.child.wait().expect("wait for etcdctl").code()
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            None
        };
        let stderr = self.stderr.join().unwrap_or_default();
        (got, stderr, code)
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn kv_put_get_del() {
    kv_put_get_del_on(Members::One);
}

/// [`kv_put_get_del`] against two 3-member clusters.
#[test]
fn cluster_kv_put_get_del() {
    kv_put_get_del_on(Members::Three);
}

fn kv_put_get_del_on(members: Members) {
    let p = Pair::with(members);
    assert_eq!(revision(&p.same(&["put", "k1", "v1"])), 2);
    p.same(&["put", "k1", "v2", "--prev-kv"]);
    for (k, v) in [
        ("k2", "b"),
        ("k3", "c"),
        ("k4", "a"),
        ("k\u{e9}", "\u{e9}"),
        ("l1", ""),
        ("m1", "x"),
    ] {
        p.same(&["put", k, v]);
    }
    p.same(&["put", "k3", "--ignore-value", "--prev-kv"]);
    p.same_in(&["put", "from-stdin"], Some("a value\nwith lines\n"));
    // One more form than the CLI's comparison: etcdctl's descending key sort of keys only.
    let extra: &[&str] = &[
        "get",
        "k",
        "--prefix",
        "--keys-only",
        "--sort-by=KEY",
        "--order=DESCEND",
    ];
    for &args in common::GET_FORMS.iter().chain([&extra]) {
        p.same(args);
    }
    for &args in common::DEL_FORMS {
        p.same(args);
    }
    p.same(&["get", "", "--from-key"]);
    // Errors the server gives (etcdctl's own argument checks are not the server's business).
    for args in [
        &["put", "", "v"][..],
        &["get", ""],
        &["del", ""],
        &["put", "nokey", "--ignore-value"],
        &["put", "nokey", "--ignore-lease"],
        &["put", "x", "y", "--lease=1234"],
        &["get", "a", "--rev=1000"],
    ] {
        p.same_error(args, None);
    }
    p.same(&["get", "", "--from-key"]);
}

#[test]
fn txn_from_stdin() {
    txn_from_stdin_on(Members::One);
}

/// [`txn_from_stdin`] against two 3-member clusters.
#[test]
fn cluster_txn_from_stdin() {
    txn_from_stdin_on(Members::Three);
}

fn txn_from_stdin_on(members: Members) {
    let p = Pair::with(members);
    p.same(&["put", "a", "1"]);
    p.same(&["put", "b", "2"]);
    p.same(&["put", "a", "11"]);
    for t in [
        "value(\"a\") = \"11\"\n\nput t1 x\nget a --prefix\ndel b --prev-kv\n\nput f1 y\n\n",
        "value(\"a\") = \"11\"\n\nput t1 x\nget a --prefix\ndel b --prev-kv\n\nput f1 y\n\n",
        "value(\"a\") != \"11\"\n\nput t2 x\n\nput f2 y --prev-kv\nget f --prefix --keys-only\n\n",
        "mod(\"a\") > \"3\"\nversion(\"a\") = \"2\"\ncreate(\"a\") < \"3\"\nver(\"zz\") = \"0\"\n\nget a\nget zz\n\n\n",
        "create(\"nope\") = \"0\"\n\nput n1 v --prev-kv\nput n2 v\ndel t --prefix --prev-kv\nget n --prefix --limit=1\n\n\n",
        "\n\n\n",
        "\nput x 1\n\n\n",
    ] {
        p.same_in(&["txn", "--interactive=false"], Some(t));
    }
    p.same(&["get", "", "--from-key"]);
    for t in [
        "\nput d 1\nput d 2\n\n\n",
        "\nput d 1\ndel d\n\n\n",
        "\nput \"\" 1\n\n\n",
        "\nput x y --lease=1234\n\n\n",
        "\nget a --rev=1000\n\n\n",
    ] {
        p.same_error(&["txn", "--interactive=false"], Some(t));
    }
    p.same(&["get", "", "--from-key"]);
}

#[test]
fn compaction_and_compacted_reads() {
    compaction_and_compacted_reads_on(Members::One);
}

/// [`compaction_and_compacted_reads`] against two 3-member clusters.
#[test]
fn cluster_compaction_and_compacted_reads() {
    compaction_and_compacted_reads_on(Members::Three);
}

fn compaction_and_compacted_reads_on(members: Members) {
    let p = Pair::with(members);
    for i in 0..6 {
        p.same(&["put", "k", &format!("v{i}")]);
        p.same(&["put", &format!("o{i}"), "x"]);
    }
    p.same(&["del", "o1"]);
    // `-w json` does not apply to compaction: it prints "compacted revision N".
    assert_eq!(p.same_text(&["compaction", "5"]), "compacted revision 5\n");
    p.same_text(&["compaction", "7"]);
    p.same(&["get", "k", "--rev=7"]);
    p.same(&["get", "o", "--prefix", "--rev=8"]);
    p.same(&["get", "", "--from-key"]);
    let compacted = p.same_error(&["get", "k", "--rev=6"], None);
    assert_eq!(
        compacted,
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    p.same_error(&["get", "k", "--rev=1"], None);
    p.same_error(&["compaction", "7"], None);
    p.same_error(&["compaction", "3"], None);
    p.same_error(&["compaction", "100"], None);
    p.same_error(
        &["txn", "--interactive=false"],
        Some("\nget k --rev=2\n\n\n"),
    );
    p.same(&["get", "k", "--rev=13"]);
}

#[test]
fn leases() {
    leases_on(Members::One);
}

/// [`leases`] against two 3-member clusters.
#[test]
fn cluster_leases() {
    leases_on(Members::Three);
}

fn leases_on(members: Members) {
    let mut p = Pair::with(members);
    p.grant("L1", 100);
    p.grant("L3", 300);
    p.same(&["put", "lk1", "v", "--lease={L1}"]);
    p.same(&["put", "lk2", "w", "--lease={L1}"]);
    p.same(&["put", "lk3", "x", "--lease={L3}"]);
    p.same(&["put", "lk1", "--ignore-value", "--lease={L3}", "--prev-kv"]);
    p.same(&["get", "lk", "--prefix"]);

    // timetolive: the remaining TTL counts down on each server; the rest must be equal.
    for args in [
        &["lease", "timetolive", "{L1}"][..],
        &["lease", "timetolive", "{L1}", "--keys"],
        &["lease", "timetolive", "{L3}", "--keys"],
    ] {
        let (mut e, mut b) = p.both_json(args, None);
        for v in [&mut e, &mut b] {
            let granted = v["granted-ttl"].as_i64().expect("granted-ttl");
            let ttl = v["ttl"].as_i64().expect("ttl");
            assert!(
                ttl > 0 && ttl <= granted,
                "{args:?}: ttl {ttl} of {granted}: {v}"
            );
            v["ttl"] = Value::Null;
            // etcd lists a lease's keys in no particular order.
            if let Some(keys) = v["keys"].as_array_mut() {
                keys.sort_by_key(Value::to_string);
            }
        }
        assert_eq!(e, b, "{args:?}: etcd (left) and batchkv (right) differ");
    }

    // list: the same leases (in no particular order).
    let (e, b) = p.both_json(&["lease", "list"], None);
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v["leases"]
            .as_array()
            .expect("leases")
            .iter()
            .map(|l| l["id"].to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&e), ["\"{L1}\"", "\"{L3}\""]);
    assert_eq!(ids(&e), ids(&b));
    p.same(&["lease", "keep-alive", "--once", "{L1}"]);

    // keep-alive, the streaming form: a few renewals, then stopped. A 3 s lease renews every
    // second; each renewal answers the whole TTL.
    p.grant("K", 3);
    let renewals = 3;
    let streams: Vec<(Vec<Value>, String, Option<i32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = SIDES
            .iter()
            .map(|&side| {
                let p = &p;
                s.spawn(move || {
                    let mut n = 0;
                    Stream::start(p, side, &["lease", "keep-alive", "{K}"]).collect(
                        Duration::from_secs(20),
                        |_| {
                            n += 1;
                            n == renewals
                        },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("keep-alive reader"))
            .collect()
    });
    let mut normalized = Vec::new();
    for (side, (lines, stderr, code)) in SIDES.iter().zip(streams) {
        assert_eq!(
            (lines.len(), code),
            (renewals, None),
            "{side:?}: keep-alive printed {lines:?} and exited; stderr {stderr}"
        );
        let mut lines = lines;
        for l in &mut lines {
            normalize(l, &p.norm(*side));
        }
        normalized.push(lines);
    }
    assert_eq!(
        normalized[0], normalized[1],
        "keep-alive responses: etcd (left) and batchkv (right) differ"
    );
    assert_eq!(normalized[0][0]["TTL"], 3, "{:?}", normalized[0]);
    // Revoked before it can expire (3 s after its last renewal).
    p.same(&["lease", "revoke", "{K}"]);

    // Revoking deletes the keys at one revision.
    let r = p.same(&["lease", "revoke", "{L1}"]);
    assert!(revision(&r) > 0);
    p.same(&["get", "", "--from-key"]);
    p.same(&["lease", "timetolive", "{L1}", "--keys"]);
    let unknown = p.same_error(&["lease", "revoke", "{L1}"], None);
    assert_eq!(
        unknown,
        "Error: failed to revoke lease (etcdserver: requested lease not found)"
    );
    p.same_error(&["lease", "keep-alive", "--once", "{L1}"], None);
    p.same_error(&["put", "x", "y", "--lease={L1}"], None);
    p.same(&["lease", "revoke", "{L3}"]);
    p.same(&["get", "", "--from-key"]);
    let e = p.same(&["lease", "list"]);
    assert_eq!(e["leases"], serde_json::json!([]), "no leases left: {e}");
}

/// The events of a watch's responses, one list per response.
fn watch_events(responses: &[Value]) -> Vec<Vec<Value>> {
    responses
        .iter()
        .map(|r| r["Events"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn live_watch() {
    let mut p = Pair::new();
    p.same(&["put", "w/before", "0"]);
    p.same(&["put", "other", "0"]);
    let next = p.revision() + 1;
    // Started before the writes, from the next revision: what it prints does not depend on
    // when its stream is established.
    let rev = format!("--rev={next}");
    let watch_args = ["watch", "w/", "--prefix", "--prev-kv", rev.as_str()];
    let watches: Vec<Stream> = SIDES
        .iter()
        .map(|&side| Stream::start(&p, side, &watch_args))
        .collect();
    // Give the watches a moment, so they are usually live (synced) when the writes come.
    std::thread::sleep(Duration::from_millis(500));
    p.grant("L", 300);
    p.same(&["put", "w/a", "1"]);
    p.same(&["put", "other", "1"]);
    p.same(&["put", "w/b", "1", "--lease={L}"]);
    p.same(&["put", "w/a", "2", "--prev-kv"]);
    p.same(&["del", "w/a"]);
    p.same_in(
        &["txn", "--interactive=false"],
        Some("\nput w/c 1\nput w/d 1\nput other 2\ndel w/before\n\n\n"),
    );
    p.same(&["put", "w/b", "--ignore-value", "--ignore-lease"]);
    p.same(&["lease", "revoke", "{L}"]);
    p.same(&["del", "w/", "--prefix"]);
    p.same(&["put", "w/zz-end", "done"]);
    let ended = |v: &Value| {
        v["Events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["kv"]["key"] == "dy96ei1lbmQ="))
    };
    let got: Vec<_> = watches
        .into_iter()
        .map(|w| w.collect(Duration::from_secs(20), ended))
        .collect();
    let mut streams = Vec::new();
    for (side, (responses, stderr, code)) in SIDES.iter().zip(got) {
        assert!(
            responses.last().is_some_and(ended) && code.is_none(),
            "{side:?}: the watch did not see the last put: {responses:?}, exit {code:?}, stderr {stderr}"
        );
        let mut responses = responses;
        for r in &mut responses {
            normalize(r, &p.norm(*side));
            assert_eq!(r["Canceled"], false, "{side:?}: {r}");
        }
        streams.push(responses);
    }
    let (e, b) = (&streams[0], &streams[1]);
    assert_eq!(
        watch_events(e),
        watch_events(b),
        "watch events: etcd (left) and batchkv (right) differ"
    );
    assert_eq!(
        e, b,
        "watch responses: etcd (left) and batchkv (right) differ"
    );
    let events: usize = watch_events(e).iter().map(Vec::len).sum();
    assert_eq!(events, 12, "{e:?}");

    // A replay of the whole history (from revision 1, the other key included): the same
    // events. How a replay groups revisions into responses is each server's own (etcd sends
    // up to 1,000 revisions at once), so the events are compared as one list.
    let last = p.revision();
    let replays: Vec<_> = SIDES
        .iter()
        .map(|&side| {
            let reached = |v: &Value| {
                v["Events"].as_array().is_some_and(|evs| {
                    evs.iter()
                        .any(|e| e["kv"]["mod_revision"].as_i64() == Some(last))
                })
            };
            Stream::start(&p, side, &["watch", "", "--prefix", "--prev-kv", "--rev=1"])
                .collect(Duration::from_secs(20), reached)
        })
        .collect();
    let mut replayed = Vec::new();
    for (side, (responses, stderr, code)) in SIDES.iter().zip(replays) {
        assert_eq!(
            code, None,
            "{side:?}: the replay ended: {responses:?} {stderr}"
        );
        let mut events: Vec<Value> = watch_events(&responses).concat();
        for ev in &mut events {
            normalize(ev, &p.norm(*side));
        }
        replayed.push(events);
    }
    assert_eq!(
        replayed[0], replayed[1],
        "replayed events: etcd (left) and batchkv (right) differ"
    );
    assert_eq!(replayed[0].len(), 16, "{:?}", replayed[0]);

    // A watch from a compacted revision: cancelled with the compact revision, etcdctl exits.
    let now = p.revision();
    p.same_text(&["compaction", &now.to_string()]);
    let cancelled: Vec<_> = SIDES
        .iter()
        .map(|&side| {
            Stream::start(&p, side, &["watch", "w/", "--prefix", "--rev=2"])
                .collect(Duration::from_secs(20), |_| false)
        })
        .collect();
    let mut firsts = Vec::new();
    for (side, (responses, stderr, code)) in SIDES.iter().zip(&cancelled) {
        assert_ne!(
            *code, None,
            "{side:?}: the watch was not cancelled: {responses:?}"
        );
        let mut first = responses.first().cloned().unwrap_or_default();
        normalize(&mut first, &p.norm(*side));
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("Error: ") || l.starts_with("watch was canceled"))
            .collect();
        firsts.push((code, first, errors));
    }
    assert_eq!(
        firsts[0], firsts[1],
        "cancelled watch: etcd (left) and batchkv (right) differ"
    );
    assert_eq!(firsts[0].1["CompactRevision"], now, "{:?}", firsts[0]);
}

/// A pair with a little history: revision 5.
fn pair_with_history() -> Pair {
    let p = Pair::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
        p.same(&["put", k, v]);
    }
    p.same(&["del", "b"]);
    p
}

#[test]
fn endpoint_status_and_health() {
    let p = pair_with_history();
    let status = p.same(&["endpoint", "status"]);
    assert_eq!(status[0]["Endpoint"], "{endpoint}", "{status}");
    assert_eq!(status[0]["Status"]["leader"], "{self}", "{status}");
    assert_eq!(status[0]["Status"]["header"]["revision"], 5, "{status}");
    let health = p.same(&["endpoint", "health"]);
    assert_eq!(health[0]["health"], true, "{health}");
}

#[test]
fn member_list() {
    let p = pair_with_history();
    let members = p.same(&["member", "list"]);
    assert_eq!(members["members"][0]["ID"], "{self}", "{members}");
    assert_eq!(
        members["members"][0]["clientURLs"],
        serde_json::json!(["{client-url}"]),
        "{members}"
    );
    assert_eq!(members["members"][0]["name"], MEMBER_NAME, "{members}");
}

#[test]
fn alarm_list() {
    let p = pair_with_history();
    p.same(&["alarm", "list"]);
}

/// HashKV: etcd's digest of the key space (batchkv-mvcc's hash_kv is etcd's byte for byte:
/// with no leased keys the two agree); batchkv's is stable across a restart and changes with
/// a write.
#[test]
fn endpoint_hashkv() {
    let mut p = pair_with_history();
    let hashkv = |p: &Pair| {
        let (e, b) = p.both_json(&["endpoint", "hashkv"], None);
        assert_eq!(
            e, b,
            "endpoint hashkv: etcd (left) and batchkv (right) differ"
        );
        e[0]["HashKV"]["hash"].as_u64().expect("a hash")
    };
    let before = hashkv(&p);
    p.same_text(&["compaction", "3"]);
    let compacted = hashkv(&p);
    let at = p.same(&["endpoint", "hashkv", "--rev=4"]);
    assert_eq!(at[0]["HashKV"]["compact_revision"], 3, "{at}");
    if let Some(server) = p.batchkv() {
        assert!(
            server.stop().success(),
            "batchkv serve's exit after SIGTERM"
        );
        server.restart();
        assert_eq!(hashkv(&p), compacted, "the hash changed across a restart");
    }
    p.same(&["put", "c", "1"]);
    let after = hashkv(&p);
    assert_ne!(after, compacted, "a put left the hash as it was");
    assert_ne!(before, after);
}

/// snapshot save: a consistent copy streamed to a file (its format is each server's own:
/// bbolt for etcd, batchkv's checkpoint for batchkv); etcdctl 3.4.23 checks the sha256 that
/// etcd appends to the stream.
#[test]
fn snapshot_save() {
    let p = pair_with_history();
    let dir = batchkv_testkit::temp_dir();
    for side in SIDES {
        let file = dir.path().join(format!("{side:?}.snap"));
        let file_arg = file.display().to_string();
        let r = p.run(side, &["snapshot", "save", &file_arg], None);
        assert_eq!(r.code, 0, "{side:?}: snapshot save: {r:?}");
        assert_eq!(
            r.stdout,
            format!("Snapshot saved at {file_arg}\n"),
            "{side:?}: {r:?}"
        );
        let len = std::fs::metadata(&file).map_or(0, |m| m.len());
        assert!(len > 0, "{side:?}: the snapshot file is empty or missing");
    }
}

// ---------------------------------------------------------------------------------------------
// A seeded random history: the key space and the shapes of batchkv-mvcc's etcd differential
// generator (testkit's `keyspace`), as etcdctl command lines only (that generator also builds
// the MVCC's requests, which have no place here).

const DEFAULT_SEED: u64 = 0x5e_12e0_2026;
const DEFAULT_OPS: usize = 300;

struct Gen {
    rng: Rng,
    current: i64,
    compacted: i64,
    /// Leases granted so far: `{R0}`, `{R1}`, ...
    leases: usize,
}

/// One op: etcdctl's arguments and stdin.
struct GenOp {
    args: Vec<String>,
    stdin: Option<String>,
}

/// Random leases live an hour: none expires during a run.
const RANDOM_LEASE_TTL: i64 = 3600;

impl Gen {
    fn key(&mut self) -> String {
        self.rng.pick(&KEYS).to_owned()
    }

    fn value(&mut self) -> String {
        self.rng.pick(&VALUES).to_owned()
    }

    /// A key and what follows it: nothing, an end key, `--prefix` or `--from-key`.
    fn range(&mut self, allow_all: bool) -> Vec<String> {
        let r = self.rng.below(100);
        if allow_all && r < 4 {
            return vec![
                String::new(),
                self.rng.pick(&["--prefix", "--from-key"]).to_owned(),
            ];
        }
        match r {
            0..=44 => vec![self.key()],
            45..=64 => vec![
                self.rng.pick(&BOUNDS).to_owned(),
                self.rng.pick(&BOUNDS).to_owned(),
            ],
            65..=87 => vec![self.rng.pick(&PREFIXES).to_owned(), "--prefix".to_owned()],
            _ => vec![self.rng.pick(&BOUNDS).to_owned(), "--from-key".to_owned()],
        }
    }

    /// A revision to read at: around the compacted and current revisions (some refused).
    fn read_rev(&mut self) -> i64 {
        match self.rng.below(10) {
            0 => self.compacted.max(1),
            1 => (self.compacted - 1).max(1),
            2 => self.current + 1,
            3 => self.current,
            _ => self.rng.between((self.compacted - 1).max(1), self.current),
        }
    }

    fn put(&mut self, quote: bool) -> Vec<String> {
        let q = |s: String| if quote { format!("\"{s}\"") } else { s };
        let mut a = vec!["put".to_owned(), q(self.key())];
        match self.rng.below(100) {
            0..=69 => a.push(q(self.value())),
            70..=84 => {
                a.push(q(self.value()));
                a.push("--prev-kv".into());
            }
            85..=92 => {
                a.push("--ignore-value".into());
                if self.rng.pct(50) {
                    a.push("--prev-kv".into());
                }
            }
            93..=95 => {
                a.push(q(self.value()));
                a.push("--ignore-lease".into());
            }
            // A lease granted (revoked maybe) on both.
            96..=98 if self.leases > 0 => {
                a.push(q(self.value()));
                a.push(format!("--lease={{R{}}}", self.rng.below(self.leases)));
            }
            // A lease neither server has.
            _ => {
                a.push(q(self.value()));
                a.push("--lease=1234".into());
            }
        }
        a
    }

    fn del(&mut self, allow_all: bool, quote: bool) -> Vec<String> {
        let mut a = vec!["del".to_owned()];
        let mut range = self.range(allow_all);
        if quote {
            range[0] = format!("\"{}\"", range[0]);
        }
        a.extend(range);
        if self.rng.pct(40) {
            a.push("--prev-kv".into());
        }
        a
    }

    fn get(&mut self, allow_all: bool, quote: bool) -> Vec<String> {
        let mut a = vec!["get".to_owned()];
        let mut range = self.range(allow_all);
        if quote {
            range[0] = format!("\"{}\"", range[0]);
        }
        a.extend(range);
        if self.rng.pct(35) {
            a.push(format!("--rev={}", self.read_rev()));
        }
        if self.rng.pct(30) {
            a.push(format!("--limit={}", self.rng.between(1, 4)));
        }
        if self.rng.pct(40) {
            a.push(format!("--sort-by={}", self.rng.pick(&SORT_TARGETS)));
        }
        if self.rng.pct(40) {
            a.push(format!("--order={}", self.rng.pick(&ORDERS)));
        }
        if self.rng.pct(15) {
            a.push("--keys-only".into());
        }
        a
    }

    fn compare(&mut self) -> String {
        let key = self.key();
        let target = self.rng.pick(&["value", "version", "create", "mod"]);
        let op = self.rng.pick(&["=", "=", "!=", "<", ">"]);
        let operand = match target {
            "value" => self.value(),
            "version" => self.rng.between(0, 3).to_string(),
            _ => self.rng.between(0, self.current + 1).to_string(),
        };
        format!("{target}(\"{key}\") {op} \"{operand}\"")
    }

    fn branch(&mut self) -> Vec<String> {
        (0..self.rng.below(4))
            .map(|_| {
                let op = match self.rng.below(100) {
                    0..=44 => self.put(true),
                    45..=64 => self.del(false, true),
                    _ => self.get(false, true),
                };
                op.join(" ")
            })
            .collect()
    }

    fn txn(&mut self) -> String {
        let compares: Vec<String> = (0..self.rng.below(4)).map(|_| self.compare()).collect();
        let mut s = String::new();
        for part in [compares, self.branch(), self.branch()] {
            for line in part {
                s.push_str(&line);
                s.push('\n');
            }
            s.push('\n');
        }
        s
    }

    fn next(&mut self) -> GenOp {
        let (args, stdin) = match self.rng.below(100) {
            0..=31 => (self.put(false), None),
            32..=33 => {
                self.leases += 1;
                let grant = ["lease", "grant", &RANDOM_LEASE_TTL.to_string()];
                (grant.map(str::to_owned).to_vec(), None)
            }
            34..=35 if self.leases > 0 => {
                let name = format!("{{R{}}}", self.rng.below(self.leases));
                (vec!["lease".to_owned(), "revoke".to_owned(), name], None)
            }
            34..=46 => {
                let all = self.rng.pct(10);
                (self.del(all, false), None)
            }
            47..=74 => (self.get(true, false), None),
            75..=95 => (
                vec!["txn".to_owned(), "--interactive=false".to_owned()],
                Some(self.txn()),
            ),
            _ => {
                let rev = match self.rng.below(10) {
                    0 => self.compacted.max(1),
                    1 => self.current + 1,
                    _ if self.compacted < self.current => {
                        self.rng.between(self.compacted + 1, self.current)
                    }
                    _ => self.current,
                };
                (vec!["compaction".to_owned(), rev.to_string()], None)
            }
        };
        GenOp { args, stdin }
    }
}

impl GenOp {
    fn replay(&self) -> String {
        match &self.stdin {
            Some(input) => format!("etcdctl {} <<EOF\n{input}EOF", shell_words(&self.args)),
            None => format!("etcdctl {}", shell_words(&self.args)),
        }
    }
}

/// The comparable form of one answer: its normalized JSON (or compaction's text), or the
/// failure's exit code and `Error:` line.
fn answer(r: &Run, n: &Norm, json: bool) -> Value {
    if r.code != 0 {
        return serde_json::json!({"code": r.code, "error": r.error_line()});
    }
    if !json {
        return Value::String(r.stdout.clone());
    }
    let mut v = r.json();
    normalize(&mut v, n);
    v
}

#[test]
fn random_history() {
    random_history_on(Members::One);
}

/// [`random_history`] against two 3-member clusters.
#[test]
fn cluster_random_history() {
    random_history_on(Members::Three);
}

fn random_history_on(members: Members) {
    let seed = env_u64("BATCHKV_SERVE_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let ops = env_u64("BATCHKV_SERVE_DIFF_OPS").map_or(DEFAULT_OPS, |n| n as usize);
    eprintln!("seed {seed:#x} (BATCHKV_SERVE_DIFF_SEED), {ops} ops (BATCHKV_SERVE_DIFF_OPS)");
    let mut p = Pair::with(members);
    let mut g = Gen {
        rng: Rng(seed),
        current: 1,
        compacted: 0,
        leases: 0,
    };
    let mut script = String::new();
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for i in 0..ops {
        let op = g.next();
        script.push_str(&format!("# op {i}\n{}\n", op.replay()));
        let args: Vec<&str> = op.args.iter().map(String::as_str).collect();
        if args[..2] == ["lease", "grant"] {
            // Compared there, and named for the ops that use it.
            p.grant(&format!("R{}", p.leases.len()), RANDOM_LEASE_TTL);
            *outcomes.entry("lease grant").or_default() += 1;
            continue;
        }
        let (e, b) = p.both(&args, op.stdin.as_deref());
        let json = args[0] != "compaction";
        let (ea, ba) = (
            answer(&e, &p.norm(Side::Etcd), json),
            answer(&b, &p.norm(Side::Batchkv), json),
        );
        if ea != ba {
            let start = script.len().saturating_sub(4000);
            let start = (start..script.len())
                .find(|&i| script.is_char_boundary(i))
                .unwrap_or(0);
            panic!(
                "seed {seed:#x}, op {i}: etcd and batchkv differ\n  etcd:    {ea}\n  batchkv: {ba}\n\
                 the script so far (its end; a FRESH etcd replays it):\n{}",
                &script[start..]
            );
        }
        let kind = match args[0] {
            _ if e.code != 0 => "refused",
            "put" => "put",
            "del" => "del",
            "get" => "get",
            "txn" => "txn",
            "lease" => "lease revoke",
            _ => "compaction",
        };
        *outcomes.entry(kind).or_default() += 1;
        if e.code == 0 {
            match args[0] {
                "compaction" => g.compacted = args[1].parse().expect("a revision"),
                _ => g.current = g.current.max(revision(&e.json())),
            }
        }
    }
    eprintln!(
        "outcomes: {outcomes:?}; revision {} compacted {}",
        g.current, g.compacted
    );
    for kind in [
        "put",
        "del",
        "get",
        "txn",
        "compaction",
        "refused",
        "lease grant",
        "lease revoke",
    ] {
        assert!(
            outcomes.get(kind).copied().unwrap_or(0) > 0,
            "seed {seed:#x}: no {kind} in {ops} ops: {outcomes:?}"
        );
    }
    // The whole key space at several revisions, from the compacted one to the current one.
    let mut revs = vec![g.compacted.max(1), g.current, g.current - 1];
    for _ in 0..6 {
        revs.push(g.rng.between(g.compacted.max(1), g.current));
    }
    for rev in revs {
        let r = format!("--rev={rev}");
        let (e, b) = p.both(&["get", "", "--from-key", &r], None);
        assert_eq!(
            answer(&e, &p.norm(Side::Etcd), true),
            answer(&b, &p.norm(Side::Batchkv), true),
            "seed {seed:#x}: the key space at revision {rev} differs"
        );
    }
    p.same(&["get", "", "--prefix", "--keys-only"]);
}

//! The `batchkv` command line against a real etcd 3.4: every test starts a fresh etcd on free
//! loopback ports and a fresh batchkv data dir, runs the same etcdctl command lines on both
//! (`etcdctl --endpoints=... -w json ARGS` and `batchkv --data-dir=... -w json ARGS`) and
//! compares the answers: the parsed JSON whole (revisions, kvs, count, more, deleted,
//! prev_kvs, succeeded, nested responses, and which fields are left out), less the header's
//! cluster_id, member_id and raft_term, and with lease ids (which each side allocates its own
//! way) replaced by names. Errors: both exit with the same non-zero code and print the same
//! `Error: ...` line. Some commands are compared in `-w simple` too, byte for byte.
//!
//! etcd and etcdctl must be installed: `cargo xtask doctor` installs them. A machine without
//! them fails these tests (never skips them).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use batchkv_testkit::Etcd;
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");

// ---------------------------------------------------------------------------------------------
// Running both sides.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Etcd,
    Batchkv,
}

/// What one command printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// etcdctl's `Error: ...` line (etcdctl also logs a JSON warning line on stderr).
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

/// A lease granted on both sides: its name in the tests and each side's id.
struct Lease {
    name: String,
    etcd: i64,
    batchkv: i64,
}

/// A fresh etcd and a fresh batchkv data dir.
struct Pair {
    etcd: Etcd,
    dir: tempfile::TempDir,
    leases: Vec<Lease>,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            etcd: Etcd::start(),
            dir: tempfile::tempdir().expect("a temp dir for batchkv"),
            leases: Vec::new(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `args` with `{NAME}` replaced by the side's lease id of that name, in hex.
    fn args(&self, side: Side, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| {
                let mut a = (*a).to_owned();
                for l in &self.leases {
                    let id = match side {
                        Side::Etcd => l.etcd,
                        Side::Batchkv => l.batchkv,
                    };
                    a = a.replace(&format!("{{{}}}", l.name), &format!("{id:x}"));
                }
                a
            })
            .collect()
    }

    fn command(&self, side: Side, format: &str) -> Command {
        match side {
            Side::Etcd => {
                let mut c = self.etcd.etcdctl();
                c.arg("--command-timeout=30s").args(["-w", format]);
                c
            }
            Side::Batchkv => {
                let mut c = Command::new(BATCHKV);
                c.arg(format!("--data-dir={}", self.data_dir().display()))
                    .args(["-w", format]);
                c
            }
        }
    }

    fn run(&self, side: Side, format: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.command(side, format);
        cmd.args(self.args(side, args));
        let out = batchkv_testkit::run_ctl(cmd, stdin.map(str::as_bytes));
        Run {
            code: out.code,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    fn both(&self, format: &str, args: &[&str], stdin: Option<&str>) -> (Run, Run) {
        (
            self.run(Side::Etcd, format, args, stdin),
            self.run(Side::Batchkv, format, args, stdin),
        )
    }

    /// Lease ids → names, for one side.
    fn lease_names(&self, side: Side) -> HashMap<i64, String> {
        self.leases
            .iter()
            .map(|l| {
                let id = if side == Side::Etcd {
                    l.etcd
                } else {
                    l.batchkv
                };
                (id, format!("{{{}}}", l.name))
            })
            .collect()
    }

    /// Both sides' JSON answers, normalized; both must succeed.
    fn both_json(&self, args: &[&str], stdin: Option<&str>) -> (Value, Value) {
        let (e, b) = self.both("json", args, stdin);
        assert_eq!(
            (e.code, b.code),
            (0, 0),
            "{args:?} failed: etcd {e:?}, batchkv {b:?}"
        );
        let mut ev = e.json();
        let mut bv = b.json();
        normalize(&mut ev, &self.lease_names(Side::Etcd));
        normalize(&mut bv, &self.lease_names(Side::Batchkv));
        (ev, bv)
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

    /// The same `-w simple` output on both sides, byte for byte (lease ids as names).
    fn same_simple(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (e, b) = self.both("simple", args, stdin);
        assert_eq!(
            (e.code, b.code),
            (0, 0),
            "{args:?} failed: etcd {e:?}, batchkv {b:?}"
        );
        let names = |side: Side, s: &str| {
            let mut s = s.to_owned();
            for (id, name) in self.lease_names(side) {
                s = s.replace(&format!("{id:016x}"), &name);
            }
            s
        };
        let (es, bs) = (
            names(Side::Etcd, &e.stdout),
            names(Side::Batchkv, &b.stdout),
        );
        assert_eq!(
            es, bs,
            "{args:?}: simple output differs (left etcd, right batchkv)"
        );
        es
    }

    /// Both fail with the same exit code and the same `Error: ...` line; returns the line.
    fn same_error(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (e, b) = self.both("json", args, stdin);
        assert_ne!(e.code, 0, "{args:?}: etcdctl succeeded: {e:?}");
        assert_eq!(
            (e.code, e.error_line()),
            (b.code, b.error_line()),
            "{args:?} (stdin {stdin:?}): errors differ: etcd {e:?}, batchkv {b:?}"
        );
        e.error_line().unwrap_or_default().to_owned()
    }

    /// `lease timetolive ...` on both: the rest exactly, the remaining TTL loosely. etcd's
    /// counts down from the grant (truncated); batchkv's from the opening of the store for this
    /// command (lease deadlines are not stored, as in etcd, and every command opens the store),
    /// rounded up: so it is the whole TTL, or a second less.
    fn same_ttl(&self, args: &[&str]) {
        let (mut e, mut b) = self.both_json(args, None);
        for v in [&mut e, &mut b] {
            // etcd lists the keys in no particular order.
            if let Some(keys) = v["keys"].as_array_mut() {
                keys.sort_by_key(Value::to_string);
            }
        }
        let ttl = |v: &Value| v["ttl"].as_i64().unwrap_or_else(|| panic!("no ttl in {v}"));
        let (et, bt) = (ttl(&e), ttl(&b));
        let granted = b["granted-ttl"].as_i64().unwrap_or_default();
        assert!(
            et <= bt && bt >= granted - 1 && et >= granted - 10,
            "{args:?}: ttl {et} (etcd) vs {bt} (batchkv), granted {granted}"
        );
        e["ttl"] = Value::Null;
        b["ttl"] = Value::Null;
        assert_eq!(e, b, "{args:?}: etcd (left) and batchkv (right) differ");
    }

    /// Grants a lease of `ttl` s on both sides under `name`; compares the answers.
    fn grant(&mut self, name: &str, ttl: i64) -> Value {
        let (e, b) = self.both("json", &["lease", "grant", &ttl.to_string()], None);
        assert_eq!((e.code, b.code), (0, 0), "lease grant: {e:?} {b:?}");
        let (ej, bj) = (e.json(), b.json());
        let id = |v: &Value| v["ID"].as_i64().expect("a lease grant answers an ID");
        self.leases.push(Lease {
            name: name.to_owned(),
            etcd: id(&ej),
            batchkv: id(&bj),
        });
        let (mut ej, mut bj) = (ej, bj);
        normalize(&mut ej, &self.lease_names(Side::Etcd));
        normalize(&mut bj, &self.lease_names(Side::Batchkv));
        assert_eq!(ej, bj, "lease grant {ttl}: answers differ");
        ej
    }
}

/// Drops the header fields that name the cluster, and names the known lease ids.
fn normalize(v: &mut Value, leases: &HashMap<i64, String>) {
    match v {
        Value::Object(m) => {
            for k in ["cluster_id", "member_id", "raft_term"] {
                m.remove(k);
            }
            for (k, x) in m.iter_mut() {
                if matches!(k.as_str(), "ID" | "id" | "lease")
                    && let Some(name) = x.as_i64().and_then(|n| leases.get(&n))
                {
                    *x = Value::String(name.clone());
                }
                normalize(x, leases);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalize(x, leases);
            }
        }
        _ => {}
    }
}

fn revision(v: &Value) -> i64 {
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header revision in {v}"))
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn put_get_del() {
    let p = Pair::new();
    assert_eq!(revision(&p.same(&["put", "k1", "v1"])), 2);
    p.same(&["put", "k1", "v2", "--prev-kv"]);
    for (k, v) in [
        ("k2", "b"),
        ("k3", "c"),
        ("k4", "d"),
        ("k\u{e9}", "\u{e9}"),
        ("l1", ""),
    ] {
        p.same(&["put", k, v]);
    }
    p.same(&["put", "k3", "--ignore-value", "--prev-kv"]);
    p.same_in(&["put", "from-stdin"], Some("a value\nwith lines\n"));
    p.same_simple(&["put", "k1", "v3", "--prev-kv"], None);
    p.same_simple(&["put", "k9", "x"], None);

    for &args in common::GET_FORMS {
        p.same(args);
        p.same_simple(args, None);
    }
    p.same_simple(&["get", "k", "--prefix", "--print-value-only"], None);
    p.same_simple(&["get", "k", "--prefix", "--keys-only"], None);
    p.same_simple(&["--hex", "get", "k", "--prefix"], None);

    // --count-only is etcdctl 3.5's flag: compare with the count of the same read.
    let e = p.run(
        Side::Etcd,
        "json",
        &["get", "k", "--prefix", "--rev=6"],
        None,
    );
    let b = p.run(
        Side::Batchkv,
        "json",
        &["get", "k", "--prefix", "--rev=6", "--count-only"],
        None,
    );
    let (ej, bj) = (e.json(), b.json());
    assert_eq!(bj["count"], ej["count"], "count-only: {bj} vs {ej}");
    assert_eq!(bj["header"]["revision"], ej["header"]["revision"]);
    assert!(bj.get("kvs").is_none(), "count-only returns no kvs: {bj}");
    let b = p.run(
        Side::Batchkv,
        "simple",
        &["get", "k", "--prefix", "--count-only"],
        None,
    );
    assert_eq!(b.stdout, "6\n");

    for &args in common::DEL_FORMS {
        p.same(args);
    }
    for (k, v) in [("d1", "1"), ("d2", "2"), ("e1", "3")] {
        p.same(&["put", k, v]);
    }
    p.same_simple(&["del", "d", "--prefix", "--prev-kv"], None);
    p.same_simple(&["del", "d1"], None);
    p.same(&["get", "", "--from-key"]);

    // Errors: etcd's messages and etcdctl's exit codes.
    let errors: &[&[&str]] = &[
        &["put", "", "v"],
        &["get", ""],
        &["put", "nokey", "--ignore-value"],
        &["put", "nokey", "--ignore-lease"],
        &["put", "e1", "v", "--ignore-value"],
        &["put", "x", "y", "--lease=zz"],
        &["put", "x", "y", "--lease=1234"],
        &["put", "x"],
        &["get"],
        &["get", "a", "--prefix", "--from-key"],
        &["get", "a", "b", "--prefix"],
        &["get", "a", "--order=UP"],
        &["get", "a", "--sort-by=SIZE"],
        &["get", "a", "--consistency=x"],
        &["get", "a", "--rev=x"],
        &["get", "a", "--limit"],
        &["get", "a", "--bogus"],
        &["get", "a", "--print-value-only"],
        &["get", "a", "--rev=1000"],
        &["del"],
        &["del", "a", "b", "c"],
        &["del", "a", "--prefix", "--from-key"],
        &["del", ""],
        &["compaction"],
        &["compaction", "x"],
        &["put", "x", "-5"],
    ];
    for args in errors {
        p.same_error(args, None);
    }
    // Nothing above wrote anything.
    p.same(&["get", "", "--from-key"]);
}

#[test]
fn txn() {
    let p = Pair::new();
    p.same(&["put", "a", "1"]);
    p.same(&["put", "b", "2"]);
    p.same(&["put", "a", "11"]);
    let txns = [
        "value(\"a\") = \"11\"\n\nput t1 x\nget a --prefix\ndel b --prev-kv\n\nput f1 y\n\n",
        "value(\"a\") = \"11\"\n\nput t1 x\nget a --prefix\ndel b --prev-kv\n\nput f1 y\n\n",
        "value(\"a\") != \"11\"\n\nput t2 x\n\nput f2 y --prev-kv\nget f --prefix --keys-only\n\n",
        "mod(\"a\") > \"3\"\nversion(\"a\") = \"2\"\ncreate(\"a\") < \"3\"\nver(\"zz\") = \"0\"\n\nget a\nget zz\n\n\n",
        "m(\"a\") = \"4\"\nc(\"b\") = \"0\"\nval(\"t1\") > \"w\"\n\nput \"quoted key\" \"tab\\there\"\nget \"quoted key\"\n\n\n",
        "create(\"nope\") = \"0\"\n\nput n1 v --prev-kv\nput n2 v\ndel t --prefix --prev-kv\nget n --prefix --limit=1\n\n\n",
        "\n\n\n",
        "\nput x 1\n\n\n",
        "version(\"a\") > \"100\"\n\n\ndel a --prev-kv\nget \"\" --from-key --count-only\n\n",
    ];
    for t in txns {
        // --count-only is batchkv's (etcdctl 3.5's) flag: etcd gets the plain read.
        let etcd_t = t.replace(" --count-only", "");
        let (e, b) = (
            p.run(Side::Etcd, "json", &["txn"], Some(&etcd_t)),
            p.run(Side::Batchkv, "json", &["txn"], Some(t)),
        );
        assert_eq!((e.code, b.code), (0, 0), "txn {t:?}: {e:?} {b:?}");
        let (mut ej, mut bj) = (e.json(), b.json());
        normalize(&mut ej, &HashMap::new());
        normalize(&mut bj, &HashMap::new());
        if t.contains("--count-only") {
            // Drop the kvs etcd returned for the plain read.
            let last = ej["responses"]
                .as_array_mut()
                .and_then(|r| r.last_mut())
                .expect("responses");
            last["Response"]["ResponseRange"]
                .as_object_mut()
                .expect("a range response")
                .remove("kvs");
        }
        assert_eq!(ej, bj, "txn {t:?}: etcd (left) and batchkv (right) differ");
    }
    p.same_simple(&["txn"], Some(txns[0]));
    p.same_simple(&["txn"], Some(txns[2]));
    p.same_simple(&["txn"], Some("\nget a\nget t --prefix\ndel nothing\n\n\n"));
    p.same(&["get", "", "--from-key"]);

    // Refused by etcd: nothing applied.
    for t in [
        "\nput d 1\nput d 2\n\n\n",
        "\nput d 1\ndel d\n\n\n",
        "\nput \"\" 1\n\n\n",
        "\nput x y --lease=1234\n\n\n",
        "\nget a --rev=1000\n\n\n",
    ] {
        p.same_error(&["txn"], Some(t));
    }
    // Bad input.
    for t in [
        "value(\"a\")=\"2\"\n\n\n\n",
        "value(\"a\") = 2\n\n\n\n",
        "value\"a\" = \"2\"\n\n\n\n",
        "size(\"a\") = \"2\"\n\n\n\n",
        "version(\"a\") = \"x\"\n\n\n\n",
        "\nfoo a\n\n\n",
        "\nput\n\n\n",
        "\nput a\n\n\n",
        "\nget a --bogus\n\n\n",
        "\nget a --limit=x\n\n\n",
        "\nput a b\n",
        "value(\"a\") = \"2\"",
        "",
    ] {
        p.same_error(&["txn"], Some(t));
    }
    p.same_error(&["txn", "extra"], Some("\n\n\n"));
    p.same(&["get", "", "--from-key"]);
}

#[test]
fn compaction() {
    let p = Pair::new();
    for i in 0..6 {
        p.same(&["put", "k", &format!("v{i}")]);
        p.same(&["put", &format!("o{i}"), "x"]);
    }
    p.same(&["del", "o1"]);
    let (e, b) = p.both("json", &["compaction", "5"], None);
    assert_eq!(
        (e.code, &e.stdout),
        (0, &"compacted revision 5\n".to_owned())
    );
    assert_eq!(
        (b.code, &b.stdout),
        (e.code, &e.stdout),
        "compaction: {b:?}"
    );
    p.same_simple(&["compaction", "7"], None);
    p.same(&["get", "k", "--rev=7"]);
    p.same(&["get", "o", "--prefix", "--rev=8"]);
    p.same(&["get", "", "--from-key"]);
    for args in [
        &["get", "k", "--rev=6"][..],
        &["get", "k", "--rev=1"],
        &["get", "k", "--rev=100"],
        &["compaction", "7"],
        &["compaction", "3"],
        &["compaction", "100"],
        &["compaction", "--physical", "x"],
    ] {
        p.same_error(args, None);
    }
    p.same_error(&["txn"], Some("\nget k --rev=2\n\n\n"));
    // Compacting to the current revision works on both.
    let rev = revision(&p.same(&["get", "k"]));
    p.same_simple(&["compaction", "--physical", &rev.to_string()], None);
    p.same(&["get", "k", &format!("--rev={rev}")]);
    p.same(&["put", "k", "after"]);
    p.same(&["get", "", "--from-key"]);
}

#[test]
fn leases() {
    let mut p = Pair::new();
    p.same(&["put", "plain", "1"]);
    let g = p.grant("L1", 100);
    assert_eq!(g["TTL"], 100);
    p.grant("L3", 60);
    p.same_error(&["lease", "grant", "90000000000"], None);

    p.same(&["put", "lk1", "v", "--lease={L1}"]);
    p.same(&["put", "lk2", "v", "--lease={L1}", "--prev-kv"]);
    p.same(&["put", "lk3", "v", "--lease={L3}"]);
    p.same(&["put", "lk3", "w", "--ignore-lease", "--prev-kv"]);
    p.same(&["put", "lk1", "--ignore-value", "--lease={L3}", "--prev-kv"]);
    p.same(&["get", "lk", "--prefix"]);
    p.same_simple(&["get", "lk", "--prefix"], None);
    p.same_error(&["put", "x", "y", "--lease=1234"], None);
    p.same_error(&["put", "lk2", "--ignore-lease", "--lease={L1}"], None);

    p.same_ttl(&["lease", "timetolive", "{L1}"]);
    p.same_ttl(&["lease", "timetolive", "{L1}", "--keys"]);
    p.same_ttl(&["lease", "timetolive", "{L3}", "--keys"]);
    // "lease ID granted with TTL(100s), remaining(99s), attached keys([lk2])"
    let (e, b) = p.both("simple", &["lease", "timetolive", "{L1}", "--keys"], None);
    let strip = |s: &str| {
        let (head, rest) = s.split_once(", remaining(").expect("remaining");
        let (_, tail) = rest.split_once(')').expect("remaining)");
        let (_, head) = head.split_once(" granted").expect("granted");
        format!("{head}{tail}")
    };
    assert_eq!(
        strip(&e.stdout),
        strip(&b.stdout),
        "timetolive simple: {e:?} {b:?}"
    );
    assert!(
        b.stdout
            .contains(&format!("lease {:016x} ", p.leases[0].batchkv))
    );

    // list: the same leases (etcd lists them in no particular order).
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
    assert_eq!(ids(&e), ids(&b));
    assert_eq!(e["revision"], b["revision"]);
    let (e, b) = p.both("simple", &["lease", "list"], None);
    assert_eq!(e.stdout.lines().next(), Some("found 2 leases"));
    assert_eq!(e.stdout.lines().next(), b.stdout.lines().next());

    p.same(&["lease", "keep-alive", "--once", "{L1}"]);
    p.same_simple(&["lease", "keep-alive", "--once", "{L1}"], None);

    // Revoking deletes the keys at one revision.
    let r = p.same(&["lease", "revoke", "{L1}"]);
    assert!(r["header"]["revision"].as_i64() > Some(0));
    p.same_simple(&["lease", "revoke", "{L3}"], None);
    p.same(&["get", "", "--from-key"]);
    p.same(&["lease", "timetolive", "{L1}", "--keys"]);
    p.same_simple(&["lease", "timetolive", "{L1}"], None);
    p.same_error(&["lease", "revoke", "{L1}"], None);
    p.same_error(&["lease", "keep-alive", "--once", "{L1}"], None);
    p.same_error(&["put", "x", "y", "--lease={L1}"], None);
    for args in [
        &["lease", "grant"][..],
        &["lease", "grant", "abc"],
        &["lease", "revoke"],
        &["lease", "revoke", "zz"],
        &["lease", "revoke", "1", "2"],
        &["lease", "timetolive"],
        &["lease", "keep-alive", "--once"],
    ] {
        p.same_error(args, None);
    }
    // Short leases: etcd's minimum TTL is 2 s.
    assert_eq!(p.grant("L2", 1)["TTL"], 2);
    assert_eq!(p.grant("L4", 0)["TTL"], 2);
    p.same(&["put", "short", "v", "--lease={L2}"]);
    p.same_ttl(&["lease", "timetolive", "{L2}", "--keys"]);
    // They expire on etcd. batchkv keeps lease deadlines in memory only (as etcd does across a
    // restart), and every command opens the store anew, giving each lease its whole TTL
    // again: a lease expires only while one command runs longer than its TTL. So batchkv's
    // are revoked by hand here, and then both sides agree again.
    let deadline = Instant::now() + Duration::from_secs(10);
    for lease in ["{L2}", "{L4}"] {
        loop {
            let e = p
                .run(Side::Etcd, "json", &["lease", "timetolive", lease], None)
                .json();
            if e["ttl"] == -1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd's 2 s lease did not expire: {e}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let b = p
            .run(Side::Batchkv, "json", &["lease", "timetolive", lease], None)
            .json();
        assert_eq!(b["granted-ttl"], 2, "batchkv's lease is still there: {b}");
        let b = p.run(Side::Batchkv, "json", &["lease", "revoke", lease], None);
        assert_eq!(b.code, 0, "{b:?}");
    }
    p.same(&["get", "", "--from-key"]);
    let e = p.same(&["lease", "list"]);
    assert_eq!(e["leases"], Value::Array(Vec::new()));
}

/// Runs `etcdctl -w json watch ARGS` until it has printed `events` events (or exited), plus a
/// moment for anything extra; returns its JSON responses, stderr and exit code (None: killed).
fn etcd_watch(p: &Pair, args: &[&str], events: usize) -> (Vec<Value>, String, Option<i32>) {
    let mut child = p
        .command(Side::Etcd, "json")
        .arg("watch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl watch");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut responses = Vec::new();
    let mut seen = 0;
    let mut exited = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Expecting nothing: wait a moment for anything unexpected.
    let mut extra = (events == 0).then(|| Instant::now() + Duration::from_millis(800));
    loop {
        let now = Instant::now();
        let until = extra.unwrap_or(deadline).min(deadline);
        if now >= until {
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("etcdctl watch printed {line:?}: {e}"));
                seen += v["Events"].as_array().map_or(0, Vec::len);
                responses.push(v);
                if seen >= events && extra.is_none() {
                    extra = Some(Instant::now() + Duration::from_millis(300));
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
        // Its stdout closed: it is exiting by itself.
        child.wait().expect("wait for etcdctl watch").code()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let _ = reader.join();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (responses, stderr, code)
}

fn watch_events(responses: &[Value]) -> Vec<Value> {
    responses
        .iter()
        .flat_map(|r| r["Events"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn watch() {
    let p = Pair::new();
    p.same(&["put", "a", "1"]);
    p.same(&["put", "b", "1"]);
    p.same(&["put", "a", "2"]);
    p.same(&["del", "a"]);
    p.same(&["put", "a", "3"]);
    p.same(&["put", "ab", "x"]);
    p.same_in(&["txn"], Some("\nput c 1\nput a 4\ndel b\nput ac y\n\n\n"));
    p.same(&["del", "a", "b", "--prev-kv"]);
    p.same(&["put", "z", "last"]);
    let current = revision(&p.same(&["get", "z"]));

    for args in [
        &["a", "--rev=1"][..],
        &["a", "--rev=3", "--prev-kv"],
        &["a", "--prefix", "--rev=1", "--prev-kv"],
        &["a", "c", "--rev=2"],
        &["", "--prefix", "--rev=1"],
        &["--rev=7", "b", "--prev-kv"],
        &["nothing", "--rev=1"],
        &["z", "--rev", "11"],
    ] {
        let b = p.run(Side::Batchkv, "json", &[&["watch"], args].concat(), None);
        assert_eq!(b.code, 0, "batchkv watch {args:?}: {b:?}");
        let b_resp: Vec<Value> = b
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("batchkv watch prints JSON lines"))
            .collect();
        let mut b_events = watch_events(&b_resp);
        let (e_resp, e_err, _) = etcd_watch(&p, args, b_events.len());
        let mut e_events = watch_events(&e_resp);
        for ev in e_events.iter_mut().chain(b_events.iter_mut()) {
            normalize(ev, &HashMap::new());
        }
        assert_eq!(
            e_events, b_events,
            "watch {args:?}: events differ (left etcd, right batchkv); etcd stderr {e_err}"
        );
        for r in e_resp.iter().chain(&b_resp) {
            assert_eq!(
                r["Header"]["revision"], current,
                "watch {args:?}: header of {r}"
            );
            assert_eq!(r["Canceled"], false);
        }
    }
    // Simple output of one replay, event by event.
    let b = p.run(
        Side::Batchkv,
        "simple",
        &["watch", "a", "--prefix", "--rev=1", "--prev-kv"],
        None,
    );
    let mut child = p
        .command(Side::Etcd, "simple")
        .args(["watch", "a", "--prefix", "--rev=1", "--prev-kv"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    let stdout = child.stdout.take().expect("stdout");
    let want = b.stdout.lines().count();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .take(want)
            .map(|l| l.unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lines.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let e_lines = lines.join().expect("reader");
    assert_eq!(
        e_lines.join("\n") + "\n",
        b.stdout,
        "simple watch output differs"
    );

    // Compaction: a watch from below it is cancelled; from it on, it replays.
    let (e, b) = p.both("json", &["compaction", "6"], None);
    assert_eq!((e.code, b.code), (0, 0));
    let b = p.run(
        Side::Batchkv,
        "json",
        &["watch", "a", "--prefix", "--rev=6"],
        None,
    );
    assert_eq!(b.code, 0, "{b:?}");
    let mut b_events = watch_events(
        &b.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect::<Vec<Value>>(),
    );
    let (e_resp, _, _) = etcd_watch(&p, &["a", "--prefix", "--rev=6"], b_events.len());
    let mut e_events = watch_events(&e_resp);
    for ev in e_events.iter_mut().chain(b_events.iter_mut()) {
        normalize(ev, &HashMap::new());
    }
    assert_eq!(e_events, b_events, "watch from the compacted revision");

    let b = p.run(Side::Batchkv, "json", &["watch", "a", "--rev=5"], None);
    let (e_resp, e_err, e_code) = etcd_watch(&p, &["a", "--rev=5"], 0);
    assert_eq!(
        e_code,
        Some(5),
        "etcdctl exits 5 on a cancelled watch: {e_err}"
    );
    assert_eq!(b.code, 5, "{b:?}");
    let mut bj: Value = serde_json::from_str(b.stdout.trim()).expect("JSON");
    let mut ej = e_resp.first().cloned().expect("a cancel response");
    normalize(&mut bj, &HashMap::new());
    normalize(&mut ej, &HashMap::new());
    assert_eq!(ej, bj, "cancelled watch response");
    let err_lines = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("Error: ") || l.starts_with("watch was canceled"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(err_lines(&e_err), err_lines(&b.stderr));

    // Argument errors.
    for args in [&["watch"][..], &["watch", "a", "b", "--prefix", "--rev=1"]] {
        let b = p.run(Side::Batchkv, "json", args, None);
        let (_, e_err, e_code) = etcd_watch(&p, &args[1..], 0);
        assert_eq!(Some(b.code), e_code, "{args:?}: {b:?} / {e_err}");
        assert_eq!(
            b.error_line(),
            e_err.lines().find(|l| l.starts_with("Error: ")),
            "{args:?}"
        );
    }
}

/// Flags anywhere, etcdctl's global flags, `--` and stdin.
#[test]
fn command_line_syntax() {
    let p = Pair::new();
    p.same(&["--command-timeout=5s", "put", "--prev-kv", "--", "-k", "v"]);
    p.same(&["put", "--", "-k2", "-v"]);
    p.same(&["put", "--prev-kv", "k", "w", "-w", "json"]);
    p.same(&["get", "--keys-only=true", "--prefix", "--", "-"]);
    p.same(&["get", "--prefix=false", "--", "-k"]);
    p.same(&["get", "--rev", "2", "--", "-k"]);
    p.same(&[
        "--dial-timeout",
        "2s",
        "get",
        "--limit=0x1",
        "--prefix",
        "--",
        "-",
    ]);
    p.same_in(&["put", "from-stdin"], Some("piped"));
    p.same(&["get", "from-stdin"]);
    for args in [
        &["get", "a", "--keys-only=maybe"][..],
        &["get", "a", "-x"],
        &["get", "a", "--rev"],
        &["lease", "grant", "-1"],
    ] {
        p.same_error(args, None);
    }
}

/// batchkv's own commands (no etcd counterpart).
#[test]
fn stats_checkpoint_bench() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(BATCHKV)
            .arg(format!("--data-dir={}", data.display()))
            .args(args)
            .output()
            .expect("run batchkv");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bench = run(&[
        "bench",
        "--clients=4",
        "--ops=400",
        "--value-size=32",
        "--keys=100",
    ]);
    assert!(bench.contains("ops/s"), "{bench}");
    let stats = run(&["stats"]);
    assert!(stats.contains("revision: 401"), "{stats}");
    assert!(stats.contains("keys (with history): 100"), "{stats}");
    let js: Value = serde_json::from_str(run(&["-w", "json", "stats"]).trim()).expect("JSON");
    assert_eq!(js["revision"], 401);
    assert_eq!(js["keys"], 100);
    let cp = dir.path().join("cp");
    let cp_arg = cp.display().to_string();
    assert!(run(&["checkpoint", &cp_arg]).contains("revision 401"));
    let out = Command::new(BATCHKV)
        .arg(format!("--data-dir={cp_arg}"))
        .args(["-w", "json", "get", "bench/", "--prefix", "--count-only"])
        .output()
        .expect("run batchkv");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (v["count"].as_i64(), v["header"]["revision"].as_i64()),
        (Some(100), Some(401))
    );
    // Refused: the checkpoint dir exists now.
    let out = Command::new(BATCHKV)
        .arg(format!("--data-dir={}", data.display()))
        .args(["checkpoint", &cp_arg])
        .output()
        .expect("run batchkv");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));
}

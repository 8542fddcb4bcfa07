//! `batchkv serve` killed and stopped under real clients:
//!
//! - kill -9 while etcdctl writers run: after a restart on the same data dir, every put that
//!   etcdctl saw acknowledged is there with its value (a few rounds, one data dir);
//! - SIGTERM with a watch stream and a keep-alive stream open: the server exits by itself with
//!   status 0 (a graceful shutdown), and everything written, the lease included, is there
//!   after a restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use batchkv_testkit::{BatchkvServer, CtlOutput};
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
/// Rounds of writes and kills on one data dir.
const ROUNDS: usize = 3;
/// Writers per round, each running etcdctl puts one after another.
const WRITERS: usize = 3;
/// Puts acknowledged in a round before the kill.
const ACKED_BEFORE_KILL: usize = 40;

fn b64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .expect("etcdctl's JSON has base64 bytes");
    String::from_utf8(bytes).expect("UTF-8 keys and values")
}

/// Every key and value on the server.
fn contents(server: &BatchkvServer) -> BTreeMap<String, String> {
    let out = server.ctl_json(&["get", "", "--prefix"], None);
    assert!(out.ok, "get everything: {out:?}\n{}", server.log_tail());
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (b64(&kv["key"]), b64(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}

fn ok(out: CtlOutput, what: &str) -> CtlOutput {
    assert!(out.ok, "{what}: {out:?}");
    out
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    let mut server = BatchkvServer::start(BATCHKV);
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..ROUNDS {
        let endpoint = server.endpoint();
        let round_acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (acks, stop, endpoint) = (
                    Arc::clone(&round_acked),
                    Arc::clone(&stop),
                    endpoint.clone(),
                );
                std::thread::spawn(move || {
                    // Until the kill: a put that fails afterwards is not acknowledged.
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (key, value) =
                            (format!("r{round}/w{w}/{i:04}"), format!("v{round}.{w}.{i}"));
                        let out = std::process::Command::new("etcdctl")
                            .env("ETCDCTL_API", "3")
                            .args([
                                format!("--endpoints={endpoint}"),
                                "--command-timeout=5s".into(),
                                "--dial-timeout=1s".into(),
                                "put".into(),
                                key.clone(),
                                value.clone(),
                            ])
                            .output()
                            .expect("run etcdctl");
                        if out.status.success() && out.stdout == b"OK\n" {
                            acks.lock().expect("acks").push((key, value));
                        } else if !stop.load(Ordering::Relaxed) {
                            // A timeout on a loaded machine: its outcome is unknown, like
                            // that of the puts in flight at the kill (a server refusing
                            // writes fails the round's count of acknowledged puts instead).
                            eprintln!("a put failed before the kill: {out:?}");
                        }
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while round_acked.lock().expect("acks").len() < ACKED_BEFORE_KILL {
            assert!(
                Instant::now() < deadline,
                "round {round}: too few puts acknowledged\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The writers are mid-put: the kill lands among requests in flight.
        stop.store(true, Ordering::Relaxed);
        server.kill();
        for w in writers {
            w.join().expect("a writer panicked");
        }
        acked.extend(round_acked.lock().expect("acks").drain(..));
        server.restart();
        let stored = contents(&server);
        let lost: Vec<_> = acked
            .iter()
            .filter(|(k, v)| stored.get(*k) != Some(*v))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged puts lost after kill -9, e.g. {:?}\n{}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)],
            server.log_tail()
        );
        // Nothing but what the writers put (acknowledged or in flight at the kill).
        assert!(
            stored.keys().all(|k| k.starts_with('r')),
            "round {round}: {stored:?}"
        );
    }
    // Still writable, and the revision counts on from where it was.
    let before: Value =
        serde_json::from_str(&ok(server.ctl_json(&["get", "x"], None), "get").stdout)
            .expect("JSON");
    let put: Value =
        serde_json::from_str(&ok(server.ctl_json(&["put", "x", "y"], None), "put").stdout)
            .expect("JSON");
    assert_eq!(
        put["header"]["revision"].as_i64(),
        before["header"]["revision"].as_i64().map(|r| r + 1)
    );
}

#[test]
fn sigterm_exits_cleanly_with_streams_open() {
    let mut server = BatchkvServer::start(BATCHKV);
    ok(server.ctl(&["put", "a", "1"], None), "put");
    let grant = ok(server.ctl_json(&["lease", "grant", "600"], None), "grant");
    let lease = serde_json::from_str::<Value>(&grant.stdout).expect("JSON")["ID"]
        .as_i64()
        .expect("a lease id");
    let lease_hex = format!("{lease:x}");
    ok(
        server.ctl(
            &["put", "leased", "v", &format!("--lease={lease_hex}")],
            None,
        ),
        "leased put",
    );
    ok(
        server.ctl(
            &["txn", "--interactive=false"],
            Some(b"\nput b 2\nput c 3\n\n\n".as_slice()),
        ),
        "txn",
    );
    ok(server.ctl(&["del", "c"], None), "del");
    let want = contents(&server);
    let revision = |s: &BatchkvServer| -> i64 {
        let out = ok(s.ctl_json(&["get", "a"], None), "get");
        serde_json::from_str::<Value>(&out.stdout).expect("JSON")["header"]["revision"]
            .as_i64()
            .expect("a revision")
    };
    let rev = revision(&server);

    // Streams open at the SIGTERM: a watch and a keep-alive.
    let spawn = |args: &[&str]| {
        server
            .etcdctl()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start etcdctl")
    };
    let mut watch = spawn(&["watch", "", "--prefix"]);
    let mut keep_alive = spawn(&["lease", "keep-alive", &lease_hex]);
    std::thread::sleep(Duration::from_millis(500));
    let status = server.stop();
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = keep_alive.kill();
    let _ = keep_alive.wait();
    assert!(
        status.success(),
        "batchkv serve exited with {status} after SIGTERM; its log:\n{}",
        server.log_tail()
    );

    server.restart();
    assert_eq!(contents(&server), want, "after a SIGTERM and a restart");
    assert_eq!(revision(&server), rev);
    let ttl = ok(
        server.ctl_json(&["lease", "timetolive", &lease_hex, "--keys"], None),
        "timetolive",
    );
    let ttl: Value = serde_json::from_str(&ttl.stdout).expect("JSON");
    assert_eq!(ttl["granted-ttl"], 600, "{ttl}");
    assert_eq!(
        ttl["keys"],
        serde_json::json!([base64::engine::general_purpose::STANDARD.encode("leased")]),
        "{ttl}"
    );
    // A second clean stop, with nothing open.
    assert!(server.stop().success(), "{}", server.log_tail());
}

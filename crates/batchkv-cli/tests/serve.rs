//! `batchkv serve` as a process: etcdctl talks to it, `/metrics` and `/health` answer, SIGTERM
//! stops it with exit code 0 and every acknowledged write on disk.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");

/// Kills the server if the test fails before it stops it.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics port");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_answers_etcdctl_and_stops_on_sigterm() {
    let dir = batchkv_testkit::temp_dir();
    let data = dir.path().join("data");
    let [port, metrics_port] = batchkv_testkit::free_ports::<2>();
    let endpoint = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let child = Command::new(BATCHKV)
        .arg("serve")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls=http://{endpoint}"))
        .arg(format!("--listen-metrics-urls=http://{metrics}"))
        .args(["--name", "serve-test", "--log-level", "warn"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start batchkv serve");
    let mut server = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !batchkv_testkit::endpoint_health(&endpoint).status.success() {
        assert!(
            Instant::now() < deadline,
            "batchkv serve never became healthy"
        );
        assert!(
            server.0.try_wait().expect("poll the server").is_none(),
            "batchkv serve exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let put = etcdctl(&endpoint, &["put", "greeting", "hello"]);
    assert!(put.status.success(), "{put:?}");
    assert_eq!(String::from_utf8_lossy(&put.stdout), "OK\n");
    let get = etcdctl(&endpoint, &["get", "greeting", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "hello\n");
    let members = etcdctl(&endpoint, &["member", "list"]);
    assert!(
        String::from_utf8_lossy(&members.stdout).contains("serve-test"),
        "{members:?}"
    );
    let missing = etcdctl(&endpoint, &["lease", "revoke", "1234"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("requested lease not found"),
        "{missing:?}"
    );

    // etcdctl stores the snapshot (a tar of a checkpoint, with etcd's SHA-256 trailer).
    let snap = dir.path().join("snap.db");
    let saved = etcdctl(
        &endpoint,
        &["snapshot", "save", &snap.display().to_string()],
    );
    assert!(saved.status.success(), "{saved:?}");
    let len = std::fs::metadata(&snap).expect("the snapshot file").len();
    assert_eq!(len % 512, 32, "a tar archive and its SHA-256");

    let text = http_get(&metrics, "/metrics");
    assert!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    assert!(text.contains("batchkv_"), "{text}");
    assert!(http_get(&metrics, "/health").contains(" 200 "));

    let pid = server.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.0.try_wait().expect("poll the server") {
            break s;
        }
        assert!(Instant::now() < deadline, "batchkv serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");

    // The write is in the data dir.
    let out = Command::new(BATCHKV)
        .arg(format!("--data-dir={}", data.display()))
        .args(["get", "greeting", "-w", "json"])
        .output()
        .expect("run batchkv get");
    // "hello", base64.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"value\":\"aGVsbG8=\""),
        "{out:?}"
    );
}

#[test]
fn serve_refuses_bad_flags() {
    for args in [
        &["serve", "--listen-client-urls=https://127.0.0.1:1"][..],
        &[
            "serve",
            "--auto-compaction-mode=weekly",
            "--auto-compaction-retention=1",
        ],
        &["serve", "--no-such-flag"],
        &[
            "serve",
            "--name=n4",
            "--initial-cluster=n1=http://127.0.0.1:1",
        ],
        &["serve", "--initial-cluster-state=bogus"],
    ] {
        let out = Command::new(BATCHKV).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }
    let help = Command::new(BATCHKV)
        .args(["serve", "--help"])
        .output()
        .expect("run");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--listen-client-urls"));
}

/// etcdctl dials a URL endpoint (`http://127.0.0.1:port`, what MemberList reports) for its
/// Maintenance calls with that URL as the HTTP/2 authority; etcd ignores it, and so must batchkv
/// (third_party/h2: h2 alone reset those streams with PROTOCOL_ERROR).
#[test]
fn maintenance_through_url_endpoints() {
    let server = batchkv_testkit::BatchkvServer::start(BATCHKV);
    let url = server.client_url();
    for args in [
        &["put", "k", "v"][..],
        &["endpoint", "status"],
        &["endpoint", "hashkv"],
        &["endpoint", "health"],
        &["defrag"],
        &["endpoint", "status", "--cluster"],
    ] {
        let out = etcdctl(&url, args);
        // `endpoint health` reports on stderr; a failure would say "Failed" or "error".
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            out.status.success() && !err.contains("fail") && !err.contains("error"),
            "etcdctl --endpoints={url} {args:?}: {out:?}"
        );
    }
    let out = etcdctl(&url, &["endpoint", "status", "-w", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("\"Endpoint\":\"{url}\"")), "{text}");
}

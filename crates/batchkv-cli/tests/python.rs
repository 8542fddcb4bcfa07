//! A client in a third language: python/smoke.py (Python's `etcd3` over gRPC: KV, ranges, a
//! txn, a lease with a key and its revoke, a watch) and python/gateway_smoke.py (Python's
//! `etcd3gw` over etcd's HTTP/JSON gateway: the same kinds of steps) against `batchkv serve` and
//! against a real etcd 3.4. Each script must pass on both; `etcd3gw` also against `batchkv
//! serve` over TLS with client-certificate auth (HTTP/1.1 over TLS: ALPN `http/1.1`).
//!
//! The clients live in a venv at `$HOME/.cache/batchkv/py`, which `cargo xtask doctor`
//! installs (python/requirements.txt); without it these tests fail, naming doctor.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchkv_testkit::{BatchkvServer, ClientTls, Etcd, ServeOptions, TestPki};

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python/smoke.py");
const GATEWAY_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python/gateway_smoke.py");
/// The script's own calls time out after 20 s each; this bounds the whole run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// The venv's python (`cargo xtask doctor` makes it).
fn python() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let python = PathBuf::from(home).join(".cache/batchkv/py/bin/python");
    assert!(
        python.is_file(),
        "no Python venv with the etcd3 client at {}: `cargo xtask doctor` installs it",
        python.display()
    );
    python
}

/// Runs the smoke script against `endpoint`; panics with its output unless it passes.
fn smoke(endpoint: &str, what: &str) {
    run_script(SCRIPT, "smoke: ok\n", endpoint, what);
}

/// Runs `script` against `endpoint`; panics with its output unless it exits 0 and its output
/// ends with `ok_line`.
fn run_script(script: &str, ok_line: &str, endpoint: &str, what: &str) {
    run_script_with(script, &[], ok_line, endpoint, what);
}

/// [`run_script`] with `args` after the endpoint.
fn run_script_with(
    script: &str,
    args: &[&std::path::Path],
    ok_line: &str,
    endpoint: &str,
    what: &str,
) {
    let dir = batchkv_testkit::temp_dir();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &PathBuf| std::fs::File::create(p).expect("create an output file");
    let mut child = Command::new(python())
        .arg(script)
        .arg(endpoint)
        .args(args)
        // requests lets these override the CA etcd3gw sets on its session (the TLS test's).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        // etcd3 0.12's generated code with current protobuf (see python/smoke.py).
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn()
        .expect("start python");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll python") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let (stdout, stderr) = (read(&out), read(&err));
    assert!(
        status.is_some_and(|s| s.success()) && stdout.ends_with(ok_line),
        "{script} against {what} ({endpoint}): {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        status.map_or_else(
            || format!("no exit within {RUN_TIMEOUT:?}"),
            |s| s.to_string()
        ),
    );
}

#[test]
fn etcd3_python_client_on_etcd() {
    let etcd = Etcd::start();
    smoke(etcd.endpoint(), "etcd 3.4");
}

#[test]
fn etcd3_python_client_on_batchkv() {
    let server = BatchkvServer::start(BATCHKV);
    smoke(&server.endpoint(), "batchkv serve");
    assert!(
        server.log_tail().lines().all(|l| !l.contains("panicked")),
        "the server panicked:\n{}",
        server.log_tail()
    );
}

#[test]
fn etcd3gw_python_client_on_etcd() {
    let etcd = Etcd::start();
    run_script(
        GATEWAY_SCRIPT,
        "gateway smoke: ok\n",
        etcd.endpoint(),
        "etcd 3.4",
    );
}

#[test]
fn etcd3gw_python_client_on_batchkv() {
    let server = BatchkvServer::start(BATCHKV);
    run_script(
        GATEWAY_SCRIPT,
        "gateway smoke: ok\n",
        &server.endpoint(),
        "batchkv serve",
    );
    assert!(
        server.log_tail().lines().all(|l| !l.contains("panicked")),
        "the server panicked:\n{}",
        server.log_tail()
    );
}

#[test]
fn etcd3gw_python_client_over_tls_with_client_cert_auth_on_batchkv() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let server = BatchkvServer::start_with(
        BATCHKV,
        ServeOptions {
            args: vec![
                format!("--cert-file={}", pki.server.cert.display()),
                format!("--key-file={}", pki.server.key.display()),
                format!("--trusted-ca-file={}", pki.ca.display()),
                "--client-cert-auth".to_owned(),
            ],
            tls: Some(ClientTls {
                ca: pki.ca.clone(),
                cert_key: Some((pki.client.cert.clone(), pki.client.key.clone())),
            }),
            ..ServeOptions::default()
        },
    );
    run_script_with(
        GATEWAY_SCRIPT,
        &[&pki.ca, &pki.client.cert, &pki.client.key],
        "gateway smoke: ok\n",
        &server.endpoint(),
        "batchkv serve over TLS",
    );
    assert!(
        server.log_tail().lines().all(|l| !l.contains("panicked")),
        "the server panicked:\n{}",
        server.log_tail()
    );
}

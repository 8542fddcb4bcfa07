//! `batchkv serve` with etcd's TLS flags, against etcdctl 3.4: with `--client-cert-auth`
//! etcdctl gets answers with `--cacert --cert --key` and none without `--cert`; the flag
//! errors are etcd's.

use std::process::{Command, Stdio};

use batchkv_testkit::{BatchkvServer, ClientTls, ServeOptions, TestPki};

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");

fn server_flags(pki: &TestPki, client_cert_auth: bool) -> Vec<String> {
    let mut args = vec![
        format!("--cert-file={}", pki.server.cert.display()),
        format!("--key-file={}", pki.server.key.display()),
    ];
    if client_cert_auth {
        args.push(format!("--trusted-ca-file={}", pki.ca.display()));
        args.push("--client-cert-auth".to_owned());
    }
    args
}

#[test]
fn etcdctl_needs_a_trusted_client_certificate_with_client_cert_auth() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    // Healthy (checked by the launcher) with etcdctl's --cacert --cert --key.
    let server = BatchkvServer::start_with(
        BATCHKV,
        ServeOptions {
            args: server_flags(&pki, true),
            tls: Some(ClientTls {
                ca: pki.ca.clone(),
                cert_key: Some((pki.client.cert.clone(), pki.client.key.clone())),
            }),
            ..ServeOptions::default()
        },
    );
    let put = server.ctl(&["put", "k", "v"], None);
    assert!(put.ok, "{put:?}");
    let got = server.ctl(&["get", "k", "--print-value-only"], None);
    assert_eq!(got.stdout.trim(), "v", "{got:?}");
    let members = server.ctl(&["member", "list"], None);
    assert!(
        members.stdout.contains(&server.client_url()),
        "MemberList advertises the https URL: {members:?}"
    );

    let ctl = |flags: &[String]| {
        let mut cmd = server.etcdctl_bare();
        cmd.args(flags)
            .args(["--dial-timeout=5s", "--command-timeout=10s", "get", "k"])
            .stdin(Stdio::null());
        cmd.output().expect("run etcdctl")
    };
    // No client certificate: refused.
    let out = ctl(&[format!("--cacert={}", pki.ca.display())]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains('v'));
    // A certificate of another CA: refused.
    let out = ctl(&[
        format!("--cacert={}", pki.ca.display()),
        format!("--cert={}", pki.untrusted_client.cert.display()),
        format!("--key={}", pki.untrusted_client.key.display()),
    ]);
    assert!(!out.status.success(), "{out:?}");
    // Plaintext: refused.
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .args(["--dial-timeout=5s", "--command-timeout=10s", "get", "k"])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn without_client_cert_auth_etcdctl_needs_only_the_ca() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let server = BatchkvServer::start_with(
        BATCHKV,
        ServeOptions {
            args: server_flags(&pki, false),
            tls: Some(ClientTls {
                ca: pki.ca.clone(),
                cert_key: None,
            }),
            ..ServeOptions::default()
        },
    );
    let put = server.ctl(&["put", "k", "v"], None);
    assert!(put.ok, "{put:?}");
    let got = server.ctl(&["get", "k", "--print-value-only"], None);
    assert_eq!(got.stdout.trim(), "v", "{got:?}");
}

/// `batchkv serve ARGS` that must fail at once: its stderr.
fn serve_error(args: &[String]) -> String {
    let dir = batchkv_testkit::temp_dir();
    let port = batchkv_testkit::free_port();
    let out = Command::new(BATCHKV)
        .arg("serve")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run batchkv serve");
    assert_eq!(out.status.code(), Some(1), "{out:?} (port {port})");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tls_flag_errors_are_clear() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let port = batchkv_testkit::free_port();
    let https = format!("--listen-client-urls=https://127.0.0.1:{port}");
    let http = format!("--listen-client-urls=http://127.0.0.1:{port}");
    let cert = format!("--cert-file={}", pki.server.cert.display());
    let key = format!("--key-file={}", pki.server.key.display());

    // etcd's own words for an https URL without a certificate.
    let e = serve_error(std::slice::from_ref(&https));
    assert!(
        e.contains(&format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:{port} with HTTPS scheme"
        )),
        "{e}"
    );
    // A certificate without its key.
    let e = serve_error(&[https.clone(), cert.clone()]);
    assert!(
        e.contains("KeyFile and CertFile must both be present"),
        "{e}"
    );
    // TLS files with an http URL.
    let e = serve_error(&[http, cert.clone(), key.clone()]);
    assert!(
        e.contains("is http while --cert-file and --key-file are given"),
        "{e}"
    );
    // --client-cert-auth without a CA to check against.
    let e = serve_error(&[
        https.clone(),
        cert.clone(),
        key.clone(),
        "--client-cert-auth".to_owned(),
    ]);
    assert!(
        e.contains("--client-cert-auth needs --trusted-ca-file"),
        "{e}"
    );
    // A key that is not the certificate's.
    let e = serve_error(&[
        https.clone(),
        cert,
        format!("--key-file={}", pki.client.key.display()),
    ]);
    assert!(
        e.contains("--cert-file/--key-file/--trusted-ca-file"),
        "{e}"
    );
    // A missing file.
    let e = serve_error(&[https, "--cert-file=/nonexistent.pem".to_owned(), key]);
    assert!(e.contains("--cert-file: /nonexistent.pem"), "{e}");
}

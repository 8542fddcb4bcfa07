//! TLS on the client listeners (rustls through tonic), with certificates generated at run
//! time: with a trusted CA (etcd's `--trusted-ca-file`, `--client-cert-auth`) only clients
//! presenting a certificate signed by it get an answer; without one, any TLS client does; a
//! plaintext client never does.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use batchkv_server::{ServerConfig, TlsConfig};
use batchkv_testkit::TestPki;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use common::TestServer;

async fn start(pki: &TestPki, client_auth: bool) -> TestServer {
    let tls = TlsConfig {
        cert_pem: pki.server.cert_pem.clone().into_bytes(),
        key_pem: pki.server.key_pem.clone().into_bytes(),
        client_ca_pem: client_auth.then(|| pki.ca_pem.clone().into_bytes()),
    };
    TestServer::start_with(|c| ServerConfig {
        tls: Some(tls),
        ..c
    })
    .await
}

/// Connects to `url` (a request times out after 20 s, so a refusal cannot hang the test) and
/// puts then gets a key: the first error.
async fn put_get(url: &str, tls: Option<TlsOptions>) -> Result<(), etcd_client::Error> {
    let mut options = ConnectOptions::new().with_timeout(Duration::from_secs(20));
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    let mut c = Client::connect([url], Some(options)).await?;
    c.put("k", "v", None).await?;
    let got = c.get("k", None).await?;
    assert_eq!(got.kvs()[0].value(), b"v");
    Ok(())
}

fn trusting(pki: &TestPki) -> TlsOptions {
    TlsOptions::new().ca_certificate(Certificate::from_pem(&pki.ca_pem))
}

fn with_cert(tls: TlsOptions, cert: &batchkv_testkit::CertFiles) -> TlsOptions {
    tls.identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem))
}

/// A refused connection: the call failed in the client's transport (a `tonic::transport::Error`
/// under the status: the server never answered), with `reason` in the chain of causes when
/// the failure is one the client is told (a TLS alert, its own verification); a mere closed
/// connection has no reason to check (broken pipe, reset or closed, as the race goes).
fn assert_refused(r: Result<(), etcd_client::Error>, reason: Option<&str>) {
    let e = r.expect_err("refused");
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain = format!("{chain}: {s}");
        source = s.source();
    }
    let transport = match &e {
        etcd_client::Error::GRpcStatus(s) => std::error::Error::source(s)
            .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some()),
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    };
    assert!(transport, "expected a refused connection, got {e:?}");
    if let Some(reason) = reason {
        assert!(chain.contains(reason), "expected {reason:?} in: {chain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_auth_admits_only_certificates_of_the_trusted_ca() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let server = start(&pki, true).await;
    let url = format!("https://{}", server.endpoint);

    put_get(&url, Some(with_cert(trusting(&pki), &pki.client)))
        .await
        .unwrap();
    assert_refused(
        put_get(&url, Some(trusting(&pki))).await,
        Some("CertificateRequired"),
    );
    assert_refused(
        put_get(&url, Some(with_cert(trusting(&pki), &pki.untrusted_client))).await,
        None,
    );
    assert_refused(
        put_get(&format!("http://{}", server.endpoint), None).await,
        None,
    );

    // MemberList advertises https.
    let mut c = Client::connect(
        [url.as_str()],
        Some(ConnectOptions::new().with_tls(with_cert(trusting(&pki), &pki.client))),
    )
    .await
    .unwrap();
    let members = c.member_list().await.unwrap();
    assert_eq!(
        members.members()[0].client_urls(),
        std::slice::from_ref(&url)
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_ca_any_tls_client_is_served_and_plaintext_is_not() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let server = start(&pki, false).await;
    let url = format!("https://{}", server.endpoint);

    put_get(&url, Some(trusting(&pki))).await.unwrap();
    // A client certificate is not asked for, so any is fine (it is not even sent).
    put_get(&url, Some(with_cert(trusting(&pki), &pki.untrusted_client)))
        .await
        .unwrap();
    assert_refused(
        put_get(&format!("http://{}", server.endpoint), None).await,
        None,
    );
    // A client that does not trust the server's CA refuses the server.
    let other_ca = std::fs::read_to_string(&pki.untrusted_ca).unwrap();
    assert_refused(
        put_get(
            &url,
            Some(TlsOptions::new().ca_certificate(Certificate::from_pem(other_ca))),
        )
        .await,
        Some("UnknownIssuer"),
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_before_listening() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let config = |cert: &str, key: &str| ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(TlsConfig {
            cert_pem: cert.as_bytes().to_vec(),
            key_pem: key.as_bytes().to_vec(),
            client_ca_pem: None,
        }),
        ..ServerConfig::default()
    };
    let store = batchkv::Store::open(dir.path().join("data")).unwrap();
    // A key that is not the certificate's.
    let e = batchkv_server::Server::bind(
        store.clone(),
        config(&pki.server.cert_pem, &pki.client.key_pem),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // Not PEM at all.
    let e = batchkv_server::Server::bind(store.clone(), config("not a cert", "not a key"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    batchkv_server::blocking::close(&store).await.unwrap();
}

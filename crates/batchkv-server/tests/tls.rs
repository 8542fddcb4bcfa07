//! TLS on the client listeners (rustls, the streams handed to tonic), with certificates
//! generated at run time: with a trusted CA (etcd's `--trusted-ca-file`, `--client-cert-auth`)
//! only clients presenting a certificate signed by it get an answer; without one, any TLS
//! client does; a plaintext client never does. gRPC (ALPN `h2`) and the HTTP/JSON gateway's
//! HTTP/1.1 clients (ALPN `http/1.1`, as Python's `requests` offers) alike.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use batchkv_server::{ServerConfig, TlsConfig};
use batchkv_testkit::TestPki;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

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
    // The reason (the server's `CertificateRequired` alert) is not checked here: whether the
    // client's channel reports it or a mere "connection closed" depends on whether its request
    // was already on the connection when the alert came (a race in the client); the HTTP/1.1
    // test below reads the alert itself.
    assert_refused(put_get(&url, Some(trusting(&pki))).await, None);
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

/// One HTTP/1.1 `POST path` of the JSON `body` over TLS, the client offering ALPN `http/1.1`
/// only (as Python's `requests` does), presenting `cert` if any: the status and the JSON
/// answer, or the first error (the handshake, the write, the read: a refused client
/// certificate is told after the client's side of the handshake).
async fn http1_post(
    endpoint: &str,
    pki: &TestPki,
    cert: Option<&batchkv_testkit::CertFiles>,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<(u16, serde_json::Value)> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    // ring, the only provider built (as for the server).
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(endpoint).await?;
    let exchange = async {
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await?;
        tls.flush().await?;
        // The head, then Content-Length bytes of body.
        let mut got = Vec::new();
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 4096];
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(got[..head_end].to_vec()).unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length in {head}"));
        let mut body = got[head_end..].to_vec();
        while body.len() < length {
            let mut buf = [0u8; 4096];
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            body.extend_from_slice(&buf[..n]);
        }
        Ok((status, serde_json::from_slice(&body).unwrap()))
    };
    // A refusal cannot hang the test.
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_http1_clients_over_tls_with_client_cert_auth() {
    let dir = batchkv_testkit::temp_dir();
    let pki = TestPki::generate(dir.path());
    let server = start(&pki, true).await;
    // base64: "foo" is Zm9v, "bar" is YmFy.
    let put = serde_json::json!({"key": "Zm9v", "value": "YmFy"});
    let range = serde_json::json!({"key": "Zm9v"});

    let (status, answer) = http1_post(
        &server.endpoint,
        &pki,
        Some(&pki.client),
        "/v3/kv/put",
        &put,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["header"]["revision"].is_string(), "{answer}");
    let (status, answer) = http1_post(
        &server.endpoint,
        &pki,
        Some(&pki.client),
        "/v3/kv/range",
        &range,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["count"], "1", "{answer}");
    assert_eq!(answer["kvs"][0]["value"], "YmFy", "{answer}");

    // Without a certificate, or with one the server does not trust: refused.
    // The server's alert reaches this client, which reads it itself (no connection pool in
    // between to race with).
    let e = http1_post(&server.endpoint, &pki, None, "/v3/kv/range", &range)
        .await
        .expect_err("refused without a client certificate");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    http1_post(
        &server.endpoint,
        &pki,
        Some(&pki.untrusted_client),
        "/v3/kv/range",
        &range,
    )
    .await
    .expect_err("refused with an untrusted client certificate");
    server.stop().await.unwrap();
}

//! The HTTP/2 settings of `--max-concurrent-streams`, `--grpc-keepalive-interval` and
//! `--grpc-keepalive-timeout` reach the wire: a raw HTTP/2 client (the `h2` crate, or bytes on
//! a TCP socket) sees the stream bound in the server's SETTINGS, and a peer that never answers
//! the server's PINGs is disconnected while one that answers stays connected. Every wait is
//! for an event, bounded generously; nothing asserts on durations.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use batchkv_server::ServerConfig;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::TestServer;

/// The bound on every wait.
const PATIENCE: Duration = Duration::from_secs(30);

/// An h2 client connection to `endpoint`, its connection driven by a task.
async fn h2_connect(
    endpoint: &str,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(endpoint).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(conn))
}

/// Maintenance.Status over a raw h2 stream: the gRPC status in the trailers ("0": OK).
async fn grpc_status(send: &mut h2::client::SendRequest<Bytes>, endpoint: &str) -> String {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{endpoint}/etcdserverpb.Maintenance/Status"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut body) = ready.send_request(req, false).unwrap();
    // An empty StatusRequest: no compression, length 0.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("gRPC trailers");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_is_the_servers_http2_setting() {
    for bound in [2u32, 7] {
        let server = TestServer::start_with(|c| ServerConfig {
            max_concurrent_streams: bound,
            ..c
        })
        .await;
        let (mut send, _conn) = h2_connect(&server.endpoint).await;
        // A request's answer comes after the server's SETTINGS, which set the bound.
        assert_eq!(grpc_status(&mut send, &server.endpoint).await, "0");
        assert_eq!(send.current_max_send_streams(), bound as usize);
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_stream_waits_while_two_are_open_at_a_bound_of_two() {
    let server = TestServer::start_with(|c| ServerConfig {
        max_concurrent_streams: 2,
        ..c
    })
    .await;
    let (mut send, _conn) = h2_connect(&server.endpoint).await;
    assert_eq!(grpc_status(&mut send, &server.endpoint).await, "0");
    // Two Watch streams left open (request bodies never ended): the two slots.
    let mut open = Vec::new();
    for _ in 0..2 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/etcdserverpb.Watch/Watch",
                server.endpoint
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = send.clone().ready().await.unwrap();
        open.push(ready.send_request(req, false).unwrap());
    }
    // A third request is not sent: h2 holds it until a slot is free, so it gets no answer.
    let (third, mut third_body) = {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/etcdserverpb.Maintenance/Status",
                server.endpoint
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = send.clone().ready().await.unwrap();
        ready.send_request(req, false).unwrap()
    };
    third_body
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let mut third = Box::pin(third);
    // The Watch streams answer their headers; the third stays unanswered meanwhile.
    for (response, _) in &mut open {
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(
        futures_poll_once(&mut third).await.is_none(),
        "the third stream was answered while two were open"
    );
    // Ending one Watch frees a slot: the third is sent and answered.
    let (_, mut body) = open.pop().unwrap();
    body.send_reset(h2::Reason::CANCEL);
    let response = tokio::time::timeout(PATIENCE, third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await.unwrap();
}

/// Polls `f` once: its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;

/// What a peer that never answers PINGs saw before the server let it go.
#[derive(Debug, Default)]
struct Silent {
    pings: usize,
    goaway: bool,
}

/// Speaks HTTP/2 just enough (the preface, its SETTINGS, the ACK of the server's), then only
/// reads, never answering a PING, until the server closes the connection (or `PATIENCE`
/// passes: `None`).
async fn silent_peer(endpoint: &str) -> Option<Silent> {
    let mut tcp = TcpStream::connect(endpoint).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&frame_header(0, FRAME_SETTINGS, 0))
        .await
        .unwrap();
    let mut seen = Silent::default();
    let read = async {
        loop {
            let mut header = [0u8; 9];
            if tcp.read_exact(&mut header).await.is_err() {
                return; // closed (EOF or reset)
            }
            let len = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return;
            }
            match (header[3], header[4] & 1) {
                (FRAME_SETTINGS, 0) => {
                    // The one thing answered: the server's SETTINGS.
                    tcp.write_all(&frame_header(0, FRAME_SETTINGS, 1))
                        .await
                        .unwrap();
                }
                (FRAME_PING, 0) => seen.pings += 1,
                (FRAME_GOAWAY, _) => seen.goaway = true,
                _ => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, read).await.ok()?;
    Some(seen)
}

fn frame_header(len: u32, kind: u8, flags: u8) -> [u8; 9] {
    let l = len.to_be_bytes();
    [l[1], l[2], l[3], kind, flags, 0, 0, 0, 0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_a_peer_that_does_not_answer_pings_and_keeps_one_that_does() {
    let server = TestServer::start_with(|c| ServerConfig {
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_timeout: Some(Duration::from_secs(1)),
        ..c
    })
    .await;
    // h2 answers the server's PINGs by itself: this connection stays up while idle.
    let (mut send, conn) = h2_connect(&server.endpoint).await;
    assert_eq!(grpc_status(&mut send, &server.endpoint).await, "0");

    let silent = silent_peer(&server.endpoint)
        .await
        .expect("the server never closed a connection whose PINGs go unanswered");
    assert!(silent.pings >= 1, "closed without a PING first: {silent:?}");

    // The answering connection, idle all along (longer than interval + timeout, since the
    // silent one was dropped meanwhile), still serves on the same connection.
    assert!(!conn.is_finished(), "the answering connection was closed");
    assert_eq!(grpc_status(&mut send, &server.endpoint).await, "0");
    server.stop().await.unwrap();
}

//! A client that goes away in the middle of a watch (and of a keep-alive stream) leaves the
//! server working, and the watch's thread ends. Its own test binary: it counts the process's
//! watch threads.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_watch_breaks_nothing() {
    let server = TestServer::start().await;
    let mut writer = server.client().await;
    for round in 0..3 {
        let mut c = server.client().await;
        let mut s = c
            .watch("d/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        s.watch("e", None).await.unwrap();
        let lease = c.lease_grant(60, None).await.unwrap().id();
        let (mut keeper, _renewals) = c.lease_keep_alive(lease).await.unwrap();
        keeper.keep_alive().await.unwrap();
        for i in 0..50 {
            writer
                .put(format!("d/{round}/{i}"), vec![b'v'; 1000], None)
                .await
                .unwrap();
        }
        // Read a little, then vanish with events still queued.
        let first = tokio::time::timeout(Duration::from_secs(20), s.message())
            .await
            .expect("a response in time")
            .unwrap();
        assert!(first.is_some());
        drop(s);
        drop(keeper);
        drop(c);
    }
    // Every watch thread ends once its stream is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while batchkv_server::blocking::watch_threads() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} watch threads still run",
            batchkv_server::blocking::watch_threads()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still answers writes, reads and new watches.
    let mut c = server.client().await;
    c.put("after", "v", None).await.unwrap();
    let r = c
        .get(
            "d/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(r.count(), 150);
    let mut s = c.watch("after", None).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("created in time")
        .unwrap()
        .unwrap();
    assert!(created.created());
    server.stop().await.unwrap();
}

//! Many concurrent writes and watches do not mean many threads: a write awaits the batcher's
//! ticket in its own task (`Store::submit_async`), a watch is a task awaiting
//! `Watcher::recv_async`. Its own test binary: it counts the process's threads
//! (`/proc/self/status`), which would grow by one per request if writes or watches took a
//! thread each (the blocking pool grows on demand up to 256).

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use etcd_client::WatchOptions;

use common::TestServer;

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_puts_and_200_watches_add_no_threads_per_request() {
    let server = TestServer::start().await;
    let mut warm = server.client().await;
    warm.put("warm", "v", None).await.unwrap();
    let before = threads();

    // 200 watches on 4 streams, all open while the writes run.
    let mut streams = Vec::new();
    for s in 0..4 {
        let mut c = server.client().await;
        let mut w = c
            .watch(format!("w/{s}/0"), Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        for i in 1..50 {
            w.watch(
                format!("w/{s}/{i}"),
                Some(WatchOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        }
        streams.push((c, w));
    }

    // 2,000 puts in flight at once over 8 connections.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.client().await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..2_000u32 {
        let mut c = clients[n as usize % clients.len()].clone();
        tasks.spawn(async move {
            c.put(format!("w/{}/{}", n % 4, n % 50), format!("{n}"), None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision()
        });
    }
    let mut peak = threads();
    let mut revisions = Vec::new();
    while let Some(r) = tasks.join_next().await {
        revisions.push(r.unwrap());
        peak = peak.max(threads());
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 2_000, "every put got its own revision");
    assert!(
        peak < before + 64,
        "threads grew from {before} to {peak} under 2,000 concurrent puts and 200 watches"
    );
    drop(streams);
}

//! Maintenance.Defragment (and `etcdctl defrag`): after deleting and compacting most of the
//! data, it makes the reported size (Status' `dbSize`, what the quota measures) go down, and
//! what is left reads the same.

// A failed call fails the test where it stands (each call is its own line).
#![allow(clippy::unwrap_used)]

mod common;

use etcd_client::{DeleteOptions, GetOptions};

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_shrinks_the_store_to_its_live_data() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.put("keep", "this", None).await.unwrap();
    let value = vec![b'x'; 4096];
    for i in 0..600 {
        c.put(format!("big/{i:04}"), value.clone(), None)
            .await
            .unwrap();
    }
    // Overwrite some keys too: old versions to drop.
    for i in 0..100 {
        c.put(format!("big/{i:04}"), value.clone(), None)
            .await
            .unwrap();
    }
    let deleted = c
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 600);
    let rev = c
        .put("after", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(rev, None).await.unwrap();
    let hash = c.hash_kv(0).await.unwrap().hash();

    let before = c.status().await.unwrap().db_size();
    assert!(before > 600 * 4096, "the data is counted before: {before}");
    c.defragment().await.unwrap();
    let after = c.status().await.unwrap().db_size();
    assert!(
        after < before / 4,
        "Defragment left {after} bytes of {before} (live data: a few keys)"
    );

    // What is live reads the same, and the history's digest is unchanged.
    assert_eq!(c.get("keep", None).await.unwrap().kvs()[0].value(), b"this");
    assert_eq!(
        c.get("big/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
    assert_eq!(c.hash_kv(0).await.unwrap().hash(), hash);
    c.put("later", "y", None).await.unwrap();
    assert_eq!(c.get("later", None).await.unwrap().kvs()[0].value(), b"y");

    // etcdctl's defrag command.
    let endpoint = server.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["--command-timeout=60s", "defrag"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run etcdctl")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Finished defragmenting etcd member[{}]", server.endpoint)
    );
    assert_eq!(c.get("keep", None).await.unwrap().kvs()[0].value(), b"this");
    server.stop().await.unwrap();
}

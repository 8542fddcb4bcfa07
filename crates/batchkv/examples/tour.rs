//! A tour of the `Store`, written as a user who depends on `batchkv` alone would: every name comes
//! from the `batchkv` crate (no `batchkv_*` path anywhere).
//!
//! Run it with `cargo run --release --example tour`; `cargo xtask test` runs it as a test (see
//! `[[example]]` in crates/batchkv/Cargo.toml), so it stays true.

use std::time::Duration;

use batchkv::{
    AutoCompaction, AutoFlushConfig, BatchConfig, Bytes, Compare, CompareOp, CompareTarget,
    DeleteRange, Durability, EventKind, OpError, OpLabel, OpResponse, Profile, Put, Range, Store,
    StoreError, Txn, WaitPolicy, WatchRequest,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store");

    // Open with the builder: what an acknowledged write survives, group commit, RocksDB's
    // profile, metrics, lease checks, auto-compaction and the state machine's limits.
    let store = Store::builder(&path)
        .durability(Durability::Wal {
            flush: AutoFlushConfig {
                interval: Duration::from_millis(50),
                bytes: 1 << 20,
            },
        })
        .batch(BatchConfig {
            max_ops: 500,
            wait_policy: WaitPolicy::Adaptive,
            ..BatchConfig::default()
        })
        .profile(Profile::ReadHeavy)
        .metrics(true)
        .lease_check_interval(Duration::from_millis(100))
        .auto_compaction(AutoCompaction::Revision(1_000))
        .mvcc(|c| c.min_lease_ttl(2))
        .open()?;

    // A watch started before the writes sees every one of them, in order.
    let mut watcher = store.watch(WatchRequest::range("user/", "user0").with_prev_kv());

    // Put, get, range, delete.
    let put = store.put("user/1", "alice")?;
    store.put("user/2", "bob")?;
    store.put_with(Put {
        prev_kv: true,
        ..Put::new("user/1", "alice v2")
    })?;
    let alice = store.get("user/1")?.ok_or("user/1 is missing")?;
    assert_eq!(alice.value, Bytes::from("alice v2"));
    assert_eq!((alice.create_revision, alice.version), (put.revision, 2));
    let users = store.range(&Range::prefix("user/"))?;
    assert_eq!(users.count, 2);
    let old = store.range(&Range {
        revision: put.revision,
        ..Range::key("user/1")
    })?;
    assert_eq!(old.kvs[0].value, Bytes::from("alice"), "history is kept");
    let deleted = store.delete("user/2")?;
    assert_eq!(deleted.deleted, 1);

    // etcd's Txn: compare-and-swap on a mod revision.
    let cas = store.txn(Txn {
        compares: vec![Compare::new(
            "user/1",
            CompareOp::Equal,
            CompareTarget::ModRevision(alice.mod_revision),
        )],
        success: vec![batchkv::Op::Put(Put::new("user/1", "alice v3"))],
        failure: vec![batchkv::Op::Range(Range::key("user/1"))],
    })?;
    assert!(cas.succeeded);
    assert!(matches!(cas.responses[0], OpResponse::Put(_)));

    // Optimistic, serializable transactions, retried on conflict.
    let total = store.transaction(|tx| {
        let n = tx
            .get("counter")?
            .map_or(0, |v| v.first().copied().unwrap_or(0));
        tx.put("counter", vec![n + 1]);
        Ok(n + 1)
    })?;
    assert_eq!(total, 1);

    // Leases: keys attached to a lease go with it, at one revision.
    let lease = store.lease_grant(0, 10)?;
    store.put_with(Put {
        lease: lease.id,
        ..Put::new("session/a", "1")
    })?;
    store.put_with(Put {
        lease: lease.id,
        ..Put::new("session/b", "1")
    })?;
    assert_eq!(store.lease_keep_alive(lease.id)?, 10);
    let ttl = store.lease_time_to_live(lease.id, true);
    assert_eq!(ttl.keys.len(), 2);
    assert_eq!(store.leases(), vec![lease.id]);
    let revoked = store.lease_revoke(lease.id)?;
    assert_eq!(store.range(&Range::prefix("session/"))?.count, 0);
    match store.lease_revoke(lease.id) {
        Err(StoreError::Op(OpError::LeaseNotFound { .. })) => {}
        other => return Err(format!("a second revoke answered {other:?}").into()),
    }
    store.delete_range(DeleteRange::prefix("session/"))?;

    // The watcher got the three user writes, the delete and the txn's put.
    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        let resp = watcher
            .recv_timeout(Duration::from_secs(10))?
            .ok_or("the watch ended early")?;
        kinds.extend(resp.events.iter().map(|e| (e.kind, e.prev_kv.is_some())));
    }
    assert_eq!(
        kinds,
        [
            (EventKind::Put, false),
            (EventKind::Put, false),
            (EventKind::Put, true),
            (EventKind::Delete, true),
            (EventKind::Put, true),
        ]
    );

    // A checkpoint is a consistent copy that opens as a store of its own.
    let copy = dir.path().join("checkpoint");
    store.checkpoint(&copy)?;

    // Figures: the store's own, RocksDB's and the metrics.
    let stats = store.stats()?;
    assert_eq!(stats.revision, revoked.revision);
    assert_eq!(stats.maintenance_errors, 0);
    let metrics = store.metrics().ok_or("metrics are on")?;
    assert!(metrics.latency(OpLabel::Put).count >= 5);
    let text = store.metrics_text().ok_or("metrics are on")?;
    assert!(text.contains("batchkv_ops_total"));
    println!(
        "revision {}, {} keys indexed, {} batches, put p99 {:?}, {} SST bytes",
        stats.revision,
        stats.indexed_keys,
        stats.batcher.batches,
        metrics.latency(OpLabel::Put).p99,
        stats.engine.totals().sst_bytes,
    );

    // Async: no thread per request, on any executor. Each call queues its op at once; the
    // futures only wait (dropping one would not withdraw its write).
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut async_watch = store.watch(WatchRequest::key("async/1"));
    let (put, del) = rt.block_on(async {
        let put = store.put_async("async/1", "x");
        let del = store.delete_async("async/1");
        (put.await, del.await)
    });
    let (put, del) = (put?, del?);
    assert_eq!((del.deleted, del.revision), (1, put.revision + 1));
    let seen = rt.block_on(async {
        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            let resp = async_watch
                .recv_async()
                .await?
                .ok_or("the watch ended early")?;
            kinds.extend(resp.events.iter().map(|e| e.kind));
        }
        Ok::<_, Box<dyn std::error::Error>>(kinds)
    })?;
    assert_eq!(seen, [EventKind::Put, EventKind::Delete]);
    drop(async_watch);

    // Close: everything queued is applied and answered, the WAL synced.
    drop(watcher);
    store.close()?;
    let reopened = Store::open(&copy)?;
    assert_eq!(
        reopened.get("user/1")?.map(|kv| kv.value),
        Some(Bytes::from("alice v3"))
    );
    reopened.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tour_runs() {
        super::main().expect("the tour runs");
    }
}

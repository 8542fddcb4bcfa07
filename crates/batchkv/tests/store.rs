//! The facade end to end: every API, many threads, reopen, close with callers pending,
//! durability modes, bulk load, and serializable optimistic transactions (bank transfers).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use batchkv::BatchConfig;
use batchkv::{
    AutoFlushConfig, Compare, CompareOp, CompareTarget, DeleteRange, Durability, OpError, Put,
    Range, Store, StoreError, Txn, WatchRequest,
};
use batchkv_testkit::Rng;
use bytes::Bytes;

fn all() -> Range {
    Range {
        range_end: Bytes::from_static(b"\0"),
        ..Range::key("\0")
    }
}

#[test]
fn every_api_through_the_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.put("a", "1").expect("put").revision, 2);
    let p = store
        .put_with(Put {
            prev_kv: true,
            ..Put::new("a", "2")
        })
        .expect("put");
    assert_eq!(p.prev_kv.expect("prev").value, "1");
    assert_eq!(store.get("a").expect("get").expect("a").version, 2);
    store.put("b", "x").expect("put");
    let r = store.range(&all()).expect("range");
    assert_eq!((r.count, r.revision), (2, 4));
    let t = store
        .txn(Txn {
            compares: vec![Compare::new(
                "a",
                CompareOp::Equal,
                CompareTarget::Value("2".into()),
            )],
            success: vec![batchkv::Op::Put(Put::new("c", "3"))],
            failure: vec![],
        })
        .expect("txn");
    assert!(t.succeeded && t.revision == 5);
    assert_eq!(store.delete("b").expect("delete").deleted, 1);
    assert_eq!(
        store
            .delete_range(DeleteRange::range("a", "z"))
            .expect("delete range")
            .deleted,
        2
    );
    // etcd's errors come back typed, with etcd's text.
    let err = store.put("", "v").expect_err("empty key");
    assert!(matches!(err, StoreError::Op(OpError::EmptyKey)), "{err}");
    assert_eq!(err.to_string(), "etcdserver: key is not provided");
    // Leases.
    let g = store.lease_grant(0, 60).expect("grant");
    store
        .put_with(Put {
            lease: g.id,
            ..Put::new("leased", "v")
        })
        .expect("put");
    assert_eq!(store.leases(), [g.id]);
    assert_eq!(store.lease_keep_alive(g.id).expect("keep alive"), 60);
    assert_eq!(store.lease_time_to_live(g.id, true).keys, ["leased"]);
    let rev = store.lease_revoke(g.id).expect("revoke").revision;
    assert_eq!(store.get("leased").expect("get"), None);
    // Watch replays history.
    let mut w = store.watch(WatchRequest::key("a").from_revision(1));
    let r = w
        .recv_timeout(Duration::from_secs(5))
        .expect("recv")
        .expect("event");
    assert_eq!(r.events[0].kv.mod_revision, 2);
    // Compaction, checkpoint, stats, flush.
    store.compact(rev).expect("compact");
    let err = store
        .range(&Range {
            revision: 2,
            ..Range::key("a")
        })
        .expect_err("compacted");
    assert_eq!(
        err.to_string(),
        "mvcc: required revision has been compacted"
    );
    let cp = dir.path().join("checkpoint");
    store.checkpoint(&cp).expect("checkpoint");
    let stats = store.stats().expect("stats");
    assert_eq!((stats.revision, stats.compacted), (rev, Some(rev)));
    assert!(stats.batcher.batches >= 10);
    store.flush().expect("flush");
    store.close().expect("close");
    assert!(matches!(store.put("late", "v"), Err(StoreError::Closed)));
    // The checkpoint opens as a store of its own, at the same revision.
    let copy = Store::open(&cp).expect("open checkpoint");
    assert_eq!(copy.current_revision(), rev);
}

#[test]
fn many_threads_group_commit_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::Wal {
            flush: AutoFlushConfig::default(),
        })
        .open()
        .expect("open");
    let threads = 16;
    let per = 200;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                let mut revs = Vec::new();
                for i in 0..per {
                    revs.push(
                        s.put(format!("t{t:02}/{i:04}"), format!("{i}"))
                            .expect("put")
                            .revision,
                    );
                }
                revs
            })
        })
        .collect();
    let mut revs: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    revs.sort();
    // Every put got its own revision: 2 ..= 1 + threads * per, none twice.
    assert_eq!(revs, (2..=1 + (threads * per) as i64).collect::<Vec<_>>());
    let stats = store.stats().expect("stats");
    assert!(
        stats.batcher.batches < (threads * per) as u64,
        "no group commit happened: {} batches",
        stats.batcher.batches
    );
    assert!(stats.flush.is_some(), "the WAL syncer reports");
    store.close().expect("close");
    let synced = store.stats().expect("stats").flush.expect("wal stats");
    assert_eq!(synced.unsynced_bytes, 0, "close syncs what is left");
    assert!(synced.syncs >= 1 && synced.explicit >= 1);
    // The files are released with the last handle.
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.current_revision(), 1 + (threads * per) as i64);
    assert_eq!(
        store.range(&all()).expect("range").count,
        (threads * per) as i64
    );
    // The log continues above the applied index.
    assert_eq!(
        store.put("after", "reopen").expect("put").revision,
        2 + (threads * per) as i64
    );
}

#[test]
fn close_answers_every_pending_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .batch(BatchConfig {
            max_ops: 8,
            ..BatchConfig::default()
        })
        .open()
        .expect("open");
    let answered = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            let answered = Arc::clone(&answered);
            let ok = Arc::clone(&ok);
            std::thread::spawn(move || {
                for i in 0..200 {
                    match s.put(format!("k{t}/{i}"), "v") {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(StoreError::Closed) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    store.close().expect("close");
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(
        answered.load(Ordering::SeqCst),
        8 * 200,
        "every call returned"
    );
    // Everything acknowledged is there after reopening.
    let n = ok.load(Ordering::SeqCst) as i64;
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.range(&all()).expect("range").count, n);
}

#[test]
fn durability_none_keeps_data_after_a_clean_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::None)
        .open()
        .expect("open");
    for i in 0..100 {
        store.put(format!("k{i}"), "v").expect("put");
    }
    drop(store); // the last handle: closes, flushing the memtables
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.current_revision(), 101);
}

#[test]
fn bulk_load_commits_in_chunks_and_reports_exactly_what_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let puts = (0..10_000).map(|i| (Bytes::from(format!("bulk{i:05}")), Bytes::from("v")));
    let r = store.bulk_load(puts, 1_000).expect("bulk");
    assert_eq!((r.committed, r.entries, r.revision), (10_000, 10, 10_001));
    // A bad put in the third chunk: the first two chunks are in, nothing of the third.
    let puts = (0..3_000).map(|i| {
        let key = if i == 2_500 {
            String::new()
        } else {
            format!("more{i:05}")
        };
        (Bytes::from(key), Bytes::from("v"))
    });
    let err = store.bulk_load(puts, 1_000).expect_err("empty key");
    assert_eq!(err.committed, 2_000);
    let r = store
        .range(&Range {
            range_end: Bytes::from("mores"),
            count_only: true,
            ..Range::key("more")
        })
        .expect("range");
    assert_eq!(r.count, 2_000);
    // Adaptive chunks: everything in, and the controller's report.
    let puts: Vec<(Bytes, Bytes)> = (0..20_000)
        .map(|i| (Bytes::from(format!("adaptive{i:05}")), Bytes::from("v")))
        .collect();
    let config = batchkv::AdaptiveBatchConfig::default_for(puts.len());
    let (r, adapt) = store
        .bulk_load_adaptive(puts, config)
        .expect("adaptive bulk");
    assert_eq!(r.committed, 20_000);
    assert_eq!(adapt.total_ops, 20_000);
    assert!(r.entries >= 2, "{} entries", r.entries);
}

#[test]
fn leases_expire_through_the_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .lease_check_interval(Duration::from_millis(50))
        .mvcc(|c| c.min_lease_ttl(1))
        .open()
        .expect("open");
    let g = store.lease_grant(0, 1).expect("grant");
    for k in ["x", "y"] {
        store
            .put_with(Put {
                lease: g.id,
                ..Put::new(k, "v")
            })
            .expect("put");
    }
    let start = Instant::now();
    while store.get("x").expect("get").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lease never expired"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.get("y").expect("get"), None);
    assert_eq!(
        store.current_revision(),
        4,
        "both keys went at one revision"
    );
    assert!(store.leases().is_empty());
}

#[test]
fn optimistic_transfers_keep_the_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::Wal {
            flush: AutoFlushConfig::default(),
        })
        .open()
        .expect("open");
    let accounts = 10;
    for a in 0..accounts {
        store
            .put(format!("acct{a}"), 1_000u64.to_be_bytes().to_vec())
            .expect("seed");
    }
    let read = |v: Option<Bytes>| {
        u64::from_be_bytes(v.expect("account").as_ref().try_into().expect("8 bytes"))
    };
    let conflicts = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            let conflicts = Arc::clone(&conflicts);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_u64 ^ t);
                for _ in 0..150 {
                    let x = rng.next();
                    let from = format!("acct{}", x % accounts);
                    let to = format!("acct{}", (x / 7) % accounts);
                    let amount = x % 50;
                    let mut tries = 0;
                    let r = s.transaction_with_attempts(1_000, |tx| {
                        tries += 1;
                        let a = read(tx.get(from.clone())?);
                        if a < amount || from == to {
                            return Ok(());
                        }
                        let b = read(tx.get(to.clone())?);
                        tx.put(from.clone(), (a - amount).to_be_bytes().to_vec());
                        tx.put(to.clone(), (b + amount).to_be_bytes().to_vec());
                        Ok(())
                    });
                    r.expect("transfer");
                    conflicts.fetch_add(tries - 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let total: u64 = (0..accounts)
        .map(|a| {
            read(
                store
                    .get(format!("acct{a}"))
                    .expect("get")
                    .map(|kv| kv.value),
            )
        })
        .sum();
    assert_eq!(total, 1_000 * accounts, "money was created or lost");
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "10 accounts, 8 threads: some must conflict"
    );
    // A transaction that keeps conflicting gives up with Conflict.
    let err = store
        .transaction_with_attempts(3, |tx| {
            tx.get("acct0")?;
            // Someone else writes what we read, every time.
            store.put("acct0", 1_000u64.to_be_bytes().to_vec())?;
            tx.put("acct1", 1u64.to_be_bytes().to_vec());
            Ok(())
        })
        .expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict { attempts: 3 }), "{err}");
}

#[test]
fn maintenance_counts_a_failed_revoke_and_keeps_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .lease_check_interval(Duration::from_millis(20))
        .mvcc(|c| c.min_lease_ttl(1))
        .metrics(true)
        .open()
        .expect("open");
    let g = store.lease_grant(0, 1).expect("grant");
    store
        .put_with(Put {
            lease: g.id,
            ..Put::new("x", "v")
        })
        .expect("put");
    // Every write fails from now on: the expired lease's revoke cannot commit.
    store.inject_write_failures_after(0);
    let start = Instant::now();
    while store.stats().expect("stats").maintenance_errors < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the failing revoke was never counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.leases(), vec![g.id], "nothing was revoked");
    assert!(store.get("x").expect("get").is_some());
    let text = store.metrics_text().expect("metrics on");
    assert!(
        text.lines()
            .any(|l| l.starts_with("batchkv_maintenance_errors_total{task=\"lease_revoke\"}")),
        "{text}"
    );
    // Storage works again: the same thread, still running, revokes the lease.
    store.clear_injected_failures();
    while store.get("x").expect("get").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the lease was never revoked after the fault cleared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.leases().is_empty());
}

/// `Store::check` on a live store never sees an entry half applied: between an entry's
/// commit to RocksDB and its finish in memory, storage is a revision ahead (the soak's final
/// check once failed with "meta current_revision is N+1, the store is at N" while a lease
/// expiry was in flight). Writers and checks run together; every check must pass.
#[test]
fn check_while_writes_are_in_flight_sees_whole_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::builder(dir.path())
            .durability(Durability::None)
            .open()
            .expect("open"),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .put(format!("w{w}/{}", n % 64), format!("{n}"))
                        .expect("put");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut checks = 0;
    let start = Instant::now();
    // Enough checks, overlapping enough entries (the writers must get a turn between them).
    // The bound only stops a broken store from hanging the test: on a loaded machine the
    // checks (which hold the log lock) leave the writers few turns, so it is generous.
    while (checks < 200 || store.current_revision() < 2_000)
        && start.elapsed() < Duration::from_secs(300)
    {
        let report = store
            .check()
            .unwrap_or_else(|e| panic!("check {checks}: {e}"));
        assert!(report.current_revision >= 1);
        checks += 1;
        // The writers get a turn between two checks: the next check waits for a new entry
        // (a check takes the log lock, and std's mutex is not fair: a checker looping on it
        // can starve the writers that commit their own entries).
        let seen = report.current_revision;
        while store.current_revision() == seen && start.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|t| t.join().expect("writer")).sum();
    assert!(
        written >= 1_999,
        "the writers ran between the checks: {written} puts"
    );
    let last = store.check().expect("final check");
    assert_eq!(last.current_revision, store.current_revision());
    assert_eq!(
        last.current_revision,
        1 + i64::try_from(written).expect("count")
    );
}

/// A single-node log that refuses the appends whose number (from 0) `fails` picks.
struct FailingLog {
    inner: batchkv::LocalLog,
    appends: u64,
    fails: fn(u64) -> bool,
}

impl batchkv::Log for FailingLog {
    fn append(&mut self, entry: &[u8]) -> Result<u64, batchkv::LogError> {
        let n = self.appends;
        self.appends += 1;
        if (self.fails)(n) {
            return Err(batchkv::LogError(format!("append {n} refused")));
        }
        self.inner.append(entry)
    }
}

#[test]
fn a_lone_writers_failed_entry_fails_only_its_own_put() {
    // One thread, one put at a time: each put is an entry of its own (committed on the
    // writer's thread when the batcher is idle). Every fifth append is refused: exactly those
    // puts fail, the rest get contiguous revisions.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .log(FailingLog {
            inner: batchkv::LocalLog::starting_at(1),
            appends: 0,
            fails: |n| n % 5 == 0,
        })
        .open()
        .expect("open");
    let mut revision = 1;
    for i in 0..50u64 {
        match store.put(format!("k{i:02}"), "v") {
            Ok(r) => {
                assert!(i % 5 != 0, "put {i} should have failed");
                revision += 1;
                assert_eq!(r.revision, revision, "put {i}");
            }
            Err(StoreError::Internal(e)) => {
                assert!(i % 5 == 0, "put {i} failed: {e}");
                assert_eq!(e, format!("log: append {i} refused"));
            }
            Err(e) => panic!("put {i}: unexpected {e}"),
        }
    }
    assert_eq!(store.current_revision(), 41);
    assert_eq!(store.range(&all()).expect("range").count, 40);
    let stats = store.stats().expect("stats");
    assert_eq!(
        (stats.batcher.batches, stats.batcher.batch_errors),
        (50, 10)
    );
}

#[test]
fn blocking_and_async_writers_of_one_store_keep_their_order() {
    // Blocking writers (which may commit on their own thread when the batcher is idle) and
    // async writers on a 2-thread runtime (always through the worker), over a log that refuses
    // every seventh append: each writer's successful puts get increasing revisions, failed
    // puts fail with the log's error, and the revisions of all successful puts are contiguous.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::Wal {
            flush: AutoFlushConfig::default(),
        })
        .log(FailingLog {
            inner: batchkv::LocalLog::starting_at(1),
            appends: 0,
            fails: |n| n % 7 == 3,
        })
        .open()
        .expect("open");
    let per = 150;
    let check = |w: usize, answers: Vec<Result<i64, StoreError>>| {
        let mut last = 0;
        let mut ok = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(rev) => {
                    assert!(rev > last, "writer {w}: put {i} at {rev} after {last}");
                    last = rev;
                    ok.push(rev);
                }
                Err(StoreError::Internal(e)) => {
                    assert!(e.starts_with("log: append "), "writer {w}: {e}")
                }
                Err(e) => panic!("writer {w}: unexpected {e}"),
            }
        }
        ok
    };
    let blocking: Vec<_> = (0..4)
        .map(|w| {
            let s = store.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| s.put(format!("b{w}/{i:03}"), "v").map(|r| r.revision))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let rt = batchkv_testkit::rt::runtime();
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let s = store.clone();
            rt.spawn(async move {
                let mut answers = Vec::new();
                for i in 0..per {
                    answers.push(
                        s.put_async(format!("a{w}/{i:03}"), "v")
                            .await
                            .map(|r| r.revision),
                    );
                }
                answers
            })
        })
        .collect();
    let mut revs = Vec::new();
    for (w, h) in blocking.into_iter().enumerate() {
        revs.extend(check(w, h.join().expect("writer")));
    }
    for (w, t) in tasks.into_iter().enumerate() {
        let answers = batchkv_testkit::rt::within(&rt, t).expect("task");
        revs.extend(check(4 + w, answers));
    }
    revs.sort_unstable();
    let n = revs.len() as i64;
    assert!(n > 0, "some puts succeeded");
    assert_eq!(
        revs,
        (2..2 + n).collect::<Vec<_>>(),
        "contiguous, none twice"
    );
    assert_eq!(store.range(&all()).expect("range").count, n);
    store.close().expect("close");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.current_revision(), 1 + n);
}

#[test]
fn submit_many_answers_each_op_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let put = |k: String| batchkv::Op::Put(Put::new(k, "v"));
    let mut ops: Vec<batchkv::Op> = (0..100).map(|i| put(format!("k{i:03}"))).collect();
    // Refused alone before anything is queued: an empty key.
    ops.insert(50, batchkv::Op::Put(Put::new("", "x")));
    // Failed alone inside its entry: a lease that does not exist.
    ops.insert(
        20,
        batchkv::Op::Put(Put {
            lease: 12_345,
            ..Put::new("leased", "v")
        }),
    );
    let answers = store.submit_many(ops);
    assert_eq!(answers.len(), 102);
    let empty_key = store.put("", "x").expect_err("empty key").to_string();
    let no_lease = store
        .put_with(Put {
            lease: 12_345,
            ..Put::new("leased", "v")
        })
        .expect_err("no such lease")
        .to_string();
    let mut revisions = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        match (i, answer) {
            (20, Err(e)) => assert_eq!(e.to_string(), no_lease),
            (51, Err(e)) => assert_eq!(e.to_string(), empty_key),
            (_, Ok(batchkv::OpResponse::Put(r))) => revisions.push(r.revision),
            (i, other) => panic!("op {i}: {other:?}"),
        }
    }
    // In the order given, each its own revision.
    assert_eq!(revisions, (2..=101).collect::<Vec<i64>>());
    assert_eq!(store.range(&all()).expect("range").count, 100);
    store.close().expect("close");
    let answers = store.submit_many([put("after".into()), put("close".into())]);
    assert!(
        answers.iter().all(|a| matches!(a, Err(StoreError::Closed))),
        "{answers:?}"
    );
}

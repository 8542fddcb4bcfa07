//! The async write path (`Store::submit_async` and its typed twins) and async watch, on real
//! RocksDB in temp dirs: thousands of concurrent async writes on two runtime threads get
//! distinct contiguous revisions and no thread each; answers equal the blocking twins'; a full
//! queue answers `Busy`; close answers `Closed`; a dropped future's write commits exactly once;
//! async watchers see every revision in order; and, as a property, async and blocking submits
//! interleaved leave the same state as the same ops applied one by one.
//!
//! No test asserts on timing.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use batchkv::{
    BatchConfig, Compact, Compare, CompareOp, CompareTarget, DeleteRange, Durability, LeaseGrant,
    LeaseRevoke, LocalLog, Log, LogError, Op, OpError, Put, Range, Store, StoreError, Txn,
    WatchRequest,
};
use batchkv_testkit::rt::{runtime, within};
use batchkv_testkit::temp_dir;
use bytes::Bytes;
use proptest::prelude::*;

fn all() -> Range {
    Range {
        range_end: Bytes::from_static(b"\0"),
        ..Range::key("\0")
    }
}

/// The process's thread count, as the kernel reports it.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// A real `LocalLog` behind a gate: each append says so on `entered` and waits for `gate`, so a
/// test can hold the pipeline while it fills the queue.
struct GatedLog {
    inner: LocalLog,
    entered: mpsc::Sender<()>,
    gate: mpsc::Receiver<()>,
}

impl Log for GatedLog {
    fn append(&mut self, entry: &[u8]) -> Result<u64, LogError> {
        let _ = self.entered.send(());
        // Bounded so a broken test fails instead of hanging.
        self.gate
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| LogError(format!("gate: {e}")))?;
        self.inner.append(entry)
    }
}

/// A new store whose pipeline waits at `gate` for each entry.
fn gated_store(
    dir: &std::path::Path,
    batch: BatchConfig,
) -> (Store, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (gate_tx, gate_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    let store = Store::builder(dir)
        .batch(batch)
        .log(GatedLog {
            inner: LocalLog::starting_at(1),
            entered: entered_tx,
            gate: gate_rx,
        })
        .open()
        .expect("open");
    (store, gate_tx, entered_rx)
}

#[test]
fn thousands_of_async_puts_on_two_threads_get_contiguous_revisions_and_no_thread_each() {
    const N: usize = 5_000;
    let dir = temp_dir();
    let store = Store::builder(dir.path())
        .durability(Durability::None)
        .open()
        .expect("open");
    let rt = runtime();
    let before = threads();
    let (revisions, peak) = within(&rt, async {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let r = store.put_async(format!("key/{i:05}"), format!("{i}")).await;
                    // Sampled from inside the tasks, while others are still waiting.
                    let t = if i % 250 == 0 { threads() } else { 0 };
                    (r, t)
                })
            })
            .collect();
        let mut peak = threads();
        let mut revisions = Vec::with_capacity(N);
        for t in tasks {
            let (r, sampled) = t.await.expect("task");
            peak = peak.max(sampled);
            revisions.push(r.expect("put").revision);
        }
        (revisions, peak.max(threads()))
    });
    println!("threads: {before} before, {peak} at most while {N} puts were in flight");
    // Not one per request (nor a blocking pool's 512): the runtime's 2 workers, the store's
    // few, and those of the one other test the harness may run meanwhile.
    assert!(peak < before + 100, "{peak} threads (from {before})");
    let distinct: BTreeSet<i64> = revisions.iter().copied().collect();
    assert_eq!(distinct.len(), N, "every put has its own revision");
    assert_eq!(
        distinct.into_iter().collect::<Vec<_>>(),
        (2..2 + N as i64).collect::<Vec<_>>(),
        "contiguous, above the new store's revision 1"
    );
    for (i, rev) in revisions.iter().enumerate() {
        let kv = store
            .get(format!("key/{i:05}"))
            .expect("get")
            .expect("written");
        assert_eq!(
            (kv.mod_revision, kv.value),
            (*rev, Bytes::from(format!("{i}")))
        );
    }
    assert_eq!(store.current_revision(), 1 + N as i64);
}

#[test]
fn async_twins_answer_exactly_as_the_blocking_calls() {
    let (a_dir, b_dir) = (temp_dir(), temp_dir());
    let blocking = Store::open(a_dir.path()).expect("open");
    let async_ = Store::open(b_dir.path()).expect("open");
    let rt = runtime();
    let txn = Txn {
        compares: vec![Compare::new(
            "k",
            CompareOp::Equal,
            CompareTarget::Value("2".into()),
        )],
        success: vec![Op::Put(Put::new("t", "yes"))],
        failure: vec![Op::DeleteRange(DeleteRange::key("k"))],
    };
    let fmt = |r: &dyn std::fmt::Debug| format!("{r:?}");
    let mut got = Vec::new();
    let mut want = Vec::new();
    want.push(fmt(&blocking.put("k", "1")));
    got.push(fmt(&within(&rt, async_.put_async("k", "1"))));
    let prev = Put {
        prev_kv: true,
        ..Put::new("k", "2")
    };
    want.push(fmt(&blocking.put_with(prev.clone())));
    got.push(fmt(&within(&rt, async_.put_with_async(prev))));
    want.push(fmt(&blocking.txn(txn.clone())));
    got.push(fmt(&within(&rt, async_.txn_async(txn))));
    want.push(fmt(&blocking.lease_grant(7, 3600)));
    got.push(fmt(&within(&rt, async_.lease_grant_async(7, 3600))));
    // etcd's errors, typed alike: a lease that does not exist, an empty key, a compacted or
    // future revision.
    want.push(fmt(&blocking.lease_revoke(8)));
    got.push(fmt(&within(&rt, async_.lease_revoke_async(8))));
    want.push(fmt(&blocking.lease_revoke(7)));
    got.push(fmt(&within(&rt, async_.lease_revoke_async(7))));
    want.push(fmt(&blocking.put("", "v")));
    got.push(fmt(&within(&rt, async_.put_async("", "v"))));
    want.push(fmt(&blocking.compact(1_000)));
    got.push(fmt(&within(&rt, async_.compact_async(1_000))));
    want.push(fmt(&blocking.compact(3)));
    got.push(fmt(&within(&rt, async_.compact_async(3))));
    want.push(fmt(&blocking.compact(2)));
    got.push(fmt(&within(&rt, async_.compact_async(2))));
    want.push(fmt(&blocking.delete("t")));
    got.push(fmt(&within(&rt, async_.delete_async("t"))));
    want.push(fmt(&blocking.delete_range(DeleteRange::prefix(""))));
    got.push(fmt(&within(
        &rt,
        async_.delete_range_async(DeleteRange::prefix("")),
    )));
    assert_eq!(got, want);
    assert!(
        matches!(
            within(&rt, async_.put_async("", "v")),
            Err(StoreError::Op(OpError::EmptyKey))
        ),
        "refused before it was queued"
    );
    assert_eq!(
        async_.hash_kv(0).expect("hash"),
        blocking.hash_kv(0).expect("hash")
    );
    assert_eq!(async_.current_revision(), blocking.current_revision());
}

#[test]
fn async_ops_are_measured_when_they_resolve() {
    let dir = temp_dir();
    let store = Store::builder(dir.path())
        .metrics(true)
        .open()
        .expect("open");
    let rt = runtime();
    within(&rt, store.put_async("k", "v")).expect("put");
    let refused = within(&rt, store.put_async("", "v"));
    assert!(matches!(refused, Err(StoreError::Op(OpError::EmptyKey))));
    within(&rt, store.delete_async("k")).expect("delete");
    let text = store.metrics_text().expect("metrics are on");
    for line in [
        "batchkv_ops_total{op=\"put\",outcome=\"ok\"} 1",
        "batchkv_ops_total{op=\"put\",outcome=\"error\"} 1",
        "batchkv_ops_total{op=\"delete\",outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[test]
fn a_full_queue_answers_busy_and_writes_nothing_of_the_refused_op() {
    let dir = temp_dir();
    let (store, gate, entered) = gated_store(
        dir.path(),
        BatchConfig {
            max_ops: 1,
            queue_capacity: 2,
            ..BatchConfig::default()
        },
    );
    let rt = runtime();
    let first = store.put_async("a", "1");
    entered.recv().expect("the pipeline holds the first entry");
    let queued = [store.put_async("b", "1"), store.put_async("c", "1")];
    let busy = within(&rt, store.put_async("d", "1"));
    assert!(matches!(busy, Err(StoreError::Busy)), "{busy:?}");
    assert_eq!(
        StoreError::Busy.to_string(),
        "etcdserver: too many requests",
        "etcd's text, for the server to pass on"
    );
    for _ in 0..3 {
        gate.send(()).expect("the log waits");
    }
    assert_eq!(within(&rt, first).expect("put").revision, 2);
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(within(&rt, q).expect("put").revision, 3 + i as i64);
    }
    assert!(
        store.get("d").expect("get").is_none(),
        "the busy op was not written"
    );
    assert_eq!(store.current_revision(), 4);
    // Room again: the same op goes through.
    let d = store.put_async("d", "1");
    gate.send(()).expect("the log waits");
    assert_eq!(within(&rt, d).expect("put").revision, 5);
}

#[test]
fn close_answers_queued_async_writes_and_then_closed() {
    let dir = temp_dir();
    let (store, gate, entered) = gated_store(
        dir.path(),
        BatchConfig {
            max_ops: 1,
            ..BatchConfig::default()
        },
    );
    let rt = runtime();
    let queued: Vec<_> = (0..10)
        .map(|i| store.put_async(format!("k{i}"), "v"))
        .collect();
    entered.recv().expect("the pipeline holds the first entry");
    let closer = {
        let store = store.clone();
        std::thread::spawn(move || store.close())
    };
    // Close is graceful: everything queued is applied and answered first.
    for _ in 0..10 {
        gate.send(()).expect("the log waits");
    }
    closer.join().expect("closer").expect("close");
    let revisions: Vec<i64> = queued
        .into_iter()
        .map(|f| within(&rt, f).expect("applied before the close").revision)
        .collect();
    assert_eq!(revisions, (2..12).collect::<Vec<_>>());
    let late = within(&rt, store.put_async("late", "v"));
    assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
    let late = within(
        &rt,
        store.txn_async(Txn {
            compares: vec![],
            success: vec![],
            failure: vec![],
        }),
    );
    assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
}

#[test]
fn a_dropped_future_still_commits_its_write_exactly_once() {
    let dir = temp_dir();
    {
        let store = Store::open(dir.path()).expect("open");
        let rt = runtime();
        // Dropped without ever being polled.
        for i in 0..100 {
            drop(store.put_async(format!("never-polled/{i}"), "v"));
        }
        // Polled once (its task registered), then given up, as a cancelled request.
        within(&rt, async {
            for i in 0..100 {
                let mut f = store.put_async(format!("polled-once/{i}"), "v");
                let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await;
                if let Poll::Ready(r) = first {
                    r.expect("put");
                }
            }
        });
        // Timed out inside a runtime: the future is dropped by `timeout` when it fires.
        within(&rt, async {
            let f = store.put_async("timed-out", "v");
            let _ = tokio::time::timeout(Duration::ZERO, f).await;
        });
        store.close().expect("close");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for prefix in ["never-polled/", "polled-once/"] {
        let r = store.range(&Range::prefix(prefix)).expect("range");
        assert_eq!(r.count, 100, "{prefix}");
        assert!(
            r.kvs.iter().all(|kv| kv.version == 1),
            "written once: {prefix}"
        );
    }
    let kv = store.get("timed-out").expect("get").expect("committed");
    assert_eq!(kv.version, 1);
    // Exactly one revision per write: nothing duplicated, nothing lost.
    assert_eq!(store.current_revision(), 1 + 201);
}

#[test]
fn an_async_watcher_sees_every_revision_in_order_while_async_writers_run() {
    const N: i64 = 500;
    let dir = temp_dir();
    let store = Store::open(dir.path()).expect("open");
    let rt = runtime();
    let mut watcher = store.watch(WatchRequest::range("w/", batchkv::prefix_end(b"w/")));
    // A second watcher with a one-response buffer: it falls behind and catches up from storage.
    let mut slow = store.watch(WatchRequest {
        buffer: 1,
        ..WatchRequest::range("w/", batchkv::prefix_end(b"w/"))
    });
    let reader = rt.spawn(async move {
        let mut revs = Vec::new();
        while (revs.len() as i64) < N {
            let r = watcher.recv_async().await.expect("recv").expect("open");
            revs.extend(r.events.iter().map(|e| e.kv.mod_revision));
        }
        revs
    });
    let writes: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            rt.spawn(async move { store.put_async(format!("w/{}", i % 7), "v").await })
        })
        .collect();
    for w in writes {
        within(&rt, w).expect("task").expect("put");
    }
    let revs = within(&rt, reader).expect("reader");
    assert_eq!(
        revs,
        (2..2 + N).collect::<Vec<_>>(),
        "every revision once, in order"
    );
    let slow_revs = within(&rt, async {
        let mut revs = Vec::new();
        while (revs.len() as i64) < N {
            let r = slow.recv_async().await.expect("recv").expect("open");
            revs.extend(r.events.iter().map(|e| e.kv.mod_revision));
        }
        revs
    });
    assert_eq!(
        slow_revs, revs,
        "the slow watcher caught up with no gap and no repeat"
    );
}

#[derive(Clone, Debug)]
enum Step {
    Put(u8, u8),
    PutLease(u8, u8),
    Delete(u8),
    DeletePrefix,
    /// If key's value equals, put the other key; else delete the key.
    Txn(u8, u8),
    LeaseGrant(u8),
    LeaseRevoke(u8),
    Compact(u8),
}

fn key(k: u8) -> String {
    format!("p/{k}")
}

impl Step {
    fn op(&self) -> Op {
        match *self {
            Step::Put(k, v) => Op::Put(Put::new(key(k), vec![v])),
            Step::PutLease(k, l) => Op::Put(Put {
                lease: i64::from(l) + 1,
                ..Put::new(key(k), "leased")
            }),
            Step::Delete(k) => Op::DeleteRange(DeleteRange::key(key(k))),
            Step::DeletePrefix => Op::DeleteRange(DeleteRange::prefix("p/")),
            Step::Txn(k, v) => Op::Txn(Txn {
                compares: vec![Compare::new(
                    key(k),
                    CompareOp::Equal,
                    CompareTarget::Value(Bytes::from(vec![v])),
                )],
                success: vec![Op::Put(Put::new(key(k.wrapping_add(1) % 4), vec![v]))],
                failure: vec![Op::DeleteRange(DeleteRange::key(key(k)))],
            }),
            // TTLs far beyond the test: no lease expires on its own meanwhile.
            Step::LeaseGrant(l) => Op::LeaseGrant(LeaseGrant {
                id: i64::from(l) + 1,
                ttl: 3600,
            }),
            Step::LeaseRevoke(l) => Op::LeaseRevoke(LeaseRevoke {
                id: i64::from(l) + 1,
            }),
            Step::Compact(r) => Op::Compact(Compact {
                revision: i64::from(r),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Blocking `submit` (it waits for everything queued before it).
    Blocking,
    /// `submit_async`, awaited at the end.
    AsyncLater,
    /// `submit_async`, awaited at once.
    AsyncNow,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..4u8, 0..3u8).prop_map(|(k, v)| Step::Put(k, v)),
        1 => (0..4u8, 0..2u8).prop_map(|(k, l)| Step::PutLease(k, l)),
        2 => (0..4u8).prop_map(Step::Delete),
        1 => Just(Step::DeletePrefix),
        2 => (0..4u8, 0..3u8).prop_map(|(k, v)| Step::Txn(k, v)),
        1 => (0..2u8).prop_map(Step::LeaseGrant),
        1 => (0..2u8).prop_map(Step::LeaseRevoke),
        1 => (0..12u8).prop_map(Step::Compact),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Blocking),
        Just(Mode::AsyncLater),
        Just(Mode::AsyncNow)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Async and blocking submits, interleaved from one caller, give the same answers and the
    /// same state as the same ops submitted one at a time: an async submit takes its place in
    /// the queue when it is called, not when it is awaited.
    #[test]
    fn async_and_blocking_interleaved_equal_serial(
        steps in prop::collection::vec((step(), mode()), 1..40),
    ) {
        let (a_dir, b_dir) = (temp_dir(), temp_dir());
        let serial = Store::builder(a_dir.path()).durability(Durability::None).open().expect("open");
        let mixed = Store::builder(b_dir.path()).durability(Durability::None).open().expect("open");
        let rt = runtime();
        let want: Vec<String> = steps
            .iter()
            .map(|(s, _)| format!("{:?}", serial.submit(s.op())))
            .collect();
        let mut got: Vec<Option<String>> = vec![None; steps.len()];
        let mut later = Vec::new();
        for (i, (s, m)) in steps.iter().enumerate() {
            match m {
                Mode::Blocking => got[i] = Some(format!("{:?}", mixed.submit(s.op()))),
                Mode::AsyncNow => {
                    got[i] = Some(format!("{:?}", within(&rt, mixed.submit_async(s.op()))));
                }
                Mode::AsyncLater => later.push((i, mixed.submit_async(s.op()))),
            }
        }
        for (i, f) in later {
            got[i] = Some(format!("{:?}", within(&rt, f)));
        }
        let got: Vec<String> = got.into_iter().map(|g| g.expect("answered")).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(mixed.current_revision(), serial.current_revision());
        prop_assert_eq!(
            format!("{:?}", mixed.range(&all())),
            format!("{:?}", serial.range(&all()))
        );
        prop_assert_eq!(mixed.leases(), serial.leases());
        prop_assert_eq!(mixed.hash_kv(0).expect("hash"), serial.hash_kv(0).expect("hash"));
    }
}

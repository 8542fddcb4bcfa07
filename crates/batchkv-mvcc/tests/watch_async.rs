//! Async watch (`Watcher::recv_async`, `poll_recv`, the `Stream`): woken by `apply`, never
//! polled on a timer; every revision in order on a multi-threaded runtime; a slow consumer that
//! does not stall `apply` and catches up; cancel safety; a dropped (or aborted) watcher frees
//! its slot; closing the store ends awaiting watchers; compaction cancels.
//!
//! No test asserts on timing.

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use batchkv_codec::{Compact, Op};
use batchkv_mvcc::{Mvcc, WatchRequest, Watcher};
use batchkv_testkit::rt::{runtime, within};
use batchkv_testkit::temp_dir;

use crate::common::{apply_ok, open, put};

fn all_keys() -> WatchRequest {
    WatchRequest::range("\0", "\0")
}

/// Counts wakes: the smallest executor, to see who wakes the task and when.
#[derive(Default)]
struct Wakes {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        *self.n.lock().expect("wakes") += 1;
        self.cv.notify_all();
    }
}

impl Wakes {
    fn count(&self) -> usize {
        *self.n.lock().expect("wakes")
    }
}

/// Revisions of the next `n` events, awaited.
async fn revisions(w: &mut Watcher, n: usize) -> Vec<i64> {
    let mut revs = Vec::with_capacity(n);
    while revs.len() < n {
        let r = w.recv_async().await.expect("recv").expect("open");
        revs.extend(r.events.iter().map(|e| e.kv.mod_revision));
    }
    revs
}

#[test]
fn apply_wakes_the_awaiting_task_and_nothing_else_does() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let mut w = s.watch(WatchRequest::key("k"));
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    assert!(w.poll_recv(&mut cx).is_pending());
    // A write the watcher does not watch sends nothing, and wakes nothing.
    apply_ok(&mut s, vec![put("other", "1")]);
    assert_eq!(wakes.count(), 0);
    apply_ok(&mut s, vec![put("k", "1")]);
    assert_eq!(wakes.count(), 1, "woken once, by the send");
    match w.poll_recv(&mut cx) {
        Poll::Ready(Ok(Some(r))) => assert_eq!(r.events[0].kv.mod_revision, 3),
        other => panic!("expected the event, got {other:?}"),
    }
    assert!(w.poll_recv(&mut cx).is_pending());
    // Blocking receive still works on the same watcher.
    apply_ok(&mut s, vec![put("k", "2")]);
    let r = w.try_recv().expect("recv").expect("an event");
    assert_eq!(r.events[0].kv.mod_revision, 4);
}

#[test]
fn async_watchers_receive_every_revision_in_order_while_apply_runs() {
    const N: usize = 1_000;
    let dir = temp_dir();
    let mut s = open(dir.path());
    let rt = runtime();
    // Buffers from one response (it falls behind at once and catches up from storage, over
    // and over) to plenty.
    let readers: Vec<_> = [1, 4, 1024]
        .into_iter()
        .map(|buffer| {
            let mut w = s.watch(WatchRequest {
                buffer,
                ..all_keys()
            });
            rt.spawn(async move { revisions(&mut w, N).await })
        })
        .collect();
    for i in 0..N {
        apply_ok(&mut s, vec![put(&format!("k{}", i % 13), &i.to_string())]);
    }
    let want: Vec<i64> = (2..2 + N as i64).collect();
    for r in readers {
        assert_eq!(within(&rt, r).expect("reader"), want);
    }
}

#[test]
fn a_slow_async_consumer_does_not_stall_apply_and_catches_up_as_a_stream() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let rt = runtime();
    let mut slow = s.watch(WatchRequest {
        buffer: 2,
        ..all_keys()
    });
    // Nobody reads while 2,000 entries are applied: apply never waits for the watcher.
    for i in 0..2_000 {
        apply_ok(&mut s, vec![put(&format!("k{}", i % 50), "v")]);
    }
    assert_eq!(s.current_revision(), 2_001);
    let revs = within(&rt, async {
        let mut revs = Vec::new();
        while revs.len() < 2_000 {
            // The watcher as a `Stream`.
            let next =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut slow), cx))
                    .await;
            let r = next.expect("not ended").expect("recv");
            revs.extend(r.events.iter().map(|e| e.kv.mod_revision));
        }
        revs
    });
    assert_eq!(revs, (2..=2_001).collect::<Vec<_>>());
    // Then live again.
    apply_ok(&mut s, vec![put("late", "1")]);
    assert_eq!(within(&rt, revisions(&mut slow, 1)), vec![2_002]);
}

#[test]
fn a_dropped_receive_loses_nothing() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let mut w = s.watch(WatchRequest::key("k"));
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    {
        // Polled, pending, then dropped, as the losing branch of a `select!`.
        let mut f = pin!(w.recv_async());
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    apply_ok(&mut s, vec![put("k", "1")]);
    let rt = runtime();
    assert_eq!(within(&rt, revisions(&mut w, 1)), vec![2]);
}

#[test]
fn a_dropped_or_aborted_async_watcher_frees_its_hub_slot() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let rt = runtime();
    let w = s.watch(WatchRequest::key("k"));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let task = rt.spawn(async move {
        let mut w = w;
        let _ = started_tx.send(());
        // Never answered: nothing is written to "k".
        w.recv_async().await
    });
    started_rx.recv().expect("the task runs");
    let dropped = s.watch(WatchRequest::key("k"));
    assert_eq!(s.watcher_count(), 2);
    drop(dropped);
    assert_eq!(s.watcher_count(), 1);
    task.abort();
    assert!(within(&rt, task).expect_err("aborted").is_cancelled());
    assert_eq!(
        s.watcher_count(),
        0,
        "the aborted task's watcher was dropped with it"
    );
    // Writes find no slot to send to.
    apply_ok(&mut s, vec![put("k", "1")]);
}

#[test]
fn closing_the_store_ends_awaiting_watchers() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    apply_ok(&mut s, vec![put("a", "1")]);
    let mut w = s.watch(WatchRequest::key("a").from_revision(2));
    let rt = runtime();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let waiter = rt.spawn(async move {
        let mut got = 0;
        while let Some(r) = w.recv_async().await.expect("recv") {
            got += r.events.len();
            let _ = first_tx.send(());
        }
        got
    });
    first_rx.recv().expect("the history arrived");
    drop(s);
    assert_eq!(
        within(&rt, waiter).expect("waiter"),
        1,
        "it got the history, then ended"
    );
}

#[test]
fn compaction_cancels_an_async_watch_from_below_it() {
    let dir = temp_dir();
    let mut s: Mvcc = open(dir.path());
    for i in 0..10 {
        apply_ok(&mut s, vec![put("k", &i.to_string())]);
    }
    apply_ok(&mut s, vec![Op::Compact(Compact { revision: 6 })]);
    while !s.compact_step(100).expect("step") {}
    let mut below = s.watch(WatchRequest::key("k").from_revision(5));
    let rt = runtime();
    let (r, end) = within(&rt, async {
        let r = below.recv_async().await.expect("recv").expect("a cancel");
        (r, below.recv_async().await.expect("recv"))
    });
    assert!(r.canceled && r.compact_revision == 6, "{r:?}");
    assert_eq!(end, None);
    assert_eq!(s.watcher_count(), 0);
}

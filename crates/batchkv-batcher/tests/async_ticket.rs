//! The async entry into the batcher: `try_submit` + `.await` on the ticket. Every awaited item
//! is answered exactly once, by a wake from the worker (no polling), on any executor; aborts
//! answer `Closed`; a dropped future does not withdraw its item.
//!
//! No test asserts on timing.

use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use batchkv_batcher::{BatchConfig, BatchError, Batcher, Shutdown, SubmitError};
use batchkv_testkit::rt::{runtime, within};

type B = Batcher<u64, u64, String>;

/// A sink that doubles every item and records what it saw.
fn recording(log: &Arc<Mutex<Vec<u64>>>) -> B {
    let log = Arc::clone(log);
    Batcher::start(
        move |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
            log.lock().expect("log").extend(v.iter().copied());
            Ok(v.into_iter().map(|i| Ok(i * 2)).collect())
        },
        BatchConfig::default(),
    )
    .expect("valid")
}

/// A batcher whose sink holds each batch until `gate` lets it go, telling `entered` when it
/// has one, and logs what it flushed.
struct Gated {
    b: B,
    gate: crossbeam_channel::Sender<()>,
    entered: crossbeam_channel::Receiver<()>,
    log: Arc<Mutex<Vec<u64>>>,
}

fn gated(config: BatchConfig) -> Gated {
    let (gate, gate_rx) = crossbeam_channel::unbounded::<()>();
    let (entered_tx, entered) = crossbeam_channel::unbounded::<()>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let b = {
        let log = Arc::clone(&log);
        Batcher::start(
            move |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
                let _ = entered_tx.send(());
                gate_rx.recv().map_err(|e| e.to_string())?;
                log.lock().expect("log").extend(v.iter().copied());
                Ok(v.into_iter().map(|i| Ok(i * 2)).collect())
            },
            config,
        )
        .expect("valid")
    };
    Gated {
        b,
        gate,
        entered,
        log,
    }
}

#[test]
fn thousands_of_awaited_tickets_on_two_threads_are_each_answered_once() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let b = recording(&log);
    let rt = runtime();
    let n = 5_000u64;
    let answers = within(&rt, async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.try_submit(i).expect("room").await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("task"));
        }
        answers
    });
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a, Ok(i as u64 * 2));
    }
    let mut seen = log.lock().expect("log").clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "each item flushed once");
    assert_eq!(b.stats().submitted, n);
}

/// Wakes by counting and unparking: the smallest executor there is, to show the ticket needs
/// no particular runtime and is woken, not polled.
struct Flag {
    woken: Mutex<usize>,
    cv: Condvar,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        *self.woken.lock().expect("flag") += 1;
        self.cv.notify_all();
    }
}

#[test]
fn the_worker_wakes_the_awaiting_task_when_it_answers() {
    let Gated {
        b, gate, entered, ..
    } = gated(BatchConfig::default());
    let flag = Arc::new(Flag {
        woken: Mutex::new(0),
        cv: Condvar::new(),
    });
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(b.try_submit(21).expect("room").into_future());
    entered.recv().expect("the sink holds the item");
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "not answered yet");
    assert_eq!(*flag.woken.lock().expect("flag"), 0);
    gate.send(()).expect("sink waits");
    // Nothing polls meanwhile: only the worker's wake ends this wait.
    let (woken, _) = flag
        .cv
        .wait_timeout_while(
            flag.woken.lock().expect("flag"),
            Duration::from_secs(60),
            |n| *n == 0,
        )
        .expect("flag");
    assert_eq!(*woken, 1);
    drop(woken);
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(42)));
    assert!(fut.is_terminated());
    // Polled again after it resolved: `Closed`, never a second answer.
    assert_eq!(
        fut.as_mut().poll(&mut cx),
        Poll::Ready(Err(BatchError::Closed))
    );
}

#[test]
fn abort_answers_queued_async_tickets_closed() {
    let Gated {
        b,
        gate,
        entered,
        log,
    } = gated(BatchConfig {
        max_ops: 1,
        ..BatchConfig::default()
    });
    let rt = runtime();
    let first = b.try_submit(0).expect("room");
    entered.recv().expect("item 0 is in the sink");
    let queued: Vec<_> = (1..50)
        .map(|i| rt.spawn(b.try_submit(i).expect("room").into_future()))
        .collect();
    let aborter = {
        let b = b.clone();
        thread::spawn(move || b.shutdown(Shutdown::Abort))
    };
    // The abort flag lands before `closing`; then release the batch in flight.
    while b.is_open() {
        thread::yield_now();
    }
    gate.send(()).expect("sink waits");
    aborter.join().expect("aborter");
    assert_eq!(within(&rt, first.into_future()), Ok(0));
    for t in queued {
        assert_eq!(within(&rt, t).expect("task"), Err(BatchError::Closed));
    }
    assert_eq!(*log.lock().expect("log"), vec![0]);
    assert_eq!(b.stats().closed, 49);
    // After the shutdown: refused with the item, never queued.
    assert_eq!(b.try_submit(7).expect_err("closed"), SubmitError::Closed(7));
}

#[test]
fn graceful_shutdown_answers_queued_async_tickets_with_their_results() {
    let Gated {
        b, gate, entered, ..
    } = gated(BatchConfig {
        max_ops: 1,
        ..BatchConfig::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let tickets: Vec<_> = (0..10).map(|i| b.try_submit(i).expect("room")).collect();
    entered.recv().expect("item 0 is in the sink");
    for _ in 0..10 {
        gate.send(()).expect("sink waits");
    }
    b.shutdown(Shutdown::Graceful);
    for (i, t) in tickets.into_iter().enumerate() {
        assert_eq!(within(&rt, t.into_future()), Ok(i as u64 * 2));
    }
}

#[test]
fn a_dropped_future_does_not_withdraw_its_item() {
    let Gated {
        b,
        gate,
        entered,
        log,
    } = gated(BatchConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut dropped = b.try_submit(5).expect("room").into_future();
    entered.recv().expect("item 5 is in the sink");
    // Polled once (the task registered its waker), then given up, as a cancelled request.
    within(&rt, async {
        let polled_once =
            std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut dropped).poll(cx))).await;
        assert!(polled_once.is_pending());
    });
    drop(dropped);
    gate.send(()).expect("sink waits");
    // The next item is answered after it: the dropped one went through once.
    let next = b.try_submit(6).expect("room");
    gate.send(()).expect("sink waits");
    assert_eq!(within(&rt, next.into_future()), Ok(12));
    assert_eq!(*log.lock().expect("log"), vec![5, 6]);
    assert_eq!(b.stats().items, 2);
}

#[test]
fn a_full_queue_answers_busy_to_try_submit_without_blocking() {
    let Gated {
        b, gate, entered, ..
    } = gated(BatchConfig {
        max_ops: 1,
        queue_capacity: 3,
        ..BatchConfig::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let first = b.try_submit(0).expect("room");
    entered.recv().expect("item 0 is in the sink");
    let queued: Vec<_> = (1..=3).map(|i| b.try_submit(i).expect("room")).collect();
    // Busy: the item comes back; an async caller sheds it or retries later.
    assert_eq!(b.try_submit(4).expect_err("full"), SubmitError::Full(4));
    for _ in 0..4 {
        gate.send(()).expect("sink waits");
    }
    assert_eq!(within(&rt, first.into_future()), Ok(0));
    for (i, t) in queued.into_iter().enumerate() {
        assert_eq!(within(&rt, t.into_future()), Ok((i as u64 + 1) * 2));
    }
    // Room again.
    let again = b.try_submit(4).expect("room");
    gate.send(()).expect("sink waits");
    assert_eq!(within(&rt, again.into_future()), Ok(8));
}

#[test]
fn try_wait_does_not_block_and_gives_the_ticket_back() {
    let Gated {
        b, gate, entered, ..
    } = gated(BatchConfig::default());
    let t = b.try_submit(1).expect("room");
    entered.recv().expect("in the sink");
    let t = t.try_wait().expect_err("not answered yet");
    gate.send(()).expect("sink waits");
    assert_eq!(t.wait(), Ok(2));
}

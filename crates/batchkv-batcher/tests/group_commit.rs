//! Group commit under concurrency: every item answered exactly once with the answer its batch
//! deserved, per-producer order, limits, shutdown, backpressure, and the policies' behaviour.
//!
//! No test asserts on timing; sinks that sleep only make batches form.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use batchkv_batcher::{
    BatchConfig, BatchError, BatchItem, Batcher, FlushInfo, FlushTrigger, Shutdown, Stats,
    SubmitError, Ticket, WaitPolicy,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Item {
    producer: u32,
    seq: u32,
    size: usize,
}

impl BatchItem for Item {
    fn size_bytes(&self) -> usize {
        self.size
    }
}

fn id(item: &Item) -> u64 {
    (u64::from(item.producer) << 32) | u64::from(item.seq)
}

#[derive(Clone, Copy, Debug)]
enum SinkKind {
    Ok,
    /// Every `k`-th batch (counting from 0) fails whole.
    FailBatchEvery(usize),
    /// Items whose seq is divisible by `d` fail alone.
    FailItemsDivisibleBy(u32),
    /// Every `k`-th batch panics.
    PanicEvery(usize),
    /// Sleeps this long per batch, like an fsync.
    Slow(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFate {
    Answered,
    Failed,
    Panicked,
}

#[derive(Default)]
struct Log {
    batches: Vec<(Vec<Item>, BatchFate)>,
    /// The thread each batch was flushed on, in sink order.
    threads: Vec<thread::ThreadId>,
}

type Answer = Result<u64, BatchError<String>>;

fn make_sink(
    kind: SinkKind,
    log: Arc<Mutex<Log>>,
) -> impl FnMut(Vec<Item>) -> Result<Vec<Result<u64, String>>, String> + Send + 'static {
    let mut index = 0usize;
    move |batch: Vec<Item>| {
        let i = index;
        index += 1;
        let fate = match kind {
            SinkKind::FailBatchEvery(k) if i.is_multiple_of(k) => BatchFate::Failed,
            SinkKind::PanicEvery(k) if i.is_multiple_of(k) => BatchFate::Panicked,
            _ => BatchFate::Answered,
        };
        {
            let mut log = log.lock().expect("log");
            log.batches.push((batch.clone(), fate));
            log.threads.push(thread::current().id());
        }
        match fate {
            BatchFate::Failed => return Err(format!("batch {i} failed")),
            BatchFate::Panicked => panic!("sink panic in batch {i}"),
            BatchFate::Answered => {}
        }
        if let SinkKind::Slow(d) = kind {
            thread::sleep(d);
        }
        Ok(batch
            .iter()
            .map(|item| match kind {
                SinkKind::FailItemsDivisibleBy(d) if item.seq.is_multiple_of(d) => {
                    Err(format!("item {} failed", id(item)))
                }
                _ => Ok(id(item)),
            })
            .collect())
    }
}

struct Outcome {
    answers: HashMap<u64, Answer>,
    log: Vec<(Vec<Item>, BatchFate)>,
    flushes: Vec<FlushInfo>,
    stats: Stats,
}

/// How the producers of [`run_with`] submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// Half wait on each ticket (closed loop), half submit all first, then wait.
    Tickets,
    /// As `Tickets`, and every third producer calls `submit_wait` (which may flush on the
    /// producer's own thread), with a ticket it does not wait for before every fourth item, so a
    /// queued item of its own precedes the ones it may lead.
    Leading,
}

/// Runs `producers` threads submitting `per_producer` items each (sizes from `size_of`), waits
/// for every answer, shuts down gracefully, and checks every invariant.
fn run(
    cfg: BatchConfig,
    producers: u32,
    per_producer: u32,
    kind: SinkKind,
    size_of: fn(u32, u32) -> usize,
) -> Outcome {
    run_with(cfg, producers, per_producer, kind, size_of, How::Tickets)
}

/// [`run`], with the producers submitting as `how` says.
fn run_with(
    cfg: BatchConfig,
    producers: u32,
    per_producer: u32,
    kind: SinkKind,
    size_of: fn(u32, u32) -> usize,
    how: How,
) -> Outcome {
    let log = Arc::new(Mutex::new(Log::default()));
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let observer = {
        let flushes = Arc::clone(&flushes);
        Arc::new(move |info: &FlushInfo| flushes.lock().expect("flushes").push(*info))
    };
    let batcher: Batcher<Item, u64, String> =
        Batcher::start_observed(make_sink(kind, Arc::clone(&log)), cfg, Some(observer))
            .expect("valid config");
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let b = batcher.clone();
            thread::spawn(move || {
                // Half the producers wait on each ticket (closed loop), half submit all first.
                let mut answers = Vec::new();
                let mut pending: Vec<(u64, Ticket<u64, String>)> = Vec::new();
                for s in 0..per_producer {
                    let item = Item {
                        producer: p,
                        seq: s,
                        size: size_of(p, s),
                    };
                    if how == How::Leading && p % 3 == 0 && s % 4 != 0 {
                        let answer = b.submit_wait(item).expect("batcher is open");
                        answers.push((id(&item), answer));
                        continue;
                    }
                    let ticket = b.submit(item).expect("batcher is open");
                    if how == How::Leading && p % 3 == 0 {
                        pending.push((id(&item), ticket));
                    } else if p % 2 == 0 {
                        answers.push((id(&item), ticket.wait()));
                    } else {
                        pending.push((id(&item), ticket));
                    }
                }
                answers.extend(pending.into_iter().map(|(i, t)| (i, t.wait())));
                answers
            })
        })
        .collect();
    let mut answers = HashMap::new();
    for h in handles {
        for (i, a) in h.join().expect("producer") {
            assert!(answers.insert(i, a).is_none(), "item {i} answered twice");
        }
    }
    let stats = batcher.stats();
    batcher.shutdown(Shutdown::Graceful);
    let log = std::mem::take(&mut log.lock().expect("log").batches);
    let flushes = flushes.lock().expect("flushes").clone();
    let outcome = Outcome {
        answers,
        log,
        flushes,
        stats,
    };
    check(&outcome, cfg, producers, per_producer, kind);
    outcome
}

fn check(o: &Outcome, cfg: BatchConfig, producers: u32, per_producer: u32, kind: SinkKind) {
    let total = u64::from(producers) * u64::from(per_producer);
    assert_eq!(o.answers.len() as u64, total, "every item answered");
    // The sink saw every item exactly once.
    let mut seen: HashMap<u64, (usize, BatchFate)> = HashMap::new();
    for (b, (items, fate)) in o.log.iter().enumerate() {
        assert!(!items.is_empty(), "batch {b} is empty");
        let max_ops = if cfg.enabled { cfg.max_ops } else { 1 };
        assert!(
            items.len() <= max_ops,
            "batch {b} has {} items",
            items.len()
        );
        let bytes: usize = items.iter().map(|i| i.size).sum();
        assert!(
            bytes <= cfg.max_bytes || items.len() == 1,
            "batch {b} has {bytes} bytes over {}",
            cfg.max_bytes
        );
        for item in items {
            assert!(
                seen.insert(id(item), (b, *fate)).is_none(),
                "item {} flushed twice",
                id(item)
            );
        }
    }
    assert_eq!(seen.len() as u64, total, "every item flushed");
    // Per-producer order in sink order.
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (items, _) in &o.log {
        for item in items {
            if let Some(prev) = last.insert(item.producer, item.seq) {
                assert!(prev < item.seq, "producer {} out of order", item.producer);
            }
        }
    }
    // Each answer is the one its batch deserved.
    for (i, answer) in &o.answers {
        let (b, fate) = seen[i];
        let seq = (*i & 0xffff_ffff) as u32;
        match (fate, answer) {
            (BatchFate::Failed, Err(BatchError::Batch(e))) => {
                assert_eq!(**e, format!("batch {b} failed"));
            }
            (BatchFate::Panicked, Err(BatchError::SinkPanicked(m))) => {
                assert_eq!(&**m, format!("sink panic in batch {b}"));
            }
            (BatchFate::Answered, Err(BatchError::Item(e))) => {
                assert!(matches!(kind, SinkKind::FailItemsDivisibleBy(d) if seq.is_multiple_of(d)));
                assert_eq!(*e, format!("item {i} failed"));
            }
            (BatchFate::Answered, Ok(v)) => {
                assert_eq!(v, i);
                assert!(
                    !matches!(kind, SinkKind::FailItemsDivisibleBy(d) if seq.is_multiple_of(d))
                );
            }
            (fate, answer) => panic!("item {i} in a {fate:?} batch got {answer:?}"),
        }
    }
    // Observer and stats agree with the sink.
    assert_eq!(o.flushes.len(), o.log.len());
    assert_eq!(o.flushes.iter().map(|f| f.items as u64).sum::<u64>(), total);
    assert_eq!(o.stats.items, total);
    assert_eq!(o.stats.submitted, total);
    assert_eq!(o.stats.batches, o.log.len() as u64);
    assert_eq!(o.stats.by_trigger.iter().sum::<u64>(), o.stats.batches);
}

fn unit_size(_: u32, _: u32) -> usize {
    1
}

fn varied_size(p: u32, s: u32) -> usize {
    ((p * 31 + s * 17) % 50 + 1) as usize
}

fn cfg(policy: WaitPolicy) -> BatchConfig {
    BatchConfig {
        max_ops: 16,
        max_bytes: 200,
        max_wait: Duration::from_micros(200),
        wait_policy: policy,
        queue_capacity: 64,
        enabled: true,
    }
}

const POLICIES: [WaitPolicy; 3] = [
    WaitPolicy::Adaptive,
    WaitPolicy::Tiered,
    WaitPolicy::Fixed(Duration::from_micros(100)),
];

#[test]
fn every_sink_kind_every_policy_exactly_once() {
    let kinds = [
        SinkKind::Ok,
        SinkKind::FailBatchEvery(3),
        SinkKind::FailItemsDivisibleBy(7),
        SinkKind::PanicEvery(4),
        SinkKind::Slow(Duration::from_micros(300)),
    ];
    for round in 0..3 {
        for kind in kinds {
            for policy in POLICIES {
                let o = run(cfg(policy), 8, 60, kind, varied_size);
                assert!(!o.log.is_empty(), "round {round} {kind:?} {policy:?}");
            }
        }
    }
}

#[test]
fn concurrent_producers_form_batches() {
    // 32 closed-loop-or-burst producers into a slow sink: batches must hold more than one item.
    let o = run(
        BatchConfig {
            max_ops: 64,
            ..cfg(WaitPolicy::Adaptive)
        },
        32,
        20,
        SinkKind::Slow(Duration::from_millis(1)),
        unit_size,
    );
    let biggest = o
        .log
        .iter()
        .map(|(items, _)| items.len())
        .max()
        .unwrap_or(0);
    assert!(biggest > 1, "no batching happened: largest batch {biggest}");
    assert!(o.log.len() < 640, "{} batches for 640 items", o.log.len());
}

#[test]
fn disabled_batcher_flushes_each_item_alone() {
    let o = run(
        BatchConfig {
            enabled: false,
            ..cfg(WaitPolicy::Fixed(Duration::from_millis(50)))
        },
        4,
        25,
        SinkKind::Ok,
        unit_size,
    );
    assert!(o.log.iter().all(|(items, _)| items.len() == 1));
    assert!(o.flushes.iter().all(|f| f.trigger == FlushTrigger::Size));
}

#[test]
fn byte_limit_splits_batches_and_a_huge_item_goes_alone() {
    let log = Arc::new(Mutex::new(Log::default()));
    let b: Batcher<Item, u64, String> = Batcher::start(
        make_sink(SinkKind::Ok, Arc::clone(&log)),
        BatchConfig {
            max_ops: 100,
            max_bytes: 100,
            wait_policy: WaitPolicy::Fixed(Duration::from_secs(10)),
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    let items = [40, 40, 40, 500, 40, 30, 30].map(|size| Item {
        producer: 0,
        seq: 0,
        size,
    });
    let tickets = b.submit_many(items.iter().enumerate().map(|(i, it)| Item {
        seq: i as u32,
        ..*it
    }));
    for t in tickets {
        t.wait().expect("written");
    }
    b.shutdown(Shutdown::Graceful);
    let sizes: Vec<Vec<usize>> = log
        .lock()
        .expect("log")
        .batches
        .iter()
        .map(|(items, _)| items.iter().map(|i| i.size).collect())
        .collect();
    assert_eq!(
        sizes,
        vec![vec![40, 40], vec![40], vec![500], vec![40, 30, 30]]
    );
}

#[test]
fn fixed_linger_flushes_on_size_before_the_deadline() {
    let log = Arc::new(Mutex::new(Log::default()));
    let b: Batcher<Item, u64, String> = Batcher::start(
        make_sink(SinkKind::Ok, Arc::clone(&log)),
        BatchConfig {
            max_ops: 10,
            wait_policy: WaitPolicy::Fixed(Duration::from_secs(30)),
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    let tickets = b.submit_many((0..10).map(|seq| Item {
        producer: 0,
        seq,
        size: 1,
    }));
    for t in tickets {
        t.wait().expect("written");
    }
    let stats = b.stats();
    assert_eq!(stats.batches, 1);
    assert_eq!(stats.by_trigger[0], 1, "flushed on size: {stats:?}");
}

#[test]
fn adaptive_does_not_linger_for_a_lone_closed_loop_producer() {
    // One producer waiting on each item into an fsync-like sink: the worker is never ahead of
    // the arrivals, so every batch is flushed without lingering.
    let o = run(
        BatchConfig {
            max_wait: Duration::from_millis(5),
            ..cfg(WaitPolicy::Adaptive)
        },
        1,
        100,
        SinkKind::Slow(Duration::from_micros(500)),
        unit_size,
    );
    assert!(
        o.flushes
            .iter()
            .all(|f| f.trigger == FlushTrigger::Idle && f.linger.is_zero()),
        "{:?}",
        o.flushes.iter().find(|f| f.trigger != FlushTrigger::Idle)
    );
    assert_eq!(o.stats.current_linger, Duration::ZERO);
}

#[test]
fn graceful_shutdown_flushes_everything_queued() {
    let log = Arc::new(Mutex::new(Log::default()));
    let b: Batcher<Item, u64, String> = Batcher::start(
        make_sink(SinkKind::Slow(Duration::from_millis(2)), Arc::clone(&log)),
        BatchConfig {
            max_ops: 8,
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    // 203 = 25 full batches of 8 and 3 left for the shutdown flush.
    let tickets = b.submit_many((0..203).map(|seq| Item {
        producer: 0,
        seq,
        size: 1,
    }));
    b.shutdown(Shutdown::Graceful);
    for (i, t) in tickets.into_iter().enumerate() {
        assert_eq!(t.wait().expect("flushed before stopping"), i as u64);
    }
    assert_eq!(
        log.lock()
            .expect("log")
            .batches
            .iter()
            .map(|(items, _)| items.len())
            .sum::<usize>(),
        203
    );
    assert!(b.stats().by_trigger[5] > 0, "shutdown flushes are counted");
}

#[test]
fn abort_answers_closed_to_everything_not_flushed_and_loses_nothing() {
    // The sink holds its first batch until the abort has been requested, so items are surely
    // still queued when it lands.
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let log = Arc::clone(&log);
        move |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
            let _ = entered_tx.try_send(());
            let _ = gate_rx.recv_timeout(Duration::from_secs(30));
            log.lock().expect("log").extend(v.iter().copied());
            Ok(v.into_iter().map(Ok).collect())
        }
    };
    let b: Batcher<u64, u64, String> = Batcher::start(
        sink,
        BatchConfig {
            max_ops: 4,
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    let tickets = b.submit_many(0..100);
    entered_rx.recv().expect("the first batch is in the sink");
    let aborter = {
        let b = b.clone();
        thread::spawn(move || b.shutdown(Shutdown::Abort))
    };
    // Let the abort flag land, then release the batch in flight.
    while b.is_open() {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(5));
    drop(gate_tx);
    aborter.join().expect("aborter");
    let flushed = log.lock().expect("log").clone();
    let mut ok = Vec::new();
    let mut closed = 0;
    for t in tickets {
        match t.wait() {
            Ok(v) => ok.push(v),
            Err(BatchError::Closed) => closed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, flushed, "exactly the flushed items succeeded");
    assert!(!ok.is_empty(), "the batch in flight finished");
    assert!(closed > 0, "queued items were answered Closed, not flushed");
    assert_eq!(ok.len() + closed, 100);
    assert_eq!(b.stats().closed as usize, closed);
}

#[test]
fn stats_and_shutdown_from_other_threads_while_submitters_block() {
    // A full queue with a blocked submitter, an observer calling stats(), and a shutdown: none
    // of them may wait on another (stats takes no lock).
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let b: Batcher<u64, u64, String> = Batcher::start_observed(
        move |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
            let _ = gate_rx.recv_timeout(Duration::from_secs(30));
            Ok(v.into_iter().map(Ok).collect())
        },
        BatchConfig {
            max_ops: 1,
            queue_capacity: 2,
            ..BatchConfig::default()
        },
        None,
    )
    .expect("valid");
    let first = b.submit(0).expect("open");
    let producers: Vec<_> = (1..6)
        .map(|i| {
            let b = b.clone();
            thread::spawn(move || b.submit(i).map(|t| t.wait()))
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    let stats = b.stats();
    assert!(stats.queue_depth <= 2);
    let closer = {
        let b = b.clone();
        thread::spawn(move || b.shutdown(Shutdown::Graceful))
    };
    let observer_like = {
        let b = b.clone();
        thread::spawn(move || (0..100).map(|_| b.stats().submitted).max())
    };
    assert!(observer_like.join().expect("stats thread").is_some());
    for _ in 0..6 {
        let _ = gate_tx.send_timeout((), Duration::from_secs(5));
    }
    drop(gate_tx);
    closer.join().expect("closer");
    assert_eq!(first.wait(), Ok(0));
    for p in producers {
        match p.join().expect("producer") {
            Ok(answer) => assert!(answer.is_ok(), "{answer:?}"),
            Err(SubmitError::Closed(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn submit_after_shutdown_hands_the_item_back() {
    let b: Batcher<u64, u64, String> = Batcher::start(
        |v: Vec<u64>| Ok(v.into_iter().map(Ok).collect()),
        BatchConfig::default(),
    )
    .expect("valid");
    b.shutdown(Shutdown::Graceful);
    assert!(!b.is_open());
    assert_eq!(b.submit(7).expect_err("closed"), SubmitError::Closed(7));
    assert_eq!(b.try_submit(8).expect_err("closed"), SubmitError::Closed(8));
    let tickets = b.submit_many([1, 2]);
    assert!(
        tickets
            .into_iter()
            .all(|t| t.wait() == Err(BatchError::Closed))
    );
    // A second shutdown is a no-op.
    b.shutdown(Shutdown::Abort);
}

#[test]
fn full_queue_blocks_submit_and_refuses_try_submit() {
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
    let sink = move |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
        let _ = entered_tx.try_send(());
        gate_rx.recv().map_err(|e| e.to_string())?;
        Ok(v.into_iter().map(Ok).collect())
    };
    let b: Batcher<u64, u64, String> = Batcher::start(
        sink,
        BatchConfig {
            max_ops: 1,
            queue_capacity: 4,
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    let first = b.submit(0).expect("open");
    entered_rx
        .recv()
        .expect("the worker holds item 0 in the sink");
    let queued: Vec<_> = (1..=4).map(|i| b.try_submit(i).expect("room")).collect();
    assert_eq!(b.try_submit(5).expect_err("full"), SubmitError::Full(5));
    assert_eq!(b.stats().queue_depth, 4);
    // A blocking submit waits until the worker makes room.
    let blocked = {
        let b = b.clone();
        thread::spawn(move || b.submit(5).expect("open").wait())
    };
    for _ in 0..6 {
        gate_tx.send(()).expect("sink waits on the gate");
    }
    assert_eq!(first.wait(), Ok(0));
    for (i, t) in queued.into_iter().enumerate() {
        assert_eq!(t.wait(), Ok(i as u64 + 1));
    }
    assert_eq!(blocked.join().expect("thread"), Ok(5));
}

#[test]
fn sink_answering_the_wrong_count_fails_the_batch_clearly() {
    let b: Batcher<u64, u64, String> = Batcher::start(
        |_v: Vec<u64>| Ok(vec![Ok(1)]),
        BatchConfig {
            max_ops: 3,
            wait_policy: WaitPolicy::Fixed(Duration::from_secs(30)),
            ..BatchConfig::default()
        },
    )
    .expect("valid");
    let tickets = b.submit_many([1, 2, 3]);
    for t in tickets {
        let err = t.wait().expect_err("contract broken");
        assert_eq!(
            err.to_string(),
            "sink answered 1 results for a batch of 3 items"
        );
    }
}

#[test]
fn wait_timeout_returns_the_ticket_then_the_answer() {
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let b: Batcher<u64, u64, String> = Batcher::start(
        move |v: Vec<u64>| {
            gate_rx.recv().map_err(|e| e.to_string())?;
            Ok(v.into_iter().map(Ok).collect())
        },
        BatchConfig::default(),
    )
    .expect("valid");
    let t = b.submit(9).expect("open");
    let t = t
        .wait_timeout(Duration::from_millis(20))
        .expect_err("not answered while the sink is gated");
    gate_tx.send(()).expect("sink waits");
    assert_eq!(
        t.wait_timeout(Duration::from_secs(30)).expect("answered"),
        Ok(9)
    );
}

#[test]
fn invalid_configuration_names_the_field() {
    let sink = |v: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
        Ok(v.into_iter().map(Ok).collect())
    };
    for (cfg, msg) in [
        (
            BatchConfig {
                max_ops: 0,
                ..BatchConfig::default()
            },
            "invalid max_ops: must be at least 1, got 0",
        ),
        (
            BatchConfig {
                max_bytes: 0,
                ..BatchConfig::default()
            },
            "invalid max_bytes: must be at least 1, got 0",
        ),
        (
            BatchConfig {
                queue_capacity: 0,
                ..BatchConfig::default()
            },
            "invalid queue_capacity: must be at least 1, got 0",
        ),
    ] {
        let err = Batcher::start(sink, cfg).expect_err("invalid");
        assert_eq!(err.to_string(), msg);
    }
}

#[test]
fn every_sink_kind_every_policy_with_leading_submitters() {
    let kinds = [
        SinkKind::Ok,
        SinkKind::FailBatchEvery(3),
        SinkKind::FailItemsDivisibleBy(7),
        SinkKind::PanicEvery(4),
        SinkKind::Slow(Duration::from_micros(300)),
    ];
    for kind in kinds {
        for policy in POLICIES
            .into_iter()
            .chain([WaitPolicy::Fixed(Duration::ZERO)])
        {
            for producers in [1, 3, 8] {
                let o = run_with(cfg(policy), producers, 60, kind, varied_size, How::Leading);
                assert!(!o.log.is_empty(), "{kind:?} {policy:?} {producers}");
            }
        }
    }
}

/// Submits `n` items from this thread with `submit_wait`, returning each answer.
fn lone_writer(b: &Batcher<Item, u64, String>, n: u32) -> Vec<Answer> {
    (0..n)
        .map(|seq| {
            b.submit_wait(Item {
                producer: 0,
                seq,
                size: 1,
            })
            .expect("batcher is open")
        })
        .collect()
}

#[test]
fn a_lone_waiting_submitter_flushes_on_its_own_thread() {
    // Nothing queued, no flush in progress, and the adaptive policy never lingers for a lone
    // closed-loop producer: every flush runs on the submitter's thread, the worker never wakes.
    let log = Arc::new(Mutex::new(Log::default()));
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let observer = {
        let flushes = Arc::clone(&flushes);
        Arc::new(move |info: &FlushInfo| {
            flushes
                .lock()
                .expect("flushes")
                .push((*info, thread::current().id()))
        })
    };
    let b: Batcher<Item, u64, String> = Batcher::start_observed(
        make_sink(SinkKind::Ok, Arc::clone(&log)),
        cfg(WaitPolicy::Adaptive),
        Some(observer),
    )
    .expect("valid");
    let answers = lone_writer(&b, 200);
    for (seq, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, Ok(seq as u64));
    }
    let stats = b.stats();
    assert_eq!(
        (stats.submitted, stats.items, stats.batches),
        (200, 200, 200)
    );
    assert_eq!(stats.by_trigger[4], 200, "every flush is Idle: {stats:?}");
    let me = thread::current().id();
    let log = log.lock().expect("log");
    assert_eq!(log.threads.len(), 200);
    assert!(
        log.threads.iter().all(|t| *t == me),
        "a flush ran elsewhere"
    );
    // The observer saw each flush, on the same thread, before its answer came back.
    let flushes = flushes.lock().expect("flushes");
    assert_eq!(flushes.len(), 200);
    assert!(flushes.iter().all(|(f, t)| f.items == 1
        && f.trigger == FlushTrigger::Idle
        && f.linger.is_zero()
        && *t == me));
    drop((log, flushes));
    b.shutdown(Shutdown::Graceful);
    assert_eq!(
        b.submit_wait(Item {
            producer: 0,
            seq: 0,
            size: 1
        }),
        Err(SubmitError::Closed(Item {
            producer: 0,
            seq: 0,
            size: 1
        }))
    );
}

#[test]
fn a_failing_or_panicking_leaders_flush_answers_only_its_own_item() {
    // Batches 0, 3, 6 and 9 fail whole; each is one leader's item, so only those four fail.
    let log = Arc::new(Mutex::new(Log::default()));
    let b: Batcher<Item, u64, String> = Batcher::start(
        make_sink(SinkKind::FailBatchEvery(3), Arc::clone(&log)),
        cfg(WaitPolicy::Adaptive),
    )
    .expect("valid");
    for (seq, answer) in lone_writer(&b, 10).into_iter().enumerate() {
        if seq % 3 == 0 {
            assert_eq!(
                answer,
                Err(BatchError::Batch(Arc::new(format!("batch {seq} failed"))))
            );
        } else {
            assert_eq!(answer, Ok(seq as u64));
        }
    }
    assert_eq!(b.stats().batch_errors, 4);
    // A panicking sink on the submitter's thread is caught there; the batcher keeps serving.
    let log = Arc::new(Mutex::new(Log::default()));
    let b: Batcher<Item, u64, String> = Batcher::start(
        make_sink(SinkKind::PanicEvery(2), Arc::clone(&log)),
        cfg(WaitPolicy::Adaptive),
    )
    .expect("valid");
    for (seq, answer) in lone_writer(&b, 6).into_iter().enumerate() {
        if seq % 2 == 0 {
            assert_eq!(
                answer,
                Err(BatchError::SinkPanicked(
                    format!("sink panic in batch {seq}").into()
                ))
            );
        } else {
            assert_eq!(answer, Ok(seq as u64));
        }
    }
    assert_eq!(b.stats().panics, 3);
    // Tickets still reach the worker, which goes on counting batches: 6 panics, 7 does not.
    let item = |seq| Item {
        producer: 1,
        seq,
        size: 1,
    };
    let t = b.submit(item(6)).expect("open");
    assert_eq!(
        t.wait(),
        Err(BatchError::SinkPanicked("sink panic in batch 6".into()))
    );
    let t = b.submit(item(7)).expect("open");
    assert_eq!(t.wait(), Ok(id(&item(7))));
}

#[test]
fn only_a_policy_that_never_lingers_for_a_lone_item_lets_a_submitter_lead() {
    let me = thread::current().id();
    for (config, leads) in [
        (cfg(WaitPolicy::Adaptive), true),
        (cfg(WaitPolicy::Fixed(Duration::ZERO)), true),
        (cfg(WaitPolicy::Fixed(Duration::from_micros(100))), false),
        (cfg(WaitPolicy::Tiered), false),
        (
            BatchConfig {
                enabled: false,
                ..cfg(WaitPolicy::Fixed(Duration::from_millis(50)))
            },
            true,
        ),
    ] {
        let log = Arc::new(Mutex::new(Log::default()));
        let b: Batcher<Item, u64, String> =
            Batcher::start(make_sink(SinkKind::Ok, Arc::clone(&log)), config).expect("valid");
        for (seq, answer) in lone_writer(&b, 20).into_iter().enumerate() {
            assert_eq!(answer, Ok(seq as u64));
        }
        let stats = b.stats();
        b.shutdown(Shutdown::Graceful);
        let log = log.lock().expect("log");
        assert_eq!(log.batches.len(), 20, "{config:?}");
        assert!(
            log.threads.iter().all(|t| (*t == me) == leads),
            "{config:?}: leads {leads}"
        );
        if !config.enabled {
            assert_eq!(stats.by_trigger[0], 20, "flushed on size: {stats:?}");
        }
    }
}

/// A sink that tells `entered` which thread it runs on, then waits for the gate.
fn gated_sink(
    entered: crossbeam_channel::Sender<thread::ThreadId>,
    gate: crossbeam_channel::Receiver<()>,
    log: Arc<Mutex<Vec<u64>>>,
) -> impl FnMut(Vec<u64>) -> Result<Vec<Result<u64, String>>, String> + Send + 'static {
    move |v: Vec<u64>| {
        let _ = entered.send(thread::current().id());
        let _ = gate.recv_timeout(Duration::from_secs(30));
        log.lock().expect("log").extend(v.iter().copied());
        Ok(v.into_iter().map(Ok).collect())
    }
}

#[test]
fn shutdown_waits_for_a_leaders_flush_and_items_queued_behind_it_follow() {
    for mode in [Shutdown::Graceful, Shutdown::Abort] {
        let (entered_tx, entered_rx) = crossbeam_channel::unbounded();
        let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let b: Batcher<u64, u64, String> = Batcher::start(
            gated_sink(entered_tx, gate_rx, Arc::clone(&log)),
            BatchConfig::default(),
        )
        .expect("valid");
        let leader = {
            let b = b.clone();
            thread::spawn(move || (thread::current().id(), b.submit_wait(0)))
        };
        let ran_on = entered_rx
            .recv()
            .expect("the leader's flush is in the sink");
        // Queued behind the leader's flush: the worker takes them once it is over.
        let queued: Vec<_> = (1..=5).map(|i| b.submit(i).expect("open")).collect();
        let closer = {
            let b = b.clone();
            thread::spawn(move || b.shutdown(mode))
        };
        while b.is_open() {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(20));
        assert!(
            !closer.is_finished(),
            "{mode:?}: shutdown returned while a flush was in the sink"
        );
        // Released for every flush still to come (the sink, and its end of the gate, goes
        // with the worker once it stops).
        for _ in 0..10 {
            let _ = gate_tx.send(());
        }
        let (leader_id, answer) = leader.join().expect("leader");
        assert_eq!(
            ran_on, leader_id,
            "the idle batcher's flush ran on the submitter"
        );
        assert_eq!(answer, Ok(Ok(0)));
        closer.join().expect("closer");
        let answers: Vec<_> = queued.into_iter().map(Ticket::wait).collect();
        match mode {
            Shutdown::Graceful => assert_eq!(answers, (1..=5).map(Ok).collect::<Vec<_>>()),
            Shutdown::Abort => {
                assert!(
                    answers.iter().all(|a| *a == Err(BatchError::Closed)),
                    "{answers:?}"
                );
                assert_eq!(b.stats().closed, 5);
            }
        }
        let flushed = log.lock().expect("log").clone();
        let expect: Vec<u64> = match mode {
            Shutdown::Graceful => (0..=5).collect(),
            Shutdown::Abort => vec![0],
        };
        assert_eq!(flushed, expect, "{mode:?}");
        assert_eq!(b.submit_wait(9), Err(SubmitError::Closed(9)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random limits, policies, producer counts and sink behaviours keep every invariant.
    #[test]
    fn invariants_hold_for_random_configurations(
        max_ops in 1usize..20,
        max_bytes in 1usize..150,
        policy in prop::sample::select(POLICIES.to_vec()),
        enabled in prop::bool::weighted(0.9),
        queue_capacity in 1usize..32,
        producers in 1u32..6,
        per_producer in 0u32..40,
        kind in prop::sample::select(vec![
            SinkKind::Ok,
            SinkKind::FailBatchEvery(2),
            SinkKind::FailItemsDivisibleBy(3),
            SinkKind::PanicEvery(3),
            SinkKind::Slow(Duration::from_micros(100)),
        ]),
    ) {
        let cfg = BatchConfig {
            max_ops,
            max_bytes,
            max_wait: Duration::from_micros(100),
            wait_policy: policy,
            queue_capacity,
            enabled,
        };
        run(cfg, producers, per_producer, kind, varied_size);
    }

    /// The same with every third producer calling `submit_wait`, which may flush on its own
    /// thread: order, exactly-once answers and the stats hold whoever flushes.
    #[test]
    fn invariants_hold_when_submitters_lead(
        max_ops in 1usize..20,
        max_bytes in 1usize..150,
        policy in prop::sample::select(vec![
            WaitPolicy::Adaptive,
            WaitPolicy::Tiered,
            WaitPolicy::Fixed(Duration::ZERO),
            WaitPolicy::Fixed(Duration::from_micros(100)),
        ]),
        enabled in prop::bool::weighted(0.9),
        queue_capacity in 1usize..32,
        producers in 1u32..7,
        per_producer in 0u32..40,
        kind in prop::sample::select(vec![
            SinkKind::Ok,
            SinkKind::FailBatchEvery(2),
            SinkKind::FailItemsDivisibleBy(3),
            SinkKind::PanicEvery(3),
            SinkKind::Slow(Duration::from_micros(100)),
        ]),
    ) {
        let cfg = BatchConfig {
            max_ops,
            max_bytes,
            max_wait: Duration::from_micros(100),
            wait_policy: policy,
            queue_capacity,
            enabled,
        };
        run_with(cfg, producers, per_producer, kind, varied_size, How::Leading);
    }
}

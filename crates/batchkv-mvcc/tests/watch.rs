//! Watch: live events, history replay and the switch to live with no gap and no duplicate
//! (also under concurrent writes, with watchers that fall behind), compaction cancels, a stuck
//! watcher that does not stop `apply`, filters, progress, and nothing published for a failed
//! commit.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchkv_codec::{Compact, DeleteRange, Op, Txn};
use batchkv_mvcc::{Event, EventKind, WatchRequest, WatchResponse, Watcher};
use batchkv_testkit::temp_dir;
use bytes::Bytes;

use crate::common::{apply_ok, open, put};

const WAIT: Duration = Duration::from_secs(5);

fn next(w: &mut Watcher) -> WatchResponse {
    w.recv_timeout(WAIT)
        .expect("recv")
        .expect("a response within 5 s")
}

/// `(kind, key, value, mod, version)` of each event of a response.
fn summary(r: &WatchResponse) -> Vec<(EventKind, String, String, i64, i64)> {
    r.events
        .iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                String::from_utf8_lossy(&e.kv.value).into_owned(),
                e.kv.mod_revision,
                e.kv.version,
            )
        })
        .collect()
}

fn all_keys() -> WatchRequest {
    WatchRequest::range("\0", "\0")
}

#[test]
fn live_events_come_one_revision_per_response_in_op_order() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    apply_ok(&mut s, vec![put("a", "0")]);
    let mut w = s.watch(all_keys().with_prev_kv());
    let mut only_b = s.watch(WatchRequest::key("b"));
    let t = Txn {
        compares: vec![],
        success: vec![
            put("z", "1"),
            put("b", "1"),
            Op::DeleteRange(DeleteRange::key("a")),
        ],
        failure: vec![],
    };
    apply_ok(&mut s, vec![put("a", "1"), Op::Txn(t)]);
    let r = next(&mut w);
    assert_eq!(r.revision, 3);
    assert_eq!(
        summary(&r),
        [(EventKind::Put, "a".into(), "1".into(), 3, 2)]
    );
    assert_eq!(
        r.events[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from("0"))
    );
    let r = next(&mut w);
    assert_eq!(
        summary(&r),
        [
            (EventKind::Put, "z".into(), "1".into(), 4, 1),
            (EventKind::Put, "b".into(), "1".into(), 4, 1),
            (EventKind::Delete, "a".into(), String::new(), 4, 0),
        ]
    );
    assert_eq!(
        r.events[0].prev_kv, None,
        "a creation has no previous value"
    );
    let del = &r.events[2];
    assert_eq!(
        (del.kv.create_revision, del.kv.lease),
        (0, 0),
        "a delete carries key and revision only"
    );
    assert_eq!(del.prev_kv.as_ref().map(|kv| kv.mod_revision), Some(3));
    assert_eq!(
        summary(&next(&mut only_b)),
        [(EventKind::Put, "b".into(), "1".into(), 4, 1)]
    );
    assert_eq!(w.try_recv().expect("try"), None);
}

#[test]
fn replay_from_history_then_live_without_gap_or_duplicate() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    for i in 0..50 {
        apply_ok(&mut s, vec![put(&format!("k{}", i % 7), &i.to_string())]);
    }
    apply_ok(
        &mut s,
        vec![Op::DeleteRange(DeleteRange::range("k2", "k5"))],
    );
    let mut w = s.watch(all_keys().from_revision(2).with_prev_kv());
    let mut above = s.watch(all_keys().from_revision(s.current_revision() + 3));
    for i in 50..60 {
        apply_ok(&mut s, vec![put(&format!("k{}", i % 7), &i.to_string())]);
    }
    let mut revs = Vec::new();
    let mut events = 0;
    while revs.last() != Some(&s.current_revision()) {
        let r = next(&mut w);
        revs.push(r.events[0].kv.mod_revision);
        assert!(
            r.events
                .iter()
                .all(|e| e.kv.mod_revision == revs[revs.len() - 1])
        );
        events += r.events.len();
    }
    assert_eq!(revs, (2..=62).collect::<Vec<_>>());
    assert_eq!(events, 50 + 3 + 10);
    // A watch from above the current revision starts there, skipping what came before.
    let r = next(&mut above);
    assert_eq!(r.events[0].kv.mod_revision, 55);
}

#[test]
fn compaction_cancels_watches_that_start_below_it() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    for i in 0..10 {
        apply_ok(&mut s, vec![put("k", &i.to_string())]);
    }
    apply_ok(&mut s, vec![Op::Compact(Compact { revision: 6 })]);
    while !s.compact_step(100).expect("step") {}
    let mut below = s.watch(WatchRequest::key("k").from_revision(5));
    let r = next(&mut below);
    assert!(r.canceled && r.events.is_empty());
    assert_eq!(r.compact_revision, 6);
    assert!(r.cancel_reason.contains("compacted"), "{}", r.cancel_reason);
    assert_eq!(
        below.recv_timeout(Duration::from_millis(10)).expect("recv"),
        None
    );
    // From the compacted revision itself it works.
    let mut at = s.watch(WatchRequest::key("k").from_revision(6));
    let r = next(&mut at);
    assert_eq!((r.canceled, r.events[0].kv.mod_revision), (false, 6));
}

#[test]
fn a_stuck_watcher_does_not_stop_apply_and_catches_up_later() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let mut stuck = s.watch(WatchRequest {
        buffer: 2,
        ..all_keys().with_prev_kv()
    });
    // Far more entries than its buffer holds; nobody reads. apply must not wait.
    for i in 0..2_000 {
        apply_ok(
            &mut s,
            vec![
                put(&format!("k{}", i % 50), "v"),
                put("other", &i.to_string()),
            ],
        );
    }
    assert_eq!(s.current_revision(), 4_001);
    // It fell behind; reading now catches up from storage, in order, each revision once.
    let mut expect = 2;
    while expect <= 4_001 {
        let r = next(&mut stuck);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].kv.mod_revision, expect);
        expect += 1;
    }
    // And it follows live events again.
    apply_ok(&mut s, vec![put("late", "1")]);
    assert_eq!(next(&mut stuck).events[0].kv.mod_revision, 4_002);
}

/// Writers and watchers at once: every watcher, whatever its buffer and start, sees exactly
/// the store's events from its start on, in order, once.
#[test]
fn no_event_is_lost_or_repeated_across_the_switch_under_concurrent_writes() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&log);
    s.set_event_listener(move |e| sink.lock().expect("lock").extend_from_slice(e));
    for i in 0..300 {
        apply_ok(&mut s, vec![put(&format!("k{}", i % 13), &i.to_string())]);
    }
    const ENTRIES: usize = 1_500;
    let final_rev = 301 + 2 * ENTRIES as i64;
    // Watchers with small and large buffers, from old revisions, now, and a prefix.
    let specs: Vec<(WatchRequest, i64)> = vec![
        (
            WatchRequest {
                buffer: 1,
                ..all_keys().from_revision(2)
            },
            2,
        ),
        (
            WatchRequest {
                buffer: 4,
                ..all_keys().from_revision(150)
            },
            150,
        ),
        (
            WatchRequest {
                buffer: 64,
                ..all_keys()
            },
            302,
        ),
        (
            WatchRequest {
                buffer: 2,
                ..WatchRequest::range("k1", "k2").from_revision(100)
            },
            100,
        ),
        (
            WatchRequest {
                buffer: 3,
                ..all_keys().from_revision(301)
            },
            301,
        ),
    ];
    let readers: Vec<_> = specs
        .into_iter()
        .map(|(req, start)| {
            let key = req.key.clone();
            let end = req.range_end.clone();
            let mut w = s.watch(req);
            std::thread::spawn(move || {
                let mut got: Vec<Event> = Vec::new();
                let mut last = 0;
                while last < final_rev {
                    let r = w
                        .recv_timeout(Duration::from_secs(30))
                        .expect("recv")
                        .expect("response");
                    assert!(!r.canceled);
                    for e in r.events {
                        assert!(e.kv.mod_revision >= last, "out of order");
                        last = e.kv.mod_revision;
                        got.push(Event {
                            kind: e.kind,
                            kv: e.kv,
                            prev: None,
                        });
                    }
                    // Ranges that saw nothing recently still end: the writer's last entry
                    // touches every watched range.
                }
                (start, key, end, got)
            })
        })
        .collect();
    let writer = std::thread::spawn(move || {
        for i in 0..ENTRIES {
            apply_ok(
                &mut s,
                vec![
                    put(&format!("k{}", i % 13), "w"),
                    put("k1x", &i.to_string()),
                ],
            );
            if i % 100 == 0 {
                std::thread::yield_now();
            }
        }
        s
    });
    let s = writer.join().expect("writer");
    assert_eq!(s.current_revision(), final_rev);
    let log = log.lock().expect("lock").clone();
    for r in readers {
        let (start, key, end, got) = r.join().expect("reader");
        let want: Vec<(EventKind, Bytes, i64)> = log
            .iter()
            .filter(|e| e.kv.mod_revision >= start)
            .filter(|e| e.kv.key >= key && (end == "\0" || e.kv.key < end))
            .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
            .collect();
        let got: Vec<(EventKind, Bytes, i64)> = got
            .iter()
            .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "watcher from {start} over {key:?}..{end:?}"
        );
        assert_eq!(got, want, "watcher from {start} over {key:?}..{end:?}");
    }
}

#[test]
fn filters_progress_and_cancel() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let mut no_put = s.watch(WatchRequest {
        no_put: true,
        ..all_keys()
    });
    let mut no_delete = s.watch(WatchRequest {
        no_delete: true,
        ..all_keys()
    });
    let mut progress = s.watch(WatchRequest {
        progress_notify: true,
        ..WatchRequest::key("quiet")
    });
    let cancelled = s.watch(all_keys());
    cancelled.cancel();
    apply_ok(&mut s, vec![put("a", "1")]);
    apply_ok(&mut s, vec![Op::DeleteRange(DeleteRange::key("a"))]);
    assert_eq!(next(&mut no_put).events[0].kind, EventKind::Delete);
    assert_eq!(next(&mut no_delete).events[0].kind, EventKind::Put);
    assert_eq!(no_put.try_recv().expect("try"), None);
    assert_eq!(no_delete.try_recv().expect("try"), None);
    s.notify_progress();
    let p = next(&mut progress);
    assert!(p.is_progress() && p.revision == 3, "{p:?}");
    // A failed commit publishes nothing.
    s.engine().inject_write_failures_after(0);
    assert!(s.apply(3, &[put("b", "1")]).is_err());
    s.engine().clear_injected_failures();
    assert_eq!(
        no_delete
            .recv_timeout(Duration::from_millis(50))
            .expect("recv"),
        None
    );
    apply_ok(&mut s, vec![put("b", "2")]);
    let r = next(&mut no_delete);
    assert_eq!(
        summary(&r),
        [(EventKind::Put, "b".into(), "2".into(), 4, 1)]
    );
}

#[test]
fn closing_the_store_ends_blocked_watchers() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    apply_ok(&mut s, vec![put("a", "1")]);
    let mut w = s.watch(WatchRequest::key("a").from_revision(2));
    let waiter = std::thread::spawn(move || {
        let mut got = 0;
        while let Some(r) = w.recv().expect("recv") {
            got += r.events.len();
        }
        got
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
    assert_eq!(
        waiter.join().expect("waiter"),
        1,
        "it got the history, then ended"
    );
}

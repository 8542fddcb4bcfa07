//! The store's behaviour case by case: etcd's documented sequences, txn rules and errors,
//! compaction (logical and physical), recovery, a failing commit, and a crash.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, LeaseRevoke, Op, Put, Range,
    SortOrder, SortTarget, Txn,
};
use batchkv_engine::{KeyRange, WriteMode};
use batchkv_mvcc::{
    Event, EventKind, KeyValue, Mvcc, MvccConfig, MvccError, OpError, OpResponse, Prepared,
    Revision,
};
use batchkv_testkit::{ChildProcess, child_env, temp_dir};
use bytes::Bytes;

use crate::common::{one, open, put};

fn get(store: &Mvcc, key: &str, rev: i64) -> Result<Option<KeyValue>, MvccError> {
    let r = store.range(&Range {
        revision: rev,
        ..Range::key(key.to_owned())
    })?;
    Ok(r.kvs.into_iter().next())
}

fn meta(kv: &KeyValue) -> (i64, i64, i64, &[u8]) {
    (
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        &kv.value[..],
    )
}

fn stored_records(store: &Mvcc) -> usize {
    let kv = store.engine().cf("kv").expect("kv cf");
    store
        .engine()
        .scan(kv, &KeyRange::all(), false, |_, _| true)
        .expect("scan")
}

#[test]
fn the_documented_revision_sequence() {
    // ../shared/spec/etcd-semantics.md, "Sequence on a fresh store".
    let dir = temp_dir();
    let mut s = open(dir.path());
    assert_eq!(s.current_revision(), 1);
    assert_eq!(one(&mut s, put("foo", "v1")).expect("put").revision(), 2);
    assert_eq!(one(&mut s, put("foo", "v2")).expect("put").revision(), 3);
    assert_eq!(one(&mut s, put("bar", "b1")).expect("put").revision(), 4);
    assert_eq!(one(&mut s, put("foo", "v3")).expect("put").revision(), 5);
    let foo = get(&s, "foo", 0).expect("read").expect("foo");
    assert_eq!(meta(&foo), (2, 5, 3, &b"v3"[..]));
    let del = DeleteRange {
        prev_kv: true,
        ..DeleteRange::key("foo")
    };
    match one(&mut s, del.clone()).expect("delete") {
        OpResponse::DeleteRange(d) => {
            assert_eq!((d.revision, d.deleted), (6, 1));
            assert_eq!(meta(&d.prev_kvs[0]), (2, 5, 3, &b"v3"[..]));
        }
        other => panic!("{other:?}"),
    }
    match one(&mut s, del).expect("delete again") {
        OpResponse::DeleteRange(d) => assert_eq!((d.revision, d.deleted), (6, 0)),
        other => panic!("{other:?}"),
    }
    let none = one(&mut s, DeleteRange::range("zzz", "zz{")).expect("prefix delete");
    assert_eq!(none.revision(), 6);
    assert_eq!(s.current_revision(), 6);
    assert_eq!(
        one(&mut s, put("foo", "v4")).expect("re-create").revision(),
        7
    );
    assert_eq!(
        meta(&get(&s, "foo", 0).expect("read").expect("foo")),
        (7, 7, 1, &b"v4"[..])
    );
    assert_eq!(
        one(&mut s, put("foo", "v4"))
            .expect("same value")
            .revision(),
        8
    );
    let p = Put {
        prev_kv: true,
        ..Put::new("foo", "v5")
    };
    match one(&mut s, p).expect("put") {
        OpResponse::Put(p) => {
            assert_eq!(p.revision, 9);
            assert_eq!(meta(&p.prev_kv.expect("prev")), (7, 8, 2, &b"v4"[..]));
        }
        other => panic!("{other:?}"),
    }
    // History reads.
    assert_eq!(get(&s, "foo", 5).expect("rev 5").expect("foo").value, "v3");
    assert_eq!(get(&s, "foo", 6).expect("rev 6"), None);
    assert_eq!(
        meta(&get(&s, "foo", 7).expect("rev 7").expect("foo")),
        (7, 7, 1, &b"v4"[..])
    );
    let err = get(&s, "foo", 100).expect_err("future");
    assert_eq!(
        err.to_string(),
        "mvcc: required revision is a future revision"
    );
    // A read's header is the current revision, also at an old one.
    let r = s
        .range(&Range {
            revision: 3,
            ..Range::key("foo")
        })
        .expect("read");
    assert_eq!(r.revision, 9);
}

#[test]
fn txn_writes_share_one_revision_and_read_their_own_writes() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    one(&mut s, put("bar", "b")).expect("put");
    let t = Txn {
        compares: vec![Compare::new(
            "k1",
            CompareOp::Equal,
            CompareTarget::CreateRevision(0),
        )],
        success: vec![
            put("k1", "1"),
            put("k2", "2"),
            Op::DeleteRange(DeleteRange::key("bar")),
            Op::Range(Range::key("k1")),
        ],
        failure: vec![],
    };
    let OpResponse::Txn(r) = one(&mut s, t.clone()).expect("txn") else {
        panic!("not a txn response")
    };
    assert!(r.succeeded);
    assert_eq!(r.revision, 3);
    let OpResponse::Range(read) = &r.responses[3] else {
        panic!("not a range")
    };
    assert_eq!(read.revision, 3);
    assert_eq!(meta(&read.kvs[0]), (3, 3, 1, &b"1"[..]));
    for k in ["k1", "k2"] {
        assert_eq!(get(&s, k, 0).expect("read").expect("key").mod_revision, 3);
    }
    assert_eq!(get(&s, "bar", 0).expect("read"), None);
    // Again: "if absent" fails now; the failure branch is empty, so the revision stays.
    let OpResponse::Txn(r) = one(&mut s, t).expect("txn") else {
        panic!("not a txn response")
    };
    assert!(!r.succeeded);
    assert_eq!((r.revision, s.current_revision()), (3, 3));
}

#[test]
fn compares_on_missing_keys_and_ranges() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let holds = |s: &mut Mvcc, c: Compare| match one(
        s,
        Txn {
            compares: vec![c],
            success: vec![],
            failure: vec![],
        },
    ) {
        Ok(OpResponse::Txn(t)) => t.succeeded,
        other => panic!("{other:?}"),
    };
    let value =
        |op, v: &str| Compare::new("missing", op, CompareTarget::Value(v.to_owned().into()));
    assert!(!holds(&mut s, value(CompareOp::Equal, "")));
    assert!(!holds(&mut s, value(CompareOp::NotEqual, "zz")));
    assert!(holds(
        &mut s,
        Compare::new("missing", CompareOp::Equal, CompareTarget::ModRevision(0))
    ));
    assert!(holds(
        &mut s,
        Compare::new("missing", CompareOp::Equal, CompareTarget::Lease(0))
    ));
    one(&mut s, put("r1", "a")).expect("put");
    one(&mut s, put("r2", "b")).expect("put");
    // Over a range, every key must hold.
    let range = |op, v: &str| Compare {
        range_end: Bytes::from_static(b"r9"),
        ..Compare::new("r0", op, CompareTarget::Value(v.to_owned().into()))
    };
    assert!(holds(&mut s, range(CompareOp::Greater, "")));
    assert!(!holds(&mut s, range(CompareOp::Equal, "a")));
    assert!(holds(&mut s, range(CompareOp::Less, "c")));
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let nested = Txn {
        compares: vec![Compare::new(
            "x",
            CompareOp::Equal,
            CompareTarget::Version(0),
        )],
        success: vec![put("y", "saw-no-x")],
        failure: vec![put("y", "saw-x")],
    };
    let outer = Txn {
        compares: vec![],
        success: vec![put("x", "1"), Op::Txn(nested)],
        failure: vec![],
    };
    let OpResponse::Txn(r) = one(&mut s, outer).expect("txn") else {
        panic!("not a txn response")
    };
    assert_eq!(get(&s, "y", 0).expect("read").expect("y").value, "saw-no-x");
    let OpResponse::Txn(inner) = &r.responses[1] else {
        panic!("not a txn")
    };
    assert!(inner.succeeded);
    assert_eq!(
        inner.revision, 0,
        "a nested txn's header has no revision in etcd"
    );
}

#[test]
fn txn_rules_and_errors_are_etcds() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let txn = |success: Vec<Op>| Txn {
        compares: vec![],
        success,
        failure: vec![],
    };
    let dup = OpError::DuplicateKey;
    assert_eq!(
        one(&mut s, txn(vec![put("k", "1"), put("k", "2")])),
        Err(dup.clone())
    );
    assert_eq!(
        one(
            &mut s,
            txn(vec![Op::DeleteRange(DeleteRange::key("k")), put("k", "2")])
        ),
        Err(dup.clone())
    );
    assert_eq!(
        one(
            &mut s,
            txn(vec![
                Op::DeleteRange(DeleteRange::range("a", "z")),
                put("k", "2")
            ])
        ),
        Err(dup.clone())
    );
    // Two deletes of one key are fine; so are puts of one key in both branches of a nested txn.
    let both = Txn {
        compares: vec![],
        success: vec![put("n", "then")],
        failure: vec![put("n", "else")],
    };
    assert!(one(&mut s, txn(vec![Op::Txn(both.clone()), put("m", "x")])).is_ok());
    assert_eq!(
        one(&mut s, txn(vec![Op::Txn(both), put("n", "x")])),
        Err(dup)
    );
    assert!(
        one(
            &mut s,
            txn(vec![
                Op::DeleteRange(DeleteRange::key("k")),
                Op::DeleteRange(DeleteRange::key("k"))
            ])
        )
        .is_ok()
    );
    // 128 ops per branch are allowed, 129 are not.
    let many = |n: usize| txn((0..n).map(|i| put(&format!("m{i}"), "v")).collect());
    assert!(one(&mut s, many(128)).is_ok());
    let err = one(&mut s, many(129)).expect_err("too many");
    assert_eq!(
        err,
        OpError::TooManyOps {
            count: 129,
            max: 128
        }
    );
    assert_eq!(
        err.to_string(),
        "etcdserver: too many operations in txn request"
    );
    // Empty keys, anywhere.
    assert_eq!(one(&mut s, put("", "v")), Err(OpError::EmptyKey));
    assert_eq!(one(&mut s, txn(vec![put("", "v")])), Err(OpError::EmptyKey));
    assert_eq!(
        one(&mut s, Op::Range(Range::default()))
            .expect_err("empty")
            .to_string(),
        "etcdserver: key is not provided"
    );
    // Request size, configurable.
    let big = "v".repeat(1536 * 1024);
    let err = one(&mut s, put("big", &big)).expect_err("too large");
    assert!(
        matches!(err, OpError::RequestTooLarge { max: 1_572_864, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "etcdserver: request is too large");
    // Lease 7 does not exist.
    let leased = Put {
        lease: 7,
        ..Put::new("l", "v")
    };
    assert_eq!(one(&mut s, leased), Err(OpError::LeaseNotFound { id: 7 }));
    assert_eq!(
        one(&mut s, LeaseRevoke { id: 7 })
            .expect_err("revoke")
            .to_string(),
        "etcdserver: requested lease not found"
    );
    // ignore_value needs the key and no value.
    let ignore = Put {
        ignore_value: true,
        ..Put::new("absent", "")
    };
    assert_eq!(one(&mut s, ignore), Err(OpError::KeyNotFound));
    let ignore = Put {
        ignore_value: true,
        ..Put::new("m0", "given")
    };
    assert_eq!(one(&mut s, ignore), Err(OpError::ValueProvided));
    let before = get(&s, "m0", 0).expect("read").expect("m0");
    let ignore = Put {
        ignore_value: true,
        ..Put::new("m0", "")
    };
    let rev = one(&mut s, ignore).expect("ignore_value").revision();
    let after = get(&s, "m0", 0).expect("read").expect("m0");
    assert_eq!(
        (after.value, after.version, after.mod_revision),
        (before.value, before.version + 1, rev)
    );
    // None of the refused ops moved the revision.
    assert_eq!(s.current_revision(), rev);
}

#[test]
fn an_entry_is_prepared_op_by_op_and_failures_stay_local() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let ops = vec![
        put("a", "1"),
        put("", "refused"),
        Op::Range(Range::key("a")),
        Op::DeleteRange(DeleteRange::key("a")),
        Op::Range(Range {
            revision: 2,
            ..Range::key("a")
        }),
        put("a", "2"),
    ];
    let applied = s.apply(1, &ops).expect("entry");
    assert_eq!(applied.revision, 4);
    assert_eq!(applied.results[1], Err(OpError::EmptyKey));
    let OpResponse::Range(r) = applied.results[2].as_ref().expect("range") else {
        panic!("not a range")
    };
    assert_eq!((r.revision, r.kvs[0].value.as_ref()), (2, &b"1"[..]));
    assert_eq!(applied.results[3].as_ref().expect("delete").revision(), 3);
    let OpResponse::Range(r) = applied.results[4].as_ref().expect("old read") else {
        panic!("not a range")
    };
    assert_eq!(
        (r.revision, r.kvs.len()),
        (3, 1),
        "revision 2 of the entry is readable"
    );
    assert_eq!(
        meta(&get(&s, "a", 0).expect("read").expect("a")),
        (4, 4, 1, &b"2"[..])
    );
    // A replayed entry is skipped.
    let again = s.apply(1, &ops).expect("replay");
    assert!(again.skipped && again.results.is_empty());
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn ranges_limit_count_sort_and_filter() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] {
        one(&mut s, put(k, v)).expect("put");
    }
    one(&mut s, put("b", "9")).expect("put"); // b: version 2, mod 6
    let all = Range {
        range_end: Bytes::from_static(b"\0"),
        ..Range::key("a")
    };
    let keys = |r: &batchkv_mvcc::RangeResponse| -> String {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    };
    let r = s
        .range(&Range {
            limit: 2,
            ..all.clone()
        })
        .expect("limit");
    assert_eq!((keys(&r), r.more, r.count), ("ab".into(), true, 4));
    let r = s
        .range(&Range {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Value,
            limit: 3,
            ..all.clone()
        })
        .expect("by value");
    assert_eq!((keys(&r), r.more), ("bac".into(), true));
    let r = s
        .range(&Range {
            sort_target: SortTarget::Mod,
            ..all.clone()
        })
        .expect("by mod, ascending by default");
    assert_eq!(keys(&r), "acdb");
    let r = s
        .range(&Range {
            min_mod_revision: 4,
            max_create_revision: 4,
            ..all.clone()
        })
        .expect("filters");
    assert_eq!(
        (keys(&r), r.count),
        ("bc".into(), 4),
        "count is before the filters, as etcd"
    );
    let r = s
        .range(&Range {
            count_only: true,
            ..all.clone()
        })
        .expect("count");
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 4, false));
    let r = s
        .range(&Range {
            keys_only: true,
            ..all
        })
        .expect("keys only");
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version > 0));
}

#[test]
fn compaction_keeps_what_reads_can_reach_and_removes_the_rest() {
    let dir = temp_dir();
    let mut s = Mvcc::open(
        MvccConfig::new(dir.path())
            .write_mode(WriteMode::WAL)
            .compaction_batch(0),
    )
    .expect("open");
    for i in 0..5 {
        one(&mut s, put("hot", &format!("v{i}"))).expect("put"); // revs 2..=6
    }
    one(&mut s, put("gone", "x")).expect("put"); // 7
    one(&mut s, DeleteRange::key("gone")).expect("delete"); // 8
    one(&mut s, put("kept", "k")).expect("put"); // 9
    one(&mut s, put("hot", "late")).expect("put"); // 10
    assert_eq!(stored_records(&s), 9);

    let r = one(&mut s, Compact { revision: 9 }).expect("compact");
    assert_eq!(
        (r.revision(), s.current_revision()),
        (10, 10),
        "compaction does not move the revision"
    );
    assert_eq!(s.compacted_revision(), Some(9));
    // Logically done at once; storage is cleaned by steps (none ran: compaction_batch 0).
    assert_eq!(stored_records(&s), 9);
    assert_eq!(s.compaction_status().pending, Some(9));
    assert_eq!(
        get(&s, "hot", 8).expect_err("compacted").to_string(),
        "mvcc: required revision has been compacted"
    );
    while !s.compact_step(2).expect("step") {}
    // Left: hot@6 (what reads at 9 see), kept@9, hot@10. `gone` has no history left.
    assert_eq!(stored_records(&s), 3);
    assert_eq!(s.compaction_status().removed, 6);
    assert_eq!(
        meta(&get(&s, "hot", 9).expect("at 9").expect("hot")),
        (2, 6, 5, &b"v4"[..])
    );
    assert_eq!(get(&s, "gone", 9).expect("at 9"), None);
    assert_eq!(
        meta(&get(&s, "kept", 0).expect("latest").expect("kept")),
        (9, 9, 1, &b"k"[..])
    );
    // etcd's compaction errors.
    assert_eq!(
        one(&mut s, Compact { revision: 9 }),
        Err(OpError::Compacted {
            requested: 9,
            compacted: 9
        })
    );
    assert_eq!(
        one(&mut s, Compact { revision: 11 }),
        Err(OpError::FutureRevision {
            requested: 11,
            current: 10
        })
    );
    assert!(
        one(&mut s, Compact { revision: 10 }).is_ok(),
        "the current revision may be compacted"
    );
    // Everything survives a restart.
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        (s.current_revision(), s.compacted_revision()),
        (10, Some(10))
    );
    assert_eq!(get(&s, "hot", 0).expect("latest").expect("hot").version, 6);
}

#[test]
fn an_interrupted_compaction_finishes_after_reopen() {
    let dir = temp_dir();
    let cfg = MvccConfig::new(dir.path())
        .write_mode(WriteMode::WAL)
        .compaction_batch(0);
    let mut s = Mvcc::open(cfg.clone()).expect("open");
    for i in 0..20 {
        one(&mut s, put(&format!("k{}", i % 4), "v")).expect("put");
    }
    one(&mut s, DeleteRange::key("k0")).expect("delete");
    one(&mut s, Compact { revision: 22 }).expect("compact");
    assert!(!s.compact_step(5).expect("one step")); // part of it, then "crash"
    drop(s);
    let mut s = Mvcc::open(cfg).expect("reopen");
    assert_eq!(s.compaction_status().pending, Some(22));
    assert_eq!(get(&s, "k0", 0).expect("read"), None);
    assert_eq!(get(&s, "k1", 0).expect("read").expect("k1").version, 5);
    while !s.compact_step(1000).expect("step") {}
    assert_eq!(stored_records(&s), 3);
}

#[test]
fn events_go_out_after_the_commit_in_op_order() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&seen);
    s.set_event_listener(move |events| sink.lock().expect("lock").extend_from_slice(events));
    s.apply(1, &[put("b", "1"), put("a", "1")]).expect("entry");
    let t = Txn {
        compares: vec![],
        success: vec![put("z", "2"), Op::DeleteRange(DeleteRange::range("a", "c"))],
        failure: vec![],
    };
    s.apply(2, &[Op::Txn(t)]).expect("entry");
    let events = seen.lock().expect("lock").clone();
    let summary: Vec<(EventKind, &[u8], i64)> = events
        .iter()
        .map(|e| (e.kind, &e.kv.key[..], e.kv.mod_revision))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, &b"b"[..], 2),
            (EventKind::Put, &b"a"[..], 3),
            (EventKind::Put, &b"z"[..], 4),
            (EventKind::Delete, &b"a"[..], 4),
            (EventKind::Delete, &b"b"[..], 4),
        ]
    );
    // A delete's kv holds only key and revision; prev points at the value it removed.
    assert_eq!((events[3].kv.version, events[3].kv.create_revision), (0, 0));
    assert_eq!(events[3].prev, Some(Revision::new(3, 0)));
    let prev = s
        .kv_at(events[3].prev.expect("prev"))
        .expect("read")
        .expect("record");
    assert_eq!(meta(&prev), (3, 3, 1, &b"1"[..]));
    assert_eq!(events[0].prev, None, "a creation has no previous value");
}

#[test]
fn a_failed_commit_changes_nothing() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let seen: Arc<Mutex<usize>> = Arc::default();
    let sink = Arc::clone(&seen);
    s.set_event_listener(move |e| *sink.lock().expect("lock") += e.len());
    s.apply(1, &[put("a", "1"), put("b", "1")]).expect("entry");
    let before = (
        s.current_revision(),
        s.applied_index(),
        s.indexed_keys(),
        *seen.lock().expect("lock"),
    );

    s.engine().inject_write_failures_after(0);
    let t = Txn {
        compares: vec![],
        success: vec![put("c", "1"), Op::DeleteRange(DeleteRange::key("a"))],
        failure: vec![],
    };
    let err = s
        .apply(
            2,
            &[
                put("a", "2"),
                Op::Txn(t),
                Op::Compact(Compact { revision: 2 }),
            ],
        )
        .expect_err("commit fails");
    assert!(matches!(err, MvccError::Engine(_)), "{err}");
    assert_eq!(
        (
            s.current_revision(),
            s.applied_index(),
            s.indexed_keys(),
            *seen.lock().expect("lock")
        ),
        before
    );
    assert_eq!(s.compacted_revision(), None);
    assert_eq!(get(&s, "a", 0).expect("read").expect("a").value, "1");
    assert_eq!(get(&s, "c", 0).expect("read"), None);
    assert_eq!(
        get(&s, "a", 2)
            .expect("old revisions still readable")
            .expect("a")
            .value,
        "1"
    );

    // The same entry applies once the engine works again, and only once.
    s.engine().clear_injected_failures();
    let applied = s
        .apply(2, &[put("a", "2"), Op::Compact(Compact { revision: 2 })])
        .expect("entry");
    assert_eq!(applied.revision, 4);
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        (
            s.current_revision(),
            s.applied_index(),
            s.compacted_revision()
        ),
        (4, 2, Some(2))
    );
}

#[test]
fn the_apply_phases_by_hand_answer_as_apply_does() {
    // Two stores fed the same entries: one through `apply`, one through the three phases as the
    // facade runs them (prepare on `&self`, commit on the shared engine, finish on `&mut self`).
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let mut whole = open(dir_a.path());
    let mut phased = open(dir_b.path());
    let engine = phased.shared_engine();
    let mode = phased.config().write_mode;
    let entries: Vec<Vec<Op>> = vec![
        vec![put("a", "1"), put("b", "1")],
        vec![
            put("a", "2"),
            Op::DeleteRange(DeleteRange::key("b")),
            put("", "x"),
        ],
        vec![Op::Compact(Compact { revision: 3 })],
    ];
    for (i, ops) in entries.iter().enumerate() {
        let index = i as u64 + 1;
        let want = whole.apply(index, ops).expect("apply");
        let entry = match phased.prepare(index, ops).expect("prepare") {
            Prepared::Ready(entry) => entry,
            Prepared::Skipped(a) => panic!("entry {index} skipped: {a:?}"),
        };
        assert_eq!((entry.index(), entry.revision()), (index, want.revision));
        // Prepared, not committed: nothing changed yet.
        assert_eq!(phased.applied_index(), index - 1);
        let committed = Mvcc::commit_prepared(&engine, entry, mode).expect("commit");
        assert_eq!(
            (committed.index(), committed.revision()),
            (index, want.revision)
        );
        assert_eq!(
            phased.applied_index(),
            index - 1,
            "memory moves only in finish"
        );
        let got = phased.finish(committed);
        // `events` differs by design: `prepare` always builds the events (a watcher may
        // register before `finish`), `apply` only when someone listens.
        assert_eq!(
            (got.index, got.skipped, got.revision, &got.results),
            (want.index, want.skipped, want.revision, &want.results)
        );
    }
    // A replay is answered without a commit.
    match phased.prepare(2, &entries[1]).expect("prepare") {
        Prepared::Skipped(a) => {
            assert!(a.skipped && a.results.is_empty());
            assert_eq!((a.index, a.revision), (2, phased.current_revision()));
        }
        Prepared::Ready(_) => panic!("an applied entry was prepared again"),
    }

    // A failed commit gives no `CommittedEntry`: nothing to finish, nothing changed, and the
    // same entry goes through once the engine works again.
    let before = (phased.current_revision(), phased.applied_index());
    engine.inject_write_failures_after(0);
    let Prepared::Ready(entry) = phased.prepare(4, &[put("c", "1")]).expect("prepare") else {
        panic!("entry 4 skipped");
    };
    let err = Mvcc::commit_prepared(&engine, entry, mode).expect_err("commit fails");
    assert!(matches!(err, MvccError::Engine(_)), "{err}");
    assert_eq!((phased.current_revision(), phased.applied_index()), before);
    assert_eq!(get(&phased, "c", 0).expect("read"), None);
    engine.clear_injected_failures();
    let Prepared::Ready(entry) = phased.prepare(4, &[put("c", "1")]).expect("prepare") else {
        panic!("entry 4 skipped");
    };
    let committed = Mvcc::commit_prepared(&engine, entry, mode).expect("commit");
    let applied = phased.finish(committed);
    assert_eq!((applied.index, applied.revision), (4, before.0 + 1));
    assert_eq!(get(&phased, "c", 0).expect("read").expect("c").value, "1");
}

#[test]
fn a_store_rejects_a_newer_format() {
    let dir = temp_dir();
    drop(open(dir.path()));
    {
        let engine = batchkv_engine::Engine::open(
            batchkv_engine::EngineConfig::new(dir.path()).column_families(["kv", "meta"]),
        )
        .expect("engine");
        let meta = engine.cf("meta").expect("meta");
        let mut b = engine.begin_batch();
        b.put(meta, b"format_version", &9u32.to_be_bytes())
            .expect("put");
        b.commit(WriteMode::SYNC).expect("commit");
    }
    let err = Mvcc::open(MvccConfig::new(dir.path())).expect_err("newer format");
    assert!(
        matches!(
            err,
            MvccError::FormatVersion {
                found: 9,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

// --- A crash: the child process applies entries with syncing writes and reports each one it
// got an answer for; the parent kills it with SIGKILL mid-stream and reopens the store. ---

const CHILD: &str = "BATCHKV_MVCC_TEST_CHILD";

/// The entry `i` of the crash test: five puts of rising values and a delete, so half an entry
/// would show (a key's value out of step with the others, or a revision not a multiple of 6).
fn crash_entry(i: u64) -> Vec<Op> {
    let mut ops: Vec<Op> = (0..5)
        .map(|k| put(&format!("k{k}"), &format!("{i}")))
        .collect();
    ops.push(Op::DeleteRange(DeleteRange::key(format!("gone{}", i % 3))));
    ops
}

#[test]
fn a_crash_loses_no_acknowledged_entry_and_shows_no_half_entry() {
    if let Some(dir) = child_env(CHILD) {
        let mut s = Mvcc::open(MvccConfig::new(Path::new(&dir))).expect("child open (SYNC)");
        for i in 1.. {
            s.apply(i, &crash_entry(i)).expect("apply");
            println!("ACK {i}");
        }
        return;
    }
    let dir = temp_dir();
    let mut child = ChildProcess::test(
        "a_crash_loses_no_acknowledged_entry_and_shows_no_half_entry",
        CHILD,
        dir.path(),
    );
    let mut acked = 0u64;
    while let Some(line) = child.next_line() {
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = n.parse().expect("number");
            if acked == 200 {
                break;
            }
        }
    }
    child.kill();
    assert_eq!(acked, 200, "the child stopped early");
    let s = open(dir.path());
    let applied = s.applied_index();
    assert!(
        applied >= acked,
        "acknowledged entry {acked} lost: applied index {applied}"
    );
    // Each entry is 5 puts (5 revisions); the delete of an absent key changes nothing.
    assert_eq!(
        s.current_revision(),
        1 + 5 * applied as i64,
        "half an entry is visible"
    );
    for k in 0..5 {
        let kv = get(&s, &format!("k{k}"), 0).expect("read").expect("key");
        assert_eq!(
            kv.value,
            applied.to_string(),
            "k{k} is out of step with the applied index"
        );
    }
}

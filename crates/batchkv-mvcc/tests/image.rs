//! Store images (`Mvcc::snapshot_image`, `Mvcc::restore_image`: a replica's raft snapshot):
//! a restored store holds the same history (HashKV, revisions, compaction, leases and their
//! keys) and reopens from disk with it; a damaged image is refused with nothing written; a
//! watcher of the restored store gets the revisions it missed from the restored storage, or
//! etcd's compacted cancel.

mod common;

use std::time::Duration;

use batchkv_codec::{Compact, DeleteRange, LeaseGrant, Op, Put, Range};
use batchkv_mvcc::{Mvcc, MvccError, WatchRequest, Watcher};
use batchkv_testkit::temp_dir;

use crate::common::{apply_ok, open, put};

/// The entries both stores apply (a prefix for the one that falls behind), as op lists.
fn history() -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = Vec::new();
    for i in 0..20 {
        out.push(vec![put(&format!("k/{:02}", i % 7), &format!("v{i}"))]);
    }
    out.push(vec![Op::DeleteRange(DeleteRange::key("k/01"))]);
    out.push(vec![Op::LeaseGrant(LeaseGrant { id: 42, ttl: 600 })]);
    out.push(vec![Op::Put(Put {
        lease: 42,
        ..Put::new("leased", "v")
    })]);
    out.push(vec![Op::Compact(Compact { revision: 10 })]);
    for i in 0..10 {
        out.push(vec![put(&format!("late/{i}"), "x")]);
    }
    out
}

fn everything(s: &Mvcc) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    s.range(&Range::prefix(""))
        .expect("range")
        .kvs
        .into_iter()
        .map(|kv| (kv.key.to_vec(), kv.value.to_vec(), kv.mod_revision))
        .collect()
}

fn assert_same(a: &Mvcc, b: &Mvcc) {
    assert_eq!(a.hash_kv(0).expect("hash"), b.hash_kv(0).expect("hash"));
    assert_eq!(a.current_revision(), b.current_revision());
    assert_eq!(a.compacted_revision(), b.compacted_revision());
    assert_eq!(a.applied_index(), b.applied_index());
    assert_eq!(a.leases(), b.leases());
    assert_eq!(a.time_to_live(42, true).keys, b.time_to_live(42, true).keys);
    assert_eq!(everything(a), everything(b));
}

fn revisions(w: &mut Watcher) -> Vec<i64> {
    let mut out = Vec::new();
    while let Some(r) = w.recv_timeout(Duration::from_millis(300)).expect("watch") {
        assert!(!r.canceled, "{r:?}");
        out.extend(r.events.iter().map(|e| e.kv.mod_revision));
    }
    out
}

#[test]
fn a_restored_store_holds_the_same_history_and_reopens_with_it() {
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = open(da.path());
    let mut b = open(db.path());
    for ops in history() {
        apply_ok(&mut a, ops);
    }
    // The lagging store has other state of its own: all of it is replaced.
    apply_ok(&mut b, [put("only/b", "gone")]);
    let image = a.snapshot_image().expect("image");
    assert_eq!(
        b.image_applied_index(&image).expect("intact"),
        a.applied_index()
    );
    b.restore_image(&image, a.applied_index()).expect("restore");
    assert_same(&a, &b);
    assert!(b.get(b"only/b").expect("get").is_none());
    // Below the compaction, as on the original.
    let old = Range {
        revision: 9,
        ..Range::key("k/02")
    };
    assert!(a.range(&old).is_err() && b.range(&old).is_err());
    // It goes on: the same next entry gives the same revision.
    apply_ok(&mut a, [put("next", "1")]);
    apply_ok(&mut b, [put("next", "1")]);
    assert_same(&a, &b);
    drop(b);
    let b = open(db.path());
    assert_same(&a, &b);
}

#[test]
fn the_applied_index_may_be_set_past_the_image() {
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = open(da.path());
    let mut b = open(db.path());
    apply_ok(&mut a, [put("k", "v")]);
    let image = a.snapshot_image().expect("image");
    let at = a.applied_index() + 3;
    b.restore_image(&image, at).expect("restore");
    assert_eq!(b.applied_index(), at);
    assert_eq!(b.hash_kv(0).expect("hash"), a.hash_kv(0).expect("hash"));
    drop(b);
    assert_eq!(open(db.path()).applied_index(), at);
    // Never before the image's own index.
    let dc = temp_dir();
    let mut c = open(dc.path());
    match c.restore_image(&image, a.applied_index() - 1) {
        Err(MvccError::Corrupt { what, .. }) => assert!(what.contains("installed as of"), "{what}"),
        other => panic!("an image installed before its index: {other:?}"),
    }
}

#[test]
fn a_damaged_image_is_refused_and_nothing_is_written() {
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = open(da.path());
    let mut b = open(db.path());
    for ops in history() {
        apply_ok(&mut a, ops);
    }
    apply_ok(&mut b, [put("mine", "1")]);
    let before = b.hash_kv(0).expect("hash");
    let image = a.snapshot_image().expect("image");
    let mut flipped = image.clone();
    flipped[image.len() / 2] ^= 0x40;
    let damaged: [&[u8]; 4] = [
        &flipped,
        &image[..image.len() - 9],
        b"",
        b"BKVIMG01 and then nothing sensible",
    ];
    for bad in damaged {
        match b.restore_image(bad, 1_000) {
            Err(MvccError::Corrupt { what, .. }) => {
                assert!(what.starts_with("store image"), "{what}")
            }
            other => panic!("a damaged image was taken: {other:?}"),
        }
        assert!(b.image_applied_index(bad).is_err());
        assert_eq!(b.hash_kv(0).expect("hash"), before);
        assert_eq!(b.applied_index(), 1);
    }
}

#[test]
fn watchers_of_a_restored_store_get_what_they_missed_or_a_compacted_cancel() {
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = open(da.path());
    let mut b = open(db.path());
    let all = history();
    // `b` applies the first 12 entries, then falls behind; `a` applies them all.
    for ops in &all[..12] {
        apply_ok(&mut b, ops.clone());
    }
    for ops in all {
        apply_ok(&mut a, ops);
    }
    let seen = b.current_revision();
    let mut live = b.watch(WatchRequest::range("\0", "\0"));
    // Started at revision 2, it has history to replay that the image compacts away (unless
    // it reads it before the restore; it does not).
    let mut old = b.watch(WatchRequest::range("\0", "\0").from_revision(2));
    b.restore_image(&a.snapshot_image().expect("image"), a.applied_index())
        .expect("restore");
    let want: Vec<i64> = ((seen + 1)..=a.current_revision()).collect();
    assert_eq!(revisions(&mut live), want);
    let r = old
        .recv_timeout(Duration::from_secs(5))
        .expect("watch")
        .expect("a response");
    assert!(r.canceled, "{r:?}");
    assert_eq!(r.compact_revision, 10);
    // Live again afterwards.
    apply_ok(&mut b, [put("after", "1")]);
    assert_eq!(revisions(&mut live), vec![b.current_revision()]);
}

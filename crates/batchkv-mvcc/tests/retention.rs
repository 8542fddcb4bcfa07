//! Retention: `prune_old_versions` keeps exactly the newest `keep` versions of each key, and
//! reads below what it kept fail as after a compaction, also after a reopen; auto compaction
//! drives real compactions.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use batchkv_codec::{Compact, DeleteRange, Op, Put, Range};
use batchkv_engine::KeyRange;
use batchkv_mvcc::{AutoCompaction, AutoCompactor, Mvcc, MvccError, OpError, WatchRequest};
use batchkv_testkit::temp_dir;
use bytes::Bytes;

use crate::common::{apply_ok, open};

/// Stored records per key (puts and deletes), from the `kv` column family.
fn records_per_key(store: &Mvcc) -> BTreeMap<Bytes, Vec<i64>> {
    let kv = store.engine().cf("kv").expect("kv cf");
    let mut out: BTreeMap<Bytes, Vec<i64>> = BTreeMap::new();
    store
        .engine()
        .scan(kv, &KeyRange::all(), false, |k, v| {
            let rev = i64::from_be_bytes(k[..8].try_into().expect("revision"));
            let rec = batchkv_codec::record::decode_record(v).expect("record");
            out.entry(Bytes::copy_from_slice(rec.key))
                .or_default()
                .push(rev);
            true
        })
        .expect("scan");
    out
}

fn compacted(e: MvccError) -> i64 {
    match e {
        MvccError::Op(OpError::Compacted { compacted, .. }) => compacted,
        other => panic!("not a compacted error: {other}"),
    }
}

#[test]
fn prune_keeps_exactly_the_newest_versions_and_refuses_reads_below_them() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    // hot: 10 versions; warm: 3; cold: 1; gone: put, put, delete, put.
    for i in 0..10 {
        apply_ok(&mut s, [Op::Put(Put::new("hot", format!("h{i}")))]); // 2, 4, 6, then 8..=14
        if i < 3 {
            apply_ok(&mut s, [Op::Put(Put::new("warm", format!("w{i}")))]);
        }
    }
    apply_ok(&mut s, [Op::Put(Put::new("cold", "c"))]); // 15
    apply_ok(&mut s, [Op::Put(Put::new("gone", "1"))]); // 16
    apply_ok(&mut s, [Op::Put(Put::new("gone", "2"))]); // 17
    apply_ok(&mut s, [Op::DeleteRange(DeleteRange::key("gone"))]); // 18
    apply_ok(&mut s, [Op::Put(Put::new("gone", "3"))]); // 19
    let latest_before = s
        .range(&Range {
            range_end: Bytes::from_static(b"\0"),
            ..Range::key("\0")
        })
        .expect("read");

    let report = s.prune_old_versions(3).expect("prune");
    let stored = records_per_key(&s);
    for (key, revs) in &stored {
        let want = match &key[..] {
            b"cold" => 1,
            _ => 3,
        };
        assert_eq!(revs.len(), want, "{key:?}: {revs:?}");
    }
    assert_eq!(stored[&Bytes::from("hot")], [12, 13, 14]);
    assert_eq!(stored[&Bytes::from("gone")], [17, 18, 19]);
    assert_eq!((report.keys, report.removed, report.floor), (2, 8, 17));
    // The latest state is untouched.
    let latest = s
        .range(&Range {
            range_end: Bytes::from_static(b"\0"),
            ..Range::key("\0")
        })
        .expect("read");
    assert_eq!(latest, latest_before);
    // At and above a key's oldest kept revision it reads as before; below, it is compacted.
    assert_eq!(
        s.get_at(b"hot", 12).expect("at floor").expect("hot").value,
        "h7"
    );
    assert_eq!(
        compacted(s.get_at(b"hot", 11).expect_err("below floor")),
        12
    );
    assert_eq!(s.get_at(b"gone", 18).expect("deleted then"), None);
    assert_eq!(
        compacted(s.get_at(b"gone", 16).expect_err("below floor")),
        17
    );
    assert_eq!(
        s.get_at(b"warm", 3).expect("unpruned").expect("warm").value,
        "w0"
    );
    // A range over a pruned key below its floor fails the same way.
    let err = s
        .range(&Range {
            revision: 5,
            range_end: Bytes::from("z"),
            ..Range::key("a")
        })
        .expect_err("pruned");
    assert_eq!(compacted(err), 17, "the highest floor above the read");
    // A watch from below the highest floor is cancelled with it.
    let mut w = s.watch(WatchRequest::key("warm").from_revision(4));
    let r = w
        .recv_timeout(Duration::from_secs(5))
        .expect("recv")
        .expect("response");
    assert!(r.canceled && r.compact_revision == 17, "{r:?}");

    // All of it survives a reopen.
    drop(w);
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(
        compacted(s.get_at(b"hot", 11).expect_err("below floor")),
        12
    );
    assert_eq!(
        compacted(s.get_at(b"gone", 16).expect_err("below floor")),
        17
    );
    assert_eq!(
        s.get_at(b"hot", 13).expect("kept").expect("hot").value,
        "h8"
    );
    // Pruning again with the same keep removes nothing; with keep 1, down to the latest.
    assert_eq!(s.prune_old_versions(3).expect("prune").removed, 0);
    s.prune_old_versions(1).expect("prune");
    assert!(records_per_key(&s).values().all(|r| r.len() == 1));
    assert_eq!(
        s.get_at(b"hot", 0).expect("latest").expect("hot").value,
        "h9"
    );
}

#[test]
fn auto_compaction_drives_real_compactions() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let t0 = Instant::now();
    let mut policy = AutoCompactor::new(AutoCompaction::Revision(20), -1);
    let mut compactions = Vec::new();
    for i in 0..200 {
        apply_ok(&mut s, [Op::Put(Put::new(format!("k{}", i % 5), "v"))]);
        // Simulated clock: a minute per entry.
        if let Some(rev) = policy.poll(t0 + Duration::from_secs(60 * i), s.current_revision()) {
            apply_ok(&mut s, [Op::Compact(Compact { revision: rev })]);
            compactions.push(rev);
        }
    }
    // Every 5 minutes (5 entries here), keeping the last 20 revisions.
    assert_eq!(
        compactions.first(),
        Some(&2),
        "first check with 20 revisions of history: entry 20"
    );
    assert!(
        compactions.windows(2).all(|w| w[1] - w[0] == 5),
        "{compactions:?}"
    );
    assert_eq!(s.compacted_revision(), compactions.last().copied());
    assert!(s.current_revision() - s.compacted_revision().expect("compacted") <= 25);
}

//! `RaftStorage` against raft-rs's `Storage` contract, on real RocksDB in temp dirs: what is
//! persisted survives a reopen, a conflicting suffix is replaced, compaction keeps the term at
//! the cut and serves the snapshot, a leader's snapshot replaces the log.

use batchkv_raft::raft::eraftpb::{Entry, HardState, Snapshot, SnapshotMetadata};
use batchkv_raft::raft::{GetEntriesContext, Storage, StorageError};
use batchkv_raft::{RaftError, RaftStorage};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index} of term {term}").into_bytes(),
        ..Entry::default()
    }
}

fn entries(low: u64, high: u64, term: u64) -> Vec<Entry> {
    (low..high).map(|i| entry(i, term)).collect()
}

fn read(s: &RaftStorage, low: u64, high: u64) -> Result<Vec<Entry>, batchkv_raft::raft::Error> {
    s.entries(low, high, None, GetEntriesContext::empty(false))
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn is_store_err(r: &batchkv_raft::raft::Error, want: &StorageError) -> bool {
    matches!(r, batchkv_raft::raft::Error::Store(e) if e == want)
}

#[test]
fn a_fresh_storage_is_empty_and_bootstrap_persists_the_voters() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    assert!(!s.is_initialized());
    assert_eq!(
        (s.first_index().ok(), s.last_index().ok()),
        (Some(1), Some(0))
    );
    assert_eq!(s.term(0).ok(), Some(0));
    s.bootstrap(&[1, 2, 3]).expect("bootstrap");
    drop(s);
    let mut s = RaftStorage::open_dir(dir.path()).expect("reopen");
    assert!(s.is_initialized());
    let st = s.initial_state().expect("initial state");
    assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(st.hard_state, HardState::default());
    // Bootstrapping again changes nothing.
    s.bootstrap(&[9]).expect("bootstrap again");
    assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
}

#[test]
fn entries_and_hard_state_survive_a_reopen_and_a_conflicting_suffix_is_replaced() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    s.bootstrap(&[1]).expect("bootstrap");
    s.persist(None, &entries(1, 11, 1), Some(&hard_state(1, 1, 5)))
        .expect("persist");
    drop(s);

    let mut s = RaftStorage::open_dir(dir.path()).expect("reopen");
    assert_eq!(read(&s, 1, 11).expect("entries"), entries(1, 11, 1));
    assert_eq!(s.hard_state(), &hard_state(1, 1, 5));
    assert_eq!(s.term(10).ok(), Some(1));
    assert!(is_store_err(
        &s.term(11).expect_err("past the end"),
        &StorageError::Unavailable
    ));
    assert!(is_store_err(
        &read(&s, 1, 12).expect_err("past the end"),
        &StorageError::Unavailable
    ));
    // max_size: at least one entry, however small the limit.
    assert_eq!(
        s.entries(3, 11, Some(1), GetEntriesContext::empty(false))
            .expect("limited")
            .len(),
        1
    );

    // A new leader's entries replace the suffix from index 6.
    s.persist(None, &entries(6, 8, 2), Some(&hard_state(2, 2, 5)))
        .expect("overwrite");
    assert_eq!(s.last_index().ok(), Some(7));
    drop(s);
    let s = RaftStorage::open_dir(dir.path()).expect("reopen");
    assert_eq!(s.last_index().ok(), Some(7));
    let mut want = entries(1, 6, 1);
    want.extend(entries(6, 8, 2));
    assert_eq!(read(&s, 1, 8).expect("entries"), want);
    assert_eq!(s.hard_state(), &hard_state(2, 2, 5));
}

#[test]
fn a_gap_or_an_append_below_the_log_is_refused_and_changes_nothing() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    s.persist(None, &entries(1, 4, 1), None).expect("persist");
    let gap = s.persist(None, &entries(6, 7, 1), Some(&hard_state(1, 0, 3)));
    assert!(matches!(gap, Err(RaftError::Corrupt(_))), "{gap:?}");
    assert_eq!(s.last_index().ok(), Some(3));
    assert_eq!(s.hard_state(), &HardState::default());
    s.compact(3, 2, b"state").expect("compact");
    let below = s.persist(None, &entries(2, 3, 1), None);
    assert!(matches!(below, Err(RaftError::Corrupt(_))), "{below:?}");
}

#[test]
fn compaction_drops_the_log_keeps_the_term_at_the_cut_and_serves_the_snapshot() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    s.bootstrap(&[1, 2, 3]).expect("bootstrap");
    let mut log = entries(1, 11, 1);
    log.extend(entries(11, 21, 2));
    s.persist(None, &log, Some(&hard_state(2, 1, 12)))
        .expect("persist");
    // Nothing to send before a snapshot exists.
    assert!(is_store_err(
        &s.snapshot(0, 2).expect_err("no snapshot yet"),
        &StorageError::SnapshotTemporarilyUnavailable
    ));

    s.compact(15, 10, b"the state at 15").expect("compact");
    let check = |s: &RaftStorage| {
        assert_eq!(s.first_index().ok(), Some(11));
        assert_eq!(s.last_index().ok(), Some(20));
        assert_eq!(s.term(10).ok(), Some(1), "the term at the cut is kept");
        assert!(is_store_err(
            &s.term(9).expect_err("compacted"),
            &StorageError::Compacted
        ));
        assert!(is_store_err(
            &read(s, 5, 12).expect_err("compacted"),
            &StorageError::Compacted
        ));
        assert_eq!(read(s, 11, 21).expect("entries"), entries(11, 21, 2));
        let snap = s.snapshot(0, 2).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 15);
        assert_eq!(snap.get_metadata().term, 2);
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        // Sent with the member records ahead of the state machine's bytes.
        assert!(snap.data.ends_with(b"the state at 15"));
        assert_eq!(
            s.snapshot_data().expect("data"),
            b"the state at 15".to_vec()
        );
        // A snapshot older than asked for is not ready yet.
        assert!(is_store_err(
            &s.snapshot(16, 2).expect_err("too old"),
            &StorageError::SnapshotTemporarilyUnavailable
        ));
        // The commit index covers the snapshot.
        assert_eq!(s.hard_state().commit, 15);
    };
    check(&s);
    drop(s);
    let mut s = RaftStorage::open_dir(dir.path()).expect("reopen");
    check(&s);

    // A snapshot past the log's end, or a cut above the snapshot, is refused.
    assert!(matches!(
        s.compact(30, 10, b"x"),
        Err(RaftError::Corrupt(_))
    ));
    assert!(matches!(
        s.compact(16, 17, b"x"),
        Err(RaftError::Corrupt(_))
    ));
    check(&s);
}

#[test]
fn a_snapshot_from_the_leader_replaces_the_log() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    s.bootstrap(&[1, 2, 3]).expect("bootstrap");
    s.persist(None, &entries(1, 6, 1), Some(&hard_state(1, 1, 3)))
        .expect("persist");
    let mut meta = SnapshotMetadata {
        index: 50,
        term: 3,
        ..SnapshotMetadata::default()
    };
    meta.mut_conf_state().voters = vec![1, 2, 3];
    let snap = Snapshot {
        data: b"the leader's state".to_vec(),
        metadata: Some(meta),
    };
    s.persist(Some(&snap), &entries(51, 53, 3), None)
        .expect("install");
    let check = |s: &RaftStorage| {
        assert_eq!(s.first_index().ok(), Some(51));
        assert_eq!(s.last_index().ok(), Some(52));
        assert_eq!(s.term(50).ok(), Some(3));
        assert_eq!(read(s, 51, 53).expect("entries"), entries(51, 53, 3));
        assert_eq!(s.hard_state().commit, 50);
        assert_eq!(s.hard_state().term, 3);
        assert_eq!(s.snapshot_metadata().index, 50);
        assert_eq!(
            s.snapshot_data().expect("data"),
            b"the leader's state".to_vec()
        );
    };
    check(&s);
    drop(s);
    check(&RaftStorage::open_dir(dir.path()).expect("reopen"));
}

#[test]
fn compacting_the_log_alone_stores_no_data_and_snapshots_are_built_on_demand() {
    let dir = batchkv_testkit::temp_dir();
    let mut s = RaftStorage::open_dir(dir.path()).expect("open");
    s.bootstrap(&[1, 2, 3]).expect("bootstrap");
    s.persist(None, &entries(1, 21, 2), Some(&hard_state(2, 1, 20)))
        .expect("persist");
    // An older snapshot with its data, then a compaction without: the old data goes.
    s.compact(8, 5, b"the state at 8").expect("compact");
    assert!(s.snapshot_stored());
    assert!(s.snapshot(0, 2).is_ok(), "the stored snapshot is served");
    s.compact_log(15, 10).expect("compact the log");
    let check = |s: &RaftStorage| {
        assert_eq!(s.first_index().ok(), Some(11));
        assert_eq!(s.term(10).ok(), Some(2), "the term at the cut is kept");
        assert_eq!(s.snapshot_metadata().index, 15);
        assert_eq!(s.hard_state().commit, 20);
        assert!(
            !s.snapshot_stored(),
            "no data after compacting the log alone"
        );
        assert_eq!(s.snapshot_data().expect("data"), Vec::<u8>::new());
        // No snapshot to send: raft hears "not yet" and the request is noted for the node,
        // which has the state machine build one.
        assert!(!s.take_snapshot_wanted());
        assert!(is_store_err(
            &s.snapshot(0, 2).expect_err("built on demand"),
            &StorageError::SnapshotTemporarilyUnavailable
        ));
        assert!(s.take_snapshot_wanted(), "the request is noted");
        assert!(!s.take_snapshot_wanted(), "and taken once");
    };
    check(&s);
    drop(s);
    check(&RaftStorage::open_dir(dir.path()).expect("reopen"));
}

//! Corruption: bytes flipped in and files truncated from a store's SST files, WAL and MANIFEST,
//! and wrong values in batchkv's own meta keys and records, each on a fresh copy of one store.
//! Each copy is then opened and checked (`Store::check`). What must hold: the corruption is
//! reported, by the open or by the check, with an error that names the file or the key and
//! what is wrong; or the store answers exactly as before (the corruption hit nothing a read
//! uses). Never a silently different answer. The one exception RocksDB cannot see, a WAL cut at
//! a record boundary, must leave the store exactly as it was at an earlier revision (as a crash
//! then would have).
//!
//! The campaign prints each case's outcome and the totals; `BATCHKV_CORRUPTION_SEED` replays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use batchkv::{Durability, KvHash, Put, Range, Store};
use batchkv_engine::{Engine, EngineConfig, WriteMode};
use batchkv_testkit::{Rng, env_u64, temp_dir};

/// How one corrupted copy came out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The open failed with this error.
    Open(String),
    /// The open worked and the check failed with this error.
    Check(String),
    /// Opened and checked, and every answer is the original's.
    Unchanged,
    /// Opened and checked, exactly the original's state at an earlier revision.
    Earlier(i64),
    /// Opened and checked, and the answers differ: the failure this test exists for.
    Silent(String),
}

/// The reference store: history in SST files (flushed) and in the WAL (not flushed), leases,
/// deletes, a compaction.
fn build(dir: &Path) -> (KvHash, BTreeMap<i64, KvHash>) {
    {
        let store = Store::builder(dir)
            .durability(Durability::None)
            .open()
            .expect("open");
        let lease = store.lease_grant(0, 3600).expect("grant").id;
        for i in 0..600 {
            let key = format!("key/{:03}", i % 150);
            if i % 7 == 0 {
                store
                    .put_with(Put {
                        lease,
                        ..Put::new(key, format!("leased-{i}"))
                    })
                    .expect("put");
            } else {
                store
                    .put(key, format!("value-{i}-{}", "x".repeat(i % 50)))
                    .expect("put");
            }
            if i % 31 == 0 {
                store
                    .delete(format!("key/{:03}", (i + 3) % 150))
                    .expect("delete");
            }
        }
        store.compact(300).expect("compact");
        store.close().expect("close flushes the memtables");
    }
    let store = Store::builder(dir)
        .durability(Durability::Sync)
        .open()
        .expect("reopen");
    for i in 0..200 {
        store
            .put(format!("wal/{:03}", i % 60), format!("in-the-wal-{i}"))
            .expect("put");
    }
    let current = store.current_revision();
    let mut at = BTreeMap::new();
    for rev in 301..=current {
        at.insert(rev, store.hash_kv(rev).expect("hash"));
    }
    let hash = store.hash_kv(0).expect("hash");
    store.close().expect("close");
    (hash, at)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Files of the store whose name matches `pick`, largest first.
fn files(dir: &Path, pick: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter(|e| pick(&e.file_name().to_string_lossy()))
        .map(|e| (e.metadata().expect("meta").len(), e.path()))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, p)| p).collect()
}

/// Opens the copy and checks it against the original.
fn judge(dir: &Path, hash: &KvHash, earlier: &BTreeMap<i64, KvHash>) -> Outcome {
    let store = match Store::builder(dir).open() {
        Ok(s) => s,
        Err(e) => return Outcome::Open(e.to_string()),
    };
    if let Err(e) = store.check() {
        return Outcome::Check(e.to_string());
    }
    let got = store.hash_kv(0).expect("hash after a passing check");
    if got == *hash {
        // The same digest; the reads must agree too.
        let all = store.range(&Range::prefix("")).map(|r| r.count);
        return match all {
            Ok(_) => Outcome::Unchanged,
            Err(e) => Outcome::Silent(format!("a read failed after a passing check: {e}")),
        };
    }
    match earlier.get(&got.revision) {
        Some(h) if h.hash == got.hash => Outcome::Earlier(got.revision),
        _ => Outcome::Silent(format!(
            "opened and checked, but its digest {got:?} is not the original's {hash:?} at any revision"
        )),
    }
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).expect("read");
    let i = (at as usize) % b.len();
    b[i] ^= 0x5a;
    std::fs::write(path, b).expect("write");
}

fn truncate(path: &Path, keep: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.set_len(keep).expect("truncate");
}

/// A logical corruption of batchkv's own keys, written through the engine.
fn poke(dir: &Path, cf: &str, key: &[u8], value: Option<&[u8]>) {
    let engine = Engine::open(EngineConfig::new(dir)).expect("engine");
    let cf = engine.cf(cf).expect("cf");
    let mut b = engine.begin_batch();
    match value {
        Some(v) => b.put(cf, key, v).expect("put"),
        None => b.delete(cf, key).expect("delete"),
    }
    b.commit(WriteMode::SYNC).expect("commit");
}

fn revision_key(main: i64) -> Vec<u8> {
    batchkv::Revision::new(main, 0).to_bytes().to_vec()
}

#[test]
fn corruption_is_reported_or_changes_nothing() {
    let seed = env_u64("BATCHKV_CORRUPTION_SEED").unwrap_or(0xc044_0917);
    let mut rng = Rng(seed);
    let root = temp_dir();
    let pristine = root.path().join("pristine");
    let (hash, earlier) = build(&pristine);
    let ssts = files(&pristine, |n| n.ends_with(".sst"));
    let wals = files(&pristine, |n| n.ends_with(".log"));
    let manifests = files(&pristine, |n| n.starts_with("MANIFEST-"));
    assert!(!ssts.is_empty() && !wals.is_empty() && !manifests.is_empty());

    // (name, what to do to the copy).
    type Damage = Box<dyn Fn(&Path)>;
    let mut cases: Vec<(String, Damage)> = Vec::new();
    let name_of = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
    for (kind, list) in [("sst", &ssts), ("wal", &wals), ("manifest", &manifests)] {
        for file in list.iter().take(2) {
            let name = name_of(file);
            let len = std::fs::metadata(file).expect("meta").len();
            for _ in 0..8 {
                let at = rng.below(len as usize) as u64;
                let n = name.clone();
                cases.push((
                    format!("{kind}: flip byte {at} of {n} ({len} bytes)"),
                    Box::new(move |d: &Path| flip(&d.join(&n), at)),
                ));
            }
            for keep in [len / 2, len.saturating_sub(1), len.saturating_sub(37), 0] {
                let n = name.clone();
                cases.push((
                    format!("{kind}: truncate {n} from {len} to {keep} bytes"),
                    Box::new(move |d: &Path| truncate(&d.join(&n), keep)),
                ));
            }
        }
    }
    cases.push((
        "CURRENT: truncated to 0 bytes".to_owned(),
        Box::new(|d: &Path| truncate(&d.join("CURRENT"), 0)),
    ));
    cases.push((
        "CURRENT: flip byte 3".to_owned(),
        Box::new(|d: &Path| flip(&d.join("CURRENT"), 3)),
    ));
    // batchkv's own keys: wrong values written as valid RocksDB data.
    // (what, column family, key, new value or a delete).
    type Poke = (&'static str, &'static str, Vec<u8>, Option<Vec<u8>>);
    let meta: Vec<Poke> = vec![
        (
            "meta current_revision lowered",
            "meta",
            b"current_revision".to_vec(),
            Some(10i64.to_be_bytes().to_vec()),
        ),
        (
            "meta current_revision raised",
            "meta",
            b"current_revision".to_vec(),
            Some(100_000i64.to_be_bytes().to_vec()),
        ),
        (
            "meta current_revision 3 bytes",
            "meta",
            b"current_revision".to_vec(),
            Some(vec![1, 2, 3]),
        ),
        (
            "meta compacted_revision above current",
            "meta",
            b"compacted_revision".to_vec(),
            Some(100_000i64.to_be_bytes().to_vec()),
        ),
        (
            "meta compacted_revision 5 bytes",
            "meta",
            b"compacted_revision".to_vec(),
            Some(vec![0; 5]),
        ),
        (
            "meta format_version 2",
            "meta",
            b"format_version".to_vec(),
            Some(2u32.to_be_bytes().to_vec()),
        ),
        (
            "meta format_version deleted",
            "meta",
            b"format_version".to_vec(),
            None,
        ),
        (
            "meta pruned_revision above current",
            "meta",
            b"pruned_revision".to_vec(),
            Some(100_000i64.to_be_bytes().to_vec()),
        ),
        (
            "meta floor 2 bytes",
            "meta",
            b"floor/key/001".to_vec(),
            Some(vec![0, 1]),
        ),
        (
            "meta next_lease_id 1 byte",
            "meta",
            b"next_lease_id".to_vec(),
            Some(vec![1]),
        ),
        (
            "kv record garbage",
            "kv",
            revision_key(700),
            Some(vec![0xee; 9]),
        ),
        (
            "kv record deleted mid-history",
            "kv",
            revision_key(700),
            None,
        ),
        (
            "kv key not a revision",
            "kv",
            b"not-a-revision".to_vec(),
            Some(vec![1]),
        ),
        (
            "lease record deleted",
            "lease",
            1i64.to_be_bytes().to_vec(),
            None,
        ),
        (
            "lease record 3 bytes",
            "lease",
            1i64.to_be_bytes().to_vec(),
            Some(vec![0, 0, 1]),
        ),
    ];
    for (what, cf, key, value) in meta {
        cases.push((
            what.to_owned(),
            Box::new(move |d: &Path| poke(d, cf, &key, value.as_deref())),
        ));
    }

    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut silent = Vec::new();
    for (i, (what, damage)) in cases.iter().enumerate() {
        let dir = root.path().join(format!("case-{i}"));
        copy_dir(&pristine, &dir);
        damage(&dir);
        let outcome = judge(&dir, &hash, &earlier);
        let label = match &outcome {
            Outcome::Open(_) => "reported at open",
            Outcome::Check(_) => "reported by check",
            Outcome::Unchanged => "no effect",
            Outcome::Earlier(_) => "earlier state",
            Outcome::Silent(_) => "SILENT",
        };
        *tally.entry(label).or_default() += 1;
        println!("{what}: {outcome:?}");
        match &outcome {
            Outcome::Silent(_) => silent.push(what.clone()),
            // RocksDB's WAL has no end marker: a log cut short (or whose last records look cut
            // short) reads as a crash before them. Anything else must not roll back.
            Outcome::Earlier(_) if !what.starts_with("wal:") => silent.push(what.clone()),
            _ => {}
        }
        if let Outcome::Open(e) | Outcome::Check(e) = &outcome {
            assert!(
                e.contains("corrupt") || e.contains("Corruption") || e.contains("format version"),
                "{what}: the error does not say it is corruption: {e}"
            );
            assert!(
                [
                    ".sst",
                    ".log",
                    "MANIFEST",
                    "CURRENT",
                    "meta ",
                    "record",
                    "kv key",
                    "lease",
                    "format version"
                ]
                .iter()
                .any(|name| e.contains(name)),
                "{what}: the error names no file or key: {e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("seed {seed}: {} corruptions tried: {tally:?}", cases.len());
    assert!(
        silent.is_empty(),
        "silently wrong answers after: {silent:?}"
    );
}

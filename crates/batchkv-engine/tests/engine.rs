//! The engine on real RocksDB in temp dirs: every API, durability across reopen and a real
//! crash (SIGKILL of a child process), partial-failure reporting, checkpoints, bad configuration,
//! and the lock held by another process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use batchkv_batcher::AdaptiveBatchConfig;
use batchkv_engine::{
    Cf, Codec, Compression, Engine, EngineConfig, EngineError, KeyRange, Mutation, Profile, Tuning,
    WriteMode, list_checkpoints, prefix_end, restore_from_checkpoint,
};
use batchkv_testkit::{ChildProcess, child_env, temp_dir};

fn open(path: &Path) -> Engine {
    Engine::open(EngineConfig::new(path).column_families(["kv", "meta"])).expect("open")
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn puts(cf: Cf, range: std::ops::Range<usize>, tag: &str) -> Vec<Mutation> {
    range
        .map(|i| Mutation::put(cf, key(i), format!("{tag}-{i}")))
        .collect()
}

fn all(engine: &Engine, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
    engine.range(cf, &KeyRange::all(), 0).expect("scan")
}

#[test]
fn data_survives_reopen_in_every_column_family() {
    let dir = temp_dir();
    {
        let e = open(dir.path());
        let kv = e.cf("kv").expect("kv");
        let mut b = e.begin_batch();
        b.put(kv, b"a", b"1").expect("put");
        b.put(Cf::DEFAULT, b"d", b"2").expect("put");
        b.put(e.cf("meta").expect("meta"), b"rev", b"7")
            .expect("put");
        b.commit(WriteMode::SYNC).expect("commit");
    }
    let e = open(dir.path());
    assert_eq!(e.column_families(), ["default", "kv", "meta"]);
    assert_eq!(
        e.get(e.cf("kv").expect("kv"), b"a").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(e.get(Cf::DEFAULT, b"d").expect("get"), Some(b"2".to_vec()));
    assert_eq!(
        e.get(e.cf("meta").expect("meta"), b"rev").expect("get"),
        Some(b"7".to_vec())
    );
    // Column families on disk are opened even when not asked for.
    drop(e);
    let e = Engine::open(EngineConfig::new(dir.path())).expect("open without naming cfs");
    assert_eq!(e.column_families(), ["default", "kv", "meta"]);
}

#[test]
fn reads_ranges_prefixes_and_snapshots() {
    let dir = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let keys: [&[u8]; 7] = [b"a", b"ab", b"abc", b"ab\xff", b"ac", b"b", b"\xff\xff"];
    let mut b = e.begin_batch();
    for k in keys {
        b.put(kv, k, &[k, b"!"].concat()).expect("put");
    }
    b.commit(WriteMode::WAL).expect("commit");

    let got = |r: KeyRange, limit| -> Vec<Vec<u8>> {
        e.range(kv, &r, limit)
            .expect("range")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        got(KeyRange::prefix("ab"), 0),
        [&b"ab"[..], b"abc", b"ab\xff"]
    );
    assert_eq!(
        got(KeyRange::between("ab", "b"), 0),
        [&b"ab"[..], b"abc", b"ab\xff", b"ac"]
    );
    assert_eq!(
        got(KeyRange::from("ac"), 0),
        [&b"ac"[..], b"b", b"\xff\xff"]
    );
    assert_eq!(
        got(KeyRange::prefix(b"\xff".to_vec()), 0),
        [b"\xff\xff".to_vec()]
    );
    assert_eq!(got(KeyRange::all(), 2), [&b"a"[..], b"ab"]);
    assert_eq!(prefix_end(b"ab\xff"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(b"\xff\xff"), None);

    let mut rev = Vec::new();
    e.scan(kv, &KeyRange::all(), true, |k, _| {
        rev.push(k.to_vec());
        rev.len() < 3
    })
    .expect("reverse scan");
    assert_eq!(rev, [&b"\xff\xff"[..], b"b", b"ac"]);

    let values = e
        .multi_get(kv, &[&b"a"[..], b"zz", b"b"])
        .expect("multi_get");
    assert_eq!(values, [Some(b"a!".to_vec()), None, Some(b"b!".to_vec())]);

    let snap = e.snapshot();
    let mut b = e.begin_batch();
    b.put(kv, b"a", b"changed").expect("put");
    b.delete(kv, b"b").expect("delete");
    b.commit(WriteMode::WAL).expect("commit");
    assert_eq!(snap.get(kv, b"a").expect("get"), Some(b"a!".to_vec()));
    assert_eq!(snap.range(kv, &KeyRange::all(), 0).expect("range").len(), 7);
    assert_eq!(e.get(kv, b"a").expect("get"), Some(b"changed".to_vec()));
    assert_eq!(all(&e, kv).len(), 6);
}

#[test]
fn staged_batches_commit_atomically_or_not_at_all() {
    let dir = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let mut b = e.batch_with_capacity_bytes(4096);
    for i in 0..10 {
        b.put(kv, &key(i), b"v").expect("put");
    }
    b.delete_range(kv, &key(2), &key(5)).expect("delete_range");
    b.delete(kv, &key(9)).expect("delete");
    assert_eq!(b.len(), 12);
    assert!(b.size_in_bytes() > 10 * 12);
    b.commit(WriteMode::SYNC).expect("commit");
    let keys: Vec<_> = all(&e, kv).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [0, 1, 5, 6, 7, 8].map(key));

    let mut rolled = e.begin_batch();
    rolled.put(kv, b"never", b"1").expect("put");
    rolled.rollback();
    {
        let mut dropped = e.begin_batch();
        dropped.put(kv, b"never2", b"1").expect("put");
    }
    assert_eq!(e.get(kv, b"never").expect("get"), None);
    assert_eq!(e.get(kv, b"never2").expect("get"), None);

    // sync without WAL is refused before anything is written.
    let mut bad = e.begin_batch();
    bad.put(kv, b"x", b"1").expect("put");
    let err = bad
        .commit(WriteMode {
            wal: false,
            sync: true,
            no_slowdown: false,
        })
        .expect_err("sync without WAL");
    assert!(matches!(err, EngineError::SyncWithoutWal), "{err}");
    assert_eq!(e.get(kv, b"x").expect("get"), None);

    // A failed commit writes nothing either.
    let mut failing = e.begin_batch();
    failing.put(kv, b"y", b"1").expect("put");
    e.inject_write_failures_after(0);
    assert!(matches!(
        failing.commit(WriteMode::SYNC),
        Err(EngineError::Injected)
    ));
    e.clear_injected_failures();
    assert_eq!(e.get(kv, b"y").expect("get"), None);
}

#[test]
fn mono_chunked_and_adaptive_write_everything() {
    let dir = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let r = e
        .write_batch_with_options(&puts(kv, 0..1000, "mono"), WriteMode::WAL)
        .expect("mono");
    assert_eq!((r.committed, r.chunks), (1000, 1));
    let r = e
        .write_batch_chunked(&puts(kv, 1000..3500, "chunked"), 1000, WriteMode::NO_WAL)
        .expect("chunked");
    assert_eq!((r.committed, r.chunks), (2500, 3));
    let cfg = AdaptiveBatchConfig {
        initial_chunk: 200,
        min_chunk: 50,
        max_chunk: 5000,
        window: 2,
        ..AdaptiveBatchConfig::default_for(10_000)
    };
    let r = e
        .write_batch_adaptive_with_config(&puts(kv, 3500..13_500, "adaptive"), cfg, WriteMode::SYNC)
        .expect("adaptive");
    let report = r.adaptive.expect("adaptive report");
    assert_eq!(r.committed, 10_000);
    assert_eq!(report.total_ops, 10_000);
    assert_eq!(report.chunks.len(), r.chunks);
    let (last, rest) = report.chunks.split_last().expect("chunks");
    assert!(
        rest.iter().all(|c| (50..=5000).contains(&c.len)),
        "{rest:?}"
    );
    assert!(last.len <= 5000, "the last chunk is what is left: {last:?}");
    let r = e
        .write_batch_adaptive(
            &puts(kv, 13_500..14_000, "adaptive-default"),
            WriteMode::WAL,
        )
        .expect("adaptive default");
    assert_eq!(r.committed, 500);

    let rows = all(&e, kv);
    assert_eq!(rows.len(), 14_000);
    for (i, (k, v)) in rows.iter().enumerate() {
        assert_eq!(k, &key(i));
        let tag = match i {
            0..1000 => "mono",
            1000..3500 => "chunked",
            3500..13_500 => "adaptive",
            _ => "adaptive-default",
        };
        assert_eq!(v, format!("{tag}-{i}").as_bytes());
    }
    assert!(matches!(
        e.write_batch_chunked(&[], 0, WriteMode::WAL),
        Err(EngineError::InvalidConfig { field: "chunk", .. })
    ));
}

#[test]
fn partial_failures_report_exactly_what_committed_and_resume_cleanly() {
    let dir = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let ops = puts(kv, 0..1000, "v");

    // Chunked: chunks 0, 1, 2 succeed; chunk 3 fails.
    e.inject_write_failures_after(3);
    let err = e
        .write_batch_chunked(&ops, 100, WriteMode::SYNC)
        .expect_err("injected");
    assert_eq!(err.committed_ops(), 300);
    let EngineError::PartialWrite(p) = &err else {
        panic!("expected a partial write, got {err}");
    };
    assert_eq!(
        (p.failed_chunk, p.failed_range.clone(), p.total),
        (3, 300..400, 1000)
    );
    assert_eq!(
        err.to_string(),
        "chunk 3 (ops 300..400) failed with 300 of 1000 ops committed: injected write failure"
    );
    assert_eq!(
        all(&e, kv).len(),
        300,
        "exactly the reported prefix is in the database"
    );
    e.clear_injected_failures();
    e.write_batch_chunked(&ops[err.committed_ops()..], 100, WriteMode::SYNC)
        .expect("resume");
    let rows = all(&e, kv);
    assert_eq!(rows.len(), 1000);
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, (k, v))| *k == key(i) && *v == format!("v-{i}").into_bytes())
    );

    // Adaptive: the same contract.
    let kv2 = e.cf("meta").expect("meta");
    let ops = puts(kv2, 0..5000, "w");
    let cfg = AdaptiveBatchConfig {
        initial_chunk: 300,
        min_chunk: 100,
        max_chunk: 1000,
        window: 1,
        ..AdaptiveBatchConfig::default_for(5000)
    };
    e.inject_write_failures_after(4);
    let err = e
        .write_batch_adaptive_with_config(&ops, cfg, WriteMode::WAL)
        .expect_err("injected");
    let committed = err.committed_ops();
    assert!(committed > 0 && committed < 5000, "{err}");
    assert_eq!(all(&e, kv2).len(), committed);
    e.clear_injected_failures();
    e.write_batch_adaptive_with_config(&ops[committed..], cfg, WriteMode::WAL)
        .expect("resume");
    assert_eq!(all(&e, kv2).len(), 5000);

    // Mono is atomic: a failure commits nothing.
    e.inject_write_failures_after(0);
    let err = e
        .write_batch_with_options(&puts(kv, 5000..6000, "m"), WriteMode::SYNC)
        .expect_err("injected");
    assert_eq!(err.committed_ops(), 0);
    e.clear_injected_failures();
    assert_eq!(all(&e, kv).len(), 1000);
}

#[test]
fn stats_report_properties_and_tickers() {
    let dir = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let ops: Vec<Mutation> = (0..20_000)
        .map(|i| Mutation::put(kv, key(i), vec![b'x'; 100]))
        .collect();
    e.write_batch_chunked(&ops, 5000, WriteMode::SYNC)
        .expect("write");
    e.flush().expect("flush");
    e.compact(kv).expect("compact");
    for i in (0..20_000).step_by(97) {
        assert!(e.get(kv, &key(i)).expect("get").is_some());
    }
    let s = e.stats().expect("stats");
    let kvs = s
        .column_families
        .iter()
        .find(|c| c.name == "kv")
        .expect("kv stats");
    assert!(kvs.estimated_keys >= 15_000, "{kvs:?}");
    assert!(kvs.sst_bytes > 0, "{kvs:?}");
    let ratio = kvs.compression_ratio().expect("data on disk");
    assert!(
        ratio > 1.5,
        "100 x's per value compress well under tiered compression: {ratio}"
    );
    assert_eq!(kvs.raw_value_bytes, 20_000 * 100, "{kvs:?}");
    // RocksDB counts its 8-byte internal suffix (sequence number and type) in the raw key size.
    assert_eq!(kvs.raw_key_bytes, 20_000 * (12 + 8), "{kvs:?}");
    let t = s.tickers.clone().expect("statistics are on by default");
    assert!(t.keys_written >= 20_000, "{t:?}");
    assert!(t.wal_syncs >= 1, "{t:?}");
    assert!(t.block_cache_hit + t.block_cache_miss > 0, "{t:?}");
    assert!(t.flush_write_bytes > 0, "{t:?}");
    assert!(s.block_cache_capacity > 0);
    let text = s.to_string();
    assert!(
        text.contains("kv") && text.contains("total") && text.contains("cache hit rate"),
        "{text}"
    );

    let no_stats = temp_dir();
    let e = Engine::open(EngineConfig::new(no_stats.path()).tuning(Tuning {
        statistics: false,
        ..Tuning::default()
    }))
    .expect("open");
    assert!(e.stats().expect("stats").tickers.is_none());
}

#[test]
fn checkpoints_restore_equal_contents_including_wal_less_writes() {
    let dir = temp_dir();
    let root = temp_dir();
    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    e.write_batch_with_options(&puts(kv, 0..500, "wal"), WriteMode::WAL)
        .expect("write");
    e.write_batch_with_options(&puts(kv, 500..800, "nowal"), WriteMode::NO_WAL)
        .expect("write");
    let cp1 = root.path().join("cp1");
    e.create_checkpoint(&cp1).expect("checkpoint");
    e.write_batch_with_options(&puts(kv, 800..900, "later"), WriteMode::WAL)
        .expect("write");
    e.create_checkpoint(root.path().join("cp2"))
        .expect("checkpoint");
    assert!(matches!(
        e.create_checkpoint(&cp1),
        Err(EngineError::TargetExists { .. })
    ));

    let list = list_checkpoints(root.path()).expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].path, cp1);
    assert!(list.iter().all(|c| c.bytes > 0));

    let target = root.path().join("restored");
    let cfs = restore_from_checkpoint(&cp1, &target).expect("restore");
    assert_eq!(cfs, ["default", "kv", "meta"]);
    let restored = open(&target);
    let rkv = restored.cf("kv").expect("kv");
    let expected: Vec<_> = all(&e, kv).into_iter().take(800).collect();
    assert_eq!(
        all(&restored, rkv),
        expected,
        "the checkpoint holds the state at its creation"
    );
    assert!(matches!(
        restore_from_checkpoint(&cp1, &target),
        Err(EngineError::TargetExists { .. })
    ));
    assert!(matches!(
        restore_from_checkpoint(root.path(), root.path().join("x")),
        Err(EngineError::NotACheckpoint { .. })
    ));
}

#[test]
fn bad_configuration_gets_a_typed_error_naming_it() {
    let dir = temp_dir();
    let base = EngineConfig::new(dir.path().join("db"));
    let bad = |f: fn(&mut Tuning)| {
        let mut t = Tuning::default();
        f(&mut t);
        Engine::open(base.clone().tuning(t))
            .expect_err("invalid")
            .to_string()
    };
    assert_eq!(
        bad(|t| t.block_cache_bytes = 0),
        "invalid block_cache_bytes: must be positive, got 0"
    );
    assert_eq!(
        bad(|t| t.write_buffer_bytes = 0),
        "invalid write_buffer_bytes: must be positive, got 0"
    );
    assert_eq!(
        bad(|t| t.max_write_buffers = 1),
        "invalid max_write_buffers: must be at least 2, got 1"
    );
    assert_eq!(
        bad(|t| t.max_background_jobs = 0),
        "invalid max_background_jobs: must be at least 1, got 0"
    );
    assert_eq!(
        bad(|t| t.bloom_bits_per_key = Some(-1.0)),
        "invalid bloom_bits_per_key: must be positive, got -1"
    );
    assert_eq!(
        bad(|t| t.compression = Compression::PerLevel(vec![])),
        "invalid compression: PerLevel needs at least one codec"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, b"not a db").expect("write");
    let err = Engine::open(EngineConfig::new(&file)).expect_err("a file");
    assert_eq!(
        err.to_string(),
        format!("{} is not a directory", file.display())
    );

    for missing in [
        dir.path().join("missing"),
        tempfile::tempdir().expect("empty dir").keep(),
    ] {
        let err = Engine::open(EngineConfig {
            create_if_missing: false,
            ..EngineConfig::new(&missing)
        })
        .expect_err("missing");
        assert!(matches!(err, EngineError::Missing { .. }), "{err}");
    }
    // A chunked write with an unknown column family fails before writing anything.
    let e = open(&dir.path().join("db2"));
    let mut ops = puts(Cf::DEFAULT, 0..10, "x");
    ops[7] = Mutation::put(Cf::DEFAULT, b"k".to_vec(), b"v".to_vec());
    if let Mutation::Put { cf, .. } = &mut ops[7] {
        *cf = unknown_cf(&e);
    }
    assert!(matches!(
        e.write_batch_chunked(&ops, 2, WriteMode::WAL),
        Err(EngineError::UnknownColumnFamily { .. })
    ));
    assert_eq!(all(&e, Cf::DEFAULT).len(), 0, "nothing committed");
    drop(e);

    // As root, permission bits do not stop anything; a path under /proc cannot be created by
    // anyone, which exercises the same error path.
    let err =
        Engine::open(EngineConfig::new("/proc/batchkv-cannot-exist/db")).expect_err("uncreatable");
    assert!(
        err.to_string()
            .starts_with("create /proc/batchkv-cannot-exist/db: "),
        "{err}"
    );

    let e = open(&dir.path().join("db"));
    let err = e.cf("nope").expect_err("unknown cf");
    assert_eq!(
        err.to_string(),
        "unknown column family \"nope\" (open: default, kv, meta)"
    );
}

#[test]
fn profiles_and_codecs_open_and_round_trip() {
    for profile in [
        Profile::Default,
        Profile::WriteHeavy,
        Profile::ReadHeavy,
        Profile::LowMemory,
    ] {
        let dir = temp_dir();
        let e = Engine::open(EngineConfig::new(dir.path()).profile(profile)).expect("open");
        e.write_batch_with_options(&puts(Cf::DEFAULT, 0..100, "p"), WriteMode::WAL)
            .expect("write");
        e.flush().expect("flush");
        assert_eq!(all(&e, Cf::DEFAULT).len(), 100, "{profile:?}");
    }
    for codec in [Codec::None, Codec::Lz4, Codec::Snappy, Codec::Zstd] {
        let dir = temp_dir();
        let e = Engine::open(EngineConfig::new(dir.path()).tuning(Tuning {
            compression: Compression::Uniform(codec),
            ..Tuning::default()
        }))
        .expect("open");
        e.write_batch_with_options(&puts(Cf::DEFAULT, 0..1000, "c"), WriteMode::WAL)
            .expect("write");
        e.flush().expect("flush");
        assert_eq!(all(&e, Cf::DEFAULT).len(), 1000, "{codec:?}");
    }
    assert_eq!(Compression::Tiered.levels()[0], Codec::None);
    assert_eq!(Compression::Tiered.levels()[3], Codec::Lz4);
    assert_eq!(Compression::Tiered.levels()[6], Codec::Zstd);
    assert_eq!(
        Compression::PerLevel(vec![Codec::None, Codec::Zstd]).levels()[5],
        Codec::Zstd
    );
}

#[test]
fn shared_across_threads() {
    let dir = temp_dir();
    let e = Arc::new(open(dir.path()));
    let kv = e.cf("kv").expect("kv");
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                for i in 0..250 {
                    let mut b = e.begin_batch();
                    b.put(kv, &key(t * 1000 + i), b"v").expect("put");
                    b.commit(WriteMode::WAL).expect("commit");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    assert_eq!(all(&e, kv).len(), 1000);
}

/// A `Cf` from an engine with more column families than `e`: out of range for `e`.
fn unknown_cf(e: &Engine) -> Cf {
    let dir = temp_dir();
    let names: Vec<String> = (0..=e.column_families().len())
        .map(|i| format!("cf{i}"))
        .collect();
    let bigger =
        Engine::open(EngineConfig::new(dir.path()).column_families(names.clone())).expect("open");
    bigger.cf(names.last().expect("names")).expect("cf")
}

// --- Tests that need a second process. The test binary runs itself with one test selected and
// an environment variable telling that test to play the child. ---

const CHILD: &str = "BATCHKV_ENGINE_TEST_CHILD";

#[test]
fn second_process_gets_the_lock_error() {
    if let Some(dir) = child_env(CHILD) {
        // Child: hold the database open until killed.
        let _e = open(Path::new(&dir));
        println!("CHILD-OPEN");
        std::thread::sleep(std::time::Duration::from_secs(120));
        return;
    }
    let dir = temp_dir();
    let mut child = ChildProcess::test("second_process_gets_the_lock_error", CHILD, dir.path());
    child.wait_for_line("CHILD-OPEN");
    let err = Engine::open(EngineConfig::new(dir.path())).expect_err("locked by the child");
    child.kill();
    assert!(matches!(err, EngineError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("database at {} is locked", dir.path().display()))
    );
    // Once the holder is gone the database opens; a second handle in this process is refused too.
    let e = open(dir.path());
    assert!(matches!(
        Engine::open(EngineConfig::new(dir.path())),
        Err(EngineError::Locked { .. })
    ));
    drop(e);
}

#[test]
fn crash_keeps_wal_writes_and_loses_unflushed_wal_less_writes() {
    if let Some(dir) = child_env(CHILD) {
        // Child: write in each mode, report, and wait to be killed (no clean close).
        let e = open(Path::new(&dir));
        let kv = e.cf("kv").expect("kv");
        e.write_batch_with_options(&puts(kv, 0..100, "sync"), WriteMode::SYNC)
            .expect("sync");
        e.write_batch_with_options(&puts(kv, 100..200, "wal"), WriteMode::WAL)
            .expect("wal");
        e.write_batch_with_options(&puts(kv, 200..300, "nowal"), WriteMode::NO_WAL)
            .expect("nowal");
        e.write_batch_with_options(&puts(kv, 300..400, "flushed"), WriteMode::NO_WAL)
            .expect("nowal");
        let meta = e.cf("meta").expect("meta");
        e.flush().expect("flush");
        e.write_batch_with_options(&puts(meta, 0..10, "after-flush"), WriteMode::NO_WAL)
            .expect("nowal");
        println!("CHILD-WROTE");
        std::thread::sleep(std::time::Duration::from_secs(120));
        return;
    }
    let dir = temp_dir();
    let mut child = ChildProcess::test(
        "crash_keeps_wal_writes_and_loses_unflushed_wal_less_writes",
        CHILD,
        dir.path(),
    );
    child.wait_for_line("CHILD-WROTE");
    child.kill();

    let e = open(dir.path());
    let kv = e.cf("kv").expect("kv");
    let rows = all(&e, kv);
    // Synced and WAL writes survive a process crash; the flush made the WAL-less ones durable
    // too (a flush persists every column family's memtable).
    assert_eq!(rows.len(), 400);
    assert_eq!(rows[0].1, b"sync-0");
    assert_eq!(rows[150].1, b"wal-150");
    assert_eq!(rows[250].1, b"nowal-250");
    // WAL-less writes after the last flush are gone: there was no clean close to flush them.
    assert_eq!(all(&e, e.cf("meta").expect("meta")).len(), 0);
}

// --- Model test: random mutations against a BTreeMap, with reopens. ---

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, u8, u8),
        Delete(u8, u8),
        DeleteRange(u8, u8, u8),
        Commit(WriteModeChoice),
        Large(u8, u8, u16),
        Reopen,
    }

    #[derive(Clone, Copy, Debug)]
    enum WriteModeChoice {
        Sync,
        Wal,
    }

    fn k(i: u8) -> Vec<u8> {
        vec![b'k', i / 16, i % 16]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            5 => (0u8..2, any::<u8>(), any::<u8>()).prop_map(|(c, k, v)| Step::Put(c, k, v)),
            2 => (0u8..2, any::<u8>()).prop_map(|(c, k)| Step::Delete(c, k)),
            1 => (0u8..2, any::<u8>(), any::<u8>()).prop_map(|(c, a, b)| Step::DeleteRange(c, a.min(b), a.max(b))),
            2 => prop_oneof![Just(WriteModeChoice::Sync), Just(WriteModeChoice::Wal)].prop_map(Step::Commit),
            1 => (0u8..2, any::<u8>(), 1u16..300).prop_map(|(c, s, n)| Step::Large(c, s, n)),
            1 => Just(Step::Reopen),
        ]
    }

    /// A staged mutation: column family 0 or 1, in commit order.
    #[derive(Debug)]
    enum Staged {
        Put(usize, Vec<u8>, Vec<u8>),
        Delete(usize, Vec<u8>),
        DeleteRange(usize, Vec<u8>, Vec<u8>),
    }

    type Model = [BTreeMap<Vec<u8>, Vec<u8>>; 2];

    fn apply(model: &mut Model, s: Staged) {
        match s {
            Staged::Put(c, k, v) => {
                model[c].insert(k, v);
            }
            Staged::Delete(c, k) => {
                model[c].remove(&k);
            }
            Staged::DeleteRange(c, from, to) => model[c].retain(|k, _| *k < from || *k >= to),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Staged batches, large writes and reopens agree with a BTreeMap per column family.
        #[test]
        fn engine_matches_a_btreemap(steps in prop::collection::vec(step(), 1..80)) {
            let dir = temp_dir();
            let mut engine = Some(open(dir.path()));
            let mut model: Model = [BTreeMap::new(), BTreeMap::new()];
            let mut pending: Vec<Staged> = Vec::new();
            let mut log = Vec::new();
            for s in steps {
                log.push(format!("{s:?}"));
                let e = engine.as_ref().expect("open");
                let cfs = [e.cf("kv").expect("kv"), e.cf("meta").expect("meta")];
                match s {
                    Step::Put(c, key, v) => pending.push(Staged::Put(c as usize, k(key), vec![v])),
                    Step::Delete(c, key) => pending.push(Staged::Delete(c as usize, k(key))),
                    Step::DeleteRange(c, a, b) => {
                        pending.push(Staged::DeleteRange(c as usize, k(a), k(b)));
                    }
                    Step::Commit(mode) => {
                        let mut b = e.begin_batch();
                        for st in &pending {
                            match st {
                                Staged::Put(c, key, v) => b.put(cfs[*c], key, v),
                                Staged::Delete(c, key) => b.delete(cfs[*c], key),
                                Staged::DeleteRange(c, from, to) => b.delete_range(cfs[*c], from, to),
                            }
                            .expect("stage");
                        }
                        let mode = match mode {
                            WriteModeChoice::Sync => WriteMode::SYNC,
                            WriteModeChoice::Wal => WriteMode::WAL,
                        };
                        b.commit(mode).expect("commit");
                        for st in pending.drain(..) {
                            apply(&mut model, st);
                        }
                    }
                    Step::Large(c, start, n) => {
                        let c = c as usize;
                        let ops: Vec<Mutation> = (0..n)
                            .map(|i| Mutation::put(cfs[c], k(start.wrapping_add(i as u8)), i.to_be_bytes().to_vec()))
                            .collect();
                        e.write_batch_chunked(&ops, 37, WriteMode::WAL).expect("chunked");
                        for op in ops {
                            if let Mutation::Put { key, value, .. } = op {
                                apply(&mut model, Staged::Put(c, key, value));
                            }
                        }
                    }
                    Step::Reopen => {
                        // Uncommitted staging is lost with the handle, as a dropped batch is.
                        pending.clear();
                        // Close before reopening: RocksDB holds a lock on the directory.
                        drop(engine.take());
                        engine = Some(open(dir.path()));
                    }
                }
                let e = engine.as_ref().expect("open");
                for (c, name) in ["kv", "meta"].iter().enumerate() {
                    let cf = e.cf(name).expect("cf");
                    let got: BTreeMap<_, _> = all(e, cf).into_iter().collect();
                    prop_assert_eq!(&got, &model[c], "after {:?}", log);
                }
            }
        }
    }
}

#[test]
fn no_slowdown_writes_normally_when_nothing_stalls() {
    let dir = temp_dir();
    let e = open(dir.path());
    // no_slowdown on an unstalled database writes normally.
    let mut b = e.begin_batch();
    b.put(Cf::DEFAULT, b"k", b"v").expect("put");
    b.commit(WriteMode {
        no_slowdown: true,
        ..WriteMode::WAL
    })
    .expect("no stall, no error");
    assert_eq!(e.get(Cf::DEFAULT, b"k").expect("get"), Some(b"v".to_vec()));
}

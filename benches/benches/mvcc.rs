//! MVCC store benchmarks against the engine underneath and raw rust-rocksdb, all in one run so
//! the ratios are same-run (16-byte keys in random order, 100-byte incompressible values):
//!
//! 1. `mvcc/apply/{1,100,1000}/{insert,update}`: applying entries of N puts (WAL on, no sync)
//!    beside the same puts as one raw engine batch per entry (a `kv` column family) and one raw
//!    rust-rocksdb `WriteBatch` per entry; a fresh database per measurement, the three sides
//!    interleaved; `update` overwrites keys of a preloaded store;
//! 2. `mvcc/get/{latest,old}`: point reads of random keys, the latest value and the value at an
//!    old revision (the 3rd of 10 versions), beside raw rust-rocksdb `get` of the same keys;
//! 3. `mvcc/range/1000`: range reads of 1,000 keys beside the raw engine's `range` of the same
//!    keys;
//! 4. `mvcc/reopen`: opening a store of 1M keys and their history (overwrites, deletes), which
//!    rebuilds the in-memory index from the `kv` column family; in a child process, so that its
//!    RSS growth is the open's alone;
//! 5. `mvcc/watchers/{0,10-idle-keys,1000-idle-keys,10-idle-ranges,1000-idle-ranges,
//!    10-active-split,10-active-all,1-stuck}`: applying entries of 100 puts (as 1.) with
//!    watchers registered: idle ones (single keys or ranges the puts never touch, nobody
//!    reading), 10 active ones each read by its own thread (ranges splitting the key space, or
//!    each over every key), or one over every key that nobody reads while the puts go in (it
//!    falls behind; afterwards it is read to the end, which catches it up from storage);
//! 6. `mvcc/revoke/{lease,delete-range-plain,delete-range-leased,key-deletes}`: one entry
//!    deleting 10,000 keys: `LeaseRevoke` of the lease they are attached to, beside one
//!    `DeleteRange` over them (without and with the lease) and 10,000 single-key deletes.
//!
//! A custom harness (repetitions, median, RSD and CSV). `cargo xtask bench mvcc` runs it;
//! `BATCHKV_BENCH_QUICK=1` makes it small. A filter selects cases by substring (`mvcc/apply/1000`,
//! `mvcc/get`, `mvcc/range`, `mvcc/reopen`, `mvcc/watchers`, `mvcc/revoke`; several separated by
//! commas: `mvcc/get,mvcc/range`). `BATCHKV_BENCH_VALUE_CACHE_BYTES` sets the store's value
//! cache budget (0: off, to measure reads from storage). Results go to stdout
//! and, with `BATCHKV_REPORT_DIR`, to `mvcc.csv` and the section `mvcc.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv_batcher::rsd_pct;
use batchkv_benches::rows::{MvccMetric, MvccRow, MvccSide};
use batchkv_codec::{DeleteRange, LeaseGrant, LeaseRevoke, Op, Put, Range};
use batchkv_engine::{Engine, EngineConfig, KeyRange, Tuning, WriteMode};
use batchkv_mvcc::{KV_CF, META_CF, Mvcc, MvccConfig, OpResponse, WatchRequest, Watcher};
use bytes::Bytes;
use rocksdb::{Cache, DB, WriteBatch, WriteOptions};

mod common;

use common::{Rng, key, median};

/// Puts per entry in the apply cases.
const ENTRY_SIZES: [usize; 3] = [1, 100, 1_000];
/// Puts per entry when loading stores (outside any measurement).
const LOAD_ENTRY: usize = 1_000;
/// Keys per range read.
const SPAN: usize = 1_000;
/// The child process of `mvcc/reopen` gets the store's path in this variable.
const REOPEN_CHILD: &str = "BATCHKV_MVCC_REOPEN";

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Measured repetitions (after one warm-up) of every apply point and read pass.
    reps: usize,
    /// Puts per apply measurement.
    apply_puts: usize,
    /// Keys the update case preloads and then overwrites, round robin.
    update_keys: usize,
    /// Keys of the read store.
    read_keys: usize,
    /// Keys of the read store with 10 versions.
    history_keys: usize,
    /// Point reads per pass.
    probes: usize,
    /// Range reads per pass.
    scans: usize,
    /// Keys of the reopen store.
    reopen_keys: usize,
    /// Reopens measured.
    reopen_reps: usize,
    /// Measured repetitions (after one warm-up) of every revoke case.
    revoke_reps: usize,
}

const FULL: Params = Params {
    reps: 5,
    apply_puts: 200_000,
    update_keys: 20_000,
    read_keys: 200_000,
    history_keys: 10_000,
    probes: 100_000,
    scans: 200,
    reopen_keys: 1_000_000,
    reopen_reps: 3,
    revoke_reps: 11,
};

const QUICK: Params = Params {
    reps: 2,
    apply_puts: 20_000,
    update_keys: 2_000,
    read_keys: 20_000,
    history_keys: 1_000,
    probes: 10_000,
    scans: 50,
    reopen_keys: 50_000,
    reopen_reps: 1,
    revoke_reps: 2,
};

/// Measured values of one point.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn median(&self) -> f64 {
        median(&self.0)
    }

    fn rsd(&self) -> f64 {
        rsd_pct(self.0.iter().copied())
    }

    fn show(&self, decimals: usize) -> String {
        format!("{:.*} (±{:.0}%)", decimals, self.median(), self.rsd())
    }
}

/// Whether the command line's filter selects `case`: a substring of it, or several separated by
/// commas (`mvcc/get,mvcc/range` measures both reads in one process, on one loaded store).
fn wants(case: &str) -> bool {
    common::filter().is_none_or(|f| f.split(',').any(|part| case.contains(part)))
}

/// The tuning every side uses: the engine's default profile, statistics off (as engine.rs).
fn tuning() -> Tuning {
    Tuning {
        statistics: false,
        ..Tuning::default()
    }
}

/// The store's config: WAL writes, the bench's tuning, and the value cache's budget from
/// `BATCHKV_BENCH_VALUE_CACHE_BYTES` (default: the store's default; 0: no cache).
fn mvcc_config(path: &Path) -> MvccConfig {
    let mut c = MvccConfig::new(path).write_mode(WriteMode::WAL);
    c.engine = c.engine.tuning(tuning());
    if let Some(bytes) = std::env::var("BATCHKV_BENCH_VALUE_CACHE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c = c.value_cache_bytes(bytes);
    }
    c
}

fn open_engine(path: &Path, cfs: &[&str]) -> Engine {
    Engine::open(
        EngineConfig::new(path)
            .tuning(tuning())
            .column_families(cfs.iter().copied()),
    )
    .expect("open engine")
}

/// Raw rust-rocksdb with exactly the options the engine builds.
fn raw_open(path: &Path) -> (DB, Cache) {
    let (mut o, cache) = batchkv_engine::rocksdb_options(&tuning());
    o.create_if_missing(true);
    (DB::open(&o, path).expect("open raw rocksdb"), cache)
}

fn wal_no_sync() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    wo.disable_wal(false);
    wo
}

fn put(k: impl Into<Bytes>, v: impl Into<Bytes>) -> Op {
    Op::Put(Put::new(k, v))
}

fn put_kv(op: &Op) -> (&[u8], &[u8]) {
    match op {
        Op::Put(p) => (&p.key, &p.value),
        other => unreachable!("the benchmark's data holds only puts, not {other:?}"),
    }
}

/// Applies `ops` in entries of `n`, numbering them from `*index + 1`.
fn apply_all(store: &mut Mvcc, index: &mut u64, ops: &[Op], n: usize) {
    for entry in ops.chunks(n) {
        *index += 1;
        store.apply(*index, entry).expect("apply");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. apply

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Rocks,
    Engine,
    Mvcc,
}

impl Side {
    const ALL: [Side; 3] = [Side::Rocks, Side::Engine, Side::Mvcc];

    /// The side in `mvcc.csv`.
    fn row_side(self) -> MvccSide {
        match self {
            Side::Rocks => MvccSide::RawRocksdb,
            Side::Engine => MvccSide::RawEngine,
            Side::Mvcc => MvccSide::Mvcc,
        }
    }
}

/// The puts of one apply case: `preload` (entries of 1,000, not measured) then `puts`.
#[derive(Debug)]
struct Workload {
    kind: &'static str,
    preload: Vec<Op>,
    puts: Vec<Op>,
}

fn workloads(p: &Params) -> Vec<Workload> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    if ENTRY_SIZES
        .iter()
        .any(|n| wants(&format!("mvcc/apply/{n}/insert")))
    {
        out.push(Workload {
            kind: "insert",
            preload: Vec::new(),
            puts: (0..p.apply_puts as u64)
                .map(|i| put(key(i), rng.value(false)))
                .collect(),
        });
    }
    if ENTRY_SIZES
        .iter()
        .any(|n| wants(&format!("mvcc/apply/{n}/update")))
    {
        let u = p.update_keys as u64;
        out.push(Workload {
            kind: "update",
            preload: (0..u).map(|i| put(key(i), rng.value(false))).collect(),
            puts: (0..p.apply_puts as u64)
                .map(|i| put(key(i % u), rng.value(false)))
                .collect(),
        });
    }
    out
}

/// One measurement: a fresh database of `side`, the workload's preload, then its puts in
/// entries of `n` (timed). Returns puts per second.
fn apply_once(side: Side, w: &Workload, n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let secs = match side {
        Side::Mvcc => {
            let mut store = Mvcc::open(mvcc_config(dir.path())).expect("open mvcc");
            let mut index = 0;
            apply_all(&mut store, &mut index, &w.preload, LOAD_ENTRY);
            let t = Instant::now();
            apply_all(&mut store, &mut index, &w.puts, n);
            let secs = t.elapsed().as_secs_f64();
            // A new store is at revision 1 and every put adds one: all of them were applied.
            assert_eq!(
                store.current_revision(),
                1 + (w.preload.len() + w.puts.len()) as i64
            );
            secs
        }
        Side::Engine => {
            let engine = open_engine(dir.path(), &[KV_CF]);
            let kv = engine.cf(KV_CF).expect("kv cf");
            let write = |ops: &[Op], n: usize| {
                for entry in ops.chunks(n) {
                    let mut b = engine.begin_batch();
                    for op in entry {
                        let (k, v) = put_kv(op);
                        b.put(kv, k, v).expect("stage");
                    }
                    b.commit(WriteMode::WAL).expect("commit");
                }
            };
            write(&w.preload, LOAD_ENTRY);
            let t = Instant::now();
            write(&w.puts, n);
            t.elapsed().as_secs_f64()
        }
        Side::Rocks => {
            let (db, _cache) = raw_open(dir.path());
            let wo = wal_no_sync();
            let write = |ops: &[Op], n: usize| {
                for entry in ops.chunks(n) {
                    let mut b = WriteBatch::with_capacity_bytes(entry.len() * 130);
                    for op in entry {
                        let (k, v) = put_kv(op);
                        b.put(k, v);
                    }
                    db.write_opt(b, &wo).expect("raw write");
                }
            };
            write(&w.preload, LOAD_ENTRY);
            let t = Instant::now();
            write(&w.puts, n);
            t.elapsed().as_secs_f64()
        }
    };
    w.puts.len() as f64 / secs
}

#[derive(Debug)]
struct ApplyRow {
    kind: &'static str,
    entry: usize,
    /// Puts per second, indexed as [`Side::ALL`].
    ops_per_s: [Samples; 3],
}

impl ApplyRow {
    fn case(&self) -> String {
        format!("mvcc/apply/{}/{}", self.entry, self.kind)
    }

    fn get(&self, side: Side) -> &Samples {
        &self.ops_per_s[side as usize]
    }

    fn ratio(&self, num: Side, den: Side) -> f64 {
        self.get(num).median() / self.get(den).median()
    }
}

fn apply_bench(p: &Params) -> Vec<ApplyRow> {
    let loads = workloads(p);
    let mut rows: Vec<ApplyRow> = Vec::new();
    for w in &loads {
        for entry in ENTRY_SIZES {
            let row = ApplyRow {
                kind: w.kind,
                entry,
                ops_per_s: Default::default(),
            };
            if wants(&row.case()) {
                rows.push(row);
            }
        }
    }
    if rows.is_empty() {
        return rows;
    }
    let started = Instant::now();
    // Repetitions outermost and the sides interleaved (in a rotating order), so that the
    // machine's slow drifts weigh on every side alike; rep 0 is the uncounted warm-up.
    for rep in 0..=p.reps {
        for row in &mut rows {
            let w = loads
                .iter()
                .find(|w| w.kind == row.kind)
                .expect("a workload per row");
            let mut sides = Side::ALL;
            sides.rotate_left(rep % Side::ALL.len());
            for side in sides {
                let v = apply_once(side, w, row.entry);
                if rep > 0 {
                    row.ops_per_s[side as usize].0.push(v);
                }
            }
        }
        println!(
            "mvcc/apply: repetition {rep}/{} done ({:.0} s)",
            p.reps,
            started.elapsed().as_secs_f64()
        );
    }
    for r in &rows {
        println!(
            "{:<26} raw-rocksdb {:>16}  raw-engine {:>16}  mvcc {:>16} ops/s  mvcc/engine {:.2}  mvcc/rocksdb {:.2}",
            r.case(),
            r.get(Side::Rocks).show(0),
            r.get(Side::Engine).show(0),
            r.get(Side::Mvcc).show(0),
            r.ratio(Side::Mvcc, Side::Engine),
            r.ratio(Side::Mvcc, Side::Rocks),
        );
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. point and range reads

/// A read of the mvcc store beside the same read of a raw reference: time per op.
#[derive(Debug)]
struct ReadRow {
    case: &'static str,
    what: &'static str,
    reference: &'static str,
    unit: &'static str,
    mvcc: Samples,
    raw: Samples,
}

impl ReadRow {
    /// mvcc throughput over the reference's (the inverse of the time ratio).
    fn ratio(&self) -> f64 {
        self.raw.median() / self.mvcc.median()
    }
}

/// Times `f` over `n` operations, in `scale` units per op (1e9: ns, 1e6: µs).
fn per_op(n: usize, scale: f64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * scale / n as f64
}

fn reads_bench(p: &Params) -> Vec<ReadRow> {
    let want_latest = wants("mvcc/get/latest");
    let want_old = wants("mvcc/get/old");
    let want_range = wants("mvcc/range/1000");
    if !(want_latest || want_old || want_range) {
        return Vec::new();
    }
    let started = Instant::now();
    let (n, h) = (p.read_keys, p.history_keys);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(11);
    let keys: Vec<Bytes> = (0..n as u64).map(|i| Bytes::from(key(i))).collect();
    let mut latest: Vec<Bytes> = (0..n).map(|_| Bytes::from(rng.value(false))).collect();

    // The mvcc store: every key once, then the first `h` keys 9 more times (10 versions); the
    // revision of each one's 3rd version is kept for the reads at an old revision.
    let mut store = Mvcc::open(mvcc_config(&dir.path().join("mvcc"))).expect("open mvcc");
    let mut index = 0;
    let first: Vec<Op> = (0..n)
        .map(|i| put(keys[i].clone(), latest[i].clone()))
        .collect();
    apply_all(&mut store, &mut index, &first, LOAD_ENTRY);
    let mut third = vec![0i64; h];
    for version in 2..=10 {
        for start in (0..h).step_by(LOAD_ENTRY) {
            let end = (start + LOAD_ENTRY).min(h);
            let entry: Vec<Op> = (start..end)
                .map(|i| {
                    latest[i] = Bytes::from(rng.value(false));
                    put(keys[i].clone(), latest[i].clone())
                })
                .collect();
            index += 1;
            let applied = store.apply(index, &entry).expect("apply");
            if version == 3 {
                for (i, r) in (start..end).zip(&applied.results) {
                    match r {
                        Ok(OpResponse::Put(put)) => third[i] = put.revision,
                        other => panic!("a put answered {other:?}"),
                    }
                }
            }
        }
    }
    // The references hold each key's latest value.
    let (raw, _cache) = raw_open(&dir.path().join("raw"));
    let engine = open_engine(&dir.path().join("engine"), &[KV_CF]);
    let kv = engine.cf(KV_CF).expect("kv cf");
    for start in (0..n).step_by(10_000) {
        let end = (start + 10_000).min(n);
        let mut rb = WriteBatch::default();
        let mut eb = engine.begin_batch();
        for i in start..end {
            rb.put(&keys[i], &latest[i]);
            eb.put(kv, &keys[i], &latest[i]).expect("stage");
        }
        raw.write_opt(rb, &wal_no_sync()).expect("raw write");
        eb.commit(WriteMode::WAL).expect("commit");
    }
    // Everything flushed and compacted, as engine.rs reads: SST files behind a warm block cache.
    store.engine().flush().expect("flush");
    let store_kv = store.engine().cf(KV_CF).expect("kv cf");
    store.engine().compact(store_kv).expect("compact");
    engine.flush().expect("flush");
    engine.compact(kv).expect("compact");
    raw.flush().expect("flush");
    raw.compact_range(None::<&[u8]>, None::<&[u8]>);
    println!(
        "mvcc/reads: {n} keys loaded, flushed and compacted ({:.0} s)",
        started.elapsed().as_secs_f64()
    );

    // The store reads what the references hold.
    for i in (0..n).step_by(n / 100) {
        let got = store.get(&keys[i]).expect("get").expect("the key exists");
        assert_eq!(got.value, latest[i]);
        assert_eq!(
            raw.get(&keys[i]).expect("get").as_deref(),
            Some(&latest[i][..])
        );
    }
    for i in (0..h).step_by(h.div_ceil(100)) {
        let old = store.get_at(&keys[i], third[i]).expect("get_at");
        assert_eq!(old.expect("the key existed").version, 3);
    }

    let latest_probes: Vec<usize> = (0..p.probes)
        .map(|_| (rng.next() % n as u64) as usize)
        .collect();
    let old_probes: Vec<usize> = (0..p.probes)
        .map(|_| (rng.next() % h as u64) as usize)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    let starts: Vec<usize> = (0..p.scans)
        .map(|_| (rng.next() % (n - SPAN) as u64) as usize)
        .collect();
    let mranges: Vec<Range> = starts
        .iter()
        .map(|&s| Range {
            key: sorted[s].clone(),
            range_end: sorted[s + SPAN].clone(),
            limit: SPAN as i64,
            ..Range::default()
        })
        .collect();
    let eranges: Vec<KeyRange> = starts
        .iter()
        .map(|&s| KeyRange::between(sorted[s].to_vec(), sorted[s + SPAN].to_vec()))
        .collect();

    let mut rows = Vec::new();
    let row = |case, what, reference, unit| ReadRow {
        case,
        what,
        reference,
        unit,
        mvcc: Samples::default(),
        raw: Samples::default(),
    };
    let mut get_latest = row(
        "mvcc/get/latest",
        "point get, latest value",
        "raw rust-rocksdb get",
        "ns",
    );
    let mut get_old = row(
        "mvcc/get/old",
        "point get at an old revision (3rd of 10 versions)",
        "raw rust-rocksdb get",
        "ns",
    );
    let mut range = row(
        "mvcc/range/1000",
        "range of 1,000 keys (limit 1,000)",
        "raw engine range",
        "µs",
    );
    // Pass 0 warms the caches (block cache, page cache) and is not counted.
    for pass in 0..=p.reps {
        let keep = |s: &mut Samples, v: f64| {
            if pass > 0 {
                s.0.push(v);
            }
        };
        if want_latest {
            let m = per_op(latest_probes.len(), 1e9, || {
                for &i in &latest_probes {
                    black_box(store.get(&keys[i]).expect("get"));
                }
            });
            let r = per_op(latest_probes.len(), 1e9, || {
                for &i in &latest_probes {
                    black_box(raw.get(&keys[i]).expect("get"));
                }
            });
            keep(&mut get_latest.mvcc, m);
            keep(&mut get_latest.raw, r);
        }
        if want_old {
            let m = per_op(old_probes.len(), 1e9, || {
                for &i in &old_probes {
                    black_box(store.get_at(&keys[i], third[i]).expect("get_at"));
                }
            });
            let r = per_op(old_probes.len(), 1e9, || {
                for &i in &old_probes {
                    black_box(raw.get(&keys[i]).expect("get"));
                }
            });
            keep(&mut get_old.mvcc, m);
            keep(&mut get_old.raw, r);
        }
        if want_range {
            let m = per_op(mranges.len(), 1e6, || {
                for r in &mranges {
                    let resp = store.range(r).expect("range");
                    assert_eq!(resp.kvs.len(), SPAN);
                    black_box(resp);
                }
            });
            let e = per_op(eranges.len(), 1e6, || {
                for r in &eranges {
                    let pairs = engine.range(kv, r, SPAN).expect("range");
                    assert_eq!(pairs.len(), SPAN);
                    black_box(pairs);
                }
            });
            keep(&mut range.mvcc, m);
            keep(&mut range.raw, e);
        }
    }
    for (wanted, r) in [
        (want_latest, get_latest),
        (want_old, get_old),
        (want_range, range),
    ] {
        if wanted {
            println!(
                "{:<26} mvcc {:>14} {}/op  {} {:>14} {}/op  mvcc/raw {:.2}",
                r.case,
                r.mvcc.show(1),
                r.unit,
                r.reference,
                r.raw.show(1),
                r.unit,
                r.ratio()
            );
            rows.push(r);
        }
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// 4. reopen

/// This process's resident set, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The child of `mvcc/reopen`: opens the store at `path` in a fresh process and prints its
/// figures as `name=value` pairs on one line.
fn reopen_child(path: &Path) {
    let rss_before = rss_kib();
    let t = Instant::now();
    let store = Mvcc::open(mvcc_config(path)).expect("reopen mvcc");
    let open_s = t.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    let stats = store.engine().stats().expect("stats");
    let (keys, revision) = (store.indexed_keys(), store.current_revision());
    drop(store);
    // The parts: the engine's open alone, then its plain scan of the `kv` column family (a
    // new block cache; the OS page cache is as warm as it was for the open above).
    let t = Instant::now();
    let engine = open_engine(path, &[KV_CF, META_CF]);
    let engine_open_s = t.elapsed().as_secs_f64();
    let kv = engine.cf(KV_CF).expect("kv cf");
    let t = Instant::now();
    let records = engine
        .scan(kv, &KeyRange::all(), false, |k, v| {
            black_box((k, v));
            true
        })
        .expect("scan");
    let scan_s = t.elapsed().as_secs_f64();
    println!(
        "open_s={open_s} engine_open_s={engine_open_s} scan_s={scan_s} records={records} \
         keys={keys} revision={revision} rss_before_kib={rss_before} rss_after_kib={rss_after} \
         block_cache_bytes={} memtable_bytes={}",
        stats.block_cache_usage,
        stats.totals().memtable_bytes
    );
}

#[derive(Debug)]
struct Reopen {
    keys: usize,
    overwrites: usize,
    deletes: usize,
    build_ops_per_s: f64,
    /// Per child run: its `name=value` figures.
    runs: Vec<HashMap<String, f64>>,
}

impl Reopen {
    fn samples(&self, name: &str) -> Samples {
        Samples(
            self.runs
                .iter()
                .map(|r| r.get(name).copied().unwrap_or(f64::NAN))
                .collect(),
        )
    }

    fn first(&self, name: &str) -> f64 {
        self.runs
            .first()
            .and_then(|r| r.get(name).copied())
            .unwrap_or(f64::NAN)
    }

    fn rss_growth_mib(&self) -> Samples {
        Samples(
            self.runs
                .iter()
                .map(|r| (r["rss_after_kib"] - r["rss_before_kib"]) / 1024.0)
                .collect(),
        )
    }
}

fn reopen_bench(p: &Params) -> Option<Reopen> {
    if !wants("mvcc/reopen") {
        return None;
    }
    let k = p.reopen_keys;
    let (overwrites, deletes) = (k / 4, k / 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mvcc");
    let mut rng = Rng(13);
    let mut applying = 0.0;
    let started = Instant::now();
    {
        let mut store = Mvcc::open(mvcc_config(&path)).expect("open mvcc");
        let mut index = 0;
        let mut apply = |store: &mut Mvcc, ops: Vec<Op>| {
            index += 1;
            let t = Instant::now();
            store.apply(index, &ops).expect("apply");
            applying += t.elapsed().as_secs_f64();
        };
        // Every key, then overwrites of the first quarter, then deletes of the next twentieth:
        // `key` scatters them over the key space.
        for start in (0..k).step_by(LOAD_ENTRY) {
            let ops = (start..(start + LOAD_ENTRY).min(k))
                .map(|i| put(key(i as u64), rng.value(false)))
                .collect();
            apply(&mut store, ops);
        }
        for start in (0..overwrites).step_by(LOAD_ENTRY) {
            let ops = (start..(start + LOAD_ENTRY).min(overwrites))
                .map(|i| put(key(i as u64), rng.value(false)))
                .collect();
            apply(&mut store, ops);
        }
        for start in (overwrites..overwrites + deletes).step_by(LOAD_ENTRY) {
            let ops = (start..(start + LOAD_ENTRY).min(overwrites + deletes))
                .map(|i| Op::DeleteRange(DeleteRange::key(key(i as u64))))
                .collect();
            apply(&mut store, ops);
        }
        assert_eq!(
            store.current_revision(),
            1 + (k + overwrites + deletes) as i64
        );
        // A clean shutdown: memtables flushed, so the open replays no WAL.
        store.engine().flush().expect("flush");
    }
    let build_ops_per_s = (k + overwrites + deletes) as f64 / applying;
    println!(
        "mvcc/reopen: store built ({k} keys, {overwrites} overwrites, {deletes} deletes: \
         {build_ops_per_s:.0} ops/s applying; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for _ in 0..p.reopen_reps {
        let mut child = batchkv_testkit::this_exe();
        child
            .env(REOPEN_CHILD, &path)
            .env_remove("BATCHKV_REPORT_DIR");
        let out = batchkv_testkit::ChildProcess::spawn(child).wait();
        let text = &out.stdout;
        assert!(
            out.status.success(),
            "the reopen child failed ({}): {text}{}",
            out.status,
            out.stderr
        );
        let figures: HashMap<String, f64> = text
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
            .collect();
        assert!(
            figures.contains_key("open_s"),
            "unexpected child output: {text}"
        );
        runs.push(figures);
    }
    let r = Reopen {
        keys: k,
        overwrites,
        deletes,
        build_ops_per_s,
        runs,
    };
    let open = r.samples("open_s");
    println!(
        "mvcc/reopen               open {} s ({:.0} keys/s, {:.0} records/s)  engine open {} s  kv scan {} s  RSS +{} MiB (block cache {:.0} MiB)",
        open.show(3),
        r.first("keys") / open.median(),
        r.first("records") / open.median(),
        r.samples("engine_open_s").show(3),
        r.samples("scan_s").show(3),
        r.rss_growth_mib().show(0),
        r.first("block_cache_bytes") / f64::from(1 << 20),
    );
    Some(r)
}

// ---------------------------------------------------------------------------------------------
// 5. apply with watchers

/// Puts per entry in the watcher cases.
const WATCH_ENTRY: usize = 100;
/// Watchers of the active cases.
const ACTIVE_WATCHERS: usize = 10;
/// How long an active consumer waits in one `recv_timeout` before it looks at the stop flag.
const CONSUMER_POLL: Duration = Duration::from_millis(2);

/// Who watches while the puts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watchers {
    /// Nobody.
    None,
    /// `n` watchers of single keys the puts never touch (the hub finds them by key).
    IdleKeys(usize),
    /// `n` watchers of ranges the puts never touch (the hub checks every one against each event).
    IdleRanges(usize),
    /// 10 watchers whose ranges split the written key space, each read by its own thread.
    ActiveSplit,
    /// 10 watchers of every key (`\0` onwards), each read by its own thread.
    ActiveAll,
    /// One watcher of every key that nobody reads while the puts go in: its channel fills and
    /// it falls behind; afterwards it is read to the end (it catches up from storage).
    Stuck,
}

impl Watchers {
    const ALL: [Watchers; 8] = [
        Watchers::None,
        Watchers::IdleKeys(10),
        Watchers::IdleKeys(1_000),
        Watchers::IdleRanges(10),
        Watchers::IdleRanges(1_000),
        Watchers::ActiveSplit,
        Watchers::ActiveAll,
        Watchers::Stuck,
    ];

    fn name(self) -> String {
        match self {
            Watchers::None => "0".to_owned(),
            Watchers::IdleKeys(n) => format!("{n}-idle-keys"),
            Watchers::IdleRanges(n) => format!("{n}-idle-ranges"),
            Watchers::ActiveSplit => format!("{ACTIVE_WATCHERS}-active-split"),
            Watchers::ActiveAll => format!("{ACTIVE_WATCHERS}-active-all"),
            Watchers::Stuck => "1-stuck".to_owned(),
        }
    }

    fn case(self) -> String {
        format!("mvcc/watchers/{}", self.name())
    }

    fn what(self) -> String {
        match self {
            Watchers::None => "no watcher".to_owned(),
            Watchers::IdleKeys(n) => format!("{n} idle watchers of single keys"),
            Watchers::IdleRanges(n) => format!("{n} idle watchers of ranges"),
            Watchers::ActiveSplit => format!(
                "{ACTIVE_WATCHERS} active watchers, ranges splitting the key space (each event to one)"
            ),
            Watchers::ActiveAll => {
                format!("{ACTIVE_WATCHERS} active watchers of every key (each event to all)")
            }
            Watchers::Stuck => {
                "1 stuck watcher of every key (never read while applying)".to_owned()
            }
        }
    }

    /// The watch requests, registered before the timed puts.
    fn requests(self) -> Vec<WatchRequest> {
        // Hex keys (`0`-`9`, `a`-`f`) sort below `idle/`: the idle watchers see nothing.
        match self {
            Watchers::None => Vec::new(),
            Watchers::IdleKeys(n) => (0..n)
                .map(|i| WatchRequest::key(format!("idle/{i:05}")))
                .collect(),
            Watchers::IdleRanges(n) => (0..n)
                .map(|i| WatchRequest::range(format!("idle/{i:05}/"), format!("idle/{i:05}0")))
                .collect(),
            Watchers::ActiveSplit => {
                // `key` is 16 lower-case hex digits: their order is the numbers' order.
                let bound =
                    |j: usize| format!("{:016x}", u64::MAX / ACTIVE_WATCHERS as u64 * j as u64);
                (0..ACTIVE_WATCHERS)
                    .map(|j| {
                        let lo = if j == 0 { "0".to_owned() } else { bound(j) };
                        let hi = if j + 1 == ACTIVE_WATCHERS {
                            "\0".to_owned()
                        } else {
                            bound(j + 1)
                        };
                        WatchRequest::range(lo, hi)
                    })
                    .collect()
            }
            Watchers::ActiveAll => (0..ACTIVE_WATCHERS)
                .map(|_| WatchRequest::range(&b"\0"[..], &b"\0"[..]))
                .collect(),
            Watchers::Stuck => vec![WatchRequest::range(&b"\0"[..], &b"\0"[..])],
        }
    }

    fn active(self) -> bool {
        matches!(self, Watchers::ActiveSplit | Watchers::ActiveAll)
    }

    /// Events the active watchers receive in all for `puts` puts.
    fn expected_events(self, puts: usize) -> usize {
        match self {
            Watchers::ActiveSplit => puts,
            Watchers::ActiveAll => puts * ACTIVE_WATCHERS,
            _ => 0,
        }
    }
}

/// Reads `w` until the stop flag is up and nothing more comes; returns the events received
/// and when it got the last of them.
fn consume(mut w: Watcher, stop: &AtomicBool) -> (usize, Instant) {
    let mut events = 0;
    let mut last_rev = 0;
    let mut last_at = Instant::now();
    loop {
        // Read before the wait: once the flag is up every entry was published, so an empty
        // wait afterwards means everything was delivered.
        let stopping = stop.load(Ordering::Acquire);
        match w.recv_timeout(CONSUMER_POLL).expect("watch recv") {
            Some(r) => {
                assert!(!r.canceled, "watch cancelled: {}", r.cancel_reason);
                if let Some(e) = r.events.first() {
                    // One revision per response, each above the one before.
                    assert!(
                        e.kv.mod_revision > last_rev,
                        "revision repeated or out of order"
                    );
                    last_rev = e.kv.mod_revision;
                }
                events += r.events.len();
                last_at = Instant::now();
            }
            None if stopping => return (events, last_at),
            None => {}
        }
    }
}

/// The 1-minute load average (the machine is shared: a busy one explains a noisy point).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// CPU seconds (user + system) used so far by this process's threads (`/proc/self/stat`) or by
/// the calling thread (`/proc/thread-self/stat`).
fn cpu_s(stat_file: &str) -> f64 {
    // Fields 14 and 15 (after the command name in parentheses), in ticks of USER_HZ, which
    // Linux fixes at 100 per second.
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// What one watcher measurement gives.
#[derive(Debug, Clone, Copy)]
struct WatchRun {
    puts_per_s: f64,
    /// CPU seconds of the whole process (apply, consumers, RocksDB's threads) per second of
    /// the timed puts.
    cores: f64,
    /// CPU seconds of the applying thread per second of the timed puts.
    apply_cpu: f64,
    /// Active cases: from the last apply's return to the last event received, ms.
    drain_ms: Option<f64>,
    /// Stuck case: events per second while it catches up afterwards.
    catch_up_per_s: Option<f64>,
}

/// One measurement: a fresh store, the case's watchers, then `puts` in entries of 100 (timed).
fn watch_once(case: Watchers, puts: &[Op]) -> WatchRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Mvcc::open(mvcc_config(dir.path())).expect("open mvcc");
    let mut watchers: Vec<Watcher> = case
        .requests()
        .into_iter()
        .map(|r| store.watch(r))
        .collect();
    let active: Vec<Watcher> = if case.active() {
        std::mem::take(&mut watchers)
    } else {
        Vec::new()
    };
    let stop = AtomicBool::new(false);
    let (secs, drain_ms, cores, apply_cpu) = std::thread::scope(|s| {
        let stop = &stop;
        let consumers: Vec<_> = active
            .into_iter()
            .map(|w| s.spawn(move || consume(w, stop)))
            .collect();
        let mut index = 0;
        let (cpu, own) = (cpu_s("/proc/self/stat"), cpu_s("/proc/thread-self/stat"));
        let t = Instant::now();
        apply_all(&mut store, &mut index, puts, WATCH_ENTRY);
        let end = Instant::now();
        let cpu = cpu_s("/proc/self/stat") - cpu;
        let own = cpu_s("/proc/thread-self/stat") - own;
        stop.store(true, Ordering::Release);
        let mut events = 0;
        let mut last = end;
        for c in consumers {
            let (n, at) = c.join().expect("consumer thread");
            events += n;
            last = last.max(at);
        }
        assert_eq!(events, case.expected_events(puts.len()), "{}", case.case());
        let drain = case
            .active()
            .then(|| last.duration_since(end).as_secs_f64() * 1e3);
        let secs = (end - t).as_secs_f64();
        (secs, drain, cpu / secs, own / secs)
    });
    assert_eq!(store.current_revision(), 1 + puts.len() as i64);
    let catch_up_per_s = match case {
        Watchers::Stuck => {
            let mut w = watchers.pop().expect("the stuck watcher");
            let t = Instant::now();
            let mut events = 0;
            let mut last_rev = 0;
            while let Some(r) = w.try_recv().expect("watch recv") {
                assert!(!r.canceled, "watch cancelled: {}", r.cancel_reason);
                if let Some(e) = r.events.first() {
                    assert!(
                        e.kv.mod_revision > last_rev,
                        "revision repeated or out of order"
                    );
                    last_rev = e.kv.mod_revision;
                }
                events += r.events.len();
            }
            let secs = t.elapsed().as_secs_f64();
            // More revisions than its buffer holds: it fell behind, and caught up completely.
            assert_eq!(events, puts.len(), "the stuck watcher missed events");
            Some(events as f64 / secs)
        }
        _ => None,
    };
    drop(watchers);
    WatchRun {
        puts_per_s: puts.len() as f64 / secs,
        cores,
        apply_cpu,
        drain_ms,
        catch_up_per_s,
    }
}

#[derive(Debug)]
struct WatchRow {
    case: Watchers,
    puts_per_s: Samples,
    cores: Samples,
    apply_cpu: Samples,
    drain_ms: Samples,
    catch_up_per_s: Samples,
}

fn watch_bench(p: &Params) -> Vec<WatchRow> {
    let mut rows: Vec<WatchRow> = Watchers::ALL
        .into_iter()
        .filter(|c| wants(&c.case()))
        .map(|case| WatchRow {
            case,
            puts_per_s: Samples::default(),
            cores: Samples::default(),
            apply_cpu: Samples::default(),
            drain_ms: Samples::default(),
            catch_up_per_s: Samples::default(),
        })
        .collect();
    if rows.is_empty() {
        return rows;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let puts: Vec<Op> = (0..p.apply_puts as u64)
        .map(|i| put(key(i), rng.value(false)))
        .collect();
    let started = Instant::now();
    // As in apply: repetitions outermost, the cases in a rotating order, rep 0 the warm-up.
    for rep in 0..=p.reps {
        let n = rows.len();
        for k in 0..n {
            let row = &mut rows[(k + rep) % n];
            let run = watch_once(row.case, &puts);
            if rep > 0 {
                row.puts_per_s.0.push(run.puts_per_s);
                row.cores.0.push(run.cores);
                row.apply_cpu.0.push(run.apply_cpu);
                row.drain_ms.0.extend(run.drain_ms);
                row.catch_up_per_s.0.extend(run.catch_up_per_s);
            }
        }
        println!(
            "mvcc/watchers: repetition {rep}/{} done ({:.0} s, load average {})",
            p.reps,
            started.elapsed().as_secs_f64(),
            load_average()
        );
    }
    let base = rows
        .iter()
        .find(|r| r.case == Watchers::None)
        .map(|r| r.puts_per_s.median());
    for r in &rows {
        let mut line = format!(
            "{:<32} mvcc {:>16} puts/s",
            r.case.case(),
            r.puts_per_s.show(0)
        );
        if let Some(b) = base {
            let _ = write!(line, "  / no watcher {:.2}", r.puts_per_s.median() / b);
        }
        let _ = write!(
            line,
            "  CPU: apply thread {} process {}",
            r.apply_cpu.show(2),
            r.cores.show(2)
        );
        if !r.drain_ms.0.is_empty() {
            let _ = write!(line, "  drain {} ms", r.drain_ms.show(1));
        }
        if !r.catch_up_per_s.0.is_empty() {
            let _ = write!(line, "  catch-up {} events/s", r.catch_up_per_s.show(0));
        }
        println!("{line}");
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// 6. lease revoke

/// Keys attached to the revoked lease (and deleted by the other cases).
const REVOKE_KEYS: usize = 10_000;

/// The one entry that deletes the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoke {
    /// `LeaseRevoke` of the lease every key is attached to.
    Lease,
    /// One `DeleteRange` over every key; the keys carry no lease.
    DeleteRangePlain,
    /// One `DeleteRange` over every key, all attached to a lease (which stays, empty).
    DeleteRangeLeased,
    /// One single-key `DeleteRange` per key (a revision each); no lease.
    KeyDeletes,
}

impl Revoke {
    const ALL: [Revoke; 4] = [
        Revoke::Lease,
        Revoke::DeleteRangePlain,
        Revoke::DeleteRangeLeased,
        Revoke::KeyDeletes,
    ];

    fn case(self) -> &'static str {
        match self {
            Revoke::Lease => "mvcc/revoke/lease",
            Revoke::DeleteRangePlain => "mvcc/revoke/delete-range-plain",
            Revoke::DeleteRangeLeased => "mvcc/revoke/delete-range-leased",
            Revoke::KeyDeletes => "mvcc/revoke/key-deletes",
        }
    }

    fn what(self) -> String {
        match self {
            Revoke::Lease => format!("`LeaseRevoke` of a lease with {REVOKE_KEYS} keys"),
            Revoke::DeleteRangePlain => {
                format!("one `DeleteRange` over the {REVOKE_KEYS} keys (no lease)")
            }
            Revoke::DeleteRangeLeased => {
                format!("one `DeleteRange` over the {REVOKE_KEYS} keys, attached to a lease")
            }
            Revoke::KeyDeletes => {
                format!("{REVOKE_KEYS} single-key `DeleteRange`s in one entry (no lease)")
            }
        }
    }

    fn leased(self) -> bool {
        matches!(self, Revoke::Lease | Revoke::DeleteRangeLeased)
    }
}

/// One measurement: a fresh store with the keys (in entries of 1,000 puts, attached to a lease
/// when the case wants one), then the one deleting entry, timed. Returns its seconds.
fn revoke_once(case: Revoke, kvs: &[(Bytes, Bytes)]) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Mvcc::open(mvcc_config(dir.path())).expect("open mvcc");
    let mut index = 1;
    let lease = if case.leased() {
        let grant = store
            .apply(index, &[Op::LeaseGrant(LeaseGrant { id: 0, ttl: 3600 })])
            .expect("apply grant");
        match &grant.results[0] {
            Ok(OpResponse::LeaseGrant(g)) => g.id,
            other => panic!("lease grant: {other:?}"),
        }
    } else {
        0
    };
    let puts: Vec<Op> = kvs
        .iter()
        .map(|(k, v)| {
            Op::Put(Put {
                lease,
                ..Put::new(k.clone(), v.clone())
            })
        })
        .collect();
    apply_all(&mut store, &mut index, &puts, LOAD_ENTRY);
    // Hex keys: `[0, g)` holds every one of them and nothing else.
    let ops: Vec<Op> = match case {
        Revoke::Lease => vec![Op::LeaseRevoke(LeaseRevoke { id: lease })],
        Revoke::DeleteRangePlain | Revoke::DeleteRangeLeased => {
            vec![Op::DeleteRange(DeleteRange::range("0", "g"))]
        }
        Revoke::KeyDeletes => kvs
            .iter()
            .map(|(k, _)| Op::DeleteRange(DeleteRange::key(k.clone())))
            .collect(),
    };
    let before = store.current_revision();
    let t = Instant::now();
    let applied = store.apply(index + 1, &ops).expect("apply the deletes");
    let secs = t.elapsed().as_secs_f64();
    for r in &applied.results {
        match r {
            Ok(OpResponse::DeleteRange(d)) if case != Revoke::KeyDeletes => {
                assert_eq!(d.deleted, kvs.len() as i64);
            }
            Ok(_) => {}
            Err(e) => panic!("{}: {e}", case.case()),
        }
    }
    let revisions = if case == Revoke::KeyDeletes {
        kvs.len() as i64
    } else {
        1
    };
    assert_eq!(store.current_revision(), before + revisions);
    let left = store
        .range(&Range {
            key: Bytes::from_static(b"0"),
            range_end: Bytes::from_static(b"g"),
            count_only: true,
            ..Range::default()
        })
        .expect("range");
    assert_eq!(left.count, 0, "{}: keys left", case.case());
    secs
}

#[derive(Debug)]
struct RevokeRow {
    case: Revoke,
    /// Seconds of the deleting entry.
    secs: Samples,
}

impl RevokeRow {
    fn ms(&self) -> Samples {
        Samples(self.secs.0.iter().map(|s| s * 1e3).collect())
    }

    fn keys_per_s(&self) -> Samples {
        Samples(self.secs.0.iter().map(|s| REVOKE_KEYS as f64 / s).collect())
    }
}

fn revoke_bench(p: &Params) -> Vec<RevokeRow> {
    let mut rows: Vec<RevokeRow> = Revoke::ALL
        .into_iter()
        .filter(|c| wants(c.case()))
        .map(|case| RevokeRow {
            case,
            secs: Samples::default(),
        })
        .collect();
    if rows.is_empty() {
        return rows;
    }
    let mut rng = Rng(0xd1b5_4a32_d192_ed03);
    let kvs: Vec<(Bytes, Bytes)> = (0..REVOKE_KEYS as u64)
        .map(|i| (Bytes::from(key(i)), Bytes::from(rng.value(false))))
        .collect();
    let started = Instant::now();
    for rep in 0..=p.revoke_reps {
        let n = rows.len();
        for k in 0..n {
            let row = &mut rows[(k + rep) % n];
            let secs = revoke_once(row.case, &kvs);
            if rep > 0 {
                row.secs.0.push(secs);
            }
        }
    }
    println!(
        "mvcc/revoke: {} repetitions done ({:.0} s, load average {})",
        p.revoke_reps,
        started.elapsed().as_secs_f64(),
        load_average()
    );
    let base = rows
        .iter()
        .find(|r| r.case == Revoke::Lease)
        .map(|r| r.secs.median());
    for r in &rows {
        let mut line = format!(
            "{:<32} {:>14} ms  {:>16} keys/s",
            r.case.case(),
            r.ms().show(2),
            r.keys_per_s().show(0)
        );
        if let Some(b) = base {
            let _ = write!(line, "  time / lease revoke {:.2}", r.secs.median() / b);
        }
        println!("{line}");
    }
    rows
}

// ---------------------------------------------------------------------------------------------

fn main() {
    if let Some(path) = std::env::var_os(REOPEN_CHILD) {
        reopen_child(Path::new(&path));
        return;
    }
    let quick = common::quick();
    let p = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let apply = apply_bench(&p);
    let reads = reads_bench(&p);
    let reopen = reopen_bench(&p);
    let watch = watch_bench(&p);
    let revoke = revoke_bench(&p);
    let mut md = report(&p, quick, &apply, &reads, reopen.as_ref());
    md.push_str(&watch_report(&p, &watch));
    md.push_str(&revoke_report(&p, &revoke));
    print!("\n{md}");
    println!("mvcc: {:.1} s in all", started.elapsed().as_secs_f64());
    let mut rows = Vec::new();
    let mut line = |case: &str, side: MvccSide, metric: MvccMetric, s: &Samples| {
        rows.push(MvccRow {
            case: case.to_owned(),
            side,
            metric,
            median: s.median(),
            rsd_pct: s.rsd(),
            samples: s.0.len(),
        });
    };
    for r in &apply {
        for side in Side::ALL {
            line(&r.case(), side.row_side(), MvccMetric::OpsPerS, r.get(side));
        }
    }
    for r in &reads {
        let metric = match r.unit {
            "ns" => MvccMetric::NsPerOp,
            "µs" => MvccMetric::UsPerOp,
            other => unreachable!("reads are timed in ns or µs, not {other}"),
        };
        line(r.case, MvccSide::Mvcc, metric, &r.mvcc);
        let reference = if r.reference.contains("engine") {
            MvccSide::RawEngine
        } else {
            MvccSide::RawRocksdb
        };
        line(r.case, reference, metric, &r.raw);
    }
    if let Some(r) = &reopen {
        for (name, metric) in [
            ("open_s", MvccMetric::OpenS),
            ("engine_open_s", MvccMetric::EngineOpenS),
            ("scan_s", MvccMetric::ScanS),
            ("records", MvccMetric::Records),
            ("keys", MvccMetric::Keys),
            ("block_cache_bytes", MvccMetric::BlockCacheBytes),
        ] {
            line("mvcc/reopen", MvccSide::Mvcc, metric, &r.samples(name));
        }
        line(
            "mvcc/reopen",
            MvccSide::Mvcc,
            MvccMetric::RssGrowthMib,
            &r.rss_growth_mib(),
        );
        line(
            "mvcc/reopen",
            MvccSide::Mvcc,
            MvccMetric::BuildOpsPerS,
            &Samples(vec![r.build_ops_per_s]),
        );
    }
    for r in &watch {
        let case = r.case.case();
        line(&case, MvccSide::Mvcc, MvccMetric::OpsPerS, &r.puts_per_s);
        line(&case, MvccSide::Mvcc, MvccMetric::CpuCores, &r.cores);
        line(
            &case,
            MvccSide::Mvcc,
            MvccMetric::ApplyThreadCpu,
            &r.apply_cpu,
        );
        if !r.drain_ms.0.is_empty() {
            line(&case, MvccSide::Mvcc, MvccMetric::DrainMs, &r.drain_ms);
        }
        if !r.catch_up_per_s.0.is_empty() {
            line(
                &case,
                MvccSide::Mvcc,
                MvccMetric::CatchUpEventsPerS,
                &r.catch_up_per_s,
            );
        }
    }
    for r in &revoke {
        line(r.case.case(), MvccSide::Mvcc, MvccMetric::Ms, &r.ms());
        line(
            r.case.case(),
            MvccSide::Mvcc,
            MvccMetric::KeysPerS,
            &r.keys_per_s(),
        );
    }
    if !(apply.is_empty()
        && reads.is_empty()
        && reopen.is_none()
        && watch.is_empty()
        && revoke.is_empty())
    {
        common::write_rows(&rows);
        common::write_report("mvcc.md", &md);
    }
}

fn command(quick: bool) -> String {
    let mut c = String::from("cargo xtask bench");
    if quick {
        c.push_str(" --quick");
    }
    if let Some(f) = common::filter() {
        c.push(' ');
        c.push_str(&f);
    }
    c
}

fn report(
    p: &Params,
    quick: bool,
    apply: &[ApplyRow],
    reads: &[ReadRow],
    reopen: Option<&Reopen>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## MVCC store (batchkv-mvcc){}\n",
        if quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Command: `{}`. 16-byte keys in random order, 100-byte incompressible values; every side \
         uses the engine's default profile with statistics off (raw rust-rocksdb opened with \
         the same options). Medians of {} repetitions after a warm-up; ± is the RSD.\n",
        command(quick),
        p.reps
    );
    if !apply.is_empty() {
        let _ = writeln!(
            md,
            "### Apply, puts/s ({} puts per measurement, WAL on, no sync)\n",
            p.apply_puts
        );
        let _ = writeln!(
            md,
            "Each measurement writes into a fresh database; `update` first loads {} keys (not \
             timed) and then overwrites them round robin. The raw sides write the same keys and \
             values, one batch per entry; mvcc writes each put as a revision-keyed record plus \
             the entry's two meta keys.\n",
            p.update_keys
        );
        let _ = writeln!(
            md,
            "| puts per entry | case | raw rust-rocksdb | raw engine | mvcc | mvcc / engine (aim >= 0.5) | mvcc / rocksdb |\n|---:|---|---:|---:|---:|---:|---:|"
        );
        for r in apply {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                r.entry,
                r.kind,
                r.get(Side::Rocks).show(0),
                r.get(Side::Engine).show(0),
                r.get(Side::Mvcc).show(0),
                r.ratio(Side::Mvcc, Side::Engine),
                r.ratio(Side::Mvcc, Side::Rocks),
            );
        }
        let geo = |den: Side| {
            (apply
                .iter()
                .map(|r| r.ratio(Side::Mvcc, den).ln())
                .sum::<f64>()
                / apply.len() as f64)
                .exp()
        };
        let _ = writeln!(
            md,
            "\nGeometric mean over {} points: mvcc / raw engine **{:.3}**, mvcc / raw rust-rocksdb **{:.3}**.\n",
            apply.len(),
            geo(Side::Engine),
            geo(Side::Rocks)
        );
    }
    if !reads.is_empty() {
        let _ = writeln!(
            md,
            "### Reads ({} keys, {} of them with 10 versions; flushed and compacted)\n",
            p.read_keys, p.history_keys
        );
        let _ = writeln!(
            md,
            "| read | mvcc | reference | reference time | mvcc / reference (throughput) |\n|---|---:|---|---:|---:|"
        );
        for r in reads {
            let _ = writeln!(
                md,
                "| {} | {} {}/op | {} | {} {}/op | {:.2} |",
                r.what,
                r.mvcc.show(1),
                r.unit,
                r.reference,
                r.raw.show(1),
                r.unit,
                r.ratio()
            );
        }
        let _ = writeln!(
            md,
            "\nPoint reads: {} random keys per pass; range reads: {} random 1,000-key spans per pass.\n",
            p.probes, p.scans
        );
    }
    if let Some(r) = reopen {
        let _ = writeln!(
            md,
            "### Reopen ({} keys and their history, {} child-process runs)\n",
            r.keys,
            r.runs.len()
        );
        let _ = writeln!(
            md,
            "The store: {} keys put in entries of 1,000, then {} of them overwritten and {} \
             others deleted ({:.0} ops/s applying), flushed, closed; each run opens it in a \
             fresh process (the OS page cache is warm).\n",
            r.keys, r.overwrites, r.deletes, r.build_ops_per_s
        );
        let open = r.samples("open_s");
        let _ = writeln!(md, "| figure | value |\n|---|---:|");
        let rows = [
            (
                "`Mvcc::open` (engine open + index rebuild)",
                format!("{} s", open.show(3)),
            ),
            (
                "keys indexed / s",
                format!("{:.0}", r.first("keys") / open.median()),
            ),
            (
                "records scanned / s",
                format!("{:.0}", r.first("records") / open.median()),
            ),
            (
                "engine open alone (measured apart)",
                format!("{} s", r.samples("engine_open_s").show(3)),
            ),
            (
                "plain scan of `kv`, no decode, no index (measured apart)",
                format!("{} s", r.samples("scan_s").show(3)),
            ),
            (
                "keys indexed, records in `kv`",
                format!("{:.0}, {:.0}", r.first("keys"), r.first("records")),
            ),
            (
                "RSS growth of the open",
                format!("{} MiB", r.rss_growth_mib().show(0)),
            ),
            (
                "of which block cache",
                format!(
                    "{:.0} MiB",
                    r.first("block_cache_bytes") / f64::from(1 << 20)
                ),
            ),
        ];
        for (what, value) in rows {
            let _ = writeln!(md, "| {what} | {value} |");
        }
    }
    md
}

fn watch_report(p: &Params, rows: &[WatchRow]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "### Apply with watchers, puts/s ({} puts in entries of {WATCH_ENTRY}, WAL on, no sync)\n",
        p.apply_puts
    );
    let _ = writeln!(
        md,
        "Each measurement: a fresh store, the watchers registered, then the timed puts (new \
         keys). Idle watchers watch keys or ranges the puts never touch and nobody reads them; \
         each active watcher is read by its own thread (`recv_timeout`, {} ms); the stuck \
         watcher (buffer {}) is read only after the timed puts, from its first response to the \
         last. Drain: from the last `apply`'s return until the active watchers had every event \
         (up to one poll late). CPU: CPU time of the applying thread, and of the whole process \
         (apply, consumers, RocksDB's threads), over the timed puts' wall time (in cores; the \
         machine has 2). Medians of {} repetitions after a warm-up, the cases in a \
         rotating order.\n",
        CONSUMER_POLL.as_millis(),
        batchkv_mvcc::DEFAULT_WATCH_BUFFER,
        p.reps
    );
    let base = rows
        .iter()
        .find(|r| r.case == Watchers::None)
        .map(|r| r.puts_per_s.median());
    let _ = writeln!(
        md,
        "| watchers | puts/s | / no watcher | CPU: apply thread | CPU: process | events received | drain after the last apply |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let ratio = base.map_or_else(
            || "-".to_owned(),
            |b| format!("{:.2}", r.puts_per_s.median() / b),
        );
        let events = match r.case {
            Watchers::Stuck => format!("{} (afterwards)", p.apply_puts),
            c if c.active() => c.expected_events(p.apply_puts).to_string(),
            _ => "0".to_owned(),
        };
        let drain = if r.drain_ms.0.is_empty() {
            "-".to_owned()
        } else {
            format!("{} ms", r.drain_ms.show(1))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {ratio} | {} | {} | {events} | {drain} |",
            r.case.what(),
            r.puts_per_s.show(0),
            r.apply_cpu.show(2),
            r.cores.show(2)
        );
    }
    if let Some(r) = rows.iter().find(|r| r.case == Watchers::Stuck) {
        let _ = writeln!(
            md,
            "\nThe stuck watcher, read afterwards: {} events/s while it catches up (the first {} \
             revisions from its channel, the rest from storage).",
            r.catch_up_per_s.show(0),
            batchkv_mvcc::DEFAULT_WATCH_BUFFER
        );
    }
    md.push('\n');
    md
}

fn revoke_report(p: &Params, rows: &[RevokeRow]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "### Deleting {REVOKE_KEYS} keys in one entry (one WriteBatch)\n"
    );
    let _ = writeln!(
        md,
        "Each measurement: a fresh store, the {REVOKE_KEYS} keys put in entries of {LOAD_ENTRY} \
         (attached to one lease where it says so), then the one entry that deletes them, timed. \
         Medians of {} repetitions after a warm-up, the cases in a rotating order.\n",
        p.revoke_reps
    );
    let base = rows
        .iter()
        .find(|r| r.case == Revoke::Lease)
        .map(|r| r.secs.median());
    let _ = writeln!(
        md,
        "| entry | ms | keys/s | time / lease revoke |\n|---|---:|---:|---:|"
    );
    for r in rows {
        let ratio = base.map_or_else(|| "-".to_owned(), |b| format!("{:.2}", r.secs.median() / b));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {ratio} |",
            r.case.what(),
            r.ms().show(2),
            r.keys_per_s().show(0)
        );
    }
    md.push('\n');
    md
}

//! The mixed workloads metadata stores serve, through the `Store` (the facade crate `batchkv`)
//! beside raw rust-rocksdb doing the same logical work in the same run (16-byte keys, 100-byte
//! incompressible values, the keys loaded first into both, then flushed):
//!
//! - `workloads/ycsb-{a,b,c,d,e,f}/{uniform,zipfian}/{1,16}`: YCSB's core workloads. A: 50% reads,
//!   50% updates; B: 95/5; C: reads only; D: 95% reads of recent inserts (the newest keys,
//!   Zipfian over recency or uniform over the newest 1%), 5% inserts; E: 95% short ranges of 1 to
//!   100 keys (a bounded `Range` with a limit; raw: one bounded iterator pass borrowing each
//!   pair), 5% inserts; F: 50% reads, 50% read-modify-writes (`Store::transaction`: read, then
//!   a compare-and-put; raw: a get, then a put, no isolation);
//! - `workloads/mix-80-20/...` and `workloads/mix-50-50/...`: the reference system's read/write
//!   mixes, their writes puts of new keys (inserts, so they differ from A and B's updates);
//! - `workloads/read-{seq,random}/{warm,cold}/{1,16}`: point reads in key order (each thread from
//!   its own place) and at random, with the block cache warm (the engine's 256 MiB) and cold
//!   (both reopened with a 1 MiB block cache: nearly every read misses it; the OS page cache
//!   stays warm).
//!
//! Key choice: uniform, or Zipfian with θ 0.99 (`rand_distr::Zipf`), scrambled over the key space
//! as YCSB does, so the hot keys are not neighbours. Closed-loop client threads, 1 and 16; the
//! Store writes with `Durability::Wal` and raw rust-rocksdb with the WAL on and no sync, both with
//! the engine's options. Per case: ops/s, p50/p99 latency of one op, and the process's CPU time
//! per op (every thread, RocksDB's too) over the measured window.
//!
//! A custom harness. `cargo xtask bench workloads` runs it (`BATCHKV_BENCH_QUICK=1`, i.e.
//! `--quick`: 20,000 keys, Zipfian only, 0.1 s per case). A filter selects cases by substring
//! (`workloads/ycsb-e`, `workloads/read`, ...). Results go to stdout and, with
//! `BATCHKV_REPORT_DIR`, to `workloads.csv` and the section `workloads.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use batchkv::{AutoFlushConfig, Durability, Store, StoreError};
use batchkv_benches::fmt::rate;
use batchkv_benches::rows::WorkloadRow;
use batchkv_codec::Range;
use batchkv_engine::Tuning;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rocksdb::{Cache, DB, ReadOptions, WriteOptions};

mod common;

use common::load::{Outcome, Window, closed_loop};
use common::{Rng, key16};

/// Client threads of every case.
const THREADS: [usize; 2] = [1, 16];
/// YCSB's Zipfian constant.
const THETA: f64 = 0.99;
/// Longest YCSB E scan.
const MAX_SCAN: u64 = 100;
/// Distinct values the writers cycle through (cloning a `Bytes` is a reference count).
const VALUES: usize = 1_024;
/// Attempts of a YCSB F read-modify-write before it counts as not done (hot Zipfian keys at 16
/// threads conflict often).
const RMW_ATTEMPTS: usize = 1_000;
/// The cold cases' block cache.
const COLD_CACHE: usize = 1 << 20;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Keys loaded before the cases.
    keys: u64,
    warmup: Duration,
    measure: Duration,
    /// The key choices the YCSB and mix cases run with.
    dists: &'static [Dist],
}

const FULL: Params = Params {
    keys: 1_000_000,
    warmup: Duration::from_millis(300),
    measure: Duration::from_millis(1_500),
    dists: &[Dist::Uniform, Dist::Zipfian],
};

const QUICK: Params = Params {
    keys: 20_000,
    warmup: Duration::from_millis(20),
    measure: Duration::from_millis(100),
    dists: &[Dist::Zipfian],
};

/// Whether the command line's filter selects `case`.
fn wants(case: &str) -> bool {
    common::filter().is_none_or(|f| case.contains(f.as_str()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dist {
    Uniform,
    Zipfian,
}

impl Dist {
    fn label(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipfian => "zipfian",
        }
    }
}

/// Draws item numbers in `0..n`.
#[derive(Debug, Clone)]
struct Chooser {
    n: u64,
    zipf: Option<Zipf<f64>>,
}

impl Chooser {
    fn new(dist: Dist, n: u64) -> Chooser {
        let zipf = (dist == Dist::Zipfian).then(|| Zipf::new(n as f64, THETA).expect("zipf"));
        Chooser { n, zipf }
    }

    /// The rank drawn: 0 is the most popular.
    fn rank(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            None => rng.random_range(0..self.n),
            Some(z) => (z.sample(rng) as u64).clamp(1, self.n) - 1,
        }
    }

    /// An item, the popular ones scattered over the key space (YCSB's scrambled Zipfian).
    fn item(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            None => self.rank(rng),
            Some(_) => batchkv_testkit::mix64(self.rank(rng)) % self.n,
        }
    }
}

/// What one op does, in terms both sides carry out.
#[derive(Debug, Clone, Copy)]
enum Step {
    Read(u64),
    /// The key `sorted[i]` (reads in key order).
    ReadSorted(usize),
    Update(u64),
    Insert,
    /// Keys `[sorted[start], sorted[start + len])`, at most `len` of them.
    Scan(usize, usize),
    ReadModifyWrite(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    YcsbA,
    YcsbB,
    YcsbC,
    YcsbD,
    YcsbE,
    YcsbF,
    Mix8020,
    Mix5050,
}

impl Workload {
    const ALL: [Workload; 8] = [
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbC,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
        Workload::Mix8020,
        Workload::Mix5050,
    ];

    fn label(self) -> &'static str {
        match self {
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
            Workload::Mix8020 => "mix-80-20",
            Workload::Mix5050 => "mix-50-50",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Workload::YcsbA => "50% reads, 50% updates",
            Workload::YcsbB => "95% reads, 5% updates",
            Workload::YcsbC => "reads only",
            Workload::YcsbD => "95% reads of recent inserts, 5% inserts",
            Workload::YcsbE => "95% ranges of 1-100 keys, 5% inserts",
            Workload::YcsbF => "50% reads, 50% read-modify-writes (txn)",
            Workload::Mix8020 => "80% reads, 20% inserts",
            Workload::Mix5050 => "50% reads, 50% inserts",
        }
    }
}

/// Picks each op of a workload.
struct Picker<'a> {
    workload: Workload,
    keys: &'a Chooser,
    /// Offsets back from the newest key (YCSB D).
    recent: &'a Chooser,
    loaded: u64,
    next: &'a AtomicU64,
}

impl Picker<'_> {
    fn pick(&self, rng: &mut SmallRng) -> Step {
        let pct = rng.random_range(0..100u32);
        let read = |rng: &mut SmallRng| Step::Read(self.keys.item(rng));
        match self.workload {
            Workload::YcsbA if pct < 50 => read(rng),
            Workload::YcsbA => Step::Update(self.keys.item(rng)),
            Workload::YcsbB if pct < 95 => read(rng),
            Workload::YcsbB => Step::Update(self.keys.item(rng)),
            Workload::YcsbC => read(rng),
            Workload::YcsbD if pct < 95 => {
                let newest = self.next.load(Ordering::Relaxed) - 1;
                Step::Read(newest.saturating_sub(self.recent.rank(rng)))
            }
            Workload::YcsbE if pct < 95 => {
                let len = rng.random_range(1..=MAX_SCAN) as usize;
                let start = self.keys.item(rng) as usize;
                Step::Scan(start.min(self.loaded as usize - 1 - len), len)
            }
            Workload::YcsbD | Workload::YcsbE => Step::Insert,
            Workload::YcsbF if pct < 50 => read(rng),
            Workload::YcsbF => Step::ReadModifyWrite(self.keys.item(rng)),
            Workload::Mix8020 if pct < 80 => read(rng),
            Workload::Mix5050 if pct < 50 => read(rng),
            Workload::Mix8020 | Workload::Mix5050 => Step::Insert,
        }
    }
}

/// The two sides, loaded with the same keys.
struct Sides {
    dir: tempfile::TempDir,
    store: Option<Store>,
    raw: Option<(DB, Cache)>,
    /// The loaded keys in key order (ranges are drawn from them).
    sorted: Vec<[u8; 16]>,
    /// The next item number each side inserts.
    store_next: AtomicU64,
    raw_next: AtomicU64,
    values: Vec<Bytes>,
}

fn wal() -> Durability {
    Durability::Wal {
        flush: AutoFlushConfig::default(),
    }
}

fn tuning(cache: usize) -> Tuning {
    Tuning {
        block_cache_bytes: cache,
        ..Tuning::default()
    }
}

fn open_store(path: &Path, cache: usize) -> Store {
    Store::builder(path)
        .durability(wal())
        .tuning(tuning(cache))
        .open()
        .expect("open store")
}

/// Raw rust-rocksdb with exactly the options the store's engine builds.
fn open_raw(path: &Path, cache: usize) -> (DB, Cache) {
    let (mut o, c) = batchkv_engine::rocksdb_options(&tuning(cache));
    o.create_if_missing(true);
    (DB::open(&o, path).expect("open raw rocksdb"), c)
}

fn raw_write() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    wo.disable_wal(false);
    wo
}

impl Sides {
    fn load(p: &Params) -> Sides {
        let t = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(0x5eed_f10a_d000);
        let values: Vec<Bytes> = (0..VALUES).map(|_| Bytes::from(rng.value(false))).collect();
        let store = open_store(
            &dir.path().join("store"),
            Tuning::default().block_cache_bytes,
        );
        let raw = open_raw(&dir.path().join("raw"), Tuning::default().block_cache_bytes);
        let puts = (0..p.keys).map(|i| {
            (
                Bytes::copy_from_slice(&key16(i)),
                values[i as usize % VALUES].clone(),
            )
        });
        store.bulk_load(puts, 1_000).expect("bulk load");
        let wo = raw_write();
        for start in (0..p.keys).step_by(1_000) {
            let mut b = rocksdb::WriteBatch::default();
            for i in start..(start + 1_000).min(p.keys) {
                b.put(key16(i), &values[i as usize % VALUES]);
            }
            raw.0.write_opt(b, &wo).expect("raw load");
        }
        store.flush().expect("flush store");
        raw.0.flush().expect("flush raw");
        let mut sorted: Vec<[u8; 16]> = (0..p.keys).map(key16).collect();
        sorted.sort_unstable();
        println!(
            "workloads: {} keys loaded into the Store and raw rust-rocksdb, flushed ({:.1} s)",
            p.keys,
            t.elapsed().as_secs_f64()
        );
        Sides {
            dir,
            store: Some(store),
            raw: Some(raw),
            sorted,
            store_next: AtomicU64::new(p.keys),
            raw_next: AtomicU64::new(p.keys),
            values,
        }
    }

    /// Closes both and opens them again with a block cache of `cache` bytes.
    fn reopen(&mut self, cache: usize) {
        if let Some(s) = self.store.take() {
            s.close().expect("close store");
        }
        drop(self.raw.take());
        self.store = Some(open_store(&self.dir.path().join("store"), cache));
        self.raw = Some(open_raw(&self.dir.path().join("raw"), cache));
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    fn raw(&self) -> &DB {
        &self.raw.as_ref().expect("raw open").0
    }

    fn value(&self, seq: u64) -> Bytes {
        self.values[seq as usize % VALUES].clone()
    }

    /// One op on the store; 0 when it did not complete (a read-modify-write that kept
    /// conflicting with others on a hot key), else 1.
    fn store_op(&self, step: Step, seq: u64) -> u64 {
        let s = self.store();
        match step {
            Step::Read(i) => {
                let kv = s.get(key16(i)).expect("get");
                debug_assert!(kv.is_some());
                black_box(kv);
            }
            Step::ReadSorted(at) => {
                black_box(s.get(self.sorted[at]).expect("get"));
            }
            Step::Update(i) => {
                s.put(Bytes::copy_from_slice(&key16(i)), self.value(seq))
                    .expect("put");
            }
            Step::Insert => {
                let i = self.store_next.fetch_add(1, Ordering::Relaxed);
                s.put(Bytes::copy_from_slice(&key16(i)), self.value(seq))
                    .expect("insert");
            }
            Step::Scan(start, len) => {
                let r = Range {
                    key: Bytes::copy_from_slice(&self.sorted[start]),
                    range_end: Bytes::copy_from_slice(&self.sorted[start + len]),
                    limit: len as i64,
                    ..Range::default()
                };
                black_box(s.range(&r).expect("range"));
            }
            Step::ReadModifyWrite(i) => {
                let k = Bytes::copy_from_slice(&key16(i));
                let done = s.transaction_with_attempts(RMW_ATTEMPTS, |tx| {
                    let old = tx.get(k.clone())?;
                    black_box(old);
                    tx.put(k.clone(), self.value(seq));
                    Ok(())
                });
                return match done {
                    Ok(()) => 1,
                    Err(StoreError::Conflict { .. }) => 0,
                    Err(e) => panic!("read-modify-write: {e}"),
                };
            }
        }
        1
    }

    /// The same op on raw rust-rocksdb (always completes: 1).
    fn raw_op(&self, step: Step, seq: u64, wo: &WriteOptions) -> u64 {
        let db = self.raw();
        match step {
            Step::Read(i) => {
                let v = db.get(key16(i)).expect("raw get");
                debug_assert!(v.is_some());
                black_box(v);
            }
            Step::ReadSorted(at) => {
                black_box(db.get(self.sorted[at]).expect("raw get"));
            }
            Step::Update(i) => db.put_opt(key16(i), self.value(seq), wo).expect("raw put"),
            Step::Insert => {
                let i = self.raw_next.fetch_add(1, Ordering::Relaxed);
                db.put_opt(key16(i), self.value(seq), wo)
                    .expect("raw insert");
            }
            Step::Scan(start, len) => {
                let mut ro = ReadOptions::default();
                ro.set_iterate_upper_bound(self.sorted[start + len].to_vec());
                let mut it = db.raw_iterator_opt(ro);
                it.seek(self.sorted[start]);
                let mut n = 0;
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    black_box((k, v));
                    n += 1;
                    if n == len {
                        break;
                    }
                    it.next();
                }
                it.status().expect("raw scan");
            }
            Step::ReadModifyWrite(i) => {
                let k = key16(i);
                black_box(db.get(k).expect("raw get"));
                db.put_opt(k, self.value(seq), wo).expect("raw put");
            }
        }
        1
    }
}

/// One measured case of one side.
fn measure(
    p: &Params,
    threads: usize,
    op: impl Fn(usize, u64, &mut SmallRng) -> u64 + Sync,
) -> Window {
    closed_loop(
        threads,
        p.warmup,
        p.measure,
        |t, seq, rng: &mut Rng| {
            // A generator per op seeded from the harness's: cheap, and the same stream on both
            // sides for the same thread and sequence.
            let mut r = SmallRng::seed_from_u64(rng.next());
            Outcome {
                done: op(t, seq, &mut r),
                attempts: 0,
            }
        },
        || {},
        || {},
    )
}

fn row(
    case: &str,
    workload: &str,
    dist: &str,
    threads: usize,
    side: &str,
    w: &Window,
) -> WorkloadRow {
    let (user, sys) = w.cpu_us();
    WorkloadRow {
        case: case.to_owned(),
        workload: workload.to_owned(),
        dist: dist.to_owned(),
        threads,
        side: side.to_owned(),
        ops: w.done,
        ops_per_s: w.rate(),
        p50_us: w.pct(0.50) / 1e3,
        p99_us: w.pct(0.99) / 1e3,
        cpu_us_per_op: user + sys,
        others_cores: w.others(),
    }
}

/// Runs `case` on both sides (store first, then raw), adding their rows.
fn both(
    rows: &mut Vec<WorkloadRow>,
    (case, workload, dist, threads): (&str, &str, &str, usize),
    store: impl FnOnce() -> Window,
    raw: impl FnOnce() -> Window,
) {
    let (s, r) = (store(), raw());
    println!(
        "{case:<34} store {:>9} ops/s p50 {:>7.1} p99 {:>8.1} µs cpu {:>6.1} µs/op | raw {:>9} ops/s p50 {:>7.1} p99 {:>8.1} µs cpu {:>6.1} µs/op | store/raw {:.2}",
        rate(s.rate()),
        s.pct(0.5) / 1e3,
        s.pct(0.99) / 1e3,
        s.cpu_us().0 + s.cpu_us().1,
        rate(r.rate()),
        r.pct(0.5) / 1e3,
        r.pct(0.99) / 1e3,
        r.cpu_us().0 + r.cpu_us().1,
        s.rate() / r.rate(),
    );
    rows.push(row(case, workload, dist, threads, "store", &s));
    rows.push(row(case, workload, dist, threads, "raw", &r));
}

fn ycsb_cases(p: &Params, sides: &Sides, rows: &mut Vec<WorkloadRow>) {
    let wo = raw_write();
    let recent_window = (p.keys / 100).max(1_000).min(p.keys);
    for &threads in &THREADS {
        for &dist in p.dists {
            let keys = Chooser::new(dist, p.keys);
            let recent = Chooser::new(dist, recent_window);
            for w in Workload::ALL {
                let case = format!("workloads/{}/{}/{threads}", w.label(), dist.label());
                if !wants(&case) {
                    continue;
                }
                let picker = |next| Picker {
                    workload: w,
                    keys: &keys,
                    recent: &recent,
                    loaded: p.keys,
                    next,
                };
                let (sp, rp) = (picker(&sides.store_next), picker(&sides.raw_next));
                both(
                    rows,
                    (&case, w.label(), dist.label(), threads),
                    || measure(p, threads, |_, seq, rng| sides.store_op(sp.pick(rng), seq)),
                    || {
                        measure(p, threads, |_, seq, rng| {
                            sides.raw_op(rp.pick(rng), seq, &wo)
                        })
                    },
                );
            }
        }
    }
}

fn read_cases(p: &Params, sides: &Sides, cache: &str, rows: &mut Vec<WorkloadRow>) {
    let wo = raw_write();
    let uniform = Chooser::new(Dist::Uniform, p.keys);
    for &threads in &THREADS {
        for order in ["seq", "random"] {
            let case = format!("workloads/read-{order}/{cache}/{threads}");
            if !wants(&case) {
                continue;
            }
            // In key order, each thread from its own place; or uniformly at random.
            let n = sides.sorted.len();
            let step = |t: usize, seq: u64, rng: &mut SmallRng| match order {
                "seq" => Step::ReadSorted((t * n / threads + seq as usize) % n),
                _ => Step::Read(uniform.item(rng)),
            };
            both(
                rows,
                (&case, &format!("read-{order}"), cache, threads),
                || {
                    measure(p, threads, |t, seq, rng| {
                        sides.store_op(step(t, seq, rng), seq)
                    })
                },
                || {
                    measure(p, threads, |t, seq, rng| {
                        sides.raw_op(step(t, seq, rng), seq, &wo)
                    })
                },
            );
        }
    }
}

fn main() {
    let quick = common::quick();
    let p = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let any = Workload::ALL
        .iter()
        .any(|w| wants(&format!("workloads/{}/", w.label())))
        || ["seq", "random"]
            .iter()
            .any(|o| wants(&format!("workloads/read-{o}/")));
    if !any {
        println!("workloads: the filter selects no case");
        return;
    }
    let mut sides = Sides::load(&p);
    let mut rows = Vec::new();
    // Reads first, on the data as loaded; then the YCSB cases and mixes, which write; then the
    // cold reads after a reopen with a small block cache.
    read_cases(&p, &sides, "warm", &mut rows);
    ycsb_cases(&p, &sides, &mut rows);
    if ["seq", "random"]
        .iter()
        .any(|o| wants(&format!("workloads/read-{o}/cold")))
    {
        sides.reopen(COLD_CACHE);
        read_cases(&p, &sides, "cold", &mut rows);
    }
    if let Some(s) = sides.store.take() {
        s.close().expect("close store");
    }
    common::write_rows(&rows);
    common::write_report("workloads.md", &report(&p, quick, &rows, started.elapsed()));
    println!(
        "workloads: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn report(p: &Params, quick: bool, rows: &[WorkloadRow], took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Workloads: the Store beside raw rust-rocksdb (`benches/benches/workloads.rs`)\n"
    );
    let _ = writeln!(
        s,
        "{} keys of 16 B with 100 B values loaded into both, then flushed; closed-loop clients, \
         {:.2} s per case after {:.2} s of warm-up{}; Store `Durability::Wal`, raw puts with the \
         WAL and no sync; key choice uniform or Zipfian (θ {THETA}, scrambled). CPU is the \
         process's (every thread) per op; `others` the cores other processes kept busy. {:.0} s \
         in all.\n",
        p.keys,
        p.measure.as_secs_f64(),
        p.warmup.as_secs_f64(),
        if quick { " (quick run)" } else { "" },
        took.as_secs_f64(),
    );
    let _ = writeln!(
        s,
        "| workload | keys | threads | Store ops/s | raw ops/s | Store / raw | p50 µs Store / raw | p99 µs Store / raw | CPU µs/op Store / raw | others (cores) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        let [st, raw] = pair else { continue };
        let what = Workload::ALL
            .iter()
            .find(|w| w.label() == st.workload)
            .map_or_else(
                || format!("{} point reads", st.workload.trim_start_matches("read-")),
                |w| format!("{} ({})", w.label(), w.what()),
            );
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} | **{:.2}** | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} |",
            st.dist,
            st.threads,
            rate(st.ops_per_s),
            rate(raw.ops_per_s),
            st.ops_per_s / raw.ops_per_s,
            st.p50_us,
            raw.p50_us,
            st.p99_us,
            raw.p99_us,
            st.cpu_us_per_op,
            raw.cpu_us_per_op,
            st.others_cores.max(raw.others_cores),
        );
    }
    s
}

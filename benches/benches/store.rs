//! The `Store` (the facade crate `batchkv`) end to end, with raw rust-rocksdb in the same run
//! (16-byte keys in random order, 100-byte incompressible values):
//!
//! 1. `store/put/{sync,wal,none}/{1,16,64,256}`: closed-loop clients, each calling `Store::put`
//!    and waiting for its answer, on a fresh store per case; ops/s, p50 and p99 latency, the
//!    mean group-commit batch and the process's CPU time per put over the measured window;
//! 2. `store/raw/put/{sync,wal,none}/1`, `store/raw/put/sync/64` and
//!    `store/raw/batch1000/{sync,wal,none}`: raw rust-rocksdb (the engine's options) single puts
//!    from one thread (and from 64, where RocksDB groups concurrent writers itself), and writes
//!    of 1,000-op `WriteBatch`es;
//! 3. `store/txn/{low,high}/{wal,sync}/<threads>`: optimistic bank transfers through
//!    `Store::transaction` (read two accounts, write both) over 10,000 accounts (low contention)
//!    and 10 (high); committed TPS, attempts per commit, aborts; and `store/read/{idle,sync/16,
//!    wal/16}`: paced point reads while 16 clients put (how long reads wait behind commits);
//! 4. `store/codec/roundtrip/{64,1000}`, `store/codec/apply/{wal,none}` and
//!    `store/codec/e2e/{wal,none}/64`: the pipeline's codec round trip (`encode_entry` +
//!    `decode_entry`) per op; `Mvcc::apply` of the same 1,000-put entries with and without it;
//!    and (only when the filter names `e2e`) 64 clients through a replica of the write path
//!    (batcher, then `Mvcc::apply`) with and without it: the codec's share of the write path.
//!
//! A custom harness. `cargo xtask bench store` runs it (`BATCHKV_BENCH_QUICK=1`, i.e. `--quick`,
//! makes it small). A filter selects cases by substring (`store/put/sync`, `store/raw`,
//! `store/txn/high`, `store/codec`, ...). Results go to stdout and, with `BATCHKV_REPORT_DIR`,
//! to `store.csv` and the section `store.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv::{AutoFlushConfig, Durability, Store, StoreError};
use batchkv_batcher::{BatchConfig, BatchItem, Batcher, FlushTrigger, Shutdown, rsd_pct};
use batchkv_benches::claims::{ClaimId, claim};
use batchkv_benches::fmt::rate;
use batchkv_benches::rows::{StoreMetric, StoreRow};
use batchkv_codec::{Encoder, Op, Put, decode_entry};
use batchkv_engine::{Tuning, WriteMode};
use batchkv_mvcc::{Mvcc, MvccConfig};
use bytes::{Bytes, BytesMut};
use rocksdb::{Cache, DB, WriteBatch, WriteOptions};

mod common;

use common::load::{Outcome, Window, closed_loop};
use common::{Rng, key, median};

/// Accounts of the two contention levels, and each one's opening balance.
const LOW_ACCOUNTS: usize = 10_000;
const HIGH_ACCOUNTS: usize = 10;
const BALANCE: u64 = 1_000;
/// Ops per raw `WriteBatch`, and per entry in the codec cases.
const BATCH: usize = 1_000;
/// Distinct values the clients cycle through (cloning a `Bytes` is a reference count).
const VALUES: usize = 1_024;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Rounds of the raw and put cases: each round runs every one of them once, so that the
    /// store and its references are measured close together, and ratios are taken per round.
    rounds: usize,
    /// Each case runs `warmup`, then is measured for `measure`.
    warmup: Duration,
    measure: Duration,
    /// Client threads of the put cases.
    put_threads: &'static [usize],
    /// Client threads of the transaction cases.
    txn_threads: &'static [usize],
    /// Measured round trips per codec point (after as many warm-up ones).
    codec_reps: usize,
    /// Puts per `store/codec/apply` side.
    apply_puts: usize,
    /// `store/codec/e2e`: measured pairs (with and without the codec), and each run's warm-up
    /// and window.
    e2e_reps: usize,
    e2e_warmup: Duration,
    e2e_measure: Duration,
}

const FULL: Params = Params {
    rounds: 3,
    warmup: Duration::from_millis(500),
    measure: Duration::from_millis(2_000),
    put_threads: &[1, 16, 64, 256],
    txn_threads: &[16, 64],
    codec_reps: 2_000,
    apply_puts: 200_000,
    e2e_reps: 5,
    e2e_warmup: Duration::from_millis(300),
    e2e_measure: Duration::from_millis(1_500),
};

const QUICK: Params = Params {
    rounds: 1,
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(300),
    put_threads: &[1, 16, 64],
    txn_threads: &[16],
    codec_reps: 200,
    apply_puts: 20_000,
    e2e_reps: 1,
    e2e_warmup: Duration::from_millis(100),
    e2e_measure: Duration::from_millis(300),
};

/// `BATCHKV_BENCH_HANDOFF=1`: the put cases open the store with
/// `StoreBuilder::writer_commits(false)`, so every put is handed to the batcher's worker (the
/// write path before issue 15's lone-writer path), for a before/after comparison.
fn handoff() -> bool {
    std::env::var("BATCHKV_BENCH_HANDOFF").is_ok_and(|v| v == "1")
}

/// Whether the command line's filter selects `case`.
fn wants(case: &str) -> bool {
    common::filter().is_none_or(|f| case.contains(f.as_str()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sync,
    Wal,
    None,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Sync, Mode::Wal, Mode::None];

    fn label(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Wal => "wal",
            Mode::None => "none",
        }
    }

    fn durability(self) -> Durability {
        match self {
            Mode::Sync => Durability::Sync,
            Mode::Wal => Durability::Wal {
                flush: AutoFlushConfig::default(),
            },
            Mode::None => Durability::None,
        }
    }

    fn write_mode(self) -> WriteMode {
        match self {
            Mode::Sync => WriteMode::SYNC,
            Mode::Wal => WriteMode::WAL,
            Mode::None => WriteMode::NO_WAL,
        }
    }

    fn write_options(self) -> WriteOptions {
        let m = self.write_mode();
        let mut wo = WriteOptions::default();
        wo.set_sync(m.sync);
        wo.disable_wal(!m.wal);
        wo
    }
}

/// Raw rust-rocksdb with exactly the options the store's engine builds (its default tuning).
fn raw_open(path: &Path) -> (DB, Cache) {
    let (mut o, cache) = batchkv_engine::rocksdb_options(&Tuning::default());
    o.create_if_missing(true);
    (DB::open(&o, path).expect("open raw rocksdb"), cache)
}

fn values() -> Vec<Bytes> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..VALUES).map(|_| Bytes::from(rng.value(false))).collect()
}

/// A key no other thread or call uses: `thread` in the high bits, the call's sequence below.
fn unique_key(thread: usize, seq: u64) -> Bytes {
    Bytes::from(key(((thread as u64) << 40) | seq))
}

fn fmt_lat(ns: f64) -> String {
    if ns.is_nan() {
        "-".to_owned()
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

/// `1234567.8` → `1,234,568`.
fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// The batcher's and the WAL syncer's counters at one moment, or between two.
#[derive(Debug, Clone, Copy, Default)]
struct Snap {
    /// Items and batches the batcher handed to the pipeline.
    items: u64,
    batches: u64,
    /// Batches flushed after lingering (the linger ran out, or the expected size came).
    lingered: u64,
    /// WAL syncs (`Wal` only).
    wal_syncs: u64,
}

impl Snap {
    fn of(store: &Store) -> Snap {
        let s = store.stats().expect("stats");
        let lingered = FlushTrigger::ALL
            .iter()
            .zip(s.batcher.by_trigger)
            .filter(|(t, _)| matches!(t, FlushTrigger::Timeout | FlushTrigger::Target))
            .map(|(_, n)| n)
            .sum();
        Snap {
            items: s.batcher.items,
            batches: s.batcher.batches,
            lingered,
            wal_syncs: s.flush.map_or(0, |f| f.syncs),
        }
    }

    fn since(self, earlier: Snap) -> Snap {
        Snap {
            items: self.items - earlier.items,
            batches: self.batches - earlier.batches,
            lingered: self.lingered - earlier.lingered,
            wal_syncs: self.wal_syncs - earlier.wal_syncs,
        }
    }

    fn mean_batch(&self) -> f64 {
        self.items as f64 / self.batches as f64
    }

    fn lingered_pct(&self) -> f64 {
        100.0 * self.lingered as f64 / self.batches as f64
    }
}

/// Runs `closed_loop` against `store`, with the batcher's counters over the measured window.
fn store_loop<F>(store: &Store, threads: usize, p: &Params, op: F) -> (Window, Snap)
where
    F: Fn(usize, u64, &mut Rng) -> Outcome + Sync,
{
    let first = std::cell::Cell::new(Snap::default());
    let last = std::cell::Cell::new(Snap::default());
    let w = closed_loop(
        threads,
        p.warmup,
        p.measure,
        op,
        || first.set(Snap::of(store)),
        || last.set(Snap::of(store)),
    );
    (w, last.get().since(first.get()))
}

// ---------------------------------------------------------------------------------------------
// 1. Puts through the store.

#[derive(Debug)]
struct PutRow {
    round: usize,
    mode: Mode,
    threads: usize,
    w: Window,
    b: Snap,
}

impl PutRow {
    fn case(&self) -> String {
        format!("store/put/{}/{}", self.mode.label(), self.threads)
    }
}

fn put_case(p: &Params, round: usize, mode: Mode, threads: usize, vals: &[Bytes]) -> PutRow {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(mode.durability())
        .writer_commits(!handoff())
        .open()
        .expect("open store");
    let (w, b) = store_loop(&store, threads, p, |t, seq, _| {
        store
            .put(unique_key(t, seq), vals[seq as usize % vals.len()].clone())
            .expect("put");
        Outcome {
            done: 1,
            attempts: 0,
        }
    });
    store.close().expect("close");
    PutRow {
        round,
        mode,
        threads,
        w,
        b,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Raw rust-rocksdb.

#[derive(Debug)]
struct RawRow {
    round: usize,
    case: String,
    what: String,
    w: Window,
}

fn raw_put_case(p: &Params, round: usize, mode: Mode, threads: usize, vals: &[Bytes]) -> RawRow {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, _cache) = raw_open(dir.path());
    let wo = mode.write_options();
    let w = closed_loop(
        threads,
        p.warmup,
        p.measure,
        |t, seq, _| {
            db.put_opt(unique_key(t, seq), &vals[seq as usize % vals.len()], &wo)
                .expect("raw put");
            Outcome {
                done: 1,
                attempts: 0,
            }
        },
        || {},
        || {},
    );
    RawRow {
        round,
        case: format!("store/raw/put/{}/{threads}", mode.label()),
        what: format!(
            "single puts ({}), {threads} thread{}",
            mode.label(),
            if threads == 1 { "" } else { "s" }
        ),
        w,
    }
}

fn raw_batch_case(p: &Params, round: usize, mode: Mode, vals: &[Bytes]) -> RawRow {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, _cache) = raw_open(dir.path());
    let wo = mode.write_options();
    let w = closed_loop(
        1,
        p.warmup,
        p.measure,
        |t, seq, _| {
            let mut b = WriteBatch::with_capacity_bytes(BATCH * 130);
            for j in 0..BATCH as u64 {
                let i = seq * BATCH as u64 + j;
                b.put(unique_key(t, i), &vals[i as usize % vals.len()]);
            }
            db.write_opt(b, &wo).expect("raw batch");
            Outcome {
                done: BATCH as u64,
                attempts: 0,
            }
        },
        || {},
        || {},
    );
    RawRow {
        round,
        case: format!("store/raw/batch1000/{}", mode.label()),
        what: format!("{BATCH}-op WriteBatch ({}), 1 thread", mode.label()),
        w,
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Optimistic transactions.

#[derive(Debug)]
struct TxnRow {
    accounts: usize,
    mode: Mode,
    threads: usize,
    w: Window,
    b: Snap,
}

impl TxnRow {
    fn level(&self) -> &'static str {
        if self.accounts >= 1_000 {
            "low"
        } else {
            "high"
        }
    }

    fn case(&self) -> String {
        format!(
            "store/txn/{}/{}/{}",
            self.level(),
            self.mode.label(),
            self.threads
        )
    }

    /// The reference system's optimistic-transaction figure at this contention (an in-memory
    /// MVCC).
    fn reference(&self) -> f64 {
        claim(if self.accounts >= 1_000 {
            ClaimId::TxnLowContention
        } else {
            ClaimId::TxnHighContention
        })
        .value
    }

    /// Calls that gave up (`Conflict` after every attempt).
    fn aborted(&self) -> u64 {
        self.w.calls - self.w.done
    }

    /// Attempts that failed their compare (a conflict), over all attempts.
    fn conflict_rate(&self) -> f64 {
        (self.w.attempts - self.w.done) as f64 / self.w.attempts as f64
    }
}

fn account(i: usize) -> Bytes {
    Bytes::from(format!("acct/{i:06}"))
}

fn balance(v: Option<Bytes>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_le_bytes)
}

fn txn_case(p: &Params, accounts: usize, mode: Mode, threads: usize) -> TxnRow {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(mode.durability())
        .open()
        .expect("open store");
    let keys: Vec<Bytes> = (0..accounts).map(account).collect();
    store
        .bulk_load(
            keys.iter()
                .map(|k| (k.clone(), Bytes::copy_from_slice(&BALANCE.to_le_bytes()))),
            1_000,
        )
        .expect("load accounts");
    let (w, b) = store_loop(&store, threads, p, |_, _, rng| {
        let a = (rng.next() % accounts as u64) as usize;
        let b = (a + 1 + (rng.next() % (accounts as u64 - 1)) as usize) % accounts;
        let (ka, kb) = (&keys[a], &keys[b]);
        let mut attempts = 0u64;
        let r = store.transaction(|tx| {
            attempts += 1;
            let from = balance(tx.get(ka.clone())?);
            let to = balance(tx.get(kb.clone())?);
            let amount = u64::from(from > 0);
            tx.put(ka.clone(), (from - amount).to_le_bytes().to_vec());
            tx.put(kb.clone(), (to + amount).to_le_bytes().to_vec());
            Ok(())
        });
        match r {
            Ok(()) => Outcome { done: 1, attempts },
            Err(StoreError::Conflict { .. }) => Outcome { done: 0, attempts },
            Err(e) => panic!("transaction failed: {e}"),
        }
    });
    // Serializable transfers keep the total.
    let total: u64 = keys
        .iter()
        .map(|k| balance(store.get(k).expect("get").map(|kv| kv.value)))
        .sum();
    assert_eq!(
        total,
        BALANCE * accounts as u64,
        "transfers lost or made money"
    );
    store.close().expect("close");
    TxnRow {
        accounts,
        mode,
        threads,
        w,
        b,
    }
}

/// Point reads (`Store::get`, which takes the MVCC's read lock) from one thread, with the store
/// idle or while `writers` clients put in `mode`: how long reads wait behind commits.
#[derive(Debug)]
struct ReadRow {
    /// `None`: no writers.
    load: Option<Mode>,
    writers: usize,
    /// Read latencies after the warm-up, ns, sorted.
    lat_ns: Vec<u64>,
    /// The writers' window.
    w: Window,
}

impl ReadRow {
    fn case(&self) -> String {
        match self.load {
            None => "store/read/idle".to_owned(),
            Some(m) => format!("store/read/{}/{}", m.label(), self.writers),
        }
    }

    /// The share of reads that took over 100 µs (waited for something).
    fn slow_pct(&self) -> f64 {
        let slow = self.lat_ns.iter().filter(|&&ns| ns > 100_000).count();
        100.0 * slow as f64 / self.lat_ns.len().max(1) as f64
    }

    fn pct(&self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        self.lat_ns[((self.lat_ns.len() - 1) as f64 * p).round() as usize] as f64
    }
}

/// The read probe's pace.
const READ_EVERY: Duration = Duration::from_micros(200);

fn read_case(p: &Params, load: Option<Mode>, writers: usize, vals: &[Bytes]) -> ReadRow {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(load.unwrap_or(Mode::Sync).durability())
        .open()
        .expect("open store");
    let keys: Vec<Bytes> = (0..LOW_ACCOUNTS as u64)
        .map(|i| unique_key(usize::MAX >> 40, i))
        .collect();
    store
        .bulk_load(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), vals[i % vals.len()].clone())),
            1_000,
        )
        .expect("load");
    let stop = AtomicBool::new(false);
    let from = Instant::now() + p.warmup;
    let (lat_ns, w) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut rng = Rng(0x5851_f42d_4c95_7f2d);
            let mut lat = Vec::with_capacity(1 << 16);
            // Paced, not closed-loop: a read every READ_EVERY samples time evenly, where a
            // closed loop would take many samples while the lock is free and one while it is
            // held.
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += READ_EVERY;
                let k = &keys[(rng.next() % keys.len() as u64) as usize];
                let t0 = Instant::now();
                black_box(store.get(k).expect("get"));
                if t0 >= from {
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
            }
            lat
        });
        let w = closed_loop(
            if load.is_some() { writers } else { 0 },
            p.warmup,
            p.measure,
            |t, seq, _| {
                store
                    .put(unique_key(t, seq), vals[seq as usize % vals.len()].clone())
                    .expect("put");
                Outcome {
                    done: 1,
                    attempts: 0,
                }
            },
            || {},
            || {},
        );
        stop.store(true, Ordering::Relaxed);
        let mut lat = reader.join().expect("reader");
        lat.sort_unstable();
        (lat, w)
    });
    store.close().expect("close");
    ReadRow {
        load,
        writers,
        lat_ns,
        w,
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The codec round trip.

#[derive(Debug)]
struct CodecRow {
    ops: usize,
    encode_ns: f64,
    decode_ns: f64,
    bytes: usize,
}

impl CodecRow {
    fn per_op(&self) -> f64 {
        (self.encode_ns + self.decode_ns) / self.ops as f64
    }
}

fn put_ops(n: usize, base: u64, vals: &[Bytes]) -> Vec<Op> {
    (0..n as u64)
        .map(|i| {
            Op::Put(Put::new(
                Bytes::from(key(base + i)),
                vals[(base + i) as usize % vals.len()].clone(),
            ))
        })
        .collect()
}

/// `encode_entry` then `decode_entry` of one entry of `n` puts, exactly as the pipeline does
/// (the default encoder, a reused buffer); median over `reps` groups.
fn codec_case(p: &Params, n: usize, vals: &[Bytes]) -> CodecRow {
    let ops = put_ops(n, 0, vals);
    let enc = Encoder::default();
    let mut buf = BytesMut::new();
    // Groups long enough for the clock (about 100 µs each).
    let group = (100_000 / (n * 250)).max(1);
    let mut encode = Vec::new();
    let mut decode = Vec::new();
    let mut bytes = 0;
    for rep in 0..2 * p.codec_reps / group {
        let t0 = Instant::now();
        for _ in 0..group {
            buf.clear();
            enc.encode_entry(&ops, &mut buf).expect("encode");
        }
        let t1 = Instant::now();
        for _ in 0..group {
            let d = decode_entry(&buf).expect("decode");
            black_box(d.ops.len());
        }
        let t2 = Instant::now();
        bytes = buf.len();
        if rep >= p.codec_reps / group {
            encode.push((t1 - t0).as_nanos() as f64 / group as f64);
            decode.push((t2 - t1).as_nanos() as f64 / group as f64);
        }
    }
    CodecRow {
        ops: n,
        encode_ns: median(&encode),
        decode_ns: median(&decode),
        bytes,
    }
}

#[derive(Debug)]
struct ApplyRow {
    mode: Mode,
    puts: usize,
    /// `Mvcc::apply` of the ops as built.
    direct_s: f64,
    /// Encode + decode + `Mvcc::apply` of the decoded ops, as the pipeline does.
    pipeline_s: f64,
    /// The encode + decode part of `pipeline_s`.
    codec_s: f64,
}

impl ApplyRow {
    fn share(&self) -> f64 {
        self.codec_s / self.pipeline_s
    }
}

/// Entries of 1,000 puts applied to two fresh stores, one straight and one through the codec
/// round trip, entry by entry in alternating order (the same keys and values on both).
fn apply_case(p: &Params, mode: Mode, vals: &[Bytes]) -> ApplyRow {
    let open = |path: &Path| {
        let mut c = MvccConfig::new(path).write_mode(mode.write_mode());
        c.engine = c.engine.tuning(Tuning::default());
        Mvcc::open(c).expect("open mvcc")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut direct = open(&dir.path().join("direct"));
    let mut piped = open(&dir.path().join("pipeline"));
    let enc = Encoder::default();
    let mut buf = BytesMut::new();
    let entries = p.apply_puts / BATCH;
    let (mut direct_s, mut pipeline_s, mut codec_s) = (0.0, 0.0, 0.0);
    // One warm-up entry each.
    for e in 0..=entries {
        let ops = put_ops(BATCH, (e * BATCH) as u64, vals);
        let index = e as u64 + 1;
        let mut run_direct = || {
            let t = Instant::now();
            let a = direct.apply(index, &ops).expect("apply");
            let s = t.elapsed().as_secs_f64();
            assert_eq!(a.results.len(), BATCH);
            s
        };
        let mut run_piped = || {
            let t = Instant::now();
            buf.clear();
            enc.encode_entry(&ops, &mut buf).expect("encode");
            let d = decode_entry(&buf).expect("decode");
            let c = t.elapsed().as_secs_f64();
            let a = piped.apply(index, &d.ops).expect("apply");
            let s = t.elapsed().as_secs_f64();
            assert_eq!(a.results.len(), BATCH);
            (s, c)
        };
        let (d, (s, c)) = if e % 2 == 0 {
            let d = run_direct();
            (d, run_piped())
        } else {
            let sc = run_piped();
            (run_direct(), sc)
        };
        if e > 0 {
            direct_s += d;
            pipeline_s += s;
            codec_s += c;
        }
    }
    ApplyRow {
        mode,
        puts: entries * BATCH,
        direct_s,
        pipeline_s,
        codec_s,
    }
}

/// A put waiting in the replica pipeline's batcher.
#[derive(Debug)]
struct PutItem(Op);

impl BatchItem for PutItem {
    fn size_bytes(&self) -> usize {
        // As the store's pipeline counts a put.
        match &self.0 {
            Op::Put(p) => p.key.len() + p.value.len() + 16,
            op => op.encoded_len(),
        }
    }
}

/// 64 clients putting through a replica of the store's write path (the default batcher, then
/// one `Mvcc::apply` per batch), with and without the codec round trip the store's pipeline
/// does between them; runs alternate between the two, each on a fresh store.
#[derive(Debug)]
struct E2eRow {
    mode: Mode,
    threads: usize,
    direct: Vec<Window>,
    codec: Vec<Window>,
}

impl E2eRow {
    fn rate(ws: &[Window]) -> f64 {
        median(&ws.iter().map(Window::rate).collect::<Vec<_>>())
    }

    fn cpus(ws: &[Window]) -> Vec<f64> {
        ws.iter().map(|w| w.cpu_us().0 + w.cpu_us().1).collect()
    }

    fn cpu(ws: &[Window]) -> f64 {
        median(&Self::cpus(ws))
    }

    /// The RSD of the runs' throughput and CPU per put, %.
    fn rsd(ws: &[Window]) -> (f64, f64) {
        (
            rsd_pct(ws.iter().map(Window::rate)),
            rsd_pct(Self::cpus(ws)),
        )
    }

    /// Throughput lost to the codec.
    fn rate_share(&self) -> f64 {
        1.0 - Self::rate(&self.codec) / Self::rate(&self.direct)
    }

    /// CPU per put spent on the codec, over the CPU per put with it.
    fn cpu_share(&self) -> f64 {
        1.0 - Self::cpu(&self.direct) / Self::cpu(&self.codec)
    }
}

fn e2e_run(p: &Params, mode: Mode, threads: usize, codec: bool, vals: &[Bytes]) -> Window {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = MvccConfig::new(dir.path()).write_mode(mode.write_mode());
    c.engine = c.engine.tuning(Tuning::default());
    let mut mvcc = Mvcc::open(c).expect("open mvcc");
    let enc = Encoder::default();
    let mut buf = BytesMut::new();
    let mut index = mvcc.applied_index();
    let sink = move |batch: Vec<PutItem>| -> Result<Vec<Result<(), String>>, String> {
        let ops: Vec<Op> = batch.into_iter().map(|r| r.0).collect();
        index += 1;
        let applied = if codec {
            buf.clear();
            enc.encode_entry(&ops, &mut buf)
                .map_err(|e| e.to_string())?;
            let d = decode_entry(&buf).map_err(|e| e.to_string())?;
            mvcc.apply(index, &d.ops)
        } else {
            mvcc.apply(index, &ops)
        }
        .map_err(|e| e.to_string())?;
        Ok(applied
            .results
            .into_iter()
            .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
            .collect())
    };
    let batcher = Batcher::start(sink, BatchConfig::default()).expect("start batcher");
    let w = closed_loop(
        threads,
        p.e2e_warmup,
        p.e2e_measure,
        |t, seq, _| {
            let op = Op::Put(Put::new(
                unique_key(t, seq),
                vals[seq as usize % vals.len()].clone(),
            ));
            batcher
                .submit(PutItem(op))
                .expect("submit")
                .wait()
                .expect("put");
            Outcome {
                done: 1,
                attempts: 0,
            }
        },
        || {},
        || {},
    );
    batcher.shutdown(Shutdown::Graceful);
    w
}

fn e2e_case(p: &Params, mode: Mode, threads: usize, vals: &[Bytes]) -> E2eRow {
    let mut row = E2eRow {
        mode,
        threads,
        direct: Vec::new(),
        codec: Vec::new(),
    };
    for rep in 0..p.e2e_reps {
        // Alternate which side goes first.
        for side in [rep % 2 == 1, rep % 2 == 0] {
            let w = e2e_run(p, mode, threads, side, vals);
            if side {
                row.codec.push(w);
            } else {
                row.direct.push(w);
            }
        }
    }
    row
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Results {
    puts: Vec<PutRow>,
    raw: Vec<RawRow>,
    txns: Vec<TxnRow>,
    reads: Vec<ReadRow>,
    codec: Vec<CodecRow>,
    apply: Vec<ApplyRow>,
    e2e: Vec<E2eRow>,
}

impl Results {
    /// Every round of a put case.
    fn put(&self, mode: Mode, threads: usize) -> Vec<&PutRow> {
        self.puts
            .iter()
            .filter(|r| r.mode == mode && r.threads == threads)
            .collect()
    }

    /// Every round of a raw case.
    fn raw(&self, case: &str) -> Vec<&RawRow> {
        self.raw.iter().filter(|r| r.case == case).collect()
    }

    /// Per round, the throughput of `num` over that of `den` (rounds where both ran).
    fn ratios(
        num: &[&Window],
        num_rounds: &[usize],
        den: &[&Window],
        den_rounds: &[usize],
    ) -> Vec<f64> {
        num.iter()
            .zip(num_rounds)
            .filter_map(|(n, r)| {
                den_rounds
                    .iter()
                    .position(|d| d == r)
                    .map(|i| n.rate() / den[i].rate())
            })
            .collect()
    }

    fn put_ratios(&self, num: (Mode, usize), den: (Mode, usize)) -> Vec<f64> {
        let n = self.put(num.0, num.1);
        let d = self.put(den.0, den.1);
        Self::ratios(
            &n.iter().map(|x| &x.w).collect::<Vec<_>>(),
            &n.iter().map(|x| x.round).collect::<Vec<_>>(),
            &d.iter().map(|x| &x.w).collect::<Vec<_>>(),
            &d.iter().map(|x| x.round).collect::<Vec<_>>(),
        )
    }

    fn put_raw_ratios(&self, num: (Mode, usize), den: &str) -> Vec<f64> {
        let n = self.put(num.0, num.1);
        let d = self.raw(den);
        Self::ratios(
            &n.iter().map(|x| &x.w).collect::<Vec<_>>(),
            &n.iter().map(|x| x.round).collect::<Vec<_>>(),
            &d.iter().map(|x| &x.w).collect::<Vec<_>>(),
            &d.iter().map(|x| x.round).collect::<Vec<_>>(),
        )
    }
}

/// Rounds of one case, as medians over them.
#[derive(Debug)]
struct Agg {
    rounds: usize,
    rate: f64,
    rate_rsd: f64,
    p50: f64,
    p99: f64,
    cpu_user: f64,
    cpu_sys: f64,
    cores: f64,
}

impl Agg {
    fn of<'a>(ws: impl IntoIterator<Item = &'a Window>) -> Agg {
        let ws: Vec<&Window> = ws.into_iter().collect();
        let m = |f: &dyn Fn(&Window) -> f64| median(&ws.iter().map(|w| f(w)).collect::<Vec<_>>());
        Agg {
            rounds: ws.len(),
            rate: m(&Window::rate),
            rate_rsd: rsd_pct(ws.iter().map(|w| w.rate()).collect::<Vec<_>>()),
            p50: m(&|w| w.pct(0.5)),
            p99: m(&|w| w.pct(0.99)),
            cpu_user: m(&|w| w.cpu_us().0),
            cpu_sys: m(&|w| w.cpu_us().1),
            cores: m(&Window::cores),
        }
    }

    fn cpu(&self) -> String {
        format!(
            "{:.1} ({:.1} + {:.1})",
            self.cpu_user + self.cpu_sys,
            self.cpu_user,
            self.cpu_sys
        )
    }

    fn rate_show(&self) -> String {
        if self.rounds > 1 {
            format!("{} ±{:.0}%", fmt_int(self.rate), self.rate_rsd)
        } else {
            fmt_int(self.rate)
        }
    }
}

/// `median (min-max)` of per-round ratios.
fn show_ratios(v: &[f64], unit: &str, decimals: usize) -> String {
    if v.len() < 2 {
        return format!("{:.*}{unit}", decimals, median(v));
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.*}{unit} (rounds: {:.*}-{:.*}{unit})",
        decimals,
        median(v),
        decimals,
        lo,
        decimals,
        hi
    )
}

fn main() {
    let quick = common::quick();
    let p = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let vals = values();
    let mut r = Results::default();

    // Raw references first, then the store, round after round: every figure of a comparison
    // from one run, and each ratio from one round.
    for round in 0..p.rounds {
        one_round(&p, round, &vals, &mut r);
    }
    txn_and_reads(&p, &vals, &mut r);
    codec_cases(&p, &vals, &mut r);
    if r.puts.is_empty()
        && r.raw.is_empty()
        && r.txns.is_empty()
        && r.reads.is_empty()
        && r.codec.is_empty()
        && r.apply.is_empty()
        && r.e2e.is_empty()
    {
        return;
    }
    let secs = started.elapsed().as_secs_f64();
    let md = report(&p, quick, &r, secs);
    print!("\n{md}");
    println!("store: {secs:.1} s in all");
    common::write_rows(&rows(&r));
    common::write_report("store.md", &md);
}

/// One round of the raw references and the put cases.
fn one_round(p: &Params, round: usize, vals: &[Bytes], r: &mut Results) {
    for (mode, threads) in [
        (Mode::Sync, 1),
        (Mode::Wal, 1),
        (Mode::None, 1),
        (Mode::Sync, 64),
    ] {
        let case = format!("store/raw/put/{}/{threads}", mode.label());
        if wants(&case) {
            let row = raw_put_case(p, round, mode, threads, vals);
            println!(
                "{case:<28} #{round} {:>10.0} ops/s  p50 {:>9}  p99 {:>9}  others {:.2} cores",
                row.w.rate(),
                fmt_lat(row.w.pct(0.5)),
                fmt_lat(row.w.pct(0.99)),
                row.w.others()
            );
            r.raw.push(row);
        }
    }
    for mode in Mode::ALL {
        let case = format!("store/raw/batch1000/{}", mode.label());
        if wants(&case) {
            let row = raw_batch_case(p, round, mode, vals);
            println!(
                "{case:<28} #{round} {:>10.0} ops/s  others {:.2} cores",
                row.w.rate(),
                row.w.others()
            );
            r.raw.push(row);
        }
    }
    for mode in Mode::ALL {
        for &threads in p.put_threads {
            let case = format!("store/put/{}/{threads}", mode.label());
            if !wants(&case) {
                continue;
            }
            let row = put_case(p, round, mode, threads, vals);
            println!(
                "{case:<28} #{round} {:>10.0} ops/s  p50 {:>9}  p99 {:>9}  batch {:>6.1}  others {:.2} cores",
                row.w.rate(),
                fmt_lat(row.w.pct(0.5)),
                fmt_lat(row.w.pct(0.99)),
                row.b.mean_batch(),
                row.w.others()
            );
            r.puts.push(row);
        }
    }
}

fn txn_and_reads(p: &Params, vals: &[Bytes], r: &mut Results) {
    for accounts in [LOW_ACCOUNTS, HIGH_ACCOUNTS] {
        for mode in [Mode::Wal, Mode::Sync] {
            for &threads in p.txn_threads {
                let level = if accounts >= 1_000 { "low" } else { "high" };
                let case = format!("store/txn/{level}/{}/{threads}", mode.label());
                if !wants(&case) {
                    continue;
                }
                let row = txn_case(p, accounts, mode, threads);
                println!(
                    "{case:<28} {:>10.0} TPS  attempts/commit {:>5.2}  aborted {:>5}  p50 {:>9}  p99 {:>9}",
                    row.w.rate(),
                    row.w.attempts as f64 / row.w.done as f64,
                    row.aborted(),
                    fmt_lat(row.w.pct(0.5)),
                    fmt_lat(row.w.pct(0.99))
                );
                r.txns.push(row);
            }
        }
    }
    for load in [None, Some(Mode::Sync), Some(Mode::Wal)] {
        let row = ReadRow {
            load,
            writers: 16,
            lat_ns: Vec::new(),
            w: Window::default(),
        };
        let case = row.case();
        if !wants(&case) {
            continue;
        }
        let row = read_case(p, load, 16, vals);
        println!(
            "{case:<28} get p50 {:>9}  p90 {:>9}  p99 {:>9}  max {:>9}  over 100 µs {:.1}%  ({} reads; writers {:.0} ops/s)",
            fmt_lat(row.pct(0.5)),
            fmt_lat(row.pct(0.9)),
            fmt_lat(row.pct(0.99)),
            fmt_lat(row.pct(1.0)),
            row.slow_pct(),
            row.lat_ns.len(),
            if load.is_some() { row.w.rate() } else { 0.0 }
        );
        r.reads.push(row);
    }
}

fn codec_cases(p: &Params, vals: &[Bytes], r: &mut Results) {
    for n in [64, BATCH] {
        let case = format!("store/codec/roundtrip/{n}");
        if wants(&case) {
            let row = codec_case(p, n, vals);
            println!(
                "{case:<28} encode {:>9}  decode {:>9}  {:.0} ns per op",
                fmt_lat(row.encode_ns),
                fmt_lat(row.decode_ns),
                row.per_op()
            );
            r.codec.push(row);
        }
    }
    for mode in [Mode::Wal, Mode::None] {
        let case = format!("store/codec/apply/{}", mode.label());
        if wants(&case) {
            let row = apply_case(p, mode, vals);
            println!(
                "{case:<28} direct {:>10.0} puts/s  with codec {:>10.0} puts/s  codec share {:.1}%",
                row.puts as f64 / row.direct_s,
                row.puts as f64 / row.pipeline_s,
                100.0 * row.share()
            );
            r.apply.push(row);
        }
    }
    for mode in [Mode::Wal, Mode::None] {
        let case = format!("store/codec/e2e/{}/64", mode.label());
        // Opt-in: its run-to-run noise here (±20% throughput, ±5-9% CPU per put) is larger
        // than the effect it looks for, so it only runs when the filter names it.
        if common::filter().is_some_and(|f| f.contains("e2e")) && wants(&case) {
            let row = e2e_case(p, mode, 64, vals);
            println!(
                "{case:<28} direct {:>10.0} puts/s {:.1} µs CPU/put  with codec {:>10.0} puts/s {:.1} µs CPU/put  codec share: throughput {:.1}%, CPU {:.1}%",
                E2eRow::rate(&row.direct),
                E2eRow::cpu(&row.direct),
                E2eRow::rate(&row.codec),
                E2eRow::cpu(&row.codec),
                100.0 * row.rate_share(),
                100.0 * row.cpu_share()
            );
            r.e2e.push(row);
        }
    }
}

fn rows(r: &Results) -> Vec<StoreRow> {
    let mut rows = Vec::new();
    // `round`: the round of the raw and put cases, the run of an e2e side, else 0.
    let mut line = |case: &str, round: usize, metric: StoreMetric, value: f64| {
        rows.push(StoreRow {
            case: case.to_owned(),
            round,
            metric,
            value,
        });
    };
    for x in &r.raw {
        let (case, k) = (x.case.as_str(), x.round);
        line(case, k, StoreMetric::OpsPerS, x.w.rate());
        line(
            case,
            k,
            StoreMetric::CpuUsPerOp,
            x.w.cpu_us().0 + x.w.cpu_us().1,
        );
        line(case, k, StoreMetric::P50Ns, x.w.pct(0.5));
        line(case, k, StoreMetric::P99Ns, x.w.pct(0.99));
        line(case, k, StoreMetric::OthersCores, x.w.others());
    }
    for x in &r.puts {
        let (case, k) = (x.case(), x.round);
        line(&case, k, StoreMetric::OpsPerS, x.w.rate());
        line(&case, k, StoreMetric::P50Ns, x.w.pct(0.5));
        line(&case, k, StoreMetric::P99Ns, x.w.pct(0.99));
        line(&case, k, StoreMetric::MeanBatch, x.b.mean_batch());
        line(&case, k, StoreMetric::LingeredPct, x.b.lingered_pct());
        line(&case, k, StoreMetric::WalSyncs, x.b.wal_syncs as f64);
        line(&case, k, StoreMetric::CpuUserUsPerOp, x.w.cpu_us().0);
        line(&case, k, StoreMetric::CpuSysUsPerOp, x.w.cpu_us().1);
        line(&case, k, StoreMetric::OthersCores, x.w.others());
    }
    for x in &r.txns {
        let case = x.case();
        line(&case, 0, StoreMetric::CommittedTps, x.w.rate());
        line(&case, 0, StoreMetric::Attempts, x.w.attempts as f64);
        line(&case, 0, StoreMetric::ConflictRate, x.conflict_rate());
        line(&case, 0, StoreMetric::Aborted, x.aborted() as f64);
        line(&case, 0, StoreMetric::P50Ns, x.w.pct(0.5));
        line(&case, 0, StoreMetric::P99Ns, x.w.pct(0.99));
        line(&case, 0, StoreMetric::MeanBatch, x.b.mean_batch());
        line(
            &case,
            0,
            StoreMetric::CpuUsPerCommit,
            x.w.cpu_us().0 + x.w.cpu_us().1,
        );
        line(&case, 0, StoreMetric::OthersCores, x.w.others());
    }
    for x in &r.reads {
        let case = x.case();
        line(&case, 0, StoreMetric::GetP50Ns, x.pct(0.5));
        line(&case, 0, StoreMetric::GetP90Ns, x.pct(0.9));
        line(&case, 0, StoreMetric::GetP99Ns, x.pct(0.99));
        line(&case, 0, StoreMetric::GetOver100usPct, x.slow_pct());
        line(&case, 0, StoreMetric::Reads, x.lat_ns.len() as f64);
    }
    for x in &r.codec {
        let case = format!("store/codec/roundtrip/{}", x.ops);
        line(&case, 0, StoreMetric::EncodeNs, x.encode_ns);
        line(&case, 0, StoreMetric::DecodeNs, x.decode_ns);
        line(&case, 0, StoreMetric::RoundtripNsPerOp, x.per_op());
        line(&case, 0, StoreMetric::EntryBytes, x.bytes as f64);
    }
    for x in &r.apply {
        let case = format!("store/codec/apply/{}", x.mode.label());
        line(
            &case,
            0,
            StoreMetric::DirectPutsPerS,
            x.puts as f64 / x.direct_s,
        );
        line(
            &case,
            0,
            StoreMetric::PipelinePutsPerS,
            x.puts as f64 / x.pipeline_s,
        );
        line(&case, 0, StoreMetric::CodecShare, x.share());
        line(
            &case,
            0,
            StoreMetric::CodecNsPerPut,
            1e9 * x.codec_s / x.puts as f64,
        );
    }
    for x in &r.e2e {
        let case = format!("store/codec/e2e/{}/{}", x.mode.label(), x.threads);
        for (puts, cpu, ws) in [
            (
                StoreMetric::DirectPutsPerS,
                StoreMetric::DirectCpuUsPerPut,
                &x.direct,
            ),
            (
                StoreMetric::CodecPutsPerS,
                StoreMetric::CodecCpuUsPerPut,
                &x.codec,
            ),
        ] {
            for (k, w) in ws.iter().enumerate() {
                line(&case, k, puts, w.rate());
                line(&case, k, cpu, w.cpu_us().0 + w.cpu_us().1);
            }
        }
        line(&case, 0, StoreMetric::CodecShareThroughput, x.rate_share());
        line(&case, 0, StoreMetric::CodecShareCpu, x.cpu_share());
    }
    rows
}

fn command(quick: bool) -> String {
    let mut c = String::new();
    if handoff() {
        c.push_str("BATCHKV_BENCH_HANDOFF=1 ");
    }
    c.push_str("cargo xtask bench");
    if quick {
        c.push_str(" --quick");
    }
    c.push(' ');
    c.push_str(&common::filter().unwrap_or_else(|| "store".to_owned()));
    c
}

fn fmt_cpu(w: &Window) -> String {
    let (u, s) = w.cpu_us();
    format!("{:.1} ({u:.1} + {s:.1})", u + s)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

fn report(p: &Params, quick: bool, r: &Results, secs: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## batchkv Store (`benches/benches/store.rs`){}\n",
        if quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        md,
        "Command: `{}` ({secs:.0} s). 16-byte keys in random order, 100-byte incompressible values; \
         the store and raw rust-rocksdb both with the engine's default tuning (statistics on, as a \
         store opens by default); a fresh database per case; closed-loop clients (each waits for its \
         answer before the next call), {:.1} s of warm-up, then {:.1} s measured: ops/s counts calls \
         completed in the window, latencies are theirs.\n",
        command(quick),
        p.warmup.as_secs_f64(),
        p.measure.as_secs_f64()
    );
    let others: Vec<f64> = r
        .raw
        .iter()
        .map(|x| &x.w)
        .chain(r.puts.iter().map(|x| &x.w))
        .chain(r.txns.iter().map(|x| &x.w))
        .chain(r.reads.iter().map(|x| &x.w))
        .filter(|w| w.secs > 0.0)
        .map(Window::others)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            md,
            "Other processes on the machine (from `/proc/stat`, steal included) kept {:.2} cores \
             busy in the median measured window, {:.2} at most: figures from windows well above 0 \
             were disturbed.\n",
            median(&others),
            others.iter().copied().fold(0.0, f64::max)
        );
    }
    let rounds = |n: usize| {
        if n > 1 {
            format!(
                "medians over {n} rounds (each round runs every raw and put case once, in the order \
                 of the tables; ± is the RSD of ops/s over the rounds)"
            )
        } else {
            "one round".to_owned()
        }
    };
    let rounds_sentence = |n: usize| {
        let s = rounds(n);
        let mut c = s.chars();
        c.next()
            .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
    };
    if !r.raw.is_empty() {
        let _ = writeln!(
            md,
            "### Raw rust-rocksdb, same run\n\n{}.\n",
            rounds_sentence(r.raw.iter().map(|x| x.round + 1).max().unwrap_or(0))
        );
        let _ = writeln!(
            md,
            "| case | what | ops/s | p50 | p99 | CPU µs per op (user + sys) | cores busy |\n|---|---|---:|---:|---:|---:|---:|"
        );
        let mut seen: Vec<&str> = Vec::new();
        for x in &r.raw {
            if seen.contains(&x.case.as_str()) {
                continue;
            }
            seen.push(&x.case);
            let a = Agg::of(r.raw(&x.case).iter().map(|x| &x.w));
            let single = x.case.contains("/put/");
            let lat = |v: f64| if single { fmt_lat(v) } else { "-".into() };
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} | {:.2} |",
                x.case,
                x.what,
                a.rate_show(),
                lat(a.p50),
                lat(a.p99),
                a.cpu(),
                a.cores,
            );
        }
        let _ = writeln!(md);
    }
    if !r.puts.is_empty() {
        let _ = writeln!(md, "### Puts through the Store\n");
        let _ = writeln!(
            md,
            "Default `BatchConfig` (adaptive linger up to 1 ms, at most 1,000 ops per entry); `Wal` \
             syncs every 100 ms or 4 MiB; {}. Mean batch = items / batches the batcher handed to \
             the pipeline in the window; lingered = batches flushed after the batcher waited for \
             more items; CPU is the whole process's (clients, batcher, pipeline, RocksDB) per put, \
             from `/proc/self/stat`, on 2 cores. The two ratio columns are medians of per-round \
             ratios.\n",
            rounds(r.puts.iter().map(|x| x.round + 1).max().unwrap_or(0))
        );
        let _ = writeln!(
            md,
            "| mode | clients | ops/s | p50 | p99 | mean batch | lingered | CPU µs per put (user + sys) | cores busy | x 1 client | / raw 1000-op batch (same mode) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let mut seen: Vec<(Mode, usize)> = Vec::new();
        for x in &r.puts {
            if seen.contains(&(x.mode, x.threads)) {
                continue;
            }
            seen.push((x.mode, x.threads));
            let rows = r.put(x.mode, x.threads);
            let a = Agg::of(rows.iter().map(|x| &x.w));
            let one = r.put_ratios((x.mode, x.threads), (x.mode, 1));
            let raw = r.put_raw_ratios(
                (x.mode, x.threads),
                &format!("store/raw/batch1000/{}", x.mode.label()),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} | {:.0}% | {} | {:.2} | {} | {} |",
                x.mode.label(),
                x.threads,
                a.rate_show(),
                fmt_lat(a.p50),
                fmt_lat(a.p99),
                median(&rows.iter().map(|x| x.b.mean_batch()).collect::<Vec<_>>()),
                median(&rows.iter().map(|x| x.b.lingered_pct()).collect::<Vec<_>>()),
                a.cpu(),
                a.cores,
                if one.is_empty() {
                    "-".into()
                } else {
                    format!("{:.1}x", median(&one))
                },
                if raw.is_empty() {
                    "-".into()
                } else {
                    format!("{:.3}", median(&raw))
                },
            );
        }
        let _ = writeln!(md);
        let v = r.put_ratios((Mode::Sync, 64), (Mode::Sync, 1));
        if !v.is_empty() {
            let _ = writeln!(
                md,
                "- `Sync`, 64 clients / 1 client: **{}** (aim >= 30x: {}).",
                show_ratios(&v, "x", 1),
                verdict(median(&v) >= 30.0)
            );
        }
        let v = r.put_raw_ratios((Mode::Sync, 64), "store/raw/batch1000/sync");
        if !v.is_empty() {
            let _ = writeln!(
                md,
                "- `Sync`, 64 clients / raw 1000-op synced batches: **{}** (aim >= 0.3x: {}).",
                show_ratios(&v, "x", 3),
                verdict(median(&v) >= 0.3)
            );
        }
        let v = r.put_raw_ratios((Mode::Sync, 64), "store/raw/put/sync/64");
        if !v.is_empty() {
            let _ = writeln!(
                md,
                "- `Sync`, 64 clients / raw synced single puts from 64 threads (RocksDB's own group \
                 commit of concurrent writers): {}.",
                show_ratios(&v, "x", 2)
            );
        }
        let f = r.raw("store/raw/put/sync/1");
        if !f.is_empty() {
            let a = Agg::of(f.iter().map(|x| &x.w));
            let _ = writeln!(
                md,
                "- One synced put (raw, 1 thread) takes {} at the median, {} at p99: the fsync.",
                fmt_lat(a.p50),
                fmt_lat(a.p99)
            );
        }
        let _ = writeln!(md);
    }
    if !r.txns.is_empty() {
        let _ = writeln!(md, "### Optimistic transactions (bank transfers)\n");
        let _ = writeln!(
            md,
            "Each transaction reads two distinct random accounts and writes both (moving 1) through \
             `Store::transaction` (at most {} attempts); committed TPS counts transactions that \
             committed in the window; conflict rate = failed attempts / attempts. The reference \
             system's figures ({} TPS at low contention, {} at high) come from an in-memory MVCC \
             with no log and no disk; the headline here is `Wal` (written to RocksDB's WAL on every \
             commit, fsynced in the background), with `Sync` beside it. After each case the balances \
             are checked to sum to the opening total.\n",
            batchkv::DEFAULT_TXN_ATTEMPTS,
            rate(claim(ClaimId::TxnLowContention).value),
            rate(claim(ClaimId::TxnHighContention).value),
        );
        let _ = writeln!(
            md,
            "| contention | accounts | mode | clients | committed TPS | attempts / commit | conflict rate | aborted | p50 | p99 | mean batch | CPU µs per commit | / reference |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for x in &r.txns {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {:.1}% | {} | {} | {} | {:.1} | {} | {:.3} ({}K) |",
                x.level(),
                fmt_int(x.accounts as f64),
                x.mode.label(),
                x.threads,
                fmt_int(x.w.rate()),
                x.w.attempts as f64 / x.w.done as f64,
                100.0 * x.conflict_rate(),
                x.aborted(),
                fmt_lat(x.w.pct(0.5)),
                fmt_lat(x.w.pct(0.99)),
                x.b.mean_batch(),
                fmt_cpu(&x.w),
                x.w.rate() / x.reference(),
                x.reference() / 1e3
            );
        }
        let _ = writeln!(md);
    }
    if !r.reads.is_empty() {
        let _ = writeln!(
            md,
            "Point reads (`Store::get`, 10,000 preloaded keys) from one thread, one every {} µs \
             (paced, so that the samples spread evenly over time), on an idle store and while 16 \
             clients put; every transaction above reads like this before it commits, and a read \
             takes the MVCC's read lock, which the pipeline holds for writing while it applies \
             (and commits) an entry.\n",
            READ_EVERY.as_micros()
        );
        let _ = writeln!(
            md,
            "| case | get p50 | p90 | p99 | max | reads over 100 µs | reads | writers' ops/s |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for x in &r.reads {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {:.1}% | {} | {} |",
                x.case(),
                fmt_lat(x.pct(0.5)),
                fmt_lat(x.pct(0.9)),
                fmt_lat(x.pct(0.99)),
                fmt_lat(x.pct(1.0)),
                x.slow_pct(),
                fmt_int(x.lat_ns.len() as f64),
                if x.load.is_some() {
                    fmt_int(x.w.rate())
                } else {
                    "-".into()
                }
            );
        }
        let _ = writeln!(md);
    }
    if !r.codec.is_empty() || !r.apply.is_empty() || !r.e2e.is_empty() {
        let _ = writeln!(md, "### The codec round trip in the pipeline\n");
        let _ = writeln!(
            md,
            "The pipeline encodes every batch into one entry and decodes it again before applying \
             it (as a follower replaying the log would). The issue's rule: a shortcut skipping the \
             codec is justified only if the round trip costs more than 5%.\n"
        );
    }
    if !r.codec.is_empty() {
        let _ = writeln!(
            md,
            "| puts per entry | entry bytes | encode | decode | round trip per put |\n|---:|---:|---:|---:|---:|"
        );
        for x in &r.codec {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} ns |",
                x.ops,
                fmt_int(x.bytes as f64),
                fmt_lat(x.encode_ns),
                fmt_lat(x.decode_ns),
                x.per_op()
            );
        }
        let _ = writeln!(md);
    }
    if !r.e2e.is_empty() {
        let _ = writeln!(
            md,
            "End to end: 64 closed-loop clients putting through a replica of the store's write path \
             (the default batcher, one `Mvcc::apply` per batch), with and without the codec round \
             trip between them; runs alternate, each on a fresh store; medians of {} runs per side \
             ({:.1} s windows).\n",
            r.e2e.first().map_or(0, |x| x.direct.len()),
            p.e2e_measure.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| write mode | clients | direct puts/s | with codec puts/s | throughput lost | direct CPU µs/put | with codec CPU µs/put | CPU share |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for x in &r.e2e {
            let (dr, dc) = E2eRow::rsd(&x.direct);
            let (cr, cc) = E2eRow::rsd(&x.codec);
            let _ = writeln!(
                md,
                "| {} | {} | {} ±{dr:.0}% | {} ±{cr:.0}% | **{:.1}%** | {:.1} ±{dc:.0}% | {:.1} ±{cc:.0}% | **{:.1}%** |",
                x.mode.label(),
                x.threads,
                fmt_int(E2eRow::rate(&x.direct)),
                fmt_int(E2eRow::rate(&x.codec)),
                100.0 * x.rate_share(),
                E2eRow::cpu(&x.direct),
                E2eRow::cpu(&x.codec),
                100.0 * x.cpu_share()
            );
        }
        let _ = writeln!(md);
    }
    if !r.apply.is_empty() {
        let _ = writeln!(
            md,
            "`Mvcc::apply` of the same entries of 1,000 puts, straight and after the round trip \
             (two fresh stores, entries alternating between them):\n"
        );
        let _ = writeln!(
            md,
            "| write mode | puts | direct puts/s | with codec puts/s | round trip per put, in place | codec share (timed inside) | direct / with codec |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for x in &r.apply {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} ns | **{:.1}%** | {:.3} |",
                x.mode.label(),
                fmt_int(x.puts as f64),
                fmt_int(x.puts as f64 / x.direct_s),
                fmt_int(x.puts as f64 / x.pipeline_s),
                1e9 * x.codec_s / x.puts as f64,
                100.0 * x.share(),
                x.pipeline_s / x.direct_s
            );
        }
        let _ = writeln!(md);
    }
    let hot = r
        .codec
        .iter()
        .find(|c| c.ops == BATCH)
        .map(CodecRow::per_op);
    let in_place = r
        .apply
        .iter()
        .map(|x| 1e9 * x.codec_s / x.puts as f64)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let mut rows: Vec<(Mode, usize)> = Vec::new();
    for x in r.puts.iter().filter(|x| x.threads >= 64) {
        if !rows.contains(&(x.mode, x.threads)) {
            rows.push((x.mode, x.threads));
        }
    }
    if let (Some(hot), false) = (hot, rows.is_empty()) {
        let lo = in_place.unwrap_or(hot).min(hot);
        let hi = in_place.unwrap_or(hot).max(hot);
        let _ = writeln!(
            md,
            "The codec's share of the store's time per put at 64+ clients (1 / ops/s), and of the \
             whole process's CPU time per put, for a round trip of {lo:.0}-{hi:.0} ns per put (the \
             microbenchmark with hot caches: {hot:.0} ns; timed in place in the `Mvcc::apply` runs \
             above, the larger of the two modes: {:.0} ns):\n",
            in_place.unwrap_or(f64::NAN)
        );
        let _ = writeln!(
            md,
            "| case | store ns per put | codec share of it | store CPU ns per put | codec share of it |\n|---|---:|---:|---:|---:|"
        );
        for (mode, threads) in rows {
            let a = Agg::of(r.put(mode, threads).iter().map(|x| &x.w));
            let per = 1e9 / a.rate;
            let cpu = 1e3 * (a.cpu_user + a.cpu_sys);
            let _ = writeln!(
                md,
                "| `store/put/{}/{threads}` | {:.0} | {:.1}-{:.1}% | {:.0} | {:.1}-{:.1}% |",
                mode.label(),
                per,
                100.0 * lo / per,
                100.0 * hi / per,
                cpu,
                100.0 * lo / cpu,
                100.0 * hi / cpu
            );
        }
        let _ = writeln!(md);
    }
    md
}

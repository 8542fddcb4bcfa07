//! The soak run (`cargo xtask soak --duration 1h`): a store under a mixed load at a fixed rate,
//! with everything a long-lived store does in the background, sampled every interval into a
//! CSV file and drawn into a PNG, and judged for drift at the end.
//!
//! The load, after every key is written once (so the index and cache start near their steady
//! size): writer threads at a fixed total rate (puts over a bounded key space, deletes,
//! two-key txns, gets and prefix ranges), leases of 2 s granted with keys attached and left to
//! expire or revoked, watchers on prefixes (re-created every 30 s), a checkpoint every 60 s (the
//! previous one deleted), `prune_old_versions(5)` every 30 s, and auto-compaction (etcd's
//! periodic mode, keeping 1 minute of history, or a quarter of the warm-up when that is
//! shorter: the history the index holds must reach its steady size within the warm-up, or a
//! 2-minute run, CI's, measures the history filling up as RSS growth).
//!
//! Each sample: RSS, open file descriptors, disk use of the data directory, operations per
//! second, p50 and p99 latency over the interval, errors, and the machine's load average.
//!
//! It fails when, after the warm-up (a sixth of the run, at least 1 and at most 10 minutes, at
//! most half the run),
//! the last quarter's mean RSS is more than 10% above the first quarter's, its throughput more
//! than 20% below, its p99 more than twice as high, or when any operation failed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use batchkv::{
    AutoCompaction, Durability, OpError, Put, Range, Store, StoreError, Tuning, WatchRequest,
};
use batchkv_testkit::Rng;
use hdrhistogram::Histogram;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long.
    pub duration: Duration,
    /// Operations per second, all writer threads together.
    pub rate: u64,
    /// How often a sample is taken.
    pub interval: Duration,
    /// Where the CSV, the PNG and the summary go.
    pub out: PathBuf,
    /// The load's seed.
    pub seed: u64,
}

/// One sample.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Open file descriptors.
    pub fds: u64,
    /// Bytes under the data directory, MiB.
    pub disk_mib: f64,
    /// Operations completed per second over the interval.
    pub ops_per_sec: f64,
    /// Median latency over the interval, ms.
    pub p50_ms: f64,
    /// 99th percentile latency over the interval, ms.
    pub p99_ms: f64,
    /// Failed operations since the start.
    pub errors: u64,
    /// The machine's 1-minute load average.
    pub load: f64,
    /// The store's revision.
    pub revision: i64,
}

/// The verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Samples after the warm-up.
    pub measured: usize,
    /// First- and last-quarter means: RSS MiB, ops/s, p99 ms.
    pub first: (f64, f64, f64),
    /// See `first`.
    pub last: (f64, f64, f64),
    /// Failed operations.
    pub errors: u64,
    /// What broke the criteria (empty: passed).
    pub failures: Vec<String>,
}

struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    errors: AtomicU64,
    latencies: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn record(&self, started: Instant, r: Result<(), StoreError>) {
        match r {
            Ok(()) => {
                self.ops.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros() as u64;
                let _ = self
                    .latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(us.max(1));
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            eprintln!("soak: an operation failed: {e}");
            *first = Some(e);
        }
    }
}

/// Runs the soak; writes `soak.csv`, `soak.png` and `soak.md` into `opts.out`.
///
/// # Errors
/// Setup failures (the verdict is returned, not an error).
pub fn run(opts: &Options) -> Result<(Vec<Sample>, Verdict)> {
    std::fs::create_dir_all(&opts.out)?;
    let data = opts.out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let store = Store::builder(&data)
        .durability(Durability::Sync)
        // Small memtables and cache: the steady state comes within the warm-up, not after.
        .tuning(Tuning {
            write_buffer_bytes: 4 << 20,
            block_cache_bytes: 16 << 20,
            ..Tuning::default()
        })
        .auto_compaction(AutoCompaction::Periodic(retention(opts.duration)))
        .lease_check_interval(Duration::from_millis(100))
        .open()
        .context("open the soak store")?;
    // Every key once before the clock starts, so the index and the block cache begin near
    // their steady size instead of growing through the first minutes.
    let fill = (0..KEYS).map(|i| {
        (
            batchkv::Bytes::from(format!("key/{i:05}")),
            batchkv::Bytes::from("v".repeat(500)),
        )
    });
    store
        .bulk_load(fill, 5_000)
        .map_err(|e| anyhow::anyhow!("filling the key space: {e}"))?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies: Mutex::new(Histogram::new(3).context("histogram")?),
        first_error: Mutex::new(None),
    });
    const WRITERS: u64 = 8;
    let mut threads = Vec::new();
    for t in 0..WRITERS {
        let (s, sh) = (store.clone(), Arc::clone(&shared));
        let per_thread = Duration::from_secs_f64(WRITERS as f64 / opts.rate.max(1) as f64);
        let seed = opts.seed ^ (t + 1).wrapping_mul(0x9e37_79b9);
        threads.push(std::thread::spawn(move || {
            writer(&s, &sh, per_thread, Rng(seed))
        }));
    }
    {
        let (s, sh) = (store.clone(), Arc::clone(&shared));
        threads.push(std::thread::spawn(move || {
            lease_churn(&s, &sh, Rng(opts_seed(7)))
        }));
    }
    {
        let (s, sh) = (store.clone(), Arc::clone(&shared));
        let ckpt = opts.out.join("checkpoints");
        threads.push(std::thread::spawn(move || maintenance(&s, &sh, &ckpt)));
    }
    for w in 0..4 {
        let (s, sh) = (store.clone(), Arc::clone(&shared));
        threads.push(std::thread::spawn(move || watcher(&s, &sh, w)));
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_ops = 0;
    let mut next = start + opts.interval;
    let mut csv =
        String::from("t_s,rss_mib,fds,disk_mib,ops_per_sec,p50_ms,p99_ms,errors,load1,revision\n");
    while start.elapsed() < opts.duration {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let elapsed = opts.interval.as_secs_f64();
        next += opts.interval;
        let ops = shared.ops.load(Ordering::Relaxed);
        let (p50, p99) = {
            let mut h = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
            let r = (
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
            );
            h.reset();
            r
        };
        let sample = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_mib: rss_mib(),
            fds: open_fds(),
            disk_mib: dir_bytes(&data) as f64 / (1 << 20) as f64,
            ops_per_sec: (ops - last_ops) as f64 / elapsed,
            p50_ms: p50,
            p99_ms: p99,
            errors: shared.errors.load(Ordering::Relaxed),
            load: load_average(),
            revision: store.current_revision(),
        };
        last_ops = ops;
        println!(
            "soak {:>6.0} s: {:>7.0} ops/s  p50 {:>6.2} ms  p99 {:>7.2} ms  RSS {:>6.1} MiB  fds {:>4}  disk {:>6.1} MiB  errors {}  load {:.2}",
            sample.t,
            sample.ops_per_sec,
            sample.p50_ms,
            sample.p99_ms,
            sample.rss_mib,
            sample.fds,
            sample.disk_mib,
            sample.errors,
            sample.load
        );
        let _ = writeln!(
            csv,
            "{:.1},{:.2},{},{:.2},{:.1},{:.3},{:.3},{},{:.2},{}",
            sample.t,
            sample.rss_mib,
            sample.fds,
            sample.disk_mib,
            sample.ops_per_sec,
            sample.p50_ms,
            sample.p99_ms,
            sample.errors,
            sample.load,
            sample.revision
        );
        std::fs::write(opts.out.join("soak.csv"), &csv)?;
        samples.push(sample);
    }
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    if let Err(e) = store.check() {
        shared.fail(format!("the final check failed: {e}"));
    }
    store.close()?;
    let verdict = judge(
        &samples,
        opts.duration,
        shared.errors.load(Ordering::Relaxed),
    );
    let plotted = crate::plot::soak(&opts.out.join("soak.png"), &samples, warmup(opts.duration));
    std::fs::write(
        opts.out.join("soak.md"),
        summary(opts, &samples, &verdict, plotted.err()),
    )?;
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(opts.out.join("checkpoints"));
    Ok((samples, verdict))
}

/// The key space of the writers.
const KEYS: usize = 20_000;

fn opts_seed(x: u64) -> u64 {
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The warm-up excluded from the verdict: a sixth of the run, at least a minute (memtables
/// and the block cache fill in the first minute) and at most ten, and never over half the run.
pub fn warmup(duration: Duration) -> Duration {
    (duration / 6)
        .clamp(Duration::from_secs(60), Duration::from_secs(600))
        .min(duration / 2)
}

/// How much history auto-compaction keeps: a minute, or a quarter of the warm-up when that
/// is shorter (CI's 2-minute run: 15 s), so the history is at its steady size when the
/// measured part of the run starts.
pub fn retention(duration: Duration) -> Duration {
    (warmup(duration) / 4).min(Duration::from_secs(60))
}

/// Applies the criteria to the samples after the warm-up.
pub fn judge(samples: &[Sample], duration: Duration, errors: u64) -> Verdict {
    let from = warmup(duration).as_secs_f64();
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.t > from).collect();
    let q = (measured.len() / 4).max(1);
    let mean = |xs: &[&Sample], f: fn(&Sample) -> f64| -> f64 {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().map(|s| f(s)).sum::<f64>() / xs.len() as f64
        }
    };
    let (head, tail) = if measured.len() >= 2 {
        (
            &measured[..q.min(measured.len())],
            &measured[measured.len() - q.min(measured.len())..],
        )
    } else {
        (&measured[..], &measured[..])
    };
    let first = (
        mean(head, |s| s.rss_mib),
        mean(head, |s| s.ops_per_sec),
        mean(head, |s| s.p99_ms),
    );
    let last = (
        mean(tail, |s| s.rss_mib),
        mean(tail, |s| s.ops_per_sec),
        mean(tail, |s| s.p99_ms),
    );
    let mut failures = Vec::new();
    if measured.len() < 2 {
        failures.push(format!(
            "only {} samples after the {:.0} s warm-up: run longer",
            measured.len(),
            from
        ));
    }
    if last.0 > first.0 * 1.10 {
        failures.push(format!(
            "RSS grew {:.1}% ({:.1} → {:.1} MiB)",
            pct(first.0, last.0),
            first.0,
            last.0
        ));
    }
    if last.1 < first.1 * 0.80 {
        failures.push(format!(
            "throughput fell {:.1}% ({:.0} → {:.0} ops/s)",
            -pct(first.1, last.1),
            first.1,
            last.1
        ));
    }
    if last.2 > first.2 * 2.0 {
        failures.push(format!(
            "p99 went from {:.2} to {:.2} ms (over twice)",
            first.2, last.2
        ));
    }
    if errors > 0 {
        failures.push(format!("{errors} operations failed"));
    }
    Verdict {
        measured: measured.len(),
        first,
        last,
        errors,
        failures,
    }
}

fn pct(a: f64, b: f64) -> f64 {
    if a == 0.0 { 0.0 } else { (b - a) / a * 100.0 }
}

fn summary(opts: &Options, samples: &[Sample], v: &Verdict, plot_error: Option<String>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Soak run\n");
    let _ = writeln!(
        s,
        "{} s at {} ops/s (8 writer threads, Sync durability), a sample every {} s, warm-up {} s, seed {}.\n",
        opts.duration.as_secs(),
        opts.rate,
        opts.interval.as_secs(),
        warmup(opts.duration).as_secs(),
        opts.seed
    );
    let _ = writeln!(s, "| | first quarter | last quarter | change | limit |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| RSS (MiB) | {:.1} | {:.1} | {:+.1}% | +10% |",
        v.first.0,
        v.last.0,
        pct(v.first.0, v.last.0)
    );
    let _ = writeln!(
        s,
        "| throughput (ops/s) | {:.0} | {:.0} | {:+.1}% | -20% |",
        v.first.1,
        v.last.1,
        pct(v.first.1, v.last.1)
    );
    let _ = writeln!(
        s,
        "| p99 (ms) | {:.2} | {:.2} | {:.2}x | 2x |",
        v.first.2,
        v.last.2,
        if v.first.2 > 0.0 {
            v.last.2 / v.first.2
        } else {
            0.0
        }
    );
    let _ = writeln!(
        s,
        "\nerrors: {}; samples after the warm-up: {}",
        v.errors, v.measured
    );
    if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
        let loads: Vec<f64> = samples.iter().map(|x| x.load).collect();
        let max_load = loads.iter().cloned().fold(0.0, f64::max);
        let mean_load = loads.iter().sum::<f64>() / loads.len() as f64;
        let _ = writeln!(
            s,
            "file descriptors {} → {}; disk {:.1} → {:.1} MiB; revision {} at the end; machine load average (1 min) mean {:.2}, max {:.2}",
            f.fds, l.fds, f.disk_mib, l.disk_mib, l.revision, mean_load, max_load
        );
    }
    let _ = writeln!(
        s,
        "\nverdict: {}",
        if v.failures.is_empty() {
            "passed".to_owned()
        } else {
            format!("FAILED: {}", v.failures.join("; "))
        }
    );
    if let Some(e) = plot_error {
        let _ = writeln!(s, "\nno plot: {e}");
    }
    s
}

/// Puts, deletes, txns and reads at a fixed rate.
fn writer(s: &Store, sh: &Shared, every: Duration, mut rng: Rng) {
    let mut next = Instant::now();
    let value = |rng: &mut Rng| {
        let n = 100 + rng.below(900);
        "v".repeat(n)
    };
    while !sh.stop.load(Ordering::Relaxed) {
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Far behind (a stall): do not queue a burst to catch up.
            next = now;
        }
        let key = format!("key/{:05}", rng.below(KEYS));
        let started = Instant::now();
        let r = match rng.below(100) {
            0..=59 => s.put(key, value(&mut rng)).map(|_| ()),
            60..=69 => s.delete(key).map(|_| ()),
            70..=79 => {
                let other = format!("key/{:05}", rng.below(KEYS));
                s.transaction(|tx| {
                    tx.put(key.clone(), "a");
                    if other != key {
                        tx.put(other.clone(), "b");
                    }
                    Ok(())
                })
                .map(|_| ())
            }
            80..=94 => s.get(key).map(|_| ()),
            _ => s
                .range(&Range {
                    limit: 20,
                    ..Range::prefix(format!("key/{:03}", rng.below(200)))
                })
                .map(|_| ()),
        };
        sh.record(started, r);
    }
}

/// A lease of 2 s every 100 ms with three keys; a third are revoked, the rest expire.
fn lease_churn(s: &Store, sh: &Shared, mut rng: Rng) {
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        n += 1;
        let r = (|| {
            let id = s.lease_grant(0, 2)?.id;
            for k in 0..3 {
                s.put_with(Put {
                    lease: id,
                    ..Put::new(format!("lease/{n}/{k}"), "v")
                })?;
            }
            if rng.pct(33) {
                s.lease_revoke(id)?;
            }
            Ok::<(), StoreError>(())
        })();
        match r {
            Ok(()) | Err(StoreError::Op(OpError::LeaseNotFound { .. })) => {}
            Err(e) => sh.fail(format!("lease churn: {e}")),
        }
    }
}

/// A checkpoint every 60 s (the previous one deleted), pruning every 30 s.
fn maintenance(s: &Store, sh: &Shared, dir: &Path) {
    let _ = std::fs::create_dir_all(dir);
    let mut tick = 0u64;
    let mut previous: Option<PathBuf> = None;
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        if tick.is_multiple_of(30)
            && let Err(e) = s.prune_old_versions(5)
        {
            sh.fail(format!("prune: {e}"));
        }
        if tick.is_multiple_of(60) {
            let path = dir.join(format!("ckpt-{tick}"));
            match s.checkpoint(&path) {
                Ok(()) => {
                    if let Some(p) = previous.replace(path) {
                        let _ = std::fs::remove_dir_all(p);
                    }
                }
                Err(e) => sh.fail(format!("checkpoint: {e}")),
            }
        }
    }
}

/// A watcher on one prefix, re-created every 30 s, draining events.
fn watcher(s: &Store, sh: &Shared, w: u64) {
    let prefix = format!("key/{w}");
    while !sh.stop.load(Ordering::Relaxed) {
        let mut watch = s.watch(WatchRequest::range(
            prefix.clone(),
            batchkv::prefix_end(prefix.as_bytes()),
        ));
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && !sh.stop.load(Ordering::Relaxed) {
            match watch.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(r)) if r.canceled => break,
                Ok(_) => {}
                Err(e) => {
                    sh.fail(format!("watch: {e}"));
                    break;
                }
            }
        }
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

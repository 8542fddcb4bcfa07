//! Group-commit benchmark: throughput and p50/p99 latency for 1 to 256 closed-loop producers,
//! for each wait policy, into a sink that costs like an fsync (sleeps 1-3 ms per flush) and one
//! that costs about 1 µs per item (busy work).
//!
//! A custom harness (criterion measures one closure's time, not a latency distribution across
//! threads). `cargo xtask bench batcher` runs it; `BATCHKV_BENCH_QUICK=1` shortens every run.
//! Results go to stdout and, when `BATCHKV_REPORT_DIR` is set, to `batcher.csv` and the report
//! section `batcher.md` there.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use batchkv_batcher::{BatchConfig, Batcher, WaitPolicy};
use batchkv_benches::rows::BatcherRow;

mod common;

const PRODUCERS: [usize; 5] = [1, 4, 16, 64, 256];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SinkKind {
    /// Sleeps 1-3 ms per flush, whatever its size: an fsync.
    Fsync,
    /// Busy for 1 µs per item: CPU-bound work such as applying to memory.
    CpuPerItem,
}

impl SinkKind {
    fn name(self) -> &'static str {
        match self {
            SinkKind::Fsync => "fsync-like",
            SinkKind::CpuPerItem => "1us-per-item",
        }
    }
}

fn policy_name(p: WaitPolicy) -> String {
    match p {
        WaitPolicy::Fixed(d) => format!("fixed-{}us", d.as_micros()),
        WaitPolicy::Tiered => "tiered".to_owned(),
        WaitPolicy::Adaptive => "adaptive".to_owned(),
    }
}

type Sink = Box<dyn FnMut(Vec<u64>) -> Result<Vec<Result<(), String>>, String> + Send>;

fn sink(kind: SinkKind) -> Sink {
    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
    Box::new(move |batch: Vec<u64>| {
        match kind {
            SinkKind::Fsync => {
                thread::sleep(Duration::from_micros(1000 + rng.next() % 2001));
            }
            SinkKind::CpuPerItem => {
                let end = Instant::now() + Duration::from_micros(batch.len() as u64);
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(vec![Ok(()); batch.len()])
    })
}

struct Run {
    sink: SinkKind,
    policy: WaitPolicy,
    producers: usize,
    ops: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    mean_batch: f64,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn run_one(
    kind: SinkKind,
    policy: WaitPolicy,
    producers: usize,
    warmup: Duration,
    measure: Duration,
) -> Run {
    let cfg = BatchConfig {
        wait_policy: policy,
        ..BatchConfig::default()
    };
    let batcher: Batcher<u64, (), String> = Batcher::start(sink(kind), cfg).expect("valid config");
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let b = batcher.clone();
            let stop = Arc::clone(&stop);
            let measuring = Arc::clone(&measuring);
            thread::spawn(move || {
                let mut lat: Vec<u32> = Vec::with_capacity(4096);
                let mut ops = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    b.submit(p as u64 * 1_000_000_000 + i)
                        .expect("open")
                        .wait()
                        .expect("sink succeeds");
                    i += 1;
                    if measuring.load(Ordering::Relaxed) {
                        ops += 1;
                        if lat.len() < 1_000_000 {
                            lat.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
                        }
                    }
                }
                (ops, lat)
            })
        })
        .collect();
    thread::sleep(warmup);
    let before = batcher.stats();
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    thread::sleep(measure);
    measuring.store(false, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let after = batcher.stats();
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    let mut lat = Vec::new();
    for h in handles {
        let (o, l) = h.join().expect("producer");
        ops += o;
        lat.extend(l);
    }
    lat.sort_unstable();
    let batches = after.batches - before.batches;
    let items = after.items - before.items;
    Run {
        sink: kind,
        policy,
        producers,
        ops,
        secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        mean_batch: if batches > 0 {
            items as f64 / batches as f64
        } else {
            0.0
        },
    }
}

fn main() {
    // cargo bench passes `--bench` and xtask may pass criterion's flags; the only positional
    // argument is the filter.
    let filter = common::filter();
    let quick = common::quick();
    let (warmup, measure) = if quick {
        (Duration::from_millis(50), Duration::from_millis(250))
    } else {
        (Duration::from_millis(300), Duration::from_secs(2))
    };
    let policies = [
        WaitPolicy::Fixed(Duration::from_millis(1)),
        WaitPolicy::Tiered,
        WaitPolicy::Adaptive,
    ];
    let mut runs = Vec::new();
    for kind in [SinkKind::Fsync, SinkKind::CpuPerItem] {
        for producers in PRODUCERS {
            for policy in policies {
                let name = format!(
                    "batcher/{}/{}/{}",
                    kind.name(),
                    policy_name(policy),
                    producers
                );
                if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                    continue;
                }
                let r = run_one(kind, policy, producers, warmup, measure);
                println!(
                    "{name:<40} {:>10.0} ops/s  p50 {:>9.1} us  p99 {:>9.1} us  batch {:>6.1}",
                    r.throughput(),
                    r.p50_us,
                    r.p99_us,
                    r.mean_batch
                );
                runs.push(r);
            }
        }
    }
    if runs.is_empty() {
        return;
    }
    let (rows, md) = report(&runs, quick);
    print!("\n{md}");
    common::write_rows(&rows);
    common::write_report("batcher.md", &md);
}

fn report(runs: &[Run], quick: bool) -> (Vec<BatcherRow>, String) {
    let rows = runs
        .iter()
        .map(|r| BatcherRow {
            sink: r.sink.name().to_owned(),
            policy: policy_name(r.policy),
            producers: r.producers,
            ops: r.ops,
            secs: r.secs,
            ops_per_s: r.throughput(),
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            mean_batch: r.mean_batch,
        })
        .collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Group commit (batchkv-batcher){}\n",
        if quick {
            " (quick: 250 ms per point)"
        } else {
            " (2 s per point)"
        }
    );
    let _ = writeln!(
        md,
        "Closed-loop producers, each submitting one item and waiting for its answer. Default config \
         (max 1000 ops per batch, max_wait 1 ms); `fixed-1000us` is `Fixed(1 ms)`.\n"
    );
    for kind in [SinkKind::Fsync, SinkKind::CpuPerItem] {
        let rows: Vec<&Run> = runs.iter().filter(|r| r.sink == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "### {} sink\n", kind.name());
        let _ = writeln!(
            md,
            "| producers | policy | ops/s | p50 µs | p99 µs | mean batch | vs best policy |\n|---:|---|---:|---:|---:|---:|---:|"
        );
        for producers in PRODUCERS {
            let group: Vec<&&Run> = rows.iter().filter(|r| r.producers == producers).collect();
            let best = group.iter().map(|r| r.throughput()).fold(0.0, f64::max);
            for r in &group {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    r.producers,
                    policy_name(r.policy),
                    r.throughput(),
                    r.p50_us,
                    r.p99_us,
                    r.mean_batch,
                    r.throughput() / best
                );
            }
        }
        let find = |p: usize| {
            rows.iter()
                .find(|r| r.producers == p && r.policy == WaitPolicy::Adaptive)
                .map(|r| r.throughput())
        };
        if let (Some(one), Some(sixty_four)) = (find(1), find(64)) {
            let _ = writeln!(
                md,
                "\nAdaptive, 64 producers / 1 producer throughput: **{:.1}x**\n",
                sixty_four / one
            );
        }
    }
    (rows, md)
}

//! What metrics cost: the same put workload through a store without metrics and with them
//! (recording every op, batch and entry; the exposition rendered once a second as a scraper
//! would), interleaved in one run. `cargo xtask bench metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchkv::{AutoFlushConfig, Durability, Store};
use batchkv_batcher::rsd_pct;
use batchkv_benches::rows::MetricsRow;
use bytes::Bytes;

mod common;

/// One run: `threads` clients, `per` puts each; returns puts/s.
fn run(metrics: bool, threads: usize, per: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(dir.path())
        .durability(Durability::Wal {
            flush: AutoFlushConfig::default(),
        })
        .metrics(metrics)
        .open()
        .expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    // A scraper rendering the exposition every second, as Prometheus would.
    let scraper = metrics.then(|| {
        let s = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = s.metrics_text();
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    });
    let value = Bytes::from(vec![7u8; 100]);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = store.clone();
            let value = value.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    s.put(common::key((t * per + i) as u64), value.clone())
                        .expect("put");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        let _ = s.join();
    }
    store.close().expect("close");
    (threads * per) as f64 / took.as_secs_f64()
}

fn main() {
    if common::filter().is_some_and(|f| !"metrics/overhead".contains(f.as_str())) {
        return;
    }
    let (threads, per, reps) = if common::quick() {
        (16, 500, 3)
    } else {
        (16, 5_000, 7)
    };
    let mut off = Vec::new();
    let mut on = Vec::new();
    run(false, threads, per / 5); // warm-up
    for rep in 0..reps {
        // Alternate which goes first, so drift hits both.
        if rep % 2 == 0 {
            off.push(run(false, threads, per));
            on.push(run(true, threads, per));
        } else {
            on.push(run(true, threads, per));
            off.push(run(false, threads, per));
        }
    }
    let (rsd_off, rsd_on) = (rsd_pct(off.iter().copied()), rsd_pct(on.iter().copied()));
    let (m_off, m_on) = (common::median(&off), common::median(&on));
    let ratio = m_on / m_off;
    let mut md = String::new();
    let _ = writeln!(md, "## Metrics overhead (`benches/benches/metrics.rs`)\n");
    let _ = writeln!(
        md,
        "Command: `cargo xtask bench metrics`. {threads} client threads x {per} puts (16-byte keys, 100-byte values), `Durability::Wal`, a fresh store per run, {reps} runs each, alternating; with metrics on, the exposition is rendered once a second as a scraper would.\n"
    );
    let _ = writeln!(md, "| store | puts/s (median) | RSD |\n|---|---:|---:|");
    let _ = writeln!(md, "| without metrics | {m_off:.0} | {rsd_off:.1}% |");
    let _ = writeln!(md, "| with metrics | {m_on:.0} | {rsd_on:.1}% |");
    let _ = writeln!(md, "\nwith / without: **{ratio:.3}**\n");
    print!("{md}");
    common::write_report("metrics.md", &md);
    common::write_rows(&[
        MetricsRow {
            case: "without".to_owned(),
            puts_per_sec: m_off,
            rsd_pct: rsd_off,
        },
        MetricsRow {
            case: "with".to_owned(),
            puts_per_sec: m_on,
            rsd_pct: rsd_on,
        },
    ]);
}

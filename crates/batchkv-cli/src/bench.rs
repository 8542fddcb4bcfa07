//! `bench` (batchkv's own): concurrent puts of `bench/NNNNNNNNNN` keys through one store, with
//! the rate and the latency percentiles. It writes into the data dir it is given: point it at
//! a scratch dir.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::args::BenchArgs;
use crate::commands::Ctx;
use crate::error::{CliError, CliResult, exit};
use crate::output::{BenchJson, Format, Header, Out};

/// A count flag that must be positive.
fn positive(name: &str, v: i64) -> CliResult<usize> {
    usize::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| CliError::bad_args(format!("--{name} must be positive")))
}

/// Runs the load and prints its figures.
pub fn bench(ctx: &Ctx, a: &BenchArgs, out: &mut Out) -> CliResult {
    let clients = positive("clients", a.clients)?;
    let ops = positive("ops", a.ops)?;
    let value_size = positive("value-size", a.value_size)?;
    let keys = match a.keys {
        Some(k) => positive("keys", k)?,
        None => ops,
    };
    let value = Bytes::from(vec![b'v'; value_size]);
    let (elapsed, mut lat, rev) = ctx.with_store(|s| {
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        let results: Vec<CliResult<Vec<Duration>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    scope.spawn(|| {
                        let mut lat = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= ops {
                                return Ok(lat);
                            }
                            let key = format!("bench/{:010}", i % keys);
                            let t = Instant::now();
                            s.put(key, value.clone()).map_err(|e| CliError::store(&e))?;
                            lat.push(t.elapsed());
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CliError::new(exit::ERROR, "a bench client panicked"))
                    })
                })
                .collect()
        });
        let elapsed = start.elapsed();
        let mut lat = Vec::with_capacity(ops);
        for r in results {
            lat.extend(r?);
        }
        Ok((elapsed, lat, s.current_revision()))
    })?;
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let r = BenchJson {
        header: Header::top(rev),
        ops,
        clients,
        value_size,
        keys,
        seconds: secs,
        ops_per_sec: ops as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    };
    match ctx.format {
        Format::Simple => {
            out.line(format!(
                "{ops} puts of {value_size}-byte values over {keys} keys, {clients} clients: \
                 {secs:.3} s, {:.0} ops/s",
                r.ops_per_sec
            ));
            out.line(format!(
                "latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                r.p50_ms, r.p99_ms, r.max_ms
            ));
            out.line(format!("revision: {rev}"));
        }
        Format::Json => out.json(&r)?,
    }
    Ok(())
}

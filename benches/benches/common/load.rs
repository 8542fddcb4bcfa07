//! Closed-loop load: client threads calling an op back to back for a warm-up and a measured
//! window, with every call's latency and the process's CPU time over the window (the store and
//! workloads harnesses).

use std::time::{Duration, Instant};

use super::Rng;

/// What one call of a closed-loop client did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Puts written, or transactions committed.
    pub done: u64,
    /// Transaction attempts (0 for puts).
    pub attempts: u64,
}

/// What the measured window of a closed-loop run saw.
#[derive(Debug, Default)]
pub struct Window {
    pub secs: f64,
    pub calls: u64,
    pub done: u64,
    pub attempts: u64,
    /// Latency of every call completed in the window, ns, sorted.
    pub lat_ns: Vec<u64>,
    /// CPU time of the whole process (every thread, RocksDB's too) in the window, s.
    pub user_s: f64,
    pub sys_s: f64,
    /// CPU time every other process used in the window, s (a disturbed measurement).
    pub others_s: f64,
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.secs
    }

    /// CPU µs per unit done (user, system).
    pub fn cpu_us(&self) -> (f64, f64) {
        let n = self.done.max(1) as f64;
        (1e6 * self.user_s / n, 1e6 * self.sys_s / n)
    }

    /// Cores busy on average over the window.
    pub fn cores(&self) -> f64 {
        (self.user_s + self.sys_s) / self.secs
    }

    /// Cores other processes kept busy on average over the window.
    pub fn others(&self) -> f64 {
        self.others_s / self.secs
    }

    pub fn pct(&self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_ns.len() - 1) as f64 * p).round() as usize;
        self.lat_ns[i] as f64
    }
}

/// The process's CPU time so far (user, system), s, from `/proc/self/stat` (clock ticks of
/// 10 ms); zeros where it cannot be read.
pub fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields 14 and 15 (utime, stime); `after` starts at field 3.
    let mut f = after.split_whitespace().skip(11);
    let mut next = || f.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    let user = next();
    (user, next())
}

/// The machine's busy CPU time so far (every process, every core), s, from `/proc/stat`.
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(6)
        .map(|(_, x)| x)
        .sum();
    busy / 100.0
}

/// Runs `threads` closed-loop clients calling `op(thread, seq, rng)` for `warmup + measure`; only
/// calls that complete inside the measured window count. `at_start` and `at_end` run on the
/// calling thread at the window's edges (statistics snapshots).
pub fn closed_loop<F, S, E>(
    threads: usize,
    warmup: Duration,
    measure: Duration,
    op: F,
    at_start: S,
    at_end: E,
) -> Window
where
    F: Fn(usize, u64, &mut Rng) -> Outcome + Sync,
    S: FnOnce(),
    E: FnOnce(),
{
    // The warm-up also absorbs spawning the threads.
    let start = Instant::now() + warmup;
    let end = start + measure;
    let op = &op;
    let mut w = Window {
        secs: measure.as_secs_f64(),
        ..Window::default()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1000_0001));
                    let mut lat = Vec::with_capacity(4_096);
                    let (mut done, mut attempts) = (0u64, 0u64);
                    let mut seq = 0u64;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        let o = op(t, seq, &mut rng);
                        seq += 1;
                        let t1 = Instant::now();
                        if t1 >= start && t1 <= end {
                            lat.push((t1 - t0).as_nanos() as u64);
                            done += o.done;
                            attempts += o.attempts;
                        }
                    }
                    (lat, done, attempts)
                })
            })
            .collect();
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        let (cpu0, busy0) = (cpu_times(), machine_busy());
        at_start();
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let (cpu1, busy1) = (cpu_times(), machine_busy());
        at_end();
        w.user_s = cpu1.0 - cpu0.0;
        w.sys_s = cpu1.1 - cpu0.1;
        w.others_s = (busy1 - busy0 - w.user_s - w.sys_s).max(0.0);
        for h in handles {
            let (lat, done, attempts) = h.join().expect("client thread");
            w.calls += lat.len() as u64;
            w.done += done;
            w.attempts += attempts;
            w.lat_ns.extend(lat);
        }
    });
    w.lat_ns.sort_unstable();
    w
}

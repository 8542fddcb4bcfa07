//! The linger decision: how long the worker waits for more items once the queue is drained.
//!
//! The adaptive control law (also in docs/ARCHITECTURE.md). Per flush the worker observes the
//! batch size `b`, the items `q` waiting in the queue when it finished (arrived while the sink
//! was busy, or already waiting because the batch was full), the time since
//! the previous flush started, and the sink's duration. It keeps exponentially weighted averages
//! of the arrival rate `λ` (items/s) and of the flush time `S`. When the queue is drained and the
//! batch of `n` items is not full:
//!
//! 1. If the worker sat idle for longer than a flush takes (the time since the last flush ended
//!    exceeds `S`), the system is not under load: flush now. A lone item on an idle system is
//!    never delayed.
//! 2. The batch worth waiting for is `target = min(max_ops, b + q)`: the submitters of the batch
//!    just answered (in a closed loop, they come straight back) plus those already waiting. If
//!    the batch holds that many, flush now; a lone closed-loop producer (`b = 1`, `q = 0`)
//!    therefore never lingers.
//! 3. Otherwise linger until the batch reaches `target`, for at most
//!    `min(max_wait, S, (target − n)/λ)`. Waiting at most one flush time bounds the added
//!    latency by what the next flush would have cost the late arrivals anyway, and keeps one
//!    wave of submitters from being split across two flushes when they return a few microseconds
//!    after the queue was drained (the split would halve the throughput of every later flush).
//!
//! An estimate from the arrival rate alone (`λ·S` items per flush) does not work in a closed
//! loop: the measured rate is the throughput, which the splitting itself holds down, so it
//! settles on half-full batches.

use std::time::{Duration, Instant};

use crate::config::WaitPolicy;

/// Smoothing of the averages: the newest flush weighs a quarter.
const ALPHA: f64 = 0.25;

/// What the policy decided for one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Linger {
    /// How long to wait at most; zero flushes now.
    pub wait: Duration,
    /// Flush early once the batch holds this many items.
    pub target: usize,
}

#[derive(Debug)]
pub(crate) struct Policy {
    kind: WaitPolicy,
    max_wait: Duration,
    max_ops: usize,
    // Adaptive state.
    rate: f64,
    sink_secs: f64,
    last_flush_start: Option<Instant>,
    last_flush_end: Option<Instant>,
    last_target: usize,
    // Tiered state.
    window_start: Instant,
    window_items: u64,
    tier: Duration,
}

impl Policy {
    pub(crate) fn new(kind: WaitPolicy, max_wait: Duration, max_ops: usize) -> Self {
        Policy {
            kind,
            max_wait,
            max_ops,
            rate: 0.0,
            sink_secs: 0.0,
            last_flush_start: None,
            last_flush_end: None,
            last_target: 0,
            window_start: Instant::now(),
            window_items: 0,
            tier: max_wait,
        }
    }

    /// Decides the linger for a batch of `n` items, with the queue drained, at `now`.
    pub(crate) fn decide(&mut self, n: usize, now: Instant) -> Linger {
        match self.kind {
            WaitPolicy::Fixed(d) => Linger {
                wait: d,
                target: self.max_ops,
            },
            WaitPolicy::Tiered => {
                let elapsed = now.saturating_duration_since(self.window_start);
                if elapsed >= Duration::from_secs(1) {
                    let rate = self.window_items as f64 / elapsed.as_secs_f64();
                    self.tier = if rate < 10.0 {
                        Duration::from_millis(10)
                    } else if rate <= 100.0 {
                        self.max_wait
                    } else {
                        Duration::from_micros(100)
                    };
                    self.window_start = now;
                    self.window_items = 0;
                }
                Linger {
                    wait: self.tier,
                    target: self.max_ops,
                }
            }
            WaitPolicy::Adaptive => self.adaptive(n, now),
        }
    }

    /// The adaptive law's decision (it changes no state).
    fn adaptive(&self, n: usize, now: Instant) -> Linger {
        let flush_now = Linger {
            wait: Duration::ZERO,
            target: n,
        };
        let Some(end) = self.last_flush_end else {
            return flush_now;
        };
        let idle = now.saturating_duration_since(end).as_secs_f64();
        if idle > self.sink_secs || self.rate <= 0.0 {
            return flush_now;
        }
        let target = self.last_target.min(self.max_ops);
        if n >= target {
            return flush_now;
        }
        let to_fill = (target - n) as f64 / self.rate;
        let wait = Duration::from_secs_f64(to_fill.min(self.sink_secs)).min(self.max_wait);
        Linger { wait, target }
    }

    /// Whether a lone item arriving at `now`, with nothing queued, would be flushed at once
    /// (no linger): the condition for a submitter to flush it on its own thread. Changes no
    /// state (`Tiered` re-evaluates its tier in `decide` only, and always lingers).
    pub(crate) fn flushes_lone_item_now(&self, now: Instant) -> bool {
        match self.kind {
            WaitPolicy::Fixed(d) => d.is_zero(),
            WaitPolicy::Tiered => false,
            WaitPolicy::Adaptive => self.adaptive(1, now).wait.is_zero(),
        }
    }

    /// Records a flush of `n` items that started at `start` and took `sink`, during which
    /// `queued` items arrived.
    pub(crate) fn record(&mut self, n: usize, start: Instant, sink: Duration, queued: usize) {
        self.window_items += n as u64;
        if let Some(prev) = self.last_flush_start {
            let cycle = start.saturating_duration_since(prev).as_secs_f64();
            if cycle > 0.0 {
                let sample = n as f64 / cycle;
                self.rate = if self.rate == 0.0 {
                    sample
                } else {
                    ALPHA * sample + (1.0 - ALPHA) * self.rate
                };
            }
        }
        let s = sink.as_secs_f64();
        self.sink_secs = if self.sink_secs == 0.0 {
            s
        } else {
            ALPHA * s + (1.0 - ALPHA) * self.sink_secs
        };
        self.last_flush_start = Some(start);
        self.last_flush_end = Some(start + sink);
        self.last_target = n.saturating_add(queued);
    }

    /// The linger the policy would choose for a lone item right now (for `stats()`).
    pub(crate) fn current(&self) -> Duration {
        match self.kind {
            WaitPolicy::Fixed(d) => d,
            WaitPolicy::Tiered => self.tier,
            WaitPolicy::Adaptive => {
                if self.last_target <= 1 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(self.sink_secs).min(self.max_wait)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn adaptive_never_lingers_when_idle() {
        let mut p = Policy::new(WaitPolicy::Adaptive, MS, 1000);
        let t0 = Instant::now();
        assert_eq!(p.decide(1, t0).wait, Duration::ZERO, "no history: flush");
        // One item every 10 ms into a 2 ms sink: under one arrival per flush.
        let mut t = t0;
        for _ in 0..20 {
            p.record(1, t, 2 * MS, 0);
            t += 10 * MS;
            assert_eq!(p.decide(1, t).wait, Duration::ZERO);
        }
    }

    #[test]
    fn adaptive_lingers_under_load_and_never_past_max_wait_or_flush_time() {
        let mut p = Policy::new(WaitPolicy::Adaptive, MS, 1000);
        let mut t = Instant::now();
        // 64 items per 2 ms flush, back to back: 32,000 items/s, 64 expected per flush.
        for _ in 0..50 {
            p.record(64, t, 2 * MS, 0);
            t += 2 * MS;
        }
        let l = p.decide(4, t + Duration::from_micros(5));
        assert!(l.wait > Duration::ZERO, "{l:?}");
        assert!(l.wait <= MS, "{l:?}");
        assert_eq!(l.target, 64);
        // A full-enough batch flushes at once.
        assert_eq!(p.decide(64, t).wait, Duration::ZERO);
        // After a pause longer than a flush, the same state flushes a lone item at once.
        assert_eq!(p.decide(1, t + 5 * MS).wait, Duration::ZERO);
    }

    #[test]
    fn adaptive_targets_the_last_batch_plus_what_queued_meanwhile() {
        let mut p = Policy::new(WaitPolicy::Adaptive, MS, 1000);
        let mut t = Instant::now();
        for n in [64, 64, 64, 10] {
            p.record(n, t, 2 * MS, 0);
            t += 2 * MS;
        }
        let l = p.decide(4, t);
        assert_eq!(l.target, 10, "{l:?}");
        // Items that queued during the last flush count: they are waiting already.
        p.record(40, t, 2 * MS, 24);
        assert_eq!(p.decide(30, t + 2 * MS).target, 64);
        // A lone producer, however fast the sink, never lingers: its previous batch was 1.
        let mut q = Policy::new(WaitPolicy::Adaptive, MS, 1000);
        let mut t = Instant::now();
        for _ in 0..100 {
            q.record(1, t, Duration::from_micros(600), 0);
            t += Duration::from_micros(610);
            assert_eq!(q.decide(1, t).wait, Duration::ZERO);
        }
    }

    #[test]
    fn tiered_follows_the_reference_rule() {
        let mut p = Policy::new(WaitPolicy::Tiered, 3 * MS, 100);
        let t0 = p.window_start;
        assert_eq!(p.decide(1, t0).wait, 3 * MS, "starts at max_wait");
        p.record(5, t0, MS, 0);
        assert_eq!(p.decide(1, t0 + Duration::from_secs(1)).wait, 10 * MS);
        p.record(50, t0, MS, 0);
        assert_eq!(p.decide(1, t0 + Duration::from_secs(2)).wait, 3 * MS);
        p.record(5000, t0, MS, 0);
        assert_eq!(
            p.decide(1, t0 + Duration::from_secs(3)).wait,
            Duration::from_micros(100)
        );
    }
}

//! Automatic compaction, as etcd's `--auto-compaction-mode`: a policy that, polled with the
//! time and the current revision, says when to compact and at which revision. It only decides:
//! the caller proposes the [`batchkv_codec::Compact`] entry (through the log, so every replica
//! compacts at the same revision), as the facade will.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep the last `n` revisions (etcd's `revision` mode): every 5 minutes, compact at
    /// `current - n`.
    Revision(i64),
    /// Keep the history of the last `retention` (etcd's `periodic` mode): the revision the store
    /// had `retention` ago is compacted, checked every tenth of the retention (at most hourly).
    Periodic(Duration),
}

/// etcd's revision-mode check interval.
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The decision state of one [`AutoCompaction`] policy.
#[derive(Clone, Debug)]
pub struct AutoCompactor {
    mode: AutoCompaction,
    interval: Duration,
    last_check: Option<Instant>,
    /// `(when, revision)` samples, oldest first (periodic mode).
    samples: VecDeque<(Instant, i64)>,
    /// The last revision this policy asked to compact (or the store's compacted revision).
    compacted: i64,
}

impl AutoCompactor {
    /// A policy; `compacted` is the store's compacted revision (-1 or 0: none), so it never asks
    /// for one at or below it.
    pub fn new(mode: AutoCompaction, compacted: i64) -> Self {
        let interval = match mode {
            AutoCompaction::Revision(_) => REVISION_INTERVAL,
            AutoCompaction::Periodic(r) => {
                (r / 10).clamp(Duration::from_millis(1), Duration::from_secs(3600))
            }
        };
        AutoCompactor {
            mode,
            interval,
            last_check: None,
            samples: VecDeque::new(),
            compacted,
        }
    }

    /// How often [`AutoCompactor::poll`] decides anything (calls in between only sample).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records that the store is at `current` at `now`, and returns the revision to compact at,
    /// if one is due: at most once per [`AutoCompactor::interval`], never at or below the last
    /// one, never above `current`.
    pub fn poll(&mut self, now: Instant, current: i64) -> Option<i64> {
        if let AutoCompaction::Periodic(retention) = self.mode {
            self.samples.push_back((now, current));
            // Keep one sample at or before the retention boundary, drop older ones.
            while self.samples.len() > 1 && self.samples[1].0 + retention <= now {
                self.samples.pop_front();
            }
        }
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return None;
        }
        self.last_check = Some(now);
        let target = match self.mode {
            AutoCompaction::Revision(keep) => current - keep,
            AutoCompaction::Periodic(retention) => match self.samples.front() {
                Some((t, rev)) if *t + retention <= now => *rev,
                _ => return None,
            },
        };
        if target <= self.compacted || target < 1 || target > current {
            return None;
        }
        self.compacted = target;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_mode_keeps_the_last_n_revisions_checking_every_five_minutes() {
        let t0 = Instant::now();
        let mut p = AutoCompactor::new(AutoCompaction::Revision(100), -1);
        assert_eq!(p.poll(t0, 50), None, "not enough history yet");
        assert_eq!(
            p.poll(t0 + Duration::from_secs(60), 500),
            None,
            "checked a minute ago"
        );
        assert_eq!(p.poll(t0 + Duration::from_secs(301), 500), Some(400));
        assert_eq!(
            p.poll(t0 + Duration::from_secs(602), 450),
            None,
            "not above the last"
        );
        assert_eq!(p.poll(t0 + Duration::from_secs(903), 700), Some(600));
    }

    #[test]
    fn periodic_mode_compacts_the_revision_of_one_retention_ago() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = AutoCompactor::new(AutoCompaction::Periodic(s(100)), -1);
        assert_eq!(p.interval(), s(10));
        assert_eq!(p.poll(t0, 10), None);
        for i in 1..10 {
            assert_eq!(
                p.poll(t0 + s(10 * i), 10 + 5 * i as i64),
                None,
                "younger than 100 s"
            );
        }
        // At 100 s the sample from 0 s (revision 10) is one retention old.
        assert_eq!(p.poll(t0 + s(100), 60), Some(10));
        assert_eq!(p.poll(t0 + s(105), 62), None, "within the interval");
        // At 130 s: the newest sample at or before 30 s is the one from 30 s (revision 25).
        assert_eq!(p.poll(t0 + s(130), 70), Some(25));
    }
}

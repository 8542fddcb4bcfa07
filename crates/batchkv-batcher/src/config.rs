//! The batcher's configuration.

use std::time::Duration;

use crate::error::{ConfigError, Result};

/// How long the worker may linger for more items once the queue is drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Always linger up to this long (or until the batch is full).
    Fixed(Duration),
    /// The reference system's rule, re-evaluated once a second from the observed ops/s:
    /// below 10 ops/s linger 10 ms, 10 to 100 ops/s linger `max_wait`, above 100 ops/s 100 µs.
    Tiered,
    /// The default: a feedback controller that lingers only when the sink is busy enough that
    /// waiting fills the batch sooner than the next flush would (see docs/ARCHITECTURE.md).
    Adaptive,
}

/// The batcher's limits and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most items in one batch.
    pub max_ops: usize,
    /// Most bytes in one batch (as items report them); an item larger than this goes alone.
    pub max_bytes: usize,
    /// Longest linger `Adaptive` may choose; `Tiered`'s middle tier. `Fixed` names its own, and
    /// `Tiered` lingers 10 ms below 10 ops/s whatever this says (the reference rule).
    pub max_wait: Duration,
    /// The linger policy.
    pub wait_policy: WaitPolicy,
    /// Items the queue holds before `submit` blocks (and `try_submit` answers `Full`).
    pub queue_capacity: usize,
    /// When false, every item is flushed alone, at once.
    pub enabled: bool,
}

impl Default for BatchConfig {
    /// 1,000 items or 4 MiB per batch, 1 ms max wait, adaptive, a queue of 65,536 items.
    fn default() -> Self {
        BatchConfig {
            max_ops: 1000,
            max_bytes: 4 << 20,
            max_wait: Duration::from_millis(1),
            wait_policy: WaitPolicy::Adaptive,
            queue_capacity: 65_536,
            enabled: true,
        }
    }
}

impl BatchConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.max_ops == 0 {
            return Err(ConfigError::invalid("max_ops", "must be at least 1, got 0"));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::invalid(
                "max_bytes",
                "must be at least 1, got 0",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::invalid(
                "queue_capacity",
                "must be at least 1, got 0",
            ));
        }
        const HOUR: Duration = Duration::from_secs(3600);
        if self.max_wait > HOUR {
            return Err(ConfigError::invalid(
                "max_wait",
                format!("must be at most an hour, got {:?}", self.max_wait),
            ));
        }
        if let WaitPolicy::Fixed(d) = self.wait_policy
            && d > HOUR
        {
            return Err(ConfigError::invalid(
                "wait_policy",
                format!("Fixed linger must be at most an hour, got {d:?}"),
            ));
        }
        Ok(())
    }
}

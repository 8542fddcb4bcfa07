//! The adaptive chunk controller: writes a large batch in chunks whose size follows the relative
//! standard deviation (RSD) of per-chunk throughput over a sliding window.
//!
//! Pure logic: the caller times each chunk and reports it with [`ChunkController::record`];
//! `batchkv-engine` drives it for its adaptive writes. The law, as in the reference system:
//! once `window` chunks have been timed at the current size, compute the RSD of their
//! throughputs. At or below `target_rsd_pct` throughput is steady, so the chunk grows by
//! `up_pct`; above it throughput is noisy (stalls, compaction, fsync jitter), so the chunk shrinks
//! by `down_pct`. Either way the window restarts, so every decision rests on `window` chunks of
//! the size it judges. The size stays within `[min_chunk, max_chunk]`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::{ConfigError, Result};

/// Configuration of the [`ChunkController`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveBatchConfig {
    /// First chunk size.
    pub initial_chunk: usize,
    /// Smallest chunk.
    pub min_chunk: usize,
    /// Largest chunk.
    pub max_chunk: usize,
    /// Chunks per decision (`ADAPT_WINDOW` in [`Self::with_env_from`]).
    pub window: usize,
    /// RSD, in percent, at or below which throughput counts as steady (`ADAPT_TARGET_RSD`).
    pub target_rsd_pct: f64,
    /// Growth step when steady, a fraction in (0, 1).
    pub up_pct: f64,
    /// Shrink step when noisy, a fraction in (0, 1) (`ADAPT_DOWN_PCT`).
    pub down_pct: f64,
}

impl AdaptiveBatchConfig {
    /// The reference system's tuned window (v0 had 5, v1 4).
    pub const DEFAULT_WINDOW: usize = 6;
    /// The reference system's tuned down step (v0 had 0.25, v1 0.40).
    pub const DEFAULT_DOWN_PCT: f64 = 0.30;
    /// The reference system's RSD target: below 15% is steady.
    pub const DEFAULT_TARGET_RSD_PCT: f64 = 15.0;
    /// Growth step: smaller than the down step, so the controller backs off faster than it
    /// probes (as TCP's congestion control does).
    pub const DEFAULT_UP_PCT: f64 = 0.25;

    /// Defaults sized for a batch of `total_ops` operations: start at a twentieth of it, between
    /// 500 and 5,000 (the reference's recommended fixed chunk), never above the batch itself.
    pub fn default_for(total_ops: usize) -> Self {
        let max_chunk = total_ops.clamp(1, 100_000);
        let min_chunk = 100.min(max_chunk);
        AdaptiveBatchConfig {
            initial_chunk: (total_ops / 20)
                .clamp(500, 5_000)
                .clamp(min_chunk, max_chunk),
            min_chunk,
            max_chunk,
            window: Self::DEFAULT_WINDOW,
            target_rsd_pct: Self::DEFAULT_TARGET_RSD_PCT,
            up_pct: Self::DEFAULT_UP_PCT,
            down_pct: Self::DEFAULT_DOWN_PCT,
        }
    }

    /// Applies the reference system's overrides `ADAPT_WINDOW` (a whole number),
    /// `ADAPT_DOWN_PCT` (a fraction such as `0.30`) and `ADAPT_TARGET_RSD` (percent, such as
    /// `15`), each looked up through `get`. This library reads no environment itself: a binary
    /// that offers the overrides passes `|k| std::env::var(k).ok()` (the engine benchmark does).
    ///
    /// # Errors
    /// [`ConfigError::Env`] for a value that does not parse, [`ConfigError::Invalid`] for one out
    /// of range; never a silent default.
    ///
    /// # Examples
    /// ```
    /// use batchkv_batcher::AdaptiveBatchConfig;
    ///
    /// let cfg = AdaptiveBatchConfig::default_for(100_000)
    ///     .with_env_from(|k| (k == "ADAPT_WINDOW").then(|| "4".to_owned()))?;
    /// assert_eq!(cfg.window, 4);
    /// # Ok::<(), batchkv_batcher::ConfigError>(())
    /// ```
    pub fn with_env_from(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(v) = get("ADAPT_WINDOW") {
            self.window = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "ADAPT_WINDOW",
                value: v.clone(),
                expected: "a whole number of chunks",
            })?;
        }
        if let Some(v) = get("ADAPT_DOWN_PCT") {
            self.down_pct = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "ADAPT_DOWN_PCT",
                value: v.clone(),
                expected: "a fraction between 0 and 1, such as 0.30",
            })?;
        }
        if let Some(v) = get("ADAPT_TARGET_RSD") {
            self.target_rsd_pct = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "ADAPT_TARGET_RSD",
                value: v.clone(),
                expected: "a percentage, such as 15",
            })?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 {
            return Err(ConfigError::invalid("window", "must be at least 1, got 0"));
        }
        if self.min_chunk == 0 {
            return Err(ConfigError::invalid(
                "min_chunk",
                "must be at least 1, got 0",
            ));
        }
        if self.min_chunk > self.max_chunk {
            return Err(ConfigError::invalid(
                "min_chunk",
                format!(
                    "must not exceed max_chunk, got {} > {}",
                    self.min_chunk, self.max_chunk
                ),
            ));
        }
        if !(self.min_chunk..=self.max_chunk).contains(&self.initial_chunk) {
            return Err(ConfigError::invalid(
                "initial_chunk",
                format!(
                    "must be within [{}, {}], got {}",
                    self.min_chunk, self.max_chunk, self.initial_chunk
                ),
            ));
        }
        for (field, v) in [("up_pct", self.up_pct), ("down_pct", self.down_pct)] {
            if !(v > 0.0 && v < 1.0) {
                return Err(ConfigError::invalid(
                    field,
                    format!("must be strictly between 0 and 1, got {v}"),
                ));
            }
        }
        if !(self.target_rsd_pct.is_finite() && self.target_rsd_pct > 0.0) {
            return Err(ConfigError::invalid(
                "target_rsd_pct",
                format!("must be a positive percentage, got {}", self.target_rsd_pct),
            ));
        }
        Ok(())
    }
}

/// One timed chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkRecord {
    /// Operations in the chunk.
    pub len: usize,
    /// How long it took.
    pub elapsed: Duration,
    /// Its throughput, operations per second.
    pub ops_per_sec: f64,
}

/// A summary of an adaptive run: the reference system's `AdaptiveBatchResult`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveBatchResult {
    /// Operations in all recorded chunks.
    pub total_ops: usize,
    /// Time of all recorded chunks.
    pub elapsed: Duration,
    /// Every chunk, in order.
    pub chunks: Vec<ChunkRecord>,
    /// RSD of per-chunk throughput over the whole run, in percent (0 for under two chunks).
    pub rsd_pct: f64,
    /// The chunk size the controller would use next.
    pub final_chunk: usize,
}

impl AdaptiveBatchResult {
    /// Overall throughput, operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total_ops as f64 / secs
        } else {
            0.0
        }
    }
}

/// Relative standard deviation (population) of `xs`, in percent; 0 for fewer than two values.
pub fn rsd_pct(xs: impl IntoIterator<Item = f64> + Clone) -> f64 {
    let n = xs.clone().into_iter().count();
    if n < 2 {
        return 0.0;
    }
    let mean = xs.clone().into_iter().sum::<f64>() / n as f64;
    if mean == 0.0 {
        return 0.0;
    }
    let var = xs.into_iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    var.sqrt() / mean * 100.0
}

/// Steers chunk size by throughput variance.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use batchkv_batcher::{AdaptiveBatchConfig, ChunkController};
///
/// let mut c = ChunkController::new(AdaptiveBatchConfig::default_for(1_000_000))?;
/// let first = c.next_chunk_size();
/// for _ in 0..6 {
///     let n = c.next_chunk_size();
///     c.record(n, Duration::from_micros(n as u64)); // exactly 1M ops/s: steady
/// }
/// assert!(c.next_chunk_size() > first);
/// # Ok::<(), batchkv_batcher::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ChunkController {
    cfg: AdaptiveBatchConfig,
    chunk: usize,
    window: VecDeque<f64>,
    records: Vec<ChunkRecord>,
}

impl ChunkController {
    /// A controller starting at `cfg.initial_chunk`.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid `cfg`.
    pub fn new(cfg: AdaptiveBatchConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(ChunkController {
            cfg,
            chunk: cfg.initial_chunk,
            window: VecDeque::with_capacity(cfg.window),
            records: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AdaptiveBatchConfig {
        &self.cfg
    }

    /// The size of the next chunk.
    pub fn next_chunk_size(&self) -> usize {
        self.chunk
    }

    /// Records a chunk of `len` operations that took `elapsed`, and adjusts the size once the
    /// window is full.
    pub fn record(&mut self, len: usize, elapsed: Duration) {
        // A chunk too fast for the clock counts as taking a nanosecond.
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ops_per_sec = len as f64 / secs;
        self.records.push(ChunkRecord {
            len,
            elapsed,
            ops_per_sec,
        });
        self.window.push_back(ops_per_sec);
        if self.window.len() < self.cfg.window {
            return;
        }
        let rsd = rsd_pct(self.window.iter().copied());
        let c = self.chunk as f64;
        let next = if rsd <= self.cfg.target_rsd_pct {
            (c * (1.0 + self.cfg.up_pct)).ceil()
        } else {
            (c * (1.0 - self.cfg.down_pct)).floor()
        };
        self.chunk = (next as usize).clamp(self.cfg.min_chunk, self.cfg.max_chunk);
        self.window.clear();
    }

    /// RSD over the chunks in the current window (partial), in percent.
    pub fn window_rsd_pct(&self) -> f64 {
        rsd_pct(self.window.iter().copied())
    }

    /// The summary of everything recorded.
    pub fn report(&self) -> AdaptiveBatchResult {
        AdaptiveBatchResult {
            total_ops: self.records.iter().map(|r| r.len).sum(),
            elapsed: self.records.iter().map(|r| r.elapsed).sum(),
            chunks: self.records.clone(),
            rsd_pct: rsd_pct(self.records.iter().map(|r| r.ops_per_sec)),
            final_chunk: self.chunk,
        }
    }
}

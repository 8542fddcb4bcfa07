//! The reference systems' claimed figures: the one table the harnesses, the report and the plots
//! take them from.
//!
//! They come from the progress reports the user handed over (R: a Rust VM runtime's RocksDB
//! layer; G: an etcd-compatible store over Raft), were measured on those systems' machines and
//! never checked here: claims to beat, not same-run references.

use crate::fmt::rate;

/// Which reference system made a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// The Rust VM runtime's RocksDB storage layer.
    R,
    /// The etcd-compatible metadata store (Go, Raft, RocksDB).
    G,
}

/// What a claimed figure measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Operations (or transactions) per second.
    OpsPerS,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// A ratio, such as a compression ratio.
    Times,
    /// A percentage.
    Percent,
}

impl Unit {
    /// `v` in this unit: `754K ops/s`, `0.500 s`, `10.00 ms`, `2.00x`, `15%`.
    pub fn fmt(self, v: f64) -> String {
        match self {
            Unit::OpsPerS => format!("{} ops/s", rate(v)),
            Unit::Seconds => format!("{v:.3} s"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Times => format!("{v:.2}x"),
            Unit::Percent => format!("{v}%"),
        }
    }
}

/// A batch write of the engine bench that a claim names: its durability mode (`no-wal`, `wal`,
/// `sync`, as [`crate::rows::EngineWriteRow::mode`]), its size and its strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchWrite {
    /// The durability mode.
    pub mode: &'static str,
    /// Operations in the batch.
    pub ops: usize,
    /// `chunked-5000` or `adaptive`.
    pub strategy: &'static str,
}

/// Names one claim of [`CLAIMS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimId {
    /// R: 754K ops/s, 10K-op batch, WAL off, chunked.
    ChunkedNoWal10k,
    /// R: 860K ops/s, 100K-op batch, WAL off, adaptive.
    AdaptiveNoWal100k,
    /// R: 646K ops/s, 50K-op batch, WAL on, adaptive.
    AdaptiveWal50k,
    /// R: 227K-254K ops/s with the WAL on.
    WalRange,
    /// R's target: batch writes at 200K ops/s or more.
    BatchWriteTarget,
    /// R's target: a 100K-op batch in under 0.5 s.
    Batch100kTarget,
    /// R's target: random reads at 100K ops/s or more.
    RandomReadTarget,
    /// R's target: a compression ratio of 2 or more.
    CompressionTarget,
    /// R's target: P99 latency under 10 ms.
    P99Target,
    /// R's target: RSD of throughput under 15%.
    RsdTarget,
    /// R: 187K TPS at low contention (an in-memory MVCC).
    TxnLowContention,
    /// R: 85K TPS at high contention (an in-memory MVCC).
    TxnHighContention,
    /// G: 100K+ writes/s through Raft.
    Writes,
    /// G: Raft overhead cut by 50-99% by batching.
    RaftOverhead,
    /// G: the concurrent write test, 5.92 s -> 4.67 s for 200 ops.
    ConcurrentWrites,
    /// G: compaction, 150 ms -> 54 ms.
    Compaction,
}

/// One claimed figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Claim {
    /// Which claim.
    pub id: ClaimId,
    /// Who claimed it.
    pub system: System,
    /// A target the system set itself, not a figure it measured.
    pub target: bool,
    /// What was claimed, in words.
    pub what: &'static str,
    /// The figure (the top, for a range).
    pub value: f64,
    /// The bottom of a claimed range.
    pub low: Option<f64>,
    /// The figure's unit.
    pub unit: Unit,
    /// Whether more is better (throughput) or less (time, latency).
    pub higher_is_better: bool,
    /// The engine batch write it was measured with, where it names one.
    pub write: Option<BatchWrite>,
}

impl Claim {
    /// `R: what` or `R target: what`.
    pub fn label(&self) -> String {
        format!(
            "{:?}{}: {}",
            self.system,
            if self.target { " target" } else { "" },
            self.what
        )
    }

    /// The figure as claimed: `754K ops/s`, `227K-254K ops/s`, `< 0.500 s`.
    pub fn figure(&self) -> String {
        match self.low {
            Some(low) => format!("{}-{}", rate(low), self.unit.fmt(self.value)),
            None if self.higher_is_better => self.unit.fmt(self.value),
            None => format!("< {}", self.unit.fmt(self.value)),
        }
    }

    /// `ours` over the claim, oriented so that > 1 means batchkv does better; `None` when not
    /// finite.
    pub fn ratio(&self, ours: f64) -> Option<f64> {
        let r = if self.higher_is_better {
            ours / self.value
        } else {
            self.value / ours
        };
        r.is_finite().then_some(r)
    }
}

const fn measured(id: ClaimId, system: System, what: &'static str, value: f64) -> Claim {
    Claim {
        id,
        system,
        target: false,
        what,
        value,
        low: None,
        unit: Unit::OpsPerS,
        higher_is_better: true,
        write: None,
    }
}

const fn target(id: ClaimId, what: &'static str, value: f64, unit: Unit, higher: bool) -> Claim {
    Claim {
        id,
        system: System::R,
        target: true,
        what,
        value,
        low: None,
        unit,
        higher_is_better: higher,
        write: None,
    }
}

const fn write(mode: &'static str, ops: usize, strategy: &'static str) -> Option<BatchWrite> {
    Some(BatchWrite {
        mode,
        ops,
        strategy,
    })
}

/// Every claim of the reference systems' reports, in the order the report lists them.
pub const CLAIMS: &[Claim] = &[
    Claim {
        write: write("no-wal", 10_000, "chunked-5000"),
        ..measured(
            ClaimId::ChunkedNoWal10k,
            System::R,
            "10K-op batch, WAL off, chunked (RSD 0.26%)",
            754_000.0,
        )
    },
    Claim {
        write: write("no-wal", 100_000, "adaptive"),
        ..measured(
            ClaimId::AdaptiveNoWal100k,
            System::R,
            "100K-op batch, WAL off, adaptive (RSD 25%)",
            860_000.0,
        )
    },
    Claim {
        write: write("wal", 50_000, "adaptive"),
        ..measured(
            ClaimId::AdaptiveWal50k,
            System::R,
            "50K-op batch, WAL on, adaptive (RSD 12%)",
            646_000.0,
        )
    },
    Claim {
        low: Some(227_000.0),
        ..measured(
            ClaimId::WalRange,
            System::R,
            "batch writes, WAL on",
            254_000.0,
        )
    },
    target(
        ClaimId::BatchWriteTarget,
        "batch write >= 200K ops/s",
        200_000.0,
        Unit::OpsPerS,
        true,
    ),
    target(
        ClaimId::Batch100kTarget,
        "100K-op batch < 0.5 s",
        0.5,
        Unit::Seconds,
        false,
    ),
    target(
        ClaimId::RandomReadTarget,
        "random read >= 100K ops/s",
        100_000.0,
        Unit::OpsPerS,
        true,
    ),
    target(
        ClaimId::CompressionTarget,
        "compression ratio >= 2x",
        2.0,
        Unit::Times,
        true,
    ),
    target(ClaimId::P99Target, "P99 < 10 ms", 10.0, Unit::Millis, false),
    target(ClaimId::RsdTarget, "RSD < 15%", 15.0, Unit::Percent, false),
    measured(
        ClaimId::TxnLowContention,
        System::R,
        "MVCC 187K TPS, low contention (in memory)",
        187_000.0,
    ),
    measured(
        ClaimId::TxnHighContention,
        System::R,
        "MVCC 85K TPS, high contention (in memory)",
        85_000.0,
    ),
    measured(
        ClaimId::Writes,
        System::G,
        "100K+ writes/s (etcd-compatible, through Raft)",
        100_000.0,
    ),
    Claim {
        low: Some(50.0),
        unit: Unit::Percent,
        ..measured(
            ClaimId::RaftOverhead,
            System::G,
            "Raft overhead cut by 50-99% (ops batched into one entry)",
            99.0,
        )
    },
    Claim {
        unit: Unit::Seconds,
        higher_is_better: false,
        ..measured(
            ClaimId::ConcurrentWrites,
            System::G,
            "concurrent write test of 200 ops, 5.92 s -> 4.67 s",
            4.67,
        )
    },
    Claim {
        unit: Unit::Millis,
        higher_is_better: false,
        ..measured(
            ClaimId::Compaction,
            System::G,
            "compaction time, 150 ms -> 54 ms",
            54.0,
        )
    },
];

/// The claim `id`.
pub fn claim(id: ClaimId) -> &'static Claim {
    CLAIMS
        .iter()
        .find(|c| c.id == id)
        .expect("every ClaimId has its row in CLAIMS (a unit test checks)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_exactly_one_row() {
        for c in CLAIMS {
            assert_eq!(
                CLAIMS.iter().filter(|o| o.id == c.id).count(),
                1,
                "{:?}",
                c.id
            );
            assert_eq!(claim(c.id), c);
        }
        // A new ClaimId without a row fails here, through `claim`'s expect.
        for id in [
            ClaimId::ChunkedNoWal10k,
            ClaimId::AdaptiveNoWal100k,
            ClaimId::AdaptiveWal50k,
            ClaimId::WalRange,
            ClaimId::BatchWriteTarget,
            ClaimId::Batch100kTarget,
            ClaimId::RandomReadTarget,
            ClaimId::CompressionTarget,
            ClaimId::P99Target,
            ClaimId::RsdTarget,
            ClaimId::TxnLowContention,
            ClaimId::TxnHighContention,
            ClaimId::Writes,
            ClaimId::RaftOverhead,
            ClaimId::ConcurrentWrites,
            ClaimId::Compaction,
        ] {
            assert_eq!(claim(id).id, id);
        }
    }

    #[test]
    fn labels_figures_and_ratios() {
        let c = claim(ClaimId::ChunkedNoWal10k);
        assert_eq!(c.label(), "R: 10K-op batch, WAL off, chunked (RSD 0.26%)");
        assert_eq!(c.figure(), "754K ops/s");
        assert_eq!(c.ratio(1_508_000.0), Some(2.0));
        assert_eq!(claim(ClaimId::WalRange).figure(), "227K-254K ops/s");
        let t = claim(ClaimId::Batch100kTarget);
        assert_eq!(t.label(), "R target: 100K-op batch < 0.5 s");
        assert_eq!(t.figure(), "< 0.500 s");
        assert_eq!(t.ratio(0.25), Some(2.0));
        assert_eq!(t.ratio(0.0), None);
        assert_eq!(claim(ClaimId::RaftOverhead).figure(), "50-99%");
    }
}

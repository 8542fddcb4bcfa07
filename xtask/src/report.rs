//! `report.md`: the run's key figures, each beside its reference (raw rust-rocksdb and
//! `db_bench` measured in the same run, and the reference system's claimed figures), the plots,
//! then every harness's own section and the criterion table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bench::write as write_file;
use crate::data::{Data, geo_mean};
use crate::plot::Plot;

/// Codec ratios: (what it shows, numerator id, denominator id); each is the throughput of the
/// first over the second, both criterion benchmarks of the same run.
const CODEC_RATIOS: &[(&str, &str, &str)] = &[
    (
        "codec decode, 1 op: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/1/fallback",
        "codec/decode/1/prost_direct",
    ),
    (
        "codec decode, 100 ops: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/100/fallback",
        "codec/decode/100/prost_direct",
    ),
    (
        "codec decode, 1000 ops: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/1000/fallback",
        "codec/decode/1000/prost_direct",
    ),
    (
        "codec decode, 1000 ops: fallback API / prost + the same conversion (the chain's own cost)",
        "codec/decode/1000/fallback",
        "codec/decode/1000/prost_then_convert",
    ),
    (
        "codec encode, 1000 compressible ops: lz4 / none",
        "codec/lz4/compressible/encode_lz4",
        "codec/lz4/compressible/encode_none",
    ),
    (
        "codec decode, 1000 compressible ops: lz4 / none",
        "codec/lz4/compressible/decode_lz4",
        "codec/lz4/compressible/decode_none",
    ),
    (
        "codec encode, 1000 random ops: lz4 / none",
        "codec/lz4/random/encode_lz4",
        "codec/lz4/random/encode_none",
    ),
];

/// A figure of this run beside its reference.
struct Cmp {
    what: String,
    ours: String,
    reference: String,
    /// Ours over the reference, oriented so that > 1 means batchkv does better.
    ratio: Option<f64>,
}

impl Cmp {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} |",
            self.what,
            self.ours,
            self.reference,
            self.ratio.map_or("-".to_owned(), |r| format!("**{r:.2}**"))
        )
    }
}

/// What a claimed figure measures.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    OpsPerS,
    Seconds,
    Millis,
    Times,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::OpsPerS => format!("{} ops/s", rate(v)),
            Unit::Seconds => format!("{v:.3} s"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Times => format!("{v:.2}x"),
        }
    }
}

/// One of the reference system's claimed figures, and the closest figure of this run.
struct Claim {
    claim: &'static str,
    theirs: f64,
    unit: Unit,
    higher_is_better: bool,
    /// The figure of this run and what it is, or why there is none.
    ours: Result<(f64, String), String>,
}

impl Claim {
    /// Ours over theirs, oriented so that > 1 means batchkv does better.
    fn ratio(&self) -> Option<f64> {
        let (ours, _) = self.ours.as_ref().ok()?;
        let r = if self.higher_is_better {
            ours / self.theirs
        } else {
            self.theirs / ours
        };
        r.is_finite().then_some(r)
    }
}

/// Claims of the reference systems (their progress reports, on their machines, never checked)
/// matched with the same configuration in this run where one was measured.
fn claims(d: &Data) -> Vec<Claim> {
    let engine = |mode: &str, size: f64, strategy: &str, label: &str| {
        d.engine(mode, size, strategy)
            .map(|w| (w.ops_per_s, format!("{label} (RSD {:.1}%)", w.rsd_pct)))
            .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned())
    };
    // The reference system measured 50K-op batches; this run has 10K and 100K.
    let wal_50k = if d.engine("wal", 50_000.0, "adaptive").is_some() {
        engine("wal", 50_000.0, "adaptive", "50K ops, WAL on, Adaptive")
    } else {
        engine(
            "wal",
            100_000.0,
            "adaptive",
            "100K ops (no 50K point), WAL on, Adaptive",
        )
    };
    let slowest_wal = d
        .engine_writes
        .iter()
        .filter(|w| w.mode == "wal" && w.strategy != "raw-mono")
        .min_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s))
        .map(|w| {
            (
                w.ops_per_s,
                format!(
                    "slowest WAL-on engine write: {} ops, {}",
                    count(w.size),
                    w.strategy
                ),
            )
        })
        .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned());
    let batch_100k = d
        .engine("wal", 100_000.0, "mono")
        .map(|w| (100_000.0 / w.ops_per_s, "100K ops, WAL on, Mono".to_owned()))
        .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned());
    let read = |what: &str, label: &str| {
        d.engine_reads
            .iter()
            .find(|r| r.what == what)
            .map(|r| (r.engine_ops_per_s, label.to_owned()))
            .ok_or_else(|| "not run (engine-reads.csv missing)".to_owned())
    };
    let lz4 = d
        .engine_compression
        .iter()
        .find(|c| c.codec == "lz4")
        .map(|c| {
            (
                c.ratio,
                "LZ4, metadata-like values (raw key+value / SST)".to_owned(),
            )
        })
        .ok_or_else(|| "not run (engine-compression.csv missing)".to_owned());
    // The worst p99 over the thread counts: the target is for a loaded system.
    let p99 = best_threads(d, "store/put/sync/", "p99_ns", true)
        .map(|(t, ns)| {
            (
                ns / 1e6,
                format!(
                    "Store puts, sync, {} (the highest p99 of the thread counts)",
                    clients(t)
                ),
            )
        })
        .ok_or_else(|| "not run (store.csv missing)".to_owned());
    let txn = |level: &str| {
        let mut best: Option<(f64, String)> = None;
        for mode in ["wal", "sync"] {
            if let Some((t, tps)) = best_threads(
                d,
                &format!("store/txn/{level}/{mode}/"),
                "committed_tps",
                true,
            ) && best.as_ref().is_none_or(|b| tps > b.0)
            {
                best = Some((
                    tps,
                    format!(
                        "Store transactions, {mode}, {} (durable, not in-memory)",
                        clients(t)
                    ),
                ));
            }
        }
        best.ok_or_else(|| "not run (store.csv missing)".to_owned())
    };
    let put = |mode: &str, label: &str| {
        best_threads(d, &format!("store/put/{mode}/"), "ops_per_s", true)
            .map(|(t, v)| (v, format!("Store puts, {label}, {}", clients(t))))
            .ok_or_else(|| "not run (store.csv missing)".to_owned())
    };
    vec![
        Claim {
            claim: "R: 10K-op batch, WAL off, chunked (RSD 0.26%)",
            theirs: 754_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: engine(
                "no-wal",
                10_000.0,
                "chunked-5000",
                "10K ops, WAL off, Chunked 5000",
            ),
        },
        Claim {
            claim: "R: 100K-op batch, WAL off, adaptive (RSD 25%)",
            theirs: 860_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: engine(
                "no-wal",
                100_000.0,
                "adaptive",
                "100K ops, WAL off, Adaptive",
            ),
        },
        Claim {
            claim: "R: 50K-op batch, WAL on, adaptive (RSD 12%)",
            theirs: 646_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: wal_50k,
        },
        Claim {
            claim: "R: WAL on, 227K-254K ops/s (top of the range)",
            theirs: 254_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: engine("wal", 100_000.0, "mono", "100K ops, WAL on, Mono"),
        },
        Claim {
            claim: "R target: batch write >= 200K ops/s",
            theirs: 200_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: slowest_wal,
        },
        Claim {
            claim: "R target: 100K-op batch < 0.5 s",
            theirs: 0.5,
            unit: Unit::Seconds,
            higher_is_better: false,
            ours: batch_100k,
        },
        Claim {
            claim: "R target: random read >= 100K ops/s",
            theirs: 100_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: read(
                "point-get/cache-miss",
                "engine point gets, block cache miss",
            ),
        },
        Claim {
            claim: "R target: compression ratio >= 2x",
            theirs: 2.0,
            unit: Unit::Times,
            higher_is_better: true,
            ours: lz4,
        },
        Claim {
            claim: "R target: P99 < 10 ms",
            theirs: 10.0,
            unit: Unit::Millis,
            higher_is_better: false,
            ours: p99,
        },
        Claim {
            claim: "R: MVCC 187K TPS, low contention (in memory)",
            theirs: 187_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: txn("low"),
        },
        Claim {
            claim: "R: MVCC 85K TPS, high contention (in memory)",
            theirs: 85_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: txn("high"),
        },
        Claim {
            claim: "G: 100K+ writes/s (etcd-compatible, through Raft)",
            theirs: 100_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: put("sync", "fsync per group commit"),
        },
        Claim {
            claim: "G: 100K+ writes/s (etcd-compatible, through Raft)",
            theirs: 100_000.0,
            unit: Unit::OpsPerS,
            higher_is_better: true,
            ours: put("wal", "WAL without fsync"),
        },
    ]
}

/// The thread count of `prefix<threads>` cases with the best `metric` (the highest, or the
/// lowest), and that value.
fn best_threads(d: &Data, prefix: &str, metric: &str, highest: bool) -> Option<(usize, f64)> {
    d.store_series(prefix, metric)
        .into_iter()
        .max_by(|a, b| {
            if highest {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            }
        })
        .map(|(t, v)| (t as usize, v))
}

/// This run's figures beside the references measured in the same run.
fn references(d: &Data) -> Vec<Cmp> {
    let mut out = Vec::new();
    // The engine against raw rust-rocksdb with the same options.
    for (mode, label) in [
        ("no-wal", "WAL off"),
        ("wal", "WAL on"),
        ("sync", "WAL + sync"),
    ] {
        for size in [10_000.0, 100_000.0] {
            if let (Some(m), Some(r)) = (
                d.engine(mode, size, "mono"),
                d.engine(mode, size, "raw-mono"),
            ) {
                out.push(Cmp {
                    what: format!("engine batch write, {} ops, {label}, Mono", count(size)),
                    ours: format!("{} ops/s", rate(m.ops_per_s)),
                    reference: format!("raw rust-rocksdb: {} ops/s", rate(r.ops_per_s)),
                    ratio: Some(m.ops_per_s / r.ops_per_s),
                });
            }
        }
    }
    for (strategy, label) in [
        ("mono", "Mono"),
        ("chunked-5000", "Chunked 5000"),
        ("adaptive", "Adaptive"),
    ] {
        if let Some((g, n)) = d.engine_vs_raw(strategy, None) {
            out.push(Cmp {
                what: format!("engine batch writes, {label}: geometric mean over {n} points"),
                ours: "-".to_owned(),
                reference: "raw rust-rocksdb, same sizes and modes".to_owned(),
                ratio: Some(g),
            });
        }
    }
    for r in &d.engine_reads {
        out.push(Cmp {
            what: format!("engine reads, {}", r.what),
            ours: format!("{} ops/s", rate(r.engine_ops_per_s)),
            reference: format!("raw rust-rocksdb: {} ops/s", rate(r.raw_ops_per_s)),
            ratio: Some(r.engine_ops_per_s / r.raw_ops_per_s),
        });
    }
    // db_bench against rust-rocksdb: the same sustained RocksDB workload from C++ and through
    // the binding; and single puts through the whole Store.
    for db in &d.db_bench {
        let store_mode = if db.mode == "no-wal" {
            "none"
        } else {
            &db.mode
        };
        let what = format!(
            "db_bench fillrandom, {}, {}",
            if db.batch == 1.0 {
                "single puts".to_owned()
            } else {
                format!("batches of {}", count(db.batch))
            },
            mode_label(&db.mode)
        );
        let raw = if db.batch == 1000.0 {
            d.store(&format!("store/raw/batch1000/{store_mode}"), "ops_per_s")
        } else if db.batch == 1.0 {
            d.store(&format!("store/raw/put/{store_mode}/1"), "ops_per_s")
        } else {
            None
        };
        out.push(Cmp {
            what: what.clone(),
            ours: raw.map_or("no same-run rust-rocksdb figure".to_owned(), |v| {
                format!("raw rust-rocksdb: {} ops/s", rate(v))
            }),
            reference: format!("db_bench: {} ops/s", rate(db.ops_per_s)),
            ratio: raw.map(|v| v / db.ops_per_s),
        });
        if db.batch == 1.0
            && let Some(v) = d.store(&format!("store/put/{store_mode}/1"), "ops_per_s")
        {
            out.push(Cmp {
                what: format!("{what}: the Store, 1 client"),
                ours: format!("{} ops/s", rate(v)),
                reference: format!("db_bench: {} ops/s", rate(db.ops_per_s)),
                ratio: Some(v / db.ops_per_s),
            });
        }
    }
    // MVCC over the raw engine and raw rust-rocksdb.
    for entry in ["1", "100", "1000"] {
        for kind in ["insert", "update"] {
            let case = format!("mvcc/apply/{entry}/{kind}");
            let m = d.mvcc(&case, "mvcc", "ops_per_s");
            let r = d.mvcc(&case, "raw-rocksdb", "ops_per_s");
            if let (Some(m), Some(r)) = (m, r) {
                out.push(Cmp {
                    what: format!("MVCC apply, {entry}-put entries, {kind}"),
                    ours: format!("{} puts/s", rate(m)),
                    reference: format!("raw rust-rocksdb: {} puts/s", rate(r)),
                    ratio: Some(m / r),
                });
            }
        }
    }
    for (case, label) in [
        ("mvcc/get/latest", "MVCC point get, latest"),
        ("mvcc/get/old", "MVCC point get, old revision"),
    ] {
        if let (Some(m), Some(r)) = (
            d.mvcc(case, "mvcc", "ns_per_op"),
            d.mvcc(case, "raw-rocksdb", "ns_per_op"),
        ) {
            out.push(Cmp {
                what: label.to_owned(),
                ours: format!("{m:.0} ns"),
                reference: format!("raw rust-rocksdb get: {r:.0} ns"),
                ratio: Some(r / m),
            });
        }
    }
    if let (Some(m), Some(r)) = (
        d.mvcc("mvcc/range/1000", "mvcc", "us_per_op"),
        d.mvcc("mvcc/range/1000", "raw-engine", "us_per_op"),
    ) {
        out.push(Cmp {
            what: "MVCC range of 1,000 keys".to_owned(),
            ours: format!("{m:.0} µs"),
            reference: format!("raw engine range: {r:.0} µs"),
            ratio: Some(r / m),
        });
    }
    // The whole write pipeline (batcher, codec, MVCC, engine) over raw rust-rocksdb.
    for (mode, threads) in [("sync", 1), ("wal", 1), ("none", 1), ("sync", 64)] {
        let ours = d.store(&format!("store/put/{mode}/{threads}"), "ops_per_s");
        let raw = d.store(&format!("store/raw/put/{mode}/{threads}"), "ops_per_s");
        if let (Some(o), Some(r)) = (ours, raw) {
            out.push(Cmp {
                what: format!(
                    "Store puts, {}, {threads} client{}",
                    mode_label(mode),
                    if threads == 1 { "" } else { "s" }
                ),
                ours: format!("{} ops/s", rate(o)),
                reference: format!(
                    "raw rust-rocksdb single puts, {threads} thread{}: {} ops/s",
                    if threads == 1 { "" } else { "s" },
                    rate(r)
                ),
                ratio: Some(o / r),
            });
        }
    }
    for mode in ["wal", "none"] {
        let case = format!("store/codec/apply/{mode}");
        if let (Some(p), Some(direct)) = (
            d.store(&case, "pipeline_puts_per_s"),
            d.store(&case, "direct_puts_per_s"),
        ) {
            out.push(Cmp {
                what: format!("MVCC apply through the codec, {}", mode_label(mode)),
                ours: format!("{} puts/s", rate(p)),
                reference: format!("without the codec: {} puts/s", rate(direct)),
                ratio: Some(p / direct),
            });
        }
    }
    out
}

/// The few figures printed at the end of the run (and at the top of the report).
fn summary(d: &Data, claims: &[Claim]) -> Vec<Cmp> {
    let mut out = Vec::new();
    for (mode, label) in [
        ("no-wal", "WAL off"),
        ("wal", "WAL on"),
        ("sync", "WAL + sync"),
    ] {
        if let (Some(m), Some(r)) = (
            d.engine(mode, 100_000.0, "mono"),
            d.engine(mode, 100_000.0, "raw-mono"),
        ) {
            out.push(Cmp {
                what: format!("batch write, 100K ops, {label}"),
                ours: format!("{} ops/s", rate(m.ops_per_s)),
                reference: format!("raw rust-rocksdb {}", rate(r.ops_per_s)),
                ratio: Some(m.ops_per_s / r.ops_per_s),
            });
        }
    }
    if let Some((g, n)) = d.engine_vs_raw("mono", None) {
        out.push(Cmp {
            what: format!("engine overhead, geometric mean of {n} points"),
            ours: "Mono".to_owned(),
            reference: "raw rust-rocksdb".to_owned(),
            ratio: Some(g),
        });
    }
    if let Some(db) = d.db_bench("wal", 1000.0) {
        let raw = d
            .store("store/raw/batch1000/wal", "ops_per_s")
            .or_else(|| d.engine("wal", 1000.0, "raw-mono").map(|w| w.ops_per_s));
        if let Some(raw) = raw {
            out.push(Cmp {
                what: "sustained 1000-put batches, WAL on".to_owned(),
                ours: format!("rust-rocksdb {}", rate(raw)),
                reference: format!("db_bench {}", rate(db.ops_per_s)),
                ratio: Some(raw / db.ops_per_s),
            });
        }
    }
    if let Some(m) = d.mvcc("mvcc/apply/1000/insert", "mvcc", "ops_per_s")
        && let Some(r) = d.mvcc("mvcc/apply/1000/insert", "raw-rocksdb", "ops_per_s")
    {
        out.push(Cmp {
            what: "MVCC apply, 1000-put entries".to_owned(),
            ours: format!("{} puts/s", rate(m)),
            reference: format!("raw rust-rocksdb {}", rate(r)),
            ratio: Some(m / r),
        });
    }
    if let Some((t, v)) = best_threads(d, "store/put/sync/", "ops_per_s", true) {
        let p99 = d.store(&format!("store/put/sync/{t}"), "p99_ns");
        let raw64 = d.store("store/raw/put/sync/64", "ops_per_s");
        out.push(Cmp {
            what: format!("Store puts, sync, {}", clients(t)),
            ours: format!(
                "{} ops/s{}",
                rate(v),
                p99.map_or(String::new(), |p| format!(", p99 {:.1} ms", p / 1e6))
            ),
            reference: raw64.map_or("-".to_owned(), |r| {
                format!("raw rust-rocksdb, 64 threads {}", rate(r))
            }),
            ratio: raw64.map(|r| v / r),
        });
    }
    let group = |p: f64| {
        d.batcher
            .iter()
            .find(|b| b.sink == "fsync-like" && b.policy == "adaptive" && b.producers == p)
    };
    if let (Some(one), Some(many)) = (group(1.0), group(64.0)) {
        out.push(Cmp {
            what: "group commit, fsync-like sink, adaptive wait, 64 producers".to_owned(),
            ours: format!(
                "{} ops/s, p99 {:.1} ms",
                rate(many.ops_per_s),
                many.p99_us / 1e3
            ),
            reference: format!("1 producer {}", rate(one.ops_per_s)),
            ratio: Some(many.ops_per_s / one.ops_per_s),
        });
    }
    if let (Some(f), Some(p)) = (
        d.criterion("codec/decode/1000/fallback"),
        d.criterion("codec/decode/1000/prost_direct"),
    ) {
        out.push(Cmp {
            what: "codec decode, 1000 ops".to_owned(),
            ours: format!("{} ops/s", f.ops_per_s.map_or("-".to_owned(), rate)),
            reference: format!("prost alone {}", p.ops_per_s.map_or("-".to_owned(), rate)),
            ratio: Some(p.mean_ns / f.mean_ns),
        });
    }
    let rated: Vec<f64> = claims.iter().filter_map(Claim::ratio).collect();
    if !rated.is_empty() {
        out.push(Cmp {
            what: "reference system's claims".to_owned(),
            ours: format!(
                "{} of {} matched or beaten",
                rated.iter().filter(|r| **r >= 1.0).count(),
                rated.len()
            ),
            reference: "their figures, their machines".to_owned(),
            ratio: geo_mean(&rated),
        });
    }
    out
}

/// A plain-text table for the terminal.
fn text_table(rows: &[Cmp]) -> String {
    let head = ["figure", "batchkv", "reference", "ratio"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|c| {
            [
                c.what.clone(),
                c.ours.clone(),
                c.reference.clone(),
                c.ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |row: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    let mut out = line(head);
    out.push_str(&line([
        &"-".repeat(w[0]),
        &"-".repeat(w[1]),
        &"-".repeat(w[2]),
        &"-".repeat(w[3]),
    ]));
    for row in &cells {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}

/// Writes `report.md` (and `ratios.csv`); returns the summary for the terminal.
pub fn write(dir: &Path, d: &Data, plots: &[Plot]) -> Result<String> {
    let get = |k: &str| d.run(k).unwrap_or("");
    let quick = get("quick") == "true";
    let claims = claims(d);
    let summary = summary(d, &claims);
    let refs = references(d);

    let mut md = String::new();
    writeln!(md, "# batchkv benchmark report\n")?;
    writeln!(
        md,
        "Command: `{}`{}  ",
        get("command"),
        if quick {
            " (smoke run: short measurements, figures are rough)"
        } else {
            ""
        }
    )?;
    writeln!(md, "Machine: {}  ", get("machine"))?;
    writeln!(
        md,
        "RocksDB `db_bench`: {}{}  ",
        get("db_bench"),
        if get("db_bench_assertions") == "true" {
            " (this build has assertions enabled and warns that its benchmarks are \
             \"unnecessarily slow\": its figures are a floor for RocksDB, not its best)"
        } else {
            ""
        }
    )?;
    if let Ok(t) = std::fs::read_to_string(dir.join("timings.csv")) {
        let steps: Vec<String> = t
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(','))
            .map(|(s, secs)| format!("{s} {secs} s"))
            .collect();
        writeln!(md, "Run time: {}", steps.join(", "))?;
    }
    writeln!(
        md,
        "\nEvery ratio is batchkv's figure over its reference, oriented so that **> 1 means \
         batchkv does better** (throughput over throughput, or the reference's time or latency \
         over ours).\n"
    )?;

    if !summary.is_empty() {
        writeln!(md, "## Summary\n")?;
        writeln!(
            md,
            "| figure | batchkv | reference | ratio |\n|---|---|---|---:|"
        )?;
        for c in &summary {
            writeln!(md, "{}", c.row())?;
        }
        writeln!(md)?;
    }

    writeln!(md, "## Against the reference systems' claimed figures\n")?;
    writeln!(
        md,
        "From the progress reports the user handed over (R: a Rust VM runtime's RocksDB layer; \
         G: an etcd-compatible store over Raft). Their figures were measured on their machines \
         and never checked here: claims to beat, not same-run references.\n"
    )?;
    writeln!(
        md,
        "| claim | their figure | batchkv here | configuration here | ratio |\n|---|---:|---:|---|---:|"
    )?;
    let mut ratio_csv = String::from("kind,figure,ours,reference,ratio\n");
    for c in &claims {
        let (ours, config) = match &c.ours {
            Ok((v, cfg)) => (c.unit.fmt(*v), cfg.clone()),
            Err(why) => ("-".to_owned(), why.clone()),
        };
        writeln!(
            md,
            "| {} | {}{} | {ours} | {config} | {} |",
            c.claim,
            if c.higher_is_better { "" } else { "< " },
            c.unit.fmt(c.theirs),
            c.ratio().map_or("-".to_owned(), |r| format!("**{r:.2}**"))
        )?;
        if let (Some(r), Ok((v, _))) = (c.ratio(), &c.ours) {
            writeln!(
                ratio_csv,
                "claim,\"{}\",{v:.3},{:.3},{r:.3}",
                c.claim, c.theirs
            )?;
        }
    }
    writeln!(
        md,
        "\nNo comparable figure in this run: R's \"RSD < 15%\" target (see the RSD columns of the \
         engine section), G's Raft overhead cut of 50-99%, its concurrent write test \
         (5.92 s -> 4.67 s for 200 ops) and its compaction time (150 -> 54 ms).\n"
    )?;

    if !refs.is_empty() {
        writeln!(md, "## Against references measured in the same run\n")?;
        writeln!(
            md,
            "Raw rust-rocksdb opened with the engine's options; RocksDB's `db_bench` (`fillrandom`, \
             16-byte keys, 100-byte incompressible values, the engine's memtable, cache, Bloom and \
             compression settings) where installed. A db_bench row sets sustained writes through \
             rust-rocksdb (the store bench's raw cases) beside the C++ tool doing the same: the \
             binding's cost, and the difference of RocksDB versions and builds.\n"
        )?;
        writeln!(
            md,
            "| figure | batchkv | reference | ratio |\n|---|---|---|---:|"
        )?;
        for c in &refs {
            writeln!(md, "{}", c.row())?;
            if let Some(r) = c.ratio {
                writeln!(
                    ratio_csv,
                    "same-run,\"{}\",\"{}\",\"{}\",{r:.3}",
                    c.what, c.ours, c.reference
                )?;
            }
        }
        writeln!(md)?;
    }

    writeln!(md, "## Plots\n")?;
    for p in plots {
        match &p.skipped {
            None => writeln!(
                md,
                "### {}\n\n![{}]({})\n\n{}\n",
                p.title, p.title, p.file, p.caption
            )?,
            Some(why) => writeln!(md, "### {}\n\nNot drawn: {why}.\n", p.title)?,
        }
    }

    let mut codec_rows = String::new();
    for (what, num, den) in CODEC_RATIOS {
        let (Some(n), Some(dn)) = (d.criterion(num), d.criterion(den)) else {
            continue;
        };
        let value = dn.mean_ns / n.mean_ns;
        writeln!(codec_rows, "| {what} | {value:.2} |")?;
        writeln!(ratio_csv, "codec,\"{what}\",{num},{den},{value:.3}")?;
    }
    if !codec_rows.is_empty() {
        writeln!(md, "## Codec ratios (same run)\n")?;
        writeln!(
            md,
            "| ratio (throughput of first / second) | value |\n|---|---:|"
        )?;
        md.push_str(&codec_rows);
        md.push('\n');
    }
    write_file(dir.join("ratios.csv"), &ratio_csv)?;

    for (_, text) in sections(dir)? {
        md.push_str(&text);
        md.push('\n');
    }
    if !d.criterion.is_empty() {
        writeln!(md, "## Criterion benchmarks\n")?;
        writeln!(
            md,
            "| benchmark | mean | ± std dev | ops/s | MB/s |\n|---|---:|---:|---:|---:|"
        )?;
        for r in &d.criterion {
            writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.id,
                fmt_time(r.mean_ns),
                fmt_time(r.std_dev_ns),
                r.ops_per_s.map_or("-".to_owned(), rate),
                r.mb_per_s.map_or("-".to_owned(), |v| format!("{v:.1}"))
            )?;
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("codec-sizes.csv")) {
        writeln!(md, "\n## Codec entry sizes (1000 ops)\n\n```\n{text}```")?;
    }
    if !d.missing.is_empty() {
        writeln!(
            md,
            "\nNot in this run (filtered out, or not written): {}.",
            d.missing.join(", ")
        )?;
    }
    write_file(dir.join("report.md"), &md).context("write report.md")?;

    let mut out = String::from("Summary (ratio > 1: batchkv does better than the reference)\n\n");
    if summary.is_empty() {
        out.push_str("no key figure in this run (see report.md)\n");
    } else {
        out.push_str(&text_table(&summary));
    }
    let rated: Vec<&Claim> = claims.iter().filter(|c| c.ratio().is_some()).collect();
    if !rated.is_empty() {
        out.push_str("\nAgainst the reference systems' claimed figures (their machines)\n\n");
        let rows: Vec<Cmp> = rated
            .iter()
            .map(|c| {
                let (v, cfg) = c.ours.as_ref().expect("rated claims have a figure");
                Cmp {
                    what: c.claim.to_owned(),
                    ours: format!("{} ({cfg})", c.unit.fmt(*v)),
                    reference: c.unit.fmt(c.theirs),
                    ratio: c.ratio(),
                }
            })
            .collect();
        out.push_str(&text_table(&rows));
    }
    Ok(out)
}

/// Report sections written by the harnesses (`<name>.md` in the report directory).
pub fn sections(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "report.md" {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("read {}", e.path().display()))?;
            out.push((name, text));
        }
    }
    out.sort();
    Ok(out)
}

fn mode_label(mode: &str) -> &str {
    match mode {
        "no-wal" | "none" => "WAL off",
        "wal" => "WAL on",
        "sync" => "WAL + sync",
        other => other,
    }
}

fn clients(n: usize) -> String {
    format!("{n} client{}", if n == 1 { "" } else { "s" })
}

/// 1000 -> 1K, 100000 -> 100K.
pub fn count(n: f64) -> String {
    if n >= 1e6 && n % 1e6 == 0.0 {
        format!("{}M", n / 1e6)
    } else if n >= 1e3 && n % 1e3 == 0.0 {
        format!("{}K", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// Ops per second, short: 754K, 1.23M.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        "-".to_owned()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}K", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(count(100_000.0), "100K");
        assert_eq!(count(500.0), "500");
        assert_eq!(rate(754_321.0), "754K");
        assert_eq!(rate(1_234_567.0), "1.23M");
        assert_eq!(rate(2_345.0), "2.3K");
    }
}

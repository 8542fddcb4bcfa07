//! `report.md`: the run's key figures, each beside its reference (raw rust-rocksdb and
//! `db_bench` measured in the same run, and the reference system's claimed figures), the plots,
//! then every harness's own section and the criterion table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use batchkv_benches::claims::{CLAIMS, Claim, ClaimId, claim};
use batchkv_benches::fmt::{count, rate};
use batchkv_benches::rows::{MvccMetric, MvccSide, RatioRow, StoreMetric};
use batchkv_benches::table;

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

/// One of the reference systems' claims beside the closest figure of this run.
struct Compared {
    claim: &'static Claim,
    /// The figure of this run and what it is, or why there is none.
    ours: Result<(f64, String), String>,
}

impl Compared {
    /// Ours over theirs, oriented so that > 1 means batchkv does better.
    fn ratio(&self) -> Option<f64> {
        let (ours, _) = self.ours.as_ref().ok()?;
        self.claim.ratio(*ours)
    }
}

/// The reference systems' claims (their progress reports, on their machines, never checked)
/// matched with the same configuration in this run where one was measured; the claims this run
/// has no comparable figure for are left out (see [`uncompared`]). G's write throughput is
/// compared twice, with and without an fsync per group commit.
fn claims(d: &Data) -> Vec<Compared> {
    let engine = |mode: &str, size: usize, strategy: &str, label: &str| {
        d.engine(mode, size, strategy)
            .map(|w| (w.ops_per_s_mean, format!("{label} (RSD {:.1}%)", w.rsd_pct)))
            .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned())
    };
    // The engine write a claim names, or the closest this run has (the reference system
    // measured 50K-op batches; this run has 10K and 100K).
    let claimed_write = |id: ClaimId| {
        let w = claim(id)
            .write
            .expect("the batch-write claims name their write");
        let label = |ops: usize, note: &str| {
            format!(
                "{} ops{note}, {}, {}",
                count(ops as f64),
                mode_label(w.mode),
                strategy_label(w.strategy)
            )
        };
        if d.engine(w.mode, w.ops, w.strategy).is_some() || w.ops != 50_000 {
            engine(w.mode, w.ops, w.strategy, &label(w.ops, ""))
        } else {
            engine(
                w.mode,
                100_000,
                w.strategy,
                &label(100_000, " (no 50K point)"),
            )
        }
    };
    let slowest_wal = d
        .engine_writes
        .iter()
        .filter(|w| w.mode == "wal" && w.strategy != "raw-mono")
        .min_by(|a, b| a.ops_per_s_mean.total_cmp(&b.ops_per_s_mean))
        .map(|w| {
            (
                w.ops_per_s_mean,
                format!(
                    "slowest WAL-on engine write: {} ops, {}",
                    count(w.size as f64),
                    w.strategy
                ),
            )
        })
        .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned());
    let batch_100k = d
        .engine("wal", 100_000, "mono")
        .map(|w| {
            (
                100_000.0 / w.ops_per_s_mean,
                "100K ops, WAL on, Mono".to_owned(),
            )
        })
        .ok_or_else(|| "not run (engine-writes.csv missing)".to_owned());
    let read = |what: &str, label: &str| {
        d.engine_reads
            .iter()
            .find(|r| r.read == what)
            .map(|r| (r.engine_ops_per_s, label.to_owned()))
            .ok_or_else(|| "not run (engine-reads.csv missing)".to_owned())
    };
    let lz4 = d
        .engine_compression
        .iter()
        .find(|c| c.codec == "lz4")
        .map(|c| {
            (
                c.compression_ratio,
                "LZ4, metadata-like values (raw key+value / SST)".to_owned(),
            )
        })
        .ok_or_else(|| "not run (engine-compression.csv missing)".to_owned());
    // The worst p99 over the thread counts: the target is for a loaded system.
    let p99 = best_threads(d, "store/put/sync/", StoreMetric::P99Ns, true)
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
                StoreMetric::CommittedTps,
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
        best_threads(d, &format!("store/put/{mode}/"), StoreMetric::OpsPerS, true)
            .map(|(t, v)| (v, format!("Store puts, {label}, {}", clients(t))))
            .ok_or_else(|| "not run (store.csv missing)".to_owned())
    };
    let mut out = Vec::new();
    for c in CLAIMS {
        let ours = match c.id {
            ClaimId::ChunkedNoWal10k | ClaimId::AdaptiveNoWal100k | ClaimId::AdaptiveWal50k => {
                vec![claimed_write(c.id)]
            }
            ClaimId::WalRange => vec![engine("wal", 100_000, "mono", "100K ops, WAL on, Mono")],
            ClaimId::BatchWriteTarget => vec![slowest_wal.clone()],
            ClaimId::Batch100kTarget => vec![batch_100k.clone()],
            ClaimId::RandomReadTarget => vec![read(
                "point-get/cache-miss",
                "engine point gets, block cache miss",
            )],
            ClaimId::CompressionTarget => vec![lz4.clone()],
            ClaimId::P99Target => vec![p99.clone()],
            ClaimId::TxnLowContention => vec![txn("low")],
            ClaimId::TxnHighContention => vec![txn("high")],
            ClaimId::Writes => vec![
                put("sync", "fsync per group commit"),
                put("wal", "WAL without fsync"),
            ],
            ClaimId::RsdTarget
            | ClaimId::RaftOverhead
            | ClaimId::ConcurrentWrites
            | ClaimId::Compaction => Vec::new(),
        };
        out.extend(ours.into_iter().map(|ours| Compared { claim: c, ours }));
    }
    out
}

/// The claims this run has no comparable figure for, with where to look instead.
fn uncompared(compared: &[Compared]) -> Vec<String> {
    CLAIMS
        .iter()
        .filter(|c| !compared.iter().any(|x| x.claim.id == c.id))
        .map(|c| {
            let whose = match c.id {
                ClaimId::RsdTarget => " (see the RSD columns of the engine section)",
                _ => "",
            };
            format!("{}{whose}", c.label())
        })
        .collect()
}

/// The thread count of `prefix<threads>` cases with the best `metric` (the highest, or the
/// lowest), and that value.
fn best_threads(
    d: &Data,
    prefix: &str,
    metric: StoreMetric,
    highest: bool,
) -> Option<(usize, f64)> {
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
        for size in [10_000, 100_000] {
            if let (Some(m), Some(r)) = (
                d.engine(mode, size, "mono"),
                d.engine(mode, size, "raw-mono"),
            ) {
                out.push(Cmp {
                    what: format!(
                        "engine batch write, {} ops, {label}, Mono",
                        count(size as f64)
                    ),
                    ours: format!("{} ops/s", rate(m.ops_per_s_mean)),
                    reference: format!("raw rust-rocksdb: {} ops/s", rate(r.ops_per_s_mean)),
                    ratio: Some(m.ops_per_s_mean / r.ops_per_s_mean),
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
            what: format!("engine reads, {}", r.read),
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
            if db.batch == 1 {
                "single puts".to_owned()
            } else {
                format!("batches of {}", count(db.batch as f64))
            },
            mode_label(&db.mode)
        );
        let raw = if db.batch == 1000 {
            d.store(
                &format!("store/raw/batch1000/{store_mode}"),
                StoreMetric::OpsPerS,
            )
        } else if db.batch == 1 {
            d.store(
                &format!("store/raw/put/{store_mode}/1"),
                StoreMetric::OpsPerS,
            )
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
        if db.batch == 1
            && let Some(v) = d.store(&format!("store/put/{store_mode}/1"), StoreMetric::OpsPerS)
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
            let m = d.mvcc(&case, MvccSide::Mvcc, MvccMetric::OpsPerS);
            let r = d.mvcc(&case, MvccSide::RawRocksdb, MvccMetric::OpsPerS);
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
            d.mvcc(case, MvccSide::Mvcc, MvccMetric::NsPerOp),
            d.mvcc(case, MvccSide::RawRocksdb, MvccMetric::NsPerOp),
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
        d.mvcc("mvcc/range/1000", MvccSide::Mvcc, MvccMetric::UsPerOp),
        d.mvcc("mvcc/range/1000", MvccSide::RawEngine, MvccMetric::UsPerOp),
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
        let ours = d.store(&format!("store/put/{mode}/{threads}"), StoreMetric::OpsPerS);
        let raw = d.store(
            &format!("store/raw/put/{mode}/{threads}"),
            StoreMetric::OpsPerS,
        );
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
            d.store(&case, StoreMetric::PipelinePutsPerS),
            d.store(&case, StoreMetric::DirectPutsPerS),
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
fn summary(d: &Data, claims: &[Compared]) -> Vec<Cmp> {
    let mut out = Vec::new();
    for (mode, label) in [
        ("no-wal", "WAL off"),
        ("wal", "WAL on"),
        ("sync", "WAL + sync"),
    ] {
        if let (Some(m), Some(r)) = (
            d.engine(mode, 100_000, "mono"),
            d.engine(mode, 100_000, "raw-mono"),
        ) {
            out.push(Cmp {
                what: format!("batch write, 100K ops, {label}"),
                ours: format!("{} ops/s", rate(m.ops_per_s_mean)),
                reference: format!("raw rust-rocksdb {}", rate(r.ops_per_s_mean)),
                ratio: Some(m.ops_per_s_mean / r.ops_per_s_mean),
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
    if let Some(db) = d.db_bench("wal", 1000) {
        let raw = d
            .store("store/raw/batch1000/wal", StoreMetric::OpsPerS)
            .or_else(|| d.engine("wal", 1000, "raw-mono").map(|w| w.ops_per_s_mean));
        if let Some(raw) = raw {
            out.push(Cmp {
                what: "sustained 1000-put batches, WAL on".to_owned(),
                ours: format!("rust-rocksdb {}", rate(raw)),
                reference: format!("db_bench {}", rate(db.ops_per_s)),
                ratio: Some(raw / db.ops_per_s),
            });
        }
    }
    if let Some(m) = d.mvcc(
        "mvcc/apply/1000/insert",
        MvccSide::Mvcc,
        MvccMetric::OpsPerS,
    ) && let Some(r) = d.mvcc(
        "mvcc/apply/1000/insert",
        MvccSide::RawRocksdb,
        MvccMetric::OpsPerS,
    ) {
        out.push(Cmp {
            what: "MVCC apply, 1000-put entries".to_owned(),
            ours: format!("{} puts/s", rate(m)),
            reference: format!("raw rust-rocksdb {}", rate(r)),
            ratio: Some(m / r),
        });
    }
    if let Some((t, v)) = best_threads(d, "store/put/sync/", StoreMetric::OpsPerS, true) {
        let p99 = d.store(&format!("store/put/sync/{t}"), StoreMetric::P99Ns);
        let raw64 = d.store("store/raw/put/sync/64", StoreMetric::OpsPerS);
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
    let group = |p: usize| {
        d.batcher
            .iter()
            .find(|b| b.sink == "fsync-like" && b.policy == "adaptive" && b.producers == p)
    };
    if let (Some(one), Some(many)) = (group(1), group(64)) {
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
    let rated: Vec<f64> = claims.iter().filter_map(Compared::ratio).collect();
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
    let run = &d.run;
    let claims = claims(d);
    let summary = summary(d, &claims);
    let refs = references(d);

    let mut md = String::new();
    writeln!(md, "# batchkv benchmark report\n")?;
    writeln!(
        md,
        "Command: `{}`{}  ",
        run.command,
        if run.quick {
            " (smoke run: short measurements, figures are rough)"
        } else {
            ""
        }
    )?;
    writeln!(md, "Machine: {}  ", run.machine)?;
    writeln!(
        md,
        "RocksDB `db_bench`: {}{}  ",
        run.db_bench,
        if run.db_bench_assertions {
            " (this build has assertions enabled and warns that its benchmarks are \
             \"unnecessarily slow\": its figures are a floor for RocksDB, not its best)"
        } else {
            ""
        }
    )?;
    if !d.timings.is_empty() {
        let steps: Vec<String> = d
            .timings
            .iter()
            .map(|t| format!("{} {:.1} s", t.step, t.seconds))
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
         and never checked here: claims to beat, not same-run references. A claimed range is \
         compared with its top.\n"
    )?;
    writeln!(
        md,
        "| claim | their figure | batchkv here | configuration here | ratio |\n|---|---:|---:|---|---:|"
    )?;
    let mut ratios: Vec<RatioRow> = Vec::new();
    for c in &claims {
        let (ours, config) = match &c.ours {
            Ok((v, cfg)) => (c.claim.unit.fmt(*v), cfg.clone()),
            Err(why) => ("-".to_owned(), why.clone()),
        };
        writeln!(
            md,
            "| {} | {} | {ours} | {config} | {} |",
            c.claim.label(),
            c.claim.figure(),
            c.ratio().map_or("-".to_owned(), |r| format!("**{r:.2}**"))
        )?;
        if let (Some(ratio), Ok((v, _))) = (c.ratio(), &c.ours) {
            ratios.push(RatioRow {
                kind: "claim".to_owned(),
                figure: c.claim.label(),
                ours: format!("{v:.3}"),
                reference: format!("{:.3}", c.claim.value),
                ratio,
            });
        }
    }
    let none = uncompared(&claims);
    if !none.is_empty() {
        writeln!(
            md,
            "\nNo comparable figure in this run: {}.\n",
            none.join("; ")
        )?;
    }

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
            if let Some(ratio) = c.ratio {
                ratios.push(RatioRow {
                    kind: "same-run".to_owned(),
                    figure: c.what.clone(),
                    ours: c.ours.clone(),
                    reference: c.reference.clone(),
                    ratio,
                });
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
        ratios.push(RatioRow {
            kind: "codec".to_owned(),
            figure: (*what).to_owned(),
            ours: (*num).to_owned(),
            reference: (*den).to_owned(),
            ratio: value,
        });
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
    table::write(dir, &ratios)?;

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
    if !d.codec_sizes.is_empty() {
        writeln!(md, "\n## Codec entry sizes\n")?;
        writeln!(
            md,
            "| ops | values | plain bytes | LZ4 bytes | plain / LZ4 |\n|---:|---|---:|---:|---:|"
        )?;
        for r in &d.codec_sizes {
            writeln!(
                md,
                "| {} | {} | {} | {} | {:.3} |",
                r.ops, r.values, r.plain_bytes, r.lz4_bytes, r.ratio
            )?;
        }
    }
    if !d.missing.is_empty() {
        writeln!(
            md,
            "\nNot in this run (filtered out, or not written): {}.",
            d.missing.join(", ")
        )?;
    }
    let path = dir.join("report.md");
    std::fs::write(&path, &md).with_context(|| format!("write {}", path.display()))?;

    let mut out = String::from("Summary (ratio > 1: batchkv does better than the reference)\n\n");
    if summary.is_empty() {
        out.push_str("no key figure in this run (see report.md)\n");
    } else {
        out.push_str(&text_table(&summary));
    }
    let rated: Vec<&Compared> = claims.iter().filter(|c| c.ratio().is_some()).collect();
    if !rated.is_empty() {
        out.push_str("\nAgainst the reference systems' claimed figures (their machines)\n\n");
        let rows: Vec<Cmp> = rated
            .iter()
            .map(|c| {
                let (v, cfg) = c.ours.as_ref().expect("rated claims have a figure");
                Cmp {
                    what: c.claim.label(),
                    ours: format!("{} ({cfg})", c.claim.unit.fmt(*v)),
                    reference: c.claim.figure(),
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

fn strategy_label(strategy: &str) -> &str {
    match strategy {
        "mono" => "Mono",
        "chunked-5000" => "Chunked 5000",
        "adaptive" => "Adaptive",
        other => other,
    }
}

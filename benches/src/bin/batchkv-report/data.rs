//! The figures of one bench run, read back from the CSV files in the report directory into the
//! row types the harnesses wrote them from (`batchkv_benches::rows`).
//!
//! A file that is missing (a filter left its harness out) leaves its part empty, and the report
//! and the plots say so; a file that is there but lacks a column, or has a cell that does not
//! parse, is an error naming the file, the row and the column.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use batchkv_benches::rows::{
    AdaptiveChunkRow, BatcherRow, CodecSizeRow, CompressionRow, CriterionRow, DbBenchRow,
    EngineReadRow, EngineWriteRow, MvccMetric, MvccRow, MvccSide, ServerRow, StoreMetric, StoreRow,
    TimingRow, WorkloadRow,
};
use batchkv_benches::table::{self, Table};

/// What xtask recorded about the run (`run.txt`, `key=value` lines).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunInfo {
    /// The command, such as `cargo xtask bench --quick`.
    pub command: String,
    /// A smoke run.
    pub quick: bool,
    /// `db_bench --version`, or why it did not run.
    pub db_bench: String,
    /// Whether this db_bench warned that it was built with assertions.
    pub db_bench_assertions: bool,
    /// CPU, cores, memory.
    pub machine: String,
}

impl RunInfo {
    /// Reads `dir/run.txt`.
    ///
    /// # Errors
    /// The file is missing, or lacks one of the keys the report uses, or a flag is not
    /// `true`/`false`.
    pub fn read(dir: &Path) -> Result<RunInfo> {
        let path = dir.join("run.txt");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let pairs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |key: &str| -> Result<String> {
            match pairs.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => Ok((*v).to_owned()),
                None => bail!("{}: no `{key}=` line", path.display()),
            }
        };
        let flag = |key: &str| -> Result<bool> {
            let v = get(key)?;
            v.parse()
                .with_context(|| format!("{}: `{key}={v}` is not true or false", path.display()))
        };
        Ok(RunInfo {
            command: get("command")?,
            quick: flag("quick")?,
            db_bench: get("db_bench")?,
            db_bench_assertions: flag("db_bench_assertions")?,
            machine: get("machine")?,
        })
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Data {
    pub engine_writes: Vec<EngineWriteRow>,
    pub adaptive_chunks: Vec<AdaptiveChunkRow>,
    pub engine_reads: Vec<EngineReadRow>,
    pub engine_compression: Vec<CompressionRow>,
    pub batcher: Vec<BatcherRow>,
    /// `mvcc.csv`: (case, side, metric) -> median.
    pub mvcc: BTreeMap<(String, MvccSide, MvccMetric), f64>,
    /// `store.csv`: (case, metric) -> values (some cases repeat a metric once per round).
    pub store: BTreeMap<(String, StoreMetric), Vec<f64>>,
    pub db_bench: Vec<DbBenchRow>,
    pub criterion: Vec<CriterionRow>,
    pub codec_sizes: Vec<CodecSizeRow>,
    pub timings: Vec<TimingRow>,
    /// `server.csv`: batchkv serve and etcd over gRPC.
    pub server: Vec<ServerRow>,
    pub workloads: Vec<WorkloadRow>,
    /// CSV files that were not there.
    pub missing: Vec<&'static str>,
    pub run: RunInfo,
}

impl Data {
    /// Reads every CSV the report uses from `dir`.
    ///
    /// # Errors
    /// A file that is there but does not hold its rows (see the module doc), or no `run.txt`.
    pub fn read(dir: &Path) -> Result<Data> {
        let mut d = Data {
            run: RunInfo::read(dir)?,
            ..Data::default()
        };
        let missing = &mut d.missing;
        fn load<T: Table>(dir: &Path, missing: &mut Vec<&'static str>) -> Result<Vec<T>> {
            let rows = table::read::<T>(dir)?;
            if rows.is_none() {
                missing.push(T::FILE);
            }
            Ok(rows.unwrap_or_default())
        }
        d.engine_writes = load(dir, missing)?;
        d.adaptive_chunks = load(dir, missing)?;
        d.engine_reads = load(dir, missing)?;
        d.engine_compression = load(dir, missing)?;
        d.batcher = load(dir, missing)?;
        let mvcc: Vec<MvccRow> = load(dir, missing)?;
        let store: Vec<StoreRow> = load(dir, missing)?;
        d.db_bench = load(dir, missing)?;
        d.criterion = load(dir, missing)?;
        d.codec_sizes = load(dir, missing)?;
        d.timings = load(dir, missing)?;
        d.server = load(dir, missing)?;
        d.workloads = load(dir, missing)?;
        for r in mvcc {
            d.mvcc.insert((r.case, r.side, r.metric), r.median);
        }
        for r in store {
            d.store.entry((r.case, r.metric)).or_default().push(r.value);
        }
        Ok(d)
    }

    /// One engine batch write.
    pub fn engine(&self, mode: &str, size: usize, strategy: &str) -> Option<&EngineWriteRow> {
        self.engine_writes
            .iter()
            .find(|w| w.mode == mode && w.size == size && w.strategy == strategy)
    }

    /// The geometric mean of `strategy` / raw rust-rocksdb over every (mode, size) point,
    /// restricted to `mode` when given; with the number of points.
    pub fn engine_vs_raw(&self, strategy: &str, mode: Option<&str>) -> Option<(f64, usize)> {
        let ratios: Vec<f64> = self
            .engine_writes
            .iter()
            .filter(|w| w.strategy == strategy && mode.is_none_or(|m| w.mode == m))
            .filter_map(|w| {
                self.engine(&w.mode, w.size, "raw-mono")
                    .map(|r| w.ops_per_s_mean / r.ops_per_s_mean)
            })
            .filter(|r| r.is_finite() && *r > 0.0)
            .collect();
        geo_mean(&ratios).map(|g| (g, ratios.len()))
    }

    /// The median of an `mvcc.csv` line (none when the case measured nothing).
    pub fn mvcc(&self, case: &str, side: MvccSide, metric: MvccMetric) -> Option<f64> {
        self.mvcc
            .get(&(case.to_owned(), side, metric))
            .copied()
            .filter(|v| v.is_finite())
    }

    /// A `store.csv` value (the median when the metric has several samples).
    pub fn store(&self, case: &str, metric: StoreMetric) -> Option<f64> {
        let v = self.store.get(&(case.to_owned(), metric))?;
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// The `store.csv` cases starting with `prefix` that have `metric`, as (last path element
    /// parsed as a number, value), sorted by that number: e.g. threads -> ops/s.
    pub fn store_series(&self, prefix: &str, metric: StoreMetric) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self
            .store
            .keys()
            .filter(|(case, m)| *m == metric && case.starts_with(prefix))
            .filter_map(|(case, _)| {
                let rest = &case[prefix.len()..];
                let x: f64 = rest.parse().ok()?;
                Some((x, self.store(case, metric)?))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// The `server.csv` points of `server` under `workload`, as (clients, `f(row)`), by clients.
    pub fn server_series(
        &self,
        server: &str,
        workload: &str,
        f: impl Fn(&ServerRow) -> f64,
    ) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self
            .server
            .iter()
            .filter(|r| r.server == server && r.workload == workload)
            .map(|r| (r.clients as f64, f(r)))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// One criterion benchmark by id.
    /// Store over raw throughput of each workloads case that has both sides, in the run's
    /// order: (case, ratio, threads).
    pub fn workload_ratios(&self) -> Vec<(String, f64, usize)> {
        self.workloads
            .iter()
            .filter(|r| r.side == "store")
            .filter_map(|s| {
                let raw = self
                    .workloads
                    .iter()
                    .find(|r| r.side == "raw" && r.case == s.case)?;
                let ratio = s.ops_per_s / raw.ops_per_s;
                ratio.is_finite().then(|| {
                    (
                        s.case.trim_start_matches("workloads/").to_owned(),
                        ratio,
                        s.threads,
                    )
                })
            })
            .collect()
    }

    pub fn criterion(&self, id: &str) -> Option<&CriterionRow> {
        self.criterion.iter().find(|c| c.id == id)
    }

    /// One db_bench run.
    pub fn db_bench(&self, mode: &str, batch: usize) -> Option<&DbBenchRow> {
        self.db_bench
            .iter()
            .find(|d| d.mode == mode && d.batch == batch)
    }
}

/// The geometric mean (None when empty).
pub fn geo_mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

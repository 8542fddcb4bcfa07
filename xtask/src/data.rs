//! The figures of one bench run, read back from the CSV files in the report directory.
//!
//! Every harness writes its own CSV; a file that is missing (a filter left its harness out, or
//! the harness does not exist yet) leaves its part empty, and the report and the plots say so
//! instead of failing. Columns are found by name, so a harness may add columns freely.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// A CSV file as a header and rows of fields (no quoting: the harnesses write none).
#[derive(Debug)]
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Result<Option<Csv>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else {
            return Ok(None);
        };
        Ok(Some(Csv {
            header: header.split(',').map(|s| s.trim().to_owned()).collect(),
            rows: lines
                .map(|l| l.split(',').map(|s| s.trim().to_owned()).collect())
                .collect(),
        }))
    }

    /// The rows as records whose fields are looked up by column name.
    fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.rows.iter().map(|fields| Record {
            header: &self.header,
            fields,
        })
    }
}

struct Record<'a> {
    header: &'a [String],
    fields: &'a [String],
}

impl Record<'_> {
    fn str(&self, col: &str) -> &str {
        self.header
            .iter()
            .position(|h| h == col)
            .and_then(|i| self.fields.get(i))
            .map_or("", String::as_str)
    }

    fn num(&self, col: &str) -> f64 {
        self.str(col).parse().unwrap_or(f64::NAN)
    }
}

/// One row of `engine-writes.csv`: a batch write of `size` ops with one strategy.
#[derive(Debug, Clone)]
pub struct EngineWrite {
    /// `no-wal`, `wal` or `sync`.
    pub mode: String,
    pub size: f64,
    /// `raw-mono`, `mono`, `chunked-5000` or `adaptive`.
    pub strategy: String,
    pub ops_per_s: f64,
    pub rsd_pct: f64,
}

/// One chunk of an adaptive write (`engine-adaptive.csv`).
#[derive(Debug, Clone)]
pub struct AdaptiveChunk {
    pub mode: String,
    pub size: f64,
    /// When the chunk started, ms after the write began.
    pub start_ms: f64,
    pub elapsed_ms: f64,
    pub len: f64,
    pub ops_per_s: f64,
}

/// One row of `engine-reads.csv`.
#[derive(Debug, Clone)]
pub struct EngineRead {
    pub what: String,
    pub engine_ops_per_s: f64,
    pub raw_ops_per_s: f64,
}

/// One row of `engine-compression.csv`.
#[derive(Debug, Clone)]
pub struct EngineCompression {
    pub codec: String,
    pub ratio: f64,
}

/// One point of `batcher.csv`: a wait policy, a sink and a number of producers.
#[derive(Debug, Clone)]
pub struct BatcherRun {
    pub sink: String,
    pub policy: String,
    pub producers: f64,
    pub ops_per_s: f64,
    pub p99_us: f64,
}

/// One run of `db_bench` (RocksDB's own benchmark tool), written by xtask (`db_bench.csv`).
#[derive(Debug, Clone)]
pub struct DbBench {
    /// `no-wal`, `wal` or `sync`.
    pub mode: String,
    /// Puts per write batch.
    pub batch: f64,
    pub ops_per_s: f64,
}

/// One criterion benchmark (`benchmarks.csv`, written by xtask from criterion's JSON).
#[derive(Debug, Clone)]
pub struct Criterion {
    pub id: String,
    pub mean_ns: f64,
    pub std_dev_ns: f64,
    pub ops_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Data {
    pub engine_writes: Vec<EngineWrite>,
    pub adaptive_chunks: Vec<AdaptiveChunk>,
    pub engine_reads: Vec<EngineRead>,
    pub engine_compression: Vec<EngineCompression>,
    pub batcher: Vec<BatcherRun>,
    /// `mvcc.csv`: (case, side, metric) -> median.
    pub mvcc: BTreeMap<(String, String, String), f64>,
    /// `store.csv`: (case, metric) -> values (some cases repeat a metric once per sample).
    pub store: BTreeMap<(String, String), Vec<f64>>,
    pub db_bench: Vec<DbBench>,
    pub criterion: Vec<Criterion>,
    /// CSV files that were not there.
    pub missing: Vec<&'static str>,
    /// `run.txt`: what xtask recorded about the run (`key=value` lines).
    pub run: Vec<(String, String)>,
}

impl Data {
    /// Reads every CSV the report uses from `dir`.
    pub fn read(dir: &Path) -> Result<Data> {
        let mut d = Data {
            run: std::fs::read_to_string(dir.join("run.txt"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..Data::default()
        };
        let mut load = |name: &'static str| -> Result<Option<Csv>> {
            let csv = Csv::read(&dir.join(name))?;
            if csv.is_none() {
                d.missing.push(name);
            }
            Ok(csv)
        };
        let writes = load("engine-writes.csv")?;
        let adaptive = load("engine-adaptive.csv")?;
        let reads = load("engine-reads.csv")?;
        let compression = load("engine-compression.csv")?;
        let batcher = load("batcher.csv")?;
        let mvcc = load("mvcc.csv")?;
        let store = load("store.csv")?;
        let db_bench = load("db_bench.csv")?;
        let criterion = load("benchmarks.csv")?;

        if let Some(c) = writes {
            d.engine_writes = c
                .records()
                .map(|r| EngineWrite {
                    mode: r.str("mode").to_owned(),
                    size: r.num("size"),
                    strategy: r.str("strategy").to_owned(),
                    ops_per_s: r.num("ops_per_s_mean"),
                    rsd_pct: r.num("rsd_pct"),
                })
                .collect();
        }
        if let Some(c) = adaptive {
            d.adaptive_chunks = c
                .records()
                .map(|r| AdaptiveChunk {
                    mode: r.str("mode").to_owned(),
                    size: r.num("size"),
                    start_ms: r.num("start_ms"),
                    elapsed_ms: r.num("elapsed_ms"),
                    len: r.num("len"),
                    ops_per_s: r.num("ops_per_s"),
                })
                .collect();
        }
        if let Some(c) = reads {
            d.engine_reads = c
                .records()
                .map(|r| EngineRead {
                    what: r.str("read").to_owned(),
                    engine_ops_per_s: r.num("engine_ops_per_s"),
                    raw_ops_per_s: r.num("raw_ops_per_s"),
                })
                .collect();
        }
        if let Some(c) = compression {
            d.engine_compression = c
                .records()
                .map(|r| EngineCompression {
                    codec: r.str("codec").to_owned(),
                    ratio: r.num("compression_ratio"),
                })
                .collect();
        }
        if let Some(c) = batcher {
            d.batcher = c
                .records()
                .map(|r| BatcherRun {
                    sink: r.str("sink").to_owned(),
                    policy: r.str("policy").to_owned(),
                    producers: r.num("producers"),
                    ops_per_s: r.num("ops_per_s"),
                    p99_us: r.num("p99_us"),
                })
                .collect();
        }
        if let Some(c) = mvcc {
            for r in c.records() {
                d.mvcc.insert(
                    (
                        r.str("case").to_owned(),
                        r.str("side").to_owned(),
                        r.str("metric").to_owned(),
                    ),
                    r.num("median"),
                );
            }
        }
        if let Some(c) = store {
            for r in c.records() {
                d.store
                    .entry((r.str("case").to_owned(), r.str("metric").to_owned()))
                    .or_default()
                    .push(r.num("value"));
            }
        }
        if let Some(c) = db_bench {
            d.db_bench = c
                .records()
                .map(|r| DbBench {
                    mode: r.str("mode").to_owned(),
                    batch: r.num("batch"),
                    ops_per_s: r.num("ops_per_s"),
                })
                .collect();
        }
        if let Some(c) = criterion {
            let opt = |v: f64| v.is_finite().then_some(v);
            d.criterion = c
                .records()
                .map(|r| Criterion {
                    id: r.str("id").to_owned(),
                    mean_ns: r.num("mean_ns"),
                    std_dev_ns: r.num("std_dev_ns"),
                    ops_per_s: opt(r.num("ops_per_s")),
                    mb_per_s: opt(r.num("mb_per_s")),
                })
                .collect();
        }
        Ok(d)
    }

    /// A value of `run.txt`.
    pub fn run(&self, key: &str) -> Option<&str> {
        self.run
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The mean ops/s of one engine batch write.
    pub fn engine(&self, mode: &str, size: f64, strategy: &str) -> Option<&EngineWrite> {
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
                    .map(|r| w.ops_per_s / r.ops_per_s)
            })
            .filter(|r| r.is_finite() && *r > 0.0)
            .collect();
        geo_mean(&ratios).map(|g| (g, ratios.len()))
    }

    /// The median of an `mvcc.csv` line.
    pub fn mvcc(&self, case: &str, side: &str, metric: &str) -> Option<f64> {
        self.mvcc
            .get(&(case.to_owned(), side.to_owned(), metric.to_owned()))
            .copied()
            .filter(|v| v.is_finite())
    }

    /// A `store.csv` value (the median when the metric has several samples).
    pub fn store(&self, case: &str, metric: &str) -> Option<f64> {
        let v = self.store.get(&(case.to_owned(), metric.to_owned()))?;
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// The `store.csv` cases starting with `prefix` that have `metric`, as (last path element
    /// parsed as a number, value), sorted by that number: e.g. threads -> ops/s.
    pub fn store_series(&self, prefix: &str, metric: &str) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self
            .store
            .keys()
            .filter(|(case, m)| m == metric && case.starts_with(prefix))
            .filter_map(|(case, _)| {
                let rest = &case[prefix.len()..];
                let x: f64 = rest.parse().ok()?;
                Some((x, self.store(case, metric)?))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// One criterion benchmark by id.
    pub fn criterion(&self, id: &str) -> Option<&Criterion> {
        self.criterion.iter().find(|c| c.id == id)
    }

    /// One db_bench run.
    pub fn db_bench(&self, mode: &str, batch: f64) -> Option<&DbBench> {
        self.db_bench
            .iter()
            .find(|d| d.mode == mode && d.batch == batch)
    }
}

/// The geometric mean (None when empty).
pub fn geo_mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

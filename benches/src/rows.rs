//! The rows of every CSV file in the report directory: one type per file, written by its harness
//! (or by xtask) and read by the report.
//!
//! Field names are the column names, in order. Floats are written with the fixed decimals the
//! harnesses have always used (`serialize_with = "dp::<N>"`). The long tables (`mvcc.csv`,
//! `store.csv`) name their measurement in a `metric` column whose values are enums here, so a
//! metric is renamed in one place too.

use serde::{Deserialize, Serialize};

use crate::table::{Table, dp, opt_dp};

/// `batcher.csv`: one group-commit run (a sink, a wait policy, a number of producers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatcherRow {
    /// `fsync-like` or `1us-per-item`.
    pub sink: String,
    /// `fixed-<µs>us`, `tiered` or `adaptive`.
    pub policy: String,
    /// Closed-loop producer threads.
    pub producers: usize,
    /// Items answered in the measured window.
    pub ops: u64,
    /// The measured window.
    #[serde(serialize_with = "dp::<3, _>")]
    pub secs: f64,
    /// Throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
    /// Median latency of one item, µs.
    #[serde(serialize_with = "dp::<1, _>")]
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    #[serde(serialize_with = "dp::<1, _>")]
    pub p99_us: f64,
    /// Mean items per flush.
    #[serde(serialize_with = "dp::<2, _>")]
    pub mean_batch: f64,
}

impl Table for BatcherRow {
    const FILE: &'static str = "batcher.csv";
}

/// `codec-sizes.csv`: the encoded size of one 1,000-op entry, plain and LZ4.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodecSizeRow {
    /// Ops in the entry.
    pub ops: usize,
    /// `compressible` or `random` values.
    pub values: String,
    /// Bytes without compression.
    pub plain_bytes: usize,
    /// Bytes with LZ4.
    pub lz4_bytes: usize,
    /// `plain_bytes / lz4_bytes`.
    #[serde(serialize_with = "dp::<3, _>")]
    pub ratio: f64,
}

impl Table for CodecSizeRow {
    const FILE: &'static str = "codec-sizes.csv";
}

/// `engine-writes.csv`: one batch write configuration, over its repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineWriteRow {
    /// `no-wal`, `wal` or `sync`.
    pub mode: String,
    /// Ops per write.
    pub size: usize,
    /// `raw-mono`, `mono`, `chunked-5000` or `adaptive`.
    pub strategy: String,
    /// Mean ops/s over the repetitions.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s_mean: f64,
    /// RSD of ops/s over the repetitions, percent.
    #[serde(serialize_with = "dp::<2, _>")]
    pub rsd_pct: f64,
    /// Measured repetitions.
    pub reps: usize,
    /// Chunks of the last write.
    pub chunks: usize,
    /// The adaptive controller's last chunk size (0 for the other strategies).
    pub final_chunk: usize,
}

impl Table for EngineWriteRow {
    const FILE: &'static str = "engine-writes.csv";
}

/// `engine-adaptive.csv`: one chunk of an adaptive write (its last measured repetition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveChunkRow {
    /// `no-wal`, `wal` or `sync`.
    pub mode: String,
    /// Ops of the whole write.
    pub size: usize,
    /// The chunk's index in the write.
    pub chunk: usize,
    /// When the chunk started, ms after the write began.
    #[serde(serialize_with = "dp::<3, _>")]
    pub start_ms: f64,
    /// How long it took, ms.
    #[serde(serialize_with = "dp::<3, _>")]
    pub elapsed_ms: f64,
    /// Ops in the chunk.
    pub len: usize,
    /// Its throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
}

impl Table for AdaptiveChunkRow {
    const FILE: &'static str = "engine-adaptive.csv";
}

/// `engine-compression.csv`: one codec, written, flushed and compacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressionRow {
    /// `none`, `lz4`, `snappy` or `zstd`.
    pub codec: String,
    /// Ops/s of the write, flush and compaction.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
    /// Raw key+value bytes over SST bytes.
    #[serde(serialize_with = "dp::<3, _>")]
    pub compression_ratio: f64,
    /// The database directory's size.
    pub disk_bytes: u64,
}

impl Table for CompressionRow {
    const FILE: &'static str = "engine-compression.csv";
}

/// `engine-reads.csv`: one kind of read, engine beside raw rust-rocksdb.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineReadRow {
    /// `point-get/cache-hit`, `point-get/cache-miss`, `full-scan` or `range-scan-1000`.
    pub read: String,
    /// The engine's throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub engine_ops_per_s: f64,
    /// Raw rust-rocksdb's.
    #[serde(serialize_with = "dp::<1, _>")]
    pub raw_ops_per_s: f64,
    /// Engine over raw.
    #[serde(serialize_with = "dp::<3, _>")]
    pub ratio: f64,
}

impl Table for EngineReadRow {
    const FILE: &'static str = "engine-reads.csv";
}

/// `metrics.csv`: puts/s with and without metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// `without` or `with`.
    pub case: String,
    /// Median puts/s over the runs.
    #[serde(serialize_with = "dp::<0, _>")]
    pub puts_per_sec: f64,
    /// RSD over the runs, percent.
    #[serde(serialize_with = "dp::<2, _>")]
    pub rsd_pct: f64,
}

impl Table for MetricsRow {
    const FILE: &'static str = "metrics.csv";
}

/// What a line of `mvcc.csv` measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MvccSide {
    /// Raw rust-rocksdb.
    #[serde(rename = "raw-rocksdb")]
    RawRocksdb,
    /// The raw `batchkv-engine`.
    #[serde(rename = "raw-engine")]
    RawEngine,
    /// `batchkv-mvcc`.
    #[serde(rename = "mvcc")]
    Mvcc,
}

/// The metric of a line of `mvcc.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // each name is its unit
pub enum MvccMetric {
    OpsPerS,
    NsPerOp,
    UsPerOp,
    OpenS,
    EngineOpenS,
    ScanS,
    Records,
    Keys,
    BlockCacheBytes,
    RssGrowthMib,
    BuildOpsPerS,
    CpuCores,
    ApplyThreadCpu,
    DrainMs,
    CatchUpEventsPerS,
    Ms,
    KeysPerS,
}

/// `mvcc.csv`: the median of one metric of one case and side, over its samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MvccRow {
    /// `mvcc/apply/1000/insert`, `mvcc/get/latest`, ...
    pub case: String,
    /// Whose figure.
    pub side: MvccSide,
    /// What it measures.
    pub metric: MvccMetric,
    /// The median (NaN when the case measured nothing).
    #[serde(serialize_with = "dp::<3, _>")]
    pub median: f64,
    /// RSD over the samples, percent.
    #[serde(serialize_with = "dp::<2, _>")]
    pub rsd_pct: f64,
    /// Samples.
    pub samples: usize,
}

impl Table for MvccRow {
    const FILE: &'static str = "mvcc.csv";
}

/// The metric of a line of `store.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // each name is its unit
pub enum StoreMetric {
    OpsPerS,
    CpuUsPerOp,
    P50Ns,
    P99Ns,
    OthersCores,
    MeanBatch,
    LingeredPct,
    WalSyncs,
    CpuUserUsPerOp,
    CpuSysUsPerOp,
    CommittedTps,
    Attempts,
    ConflictRate,
    Aborted,
    CpuUsPerCommit,
    GetP50Ns,
    GetP90Ns,
    GetP99Ns,
    #[serde(rename = "get_over_100us_pct")]
    GetOver100usPct,
    Reads,
    EncodeNs,
    DecodeNs,
    RoundtripNsPerOp,
    EntryBytes,
    DirectPutsPerS,
    PipelinePutsPerS,
    CodecShare,
    CodecNsPerPut,
    DirectCpuUsPerPut,
    CodecPutsPerS,
    CodecCpuUsPerPut,
    CodecShareThroughput,
    CodecShareCpu,
}

/// `store.csv`: one value of one metric of one case (the put and raw cases have one per round,
/// the e2e cases one per run of a side).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreRow {
    /// `store/put/sync/64`, `store/txn/low/wal/16`, ...
    pub case: String,
    /// The round of the raw and put cases, the run of an e2e side, else 0.
    pub round: usize,
    /// What it measures.
    pub metric: StoreMetric,
    /// The value.
    #[serde(serialize_with = "dp::<3, _>")]
    pub value: f64,
}

impl Table for StoreRow {
    const FILE: &'static str = "store.csv";
}

/// `server.csv`: one point of the server bench (`benches/benches/server.rs`): a server under
/// one workload at one number of closed-loop clients, over etcd's gRPC API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    /// `batchkv` (`batchkv serve`) or `etcd` (etcd 3.4).
    pub server: String,
    /// `put`, `get`, `range` (1,000-key prefix) or `txn` (compare-and-swap).
    pub workload: String,
    /// Closed-loop clients (tasks).
    pub clients: usize,
    /// gRPC connections they share.
    pub connections: usize,
    /// Requests answered in the measured window.
    pub ops: u64,
    /// Requests answered with an error (a failed CAS compare is an answer, not an error).
    pub errors: u64,
    /// The measured window, s.
    #[serde(serialize_with = "dp::<3, _>")]
    pub secs: f64,
    /// Throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
    /// Median latency of one request, µs.
    #[serde(serialize_with = "dp::<1, _>")]
    pub p50_us: f64,
    /// 99th percentile, µs.
    #[serde(serialize_with = "dp::<1, _>")]
    pub p99_us: f64,
    /// CPU seconds (user + system) of the server process in the window.
    #[serde(serialize_with = "dp::<3, _>")]
    pub server_cpu_s: f64,
    /// CPU seconds of the load generator (the bench process) in the window.
    #[serde(serialize_with = "dp::<3, _>")]
    pub client_cpu_s: f64,
}

impl Table for ServerRow {
    const FILE: &'static str = "server.csv";
}

/// `workloads.csv`: one side of one case of the workloads bench (`benches/benches/workloads.rs`):
/// YCSB A-F, the read/write mixes and the point-read cases, through the Store or raw
/// rust-rocksdb, at one number of closed-loop client threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRow {
    /// `workloads/ycsb-a/zipfian/16`, `workloads/read-seq/cold/1`, ...
    pub case: String,
    /// `ycsb-a` ... `ycsb-f`, `mix-80-20`, `mix-50-50`, `read-seq`, `read-random`.
    pub workload: String,
    /// The key choice (`uniform`, `zipfian`), or for the read cases the block cache (`warm`,
    /// `cold`).
    pub dist: String,
    /// Closed-loop client threads.
    pub threads: usize,
    /// `store` (the batchkv Store) or `raw` (rust-rocksdb).
    pub side: String,
    /// Ops completed in the measured window.
    pub ops: u64,
    /// Throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
    /// Median latency of one op, µs.
    #[serde(serialize_with = "dp::<2, _>")]
    pub p50_us: f64,
    /// 99th percentile, µs.
    #[serde(serialize_with = "dp::<2, _>")]
    pub p99_us: f64,
    /// CPU time (user + system) of the whole process per op, µs.
    #[serde(serialize_with = "dp::<2, _>")]
    pub cpu_us_per_op: f64,
    /// Cores other processes kept busy on average over the window (a disturbed measurement).
    #[serde(serialize_with = "dp::<2, _>")]
    pub others_cores: f64,
}

impl Table for WorkloadRow {
    const FILE: &'static str = "workloads.csv";
}

/// `benchmarks.csv` (written by xtask from criterion's JSON): one criterion benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionRow {
    /// `codec/decode/1000/fallback`, ...
    pub id: String,
    /// Mean time per iteration, ns.
    #[serde(serialize_with = "dp::<1, _>")]
    pub mean_ns: f64,
    /// Median, ns.
    #[serde(serialize_with = "dp::<1, _>")]
    pub median_ns: f64,
    /// Standard deviation, ns.
    #[serde(serialize_with = "dp::<1, _>")]
    pub std_dev_ns: f64,
    /// Elements per iteration, when the benchmark declares a throughput in elements.
    #[serde(serialize_with = "opt_dp::<3, _>")]
    pub elements: Option<f64>,
    /// Bytes per iteration, when it declares one in bytes.
    #[serde(serialize_with = "opt_dp::<3, _>")]
    pub bytes: Option<f64>,
    /// Elements per second.
    #[serde(serialize_with = "opt_dp::<3, _>")]
    pub ops_per_s: Option<f64>,
    /// MB (10^6 bytes) per second.
    #[serde(serialize_with = "opt_dp::<3, _>")]
    pub mb_per_s: Option<f64>,
}

impl Table for CriterionRow {
    const FILE: &'static str = "benchmarks.csv";
}

/// `db_bench.csv` (written by xtask): one run of RocksDB's `db_bench fillrandom`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbBenchRow {
    /// `no-wal`, `wal` or `sync`.
    pub mode: String,
    /// Puts per write batch.
    pub batch: usize,
    /// Puts in all.
    pub num: usize,
    /// Throughput.
    #[serde(serialize_with = "dp::<1, _>")]
    pub ops_per_s: f64,
    /// µs per put.
    #[serde(serialize_with = "dp::<3, _>")]
    pub micros_per_op: f64,
}

impl Table for DbBenchRow {
    const FILE: &'static str = "db_bench.csv";
}

/// `timings.csv` (written by xtask): how long one step of the run took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimingRow {
    /// `build`, a bench target, `db_bench`, or `total`.
    pub step: String,
    /// Seconds.
    #[serde(serialize_with = "dp::<1, _>")]
    pub seconds: f64,
}

impl Table for TimingRow {
    const FILE: &'static str = "timings.csv";
}

/// `ratios.csv` (written by the report): every ratio of `report.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioRow {
    /// `claim`, `same-run` or `codec`.
    pub kind: String,
    /// What the ratio compares.
    pub figure: String,
    /// batchkv's figure (for a codec ratio, the numerator's benchmark id).
    pub ours: String,
    /// The reference's figure (for a codec ratio, the denominator's id).
    pub reference: String,
    /// Ours over the reference, > 1 when batchkv does better.
    #[serde(serialize_with = "dp::<3, _>")]
    pub ratio: f64,
}

impl Table for RatioRow {
    const FILE: &'static str = "ratios.csv";
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::table::{TableError, columns, parse, read, write};

    /// The columns stay what the report directory has always had (a renamed field changes the
    /// file format, deliberately, here).
    #[test]
    fn columns_are_the_files_columns() {
        let cases: [(&[&str], &str); 16] = [
            (
                columns::<BatcherRow>(),
                "sink,policy,producers,ops,secs,ops_per_s,p50_us,p99_us,mean_batch",
            ),
            (
                columns::<CodecSizeRow>(),
                "ops,values,plain_bytes,lz4_bytes,ratio",
            ),
            (
                columns::<EngineWriteRow>(),
                "mode,size,strategy,ops_per_s_mean,rsd_pct,reps,chunks,final_chunk",
            ),
            (
                columns::<AdaptiveChunkRow>(),
                "mode,size,chunk,start_ms,elapsed_ms,len,ops_per_s",
            ),
            (
                columns::<CompressionRow>(),
                "codec,ops_per_s,compression_ratio,disk_bytes",
            ),
            (
                columns::<EngineReadRow>(),
                "read,engine_ops_per_s,raw_ops_per_s,ratio",
            ),
            (columns::<MetricsRow>(), "case,puts_per_sec,rsd_pct"),
            (
                columns::<MvccRow>(),
                "case,side,metric,median,rsd_pct,samples",
            ),
            (columns::<StoreRow>(), "case,round,metric,value"),
            (
                columns::<CriterionRow>(),
                "id,mean_ns,median_ns,std_dev_ns,elements,bytes,ops_per_s,mb_per_s",
            ),
            (
                columns::<DbBenchRow>(),
                "mode,batch,num,ops_per_s,micros_per_op",
            ),
            (columns::<TimingRow>(), "step,seconds"),
            (
                columns::<ServerRow>(),
                "server,workload,clients,connections,ops,errors,secs,ops_per_s,p50_us,p99_us,\
                 server_cpu_s,client_cpu_s",
            ),
            (columns::<RatioRow>(), "kind,figure,ours,reference,ratio"),
            (columns::<StoreRow>(), "case,round,metric,value"),
            (
                columns::<WorkloadRow>(),
                "case,workload,dist,threads,side,ops,ops_per_s,p50_us,p99_us,cpu_us_per_op,\
                 others_cores",
            ),
        ];
        for (cols, want) in cases {
            assert_eq!(cols.join(","), want);
        }
    }

    #[test]
    fn metric_names_are_the_files_names() {
        let store = [
            (StoreMetric::OpsPerS, "ops_per_s"),
            (StoreMetric::P99Ns, "p99_ns"),
            (StoreMetric::CpuUserUsPerOp, "cpu_user_us_per_op"),
            (StoreMetric::GetOver100usPct, "get_over_100us_pct"),
            (StoreMetric::CodecShareCpu, "codec_share_cpu"),
        ];
        for (m, name) in store {
            let row = StoreRow {
                case: "c".to_owned(),
                round: 0,
                metric: m,
                value: 1.0,
            };
            let text = to_csv(std::slice::from_ref(&row));
            assert_eq!(text, format!("case,round,metric,value\nc,0,{name},1.000\n"));
            assert_eq!(
                parse::<StoreRow>(Path::new("store.csv"), text.as_bytes()).expect("parses"),
                [row]
            );
        }
        let text = "case,side,metric,median,rsd_pct,samples\n\
                    mvcc/get/latest,raw-rocksdb,ns_per_op,1.5,2,3\n\
                    mvcc/reopen,mvcc,catch_up_events_per_s,NaN,0,0\n";
        let rows = parse::<MvccRow>(Path::new("mvcc.csv"), text.as_bytes()).expect("parses");
        assert_eq!(
            (rows[0].side, rows[0].metric, rows[1].metric),
            (
                MvccSide::RawRocksdb,
                MvccMetric::NsPerOp,
                MvccMetric::CatchUpEventsPerS
            )
        );
        assert!(
            rows[1].median.is_nan(),
            "a NaN written by a harness reads back as NaN"
        );
    }

    fn to_csv<T: Table>(rows: &[T]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), rows).expect("write");
        std::fs::read_to_string(dir.path().join(T::FILE)).expect("read back")
    }

    #[test]
    fn writes_fixed_decimals_and_reads_them_back() {
        let rows = vec![
            CriterionRow {
                id: "codec/decode/1/fallback".to_owned(),
                mean_ns: 123.456,
                median_ns: 120.0,
                std_dev_ns: 1.04,
                elements: Some(1.0),
                bytes: None,
                ops_per_s: Some(8_100_051.84),
                mb_per_s: None,
            },
            CriterionRow {
                id: "a,b \"quoted\"".to_owned(),
                mean_ns: 1.0,
                median_ns: 1.0,
                std_dev_ns: 0.0,
                elements: None,
                bytes: Some(4096.0),
                ops_per_s: None,
                mb_per_s: Some(4096.0),
            },
        ];
        let text = to_csv(&rows);
        assert_eq!(
            text.lines().take(2).collect::<Vec<_>>(),
            [
                "id,mean_ns,median_ns,std_dev_ns,elements,bytes,ops_per_s,mb_per_s",
                "codec/decode/1/fallback,123.5,120.0,1.0,1.000,,8100051.840,",
            ]
        );
        let back =
            parse::<CriterionRow>(Path::new("benchmarks.csv"), text.as_bytes()).expect("parses");
        assert_eq!(back[0].mean_ns, 123.5);
        assert_eq!(back[0].bytes, None);
        assert_eq!(back[1].id, rows[1].id);
        // A table with no rows is its header.
        assert_eq!(to_csv::<TimingRow>(&[]), "step,seconds\n");
    }

    #[test]
    fn missing_files_are_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read::<StoreRow>(dir.path()).expect("no error"), None);
    }

    /// A missing column, a missing or unparsable cell: an error naming file, row and column,
    /// never NaN or an empty value.
    #[test]
    fn bad_files_are_errors_naming_file_row_and_column() {
        let file = Path::new("/r/engine-reads.csv");
        let check = |text: &str, want: &str| {
            let err = parse::<EngineReadRow>(file, text.as_bytes()).expect_err(text);
            assert_eq!(err.to_string(), want, "{text}");
        };
        check(
            "read,engine_ops_per_s,ratio\nfull-scan,1.0,1.0\n",
            "/r/engine-reads.csv: line 1 (the header): no column `raw_ops_per_s` \
             (the header is `read,engine_ops_per_s,ratio`)",
        );
        check(
            "read,engine_ops_per_s,raw_ops_per_s,ratio\nfull-scan,1.0,2.0,0.5\nrange,1.0,,1.0\n",
            "/r/engine-reads.csv: row 2 (line 3): column `raw_ops_per_s`: does not parse: \
             cannot parse float from empty string",
        );
        check(
            "read,engine_ops_per_s,raw_ops_per_s,ratio\nfull-scan,fast,2.0,0.5\n",
            "/r/engine-reads.csv: row 1 (line 2): column `engine_ops_per_s`: does not parse: \
             invalid float literal",
        );
        let err = parse::<EngineReadRow>(
            file,
            b"read,engine_ops_per_s,raw_ops_per_s,ratio\nfull-scan,1.0,2.0\n",
        )
        .expect_err("short row");
        assert!(
            matches!(
                err,
                TableError::Row {
                    row: 1,
                    line: 2,
                    ..
                }
            ),
            "{err}"
        );
        check(
            "",
            "/r/engine-reads.csv: no header line (expected the columns \
             read,engine_ops_per_s,raw_ops_per_s,ratio)",
        );
        let err = parse::<StoreRow>(
            Path::new("store.csv"),
            b"case,round,metric,value\nstore/put/sync/1,0,ops_per_sec,1.0\n",
        )
        .expect_err("unknown metric");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "store.csv: row 1 (line 2): column `metric`: unknown variant `ops_per_sec`"
            ),
            "{text}"
        );
    }
}

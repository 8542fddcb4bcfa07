//! batchkv's metrics: what a store does, in Prometheus' terms.
//!
//! [`Metrics`] holds every series (on `prometheus-client`), latency percentiles per operation
//! (on `hdrhistogram`: P50/P90/P99/max), throughput over a sliding window and the success rate.
//! It knows nothing of the other crates: the facade (`batchkv`) feeds it, through the
//! `record_*` calls on its write path and [`Metrics::set_state`] at scrape time.
//! [`serve`] answers `GET /metrics` (the text exposition) and `GET /health` over HTTP.
//!
//! Names follow Prometheus' conventions: the `batchkv_` prefix, units in names, `_total` for
//! counters, `_seconds` and `_bytes` for histograms. docs/OBSERVABILITY.md lists them all.

#![warn(missing_docs)]

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

mod server;

pub use crate::server::{MetricsServer, ServeError, serve};

/// An operation whose latency and outcome are measured: the `op` label of the `batchkv_ops_total`,
/// `batchkv_op_duration_seconds` and `batchkv_op_latency_quantile_seconds` series. An enum, so a
/// label outside this set cannot be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpLabel {
    /// A put.
    Put,
    /// A range read (or a get).
    Range,
    /// A delete range.
    Delete,
    /// A txn.
    Txn,
    /// A lease grant or revoke.
    Lease,
    /// A compaction.
    Compact,
    /// A watch registered.
    Watch,
}

impl OpLabel {
    /// Every label, in exposition order.
    pub const ALL: [OpLabel; 7] = [
        OpLabel::Put,
        OpLabel::Range,
        OpLabel::Delete,
        OpLabel::Txn,
        OpLabel::Lease,
        OpLabel::Compact,
        OpLabel::Watch,
    ];

    /// The label's value in the exposition.
    pub fn as_str(self) -> &'static str {
        match self {
            OpLabel::Put => "put",
            OpLabel::Range => "range",
            OpLabel::Delete => "delete",
            OpLabel::Txn => "txn",
            OpLabel::Lease => "lease",
            OpLabel::Compact => "compact",
            OpLabel::Watch => "watch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A background task of the store whose failures are counted in
/// `batchkv_maintenance_errors_total{task}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaintenanceTask {
    /// Revoking an expired lease.
    LeaseRevoke,
    /// An automatic compaction.
    Compact,
    /// Syncing the WAL (`Wal` durability).
    WalSync,
}

impl MaintenanceTask {
    /// The label's value in the exposition.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceTask::LeaseRevoke => "lease_revoke",
            MaintenanceTask::Compact => "compact",
            MaintenanceTask::WalSync => "wal_sync",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    op: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    op: String,
    quantile: String,
}

/// Latency percentiles of one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

/// The store's state, read at scrape time (gauges set from it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateSample {
    /// Current revision.
    pub revision: i64,
    /// Compacted revision (-1: none).
    pub compacted_revision: i64,
    /// Keys in the index.
    pub keys: u64,
    /// Leases.
    pub leases: u64,
    /// Watchers.
    pub watchers: u64,
    /// Items waiting in the batcher's queue.
    pub queue_depth: u64,
    /// Named engine figures (RocksDB): `block_cache_hit_ratio`, `stall_micros`,
    /// `compaction_pending_bytes`, `sst_bytes`, ...; exported as `batchkv_engine_<name>`.
    pub engine: Vec<(String, f64)>,
    /// WAL syncs done by the durability layer (`Wal` mode).
    pub wal_syncs: u64,
    /// Bytes written but not yet synced.
    pub wal_unsynced_bytes: u64,
}

/// Ops per second over a sliding window of one-second buckets.
#[derive(Debug)]
struct Window {
    start: Instant,
    /// `(second since start, count)` per bucket.
    buckets: Mutex<Vec<(u64, u64)>>,
}

const WINDOW_SECS: u64 = 10;

impl Window {
    fn new() -> Self {
        Window {
            start: Instant::now(),
            buckets: Mutex::new(vec![(u64::MAX, 0); WINDOW_SECS as usize]),
        }
    }

    fn add(&self, now: Instant) {
        let sec = now.duration_since(self.start).as_secs();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut b[(sec % WINDOW_SECS) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
    }

    /// Ops per second over the last full `WINDOW_SECS` seconds (the current second excluded).
    fn rate(&self, now: Instant) -> f64 {
        let sec = now.duration_since(self.start).as_secs();
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let from = sec.saturating_sub(WINDOW_SECS);
        let n: u64 = b
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s >= from && *s < sec)
            .map(|(_, c)| c)
            .sum();
        let span = sec.clamp(1, WINDOW_SECS);
        n as f64 / span as f64
    }
}

/// Every series of one store.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    ops: Family<OutcomeLabels, Counter>,
    op_seconds: Family<OpLabels, Histogram>,
    op_quantiles: Family<QuantileLabels, Gauge<f64, AtomicU64>>,
    percentiles: Vec<Mutex<hdrhistogram::Histogram<u64>>>,
    window: Window,
    ok: AtomicU64,
    failed: AtomicU64,
    throughput: Gauge<f64, AtomicU64>,
    success_ratio: Gauge<f64, AtomicU64>,
    // Group commit.
    batch_ops: Histogram,
    batch_bytes: Histogram,
    batch_wait_seconds: Histogram,
    linger_seconds: Gauge<f64, AtomicU64>,
    flush_triggers: Family<NameLabels, Counter>,
    sink_seconds: Histogram,
    queue_depth: Gauge,
    // Codec.
    entry_bytes: Histogram,
    encode_seconds: Histogram,
    decode_seconds: Histogram,
    formats: Family<NameLabels, Counter>,
    // Engine.
    write_batch_ops: Histogram,
    apply_seconds: Histogram,
    wal_syncs: Counter,
    wal_unsynced_bytes: Gauge,
    engine: Family<NameLabels, Gauge<f64, AtomicU64>>,
    // MVCC.
    revision: Gauge,
    compacted_revision: Gauge,
    keys: Gauge,
    leases: Gauge,
    watchers: Gauge,
    events: Counter,
    // Background tasks.
    maintenance_errors: Family<TaskLabels, Counter>,
    last_wal_syncs: AtomicU64,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 10 µs .. ~42 s.
    exponential_buckets(0.000_01, 2.0, 23)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series registered, all zero.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("batchkv"),
            ops: Family::default(),
            op_seconds: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            op_quantiles: Family::default(),
            percentiles: OpLabel::ALL
                .iter()
                .map(|_| {
                    // 1 µs .. 100 s, 3 significant digits.
                    Mutex::new(
                        hdrhistogram::Histogram::new_with_bounds(1, 100_000_000, 3)
                            .expect("valid hdrhistogram bounds"),
                    )
                })
                .collect(),
            window: Window::new(),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            throughput: Gauge::default(),
            success_ratio: Gauge::default(),
            batch_ops: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            batch_bytes: Histogram::new(exponential_buckets(64.0, 4.0, 12)),
            batch_wait_seconds: Histogram::new(seconds_buckets()),
            linger_seconds: Gauge::default(),
            flush_triggers: Family::default(),
            sink_seconds: Histogram::new(seconds_buckets()),
            queue_depth: Gauge::default(),
            entry_bytes: Histogram::new(exponential_buckets(64.0, 4.0, 12)),
            encode_seconds: Histogram::new(seconds_buckets()),
            decode_seconds: Histogram::new(seconds_buckets()),
            formats: Family::default(),
            write_batch_ops: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            apply_seconds: Histogram::new(seconds_buckets()),
            wal_syncs: Counter::default(),
            wal_unsynced_bytes: Gauge::default(),
            engine: Family::default(),
            revision: Gauge::default(),
            compacted_revision: Gauge::default(),
            keys: Gauge::default(),
            leases: Gauge::default(),
            watchers: Gauge::default(),
            events: Counter::default(),
            maintenance_errors: Family::default(),
            last_wal_syncs: AtomicU64::new(0),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "ops",
            "Operations answered, by op and outcome (ok, error)",
            self.ops.clone(),
        );
        r.register_with_unit(
            "op_duration",
            "Latency of operations as callers see it",
            Unit::Seconds,
            self.op_seconds.clone(),
        );
        r.register_with_unit(
            "op_latency_quantile",
            "Latency percentiles per op from an HDR histogram (quantile 0.5, 0.9, 0.99, 1 = max)",
            Unit::Seconds,
            self.op_quantiles.clone(),
        );
        r.register(
            "throughput_ops_per_second",
            "Operations answered per second over the last 10 s",
            self.throughput.clone(),
        );
        r.register(
            "success_ratio",
            "Share of operations answered without error since start",
            self.success_ratio.clone(),
        );
        r.register(
            "batch_ops",
            "Ops per group-commit batch (= per entry)",
            self.batch_ops.clone(),
        );
        r.register_with_unit(
            "batch_size",
            "Bytes per group-commit batch, as the ops report them",
            Unit::Bytes,
            self.batch_bytes.clone(),
        );
        r.register_with_unit(
            "batch_wait",
            "How long the oldest op of a batch waited in the batcher",
            Unit::Seconds,
            self.batch_wait_seconds.clone(),
        );
        r.register_with_unit(
            "batch_linger",
            "The linger the wait policy chose for the last batch",
            Unit::Seconds,
            self.linger_seconds.clone(),
        );
        r.register(
            "batch_flushes",
            "Batches flushed, by trigger (size, bytes, timeout, target, idle, shutdown)",
            self.flush_triggers.clone(),
        );
        r.register_with_unit(
            "batch_sink",
            "Time the pipeline took per batch (encode, log, decode, apply)",
            Unit::Seconds,
            self.sink_seconds.clone(),
        );
        r.register(
            "batch_queue_depth",
            "Ops waiting in the batcher's queue",
            self.queue_depth.clone(),
        );
        r.register_with_unit(
            "codec_entry_size",
            "Encoded entry size",
            Unit::Bytes,
            self.entry_bytes.clone(),
        );
        r.register_with_unit(
            "codec_encode",
            "Time to encode an entry",
            Unit::Seconds,
            self.encode_seconds.clone(),
        );
        r.register_with_unit(
            "codec_decode",
            "Time to decode an entry",
            Unit::Seconds,
            self.decode_seconds.clone(),
        );
        r.register(
            "codec_decoded_entries",
            "Entries decoded, by format (entry, operation, legacy)",
            self.formats.clone(),
        );
        r.register(
            "engine_write_batch_ops",
            "Ops per applied entry (one RocksDB WriteBatch each)",
            self.write_batch_ops.clone(),
        );
        r.register_with_unit(
            "engine_write",
            "Time to apply an entry: prepare and commit its WriteBatch",
            Unit::Seconds,
            self.apply_seconds.clone(),
        );
        r.register(
            "engine_wal_syncs",
            "WAL fsyncs by the durability layer",
            self.wal_syncs.clone(),
        );
        r.register_with_unit(
            "engine_wal_unsynced",
            "Entry bytes written to the WAL and not yet synced",
            Unit::Bytes,
            self.wal_unsynced_bytes.clone(),
        );
        r.register(
            "engine",
            "RocksDB figures by name (block_cache_hit_ratio, stall_micros, ...)",
            self.engine.clone(),
        );
        r.register(
            "mvcc_revision",
            "The current revision",
            self.revision.clone(),
        );
        r.register(
            "mvcc_compacted_revision",
            "The compacted revision (-1: none)",
            self.compacted_revision.clone(),
        );
        r.register("mvcc_keys", "Keys in the index", self.keys.clone());
        r.register("mvcc_leases", "Leases", self.leases.clone());
        r.register("mvcc_watchers", "Watchers", self.watchers.clone());
        r.register("mvcc_events", "Watch events published", self.events.clone());
        r.register(
            "maintenance_errors",
            "Failures of the store's background tasks, by task (lease_revoke, compact, wal_sync)",
            self.maintenance_errors.clone(),
        );
    }

    /// One operation answered after `took`.
    pub fn record_op(&self, op: OpLabel, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.ops
            .get_or_create(&OutcomeLabels {
                op: op.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
        self.op_seconds
            .get_or_create(&OpLabels {
                op: op.as_str().into(),
            })
            .observe(took.as_secs_f64());
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.percentiles[op.index()].lock() {
            h.saturating_record(micros);
        }
        self.window.add(Instant::now());
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One group-commit batch: its ops and bytes, how long its oldest op waited, the linger the
    /// policy chose, why it was flushed, the pipeline's time, the queue left behind.
    #[allow(clippy::too_many_arguments)]
    pub fn record_batch(
        &self,
        ops: usize,
        bytes: usize,
        waited: Duration,
        linger: Duration,
        trigger: &str,
        sink: Duration,
        queue_depth: usize,
    ) {
        self.batch_ops.observe(ops as f64);
        self.batch_bytes.observe(bytes as f64);
        self.batch_wait_seconds.observe(waited.as_secs_f64());
        self.linger_seconds.set(linger.as_secs_f64());
        self.flush_triggers
            .get_or_create(&NameLabels {
                name: trigger.into(),
            })
            .inc();
        self.sink_seconds.observe(sink.as_secs_f64());
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
    }

    /// One entry through the codec: its size, encode and decode times, the decoded format.
    pub fn record_entry(&self, bytes: usize, encode: Duration, decode: Duration, format: &str) {
        self.entry_bytes.observe(bytes as f64);
        self.encode_seconds.observe(encode.as_secs_f64());
        self.decode_seconds.observe(decode.as_secs_f64());
        self.formats
            .get_or_create(&NameLabels {
                name: format.into(),
            })
            .inc();
    }

    /// One entry applied as a WriteBatch of `ops` ops in `took`, publishing `events` events.
    pub fn record_apply(&self, ops: usize, took: Duration, events: usize) {
        self.write_batch_ops.observe(ops as f64);
        self.apply_seconds.observe(took.as_secs_f64());
        self.events.inc_by(events as u64);
    }

    /// Sets the gauges from the store's state (call before exposition).
    pub fn set_state(&self, s: &StateSample) {
        self.revision.set(s.revision);
        self.compacted_revision.set(s.compacted_revision);
        self.keys.set(i64::try_from(s.keys).unwrap_or(i64::MAX));
        self.leases.set(i64::try_from(s.leases).unwrap_or(i64::MAX));
        self.watchers
            .set(i64::try_from(s.watchers).unwrap_or(i64::MAX));
        self.queue_depth
            .set(i64::try_from(s.queue_depth).unwrap_or(i64::MAX));
        self.wal_unsynced_bytes
            .set(i64::try_from(s.wal_unsynced_bytes).unwrap_or(i64::MAX));
        let before = self.last_wal_syncs.swap(s.wal_syncs, Ordering::Relaxed);
        self.wal_syncs.inc_by(s.wal_syncs.saturating_sub(before));
        for (name, v) in &s.engine {
            self.engine
                .get_or_create(&NameLabels { name: name.clone() })
                .set(*v);
        }
    }

    /// One failure of a background task (it logs the error itself).
    pub fn record_maintenance_error(&self, task: MaintenanceTask) {
        self.maintenance_errors
            .get_or_create(&TaskLabels {
                task: task.as_str().into(),
            })
            .inc();
    }

    /// Latency percentiles of `op`.
    pub fn latency(&self, op: OpLabel) -> LatencySummary {
        let Ok(h) = self.percentiles[op.index()].lock() else {
            return LatencySummary::default();
        };
        let d = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        LatencySummary {
            count: h.len(),
            p50: d(0.5),
            p90: d(0.9),
            p99: d(0.99),
            max: Duration::from_micros(h.max()),
        }
    }

    /// Operations answered per second over the last 10 s.
    pub fn throughput(&self) -> f64 {
        self.window.rate(Instant::now())
    }

    /// Share of operations answered without error (1 when none was answered).
    pub fn success_ratio(&self) -> f64 {
        let ok = self.ok.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        if ok + failed == 0 {
            1.0
        } else {
            ok as f64 / (ok + failed) as f64
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        self.throughput.set(self.throughput());
        self.success_ratio.set(self.success_ratio());
        for op in OpLabel::ALL {
            let s = self.latency(op);
            if s.count == 0 {
                continue;
            }
            for (q, v) in [
                ("0.5", s.p50),
                ("0.9", s.p90),
                ("0.99", s.p99),
                ("1", s.max),
            ] {
                self.op_quantiles
                    .get_or_create(&QuantileLabels {
                        op: op.as_str().into(),
                        quantile: q.into(),
                    })
                    .set(v.as_secs_f64());
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

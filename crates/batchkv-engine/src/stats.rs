//! Statistics from RocksDB's properties and tickers.

use std::fmt;

use rocksdb::properties;
use rocksdb::statistics::{Histogram, Ticker};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Per column family figures, from RocksDB properties.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CfStats {
    /// The column family.
    pub name: String,
    /// `rocksdb.estimate-num-keys`.
    pub estimated_keys: u64,
    /// `rocksdb.total-sst-files-size`, bytes.
    pub sst_bytes: u64,
    /// `rocksdb.cur-size-all-mem-tables`, bytes.
    pub memtable_bytes: u64,
    /// `rocksdb.estimate-live-data-size`, bytes: the SST bytes that hold live data (compressed;
    /// `sst_bytes / live_data_bytes` is the space amplification).
    pub live_data_bytes: u64,
    /// Raw (uncompressed) key bytes in SST files, from `rocksdb.aggregated-table-properties`
    /// (RocksDB's internal keys: each user key plus 8 bytes of sequence number and type).
    pub raw_key_bytes: u64,
    /// Raw (uncompressed) value bytes in SST files, from `rocksdb.aggregated-table-properties`.
    pub raw_value_bytes: u64,
    /// `rocksdb.estimate-pending-compaction-bytes`.
    pub pending_compaction_bytes: u64,
    /// `rocksdb.num-running-compactions`.
    pub running_compactions: u64,
    /// `rocksdb.is-write-stopped`.
    pub write_stopped: bool,
}

impl CfStats {
    /// Raw key and value bytes over SST bytes: how much smaller the data is on disk.
    /// `None` until something is on disk.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.sst_bytes > 0)
            .then(|| (self.raw_key_bytes + self.raw_value_bytes) as f64 / self.sst_bytes as f64)
    }
}

/// RocksDB statistics tickers (present when [`crate::Tuning::statistics`] is on).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tickers {
    /// `rocksdb.block.cache.hit`.
    pub block_cache_hit: u64,
    /// `rocksdb.block.cache.miss`.
    pub block_cache_miss: u64,
    /// `rocksdb.bytes.written` (user bytes).
    pub bytes_written: u64,
    /// `rocksdb.number.keys.written`.
    pub keys_written: u64,
    /// `rocksdb.wal.synced`: WAL fsyncs.
    pub wal_syncs: u64,
    /// `rocksdb.wal.bytes`.
    pub wal_bytes: u64,
    /// `rocksdb.stall.micros`: time writers spent stalled.
    pub stall_micros: u64,
    /// `rocksdb.flush.write.bytes`.
    pub flush_write_bytes: u64,
    /// `rocksdb.compact.read.bytes`.
    pub compaction_read_bytes: u64,
    /// `rocksdb.compact.write.bytes`.
    pub compaction_write_bytes: u64,
    /// Compactions run (`rocksdb.compaction.times.micros` count).
    pub compactions: u64,
    /// Total compaction time, microseconds (`rocksdb.compaction.times.micros` sum).
    pub compaction_micros: u64,
}

impl Tickers {
    /// Block cache hits over lookups; `None` before any lookup.
    pub fn block_cache_hit_rate(&self) -> Option<f64> {
        let total = self.block_cache_hit + self.block_cache_miss;
        (total > 0).then(|| self.block_cache_hit as f64 / total as f64)
    }
}

/// A snapshot of the engine's figures: [`Engine::stats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// One entry per open column family.
    pub column_families: Vec<CfStats>,
    /// Tickers, if statistics are enabled.
    pub tickers: Option<Tickers>,
    /// `rocksdb.block-cache-usage`, bytes.
    pub block_cache_usage: u64,
    /// `rocksdb.block-cache-capacity`, bytes.
    pub block_cache_capacity: u64,
}

impl EngineStats {
    /// Sums over column families: (estimated keys, SST bytes, memtable bytes, live data bytes).
    pub fn totals(&self) -> CfStats {
        let mut t = CfStats {
            name: "total".to_owned(),
            ..CfStats::default()
        };
        for c in &self.column_families {
            t.estimated_keys += c.estimated_keys;
            t.sst_bytes += c.sst_bytes;
            t.memtable_bytes += c.memtable_bytes;
            t.live_data_bytes += c.live_data_bytes;
            t.raw_key_bytes += c.raw_key_bytes;
            t.raw_value_bytes += c.raw_value_bytes;
            t.pending_compaction_bytes += c.pending_compaction_bytes;
            t.running_compactions += c.running_compactions;
            t.write_stopped |= c.write_stopped;
        }
        t
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for EngineStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>12} {:>10} {:>10} {:>10} {:>8} {:>12}",
            "cf", "keys (est)", "sst MiB", "mem MiB", "raw MiB", "ratio", "pending MiB"
        )?;
        let mut rows = self.column_families.clone();
        rows.push(self.totals());
        for c in &rows {
            writeln!(
                f,
                "{:<12} {:>12} {:>10.2} {:>10.2} {:>10.2} {:>8} {:>12.2}{}",
                c.name,
                c.estimated_keys,
                mib(c.sst_bytes),
                mib(c.memtable_bytes),
                mib(c.raw_key_bytes + c.raw_value_bytes),
                c.compression_ratio()
                    .map_or("-".to_owned(), |r| format!("{r:.2}x")),
                mib(c.pending_compaction_bytes),
                if c.write_stopped {
                    "  WRITES STOPPED"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "block cache: {:.1} of {:.1} MiB used",
            mib(self.block_cache_usage),
            mib(self.block_cache_capacity)
        )?;
        match &self.tickers {
            None => writeln!(f, "tickers: statistics disabled"),
            Some(t) => writeln!(
                f,
                "cache hit rate: {}; written: {} keys, {:.2} MiB; WAL: {} syncs, {:.2} MiB; stalls: {} µs; \
                 flush: {:.2} MiB; compaction: {} runs, {} µs, read {:.2} MiB, wrote {:.2} MiB",
                t.block_cache_hit_rate()
                    .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                t.keys_written,
                mib(t.bytes_written),
                t.wal_syncs,
                mib(t.wal_bytes),
                t.stall_micros,
                mib(t.flush_write_bytes),
                t.compactions,
                t.compaction_micros,
                mib(t.compaction_read_bytes),
                mib(t.compaction_write_bytes)
            ),
        }
    }
}

/// Reads one `name=value` field of RocksDB's table-properties text (`; `-separated); 0 if absent.
fn table_property(text: &str, name: &str) -> u64 {
    text.split(';')
        .filter_map(|field| field.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Engine {
    /// Figures from RocksDB's properties (per column family) and statistics tickers.
    ///
    /// # Errors
    /// A RocksDB property error.
    pub fn stats(&self) -> Result<EngineStats> {
        let mut cfs = Vec::new();
        for (name, h) in self.column_families().iter().zip(self.handles()?) {
            let p = |prop: &'static rocksdb::properties::PropName| -> Result<u64> {
                Ok(self
                    .db
                    .property_int_value_cf(h, prop)
                    .map_err(EngineError::rocks)?
                    .unwrap_or(0))
            };
            let table = self
                .db
                .property_value_cf(h, properties::AGGREGATED_TABLE_PROPERTIES)
                .map_err(EngineError::rocks)?
                .unwrap_or_default();
            cfs.push(CfStats {
                name: name.clone(),
                raw_key_bytes: table_property(&table, "raw key size"),
                raw_value_bytes: table_property(&table, "raw value size"),
                estimated_keys: p(properties::ESTIMATE_NUM_KEYS)?,
                sst_bytes: p(properties::TOTAL_SST_FILES_SIZE)?,
                memtable_bytes: p(properties::CUR_SIZE_ALL_MEM_TABLES)?,
                live_data_bytes: p(properties::ESTIMATE_LIVE_DATA_SIZE)?,
                pending_compaction_bytes: p(properties::ESTIMATE_PENDING_COMPACTION_BYTES)?,
                running_compactions: p(properties::NUM_RUNNING_COMPACTIONS)?,
                write_stopped: p(properties::IS_WRITE_STOPPED)? != 0,
            });
        }
        let db_prop = |prop: &'static rocksdb::properties::PropName| -> Result<u64> {
            Ok(self
                .db
                .property_int_value(prop)
                .map_err(EngineError::rocks)?
                .unwrap_or(0))
        };
        let tickers = self.opts.get_statistics().is_some().then(|| {
            let t = |ticker| self.opts.get_ticker_count(ticker);
            let compaction = self.opts.get_histogram_data(Histogram::CompactionTime);
            Tickers {
                block_cache_hit: t(Ticker::BlockCacheHit),
                block_cache_miss: t(Ticker::BlockCacheMiss),
                bytes_written: t(Ticker::BytesWritten),
                keys_written: t(Ticker::NumberKeysWritten),
                wal_syncs: t(Ticker::WalFileSynced),
                wal_bytes: t(Ticker::WalFileBytes),
                stall_micros: t(Ticker::StallMicros),
                flush_write_bytes: t(Ticker::FlushWriteBytes),
                compaction_read_bytes: t(Ticker::CompactReadBytes),
                compaction_write_bytes: t(Ticker::CompactWriteBytes),
                compactions: compaction.count(),
                compaction_micros: compaction.sum(),
            }
        });
        Ok(EngineStats {
            column_families: cfs,
            tickers,
            block_cache_usage: db_prop(properties::BLOCK_CACHE_USAGE)?,
            block_cache_capacity: db_prop(properties::BLOCK_CACHE_CAPACITY)?,
        })
    }

    /// The space the data takes: `rocksdb.total-sst-files-size` plus
    /// `rocksdb.cur-size-all-mem-tables`, summed over column families; the same figure as
    /// [`EngineStats::totals`]' `sst_bytes + memtable_bytes`, from those two properties only
    /// (a few microseconds, where [`Engine::stats`] also aggregates every SST file's table
    /// properties and estimates): what a space quota checks on the write path.
    ///
    /// # Errors
    /// A RocksDB property error.
    pub fn space_used(&self) -> Result<u64> {
        let mut total = 0u64;
        for h in self.handles()? {
            for prop in [
                properties::TOTAL_SST_FILES_SIZE,
                properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                total = total.saturating_add(
                    self.db
                        .property_int_value_cf(h, prop)
                        .map_err(EngineError::rocks)?
                        .unwrap_or(0),
                );
            }
        }
        Ok(total)
    }

    /// Prints [`Engine::stats`] to standard output (the reference system's `print_stats`).
    ///
    /// # Errors
    /// As [`Engine::stats`].
    pub fn print_stats(&self) -> Result<()> {
        print!("{}", self.stats()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::table_property;

    #[test]
    fn table_properties_parse() {
        let text = "# data blocks=3; # entries=20000; raw key size=240000; raw average key size=12.000000; raw value size=2000000; ";
        assert_eq!(table_property(text, "raw key size"), 240_000);
        assert_eq!(table_property(text, "raw value size"), 2_000_000);
        assert_eq!(table_property(text, "# entries"), 20_000);
        assert_eq!(table_property(text, "missing"), 0);
        assert_eq!(table_property("", "raw key size"), 0);
    }
}

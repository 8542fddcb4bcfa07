//! The engine's configuration: path, column families, and tuning (with ready-made profiles).

use std::path::PathBuf;

use crate::error::{EngineError, Result};

/// A compression codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// No compression.
    None,
    /// LZ4: fast, moderate ratio.
    Lz4,
    /// Snappy: fast, moderate ratio.
    Snappy,
    /// Zstandard: slower, best ratio.
    Zstd,
}

impl Codec {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
        }
    }

    pub(crate) fn to_rocks(self) -> rocksdb::DBCompressionType {
        match self {
            Codec::None => rocksdb::DBCompressionType::None,
            Codec::Lz4 => rocksdb::DBCompressionType::Lz4,
            Codec::Snappy => rocksdb::DBCompressionType::Snappy,
            Codec::Zstd => rocksdb::DBCompressionType::Zstd,
        }
    }
}

/// How SST files are compressed, level by level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compression {
    /// One codec for every level.
    Uniform(Codec),
    /// One codec per level, L0 first; the last one also covers deeper levels.
    PerLevel(Vec<Codec>),
    /// The reference system's plan: L0-L1 none (written often, read soon), L2-L4 LZ4, L5 and
    /// deeper Zstd (cold data, read rarely).
    Tiered,
}

impl Compression {
    /// The codec of each of RocksDB's 7 levels.
    pub fn levels(&self) -> Vec<Codec> {
        const LEVELS: usize = 7;
        match self {
            Compression::Uniform(c) => vec![*c; LEVELS],
            Compression::PerLevel(v) => {
                let last = v.last().copied().unwrap_or(Codec::None);
                (0..LEVELS)
                    .map(|i| v.get(i).copied().unwrap_or(last))
                    .collect()
            }
            Compression::Tiered => vec![
                Codec::None,
                Codec::None,
                Codec::Lz4,
                Codec::Lz4,
                Codec::Lz4,
                Codec::Zstd,
                Codec::Zstd,
            ],
        }
    }
}

/// Ready-made tunings; docs/TUNING.md explains each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Balanced: 64 MiB memtables, 256 MiB block cache, tiered compression.
    Default,
    /// Bulk and high-rate writes: large memtables, pipelined writes, LZ4.
    WriteHeavy,
    /// Point reads: a large block cache and bloom filters.
    ReadHeavy,
    /// Small footprint: small memtables and cache, Zstd.
    LowMemory,
}

/// Knobs that shape RocksDB's memory, compression and background work.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// SST compression.
    pub compression: Compression,
    /// Shared LRU block cache size, bytes (> 0).
    pub block_cache_bytes: usize,
    /// Memtable size per column family, bytes (> 0).
    pub write_buffer_bytes: usize,
    /// Memtables per column family, at least 2 (one active, one flushing).
    pub max_write_buffers: i32,
    /// Background flush and compaction threads (> 0).
    pub max_background_jobs: i32,
    /// Bloom filter bits per key; `None` for no filter.
    pub bloom_bits_per_key: Option<f64>,
    /// RocksDB's pipelined write (WAL and memtable stages overlap across writers).
    pub pipelined_write: bool,
    /// Collect RocksDB statistics tickers (a few percent of CPU; `stats()` reports them).
    pub statistics: bool,
}

impl Tuning {
    /// The tuning of `profile`.
    pub fn profile(profile: Profile) -> Tuning {
        const MIB: usize = 1 << 20;
        let default = Tuning {
            compression: Compression::Tiered,
            block_cache_bytes: 256 * MIB,
            write_buffer_bytes: 64 * MIB,
            max_write_buffers: 3,
            max_background_jobs: 4,
            bloom_bits_per_key: Some(10.0),
            pipelined_write: false,
            statistics: true,
        };
        match profile {
            Profile::Default => default,
            Profile::WriteHeavy => Tuning {
                compression: Compression::Uniform(Codec::Lz4),
                write_buffer_bytes: 256 * MIB,
                max_write_buffers: 4,
                max_background_jobs: 8,
                pipelined_write: true,
                ..default
            },
            Profile::ReadHeavy => Tuning {
                block_cache_bytes: 1024 * MIB,
                bloom_bits_per_key: Some(16.0),
                ..default
            },
            Profile::LowMemory => Tuning {
                compression: Compression::Uniform(Codec::Zstd),
                block_cache_bytes: 16 * MIB,
                write_buffer_bytes: 8 * MIB,
                max_write_buffers: 2,
                max_background_jobs: 2,
                ..default
            },
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`EngineError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.block_cache_bytes == 0 {
            return Err(EngineError::config(
                "block_cache_bytes",
                "must be positive, got 0",
            ));
        }
        if self.write_buffer_bytes == 0 {
            return Err(EngineError::config(
                "write_buffer_bytes",
                "must be positive, got 0",
            ));
        }
        if self.max_write_buffers < 2 {
            return Err(EngineError::config(
                "max_write_buffers",
                format!("must be at least 2, got {}", self.max_write_buffers),
            ));
        }
        if self.max_background_jobs < 1 {
            return Err(EngineError::config(
                "max_background_jobs",
                format!("must be at least 1, got {}", self.max_background_jobs),
            ));
        }
        if let Some(bits) = self.bloom_bits_per_key
            && !(bits.is_finite() && bits > 0.0)
        {
            return Err(EngineError::config(
                "bloom_bits_per_key",
                format!("must be positive, got {bits}"),
            ));
        }
        if let Compression::PerLevel(v) = &self.compression
            && v.is_empty()
        {
            return Err(EngineError::config(
                "compression",
                "PerLevel needs at least one codec",
            ));
        }
        Ok(())
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::profile(Profile::Default)
    }
}

/// Where and how to open an [`crate::Engine`].
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// The database directory.
    pub path: PathBuf,
    /// Create the directory and the database if missing.
    pub create_if_missing: bool,
    /// Column families to open besides `default` (created if missing). Column families that
    /// exist on disk are always opened too.
    pub column_families: Vec<String>,
    /// Memory, compression and background work.
    pub tuning: Tuning,
    /// Open without writing anything (RocksDB's read-only mode): the WAL is replayed into
    /// memory, not flushed, no new MANIFEST, WAL or OPTIONS file is made, and the database is not
    /// locked. Reads work on a full disk and beside a writer (as of the moment of opening);
    /// every write fails with [`crate::EngineError::ReadOnly`]. The database must exist.
    pub read_only: bool,
}

impl EngineConfig {
    /// `path` with the default tuning, created if missing, no extra column families.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EngineConfig {
            path: path.into(),
            create_if_missing: true,
            column_families: Vec::new(),
            tuning: Tuning::default(),
            read_only: false,
        }
    }

    /// Opens read-only (see [`EngineConfig::read_only`]).
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Adds column families.
    pub fn column_families<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.column_families
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Uses a ready-made profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.tuning = Tuning::profile(profile);
        self
    }

    /// Uses this tuning.
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }
}

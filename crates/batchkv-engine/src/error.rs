//! Errors of the engine. RocksDB's error is never exposed: its message and kind are copied into
//! [`EngineError::RocksDb`].

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use batchkv_batcher::ConfigError;

/// Result of the engine's fallible functions.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// RocksDB's status code, as far as callers act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    /// A write would have stalled and `no_slowdown` was set (RocksDB's `Incomplete`).
    Incomplete,
    /// Resource busy (RocksDB's `Busy`, `TryAgain`, `TimedOut`).
    Busy,
    /// An I/O error.
    Io,
    /// Data on disk is corrupt.
    Corruption,
    /// RocksDB refused an argument.
    InvalidArgument,
    /// Anything else.
    Other,
}

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// RocksDB returned an error.
    #[error("rocksdb: {message}")]
    RocksDb {
        /// The status kind.
        kind: StatusKind,
        /// RocksDB's message.
        message: String,
    },
    /// The database is held by another process (or another handle in this one).
    #[error("database at {path} is locked by another process or handle ({message})")]
    Locked {
        /// The database path.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// The path exists and is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The database does not exist and `create_if_missing` is off.
    #[error("no database at {path} (create_if_missing is off)")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
    /// A column family that was not opened.
    #[error("unknown column family {name:?} (open: {open})")]
    UnknownColumnFamily {
        /// The name asked for.
        name: String,
        /// The column families that are open, comma-separated.
        open: String,
    },
    /// `sync` without the WAL: RocksDB rejects it, and so does the engine, before writing.
    #[error("a synced write needs the WAL: sync without WAL is rejected")]
    SyncWithoutWal,
    /// The checkpoint or restore target exists already.
    #[error("target {path} already exists")]
    TargetExists {
        /// The path.
        path: PathBuf,
    },
    /// The directory holds no RocksDB database.
    #[error("{path} is not a checkpoint (no CURRENT file)")]
    NotACheckpoint {
        /// The path.
        path: PathBuf,
    },
    /// An invalid chunk-control configuration.
    #[error(transparent)]
    ChunkConfig(#[from] ConfigError),
    /// A chunked or adaptive write failed part-way: see [`PartialWrite`].
    #[error(transparent)]
    PartialWrite(Box<PartialWrite>),
    /// A failure injected by the `fault-injection` feature.
    #[error("injected write failure")]
    Injected,
    /// The engine was opened read-only ([`crate::EngineConfig::read_only`]).
    #[error("the database at {path} is open read-only: writes are refused")]
    ReadOnly {
        /// The database path.
        path: PathBuf,
    },
    /// A write would have waited for flushes and compaction to catch up (too many memtables,
    /// level-0 files or pending compaction bytes) and asked not to wait
    /// ([`crate::WriteMode::no_slowdown`]). Nothing was written; retry later.
    #[error(
        "write stall: RocksDB is holding writes back until flushes and compaction catch up \
         (too many memtables, level-0 files or pending compaction bytes) and the write asked \
         not to wait; nothing was written ({message})"
    )]
    WriteStall {
        /// RocksDB's message.
        message: String,
    },
}

impl EngineError {
    /// How many operations of a chunked or adaptive write are durable in the database (per the
    /// write mode) despite the error: 0 for every other error.
    pub fn committed_ops(&self) -> usize {
        match self {
            EngineError::PartialWrite(p) => p.committed,
            _ => 0,
        }
    }

    /// RocksDB's status kind, when RocksDB returned the error.
    pub fn status_kind(&self) -> Option<StatusKind> {
        match self {
            EngineError::RocksDb { kind, .. } => Some(*kind),
            EngineError::WriteStall { .. } => Some(StatusKind::Incomplete),
            EngineError::PartialWrite(p) => p.source.status_kind(),
            _ => None,
        }
    }

    /// Whether the error is the file system's "no space left on device" (ENOSPC). RocksDB
    /// refuses writes after it (a background error) and resumes by itself once space is free.
    pub fn is_no_space(&self) -> bool {
        match self {
            EngineError::RocksDb { kind, message } => {
                *kind == StatusKind::Io && message.contains("No space left on device")
            }
            EngineError::PartialWrite(p) => p.source.is_no_space(),
            _ => false,
        }
    }

    pub(crate) fn rocks(e: rocksdb::Error) -> Self {
        use rocksdb::ErrorKind as K;
        if e.kind() == K::Incomplete && e.as_ref().to_ascii_lowercase().contains("stall") {
            return EngineError::WriteStall {
                message: e.into_string(),
            };
        }
        let kind = match e.kind() {
            K::Incomplete => StatusKind::Incomplete,
            K::Busy | K::TryAgain | K::TimedOut => StatusKind::Busy,
            K::IOError => StatusKind::Io,
            K::Corruption => StatusKind::Corruption,
            K::InvalidArgument => StatusKind::InvalidArgument,
            _ => StatusKind::Other,
        };
        EngineError::RocksDb {
            kind,
            message: e.into_string(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        EngineError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// A chunked or adaptive write that failed part-way.
///
/// Chunks before `failed_chunk` are committed (`committed` operations, `ops[..committed]`);
/// everything after the failed chunk is not written. The failed chunk itself is one atomic
/// WriteBatch that RocksDB reported as failed: normally absent, but after an I/O error on the WAL
/// it is not *known* to be absent (its record may be replayed on reopen). Resume with
/// `ops[committed..]`: nothing is lost, and re-applying a chunk of puts and deletes is idempotent.
#[derive(Debug)]
pub struct PartialWrite {
    /// Operations committed before the failure (a prefix of the input).
    pub committed: usize,
    /// Operations in the whole write.
    pub total: usize,
    /// Index of the chunk that failed (0-based).
    pub failed_chunk: usize,
    /// The operations of the failed chunk.
    pub failed_range: Range<usize>,
    /// Why it failed.
    pub source: EngineError,
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk {} (ops {}..{}) failed with {} of {} ops committed: {}",
            self.failed_chunk,
            self.failed_range.start,
            self.failed_range.end,
            self.committed,
            self.total,
            self.source
        )
    }
}

impl std::error::Error for PartialWrite {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

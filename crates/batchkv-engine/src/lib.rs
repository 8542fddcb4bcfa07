//! batchkv's RocksDB engine: the only crate of batchkv that links RocksDB.
//!
//! - [`Engine::open`] with an [`EngineConfig`]: column families, compression per level, block
//!   cache, memtables, background jobs, bloom filters, pipelined writes, or a [`Profile`].
//! - Reads: [`Engine::get`], [`Engine::multi_get`], [`Engine::scan`] / [`Engine::range`] over a
//!   [`KeyRange`] (bounds or prefix), and [`Engine::snapshot`] for consistent multi-call reads.
//! - Atomic writes: [`Engine::begin_batch`] stages puts and deletes across column families;
//!   [`Batch::commit`] writes them as one RocksDB WriteBatch in a [`WriteMode`] (WAL, sync).
//! - Large writes, the reference system's strategies: [`Engine::write_batch_with_options`]
//!   (Mono), [`Engine::write_batch_chunked`], [`Engine::write_batch_adaptive`] (chunk size from
//!   `batchkv-batcher`'s `ChunkController`). A partial failure says exactly what committed.
//! - [`Engine::stats`] (properties and tickers), checkpoints ([`Engine::create_checkpoint`],
//!   [`list_checkpoints`], [`restore_from_checkpoint`]).
//!
//! RocksDB's error type never crosses this crate's boundary: see [`EngineError`].

#![warn(missing_docs)]

mod batch;
mod checkpoint;
mod config;
mod engine;
mod error;
mod large;
mod stats;

pub use crate::batch::{Batch, StagedBatch};
pub use crate::checkpoint::{CheckpointInfo, list_checkpoints, restore_from_checkpoint};
pub use crate::config::{Codec, Compression, EngineConfig, Profile, Tuning};
pub use crate::engine::{
    Cf, DEFAULT_CF, Engine, EngineSnapshot, KeyRange, VerifyReport, WriteMode, prefix_end,
    rocksdb_options,
};
pub use crate::error::{EngineError, PartialWrite, Result, StatusKind};
pub use crate::large::{Mutation, WriteReport};
pub use crate::stats::{CfStats, EngineStats, Tickers};

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}

//! Group commit for any sink, and the adaptive chunk controller.
//!
//! A [`Batcher`] turns many producers' small submissions into few large flushes: producers on
//! any thread call [`Batcher::submit`] and block on the returned [`Ticket`]; one worker thread
//! takes everything queued (up to `max_ops` items and `max_bytes` bytes), lingers for more only
//! when its [`WaitPolicy`] says waiting pays, hands the batch to the [`Sink`], and answers every
//! item exactly once: its result, the batch's error, or [`BatchError::Closed`].
//! [`Batcher::submit_wait`] submits and waits in one call, and flushes the item on the
//! caller's own thread when the batcher is idle (a lone writer pays no thread hand-off).
//!
//! Async callers queue with [`Batcher::try_submit`] (it never blocks; a full queue answers
//! [`SubmitError::Full`]) and `.await` the ticket ([`AsyncTicket`]): the worker wakes the task
//! when it answers, so a thousand waiting submitters cost no thread each. The crate depends on
//! no async runtime.
//!
//! [`ChunkController`] is the other half of batching: it splits one huge batch into chunks whose
//! size follows the throughput's variance. It is pure logic; `batchkv-engine` drives it.
//!
//! The crate knows nothing about storage; it depends on crossbeam-channel, atomic-waker (the
//! async ticket's waker slot) and thiserror.

#![warn(missing_docs)]

mod batcher;
mod chunk;
mod config;
mod error;
mod policy;

pub use crate::batcher::{
    AsyncTicket, BatchItem, Batcher, FlushInfo, FlushObserver, FlushOutcome, FlushTrigger,
    Shutdown, Sink, Stats, Ticket,
};
pub use crate::chunk::{
    AdaptiveBatchConfig, AdaptiveBatchResult, ChunkController, ChunkRecord, rsd_pct,
};
pub use crate::config::{BatchConfig, WaitPolicy};
pub use crate::error::{BatchError, ConfigError, Result, SubmitError};

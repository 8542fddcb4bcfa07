//! batchkv's long campaigns, each a binary that `cargo xtask` builds and runs:
//!
//! - [`torture`] (`batchkv-torture`, `cargo xtask torture`): a child process runs a mixed load
//!   on a store and is killed with SIGKILL hundreds of times, at random moments and inside
//!   chosen system calls; after each kill the store is reopened and checked.
//! - [`soak`] (`batchkv-soak`, `cargo xtask soak`): a mixed load at a fixed rate for a long
//!   time, sampling memory, file descriptors, disk use, throughput and latency, with a plot and
//!   pass/fail criteria for drift.
//!
//! A harness, not a library for users (`publish = false`).

#![warn(missing_docs)]

mod plot;
pub mod soak;
pub mod torture;

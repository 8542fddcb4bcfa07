//! batchkv's cluster fault run (issue 14): real etcd clients load a multi-process cluster on
//! loopback while its leader is killed with SIGKILL and restarted, round after round; then
//!
//! - every member's HashKV at the last revision is equal,
//! - the revision history (a watch from revision 1) is contiguous, holds every acknowledged
//!   write at the revision its answer carried, no value twice, and no definitely failed write,
//! - every member's keys are where that history ends,
//! - the recorded client history, ambiguous operations included, is linearizable (stateright's
//!   `LinearizabilityTester`, key by key: [`history`]).
//!
//! The cluster is anything implementing [`Cluster`] (endpoints, kill, restart): a real etcd 3.4
//! cluster ([`batchkv_testkit::Etcd`]) now, to prove the harness; a `batchkv serve` cluster
//! next. The short setting runs in `cargo test` (crates/batchkv-cli/tests/cluster_faults.rs),
//! the long campaign in `cargo xtask faults`.
//!
//! ```no_run
//! let mut etcd = batchkv_testkit::Etcd::start_cluster(3);
//! let report = batchkv_faults::run(&mut etcd, &batchkv_faults::Config::default())
//!     .expect("every check passes");
//! println!("{report}");
//! ```

#![warn(missing_docs)]

mod cluster;
pub mod history;
mod run;

pub use crate::cluster::{Cluster, connect, endpoints, leader};
pub use crate::run::{Config, PREFIX, Report, run};

//! What batchkv's tests (and benchmark harnesses) share, so no crate keeps its own copy:
//!
//! - [`Etcd`]: a real etcd 3.4, one member or an N-member cluster, on free loopback ports with
//!   a temp data dir, health-checked before use and killed on drop; one member can be killed
//!   with SIGKILL and restarted from its data dir; [`CtlOutput`] is what one `etcdctl` call
//!   printed.
//! - [`BatchkvServer`]: `batchkv serve` (its binary's path given by the test) on free loopback
//!   ports over a temp data dir, health-checked like etcd; stopped with SIGTERM (exit status
//!   returned), killed with SIGKILL, restarted on the same data dir.
//! - [`Rng`]: the seeded generator (splitmix64) every test and harness draws from, so a seed
//!   printed by a failing test replays the same sequence; [`env_u64`] reads a seed override.
//! - [`ChildProcess`]: re-runs the current test binary (or harness) as a child with one test
//!   selected and an environment variable telling it to play the child, reads its stdout lines
//!   and kills it with SIGKILL.
//! - [`TestPki`]: a CA, server and client certificates (and an untrusted CA's client
//!   certificate) generated at run time, for the TLS tests.
//! - [`keyspace`]: the key space of the etcd differential generators.
//! - [`free_port`], [`free_ports`], [`temp_dir`].
//!
//! It is a dev-dependency only (`publish = false`) and depends on no batchkv crate, so every
//! crate's tests may use it without a dependency cycle. Its functions panic with a clear message
//! instead of returning errors: they are test setup, and a test cannot go on without them.
//!
//! ```
//! use batchkv_testkit::Rng;
//!
//! let mut a = Rng(42);
//! let mut b = Rng(42);
//! assert_eq!(a.next(), b.next()); // a seed replays
//! assert!(a.below(10) < 10);
//! ```

#![warn(missing_docs)]

mod child;
mod cluster;
mod etcd;
pub mod keyspace;
mod net;
mod pki;
mod rng;
pub mod rt;
mod serve;

pub use crate::child::{ChildExit, ChildProcess, Lines, child_env, this_exe, this_test};
pub use crate::cluster::BatchkvCluster;
pub use crate::etcd::{CtlOutput, Etcd, INSTALL_HINT, endpoint_health, run_ctl, shell_words};
pub use crate::net::{free_port, free_ports};
pub use crate::pki::{CertFiles, TestPki};
pub use crate::rng::{Rng, env_u64, mix64};
pub use crate::serve::{BatchkvServer, ClientTls, ServeOptions};

/// A fresh temporary directory (named `batchkv-…`), removed when the handle is dropped.
///
/// # Panics
/// If the system's temp dir cannot be written.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("batchkv-")
        .tempdir()
        .expect("create a temp dir")
}

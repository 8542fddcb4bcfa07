//! A tokio runtime for tests of async code, and a bounded wait on it.

use std::future::Future;
use std::time::Duration;

/// A 2-worker multi-thread tokio runtime with timers: the size of this machine, so tests of
/// async code see the same contention the server's runtime does.
///
/// # Panics
/// If the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime")
}

/// Awaits `f` on `rt`; fails instead of hanging if it never resolves (a missed wake).
///
/// # Panics
/// If `f` does not resolve within 60 s.
pub fn within<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("no answer within 60 s: a missed wake")
    })
}

//! The one boundary between the async server and the blocking [`Store`]: every call the
//! services make into the store goes through this module, so replacing the hand-offs with the
//! batcher's async submit (issue 13: no thread per request) is a change here only.
//!
//! Now:
//! * [`submit`], [`run`] and [`spawn`] hand the call to tokio's blocking pool (`spawn_blocking`): the
//!   runtime's worker threads never wait on the batcher, RocksDB or a lock. The pool's size
//!   (`max_blocking_threads`, set by whoever builds the runtime) bounds the threads; calls
//!   beyond it queue.
//! * [`bridge_watch`] gives each watcher a thread of its own (`batchkv-watch`), since a
//!   [`Watcher`] has only blocking receives. The thread waits in `recv_timeout` (so it
//!   notices within [`POLL`] that its watch was cancelled or its stream is gone), turns what
//!   it receives into [`WatchItem`]s and sends them into the stream's channel with a blocking
//!   send: a slow client fills that channel, the thread waits, and the watcher falls behind
//!   and later catches up from storage as the MVCC's watchers do, never slowing writes. It
//!   also sends the periodic progress notifications of `progress_notify` watches. A thread
//!   per watcher is the cost of the blocking API; an async receive on the watcher removes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use batchkv::{Op, OpResponse, Store, StoreError, WatchResponse, Watcher};
use tokio::sync::mpsc;
use tonic::Status;

/// How long a watch thread waits for a response before it checks whether it should stop.
pub const POLL: Duration = Duration::from_millis(100);

/// Watch threads running now (in this process).
static WATCH_THREADS: AtomicUsize = AtomicUsize::new(0);

/// How many watch threads ([`bridge_watch`]) run now in this process: one per open watch, until
/// its thread notices the watch is gone.
pub fn watch_threads() -> usize {
    WATCH_THREADS.load(Ordering::Acquire)
}

/// Counts a watch thread while it lives.
struct Running;

impl Running {
    fn start() -> Running {
        WATCH_THREADS.fetch_add(1, Ordering::AcqRel);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        WATCH_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Submits one op through the store's pipeline (group commit) and waits for its answer
/// without blocking a runtime thread.
pub async fn submit(store: &Store, op: Op) -> Result<Result<OpResponse, StoreError>, Status> {
    let store = store.clone();
    run_owned(move || store.submit(op)).await
}

/// Runs a blocking call on the store (a read, a lease keep-alive, a checkpoint, ...) without
/// blocking a runtime thread.
pub async fn run<T, F>(store: &Store, f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> T + Send + 'static,
{
    let store = store.clone();
    run_owned(move || f(&store)).await
}

/// Starts a long blocking job on the store (a snapshot being streamed) and returns at once.
pub fn spawn<F>(store: &Store, f: F)
where
    F: FnOnce(&Store) + Send + 'static,
{
    let store = store.clone();
    drop(tokio::task::spawn_blocking(move || f(&store)));
}

async fn run_owned<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("etcdserver: a store call failed: {e}")))
}

/// Closes the store (every queued write answered, data made durable as its mode promises).
pub async fn close(store: &Store) -> Result<(), Status> {
    run(store, |s| s.close())
        .await?
        .map_err(|e| crate::error::status(&e))
}

/// What a watch thread sends its stream.
#[derive(Debug)]
pub enum WatchItem {
    /// Events, or the cancel of a watcher whose history was compacted.
    Response(WatchResponse),
    /// A progress notification: every event up to this revision was sent.
    Progress(i64),
    /// Catching up from storage failed; the watch ends.
    Failed(String),
}

/// A watch thread; dropping this stops it (within [`POLL`]), which drops the watcher.
#[derive(Debug)]
pub struct WatchBridge {
    stop: Arc<AtomicBool>,
}

impl Drop for WatchBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the thread that forwards `watcher`'s responses into `out`, each tagged with `tag`,
/// with a progress notification after every `progress_every` without one (None: never).
///
/// # Errors
/// The thread could not be started.
pub fn bridge_watch<T>(
    store: Store,
    mut watcher: Watcher,
    progress_every: Option<Duration>,
    tag: T,
    out: mpsc::Sender<(T, WatchItem)>,
) -> std::io::Result<WatchBridge>
where
    T: Clone + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let running = Running::start();
    std::thread::Builder::new()
        .name("batchkv-watch".into())
        .spawn(move || {
            let _running = running;
            let send = |item: WatchItem| out.blocking_send((tag.clone(), item)).is_ok();
            let mut last_sent = Instant::now();
            while !stopped.load(Ordering::Acquire) && !out.is_closed() {
                let waited = Instant::now();
                match watcher.recv_timeout(POLL) {
                    Ok(Some(resp)) => {
                        let last = resp.canceled;
                        if !send(WatchItem::Response(resp)) || last {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                    // Back well before the timeout with nothing: the watch is over (the store
                    // is closing).
                    Ok(None) if waited.elapsed() < POLL / 2 => return,
                    Ok(None) => {
                        let Some(every) = progress_every else {
                            continue;
                        };
                        if last_sent.elapsed() < every {
                            continue;
                        }
                        // Synced with nothing queued (recv_timeout timed out): every event up
                        // to `rev` was published before this read and is either queued now
                        // (try_recv sees it) or was already sent.
                        let rev = store.current_revision();
                        let item = match watcher.try_recv() {
                            Ok(Some(resp)) => WatchItem::Response(resp),
                            Ok(None) => WatchItem::Progress(rev),
                            Err(e) => WatchItem::Failed(e.to_string()),
                        };
                        let end = matches!(&item, WatchItem::Failed(_))
                            || matches!(&item, WatchItem::Response(r) if r.canceled);
                        if !send(item) || end {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                    Err(e) => {
                        send(WatchItem::Failed(e.to_string()));
                        return;
                    }
                }
            }
        })?;
    Ok(WatchBridge { stop })
}

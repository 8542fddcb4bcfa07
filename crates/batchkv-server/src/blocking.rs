//! The one boundary between the async server and the [`Store`]: every call the services make
//! into the store goes through this module.
//!
//! * [`submit`]: writes enter the batcher through [`Store::submit_async`] from the request's
//!   task; the task waits on the batcher's ticket (woken by its worker), so no thread waits
//!   per request: thousands of concurrent writes are thousands of tasks on the runtime's
//!   few worker threads.
//! * [`range`]: a read of one key (empty `range_end`: an index lookup and at most one RocksDB
//!   point read, microseconds) runs in place on the request's task, when the state machine's
//!   lock is free ([`Store::try_range`]); handing it to the blocking pool cost more CPU than the
//!   read (a thread woken, and the task woken back: two context switches per get). Every other
//!   range, and a one-key read that finds the lock taken, goes to the blocking pool: a span's
//!   `count` walks the whole span in the index even with a `limit` or `count_only`, so its cost
//!   is not known up front.
//! * [`run`] and [`spawn`]: other reads and blocking calls (HashKV, a checkpoint) run on
//!   tokio's blocking pool (`spawn_blocking`), so a runtime worker never waits on RocksDB or a
//!   lock; the pool's size (`max_blocking_threads`, set where the runtime is built) bounds
//!   those threads, and calls beyond it queue.
//! * [`bridge_watch`]: each watcher is a task that awaits [`Watcher::recv_async`] (woken by
//!   the hub when it sends) and forwards into the stream's channel; a slow client fills that
//!   channel, the task waits, and the watcher falls behind and later catches up from storage
//!   as the MVCC's watchers do, never slowing writes. It also sends the periodic progress
//!   notifications of `progress_notify` watches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use batchkv::{Op, OpResponse, Range, RangeResponse, Store, StoreError, WatchResponse, Watcher};
use tokio::sync::mpsc;
use tonic::Status;

/// Watch tasks running now (in this process).
static WATCH_TASKS: AtomicUsize = AtomicUsize::new(0);

/// How many watch tasks ([`bridge_watch`]) run now in this process: one per open watch,
/// until it ends or its [`WatchBridge`] is dropped.
pub fn watch_tasks() -> usize {
    WATCH_TASKS.load(Ordering::Acquire)
}

/// Counts a watch task while it lives (dropped with the task, also when it is aborted).
struct Running;

impl Running {
    fn start() -> Running {
        WATCH_TASKS.fetch_add(1, Ordering::AcqRel);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        WATCH_TASKS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Submits one op through the store's pipeline (group commit) and waits for its answer
/// without blocking a runtime thread.
pub async fn submit(store: &Store, op: Op) -> Result<Result<OpResponse, StoreError>, Status> {
    Ok(store.submit_async(op).await)
}

/// Whether `r` reads one key: cheap enough to run on a runtime worker (see [`range`]).
fn one_key(r: &Range) -> bool {
    r.range_end.is_empty()
}

/// etcd's Range on the store: in place when it reads one key and the state machine's lock is
/// free, else on the blocking pool (the module's doc says why).
pub async fn range(store: &Store, r: Range) -> Result<Result<RangeResponse, StoreError>, Status> {
    if one_key(&r)
        && let Some(resp) = store.try_range(&r)
    {
        return Ok(resp);
    }
    run(store, move |s| s.range(&r)).await
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

/// What a watch task sends its stream.
#[derive(Debug)]
pub enum WatchItem {
    /// Events, or the cancel of a watcher whose history was compacted.
    Response(WatchResponse),
    /// A progress notification: every event up to this revision was sent.
    Progress(i64),
    /// Catching up from storage failed; the watch ends.
    Failed(String),
}

/// A watch task; dropping this stops it (the task is aborted, which drops the watcher and
/// frees its slot in the hub).
#[derive(Debug)]
pub struct WatchBridge {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the task that forwards `watcher`'s responses into `out`, each tagged with `tag`,
/// with a progress notification after every `progress_every` without one (None: never).
/// Must be called within the tokio runtime.
///
/// # Errors
/// None today (the signature keeps room for a bridge that can fail to start).
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
    let running = Running::start();
    let task = tokio::spawn(async move {
        let _running = running;
        // The tag is cloned before the await, so the task needs no `T: Sync`.
        macro_rules! send {
            ($item:expr) => {{
                let msg = (tag.clone(), $item);
                out.send(msg).await.is_ok()
            }};
        }
        let mut last_sent = Instant::now();
        loop {
            let due = progress_every.map(|every| tokio::time::Instant::from_std(last_sent + every));
            tokio::select! {
                // The stream is gone: the client left or the server is stopping.
                () = out.closed() => return,
                got = watcher.recv_async() => match got {
                    Ok(Some(resp)) => {
                        let last = resp.canceled;
                        if !send!(WatchItem::Response(resp)) || last {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                    // The watch is over (the store is closing).
                    Ok(None) => return,
                    Err(e) => {
                        let _ = send!(WatchItem::Failed(e.to_string()));
                        return;
                    }
                },
                () = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {
                    // Nothing arrived for a whole interval: every event up to `rev` was
                    // published before this read and is either queued now (try_recv sees it)
                    // or was already sent. (recv_async is cancel-safe: the dropped receive
                    // lost nothing.)
                    let rev = store.current_revision();
                    let item = match watcher.try_recv() {
                        Ok(Some(resp)) => WatchItem::Response(resp),
                        Ok(None) => WatchItem::Progress(rev),
                        Err(e) => WatchItem::Failed(e.to_string()),
                    };
                    let end = matches!(&item, WatchItem::Failed(_))
                        || matches!(&item, WatchItem::Response(r) if r.canceled);
                    if !send!(item) || end {
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
        }
    });
    Ok(WatchBridge { task })
}

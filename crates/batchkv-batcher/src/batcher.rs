//! The group-commit batcher: producers submit, one worker flushes batches to a sink.

use std::any::Any;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::config::{BatchConfig, WaitPolicy};
use crate::error::{BatchError, ConfigError, SubmitError};
use crate::policy::{Linger, Policy};

/// Something that can be batched: it reports its size, for the `max_bytes` limit.
pub trait BatchItem: Send + 'static {
    /// Size in bytes as the batch limit counts it (for example, the encoded size).
    fn size_bytes(&self) -> usize;
}

impl BatchItem for Vec<u8> {
    fn size_bytes(&self) -> usize {
        self.len()
    }
}

impl BatchItem for String {
    fn size_bytes(&self) -> usize {
        self.len()
    }
}

impl BatchItem for Box<[u8]> {
    fn size_bytes(&self) -> usize {
        self.len()
    }
}

macro_rules! fixed_size_items {
    ($($t:ty),*) => {$(
        impl BatchItem for $t {
            fn size_bytes(&self) -> usize {
                std::mem::size_of::<$t>()
            }
        }
    )*};
}
fixed_size_items!(u8, u16, u32, u64, u128, usize, i32, i64);

/// Where batches go. It answers one result per item, in order, or one error for the whole batch.
///
/// Closures `FnMut(Vec<T>) -> Result<Vec<Result<O, E>>, E>` are sinks.
pub trait Sink<T>: Send + 'static {
    /// What a successful item is answered with.
    type Output: Send + 'static;
    /// What a failed item or batch is answered with.
    type Error: Send + Sync + 'static;

    /// Writes one batch.
    ///
    /// # Errors
    /// `Err` fails every item of the batch with the same error. A panic fails every item with
    /// [`BatchError::SinkPanicked`]; the batcher keeps serving with the same sink.
    #[allow(clippy::type_complexity)]
    fn flush(
        &mut self,
        batch: Vec<T>,
    ) -> Result<Vec<Result<Self::Output, Self::Error>>, Self::Error>;
}

impl<T, O, E, F> Sink<T> for F
where
    F: FnMut(Vec<T>) -> Result<Vec<Result<O, E>>, E> + Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    type Output = O;
    type Error = E;

    fn flush(&mut self, batch: Vec<T>) -> Result<Vec<Result<O, E>>, E> {
        self(batch)
    }
}

/// Why a batch was flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushTrigger {
    /// It reached `max_ops`.
    Size,
    /// It reached `max_bytes` (or the next item would pass it).
    Bytes,
    /// The linger ran out.
    Timeout,
    /// The adaptive policy's expected batch size was reached while lingering.
    Target,
    /// The queue was drained and the policy chose not to linger.
    Idle,
    /// The batcher is shutting down (graceful): flushed without lingering.
    Shutdown,
}

impl FlushTrigger {
    /// Every trigger, in the order of [`Stats::by_trigger`].
    pub const ALL: [FlushTrigger; 6] = [
        FlushTrigger::Size,
        FlushTrigger::Bytes,
        FlushTrigger::Timeout,
        FlushTrigger::Target,
        FlushTrigger::Idle,
        FlushTrigger::Shutdown,
    ];

    /// Lowercase name, for labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushTrigger::Size => "size",
            FlushTrigger::Bytes => "bytes",
            FlushTrigger::Timeout => "timeout",
            FlushTrigger::Target => "target",
            FlushTrigger::Idle => "idle",
            FlushTrigger::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a flush ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushOutcome {
    /// The sink answered every item; `failed` of them with an error.
    Answered {
        /// Items answered with an error.
        failed: usize,
    },
    /// The sink failed the whole batch.
    BatchFailed,
    /// The sink panicked.
    Panicked,
    /// The sink answered the wrong number of results.
    ContractBroken,
}

/// What one flush did, for observers (metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushInfo {
    /// Items in the batch.
    pub items: usize,
    /// Bytes in the batch, as the items report them.
    pub bytes: usize,
    /// How long the oldest item waited in the batcher before the sink got it.
    pub waited: Duration,
    /// The linger the policy chose for this batch (zero if it flushed without lingering).
    pub linger: Duration,
    /// Why it was flushed.
    pub trigger: FlushTrigger,
    /// How long the sink took.
    pub sink_time: Duration,
    /// Items left in the queue when the flush started.
    pub queue_depth: usize,
    /// How it ended.
    pub outcome: FlushOutcome,
}

/// Receives every flush; implemented by `batchkv-metrics`, or by a closure.
///
/// Called on the worker thread after the batch's submitters are answered: keep it cheap. A
/// panicking observer is ignored.
pub trait FlushObserver: Send + Sync + 'static {
    /// One flush happened.
    fn on_flush(&self, info: &FlushInfo);
}

impl<F: Fn(&FlushInfo) + Send + Sync + 'static> FlushObserver for F {
    fn on_flush(&self, info: &FlushInfo) {
        self(info)
    }
}

/// How [`Batcher::shutdown`] treats what is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Refuse new items, flush everything queued (without lingering), then stop.
    Graceful,
    /// Refuse new items, answer everything queued and not yet handed to the sink with
    /// [`BatchError::Closed`], let a flush in progress finish, then stop.
    Abort,
}

/// A snapshot of the batcher's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Items accepted by `submit`, `try_submit` and `submit_many`.
    pub submitted: u64,
    /// Batches handed to the sink.
    pub batches: u64,
    /// Items handed to the sink.
    pub items: u64,
    /// Bytes handed to the sink.
    pub bytes: u64,
    /// Batches per trigger, in the order of [`FlushTrigger::ALL`].
    pub by_trigger: [u64; 6],
    /// Items the sink answered with an error.
    pub item_errors: u64,
    /// Batches the sink failed whole.
    pub batch_errors: u64,
    /// Batches during which the sink panicked.
    pub panics: u64,
    /// Items answered `Closed` by an abort.
    pub closed: u64,
    /// The linger the policy would choose for a lone item now.
    pub current_linger: Duration,
    /// Items waiting in the queue.
    pub queue_depth: usize,
}

/// What a submitter is finally told.
type Answer<O, E> = Result<O, BatchError<E>>;

/// One item's answer slot, shared by its [`Ticket`] and the worker's [`Reply`]: the answer, and
/// whoever waits for it (a parked thread, or an async task's waker). No channel: a blocking
/// waiter parks once and is unparked once (crossbeam's receive spins, then yields the CPU four
/// times before it parks, which 64 waiting clients on 2 cores pay in system time), and a slot is
/// one allocation.
struct Slot<O, E> {
    state: Mutex<SlotState<O, E>>,
    waker: AtomicWaker,
}

struct SlotState<O, E> {
    answer: Option<Answer<O, E>>,
    /// The reply was sent or dropped: no answer will come after the one taken (if any).
    done: bool,
    /// The thread blocked in `wait`, to unpark when the answer comes.
    waiter: Option<std::thread::Thread>,
}

impl<O, E> Slot<O, E> {
    fn new(answer: Option<Answer<O, E>>) -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                done: answer.is_some(),
                answer,
                waiter: None,
            }),
            waker: AtomicWaker::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<O, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the answer (or none: the reply was dropped unsent) and wakes whoever waits.
    fn complete(&self, answer: Option<Answer<O, E>>) {
        let waiter = {
            let mut state = self.lock();
            if state.answer.is_none() && !state.done {
                state.answer = answer;
            }
            state.done = true;
            state.waiter.take()
        };
        if let Some(thread) = waiter {
            thread.unpark();
        }
        // After the answer is in the slot: the task polls again and finds it.
        self.waker.wake();
    }

    /// The answer if it has come (`Closed` if the reply was dropped unsent).
    fn take(state: &mut SlotState<O, E>) -> Option<Answer<O, E>> {
        match state.answer.take() {
            Some(answer) => Some(answer),
            None if state.done => Some(Err(BatchError::Closed)),
            None => None,
        }
    }

    /// Waits until the answer comes or `deadline` passes.
    fn wait(&self, deadline: Option<Instant>) -> Option<Answer<O, E>> {
        let mut state = self.lock();
        loop {
            if let Some(answer) = Self::take(&mut state) {
                state.waiter = None;
                return Some(answer);
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => {
                        state.waiter = None;
                        return None;
                    }
                },
            };
            state.waiter = Some(std::thread::current());
            drop(state);
            // A stale unpark (or a spurious wake-up) only sends us round the loop again.
            match left {
                None => std::thread::park(),
                Some(left) => std::thread::park_timeout(left),
            }
            state = self.lock();
        }
    }
}

/// The worker's end of an item's answer slot. Sending, or dropping it unsent (a worker that
/// died), wakes the submitter: a blocking one is unparked, an async one's waker woken.
struct Reply<O, E> {
    /// `None` once sent.
    slot: Option<Arc<Slot<O, E>>>,
}

impl<O, E> Reply<O, E> {
    /// Answers the item. A submitter that dropped its ticket does not want the answer.
    fn send(mut self, answer: Answer<O, E>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Some(answer));
        }
    }
}

impl<O, E> Drop for Reply<O, E> {
    fn drop(&mut self) {
        // Unsent: the submitter reads `Closed`.
        if let Some(slot) = self.slot.take() {
            slot.complete(None);
        }
    }
}

struct Envelope<T, O, E> {
    item: T,
    size: usize,
    enqueued: Instant,
    reply: Reply<O, E>,
}

/// A submitted item's answer: block on it ([`Ticket::wait`]) or await it (`ticket.await`,
/// through [`IntoFuture`], or [`Ticket::into_future`] for an [`AsyncTicket`]).
///
/// Dropping a ticket (or its future) does not withdraw the item: once accepted, it is flushed
/// (or answered `Closed` by an abort) exactly as if someone were waiting; only its answer is lost.
#[must_use = "an item's answer is only known by waiting on its ticket"]
pub struct Ticket<O, E> {
    slot: Arc<Slot<O, E>>,
}

impl<O, E> std::fmt::Debug for Ticket<O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.slot.lock();
        f.debug_struct("Ticket")
            .field("answered", &(state.answer.is_some() || state.done))
            .finish_non_exhaustive()
    }
}

impl<O, E> Ticket<O, E> {
    /// Blocks until the item is answered.
    ///
    /// Async code should `.await` the ticket instead: this blocks the thread.
    ///
    /// # Errors
    /// The item's [`BatchError`].
    pub fn wait(self) -> Result<O, BatchError<E>> {
        // The worker answers every item it receives; a reply dropped without an answer would
        // mean the worker died, which is reported as `Closed`.
        self.slot.wait(None).unwrap_or(Err(BatchError::Closed))
    }

    /// Blocks up to `timeout`; gives the ticket back if the answer has not come.
    ///
    /// # Errors
    /// `Err(self)` on timeout; the inner result is the item's answer.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Answer<O, E>, Self> {
        let deadline = Instant::now().checked_add(timeout);
        match self.slot.wait(Some(deadline.unwrap_or_else(far_future))) {
            Some(answer) => Ok(answer),
            None => Err(self),
        }
    }

    /// The answer if it has come, without blocking; the ticket back otherwise.
    ///
    /// # Errors
    /// `Err(self)` while the item is not answered; the inner result is the item's answer.
    pub fn try_wait(self) -> Result<Answer<O, E>, Self> {
        let answer = Slot::take(&mut self.slot.lock());
        match answer {
            Some(answer) => Ok(answer),
            None => Err(self),
        }
    }

    fn answered(answer: Answer<O, E>) -> Self {
        Ticket {
            slot: Slot::new(Some(answer)),
        }
    }

    fn pair() -> (Reply<O, E>, Self) {
        let slot = Slot::new(None);
        let reply = Reply {
            slot: Some(Arc::clone(&slot)),
        };
        (reply, Ticket { slot })
    }
}

/// A deadline no wait reaches (a timeout too large to add to now).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl<O, E> IntoFuture for Ticket<O, E> {
    type Output = Answer<O, E>;
    type IntoFuture = AsyncTicket<O, E>;

    /// The ticket as a future: `ticket.await` waits without blocking the thread.
    fn into_future(self) -> AsyncTicket<O, E> {
        AsyncTicket { ticket: Some(self) }
    }
}

/// A [`Ticket`] being awaited: resolves to the item's answer without blocking a thread. The
/// worker wakes the task that last polled it when it answers. It works on any executor: the
/// batcher depends on no async runtime.
///
/// Dropping it before it resolves does not withdraw the item (see [`Ticket`]). Polling it
/// again after it resolved answers [`BatchError::Closed`].
///
/// # Examples
/// ```
/// use batchkv_batcher::{BatchConfig, Batcher, SubmitError};
///
/// let sink = |batch: Vec<u64>| -> Result<Vec<Result<u64, String>>, String> {
///     Ok(batch.into_iter().map(|i| Ok(i * 2)).collect())
/// };
/// let batcher = Batcher::start(sink, BatchConfig::default())?;
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// // In async code: never `submit` (it blocks while the queue is full), but `try_submit`,
/// // and shed the load when the queue is full.
/// match batcher.try_submit(21) {
///     Ok(ticket) => assert_eq!(ticket.await, Ok(42)),
///     Err(SubmitError::Full(_)) => { /* answer "too many requests", or retry later */ }
///     Err(SubmitError::Closed(_)) => { /* shutting down */ }
/// }
/// # });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled; the item is queued either way"]
pub struct AsyncTicket<O, E> {
    /// `None` once resolved.
    ticket: Option<Ticket<O, E>>,
}

impl<O, E> AsyncTicket<O, E> {
    /// Whether it has resolved (polling it again would answer `Closed`).
    pub fn is_terminated(&self) -> bool {
        self.ticket.is_none()
    }
}

// Never pinned structurally: the ticket is only moved out or replaced, whatever `O` and `E` are.
impl<O, E> Unpin for AsyncTicket<O, E> {}

impl<O, E> Future for AsyncTicket<O, E> {
    type Output = Answer<O, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<O, E>> {
        let Some(ticket) = self.ticket.as_ref() else {
            return Poll::Ready(Err(BatchError::Closed));
        };
        // Register first, then look: an answer put after the look wakes the waker registered
        // before it (the worker puts the answer, then wakes).
        ticket.slot.waker.register(cx.waker());
        let Some(answer) = Slot::take(&mut ticket.slot.lock()) else {
            return Poll::Pending;
        };
        self.ticket = None;
        Poll::Ready(answer)
    }
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    batches: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    by_trigger: [AtomicU64; 6],
    item_errors: AtomicU64,
    batch_errors: AtomicU64,
    panics: AtomicU64,
    closed: AtomicU64,
    linger_ns: AtomicU64,
    /// Items accepted into the queue and not yet handed to the sink (queued, in the worker's
    /// batch being collected, or carried to its next one). Raised before an item enters the
    /// queue, lowered when its batch reaches the sink: while it is not zero, a submitter may not
    /// lead a flush of its own (it would pass items accepted before it).
    unflushed: AtomicUsize,
}

struct Inner<T, O, E> {
    /// `None` once shut down. Senders hold the read lock while sending, so once the write lock
    /// has taken the sender, no item can enter the queue: the worker answers everything in it.
    tx: RwLock<Option<Sender<Envelope<T, O, E>>>>,
    /// A receiver clone used only to read the queue length, so `stats()` takes no lock. (It
    /// keeps the channel's receiving side alive, but nothing is sent once the sender is gone.)
    depth: Receiver<Envelope<T, O, E>>,
    counters: Arc<Counters>,
    abort: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The flush a lone submitter may run on its own thread (see [`Batcher::submit_wait`]).
    lead: Arc<dyn Lead<T, O, E>>,
}

impl<T, O, E> Inner<T, O, E> {
    fn shutdown(&self, mode: Shutdown) {
        if mode == Shutdown::Abort {
            self.abort.store(true, Ordering::SeqCst);
        }
        self.closing.store(true, Ordering::SeqCst);
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        // Held while joining, so a second caller returns only once the worker is gone too.
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = worker.take() {
            // The worker catches the sink's and the observer's panics; a join error would be a
            // bug in the batcher itself, and there is nothing left to answer either way.
            let _ = handle.join();
        }
    }
}

impl<T, O, E> Drop for Inner<T, O, E> {
    fn drop(&mut self) {
        self.shutdown(Shutdown::Graceful);
    }
}

/// The group-commit batcher. Cheap to clone; every clone submits to the same worker.
///
/// Dropping the last clone shuts it down gracefully. Do not drop it, shut it down or submit to it
/// from inside the sink or an observer: the worker would wait for itself. (`stats()` is safe
/// there: it takes no lock.)
///
/// # Examples
/// ```
/// use batchkv_batcher::{BatchConfig, Batcher};
///
/// // A sink that "writes" a batch and answers each item with its batch's size.
/// let sink = |batch: Vec<u64>| -> Result<Vec<Result<usize, String>>, String> {
///     let n = batch.len();
///     Ok(batch.iter().map(|_| Ok(n)).collect())
/// };
/// let batcher = Batcher::start(sink, BatchConfig::default())?;
/// let tickets: Vec<_> = (0..10u64).map(|i| batcher.submit(i).expect("open")).collect();
/// for t in tickets {
///     assert!(t.wait().expect("written") >= 1);
/// }
/// # Ok::<(), batchkv_batcher::ConfigError>(())
/// ```
pub struct Batcher<T, O, E> {
    inner: Arc<Inner<T, O, E>>,
}

impl<T, O, E> Clone for Batcher<T, O, E> {
    fn clone(&self) -> Self {
        Batcher {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, O, E> std::fmt::Debug for Batcher<T, O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<T, O, E> Batcher<T, O, E>
where
    T: BatchItem,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts the worker thread with `sink`.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid `config`.
    pub fn start<S>(sink: S, config: BatchConfig) -> Result<Self, ConfigError>
    where
        S: Sink<T, Output = O, Error = E>,
    {
        Self::start_observed(sink, config, None)
    }

    /// Starts the worker with an observer that sees every flush.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid `config`.
    pub fn start_observed<S>(
        sink: S,
        config: BatchConfig,
        observer: Option<Arc<dyn FlushObserver>>,
    ) -> Result<Self, ConfigError>
    where
        S: Sink<T, Output = O, Error = E>,
    {
        config.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let depth_probe = rx.clone();
        let counters = Arc::new(Counters::default());
        let abort = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let max_ops = if config.enabled { config.max_ops } else { 1 };
        let shared = Arc::new(Shared {
            state: Mutex::new(FlushState {
                sink: Some(sink),
                policy: Policy::new(config.wait_policy, config.max_wait, max_ops),
            }),
            max_ops,
            max_bytes: config.max_bytes,
            counters: Arc::clone(&counters),
            abort: Arc::clone(&abort),
            closing: Arc::clone(&closing),
            observer,
            _item: PhantomData,
        });
        let worker = Worker {
            rx,
            shared: Arc::clone(&shared),
        };
        let handle = std::thread::Builder::new()
            .name("batchkv-batcher".to_owned())
            .spawn(move || worker.run())
            .map_err(|e| ConfigError::invalid("worker thread", format!("cannot spawn: {e}")))?;
        Ok(Batcher {
            inner: Arc::new(Inner {
                tx: RwLock::new(Some(tx)),
                depth: depth_probe,
                counters,
                abort,
                closing,
                worker: Mutex::new(Some(handle)),
                lead: shared,
            }),
        })
    }

    fn envelope(item: T) -> (Envelope<T, O, E>, Ticket<O, E>) {
        let (reply, ticket) = Ticket::pair();
        let env = Envelope {
            size: item.size_bytes(),
            item,
            enqueued: Instant::now(),
            reply,
        };
        (env, ticket)
    }

    /// Sends one item through `tx` (held under the caller's read lock; `None` once shut down),
    /// blocking for room or not, and counts it when the queue takes it.
    fn enqueue(
        &self,
        tx: Option<&Sender<Envelope<T, O, E>>>,
        item: T,
        block: bool,
    ) -> Result<Ticket<O, E>, SubmitError<T>> {
        let Some(tx) = tx else {
            return Err(SubmitError::Closed(item));
        };
        let (env, ticket) = Self::envelope(item);
        // Counted before it is in the queue, so no submitter can lead a flush past it.
        let unflushed = &self.inner.counters.unflushed;
        unflushed.fetch_add(1, Ordering::SeqCst);
        let sent = if block {
            tx.send(env)
                .map_err(|e| SubmitError::Closed(e.into_inner().item))
        } else {
            tx.try_send(env).map_err(|e| match e {
                TrySendError::Full(env) => SubmitError::Full(env.item),
                TrySendError::Disconnected(env) => SubmitError::Closed(env.item),
            })
        };
        match sent {
            Ok(()) => {
                self.inner
                    .counters
                    .submitted
                    .fetch_add(1, Ordering::Relaxed);
                Ok(ticket)
            }
            Err(e) => {
                unflushed.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Queues `item`, blocking while the queue is full.
    ///
    /// Async code must not call this (a full queue would block the executor's thread): use
    /// [`Batcher::try_submit`].
    ///
    /// # Errors
    /// [`SubmitError::Closed`] with the item, once the batcher is shut down.
    pub fn submit(&self, item: T) -> Result<Ticket<O, E>, SubmitError<T>> {
        let tx = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
        self.enqueue(tx.as_ref(), item, true)
    }

    /// Queues `item` if there is room; never blocks (beyond a lock held only while another
    /// submitter enqueues or a shutdown takes the queue).
    ///
    /// This is the submit for async callers: queue with it, then `.await` the ticket (see
    /// [`AsyncTicket`]). On [`SubmitError::Full`] the queue holds `queue_capacity` items the
    /// worker has not reached: the sink is behind. Shed the load rather than wait for room (a
    /// server answers "too many requests", as etcd's `etcdserver: too many requests`, and the
    /// client backs off); a caller that must not fail may retry after a delay of its own
    /// (a timer of its runtime), never in a tight loop.
    ///
    /// # Errors
    /// [`SubmitError::Full`] (busy) when the queue is full, [`SubmitError::Closed`] once shut
    /// down; both hand the item back.
    pub fn try_submit(&self, item: T) -> Result<Ticket<O, E>, SubmitError<T>> {
        let tx = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
        self.enqueue(tx.as_ref(), item, false)
    }

    /// Submits `item` and waits for its answer: [`Batcher::submit`] then [`Ticket::wait`], except
    /// that a submitter that finds the batcher idle (nothing queued or being collected, no flush
    /// in progress, and a policy that would flush a lone item at once) flushes the item itself,
    /// on its own thread, instead of handing it to the worker and sleeping until it answers:
    /// RocksDB's write-thread leader, which does its group's write itself. A lone writer then
    /// pays no thread hand-off. Submitters that arrive while it flushes queue as usual and the
    /// worker takes them once the flush is over, so flushes stay one at a time and in order, and
    /// group commit under load is unchanged (there the queue is never idle, or the adaptive
    /// policy would linger, and the item is queued).
    ///
    /// The sink, and the observer after it, may therefore run on the caller's thread: never call
    /// this from an async runtime's thread (await a [`Batcher::try_submit`] ticket there), nor
    /// while holding a lock the sink takes.
    ///
    /// # Errors
    /// [`SubmitError::Closed`] with the item, once the batcher is shut down; otherwise the item's
    /// answer, as [`Ticket::wait`] gives it.
    pub fn submit_wait(&self, item: T) -> Result<Answer<O, E>, SubmitError<T>> {
        // Held through a flush of our own, so a shutdown (which takes the sender under the write
        // lock) waits for it: nothing is flushed after the worker's last batch.
        let tx = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
        if tx.is_none() {
            return Err(SubmitError::Closed(item));
        }
        let item = match self.inner.lead.lead(item) {
            Ok(answer) => return Ok(answer),
            Err(item) => item,
        };
        let ticket = self.enqueue(tx.as_ref(), item, true)?;
        drop(tx);
        Ok(ticket.wait())
    }

    /// Queues every item in order, blocking while the queue is full, and returns one ticket per
    /// item. Items refused because the batcher is shut down get a ticket already answered
    /// [`BatchError::Closed`], so every item still gets exactly one answer.
    pub fn submit_many<I: IntoIterator<Item = T>>(&self, items: I) -> Vec<Ticket<O, E>> {
        // The lock is taken per item, never across the caller's iterator.
        items
            .into_iter()
            .map(|item| {
                self.submit(item)
                    .unwrap_or_else(|_| Ticket::answered(Err(BatchError::Closed)))
            })
            .collect()
    }

    /// A snapshot of the counters; cheap (atomic loads).
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let queue_depth = self.inner.depth.len();
        Stats {
            submitted: load(&c.submitted),
            batches: load(&c.batches),
            items: load(&c.items),
            bytes: load(&c.bytes),
            by_trigger: std::array::from_fn(|i| load(&c.by_trigger[i])),
            item_errors: load(&c.item_errors),
            batch_errors: load(&c.batch_errors),
            panics: load(&c.panics),
            closed: load(&c.closed),
            current_linger: Duration::from_nanos(load(&c.linger_ns)),
            queue_depth,
        }
    }

    /// Stops accepting items and stops the worker, treating queued items as `mode` says.
    /// Returns once the worker has stopped and every accepted item has been answered.
    pub fn shutdown(&self, mode: Shutdown) {
        self.inner.shutdown(mode);
    }

    /// Whether the batcher still accepts items.
    pub fn is_open(&self) -> bool {
        !self.inner.closing.load(Ordering::SeqCst)
    }
}

/// A batch being collected: items for the sink, and the replies kept back from it.
struct Pending<T, O, E> {
    items: Vec<T>,
    replies: Vec<Reply<O, E>>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl<T, O, E> Pending<T, O, E> {
    fn new() -> Self {
        Pending {
            items: Vec::new(),
            replies: Vec::new(),
            bytes: 0,
            oldest: None,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// What one thread at a time may use: the sink and the policy's state. The worker holds it from
/// the moment it has a batch's first item until the batch is answered (lingering included); a
/// submitter leading a flush of its own ([`Batcher::submit_wait`]) holds it for that flush. So
/// flushes never overlap and reach the sink in the order they took it.
struct FlushState<S> {
    /// `None` once the worker has stopped (dropped with it, as the worker's own sink was).
    sink: Option<S>,
    policy: Policy,
}

/// What the worker and a leading submitter share.
struct Shared<T, S: Sink<T>> {
    state: Mutex<FlushState<S>>,
    max_ops: usize,
    max_bytes: usize,
    counters: Arc<Counters>,
    abort: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    observer: Option<Arc<dyn FlushObserver>>,
    _item: PhantomData<fn(T)>,
}

/// A submitter's flush of its own item, behind a trait object so that [`Batcher`] need not
/// name the sink's type.
trait Lead<T, O, E>: Send + Sync {
    /// Flushes `item` alone on this thread if the batcher is idle and its policy would flush a
    /// lone item at once; hands the item back otherwise (it is then queued as usual).
    fn lead(&self, item: T) -> Result<Answer<O, E>, T>;
}

impl<T: BatchItem, S: Sink<T>> Lead<T, S::Output, S::Error> for Shared<T, S> {
    fn lead(&self, item: T) -> Result<Answer<S::Output, S::Error>, T> {
        // A shutdown decides what happens to items from now on (flushed by the worker, or
        // answered `Closed`): leave them to it.
        if self.closing.load(Ordering::SeqCst) {
            return Err(item);
        }
        let c = &self.counters;
        if c.unflushed.load(Ordering::SeqCst) != 0 {
            return Err(item);
        }
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            // The sink catches every panic of the sink and the observer; a poisoned lock would
            // be a bug of the batcher's own, and the state is still consistent.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // A flush is in progress (or the worker is collecting a batch): queue behind it.
            Err(TryLockError::WouldBlock) => return Err(item),
        };
        // Checked again under the lock: an item accepted before this one and not flushed yet
        // (queued, or taken by the worker, which is waiting for this lock) goes first.
        if c.unflushed.load(Ordering::SeqCst) != 0 {
            return Err(item);
        }
        let now = Instant::now();
        if self.max_ops > 1 && !state.policy.flushes_lone_item_now(now) {
            return Err(item);
        }
        c.submitted.fetch_add(1, Ordering::Relaxed);
        let bytes = item.size_bytes();
        let trigger = if self.max_ops <= 1 {
            FlushTrigger::Size
        } else if bytes >= self.max_bytes {
            FlushTrigger::Bytes
        } else {
            FlushTrigger::Idle
        };
        let (mut answers, info) = self.flush(
            &mut state,
            vec![item],
            bytes,
            now,
            trigger,
            Duration::ZERO,
            0,
        );
        drop(state);
        self.observe(&info);
        Ok(answers.pop().unwrap_or(Err(BatchError::Closed)))
    }
}

impl<T, S: Sink<T>> Shared<T, S> {
    fn lock(&self) -> MutexGuard<'_, FlushState<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `items` to the sink, builds one answer per item, updates the counters and the
    /// policy. The caller delivers the answers, then calls [`Shared::observe`].
    #[allow(clippy::too_many_arguments)]
    fn flush(
        &self,
        state: &mut FlushState<S>,
        items: Vec<T>,
        bytes: usize,
        oldest: Instant,
        trigger: FlushTrigger,
        linger: Duration,
        queue_depth: usize,
    ) -> (AnswersOf<T, S>, FlushInfo) {
        let n = items.len();
        let start = Instant::now();
        let waited = start.saturating_duration_since(oldest);
        let result = match state.sink.as_mut() {
            Some(sink) => catch_unwind(AssertUnwindSafe(|| sink.flush(items))),
            // Unreachable: the sink goes only once no sender is left, and a leader holds one.
            None => Err(Box::new("the batcher is shut down") as Box<dyn Any + Send>),
        };
        let sink_time = start.elapsed();
        // Accepted while the sink worked: queued, or taken by a worker waiting for the state.
        let queued_meanwhile = self.counters.unflushed.load(Ordering::SeqCst);
        // Answers are built first and the counters updated before anyone is answered, so a
        // submitter that sees its answer also sees it in `stats()`.
        let (outcome, answers): (FlushOutcome, AnswersOf<T, S>) = match result {
            Ok(Ok(results)) if results.len() == n => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                let answers = results
                    .into_iter()
                    .map(|r| r.map_err(BatchError::Item))
                    .collect();
                (FlushOutcome::Answered { failed }, answers)
            }
            Ok(Ok(results)) => {
                let got = results.len();
                let answers = (0..n)
                    .map(|_| {
                        Err(BatchError::SinkContract {
                            items: n,
                            results: got,
                        })
                    })
                    .collect();
                (FlushOutcome::ContractBroken, answers)
            }
            Ok(Err(e)) => {
                let e = Arc::new(e);
                let answers = (0..n)
                    .map(|_| Err(BatchError::Batch(Arc::clone(&e))))
                    .collect();
                (FlushOutcome::BatchFailed, answers)
            }
            Err(panic) => {
                let msg: Arc<str> = panic_message(panic.as_ref()).into();
                let answers = (0..n)
                    .map(|_| Err(BatchError::SinkPanicked(Arc::clone(&msg))))
                    .collect();
                (FlushOutcome::Panicked, answers)
            }
        };
        let c = &self.counters;
        match outcome {
            FlushOutcome::Answered { failed } => {
                c.item_errors.fetch_add(failed as u64, Ordering::Relaxed);
            }
            FlushOutcome::BatchFailed | FlushOutcome::ContractBroken => {
                c.batch_errors.fetch_add(1, Ordering::Relaxed);
            }
            FlushOutcome::Panicked => {
                c.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.items.fetch_add(n as u64, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        c.by_trigger[trigger.index()].fetch_add(1, Ordering::Relaxed);
        state.policy.record(n, start, sink_time, queued_meanwhile);
        c.linger_ns
            .store(state.policy.current().as_nanos() as u64, Ordering::Relaxed);
        let info = FlushInfo {
            items: n,
            bytes,
            waited,
            linger,
            trigger,
            sink_time,
            queue_depth,
            outcome,
        };
        (answers, info)
    }

    /// Tells the observer about a flush whose answers are out.
    fn observe(&self, info: &FlushInfo) {
        if let Some(observer) = &self.observer {
            // An observer's panic must not stop the worker: every queued item still needs its
            // answer.
            let _ = catch_unwind(AssertUnwindSafe(|| observer.on_flush(info)));
        }
    }
}

struct Worker<T, S: Sink<T>> {
    rx: Receiver<Envelope<T, S::Output, S::Error>>,
    shared: Arc<Shared<T, S>>,
}

type EnvelopeOf<T, S> = Envelope<T, <S as Sink<T>>::Output, <S as Sink<T>>::Error>;
type PendingOf<T, S> = Pending<T, <S as Sink<T>>::Output, <S as Sink<T>>::Error>;
type AnswersOf<T, S> = Vec<Answer<<S as Sink<T>>::Output, <S as Sink<T>>::Error>>;

impl<T, S: Sink<T>> Worker<T, S> {
    fn run(self) {
        let shared = &*self.shared;
        let mut carry: Option<EnvelopeOf<T, S>> = None;
        loop {
            let first = match carry.take() {
                Some(env) => env,
                // Disconnected: every sender is gone and the queue is empty; all answered.
                None => match self.rx.recv() {
                    Ok(env) => env,
                    Err(_) => {
                        shared.lock().sink = None;
                        return;
                    }
                },
            };
            // Waits while a submitter leads a flush of its own; meanwhile the queue fills.
            let mut state = shared.lock();
            let mut batch = Pending::new();
            let mut trigger = self.add(&mut batch, first, &mut carry);
            if trigger.is_none() {
                trigger = self.fill(&mut batch, &mut carry);
            }
            let mut linger = Duration::ZERO;
            let trigger = match trigger {
                Some(t) => t,
                None if shared.closing.load(Ordering::SeqCst) => FlushTrigger::Shutdown,
                // With batching disabled `max_ops` is 1, so `add` has already answered `Size`.
                None => {
                    let decision = state.policy.decide(batch.len(), Instant::now());
                    linger = decision.wait;
                    if decision.wait.is_zero() || batch.len() >= decision.target {
                        FlushTrigger::Idle
                    } else {
                        self.linger(&mut batch, &mut carry, decision)
                    }
                }
            };
            if shared.abort.load(Ordering::SeqCst) {
                drop(state);
                let mut replies = batch.replies;
                replies.extend(carry.take().map(|env| env.reply));
                shared
                    .counters
                    .unflushed
                    .fetch_sub(replies.len(), Ordering::SeqCst);
                self.answer_closed(replies);
                continue;
            }
            let Pending {
                items,
                replies,
                bytes,
                oldest,
            } = batch;
            let queue_depth = self.rx.len();
            // Handed to the sink now (under the state lock, so no submitter leads a flush
            // before this one is over).
            shared
                .counters
                .unflushed
                .fetch_sub(items.len(), Ordering::SeqCst);
            let oldest = oldest.unwrap_or_else(Instant::now);
            let (answers, info) = shared.flush(
                &mut state,
                items,
                bytes,
                oldest,
                trigger,
                linger,
                queue_depth,
            );
            drop(state);
            for (reply, answer) in replies.into_iter().zip(answers) {
                reply.send(answer);
            }
            shared.observe(&info);
        }
    }

    /// Adds `env` to the batch; returns the trigger if the batch is now full. An item that would
    /// push a non-empty batch past `max_bytes` is carried over to the next batch instead.
    fn add(
        &self,
        batch: &mut PendingOf<T, S>,
        env: EnvelopeOf<T, S>,
        carry: &mut Option<EnvelopeOf<T, S>>,
    ) -> Option<FlushTrigger> {
        let (max_ops, max_bytes) = (self.shared.max_ops, self.shared.max_bytes);
        if batch.len() > 0 && batch.bytes.saturating_add(env.size) > max_bytes {
            *carry = Some(env);
            return Some(FlushTrigger::Bytes);
        }
        batch.bytes = batch.bytes.saturating_add(env.size);
        batch.oldest.get_or_insert(env.enqueued);
        batch.items.push(env.item);
        batch.replies.push(env.reply);
        if batch.len() >= max_ops {
            Some(FlushTrigger::Size)
        } else if batch.bytes >= max_bytes {
            Some(FlushTrigger::Bytes)
        } else {
            None
        }
    }

    /// Natural batching: takes what is already queued, up to the limits, without waiting.
    fn fill(
        &self,
        batch: &mut PendingOf<T, S>,
        carry: &mut Option<EnvelopeOf<T, S>>,
    ) -> Option<FlushTrigger> {
        while let Ok(env) = self.rx.try_recv() {
            if let Some(t) = self.add(batch, env, carry) {
                return Some(t);
            }
        }
        None
    }

    /// Waits for more items until the deadline, the policy's target, or a limit.
    fn linger(
        &self,
        batch: &mut PendingOf<T, S>,
        carry: &mut Option<EnvelopeOf<T, S>>,
        decision: Linger,
    ) -> FlushTrigger {
        let deadline = Instant::now() + decision.wait;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(env) => {
                    if let Some(t) = self.add(batch, env, carry) {
                        return t;
                    }
                    if batch.len() >= decision.target {
                        return FlushTrigger::Target;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return FlushTrigger::Timeout,
                Err(RecvTimeoutError::Disconnected) => return FlushTrigger::Shutdown,
            }
        }
    }

    fn answer_closed(&self, replies: Vec<Reply<S::Output, S::Error>>) {
        self.shared
            .counters
            .closed
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        for reply in replies {
            reply.send(Err(BatchError::Closed));
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<X: Send + Sync>() {}
    check::<Batcher<u64, u64, String>>();
    let _ = WaitPolicy::Adaptive;
}

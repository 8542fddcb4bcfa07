//! Watch: live events from `apply`, history from storage, and the switch between them.
//!
//! `apply` publishes an entry's events after its commit, under the hub's lock, to every
//! *synced* watcher whose keys they touch, with a non-blocking send into the watcher's bounded
//! channel. A watcher whose channel is full is marked *unsynced* and gets nothing more from
//! `apply` (a slow watcher never blocks it). The watcher's own thread, in [`Watcher::recv`],
//! drains its channel and then catches up from the `kv` column family (revision-keyed, so
//! history is one range scan), up to the revision the hub has published; under the hub's lock it
//! becomes synced again once nothing was published meanwhile. Every revision it delivers is
//! above the last one it delivered, so nothing is lost or repeated across the switch. A watcher
//! that must catch up from below the compacted revision is cancelled with it, as etcd does.
//!
//! Async consumers use [`Watcher::recv_async`] / [`Watcher::poll_recv`] (or the watcher as a
//! `Stream`): each slot keeps an [`AtomicWaker`] next to its channel, and the hub wakes it after
//! every send (and when it closes), so an awaiting task is woken, never polled on a timer, and
//! costs no thread. The catch-up then runs in the consumer's task, one bounded step per poll.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use batchkv_codec::record;
use batchkv_engine::{Cf, Engine, KeyRange};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};

use crate::error::MvccError;
use crate::kv::{Event, EventKind, KeyValue};
use crate::revision::Revision;
use crate::tree_index::KeySpan;
use crate::view::span_contains;

/// Responses a watcher's channel holds before it falls behind (unsynced) by default.
pub const DEFAULT_WATCH_BUFFER: usize = 1024;
/// Records a catch-up reads from storage per step.
const CATCH_UP_RECORDS: usize = 1000;

/// What to watch (etcd's WatchCreateRequest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// The key, or the first key of the range.
    pub key: Bytes,
    /// Empty: only `key`; `\0`: every key from `key` on; otherwise the exclusive end.
    pub range_end: Bytes,
    /// The first revision to report; 0: changes after the current revision.
    pub start_revision: i64,
    /// Attach each event's previous key-value.
    pub prev_kv: bool,
    /// Leave out puts (etcd's `NOPUT` filter).
    pub no_put: bool,
    /// Leave out deletes (etcd's `NODELETE` filter).
    pub no_delete: bool,
    /// Receive [`crate::Mvcc::notify_progress`] notifications.
    pub progress_notify: bool,
    /// Responses buffered before the watcher falls behind and catches up from storage.
    pub buffer: usize,
}

impl WatchRequest {
    /// Watch exactly `key` from now on.
    pub fn key(key: impl Into<Bytes>) -> Self {
        WatchRequest {
            key: key.into(),
            range_end: Bytes::new(),
            start_revision: 0,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            buffer: DEFAULT_WATCH_BUFFER,
        }
    }

    /// Watch `[key, range_end)` (etcd's encoding of `range_end`).
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        WatchRequest {
            range_end: range_end.into(),
            ..WatchRequest::key(key)
        }
    }

    /// From revision `rev` on.
    pub fn from_revision(mut self, rev: i64) -> Self {
        self.start_revision = rev;
        self
    }

    /// With previous key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    fn span(&self) -> KeySpan<'_> {
        KeySpan::etcd(&self.key, &self.range_end)
    }

    fn wants(&self, e: &Event) -> bool {
        span_contains(self.span(), &e.kv.key)
            && !(self.no_put && e.kind == EventKind::Put
                || self.no_delete && e.kind == EventKind::Delete)
    }
}

/// One event as a watcher receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (a delete: key and mod revision only).
    pub kv: KeyValue,
    /// The key before the change, when asked for and it existed (and is still stored).
    pub prev_kv: Option<KeyValue>,
}

/// What a watcher receives (etcd's WatchResponse).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watcher.
    pub watch_id: i64,
    /// The header revision: the events' revision for live ones, the store's revision when
    /// history or a progress notification was read.
    pub revision: i64,
    /// The events of one revision, in op order (empty for a progress notification or a cancel).
    pub events: Vec<WatchEvent>,
    /// Set when the watcher was cancelled because its history was compacted.
    pub compact_revision: i64,
    /// The watcher is cancelled; nothing follows.
    pub canceled: bool,
    /// Why, when cancelled.
    pub cancel_reason: String,
}

impl WatchResponse {
    /// A progress notification: no events, not cancelled.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.canceled
    }
}

enum Msg {
    Events {
        revision: i64,
        events: Vec<Event>,
    },
    Progress(i64),
    /// The store's state was replaced ([`Hub::restored`]): wakes a receiver blocked on an
    /// empty channel so it finds its slot unsynced and catches up from storage.
    Resync,
}

struct Slot {
    req: WatchRequest,
    tx: Sender<Msg>,
    /// The task awaiting this watcher (`poll_recv`), woken after every send; empty for a
    /// blocking consumer, whom the channel wakes.
    waker: Arc<AtomicWaker>,
    synced: bool,
}

#[derive(Default)]
struct HubState {
    published: i64,
    compacted: i64,
    next_id: i64,
    slots: HashMap<i64, Slot>,
    /// Watchers of one key, by key; the others are in `ranges`, each with its span, so an
    /// event is matched against a range with two comparisons and no lookup.
    by_key: HashMap<Bytes, Vec<i64>>,
    ranges: Vec<(i64, Bytes, Bytes)>,
}

/// The watchers of one store.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    count: std::sync::atomic::AtomicUsize,
}

impl Hub {
    pub(crate) fn new(published: i64, compacted: i64) -> Self {
        Hub {
            state: Mutex::new(HubState {
                published,
                compacted,
                next_id: 1,
                ..HubState::default()
            }),
            count: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A watcher thread that panicked leaves consistent state: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn watcher_count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn has_watchers(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// Publishes a committed entry: the store is now at `revision`, compacted at `compacted`.
    pub(crate) fn publish(&self, revision: i64, compacted: i64, events: &[Event]) {
        let mut guard = self.lock();
        guard.published = revision;
        guard.compacted = compacted;
        if guard.slots.is_empty() {
            return;
        }
        let st = &mut *guard;
        let mut dead = Vec::new();
        // The tasks to wake, woken once the lock is released.
        let mut wake = Vec::new();
        for group in events.chunk_by(|a, b| a.kv.mod_revision == b.kv.mod_revision) {
            let rev = group[0].kv.mod_revision;
            let mut per: HashMap<i64, Vec<Event>> = HashMap::new();
            for e in group {
                let single = st.by_key.get(&e.kv.key).into_iter().flatten().copied();
                let ranges = st
                    .ranges
                    .iter()
                    .filter(|(_, key, end)| span_contains(KeySpan::etcd(key, end), &e.kv.key))
                    .map(|(id, _, _)| *id);
                for id in single.chain(ranges) {
                    if let Some(slot) = st.slots.get(&id)
                        && slot.synced
                        && slot.req.wants(e)
                    {
                        per.entry(id).or_default().push(e.clone());
                    }
                }
            }
            for (id, evs) in per {
                let Some(slot) = st.slots.get_mut(&id) else {
                    continue;
                };
                match slot.tx.try_send(Msg::Events {
                    revision: rev,
                    events: evs,
                }) {
                    Ok(()) => {}
                    // Behind: it catches up from storage, on its own thread (or task).
                    Err(TrySendError::Full(_)) => slot.synced = false,
                    Err(TrySendError::Disconnected(_)) => dead.push(id),
                }
                // Woken after the send: the task finds the response, or the slot unsynced.
                wake.extend(slot.waker.take());
            }
        }
        for id in dead {
            remove(st, id);
            self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        drop(guard);
        wake.into_iter().for_each(Waker::wake);
    }

    /// Sends a progress notification to every synced watcher that asked for them.
    pub(crate) fn notify_progress(&self) {
        let st = self.lock();
        let mut wake = Vec::new();
        for slot in st.slots.values() {
            if slot.synced && slot.req.progress_notify {
                let _ = slot.tx.try_send(Msg::Progress(st.published));
                wake.extend(slot.waker.take());
            }
        }
        drop(st);
        wake.into_iter().for_each(Waker::wake);
    }

    /// The store's whole state was replaced (a snapshot restored) and is now at `revision`,
    /// compacted at `compacted`: every watcher catches up from storage from the revision it
    /// expects next (or is cancelled as compacted), as etcd's watchable store moves its
    /// watchers to unsynced after a restore.
    pub(crate) fn restored(&self, revision: i64, compacted: i64) {
        let mut st = self.lock();
        st.published = revision;
        st.compacted = compacted;
        let mut wake = Vec::new();
        for slot in st.slots.values_mut() {
            slot.synced = false;
            // Full: the receiver is not blocked, and finds the slot unsynced by itself.
            let _ = slot.tx.try_send(Msg::Resync);
            wake.extend(slot.waker.take());
        }
        drop(st);
        wake.into_iter().for_each(Waker::wake);
    }

    /// The store is closing: every watcher's channel disconnects, so blocked receivers wake
    /// and end after what they already have.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        let n = st.slots.len();
        // Every sender is dropped (the channels disconnect) before its task is woken, so the
        // woken task sees the end, not an empty channel.
        let wake: Vec<Waker> = st
            .slots
            .drain()
            .filter_map(|(_, slot)| slot.waker.take())
            .collect();
        st.by_key.clear();
        st.ranges.clear();
        self.count.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
        drop(st);
        wake.into_iter().for_each(Waker::wake);
    }

    fn unregister(&self, id: i64) {
        let mut st = self.lock();
        if remove(&mut st, id) {
            self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

fn remove(st: &mut HubState, id: i64) -> bool {
    let Some(slot) = st.slots.remove(&id) else {
        return false;
    };
    if slot.req.range_end.is_empty() {
        if let Some(ids) = st.by_key.get_mut(&slot.req.key) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                st.by_key.remove(&slot.req.key);
            }
        }
    } else {
        st.ranges.retain(|(x, _, _)| *x != id);
    }
    true
}

/// Registers a watcher (the store calls this with its engine).
pub(crate) fn register(
    hub: &Arc<Hub>,
    engine: &Arc<Engine>,
    kv_cf: Cf,
    req: WatchRequest,
) -> Watcher {
    let (tx, rx) = crossbeam_channel::bounded(req.buffer.max(1));
    let waker = Arc::new(AtomicWaker::new());
    let mut st = hub.lock();
    let id = st.next_id;
    st.next_id += 1;
    let next = if req.start_revision > 0 {
        req.start_revision
    } else {
        st.published + 1
    };
    let synced = next > st.published;
    if req.range_end.is_empty() {
        st.by_key.entry(req.key.clone()).or_default().push(id);
    } else {
        st.ranges.push((id, req.key.clone(), req.range_end.clone()));
    }
    st.slots.insert(
        id,
        Slot {
            req: req.clone(),
            tx,
            waker: Arc::clone(&waker),
            synced,
        },
    );
    hub.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    drop(st);
    Watcher {
        id,
        req,
        next,
        hub: Arc::clone(hub),
        engine: Arc::clone(engine),
        kv_cf,
        rx,
        waker,
        queue: VecDeque::new(),
        done: false,
    }
}

/// A watch: receive its responses with [`Watcher::recv`] (or `recv_timeout`, `try_recv`), or,
/// in async code, with [`Watcher::recv_async`] (or [`Watcher::poll_recv`], or as a
/// `futures_core::Stream` of `Result<WatchResponse, MvccError>`). Dropping it (or
/// [`Watcher::cancel`]) ends the watch and frees its slot in the hub.
pub struct Watcher {
    id: i64,
    req: WatchRequest,
    /// The lowest revision not delivered yet.
    next: i64,
    hub: Arc<Hub>,
    engine: Arc<Engine>,
    kv_cf: Cf,
    rx: Receiver<Msg>,
    /// Shared with the hub's slot: the task of the last `poll_recv`.
    waker: Arc<AtomicWaker>,
    queue: VecDeque<WatchResponse>,
    done: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("id", &self.id)
            .field("next", &self.next)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Watcher {
    /// The watch id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The lowest revision not delivered yet.
    pub fn next_revision(&self) -> i64 {
        self.next
    }

    /// Ends the watch (also what dropping it does).
    pub fn cancel(self) {}

    /// The next response, waiting for it. `Ok(None)` once the watch was cancelled (after the
    /// cancel response) or the store is gone.
    ///
    /// # Errors
    /// A storage error while catching up from history.
    pub fn recv(&mut self) -> Result<Option<WatchResponse>, MvccError> {
        self.next_response(None)
    }

    /// As [`Watcher::recv`], waiting at most `timeout`; `Ok(None)` when nothing came.
    ///
    /// # Errors
    /// A storage error while catching up from history.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<WatchResponse>, MvccError> {
        self.next_response(Some(Instant::now() + timeout))
    }

    /// A response if one is ready (catching up from storage counts as ready).
    ///
    /// # Errors
    /// A storage error while catching up from history.
    pub fn try_recv(&mut self) -> Result<Option<WatchResponse>, MvccError> {
        self.next_response(Some(Instant::now()))
    }

    /// The next response, awaited without blocking a thread: the hub wakes the task when it
    /// sends this watcher a response, or when the store closes. `Ok(None)` as for
    /// [`Watcher::recv`].
    ///
    /// Cancel-safe: dropping the future (a `select!` that chose another branch) loses no
    /// response; the next call returns it. A watcher that fell behind catches up from storage
    /// in the awaiting task, one bounded read (about a thousand records) per poll, yielding to
    /// the executor between reads. A slow consumer never slows writers: the hub never waits
    /// for it (it falls behind and catches up, as with `recv`).
    ///
    /// # Errors
    /// A storage error while catching up from history.
    ///
    /// # Examples
    /// ```
    /// use batchkv_codec::{Op, Put};
    /// use batchkv_mvcc::{Mvcc, MvccConfig, WatchRequest};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut store = Mvcc::open(MvccConfig::new(dir.path()))?;
    /// let mut w = store.watch(WatchRequest::key("k"));
    /// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?;
    /// // The task waits without a thread of its own; apply wakes it.
    /// let waiting = rt.spawn(async move { w.recv_async().await });
    /// store.apply(1, &[Op::Put(Put::new("k", "v"))])?;
    /// let resp = rt.block_on(waiting)??.expect("an event");
    /// assert_eq!(resp.events[0].kv.mod_revision, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn recv_async(&mut self) -> Result<Option<WatchResponse>, MvccError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next response: `Poll::Pending` (the task is woken when one comes) or what
    /// [`Watcher::recv_async`] would resolve to. For hand-written futures and streams; after
    /// `Ready(Ok(None))` it stays so.
    ///
    /// # Errors
    /// A storage error while catching up from history.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<WatchResponse>, MvccError>> {
        let mut caught_up = false;
        loop {
            if let Some(r) = self.queue.pop_front() {
                return Poll::Ready(Ok(Some(r)));
            }
            if self.done {
                return Poll::Ready(Ok(None));
            }
            // Register first, then look: a send after the look wakes the task registered
            // before it (the hub sends, then wakes).
            self.waker.register(cx.waker());
            match self.rx.try_recv() {
                Ok(msg) => match self.take(msg) {
                    Ok(Some(r)) => return Poll::Ready(Ok(Some(r))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Err(TryRecvError::Disconnected) => {
                    self.done = true;
                    continue;
                }
                Err(TryRecvError::Empty) => {}
            }
            let synced = self.hub.lock().slots.get(&self.id).is_none_or(|s| s.synced);
            if synced {
                return Poll::Pending;
            }
            if caught_up {
                // A catch-up step that found nothing for this watcher: let the executor run
                // other tasks before the next one.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Err(e) = self.catch_up() {
                return Poll::Ready(Err(e));
            }
            caught_up = true;
        }
    }

    fn next_response(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<WatchResponse>, MvccError> {
        loop {
            if let Some(r) = self.queue.pop_front() {
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            // What apply has sent.
            if let Ok(msg) = self.rx.try_recv() {
                if let Some(r) = self.take(msg)? {
                    return Ok(Some(r));
                }
                continue;
            }
            let synced = self.hub.lock().slots.get(&self.id).is_none_or(|s| s.synced);
            if !synced {
                self.catch_up()?;
                continue;
            }
            let msg = match deadline {
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => {
                        self.done = true;
                        continue;
                    }
                },
                Some(d) => match self.rx.recv_deadline(d) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        // It may have fallen behind while we waited on an empty channel.
                        let synced = self.hub.lock().slots.get(&self.id).is_none_or(|s| s.synced);
                        if synced {
                            return Ok(None);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        self.done = true;
                        continue;
                    }
                },
            };
            if let Some(r) = self.take(msg)? {
                return Ok(Some(r));
            }
        }
    }

    /// Turns a message from apply into a response, or `None` for revisions already delivered.
    fn take(&mut self, msg: Msg) -> Result<Option<WatchResponse>, MvccError> {
        match msg {
            Msg::Resync => Ok(None),
            Msg::Progress(rev) => Ok(Some(WatchResponse {
                watch_id: self.id,
                revision: rev,
                ..WatchResponse::default()
            })),
            Msg::Events { revision, events } => {
                if revision < self.next {
                    return Ok(None);
                }
                self.next = revision + 1;
                self.respond(revision, events).map(Some)
            }
        }
    }

    /// The key-value stored at `rev`, if it still is (compaction may have removed it).
    fn read_prev(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        let Some(raw) = self.engine.get(self.kv_cf, &rev.to_bytes())? else {
            return Ok(None);
        };
        Ok(record_kv(&raw, rev).filter(|kv| kv.version > 0))
    }

    fn cancel_compacted(&mut self, compacted: i64) {
        self.queue.push_back(WatchResponse {
            watch_id: self.id,
            revision: compacted,
            compact_revision: compacted,
            canceled: true,
            cancel_reason: format!(
                "mvcc: required revision has been compacted (watch needed revision {}, compacted \
                 revision is {compacted})",
                self.next
            ),
            ..WatchResponse::default()
        });
        self.done = true;
        self.hub.unregister(self.id);
    }

    /// One step of catching up from storage (the channel is drained, the slot unsynced).
    fn catch_up(&mut self) -> Result<(), MvccError> {
        let (published, compacted) = {
            let st = self.hub.lock();
            (st.published, st.compacted)
        };
        if self.next < compacted {
            self.cancel_compacted(compacted);
            return Ok(());
        }
        if self.next <= published {
            let start = self.next;
            let (responses, end) = self.read_history(start, published)?;
            let compacted_now = self.hub.lock().compacted;
            if start < compacted_now {
                // A compaction ran while we read: records we needed may be gone.
                self.cancel_compacted(compacted_now);
                return Ok(());
            }
            self.queue.extend(responses);
            self.next = end + 1;
        }
        let mut st = self.hub.lock();
        if self.next > st.published
            && let Some(slot) = st.slots.get_mut(&self.id)
        {
            slot.synced = true;
        }
        Ok(())
    }

    /// Reads revisions `from..` (at most up to `to`, about [`CATCH_UP_RECORDS`] records) from
    /// storage; returns the responses and the last revision covered.
    fn read_history(&self, from: i64, to: i64) -> Result<(Vec<WatchResponse>, i64), MvccError> {
        let range = KeyRange::between(
            Revision::new(from, 0).to_bytes().to_vec(),
            Revision::new(to + 1, 0).to_bytes().to_vec(),
        );
        let mut events: Vec<(i64, Event)> = Vec::new();
        let mut end = to;
        let mut seen = 0usize;
        let mut bad: Option<Revision> = None;
        self.engine.scan(self.kv_cf, &range, false, |k, v| {
            let Some(rev) = Revision::from_bytes(k) else {
                bad = Some(Revision::default());
                return false;
            };
            // Stop at a revision boundary once enough was read.
            if seen >= CATCH_UP_RECORDS && events.last().is_some_and(|(r, _)| *r != rev.main) {
                end = rev.main - 1;
                return false;
            }
            seen += 1;
            let Some(rec) = record::decode_record(v) else {
                bad = Some(rev);
                return false;
            };
            let kind = if rec.tombstone {
                EventKind::Delete
            } else {
                EventKind::Put
            };
            let kv = record_kv(v, rev).unwrap_or_default();
            let prev = (rec.prev != (0, 0)).then(|| Revision::new(rec.prev.0, rec.prev.1));
            let e = Event { kind, kv, prev };
            if self.req.wants(&e) {
                events.push((rev.main, e));
            }
            true
        })?;
        if let Some(rev) = bad {
            return Err(MvccError::Corrupt {
                path: self.engine.path().to_path_buf(),
                what: format!("undecodable record at revision {rev} (watch history)"),
            });
        }
        let mut out = Vec::new();
        for group in events.chunk_by(|a, b| a.0 == b.0) {
            let evs: Vec<Event> = group.iter().map(|(_, e)| e.clone()).collect();
            out.push(self.respond(to, evs)?);
        }
        Ok((out, end))
    }

    /// A response of `events` (one revision), reading previous values when asked.
    fn respond(&self, header: i64, events: Vec<Event>) -> Result<WatchResponse, MvccError> {
        let mut out = Vec::with_capacity(events.len());
        // As etcd, which reads prev_kv at `mod_revision - 1`: below the compacted revision
        // there is none, however far physical compaction has got.
        let compacted = if self.req.prev_kv {
            self.hub.lock().compacted
        } else {
            0
        };
        for e in events {
            let prev_kv = match (self.req.prev_kv, e.prev) {
                (true, Some(p)) if e.kv.mod_revision > compacted => self.read_prev(p)?,
                _ => None,
            };
            out.push(WatchEvent {
                kind: e.kind,
                kv: e.kv,
                prev_kv,
            });
        }
        Ok(WatchResponse {
            watch_id: self.id,
            revision: header,
            events: out,
            ..WatchResponse::default()
        })
    }
}

/// The watcher as a stream of responses; it ends where [`Watcher::recv`] answers `Ok(None)`.
impl futures_core::Stream for Watcher {
    type Item = Result<WatchResponse, MvccError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

/// The key-value a stored record describes (a delete: key and revision only).
pub(crate) fn record_kv(raw: &[u8], rev: Revision) -> Option<KeyValue> {
    let rec = record::decode_record(raw)?;
    Some(if rec.tombstone {
        KeyValue {
            key: Bytes::copy_from_slice(rec.key),
            mod_revision: rev.main,
            ..KeyValue::default()
        }
    } else {
        KeyValue {
            key: Bytes::copy_from_slice(rec.key),
            create_revision: rec.created.0,
            mod_revision: rev.main,
            version: rec.version,
            value: Bytes::copy_from_slice(rec.value),
            lease: rec.lease,
        }
    })
}

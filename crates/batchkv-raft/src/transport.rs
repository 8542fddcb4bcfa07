//! How raft messages travel: the [`Transport`] seam (opaque bytes to a node id), a node's
//! [`Mailbox`], and [`LocalNetwork`], an in-process network whose faults a test controls.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Sends raft messages, encoded by raft's own codec, to other nodes. Best effort: a message may
/// be lost (raft retries), and `send` must not block on the peer.
pub trait Transport: Send + Sync {
    /// Sends one encoded raft message to node `to`.
    fn send(&self, to: u64, msg: Vec<u8>);

    /// The membership changed (called at start and after each configuration change is
    /// applied, on the node's thread): a transport that addresses members by their records
    /// (URLs) adds and drops peers here. Does nothing by default.
    fn members_changed(&self, _membership: &crate::node::Membership) {}
}

/// Where a node's incoming raft messages go: hand each received message to
/// [`Mailbox::deliver`]. Cheap to clone.
#[derive(Clone)]
pub struct Mailbox(pub(crate) Arc<dyn Fn(Vec<u8>) -> bool + Send + Sync>);

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox")
    }
}

impl Mailbox {
    /// Queues one encoded raft message for the node; false if the node has stopped.
    pub fn deliver(&self, msg: Vec<u8>) -> bool {
        (self.0)(msg)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct NetState {
    mailboxes: HashMap<u64, Mailbox>,
    /// When set, a message passes only between two nodes of the same group.
    groups: Option<Vec<HashSet<u64>>>,
    /// Links cut one way: (from, to).
    cut: HashSet<(u64, u64)>,
    /// Percent of messages lost at random.
    loss_percent: u64,
    delay: Duration,
    /// Messages larger than this are lost (a link that cannot carry a snapshot).
    max_bytes: Option<usize>,
    /// Damage the data of every snapshot message (a link that corrupts them).
    corrupt_snapshots: bool,
    corrupted: u64,
    rng: u64,
    sent: u64,
    dropped: u64,
    oversize: u64,
}

impl NetState {
    fn passes(&self, from: u64, to: u64) -> bool {
        if self.cut.contains(&(from, to)) {
            return false;
        }
        match &self.groups {
            Some(groups) => groups.iter().any(|g| g.contains(&from) && g.contains(&to)),
            None => true,
        }
    }

    /// splitmix64: the loss draw, reproducible from the network's seed.
    fn draw(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    from: u64,
    to: u64,
    msg: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    // Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// An in-process network for tests: nodes register their [`Mailbox`], each gets a
/// [`Transport`] from [`LocalNetwork::transport`], and the test drops, delays and partitions
/// messages. Faults are checked when a message is sent and again when a delayed one is
/// delivered. Cheap to clone (one network).
#[derive(Clone)]
pub struct LocalNetwork {
    state: Arc<Mutex<NetState>>,
    delayer: Sender<Delayed>,
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("LocalNetwork")
            .field("nodes", &s.mailboxes.keys().collect::<Vec<_>>())
            .field("groups", &s.groups)
            .field("loss_percent", &s.loss_percent)
            .field("delay", &s.delay)
            .finish()
    }
}

impl LocalNetwork {
    /// A network without faults; `seed` drives the random loss of [`LocalNetwork::set_loss`].
    pub fn new(seed: u64) -> LocalNetwork {
        let state = Arc::new(Mutex::new(NetState {
            rng: seed,
            ..NetState::default()
        }));
        let (delayer, rx) = crossbeam_channel::unbounded();
        let st = Arc::clone(&state);
        std::thread::Builder::new()
            .name("raft-localnet".into())
            .spawn(move || deliver_delayed(&st, &rx))
            .expect("spawn the local network's delivery thread");
        LocalNetwork { state, delayer }
    }

    /// Connects node `id` (again, after a restart): messages to it go to `mailbox`.
    pub fn register(&self, id: u64, mailbox: Mailbox) {
        lock(&self.state).mailboxes.insert(id, mailbox);
    }

    /// Disconnects node `id` (stopped): messages to it are lost.
    pub fn unregister(&self, id: u64) {
        lock(&self.state).mailboxes.remove(&id);
    }

    /// The transport node `from` sends through.
    pub fn transport(&self, from: u64) -> Arc<dyn Transport> {
        Arc::new(LocalTransport {
            from,
            net: self.clone(),
        })
    }

    /// Splits the network: a message passes only between nodes of the same group (a node in
    /// no group is isolated).
    pub fn partition(&self, groups: &[&[u64]]) {
        lock(&self.state).groups =
            Some(groups.iter().map(|g| g.iter().copied().collect()).collect());
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        lock(&self.state).cut.insert((from, to));
    }

    /// Loses `percent` (0..=100) of all messages at random.
    pub fn set_loss(&self, percent: u64) {
        lock(&self.state).loss_percent = percent.min(100);
    }

    /// Delays every message by `delay` before delivery (zero: delivered at once).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Loses every message larger than `bytes` (`None`: no limit), as a link that cannot carry
    /// a snapshot.
    pub fn set_max_message_bytes(&self, bytes: Option<usize>) {
        lock(&self.state).max_bytes = bytes;
    }

    /// Flips one byte in the middle of the data of every snapshot message from now on (`false`:
    /// no more), as a link that damages them. [`LocalNetwork::heal`] leaves this as it is.
    pub fn set_corrupt_snapshots(&self, on: bool) {
        lock(&self.state).corrupt_snapshots = on;
    }

    /// Snapshot messages damaged so far ([`LocalNetwork::set_corrupt_snapshots`]).
    pub fn corrupted_snapshots(&self) -> u64 {
        lock(&self.state).corrupted
    }

    /// Removes every fault: no partition, no cut link, no loss, no delay, no size limit (damage
    /// to snapshots stays, see [`LocalNetwork::set_corrupt_snapshots`]).
    pub fn heal(&self) {
        let mut s = lock(&self.state);
        s.groups = None;
        s.cut.clear();
        s.loss_percent = 0;
        s.delay = Duration::ZERO;
        s.max_bytes = None;
    }

    /// Messages lost so far for being larger than [`LocalNetwork::set_max_message_bytes`].
    pub fn oversize_dropped(&self) -> u64 {
        lock(&self.state).oversize
    }

    /// Messages sent so far and how many of them the faults dropped.
    pub fn counts(&self) -> (u64, u64) {
        let s = lock(&self.state);
        (s.sent, s.dropped)
    }

    fn send(&self, from: u64, to: u64, mut msg: Vec<u8>) {
        let mut s = lock(&self.state);
        s.sent += 1;
        if s.corrupt_snapshots
            && let Ok(mut m) = crate::storage::decode::<raft::eraftpb::Message>(&msg)
            && m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
            && !m.get_snapshot().data.is_empty()
            && s.passes(from, to)
        {
            let data = &mut m.mut_snapshot().data;
            let at = data.len() / 2;
            data[at] ^= 0xff;
            if let Ok(bytes) = crate::storage::encode(&m) {
                msg = bytes;
                s.corrupted += 1;
            }
        }
        let lost = s.loss_percent > 0 && s.draw() % 100 < s.loss_percent;
        if s.max_bytes.is_some_and(|max| msg.len() > max) {
            s.oversize += 1;
            s.dropped += 1;
            return;
        }
        if lost || !s.passes(from, to) {
            s.dropped += 1;
            return;
        }
        if s.delay.is_zero() {
            if let Some(mb) = s.mailboxes.get(&to) {
                mb.deliver(msg);
            }
            return;
        }
        let d = Delayed {
            at: Instant::now() + s.delay,
            seq: s.sent,
            from,
            to,
            msg,
        };
        drop(s);
        let _ = self.delayer.send(d);
    }
}

fn deliver_delayed(state: &Mutex<NetState>, rx: &Receiver<Delayed>) {
    let mut heap = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|d: &Delayed| d.at <= now) {
            let Some(d) = heap.pop() else { break };
            let s = lock(state);
            if s.passes(d.from, d.to)
                && let Some(mb) = s.mailboxes.get(&d.to)
            {
                mb.deliver(d.msg);
            }
        }
        let next = match heap.peek() {
            Some(d) => rx.recv_timeout(d.at.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(d) => heap.push(d),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

struct LocalTransport {
    from: u64,
    net: LocalNetwork,
}

impl Transport for LocalTransport {
    fn send(&self, to: u64, msg: Vec<u8>) {
        self.net.send(self.from, to, msg);
    }
}

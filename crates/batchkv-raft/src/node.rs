//! [`RaftNode`]: one thread running raft-rs's Ready loop over a [`RaftStorage`], a
//! [`StateMachine`] (the applier) and a [`Transport`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};

use crate::error::RaftError;
use crate::storage::{RaftStorage, RecordUpdate, decode, encode};
use crate::transport::{Mailbox, Transport};

/// The applier: one per node, it applies every committed normal entry in index order, whoever
/// proposed it.
pub trait StateMachine: Send {
    /// What applying an entry answers the entry's proposer, if it proposed at this node (the
    /// results of the entry's ops, say): [`RaftNode::propose_for_output`] returns it.
    type Output: Send + 'static;

    /// Applies the entry at `index` (greater than every index applied before). Empty entries
    /// (a new leader's) and configuration changes are not passed here.
    fn apply(&mut self, index: u64, entry: &[u8]) -> Self::Output;

    /// The last index applied: at restart the log is replayed above it, and entries at or below
    /// it are never passed to [`StateMachine::apply`] again. It may lag after a power loss
    /// (a state machine that skips its own fsync, raft's log being the durable record): the log
    /// still holds every entry above the index last made durable by
    /// [`StateMachine::snapshot`], the only point after which entries are dropped.
    fn applied_index(&self) -> u64;

    /// The state as of [`StateMachine::applied_index`] as opaque bytes for
    /// [`StateMachine::restore`] on another node, made durable first (a state machine that
    /// skips its own fsync syncs here). The node calls it only through the defaults of
    /// [`StateMachine::sync`] (log compaction) and [`StateMachine::snapshot_builder`] (a
    /// snapshot for a follower); a state machine that overrides both is never asked. An error
    /// leaves the log uncompacted, or the follower waiting; the node asks again later.
    ///
    /// # Errors
    /// Why no snapshot could be taken.
    fn snapshot(&mut self) -> Result<Vec<u8>, String>;

    /// Makes the state as of [`StateMachine::applied_index`] durable: log compaction drops the
    /// entries below right after. The default takes a [`StateMachine::snapshot`] (which makes
    /// the state durable) and drops it; a state machine that can sync without copying its
    /// state overrides it.
    ///
    /// # Errors
    /// Why the state cannot be made durable now (the log is not compacted; the node asks again).
    fn sync(&mut self) -> Result<(), String> {
        self.snapshot().map(drop)
    }

    /// Starts a snapshot for a follower that needs one (raft's log no longer has the entries it
    /// lacks). Called on the node thread; the returned [`SnapshotBuilder`] runs on a worker
    /// thread while the node goes on (ticks, heartbeats, applying entries), and answers the
    /// index its state was captured at (an index applied here) with the snapshot's bytes for
    /// [`StateMachine::restore`]. The default takes [`StateMachine::snapshot`] here, on the node
    /// thread, and hands it over; a state machine whose state is large captures a consistent
    /// view here cheaply (or in the builder) and copies it in the builder.
    ///
    /// # Errors
    /// Why no snapshot can be started (the node asks again when raft next needs one).
    fn snapshot_builder(&mut self) -> Result<SnapshotBuilder, String> {
        let index = self.applied_index();
        let data = self.snapshot()?;
        Ok(Box::new(move || Ok((index, data))))
    }

    /// Checks a snapshot's bytes (a checksum, say) when it arrives, before raft takes it: a
    /// snapshot refused here is dropped like a lost message (the leader sends it again), where
    /// one that [`StateMachine::restore`] cannot install stops the member. The default accepts
    /// everything.
    ///
    /// # Errors
    /// Why the bytes are not an intact snapshot.
    fn verify_snapshot(&self, data: &[u8]) -> Result<(), String> {
        let _ = data;
        Ok(())
    }

    /// Replaces the whole state with a snapshot taken at `index` by [`StateMachine::snapshot`]
    /// (on the leader), durably; afterwards [`StateMachine::applied_index`] is `index`.
    fn restore(&mut self, index: u64, data: &[u8]);
}

/// The work of building a snapshot off the node thread ([`StateMachine::snapshot_builder`]):
/// answers the index the state machine's state was captured at (one it applied: its
/// [`StateMachine::applied_index`] at that moment) and the snapshot's bytes, or why it failed.
pub type SnapshotBuilder = Box<dyn FnOnce() -> Result<(u64, Vec<u8>), String> + Send>;

/// A node's settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (non-zero, unique in the cluster).
    pub id: u64,
    /// The initial voters, this node included; the same list on every member. Used only when the
    /// storage has no configuration yet.
    pub peers: Vec<u64>,
    /// How often raft's logical clock ticks.
    pub tick: Duration,
    /// Ticks without a leader's word before a follower campaigns (randomized up to twice that).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// How long [`RaftNode::propose`] and [`RaftNode::read_index`] wait for an answer.
    pub request_timeout: Duration,
    /// Applied entries past the last snapshot that trigger a new snapshot and log compaction
    /// (0: never).
    pub snapshot_entries: u64,
    /// Entries kept in the log below a snapshot, so a slightly slow follower catches up from
    /// the log rather than by snapshot (etcd's `SnapshotCatchUpEntries`).
    pub catch_up_entries: u64,
    /// Largest append message, in bytes.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// A follower forwards proposals to the leader it knows (etcd's behaviour) instead of
    /// answering [`RaftError::NotLeader`]: the entry carries a proposal id (this node's id and a
    /// counter) in its context, and the proposer is answered when its own node applies the
    /// entry with that id (etcd's `wait.Trigger`). Off by default.
    pub forward_proposals: bool,
    /// The initial members' records (opaque bytes: etcd keeps each member's JSON), stored
    /// with the initial voters when the storage is bootstrapped ([`Membership::records`]).
    pub initial_records: Vec<(u64, Vec<u8>)>,
}

/// A change of the cluster's membership ([`RaftNode::propose_conf_change`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// Adds a voter, or promotes a learner (the leader refuses to promote one that is not
    /// caught up: [`RaftError::LearnerNotReady`]).
    AddVoter,
    /// Adds a learner: it receives the log but neither votes nor counts for a quorum.
    AddLearner,
    /// Removes a voter or a learner. A node that applies its own removal stops after ten
    /// ticks (so the others learn the change committed), as etcd's server does.
    Remove,
}

/// The cluster's membership as this node applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters.
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
    /// The voters the cluster was bootstrapped with: a member joining later is started with
    /// them as its `NodeConfig::peers` (and these records as its `initial_records`), then
    /// replays the log from its start.
    pub initial_voters: Vec<u64>,
    /// Each member's record: the context of the change that last added or promoted it, or
    /// its initial record.
    pub records: BTreeMap<u64, Vec<u8>>,
    /// The index of the last configuration change applied (0: none since bootstrap).
    pub index: u64,
    /// The members whose removal this node applied (kept for good: their traffic is refused,
    /// and told so; a node caught up by a snapshot knows only the removals it applied).
    pub removed: std::collections::BTreeSet<u64>,
}

impl NodeConfig {
    /// Defaults for node `id` of a cluster of `peers`: a 100 ms tick, elections after 10 ticks,
    /// heartbeats every tick, a 5 s request timeout, a snapshot every 10,000 entries keeping
    /// 5,000 (etcd's figures).
    pub fn new(id: u64, peers: &[u64]) -> NodeConfig {
        NodeConfig {
            id,
            peers: peers.to_vec(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            request_timeout: Duration::from_secs(5),
            snapshot_entries: 10_000,
            catch_up_entries: 5_000,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            forward_proposals: false,
            initial_records: Vec::new(),
        }
    }
}

/// Tells a node it was removed from the cluster ([`RaftNode::removal_notice`]).
#[derive(Clone)]
pub struct RemovalNotice(Arc<dyn Fn() + Send + Sync>);

impl RemovalNotice {
    /// The node stops, as after applying its own removal.
    pub fn notify(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for RemovalNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemovalNotice")
    }
}

/// What a node knows of the cluster, as of its last Ready.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// The current term.
    pub term: u64,
    /// The highest index known committed.
    pub commit: u64,
    /// The highest index applied (empty entries included).
    pub applied: u64,
    /// The first index still in the log (compaction drops the ones before).
    pub first_index: u64,
    /// The last index in the log.
    pub last_index: u64,
    /// This node applied its own removal from the cluster: it stops (or has stopped).
    pub removed: bool,
    /// Bytes of the snapshot this node built for followers and holds in memory (0: none; it is
    /// let go once no follower waits for a snapshot).
    pub snapshot_bytes: u64,
}

/// Where a read's answer goes: a blocked caller's channel, or an awaited future's.
enum Reply {
    Blocking(Sender<Result<u64, RaftError>>),
    Async(futures_channel::oneshot::Sender<Result<u64, RaftError>>),
}

impl Reply {
    fn send(self, r: Result<u64, RaftError>) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(r);
            }
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// What the node thread publishes for reads that need no ReadIndex round: while this node is
/// the leader, the only voter, and has committed an entry in its term, no other node can
/// commit anything, so its commit index is a linearizable read point (raft-rs answers such a
/// leader's ReadIndex with it at once; this skips the trip through the node thread).
/// Published under its lock before any message carrying a new commit index leaves the node
/// thread, and after every configuration change it applies.
#[derive(Clone, Copy, Debug, Default)]
struct ReadGate {
    /// Leader, sole voter (learners do not vote), committed in its term.
    solo: bool,
    commit: u64,
    applied: u64,
}

/// A future answering [`RaftNode::read_index_async`].
#[must_use = "a read index future does nothing unless awaited"]
#[derive(Debug)]
pub struct ReadIndexFuture {
    state: ReadIndexState,
}

#[derive(Debug)]
enum ReadIndexState {
    Ready(Option<Result<u64, RaftError>>),
    Waiting(futures_channel::oneshot::Receiver<Result<u64, RaftError>>),
}

impl std::future::Future for ReadIndexFuture {
    type Output = Result<u64, RaftError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.state {
            ReadIndexState::Ready(r) => {
                std::task::Poll::Ready(r.take().unwrap_or(Err(RaftError::Stopped)))
            }
            ReadIndexState::Waiting(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(RaftError::Stopped))),
        }
    }
}
/// A proposal's answer: its index and, if the state machine applied it here, the output.
type ProposeReply<O> = Sender<Result<(u64, Option<O>), RaftError>>;

enum Input<O> {
    Raft(Vec<u8>),
    Propose {
        data: Vec<u8>,
        reply: ProposeReply<O>,
    },
    ReadIndex {
        reply: Reply,
    },
    /// A read whose read index is known (a sole voter's commit index): answered once applied.
    WaitApplied {
        index: u64,
        reply: Reply,
    },
    ConfChange {
        kind: ConfChangeKind,
        node: u64,
        context: Vec<u8>,
        reply: ConfReply,
    },
    Campaign,
    Removed,
    TransferLeader {
        /// The transferee; 0: the voter most up to date.
        to: u64,
        reply: Sender<Result<u64, RaftError>>,
    },
    Stop,
}

type ConfReply = Sender<Result<Membership, RaftError>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A raft member: a thread runs raft-rs's Ready loop (ticks, incoming messages, proposals,
/// persistence, sending, applying). Stopped on drop. `O` is its state machine's
/// [`StateMachine::Output`].
pub struct RaftNode<O: Send + 'static = ()> {
    id: u64,
    tx: Sender<Input<O>>,
    status: Arc<Mutex<NodeStatus>>,
    membership: Arc<Mutex<Membership>>,
    gate: Arc<Mutex<ReadGate>>,
    request_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl<O: Send + 'static> std::fmt::Debug for RaftNode<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("status", &self.status())
            .finish()
    }
}

impl<O: Send + 'static> RaftNode<O> {
    /// Starts a node over `storage` (bootstrapped with `config.peers` if new), applying to `sm`
    /// and sending through `transport`. At restart the state machine's applied index is where
    /// applying resumes; if it is below the last snapshot, the snapshot is restored first.
    ///
    /// # Errors
    /// raft-rs refuses the configuration or the stored state; storage errors.
    pub fn start(
        config: NodeConfig,
        mut storage: RaftStorage,
        mut sm: Box<dyn StateMachine<Output = O>>,
        transport: Arc<dyn Transport>,
    ) -> Result<RaftNode<O>, RaftError> {
        storage.bootstrap_with(&config.peers, &config.initial_records)?;
        let snap = storage.snapshot_metadata().clone();
        // A snapshot installed from the leader that the state machine lacks (a failed install,
        // say). After a local log compaction no data is stored: the state machine holds it.
        if sm.applied_index() < snap.index && storage.snapshot_stored() {
            let data = storage.snapshot_data()?;
            sm.restore(snap.index, &data);
        }
        let first = raft::Storage::first_index(&storage)?;
        // raft wants first_index - 1 <= applied <= commit; entries the state machine already
        // has (above the stored commit, say) are skipped when they come again.
        let applied = sm
            .applied_index()
            .clamp(first - 1, storage.hard_state().commit.max(first - 1));
        let rcfg = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = crate::log::logger(config.id);
        let cs = storage.conf_state().clone();
        let membership = Arc::new(Mutex::new(Membership {
            voters: cs.voters,
            learners: cs.learners,
            initial_voters: storage.initial_voters().to_vec(),
            records: storage.member_records().clone(),
            index: 0,
            removed: storage.removed_members().clone(),
        }));
        transport.members_changed(&lock(&membership));
        let rn = RawNode::new(&rcfg, storage, &logger)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let status = Arc::new(Mutex::new(NodeStatus {
            id: config.id,
            ..NodeStatus::default()
        }));
        let gate = Arc::new(Mutex::new(ReadGate::default()));
        let worker = Worker {
            rn,
            gate: Arc::clone(&gate),
            sm,
            transport,
            rx,
            status: Arc::clone(&status),
            pending: BTreeMap::new(),
            read_queue: Vec::new(),
            read_round: None,
            read_waits: Vec::new(),
            next_read: 1,
            forwarded: HashMap::new(),
            next_proposal: proposal_counter_start(),
            applied,
            leader_term: None,
            ticks: 0,
            snapshot_since: HashMap::new(),
            snap_gen: crate::snapgen::SnapshotGen::default(),
            last_conf_index: applied,
            conf_waits: HashMap::new(),
            membership: Arc::clone(&membership),
            removed_at: None,
            farewells: Vec::new(),
            config: config.clone(),
            _logger: logger,
        };
        worker.publish();
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", config.id))
            .spawn(move || worker.run())
            .map_err(|e| RaftError::Raft(format!("spawn the node thread: {e}")))?;
        Ok(RaftNode {
            id: config.id,
            tx,
            status,
            membership,
            gate,
            request_timeout: config.request_timeout,
            thread: Some(thread),
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the transport delivers this node's incoming messages.
    pub fn mailbox(&self) -> Mailbox {
        let tx = self.tx.clone();
        Mailbox(Arc::new(move |msg| tx.send(Input::Raft(msg)).is_ok()))
    }

    /// The node's view as of its last Ready.
    pub fn status(&self) -> NodeStatus {
        lock(&self.status).clone()
    }

    /// The membership as this node applied it.
    pub fn membership(&self) -> Membership {
        lock(&self.membership).clone()
    }

    /// Proposes a membership change of node `node` (etcd's MemberAdd, MemberRemove,
    /// MemberPromote) with `context` as the member's new record (etcd's member JSON; empty
    /// keeps the record as it is), and waits until this node applied it, returning the
    /// membership after it. A follower forwards it to the leader. raft takes one change at a
    /// time: while one is unapplied the leader refuses another
    /// ([`RaftError::ConfChangeInProgress`]).
    ///
    /// # Errors
    /// As [`RaftNode::propose`]; [`RaftError::LearnerNotReady`] (promoting a learner that is
    /// not caught up; promotion is decided by the leader, so a follower answers
    /// [`RaftError::NotLeader`]); [`RaftError::Raft`] if raft refused the change when
    /// applying it (removing the last voter, say).
    pub fn propose_conf_change(
        &self,
        kind: ConfChangeKind,
        node: u64,
        context: Vec<u8>,
    ) -> Result<Membership, RaftError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Input::ConfChange {
                kind,
                node,
                context,
                reply,
            })
            .map_err(|_| RaftError::Stopped)?;
        match rx.recv_timeout(self.request_timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(RaftError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(RaftError::Stopped),
        }
    }

    /// How the transport tells this node that the others refuse its traffic because it was
    /// removed from the cluster (it may have been cut off when its removal committed, and never
    /// applied it): the node then stops as it does after applying its own removal, with etcd's
    /// text (`the member has been permanently removed from the cluster`).
    pub fn removal_notice(&self) -> RemovalNotice {
        let tx = self.tx.clone();
        RemovalNotice(Arc::new(move || {
            let _ = tx.send(Input::Removed);
        }))
    }

    /// Asks this node to start an election now.
    pub fn campaign(&self) {
        let _ = self.tx.send(Input::Campaign);
    }

    /// Asks this node, the leader, to hand its leadership to voter `to` (raft's leadership
    /// transfer: the leader brings `to` up to date, then tells it to campaign at once; it
    /// gives up after an election timeout). Returns once the transfer started: the caller
    /// watches [`RaftNode::status`] for the new leader (etcd's MoveLeader does the same).
    ///
    /// # Errors
    /// [`RaftError::NotLeader`] (this node is not the leader), [`RaftError::Stopped`].
    pub fn transfer_leader(&self, to: u64) -> Result<(), RaftError> {
        self.transfer(to).map(|_| ())
    }

    /// Asks this node, the leader, to hand its leadership to the other voter whose log matches
    /// its own furthest (etcd's leadership transfer on shutdown); returns that voter's id once
    /// the transfer started, `None` when there is no other voter.
    ///
    /// # Errors
    /// [`RaftError::NotLeader`], [`RaftError::Stopped`].
    pub fn hand_off_leadership(&self) -> Result<Option<u64>, RaftError> {
        self.transfer(raft::INVALID_ID)
            .map(|to| Some(to).filter(|&t| t != raft::INVALID_ID))
    }

    /// Starts a leadership transfer to `to` (0: the voter most up to date); returns the
    /// transferee (0: none).
    fn transfer(&self, to: u64) -> Result<u64, RaftError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Input::TransferLeader { to, reply })
            .map_err(|_| RaftError::Stopped)?;
        self.wait(&rx)
    }

    /// Proposes `entry` and waits until it is applied (by this node's state machine), returning
    /// its index. With [`NodeConfig::forward_proposals`] a follower forwards it to the leader
    /// and answers when it applies the entry itself.
    ///
    /// # Errors
    /// [`RaftError::NotLeader`] (nothing proposed; with forwarding, only when no leader is
    /// known), [`RaftError::Ambiguous`] (leadership lost before the entry was known committed),
    /// [`RaftError::Timeout`], [`RaftError::Stopped`].
    pub fn propose(&self, entry: Vec<u8>) -> Result<u64, RaftError> {
        self.propose_for_output(entry).map(|(index, _)| index)
    }

    /// [`RaftNode::propose`], also returning what this node's state machine answered when it
    /// applied the entry (`None` for an entry it did not apply: an empty one, or one it had
    /// already applied).
    ///
    /// # Errors
    /// As [`RaftNode::propose`].
    pub fn propose_for_output(&self, entry: Vec<u8>) -> Result<(u64, Option<O>), RaftError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Input::Propose { data: entry, reply })
            .map_err(|_| RaftError::Stopped)?;
        self.wait(&rx)
    }

    /// A linearizable read point: the leader's commit index confirmed by a quorum (raft's
    /// ReadIndex), returned once this node has applied up to it, so a local read afterwards sees
    /// every write acknowledged before the call. A leader that is the only voter answers
    /// without a round: its commit index (see [`RaftNode::local_read_index`]).
    ///
    /// # Errors
    /// [`RaftError::Timeout`] (no leader or no quorum), [`RaftError::Stopped`].
    pub fn read_index(&self) -> Result<u64, RaftError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let input = match self.solo_read() {
            Some(Ok(index)) => return Ok(index),
            Some(Err(index)) => Input::WaitApplied {
                index,
                reply: Reply::Blocking(reply),
            },
            None => Input::ReadIndex {
                reply: Reply::Blocking(reply),
            },
        };
        self.tx.send(input).map_err(|_| RaftError::Stopped)?;
        self.wait(&rx)
    }

    /// [`RaftNode::read_index`] without blocking: the request is queued now (or answered at
    /// once by a sole voter that has applied its commit index) and the future answers it. Past
    /// the request timeout the node answers [`RaftError::Timeout`]; dropping the future drops
    /// the read.
    pub fn read_index_async(&self) -> ReadIndexFuture {
        let ready = |r| ReadIndexFuture {
            state: ReadIndexState::Ready(Some(r)),
        };
        let (reply, rx) = futures_channel::oneshot::channel();
        let input = match self.solo_read() {
            Some(Ok(index)) => return ready(Ok(index)),
            Some(Err(index)) => Input::WaitApplied {
                index,
                reply: Reply::Async(reply),
            },
            None => Input::ReadIndex {
                reply: Reply::Async(reply),
            },
        };
        if self.tx.send(input).is_err() {
            return ready(Err(RaftError::Stopped));
        }
        ReadIndexFuture {
            state: ReadIndexState::Waiting(rx),
        }
    }

    /// A linearizable read point without the node thread, if this node is the leader and the
    /// configuration's only voter (a 1-member cluster, learners or not), has committed an entry
    /// in its term, and has applied everything committed: its commit index. No other node can
    /// then commit anything, so no ReadIndex round is needed (raft-rs answers such a leader's
    /// ReadIndex with its commit index at once too). `None` otherwise (use
    /// [`RaftNode::read_index`]).
    pub fn local_read_index(&self) -> Option<u64> {
        self.solo_read().and_then(Result::ok)
    }

    /// For a sole voter: `Ok(commit)` when applied up to it, `Err(commit)` when the read must
    /// wait for it to be applied. `None`: not a sole voter (or not known to be now).
    fn solo_read(&self) -> Option<Result<u64, u64>> {
        let g = *lock(&self.gate);
        g.solo
            .then(|| (g.applied >= g.commit).then_some(g.commit).ok_or(g.commit))
    }

    fn wait<T>(&self, rx: &Receiver<Result<T, RaftError>>) -> Result<T, RaftError> {
        match rx.recv_timeout(self.request_timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(RaftError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(RaftError::Stopped),
        }
    }

    /// Stops the node's thread; pending proposals and reads get [`RaftError::Stopped`].
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<O: Send + 'static> Drop for RaftNode<O> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct PendingRead {
    reply: Reply,
    since_tick: u64,
}

/// A configuration change proposed here, waiting for its entry to be applied here.
struct ConfWait {
    reply: ConfReply,
    since_tick: u64,
    term: u64,
}

/// Ticks a removed node keeps running, so the others learn its removal committed (etcd's
/// server stops 10 ticks after applying its own removal).
const REMOVED_TICKS: u64 = 10;

/// One raft ReadIndex request (one context) shared by every read waiting when it was asked:
/// etcd's `linearizableReadLoop` batching. Its read index is the leader's commit index
/// confirmed after the request was sent, so it serves every read that arrived before.
struct ReadRound {
    ctx: u64,
    /// The tick it was (last) asked at.
    issued: u64,
    readers: Vec<PendingRead>,
}

/// A proposal this follower forwarded to the leader, waiting for its entry (found by the
/// proposal id in the entry's context) to be applied here.
struct Forwarded<O> {
    reply: ProposeReply<O>,
    since_tick: u64,
    term: u64,
}

/// The first proposal counter of a node's run: the wall clock in nanoseconds, so ids stay
/// unique across restarts (an entry forwarded before a restart may be applied after it: it
/// must not answer a new proposal; etcd's id generator starts from the clock too).
fn proposal_counter_start() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
}

/// A proposal id as an entry's context: the proposing node's id and its counter.
fn proposal_context(node: u64, counter: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&node.to_be_bytes());
    ctx.extend_from_slice(&counter.to_be_bytes());
    ctx
}

/// The (node, counter) of an entry's context, if it is a proposal id.
fn parse_proposal_context(ctx: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_be_bytes(ctx.get(..8)?.try_into().ok()?);
    let counter = u64::from_be_bytes(ctx.get(8..16)?.try_into().ok()?);
    (ctx.len() == 16).then_some((node, counter))
}

struct Worker<O> {
    rn: RawNode<RaftStorage>,
    /// The sole voter's read point, published for `RaftNode::read_index`.
    gate: Arc<Mutex<ReadGate>>,
    sm: Box<dyn StateMachine<Output = O>>,
    transport: Arc<dyn Transport>,
    rx: Receiver<Input<O>>,
    status: Arc<Mutex<NodeStatus>>,
    /// Proposals appended by this leader: index -> (term, reply).
    pending: BTreeMap<u64, (u64, ProposeReply<O>)>,
    /// Reads that arrived since the current round was asked: they wait for the next round.
    read_queue: Vec<PendingRead>,
    /// The ReadIndex round in flight (at most one; etcd's read loop).
    read_round: Option<ReadRound>,
    /// Reads with a read index, waiting for `applied` to reach it: (index, reply, since tick).
    read_waits: Vec<(u64, Reply, u64)>,
    next_read: u64,
    /// Proposals forwarded to the leader, by proposal counter.
    forwarded: HashMap<u64, Forwarded<O>>,
    next_proposal: u64,
    applied: u64,
    /// The term this node is leader in (its pending proposals belong to it).
    leader_term: Option<u64>,
    ticks: u64,
    /// Followers in raft's snapshot state, and the tick since when.
    snapshot_since: HashMap<u64, u64>,
    /// The snapshot being built for followers, off this thread.
    snap_gen: crate::snapgen::SnapshotGen,
    /// The index of the last configuration change applied (since start: at most `applied`).
    last_conf_index: u64,
    /// Configuration changes proposed here, by proposal counter.
    conf_waits: HashMap<u64, ConfWait>,
    membership: Arc<Mutex<Membership>>,
    /// The tick this node applied its own removal at.
    removed_at: Option<u64>,
    /// Members this leader removed, told of it for a few ticks: (id, its last matched index,
    /// the removal's index, until which tick).
    farewells: Vec<(u64, u64, u64, u64)>,
    config: NodeConfig,
    _logger: slog::Logger,
}

impl<O: Send + 'static> Worker<O> {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.config.tick;
        'run: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(input) => {
                    if !self.handle(input) {
                        break 'run;
                    }
                    // Group what is queued into this Ready (one fsync for all of it).
                    for _ in 0..4096 {
                        match self.rx.try_recv() {
                            Ok(input) => {
                                if !self.handle(input) {
                                    break 'run;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break 'run,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.rn.tick();
                self.ticks += 1;
                next_tick += self.config.tick;
                if next_tick < now {
                    next_tick = now + self.config.tick;
                }
                self.on_tick();
                if self
                    .removed_at
                    .is_some_and(|at| self.ticks >= at + REMOVED_TICKS)
                {
                    tracing::warn!(
                        node = self.config.id,
                        "the member has been permanently removed from the cluster: stopping"
                    );
                    break 'run;
                }
            }
            // Every read queued by now shares one ReadIndex round; when this Ready completes the
            // round in flight, the reads that waited for it start the next one at once (the
            // queue is then empty: no input is taken in between).
            self.start_read_round();
            let mut ready = self.on_ready();
            if ready.is_ok() && self.start_read_round() {
                ready = self.on_ready();
            }
            if let Err(e) = ready {
                tracing::error!(node = self.config.id, error = %e, "raft node stops: storage failed");
                break 'run;
            }
            self.publish();
        }
        *lock(&self.gate) = ReadGate::default();
        self.fail_all(|| RaftError::Stopped);
        self.snap_gen.stop();
        let mut s = lock(&self.status);
        s.is_leader = false;
        s.leader = None;
    }

    /// False: stop.
    fn handle(&mut self, input: Input<O>) -> bool {
        match input {
            Input::Raft(bytes) => match decode::<Message>(&bytes) {
                Ok(m) if !self.snapshot_intact(&m) => {}
                Ok(m) => {
                    if let Err(e) = self.rn.step(m) {
                        tracing::debug!(node = self.config.id, error = %e, "raft message refused");
                    }
                }
                Err(e) => {
                    tracing::warn!(node = self.config.id, error = %e, "undecodable raft message dropped");
                }
            },
            Input::Propose { data, reply } => self.propose(data, reply),
            // Queued for the next round (`start_read_round`).
            Input::ReadIndex { reply } => self.read_queue.push(PendingRead {
                reply,
                since_tick: self.ticks,
            }),
            // Applied already (the gate was read mid-Ready): answered now; else by
            // `answer_reads` once applied.
            Input::WaitApplied { index, reply } => {
                if index <= self.applied {
                    reply.send(Ok(index));
                } else {
                    self.read_waits.push((index, reply, self.ticks));
                }
            }
            Input::ConfChange {
                kind,
                node,
                context,
                reply,
            } => self.propose_conf_change(kind, node, context, reply),
            Input::Campaign => {
                let _ = self.rn.campaign();
            }
            Input::Removed => {
                if self.removed_at.is_none() {
                    tracing::warn!(
                        node = self.config.id,
                        "the member has been permanently removed from the cluster \
                         (the other members refuse its messages)"
                    );
                    self.removed_at = Some(self.ticks);
                }
            }
            Input::TransferLeader { to, reply } => {
                let outcome = if self.rn.raft.state == StateRole::Leader {
                    let to = if to == raft::INVALID_ID {
                        self.best_transferee()
                    } else {
                        to
                    };
                    if to != raft::INVALID_ID {
                        self.rn.transfer_leader(to);
                    }
                    Ok(to)
                } else {
                    Err(RaftError::NotLeader {
                        leader: self.leader(),
                    })
                };
                let _ = reply.send(outcome);
            }
            Input::Stop => return false,
        }
        true
    }

    /// The other voter whose log matches the leader's furthest (0: none).
    fn best_transferee(&self) -> u64 {
        let me = self.rn.raft.id;
        let prs = self.rn.raft.prs();
        prs.conf()
            .voters()
            .ids()
            .iter()
            .filter(|&id| id != me)
            .filter_map(|id| prs.get(id).map(|p| (p.matched, id)))
            .max()
            .map_or(raft::INVALID_ID, |(_, id)| id)
    }

    fn leader(&self) -> Option<u64> {
        Some(self.rn.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    fn propose(&mut self, data: Vec<u8>, reply: ProposeReply<O>) {
        if self.rn.raft.state != StateRole::Leader {
            self.forward(data, reply);
            return;
        }
        let before = self.rn.raft.raft_log.last_index();
        match self.rn.propose(Vec::new(), data) {
            Ok(()) => {
                let index = self.rn.raft.raft_log.last_index();
                if index == before {
                    let _ = reply.send(Err(RaftError::NotLeader {
                        leader: self.leader(),
                    }));
                    return;
                }
                let term = self.rn.raft.term;
                self.leader_term = Some(term);
                self.pending.insert(index, (term, reply));
            }
            Err(raft::Error::ProposalDropped) => {
                // Transferring leadership, or too much uncommitted.
                let _ = reply.send(Err(RaftError::NotLeader {
                    leader: self.leader(),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn propose_conf_change(
        &mut self,
        kind: ConfChangeKind,
        node: u64,
        context: Vec<u8>,
        reply: ConfReply,
    ) {
        let leader = self.leader();
        let is_leader = self.rn.raft.state == StateRole::Leader;
        if leader.is_none() || (!is_leader && !self.config.forward_proposals) {
            let _ = reply.send(Err(RaftError::NotLeader { leader }));
            return;
        }
        if is_leader && self.rn.raft.has_pending_conf() {
            let _ = reply.send(Err(RaftError::ConfChangeInProgress));
            return;
        }
        let is_learner = self.rn.raft.prs().conf().learners().contains(&node);
        if kind == ConfChangeKind::AddVoter && is_learner {
            // Promotion: only the leader knows how far the learner is.
            if !is_leader {
                let _ = reply.send(Err(RaftError::NotLeader { leader }));
                return;
            }
            let matched = |id| self.rn.raft.prs().get(id).map_or(0, |p| p.matched);
            let (learner, own) = (matched(node), matched(self.config.id));
            // etcd's readyPercent: the learner has at least 90% of the leader's log.
            if (learner as f64) < (own as f64) * 0.9 {
                let _ = reply.send(Err(RaftError::LearnerNotReady));
                return;
            }
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match kind {
            ConfChangeKind::AddVoter => ConfChangeType::AddNode,
            ConfChangeKind::AddLearner => ConfChangeType::AddLearnerNode,
            ConfChangeKind::Remove => ConfChangeType::RemoveNode,
        });
        cc.node_id = node;
        cc.context = context;
        let counter = self.next_proposal;
        self.next_proposal = self.next_proposal.wrapping_add(1);
        cc.id = counter;
        match self
            .rn
            .propose_conf_change(proposal_context(self.config.id, counter), cc)
        {
            Ok(()) => {
                self.conf_waits.insert(
                    counter,
                    ConfWait {
                        reply,
                        since_tick: self.ticks,
                        term: self.rn.raft.term,
                    },
                );
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(RaftError::NotLeader {
                    leader: self.leader(),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Applies a committed configuration change: raft's tracker, the stored conf state and
    /// the member's record (one write), the transport's peers; answers its proposer.
    fn apply_conf_change(
        &mut self,
        index: u64,
        context: &[u8],
        cc: &ConfChange,
    ) -> Result<(), RaftError> {
        let waiter = parse_proposal_context(context)
            .filter(|(node, _)| *node == self.config.id)
            .and_then(|(_, counter)| self.conf_waits.remove(&counter));
        let removed_match = (cc.get_change_type() == ConfChangeType::RemoveNode
            && cc.node_id != self.config.id
            && self.rn.raft.state == StateRole::Leader)
            .then(|| self.rn.raft.prs().get(cc.node_id).map(|p| p.matched))
            .flatten();
        let cs = match self.rn.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => {
                // Refused the same way by every member (the same change on the same
                // configuration): the entry changes nothing.
                tracing::warn!(node = self.config.id, index, error = %e, "configuration change refused");
                if let Some(w) = waiter {
                    let _ = w.reply.send(Err(e.into()));
                }
                return Ok(());
            }
        };
        // No longer (or newly) the sole voter: reads see it before anything else happens.
        self.update_gate();
        let record = match cc.get_change_type() {
            ConfChangeType::RemoveNode => RecordUpdate::Delete,
            _ if cc.context.is_empty() => RecordUpdate::Keep,
            _ => RecordUpdate::Put(cc.context.to_vec()),
        };
        self.rn
            .mut_store()
            .set_conf_state_with(cs.clone(), cc.node_id, record)?;
        let membership = {
            let mut m = lock(&self.membership);
            m.voters = cs.voters;
            m.learners = cs.learners;
            m.records = self.rn.store().member_records().clone();
            m.removed = self.rn.store().removed_members().clone();
            m.index = index;
            m.clone()
        };
        self.transport.members_changed(&membership);
        if cc.get_change_type() == ConfChangeType::RemoveNode
            && cc.node_id == self.config.id
            && self.removed_at.is_none()
        {
            self.removed_at = Some(self.ticks);
        }
        if let Some(matched) = removed_match {
            self.farewells
                .push((cc.node_id, matched, index, self.ticks + REMOVED_TICKS));
            self.farewell();
        }
        if let Some(w) = waiter {
            let _ = w.reply.send(Ok(membership));
        }
        Ok(())
    }

    /// raft sends nothing to a member once its removal is applied, so it might never learn
    /// the removal committed (and never stop): for a few ticks the leader sends it the log up
    /// to its removal, committed (etcd's peers answer a removed member's messages with
    /// "removed" instead).
    fn farewell(&mut self) {
        let ticks = self.ticks;
        self.farewells.retain(|f| f.3 >= ticks);
        let mut msgs = Vec::new();
        for &(to, matched, index, _) in &self.farewells {
            let store = self.rn.store();
            let Ok(log_term) = raft::Storage::term(store, matched) else {
                continue;
            };
            let Ok(entries) = raft::Storage::entries(
                store,
                matched + 1,
                index + 1,
                self.config.max_size_per_msg,
                raft::GetEntriesContext::empty(false),
            ) else {
                continue;
            };
            let mut m = Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
            m.to = to;
            m.from = self.config.id;
            m.term = self.rn.raft.term;
            m.index = matched;
            m.log_term = log_term;
            m.commit = index.min(matched + entries.len() as u64);
            m.set_entries(entries);
            msgs.push(m);
        }
        self.send(msgs);
    }

    /// A follower's proposal: forwarded to the leader (raft-rs sends a follower's `MsgPropose`
    /// to the leader it knows), answered when this node applies the entry with its id.
    fn forward(&mut self, data: Vec<u8>, reply: ProposeReply<O>) {
        let leader = self.leader();
        if !self.config.forward_proposals || leader.is_none() {
            let _ = reply.send(Err(RaftError::NotLeader { leader }));
            return;
        }
        let counter = self.next_proposal;
        self.next_proposal = self.next_proposal.wrapping_add(1);
        match self
            .rn
            .propose(proposal_context(self.config.id, counter), data)
        {
            Ok(()) => {
                self.forwarded.insert(
                    counter,
                    Forwarded {
                        reply,
                        since_tick: self.ticks,
                        term: self.rn.raft.term,
                    },
                );
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(RaftError::NotLeader {
                    leader: self.leader(),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Asks raft for one read index for every queued read, unless a round is in flight (the
    /// queued reads then wait for the next one, started when it completes). True if asked.
    fn start_read_round(&mut self) -> bool {
        if self.read_round.is_some() || self.read_queue.is_empty() {
            return false;
        }
        let readers = std::mem::take(&mut self.read_queue);
        self.ask_read_index(readers);
        true
    }

    /// A new ReadIndex request under a fresh context for `readers`, all of which arrived before
    /// it is sent. A context is never asked twice: a late answer to an older request (asked
    /// before some of these reads arrived) cannot serve them.
    fn ask_read_index(&mut self, readers: Vec<PendingRead>) {
        let ctx = self.next_read;
        self.next_read += 1;
        self.rn.read_index(ctx.to_be_bytes().to_vec());
        self.read_round = Some(ReadRound {
            ctx,
            issued: self.ticks,
            readers,
        });
    }

    fn on_tick(&mut self) {
        // A round raft dropped (no leader yet, or a leader without a commit in its term) is
        // asked again every election timeout, under a new context, with the reads queued since
        // joining it; past the request timeout a read's caller has given up.
        let again = self.config.election_ticks.max(1) as u64;
        let expire = (self.config.request_timeout.as_millis() / self.config.tick.as_millis().max(1))
            as u64
            + 1;
        let ticks = self.ticks;
        let keep = |reads: Vec<PendingRead>| -> Vec<PendingRead> {
            let (old, live): (Vec<_>, Vec<_>) = reads
                .into_iter()
                .partition(|r| ticks - r.since_tick > expire);
            for r in old {
                r.reply.send(Err(RaftError::Timeout));
            }
            live
        };
        self.read_queue = keep(std::mem::take(&mut self.read_queue));
        if let Some(mut round) = self.read_round.take() {
            round.readers = keep(round.readers);
            if round.readers.is_empty() {
                // Nobody waits for it any more: the queue starts the next round.
            } else if ticks - round.issued >= again {
                let mut readers = round.readers;
                readers.append(&mut self.read_queue);
                self.ask_read_index(readers);
            } else {
                self.read_round = Some(round);
            }
        }
        // A read whose index this node has not applied within the request timeout (a member
        // far behind): its caller has given up.
        if !self.read_waits.is_empty() {
            let (old, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_waits)
                .into_iter()
                .partition(|(_, _, since)| ticks - since > expire);
            self.read_waits = live;
            for (_, reply, _) in old {
                reply.send(Err(RaftError::Timeout));
            }
        }
        // A forwarded proposal never applied here within the request timeout: lost (the leader
        // failed or dropped it) or still to come; either way its caller has given up. One
        // forwarded in an older term, now that a new leader is known, is answered Ambiguous at
        // once: it went to a leader that failed (lost, or in the new leader's log and applied
        // later), and its caller (a group commit holding the next writes behind it) need not
        // wait out the request timeout after a failover.
        let term = self.rn.raft.term;
        let new_leader = self.leader().is_some();
        self.forwarded.retain(|_, f| {
            if new_leader && f.term != term {
                let _ = f.reply.send(Err(RaftError::Ambiguous));
                return false;
            }
            if ticks - f.since_tick > expire {
                let _ = f.reply.send(Err(if f.term == term {
                    RaftError::Timeout
                } else {
                    RaftError::Ambiguous
                }));
                return false;
            }
            true
        });
        if !self.farewells.is_empty() {
            self.farewell();
        }
        self.conf_waits.retain(|_, w| {
            if ticks - w.since_tick > expire {
                let _ = w.reply.send(Err(if w.term == term {
                    RaftError::Timeout
                } else {
                    RaftError::Ambiguous
                }));
                return false;
            }
            true
        });
        self.retry_snapshots();
        self.snap_gen.poll(
            self.config.id,
            &mut self.rn,
            self.sm.as_mut(),
            self.applied,
            self.last_conf_index,
        );
    }

    /// raft-rs keeps a follower it sent a snapshot to paused until the application reports the
    /// snapshot's fate; the transport is best effort and tells nothing, so a snapshot not
    /// acknowledged within two election timeouts is reported failed, and raft sends another.
    fn retry_snapshots(&mut self) {
        if self.rn.raft.state != StateRole::Leader {
            self.snapshot_since.clear();
            return;
        }
        let ticks = self.ticks;
        let patience = 2 * self.config.election_ticks.max(1) as u64;
        let in_snapshot: Vec<u64> = self
            .rn
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_since.retain(|id, _| in_snapshot.contains(id));
        for id in in_snapshot {
            let since = *self.snapshot_since.entry(id).or_insert(ticks);
            if ticks - since >= patience {
                tracing::debug!(
                    node = self.config.id,
                    to = id,
                    "snapshot unacknowledged: sent again"
                );
                self.rn.report_snapshot(id, SnapshotStatus::Failure);
                self.snapshot_since.remove(&id);
            }
        }
    }

    /// False for a snapshot message whose data is damaged (the envelope or the state
    /// machine's check): it is dropped, and the leader sends the snapshot again.
    fn snapshot_intact(&self, m: &Message) -> bool {
        if m.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
            return true;
        }
        let checked = crate::storage::unwrap_snapshot(&m.get_snapshot().data)
            .map_err(|e| e.to_string())
            .and_then(|(_, data)| self.sm.verify_snapshot(data));
        match checked {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    node = self.config.id,
                    from = m.from,
                    index = m.get_snapshot().get_metadata().index,
                    error = %e,
                    "damaged snapshot refused: the leader sends it again"
                );
                false
            }
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        // A message may carry a new commit index (to a learner, which may apply and answer a
        // write with it): the sole voter's read point covers it first.
        self.update_gate();
        for m in msgs {
            match encode(&m) {
                Ok(bytes) => self.transport.send(m.to, bytes),
                Err(e) => {
                    tracing::error!(node = self.config.id, error = %e, "raft message not encoded")
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), RaftError> {
        if !self.rn.has_ready() {
            self.check_leadership();
            self.update_gate();
            // Reads queued with an index this node applied in an earlier turn.
            self.answer_reads();
            return Ok(());
        }
        // raft may have stepped down or advanced its commit index while taking input.
        self.update_gate();
        let mut ready = self.rn.ready();

        // A leader's messages may go before its own append is durable (raft's thesis, 10.2.1).
        self.send(ready.take_messages());

        // A snapshot from the leader: the state machine takes it first, so a crash in between
        // leaves the state machine ahead of raft's log (its entries are skipped when they come
        // again), never behind a log that no longer holds them.
        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        let mut installed = true;
        if let Some(snap) = &snapshot {
            let index = snap.get_metadata().index;
            // A state machine already past the snapshot holds everything in it.
            if index > self.sm.applied_index() {
                let (_, data) = crate::storage::unwrap_snapshot(&snap.data)?;
                self.sm.restore(index, data);
            }
            // Installed (durably, as `restore` promises): raft's storage keeps no second copy
            // of the data. Not installed (the state machine failed and stopped applying): kept,
            // and restored from at the next start.
            installed = self.sm.applied_index() >= index;
            self.applied = self.applied.max(index);
        }

        // Persist before acknowledging: the snapshot, the entries and the hard state of this
        // Ready in one fsynced WriteBatch; only then go the persisted messages (votes, append
        // responses).
        let hs = ready.hs().cloned();
        let sync = ready.must_sync();
        self.rn.mut_store().persist_ready(
            snapshot.as_ref(),
            !installed,
            ready.entries(),
            hs.as_ref(),
            sync,
        )?;
        if let Some(snap) = &snapshot {
            self.snapshot_membership(snap.get_metadata().index);
        }

        for rs in ready.take_read_states() {
            self.read_state(rs.index, &rs.request_ctx);
        }
        self.apply(ready.take_committed_entries())?;
        self.send(ready.take_persisted_messages());

        let mut light = self.rn.advance(ready);
        // A sole voter commits when its own append is persisted (in `advance`).
        self.update_gate();
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.rn.advance_apply_to(self.applied);
        self.maybe_compact()?;
        self.check_leadership();
        self.update_gate();
        self.answer_reads();
        Ok(())
    }

    /// After a snapshot is installed: the membership it carries (its conf state, the member
    /// records stored with it) is this node's, and the transport's.
    fn snapshot_membership(&mut self, index: u64) {
        self.update_gate();
        let cs = self.rn.store().conf_state().clone();
        let membership = {
            let mut m = lock(&self.membership);
            m.voters = cs.voters;
            m.learners = cs.learners;
            m.records = self.rn.store().member_records().clone();
            m.removed = self.rn.store().removed_members().clone();
            m.index = m.index.max(index);
            m.clone()
        };
        self.transport.members_changed(&membership);
    }

    fn read_state(&mut self, index: u64, ctx: &[u8]) {
        let Some(ctx) = ctx.try_into().ok().map(u64::from_be_bytes) else {
            return;
        };
        // Only the round in flight; an answer to a context asked before is stale.
        if self.read_round.as_ref().is_some_and(|r| r.ctx == ctx)
            && let Some(round) = self.read_round.take()
        {
            self.read_waits.extend(
                round
                    .readers
                    .into_iter()
                    .map(|r| (index, r.reply, r.since_tick)),
            );
        }
    }

    fn answer_reads(&mut self) {
        if self.read_waits.is_empty() {
            return;
        }
        let applied = self.applied;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_waits)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.read_waits = waiting;
        for (index, reply, _) in done {
            reply.send(Ok(index));
        }
    }

    /// Publishes the sole voter's read point ([`ReadGate`]).
    fn update_gate(&self) {
        let r = &self.rn.raft;
        let solo = r.state == StateRole::Leader
            && r.prs().is_singleton()
            && r.commit_to_current_term()
            && self.removed_at.is_none();
        *lock(&self.gate) = ReadGate {
            solo,
            commit: r.raft_log.committed,
            applied: self.applied,
        };
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        for e in entries {
            let index = e.index;
            if index <= self.applied {
                continue;
            }
            let mut output = None;
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if !e.data.is_empty() && index > self.sm.applied_index() {
                        output = Some(self.sm.apply(index, &e.data));
                    }
                    // A proposal this node forwarded: its waiter is answered by id.
                    if let Some((node, counter)) = parse_proposal_context(&e.context)
                        && node == self.config.id
                        && let Some(f) = self.forwarded.remove(&counter)
                    {
                        let _ = f.reply.send(Ok((index, output.take())));
                    }
                }
                EntryType::EntryConfChange => {
                    let cc: ConfChange = decode(&e.data)?;
                    self.apply_conf_change(index, &e.context, &cc)?;
                    self.last_conf_index = index;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc: ConfChangeV2 = decode(&e.data)?;
                    let cs = self.rn.apply_conf_change(&cc)?;
                    self.rn.mut_store().set_conf_state(cs)?;
                    self.last_conf_index = index;
                }
            }
            self.applied = index;
            // Answer this entry's proposer, and any older proposal this index passed (replaced
            // by another leader's entries: not applied).
            while let Some((&i, _)) = self.pending.first_key_value() {
                if i > index {
                    break;
                }
                let Some((_, (term, reply))) = self.pending.pop_first() else {
                    break;
                };
                let outcome = if i == index && term == e.term {
                    Ok((index, output.take()))
                } else {
                    Err(RaftError::Ambiguous)
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    /// A leader that stepped down cannot tell what became of its uncommitted proposals.
    fn check_leadership(&mut self) {
        if let Some(term) = self.leader_term
            && (self.rn.raft.state != StateRole::Leader || self.rn.raft.term != term)
        {
            self.leader_term = None;
            self.fail_all(|| RaftError::Ambiguous);
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> RaftError) {
        for (_, (_, reply)) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(err()));
        }
        if matches!(err(), RaftError::Stopped) {
            for (_, f) in self.forwarded.drain() {
                let _ = f.reply.send(Err(RaftError::Stopped));
            }
            for (_, w) in self.conf_waits.drain() {
                let _ = w.reply.send(Err(RaftError::Stopped));
            }
            let round = self.read_round.take().map(|r| r.readers);
            for r in self.read_queue.drain(..).chain(round.into_iter().flatten()) {
                r.reply.send(Err(RaftError::Stopped));
            }
            for (_, reply, _) in self.read_waits.drain(..) {
                reply.send(Err(RaftError::Stopped));
            }
        }
    }

    fn maybe_compact(&mut self) -> Result<(), RaftError> {
        let every = self.config.snapshot_entries;
        let last_snap = self.rn.store().snapshot_metadata().index;
        if every == 0 || self.applied < last_snap + every {
            return Ok(());
        }
        // The log below is dropped: the state machine makes what it applied durable first. Its
        // state at its applied index is its state at `self.applied` too (only empty entries and
        // conf changes lie between). A follower that needs a snapshot gets one built then
        // (`snapgen`), not here.
        if let Err(e) = self.sm.sync() {
            tracing::debug!(node = self.config.id, error = %e, "state not durable: the raft log is not compacted");
            return Ok(());
        }
        let applied = self.applied;
        let compact_to = applied.saturating_sub(self.config.catch_up_entries);
        self.rn.mut_store().compact_log(applied, compact_to)?;
        tracing::debug!(
            node = self.config.id,
            applied,
            compact_to,
            "raft log compacted"
        );
        Ok(())
    }

    fn publish(&self) {
        let r = &self.rn.raft;
        let st = NodeStatus {
            id: self.config.id,
            leader: self.leader(),
            is_leader: r.state == StateRole::Leader,
            term: r.term,
            commit: r.raft_log.committed,
            applied: self.applied,
            first_index: r.raft_log.first_index(),
            last_index: r.raft_log.last_index(),
            removed: self.removed_at.is_some(),
            snapshot_bytes: self.rn.store().generated_snapshot_bytes(),
        };
        *lock(&self.status) = st;
    }
}

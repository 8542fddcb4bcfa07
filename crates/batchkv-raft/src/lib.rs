//! batchkv's replication on raft-rs (crate `raft`, TiKV's port of etcd's raft).
//!
//! - [`RaftStorage`]: raft-rs's [`raft::Storage`] persisted in RocksDB through
//!   `batchkv-engine` (a database of its own, or the [`RAFT_CF`] column family of one): entries,
//!   hard state, conf state, the truncation point and the last snapshot.
//! - [`RaftNode`]: one thread running raft-rs's Ready loop. [`RaftNode::propose`] hands an
//!   opaque entry to raft and waits until it is applied, returning its index (or a typed
//!   [`RaftError`]: [`RaftError::NotLeader`], [`RaftError::Ambiguous`], [`RaftError::Timeout`],
//!   [`RaftError::Stopped`]); [`RaftNode::propose_for_output`] also returns what this node's
//!   state machine answered for the entry (the proposer's results); [`RaftNode::read_index`] is a linearizable read point (raft's
//!   ReadIndex, then waiting until this node applied up to it); [`RaftNode::status`] tells the
//!   leader, term, commit and applied indexes.
//! - [`StateMachine`]: the one applier per node. Every committed normal entry is applied in
//!   index order, whoever proposed it; its durable applied index is where a restart resumes.
//!   Snapshots are its opaque bytes ([`StateMachine::snapshot`], [`StateMachine::restore`]).
//! - [`Transport`]: sends a message, encoded as opaque bytes, to a node id; [`Mailbox`] takes
//!   a node's incoming ones. [`LocalNetwork`] is the in-process network of the tests: drop,
//!   delay, partition, heal.
//!
//! ## The invariants
//! - **Persist before acknowledging.** Each Ready's snapshot, entries and hard state are written
//!   as ONE fsynced WriteBatch ([`RaftStorage::persist`]) before the Ready's *persisted*
//!   messages (votes, append responses) are sent and before its committed entries are applied;
//!   only a leader's own appends and heartbeats (`Ready::messages`) go out before (raft's thesis
//!   §10.2.1). Everything queued when a Ready is taken shares its one fsync (group commit). A
//!   Ready that changes only the commit index is written without fsync (raft-rs's
//!   `Ready::must_sync`): a lost commit index is learned again from the leader.
//! - **Opaque messages.** raft-rs 0.7 brings its own prost (0.11) for its protobufs; batchkv's
//!   gRPC is on prost 0.14. Messages, entries and states are encoded with raft's own codec
//!   (`protobuf::Message`, which raft-proto implements over its prost) into `Vec<u8>`, so raft's
//!   types never meet the workspace's prost.
//! - **Applied index from the state machine.** At restart raft's `applied` is the state
//!   machine's durable applied index (clamped into what the log allows); entries at or below it
//!   are never applied again.
//!
//! ```
//! use std::sync::Arc;
//! use batchkv_raft::{LocalNetwork, NodeConfig, RaftNode, RaftStorage, StateMachine};
//!
//! #[derive(Default)]
//! struct Log { entries: Vec<(u64, Vec<u8>)>, applied: u64 }
//! impl StateMachine for Log {
//!     type Output = usize; // what the proposer gets back: here, the entries applied so far
//!     fn apply(&mut self, index: u64, entry: &[u8]) -> usize {
//!         self.entries.push((index, entry.to_vec()));
//!         self.applied = index;
//!         self.entries.len()
//!     }
//!     fn applied_index(&self) -> u64 { self.applied }
//!     fn snapshot(&mut self) -> Result<Vec<u8>, String> { Ok(Vec::new()) }
//!     fn restore(&mut self, index: u64, _data: &[u8]) { self.applied = index; }
//! }
//!
//! let dir = batchkv_testkit::temp_dir();
//! let net = LocalNetwork::new(1);
//! let storage = RaftStorage::open_dir(dir.path()).unwrap();
//! let node = RaftNode::start(
//!     NodeConfig::new(1, &[1]),
//!     storage,
//!     Box::new(Log::default()),
//!     net.transport(1),
//! )
//! .unwrap();
//! net.register(1, node.mailbox());
//! node.campaign();
//! let index = loop {
//!     match node.propose_for_output(b"hello".to_vec()) {
//!         Ok((index, applied)) => {
//!             assert_eq!(applied, Some(1));
//!             break index;
//!         }
//!         Err(batchkv_raft::RaftError::NotLeader { .. }) => {
//!             std::thread::sleep(std::time::Duration::from_millis(10))
//!         }
//!         Err(e) => panic!("{e}"),
//!     }
//! };
//! assert!(node.read_index().unwrap() >= index);
//! ```

#![warn(missing_docs)]

mod error;
mod log;
mod node;
mod snapgen;
mod storage;
mod transport;

/// raft-rs itself, for [`RaftStorage`]'s raft-facing methods (its `eraftpb` types); the rest of
/// the API needs none of it.
pub use raft;

pub use crate::error::RaftError;
pub use crate::node::{
    ConfChangeKind, Membership, NodeConfig, NodeStatus, RaftNode, ReadIndexFuture, RemovalNotice,
    SnapshotBuilder, StateMachine,
};
pub use crate::storage::{RAFT_CF, RaftStorage};
pub use crate::transport::{LocalNetwork, Mailbox, Transport};

//! Snapshots for followers, built off the node thread (TiKV's snapshot worker).
//!
//! raft-rs asks `Storage::snapshot` when a follower needs entries the log no longer has. Unless a
//! snapshot is ready, the storage answers `SnapshotTemporarilyUnavailable` and notes the request;
//! at its next tick the node asks the state machine for a [`SnapshotBuilder`] and runs it on a
//! thread of its own, so ticks, heartbeats and applying go on meanwhile. When the builder is done
//! the node records the snapshot in the storage (in memory), with the index, term,
//! configuration and member records its state corresponds to; raft's next attempt (the
//! follower's next heartbeat response) sends it.
//!
//! Which index: the builder answers the state machine's applied index `a` its state was captured
//! at. The node noted, when it started the builder, its own applied index `s`, the state
//! machine's `m` and the configuration. If `a == m`, nothing but empty entries and configuration
//! changes lie between `m` and `s`: the snapshot is at `s`, with the configuration noted then.
//! If `a > m` and no configuration change was applied after `a`, it is at `a` with the current
//! configuration. Otherwise (a configuration change after `a`: its configuration at `a` is not
//! known here any more) it is dropped and raft's next request builds another.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, TryRecvError};
use raft::eraftpb::ConfState;
use raft::{RawNode, StateRole};

use crate::node::{SnapshotBuilder, StateMachine};
use crate::storage::RaftStorage;

type Records = std::collections::BTreeMap<u64, Vec<u8>>;

/// The builder running, if any.
#[derive(Default)]
pub(crate) struct SnapshotGen {
    job: Option<Job>,
}

struct Job {
    thread: Option<JoinHandle<()>>,
    rx: Receiver<Result<(u64, Vec<u8>), String>>,
    /// At the start: the node's applied index, the state machine's, the configuration and the
    /// member records.
    raft_applied: u64,
    sm_applied: u64,
    conf: ConfState,
    records: Records,
}

impl SnapshotGen {
    /// At each tick: records a finished snapshot, or starts a builder if raft asked for one.
    /// `applied` is the node's applied index, `last_conf_index` the index of the last
    /// configuration change it applied (or a bound above it).
    pub(crate) fn poll<O: Send + 'static>(
        &mut self,
        node: u64,
        rn: &mut RawNode<RaftStorage>,
        sm: &mut dyn StateMachine<Output = O>,
        applied: u64,
        last_conf_index: u64,
    ) {
        // The built snapshot, once every member has what it holds (or this node no longer
        // leads): its memory goes. A member still behind it keeps it (until a log compaction
        // past its index drops it).
        if rn.store().generated_snapshot_bytes() > 0 {
            let index = rn.store().generated_snapshot_index().unwrap_or(0);
            let needed = rn.raft.state == StateRole::Leader
                && rn.raft.prs().iter().any(|(_, pr)| pr.matched < index);
            if !needed {
                rn.mut_store().release_generated_snapshot();
                tracing::debug!(node, index, "snapshot for followers let go");
            }
        }
        if let Some(job) = &mut self.job {
            let outcome = match job.rx.try_recv() {
                Ok(outcome) => outcome,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Err("the snapshot builder panicked".into()),
            };
            if let Some(t) = job.thread.take() {
                let _ = t.join();
            }
            let Some(job) = self.job.take() else {
                return;
            };
            finish(node, rn, job, outcome, last_conf_index);
            return;
        }
        if !rn.store().take_snapshot_wanted() {
            return;
        }
        let store = rn.store();
        let raft_applied = applied;
        let sm_applied = sm.applied_index();
        let conf = store.conf_state().clone();
        let records = store.member_records().clone();
        let builder: SnapshotBuilder = match sm.snapshot_builder() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(node, error = %e, "no snapshot for a follower: raft asks again");
                return;
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(format!("raft-{node}-snap"))
            .spawn(move || {
                let _ = tx.send(builder());
            });
        match thread {
            Ok(thread) => {
                tracing::info!(
                    node,
                    applied,
                    sm_applied,
                    "building a snapshot for a follower"
                );
                self.job = Some(Job {
                    thread: Some(thread),
                    rx,
                    raft_applied,
                    sm_applied,
                    conf,
                    records,
                });
            }
            Err(e) => tracing::warn!(node, error = %e, "no thread for the snapshot builder"),
        }
    }

    /// Waits for a builder in flight (the node stops: nothing may hold the state machine's
    /// storage once it is closed).
    pub(crate) fn stop(&mut self) {
        if let Some(mut job) = self.job.take()
            && let Some(t) = job.thread.take()
        {
            let _ = t.join();
        }
    }
}

fn finish(
    node: u64,
    rn: &mut RawNode<RaftStorage>,
    job: Job,
    outcome: Result<(u64, Vec<u8>), String>,
    last_conf_index: u64,
) {
    let (at, data) = match outcome {
        Ok(built) => built,
        Err(e) => {
            tracing::warn!(node, error = %e, "snapshot for a follower failed: raft asks again");
            return;
        }
    };
    let (index, conf, records) = if at == job.sm_applied {
        (job.raft_applied, job.conf, job.records)
    } else if at > job.sm_applied && last_conf_index <= at {
        let store = rn.store();
        (
            at,
            store.conf_state().clone(),
            store.member_records().clone(),
        )
    } else {
        tracing::info!(
            node,
            at,
            last_conf_index,
            "snapshot dropped: a configuration change followed it; raft asks again"
        );
        return;
    };
    let bytes = data.len();
    match rn
        .mut_store()
        .set_generated_snapshot(index, &data, conf, &records)
    {
        Ok(()) => {
            // Raft's requests so far are answered by this one.
            rn.store().take_snapshot_wanted();
            tracing::info!(node, index, bytes, "snapshot for followers ready");
        }
        Err(e) => {
            tracing::info!(node, index, error = %e, "snapshot dropped: raft asks again");
        }
    }
}

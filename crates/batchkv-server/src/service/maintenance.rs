//! Maintenance: Status, Hash, HashKV, Snapshot, Defragment, Alarm, MoveLeader (raft's
//! leadership transfer, etcd's checks and texts).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batchkv::Store;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Etcd, store};
use crate::blocking;
use crate::error::{bad_enum, status};
use crate::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use crate::{Ctx, ETCD_VERSION};

/// etcd's `rpctypes` errors of MoveLeader.
const NOT_LEADER: &str = "etcdserver: not leader";
const BAD_TRANSFEREE: &str = "etcdserver: bad leader transferee";
const TRANSFER_TIMED_OUT: &str = "etcdserver: request timed out, leader transfer took too long";
/// How long MoveLeader waits for the new leader (etcd waits for the request's deadline;
/// etcdctl's default command timeout is 5 s).
const LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes per Snapshot message (etcd sends 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;
/// Snapshot messages queued for a slow client.
const SNAPSHOT_BUFFER: usize = 4;

#[tonic::async_trait]
impl Maintenance for Etcd {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let r = request.into_inner();
        let action =
            AlarmAction::try_from(r.action).map_err(|_| bad_enum("alarm action", r.action))?;
        let kind = pb::AlarmType::try_from(r.alarm).map_err(|_| bad_enum("alarm", r.alarm))?;
        let nospace = pb::AlarmMember {
            member_id: self.ctx.member_id,
            alarm: pb::AlarmType::Nospace as i32,
        };
        let quota = &self.ctx.quota;
        // NOSPACE is the one alarm batchkv raises (CORRUPT: a corrupt store halts instead,
        // and Status reports why).
        let alarms = match (action, kind) {
            (AlarmAction::Get, pb::AlarmType::None | pb::AlarmType::Nospace) => {
                if quota.raised() {
                    vec![nospace]
                } else {
                    Vec::new()
                }
            }
            (AlarmAction::Activate, pb::AlarmType::Nospace) => {
                quota.raise();
                vec![nospace]
            }
            (AlarmAction::Deactivate, pb::AlarmType::Nospace) => {
                if quota.clear() {
                    vec![nospace]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        // etcd 3.4 answers an alarm request with no header at all (its apply result goes out
        // as is; etcdctl prints `{}`).
        Ok(Response::new(pb::AlarmResponse {
            header: None,
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let stats = store(blocking::run(&self.ctx.store, |s| s.stats()).await?)?;
        let db_size = crate::quota::db_size(&stats);
        let in_use = i64::try_from(stats.engine.totals().live_data_bytes).unwrap_or(i64::MAX);
        let mut errors: Vec<String> = stats.halted.into_iter().collect();
        if self.ctx.quota.raised() {
            // etcd's text of an AlarmMember.
            errors.push(format!("memberID:{} alarm:NOSPACE ", self.ctx.member_id));
        }
        // Replicated: raft's view (etcd's raft index is the commit index; its applied index
        // counts raft's empty and configuration entries too). One node: the store's applied
        // index for both, and this member as the leader.
        let (leader, raft_index, raft_term, raft_applied_index) = match self.ctx.store.raft_status()
        {
            Some(s) => (s.leader.unwrap_or(0), s.commit, s.term, s.applied),
            None => (
                self.ctx.member_id,
                stats.applied_index,
                self.ctx.raft_term(),
                stats.applied_index,
            ),
        };
        Ok(Response::new(pb::StatusResponse {
            header: self.ctx.header(stats.revision),
            version: ETCD_VERSION.to_owned(),
            db_size,
            leader,
            raft_index,
            raft_term,
            raft_applied_index,
            errors,
            db_size_in_use: if in_use > 0 { in_use } else { db_size },
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: self.ctx.quota.limit(),
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // etcd rewrites its bbolt file without the free pages; batchkv finishes the pending
        // physical compaction and has RocksDB compact every column family over its whole
        // range (Store::defragment), on a blocking thread: deleted data leaves the files.
        store(blocking::run(&self.ctx.store, |s| s.defragment()).await?)?;
        let rev = blocking::run(&self.ctx.store, |s| s.current_revision()).await?;
        Ok(Response::new(pb::DefragmentResponse {
            header: self.ctx.header(rev),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        // etcd hashes its bbolt file; batchkv answers the HashKV digest of the whole history
        // (equal for equal histories, across copies and restarts).
        let h = store(blocking::run(&self.ctx.store, |s| s.hash_kv(0)).await?)?;
        Ok(Response::new(pb::HashResponse {
            header: self.ctx.header(h.current_revision),
            hash: h.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let h = store(blocking::run(&self.ctx.store, move |s| s.hash_kv(rev)).await?)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.ctx.header(h.current_revision),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (tx, rx) = mpsc::channel(SNAPSHOT_BUFFER);
        let ctx = Arc::clone(&self.ctx);
        blocking::spawn(&self.ctx.store, move |s| {
            if let Err(e) = stream_snapshot(s, &ctx, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// etcd's MoveLeader: asked of the leader only (`etcdserver: not leader`,
    /// FailedPrecondition), to a voter (`etcdserver: bad leader transferee`); raft's
    /// leadership transfer, then a wait (a tick at a time) until this member sees the
    /// transferee lead, or etcd's leader-transfer timeout. etcd answers without a header.
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let Some(status) = self.ctx.store.raft_status() else {
            // One member: it is the leader, and the only voter.
            if target != self.ctx.member_id {
                return Err(Status::failed_precondition(BAD_TRANSFEREE));
            }
            return Ok(Response::new(pb::MoveLeaderResponse { header: None }));
        };
        if !status.is_leader {
            return Err(Status::failed_precondition(NOT_LEADER));
        }
        let m = self
            .ctx
            .store
            .membership()
            .ok_or_else(|| Status::unavailable(crate::error::STOPPED))?;
        if !m.voters.contains(&target) {
            return Err(Status::failed_precondition(BAD_TRANSFEREE));
        }
        blocking::run(&self.ctx.store, move |s| s.transfer_leader(target))
            .await?
            .map_err(|e| match e {
                batchkv::RaftError::NotLeader { .. } => Status::failed_precondition(NOT_LEADER),
                other => crate::service::conf_status(other),
            })?;
        let deadline = tokio::time::Instant::now() + LEADER_TRANSFER_TIMEOUT;
        loop {
            match self.ctx.store.raft_status() {
                Some(s) if s.leader == Some(target) => break,
                None => return Err(Status::unavailable(crate::error::STOPPED)),
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(TRANSFER_TIMED_OUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Response::new(pb::MoveLeaderResponse { header: None }))
    }
}

type SnapshotTx = mpsc::Sender<Result<pb::SnapshotResponse, Status>>;

/// Writes a RocksDB checkpoint of the store (consistent: whole entries only) and streams it as
/// one tar archive of its files (not a bbolt file: `batchkv` opens it after unpacking),
/// followed by the archive's SHA-256 as etcd's stream ends.
fn stream_snapshot(store: &Store, ctx: &Ctx, tx: &SnapshotTx) -> Result<(), Status> {
    let io = |what: &str, e: std::io::Error| Status::internal(format!("etcdserver: {what}: {e}"));
    let tmp = match &ctx.snapshot_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix(".batchkv-snapshot-")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("batchkv-snapshot-")
            .tempdir(),
    }
    .map_err(|e| io("create the snapshot's temp dir", e))?;
    let dir = tmp.path().join("snapshot");
    store.checkpoint(&dir).map_err(|e| status(&e))?;
    let mut files: Vec<(String, u64)> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| io("list the checkpoint", e))? {
        let entry = entry.map_err(|e| io("list the checkpoint", e))?;
        let meta = entry.metadata().map_err(|e| io("read the checkpoint", e))?;
        if meta.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    files.sort();
    // The archive's size, for `remaining_bytes`: a 512-byte header and the data padded to
    // 512 bytes per file, then two zero blocks.
    // Then etcd's trailer: the SHA-256 of everything before it.
    let total: u64 = files
        .iter()
        .map(|(_, len)| 512 + len.div_ceil(512) * 512)
        .sum::<u64>()
        + 1024
        + 32;
    let rev = store.current_revision();
    let mut out = Chunks {
        tx,
        header: ctx.header(rev),
        buf: Vec::with_capacity(SNAPSHOT_CHUNK),
        total,
        sent: 0,
        sha: Sha256::new(),
    };
    {
        let mut tar = tar::Builder::new(&mut out);
        tar.mode(tar::HeaderMode::Deterministic);
        for (name, _) in &files {
            tar.append_path_with_name(dir.join(name), Path::new("snapshot").join(name))
                .map_err(|e| io("pack the checkpoint", e))?;
        }
        tar.finish().map_err(|e| io("pack the checkpoint", e))?;
    }
    out.finish().map_err(|e| io("send the snapshot", e))
}

/// The archive's bytes as Snapshot messages.
struct Chunks<'a> {
    tx: &'a SnapshotTx,
    header: Option<pb::ResponseHeader>,
    buf: Vec<u8>,
    total: u64,
    sent: u64,
    sha: Sha256,
}

impl Chunks<'_> {
    fn send(&mut self, last: bool) -> std::io::Result<()> {
        if self.buf.is_empty() && !last {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        if !last {
            self.sha.update(&blob);
        }
        self.sent += blob.len() as u64;
        let remaining_bytes = if last {
            0
        } else {
            self.total.saturating_sub(self.sent)
        };
        let msg = pb::SnapshotResponse {
            header: self.header,
            remaining_bytes,
            blob: blob.into(),
            version: String::new(),
        };
        self.tx
            .blocking_send(Ok(msg))
            .map_err(|_| std::io::Error::other("the client went away"))
    }

    /// Sends what is left of the archive, then the SHA-256 of the archive as the last message
    /// (as etcd, whose `snapshot save` refuses a stream without it).
    fn finish(mut self) -> std::io::Result<()> {
        self.send(false)?;
        self.buf = self.sha.clone().finalize().to_vec();
        self.send(true)
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(SNAPSHOT_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

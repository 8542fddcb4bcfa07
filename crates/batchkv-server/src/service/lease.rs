//! Lease: Grant, Revoke, the KeepAlive stream, TimeToLive, Leases.
//!
//! Replicated, only the leader holds lease deadlines: a member that is not the leader forwards
//! each keep-alive and TimeToLive to the leader over the peer service (`peer::PeerClients`),
//! as etcd's `LeaseRenew`/`LeaseTimeToLive` do over peer HTTP, asking again (every
//! [`FORWARD_RETRY`]) while there is no leader or the leader cannot answer, for up to
//! [`FORWARD_TIMEOUT`] (then etcd's "request timed out").

use std::time::Duration;

use batchkv::{
    LeaseGrant, LeaseRevoke, LeaseTimeToLive, Op, OpError, OpResponse, Store, StoreError,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Etcd, stopped, store};
use crate::Ctx;
use crate::blocking;
use crate::error::status;
use crate::pb::etcdserverpb::{self as pb, lease_server::Lease};

/// Keep-alive answers queued for a slow client before its stream waits.
const KEEP_ALIVE_BUFFER: usize = 16;

/// How long a forwarded lease request may take, retries included: etcd's `ReqTimeout()` (5 s
/// plus two election timeouts of 1 s at etcd's and batchkv's defaults).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);
/// The wait between two attempts to reach the leader (etcd's throttle in `LeaseRenew`).
const FORWARD_RETRY: Duration = Duration::from_millis(50);
/// One call to another member's peer service.
pub(crate) const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `e` means "ask the leader" (this member is not it, or knows none yet).
fn not_leader(e: &StoreError) -> bool {
    matches!(e, StoreError::NotLeader { .. } | StoreError::NoLeader)
}

/// Renews lease `id` where its deadline lives: here on the leader (or a single node), else on
/// the leader, forwarded; its TTL, and this member's revision (for the header).
async fn renew(ctx: &Ctx, id: i64) -> Result<(Result<i64, StoreError>, i64), Status> {
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let (local, rev) = blocking::run(&ctx.store, move |s| {
            (s.lease_keep_alive(id), s.current_revision())
        })
        .await?;
        let (Some(peers), Err(e)) = (&ctx.peers, &local) else {
            return Ok((local, rev));
        };
        if !not_leader(e) {
            return Ok((local, rev));
        }
        let leader = match e {
            StoreError::NotLeader { leader } => Some(*leader),
            _ => None,
        };
        if let Some(leader) = leader {
            match peers.lease_renew(leader, id).await {
                Ok(ttl) => return Ok((Ok(ttl), rev)),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Ok((Err(StoreError::Op(OpError::LeaseNotFound { id })), rev));
                }
                Err(s) => {
                    tracing::debug!(lease = id, leader, status = %s, "lease renew not forwarded; retrying");
                }
            }
        }
        if tokio::time::Instant::now() + FORWARD_RETRY >= deadline {
            let e = if leader.is_none() {
                StoreError::NoLeader
            } else {
                StoreError::Timeout
            };
            return Ok((Err(e), rev));
        }
        tokio::time::sleep(FORWARD_RETRY).await;
    }
}

/// Lease `id`'s TimeToLive from the member holding its deadline: this one if it leads (or is
/// a single node), else the leader, forwarded; and this member's revision (for the header).
async fn time_to_live(
    ctx: &Ctx,
    id: i64,
    keys: bool,
) -> Result<(Result<LeaseTimeToLive, StoreError>, i64), Status> {
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let leader = match (ctx.store.raft_status(), &ctx.peers) {
            (Some(s), Some(peers)) if !s.is_leader => s.leader.map(|l| (l, peers)),
            _ => {
                return blocking::run(&ctx.store, move |s| {
                    (Ok(s.lease_time_to_live(id, keys)), s.current_revision())
                })
                .await;
            }
        };
        if let Some((leader, peers)) = leader {
            match peers.lease_time_to_live(leader, id, keys).await {
                Ok(r) => {
                    let rev = blocking::run(&ctx.store, Store::current_revision).await?;
                    let t = LeaseTimeToLive {
                        id: r.id,
                        ttl: r.ttl,
                        granted_ttl: r.granted_ttl,
                        keys: r.keys.into_iter().map(Into::into).collect(),
                    };
                    return Ok((Ok(t), rev));
                }
                Err(s) => {
                    tracing::debug!(lease = id, leader, status = %s, "lease time-to-live not forwarded; retrying");
                }
            }
        }
        if tokio::time::Instant::now() + FORWARD_RETRY >= deadline {
            let e = if leader.is_none() {
                StoreError::NoLeader
            } else {
                StoreError::Timeout
            };
            return Ok((Err(e), 0));
        }
        tokio::time::sleep(FORWARD_RETRY).await;
    }
}

/// Resolves once the server is stopping.
pub(super) async fn until_stopping(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stopping| *stopping).await;
}

#[tonic::async_trait]
impl Lease for Etcd {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let op = Op::LeaseGrant(LeaseGrant {
            id: r.id,
            ttl: r.ttl,
        });
        self.ctx.quota.admit(&self.ctx.store, &op)?;
        match store(blocking::submit(&self.ctx.store, op).await?)? {
            OpResponse::LeaseGrant(g) => Ok(Response::new(pb::LeaseGrantResponse {
                header: self.ctx.header(g.revision),
                id: g.id,
                ttl: g.ttl,
                error: String::new(),
            })),
            other => Err(Status::internal(format!(
                "etcdserver: lease grant answered with {other:?}"
            ))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let op = Op::LeaseRevoke(LeaseRevoke {
            id: request.into_inner().id,
        });
        match store(blocking::submit(&self.ctx.store, op).await?)? {
            OpResponse::LeaseRevoke(r) => Ok(Response::new(pb::LeaseRevokeResponse {
                header: self.ctx.header(r.revision),
            })),
            other => Err(Status::internal(format!(
                "etcdserver: lease revoke answered with {other:?}"
            ))),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive_stream(request.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let (t, rev) = time_to_live(&self.ctx, r.id, r.keys).await?;
        let t = store(t)?;
        // A lease that does not exist: TTL -1, as etcd answers (not an error).
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.ctx.header(rev),
            id: t.id,
            ttl: t.ttl,
            granted_ttl: t.granted_ttl,
            keys: t.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let (ids, rev) =
            blocking::run(&self.ctx.store, |s| (s.leases(), s.current_revision())).await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.ctx.header(rev),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

impl Etcd {
    /// A keep-alive stream over any stream of requests: the gRPC one's, or the HTTP gateway's
    /// (JSON objects read from a request body).
    pub(crate) fn keep_alive_stream<S>(
        &self,
        mut inbound: S,
    ) -> ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>
    where
        S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let stop = until_stopping(ctx.stopping.clone());
            tokio::pin!(stop);
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => m.transpose(),
                    () = &mut stop => {
                        let _ = tx.send(Err(stopped())).await;
                        return;
                    }
                    () = tx.closed() => return,
                };
                // The client closed its side, or sent something unreadable (its error is
                // its own stream's): the stream ends.
                let Ok(Some(req)) = msg else { return };
                let id = req.id;
                let resp = match renew(&ctx, id).await {
                    Ok((Ok(ttl), rev)) => Ok(pb::LeaseKeepAliveResponse {
                        header: ctx.header(rev),
                        id,
                        ttl,
                    }),
                    // As etcd: an unknown (expired, revoked) lease gets TTL 0, not an error.
                    Ok((Err(StoreError::Op(OpError::LeaseNotFound { .. })), rev)) => {
                        Ok(pb::LeaseKeepAliveResponse {
                            header: ctx.header(rev),
                            id,
                            ttl: 0,
                        })
                    }
                    Ok((Err(e), _)) => Err(status(&e)),
                    Err(e) => Err(e),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

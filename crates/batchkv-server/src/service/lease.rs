//! Lease: Grant, Revoke, the KeepAlive stream, TimeToLive, Leases.

use batchkv::{LeaseGrant, LeaseRevoke, Op, OpError, OpResponse, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Etcd, stopped, store};
use crate::blocking;
use crate::error::status;
use crate::pb::etcdserverpb::{self as pb, lease_server::Lease};

/// Keep-alive answers queued for a slow client before its stream waits.
const KEEP_ALIVE_BUFFER: usize = 16;

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
        let (t, rev) = blocking::run(&self.ctx.store, move |s| {
            (s.lease_time_to_live(r.id, r.keys), s.current_revision())
        })
        .await?;
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
                let renewed = blocking::run(&ctx.store, move |s| {
                    (s.lease_keep_alive(id), s.current_revision())
                })
                .await;
                let resp = match renewed {
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

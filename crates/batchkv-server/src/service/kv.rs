//! KV: Range, Put, DeleteRange, Txn, Compact.

use batchkv::{Compact, Op, OpResponse};
use tonic::{Request, Response, Status};

use super::{Etcd, store};
use crate::blocking;
use crate::convert;
use crate::pb::etcdserverpb::{self as pb, kv_server::Kv};

impl Etcd {
    /// Submits a write and checks the kind of its answer.
    async fn write(&self, op: Op) -> Result<OpResponse, Status> {
        self.ctx.quota.admit(&self.ctx.store, &op)?;
        store(blocking::submit(&self.ctx.store, op).await?)
    }
}

fn mismatch(what: &str, got: &OpResponse) -> Status {
    Status::internal(format!("etcdserver: {what} answered with {got:?}"))
}

#[tonic::async_trait]
impl Kv for Etcd {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        // Serializable: this member's applied state. Linearizable (the default): a replicated
        // member first awaits a read index (raft's ReadIndex; no thread waits for it, and a
        // 1-member cluster's leader answers at once); a single node's applied state already
        // holds every acknowledged write. Then a read of one key may run in place
        // (`blocking::range`).
        let req = request.into_inner();
        let serializable = req.serializable;
        let r = convert::range(req)?;
        if !serializable && self.ctx.store.is_replicated() {
            store(self.ctx.store.read_barrier_async().await)?;
        }
        let resp = store(blocking::range(&self.ctx.store, r).await?)?;
        let h = self.ctx.header(resp.revision);
        Ok(Response::new(convert::range_response(h, resp)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        match self
            .write(Op::Put(convert::put(request.into_inner())))
            .await?
        {
            OpResponse::Put(r) => {
                let h = self.ctx.header(r.revision);
                Ok(Response::new(convert::put_response(h, r)))
            }
            other => Err(mismatch("put", &other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let op = Op::DeleteRange(convert::delete_range(request.into_inner()));
        match self.write(op).await? {
            OpResponse::DeleteRange(r) => {
                let h = self.ctx.header(r.revision);
                Ok(Response::new(convert::delete_response(h, r)))
            }
            other => Err(mismatch("delete range", &other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let op = Op::Txn(convert::txn(request.into_inner())?);
        match self.write(op).await? {
            OpResponse::Txn(r) => {
                let h = self.ctx.header(r.revision);
                Ok(Response::new(convert::txn_response(h, r)))
            }
            other => Err(mismatch("txn", &other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        // `physical` needs no wait: the compaction's entry commits the compacted revision, and
        // the records go in bounded steps after it (reads below it fail from the start).
        let revision = request.into_inner().revision;
        match self.write(Op::Compact(Compact { revision })).await? {
            OpResponse::Compact(r) => Ok(Response::new(pb::CompactionResponse {
                header: self.ctx.header(r.revision),
            })),
            other => Err(mismatch("compact", &other)),
        }
    }
}

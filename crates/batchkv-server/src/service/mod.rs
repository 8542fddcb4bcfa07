//! The services: one [`Etcd`] value implements every etcd service trait (tonic clones it per
//! service). Each RPC converts the request (`convert.rs`), hands the store call to
//! `blocking.rs`, and converts the answer or the error (`error.rs`).

mod auth;
mod cluster;
pub(crate) use cluster::conf_status;
mod kv;
mod lease;
mod maintenance;
mod watch;

pub(crate) use lease::PEER_CALL_TIMEOUT;

use std::sync::Arc;

use tonic::Status;

use crate::Ctx;
use crate::error::status;

/// etcd's services over one store.
#[derive(Clone, Debug)]
pub struct Etcd {
    ctx: Arc<Ctx>,
}

impl Etcd {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Etcd { ctx }
    }
}

/// A store result as a gRPC result.
fn store<T>(r: batchkv::Result<T>) -> Result<T, Status> {
    r.map_err(|e| status(&e))
}

/// What a stream answers when the server stops under it.
fn stopped() -> Status {
    Status::unavailable(crate::error::STOPPED)
}

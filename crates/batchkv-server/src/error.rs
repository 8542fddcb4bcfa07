//! batchkv's errors as etcd's gRPC errors: the status codes and message texts of etcd 3.4's
//! `rpctypes` (`etcdserver/api/v3rpc/rpctypes/error.go`), because clients match on both (the
//! Go client turns the text back into its typed error; `etcd-client` exposes it).

use batchkv::{OpError, StoreError};
use tonic::{Code, Status};

/// etcd's text for a write refused over quota (its NOSPACE alarm).
pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
/// etcd's text for requests to a server that is stopping.
pub const STOPPED: &str = "etcdserver: server stopped";

/// The gRPC status etcd answers for `e`.
pub fn status(e: &StoreError) -> Status {
    match e {
        StoreError::Op(op) => op_status(op),
        StoreError::Closed => Status::unavailable(STOPPED),
        // etcd's ErrGRPCTooManyRequests.
        StoreError::Busy => Status::resource_exhausted("etcdserver: too many requests"),
        // etcd's ErrGRPCNoLeader, ErrGRPCNotLeader, ErrGRPCTimeoutDueToLeaderFail,
        // ErrGRPCTimeout, ErrGRPCStopped: Unavailable, with the error's own (etcd's) text.
        StoreError::NoLeader
        | StoreError::NotLeader { .. }
        | StoreError::LeaderLost
        | StoreError::Timeout
        | StoreError::Stopped => Status::unavailable(e.to_string()),
        StoreError::Halted { .. } => Status::unavailable(format!("etcdserver: {e}")),
        StoreError::Storage(_) => Status::unavailable(format!("etcdserver: {e}")),
        StoreError::Conflict { .. } | StoreError::Internal(_) | StoreError::Config(_) => {
            Status::internal(format!("etcdserver: {e}"))
        }
    }
}

/// The gRPC status etcd answers for a refused operation.
pub fn op_status(e: &OpError) -> Status {
    let (code, text): (Code, &str) = match e {
        OpError::Compacted { .. } => (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        OpError::FutureRevision { .. } => (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        OpError::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        OpError::TooManyOps { .. } => (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        OpError::RequestTooLarge { .. } => {
            (Code::InvalidArgument, "etcdserver: request is too large")
        }
        OpError::DuplicateKey => (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        OpError::LeaseNotFound { .. } => (Code::NotFound, "etcdserver: requested lease not found"),
        OpError::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        OpError::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        OpError::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        OpError::LeaseExists { .. } => {
            (Code::FailedPrecondition, "etcdserver: lease already exists")
        }
        OpError::LeaseTtlTooLarge { .. } => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        OpError::Invalid(_) => return Status::invalid_argument(format!("etcdserver: {e}")),
    };
    Status::new(code, text)
}

/// What every RPC batchkv does not serve answers.
pub fn unserved(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "batchkv does not serve {rpc} (docs/ETCD-COMPAT.md lists what it serves)"
    ))
}

/// A request field with a value etcd does not define (an unknown enum number).
pub fn bad_enum(field: &str, value: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: unknown {field} {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_texts() {
        let s = op_status(&OpError::Compacted {
            requested: 1,
            compacted: 5,
        });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = status(&StoreError::Op(OpError::LeaseNotFound { id: 7 }));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
        let s = status(&StoreError::Closed);
        assert_eq!((s.code(), s.message()), (Code::Unavailable, STOPPED));
        // A replicated store's raft outcomes: etcd's texts, all Unavailable.
        for (e, text) in [
            (StoreError::NoLeader, "etcdserver: no leader"),
            (
                StoreError::NotLeader { leader: 2 },
                "etcdserver: not leader",
            ),
            (
                StoreError::LeaderLost,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            (StoreError::Timeout, "etcdserver: request timed out"),
            (StoreError::Stopped, STOPPED),
        ] {
            let s = status(&e);
            assert_eq!((s.code(), s.message()), (Code::Unavailable, text), "{e:?}");
        }
        assert_eq!(unserved("Auth/UserAdd").code(), Code::Unimplemented);
        assert!(unserved("Auth/UserAdd").message().contains("Auth/UserAdd"));
    }
}

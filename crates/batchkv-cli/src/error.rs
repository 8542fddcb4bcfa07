//! A failed command: etcdctl's exit code and message.

use batchkv::{OpError, StoreError};

/// etcdctl's exit codes (`ExitSuccess` = 0 is the absence of an error).
pub mod exit {
    /// A refused request, or a flag error (cobra's).
    pub const ERROR: i32 = 1;
    /// The store could not be reached (here: opened).
    pub const BAD_CONNECTION: i32 = 2;
    /// Bad txn input.
    pub const INVALID_INPUT: i32 = 3;
    /// A feature etcdctl has and batchkv does not (or an unsupported value).
    pub const BAD_FEATURE: i32 = 4;
    /// A cancelled watch.
    pub const INTERRUPTED: i32 = 5;
    /// Writing the output failed.
    pub const IO: i32 = 6;
    /// Bad arguments.
    pub const BAD_ARGS: i32 = 128;
}

/// A failed command: printed as `Error: <msg>` on stderr, then the process exits with `code`.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// etcdctl's exit code (see [`exit`]).
    pub code: i32,
    /// The message after `Error: `.
    pub msg: String,
}

impl CliError {
    /// A failure with this exit code and message.
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        CliError {
            code,
            msg: msg.into(),
        }
    }

    /// Bad arguments (exit 128), as etcdctl's `ExitWithError(ExitBadArgs, ...)`.
    pub fn bad_args(msg: impl Into<String>) -> Self {
        CliError::new(exit::BAD_ARGS, msg)
    }

    /// A refused request (exit 1) with etcd's message for `e`.
    pub fn store(e: &StoreError) -> Self {
        CliError::new(exit::ERROR, etcd_message(e))
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// etcd's message for a store error, as etcdctl prints it (`etcdserver: ...`).
pub fn etcd_message(e: &StoreError) -> String {
    match e {
        StoreError::Op(op @ (OpError::Compacted { .. } | OpError::FutureRevision { .. })) => {
            format!("etcdserver: {op}")
        }
        other => other.to_string(),
    }
}

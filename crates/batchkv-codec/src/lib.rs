//! The batchkv log-entry format.
//!
//! An entry carries one operation, or a batch of them, from the proposers to the state machine.
//! It is protobuf (`proto/batchkv/v1/entry.proto`), decoded through a fallback chain so that
//! entries written by earlier writers still apply:
//!
//! 1. [`Format::Entry`]: the current envelope, `Entry { magic, oneof { single, batch, lz4_batch } }`;
//! 2. [`Format::Operation`]: a bare `Operation` message;
//! 3. [`Format::Legacy`]: a JSON record of one operation.
//!
//! Each format begins with its own byte (0x0D, 0x08, `{`), so classification is deterministic:
//! docs/FORMAT.md specifies it byte by byte. The crate is pure: no I/O, no threads, and no input
//! makes it panic.
//!
//! # Examples
//! ```
//! use batchkv_codec::{DeleteRange, Format, Op, Put, decode_entry, encode_entry, encoded_len};
//! use bytes::BytesMut;
//!
//! let ops = vec![
//!     Op::Put(Put::new("user/1", "alice")),
//!     Op::DeleteRange(DeleteRange::key("user/0")),
//! ];
//! let mut buf = BytesMut::with_capacity(encoded_len(&ops));
//! encode_entry(&ops, &mut buf)?;
//! assert_eq!(buf.len(), encoded_len(&ops));
//!
//! let decoded = decode_entry(&buf)?;
//! assert_eq!(decoded.format, Format::Entry);
//! assert_eq!(decoded.ops, ops);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod convert;
mod decode;
mod encode;
mod error;
mod fast;
mod legacy;
mod limits;
mod op;
pub mod record;
mod scan;
pub mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use crate::decode::{
    Decoded, Decoder, ENTRY_FIRST_BYTE, Format, LEGACY_FIRST_BYTE, OPERATION_FIRST_BYTE,
    decode_entry,
};
pub use crate::encode::{Compression, Encoder, encode_entry, encode_operation, encoded_len};
pub use crate::error::{
    Attempts, DecodeError, EncodeError, InvalidOp, InvalidReason, LayerError, Result,
};
pub use crate::legacy::encode_legacy;
pub use crate::limits::Limits;
pub use crate::op::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, LeaseGrant, LeaseRevoke,
    MAX_TXN_DEPTH, Op, OpKind, Put, Range, SortOrder, SortTarget, Txn, prefix_end, prefix_range,
};
pub use crate::wire::ENTRY_MAGIC;

//! Errors of the codec. None of them wraps a dependency's error type: prost's and serde_json's
//! messages are carried as text.

use std::fmt;

use crate::op::OpKind;

/// Result of the codec's fallible functions.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// An operation that breaks the format's rules, with where in it the fault is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidOp {
    /// Dotted path of the offending field inside the op, e.g. `txn.success[2].put.key`.
    pub path: String,
    /// What is wrong.
    pub reason: InvalidReason,
}

impl InvalidOp {
    pub(crate) fn at(path: impl Into<String>, reason: InvalidReason) -> Self {
        InvalidOp {
            path: path.into(),
            reason,
        }
    }

    /// Prefixes the path with the enclosing field.
    pub(crate) fn within(mut self, outer: impl AsRef<str>) -> Self {
        let outer = outer.as_ref();
        self.path = match (outer.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => outer.to_owned(),
            (false, false) => format!("{outer}.{}", self.path),
        };
        self
    }
}

impl fmt::Display for InvalidOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Why an operation is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// A key that must be given is empty (etcd's message).
    #[error("key is not provided")]
    EmptyKey,
    /// The op type is 0 or not known to this version.
    #[error("unknown op type {0}")]
    UnknownOpType(i32),
    /// The op type is set but its request body is not.
    #[error("op type {kind} has no request body")]
    MissingRequest {
        /// The declared type.
        kind: OpKind,
    },
    /// The op type and the request body disagree.
    #[error("op type {kind} carries a {body} request")]
    TypeMismatch {
        /// The declared type.
        kind: OpKind,
        /// The body actually present.
        body: OpKind,
    },
    /// An enum field holds a value this version does not know.
    #[error("unknown {field} value {value}")]
    UnknownEnum {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i32,
    },
    /// A compare names a target but carries no operand.
    #[error("compare has no target value")]
    MissingCompareValue,
    /// A compare's target and operand disagree.
    #[error("compare target {target} carries a {operand} value")]
    CompareMismatch {
        /// The declared target.
        target: &'static str,
        /// The operand actually present.
        operand: &'static str,
    },
    /// An op that a txn branch may not hold.
    #[error("{kind} is not allowed inside a txn")]
    NotAllowedInTxn {
        /// The op found.
        kind: OpKind,
    },
    /// Txns nested deeper than the format allows.
    #[error("txns nested deeper than {max} levels")]
    TooDeep {
        /// The limit, [`crate::MAX_TXN_DEPTH`].
        max: usize,
    },
    /// A legacy record's field is missing.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A legacy record carries a field its op does not take.
    #[error("field `{field}` does not belong to op {op}")]
    UnexpectedField {
        /// The field.
        field: &'static str,
        /// The record's op.
        op: &'static str,
    },
    /// A legacy record's op name is unknown.
    #[error("unknown legacy op {0:?}")]
    UnknownLegacyOp(String),
    /// A legacy record's bytes field is not valid base64.
    #[error("field `{field}` is not valid base64: {reason}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// Why one decoding layer rejected the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// The input is empty.
    #[error("empty input")]
    Empty,
    /// The first byte is not the one this format always starts with.
    #[error("first byte 0x{found:02x} is not 0x{expected:02x}")]
    FirstByte {
        /// The byte found.
        found: u8,
        /// The byte this format starts with.
        expected: u8,
    },
    /// The entry magic is wrong (another version, or not an entry).
    #[error("magic 0x{found:08x} is not 0x{expected:08x} (\"BKV1\")")]
    Magic {
        /// The magic found.
        found: u32,
        /// The magic of this version.
        expected: u32,
    },
    /// The protobuf decoder failed.
    #[error("protobuf: {0}")]
    Protobuf(String),
    /// The JSON decoder failed.
    #[error("json: {0}")]
    Json(String),
    /// A field that must appear once appears again.
    #[error("{field} given twice")]
    Duplicate {
        /// Which field.
        field: &'static str,
    },
    /// The entry has no payload.
    #[error("entry has no payload")]
    MissingPayload,
    /// The batch holds no operation.
    #[error("batch has no operations")]
    EmptyBatch,
    /// The batch holds more operations than the limit.
    #[error("{count} operations exceed the limit of {max}")]
    TooManyOps {
        /// Operations in the batch.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The LZ4 payload is corrupt.
    #[error("lz4: {0}")]
    Decompress(String),
    /// The LZ4 payload would decompress to more than the entry size limit.
    #[error("uncompressed batch of {len} bytes exceeds the limit of {max} bytes")]
    DecompressedTooLarge {
        /// The uncompressed length the payload declares.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// An operation is invalid.
    #[error("operation {index}: {source}")]
    Invalid {
        /// Position of the op in the entry.
        index: usize,
        /// What is wrong with it.
        source: InvalidOp,
    },
}

/// An entry that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is over the size limit; nothing was parsed.
    #[error("entry of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Every layer of the fallback chain rejected the input.
    #[error(
        "entry of {} bytes matches no format: as entry: {}; as operation: {}; as legacy: {}",
        .0.len, .0.entry, .0.operation, .0.legacy
    )]
    NoFormat(Box<Attempts>),
}

/// Why each layer of the fallback chain rejected an input, in the order they were tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// The input's length.
    pub len: usize,
    /// Why the entry layer rejected it.
    pub entry: LayerError,
    /// Why the bare operation layer rejected it.
    pub operation: LayerError,
    /// Why the legacy layer rejected it.
    pub legacy: LayerError,
}

/// An entry that could not be encoded; nothing was written to the buffer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An entry needs at least one operation.
    #[error("an entry needs at least one operation")]
    Empty,
    /// An operation is invalid, so no decoder would accept the entry.
    #[error("operation {index}: {source}")]
    Invalid {
        /// Position of the op.
        index: usize,
        /// What is wrong with it.
        source: InvalidOp,
    },
    /// More operations than the decoder's limit.
    #[error("{count} operations exceed the limit of {max}")]
    TooManyOps {
        /// Operations given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded entry would be over the decoder's size limit.
    #[error("entry of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The op has no legacy (JSON) encoding.
    #[error("op {kind} has no legacy encoding")]
    NotInLegacy {
        /// The op.
        kind: OpKind,
    },
}

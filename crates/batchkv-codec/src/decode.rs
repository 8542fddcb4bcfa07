//! Decoding entries through the fallback chain: entry, bare operation, legacy.

use prost::Message;

use crate::convert::op_from_wire;
use crate::error::{Attempts, DecodeError, LayerError};
use crate::fast;
use crate::legacy;
use crate::limits::Limits;
use crate::op::Op;
use crate::scan;
use crate::wire::{self, ENTRY_MAGIC};

/// The first byte of every entry: field 1, wire type 5 (fixed32), the magic.
pub const ENTRY_FIRST_BYTE: u8 = 0x0d;
/// The first byte of every bare operation: field 1, wire type 0 (varint), the op type.
pub const OPERATION_FIRST_BYTE: u8 = 0x08;
/// The first byte of every legacy record: `{`.
pub const LEGACY_FIRST_BYTE: u8 = b'{';

/// Which of the three formats an entry was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The current envelope (`Entry`): one op or a batch.
    Entry,
    /// A bare `Operation` message: one op.
    Operation,
    /// The legacy JSON record: one op.
    Legacy,
}

impl Format {
    /// The lowercase name used in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Entry => "entry",
            Format::Operation => "operation",
            Format::Legacy => "legacy",
        }
    }
}

/// A decoded entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The operations, in apply order; never empty.
    pub ops: Vec<Op>,
    /// The format that matched.
    pub format: Format,
    /// Whether the batch was LZ4-compressed.
    pub compressed: bool,
}

/// Decodes entries under a set of [`Limits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    limits: Limits,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decodes `bytes`, trying the entry format, then a bare operation, then a legacy record.
    ///
    /// Each format starts with its own first byte (see docs/FORMAT.md), so at most one can
    /// match and the order only decides which failure reasons come first. Never panics.
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] before parsing anything; [`DecodeError::NoFormat`] with each
    /// layer's reason when none matches.
    pub fn decode(&self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        if bytes.len() > self.limits.max_entry_bytes {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: self.limits.max_entry_bytes,
            });
        }
        let entry = match self.decode_as_entry(bytes) {
            Ok(decoded) => return Ok(decoded),
            Err(e) => e,
        };
        let operation = match decode_as_operation(bytes) {
            Ok(op) => {
                return Ok(Decoded {
                    ops: vec![op],
                    format: Format::Operation,
                    compressed: false,
                });
            }
            Err(e) => e,
        };
        let legacy = match decode_as_legacy(bytes) {
            Ok(op) => {
                return Ok(Decoded {
                    ops: vec![op],
                    format: Format::Legacy,
                    compressed: false,
                });
            }
            Err(e) => e,
        };
        Err(DecodeError::NoFormat(Box::new(Attempts {
            len: bytes.len(),
            entry,
            operation,
            legacy,
        })))
    }

    /// Frames the envelope by hand (magic first, exactly one payload field, unknown fields
    /// skipped), then decodes each operation into the result (the fast path, else prost): no
    /// intermediate `Vec` of wire structs, and no allocation past the op limit.
    fn decode_as_entry(&self, bytes: &[u8]) -> Result<Decoded, LayerError> {
        first_byte(bytes, ENTRY_FIRST_BYTE)?;
        let magic = bytes
            .get(1..5)
            .ok_or_else(|| LayerError::Protobuf("entry shorter than its magic".to_owned()))?;
        check_magic(u32::from_le_bytes(
            magic.try_into().expect("slice of length 4"),
        ))?;
        let mut payload = None;
        for field in scan::fields(&bytes[5..]) {
            let (number, wire_type, data) = field?;
            match number {
                1 => return Err(LayerError::Duplicate { field: "magic" }),
                2..=4 if wire_type != scan::LEN => {
                    return Err(LayerError::Protobuf(format!(
                        "payload field {number} has wire type {wire_type}, not 2"
                    )));
                }
                2..=4 if payload.is_some() => {
                    return Err(LayerError::Duplicate { field: "payload" });
                }
                2..=4 => payload = Some((number, data)),
                // Unknown fields are skipped, as protobuf does: room for later versions.
                _ => {}
            }
        }
        let (ops, compressed) = match payload.ok_or(LayerError::MissingPayload)? {
            (2, op) => (vec![decode_op(0, op)?], false),
            (3, batch) => (self.decode_batch(batch)?, false),
            (_, lz4) => (self.decode_batch(&self.decompress(lz4)?)?, true),
        };
        Ok(Decoded {
            ops,
            format: Format::Entry,
            compressed,
        })
    }

    /// Decodes a `Batch` message: counts its ops first, so the limit holds before allocating,
    /// then decodes each op, through the fast path when it can.
    fn decode_batch(&self, batch: &[u8]) -> Result<Vec<Op>, LayerError> {
        let count = scan::count_len_fields(batch, 1)?;
        self.check_count(count)?;
        if count == 0 {
            return Err(LayerError::EmptyBatch);
        }
        let mut ops = Vec::with_capacity(count);
        for field in scan::fields(batch) {
            let (number, wire_type, data) = field?;
            if number != 1 {
                // An unknown field: skipped, as protobuf does.
                continue;
            }
            if wire_type != scan::LEN {
                return Err(LayerError::Protobuf(format!(
                    "operations field has wire type {wire_type}, not 2"
                )));
            }
            ops.push(decode_op(ops.len(), data)?);
        }
        Ok(ops)
    }

    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, LayerError> {
        let declared = data
            .get(..4)
            .ok_or_else(|| LayerError::Decompress("missing uncompressed size".to_owned()))?;
        let declared = u32::from_le_bytes(declared.try_into().expect("slice of length 4")) as usize;
        if declared > self.limits.max_entry_bytes {
            return Err(LayerError::DecompressedTooLarge {
                len: declared,
                max: self.limits.max_entry_bytes,
            });
        }
        // An LZ4 block expands at most 255-fold: a larger claim is a lie that would make us
        // allocate for nothing.
        let compressed = data.len() - 4;
        if declared > compressed.saturating_mul(255) {
            return Err(LayerError::Decompress(format!(
                "declared size {declared} is more than {compressed} compressed bytes can hold"
            )));
        }
        lz4_flex::decompress_size_prepended(data).map_err(|e| LayerError::Decompress(e.to_string()))
    }

    fn check_count(&self, count: usize) -> Result<(), LayerError> {
        if count > self.limits.max_ops {
            return Err(LayerError::TooManyOps {
                count,
                max: self.limits.max_ops,
            });
        }
        Ok(())
    }
}

fn first_byte(bytes: &[u8], expected: u8) -> Result<(), LayerError> {
    match bytes.first() {
        None => Err(LayerError::Empty),
        Some(&found) if found != expected => Err(LayerError::FirstByte { found, expected }),
        Some(_) => Ok(()),
    }
}

fn check_magic(found: u32) -> Result<(), LayerError> {
    if found == ENTRY_MAGIC {
        Ok(())
    } else {
        Err(LayerError::Magic {
            found,
            expected: ENTRY_MAGIC,
        })
    }
}

fn protobuf(e: prost::DecodeError) -> LayerError {
    LayerError::Protobuf(e.to_string())
}

/// Decodes one encoded `Operation`: the fast path for canonical puts and deletes, else prost
/// and the checked conversion (which also reports every error).
fn decode_op(index: usize, bytes: &[u8]) -> Result<Op, LayerError> {
    match fast::decode_op(bytes) {
        Some(op) => Ok(op),
        None => decode_op_general(index, bytes),
    }
}

/// The general path alone (the fuzz property compares the fast path with it).
pub(crate) fn decode_op_general(index: usize, bytes: &[u8]) -> Result<Op, LayerError> {
    let op = wire::Operation::decode(bytes).map_err(protobuf)?;
    op_from_wire(op).map_err(|source| LayerError::Invalid { index, source })
}

fn decode_as_operation(bytes: &[u8]) -> Result<Op, LayerError> {
    first_byte(bytes, OPERATION_FIRST_BYTE)?;
    decode_op(0, bytes)
}

fn decode_as_legacy(bytes: &[u8]) -> Result<Op, LayerError> {
    first_byte(bytes, LEGACY_FIRST_BYTE)?;
    legacy::decode(bytes)
}

/// Decodes `bytes` with the default [`Decoder`] (default [`Limits`]).
///
/// # Errors
/// As [`Decoder::decode`].
pub fn decode_entry(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    Decoder::default().decode(bytes)
}

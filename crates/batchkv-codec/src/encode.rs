//! Encoding operations into entries (and into the bare operation form).

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::convert::op_to_wire;
use crate::error::EncodeError;
use crate::limits::Limits;
use crate::op::Op;
use crate::wire::{self, ENTRY_MAGIC, entry::Payload};

/// Whether an encoder compresses batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Never compress (the default: see docs/BENCHMARKS.md for why).
    #[default]
    None,
    /// Compress a batch with LZ4 when its encoding is at least `min_bytes` long, and keep the
    /// compressed form only when it is smaller.
    Lz4 {
        /// Smallest encoded batch worth compressing.
        min_bytes: usize,
    },
}

/// Encodes operations into entries, with limits and optional compression.
///
/// # Examples
/// ```
/// use batchkv_codec::{Encoder, Format, Op, Put, decode_entry};
/// use bytes::BytesMut;
///
/// let ops = vec![Op::Put(Put::new("k1", "v1")), Op::Put(Put::new("k2", "v2"))];
/// let mut buf = BytesMut::new();
/// Encoder::default().encode_entry(&ops, &mut buf)?;
/// let decoded = decode_entry(&buf)?;
/// assert_eq!(decoded.format, Format::Entry);
/// assert_eq!(decoded.ops, ops);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    limits: Limits,
    compression: Compression,
}

impl Encoder {
    /// An encoder with the given limits and compression.
    pub fn new(limits: Limits, compression: Compression) -> Self {
        Encoder {
            limits,
            compression,
        }
    }

    /// The limits this encoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends one entry holding `ops` to `buf`: the `single` form for one op, `batch` for more.
    ///
    /// Returns the number of bytes written. On error `buf` is left untouched.
    ///
    /// # Errors
    /// [`EncodeError::Empty`] for no ops, [`EncodeError::Invalid`] for an op that breaks
    /// [`Op::validate`], [`EncodeError::TooManyOps`] / [`EncodeError::TooLarge`] past the limits.
    pub fn encode_entry(&self, ops: &[Op], buf: &mut BytesMut) -> Result<usize, EncodeError> {
        let entry = self.wire_entry(ops)?;
        let len = entry.encoded_len();
        if len > self.limits.max_entry_bytes {
            return Err(EncodeError::TooLarge {
                len,
                max: self.limits.max_entry_bytes,
            });
        }
        buf.reserve(len);
        entry
            .encode(buf)
            .expect("BytesMut grows, so encoding cannot run out of space");
        Ok(len)
    }

    /// The exact length [`Encoder::encode_entry`] writes for `ops` without compression.
    ///
    /// Validation is not run; for invalid ops the result is the length they would take.
    pub fn encoded_len(&self, ops: &[Op]) -> usize {
        match ops {
            [] => 0,
            [op] => entry_len(op_to_wire(op).encoded_len()),
            ops => entry_len(batch_len(ops)),
        }
    }

    fn wire_entry(self, ops: &[Op]) -> Result<wire::Entry, EncodeError> {
        if ops.is_empty() {
            return Err(EncodeError::Empty);
        }
        if ops.len() > self.limits.max_ops {
            return Err(EncodeError::TooManyOps {
                count: ops.len(),
                max: self.limits.max_ops,
            });
        }
        for (index, op) in ops.iter().enumerate() {
            op.validate()
                .map_err(|source| EncodeError::Invalid { index, source })?;
        }
        let payload = if let [op] = ops {
            Payload::Single(op_to_wire(op))
        } else {
            let batch = wire::Batch {
                operations: ops.iter().map(op_to_wire).collect(),
            };
            self.maybe_compress(batch)?
        };
        Ok(wire::Entry {
            magic: ENTRY_MAGIC,
            payload: Some(payload),
        })
    }

    fn maybe_compress(&self, batch: wire::Batch) -> Result<Payload, EncodeError> {
        let Compression::Lz4 { min_bytes } = self.compression else {
            return Ok(Payload::Batch(batch));
        };
        let raw_len = batch.encoded_len();
        if raw_len < min_bytes {
            return Ok(Payload::Batch(batch));
        }
        // The decoder bounds the declared uncompressed size by the entry limit; refuse here what
        // it would refuse there.
        if raw_len > self.limits.max_entry_bytes {
            return Err(EncodeError::TooLarge {
                len: raw_len,
                max: self.limits.max_entry_bytes,
            });
        }
        let raw = batch.encode_to_vec();
        let compressed = lz4_flex::compress_prepend_size(&raw);
        if compressed.len() < raw.len() {
            Ok(Payload::Lz4Batch(Bytes::from(compressed)))
        } else {
            Ok(Payload::Batch(batch))
        }
    }
}

/// Length of a length-delimited field with a one-byte key.
fn len_field(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Entry length around a payload message of `payload_len` bytes: magic field, then payload field.
fn entry_len(payload_len: usize) -> usize {
    5 + len_field(payload_len)
}

fn batch_len(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| len_field(op_to_wire(op).encoded_len()))
        .sum()
}

/// Appends one entry holding `ops` to `buf` with the default [`Encoder`].
///
/// # Errors
/// As [`Encoder::encode_entry`].
pub fn encode_entry(ops: &[Op], buf: &mut BytesMut) -> Result<usize, EncodeError> {
    Encoder::default().encode_entry(ops, buf)
}

/// The exact length [`encode_entry`] writes for `ops`, without encoding.
pub fn encoded_len(ops: &[Op]) -> usize {
    Encoder::default().encoded_len(ops)
}

/// Appends `op` as a bare `Operation` message (the second format) to `buf`.
///
/// New writers should use [`encode_entry`]; this form exists because earlier writers proposed a
/// single op this way, and the decoder still reads it.
///
/// # Errors
/// [`EncodeError::Invalid`] for an op that breaks [`Op::validate`].
pub fn encode_operation(op: &Op, buf: &mut BytesMut) -> Result<usize, EncodeError> {
    op.validate()
        .map_err(|source| EncodeError::Invalid { index: 0, source })?;
    let wire = op_to_wire(op);
    let len = wire.encoded_len();
    buf.reserve(len);
    wire.encode(buf)
        .expect("BytesMut grows, so encoding cannot run out of space");
    Ok(len)
}

impl Op {
    /// Encoded size of this op inside a batch entry (its share of [`encoded_len`]).
    ///
    /// The batcher uses it to bound batches by bytes.
    pub fn encoded_len(&self) -> usize {
        len_field(op_to_wire(self).encoded_len())
    }
}

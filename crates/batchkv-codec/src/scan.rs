//! A minimal protobuf wire scanner, used to count a batch's operations before decoding it.
//!
//! It only walks field headers and lengths, allocates nothing, and rejects what protobuf rejects
//! (bad varints, truncated fields, groups, field number 0).

use crate::error::LayerError;

/// Wire type of length-delimited fields.
pub(crate) const LEN: u8 = 2;

/// Iterates the top-level fields of a message: `(field number, wire type, payload)`, where the
/// payload is the field's bytes for length-delimited fields and empty otherwise.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

pub(crate) fn fields(msg: &[u8]) -> Fields<'_> {
    Fields { rest: msg }
}

fn malformed(what: &str) -> LayerError {
    LayerError::Protobuf(what.to_owned())
}

#[inline]
pub(crate) fn varint(buf: &mut &[u8]) -> Result<u64, LayerError> {
    if let Some((&byte, rest)) = buf.split_first()
        && byte < 0x80
    {
        *buf = rest;
        return Ok(u64::from(byte));
    }
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf
            .split_first()
            .ok_or_else(|| malformed("truncated varint"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return Err(malformed("varint overflows 64 bits"));
            }
            return Ok(value);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

#[inline]
pub(crate) fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], LayerError> {
    let n = usize::try_from(n).map_err(|_| malformed("field length overflows"))?;
    if buf.len() < n {
        return Err(malformed("field runs past the end of the buffer"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, u8, &'a [u8]), LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut step = || {
            let key = varint(&mut self.rest)?;
            let wire_type = (key & 7) as u8;
            let number =
                u32::try_from(key >> 3).map_err(|_| malformed("field number overflows"))?;
            if number == 0 {
                return Err(malformed("field number 0"));
            }
            let payload = match wire_type {
                0 => {
                    varint(&mut self.rest)?;
                    &[][..]
                }
                1 => {
                    take(&mut self.rest, 8)?;
                    &[][..]
                }
                LEN => {
                    let len = varint(&mut self.rest)?;
                    take(&mut self.rest, len)?
                }
                5 => {
                    take(&mut self.rest, 4)?;
                    &[][..]
                }
                other => return Err(malformed(&format!("unsupported wire type {other}"))),
            };
            Ok((number, wire_type, payload))
        };
        let item = step();
        if item.is_err() {
            // Stop after the first error: the rest cannot be framed.
            self.rest = &[];
        }
        Some(item)
    }
}

/// Counts the occurrences of length-delimited field `number` (below 16) in `msg`.
///
/// The common message is nothing but that field (a batch is `repeated Operation operations = 1`),
/// so a tight loop handles it; anything else falls back to the general field walk.
pub(crate) fn count_len_fields(msg: &[u8], number: u32) -> Result<usize, LayerError> {
    debug_assert!((1..16).contains(&number), "one-byte keys only");
    let key = ((number << 3) | u32::from(LEN)) as u8;
    let mut rest = msg;
    let mut count = 0;
    while let Some((&first, tail)) = rest.split_first() {
        if first != key {
            return count_len_fields_slow(msg, number);
        }
        rest = tail;
        let len = varint(&mut rest)?;
        take(&mut rest, len)?;
        count += 1;
    }
    Ok(count)
}

fn count_len_fields_slow(msg: &[u8], number: u32) -> Result<usize, LayerError> {
    let mut count = 0;
    for field in fields(msg) {
        let (n, wire_type, _) = field?;
        if n == number && wire_type == LEN {
            count += 1;
        }
    }
    Ok(count)
}

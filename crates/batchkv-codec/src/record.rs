//! The record batchkv-mvcc stores per revision in its `kv` column family (docs/FORMAT.md,
//! "Storage layout"). Pure, like the rest of the crate, so it can be fuzzed without RocksDB.
//!
//! One flag byte (`1` put, `2` delete), then as unsigned LEB128 varints the create revision's
//! main and sub, the version, the lease (as `u64`), the previous change's revision main and sub
//! (the value this change replaced or deleted; 0, 0 for a creation), the key's length, then the
//! key and the value (the rest of the record). A delete's record holds only the key and the
//! previous revision: its other numbers are zero and its value is empty.

/// A record as decoded from the `kv` column family, borrowing its key and value from the
/// bytes (recovery reads millions of records and keeps only the numbers and the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// A delete (the key's generation ends here) rather than a put.
    pub tombstone: bool,
    /// The create revision `(main, sub)` of the key's generation (0 for a delete).
    pub created: (i64, i64),
    /// The key's version after this change (0 for a delete).
    pub version: i64,
    /// The attached lease (0: none).
    pub lease: i64,
    /// The revision `(main, sub)` of the change before this one (the value it replaced or
    /// deleted), `(0, 0)` for a creation: watch replay reads `prev_kv` from it.
    pub prev: (i64, i64),
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for a delete).
    pub value: &'a [u8],
}

const PUT: u8 = 1;
const DELETE: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Appends the record of a put to `out`.
pub fn encode_put(
    out: &mut Vec<u8>,
    created: (i64, i64),
    version: i64,
    lease: i64,
    prev: (i64, i64),
    key: &[u8],
    value: &[u8],
) {
    out.reserve(1 + 7 * 10 + key.len() + value.len());
    out.push(PUT);
    put_varint(out, created.0 as u64);
    put_varint(out, created.1 as u64);
    put_varint(out, version as u64);
    put_varint(out, lease as u64);
    put_varint(out, prev.0 as u64);
    put_varint(out, prev.1 as u64);
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Appends the record of a delete to `out`.
pub fn encode_delete(out: &mut Vec<u8>, prev: (i64, i64), key: &[u8]) {
    out.reserve(26 + key.len());
    out.push(DELETE);
    for _ in 0..4 {
        put_varint(out, 0);
    }
    put_varint(out, prev.0 as u64);
    put_varint(out, prev.1 as u64);
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
}

/// Decodes a record; `None` if the bytes are not one (never panics).
pub fn decode_record(b: &[u8]) -> Option<Record<'_>> {
    let tombstone = match *b.first()? {
        PUT => false,
        DELETE => true,
        _ => return None,
    };
    let mut pos = 1;
    let mut nums = [0u64; 7];
    for n in &mut nums {
        *n = get_varint(b, &mut pos)?;
    }
    let signed = |v: u64| i64::try_from(v).ok();
    let [c_main, c_sub, version, lease, p_main, p_sub, key_len] = nums;
    let created = (signed(c_main)?, signed(c_sub)?);
    let version = signed(version)?;
    let lease = lease as i64;
    let prev = (signed(p_main)?, signed(p_sub)?);
    let key_len = usize::try_from(key_len).ok()?;
    let key_end = pos.checked_add(key_len)?;
    let key = b.get(pos..key_end)?;
    let value = &b[key_end..];
    // A delete carries only its key and previous revision; a put has been created and changed
    // at least once.
    let valid = if tombstone {
        created == (0, 0) && version == 0 && lease == 0 && value.is_empty()
    } else {
        version >= 1
    };
    if !valid || key.is_empty() {
        return None;
    }
    Some(Record {
        tombstone,
        created,
        version,
        lease,
        prev,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip() {
        let mut b = Vec::new();
        encode_put(&mut b, (300, 2), 7, -5, (299, 1), b"key", b"value");
        let r = decode_record(&b).expect("a put record");
        assert!(!r.tombstone);
        assert_eq!(r.created, (300, 2));
        assert_eq!((r.version, r.lease, r.prev), (7, -5, (299, 1)));
        assert_eq!((r.key, r.value), (&b"key"[..], &b"value"[..]));

        let mut d = Vec::new();
        encode_delete(&mut d, (300, 0), b"gone");
        let r = decode_record(&d).expect("a delete record");
        assert!(r.tombstone);
        assert_eq!(r.prev, (300, 0));
        assert_eq!(r.key, b"gone");
        assert!(r.value.is_empty());
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(decode_record(b""), None);
        assert_eq!(decode_record(&[9, 0, 0, 0, 0, 0, 0, 0]), None);
        // Key length beyond the record.
        assert_eq!(decode_record(&[PUT, 1, 0, 1, 0, 0, 0, 5, b'a']), None);
        // A varint that never ends.
        assert_eq!(decode_record(&[PUT, 0xff, 0xff, 0xff]), None);
        // A delete with a value, or with numbers; a put with version 0; an empty key.
        assert_eq!(
            decode_record(&[DELETE, 0, 0, 0, 0, 0, 0, 1, b'k', b'v']),
            None
        );
        assert_eq!(decode_record(&[DELETE, 5, 0, 0, 0, 0, 0, 1, b'k']), None);
        assert_eq!(decode_record(&[PUT, 2, 0, 0, 0, 0, 0, 1, b'k']), None);
        assert_eq!(decode_record(&[PUT, 2, 0, 1, 0, 0, 0, 0]), None);
        // The well-formed versions of the last ones decode.
        assert!(decode_record(&[DELETE, 0, 0, 0, 0, 5, 0, 1, b'k']).is_some());
        assert!(decode_record(&[PUT, 2, 0, 1, 0, 0, 0, 1, b'k']).is_some());
    }
}

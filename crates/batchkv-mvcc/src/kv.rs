//! Key-values as etcd returns them, watch events, and the record stored per revision.
//!
//! Storage layout (docs/FORMAT.md): the `kv` column family maps a revision's 17-byte key
//! ([`Revision::to_bytes`]) to a record: one flag byte (`1` put, `2` delete), then as unsigned
//! LEB128 varints the create revision's main and sub, the version and the lease (as `u64`), the
//! key's length, then the key and the value (the rest). A delete's record holds only the key:
//! its numbers are zero and its value is empty.

use bytes::Bytes;

use crate::revision::Revision;

/// A key as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Revision of the last creation.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Changes since creation (1 after creation).
    pub version: i64,
    /// The value (empty for `keys_only` reads).
    pub value: Bytes,
    /// The attached lease, 0 for none.
    pub lease: i64,
}

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, published after the entry that made it has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete only `key` and `mod_revision` (the delete's
    /// revision) are set, as etcd.
    pub kv: KeyValue,
    /// Where the previous value lives, if the key existed before this change: read it with
    /// [`crate::Mvcc::kv_at`] (watchers asking for `prev_kv` do; the write path does not pay
    /// for it).
    pub prev: Option<Revision>,
}

/// A record as decoded from the `kv` column family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) tombstone: bool,
    pub(crate) created: Revision,
    pub(crate) version: i64,
    pub(crate) lease: i64,
    pub(crate) key: Bytes,
    pub(crate) value: Bytes,
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
pub(crate) fn encode_put(
    out: &mut Vec<u8>,
    created: Revision,
    version: i64,
    lease: i64,
    key: &[u8],
    value: &[u8],
) {
    out.reserve(1 + 5 * 10 + key.len() + value.len());
    out.push(PUT);
    put_varint(out, created.main as u64);
    put_varint(out, created.sub as u64);
    put_varint(out, version as u64);
    put_varint(out, lease as u64);
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Appends the record of a delete to `out`.
pub(crate) fn encode_delete(out: &mut Vec<u8>, key: &[u8]) {
    out.reserve(6 + key.len());
    out.push(DELETE);
    for _ in 0..4 {
        put_varint(out, 0);
    }
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
}

/// Decodes a record; `None` if it is not one.
pub(crate) fn decode(b: &[u8]) -> Option<Record> {
    let tombstone = match *b.first()? {
        PUT => false,
        DELETE => true,
        _ => return None,
    };
    let mut pos = 1;
    let mut num = || -> Option<i64> { i64::try_from(get_varint(b, &mut pos)?).ok() };
    let created = Revision::new(num()?, num()?);
    let version = num()?;
    let lease = get_varint(b, &mut pos)? as i64;
    let key_len = usize::try_from(get_varint(b, &mut pos)?).ok()?;
    let key_end = pos.checked_add(key_len)?;
    let key = b.get(pos..key_end)?;
    let value = &b[key_end..];
    if tombstone && !value.is_empty() {
        return None;
    }
    Some(Record {
        tombstone,
        created,
        version,
        lease,
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip() {
        let mut b = Vec::new();
        encode_put(&mut b, Revision::new(300, 2), 7, -5, b"key", b"value");
        let r = decode(&b).expect("a put record");
        assert!(!r.tombstone);
        assert_eq!(r.created, Revision::new(300, 2));
        assert_eq!((r.version, r.lease), (7, -5));
        assert_eq!((&r.key[..], &r.value[..]), (&b"key"[..], &b"value"[..]));

        let mut d = Vec::new();
        encode_delete(&mut d, b"gone");
        let r = decode(&d).expect("a delete record");
        assert!(r.tombstone);
        assert_eq!(&r.key[..], b"gone");
        assert!(r.value.is_empty());
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[9, 0, 0, 0, 0, 0]), None);
        // Key length beyond the record.
        assert_eq!(decode(&[PUT, 1, 0, 1, 0, 5, b'a']), None);
        // A varint that never ends.
        assert_eq!(decode(&[PUT, 0xff, 0xff, 0xff]), None);
        // A delete with a value.
        assert_eq!(decode(&[DELETE, 0, 0, 0, 0, 1, b'k', b'v']), None);
    }
}

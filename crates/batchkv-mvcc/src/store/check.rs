//! [`Mvcc::hash_kv`] (etcd's HashKV, byte for byte) and [`Mvcc::check`] (every invariant of the
//! stored state, checked against storage read in full with checksums verified).

use std::collections::{BTreeMap, HashMap};

use batchkv_codec::record;
use batchkv_engine::{KeyRange, VerifyReport};
use bytes::Bytes;

use super::{
    META_APPLIED, META_COMPACTED, META_CURRENT, META_FINISHED, META_FLOOR_PREFIX, META_NEXT_LEASE,
    META_PRUNED, Mvcc,
};
use crate::error::{MvccError, OpError};
use crate::revision::Revision;
use crate::tree_index::KeySpan;

/// etcd's HashKV of the key space up to a revision ([`Mvcc::hash_kv`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvHash {
    /// CRC-32C (Castagnoli) over the key space's history up to `revision`, exactly as etcd's
    /// `HashKV` computes it: two stores with the same history (etcd's or batchkv's) agree.
    pub hash: u32,
    /// The revision hashed (etcd's `hash_revision`).
    pub revision: i64,
    /// The compacted revision (etcd's `compact_revision`; -1: never compacted).
    pub compact_revision: i64,
    /// The store's current revision when hashed (etcd's header revision).
    pub current_revision: i64,
}

/// What [`Mvcc::check`] read and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The current revision.
    pub current_revision: i64,
    /// The compacted revision (-1: never).
    pub compacted_revision: i64,
    /// The highest pruning floor (0: never pruned).
    pub pruned_revision: i64,
    /// The applied log index.
    pub applied_index: u64,
    /// Records in the `kv` column family.
    pub records: u64,
    /// Keys that exist at the current revision.
    pub live_keys: u64,
    /// Leases, and the keys attached to them.
    pub leases: u64,
    /// Keys attached to a lease.
    pub leased_keys: u64,
    /// What the engine read with block checksums verified.
    pub verified: VerifyReport,
    /// etcd's HashKV at the current revision.
    pub hash: KvHash,
}

/// gogoproto's marshalling of etcd's `mvccpb.KeyValue` (proto3: zero fields are left out).
fn etcd_key_value(out: &mut Vec<u8>, rec: &record::Record<'_>, mod_revision: i64) {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes_field(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
        if !b.is_empty() {
            out.push(tag);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }
    fn int_field(out: &mut Vec<u8>, tag: u8, v: i64) {
        if v != 0 {
            out.push(tag);
            varint(out, v as u64);
        }
    }
    out.clear();
    // etcd writes a delete's record as `KeyValue { key }` alone.
    bytes_field(out, 0x0a, rec.key);
    if rec.tombstone {
        return;
    }
    int_field(out, 0x10, rec.created.0);
    int_field(out, 0x18, mod_revision);
    int_field(out, 0x20, rec.version);
    bytes_field(out, 0x2a, rec.value);
    int_field(out, 0x30, rec.lease);
}

impl Mvcc {
    /// etcd's `HashKV` at revision `rev` (0: the current one): a CRC-32C (Castagnoli) over the
    /// bucket name `key`, then, in revision order, every stored change at or below `rev` that a
    /// read can still reach, each as etcd stores it: the 17-byte revision (with a `t` appended
    /// for a delete) and the marshalled `mvccpb.KeyValue` (key, create and mod revision,
    /// version, value, lease; a delete carries only its key). Changes at or below the compacted
    /// revision count only while they are still the key's value at `rev` (etcd's
    /// `kvindex.Keep(rev)`), so the hash does not depend on how far physical compaction got;
    /// changes below a key's pruning floor ([`Mvcc::prune_old_versions`]) do not count either.
    ///
    /// Two copies of the same history hash equal at every revision: replicas, a checkpoint and
    /// its source, a store and a real etcd that applied the same requests (tested).
    ///
    /// # Errors
    /// etcd's `ErrCompacted` for `rev` at or below the compacted revision, `ErrFutureRev` above
    /// the current one; storage errors; [`MvccError::Corrupt`] for a record that does not
    /// decode.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        let (current, compacted) = (self.current, self.compacted);
        if rev > 0 && rev <= compacted {
            return Err(OpError::Compacted {
                requested: rev,
                compacted,
            }
            .into());
        }
        if rev > current {
            return Err(OpError::FutureRevision {
                requested: rev,
                current,
            }
            .into());
        }
        let rev = if rev <= 0 { current } else { rev };
        // etcd's quirk: with no key live at `rev` (an empty `Keep`), every stored change at or
        // below the compacted revision counts; those are the ones compaction keeps.
        let keep_is_empty = self.index.range(KeySpan::From(&[]), rev, 1).count == 0;
        let mut hasher = CRC32C.digest();
        hasher.update(b"key");
        let mut value = Vec::new();
        let mut failure = None;
        let range = KeyRange::between(
            Revision::new(0, 0).to_bytes().to_vec(),
            Revision::new(rev + 1, 0).to_bytes().to_vec(),
        );
        self.engine.scan(self.kv_cf, &range, false, |k, v| {
            let (Some(r), Some(rec)) = (Revision::from_bytes(k), record::decode_record(v)) else {
                failure = Some(self.corrupt(format!("kv record {k:02x?} does not decode")));
                return false;
            };
            if r.main < self.index.floor(rec.key) {
                return true;
            }
            let counts = r.main > compacted
                || if keep_is_empty {
                    !rec.tombstone && self.index.holds(rec.key, r)
                } else {
                    self.index.get(rec.key, rev).map(|(f, _)| f.modified) == Some(r)
                };
            if counts {
                hasher.update(k);
                if rec.tombstone {
                    hasher.update(b"t");
                }
                etcd_key_value(&mut value, &rec, r.main);
                hasher.update(&value);
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(KvHash {
            hash: hasher.finalize(),
            revision: rev,
            compact_revision: compacted,
            current_revision: current,
        })
    }

    /// Checks the stored state whole, as etcd's hash check does for a member, and returns what
    /// it read. In order:
    ///
    /// 1. every entry of every column family is read with RocksDB's block checksums verified
    ///    (a mismatch is RocksDB's corruption error naming the file and offset);
    /// 2. the `meta` values decode and agree (compacted ≤ current, finished compaction ≤
    ///    compacted, pruned ≤ current, every key floor decodes);
    /// 3. every `kv` record decodes, lies at or below the current revision, and the revisions
    ///    above the compacted and pruned ones are contiguous (every main revision has a record,
    ///    its sub revisions count up from 0): no entry is half there;
    /// 4. the key index agrees with the records: each key's newest record is what a read at the
    ///    current revision finds (revision, create revision, version), or a delete for a key
    ///    that reads find absent;
    /// 5. leases and keys agree: every lease a live key names exists and lists that key, every
    ///    key a lease lists is live and names it;
    /// 6. [`Mvcc::hash_kv`] at the current revision.
    ///
    /// # Errors
    /// The first problem found: a storage (checksum) error, or [`MvccError::Corrupt`] saying
    /// what does not agree with what.
    pub fn check(&self) -> Result<CheckReport, MvccError> {
        let verified = self.engine.verify_checksums()?;
        // 2. meta.
        for key in [
            META_CURRENT,
            META_APPLIED,
            META_COMPACTED,
            META_FINISHED,
            META_PRUNED,
            META_NEXT_LEASE,
        ] {
            self.meta_i64(key)?;
        }
        let stored_current = self.meta_i64(META_CURRENT)?.unwrap_or(1);
        if stored_current != self.current {
            return Err(self.corrupt(format!(
                "meta current_revision is {stored_current}, the store is at {}",
                self.current
            )));
        }
        let finished = self.meta_i64(META_FINISHED)?.unwrap_or(-1);
        if self.compacted > self.current || finished > self.compacted {
            return Err(self.corrupt(format!(
                "meta revisions disagree: current {}, compacted {}, finished compaction {finished}",
                self.current, self.compacted
            )));
        }
        if self.pruned > self.current {
            return Err(self.corrupt(format!(
                "meta pruned_revision {} is above the current revision {}",
                self.pruned, self.current
            )));
        }
        let mut bad_floor = None;
        self.engine.scan(
            self.meta_cf,
            &KeyRange::prefix(META_FLOOR_PREFIX.to_vec()),
            false,
            |k, v| match <[u8; 8]>::try_from(v) {
                Ok(b) if i64::from_be_bytes(b) <= self.current => true,
                _ => {
                    bad_floor = Some(String::from_utf8_lossy(k).into_owned());
                    false
                }
            },
        )?;
        if let Some(k) = bad_floor {
            return Err(self.corrupt(format!(
                "meta {k} is not a revision at or below the current one"
            )));
        }

        // 3. records: decode, bounds, contiguity.
        // History is complete above the compacted and pruned revisions; revision 1 is a new
        // store's, with no record.
        let history_start = self.compacted.max(self.pruned);
        let first_complete = (history_start + 1).max(2);
        let mut records = 0u64;
        let mut newest: HashMap<Bytes, (Revision, bool, i64)> = HashMap::new();
        let mut expect: Option<Revision> = None;
        let mut failure = None;
        self.engine
            .scan(self.kv_cf, &KeyRange::all(), false, |k, v| {
                let problem = (|| {
                    let r = Revision::from_bytes(k)
                        .ok_or_else(|| format!("kv key {k:02x?} is not a revision"))?;
                    let rec = record::decode_record(v)
                        .ok_or_else(|| format!("the record at revision {r} does not decode"))?;
                    if r.main > self.current || r.main < 2 {
                        return Err(format!(
                            "record at revision {r} is outside the history 2..={}",
                            self.current
                        ));
                    }
                    if r.main > history_start {
                        let want = match expect {
                            None => Revision::new(first_complete, 0),
                            Some(prev) if r.main == prev.main => {
                                Revision::new(prev.main, prev.sub + 1)
                            }
                            Some(prev) => Revision::new(prev.main + 1, 0),
                        };
                        if r != want {
                            return Err(format!(
                                "history has a gap: record {r} follows {}, {want} is missing \
                                 (half an entry, or lost records)",
                                expect.map_or("the start".to_owned(), |p| p.to_string())
                            ));
                        }
                        expect = Some(r);
                    }
                    records += 1;
                    newest.insert(
                        Bytes::copy_from_slice(rec.key),
                        (r, rec.tombstone, rec.lease),
                    );
                    Ok(())
                })();
                match problem {
                    Ok(()) => true,
                    Err(p) => {
                        failure = Some(self.corrupt(p));
                        false
                    }
                }
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let last_main = expect.map_or(first_complete - 1, |r| r.main);
        if last_main != self.current.max(first_complete - 1) {
            return Err(self.corrupt(format!(
                "the records end at revision {last_main}, but meta current_revision is {}",
                self.current
            )));
        }

        // 4. index against records.
        let live = self.index.range(KeySpan::From(&[]), self.current, 0);
        let mut cached = HashMap::new();
        let live_keys: BTreeMap<Bytes, crate::key_index::Found> = live
            .keys
            .into_iter()
            .map(|(k, f, c)| {
                let k = Bytes::from(k);
                if let Some(c) = c {
                    cached.insert(k.clone(), c);
                }
                (k, f)
            })
            .collect();
        for (key, (r, tombstone, _)) in &newest {
            match (live_keys.get(key), tombstone) {
                (Some(f), false) if f.modified == *r => {}
                (None, true) => {}
                (found, _) => {
                    return Err(self.corrupt(format!(
                        "index and records disagree on key {:?}: newest record {r}{}, the index \
                         reads {}",
                        String::from_utf8_lossy(key),
                        if *tombstone { " (a delete)" } else { "" },
                        found.map_or("no value".to_owned(), |f| format!(
                            "the value of revision {}",
                            f.modified
                        ))
                    )));
                }
            }
        }
        for (key, f) in &live_keys {
            if !newest.contains_key(key) {
                return Err(self.corrupt(format!(
                    "the index reads key {:?} at revision {} but no record of it is stored",
                    String::from_utf8_lossy(key),
                    f.modified
                )));
            }
            // The record the index points at holds the same generation and version.
            let Some(raw) = self.engine.get(self.kv_cf, &f.modified.to_bytes())? else {
                return Err(self.corrupt(format!("record {} is missing", f.modified)));
            };
            let rec = record::decode_record(&raw)
                .ok_or_else(|| self.corrupt(format!("record {} does not decode", f.modified)))?;
            if rec.key != key.as_ref()
                || Revision::new(rec.created.0, rec.created.1) != f.created
                || rec.version != f.version
            {
                return Err(self.corrupt(format!(
                    "record {} (key {:?}, created {}.{}, version {}) disagrees with the index \
                     (key {:?}, created {}, version {})",
                    f.modified,
                    String::from_utf8_lossy(rec.key),
                    rec.created.0,
                    rec.created.1,
                    rec.version,
                    String::from_utf8_lossy(key),
                    f.created,
                    f.version
                )));
            }
            // The value cache holds a copy of the record's value and lease.
            if let Some(c) = cached.get(key)
                && (c.value != rec.value || c.lease != rec.lease)
            {
                return Err(self.corrupt(format!(
                    "the value cache holds a value of key {:?} ({} bytes, lease {:x}) other than \
                     its record at revision {} ({} bytes, lease {:x})",
                    String::from_utf8_lossy(key),
                    c.value.len(),
                    c.lease,
                    f.modified,
                    rec.value.len(),
                    rec.lease
                )));
            }
        }

        // 5. leases.
        let mut leased_keys = 0u64;
        for (key, (_, tombstone, lease)) in &newest {
            if *tombstone || *lease == 0 {
                continue;
            }
            leased_keys += 1;
            let listed = self
                .leases
                .leases
                .get(lease)
                .is_some_and(|l| l.keys.contains(key));
            if !listed {
                return Err(self.corrupt(format!(
                    "key {:?} names lease {lease:x}, which {}",
                    String::from_utf8_lossy(key),
                    if self.leases.leases.contains_key(lease) {
                        "does not list it"
                    } else {
                        "does not exist"
                    }
                )));
            }
        }
        for (id, l) in &self.leases.leases {
            for key in &l.keys {
                let named = newest
                    .get(key)
                    .is_some_and(|(_, tombstone, lease)| !tombstone && lease == id);
                if !named {
                    return Err(self.corrupt(format!(
                        "lease {id:x} lists key {:?}, whose newest record does not name it",
                        String::from_utf8_lossy(key)
                    )));
                }
            }
        }

        Ok(CheckReport {
            current_revision: self.current,
            compacted_revision: self.compacted,
            pruned_revision: self.pruned,
            applied_index: self.applied,
            records,
            live_keys: live_keys.len() as u64,
            leases: self.leases.leases.len() as u64,
            leased_keys,
            verified,
            hash: self.hash_kv(0)?,
        })
    }
}

/// CRC-32C, etcd's `crc32.MakeTable(crc32.Castagnoli)`.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

//! [`Mvcc::snapshot_image`] and [`Mvcc::restore_image`]: the whole stored state as bytes (a
//! replica's snapshot, raft's log compaction) and its atomic installation.
//!
//! The image is every key of every column family the engine opened (`kv`: the records,
//! `meta`: the revision counters, the applied index, compaction and pruning state, `lease`:
//! the leases), read from one RocksDB snapshot, so it is the state at one applied index.
//!
//! Format (integers big-endian): the magic `BKVIMG01`; the applied index (u64); the number of
//! column families (u32); for each, its name (u32 length + bytes) and its number of pairs
//! (u64), then the pairs (u32 key length, key, u32 value length, value); last, the CRC-32C of
//! everything before it (u32).

use batchkv_engine::{Engine, EngineSnapshot, KeyRange, WriteMode};

use super::{CompactionStatus, Mvcc};
use crate::error::MvccError;
use crate::lease::LeaseTable;
use crate::tree_index::TreeIndex;

const MAGIC: &[u8; 8] = b"BKVIMG01";

/// CRC-32C, as the rest of the crate.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One column family of a decoded image.
struct CfImage<'a> {
    name: &'a str,
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

/// A decoded image, borrowing the bytes.
struct Image<'a> {
    applied: u64,
    cfs: Vec<CfImage<'a>>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), MvccError> {
    let len = u32::try_from(b.len())
        .map_err(|_| MvccError::Internal(format!("a {} byte key or value in an image", b.len())))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A reader over the image's bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn decode(data: &[u8]) -> Result<Image<'_>, String> {
    let Some(body_len) = data.len().checked_sub(4) else {
        return Err(format!("{} bytes, too short", data.len()));
    };
    let (body, crc) = data.split_at(body_len);
    let stored = u32::from_be_bytes(crc.try_into().map_err(|_| "no checksum".to_string())?);
    let computed = CRC32C.checksum(body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    let mut r = Reader { buf: body };
    let truncated = || "truncated".to_string();
    if r.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err("not a batchkv store image (bad magic)".into());
    }
    let applied = r.u64().ok_or_else(truncated)?;
    let ncf = r.u32().ok_or_else(truncated)?;
    let mut cfs = Vec::new();
    for _ in 0..ncf {
        let name = std::str::from_utf8(r.bytes().ok_or_else(truncated)?)
            .map_err(|_| "a column family name is not UTF-8".to_string())?;
        let n = r.u64().ok_or_else(truncated)?;
        // Each pair takes at least 8 bytes: a count above that is a lie, not an allocation.
        if n > (r.buf.len() / 8) as u64 {
            return Err(format!(
                "column family {name}: {n} pairs announced, too few bytes"
            ));
        }
        let mut pairs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = r.bytes().ok_or_else(truncated)?;
            let v = r.bytes().ok_or_else(truncated)?;
            pairs.push((k, v));
        }
        cfs.push(CfImage { name, pairs });
    }
    if !r.buf.is_empty() {
        return Err(format!("{} trailing bytes", r.buf.len()));
    }
    Ok(Image { applied, cfs })
}

/// The image of the store whose engine is `engine` as `snap` sees it (one RocksDB snapshot of
/// it, every column family), with the applied index read from the same snapshot: what
/// [`Mvcc::snapshot_image`] returns, for a caller that holds no [`Mvcc`]. It runs on any thread
/// while entries are applied (a raft member builds its snapshots on a worker thread, off the
/// node thread): the snapshot fixes the state, and the applied index inside it says which.
///
/// # Errors
/// A RocksDB read error; [`MvccError::Corrupt`] if the stored applied index is malformed.
pub fn store_image(
    engine: &Engine,
    snap: &EngineSnapshot<'_>,
) -> Result<(u64, Vec<u8>), MvccError> {
    let names = engine.column_families().to_vec();
    let meta_cf = engine.cf(super::META_CF)?;
    let applied = match snap.get(meta_cf, super::META_APPLIED)? {
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| MvccError::Corrupt {
                path: engine.path().to_path_buf(),
                what: "meta applied_index is not 8 bytes".into(),
            })?,
        None => 0,
    };
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&applied.to_be_bytes());
    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
    for name in &names {
        let cf = engine.cf(name)?;
        put_bytes(&mut out, name.as_bytes())?;
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_be_bytes());
        let mut n = 0u64;
        let mut failed = None;
        snap.scan(cf, &KeyRange::all(), false, |k, v| {
            let step = put_bytes(&mut out, k).and_then(|()| put_bytes(&mut out, v));
            if let Err(e) = step {
                failed = Some(e);
                return false;
            }
            n += 1;
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        out[count_at..count_at + 8].copy_from_slice(&n.to_be_bytes());
    }
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok((applied, out))
}

impl Mvcc {
    /// The whole stored state at [`Mvcc::applied_index`] as one image (every column family,
    /// read from one RocksDB snapshot), for [`Mvcc::restore_image`] on a replica. The image is
    /// held in memory: its size is the store's live data (about `Status`'s db size in use).
    ///
    /// The caller makes sure no entry is applied meanwhile (a raft state machine's own thread
    /// calls it between entries); the applied index stored in the image is the one read.
    ///
    /// # Errors
    /// A RocksDB read error.
    pub fn snapshot_image(&self) -> Result<Vec<u8>, MvccError> {
        let snap = self.engine.snapshot();
        store_image(&self.engine, &snap).map(|(_, image)| image)
    }

    /// The applied index an image ([`Mvcc::snapshot_image`]) was taken at, after checking its
    /// checksum and layout.
    ///
    /// # Errors
    /// [`MvccError::Corrupt`]: not an intact image.
    pub fn image_applied_index(&self, data: &[u8]) -> Result<u64, MvccError> {
        decode(data)
            .map(|i| i.applied)
            .map_err(|e| self.corrupt(format!("store image: {e}")))
    }

    /// Replaces the whole stored state with `data` (an image from [`Mvcc::snapshot_image`]),
    /// atomically and durably, and sets the applied index to `applied` (at or above the
    /// image's: a raft snapshot's index may be past the last entry the store applied, when only
    /// empty entries or configuration changes follow it): ONE WriteBatch deletes every key of
    /// every column family and writes the image's and the applied index, fsynced, so a crash
    /// leaves the old state or the new one, never a mix. Then the in-memory state (the index, the
    /// revision counters, the leases, pending compaction) is rebuilt from storage exactly as
    /// [`Mvcc::open`] does; leases get their whole TTL again, as at a restart.
    ///
    /// Watchers stay registered: each one catches up from the restored storage, from the
    /// revision it expects next (the events in between, read from storage, in order), or,
    /// if that revision is compacted in the image, gets etcd's compacted cancel (etcd moves
    /// its watchers to unsynced after a snapshot restore, with the same outcome).
    ///
    /// The image is checked (checksum, layout, column families) before anything is written.
    ///
    /// # Errors
    /// [`MvccError::Corrupt`] for a damaged image, one with a column family this store does
    /// not have, or one past `applied` (nothing written); a storage error writing it (nothing written); an error
    /// rebuilding from the written state (the store must be reopened).
    pub fn restore_image(&mut self, data: &[u8], applied: u64) -> Result<(), MvccError> {
        let image = decode(data).map_err(|e| self.corrupt(format!("store image: {e}")))?;
        if image.applied > applied {
            return Err(self.corrupt(format!(
                "store image at applied index {} installed as of index {applied}",
                image.applied
            )));
        }
        let mut cfs = Vec::with_capacity(image.cfs.len());
        for c in &image.cfs {
            let cf = self.engine.cf(c.name).map_err(|_| {
                self.corrupt(format!(
                    "store image has column family {}, which this store does not open",
                    c.name
                ))
            })?;
            cfs.push(cf);
        }
        let mut batch = self.engine.begin_batch();
        for name in self.engine.column_families() {
            let cf = self.engine.cf(name)?;
            // Keys have no upper bound: [empty, last) by range, then the last one itself.
            let mut last = None;
            self.engine.scan(cf, &KeyRange::all(), true, |k, _| {
                last = Some(k.to_vec());
                false
            })?;
            if let Some(last) = last {
                batch.delete_range(cf, &[], &last)?;
                batch.delete(cf, &last)?;
            }
        }
        for (c, cf) in image.cfs.iter().zip(cfs) {
            for (k, v) in &c.pairs {
                batch.put(cf, k, v)?;
            }
        }
        let stored = i64::try_from(applied)
            .map_err(|_| MvccError::Internal(format!("applied index {applied} out of range")))?;
        batch.put(self.meta_cf, super::META_APPLIED, &stored.to_be_bytes())?;
        batch.commit(WriteMode::SYNC)?;
        self.reload()?;
        if self.applied != applied {
            return Err(self.corrupt(format!(
                "store image installed as of index {applied} reads back applied index {}",
                self.applied
            )));
        }
        Ok(())
    }

    /// Rebuilds the in-memory state from storage, as [`Mvcc::open`] does, keeping the
    /// watchers: they catch up from storage.
    fn reload(&mut self) -> Result<(), MvccError> {
        let hub = std::sync::Arc::clone(&self.hub);
        let removed = self.status.removed;
        self.index = TreeIndex::with_value_cache(self.config.value_cache_bytes);
        self.leases = LeaseTable::default();
        self.pending = None;
        self.status = CompactionStatus {
            removed,
            ..CompactionStatus::default()
        };
        let outcome = self.recover();
        // `recover` makes a new hub; the watchers live in the old one.
        self.hub = hub;
        outcome?;
        self.hub.restored(self.current, self.history_start());
        tracing::info!(
            path = %self.engine.path().display(),
            revision = self.current,
            compacted = self.compacted,
            applied_index = self.applied,
            keys = self.index.len(),
            watchers = self.hub.watcher_count(),
            "mvcc restored from an image"
        );
        Ok(())
    }
}

//! Reads: the committed state (index + `kv` column family), optionally overlaid with the
//! changes of the entry being prepared, so every op of an entry sees the ops before it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use batchkv_codec::{Range, SortOrder, SortTarget};
use batchkv_engine::{Cf, Engine};
use bytes::Bytes;

use crate::error::{MvccError, OpError};
use crate::key_index::{Cached, Found};
use crate::kv::KeyValue;
use crate::lease::LeaseTable;
use crate::response::RangeResponse;
use crate::revision::Revision;
use crate::tree_index::{KeySpan, TreeIndex};
use batchkv_codec::record;

/// Where a key's state at some revision is: committed (index says which revision to read)
/// or written earlier in the entry being prepared.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    Stored(Found),
    /// A stored latest value the index's value cache holds: no storage read.
    Cached(Found, Cached),
    Pending {
        rev: Revision,
        kv: KeyValue,
    },
}

impl Lookup {
    pub(crate) fn modified(&self) -> Revision {
        match self {
            Lookup::Stored(f) | Lookup::Cached(f, _) => f.modified,
            Lookup::Pending { rev, .. } => *rev,
        }
    }

    pub(crate) fn create_revision(&self) -> i64 {
        match self {
            Lookup::Stored(f) | Lookup::Cached(f, _) => f.created.main,
            Lookup::Pending { kv, .. } => kv.create_revision,
        }
    }

    pub(crate) fn created(&self) -> Revision {
        match self {
            Lookup::Stored(f) | Lookup::Cached(f, _) => f.created,
            Lookup::Pending { kv, .. } => Revision::new(kv.create_revision, 0),
        }
    }

    pub(crate) fn version(&self) -> i64 {
        match self {
            Lookup::Stored(f) | Lookup::Cached(f, _) => f.version,
            Lookup::Pending { kv, .. } => kv.version,
        }
    }
}

/// The changes of the entry being prepared, per key, oldest first: `Some` a put, `None` a
/// delete. The created revision of a pending put is kept exactly in `created`.
pub(crate) type Overlay = HashMap<Bytes, Vec<Pending>>;

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) rev: Revision,
    pub(crate) created: Revision,
    pub(crate) kv: Option<KeyValue>,
}

pub(crate) struct View<'a> {
    pub(crate) index: &'a TreeIndex,
    pub(crate) engine: &'a Engine,
    pub(crate) kv_cf: Cf,
    pub(crate) path: &'a Path,
    /// Changes of the entry being prepared (empty for committed reads).
    pub(crate) overlay: Overlay,
    pub(crate) leases: &'a LeaseTable,
}

/// What a key looked like: found, or `None` if absent.
pub(crate) type Item = (Bytes, Lookup);

impl View<'_> {
    /// The overlay's say on `key` at `at`: `None` if the entry has not changed it by then.
    fn pending_at(&self, key: &[u8], at: i64) -> Option<Option<Lookup>> {
        let history = self.overlay.get(key)?;
        let p = history.iter().rev().find(|p| p.rev.main <= at)?;
        Some(p.kv.as_ref().map(|kv| Lookup::Pending {
            rev: p.rev,
            kv: kv.clone(),
        }))
    }

    /// The exact created revision of what `lookup` describes.
    pub(crate) fn created_of(&self, key: &[u8], lookup: &Lookup) -> Revision {
        match lookup {
            Lookup::Stored(f) | Lookup::Cached(f, _) => f.created,
            Lookup::Pending { rev, .. } => self
                .overlay
                .get(key)
                .and_then(|h| h.iter().find(|p| p.rev == *rev))
                .map_or(lookup.created(), |p| p.created),
        }
    }

    /// `key` as of revision `at`.
    pub(crate) fn lookup(&self, key: &[u8], at: i64) -> Option<Lookup> {
        match self.pending_at(key, at) {
            Some(decided) => decided,
            None => self.index.get(key, at).map(stored),
        }
    }

    /// The keys of `span` live at `at` in key order, at most `limit` (0: all), and how many
    /// there are in all.
    pub(crate) fn scan(&self, span: KeySpan<'_>, at: i64, limit: usize) -> (Vec<Item>, usize) {
        let (items, count, _) = self.scan_checked(span, at, limit);
        (items, count)
    }

    /// [`View::scan`], with the pruning floor the read runs into (0: none).
    pub(crate) fn scan_checked(
        &self,
        span: KeySpan<'_>,
        at: i64,
        limit: usize,
    ) -> (Vec<Item>, usize, i64) {
        // One key: one lookup, not a pass over every key the entry has touched (which made
        // an entry of many single-key deletes quadratic).
        let touched: Vec<&Bytes> = match span {
            KeySpan::One(k) => self
                .overlay
                .get_key_value(k)
                .map(|(k, _)| k)
                .into_iter()
                .collect(),
            _ => self
                .overlay
                .keys()
                .filter(|k| span_contains(span, k))
                .collect(),
        };
        if touched.is_empty() {
            let r = self.index.range(span, at, limit);
            let items = r
                .keys
                .into_iter()
                .map(|(k, f, c)| (Bytes::from(k), stored((f, c))))
                .collect();
            return (items, r.count, r.pruned);
        }
        let base = self.index.range(span, at, 0);
        let pruned = base.pruned;
        let mut merged: BTreeMap<Bytes, Lookup> = base
            .keys
            .into_iter()
            .map(|(k, f, c)| (Bytes::from(k), stored((f, c))))
            .collect();
        for key in touched {
            match self.pending_at(key, at) {
                Some(Some(l)) => {
                    merged.insert(key.clone(), l);
                }
                Some(None) => {
                    merged.remove(key);
                }
                None => {}
            }
        }
        let count = merged.len();
        let take = if limit == 0 { count } else { limit };
        (merged.into_iter().take(take).collect(), count, pruned)
    }

    fn corrupt(&self, what: String) -> MvccError {
        MvccError::Corrupt {
            path: self.path.to_path_buf(),
            what,
        }
    }

    /// The key-value `f` describes, from its record (`None`: storage lacks it). Only the value
    /// is copied out of the record.
    fn kv_of_record(
        &self,
        key: Bytes,
        f: &Found,
        record: Option<&[u8]>,
    ) -> Result<KeyValue, MvccError> {
        let raw = record.ok_or_else(|| {
            self.corrupt(format!(
                "the index holds revision {} of key {:?} but storage has no record of it",
                f.modified,
                String::from_utf8_lossy(&key)
            ))
        })?;
        let rec = record::decode_record(raw).ok_or_else(|| {
            self.corrupt(format!("undecodable record at revision {}", f.modified))
        })?;
        Ok(KeyValue {
            key,
            create_revision: f.created.main,
            mod_revision: f.modified.main,
            version: f.version,
            value: Bytes::copy_from_slice(rec.value),
            lease: rec.lease,
        })
    }

    /// The full key-value of one item.
    pub(crate) fn fetch(&self, key: &Bytes, lookup: &Lookup) -> Result<KeyValue, MvccError> {
        match lookup {
            Lookup::Pending { kv, .. } => Ok(kv.clone()),
            Lookup::Cached(f, c) => Ok(cached_kv(key.clone(), f, c)),
            Lookup::Stored(f) => self.fetch_stored(key.clone(), f),
        }
    }

    /// The full key-value of a stored item: one point read, the record lent by RocksDB.
    pub(crate) fn fetch_stored(&self, key: Bytes, f: &Found) -> Result<KeyValue, MvccError> {
        self.engine
            .get_with(self.kv_cf, &f.modified.to_bytes(), |raw| {
                self.kv_of_record(key, f, raw)
            })?
    }

    /// The full key-values of `items`, in order, reading storage once for all of them: one
    /// batched multi-get of their records in revision order (the column family's key order,
    /// which spares RocksDB its sort and visits each SST block once), each record lent by
    /// RocksDB and only its value copied.
    pub(crate) fn fetch_all(&self, items: Vec<Item>) -> Result<Vec<KeyValue>, MvccError> {
        // (revision, position in `items`) of every stored item, in revision order.
        let mut stored: Vec<(Revision, usize)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, l))| match l {
                Lookup::Stored(f) => Some((f.modified, i)),
                Lookup::Cached(..) | Lookup::Pending { .. } => None,
            })
            .collect();
        stored.sort_unstable();
        let keys: Vec<[u8; Revision::ENCODED_LEN]> =
            stored.iter().map(|(rev, _)| rev.to_bytes()).collect();
        let mut slots: Vec<Option<Item>> = items.into_iter().map(Some).collect();
        let mut out: Vec<Option<KeyValue>> = vec![None; slots.len()];
        let mut failed = None;
        self.engine.multi_get_with(self.kv_cf, &keys, |j, raw| {
            let i = stored[j].1;
            if failed.is_some() {
                return;
            }
            if let Some((key, Lookup::Stored(f))) = slots[i].take() {
                match self.kv_of_record(key, &f, raw) {
                    Ok(kv) => out[i] = Some(kv),
                    Err(e) => failed = Some(e),
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(out
            .into_iter()
            .zip(slots)
            .map(|(kv, slot)| match (kv, slot) {
                (Some(kv), _) => kv,
                (None, Some((_, Lookup::Pending { kv, .. }))) => kv,
                (None, Some((key, Lookup::Cached(f, c)))) => cached_kv(key, &f, &c),
                (None, _) => unreachable!("every stored item was read or the read failed"),
            })
            .collect())
    }

    /// etcd's range read. `current` is the revision reads see by default (and the header's),
    /// `compacted` the compacted revision (-1: none).
    pub(crate) fn range(
        &self,
        r: &Range,
        current: i64,
        compacted: i64,
    ) -> Result<Result<RangeResponse, OpError>, MvccError> {
        if r.key.is_empty() {
            return Ok(Err(OpError::EmptyKey));
        }
        let at = match check_read_revision(r.revision, current, compacted) {
            Ok(at) => at,
            Err(e) => return Ok(Err(e)),
        };
        let span = KeySpan::etcd(&r.key, &r.range_end);
        // As etcd: only an explicit order or a revision filter reads the whole range; a sort
        // target without an order sorts just the first limit + 1 keys.
        let filtered = r.sort_order != SortOrder::None
            || r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        let limit = usize::try_from(r.limit).unwrap_or(0);
        let hint = if filtered || limit == 0 { 0 } else { limit + 1 };
        let (mut items, count, pruned) = self.scan_checked(span, at, hint);
        if pruned > 0 {
            // Pruned history reads as compacted history does.
            return Ok(Err(OpError::Compacted {
                requested: at,
                compacted: pruned,
            }));
        }
        let mut resp = RangeResponse {
            revision: current,
            count: count as i64,
            ..RangeResponse::default()
        };
        if r.count_only {
            return Ok(Ok(resp));
        }
        items.retain(|(_, l)| {
            let (m, c) = (l.modified().main, l.create_revision());
            !(r.max_mod_revision != 0 && m > r.max_mod_revision
                || r.min_mod_revision != 0 && m < r.min_mod_revision
                || r.max_create_revision != 0 && c > r.max_create_revision
                || r.min_create_revision != 0 && c < r.min_create_revision)
        });
        // etcd sorts ascending when a target other than the key is named without an order.
        let order = match (r.sort_order, r.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (o, _) => o,
        };
        let mut kvs = if r.sort_target == SortTarget::Value && order != SortOrder::None {
            let mut kvs = self.fetch_all(items)?;
            sort_by(&mut kvs, order, |a, b| a.value.cmp(&b.value));
            kvs
        } else {
            match r.sort_target {
                _ if order == SortOrder::None => {}
                SortTarget::Key => sort_by(&mut items, order, |a, b| a.0.cmp(&b.0)),
                SortTarget::Version => {
                    sort_by(&mut items, order, |a, b| a.1.version().cmp(&b.1.version()))
                }
                SortTarget::Create => sort_by(&mut items, order, |a, b| {
                    a.1.create_revision().cmp(&b.1.create_revision())
                }),
                SortTarget::Mod | SortTarget::Value => sort_by(&mut items, order, |a, b| {
                    a.1.modified().main.cmp(&b.1.modified().main)
                }),
            }
            if limit > 0 && items.len() > limit {
                items.truncate(limit + 1);
            }
            self.fetch_all(items)?
        };
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            resp.more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        resp.kvs = kvs;
        Ok(Ok(resp))
    }
}

/// The lookup of a stored key: from the value cache when it holds the value read.
fn stored((found, cached): (Found, Option<Cached>)) -> Lookup {
    match cached {
        Some(c) => Lookup::Cached(found, c),
        None => Lookup::Stored(found),
    }
}

/// The key-value a cached lookup describes.
pub(crate) fn cached_kv(key: Bytes, f: &Found, c: &Cached) -> KeyValue {
    KeyValue {
        key,
        create_revision: f.created.main,
        mod_revision: f.modified.main,
        version: f.version,
        value: c.value.clone(),
        lease: c.lease,
    }
}

/// A stable sort ascending or descending (equal elements keep their key order, as etcd's
/// small-slice insertion sort leaves them).
fn sort_by<T>(v: &mut [T], order: SortOrder, cmp: impl Fn(&T, &T) -> Ordering) {
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => v.sort_by(cmp),
        SortOrder::Descend => v.sort_by(|a, b| cmp(b, a)),
    }
}

/// The revision a read at `requested` (0: latest) reads, or etcd's error.
pub(crate) fn check_read_revision(
    requested: i64,
    current: i64,
    compacted: i64,
) -> Result<i64, OpError> {
    if requested > current {
        return Err(OpError::FutureRevision { requested, current });
    }
    let at = if requested <= 0 { current } else { requested };
    if at < compacted {
        return Err(OpError::Compacted {
            requested: at,
            compacted,
        });
    }
    Ok(at)
}

pub(crate) fn span_contains(span: KeySpan<'_>, key: &[u8]) -> bool {
    match span {
        KeySpan::One(k) => key == k,
        KeySpan::From(k) => key >= k,
        KeySpan::Between(k, e) => key >= k && key < e,
    }
}

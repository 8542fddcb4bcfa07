//! All keys' indexes in key order, as etcd's `treeIndex`: point and range reads at a revision
//! cost O(log n + k) and never touch storage.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::key_index::{Found, KeyIndex, KeyIndexError};
use crate::revision::Revision;

/// The keys a range read covers, in etcd's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpan<'a> {
    /// Exactly `key` (etcd: empty `range_end`).
    One(&'a [u8]),
    /// Every key from `key` on (etcd: `range_end` = `\0`).
    From(&'a [u8]),
    /// `[key, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    /// etcd's encoding: an empty `range_end` is one key, `\0` is every key from `key` on.
    pub fn etcd(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::One(key),
            [0] => KeySpan::From(key),
            end => KeySpan::Between(key, end),
        }
    }

    fn bounds(self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match self {
            KeySpan::One(k) => (Bound::Included(k), Bound::Included(k)),
            KeySpan::From(k) => (Bound::Included(k), Bound::Unbounded),
            KeySpan::Between(k, e) => (Bound::Included(k), Bound::Excluded(e)),
        }
    }

    fn is_empty(self) -> bool {
        matches!(self, KeySpan::Between(k, e) if k >= e)
    }
}

/// What a range read found: up to `limit` keys in key order, and how many matched in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys (at most `limit`, when a limit is given), with what each looked like.
    pub keys: Vec<(Vec<u8>, Found)>,
    /// Every key that matched, whatever the limit (etcd's `count`).
    pub count: usize,
    /// The highest pruning floor above `at` among the keys of the span (0: none): the read
    /// cannot be answered, their history at `at` is gone.
    pub pruned: i64,
}

impl RangeResult {
    /// Whether the limit cut the result (etcd's `more`).
    pub fn more(&self) -> bool {
        self.count > self.keys.len()
    }
}

/// The index of every key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    /// An empty index.
    pub fn new() -> Self {
        TreeIndex::default()
    }

    /// Keys with any history left.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has history left.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Records a put of `key` at `rev`.
    ///
    /// # Errors
    /// As [`KeyIndex::put`].
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Records a delete of `key` at `rev`.
    ///
    /// # Errors
    /// [`KeyIndexError::NotLive`] if the key does not exist; as [`KeyIndex::tombstone`].
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.keys
            .get_mut(key)
            .ok_or(KeyIndexError::NotLive)?
            .tombstone(rev)
    }

    /// Rebuilding from storage: see [`KeyIndex::restore`].
    ///
    /// # Errors
    /// As [`KeyIndex::restore`].
    pub fn restore(
        &mut self,
        key: &[u8],
        created: Revision,
        modified: Revision,
        version: i64,
    ) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.restore(created, modified, version),
            None => {
                let mut ki = KeyIndex::new();
                ki.restore(created, modified, version)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Rebuilding from storage, one record at a time in revision order, with one search of the
    /// tree: a put extends the key's live generation or starts one ([`KeyIndex::restore`]); a
    /// delete ends it, and is ignored if the key is not live (its generation was compacted).
    ///
    /// # Errors
    /// As [`KeyIndex::put`] and [`KeyIndex::restore`].
    pub fn replay(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: Revision,
        version: i64,
    ) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => match (tombstone, ki.is_live()) {
                (true, true) => ki.tombstone(rev),
                (true, false) => Ok(()),
                (false, true) => ki.put(rev),
                (false, false) => ki.restore(created, rev, version),
            },
            None if tombstone => Ok(()),
            None => {
                let mut ki = KeyIndex::new();
                ki.restore(created, rev, version)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Whether `key` is live now.
    pub fn is_live(&self, key: &[u8]) -> bool {
        self.keys.get(key).is_some_and(KeyIndex::is_live)
    }

    /// Whether storage must keep the value of `key` at `rev`.
    pub fn holds(&self, key: &[u8], rev: Revision) -> bool {
        self.keys.get(key).is_some_and(|ki| ki.holds(rev))
    }

    /// The pruning floor of `key` (0: none; see [`KeyIndex::prune`]).
    pub fn floor(&self, key: &[u8]) -> i64 {
        self.keys.get(key).map_or(0, KeyIndex::floor)
    }

    /// Restores a floor on open; keys without history are skipped.
    pub fn set_floor(&mut self, key: &[u8], floor: i64) {
        if let Some(ki) = self.keys.get_mut(key) {
            ki.set_floor(floor);
        }
    }

    /// Keeps the newest `keep` revisions of every key ([`KeyIndex::prune`]). Returns the keys
    /// pruned with their new floors, and the revisions whose records storage may delete.
    pub fn prune(&mut self, keep: usize) -> (Vec<(Vec<u8>, i64)>, Vec<Revision>) {
        let mut floors = Vec::new();
        let mut removed = Vec::new();
        for (key, ki) in &mut self.keys {
            if ki.prune(keep, &mut removed) {
                floors.push((key.clone(), ki.floor()));
            }
        }
        (floors, removed)
    }

    /// `key` as of revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key)?.get(at)
    }

    /// The keys of `span` that existed at revision `at`, in key order; at most `limit` of them
    /// (0: no limit), with the total count.
    pub fn range(&self, span: KeySpan<'_>, at: i64, limit: usize) -> RangeResult {
        let mut out = RangeResult::default();
        if span.is_empty() {
            return out;
        }
        for (key, ki) in self.keys.range::<[u8], _>(span.bounds()) {
            if ki.floor() > at {
                out.pruned = out.pruned.max(ki.floor());
            }
            if let Some(found) = ki.get(at) {
                out.count += 1;
                if limit == 0 || out.keys.len() < limit {
                    out.keys.push((key.clone(), found));
                }
            }
        }
        out
    }

    /// Compacts every key at `at`; keys with nothing left leave the index. Returns the
    /// revisions whose values storage must keep: every other stored revision at or below `at`
    /// may be deleted.
    pub fn compact(&mut self, at: i64) -> BTreeSet<Revision> {
        let mut keep = BTreeSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }
}

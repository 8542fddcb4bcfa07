//! All keys' indexes in key order, as etcd's `treeIndex`: point and range reads at a revision
//! cost O(log n + k) and never touch storage.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::key_index::{Found, KeyIndex, KeyIndexError};
use crate::revision::Revision;

/// The keys a range read covers, in etcd's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// Exactly `key` (etcd: empty `range_end`).
    One(&'a [u8]),
    /// Every key from `key` on (etcd: `range_end` = `\0`).
    From(&'a [u8]),
    /// `[key, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    /// etcd's encoding: an empty `range_end` is one key, `\0` is every key from `key` on.
    pub(crate) fn etcd(key: &'a [u8], range_end: &'a [u8]) -> Self {
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
pub(crate) struct RangeResult {
    /// The keys (at most `limit`, when a limit is given), with what each looked like.
    pub(crate) keys: Vec<(Vec<u8>, Found)>,
    /// Every key that matched, whatever the limit (etcd's `count`).
    pub(crate) count: usize,
    /// The highest pruning floor above `at` among the keys of the span (0: none): the read
    /// cannot be answered, their history at `at` is gone.
    pub(crate) pruned: i64,
}

impl RangeResult {
    /// Whether the limit cut the result (etcd's `more`; reads compute it from the count).
    #[cfg(test)]
    pub(crate) fn more(&self) -> bool {
        self.count > self.keys.len()
    }
}

/// The index of every key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    /// An empty index.
    pub(crate) fn new() -> Self {
        TreeIndex::default()
    }

    /// Keys with any history left.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Records a put of `key` at `rev`.
    ///
    /// # Errors
    /// As [`KeyIndex::put`].
    pub(crate) fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
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
    pub(crate) fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.keys
            .get_mut(key)
            .ok_or(KeyIndexError::NotLive)?
            .tombstone(rev)
    }

    /// Rebuilding from storage, one record at a time in revision order, with one search of the
    /// tree: a put extends the key's live generation or starts one ([`KeyIndex::restore`]); a
    /// delete ends it, and is ignored if the key is not live (its generation was compacted).
    ///
    /// # Errors
    /// As [`KeyIndex::put`] and [`KeyIndex::restore`].
    pub(crate) fn replay(
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

    /// Whether storage must keep the value of `key` at `rev`.
    pub(crate) fn holds(&self, key: &[u8], rev: Revision) -> bool {
        self.keys.get(key).is_some_and(|ki| ki.holds(rev))
    }

    /// The pruning floor of `key` (0: none; see [`KeyIndex::prune`]).
    pub(crate) fn floor(&self, key: &[u8]) -> i64 {
        self.keys.get(key).map_or(0, KeyIndex::floor)
    }

    /// Restores a floor on open; keys without history are skipped.
    pub(crate) fn set_floor(&mut self, key: &[u8], floor: i64) {
        if let Some(ki) = self.keys.get_mut(key) {
            ki.set_floor(floor);
        }
    }

    /// Keeps the newest `keep` revisions of every key ([`KeyIndex::prune`]). Returns the keys
    /// pruned with their new floors, and the revisions whose records storage may delete.
    pub(crate) fn prune(&mut self, keep: usize) -> (Vec<(Vec<u8>, i64)>, Vec<Revision>) {
        let mut floors = Vec::new();
        let mut removed = Vec::new();
        for (key, ki) in &mut self.keys {
            if ki.prune(keep, &mut removed) {
                floors.push((key.clone(), ki.floor()));
            }
        }
        (floors, removed)
    }

    /// `key` as of revision `at`, after checking its pruning floor with the same search:
    /// `Err(floor)` when pruning removed the history a read at `at` needs.
    pub(crate) fn get_checked(&self, key: &[u8], at: i64) -> Result<Option<Found>, i64> {
        match self.keys.get(key) {
            None => Ok(None),
            Some(ki) if ki.floor() > at => Err(ki.floor()),
            Some(ki) => Ok(ki.get(at)),
        }
    }

    /// `key` as of revision `at`.
    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key)?.get(at)
    }

    /// The keys of `span` that existed at revision `at`, in key order; at most `limit` of them
    /// (0: no limit), with the total count.
    pub(crate) fn range(&self, span: KeySpan<'_>, at: i64, limit: usize) -> RangeResult {
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
    pub(crate) fn compact(&mut self, at: i64) -> BTreeSet<Revision> {
        let mut keep = BTreeSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }
}

#[cfg(test)]
mod tests {
    //! The tree index against a model: per-key histories replayed, ranges filtered by hand.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::{KeySpan, TreeIndex};
    use crate::key_index::Found;
    use crate::revision::Revision;

    /// One change per revision: (key, true for a put / false for a delete).
    type History = Vec<(Vec<u8>, bool)>;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(b'a'..b'e', 1..3)
    }

    /// Replays `history` (revision i + 2 for entry i, as a fresh etcd starts at 1) up to `at`.
    fn model(history: &History, at: i64) -> BTreeMap<Vec<u8>, Found> {
        let mut state: BTreeMap<Vec<u8>, Found> = BTreeMap::new();
        for (i, (k, put)) in history.iter().enumerate() {
            let rev = Revision::new(i as i64 + 2, 0);
            if rev.main > at {
                break;
            }
            if *put {
                let f = match state.get(k) {
                    Some(f) => Found {
                        modified: rev,
                        version: f.version + 1,
                        ..*f
                    },
                    None => Found {
                        modified: rev,
                        created: rev,
                        version: 1,
                    },
                };
                state.insert(k.clone(), f);
            } else {
                state.remove(k);
            }
        }
        state
    }

    fn in_span(k: &[u8], span: KeySpan<'_>) -> bool {
        match span {
            KeySpan::One(x) => k == x,
            KeySpan::From(x) => k >= x,
            KeySpan::Between(x, e) => k >= x && k < e,
        }
    }

    /// A valid history: deletes only of live keys.
    fn history() -> impl Strategy<Value = History> {
        prop::collection::vec((key(), prop::bool::weighted(0.7)), 1..60).prop_map(|steps| {
            let mut live = BTreeSet::new();
            steps
                .into_iter()
                .map(|(k, put)| {
                    let put = put || !live.contains(&k);
                    if put {
                        live.insert(k.clone());
                    } else {
                        live.remove(&k);
                    }
                    (k, put)
                })
                .collect()
        })
    }

    fn check_ranges(
        index: &TreeIndex,
        history: &History,
        from_rev: i64,
        spans: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), TestCaseError> {
        let last = history.len() as i64 + 1;
        for at in from_rev..=last + 1 {
            let state = model(history, at);
            for (key, end) in spans {
                let span = KeySpan::etcd(key, end);
                for limit in [0, 1, 3] {
                    let want: Vec<(Vec<u8>, Found)> = state
                        .iter()
                        .filter(|(k, _)| in_span(k, span))
                        .map(|(k, f)| (k.clone(), *f))
                        .collect();
                    let got = index.range(span, at, limit);
                    prop_assert_eq!(got.count, want.len(), "count of {:?} at {}", span, at);
                    let shown = if limit == 0 {
                        want.len()
                    } else {
                        limit.min(want.len())
                    };
                    prop_assert_eq!(
                        &got.keys[..],
                        &want[..shown],
                        "{:?} at {} limit {}",
                        span,
                        at,
                        limit
                    );
                    prop_assert_eq!(got.more(), shown < want.len());
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn ranges_at_every_revision_match_the_model(
            history in history(),
            spans in prop::collection::vec((key(), prop_oneof![Just(vec![]), Just(vec![0u8]), key()]), 1..5),
            compact_at in 0i64..70,
        ) {
            let mut index = TreeIndex::new();
            for (i, (k, put)) in history.iter().enumerate() {
                let rev = Revision::new(i as i64 + 2, 0);
                if *put {
                    index.put(k, rev).expect("put");
                } else {
                    index.tombstone(k, rev).expect("delete");
                }
            }
            check_ranges(&index, &history, 0, &spans)?;

            let keep = index.compact(compact_at);
            let at_compact = model(&history, compact_at);
            let expected: BTreeSet<Revision> = at_compact.values().map(|f| f.modified).collect();
            prop_assert_eq!(keep, expected, "storage keeps exactly what reads at {} see", compact_at);
            check_ranges(&index, &history, compact_at, &spans)?;
            // Keys dead at the end and last changed at or before the compaction are gone.
            let end = model(&history, i64::MAX);
            let last_change: BTreeMap<&Vec<u8>, i64> = history
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k, i as i64 + 2))
                .collect();
            let remaining = last_change
                .iter()
                .filter(|(k, last)| end.contains_key(**k) || **last > compact_at)
                .count();
            prop_assert_eq!(index.len(), remaining);
        }
    }

    #[test]
    fn etcd_range_end_conventions() {
        assert_eq!(KeySpan::etcd(b"a", b""), KeySpan::One(b"a"));
        assert_eq!(KeySpan::etcd(b"a", b"\0"), KeySpan::From(b"a"));
        assert_eq!(KeySpan::etcd(b"a", b"c"), KeySpan::Between(b"a", b"c"));
        let mut index = TreeIndex::new();
        index.put(b"b", Revision::new(2, 0)).expect("put");
        // An empty or inverted range matches nothing, as in etcd.
        assert_eq!(index.range(KeySpan::Between(b"c", b"a"), 2, 0).count, 0);
        assert_eq!(index.range(KeySpan::From(b"a"), 2, 0).count, 1);
        assert!(index.tombstone(b"zz", Revision::new(3, 0)).is_err());
    }
}

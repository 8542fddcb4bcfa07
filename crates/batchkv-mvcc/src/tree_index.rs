//! All keys' indexes in key order, as etcd's `treeIndex`: point and range reads at a revision
//! cost O(log n + k) and never touch storage.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;

use crate::key_index::{Cached, Found, KeyIndex, KeyIndexError};
use crate::revision::Revision;

/// What one cached value costs beside its bytes: the boxed [`Cached`] and its allocation.
const CACHED_OVERHEAD: usize = std::mem::size_of::<Cached>() + 16;

/// The memory a cached value of `len` bytes is accounted.
fn cached_cost(len: usize) -> usize {
    len + CACHED_OVERHEAD
}

/// `value` in `old`'s allocation when nobody else holds it and it fits, else in a new one.
fn refill(old: Bytes, value: &[u8]) -> Bytes {
    match old.try_into_mut() {
        Ok(mut buf) if buf.capacity() >= value.len() => {
            buf.clear();
            buf.extend_from_slice(value);
            buf.freeze()
        }
        _ => Bytes::copy_from_slice(value),
    }
}

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
    /// The keys (at most `limit`, when a limit is given), with what each looked like and, when
    /// the read is of a key's latest value and the value cache holds it, that value.
    pub(crate) keys: Vec<(Vec<u8>, Found, Option<Cached>)>,
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

/// The index of every key, and the value cache: each live key's latest value and lease, kept
/// beside its history while their total stays within a byte budget, so a read of the latest
/// state (most reads) is answered from memory without a storage read. The cache is a copy:
/// storage holds every value, and a key whose value did not fit is read from storage. A value
/// is cached when it is written (and when the index is rebuilt from storage) if the budget has
/// room, and leaves when the key changes again or is deleted: no eviction, no read-time
/// filling, so readers never write.
#[derive(Clone, Debug, Default)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// Bytes the cached values may take (0: no cache).
    cache_limit: usize,
    /// Bytes they take.
    cache_used: usize,
}

impl TreeIndex {
    /// An empty index without a value cache.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        TreeIndex::default()
    }

    /// An empty index whose value cache may hold `limit` bytes (0: none).
    pub(crate) fn with_value_cache(limit: usize) -> Self {
        TreeIndex {
            cache_limit: limit,
            ..TreeIndex::default()
        }
    }

    /// Bytes the value cache holds, and its budget.
    pub(crate) fn value_cache_bytes(&self) -> (usize, usize) {
        (self.cache_used, self.cache_limit)
    }

    /// Sets `ki`'s cached value to `latest` (the value and lease of its last revision), or
    /// drops it: the old value's bytes are given back first, and the new one is kept only if
    /// the budget has room. An update reuses the old value's allocation when no reader holds
    /// it and it is large enough (an update of a same-sized value allocates nothing).
    fn recache(limit: usize, used: &mut usize, ki: &mut KeyIndex, latest: Option<(&[u8], i64)>) {
        let old = ki.cached.as_ref().map_or(0, |c| cached_cost(c.value.len()));
        match latest {
            Some((value, lease)) if *used - old + cached_cost(value.len()) <= limit => {
                *used = *used - old + cached_cost(value.len());
                match &mut ki.cached {
                    Some(c) => {
                        c.value = refill(std::mem::take(&mut c.value), value);
                        c.lease = lease;
                    }
                    None => {
                        ki.cached = Some(Box::new(Cached {
                            value: Bytes::copy_from_slice(value),
                            lease,
                        }));
                    }
                }
            }
            _ => {
                *used -= old;
                ki.cached = None;
            }
        }
    }

    /// Keys with any history left.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Records a put of `key` at `rev`.
    ///
    /// # Errors
    /// As [`KeyIndex::put`].
    #[cfg(test)]
    pub(crate) fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.put_value(key, rev, None)
    }

    /// Records a put of `key` at `rev` whose value and lease are `latest` (cached if the
    /// budget has room; `None`: not cached).
    ///
    /// # Errors
    /// As [`KeyIndex::put`].
    pub(crate) fn put_value(
        &mut self,
        key: &[u8],
        rev: Revision,
        latest: Option<(&[u8], i64)>,
    ) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => {
                ki.put(rev)?;
                Self::recache(self.cache_limit, &mut self.cache_used, ki, latest);
                Ok(())
            }
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev)?;
                Self::recache(self.cache_limit, &mut self.cache_used, &mut ki, latest);
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
        let ki = self.keys.get_mut(key).ok_or(KeyIndexError::NotLive)?;
        ki.tombstone(rev)?;
        Self::recache(self.cache_limit, &mut self.cache_used, ki, None);
        Ok(())
    }

    /// Rebuilding from storage, one record at a time in revision order, with one search of the
    /// tree: a put extends the key's live generation or starts one ([`KeyIndex::restore`]); a
    /// delete ends it, and is ignored if the key is not live (its generation was compacted).
    ///
    /// # Errors
    /// As [`KeyIndex::put`] and [`KeyIndex::restore`].
    /// `latest` is a put's value and lease, for the value cache (`None` for a delete).
    pub(crate) fn replay(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: Revision,
        version: i64,
        latest: Option<(&[u8], i64)>,
    ) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => {
                match (tombstone, ki.is_live()) {
                    (true, true) => ki.tombstone(rev)?,
                    (true, false) => return Ok(()),
                    (false, true) => ki.put(rev)?,
                    (false, false) => ki.restore(created, rev, version)?,
                }
                Self::recache(self.cache_limit, &mut self.cache_used, ki, latest);
                Ok(())
            }
            None if tombstone => Ok(()),
            None => {
                let mut ki = KeyIndex::new();
                ki.restore(created, rev, version)?;
                Self::recache(self.cache_limit, &mut self.cache_used, &mut ki, latest);
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
    /// With what was found, the cached value when the read is of the key's latest value.
    pub(crate) fn get_checked(
        &self,
        key: &[u8],
        at: i64,
    ) -> Result<Option<(Found, Option<Cached>)>, i64> {
        match self.keys.get(key) {
            None => Ok(None),
            Some(ki) if ki.floor() > at => Err(ki.floor()),
            Some(ki) => Ok(ki.get(at).map(|f| (f, ki.cached_for(&f).cloned()))),
        }
    }

    /// `key` as of revision `at`, with the cached value when the read is of its latest value.
    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<(Found, Option<Cached>)> {
        let ki = self.keys.get(key)?;
        ki.get(at).map(|f| (f, ki.cached_for(&f).cloned()))
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
                    out.keys
                        .push((key.clone(), found, ki.cached_for(&found).cloned()));
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
        let used = &mut self.cache_used;
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            let gone = ki.is_empty();
            if gone && let Some(c) = ki.cached.take() {
                *used -= cached_cost(c.value.len());
            }
            !gone
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
                    let got_keys: Vec<(Vec<u8>, Found)> =
                        got.keys.iter().map(|(k, f, _)| (k.clone(), *f)).collect();
                    prop_assert_eq!(
                        &got_keys[..],
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The value cache never answers with a stale value: a read gets a cached value only
        /// when it reads the key's latest revision, and then it is that revision's value; the
        /// budget is never exceeded and is given back as values leave.
        #[test]
        fn cached_values_are_the_latest_and_within_budget(
            history in history(),
            budget in prop_oneof![Just(0usize), 60usize..400, Just(usize::MAX)],
            compact_at in 0i64..70,
        ) {
            let value_of = |rev: i64| format!("value-{rev}").into_bytes();
            let mut index = TreeIndex::with_value_cache(budget);
            for (i, (k, put)) in history.iter().enumerate() {
                let rev = Revision::new(i as i64 + 2, 0);
                if *put {
                    index.put_value(k, rev, Some((&value_of(rev.main), rev.main))).expect("put");
                } else {
                    index.tombstone(k, rev).expect("delete");
                }
                let (used, limit) = index.value_cache_bytes();
                prop_assert!(used <= limit);
            }
            let last = history.len() as i64 + 1;
            let latest = model(&history, last);
            let check = |index: &TreeIndex, from: i64| -> Result<(), TestCaseError> {
                for at in from..=last {
                    for (k, f, c) in index.range(KeySpan::From(b"a"), at, 0).keys {
                        if let Some(c) = c {
                            prop_assert_eq!(Some(f.modified), latest.get(&k).map(|l| l.modified));
                            prop_assert_eq!(&c.value[..], &value_of(f.modified.main)[..]);
                            prop_assert_eq!(c.lease, f.modified.main);
                        }
                    }
                }
                Ok(())
            };
            check(&index, 0)?;
            if budget == usize::MAX {
                // Unbounded: every live key's latest value is cached.
                let cached = index.range(KeySpan::From(b"a"), last, 0).keys.iter()
                    .filter(|(_, _, c)| c.is_some()).count();
                prop_assert_eq!(cached, latest.len());
            }
            index.compact(compact_at);
            check(&index, compact_at)?;
            // Deleting every live key gives every byte back.
            for (i, k) in latest.keys().enumerate() {
                index.tombstone(k, Revision::new(last + 1 + i as i64, 0)).expect("delete");
            }
            prop_assert_eq!(index.value_cache_bytes().0, 0);
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

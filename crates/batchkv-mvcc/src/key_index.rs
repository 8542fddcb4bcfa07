//! The in-memory history of one key, as etcd's `keyIndex`: the revisions at which it changed,
//! grouped into generations (a generation runs from a creation to a delete).
//!
//! It answers "what did this key look like at revision R" without touching storage: the
//! revision of the value to read, the create revision and the version. Compaction drops the
//! revisions no read at or above the compact revision can reach.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::revision::Revision;

/// The value and lease of a live key's latest revision, held in memory so reads of the latest
/// state skip storage (see `TreeIndex`'s value cache). A copy of what storage holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) value: Bytes,
    pub(crate) lease: i64,
}

/// One life of a key: created, changed, and (unless it is the last) ended by a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Changes in this generation so far (compaction does not lower it).
    pub(crate) version: i64,
    /// The creating revision.
    pub(crate) created: Revision,
    /// Revisions still held, oldest first; in a finished generation the last is the delete.
    pub(crate) revs: Vec<Revision>,
}

/// What [`KeyIndex::get`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// The revision whose value the key had (its mod revision).
    pub(crate) modified: Revision,
    /// The revision that created it.
    pub(crate) created: Revision,
    /// Its version at that point (1 after creation).
    pub(crate) version: i64,
}

/// Misuse of the index: the state machine applies only what its checks allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyIndexError {
    /// A revision not above the key's last one.
    #[error("revision {given} is not above the key's last revision {last}")]
    NotIncreasing {
        /// The revision given.
        given: Revision,
        /// The key's last revision.
        last: Revision,
    },
    /// A delete of a key that is not live.
    #[error("key is not live")]
    NotLive,
    /// A restore over a key that is live.
    #[error("key is live")]
    Live,
}

/// The history of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
    /// Reads below this revision are refused: [`KeyIndex::prune`] removed the history they
    /// need (0: nothing pruned).
    floor: i64,
    /// The value at `modified` while the key is live, when the tree's value cache holds it
    /// (managed by `TreeIndex`, which accounts its memory).
    pub(crate) cached: Option<Box<Cached>>,
}

impl KeyIndex {
    /// An index with no history.
    pub(crate) fn new() -> Self {
        KeyIndex::default()
    }

    /// The cached latest value, when a read at `found` reads it.
    pub(crate) fn cached_for(&self, found: &Found) -> Option<&Cached> {
        match &self.cached {
            Some(c) if found.modified == self.modified => Some(c),
            _ => None,
        }
    }

    /// Whether the key exists now.
    pub(crate) fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    /// Whether nothing is left (after compaction): the key can leave the tree.
    pub(crate) fn is_empty(&self) -> bool {
        self.generations.is_empty()
            || (self.generations.len() == 1 && self.generations[0].revs.is_empty())
    }

    fn check(&self, rev: Revision) -> Result<(), KeyIndexError> {
        if !self.generations.is_empty() && rev <= self.modified {
            return Err(KeyIndexError::NotIncreasing {
                given: rev,
                last: self.modified,
            });
        }
        Ok(())
    }

    /// Records a put at `rev` (creating the key if it is not live).
    ///
    /// # Errors
    /// [`KeyIndexError::NotIncreasing`] if `rev` is not above the last revision.
    pub(crate) fn put(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        self.check(rev)?;
        if self.generations.is_empty() {
            // Most keys never see a delete: one generation, allocated exactly.
            self.generations.reserve_exact(1);
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().expect("pushed above");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.version += 1;
        self.modified = rev;
        Ok(())
    }

    /// Records a delete at `rev`: the generation ends, and a new, empty one begins.
    ///
    /// # Errors
    /// [`KeyIndexError::NotLive`] if the key does not exist, or not-increasing as [`Self::put`].
    pub(crate) fn tombstone(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if !self.is_live() {
            return Err(KeyIndexError::NotLive);
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// Starts a generation while rebuilding from storage, whose oldest remaining revision is
    /// `modified`, created at `created` and at `version` then (compaction may have removed the
    /// revisions before it). The key must not be live.
    ///
    /// # Errors
    /// Not-increasing as [`Self::put`]; a key that is live cannot be restored over.
    pub(crate) fn restore(
        &mut self,
        created: Revision,
        modified: Revision,
        version: i64,
    ) -> Result<(), KeyIndexError> {
        self.check(modified)?;
        if self.is_live() {
            return Err(KeyIndexError::Live);
        }
        if self.generations.is_empty() {
            // Most keys never see a delete: one generation, allocated exactly.
            self.generations.reserve_exact(1);
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().expect("pushed above");
        g.created = created;
        g.version = version;
        g.revs.push(modified);
        self.modified = modified;
        Ok(())
    }

    /// The lowest revision reads of this key may ask for after pruning (0: any).
    pub(crate) fn floor(&self) -> i64 {
        self.floor
    }

    /// Raises the floor (restoring a pruned key's on open).
    pub(crate) fn set_floor(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
    }

    /// Keeps only the newest `keep` revisions (puts and deletes) of the key, appending the
    /// others to `removed`, and raises the floor to the oldest kept one: reads below it have
    /// lost their history. Returns whether anything was removed. `keep` 0 is treated as 1.
    pub(crate) fn prune(&mut self, keep: usize, removed: &mut Vec<Revision>) -> bool {
        let keep = keep.max(1);
        let total: usize = self.generations.iter().map(|g| g.revs.len()).sum();
        if total <= keep {
            return false;
        }
        let mut drop = total - keep;
        while drop > 0 && !self.generations.is_empty() {
            let g = &mut self.generations[0];
            let n = drop.min(g.revs.len());
            removed.extend(g.revs.drain(..n));
            drop -= n;
            if g.revs.is_empty() && self.generations.len() > 1 {
                self.generations.remove(0);
            } else if n == 0 {
                break;
            }
        }
        if let Some(first) = self.generations.iter().find_map(|g| g.revs.first()) {
            self.floor = self.floor.max(first.main);
        }
        true
    }

    /// Whether `rev` is still held (compaction has not dropped it): storage must keep its
    /// value.
    pub(crate) fn holds(&self, rev: Revision) -> bool {
        self.generations
            .iter()
            .any(|g| g.revs.binary_search(&rev).is_ok())
    }

    /// The generation holding `at`, if the key was live at `at`.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            // A finished generation ends with its delete: at or after it, the key is gone.
            if i != last && end.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key as of revision `at` (its state after every change with `main <= at`).
    pub(crate) fn get(&self, at: i64) -> Option<Found> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(Found {
            modified: g.revs[n],
            created: g.created,
            version: g.version - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Every revision held with `main >= from`, oldest first (what the model test checks
    /// compaction against).
    #[cfg(test)]
    pub(crate) fn since(&self, from: i64) -> Vec<Revision> {
        let mut out: Vec<Revision> = self
            .generations
            .iter()
            .flat_map(|g| g.revs.iter().copied())
            .filter(|r| r.main >= from)
            .collect();
        // A txn changes a key once, so one revision per main; keep the last if not.
        out.dedup_by_key(|r| r.main);
        out
    }

    /// Drops what no read at `at` or later can reach, keeping the latest revision at or below
    /// `at` of a live generation (its value is what reads at `at` see). Revisions whose values
    /// storage must keep are added to `keep`; every other held revision at or below `at` may be
    /// deleted from storage.
    pub(crate) fn compact(&mut self, at: i64, keep: &mut BTreeSet<Revision>) {
        if self.generations.is_empty() {
            return;
        }
        // The first generation that is still live at `at`, or created after it.
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let g = &self.generations[gen_idx];
            match g.revs.last() {
                Some(tomb) if tomb.main > at => break,
                _ => gen_idx += 1,
            }
        }
        // The loop stopped at a generation still live at `at` (its delete is later) or at the
        // last one, so keeping its latest revision at or below `at` keeps the value reads see.
        // (etcd also drops a generation left holding only its delete; that cannot happen here:
        // a generation kept for its delete after `at` also holds the revision before it.)
        let g = &mut self.generations[gen_idx];
        if let Some(i) = g.revs.iter().rposition(|r| r.main <= at) {
            keep.insert(g.revs[i]);
            g.revs.drain(..i);
        }
        self.generations.drain(..gen_idx);
    }
}

#[cfg(test)]
mod tests {
    //! The key index against a naive model: replaying the key's history answers every read.

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::{Found, KeyIndex, KeyIndexError};
    use crate::revision::Revision;

    #[derive(Clone, Copy, Debug)]
    enum Event {
        Put(i64),
        Delete(i64),
    }

    impl Event {
        fn main(self) -> i64 {
            match self {
                Event::Put(m) | Event::Delete(m) => m,
            }
        }
    }

    /// The key at revision `at`, by replaying its history.
    fn model_get(history: &[Event], at: i64) -> Option<Found> {
        let mut state: Option<Found> = None;
        for e in history.iter().take_while(|e| e.main() <= at) {
            state = match (*e, state) {
                (Event::Put(m), None) => Some(Found {
                    modified: Revision::new(m, 0),
                    created: Revision::new(m, 0),
                    version: 1,
                }),
                (Event::Put(m), Some(f)) => Some(Found {
                    modified: Revision::new(m, 0),
                    version: f.version + 1,
                    ..f
                }),
                (Event::Delete(_), _) => None,
            };
        }
        state
    }

    /// A history: strictly increasing revisions, deletes only of a live key.
    fn history() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec((1i64..4, prop::bool::weighted(0.3)), 1..40).prop_map(|steps| {
            let mut main = 1;
            let mut live = false;
            let mut out = Vec::new();
            for (gap, delete) in steps {
                main += gap;
                if delete && live {
                    out.push(Event::Delete(main));
                    live = false;
                } else {
                    out.push(Event::Put(main));
                    live = true;
                }
            }
            out
        })
    }

    fn build(history: &[Event]) -> KeyIndex {
        let mut ki = KeyIndex::new();
        for e in history {
            match *e {
                Event::Put(m) => ki.put(Revision::new(m, 0)).expect("increasing"),
                Event::Delete(m) => ki.tombstone(Revision::new(m, 0)).expect("live"),
            }
        }
        ki
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every read at every revision matches the replayed history, before and after compactions
        /// (at or above the compact revision), and `since` lists exactly the later changes.
        #[test]
        fn reads_match_the_history_across_compactions(
            history in history(),
            compactions in prop::collection::vec(0i64..130, 0..4),
        ) {
            let last = history.last().map_or(0, |e| e.main());
            let mut ki = build(&history);
            for at in 0..=last + 1 {
                prop_assert_eq!(ki.get(at), model_get(&history, at), "at {}", at);
            }
            let mut compactions = compactions;
            compactions.sort_unstable();
            for c in compactions {
                let mut keep = BTreeSet::new();
                ki.compact(c, &mut keep);
                for at in c..=last + 1 {
                    prop_assert_eq!(ki.get(at), model_get(&history, at), "at {} after compact {}", at, c);
                }
                // Storage keeps exactly the value a read at `c` sees.
                let seen = model_get(&history, c).map(|f| f.modified);
                prop_assert_eq!(keep.into_iter().next(), seen, "kept after compact {}", c);
                let later: Vec<Revision> = history
                    .iter()
                    .map(|e| Revision::new(e.main(), 0))
                    .filter(|r| r.main > c)
                    .collect();
                prop_assert_eq!(ki.since(c + 1), later, "since {}", c + 1);
                // A key deleted before the compact revision and not re-created leaves the tree.
                let gone = model_get(&history, last).is_none() && history.last().is_some_and(|e| e.main() <= c);
                prop_assert_eq!(ki.is_empty(), gone, "empty after compact {}", c);
            }
        }
    }

    #[test]
    fn the_spec_sequence_for_foo() {
        // shared/spec/etcd-semantics.md: put foo at 2, 3, 5; delete at 6; put at 7, 8, 9.
        let mut ki = KeyIndex::new();
        for m in [2, 3, 5] {
            ki.put(Revision::new(m, 0)).expect("put");
        }
        ki.tombstone(Revision::new(6, 0)).expect("delete");
        for m in [7, 8, 9] {
            ki.put(Revision::new(m, 0)).expect("put");
        }
        let at = |r| {
            ki.get(r)
                .map(|f| (f.created.main, f.modified.main, f.version))
        };
        assert_eq!(
            at(5),
            Some((2, 5, 3)),
            "--rev=5 gives v3, create 2, version 3"
        );
        assert_eq!(at(6), None, "--rev=6: deleted");
        assert_eq!(at(7), Some((7, 7, 1)), "--rev=7: re-created, version 1");
        assert_eq!(at(9), Some((7, 9, 3)));
        assert_eq!(at(1), None);
        assert_eq!(
            ki.since(2).iter().map(|r| r.main).collect::<Vec<_>>(),
            [2, 3, 5, 6, 7, 8, 9]
        );
    }

    #[test]
    fn misuse_is_an_error() {
        let mut ki = KeyIndex::new();
        assert_eq!(
            ki.tombstone(Revision::new(1, 0)),
            Err(KeyIndexError::NotLive)
        );
        ki.put(Revision::new(5, 0)).expect("put");
        assert_eq!(
            ki.put(Revision::new(5, 0)),
            Err(KeyIndexError::NotIncreasing {
                given: Revision::new(5, 0),
                last: Revision::new(5, 0)
            })
        );
        ki.tombstone(Revision::new(6, 0)).expect("delete");
        assert_eq!(
            ki.tombstone(Revision::new(7, 0)),
            Err(KeyIndexError::NotLive)
        );
    }
}

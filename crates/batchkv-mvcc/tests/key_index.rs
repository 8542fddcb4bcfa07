//! The key index against a naive model: replaying the key's history answers every read.

use std::collections::BTreeSet;

use batchkv_mvcc::{Found, KeyIndex, KeyIndexError, Revision};
use proptest::prelude::*;

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

#[test]
fn revision_bytes_sort_like_revisions() {
    let revs = [
        Revision::new(0, 0),
        Revision::new(1, 0),
        Revision::new(1, 1),
        Revision::new(2, 0),
        Revision::new(256, 0),
        Revision::new(i64::MAX, 7),
    ];
    for w in revs.windows(2) {
        assert!(w[0].to_bytes() < w[1].to_bytes(), "{} < {}", w[0], w[1]);
    }
    for r in revs {
        assert_eq!(Revision::from_bytes(&r.to_bytes()), Some(r));
    }
    assert_eq!(Revision::from_bytes(b"short"), None);
    let mut bad = Revision::new(1, 2).to_bytes();
    bad[8] = b'x';
    assert_eq!(Revision::from_bytes(&bad), None);
}

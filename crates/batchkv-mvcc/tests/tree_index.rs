//! The tree index against a model: per-key histories replayed, ranges filtered by hand.

use std::collections::{BTreeMap, BTreeSet};

use batchkv_mvcc::{Found, KeySpan, Revision, TreeIndex};
use proptest::prelude::*;

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

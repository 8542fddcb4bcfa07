//! What the CLI's etcdctl comparisons share: the read and delete forms both run, against a
//! store seeded with the keys `k1`..`k4`, `k\u{e9}` and `l1` (`cli.rs` on batchkv's own CLI,
//! `etcdctl_differential.rs` on `batchkv serve`).

/// The `get` forms compared (keys, prefixes, ranges, revisions, sorts, limits).
pub const GET_FORMS: &[&[&str]] = &[
    &["get", "k1"],
    &["get", "nothing"],
    &["get", "k1", "k4"],
    &["get", "k", "--prefix"],
    &["get", "k", "--prefix", "--limit=2"],
    &["get", "k", "--prefix", "--limit", "2", "--keys-only"],
    &["get", "k2", "--from-key"],
    &["get", "", "--from-key", "--limit=3"],
    &["get", "", "--prefix"],
    &["get", "k1", "--rev=2"],
    &["get", "k", "--prefix", "--rev=4"],
    &["get", "k", "--prefix", "--order=DESCEND"],
    &[
        "get",
        "k",
        "--prefix",
        "--sort-by=MODIFY",
        "--order=DESCEND",
        "--limit=2",
    ],
    &["get", "k", "--prefix", "--sort-by=VALUE"],
    &["get", "k", "--prefix", "--sort-by=CREATE", "--order=ASCEND"],
    &[
        "get",
        "k",
        "--prefix",
        "--sort-by=VERSION",
        "--order=DESCEND",
    ],
    &["get", "l1"],
    &["get", "k1", "--consistency=s"],
];

/// The `del` forms compared, in order (each sees what the ones before left).
pub const DEL_FORMS: &[&[&str]] = &[
    &["del", "nothing"],
    &["del", "k1", "--prev-kv"],
    &["del", "k2", "k4", "--prev-kv"],
    &["del", "k", "--prefix"],
    &["del", "l", "--from-key", "--prev-kv"],
];

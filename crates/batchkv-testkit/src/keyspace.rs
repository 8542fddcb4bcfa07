//! The key space of the etcd differential generators (batchkv-mvcc's `etcd_diff` and the
//! `batchkv serve` etcdctl differential): small enough that random ops collide, with keys that
//! are prefixes of others and bounds between them.

/// 11 keys, so a sorted read never has more than 12 items (Go's sort is an insertion sort,
/// hence stable, only up to 12; batchkv's sort is stable with ties in key order). "a" is also
/// a prefix of the a-keys.
pub const KEYS: [&str; 11] = [
    "a", "a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4",
];
/// Range ends for `get k e` / `del k e` (some sort before some keys: an empty range).
pub const BOUNDS: [&str; 13] = [
    "a", "a0", "a1", "a2", "a2x", "a3", "a4", "a5", "b", "b0", "b2", "b4", "c",
];
/// Prefixes for `--prefix` (some match nothing).
pub const PREFIXES: [&str; 7] = ["a", "a1", "a2x", "b", "b3", "c", "a0"];
/// Values (the empty one, repeats for equal-value sorts and compares).
pub const VALUES: [&str; 9] = ["", "v", "v", "x1", "abc", "z9", "0", "hello", "abd"];
/// etcdctl's `--sort-by` targets.
pub const SORT_TARGETS: [&str; 5] = ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"];
/// etcdctl's `--order` values.
pub const ORDERS: [&str; 2] = ["ASCEND", "DESCEND"];

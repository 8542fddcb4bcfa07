//! Store helpers the case-by-case tests share (`store`, `lease`, `watch`, `retention`): opening
//! a store (WAL without sync: the tests reopen, they do not pull the plug), and applying ops as
//! the next entry. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;

use batchkv_codec::{Op, Put};
use batchkv_engine::WriteMode;
use batchkv_mvcc::{Mvcc, MvccConfig, OpError, OpResponse};

/// Opens (or reopens) the store in `dir`, writing with the WAL and no sync.
pub fn open(dir: &Path) -> Mvcc {
    Mvcc::open(MvccConfig::new(dir).write_mode(WriteMode::WAL)).expect("open store")
}

/// Applies one op as its own entry (the next index) and returns its result.
pub fn one(store: &mut Mvcc, op: impl Into<Op>) -> Result<OpResponse, OpError> {
    let index = store.applied_index() + 1;
    let mut applied = store.apply(index, &[op.into()]).expect("entry commits");
    applied.results.remove(0)
}

/// Applies `ops` as the next entry and requires every op to succeed.
pub fn apply_ok(store: &mut Mvcc, ops: impl AsRef<[Op]>) {
    let index = store.applied_index() + 1;
    let applied = store.apply(index, ops.as_ref()).expect("entry commits");
    assert!(
        applied.results.iter().all(Result::is_ok),
        "{:?}",
        applied.results
    );
}

/// A plain put.
pub fn put(key: &str, value: &str) -> Op {
    Op::Put(Put::new(key.to_owned(), value.to_owned()))
}

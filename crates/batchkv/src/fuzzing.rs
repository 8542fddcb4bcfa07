//! The store's crash-after-writes property (feature `fuzzing`), shared by the `store_crash`
//! fuzz target and a proptest in `tests/crash_after.rs`: redb's `crash_after_ops`, on the
//! `Store`.
//!
//! A [`Program`] is a durability mode, a write budget and a sequence of operations. The store
//! runs them one by one with every storage write after the budget failing (the engine's
//! injected failure, below the pipeline: the "crash"), while a model of etcd's key space
//! follows only the operations the store acknowledged. Then the store is closed and reopened
//! without failures, and everything must agree with the model: every key's value, create and mod
//! revision, version and lease, the revision, the compacted revision, the leases, and
//! [`crate::Store::check`]. Along the way each acknowledged answer must be the model's, and a
//! read after a failed write must not see it.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use bytes::Bytes;

use crate::{Durability, OpError, Put, Range, Store, StoreError};

/// One operation of a [`Program`], over a small key space (`k0`..`k7`) so they collide.
#[derive(Clone, Debug, Arbitrary)]
pub enum FuzzOp {
    /// A put.
    Put {
        /// The key (mod 8).
        key: u8,
        /// The value.
        value: u8,
    },
    /// A delete of one key.
    Delete {
        /// The key (mod 8).
        key: u8,
    },
    /// A delete of every key.
    DeleteAll,
    /// A txn creating `key` if it does not exist.
    Create {
        /// The key (mod 8).
        key: u8,
        /// The value.
        value: u8,
    },
    /// A lease grant (1 hour: nothing expires during a run).
    Grant,
    /// A put attached to one of the leases granted so far.
    PutLeased {
        /// The key (mod 8).
        key: u8,
        /// Which lease (mod the leases granted).
        lease: u8,
    },
    /// A revoke of one of the leases granted so far.
    Revoke {
        /// Which lease (mod the leases granted).
        lease: u8,
    },
    /// A compaction `back` revisions behind the current one.
    Compact {
        /// How far back.
        back: u8,
    },
}

/// A run: the mode, how many storage writes succeed, and the operations.
#[derive(Clone, Debug, Arbitrary)]
pub struct Program {
    /// 0: `Sync`, else `Wal` (`None` promises nothing to check across a restart).
    pub wal: bool,
    /// Storage writes that succeed before every later one fails.
    pub writes: u8,
    /// The operations, in order.
    pub ops: Vec<FuzzOp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kv {
    value: Bytes,
    create: i64,
    modified: i64,
    version: i64,
    lease: i64,
}

#[derive(Debug, Default)]
struct Model {
    rev: i64,
    compacted: i64,
    kvs: BTreeMap<Bytes, Kv>,
    leases: Vec<i64>,
    live_leases: BTreeMap<i64, ()>,
}

impl Model {
    fn put(&mut self, key: Bytes, value: Bytes, lease: i64) {
        self.rev += 1;
        let rev = self.rev;
        let kv = self.kvs.entry(key).or_insert(Kv {
            value: Bytes::new(),
            create: rev,
            modified: rev,
            version: 0,
            lease,
        });
        kv.value = value;
        kv.modified = rev;
        kv.version += 1;
        kv.lease = lease;
    }

    fn delete(&mut self, keys: &[Bytes]) {
        if keys.iter().any(|k| self.kvs.contains_key(k)) {
            self.rev += 1;
            for k in keys {
                self.kvs.remove(k);
            }
        }
    }
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("k{}", k % 8))
}

fn value(v: u8) -> Bytes {
    Bytes::from(format!("v{v}"))
}

/// Runs `program` and checks it against the model.
///
/// # Errors
/// What disagrees, with the step.
pub fn crash_after_writes(program: &Program) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let durability = if program.wal {
        Durability::Wal {
            flush: Default::default(),
        }
    } else {
        Durability::Sync
    };
    let open = || {
        Store::builder(dir.path())
            .durability(durability)
            .open()
            .map_err(|e| format!("open: {e}"))
    };
    let store = open()?;
    store.inject_write_failures_after(u64::from(program.writes));
    let mut m = Model {
        rev: 1,
        compacted: -1,
        ..Model::default()
    };
    for (step, op) in program.ops.iter().take(64).enumerate() {
        let at = |e: String| format!("step {step} ({op:?}): {e}");
        // A storage error means the op is not applied: the model stays.
        let storage = |r: &StoreError| matches!(r, StoreError::Storage(_));
        match op {
            FuzzOp::Put { key: k, value: v } => match store.put(key(*k), value(*v)) {
                Ok(r) => {
                    m.put(key(*k), value(*v), 0);
                    expect(r.revision, m.rev).map_err(at)?;
                }
                Err(e) if storage(&e) => {}
                Err(e) => return Err(at(e.to_string())),
            },
            FuzzOp::Delete { key: k } => match store.delete(key(*k)) {
                Ok(r) => {
                    let existed = m.kvs.contains_key(&key(*k));
                    m.delete(&[key(*k)]);
                    expect(r.deleted, i64::from(existed)).map_err(at)?;
                }
                Err(e) if storage(&e) => {}
                Err(e) => return Err(at(e.to_string())),
            },
            FuzzOp::DeleteAll => match store.delete_range(crate::DeleteRange::prefix("k")) {
                Ok(r) => {
                    let keys: Vec<Bytes> = m.kvs.keys().cloned().collect();
                    expect(r.deleted, keys.len() as i64).map_err(at)?;
                    m.delete(&keys);
                }
                Err(e) if storage(&e) => {}
                Err(e) => return Err(at(e.to_string())),
            },
            FuzzOp::Create { key: k, value: v } => {
                let t = crate::Txn {
                    compares: vec![crate::Compare::new(
                        key(*k),
                        crate::CompareOp::Equal,
                        crate::CompareTarget::CreateRevision(0),
                    )],
                    success: vec![crate::Op::Put(Put::new(key(*k), value(*v)))],
                    failure: vec![],
                };
                match store.txn(t) {
                    Ok(r) => {
                        let absent = !m.kvs.contains_key(&key(*k));
                        if absent {
                            m.put(key(*k), value(*v), 0);
                        }
                        expect(i64::from(r.succeeded), i64::from(absent)).map_err(at)?;
                    }
                    Err(e) if storage(&e) => {}
                    Err(e) => return Err(at(e.to_string())),
                }
            }
            FuzzOp::Grant => match store.lease_grant(0, 3600) {
                Ok(r) => {
                    m.leases.push(r.id);
                    m.live_leases.insert(r.id, ());
                }
                Err(e) if storage(&e) => {}
                Err(e) => return Err(at(e.to_string())),
            },
            FuzzOp::PutLeased { key: k, lease } => {
                let Some(&id) = m.leases.get(usize::from(*lease) % m.leases.len().max(1)) else {
                    continue;
                };
                match store.put_with(Put {
                    lease: id,
                    ..Put::new(key(*k), "leased")
                }) {
                    Ok(r) if m.live_leases.contains_key(&id) => {
                        m.put(key(*k), Bytes::from_static(b"leased"), id);
                        expect(r.revision, m.rev).map_err(at)?;
                    }
                    Ok(_) => return Err(at(format!("a put on revoked lease {id} succeeded"))),
                    Err(StoreError::Op(OpError::LeaseNotFound { .. }))
                        if !m.live_leases.contains_key(&id) => {}
                    Err(e) if storage(&e) => {}
                    Err(e) => return Err(at(e.to_string())),
                }
            }
            FuzzOp::Revoke { lease } => {
                let Some(&id) = m.leases.get(usize::from(*lease) % m.leases.len().max(1)) else {
                    continue;
                };
                match store.lease_revoke(id) {
                    Ok(_) if m.live_leases.contains_key(&id) => {
                        let keys: Vec<Bytes> = m
                            .kvs
                            .iter()
                            .filter(|(_, kv)| kv.lease == id)
                            .map(|(k, _)| k.clone())
                            .collect();
                        m.delete(&keys);
                        m.live_leases.remove(&id);
                    }
                    Ok(_) => return Err(at(format!("revoking revoked lease {id} succeeded"))),
                    Err(StoreError::Op(OpError::LeaseNotFound { .. }))
                        if !m.live_leases.contains_key(&id) => {}
                    Err(e) if storage(&e) => {}
                    Err(e) => return Err(at(e.to_string())),
                }
            }
            FuzzOp::Compact { back } => {
                let rev = m.rev - i64::from(*back % 8);
                if rev < 1 {
                    continue;
                }
                match store.compact(rev) {
                    Ok(_) => {
                        if rev <= m.compacted || rev > m.rev {
                            return Err(at(format!("compacting {rev} succeeded")));
                        }
                        m.compacted = rev;
                    }
                    Err(StoreError::Op(OpError::Compacted { .. })) if rev <= m.compacted => {}
                    Err(e) if storage(&e) => {}
                    Err(e) => return Err(at(e.to_string())),
                }
            }
        }
        // Reads see exactly the acknowledged state, never a failed write.
        same(&store, &m).map_err(at)?;
    }
    store.clear_injected_failures();
    store.close().map_err(|e| format!("close: {e}"))?;
    drop(store);
    let store = open()?;
    same(&store, &m).map_err(|e| format!("after reopening: {e}"))?;
    expect(
        store
            .stats()
            .map_err(|e| e.to_string())?
            .compacted
            .unwrap_or(-1),
        m.compacted,
    )
    .map_err(|e| format!("compacted revision after reopening: {e}"))?;
    let mut leases = store.leases();
    leases.sort_unstable();
    let want: Vec<i64> = m.live_leases.keys().copied().collect();
    if leases != want {
        return Err(format!("leases after reopening: {leases:?}, want {want:?}"));
    }
    store
        .check()
        .map_err(|e| format!("check after reopening: {e}"))?;
    Ok(())
}

fn expect(got: i64, want: i64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got}, the model says {want}"))
    }
}

/// The store's key space and revision equal the model's.
fn same(store: &Store, m: &Model) -> Result<(), String> {
    expect(store.current_revision(), m.rev).map_err(|e| format!("revision: {e}"))?;
    let all = store
        .range(&Range::prefix("k"))
        .map_err(|e| format!("range: {e}"))?;
    let got: BTreeMap<Bytes, Kv> = all
        .kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                Kv {
                    value: kv.value,
                    create: kv.create_revision,
                    modified: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                },
            )
        })
        .collect();
    if got != m.kvs {
        return Err(format!("keys {got:?}, the model has {:?}", m.kvs));
    }
    Ok(())
}

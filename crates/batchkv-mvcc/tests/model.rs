//! Model test: random sequences of entries (puts, deletes, range deletes, txns, compactions,
//! reads at revisions, reopens) applied to a real store and to a deliberately simple model of
//! etcd's semantics: a full copy of the key space per revision. Every answer and, at the end
//! and after every reopen, every readable revision must agree. A failure prints the seed-free
//! replayable log of entries that led to it.

use std::collections::BTreeMap;
use std::path::Path;

use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, Op, Put, Range, SortOrder, SortTarget,
    Txn,
};
use batchkv_engine::WriteMode;
use batchkv_mvcc::{
    DeleteRangeResponse, KeyValue, Mvcc, MvccConfig, OpResponse, PutResponse, RangeResponse,
    TxnResponse,
};
use bytes::Bytes;
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "b", "c", "d", "e", "f"];

#[derive(Clone, Debug, PartialEq, Eq)]
struct MKv {
    value: Vec<u8>,
    create: i64,
    modified: i64,
    version: i64,
}

/// The key space at every revision: `states[r]` is the store after revision `r`.
#[derive(Clone, Debug)]
struct Model {
    states: Vec<BTreeMap<Vec<u8>, MKv>>,
    compacted: i64,
}

type Answer = Result<OpResponse, String>;

impl Model {
    fn new() -> Self {
        // Revision 0 does not exist; a new store is at revision 1, empty.
        Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            compacted: -1,
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn at(&self, rev: i64) -> &BTreeMap<Vec<u8>, MKv> {
        &self.states[rev as usize]
    }

    fn kv(key: &[u8], m: &MKv) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: m.create,
            mod_revision: m.modified,
            version: m.version,
            value: Bytes::copy_from_slice(&m.value),
            lease: 0,
        }
    }

    fn in_span(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        match end {
            [] => key == start,
            [0] => key >= start,
            end => key >= start && key < end,
        }
    }

    fn apply(&mut self, op: &Op) -> Answer {
        let mut state = self.at(self.rev()).clone();
        let next = self.rev() + 1;
        let mut changed = false;
        let answer = self.op(op, &mut state, next, &mut changed);
        if answer.is_ok() && changed {
            self.states.push(state);
        }
        answer
    }

    /// One op against `state` (the key space as the op began, updated in place); writes carry
    /// revision `next`.
    fn op(
        &mut self,
        op: &Op,
        state: &mut BTreeMap<Vec<u8>, MKv>,
        next: i64,
        changed: &mut bool,
    ) -> Answer {
        match op {
            Op::Put(p) => {
                let prev = state.get(&p.key[..]).cloned();
                let m = match &prev {
                    Some(old) => MKv {
                        value: p.value.to_vec(),
                        create: old.create,
                        modified: next,
                        version: old.version + 1,
                    },
                    None => MKv {
                        value: p.value.to_vec(),
                        create: next,
                        modified: next,
                        version: 1,
                    },
                };
                state.insert(p.key.to_vec(), m);
                *changed = true;
                Ok(OpResponse::Put(PutResponse {
                    revision: next,
                    prev_kv: prev.filter(|_| p.prev_kv).map(|m| Model::kv(&p.key, &m)),
                }))
            }
            Op::DeleteRange(d) => {
                let gone: Vec<(Vec<u8>, MKv)> = state
                    .iter()
                    .filter(|(k, _)| Model::in_span(k, &d.key, &d.range_end))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, _) in &gone {
                    state.remove(k);
                }
                *changed |= !gone.is_empty();
                Ok(OpResponse::DeleteRange(DeleteRangeResponse {
                    revision: if *changed { next } else { next - 1 },
                    deleted: gone.len() as i64,
                    prev_kvs: if d.prev_kv {
                        gone.iter().map(|(k, m)| Model::kv(k, m)).collect()
                    } else {
                        Vec::new()
                    },
                }))
            }
            Op::Range(r) => {
                let current = if *changed { next } else { next - 1 };
                let at = if r.revision == 0 { current } else { r.revision };
                if at > current {
                    return Err("mvcc: required revision is a future revision".into());
                }
                if at < self.compacted {
                    return Err("mvcc: required revision has been compacted".into());
                }
                // Reads inside the op's own txn see its writes (`state`); others see history.
                let space = if at == current {
                    state.clone()
                } else {
                    self.at(at).clone()
                };
                let mut kvs: Vec<KeyValue> = space
                    .iter()
                    .filter(|(k, _)| Model::in_span(k, &r.key, &r.range_end))
                    .map(|(k, m)| Model::kv(k, m))
                    .collect();
                let count = kvs.len() as i64;
                let order = match (r.sort_order, r.sort_target) {
                    (SortOrder::None, SortTarget::Key) => SortOrder::None,
                    (SortOrder::None, _) => SortOrder::Ascend,
                    (o, _) => o,
                };
                let key_of = |kv: &KeyValue| -> Vec<u8> {
                    match r.sort_target {
                        SortTarget::Key => kv.key.to_vec(),
                        SortTarget::Value => kv.value.to_vec(),
                        SortTarget::Version => kv.version.to_be_bytes().to_vec(),
                        SortTarget::Create => kv.create_revision.to_be_bytes().to_vec(),
                        SortTarget::Mod => kv.mod_revision.to_be_bytes().to_vec(),
                    }
                };
                // etcd reads the whole range only for an explicit order: a sort target without
                // one sorts just the first limit + 1 keys.
                if r.sort_order == SortOrder::None && r.limit > 0 {
                    kvs.truncate(r.limit as usize + 1);
                }
                match order {
                    SortOrder::None => {}
                    SortOrder::Ascend => kvs.sort_by_key(key_of),
                    SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(key_of(kv))),
                }
                let mut more = false;
                if r.limit > 0 && kvs.len() > r.limit as usize {
                    kvs.truncate(r.limit as usize);
                    more = true;
                }
                if r.keys_only {
                    kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
                }
                if r.count_only {
                    kvs.clear();
                    more = false;
                }
                Ok(OpResponse::Range(RangeResponse {
                    revision: current,
                    kvs,
                    more,
                    count,
                }))
            }
            Op::Txn(t) => {
                // One level, so the duplicate rule is: no key put twice, none put and deleted.
                let ops = t.success.iter().chain(&t.failure);
                for branch in [&t.success, &t.failure] {
                    let mut puts: Vec<&Bytes> = Vec::new();
                    for op in branch.iter() {
                        if let Op::Put(p) = op {
                            let deleted = branch.iter().any(|o| matches!(o, Op::DeleteRange(d) if Model::in_span(&p.key, &d.key, &d.range_end) && d.range_end[..] != [0]));
                            if puts.contains(&&p.key) || deleted {
                                return Err("etcdserver: duplicate key given in txn request".into());
                            }
                            puts.push(&p.key);
                        }
                    }
                }
                let _ = ops;
                let before = state.clone();
                let holds = t.compares.iter().all(|c| {
                    let m = before.get(&c.key[..]);
                    let ord = match (&c.target, m) {
                        (CompareTarget::Value(_), None) => return false,
                        (CompareTarget::Value(v), Some(m)) => m.value[..].cmp(&v[..]),
                        (CompareTarget::Version(n), m) => m.map_or(0, |m| m.version).cmp(n),
                        (CompareTarget::CreateRevision(n), m) => m.map_or(0, |m| m.create).cmp(n),
                        (CompareTarget::ModRevision(n), m) => m.map_or(0, |m| m.modified).cmp(n),
                        (CompareTarget::Lease(n), _) => 0.cmp(n),
                    };
                    match c.op {
                        CompareOp::Equal => ord.is_eq(),
                        CompareOp::NotEqual => ord.is_ne(),
                        CompareOp::Less => ord.is_lt(),
                        CompareOp::Greater => ord.is_gt(),
                    }
                });
                let branch = if holds { &t.success } else { &t.failure };
                // etcd checks a branch's reads at revisions before writing anything.
                for op in branch {
                    if let Op::Range(r) = op
                        && r.revision != 0
                    {
                        if r.revision > next - 1 {
                            return Err("mvcc: required revision is a future revision".into());
                        }
                        if r.revision < self.compacted {
                            return Err("mvcc: required revision has been compacted".into());
                        }
                    }
                }
                let mut responses = Vec::new();
                for op in branch {
                    responses.push(self.op(op, state, next, changed)?);
                }
                Ok(OpResponse::Txn(TxnResponse {
                    revision: if *changed { next } else { next - 1 },
                    succeeded: holds,
                    responses,
                }))
            }
            Op::Compact(c) => {
                if c.revision <= self.compacted {
                    return Err("mvcc: required revision has been compacted".into());
                }
                if c.revision > self.rev() {
                    return Err("mvcc: required revision is a future revision".into());
                }
                self.compacted = c.revision;
                Ok(OpResponse::Compact(batchkv_mvcc::CompactResponse {
                    revision: self.rev(),
                }))
            }
            Op::LeaseGrant(_) | Op::LeaseRevoke(_) => unreachable!("not generated"),
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// One entry of ops.
    Entry(Vec<Op>),
    /// A committed read at `revision` back from the current one (0: latest).
    Read { span: (usize, usize), back: i64 },
    /// Close and reopen the store.
    Reopen,
    /// Run physical compaction to the end.
    FinishCompaction,
}

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(KEYS).prop_map(Bytes::from_static_str)
}

trait FromStaticStr {
    fn from_static_str(s: &'static str) -> Bytes;
}
impl FromStaticStr for Bytes {
    fn from_static_str(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"]).prop_map(Bytes::from_static_str)
}

/// `(key, range_end)`: one key, a range, or from a key.
fn span() -> impl Strategy<Value = (Bytes, Bytes)> {
    (0..KEYS.len(), 0..=KEYS.len() + 1).prop_map(|(a, b)| {
        let key = Bytes::from_static_str(KEYS[a]);
        let end = match b {
            0 => Bytes::new(),
            b if b > KEYS.len() => Bytes::from_static(b"\0"),
            b => Bytes::from_static_str(KEYS[b - 1]),
        };
        (key, end)
    })
}

fn put() -> impl Strategy<Value = Op> {
    (key(), value(), any::<bool>()).prop_map(|(k, v, prev)| {
        Op::Put(Put {
            prev_kv: prev,
            ..Put::new(k, v)
        })
    })
}

fn delete() -> impl Strategy<Value = Op> {
    (span(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| {
        Op::DeleteRange(DeleteRange {
            key,
            range_end,
            prev_kv,
        })
    })
}

fn range() -> impl Strategy<Value = Op> {
    (
        span(),
        0..4i64,
        0..3usize,
        0..5usize,
        any::<bool>(),
        prop::bool::weighted(0.1),
        0..3i64,
    )
        .prop_map(
            |((key, range_end), limit, order, target, keys_only, count_only, back)| {
                Op::Range(Range {
                    key,
                    range_end,
                    limit,
                    // Relative revisions are resolved when the entry runs (see `resolve`).
                    revision: -back,
                    sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order],
                    sort_target: [
                        SortTarget::Key,
                        SortTarget::Version,
                        SortTarget::Create,
                        SortTarget::Mod,
                        SortTarget::Value,
                    ][target],
                    keys_only,
                    count_only,
                    ..Range::default()
                })
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    (key(), 0..4usize, 0..4usize, value(), 0..6i64).prop_map(|(k, op, target, v, n)| {
        let op = [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Less,
            CompareOp::Greater,
        ][op];
        let target = match target {
            0 => CompareTarget::Value(v),
            1 => CompareTarget::Version(n),
            2 => CompareTarget::CreateRevision(n),
            _ => CompareTarget::ModRevision(n),
        };
        Compare::new(k, op, target)
    })
}

fn txn() -> impl Strategy<Value = Op> {
    let branch = prop::collection::vec(prop_oneof![put(), delete(), range()], 0..4);
    (
        prop::collection::vec(compare(), 0..3),
        branch.clone(),
        branch,
    )
        .prop_map(|(compares, success, failure)| {
            Op::Txn(Txn {
                compares,
                success,
                failure,
            })
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => put(),
        2 => delete(),
        2 => range(),
        3 => txn(),
        1 => (0..4i64).prop_map(|back| Op::Compact(Compact { revision: -back })),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => prop::collection::vec(op(), 1..5).prop_map(Step::Entry),
        3 => (span(), 0..6i64).prop_map(|((k, e), back)| {
            let a = KEYS.iter().position(|x| x.as_bytes() == &k[..]).unwrap_or(0);
            let b = KEYS.iter().position(|x| x.as_bytes() == &e[..]).unwrap_or(KEYS.len());
            Step::Read { span: (a, b), back }
        }),
        1 => Just(Step::Reopen),
        1 => Just(Step::FinishCompaction),
    ]
}

/// Relative revisions (stored negated, `-back`) become absolute: `current - back`, at least 1.
fn resolve(op: &Op, current: i64) -> Op {
    let abs = |r: i64| if r < 0 { (current + r).max(1) } else { r };
    match op {
        Op::Range(r) => Op::Range(Range {
            revision: if r.revision == 0 { 0 } else { abs(r.revision) },
            ..r.clone()
        }),
        Op::Compact(c) => Op::Compact(Compact {
            revision: abs(c.revision).max(if c.revision == 0 { current } else { 1 }),
        }),
        Op::Txn(t) => Op::Txn(Txn {
            compares: t.compares.clone(),
            success: t.success.iter().map(|o| resolve(o, current)).collect(),
            failure: t.failure.iter().map(|o| resolve(o, current)).collect(),
        }),
        other => other.clone(),
    }
}

/// A store with the value cache's budget `cache` (0: off; a few hundred bytes: some values
/// cached, the rest read from storage).
fn open(dir: &Path, cache: usize) -> Mvcc {
    Mvcc::open(
        MvccConfig::new(dir)
            .write_mode(WriteMode::WAL)
            // Small steps: compaction stays pending across entries and reopens.
            .compaction_batch(3)
            .value_cache_bytes(cache),
    )
    .expect("open store")
}

fn answer(r: &Result<OpResponse, batchkv_mvcc::OpError>) -> Answer {
    r.clone().map_err(|e| e.to_string())
}

/// Every readable revision of the store against the model.
fn check_history(store: &Mvcc, model: &Model, log: &[String]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        store.current_revision(),
        model.rev(),
        "log:\n{}",
        log.join("\n")
    );
    let first = model.compacted.max(1);
    for rev in first..=model.rev() {
        let got = store
            .range(&Range {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                revision: rev,
                ..Range::default()
            })
            .map_err(|e| {
                TestCaseError::fail(format!("read at {rev}: {e}\nlog:\n{}", log.join("\n")))
            })?;
        let want: Vec<KeyValue> = model.at(rev).iter().map(|(k, m)| Model::kv(k, m)).collect();
        prop_assert_eq!(
            &got.kvs,
            &want,
            "revision {}; log:\n{}",
            rev,
            log.join("\n")
        );
    }
    if first > 1 {
        let below = store.range(&Range {
            revision: first - 1,
            ..Range::key("a")
        });
        prop_assert!(
            below.is_err(),
            "read below the compacted revision succeeded"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_the_model(
        steps in prop::collection::vec(step(), 1..40),
        cache in prop_oneof![Just(0usize), 100usize..600, Just(batchkv_mvcc::DEFAULT_VALUE_CACHE_BYTES)],
    ) {
        let dir = batchkv_testkit::temp_dir();
        let mut store = open(dir.path(), cache);
        let mut model = Model::new();
        let mut log: Vec<String> = Vec::new();
        let mut index = 0u64;
        for s in &steps {
            match s {
                Step::Entry(ops) => {
                    index += 1;
                    let current = model.rev();
                    let ops: Vec<Op> = ops.iter().map(|o| resolve(o, current)).collect();
                    log.push(format!("apply({index}, {ops:?})"));
                    let applied = store.apply(index, &ops).expect("apply");
                    prop_assert_eq!(applied.results.len(), ops.len());
                    for (op, got) in ops.iter().zip(&applied.results) {
                        let want = model.apply(op);
                        prop_assert_eq!(answer(got), want, "op {:?}; log:\n{}", op, log.join("\n"));
                    }
                    prop_assert_eq!(applied.revision, model.rev());
                }
                Step::Read { span: (a, b), back } => {
                    let key = Bytes::from_static_str(KEYS[*a]);
                    let range_end = if *b >= KEYS.len() { Bytes::from_static(b"\0") } else { Bytes::from_static_str(KEYS[*b]) };
                    let r = Range { key, range_end, revision: if *back == 0 { 0 } else { (model.rev() - back).max(1) }, ..Range::default() };
                    log.push(format!("range({r:?})"));
                    let got = store.range(&r).map_err(|e| e.to_string());
                    let want = model.clone().apply(&Op::Range(r)).map(|resp| match resp {
                        OpResponse::Range(r) => r,
                        other => panic!("model answered a range with {other:?}"),
                    });
                    prop_assert_eq!(got, want, "log:\n{}", log.join("\n"));
                }
                Step::Reopen => {
                    log.push("reopen".into());
                    let hash = store.hash_kv(0).expect("hash_kv");
                    drop(store);
                    store = open(dir.path(), cache);
                    prop_assert_eq!(store.applied_index(), index);
                    check_history(&store, &model, &log)?;
                    // Every stored invariant holds, and the digest is the same whatever
                    // physical compaction had done before the reopen.
                    let report = store.check().map_err(|e| TestCaseError::fail(format!("check: {e}\nlog:\n{}", log.join("\n"))))?;
                    prop_assert_eq!(report.hash, hash, "log:\n{}", log.join("\n"));
                }
                Step::FinishCompaction => {
                    log.push("finish compaction".into());
                    let hash = store.hash_kv(0).expect("hash_kv");
                    while !store.compact_step(2).expect("compact step") {}
                    prop_assert_eq!(store.compaction_status().pending, None);
                    prop_assert_eq!(store.hash_kv(0).expect("hash_kv"), hash, "log:\n{}", log.join("\n"));
                }

            }
        }
        check_history(&store, &model, &log)?;
        // The value cache holds exactly what storage holds (check compares them).
        store.check().map_err(|e| TestCaseError::fail(format!("check: {e}\nlog:\n{}", log.join("\n"))))?;
        prop_assert!(store.value_cache().0 <= cache);
        // Replaying every entry again (a restart re-reading the log) changes nothing.
        let before = store.current_revision();
        let replay = store.apply(index.max(1), &[Op::Put(Put::new("a", "replayed"))]).expect("replay");
        prop_assert!(replay.skipped || index == 0);
        if index > 0 {
            prop_assert_eq!(store.current_revision(), before);
        }
    }
}

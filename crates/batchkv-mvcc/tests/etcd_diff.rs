//! Differential test of batchkv-mvcc against a real etcd 3.4 server.
//!
//! A seeded random sequence of operations (put with its flags, del of one key / a range /
//! a prefix / from a key, get with revisions, limits, sorting and keys-only, txns with
//! compares and both branches, compaction, and the limits: too many txn ops, a request too
//! large, an empty key) runs through `etcdctl -w json` against a fresh etcd and through
//! [`Mvcc`]; both answers are reduced to one shape (header revision, key-values with create
//! and mod revisions and versions, counts, `more`, deleted counts, prev_kvs, txn outcomes and
//! per-op responses, error kinds) and must be equal. Most ops are one batchkv entry each (as
//! each etcd request is one raft entry); runs of up to six consecutive ops are applied as one
//! entry, which must answer exactly as etcd answers them one by one. Every difference is
//! collected; the test
//! then fails with the seed and a replayable etcdctl script of the whole run.
//!
//! `BATCHKV_DIFF_SEED` (decimal or 0x-hex) picks the seed, `BATCHKV_DIFF_OPS` the number of
//! operations (at least the default 2,000). etcd-server and etcd-client (3.4) must be
//! installed: without them the tests fail, they never skip.
//!
//! Shapes of requests follow what etcdctl 3.4 sends: `--sort-by=KEY --order=ASCEND` becomes
//! no sorting (clientv3's `WithSort`), `--prefix`/`--from-key` on the empty key mean the whole
//! key space (key `\0`). etcdctl 3.4 cannot send lease compares (it panics parsing
//! `lease("k") = "0"`), range compares, nested txns, `--count-only` or the revision filters,
//! so those are not covered here.

mod etcd;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use batchkv_codec::{
    Compact, Compare, CompareOp, CompareTarget, DeleteRange, Op, Put, Range, SortOrder, SortTarget,
    Txn, prefix_range,
};
use batchkv_engine::WriteMode;
use batchkv_mvcc::{Mvcc, MvccConfig};
use bytes::Bytes;

use batchkv_testkit::keyspace::{BOUNDS, KEYS, ORDERS, PREFIXES, SORT_TARGETS, VALUES};
use batchkv_testkit::{Etcd, Rng, env_u64, shell_words};

use crate::etcd::{Answer, Resp, Shape};

const DEFAULT_SEED: u64 = 0x00e7_cd00_2024;
const DEFAULT_OPS: usize = 2000;

/// `--lease=1234` (hex): a lease etcd does not have.
const LEASE: i64 = 0x1234;
/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

// ---------------------------------------------------------------------------------------------
// Randomness

// ---------------------------------------------------------------------------------------------
// Operations, and how each side receives them

/// What follows the key: nothing (one key), an end key, `--prefix` or `--from-key`.
#[derive(Clone, Debug)]
enum End {
    One,
    To(String),
    Prefix,
    FromKey,
}

impl End {
    fn args(&self) -> Vec<String> {
        match self {
            End::One => vec![],
            End::To(e) => vec![e.clone()],
            End::Prefix => vec!["--prefix".into()],
            End::FromKey => vec!["--from-key".into()],
        }
    }

    /// The request's key and range_end as clientv3 builds them.
    fn key_range(&self, key: &str) -> (Bytes, Bytes) {
        let k = Bytes::copy_from_slice(key.as_bytes());
        match self {
            End::One => (k, Bytes::new()),
            End::To(e) => (k, Bytes::copy_from_slice(e.as_bytes())),
            // WithPrefix, the empty prefix (the whole key space) included.
            End::Prefix => prefix_range(key.as_bytes()),
            // WithFromKey on the empty key: the whole key space.
            End::FromKey if key.is_empty() => {
                (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
            }
            End::FromKey => (k, Bytes::from_static(b"\0")),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            End::One => "one",
            End::To(_) => "range",
            End::Prefix => "prefix",
            End::FromKey => "from-key",
        }
    }
}

/// A quoted word of a txn line (etcdctl unquotes with Go's strconv.Unquote).
fn q(s: &str) -> String {
    format!("\"{s}\"")
}

#[derive(Clone, Debug)]
struct PutSpec {
    key: String,
    value: String,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
    lease: i64,
}

impl PutSpec {
    fn plain(key: &str, value: &str) -> Self {
        PutSpec {
            key: key.into(),
            value: value.into(),
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
            lease: 0,
        }
    }

    fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.prev_kv {
            f.push("--prev-kv".into());
        }
        if self.ignore_value {
            f.push("--ignore-value".into());
        }
        if self.ignore_lease {
            f.push("--ignore-lease".into());
        }
        if self.lease != 0 {
            f.push(format!("--lease={:x}", self.lease));
        }
        f
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec!["put".to_string(), self.key.clone()];
        if !self.ignore_value {
            a.push(self.value.clone());
        }
        a.extend(self.flags());
        a
    }

    fn txn_line(&self) -> String {
        let mut a = vec!["put".to_string(), q(&self.key)];
        if !self.ignore_value {
            a.push(q(&self.value));
        }
        a.extend(self.flags());
        a.join(" ")
    }

    fn op(&self) -> Op {
        Op::Put(Put {
            key: Bytes::copy_from_slice(self.key.as_bytes()),
            value: if self.ignore_value {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(self.value.as_bytes())
            },
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }
}

#[derive(Clone, Debug)]
struct DelSpec {
    key: String,
    end: End,
    prev_kv: bool,
}

impl DelSpec {
    fn words(&self, quote: bool) -> Vec<String> {
        let key = if quote {
            q(&self.key)
        } else {
            self.key.clone()
        };
        let mut a = vec!["del".to_string(), key];
        a.extend(self.end.args());
        if self.prev_kv {
            a.push("--prev-kv".into());
        }
        a
    }

    fn op(&self) -> Op {
        let (key, range_end) = self.end.key_range(&self.key);
        Op::DeleteRange(DeleteRange {
            key,
            range_end,
            prev_kv: self.prev_kv,
        })
    }
}

#[derive(Clone, Debug)]
struct GetSpec {
    key: String,
    end: End,
    rev: i64,
    limit: i64,
    sort_by: Option<&'static str>,
    order: Option<&'static str>,
    keys_only: bool,
}

impl GetSpec {
    fn key(key: &str) -> Self {
        GetSpec {
            key: key.into(),
            end: End::One,
            rev: 0,
            limit: 0,
            sort_by: None,
            order: None,
            keys_only: false,
        }
    }

    fn words(&self, quote: bool) -> Vec<String> {
        let key = if quote {
            q(&self.key)
        } else {
            self.key.clone()
        };
        let mut a = vec!["get".to_string(), key];
        a.extend(self.end.args());
        if self.rev != 0 {
            a.push(format!("--rev={}", self.rev));
        }
        if self.limit != 0 {
            a.push(format!("--limit={}", self.limit));
        }
        if let Some(s) = self.sort_by {
            a.push(format!("--sort-by={s}"));
        }
        if let Some(o) = self.order {
            a.push(format!("--order={o}"));
        }
        if self.keys_only {
            a.push("--keys-only".into());
        }
        a
    }

    /// The RangeRequest etcdctl sends.
    fn range(&self) -> Range {
        let (key, range_end) = self.end.key_range(&self.key);
        let target = match self.sort_by {
            None | Some("KEY") => SortTarget::Key,
            Some("VERSION") => SortTarget::Version,
            Some("CREATE") => SortTarget::Create,
            Some("MODIFY") => SortTarget::Mod,
            Some("VALUE") => SortTarget::Value,
            Some(other) => panic!("unknown sort target {other}"),
        };
        let order = match self.order {
            None => SortOrder::None,
            Some("ASCEND") => SortOrder::Ascend,
            Some("DESCEND") => SortOrder::Descend,
            Some(other) => panic!("unknown sort order {other}"),
        };
        // clientv3's WithSort: ascending by key is the server's natural order, so the client
        // sends no sort order at all.
        let order = if target == SortTarget::Key && order == SortOrder::Ascend {
            SortOrder::None
        } else {
            order
        };
        Range {
            key,
            range_end,
            limit: self.limit,
            revision: self.rev,
            sort_order: order,
            sort_target: target,
            keys_only: self.keys_only,
            ..Range::default()
        }
    }
}

#[derive(Clone, Debug)]
struct CmpSpec {
    /// value, version, create or mod.
    target: &'static str,
    key: String,
    /// =, !=, < or >.
    op: &'static str,
    operand: String,
}

impl CmpSpec {
    fn line(&self) -> String {
        format!(
            "{}({}) {} {}",
            self.target,
            q(&self.key),
            self.op,
            q(&self.operand)
        )
    }

    fn compare(&self) -> Compare {
        let op = match self.op {
            "=" => CompareOp::Equal,
            "!=" => CompareOp::NotEqual,
            "<" => CompareOp::Less,
            ">" => CompareOp::Greater,
            other => panic!("unknown compare op {other}"),
        };
        let num = || -> i64 {
            self.operand
                .parse()
                .expect("numeric compare operands are generated as numbers")
        };
        let target = match self.target {
            "value" => CompareTarget::Value(Bytes::copy_from_slice(self.operand.as_bytes())),
            "version" => CompareTarget::Version(num()),
            "create" => CompareTarget::CreateRevision(num()),
            "mod" => CompareTarget::ModRevision(num()),
            other => panic!("unknown compare target {other}"),
        };
        Compare::new(Bytes::copy_from_slice(self.key.as_bytes()), op, target)
    }
}

#[derive(Clone, Debug)]
enum TxnOp {
    Put(PutSpec),
    Del(DelSpec),
    Get(GetSpec),
}

impl TxnOp {
    fn line(&self) -> String {
        match self {
            TxnOp::Put(p) => p.txn_line(),
            TxnOp::Del(d) => d.words(true).join(" "),
            TxnOp::Get(g) => g.words(true).join(" "),
        }
    }

    fn op(&self) -> Op {
        match self {
            TxnOp::Put(p) => p.op(),
            TxnOp::Del(d) => d.op(),
            TxnOp::Get(g) => Op::Range(g.range()),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct TxnSpec {
    compares: Vec<CmpSpec>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl TxnSpec {
    /// etcdctl's txn input: compares, blank line, success ops, blank line, failure ops,
    /// blank line.
    fn input(&self) -> String {
        let mut s = String::new();
        for c in &self.compares {
            s.push_str(&c.line());
            s.push('\n');
        }
        s.push('\n');
        for op in &self.success {
            s.push_str(&op.line());
            s.push('\n');
        }
        s.push('\n');
        for op in &self.failure {
            s.push_str(&op.line());
            s.push('\n');
        }
        s.push('\n');
        s
    }

    fn op(&self) -> Op {
        Op::Txn(Txn {
            compares: self.compares.iter().map(CmpSpec::compare).collect(),
            success: self.success.iter().map(TxnOp::op).collect(),
            failure: self.failure.iter().map(TxnOp::op).collect(),
        })
    }
}

/// One generated operation.
#[derive(Clone, Debug)]
enum GenOp {
    Put(PutSpec),
    /// A put whose value (`len` bytes of 'x') etcdctl reads from stdin.
    BigPut {
        key: String,
        len: usize,
        prev_kv: bool,
    },
    Del(DelSpec),
    /// A standalone read: through `Mvcc::range`, or applied as an entry's op.
    Get {
        spec: GetSpec,
        via_apply: bool,
    },
    Txn(TxnSpec),
    Compact(i64),
}

impl GenOp {
    fn get(spec: GetSpec) -> GenOp {
        GenOp::Get {
            spec,
            via_apply: false,
        }
    }

    /// etcdctl's arguments, its stdin, and the JSON shape it prints.
    fn etcdctl(&self) -> (Vec<String>, Option<Vec<u8>>, Shape) {
        match self {
            GenOp::Put(p) => (p.args(), None, Shape::Put),
            GenOp::BigPut { key, len, prev_kv } => {
                let mut a = vec!["put".to_string(), key.clone()];
                if *prev_kv {
                    a.push("--prev-kv".into());
                }
                (a, Some(vec![b'x'; *len]), Shape::Put)
            }
            GenOp::Del(d) => (d.words(false), None, Shape::Del),
            GenOp::Get { spec, .. } => (spec.words(false), None, Shape::Range),
            GenOp::Txn(t) => (vec!["txn".into()], Some(t.input().into_bytes()), Shape::Txn),
            GenOp::Compact(rev) => (
                vec!["compaction".into(), rev.to_string()],
                None,
                Shape::Compact,
            ),
        }
    }

    fn op(&self) -> Op {
        match self {
            GenOp::Put(p) => p.op(),
            GenOp::BigPut { key, len, prev_kv } => Op::Put(Put {
                prev_kv: *prev_kv,
                ..Put::new(
                    Bytes::copy_from_slice(key.as_bytes()),
                    Bytes::from(vec![b'x'; *len]),
                )
            }),
            GenOp::Del(d) => d.op(),
            GenOp::Get { spec, .. } => Op::Range(spec.range()),
            GenOp::Txn(t) => t.op(),
            GenOp::Compact(rev) => Op::Compact(Compact { revision: *rev }),
        }
    }

    /// A shell line replaying this op with etcdctl (see [`script_preamble`]).
    fn replay(&self) -> String {
        let (args, _, _) = self.etcdctl();
        match self {
            GenOp::BigPut { len, .. } => format!(
                "head -c {len} /dev/zero | tr '\\0' x | etcdctl {}",
                shell_words(&args)
            ),
            GenOp::Txn(t) => {
                let mut input = t.input();
                // Long values become a command substitution (the heredoc is unquoted; the
                // generated lines hold no `$`, backquote or backslash otherwise).
                for op in t.success.iter().chain(&t.failure) {
                    if let TxnOp::Put(p) = op
                        && p.value.len() > 64
                    {
                        input = input.replacen(
                            &q(&p.value),
                            &format!("\"$(head -c {} /dev/zero | tr '\\0' x)\"", p.value.len()),
                            1,
                        );
                    }
                }
                format!("etcdctl txn <<EOF\n{input}EOF")
            }
            GenOp::Get {
                via_apply: true, ..
            } => {
                format!(
                    "etcdctl {}   # batchkv: applied as an entry",
                    shell_words(&args)
                )
            }
            _ => format!("etcdctl {}", shell_words(&args)),
        }
    }

    /// A short form for messages.
    fn short(&self) -> String {
        let r = self.replay();
        if r.len() > 400 {
            format!("{}… ({} bytes)", &r[..400], r.len())
        } else {
            r
        }
    }
}

fn script_preamble(seed: u64) -> String {
    format!(
        "#!/usr/bin/env bash\n\
         # etcd_diff replay, seed {seed:#x}: run against a FRESH etcd 3.4 (revision 1).\n\
         # Each op is preceded by `# op N`; differences found are noted after their op.\n\
         set -u\n\
         export ETCDCTL_API=3\n\
         etcdctl() {{ command etcdctl --endpoints=\"${{ETCD_ENDPOINT:-127.0.0.1:2379}}\" -w json \"$@\"; echo; }}\n\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The two sides

/// batchkv-mvcc in a temp dir; every applied op is its own entry.
#[derive(Debug)]
struct Ours {
    store: Mvcc,
    index: u64,
    _dir: tempfile::TempDir,
}

impl Ours {
    fn open() -> Ours {
        let dir = batchkv_testkit::temp_dir();
        let store = Mvcc::open(MvccConfig::new(dir.path()).write_mode(WriteMode::WAL))
            .expect("open a new store");
        Ours {
            store,
            index: 0,
            _dir: dir,
        }
    }

    fn run(&mut self, op: &GenOp) -> Answer {
        if let GenOp::Get {
            spec,
            via_apply: false,
        } = op
        {
            return etcd::ours_read(self.store.range(&spec.range()));
        }
        self.run_entry(std::slice::from_ref(op)).remove(0)
    }

    /// Applies `ops` as ONE entry (reads included, as entry ops).
    fn run_entry(&mut self, ops: &[GenOp]) -> Vec<Answer> {
        self.index += 1;
        let entry: Vec<Op> = ops.iter().map(GenOp::op).collect();
        match self.store.apply(self.index, &entry) {
            Ok(applied) => applied.results.iter().map(etcd::ours).collect(),
            Err(e) => ops
                .iter()
                .map(|_| Answer {
                    resp: Resp::Err(format!("store error: {e}")),
                    message: Some(e.to_string()),
                })
                .collect(),
        }
    }
}

/// etcd and batchkv side by side.
#[derive(Debug)]
struct Harness {
    etcd: Etcd,
    ours: Ours,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            etcd: Etcd::start(),
            ours: Ours::open(),
        }
    }

    /// Runs `op` on both sides: (etcd's answer, ours).
    fn run(&mut self, op: &GenOp) -> (Answer, Answer) {
        let theirs = self.run_etcd(op);
        let ours = self.ours.run(op);
        (theirs, ours)
    }

    /// Runs `op` through etcdctl.
    fn run_etcd(&self, op: &GenOp) -> Answer {
        let (args, stdin, shape) = op.etcdctl();
        let out = self.etcd.ctl_json(&args, stdin.as_deref());
        etcd::etcds(&out, shape)
    }
}

/// Why two answers differ, if they do.
fn difference(theirs: &Answer, ours: &Answer) -> Option<String> {
    if theirs.resp != ours.resp {
        return Some("different answers".into());
    }
    match (&theirs.message, &ours.message) {
        (Some(t), Some(o)) if !t.ends_with(o.as_str()) => Some(format!(
            "same error kind, but batchkv's message {o:?} is not etcd's {t:?}"
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

#[derive(Debug)]
struct Gen {
    rng: Rng,
    /// Big-value ops left (each moves ~2 MB through etcdctl and etcd).
    big_left: usize,
}

/// What the generator knows of the state (from batchkv's side; where it differs from etcd's,
/// answers differ and are reported anyway).
#[derive(Debug)]
struct State<'a> {
    store: &'a Mvcc,
    current: i64,
    compacted: i64,
}

impl State<'_> {
    fn of(store: &Mvcc) -> State<'_> {
        State {
            store,
            current: store.current_revision(),
            compacted: store.compacted_revision().unwrap_or(0),
        }
    }

    fn kv(&self, key: &str) -> Option<batchkv_mvcc::KeyValue> {
        self.store.get(key.as_bytes()).expect("read the store")
    }
}

impl Gen {
    fn key(&mut self) -> String {
        self.rng.pick(&KEYS).to_string()
    }

    fn value(&mut self) -> String {
        if self.rng.pct(20) {
            let len = 1 + self.rng.below(6);
            (0..len)
                .map(|_| self.rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789") as char)
                .collect()
        } else {
            self.rng.pick(&VALUES).to_string()
        }
    }

    fn end(&mut self, key: &str, allow_all: bool) -> (String, End) {
        let r = self.rng.below(100);
        if allow_all && r < 4 {
            // The whole key space: "" with --from-key or --prefix.
            let end = if self.rng.pct(50) {
                End::FromKey
            } else {
                End::Prefix
            };
            return (String::new(), end);
        }
        match r {
            0..=44 => (key.into(), End::One),
            45..=64 => (
                self.rng.pick(&BOUNDS).into(),
                End::To(self.rng.pick(&BOUNDS).into()),
            ),
            65..=87 => (self.rng.pick(&PREFIXES).into(), End::Prefix),
            _ => (self.rng.pick(&BOUNDS).into(), End::FromKey),
        }
    }

    /// A revision to read at: mostly none, else around the compacted and current revisions.
    fn read_rev(&mut self, s: &State<'_>) -> i64 {
        match self.rng.below(20) {
            0..=11 => 0,
            12 => s.compacted.max(1),
            13 => (s.compacted - 1).max(1),
            14 => s.current + 1 + self.rng.below(3) as i64,
            15 => s.current,
            _ => self.rng.between((s.compacted - 2).max(1), s.current),
        }
    }

    fn put_spec(&mut self, key: String) -> PutSpec {
        let mut p = PutSpec::plain(&key, &self.value());
        match self.rng.below(100) {
            0..=64 => {}
            65..=79 => p.prev_kv = true,
            80..=87 => {
                p.ignore_value = true;
                p.value.clear();
                p.prev_kv = self.rng.pct(50);
                p.ignore_lease = self.rng.pct(25);
            }
            88..=94 => {
                p.ignore_lease = true;
                p.prev_kv = self.rng.pct(30);
            }
            _ => p.lease = LEASE,
        }
        p
    }

    fn del_spec(&mut self, allow_all: bool) -> DelSpec {
        let key = self.key();
        let (key, end) = self.end(&key, allow_all);
        DelSpec {
            key,
            end,
            prev_kv: self.rng.pct(40),
        }
    }

    fn get_spec(&mut self, s: &State<'_>, allow_all: bool, rev_pct: usize) -> GetSpec {
        let key = self.key();
        let (key, end) = self.end(&key, allow_all);
        GetSpec {
            key,
            end,
            rev: if self.rng.pct(rev_pct) {
                self.read_rev(s)
            } else {
                0
            },
            limit: if self.rng.pct(30) {
                self.rng.between(1, 4)
            } else {
                0
            },
            sort_by: self.rng.pct(40).then(|| self.rng.pick(&SORT_TARGETS)),
            order: self.rng.pct(40).then(|| self.rng.pick(&ORDERS)),
            keys_only: self.rng.pct(15),
        }
    }

    fn compare(&mut self, s: &State<'_>) -> CmpSpec {
        let key = self.key();
        let kv = s.kv(&key);
        let target = self.rng.pick(&["value", "version", "create", "mod"]);
        let op = self.rng.pick(&["=", "=", "!=", "<", ">"]);
        // Half the time an operand near the key's real one, so compares hold as often as not.
        let near = self.rng.pct(60);
        let operand = match target {
            "value" => match (&kv, near) {
                (Some(kv), true) => String::from_utf8_lossy(&kv.value).into_owned(),
                _ => self.value(),
            },
            _ => {
                let real = kv.as_ref().map_or(0, |kv| match target {
                    "version" => kv.version,
                    "create" => kv.create_revision,
                    _ => kv.mod_revision,
                });
                if near {
                    (real + self.rng.between(-1, 1)).max(0).to_string()
                } else {
                    self.rng.between(0, s.current + 1).to_string()
                }
            }
        };
        CmpSpec {
            target,
            key,
            op,
            operand,
        }
    }

    /// Keys a branch op writes, conservatively (a from-key delete as everything from its key).
    fn conflicts(ops: &[TxnOp], new: &TxnOp) -> bool {
        let covers = |d: &DelSpec, k: &str| {
            let (start, end) = d.end.key_range(&d.key);
            let k = k.as_bytes();
            if end.is_empty() {
                k == start.as_ref()
            } else if end.as_ref() == b"\0" {
                k >= start.as_ref()
            } else {
                k >= start.as_ref() && k < end.as_ref()
            }
        };
        ops.iter().any(|old| match (old, new) {
            (TxnOp::Put(a), TxnOp::Put(b)) => a.key == b.key,
            (TxnOp::Del(d), TxnOp::Put(p)) | (TxnOp::Put(p), TxnOp::Del(d)) => covers(d, &p.key),
            _ => false,
        })
    }

    fn branch(&mut self, s: &State<'_>, valid: bool) -> Vec<TxnOp> {
        let n = self.rng.below(5);
        let mut ops: Vec<TxnOp> = Vec::with_capacity(n + 1);
        for _ in 0..n {
            for _attempt in 0..4 {
                let op = match self.rng.below(100) {
                    0..=44 => {
                        let key = self.key();
                        TxnOp::Put(self.put_spec(key))
                    }
                    45..=64 => TxnOp::Del(self.del_spec(false)),
                    _ => TxnOp::Get(self.get_spec(s, false, 12)),
                };
                if valid && Self::conflicts(&ops, &op) {
                    continue;
                }
                // Read-your-writes: sometimes read back what was just written.
                let ryw = match &op {
                    TxnOp::Put(p) if self.rng.pct(30) => Some(GetSpec::key(&p.key)),
                    TxnOp::Del(d) if self.rng.pct(30) => Some(GetSpec {
                        end: d.end.clone(),
                        ..GetSpec::key(&d.key)
                    }),
                    _ => None,
                };
                ops.push(op);
                if let Some(g) = ryw {
                    ops.push(TxnOp::Get(g));
                }
                break;
            }
        }
        ops
    }

    fn txn(&mut self, s: &State<'_>) -> TxnSpec {
        let valid = self.rng.pct(75);
        let n = self.rng.below(4);
        TxnSpec {
            compares: (0..n).map(|_| self.compare(s)).collect(),
            success: self.branch(s, valid),
            failure: self.branch(s, valid),
        }
    }

    fn compact_rev(&mut self, s: &State<'_>) -> i64 {
        match self.rng.below(10) {
            0 if s.compacted > 0 => s.compacted,
            1 if s.compacted > 1 => s.compacted - 1,
            2 => s.current + 1 + self.rng.below(3) as i64,
            3 => s.current,
            _ if s.compacted < s.current => self.rng.between(s.compacted + 1, s.current),
            _ => s.current,
        }
    }

    /// The next random op.
    fn random(&mut self, s: &State<'_>) -> GenOp {
        match self.rng.below(100) {
            0..=33 => {
                let key = self.key();
                GenOp::Put(self.put_spec(key))
            }
            34..=45 => {
                let all = self.rng.pct(10);
                GenOp::Del(self.del_spec(all))
            }
            46..=74 => {
                let spec = self.get_spec(s, true, 40);
                GenOp::Get {
                    spec,
                    via_apply: self.rng.pct(25),
                }
            }
            75..=96 => GenOp::Txn(self.txn(s)),
            _ => GenOp::Compact(self.compact_rev(s)),
        }
    }

    /// The ops of the `n`-th scheduled special case: the limits and the edges the random mix
    /// reaches rarely. Each returns a short sequence.
    fn special(&mut self, n: usize, s: &State<'_>) -> Vec<GenOp> {
        const SPECIALS: usize = 16;
        let put = |k: &str, v: &str| TxnOp::Put(PutSpec::plain(k, v));
        let key = self.key();
        match n % SPECIALS {
            // 129 puts in one branch: too many ops.
            0 => vec![GenOp::Txn(TxnSpec {
                success: (0..=MAX_TXN_OPS)
                    .map(|i| put(&format!("m{i:03}"), "v"))
                    .collect(),
                ..TxnSpec::default()
            })],
            // 129 compares: too many ops.
            1 => vec![GenOp::Txn(TxnSpec {
                compares: (0..=MAX_TXN_OPS)
                    .map(|_| CmpSpec {
                        target: "version",
                        key: key.clone(),
                        op: ">",
                        operand: "0".into(),
                    })
                    .collect(),
                success: vec![put(&key, "tm")],
                ..TxnSpec::default()
            })],
            // Exactly 128 puts is allowed; the keys are removed again right after.
            2 => vec![
                GenOp::Txn(TxnSpec {
                    success: (0..MAX_TXN_OPS)
                        .map(|i| put(&format!("m{i:03}"), "v"))
                        .collect(),
                    failure: (0..MAX_TXN_OPS)
                        .map(|_| TxnOp::Get(GetSpec::key(&key)))
                        .collect(),
                    compares: vec![CmpSpec {
                        target: "version",
                        key: key.clone(),
                        op: self.rng.pick(&["=", "!="]),
                        operand: "0".into(),
                    }],
                }),
                GenOp::Del(DelSpec {
                    key: "m".into(),
                    end: End::Prefix,
                    prev_kv: false,
                }),
            ],
            // A value over 1.5 MiB (and under gRPC's 2 MiB): request too large.
            3 if self.big_left > 0 => {
                self.big_left -= 1;
                vec![GenOp::BigPut {
                    key,
                    len: 1_600_000 + self.rng.below(350_000),
                    prev_kv: false,
                }]
            }
            // A large value that fits, then read back.
            4 if self.big_left > 0 => {
                self.big_left -= 1;
                vec![
                    GenOp::BigPut {
                        key: key.clone(),
                        len: 900_000 + self.rng.below(300_000),
                        prev_kv: self.rng.pct(50),
                    },
                    GenOp::get(GetSpec::key(&key)),
                ]
            }
            // A txn whose two values together are too large.
            5 if self.big_left > 0 => {
                self.big_left -= 1;
                let big = "x".repeat(820_000 + self.rng.below(100_000));
                vec![GenOp::Txn(TxnSpec {
                    success: vec![put("a0", &big), put("b0", &big)],
                    ..TxnSpec::default()
                })]
            }
            // Empty keys: put, get, del, a compare, a txn op.
            6 => vec![
                GenOp::Put(PutSpec::plain("", "v")),
                GenOp::get(GetSpec::key("")),
                GenOp::Del(DelSpec {
                    key: String::new(),
                    end: End::One,
                    prev_kv: false,
                }),
            ],
            7 => vec![
                GenOp::Txn(TxnSpec {
                    compares: vec![CmpSpec {
                        target: "value",
                        key: String::new(),
                        op: "=",
                        operand: "v".into(),
                    }],
                    success: vec![put(&key, "ek")],
                    ..TxnSpec::default()
                }),
                GenOp::Txn(TxnSpec {
                    success: vec![put(&key, "ek"), TxnOp::Get(GetSpec::key(""))],
                    ..TxnSpec::default()
                }),
            ],
            // Duplicate keys in one branch: put+put, del+put, put+range del, prefix del+put.
            8 => {
                let other = self.key();
                vec![
                    GenOp::Txn(TxnSpec {
                        success: vec![put(&key, "d1"), put(&key, "d2")],
                        ..TxnSpec::default()
                    }),
                    GenOp::Txn(TxnSpec {
                        failure: vec![
                            TxnOp::Del(DelSpec {
                                key: key.clone(),
                                end: End::One,
                                prev_kv: false,
                            }),
                            put(&key, "d3"),
                        ],
                        ..TxnSpec::default()
                    }),
                    GenOp::Txn(TxnSpec {
                        success: vec![
                            put("a2", "d4"),
                            TxnOp::Del(DelSpec {
                                key: "a1".into(),
                                end: End::To("a3".into()),
                                prev_kv: true,
                            }),
                        ],
                        ..TxnSpec::default()
                    }),
                    GenOp::Txn(TxnSpec {
                        success: vec![
                            TxnOp::Del(DelSpec {
                                key: "b".into(),
                                end: End::Prefix,
                                prev_kv: false,
                            }),
                            put(&other, "d5"),
                        ],
                        ..TxnSpec::default()
                    }),
                ]
            }
            // etcd checks puts against a from-key delete's interval [key, "\0"), which holds
            // nothing: the put is allowed, whichever order they come in.
            9 => vec![
                GenOp::Txn(TxnSpec {
                    success: vec![
                        TxnOp::Del(DelSpec {
                            key: "a3".into(),
                            end: End::FromKey,
                            prev_kv: true,
                        }),
                        put("b1", "fk"),
                        TxnOp::Get(GetSpec {
                            end: End::FromKey,
                            ..GetSpec::key("a")
                        }),
                    ],
                    ..TxnSpec::default()
                }),
                GenOp::Txn(TxnSpec {
                    success: vec![
                        put("b2", "fk"),
                        TxnOp::Del(DelSpec {
                            key: "b".into(),
                            end: End::FromKey,
                            prev_kv: true,
                        }),
                        TxnOp::Get(GetSpec {
                            end: End::Prefix,
                            ..GetSpec::key("b")
                        }),
                    ],
                    ..TxnSpec::default()
                }),
            ],
            // Read-your-writes: writes, then reads of them, in one txn.
            10 => vec![GenOp::Txn(TxnSpec {
                compares: vec![],
                success: vec![
                    put("a1", "ryw"),
                    TxnOp::Get(GetSpec::key("a1")),
                    TxnOp::Del(DelSpec {
                        key: "b".into(),
                        end: End::Prefix,
                        prev_kv: true,
                    }),
                    TxnOp::Get(GetSpec {
                        end: End::FromKey,
                        ..GetSpec::key("a")
                    }),
                    TxnOp::Get(GetSpec {
                        rev: s.current,
                        end: End::FromKey,
                        ..GetSpec::key("a")
                    }),
                ],
                failure: vec![],
            })],
            // The whole key space, now and at a past revision.
            11 => {
                let all = GetSpec {
                    end: End::FromKey,
                    ..GetSpec::key("")
                };
                vec![
                    GenOp::get(all.clone()),
                    GenOp::get(GetSpec {
                        rev: self.rng.between(s.compacted.max(1), s.current),
                        ..all
                    }),
                ]
            }
            // A compare that fails for sure, and a failure branch that writes.
            12 => vec![GenOp::Txn(TxnSpec {
                compares: vec![CmpSpec {
                    target: "value",
                    key: key.clone(),
                    op: "=",
                    operand: "never".into(),
                }],
                success: vec![put(&key, "s")],
                failure: vec![put(&key, "f"), TxnOp::Get(GetSpec::key(&key))],
            })],
            // Compaction edges: at the current revision, again (compacted), in the future;
            // reads at, below and above it.
            13 => vec![
                GenOp::Compact(s.current),
                GenOp::Compact(s.current),
                GenOp::Compact(s.current + 1),
                GenOp::get(GetSpec {
                    rev: s.current,
                    ..GetSpec::key(&key)
                }),
                GenOp::get(GetSpec {
                    rev: (s.current - 1).max(1),
                    ..GetSpec::key(&key)
                }),
                GenOp::get(GetSpec {
                    rev: s.current + 1,
                    ..GetSpec::key(&key)
                }),
            ],
            // Everything deleted at once, then recreated.
            14 => vec![
                GenOp::Del(DelSpec {
                    key: String::new(),
                    end: End::FromKey,
                    prev_kv: true,
                }),
                GenOp::Put(PutSpec::plain(&key, "again")),
            ],
            // Sorting by a target without an order, with a limit: etcd sorts only the first
            // limit+1 keys (it drops the limit only when an order is given).
            _ => vec![GenOp::get(GetSpec {
                end: End::Prefix,
                limit: self.rng.between(1, 3),
                sort_by: Some(self.rng.pick(&SORT_TARGETS[1..])),
                ..GetSpec::key(self.rng.pick(&["a", "b"]))
            })],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage

/// Labels for the coverage table: what the op exercised and how etcd answered.
fn labels(op: &GenOp, etcd_resp: &Resp) -> Vec<String> {
    let mut l: Vec<String> = Vec::new();
    let put_labels = |p: &PutSpec, prefix: &str, l: &mut Vec<String>| {
        l.push(format!("{prefix}put"));
        if p.prev_kv {
            l.push(format!("{prefix}put --prev-kv"));
        }
        if p.ignore_value {
            l.push(format!("{prefix}put --ignore-value"));
        }
        if p.ignore_lease {
            l.push(format!("{prefix}put --ignore-lease"));
        }
        if p.lease != 0 {
            l.push(format!("{prefix}put --lease"));
        }
    };
    let get_labels = |g: &GetSpec, prefix: &str, l: &mut Vec<String>| {
        l.push(format!("{prefix}get {}", g.end.label()));
        if g.rev != 0 {
            l.push(format!("{prefix}get --rev"));
        }
        if g.limit != 0 {
            l.push(format!("{prefix}get --limit"));
        }
        if let Some(s) = g.sort_by {
            l.push(format!("{prefix}get --sort-by={s}"));
        }
        if let Some(o) = g.order {
            l.push(format!("{prefix}get --order={o}"));
        }
        if g.keys_only {
            l.push(format!("{prefix}get --keys-only"));
        }
    };
    match op {
        GenOp::Put(p) => put_labels(p, "", &mut l),
        GenOp::BigPut { .. } => l.push("put large value (stdin)".into()),
        GenOp::Del(d) => {
            l.push(format!("del {}", d.end.label()));
            if d.prev_kv {
                l.push("del --prev-kv".into());
            }
        }
        GenOp::Get { spec, via_apply } => {
            get_labels(spec, "", &mut l);
            if *via_apply {
                l.push("get applied as an entry".into());
            }
        }
        GenOp::Txn(t) => {
            l.push("txn".into());
            for c in &t.compares {
                l.push(format!("txn compare {}", c.target));
                l.push(format!("txn compare {}", c.op));
            }
            for (branch, ops) in [("success", &t.success), ("failure", &t.failure)] {
                for op in ops {
                    match op {
                        TxnOp::Put(p) => put_labels(p, &format!("txn {branch}: "), &mut l),
                        TxnOp::Del(d) => l.push(format!("txn {branch}: del {}", d.end.label())),
                        TxnOp::Get(g) => get_labels(g, &format!("txn {branch}: "), &mut l),
                    }
                }
            }
        }
        GenOp::Compact(_) => l.push("compaction".into()),
    }
    match etcd_resp {
        Resp::Err(kind) => l.push(format!("outcome: error {kind}")),
        Resp::Txn {
            succeeded,
            responses,
            ..
        } => {
            l.push(format!("outcome: txn succeeded={succeeded}"));
            if let GenOp::Txn(t) = op {
                let ran = if *succeeded { &t.success } else { &t.failure };
                let mut written: Vec<&str> = Vec::new();
                for (op, resp) in ran.iter().zip(responses) {
                    match (op, resp) {
                        (TxnOp::Put(p), _) => written.push(&p.key),
                        (TxnOp::Get(_), Resp::Range { kvs, .. })
                            if kvs
                                .iter()
                                .any(|kv| written.iter().any(|w| w.as_bytes() == kv.key)) =>
                        {
                            l.push("outcome: txn read its own write".into());
                        }
                        _ => {}
                    }
                }
            }
        }
        Resp::Del { deleted, .. } if *deleted > 0 => l.push("outcome: deleted keys".into()),
        Resp::Range { more: true, .. } => l.push("outcome: range more=true".into()),
        Resp::Compact => l.push("outcome: compacted".into()),
        _ => {}
    }
    l
}

/// What every run must have exercised.
const REQUIRED: &[&str] = &[
    "put",
    "put --prev-kv",
    "put --ignore-value",
    "put --ignore-lease",
    "put --lease",
    "put large value (stdin)",
    "del one",
    "del range",
    "del prefix",
    "del from-key",
    "del --prev-kv",
    "get one",
    "get range",
    "get prefix",
    "get from-key",
    "get --rev",
    "get --limit",
    "get --sort-by=KEY",
    "get --sort-by=VERSION",
    "get --sort-by=CREATE",
    "get --sort-by=MODIFY",
    "get --sort-by=VALUE",
    "get --order=ASCEND",
    "get --order=DESCEND",
    "get --keys-only",
    "get applied as an entry",
    "ops grouped in one entry",
    "txn compare value",
    "txn compare version",
    "txn compare create",
    "txn compare mod",
    "txn compare =",
    "txn compare !=",
    "txn compare <",
    "txn compare >",
    "txn success: put",
    "txn success: del one",
    "txn success: get one",
    "txn failure: put",
    "txn failure: del one",
    "txn failure: get one",
    "txn success: get --rev",
    "compaction",
    "outcome: compacted",
    "outcome: txn succeeded=true",
    "outcome: txn succeeded=false",
    "outcome: txn read its own write",
    "outcome: deleted keys",
    "outcome: range more=true",
    "outcome: error compacted",
    "outcome: error future-revision",
    "outcome: error empty-key",
    "outcome: error too-many-ops",
    "outcome: error request-too-large",
    "outcome: error duplicate-key",
    "outcome: error lease-not-found",
    "outcome: error key-not-found",
];

// ---------------------------------------------------------------------------------------------
// The tests

#[derive(Debug)]
struct Difference {
    index: usize,
    op: String,
    why: String,
    theirs: Answer,
    ours: Answer,
}

#[test]
fn random_ops_match_etcd() {
    let seed = env_u64("BATCHKV_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let ops = env_u64("BATCHKV_DIFF_OPS")
        .map_or(DEFAULT_OPS, |n| n as usize)
        .max(DEFAULT_OPS);
    println!(
        "etcd_diff: seed {seed:#x} ({seed}), {ops} ops (BATCHKV_DIFF_SEED / BATCHKV_DIFF_OPS)"
    );
    let started = Instant::now();
    let mut h = Harness::new();
    let mut generator = Gen {
        rng: Rng(seed),
        big_left: 6,
    };
    let mut script = script_preamble(seed);
    let mut diffs: Vec<Difference> = Vec::new();
    let mut coverage: BTreeMap<String, usize> = BTreeMap::new();
    let mut specials = 0usize;
    let mut next_special = 20usize;
    let mut generated = 0usize;
    let mut queue: Vec<GenOp> = Vec::new();
    let mut index = 0usize;
    let mut entries = 0usize;
    while index < ops {
        // Most entries hold one op, as etcd's raft entries hold one request; some hold up to
        // six consecutive ops, which batchkv must answer exactly as etcd answers them one by
        // one (each op sees the ops before it in the entry).
        let size = if generator.rng.pct(25) {
            2 + generator.rng.below(5)
        } else {
            1
        };
        let mut group: Vec<GenOp> = Vec::with_capacity(size);
        while group.len() < size && index + group.len() < ops {
            if queue.is_empty() {
                let state = State::of(&h.ours.store);
                if generated >= next_special {
                    queue = generator.special(specials, &state);
                    queue.reverse();
                    specials += 1;
                    next_special += 40;
                }
                if queue.is_empty() {
                    queue.push(generator.random(&state));
                }
            }
            generated += 1;
            group.push(queue.pop().expect("the queue was just filled"));
        }
        entries += 1;
        let answers: Vec<(Answer, Answer)> = if group.len() == 1 {
            vec![h.run(&group[0])]
        } else {
            // Inside an entry, reads are entry ops too.
            for op in &mut group {
                if let GenOp::Get { via_apply, .. } = op {
                    *via_apply = true;
                }
            }
            let theirs: Vec<Answer> = group.iter().map(|op| h.run_etcd(op)).collect();
            let ours = h.ours.run_entry(&group);
            theirs.into_iter().zip(ours).collect()
        };
        if group.len() > 1 {
            let _ = writeln!(
                script,
                "# batchkv entry {entries}: ops {}..={} in one entry",
                index + 1,
                index + group.len()
            );
        }
        for (op, (theirs, ours)) in group.iter().zip(answers) {
            index += 1;
            let _ = writeln!(script, "# op {index}\n{}", op.replay());
            for label in labels(op, &theirs.resp) {
                *coverage.entry(label).or_default() += 1;
            }
            if group.len() > 1 {
                *coverage
                    .entry("ops grouped in one entry".into())
                    .or_default() += 1;
            }
            if let Some(why) = difference(&theirs, &ours) {
                let _ = writeln!(
                    script,
                    "# DIFF at op {index}: {why}\n#   etcd:    {:?}\n#   batchkv: {:?}",
                    theirs.resp, ours.resp
                );
                let grouped = if group.len() > 1 {
                    format!(" (batchkv: one of {} ops of entry {entries})", group.len())
                } else {
                    String::new()
                };
                diffs.push(Difference {
                    index,
                    op: format!("{}{grouped}", op.short()),
                    why,
                    theirs,
                    ours,
                });
            }
        }
    }
    let elapsed = started.elapsed();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("etcd_diff-{seed:x}.sh"));
    std::fs::write(&path, &script).expect("write the replay script");

    println!(
        "etcd_diff: {index} ops in {entries} batchkv entries, {:.1}s, {} differences; replay \
         script: {}",
        elapsed.as_secs_f64(),
        diffs.len(),
        path.display()
    );
    println!("coverage (label: count):");
    for (label, n) in &coverage {
        println!("  {label}: {n}");
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|l| !coverage.contains_key(*l))
        .collect();

    if !diffs.is_empty() {
        let mut report = format!(
            "{} difference(s) between etcd 3.4 and batchkv-mvcc in {index} ops, seed {seed:#x} \
             (rerun with BATCHKV_DIFF_SEED={seed:#x}).\nThe whole run as a replayable etcdctl \
             script (ops up to each difference, differences marked): {}\n",
            diffs.len(),
            path.display()
        );
        for d in diffs.iter().take(25) {
            let _ = write!(
                report,
                "\n--- op {}: {}\n{}\n  etcd:    {:?}{}\n  batchkv: {:?}{}\n",
                d.index,
                d.why,
                d.op,
                d.theirs.resp,
                d.theirs
                    .message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default(),
                d.ours.resp,
                d.ours
                    .message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default(),
            );
        }
        if diffs.len() > 25 {
            let _ = write!(
                report,
                "\n… and {} more (see the script)\n",
                diffs.len() - 25
            );
        }
        panic!("{report}");
    }
    assert!(
        missing.is_empty(),
        "seed {seed:#x} did not exercise: {missing:?} (the generator must cover these)"
    );
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> etcd::Kv {
    etcd::Kv {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        create,
        modified,
        version,
        lease: 0,
    }
}

fn one(rev: i64, kvs: Vec<etcd::Kv>) -> Resp {
    Resp::Range {
        rev,
        count: kvs.len() as i64,
        kvs,
        more: false,
    }
}

/// The sequence table of docs (etcd-semantics.md, "Revisions"), on both sides.
#[test]
fn revisions_table_matches_etcd() {
    let put = |k: &str, v: &str| GenOp::Put(PutSpec::plain(k, v));
    let get = |k: &str, rev: i64| {
        GenOp::get(GetSpec {
            rev,
            ..GetSpec::key(k)
        })
    };
    let del = |k: &str, end: End, prev_kv: bool| {
        GenOp::Del(DelSpec {
            key: k.into(),
            end,
            prev_kv,
        })
    };
    let steps: Vec<(GenOp, Resp)> = vec![
        (
            put("foo", "v1"),
            Resp::Put {
                rev: 2,
                prev_kv: None,
            },
        ),
        (get("foo", 0), one(2, vec![kv("foo", "v1", 2, 2, 1)])),
        (
            put("foo", "v2"),
            Resp::Put {
                rev: 3,
                prev_kv: None,
            },
        ),
        (get("foo", 0), one(3, vec![kv("foo", "v2", 2, 3, 2)])),
        (
            put("bar", "b1"),
            Resp::Put {
                rev: 4,
                prev_kv: None,
            },
        ),
        (
            put("foo", "v3"),
            Resp::Put {
                rev: 5,
                prev_kv: None,
            },
        ),
        (get("foo", 0), one(5, vec![kv("foo", "v3", 2, 5, 3)])),
        (
            del("foo", End::One, true),
            Resp::Del {
                rev: 6,
                deleted: 1,
                prev_kvs: vec![kv("foo", "v3", 2, 5, 3)],
            },
        ),
        (
            del("foo", End::One, false),
            Resp::Del {
                rev: 6,
                deleted: 0,
                prev_kvs: vec![],
            },
        ),
        (
            del("zzz", End::Prefix, false),
            Resp::Del {
                rev: 6,
                deleted: 0,
                prev_kvs: vec![],
            },
        ),
        (
            put("foo", "v4"),
            Resp::Put {
                rev: 7,
                prev_kv: None,
            },
        ),
        (get("foo", 0), one(7, vec![kv("foo", "v4", 7, 7, 1)])),
        (
            put("foo", "v4"),
            Resp::Put {
                rev: 8,
                prev_kv: None,
            },
        ),
        (get("foo", 0), one(8, vec![kv("foo", "v4", 7, 8, 2)])),
        (
            GenOp::Put(PutSpec {
                prev_kv: true,
                ..PutSpec::plain("foo", "v5")
            }),
            Resp::Put {
                rev: 9,
                prev_kv: Some(kv("foo", "v4", 7, 8, 2)),
            },
        ),
        // History reads: the header is the current revision.
        (get("foo", 5), one(9, vec![kv("foo", "v3", 2, 5, 3)])),
        (get("foo", 6), one(9, vec![])),
        (get("foo", 7), one(9, vec![kv("foo", "v4", 7, 7, 1)])),
        (get("foo", 100), Resp::Err("future-revision".into())),
    ];
    run_steps(&steps);
}

/// Runs `steps` on a fresh etcd and a fresh store; each answer must be the expected one on
/// both sides.
fn run_steps(steps: &[(GenOp, Resp)]) {
    let mut h = Harness::new();
    let mut failures = Vec::new();
    for (i, (op, expected)) in steps.iter().enumerate() {
        let (theirs, ours) = h.run(op);
        for (side, got) in [("etcd", &theirs), ("batchkv", &ours)] {
            if &got.resp != expected {
                failures.push(format!(
                    "step {} `{}`: {side} answered {:?}{}, expected {:?}",
                    i + 1,
                    op.short(),
                    got.resp,
                    got.message
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default(),
                    expected
                ));
            }
        }
        if let Some(why) = difference(&theirs, &ours) {
            failures.push(format!("step {} `{}`: {why}", i + 1, op.short()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Edges where the random run found batchkv answering differently from etcd 3.4.23 (the
/// expected answers are etcd's, observed on that server).
#[test]
fn edges_found_by_the_random_run_match_etcd() {
    let put = |k: &str| GenOp::Put(PutSpec::plain(k, "v"));
    let put_ok = |rev: i64| Resp::Put { rev, prev_kv: None };
    let steps = vec![
        (put("s2"), put_ok(2)),
        (put("s0"), put_ok(3)),
        (put("s1"), put_ok(4)),
        // A sort target without an order, with a limit: etcd reads limit+1 keys in key order
        // (s0, s1) and sorts only those; it reads everything only when an order is given.
        (
            GenOp::get(GetSpec {
                end: End::Prefix,
                limit: 1,
                sort_by: Some("CREATE"),
                ..GetSpec::key("s")
            }),
            Resp::Range {
                rev: 4,
                kvs: vec![kv("s0", "v", 3, 3, 1)],
                more: true,
                count: 3,
            },
        ),
        (
            GenOp::get(GetSpec {
                end: End::Prefix,
                limit: 1,
                sort_by: Some("CREATE"),
                order: Some("ASCEND"),
                ..GetSpec::key("s")
            }),
            Resp::Range {
                rev: 4,
                kvs: vec![kv("s2", "v", 2, 2, 1)],
                more: true,
                count: 3,
            },
        ),
        (GenOp::Compact(3), Resp::Compact),
        // etcd checks every put of the txn's path (lease, ignore_value on a missing key)
        // before any of its reads (compacted or future revision), whatever their order.
        (
            GenOp::Txn(TxnSpec {
                success: vec![
                    TxnOp::Get(GetSpec {
                        rev: 2,
                        ..GetSpec::key("s0")
                    }),
                    TxnOp::Put(PutSpec {
                        ignore_value: true,
                        ..PutSpec::plain("y", "")
                    }),
                ],
                ..TxnSpec::default()
            }),
            Resp::Err("key-not-found".into()),
        ),
        (
            GenOp::Txn(TxnSpec {
                success: vec![
                    TxnOp::Get(GetSpec {
                        rev: 9,
                        ..GetSpec::key("s0")
                    }),
                    TxnOp::Put(PutSpec {
                        lease: LEASE,
                        ..PutSpec::plain("y", "v")
                    }),
                ],
                ..TxnSpec::default()
            }),
            Resp::Err("lease-not-found".into()),
        ),
    ];
    run_steps(&steps);
}

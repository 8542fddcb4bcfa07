//! Preparing one entry: every op runs against the state the ops before it left (committed
//! state + [`Overlay`]), its writes go into the entry's one engine batch, and what the index
//! and the watchers must learn is collected for after the commit.

use std::collections::HashSet;

use batchkv_codec::{
    Compare, CompareOp, CompareTarget, DeleteRange, LeaseGrant, LeaseRevoke, Op, Put, Range, Txn,
};
use batchkv_engine::{Batch, Cf};
use bytes::Bytes;

use crate::error::{MvccError, OpError};
use crate::kv::{Event, EventKind, KeyValue};
use crate::lease::{LeaseChanges, MAX_LEASE_TTL};
use crate::response::{
    CompactResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, OpResponse,
    PutResponse, TxnResponse,
};
use crate::revision::Revision;
use crate::store::META_NEXT_LEASE;
use crate::tree_index::KeySpan;
use crate::view::{Lookup, Pending, View, check_read_revision};
use batchkv_codec::record;

/// A change the index learns once the entry has committed.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) key: Bytes,
    pub(crate) rev: Revision,
    pub(crate) tombstone: bool,
    /// A put's value and lease, for the index's value cache.
    pub(crate) latest: Option<(Bytes, i64)>,
}

/// Limits the ops are checked against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_txn_ops: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) min_lease_ttl: i64,
}

/// One entry being prepared.
pub(crate) struct Entry<'a> {
    pub(crate) view: View<'a>,
    pub(crate) batch: Batch<'a>,
    pub(crate) changes: Vec<Change>,
    pub(crate) events: Vec<Event>,
    /// Whether anyone listens (events cost a clone of each key-value).
    pub(crate) collect_events: bool,
    /// The latest revision, counting the ops prepared so far.
    pub(crate) rev: i64,
    /// The compacted revision, counting a compaction prepared in this entry (-1: none).
    pub(crate) compacted: i64,
    /// A compaction this entry makes.
    pub(crate) compact: Option<i64>,
    pub(crate) limits: Limits,
    pub(crate) scratch: Vec<u8>,
    /// What the entry does to the leases.
    pub(crate) lease_changes: LeaseChanges,
    pub(crate) lease_cf: Cf,
    pub(crate) meta_cf: Cf,
}

/// One changing request's revision: its writes are `(begin + 1, sub)`.
struct Tx {
    begin: i64,
    sub: i64,
}

impl Tx {
    /// The revision reads inside the request see: its own writes count once it has any.
    fn read_rev(&self) -> i64 {
        self.begin + i64::from(self.sub > 0)
    }

    fn next(&mut self) -> Revision {
        let r = Revision::new(self.begin + 1, self.sub);
        self.sub += 1;
        r
    }
}

type OpResult = Result<Result<OpResponse, OpError>, MvccError>;

impl<'a> Entry<'a> {
    /// Prepares one op of the entry.
    pub(crate) fn op(&mut self, op: &Op) -> OpResult {
        if let Err(e) = self.check(op) {
            return Ok(Err(e));
        }
        match op {
            Op::Put(p) => {
                if let Err(e) = self.check_put(p, self.rev)? {
                    return Ok(Err(e));
                }
                let mut tx = Tx {
                    begin: self.rev,
                    sub: 0,
                };
                let resp = self.put(p, &mut tx)?;
                self.rev = tx.begin + 1;
                Ok(Ok(OpResponse::Put(resp)))
            }
            Op::DeleteRange(d) => {
                let mut tx = Tx {
                    begin: self.rev,
                    sub: 0,
                };
                let resp = self.delete_range(d, &mut tx)?;
                self.rev = tx.read_rev();
                Ok(Ok(OpResponse::DeleteRange(resp)))
            }
            Op::Range(r) => {
                let resp = self.view_range(r, self.rev)?;
                Ok(resp.map(OpResponse::Range))
            }
            Op::Txn(t) => self.txn(t),
            Op::Compact(c) => {
                if c.revision <= self.compacted {
                    return Ok(Err(OpError::Compacted {
                        requested: c.revision,
                        compacted: self.compacted,
                    }));
                }
                if c.revision > self.rev {
                    return Ok(Err(OpError::FutureRevision {
                        requested: c.revision,
                        current: self.rev,
                    }));
                }
                self.compacted = c.revision;
                self.compact = Some(c.revision);
                Ok(Ok(OpResponse::Compact(CompactResponse {
                    revision: self.rev,
                })))
            }
            Op::LeaseGrant(g) => self.lease_grant(g),
            Op::LeaseRevoke(l) => self.lease_revoke(l),
        }
    }

    /// The request checks etcd makes before an op reaches its state machine, in etcd's order.
    fn check(&self, op: &Op) -> Result<(), OpError> {
        match op {
            Op::Put(p) => check_put_request(p)?,
            Op::DeleteRange(DeleteRange { key, .. }) | Op::Range(Range { key, .. }) => {
                if key.is_empty() {
                    return Err(OpError::EmptyKey);
                }
            }
            Op::Txn(t) => {
                check_txn_request(t, self.limits.max_txn_ops)?;
                check_intervals(&t.success)?;
                check_intervals(&t.failure)?;
                op.validate().map_err(OpError::Invalid)?;
            }
            Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::Compact(_) => {}
        }
        // A put's encoding is its key and value plus at most 40 bytes of framing (tags, lengths,
        // flags, lease): far below the limit, it need not be measured.
        if let Op::Put(p) = op
            && p.key.len() + p.value.len() + 64 < self.limits.max_request_bytes
        {
            return Ok(());
        }
        let size = op.encoded_len();
        if size > self.limits.max_request_bytes {
            return Err(OpError::RequestTooLarge {
                size,
                max: self.limits.max_request_bytes,
            });
        }
        Ok(())
    }

    /// The state-machine checks of a put, against the state at `at`.
    fn check_put(&self, p: &Put, at: i64) -> Result<Result<(), OpError>, MvccError> {
        if p.lease != 0 && !self.view.leases.exists(&self.lease_changes, p.lease) {
            return Ok(Err(OpError::LeaseNotFound { id: p.lease }));
        }
        if (p.ignore_value || p.ignore_lease) && self.view.lookup(&p.key, at).is_none() {
            return Ok(Err(OpError::KeyNotFound));
        }
        Ok(Ok(()))
    }

    fn view_range(
        &self,
        r: &Range,
        at: i64,
    ) -> Result<Result<crate::RangeResponse, OpError>, MvccError> {
        self.view.range(r, at, self.compacted)
    }

    fn record(
        &mut self,
        key: &Bytes,
        rev: Revision,
        created: Revision,
        kv: Option<KeyValue>,
        prev: Option<Revision>,
    ) -> Result<(), MvccError> {
        self.scratch.clear();
        let prev_pair = prev.map_or((0, 0), |r| (r.main, r.sub));
        match &kv {
            Some(kv) => record::encode_put(
                &mut self.scratch,
                (created.main, created.sub),
                kv.version,
                kv.lease,
                prev_pair,
                key,
                &kv.value,
            ),
            None => record::encode_delete(&mut self.scratch, prev_pair, key),
        }
        self.batch
            .put(self.view.kv_cf, &rev.to_bytes(), &self.scratch)?;
        self.changes.push(Change {
            key: key.clone(),
            rev,
            tombstone: kv.is_none(),
            latest: kv.as_ref().map(|kv| (kv.value.clone(), kv.lease)),
        });
        let event = match &kv {
            _ if !self.collect_events => None,
            Some(kv) => Some(Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev,
            }),
            None => Some(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    mod_revision: rev.main,
                    ..KeyValue::default()
                },
                prev,
            }),
        };
        self.events.extend(event);
        self.view
            .overlay
            .entry(key.clone())
            .or_default()
            .push(Pending { rev, created, kv });
        Ok(())
    }

    fn put(&mut self, p: &Put, tx: &mut Tx) -> Result<PutResponse, MvccError> {
        let prev = self.view.lookup(&p.key, tx.read_rev());
        let need_prev = p.prev_kv || p.ignore_value || p.ignore_lease;
        let prev_kv = match (&prev, need_prev) {
            (Some(l), true) => Some(self.view.fetch(&p.key, l)?),
            _ => None,
        };
        let rev = tx.next();
        let (created, version) = match &prev {
            Some(l) => (self.view.created_of(&p.key, l), l.version() + 1),
            None => (rev, 1),
        };
        let value = match (&prev_kv, p.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev_kv, p.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => p.lease,
        };
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: created.main,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        if lease != 0 || self.view.leases.lease_of(&self.lease_changes, &p.key) != 0 {
            self.lease_changes.attach.insert(p.key.clone(), lease);
        }
        self.record(
            &p.key,
            rev,
            created,
            Some(kv),
            prev.as_ref().map(Lookup::modified),
        )?;
        Ok(PutResponse {
            revision: rev.main,
            prev_kv: if p.prev_kv { prev_kv } else { None },
        })
    }

    fn delete_range(
        &mut self,
        d: &DeleteRange,
        tx: &mut Tx,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let span = KeySpan::etcd(&d.key, &d.range_end);
        let (items, _) = self.view.scan(span, tx.read_rev(), 0);
        let prev_kvs = if d.prev_kv {
            self.view.fetch_all(items.clone())?
        } else {
            Vec::new()
        };
        for (key, l) in &items {
            self.delete_key(key, l, tx)?;
        }
        Ok(DeleteRangeResponse {
            revision: tx.read_rev(),
            deleted: items.len() as i64,
            prev_kvs,
        })
    }

    /// Deletes one live key (found as `l`) at the request's next revision.
    fn delete_key(&mut self, key: &Bytes, l: &Lookup, tx: &mut Tx) -> Result<(), MvccError> {
        let rev = tx.next();
        if self.view.leases.lease_of(&self.lease_changes, key) != 0 {
            self.lease_changes.attach.insert(key.clone(), 0);
        }
        self.record(key, rev, Revision::default(), None, Some(l.modified()))
    }

    fn lease_grant(&mut self, g: &LeaseGrant) -> OpResult {
        let leases = self.view.leases;
        if g.ttl > MAX_LEASE_TTL {
            return Ok(Err(OpError::LeaseTtlTooLarge { ttl: g.ttl }));
        }
        if g.id < 0 {
            return Ok(Err(OpError::LeaseNotFound { id: g.id }));
        }
        if g.id != 0 && leases.exists(&self.lease_changes, g.id) {
            return Ok(Err(OpError::LeaseExists { id: g.id }));
        }
        let id = if g.id == 0 {
            // Deterministic, so every replica applying the entry picks the same id.
            let mut next = self.lease_changes.next_id.unwrap_or(leases.next_id).max(1);
            while leases.exists(&self.lease_changes, next) {
                next += 1;
            }
            self.lease_changes.next_id = Some(next + 1);
            self.batch
                .put(self.meta_cf, META_NEXT_LEASE, &(next + 1).to_be_bytes())?;
            next
        } else {
            g.id
        };
        let ttl = g.ttl.max(self.limits.min_lease_ttl);
        self.lease_changes.revoked.remove(&id);
        self.lease_changes.granted.insert(id, ttl);
        self.batch
            .put(self.lease_cf, &id.to_be_bytes(), &ttl.to_be_bytes())?;
        Ok(Ok(OpResponse::LeaseGrant(LeaseGrantResponse {
            revision: self.rev,
            id,
            ttl,
        })))
    }

    fn lease_revoke(&mut self, r: &LeaseRevoke) -> OpResult {
        if !self.view.leases.exists(&self.lease_changes, r.id) {
            return Ok(Err(OpError::LeaseNotFound { id: r.id }));
        }
        // Every attached key goes at one revision, in key order (etcd sorts them).
        let keys = self.view.leases.keys_of(&self.lease_changes, r.id);
        let mut tx = Tx {
            begin: self.rev,
            sub: 0,
        };
        for key in keys {
            if let Some(l) = self.view.lookup(&key, tx.read_rev()) {
                self.delete_key(&key, &l, &mut tx)?;
            }
        }
        self.rev = tx.read_rev();
        self.lease_changes.granted.remove(&r.id);
        self.lease_changes.revoked.insert(r.id);
        self.batch.delete(self.lease_cf, &r.id.to_be_bytes())?;
        Ok(Ok(OpResponse::LeaseRevoke(LeaseRevokeResponse {
            revision: self.rev,
        })))
    }

    fn txn(&mut self, t: &Txn) -> OpResult {
        let begin = self.rev;
        // etcd evaluates every compare on the chosen path, nested ones too, against the state
        // before the txn, then checks the path's puts and ranges, and only then writes.
        let mut path = Vec::new();
        self.compare_path(t, begin, &mut path)?;
        for reads in [false, true] {
            if let Err(e) = self.check_path(t, &path, &mut 0, begin, reads)? {
                return Ok(Err(e));
            }
        }
        let mut tx = Tx { begin, sub: 0 };
        let mut resp = self.exec_txn(t, &path, &mut 0, &mut tx)?;
        resp.revision = tx.read_rev();
        self.rev = tx.read_rev();
        Ok(Ok(OpResponse::Txn(resp)))
    }

    fn compare_path(&self, t: &Txn, at: i64, path: &mut Vec<bool>) -> Result<(), MvccError> {
        let mut ok = true;
        for c in &t.compares {
            if !self.compare(c, at)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &t.success } else { &t.failure } {
            if let Op::Txn(nested) = op {
                self.compare_path(nested, at, path)?;
            }
        }
        Ok(())
    }

    fn compare(&self, c: &Compare, at: i64) -> Result<bool, MvccError> {
        let span = KeySpan::etcd(&c.key, &c.range_end);
        let (items, _) = self.view.scan(span, at, 0);
        if items.is_empty() {
            // A value compare on nothing fails; the others compare against zeros.
            return Ok(match c.target {
                CompareTarget::Value(_) => false,
                _ => compare_kv(c, &KeyValue::default()),
            });
        }
        let kvs = match c.target {
            CompareTarget::Value(_) | CompareTarget::Lease(_) => self.view.fetch_all(items)?,
            _ => items
                .iter()
                .map(|(key, l)| KeyValue {
                    key: key.clone(),
                    create_revision: l.create_revision(),
                    mod_revision: l.modified().main,
                    version: l.version(),
                    ..KeyValue::default()
                })
                .collect(),
        };
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// One of etcd's two walks over the chosen path (`checkRequests`): every put first (lease,
    /// `ignore_*` on a missing key), then, in a second walk, every read's revision.
    fn check_path(
        &self,
        t: &Txn,
        path: &[bool],
        pos: &mut usize,
        begin: i64,
        reads: bool,
    ) -> Result<Result<(), OpError>, MvccError> {
        let ok = path[*pos];
        *pos += 1;
        for op in if ok { &t.success } else { &t.failure } {
            match op {
                Op::Put(p) if !reads => {
                    if let Err(e) = self.check_put(p, begin)? {
                        return Ok(Err(e));
                    }
                }
                Op::Range(r) if reads && r.revision != 0 => {
                    if let Err(e) = check_read_revision(r.revision, begin, self.compacted) {
                        return Ok(Err(e));
                    }
                }
                Op::Txn(nested) => {
                    if let Err(e) = self.check_path(nested, path, pos, begin, reads)? {
                        return Ok(Err(e));
                    }
                }
                _ => {}
            }
        }
        Ok(Ok(()))
    }

    fn exec_txn(
        &mut self,
        t: &Txn,
        path: &[bool],
        pos: &mut usize,
        tx: &mut Tx,
    ) -> Result<TxnResponse, MvccError> {
        let succeeded = path[*pos];
        *pos += 1;
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match op {
                Op::Put(p) => OpResponse::Put(self.put(p, tx)?),
                Op::DeleteRange(d) => OpResponse::DeleteRange(self.delete_range(d, tx)?),
                Op::Range(r) => match self.view_range(r, tx.read_rev())? {
                    Ok(r) => OpResponse::Range(r),
                    // Checked before anything was written (check_path).
                    Err(e) => unreachable_checked(e)?,
                },
                Op::Txn(nested) => {
                    // A nested txn's header carries no revision in etcd.
                    let mut r = self.exec_txn(nested, path, pos, tx)?;
                    r.revision = 0;
                    OpResponse::Txn(r)
                }
                // Refused by validate() before.
                other => {
                    return Err(MvccError::Internal(format!(
                        "{} inside a txn passed its checks",
                        other.kind()
                    )));
                }
            };
            responses.push(resp);
        }
        Ok(TxnResponse {
            revision: 0,
            succeeded,
            responses,
        })
    }
}

/// An op error found after a txn started writing: the checks before make this impossible, so
/// it is a bug; it fails the whole entry (nothing commits) rather than half-apply the txn.
fn unreachable_checked<T>(e: OpError) -> Result<T, MvccError> {
    Err(MvccError::Internal(format!(
        "txn op refused after its checks passed: {e}"
    )))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
        CompareTarget::Version(n) => kv.version.cmp(n),
        CompareTarget::CreateRevision(n) => kv.create_revision.cmp(n),
        CompareTarget::ModRevision(n) => kv.mod_revision.cmp(n),
        CompareTarget::Lease(n) => kv.lease.cmp(n),
    };
    match c.op {
        CompareOp::Equal => ord.is_eq(),
        CompareOp::Greater => ord.is_gt(),
        CompareOp::Less => ord.is_lt(),
        CompareOp::NotEqual => ord.is_ne(),
    }
}

fn check_put_request(p: &Put) -> Result<(), OpError> {
    if p.key.is_empty() {
        return Err(OpError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(OpError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(OpError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest`: op counts per level and empty keys, recursively.
fn check_txn_request(t: &Txn, max_ops: usize) -> Result<(), OpError> {
    let count = t.compares.len().max(t.success.len()).max(t.failure.len());
    if count > max_ops {
        return Err(OpError::TooManyOps {
            count,
            max: max_ops,
        });
    }
    if t.compares.iter().any(|c| c.key.is_empty()) {
        return Err(OpError::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        match op {
            Op::Put(p) => check_put_request(p)?,
            Op::DeleteRange(DeleteRange { key, .. }) | Op::Range(Range { key, .. })
                if key.is_empty() =>
            {
                return Err(OpError::EmptyKey);
            }
            Op::Txn(nested) => check_txn_request(nested, max_ops)?,
            _ => {}
        }
    }
    Ok(())
}

/// A delete's key interval as etcd's `adt` sees it: `[key, end)`, a point `[key, key\0)`
/// when `range_end` is empty, and an empty end meaning "no end". (etcd builds from-key deletes,
/// `range_end = "\0"`, as the interval `[key, "\0")`, which holds no key: it does not reject a
/// put after them, and neither does this.)
struct Interval {
    start: Bytes,
    end: Option<Bytes>,
}

impl Interval {
    fn of(d: &DeleteRange) -> Self {
        if d.range_end.is_empty() {
            let mut end = d.key.to_vec();
            end.push(0);
            Interval {
                start: d.key.clone(),
                end: Some(end.into()),
            }
        } else {
            Interval {
                start: d.key.clone(),
                end: Some(d.range_end.clone()),
            }
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_ref().is_none_or(|e| key < &e[..])
    }
}

/// etcd's `checkIntervals`: on any one path of a txn, no key may be put twice, or put and
/// deleted. Puts in the success and failure branches of a nested txn may share keys (only
/// one branch runs).
fn check_intervals(ops: &[Op]) -> Result<(HashSet<Bytes>, Vec<Interval>), OpError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            Op::DeleteRange(d) => Some(Interval::of(d)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));
    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in ops {
        let Op::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(OpError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) || deleted(&dels, k) {
                return Err(OpError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Op::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(OpError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

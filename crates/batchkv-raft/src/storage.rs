//! [`RaftStorage`]: raft-rs's [`raft::Storage`] on RocksDB, through `batchkv-engine`.
//!
//! Layout (one column family, [`RAFT_CF`], of the engine given):
//!
//! | key               | value                                                      |
//! |-------------------|------------------------------------------------------------|
//! | `e` + index (BE)  | the [`Entry`], raft's own encoding                          |
//! | `t` + index (BE)  | the entry's term (8 bytes BE; kept in memory as well)       |
//! | `h`               | the [`HardState`]                                           |
//! | `c`               | the [`ConfState`]                                           |
//! | `r`               | where the log was truncated: index and term (16 bytes BE)   |
//! | `s`, `d`          | the last snapshot's [`SnapshotMetadata`] and its data; `d`  |
//! |                   | only while the state machine lacks it (a failed install)    |
//! |                   | or when taken with [`RaftStorage::compact`]                 |
//! | `i`               | the voters the cluster was bootstrapped with ([`ConfState`]) |
//! | `m` + id (BE)     | member `id`'s record (opaque: the owner's bytes)            |
//!
//! A snapshot built for followers ([`RaftStorage::take_snapshot_wanted`]) is held in memory
//! only, never stored.
//!
//! Everything one `Ready` asks to persist (a snapshot, entries, the hard state) goes in one
//! WriteBatch, fsynced: [`RaftStorage::persist`].

use std::path::Path;
use std::sync::Arc;

use batchkv_engine::{Cf, Engine, EngineConfig, KeyRange, WriteMode};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::RaftError;

/// The column family raft's state lives in.
pub const RAFT_CF: &str = "raft";

const HARD_STATE: &[u8] = b"h";
const CONF_STATE: &[u8] = b"c";
const TRUNCATED: &[u8] = b"r";
const SNAP_META: &[u8] = b"s";
const SNAP_DATA: &[u8] = b"d";
const INITIAL: &[u8] = b"i";

fn member_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'm';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The key marking member `id` removed (kept for good: a removed member's traffic is refused).
fn removed_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'x';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Marks snapshot data that carries the member records ahead of the state machine's bytes.
const SNAP_ENVELOPE: &[u8; 8] = b"BKRSNAP1";

type Records = std::collections::BTreeMap<u64, Vec<u8>>;

/// A snapshot's data as stored and sent: the member records as of the snapshot (a member
/// caught up by it learns the members added meanwhile, with their URLs), then the state
/// machine's bytes. Layout: the envelope mark, the number of records (u32), each record's id
/// (u64) and length (u32) and bytes, then the state machine's bytes (big-endian integers).
pub(crate) fn wrap_snapshot(records: &Records, sm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sm.len() + 64);
    out.extend_from_slice(SNAP_ENVELOPE);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for (id, r) in records {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out.extend_from_slice(sm);
    out
}

/// The member records and the state machine's bytes of a snapshot's data; data without the
/// envelope (written by [`RaftStorage::persist`]'s caller directly) carries no records.
pub(crate) fn unwrap_snapshot(data: &[u8]) -> Result<(Option<Records>, &[u8]), RaftError> {
    let Some(mut rest) = data.strip_prefix(SNAP_ENVELOPE.as_slice()) else {
        return Ok((None, data));
    };
    let bad = || RaftError::Corrupt("snapshot data: truncated member records".into());
    let count = u32::from_be_bytes(
        take(&mut rest, 4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let mut records = Records::new();
    for _ in 0..count {
        let id = take(&mut rest, 8).and_then(be_u64).ok_or_else(bad)?;
        let len = take(&mut rest, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(bad)? as usize;
        records.insert(id, take(&mut rest, len).ok_or_else(bad)?.to_vec());
    }
    Ok((Some(records), rest))
}

/// The first `n` bytes of `rest`, which keeps the others.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let all: &'a [u8] = rest;
    if all.len() < n {
        return None;
    }
    let (head, tail) = all.split_at(n);
    *rest = tail;
    Some(head)
}

/// What a configuration change does to one member's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordUpdate {
    /// Leave it as it is.
    Keep,
    /// Replace it.
    Put(Vec<u8>),
    /// Delete it (the member was removed).
    Delete,
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn term_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b't';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Encodes a raft protobuf value with raft's own codec.
pub(crate) fn encode<M: protobuf::Message>(m: &M) -> Result<Vec<u8>, RaftError> {
    m.write_to_bytes()
        .map_err(|e| RaftError::Corrupt(format!("encode: {e}")))
}

/// Decodes a raft protobuf value with raft's own codec.
pub(crate) fn decode<M: protobuf::Message + Default>(bytes: &[u8]) -> Result<M, RaftError> {
    let mut m = M::default();
    m.merge_from_bytes(bytes)
        .map_err(|e| RaftError::Corrupt(format!("decode: {e}")))?;
    Ok(m)
}

fn store_err(e: RaftError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

/// raft-rs's log, hard state, conf state and last snapshot, persisted in RocksDB.
///
/// The log's terms, the hard and conf states and the truncation point are also kept in memory;
/// entries are read from RocksDB when raft asks for them.
pub struct RaftStorage {
    engine: Arc<Engine>,
    cf: Cf,
    hard_state: HardState,
    conf_state: ConfState,
    /// The log holds the entries after this (index, term).
    truncated: (u64, u64),
    /// Terms of the entries `truncated.0 + 1 ..= last_index`.
    terms: Vec<u64>,
    /// The last snapshot taken or installed (index 0: none).
    snapshot_meta: SnapshotMetadata,
    /// The voters the cluster was bootstrapped with.
    initial_voters: Vec<u64>,
    /// Each member's record, by id.
    records: std::collections::BTreeMap<u64, Vec<u8>>,
    /// The members whose removal this storage applied.
    removed: std::collections::BTreeSet<u64>,
    /// Whether the last snapshot's data is stored ([`RaftStorage::snapshot_stored`]).
    snapshot_stored: bool,
    /// The snapshot built for followers ([`RaftStorage::set_generated_snapshot`]), in memory
    /// only: raft's `Storage::snapshot` answers it while raft's log still follows it.
    generated: Option<Snapshot>,
    /// Raft asked for a snapshot none could answer ([`RaftStorage::take_snapshot_wanted`]).
    wanted: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("path", &self.engine.path())
            .field("first_index", &self.first())
            .field("last_index", &self.last())
            .field("commit", &self.hard_state.commit)
            .field("term", &self.hard_state.term)
            .field("snapshot_index", &self.snapshot_meta.index)
            .finish()
    }
}

impl RaftStorage {
    /// Opens (or creates) a RocksDB database of its own at `dir` for raft's state.
    ///
    /// # Errors
    /// RocksDB's, or [`RaftError::Corrupt`] if the stored state does not decode.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<RaftStorage, RaftError> {
        let engine = Engine::open(EngineConfig::new(dir.as_ref()).column_families([RAFT_CF]))?;
        RaftStorage::open(Arc::new(engine))
    }

    /// Opens raft's state in the [`RAFT_CF`] column family of `engine` (which must have been
    /// opened with it).
    ///
    /// # Errors
    /// RocksDB's, or [`RaftError::Corrupt`] if the stored state does not decode or the log has
    /// a hole.
    pub fn open(engine: Arc<Engine>) -> Result<RaftStorage, RaftError> {
        let cf = engine.cf(RAFT_CF)?;
        let hard_state = match engine.get(cf, HARD_STATE)? {
            Some(b) => decode(&b)?,
            None => HardState::default(),
        };
        let conf_state = match engine.get(cf, CONF_STATE)? {
            Some(b) => decode(&b)?,
            None => ConfState::default(),
        };
        let snapshot_meta = match engine.get(cf, SNAP_META)? {
            Some(b) => decode(&b)?,
            None => SnapshotMetadata::default(),
        };
        let truncated = match engine.get(cf, TRUNCATED)? {
            Some(b) => (
                be_u64(&b).ok_or_else(|| RaftError::Corrupt("truncation point".into()))?,
                be_u64(b.get(8..).unwrap_or_default())
                    .ok_or_else(|| RaftError::Corrupt("truncation point".into()))?,
            ),
            None => (0, 0),
        };
        let mut terms = Vec::new();
        let mut hole = None;
        engine.scan(
            cf,
            &KeyRange::between(term_key(truncated.0 + 1), term_key(u64::MAX)),
            false,
            |k, v| {
                let index = be_u64(&k[1..]).unwrap_or(0);
                if index != truncated.0 + 1 + terms.len() as u64 {
                    hole = Some(index);
                    return false;
                }
                terms.push(be_u64(v).unwrap_or(0));
                true
            },
        )?;
        if let Some(index) = hole {
            return Err(RaftError::Corrupt(format!(
                "raft log has a hole before index {index} (truncated at {})",
                truncated.0
            )));
        }
        let initial_voters = match engine.get(cf, INITIAL)? {
            Some(b) => decode::<ConfState>(&b)?.voters,
            None => Vec::new(),
        };
        let mut records = std::collections::BTreeMap::new();
        engine.scan(
            cf,
            &KeyRange::between(member_key(0), member_key(u64::MAX)),
            false,
            |k, v| {
                records.insert(be_u64(&k[1..]).unwrap_or(0), v.to_vec());
                true
            },
        )?;
        if let Some(v) = engine.get(cf, &member_key(u64::MAX))? {
            records.insert(u64::MAX, v);
        }
        let mut removed = std::collections::BTreeSet::new();
        engine.scan(
            cf,
            &KeyRange::between(removed_key(0), removed_key(u64::MAX)),
            false,
            |k, _| {
                removed.insert(be_u64(&k[1..]).unwrap_or(0));
                true
            },
        )?;
        if engine.get(cf, &removed_key(u64::MAX))?.is_some() {
            removed.insert(u64::MAX);
        }
        let snapshot_stored = engine.get(cf, SNAP_DATA)?.is_some();
        Ok(RaftStorage {
            engine,
            cf,
            hard_state,
            conf_state,
            truncated,
            terms,
            snapshot_meta,
            initial_voters,
            records,
            removed,
            snapshot_stored,
            generated: None,
            wanted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether a configuration was ever stored (by [`RaftStorage::bootstrap`] or a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// Stores the initial voters of a new cluster; every member must be bootstrapped with the
    /// same list (etcd's `--initial-cluster`). Does nothing if already initialized.
    ///
    /// # Errors
    /// RocksDB's.
    pub fn bootstrap(&mut self, voters: &[u64]) -> Result<(), RaftError> {
        self.bootstrap_with(voters, &[])
    }

    /// [`RaftStorage::bootstrap`], also storing each initial member's record (opaque bytes,
    /// [`RaftStorage::member_records`]) in the same write. A member joining a running cluster
    /// later bootstraps with the cluster's *initial* voters and records too, then replays the
    /// log from its start, so it goes through the same configurations as every other member.
    ///
    /// # Errors
    /// RocksDB's.
    pub fn bootstrap_with(
        &mut self,
        voters: &[u64],
        records: &[(u64, Vec<u8>)],
    ) -> Result<(), RaftError> {
        if self.is_initialized() || voters.is_empty() {
            return Ok(());
        }
        let cs = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let mut batch = self.engine.begin_batch();
        batch.put(self.cf, CONF_STATE, &encode(&cs)?)?;
        batch.put(self.cf, INITIAL, &encode(&cs)?)?;
        for (id, record) in records {
            batch.put(self.cf, &member_key(*id), record)?;
        }
        batch.commit(WriteMode::SYNC)?;
        self.conf_state = cs;
        self.initial_voters = voters.to_vec();
        for (id, record) in records {
            self.records.insert(*id, record.clone());
        }
        Ok(())
    }

    /// The voters the cluster was bootstrapped with (empty for storage bootstrapped before
    /// they were kept).
    pub fn initial_voters(&self) -> &[u64] {
        &self.initial_voters
    }

    /// Every member's record (the initial members' from [`RaftStorage::bootstrap_with`], the
    /// others' from the configuration change that added them), by id.
    pub fn member_records(&self) -> &std::collections::BTreeMap<u64, Vec<u8>> {
        &self.records
    }

    /// The members whose removal this storage applied (a member caught up by a snapshot knows
    /// only the removals it applied itself).
    pub fn removed_members(&self) -> &std::collections::BTreeSet<u64> {
        &self.removed
    }

    /// The engine raft's state is stored in.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The stored hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The stored configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The last snapshot taken or installed (index 0: none).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// The last snapshot's data, as the state machine produced it.
    ///
    /// # Errors
    /// RocksDB's.
    pub fn snapshot_data(&self) -> Result<Vec<u8>, RaftError> {
        let data = self.engine.get(self.cf, SNAP_DATA)?.unwrap_or_default();
        Ok(unwrap_snapshot(&data)?.1.to_vec())
    }

    /// Whether the last snapshot's data is stored: true after one was installed from the
    /// leader ([`RaftStorage::persist`]) or taken with its data ([`RaftStorage::compact`]);
    /// false after [`RaftStorage::compact_log`], whose state machine holds the state itself.
    pub fn snapshot_stored(&self) -> bool {
        self.snapshot_stored
    }

    /// Whether raft asked for a snapshot to send that none answered since the last call
    /// (raft's `Storage::snapshot` answered `SnapshotTemporarilyUnavailable`); clears it.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a snapshot built for followers (not stored: in memory, until a newer one or a log
    /// compaction past it replaces it): the state machine's bytes `data` at `index`, with the
    /// member records and configuration `conf_state`, which must be those as of `index`.
    /// raft's `Storage::snapshot` answers it from now on.
    ///
    /// # Errors
    /// [`RaftError::Corrupt`] if `index` is not in the log any more (or not yet): the term
    /// of the snapshot is unknown; build another.
    pub(crate) fn set_generated_snapshot(
        &mut self,
        index: u64,
        data: &[u8],
        conf_state: ConfState,
        records: &Records,
    ) -> Result<(), RaftError> {
        let term = self.term_of(index).ok_or_else(|| {
            RaftError::Corrupt(format!(
                "snapshot at {index} outside the log {}..={}",
                self.truncated.0,
                self.last()
            ))
        })?;
        let mut snap = Snapshot::default();
        snap.set_metadata(SnapshotMetadata {
            index,
            term,
            conf_state: Some(conf_state),
        });
        snap.data = wrap_snapshot(records, data);
        self.generated = Some(snap);
        Ok(())
    }

    /// Lets the built snapshot go (it is built again when raft next asks for one).
    pub(crate) fn release_generated_snapshot(&mut self) {
        self.generated = None;
    }

    /// The size of the snapshot built for followers held in memory (0: none).
    pub(crate) fn generated_snapshot_bytes(&self) -> u64 {
        self.generated.as_ref().map_or(0, |s| s.data.len() as u64)
    }

    /// The index of the snapshot built for followers that raft would be answered now, if any.
    pub(crate) fn generated_snapshot_index(&self) -> Option<u64> {
        self.generated
            .as_ref()
            .map(|s| s.get_metadata().index)
            .filter(|&i| i >= self.truncated.0)
    }

    fn first(&self) -> u64 {
        self.truncated.0 + 1
    }

    fn last(&self) -> u64 {
        self.truncated.0 + self.terms.len() as u64
    }

    /// Persists what one `Ready` asks for as ONE WriteBatch, fsynced before it returns: a
    /// snapshot received from the leader (the log is replaced by it), new entries (a conflicting
    /// suffix of the log is dropped) and the hard state. [`RaftStorage::persist_with`] may skip
    /// the fsync where raft allows it.
    ///
    /// # Errors
    /// RocksDB's; nothing changes in memory then.
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), RaftError> {
        self.persist_with(snapshot, entries, hard_state, true)
    }

    /// [`RaftStorage::persist`], fsynced only if `sync` (raft-rs's `Ready::must_sync`: false
    /// when only the commit index changed, which raft can learn again from the leader). A
    /// snapshot or entries are always fsynced.
    ///
    /// # Errors
    /// RocksDB's; nothing changes in memory then.
    pub fn persist_with(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), RaftError> {
        self.persist_ready(snapshot, true, entries, hard_state, sync)
    }

    /// [`RaftStorage::persist_with`], storing a snapshot's data only if `keep_data`: a state
    /// machine that installed the snapshot durably holds it already (the metadata, the
    /// configuration and the member records are stored either way).
    pub(crate) fn persist_ready(
        &mut self,
        snapshot: Option<&Snapshot>,
        keep_data: bool,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), RaftError> {
        let sync = sync || snapshot.is_some() || !entries.is_empty();
        let mut batch = self.engine.begin_batch();
        let mut truncated = self.truncated;
        let mut keep = self.terms.len();
        let mut hs = hard_state.cloned();
        let mut cs = None;
        let mut new_records = None;
        if let Some(snap) = snapshot {
            let meta = snap.get_metadata();
            // The member records as of the snapshot replace ours, with the conf state.
            if let (Some(records), _) = unwrap_snapshot(&snap.data)? {
                batch.delete_range(self.cf, &member_key(0), &member_key(u64::MAX))?;
                batch.delete(self.cf, &member_key(u64::MAX))?;
                for (id, r) in &records {
                    batch.put(self.cf, &member_key(*id), r)?;
                }
                new_records = Some(records);
            }
            if meta.index < self.truncated.0 {
                return Err(RaftError::Corrupt(format!(
                    "snapshot at {} is older than the log's start ({})",
                    meta.index, self.truncated.0
                )));
            }
            batch.delete_range(self.cf, &entry_key(0), &entry_key(u64::MAX))?;
            batch.delete_range(self.cf, &term_key(0), &term_key(u64::MAX))?;
            truncated = (meta.index, meta.term);
            keep = 0;
            batch.put(self.cf, SNAP_META, &encode(meta)?)?;
            if keep_data {
                batch.put(self.cf, SNAP_DATA, &snap.data)?;
            } else {
                batch.delete(self.cf, SNAP_DATA)?;
            }
            batch.put(self.cf, CONF_STATE, &encode(meta.get_conf_state())?)?;
            cs = Some(meta.get_conf_state().clone());
            let mut h = hs.take().unwrap_or_else(|| self.hard_state.clone());
            h.term = h.term.max(meta.term);
            h.commit = h.commit.max(meta.index);
            hs = Some(h);
        }
        if let Some(first) = entries.first() {
            let last_now = truncated.0 + keep as u64;
            if first.index <= truncated.0 || first.index > last_now + 1 {
                return Err(RaftError::Corrupt(format!(
                    "append at {} to a log holding {}..={}",
                    first.index,
                    truncated.0 + 1,
                    last_now
                )));
            }
            // Entries from `first.index` on are replaced.
            keep = (first.index - truncated.0 - 1) as usize;
            let new_last = first.index + entries.len() as u64 - 1;
            if new_last < last_now {
                batch.delete_range(self.cf, &entry_key(new_last + 1), &entry_key(last_now + 1))?;
                batch.delete_range(self.cf, &term_key(new_last + 1), &term_key(last_now + 1))?;
            }
            for e in entries {
                batch.put(self.cf, &entry_key(e.index), &encode(e)?)?;
                batch.put(self.cf, &term_key(e.index), &e.term.to_be_bytes())?;
            }
        }
        if let Some(h) = &hs {
            batch.put(self.cf, HARD_STATE, &encode(h)?)?;
        }
        if snapshot.is_some() {
            batch.put(self.cf, TRUNCATED, &truncation_bytes(truncated))?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit(if sync {
            WriteMode::SYNC
        } else {
            WriteMode::WAL
        })?;

        // Durable: mirror it in memory.
        if let Some(snap) = snapshot {
            self.snapshot_meta = snap.get_metadata().clone();
            self.snapshot_stored = keep_data;
            self.terms.clear();
        }
        self.truncated = truncated;
        self.terms.truncate(keep);
        self.terms.extend(entries.iter().map(|e| e.term));
        if let Some(h) = hs {
            self.hard_state = h;
        }
        if let Some(c) = cs {
            self.conf_state = c;
        }
        if let Some(r) = new_records {
            self.records = r;
        }
        Ok(())
    }

    /// Stores a new configuration (after a conf change was applied).
    ///
    /// # Errors
    /// RocksDB's.
    pub fn set_conf_state(&mut self, cs: ConfState) -> Result<(), RaftError> {
        self.set_conf_state_with(cs, 0, RecordUpdate::Keep)
    }

    /// Stores a new configuration and what it does to member `id`'s record, in one write.
    pub(crate) fn set_conf_state_with(
        &mut self,
        cs: ConfState,
        id: u64,
        record: RecordUpdate,
    ) -> Result<(), RaftError> {
        let mut batch = self.engine.begin_batch();
        batch.put(self.cf, CONF_STATE, &encode(&cs)?)?;
        match &record {
            RecordUpdate::Keep => {}
            RecordUpdate::Put(r) => batch.put(self.cf, &member_key(id), r)?,
            RecordUpdate::Delete => {
                batch.delete(self.cf, &member_key(id))?;
                batch.put(self.cf, &removed_key(id), &[])?;
            }
        }
        batch.commit(WriteMode::SYNC)?;
        self.conf_state = cs;
        match record {
            RecordUpdate::Keep => {}
            RecordUpdate::Put(r) => {
                self.records.insert(id, r);
            }
            RecordUpdate::Delete => {
                self.records.remove(&id);
                self.removed.insert(id);
            }
        }
        Ok(())
    }

    /// Records a snapshot of the state machine at `applied` (its data, opaque here) and drops the
    /// log up to `compact_to` (≤ `applied`), so the log stays bounded and a follower that needs an
    /// entry before the log's start is sent this snapshot. The state machine's state at `applied`
    /// must be durable before this is called.
    ///
    /// # Errors
    /// [`RaftError::Corrupt`] if `applied` is not in the log or `compact_to > applied`; RocksDB's.
    pub fn compact(&mut self, applied: u64, compact_to: u64, data: &[u8]) -> Result<(), RaftError> {
        self.compact_with(applied, compact_to, Some(data))
    }

    /// [`RaftStorage::compact`] without the state machine's data: the state machine's state at
    /// `applied` is durable in the state machine itself, and a follower that needs a snapshot
    /// gets one built when raft asks (see [`RaftStorage::take_snapshot_wanted`]). Only the
    /// metadata is stored (the data of an older snapshot is dropped).
    ///
    /// # Errors
    /// As [`RaftStorage::compact`].
    pub fn compact_log(&mut self, applied: u64, compact_to: u64) -> Result<(), RaftError> {
        self.compact_with(applied, compact_to, None)
    }

    fn compact_with(
        &mut self,
        applied: u64,
        compact_to: u64,
        data: Option<&[u8]>,
    ) -> Result<(), RaftError> {
        if compact_to > applied {
            return Err(RaftError::Corrupt(format!(
                "compact to {compact_to} above the snapshot at {applied}"
            )));
        }
        let term = self.term_of(applied).ok_or_else(|| {
            RaftError::Corrupt(format!(
                "snapshot at {applied} outside the log {}..={}",
                self.truncated.0,
                self.last()
            ))
        })?;
        let compact_to = compact_to.max(self.truncated.0);
        let compact_term = self.term_of(compact_to).unwrap_or(self.truncated.1);
        let meta = SnapshotMetadata {
            index: applied,
            term,
            conf_state: Some(self.conf_state.clone()),
        };
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(applied);

        let mut batch = self.engine.begin_batch();
        batch.put(self.cf, SNAP_META, &encode(&meta)?)?;
        match data {
            Some(data) => batch.put(self.cf, SNAP_DATA, &wrap_snapshot(&self.records, data))?,
            None => batch.delete(self.cf, SNAP_DATA)?,
        }
        batch.put(self.cf, HARD_STATE, &encode(&hs)?)?;
        batch.delete_range(self.cf, &entry_key(0), &entry_key(compact_to + 1))?;
        batch.delete_range(self.cf, &term_key(0), &term_key(compact_to + 1))?;
        batch.put(
            self.cf,
            TRUNCATED,
            &truncation_bytes((compact_to, compact_term)),
        )?;
        batch.commit(WriteMode::SYNC)?;

        let drop = (compact_to - self.truncated.0) as usize;
        self.terms.drain(..drop.min(self.terms.len()));
        self.truncated = (compact_to, compact_term);
        self.snapshot_meta = meta;
        self.snapshot_stored = data.is_some();
        self.hard_state = hs;
        if self.generated_snapshot_index().is_none() {
            self.generated = None;
        }
        Ok(())
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.truncated.0 {
            return Some(self.truncated.1);
        }
        if index < self.truncated.0 || index > self.last() {
            return None;
        }
        self.terms
            .get((index - self.truncated.0 - 1) as usize)
            .copied()
    }

    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, RaftError> {
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut bad = None;
        self.engine.scan(
            self.cf,
            &KeyRange::between(entry_key(low), entry_key(high)),
            false,
            |_, v| match decode::<Entry>(v) {
                Ok(e) => {
                    out.push(e);
                    true
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
        if out.len() as u64 != high - low || out.first().is_some_and(|e| e.index != low) {
            return Err(RaftError::Corrupt(format!(
                "raft log entries {low}..{high}: {} found",
                out.len()
            )));
        }
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }
}

fn truncation_bytes((index, term): (u64, u64)) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low == high {
            return Ok(Vec::new());
        }
        self.read_entries(low, high, max_size.into())
            .map_err(store_err)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // A snapshot built for followers, while the log still follows it (the follower goes on
        // from its index + 1).
        if let Some(snap) = &self.generated {
            let index = snap.get_metadata().index;
            if index >= request_index && index >= self.truncated.0 {
                return Ok(snap.clone());
            }
        }
        // The stored one, if its data is (installed from a leader, or taken with its data).
        if !self.snapshot_stored
            || self.snapshot_meta.index == 0
            || self.snapshot_meta.index < request_index
        {
            // Built on demand: the node sees the request and has the state machine build one.
            self.wanted
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        snap.set_metadata(self.snapshot_meta.clone());
        // As stored: the member records with the state machine's bytes.
        snap.data = self
            .engine
            .get(self.cf, SNAP_DATA)
            .map_err(|e| store_err(e.into()))?
            .unwrap_or_default();
        Ok(snap)
    }
}

//! The crash campaign (`cargo xtask torture`): a child process runs a mixed load on a store and
//! is killed with SIGKILL, again and again, at random moments and at chosen system calls; after
//! each kill the parent reopens the store and checks what survived.
//!
//! The child's load, on several threads: puts, deletes, prefix deletes, three-key txns, leased
//! puts on leases that expire (1 s) or are revoked, compactions, pruning, checkpoints, bulk
//! loads, and a watcher checking its events arrive in order. It prints one line per
//! acknowledged operation with its revision.
//!
//! A kill is one of: a timed SIGKILL from the parent; a SIGKILL inside the N-th `fsync` or
//! `fdatasync` of the store's files, inside the N-th write of an SST file (a flush or a
//! compaction), or inside the N-th `rename` (CURRENT, OPTIONS), made by `batchkv-faultfs`
//! preloaded into the child; or a SIGKILL just after the child says it started a compaction.
//!
//! After each kill, with the store opened read-only (nothing written before the checks):
//! - `Store::check`: checksums, meta, contiguous revisions, index against records, leases
//!   against keys;
//! - durability: every acknowledged write is there at its revision (under `Sync`; under `Wal`
//!   too, since this is a process crash; under `None`, only what a `flush()` acknowledged);
//! - atomicity: every txn's three keys are all there at one revision or all absent; every bulk
//!   load is a whole number of its entries;
//! - every checkpoint the child completed opens and passes `check`, at or above the revision it
//!   was taken at.
//!
//! The load drives a [`Target`]: today the `Store` in the child process. A `batchkv serve`
//! target (the server with real clients) is another implementation of it.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use batchkv::{
    AutoFlushConfig, Bytes, Compare, CompareOp, CompareTarget, DeleteRange, Durability, Op,
    OpError, Put, Range, Store, StoreError, Txn, WatchRequest,
};
use batchkv_testkit::{ChildProcess, Rng};

/// The environment variable that makes the binary the child.
pub const CHILD_ENV: &str = "BATCHKV_TORTURE_CHILD";

/// A durability mode under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// [`Durability::Sync`].
    Sync,
    /// [`Durability::Wal`].
    Wal,
    /// [`Durability::None`].
    None,
}

impl Mode {
    /// Parses `sync`, `wal` or `none`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "sync" => Mode::Sync,
            "wal" => Mode::Wal,
            "none" => Mode::None,
            other => bail!("unknown durability mode {other:?} (sync, wal or none)"),
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Wal => "wal",
            Mode::None => "none",
        }
    }

    fn durability(self) -> Durability {
        match self {
            Mode::Sync => Durability::Sync,
            Mode::Wal => Durability::Wal {
                flush: AutoFlushConfig::default(),
            },
            Mode::None => Durability::None,
        }
    }

    /// Whether an acknowledged write survives a process crash.
    fn keeps_acks(self) -> bool {
        self != Mode::None
    }
}

/// What the campaign runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Kills per durability mode.
    pub kills: usize,
    /// The modes, in order.
    pub modes: Vec<Mode>,
    /// The seed of the kill schedule and of the children's loads.
    pub seed: u64,
    /// Where the stores live (a temp dir when `None`).
    pub dir: Option<PathBuf>,
}

/// How a child died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KillKind {
    /// SIGKILL from the parent after a random delay.
    Timed,
    /// SIGKILL inside an fsync/fdatasync of the store's files.
    InFsync,
    /// SIGKILL inside a write to an SST file (a flush or a compaction).
    InSstWrite,
    /// SIGKILL inside a rename (CURRENT, OPTIONS).
    InRename,
    /// SIGKILL just after the child started a compaction.
    InCompaction,
}

impl KillKind {
    fn label(self) -> &'static str {
        match self {
            KillKind::Timed => "timed",
            KillKind::InFsync => "inside an fsync",
            KillKind::InSstWrite => "inside an SST write",
            KillKind::InRename => "inside a rename",
            KillKind::InCompaction => "during a compaction",
        }
    }
}

/// What one mode's campaign did.
#[derive(Clone, Debug, Default)]
pub struct ModeReport {
    /// Kills, by kind.
    pub kills: BTreeMap<KillKind, usize>,
    /// Acknowledged operations checked after the kills.
    pub acks_checked: u64,
    /// Full `Store::check` runs that passed (stores and checkpoints).
    pub checks: u64,
    /// Txns and bulk loads checked for atomicity.
    pub atomic_checked: u64,
    /// Checkpoints opened and checked.
    pub checkpoints: u64,
    /// The store's revision at the end.
    pub revision: i64,
    /// Time taken.
    pub took: Duration,
}

impl ModeReport {
    /// Total kills.
    pub fn total_kills(&self) -> usize {
        self.kills.values().sum()
    }
}

/// What the load targets. The store in the child process is the one target today; a server
/// target implements the same calls over its client.
pub trait Target: Send + Sync {
    /// A put; returns its revision.
    fn put(&self, key: String, value: String, lease: i64) -> Result<i64, StoreError>;
    /// A delete of `key` (or of every key under it when `prefix`); returns the revision and
    /// how many keys went.
    fn delete(&self, key: String, prefix: bool) -> Result<(i64, i64), StoreError>;
    /// A txn putting every `(key, value)` at one revision if the first key does not exist.
    fn txn_create(&self, puts: Vec<(String, String)>) -> Result<(bool, i64), StoreError>;
    /// Grants a lease of `ttl` seconds; returns its id.
    fn lease_grant(&self, ttl: i64) -> Result<i64, StoreError>;
    /// Revokes a lease.
    fn lease_revoke(&self, id: i64) -> Result<i64, StoreError>;
    /// Compacts at `rev`.
    fn compact(&self, rev: i64) -> Result<(), StoreError>;
    /// The current revision.
    fn revision(&self) -> i64;
}

impl Target for Store {
    fn put(&self, key: String, value: String, lease: i64) -> Result<i64, StoreError> {
        self.put_with(Put {
            lease,
            ..Put::new(key, value)
        })
        .map(|r| r.revision)
    }
    fn delete(&self, key: String, prefix: bool) -> Result<(i64, i64), StoreError> {
        let d = if prefix {
            DeleteRange::prefix(key)
        } else {
            DeleteRange::key(key)
        };
        self.delete_range(d).map(|r| (r.revision, r.deleted))
    }
    fn txn_create(&self, puts: Vec<(String, String)>) -> Result<(bool, i64), StoreError> {
        let first = puts.first().map(|(k, _)| k.clone()).unwrap_or_default();
        let t = Txn {
            compares: vec![Compare::new(
                first,
                CompareOp::Equal,
                CompareTarget::CreateRevision(0),
            )],
            success: puts
                .into_iter()
                .map(|(k, v)| Op::Put(Put::new(k, v)))
                .collect(),
            failure: vec![],
        };
        self.txn(t).map(|r| (r.succeeded, r.revision))
    }
    fn lease_grant(&self, ttl: i64) -> Result<i64, StoreError> {
        Store::lease_grant(self, 0, ttl).map(|r| r.id)
    }
    fn lease_revoke(&self, id: i64) -> Result<i64, StoreError> {
        Store::lease_revoke(self, id).map(|r| r.revision)
    }
    fn compact(&self, rev: i64) -> Result<(), StoreError> {
        Store::compact(self, rev).map(|_| ())
    }
    fn revision(&self) -> i64 {
        self.current_revision()
    }
}

// ---------------------------------------------------------------------------------------------
// The child.

/// One line out, whole (several threads print).
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The child: `spec` is `dir|mode|cycle|seed`. Runs until killed.
///
/// # Errors
/// A bad spec or a store that does not open.
pub fn child(spec: &str) -> Result<()> {
    let mut parts = spec.split('|');
    let (dir, mode, cycle, seed) = (
        PathBuf::from(parts.next().context("dir")?),
        Mode::parse(parts.next().context("mode")?)?,
        parts.next().context("cycle")?.to_owned(),
        parts.next().context("seed")?.parse::<u64>()?,
    );
    let store = Store::builder(dir.join("store"))
        .durability(mode.durability())
        .lease_check_interval(Duration::from_millis(50))
        .mvcc(|c| c.min_lease_ttl(1))
        .open()
        .context("the child opens the store")?;
    say(format_args!("OPEN {}", store.current_revision()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (s, cycle) = (store.clone(), cycle.clone());
        threads.push(std::thread::spawn(move || {
            writer(&s, &cycle, t, Rng(seed ^ (t + 1).wrapping_mul(0x9e37)))
        }));
    }
    {
        let (s, cycle) = (store.clone(), cycle.clone());
        threads.push(std::thread::spawn(move || {
            leases(&s, &cycle, Rng(seed ^ 0x1ea5e))
        }));
    }
    {
        let (s, dir) = (store.clone(), dir.clone());
        threads.push(std::thread::spawn(move || {
            maintenance(&s, &dir, &cycle, mode, Rng(seed ^ 0x3a1e))
        }));
    }
    {
        let (s, stop) = (store.clone(), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || watcher(&s, &stop)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Puts, deletes, prefix deletes and txns on this thread's keys and on shared ones.
fn writer(s: &dyn Target, cycle: &str, t: u64, mut rng: Rng) {
    for i in 0u64.. {
        let key = if rng.pct(50) {
            format!("k/{}", rng.below(200))
        } else {
            format!("p/{t}/{}", rng.below(50))
        };
        let r = match rng.below(100) {
            0..=64 => {
                let value = format!("{cycle}.{t}.{i}");
                s.put(key.clone(), value.clone(), 0)
                    .map(|rev| say(format_args!("ACK put {key} {value} {rev}")))
            }
            65..=79 => s.delete(key.clone(), false).map(|(rev, n)| {
                if n > 0 {
                    say(format_args!("ACK del {key} {rev}"));
                }
            }),
            80..=84 => s.delete(format!("p/{t}/"), true).map(|_| ()),
            _ => {
                // Three keys at one revision, never written again: all there or none.
                let id = format!("{cycle}.{t}.{i}");
                let puts = ["a", "b", "c"]
                    .iter()
                    .map(|x| (format!("t/{id}/{x}"), id.clone()))
                    .collect();
                s.txn_create(puts).map(|(ok, rev)| {
                    if ok {
                        say(format_args!("ACK txn {id} {rev}"));
                    }
                })
            }
        };
        if let Err(e) = r {
            say(format_args!("ERROR {e}"));
            return;
        }
    }
}

/// Leases of 1 s with keys attached: most expire, some are revoked.
fn leases(s: &dyn Target, cycle: &str, mut rng: Rng) {
    for i in 0u64.. {
        let r = (|| {
            let id = s.lease_grant(1)?;
            for k in 0..=rng.below(3) {
                let key = format!("l/{cycle}.{i}/{k}");
                let rev = s.put(key.clone(), "leased".into(), id)?;
                say(format_args!("ACK lput {key} {id} {rev}"));
            }
            if rng.pct(30) {
                s.lease_revoke(id)?;
            }
            Ok::<(), StoreError>(())
        })();
        match r {
            Ok(()) => std::thread::sleep(Duration::from_millis(rng.below(30) as u64)),
            // Expired and revoked by the store meanwhile.
            Err(StoreError::Op(OpError::LeaseNotFound { .. })) => {}
            Err(e) => {
                say(format_args!("ERROR {e}"));
                return;
            }
        }
    }
}

/// Compactions, pruning, checkpoints, bulk loads and (without a WAL) flushes.
fn maintenance(s: &Store, dir: &Path, cycle: &str, mode: Mode, mut rng: Rng) {
    let ckpts = dir.join("checkpoints");
    let _ = std::fs::create_dir_all(&ckpts);
    for i in 0u64.. {
        std::thread::sleep(Duration::from_millis(10 + rng.below(40) as u64));
        let r = (|| -> Result<(), StoreError> {
            match rng.below(10) {
                0..=2 => {
                    let rev = s.current_revision() - 150;
                    if rev > 1 {
                        say(format_args!("COMPACT {rev}"));
                        match Target::compact(s, rev) {
                            Ok(()) | Err(StoreError::Op(OpError::Compacted { .. })) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                3 => {
                    s.prune_old_versions(3)?;
                }
                4..=5 => {
                    let rev = s.current_revision();
                    let path = ckpts.join(format!("{cycle}-{i}"));
                    s.checkpoint(&path)?;
                    say(format_args!("CKPT {} {rev}", path.display()));
                }
                6..=7 => {
                    let id = format!("{cycle}.{i}");
                    let puts = (0..300).map(|j| {
                        (
                            Bytes::from(format!("b/{id}/{j:04}")),
                            Bytes::from(id.clone()),
                        )
                    });
                    let report = s.bulk_load(puts, 100).map_err(|e| e.error)?;
                    say(format_args!("ACK bulk {id} 300 {}", report.revision));
                }
                _ if mode == Mode::None => {
                    let rev = s.current_revision();
                    s.flush()?;
                    say(format_args!("FLUSHED {rev}"));
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(e) = r {
            say(format_args!("ERROR {e}"));
            return;
        }
    }
}

/// Watches every key from now on: revisions must come in order, each once.
fn watcher(s: &Store, stop: &AtomicBool) {
    let from = s.current_revision() + 1;
    let mut w = s.watch(WatchRequest::range("\0", "\0").from_revision(from));
    let mut last = (0i64, -1i64);
    while !stop.load(Ordering::Relaxed) {
        match w.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(resp)) => {
                if resp.canceled {
                    // Compacted past our position: start again from now.
                    w = s.watch(
                        WatchRequest::range("\0", "\0").from_revision(s.current_revision() + 1),
                    );
                    last = (0, -1);
                    continue;
                }
                for e in &resp.events {
                    let at = (e.kv.mod_revision, 0);
                    if e.kv.mod_revision < last.0 {
                        say(format_args!(
                            "WATCH-ERROR event at revision {} after {}",
                            e.kv.mod_revision, last.0
                        ));
                    }
                    last = (at.0, at.1);
                }
            }
            Ok(None) => {}
            Err(e) => {
                say(format_args!("WATCH-ERROR {e}"));
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What the child acknowledged before it died.
#[derive(Debug, Default)]
struct Acks {
    puts: Vec<(String, String, i64)>,
    dels: Vec<(String, i64)>,
    txns: Vec<(String, i64)>,
    bulks: Vec<(String, usize, i64)>,
    checkpoints: Vec<(PathBuf, i64)>,
    flushed: i64,
    compact_started: bool,
    errors: Vec<String>,
}

impl Acks {
    fn read(&mut self, line: &str) {
        let w: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| w.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
        match w.as_slice() {
            ["ACK", "put", key, value, _] => {
                self.puts.push((key.to_string(), value.to_string(), num(4)))
            }
            ["ACK", "lput", key, _, _] => {
                self.puts.push((key.to_string(), "leased".into(), num(4)))
            }
            ["ACK", "del", key, _] => self.dels.push((key.to_string(), num(3))),
            ["ACK", "txn", id, _] => self.txns.push((id.to_string(), num(3))),
            ["ACK", "bulk", id, n, _] => {
                self.bulks
                    .push((id.to_string(), n.parse().unwrap_or(0), num(4)));
            }
            ["CKPT", path, _] => self.checkpoints.push((PathBuf::from(path), num(2))),
            ["FLUSHED", _] => self.flushed = self.flushed.max(num(1)),
            ["COMPACT", _] => self.compact_started = true,
            _ if line.starts_with("ERROR") || line.starts_with("WATCH-ERROR") => {
                self.errors.push(line.to_owned());
            }
            _ => {}
        }
    }

    /// The highest acknowledged revision (of ops whose revision is known).
    fn max_rev(&self) -> i64 {
        self.puts
            .iter()
            .map(|p| p.2)
            .chain(self.dels.iter().map(|d| d.1))
            .chain(self.txns.iter().map(|t| t.1))
            .chain(self.bulks.iter().map(|b| b.2))
            .max()
            .unwrap_or(0)
    }
}

/// The shared object that kills the child at a system call, next to this binary.
fn shim() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("libbatchkv_faultfs.so"),
        dir.join("deps/libbatchkv_faultfs.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Runs the campaign; prints a line per mode and returns the reports.
///
/// # Errors
/// The first broken promise, with the seed, the mode and the kill.
pub fn run(opts: &Options) -> Result<Vec<(Mode, ModeReport)>> {
    let tmp;
    let root = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            tmp = batchkv_testkit::temp_dir();
            tmp.path().to_path_buf()
        }
    };
    let root = root.canonicalize().context("the campaign's directory")?;
    let shim = shim();
    if shim.is_none() {
        println!(
            "note: libbatchkv_faultfs.so is not next to this binary: only timed kills and kills \
             during compactions (build it with `cargo build --release --workspace --lib`)"
        );
    }
    let mut reports = Vec::new();
    for &mode in &opts.modes {
        let dir = root.join(mode.name());
        std::fs::create_dir_all(&dir)?;
        let report = run_mode(opts, mode, &dir, shim.as_deref()).with_context(|| {
            format!(
                "seed {} (replay: --seed {}), mode {}",
                opts.seed,
                opts.seed,
                mode.name()
            )
        })?;
        let kinds: Vec<String> = report
            .kills
            .iter()
            .map(|(k, n)| format!("{n} {}", k.label()))
            .collect();
        println!(
            "{}: {} kills ({}), {} acknowledged ops checked, {} txns and bulk loads checked whole, \
             {} stores and checkpoints checked, revision {} at the end, {:.1} s",
            mode.name(),
            report.total_kills(),
            kinds.join(", "),
            report.acks_checked,
            report.atomic_checked,
            report.checks,
            report.revision,
            report.took.as_secs_f64()
        );
        reports.push((mode, report));
    }
    Ok(reports)
}

fn run_mode(opts: &Options, mode: Mode, dir: &Path, shim: Option<&Path>) -> Result<ModeReport> {
    let mut rng = Rng(opts.seed ^ (mode as u64 + 1).wrapping_mul(0x0051_ed27));
    let started = Instant::now();
    let mut report = ModeReport::default();
    let ctl = dir.join("faults.ctl");
    let store_dir = dir.join("store");
    for cycle in 0..opts.kills {
        let kind = match (shim.is_some(), rng.below(10)) {
            (true, 0..=1) => KillKind::InFsync,
            (true, 2) => KillKind::InSstWrite,
            (true, 3) => KillKind::InRename,
            (_, 4..=5) => KillKind::InCompaction,
            _ => KillKind::Timed,
        };
        let plan = match kind {
            // Sync fsyncs every group commit; the others mostly at flushes and WAL syncs.
            KillKind::InFsync => format!(
                "ops=fsync action=kill after={}",
                rng.below(if mode == Mode::Sync { 200 } else { 8 })
            ),
            KillKind::InSstWrite => {
                format!("ops=write match=.sst action=kill after={}", rng.below(10))
            }
            KillKind::InRename => format!("ops=rename action=kill after={}", rng.below(4)),
            _ => String::new(),
        };
        std::fs::write(&ctl, &plan)?;
        let mut cmd = batchkv_testkit::this_exe();
        cmd.env(
            CHILD_ENV,
            format!("{}|{}|c{cycle}|{}", dir.display(), mode.name(), rng.next()),
        );
        if let Some(so) = shim {
            cmd.env("LD_PRELOAD", so)
                .env("BATCHKV_FAULT_DIR", &store_dir)
                .env("BATCHKV_FAULT_CTL", &ctl);
        }
        let mut child = ChildProcess::spawn(cmd);
        let lines = child.take_lines();
        let acks = Arc::new(Mutex::new(Acks::default()));
        let compacting = Arc::new(AtomicU64::new(0));
        let reader = {
            let (acks, compacting) = (Arc::clone(&acks), Arc::clone(&compacting));
            std::thread::spawn(move || {
                for line in lines {
                    if line.starts_with("COMPACT") {
                        compacting.fetch_add(1, Ordering::SeqCst);
                    }
                    acks.lock().unwrap_or_else(|e| e.into_inner()).read(&line);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_millis(60 + rng.below(400) as u64);
        match kind {
            KillKind::Timed => std::thread::sleep(deadline - Instant::now()),
            KillKind::InCompaction => {
                let give_up = Instant::now() + Duration::from_secs(5);
                while compacting.load(Ordering::SeqCst) == 0 && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_micros(200));
                }
                std::thread::sleep(Duration::from_micros(rng.below(3000) as u64));
            }
            // The shim kills it; if its call never comes, the parent does.
            _ => {
                let give_up = Instant::now() + Duration::from_secs(3);
                while Instant::now() < give_up && reader_alive(&reader) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        child.kill();
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
        std::fs::write(&ctl, "")?;
        let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|e| e.into_inner()));
        ensure!(
            acks.errors.is_empty(),
            "kill {cycle} ({}): the child reported {:?}",
            kind.label(),
            acks.errors
        );
        *report.kills.entry(kind).or_default() += 1;
        verify(mode, &store_dir, &acks, &mut report)
            .with_context(|| format!("after kill {cycle} ({})", kind.label()))?;
        if (cycle + 1) % 25 == 0 && cycle + 1 < opts.kills {
            println!(
                "  {}: {} kills, {:.0} s",
                mode.name(),
                cycle + 1,
                started.elapsed().as_secs_f64()
            );
        }
        // Checked: remove them, and any a kill left half written.
        let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    }
    // Every kill may have come before the first open finished: then there is no store.
    if store_dir.join("CURRENT").exists() {
        report.revision = Store::builder(&store_dir)
            .read_only(true)
            .open()?
            .current_revision();
    }
    report.took = started.elapsed();
    Ok(report)
}

fn reader_alive(reader: &std::thread::JoinHandle<()>) -> bool {
    !reader.is_finished()
}

/// The checks after one kill.
fn verify(mode: Mode, dir: &Path, acks: &Acks, report: &mut ModeReport) -> Result<()> {
    // A kill inside the very first open may leave no store behind yet.
    if !dir.join("CURRENT").exists() {
        ensure!(acks.max_rev() == 0, "acknowledged writes but no store");
        return Ok(());
    }
    let store = Store::builder(dir)
        .read_only(true)
        .open()
        .context("reopen after the kill")?;
    let check = store.check().context("check after the kill")?;
    report.checks += 1;
    let current = check.current_revision;
    let compacted = check.compacted_revision;
    // Durability: which acknowledged writes must be there.
    let must_hold = if mode.keeps_acks() {
        acks.max_rev()
    } else {
        acks.flushed
    };
    ensure!(
        current >= must_hold,
        "the store is at revision {current}, below acknowledged revision {must_hold} ({} mode)",
        mode.name()
    );
    let read_at = |key: &str, rev: i64| -> Result<Option<(i64, Bytes)>> {
        match store.range(&Range {
            revision: rev,
            ..Range::key(key.to_owned())
        }) {
            Ok(r) => Ok(r.kvs.first().map(|kv| (kv.mod_revision, kv.value.clone()))),
            // Pruned since: nothing left to read there.
            Err(StoreError::Op(OpError::Compacted { .. })) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let checkable = |rev: i64| rev > compacted && rev <= must_hold && rev > 0;
    for (key, value, rev) in &acks.puts {
        if !checkable(*rev) {
            continue;
        }
        if let Some((m, v)) = read_at(key, *rev)? {
            ensure!(
                m == *rev && v == value.as_bytes(),
                "acknowledged put {key}={value} at {rev} reads back as {:?} at {m}",
                String::from_utf8_lossy(&v)
            );
        } else if !is_pruned(&store, key, *rev) {
            bail!("acknowledged put {key}={value} at revision {rev} is lost");
        }
        report.acks_checked += 1;
    }
    for (key, rev) in &acks.dels {
        if checkable(*rev) {
            if let Some((m, _)) = read_at(key, *rev)? {
                bail!("acknowledged delete of {key} at {rev}, yet it reads a value of {m}");
            }
            report.acks_checked += 1;
        }
    }
    // Atomicity: every txn's keys all at one revision, or none.
    let txn_keys = store.range(&Range::prefix("t/"))?;
    let mut groups: HashMap<String, Vec<i64>> = HashMap::new();
    for kv in &txn_keys.kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let id = key
            .rsplit_once('/')
            .map(|(id, _)| id.to_owned())
            .unwrap_or(key);
        groups.entry(id).or_default().push(kv.mod_revision);
    }
    for (id, revs) in &groups {
        ensure!(
            revs.len() == 3 && revs.iter().all(|r| *r == revs[0]),
            "txn {id} is half there: revisions {revs:?}"
        );
        report.atomic_checked += 1;
    }
    for (id, rev) in &acks.txns {
        if checkable(*rev) {
            ensure!(
                groups.contains_key(&format!("t/{id}")),
                "acknowledged txn {id} at {rev} is lost"
            );
            report.acks_checked += 1;
        }
    }
    // Bulk loads: whole entries of 100 only; an acknowledged one whole.
    let bulk = store.range(&Range::prefix("b/"))?;
    let mut loads: HashMap<String, usize> = HashMap::new();
    for kv in &bulk.kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        if let Some((id, _)) = key.rsplit_once('/') {
            *loads.entry(id.to_owned()).or_default() += 1;
        }
    }
    for (id, n) in &loads {
        ensure!(
            n % 100 == 0,
            "bulk load {id} has {n} puts: part of an entry"
        );
        report.atomic_checked += 1;
    }
    for (id, n, rev) in &acks.bulks {
        if checkable(*rev) {
            ensure!(
                loads.get(&format!("b/{id}")) == Some(n),
                "acknowledged bulk load {id} of {n} puts has {:?}",
                loads.get(&format!("b/{id}"))
            );
            report.acks_checked += 1;
        }
    }
    drop(store);
    // Checkpoints the child completed: open and whole, at or above their revision.
    for (path, rev) in &acks.checkpoints {
        if !path.exists() {
            continue;
        }
        let c = Store::builder(path)
            .read_only(true)
            .open()
            .with_context(|| format!("open checkpoint {}", path.display()))?;
        let r = c
            .check()
            .with_context(|| format!("check checkpoint {}", path.display()))?;
        ensure!(
            r.current_revision >= *rev,
            "checkpoint {} is at revision {}, taken at {rev}",
            path.display(),
            r.current_revision
        );
        report.checks += 1;
        report.checkpoints += 1;
    }
    Ok(())
}

/// Whether `key` was pruned below `rev` (a read there is refused as compacted).
fn is_pruned(store: &Store, key: &str, rev: i64) -> bool {
    matches!(
        store.range(&Range {
            revision: rev,
            ..Range::key(key.to_owned())
        }),
        Err(StoreError::Op(OpError::Compacted { .. }))
    )
}

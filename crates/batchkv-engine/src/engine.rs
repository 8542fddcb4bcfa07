//! The engine: opening RocksDB, column families, reads, snapshots, and the one write path.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Options, ReadOptions,
    WriteOptions,
};

use crate::config::{EngineConfig, Tuning};
use crate::error::{EngineError, Result, StatusKind};

/// The default column family's name.
pub const DEFAULT_CF: &str = "default";

/// A column family of an open [`Engine`]: a small copyable index, resolved once by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cf(pub(crate) usize);

impl Cf {
    /// The `default` column family, always open.
    pub const DEFAULT: Cf = Cf(0);
}

/// How a write reaches disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WriteMode {
    /// Write the WAL (survives a process crash once the OS has it).
    pub wal: bool,
    /// fsync the WAL before returning (survives a machine crash). Needs `wal`.
    pub sync: bool,
    /// Fail with [`crate::EngineError::WriteStall`] instead of waiting out a write stall.
    pub no_slowdown: bool,
}

impl WriteMode {
    /// WAL written and fsynced before the write returns.
    pub const SYNC: WriteMode = WriteMode {
        wal: true,
        sync: true,
        no_slowdown: false,
    };
    /// WAL written, not fsynced: survives a process crash, not a power loss.
    pub const WAL: WriteMode = WriteMode {
        wal: true,
        sync: false,
        no_slowdown: false,
    };
    /// No WAL: data lives in the memtable until a flush; a crash loses it.
    pub const NO_WAL: WriteMode = WriteMode {
        wal: false,
        sync: false,
        no_slowdown: false,
    };

    /// Short label for reports: `sync`, `wal`, `no-wal`.
    pub fn label(&self) -> &'static str {
        match (self.wal, self.sync) {
            (true, true) => "sync",
            (true, false) => "wal",
            (false, _) => "no-wal",
        }
    }

    pub(crate) fn write_options(&self) -> Result<WriteOptions> {
        if self.sync && !self.wal {
            return Err(EngineError::SyncWithoutWal);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        wo.disable_wal(!self.wal);
        wo.set_no_slowdown(self.no_slowdown);
        Ok(wo)
    }
}

/// Keys `[start, end)` of one column family; `None` is unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// First key, inclusive.
    pub start: Option<Vec<u8>>,
    /// End, exclusive.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// `[start, end)`.
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Some(start.into()),
            end: Some(end.into()),
        }
    }

    /// Every key from `start` on.
    pub fn from(start: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Some(start.into()),
            end: None,
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let end = prefix_end(&prefix);
        KeyRange {
            start: Some(prefix),
            end,
        }
    }

    fn read_options(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        if let Some(s) = &self.start {
            ro.set_iterate_lower_bound(s.clone());
        }
        if let Some(e) = &self.end {
            ro.set_iterate_upper_bound(e.clone());
        }
        ro
    }
}

/// The smallest key greater than every key with this prefix, or `None` if there is none
/// (empty prefix, or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A RocksDB database with named column families. `Send + Sync`: share it in an `Arc`.
pub struct Engine {
    // Field order matters for drop: the DB closes before the options and cache it uses.
    pub(crate) db: DB,
    pub(crate) opts: Options,
    /// The options of every plain read (no snapshot, no bounds), built once: RocksDB's C API
    /// otherwise allocates and frees a `ReadOptions` per get.
    read_opts: ReadOptions,
    _cache: Cache,
    path: PathBuf,
    cf_names: Vec<String>,
    read_only: bool,
    #[cfg(feature = "fault-injection")]
    pub(crate) fail_after: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.path)
            .field("column_families", &self.cf_names)
            .finish_non_exhaustive()
    }
}

/// RocksDB options exactly as the engine builds them for `tuning`, with its block cache: for the
/// benchmarks, which open raw rust-rocksdb as their reference with the same settings.
#[doc(hidden)]
pub fn rocksdb_options(tuning: &Tuning) -> (Options, Cache) {
    let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
    (rocks_options(tuning, &cache), cache)
}

pub(crate) fn rocks_options(tuning: &Tuning, cache: &Cache) -> Options {
    let mut opts = Options::default();
    let levels = tuning.compression.levels();
    opts.set_compression_per_level(&levels.iter().map(|c| c.to_rocks()).collect::<Vec<_>>());
    // With dynamic level sizing (RocksDB's default) a small database's base level is the last
    // one, and it takes the codec of entry 1 of the per-level list, not the last entry. The
    // bottommost level always holds the coldest data: give it the last codec explicitly.
    if let Some(last) = levels.last() {
        opts.set_bottommost_compression_type(last.to_rocks());
    }
    // A batch spanning column families must survive a crash whole even without the WAL: flush
    // every column family's memtable together. RocksDB forbids this with pipelined writes.
    opts.set_atomic_flush(!tuning.pipelined_write);
    opts.set_write_buffer_size(tuning.write_buffer_bytes);
    opts.set_max_write_buffer_number(tuning.max_write_buffers);
    opts.set_max_background_jobs(tuning.max_background_jobs);
    opts.set_enable_pipelined_write(tuning.pipelined_write);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if let Some(bits) = tuning.bloom_bits_per_key {
        table.set_bloom_filter(bits, false);
    }
    opts.set_block_based_table_factory(&table);
    if tuning.statistics {
        opts.enable_statistics();
    }
    // A WAL record that fails its checksum is an error at open, not the silent end of the log
    // (RocksDB's default, point-in-time recovery, drops every record after it, acknowledged or
    // not). Only an incomplete record at the very end, a write cut short by a crash, is
    // tolerated: it was never acknowledged. This is etcd's rule for its own WAL.
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    // RocksDB keeps 1,000 old info logs by default, one per open: a process that opens the
    // store per command (the CLI) filled a 30 MiB disk with them. Keep a few, each bounded.
    opts.set_keep_log_file_num(INFO_LOGS_KEPT);
    opts.set_max_log_file_size(INFO_LOG_BYTES);
    opts
}

/// Old RocksDB info logs (`LOG.old.*`) kept in the database directory.
const INFO_LOGS_KEPT: usize = 5;
/// An info log is rolled over at this size.
const INFO_LOG_BYTES: usize = 4 << 20;

/// What [`Engine::verify_checksums`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read, per column family (`default` first).
    pub entries: Vec<(String, u64)>,
    /// Live SST files, each read through in full: (file name, column family, bytes).
    pub sst_files: Vec<(String, String, u64)>,
}

impl Engine {
    /// Opens (or creates) the database of `config`.
    ///
    /// # Errors
    /// [`EngineError::InvalidConfig`] for bad tuning, [`EngineError::NotADirectory`] when the
    /// path is a file, [`EngineError::Missing`] when it does not exist and `create_if_missing`
    /// is off, [`EngineError::Io`] when it cannot be created (permissions),
    /// [`EngineError::Locked`] when another process or handle holds it.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        config.tuning.validate()?;
        let path = config.path.clone();
        if path.exists() && !path.is_dir() {
            return Err(EngineError::NotADirectory { path });
        }
        if (config.read_only || !config.create_if_missing) && !path.join("CURRENT").exists() {
            return Err(EngineError::Missing { path });
        }
        if !path.exists() {
            std::fs::create_dir_all(&path).map_err(|e| EngineError::io("create", &path, e))?;
        }
        for name in &config.column_families {
            if name.is_empty() {
                return Err(EngineError::config("column_families", "a name is empty"));
            }
        }
        let cache = Cache::new_lru_cache(config.tuning.block_cache_bytes);
        let mut opts = rocks_options(&config.tuning, &cache);
        opts.create_if_missing(config.create_if_missing);
        opts.create_missing_column_families(true);

        // default first, then the caller's, then any others already on disk.
        let mut names = vec![DEFAULT_CF.to_owned()];
        for n in &config.column_families {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        if path.join("CURRENT").exists() {
            for n in DB::list_cf(&opts, &path).map_err(|e| open_error(&path, e))? {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let descriptors = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, rocks_options(&config.tuning, &cache)));
        let db = if config.read_only {
            // Column families asked for that the database lacks cannot be created read-only.
            let on_disk = DB::list_cf(&opts, &path).map_err(|e| open_error(&path, e))?;
            names.retain(|n| on_disk.contains(n));
            let descriptors = names
                .iter()
                .map(|n| ColumnFamilyDescriptor::new(n, rocks_options(&config.tuning, &cache)));
            DB::open_cf_descriptors_read_only(&opts, &path, descriptors, false)
        } else {
            DB::open_cf_descriptors(&opts, &path, descriptors)
        }
        .map_err(|e| open_error(&path, e))?;
        Ok(Engine {
            db,
            opts,
            read_opts: ReadOptions::default(),
            _cache: cache,
            path,
            cf_names: names,
            read_only: config.read_only,
            #[cfg(feature = "fault-injection")]
            fail_after: std::sync::atomic::AtomicI64::new(-1),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the engine was opened read-only ([`EngineConfig::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn refuse_if_read_only(&self) -> Result<()> {
        if self.read_only {
            return Err(EngineError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Reads every entry of every column family with block checksums verified and without
    /// filling the block cache: every data block of every live SST file, and the memtables.
    /// RocksDB's corruption errors name the file and the offset at fault.
    ///
    /// # Errors
    /// The first read error, e.g. [`crate::StatusKind::Corruption`] for a checksum mismatch.
    pub fn verify_checksums(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (i, name) in self.cf_names.iter().enumerate() {
            let h = self.handle(Cf(i))?;
            let mut ro = ReadOptions::default();
            ro.set_verify_checksums(true);
            ro.fill_cache(false);
            let mut it = self.db.raw_iterator_cf_opt(h, ro);
            it.seek_to_first();
            let mut n = 0u64;
            while it.valid() {
                n += 1;
                it.next();
            }
            it.status().map_err(EngineError::rocks)?;
            report.entries.push((name.clone(), n));
        }
        let files = self.db.live_files().map_err(EngineError::rocks)?;
        report.sst_files = files
            .into_iter()
            .map(|f| (f.name, f.column_family_name, f.size as u64))
            .collect();
        report.sst_files.sort();
        Ok(report)
    }

    /// Names of the open column families (`default` first).
    pub fn column_families(&self) -> &[String] {
        &self.cf_names
    }

    /// The column family called `name`.
    ///
    /// # Errors
    /// [`EngineError::UnknownColumnFamily`] if it was not opened.
    pub fn cf(&self, name: &str) -> Result<Cf> {
        self.cf_names
            .iter()
            .position(|n| n == name)
            .map(Cf)
            .ok_or_else(|| EngineError::UnknownColumnFamily {
                name: name.to_owned(),
                open: self.cf_names.join(", "),
            })
    }

    pub(crate) fn handle(&self, cf: Cf) -> Result<&ColumnFamily> {
        let name = self
            .cf_names
            .get(cf.0)
            .ok_or_else(|| EngineError::UnknownColumnFamily {
                name: format!("#{}", cf.0),
                open: self.cf_names.join(", "),
            })?;
        self.db
            .cf_handle(name)
            .ok_or_else(|| EngineError::UnknownColumnFamily {
                name: name.clone(),
                open: self.cf_names.join(", "),
            })
    }

    /// Handles of every open column family, indexed by [`Cf`].
    pub(crate) fn handles(&self) -> Result<Vec<&ColumnFamily>> {
        (0..self.cf_names.len())
            .map(|i| self.handle(Cf(i)))
            .collect()
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// A RocksDB read error.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(cf, key, |v| v.map(<[u8]>::to_vec))
    }

    /// Lends the value of `key` (pinned in RocksDB, not copied) to `f`, and returns what `f`
    /// returns: for callers that keep only part of the value.
    ///
    /// # Errors
    /// A RocksDB read error.
    pub fn get_with<R>(&self, cf: Cf, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        let h = self.handle(cf)?;
        let pinned = self
            .db
            .get_pinned_cf_opt(h, key, &self.read_opts)
            .map_err(EngineError::rocks)?;
        Ok(f(pinned.as_deref()))
    }

    /// The values of `keys`, in order.
    ///
    /// # Errors
    /// The first RocksDB read error.
    pub fn multi_get<K: AsRef<[u8]>>(&self, cf: Cf, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = vec![None; keys.len()];
        self.multi_get_with(cf, keys, |i, v| out[i] = v.map(<[u8]>::to_vec))?;
        Ok(out)
    }

    /// Reads `keys` with one batched RocksDB `MultiGet` and lends each value (pinned, not
    /// copied) to `f` with the key's position in `keys`, in that order. Keys already in the
    /// column family's order (bytewise ascending) spare RocksDB its sort of them.
    ///
    /// # Errors
    /// The first RocksDB read error (`f` may have seen some values by then).
    pub fn multi_get_with<K: AsRef<[u8]>>(
        &self,
        cf: Cf,
        keys: &[K],
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let h = self.handle(cf)?;
        let sorted = keys.windows(2).all(|w| w[0].as_ref() <= w[1].as_ref());
        let values = self
            .db
            .batched_multi_get_cf_opt(h, keys, sorted, &self.read_opts);
        for (i, v) in values.into_iter().enumerate() {
            f(i, v.map_err(EngineError::rocks)?.as_deref());
        }
        Ok(())
    }

    /// Calls `f` with each key and value of `range` in key order (reverse when `reverse`),
    /// without copying, until `f` returns false. Returns how many pairs `f` saw.
    ///
    /// # Errors
    /// A RocksDB iterator error.
    pub fn scan(
        &self,
        cf: Cf,
        range: &KeyRange,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize> {
        let h = self.handle(cf)?;
        let it = self.db.raw_iterator_cf_opt(h, range.read_options());
        drive(it, reverse, f)
    }

    /// The pairs of `range` in key order, at most `limit` (0: no limit).
    ///
    /// # Errors
    /// A RocksDB iterator error.
    pub fn range(&self, cf: Cf, range: &KeyRange, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        collect_pairs(limit, |f| self.scan(cf, range, false, f))
    }

    /// A consistent view for reads across several calls; writes after it are not seen.
    pub fn snapshot(&self) -> EngineSnapshot<'_> {
        EngineSnapshot {
            engine: self,
            snap: self.db.snapshot(),
        }
    }

    /// Flushes every column family's memtable to SST files, atomically (making WAL-less writes
    /// durable, and a batch across column families durable whole).
    ///
    /// # Errors
    /// A RocksDB flush error.
    pub fn flush(&self) -> Result<()> {
        self.refuse_if_read_only()?;
        let handles = self.handles()?;
        self.db
            .flush_cfs_opt(&handles, &rocksdb::FlushOptions::default())
            .map_err(EngineError::rocks)
    }

    /// Writes the WAL buffer to the OS, and fsyncs it when `sync`.
    ///
    /// # Errors
    /// A RocksDB error.
    pub fn flush_wal(&self, sync: bool) -> Result<()> {
        self.refuse_if_read_only()?;
        self.db.flush_wal(sync).map_err(EngineError::rocks)
    }

    /// Compacts a whole column family, rewriting even the bottommost level, so every file ends
    /// up with the codec of the level it lands in (a plain manual compaction may just move a
    /// lone L0 file down, uncompressed). For maintenance, benchmarks and tests of SST sizes.
    ///
    /// # Errors
    /// Unknown column family.
    pub fn compact(&self, cf: Cf) -> Result<()> {
        let h = self.handle(cf)?;
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(h, None::<&[u8]>, None::<&[u8]>, &opts);
        Ok(())
    }

    /// Compacts every column family over its whole key range ([`Engine::compact`] on each,
    /// the bottommost level rewritten too): deleted and overwritten data and their tombstones
    /// are dropped, and the files shrink to the live data (what etcd's defragment does for its
    /// bbolt file). It blocks until RocksDB is done; reads and writes go on meanwhile.
    ///
    /// # Errors
    /// The engine is read-only.
    pub fn compact_all(&self) -> Result<()> {
        self.refuse_if_read_only()?;
        for i in 0..self.cf_names.len() {
            self.compact(Cf(i))?;
        }
        Ok(())
    }

    /// The single place every write goes through.
    pub(crate) fn write_raw(&self, batch: rocksdb::WriteBatch, mode: WriteMode) -> Result<()> {
        let mut wo = mode.write_options()?;
        self.refuse_if_read_only()?;
        #[cfg(feature = "fault-injection")]
        {
            use std::sync::atomic::Ordering;
            // One atomic step: concurrent writers consume the allowance exactly.
            let before = self
                .fail_after
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    (left > 0).then(|| left - 1)
                });
            if before == Err(0) {
                return Err(EngineError::Injected);
            }
        }
        if mode.no_slowdown {
            return self.db.write_opt(batch, &wo).map_err(EngineError::rocks);
        }
        // A write that must wait out a stall waits here, not in RocksDB's write queue. A writer
        // parked there blocks every manual flush, and RocksDB's own recovery from a full disk
        // flushes manually while the stall it would end holds the writer: both waited forever
        // (found by the disk-full test, about one run in ten under load). So every write asks
        // not to wait; a stalled one leaves the queue, sleeps and tries again.
        wo.set_no_slowdown(true);
        let mut backoff = std::time::Duration::from_micros(100);
        let mut batch = batch;
        loop {
            let again = batch.data().to_vec();
            match self.db.write_opt(batch, &wo).map_err(EngineError::rocks) {
                Err(EngineError::WriteStall { .. }) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(10));
                    batch = rocksdb::WriteBatch::from_data(&again);
                }
                r => return r,
            }
        }
    }

    /// Makes every write after the next `successful` ones fail with
    /// [`EngineError::Injected`], until [`Engine::clear_injected_failures`].
    #[cfg(feature = "fault-injection")]
    pub fn inject_write_failures_after(&self, successful: u64) {
        self.fail_after.store(
            i64::try_from(successful).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Stops injecting failures.
    #[cfg(feature = "fault-injection")]
    pub fn clear_injected_failures(&self) {
        self.fail_after
            .store(-1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn open_error(path: &Path, e: rocksdb::Error) -> EngineError {
    let message = e.to_string();
    let lower = message.to_lowercase();
    if lower.contains("lock") && (lower.contains("lock file") || lower.contains("lock hold")) {
        return EngineError::Locked {
            path: path.to_path_buf(),
            message,
        };
    }
    if lower.contains("permission denied") {
        return EngineError::Io {
            op: "open",
            path: path.to_path_buf(),
            message,
        };
    }
    match EngineError::rocks(e) {
        EngineError::RocksDb {
            kind: StatusKind::Corruption,
            message,
        } if !message.contains(".log") && !message.contains(".sst") => EngineError::RocksDb {
            kind: StatusKind::Corruption,
            message: match wal_corruption(path) {
                Some(detail) => format!("{message} (in {detail})"),
                None => message,
            },
        },
        other => other,
    }
}

/// Where recovery found a bad WAL record: RocksDB's status says only "checksum mismatch", its
/// info log says which file (`<path>.log: dropping N bytes; Corruption: ...`). A read-only open
/// writes no info log: then the WAL files being replayed are named.
fn wal_corruption(path: &Path) -> Option<String> {
    let from_log = std::fs::read(path.join("LOG")).ok().and_then(|log| {
        let text = String::from_utf8_lossy(&log);
        let line = text.lines().rev().find(|l| l.contains(".log: dropping "))?;
        let start = line.find(&*path.to_string_lossy()).unwrap_or(0);
        let detail = &line[start..];
        Some(match detail.split_once("; ") {
            Some((what, _)) => what.to_owned(),
            None => detail.to_owned(),
        })
    });
    from_log.or_else(|| {
        let mut wals: Vec<String> = std::fs::read_dir(path)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        wals.sort();
        (!wals.is_empty()).then(|| format!("the WAL being replayed: {}", wals.join(", ")))
    })
}

/// Copies up to `limit` pairs (0: all) out of a scan.
fn collect_pairs(
    limit: usize,
    scan: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<usize>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    scan(&mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        limit == 0 || out.len() < limit
    })?;
    Ok(out)
}

fn drive<D: rocksdb::DBAccess>(
    mut it: rocksdb::DBRawIteratorWithThreadMode<'_, D>,
    reverse: bool,
    mut f: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<usize> {
    if reverse {
        it.seek_to_last();
    } else {
        it.seek_to_first();
    }
    let mut n = 0;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        n += 1;
        if !f(k, v) {
            break;
        }
        if reverse {
            it.prev();
        } else {
            it.next();
        }
    }
    it.status().map_err(EngineError::rocks)?;
    Ok(n)
}

/// A consistent read view of an [`Engine`] (RocksDB snapshot).
pub struct EngineSnapshot<'e> {
    engine: &'e Engine,
    snap: rocksdb::Snapshot<'e>,
}

impl std::fmt::Debug for EngineSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSnapshot").finish_non_exhaustive()
    }
}

impl EngineSnapshot<'_> {
    /// The value of `key` as of the snapshot.
    ///
    /// # Errors
    /// A RocksDB read error.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let h = self.engine.handle(cf)?;
        self.snap.get_cf(h, key).map_err(EngineError::rocks)
    }

    /// [`Engine::scan`] as of the snapshot.
    ///
    /// # Errors
    /// A RocksDB iterator error.
    pub fn scan(
        &self,
        cf: Cf,
        range: &KeyRange,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize> {
        let h = self.engine.handle(cf)?;
        let mut ro = range.read_options();
        ro.set_snapshot(&self.snap);
        let it = self.engine.db.raw_iterator_cf_opt(h, ro);
        drive(it, reverse, f)
    }

    /// [`Engine::range`] as of the snapshot.
    ///
    /// # Errors
    /// A RocksDB iterator error.
    pub fn range(&self, cf: Cf, range: &KeyRange, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        collect_pairs(limit, |f| self.scan(cf, range, false, f))
    }
}

//! batchkv's I/O fault injection below RocksDB: a shared object that a test loads into a child
//! process with `LD_PRELOAD`. It stands in front of libc's `write`, `pwrite`, `pwrite64`,
//! `fsync`, `fdatasync`, `sync_file_range` and `rename`; for a file under the directory named by
//! `BATCHKV_FAULT_DIR` it consults the plan in the control file named by `BATCHKV_FAULT_CTL`,
//! and passes every other call straight to libc. RocksDB (linked statically into the child) and
//! everything else in the process call these through the dynamic linker, so the plan sees each
//! real write and sync of the database's files (WAL, SST, MANIFEST, CURRENT, OPTIONS) at the
//! moment it happens.
//!
//! The plan is one line of `key=value` words, re-read whenever the control file changes (so the
//! child, or its parent, can arm it at a chosen moment):
//!
//! ```text
//! ops=fsync,write action=fail errno=EIO after=3 count=1 match=.log
//! ```
//!
//! - `ops`: which calls count: `write` (write, pwrite, pwrite64), `fsync` (fsync, fdatasync,
//!   sync_file_range), `rename` (its source or target is under the directory). Default: all.
//! - `match`: a substring the file's path must contain (`.log`, `.sst`, `MANIFEST`). Default:
//!   any file under the directory.
//! - `after`: how many matching calls go through before the action (default 0).
//! - `action`: `fail` (return -1 with `errno`, without calling libc), `kill` (SIGKILL the
//!   process inside the call, before libc runs it: a crash at exactly that write or fsync), or
//!   `delay` (sleep `ms` milliseconds, then call libc: a slow disk).
//! - `errno`: `EIO` (default), `ENOSPC`, `EDQUOT` or `EROFS`.
//! - `count`: how many calls fail (default 0: every one from then on, as a dying disk does).
//!
//! Every fault is also logged, one line per call (`fail fsync /dir/000012.log EIO`), to the
//! file named by `BATCHKV_FAULT_LOG`, if set: the tests count what they injected from it.
//!
//! This is the workspace's only crate with `unsafe` code: intercepting libc takes raw pointers,
//! `dlsym` and `errno`. It is built as a `cdylib` for `LD_PRELOAD`, and as an `rlib` only so
//! that cargo builds the shared object for this crate's own integration tests (which load it
//! into children and never link it). No crate may depend on it: its exported `write` and
//! `fsync` would replace libc's in whatever links it.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use libc::{off_t, off64_t, size_t, ssize_t};

/// Which kind of call a plan counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Sync,
    Rename,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Sync => "fsync",
            Kind::Rename => "rename",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail,
    Kill,
    Delay(u64),
}

/// The parsed control file.
#[derive(Clone, Debug)]
struct Plan {
    ops: [bool; 3],
    matching: Vec<u8>,
    after: u64,
    count: u64,
    action: Action,
    errno: c_int,
}

impl Plan {
    fn parse(text: &str) -> Option<Plan> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let mut delay_ms = 0;
        let mut plan = Plan {
            ops: [true; 3],
            matching: Vec::new(),
            after: 0,
            count: 0,
            action: Action::Fail,
            errno: libc::EIO,
        };
        for word in text.split_whitespace() {
            let (k, v) = word.split_once('=')?;
            match k {
                "ops" => {
                    plan.ops = [false; 3];
                    for op in v.split(',') {
                        match op {
                            "write" => plan.ops[0] = true,
                            "fsync" => plan.ops[1] = true,
                            "rename" => plan.ops[2] = true,
                            _ => return None,
                        }
                    }
                }
                "match" => plan.matching = v.as_bytes().to_vec(),
                "after" => plan.after = v.parse().ok()?,
                "count" => plan.count = v.parse().ok()?,
                "action" => {
                    plan.action = match v {
                        "fail" => Action::Fail,
                        "kill" => Action::Kill,
                        "delay" => Action::Delay(0),
                        _ => return None,
                    }
                }
                "ms" => delay_ms = v.parse().ok()?,
                "errno" => {
                    plan.errno = match v {
                        "EIO" => libc::EIO,
                        "ENOSPC" => libc::ENOSPC,
                        "EDQUOT" => libc::EDQUOT,
                        "EROFS" => libc::EROFS,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        if plan.action == Action::Delay(0) {
            plan.action = Action::Delay(delay_ms);
        }
        Some(plan)
    }

    fn counts(&self, kind: Kind) -> bool {
        self.ops[kind as usize]
    }
}

struct Config {
    dir: Vec<u8>,
    ctl: PathBuf,
    log: Option<PathBuf>,
}

/// The plan as last read, with the control file's identity when it was read.
struct Loaded {
    stamp: Option<(i64, i64, u64)>,
    plan: Option<Plan>,
}

fn config() -> Option<&'static Config> {
    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = std::env::var_os("BATCHKV_FAULT_DIR")?;
            let ctl = std::env::var_os("BATCHKV_FAULT_CTL")?;
            Some(Config {
                dir: dir.as_bytes().to_vec(),
                ctl: PathBuf::from(ctl),
                log: std::env::var_os("BATCHKV_FAULT_LOG").map(PathBuf::from),
            })
        })
        .as_ref()
}

static LOADED: Mutex<Loaded> = Mutex::new(Loaded {
    stamp: None,
    plan: None,
});
/// Matching calls seen since the plan was (re)loaded.
static SEEN: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while the shim itself is working, so its own I/O is never intercepted.
    static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The current plan, re-read if the control file changed (by mtime and size).
fn current_plan(cfg: &Config) -> Option<Plan> {
    let meta = std::fs::metadata(&cfg.ctl).ok();
    let stamp = meta.map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.mtime(), m.mtime_nsec(), m.size())
    });
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.stamp != stamp {
        loaded.stamp = stamp;
        loaded.plan = std::fs::read_to_string(&cfg.ctl)
            .ok()
            .and_then(|t| Plan::parse(&t));
        SEEN.store(0, Ordering::SeqCst);
    }
    loaded.plan.clone()
}

fn fd_path(fd: c_int) -> Option<Vec<u8>> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.as_os_str().as_bytes().to_vec())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Decides what to do with one call on `path`: `None` to pass it to libc, or the errno to fail
/// it with. Kills the process for a `kill` plan.
fn decide(kind: Kind, path: impl FnOnce() -> Option<Vec<u8>>) -> Option<c_int> {
    let cfg = config()?;
    if BUSY.with(|b| b.replace(true)) {
        return None;
    }
    let verdict = (|| {
        let path = path()?;
        if !path.starts_with(&cfg.dir) {
            return None;
        }
        let plan = current_plan(cfg)?;
        if !plan.counts(kind) || !contains(&path, &plan.matching) {
            return None;
        }
        let n = SEEN.fetch_add(1, Ordering::SeqCst);
        if n < plan.after || (plan.count > 0 && n >= plan.after + plan.count) {
            return None;
        }
        let path = String::from_utf8_lossy(&path).into_owned();
        match plan.action {
            Action::Kill => {
                log(cfg, &format!("kill {} {path}", kind.name()));
                // SAFETY: raising a signal in this process has no memory-safety requirement.
                unsafe {
                    libc::raise(libc::SIGKILL);
                }
                None
            }
            Action::Delay(ms) => {
                log(cfg, &format!("delay {} {path} {ms}ms", kind.name()));
                std::thread::sleep(std::time::Duration::from_millis(ms));
                None
            }
            Action::Fail => {
                log(
                    cfg,
                    &format!("fail {} {path} {}", kind.name(), errno_name(plan.errno)),
                );
                Some(plan.errno)
            }
        }
    })();
    BUSY.with(|b| b.set(false));
    verdict
}

fn errno_name(e: c_int) -> &'static str {
    match e {
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EROFS => "EROFS",
        _ => "EIO",
    }
}

fn log(cfg: &Config, line: &str) {
    if let Some(p) = &cfg.log {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn fail(errno: c_int) -> c_int {
    // SAFETY: `__errno_location` returns this thread's errno, always valid to write.
    unsafe {
        *libc::__errno_location() = errno;
    }
    -1
}

/// libc's own definition of `name` (the next one after this object in lookup order).
macro_rules! real {
    ($name:literal, $ty:ty) => {{
        static REAL: OnceLock<usize> = OnceLock::new();
        let addr = *REAL.get_or_init(|| {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks a symbol up.
            unsafe { libc::dlsym(libc::RTLD_NEXT, concat!($name, "\0").as_ptr().cast()) as usize }
        });
        assert!(addr != 0, concat!("batchkv-faultfs: libc has no ", $name));
        // SAFETY: the symbol is libc's function of this name, whose C signature `$ty` states.
        unsafe { std::mem::transmute::<usize, $ty>(addr) }
    }};
}

/// Intercepts `write(2)`.
///
/// # Safety
/// As libc's `write`: `buf` points to `count` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    if let Some(e) = decide(Kind::Write, || fd_path(fd)) {
        return fail(e) as ssize_t;
    }
    let f = real!(
        "write",
        unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t
    );
    // SAFETY: forwarded unchanged; the caller upholds `write`'s contract.
    unsafe { f(fd, buf, count) }
}

/// Intercepts `pwrite(2)`.
///
/// # Safety
/// As libc's `pwrite`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    if let Some(e) = decide(Kind::Write, || fd_path(fd)) {
        return fail(e) as ssize_t;
    }
    let f = real!(
        "pwrite",
        unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t
    );
    // SAFETY: forwarded unchanged.
    unsafe { f(fd, buf, count, offset) }
}

/// Intercepts `pwrite64(2)`.
///
/// # Safety
/// As libc's `pwrite64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off64_t,
) -> ssize_t {
    if let Some(e) = decide(Kind::Write, || fd_path(fd)) {
        return fail(e) as ssize_t;
    }
    let f = real!(
        "pwrite64",
        unsafe extern "C" fn(c_int, *const c_void, size_t, off64_t) -> ssize_t
    );
    // SAFETY: forwarded unchanged.
    unsafe { f(fd, buf, count, offset) }
}

/// Intercepts `fsync(2)`.
///
/// # Safety
/// As libc's `fsync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    if let Some(e) = decide(Kind::Sync, || fd_path(fd)) {
        return fail(e);
    }
    let f = real!("fsync", unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: forwarded unchanged.
    unsafe { f(fd) }
}

/// Intercepts `fdatasync(2)`.
///
/// # Safety
/// As libc's `fdatasync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    if let Some(e) = decide(Kind::Sync, || fd_path(fd)) {
        return fail(e);
    }
    let f = real!("fdatasync", unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: forwarded unchanged.
    unsafe { f(fd) }
}

/// Intercepts `sync_file_range(2)`.
///
/// # Safety
/// As libc's `sync_file_range`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sync_file_range(
    fd: c_int,
    offset: off64_t,
    nbytes: off64_t,
    flags: c_uint,
) -> c_int {
    if let Some(e) = decide(Kind::Sync, || fd_path(fd)) {
        return fail(e);
    }
    let f = real!(
        "sync_file_range",
        unsafe extern "C" fn(c_int, off64_t, off64_t, c_uint) -> c_int
    );
    // SAFETY: forwarded unchanged.
    unsafe { f(fd, offset, nbytes, flags) }
}

/// Intercepts `rename(2)`: a rename whose source or target is under the directory counts.
///
/// # Safety
/// As libc's `rename`: both are NUL-terminated paths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    let path = || {
        // SAFETY: the caller passes NUL-terminated paths, as `rename` requires.
        let (o, n) = unsafe { (CStr::from_ptr(old), CStr::from_ptr(new)) };
        let cfg = config()?;
        [n.to_bytes(), o.to_bytes()]
            .into_iter()
            .find(|p| p.starts_with(&cfg.dir))
            .map(<[u8]>::to_vec)
    };
    if let Some(e) = decide(Kind::Rename, path) {
        return fail(e);
    }
    let f = real!(
        "rename",
        unsafe extern "C" fn(*const c_char, *const c_char) -> c_int
    );
    // SAFETY: forwarded unchanged.
    unsafe { f(old, new) }
}

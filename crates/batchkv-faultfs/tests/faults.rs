//! I/O faults below RocksDB: a child process runs the store with this crate's shim preloaded
//! (`LD_PRELOAD`), arms a plan (a failing fsync, WAL write, SST write or rename) at a chosen
//! moment, and reports what each call answered; the parent then reopens the store without the
//! shim and checks what survived.
//!
//! What must hold: a write whose WAL write or fsync failed is never acknowledged; after such a
//! failure the store takes no more writes (fail-stop, `StoreError::Halted`, which says what
//! happened), even once the disk works again; reads go on; and a reopen recovers every
//! acknowledged write with the stored state whole (`Store::check`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchkv::{AutoFlushConfig, Durability, EngineError, MvccError, Store, StoreError, Tuning};
use batchkv_testkit::{ChildProcess, child_env, temp_dir, this_test};

const CHILD: &str = "BATCHKV_FAULTFS_CHILD";

/// The shim next to this test binary (cargo builds it for this crate's tests).
fn shim() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    let so = deps.join("libbatchkv_faultfs.so");
    assert!(
        so.is_file(),
        "{} is missing: build with cargo test --workspace",
        so.display()
    );
    so
}

/// Where a child's store lives, and its control and fault-log files.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = temp_dir();
        // Canonical: the shim compares it with what /proc/self/fd resolves to.
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        Setup {
            data: root.join("data"),
            ctl: root.join("faults.ctl"),
            log: root.join("faults.log"),
            _tmp: tmp,
        }
    }

    /// Runs `test`'s child half with the shim preloaded; returns its stdout lines.
    fn run_child(&self, test: &str, scenario: &str) -> Vec<String> {
        let mut cmd = this_test(test);
        cmd.env("LD_PRELOAD", shim())
            .env("BATCHKV_FAULT_DIR", &self.data)
            .env("BATCHKV_FAULT_CTL", &self.ctl)
            .env("BATCHKV_FAULT_LOG", &self.log)
            .env(
                CHILD,
                format!("{}|{}|{scenario}", self.data.display(), self.ctl.display()),
            );
        let child = ChildProcess::spawn(cmd);
        let exit = child.wait();
        assert!(
            exit.status.success(),
            "the child failed ({}):\nstdout:\n{}\nstderr:\n{}",
            exit.status,
            exit.stdout,
            exit.stderr
        );
        exit.stdout.lines().map(str::to_owned).collect()
    }

    /// Faults the shim injected (lines of its log).
    fn injected(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// What the child reported under `tag` (its line `@tag: ...`; the test harness may have
/// printed on the same line before it).
fn line<'a>(lines: &'a [String], tag: &str) -> &'a str {
    let marker = format!("@{tag}:");
    lines
        .iter()
        .find_map(|l| l.find(&marker).map(|at| &l[at + marker.len()..]))
        .unwrap_or_else(|| panic!("the child printed no {marker} line: {lines:?}"))
        .trim()
}

/// The keys the child reported as acknowledged.
fn acked(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.find("@ACK:").map(|at| l[at + 5..].trim().to_owned()))
        .collect()
}

fn arm(ctl: &Path, plan: &str) {
    std::fs::write(ctl, plan).expect("write the fault plan");
}

/// The child half: opens the store, acknowledges 40 puts, arms the plan, and reports.
fn child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (data, ctl, scenario) = (
        PathBuf::from(parts.next().expect("data dir")),
        PathBuf::from(parts.next().expect("control file")),
        parts.next().expect("scenario"),
    );
    let durability = match scenario {
        "wal-sync" => Durability::Wal {
            flush: AutoFlushConfig {
                interval: Duration::from_millis(5),
                bytes: 1 << 20,
            },
        },
        "sst-write" => Durability::None,
        _ => Durability::Sync,
    };
    if scenario == "stall" {
        return stall_child(&data, &ctl);
    }
    if scenario == "rename" {
        // Every rename fails while the store opens: RocksDB installs CURRENT and OPTIONS by
        // renaming temporary files.
        arm(&ctl, "ops=rename action=fail errno=EIO");
        match Store::builder(&data).durability(durability).open() {
            Ok(_) => println!("@OPENED: despite failing renames"),
            Err(e) => println!("@OPEN-FAILED: {e}"),
        }
        return;
    }
    let store = Store::builder(&data)
        .durability(durability)
        .open()
        .expect("open without faults");
    for i in 0..40 {
        store
            .put(format!("k{i:02}"), "v")
            .expect("put without faults");
        println!("@ACK: k{i:02}");
    }
    if scenario == "sst-write" {
        store.flush().expect("flush without faults");
        println!("@FLUSHED: ");
        store.put("after-flush", "v").expect("put");
        println!("@ACK: after-flush");
    }
    arm(
        &ctl,
        match scenario {
            "fsync" | "wal-sync" => "ops=fsync match=.log action=fail errno=EIO",
            "wal-write" => "ops=write match=.log action=fail errno=EIO",
            "sst-write" => "ops=write match=.sst action=fail errno=EIO",
            other => panic!("unknown scenario {other}"),
        },
    );
    match scenario {
        "wal-sync" => {
            // Acknowledged (WAL written, not synced); the background sync then fails.
            store.put("x", "v").expect("a Wal-mode put does not sync");
            println!("@ACK: x");
            let start = Instant::now();
            while store.halted().is_none() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("@HALTED-BY-SYNC: {}", store.halted().unwrap_or_default());
        }
        "sst-write" => {
            store.put("x", "v").expect("a None-mode put writes no file");
            println!("@ACK: x");
            match store.flush() {
                Ok(()) => println!("@FLUSH-OK: "),
                Err(e) => println!("@FLUSH-FAILED: {e}"),
            }
        }
        _ => match store.put("x", "v") {
            Ok(_) => println!("@ACK: x"),
            Err(e) => println!("@FAILED: {e}"),
        },
    }
    match store.put("y", "v") {
        Ok(_) => println!("@ACK: y"),
        Err(e @ StoreError::Halted { .. }) => println!("@HALTED: {e}"),
        Err(e) => println!("@OTHER: {e}"),
    }
    // The disk works again: the store still takes no writes (a later fsync that succeeds
    // proves nothing about the pages the failed one lost).
    arm(&ctl, "");
    match store.put("z", "v") {
        Ok(_) => println!("@ACK: z"),
        Err(e @ StoreError::Halted { .. }) => println!("@STILL-HALTED: {e}"),
        Err(e) => println!("@OTHER: {e}"),
    }
    let read = store.get("k00").map(|kv| kv.is_some());
    println!("@READ: {read:?}");
}

/// A real write stall: 64 KiB memtables, at most 2 of them, and SST writes slowed to 300 ms
/// each, so memtables fill faster than they flush and RocksDB stops writes.
fn stall_child(data: &Path, ctl: &Path) {
    let tuning = Tuning {
        write_buffer_bytes: 64 << 10,
        max_write_buffers: 2,
        ..Tuning::default()
    };
    let value = vec![b'v'; 4096];
    // 1. With `fail_on_write_stall`, the stalled write fails at once with its own error.
    let store = Store::builder(data.join("fails"))
        .tuning(tuning.clone())
        .fail_on_write_stall(true)
        .open()
        .expect("open");
    arm(ctl, "ops=write match=.sst action=delay ms=300");
    let mut acked = 0;
    let err = loop {
        match store.put(format!("k{acked:04}"), value.clone()) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "no stall");
    };
    let stalled = matches!(&err, StoreError::Storage(e) if matches!(&**e, MvccError::Engine(EngineError::WriteStall { .. })));
    println!("@STALL: {stalled} after {acked} puts: {err}");
    println!("@HALTED-AFTER-STALL: {:?}", store.halted());
    // The flush finishes (slowly); then writes go through again.
    let start = Instant::now();
    while store.put("after-stall", "v").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stall never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("@RESUMED: after {:?}", start.elapsed());
    drop(store);
    // 2. Without it, writes wait the stall out: slower, never failed.
    let store = Store::builder(data.join("waits"))
        .tuning(tuning)
        .open()
        .expect("open");
    let mut slowest = Duration::ZERO;
    for i in 0..(acked + 20) {
        let t = Instant::now();
        store
            .put(format!("k{i:04}"), value.clone())
            .expect("a stalled write waits, then succeeds");
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "@WAITED: {} puts, the slowest {} ms",
        acked + 20,
        slowest.as_millis()
    );
    arm(ctl, "");
}

/// The parent's checks after the child: everything acknowledged is there, the stored state is
/// whole, and the reopened store takes writes.
fn reopen_and_check(data: &Path, acked: &[String]) -> Store {
    let store = Store::open(data).expect("reopen without faults");
    for key in acked {
        assert!(
            store.get(key).expect("get").is_some(),
            "acknowledged {key} is lost"
        );
    }
    store
        .check()
        .expect("the stored state is whole after the fault");
    store
        .put("after-reopen", "v")
        .expect("writes work after reopen");
    store
}

#[test]
fn a_failed_wal_fsync_is_not_acknowledged_halts_the_store_and_reopen_recovers() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    let lines = s.run_child(
        "a_failed_wal_fsync_is_not_acknowledged_halts_the_store_and_reopen_recovers",
        "fsync",
    );
    let failed = line(&lines, "FAILED");
    assert!(
        failed.contains("While fdatasync") && failed.contains(".log"),
        "the error says the WAL sync failed: {failed}"
    );
    assert!(failed.contains("Input/output error"), "{failed}");
    let halted = line(&lines, "HALTED");
    assert!(
        halted.contains("takes no more writes") && halted.contains("fdatasync"),
        "{halted}"
    );
    assert!(line(&lines, "STILL-HALTED").contains("takes no more writes"));
    assert_eq!(line(&lines, "READ"), "Ok(true)");
    let injected = s.injected();
    assert!(!injected.is_empty(), "no fault was injected");
    let store = reopen_and_check(&s.data, &acked(&lines));
    // `y` and `z` never reached RocksDB; `x` may be there (its WAL record was written, only
    // the fsync failed): never acknowledged, so either is right.
    assert!(store.get("y").expect("get").is_none());
    assert!(store.get("z").expect("get").is_none());
    eprintln!("faults injected: {}", injected.len());
}

#[test]
fn a_failed_wal_write_is_not_acknowledged_and_halts_the_store() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    let lines = s.run_child(
        "a_failed_wal_write_is_not_acknowledged_and_halts_the_store",
        "wal-write",
    );
    let failed = line(&lines, "FAILED");
    assert!(
        failed.contains("While appending to file") && failed.contains(".log"),
        "the error names the WAL write: {failed}"
    );
    assert!(line(&lines, "HALTED").contains("takes no more writes"));
    assert!(line(&lines, "STILL-HALTED").contains("takes no more writes"));
    let store = reopen_and_check(&s.data, &acked(&lines));
    assert!(
        store.get("x").expect("get").is_none(),
        "a failed WAL write left x"
    );
    eprintln!("faults injected: {}", s.injected().len());
}

#[test]
fn a_failed_background_wal_sync_halts_a_wal_mode_store() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    let lines = s.run_child(
        "a_failed_background_wal_sync_halts_a_wal_mode_store",
        "wal-sync",
    );
    let why = line(&lines, "HALTED-BY-SYNC");
    assert!(
        why.contains("syncing the WAL"),
        "the cause names the WAL sync: {why}"
    );
    assert!(line(&lines, "HALTED").contains("takes no more writes"));
    assert!(line(&lines, "STILL-HALTED").contains("takes no more writes"));
    // A process exit is no power loss: the Wal mode's acknowledged writes (x too) survive.
    let store = reopen_and_check(&s.data, &acked(&lines));
    assert!(store.get("x").expect("get").is_some());
    eprintln!("faults injected: {}", s.injected().len());
}

#[test]
fn a_failed_sst_write_during_a_flush_halts_the_store() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    let lines = s.run_child(
        "a_failed_sst_write_during_a_flush_halts_the_store",
        "sst-write",
    );
    let failed = line(&lines, "FLUSH-FAILED");
    assert!(
        failed.contains(".sst"),
        "the error names the SST file: {failed}"
    );
    assert!(line(&lines, "HALTED").contains("takes no more writes"));
    // Without a WAL only what was flushed survives: the keys before FLUSHED. `after-flush` and
    // `x` were acknowledged by a `None` store, which promises nothing until the next flush.
    let flushed: Vec<String> = lines
        .iter()
        .take_while(|l| !l.contains("@FLUSHED:"))
        .cloned()
        .collect();
    reopen_and_check(&s.data, &acked(&flushed));
    eprintln!("faults injected: {}", s.injected().len());
}

#[test]
fn failing_renames_fail_the_open_cleanly() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    // A store with data, then an open whose renames fail.
    {
        let store = Store::open(&s.data).expect("create");
        store.put("k", "v").expect("put");
        store.close().expect("close");
    }
    let lines = s.run_child("failing_renames_fail_the_open_cleanly", "rename");
    let failed = line(&lines, "OPEN-FAILED");
    assert!(
        failed.contains("While renaming") && failed.contains("Input/output error"),
        "the open error says which rename failed: {failed}"
    );
    let store = reopen_and_check(&s.data, &["k".to_owned()]);
    drop(store);
    eprintln!("faults injected: {}", s.injected().len());
}

#[test]
fn a_real_write_stall_fails_fast_when_asked_and_otherwise_waits() {
    if let Some(spec) = child_env(CHILD) {
        return child(spec.to_str().expect("UTF-8"));
    }
    let s = Setup::new();
    let lines = s.run_child(
        "a_real_write_stall_fails_fast_when_asked_and_otherwise_waits",
        "stall",
    );
    let stall = line(&lines, "STALL");
    assert!(
        stall.starts_with("true"),
        "not a write-stall error: {stall}"
    );
    assert!(
        stall.contains("write stall") && stall.contains("nothing was written"),
        "{stall}"
    );
    // A stall breaks nothing: not halted, and writes go on once the flush is done.
    assert_eq!(line(&lines, "HALTED-AFTER-STALL"), "None");
    line(&lines, "RESUMED");
    eprintln!("{}; waiting: {}", stall, line(&lines, "WAITED"));
    for dir in ["fails", "waits"] {
        Store::builder(s.data.join(dir))
            .read_only(true)
            .open()
            .expect("open")
            .check()
            .expect("whole after the stall");
    }
}

//! A full disk and read-only stores, on real RocksDB.
//!
//! The disk-full test mounts a 16 MiB tmpfs of its own (it needs root, as CI has; elsewhere it
//! prints `SKIPPED` and why) and fills it through the store: writes get a clear ENOSPC error,
//! reads keep working (in the running store and in a second, read-only store opened beside it),
//! writes resume by themselves once space is freed, and after a close on a full disk the store
//! still opens read-only with every acknowledged write.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use batchkv::{Durability, EngineError, MvccError, Store, StoreError, Tuning};
use batchkv_testkit::{Rng, temp_dir};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a `mib` MiB tmpfs on `dir`, or says why it cannot.
    fn mount(dir: &Path, mib: u32) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Small memtables and cache: the disk fills through flushes and compactions too.
fn small() -> Tuning {
    Tuning {
        write_buffer_bytes: 512 << 10,
        block_cache_bytes: 1 << 20,
        ..Tuning::default()
    }
}

/// Runs `f` on another thread and fails the test if it takes over 60 s (a hung write is a
/// failure, not a slow one).
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung for a minute"))
}

/// Puts incompressible values until the disk is full; returns the keys acknowledged and the
/// error that stopped it.
fn fill(store: &Store, prefix: &str, rng: &mut Rng) -> (Vec<String>, StoreError) {
    let mut acked = Vec::new();
    loop {
        let key = format!("{prefix}/{:05}", acked.len());
        match store.put(key.clone(), rng.bytes(20_000)) {
            Ok(_) => acked.push(key),
            Err(e) => return (acked, e),
        }
        assert!(acked.len() < 100_000, "the 16 MiB disk never filled");
    }
}

fn assert_no_space(e: &StoreError) {
    let StoreError::Storage(inner) = e else {
        panic!("a full disk gave {e:?}, not a storage error");
    };
    assert!(
        matches!(&**inner, MvccError::Engine(ee) if ee.is_no_space()),
        "not ENOSPC: {e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("No space left on device") && text.contains("While appending to file"),
        "the error says what happened and to which file: {text}"
    );
}

#[test]
fn a_full_disk_keeps_reads_working_and_writes_resume_when_space_is_freed() {
    let base = temp_dir();
    let _tmpfs = match Tmpfs::mount(base.path(), 16) {
        Ok(m) => m,
        Err(why) => {
            // Visible in the test output: the disk-full behaviour was not checked here.
            println!("SKIPPED: the disk-full test needs to mount a tmpfs (root): {why}");
            return;
        }
    };
    // Two files holding space back: removing one frees room for the store to go on.
    let ballast = [base.path().join("ballast-1"), base.path().join("ballast-2")];
    for b in &ballast {
        std::fs::write(b, vec![0x5a; 2 << 20]).expect("write ballast");
    }
    let dir = base.path().join("store");
    let mut rng = Rng(0xd15c_f011);
    let store = Store::builder(&dir)
        .durability(Durability::Sync)
        .tuning(small())
        .open()
        .expect("open");

    // 1. Fill it: a clear ENOSPC error; the store is not halted (a full disk is not fatal).
    let s = store.clone();
    let (acked, err) = within_a_minute("filling the disk", move || {
        let mut rng = Rng(1);
        fill(&s, "a", &mut rng)
    });
    assert_no_space(&err);
    assert!(acked.len() > 10, "only {} puts fit", acked.len());
    assert_eq!(store.halted(), None);
    let again = store.put("more", "v").expect_err("the disk is still full");
    assert_no_space(&again);

    // 2. Reads work: in the running store, and in a read-only store opened beside it.
    for key in &acked {
        assert!(
            store.get(key).expect("read on a full disk").is_some(),
            "{key}"
        );
    }
    let ro = Store::builder(&dir)
        .read_only(true)
        .open()
        .expect("read-only open on a full disk");
    assert_eq!(ro.current_revision(), store.current_revision());
    assert!(ro.get(&acked[0]).expect("read").is_some());
    assert!(matches!(
        ro.put("k", "v"),
        Err(StoreError::Storage(ref e)) if matches!(&**e, MvccError::Engine(EngineError::ReadOnly { .. }))
    ));
    ro.check().expect("check of the full store");
    drop(ro);

    // 3. Space freed: writes resume by themselves (RocksDB retries its flush), no reopen.
    std::fs::remove_file(&ballast[0]).expect("free space");
    let s = store.clone();
    let resumed = within_a_minute("resuming", move || {
        let start = Instant::now();
        loop {
            match s.put("resumed", "v") {
                Ok(r) => return Ok((r.revision, start.elapsed())),
                Err(e) if start.elapsed() > Duration::from_secs(45) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    let (rev, took) = resumed.expect("writes resume after space is freed");
    println!("writes resumed {took:?} after space was freed, at revision {rev}");
    store.check().expect("check after resuming");

    // 4. Full again, then closed: the store still opens read-only with everything acknowledged.
    let s = store.clone();
    let (more, err) = within_a_minute("filling again", move || fill(&s, "b", &mut rng));
    assert_no_space(&err);
    let _ = store.close();
    drop(store);
    match Store::builder(&dir).tuning(small()).open() {
        Ok(s) => drop(s),
        Err(e) => println!("a read-write open on the full disk fails, as expected: {e}"),
    }
    let ro = Store::builder(&dir)
        .read_only(true)
        .open()
        .expect("read-only open");
    for key in acked
        .iter()
        .chain(&more)
        .chain(std::iter::once(&"resumed".to_owned()))
    {
        assert!(
            ro.get(key).expect("read").is_some(),
            "acknowledged {key} is lost"
        );
    }
    let report = ro.check().expect("check");
    drop(ro);

    // 5. Space freed again: it opens read-write, with the same digest, and takes writes.
    std::fs::remove_file(&ballast[1]).expect("free space");
    let store = Store::builder(&dir).tuning(small()).open().expect("reopen");
    assert_eq!(store.hash_kv(0).expect("hash"), report.hash);
    store.put("after", "v").expect("write after reopening");
    store.check().expect("check");
}

#[test]
fn a_read_only_store_reads_everything_and_writes_nothing() {
    let dir = temp_dir();
    let store = Store::open(dir.path()).expect("open");
    let lease = store.lease_grant(0, 600).expect("grant").id;
    store
        .put_with(batchkv::Put {
            lease,
            ..batchkv::Put::new("leased", "v")
        })
        .expect("put");
    store.put("k", "v1").expect("put");
    store.put("k", "v2").expect("put");
    let hash = store.hash_kv(0).expect("hash");
    // Beside the writer, with no lock taken.
    let ro = Store::builder(dir.path())
        .read_only(true)
        .open()
        .expect("read-only open");
    assert_eq!(
        ro.get("k").expect("get").map(|kv| kv.value),
        Some("v2".into())
    );
    assert_eq!(ro.leases(), vec![lease]);
    assert_eq!(ro.hash_kv(0).expect("hash"), hash);
    assert!(ro.is_read_only());
    assert!(ro.put("k", "v3").is_err());
    assert!(ro.prune_old_versions(1).is_err());
    ro.close().expect("close writes nothing");
    // The files are as they were: the writer goes on, and nothing changed under it.
    store.put("k", "v3").expect("the writer still writes");
    assert_eq!(store.check().expect("check").current_revision, 5);
    // A read-only open of a directory that holds no store is an error, not a new store.
    let empty = temp_dir();
    assert!(
        Store::builder(empty.path().join("none"))
            .read_only(true)
            .open()
            .is_err()
    );
}

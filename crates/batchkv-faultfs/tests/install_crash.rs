//! A raft snapshot's install (`Mvcc::restore_image`, how a member far behind is caught up)
//! killed at each of its writes and fsyncs: a child process opens a store with this crate's
//! shim preloaded, arms a plan that SIGKILLs it inside the N-th write or fsync under the
//! store's directory, and installs another store's image; the parent reopens the store
//! without the shim and finds the old state or the new one, whole (HashKV, revision, applied
//! index, `Mvcc::check`), never a mix. N grows until the install completes.

use std::path::{Path, PathBuf};

use batchkv_codec::{Op, Put};
use batchkv_mvcc::{Mvcc, MvccConfig};
use batchkv_testkit::{ChildProcess, child_env, temp_dir, this_test};

const CHILD: &str = "BATCHKV_INSTALL_CRASH_CHILD";
const TEST: &str = "an_install_killed_at_any_write_or_fsync_leaves_the_old_state_or_the_new";

/// The shim next to this test binary (cargo builds it for this crate's tests).
fn shim() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let so = exe
        .parent()
        .expect("the test binary's directory")
        .join("libbatchkv_faultfs.so");
    assert!(
        so.is_file(),
        "{} is missing: build with cargo test --workspace",
        so.display()
    );
    so
}

fn open(dir: &Path) -> Mvcc {
    Mvcc::open(MvccConfig::new(dir)).expect("open the store")
}

/// `n` entries of puts under `prefix` (some keys written several times).
fn fill(store: &mut Mvcc, prefix: &str, n: u64, value_bytes: usize) {
    for i in 0..n {
        let index = store.applied_index() + 1;
        let op = Op::Put(Put::new(
            format!("{prefix}/{:03}", i % 97),
            "v".repeat(value_bytes),
        ));
        let applied = store.apply(index, &[op]).expect("entry commits");
        assert!(applied.results.iter().all(Result::is_ok));
    }
}

/// What identifies a state: HashKV, current revision, applied index.
fn state(store: &Mvcc) -> (String, i64, u64) {
    (
        format!("{:?}", store.hash_kv(0).expect("hash")),
        store.current_revision(),
        store.applied_index(),
    )
}

/// The child half: opens the store, arms the plan, installs the image.
fn child(spec: &str) {
    let mut parts = spec.splitn(4, '|');
    let (data, ctl, image, plan) = (
        PathBuf::from(parts.next().expect("data dir")),
        PathBuf::from(parts.next().expect("control file")),
        PathBuf::from(parts.next().expect("image file")),
        parts.next().expect("plan"),
    );
    let image = std::fs::read(image).expect("read the image");
    let mut store = open(&data);
    let applied = store.image_applied_index(&image).expect("an intact image");
    std::fs::write(&ctl, plan).expect("arm the plan");
    store.restore_image(&image, applied).expect("install");
    println!("@INSTALLED");
}

#[test]
fn an_install_killed_at_any_write_or_fsync_leaves_the_old_state_or_the_new() {
    if let Some(spec) = child_env(CHILD) {
        return child(&spec.to_string_lossy());
    }
    let tmp = temp_dir();
    // Canonical: the shim compares it with what /proc/self/fd resolves to.
    let root = tmp.path().canonicalize().expect("canonical temp dir");
    // The new state: another store's image, a few MB.
    let image_file = root.join("image");
    let new = {
        let mut b = open(&root.join("new"));
        fill(&mut b, "new", 600, 4096);
        std::fs::write(&image_file, b.snapshot_image().expect("image")).expect("write image");
        state(&b)
    };
    let mut outcomes = (0, 0);
    for n in 0.. {
        assert!(n < 500, "the install never completed");
        let data = root.join(format!("store-{n}"));
        let old = {
            let mut a = open(&data);
            fill(&mut a, "old", 50, 100);
            state(&a)
        };
        let ctl = root.join(format!("faults-{n}.ctl"));
        let plan = format!("ops=write,fsync action=kill after={n}");
        let mut cmd = this_test(TEST);
        cmd.env("LD_PRELOAD", shim())
            .env("BATCHKV_FAULT_DIR", &data)
            .env("BATCHKV_FAULT_CTL", &ctl)
            .env(
                CHILD,
                format!(
                    "{}|{}|{}|{plan}",
                    data.display(),
                    ctl.display(),
                    image_file.display()
                ),
            );
        let exit = ChildProcess::spawn(cmd).wait();
        // Installed (the child may still be killed after, closing the store), or killed first.
        let installed = exit.stdout.contains("@INSTALLED");
        assert!(
            installed || !exit.status.success(),
            "the child neither installed nor was killed ({}):\n{}\n{}",
            exit.status,
            exit.stdout,
            exit.stderr
        );
        let store = open(&data);
        store.check().expect("the reopened store is consistent");
        let now = state(&store);
        drop(store);
        if now == old {
            assert!(!installed, "installed, yet the old state came back");
            outcomes.0 += 1;
        } else {
            assert_eq!(
                now, new,
                "after a kill at write or fsync {n}: neither state"
            );
            outcomes.1 += 1;
        }
        std::fs::remove_dir_all(&data).expect("remove the store");
        if installed {
            break;
        }
    }
    println!("kills that left the old state, the new one: {outcomes:?}");
    // Killed before the install's WriteBatch reached the WAL: the old state; after: the new.
    assert!(
        outcomes.0 >= 1 && outcomes.1 >= 1,
        "old/new outcomes: {outcomes:?}"
    );
}

//! `batchkv check`: two copies of one history print the same HashKV digest, another history
//! prints another, and a corrupted store fails the check (exit 1) naming the file.

use std::path::Path;
use std::process::Command;

use batchkv_testkit::temp_dir;
use serde_json::Value;

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");

/// Runs `batchkv --data-dir DIR ARGS`: (exit code, stdout, stderr).
fn batchkv(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BATCHKV)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run batchkv");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = batchkv(dir, args);
    assert_eq!(code, 0, "batchkv {args:?} failed: {err}");
    out
}

fn history(dir: &Path, last: &str) {
    ok(dir, &["put", "a", "1"]);
    ok(dir, &["put", "b", "2"]);
    ok(dir, &["del", "a"]);
    ok(dir, &["put", "c", last]);
    ok(dir, &["compaction", "3"]);
}

fn hash(dir: &Path) -> (u64, i64, i64) {
    let v: Value = serde_json::from_str(&ok(dir, &["-w", "json", "check"])).expect("JSON");
    (
        v["hash"].as_u64().expect("hash"),
        v["hash_revision"].as_i64().expect("hash_revision"),
        v["compact_revision"].as_i64().expect("compact_revision"),
    )
}

#[test]
fn check_prints_one_digest_per_history_and_fails_on_corruption() {
    let root = temp_dir();
    let (one, two, other) = (
        root.path().join("one"),
        root.path().join("two"),
        root.path().join("other"),
    );
    history(&one, "3");
    history(&two, "3");
    history(&other, "4");
    assert_eq!(hash(&one), hash(&two));
    assert_ne!(hash(&one).0, hash(&other).0);
    assert_eq!(
        (hash(&one).1, hash(&one).2),
        (5, 3),
        "hash revision and compact revision"
    );
    let simple = ok(&one, &["check"]);
    assert!(
        simple.starts_with(&format!("store at {}: OK\n", one.display())),
        "{simple}"
    );
    assert!(simple.contains("hash "), "{simple}");
    // A digest at an older revision, and etcd's error below the compacted one.
    let at4 = ok(&one, &["check", "--rev=4"]);
    assert_eq!(
        at4.lines().filter(|l| l.starts_with("hash ")).count(),
        2,
        "{at4}"
    );
    let (code, _, err) = batchkv(&one, &["check", "--rev=2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("required revision has been compacted"),
        "{err}"
    );

    // Every byte of the store's newest WAL flipped in the middle: the check fails, naming it.
    let wal = std::fs::read_dir(&one)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "log")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 20)
        })
        .max();
    let sst = std::fs::read_dir(&one)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("an SST file");
    let target = wal.unwrap_or(sst);
    let mut bytes = std::fs::read(&target).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&target, bytes).expect("write");
    let (code, _, err) = batchkv(&one, &["check"]);
    assert_ne!(code, 0, "a corrupted store passed the check");
    let name = target
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(err.contains("Corruption") && err.contains(&name), "{err}");
}

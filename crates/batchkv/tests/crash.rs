//! Crash test: a child process writes through the store from several threads in one
//! durability mode and is killed with SIGKILL at a random moment, 50 times per mode. After each
//! kill the parent reopens the store and checks: every write acknowledged under `Sync` (and,
//! for a process crash, under `Wal`) is there; no entry is half applied (revisions contiguous,
//! one per put); and the in-memory key index agrees with the records on disk.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use batchkv::{AutoFlushConfig, Durability, Range, Store};
use batchkv_engine::{KeyRange, WriteMode};
use batchkv_mvcc::{Mvcc, MvccConfig};
use batchkv_testkit::{ChildProcess, Rng, child_env, temp_dir};
use bytes::Bytes;

const CHILD: &str = "BATCHKV_CRASH_CHILD";
const KILLS: usize = 50;

fn durability(mode: &str) -> Durability {
    match mode {
        "sync" => Durability::Sync,
        "wal" => Durability::Wal {
            flush: AutoFlushConfig::default(),
        },
        "none" => Durability::None,
        other => panic!("unknown mode {other}"),
    }
}

/// The child: write `cycle/thread/i` keys from 4 threads, printing each acknowledged key.
fn child(dir: &Path, mode: &str, cycle: &str) {
    let store = Store::builder(dir)
        .durability(durability(mode))
        .open()
        .expect("child open");
    println!("OPEN");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = store.clone();
            let cycle = cycle.to_owned();
            std::thread::spawn(move || {
                for i in 0.. {
                    let key = format!("{cycle}/{t}/{i:06}");
                    s.put(key.clone(), format!("v{i}")).expect("put");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ACK {key}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Reopens and checks the invariants; returns the number of keys.
fn verify(dir: &Path, acked: &HashSet<String>, must_keep: bool, what: &str) -> usize {
    let m = Mvcc::open(MvccConfig::new(dir).write_mode(WriteMode::WAL)).expect("reopen after kill");
    let all = m
        .range(&Range {
            range_end: Bytes::from_static(b"\0"),
            ..Range::key("\0")
        })
        .expect("range");
    let current = m.current_revision();
    // One revision per put, each key put once: revisions 2..=current, each exactly once.
    let mut revs: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
    revs.sort_unstable();
    assert_eq!(
        revs,
        (2..=current).collect::<Vec<_>>(),
        "{what}: revisions not contiguous (half an entry?)"
    );
    // The index agrees with the records on disk: each key's newest record is what reads show.
    let kv_cf = m.engine().cf("kv").expect("kv cf");
    let mut newest: BTreeMap<Bytes, (i64, Bytes)> = BTreeMap::new();
    m.engine()
        .scan(kv_cf, &KeyRange::all(), false, |k, v| {
            let rev = i64::from_be_bytes(k[..8].try_into().expect("revision"));
            let rec = batchkv_codec::record::decode_record(v).expect("record");
            newest.insert(
                Bytes::copy_from_slice(rec.key),
                (rev, Bytes::copy_from_slice(rec.value)),
            );
            true
        })
        .expect("scan");
    let from_index: BTreeMap<Bytes, (i64, Bytes)> = all
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), (kv.mod_revision, kv.value.clone())))
        .collect();
    assert_eq!(from_index, newest, "{what}: index and records disagree");
    if must_keep {
        let present: HashSet<String> = all
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
        assert!(
            lost.is_empty(),
            "{what}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }
    all.kvs.len()
}

fn run_mode(mode: &str, must_keep: bool) {
    let dir = temp_dir();
    let mut rng = Rng(0x5eed_0000 ^ (mode.len() as u64 * 7919));
    let mut total_acked = 0;
    let mut keys = 0;
    for cycle in 0..KILLS {
        let mut child = ChildProcess::test(
            "kill_children_in_every_durability_mode",
            CHILD,
            format!("{}|{mode}|c{cycle:03}", dir.path().display()),
        );
        let lines = child.take_lines();
        let reader = std::thread::spawn(move || {
            lines
                .filter_map(|line| line.strip_prefix("ACK ").map(str::to_owned))
                .collect::<HashSet<String>>()
        });
        // Kill at a random moment after the child started writing (20-170 ms in).
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(20 + rng.below(150) as u64));
        child.kill();
        let acked = reader.join().expect("reader");
        assert!(start.elapsed() < Duration::from_secs(30));
        total_acked += acked.len();
        keys = verify(
            dir.path(),
            &acked,
            must_keep,
            &format!("{mode}, kill {cycle}"),
        );
    }
    eprintln!("{mode}: {KILLS} kills, {total_acked} acknowledged puts, {keys} keys at the end");
    if must_keep {
        assert!(keys > 0, "{mode}: the children never wrote anything");
    }
}

#[test]
fn kill_children_in_every_durability_mode() {
    if let Some(spec) = child_env(CHILD) {
        let spec = spec.to_str().expect("the parent passes UTF-8");
        let mut parts = spec.splitn(3, '|');
        let dir = parts.next().expect("dir");
        let mode = parts.next().expect("mode");
        let cycle = parts.next().expect("cycle");
        child(Path::new(dir), mode, cycle);
        return;
    }
    run_mode("sync", true);
    // A process crash keeps what reached the OS: Wal keeps every acknowledged write too.
    run_mode("wal", true);
    // No WAL: acknowledged writes may be lost, but never half an entry.
    run_mode("none", false);
}

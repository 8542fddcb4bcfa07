//! `cargo xtask fuzz`: cargo-fuzz on the stable toolchain.
//!
//! cargo-fuzz needs nightly flags (`-Zsanitizer=address`); `RUSTC_BOOTSTRAP=1` lets the stable
//! compiler accept them. Builds go to `<target dir>/fuzz`, outside the checkout; the corpus lives
//! in `fuzz/corpus/<target>` (not committed) and is seeded from the codec's golden vectors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{cargo_bin, has_program, root, run_cmd, section, target_dir};

/// Targets `cargo xtask ci` leaves out: they link RocksDB, whose C++ the fuzz build compiles
/// again (with the fuzzer's flags, in its own target dir: 11+ minutes on 2 cores), more than
/// CI's time allows. Their properties also run as proptests in `cargo xtask test`.
pub const NOT_IN_CI: &[&str] = &["store_crash"];

/// The fuzz crate's features a target needs.
fn features(target: &str) -> Option<&'static str> {
    (target == "store_crash").then_some("store")
}

/// The fuzz targets, from `fuzz/fuzz_targets/*.rs`.
pub fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

pub fn run(args: &[&str]) -> Result<()> {
    let mut target = None;
    let mut secs = 60;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--list" => {
                for t in targets()? {
                    if NOT_IN_CI.contains(&t.as_str()) {
                        println!(
                            "{t} (links RocksDB: its first build takes 11+ minutes; not in ci)"
                        );
                    } else {
                        println!("{t}");
                    }
                }
                return Ok(());
            }
            "--time" => {
                let v = it.next().context("--time needs a number of seconds")?;
                secs = v
                    .parse()
                    .with_context(|| format!("--time takes seconds, got {v:?}"))?;
            }
            t if !t.starts_with('-') && target.is_none() => target = Some(t.to_owned()),
            other => {
                bail!("unexpected argument `{other}`; usage: cargo xtask fuzz TARGET [--time SECS]")
            }
        }
    }
    let target = target.context("usage: cargo xtask fuzz TARGET [--time SECS] (see --list)")?;
    run_target(&target, secs)
}

fn ensure_cargo_fuzz() -> Result<()> {
    if has_program("cargo-fuzz", "--version") {
        return Ok(());
    }
    println!("installing cargo-fuzz (once)");
    run_cmd(&cargo_bin(), &["install", "cargo-fuzz", "--locked"])
}

/// Seeds the corpus of `target` with the codec's golden vectors (hex files).
fn seed_corpus(target: &str) -> Result<()> {
    let corpus = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    if target == "store_crash" {
        // Two puts, a lease, a delete; four writes succeed.
        std::fs::write(
            corpus.join("seed_program"),
            [0, 4, 4, 0, 1, 2, 0, 2, 4, 1, 5, 3, 1, 2],
        )?;
        return Ok(());
    }
    if target == "mvcc_record" {
        // A put (created 2.0, version 3, no lease, previous 4.0, key "k", value "v") and a
        // delete of "k" whose previous value is at 5.0.
        std::fs::write(
            corpus.join("seed_put"),
            [1, 2, 0, 3, 0, 4, 0, 1, b'k', b'v'],
        )?;
        std::fs::write(corpus.join("seed_delete"), [2, 0, 0, 0, 0, 5, 0, 1, b'k'])?;
        return Ok(());
    }
    let golden = root().join("crates/batchkv-codec/tests/golden");
    for entry in std::fs::read_dir(&golden)?.flatten() {
        let text = std::fs::read_to_string(entry.path())?;
        let hex: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let bytes =
            decode_hex(&hex).with_context(|| format!("{} is not hex", entry.path().display()))?;
        let name = entry.file_name().to_string_lossy().replace(".hex", "");
        std::fs::write(corpus.join(format!("golden_{name}")), bytes)?;
    }
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Runs one target for `secs` seconds and reports how many executions ran.
pub fn run_target(target: &str, secs: u64) -> Result<()> {
    let known = targets()?;
    if !known.iter().any(|t| t == target) {
        bail!(
            "unknown fuzz target `{target}`; targets: {}",
            known.join(", ")
        );
    }
    section(&format!("fuzz {target} ({secs} s)"));
    ensure_cargo_fuzz()?;
    seed_corpus(target)?;
    let fuzz_target_dir = target_dir()?.join("fuzz");
    let mut cmd = Command::new(cargo_bin());
    cmd.current_dir(root())
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target]);
    if let Some(f) = features(target) {
        cmd.args(["--features", f]);
    }
    let mut child = cmd
        .arg("--target-dir")
        .arg(&fuzz_target_dir)
        .args([
            "--",
            &format!("-max_total_time={secs}"),
            "-print_final_stats=1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .context("start cargo fuzz")?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut done = None;
    let mut tail = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("read fuzzer output")?;
        if line.starts_with("Done ") {
            done = Some(line.clone());
        }
        // Keep the progress quiet (libFuzzer prints a line per new coverage); show the rest.
        if !line.starts_with('#') {
            eprintln!("{line}");
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child.wait().context("wait for cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); last output:\n{}",
            tail.join("\n")
        );
    }
    let done = done.context("libFuzzer printed no `Done` line")?;
    println!("fuzz {target}: {done}");
    Ok(())
}

//! `cargo xtask bench`: runs the bench suite in `benches/` step by step under a progress bar,
//! RocksDB's own `db_bench` where it is installed, then the `batchkv-report` binary of `benches/`,
//! which writes the report from the run's CSV files and prints the summary.
//!
//! Everything goes to `target/batchkv-report/` in the workspace (or `$BATCHKV_REPORT_DIR`): the
//! CSV files each harness writes there, `benchmarks.csv` (criterion), `db_bench.csv`,
//! `timings.csv` and `run.txt` (written here, with the row types of `batchkv_benches::rows`),
//! `bench.log` with every step's output; then `report.md`, `ratios.csv` and the PNG plots.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use batchkv_benches::rows::{CriterionRow, DbBenchRow, TimingRow};
use batchkv_benches::table;
use indicatif::{ProgressBar, ProgressStyle};

use crate::util::{Cargo, bench_targets, root, section, target_dir};

pub struct Options {
    pub quick: bool,
    pub filter: Option<String>,
    /// Only re-render `report.md` and the plots from the CSV files of the last run.
    pub report_only: bool,
}

const USAGE: &str = "usage: cargo xtask bench [--quick] [--report-only] [FILTER]";

impl Options {
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut opts = Options {
            quick: false,
            filter: None,
            report_only: false,
        };
        for &arg in args {
            match arg {
                "--quick" => opts.quick = true,
                "--report-only" => opts.report_only = true,
                a if a.starts_with('-') => bail!("unknown option `{a}`; {USAGE}"),
                a if opts.filter.is_none() => opts.filter = Some(a.to_owned()),
                a => bail!("only one FILTER is allowed, got a second: `{a}`"),
            }
        }
        if opts.report_only && (opts.quick || opts.filter.is_some()) {
            bail!("--report-only re-renders the last run's report and takes nothing else; {USAGE}");
        }
        Ok(opts)
    }

    fn command(&self) -> String {
        let mut c = String::from("cargo xtask bench");
        if self.quick {
            c.push_str(" --quick");
        }
        if self.report_only {
            c.push_str(" --report-only");
        }
        if let Some(f) = &self.filter {
            c.push(' ');
            c.push_str(f);
        }
        c
    }
}

/// The bench targets of `benches/` this report knows, in the order they run, with what each
/// measures. Other bench targets of the workspace run after them.
const TARGETS: [(&str, &str); 7] = [
    ("codec", "criterion micro-benchmarks: encode, decode, LZ4"),
    ("batcher", "group commit: wait policies x producers"),
    (
        "engine",
        "batch writes, compression, reads vs raw rust-rocksdb",
    ),
    (
        "mvcc",
        "MVCC apply, reads, watchers vs raw engine and rust-rocksdb",
    ),
    (
        "store",
        "the Store end to end: puts, transactions, pipeline cost",
    ),
    (
        "workloads",
        "YCSB A-F, mixes, point reads: the Store vs raw rust-rocksdb",
    ),
    (
        "server",
        "batchkv serve vs etcd 3.4 over gRPC: put, get, range, txn",
    ),
];

/// Where the report goes: `$BATCHKV_REPORT_DIR` when set, else `target/batchkv-report/`.
pub fn report_dir() -> PathBuf {
    std::env::var_os("BATCHKV_REPORT_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root().join("target/batchkv-report"), PathBuf::from)
}

pub fn run(opts: &Options) -> Result<()> {
    section(&opts.command());
    let dir = report_dir();
    let started = Instant::now();
    if opts.report_only {
        if !dir.join("run.txt").exists() {
            bail!(
                "no earlier run in {}: run `cargo xtask bench` first",
                dir.display()
            );
        }
        // The report binary is built with the bench targets; build it (a no-op when the last
        // run built it) with the same command, so its dependencies resolve as theirs do.
        cargo_bench(None).args(["--no-run", "--quiet"]).run()?;
    } else {
        run_suite(opts, &dir)?;
    }
    // A filtered run is someone looking at one harness: show its own sections in full.
    report(&dir, opts.filter.is_some())?;
    println!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `batchkv-report` on `dir`: report.md, ratios.csv, the plots and the summary.
fn report(dir: &Path, sections: bool) -> Result<()> {
    let exe = target_dir()?
        .join("release")
        .join(format!("batchkv-report{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(&exe);
    cmd.arg(dir);
    if sections {
        cmd.arg("--sections");
    }
    let status = cmd
        .status()
        .with_context(|| format!("start {}", exe.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", exe.display());
    }
    Ok(())
}

/// Runs every step into a fresh `dir`, writing `benchmarks.csv`, `db_bench.csv`,
/// `timings.csv` and `run.txt` besides what the harnesses write.
fn run_suite(opts: &Options, dir: &Path) -> Result<()> {
    // A fresh report: nothing from an earlier run (or another filter) may leak into this one.
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let started = Instant::now();
    let since = SystemTime::now();
    let db_bench = db_bench_version();
    let run_db_bench = db_bench.is_some()
        && opts
            .filter
            .as_deref()
            .is_none_or(|f| "db_bench".contains(f) || f.contains("db_bench"));
    let targets = targets()?;
    let server = targets.iter().any(|(t, _)| t == "server");
    let steps = 1 + u64::from(server) + targets.len() as u64 + u64::from(run_db_bench);
    let progress = Progress::new(dir, steps)?;
    println!(
        "bench: {} steps; each step's output goes to {}",
        steps,
        progress.log_path.display()
    );
    let mut timings: Vec<(String, f64)> = Vec::new();

    // Build every bench target first (and with them the package's binaries: the report), so
    // that the steps below time runs, not compiles. The release profile and the whole workspace,
    // as `test` and `clippy` use: dependencies resolve to the same features and build once.
    let build = cargo_bench(None)
        .args(["--no-run"])
        .env("BATCHKV_REPORT_DIR", dir);
    let mut secs = progress.step("build", "compile the bench targets (release)", build)?;
    // The server bench drives the `batchkv` binary (`batchkv serve`), which `cargo bench` does
    // not build for another package's bench: build the workspace's binaries too.
    if server {
        let bins = Cargo::new("build").args(["--workspace", "--release", "--bins", "--locked"]);
        secs += progress.step("build", "compile the binaries (release)", bins)?;
    }
    timings.push(("build".to_owned(), secs));
    let batchkv_bin = target_dir()?
        .join("release")
        .join(format!("batchkv{}", std::env::consts::EXE_SUFFIX));

    for (target, what) in &targets {
        let mut args: Vec<String> = Vec::new();
        if let Some(f) = &opts.filter {
            args.push(f.clone());
        }
        // Criterion's flags for the criterion targets (and any target this report does not know:
        // the custom harnesses skip them).
        let custom = TARGETS.iter().any(|(t, _)| t == target) && target != "codec";
        if opts.quick && !custom {
            args.extend(
                [
                    "--warm-up-time",
                    "0.2",
                    "--measurement-time",
                    "0.5",
                    "--sample-size",
                    "10",
                ]
                .map(String::from),
            );
        }
        let cmd = cargo_bench(Some(target))
            .args(["--"])
            .args(&args)
            .env("BATCHKV_REPORT_DIR", dir)
            .env("BATCHKV_BENCH_QUICK", if opts.quick { "1" } else { "" })
            .env("BATCHKV_BIN", &batchkv_bin);
        let secs = progress.step(target, what, cmd)?;
        timings.push((target.clone(), secs));
    }

    let mut db_bench_assertions = false;
    let db_bench_note = match (&db_bench, run_db_bench) {
        (Some(v), true) => {
            let t = Instant::now();
            // db_bench is a reference, not part of the suite: its failure is reported, not fatal.
            let note = match db_bench_runs(&progress, dir, opts.quick) {
                Ok(a) => {
                    db_bench_assertions = a;
                    v.clone()
                }
                Err(e) => {
                    progress.say(&format!(
                        "bench: db_bench failed, going on without it: {e:#}"
                    ));
                    format!("{v} (failed: {e:#})")
                }
            };
            progress.done("db_bench", t.elapsed());
            timings.push(("db_bench".to_owned(), t.elapsed().as_secs_f64()));
            note
        }
        (Some(v), false) => format!("{v} (not run: the filter leaves it out)"),
        (None, _) => "not installed (Debian: apt-get install rocksdb-tools; \
                      `cargo xtask doctor` installs it as root)"
            .to_owned(),
    };
    progress.finish();

    let criterion_dir = target_dir()?.join("criterion");
    let mut results = collect(&criterion_dir, since)?;
    results.sort_by(|a, b| a.id.cmp(&b.id));
    write_criterion_csv(dir, &results)?;

    let total = started.elapsed().as_secs_f64();
    let mut t: Vec<TimingRow> = timings
        .into_iter()
        .map(|(step, seconds)| TimingRow { step, seconds })
        .collect();
    t.push(TimingRow {
        step: "total".to_owned(),
        seconds: total,
    });
    table::write(dir, &t)?;
    let run = format!(
        "command={}\nquick={}\nfilter={}\nmachine={}\ndb_bench={}\ndb_bench_assertions={}\n\
         finished_unix={}\n",
        opts.command(),
        opts.quick,
        opts.filter.as_deref().unwrap_or(""),
        machine(),
        db_bench_note,
        db_bench_assertions,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    write(dir.join("run.txt"), &run)?;
    println!("bench: all steps done in {total:.0} s");
    Ok(())
}

/// The workspace's bench targets with what each measures: the known ones in their order, then
/// the others by name.
fn targets() -> Result<Vec<(String, String)>> {
    let mut all = bench_targets()?;
    all.sort();
    let mut out: Vec<(String, String)> = TARGETS
        .iter()
        .filter(|(t, _)| all.iter().any(|a| a == t))
        .map(|(t, w)| ((*t).to_owned(), (*w).to_owned()))
        .collect();
    for t in all {
        if !out.iter().any(|(o, _)| *o == t) {
            let what = format!("bench target `{t}`");
            out.push((t, what));
        }
    }
    Ok(out)
}

/// `cargo bench` of one bench target (all of them for `None`) of the workspace, in the release
/// profile. Naming the target keeps criterion's flags away from the libtest harnesses of lib
/// targets, and the custom harnesses' arguments away from criterion.
fn cargo_bench(target: Option<&str>) -> Cargo {
    Cargo::new("bench").args([
        "--workspace",
        "--bench",
        target.unwrap_or("*"),
        "--profile",
        "release",
        "--locked",
    ])
}

/// The steps' progress bar, and the log every step's output goes to.
struct Progress {
    bar: ProgressBar,
    log: Arc<Mutex<File>>,
    log_path: PathBuf,
}

impl Progress {
    fn new(dir: &Path, steps: u64) -> Result<Progress> {
        let log_path = dir.join("bench.log");
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:25}] {pos}/{len} {prefix:>8} | {wide_msg}",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Ok(Progress {
            bar,
            log: Arc::new(Mutex::new(log)),
            log_path,
        })
    }

    /// A line above the bar (or plain, where the bar is hidden: not a terminal, as in CI).
    fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn log(&self, text: &str) {
        let mut f = self.log.lock().expect("log lock");
        let _ = f.write_all(text.as_bytes());
    }

    /// Runs one step to its end; returns its time in seconds.
    fn step(&self, name: &str, what: &str, cmd: Cargo) -> Result<f64> {
        self.bar.set_prefix(name.to_owned());
        self.bar.set_message(what.to_owned());
        let t = Instant::now();
        if let Err(e) = self.exec(name, cmd.into_command()) {
            self.bar.abandon();
            return Err(e);
        }
        self.done(name, t.elapsed());
        Ok(t.elapsed().as_secs_f64())
    }

    fn done(&self, name: &str, took: Duration) {
        self.bar.inc(1);
        self.say(&format!(
            "bench: {name:<8} done in {:>6.1} s",
            took.as_secs_f64()
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Runs `cmd` with its output into the log and its latest line beside the bar; returns its
    /// standard output. On failure, shows the last lines of its output.
    fn exec(&self, step: &str, mut cmd: Command) -> Result<Vec<String>> {
        let desc = format!("{cmd:?}");
        self.log(&format!("\n==> {step}: {desc}\n"));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {desc}"))?;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr is piped");
        let err_thread = {
            let (bar, log, tail) = (self.bar.clone(), Arc::clone(&self.log), Arc::clone(&tail));
            std::thread::spawn(move || pump(stderr, &bar, &log, &tail, None))
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut out = Vec::new();
        pump(stdout, &self.bar, &self.log, &tail, Some(&mut out));
        let _ = err_thread.join();
        let status = child.wait().with_context(|| format!("wait for {desc}"))?;
        if !status.success() {
            let tail = tail.lock().expect("tail lock");
            self.bar.suspend(|| {
                eprintln!("\nbench: step `{step}` failed ({status}); its last lines:");
                for l in tail.iter() {
                    eprintln!("    {l}");
                }
            });
            bail!(
                "step `{step}` failed ({status}): {desc}; full output in {}",
                self.log_path.display()
            );
        }
        Ok(out)
    }
}

/// Copies `stream` line by line into the log and the tail, showing each line beside the bar.
fn pump(
    stream: impl Read,
    bar: &ProgressBar,
    log: &Mutex<File>,
    tail: &Mutex<VecDeque<String>>,
    mut keep: Option<&mut Vec<String>>,
) {
    let mut r = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(line.as_bytes());
            if !line.ends_with('\n') {
                let _ = f.write_all(b"\n");
            }
        }
        // Progress lines may redraw themselves with '\r': the last part is the current one.
        let shown = line.trim_end().rsplit('\r').next().unwrap_or("").trim();
        if !shown.is_empty() {
            bar.set_message(shown.chars().take(100).collect::<String>());
            let mut t = tail.lock().expect("tail lock");
            if t.len() == 40 {
                t.pop_front();
            }
            t.push_back(shown.to_owned());
        }
        if let Some(k) = keep.as_deref_mut() {
            k.push(line.trim_end().to_owned());
        }
    }
}

/// `db_bench --version`, when RocksDB's `db_bench` is on PATH.
fn db_bench_version() -> Option<String> {
    let out = Command::new("db_bench").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() || !text.is_empty()).then(|| {
        if text.is_empty() {
            "db_bench".to_owned()
        } else {
            text
        }
    })
}

/// RocksDB's `db_bench fillrandom` with the harnesses' key and value sizes and the engine's
/// default options (64 MiB memtables x 3, 4 background jobs, 10-bit Bloom filters, 256 MiB
/// block cache, no compression on L0-L1 and LZ4 below), batches of 1,000 puts and single puts,
/// in the three durability modes. Writes `db_bench.csv`; returns whether this db_bench warned
/// that it was built with assertions (Debian's is), which slow it down.
fn db_bench_runs(progress: &Progress, dir: &Path, quick: bool) -> Result<bool> {
    progress.bar.set_prefix("db_bench");
    // (mode, puts per batch, puts in all)
    let cases: &[(&str, usize, usize)] = if quick {
        &[
            ("no-wal", 1000, 200_000),
            ("wal", 1000, 200_000),
            ("sync", 1000, 50_000),
            ("wal", 1, 100_000),
            ("sync", 1, 1_000),
        ]
    } else {
        &[
            ("no-wal", 1000, 1_000_000),
            ("wal", 1000, 1_000_000),
            ("sync", 1000, 200_000),
            ("wal", 1, 300_000),
            ("sync", 1, 5_000),
        ]
    };
    let scratch = std::env::temp_dir().join(format!("batchkv-db_bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let mut rows = Vec::new();
    let mut assertions = false;
    for &(mode, batch, num) in cases {
        progress.bar.set_message(format!(
            "fillrandom, {mode}, batches of {batch}, {num} puts"
        ));
        let db = scratch.join(format!("{mode}-{batch}"));
        let mut cmd = Command::new("db_bench");
        cmd.args([
            "--benchmarks=fillrandom",
            "--key_size=16",
            "--value_size=100",
            // Incompressible values, as the harnesses write.
            "--compression_ratio=1",
            "--threads=1",
            "--write_buffer_size=67108864",
            "--max_write_buffer_number=3",
            "--max_background_jobs=4",
            "--bloom_bits=10",
            "--cache_size=268435456",
            "--compression_type=lz4",
            "--min_level_to_compress=2",
            "--histogram=0",
            "--statistics=0",
            "--seed=42",
        ])
        .arg(format!("--db={}", db.display()))
        .arg(format!("--num={num}"))
        .arg(format!("--batch_size={batch}"))
        .arg(format!("--disable_wal={}", u8::from(mode == "no-wal")))
        .arg(format!("--sync={}", u8::from(mode == "sync")));
        let out = progress.exec("db_bench", cmd);
        let _ = std::fs::remove_dir_all(&db);
        let out = out?;
        assertions |= out.iter().any(|l| l.contains("Assertions are enabled"));
        let Some((ops, micros)) = out.iter().find_map(|l| parse_db_bench(l)) else {
            bail!(
                "db_bench printed no fillrandom result; see {}",
                progress.log_path.display()
            );
        };
        rows.push(DbBenchRow {
            mode: mode.to_owned(),
            batch,
            num,
            ops_per_s: ops,
            micros_per_op: micros,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    table::write(dir, &rows)?;
    Ok(assertions)
}

/// `fillrandom   :       2.186 micros/op 457424 ops/sec 0.437 seconds ...` -> (ops/s, µs/op).
fn parse_db_bench(line: &str) -> Option<(f64, f64)> {
    if !line.trim_start().starts_with("fillrandom") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |w: &str| -> Option<f64> {
        let i = words.iter().position(|x| *x == w)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    Some((before("ops/sec")?, before("micros/op")?))
}

/// Reads criterion's `new/benchmark.json` + `new/estimates.json` of every benchmark written
/// since `since`.
fn collect(dir: &Path, since: SystemTime) -> Result<Vec<CriterionRow>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(r) = read_one(&p, since)? {
                        out.push(r);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    Ok(out)
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

fn read_one(new_dir: &Path, since: SystemTime) -> Result<Option<CriterionRow>> {
    let est_path = new_dir.join("estimates.json");
    let Ok(meta) = std::fs::metadata(&est_path) else {
        return Ok(None);
    };
    if meta.modified().is_ok_and(|m| m < since) {
        return Ok(None);
    }
    let bench = read_json(&new_dir.join("benchmark.json"))?;
    let est = read_json(&est_path)?;
    let id = bench["full_id"]
        .as_str()
        .context("benchmark.json has no full_id")?
        .to_owned();
    let point = |k: &str| {
        est[k]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{}: no {k}.point_estimate", est_path.display()))
    };
    let tp = &bench["throughput"];
    let num = |v: &serde_json::Value| v.as_f64();
    let (elements, bytes) = if let Some(x) = tp.get("ElementsAndBytes") {
        (num(&x["elements"]), num(&x["bytes"]))
    } else {
        (
            tp.get("Elements").and_then(num),
            tp.get("Bytes")
                .or_else(|| tp.get("BytesDecimal"))
                .and_then(num),
        )
    };
    let mean_ns = point("mean")?;
    Ok(Some(CriterionRow {
        id,
        mean_ns,
        median_ns: point("median")?,
        std_dev_ns: point("std_dev")?,
        elements,
        bytes,
        ops_per_s: elements.map(|e| e / (mean_ns * 1e-9)),
        mb_per_s: bytes.map(|b| b / (mean_ns * 1e-9) / 1e6),
    }))
}

fn write_criterion_csv(dir: &Path, results: &[CriterionRow]) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    Ok(table::write(dir, results)?)
}

fn write(path: PathBuf, text: &str) -> Result<()> {
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / (1024.0 * 1024.0))
    });
    match mem_gib {
        Some(g) => format!("{cpu}, {cores} cores, {g:.0} GiB"),
        None => format!("{cpu}, {cores} cores"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_db_bench_result_line() {
        let line = "fillrandom   :       2.186 micros/op 457424 ops/sec 0.437 seconds 200000 operations;   53.1 MB/s";
        assert_eq!(parse_db_bench(line), Some((457_424.0, 2.186)));
        assert_eq!(parse_db_bench("DB path: [/tmp/x]"), None);
    }

    #[test]
    fn options() {
        let o = Options::parse(&["--quick", "engine"]).expect("valid");
        assert!(o.quick && !o.report_only);
        assert_eq!(o.command(), "cargo xtask bench --quick engine");
        assert!(Options::parse(&["--report-only", "--quick"]).is_err());
        assert!(Options::parse(&["a", "b"]).is_err());
        assert!(Options::parse(&["--nope"]).is_err());
    }
}

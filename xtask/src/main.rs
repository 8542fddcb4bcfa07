//! batchkv's task runner. `cargo xtask` with no arguments prints the help.
//!
//! Every cargo invocation goes through `$CARGO` and one profile (`release`): RocksDB's C++ is
//! then compiled once for tests, clippy and benches alike.

mod bench;
mod doctor;
mod fuzz;
mod reliability;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::util::{Cargo, TestTally};

const HELP: &str = "\
cargo xtask: batchkv's tasks

USAGE:
    cargo xtask <TASK> [OPTIONS]

TASKS:
    test                     the whole test suite (doctor first); the README's test command
    bench [--quick] [FILTER] run the benchmarks under a progress bar, print a summary; write
                             target/batchkv-report/: report.md, CSV files, PNG plots, bench.log
    bench --report-only      re-render report.md and the plots from the last run's CSV files
    fuzz TARGET [--time SECS] run a cargo-fuzz target (installs cargo-fuzz if needed; default 60 s)
    fuzz --list              list the fuzz targets
    torture [--kills N] [--seed S] [--modes sync,wal,none]
                             the crash campaign: SIGKILL a child writing to a store, reopen,
                             check; 200 kills per durability mode by default
    soak [--duration 1h] [--rate OPS] [--interval 10s]
                             a mixed load at a fixed rate, sampled every interval; writes
                             target/batchkv-soak/: soak.csv, soak.png, soak.md; fails on drift
    faults [--rounds N] [--clients N] [--keys N] [--seed S] [--up-ms MS] [--down-ms MS]
                             the cluster fault run: etcd clients load a 3-member etcd 3.4
                             cluster while its leader is SIGKILLed and restarted (20 rounds by
                             default); checks acknowledged writes, contiguous revisions, equal
                             HashKV and a linearizable history (stateright); prints the figures
    ci                       fmt check, clippy -D warnings, test, bench --quick, each fuzz
                             target briefly (not store_crash), torture --kills 10, soak 2m,
                             faults --rounds 3
    doctor                   check the prerequisites; on Debian as root, install what is missing

ENVIRONMENT:
    CARGO_TARGET_DIR         where cargo builds (CI keeps it outside the checkout)
    BATCHKV_REPORT_DIR       where `bench` writes its report (default target/batchkv-report)
    BATCHKV_FUZZ_SECS        seconds per fuzz target in `ci` (default 20)
    BATCHKV_SOAK_DIR         where `soak` writes (default target/batchkv-soak)
";

fn main() -> ExitCode {
    if let Some(code) = util::reexec_if_built_elsewhere() {
        return code;
    }
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((task, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(());
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match task.as_str() {
        "test" => {
            no_args("test", &rest)?;
            doctor::run()?;
            let tally = test()?;
            println!("{}", tally.closing_line());
            Ok(())
        }
        "bench" => {
            let opts = bench::Options::parse(&rest)?;
            if !opts.report_only {
                doctor::run()?;
            }
            bench::run(&opts)
        }
        "fuzz" => fuzz::run(&rest),
        "torture" => {
            doctor::run()?;
            reliability::torture(&rest)
        }
        "soak" => {
            doctor::run()?;
            reliability::soak(&rest)
        }
        "faults" => {
            doctor::run()?;
            reliability::faults(&rest)
        }
        "ci" => {
            no_args("ci", &rest)?;
            ci()
        }
        "doctor" => {
            no_args("doctor", &rest)?;
            doctor::run()
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

fn no_args(task: &str, rest: &[&str]) -> Result<()> {
    if let Some(arg) = rest.first() {
        bail!("`cargo xtask {task}` takes no argument, got `{arg}`");
    }
    Ok(())
}

/// Runs every test of the workspace (unit, integration, doc) in the shared profile.
fn test() -> Result<TestTally> {
    util::section("test");
    Cargo::new("test")
        .args(["--workspace", "--release", "--locked"])
        .run_counting_tests()
}

fn ci() -> Result<()> {
    let started = std::time::Instant::now();
    doctor::run()?;
    util::section("fmt");
    Cargo::new("fmt").args(["--all", "--check"]).run()?;
    util::section("clippy");
    Cargo::new("clippy")
        .args([
            "--workspace",
            "--all-targets",
            "--release",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    let tally = test()?;
    bench::run(&bench::Options {
        quick: true,
        filter: None,
        report_only: false,
    })?;
    let secs: u64 = match std::env::var("BATCHKV_FUZZ_SECS") {
        Ok(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("BATCHKV_FUZZ_SECS is not a number of seconds: {s:?}"))?,
        Err(_) => 20,
    };
    for target in fuzz::targets()? {
        if fuzz::NOT_IN_CI.contains(&target.as_str()) {
            println!(
                "fuzz {target}: not in ci (see `cargo xtask fuzz --list`); its property runs as a proptest in `cargo xtask test`"
            );
            continue;
        }
        fuzz::run_target(&target, secs)?;
    }
    reliability::run_torture(&reliability::CI_KILLS.to_string(), &[])?;
    reliability::run_faults(&reliability::CI_FAULT_ROUNDS.to_string(), &[])?;
    reliability::run_soak(
        reliability::CI_SOAK,
        &[
            "--interval".to_owned(),
            reliability::CI_SOAK_INTERVAL.to_owned(),
        ],
    )?;
    util::section(&format!("ci passed in {} s", started.elapsed().as_secs()));
    println!("{}", tally.closing_line());
    Ok(())
}

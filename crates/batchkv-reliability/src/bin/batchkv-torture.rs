//! `batchkv-torture`: the SIGKILL crash campaign (see `batchkv_reliability::torture`).
//! `cargo xtask torture` builds and runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use batchkv_reliability::torture::{self, CHILD_ENV, Mode, Options};
use clap::Parser;

/// The crash campaign: kills a child writing to a store, reopens and checks, over and over.
#[derive(Debug, Parser)]
#[command(name = "batchkv-torture")]
struct Args {
    /// Kills per durability mode
    #[arg(long, default_value_t = 200)]
    kills: usize,
    /// Durability modes, comma-separated
    #[arg(long, default_value = "sync,wal,none")]
    modes: String,
    /// Seed of the kill schedule and the loads (printed; pass it to replay the schedule)
    #[arg(long)]
    seed: Option<u64>,
    /// Where the stores live (default: a temp dir, removed at the end)
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    if let Some(spec) = std::env::var_os(CHILD_ENV) {
        return match torture::child(&spec.to_string_lossy()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("torture child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let modes: Result<Vec<Mode>, _> = args.modes.split(',').map(Mode::parse).collect();
    let modes = match modes {
        Ok(m) => m,
        Err(e) => {
            eprintln!("batchkv-torture: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "torture: seed {seed}, {} kills per mode, modes {}",
        args.kills, args.modes
    );
    let started = std::time::Instant::now();
    match torture::run(&Options {
        kills: args.kills,
        modes,
        seed,
        dir: args.dir,
    }) {
        Ok(reports) => {
            let kills: usize = reports.iter().map(|(_, r)| r.total_kills()).sum();
            let acks: u64 = reports.iter().map(|(_, r)| r.acks_checked).sum();
            let checks: u64 = reports.iter().map(|(_, r)| r.checks).sum();
            println!(
                "torture passed: {kills} kills, {acks} acknowledged ops checked, {checks} full checks, {:.0} s (seed {seed})",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("torture FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

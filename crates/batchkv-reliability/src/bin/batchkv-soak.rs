//! `batchkv-soak`: the soak run (see `batchkv_reliability::soak`). `cargo xtask soak` builds
//! and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use batchkv_reliability::soak::{self, Options};
use clap::Parser;

/// A mixed load at a fixed rate for a long time, sampled and judged for drift.
#[derive(Debug, Parser)]
#[command(name = "batchkv-soak")]
struct Args {
    /// How long: 90s, 2m, 1h
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// Operations per second, all writers together
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds between samples
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// Where soak.csv, soak.png and soak.md go
    #[arg(long, default_value = "target/batchkv-soak")]
    out: PathBuf,
    /// The load's seed
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `90`, `90s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 2m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let opts = Options {
        duration: a.duration,
        rate: a.rate,
        interval: a.interval,
        out: a.out,
        seed: a.seed,
    };
    println!(
        "soak: {} s at {} ops/s, a sample every {} s, into {}",
        opts.duration.as_secs(),
        opts.rate,
        opts.interval.as_secs(),
        opts.out.display()
    );
    match soak::run(&opts) {
        Ok((_, verdict)) => {
            if let Ok(md) = std::fs::read_to_string(opts.out.join("soak.md")) {
                println!("\n{md}");
            }
            if verdict.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("soak FAILED: {}", verdict.failures.join("; "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `batchkv-faults`: the long fault campaign against a real 3-member etcd 3.4 cluster (see
//! `batchkv_faults`). `cargo xtask faults` builds and runs it.

use std::process::ExitCode;
use std::time::Duration;

use batchkv_faults::{Config, run};

const USAGE: &str = "usage: batchkv-faults [--rounds N] [--clients N] [--keys N] [--seed S] \
                     [--up-ms MS] [--down-ms MS] [--members N]";

fn parse(args: &[String]) -> Result<(Config, usize), String> {
    let mut config = Config {
        rounds: 20,
        clients: 8,
        ..Config::default()
    };
    let mut members = 3;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number\n{USAGE}"))?;
        let count = usize::try_from(n).map_err(|_| format!("{flag}: {n} is too large"))?;
        match flag.as_str() {
            "--rounds" => config.rounds = count,
            "--clients" => config.clients = count,
            "--keys" => config.keys = count.max(1),
            "--seed" => config.seed = n,
            "--up-ms" => config.up = Duration::from_millis(n),
            "--down-ms" => config.down = Duration::from_millis(n),
            "--members" => members = count.max(1),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok((config, members))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, members) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("batchkv-faults: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "faults: a {members}-member etcd cluster, {} clients (+ etcdctl), {} leader kills ({} ms up, {} ms down), seed {}",
        config.clients,
        config.rounds,
        config.up.as_millis(),
        config.down.as_millis(),
        config.seed
    );
    let mut etcd = batchkv_testkit::Etcd::start_cluster(members);
    match run(&mut etcd, &config) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("batchkv-faults: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

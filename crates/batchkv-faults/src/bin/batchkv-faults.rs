//! `batchkv-faults`: the long fault campaign against a real 3-member etcd 3.4 cluster, or with
//! `--batchkv PATH` a cluster of that `batchkv` binary's `serve` (see `batchkv_faults`).
//! `cargo xtask faults` builds and runs it against both.

use std::process::ExitCode;
use std::time::Duration;

use batchkv_faults::{Config, run};

const USAGE: &str = "usage: batchkv-faults [--rounds N] [--clients N] [--keys N] [--seed S] \
                     [--up-ms MS] [--down-ms MS] [--members N] [--batchkv PATH]";

fn parse(args: &[String]) -> Result<(Config, usize, Option<String>), String> {
    let mut batchkv = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--batchkv" {
            batchkv = Some(
                it.next()
                    .ok_or_else(|| format!("--batchkv needs a path\n{USAGE}"))?
                    .clone(),
            );
        } else {
            rest.push(a.clone());
        }
    }
    let (config, members) = parse_numbers(&rest)?;
    Ok((config, members, batchkv))
}

fn parse_numbers(args: &[String]) -> Result<(Config, usize), String> {
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
    let (config, members, batchkv) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("batchkv-faults: {e}");
            return ExitCode::FAILURE;
        }
    };
    let what = if batchkv.is_some() { "batchkv" } else { "etcd" };
    println!(
        "faults: a {members}-member {what} cluster, {} clients (+ etcdctl), {} leader kills ({} ms up, {} ms down), seed {}",
        config.clients,
        config.rounds,
        config.up.as_millis(),
        config.down.as_millis(),
        config.seed
    );
    let result = match &batchkv {
        Some(bin) => run(
            &mut batchkv_testkit::BatchkvCluster::start(bin, members, &[]),
            &config,
        ),
        None => run(&mut batchkv_testkit::Etcd::start_cluster(members), &config),
    };
    match result {
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

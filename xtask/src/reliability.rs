//! `cargo xtask torture`, `cargo xtask soak` and `cargo xtask faults`: build the campaign
//! binaries of `crates/batchkv-reliability` (and the fault-injection shim the torture child
//! preloads) and `crates/batchkv-faults`, then run them. The campaigns themselves live there;
//! xtask only builds, runs and passes flags on.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::util::{Cargo, root, run_cmd, section, target_dir};

/// Kills per durability mode in the full torture run.
pub const FULL_KILLS: usize = 200;
/// Kills per durability mode in `cargo xtask ci`.
pub const CI_KILLS: usize = 10;
/// How long `cargo xtask ci` soaks, and how often it samples there (10 s would leave six
/// samples after the warm-up).
pub const CI_SOAK: &str = "2m";
pub const CI_SOAK_INTERVAL: &str = "5s";

/// Leader kills in the full fault campaign.
pub const FULL_FAULT_ROUNDS: usize = 20;
/// Leader kills in `cargo xtask ci`.
pub const CI_FAULT_ROUNDS: usize = 3;

/// Where the soak run writes `soak.csv`, `soak.png` and `soak.md`.
pub fn soak_dir() -> PathBuf {
    std::env::var_os("BATCHKV_SOAK_DIR")
        .map_or_else(|| root().join("target/batchkv-soak"), PathBuf::from)
}

fn build(bin: &str) -> Result<PathBuf> {
    // `--lib` builds every library of the workspace, the shim's cdylib among them.
    Cargo::new("build")
        .args([
            "--workspace",
            "--release",
            "--locked",
            "--lib",
            "--bin",
            bin,
        ])
        .run()?;
    let exe = target_dir()?.join("release").join(bin);
    if !exe.is_file() {
        bail!("{} was not built", exe.display());
    }
    Ok(exe)
}

/// `cargo xtask torture [--kills N] [--seed S] [--modes sync,wal,none]`.
pub fn torture(args: &[&str]) -> Result<()> {
    let mut pass: Vec<String> = Vec::new();
    let mut kills = FULL_KILLS.to_string();
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--kills" | "--seed" | "--modes" | "--dir" => {
                let v = it.next().with_context(|| format!("{a} needs a value"))?;
                if a == "--kills" {
                    kills = (*v).to_owned();
                } else {
                    pass.extend([a.to_owned(), (*v).to_owned()]);
                }
            }
            other => bail!(
                "unexpected argument `{other}`; usage: cargo xtask torture [--kills N] [--seed S] [--modes sync,wal,none]"
            ),
        }
    }
    run_torture(&kills, &pass)
}

pub fn run_torture(kills: &str, pass: &[String]) -> Result<()> {
    section(&format!("torture ({kills} kills per durability mode)"));
    let exe = build("batchkv-torture")?;
    let mut args = vec!["--kills".to_owned(), kills.to_owned()];
    args.extend(pass.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cmd(&exe.to_string_lossy(), &args)
}

/// `cargo xtask soak [--duration D] [--rate R] [--interval I] [--seed S]`.
pub fn soak(args: &[&str]) -> Result<()> {
    let mut duration = "1h".to_owned();
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--duration" | "--rate" | "--interval" | "--seed" => {
                let v = it.next().with_context(|| format!("{a} needs a value"))?;
                if a == "--duration" {
                    duration = (*v).to_owned();
                } else {
                    pass.extend([a.to_owned(), (*v).to_owned()]);
                }
            }
            other => bail!(
                "unexpected argument `{other}`; usage: cargo xtask soak [--duration 1h] [--rate OPS] [--interval 10s] [--seed S]"
            ),
        }
    }
    run_soak(&duration, &pass)
}

pub fn run_soak(duration: &str, pass: &[String]) -> Result<()> {
    section(&format!("soak ({duration})"));
    let exe = build("batchkv-soak")?;
    let out = soak_dir();
    let mut args = vec![
        "--duration".to_owned(),
        duration.to_owned(),
        "--out".to_owned(),
        out.to_string_lossy().into_owned(),
    ];
    args.extend(pass.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cmd(&exe.to_string_lossy(), &args)?;
    println!(
        "soak: {} holds soak.csv, soak.png and soak.md",
        out.display()
    );
    Ok(())
}

/// `cargo xtask faults [--rounds N] [--clients N] [--keys N] [--seed S] [--up-ms MS]
/// [--down-ms MS]`.
pub fn faults(args: &[&str]) -> Result<()> {
    let mut rounds = FULL_FAULT_ROUNDS.to_string();
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--rounds" | "--clients" | "--keys" | "--seed" | "--up-ms" | "--down-ms" => {
                let v = it.next().with_context(|| format!("{a} needs a value"))?;
                if a == "--rounds" {
                    rounds = (*v).to_owned();
                } else {
                    pass.extend([a.to_owned(), (*v).to_owned()]);
                }
            }
            other => bail!(
                "unexpected argument `{other}`; usage: cargo xtask faults [--rounds N] [--clients N] [--keys N] [--seed S] [--up-ms MS] [--down-ms MS]"
            ),
        }
    }
    run_faults(&rounds, &pass)
}

pub fn run_faults(rounds: &str, pass: &[String]) -> Result<()> {
    let exe = build("batchkv-faults")?;
    let batchkv = build("batchkv")?;
    for (what, target) in [
        ("etcd", Vec::new()),
        (
            "batchkv",
            vec![
                "--batchkv".to_owned(),
                batchkv.to_string_lossy().into_owned(),
            ],
        ),
    ] {
        section(&format!(
            "faults ({rounds} leader kills of a 3-member {what} cluster)"
        ));
        let mut args = vec!["--rounds".to_owned(), rounds.to_owned()];
        args.extend(pass.iter().cloned());
        args.extend(target);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        run_cmd(&exe.to_string_lossy(), &args)?;
        println!(
            "faults ({what}): passed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

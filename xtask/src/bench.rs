//! `cargo xtask bench`: runs the criterion suite in `benches/` and writes a report.
//!
//! The report goes to `target/batchkv-report/` in the workspace: `report.md` (tables, ratios),
//! `benchmarks.csv` (one row per benchmark of this run), `ratios.csv`, plus any CSV a bench writes
//! itself (`BATCHKV_REPORT_DIR` tells it where).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::util::{Cargo, root, section, target_dir};

pub struct Options {
    pub quick: bool,
    pub filter: Option<String>,
}

impl Options {
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut opts = Options {
            quick: false,
            filter: None,
        };
        for &arg in args {
            match arg {
                "--quick" => opts.quick = true,
                a if a.starts_with('-') => {
                    bail!("unknown option `{a}`; usage: cargo xtask bench [--quick] [FILTER]")
                }
                a if opts.filter.is_none() => opts.filter = Some(a.to_owned()),
                a => bail!("only one FILTER is allowed, got a second: `{a}`"),
            }
        }
        Ok(opts)
    }
}

/// Ratios the report computes: (what it shows, numerator id, denominator id). Each is the
/// throughput of the first over the throughput of the second, both from the same run.
const RATIOS: &[(&str, &str, &str)] = &[
    (
        "codec decode, 1 op: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/1/fallback",
        "codec/decode/1/prost_direct",
    ),
    (
        "codec decode, 100 ops: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/100/fallback",
        "codec/decode/100/prost_direct",
    ),
    (
        "codec decode, 1000 ops: fallback API / direct prost (aim >= 0.9)",
        "codec/decode/1000/fallback",
        "codec/decode/1000/prost_direct",
    ),
    (
        "codec decode, 1000 ops: fallback API / prost + the same conversion (the chain's own cost)",
        "codec/decode/1000/fallback",
        "codec/decode/1000/prost_then_convert",
    ),
    (
        "codec encode, 1000 compressible ops: lz4 / none",
        "codec/lz4/compressible/encode_lz4",
        "codec/lz4/compressible/encode_none",
    ),
    (
        "codec decode, 1000 compressible ops: lz4 / none",
        "codec/lz4/compressible/decode_lz4",
        "codec/lz4/compressible/decode_none",
    ),
    (
        "codec encode, 1000 random ops: lz4 / none",
        "codec/lz4/random/encode_lz4",
        "codec/lz4/random/encode_none",
    ),
];

#[derive(Debug)]
struct Result1 {
    id: String,
    mean_ns: f64,
    median_ns: f64,
    std_dev_ns: f64,
    elements: Option<f64>,
    bytes: Option<f64>,
}

impl Result1 {
    fn ops_per_s(&self) -> Option<f64> {
        self.elements.map(|e| e / (self.mean_ns * 1e-9))
    }

    fn mb_per_s(&self) -> Option<f64> {
        self.bytes.map(|b| b / (self.mean_ns * 1e-9) / 1e6)
    }
}

pub fn run(opts: &Options) -> Result<()> {
    section(if opts.quick { "bench --quick" } else { "bench" });
    let report_dir = root().join("target/batchkv-report");
    // A fresh report: nothing from an earlier run (or another filter) may leak into this one.
    if report_dir.exists() {
        std::fs::remove_dir_all(&report_dir)
            .with_context(|| format!("clear {}", report_dir.display()))?;
    }
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("create {}", report_dir.display()))?;
    let started = SystemTime::now();

    let mut criterion_args: Vec<String> = Vec::new();
    if let Some(f) = &opts.filter {
        criterion_args.push(f.clone());
    }
    if opts.quick {
        criterion_args.extend(
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
    // The release profile and the whole workspace, as `test` and `clippy` use: dependencies
    // resolve to the same features and build once. `--bench '*'` selects the criterion targets
    // only, keeping criterion's flags away from the libtest harnesses of lib targets.
    Cargo::new("bench")
        .args([
            "--workspace",
            "--bench",
            "*",
            "--profile",
            "release",
            "--locked",
            "--",
        ])
        .args(&criterion_args)
        .env("BATCHKV_REPORT_DIR", &report_dir)
        .env("BATCHKV_BENCH_QUICK", if opts.quick { "1" } else { "" })
        .run()?;

    let criterion_dir = target_dir()?.join("criterion");
    let mut results = collect(&criterion_dir, started)?;
    results.sort_by(|a, b| a.id.cmp(&b.id));
    let sections = sections(&report_dir)?;
    if results.is_empty() && sections.is_empty() {
        bail!(
            "no benchmark results of this run under {} (does the filter match anything?)",
            criterion_dir.display()
        );
    }
    write_report(&report_dir, &results, &sections, opts)?;
    println!(
        "bench: {} criterion benchmarks, {} harness sections; report in {}",
        results.len(),
        sections.len(),
        report_dir.join("report.md").display()
    );
    Ok(())
}

/// Reads criterion's `new/benchmark.json` + `new/estimates.json` of every benchmark written
/// since `since`.
fn collect(dir: &Path, since: SystemTime) -> Result<Vec<Result1>> {
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

fn read_one(new_dir: &Path, since: SystemTime) -> Result<Option<Result1>> {
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
    let point = |k: &str| est[k]["point_estimate"].as_f64().unwrap_or(f64::NAN);
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
    Ok(Some(Result1 {
        id,
        mean_ns: point("mean"),
        median_ns: point("median"),
        std_dev_ns: point("std_dev"),
        elements,
        bytes,
    }))
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} K", v / 1e3),
        Some(v) => format!("{v:.0}"),
        None => "-".to_owned(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// Report sections written by custom harnesses (`<name>.md` in the report directory).
fn sections(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "report.md" {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("read {}", e.path().display()))?;
            out.push((name, text));
        }
    }
    out.sort();
    Ok(out)
}

fn write_report(
    dir: &Path,
    results: &[Result1],
    sections: &[(String, String)],
    opts: &Options,
) -> Result<()> {
    let find = |id: &str| results.iter().find(|r| r.id == id);

    let mut csv =
        String::from("id,mean_ns,median_ns,std_dev_ns,elements,bytes,ops_per_s,mb_per_s\n");
    for r in results {
        writeln!(
            csv,
            "{},{:.1},{:.1},{:.1},{},{},{},{}",
            r.id,
            r.mean_ns,
            r.median_ns,
            r.std_dev_ns,
            opt(r.elements),
            opt(r.bytes),
            opt(r.ops_per_s()),
            opt(r.mb_per_s())
        )?;
    }
    write(dir.join("benchmarks.csv"), &csv)?;

    let mut md = String::new();
    let command = match (&opts.filter, opts.quick) {
        (Some(f), true) => format!("cargo xtask bench --quick {f}"),
        (Some(f), false) => format!("cargo xtask bench {f}"),
        (None, true) => "cargo xtask bench --quick".to_owned(),
        (None, false) => "cargo xtask bench".to_owned(),
    };
    writeln!(md, "# batchkv benchmark report\n")?;
    writeln!(
        md,
        "Command: `{command}`{}\n",
        if opts.quick {
            " (smoke run: short measurements, figures are rough)"
        } else {
            ""
        }
    )?;
    writeln!(md, "Machine: {}\n", machine())?;

    let mut ratio_csv = String::from("ratio,numerator,denominator,value\n");
    let mut ratio_rows = String::new();
    for (what, num, den) in RATIOS {
        let (Some(n), Some(d)) = (find(num), find(den)) else {
            continue;
        };
        let value = d.mean_ns / n.mean_ns;
        writeln!(ratio_csv, "\"{what}\",{num},{den},{value:.3}")?;
        writeln!(ratio_rows, "| {what} | {value:.2} |")?;
    }
    if !ratio_rows.is_empty() {
        writeln!(md, "## Ratios (same run)\n")?;
        writeln!(
            md,
            "| ratio (throughput of first / second) | value |\n|---|---:|"
        )?;
        md.push_str(&ratio_rows);
        md.push('\n');
    }
    write(dir.join("ratios.csv"), &ratio_csv)?;

    for (_, text) in sections {
        md.push_str(text);
        md.push('\n');
    }
    if !results.is_empty() {
        writeln!(md, "## Criterion benchmarks\n")?;
        writeln!(
            md,
            "| benchmark | mean | ± std dev | ops/s | MB/s |\n|---|---:|---:|---:|---:|"
        )?;
    }
    for r in results {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.id,
            fmt_time(r.mean_ns),
            fmt_time(r.std_dev_ns),
            fmt_rate(r.ops_per_s()),
            r.mb_per_s()
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".to_owned())
        )?;
    }
    let sizes = dir.join("codec-sizes.csv");
    if let Ok(text) = std::fs::read_to_string(&sizes) {
        writeln!(md, "\n## Codec entry sizes (1000 ops)\n\n```\n{}```", text)?;
    }
    write(dir.join("report.md"), &md)?;
    println!("\n{md}");
    Ok(())
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
    format!("{cpu}, {cores} cores")
}

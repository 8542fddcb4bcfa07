//! `batchkv-report DIR [--sections]`: reads the CSV files a bench run left in DIR (the harnesses'
//! rows and xtask's, all typed in `batchkv_benches::rows`), draws the PNG plots, writes
//! `report.md` and `ratios.csv` there, and prints the summary table. `cargo xtask bench` runs it
//! after the suite, and `cargo xtask bench --report-only` runs it alone; `--sections` also prints
//! every harness's own section (what a filtered run shows).

mod data;
mod plot;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::data::Data;

const USAGE: &str = "usage: batchkv-report DIR [--sections]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batchkv-report: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let mut dir = None;
    let mut show_sections = false;
    for arg in args {
        match arg.as_str() {
            "--sections" => show_sections = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            a if a.starts_with('-') => bail!("unknown option `{a}`; {USAGE}"),
            a if dir.is_none() => dir = Some(PathBuf::from(a)),
            a => bail!("only one DIR is allowed, got a second: `{a}`; {USAGE}"),
        }
    }
    let Some(dir) = dir else {
        bail!("no report directory given; {USAGE}");
    };
    let data = Data::read(&dir)?;
    let sections = report::sections(&dir)?;
    if data.criterion.is_empty() && sections.is_empty() && data.db_bench.is_empty() {
        bail!(
            "no benchmark results in {} (does the filter match anything?)",
            dir.display()
        );
    }
    let plots = plot::all(&dir, &data);
    let summary = report::write(&dir, &data, &plots)?;
    if show_sections {
        for (_, text) in &sections {
            println!("\n{text}");
        }
    }
    println!("\n{summary}");
    let skipped = plots.iter().filter(|p| p.skipped.is_some()).count();
    println!(
        "bench: report in {} ({} plots{})",
        dir.join("report.md").display(),
        plots.len() - skipped,
        match skipped {
            0 => String::new(),
            n => format!(", {n} skipped: see report.md"),
        },
    );
    Ok(())
}

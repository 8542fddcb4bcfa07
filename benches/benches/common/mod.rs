//! What the benchmark harnesses share: their command line and the report directory.
//!
//! Each harness uses only part of it.
#![allow(dead_code)]

/// The filter given on the command line: the one positional argument. `cargo bench` adds
/// `--bench`, and xtask may pass criterion's flags and their numeric values, which are skipped.
pub fn filter() -> Option<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find(|a| a.parse::<f64>().is_err())
}

/// Whether xtask asked for a smoke run (`cargo xtask bench --quick`).
pub fn quick() -> bool {
    std::env::var("BATCHKV_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Writes `text` as `name` into the report directory xtask names in `BATCHKV_REPORT_DIR`;
/// does nothing when the harness runs outside xtask.
pub fn write_report(name: &str, text: &str) {
    let Some(dir) = std::env::var_os("BATCHKV_REPORT_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), text))
    {
        eprintln!("could not write {name}: {e}");
    }
}

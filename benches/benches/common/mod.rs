//! What the benchmark harnesses share: their command line, the report directory (their rows are
//! typed in the `batchkv_benches` library), and the generated data (16-byte keys, 100-byte
//! values) and statistics helpers.
//!
//! Each harness uses only part of it.
#![allow(dead_code)]

pub mod load;

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

/// Writes `rows` as their table's file (`T::FILE`, with the columns of `T`) into the report
/// directory xtask names in `BATCHKV_REPORT_DIR`; does nothing when the harness runs outside
/// xtask. A failure ends the harness with an error: the report would otherwise lack its figures.
pub fn write_rows<T: batchkv_benches::table::Table>(rows: &[T]) {
    let Some(dir) = std::env::var_os("BATCHKV_REPORT_DIR") else {
        return;
    };
    if let Err(e) = batchkv_benches::table::write(std::path::Path::new(&dir), rows) {
        eprintln!("could not write {}: {e}", T::FILE);
        std::process::exit(1);
    }
}

/// The seeded generator every harness uses (batchkv-testkit's, shared with the tests).
#[allow(unused_imports)] // a module of every harness; not all of them draw random data
pub use batchkv_testkit::Rng;

/// 16-byte keys in pseudo-random order (splitmix64's finalizer is a bijection, so they never
/// repeat): sequential keys would flatter the memtable, whose skiplist inserts in order cheaply.
pub fn key(i: u64) -> Vec<u8> {
    key16(i).to_vec()
}

/// [`key`] without an allocation.
pub fn key16(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    let v = batchkv_testkit::mix64(i.wrapping_add(0x9e37_79b9_7f4a_7c15));
    for (j, b) in k.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((v >> (60 - 4 * j)) & 0xf) as usize];
    }
    k
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

//! What the benchmark harnesses, xtask and the report share: the rows of every CSV file in the
//! report directory ([`rows`]), the one table of the reference systems' claimed figures
//! ([`claims`]), and the CSV reading and writing that holds both ends to the same columns
//! ([`table`]).
//!
//! A harness builds a `Vec` of its row type and writes it with [`table::write`]; the report
//! (`src/bin/batchkv-report/`) reads it back with [`table::read`] into the same type. A column
//! renamed on one side is therefore renamed on the other, or the build fails; a file whose header
//! lacks a column, or whose cell does not parse, is an error naming the file, the row and the
//! column.
//!
//! Nothing here reads the environment or measures anything.

#![warn(missing_docs)]

pub mod claims;
pub mod fmt;
pub mod rows;
pub mod table;

/// The font the report's plots draw their text with (Debian's `fonts-dejavu-core`); xtask's
/// `doctor` checks that it is installed.
pub const PLOT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

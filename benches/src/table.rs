//! CSV files of typed rows: [`write`] and [`read`] of any [`Table`].
//!
//! The columns are the row type's field names, in declaration order, taken from its derived
//! `Deserialize` ([`columns`]), so writer and reader cannot disagree about them. Reading is strict:
//! a missing column, a missing cell or one that does not parse is a [`TableError`] naming the
//! file, the row and the column; an `Option` field is the only kind of cell that may be empty.

use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// A row type with the file it lives in.
pub trait Table: Serialize + DeserializeOwned {
    /// The file's name in the report directory, such as `engine-writes.csv`.
    const FILE: &'static str;
}

/// Why a table could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is empty: not even a header.
    #[error("{}: no header line (expected the columns {expected})", file.display())]
    NoHeader {
        /// The file.
        file: PathBuf,
        /// The columns the row type has, comma-separated.
        expected: String,
    },
    /// The header lacks a column of the row type.
    #[error("{}: line 1 (the header): no column `{column}` (the header is `{header}`)", file.display())]
    MissingColumn {
        /// The file.
        file: PathBuf,
        /// The column that is not there.
        column: &'static str,
        /// The header as read.
        header: String,
    },
    /// A cell is missing or does not parse as its column's type.
    #[error("{}: row {row} (line {line}): column `{column}`: {reason}", file.display())]
    Cell {
        /// The file.
        file: PathBuf,
        /// The data row, counted from 1 (the header is not a row).
        row: u64,
        /// The line in the file.
        line: u64,
        /// The column.
        column: String,
        /// What is wrong with it, with the value.
        reason: String,
    },
    /// A row that is not a record of the header's shape (say, a different number of fields).
    #[error("{}: row {row} (line {line}): {reason}", file.display())]
    Row {
        /// The file.
        file: PathBuf,
        /// The data row, counted from 1.
        row: u64,
        /// The line in the file.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A row could not be written.
    #[error("{}: cannot write a row: {reason}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The CSV writer's message.
        reason: String,
    },
}

/// The columns of `T`: its field names in declaration order, as its derived `Deserialize`
/// declares them.
///
/// # Panics
/// When `T` does not deserialize from a struct with named fields (every row type does; a unit
/// test checks each one).
pub fn columns<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    // The introspecting deserializer always answers with an error once it has the fields.
    let _ = T::deserialize(Introspect {
        fields: &mut fields,
    });
    fields.expect("a row type is a struct with named fields")
}

/// Writes `rows` as `dir/T::FILE`: the header (even when there is no row), then one line per row.
///
/// # Errors
/// [`TableError::Io`] or [`TableError::Write`].
pub fn write<T: Table>(dir: &Path, rows: &[T]) -> Result<(), TableError> {
    let file = dir.join(T::FILE);
    let io = |source| TableError::Io {
        file: file.clone(),
        source,
    };
    let csv_err = |e: csv::Error| {
        let reason = e.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => io(source),
            _ => TableError::Write {
                file: file.clone(),
                reason,
            },
        }
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_path(&file)
        .map_err(csv_err)?;
    w.write_record(columns::<T>()).map_err(csv_err)?;
    for row in rows {
        w.serialize(row).map_err(csv_err)?;
    }
    w.flush().map_err(io)
}

/// Reads `dir/T::FILE`: `None` when the file is not there (its harness did not run).
///
/// # Errors
/// [`TableError`] naming the file, and the row and column at fault.
pub fn read<T: Table>(dir: &Path) -> Result<Option<Vec<T>>, TableError> {
    let file = dir.join(T::FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TableError::Io { file, source }),
    };
    parse(&file, &bytes).map(Some)
}

/// Parses the text of a `T` table read from `file`.
///
/// # Errors
/// As [`read`].
pub fn parse<T: Table>(file: &Path, bytes: &[u8]) -> Result<Vec<T>, TableError> {
    let expected = columns::<T>();
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = r.headers().map_err(|e| row_error(file, 0, e))?.clone();
    if header.is_empty() {
        return Err(TableError::NoHeader {
            file: file.to_owned(),
            expected: expected.join(","),
        });
    }
    if let Some(column) = expected.iter().find(|c| !header.iter().any(|h| h == **c)) {
        return Err(TableError::MissingColumn {
            file: file.to_owned(),
            column,
            header: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut out = Vec::new();
    for (i, record) in r.records().enumerate() {
        let row = i as u64 + 1;
        let record = record.map_err(|e| row_error(file, row, e))?;
        match record.deserialize::<T>(Some(&header)) {
            Ok(v) => out.push(v),
            Err(e) => return Err(cell_error::<T>(file, row, e, &header, &record)),
        }
    }
    Ok(out)
}

/// A record that is not of the header's shape, or could not be read.
fn row_error(file: &Path, row: u64, e: csv::Error) -> TableError {
    let line = e.position().map_or(0, csv::Position::line);
    let reason = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => TableError::Io {
            file: file.to_owned(),
            source,
        },
        _ => TableError::Row {
            file: file.to_owned(),
            row,
            line,
            reason,
        },
    }
}

/// A record whose cell does not hold its column's type.
fn cell_error<T: DeserializeOwned>(
    file: &Path,
    row: u64,
    e: csv::Error,
    header: &csv::StringRecord,
    record: &csv::StringRecord,
) -> TableError {
    let line = record.position().map_or(0, csv::Position::line);
    let csv::ErrorKind::Deserialize { err, .. } = e.kind() else {
        return TableError::Row {
            file: file.to_owned(),
            row,
            line,
            reason: e.to_string(),
        };
    };
    let reason = match err.kind() {
        csv::DeserializeErrorKind::ParseFloat(_)
        | csv::DeserializeErrorKind::ParseInt(_)
        | csv::DeserializeErrorKind::ParseBool(_) => format!("does not parse: {}", err.kind()),
        other => other.to_string(),
    };
    // csv names the field of a parse error, but not of a value the type refused (an unknown
    // enum variant): then the column is the one whose removal makes that error go away.
    let column = err
        .field()
        .and_then(|f| header.get(usize::try_from(f).ok()?))
        .map(str::to_owned)
        .or_else(|| {
            (0..header.len()).find_map(|j| {
                let without = |r: &csv::StringRecord| -> csv::StringRecord {
                    r.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != j)
                        .map(|(_, c)| c)
                        .collect()
                };
                let again = without(record).deserialize::<T>(Some(&without(header)));
                let same = matches!(
                    again.as_ref().map_err(csv::Error::kind),
                    Err(csv::ErrorKind::Deserialize { err: e2, .. }) if e2.kind() == err.kind()
                );
                (!same).then(|| header[j].to_owned())
            })
        })
        .unwrap_or_else(|| "?".to_owned());
    TableError::Cell {
        file: file.to_owned(),
        row,
        line,
        column,
        reason,
    }
}

/// A deserializer that records the fields a struct asks for, then fails.
struct Introspect<'a> {
    fields: &'a mut Option<&'static [&'static str]>,
}

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(
            "a row type must be a struct with named fields",
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = Some(fields);
        Err(de::Error::custom("introspected"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Fixed decimals for a float column, as the harnesses have always printed them (`12.3`, not
/// `12.299999999999999`): `#[serde(serialize_with = "table::dp::<1>")]`.
///
/// # Errors
/// The serializer's.
pub fn dp<const N: usize, S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:.N$}"))
}

/// [`dp`] for an optional float: `None` is an empty cell.
///
/// # Errors
/// The serializer's.
pub fn opt_dp<const N: usize, S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => dp::<N, S>(v, s),
        None => s.serialize_none(),
    }
}

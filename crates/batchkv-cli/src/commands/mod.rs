//! Dispatch: one function per command of the table in `args.rs`, each opening the store,
//! running one request and printing its answer.

mod admin;
mod kv;
mod lease;
mod watch;

use std::io::Read;
use std::path::PathBuf;

use batchkv::{MvccError, Store, StoreError};

use crate::args::{Cli, Command, LeaseCommand, lease_commands};
use crate::error::{CliError, CliResult, exit};
use crate::golit::go_quote;
use crate::output::{Format, Out};

/// The global settings of one invocation.
#[derive(Debug)]
pub struct Ctx {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `-w`.
    pub format: Format,
    /// `--metrics-addr`: serve `/metrics` here while the command runs.
    pub metrics_addr: Option<String>,
}

impl Ctx {
    /// Opens the store, runs `f`, closes the store (also when `f` failed).
    ///
    /// On a full disk a read-write open fails (RocksDB writes at open); the store is then
    /// opened read-only, with a warning, so reads still answer (writes fail with the
    /// read-only error).
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> CliResult<T>) -> CliResult<T> {
        tracing::debug!(data_dir = %self.data_dir.display(), "opening the store");
        let opened = Store::builder(&self.data_dir)
            .metrics(self.metrics_addr.is_some())
            .open();
        let opened = match opened {
            Err(e) if is_no_space(&e) => {
                eprintln!(
                    "warning: the disk holding {} is full ({e}); the store is open read-only",
                    self.data_dir.display()
                );
                self.open_read_only()
            }
            other => other,
        };
        let store = opened.map_err(|e| self.open_error(&e))?;
        // Serves until the command's answer is ready (dropped at the end of this function).
        let _metrics = match &self.metrics_addr {
            Some(addr) => Some(
                store
                    .serve_metrics(addr)
                    .map_err(|e| CliError::new(exit::ERROR, e.to_string()))?,
            ),
            None => None,
        };
        let r = f(&store);
        let closed = store.close();
        let v = r?;
        closed.map_err(|e| CliError::new(exit::ERROR, format!("closing the store: {e}")))?;
        Ok(v)
    }
}

impl Ctx {
    /// Opens the store read-only (nothing written, no lock taken), runs `f`, drops it.
    pub fn with_store_read_only<T>(&self, f: impl FnOnce(&Store) -> CliResult<T>) -> CliResult<T> {
        let store = self.open_read_only().map_err(|e| self.open_error(&e))?;
        f(&store)
    }

    fn open_read_only(&self) -> batchkv::Result<Store> {
        Store::builder(&self.data_dir).read_only(true).open()
    }

    fn open_error(&self, e: &StoreError) -> CliError {
        CliError::new(
            exit::BAD_CONNECTION,
            format!("cannot open the store at {}: {e}", self.data_dir.display()),
        )
    }
}

/// Whether opening failed because the disk is full.
fn is_no_space(e: &StoreError) -> bool {
    matches!(e, StoreError::Storage(m) if matches!(&**m, MvccError::Engine(ee) if ee.is_no_space()))
}

/// Runs the parsed command line `cli`, printing into `out`.
pub fn run(cli: Cli, stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    let Some(command) = cli.command else {
        return Ok(());
    };
    out.hex = cli.global.hex;
    // Made by the commands that run, so an unknown command is reported before a bad `-w`
    // (as cobra finds the command before it runs it).
    let global = cli.global;
    let ctx = || -> CliResult<Ctx> {
        Ok(Ctx {
            data_dir: global.data_dir.clone(),
            format: Format::parse(&global.write_out)?,
            metrics_addr: global.metrics_addr.clone(),
        })
    };
    match command {
        Command::Put(a) => kv::put(&ctx()?, &a, stdin, out),
        Command::Get(a) => kv::get(&ctx()?, &a, out),
        Command::Del(a) => kv::del(&ctx()?, &a, out),
        Command::Txn(a) => kv::txn(&ctx()?, &a, stdin, out),
        Command::Compaction(a) => kv::compaction(&ctx()?, &a, out),
        Command::Lease(l) => match l.command {
            Some(LeaseCommand::Grant(a)) => lease::grant(&ctx()?, &a, out),
            Some(LeaseCommand::Revoke(a)) => lease::revoke(&ctx()?, &a, out),
            Some(LeaseCommand::KeepAlive(a)) => lease::keep_alive(&ctx()?, &a, out),
            Some(LeaseCommand::Timetolive(a)) => lease::time_to_live(&ctx()?, &a, out),
            Some(LeaseCommand::List) => lease::list(&ctx()?, out),
            Some(LeaseCommand::Unknown(words)) => Err(unknown_command("batchkv lease", &words)),
            None => Err(CliError::bad_args(format!(
                "lease needs a subcommand: {}",
                or_list(&lease_commands())
            ))),
        },
        Command::Watch(a) => watch::watch(&ctx()?, &a, out),
        Command::Stats => admin::stats(&ctx()?, out),
        Command::Checkpoint(a) => admin::checkpoint(&ctx()?, &a, out),
        Command::Check(a) => admin::check(&ctx()?, &a, out),
        Command::Bench(a) => crate::bench::bench(&ctx()?, &a, out),
        Command::Version => {
            ctx()?;
            out.line(format!(
                "batchkv version: {}\nAPI version: 3.4",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
        Command::Unknown(words) => Err(unknown_command("batchkv", &words)),
    }
}

/// `a, b or c`.
fn or_list(names: &[String]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// cobra's error for a word that names no command under `path`.
fn unknown_command(path: &str, words: &[std::ffi::OsString]) -> CliError {
    let word = words
        .first()
        .map(|w| w.to_string_lossy())
        .unwrap_or_default();
    CliError::new(
        exit::ERROR,
        format!("unknown command {} for \"{path}\"", go_quote(&word)),
    )
}

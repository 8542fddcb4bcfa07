//! The command table: every command and flag of `batchkv`, declared once (clap's derive). It
//! drives parsing, the `--help` text and dispatch (`commands::run` matches on [`Command`]);
//! txn ops (`put`/`get`/`del` lines on a txn's stdin) parse with the same [`PutArgs`],
//! [`GetArgs`] and [`DelArgs`] through [`TxnOp`].
//!
//! etcdctl parses with cobra and pflag. clap expresses most of their syntax directly: flags
//! after positionals, `--flag=value` and `--flag value`, `-w json` and `-wjson`, `--` to end
//! the flags, global flags after the command. Three things it does not say the way pflag does,
//! and [`pflag`] adds them to the whole table in one place:
//!
//! * A bool flag takes an optional Go-style value: `--prefix`, `--prefix=true`,
//!   `--prefix=false`, `--prefix=0` (`strconv.ParseBool`), but never the next argument.
//! * A flag that takes a value takes the next argument whatever it looks like (`--rev --x`
//!   gives `--rev` the value `--x`, so the error is the bad number, as in pflag), and a flag
//!   given twice keeps the last value rather than failing.
//! * Errors: pflag's texts (`unknown flag: --bogus`, `flag needs an argument: --limit`,
//!   `invalid argument "x" for "--rev" flag: strconv.ParseInt: ...`), which the differential
//!   test compares with etcdctl's byte for byte. [`GoBool`] and [`GoInt`] produce the value
//!   errors themselves; [`flag_error`] translates the rest from clap's error kinds.
//!
//! What etcdctl checks after parsing (argument counts, `--prefix` with `--from-key`, sort
//! names, lease ids in hex, ...) the commands check, with etcdctl's messages and exit codes;
//! those checks are why positionals are a plain list here rather than named clap arguments.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::{CliError, exit};
use crate::golit::{go_quote, parse_go_bool, parse_go_int};

/// The data dir when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "./batchkv.data";

/// etcd's key-value API on a local data dir, with etcdctl's command syntax.
///
/// Each invocation opens the store at --data-dir, runs one command and closes the store.
/// Commands, flags, output (-w simple, -w json) and exit codes are etcdctl 3.4's.
#[derive(Debug, Parser)]
#[command(name = "batchkv", after_help = AFTER_HELP)]
pub struct Cli {
    /// Flags of every command.
    #[command(flatten)]
    pub global: Global,
    /// The command (none: print the help).
    #[command(subcommand)]
    pub command: Option<Command>,
}

const AFTER_HELP: &str = "\
Where batchkv differs from etcdctl: `watch` needs --rev=N and replays the events from N up to \
now, then exits; `lease keep-alive` needs --once; -w takes simple and json only; `stats`, \
`checkpoint` and `bench` are batchkv's own (`bench` writes bench/... keys: point it at a \
scratch dir). docs/ETCD-COMPAT.md lists every difference.";

/// Flags of every command (before or after it).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The store (created if missing)
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Output format: simple or json, as etcdctl's
    #[arg(
        short = 'w',
        long,
        global = true,
        value_name = "FORMAT",
        default_value = "simple"
    )]
    pub write_out: String,
    /// Print keys and values as hex escapes (simple output)
    #[arg(long, global = true)]
    pub hex: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs (e.g.
    /// 127.0.0.1:9100 during `bench`)
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// etcdctl's connection flags.
    #[command(flatten)]
    pub etcdctl: EtcdctlFlags,
}

/// etcdctl's connection flags: accepted and ignored, so etcdctl command lines run unchanged
/// (listed by `--help`, not `-h`).
#[derive(Debug, Args)]
#[command(next_help_heading = "etcdctl's connection flags (accepted, ignored)")]
// Parsed to be accepted; nothing reads them.
#[allow(dead_code)]
pub struct EtcdctlFlags {
    /// gRPC endpoints
    #[arg(long, global = true, hide_short_help = true, value_name = "URLS")]
    endpoints: Option<String>,
    /// Dial timeout for client connections
    #[arg(long, global = true, hide_short_help = true, value_name = "DURATION")]
    dial_timeout: Option<String>,
    /// Timeout for short running command
    #[arg(long, global = true, hide_short_help = true, value_name = "DURATION")]
    command_timeout: Option<String>,
    /// Keepalive time for client connections
    #[arg(long, global = true, hide_short_help = true, value_name = "DURATION")]
    keepalive_time: Option<String>,
    /// Keepalive timeout for client connections
    #[arg(long, global = true, hide_short_help = true, value_name = "DURATION")]
    keepalive_timeout: Option<String>,
    /// Username[:password] for authentication
    #[arg(long, global = true, hide_short_help = true)]
    user: Option<String>,
    /// Password for authentication
    #[arg(long, global = true, hide_short_help = true)]
    password: Option<String>,
    /// CA bundle file
    #[arg(long, global = true, hide_short_help = true, value_name = "FILE")]
    cacert: Option<String>,
    /// TLS certificate file
    #[arg(long, global = true, hide_short_help = true, value_name = "FILE")]
    cert: Option<String>,
    /// TLS key file
    #[arg(long, global = true, hide_short_help = true, value_name = "FILE")]
    key: Option<String>,
    /// Domain name to query for SRV records describing cluster endpoints
    #[arg(
        short = 'd',
        long,
        global = true,
        hide_short_help = true,
        value_name = "DOMAIN"
    )]
    discovery_srv: Option<String>,
    /// Service name to query when using DNS discovery
    #[arg(long, global = true, hide_short_help = true, value_name = "NAME")]
    discovery_srv_name: Option<String>,
    /// Enable client-side debug logging
    #[arg(long, global = true, hide_short_help = true)]
    debug: bool,
    /// Disable transport security for client connections
    #[arg(long, global = true, hide_short_help = true)]
    insecure_transport: bool,
    /// Accept any certificate
    #[arg(long, global = true, hide_short_help = true)]
    insecure_skip_tls_verify: bool,
    /// Accept insecure SRV records
    #[arg(long, global = true, hide_short_help = true)]
    insecure_discovery: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Puts the given key into the store (the value from stdin when not given)
    #[command(override_usage = "batchkv put [options] <key> <value>")]
    Put(PutArgs),
    /// Gets the key or a range of keys
    #[command(override_usage = "batchkv get [options] <key> [range_end]")]
    Get(GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    #[command(override_usage = "batchkv del [options] <key> [range_end]")]
    Del(DelArgs),
    /// Processes all the requests on stdin in one transaction: compares, a blank line, success
    /// ops, a blank line, failure ops, a blank line
    #[command(override_usage = "batchkv txn [options] < TXN")]
    Txn(TxnArgs),
    /// Compacts the event history
    #[command(override_usage = "batchkv compaction [options] <revision>")]
    Compaction(CompactionArgs),
    /// Lease related commands
    Lease(LeaseArgs),
    /// Replays the events on a key or prefix from --rev up to the current revision, then exits
    #[command(override_usage = "batchkv watch [options] <key or prefix> [range_end] --rev=N")]
    Watch(WatchArgs),
    /// Prints the revision, keys, leases and RocksDB figures (batchkv's own)
    Stats,
    /// Writes a consistent copy of the store to DIR; open it with --data-dir=DIR (batchkv's own)
    #[command(override_usage = "batchkv checkpoint <dir>")]
    Checkpoint(CheckpointArgs),
    /// Verifies the store read-only: block checksums, meta values, contiguous revisions, the
    /// key index against the records, leases against keys; prints etcd's HashKV digest
    /// (batchkv's own)
    #[command(override_usage = "batchkv check [options]")]
    Check(CheckArgs),
    /// Concurrent puts of bench/... keys; prints ops/s and latencies (batchkv's own)
    Bench(BenchArgs),
    /// Prints the version
    Version,
    /// Any other word: etcdctl's "unknown command" error (clap's own is worded otherwise).
    #[command(external_subcommand)]
    Unknown(Vec<OsString>),
}

/// `put`'s flags (also on a txn's `put` lines).
#[derive(Debug, Args)]
pub struct PutArgs {
    /// KEY and VALUE
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Lease ID (in hexadecimal) to attach to the key
    #[arg(long, value_name = "HEX", default_value = "0")]
    pub lease: String,
    /// Return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// Updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// Updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
}

/// `get`'s flags (also on a txn's `get` lines).
#[derive(Debug, Args)]
pub struct GetArgs {
    /// KEY and RANGE_END
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Linearizable (l) or serializable (s); the same on one node
    #[arg(long, value_name = "l|s", default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(
        long,
        value_name = "ORDER",
        default_value = "",
        hide_default_value = true
    )]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(
        long,
        value_name = "TARGET",
        default_value = "",
        hide_default_value = true
    )]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, value_name = "N", default_value = "0", value_parser = GoInt)]
    pub limit: i64,
    /// Specify the kv revision
    #[arg(long, value_name = "N", default_value = "0", value_parser = GoInt)]
    pub rev: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count (etcdctl 3.5's flag)
    #[arg(long)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
}

/// `del`'s flags (also on a txn's `del` lines).
#[derive(Debug, Args)]
pub struct DelArgs {
    /// KEY and RANGE_END
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// Delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
}

/// `txn`'s flags.
#[derive(Debug, Args)]
pub struct TxnArgs {
    /// None: a txn reads its ops from stdin
    #[arg(value_name = "ARGS", hide = true)]
    pub args: Vec<OsString>,
    /// Input transaction in interactive mode
    #[arg(short, long)]
    pub interactive: bool,
}

/// `compaction`'s flags.
#[derive(Debug, Args)]
pub struct CompactionArgs {
    /// REVISION
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Accepted: batchkv's compaction answers once it is logical and removes the old
    /// records in steps after it (docs/ETCD-COMPAT.md)
    #[arg(long)]
    pub physical: bool,
}

/// `lease`: its subcommand.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// The lease command (none: etcdctl's error naming them all).
    #[command(subcommand)]
    pub command: Option<LeaseCommand>,
}

/// The lease commands.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates a lease of TTL seconds
    #[command(override_usage = "batchkv lease grant <ttl>")]
    Grant(LeaseIdArgs),
    /// Revokes a lease and deletes its keys
    #[command(override_usage = "batchkv lease revoke <leaseID>")]
    Revoke(LeaseIdArgs),
    /// Renews a lease once (needs --once)
    #[command(override_usage = "batchkv lease keep-alive --once <leaseID>")]
    KeepAlive(KeepAliveArgs),
    /// Get lease information
    #[command(override_usage = "batchkv lease timetolive <leaseID> [options]")]
    Timetolive(TimeToLiveArgs),
    /// Lists all active leases
    List,
    /// Any other word: etcdctl's "unknown command" error.
    #[command(external_subcommand)]
    Unknown(Vec<OsString>),
}

/// `lease grant TTL`, `lease revoke ID`.
#[derive(Debug, Args)]
pub struct LeaseIdArgs {
    /// TTL (grant) or lease ID in hex (revoke)
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// `lease timetolive`'s flags.
#[derive(Debug, Args)]
pub struct TimeToLiveArgs {
    /// Lease ID in hex
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Get keys attached to this lease
    #[arg(long)]
    pub keys: bool,
}

/// `lease keep-alive`'s flags.
#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    /// Lease ID in hex
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// Resets the keep-alive time to its original value once, then exits (required)
    #[arg(long)]
    pub once: bool,
}

/// `watch`'s flags.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// KEY and RANGE_END
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// etcdctl runs this on every event; batchkv refuses it (exit 4)
    #[arg(last = true, value_name = "COMMAND", hide = true, num_args = 0..)]
    pub exec: Option<Vec<OsString>>,
    /// Interactive mode (refused: exit 4)
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching from (required, > 0)
    #[arg(long, value_name = "N", default_value = "0", value_parser = GoInt)]
    pub rev: i64,
    /// Get the previous key-value pair before the event happens
    #[arg(long)]
    pub prev_kv: bool,
}

/// `checkpoint DIR`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The directory to create
    #[arg(value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// `check`'s flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also print the HashKV digest at this revision (0: only the current one)
    #[arg(long, value_name = "N", default_value = "0", value_parser = GoInt)]
    pub rev: i64,
}

/// `bench`'s flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent clients
    #[arg(long, value_name = "N", default_value = "16", value_parser = GoInt)]
    pub clients: i64,
    /// Puts in all
    #[arg(long, value_name = "N", default_value = "10000", value_parser = GoInt)]
    pub ops: i64,
    /// Bytes per value
    #[arg(long, value_name = "N", default_value = "256", value_parser = GoInt)]
    pub value_size: i64,
    /// Distinct keys (default: --ops)
    #[arg(long, value_name = "N", value_parser = GoInt)]
    pub keys: Option<i64>,
}

/// One op line of a txn's stdin: etcdctl parses it with the `put`, `get` and `del` commands'
/// own flag sets (without the global flags), as this does.
#[derive(Debug, Parser)]
#[command(
    name = "txn",
    no_binary_name = true,
    disable_help_flag = true,
    disable_help_subcommand = true
)]
pub enum TxnOp {
    /// A put.
    Put(PutArgs),
    /// A read.
    Get(GetArgs),
    /// A delete.
    Del(DelArgs),
}

/// What a command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run this.
    Run(Box<Cli>),
    /// Print this help text (exit 0).
    Help(String),
}

/// Parses the command line `args` (without the program name).
///
/// # Errors
///
/// pflag's and cobra's messages, exit 1.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, CliError> {
    let mut cmd = pflag(Cli::command());
    // Every subcommand complete (global flags propagated), for `flag_error`'s look-up.
    cmd.build();
    let argv: Vec<OsString> = std::iter::once(OsString::from("batchkv"))
        .chain(args.iter().cloned())
        .collect();
    let matches = match cmd.try_get_matches_from_mut(argv) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Ok(Parsed::Help(e.to_string()));
        }
        Err(e) => return Err(flag_error(&e, &cmd, &args)),
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| flag_error(&e, &cmd, &args))?;
    if let Some(Command::Watch(w)) = &mut cli.command
        && w.exec.is_none()
        && ends_with_separator(&cmd, &args)
    {
        w.exec = Some(Vec::new());
    }
    if cli.command.is_none() {
        return Ok(Parsed::Help(cmd.render_help().to_string()));
    }
    Ok(Parsed::Run(Box::new(cli)))
}

/// Whether the command line ends with a `--` that ends the flags (rather than being the value
/// of the flag before it). clap drops such a `--`, but for `watch` it means "run a command on
/// each event", which batchkv refuses even without the command (etcdctl refuses a `--` with no
/// command after it too). Parsing the line without the `--` tells: only a flag left waiting for
/// its value fails with an empty value.
fn ends_with_separator(cmd: &clap::Command, args: &[OsString]) -> bool {
    let Some((last, rest)) = args.split_last() else {
        return false;
    };
    if last != "--" {
        return false;
    }
    let argv = std::iter::once(OsString::from("batchkv")).chain(rest.iter().cloned());
    match cmd.clone().try_get_matches_from(argv) {
        Err(e) => e.kind() != ErrorKind::InvalidValue,
        Ok(_) => true,
    }
}

/// Parses one txn op line, split into words (`txn::argify`).
///
/// # Errors
///
/// Any flag error: the txn reports the whole line as invalid, as etcdctl does.
pub fn parse_txn_op(words: Vec<OsString>) -> Result<TxnOp, clap::Error> {
    let matches = pflag(TxnOp::command()).try_get_matches_from(words)?;
    TxnOp::from_arg_matches(&matches)
}

/// The names of the lease commands, in the table's order (for etcdctl's "needs a subcommand").
pub fn lease_commands() -> Vec<String> {
    LeaseCommand::augment_subcommands(clap::Command::new("lease"))
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect()
}

/// pflag's syntax on a clap command and all its subcommands (see the module doc): bool flags
/// take an optional `=VALUE` in Go's syntax, value flags take the next argument whatever it is,
/// and a repeated flag keeps its last value.
fn pflag(cmd: clap::Command) -> clap::Command {
    cmd.args_override_self(true)
        .mut_args(|arg| {
            if arg.is_positional() {
                arg
            } else if matches!(arg.get_action(), ArgAction::SetTrue) {
                arg.action(ArgAction::Set)
                    .value_parser(GoBool)
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .default_value("false")
                    .hide_default_value(true)
                    .value_name("BOOL")
            } else if arg.get_action().takes_values() {
                arg.allow_hyphen_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(pflag)
}

/// pflag's name of a flag in its messages: `--name`, or `-s, --name` when it has a shorthand.
fn pflag_name(arg: Option<&Arg>) -> String {
    match arg.map(|a| (a.get_short(), a.get_long())) {
        Some((Some(s), Some(l))) => format!("-{s}, --{l}"),
        Some((None, Some(l))) => format!("--{l}"),
        Some((Some(s), None)) => format!("-{s}"),
        _ => "flag".to_owned(),
    }
}

/// pflag's error for a flag's bad value (`invalid argument "x" for "--rev" flag: ...`), as a
/// clap error that [`flag_error`] passes through.
fn value_error(arg: Option<&Arg>, value: &str, why: String) -> clap::Error {
    let mut e = clap::Error::new(ErrorKind::ValueValidation);
    e.insert(
        ContextKind::Custom,
        ContextValue::String(format!(
            "invalid argument {} for {} flag: {why}",
            go_quote(value),
            go_quote(&pflag_name(arg))
        )),
    );
    e
}

/// A bool flag's value: Go's `strconv.ParseBool`.
#[derive(Clone, Copy, Debug)]
pub struct GoBool;

impl TypedValueParser for GoBool {
    type Value = bool;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        let v = value.to_string_lossy();
        parse_go_bool(&v).map_err(|why| value_error(arg, &v, why))
    }
}

/// An int64 flag's value: Go's `strconv.ParseInt(s, 0, 64)` (`0x10`, `010`, `0b1` work), as
/// pflag's int64 flags.
#[derive(Clone, Copy, Debug)]
pub struct GoInt;

impl TypedValueParser for GoInt {
    type Value = i64;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<i64, clap::Error> {
        let v = value.to_string_lossy();
        parse_go_int(&v, 0).map_err(|why| value_error(arg, &v, why))
    }
}

/// pflag's (and cobra's) message for a clap parse error of the command line `args`; exit 1.
///
/// clap names the flag in an error the way its help renders it (`--limit <N>`), so the flag is
/// looked up by that rendering in `cmd`; and as clap does not say which form was typed, the
/// shorthand forms are recovered from `args`.
fn flag_error(e: &clap::Error, cmd: &clap::Command, args: &[OsString]) -> CliError {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if let Some(msg) = context(ContextKind::Custom) {
        return CliError::new(exit::ERROR, msg);
    }
    let invalid = context(ContextKind::InvalidArg).unwrap_or_default();
    let msg = match e.kind() {
        ErrorKind::UnknownArgument => {
            if let Some(long) = invalid.strip_prefix("--") {
                format!("unknown flag: --{long}")
            } else if let Some(short) = invalid.strip_prefix('-') {
                let c = short.chars().next().unwrap_or('-');
                format!(
                    "unknown shorthand flag: '{c}' in -{}",
                    short_cluster(args, c)
                )
            } else {
                format!("unexpected argument {}", go_quote(invalid))
            }
        }
        // A flag that needs a value came last (any other argument would have been its value).
        ErrorKind::InvalidValue if context(ContextKind::InvalidValue) == Some("") => {
            let arg = find_arg(cmd, invalid);
            let typed = args.last().map(|a| a.to_string_lossy().into_owned());
            match (arg.and_then(Arg::get_short), typed) {
                (Some(c), Some(t)) if !t.starts_with("--") => {
                    format!("flag needs an argument: '{c}' in -{c}")
                }
                _ => format!(
                    "flag needs an argument: --{}",
                    arg.and_then(Arg::get_long).unwrap_or(invalid)
                ),
            }
        }
        _ => {
            // Anything else (not reachable from etcdctl's syntax): clap's own first line.
            let text = e
                .kind()
                .as_str()
                .map_or_else(|| e.to_string(), str::to_owned);
            text.lines().next().unwrap_or_default().to_owned()
        }
    };
    CliError::new(exit::ERROR, msg)
}

/// The flag that clap renders as `rendered` (`--limit <N>`), in `cmd` or a subcommand.
fn find_arg<'a>(cmd: &'a clap::Command, rendered: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.to_string() == rendered)
        .or_else(|| cmd.get_subcommands().find_map(|c| find_arg(c, rendered)))
}

/// The shorthand cluster (`ix` of `-ix`) that holds the unknown shorthand `c`, as pflag names
/// it in its message.
fn short_cluster(args: &[OsString], c: char) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .filter_map(|a| {
            a.strip_prefix('-')
                .filter(|s| !s.starts_with('-'))
                .map(str::to_owned)
        })
        .find(|s| s.split('=').next().is_some_and(|f| f.contains(c)))
        .unwrap_or_else(|| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(args: &[&str]) -> CliError {
        match parse(args.iter().map(OsString::from).collect()) {
            Err(e) => e,
            Ok(p) => panic!("{args:?} parsed: {p:?}"),
        }
    }

    fn get(args: &[&str]) -> (Global, GetArgs) {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(cli)) => match cli.command {
                Some(Command::Get(g)) => (cli.global, g),
                other => panic!("{args:?}: not a get: {other:?}"),
            },
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_parse_as_pflag() {
        let (global, g) = get(&[
            "--dial-timeout",
            "2s",
            "get",
            "k",
            "--rev",
            "5",
            "--prefix",
            "-wjson",
            "--limit=0x2",
            "--keys-only=false",
            "--rev=6",
            "--",
            "-x",
        ]);
        assert_eq!(g.args, ["k", "-x"]);
        assert_eq!((g.rev, g.limit), (6, 2));
        assert!(g.prefix && !g.keys_only && !g.from_key);
        assert_eq!(global.write_out, "json");
        assert_eq!(global.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        // A bool flag never takes the next argument; a value flag takes any.
        let (_, g) = get(&["get", "--prefix", "true", "--order", "--x"]);
        assert!(g.prefix);
        assert_eq!((g.args, g.order.as_str()), (vec!["true".into()], "--x"));
    }

    #[test]
    fn errors_are_pflags() {
        let check = |args: &[&str], msg: &str| {
            assert_eq!(parse_err(args), CliError::new(exit::ERROR, msg), "{args:?}");
        };
        check(&["get", "a", "--nope"], "unknown flag: --nope");
        check(&["get", "a", "--nope=1"], "unknown flag: --nope");
        check(&["--prefix", "get", "a"], "unknown flag: --prefix");
        check(&["put", "x", "-5"], "unknown shorthand flag: '5' in -5");
        check(&["txn", "-ix"], "unknown shorthand flag: 'x' in -ix");
        check(&["get", "a", "--limit"], "flag needs an argument: --limit");
        check(&["get", "a", "-w"], "flag needs an argument: 'w' in -w");
        check(
            &["get", "a", "--rev=x"],
            "invalid argument \"x\" for \"--rev\" flag: strconv.ParseInt: parsing \"x\": invalid \
             syntax",
        );
        check(
            &["get", "a", "--keys-only=maybe"],
            "invalid argument \"maybe\" for \"--keys-only\" flag: strconv.ParseBool: parsing \
             \"maybe\": invalid syntax",
        );
        check(
            &["txn", "-i=2"],
            "invalid argument \"2\" for \"-i, --interactive\" flag: strconv.ParseBool: parsing \
             \"2\": invalid syntax",
        );
    }

    #[test]
    fn help_and_unknown_commands() {
        for args in [&[][..], &["--help"], &["-h"], &["help"]] {
            match parse(args.iter().map(OsString::from).collect()) {
                Ok(Parsed::Help(text)) => assert!(text.contains("watch"), "{text}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match parse(["nope", "--x"].iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(cli)) => {
                assert!(matches!(cli.command, Some(Command::Unknown(w)) if w == ["nope", "--x"]))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lease_commands(),
            ["grant", "revoke", "keep-alive", "timetolive", "list"]
        );
    }

    #[test]
    fn txn_ops_use_the_commands_flags() {
        let words = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
        match parse_txn_op(words("get a --prefix --limit=1")) {
            Ok(TxnOp::Get(g)) => assert!(g.prefix && g.limit == 1 && g.args == ["a"]),
            other => panic!("{other:?}"),
        }
        // No global flags in a txn op.
        assert!(parse_txn_op(words("put a b -w json")).is_err());
        assert!(parse_txn_op(words("foo a")).is_err());
    }
}

//! The `batchkv` command line: etcdctl's syntax and output over a local data dir.
//!
//! Each invocation opens the store at `--data-dir` (default `./batchkv.data`, created if
//! missing, `Durability::Sync`), runs one command and closes the store. The commands and their
//! flags are etcdctl 3.4's, and so are the output (`-w simple`, the default, and `-w json`), the
//! error messages (`Error: etcdserver: ...` on stderr) and the exit codes (1 for a refused
//! request, 128 for bad arguments, 3 for bad txn input, ...):
//!
//! ```text
//! batchkv [--data-dir=DIR] [-w simple|json] [--hex] COMMAND ...
//!   put KEY [VALUE] [--lease=HEX] [--prev-kv] [--ignore-value] [--ignore-lease]
//!                                   (VALUE from stdin when not given)
//!   get KEY [RANGE_END] [--prefix] [--from-key] [--rev=N] [--limit=N] [--keys-only]
//!       [--count-only] [--print-value-only] [--order=ASCEND|DESCEND]
//!       [--sort-by=CREATE|KEY|MODIFY|VALUE|VERSION] [--consistency=l|s]
//!   del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]
//!   txn [-i]                        (etcdctl's stdin format: compares, blank line, success
//!                                    ops, blank line, failure ops, blank line)
//!   compaction REV [--physical]
//!   lease grant TTL | revoke HEX | keep-alive --once HEX | timetolive HEX [--keys] | list
//!   watch KEY [RANGE_END] [--prefix] --rev=N [--prev-kv]
//!   stats | checkpoint DIR | bench [--clients=N] [--ops=N] [--value-size=N] [--keys=N]
//!   version | help
//! ```
//!
//! Where batchkv differs from etcdctl, on purpose:
//!
//! * The response header names no real cluster: `cluster_id` is the ASCII bytes of
//!   "batchkv" read as a number ([`CLUSTER_ID`]), `member_id` and `raft_term` are 1 (one
//!   node, no Raft). The revisions are the store's own.
//! * `watch` replays history from `--rev` up to the current revision and exits 0 (while the
//!   command runs nothing else can write: the data dir is open in this process only), so it
//!   needs `--rev=N` (N > 0). Events come as etcd sends a catch-up: one response per 1,000
//!   revisions, its header at the current revision. A watch from below the compacted revision
//!   is cancelled as etcd cancels it (exit 5).
//! * `lease keep-alive` needs `--once` (a keep-alive loop would hold the data dir open).
//!   Lease deadlines are not stored, as in etcd: opening the store gives every lease its whole
//!   TTL again, so a lease expires only while one command runs longer than its TTL.
//! * `get --count-only` exists (etcdctl 3.5's flag; 3.4 lacks it) and works with `-w simple`
//!   (prints the count) and `-w json`.
//! * Lease ids count up from 1 (etcd's look random); `lease list` is in id order and
//!   `timetolive --keys` in key order (etcd's are in no order); the remaining TTL is rounded up
//!   (etcd truncates: 100 where etcd says 99).
//! * In txn input, `lease("key") = "HEX"` compares take the lease id in hex (etcdctl 3.4
//!   panics on them); an unknown compare operator is an error rather than a panic; a
//!   'single-quoted' op argument is its text (etcdctl 3.4's argify keeps a wrong slice of it).
//! * `-w` takes `simple` and `json` only. etcdctl's connection flags (`--endpoints`,
//!   `--dial-timeout`, ...) are accepted and ignored, so etcdctl command lines run unchanged.
//! * `stats`, `checkpoint DIR` and `bench` are batchkv's own. `bench` writes `bench/...` keys
//!   into the data dir it is given: point it at a scratch dir.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use batchkv_codec::{
    Compare, CompareOp, CompareTarget, DeleteRange, Op, Put, Range, SortOrder, SortTarget, Txn,
};
use batchkv_mvcc::{
    DeleteRangeResponse, EventKind, KeyValue, OpError, OpResponse, PutResponse, RangeResponse,
    TxnResponse, WatchEvent, WatchRequest,
};
use bytes::Bytes;

use crate::error::StoreError;
use crate::store::Store;

/// The `cluster_id` of every response header: "batchkv" in ASCII, read as a big-endian number.
pub const CLUSTER_ID: u64 = 0x0062_6174_6368_6b76;
/// The `member_id` of every response header (one node).
pub const MEMBER_ID: u64 = 1;
/// The `raft_term` of every response header (no Raft: one term).
pub const RAFT_TERM: u64 = 1;
/// The data dir when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "./batchkv.data";

/// etcdctl's exit codes.
const EXIT_ERROR: i32 = 1;
const EXIT_BAD_CONNECTION: i32 = 2;
const EXIT_INVALID_INPUT: i32 = 3;
const EXIT_BAD_FEATURE: i32 = 4;
const EXIT_INTERRUPTED: i32 = 5;
const EXIT_IO: i32 = 6;
const EXIT_BAD_ARGS: i32 = 128;

/// Revisions per watch response, as etcd's catch-up (`watchBatchMaxRevs`).
const WATCH_BATCH_REVS: usize = 1000;

/// Runs the command line `args` (without the program name) with the process's stdin, stdout
/// and stderr; returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        args,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// Runs the command line `args` (without the program name) against the given streams; returns
/// the exit code (etcdctl's: 0, 1 for a refused request, 128 for bad arguments, ...).
pub fn run_with(
    args: impl IntoIterator<Item = OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let args: Vec<Vec<u8>> = args.into_iter().map(os_bytes).collect();
    let mut out = Out::default();
    let result = dispatch(&args, stdin, &mut out);
    let mut code = 0;
    if stdout
        .write_all(&out.stdout)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        code = EXIT_IO;
    }
    let _ = stderr.write_all(&out.stderr);
    if let Err(e) = result {
        let _ = writeln!(stderr, "Error: {}", e.msg);
        code = e.code;
    }
    let _ = stderr.flush();
    code
}

#[cfg(unix)]
fn os_bytes(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    s.into_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: OsString) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// A failed command: etcdctl's exit code and message (printed as `Error: <msg>`).
#[derive(Debug)]
struct CliError {
    code: i32,
    msg: String,
}

fn err(code: i32, msg: impl Into<String>) -> CliError {
    CliError {
        code,
        msg: msg.into(),
    }
}

fn bad_args(msg: impl Into<String>) -> CliError {
    err(EXIT_BAD_ARGS, msg)
}

type CliResult<T = ()> = Result<T, CliError>;

/// What a command printed (written out when it ends).
#[derive(Default)]
struct Out {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Out {
    fn line(&mut self, s: impl AsRef<[u8]>) {
        self.stdout.extend_from_slice(s.as_ref());
        self.stdout.push(b'\n');
    }

    fn err_line(&mut self, s: impl AsRef<[u8]>) {
        self.stderr.extend_from_slice(s.as_ref());
        self.stderr.push(b'\n');
    }
}

// ---------------------------------------------------------------------------------------------
// Flags (pflag's syntax: `--name=value`, `--name value`, `-w json`, `-wjson`, `--` ends flags).

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Bool,
    Value,
}

#[derive(Clone, Copy)]
struct Spec {
    long: &'static str,
    short: Option<char>,
    arity: Arity,
}

const fn flag(long: &'static str) -> Spec {
    Spec {
        long,
        short: None,
        arity: Arity::Bool,
    }
}

const fn value(long: &'static str) -> Spec {
    Spec {
        long,
        short: None,
        arity: Arity::Value,
    }
}

const GLOBAL: &[Spec] = &[
    value("data-dir"),
    value("metrics-addr"),
    Spec {
        long: "write-out",
        short: Some('w'),
        arity: Arity::Value,
    },
    flag("hex"),
    Spec {
        long: "help",
        short: Some('h'),
        arity: Arity::Bool,
    },
    // etcdctl's connection flags: accepted, ignored.
    value("endpoints"),
    value("dial-timeout"),
    value("command-timeout"),
    value("keepalive-time"),
    value("keepalive-timeout"),
    value("user"),
    value("password"),
    value("cacert"),
    value("cert"),
    value("key"),
    Spec {
        long: "discovery-srv",
        short: Some('d'),
        arity: Arity::Value,
    },
    value("discovery-srv-name"),
    flag("debug"),
    flag("insecure-transport"),
    flag("insecure-skip-tls-verify"),
    flag("insecure-discovery"),
];

const PUT_FLAGS: &[Spec] = &[
    value("lease"),
    flag("prev-kv"),
    flag("ignore-value"),
    flag("ignore-lease"),
];
const GET_FLAGS: &[Spec] = &[
    value("consistency"),
    value("order"),
    value("sort-by"),
    value("limit"),
    value("rev"),
    flag("prefix"),
    flag("from-key"),
    flag("keys-only"),
    flag("count-only"),
    flag("print-value-only"),
];
const DEL_FLAGS: &[Spec] = &[flag("prefix"), flag("prev-kv"), flag("from-key")];
const TXN_FLAGS: &[Spec] = &[Spec {
    long: "interactive",
    short: Some('i'),
    arity: Arity::Bool,
}];
const COMPACTION_FLAGS: &[Spec] = &[flag("physical")];
const WATCH_FLAGS: &[Spec] = &[
    Spec {
        long: "interactive",
        short: Some('i'),
        arity: Arity::Bool,
    },
    flag("prefix"),
    value("rev"),
    flag("prev-kv"),
];
const TTL_FLAGS: &[Spec] = &[flag("keys")];
const KEEP_ALIVE_FLAGS: &[Spec] = &[flag("once")];
const BENCH_FLAGS: &[Spec] = &[
    value("clients"),
    value("ops"),
    value("value-size"),
    value("keys"),
];

/// Parsed flags and positional arguments.
#[derive(Default)]
struct Parsed {
    /// (flag, value) in order; a bool flag given without a value has "true".
    values: Vec<(&'static str, String)>,
    pos: Vec<Vec<u8>>,
    /// A `--` was given.
    dashdash: bool,
}

impl Parsed {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, name: &str) -> bool {
        self.get(name)
            .and_then(|v| parse_go_bool(v).ok())
            .unwrap_or(false)
    }

    fn str_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// An int64 flag (pflag parses with base 0: `0x10`, `010`, `0b1` work).
    fn i64(&self, name: &str, default: i64) -> CliResult<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_go_int(v, 0).map_err(|e| {
                err(
                    EXIT_ERROR,
                    format!(
                        "invalid argument {} for \"--{name}\" flag: {e}",
                        go_quote(v)
                    ),
                )
            }),
        }
    }
}

fn find_spec<'a>(specs: &[&'a [Spec]], pred: impl Fn(&Spec) -> bool) -> Option<&'a Spec> {
    specs.iter().flat_map(|s| s.iter()).find(|s| pred(s))
}

/// Parses `args` with the flags of `specs` (pflag's rules; errors are cobra's, exit 1).
fn parse_flags(args: &[Vec<u8>], specs: &[&[Spec]]) -> CliResult<Parsed> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if p.dashdash {
            p.pos.push(a.clone());
            continue;
        }
        if a.as_slice() == b"--" {
            p.dashdash = true;
            continue;
        }
        if let Some(rest) = a.strip_prefix(b"--") {
            let rest = String::from_utf8_lossy(rest).into_owned();
            let (name, inline) = match rest.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (rest, None),
            };
            let spec = find_spec(specs, |s| s.long == name)
                .ok_or_else(|| err(EXIT_ERROR, format!("unknown flag: --{name}")))?;
            let v = match (spec.arity, inline) {
                (Arity::Bool, None) => "true".to_owned(),
                (Arity::Bool, Some(v)) => {
                    check_bool_flag(&format!("--{name}"), &v)?;
                    v
                }
                (Arity::Value, Some(v)) => v,
                (Arity::Value, None) => {
                    let Some(v) = args.get(i) else {
                        return Err(err(EXIT_ERROR, format!("flag needs an argument: --{name}")));
                    };
                    i += 1;
                    String::from_utf8_lossy(v).into_owned()
                }
            };
            p.values.push((spec.long, v));
            continue;
        }
        if a.len() > 1 && a[0] == b'-' {
            let shorts = String::from_utf8_lossy(&a[1..]).into_owned();
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                let spec = find_spec(specs, |s| s.short == Some(c)).ok_or_else(|| {
                    err(
                        EXIT_ERROR,
                        format!("unknown shorthand flag: '{c}' in -{shorts}"),
                    )
                })?;
                let rest: String = chars[j + 1..].iter().collect();
                match spec.arity {
                    Arity::Bool => {
                        if let Some(v) = rest.strip_prefix('=') {
                            check_bool_flag(&format!("-{c}"), v)?;
                            p.values.push((spec.long, v.to_owned()));
                            break;
                        }
                        p.values.push((spec.long, "true".to_owned()));
                        j += 1;
                    }
                    Arity::Value => {
                        let v = if !rest.is_empty() {
                            rest.strip_prefix('=').unwrap_or(&rest).to_owned()
                        } else if let Some(v) = args.get(i) {
                            i += 1;
                            String::from_utf8_lossy(v).into_owned()
                        } else {
                            return Err(err(
                                EXIT_ERROR,
                                format!("flag needs an argument: '{c}' in -{c}"),
                            ));
                        };
                        p.values.push((spec.long, v));
                        break;
                    }
                }
            }
            continue;
        }
        p.pos.push(a.clone());
    }
    Ok(p)
}

fn check_bool_flag(flag: &str, v: &str) -> CliResult {
    parse_go_bool(v).map(|_| ()).map_err(|e| {
        err(
            EXIT_ERROR,
            format!("invalid argument {} for \"{flag}\" flag: {e}", go_quote(v)),
        )
    })
}

/// The index of the first positional argument of `args`, skipping the global flags (and the
/// values of those that take one). A flag that is not global is cobra's "unknown flag".
fn first_positional(args: &[Vec<u8>]) -> CliResult<Option<usize>> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.as_slice() == b"--" {
            return Ok((i + 1 < args.len()).then_some(i + 1));
        }
        if let Some(rest) = a.strip_prefix(b"--") {
            let rest = String::from_utf8_lossy(rest);
            let (name, inline) = match rest.split_once('=') {
                Some((n, _)) => (n.to_owned(), true),
                None => (rest.into_owned(), false),
            };
            let spec = find_spec(&[GLOBAL], |s| s.long == name)
                .ok_or_else(|| err(EXIT_ERROR, format!("unknown flag: --{name}")))?;
            i += if spec.arity == Arity::Value && !inline {
                2
            } else {
                1
            };
            continue;
        }
        if a.len() > 1 && a[0] == b'-' {
            let c = char::from(a[1]);
            let spec = find_spec(&[GLOBAL], |s| s.short == Some(c)).ok_or_else(|| {
                err(
                    EXIT_ERROR,
                    format!(
                        "unknown shorthand flag: '{c}' in -{}",
                        String::from_utf8_lossy(&a[1..])
                    ),
                )
            })?;
            i += if spec.arity == Arity::Value && a.len() == 2 {
                2
            } else {
                1
            };
            continue;
        }
        return Ok(Some(i));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Simple,
    Json,
}

/// The global settings of one invocation.
struct Ctx {
    data_dir: PathBuf,
    format: Format,
    hex: bool,
    /// Serve `/metrics` here while the command runs (`--metrics-addr`).
    metrics_addr: Option<String>,
    server: std::cell::RefCell<Option<batchkv_metrics::MetricsServer>>,
}

impl Ctx {
    fn open(&self) -> CliResult<Store> {
        let store = Store::builder(&self.data_dir)
            .metrics(self.metrics_addr.is_some())
            .open()
            .map_err(|e| {
                err(
                    EXIT_BAD_CONNECTION,
                    format!("cannot open the store at {}: {e}", self.data_dir.display()),
                )
            })?;
        if let Some(addr) = &self.metrics_addr {
            let server = store
                .serve_metrics(addr)
                .map_err(|e| err(EXIT_ERROR, e.to_string()))?;
            *self.server.borrow_mut() = Some(server);
        }
        Ok(store)
    }
}

fn dispatch(args: &[Vec<u8>], stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    let mut rest: Vec<Vec<u8>> = args.to_vec();
    let Some(ci) = first_positional(&rest)? else {
        // No command: `--help`, or nothing at all.
        out.stdout.extend_from_slice(USAGE.as_bytes());
        return Ok(());
    };
    let command = String::from_utf8_lossy(&rest.remove(ci)).into_owned();
    let mut sub = String::new();
    if command == "lease" {
        let Some(si) = first_positional(&rest)? else {
            return Err(bad_args(
                "lease needs a subcommand: grant, revoke, keep-alive, timetolive or list",
            ));
        };
        sub = String::from_utf8_lossy(&rest.remove(si)).into_owned();
    }
    let specs: &[Spec] = match (command.as_str(), sub.as_str()) {
        ("put", _) => PUT_FLAGS,
        ("get", _) => GET_FLAGS,
        ("del", _) => DEL_FLAGS,
        ("txn", _) => TXN_FLAGS,
        ("compaction", _) => COMPACTION_FLAGS,
        ("watch", _) => WATCH_FLAGS,
        ("lease", "timetolive") => TTL_FLAGS,
        ("lease", "keep-alive") => KEEP_ALIVE_FLAGS,
        ("lease", "grant" | "revoke" | "list") => &[],
        ("lease", other) => {
            return Err(err(
                EXIT_ERROR,
                format!("unknown command {} for \"batchkv lease\"", go_quote(other)),
            ));
        }
        ("bench", _) => BENCH_FLAGS,
        ("stats" | "checkpoint" | "version" | "help", _) => &[],
        (other, _) => {
            return Err(err(
                EXIT_ERROR,
                format!("unknown command {} for \"batchkv\"", go_quote(other)),
            ));
        }
    };
    let p = parse_flags(&rest, &[GLOBAL, specs])?;
    if p.bool("help") || command == "help" {
        out.stdout.extend_from_slice(USAGE.as_bytes());
        return Ok(());
    }
    let format = match p.str_or("write-out", "simple") {
        "simple" => Format::Simple,
        "json" => Format::Json,
        "fields" | "protobuf" | "table" => {
            return Err(err(
                EXIT_BAD_FEATURE,
                "batchkv writes `-w simple` and `-w json` only",
            ));
        }
        other => {
            return Err(err(
                EXIT_BAD_FEATURE,
                format!("unsupported output format {}", go_quote(other)),
            ));
        }
    };
    let ctx = Ctx {
        data_dir: PathBuf::from(p.str_or("data-dir", DEFAULT_DATA_DIR)),
        format,
        hex: p.bool("hex"),
        metrics_addr: p.get("metrics-addr").map(str::to_owned),
        server: std::cell::RefCell::new(None),
    };
    match (command.as_str(), sub.as_str()) {
        ("put", _) => cmd_put(&ctx, &p, stdin, out),
        ("get", _) => cmd_get(&ctx, &p, out),
        ("del", _) => cmd_del(&ctx, &p, out),
        ("txn", _) => cmd_txn(&ctx, &p, stdin, out),
        ("compaction", _) => cmd_compaction(&ctx, &p, out),
        ("watch", _) => cmd_watch(&ctx, &p, out),
        ("lease", "grant") => cmd_lease_grant(&ctx, &p, out),
        ("lease", "revoke") => cmd_lease_revoke(&ctx, &p, out),
        ("lease", "timetolive") => cmd_lease_ttl(&ctx, &p, out),
        ("lease", "keep-alive") => cmd_lease_keep_alive(&ctx, &p, out),
        ("lease", _) => cmd_lease_list(&ctx, out),
        ("stats", _) => cmd_stats(&ctx, out),
        ("checkpoint", _) => cmd_checkpoint(&ctx, &p, out),
        ("bench", _) => cmd_bench(&ctx, &p, out),
        _ => {
            out.line(format!(
                "batchkv version: {}\nAPI version: 3.4",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
    }
}

const USAGE: &str = "\
batchkv: etcd's key-value API on a local data dir, with etcdctl's command syntax.

USAGE:
  batchkv [--data-dir=DIR] [-w simple|json] [--hex] COMMAND [ARGS] [FLAGS]

COMMANDS:
  put KEY [VALUE] [--lease=HEX] [--prev-kv] [--ignore-value] [--ignore-lease]
  get KEY [RANGE_END] [--prefix] [--from-key] [--rev=N] [--limit=N] [--keys-only]
      [--count-only] [--print-value-only] [--order=ASCEND|DESCEND]
      [--sort-by=CREATE|KEY|MODIFY|VALUE|VERSION]
  del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]
  txn [-i]                  compares, blank line, success ops, blank line,
                            failure ops, blank line (on stdin)
  compaction REV
  lease grant TTL | revoke ID | keep-alive --once ID | timetolive ID [--keys] | list
  watch KEY [RANGE_END] [--prefix] --rev=N [--prev-kv]
                            replays the events from revision N to now, then exits
  stats                     revision, keys, leases and RocksDB figures
  checkpoint DIR            a consistent copy of the store (open it with --data-dir=DIR)
  bench [--clients=16] [--ops=10000] [--value-size=256] [--keys=OPS]
                            concurrent puts of bench/... keys; prints ops/s
  version

GLOBAL FLAGS:
  --data-dir=DIR            the store (default ./batchkv.data; created if missing)
  -w, --write-out=FORMAT    simple (default) or json, as etcdctl's
  --hex                     print keys and values as hex (simple output)
  --metrics-addr=ADDR       serve Prometheus metrics at http://ADDR/metrics while the
                            command runs (e.g. 127.0.0.1:9100 during `bench`)
";

// ---------------------------------------------------------------------------------------------
// Requests from arguments (shared by the commands and the txn ops).

fn put_op(p: &Parsed, stdin: &mut dyn Read) -> CliResult<Put> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = p.pos.first() else {
        return Err(bad_args(NEEDS));
    };
    let ignore_value = p.bool("ignore-value");
    if ignore_value && p.pos.len() > 1 {
        return Err(bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !ignore_value {
        match p.pos.get(1) {
            Some(v) => value.clone_from(v),
            None => {
                if stdin.read_to_end(&mut value).is_err() || value.is_empty() {
                    return Err(bad_args(NEEDS));
                }
            }
        }
    }
    let lease = parse_go_int(p.str_or("lease", "0"), 16)
        .map_err(|e| bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(Put {
        key: Bytes::copy_from_slice(key),
        value: value.into(),
        lease,
        prev_kv: p.bool("prev-kv"),
        ignore_value,
        ignore_lease: p.bool("ignore-lease"),
    })
}

/// etcd's key and range end for a key, an optional range end, `--prefix` and `--from-key`
/// (clientv3's `WithPrefix`, `WithFromKey`, `WithRange`).
fn key_range(pos: &[Vec<u8>], prefix: bool, from_key: bool) -> CliResult<(Bytes, Bytes)> {
    if prefix && from_key {
        return Err(bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut key = pos.first().cloned().unwrap_or_default();
    let mut end = Vec::new();
    if pos.len() > 1 {
        if prefix || from_key {
            return Err(bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is \
                 set",
            ));
        }
        end.clone_from(&pos[1]);
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            end = vec![0];
        } else {
            end = prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        end = vec![0];
    }
    Ok((key.into(), end.into()))
}

/// clientv3's `GetPrefixRangeEnd`: the first key after every key starting with `key`.
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn get_op(p: &Parsed) -> CliResult<Range> {
    if p.pos.is_empty() {
        return Err(bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    let prefix = p.bool("prefix");
    let from_key = p.bool("from-key");
    if prefix && from_key {
        return Err(bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    match p.str_or("consistency", "l") {
        "l" | "s" => {}
        other => {
            return Err(err(
                EXIT_BAD_FEATURE,
                format!("unknown consistency flag {}", go_quote(other)),
            ));
        }
    }
    let (key, range_end) = key_range(&p.pos, prefix, from_key)?;
    let limit = p.i64("limit", 0)?;
    let rev = p.i64("rev", 0)?;
    let order = p.str_or("order", "");
    let mut sort_order = match order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(err(EXIT_BAD_FEATURE, format!("bad sort order {order}"))),
    };
    let target = p.str_or("sort-by", "");
    let sort_target = match target.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(err(EXIT_BAD_FEATURE, format!("bad sort target {target}"))),
    };
    // clientv3's WithSort: the server returns keys in ascending key order anyway.
    if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
        sort_order = SortOrder::None;
    }
    let keys_only = p.bool("keys-only");
    let count_only = p.bool("count-only");
    if keys_only && count_only {
        return Err(bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    Ok(Range {
        key,
        range_end,
        limit,
        revision: rev.max(0),
        sort_order,
        sort_target,
        keys_only,
        count_only,
        ..Range::default()
    })
}

fn del_op(p: &Parsed) -> CliResult<DeleteRange> {
    if p.pos.is_empty() || p.pos.len() > 2 {
        return Err(bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    let (key, range_end) = key_range(&p.pos, p.bool("prefix"), p.bool("from-key"))?;
    Ok(DeleteRange {
        key,
        range_end,
        prev_kv: p.bool("prev-kv"),
    })
}

/// etcd's message for a store error, as etcdctl prints it (`etcdserver: ...`).
fn etcd_message(e: &StoreError) -> String {
    match e {
        StoreError::Op(op @ (OpError::Compacted { .. } | OpError::FutureRevision { .. })) => {
            format!("etcdserver: {op}")
        }
        other => other.to_string(),
    }
}

fn store_err(e: &StoreError) -> CliError {
    err(EXIT_ERROR, etcd_message(e))
}

/// Opens the store, runs `f`, closes the store (also when `f` failed).
fn with_store<T>(ctx: &Ctx, f: impl FnOnce(&Store) -> CliResult<T>) -> CliResult<T> {
    let store = ctx.open()?;
    let r = f(&store);
    let closed = store.close();
    let v = r?;
    closed.map_err(|e| err(EXIT_ERROR, format!("closing the store: {e}")))?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Commands.

fn cmd_put(ctx: &Ctx, p: &Parsed, stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    let put = put_op(p, stdin)?;
    let r = with_store(ctx, |s| s.put_with(put).map_err(|e| store_err(&e)))?;
    match ctx.format {
        Format::Simple => print_put(ctx, &r, out),
        Format::Json => out.line(put_json(&r, true).render()),
    }
    Ok(())
}

fn cmd_get(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let range = get_op(p)?;
    let r = with_store(ctx, |s| s.range(&range).map_err(|e| store_err(&e)))?;
    let value_only = p.bool("print-value-only");
    match ctx.format {
        Format::Simple => {
            if range.count_only {
                out.line(r.count.to_string());
            } else {
                print_get(ctx, &r, value_only, out);
            }
        }
        Format::Json => {
            if value_only {
                return Err(bad_args(
                    "print-value-only is only for `--write-out=simple`",
                ));
            }
            out.line(range_json(&r, true).render());
        }
    }
    Ok(())
}

fn cmd_del(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let d = del_op(p)?;
    let r = with_store(ctx, |s| s.delete_range(d).map_err(|e| store_err(&e)))?;
    match ctx.format {
        Format::Simple => print_del(ctx, &r, out),
        Format::Json => out.line(del_json(&r, true).render()),
    }
    Ok(())
}

fn cmd_compaction(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    if p.pos.len() != 1 {
        return Err(bad_args("compaction command needs 1 argument"));
    }
    let arg = String::from_utf8_lossy(&p.pos[0]).into_owned();
    let rev = parse_go_int(&arg, 10).map_err(|e| err(EXIT_ERROR, e))?;
    with_store(ctx, |s| s.compact(rev).map_err(|e| store_err(&e)))?;
    // etcdctl prints this in every output format.
    out.line(format!("compacted revision {rev}"));
    Ok(())
}

// --- txn -------------------------------------------------------------------------------------

fn cmd_txn(ctx: &Ctx, p: &Parsed, stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    if !p.pos.is_empty() {
        return Err(bad_args("txn command does not accept argument"));
    }
    let interactive = p.bool("interactive");
    let mut input = Vec::new();
    stdin
        .read_to_end(&mut input)
        .map_err(|e| err(EXIT_INVALID_INPUT, e.to_string()))?;
    let mut lines = Lines {
        data: &input,
        at: 0,
    };
    if interactive {
        out.line("compares:");
    }
    let mut compares = Vec::new();
    while let Some(line) = lines.next_section_line()? {
        compares.push(parse_compare(&line)?);
    }
    if interactive {
        out.line("success requests (get, put, del):");
    }
    let success = read_ops(&mut lines)?;
    if interactive {
        out.line("failure requests (get, put, del):");
    }
    let failure = read_ops(&mut lines)?;
    let txn = Txn {
        compares,
        success,
        failure,
    };
    let r = with_store(ctx, |s| s.txn(txn).map_err(|e| store_err(&e)))?;
    match ctx.format {
        Format::Simple => print_txn(ctx, &r, out),
        Format::Json => out.line(txn_json(&r, true).render()),
    }
    Ok(())
}

/// bufio's `ReadString('\n')` over stdin, as etcdctl's txn reads it.
struct Lines<'a> {
    data: &'a [u8],
    at: usize,
}

impl Lines<'_> {
    /// The next line of a section, trimmed; `None` at the blank line that ends the section.
    /// Input that ends without a newline is etcdctl's `EOF` error.
    fn next_section_line(&mut self) -> CliResult<Option<Vec<u8>>> {
        let rest = &self.data[self.at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(err(EXIT_INVALID_INPUT, "EOF"));
        };
        self.at += nl + 1;
        let line = rest[..nl].trim_ascii();
        Ok((!line.is_empty()).then(|| line.to_vec()))
    }
}

fn read_ops(lines: &mut Lines<'_>) -> CliResult<Vec<Op>> {
    let mut ops = Vec::new();
    while let Some(line) = lines.next_section_line()? {
        ops.push(parse_txn_op(&line)?);
    }
    Ok(ops)
}

fn parse_txn_op(line: &[u8]) -> CliResult<Op> {
    let text = String::from_utf8_lossy(line).into_owned();
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(err(
            EXIT_INVALID_INPUT,
            format!("invalid txn compare request: {text}"),
        ));
    }
    let invalid = || err(EXIT_INVALID_INPUT, format!("invalid txn request: {text}"));
    let specs: &[Spec] = match args[0].as_slice() {
        b"put" => PUT_FLAGS,
        b"get" => GET_FLAGS,
        b"del" => DEL_FLAGS,
        _ => return Err(invalid()),
    };
    let p = parse_flags(&args[1..], &[specs]).map_err(|_| invalid())?;
    Ok(match args[0].as_slice() {
        b"put" => Op::Put(put_op(&p, &mut std::io::empty())?),
        b"get" => Op::Range(get_op(&p).map_err(|e| {
            // A bad number is a flag error in etcdctl (cobra's), which the txn reports as such.
            if e.code == EXIT_ERROR { invalid() } else { e }
        })?),
        _ => Op::DeleteRange(del_op(&p)?),
    })
}

/// etcdctl's `argify`: words, "double-quoted" (Go escapes) and 'single-quoted' strings.
fn argify(line: &[u8]) -> CliResult<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            // A closed "..." is a Go string literal; an unclosed quote is skipped.
            let mut j = i + 1;
            let mut closed = None;
            while j < line.len() {
                match line[j] {
                    b'\\' => j += 2,
                    b'"' => {
                        closed = Some(j);
                        break;
                    }
                    _ => j += 1,
                }
            }
            match closed {
                Some(end) => {
                    let (s, _) = go_unquote(&line[i..=end])
                        .map_err(|e| err(EXIT_INVALID_INPUT, e.to_owned()))?;
                    args.push(s);
                    i = end + 1;
                }
                None => i += 1,
            }
            continue;
        }
        if c == b'\'' {
            match line[i + 1..].iter().position(|&b| b == b'\'') {
                Some(n) => {
                    args.push(line[i + 1..i + 1 + n].to_vec());
                    i += n + 2;
                }
                None => i += 1,
            }
            continue;
        }
        let start = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        args.push(line[start..i].to_vec());
    }
    Ok(args)
}

/// etcdctl's compare syntax: `TARGET("key") OP "value"`.
fn parse_compare(line: &[u8]) -> CliResult<Compare> {
    let text = String::from_utf8_lossy(line).into_owned();
    let invalid = |msg: String| err(EXIT_INVALID_INPUT, msg);
    let Some(lp) = line.iter().position(|&b| b == b'(') else {
        return Err(invalid(format!("malformed comparison: {text}")));
    };
    let target = String::from_utf8_lossy(&line[..lp]).into_owned();
    let rest = &line[lp + 1..];
    // Sscanf("%q) %s %q"): a quoted key, ')', an operator word, a quoted value.
    let mut key: Option<Vec<u8>> = None;
    let mut op = String::new();
    let mut val: Option<Vec<u8>> = None;
    let mut i = skip_spaces(rest, 0);
    if let Ok((k, n)) = go_unquote(&rest[i..]) {
        key = Some(k);
        i += n;
        // Go's Sscanf: a space in the format needs at least one space in the input.
        if rest.get(i) == Some(&b')') && rest.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i = skip_spaces(rest, i + 1);
            let start = i;
            while i < rest.len() && !rest[i].is_ascii_whitespace() {
                i += 1;
            }
            op = String::from_utf8_lossy(&rest[start..i]).into_owned();
            i = skip_spaces(rest, i);
            if !op.is_empty()
                && let Ok((v, _)) = go_unquote(&rest[i..])
            {
                val = Some(v);
            }
        }
    }
    let (Some(key), Some(val)) = (key.clone(), val.clone()) else {
        return Err(invalid(format!(
            "malformed comparison: {text}; got {target}({}) {op} {}",
            go_quote(&String::from_utf8_lossy(key.as_deref().unwrap_or_default())),
            go_quote(&String::from_utf8_lossy(val.as_deref().unwrap_or_default())),
        )));
    };
    let cmp_op = match op.as_str() {
        "=" => CompareOp::Equal,
        "!=" => CompareOp::NotEqual,
        ">" => CompareOp::Greater,
        "<" => CompareOp::Less,
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {text} (unknown operator {op})"
            )));
        }
    };
    let val_str = String::from_utf8_lossy(&val).into_owned();
    let bad = || invalid(format!("invalid txn compare request: {text}"));
    let target = match target.as_str() {
        "ver" | "version" => CompareTarget::Version(parse_go_int(&val_str, 10).map_err(|_| bad())?),
        "c" | "create" => {
            CompareTarget::CreateRevision(parse_go_int(&val_str, 10).map_err(|_| bad())?)
        }
        "m" | "mod" => CompareTarget::ModRevision(parse_go_int(&val_str, 10).map_err(|_| bad())?),
        "val" | "value" => CompareTarget::Value(val.into()),
        "lease" => CompareTarget::Lease(parse_go_int(&val_str, 16).map_err(|_| bad())?),
        other => {
            return Err(invalid(format!(
                "malformed comparison: {text} (unknown target {other})"
            )));
        }
    };
    Ok(Compare::new(key, cmp_op, target))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A Go string literal at the start of `s` ("..." with Go's escapes, or `...`): its bytes and
/// how many input bytes it took.
fn go_unquote(s: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    match s.first() {
        Some(b'`') => {
            let n = s[1..]
                .iter()
                .position(|&b| b == b'`')
                .ok_or("unexpected EOF")?;
            let raw: Vec<u8> = s[1..=n].iter().copied().filter(|&b| b != b'\r').collect();
            Ok((raw, n + 2))
        }
        Some(b'"') => {
            let mut outb = Vec::new();
            let mut i = 1;
            loop {
                let Some(&c) = s.get(i) else {
                    return Err("unexpected EOF");
                };
                match c {
                    b'"' => return Ok((outb, i + 1)),
                    b'\n' => return Err("invalid syntax"),
                    b'\\' => {
                        let e = *s.get(i + 1).ok_or("unexpected EOF")?;
                        i += 2;
                        let simple = match e {
                            b'a' => Some(7),
                            b'b' => Some(8),
                            b'f' => Some(12),
                            b'n' => Some(b'\n'),
                            b'r' => Some(b'\r'),
                            b't' => Some(b'\t'),
                            b'v' => Some(11),
                            b'\\' | b'"' | b'\'' => Some(e),
                            _ => None,
                        };
                        if let Some(b) = simple {
                            outb.push(b);
                            continue;
                        }
                        let digits =
                            |from: usize, n: usize, radix: u32| -> Result<u32, &'static str> {
                                let d = s.get(from..from + n).ok_or("invalid syntax")?;
                                let d = std::str::from_utf8(d).map_err(|_| "invalid syntax")?;
                                u32::from_str_radix(d, radix).map_err(|_| "invalid syntax")
                            };
                        match e {
                            b'x' => {
                                outb.push(
                                    u8::try_from(digits(i, 2, 16)?)
                                        .map_err(|_| "invalid syntax")?,
                                );
                                i += 2;
                            }
                            b'0'..=b'7' => {
                                let v = digits(i - 1, 3, 8)?;
                                outb.push(u8::try_from(v).map_err(|_| "invalid syntax")?);
                                i += 2;
                            }
                            b'u' | b'U' => {
                                let n = if e == b'u' { 4 } else { 8 };
                                let ch =
                                    char::from_u32(digits(i, n, 16)?).ok_or("invalid syntax")?;
                                let mut buf = [0u8; 4];
                                outb.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                                i += n;
                            }
                            _ => return Err("invalid syntax"),
                        }
                    }
                    _ => {
                        outb.push(c);
                        i += 1;
                    }
                }
            }
        }
        _ => Err("expected quoted string"),
    }
}

// --- leases ----------------------------------------------------------------------------------

fn lease_arg(p: &Parsed, needs: &str) -> CliResult<i64> {
    if p.pos.len() != 1 {
        return Err(bad_args(needs));
    }
    let arg = String::from_utf8_lossy(&p.pos[0]).into_owned();
    parse_go_int(&arg, 16)
        .map_err(|e| bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

fn cmd_lease_grant(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    if p.pos.len() != 1 {
        return Err(bad_args("lease grant command needs TTL argument"));
    }
    let arg = String::from_utf8_lossy(&p.pos[0]).into_owned();
    let ttl = parse_go_int(&arg, 10).map_err(|e| bad_args(format!("bad TTL ({e})")))?;
    let r = with_store(ctx, |s| {
        s.lease_grant(0, ttl).map_err(|e| {
            err(
                EXIT_ERROR,
                format!("failed to grant lease ({})", etcd_message(&e)),
            )
        })
    })?;
    match ctx.format {
        Format::Simple => out.line(format!(
            "lease {} granted with TTL({}s)",
            go_hex16(r.id),
            r.ttl
        )),
        Format::Json => out.line(
            header(r.revision)
                .i("ID", r.id)
                .i("TTL", r.ttl)
                .s("Error", "")
                .render(),
        ),
    }
    Ok(())
}

fn cmd_lease_revoke(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let id = lease_arg(p, "lease revoke command needs 1 argument")?;
    let r = with_store(ctx, |s| {
        s.lease_revoke(id).map_err(|e| {
            err(
                EXIT_ERROR,
                format!("failed to revoke lease ({})", etcd_message(&e)),
            )
        })
    })?;
    match ctx.format {
        Format::Simple => out.line(format!("lease {} revoked", go_hex16(id))),
        Format::Json => out.line(O::new().o("header", header(r.revision)).render()),
    }
    Ok(())
}

fn cmd_lease_ttl(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let id = lease_arg(p, "lease timetolive command needs lease ID as argument")?;
    let keys = p.bool("keys");
    let (t, rev) = with_store(ctx, |s| {
        Ok((s.lease_time_to_live(id, keys), s.current_revision()))
    })?;
    match ctx.format {
        Format::Simple => {
            if t.granted_ttl == 0 && t.ttl == -1 {
                out.line(format!("lease {} already expired", go_hex16(id)));
            } else {
                let mut line = format!(
                    "lease {} granted with TTL({}s), remaining({}s)",
                    go_hex16(id),
                    t.granted_ttl,
                    t.ttl
                )
                .into_bytes();
                if keys {
                    line.extend_from_slice(b", attached keys([");
                    for (i, k) in t.keys.iter().enumerate() {
                        if i > 0 {
                            line.push(b' ');
                        }
                        line.extend_from_slice(k);
                    }
                    line.extend_from_slice(b"])");
                }
                out.line(line);
            }
        }
        Format::Json => {
            let keys = if t.keys.is_empty() {
                J::Null
            } else {
                J::Arr(t.keys.iter().map(|k| J::S(b64(k))).collect())
            };
            out.line(
                header(rev)
                    .i("id", id)
                    .i("ttl", t.ttl)
                    .i("granted-ttl", t.granted_ttl)
                    .f("keys", keys)
                    .render(),
            );
        }
    }
    Ok(())
}

fn cmd_lease_keep_alive(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let id = lease_arg(p, "lease keep-alive command needs lease ID as argument")?;
    if !p.bool("once") {
        return Err(err(
            EXIT_BAD_FEATURE,
            "batchkv supports `lease keep-alive --once` only (each command opens the data dir \
             and closes it when done)",
        ));
    }
    let (ttl, rev) = with_store(ctx, |s| {
        let ttl = s
            .lease_keep_alive(id)
            .map_err(|e| err(EXIT_BAD_CONNECTION, etcd_message(&e)))?;
        Ok((ttl, s.current_revision()))
    })?;
    match ctx.format {
        Format::Simple => out.line(format!("lease {} keepalived with TTL({ttl})", go_hex16(id))),
        Format::Json => out.line(header(rev).i("ID", id).i("TTL", ttl).render()),
    }
    Ok(())
}

fn cmd_lease_list(ctx: &Ctx, out: &mut Out) -> CliResult {
    let (ids, rev) = with_store(ctx, |s| Ok((s.leases(), s.current_revision())))?;
    match ctx.format {
        Format::Simple => {
            out.line(format!("found {} leases", ids.len()));
            for id in &ids {
                out.line(go_hex16(*id));
            }
        }
        Format::Json => out.line(
            header(rev)
                .f(
                    "leases",
                    J::Arr(ids.iter().map(|id| O::new().i("id", *id).j()).collect()),
                )
                .render(),
        ),
    }
    Ok(())
}

// --- watch -----------------------------------------------------------------------------------

fn cmd_watch(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    if p.bool("interactive") {
        return Err(err(
            EXIT_BAD_FEATURE,
            "batchkv watch has no interactive mode",
        ));
    }
    if p.dashdash {
        return Err(err(
            EXIT_BAD_FEATURE,
            "batchkv watch does not run commands (`-- COMMAND`)",
        ));
    }
    if p.pos.is_empty() || p.pos.len() > 2 {
        return Err(bad_args("bad number of arguments"));
    }
    let prefix = p.bool("prefix");
    if p.pos.len() == 2 && prefix {
        return Err(bad_args(
            "`range_end` and `--prefix` are mutually exclusive",
        ));
    }
    let (key, range_end) = key_range(&p.pos, prefix, false)?;
    let rev = p.i64("rev", 0)?;
    if rev <= 0 {
        return Err(bad_args(
            "batchkv watch needs --rev=N (N > 0): it replays the events from revision N up to \
             the current revision and exits",
        ));
    }
    let mut req = WatchRequest::range(key, range_end).from_revision(rev);
    req.prev_kv = p.bool("prev-kv");
    let (events, current, canceled) = with_store(ctx, |s| replay(s, req))?;
    if let Some(compacted) = canceled {
        if ctx.format == Format::Json {
            out.line(
                O::new()
                    .o("Header", header(0))
                    .f("Events", J::Arr(Vec::new()))
                    .i("CompactRevision", compacted)
                    .b("Canceled", true)
                    .b("Created", false)
                    .render(),
            );
        }
        out.err_line("watch was canceled (etcdserver: mvcc: required revision has been compacted)");
        return Err(err(EXIT_INTERRUPTED, "watch is canceled by the server"));
    }
    // etcd's catch-up: the events of up to 1,000 revisions per response, at the current revision.
    let mut chunks: Vec<&[WatchEvent]> = Vec::new();
    let mut start = 0;
    let mut revs = 0;
    for i in 0..events.len() {
        if i == 0 || events[i].kv.mod_revision != events[i - 1].kv.mod_revision {
            if revs == WATCH_BATCH_REVS {
                chunks.push(&events[start..i]);
                start = i;
                revs = 0;
            }
            revs += 1;
        }
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    for chunk in chunks {
        match ctx.format {
            Format::Simple => {
                for e in chunk {
                    out.line(match e.kind {
                        EventKind::Put => "PUT",
                        EventKind::Delete => "DELETE",
                    });
                    if let Some(prev) = &e.prev_kv {
                        print_kv(ctx, prev, false, out);
                    }
                    print_kv(ctx, &e.kv, false, out);
                }
            }
            Format::Json => out.line(
                O::new()
                    .o("Header", header(current))
                    .f("Events", J::Arr(chunk.iter().map(event_json).collect()))
                    .i("CompactRevision", 0)
                    .b("Canceled", false)
                    .b("Created", false)
                    .render(),
            ),
        }
    }
    Ok(())
}

/// The events from the request's revision up to the current one; `Some(compacted)` when the
/// watch was cancelled because that history is compacted.
fn replay(s: &Store, req: WatchRequest) -> CliResult<(Vec<WatchEvent>, i64, Option<i64>)> {
    let current = s.current_revision();
    let mut w = s.watch(req);
    let mut events = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        // `try_recv` catches up from storage; it answers `None` once the watcher is synced.
        let next = match w.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) if w.next_revision() > current => break,
            Ok(None) => w
                .recv_timeout(Duration::from_millis(50))
                .map_err(|e| err(EXIT_ERROR, e.to_string()))?,
            Err(e) => return Err(err(EXIT_ERROR, e.to_string())),
        };
        match next {
            Some(resp) => {
                idle_since = Instant::now();
                if resp.canceled {
                    return Ok((events, current, Some(resp.compact_revision)));
                }
                events.extend(resp.events);
            }
            None if idle_since.elapsed() > Duration::from_secs(30) => {
                return Err(err(
                    EXIT_ERROR,
                    format!(
                        "watch replay stalled at revision {} (current {current})",
                        w.next_revision()
                    ),
                ));
            }
            None => {}
        }
    }
    Ok((events, current, None))
}

// --- batchkv's own ---------------------------------------------------------------------------

fn cmd_stats(ctx: &Ctx, out: &mut Out) -> CliResult {
    let st = with_store(ctx, |s| s.stats().map_err(|e| store_err(&e)))?;
    match ctx.format {
        Format::Simple => {
            out.line(format!("data dir: {}", ctx.data_dir.display()));
            out.line(format!("revision: {}", st.revision));
            out.line(format!(
                "compacted: {}",
                st.compacted.map_or("none".to_owned(), |c| c.to_string())
            ));
            out.line(format!("applied index: {}", st.applied_index));
            out.line(format!("keys (with history): {}", st.indexed_keys));
            out.line(format!("leases: {}", st.leases));
            out.line("engine:");
            out.stdout
                .extend_from_slice(st.engine.to_string().as_bytes());
            if !out.stdout.ends_with(b"\n") {
                out.stdout.push(b'\n');
            }
        }
        Format::Json => {
            let cfs = st
                .engine
                .column_families
                .iter()
                .map(|c| {
                    O::new()
                        .s("name", &c.name)
                        .u("estimated_keys", c.estimated_keys)
                        .u("sst_bytes", c.sst_bytes)
                        .u("memtable_bytes", c.memtable_bytes)
                        .u("live_data_bytes", c.live_data_bytes)
                        .u("raw_key_bytes", c.raw_key_bytes)
                        .u("raw_value_bytes", c.raw_value_bytes)
                        .u("pending_compaction_bytes", c.pending_compaction_bytes)
                        .j()
                })
                .collect();
            let mut o = O::new()
                .o("header", header(st.revision))
                .i("revision", st.revision);
            if let Some(c) = st.compacted {
                o = o.i("compacted", c);
            }
            out.line(
                o.u("applied_index", st.applied_index)
                    .u("keys", st.indexed_keys as u64)
                    .u("leases", st.leases as u64)
                    .f(
                        "engine",
                        O::new()
                            .f("column_families", J::Arr(cfs))
                            .u("block_cache_usage", st.engine.block_cache_usage)
                            .u("block_cache_capacity", st.engine.block_cache_capacity)
                            .j(),
                    )
                    .render(),
            );
        }
    }
    Ok(())
}

fn cmd_checkpoint(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    if p.pos.len() != 1 {
        return Err(bad_args(
            "checkpoint command needs 1 argument: the directory to create",
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&p.pos[0]).into_owned());
    let rev = with_store(ctx, |s| {
        let rev = s.current_revision();
        s.checkpoint(&dir).map_err(|e| store_err(&e))?;
        Ok(rev)
    })?;
    match ctx.format {
        Format::Simple => out.line(format!(
            "checkpoint at revision {rev} written to {}",
            dir.display()
        )),
        Format::Json => out.line(
            O::new()
                .o("header", header(rev))
                .s("path", &dir.display().to_string())
                .render(),
        ),
    }
    Ok(())
}

fn cmd_bench(ctx: &Ctx, p: &Parsed, out: &mut Out) -> CliResult {
    let positive = |name: &str, default: i64| -> CliResult<usize> {
        let v = p.i64(name, default)?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad_args(format!("--{name} must be positive")))
    };
    let clients = positive("clients", 16)?;
    let ops = positive("ops", 10_000)?;
    let value_size = positive("value-size", 256)?;
    let keys = positive("keys", i64::try_from(ops).unwrap_or(i64::MAX))?;
    let value = Bytes::from(vec![b'v'; value_size]);
    let (elapsed, mut lat, rev) = with_store(ctx, |s| {
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        let results: Vec<CliResult<Vec<Duration>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    scope.spawn(|| {
                        let mut lat = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= ops {
                                return Ok(lat);
                            }
                            let key = format!("bench/{:010}", i % keys);
                            let t = Instant::now();
                            s.put(key, value.clone()).map_err(|e| store_err(&e))?;
                            lat.push(t.elapsed());
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(err(EXIT_ERROR, "a bench client panicked")))
                })
                .collect()
        });
        let elapsed = start.elapsed();
        let mut lat = Vec::with_capacity(ops);
        for r in results {
            lat.extend(r?);
        }
        Ok((elapsed, lat, s.current_revision()))
    })?;
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = ops as f64 / secs;
    let (p50, p99, max) = (pct(0.5), pct(0.99), pct(1.0));
    match ctx.format {
        Format::Simple => {
            out.line(format!(
                "{ops} puts of {value_size}-byte values over {keys} keys, {clients} clients: \
                 {secs:.3} s, {rate:.0} ops/s"
            ));
            out.line(format!(
                "latency: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms"
            ));
            out.line(format!("revision: {rev}"));
        }
        Format::Json => out.line(
            O::new()
                .o("header", header(rev))
                .u("ops", ops as u64)
                .u("clients", clients as u64)
                .u("value_size", value_size as u64)
                .u("keys", keys as u64)
                .f("seconds", J::F(secs))
                .f("ops_per_sec", J::F(rate))
                .f("p50_ms", J::F(p50))
                .f("p99_ms", J::F(p99))
                .f("max_ms", J::F(max))
                .render(),
        ),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Simple output (etcdctl's `simplePrinter`).

fn print_kv(ctx: &Ctx, kv: &KeyValue, value_only: bool, out: &mut Out) {
    if !value_only {
        out.line(bytes_out(ctx, &kv.key));
    }
    out.line(bytes_out(ctx, &kv.value));
}

fn bytes_out(ctx: &Ctx, b: &[u8]) -> Vec<u8> {
    if ctx.hex {
        b.iter()
            .flat_map(|c| format!("\\x{c:02x}").into_bytes())
            .collect()
    } else {
        b.to_vec()
    }
}

fn print_put(ctx: &Ctx, r: &PutResponse, out: &mut Out) {
    out.line("OK");
    if let Some(prev) = &r.prev_kv {
        print_kv(ctx, prev, false, out);
    }
}

fn print_get(ctx: &Ctx, r: &RangeResponse, value_only: bool, out: &mut Out) {
    for kv in &r.kvs {
        print_kv(ctx, kv, value_only, out);
    }
}

fn print_del(ctx: &Ctx, r: &DeleteRangeResponse, out: &mut Out) {
    out.line(r.deleted.to_string());
    for kv in &r.prev_kvs {
        print_kv(ctx, kv, false, out);
    }
}

fn print_txn(ctx: &Ctx, r: &TxnResponse, out: &mut Out) {
    out.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
    for resp in &r.responses {
        out.line("");
        match resp {
            OpResponse::Put(p) => print_put(ctx, p, out),
            OpResponse::Range(g) => print_get(ctx, g, false, out),
            OpResponse::DeleteRange(d) => print_del(ctx, d, out),
            OpResponse::Txn(t) => print_txn(ctx, t, out),
            other => out.line(format!("unexpected response {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON output: etcd's field names and order, zero fields left out (as Go's `omitempty`).

enum J {
    Obj(Vec<(&'static str, J)>),
    Arr(Vec<J>),
    I(i64),
    U(u64),
    F(f64),
    S(String),
    B(bool),
    Null,
}

impl J {
    fn write(&self, s: &mut String) {
        match self {
            J::Obj(fields) => {
                s.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push('"');
                    s.push_str(k);
                    s.push_str("\":");
                    v.write(s);
                }
                s.push('}');
            }
            J::Arr(items) => {
                s.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    v.write(s);
                }
                s.push(']');
            }
            J::I(v) => s.push_str(&v.to_string()),
            J::U(v) => s.push_str(&v.to_string()),
            J::F(v) => s.push_str(&serde_json::Value::from(*v).to_string()),
            J::S(v) => s.push_str(&serde_json::Value::from(v.as_str()).to_string()),
            J::B(v) => s.push_str(if *v { "true" } else { "false" }),
            J::Null => s.push_str("null"),
        }
    }
}

/// A JSON object under construction.
struct O(Vec<(&'static str, J)>);

impl O {
    fn new() -> Self {
        O(Vec::new())
    }

    fn f(mut self, k: &'static str, v: J) -> Self {
        self.0.push((k, v));
        self
    }

    fn o(self, k: &'static str, v: O) -> Self {
        self.f(k, v.j())
    }

    fn i(self, k: &'static str, v: i64) -> Self {
        self.f(k, J::I(v))
    }

    fn u(self, k: &'static str, v: u64) -> Self {
        self.f(k, J::U(v))
    }

    fn s(self, k: &'static str, v: &str) -> Self {
        self.f(k, J::S(v.to_owned()))
    }

    fn b(self, k: &'static str, v: bool) -> Self {
        self.f(k, J::B(v))
    }

    /// `k` unless `v` is 0.
    fn nz(self, k: &'static str, v: i64) -> Self {
        if v == 0 { self } else { self.i(k, v) }
    }

    /// `k` (base64) unless `v` is empty.
    fn bytes(self, k: &'static str, v: &[u8]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.f(k, J::S(b64(v)))
        }
    }

    fn j(self) -> J {
        J::Obj(self.0)
    }

    fn render(self) -> String {
        let mut s = String::new();
        self.j().write(&mut s);
        s
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// etcd's ResponseHeader (see [`CLUSTER_ID`]). clientv3's lease responses embed its fields at
/// their top level, so the lease commands start their objects with it.
fn header(revision: i64) -> O {
    let o = O::new()
        .u("cluster_id", CLUSTER_ID)
        .u("member_id", MEMBER_ID);
    o.nz("revision", revision).u("raft_term", RAFT_TERM)
}

/// A response's header: the full one at the top, only the revision inside a txn (as etcd).
fn resp_header(revision: i64, top: bool) -> O {
    if top {
        header(revision)
    } else {
        O::new().nz("revision", revision)
    }
}

fn kv_json(kv: &KeyValue) -> J {
    O::new()
        .bytes("key", &kv.key)
        .nz("create_revision", kv.create_revision)
        .nz("mod_revision", kv.mod_revision)
        .nz("version", kv.version)
        .bytes("value", &kv.value)
        .nz("lease", kv.lease)
        .j()
}

fn put_json(r: &PutResponse, top: bool) -> O {
    let o = O::new().o("header", resp_header(r.revision, top));
    match &r.prev_kv {
        Some(kv) => o.f("prev_kv", kv_json(kv)),
        None => o,
    }
}

fn range_json(r: &RangeResponse, top: bool) -> O {
    let mut o = O::new().o("header", resp_header(r.revision, top));
    if !r.kvs.is_empty() {
        o = o.f("kvs", J::Arr(r.kvs.iter().map(kv_json).collect()));
    }
    if r.more {
        o = o.b("more", true);
    }
    o.nz("count", r.count)
}

fn del_json(r: &DeleteRangeResponse, top: bool) -> O {
    let mut o = O::new()
        .o("header", resp_header(r.revision, top))
        .nz("deleted", r.deleted);
    if !r.prev_kvs.is_empty() {
        o = o.f("prev_kvs", J::Arr(r.prev_kvs.iter().map(kv_json).collect()));
    }
    o
}

fn txn_json(r: &TxnResponse, top: bool) -> O {
    let mut o = O::new().o("header", resp_header(r.revision, top));
    if r.succeeded {
        o = o.b("succeeded", true);
    }
    if !r.responses.is_empty() {
        let responses = r
            .responses
            .iter()
            .map(|resp| {
                let (name, body) = match resp {
                    OpResponse::Put(p) => ("ResponsePut", put_json(p, false)),
                    OpResponse::Range(g) => ("ResponseRange", range_json(g, false)),
                    OpResponse::DeleteRange(d) => ("ResponseDeleteRange", del_json(d, false)),
                    OpResponse::Txn(t) => ("ResponseTxn", txn_json(t, false)),
                    other => ("Unexpected", O::new().nz("revision", other.revision())),
                };
                O::new().o("Response", O::new().o(name, body)).j()
            })
            .collect();
        o = o.f("responses", J::Arr(responses));
    }
    o
}

fn event_json(e: &WatchEvent) -> J {
    let mut o = O::new();
    if e.kind == EventKind::Delete {
        o = o.i("type", 1);
    }
    o = o.f("kv", kv_json(&e.kv));
    if let Some(prev) = &e.prev_kv {
        o = o.f("prev_kv", kv_json(prev));
    }
    o.j()
}

// ---------------------------------------------------------------------------------------------
// Go's number parsing and formatting, for etcdctl's arguments and messages.

/// Go's `strconv.ParseInt(s, base, 64)` (base 0: `0x`, `0o`, `0b` and `0` prefixes); the
/// error is Go's message.
fn parse_go_int(s: &str, base: u32) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(s));
    let range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    };
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if base == 0 {
        let lower = body.to_ascii_lowercase();
        if lower.starts_with("0x") {
            (16, &body[2..])
        } else if lower.starts_with("0o") {
            (8, &body[2..])
        } else if lower.starts_with("0b") {
            (2, &body[2..])
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        }
    } else {
        (base, body)
    };
    let digits: String = if base == 0 {
        digits.replace('_', "")
    } else {
        digits.to_owned()
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    let mag = u64::from_str_radix(&digits, radix).map_err(|_| range())?;
    if neg {
        if mag > i64::MAX as u64 + 1 {
            return Err(range());
        }
        Ok((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).map_err(|_| range())
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// Go's `%q` of a string (close enough for messages).
fn go_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Go's `%016x` of an int64 (a negative one keeps its sign).
fn go_hex16(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn flags_parse_as_pflag() {
        let p = parse_flags(
            &args(&[
                "k",
                "--rev",
                "5",
                "--prefix",
                "-wjson",
                "--limit=2",
                "--",
                "-x",
            ]),
            &[GLOBAL, GET_FLAGS],
        )
        .expect("parses");
        assert_eq!(p.pos, args(&["k", "-x"]));
        assert_eq!(p.get("rev"), Some("5"));
        assert_eq!(p.get("write-out"), Some("json"));
        assert_eq!(p.get("limit"), Some("2"));
        assert!(p.bool("prefix"));
        let e = parse_flags(&args(&["--nope"]), &[GLOBAL])
            .err()
            .expect("unknown");
        assert_eq!(e.msg, "unknown flag: --nope");
        let e = parse_flags(&args(&["-5"]), &[GLOBAL])
            .err()
            .expect("unknown");
        assert_eq!(e.msg, "unknown shorthand flag: '5' in -5");
    }

    #[test]
    fn go_numbers() {
        assert_eq!(parse_go_int("694d", 16), Ok(0x694d));
        assert_eq!(parse_go_int("0x10", 0), Ok(16));
        assert_eq!(parse_go_int("-3", 10), Ok(-3));
        assert_eq!(
            parse_go_int("zz", 16),
            Err("strconv.ParseInt: parsing \"zz\": invalid syntax".to_owned())
        );
        assert_eq!(go_hex16(0x694d), "000000000000694d");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn txn_input() {
        let c = parse_compare(br#"value("k\x41") != "v 1""#).expect("compare");
        assert_eq!(c.key.as_ref(), b"kA");
        assert_eq!(c.op, CompareOp::NotEqual);
        assert_eq!(c.target, CompareTarget::Value(Bytes::from_static(b"v 1")));
        let c = parse_compare(br#"mod("k") > "5""#).expect("compare");
        assert_eq!(c.target, CompareTarget::ModRevision(5));
        let e = parse_compare(br#"value("a")="2""#).expect_err("malformed");
        assert_eq!(e.code, EXIT_INVALID_INPUT);
        assert_eq!(
            argify(br#"put "a b" 'c d' e"#).expect("argify"),
            args(&["put", "a b", "c d", "e"])
        );
        match parse_txn_op(b"get a --prefix --limit=1").expect("op") {
            Op::Range(r) => {
                assert_eq!(
                    (r.key.as_ref(), r.range_end.as_ref(), r.limit),
                    (&b"a"[..], &b"b"[..], 1)
                );
            }
            other => panic!("not a range: {other:?}"),
        }
    }

    #[test]
    fn json_shapes() {
        let r = RangeResponse {
            revision: 3,
            kvs: vec![KeyValue {
                key: Bytes::from_static(b"k1"),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: Bytes::from_static(b"v2"),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range_json(&r, false).render(),
            r#"{"header":{"revision":3},"kvs":[{"key":"azE=","create_revision":2,"mod_revision":3,"version":2,"value":"djI="}],"count":1}"#
        );
    }
}

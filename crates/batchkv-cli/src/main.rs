//! `batchkv`: etcdctl's commands over a local batchkv data dir.
//!
//! Each invocation opens the store at `--data-dir` (default `./batchkv.data`, created if
//! missing, `Durability::Sync`), runs one command and closes the store. The commands and their
//! flags are etcdctl 3.4's, and so are the output (`-w simple`, the default, and `-w json`), the
//! error messages (`Error: etcdserver: ...` on stderr) and the exit codes (1 for a refused
//! request or a flag error, 128 for bad arguments, 3 for bad txn input, ...). `batchkv --help`
//! lists the commands and flags; `args.rs` declares them.
//!
//! The code, by concern:
//!
//! * `args.rs`: the command table (clap's derive) and the small layer that gives it pflag's
//!   syntax and error texts where clap's differ.
//! * `commands/`: one function per command; `request.rs` builds the etcd requests from
//!   arguments (shared with txn op lines), `txn.rs` reads etcdctl's txn input, `bench.rs` is
//!   the load generator.
//! * `output.rs`: simple output and the JSON answers (`#[derive(Serialize)]` structs in etcd's
//!   field order); `golit.rs`: Go's number and string literal syntax; `error.rs`: exit codes.
//!
//! Where batchkv differs from etcdctl, on purpose (docs/ETCD-COMPAT.md has the table):
//!
//! * The response header names no real cluster: `cluster_id` is the ASCII bytes of
//!   "batchkv" read as a number, `member_id` and `raft_term` are 1 (one node, no Raft). The
//!   revisions are the store's own.
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
//!   `--dial-timeout`, ...) are accepted and ignored, so etcdctl command lines run unchanged;
//!   so are `get --consistency=l|s` (one node: both read the applied state) and
//!   `compaction --physical`.
//! * `stats`, `checkpoint DIR` and `bench` are batchkv's own, and so is `--metrics-addr`
//!   (Prometheus `/metrics` while the command runs). `bench` writes `bench/...` keys into the
//!   data dir it is given: point it at a scratch dir.
//!
//! `batchkv serve` is the one command that is no etcdctl command: it serves etcd's v3 gRPC API
//! on the data dir (crates/batchkv-server), with etcd's flags; `serve.rs` parses them.
//!
//! Logs: library `tracing` events go to stderr, filtered by `RUST_LOG` (default `warn`).

mod args;
mod bench;
mod commands;
mod error;
mod golit;
mod output;
mod request;
mod serve;
mod txn;

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::args::Parsed;
use crate::error::exit;
use crate::output::Out;

fn main() {
    // `batchkv serve` is a server, not an etcdctl command: its own flags (etcd's), logging and
    // runtime (serve.rs).
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "serve") {
        std::process::exit(serve::main(args.collect()));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .init();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(
        std::env::args_os().skip(1).collect(),
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    std::process::exit(code);
}

/// Runs the command line `args` (without the program name) against the given streams; returns
/// the exit code (etcdctl's: 0, 1 for a refused request, 128 for bad arguments, ...).
fn run(
    args: Vec<OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let mut out = Out::default();
    let result = match args::parse(args) {
        Ok(Parsed::Help(text)) => {
            out.stdout.extend_from_slice(text.as_bytes());
            Ok(())
        }
        Ok(Parsed::Run(cli)) => commands::run(*cli, stdin, &mut out),
        Err(e) => Err(e),
    };
    let mut code = 0;
    if stdout
        .write_all(&out.stdout)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        code = exit::IO;
    }
    // A failure to write to stderr has nowhere to be reported.
    let _ = stderr.write_all(&out.stderr);
    if let Err(e) = result {
        let _ = writeln!(stderr, "Error: {}", e.msg);
        code = e.code;
    }
    let _ = stderr.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `args` on a fresh data dir; returns (exit code, stdout, stderr).
    fn batchkv(dir: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut argv = vec![OsString::from(format!("--data-dir={}", dir.display()))];
        argv.extend(args.iter().map(OsString::from));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(argv, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn commands_run_in_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        assert_eq!(batchkv(&data, &["put", "k", "v"], "").1, "OK\n");
        assert_eq!(batchkv(&data, &["put", "k2"], "from stdin").1, "OK\n");
        let (code, out, _) = batchkv(&data, &["get", "k", "--prefix", "-w", "json"], "");
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["count"], 2);
        assert_eq!(v["kvs"][1]["value"], "ZnJvbSBzdGRpbg==");
        let (_, out, _) = batchkv(&data, &["txn", "-i"], "\nput t 1\n\n\n");
        assert!(out.starts_with("compares:\nsuccess requests"), "{out}");
        assert!(out.ends_with("SUCCESS\n\nOK\n"), "{out}");
        assert_eq!(
            batchkv(&data, &["lease", "grant", "60"], "").1,
            "lease 0000000000000001 granted with TTL(60s)\n"
        );
        assert_eq!(
            batchkv(&data, &["lease"], ""),
            (
                exit::BAD_ARGS,
                String::new(),
                "Error: lease needs a subcommand: grant, revoke, keep-alive, timetolive or list\n"
                    .to_owned()
            )
        );
        let (code, _, err) = batchkv(&data, &["lease", "renew", "1"], "");
        assert_eq!(
            (code, err.as_str()),
            (
                exit::ERROR,
                "Error: unknown command \"renew\" for \"batchkv lease\"\n"
            )
        );
        let (code, _, err) = batchkv(&data, &["-w", "table", "get", "k"], "");
        assert_eq!(
            (code, err.as_str()),
            (
                exit::BAD_FEATURE,
                "Error: batchkv writes `-w simple` and `-w json` only\n"
            )
        );
        let (code, _, err) = batchkv(&data, &["frob"], "");
        assert_eq!(
            (code, err.as_str()),
            (
                exit::ERROR,
                "Error: unknown command \"frob\" for \"batchkv\"\n"
            )
        );
        for args in [
            &["watch", "k", "--rev=1", "--", "echo"][..],
            &["watch", "k", "--rev=1", "--"],
        ] {
            let (code, _, err) = batchkv(&data, args, "");
            assert_eq!(code, exit::BAD_FEATURE, "{args:?}: {err}");
        }
        // There `--` is the value of -w (and no output format).
        let (code, _, err) = batchkv(&data, &["watch", "k", "--rev=1", "-w", "--"], "");
        assert_eq!(
            (code, err.as_str()),
            (
                exit::BAD_FEATURE,
                "Error: unsupported output format \"--\"\n"
            )
        );
        let (code, out, _) = batchkv(&data, &["watch", "k", "--rev=1"], "");
        assert_eq!((code, out.as_str()), (0, "PUT\nk\nv\n"));
        let (code, out, _) = batchkv(&data, &["version"], "");
        assert_eq!(code, 0);
        assert!(out.starts_with("batchkv version: "), "{out}");
    }
}

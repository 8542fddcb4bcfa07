//! A real etcd 3.4 for differential tests: starting and stopping a loopback server, running
//! `etcdctl -w json` against it, and bringing etcd's and batchkv-mvcc's answers into one
//! comparable shape ([`Resp`]).

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use batchkv_mvcc::{KeyValue, MvccError, OpError, OpResponse};
use serde_json::Value;

/// What a machine without etcd is told.
pub const INSTALL_HINT: &str = "etcd-server and etcd-client are required: `cargo xtask doctor` \
     installs them (apt-get install -y etcd-server etcd-client)";

/// How long etcd gets to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails (never skips) when `etcd` or `etcdctl` is missing.
fn require(binary: &str, version_arg: &str) {
    match Command::new(binary)
        .arg(version_arg)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{binary} {version_arg}` failed ({}): {}\n{INSTALL_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{binary}` is not on PATH. {INSTALL_HINT}")
        }
        Err(e) => panic!("cannot run `{binary}`: {e}. {INSTALL_HINT}"),
    }
}

/// Three distinct free loopback ports (bound together, so they differ, then released).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    let port = |i: usize| {
        listeners[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    };
    [port(0), port(1), port(2)]
}

/// A single-member etcd on loopback with its own data dir; killed on drop (also on panic).
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    endpoint: String,
    log: PathBuf,
    // Last: removed after the process is gone.
    _dir: tempfile::TempDir,
}

/// What one etcdctl call printed.
#[derive(Debug)]
pub struct CtlOutput {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output (the JSON answer).
    pub stdout: String,
    /// Standard error (`Error: ...` and a JSON warn log line on failure).
    pub stderr: String,
}

impl Etcd {
    /// Starts etcd and waits until `etcdctl endpoint health` says it is healthy.
    pub fn start() -> Etcd {
        require("etcd", "--version");
        require("etcdctl", "version");
        let mut last_failure = String::new();
        // A port picked here can be taken by someone else before etcd binds it: retry then.
        for _ in 0..3 {
            match Etcd::try_start() {
                Ok(etcd) => return etcd,
                Err(e) => last_failure = e,
            }
        }
        panic!("etcd did not start: {last_failure}");
    }

    fn try_start() -> Result<Etcd, String> {
        let dir = tempfile::tempdir().expect("a temp dir for etcd");
        let [client, peer, metrics] = free_ports();
        let log = dir.path().join("etcd.log");
        let out = File::create(&log).expect("create the etcd log file");
        let err = out.try_clone().expect("clone the etcd log file handle");
        let data = dir.path().join("data");
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--name=t1")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t1={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}. {INSTALL_HINT}"));
        let mut etcd = Etcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            log,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = etcd.child.try_wait().expect("poll the etcd process") {
                return Err(format!(
                    "etcd exited with {status} before it became healthy; its log ({}):\n{}",
                    etcd.log.display(),
                    etcd.log_text()
                ));
            }
            let health = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", etcd.endpoint))
                .args([
                    "--dial-timeout=1s",
                    "--command-timeout=1s",
                    "endpoint",
                    "health",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run etcdctl endpoint health");
            if health.status.success() {
                return Ok(etcd);
            }
            if started.elapsed() > HEALTH_TIMEOUT {
                panic!(
                    "etcd at {} was not healthy after {HEALTH_TIMEOUT:?} (last: {}); its log ({}):\n{}",
                    etcd.endpoint,
                    String::from_utf8_lossy(&health.stderr).trim(),
                    etcd.log.display(),
                    etcd.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `etcdctl` aimed at this server (ETCDCTL_API=3, `-w json`), arguments still to add: for
    /// long-running commands such as `watch`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(["-w", "json"]);
        cmd
    }

    /// Runs `etcdctl -w json <args>` (ETCDCTL_API=3), feeding `stdin` if given.
    pub fn ctl(&self, args: &[String], stdin: Option<&[u8]>) -> CtlOutput {
        let mut cmd = self.command();
        cmd.arg("--command-timeout=30s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run etcdctl");
        let output = std::thread::scope(|s| {
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // etcdctl may exit before reading everything; a broken pipe is then expected.
                s.spawn(move || {
                    let _ = pipe.write_all(data);
                });
            }
            child.wait_with_output().expect("wait for etcdctl")
        });
        CtlOutput {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key-value as both sides return it.
#[derive(Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create: i64,
    pub modified: i64,
    pub version: i64,
    pub lease: i64,
}

/// Bytes for messages: long values are shortened to their length.
pub fn show_bytes(b: &[u8]) -> String {
    if b.len() > 24 && b.iter().all(|&c| c == b'x') {
        format!("x{{{}}}", b.len())
    } else if b.len() > 48 {
        format!("{}…(len {})", String::from_utf8_lossy(&b[..32]), b.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(b))
    }
}

impl fmt::Debug for Kv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} c{} m{} v{}",
            show_bytes(&self.key),
            show_bytes(&self.value),
            self.create,
            self.modified,
            self.version
        )?;
        if self.lease != 0 {
            write!(f, " lease {}", self.lease)?;
        }
        Ok(())
    }
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Self {
        Kv {
            key: kv.key.to_vec(),
            value: kv.value.to_vec(),
            create: kv.create_revision,
            modified: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// One answer, reduced to what both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// Refused: the error kind (see [`etcd_error_kind`]).
    Err(String),
    Put {
        rev: i64,
        prev_kv: Option<Kv>,
    },
    Del {
        rev: i64,
        deleted: i64,
        prev_kvs: Vec<Kv>,
    },
    Range {
        rev: i64,
        kvs: Vec<Kv>,
        more: bool,
        count: i64,
    },
    Txn {
        rev: i64,
        succeeded: bool,
        responses: Vec<Resp>,
    },
    /// etcdctl prints only "compacted revision N", so a compaction's header is not compared.
    Compact,
    LeaseGrant {
        rev: i64,
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        rev: i64,
    },
}

/// An answer and, for a refusal, its message (checked separately: batchkv's Display must be
/// the end of etcd's message).
#[derive(Clone, Debug)]
pub struct Answer {
    pub resp: Resp,
    pub message: Option<String>,
}

/// Which response shape etcdctl's JSON has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Put,
    Del,
    Range,
    Txn,
    Compact,
}

/// The error kind of etcd's message.
pub fn etcd_error_kind(message: &str) -> String {
    const KINDS: [(&str, &str); 10] = [
        ("required revision has been compacted", "compacted"),
        ("required revision is a future revision", "future-revision"),
        ("key is not provided", "empty-key"),
        ("too many operations in txn request", "too-many-ops"),
        ("request is too large", "request-too-large"),
        ("duplicate key given in txn request", "duplicate-key"),
        ("requested lease not found", "lease-not-found"),
        ("key not found", "key-not-found"),
        ("value is provided", "value-provided"),
        ("lease is provided", "lease-provided"),
    ];
    KINDS
        .iter()
        .find(|(text, _)| message.contains(text))
        .map_or_else(
            || format!("other: {message}"),
            |(_, kind)| (*kind).to_string(),
        )
}

/// batchkv's error kind, by variant (not by message).
pub fn our_error_kind(e: &OpError) -> String {
    match e {
        OpError::Compacted { .. } => "compacted".into(),
        OpError::FutureRevision { .. } => "future-revision".into(),
        OpError::EmptyKey => "empty-key".into(),
        OpError::TooManyOps { .. } => "too-many-ops".into(),
        OpError::RequestTooLarge { .. } => "request-too-large".into(),
        OpError::DuplicateKey => "duplicate-key".into(),
        OpError::LeaseNotFound { .. } => "lease-not-found".into(),
        OpError::KeyNotFound => "key-not-found".into(),
        OpError::ValueProvided => "value-provided".into(),
        OpError::LeaseProvided => "lease-provided".into(),
        other => format!("other: {other}"),
    }
}

/// batchkv's answer to an applied op.
pub fn ours(result: &Result<OpResponse, OpError>) -> Answer {
    match result {
        Ok(r) => Answer {
            resp: our_resp(r),
            message: None,
        },
        Err(e) => Answer {
            resp: Resp::Err(our_error_kind(e)),
            message: Some(e.to_string()),
        },
    }
}

/// batchkv's answer to a read through [`batchkv_mvcc::Mvcc::range`].
pub fn ours_read(result: Result<batchkv_mvcc::RangeResponse, MvccError>) -> Answer {
    match result {
        Ok(r) => ours(&Ok(OpResponse::Range(r))),
        Err(MvccError::Op(e)) => ours(&Err(e)),
        Err(e) => Answer {
            resp: Resp::Err(format!("store error: {e}")),
            message: Some(e.to_string()),
        },
    }
}

fn our_resp(r: &OpResponse) -> Resp {
    match r {
        OpResponse::Put(p) => Resp::Put {
            rev: p.revision,
            prev_kv: p.prev_kv.as_ref().map(Kv::from),
        },
        OpResponse::DeleteRange(d) => Resp::Del {
            rev: d.revision,
            deleted: d.deleted,
            prev_kvs: d.prev_kvs.iter().map(Kv::from).collect(),
        },
        OpResponse::Range(g) => Resp::Range {
            rev: g.revision,
            kvs: g.kvs.iter().map(Kv::from).collect(),
            more: g.more,
            count: g.count,
        },
        OpResponse::Txn(t) => Resp::Txn {
            rev: t.revision,
            succeeded: t.succeeded,
            responses: t.responses.iter().map(our_resp).collect(),
        },
        OpResponse::Compact(_) => Resp::Compact,
        OpResponse::LeaseGrant(g) => Resp::LeaseGrant {
            rev: g.revision,
            id: g.id,
            ttl: g.ttl,
        },
        OpResponse::LeaseRevoke(r) => Resp::LeaseRevoke { rev: r.revision },
    }
}

/// etcd's answer, from what etcdctl printed.
pub fn etcds(out: &CtlOutput, shape: Shape) -> Answer {
    if !out.ok {
        let message = out
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Error: "))
            .map_or_else(
                || {
                    format!(
                        "etcdctl failed without an Error line: {}",
                        out.stderr.trim()
                    )
                },
                str::to_string,
            );
        return Answer {
            resp: Resp::Err(etcd_error_kind(&message)),
            message: Some(message),
        };
    }
    let unparsable = |why: &str| Answer {
        resp: Resp::Err(format!(
            "other: unparsable etcdctl output ({why}): {}",
            out.stdout.trim()
        )),
        message: None,
    };
    if shape == Shape::Compact {
        // `-w json` does not apply to compaction: it prints "compacted revision N".
        return if out.stdout.trim().starts_with("compacted revision ") {
            Answer {
                resp: Resp::Compact,
                message: None,
            }
        } else {
            unparsable("expected \"compacted revision N\"")
        };
    }
    let json: Value = match serde_json::from_str(out.stdout.trim()) {
        Ok(v) => v,
        Err(e) => return unparsable(&e.to_string()),
    };
    match parse(&json, shape) {
        Some(resp) => Answer {
            resp,
            message: None,
        },
        None => unparsable("unexpected shape"),
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    match v.get(field) {
        None => Some(Vec::new()),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_str()?)
            .ok(),
    }
}

/// A key-value of etcd's JSON (base64 key and value, zero fields omitted).
pub fn kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        key: b64(v, "key")?,
        value: b64(v, "value")?,
        create: int(v, "create_revision"),
        modified: int(v, "mod_revision"),
        version: int(v, "version"),
        lease: int(v, "lease"),
    })
}

fn kvs(v: &Value, field: &str) -> Option<Vec<Kv>> {
    match v.get(field) {
        None => Some(Vec::new()),
        Some(list) => list.as_array()?.iter().map(kv).collect(),
    }
}

/// One response of etcd's JSON (`-w json` omits zero-valued fields: deleted 0, count 0,
/// more false, succeeded false, empty lists, empty values, lease 0).
fn parse(v: &Value, shape: Shape) -> Option<Resp> {
    // A nested txn's header carries no revision; everything else has one.
    let rev = int(v.get("header")?, "revision");
    Some(match shape {
        Shape::Put => Resp::Put {
            rev,
            prev_kv: match v.get("prev_kv") {
                None => None,
                Some(p) => Some(kv(p)?),
            },
        },
        Shape::Del => Resp::Del {
            rev,
            deleted: int(v, "deleted"),
            prev_kvs: kvs(v, "prev_kvs")?,
        },
        Shape::Range => Resp::Range {
            rev,
            kvs: kvs(v, "kvs")?,
            more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
            count: int(v, "count"),
        },
        Shape::Txn => {
            let responses = match v.get("responses") {
                None => Vec::new(),
                Some(list) => list
                    .as_array()?
                    .iter()
                    .map(|r| {
                        let r = r.get("Response")?.as_object()?;
                        let (name, body) = r.iter().next()?;
                        let shape = match name.as_str() {
                            "ResponsePut" => Shape::Put,
                            "ResponseDeleteRange" => Shape::Del,
                            "ResponseRange" => Shape::Range,
                            "ResponseTxn" => Shape::Txn,
                            _ => return None,
                        };
                        parse(body, shape)
                    })
                    .collect::<Option<Vec<_>>>()?,
            };
            Resp::Txn {
                rev,
                succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
                responses,
            }
        }
        Shape::Compact => Resp::Compact,
    })
}

/// splitmix64: the seeded randomness both differential tests draw from.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// Uniform in `lo..=hi` (`hi >= lo`).
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }
}

/// A number from the environment (decimal or `0x` hex); panics with the name if it is not one.
#[allow(dead_code)]
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")))
}

/// `args` as one shell line (for the replayable scripts the tests print): plain words as they
/// are, anything else single-quoted.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=-_.:,/".contains(c))
            {
                a.clone()
            } else {
                format!("'{a}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

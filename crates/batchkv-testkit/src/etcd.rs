//! A real etcd 3.4 on loopback: one member for the differential tests, or an N-member cluster
//! (the replicated comparisons). Each member gets free loopback ports and a data dir in one
//! temp dir; the cluster gets a token of its own, so no member can join another test's cluster.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::net::free_port_list;

/// What a machine without etcd is told.
pub const INSTALL_HINT: &str = "etcd-server and etcd-client are required: `cargo xtask doctor` \
     installs them (apt-get install -y etcd-server etcd-client)";

/// How long a cluster gets to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start, for when a free port was taken by someone else before etcd bound it.
const START_ATTEMPTS: usize = 3;
/// Lines of a member's log shown when it fails.
const LOG_TAIL: usize = 40;

/// Fails (never skips) when `binary` is missing or broken.
pub(crate) fn require(binary: &str, version_arg: &str) {
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

/// One etcd process.
#[derive(Debug)]
struct Member {
    name: String,
    /// `127.0.0.1:port`, as etcdctl's `--endpoints` takes it.
    endpoint: String,
    /// `None` between [`Etcd::kill`] and [`Etcd::restart`].
    child: Option<Child>,
    /// etcd's flags, for a restart on the same data dir and ports.
    args: Vec<String>,
    log: PathBuf,
}

impl Member {
    /// Starts etcd with this member's flags, its output appended to its log.
    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open an etcd log file");
        let err = out.try_clone().expect("clone an etcd log file handle");
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}. {INSTALL_HINT}"));
        self.child = Some(child);
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| panic!("etcd member {} is not running", self.name))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// A running etcd 3.4: one member ([`Etcd::start`]) or a cluster ([`Etcd::start_cluster`]),
/// on free loopback ports, healthy when returned; every member is killed when it is dropped
/// (also when the test panics), then the data dirs are removed.
///
/// ```no_run
/// let etcd = batchkv_testkit::Etcd::start_cluster(3);
/// assert!(etcd.ctl(&["put", "k", "v"], None).ok);
/// let got = etcd.ctl_json(&["get", "k"], None);
/// assert!(got.stdout.contains("\"count\":1"));
/// ```
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    // Last: removed after the processes are gone.
    _dir: tempfile::TempDir,
}

/// What one etcdctl call printed.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// Exit status was 0.
    pub ok: bool,
    /// The exit code (-1 when a signal ended it).
    pub code: i32,
    /// Standard output (the answer; JSON with `-w json`).
    pub stdout: String,
    /// Standard error (`Error: ...` and a JSON warn log line on failure).
    pub stderr: String,
}

impl Etcd {
    /// Starts a single-member etcd and waits until `etcdctl endpoint health` says it is healthy.
    ///
    /// # Panics
    /// If `etcd` or `etcdctl` is missing (the message names `cargo xtask doctor`), or etcd does
    /// not become healthy (the message has the end of its log).
    pub fn start() -> Etcd {
        Etcd::start_cluster(1)
    }

    /// Starts a cluster of `members` etcd processes on loopback and waits until every member is
    /// healthy (which needs a leader, so the cluster is formed).
    ///
    /// # Panics
    /// As [`Etcd::start`]; also if `members` is 0.
    pub fn start_cluster(members: usize) -> Etcd {
        assert!(members > 0, "an etcd cluster needs at least one member");
        require("etcd", "--version");
        require("etcdctl", "version");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Etcd::try_start(members) {
                Ok(etcd) => return etcd,
                Err(e) => last_failure = e,
            }
        }
        panic!("etcd did not start ({START_ATTEMPTS} attempts); the last failure: {last_failure}");
    }

    fn try_start(n: usize) -> Result<Etcd, String> {
        let dir = crate::temp_dir();
        let ports = free_port_list(3 * n);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        // Member i: client port 3i, peer port 3i+1, metrics port 3i+2.
        let initial_cluster = (0..n)
            .map(|i| format!("m{i}={}", url(ports[3 * i + 1])))
            .collect::<Vec<_>>()
            .join(",");
        let token = unique_token();
        let mut etcd = Etcd {
            members: Vec::with_capacity(n),
            _dir: dir,
        };
        for i in 0..n {
            let name = format!("m{i}");
            let (client, peer, metrics) = (
                url(ports[3 * i]),
                url(ports[3 * i + 1]),
                url(ports[3 * i + 2]),
            );
            let log = etcd._dir.path().join(format!("{name}.log"));
            File::create(&log).expect("create an etcd log file");
            let data = etcd._dir.path().join(format!("{name}.data"));
            let args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_owned(),
                format!("--initial-cluster-token={token}"),
                format!("--listen-metrics-urls={metrics}"),
            ];
            let mut member = Member {
                name,
                endpoint: format!("127.0.0.1:{}", ports[3 * i]),
                child: None,
                args,
                log,
            };
            member.spawn();
            etcd.members.push(member);
        }
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// Polls every member until each answers `endpoint health`; `Err` if one exits meanwhile
    /// (a port taken: worth another attempt).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        // Members not running count as healthy: nothing to wait for.
        let mut healthy: Vec<bool> = self.members.iter().map(|m| m.child.is_none()).collect();
        loop {
            for (i, m) in self.members.iter_mut().enumerate() {
                if healthy[i] {
                    continue;
                }
                if let Some(status) = m.child().try_wait().expect("poll an etcd process") {
                    return Err(format!(
                        "etcd member {} exited with {status} before it became healthy; its log ({}):\n{}",
                        m.name,
                        m.log.display(),
                        m.log_tail()
                    ));
                }
                let health = endpoint_health(&m.endpoint);
                if health.status.success() {
                    healthy[i] = true;
                } else if started.elapsed() > HEALTH_TIMEOUT {
                    panic!(
                        "etcd member {} at {} was not healthy after {HEALTH_TIMEOUT:?} (last: {}); its log ({}):\n{}",
                        m.name,
                        m.endpoint,
                        String::from_utf8_lossy(&health.stderr).trim(),
                        m.log.display(),
                        m.log_tail()
                    );
                }
            }
            if healthy.iter().all(|&h| h) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of member `i` (for its CPU time in /proc, as the server bench reads it).
    ///
    /// # Panics
    /// If there is no member `i`, or it was killed ([`Etcd::kill`]) and not restarted.
    pub fn pid(&self, i: usize) -> u32 {
        self.members[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("etcd member {i} is not running"))
            .id()
    }

    /// Kills member `i` with SIGKILL (no chance to flush or leave the cluster) and reaps it;
    /// its data dir stays for [`Etcd::restart`]. The other members go on: a cluster of three
    /// keeps its quorum.
    ///
    /// # Panics
    /// If there is no member `i`, or it is not running.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut child = m
            .child
            .take()
            .unwrap_or_else(|| panic!("kill of etcd member {i}, which is not running"));
        // On Unix `Child::kill` is SIGKILL; it fails only for a child already reaped.
        let _ = child.kill();
        child.wait().expect("reap a killed etcd member");
    }

    /// Starts member `i` again (after [`Etcd::kill`]) on its data dir and ports, and waits
    /// until it answers `endpoint health` (it rejoined the cluster, which has a leader).
    ///
    /// # Panics
    /// If member `i` is running, or does not become healthy (the message has the end of its
    /// log).
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(
            m.child.is_none(),
            "restart of etcd member {i}, which is running: kill it first"
        );
        m.spawn();
        if let Err(e) = self.wait_healthy() {
            panic!("etcd member {i} did not come back: {e}");
        }
    }

    /// Whether member `i` is running (not killed, or restarted since).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The number of members.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The first member's client endpoint, `127.0.0.1:port` (the one endpoint of a single
    /// member).
    pub fn endpoint(&self) -> &str {
        &self.members[0].endpoint
    }

    /// Every member's client endpoint, in member order.
    pub fn endpoints(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.endpoint.as_str()).collect()
    }

    /// The end of member `i`'s log.
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn log_tail(&self, i: usize) -> String {
        self.members[i].log_tail()
    }

    /// `etcdctl` (ETCDCTL_API=3) aimed at every member, arguments still to add: for commands
    /// that run long (`watch`) or need their own options.
    pub fn etcdctl(&self) -> Command {
        etcdctl_at(&self.endpoints().join(","))
    }

    /// Runs `etcdctl --command-timeout=30s <args>` against every member, feeding `stdin` if
    /// given, and returns what it printed.
    ///
    /// # Panics
    /// If etcdctl cannot be run.
    pub fn ctl<S: AsRef<OsStr>>(&self, args: &[S], stdin: Option<&[u8]>) -> CtlOutput {
        let mut cmd = self.etcdctl();
        cmd.arg("--command-timeout=30s").args(args);
        run_ctl(cmd, stdin)
    }

    /// [`Etcd::ctl`] with `-w json`: etcd's answer as JSON on stdout.
    ///
    /// # Panics
    /// If etcdctl cannot be run.
    pub fn ctl_json<S: AsRef<OsStr>>(&self, args: &[S], stdin: Option<&[u8]>) -> CtlOutput {
        let mut cmd = self.etcdctl();
        cmd.args(["-w", "json", "--command-timeout=30s"]).args(args);
        run_ctl(cmd, stdin)
    }
}

/// `etcdctl` (ETCDCTL_API=3) aimed at `endpoints` (comma-separated `host:port`), arguments
/// still to add.
pub(crate) fn etcdctl_at(endpoints: &str) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"));
    cmd
}

/// Runs an etcdctl command (any prepared `Command`), feeding `stdin` if given from a thread of
/// its own; what it printed and its exit code.
///
/// # Panics
/// If the command cannot be run.
pub fn run_ctl(mut cmd: Command, stdin: Option<&[u8]>) -> CtlOutput {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let output = std::thread::scope(|s| {
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // etcdctl may exit before reading everything; a broken pipe is then expected.
            s.spawn(move || {
                let _ = pipe.write_all(data);
            });
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"))
    });
    CtlOutput {
        ok: output.status.success(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A cluster token no other cluster on this machine has.
fn unique_token() -> String {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "batchkv-testkit-{}-{}-{nanos}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    )
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in self.members.iter_mut().filter_map(|m| m.child.as_mut()) {
            let _ = child.kill();
        }
        for child in self.members.iter_mut().filter_map(|m| m.child.as_mut()) {
            let _ = child.wait();
        }
    }
}

/// `args` as one shell line (for the replayable scripts tests print): plain words as they are,
/// anything else single-quoted.
///
/// ```
/// let args = ["put".to_string(), "a b".to_string(), "--prev-kv".to_string()];
/// assert_eq!(batchkv_testkit::shell_words(&args), "put 'a b' --prev-kv");
/// ```
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

/// `etcdctl endpoint health` against one endpoint (1 s timeouts): what it printed; healthy when
/// it exited with success. Works for any server speaking etcd's v3 API.
///
/// # Panics
/// If etcdctl cannot be run.
pub fn endpoint_health(endpoint: &str) -> std::process::Output {
    endpoint_health_with(endpoint, &[])
}

/// [`endpoint_health`] with more etcdctl flags (TLS credentials).
pub(crate) fn endpoint_health_with(endpoint: &str, flags: &[String]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(flags)
        .args([
            "--dial-timeout=1s",
            "--command-timeout=1s",
            "endpoint",
            "health",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl endpoint health")
}

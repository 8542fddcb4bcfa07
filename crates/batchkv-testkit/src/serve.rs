//! `batchkv serve` for tests: the server on free loopback ports over a temp data dir, healthy
//! (it answers `etcdctl endpoint health`) when returned; stopped with SIGTERM (the exit status
//! is the caller's to check) or killed with SIGKILL, and restarted on the same data dir.
//!
//! The binary's path comes from the caller: an integration test of crates/batchkv-cli passes
//! `env!("CARGO_BIN_EXE_batchkv")` (this crate depends on no batchkv crate).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::etcd::{CtlOutput, endpoint_health_with, etcdctl_at, require, run_ctl};
use crate::net::free_port_list;

/// How long the server gets to become healthy after a start.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it gets to exit after SIGTERM before the test fails (and it is killed).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start, for when a free port was taken by someone else before the server bound it.
const START_ATTEMPTS: usize = 3;
/// Lines of the server's log shown when it fails.
const LOG_TAIL: usize = 60;

/// What `batchkv serve` gets besides its data dir and listen URLs.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Also serve `/metrics` on a port of its own (`--listen-metrics-urls`).
    pub metrics: bool,
    /// More flags, as given (`--quota-backend-bytes=...`, `--name=...`); kept across restarts.
    pub args: Vec<String>,
    /// Serve over TLS: the listen URL is `https://` and every etcdctl call (the health check
    /// too) gets these credentials; the server's own TLS flags (`--cert-file`, ...) go in
    /// [`ServeOptions::args`].
    pub tls: Option<ClientTls>,
}

/// What etcdctl presents to a TLS server: `--cacert`, and `--cert` with `--key` when the
/// server asks for a client certificate.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The CA that signed the server's certificate (`--cacert`).
    pub ca: PathBuf,
    /// A client certificate and its key (`--cert`, `--key`).
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// etcdctl's flags for these credentials.
    pub fn etcdctl_args(&self) -> Vec<String> {
        let mut args = vec![format!("--cacert={}", self.ca.display())];
        if let Some((cert, key)) = &self.cert_key {
            args.push(format!("--cert={}", cert.display()));
            args.push(format!("--key={}", key.display()));
        }
        args
    }
}

/// A running `batchkv serve` (or a stopped one, between [`BatchkvServer::stop`] or
/// [`BatchkvServer::kill`] and [`BatchkvServer::restart`]). Its data dir and log live in a temp
/// dir removed on drop; a server still running then is killed first (also when the test
/// panics).
///
/// ```no_run
/// let mut server = batchkv_testkit::BatchkvServer::start("target/release/batchkv");
/// assert!(server.ctl(&["put", "k", "v"], None).ok);
/// assert!(server.stop().success());
/// server.restart();
/// assert!(server.ctl(&["get", "k"], None).stdout.contains("v"));
/// ```
#[derive(Debug)]
pub struct BatchkvServer {
    binary: PathBuf,
    options: ServeOptions,
    client_port: u16,
    metrics_port: Option<u16>,
    child: Option<Child>,
    starts: usize,
    log: PathBuf,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl BatchkvServer {
    /// Starts `binary serve` over a fresh temp data dir on a free loopback port and waits until
    /// it is healthy.
    ///
    /// # Panics
    /// If `binary` or `etcdctl` is missing, or the server does not become healthy (the
    /// message has the end of its log).
    pub fn start(binary: impl AsRef<Path>) -> BatchkvServer {
        BatchkvServer::start_with(binary, ServeOptions::default())
    }

    /// [`BatchkvServer::start`] with options.
    ///
    /// # Panics
    /// As [`BatchkvServer::start`].
    pub fn start_with(binary: impl AsRef<Path>, options: ServeOptions) -> BatchkvServer {
        let mut server = BatchkvServer::new(binary.as_ref(), options);
        server.launch(false);
        server
    }

    /// A server not yet started: `binary` checked, etcdctl found, a fresh temp dir.
    fn new(binary: &Path, options: ServeOptions) -> BatchkvServer {
        assert!(
            binary.is_file(),
            "no batchkv binary at {}",
            binary.display()
        );
        require("etcdctl", "version");
        let dir = crate::temp_dir();
        let log = dir.path().join("serve.log");
        BatchkvServer {
            binary: binary.to_path_buf(),
            options,
            client_port: 0,
            metrics_port: None,
            child: None,
            starts: 0,
            log,
            dir,
        }
    }

    /// Starts `binary serve` like [`BatchkvServer::start_with`] but returns at once, without
    /// waiting for it to be healthy: for the members of a cluster, which become healthy only
    /// once a quorum runs ([`BatchkvServer::wait_ready`]).
    ///
    /// # Panics
    /// If `binary` or `etcdctl` is missing.
    pub fn spawn_with(binary: impl AsRef<Path>, options: ServeOptions) -> BatchkvServer {
        let mut server = BatchkvServer::new(binary.as_ref(), options);
        server.client_port = free_port_list(1)[0];
        server.metrics_port = server.options.metrics.then(|| free_port_list(1)[0]);
        server.spawn();
        server
    }

    /// Waits until a server started by [`BatchkvServer::spawn_with`] is healthy.
    ///
    /// # Panics
    /// If it exits or is not healthy in time (the message has the end of its log).
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.wait_healthy() {
            panic!("{e}");
        }
    }

    /// Starts the server again on the same data dir (after [`BatchkvServer::stop`] or
    /// [`BatchkvServer::kill`]), on the same port when it is still free, and waits until it is
    /// healthy: [`BatchkvServer::endpoint`] may change.
    ///
    /// # Panics
    /// If the server is running, or does not become healthy.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart of a running server: stop or kill it first"
        );
        self.launch(true);
    }

    fn launch(&mut self, same_ports: bool) {
        let mut last_failure = String::new();
        for attempt in 0..START_ATTEMPTS {
            if !(same_ports && attempt == 0) {
                let ports = free_port_list(2);
                self.client_port = ports[0];
                self.metrics_port = self.options.metrics.then_some(ports[1]);
            }
            self.spawn();
            match self.wait_healthy() {
                Ok(()) => return,
                Err(e) => last_failure = e,
            }
        }
        panic!(
            "batchkv serve did not start ({START_ATTEMPTS} attempts); the last failure: {last_failure}"
        );
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={}", self.client_url()));
        if let Some(url) = self.metrics_url() {
            cmd.arg(format!("--listen-metrics-urls={url}"));
        }
        cmd.args(&self.options.args);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server's log file");
        writeln!(out, "=== start {}: {cmd:?}", self.starts).expect("write the server's log");
        let err: File = out.try_clone().expect("clone the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    /// Polls until the server answers `endpoint health`; `Err` if it exits meanwhile (a port
    /// taken: worth another attempt).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let endpoint = self.ctl_endpoint();
        loop {
            let child = self.child.as_mut().expect("a server was spawned");
            if let Some(status) = child.try_wait().expect("poll the server") {
                self.child = None;
                return Err(format!(
                    "batchkv serve exited with {status} before it became healthy; its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            let health = endpoint_health_with(&endpoint, &self.tls_args());
            if health.status.success() {
                return Ok(());
            }
            if started.elapsed() > HEALTH_TIMEOUT {
                let tail = self.log_tail();
                self.kill();
                panic!(
                    "batchkv serve at {endpoint} was not healthy after {HEALTH_TIMEOUT:?} (last: {}); its log ({}):\n{tail}",
                    String::from_utf8_lossy(&health.stderr).trim(),
                    self.log.display(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces [`ServeOptions::args`] for the next [`BatchkvServer::restart`] (a restart with
    /// other flags: a larger quota, ...).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.options.args = args;
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status (a clean
    /// shutdown is status 0). Afterwards [`BatchkvServer::restart`] starts it again.
    ///
    /// # Panics
    /// If it is not running, or has not exited 30 s after the signal (it is then
    /// killed; the message has the end of its log).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("stop of a server that is not running");
        // Exited already (crashed): that is its status.
        if let Some(status) = child.try_wait().expect("poll the server") {
            return status;
        }
        // `kill` the program: std sends only SIGKILL, and this crate has no unsafe code.
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "batchkv serve did not exit within {STOP_TIMEOUT:?} of SIGTERM; its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no chance to flush or close anything) and reaps it.
    /// Killing a server that is not running does nothing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // On Unix `Child::kill` is SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process has exited by itself (it is then reaped: [`BatchkvServer::pid`]
    /// is `None`); false while it runs.
    pub fn try_exited(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if exited {
            self.child = None;
        }
        exited
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `127.0.0.1:port`, as etcdctl's `--endpoints` and most clients take it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:port` (`https://` with [`ServeOptions::tls`]), as given to
    /// `--listen-client-urls`.
    pub fn client_url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.endpoint())
    }

    /// etcdctl's TLS flags for [`ServeOptions::tls`] (none without it).
    fn tls_args(&self) -> Vec<String> {
        self.options
            .tls
            .as_ref()
            .map(ClientTls::etcdctl_args)
            .unwrap_or_default()
    }

    /// `http://127.0.0.1:port` of `/metrics`, when [`ServeOptions::metrics`] asked for it.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// The data dir (`--data-dir`), the same across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A temp dir of this server's, for the test's own files (snapshots, ...), removed with it.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the server's log (stdout and stderr of every start).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `etcdctl` (ETCDCTL_API=3) aimed at the server (with the credentials of
    /// [`ServeOptions::tls`]), arguments still to add.
    pub fn etcdctl(&self) -> Command {
        let mut cmd = self.etcdctl_bare();
        cmd.args(self.tls_args());
        cmd
    }

    /// `etcdctl` aimed at the server without any TLS flag (`--endpoints` only): for a test's
    /// own credentials.
    pub fn etcdctl_bare(&self) -> Command {
        etcdctl_at(&self.ctl_endpoint())
    }

    /// What etcdctl's `--endpoints` gets: `127.0.0.1:port`, with `https://` in front for TLS.
    fn ctl_endpoint(&self) -> String {
        if self.options.tls.is_some() {
            self.client_url()
        } else {
            self.endpoint()
        }
    }

    /// Runs `etcdctl --command-timeout=30s <args>` against the server, feeding `stdin` if given.
    ///
    /// # Panics
    /// If etcdctl cannot be run.
    pub fn ctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], stdin: Option<&[u8]>) -> CtlOutput {
        let mut cmd = self.etcdctl();
        cmd.arg("--command-timeout=30s").args(args);
        run_ctl(cmd, stdin)
    }

    /// [`BatchkvServer::ctl`] with `-w json`.
    ///
    /// # Panics
    /// If etcdctl cannot be run.
    pub fn ctl_json<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&[u8]>,
    ) -> CtlOutput {
        let mut cmd = self.etcdctl();
        cmd.args(["-w", "json", "--command-timeout=30s"]).args(args);
        run_ctl(cmd, stdin)
    }
}

impl Drop for BatchkvServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A test that needs a second process (a crash, a lock held elsewhere) re-runs its own binary
//! as the child: the parent spawns it with one test selected and an environment variable set;
//! that test, seeing the variable ([`child_env`]), plays the child and reports progress as
//! stdout lines; the parent reads them and kills it with SIGKILL (no clean shutdown of any kind).
//!
//! ```no_run
//! use batchkv_testkit::{ChildProcess, child_env};
//!
//! const CHILD: &str = "MY_CRATE_TEST_CHILD";
//!
//! #[test]
//! fn survives_a_crash() {
//!     if let Some(dir) = child_env(CHILD) {
//!         // The child: open `dir`, write, print "WROTE", then wait to be killed.
//!         println!("WROTE");
//!         std::thread::sleep(std::time::Duration::from_secs(120));
//!         return;
//!     }
//!     let dir = batchkv_testkit::temp_dir();
//!     let mut child = ChildProcess::test("survives_a_crash", CHILD, dir.path());
//!     child.wait_for_line("WROTE");
//!     child.kill();
//!     // The parent: reopen `dir` and check what survived.
//! }
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The value of `var` if this process is a child started with it (see [`ChildProcess::test`]).
pub fn child_env(var: &str) -> Option<OsString> {
    std::env::var_os(var)
}

/// The current executable, with no arguments: for a `harness = false` binary (a benchmark
/// harness) that checks its environment in `main`.
///
/// # Panics
/// If the current executable's path cannot be found.
pub fn this_exe() -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the current executable's path"));
    cmd.stdin(Stdio::null());
    cmd
}

/// The current test binary with only `test` selected, its output not captured, on one thread
/// (`--exact TEST --nocapture --test-threads=1`).
pub fn this_test(test: &str) -> Command {
    let mut cmd = this_exe();
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    cmd
}

/// A child process with its stdout read line by line and its stderr collected (shown when the
/// parent's expectations fail). Dropping it kills it (SIGKILL) and reaps it, so a failing parent
/// leaves no child behind.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    what: String,
    lines: Option<Lines>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    reaped: bool,
}

/// The lines a child prints on stdout (without their line end; bytes that are not UTF-8 become
/// U+FFFD), until it closes stdout: it exited or was killed. A read error ends them too.
#[derive(Debug)]
pub struct Lines(BufReader<ChildStdout>);

impl Iterator for Lines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.0.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(String::from_utf8_lossy(&line).into_owned())
            }
        }
    }
}

/// How a child ended ([`ChildProcess::wait`]).
#[derive(Debug)]
pub struct ChildExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed on stdout and nobody read yet.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ChildProcess {
    /// Re-runs the current test binary with only `test` selected (see [`this_test`]) and
    /// `var=value` in its environment.
    ///
    /// # Panics
    /// If the child cannot be started.
    pub fn test(test: &str, var: &str, value: impl AsRef<OsStr>) -> ChildProcess {
        let mut cmd = this_test(test);
        cmd.env(var, value);
        ChildProcess::spawn(cmd)
    }

    /// Starts `cmd` with stdout and stderr piped (see [`this_exe`], [`this_test`]).
    ///
    /// # Panics
    /// If the child cannot be started.
    pub fn spawn(mut cmd: Command) -> ChildProcess {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the child {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        // Read stderr as it comes, so a chatty child never blocks on a full pipe.
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        ChildProcess {
            child,
            what,
            lines: Some(Lines(BufReader::new(stdout))),
            stderr,
            stderr_reader: Some(stderr_reader),
            reaped: false,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child has printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn lines(&mut self) -> &mut Lines {
        self.lines
            .as_mut()
            .expect("the child's stdout was taken by take_lines")
    }

    /// The child's next stdout line; `None` once it closed stdout.
    ///
    /// # Panics
    /// If [`ChildProcess::take_lines`] took the stdout.
    pub fn next_line(&mut self) -> Option<String> {
        self.lines().next()
    }

    /// Reads stdout until a line containing `want`, and returns that line.
    ///
    /// # Panics
    /// If the child closes stdout first (its stderr is in the message).
    pub fn wait_for_line(&mut self, want: &str) -> String {
        while let Some(line) = self.next_line() {
            if line.contains(want) {
                return line;
            }
        }
        let status = self.child.wait().ok();
        self.reaped = status.is_some();
        self.join_stderr();
        panic!(
            "the child ended ({status:?}) before printing {want:?}: {}\nits stderr:\n{}",
            self.what,
            self.stderr()
        );
    }

    /// Takes the stdout lines, to read them on another thread while this one decides when to
    /// kill the child.
    ///
    /// # Panics
    /// If they were taken already.
    pub fn take_lines(&mut self) -> Lines {
        self.lines
            .take()
            .expect("the child's stdout was taken already")
    }

    /// Kills the child with SIGKILL (no chance to clean up or flush anything) and reaps it.
    /// Killing a child that already exited is not an error.
    ///
    /// # Panics
    /// If the child cannot be reaped.
    pub fn kill(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        // On Unix `Child::kill` is SIGKILL. It fails only for a child already reaped.
        let _ = self.child.kill();
        self.child.wait().expect("reap the killed child");
        self.reaped = true;
    }

    fn join_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }

    /// Waits for the child to exit by itself; returns its status and output.
    ///
    /// # Panics
    /// If the child cannot be waited for.
    pub fn wait(mut self) -> ChildExit {
        let mut stdout = Vec::new();
        if let Some(Lines(mut out)) = self.lines.take() {
            // To the end, so the child never blocks on a full pipe; a read error ends it early.
            let _ = out.read_to_end(&mut stdout);
        }
        let status = self.child.wait().expect("wait for the child");
        self.reaped = true;
        self.join_stderr();
        ChildExit {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

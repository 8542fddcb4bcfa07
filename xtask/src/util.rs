//! Running cargo and other commands.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// This crate's directory in the checkout being worked on: `cargo run` sets
/// `CARGO_MANIFEST_DIR` at run time; the compile-time value is only the fallback (with a target
/// dir shared between checkouts, the binary may have been built for another one).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    manifest_dir()
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// When this binary was built from another checkout (two checkouts sharing one
/// `CARGO_TARGET_DIR`, where `cargo run` may find the right build fresh but run the binary the
/// other checkout last copied into place), rebuild xtask for this checkout in a target dir of
/// its own and run that instead. Returns the exit code of the re-run, or `None` to go on.
pub fn reexec_if_built_elsewhere() -> Option<std::process::ExitCode> {
    let here = manifest_dir();
    if here == Path::new(env!("CARGO_MANIFEST_DIR"))
        || std::env::var_os("BATCHKV_XTASK_REEXEC").is_some()
    {
        return None;
    }
    let root = root();
    eprintln!(
        "xtask: this binary was built for {}, not {}; rebuilding it for this checkout",
        env!("CARGO_MANIFEST_DIR"),
        here.display()
    );
    let status = Command::new(cargo_bin())
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--bin",
            "xtask",
            "--target-dir",
        ])
        .arg(root.join("target/xtask"))
        .arg("--")
        .args(std::env::args_os().skip(1))
        .env("BATCHKV_XTASK_REEXEC", "1")
        .current_dir(&root)
        .status();
    Some(match status {
        Ok(s) if s.success() => std::process::ExitCode::SUCCESS,
        Ok(s) => std::process::ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: cannot re-run cargo: {e}");
            std::process::ExitCode::FAILURE
        }
    })
}

/// Prints a visible section header.
pub fn section(name: &str) {
    println!("\n==> {name}");
}

/// `cargo metadata` of the workspace (no dependencies).
pub fn metadata() -> Result<serde_json::Value> {
    let out = Command::new(cargo_bin())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    serde_json::from_slice(&out.stdout).context("parse cargo metadata")
}

/// Cargo's target directory, as cargo itself resolves it.
pub fn target_dir() -> Result<PathBuf> {
    let meta = metadata()?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The names of the workspace's bench targets.
pub fn bench_targets() -> Result<Vec<String>> {
    let meta = metadata()?;
    let mut out = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bench = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"));
            if let (true, Some(name)) = (is_bench, target["name"].as_str()) {
                out.push(name.to_owned());
            }
        }
    }
    Ok(out)
}

pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A cargo invocation in the workspace root.
pub struct Cargo {
    cmd: Command,
    desc: String,
}

impl Cargo {
    pub fn new(sub: &str) -> Self {
        let mut cmd = Command::new(cargo_bin());
        cmd.arg(sub).current_dir(root());
        Cargo {
            cmd,
            desc: format!("cargo {sub}"),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.desc.push(' ');
            self.desc.push_str(&a.as_ref().to_string_lossy());
            self.cmd.arg(a);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// The command, to run some other way than [`Cargo::run`].
    pub fn into_command(self) -> Command {
        self.cmd
    }

    pub fn run(mut self) -> Result<()> {
        println!("$ {}", self.desc);
        let status = self
            .cmd
            .status()
            .with_context(|| format!("start `{}`", self.desc))?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.desc);
        }
        Ok(())
    }

    /// Runs, streaming stdout through, and adds up cargo test's `test result:` lines.
    pub fn run_counting_tests(mut self) -> Result<TestTally> {
        println!("$ {}", self.desc);
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start `{}`", self.desc))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut tally = TestTally::default();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("read test output")?;
            println!("{line}");
            tally.add_line(&line);
        }
        let status = child.wait().context("wait for cargo test")?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}); {} passed, {} failed",
                self.desc,
                tally.passed,
                tally.failed
            );
        }
        if tally.passed == 0 {
            bail!("`{}` ran no test", self.desc);
        }
        Ok(tally)
    }
}

/// Totals over cargo test's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestTally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestTally {
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    /// The plain closing line CI reads: `tests: N passed, N failed`.
    pub fn closing_line(&self) -> String {
        format!("tests: {} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs a non-cargo command, failing on a non-zero exit.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<()> {
    println!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("start `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Whether `program` runs (found on PATH and answers `arg`).
pub fn has_program(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::TestTally;

    #[test]
    fn tally_adds_up_test_result_lines() {
        let mut t = TestTally::default();
        for line in [
            "running 3 tests",
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.40s",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s",
            "test something ... ok",
        ] {
            t.add_line(line);
        }
        assert_eq!(
            t,
            TestTally {
                passed: 5,
                failed: 1,
                ignored: 1
            }
        );
        assert_eq!(t.closing_line(), "tests: 5 passed, 1 failed");
    }
}

//! `cargo xtask doctor`: the prerequisites, checked and (on Debian as root) installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{has_program, run_cmd, section};

/// One prerequisite: how to tell it is there, and the Debian package that provides it.
struct Need {
    what: &'static str,
    why: &'static str,
    present: fn() -> bool,
    debian: &'static [&'static str],
    /// Without it something is left out (and said so) rather than failing: installed where
    /// doctor can install, otherwise only reported.
    optional: bool,
}

fn needs() -> Vec<Need> {
    vec![
        Need {
            what: "C++ compiler (c++)",
            why: "builds RocksDB and libFuzzer",
            present: || has_program("c++", "--version"),
            debian: &["g++"],
            optional: false,
        },
        Need {
            what: "libclang",
            why: "bindgen, for librocksdb-sys",
            present: has_libclang,
            debian: &["clang", "libclang-dev"],
            optional: false,
        },
        Need {
            what: "protoc",
            why: "the wire-format oracle tests; raft-proto's build (prost-build 0.11, for batchkv-raft)",
            present: || has_program("protoc", "--version"),
            debian: &["protobuf-compiler"],
            optional: false,
        },
        Need {
            what: "protobuf's well-known .proto files",
            why: "the etcd-client crate's build (the server tests' client) imports them",
            present: || {
                std::path::Path::new("/usr/include/google/protobuf/descriptor.proto").exists()
            },
            debian: &["libprotobuf-dev"],
            optional: false,
        },
        Need {
            what: "etcd and etcdctl",
            why: "the real etcd 3.4 the MVCC differential test compares against",
            present: || has_program("etcd", "--version") && has_program("etcdctl", "version"),
            debian: &["etcd-server", "etcd-client"],
            optional: false,
        },
        Need {
            what: "python3 with venv",
            why: "the venv of Python's etcd3 client, the third-language client test (python/smoke.py)",
            present: || {
                Command::new("python3")
                    .args(["-c", "import venv, ensurepip"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
            debian: &["python3", "python3-venv"],
            optional: false,
        },
        Need {
            what: "prometheus",
            why: "the real Prometheus the metrics test scrapes the store with",
            present: || has_program("prometheus", "--version"),
            debian: &["prometheus"],
            optional: false,
        },
        Need {
            what: "the DejaVu Sans font",
            why: "text in the bench report's plots; without it the plots are skipped",
            present: || Path::new(batchkv_benches::PLOT_FONT).is_file(),
            debian: &["fonts-dejavu-core"],
            optional: true,
        },
        Need {
            what: "RocksDB's db_bench",
            why: "the bench report's C++ RocksDB reference; without it the report says so",
            present: || {
                Command::new("db_bench")
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
            debian: &["rocksdb-tools"],
            optional: true,
        },
    ]
}

fn has_libclang() -> bool {
    if let Ok(dir) = std::env::var("LIBCLANG_PATH")
        && Path::new(&dir).is_dir()
    {
        return true;
    }
    ["/usr/lib", "/usr/lib64", "/usr/local/lib"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .any(|entry| {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // /usr/lib/llvm-NN/lib/libclang*.so or /usr/lib/<triple>/libclang*.so
            let dirs = [path.join("lib"), path.clone()];
            name.starts_with("llvm-") && has_libclang_in(&dirs[0])
                || path.is_dir() && has_libclang_in(&dirs[1])
        })
}

fn has_libclang_in(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libclang") && n.contains(".so") && !n.starts_with("libclang-cpp")
        })
    })
}

/// Toolchain components `ci` needs that no system package provides for a rustup toolchain.
fn check_components() -> Result<()> {
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(sub, _)| {
            !std::process::Command::new(crate::util::cargo_bin())
                .args([*sub, "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "the Rust toolchain lacks {}; install with:\n    rustup component add {}",
        missing.join(" and "),
        missing.join(" ")
    );
}

fn is_debian_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && Path::new("/etc/debian_version").exists() && has_program("apt-get", "--version")
}

/// Checks every prerequisite; installs the missing ones on Debian as root; then the Python
/// client's venv.
pub fn run() -> Result<()> {
    section("doctor");
    check_components()?;
    system_packages()?;
    python_client()
}

/// The venv holding Python's etcd3 client: `$HOME/.cache/batchkv/py` (the python client test,
/// crates/batchkv-cli/tests/python.rs, runs its `bin/python`).
fn python_venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: no place for the Python venv")?;
    Ok(PathBuf::from(home).join(".cache/batchkv/py"))
}

/// Python's etcd3 client, pinned by python/requirements.txt, in its own venv (never the system's
/// site-packages). Installed again when the requirements changed since the last install.
fn python_client() -> Result<()> {
    let venv = python_venv()?;
    let requirements = crate::util::root().join("python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("read {}", requirements.display()))?;
    let stamp = venv.join("batchkv-requirements.txt");
    let python = venv.join("bin/python");
    let imports = || {
        Command::new(&python)
            .args(["-c", "import etcd3, etcd3gw"])
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && imports() {
        println!(
            "doctor: Python's etcd3 and etcd3gw clients present ({})",
            venv.display()
        );
        return Ok(());
    }
    println!(
        "doctor: installing Python's etcd3 and etcd3gw clients into {}",
        venv.display()
    );
    let venv_arg = venv.to_string_lossy().into_owned();
    run_cmd("python3", &["-m", "venv", &venv_arg])?;
    let pip = venv.join("bin/pip").to_string_lossy().into_owned();
    let req_arg = requirements.to_string_lossy().into_owned();
    run_cmd(
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            &req_arg,
        ],
    )?;
    if !imports() {
        bail!(
            "`{} -c \"import etcd3, etcd3gw\"` still fails after the install",
            python.display()
        );
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("write {}", stamp.display()))?;
    println!("doctor: Python's etcd3 and etcd3gw clients installed");
    Ok(())
}

/// The system packages: checked, and installed on Debian as root.
fn system_packages() -> Result<()> {
    let missing: Vec<Need> = needs().into_iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        println!(
            "doctor: all prerequisites present (c++, libclang, protoc, libprotobuf-dev, etcd, \
             python3-venv, prometheus, rustfmt, clippy, DejaVu Sans, db_bench)"
        );
        return Ok(());
    }
    let packages: Vec<&str> = missing
        .iter()
        .flat_map(|n| n.debian.iter().copied())
        .collect();
    for n in &missing {
        println!("doctor: missing {} ({})", n.what, n.why);
    }
    let install = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_debian_root() {
        if missing.iter().all(|n| n.optional) {
            println!(
                "doctor: going on without them; install them with:\n    sudo sh -c '{install}'"
            );
            return Ok(());
        }
        bail!("prerequisites missing; install them with:\n    sudo sh -c '{install}'");
    }
    println!("doctor: installing {}", packages.join(" "));
    run_cmd("apt-get", &["update", "-qq"])?;
    // The optional packages separately: one that cannot be installed must not stop the rest.
    for optional in [false, true] {
        let group: Vec<&str> = missing
            .iter()
            .filter(|n| n.optional == optional)
            .flat_map(|n| n.debian.iter().copied())
            .collect();
        if group.is_empty() {
            continue;
        }
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&group);
        match run_cmd("apt-get", &args) {
            Err(e) if optional => println!("doctor: going on without {}: {e:#}", group.join(" ")),
            other => other?,
        }
    }
    let still: Vec<&str> = needs()
        .into_iter()
        .filter(|n| !n.optional && !(n.present)())
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after install: {}", still.join(", "));
    }
    println!("doctor: installed; all prerequisites present");
    Ok(())
}

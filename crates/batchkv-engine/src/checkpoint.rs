//! Checkpoints: consistent, openable copies of the database (hard links where possible).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rocksdb::checkpoint::Checkpoint;

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// A checkpoint found by [`list_checkpoints`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its directory.
    pub path: PathBuf,
    /// Total size of its files, bytes (hard-linked files count in full).
    pub bytes: u64,
    /// When its directory was last modified.
    pub modified: Option<SystemTime>,
}

impl Engine {
    /// Writes a checkpoint of the whole database to `dir`, which must not exist.
    ///
    /// Memtables are flushed first, so writes made without the WAL are in the checkpoint too
    /// (RocksDB's checkpoint copies SST files and the WAL; WAL-less data lives only in memtables).
    ///
    /// # Errors
    /// [`EngineError::TargetExists`], or a RocksDB error.
    pub fn create_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if dir.exists() {
            return Err(EngineError::TargetExists {
                path: dir.to_path_buf(),
            });
        }
        self.flush()?;
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(EngineError::rocks)
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// The checkpoints directly under `root` (directories holding a `CURRENT` file), by path.
///
/// # Errors
/// [`EngineError::Io`] if `root` cannot be read.
pub fn list_checkpoints(root: impl AsRef<Path>) -> Result<Vec<CheckpointInfo>> {
    let root = root.as_ref();
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).map_err(|e| EngineError::io("read", root, e))? {
        let e = e.map_err(|e| EngineError::io("read", root, e))?;
        let path = e.path();
        if path.join("CURRENT").is_file() {
            out.push(CheckpointInfo {
                bytes: dir_size(&path).map_err(|e| EngineError::io("read", &path, e))?,
                modified: e.metadata().ok().and_then(|m| m.modified().ok()),
                path,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| EngineError::io("create", to, e))?;
    for e in std::fs::read_dir(from).map_err(|e| EngineError::io("read", from, e))? {
        let e = e.map_err(|e| EngineError::io("read", from, e))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| EngineError::io("copy", &src, e))?;
        }
    }
    Ok(())
}

/// Restores the checkpoint in `checkpoint` to `target` (which must not exist), then opens the
/// copy once to verify it, and returns its column families.
///
/// The copy is a real copy, not links: the restored database must not share files with a
/// checkpoint that may be deleted or restored again.
///
/// # Errors
/// [`EngineError::NotACheckpoint`], [`EngineError::TargetExists`], an I/O error, or the error
/// of opening the copy (the copy is removed then).
pub fn restore_from_checkpoint(
    checkpoint: impl AsRef<Path>,
    target: impl AsRef<Path>,
) -> Result<Vec<String>> {
    let (checkpoint, target) = (checkpoint.as_ref(), target.as_ref());
    if !checkpoint.join("CURRENT").is_file() {
        return Err(EngineError::NotACheckpoint {
            path: checkpoint.to_path_buf(),
        });
    }
    if target.exists() {
        return Err(EngineError::TargetExists {
            path: target.to_path_buf(),
        });
    }
    // Copy into a sibling first and rename into place: a failed restore leaves no half copy
    // behind at `target` to block the next attempt.
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "restore".to_owned());
    let staging = target.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let verified = copy_dir(checkpoint, &staging).and_then(|()| {
        let config = EngineConfig {
            create_if_missing: false,
            ..EngineConfig::new(&staging)
        };
        Engine::open(config).map(|engine| engine.column_families().to_vec())
    });
    let renamed = verified.and_then(|cfs| {
        std::fs::rename(&staging, target)
            .map(|()| cfs)
            .map_err(|e| EngineError::io("rename", &staging, e))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    renamed
}

//! The log between encoding and applying: the seam where a replicated (Raft) log plugs in.

use std::fmt;

/// An ordered, durable-once-committed sequence of entries. [`Log::append`] returns the index at
/// which the entry is committed; the store applies committed entries in index order.
///
/// A Raft implementation (e.g. raft-rs) proposes the entry and returns once it is committed by a
/// quorum; the single-node [`LocalLog`] commits at once.
pub trait Log: Send + 'static {
    /// Appends `entry` (one encoded batch, `batchkv_codec`'s format) and returns its committed
    /// index, above every index returned before.
    ///
    /// # Errors
    /// The entry could not be committed; nothing of it will be applied.
    fn append(&mut self, entry: &[u8]) -> Result<u64, LogError>;
}

/// A log that could not commit an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log: {0}")]
pub struct LogError(pub String);

/// The single-node log: an entry is committed the moment it is appended. It keeps no copy: the
/// state machine's WriteBatch (with the applied index in it) is the durable record, so after a
/// restart numbering continues above the store's applied index.
#[derive(Clone, Default)]
pub struct LocalLog {
    next: u64,
}

impl LocalLog {
    /// A log whose next entry gets index `next`.
    pub fn starting_at(next: u64) -> Self {
        LocalLog { next: next.max(1) }
    }
}

impl fmt::Debug for LocalLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLog")
            .field("next", &self.next)
            .finish()
    }
}

impl Log for LocalLog {
    fn append(&mut self, _entry: &[u8]) -> Result<u64, LogError> {
        let index = self.next.max(1);
        self.next = index + 1;
        Ok(index)
    }
}

//! Size limits shared by the encoder and the decoder.

/// Bounds on one entry, checked before anything is allocated for it.
///
/// The encoder refuses to write what a decoder with the same limits would refuse to read, so
/// an entry that was accepted into the log can always be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest entry, in bytes; also the largest uncompressed size of a compressed batch.
    pub max_entry_bytes: usize,
    /// Most operations in one entry (top-level ops; a txn counts once).
    pub max_ops: usize,
}

impl Limits {
    /// 32 MiB and 65,536 operations: well above what the batcher produces by default
    /// (etcd's own request limit is 1.5 MiB), well below what would hurt a process.
    pub const DEFAULT: Limits = Limits {
        max_entry_bytes: 32 << 20,
        max_ops: 65_536,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

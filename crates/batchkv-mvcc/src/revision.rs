//! Revisions: etcd's `(main, sub)` pair, and its 17-byte key encoding.

use std::fmt;

/// A point in the store's history: `main` is the request's revision (one per changing request,
/// as etcd), `sub` orders the changes inside that request (a txn's puts and deletes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The global revision of the request.
    pub main: i64,
    /// The change's position within the request.
    pub sub: i64,
}

impl Revision {
    /// Length of [`Revision::to_bytes`].
    pub const ENCODED_LEN: usize = 17;

    /// `(main, sub)`.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The encoding used as a storage key, as etcd's: `main` big-endian, `_`, `sub` big-endian.
    /// Byte order equals revision order for non-negative revisions.
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    /// Parses [`Revision::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN || b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..].try_into().ok()?);
        Some(Revision { main, sub })
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::Revision;

    #[test]
    fn revision_bytes_sort_like_revisions() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, 7),
        ];
        for w in revs.windows(2) {
            assert!(w[0].to_bytes() < w[1].to_bytes(), "{} < {}", w[0], w[1]);
        }
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes()), Some(r));
        }
        assert_eq!(Revision::from_bytes(b"short"), None);
        let mut bad = Revision::new(1, 2).to_bytes();
        bad[8] = b'x';
        assert_eq!(Revision::from_bytes(&bad), None);
    }
}

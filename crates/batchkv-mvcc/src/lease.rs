//! Leases: the committed table (persisted in the `lease` column family, keys re-attached from
//! the `kv` records on open), the changes an entry makes to it, and deadlines, which live in
//! memory only: they decide expiry, which happens outside `apply` (see [`crate::Mvcc::expired_leases`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// etcd's minimum TTL with its default heartbeat (100 ms) and election timeout (1 s): a grant
/// below it gets it (a TTL of 1 s becomes 2 s).
pub const DEFAULT_MIN_LEASE_TTL: i64 = 2;
/// etcd's largest TTL (`MaxLeaseTTL`, 9,000,000,000 s).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) ttl: i64,
    pub(crate) keys: BTreeSet<Bytes>,
}

/// The committed leases.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    pub(crate) leases: HashMap<i64, Lease>,
    pub(crate) key_lease: HashMap<Bytes, i64>,
    pub(crate) deadlines: HashMap<i64, Instant>,
    /// The id the next grant without one gets (persisted in `meta`).
    pub(crate) next_id: i64,
}

/// What one entry does to the leases, applied to the table after the commit.
#[derive(Debug, Default)]
pub(crate) struct LeaseChanges {
    pub(crate) granted: HashMap<i64, i64>,
    pub(crate) revoked: HashSet<i64>,
    /// Key → lease after the entry (0: none), for keys the entry put or deleted.
    pub(crate) attach: HashMap<Bytes, i64>,
    pub(crate) next_id: Option<i64>,
}

impl LeaseChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.revoked.is_empty() && self.attach.is_empty()
    }
}

impl LeaseTable {
    /// Whether lease `id` exists, counting the entry's changes.
    pub(crate) fn exists(&self, c: &LeaseChanges, id: i64) -> bool {
        !c.revoked.contains(&id) && (c.granted.contains_key(&id) || self.leases.contains_key(&id))
    }

    /// The lease `key` is attached to (0: none), counting the entry's changes.
    pub(crate) fn lease_of(&self, c: &LeaseChanges, key: &[u8]) -> i64 {
        c.attach
            .get(key)
            .or_else(|| self.key_lease.get(key))
            .copied()
            .unwrap_or(0)
    }

    /// The keys attached to `id`, in key order, counting the entry's changes.
    pub(crate) fn keys_of(&self, c: &LeaseChanges, id: i64) -> Vec<Bytes> {
        let mut keys: BTreeSet<Bytes> = BTreeSet::new();
        // A lease granted again in this entry starts with no keys.
        if !c.granted.contains_key(&id)
            && let Some(l) = self.leases.get(&id)
        {
            keys.extend(
                l.keys
                    .iter()
                    .filter(|k| c.attach.get(*k).is_none_or(|&a| a == id))
                    .cloned(),
            );
        }
        keys.extend(
            c.attach
                .iter()
                .filter(|(_, a)| **a == id)
                .map(|(k, _)| k.clone()),
        );
        keys.into_iter().collect()
    }

    fn detach(&mut self, key: &Bytes) {
        if let Some(old) = self.key_lease.remove(key)
            && let Some(l) = self.leases.get_mut(&old)
        {
            l.keys.remove(key);
        }
    }

    /// Attaches `key` to `id` (0: detaches it).
    pub(crate) fn attach(&mut self, key: Bytes, id: i64) {
        self.detach(&key);
        if id != 0
            && let Some(l) = self.leases.get_mut(&id)
        {
            l.keys.insert(key.clone());
            self.key_lease.insert(key, id);
        }
    }

    /// Applies a committed entry's changes; new leases expire `ttl` after `now`.
    pub(crate) fn commit(&mut self, c: LeaseChanges, now: Instant) {
        for id in &c.revoked {
            if let Some(l) = self.leases.remove(id) {
                for k in l.keys {
                    self.key_lease.remove(&k);
                }
            }
            self.deadlines.remove(id);
        }
        for (id, ttl) in c.granted {
            if let Some(old) = self.leases.insert(
                id,
                Lease {
                    ttl,
                    keys: BTreeSet::new(),
                },
            ) {
                for k in old.keys {
                    self.key_lease.remove(&k);
                }
            }
            self.deadlines.insert(id, now + ttl_duration(ttl));
        }
        for (key, id) in c.attach {
            self.attach(key, id);
        }
        if let Some(next) = c.next_id {
            self.next_id = next;
        }
    }

    /// Leases whose deadline is at or before `now`, soonest first.
    pub(crate) fn expired(&self, now: Instant) -> Vec<i64> {
        let mut due: Vec<(Instant, i64)> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, d)| (*d, *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }
}

pub(crate) fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// A lease as [`crate::Mvcc::time_to_live`] reports it (etcd's LeaseTimeToLiveResponse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    /// The lease.
    pub id: i64,
    /// Seconds left (rounded up), or -1 if the lease does not exist (expired or revoked).
    pub ttl: i64,
    /// The TTL it was granted (0 if it does not exist).
    pub granted_ttl: i64,
    /// The attached keys, in key order, when asked for.
    pub keys: Vec<Bytes>,
}

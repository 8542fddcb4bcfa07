//! Leases: grant, attach, detach, revoke at one revision, persistence, and expiry driven from
//! outside `apply` by a small loop, as the facade will run it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchkv_codec::{DeleteRange, LeaseGrant, LeaseRevoke, Op, Put, Range};
use batchkv_engine::WriteMode;
use batchkv_mvcc::{Event, EventKind, Mvcc, MvccConfig, MvccError, OpError, OpResponse};
use batchkv_testkit::temp_dir;
use bytes::Bytes;

use crate::common::{one, open};

fn grant(store: &mut Mvcc, id: i64, ttl: i64) -> (i64, i64) {
    match one(store, LeaseGrant { id, ttl }).expect("grant") {
        OpResponse::LeaseGrant(g) => (g.id, g.ttl),
        other => panic!("{other:?}"),
    }
}

fn leased(key: &str, lease: i64) -> Op {
    Op::Put(Put {
        lease,
        ..Put::new(key.to_owned(), "v")
    })
}

fn lease_of(store: &Mvcc, key: &str) -> Option<i64> {
    store
        .range(&Range::key(key.to_owned()))
        .expect("read")
        .kvs
        .first()
        .map(|kv| kv.lease)
}

fn keys(store: &Mvcc, id: i64) -> Vec<Bytes> {
    store.time_to_live(id, true).keys
}

#[test]
fn grant_attach_detach_and_revoke_at_one_revision() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&events);
    s.set_event_listener(move |e| sink.lock().expect("lock").extend_from_slice(e));

    // A grant moves no revision; a TTL below the minimum is raised to it (etcd: 1 → 2).
    assert_eq!(grant(&mut s, 7, 1), (7, 2));
    assert_eq!(s.current_revision(), 1);
    assert_eq!(
        one(&mut s, LeaseGrant { id: 7, ttl: 5 }),
        Err(OpError::LeaseExists { id: 7 })
    );
    let (auto, ttl) = grant(&mut s, 0, 30);
    assert!(auto > 0 && auto != 7 && ttl == 30, "allocated {auto}");
    assert_eq!(s.leases(), {
        let mut v = vec![7, auto];
        v.sort();
        v
    });

    for k in ["lc", "la", "lb"] {
        one(&mut s, leased(k, 7)).expect("attach"); // revisions 2, 3, 4
    }
    one(&mut s, leased("other", auto)).expect("attach"); // 5
    assert_eq!(keys(&s, 7), ["la", "lb", "lc"]);
    assert_eq!(lease_of(&s, "la"), Some(7));
    // ignore_lease keeps the lease; a put without one detaches.
    let keep = Put {
        ignore_lease: true,
        ..Put::new("lb", "v2")
    };
    one(&mut s, keep).expect("ignore_lease"); // 6
    assert_eq!(lease_of(&s, "lb"), Some(7));
    one(&mut s, Put::new("lc", "plain")).expect("detach"); // 7
    assert_eq!(lease_of(&s, "lc"), Some(0));
    assert_eq!(keys(&s, 7), ["la", "lb"]);
    // Moving a key to another lease detaches it from the first.
    one(&mut s, leased("lb", auto)).expect("move"); // 8
    assert_eq!(
        (keys(&s, 7), keys(&s, auto)),
        (
            vec![Bytes::from("la")],
            vec![Bytes::from("lb"), Bytes::from("other")]
        )
    );

    // Revoke: every attached key at ONE revision, in key order; the lease is gone.
    events.lock().expect("lock").clear();
    let r = one(&mut s, LeaseRevoke { id: auto }).expect("revoke");
    assert_eq!(r.revision(), 9);
    let seen: Vec<(EventKind, Bytes, i64)> = events
        .lock()
        .expect("lock")
        .iter()
        .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Delete, Bytes::from("lb"), 9),
            (EventKind::Delete, Bytes::from("other"), 9),
        ]
    );
    assert_eq!(lease_of(&s, "lb"), None);
    assert_eq!(
        s.time_to_live(auto, true).ttl,
        -1,
        "a revoked lease has TTL -1"
    );
    assert_eq!(
        one(&mut s, LeaseRevoke { id: auto }),
        Err(OpError::LeaseNotFound { id: auto })
    );
    assert_eq!(
        one(&mut s, leased("x", auto)),
        Err(OpError::LeaseNotFound { id: auto })
    );
    // A lease without keys revokes without a revision.
    let (empty, _) = grant(&mut s, 0, 10);
    assert_eq!(
        one(&mut s, LeaseRevoke { id: empty })
            .expect("revoke")
            .revision(),
        9
    );
    // Keep-alive moves no revision and answers the TTL.
    assert_eq!(s.keep_alive(7), Ok(2));
    assert_eq!(
        s.keep_alive(12345),
        Err(OpError::LeaseNotFound { id: 12345 })
    );
    assert_eq!(s.current_revision(), 9);
    // A deleted key leaves its lease.
    one(&mut s, DeleteRange::key("la")).expect("delete");
    assert!(keys(&s, 7).is_empty());
}

#[test]
fn one_entry_sees_its_own_lease_changes() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    let applied = s
        .apply(
            1,
            &[
                Op::LeaseGrant(LeaseGrant { id: 5, ttl: 60 }),
                leased("a", 5),
                leased("b", 5),
                Op::LeaseRevoke(LeaseRevoke { id: 5 }),
                leased("c", 5),
                Op::LeaseGrant(LeaseGrant { id: 5, ttl: 60 }),
                leased("d", 5),
            ],
        )
        .expect("entry");
    assert_eq!(applied.results[3].as_ref().expect("revoke").revision(), 4);
    assert_eq!(applied.results[4], Err(OpError::LeaseNotFound { id: 5 }));
    assert!(applied.results[6].is_ok());
    assert_eq!(keys(&s, 5), ["d"], "the second grant starts with no keys");
    assert_eq!(lease_of(&s, "a"), None);
}

#[test]
fn leases_survive_a_reopen_with_their_keys_and_a_fresh_deadline() {
    let dir = temp_dir();
    {
        let mut s = open(dir.path());
        grant(&mut s, 3, 100);
        grant(&mut s, 4, 50);
        one(&mut s, leased("k1", 3)).expect("put");
        one(&mut s, leased("k2", 3)).expect("put");
        one(&mut s, leased("k3", 4)).expect("put");
        one(&mut s, Put::new("k2", "detached")).expect("put");
        one(&mut s, LeaseRevoke { id: 4 }).expect("revoke");
    }
    let mut s = open(dir.path());
    assert_eq!(s.leases(), [3]);
    let t = s.time_to_live(3, true);
    assert_eq!((t.granted_ttl, t.keys), (100, vec![Bytes::from("k1")]));
    // etcd's rule after a restart: every lease gets its whole TTL again.
    assert!((98..=100).contains(&t.ttl), "ttl {}", t.ttl);
    // Allocation continues after the ids in use.
    let (next, _) = grant(&mut s, 0, 10);
    assert!(next > 0 && next != 3);
    assert_eq!(
        one(&mut s, LeaseRevoke { id: 3 })
            .expect("revoke")
            .revision(),
        7
    );
    assert_eq!(lease_of(&s, "k1"), None);
}

#[test]
fn expiry_is_decided_outside_apply_and_driven_by_a_loop() {
    let dir = temp_dir();
    let mut s = Mvcc::open(
        MvccConfig::new(dir.path())
            .write_mode(WriteMode::WAL)
            .min_lease_ttl(1),
    )
    .expect("open");
    let start = Instant::now();
    grant(&mut s, 1, 1);
    grant(&mut s, 2, 30);
    one(&mut s, leased("short1", 1)).expect("put");
    one(&mut s, leased("short2", 1)).expect("put");
    one(&mut s, leased("long", 2)).expect("put");
    assert!(s.expired_leases(start).is_empty());
    assert_eq!(s.expired_leases(start + Duration::from_secs(5)), [1]);

    // The driver: poll, propose a revoke per expired lease, until lease 1 is gone.
    let mut revoked_at = None;
    while revoked_at.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "lease 1 never expired"
        );
        for id in s.expired_leases(Instant::now()) {
            let r = one(&mut s, LeaseRevoke { id }).expect("revoke");
            revoked_at = Some((id, r.revision(), start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (id, rev, after) = revoked_at.expect("set");
    assert_eq!((id, rev), (1, 5), "both keys at one revision");
    assert!(
        after >= Duration::from_millis(900),
        "expired early: {after:?}"
    );
    assert_eq!(lease_of(&s, "short1"), None);
    assert_eq!(lease_of(&s, "long"), Some(2));
    // Keep-alive pushes a deadline back.
    let later = Instant::now() + Duration::from_secs(29);
    s.keep_alive(2).expect("keep alive");
    assert!(s.expired_leases(later).is_empty());
}

#[test]
fn a_failed_revoke_changes_nothing() {
    let dir = temp_dir();
    let mut s = open(dir.path());
    grant(&mut s, 9, 60);
    one(&mut s, leased("a", 9)).expect("put");
    s.engine().inject_write_failures_after(0);
    let err = s
        .apply(3, &[Op::LeaseRevoke(LeaseRevoke { id: 9 })])
        .expect_err("fails");
    assert!(matches!(err, MvccError::Engine(_)), "{err}");
    s.engine().clear_injected_failures();
    assert_eq!(
        (s.leases(), keys(&s, 9), s.current_revision()),
        (vec![9], vec![Bytes::from("a")], 2)
    );
    drop(s);
    let s = open(dir.path());
    assert_eq!(keys(&s, 9), ["a"]);
}

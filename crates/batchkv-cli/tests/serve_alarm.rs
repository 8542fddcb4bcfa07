//! The NOSPACE alarm survives a restart of `batchkv serve` (etcd keeps alarms in its backend):
//! raised, it is still listed and still refuses writes after a restart, even under a quota the
//! store fits in; disarmed, it stays gone after the next restart.

use batchkv_testkit::{BatchkvServer, ServeOptions};

const BATCHKV: &str = env!("CARGO_BIN_EXE_batchkv");
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
const ALARM: &str = "memberID:1 alarm:NOSPACE";

#[test]
fn a_raised_alarm_survives_restarts_until_disarmed() {
    let mut server = BatchkvServer::start_with(
        BATCHKV,
        ServeOptions {
            // A quota the store is over from the start: the first write raises the alarm.
            args: vec!["--quota-backend-bytes=1".to_owned()],
            ..ServeOptions::default()
        },
    );
    let put = server.ctl(&["put", "k", "v"], None);
    assert!(!put.ok && put.stderr.contains(NO_SPACE), "{put:?}");
    assert_eq!(server.ctl(&["alarm", "list"], None).stdout.trim(), ALARM);

    // Restarted with etcd's default quota (2 GiB, which the store fits in): the alarm is
    // still raised and still refuses writes.
    assert!(server.stop().success());
    server.set_args(Vec::new());
    server.restart();
    assert_eq!(server.ctl(&["alarm", "list"], None).stdout.trim(), ALARM);
    let put = server.ctl(&["put", "k", "v"], None);
    assert!(!put.ok && put.stderr.contains(NO_SPACE), "{put:?}");
    // After a kill too (the alarm was durable when raised).
    server.kill();
    server.restart();
    assert_eq!(server.ctl(&["alarm", "list"], None).stdout.trim(), ALARM);

    // Disarmed: writes work, and a restart brings no alarm back.
    let disarm = server.ctl(&["alarm", "disarm"], None);
    assert_eq!(disarm.stdout.trim(), ALARM, "{disarm:?}");
    assert!(server.ctl(&["put", "k", "v"], None).ok);
    assert!(server.stop().success());
    server.restart();
    assert_eq!(server.ctl(&["alarm", "list"], None).stdout.trim(), "");
    assert!(server.ctl(&["put", "k2", "v"], None).ok);
    let got = server.ctl(&["get", "k", "--print-value-only"], None);
    assert_eq!(got.stdout.trim(), "v");
}

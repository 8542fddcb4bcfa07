#!/usr/bin/env python3
"""A smoke test of an etcd v3 server through Python's `etcd3` client (gRPC).

Usage: smoke.py HOST:PORT

Runs KV puts, gets and ranges (sorted, limited, keys-only, count-only, at a revision), a txn
(both branches), a lease with a key (time-to-live with its keys, a keep-alive, the revoke that
deletes the key) and a watch that sees a put and a delete, against a FRESH server (revision 1).
It prints one line per step and `smoke: ok` at the end; the first failed check raises (exit
status 1). crates/batchkv-cli/tests/python.rs runs it against `batchkv serve` and against a
real etcd 3.4: the same script must pass on both.

etcd3 0.12's generated code needs protobuf's pure-Python implementation with current protobuf
releases: the caller sets PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (it is set here too,
before the import, for a manual run). `cargo xtask doctor` installs the client into a venv
(python/requirements.txt).
"""

import os
import queue
import sys
import threading

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import etcd3  # noqa: E402
import grpc  # noqa: E402
import etcd3.etcdrpc as etcdrpc  # noqa: E402
import etcd3.events  # noqa: E402

# Seconds any one call or wait may take: a hang fails instead of blocking the test.
TIMEOUT = 20


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def step(name):
    print("smoke:", name, flush=True)


def kv_steps(client):
    step("put/get")
    resp = client.put("k1", "v1")
    check(resp.header.revision == 2, f"first put at revision 2, got {resp.header.revision}")
    value, meta = client.get("k1")
    check(value == b"v1", f"get k1: {value!r}")
    check((meta.create_revision, meta.mod_revision, meta.version) == (2, 2, 1),
          f"k1 metadata: {meta.create_revision} {meta.mod_revision} {meta.version}")
    resp = client.put("k1", "v2", prev_kv=True)
    check(resp.prev_kv.value == b"v1", f"put prev_kv: {resp.prev_kv}")
    value, meta = client.get("k1")
    check((value, meta.version, meta.mod_revision) == (b"v2", 2, 3), f"k1 after update: {value!r}")
    check(client.get("nothing") == (None, None), "a missing key")

    step("ranges")
    for k, v in [("k2", "c"), ("k3", "b"), ("k4", "a"), ("l1", "z")]:
        client.put(k, v)
    keys = [m.key for _, m in client.get_prefix("k")]
    check(keys == [b"k1", b"k2", b"k3", b"k4"], f"prefix k: {keys}")
    by_value = [v for v, _ in client.get_prefix("k", sort_target="value", sort_order="ascend")]
    check(by_value == [b"a", b"b", b"c", b"v2"], f"sorted by value: {by_value}")
    desc = [m.key for _, m in client.get_prefix("k", sort_order="descend")]
    check(desc == [b"k4", b"k3", b"k2", b"k1"], f"descending: {desc}")
    keys = [m.key for _, m in client.get_range("k2", "l2")]
    check(keys == [b"k2", b"k3", b"k4", b"l1"], f"range [k2, l2): {keys}")
    # What the library does not expose, through its stub: limit, keys-only, count-only and a
    # read at an old revision.
    r = client.kvstub.Range(etcdrpc.RangeRequest(key=b"k", range_end=b"l", limit=2, keys_only=True),
                            TIMEOUT)
    check([kv.key for kv in r.kvs] == [b"k1", b"k2"] and r.more and r.count == 4,
          f"limit 2 keys-only: {r}")
    check(all(kv.value == b"" for kv in r.kvs), f"keys-only returned values: {r}")
    r = client.kvstub.Range(etcdrpc.RangeRequest(key=b"k", range_end=b"l", count_only=True), TIMEOUT)
    check(r.count == 4 and len(r.kvs) == 0, f"count-only: {r}")
    r = client.kvstub.Range(etcdrpc.RangeRequest(key=b"k1", revision=2), TIMEOUT)
    check([kv.value for kv in r.kvs] == [b"v1"], f"k1 at revision 2: {r}")

    step("delete")
    check(client.delete("l1"), "delete l1 deleted nothing")
    check(not client.delete("l1"), "a second delete of l1 deleted something")
    check(client.get("l1") == (None, None), "l1 is still there")


def txn_steps(client):
    step("txn")
    t = client.transactions
    ok, responses = client.transaction(
        compare=[t.value("k1") == "v2", t.version("k2") > 0],
        success=[t.put("t1", "yes"), t.get("k1")],
        failure=[t.put("t1", "no")],
    )
    check(ok, "the txn's compares hold")
    check(responses[1][0][0] == b"v2", f"the txn's get: {responses[1]}")
    check(client.get("t1")[0] == b"yes", "t1 after the success branch")
    ok, _ = client.transaction(
        compare=[t.mod("k1") < 2],
        success=[t.put("t1", "yes again")],
        failure=[t.delete("t1")],
    )
    check(not ok, "mod(k1) < 2 does not hold")
    check(client.get("t1") == (None, None), "the failure branch deleted t1")


def lease_steps(client):
    step("lease")
    lease = client.lease(60)
    check(lease.id != 0 and lease.ttl == 60, f"lease grant: {lease.id} {lease.ttl}")
    client.put("leased", "v", lease=lease)
    _, meta = client.get("leased")
    check(meta.lease_id == lease.id, f"the key's lease: {meta.lease_id} vs {lease.id}")
    info = client.get_lease_info(lease.id)
    check(info.grantedTTL == 60 and 0 < info.TTL <= 60, f"timetolive: {info}")
    check(list(info.keys) == [b"leased"], f"the lease's keys: {info.keys}")
    renewed = lease.refresh()
    check(len(renewed) == 1 and renewed[0].ID == lease.id and renewed[0].TTL == 60,
          f"keep-alive: {renewed}")
    leases = client.leasestub.LeaseLeases(etcdrpc.LeaseLeasesRequest(), TIMEOUT)
    check([l.ID for l in leases.leases] == [lease.id], f"lease list: {leases}")
    lease.revoke()
    check(client.get("leased") == (None, None), "the revoke deleted the key")
    check(client.get_lease_info(lease.id).TTL == -1, "the revoked lease is gone")
    try:
        client.revoke_lease(lease.id)
    except grpc.RpcError as e:
        check((e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND,
                                          "etcdserver: requested lease not found"),
              f"a second revoke: {e.code()} {e.details()!r}")
    else:
        raise AssertionError("a second revoke succeeded")


def watch_steps(client):
    step("watch")
    events = queue.Queue()
    watch_id = client.add_watch_prefix_callback("w/", events.put)
    # Writes until the watch sees the first: a watch is established asynchronously.
    first = None
    for i in range(TIMEOUT * 10):
        client.put("w/ready", str(i))
        try:
            first = events.get(timeout=0.1)
            break
        except queue.Empty:
            pass
    check(first is not None, "the watch saw none of the puts")
    start = client.put("w/a", "1").header.revision
    client.delete("w/a")
    seen = []
    while len(seen) < 2:
        try:
            resp = events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"the watch saw only {seen}")
        check(not isinstance(resp, Exception), f"the watch failed: {resp!r}")
        for ev in resp.events:
            if ev.key == b"w/a":
                seen.append((type(ev).__name__, ev.key, ev.value, ev.mod_revision))
    check(seen == [("PutEvent", b"w/a", b"1", start), ("DeleteEvent", b"w/a", b"", start + 1)],
          f"watch events: {seen}")
    client.cancel_watch(watch_id)


def maintenance_steps(client):
    step("status")
    status = client.status()
    check(status.version != "" and status.db_size > 0, f"status: {status.version} {status.db_size}")
    members = list(client.members)
    check(len(members) == 1, f"members: {members}")


def main():
    if len(sys.argv) != 2:
        print("usage: smoke.py HOST:PORT", file=sys.stderr)
        sys.exit(2)
    host, port = sys.argv[1].rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=TIMEOUT)
    try:
        kv_steps(client)
        txn_steps(client)
        lease_steps(client)
        watch_steps(client)
        maintenance_steps(client)
    finally:
        client.close()
    print("smoke: ok", flush=True)


def quiet_closed_watch_thread(args):
    """etcd3 0.12's watch thread outlives `client.close()` and dies on the closed channel
    ("Cannot invoke RPC: Channel closed!"): a known flaw of the library, not of the server.
    That one is dropped; any other exception in any thread is reported as usual."""
    if (args.thread is not None and args.thread.name.startswith("etcd3_watch")
            and isinstance(args.exc_value, ValueError)
            and "Channel closed" in str(args.exc_value)):
        return
    threading.__excepthook__(args)


if __name__ == "__main__":
    threading.excepthook = quiet_closed_watch_thread
    main()

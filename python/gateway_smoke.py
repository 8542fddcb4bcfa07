#!/usr/bin/env python3
"""A smoke test of an etcd v3 server's HTTP/JSON gateway through Python's `etcd3gw` client.

Usage: gateway_smoke.py HOST:PORT [CA CERT KEY]

With CA, CERT and KEY (PEM files) it speaks https, trusting CA and presenting CERT/KEY as its
client certificate (Python's `requests`, HTTP/1.1: the server must offer ALPN `http/1.1`).

etcd3gw speaks etcd's grpc-gateway (`POST /v3/...` with JSON; it reads `GET /version` to pick
the path prefix). Runs KV puts, gets and ranges, a delete, a txn (both branches, through
`create`), a lease with a key (time-to-live, its keys, a keep-alive, the revoke that deletes the
key), Status and MemberList, and a watch that sees a put and a delete, against a FRESH server.
It prints one line per step and `gateway smoke: ok` at the end; the first failed check raises
(exit status 1). crates/batchkv-cli/tests/python.rs runs it against `batchkv serve` and against
a real etcd 3.4: the same script must pass on both. `cargo xtask doctor` installs the client
into a venv (python/requirements.txt).
"""

import queue
import sys
import threading

import etcd3gw
from etcd3gw import exceptions

# Seconds any one call or wait may take: a hang fails instead of blocking the test.
TIMEOUT = 20


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def step(name):
    print("gateway smoke:", name, flush=True)


def kv_steps(client):
    step("put/get")
    check(client.put("k1", "v1"), "put k1")
    check(client.get("k1") == [b"v1"], f"get k1: {client.get('k1')}")
    [(value, meta)] = client.get("k1", metadata=True)
    check(value == b"v1" and meta["key"] == b"k1", f"k1 with metadata: {value!r} {meta}")
    check((meta["create_revision"], meta["mod_revision"], meta["version"]) == ("2", "2", "1"),
          f"k1 metadata (int64 as strings): {meta}")
    check(client.get("nothing") == [], "a missing key")

    step("ranges")
    for k, v in [("k2", "c"), ("k3", "b"), ("k4", "a"), ("l1", "z")]:
        client.put(k, v)
    keys = [m["key"] for _, m in client.get_prefix("k")]
    check(keys == [b"k1", b"k2", b"k3", b"k4"], f"prefix k: {keys}")
    by_value = [v for v, _ in client.get_prefix("k", sort_target="value", sort_order="ascend")]
    check(by_value == [b"a", b"b", b"c", b"v1"], f"sorted by value: {by_value}")
    desc = [m["key"] for _, m in client.get_prefix("k", sort_order="descend")]
    check(desc == [b"k4", b"k3", b"k2", b"k1"], f"descending: {desc}")
    limited = client.get("k", range_end="l", limit=2, keys_only=True, metadata=True)
    check([m["key"] for _, m in limited] == [b"k1", b"k2"], f"limit 2 keys-only: {limited}")
    check(client.get("k1", revision=2) == [b"v1"], "k1 at revision 2")
    all_keys = [m["key"] for _, m in client.get_all()]
    check(all_keys == [b"k1", b"k2", b"k3", b"k4", b"l1"], f"every key: {all_keys}")

    step("delete")
    check(client.delete("k4"), "delete k4")
    check(not client.delete("k4"), "delete k4 again")
    check(client.delete_prefix("l"), "delete prefix l")
    check(client.get("l1") == [], "l1 after the delete")

    step("txn")
    check(client.create("new", "first"), "create new (the txn's success branch)")
    check(not client.create("new", "second"), "create new again (the failure branch)")
    check(client.get("new") == [b"first"], f"new: {client.get('new')}")
    check(client.replace("new", "first", "third"), "replace new")
    check(not client.replace("new", "first", "fourth"), "replace with a stale value")
    check(client.get("new") == [b"third"], f"new after replace: {client.get('new')}")


def lease_steps(client):
    step("lease")
    lease = client.lease(ttl=60)
    check(lease.id > 0, f"lease id {lease.id}")
    client.put("leased", "v", lease=lease)
    ttl = lease.ttl()
    check(0 < ttl <= 60, f"lease TTL {ttl}")
    check(lease.keys() == [b"leased"], f"lease keys: {lease.keys()}")
    check(lease.refresh() == 60, "keep-alive")
    check(lease.revoke(), "revoke")
    check(client.get("leased") == [], "the leased key after the revoke")
    check(lease.ttl() == -1, f"TTL after the revoke: {lease.ttl()}")
    try:
        lease.revoke()
        raise AssertionError("revoking a revoked lease succeeded")
    except exceptions.Etcd3Exception as e:
        # The error body: grpc-gateway's {"error", "message", "code"} (NotFound: 5).
        check('"code":5' in e.detail_text and "requested lease not found" in e.detail_text,
              f"revoke again: {e.detail_text}")


def maintenance_steps(client):
    step("status/members")
    status = client.status()
    check(status["version"].startswith("3.4."), f"status: {status}")
    members = client.members()
    check(len(members) == 1 and members[0]["clientURLs"], f"members: {members}")


def watch_steps(client):
    step("watch")
    events, cancel = client.watch_prefix("w/")
    got = queue.Queue()

    def drain():
        for event in events:
            got.put(event)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    # The watch is created before its first response; writes after a short settle are seen.
    # Retry the first write until its event arrives (the watch may not be registered yet).
    first = None
    for _ in range(TIMEOUT * 10):
        client.put("w/a", "1")
        try:
            first = got.get(timeout=0.1)
            break
        except queue.Empty:
            continue
    check(first is not None, "no watch event within the timeout")
    check(first["kv"]["key"] == b"w/a" and first["kv"]["value"] == b"1", f"put event: {first}")
    # Later events of the retried put, if any, then the delete.
    client.delete("w/a")
    while True:
        event = got.get(timeout=TIMEOUT)
        if event.get("type") == "DELETE":
            break
        check(event["kv"]["key"] == b"w/a", f"an unexpected event: {event}")
    check(event["kv"]["key"] == b"w/a", f"delete event: {event}")
    cancel()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    tls = {}
    if len(sys.argv) == 5:
        ca, cert, key = sys.argv[2:]
        tls = {"protocol": "https", "ca_cert": ca, "cert_cert": cert, "cert_key": key}
    client = etcd3gw.client(host=host, port=int(port), timeout=TIMEOUT, **tls)
    kv_steps(client)
    lease_steps(client)
    maintenance_steps(client)
    watch_steps(client)
    print("gateway smoke: ok", flush=True)


if __name__ == "__main__":
    main()

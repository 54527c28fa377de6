"""Leader failover in 3- and 5-member clusters.

For each size: writes through every member succeed; the leader is SIGKILLed;
the others elect a new leader and accept a write within a few election
timeouts (both times measured and printed); every acknowledged write is then
readable (linearizable get) through every live member; the old leader restarts
and catches up: its serializable (local) reads return the latest values within
a deadline.

Binary: CLUSTER_BINARY=etcd|flotilla (BINARY works too; default flotilla, as
CTest runs it). Skips (77) while flotilla does not form a cluster yet.
"""
import base64
import json
import time

import cluster as cl

ELECTION_MS = 1000
HEARTBEAT_MS = 100
# "a few election timeouts": a new leader needs one timeout plus a randomized
# extra of up to one more, plus a vote round; 5x leaves room for a loaded
# 2-core machine running sanitizer builds.
FAILOVER_DEADLINE_S = 5 * ELECTION_MS / 1000.0
CATCH_UP_DEADLINE_S = 20.0


def read_prefix(c, members, prefix, serializable=False):
    args = ["get", "--prefix", prefix, "-w", "json"]
    if serializable:
        args.append("--consistency=s")
    _, out, _ = cl.etcdctl(c.endpoints(members), *args, timeout_s=5)
    kvs = json.loads(out).get("kvs") or []
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs}


def check_size(n, binary):
    acked = {}
    with cl.Cluster(n, binary=binary, heartbeat_ms=HEARTBEAT_MS, election_ms=ELECTION_MS) as c:
        old = c.wait_for_leader()
        print("n=%d: leader %r, ids %s" % (n, old, {m.name: cl.hex_id(m.id) for m in c.members}), flush=True)
        for i, m in enumerate(c.members):  # followers must take writes too (forwarded)
            key, value = "fo/before/%d" % i, "v%d" % i
            assert c.put(key, value, members=[m]), "put through %s failed" % m.name
            acked[key] = value

        t_kill = time.monotonic()
        old.kill()
        rest = [m for m in c.members if m is not old]
        new = c.wait_for_leader(timeout_s=FAILOVER_DEADLINE_S, members=rest, exclude=old)
        t_elected = time.monotonic() - t_kill
        attempts, t_write = 0, None
        while time.monotonic() - t_kill < FAILOVER_DEADLINE_S:
            key, value = "fo/after/%d" % attempts, "a%d" % attempts
            attempts += 1
            if c.put(key, value, members=rest, timeout_s=2.0, check=False):
                acked[key] = value
                t_write = time.monotonic() - t_kill
                break
            time.sleep(0.05)  # a failed put may still commit; its key is not required
        print("n=%d: killed leader %s; new leader %s elected after %.3fs (seen by etcdctl), "
              "first write acknowledged after %.3fs (%d attempts); deadline %.1fs"
              % (n, old.name, new.name, t_elected, t_write if t_write is not None else -1, attempts,
                 FAILOVER_DEADLINE_S), flush=True)
        assert t_write is not None, "no write accepted within %.1fs of killing the leader\n%s" % (
            FAILOVER_DEADLINE_S, c.log_tails())
        for i, m in enumerate(rest):
            key, value = "fo/later/%d" % i, "l%d" % i
            assert c.put(key, value, members=[m]), "put through %s failed after failover" % m.name
            acked[key] = value

        for m in rest:
            got = read_prefix(c, [m], "fo/")
            missing = {k: v for k, v in acked.items() if got.get(k) != v}
            assert not missing, "through %s: acknowledged writes missing or wrong: %s (got %s)" % (
                m.name, missing, got)
        print("n=%d: all %d acknowledged writes readable through each of %d live members"
              % (n, len(acked), len(rest)), flush=True)

        t_restart = time.monotonic()
        old.start()
        old.wait_listening()
        key, value = "fo/final", "after-restart"
        assert c.put(key, value, members=[new]), "put after restart failed"
        acked[key] = value
        got = {}
        while time.monotonic() - t_restart < CATCH_UP_DEADLINE_S:
            try:
                got = read_prefix(c, [old], "fo/", serializable=True)
            except AssertionError:
                got = {}
            if all(got.get(k) == v for k, v in acked.items()):
                break
            time.sleep(0.1)
        missing = {k: v for k, v in acked.items() if got.get(k) != v}
        assert not missing, "restarted %s did not catch up within %.0fs: missing %s\n%s" % (
            old.name, CATCH_UP_DEADLINE_S, missing, c.log_tails())
        print("n=%d: restarted %s caught up after %.3fs (serializable reads show all %d writes)"
              % (n, old.name, time.monotonic() - t_restart, len(acked)), flush=True)


def main():
    binary = cl.default_binary()
    started = time.monotonic()
    try:
        for n in (3, 5):
            check_size(n, binary)
    except cl.NotACluster as e:
        cl.skip(str(e))
    print("PASS (%s, %.1fs)" % (binary, time.monotonic() - started))


if __name__ == "__main__":
    main()

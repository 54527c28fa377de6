"""cluster.py itself, against etcd 3.4 (which forms a cluster today, so the
harness is exercised in every run of the suite, not only once flotilla is a
cluster): leader and member ids, put/get through chosen members, pause and
kill with a new leader elected, resume and restart with catch-up, partitions
refused on etcd, fault files and env for flotilla (run as etcd behind
flotilla's command line: tests/jepsen/etcd-as-flotilla.sh), and clean-up
(processes gone, IP claims released). Skips (77) without /usr/bin/etcd."""
import os
import re
import time

import cluster as cl

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_FLOTILLA = os.path.join(HERE, "..", "jepsen", "etcd-as-flotilla.sh")


def wait_for(what, fn, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError("%s: not within %.0fs (last: %r)" % (what, timeout_s, last))


def check_etcd():
    with cl.Cluster(3, binary="etcd") as c:
        pids = [m.pid for m in c.members]
        ips = list(c.ips)
        ld = c.wait_for_leader()
        ids = c.member_ids()
        hexes = [cl.hex_id(m.id) for m in c.members]
        print("leader %r, ids %s" % (ld, hexes))
        assert len(set(hexes)) == 3 and all(re.fullmatch("[0-9a-f]{16}", h) for h in hexes), hexes
        assert sorted(ids) == ["m0", "m1", "m2"], ids
        assert c.member_ids_hex() == {m.name: cl.hex_id(m.id) for m in c.members}
        c.put("h/a", "1", members=[c.members[0]])
        assert [c.get("h/a", members=[m]) for m in c.members] == ["1"] * 3
        assert c.get("h/none") is None

        # pause the leader: the others elect a new one and take writes
        ld.pause()
        others = [m for m in c.members if m is not ld]
        t0 = time.monotonic()
        new = c.wait_for_leader(10, members=others, exclude=ld)
        print("paused %s; new leader %s after %.2fs" % (ld.name, new.name, time.monotonic() - t0))
        c.put("h/a", "2", members=others)
        ld.resume()
        wait_for("resumed %s catches up" % ld.name, lambda: c.get("h/a", members=[ld], serializable=True) == "2")

        # kill a follower: writes go on; restarted, it catches up
        f = next(m for m in c.members if m is not c.wait_for_leader())
        assert f.kill() == -9
        assert not f.alive()
        c.put("h/a", "3", members=[m for m in c.members if m is not f])
        f.start()
        f.wait_listening()
        wait_for("restarted %s catches up" % f.name, lambda: c.get("h/a", members=[f], serializable=True) == "3")
        assert f.pid not in pids

        try:
            c.partition([c.members[0]])
            raise AssertionError("etcd partition did not raise Unsupported")
        except cl.Unsupported as e:
            print("partition on etcd: %s" % e)
        live_pids = [m.pid for m in c.members]
    # closed: every process gone, every IP claim released
    for pid in live_pids:
        assert not os.path.exists("/proc/%d" % pid) or "zombie" in open("/proc/%d/status" % pid).read().lower(), pid
    for ip in ips:
        assert not os.path.exists(os.path.join(cl.IP_DIR, ip)), ip


def check_flotilla_paths():
    cl.FLOTILLA_BIN = FAKE_FLOTILLA
    with cl.Cluster(3, binary="flotilla") as c:
        m0, m1, m2 = c.members
        assert m0.args()[1] == "serve", m0.args()
        env = open("/proc/%d/environ" % m0.pid, "rb").read().split(b"\0")
        assert (cl.FAULT_FILE_ENV + "=" + m0.fault_file).encode() in env
        assert cl.binary_has_hook("flotilla", cl.FAULT_FILE_ENV)

        def lines(m):
            with open(m.fault_file) as f:
                return f.read().split()

        assert [lines(m) for m in c.members] == [[], [], []]
        c.partition([m0])  # m0 | m1, m2
        h = {m.name: cl.hex_id(m.id) for m in c.members}
        assert lines(m0) == sorted([h["m1"], h["m2"]]), lines(m0)
        assert lines(m1) == [h["m0"]] and lines(m2) == [h["m0"]], (lines(m1), lines(m2))
        c.heal()
        assert [lines(m) for m in c.members] == [[], [], []]
        print("fault files: partition and heal as expected")


def main():
    if not os.access(cl.ETCD_BIN, os.X_OK):
        cl.skip("no etcd at %s" % cl.ETCD_BIN)
    check_etcd()
    check_flotilla_paths()
    print("PASS")


if __name__ == "__main__":
    main()

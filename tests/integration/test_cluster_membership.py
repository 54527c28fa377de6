"""Membership changes under load, and a member that comes back by snapshot.

A 3-member Flotilla cluster (tests/integration/cluster.py: each member on its
own loopback IP), with a small --snapshot-count so the leader compacts its log
and a member that was away must be sent a snapshot of the store.

1. While a writer puts keys through all endpoints: add a learner (etcdctl
   member add --learner), start it with --initial-cluster-state existing: it
   catches up from a snapshot (index 1 is compacted everywhere); promote it
   (retrying "not in sync" until a deadline); remove the leader: it stops by
   itself (exit 0) and the others elect a new one.
2. Every acknowledged put is readable on every remaining member, and every
   member answers the same HashKV at the same revision.
3. A follower is killed; WRITES keys are written (flotilla bench) with a
   compaction; the follower restarts and catches up, through a snapshot
   (its log says so), to the same HashKV.
4. SIGTERM on the leader: it hands leadership over before it stops.

Env: FLOTILLA_TEST_SEED (printed), FLOTILLA_TEST_CATCHUP_WRITES (default
200000, as the issue asks; ~40 s under ASan).
"""
import base64
import json
import subprocess
import os
import random
import sys
import threading
import time
import types

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402

SEED = int(os.environ.get("FLOTILLA_TEST_SEED", str(random.randrange(1 << 30))))
WRITES = int(os.environ.get("FLOTILLA_TEST_CATCHUP_WRITES", "200000"))
SNAPSHOT_COUNT = 500


def with_flags(member, extra, state=None, initial=None):
    """Makes member start with extra flags (and another cluster state/list)."""
    base = type(member).args

    def args(self):
        a = base(self) + list(extra)
        if state:
            a[a.index("--initial-cluster-state") + 1] = state
        if initial:
            a[a.index("--initial-cluster") + 1] = initial
        return a
    member.args = types.MethodType(args, member)


def wait(cond, what, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %s)" % (what, last))


class Writer(threading.Thread):
    """Puts w/<n> through every live endpoint; records what was acknowledged."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.acked = {}
        self.failed = 0
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            key = "w/%06d" % n
            live = [m for m in self.c.members if m.alive()]
            rc, _, _ = cluster.etcdctl(self.c.endpoints(live), "put", key, "v%d" % n,
                                       check=False, timeout_s=10)
            if rc == 0:
                self.acked[key] = "v%d" % n
            else:
                self.failed += 1


def hashes(c, members):
    out = {}
    for m in members:
        _, text, _ = cluster.etcdctl([m.endpoint], "endpoint", "hashkv", "-w", "json")
        row = json.loads(text)[0]
        out[m.name] = (row["HashKV"]["header"]["revision"], row["HashKV"]["hash"])
    return out


def same_hash(c, members):
    h = hashes(c, members)
    return h if len(set(h.values())) == 1 else None


def check_all_acked(c, members, acked):
    for m in members:
        _, text, _ = cluster.etcdctl([m.endpoint], "get", "w/", "--prefix", "-w", "json",
                                     timeout_s=30)
        got = {}
        for kv in json.loads(text).get("kvs") or []:
            got[base64.b64decode(kv["key"]).decode()] = base64.b64decode(kv["value"]).decode()
        missing = [k for k in acked if got.get(k) != acked[k]]
        assert not missing, "%s lacks %d acked puts, e.g. %s" % (m.name, len(missing), missing[:5])


def membership_under_load(c, joiner):
    w = Writer(c)
    w.start()
    t0 = time.monotonic()
    try:
        wait(lambda: len(w.acked) >= 50, "writes before the change")
        _, out, _ = cluster.etcdctl(c.endpoints(), "member", "add", joiner.name,
                                    "--peer-urls", joiner.peer_url, "--learner")
        assert "added to cluster" in out, out
        jid = out.split()[1]  # "Member <hex id> added to cluster <hex>"
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in c.members + [joiner])
        with_flags(joiner, ["--snapshot-count", str(SNAPSHOT_COUNT)], state="existing",
                   initial=initial)
        joiner.start()
        joiner.wait_listening()
        # the learner serves serializable reads once it caught up
        def caught_up():
            latest = max(w.acked) if w.acked else None
            return latest and cluster.etcdctl([joiner.endpoint], "get", latest,
                                              "--consistency=s", check=False)[1].strip() != ""
        wait(caught_up, "the learner to catch up")
        assert "installed a snapshot from the leader" in open(joiner.log_path).read()
        # promote: the leader refuses until the learner is in sync
        def promote():
            rc, out, err = cluster.etcdctl(c.endpoints(), "member", "promote", jid, check=False)
            assert rc == 0 or "in sync" in err, err
            return rc == 0
        wait(promote, "the learner's promotion")
        c.members.append(joiner)
        leader = c.wait_for_leader()
        lid = cluster.hex_id(leader.id or c.member_ids()[leader.name])
        cluster.etcdctl([m.endpoint for m in c.members if m is not leader], "member", "remove",
                        lid)
        # a removed member stops itself, cleanly
        wait(lambda: not leader.alive(), "the removed leader to stop", 30)
        assert leader.proc.returncode == 0, leader.proc.returncode
        c.members.remove(leader)
        new = c.wait_for_leader()
        assert new is not leader
        wait(lambda: len(w.acked) >= 50 + 20, "writes after the change")
    finally:
        w.stop.set()
        w.join(60)
    print("1. under load (%d acked, %d failed during changes, %.1fs): learner joined by "
          "snapshot, promoted; leader %s removed and stopped; new leader %s"
          % (len(w.acked), w.failed, time.monotonic() - t0, leader.name, new.name))
    check_all_acked(c, c.members, w.acked)
    h = wait(lambda: same_hash(c, c.members), "equal HashKV on every member")
    print("2. all %d acked puts on %d members; HashKV equal: %s" % (len(w.acked), len(c.members),
                                                                    h))


def catch_up_by_snapshot(c):
    leader = c.wait_for_leader()
    away = [m for m in c.members if m is not leader][0]
    away.kill()
    t0 = time.monotonic()
    live = [m for m in c.members if m.alive()]
    eps = ",".join(c.endpoints(live))
    proc = subprocess.run(
        [cluster.binary_path("flotilla"), "--endpoints", eps, "bench", "put", "--clients", "64",
         "--conns", "4", "--total", str(WRITES), "--key-space", str(WRITES // 2), "--seed",
         str(SEED), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, out, _ = cluster.etcdctl(c.endpoints(live), "endpoint", "status", "-w", "json")
    rev = json.loads(out)[0]["Status"]["header"]["revision"]
    cluster.etcdctl(c.endpoints(live), "compact", str(rev - 100))
    cluster.etcdctl(c.endpoints(live), "put", "final", "yes")
    wrote_s = time.monotonic() - t0
    away.start()
    away.wait_listening()
    wait(lambda: cluster.etcdctl([away.endpoint], "get", "final", "--consistency=s",
                                 check=False)[1].strip() != "", "the restarted member to catch up",
         120)
    log = open(away.log_path).read()
    assert "installed a snapshot from the leader" in log.split("==== harness: start")[-1], \
        "caught up without a snapshot:\n" + log[-3000:]
    h = wait(lambda: same_hash(c, c.members), "equal HashKV after catch-up")
    print("3. %s away through %d writes + compaction (%.1fs), back by snapshot in %.1fs; HashKV "
          "equal: %s" % (away.name, WRITES, wrote_s, time.monotonic() - t0 - wrote_s, h))


def leader_hands_over_on_sigterm(c):
    leader = c.wait_for_leader()
    t0 = time.monotonic()
    code = leader.stop()
    assert code == 0, code
    rest = [m for m in c.members if m is not leader]
    new = c.wait_for_leader(members=rest, exclude=leader, timeout_s=10)
    took = time.monotonic() - t0
    log = open(leader.log_path).read().split("==== harness: start")[-1]
    assert "handing leadership over before stopping" in log, log[-2000:]
    # no election timeout passed: the followers heard the transfer at once
    assert "leader changed" in open(new.log_path).read()
    cluster.etcdctl(c.endpoints(rest), "put", "after-sigterm", "ok")
    print("4. SIGTERM on leader %s: leadership handed to %s, stop + new leader seen in %.2fs"
          % (leader.name, new.name, took))


def main():
    print("seed %d" % SEED)
    c = cluster.Cluster(n=4, binary="flotilla")
    try:
        joiner = c.members.pop()  # started later, with member add
        for m in c.members:
            with_flags(m, ["--snapshot-count", str(SNAPSHOT_COUNT)])
        c.start()
        membership_under_load(c, joiner)
        catch_up_by_snapshot(c)
        leader_hands_over_on_sigterm(c)
    except Exception:
        print(c.log_tails(40))
        raise
    finally:
        c.members.append(joiner) if joiner not in c.members else None
        c.close()
    print("ok")


if __name__ == "__main__":
    main()

"""Crash test: writers put distinct keys as fast as they can, the member is
SIGKILLed mid-load and restarted on the same data dir, 20 rounds. After every
restart each acknowledged put (etcdctl exited 0) must be there with the value
written and with the revision the put answered; revisions are unique, and
strictly increasing in ack order for each writer. A last round stops the
member with SIGTERM under the same load: exit code 0, nothing acked lost.
"""
import base64
import json
import os
import signal
import subprocess
import threading
import time

import harness

ROUNDS = int(os.environ.get("FLOTILLA_CRASH_ROUNDS", "20"))
WRITERS = 4
LOAD_SECONDS = 1.2


def put(endpoint, key, value):
    """One etcdctl put; returns the revision on success, None otherwise."""
    env = dict(os.environ, ETCDCTL_API="3")
    try:
        proc = subprocess.run([harness.ETCDCTL, "--endpoints", endpoint, "--dial-timeout", "1s",
                               "--command-timeout", "3s", "put", key, value, "-w", "json"],
                              capture_output=True, text=True, env=env, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)["header"]["revision"]


class Writer(threading.Thread):
    def __init__(self, wid, endpoint, round_no, stop):
        super().__init__(daemon=True)
        self.wid, self.endpoint, self.round_no, self.stop = wid, endpoint, round_no, stop
        self.acked = []  # (key, value, revision) in ack order
        self.attempts = 0

    def run(self):
        seq = 0
        while not self.stop.is_set():
            key = "w%d/r%02d/%05d" % (self.wid, self.round_no, seq)
            value = "value-of-" + key
            seq += 1
            self.attempts += 1
            rev = put(self.endpoint, key, value)
            if rev is not None:
                self.acked.append((key, value, rev))


def read_all(endpoint):
    _, out, _ = harness.etcdctl(endpoint, "get", "w", "--prefix", "-w", "json")
    data = json.loads(out)
    kvs = {}
    for kv in data.get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        kvs[key] = (base64.b64decode(kv.get("value", "")).decode(), kv["mod_revision"],
                    kv["create_revision"])
    return data["header"]["revision"], kvs


def main():
    started = time.monotonic()
    member = harness.Member().start()
    acked = []  # every acknowledged put, all rounds
    try:
        # the last round stops the member with SIGTERM under load: a clean
        # shutdown drains the writer, exits 0 and keeps everything acked too
        for round_no in range(ROUNDS + 1):
            clean = round_no == ROUNDS
            stop = threading.Event()
            writers = [Writer(w, member.endpoint, round_no, stop) for w in range(WRITERS)]
            for w in writers:
                w.start()
            time.sleep(LOAD_SECONDS)
            if clean:
                code = member.stop()
                assert code == 0, "SIGTERM under load: exit code %s\n%s" % (code, member.log_text())
            else:
                member.kill(signal.SIGKILL)  # mid-load: writers have puts in flight
            stop.set()
            for w in writers:
                w.join(timeout=30)
                assert not w.is_alive()
            for w in writers:
                revs = [rev for _, _, rev in w.acked]
                assert revs == sorted(set(revs)), "writer %d: revisions not increasing: %s" % (
                    w.wid, revs)
                acked.extend(w.acked)
            member.start()
            revision, kvs = read_all(member.endpoint)
            for key, value, rev in acked:
                assert key in kvs, "round %d: acknowledged %s (rev %d) is lost" % (
                    round_no, key, rev)
                got_value, mod_rev, create_rev = kvs[key]
                assert got_value == value, (key, got_value, value)
                assert mod_rev == rev == create_rev, (key, mod_rev, create_rev, rev)
            ack_revs = [rev for _, _, rev in acked]
            assert len(ack_revs) == len(set(ack_revs)), "two acknowledged puts share a revision"
            all_revs = [mod for _, mod, _ in kvs.values()]
            assert len(all_revs) == len(set(all_revs))
            assert revision >= max(ack_revs, default=1)
            # keys the member kept but never acked were in flight at the kill; nothing else
            assert revision == 1 + len(kvs), (revision, len(kvs))
            print("round %2d: %4d acked so far, %4d keys, revision %d (%.1fs)" % (
                round_no, len(acked), len(kvs), revision, time.monotonic() - started))
        assert len(acked) >= ROUNDS * WRITERS, "too few writes got through: %d" % len(acked)
    finally:
        member.close()
    print("ok: %d rounds, %d acknowledged puts, none lost (%.1fs)" % (
        ROUNDS, len(acked), time.monotonic() - started))


if __name__ == "__main__":
    main()

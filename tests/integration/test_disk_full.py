"""A full disk: the real `flotilla serve` with its data dir on a small tmpfs
that this test mounts (needs root; without it the test FAILS unless
FLOTILLA_SKIP_PRIVILEGED=1, then it prints SKIP and passes).

1. Puts of 48 KiB values succeed while there is room.
2. WAL full: a filler file leaves less room than one WAL record. A put fails
   at once with gRPC Unavailable "etcdserver: no space left on device" (etcdctl
   and `flotilla put` both show it)
   (Flotilla's text, docs/api.md: etcd has no analogue, it exits on a failed
   disk write; its NOSPACE alarm "mvcc: database space exceeded" is for the
   quota only). A second client still reads everything acknowledged, endpoint
   status works, the process is alive.
3. The filler is deleted: puts succeed again, same process.
4. LMDB full: room for the WAL record but not for LMDB's pages. The entry is
   durable in the WAL, so it can be neither failed nor acked: the put waits
   while the member retries the apply (docs/server.md); meanwhile new puts
   fail at once with "no space left on device", reads work, the process is
   alive. Once the filler goes, the waiting put is answered with success.
5. SIGTERM while an apply waits for room: exit 0; that write was logged, so
   a start without room refuses with "no space left on device (free disk
   space and start again ...)", and the start with room applies it; its
   client was not told it failed.
6. Concurrent writers (several puts per WAL batch, values of 100 B to
   48 KiB) while the disk fills and empties four times, once for longer than
   their deadline: the member stays up and serves reads throughout; every put
   is acked, refused with "no space", or (a deadline passed while it waited
   for LMDB) unknown.
7. SIGKILL and restart on the same data dir: every acknowledged put is there
   with its value and revision, no put that failed with "no space" is, and
   every revision belongs to an acked put, the logged write of step 5 or an
   unknown one (with its value): nothing else was applied.
"""
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import harness

TMPFS_MB = 24
VALUE_BYTES = 48 * 1024
NOSPACE_TEXT = "code = Unavailable desc = etcdserver: no space left on device"
STALL_LOG = "no disk space for LMDB"


def put(endpoint, key, value, timeout_s=10):
    """etcdctl put; returns (revision or None, stderr)."""
    env = dict(os.environ, ETCDCTL_API="3")
    proc = subprocess.run([harness.ETCDCTL, "--endpoints", endpoint, "--dial-timeout", "5s",
                           "--command-timeout", "%ds" % timeout_s, "put", key, value, "-w", "json"],
                          capture_output=True, text=True, env=env, timeout=timeout_s + 20)
    if proc.returncode != 0:
        return None, proc.stderr
    return json.loads(proc.stdout)["header"]["revision"], proc.stderr


def value_for(key):
    return (key + ":") * (VALUE_BYTES // (len(key) + 1))


def read_all(endpoint, serializable=False):
    args = ["--consistency=s"] if serializable else []
    _, out, _ = harness.etcdctl(endpoint, "get", "k", "--prefix", "-w", "json", *args)
    data = json.loads(out)
    kvs = {}
    for kv in data.get("kvs", []):
        kvs[base64.b64decode(kv["key"]).decode()] = (
            base64.b64decode(kv.get("value", "")).decode(), kv["mod_revision"])
    return data["header"]["revision"], kvs


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_to(path, filler, leave):
    """Makes (or grows) filler so that about `leave` bytes stay free."""
    grow = free_bytes(path) - leave
    assert grow > 0, "already fuller than wanted: %d free" % free_bytes(path)
    with open(filler, "ab") as f:
        chunk = b"\0" * (1 << 20)
        while grow > 0:
            n = min(grow, len(chunk))
            f.write(chunk[:n])
            grow -= n
    got = free_bytes(path)
    assert abs(got - leave) <= 8192, "wanted %d free, have %d" % (leave, got)


def wait_for(pred, what, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Checker:
    def __init__(self, member):
        self.member = member
        self.acked = {}     # key -> (value, revision)
        self.refused = []   # keys whose put failed with "no space"
        self.unknown = {}   # key -> value: no answer before the deadline
        self.seq = 0

    def next_key(self, tag):
        self.seq += 1
        return "k/%s/%03d" % (tag, self.seq)

    def put_ok(self, tag):
        key = self.next_key(tag)
        rev, err = put(self.member.endpoint, key, value_for(key))
        assert rev is not None, "put %s failed: %s\n%s" % (key, err, self.member.log_text()[-3000:])
        self.acked[key] = (value_for(key), rev)
        return rev

    def put_refused(self, tag):
        key = self.next_key(tag)
        rev, err = put(self.member.endpoint, key, value_for(key))
        assert rev is None, "put %s succeeded (rev %d) on a full disk" % (key, rev)
        assert NOSPACE_TEXT in err, "put %s: unclear error: %s" % (key, err[-500:])
        self.refused.append(key)

    def put_stuck(self, tag):
        """The first put after the WAL filled: its entry is in Raft's log already
        (the leader proposed it before the append failed), so it can be neither
        refused nor acked: the member keeps retrying the append and the client
        sees a timeout; it may still land once there is room (outcome unknown)."""
        key = self.next_key(tag)
        rev, err = put(self.member.endpoint, key, value_for(key))
        assert rev is None, "put %s succeeded (rev %d) on a full disk" % (key, rev)
        assert NOSPACE_TEXT in err or "request timed out" in err, \
            "put %s: unclear error: %s" % (key, err[-500:])
        self.unknown[key] = value_for(key)

    def put_refused_flotilla(self, tag):
        """The same through our own CLI (`flotilla put KEY` with the value on stdin)."""
        key = self.next_key(tag)
        proc = subprocess.run([harness.FLOTILLA_BIN, "put", "--endpoints", self.member.endpoint,
                               "--command-timeout", "10s", key], input=value_for(key),
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1, "flotilla put %s: exit %d %s" % (key, proc.returncode,
                                                                      proc.stdout)
        assert proc.stderr == "Error: etcdserver: no space left on device\n", proc.stderr
        self.refused.append(key)

    def check_serving(self, when, serializable=False):
        """A second client reads everything acknowledged; the member is alive.
        While LMDB cannot apply, linearizable reads wait (their read index
        includes the committed entries not applied yet): serializable reads
        are served."""
        assert self.member.proc.poll() is None, "%s: member exited with %s\n%s" % (
            when, self.member.proc.returncode, self.member.log_text()[-3000:])
        revision, kvs = read_all(self.member.endpoint, serializable)
        self.check_kvs(when, revision, kvs, extra={})
        _, out, _ = harness.etcdctl(self.member.endpoint, "endpoint", "status", "-w", "json")
        assert json.loads(out)[0]["Status"]["header"]["revision"] == revision

    def check_kvs(self, when, revision, kvs, extra):
        """kvs holds exactly the acked puts (+ extra), each at its revision."""
        want = dict(self.acked)
        want.update(extra)
        for key, (value, rev) in want.items():
            assert key in kvs, "%s: acknowledged %s (rev %d) is missing" % (when, key, rev)
            assert kvs[key][0] == value, "%s: %s has a wrong value" % (when, key)
            assert kvs[key][1] == rev, "%s: %s at rev %d, acked at %d" % (
                when, key, kvs[key][1], rev)
        for key in self.refused:
            assert key not in kvs, "%s: %s was refused with 'no space' but is there" % (when, key)
        for key, (value, _) in kvs.items():
            assert key in want or key in self.unknown, "%s: unexpected key %s" % (when, key)
            if key in self.unknown:
                assert value == self.unknown[key], "%s: %s has a wrong value" % (when, key)
        # one put = one key = one revision; they are dense: nothing else was applied
        revs = sorted(rev for _, rev in kvs.values())
        assert revs == list(range(2, 2 + len(revs))), "%s: revisions %s" % (when, revs)
        assert revision == 1 + len(revs), (when, revision, len(revs))


def concurrent(c, mnt, filler):
    member = c.member
    rnd = random.Random(2)
    lock = threading.Lock()
    stop = threading.Event()
    counts = {"acked": 0, "refused": 0, "unknown": 0}

    def writer(wid):
        wrnd = random.Random(100 + wid)
        n = 0
        while not stop.is_set():
            n += 1
            key = "k/c%d/%04d" % (wid, n)
            value = (key + ":") * (wrnd.choice([100, 3000, 20000, 48000]) // (len(key) + 1))
            rev, err = put(member.endpoint, key, value, timeout_s=3)
            with lock:
                if rev is not None:
                    c.acked[key] = (value, rev)
                    counts["acked"] += 1
                elif NOSPACE_TEXT in err:
                    c.refused.append(key)
                    counts["refused"] += 1
                else:
                    c.unknown[key] = value  # a deadline passed while it waited for LMDB
                    counts["unknown"] += 1

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for w in writers:
        w.start()
    try:
        for hold in (0.5, 1.5, 4.5, 1.0):  # 4.5 s: longer than the writers' deadline
            time.sleep(0.7)
            leave = rnd.choice([0, 8192, 40960, 92160])
            try:  # races with the member's own writes; ENOSPC here is fine
                with open(filler, "wb") as f:
                    f.write(b"\0" * max(0, free_bytes(mnt) - leave))
            except OSError:
                pass
            time.sleep(hold)
            assert member.proc.poll() is None, "member exited with %s\n%s" % (
                member.proc.returncode, member.log_text()[-3000:])
            read_all(member.endpoint, serializable=True)  # served while the disk is full
            os.unlink(filler)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=60)
    assert counts["acked"] > 0 and counts["refused"] > 0, counts
    print("6. concurrent writers while the disk filled 4 times: %s, stalls logged: %d" % (
        counts, member.log_text().count(STALL_LOG)))


def run(mnt):
    data_dir = os.path.join(mnt, "data")
    member = harness.Member(data_dir=data_dir).start()  # its log lives outside the tmpfs
    try:
        c = Checker(member)
        filler = os.path.join(mnt, "filler")

        # 1. room: a few puts, then the member's own writes fill it to ~300 KiB
        for _ in range(3):
            c.put_ok("before")
        fill_to(mnt, filler, 1 << 20)
        while free_bytes(mnt) > 300 * 1024:  # a put takes ~110 KiB (WAL + LMDB)
            c.put_ok("before")
        print("1. %d puts acked, %d bytes free" % (len(c.acked), free_bytes(mnt)))

        # 2. less room than one WAL record: puts fail at once, reads go on
        fill_to(mnt, filler, 20 * 1024)
        c.put_stuck("walfull")
        for _ in range(3):
            c.put_refused("walfull")
        c.put_refused_flotilla("walfull")
        c.check_serving("WAL full")
        assert STALL_LOG not in member.log_text()
        print("2. WAL full: puts refused with %r, reads served" % NOSPACE_TEXT)

        # 3. room again, no restart: the member retries the stuck append (a
        # backoff of at most 1 s) and takes writes again once it went through
        os.unlink(filler)
        pid = member.proc.pid
        deadline = time.monotonic() + 10
        while True:
            key = c.next_key("retry")
            rev, err = put(member.endpoint, key, value_for(key))
            if rev is not None:
                c.acked[key] = (value_for(key), rev)
                break
            assert NOSPACE_TEXT in err and time.monotonic() < deadline, err
            c.refused.append(key)
            time.sleep(0.1)
        for _ in range(3):
            c.put_ok("after")
        assert member.proc.pid == pid
        c.check_serving("after the WAL was full")
        print("3. space freed: puts succeed again, same process")

        # 4. room for the WAL record, not for LMDB's pages (~52 KiB each)
        fill_to(mnt, filler, VALUE_BYTES + 28 * 1024)
        key = c.next_key("lmdbfull")
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            zip(("rev", "err"), put(member.endpoint, key, value_for(key), timeout_s=60))))
        waiter.start()
        wait_for(lambda: STALL_LOG in member.log_text() or member.proc.poll() is not None,
                 "the member to report the LMDB stall")
        time.sleep(0.3)
        assert member.proc.poll() is None, "LMDB full: member exited with %s\n%s" % (
            member.proc.returncode, member.log_text()[-2000:])
        assert waiter.is_alive(), "the logged put was answered while LMDB had no room: %s" % result
        c.put_refused("lmdbfull")
        c.check_serving("LMDB full", serializable=True)
        os.unlink(filler)
        waiter.join(timeout=60)
        assert not waiter.is_alive()
        assert result["rev"] is not None, "the logged put failed: %s" % result["err"]
        c.acked[key] = (value_for(key), result["rev"])
        c.put_ok("after")
        c.check_serving("after LMDB was full")
        print("4. LMDB full: logged put waited and succeeded at rev %d; others refused"
              % result["rev"])

        # 5. SIGTERM while a logged write waits for LMDB
        fill_to(mnt, filler, VALUE_BYTES + 28 * 1024)
        key = c.next_key("stopped")
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            zip(("rev", "err"), put(member.endpoint, key, value_for(key), timeout_s=60))))
        waiter.start()
        log_before = member.log_text().count(STALL_LOG)
        wait_for(lambda: member.log_text().count(STALL_LOG) > log_before,
                 "the second LMDB stall")
        code = member.stop()
        assert code == 0, "SIGTERM while stalled: exit %s\n%s" % (code, member.log_text()[-3000:])
        waiter.join(timeout=60)
        assert result["rev"] is None, "a put that waited for LMDB was acked at a stop"
        assert "no space" not in result["err"], "the logged put was told it failed: %s" % (
            result["err"][-300:])
        # still no room: start-up cannot replay it and says why
        try:
            member.start()
            raise AssertionError("started with no room to replay the logged write")
        except AssertionError as e:
            assert "exited with 1" in str(e), e
        member.proc = None
        assert ("no space left on device (free disk space and start again; nothing is lost)"
                in member.log_text()), member.log_text()[-2000:]
        os.unlink(filler)
        member.start()
        revision, kvs = read_all(member.endpoint)
        # it was logged: the restart applies it, at the next revision
        logged = {key: (value_for(key), revision)}  # the newest write
        c.check_kvs("restart after SIGTERM", revision, kvs, extra=logged)
        c.acked.update(logged)
        c.put_ok("after")
        print("5. SIGTERM while stalled: exit 0; no start without room; the logged write "
              "applied at restart")

        # 6. concurrent writers while the disk fills and empties
        concurrent(c, mnt, filler)
        c.check_serving("after the concurrent phase")

        # 7. SIGKILL, restart on the same data dir
        member.kill(signal.SIGKILL)
        member.start()
        revision, kvs = read_all(member.endpoint)
        c.check_kvs("restart after SIGKILL", revision, kvs, extra={})
        assert member.stop() == 0
        print("7. SIGKILL + restart: %d acked puts present, %d refused absent, %d of %d unknown "
              "present, revision %d" % (len(c.acked), len(c.refused),
                                        sum(1 for k in c.unknown if k in kvs), len(c.unknown),
                                        revision))
    finally:
        member.close()
        try:
            os.unlink(member.log_path)
        except OSError:
            pass


def main():
    started = time.monotonic()
    skip_ok = os.environ.get("FLOTILLA_SKIP_PRIVILEGED") == "1"
    mnt = tempfile.mkdtemp(prefix="flotilla-diskfull-")
    mounted = False
    try:
        problem = None
        if os.geteuid() != 0:
            problem = "not root (euid %d)" % os.geteuid()
        else:
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % TMPFS_MB, "tmpfs",
                                   mnt], capture_output=True, text=True)
            if proc.returncode != 0:
                problem = "mount -t tmpfs failed: %s" % proc.stderr.strip()
            else:
                mounted = True
        if problem:
            if skip_ok:
                print("SKIP: test_disk_full needs to mount a tmpfs: %s" % problem)
                return 0
            print("FAIL: test_disk_full needs root to mount a tmpfs (%s); set "
                  "FLOTILLA_SKIP_PRIVILEGED=1 to skip it" % problem, file=sys.stderr)
            return 1
        run(mnt)
    finally:
        if mounted:
            subprocess.run(["umount", mnt], check=False)
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt], check=False)
        try:
            os.rmdir(mnt)
        except OSError:
            pass
    print("ok (%.1fs)" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checkpoints bound the WAL (docs/server.md, "Checkpoints").

A real member with 8 KiB WAL segments and a checkpoint every 200 entries:
1. 4000 puts (flotilla bench, 16 in flight): the number of files in
   data-dir/wal, sampled during the load, stays small (without release it
   would be ~150), the oldest segments are gone (first index > 1) and the
   log says the checkpoint released entries.
2. etcdctl writers put distinct keys under load, the member is SIGKILLed
   mid-load and restarted: every acknowledged put is there with the revision
   it answered, and the bench keys are all there.
3. SIGTERM: exit 0, the stop line counts checkpoints; the restart replays
   nothing (the clean stop checkpointed).
4. db/ deleted: the WAL no longer has the entries LMDB lost, so the start
   is refused (exit 1) with a message naming the gap.
"""
import json
import os
import re
import shutil
import subprocess
import threading
import time

import harness
from test_crash_recovery import Writer, read_all

SEGMENT_BYTES = 8192
SNAPSHOT_COUNT = 200
BENCH_TOTAL = 4000
MAX_WAL_FILES = 30


def wal_files(member):
    """(file count, smallest first index in the names) of data-dir/wal."""
    wal_dir = os.path.join(member.data_dir, "wal")
    names = [n for n in os.listdir(wal_dir) if n.endswith(".wal")]
    firsts = [int(n[:-4].split("-")[1], 16) for n in names]
    return len(names), (min(firsts) if firsts else 0)


def count_keys(endpoint):
    _, out, _ = harness.etcdctl(endpoint, "get", "", "--prefix", "--limit", "1", "-w",
                                "json")
    return json.loads(out).get("count", 0)


def main():
    started = time.monotonic()
    member = harness.Member(extra_args=["--wal-segment-bytes", str(SEGMENT_BYTES),
                                        "--snapshot-count", str(SNAPSHOT_COUNT)]).start()
    try:
        # 1. bulk load; sample the WAL dir while it runs
        bench = subprocess.Popen([harness.FLOTILLA_BIN, "bench", "put", "--endpoints",
                                  member.endpoint, "--clients", "16", "--total", str(BENCH_TOTAL),
                                  "--sequential", "--key-space", str(BENCH_TOTAL), "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        most = 0
        while bench.poll() is None:
            most = max(most, wal_files(member)[0])
            time.sleep(0.05)
        out, err = bench.communicate(timeout=60)
        assert bench.returncode == 0, (out, err)
        assert json.loads(out.strip().splitlines()[-1]).get("errors", 0) == 0, out
        files, first = wal_files(member)
        most = max(most, files)
        print("bench: %d puts; WAL files at most %d, now %d, first index %d"
              % (BENCH_TOTAL, most, files, first))
        assert most <= MAX_WAL_FILES, most
        assert first > BENCH_TOTAL // 2, first  # old segments were released
        assert "checkpoint released WAL entries" in member.log_text()
        assert count_keys(member.endpoint) == BENCH_TOTAL

        # 2. acknowledged puts under load, SIGKILL mid-load, restart
        stop = threading.Event()
        writers = [Writer(w, member.endpoint, 0, stop) for w in range(3)]
        for w in writers:
            w.start()
        time.sleep(1.5)
        member.kill()
        stop.set()
        for w in writers:
            w.join(timeout=30)
        acked = [a for w in writers for a in w.acked]
        assert acked, "no put was acknowledged before the kill"
        member.start()
        rev, kvs = read_all(member.endpoint)
        for key, value, revision in acked:
            assert key in kvs, "acked key %s lost after SIGKILL" % key
            got_value, mod_rev, _ = kvs[key]
            assert got_value == value and mod_rev == revision, (key, kvs[key], revision)
        assert count_keys(member.endpoint) >= BENCH_TOTAL + len(acked)
        files, first = wal_files(member)
        print("SIGKILL: %d acked puts all present at their revisions (revision %d); WAL files %d,"
              " first index %d" % (len(acked), rev, files, first))
        assert files <= MAX_WAL_FILES, files

        # 3. clean stop checkpoints; the restart replays nothing
        assert member.stop() == 0, member.log_text()[-3000:]
        stops = re.findall(r'msg="member stopped" .*checkpoints=(\d+) last_checkpoint_index=(\d+)',
                           member.log_text())
        assert stops and int(stops[-1][0]) >= 1, stops
        member.start()
        ready = re.findall(r'msg="member ready" .*replayed=(\d+)', member.log_text())
        assert ready[-1] == "0", ready
        assert count_keys(member.endpoint) >= BENCH_TOTAL + len(acked)
        assert member.stop() == 0

        # 4. db/ lost: the released WAL cannot rebuild it, so refuse to start
        shutil.rmtree(os.path.join(member.data_dir, "db"))
        url = "http://127.0.0.1:%d" % member.port
        r = subprocess.run([harness.FLOTILLA_BIN, "serve", "--data-dir", member.data_dir,
                            "--listen-client-urls", url, "--wal-segment-bytes",
                            str(SEGMENT_BYTES)], capture_output=True, text=True, timeout=60)
        print("without db/: exit %d: %s" % (r.returncode, r.stderr.strip().splitlines()[-1]))
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "are missing" in r.stderr and "gap" in r.stderr, r.stderr
    finally:
        member.close()
    print("ok in %.1fs" % (time.monotonic() - started))


if __name__ == "__main__":
    main()

"""The checker must catch a planted safety bug: members started with
FLOTILLA_TEST_UNSAFE_LOCAL_READS=1 serve linearizable reads locally (no
ReadIndex), and the nemesis cuts one member at a time off from the others while
its clients keep reading from it. This test PASSES only if the checker reports
a violation (a stale read). Up to 3 runs; it stops at the first violation.

With CLUSTER_BINARY=etcd (no fault-file or unsafe-read hook) the stand-in is
etcd's own serializable reads under kill/pause faults: a follower serves its
local state, which lags the leader's commits, so stale reads appear.
Env: JEPSEN_SEED (first run's seed; later runs add 1), JEPSEN_SECONDS (per
run, default 20).
"""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jepsen"))
import run  # noqa: E402  (re-executes under Debian's python3 if etcd3 is missing)
import cluster as cl  # noqa: E402

MAX_RUNS = 3


def main():
    binary = cl.default_binary()
    seed = int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else random.SystemRandom().randrange(1 << 30)
    seconds = float(os.environ.get("JEPSEN_SECONDS", "20"))
    total_s = ops = violations = 0
    runs = 0
    histories = []
    try:
        for runs in range(1, MAX_RUNS + 1):
            if binary == "flotilla":
                rep = run.run(binary, members=3, seconds=seconds, seed=seed + runs - 1, planted=True)
            else:
                rep = run.run(binary, members=3, seconds=seconds, seed=seed + runs - 1, serializable_reads=True)
            total_s += rep.seconds
            ops += rep.ops_checked
            violations += rep.violations
            if rep.history_path:
                histories.append(rep.history_path)
            if rep.result.valid is False:
                break
    except cl.NotACluster as e:
        cl.skip(str(e))
    print("runs=%d seconds=%.1f ops_checked=%d violations=%d" % (runs, total_s, ops, violations))
    assert violations > 0, "planted stale reads were not caught in %d runs (seeds %d..%d)" % (
        runs, seed, seed + runs - 1)
    for path in histories:  # the violation was the expected outcome
        os.unlink(path)
    print("PASS (violation found, as planted)")


if __name__ == "__main__":
    main()

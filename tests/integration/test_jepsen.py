"""Jepsen-style run (tests/jepsen): a 3-member cluster under every fault the
binary supports (kill, kill-leader, pause; with flotilla also partitions and an
isolated leader), register clients on every member, then a linearizability
check of the whole history. Passes only if the history is linearizable, faults
were injected and enough ops were checked.

Env: CLUSTER_BINARY=etcd|flotilla (default flotilla), JEPSEN_SEED (printed;
random if unset), JEPSEN_SECONDS (default 40). Reproduce a failure with
python3 tests/jepsen/run.py --binary B --members 3 --seconds N --seed S, or
re-check the saved history the output names. Skips (77) while flotilla does
not form a cluster yet.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jepsen"))
import run  # noqa: E402  (re-executes under Debian's python3 if etcd3 is missing)
import cluster as cl  # noqa: E402


def main():
    binary = cl.default_binary()
    seed = int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else None
    seconds = float(os.environ.get("JEPSEN_SECONDS", "40"))
    try:
        rep = run.run(binary, members=3, seconds=seconds, seed=seed)
    except cl.NotACluster as e:
        cl.skip(str(e))
    print("runs=1 seconds=%.1f ops_checked=%d violations=%d" % (rep.seconds, rep.ops_checked, rep.violations))
    assert rep.result.valid is True, "history not linearizable (%s); seed %d; history %s" % (
        rep.result.summary(), rep.seed, rep.history_path)
    injected = sum(n for kind, n in rep.faults.items() if kind not in ("restart", "resume", "heal"))
    assert injected >= 3, "only %d faults injected: %s" % (injected, rep.faults)
    assert rep.ops_checked >= 500, "only %d ops checked" % rep.ops_checked
    print("PASS")


if __name__ == "__main__":
    main()

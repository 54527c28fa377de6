#!/usr/bin/env python3
"""A Jepsen-style run: start a cluster, run register clients under a seeded
nemesis, heal, read every key back, and check the history for linearizability.

By hand:
  python3 tests/jepsen/run.py --binary flotilla|etcd --members 3|5 --seconds N --seed S
Options: --faults kill,kill-leader,pause,partition,isolate-leader,isolate
  --planted (flotilla: members get FLOTILLA_TEST_UNSAFE_LOCAL_READS=1 and the
  nemesis isolates one member at a time; the run must find a violation)
  --serializable-reads (clients read with serializable Range: the same kind of
  stale read, planted on etcd, where no partition hook exists)
  --keep (keep the history file even when the run passes).
Exit: 0 when the result is what was expected (linearizable, or a violation
with --planted/--serializable-reads), 1 otherwise, 77 if the binary does not
form a cluster yet.

The same seed gives the same client choices and the same nemesis schedule; the
interleaving with the servers is real, so a failure is reproduced by running the
seed again (often) and always by re-checking its saved history:
  python3 tests/jepsen/checker.py <history.jsonl>
"""
import argparse
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

try:
    import etcd3  # noqa: F401
except ImportError:
    # python3-etcd3 is a Debian package: it lives in Debian's python3 only.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

import checker  # noqa: E402
import cluster as cl  # noqa: E402
import history as hist  # noqa: E402
import nemesis as nem  # noqa: E402
import workload  # noqa: E402


class Report:
    def __init__(self):
        self.seed = None
        self.seconds = 0.0
        self.counts = {}
        self.faults = {}
        self.result = None
        self.history_path = None
        self.errors = {}

    @property
    def ops_checked(self):
        return self.result.ops_checked if self.result else 0

    @property
    def violations(self):
        return len(self.result.violations) if self.result else 0

    def line(self):
        return "jepsen: runs=1 seed=%d seconds=%.1f ops_checked=%d violations=%d linearizable=%s" % (
            self.seed, self.seconds, self.ops_checked, self.violations,
            {True: "yes", False: "NO", None: "unknown"}[self.result.valid if self.result else None])


def run(binary, members=3, seconds=40.0, seed=None, clients_per_member=2, key_slots=4, ops_per_key=100,
        max_ops=None, kinds=None, planted=False, serializable_reads=False, keep=False,
        election_ms=1000, heartbeat_ms=100, op_timeout_s=1.5, max_steps_per_key=2_000_000):
    rep = Report()
    if max_ops is None:  # time is the usual bound; ops bound it on a fast machine
        max_ops = int(200 * members * clients_per_member * seconds)
    rep.seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
    if kinds is None:
        kinds = ("isolate",) if planted else nem.default_kinds(binary)
    print("jepsen: seed=%d binary=%s members=%d seconds=%.0f faults=%s planted=%s serializable_reads=%s"
          % (rep.seed, binary, members, seconds, ",".join(kinds), planted, serializable_reads), flush=True)
    env = {cl.UNSAFE_READS_ENV: "1"} if planted else {}
    started = time.monotonic()
    with cl.Cluster(members, binary=binary, election_ms=election_ms, heartbeat_ms=heartbeat_ms,
                    member_env=lambda i: env) as c:
        _require_hooks(binary, planted, kinds)
        history = hist.History()
        keys = workload.Keys("jepsen-%d-" % rep.seed, key_slots, ops_per_key)
        stop = threading.Event()
        n_clients = members * clients_per_member
        clients = [workload.Client(i, n_clients, c.members[i % members], keys, history,
                                   workload.make_rng(rep.seed, i), stop, max(1, max_ops // n_clients),
                                   timeout_s=op_timeout_s, serializable_reads=serializable_reads,
                                   # planted: reads are what can go stale; the
                                   # cut-off member's writes only time out
                                   read_ratio=0.8 if planted else 0.5)
                   for i in range(n_clients)]
        # planted: longer cuts, so the majority overwrites what the cut-off member serves
        hold_s = (2.5, 5.0) if planted else (1.5, 4.0)
        nemesis = nem.Nemesis(c, rep.seed, kinds, hold_s=hold_s) if kinds else None
        t_run = time.monotonic()
        for t in clients:
            t.start()
        if nemesis:
            nemesis.start()
        deadline = t_run + seconds
        while time.monotonic() < deadline and any(t.is_alive() for t in clients):
            time.sleep(0.1)
        stop.set()
        if nemesis:
            nemesis.stop.set()
            nemesis.join(timeout=120)
            assert not nemesis.is_alive(), "nemesis did not stop"
        for t in clients:
            t.join(timeout=op_timeout_s * 4 + 10)
            assert not t.is_alive(), "%s did not stop" % t.name
        c.wait_for_leader(30)
        missing = workload.final_reads(c.members, keys.used, history, process_base=10 ** 6)
        rep.seconds = time.monotonic() - t_run
        for t in clients:
            for k, v in t.errors.items():
                rep.errors[k] = rep.errors.get(k, 0) + v
        rep.faults = nemesis.counts() if nemesis else {}
        if nemesis and nemesis.error:
            raise AssertionError("nemesis failed: %r" % (nemesis.error,))
        assert missing == 0, "%d final reads never succeeded after healing" % missing
    fd, rep.history_path = tempfile.mkstemp(prefix="flotilla-jepsen-%d-" % rep.seed, suffix=".jsonl")
    os.close(fd)
    history.save(rep.history_path)
    rep.counts = history.counts()
    t_check = time.monotonic()
    rep.result = checker.check_events(history.events, max_steps_per_key)
    if rep.result.valid is True and not keep:
        os.unlink(rep.history_path)
        rep.history_path = None
    _print(rep, time.monotonic() - t_check, time.monotonic() - started)
    return rep


def _require_hooks(binary, planted, kinds):
    """A flotilla cluster must carry the test hooks this run uses: a missing one
    is an error, not a skip, so a run never passes without its faults."""
    if binary != "flotilla":
        return
    need = []
    if any(k in ("partition", "isolate-leader", "isolate") for k in kinds):
        need.append(cl.FAULT_FILE_ENV)
    if planted:
        need.append(cl.UNSAFE_READS_ENV)
    missing = [e for e in need if not cl.binary_has_hook(binary, e)]
    assert not missing, "%s has no %s hook (see docs/fault-tests.md)" % (cl.FLOTILLA_BIN, ", ".join(missing))


def _print(rep, check_s, total_s):
    by_outcome = {}
    for (f, outcome), n in sorted(rep.counts.items()):
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    print("jepsen: ops by outcome: %s" % " ".join("%s=%d" % kv for kv in sorted(by_outcome.items())))
    print("jepsen: ops by kind: %s" % " ".join("%s/%s=%d" % (f, o, n) for (f, o), n in sorted(rep.counts.items())))
    print("jepsen: faults injected: %s" % (" ".join("%s=%d" % kv for kv in sorted(rep.faults.items())) or "none"))
    if rep.errors:
        print("jepsen: client errors: %s" % " ".join("%s=%d" % kv for kv in sorted(rep.errors.items())))
    for k in rep.result.violations[:3]:
        print(k.explanation)
    for k in rep.result.unknown[:3]:
        print(k.explanation)
    print("jepsen: checker: %s (%.1fs)" % (rep.result.summary(), check_s))
    if rep.history_path:
        print("jepsen: history: %s (re-check: python3 tests/jepsen/checker.py %s)" % (rep.history_path, rep.history_path))
    print(rep.line() + " total_s=%.1f" % total_s, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", choices=("flotilla", "etcd"), default=cl.default_binary())
    ap.add_argument("--members", type=int, choices=(3, 5), default=3)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--faults", default=None, help="comma list of fault kinds (default: all the binary supports)")
    ap.add_argument("--clients-per-member", type=int, default=2)
    ap.add_argument("--max-ops", type=int, default=None, help="default 200 per client per second")
    ap.add_argument("--planted", action="store_true")
    ap.add_argument("--serializable-reads", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    kinds = tuple(a.faults.split(",")) if a.faults else None
    if kinds == ("none",):
        kinds = ()
    try:
        rep = run(a.binary, a.members, a.seconds, a.seed, a.clients_per_member, max_ops=a.max_ops, kinds=kinds,
                  planted=a.planted, serializable_reads=a.serializable_reads, keep=a.keep)
    except cl.NotACluster as e:
        print("SKIP: %s" % e, flush=True)
        return 77
    expect_violation = a.planted or a.serializable_reads
    if expect_violation:
        return 0 if rep.result.valid is False else 1
    return 0 if rep.result.valid is True else 1


if __name__ == "__main__":
    sys.exit(main())

"""The nemesis: one seeded thread that cycles faults through a cluster.Cluster.

Each cycle picks one fault from the enabled kinds, holds it for a while, undoes
it, and lets the cluster run healthy for a while:
  kill            SIGKILL a random member, restart it after the hold
  kill-leader     the same, aimed at the current leader
  pause           SIGSTOP a random member (the leader half the time), SIGCONT after
  partition       a random minority cut off from the majority (fault files)
  isolate-leader  the leader alone on one side
  isolate         one random member alone on one side (the planted-bug run)
Partitions need flotilla's fault-file hook; with etcd only kill/pause run.
Everything it did is logged with times and undone by heal_all(), also when the
run is stopped mid-fault. Its choices come only from its seed.
"""
import random
import threading
import time

KILL_KINDS = ("kill", "kill-leader", "pause")
PARTITION_KINDS = ("partition", "isolate-leader")


def default_kinds(binary):
    return KILL_KINDS + (PARTITION_KINDS if binary == "flotilla" else ())


class Nemesis(threading.Thread):
    def __init__(self, cluster, seed, kinds, hold_s=(1.5, 4.0), calm_s=(1.0, 3.0), max_faults=100):
        super().__init__(name="nemesis", daemon=True)
        self.cluster = cluster
        self.rng = random.Random("%d/nemesis" % seed)
        self.kinds = list(kinds)
        assert self.kinds, "no fault kinds enabled"
        for k in self.kinds:
            assert k in KILL_KINDS + PARTITION_KINDS + ("isolate",), k
        self.hold_s = hold_s
        self.calm_s = calm_s
        self.max_faults = max_faults
        self.stop = threading.Event()
        self.faults = []  # (monotonic s, kind, detail)
        self.error = None
        self.t0 = time.monotonic()

    def _log(self, kind, detail):
        t = time.monotonic() - self.t0
        self.faults.append((t, kind, detail))
        print("[nemesis %7.2fs] %s %s" % (t, kind, detail), flush=True)

    def _wait(self, span):
        self.stop.wait(self.rng.uniform(*span))

    def _leader_or_random(self):
        ld = None
        try:
            ld = self.cluster.leader()
        except Exception:
            pass
        return ld or self.rng.choice(self.cluster.members)

    def run(self):
        try:
            self._wait(self.calm_s)
            while not self.stop.is_set() and len(self.faults) < self.max_faults:
                self._one(self.rng.choice(self.kinds))
                self._wait(self.calm_s)
        except Exception as e:  # reported by run.py; the run then fails
            self.error = e
            print("[nemesis] error: %r" % (e,), flush=True)
        finally:
            self.heal_all()

    def _one(self, kind):
        c = self.cluster
        if kind in ("kill", "kill-leader"):
            m = self._leader_or_random() if kind == "kill-leader" else self.rng.choice(c.members)
            m.kill()
            self._log(kind, m.name)
            self._wait(self.hold_s)
            m.start()
            m.wait_listening()
            self._log("restart", m.name)
        elif kind == "pause":
            m = self._leader_or_random() if self.rng.random() < 0.5 else self.rng.choice(c.members)
            m.pause()
            self._log(kind, m.name)
            self._wait(self.hold_s)
            m.resume()
            self._log("resume", m.name)
        else:
            if kind == "partition":
                k = self.rng.randint(1, (len(c.members) - 1) // 2)
                side = self.rng.sample(c.members, k)
            elif kind == "isolate-leader":
                side = [self._leader_or_random()]
            else:
                side = [self.rng.choice(c.members)]
            c.partition(side)
            self._log(kind, ",".join(m.name for m in side) + " cut off")
            self._wait(self.hold_s)
            c.heal()
            self._log("heal", "")

    def heal_all(self):
        """Undoes every fault: resume paused, restart dead members, heal partitions."""
        c = self.cluster
        for m in c.members:
            if m.paused:
                m.resume()
                self._log("resume", m.name)
            if not m.alive():
                m.start()
                m.wait_listening()
                self._log("restart", m.name)
        if c.binary == "flotilla":
            c.heal()

    def counts(self):
        out = {}
        for _, kind, _ in self.faults:
            out[kind] = out.get(kind, 0) + 1
        return out


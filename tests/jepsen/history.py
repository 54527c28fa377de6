"""A history of client operations, as Jepsen records it, and its pairing into ops.

Events. Every operation is two events from one client process: an `invoke`
when the client is about to send it and a completion when the answer came back:
  ok    it happened, with this result
  fail  it certainly did not happen (no effect; e.g. a read that errored)
  info  unknown: it may or may not have happened, now or at any later time
        (a write that timed out or lost its connection)
Times are time.monotonic_ns() of the one process that ran all clients, so
"A completed before B was invoked" is a fact about real time.

Operations on a register key (`value` is what the client asked, `result` what
came back):
  read            value None         result: the value read (None = absent)
  write           value v            result None
  cas             value [old, new]   result True (swapped) / False (compare failed)

A history is saved as JSON lines (one event a line) so a failure can be checked
again by hand: python3 checker.py history.jsonl.
"""
import json
import threading
import time

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
FUNCTIONS = ("read", "write", "cas")


class Op:
    """One paired operation. complete_ns is None for info (it never returned)."""

    __slots__ = ("id", "process", "key", "f", "value", "result", "outcome", "invoke_ns", "complete_ns")

    def __init__(self, id, process, key, f, value, result, outcome, invoke_ns, complete_ns):
        assert f in FUNCTIONS, f
        assert outcome in (OK, FAIL, INFO), outcome
        assert (complete_ns is None) == (outcome == INFO)
        assert complete_ns is None or complete_ns >= invoke_ns
        self.id = id
        self.process = process
        self.key = key
        self.f = f
        self.value = value
        self.result = result
        self.outcome = outcome
        self.invoke_ns = invoke_ns
        self.complete_ns = complete_ns

    def describe(self, t0_ns=0):
        if self.f == "read":
            what = "read -> %r" % (self.result,) if self.outcome == OK else "read"
        elif self.f == "write":
            what = "write %r" % (self.value,)
        else:
            what = "cas %r->%r" % (self.value[0], self.value[1])
            if self.outcome == OK:
                what += " swapped" if self.result else " compare-failed"
        end = "..." if self.complete_ns is None else "%.6f" % ((self.complete_ns - t0_ns) / 1e9)
        return "#%d p%d %s %s [%.6f, %s]" % (self.id, self.process, self.outcome.upper(), what,
                                            (self.invoke_ns - t0_ns) / 1e9, end)

    def __repr__(self):
        return self.describe()


class History:
    """Thread-safe recorder of invoke/completion events, bounded in size."""

    def __init__(self, max_events=2_000_000):
        self.events = []
        self.max_events = max_events
        self._lock = threading.Lock()

    def _add(self, ev):
        with self._lock:
            assert len(self.events) < self.max_events, "history is full"
            self.events.append(ev)

    def invoke(self, process, key, f, value=None):
        assert f in FUNCTIONS
        self._add({"type": INVOKE, "process": process, "key": key, "f": f, "value": value,
                   "time": time.monotonic_ns()})

    def complete(self, process, outcome, result=None, error=None):
        assert outcome in (OK, FAIL, INFO)
        ev = {"type": outcome, "process": process, "result": result, "time": time.monotonic_ns()}
        if error is not None:
            ev["error"] = error
        self._add(ev)

    def save(self, path):
        with self._lock, open(path, "w") as f:
            for ev in self.events:
                f.write(json.dumps(ev) + "\n")

    def counts(self):
        """{(f, outcome): count} over completed events."""
        ops = pair(self.events)
        c = {}
        for op in ops:
            c[(op.f, op.outcome)] = c.get((op.f, op.outcome), 0) + 1
        return c


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pair(events):
    """Pairs events into Ops. An invoke with no completion (the run ended while it
    was in flight) is info. A process has at most one op in flight."""
    pending = {}
    ops = []
    for ev in events:
        p = ev["process"]
        if ev["type"] == INVOKE:
            assert p not in pending, "process %s invoked twice without completing" % p
            pending[p] = ev
            continue
        inv = pending.pop(p, None)
        assert inv is not None, "completion without invoke: %r" % (ev,)
        value = inv["value"]
        if inv["f"] == "cas":
            value = list(value)
        ops.append(Op(len(ops), p, inv["key"], inv["f"], value, ev.get("result"), ev["type"],
                      inv["time"], None if ev["type"] == INFO else ev["time"]))
    for p, inv in pending.items():
        value = list(inv["value"]) if inv["f"] == "cas" else inv["value"]
        ops.append(Op(len(ops), p, inv["key"], inv["f"], value, None, INFO, inv["time"], None))
    return ops

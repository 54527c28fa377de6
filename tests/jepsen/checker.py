"""Linearizability checker for a history of register operations on many keys.

What it decides: whether the ops on each key, taken alone, can be put in one
sequential order that (1) respects real time (if A completed before B was
invoked, A comes first) and (2) is legal for a register (model below). Keys are
independent registers, so the history is linearizable iff every key's
sub-history is (P-compositionality, Herlihy & Wing); checking them one at a
time keeps the search small.

Model (state: the value, None = absent):
  read -> v        legal iff state == v; no change
  write v          always legal; state := v
  cas old->new     swapped: legal iff state == old; state := new
                   compare-failed: legal iff state != old; no change
Outcomes: fail ops and info reads had no effect and are dropped. An info write
or cas may take effect at any point after its invoke, or never; "never" is the
same as "after everything else", so an info op gets a return time of +inf and an
info cas, when placed, swaps iff state == old (a cas whose compare ran and
failed is indistinguishable from one that never ran). Left like that, each
info op doubles the search, so _prepare narrows them exactly: it drops those no
op could notice and gives the others a deadline, optionally with "never"
(dropped at the deadline) or "only right before a failed cas it explains".

Search: Wing & Gong's backtracking over a linked list of call/return events,
with Lowe's memoization of (set of linearized ops, state) so that a
configuration seen once is never explored again (as Porcupine does). The search
succeeds as soon as every op with a finite return time is linearized (or, if
optional, dropped): the open info ops left can always be placed last. It is
bounded by a step budget; past it the answer for that key is "unknown", never
"valid". test_checker.py compares it with a brute-force checker on thousands
of random small histories.

On a violation it reports the key, the op that could not be linearized (the
first return event reached in the deepest partial linearization found), the
state there, the last ops of that partial order, and the ops that overlap the
culprit in time.

Usage by hand: python3 checker.py history.jsonl
"""
import bisect
import sys

import history as hist

INF = float("inf")


def _step(state, op):
    """(legal, next state) for op applied to state."""
    if op.f == "read":
        return state == op.result, state
    if op.f == "write":
        return True, op.value
    old, new = op.value
    if op.outcome == hist.INFO:
        return True, (new if state == old else state)
    if op.result:
        return state == old, new
    return state != old, state


class KeyResult:
    def __init__(self, key, valid, ops, steps, explanation=None):
        self.key = key
        self.valid = valid  # True, False, or None (unknown: budget exhausted)
        self.ops = ops
        self.steps = steps
        self.explanation = explanation


def _new_value(op):
    return op.value if op.f == "write" else op.value[1]


def _prepare(ops):
    """The ops that constrain the search, each as (op, deadline, optional, lonely).

    Dropped: fail ops and info reads (no effect). Every other op must be
    linearized before its deadline (its completion; None = +inf, at any time),
    unless it is optional: then it may instead never happen.

    Info writes are where the search explodes (each one left open doubles it),
    so an info write/cas X with new value v is narrowed, exactly:
    Its observers are the reads returning v and the cas with old v. A
    compare-failed cas C with old x can profit from X without observing v: C
    placed after X, legal since v != x, where without X the state would be x.
    That needs C placed after X (so X before C's completion) and the state just
    before X to be x (so X before dead_at(x), see _dead_at).
    Take any linearization with X placed after every observer's completion and
    after min(C's completion, dead_at(C's old)) for every compare-failed C. After
    X, up to the next write, the state is v and no op there observes it (reads
    would read v, a swapping cas would have old v); a compare-failed cas there is
    legal with or without X (the state before X is not its old); an info cas is
    always legal. Removing X leaves a linearization. So X may be taken to happen
    before the latest of those times (its deadline), or never:
      - no such time after X's invoke: X is dropped;
      - an observer never returned: X stays open (deadline None);
      - if an ok read returned v or an ok cas swapped from v, and X is the only
        op writing v, "never" would leave them unexplained, so X is
        mandatory; else optional;
      - X without observers is lonely: the ops after it up to the next write can
        only be compare-failed cas (and info cas that did nothing, which may as
        well never have happened), and X matters only to one whose old is the
        state just before X. Moving X down to right before the first such cas
        keeps every op legal and stays within X's deadline (that cas's own care
        point bounds it), so the search places a lonely X only as a pair: X,
        then at once a compare-failed cas that is illegal without it. Placed
        alone anywhere, X would double the search for every op it overlaps."""
    ops = [op for op in ops if op.outcome != hist.FAIL and not (op.f == "read" and op.outcome == hist.INFO)]
    observers = {}  # value -> ops observing it
    writers = {}  # value -> ops writing it
    for op in ops:
        if op.f == "read":
            observers.setdefault(op.result, []).append(op)
        elif op.f == "cas":
            observers.setdefault(op.value[0], []).append(op)
        if op.f != "read":
            writers.setdefault(_new_value(op), []).append(op)
    dead_at = _dead_at(ops, writers)
    failed_cas = [op for op in ops if op.f == "cas" and op.outcome == hist.OK and not op.result
                  and op.invoke_ns <= dead_at(op.value[0])]
    out = []
    for op in ops:
        if op.outcome != hist.INFO:
            out.append((op, op.complete_ns, False, False))
            continue
        v = _new_value(op)
        seen = observers.get(v, [])
        if any(c.complete_ns is None for c in seen):
            out.append((op, None, False, False))
            continue
        # by when X must be placed for each op that could care about it
        care = [c.complete_ns for c in seen]
        for c in failed_cas:
            t = min(c.complete_ns, dead_at(c.value[0]))
            if t >= op.invoke_ns:  # equal times are concurrent
                care.append(t)
        if not care:
            continue
        deadline = max(max(care), op.invoke_ns)
        # only an ok read of v or a swapped cas from v needs X to have happened
        needy = any(c.outcome == hist.OK and (c.f == "read" or c.result) for c in seen)
        out.append((op, deadline, not (needy and len(writers[v]) == 1), not seen))
    return out


def _dead_at(ops, writers):
    """dead_at(x): a time after which the register can never again hold x.

    If every op writing x returned by time T (x = None: the initial value,
    T = -inf) and an ok write W2 was invoked after T, then every writer of x is
    placed before W2, W2 overwrites x, and nothing writes x again: from W2's
    completion on, state != x. +inf when no such W2 exists (or a writer of x
    never returned, or nothing writes x and x is not the initial value, in which
    case x is never held at all and dead_at is -inf)."""
    muts = sorted((op.invoke_ns, op.complete_ns) for op in ops
                  if op.outcome == hist.OK and (op.f == "write" or (op.f == "cas" and op.result)))
    invokes = [m[0] for m in muts]
    suffix_min = [INF] * (len(muts) + 1)
    for k in range(len(muts) - 1, -1, -1):
        suffix_min[k] = min(muts[k][1], suffix_min[k + 1])
    cache = {}

    def dead_at(x):
        if x in cache:
            return cache[x]
        ws = writers.get(x, [])
        if not ws and x is not None:
            t = -INF
        elif any(w.complete_ns is None for w in ws):
            t = INF
        else:
            last = max((w.complete_ns for w in ws), default=-INF)
            t = suffix_min[bisect.bisect_right(invokes, last)]
        cache[x] = t
        return t

    return dead_at


def check_key(key, ops, max_steps=2_000_000, initial=None):
    """Checks one key's ops (a list of history.Op). Returns a KeyResult."""
    prepared = _prepare(ops)
    ops = [p[0] for p in prepared]
    ret_ns = [p[1] for p in prepared]
    optional = [p[2] for p in prepared]
    lonely = [p[3] for p in prepared]
    n = len(ops)
    if n == 0:
        return KeyResult(key, True, 0, 0)
    failed_cas = [op.f == "cas" and op.outcome == hist.OK and not op.result for op in ops]
    # Events: call of op i is node i, its return is node n + i; node 2n is the head.
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke_ns, 0, i))
        events.append((INF if ret_ns[i] is None else ret_ns[i], 1, n + i))
    # On equal times a call sorts before a return: equal-time ops count as
    # concurrent, which only ever allows more orders (no false violations).
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    prev_node = head
    for _, _, node in events:
        nxt[prev_node] = node
        prv[node] = prev_node
        prev_node = node
    nxt[prev_node] = -1

    def lift(i):
        for node in (i, n + i):
            nxt[prv[node]] = nxt[node]
            if nxt[node] != -1:
                prv[nxt[node]] = prv[node]

    def unlift(i):
        for node in (n + i, i):
            nxt[prv[node]] = node
            if nxt[node] != -1:
                prv[nxt[node]] = node

    must = sum(1 for r in ret_ns if r is not None)  # ops that must be linearized or dropped
    st = {"state": initial, "mask": 0, "done": 0}
    seen = set()
    # entries: ("op", i, None, state before) linearized; ("drop", i, None, s)
    # dropped (never happened); ("pair", x, c, s) lonely x then cas c
    stack = []
    best = [-1, None, None, None]  # depth, linearized order, state, blocking op

    def push(kind, i, c, new_state):
        mask = st["mask"] | (1 << i) | (0 if c is None else 1 << c)
        if (mask, new_state) in seen:
            return False
        seen.add((mask, new_state))
        stack.append((kind, i, c, st["state"]))
        st["state"], st["mask"] = new_state, mask
        for j in (i, c):
            if j is not None:
                st["done"] += ret_ns[j] is not None
                lift(j)
        return True

    def try_pairs(x, start):
        """Places lonely x then a compare-failed cas c (c from start on, among
        the calls before the first return) that is illegal in the current state."""
        state = st["state"]
        legal, after_x = _step(state, ops[x])
        if after_x == state:
            return False  # x would do nothing here (an info cas whose old is not the state)
        c = start
        while c != -1 and c < n:
            if c != x and failed_cas[c] and ops[c].value[0] == state and push("pair", x, c, after_x):
                return True
            c = nxt[c]
        return False

    steps = 0
    node = nxt[head]
    while True:
        if st["done"] == must:
            return KeyResult(key, True, n, steps)
        steps += 1
        if steps > max_steps:
            return KeyResult(key, None, n, steps,
                             "key %r: search budget of %d steps exhausted; linearizability unknown" % (key, max_steps))
        assert node != -1, "walked past the last event with returned ops left"
        if node < n:  # a call: try to linearize op `node` here
            if lonely[node]:
                placed = try_pairs(node, nxt[head])
            else:
                legal, new_state = _step(st["state"], ops[node])
                placed = legal and push("op", node, None, new_state)
            node = nxt[head] if placed else nxt[node]
            continue
        # A return: its op should have been linearized by now. An optional op
        # may instead never happen (dropped: the same future as linearized
        # with no effect, so the same memo entry); else backtrack.
        i = node - n
        if optional[i] and push("drop", i, None, st["state"]):
            node = nxt[head]
            continue
        if len(stack) > best[0]:
            order = [j for kind, x, c, _ in stack if kind != "drop" for j in (x, c) if j is not None]
            best = [len(order), order, st["state"], i]
        while True:  # backtrack until an alternative is found
            if not stack:
                return KeyResult(key, False, n, steps, _explain(key, ops, best))
            kind, i, c, st["state"] = stack.pop()
            for j in (c, i):
                if j is not None:
                    st["mask"] &= ~(1 << j)
                    st["done"] -= ret_ns[j] is not None
                    unlift(j)
            if kind == "op":
                node = nxt[i]  # try the next call
            elif kind == "drop":
                node = n + i  # its return again: the memo now sends it on
            elif try_pairs(i, nxt[c]):  # the next partner for lonely i
                node = nxt[head]
            else:
                node = nxt[i]
            break


def _explain(key, ops, best, context=6):
    depth, order, state, culprit = best
    t0 = min(op.invoke_ns for op in ops)
    bad = ops[culprit]
    lines = ["key %r is not linearizable." % (key,),
             "  op that cannot be linearized: %s" % bad.describe(t0),
             "  deepest partial linearization: %d of %d ops; register state there: %r" % (depth, len(ops), state)]
    if order:
        lines.append("  its last ops, in linearized order:")
        for i in order[-context:]:
            lines.append("    " + ops[i].describe(t0))
    end = INF if bad.complete_ns is None else bad.complete_ns
    around = [op for op in ops if op is not bad and op.invoke_ns <= end
              and (op.complete_ns is None or op.complete_ns >= bad.invoke_ns)]
    before = [op for op in ops if op.complete_ns is not None and op.complete_ns < bad.invoke_ns]
    before.sort(key=lambda op: op.complete_ns)
    if before:
        lines.append("  ops that completed just before it was invoked:")
        for op in before[-context:]:
            lines.append("    " + op.describe(t0))
    if around:
        lines.append("  ops overlapping it in time (%d):" % len(around))
        for op in around[:2 * context]:
            lines.append("    " + op.describe(t0))
    lines.append("  (times: seconds since this key's first invoke; [invoke, complete], ... = never returned)")
    return "\n".join(lines)


class Result:
    def __init__(self, keys):
        self.keys = keys  # list of KeyResult

    @property
    def valid(self):
        if any(k.valid is False for k in self.keys):
            return False
        if any(k.valid is None for k in self.keys):
            return None
        return True

    @property
    def ops_checked(self):
        return sum(k.ops for k in self.keys)

    @property
    def violations(self):
        return [k for k in self.keys if k.valid is False]

    @property
    def unknown(self):
        return [k for k in self.keys if k.valid is None]

    def summary(self):
        return "linearizable=%s keys=%d ops_checked=%d violations=%d unknown=%d steps=%d" % (
            {True: "yes", False: "NO", None: "unknown"}[self.valid], len(self.keys), self.ops_checked,
            len(self.violations), len(self.unknown), sum(k.steps for k in self.keys))


def check_ops(ops, max_steps_per_key=2_000_000):
    """Checks paired ops of any number of keys, each key on its own."""
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return Result([check_key(k, by_key[k], max_steps_per_key) for k in sorted(by_key)])


def check_events(events, max_steps_per_key=2_000_000):
    return check_ops(hist.pair(events), max_steps_per_key)


def main(argv):
    if len(argv) != 2:
        print("usage: checker.py history.jsonl", file=sys.stderr)
        return 2
    res = check_events(hist.load(argv[1]))
    for k in res.keys:
        if k.explanation:
            print(k.explanation)
    print(res.summary())
    return 0 if res.valid else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

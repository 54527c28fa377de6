"""Unit tests of checker.py (CTest: jepsen.checker).

Hand-written histories with a known answer, a randomized comparison with a
brute-force checker on small histories, and histories generated from a real
sequential execution (must pass) then mutated with a stale read (must fail).
Seed: CHECKER_SEED=<int> (printed at start; random if unset).
"""
import itertools
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
import history as hist  # noqa: E402

SEED = int(os.environ.get("CHECKER_SEED", random.SystemRandom().randrange(1 << 31)))


class H:
    """Builds a history of ops by hand; times in arbitrary units (None = info)."""

    def __init__(self):
        self.ops = []

    def _add(self, key, f, value, result, outcome, t0, t1, process=None):
        if outcome == hist.INFO:
            assert t1 is None
        op = hist.Op(len(self.ops), process if process is not None else len(self.ops), key, f, value, result,
                     outcome, int(t0 * 1000), None if t1 is None else int(t1 * 1000))
        self.ops.append(op)
        return self

    def w(self, v, t0, t1, key="k", outcome=hist.OK):
        return self._add(key, "write", v, None, outcome, t0, t1)

    def r(self, v, t0, t1, key="k", outcome=hist.OK):
        return self._add(key, "read", None, v, outcome, t0, t1)

    def cas(self, old, new, swapped, t0, t1, key="k", outcome=hist.OK):
        return self._add(key, "cas", [old, new], swapped, outcome, t0, t1)

    def check(self):
        return checker.check_ops(self.ops)


class HandWritten(unittest.TestCase):
    def valid(self, h):
        res = h.check()
        self.assertIs(res.valid, True, "\n".join(k.explanation or "" for k in res.keys))
        return res

    def invalid(self, h, culprit=None):
        res = h.check()
        self.assertIs(res.valid, False, "expected a violation in %r" % h.ops)
        bad = res.violations[0]
        self.assertIn("cannot be linearized", bad.explanation)
        if culprit is not None:
            self.assertIn("#%d " % culprit, bad.explanation.splitlines()[1], bad.explanation)
        return res

    def test_empty_and_initial_absent(self):
        self.valid(H())
        self.valid(H().r(None, 0, 1).w("1", 2, 3).r("1", 4, 5))

    def test_read_absent_after_write_is_stale(self):
        self.invalid(H().w("1", 0, 1).r(None, 2, 3), culprit=1)

    def test_stale_read(self):
        h = H().w("1", 0, 1).w("2", 2, 3).r("1", 4, 5)
        res = self.invalid(h, culprit=2)
        self.assertIn("register state there: '2'", res.violations[0].explanation)

    def test_read_of_value_never_written(self):
        self.invalid(H().w("1", 0, 1).r("9", 2, 3))

    def test_lost_write(self):
        # Both writes acknowledged, in order; the later one vanished.
        self.invalid(H().w("1", 0, 1).w("2", 2, 3).r("2", 4, 5).r("1", 6, 7))

    def test_read_concurrent_with_write_may_see_either(self):
        self.valid(H().w("1", 0, 1).w("2", 2, 10).r("1", 3, 4).r("2", 5, 6).r("2", 11, 12))
        self.valid(H().w("1", 0, 1).w("2", 2, 10).r("2", 3, 4))
        self.valid(H().w("1", 0, 1).w("2", 2, 10).r("1", 3, 9))

    def test_new_then_old_is_not_fine(self):
        # During one write, once a read saw the new value a later read cannot see the old.
        self.invalid(H().w("1", 0, 1).w("2", 2, 10).r("2", 3, 4).r("1", 5, 6), culprit=3)

    def test_concurrent_reads_overlapping_each_other(self):
        # Reads overlap each other and the write: any order that fits works.
        self.valid(H().w("1", 0, 1).w("2", 2, 10).r("2", 3, 8).r("1", 4, 9))

    def test_concurrent_writes_either_order(self):
        self.valid(H().w("1", 0, 5).w("2", 1, 6).r("1", 7, 8))
        self.valid(H().w("1", 0, 5).w("2", 1, 6).r("2", 7, 8))
        self.invalid(H().w("1", 0, 5).w("2", 1, 6).r("1", 7, 8).r("2", 9, 10))

    def test_cas_swapped(self):
        self.valid(H().w("0", 0, 1).cas("0", "1", True, 2, 3).r("1", 4, 5))
        self.invalid(H().w("0", 0, 1).cas("5", "1", True, 2, 3))

    def test_cas_compare_failed(self):
        self.valid(H().w("0", 0, 1).cas("5", "1", False, 2, 3).r("0", 4, 5))
        # compare failed though the value was old and nothing ran concurrently
        self.invalid(H().w("0", 0, 1).cas("0", "1", False, 2, 3), culprit=1)
        # ...but fine if a concurrent write changed it first
        self.valid(H().w("0", 0, 1).cas("0", "1", False, 2, 5).w("7", 3, 4).r("7", 6, 7))

    def test_two_cas_from_same_old_both_swapped(self):
        self.invalid(H().w("0", 0, 1).cas("0", "1", True, 2, 5).cas("0", "2", True, 3, 6))
        # fine if a concurrent write put the old value back in between
        self.valid(H().w("0", 0, 1).cas("0", "1", True, 2, 5).cas("0", "2", True, 3, 8).w("0", 4, 7))

    def test_info_write_may_happen(self):
        self.valid(H().w("1", 0, 1).w("2", 2, None, outcome=hist.INFO).r("2", 10, 11))
        # ... much later than it was invoked
        self.valid(H().w("1", 0, 1).w("2", 2, None, outcome=hist.INFO).r("1", 10, 11).r("2", 20, 21))

    def test_info_write_may_never_happen(self):
        self.valid(H().w("1", 0, 1).w("2", 2, None, outcome=hist.INFO).r("1", 10, 11).r("1", 20, 21))

    def test_info_write_not_before_invoke(self):
        self.invalid(H().w("1", 0, 1).r("2", 2, 3).w("2", 4, None, outcome=hist.INFO), culprit=1)

    def test_info_write_happens_once(self):
        self.invalid(H().w("1", 0, 1).w("2", 2, None, outcome=hist.INFO).r("2", 3, 4).w("3", 5, 6)
                     .r("2", 7, 8))

    def test_info_cas(self):
        self.valid(H().w("0", 0, 1).cas("0", "1", None, 2, None, outcome=hist.INFO).r("1", 5, 6))
        self.valid(H().w("0", 0, 1).cas("0", "1", None, 2, None, outcome=hist.INFO).r("0", 5, 6))
        # an info cas cannot swap from a value the register did not hold
        self.invalid(H().w("0", 0, 1).cas("9", "1", None, 2, None, outcome=hist.INFO).r("1", 5, 6))

    def test_unread_info_write_can_explain_failed_cas(self):
        # Nobody reads "5", but only the info write of "5" explains the failed compare.
        self.valid(H().w("0", 0, 1).w("5", 2, None, outcome=hist.INFO).cas("0", "1", False, 3, 4))
        self.invalid(H().w("0", 0, 1).w("5", 2, None, outcome=hist.INFO).cas("0", "1", False, 3, 4)
                     .r("0", 5, 6))
        # a failed compare that ended before the info write began gets no help from it
        self.invalid(H().w("0", 0, 1).cas("0", "1", False, 2, 3).w("5", 4, None, outcome=hist.INFO))

    def test_equal_times_are_concurrent(self):
        # found by the brute-force comparison: the info write invoked at the very
        # time the cas completed may still come first
        self.valid(H().w("0", 3, 8).w("1", 14, None, outcome=hist.INFO).cas("0", "0", False, 10, 14))
        self.invalid(H().w("0", 3, 8).w("1", 15, None, outcome=hist.INFO).cas("0", "0", False, 10, 14))

    def test_compare_failed_cas_needs_no_writer_of_its_old(self):
        # found by the brute-force comparison: a cas that failed comparing with
        # "3" does not mean someone wrote "3"
        self.valid(H().cas("3", "1", False, 0, 2).cas(None, "3", None, 1, None, outcome=hist.INFO).r(None, 3, 4))
        self.valid(H().cas("3", "1", False, 0, 2).w("3", 1, None, outcome=hist.INFO).r(None, 3, 4))

    def test_fail_ops_did_not_happen(self):
        self.valid(H().w("1", 0, 1).w("2", 2, 3, outcome=hist.FAIL).r("1", 4, 5))
        self.invalid(H().w("1", 0, 1).w("2", 2, 3, outcome=hist.FAIL).r("2", 4, 5))
        self.valid(H().w("1", 0, 1).r("7", 2, 3, outcome=hist.FAIL).r("1", 4, 5))

    def test_keys_are_independent(self):
        h = H().w("1", 0, 10, key="a").w("1", 0, 1, key="b").r("1", 2, 3, key="a").r(None, 4, 5, key="b")
        res = h.check()
        self.assertIs(res.valid, False)
        self.assertEqual([k.key for k in res.violations], ["b"])
        self.assertEqual(res.ops_checked, 4)

    def test_budget_gives_unknown_not_valid(self):
        h = H()
        for i in range(12):  # many concurrent writes and reads: a big search space
            h.w(str(i), 0, 100)
        h.r("nope", 101, 102)
        res = checker.check_ops(h.ops, max_steps_per_key=50)
        self.assertIs(res.valid, None)

    def test_events_roundtrip(self):
        rec = hist.History()
        rec.invoke(0, "k", "write", "1")
        rec.invoke(1, "k", "read")
        rec.complete(0, hist.OK)
        rec.complete(1, hist.OK, "1")
        rec.invoke(0, "k", "cas", ["1", "2"])
        rec.complete(0, hist.OK, False)  # compare failed although the value was 1
        rec.invoke(1, "k", "write", "3")  # never completes: info
        ops = hist.pair(rec.events)
        self.assertEqual([(o.f, o.outcome) for o in ops],
                         [("write", "ok"), ("read", "ok"), ("cas", "ok"), ("write", "info")])
        self.assertIs(checker.check_events(rec.events).valid, False)


# ---------------------------------------------------------------- randomized

def brute_force(ops):
    """Linearizable iff some order of all relevant ops respects real time and the model
    (an info op placed last is the same as never)."""
    ops = [op for op in ops if op.outcome != hist.FAIL and not (op.f == "read" and op.outcome == hist.INFO)]
    for perm in itertools.permutations(ops):
        ok = True
        for i, a in enumerate(perm):
            for b in perm[i + 1:]:
                if b.complete_ns is not None and b.complete_ns < a.invoke_ns:
                    ok = False
                    break
            if not ok:
                break
        if not ok:
            continue
        state = None
        for op in perm:
            legal, state = checker._step(state, op)
            if not legal:
                ok = False
                break
        if ok:
            return True
    return False


def random_small_history(rng, n):
    """Random ops on few values: mostly not linearizable, and full of the cases
    the checker narrows (info ops, compare-failed cas, equal times)."""
    h = H()
    # few values: duplicates and many observers; more values: lonely info ops
    values = [str(v) for v in range(rng.choice([2, 3, 4, 6, 8]))]
    for _ in range(n):
        t0 = rng.randint(0, 15)
        info = rng.random() < 0.35
        t1 = None if info else t0 + rng.randint(0, 6)
        outcome = hist.INFO if info else hist.OK
        kind = rng.choice(["read", "write", "cas", "cas"])
        if kind == "read":
            if info:
                continue
            h.r(rng.choice(values + [None]), t0, t1)
        elif kind == "write":
            h.w(rng.choice(values), t0, t1, outcome=outcome)
        else:
            h.cas(rng.choice(values + [None]), rng.choice(values), None if info else rng.random() < 0.4, t0, t1,
                  outcome=outcome)
    return h


def generated_history(rng, n_ops, processes, spread, p_info=0.05):
    """A history from a real sequential execution by `processes` clients: each op
    takes effect at its own point in time t, after its invoke and before its
    completion; a client runs one op at a time. An info op never returns, and its
    client is replaced by a fresh one (as Jepsen does), so info ops pile up."""
    ops = []
    state = None
    t = 0
    fresh = itertools.count(1)
    written = []
    free_at = {p: 0 for p in range(processes)}  # process -> when its last op completed
    next_process = itertools.count(processes)

    def add(f, value, result, outcome):
        p = rng.choice([q for q, at in free_at.items() if at < t])
        t0 = rng.randint(max(free_at[p] + 1, t - spread), t)
        t1 = None if outcome == hist.INFO else t + rng.randint(0, spread)
        ops.append(hist.Op(len(ops), p, "k", f, value, result, outcome, t0, t1))
        del free_at[p]
        if outcome == hist.INFO:
            free_at[next(next_process)] = t
        else:
            free_at[p] = t1

    while len(ops) < n_ops:
        t += rng.randint(1, 10)
        if not any(at < t for at in free_at.values()):
            continue
        kind = rng.random()
        if kind < 0.1 and rng.random() < p_info * 5:
            # an info write that never takes effect: invoked now, visible never
            add("write", str(next(fresh)), None, hist.INFO)
        elif kind < 0.45:
            add("read", None, state, hist.OK)
        elif kind < 0.75:
            v = str(next(fresh))
            add("write", v, None, hist.INFO if rng.random() < p_info else hist.OK)
            state = v
            written.append(v)
        else:
            swap = rng.random() < 0.6 and state is not None
            if swap:
                old = state
            elif rng.random() < 0.5 and written:  # a stale value: the register held it once
                old = rng.choice(written[-5:])
                old = None if old == state else old
            else:  # a value the register never holds
                old = str(next(fresh) + 10 ** 6)
            if old == state:
                continue
            new = str(next(fresh))
            info = rng.random() < p_info
            add("cas", [old, new], None if info else swap, hist.INFO if info else hist.OK)
            if swap:
                state = new
                written.append(new)
    return ops


def stale_read_mutation(rng, ops):
    """Changes one ok read to return a value that was certainly overwritten before it
    began: w wrote v (ok), w2 (ok) was invoked after w completed and completed before
    the read was invoked. Values are unique, so no order can explain it. None if no
    such triple exists."""
    writers = [op for op in ops if op.outcome == hist.OK and
               (op.f == "write" or (op.f == "cas" and op.result))]
    reads = [op for op in ops if op.f == "read" and op.outcome == hist.OK]
    rng.shuffle(reads)
    for r in reads:
        for w2 in writers:
            if w2.complete_ns >= r.invoke_ns:
                continue
            olds = [w for w in writers if w.complete_ns < w2.invoke_ns]
            if not olds:
                continue
            w = rng.choice(olds)
            v = w.value if w.f == "write" else w.value[1]
            if v == r.result:
                continue
            r.result = v
            return r
    return None


class Randomized(unittest.TestCase):
    def test_against_brute_force(self):
        rng = random.Random(SEED)
        counts = {True: 0, False: 0}
        for i in range(2000):
            h = random_small_history(rng, rng.randint(1, 7))
            want = brute_force(h.ops)
            got = h.check().valid
            self.assertIs(got, want, "seed %d case %d: checker %s, brute force %s\n%r" % (SEED, i, got, want, h.ops))
            counts[want] += 1
        print("brute-force comparison: %d linearizable, %d not" % (counts[True], counts[False]))
        self.assertGreater(counts[True], 20)
        self.assertGreater(counts[False], 20)

    def test_generated_pass_then_stale_read_fails(self):
        rng = random.Random(SEED + 1)
        mutated = unknown = total_ops = 0
        started = time.monotonic()
        for i in range(80):
            spread = rng.choice([0, 5, 20, 60])
            processes = rng.randint(1, 6)
            p_info = rng.choice([0, 0.02, 0.05])
            ops = generated_history(rng, rng.randint(20, 150), processes, spread, p_info)
            total_ops += len(ops)
            res = checker.check_ops(ops)
            self.assertIs(res.valid, True, "seed %d case %d (spread %d): a real execution judged %s\n%s"
                          % (SEED, i, spread, res.valid, "\n".join(k.explanation or "" for k in res.keys)))
            r = stale_read_mutation(rng, ops)
            if r is None:
                continue
            mutated += 1
            res = checker.check_ops(ops)
            # Never judged linearizable; "unknown" (search budget spent) is no pass
            # either, and must stay rare.
            self.assertIsNot(res.valid, True, "seed %d case %d: stale read #%d -> %r not caught"
                             % (SEED, i, r.id, r.result))
            unknown += res.valid is None
        print("generated: 80 histories, %d ops, %d stale-read mutations, %d caught, %d unknown, %.2fs"
              % (total_ops, mutated, mutated - unknown, unknown, time.monotonic() - started))
        self.assertGreater(mutated, 40)
        self.assertLessEqual(unknown, mutated // 10)


if __name__ == "__main__":
    print("CHECKER_SEED=%d" % SEED, flush=True)
    unittest.main(verbosity=1)

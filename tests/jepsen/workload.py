"""Register clients: threads that run read / write / cas on a few keys and record
every operation in a history.History.

Each client thread is bound to one member (its gRPC channel goes to that member
only) and uses python3-etcd3 (in-process gRPC: ~1 ms an op here, etcdctl's
process start costs ~40 ms). Operations:
  read   linearizable Range (serializable only when asked, to plant stale reads)
  write  Put of a value unique in the run
  cas    Txn(value(key) == old ? Put(new)) where old is the last value this
         client saw on that key; result: succeeded
Outcomes: a read that errors is fail (it had no effect); a write or cas that
errors or times out is info (it may have happened, now or later). After an info
op the thread continues as a new process id, as Jepsen does, so every process
has at most one op in flight.

Keys rotate: each key takes at most ops_per_key operations, then its slot moves
to a fresh key. This bounds each key's sub-history, and so the checker's search.
"""
import random
import threading
import time

import history as hist

try:
    import etcd3
    import grpc
except ImportError:  # run.py re-executes under Debian's python3, which has them
    etcd3 = None


class Keys:
    """slots key slots, each moving to a fresh key after ops_per_key ops."""

    def __init__(self, prefix, slots, ops_per_key):
        assert slots >= 1 and ops_per_key >= 1
        self.prefix = prefix
        self.ops_per_key = ops_per_key
        self._lock = threading.Lock()
        self._next = slots
        self._slots = [[i, 0] for i in range(slots)]  # [key number, ops so far]
        self.used = set()

    def pick(self, rng):
        with self._lock:
            slot = rng.choice(self._slots)
            if slot[1] >= self.ops_per_key:
                slot[0], slot[1] = self._next, 0
                self._next += 1
            slot[1] += 1
            key = "%s%d" % (self.prefix, slot[0])
            self.used.add(key)
            return key


def _client(endpoint_ip, port, timeout_s):
    # Short reconnect backoff: a restarted member must be usable again within
    # the fault cycle (gRPC's default backoff grows to 120 s).
    opts = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500), ("grpc.enable_retries", 0)]
    return etcd3.client(host=endpoint_ip, port=port, timeout=timeout_s, grpc_options=opts)


class Client(threading.Thread):
    def __init__(self, index, n_threads, member, keys, history, rng, stop, op_budget,
                 timeout_s=1.5, serializable_reads=False, think_ms=(0, 8), read_ratio=0.5):
        super().__init__(name="client-%d" % index, daemon=True)
        self.index = index
        self.n_threads = n_threads
        self.process = index
        self.member = member
        self.keys = keys
        self.history = history
        self.rng = rng
        self.stop = stop
        self.op_budget = op_budget
        self.timeout_s = timeout_s
        self.serializable_reads = serializable_reads
        self.think_ms = think_ms
        assert 0.0 <= read_ratio <= 1.0
        self.read_ratio = read_ratio
        self.last_seen = {}  # key -> last value this client read or wrote
        self.values = 0
        self.errors = {}
        self.failures = 0  # consecutive failed ops
        self.conn = None

    def _conn(self):
        if self.conn is None:
            self.conn = _client(self.member.ip, 2379, self.timeout_s)
        return self.conn

    def _reset(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def _note_error(self, e):
        self.failures += 1
        name = type(e).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def read(self, key):
        self.history.invoke(self.process, key, "read")
        try:
            v, _ = self._conn().get(key, serializable=self.serializable_reads)
        except Exception as e:
            self.history.complete(self.process, hist.FAIL, error=type(e).__name__)
            self._note_error(e)
            self._reset()
            return
        v = None if v is None else v.decode()
        self.history.complete(self.process, hist.OK, v)
        self.failures = 0
        self.last_seen[key] = v

    def _unknown(self, e):
        """A write whose fate is unknown: info; continue as a fresh process."""
        self.history.complete(self.process, hist.INFO, error=type(e).__name__)
        self._note_error(e)
        self._reset()
        self.process += self.n_threads

    def write(self, key):
        self.values += 1
        v = "c%d-%d" % (self.index, self.values)
        self.history.invoke(self.process, key, "write", v)
        try:
            self._conn().put(key, v)
        except Exception as e:
            return self._unknown(e)
        self.history.complete(self.process, hist.OK)
        self.failures = 0
        self.last_seen[key] = v

    def cas(self, key, old):
        self.values += 1
        new = "c%d-%d" % (self.index, self.values)
        self.history.invoke(self.process, key, "cas", [old, new])
        c = None
        try:
            c = self._conn()
            ok, _ = c.transaction(compare=[c.transactions.value(key) == old],
                                  success=[c.transactions.put(key, new)], failure=[])
        except Exception as e:
            return self._unknown(e)
        self.history.complete(self.process, hist.OK, bool(ok))
        self.failures = 0
        if ok:
            self.last_seen[key] = new

    def run(self):
        done = 0
        while not self.stop.is_set() and done < self.op_budget:
            key = self.keys.pick(self.rng)
            r = self.rng.random()
            old = self.last_seen.get(key)
            # reads: read_ratio; the rest half writes, half cas (a read
            # instead while this client has seen no value of the key)
            cas_from = self.read_ratio + (1.0 - self.read_ratio) / 2
            if r < self.read_ratio or (r >= cas_from and old is None):
                self.read(key)
            elif r < cas_from:
                self.write(key)
            else:
                self.cas(key, old)
            done += 1
            if self.failures:
                # back off while the member is down or cut off: every failed
                # write is one more info op, and each open info op doubles the
                # checker's search
                time.sleep(min(0.05 * (2 ** min(self.failures, 4)), 0.8) * self.rng.uniform(0.5, 1.0))
            lo, hi = self.think_ms
            if hi > 0:
                time.sleep(self.rng.uniform(lo, hi) / 1000.0)
        self._reset()


def final_reads(members, keys, history, process_base, timeout_s=5.0, deadline_s=30.0):
    """After healing: one linearizable read of every key through every member, retried
    until it succeeds or the deadline passes (failed attempts are fail ops)."""
    deadline = time.monotonic() + deadline_s
    process = process_base
    missing = 0
    for m in members:
        conn = _client(m.ip, 2379, timeout_s)
        try:
            for key in sorted(keys):
                while True:
                    history.invoke(process, key, "read")
                    try:
                        v, _ = conn.get(key)
                    except Exception as e:
                        history.complete(process, hist.FAIL, error=type(e).__name__)
                        if time.monotonic() > deadline:
                            missing += 1
                            break
                        time.sleep(0.2)
                        continue
                    history.complete(process, hist.OK, None if v is None else v.decode())
                    break
        finally:
            conn.close()
        process += 1
    return missing


def make_rng(seed, index):
    return random.Random("%d/client/%d" % (seed, index))

"""etcdctl KV commands against Flotilla and against a real etcd 3.4: the
same command sequence on two fresh stores must give the same output, byte
for byte, except the fields that depend on the cluster (cluster_id,
member_id, raft_term). Revisions in -w json output must match exactly.

Covers: put (--prev-kv), get (--prefix, --limit, --sort-by x --order,
--rev, --keys-only, --from-key, ranges, --print-value-only),
del (single, --prefix, --prev-kv, from-key), txn (compares on value,
version, create, mod; success and failure branches; -i prompts; duplicate
keys; too many ops), put --ignore-value / --ignore-lease / --lease errors,
serializable get, compaction
(and reading a compacted/future revision), error texts (empty key), and -w
json / -w fields outputs. (etcdctl 3.4 has no --count-only flag.)

FLOTILLA_COMPARE_WITH_ETCD=1 runs the sequence on two real etcds instead
(checks the test itself).
"""
import json
import os
import sys

import harness

SORT_TARGETS = ["KEY", "CREATE", "MODIFY", "VERSION", "VALUE"]
ORDERS = ["ASCEND", "DESCEND"]
CLUSTER_FIELDS = {"cluster_id", "member_id", "raft_term"}


def steps():
    """(args, stdin) pairs; every one runs on both stores in this order."""
    s = []

    def add(*args, stdin=None):
        s.append((list(args), stdin))

    # puts build a history with distinct create/mod revisions and versions
    add("put", "foo", "bar")
    add("put", "foo1", "zeta")
    add("put", "foo2", "alpha")
    add("put", "foo3", "mid", "-w", "json")
    add("put", "zoo", "val")
    add("put", "foo", "bar2")
    add("put", "foo2", "beta", "--prev-kv")
    add("put", "foo2", "gamma", "--prev-kv", "-w", "json")
    add("put", "a/1", "x")
    add("put", "a/2", "y")
    add("put", "a/3", "z")
    add("put", "", "empty-key")  # error text
    # get: single, json, missing, ranges
    add("get", "foo")
    add("get", "foo", "-w", "json")
    add("get", "nope")
    add("get", "nope", "-w", "json")
    add("get", "foo", "foo3")
    add("get", "foo", "--prefix")
    add("get", "foo", "--prefix", "-w", "json")
    add("get", "foo", "--prefix", "--limit", "2")
    add("get", "foo", "--prefix", "--limit", "2", "-w", "json")
    add("get", "--print-value-only", "foo")
    add("get", "foo", "-w", "fields")
    # sorting: every target and order, over all keys
    for target in SORT_TARGETS:
        for order in ORDERS:
            add("get", "", "--prefix", "--sort-by=" + target, "--order=" + order)
        add("get", "", "--prefix", "--sort-by", target, "--order", "DESCEND", "--limit", "3",
            "-w", "json")
    # past revisions
    add("get", "foo", "--rev", "2")
    add("get", "foo", "--rev", "2", "-w", "json")
    add("get", "foo", "--prefix", "--rev", "4", "-w", "json")
    add("get", "foo2", "--rev", "8")
    add("get", "foo", "--rev", "1000")  # future revision error
    # keys-only, count-only, from-key
    add("get", "foo", "--prefix", "--keys-only")
    add("get", "foo", "--prefix", "--keys-only", "-w", "json")
    add("get", "foo1", "--from-key")
    add("get", "foo1", "--from-key", "--limit", "2", "-w", "json")
    add("get", "a/", "--prefix", "--rev", "10", "-w", "json")
    # txn: stdin has compares, blank line, success ops, blank line, failure ops
    add("txn", stdin='value("foo") = "bar2"\n\nput foo bar3\nget foo\n\nput foo failed\n\n')
    add("txn", "-w", "json",
        stdin='version("foo") = "3"\nmod("zoo") > "0"\n\nput zoo val2\ndel a/1\n\nget zoo\n\n')
    add("txn", stdin='create("foo1") < "2"\n\nput x 1\n\nput y 2\nget y\n\n')
    add("txn", "-w", "json", stdin='value("foo") != "bar3"\n\nput x 1\n\nget foo --prefix\n\n')
    add("txn", "-i", stdin='mod("foo2") = "9"\n\nput foo2 delta\n\n\n')
    add("txn", "-w", "json", stdin='\nput t1 1\nput t2 2\ndel foo3\n\n\n')
    add("txn", stdin='\nput dup 1\nput dup 2\n\n\n')  # duplicate key error
    add("txn", stdin='\n' + "".join("put many%03d v\n" % i for i in range(129)) + '\n\n')
    add("txn", "-w", "json", stdin='value("nope") = ""\n\nget nope\n\nput nope created\n\n')
    add("get", "", "--prefix", "-w", "json")
    add("get", "foo", "--prefix", "--consistency=s", "-w", "json")
    # put options that depend on state
    add("put", "--ignore-value", "missing")
    add("put", "--ignore-value", "foo", "-w", "json")
    add("get", "foo", "-w", "json")
    add("put", "--lease=1234", "leased", "v")
    add("put", "--ignore-lease", "foo", "v-keeps-lease")
    # deletes
    add("del", "foo1")
    add("del", "nope")
    add("del", "a/", "--prefix", "--prev-kv")
    add("del", "t1", "--prev-kv", "-w", "json")
    add("del", "x", "--from-key", "-w", "json")
    add("get", "", "--prefix", "-w", "json")
    # compaction: older revisions go away with etcd's error text
    add("put", "c", "1")
    add("put", "c", "2")
    add("put", "c", "3")
    add("get", "c", "-w", "json")
    add("compaction", "27")
    add("get", "c", "--rev", "26")  # compacted
    add("get", "foo", "--rev", "3", "-w", "json")  # compacted
    add("get", "", "--prefix", "--rev", "27", "-w", "json")  # the compaction revision itself
    add("compaction", "27")  # again: compacted
    add("compaction", "1000")  # future
    add("compaction", "--physical", "28")
    add("get", "c", "--rev", "27", "-w", "json")  # compacted now
    add("put", "c", "4", "-w", "json")
    add("get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "-w", "json")
    return s


def strip_cluster_fields(value):
    if isinstance(value, dict):
        return {k: strip_cluster_fields(v) for k, v in value.items() if k not in CLUSTER_FIELDS}
    if isinstance(value, list):
        return [strip_cluster_fields(v) for v in value]
    return value


def normalize(args, rc, out, err):
    """What must be equal between Flotilla and etcd."""
    if "-w" in args and args[args.index("-w") + 1] == "json" and rc == 0:
        out = json.dumps(strip_cluster_fields(json.loads(out)), sort_keys=True)
    elif "-w" in args and args[args.index("-w") + 1] == "fields":
        out = "\n".join(line for line in out.splitlines()
                        if not line.startswith(('"ClusterID"', '"MemberID"', '"RaftTerm"')))
    # etcdctl's stderr carries timestamps and client ids; its last line is the error
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    return rc, out, errors


def run_all(endpoint):
    results = []
    for args, stdin in steps():
        rc, out, err = harness.etcdctl(endpoint, *args, check=False, stdin=stdin)
        results.append(normalize(args, rc, out, err))
    return results


def main():
    if os.environ.get("FLOTILLA_COMPARE_WITH_ETCD") == "1":
        subject = harness.Etcd()
    else:
        subject = harness.Member()
    with harness.Etcd() as etcd, subject:
        want = run_all(etcd.endpoint)
        got = run_all(subject.endpoint)
    failures = 0
    for (args, stdin), w, g in zip(steps(), want, got):
        if w != g:
            failures += 1
            print("MISMATCH: etcdctl %s%s" % (" ".join(args), " <<< %r" % stdin if stdin else ""))
            print("  etcd:     rc=%d out=%r err=%r" % w)
            print("  flotilla: rc=%d out=%r err=%r" % g)
    # the sequence must really exercise things: errors happened, json was produced
    assert any(w[0] != 0 for w in want), "no step failed on etcd: the error cases are gone"
    assert any('"revision"' in w[1] for w in want)
    assert failures == 0, "%d of %d steps differ from etcd 3.4" % (failures, len(want))
    print("ok: %d etcdctl steps give the same output as etcd 3.4" % len(want))


if __name__ == "__main__":
    sys.exit(main())

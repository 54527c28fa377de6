"""Acceptance: the unmodified npm `etcd3` client (version pinned in
tests/integration/node/package-lock.json) against a real `flotilla serve`,
with exact results compared to a real etcd 3.4.

node/etcd3_accept.js runs the same steps against a fresh etcd and a fresh
Flotilla and prints normalized results (cluster_id/member_id/raft_term
dropped); they must be equal. Covers put (getPrevious, binary), get
(string/buffer/json/number/exec, missing, future revision), getAll (prefix,
keys, count, every sort, limit, old revision, inRange with a present empty
range_end), delete (key, missing, prefix with previous, inRange), txn
if/then/else with compares on value, version, create and mod revision (a CAS
that succeeds and one that is stale), duplicate-key error, compaction and a
compacted read. Against Flotilla it also checks that lease grant, hash and
auth calls fail at once with GRPCNotImplementedError, that the client keeps
working after them, and status/member list.

Needs node, npm and tests/integration/node/node_modules (scripts/install-deps.sh
runs `npm ci --prefix tests/integration/node`); when they are missing this
test FAILS and says so: it never passes without running the client.
FLOTILLA_COMPARE_WITH_ETCD=1 runs the script on two etcds (checks the test).
"""
import json
import os
import shutil
import subprocess
import sys

import harness

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
SCRIPT = os.path.join(NODE_DIR, "etcd3_accept.js")
UNIMPLEMENTED_MAX_MS = 3000


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def node_or_fail():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        fail("node is not installed (scripts/install-deps.sh installs Debian's nodejs and npm)")
    module = os.path.join(NODE_DIR, "node_modules", "etcd3", "package.json")
    if not os.path.exists(module):
        fail("the npm etcd3 package is not installed in %s/node_modules: run "
             "`npm ci --prefix tests/integration/node` (scripts/install-deps.sh does; it needs "
             "the npm registry)" % NODE_DIR)
    with open(os.path.join(NODE_DIR, "package.json")) as f:
        wanted = json.load(f)["dependencies"]["etcd3"]
    with open(module) as f:
        have = json.load(f)["version"]
    if have != wanted:
        fail("node_modules has etcd3 %s, package.json pins %s: run npm ci again" % (have, wanted))
    return node, have


def run(node, endpoint, extra=()):
    proc = subprocess.run([node, SCRIPT, endpoint] + list(extra), capture_output=True, text=True,
                          timeout=120, cwd=NODE_DIR)
    if proc.returncode != 0:
        fail("etcd3_accept.js against %s exited %d:\n%s" % (endpoint, proc.returncode,
                                                            proc.stderr[-4000:]))
    return json.loads(proc.stdout)


def main():
    node, version = node_or_fail()
    against_etcd = os.environ.get("FLOTILLA_COMPARE_WITH_ETCD") == "1"
    subject = harness.Etcd() if against_etcd else harness.Member()
    with harness.Etcd() as etcd, subject:
        want = run(node, etcd.endpoint)
        got = run(node, subject.endpoint, [] if against_etcd else ["--unimplemented"])
    failures = 0
    for (name, w), (gname, g) in zip(want["steps"], got["steps"]):
        assert name == gname
        if w != g:
            failures += 1
            print("MISMATCH at step %r\n  etcd:     %r\n  flotilla: %r" % (name, w, g))
    assert len(want["steps"]) == len(got["steps"])
    results = dict(want["steps"])
    # the script must really exercise things: errors, a failed compare, from-key
    assert any(r[0] == "error" and r[1] == "GRPCOutOfRangeError" for r in results.values())
    assert results["txn mod revision stale"][1]["succeeded"] is False
    assert results["txn mod revision matches"][1]["succeeded"] is True
    assert results["getAll inRange"] == ["ok", ["foo1", "foo2", "foo3", "j", "n", "zoo"]], \
        results["getAll inRange"]
    assert failures == 0, "%d of %d npm etcd3 steps differ from etcd 3.4" % (
        failures, len(want["steps"]))
    if not against_etcd:
        extra = {row[0]: row[1:] for row in got["unimplemented"]}
        for name in ("lease grant", "maintenance hash", "auth roles"):
            kind, took_ms = extra[name]
            assert kind == "GRPCNotImplementedError", (name, kind)
            assert took_ms < UNIMPLEMENTED_MAX_MS, "%s took %d ms to fail" % (name, took_ms)
        assert extra["get after"] == ["ok"], extra["get after"]
        version_, leader_is_member, db_size_positive = extra["status"]
        assert version_.startswith("3.4."), version_
        assert leader_is_member and db_size_positive, extra["status"]
        assert extra["members"] == [1, "default", ["http://%s" % subject.endpoint]], \
            extra["members"]
    print("ok: %d npm etcd3 %s steps give the same results as etcd 3.4 (node %s)" % (
        len(want["steps"]), version,
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()))


if __name__ == "__main__":
    sys.exit(main())

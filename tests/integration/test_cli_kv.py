"""`flotilla put|get|del|compact` against etcdctl 3.4, request for request.

Two fresh Flotilla members, A and B (then two etcd 3.4 servers), get the same sequence of requests: the
flotilla CLI talks to A, etcdctl to B. Since both start empty, every response
(revisions included) must print the same bytes; only the cluster and member ids
differ between the two members, and etcdctl's extra warn log line on stderr is
dropped. Exit codes and the "Error: ..." line must match too.
"""
import os
import re
import subprocess

import harness

FLOTILLA = harness.FLOTILLA_BIN


def flotilla(endpoint, *args, stdin=None):
    p = subprocess.run([FLOTILLA, "--endpoints", endpoint] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


IDS = re.compile(r'"(cluster_id|member_id|ID|leader)":\d+')


def norm_out(s):
    return IDS.sub(lambda m: '"%s":ID' % m.group(1), s)


def norm_err(s):
    # etcdctl also logs a JSON warn line per failed RPC; the contract is the Error line.
    return [line for line in s.splitlines() if line.startswith("Error:")]


def same(a, b, args, stdin=None):
    fa = flotilla(a, *args, stdin=stdin)
    eb = harness.etcdctl(b, *args, check=False, stdin=stdin)
    got = (fa[0], norm_out(fa[1]), norm_err(fa[2]))
    want = (eb[0], norm_out(eb[1]), norm_err(eb[2]))
    assert got == want, "flotilla %s:\n  got  %r\n  want %r" % (" ".join(args), got, want)
    return fa


# Requests in order; each is run by both clients. Covers every get/put/del
# flag of the brief, the output formats and the error paths.
STEPS = [
    ["put", "foo", "bar"],
    ["put", "foo", "baz", "--prev-kv"],
    ["put", "foo", "qux", "--prev-kv", "-w", "json"],
    ["put", "k/a", "1"], ["put", "k/b", "2"], ["put", "k/c", "3"], ["put", "k/d", ""],
    ["put", "bin", "tab\there <&> \"q\""],
    ["get", "foo"],
    ["get", "foo", "-w", "json"],
    ["get", "nokey"],
    ["get", "nokey", "-w", "json"],
    ["get", "k/", "--prefix"],
    ["get", "k/", "--prefix", "-w", "json"],
    ["get", "k/", "--prefix", "--keys-only"],
    ["get", "k/", "--prefix", "--keys-only", "-w", "json"],
    ["get", "k/", "--prefix", "--print-value-only"],
    ["get", "k/", "--prefix", "--limit", "2", "-w", "json"],
    ["get", "k/", "--prefix", "--sort-by=VALUE", "--order=DESCEND"],
    ["get", "k/", "--prefix", "--sort-by=CREATE", "--order=ASCEND", "-w", "json"],
    ["get", "k/", "--prefix", "--sort-by=MODIFY"],
    ["get", "k/b", "--from-key", "--keys-only"],
    ["get", "", "--from-key", "-w", "json"],
    ["get", "k/a", "k/c"],
    ["get", "foo", "--rev", "2"],
    ["get", "foo", "--rev=3", "-w", "json"],
    ["get", "k/", "--prefix", "--consistency=s", "-w", "json"],
    ["get", "bin", "-w", "json"],
    ["put", "foo", "--ignore-value"],
    ["put", "nokey", "--ignore-value"],
    ["put", "foo", "v", "--lease=1234"],
    ["put", "", "x"],
    ["get", "foo", "--rev", "1000"],
    ["del", "k/a", "--prev-kv"],
    ["del", "k/zz"],
    ["del", "k/", "--prefix", "-w", "json"],
    ["put", "c1", "1"], ["put", "c2", "2"],
    ["del", "c", "--from-key", "--prev-kv", "-w", "json"],
    ["compact", "5"],
    ["compact", "5"],
    ["compact", "1000"],
    ["get", "foo", "--rev", "3"],
    ["compact", "6", "--physical", "-w", "json"],
    # usage errors
    ["get"],
    ["put"],
    ["del"],
    ["compact"],
    ["get", "a", "--prefix", "--from-key"],
    ["get", "a", "--sort-by=NAME"],
    ["get", "a", "--order=UP"],
    ["get", "foo", "-w", "table"],
]


def main():
    # Flotilla first (the target), then etcd 3.4 (the CLI against the reference server)
    for server in (harness.Member, harness.Etcd):
        run(server)
    print("PASS")


def run(server):
    with server() as a, server() as b:
        for step in STEPS:
            same(a.endpoint, b.endpoint, step)
        # put with the value on stdin
        same(a.endpoint, b.endpoint, ["put", "fromstdin"], stdin="line one\nline two\n")
        same(a.endpoint, b.endpoint, ["get", "fromstdin", "-w", "json"])
        # global flags anywhere, http:// endpoints
        rc, out, _ = flotilla(a.endpoint, "get", "-w", "json", "fromstdin")
        assert rc == 0 and out.startswith('{"header"'), out
        p = subprocess.run([FLOTILLA, "get", "fromstdin", "--print-value-only", "--endpoints",
                            "http://" + a.endpoint], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout == "line one\nline two\n\n", p
        # failover: a dead endpoint first, then the member
        dead = "127.0.0.1:%d" % harness.free_port()
        rc, out, err = flotilla(dead + "," + a.endpoint, "get", "fromstdin", "--print-value-only")
        assert rc == 0 and out == "line one\nline two\n\n", (rc, out, err)
        # nothing reachable: exit 1 and a Go-like dial error
        rc, out, err = flotilla(dead, "get", "x")
        assert rc == 1 and out == "" and err.startswith("Error: dial tcp %s: connection refused" % dead), (rc, err)
        # deliberate differences, documented in docs/client.md
        rc, _, err = flotilla(a.endpoint, "get", "x", "--bogus")
        assert rc == 128 and err == "Error: unknown flag: --bogus\n", (rc, err)
        # etcdctl sends a put before failing on -w table; flotilla refuses first
        _, before, _ = flotilla(a.endpoint, "get", "foo", "-w", "json")
        rc, out, err = flotilla(a.endpoint, "put", "foo", "x", "-w", "table")
        assert rc == 4 and out == "" and err == "Error: table not supported as output format\n", (rc, err)
        _, after, _ = flotilla(a.endpoint, "get", "foo", "-w", "json")
        assert before == after, (before, after)
        rc, out, _ = flotilla(a.endpoint, "get", "k", "--prefix", "--count-only")
        assert rc == 0 and out == "0\n", out
        rc, out, _ = flotilla(a.endpoint, "get", "fromstdin", "--count-only", "-w", "json")
        assert rc == 0 and '"count":1' in out and '"kvs"' not in out, out


if __name__ == "__main__":
    main()

"""Runs the client library's live checks against real servers.

usage: run_live.py live|example TEST_LIVE EXAMPLE CLIENT_MD EXAMPLE_C

live:    test_live against a Flotilla member, then against etcd 3.4 (the
         reference: the library must work with both), with a dead endpoint
         and a black-hole listener (accepts, never answers).
example: checks that docs/client.md holds example.c verbatim, then runs the
         example against a Flotilla member and checks its output.
"""
import os
import re
import socket
import subprocess
import sys
import threading

import harness


def blackhole():
    """A listener that accepts and never answers; returns its endpoint."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held = []

    def accept():
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            held.append(conn)  # keep it open, read nothing

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % s.getsockname()[1]


def run_live(test_live):
    hole = blackhole()
    dead = "127.0.0.1:%d" % harness.free_port()
    with harness.Member() as m:
        out = subprocess.run([test_live, m.endpoint, dead, hole], capture_output=True, text=True, timeout=120)
        print(out.stdout + out.stderr)
        assert out.returncode == 0, "test_live against flotilla failed"
    with harness.Etcd() as e:
        out = subprocess.run([test_live, e.endpoint, dead, hole], capture_output=True, text=True, timeout=120)
        print(out.stdout + out.stderr)
        assert out.returncode == 0, "test_live against etcd failed"


def run_example(example, client_md, example_c):
    doc = open(client_md).read()
    blocks = re.findall(r"```c\n(.*?)```", doc, re.S)
    code = open(example_c).read()
    assert code in blocks, "docs/client.md must contain tests/client/example.c verbatim in a ```c block"
    with harness.Member() as m:
        out = subprocess.run([example, m.endpoint], capture_output=True, text=True, timeout=60)
        print(out.stdout + out.stderr)
        assert out.returncode == 0, "example failed"
        lines = out.stdout.splitlines()
        assert lines[0] == "greeting = hello", lines
        assert lines[1] == "swapped: yes", lines
        assert lines[2] == "swapped again: no", lines
        assert lines[3] == "Error: etcdserver: key is not provided", lines
        # what it wrote is visible to etcdctl
        _, got, _ = harness.etcdctl(m.endpoint, "get", "greeting", "--print-value-only")
        assert got == "bonjour\n", got


def main():
    mode, test_live, example, client_md, example_c = sys.argv[1:6]
    if mode == "live":
        run_live(test_live)
    else:
        run_example(example, client_md, example_c)
    print("PASS")


if __name__ == "__main__":
    main()

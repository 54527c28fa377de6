"""`flotilla txn` (scripted and interactive) against etcdctl 3.4 txn.

As in test_cli_kv.py: twin fresh members, flotilla on A, etcdctl on B, the same
scripts; outputs must be identical up to the member/cluster ids.
"""
import os
import re
import subprocess
import tempfile

import harness

FLOTILLA = harness.FLOTILLA_BIN
IDS = re.compile(r'"(cluster_id|member_id)":\d+')


def flotilla(endpoint, *args, stdin=None):
    p = subprocess.run([FLOTILLA, "--endpoints", endpoint] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def same(a, b, args, stdin):
    fa = flotilla(a, *args, stdin=stdin)
    eb = harness.etcdctl(b, *args, check=False, stdin=stdin)
    norm = lambda r: (r[0], IDS.sub(r'"\1":ID', r[1]),
                      [l for l in r[2].splitlines() if l.startswith("Error:")])
    assert norm(fa) == norm(eb), "txn %s with %r:\n  got  %r\n  want %r" % (args, stdin, norm(fa), norm(eb))
    return fa


SCRIPTS = [
    # compare succeeds: put, get, del in the success branch
    'mod("x") = "0"\n\nput x 1\nget x\ndel nothing\n\nput y 1\n\n',
    # compare fails: the failure branch runs
    'mod("x") = "0"\n\nput x 2\n\nput y 1\nget y\n\n',
    # several compares, quoted keys and values, prev-kv, prefix get
    'value("x") = "1"\nversion("x") != "0"\ncreate("x") > "1"\nmod("x") < "100"\n\n'
    'put "a b" "c d" --prev-kv\nput x 3 --prev-kv\nget --prefix x\n\n\n',
    # no compares at all: success branch
    '\nput z "multi word value"\ndel y --prev-kv\n\n\n',
    # range-end and from-key forms
    '\nget a z\nget "" --from-key --keys-only\n\n\n',
]


def main():
    # Flotilla first (the target), then etcd 3.4 (the CLI against the reference server)
    for server in (harness.Member, harness.Etcd):
        run(server)
    print("PASS")


def run(server):
    with server() as a, server() as b:
        for script in SCRIPTS:
            same(a.endpoint, b.endpoint, ["txn"], script)
            same(a.endpoint, b.endpoint, ["get", "", "--from-key", "-w", "json"], None)
        for script in SCRIPTS[:2]:
            same(a.endpoint, b.endpoint, ["txn", "-w", "json"], script)
        # interactive mode prints etcdctl's prompts
        same(a.endpoint, b.endpoint, ["txn", "-i"], 'value("x") = "3"\n\nput x 4\n\n\n')
        same(a.endpoint, b.endpoint, ["txn", "--interactive", "-w", "json"], '\nget x\n\n\n')
        # server-side errors: same message, exit 1
        same(a.endpoint, b.endpoint, ["txn"], '\nput d 1\nput d 2\n\n\n')
        # malformed input: exit 3 (etcdctl's ExitInvalidInput) and nothing is sent
        same(a.endpoint, b.endpoint, ["txn"], "bogus\n\n\n\n")
        same(a.endpoint, b.endpoint, ["txn", "extra"], "\n\n\n")
        rc, out, err = flotilla(a.endpoint, "txn", stdin='\nfrob x\n\n\n')
        assert rc == 3 and err.startswith("Error: invalid txn request: frob x"), (rc, err)
        rc, out, err = flotilla(a.endpoint, "txn", stdin='mod("x") = "zz"\n\n\n\n')
        assert rc == 3 and err == 'Error: invalid txn compare request: mod("x") = "zz"\n', (rc, err)
        rc, out, err = flotilla(a.endpoint, "txn", "-w", "table", stdin='\n\n\n')
        assert rc == 4 and err == "Error: table not supported as output format\n", (rc, err)
        # scripted from a file, and a script without its trailing blank lines
        with tempfile.NamedTemporaryFile("w", suffix=".txn", delete=False) as f:
            f.write('version("x") > "0"\n\nput fromfile yes')
            path = f.name
        try:
            with open(path) as f:
                p = subprocess.run([FLOTILLA, "--endpoints", a.endpoint, "txn"], stdin=f,
                                   capture_output=True, text=True, timeout=60)
            assert p.returncode == 0 and p.stdout == "SUCCESS\n\nOK\n", p
        finally:
            os.unlink(path)
        rc, out, _ = harness.etcdctl(a.endpoint, "get", "fromfile", "--print-value-only")
        assert out == "yes\n", out


if __name__ == "__main__":
    main()

"""`flotilla status` and `flotilla member list` against etcdctl's `endpoint
status` and `member list`, on the same member: every format must print the same
bytes (nothing is written in between, so the state is the same)."""
import subprocess

import harness

FLOTILLA = harness.FLOTILLA_BIN


def flotilla(endpoint, *args):
    p = subprocess.run([FLOTILLA, "--endpoints", endpoint] + list(args),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def main():
    with harness.Member() as m:
        harness.etcdctl(m.endpoint, "put", "a", "1")
        for fmt in ("simple", "json", "table"):
            rc, out, err = flotilla(m.endpoint, "status", "-w", fmt)
            _, want, _ = harness.etcdctl(m.endpoint, "endpoint", "status", "-w", fmt)
            assert rc == 0 and out == want, "status -w %s:\n%s\nwant\n%s\n%s" % (fmt, out, want, err)
            rc, out2, _ = flotilla(m.endpoint, "endpoint", "status", "-w", fmt)
            assert rc == 0 and out2 == out
            rc, out, err = flotilla(m.endpoint, "member", "list", "-w", fmt)
            _, want, _ = harness.etcdctl(m.endpoint, "member", "list", "-w", fmt)
            assert rc == 0 and out == want, "member list -w %s:\n%s\nwant\n%s\n%s" % (fmt, out, want, err)
        # several endpoints: one status row each
        rc, out, _ = flotilla(m.endpoint + "," + m.endpoint, "status")
        assert rc == 0 and len(out.splitlines()) == 2, out
        # an unreachable endpoint among them: reported, exit 1, the others printed
        dead = "127.0.0.1:%d" % harness.free_port()
        rc, out, err = flotilla(m.endpoint + "," + dead, "status")
        assert rc == 1 and len(out.splitlines()) == 1 and dead in err, (rc, out, err)
        rc, _, err = flotilla(m.endpoint, "member", "add")
        assert rc == 128 and err.startswith("Error: "), (rc, err)
    print("PASS")


if __name__ == "__main__":
    main()

"""`flotilla bench` briefly against a member: every workload's JSON line parses,
its counts add up, and what it wrote is really there."""
import json
import signal
import subprocess
import time

import harness

FLOTILLA = harness.FLOTILLA_BIN


def bench(endpoint, *args):
    p = subprocess.run([FLOTILLA, "bench", "--endpoints", endpoint, "--json"] + list(args),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "bench %s failed (%d): %s %s" % (args, p.returncode, p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    r = json.loads(lines[0])
    assert r["ok"] + r["errors"] == r["requests"], r
    assert r["errors"] == 0, r
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat
    assert lat["avg"] <= lat["max"], lat
    assert r["throughput_rps"] > 0 and r["duration_s"] > 0, r
    assert "done" in p.stderr, "a progress line on stderr: %r" % p.stderr
    return r


def main():
    with harness.Member() as m:
        # load 500 known keys: 00000000 .. 00000499
        r = bench(m.endpoint, "put", "--sequential", "--total", "500", "--key-space", "500",
                  "--clients", "20", "--conns", "4", "--val-size", "64")
        assert r["requests"] == 500 and r["workload"] == "put" and r["conns"] == 4, r
        _, out, _ = harness.etcdctl(m.endpoint, "get", "", "--from-key", "--keys-only", "-w", "json")
        got = json.loads(out)
        assert got["count"] == 500, got["count"]
        _, val, _ = harness.etcdctl(m.endpoint, "get", "00000499", "--print-value-only")
        assert len(val) == 64 + 1, val
        for consistency in ("l", "s"):
            r = bench(m.endpoint, "range", "--consistency", consistency, "--total", "1000",
                      "--key-space", "500", "--clients", "10", "--conns", "2")
            assert r["requests"] == 1000 and r["consistency"] == consistency, r
        r = bench(m.endpoint, "txn-put", "--total", "600", "--key-space", "20", "--clients", "10",
                  "--conns", "2", "--seed", "7")
        assert r["txn_succeeded"] + r["txn_failed"] == r["ok"] == 600, r
        assert r["txn_succeeded"] > 0, r
        r = bench(m.endpoint, "mixed", "--read-fraction", "0.9", "--duration", "1s", "--clients", "5")
        assert r["requests"] > 0, r
        # Ctrl-C ends the run early, with a report
        proc = subprocess.Popen([FLOTILLA, "bench", "range", "--endpoints", m.endpoint, "--json",
                                 "--duration", "60s", "--clients", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (proc.returncode, err)
        r = json.loads(out.splitlines()[-1])
        assert r["ok"] > 0 and r["errors"] == 0 and r["duration_s"] < 30, r
        # the member dies mid-run: bench reports the failures and ends, it does not hang
        proc = subprocess.Popen([FLOTILLA, "bench", "put", "--endpoints", m.endpoint, "--json",
                                 "--duration", "30s", "--clients", "20", "--conns", "2", "--timeout", "5s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        m.kill()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (proc.returncode, out, err)
        r = json.loads(out.splitlines()[-1])
        assert r["errors"] >= 1 and r["ok"] > 0 and r["ok"] + r["errors"] == r["requests"], r
        assert r["duration_s"] < 20, r
        assert "first_error" in r, r
        # a wrong flag is a usage error
        p = subprocess.run([FLOTILLA, "bench", "put", "--clients", "0"], capture_output=True, text=True)
        assert p.returncode == 128 and p.stderr.startswith("Error: "), p
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Flotilla vs etcd 3.4, side by side, on this machine; writes docs/benchmarks.md.

usage: bench/compare.py [--flotilla BIN] [--etcd BIN] [--workdir DIR]
                        [--duration 10] [--quick] [--out docs/benchmarks.md]

Each server runs alone, single member, data dir under --workdir (same disk for
both), default durability (etcd fsyncs every commit; Flotilla fsyncs every
group commit), listening on 127.0.0.1 only. For each server, in order:

  1. start on an empty data dir; load 100,000 keys (bench put --sequential);
     record peak RSS (VmHWM, /proc/PID/status) and the data dir size;
  2. run the workloads (etcd's conventions: 8-byte keys, 256-byte values, key
     space 100,000): put and linearizable range at 1 client/1 connection,
     100/10 and 500/50; serializable range at 100/10; txn-put at 100/10;
     each for --duration seconds (bounded time; the request count follows);
  3. load up to 1,000,000 keys; record peak RSS and the data dir size;
  4. SIGKILL, restart on the same data dir, and time from the kill to the first
     successful linearizable Range.

Also measured once: the latency of a 4 KiB write + fdatasync on the workdir's
disk (the floor for a durable 1-client put). The whole run takes about 10
minutes with the default duration; --quick (tiny sizes, 2 s) checks the script.
The raw results go to bench/last-run.json; the hand-written analysis in
bench/notes.md is appended to the page. Not part of ctest (too slow).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = [  # (name, bench args)
    ("put 1c/1conn", ["put", "--clients", "1", "--conns", "1"]),
    ("put 100c/10conn", ["put", "--clients", "100", "--conns", "10"]),
    ("put 500c/50conn", ["put", "--clients", "500", "--conns", "50"]),
    ("range-l 1c/1conn", ["range", "--consistency", "l", "--clients", "1", "--conns", "1"]),
    ("range-l 100c/10conn", ["range", "--consistency", "l", "--clients", "100", "--conns", "10"]),
    ("range-l 500c/50conn", ["range", "--consistency", "l", "--clients", "500", "--conns", "50"]),
    ("range-s 100c/10conn", ["range", "--consistency", "s", "--clients", "100", "--conns", "10"]),
    ("txn-put 100c/10conn", ["txn-put", "--clients", "100", "--conns", "10"]),
]


def log(msg):
    print("[compare %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server not listening after %ss" % timeout)


class Server:
    def __init__(self, kind, binary, workdir):
        self.kind, self.binary = kind, binary
        self.data = os.path.join(workdir, kind + "-data")
        shutil.rmtree(self.data, ignore_errors=True)
        self.port, self.peer = free_port(), free_port()
        self.proc = None
        self.logf = open(os.path.join(workdir, kind + ".log"), "ab")

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        url = "http://127.0.0.1:%d" % self.port
        peer = "http://127.0.0.1:%d" % self.peer
        if self.kind == "etcd":
            args = [self.binary, "--name", "default", "--data-dir", self.data,
                    "--listen-client-urls", url, "--advertise-client-urls", url,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", "default=" + peer]
        else:
            args = [self.binary, "serve", "--name", "default", "--data-dir", self.data,
                    "--listen-client-urls", url, "--advertise-client-urls", url,
                    "--initial-advertise-peer-urls", peer]
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def status_kb(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def du_bytes(self):
        total = 0
        for d, _, files in os.walk(self.data):
            for name in files:
                try:
                    total += os.lstat(os.path.join(d, name)).st_blocks * 512
                except OSError:
                    pass
        return total

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None


def bench(client, endpoint, args, timeout=600):
    cmd = [client, "bench", "--endpoints", endpoint, "--json", "--key-size", "8",
           "--val-size", "256"] + args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode not in (0, 1) or not p.stdout.strip():
        raise RuntimeError("bench %s failed: %s %s" % (args, p.stdout, p.stderr[-2000:]))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if r["errors"]:
        log("  %d errors: %s" % (r["errors"], r.get("first_error")))
    return r


def serving(client, endpoint):
    p = subprocess.run([client, "--endpoints", endpoint, "--command-timeout", "1s",
                        "--dial-timeout", "200ms", "get", "00000000"],
                       capture_output=True, text=True, timeout=30)
    return p.returncode == 0


def fdatasync_latency(workdir, n=500):
    """4 KiB appended then fdatasync'd, n times: what a WAL does per group commit."""
    path = os.path.join(workdir, "fdatasync.probe")
    block = os.urandom(4096)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        for _ in range(n):
            os.write(fd, block)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"median_ms": statistics.median(times), "mean_ms": statistics.mean(times),
            "p99_ms": times[int(0.99 * (n - 1))]}


def memory(srv):
    return {"vmhwm_kb": srv.status_kb("VmHWM"), "vmrss_kb": srv.status_kb("VmRSS"),
            "rss_anon_kb": srv.status_kb("RssAnon"), "rss_file_kb": srv.status_kb("RssFile")}


def load(client, srv, first, count, quick):
    """Puts keys first .. first+count-1 once each, in order, 500 in flight."""
    clients = "100" if quick else "500"
    conns = "10" if quick else "50"
    t0 = time.monotonic()
    r = bench(client, srv.endpoint, ["put", "--sequential", "--key-offset", str(first), "--total",
                                     str(count), "--key-space", str(count), "--clients", clients,
                                     "--conns", conns], timeout=1800)
    out = {"keys": first + count, "load_s": time.monotonic() - t0, "load_rps": r["throughput_rps"],
           "data_bytes": srv.du_bytes()}
    out.update(memory(srv))
    return out


def start_serving(client, srv):
    srv.start()
    t0 = time.monotonic()
    while not serving(client, srv.endpoint):
        if time.monotonic() - t0 > 600:
            raise RuntimeError("%s not serving 600 s after start" % srv.kind)
        time.sleep(0.01)
    return time.monotonic() - t0


def run_workloads(binaries, client, workdir, args, res):
    """Phase 1: throughput and latency on 100,000 loaded keys. Only one server
    runs at a time, but the servers take turns per workload (restarted on their
    own data dir, the first one alternating), so that drift in the shared
    machine's CPU and disk hits both alike."""
    small = 2000 if args.quick else 100000
    kinds = list(binaries)
    srvs = {k: Server(k, binaries[k], workdir) for k in kinds}
    try:
        for k in kinds:
            start_serving(client, srvs[k])
            log("%s: loading %d keys" % (k, small))
            load(client, srvs[k], 0, small, args.quick)
            srvs[k].kill(signal.SIGTERM)
        for i, (name, wargs) in enumerate(WORKLOADS):
            for k in (kinds if i % 2 == 0 else kinds[::-1]):
                start_serving(client, srvs[k])
                if name.startswith("put 1c"):
                    # the disk's fdatasync latency drifts: probe it right before
                    # the run it is compared with
                    res[k]["fdatasync_before_put_1c"] = fdatasync_latency(workdir)
                log("%s: %s for %ss" % (k, name, args.duration))
                r = bench(client, srvs[k].endpoint, wargs + ["--duration", "%ds" % args.duration,
                                                            "--key-space", str(small)])
                res[k]["workloads"][name] = r
                log("  %.0f req/s, p99 %.2f ms" % (r["throughput_rps"], r["latency_ms"]["p99"]))
                srvs[k].kill(signal.SIGTERM)
    finally:
        for srv in srvs.values():
            srv.kill()
            shutil.rmtree(srv.data, ignore_errors=True)


def run_memory(kind, binary, client, workdir, args, out):
    """Phase 2: memory, size and restart on a fresh data dir holding exactly the
    loaded keys, each written once (phase 1's history depends on each server's
    speed, so it would not compare like with like)."""
    small, large = (2000, 20000) if args.quick else (100000, 1000000)
    srv = Server(kind, binary, workdir)
    try:
        start_serving(client, srv)
        log("%s: fresh data dir, loading %d keys" % (kind, small))
        out["load_small"] = load(client, srv, 0, small, args.quick)
        log("%s: loading up to %d keys" % (kind, large))
        out["load_large"] = load(client, srv, small, large - small, args.quick)
        log("%s: SIGKILL with %d keys, restart" % (kind, large))
        t0 = time.monotonic()
        srv.kill(signal.SIGKILL)
        start_serving(client, srv)
        out["restart_s"] = time.monotonic() - t0
        out["restart_memory"] = memory(srv)
        log("  serving again after %.2f s" % out["restart_s"])
    finally:
        srv.kill()
        shutil.rmtree(srv.data, ignore_errors=True)


def machine(workdir):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    df = subprocess.run(["df", "-hT", workdir], capture_output=True, text=True).stdout.splitlines()[-1].split()
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "fs": "%s on %s (%s)" % (df[1], df[0], df[2]),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def ratio(f, e):
    return f / e if e else float("nan")


def plot(results, png):
    clients = [1, 100, 500]
    dat = png[:-4] + ".dat"
    with open(dat, "w") as f:
        f.write("# clients etcd_put_rps flot_put_rps etcd_range_rps flot_range_rps "
                "etcd_put_p99 flot_put_p99 etcd_range_p99 flot_range_p99\n")
        for c, suffix in zip(clients, ["1c/1conn", "100c/10conn", "500c/50conn"]):
            row = [c]
            for metric in ("rps", "p99"):
                for w in ("put", "range-l"):
                    for kind in ("etcd", "flotilla"):
                        r = results[kind]["workloads"]["%s %s" % (w, suffix)]
                        row.append(r["throughput_rps"] if metric == "rps" else r["latency_ms"]["p99"])
            f.write("%d %s\n" % (row[0], " ".join("%.3f" % v for v in row[1:])))
    script = """
set terminal pngcairo size 1100,450 font ",10"
set output '%s'
set multiplot layout 1,2
set logscale x
set xtics (1, 100, 500)
set xlabel 'clients in flight'
set key top left
set grid
set title 'throughput (req/s)'
set logscale y
plot '%s' u 1:2 w lp t 'etcd put', '' u 1:3 w lp t 'flotilla put', '' u 1:4 w lp t 'etcd range (l)', '' u 1:5 w lp t 'flotilla range (l)'
set title 'p99 latency (ms)'
plot '%s' u 1:6 w lp t 'etcd put', '' u 1:7 w lp t 'flotilla put', '' u 1:8 w lp t 'etcd range (l)', '' u 1:9 w lp t 'flotilla range (l)'
unset multiplot
""" % (png, dat, dat)
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log("gnuplot failed: %s" % e)
    finally:
        os.unlink(dat)


def mib(kb):
    return kb / 1024.0


def write_page(path, res, fsync, mach, args, started, finished, versions):
    e, f = res["etcd"], res["flotilla"]
    L = []
    L.append("# Benchmarks: Flotilla vs etcd 3.4\n")
    L.append("Generated by `bench/compare.py` (%s to %s UTC)%s. Single member each, data dir on "
             "the same disk, default durability (etcd: fsync per commit; Flotilla: fdatasync per "
             "group commit), driven by the same `flotilla bench` client over loopback. Only one "
             "server runs at a time; for the workloads they take turns (each restarted on its own "
             "loaded data dir, the first alternating from one workload to the next) so that drift "
             "in the shared machine hits both alike. Ratios are Flotilla / etcd: above 1 is better "
             "for throughput, below 1 is better for latency, memory, size and restart time.\n"
             % (started, finished, " — QUICK MODE, numbers not meaningful" if args.quick else ""))
    L.append("## Machine\n")
    L.append("- CPU: %s, %d cores (the bench client runs on the same cores)" % (mach["cpu"], mach["cores"]))
    L.append("- memory: %.1f GiB; kernel %s; data disk: %s" % (mach["mem_gib"], mach["kernel"], mach["fs"]))
    L.append("- load average before the run: %s (a shared machine: other work competes for the CPUs)"
             % " ".join(mach["loadavg"]))
    L.append("- %s; %s%s" % (versions["etcd"], versions["flotilla"],
                            ", built from commit %s" % versions["commit"] if versions.get("commit") else ""))
    fe, ff = e["fdatasync_before_put_1c"], f["fdatasync_before_put_1c"]
    L.append("- one 4 KiB append + fdatasync on the data disk, median of 500 (mean, p99): %.3f ms "
             "(%.3f, %.3f) at the start of the run, %.3f ms (%.3f, %.3f) at the end, %.3f ms right "
             "before etcd's 1-client put run, %.3f ms (%.3f, %.3f) right before Flotilla's. On this "
             "machine that latency has drifted by up to 10x within minutes.\n" % (
                 fsync["start"]["median_ms"], fsync["start"]["mean_ms"], fsync["start"]["p99_ms"],
                 fsync["end"]["median_ms"], fsync["end"]["mean_ms"], fsync["end"]["p99_ms"],
                 fe["median_ms"], ff["median_ms"], ff["mean_ms"], ff["p99_ms"]))
    L.append("## Throughput and latency\n")
    L.append("8-byte keys, 256-byte values, key space 100,000 (all loaded before the reads), "
             "%d s per workload. Latency in ms.\n" % args.duration)
    L.append("| workload | etcd req/s | Flotilla req/s | ratio | etcd p50 | Flotilla p50 | etcd p99 | Flotilla p99 | p99 ratio | etcd p99.9 | Flotilla p99.9 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in WORKLOADS:
        a, b = e["workloads"][name], f["workloads"][name]
        L.append("| %s | %.0f | %.0f | **%.2f** | %.2f | %.2f | %.2f | %.2f | **%.2f** | %.2f | %.2f |" % (
            name, a["throughput_rps"], b["throughput_rps"], ratio(b["throughput_rps"], a["throughput_rps"]),
            a["latency_ms"]["p50"], b["latency_ms"]["p50"], a["latency_ms"]["p99"], b["latency_ms"]["p99"],
            ratio(b["latency_ms"]["p99"], a["latency_ms"]["p99"]),
            a["latency_ms"]["p99.9"], b["latency_ms"]["p99.9"]))
    errs = {k: sum(r["workloads"][n]["errors"] for n, _ in WORKLOADS) for k, r in res.items()}
    L.append("\nFailed requests: etcd %d, Flotilla %d. txn-put (compare-and-swap on the key's mod "
             "revision): etcd %d swapped / %d lost the race, Flotilla %d / %d.\n" % (
                 errs["etcd"], errs["flotilla"],
                 e["workloads"]["txn-put 100c/10conn"]["txn_succeeded"], e["workloads"]["txn-put 100c/10conn"]["txn_failed"],
                 f["workloads"]["txn-put 100c/10conn"]["txn_succeeded"], f["workloads"]["txn-put 100c/10conn"]["txn_failed"]))
    L.append("![throughput and p99 latency against clients](benchmarks.png)\n")
    L.append("## Memory, size, restart\n")
    L.append("| | etcd | Flotilla | ratio |")
    L.append("|---|---:|---:|---:|")
    for key in ("load_small", "load_large"):
        a, b = e[key], f[key]
        label = "{:,} keys".format(a["keys"])
        L.append("| peak RSS (VmHWM) after loading %s, MiB | %.1f | %.1f | **%.2f** |" % (
            label, mib(a["vmhwm_kb"]), mib(b["vmhwm_kb"]), ratio(b["vmhwm_kb"], a["vmhwm_kb"])))
        L.append("| of the current RSS: anonymous / file-backed (mmap), MiB | %.0f / %.0f | %.0f / %.0f | %.2f / %.2f |" % (
            mib(a["rss_anon_kb"]), mib(a["rss_file_kb"]), mib(b["rss_anon_kb"]), mib(b["rss_file_kb"]),
            ratio(b["rss_anon_kb"], a["rss_anon_kb"]), ratio(b["rss_file_kb"], a["rss_file_kb"])))
        L.append("| data dir size after loading %s, MiB | %.1f | %.1f | %.2f |" % (
            label, a["data_bytes"] / 1048576, b["data_bytes"] / 1048576, ratio(b["data_bytes"], a["data_bytes"])))
        L.append("| load throughput up to %s, puts/s (sequential keys, 500 in flight) | %.0f | %.0f | %.2f |" % (
            label, a["load_rps"], b["load_rps"], ratio(b["load_rps"], a["load_rps"])))
    L.append("| SIGKILL to serving again with {:,} keys, s | %.2f | %.2f | **%.2f** |".format(
        e["load_large"]["keys"]) % (
        e["restart_s"], f["restart_s"], ratio(f["restart_s"], e["restart_s"])))
    L.append("| peak RSS of the restarted process once serving, MiB | %.1f | %.1f | %.2f |\n" % (
        mib(e["restart_memory"]["vmhwm_kb"]), mib(f["restart_memory"]["vmhwm_kb"]),
        ratio(f["restart_memory"]["vmhwm_kb"], e["restart_memory"]["vmhwm_kb"])))
    L.append("Memory, size and restart are measured on a fresh data dir per server holding "
             "exactly these keys, each written once (sequential 8-byte keys, 256-byte values), not "
             "after the workloads above: those leave as much history as each server could write in "
             "the time, about 10x more on Flotilla. RSS counts the pages of mmapped files "
             "(etcd's bbolt, Flotilla's LMDB) that the process touched; they are page cache the "
             "kernel can reclaim, the anonymous part cannot be.\n")
    L.append("## Targets (issue 4)\n")
    def w(kind, name):
        return res[kind]["workloads"][name]
    rows = []
    for c in ("100c/10conn", "500c/50conn"):
        t = ratio(w("flotilla", "put " + c)["throughput_rps"], w("etcd", "put " + c)["throughput_rps"])
        p = ratio(w("flotilla", "put " + c)["latency_ms"]["p99"], w("etcd", "put " + c)["latency_ms"]["p99"])
        rows.append(("put throughput at %s >= 3x etcd, p99 no higher" % c, "%.2fx, p99 %.2fx" % (t, p), t >= 3 and p <= 1))
    p1 = w("flotilla", "put 1c/1conn")["latency_ms"]
    fs = f["fdatasync_before_put_1c"]["median_ms"]
    rows.append(("put latency at 1 client within 1.5x one fdatasync (%.3f ms median, probed just before)" % fs,
                 "avg %.3f ms = %.2fx, p50 %.3f ms = %.2fx" % (p1["avg"], p1["avg"] / fs, p1["p50"], p1["p50"] / fs),
                 p1["avg"] <= 1.5 * fs))
    for n in ("range-l 100c/10conn", "range-s 100c/10conn"):
        t = ratio(w("flotilla", n)["throughput_rps"], w("etcd", n)["throughput_rps"])
        rows.append(("%s throughput >= 3x etcd" % n, "%.2fx" % t, t >= 3))
    r = ratio(f["load_large"]["vmhwm_kb"], e["load_large"]["vmhwm_kb"])
    rows.append(("peak RSS with 1,000,000 keys <= 1/3 of etcd", "%.2fx" % r, r <= 1 / 3))
    r = ratio(f["restart_s"], e["restart_s"])
    rows.append(("restart-to-serving <= 1/5 of etcd", "%.2fx" % r, r <= 0.2))
    L.append("| target | measured (Flotilla / etcd) | met |")
    L.append("|---|---|---|")
    for t, m, ok in rows:
        L.append("| %s | %s | %s |" % (t, m, "yes" if ok else "**no**"))
    L.append("")
    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        L.append(open(notes).read())
    L.append("## Reproduce\n")
    L.append("```\ncmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOTILLA_TESTS=OFF\n"
             "cmake --build build-bench -j --target flotilla\n"
             "bench/compare.py --flotilla build-bench/src/cmd/flotilla   # 7-10 minutes; rewrites this page\n```\n")
    L.append("(RelWithDebInfo is `-O2 -g`; assertions stay on in every build type, as in production.)\n")
    L.append("Raw results of this run: `bench/last-run.json`.\n")
    with open(path, "w") as out:
        out.write("\n".join(L))


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
    except Exception:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flotilla", default=os.path.join(ROOT, "build", "src", "cmd", "flotilla"))
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--workdir", default=None,
                    help="data dirs go here (same disk for both servers; default a new dir in /var/tmp)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per workload")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the page and plot from bench/last-run.json (e.g. after editing bench/notes.md)")
    args = ap.parse_args()
    if args.render:
        with open(os.path.join(ROOT, "bench", "last-run.json")) as f:
            run = json.load(f)
        args.duration, args.quick = run["duration_s"], False
        plot(run["results"], os.path.join(os.path.dirname(args.out), "benchmarks.png"))
        write_page(args.out, run["results"], run["fdatasync"], run["machine"], args, run["started"],
                   run.get("finished", "?"), run["versions"])
        log("rewrote %s from bench/last-run.json" % args.out)
        return
    if args.quick:
        args.duration = min(args.duration, 2)
    linked = subprocess.run(["ldd", args.flotilla], capture_output=True, text=True).stdout
    if "libasan" in linked and not args.quick:
        sys.exit("%s is a sanitizer build: its speed and memory say nothing; build with "
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo (see --help)" % args.flotilla)
    own_workdir = args.workdir is None
    if own_workdir:
        args.workdir = tempfile.mkdtemp(prefix="flotilla-bench-", dir="/var/tmp")
    os.makedirs(args.workdir, exist_ok=True)
    client = args.flotilla
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    mach = machine(args.workdir)
    fsync = fdatasync_latency(args.workdir)
    log("fdatasync: median %.3f ms" % fsync["median_ms"])
    # the shared disk's latency drifts: measure again at the end, report both
    versions = {"etcd": version([args.etcd, "--version"]), "flotilla": version([args.flotilla, "--version"]),
                "commit": version(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}
    binaries = {"etcd": args.etcd, "flotilla": args.flotilla}
    res = {k: {"kind": k, "workloads": {}} for k in binaries}
    run_workloads(binaries, client, args.workdir, args, res)
    for kind, binary in binaries.items():
        run_memory(kind, binary, client, args.workdir, args, res[kind])
    finished = time.strftime("%H:%M", time.gmtime())
    fsync_end = fdatasync_latency(args.workdir)
    log("fdatasync at the end: median %.3f ms" % fsync_end["median_ms"])
    fsync = {"median_ms": statistics.median([fsync["median_ms"], fsync_end["median_ms"]]),
             "start": fsync, "end": fsync_end}
    if not args.quick:
        with open(os.path.join(ROOT, "bench", "last-run.json"), "w") as f:
            json.dump({"machine": mach, "fdatasync": fsync, "versions": versions, "results": res,
                       "duration_s": args.duration, "started": started, "finished": finished}, f, indent=1)
    plot(res, os.path.join(os.path.dirname(args.out), "benchmarks.png"))
    write_page(args.out, res, fsync, mach, args, started, finished, versions)
    log("wrote %s" % args.out)
    if own_workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

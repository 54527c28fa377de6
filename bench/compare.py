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

Then the three-member section (issue 7): each server as a cluster of three
members (own ports on 127.0.0.1, own data dirs on the same disk, the same flags:
--heartbeat-interval 100 --election-timeout 1000 --snapshot-count 100000),
driven through all three endpoints, the leader's first:

  5. load 100,000 keys into each cluster; then put at 1, 100 and 500 clients
     and linearizable range at 100 clients, the clusters taking turns per
     workload, with the CPU each member and the client used;
  6. load 1,000,000 keys into a fresh cluster of each; record each member's
     RssAnon, RssFile and VmHWM.

Also measured: the latency of a 4 KiB write + fdatasync on the workdir's disk
(the floor for a durable 1-client put). The whole run takes about 15 minutes
with the default duration; --quick (tiny sizes, 2 s) checks the script;
--sections single or cluster runs one part (the other's figures are kept from
bench/last-run.json).
The raw results go to bench/last-run.json; the hand-written analysis in
bench/notes.md is appended to the page. Not part of ctest (too slow).
"""
import argparse
import json
import os
import platform
import resource
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


CLUSTER_FLAGS = ["--heartbeat-interval", "100", "--election-timeout", "1000",
                 "--snapshot-count", "100000"]

CLUSTER_WORKLOADS = [  # (name, bench args): the workloads issue 7 sets targets for
    ("put 1c/1conn", ["put", "--clients", "1", "--conns", "1"]),
    ("put 100c/10conn", ["put", "--clients", "100", "--conns", "10"]),
    ("put 500c/50conn", ["put", "--clients", "500", "--conns", "50"]),
    ("range-l 100c/10conn", ["range", "--consistency", "l", "--clients", "100", "--conns", "10"]),
]


class Cluster:
    """Three members of one kind on this machine: each its own client and peer
    port on 127.0.0.1 and its own data dir under workdir (same disk), the same
    flags for etcd and Flotilla (etcd's names; only the binary differs)."""

    def __init__(self, kind, binary, workdir, token):
        self.kind, self.binary = kind, binary
        self.names = ["m1", "m2", "m3"]
        self.data = [os.path.join(workdir, "%s-cluster-%s" % (kind, n)) for n in self.names]
        for d in self.data:
            shutil.rmtree(d, ignore_errors=True)
        self.ports = [free_port() for _ in self.names]
        self.peers = [free_port() for _ in self.names]
        self.token = token
        self.procs = [None] * 3
        self.logf = open(os.path.join(workdir, kind + "-cluster.log"), "ab")
        self.order = self.endpoints()  # leader first once known

    def endpoints(self):
        return ["127.0.0.1:%d" % p for p in self.ports]

    def start(self, client, timeout=120):
        """Starts the three members and waits until all of them name the same
        leader and each serves a linearizable get; returns the seconds taken.
        The client endpoint list is then ordered leader first."""
        initial = ",".join("%s=http://127.0.0.1:%d" % (n, p) for n, p in zip(self.names, self.peers))
        for i, n in enumerate(self.names):
            url = "http://127.0.0.1:%d" % self.ports[i]
            peer = "http://127.0.0.1:%d" % self.peers[i]
            args = ([self.binary] if self.kind == "etcd" else [self.binary, "serve"]) + [
                "--name", n, "--data-dir", self.data[i],
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new"] + CLUSTER_FLAGS
            self.procs[i] = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        log("%s cluster: pids %s" % (self.kind, " ".join(str(p.pid) for p in self.procs)))
        t0 = time.monotonic()
        for i, p in enumerate(self.ports):
            wait_port(p, self.procs[i], timeout)
        last = None
        while True:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("%s cluster not serving %ss after start: %s" % (self.kind, timeout, last))
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError("%s member exited with %s" % (self.kind, p.returncode))
            last = self.find_leader(client)
            if last is not None and all(serving(client, ep) for ep in self.endpoints()):
                return time.monotonic() - t0
            time.sleep(0.05)

    def find_leader(self, client):
        """Orders self.order leader first; None (with the reason) while the
        members do not all report one and the same leader."""
        p = subprocess.run([client, "--endpoints", ",".join(self.endpoints()), "--command-timeout", "1s",
                            "--dial-timeout", "200ms", "status", "-w", "json"],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            return None
        try:
            st = json.loads(p.stdout)
        except ValueError:
            return None
        leaders = {s["Status"].get("leader", 0) for s in st}
        if len(st) != 3 or len(leaders) != 1 or 0 in leaders:
            return None
        leader = leaders.pop()
        lead = [s["Endpoint"] for s in st if s["Status"]["header"]["member_id"] == leader]
        if len(lead) != 1:
            return None
        self.order = lead + [ep for ep in self.endpoints() if ep != lead[0]]
        return lead[0]

    @property
    def endpoint(self):
        """All three endpoints, leader first: bench spreads its connections
        over them round-robin, so one connection goes to the leader and ten
        go 4/3/3 (leader/follower/follower)."""
        return ",".join(self.order)

    def member_memory(self):
        out = []
        for i, p in enumerate(self.procs):
            m = {}
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    k = line.split(":", 1)[0]
                    if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                        m[k] = int(line.split()[1])
            out.append({"member": self.names[i], "leader": self.order[0] == self.endpoints()[i],
                        "vmhwm_kb": m.get("VmHWM", 0), "vmrss_kb": m.get("VmRSS", 0),
                        "rss_anon_kb": m.get("RssAnon", 0), "rss_file_kb": m.get("RssFile", 0)})
        return out

    def cpu_s(self):
        """user + system CPU seconds of each member so far (/proc/PID/stat)."""
        out = []
        for p in self.procs:
            with open("/proc/%d/stat" % p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        return out

    def du_bytes(self):
        total = 0
        for top in self.data:
            for d, _, files in os.walk(top):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(d, name)).st_blocks * 512
                    except OSError:
                        pass
        return total

    def stop(self, sig=signal.SIGTERM):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(sig)
        for i, p in enumerate(self.procs):
            if p is not None:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=60)
            self.procs[i] = None

    def remove(self):
        for d in self.data:
            shutil.rmtree(d, ignore_errors=True)


def children_cpu_s():
    """CPU seconds of the waited-for children (each bench client, once done)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cluster_load(client, cl, first, count, quick):
    """load() for a cluster: the keys go through all three endpoints."""
    clients, conns = ("100", "10") if quick else ("500", "50")
    t0 = time.monotonic()
    r = bench(client, cl.endpoint, ["put", "--sequential", "--key-offset", str(first), "--total",
                                    str(count), "--key-space", str(count), "--clients", clients,
                                    "--conns", conns], timeout=1800)
    return {"keys": first + count, "load_s": time.monotonic() - t0, "load_rps": r["throughput_rps"],
            "errors": r["errors"], "data_bytes": cl.du_bytes()}


def run_cluster(binaries, client, workdir, args, res):
    """The 3-member section (issue 7). Phase 1 as run_workloads: the two
    clusters take turns per workload (all three members of one stopped with
    SIGTERM, the other's started on its own data dirs), the first alternating.
    Phase 2: memory per member after loading 1,000,000 keys into a fresh
    cluster, each key written once."""
    small, large = (2000, 20000) if args.quick else (100000, 1000000)
    kinds = list(binaries)
    cls = {k: Cluster(k, binaries[k], workdir, "bench-%s" % k) for k in kinds}
    try:
        for k in kinds:
            s = cls[k].start(client)
            log("%s cluster: serving after %.2f s, leader %s; loading %d keys" % (k, s, cls[k].order[0], small))
            res[k]["load_small"] = cluster_load(client, cls[k], 0, small, args.quick)
            cls[k].stop()
        for i, (name, wargs) in enumerate(CLUSTER_WORKLOADS):
            for k in (kinds if i % 2 == 0 else kinds[::-1]):
                cl = cls[k]
                s = cl.start(client)
                if name.startswith("put 1c"):
                    res[k]["fdatasync_before_put_1c"] = fdatasync_latency(workdir)
                log("%s cluster: %s for %ss (leader %s, up after %.2f s)" % (k, name, args.duration,
                                                                           cl.order[0], s))
                cpu0, cli0 = cl.cpu_s(), children_cpu_s()
                r = bench(client, cl.endpoint, wargs + ["--duration", "%ds" % args.duration,
                                                        "--key-space", str(small)])
                # CPU seconds the members and the client used during the run:
                # with 2 cores for all four processes, what bounds throughput
                used = [b - a for a, b in zip(cpu0, cl.cpu_s())]
                r["cpu_members_s"] = [used[cl.endpoints().index(ep)] for ep in cl.order]  # leader first
                r["cpu_client_s"] = children_cpu_s() - cli0
                res[k]["workloads"][name] = r
                log("  %.0f req/s, p50 %.2f ms, p99 %.2f ms" % (r["throughput_rps"], r["latency_ms"]["p50"],
                                                                r["latency_ms"]["p99"]))
                cl.stop()
        for k in kinds:
            cls[k].stop()
            cls[k].remove()
        for k in kinds:
            cl = Cluster(k, binaries[k], workdir, "bench-mem-%s" % k)
            cls[k] = cl
            cl.start(client)
            log("%s cluster: fresh data dirs, loading %d keys" % (k, large))
            res[k]["load_large"] = cluster_load(client, cl, 0, large, args.quick)
            cl.find_leader(client)
            res[k]["load_large"]["members"] = cl.member_memory()
            for m in res[k]["load_large"]["members"]:
                log("  %s%s: VmHWM %.0f MiB, RssAnon %.0f MiB, RssFile %.0f MiB" % (
                    m["member"], " (leader)" if m["leader"] else "", mib(m["vmhwm_kb"]),
                    mib(m["rss_anon_kb"]), mib(m["rss_file_kb"])))
            cl.stop()
            cl.remove()
    finally:
        for cl in cls.values():
            cl.stop(signal.SIGKILL)
            cl.remove()


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


def write_page(path, res, fsync, mach, args, started, finished, versions, cluster=None, previous=None):
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
    L.append("Two sections: single members (issue 4's targets; this page's first part), then "
             "[three-member clusters](#three-member-clusters) (issue 7's).\n")
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
    if previous:
        changes_page(L, res, previous)
    if cluster:
        cluster_page(L, cluster, args)
    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        L.append(open(notes).read())
    L.append("## Reproduce\n")
    L.append("```\ncmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOTILLA_TESTS=OFF\n"
             "cmake --build build-bench -j2 --target flotilla\n"
             "bench/compare.py --flotilla build-bench/src/cmd/flotilla   # about 15 minutes; rewrites this page\n```\n")
    L.append("(RelWithDebInfo is `-O2 -g`; assertions stay on in every build type, as in production.)\n")
    L.append("Raw results of this run: `bench/last-run.json`.\n")
    with open(path, "w") as out:
        out.write("\n".join(L))


def changes_page(L, res, prev):
    """The single-member figures against those of the run before this one."""
    L.append("## Single member: changes since the previous run\n")
    L.append("The previous run: %s, Flotilla built from commit %s. Req/s (p99 ms), previous -> this run.\n"
             % (prev.get("started", "?"), prev.get("commit", "?")))
    L.append("| workload | etcd | Flotilla | ratio |")
    L.append("|---|---:|---:|---:|")
    for name, _ in WORKLOADS:
        a, b = prev["results"]["etcd"]["workloads"].get(name), prev["results"]["flotilla"]["workloads"].get(name)
        c, d = res["etcd"]["workloads"][name], res["flotilla"]["workloads"][name]
        if a is None or b is None:
            continue
        L.append("| %s | %.0f (%.2f) -> %.0f (%.2f) | %.0f (%.2f) -> %.0f (%.2f) | %.2f -> **%.2f** |" % (
            name, a["throughput_rps"], a["latency_ms"]["p99"], c["throughput_rps"], c["latency_ms"]["p99"],
            b["throughput_rps"], b["latency_ms"]["p99"], d["throughput_rps"], d["latency_ms"]["p99"],
            ratio(b["throughput_rps"], a["throughput_rps"]), ratio(d["throughput_rps"], c["throughput_rps"])))
    pe, pf = prev["results"]["etcd"].get("load_large"), prev["results"]["flotilla"].get("load_large")
    if pe and pf:
        ce, cf = res["etcd"]["load_large"], res["flotilla"]["load_large"]
        L.append(("| peak RSS with %s keys, MiB |" % "{:,}".format(ce["keys"])) + " %.0f -> %.0f | %.0f -> %.0f | %.2f -> **%.2f** |" % (
            mib(pe["vmhwm_kb"]), mib(ce["vmhwm_kb"]), mib(pf["vmhwm_kb"]), mib(cf["vmhwm_kb"]),
            ratio(pf["vmhwm_kb"], pe["vmhwm_kb"]), ratio(cf["vmhwm_kb"], ce["vmhwm_kb"])))
        L.append(("| anonymous RSS with %s keys, MiB |" % "{:,}".format(ce["keys"])) + " %.0f -> %.0f | %.0f -> %.0f | %.2f -> **%.2f** |" % (
            mib(pe["rss_anon_kb"]), mib(ce["rss_anon_kb"]), mib(pf["rss_anon_kb"]), mib(cf["rss_anon_kb"]),
            ratio(pf["rss_anon_kb"], pe["rss_anon_kb"]), ratio(cf["rss_anon_kb"], ce["rss_anon_kb"])))
    L.append("")


def worst(members, key):
    return max(m[key] for m in members)


def cluster_page(L, cres, args):
    e, f = cres["etcd"], cres["flotilla"]
    L.append("## Three-member clusters\n")
    L.append("Generated by the same run (%s to %s UTC)%s. etcd 3.4 and Flotilla each as a cluster of "
             "three members on this machine: each member its own client and peer port on 127.0.0.1 "
             "and its own data dir on the same disk, started with the same flags (`%s`, etcd's names; "
             "only the binary differs). The client is `flotilla bench` given **all three endpoints, "
             "the leader's first**: it spreads its connections over them round-robin, so the "
             "1-connection runs talk to the leader only and 10 connections go 4/3/3 "
             "(leader/follower/follower); a follower forwards writes to the leader and asks the leader "
             "for a read index for linearizable reads (both servers do both). The clusters take turns "
             "per workload (all three members of one stopped, the other's restarted on their own "
             "data dirs holding %s keys, the first alternating). The 2 cores host the three members "
             "and the client.\n" % (cres.get("started", "?"), cres.get("finished", "?"),
                                     " — QUICK MODE, numbers not meaningful" if args.quick else "",
                                     " ".join(CLUSTER_FLAGS), "{:,}".format(e["load_small"]["keys"])))
    fe, ff = e["fdatasync_before_put_1c"], f["fdatasync_before_put_1c"]
    L.append("One 4 KiB append + fdatasync, median of 500: %.3f ms right before etcd's 1-client put "
             "run, %.3f ms right before Flotilla's.\n" % (fe["median_ms"], ff["median_ms"]))
    L.append("| workload | etcd req/s | Flotilla req/s | ratio | etcd p50 | Flotilla p50 | p50 ratio | etcd p99 | Flotilla p99 | p99 ratio | etcd p99.9 | Flotilla p99.9 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in CLUSTER_WORKLOADS:
        a, b = e["workloads"][name], f["workloads"][name]
        L.append("| %s | %.0f | %.0f | **%.2f** | %.2f | %.2f | **%.2f** | %.2f | %.2f | **%.2f** | %.2f | %.2f |" % (
            name, a["throughput_rps"], b["throughput_rps"], ratio(b["throughput_rps"], a["throughput_rps"]),
            a["latency_ms"]["p50"], b["latency_ms"]["p50"], ratio(b["latency_ms"]["p50"], a["latency_ms"]["p50"]),
            a["latency_ms"]["p99"], b["latency_ms"]["p99"], ratio(b["latency_ms"]["p99"], a["latency_ms"]["p99"]),
            a["latency_ms"]["p99.9"], b["latency_ms"]["p99.9"]))
    errs = {k: sum(r["workloads"][n]["errors"] for n, _ in CLUSTER_WORKLOADS) for k, r in cres.items()
            if k in ("etcd", "flotilla")}
    L.append("\nFailed requests: etcd %d, Flotilla %d.\n" % (errs["etcd"], errs["flotilla"]))
    L.append("CPU used during each run (user + system, from /proc), in microseconds per request: the "
             "three members (leader first, then the followers), and the `flotilla bench` client. The "
             "machine has 2 cores, i.e. 2,000,000 µs of CPU per second for all four processes (and "
             "whatever else runs on the shared machine).\n")
    L.append("| workload | etcd members µs/req | etcd total | Flotilla members µs/req | Flotilla total | client µs/req (etcd run / Flotilla run) |")
    L.append("|---|---|---:|---|---:|---|")
    def per_req(r, x):
        return 1e6 * x / max(1, r["ok"] + r["errors"])
    for name, _ in CLUSTER_WORKLOADS:
        a, b = e["workloads"][name], f["workloads"][name]
        if "cpu_members_s" not in a or "cpu_members_s" not in b:
            continue
        L.append("| %s | %s | %.0f | %s | %.0f | %.0f / %.0f |" % (
            name, " / ".join("%.0f" % per_req(a, x) for x in a["cpu_members_s"]),
            per_req(a, sum(a["cpu_members_s"])),
            " / ".join("%.0f" % per_req(b, x) for x in b["cpu_members_s"]),
            per_req(b, sum(b["cpu_members_s"])), per_req(a, a["cpu_client_s"]), per_req(b, b["cpu_client_s"])))
    L.append("")
    L.append("Memory per member after loading {:,} keys into a fresh cluster (sequential keys, each "
             "written once, 500 in flight over all three endpoints). MiB; \"worst\" is the member "
             "with the most, which the ratios compare.\n".format(e["load_large"]["keys"]))
    L.append("| | etcd | Flotilla | ratio (worst) |")
    L.append("|---|---|---|---:|")
    def row(label, key):
        def cells(x):
            return " / ".join("%.0f%s" % (mib(m[key]), "*" if m["leader"] else "") for m in x["load_large"]["members"])
        L.append("| %s, per member (* the leader) | %s | %s | **%.2f** |" % (
            label, cells(e), cells(f),
            ratio(worst(f["load_large"]["members"], key), worst(e["load_large"]["members"], key))))
    row("anonymous RSS (RssAnon)", "rss_anon_kb")
    row("file-backed RSS (RssFile: mmapped bbolt / LMDB pages)", "rss_file_kb")
    row("peak total RSS (VmHWM)", "vmhwm_kb")
    L.append("| data dirs of the three members, MiB | %.0f | %.0f | %.2f |" % (
        e["load_large"]["data_bytes"] / 1048576, f["load_large"]["data_bytes"] / 1048576,
        ratio(f["load_large"]["data_bytes"], e["load_large"]["data_bytes"])))
    L.append("| load throughput, puts/s | %.0f | %.0f | %.2f |\n" % (
        e["load_large"]["load_rps"], f["load_large"]["load_rps"],
        ratio(f["load_large"]["load_rps"], e["load_large"]["load_rps"])))
    L.append("### Targets (issue 7)\n")
    def w(kind, name):
        return cres[kind]["workloads"][name]
    rows = []
    t = ratio(w("flotilla", "put 500c/50conn")["throughput_rps"], w("etcd", "put 500c/50conn")["throughput_rps"])
    p = ratio(w("flotilla", "put 500c/50conn")["latency_ms"]["p99"], w("etcd", "put 500c/50conn")["latency_ms"]["p99"])
    rows.append(("put 500c/50conn >= 3x etcd, p99 no higher", "%.2fx, p99 %.2fx" % (t, p), t >= 3 and p <= 1))
    t = ratio(w("flotilla", "range-l 100c/10conn")["throughput_rps"], w("etcd", "range-l 100c/10conn")["throughput_rps"])
    rows.append(("range-l 100c/10conn >= 3x etcd", "%.2fx" % t, t >= 3))
    p = ratio(w("flotilla", "put 1c/1conn")["latency_ms"]["p50"], w("etcd", "put 1c/1conn")["latency_ms"]["p50"])
    rows.append(("put 1c/1conn p50 <= 1/2 of etcd's", "%.2fx (%.3f / %.3f ms)" % (
        p, w("flotilla", "put 1c/1conn")["latency_ms"]["p50"], w("etcd", "put 1c/1conn")["latency_ms"]["p50"]), p <= 0.5))
    for label, key, lim, txt in (("anonymous RSS per member with {:,} keys <= 1/10 of etcd", "rss_anon_kb", 0.1, ""),
                                 ("total RSS (VmHWM) per member with {:,} keys <= 1/3 of etcd", "vmhwm_kb", 1 / 3, "")):
        r = ratio(worst(f["load_large"]["members"], key), worst(e["load_large"]["members"], key))
        rows.append((label.format(e["load_large"]["keys"]), "%.2fx (%.0f / %.0f MiB, worst member)" % (
            r, mib(worst(f["load_large"]["members"], key)), mib(worst(e["load_large"]["members"], key))), r <= lim))
    L.append("| target | measured (Flotilla / etcd) | met |")
    L.append("|---|---|---|")
    for t, m, ok in rows:
        L.append("| %s | %s | %s |" % (t, m, "yes" if ok else "**no**"))
    L.append("")


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
    ap.add_argument("--sections", default="single,cluster",
                    help="what to run: single, cluster or both (a section not run keeps its figures "
                         "from bench/last-run.json)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the page and plot from bench/last-run.json (e.g. after editing bench/notes.md)")
    args = ap.parse_args()
    last_path = os.path.join(ROOT, "bench", "last-run.json")
    last = None
    if os.path.exists(last_path):
        with open(last_path) as f:
            last = json.load(f)
    if args.render:
        run = last
        args.duration, args.quick = run["duration_s"], False
        plot(run["results"], os.path.join(os.path.dirname(args.out), "benchmarks.png"))
        write_page(args.out, run["results"], run["fdatasync"], run["machine"], args, run["started"],
                   run.get("finished", "?"), run["versions"], run.get("cluster"), run.get("previous"))
        log("rewrote %s from bench/last-run.json" % args.out)
        return
    sections = set(args.sections.split(","))
    if not sections or not sections <= {"single", "cluster"}:
        sys.exit("--sections: single, cluster or single,cluster")
    if sections != {"single", "cluster"} and last is None:
        sys.exit("--sections with one section needs bench/last-run.json for the other")
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
    versions = {"etcd": version([args.etcd, "--version"]), "flotilla": version([args.flotilla, "--version"]),
                "commit": version(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}
    binaries = {"etcd": args.etcd, "flotilla": args.flotilla}
    if "single" in sections:
        fsync = fdatasync_latency(args.workdir)
        log("fdatasync: median %.3f ms" % fsync["median_ms"])
        res = {k: {"kind": k, "workloads": {}} for k in binaries}
        run_workloads(binaries, client, args.workdir, args, res)
        for kind, binary in binaries.items():
            run_memory(kind, binary, client, args.workdir, args, res[kind])
        finished = time.strftime("%H:%M", time.gmtime())
        # the shared disk's latency drifts: measure again at the end, report both
        fsync_end = fdatasync_latency(args.workdir)
        log("fdatasync at the end: median %.3f ms" % fsync_end["median_ms"])
        fsync = {"median_ms": statistics.median([fsync["median_ms"], fsync_end["median_ms"]]),
                 "start": fsync, "end": fsync_end}
        # what the page compares this run's single-member figures with
        previous = None
        if last is not None:
            previous = {"started": last["started"], "commit": last["versions"].get("commit"),
                        "results": last["results"]}
        single = {"machine": mach, "fdatasync": fsync, "versions": versions, "results": res,
                  "duration_s": args.duration, "started": started, "finished": finished,
                  "previous": previous}
    else:
        single = {k: last[k] for k in ("machine", "fdatasync", "versions", "results", "duration_s",
                                       "started", "finished", "previous") if k in last}
    if "cluster" in sections:
        cres = {k: {"kind": k, "workloads": {}} for k in binaries}
        cres["started"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        cres["commit"] = versions["commit"]
        run_cluster(binaries, client, args.workdir, args, cres)
        cres["finished"] = time.strftime("%H:%M", time.gmtime())
    else:
        cres = last.get("cluster")
    run = dict(single, cluster=cres)
    if not args.quick:
        with open(last_path, "w") as f:
            json.dump(run, f, indent=1)
    plot(run["results"], os.path.join(os.path.dirname(args.out), "benchmarks.png"))
    write_page(args.out, run["results"], run["fdatasync"], run["machine"], args, run["started"],
               run["finished"], run["versions"], cres, run.get("previous"))
    log("wrote %s" % args.out)
    if own_workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

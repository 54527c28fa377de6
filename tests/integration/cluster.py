"""A cluster of N real members on loopback, of either binary: etcd 3.4 or flotilla.

Both binaries get the same etcd 3.4 flags (the contract: a script that starts an
etcd cluster starts a Flotilla cluster with only the binary changed), so every
test written against this module runs against etcd today and Flotilla later.

Addresses. Parallel CTest runs must never race for a port, so each member owns a
whole loopback IP (127.X.Y.Z, X >= 2) and listens on 2379 (client) and 2380
(peer) there. An IP is claimed by creating /tmp/flotilla-test-ips/<ip> with
O_EXCL; the file holds the owner's PID. A claim whose PID is dead is stale and
may be taken over. Claim, takeover and release all run under one flock on the
directory, so two processes never take over the same stale claim.

Processes. Every member has its own temp data dir and log file. Members are
stopped by PID when the cluster is closed and at interpreter exit (also on
SIGTERM); a member's process also gets SIGKILL if this process dies
(PR_SET_PDEATHSIG via setpriv), so a killed test leaves no server behind. Because that
signal fires when the *thread* that forked exits, all members are spawned by
one long-lived spawner thread, whichever thread asks for a restart.

Faults: kill (SIGKILL), pause (SIGSTOP) / resume (SIGCONT), stop (SIGTERM),
restart. Partitions only for flotilla: each member gets
FLOTILLA_TEST_FAULT_FILE=<path>; the file lists the peer member ids (16 hex
digits, one a line) whose traffic that member drops both ways; an empty file
means healed. etcd has no such hook: partition() raises Unsupported.

Environment: CLUSTER_BINARY=etcd|flotilla picks the default binary (BINARY is
accepted too); FLOTILLA_BIN is the flotilla path (as harness.py), ETCD_BIN the
etcd path.
"""
import atexit
import base64
import errno
import fcntl
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

FLOTILLA_BIN = os.environ.get("FLOTILLA_BIN", "build/src/cmd/flotilla")
ETCD_BIN = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
IP_DIR = "/tmp/flotilla-test-ips"
CLIENT_PORT = 2379
PEER_PORT = 2380
# Fault-file and planted-bug hooks the flotilla binary reads (test-only).
FAULT_FILE_ENV = "FLOTILLA_TEST_FAULT_FILE"
UNSAFE_READS_ENV = "FLOTILLA_TEST_UNSAFE_LOCAL_READS"


class Unsupported(Exception):
    """The binary under test cannot do this (e.g. partitions on etcd)."""


class NotACluster(Unsupported):
    """The members came up but each sees only itself: the binary ignores
    --initial-cluster (flotilla before Raft is wired into the member)."""


def default_binary():
    b = os.environ.get("CLUSTER_BINARY") or os.environ.get("BINARY") or "flotilla"
    if b not in ("etcd", "flotilla"):
        raise ValueError("CLUSTER_BINARY must be etcd or flotilla, not %r" % b)
    return b


def binary_path(binary):
    return ETCD_BIN if binary == "etcd" else FLOTILLA_BIN


def binary_has_hook(binary, env_name):
    """True if the binary mentions env_name (a getenv literal), i.e. has that test hook."""
    try:
        with open(binary_path(binary), "rb") as f:
            return env_name.encode() in f.read()
    except OSError:
        return False


def log(msg):
    print("[%8.3f] %s" % (time.monotonic() % 100000, msg), flush=True)


# ---------------------------------------------------------------- loopback IPs

def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def _ports_free(ip):
    for port in (CLIENT_PORT, PEER_PORT):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError:
                return False
    return True


class _DirLock:
    def __enter__(self):
        os.makedirs(IP_DIR, exist_ok=True)
        self.fd = os.open(os.path.join(IP_DIR, ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _try_claim(ip):
    """Under the dir lock: claim ip for this PID. True on success."""
    path = os.path.join(IP_DIR, ip)
    try:
        with open(path) as f:
            owner = int(f.read().strip() or "0")
    except FileNotFoundError:
        owner = None
    except ValueError:
        owner = 0  # torn or garbage claim: nobody can own it
    if owner is not None:
        if _pid_alive(owner):
            return False
        os.unlink(path)  # stale: its owner died without releasing
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write("%d\n" % os.getpid())
    if not _ports_free(ip):  # e.g. an orphan server of a dead test still listens
        os.unlink(path)
        return False
    return True


def claim_ips(count, rng=None, candidates=None):
    """Claims count loopback IPs 127.X.Y.Z (X in 2..254) for this process, or
    only from candidates (tests of the claim protocol)."""
    rng = rng or random.Random()
    got = []
    with _DirLock():
        for attempt in range(20000 if candidates is None else len(candidates)):
            if len(got) == count:
                break
            if candidates is None:  # bounded: far more tries than tests ever hold IPs
                ip = "127.%d.%d.%d" % (rng.randint(2, 254), rng.randint(0, 255), rng.randint(1, 254))
            else:
                ip = candidates[attempt]
            if ip not in got and _try_claim(ip):
                got.append(ip)
    if len(got) != count:
        release_ips(got)
        raise AssertionError("could not claim %d loopback IPs under %s" % (count, IP_DIR))
    return got


def release_ips(ips):
    with _DirLock():
        for ip in ips:
            path = os.path.join(IP_DIR, ip)
            try:
                with open(path) as f:
                    if int(f.read().strip() or "0") != os.getpid():
                        continue
                os.unlink(path)
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------- spawning

# setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the member, so Popen needs
# no preexec_fn (unsafe with threads: the child may deadlock before exec).
SETPRIV = shutil.which("setpriv")
_DEATHSIG = [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []


_spawn_q = queue.Queue(maxsize=64)


def _spawner():
    while True:
        args, env, logf, reply = _spawn_q.get()
        try:
            reply.put(subprocess.Popen(_DEATHSIG + args, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL))
        except Exception as e:  # handed back to the caller, who raises it
            reply.put(e)


_spawner_thread = None
_spawner_lock = threading.Lock()


def _spawn(args, env, logf):
    global _spawner_thread
    with _spawner_lock:
        if _spawner_thread is None:
            _spawner_thread = threading.Thread(target=_spawner, name="spawner", daemon=True)
            _spawner_thread.start()
    reply = queue.Queue(maxsize=1)
    _spawn_q.put((args, env, logf, reply), timeout=30)
    r = reply.get(timeout=60)
    if isinstance(r, Exception):
        raise r
    return r


# ---------------------------------------------------------------- etcdctl

def etcdctl(endpoints, *args, check=True, timeout_s=10.0):
    """Runs etcdctl (API v3) against a list of endpoints; returns (rc, stdout, stderr)."""
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    env = dict(os.environ, ETCDCTL_API="3")
    cmd_timeout = max(1, int(timeout_s) - 1)
    cmd = [ETCDCTL, "--endpoints", ",".join(endpoints), "--dial-timeout", "1s",
           "--command-timeout", "%ds" % cmd_timeout] + list(args)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s + 5)
    except subprocess.TimeoutExpired:
        if check:
            raise AssertionError("etcdctl %s: timed out" % " ".join(args))
        return 124, "", "timeout"
    if check and p.returncode != 0:
        raise AssertionError("etcdctl %s on %s failed (%d): %s"
                             % (" ".join(args), ",".join(endpoints), p.returncode, p.stderr.strip()))
    return p.returncode, p.stdout, p.stderr


def hex_id(member_id):
    return "%016x" % member_id


def _parse_status(out):
    """{host:port: status} from `etcdctl endpoint status -w json` (partial output too)."""
    res = {}
    try:
        for row in json.loads(out or "[]"):
            res[row["Endpoint"].replace("http://", "")] = row["Status"]
    except (ValueError, KeyError, TypeError):
        pass
    return res


# ---------------------------------------------------------------- members

class ClusterMember:
    """One member: fixed name, IP, data dir, log and fault file across restarts."""

    def __init__(self, cluster, index, ip):
        self.cluster = cluster
        self.index = index
        self.name = "m%d" % index
        self.ip = ip
        self.dir = os.path.join(cluster.tmp, self.name)
        os.makedirs(self.dir)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "member.log")
        self.fault_file = os.path.join(self.dir, "faults")
        self.extra_env = {}
        self.proc = None
        self.paused = False
        self.id = None  # member id (int), known once the cluster is up
        self._logf = None
        self._write_faults([])

    @property
    def client_url(self):
        return "http://%s:%d" % (self.ip, CLIENT_PORT)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.ip, PEER_PORT)

    @property
    def endpoint(self):
        return "%s:%d" % (self.ip, CLIENT_PORT)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def args(self):
        c = self.cluster
        # flotilla is one binary for server and client verbs: `serve` is the server.
        verb = ["serve"] if c.binary == "flotilla" else []
        return [binary_path(c.binary)] + verb + ["--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", c.initial_cluster(), "--initial-cluster-state", "new",
                "--initial-cluster-token", c.token,
                "--heartbeat-interval", str(c.heartbeat_ms), "--election-timeout", str(c.election_ms)]

    def start(self):
        assert not self.alive(), "%s is already running" % self.name
        env = dict(os.environ)
        if self.cluster.binary == "flotilla":
            env[FAULT_FILE_ENV] = self.fault_file
        env.update(self.extra_env)
        if self._logf is None:
            self._logf = open(self.log_path, "ab")
        self._logf.write(b"==== harness: start %s at monotonic %.3f s\n" % (self.name.encode(), time.monotonic()))
        self._logf.flush()
        self.proc = _spawn(self.args(), env, self._logf)
        log("started %s pid %d on %s" % (self.name, self.proc.pid, self.ip))
        self.paused = False
        return self

    def wait_listening(self, timeout_s=20.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError("%s exited (%s) before listening; log tail:\n%s"
                                     % (self.name, self.proc and self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection((self.ip, CLIENT_PORT), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("%s: nothing listens on %s after %.0fs" % (self.name, self.endpoint, timeout_s))

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        """SIGKILL and reap; returns the exit code (None if it was not running)."""
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            self.proc = None
            return code
        os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self.proc = None
        self.paused = False
        return code

    def stop(self, timeout_s=20.0):
        """SIGTERM (SIGCONT first if paused), SIGKILL after timeout_s; returns the exit code."""
        if not self.alive():
            return self.kill()
        os.kill(self.proc.pid, signal.SIGTERM)
        if self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()
        self.proc = None
        self.paused = False
        return code

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def restart(self, wait=True):
        self.kill()
        self.start()
        if wait:
            self.wait_listening()
        return self

    def _write_faults(self, ids):
        # Write-then-rename so the member never reads half a file.
        tmp = self.fault_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(hex_id(i) + "\n" for i in sorted(ids)))
        os.rename(tmp, self.fault_file)

    def drop_traffic_with(self, members):
        if self.cluster.binary != "flotilla":
            raise Unsupported("partitions need flotilla's %s hook; %s has none"
                              % (FAULT_FILE_ENV, self.cluster.binary))
        ids = [m.id for m in members if m is not self]
        assert all(i is not None for i in ids), "member ids unknown: call cluster.member_ids() first"
        self._write_faults(ids)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self):
        return "%s(%s%s)" % (self.name, self.ip, "" if self.id is None else " " + hex_id(self.id))


# ---------------------------------------------------------------- cluster

_live_clusters = []


class Cluster:
    """N members of one binary. Use as a context manager, or call close()."""

    def __init__(self, n=3, binary=None, heartbeat_ms=100, election_ms=1000, token=None,
                 member_env=None, keep_dir=None):
        assert 1 <= n <= 9
        self.binary = binary or default_binary()
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.tmp = tempfile.mkdtemp(prefix="flotilla-cluster-")
        self.token = token or "test-%d-%s" % (os.getpid(), os.path.basename(self.tmp))
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get("CLUSTER_KEEP_DIR"))
        self.ips = claim_ips(n)
        self.members = [ClusterMember(self, i, ip) for i, ip in enumerate(self.ips)]
        for i, m in enumerate(self.members):
            if member_env:
                m.extra_env.update(member_env(i) or {})
        _live_clusters.append(self)
        log("cluster: %d %s members in %s: %s" % (n, self.binary, self.tmp,
                                                 ", ".join("%s=%s" % (m.name, m.ip) for m in self.members)))

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    def endpoints(self, members=None):
        return [m.endpoint for m in (members or self.members)]

    def start(self, wait_leader_s=30.0):
        path = binary_path(self.binary)
        if not os.access(path, os.X_OK):
            raise AssertionError("binary %s not found or not executable" % path)
        for m in self.members:
            m.start()
        for m in self.members:
            try:
                m.wait_listening()
            except AssertionError:
                if self.binary == "flotilla" and "unknown flag" in m.log_tail():
                    raise NotACluster("%s rejects the etcd cluster flags: %s"
                                      % (binary_path(self.binary), m.log_tail(1)))
                raise
        if len(self.members) > 1 and self.member_count() < len(self.members):
            raise NotACluster("%s lists %d member(s), not %d: it does not form a cluster"
                              % (binary_path(self.binary), self.member_count(), len(self.members)))
        self.wait_for_leader(wait_leader_s)
        self.member_ids()
        return self

    # --- status

    def statuses(self, members=None, timeout_s=3.0):
        """{member name: etcd endpoint-status dict} for the members that answered.

        With every member up, asks `endpoint status --cluster` (which also
        checks that the member list advertises each member's client URL);
        otherwise asks the live members by name, since --cluster waits out the
        command timeout for every dead or paused member."""
        everyone = members is None and all(m.alive() and not m.paused for m in self.members)
        members = [m for m in (members or self.members) if m.alive() and not m.paused]
        if not members:
            return {}
        if everyone:
            by_ep = self.cluster_status(timeout_s)
        else:
            _, out, _ = etcdctl(self.endpoints(members), "endpoint", "status", "-w", "json",
                                check=False, timeout_s=timeout_s)
            by_ep = _parse_status(out)
        return {m.name: by_ep[m.endpoint] for m in members if m.endpoint in by_ep}

    def cluster_status(self, timeout_s=3.0):
        """etcdctl endpoint status --cluster -w json via the live members: {endpoint: status}."""
        live = [m for m in self.members if m.alive() and not m.paused]
        _, out, _ = etcdctl(self.endpoints(live), "endpoint", "status", "--cluster", "-w", "json",
                            check=False, timeout_s=timeout_s)
        return _parse_status(out)

    def leader(self, members=None):
        """The member a majority of the cluster names as leader (in one term), else None."""
        st = self.statuses(members)
        votes = {}
        for name, s in st.items():
            lid = s.get("leader", 0)
            term = s.get("raftTerm", 0)
            if lid:
                votes[(lid, term)] = votes.get((lid, term), 0) + 1
        for (lid, term), count in votes.items():
            if count * 2 > len(self.members):
                for m in self.members:
                    if m.name in st and st[m.name]["header"]["member_id"] == lid:
                        return m
        return None

    def wait_for_leader(self, timeout_s=30.0, members=None, exclude=None):
        """Waits until a majority agrees on a live leader (not `exclude`); returns it."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            ld = self.leader(members)
            if ld is not None and ld is not exclude and ld.alive() and not ld.paused:
                return ld
            last = self.statuses(members)
            time.sleep(0.1)
        raise AssertionError("no leader after %.1fs; last statuses: %s\n%s" % (
            timeout_s, json.dumps(last, indent=None)[:2000], self.log_tails()))

    def member_ids(self):
        """Fills and returns {name: member id} from `member list` (ids as ints; hex_id() prints them)."""
        live = [m for m in self.members if m.alive() and not m.paused]
        _, out, _ = etcdctl(self.endpoints(live), "member", "list", "-w", "json")
        ids = {}
        for mem in json.loads(out).get("members", []):
            ids[mem.get("name", "")] = mem["ID"]
        for m in self.members:
            if m.name in ids:
                m.id = ids[m.name]
        return ids

    def member_ids_hex(self):
        """{name: member id as 16 hex digits}, the form fault files and logs use."""
        return {name: hex_id(i) for name, i in self.member_ids().items()}

    def member_count(self):
        live = [m for m in self.members if m.alive() and not m.paused]
        _, out, _ = etcdctl(self.endpoints(live[:1]), "member", "list", "-w", "json")
        return len(json.loads(out).get("members", []))

    # --- data

    def put(self, key, value, members=None, timeout_s=5.0, check=True):
        rc, out, err = etcdctl(self.endpoints(members), "put", key, value, check=check, timeout_s=timeout_s)
        return rc == 0

    def get(self, key, members=None, serializable=False, timeout_s=5.0):
        """The value of key (str) or None if absent; raises on error."""
        args = ["get", key, "-w", "json"]
        if serializable:
            args.append("--consistency=s")
        _, out, _ = etcdctl(self.endpoints(members), *args, timeout_s=timeout_s)
        kvs = json.loads(out).get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0]["value"]).decode()

    # --- partitions (flotilla only)

    def partition(self, *groups):
        """Splits the members into groups that cannot talk to each other.

        Each group is a list of members; members not named form one more group.
        Members within a group keep talking; traffic across groups is dropped
        both ways (each side writes the other side's ids in its fault file).
        """
        if self.binary != "flotilla":
            raise Unsupported("partitions need flotilla's %s hook; %s has none" % (FAULT_FILE_ENV, self.binary))
        named = [m for g in groups for m in g]
        rest = [m for m in self.members if m not in named]
        groups = [list(g) for g in groups] + ([rest] if rest else [])
        if any(m.id is None for m in self.members):
            self.member_ids()
        for g in groups:
            others = [m for m in self.members if m not in g]
            for m in g:
                m.drop_traffic_with(others)
        log("partition: " + " | ".join(",".join(m.name for m in g) for g in groups))

    def heal(self):
        for m in self.members:
            m._write_faults([])
        log("partition healed")

    # --- lifecycle

    def log_tails(self, lines=15):
        return "\n".join("---- %s (%s) log tail:\n%s" % (m.name, m.ip, m.log_tail(lines)) for m in self.members)

    def close(self):
        for m in self.members:
            try:
                m.kill()
            except Exception:
                pass
            if m._logf is not None:
                m._logf.close()
                m._logf = None
        release_ips(self.ips)
        self.ips = []
        if self in _live_clusters:
            _live_clusters.remove(self)
        if self.keep_dir:
            log("cluster dir kept: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            print(self.log_tails(), flush=True)
            self.close()
            raise

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            print(self.log_tails(), flush=True)
        self.close()


@atexit.register
def _close_all():
    for c in list(_live_clusters):
        try:
            c.close()
        except Exception:
            pass


def _on_sigterm(signum, frame):
    sys.exit(128 + signum)  # runs atexit: members are killed by PID


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)


def skip(msg):
    """Exit as a CTest skip (SKIP_RETURN_CODE 77)."""
    print("SKIP: " + msg, flush=True)
    sys.exit(77)


if __name__ == "__main__":
    # Smoke: python3 cluster.py [n] starts a cluster, writes, prints status, stops.
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with Cluster(n) as c:
        ld = c.wait_for_leader()
        print("leader", ld, "ids", {k: hex_id(v) for k, v in c.member_ids().items()})
        c.put("smoke", "1")
        print("get", c.get("smoke"), "serializable from each:",
              [c.get("smoke", members=[m], serializable=True) for m in c.members])
        print(json.dumps(c.cluster_status(), indent=1)[:600])

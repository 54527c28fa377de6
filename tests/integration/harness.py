"""Shared pieces of the integration tests.

A Member is one real `flotilla serve` process on 127.0.0.1 with its own temp
data dir; it is stopped by PID when the test ends (with, or at exit). etcdctl()
runs the Debian etcdctl against it and returns its output. Tests use plain
asserts; a failing assert fails the CTest test.
"""
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

FLOTILLA_BIN = os.environ.get("FLOTILLA_BIN", "build/src/cmd/flotilla")
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

_live = []


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout_s=20.0, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("server exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on port %d after %.0fs" % (port, timeout_s))


class Member:
    """One flotilla member. data_dir persists across restart() for crash tests."""

    def __init__(self, extra_args=(), data_dir=None, port=None, name="default"):
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.mkdtemp(prefix="flotilla-test-")
            data_dir = os.path.join(self.tmp, "data")
        self.data_dir = data_dir
        # port None: the first start listens on port 0 and reads the port the
        # kernel gave from the member's log ("serving gRPC ... port=N"), so
        # parallel tests never race for a port; restarts keep that port
        self.port = port
        self.name = name
        self.extra_args = list(extra_args)
        self.env = None  # the process environment (None: this one's)
        self.proc = None
        log_dir = self.tmp or tempfile.mkdtemp(prefix="flotilla-log-")
        self.log_path = os.path.join(log_dir, "member.log")
        _live.append(self)

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        port = self.port or 0
        url = "http://127.0.0.1:%d" % port
        args = [FLOTILLA_BIN, "serve", "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", url] + self.extra_args
        if "--advertise-client-urls" not in self.extra_args and self.port:
            args += ["--advertise-client-urls", url]
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if not self.port:
            self.port = self._bound_port(offset)
        wait_port(self.port, proc=self.proc)
        return self

    def _bound_port(self, offset, timeout_s=20.0):
        """The port named by this start's "serving gRPC" log line."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                m = re.search(rb'msg="serving gRPC" host=\S+ port=(\d+)', f.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s before listening:\n%s"
                                     % (self.proc.returncode, self.log_text()[-2000:]))
            time.sleep(0.02)
        raise AssertionError("no \"serving gRPC\" line after %.0fs" % timeout_s)

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def stop(self):
        """Clean shutdown with SIGTERM; returns the exit code."""
        return self.kill(signal.SIGTERM)

    def restart(self):
        self.kill()
        return self.start()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        self.kill()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


@atexit.register
def _stop_all():
    for m in _live:
        try:
            m.close()
        except Exception:
            pass


def etcdctl(endpoint, *args, check=True, stdin=None, timeout=30):
    """Runs etcdctl (API v3) against endpoint; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, ETCDCTL_API="3")
    proc = subprocess.run([ETCDCTL, "--endpoints", endpoint, "--dial-timeout", "5s",
                           "--command-timeout", "20s"] + list(args),
                          input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("etcdctl %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


class Etcd:
    """A real etcd 3.4 (Debian etcd-server) on loopback, to compare answers with."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="etcd-ref-")
        self.port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self.extra_args = []
        _live.append(self)

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        url = "http://127.0.0.1:%d" % self.port
        peer = "http://127.0.0.1:%d" % self.peer_port
        args = [etcd, "--name", "default", "--data-dir", os.path.join(self.tmp, "data"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "default=" + peer] + self.extra_args
        self.log = open(os.path.join(self.tmp, "etcd.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        return self

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

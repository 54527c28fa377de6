"""`flotilla serve` as a process: endpoint status and member list (fields as
etcd 3.4 has them), flags (both `--flag value` and `--flag=value`, unknown
flag -> exit 2, https -> clear error, --help), several listen URLs and
nothing else listened on, the default data dir "<name>.flotilla", identity
and data kept across a clean SIGTERM/SIGINT restart (exit code 0), start-up
failures (port busy, data dir in use) exit 1 with a message.
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import harness


def etcdctl_json(endpoint, *args):
    _, out, _ = harness.etcdctl(endpoint, *args, "-w", "json")
    return json.loads(out)


def key_shape(value):
    """The field names of a JSON value, recursively (values ignored)."""
    if isinstance(value, dict):
        return {k: key_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [key_shape(v) for v in value[:1]]
    return type(value).__name__


def listening_ports(pid):
    """TCP ports the process listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def check_status_and_members():
    peer = "http://127.0.0.1:%d" % harness.free_port()
    member = harness.Member(extra_args=["--initial-advertise-peer-urls", peer,
                                        "--listen-peer-urls", peer])
    with harness.Etcd() as etcd, member:
        for ep in (etcd.endpoint, member.endpoint):
            for i in range(3):
                harness.etcdctl(ep, "put", "k%d" % i, "v")
        ref = etcdctl_json(etcd.endpoint, "endpoint", "status")
        got = etcdctl_json(member.endpoint, "endpoint", "status")
        assert key_shape(got) == key_shape(ref), (got, ref)
        st = got[0]["Status"]
        assert st["version"].startswith("3.4."), st
        assert st["dbSize"] > 0 and st["dbSizeInUse"] > 0, st
        # the same Raft numbers as etcd 3.4 on a new single member: bootstrap,
        # the leader's empty entry, the member's publish and the cluster
        # version come before the three puts (etcd: raftIndex 7, term 2)
        rst = ref[0]["Status"]
        assert (st["raftIndex"], st["raftAppliedIndex"], st["raftTerm"]) == \
            (rst["raftIndex"], rst["raftAppliedIndex"], rst["raftTerm"]) == (7, 7, 2), (st, rst)
        assert st["header"]["raft_term"] == st["raftTerm"], st
        assert st["leader"] == st["header"]["member_id"] != 0, st
        assert st["header"]["revision"] == 4, st
        assert st["header"]["cluster_id"] != 0
        member_id = st["header"]["member_id"]

        # table output: the same header line as etcd, our values in the row
        ref_table = harness.etcdctl(etcd.endpoint, "endpoint", "status", "-w", "table")[1]
        table = harness.etcdctl(member.endpoint, "endpoint", "status", "-w", "table")[1]
        def columns(line):
            return [c.strip() for c in line.split("|")[1:-1]]

        assert columns(table.splitlines()[1]) == columns(ref_table.splitlines()[1]), table
        row = columns(table.splitlines()[3])
        assert row[0] == member.endpoint and row[1] == "%x" % member_id, row
        assert row[2].startswith("3.4.") and row[3].endswith("kB"), row
        assert row[4:9] == ["true", "false", str(st["raftTerm"]), "7", "7"], row

        # member list: simple and json
        _, simple, _ = harness.etcdctl(member.endpoint, "member", "list")
        url = "http://" + member.endpoint
        assert simple == "%x, started, default, %s, %s, false\n" % (member_id, peer, url), simple
        ref_ml = etcdctl_json(etcd.endpoint, "member", "list")
        ml = etcdctl_json(member.endpoint, "member", "list")
        assert key_shape(ml) == key_shape(ref_ml), (ml, ref_ml)
        assert ml["members"] == [{"ID": member_id, "name": "default", "peerURLs": [peer],
                                  "clientURLs": [url]}], ml
        assert ml["header"]["member_id"] == member_id

        # clean restart (SIGTERM): exit 0, same identity, same data
        assert member.stop() == 0, member.log_text()
        member.start()
        again = etcdctl_json(member.endpoint, "endpoint", "status")[0]["Status"]
        assert again["header"]["member_id"] == member_id
        assert again["header"]["cluster_id"] == st["header"]["cluster_id"]
        # a restart, as etcd's: a new term, its empty entry and the publish
        assert (again["raftIndex"], again["raftTerm"], again["header"]["revision"]) == \
            (9, 3, 4), again
        _, out, _ = harness.etcdctl(member.endpoint, "get", "k2")
        assert out == "k2\nv\n", out
        assert member.kill(signal.SIGINT) == 0, member.log_text()
        log = member.log_text()
        assert "flotilla_version=" in log and "etcd_api_version=3.4" in log, log
        assert member.data_dir in log


def check_flags():
    bin_ = harness.FLOTILLA_BIN
    r = subprocess.run([bin_, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--data-dir" in r.stdout and "--listen-client-urls" in r.stdout, r
    r = subprocess.run([bin_, "serve", "--no-such-flag", "1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--no-such-flag" in r.stderr, r
    r = subprocess.run([bin_, "serve", "--name"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--name" in r.stderr, r
    r = subprocess.run([bin_, "serve", "--max-request-bytes=lots"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "max-request-bytes" in r.stderr, r
    with tempfile.TemporaryDirectory(prefix="flotilla-flags-") as tmp:
        r = subprocess.run([bin_, "serve", "--data-dir", tmp + "/d",
                            "--listen-client-urls", "https://127.0.0.1:%d" % harness.free_port()],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "https" in r.stderr, r
        assert not os.path.exists(tmp + "/d"), "a refused start must not create the data dir"


def check_start_failures():
    """A busy port or a data dir in use: exit 1 with a clear message, nothing left running."""
    bin_ = harness.FLOTILLA_BIN
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="flotilla-busy-") as tmp:
        r = subprocess.run([bin_, "serve", "--data-dir", tmp + "/d", "--listen-client-urls",
                            "http://127.0.0.1:%d" % port], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "cannot listen on 127.0.0.1:%d" % port in r.stderr, r
    busy.close()
    with harness.Member() as member:
        url = "http://127.0.0.1:%d" % harness.free_port()
        r = subprocess.run([bin_, "serve", "--data-dir", member.data_dir,
                            "--listen-client-urls", url], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "in use by another process" in r.stderr, r
        harness.etcdctl(member.endpoint, "put", "still", "served")


def check_multi_url_equals_form_default_dir():
    """--flag=value everywhere, two listen URLs, no --data-dir: "<name>.flotilla" in cwd."""
    p1, p2 = harness.free_port(), harness.free_port()
    with tempfile.TemporaryDirectory(prefix="flotilla-cwd-") as cwd:
        log = open(os.path.join(cwd, "log"), "wb")
        proc = subprocess.Popen(
            [os.path.abspath(harness.FLOTILLA_BIN), "serve", "--name=eqform",
             "--listen-client-urls=http://127.0.0.1:%d,http://127.0.0.1:%d" % (p1, p2),
             "--max-request-bytes=2000000", "--quota-backend-bytes=4294967296",
             "--log-level=info"], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            harness.wait_port(p1, proc=proc)
            harness.wait_port(p2, proc=proc)
            # the client URLs, and the peer listener (an ephemeral port for a
            # lone member started without cluster flags), named in the log
            log.flush()
            text = open(os.path.join(cwd, "log")).read()
            peer = re.search(r"peer_port=(\d+)", text)
            assert peer, text
            assert listening_ports(proc.pid) == {p1, p2, int(peer.group(1))}, \
                (listening_ports(proc.pid), text)
            harness.etcdctl("127.0.0.1:%d" % p1, "put", "via", "p1")
            _, out, _ = harness.etcdctl("127.0.0.1:%d" % p2, "get", "via")
            assert out == "via\np1\n", out
            _, ml, _ = harness.etcdctl("127.0.0.1:%d" % p2, "member", "list")
            assert ", eqform, http://localhost:2380, http://127.0.0.1:%d,http://127.0.0.1:%d, false" \
                % (p1, p2) in ml, ml
            assert os.path.isdir(os.path.join(cwd, "eqform.flotilla", "wal"))
            assert os.path.isdir(os.path.join(cwd, "eqform.flotilla", "db"))
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            log.close()
        assert rc == 0, open(os.path.join(cwd, "log")).read()


def main():
    started = time.monotonic()
    check_flags()
    check_start_failures()
    check_multi_url_equals_form_default_dir()
    check_status_and_members()
    print("ok in %.1fs" % (time.monotonic() - started))


if __name__ == "__main__":
    main()

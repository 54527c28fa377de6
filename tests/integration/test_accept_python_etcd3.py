"""Acceptance: Debian's unmodified python3-etcd3 (0.12, on grpcio) against a
real `flotilla serve`, with exact results compared to a real etcd 3.4.

The same client script runs against a fresh etcd and a fresh Flotilla; every
step's result (values, create/mod revisions, versions, header revisions,
txn outcomes, gRPC error codes and texts) is normalized (cluster_id,
member_id and raft_term dropped) and must be equal. Then Flotilla-only checks:
status() (3.4.x version, db size, leader), members, and that an
unimplemented method (lease) fails at once with gRPC UNIMPLEMENTED.

Also checks that HTTP/2 keepalive pings on an idle connection are acked.

Covers: put (prev_kv), get (value + metadata), get_prefix with every sort
order/target, get_range, get_all, put_if_not_exists, replace, transaction
(compares on value/version/create/mod, success and failure ops, a nested
txn), delete (prev_kv, missing key), delete_prefix, compact and reading a
compacted / future revision (python-etcd3 0.12 ignores `revision` in its
range helpers, so that read goes through the client's own KV stub).

python3-etcd3 is a Debian package: when the interpreter CTest uses (maybe a
pyenv one) cannot import it, the test re-executes itself with /usr/bin/python3;
if neither can, it fails and says which package to install.
FLOTILLA_COMPARE_WITH_ETCD=1 runs the script on two etcds (checks the test).
"""
import os
import sys
import time

_REEXEC_MARK = "FLOTILLA_ACCEPT_REEXEC"
_DEBIAN_PYTHON = "/usr/bin/python3"

try:
    import etcd3
    import grpc
    from google.protobuf import json_format
except ImportError as exc:
    _here = os.path.realpath(sys.executable or "")
    if (os.environ.get(_REEXEC_MARK) != "1" and os.path.exists(_DEBIAN_PYTHON)
            and _here != os.path.realpath(_DEBIAN_PYTHON)):
        os.environ[_REEXEC_MARK] = "1"
        sys.stdout.flush()
        os.execv(_DEBIAN_PYTHON, [_DEBIAN_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
    print("FAIL: cannot import etcd3/grpc (%s) with %s nor %s: install the Debian package "
          "python3-etcd3 (scripts/install-deps.sh does)" % (exc, sys.executable, _DEBIAN_PYTHON))
    sys.exit(1)

import harness  # noqa: E402  (after the interpreter choice above)

CLUSTER_FIELDS = {"clusterId", "memberId", "raftTerm"}
RPC_TIMEOUT_S = 10


def strip_cluster(value):
    if isinstance(value, dict):
        return {k: strip_cluster(v) for k, v in value.items() if k not in CLUSTER_FIELDS}
    if isinstance(value, list):
        return [strip_cluster(v) for v in value]
    return value


def norm(value):
    """A plain, comparable form of whatever python-etcd3 returned."""
    if isinstance(value, sys.modules["etcd3.client"].KVMetadata):
        return {"key": value.key, "create_revision": value.create_revision,
                "mod_revision": value.mod_revision, "version": value.version,
                "lease": value.lease_id, "header_revision": value.response_header.revision}
    if hasattr(value, "DESCRIPTOR"):  # a protobuf response
        return strip_cluster(json_format.MessageToDict(value))
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if hasattr(value, "__next__"):  # generators from get_prefix & co.
        return [norm(v) for v in value]
    return value


def attempt(fn):
    """Runs one client call; errors become (code, details) so they compare too."""
    try:
        return ("ok", norm(fn()))
    except grpc.RpcError as exc:
        return ("rpc-error", exc.code().name, exc.details())
    except etcd3.exceptions.Etcd3Exception as exc:
        return ("etcd3-error", type(exc).__name__)


def script(c):
    """(name, thunk) steps; run in this order on a fresh store."""
    t = c.transactions
    s = []

    def add(name, fn):
        s.append((name, fn))

    add("put foo", lambda: c.put("foo", "bar"))
    for k, v in [("foo1", "zeta"), ("foo2", "alpha"), ("foo3", "mid"), ("zoo", "val"),
                 ("foo", "bar2")]:
        add("put %s" % k, lambda k=k, v=v: c.put(k, v))
    add("put foo2 prev_kv", lambda: c.put("foo2", "beta", prev_kv=True))
    add("put binary", lambda: c.put(b"bin\x00\xff", b"\x00\x01\x02"))
    for k in ("a/1", "a/2", "a/3"):
        add("put " + k, lambda k=k: c.put(k, k.upper()))
    add("get foo", lambda: c.get("foo"))
    add("get binary", lambda: c.get(b"bin\x00\xff"))
    add("get missing", lambda: c.get("nope"))
    add("get serializable", lambda: c.get("foo2", serializable=True))
    for order in ("ascend", "descend"):
        for target in ("key", "create", "mod", "version", "value"):
            add("get_prefix foo %s %s" % (order, target),
                lambda o=order, tg=target: c.get_prefix("foo", sort_order=o, sort_target=tg))
    add("get_prefix keys_only", lambda: c.get_prefix("a/", keys_only=True))
    add("get_prefix none", lambda: c.get_prefix("nothing/"))
    add("get_range foo1..foo3", lambda: c.get_range("foo1", "foo3"))
    add("get_range descend", lambda: c.get_range("a", "g", sort_order="descend"))
    add("get_all", lambda: c.get_all())
    add("put_if_not_exists new", lambda: c.put_if_not_exists("fresh", "1"))
    add("put_if_not_exists again", lambda: c.put_if_not_exists("fresh", "2"))
    add("replace ok", lambda: c.replace("foo", "bar2", "bar3"))
    add("replace stale", lambda: c.replace("foo", "bar2", "nope"))
    add("get foo after replace", lambda: c.get("foo"))
    add("txn all compares true", lambda: c.transaction(
        compare=[t.value("foo") == "bar3", t.version("foo") > 2, t.create("foo1") < 3,
                 t.mod("zoo") != 0],
        success=[t.put("txn-ok", "yes"), t.get("foo"), t.delete("foo3", prev_kv=True),
                 t.get("a/", "a0")],
        failure=[t.put("txn-failed", "yes")]))
    add("txn value mismatch", lambda: c.transaction(
        compare=[t.value("foo") == "bar2"],
        success=[t.put("txn-ok2", "yes")],
        failure=[t.put("txn-failed", "yes"), t.get("foo1"), t.get("zoo")]))
    add("txn version == and mod >", lambda: c.transaction(
        compare=[t.version("foo2") == 2, t.mod("foo2") > 100],
        success=[t.put("never", "1")], failure=[t.get("foo2")]))
    add("txn missing key compares", lambda: c.transaction(
        compare=[t.version("ghost") == 0, t.create("ghost") == 0, t.value("ghost") < "a"],
        success=[t.get("ghost")], failure=[t.put("ghost", "boo")]))
    add("txn nested", lambda: c.transaction(
        compare=[t.value("zoo") == "val"],
        success=[t.txn(compare=[t.version("foo") > 1],
                       success=[t.put("nested", "in"), t.get("nested")],
                       failure=[])],
        failure=[]))
    add("txn duplicate put", lambda: c.transaction(
        compare=[], success=[t.put("dup", "1"), t.put("dup", "2")], failure=[]))
    add("txn empty", lambda: c.transaction(compare=[], success=[], failure=[]))
    add("get_all after txns", lambda: c.get_all())
    add("delete foo1", lambda: c.delete("foo1"))
    add("delete missing", lambda: c.delete("nope"))
    add("delete prev_kv", lambda: c.delete("zoo", prev_kv=True, return_response=True))
    add("delete_prefix a/", lambda: c.delete_prefix("a/"))
    add("delete_prefix none", lambda: c.delete_prefix("nothing/"))
    add("put empty key", lambda: c.put("", "x"))
    for v in ("1", "2", "3"):
        add("put c " + v, lambda v=v: c.put("c", v))
    add("get c", lambda: c.get("c"))

    def read_at(key, rev):
        req = etcd3.etcdrpc.RangeRequest(key=key.encode(), revision=rev)
        return c.kvstub.Range(req, RPC_TIMEOUT_S)

    def compact_at_latest_minus_one():
        rev = c.get("c")[1].mod_revision
        c.compact(rev - 1)
        return rev - 1

    add("read old rev before compact", lambda: read_at("foo", 2))
    add("compact", compact_at_latest_minus_one)
    add("read compacted rev", lambda: read_at("foo", 2))
    add("read at compact rev", lambda: read_at("c", c.get("c")[1].mod_revision - 1))
    add("compact again (compacted)", lambda: c.compact(3))
    add("compact future", lambda: c.compact(100000))
    add("read future rev", lambda: read_at("c", 100000))
    add("compact physical", lambda: c.compact(c.get("c")[1].mod_revision, physical=True))
    add("put after compact", lambda: c.put("c", "4"))
    add("get_all final", lambda: c.get_all(sort_order="descend", sort_target="mod"))
    return s


def run(endpoint):
    host, port = endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=RPC_TIMEOUT_S)
    try:
        return [(name, attempt(fn)) for name, fn in script(client)]
    finally:
        client.close()


def flotilla_only_checks(member):
    client = etcd3.client(host="127.0.0.1", port=member.port, timeout=RPC_TIMEOUT_S)
    try:
        members = list(client.members)
        assert len(members) == 1, members
        me = members[0]
        assert me.name == "default", me.name
        assert list(me.client_urls) == ["http://%s" % member.endpoint], me.client_urls
        assert me.id != 0

        st = client.status()
        assert st.version.startswith("3.4."), st.version
        assert st.db_size > 0, st.db_size
        assert st.leader is not None and st.leader.id == me.id, (st.leader, me.id)

        # An unimplemented method must fail promptly and cleanly, not hang.
        for name, call in [("lease", lambda: client.lease(30)),
                           ("get_lease_info", lambda: client.get_lease_info(7)),
                           ("hash", lambda: client.hash())]:
            start = time.monotonic()
            try:
                call()
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, (name, exc.code(), exc.details())
            else:
                raise AssertionError("%s() succeeded on Flotilla, expected UNIMPLEMENTED" % name)
            took = time.monotonic() - start
            assert took < 3.0, "%s() took %.1fs to fail" % (name, took)

        # The channel still works after those errors.
        client.put("after-unimplemented", "ok")
        assert client.get("after-unimplemented")[0] == b"ok"
    finally:
        client.close()

    # HTTP/2 keepalive pings on an idle connection (every 250 ms, also without
    # calls) must be acked and leave the connection usable. (Not compared with
    # etcd: its gRPC server answers pings this frequent with GOAWAY.)
    options = [("grpc.keepalive_time_ms", 250), ("grpc.keepalive_timeout_ms", 2000),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0),
               ("grpc.http2.min_time_between_pings_ms", 250)]
    client = etcd3.client(host="127.0.0.1", port=member.port, timeout=RPC_TIMEOUT_S,
                          grpc_options=options)
    try:
        client.put("keepalive", "1")
        connected = []
        client.channel.subscribe(connected.append, try_to_connect=False)
        time.sleep(2.5)  # grpc core spaces idle pings >= 1 s apart: two or more acks
        value, meta = client.get("keepalive")
        assert value == b"1" and meta.version == 1, (value, meta)
        # the channel never went through a reconnect (ping timeout/GOAWAY)
        assert grpc.ChannelConnectivity.TRANSIENT_FAILURE not in connected, connected
        assert connected and connected[-1] == grpc.ChannelConnectivity.READY, connected
    finally:
        client.close()


def main():
    if os.environ.get("FLOTILLA_COMPARE_WITH_ETCD") == "1":
        subject = harness.Etcd()
    else:
        subject = harness.Member()
    with harness.Etcd() as etcd, subject:
        want = run(etcd.endpoint)
        got = run(subject.endpoint)
        if isinstance(subject, harness.Member):
            flotilla_only_checks(subject)
    failures = 0
    for (name, w), (_, g) in zip(want, got):
        if w != g:
            failures += 1
            print("MISMATCH at step %r\n  etcd:     %r\n  flotilla: %r" % (name, w, g))
    # the script must really exercise things: errors, failed txns, compacted reads
    kinds = {w[0] for _, w in want}
    assert "rpc-error" in kinds, "no step failed on etcd: the error cases are gone"
    assert any(w[0] == "rpc-error" and w[1] == "OUT_OF_RANGE" for _, w in want)
    assert any(w == ("ok", False) for _, w in want)  # a failed compare
    assert len(got) == len(want)
    assert failures == 0, "%d of %d python-etcd3 steps differ from etcd 3.4" % (failures, len(want))
    print("ok: %d python-etcd3 %s steps give the same results as etcd 3.4 (python %s)"
          % (len(want), etcd3.__version__, sys.version.split()[0]))


if __name__ == "__main__":
    sys.exit(main())

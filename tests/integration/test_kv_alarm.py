"""The NOSPACE alarm through the log, and HashKV, as etcd 3.4 has them.

The same steps against Flotilla and a real etcd 3.4, each with a small
--quota-backend-bytes: puts until one is refused with "etcdserver: mvcc:
database space exceeded"; the member that served it raises the NOSPACE alarm
(etcdctl alarm list shows it with the member id); while it is active even a
small put is refused, reads and deletes work; etcdctl alarm disarm prints
what it disarmed and the list is empty. Where they differ by design: etcd's
quota counts file pages (a put after a delete and disarm is refused again
until a defrag), Flotilla's counts the logical bytes of stored versions in
the replicated state, so after compaction a put fits again; on Flotilla the
alarm survives a restart. HashKV answers and changes with the data.
"""
import json

import harness

QUOTA = 200000
BIG = "x" * 8000
SPACE = "database space exceeded"


def fill(endpoint):
    """Puts until the quota refuses one; returns how many were accepted."""
    for i in range(200):
        rc, _, err = harness.etcdctl(endpoint, "put", "big%03d" % i, BIG, check=False)
        if rc != 0:
            assert SPACE in err, err
            return i
    raise AssertionError("the quota never refused a put")


def alarm_steps(endpoint, member_id_of):
    accepted = fill(endpoint)
    assert accepted > 0
    _, out, _ = harness.etcdctl(endpoint, "alarm", "list")
    assert out.strip() == "memberID:%d alarm:NOSPACE" % member_id_of(endpoint), out
    rc, _, err = harness.etcdctl(endpoint, "put", "small", "v", check=False)
    assert rc != 0 and SPACE in err, err      # the alarm refuses any put
    _, out, _ = harness.etcdctl(endpoint, "get", "big000", "--print-value-only")
    assert out.strip() == BIG                  # reads work
    _, out, _ = harness.etcdctl(endpoint, "del", "big", "--prefix")
    assert int(out.strip()) == accepted        # deletes work
    _, out, _ = harness.etcdctl(endpoint, "alarm", "disarm")
    assert out.strip() == "memberID:%d alarm:NOSPACE" % member_id_of(endpoint), out
    _, out, _ = harness.etcdctl(endpoint, "alarm", "list")
    assert out.strip() == "", out
    return accepted


def member_id(endpoint):
    _, out, _ = harness.etcdctl(endpoint, "endpoint", "status", "-w", "json")
    return json.loads(out)[0]["Status"]["header"]["member_id"]


def hashkv(endpoint):
    _, out, _ = harness.etcdctl(endpoint, "endpoint", "hashkv", "-w", "json")
    row = json.loads(out)[0]["HashKV"]
    return row["hash"], row["header"]["revision"]


def main():
    etcd = harness.Etcd()
    etcd.extra_args = ["--quota-backend-bytes", "300000"]
    with etcd:
        etcd_accepted = alarm_steps(etcd.endpoint, member_id)
    member = harness.Member(extra_args=["--quota-backend-bytes", str(QUOTA)])
    with member:
        h1 = hashkv(member.endpoint)
        harness.etcdctl(member.endpoint, "put", "h", "1")
        h2 = hashkv(member.endpoint)
        assert h1[0] != h2[0] and h2[1] == h1[1] + 1, (h1, h2)
        accepted = alarm_steps(member.endpoint, member_id)
        _, out, _ = harness.etcdctl(member.endpoint, "endpoint", "status", "-w", "json")
        rev = json.loads(out)[0]["Status"]["header"]["revision"]
        harness.etcdctl(member.endpoint, "compact", str(rev))
        harness.etcdctl(member.endpoint, "put", "small", "v")  # logical bytes fit again
        # the alarm is replicated state: it survives a restart
        fill(member.endpoint)
        member.restart()
        _, out, _ = harness.etcdctl(member.endpoint, "alarm", "list")
        assert "alarm:NOSPACE" in out, out
        harness.etcdctl(member.endpoint, "alarm", "disarm")
    print("ok: %d puts fit Flotilla's quota (%d etcd's); alarm raised, puts refused, "
          "disarmed, as etcd; HashKV changes with the data" % (accepted, etcd_accepted))


if __name__ == "__main__":
    main()

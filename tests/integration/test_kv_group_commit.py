"""Group commit end to end: 64 requests in flight (flotilla bench) against
one member, then a clean stop; the member's stop line reports how many
writes it acknowledged and how many WAL fsyncs it made. Far fewer fsyncs
than writes means one fdatasync covered many requests. The data is checked
with etcdctl afterwards (revision = 1 + puts, nothing lost over a restart).
"""
import json
import re
import subprocess

import harness

TOTAL = 4000


def main():
    member = harness.Member().start()
    try:
        r = subprocess.run([harness.FLOTILLA_BIN, "bench", "put", "--endpoints", member.endpoint,
                            "--clients", "64", "--conns", "4", "--total", str(TOTAL),
                            "--sequential", "--key-space", str(TOTAL), "--json"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r
        assert member.stop() == 0, member.log_text()
        stops = re.findall(r'msg="member stopped" .*writes_acked=(\d+) .*wal_syncs=(\d+)',
                           member.log_text())
        assert stops, member.log_text()
        acked, syncs = int(stops[-1][0]), int(stops[-1][1])
        print("writes acked %d, WAL fsyncs %d" % (acked, syncs))
        assert acked == TOTAL, (acked, TOTAL)
        assert 0 < syncs < TOTAL // 4, "group commit did not group: %d fsyncs for %d writes" % (
            syncs, acked)
        member.start()
        _, out, _ = harness.etcdctl(member.endpoint, "get", "", "--prefix", "--limit", "1",
                                    "-w", "json")
        data = json.loads(out)
        assert data["header"]["revision"] == TOTAL + 1, data["header"]
        assert data["count"] == TOTAL, data["count"]
    finally:
        member.close()
    print("ok")


if __name__ == "__main__":
    main()

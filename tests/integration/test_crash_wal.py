"""WAL damage at start-up:
- a torn tail (the last record cut short, as a crash mid-write leaves it) is
  cut off automatically and the member serves everything before it;
- a corrupt record in the middle (one flipped byte in a stopped member's
  segment) stops start-up with a non-zero exit and a message naming the
  segment file and the offset; undoing the flip makes it start again.
"""
import glob
import json
import os
import shutil
import struct
import subprocess

import harness

VALUE = "x" * 200


def put_rev(member, key):
    _, out, _ = harness.etcdctl(member.endpoint, "put", key, VALUE, "-w", "json")
    return json.loads(out)["header"]["revision"]


def segments(member):
    segs = sorted(glob.glob(os.path.join(member.data_dir, "wal", "*.wal")))
    assert segs, os.listdir(os.path.join(member.data_dir, "wal"))
    return segs


def last_entry_offset(path):
    """Offset of the last entry record in a WAL segment (docs/wal.md: a 12-byte
    header u32 payload_bytes | u32 crc32c | u8 type | 3 zero bytes; type 2 = entry)."""
    data = open(path, "rb").read()
    offset, last = 0, None
    while offset + 12 <= len(data):
        length, _crc, rtype = struct.unpack_from("<IIB", data, offset)
        if rtype == 0 or offset + 12 + length > len(data):
            break
        if rtype == 2:
            last = offset
        offset += 12 + length
    assert last is not None, "no entry record in %s" % path
    return last


def check_torn_tail(member):
    for i in range(29):
        assert put_rev(member, "k%02d" % i) == 2 + i
    assert member.stop() == 0
    db = os.path.join(member.data_dir, "db")
    saved = os.path.join(member.tmp, "db-before-last")
    shutil.copytree(db, saved)
    member.start()
    assert put_rev(member, "last") == 31
    assert member.stop() == 0
    # crash image: LMDB had not committed "last" yet and the WAL record that
    # holds it is torn (with the Raft log, hard state records follow the
    # entry: the tear cuts into the entry itself, and so drops them too)
    shutil.rmtree(db)
    shutil.copytree(saved, db)
    last_seg = segments(member)[-1]
    cut = last_entry_offset(last_seg) + 20
    os.truncate(last_seg, cut)
    member.start()
    _, out, _ = harness.etcdctl(member.endpoint, "get", "last")
    assert out == "", "the torn record came back: %r" % out
    _, out, _ = harness.etcdctl(member.endpoint, "get", "k", "--prefix", "--keys-only")
    assert out.split() == ["k%02d" % i for i in range(29)], out
    assert put_rev(member, "after") == 31  # the revision continues where the log ends
    status = json.loads(harness.etcdctl(member.endpoint, "endpoint", "status", "-w", "json")[1])
    assert status[0]["Status"]["raftIndex"] == status[0]["Status"]["raftAppliedIndex"], status
    assert "torn" in member.log_text().lower(), member.log_text()
    assert member.stop() == 0


def check_corrupt_middle(member):
    seg = max(segments(member), key=os.path.getsize)
    size = os.path.getsize(seg)
    offset = size // 2
    with open(seg, "r+b") as f:
        f.seek(offset)
        original = f.read(1)
        f.seek(offset)
        f.write(bytes([original[0] ^ 0x5A]))
    url = "http://" + member.endpoint
    proc = subprocess.run([harness.FLOTILLA_BIN, "serve", "--data-dir", member.data_dir,
                           "--listen-client-urls", url, "--advertise-client-urls", url],
                          capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode not in (0, None), output
    assert os.path.basename(seg) in output, output
    assert "offset" in output, output
    # the flip was the only problem: undo it and the member starts with all its data
    with open(seg, "r+b") as f:
        f.seek(offset)
        f.write(original)
    member.start()
    _, out, _ = harness.etcdctl(member.endpoint, "get", "", "--prefix", "--keys-only")
    assert out.split() == ["after"] + ["k%02d" % i for i in range(29)], out
    assert member.stop() == 0


def main():
    member = harness.Member().start()
    try:
        check_torn_tail(member)
        check_corrupt_middle(member)
    finally:
        member.close()
    print("ok")


if __name__ == "__main__":
    main()

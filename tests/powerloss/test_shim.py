"""Tests of libflpowerloss.so and powerloss_restore themselves: each scenario
of powerloss_scenario runs under the shim and SIGKILLs itself; the test
checks that the kill alone lost nothing (the page cache keeps it all), then
runs powerloss_restore and checks the exact bytes a power loss leaves: drop
mode gives back precisely the durable state, reorder mode gives only
per-page mixtures of old and new. Seed of the reorder runs: FLOTILLA_TEST_SEED.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

import powerloss_env

SHIM = os.environ.get("FLOTILLA_POWERLOSS_SHIM", "build/tests/powerloss/libflpowerloss.so")
SCENARIO = os.environ.get("FLOTILLA_POWERLOSS_SCENARIO", "build/tests/powerloss/powerloss_scenario")
RESTORE = os.environ.get("FLOTILLA_POWERLOSS_RESTORE",
                         os.path.join(os.path.dirname(os.path.abspath(__file__)), "powerloss_restore"))
PAGE = 4096
REORDER_RUNS = 24


class Run:
    """One scenario in a fresh temp dir: root/ is tracked, journal outside it."""

    def __init__(self, name):
        self.tmp = tempfile.mkdtemp(prefix="flpowerloss-")
        self.root = os.path.join(self.tmp, "root")
        os.mkdir(self.root)
        self.journal = os.path.join(self.tmp, "journal")
        env = powerloss_env.shim_env(SCENARIO, SHIM, self.root, self.journal)
        self.proc = subprocess.run([SCENARIO, name, self.root], env=env, capture_output=True,
                                   text=True, timeout=60)
        self.name = name

    def expect_killed(self):
        assert self.proc.returncode == -9, "%s: exit %s, stderr:\n%s" % (
            self.name, self.proc.returncode, self.proc.stderr)

    def restore(self, mode, seed=None, dirs="posix"):
        args = [sys.executable, RESTORE, "--root", self.root, "--journal", self.journal,
                "--mode", mode, "--dirs", dirs]
        if seed is not None:
            args += ["--seed", str(seed)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, "restore failed (%d): %s%s" % (proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def read(self, name):
        with open(os.path.join(self.root, name), "rb") as f:
            return f.read()

    def exists(self, name):
        return os.path.lexists(os.path.join(self.root, name))

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def pages_new():
    """What scenario 'pages' leaves in the page cache (the kill keeps it all)."""
    b = bytearray(b"A" * (3 * PAGE) + b"\0" * (2 * PAGE) + b"C" * PAGE)
    b[PAGE + 10:PAGE + 110] = b"B" * 100
    b[0:20] = b"D" * 10 + b"E" * 10
    return bytes(b)


PAGES_OLD = b"A" * (3 * PAGE)


def test_pages_drop():
    r = Run("pages")
    try:
        r.expect_killed()
        assert r.read("a") == pages_new(), "SIGKILL alone changed the file"
        out = r.restore("drop")
        print(out, end="")
        got = r.read("a")
        assert got == PAGES_OLD, "drop: expected 3 pages of A, got %d bytes %r..." % (len(got), got[:40])
        assert not os.path.exists(r.journal), "restore kept the journal"
    finally:
        r.close()


def test_synced_kept():
    r = Run("synced")
    try:
        r.expect_killed()
        out = r.restore("drop")
        assert r.read("a") == pages_new(), "drop lost fdatasynced data:\n" + out
        assert "pages=0" in out, out
    finally:
        r.close()


def test_pages_reorder(seed):
    """Every page is the old or the new one, page 2 (never written) is always
    old, and over the runs both choices appear for the pages that changed."""
    old_pages = [PAGES_OLD[k * PAGE:(k + 1) * PAGE] for k in range(3)] + [b""] * 3
    new = pages_new()
    new_pages = [new[k * PAGE:(k + 1) * PAGE] for k in range(6)]
    seen = {k: set() for k in range(6)}
    sizes = set()
    rng = random.Random(seed)
    for _ in range(REORDER_RUNS):
        run_seed = rng.randrange(1 << 31)
        r = Run("pages")
        try:
            r.expect_killed()
            r.restore("reorder", seed=run_seed)
            got = r.read("a")
            assert len(got) in (3 * PAGE, 6 * PAGE), "reorder seed %d: size %d" % (run_seed, len(got))
            sizes.add(len(got))
            for k in range(len(got) // PAGE):
                page = got[k * PAGE:(k + 1) * PAGE]
                old = old_pages[k] or b"\0" * PAGE  # past the durable size: a hole
                assert page in (old, new_pages[k]), "reorder seed %d: page %d is neither old nor new: %r" % (
                    run_seed, k, page[:32])
                seen[k].add("old" if page == old else "new")
        finally:
            r.close()
    assert seen[2] == {"old"} or old_pages[2] == new_pages[2]
    for k in (0, 1):
        assert seen[k] == {"old", "new"}, "page %d never mixed over %d runs: %s" % (k, REORDER_RUNS, seen[k])
    assert sizes == {3 * PAGE, 6 * PAGE}, sizes


def test_newfile():
    r = Run("newfile")
    try:
        r.expect_killed()
        print(r.restore("drop"), end="")
        assert not r.exists("b"), "posix: b's entry was never made durable (no dir fsync)"
    finally:
        r.close()
    r = Run("newfile")
    try:
        r.expect_killed()
        r.restore("drop", dirs="ext4")
        assert r.read("b") == b"hello", "ext4 model: a fsynced new file keeps its entry"
    finally:
        r.close()


def test_rename():
    r = Run("rename")
    try:
        r.expect_killed()
        assert r.read("c") == b"c" * 10 and not r.exists("c.tmp")
        assert r.read("d") == b"n" * 5 and not r.exists("d.tmp")
        print(r.restore("drop"), end="")
        assert not r.exists("c") and r.read("c.tmp") == b"c" * 10
        assert r.read("d") == b"ooo", "the replaced file must come back"
        assert r.read("d.tmp") == b"n" * 5
    finally:
        r.close()


def test_unlink():
    r = Run("unlink")
    try:
        r.expect_killed()
        assert not r.exists("e") and not r.exists("f")
        print(r.restore("drop"), end="")
        assert r.read("e") == b"e" * 6000, "an unlink without dir fsync is undone"
        assert not r.exists("f"), "an unlink followed by a dir fsync is durable"
    finally:
        r.close()


def test_truncate():
    r = Run("truncate")
    try:
        r.expect_killed()
        assert r.read("g") == b"G" * 100 and r.read("h") == b"x"
        print(r.restore("drop"), end="")
        assert r.read("g") == b"G" * (3 * PAGE)
        assert r.read("h") == b"H" * 5000
    finally:
        r.close()


def test_subdir():
    r = Run("subdir")
    try:
        r.expect_killed()
        assert r.read("sub/x") == b"x"
        print(r.restore("drop"), end="")
        assert not r.exists("sub"), "mkdir without fsync of the parent is undone with all inside"
    finally:
        r.close()


def test_mmap_refused():
    r = Run("mmap")
    try:
        assert r.proc.returncode == -6, "expected SIGABRT, got %s: %s" % (r.proc.returncode, r.proc.stderr)
        assert "writable shared mmap" in r.proc.stderr, r.proc.stderr
    finally:
        r.close()


def test_threads():
    r = Run("threads")
    try:
        r.expect_killed()
        for t in range(4):
            assert len(r.read("t%d" % t)) == 200 * 100
        print(r.restore("drop"), end="")
        for t in range(4):
            got = r.read("t%d" % t)
            assert len(got) == 190 * 100, "t%d: %d bytes after drop, want 19000" % (t, len(got))
            for k in range(190):
                rec = got[k * 100:(k + 1) * 100]
                assert rec.startswith(b"t%d-%d\0" % (t, k)), "t%d record %d: %r" % (t, k, rec[:16])
    finally:
        r.close()


def test_wronly():
    r = Run("wronly")
    try:
        r.expect_killed()
        assert r.read("w") == b"W" * (PAGE - 5) + b"X" * 10 + b"W" * (PAGE - 5)
        print(r.restore("drop"), end="")
        assert r.read("w") == b"W" * (2 * PAGE), "pre-images read through a write-only fd"
    finally:
        r.close()


def test_concurrent():
    """Writes racing fsyncs of the same file: a drop leaves exactly a prefix
    of whole records, covering at least what the last sync covered."""
    r = Run("concurrent")
    try:
        r.expect_killed()
        with open(r.root + ".synced") as f:
            synced = int(f.read().strip())
        assert len(r.read("conc")) == 4000 * 100
        print(r.restore("drop"), end="")
        got = r.read("conc")
        assert len(got) % 100 == 0, "drop left a partial record: %d bytes" % len(got)
        count = len(got) // 100
        assert synced <= count < 4000, "drop kept %d records; the last sync covered %d" % (count, synced)
        for k in range(count):
            assert got[k * 100:(k + 1) * 100].startswith(b"c-%d\0" % k), "record %d corrupt" % k
        print("concurrent: the last sync covered %d records, %d kept" % (synced, count))
    finally:
        r.close()


def main():
    seed = int(os.environ.get("FLOTILLA_TEST_SEED", random.randrange(1 << 31)))
    print("seed %d (set FLOTILLA_TEST_SEED to repeat)" % seed)
    tests = [test_pages_drop, test_synced_kept, lambda: test_pages_reorder(seed), test_newfile,
             test_rename, test_unlink, test_truncate, test_subdir, test_mmap_refused, test_threads,
             test_wronly, test_concurrent]
    for t in tests:
        name = getattr(t, "__name__", "test")
        print("--- %s" % ("test_pages_reorder" if name == "<lambda>" else name))
        t()
    print("ok: %d shim tests" % len(tests))


if __name__ == "__main__":
    main()

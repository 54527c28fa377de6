"""The WAL alone under a power loss (powerloss_wal.c): 10 entries appended
and synced, then 48 more (about 16 KiB, several pages of one segment)
appended without a sync, then SIGKILL and powerloss_restore.

  drop     (powerloss.wal_drop): the unsynced tail is gone; wal_open must
           cut it and keep every synced entry with its bytes.
  reorder  (powerloss.wal_reorder, DISABLED, label powerloss-wal-tail): each
           page of the unsynced tail independently reached the disk or not.
           Property: wal_open keeps every synced entry and at most a prefix
           of the tail; it never refuses. Fails today: when a later page of
           the tail survived and an earlier one did not, wal_open reports
           "corrupt record ... (a valid record follows at offset N)" and
           start-up would stop, though nothing synced was damaged.
Seeds: FLOTILLA_TEST_SEED (printed); reorder runs FLOTILLA_POWERLOSS_RUNS
restores (default 30).
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

import powerloss_env

SHIM = os.environ.get("FLOTILLA_POWERLOSS_SHIM", "build/tests/powerloss/libflpowerloss.so")
DRIVER = os.environ.get("FLOTILLA_POWERLOSS_WAL", "build/tests/powerloss/powerloss_wal")
RESTORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "powerloss_restore")


def one_run(mode, seed):
    """Returns (ok, what the check printed, what the restore printed)."""
    tmp = tempfile.mkdtemp(prefix="flpowerloss-wal-")
    try:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        journal = os.path.join(tmp, "journal")
        env = powerloss_env.shim_env(DRIVER, SHIM, root, journal)
        w = subprocess.run([DRIVER, "write", os.path.join(root, "wal")], env=env,
                           capture_output=True, text=True, timeout=60)
        assert w.returncode == -9, "writer exit %s: %s" % (w.returncode, w.stderr)
        args = [sys.executable, RESTORE, "--root", root, "--journal", journal, "--mode", mode,
                "--dirs", "posix"]
        if mode == "reorder":
            args += ["--seed", str(seed)]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        c = subprocess.run([DRIVER, "check", os.path.join(root, "wal")], capture_output=True,
                           text=True, timeout=60)
        assert c.returncode in (0, 1), "check crashed (%s): %s%s" % (c.returncode, c.stdout, c.stderr)
        return c.returncode == 0, c.stdout.strip(), r.stdout.strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "drop"
    seed = int(os.environ.get("FLOTILLA_TEST_SEED", random.randrange(1 << 31)))
    print("seed %d (FLOTILLA_TEST_SEED), mode %s" % (seed, mode))
    if mode == "drop":
        ok, check, restored = one_run("drop", None)
        print(restored)
        print(check)
        assert ok, "after a drop power loss the WAL lost synced entries or refused:\n" + check
        assert "last=10 " in check, "the unsynced tail must be gone after a drop: " + check
        print("ok")
        return
    rng = random.Random(seed)
    runs = int(os.environ.get("FLOTILLA_POWERLOSS_RUNS", "30"))
    failures = []
    for _ in range(runs):
        run_seed = rng.randrange(1 << 31)
        ok, check, _ = one_run("reorder", run_seed)
        if not ok:
            failures.append((run_seed, check))
    for run_seed, check in failures:
        print("restore seed %d: %s" % (run_seed, check))
    print("%d of %d reordered power losses left a WAL that does not open with its synced entries"
          % (len(failures), runs))
    assert not failures, "the WAL refused (or lost synced entries) after a reordered unsynced tail"
    print("ok")


if __name__ == "__main__":
    main()

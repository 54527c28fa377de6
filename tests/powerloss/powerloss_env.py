"""How to run a program under libflpowerloss.so (shared by the shim's tests
and tests/integration/test_powerloss*.py).

An ASan binary insists that the ASan runtime comes first in the initial
library list, so for one the preload list is "<libasan.so>:<shim>": calls go
binary -> ASan's interceptor -> shim -> libc. The shim itself is built
without sanitizers. A binary without ASan gets the shim alone.
"""
import os
import subprocess


def needs_asan_first(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out


def asan_runtime():
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                          text=True).stdout.strip()
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        raise AssertionError("gcc -print-file-name=libasan.so gave %r (no such file)" % path)
    return real


def shim_env(binary, shim, root, journal, base=None):
    """The environment for running binary with the shim tracking root."""
    env = dict(os.environ if base is None else base)
    preload = [asan_runtime()] if needs_asan_first(binary) else []
    preload.append(os.path.realpath(shim))
    env["LD_PRELOAD"] = ":".join(preload)
    env["FLOTILLA_POWERLOSS_ROOT"] = root
    env["FLOTILLA_POWERLOSS_JOURNAL"] = journal
    return env

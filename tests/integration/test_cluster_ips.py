"""The loopback-IP claims of cluster.py, which keep parallel CTest runs from
racing for ports (no server binary needed): claims are exclusive between
processes, a dead owner's claim is taken over, a live owner's is not, an IP
whose port is still bound is skipped, and release frees only our own claims."""
import os
import random
import socket
import subprocess
import sys

import cluster as cl

HERE = os.path.dirname(os.path.abspath(__file__))


def fresh_candidates(rng, n):
    """IPs in 127.253.0.0/16 that nobody claims right now."""
    out = []
    while len(out) < n:
        ip = "127.253.%d.%d" % (rng.randint(0, 255), rng.randint(1, 254))
        if ip not in out and not os.path.exists(os.path.join(cl.IP_DIR, ip)):
            out.append(ip)
    return out


def owner(ip):
    with open(os.path.join(cl.IP_DIR, ip)) as f:
        return int(f.read())


CHILD = r"""
import sys, time
sys.path.insert(0, %r)
import cluster as cl
cands = sys.argv[1].split(",")
try:
    got = cl.claim_ips(int(sys.argv[2]), candidates=cands)
except AssertionError:
    got = []
print(",".join(got), flush=True)
sys.stdin.read()  # hold the claims until the parent closes stdin
cl.release_ips(got)
"""


def main():
    seed = int(os.environ.get("TEST_SEED", random.SystemRandom().randrange(1 << 30)))
    print("TEST_SEED=%d" % seed)
    rng = random.Random(seed)

    ips = cl.claim_ips(3)
    assert len(set(ips)) == 3 and all(owner(ip) == os.getpid() for ip in ips), ips
    cl.release_ips(ips)
    assert not any(os.path.exists(os.path.join(cl.IP_DIR, ip)) for ip in ips)

    # exclusive: 4 processes race for 12 IPs, 5 each: 12 handed out, no IP twice
    cands = fresh_candidates(rng, 12)
    kids = [subprocess.Popen([sys.executable, "-c", CHILD % HERE, ",".join(rng.sample(cands, 12)), "5"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    got = [k.stdout.readline().strip() for k in kids]
    held = [ip for g in got for ip in g.split(",") if ip]
    print("claims by 4 racing processes:", got)
    assert len(held) == len(set(held)), "an IP was claimed twice: %s" % got
    assert len(held) >= 10, "too few claims succeeded: %s" % got
    # a live owner's claim is not taken over
    try:
        cl.claim_ips(1, candidates=[held[0]])
        raise AssertionError("took over %s from a live owner" % held[0])
    except AssertionError as e:
        assert "could not claim" in str(e), e
    # ...and once the owner is dead (killed: no release), it is
    v = next(i for i, g in enumerate(got) if g)
    victim, victim_ips = kids[v], got[v].split(",")
    victim.kill()
    victim.wait()
    for k in kids:
        if k is not victim:
            k.stdin.close()
            k.wait(timeout=30)
    assert owner(victim_ips[0]) == victim.pid
    taken = cl.claim_ips(1, candidates=[victim_ips[0]])
    assert taken == victim_ips[0:1] and owner(taken[0]) == os.getpid()
    cl.release_ips(taken + victim_ips[1:])  # the rest: stale, still the victim's
    for ip in victim_ips[1:]:
        os.unlink(os.path.join(cl.IP_DIR, ip))

    # an IP whose client port is still bound (an orphan server) is skipped
    busy, free = fresh_candidates(rng, 2)
    with socket.socket() as s:
        s.bind((busy, cl.CLIENT_PORT))
        s.listen()
        taken = cl.claim_ips(1, candidates=[busy, free])
        assert taken == [free], taken
        assert not os.path.exists(os.path.join(cl.IP_DIR, busy))
    cl.release_ips(taken)

    # release frees only our own claims
    (ip,) = fresh_candidates(rng, 1)
    with open(os.path.join(cl.IP_DIR, ip), "w") as f:
        f.write("1\n")  # init: alive, not us
    cl.release_ips([ip])
    assert owner(ip) == 1
    os.unlink(os.path.join(cl.IP_DIR, ip))
    print("PASS")


if __name__ == "__main__":
    main()

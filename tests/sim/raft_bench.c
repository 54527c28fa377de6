/* raft_bench: proposals committed per second by a 3-node in-memory cluster.
 *
 * Not a test: it measures the core alone. "Persisting" is free and messages
 * go straight from one node's ready to the other nodes' raft_step (which
 * copies what it keeps), so what is left is the Raft core's own work:
 * appending, building appends, stepping them, acknowledging, committing and
 * handing out committed entries. The leader proposes `batch` 100-byte
 * proposals between readies, as a server would for requests arriving in
 * one event-loop turn.
 *
 * Allocations are counted by wrapping malloc & co (non-sanitizer builds only).
 *
 *     raft_bench [--proposals N] [--batch B] [--size BYTES] [--api many|one]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/raft.h"

#if !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static uint64_t allocs;
void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    allocs++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}
#else
static uint64_t allocs;
#endif

#define NODES 3

static struct raft_node *nodes[NODES];
static uint64_t applied[NODES];
static double spent[4]; /* propose, ready+deliver (leader), followers, advance */

static uint64_t rnd(void *ctx)
{
    uint64_t *s = ctx;
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One ready of node i: deliver its messages directly, count its applies. */
static bool cycle(int i)
{
    if (!raft_has_ready(nodes[i])) {
        return false;
    }
    struct raft_ready rd;
    raft_ready(nodes[i], &rd);
    for (size_t m = 0; m < rd.n_msgs; m++) {
        struct raft_node *to = nodes[rd.msgs[m].to - 1];
        if (raft_step(to, &rd.msgs[m]) != FL_OK) {
            abort();
        }
    }
    applied[i] += rd.n_committed;
    /* Persisting and applying are free here: both are reported at once. */
    uint64_t last = 0, last_term = 0, apply_to = 0;
    if (rd.n_entries > 0) {
        last = rd.entries[rd.n_entries - 1].index;
        last_term = rd.entries[rd.n_entries - 1].term;
    }
    if (rd.n_committed > 0) {
        apply_to = rd.committed[rd.n_committed - 1].index;
    }
    raft_advance(nodes[i]);
    if (last > 0) {
        raft_persisted(nodes[i], last, last_term);
    }
    if (apply_to > 0) {
        raft_applied(nodes[i], apply_to);
    }
    return true;
}

int main(int argc, char **argv)
{
    uint64_t total = 2000000, batch = 1000;
    uint32_t size = 100;
    bool many = true; /* --api one: raft_propose per proposal */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--proposals") == 0) {
            total = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--api") == 0) {
            many = strcmp(argv[i + 1], "many") == 0;
        }
    }
    uint64_t seed = 88172645463325252ull;
    for (int i = 0; i < NODES; i++) {
        struct raft_config cfg = {
            .id = (raft_id)i + 1,
            .election_tick = 10,
            .heartbeat_tick = 1,
            .max_inflight_msgs = 256,
            .max_size_per_msg = 1 << 20,
            .pre_vote = true,
            .check_quorum = true,
            .rand = rnd,
            .rand_ctx = &seed,
        };
        struct raft_restore r = {.hard_state = {.term = 1, .commit = 1},
                                 .snapshot = {.index = 1, .term = 1}};
        r.snapshot.conf.n_voters = NODES;
        for (int v = 0; v < NODES; v++) {
            r.snapshot.conf.voters[v] = (raft_id)v + 1;
        }
        if (raft_new(&cfg, &r, &nodes[i]) != FL_OK) {
            return 1;
        }
    }
    raft_campaign(nodes[0]);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < NODES; i++) {
            cycle(i);
        }
    }
    struct raft_status st;
    raft_status(nodes[0], &st);
    if (st.role != RAFT_LEADER) {
        fprintf(stderr, "no leader\n");
        return 1;
    }
    uint8_t *payload = calloc(1, size);
    const void **datas = calloc(batch, sizeof(*datas));
    uint32_t *lens = calloc(batch, sizeof(*lens));
    for (uint64_t p = 0; p < batch; p++) {
        datas[p] = payload;
        lens[p] = size;
    }
    uint64_t base_applied = applied[0];
    uint64_t allocs_before = allocs;
    (void)allocs_before; /* unused when sanitizers replace malloc */
    double start = now();
    for (uint64_t done = 0; done < total; done += batch) {
        double t0 = now();
        if (many) { /* one call, one allocation for the batch's bytes */
            if (raft_propose_many(nodes[0], datas, lens, batch, NULL) != FL_OK) {
                abort();
            }
        } else {
            for (uint64_t p = 0; p < batch; p++) {
                memcpy(payload, &p, sizeof(p) < size ? sizeof(p) : size);
                if (raft_propose(nodes[0], payload, size, NULL) != FL_OK) {
                    abort();
                }
            }
        }
        double t1 = now();
        cycle(0); /* persist + send appends */
        double t2 = now();
        cycle(1); /* followers append and acknowledge */
        cycle(2);
        double t3 = now();
        cycle(0); /* the leader commits and applies */
        double t4 = now();
        spent[0] += t1 - t0;
        spent[1] += t2 - t1;
        spent[2] += t3 - t2;
        spent[3] += t4 - t3;
        /* The caller compacts after snapshots; keep memory flat. */
        raft_status(nodes[0], &st);
        if (st.applied - st.first_index > 4 * batch) {
            for (int i = 0; i < NODES; i++) {
                (void)raft_compact(nodes[i], "s", 1, batch);
            }
        }
    }
    double elapsed = now() - start;
    uint64_t committed = applied[0] - base_applied;
    printf("raft_bench: 3 nodes, %" PRIu64 " proposals of %u bytes, batch %" PRIu64 " via %s\n",
           total, size, batch, many ? "raft_propose_many" : "raft_propose");
    printf("  committed+applied at leader: %" PRIu64 " in %.3f s = %.0f proposals/s\n", committed,
           elapsed, (double)committed / elapsed);
#ifdef COUNT_ALLOCS
    printf("  allocations: %.3f per proposal (whole cluster, all 3 nodes)\n",
           (double)(allocs - allocs_before) / (double)committed);
#else
    printf("  allocations: not counted in sanitizer builds\n");
#endif
    double sum = spent[0] + spent[1] + spent[2] + spent[3];
    printf("  time: propose %.0f%%, leader ready+send %.0f%%, followers step+ready %.0f%%, "
           "leader commit+apply %.0f%%\n",
           100 * spent[0] / sum, 100 * spent[1] / sum, 100 * spent[2] / sum, 100 * spent[3] / sum);
    free(payload);
    free(datas);
    free(lens);
    for (int i = 0; i < NODES; i++) {
        raft_free(nodes[i]);
    }
    return committed >= total - batch ? 0 : 1;
}

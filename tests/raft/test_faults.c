/* tests/raft/test_faults.c: allocation failures, one at a time.
 *
 * Linked against fl_raft_faults (the core built with RAFT_FAULT_INJECTION):
 * a workload — bootstrap, election, proposals, reads, a learner that needs
 * a snapshot, compaction, a leadership transfer — runs once per allocation
 * site, with exactly that allocation failing. Each run must end without an
 * assertion or a sanitizer report (so every error path frees what it took)
 * and the cluster must still commit a proposal afterwards: a failed
 * allocation costs at most a message, never consistency or liveness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "raft/internal.h"

#define NODES 4 /* 3 voters, node 4 joins as a learner */

static struct raft_node *nodes[NODES];
static uint64_t seed;

static uint64_t rnd(void *ctx)
{
    (void)ctx;
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
}

static void start_nodes(void)
{
    for (int i = 0; i < NODES; i++) {
        struct raft_config cfg = {.id = (raft_id)i + 1,
                                  .election_tick = 10,
                                  .heartbeat_tick = 2,
                                  .max_inflight_msgs = 4,
                                  .max_size_per_msg = 64,
                                  .pre_vote = true,
                                  .check_quorum = true,
                                  .rand = rnd};
        struct raft_restore r = {0};
        if (i < 3) {
            r.snapshot = (struct raft_snapshot){.index = 1, .term = 1};
            r.snapshot.conf.n_voters = 3;
            r.snapshot.conf.voters[0] = 1;
            r.snapshot.conf.voters[1] = 2;
            r.snapshot.conf.voters[2] = 3;
            r.hard_state = (struct raft_hard_state){.term = 1, .commit = 1};
        }
        nodes[i] = NULL;
        if (raft_new(&cfg, &r, &nodes[i]) != FL_OK) {
            nodes[i] = NULL; /* as if that machine failed to start */
        }
    }
}

/* One ready of node i; its messages are stepped straight into the others.
 * Persisting and applying cost nothing here: both are reported at once. */
static void cycle(int i)
{
    if (nodes[i] == NULL || !raft_has_ready(nodes[i])) {
        return;
    }
    struct raft_ready rd;
    raft_ready(nodes[i], &rd);
    for (size_t m = 0; m < rd.n_msgs; m++) {
        struct raft_node *to = nodes[rd.msgs[m].to - 1];
        if (to != NULL) {
            (void)raft_step(to, &rd.msgs[m]);
        }
    }
    struct raft_entry last = {0};
    if (rd.n_entries > 0) {
        last = rd.entries[rd.n_entries - 1];
    } else if (rd.snapshot != NULL) {
        last = (struct raft_entry){.index = rd.snapshot->index, .term = rd.snapshot->term};
    }
    uint64_t snapshot = rd.snapshot != NULL ? rd.snapshot->index : 0;
    uint64_t apply_to = rd.n_committed > 0 ? rd.committed[rd.n_committed - 1].index : snapshot;
    raft_advance(nodes[i]);
    if (last.index > 0) {
        raft_persisted(nodes[i], last.index, last.term);
    }
    if (apply_to > 0) {
        raft_applied(nodes[i], apply_to);
    }
}

static struct raft_node *leader(void)
{
    for (int i = 0; i < NODES; i++) {
        struct raft_status st;
        if (nodes[i] != NULL) {
            raft_status(nodes[i], &st);
            if (st.role == RAFT_LEADER) {
                return nodes[i];
            }
        }
    }
    return NULL;
}

static void tick_all(void)
{
    for (int i = 0; i < NODES; i++) {
        if (nodes[i] != NULL) {
            raft_tick(nodes[i]);
        }
    }
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < NODES; i++) {
            cycle(i);
        }
    }
}

static void act(int t)
{
    struct raft_node *l = leader();
    if (l == NULL) {
        return;
    }
    uint8_t data[24] = {(uint8_t)t};
    (void)raft_propose(l, data, sizeof(data), NULL);
    if (t % 7 == 0) {
        (void)raft_read_index(l, (uint64_t)t);
        if (nodes[1] != NULL) {
            (void)raft_read_index(nodes[1], (uint64_t)t + 1);
        }
    }
    if (t == 40) {
        for (int i = 0; i < NODES; i++) {
            if (nodes[i] != NULL) {
                (void)raft_compact(nodes[i], "snap", 4, 0);
            }
        }
        struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
        (void)raft_propose_conf_change(l, &cc, 1, NULL);
    }
    if (t == 80) {
        struct raft_status st;
        raft_status(l, &st);
        (void)raft_transfer_leader(l, st.id == 2 ? 3 : 2);
    }
}

/* After the faults: a proposal must still commit within a bound. */
static bool still_commits(void)
{
    uint64_t index = 0, term = 0;
    for (int t = 0; t < 300; t++) {
        tick_all();
        struct raft_node *l = leader();
        if (l == NULL) {
            continue;
        }
        struct raft_status st;
        raft_status(l, &st);
        if (index == 0 || st.term != term) {
            term = st.term;
            if (raft_propose(l, "x", 1, &index) != FL_OK) {
                index = 0;
            }
        } else if (st.applied >= index) {
            return true;
        }
    }
    return false;
}

static void free_nodes(void)
{
    for (int i = 0; i < NODES; i++) {
        raft_free(nodes[i]);
        nodes[i] = NULL;
    }
}

static int64_t run(int64_t fail_at)
{
    seed = 7;
    raft_fault_countdown = fail_at;
    start_nodes();
    raft_campaign(nodes[0] != NULL ? nodes[0] : nodes[1]);
    for (int t = 0; t < 120; t++) {
        act(t);
        tick_all();
    }
    int64_t left = raft_fault_countdown;
    raft_fault_countdown = INT64_MAX;
    if (fail_at == INT64_MAX) { /* the dry run covers the paths we mean to break */
        struct raft_status st;
        raft_status(nodes[3], &st);
        assert_true(st.snapshot_index > 1); /* the learner was caught up by a snapshot */
        assert_true(raft_conf_is_learner(&st.conf, 4));
        raft_status(leader(), &st);
        assert_true(st.id != 1); /* the transfer happened */
    }
    bool ok = still_commits();
    if (!ok) {
        fprintf(stderr, "no progress after failing allocation %lld\n", (long long)fail_at);
    }
    assert_true(ok);
    free_nodes();
    return left;
}

static void test_every_allocation_may_fail(void **state)
{
    (void)state;
    /* A dry run counts the allocations the workload makes. */
    int64_t total = INT64_MAX - run(INT64_MAX);
    assert_true(total > 100);
    fprintf(stderr, "workload: %lld allocations\n", (long long)total);
    int64_t stride = total / 1500 + 1;
    for (int64_t k = 0; k < total; k += stride) {
        run(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_may_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

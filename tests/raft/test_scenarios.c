/* tests/raft/test_scenarios.c: scripted scenarios compared with golden traces.
 *
 * Each scenario drives the deterministic harness and records every ready and
 * every message delivered as one readable line ("> " lines are the script).
 * The whole trace must equal tests/raft/testdata/<scenario>.txt, so any
 * change in behaviour shows up as a reviewable diff. After an intended
 * change: FLOTILLA_UPDATE_GOLDEN=1 ./test_raft_scenarios rewrites the files
 * that differ and still FAILS for each of them (so a rewrite never passes
 * unseen); review the diff (git diff tests/raft/testdata), then run again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#ifndef FL_RAFT_TESTDATA
#error "FL_RAFT_TESTDATA must name tests/raft/testdata"
#endif

static struct h_cluster C;
static char *trace_buf;
static size_t trace_len;

static struct raft_config cfg(void)
{
    return (struct raft_config){.election_tick = 10,
                                .heartbeat_tick = 1,
                                .max_inflight_msgs = 4,
                                .max_size_per_msg = 1 << 20,
                                .pre_vote = true,
                                .check_quorum = true};
}

static void begin(uint32_t voters, uint32_t extra)
{
    struct raft_config c = cfg();
    h_init(&C, voters, extra, &c);
    C.trace = open_memstream(&trace_buf, &trace_len);
    assert_non_null(C.trace);
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(C.trace, "> ");
    vfprintf(C.trace, fmt, ap);
    fprintf(C.trace, "\n");
    va_end(ap);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    int ch;
    while ((ch = fgetc(f)) != EOF) {
        fputc(ch, out);
    }
    fclose(out);
    fclose(f);
    return buf;
}

static void finish(const char *name)
{
    fclose(C.trace);
    C.trace = NULL;
    h_free(&C);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.txt", FL_RAFT_TESTDATA, name);
    char *golden = read_file(path);
    bool same = golden != NULL && strcmp(golden, trace_buf) == 0;
    if (!same) {
        fprintf(stderr, "trace of %s differs from %s; got:\n%s", name, path, trace_buf);
    }
    if (!same && getenv("FLOTILLA_UPDATE_GOLDEN") != NULL) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(trace_buf, 1, trace_len, f);
        fclose(f);
        fprintf(stderr, "REWROTE %s: review the diff, then run again without the variable\n", path);
    }
    assert_non_null(golden);
    assert_string_equal(golden, trace_buf); /* a rewritten file fails this run too */
    free(golden);
    free(trace_buf);
    trace_buf = NULL;
}

static void scenario_election(void **state)
{
    (void)state;
    begin(3, 0);
    say("campaign 1 (pre-vote, then vote, then the leader's empty entry)");
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    finish("election");
}

static void scenario_catch_up(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("isolate 3; propose 3 entries at 1");
    h_isolate(&C, 3, true);
    h_propose_n(&C, 1, 3);
    h_stabilize(&C);
    say("heal; one heartbeat tick brings 3 up to date");
    h_isolate(&C, 3, false);
    h_tick(&C, 1, 1);
    h_stabilize(&C);
    finish("catch_up");
}

static void scenario_read_index(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("read 7 and 8 at the leader, read 9 at follower 2: one heartbeat round serves all");
    raft_read_index(h_raft(&C, 1), 7);
    raft_read_index(h_raft(&C, 1), 8);
    raft_read_index(h_raft(&C, 2), 9);
    h_stabilize(&C);
    finish("read_index");
}

static void scenario_add_learner(void **state)
{
    (void)state;
    begin(3, 1);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("add learner 4: enter joint, it is probed, gets a snapshot, leave joint");
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    h_stabilize(&C);
    h_tick(&C, 1, 1);
    h_stabilize(&C);
    finish("add_learner");
}

static void scenario_transfer(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("transfer leadership 1 -> 2");
    assert_int_equal(raft_transfer_leader(h_raft(&C, 1), 2), FL_OK);
    h_stabilize(&C);
    finish("transfer");
}

static void scenario_remove_leader(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("remove 1 (the leader): joint {2,3}+{1,2,3}, leave joint, 1 steps down");
    struct raft_conf_change cc = {RAFT_CONF_REMOVE, 1};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    h_stabilize(&C);
    say("ticks pass: 2 or 3 times out and is elected by {2,3}; 1 never campaigns");
    h_tick_all(&C, 20);
    raft_id l = h_leader(&C);
    assert_true(l == 2 || l == 3);
    finish("remove_leader");
}

static void scenario_check_quorum(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    say("isolate 1; it hears no quorum for an election timeout and steps down");
    h_isolate(&C, 1, true);
    h_tick(&C, 1, 20);
    h_stabilize(&C);
    finish("check_quorum");
}

static void report(raft_id id, const struct h_taken *t)
{
    if (t->n_entries > 0) {
        say("node %llu: raft_persisted(%llu, term %llu)", (unsigned long long)id,
            (unsigned long long)t->last_index, (unsigned long long)t->last_term);
    }
    if (t->apply_to > 0) {
        say("node %llu: raft_applied(%llu)", (unsigned long long)id,
            (unsigned long long)t->apply_to);
    }
    h_report(&C, id, t);
}

static void scenario_async_persist(void **state)
{
    (void)state;
    begin(3, 0);
    raft_campaign(h_raft(&C, 1));
    h_stabilize(&C);
    C.nodes[0].manual = true;
    C.nodes[1].manual = true;
    say("propose 2 entries at 1 (its write and 2's are slow; 3 reports at once)");
    h_propose_n(&C, 1, 2);
    struct h_taken l1 = h_take(&C, 1);
    say("the appends left before 1's write is durable; 2 takes them and writes slowly");
    h_deliver_all(&C);
    struct h_taken f1 = h_take(&C, 2);
    h_stabilize(&C);
    say("3 acknowledged, 1 and 2 have not persisted: nothing commits");
    report(2, &f1);
    say("2's write is durable: its answer (held with its ready) goes out now");
    h_stabilize(&C);
    say("2 and 3 are a majority without 1: the entries commit");
    struct h_taken l2 = h_take(&C, 1);
    h_deliver_all(&C);
    report(1, &l1);
    report(1, &l2);
    h_stabilize(&C);
    struct h_taken f2 = h_take(&C, 2);
    report(2, &f2);
    h_stabilize(&C);
    finish("async_persist");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scenario_election),     cmocka_unit_test(scenario_catch_up),
        cmocka_unit_test(scenario_read_index),   cmocka_unit_test(scenario_add_learner),
        cmocka_unit_test(scenario_transfer),     cmocka_unit_test(scenario_remove_leader),
        cmocka_unit_test(scenario_check_quorum), cmocka_unit_test(scenario_async_persist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

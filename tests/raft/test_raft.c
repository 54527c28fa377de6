/* tests/raft/test_raft.c: one test per feature of the Raft core.
 *
 * Most tests drive a small deterministic cluster (harness.c); a few step a
 * single node with hand-made messages to pin down one rule exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "raft/raft.h"

static struct raft_config base_cfg(void)
{
    return (struct raft_config){
        .election_tick = 10,
        .heartbeat_tick = 1,
        .max_inflight_msgs = 4,
        .max_size_per_msg = 1 << 20,
        .pre_vote = true,
        .check_quorum = true,
    };
}

static struct h_cluster C; /* big: keep it off the stack */

/* ---- election ---- */

static void test_election_basic(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    assert_int_equal(h_status(&C, 1).term, 2); /* bootstrap term 1, then one election */
    assert_int_equal(h_status(&C, 2).role, RAFT_FOLLOWER);
    assert_int_equal(h_status(&C, 2).lead, 1);
    assert_int_equal(h_status(&C, 3).lead, 1);
    /* The new leader's empty entry commits and is applied everywhere. */
    assert_int_equal(h_status(&C, 3).commit, 2);
    assert_int_equal(C.nodes[2].n_applied, 1);
    h_free(&C);
}

static void test_election_by_timeout(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_tick_all(&C, 2 * cfg.election_tick); /* randomized timeout < 2*election_tick */
    assert_int_not_equal(h_leader(&C), 0);
    h_free(&C);
}

static void test_vote_is_persisted_before_it_is_sent(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    h_init(&C, 3, 0, &cfg);
    raft_campaign(h_raft(&C, 1));
    h_ready(&C, 1);
    h_deliver_all(&C); /* node 2 and 3 grant */
    struct raft_ready rd;
    raft_ready(h_raft(&C, 2), &rd);
    assert_true(rd.has_hard_state);
    assert_int_equal(rd.hard_state.vote, 1);
    assert_int_equal(rd.hard_state.term, 2);
    assert_int_equal(rd.n_msgs, 1);
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_VOTE_RESP);
    assert_false(rd.msgs[0].reject);
    raft_advance(h_raft(&C, 2));
    h_free(&C);
}

static void test_one_vote_per_term(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    struct raft_node *r = h_raft(&C, 3);
    struct raft_msg vote = {
        .type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 2, .index = 1, .log_term = 1};
    assert_int_equal(raft_step(r, &vote), FL_OK);
    vote.from = 2;
    assert_int_equal(raft_step(r, &vote), FL_OK);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.n_msgs, 2);
    assert_false(rd.msgs[0].reject);
    assert_true(rd.msgs[1].reject);
    raft_advance(r);
    h_free(&C);
}

static void test_vote_needs_up_to_date_log(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_propose_n(&C, 1, 3);
    h_stabilize(&C);
    /* A candidate whose log ends at term 1 cannot win against term-2 logs. */
    struct raft_msg vote = {
        .type = RAFT_MSG_VOTE, .from = 2, .to = 3, .term = 9, .index = 100, .log_term = 1};
    assert_int_equal(raft_step(h_raft(&C, 3), &vote), FL_OK);
    struct raft_ready rd;
    raft_ready(h_raft(&C, 3), &rd);
    assert_int_equal(rd.n_msgs, 1);
    assert_true(rd.msgs[0].reject);
    raft_advance(h_raft(&C, 3));
    h_free(&C);
}

static void test_prevote_keeps_terms(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t term = h_status(&C, 1).term;
    h_isolate(&C, 3, true);
    for (int i = 0; i < 10; i++) {
        h_tick(&C, 3, cfg.election_tick * 2);
        h_stabilize(&C);
    }
    /* Pre-candidacy never raised node 3's term, so it cannot depose the leader. */
    assert_int_equal(h_status(&C, 3).term, term);
    h_isolate(&C, 3, false);
    h_tick_all(&C, 3);
    assert_int_equal(h_leader(&C), 1);
    assert_int_equal(h_status(&C, 1).term, term);
    assert_int_equal(h_status(&C, 3).lead, 1);
    h_free(&C);
}

static void test_check_quorum_leader_steps_down(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 1, true);
    h_tick(&C, 1, 2 * cfg.election_tick); /* at most two check-quorum periods */
    h_stabilize(&C);
    assert_int_equal(h_status(&C, 1).role, RAFT_FOLLOWER);
    h_free(&C);
}

static void test_check_quorum_lease_ignores_votes(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t term = h_status(&C, 2).term;
    struct raft_msg vote = {.type = RAFT_MSG_VOTE,
                            .from = 3,
                            .to = 2,
                            .term = term + 5,
                            .index = 100,
                            .log_term = term};
    assert_int_equal(raft_step(h_raft(&C, 2), &vote), FL_OK);
    assert_int_equal(h_status(&C, 2).term, term); /* heard the leader recently: ignored */
    assert_int_equal(h_status(&C, 2).lead, 1);
    h_free(&C);
}

/* ---- replication ---- */

static void test_replication_and_apply(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t last = h_propose_n(&C, 1, 20);
    h_stabilize(&C);
    for (raft_id id = 1; id <= 3; id++) {
        struct raft_status st = h_status(&C, id);
        assert_int_equal(st.commit, last);
        assert_int_equal(st.applied, last);
        struct h_node *nd = &C.nodes[id - 1];
        assert_int_equal(nd->applied[nd->n_applied - 1].index, last);
        uint64_t v;
        memcpy(&v, nd->applied[nd->n_applied - 1].data, 8);
        assert_int_equal(v, 1019);
    }
    h_free(&C);
}

static void test_proposals_are_batched(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_propose_n(&C, 1, 100);
    struct raft_ready rd;
    raft_ready(h_raft(&C, 1), &rd);
    assert_int_equal(rd.n_entries, 100);
    assert_int_equal(rd.n_msgs, 2); /* one append per follower */
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_APPEND);
    assert_int_equal(rd.msgs[0].n_entries, 100);
    uint64_t last = rd.entries[99].index, last_term = rd.entries[99].term;
    raft_advance(h_raft(&C, 1));
    raft_persisted(h_raft(&C, 1), last, last_term);
    h_stabilize(&C);
    h_free(&C);
}

static void test_inflight_bound(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.max_size_per_msg = 1; /* one entry per append */
    cfg.max_inflight_msgs = 3;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_propose_n(&C, 1, 1);
    h_stabilize(&C);    /* node 3 is now in REPLICATE */
    C.cut[3][1] = true; /* node 3 hears the leader but its answers are lost */
    uint64_t before = C.nodes[0].appends_with_entries_to[3];
    for (int i = 0; i < 10; i++) {
        h_propose_n(&C, 1, 1);
        h_stabilize(&C);
    }
    assert_int_equal(C.nodes[0].appends_with_entries_to[3] - before, 3);
    C.cut[3][1] = false;
    h_tick_all(&C, 3); /* heartbeats answered: the pipeline drains */
    assert_int_equal(h_status(&C, 3).last_index, h_status(&C, 1).last_index);
    h_free(&C);
}

static void test_uncommitted_bytes_bound(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.max_uncommitted_entries_bytes = 64;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 1, true); /* nothing commits */
    uint8_t data[8] = {0};
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        ok += raft_propose(h_raft(&C, 1), data, sizeof(data), NULL) == FL_OK;
    }
    assert_int_equal(ok, 8);
    assert_int_equal(raft_propose(h_raft(&C, 1), data, sizeof(data), NULL), FL_ERR_BUSY);
    h_isolate(&C, 1, false);
    h_tick_all(&C, 2);
    assert_int_equal(raft_propose(h_raft(&C, 1), data, sizeof(data), NULL), FL_OK);
    h_free(&C);
}

static void test_propose_many(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.max_uncommitted_entries_bytes = 100;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    const void *datas[3] = {"aaaa", "", "cc"};
    uint32_t lens[3] = {4, 0, 2};
    uint64_t first = 0;
    assert_int_equal(raft_propose_many(h_raft(&C, 1), datas, lens, 3, &first), FL_OK);
    assert_int_equal(first, 3);
    assert_int_equal(h_status(&C, 1).last_index, 5);
    /* All or nothing: over the uncommitted bound, nothing is appended. */
    uint32_t big[3] = {40, 40, 40};
    assert_int_equal(raft_propose_many(h_raft(&C, 1), datas, big, 3, NULL), FL_ERR_BUSY);
    assert_int_equal(h_status(&C, 1).last_index, 5);
    h_stabilize(&C);
    struct h_node *nd = &C.nodes[2];
    assert_int_equal(nd->applied[nd->n_applied - 1].index, 5);
    assert_memory_equal(nd->applied[nd->n_applied - 1].data, "cc", 2);
    assert_int_equal(nd->applied[nd->n_applied - 2].len, 0);
    h_free(&C);
}

static void test_follower_propose_unavailable(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    assert_int_equal(raft_propose(h_raft(&C, 2), "x", 1, NULL), FL_ERR_UNAVAILABLE);
    h_free(&C);
}

static void test_fast_backtracking(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    /* Node 1 appends 50 entries nobody gets, then loses leadership. */
    h_isolate(&C, 1, true);
    h_propose_n(&C, 1, 50);
    h_stabilize(&C);
    h_crash(&C, 1);
    h_isolate(&C, 1, false);
    h_elect(&C, 2);
    h_propose_n(&C, 2, 5);
    h_stabilize(&C);
    h_restart(&C, 1);
    uint64_t rejects_before = C.nodes[0].msgs_sent[RAFT_MSG_APPEND_RESP];
    h_tick_all(&C, 3);
    /* One rejection skips the whole divergent term, not one entry at a time. */
    assert_true(C.nodes[0].msgs_sent[RAFT_MSG_APPEND_RESP] - rejects_before < 10);
    assert_int_equal(h_status(&C, 1).commit, h_status(&C, 2).commit);
    assert_int_equal(h_status(&C, 1).last_index, h_status(&C, 2).last_index);
    h_free(&C);
}

/* ---- commit rule ---- */

static void test_commit_only_own_term_by_counting(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1); /* term 2, index 2 committed */
    h_isolate(&C, 1, true);
    h_propose_n(&C, 1, 1); /* index 3 at term 2: only on node 1 */
    h_stabilize(&C);
    h_crash(&C, 1); /* comes back a follower, index 3 on its disk */
    h_restart(&C, 1);
    h_isolate(&C, 1, false);
    /* Node 1 wins term 3 with a vote from 2 and appends its empty entry at 4. */
    h_isolate(&C, 3, true);
    raft_campaign(h_raft(&C, 1));
    h_ready(&C, 1);
    h_deliver_all(&C);
    h_ready(&C, 2);
    h_deliver_all(&C);
    assert_int_equal(h_status(&C, 1).role, RAFT_LEADER);
    assert_int_equal(h_status(&C, 1).term, 3);
    h_ready(&C, 1); /* persists index 4, sends appends */
    /* Node 2 acknowledges only index 3 (term 2): a majority holds it, but
     * counting replicas must not commit an entry of an earlier term. */
    struct raft_msg ack = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .index = 3};
    assert_int_equal(raft_step(h_raft(&C, 1), &ack), FL_OK);
    assert_int_equal(h_status(&C, 1).commit, 2);
    ack.index = 4; /* now its own entry: both commit */
    assert_int_equal(raft_step(h_raft(&C, 1), &ack), FL_OK);
    assert_int_equal(h_status(&C, 1).commit, 4);
    h_isolate(&C, 3, false);
    h_stabilize(&C);
    h_free(&C);
}

static void test_leader_counts_itself_only_once_persisted(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 1, 0, &cfg);
    h_elect(&C, 1);
    uint64_t index = h_propose_n(&C, 1, 1);
    assert_true(h_status(&C, 1).commit < index);
    struct raft_ready rd;
    raft_ready(h_raft(&C, 1), &rd);
    assert_int_equal(rd.n_committed, 0); /* not durable yet */
    uint64_t term = rd.entries[rd.n_entries - 1].term;
    raft_advance(h_raft(&C, 1));
    assert_true(h_status(&C, 1).commit < index); /* taken is not persisted */
    assert_false(raft_has_ready(h_raft(&C, 1))); /* and the write in flight is no work */
    raft_persisted(h_raft(&C, 1), index, term);
    assert_int_equal(h_status(&C, 1).commit, index);
    h_stabilize(&C);
    assert_int_equal(h_status(&C, 1).applied, index);
    h_free(&C);
}

/* ---- ReadIndex ---- */

static void test_read_index_needs_quorum_round(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_propose_n(&C, 1, 3);
    h_stabilize(&C);
    assert_int_equal(raft_read_index(h_raft(&C, 1), 77), FL_OK);
    assert_int_equal(raft_read_index(h_raft(&C, 1), 78), FL_OK);
    h_ready(&C, 1); /* the heartbeat round goes out */
    assert_int_equal(C.nodes[0].n_reads, 0);
    h_stabilize(&C);
    assert_int_equal(C.nodes[0].n_reads, 2); /* one round confirmed both */
    assert_int_equal(C.nodes[0].reads[0].read_id, 77);
    assert_int_equal(C.nodes[0].reads[0].index, h_status(&C, 1).commit);
    h_free(&C);
}

static void test_read_index_partitioned_leader_never_answers(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 1, true);
    assert_int_equal(raft_read_index(h_raft(&C, 1), 5), FL_OK);
    h_tick(&C, 1, 3);
    h_stabilize(&C);
    assert_int_equal(C.nodes[0].n_reads, 0);
    h_free(&C);
}

static void test_read_index_from_follower(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t last = h_propose_n(&C, 1, 4);
    h_stabilize(&C);
    assert_int_equal(raft_read_index(h_raft(&C, 3), 9), FL_OK);
    h_stabilize(&C);
    assert_int_equal(C.nodes[2].n_reads, 1);
    assert_int_equal(C.nodes[2].reads[0].read_id, 9);
    assert_int_equal(C.nodes[2].reads[0].index, last);
    h_free(&C);
}

static void test_read_index_waits_for_commit_in_term(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    raft_campaign(h_raft(&C, 1));
    /* Deliver the pre-votes and votes but not yet the first append's answers. */
    for (int i = 0; i < 4; i++) {
        for (raft_id id = 1; id <= 3; id++) {
            h_ready(&C, id);
        }
        h_deliver_all(&C);
        if (h_status(&C, 1).role == RAFT_LEADER) {
            break;
        }
    }
    assert_int_equal(h_status(&C, 1).role, RAFT_LEADER);
    assert_int_equal(raft_read_index(h_raft(&C, 1), 1), FL_OK);
    assert_int_equal(C.nodes[0].n_reads, 0);
    h_stabilize(&C);
    assert_int_equal(C.nodes[0].n_reads, 1);
    assert_int_equal(C.nodes[0].reads[0].index, 2); /* the new term's entry */
    h_free(&C);
}

/* ---- snapshots and restart ---- */

static void test_snapshot_catch_up(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 3, true);
    uint64_t last = h_propose_n(&C, 1, 30);
    h_stabilize(&C);
    assert_int_equal(raft_compact(h_raft(&C, 1), "state@32", 8, 0), FL_OK);
    assert_int_equal(h_status(&C, 1).snapshot_index, last);
    h_isolate(&C, 3, false);
    h_tick_all(&C, 3);
    struct raft_status st = h_status(&C, 3);
    assert_int_equal(st.snapshot_index, last);
    assert_int_equal(st.commit, last);
    assert_memory_equal(C.nodes[2].snap_data, "state@32", 8);
    /* And it keeps replicating normally afterwards. */
    uint64_t more = h_propose_n(&C, 1, 2);
    h_stabilize(&C);
    assert_int_equal(h_status(&C, 3).applied, more);
    assert_int_equal(C.nodes[2].applied[C.nodes[2].n_applied - 1].index, more);
    h_free(&C);
}

static void test_compact_keeps_entries(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t last = h_propose_n(&C, 1, 20);
    h_stabilize(&C);
    assert_int_equal(raft_compact(h_raft(&C, 1), "s", 1, 5), FL_OK);
    assert_int_equal(h_status(&C, 1).first_index, last - 5 + 1);
    h_free(&C);
}

static void test_restart_from_persisted_state(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    uint64_t last = h_propose_n(&C, 1, 10);
    h_stabilize(&C);
    struct raft_status before = h_status(&C, 2);
    h_crash(&C, 2);
    h_restart(&C, 2);
    struct raft_status after = h_status(&C, 2);
    assert_int_equal(after.term, before.term);
    assert_int_equal(after.vote, before.vote);
    assert_int_equal(after.last_index, last);
    /* Committed entries are handed out again from the snapshot on. */
    h_ready(&C, 2);
    assert_int_equal(C.nodes[1].n_applied, last - 1);
    /* Everyone restarts: the cluster elects and goes on, nothing lost. */
    for (raft_id id = 1; id <= 3; id++) {
        h_crash(&C, id);
        h_restart(&C, id);
    }
    h_tick_all(&C, 25);
    raft_id l = h_leader(&C);
    assert_int_not_equal(l, 0);
    uint64_t more = h_propose_n(&C, l, 1);
    h_stabilize(&C);
    assert_int_equal(h_status(&C, 3).commit, more);
    assert_true(more > last);
    h_free(&C);
}

/* ---- membership ---- */

static void test_add_learner_then_promote(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 1, &cfg);
    h_elect(&C, 1);
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    h_stabilize(&C);
    h_tick_all(&C, 2);
    struct raft_status st = h_status(&C, 1);
    assert_false(st.conf.n_voters_outgoing > 0); /* left joint by itself */
    assert_true(raft_conf_is_learner(&st.conf, 4));
    struct raft_status st4 = h_status(&C, 4);
    assert_true(raft_conf_is_learner(&st4.conf, 4));
    assert_int_equal(h_status(&C, 4).commit, st.commit);
    /* A learner never campaigns. */
    h_isolate(&C, 4, true);
    h_tick(&C, 4, 100);
    assert_int_equal(h_status(&C, 4).role, RAFT_FOLLOWER);
    h_isolate(&C, 4, false);
    /* Its answers do not count: two voters down, nothing commits. */
    h_isolate(&C, 2, true);
    h_isolate(&C, 3, true);
    uint64_t idx = h_propose_n(&C, 1, 1);
    h_stabilize(&C);
    assert_true(h_status(&C, 1).commit < idx);
    h_isolate(&C, 2, false);
    h_isolate(&C, 3, false);
    h_tick_all(&C, 2);
    assert_int_equal(h_status(&C, 1).commit, idx);
    cc.op = RAFT_CONF_ADD_VOTER;
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    h_tick_all(&C, 2);
    st = h_status(&C, 1);
    assert_true(raft_conf_is_voter(&st.conf, 4));
    st4 = h_status(&C, 4);
    assert_true(raft_conf_is_voter(&st4.conf, 4));
    assert_int_equal(st4.conf.n_learners, 0);
    h_free(&C);
}

static void test_joint_consensus_needs_both_majorities(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 2, &cfg);
    h_elect(&C, 1);
    /* {1,2,3} -> {1,4,5}: while joint, a commit needs 2 of {1,2,3} and 2 of {1,4,5}. */
    struct raft_conf_change cc[] = {{RAFT_CONF_ADD_VOTER, 4},
                                    {RAFT_CONF_ADD_VOTER, 5},
                                    {RAFT_CONF_REMOVE, 2},
                                    {RAFT_CONF_REMOVE, 3}};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), cc, 4, NULL), FL_OK);
    h_isolate(&C, 4, true);
    h_isolate(&C, 5, true);
    h_stabilize(&C);
    struct raft_status st = h_status(&C, 1);
    assert_true(st.conf.n_voters_outgoing > 0); /* applied enter-joint: stuck joint */
    uint64_t idx = h_propose_n(&C, 1, 1);
    h_stabilize(&C);
    assert_true(h_status(&C, 1).commit < idx); /* old majority alone is not enough */
    h_isolate(&C, 4, false);
    h_isolate(&C, 5, false);
    h_tick_all(&C, 3);
    st = h_status(&C, 1);
    assert_int_equal(st.conf.n_voters_outgoing, 0);
    assert_int_equal(st.conf.n_voters, 3);
    assert_true(raft_conf_is_voter(&st.conf, 5));
    assert_false(raft_conf_is_voter(&st.conf, 2));
    assert_true(st.commit >= idx);
    h_free(&C);
}

static void test_removed_leader_steps_down(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    struct raft_conf_change cc = {RAFT_CONF_REMOVE, 1};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_ERR_BUSY);
    h_stabilize(&C);
    h_tick_all(&C, 1);
    assert_int_equal(h_status(&C, 1).role, RAFT_FOLLOWER);
    h_crash(&C, 1);
    h_tick_all(&C, 30);
    raft_id l = h_leader(&C);
    assert_true(l == 2 || l == 3);
    assert_int_equal(h_status(&C, l).conf.n_voters, 2);
    h_free(&C);
}

static void test_conf_change_validation(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    struct raft_conf_change demote = {RAFT_CONF_ADD_LEARNER, 2};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &demote, 1, NULL), FL_ERR_INVALID);
    struct raft_conf_change all[] = {
        {RAFT_CONF_REMOVE, 1}, {RAFT_CONF_REMOVE, 2}, {RAFT_CONF_REMOVE, 3}};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), all, 3, NULL), FL_ERR_INVALID);
    struct raft_conf_change zero = {RAFT_CONF_ADD_VOTER, 0};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &zero, 1, NULL), FL_ERR_INVALID);
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 2), &zero, 1, NULL), FL_ERR_UNAVAILABLE);
    h_free(&C);
}

static void test_conf_change_codec(void **state)
{
    (void)state;
    struct raft_conf_change in[2] = {{RAFT_CONF_ADD_VOTER, 0x0102030405060708ull},
                                     {RAFT_CONF_REMOVE, 7}};
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_change_encode(RAFT_CONF_ENTER_JOINT, in, 2, buf);
    assert_int_equal(len, 2 + 2 * 9);
    uint8_t kind;
    struct raft_conf_change out[RAFT_MEMBERS_MAX];
    size_t n;
    assert_int_equal(raft_conf_change_decode(buf, len, &kind, out, &n), FL_OK);
    assert_int_equal(kind, RAFT_CONF_ENTER_JOINT);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].id, in[0].id);
    assert_int_equal(out[1].op, RAFT_CONF_REMOVE);
    assert_int_equal(raft_conf_change_decode(buf, len - 1, &kind, out, &n), FL_ERR_CORRUPT);
}

/* ---- leadership transfer ---- */

static void test_transfer_leader(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 3, true);
    h_propose_n(&C, 1, 5); /* node 3 falls behind */
    h_stabilize(&C);
    h_isolate(&C, 3, false);
    assert_int_equal(raft_transfer_leader(h_raft(&C, 1), 3), FL_OK);
    assert_int_equal(raft_propose(h_raft(&C, 1), "x", 1, NULL), FL_ERR_BUSY);
    h_stabilize(&C);
    h_tick_all(&C, 2);
    assert_int_equal(h_leader(&C), 3);
    assert_int_equal(h_status(&C, 1).lead, 3);
    h_free(&C);
}

static void test_transfer_abandoned_after_timeout(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.check_quorum = false;
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 3, true);
    assert_int_equal(raft_transfer_leader(h_raft(&C, 1), 3), FL_OK);
    assert_int_equal(raft_transfer_leader(h_raft(&C, 1), 1), FL_ERR_INVALID);
    h_tick(&C, 1, cfg.election_tick);
    h_stabilize(&C);
    assert_int_equal(h_status(&C, 1).lead_transferee, 0);
    assert_int_equal(raft_propose(h_raft(&C, 1), "x", 1, NULL), FL_OK);
    h_free(&C);
}

/* ---- inputs ---- */

/* ---- asynchronous storage writes (raft_persisted / raft_applied) ---- */

static void test_async_leader_commits_only_after_own_persist(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    C.nodes[0].manual = true;
    h_isolate(&C, 3, true); /* only follower 2 answers */
    uint64_t index = h_propose_n(&C, 1, 1);
    struct h_taken t = h_take(&C, 1); /* the appends leave; the leader's write is in flight */
    assert_int_equal(t.last_index, index);
    assert_false(raft_has_ready(h_raft(&C, 1))); /* a write in flight is no work */
    h_deliver_all(&C);
    h_ready(&C, 2); /* follower 2 persists and acknowledges */
    h_deliver_all(&C);
    /* 2 of 3 hold it, but one of the two is the leader's unfinished write. */
    assert_true(h_status(&C, 1).commit < index);
    raft_persisted(h_raft(&C, 1), t.last_index, t.last_term);
    assert_int_equal(h_status(&C, 1).persisted, index);
    assert_int_equal(h_status(&C, 1).commit, index);
    h_free(&C);
}

/* Node 2 as a follower stepped by hand: term-2 entries 3..4 handed out, then
 * a term-3 leader overwrites from 3 before node 2's write reports back. */
static void follower_with_truncated_write(struct h_taken *first, struct h_taken *second)
{
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    C.nodes[1].manual = true;
    struct raft_node *r = h_raft(&C, 2);
    struct raft_entry old[3] = {{2, 2, RAFT_ENTRY_NORMAL, 0, NULL},
                                {2, 3, RAFT_ENTRY_NORMAL, 0, NULL},
                                {2, 4, RAFT_ENTRY_NORMAL, 0, NULL}};
    struct raft_msg app = {.type = RAFT_MSG_APPEND,
                           .from = 1,
                           .to = 2,
                           .term = 2,
                           .index = 1,
                           .log_term = 1,
                           .commit = 1,
                           .n_entries = 3,
                           .entries = old};
    assert_int_equal(raft_step(r, &app), FL_OK);
    *first = h_take(&C, 2);
    struct raft_entry rewritten = {3, 3, RAFT_ENTRY_NORMAL, 0, NULL};
    app = (struct raft_msg){.type = RAFT_MSG_APPEND,
                            .from = 3,
                            .to = 2,
                            .term = 3,
                            .index = 2,
                            .log_term = 2,
                            .commit = 1,
                            .n_entries = 1,
                            .entries = &rewritten};
    assert_int_equal(raft_step(r, &app), FL_OK);
    *second = h_take(&C, 2);
}

static void test_async_truncation_hands_out_again(void **state)
{
    (void)state;
    struct h_taken first, second;
    follower_with_truncated_write(&first, &second);
    assert_int_equal(first.first_index, 2);
    assert_int_equal(first.last_index, 4);
    /* The rewritten tail is handed out again from the truncation point. */
    assert_int_equal(second.n_entries, 1);
    assert_int_equal(second.first_index, 3);
    assert_int_equal(second.last_term, 3);
    h_free(&C);
}

static void test_async_stale_persisted_ignored(void **state)
{
    (void)state;
    struct h_taken first, second;
    follower_with_truncated_write(&first, &second);
    struct raft_node *r = h_raft(&C, 2);
    /* The first write reports (4, term 2): index 4 is gone, and (3, term 2)
     * is not the entry at 3 any more. Neither may count. */
    raft_persisted(r, first.last_index, first.last_term);
    assert_int_equal(h_status(&C, 2).persisted, 1);
    raft_persisted(r, 3, 2);
    assert_int_equal(h_status(&C, 2).persisted, 1);
    raft_persisted(r, 9, 3); /* beyond anything handed out */
    assert_int_equal(h_status(&C, 2).persisted, 1);
    raft_persisted(r, 2, 2); /* entry 2 survived the truncation: this one counts */
    assert_int_equal(h_status(&C, 2).persisted, 2);
    raft_persisted(r, second.last_index, second.last_term);
    assert_int_equal(h_status(&C, 2).persisted, 3);
    h_free(&C);
}

static void test_async_nothing_handed_out_twice(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    C.nodes[0].manual = true;
    uint64_t last = h_propose_n(&C, 1, 2);
    struct h_taken a = h_take(&C, 1);
    assert_int_equal(a.n_entries, 2);
    assert_int_equal(a.last_index, last);
    h_propose_n(&C, 1, 1);
    struct h_taken b = h_take(&C, 1); /* a's write still in flight: only the new entry */
    assert_int_equal(b.n_entries, 1);
    assert_int_equal(b.first_index, last + 1);
    h_report(&C, 1, &a);
    h_report(&C, 1, &b);
    h_stabilize(&C); /* followers acknowledge: all three entries commit */
    struct h_taken c = h_take(&C, 1);
    assert_int_equal(c.n_entries, 0);
    assert_int_equal(c.apply_to, last + 1);
    assert_int_equal(c.n_committed, 3);
    h_deliver_all(&C);
    h_stabilize(&C);
    struct h_taken d = h_take(&C, 1); /* handed out for apply, not yet applied: not again */
    assert_int_equal(d.n_committed, 0);
    assert_int_equal(h_status(&C, 1).applied, 2);
    h_report(&C, 1, &c);
    assert_int_equal(h_status(&C, 1).applied, last + 1);
    h_free(&C);
}

static void test_async_conf_change_at_applied(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 1, &cfg);
    h_elect(&C, 1);
    C.nodes[0].manual = true;
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
    uint64_t index;
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, &index), FL_OK);
    struct h_taken t = h_take(&C, 1);
    raft_persisted(h_raft(&C, 1), t.last_index, t.last_term);
    h_deliver_all(&C);
    h_stabilize(&C); /* followers acknowledge: the entry commits */
    assert_int_equal(h_status(&C, 1).commit, index);
    t = h_take(&C, 1); /* handed out to apply, taken: advance is not apply */
    assert_int_equal(t.apply_to, index);
    struct raft_status st = h_status(&C, 1);
    assert_false(raft_conf_is_learner(&st.conf, 4));
    assert_int_equal(st.last_index, index); /* no "leave joint" yet */
    raft_applied(h_raft(&C, 1), t.apply_to);
    st = h_status(&C, 1);
    assert_true(raft_conf_is_learner(&st.conf, 4));
    assert_int_equal(st.conf.n_voters_outgoing, 3); /* joint */
    assert_int_equal(st.last_index, index + 1);     /* the leader appended "leave joint" */
    C.nodes[0].manual = false;
    h_stabilize(&C);
    h_tick_all(&C, 2);
    assert_int_equal(h_status(&C, 1).conf.n_voters_outgoing, 0);
    h_free(&C);
}

/* A leader that won alone: its new term reaches the disk with its first
 * entry, and no append may promise that term before. */
static void test_async_lone_leader_holds_appends_until_term_on_disk(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 1, 1, &cfg);
    h_elect(&C, 1);
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 2};
    assert_int_equal(raft_propose_conf_change(h_raft(&C, 1), &cc, 1, NULL), FL_OK);
    h_stabilize(&C);
    h_tick_all(&C, 3);
    assert_int_equal(h_status(&C, 2).last_index, h_status(&C, 1).last_index);
    h_crash(&C, 1);
    h_restart(&C, 1);
    h_stabilize(&C); /* it applies its log again (the conf change included) */
    C.nodes[0].manual = true;
    raft_campaign(h_raft(&C, 1)); /* wins at once: voter set {1} */
    assert_int_equal(h_status(&C, 1).role, RAFT_LEADER);
    uint64_t appends = C.nodes[0].msgs_sent[RAFT_MSG_APPEND];
    struct h_taken t = h_take(&C, 1);
    assert_int_equal(t.n_entries, 1); /* the term's first entry, with the new hard state */
    assert_int_equal(C.nodes[0].msgs_sent[RAFT_MSG_APPEND], appends);
    assert_false(raft_has_ready(h_raft(&C, 1))); /* held appends are not work */
    raft_persisted(h_raft(&C, 1), t.last_index, t.last_term);
    assert_true(raft_has_ready(h_raft(&C, 1)));
    h_take(&C, 1);
    assert_true(C.nodes[0].msgs_sent[RAFT_MSG_APPEND] > appends);
    h_free(&C);
}

static void test_progress_match(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 3, true);
    uint64_t last = h_propose_n(&C, 1, 3);
    h_stabilize(&C);
    uint64_t match = 0;
    assert_true(raft_progress_match(h_raft(&C, 1), 2, &match));
    assert_int_equal(match, last);
    assert_true(raft_progress_match(h_raft(&C, 1), 3, &match));
    assert_int_equal(match, 2); /* it missed the three */
    assert_false(raft_progress_match(h_raft(&C, 1), 9, &match));
    assert_false(raft_progress_match(h_raft(&C, 2), 1, &match)); /* not a leader */
    h_free(&C);
}

static void test_report_unreachable_stops_pipelining(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.max_size_per_msg = 1; /* one entry per append */
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_propose_n(&C, 1, 1);
    h_stabilize(&C);    /* node 3 is pipelining (REPLICATE) */
    C.cut[3][1] = true; /* its answers are lost */
    raft_report_unreachable(h_raft(&C, 1), 3);
    uint64_t before = C.nodes[0].appends_with_entries_to[3];
    for (int i = 0; i < 3; i++) {
        h_propose_n(&C, 1, 1);
        h_stabilize(&C);
    }
    /* PROBE: one append, then wait for an answer (REPLICATE would send 3). */
    assert_int_equal(C.nodes[0].appends_with_entries_to[3] - before, 1);
    C.cut[3][1] = false;
    h_tick_all(&C, 3);
    assert_int_equal(h_status(&C, 3).last_index, h_status(&C, 1).last_index);
    h_free(&C);
}

static void test_report_snapshot_failed_retries_soon(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    h_init(&C, 3, 0, &cfg);
    h_elect(&C, 1);
    h_isolate(&C, 3, true);
    h_propose_n(&C, 1, 5);
    h_stabilize(&C);
    assert_int_equal(raft_compact(h_raft(&C, 1), "s", 1, 0), FL_OK);
    /* Node 3 comes back; the leader finds it needs compacted entries and
     * sends a snapshot, which is lost on the way. */
    h_isolate(&C, 3, false);
    h_tick(&C, 1, 1);
    for (int round = 0; round < 8 && C.nodes[0].msgs_sent[RAFT_MSG_SNAPSHOT] == 0; round++) {
        for (raft_id id = 1; id <= 3; id++) {
            h_ready(&C, id);
        }
        C.cut[1][3] = C.nodes[0].msgs_sent[RAFT_MSG_SNAPSHOT] > 0;
        h_deliver_all(&C);
    }
    C.cut[1][3] = false;
    assert_int_equal(C.nodes[0].msgs_sent[RAFT_MSG_SNAPSHOT], 1);
    assert_true(h_status(&C, 3).last_index < h_status(&C, 1).last_index);
    raft_report_snapshot(h_raft(&C, 1), 3, false);
    /* Retried on the next heartbeat answer, not an election timeout later. */
    h_tick_all(&C, 2);
    assert_int_equal(C.nodes[0].msgs_sent[RAFT_MSG_SNAPSHOT], 2);
    assert_int_equal(h_status(&C, 3).last_index, h_status(&C, 1).last_index);
    h_free(&C);
}

static void test_rejects_bad_config_and_messages(void **state)
{
    (void)state;
    struct raft_config cfg = base_cfg();
    cfg.heartbeat_tick = cfg.election_tick;
    struct raft_restore r = {0};
    struct raft_node *node = NULL;
    assert_int_equal(raft_new(&cfg, &r, &node), FL_ERR_INVALID);
    struct raft_config good = base_cfg();
    h_init(&C, 3, 0, &good);
    struct raft_msg bad = {.type = 99, .from = 2, .to = 1, .term = 1};
    assert_int_equal(raft_step(h_raft(&C, 1), &bad), FL_ERR_INVALID);
    struct raft_entry e = {.term = 1, .index = 7};
    struct raft_msg gap = {.type = RAFT_MSG_APPEND,
                           .from = 2,
                           .to = 1,
                           .term = 1,
                           .index = 1,
                           .n_entries = 1,
                           .entries = &e};
    assert_int_equal(raft_step(h_raft(&C, 1), &gap), FL_ERR_INVALID);
    h_free(&C);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_election_basic),
        cmocka_unit_test(test_election_by_timeout),
        cmocka_unit_test(test_vote_is_persisted_before_it_is_sent),
        cmocka_unit_test(test_one_vote_per_term),
        cmocka_unit_test(test_vote_needs_up_to_date_log),
        cmocka_unit_test(test_prevote_keeps_terms),
        cmocka_unit_test(test_check_quorum_leader_steps_down),
        cmocka_unit_test(test_check_quorum_lease_ignores_votes),
        cmocka_unit_test(test_replication_and_apply),
        cmocka_unit_test(test_proposals_are_batched),
        cmocka_unit_test(test_inflight_bound),
        cmocka_unit_test(test_uncommitted_bytes_bound),
        cmocka_unit_test(test_propose_many),
        cmocka_unit_test(test_follower_propose_unavailable),
        cmocka_unit_test(test_fast_backtracking),
        cmocka_unit_test(test_commit_only_own_term_by_counting),
        cmocka_unit_test(test_leader_counts_itself_only_once_persisted),
        cmocka_unit_test(test_read_index_needs_quorum_round),
        cmocka_unit_test(test_read_index_partitioned_leader_never_answers),
        cmocka_unit_test(test_read_index_from_follower),
        cmocka_unit_test(test_read_index_waits_for_commit_in_term),
        cmocka_unit_test(test_snapshot_catch_up),
        cmocka_unit_test(test_compact_keeps_entries),
        cmocka_unit_test(test_restart_from_persisted_state),
        cmocka_unit_test(test_add_learner_then_promote),
        cmocka_unit_test(test_joint_consensus_needs_both_majorities),
        cmocka_unit_test(test_removed_leader_steps_down),
        cmocka_unit_test(test_conf_change_validation),
        cmocka_unit_test(test_conf_change_codec),
        cmocka_unit_test(test_transfer_leader),
        cmocka_unit_test(test_transfer_abandoned_after_timeout),
        cmocka_unit_test(test_rejects_bad_config_and_messages),
        cmocka_unit_test(test_async_leader_commits_only_after_own_persist),
        cmocka_unit_test(test_async_truncation_hands_out_again),
        cmocka_unit_test(test_async_stale_persisted_ignored),
        cmocka_unit_test(test_async_nothing_handed_out_twice),
        cmocka_unit_test(test_async_conf_change_at_applied),
        cmocka_unit_test(test_async_lone_leader_holds_appends_until_term_on_disk),
        cmocka_unit_test(test_progress_match),
        cmocka_unit_test(test_report_unreachable_stops_pipelining),
        cmocka_unit_test(test_report_snapshot_failed_retries_soon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

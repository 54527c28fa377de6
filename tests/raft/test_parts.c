/* tests/raft/test_parts.c: the pieces of the core on their own —
 * log.c, progress.c, conf.c, blob.c — through src/raft/internal.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "raft/internal.h"

static void append(struct raft_log *log, uint64_t term, const char *data)
{
    struct raft_entry e = {.term = term,
                           .index = raft_log_last_index(log) + 1,
                           .len = (uint32_t)strlen(data),
                           .data = raft_blob_new(data, (uint32_t)strlen(data))};
    assert_int_equal(raft_log_append(log, &e), FL_OK);
}

static void test_log_append_term_truncate(void **state)
{
    (void)state;
    struct raft_log log;
    assert_int_equal(raft_log_init(&log, 5, 2), FL_OK);
    assert_int_equal(raft_log_last_index(&log), 5);
    assert_int_equal(raft_log_last_term(&log), 2);
    for (int i = 0; i < 200; i++) { /* past the initial capacity */
        append(&log, i < 100 ? 2 : 3, "x");
    }
    uint64_t t;
    assert_true(raft_log_term(&log, 5, &t));
    assert_int_equal(t, 2);
    assert_true(raft_log_term(&log, 106, &t));
    assert_int_equal(t, 3);
    assert_false(raft_log_term(&log, 4, &t)); /* compacted */
    assert_false(raft_log_term(&log, 206, &t));
    log.stable = 205;
    raft_log_truncate_from(&log, 150);
    assert_int_equal(raft_log_last_index(&log), 149);
    assert_int_equal(log.stable, 149); /* the overwritten tail must be persisted again */
    raft_log_free(&log);
}

static void test_log_compact_and_reset(void **state)
{
    (void)state;
    struct raft_log log;
    assert_int_equal(raft_log_init(&log, 0, 0), FL_OK);
    for (int i = 0; i < 100; i++) {
        append(&log, 1, "abc");
    }
    log.stable = log.committed = log.applied = 80;
    raft_log_compact_to(&log, 70);
    assert_int_equal(log.prev_index, 70);
    assert_int_equal(log.prev_term, 1);
    assert_null(raft_log_get(&log, 70));
    assert_memory_equal(raft_log_get(&log, 71)->data, "abc", 3);
    for (int i = 0; i < 200; i++) { /* reuses the dead front of the array */
        append(&log, 2, "d");
    }
    assert_int_equal(raft_log_get(&log, 300)->index, 300);
    raft_log_reset(&log, 500, 4);
    assert_int_equal(raft_log_last_index(&log), 500);
    assert_int_equal(log.committed, 500);
    raft_log_free(&log);
}

static void test_log_up_to_date_and_conflict_by_term(void **state)
{
    (void)state;
    struct raft_log log;
    assert_int_equal(raft_log_init(&log, 0, 0), FL_OK);
    const uint64_t terms[] = {1, 1, 2, 2, 2, 5, 5}; /* indexes 1..7 */
    for (size_t i = 0; i < 7; i++) {
        append(&log, terms[i], "e");
    }
    assert_true(raft_log_up_to_date(&log, 7, 5));
    assert_true(raft_log_up_to_date(&log, 1, 6));
    assert_false(raft_log_up_to_date(&log, 6, 5));
    assert_false(raft_log_up_to_date(&log, 100, 4));
    assert_int_equal(raft_log_conflict_by_term(&log, 7, 3), 5); /* skips the term-5 entries */
    assert_int_equal(raft_log_conflict_by_term(&log, 7, 1), 2);
    assert_int_equal(raft_log_conflict_by_term(&log, 100, 9), 7);
    assert_int_equal(raft_log_conflict_by_term(&log, 4, 0), 0);
    raft_log_free(&log);
}

static void test_blob_refcount(void **state)
{
    (void)state;
    uint8_t *b = raft_blob_new("hello", 5);
    assert_non_null(b);
    raft_blob_ref(b);
    raft_blob_unref(b);
    assert_memory_equal(b, "hello", 5); /* still alive: one reference left */
    raft_blob_unref(b);
    assert_null(raft_blob_new("x", 0));
    raft_blob_ref(NULL);
    raft_blob_unref(NULL);
}

static void test_blob_batch_shares_one_chunk(void **state)
{
    (void)state;
    struct raft_blob_batch b;
    size_t bytes = raft_blob_batch_bytes(3) + raft_blob_batch_bytes(0) + raft_blob_batch_bytes(9);
    assert_int_equal(raft_blob_batch_begin(&b, bytes), FL_OK);
    uint8_t *x = raft_blob_batch_add(&b, "abc", 3);
    assert_null(raft_blob_batch_add(&b, "", 0));
    uint8_t *y = raft_blob_batch_add(&b, "123456789", 9);
    raft_blob_batch_end(&b);
    assert_int_equal((uintptr_t)x % 8, 0); /* segments stay aligned */
    assert_int_equal((uintptr_t)y % 8, 0);
    raft_blob_unref(x); /* the chunk lives on for y (ASan would see a use after free) */
    assert_memory_equal(y, "123456789", 9);
    raft_blob_unref(y);
    /* A batch whose entries are never kept frees itself at end. */
    assert_int_equal(raft_blob_batch_begin(&b, raft_blob_batch_bytes(5)), FL_OK);
    raft_blob_batch_end(&b);
}

static void test_progress_states(void **state)
{
    (void)state;
    struct raft_progress pr;
    raft_progress_init(&pr, 2, 11, 2);
    assert_false(raft_progress_is_paused(&pr));
    raft_progress_sent_entries(&pr, 12);
    assert_true(raft_progress_is_paused(&pr)); /* PROBE: one at a time */
    /* A stale rejection (not of the append we sent last) is ignored. */
    assert_false(raft_progress_maybe_decrease(&pr, 7, 3));
    assert_true(raft_progress_maybe_decrease(&pr, 10, 4));
    assert_int_equal(pr.next, 5);
    assert_false(raft_progress_is_paused(&pr));
    assert_true(raft_progress_maybe_update(&pr, 8));
    raft_progress_become_replicate(&pr);
    assert_int_equal(pr.next, 9);
    raft_progress_sent_entries(&pr, 10);
    raft_progress_sent_entries(&pr, 12);
    assert_true(raft_progress_is_paused(&pr)); /* inflight window of 2 is full */
    raft_progress_free_inflights_to(&pr, 10);
    assert_false(raft_progress_is_paused(&pr));
    assert_false(raft_progress_maybe_decrease(&pr, 8, 0)); /* at or below match: stale */
    assert_true(raft_progress_maybe_decrease(&pr, 11, 0));
    assert_int_equal(pr.next, 9);
    raft_progress_become_snapshot(&pr, 50, 0);
    assert_true(raft_progress_is_paused(&pr));
    raft_progress_become_probe(&pr);
    assert_int_equal(pr.next, 51); /* resumes after the snapshot it was sent */
}

static uint64_t value_of(const void *ctx, raft_id id)
{
    const uint64_t *values = ctx;
    return values[id];
}

static int grant_of(const void *ctx, raft_id id)
{
    const int *votes = ctx;
    return votes[id];
}

static void test_conf_quorum_and_tally(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 3, .voters = {1, 2, 3}};
    uint64_t match[8] = {0, 10, 7, 3, 9, 1, 0, 0};
    assert_int_equal(raft_conf_quorum_value(&c, value_of, match), 7);
    /* Joint with {3,4,5}: that majority only reaches 3. */
    c.n_voters_outgoing = 3;
    c.voters_outgoing[0] = 3;
    c.voters_outgoing[1] = 4;
    c.voters_outgoing[2] = 5;
    assert_int_equal(raft_conf_quorum_value(&c, value_of, match), 3);
    int votes[8] = {-1, 1, 1, -1, 0, 0, -1, -1};
    assert_int_equal(raft_conf_tally(&c, grant_of, votes), RAFT_VOTE_LOST);
    votes[4] = 1;
    votes[5] = -1;
    assert_int_equal(raft_conf_tally(&c, grant_of, votes), RAFT_VOTE_PENDING);
    votes[3] = 1;
    assert_int_equal(raft_conf_tally(&c, grant_of, votes), RAFT_VOTE_WON);
    c.n_learners = 1;
    c.learners[0] = 6;
    assert_true(raft_conf_is_learner(&c, 6));
    assert_false(raft_conf_is_voter(&c, 6));
    assert_true(raft_conf_is_member(&c, 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_term_truncate),
        cmocka_unit_test(test_log_compact_and_reset),
        cmocka_unit_test(test_log_up_to_date_and_conflict_by_term),
        cmocka_unit_test(test_blob_refcount),
        cmocka_unit_test(test_blob_batch_shares_one_chunk),
        cmocka_unit_test(test_progress_states),
        cmocka_unit_test(test_conf_quorum_and_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

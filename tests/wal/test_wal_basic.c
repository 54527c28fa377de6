/* wal unit tests: append, reopen, replay, hard state, roll-over, logical
 * truncation, release, argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal/wal.h"
#include "wal_test_support.h"

typedef struct fixture {
    char *tmp;
    wal *log;
    wal_options options;
    wal_recovery_info info;
    char errbuf[512];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = ts_tmpdir_make();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wal_close(f->log);
    ts_tmpdir_remove(f->tmp);
    free(f);
    return 0;
}

static void reopen(fixture *f)
{
    wal_close(f->log);
    f->log = NULL;
    fl_err err =
        wal_open(ts_wal_dir(f->tmp), &f->options, &f->log, &f->info, f->errbuf, sizeof f->errbuf);
    if (err != FL_OK)
        fail_msg("wal_open: %s: %s", fl_err_name(err), f->errbuf);
}

static void expect_replay(wal *log, uint64_t after, uint64_t first, uint64_t last, uint64_t term)
{
    ts_collected *c;
    assert_int_equal(ts_replay(log, after, &c), FL_OK);
    ts_expect_range(c, first, last, term);
    free(c);
}

static void empty_log_opens_empty(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(f->info.first_index, 0);
    assert_int_equal(f->info.last_index, 0);
    assert_false(f->info.has_hard_state);
    assert_int_equal(wal_last_index(f->log), 0);
    expect_replay(f->log, 0, 1, 0, 1);
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    assert_int_equal(f->info.last_index, 0);
    /* A trailing slash is fine; a missing parent is an error with a message. */
    char path[600];
    wal *other = NULL;
    snprintf(path, sizeof path, "%s/other/", f->tmp);
    assert_int_equal(wal_open(path, NULL, &other, NULL, NULL, 0), FL_OK);
    assert_int_equal(ts_append_range(other, 1, 3, 1, NULL), FL_OK);
    wal_close(other);
    snprintf(path, sizeof path, "%s/missing/wal", f->tmp);
    assert_int_not_equal(wal_open(path, NULL, &other, NULL, f->errbuf, sizeof f->errbuf), FL_OK);
    assert_null(other);
    assert_non_null(strstr(f->errbuf, path));
}

static void append_reopen_replay(void **state)
{
    fixture *f = *state;
    reopen(f);
    for (uint64_t i = 1; i <= 100; i += 10)
        assert_int_equal(ts_append_range(f->log, i, i + 9, 3, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    assert_int_equal(wal_last_index(f->log), 100);
    expect_replay(f->log, 0, 1, 100, 3);
    reopen(f);
    assert_int_equal(f->info.first_index, 1);
    assert_int_equal(f->info.last_index, 100);
    assert_int_equal(f->info.torn_bytes_cut, 0);
    expect_replay(f->log, 0, 1, 100, 3);
    /* Appending continues after a reopen, then survives another one. */
    assert_int_equal(ts_append_range(f->log, 101, 120, 3, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    assert_int_equal(f->info.last_index, 120);
    expect_replay(f->log, 0, 1, 120, 3);
}

static void replay_after_index(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1, 50, 2, NULL), FL_OK);
    expect_replay(f->log, 0, 1, 50, 2);
    expect_replay(f->log, 17, 18, 50, 2);
    expect_replay(f->log, 49, 50, 50, 2);
    expect_replay(f->log, 50, 1, 0, 2);
    expect_replay(f->log, 1000, 1, 0, 2);
}

static void hard_state_newest_wins(void **state)
{
    fixture *f = *state;
    reopen(f);
    wal_hard_state a = {.term = 1, .vote = 7, .commit = 0};
    wal_hard_state b = {.term = 2, .vote = 9, .commit = 10};
    wal_hard_state c = {.term = 5, .vote = 0, .commit = 12};
    assert_int_equal(wal_append_batch(f->log, NULL, 0, &a), FL_OK);
    assert_int_equal(ts_append_range(f->log, 1, 10, 1, &b), FL_OK);
    assert_int_equal(ts_append_range(f->log, 11, 12, 2, NULL), FL_OK);
    assert_int_equal(wal_append_batch(f->log, NULL, 0, &c), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    assert_true(f->info.has_hard_state);
    assert_int_equal(f->info.hard_state.term, 5);
    assert_int_equal(f->info.hard_state.vote, 0);
    assert_int_equal(f->info.hard_state.commit, 12);
    assert_int_equal(f->info.last_index, 12);
    /* The entries around hard state records are intact. */
    ts_collected *col;
    assert_int_equal(ts_replay(f->log, 0, &col), FL_OK);
    assert_int_equal(col->count, 12);
    assert_int_equal(col->term[9], 1);
    assert_int_equal(col->term[10], 2);
    free(col);
}

static void rollover_many_segments(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 1024;
    reopen(f);
    for (uint64_t i = 1; i <= 600; i += 6)
        assert_int_equal(ts_append_range(f->log, i, i + 5, 4, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    char names[256][64];
    size_t n = ts_list_segments(ts_wal_dir(f->tmp), names, 256);
    assert_true(n >= 20);
    /* Names sort in log order; every segment stays under the bound (one
     * batch of six small entries is far below 1024 bytes). */
    for (size_t k = 0; k < n; k++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", ts_wal_dir(f->tmp), names[k]);
        assert_true(ts_file_size(path) <= 1024);
        unsigned long long seq = strtoull(names[k], NULL, 16);
        assert_int_equal(seq, k + 1);
    }
    assert_memory_equal(names[0], "0000000000000001-0000000000000001.wal", 38);
    expect_replay(f->log, 0, 1, 600, 4);
    expect_replay(f->log, 333, 334, 600, 4);
    reopen(f);
    assert_int_equal(f->info.first_index, 1);
    assert_int_equal(f->info.last_index, 600);
    expect_replay(f->log, 0, 1, 600, 4);
    expect_replay(f->log, 599, 600, 600, 4);
}

/* Rewriting index 5 with a new term drops 6.. and yields the new 5. */
static void logical_truncation(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1, 10, 1, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 5, 5, 2, NULL), FL_OK);
    assert_int_equal(wal_last_index(f->log), 5);
    ts_collected *c;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
        assert_int_equal(c->count, 5);
        for (size_t k = 0; k < 4; k++)
            assert_int_equal(c->term[k], 1);
        assert_int_equal(c->index[4], 5);
        assert_int_equal(c->term[4], 2);
        assert_true(c->payload_ok[4]);
        free(c);
        assert_int_equal(wal_sync(f->log), FL_OK);
        reopen(f);
        assert_int_equal(f->info.last_index, 5);
    }
    /* The log continues from the rewritten index. */
    assert_int_equal(ts_append_range(f->log, 6, 8, 2, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 7, 9, 3, NULL), FL_OK);
    reopen(f);
    assert_int_equal(ts_replay(f->log, 3, &c), FL_OK);
    assert_int_equal(c->count, 6);
    uint64_t want_term[] = {1, 2, 2, 3, 3, 3};
    for (size_t k = 0; k < 6; k++) {
        assert_int_equal(c->index[k], 4 + k);
        assert_int_equal(c->term[k], want_term[k]);
        assert_true(c->payload_ok[k]);
    }
    free(c);
}

/* A rewrite reaching back into earlier segments. */
static void truncation_across_segments(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 512;
    reopen(f);
    for (uint64_t i = 1; i <= 200; i += 4)
        assert_int_equal(ts_append_range(f->log, i, i + 3, 1, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 30, 40, 7, NULL), FL_OK);
    for (int round = 0; round < 2; round++) {
        ts_collected *c;
        assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
        assert_int_equal(c->count, 40);
        for (size_t k = 0; k < 40; k++) {
            assert_int_equal(c->index[k], k + 1);
            assert_int_equal(c->term[k], k + 1 < 30 ? 1 : 7);
            assert_true(c->payload_ok[k]);
        }
        free(c);
        reopen(f);
        assert_int_equal(f->info.last_index, 40);
    }
}

static void release_deletes_old_segments(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 1024;
    reopen(f);
    wal_hard_state hs = {.term = 4, .vote = 2, .commit = 3};
    assert_int_equal(ts_append_range(f->log, 1, 3, 4, &hs), FL_OK);
    for (uint64_t i = 4; i <= 300; i += 3)
        assert_int_equal(ts_append_range(f->log, i, i + 2, 4, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    char names[256][64];
    size_t before = ts_list_segments(ts_wal_dir(f->tmp), names, 256);
    assert_true(before > 10);
    assert_int_equal(wal_release_up_to(f->log, 150), FL_OK);
    size_t after = ts_list_segments(ts_wal_dir(f->tmp), names, 256);
    assert_true(after < before);
    assert_true(after > 1);
    uint64_t first = wal_first_index(f->log);
    assert_true(first > 1 && first <= 151);
    /* Everything after the snapshot is still there, before and after reopen. */
    expect_replay(f->log, 150, 151, 300, 4);
    expect_replay(f->log, 0, first, 300, 4);
    reopen(f);
    assert_int_equal(f->info.first_index, first);
    assert_int_equal(f->info.last_index, 300);
    expect_replay(f->log, 150, 151, 300, 4);
    /* The hard state from the first (deleted) segment survived. */
    assert_true(f->info.has_hard_state);
    assert_int_equal(f->info.hard_state.term, 4);
    assert_int_equal(f->info.hard_state.vote, 2);
    assert_int_equal(f->info.hard_state.commit, 3);
    /* Releasing everything keeps the live segment and the last index. */
    assert_int_equal(wal_release_up_to(f->log, 300), FL_OK);
    assert_int_equal(ts_list_segments(ts_wal_dir(f->tmp), names, 256), 1);
    assert_int_equal(wal_last_index(f->log), 300);
    assert_int_equal(ts_append_range(f->log, 301, 302, 5, NULL), FL_OK);
    reopen(f);
    assert_int_equal(f->info.last_index, 302);
    assert_true(f->info.has_hard_state);
    ts_collected *c;
    assert_int_equal(ts_replay(f->log, 300, &c), FL_OK);
    assert_int_equal(c->count, 2);
    assert_int_equal(c->index[1], 302);
    assert_int_equal(c->term[1], 5);
    free(c);
}

/* Release after a rewrite that reached back into older segments: what is
 * left is a suffix of the records, and it recovers to the same live log. */
static void release_after_truncation(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 512;
    reopen(f);
    for (uint64_t i = 1; i <= 120; i += 4)
        assert_int_equal(ts_append_range(f->log, i, i + 3, 1, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 90, 95, 2, NULL), FL_OK);
    for (uint64_t i = 96; i <= 140; i += 5)
        assert_int_equal(ts_append_range(f->log, i, i + 4, 2, NULL), FL_OK);
    char names[256][64];
    size_t before = ts_list_segments(ts_wal_dir(f->tmp), names, 256);
    assert_int_equal(wal_release_up_to(f->log, 100), FL_OK);
    size_t after = ts_list_segments(ts_wal_dir(f->tmp), names, 256);
    assert_true(after < before);
    for (int round = 0; round < 2; round++) {
        /* Entries <= 100 may be gone with their segments; the rest is whole. */
        uint64_t first = wal_first_index(f->log);
        assert_true(first > 1 && first <= 101);
        ts_collected *c;
        assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
        assert_int_equal(c->count, 140 - first + 1);
        for (size_t k = 0; k < c->count; k++) {
            assert_int_equal(c->index[k], first + k);
            assert_int_equal(c->term[k], first + k < 90 ? 1 : 2);
            assert_true(c->payload_ok[k]);
        }
        free(c);
        expect_replay(f->log, 100, 101, 140, 2);
        reopen(f);
        assert_int_equal(f->info.last_index, 140);
        assert_int_equal(f->info.first_index, first);
    }
}

static void oversize_and_invalid(void **state)
{
    fixture *f = *state;
    f->options.record_bytes_max = 100;
    reopen(f);
    uint8_t big[101] = {0};
    wal_entry e = {.index = 1, .term = 1, .type = WAL_ENTRY_NORMAL, .data = big, .len = 101};
    assert_int_equal(wal_append_batch(f->log, &e, 1, NULL), FL_ERR_TOO_LARGE);
    e.len = 100;
    assert_int_equal(wal_append_batch(f->log, &e, 1, NULL), FL_OK);
    /* Gap, non-consecutive batch, index 0, bad type: rejected, log unchanged. */
    wal_entry two[2] = {e, e};
    two[0].index = 3;
    two[1].index = 4;
    assert_int_equal(wal_append_batch(f->log, two, 2, NULL), FL_ERR_INVALID);
    two[0].index = 2;
    two[1].index = 4;
    assert_int_equal(wal_append_batch(f->log, two, 2, NULL), FL_ERR_INVALID);
    two[0].index = 0;
    assert_int_equal(wal_append_batch(f->log, two, 1, NULL), FL_ERR_INVALID);
    two[0].index = 2;
    two[0].type = (wal_entry_type)9;
    assert_int_equal(wal_append_batch(f->log, two, 1, NULL), FL_ERR_INVALID);
    assert_int_equal(wal_last_index(f->log), 1);
    reopen(f);
    assert_int_equal(f->info.last_index, 1);
}

static fl_err stop_at_three(void *ctx, const wal_entry *entry)
{
    int *seen = ctx;
    (*seen)++;
    return entry->index == 3 ? FL_ERR_STOPPED : FL_OK;
}

static void replay_stops_on_visitor_error(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1, 10, 1, NULL), FL_OK);
    int seen = 0;
    assert_int_equal(wal_replay(f->log, 0, stop_at_three, &seen), FL_ERR_STOPPED);
    assert_int_equal(seen, 3);
}

/* An empty log (fresh or fully released) may start at any index, e.g.
 * after a snapshot install; it may not leave a gap once it holds entries. */
static void empty_log_starts_anywhere(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1000, 1004, 9, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 1006, 1006, 9, NULL), FL_ERR_INVALID);
    reopen(f);
    assert_int_equal(f->info.first_index, 1000);
    assert_int_equal(f->info.last_index, 1004);
    expect_replay(f->log, 0, 1000, 1004, 9);
}

/* Replay from deep inside a long run (it starts at a sparse checkpoint, one
 * every 256 entries) yields exactly the right entries, also after a rewrite
 * and after reopening. */
static void replay_from_deep_inside_a_run(void **state)
{
    fixture *f = *state;
    reopen(f);
    for (uint64_t i = 1; i <= 3000; i += 100)
        assert_int_equal(ts_append_range(f->log, i, i + 99, 1, NULL), FL_OK);
    uint64_t afters[] = {0, 1, 254, 255, 256, 257, 511, 512, 1023, 1024, 1500, 2999, 3000};
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof afters / sizeof *afters; k++)
            expect_replay(f->log, afters[k], afters[k] + 1, 3000, 1);
        reopen(f);
    }
    /* Rewrite from 700 (term 2) up to 1000: checkpoints past 700 are stale. */
    assert_int_equal(ts_append_range(f->log, 700, 1000, 2, NULL), FL_OK);
    for (int round = 0; round < 2; round++) {
        expect_replay(f->log, 800, 801, 1000, 2);
        expect_replay(f->log, 768, 769, 1000, 2);
        expect_replay(f->log, 699, 700, 1000, 2);
        ts_collected *c;
        assert_int_equal(ts_replay(f->log, 500, &c), FL_OK);
        assert_int_equal(c->count, 500);
        assert_int_equal(c->index[0], 501);
        assert_int_equal(c->term[198], 1); /* 699 */
        assert_int_equal(c->term[199], 2); /* 700 */
        assert_int_equal(c->index[499], 1000);
        for (size_t k = 0; k < 500; k++)
            assert_true(c->payload_ok[k]);
        free(c);
        reopen(f);
    }
}

/* Entries bigger than the read window (256 KiB) and a batch bigger than the
 * kept append buffer (4 MiB) round-trip intact. */
typedef struct big_check {
    size_t seen;
    bool ok;
} big_check;

static size_t big_len(uint64_t index)
{
    return (size_t)(index * 300000 % 1900000) + 1;
}

static uint8_t big_byte(uint64_t index, size_t j)
{
    return (uint8_t)((index * 2654435761u + j * 40503u) >> 7);
}

static fl_err check_big(void *ctx, const wal_entry *entry)
{
    big_check *c = ctx;
    c->seen++;
    bool ok = entry->index == c->seen && entry->len == big_len(entry->index);
    for (size_t j = 0; ok && j < entry->len; j += 997)
        ok = entry->data[j] == big_byte(entry->index, j);
    ok = ok && entry->data[entry->len - 1] == big_byte(entry->index, entry->len - 1);
    c->ok = c->seen == 1 ? ok : (c->ok && ok);
    return FL_OK;
}

static void large_entries_roundtrip(void **state)
{
    fixture *f = *state;
    f->options.record_bytes_max = 2u << 20;
    f->options.segment_bytes_max = 4u << 20;
    reopen(f);
    enum { COUNT = 8 };
    wal_entry entries[COUNT];
    uint8_t *data[COUNT];
    for (uint64_t i = 1; i <= COUNT; i++) {
        size_t len = big_len(i);
        data[i - 1] = malloc(len);
        assert_non_null(data[i - 1]);
        for (size_t j = 0; j < len; j++)
            data[i - 1][j] = big_byte(i, j);
        entries[i - 1] = (wal_entry){
            .index = i, .term = 1, .type = WAL_ENTRY_NORMAL, .data = data[i - 1], .len = len};
    }
    assert_int_equal(wal_append_batch(f->log, entries, 3, NULL), FL_OK);
    assert_int_equal(wal_append_batch(f->log, entries + 3, COUNT - 3, NULL), FL_OK);
    for (size_t k = 0; k < COUNT; k++)
        free(data[k]);
    for (int round = 0; round < 2; round++) {
        big_check c = {0};
        assert_int_equal(wal_replay(f->log, 0, check_big, &c), FL_OK);
        assert_int_equal(c.seen, COUNT);
        assert_true(c.ok);
        reopen(f);
        assert_int_equal(f->info.last_index, COUNT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_log_opens_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(append_reopen_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(replay_after_index, setup, teardown),
        cmocka_unit_test_setup_teardown(hard_state_newest_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(rollover_many_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(logical_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(truncation_across_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(release_deletes_old_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(release_after_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(oversize_and_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(replay_stops_on_visitor_error, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_log_starts_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(large_entries_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(replay_from_deep_inside_a_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

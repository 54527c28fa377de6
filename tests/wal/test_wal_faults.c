/* wal unit tests: write failures through the test-only hooks
 * (wal_options.test_hooks): ENOSPC/EDQUOT/EIO, short writes, failures
 * while rolling a segment, a failing fdatasync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal_test_support.h"

typedef struct faults {
    bool armed;
    int fail_errno;     /* errno of the failing call */
    size_t short_first; /* if non-zero: the first armed call writes this many bytes */
    bool short_done;
    size_t short_every; /* if non-zero (and not armed): every write is cut to this */
    bool sync_fails;
    size_t writes, failures;
} faults;

static ssize_t fault_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t offset)
{
    faults *ft = ctx;
    ft->writes++;
    if (ft->armed) {
        if (ft->short_first && !ft->short_done) {
            ft->short_done = true;
            return pwrite(fd, buf, ft->short_first < len ? ft->short_first : len, offset);
        }
        ft->failures++;
        errno = ft->fail_errno;
        return -1;
    }
    if (ft->short_every && len > ft->short_every)
        len = ft->short_every;
    return pwrite(fd, buf, len, offset);
}

static int fault_fdatasync(void *ctx, int fd)
{
    faults *ft = ctx;
    if (ft->sync_fails) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

typedef struct fixture {
    char *tmp;
    wal *log;
    faults ft;
    wal_test_hooks hooks;
    wal_options options;
    wal_recovery_info info;
    char errbuf[512];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = ts_tmpdir_make();
    f->hooks =
        (wal_test_hooks){.pwrite = fault_pwrite, .fdatasync = fault_fdatasync, .ctx = &f->ft};
    f->options.test_hooks = &f->hooks;
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

static void expect_log(fixture *f, uint64_t last)
{
    assert_int_equal(wal_last_index(f->log), last);
    ts_collected *c;
    assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
    ts_expect_range(c, 1, last, 1);
    free(c);
}

/* A batch failing with `err_no` after part of it reached the file leaves
 * the log as it was; once the fault clears, appends work and recovery sees
 * exactly the good records. */
static void failed_batch_leaves_log_unchanged(fixture *f, int err_no, fl_err want)
{
    reopen(f);
    wal_hard_state hs1 = {.term = 1, .vote = 3, .commit = 5};
    wal_hard_state hs2 = {.term = 2, .vote = 4, .commit = 9};
    assert_int_equal(ts_append_range(f->log, 1, 10, 1, &hs1), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    const char *path = ts_segment_path(ts_wal_dir(f->tmp), 0);
    char seg[700];
    snprintf(seg, sizeof seg, "%s", path);
    uint64_t size = ts_file_size(seg);

    f->ft = (faults){.armed = true, .fail_errno = err_no, .short_first = 50};
    for (int attempt = 0; attempt < 3; attempt++) {
        assert_int_equal(ts_append_range(f->log, 11, 20, 1, &hs2), want);
        assert_int_equal(ts_file_size(seg), size); /* the partial write was cut off */
        expect_log(f, 10);
    }
    assert_true(f->ft.failures >= 3);
    assert_true(f->ft.short_done);

    f->ft.armed = false;
    assert_int_equal(ts_append_range(f->log, 11, 20, 1, &hs2), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    expect_log(f, 20);
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, 0);
    assert_int_equal(f->info.hard_state.commit, 9);
    expect_log(f, 20);
}

static void enospc_fails_cleanly(void **state)
{
    failed_batch_leaves_log_unchanged(*state, ENOSPC, FL_ERR_NOSPACE);
}

static void edquot_is_nospace(void **state)
{
    failed_batch_leaves_log_unchanged(*state, EDQUOT, FL_ERR_NOSPACE);
}

static void eio_fails_cleanly(void **state)
{
    failed_batch_leaves_log_unchanged(*state, EIO, FL_ERR_IO);
}

/* A failed batch that carried a hard state does not change the hard state
 * recovery reports. */
static void failed_hard_state_is_not_recovered(void **state)
{
    fixture *f = *state;
    reopen(f);
    wal_hard_state hs1 = {.term = 1, .vote = 3, .commit = 5};
    wal_hard_state hs2 = {.term = 2, .vote = 4, .commit = 9};
    assert_int_equal(ts_append_range(f->log, 1, 5, 1, &hs1), FL_OK);
    f->ft = (faults){.armed = true, .fail_errno = ENOSPC, .short_first = 10};
    assert_int_equal(wal_append_batch(f->log, NULL, 0, &hs2), FL_ERR_NOSPACE);
    f->ft.armed = false;
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    assert_int_equal(f->info.hard_state.term, 1);
    assert_int_equal(f->info.hard_state.commit, 5);
    expect_log(f, 5);
}

/* Short writes are continued, not mistaken for failures. */
static void short_writes_are_completed(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 700;
    reopen(f);
    f->ft.short_every = 7;
    for (uint64_t i = 1; i <= 40; i += 4)
        assert_int_equal(ts_append_range(f->log, i, i + 3, 1, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    assert_true(f->ft.writes > 100);
    f->ft.short_every = 0;
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, 0);
    expect_log(f, 40);
}

/* Running out of space while creating the next segment. */
static void enospc_during_roll(void **state)
{
    fixture *f = *state;
    f->options.segment_bytes_max = 400;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1, 8, 1, NULL), FL_OK);
    char names[16][64];
    size_t before = ts_list_segments(ts_wal_dir(f->tmp), names, 16);
    f->ft = (faults){.armed = true, .fail_errno = ENOSPC};
    assert_int_equal(ts_append_range(f->log, 9, 12, 1, NULL), FL_ERR_NOSPACE);
    assert_int_equal(ts_list_segments(ts_wal_dir(f->tmp), names, 16), before);
    expect_log(f, 8);
    f->ft.armed = false;
    assert_int_equal(ts_append_range(f->log, 9, 12, 1, NULL), FL_OK);
    assert_int_equal(ts_list_segments(ts_wal_dir(f->tmp), names, 16), before + 1);
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    expect_log(f, 12);
}

/* After a failed fdatasync the page cache is unknown: the handle refuses
 * further writes until reopened. */
static void failed_sync_is_sticky(void **state)
{
    fixture *f = *state;
    reopen(f);
    assert_int_equal(ts_append_range(f->log, 1, 5, 1, NULL), FL_OK);
    f->ft.sync_fails = true;
    assert_int_equal(wal_sync(f->log), FL_ERR_IO);
    f->ft.sync_fails = false;
    assert_int_equal(ts_append_range(f->log, 6, 6, 1, NULL), FL_ERR_IO);
    assert_int_equal(wal_sync(f->log), FL_ERR_IO);
    assert_int_equal(wal_last_index(f->log), 5);
    reopen(f);
    expect_log(f, 5);
    assert_int_equal(ts_append_range(f->log, 6, 6, 1, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(enospc_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(edquot_is_nospace, setup, teardown),
        cmocka_unit_test_setup_teardown(eio_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_hard_state_is_not_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(short_writes_are_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(enospc_during_roll, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_sync_is_sticky, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The store: applied index, persistence, batches, determinism, quota. */
#include "mvcc_test_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int setup(void **state)
{
    tstore *ts = calloc(1, sizeof *ts);
    ts_open(ts, NULL);
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    ts_close(*state);
    free(*state);
    return 0;
}

static void applied_index_persists(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1");
    ts_put(ts, "b", "2");
    assert_int_equal(mvcc_apply_noop(ts->store, 3), FL_OK);
    ts->next_index = 4;
    ts_compact(ts, 2);
    assert_int_equal(mvcc_applied_index(ts->store), 4);
    ts_reopen(ts);
    assert_int_equal(mvcc_applied_index(ts->store), 4);
    assert_int_equal(mvcc_current_revision(ts->store), 3);
    assert_int_equal(mvcc_compact_revision(ts->store), 2);
    char buf[8];
    assert_true(ts_get(ts, "b", 0, buf, sizeof buf, NULL));
    assert_string_equal(buf, "2");
}

static void index_rules(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1"); /* index 1 */
    /* Gaps are allowed (entries without a command), going back is not. */
    ts->next_index = 5;
    ts_put(ts, "a", "2");
    assert_int_equal(mvcc_applied_index(ts->store), 5);
    ts->next_index = 5;
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("a"), .value = B("3")}};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_INVALID);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_apply_noop(ts->store, 4), FL_ERR_INVALID);
    assert_int_equal(mvcc_current_revision(ts->store), 3);
}

static void corrupt_payload_advances_index_only(void **state)
{
    tstore *ts = *state;
    const uint8_t junk[] = {9, 9, 9};
    mvcc_response resp;
    assert_int_equal(mvcc_apply(ts->store, 1, junk, sizeof junk, &resp), FL_ERR_CORRUPT);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_apply(ts->store, 2, NULL, 0, &resp), FL_ERR_CORRUPT);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_applied_index(ts->store), 2);
    assert_int_equal(mvcc_current_revision(ts->store), 1);
}

static void batch_commit(void **state)
{
    tstore *ts = *state;
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    assert_int_equal(mvcc_batch_begin(ts->store), FL_ERR_INVALID);
    for (int i = 0; i < 50; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        assert_int_equal(ts_put(ts, key, "v"), 2 + i);
    }
    assert_int_equal(mvcc_apply_noop(ts->store, ts->next_index++), FL_OK);
    assert_int_equal(mvcc_applied_index(ts->store), 51);
    /* Readers see the last committed state until the batch commits. */
    char buf[8];
    assert_false(ts_get(ts, "k00", 0, buf, sizeof buf, NULL));
    assert_int_equal(mvcc_current_revision(ts->store), 1);
    assert_int_equal(mvcc_batch_commit(ts->store), FL_OK);
    assert_int_equal(mvcc_current_revision(ts->store), 51);
    assert_true(ts_get(ts, "k49", 0, buf, sizeof buf, NULL));
    assert_int_equal(mvcc_batch_commit(ts->store), FL_ERR_INVALID);
    ts_reopen(ts);
    assert_int_equal(mvcc_applied_index(ts->store), 51);
    assert_int_equal(mvcc_current_revision(ts->store), 51);
}

static void batch_abort_rolls_back(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "keep", "1");
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    ts_put(ts, "gone", "1");
    ts_put(ts, "keep", "2");
    ts_compact(ts, 2);
    mvcc_batch_abort(ts->store);
    assert_int_equal(mvcc_applied_index(ts->store), 1);
    assert_int_equal(mvcc_current_revision(ts->store), 2);
    assert_int_equal(mvcc_compact_revision(ts->store), 0);
    char buf[8];
    assert_false(ts_get(ts, "gone", 0, buf, sizeof buf, NULL));
    assert_true(ts_get(ts, "keep", 0, buf, sizeof buf, NULL));
    assert_string_equal(buf, "1");
    /* Replaying the same entries works. */
    ts->next_index = 2;
    assert_int_equal(ts_put(ts, "gone", "1"), 3);
    assert_int_equal(mvcc_applied_index(ts->store), 2);
}

/* A deterministic pseudo-random command mix. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void random_command(uint64_t *seed, mvcc_request *req, char *k1, char *k2, char *v,
                           mvcc_op *ops, mvcc_compare *cmp)
{
    snprintf(k1, 16, "key%02u", (unsigned)(rnd(seed) % 40));
    snprintf(k2, 16, "key%02u", (unsigned)(rnd(seed) % 40));
    snprintf(v, 16, "v%u", (unsigned)(rnd(seed) % 1000));
    memset(req, 0, sizeof *req);
    switch (rnd(seed) % 6) {
    case 0:
    case 1:
    case 2:
        req->type = MVCC_REQ_PUT;
        req->u.put = (mvcc_put_req){.key = B(k1), .value = B(v), .prev_kv = true};
        break;
    case 3:
        req->type = MVCC_REQ_DELETE;
        req->u.del = (mvcc_delete_req){.key = B(k1)};
        if (strcmp(k1, k2) < 0) {
            req->u.del.range_end = B(k2);
        }
        break;
    case 4:
        req->type = MVCC_REQ_TXN;
        *cmp = (mvcc_compare){
            .key = B(k1), .target = MVCC_CMP_VERSION, .result = MVCC_CMP_GREATER, .number = 1};
        ops[0] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(k2), .value = B(v)}};
        ops[1] = (mvcc_op){.type = MVCC_OP_RANGE, .u.range = {.key = B(k1)}};
        ops[2] = (mvcc_op){.type = MVCC_OP_DELETE, .u.del = {.key = B(k1)}};
        req->u.txn = (mvcc_txn_req){.compares = cmp,
                                    .compares_count = 1,
                                    .success = ops,
                                    .success_count = 2,
                                    .failure = ops + 2,
                                    .failure_count = 1};
        break;
    default:
        req->type = MVCC_REQ_COMPACT;
        req->u.compact.revision = (int64_t)(rnd(seed) % 400);
    }
}

static void same_commands_same_store(void **state)
{
    (void)state;
    tstore a, b;
    ts_open(&a, NULL);
    ts_open(&b, NULL);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    bool in_batch = false;
    for (int i = 0; i < 400; i++) {
        char k1[16], k2[16], v[16];
        mvcc_op ops[3];
        mvcc_compare cmp;
        mvcc_request req;
        random_command(&seed, &req, k1, k2, v, ops, &cmp);
        /* b applies in batches of varying size: same result expected. */
        if (!in_batch && i % 7 == 0) {
            assert_int_equal(mvcc_batch_begin(b.store), FL_OK);
            in_batch = true;
        }
        mvcc_response ra, rb;
        fl_err ea = ts_apply(&a, &req, &ra);
        fl_err eb = ts_apply(&b, &req, &rb);
        assert_int_equal(ea, eb);
        assert_int_equal(ra.revision, rb.revision);
        mvcc_response_free(&ra);
        mvcc_response_free(&rb);
        if (in_batch && i % 5 == 0) {
            assert_int_equal(mvcc_batch_commit(b.store), FL_OK);
            in_batch = false;
        }
    }
    if (in_batch) {
        assert_int_equal(mvcc_batch_commit(b.store), FL_OK);
    }
    assert_true(mvcc_current_revision(a.store) > 100);
    char *da = ts_dump(&a);
    char *db = ts_dump(&b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    /* And the same after reopening one of them. */
    ts_reopen(&b);
    da = ts_dump(&a);
    db = ts_dump(&b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    ts_close(&a);
    ts_close(&b);
}

static void quota_exceeded(void **state)
{
    (void)state;
    tstore ts;
    mvcc_options opt = {.quota_bytes = 256 * 1024};
    ts_open(&ts, &opt);
    static char value[8192];
    memset(value, 'v', sizeof value - 1);
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("k"), .value = B(value)}};
    mvcc_response resp;
    fl_err err = FL_OK;
    int puts = 0;
    while (err == FL_OK && puts < 1000) {
        err = ts_apply(&ts, &req, &resp);
        mvcc_response_free(&resp);
        puts += err == FL_OK;
    }
    assert_int_equal(err, FL_ERR_NO_SPACE_QUOTA);
    assert_true(puts > 5);
    int64_t rev = mvcc_current_revision(ts.store);
    assert_int_equal(rev, 1 + puts);
    assert_int_equal(mvcc_applied_index(ts.store), (uint64_t)puts + 1);
    /* Deletes and compaction still work, and free the space. */
    assert_int_equal(ts_compact(&ts, rev), FL_OK);
    assert_int_equal(ts_apply(&ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    ts_close(&ts);
}

/* A full LMDB map is a store failure: the entry is not recorded as applied
 * (another member with more room would apply it), the error is FL_ERR_IO,
 * and the store is left as it was, outside a batch and inside one. */
static void map_full_is_store_failure(void **state)
{
    (void)state;
    tstore ts;
    mvcc_options opt = {.map_size_bytes = 1 << 20, .quota_bytes = 1ull << 40};
    ts_open(&ts, &opt);
    static char value[64 * 1024];
    memset(value, 'v', sizeof value - 1);
    char key[16];
    mvcc_response resp;
    fl_err err = FL_OK;
    int i = 0;
    for (; i < 100 && err == FL_OK; i++) {
        snprintf(key, sizeof key, "k%d", i);
        mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B(key), .value = B(value)}};
        err = ts_apply(&ts, &req, &resp);
        mvcc_response_free(&resp);
    }
    assert_int_equal(err, FL_ERR_IO);
    /* The failed entry (index i) is not applied; the store still reads. */
    assert_int_equal(mvcc_applied_index(ts.store), (uint64_t)i - 1);
    assert_int_equal(mvcc_current_revision(ts.store), i);
    char buf[8];
    assert_false(ts_get(&ts, key, 0, buf, sizeof buf, NULL));
    static char big[sizeof value];
    assert_true(ts_get(&ts, "k0", 0, big, sizeof big, NULL));
    assert_string_equal(big, value);
    ts.next_index = (uint64_t)i;
    ts_del(&ts, "k0", NULL);

    /* Inside a batch a full map poisons the batch. */
    assert_int_equal(mvcc_batch_begin(ts.store), FL_OK);
    uint64_t applied = mvcc_applied_index(ts.store);
    err = FL_OK;
    for (int j = 0; j < 100 && err == FL_OK; j++) {
        snprintf(key, sizeof key, "b%d", j);
        mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B(key), .value = B(value)}};
        err = ts_apply(&ts, &req, &resp);
        mvcc_response_free(&resp);
    }
    assert_int_equal(err, FL_ERR_IO);
    assert_int_equal(mvcc_apply_noop(ts.store, ts.next_index++), FL_ERR_IO);
    assert_int_equal(mvcc_put_meta(ts.store, "x", "y", 1), FL_ERR_IO);
    assert_int_equal(mvcc_batch_commit(ts.store), FL_ERR_IO);
    assert_int_equal(mvcc_applied_index(ts.store), applied);
    assert_false(ts_get(&ts, "b0", 0, buf, sizeof buf, NULL));
    ts.next_index = applied + 1;
    ts_put(&ts, "small", "ok");
    ts_close(&ts);
}

static void free_is_safe_on_zeroed_and_twice(void **state)
{
    (void)state;
    mvcc_range_result r = {0};
    mvcc_range_result_free(&r);
    mvcc_range_result_free(&r);
    mvcc_response resp = {0};
    mvcc_response_free(&resp);
    mvcc_response_free(&resp);
    mvcc_range_result_free(NULL);
    mvcc_response_free(NULL);
    mvcc_close(NULL);
}

static void db_size_reports(void **state)
{
    tstore *ts = *state;
    int64_t size0, use0, size1, use1;
    mvcc_db_size(ts->store, &size0, &use0);
    assert_true(size0 > 0 && use0 > 0);
    static char value[100000];
    memset(value, 'x', sizeof value - 1);
    ts_put(ts, "big", value);
    mvcc_db_size(ts->store, &size1, &use1);
    assert_true(use1 >= use0 + (int64_t)sizeof value - 4096);
    assert_true(size1 >= use1);
}

/* A write error at commit (here: the file may not grow, RLIMIT_FSIZE, as a
 * full disk would refuse it) rolls back and leaves the store usable. */
static void commit_failure_rolls_back(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1");
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", ts->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit tight = {.rlim_cur = (rlim_t)st.st_size, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tight), 0);

    static char big[256 * 1024];
    memset(big, 'b', sizeof big - 1);
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("big"), .value = B(big)}};
    mvcc_response resp;
    /* Outside a batch: the apply itself fails and the index stays. */
    fl_err err = ts_apply(ts, &req, &resp);
    mvcc_response_free(&resp);
    assert_true(err == FL_ERR_IO || err == FL_ERR_NOSPACE);
    assert_int_equal(mvcc_applied_index(ts->store), 1);
    /* In a batch: the applies succeed, the commit fails, all is rolled back. */
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    ts->next_index = 2;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_apply_noop(ts->store, ts->next_index++), FL_OK);
    err = mvcc_batch_commit(ts->store);
    assert_true(err == FL_ERR_IO || err == FL_ERR_NOSPACE);
    assert_int_equal(mvcc_applied_index(ts->store), 1);
    assert_int_equal(mvcc_current_revision(ts->store), 2);

    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    /* Replaying the same entries now works. */
    ts->next_index = 2;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, 3);
    mvcc_response_free(&resp);
    char buf[8];
    assert_true(ts_get(ts, "a", 0, buf, sizeof buf, NULL));
    ts_reopen(ts);
    assert_int_equal(mvcc_applied_index(ts->store), 2);
    assert_int_equal(mvcc_current_revision(ts->store), 3);
}

/* A really full file system (a small tmpfs mounted here; needs root). LMDB
 * reports its short page write as EIO; mvcc must call it FL_ERR_NOSPACE so
 * that the server waits for space instead of giving up, and the store must
 * work again once there is room. */
static char full_dir[64];
static bool full_mounted;

static int full_teardown(void **state)
{
    tstore *ts = *state;
    if (ts != NULL) {
        mvcc_close(ts->store);
        free(ts);
    }
    if (full_mounted) {
        umount2(full_dir, MNT_DETACH);
        full_mounted = false;
    }
    if (full_dir[0]) {
        rmdir(full_dir);
        full_dir[0] = 0;
    }
    return 0;
}

static void full_disk_is_nospace(void **state)
{
    *state = NULL;
    snprintf(full_dir, sizeof full_dir, "/tmp/mvcc-full-XXXXXX");
    assert_non_null(mkdtemp(full_dir));
    if (geteuid() != 0 || mount("tmpfs", full_dir, "tmpfs", 0, "size=1m") != 0) {
        const char *skip_env = getenv("FLOTILLA_SKIP_PRIVILEGED");
        if (skip_env && strcmp(skip_env, "1") == 0) {
            printf("SKIP: full_disk_is_nospace needs root to mount a tmpfs\n");
            skip();
        }
        fail_msg("full_disk_is_nospace needs root to mount a tmpfs at %s (set "
                 "FLOTILLA_SKIP_PRIVILEGED=1 to skip)",
                 full_dir);
    }
    full_mounted = true;
    tstore *ts = calloc(1, sizeof *ts);
    assert_non_null(ts);
    *state = ts;
    snprintf(ts->dir, sizeof ts->dir, "%s", full_dir);
    mvcc_options opt = {.map_size_bytes = 64 << 20, .quota_bytes = 1ull << 40};
    assert_int_equal(mvcc_open(ts->dir, &opt, &ts->store), FL_OK);
    ts->next_index = 1;

    static char value[100 * 1024];
    memset(value, 'v', sizeof value - 1);
    char key[16];
    mvcc_response resp;
    fl_err err = FL_OK;
    int i = 0;
    for (; i < 40; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B(key), .value = B(value)}};
        err = ts_apply(ts, &req, &resp);
        mvcc_response_free(&resp);
        if (err != FL_OK)
            break;
    }
    assert_true(i > 0 && i < 40);
    assert_int_equal(err, FL_ERR_NOSPACE); /* was FL_ERR_IO */
    assert_int_equal(mvcc_applied_index(ts->store), (uint64_t)i);
    /* the same in a batch: the commit is where it fails */
    ts->next_index = (uint64_t)i + 1;
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B(key), .value = B(value)}};
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_batch_commit(ts->store), FL_ERR_NOSPACE);
    assert_int_equal(mvcc_applied_index(ts->store), (uint64_t)i);
    char buf[8];
    assert_false(ts_get(ts, key, 0, buf, sizeof buf, NULL));
    /* earlier keys still read */
    mvcc_range_req all = {.key = B("k"), .range_end = B("l"), .count_only = true};
    mvcc_range_result res;
    assert_int_equal(ts_range(ts, &all, &res), FL_OK);
    assert_int_equal(res.count, i);
    mvcc_range_result_free(&res);

    /* room again: the same entry applies, and survives a reopen */
    assert_int_equal(mount("tmpfs", full_dir, "tmpfs", MS_REMOUNT, "size=8m"), 0);
    ts->next_index = (uint64_t)i + 1;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, i + 2);
    mvcc_response_free(&resp);
    mvcc_close(ts->store);
    ts->store = NULL;
    assert_int_equal(mvcc_open(ts->dir, &opt, &ts->store), FL_OK);
    assert_int_equal(mvcc_applied_index(ts->store), (uint64_t)i + 1);
    assert_int_equal(mvcc_current_revision(ts->store), i + 2);
    for (int j = 0; j <= i; j++) {
        snprintf(key, sizeof key, "k%02d", j);
        mvcc_range_req rr = {.key = B(key)};
        assert_int_equal(ts_range(ts, &rr, &res), FL_OK);
        assert_int_equal(res.kvs_count, 1);
        assert_int_equal(res.kvs[0].mod_revision, j + 2);
        assert_int_equal(res.kvs[0].value.len, sizeof value - 1);
        mvcc_range_result_free(&res);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(applied_index_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(index_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_payload_advances_index_only, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_abort_rolls_back, setup, teardown),
        cmocka_unit_test(same_commands_same_store),
        cmocka_unit_test(quota_exceeded),
        cmocka_unit_test(map_full_is_store_failure),
        cmocka_unit_test(free_is_safe_on_zeroed_and_twice),
        cmocka_unit_test_setup_teardown(db_size_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_failure_rolls_back, setup, teardown),
        cmocka_unit_test_teardown(full_disk_is_nospace, full_teardown),
    };
    return cmocka_run_group_tests_name("mvcc.store", tests, NULL, NULL);
}

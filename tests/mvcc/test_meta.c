/* Server metadata (mvcc_put_meta / mvcc_get_meta) and the logical quota. */
#include "mvcc_test_util.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>

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

static void expect_meta(tstore *ts, const char *name, const char *want)
{
    void *v = NULL;
    size_t len = 0;
    fl_err err = mvcc_get_meta(ts->store, name, &v, &len);
    if (want == NULL) {
        assert_int_equal(err, FL_ERR_NOT_FOUND);
        assert_null(v);
        return;
    }
    assert_int_equal(err, FL_OK);
    assert_non_null(v);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

static void meta_roundtrip_and_persist(void **state)
{
    tstore *ts = *state;
    expect_meta(ts, "term", NULL);
    assert_int_equal(mvcc_put_meta(ts->store, "term", "7", 1), FL_OK);
    assert_int_equal(mvcc_put_meta(ts->store, "members", "a,b,c", 5), FL_OK);
    assert_int_equal(mvcc_put_meta(ts->store, "empty", NULL, 0), FL_OK);
    /* not an entry: the applied index does not move */
    assert_int_equal(mvcc_applied_index(ts->store), 0);
    ts_put(ts, "k", "v");
    assert_int_equal(mvcc_put_meta(ts->store, "term", "8", 1), FL_OK);
    ts_reopen(ts);
    expect_meta(ts, "term", "8");
    expect_meta(ts, "members", "a,b,c");
    expect_meta(ts, "empty", "");
    assert_int_equal(mvcc_applied_index(ts->store), 1);
    /* metadata is not user data: no key appears */
    mvcc_range_req req = {.key = B0, .range_end = B0};
    mvcc_range_result res;
    assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
    assert_int_equal(res.count, 1);
    mvcc_range_result_free(&res);
    /* the store's own state record is not reachable under a meta name */
    expect_meta(ts, "state", NULL);
}

static void meta_rejects_bad_arguments(void **state)
{
    tstore *ts = *state;
    static char big[(64 << 10) + 1];
    assert_int_equal(mvcc_put_meta(ts->store, "", "x", 1), FL_ERR_INVALID);
    assert_int_equal(mvcc_put_meta(ts->store, NULL, "x", 1), FL_ERR_INVALID);
    assert_int_equal(mvcc_put_meta(ts->store, "big", big, sizeof big), FL_ERR_INVALID);
    assert_int_equal(mvcc_put_meta(ts->store, "max", big, sizeof big - 1), FL_OK);
    char name[202];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    assert_int_equal(mvcc_put_meta(ts->store, name, "x", 1), FL_ERR_INVALID);
    name[200] = 0;
    assert_int_equal(mvcc_put_meta(ts->store, name, "x", 1), FL_OK);
    expect_meta(ts, name, "x");
}

/* In a batch, meta commits and rolls back with the applies. */
static void meta_follows_the_batch(void **state)
{
    tstore *ts = *state;
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    ts_put(ts, "a", "1");
    assert_int_equal(mvcc_put_meta(ts->store, "term", "2", 1), FL_OK);
    expect_meta(ts, "term", "2"); /* the applier sees its own batch */
    assert_int_equal(mvcc_batch_commit(ts->store), FL_OK);
    expect_meta(ts, "term", "2");

    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    ts_put(ts, "a", "2");
    assert_int_equal(mvcc_put_meta(ts->store, "term", "3", 1), FL_OK);
    mvcc_batch_abort(ts->store);
    expect_meta(ts, "term", "2");
    assert_int_equal(mvcc_applied_index(ts->store), 1);
}

/* Logical bytes of a put of a 1-byte key: 29 + 1 + value + 33 + 64. */
#define PUT_BYTES(vlen) (127u + (vlen))

/* The quota counts logical bytes exactly: with room for exactly n puts the
 * n+1st fails, whatever the batching, and after a restart, and compaction
 * gives the bytes of the removed versions back. */
static void quota_is_logical_and_exact(void **state)
{
    (void)state;
    static char value[1001];
    memset(value, 'v', 1000);
    const uint64_t c = PUT_BYTES(1000);
    for (int batched = 0; batched < 2; batched++) {
        tstore ts;
        mvcc_options opt = {.quota_bytes = 10 * c + 1};
        ts_open(&ts, &opt);
        mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("k"), .value = B(value)}};
        mvcc_response resp;
        if (batched) {
            assert_int_equal(mvcc_batch_begin(ts.store), FL_OK);
        }
        int ok = 0;
        fl_err err = FL_OK;
        for (int i = 0; i < 20; i++) {
            err = ts_apply(&ts, &req, &resp);
            mvcc_response_free(&resp);
            if (err != FL_OK) {
                break;
            }
            ok++;
        }
        if (batched) {
            assert_int_equal(mvcc_batch_commit(ts.store), FL_OK);
        }
        printf("batched=%d puts accepted=%d\n", batched, ok);
        assert_int_equal(err, FL_ERR_NO_SPACE_QUOTA);
        assert_int_equal(ok, 10);
        /* refused, but applied (every member refuses it) */
        assert_int_equal(mvcc_applied_index(ts.store), 11);
        assert_int_equal(mvcc_current_revision(ts.store), 11);
        /* a delete is not held to the quota */
        ts_del(&ts, "k", NULL); /* + a tombstone of 127 bytes */
        ts_reopen(&ts);         /* the count survives a restart (it is in the state) */
        mvcc_close(ts.store);
        assert_int_equal(mvcc_open(ts.dir, &opt, &ts.store), FL_OK);
        assert_int_equal(ts_apply(&ts, &req, &resp), FL_ERR_NO_SPACE_QUOTA);
        /* compaction at the tombstone removes all 10 puts and the tombstone */
        assert_int_equal(ts_compact(&ts, mvcc_current_revision(ts.store)), FL_OK);
        for (int i = 0; i < 10; i++) {
            assert_int_equal(ts_apply(&ts, &req, &resp), FL_OK);
            mvcc_response_free(&resp);
        }
        assert_int_equal(ts_apply(&ts, &req, &resp), FL_ERR_NO_SPACE_QUOTA);
        ts_close(&ts);
    }
}

/* A store written in format 1 (no logical byte count) is upgraded at open:
 * the count is recomputed, so the quota behaves as if it had been kept. */
static void format1_store_is_upgraded(void **state)
{
    (void)state;
    static char value[1001];
    memset(value, 'v', 1000);
    const uint64_t c = PUT_BYTES(1000);
    tstore ts;
    mvcc_options opt = {.quota_bytes = 10 * c + 1};
    ts_open(&ts, &opt);
    for (int i = 0; i < 7; i++) {
        ts_put(&ts, "k", value);
    }
    mvcc_close(ts.store);
    ts.store = NULL;
    /* Rewrite the state record as format 1 wrote it: 52 bytes, format 1. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, ts.dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {5, (void *)"state"}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_int_equal(v.mv_size, 60);
    uint8_t old[52];
    memcpy(old, v.mv_data, sizeof old);
    old[3] = 1;
    MDB_val nv = {sizeof old, old};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(mvcc_open(ts.dir, &opt, &ts.store), FL_OK);
    ts.next_index = mvcc_applied_index(ts.store) + 1;
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("k"), .value = B(value)}};
    mvcc_response resp;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ts_apply(&ts, &req, &resp), FL_OK);
        mvcc_response_free(&resp);
    }
    assert_int_equal(ts_apply(&ts, &req, &resp), FL_ERR_NO_SPACE_QUOTA);
    ts_close(&ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(meta_roundtrip_and_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(meta_rejects_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(meta_follows_the_batch, setup, teardown),
        cmocka_unit_test(quota_is_logical_and_exact),
        cmocka_unit_test(format1_store_is_upgraded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

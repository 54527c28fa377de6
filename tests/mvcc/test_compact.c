/* Compact: what goes, what stays, errors, and its cost bound. */
#include "mvcc_test_util.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>

static int setup(void **state)
{
    tstore *ts = calloc(1, sizeof *ts);
    ts_open(ts, NULL);
    ts_put(ts, "a", "1");  /* 2 */
    ts_put(ts, "b", "1");  /* 3 */
    ts_put(ts, "a", "2");  /* 4 */
    ts_del(ts, "b", NULL); /* 5 */
    ts_put(ts, "c", "1");  /* 6 */
    ts_put(ts, "a", "3");  /* 7 */
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    ts_close(*state);
    free(*state);
    return 0;
}

static fl_err range_at(tstore *ts, const char *key, const char *end, int64_t rev,
                       mvcc_range_result *res)
{
    mvcc_range_req req = {.key = B(key), .revision = rev};
    if (end != NULL) {
        req.range_end = end[0] ? B(end) : B0;
    }
    return mvcc_range(ts->store, &req, res);
}

static void old_versions_are_gone(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_COMPACT, .u.compact = {.revision = 5}};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, 7); /* compaction does not bump */
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_compact_revision(ts->store), 5);
    assert_int_equal(mvcc_current_revision(ts->store), 7);
    mvcc_range_result res;
    assert_int_equal(range_at(ts, "a", NULL, 4, &res), FL_ERR_COMPACTED);
    mvcc_range_result_free(&res);
    /* At rev 5: a=2 (the newest at 5) is kept, b's tombstone removed it. */
    assert_int_equal(range_at(ts, "a", "", 5, &res), FL_OK);
    assert_keys(&res, (const char *[]){"a", NULL});
    assert_memory_equal(res.kvs[0].value.data, "2", 1);
    assert_int_equal(res.kvs[0].version, 2);
    mvcc_range_result_free(&res);
    assert_int_equal(range_at(ts, "a", "", 6, &res), FL_OK);
    assert_keys(&res, (const char *[]){"a", "c", NULL});
    mvcc_range_result_free(&res);
    char buf[8];
    mvcc_kv meta;
    assert_true(ts_get(ts, "a", 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "3");
    assert_int_equal(meta.version, 3);
    assert_int_equal(meta.create_revision, 2);
    /* b comes back as a new key. */
    ts_put(ts, "b", "new");
    assert_true(ts_get(ts, "b", 0, buf, sizeof buf, &meta));
    assert_int_equal(meta.version, 1);
    assert_int_equal(meta.create_revision, 8);
}

/* Counts the records of the named LMDB DB in the closed store's dir. */
static size_t count_entries(const char *dir, const char *name)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return st.ms_entries;
}

static void records_are_physically_removed(void **state)
{
    tstore *ts = *state;
    mvcc_close(ts->store);
    ts->store = NULL;
    assert_int_equal(count_entries(ts->dir, "rev"), 6);
    assert_int_equal(count_entries(ts->dir, "kidx"), 6);
    ts_reopen(ts);
    assert_int_equal(ts_compact(ts, 6), FL_OK);
    mvcc_close(ts->store);
    ts->store = NULL;
    /* Left: a@4 (newest at 6), a@7, c@6. b (tombstone at 5) is gone. */
    assert_int_equal(count_entries(ts->dir, "rev"), 3);
    assert_int_equal(count_entries(ts->dir, "kidx"), 3);
    ts_reopen(ts);
    assert_int_equal(ts_compact(ts, 7), FL_OK);
    mvcc_close(ts->store);
    ts->store = NULL;
    assert_int_equal(count_entries(ts->dir, "rev"), 2);
    ts_reopen(ts);
}

static void compacted_space_is_reused(void **state)
{
    tstore *ts = *state;
    char value[2000];
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = 0;
    for (int i = 0; i < 300; i++) {
        ts_put(ts, "hot", value);
    }
    int64_t size, in_use_before, in_use_after;
    mvcc_db_size(ts->store, &size, &in_use_before);
    assert_true(size >= in_use_before);
    assert_int_equal(ts_compact(ts, mvcc_current_revision(ts->store)), FL_OK);
    mvcc_db_size(ts->store, &size, &in_use_after);
    assert_true(in_use_after * 4 < in_use_before);
    char buf[2048];
    assert_true(ts_get(ts, "hot", 0, buf, sizeof buf, NULL));
    assert_string_equal(buf, value);
}

static void errors(void **state)
{
    tstore *ts = *state;
    assert_int_equal(ts_compact(ts, 8), FL_ERR_FUTURE_REV);
    assert_int_equal(ts_compact(ts, 4), FL_OK);
    assert_int_equal(ts_compact(ts, 4), FL_ERR_COMPACTED);
    assert_int_equal(ts_compact(ts, 3), FL_ERR_COMPACTED);
    assert_int_equal(ts_compact(ts, 7), FL_OK);
    assert_int_equal(mvcc_compact_revision(ts->store), 7);
    /* A failed compaction still counts as an applied entry. */
    uint64_t applied = mvcc_applied_index(ts->store);
    assert_int_equal(ts_compact(ts, 7), FL_ERR_COMPACTED);
    assert_int_equal(mvcc_applied_index(ts->store), applied + 1);
}

static void new_store_compacts_zero_once(void **state)
{
    (void)state;
    tstore ts;
    ts_open(&ts, NULL);
    assert_int_equal(ts_compact(&ts, -1), FL_ERR_COMPACTED);
    assert_int_equal(ts_compact(&ts, 0), FL_OK); /* as etcd */
    assert_int_equal(ts_compact(&ts, 0), FL_ERR_COMPACTED);
    assert_int_equal(ts_compact(&ts, 1), FL_OK);
    assert_int_equal(ts_compact(&ts, 2), FL_ERR_FUTURE_REV);
    ts_close(&ts);
}

static void repeated_compactions_keep_the_latest(void **state)
{
    tstore *ts = *state;
    /* Interleave writes and compactions; the state at the compact revision
     * and after must match an uncompacted twin. */
    tstore twin;
    ts_open(&twin, NULL);
    ts_put(&twin, "a", "1");
    ts_put(&twin, "b", "1");
    ts_put(&twin, "a", "2");
    ts_del(&twin, "b", NULL);
    ts_put(&twin, "c", "1");
    ts_put(&twin, "a", "3");
    for (int round = 0; round < 20; round++) {
        char key[8], value[8];
        snprintf(key, sizeof key, "k%d", round % 5);
        snprintf(value, sizeof value, "%d", round);
        ts_put(ts, key, value);
        ts_put(&twin, key, value);
        if (round % 3 == 0) {
            ts_del(ts, "k1", NULL);
            ts_del(&twin, "k1", NULL);
        }
        int64_t cur = mvcc_current_revision(ts->store);
        assert_int_equal(ts_compact(ts, cur - 1), FL_OK);
        for (int64_t rev = cur - 1; rev <= cur; rev++) {
            mvcc_range_result a, b;
            assert_int_equal(range_at(ts, "\x01", "", rev, &a), FL_OK);
            assert_int_equal(range_at(&twin, "\x01", "", rev, &b), FL_OK);
            assert_int_equal(a.kvs_count, b.kvs_count);
            for (size_t i = 0; i < a.kvs_count; i++) {
                assert_int_equal(a.kvs[i].key.len, b.kvs[i].key.len);
                assert_memory_equal(a.kvs[i].key.data, b.kvs[i].key.data, a.kvs[i].key.len);
                assert_int_equal(a.kvs[i].value.len, b.kvs[i].value.len);
                assert_int_equal(a.kvs[i].version, b.kvs[i].version);
                assert_int_equal(a.kvs[i].create_revision, b.kvs[i].create_revision);
                assert_int_equal(a.kvs[i].mod_revision, b.kvs[i].mod_revision);
            }
            mvcc_range_result_free(&a);
            mvcc_range_result_free(&b);
        }
    }
    ts_close(&twin);
}

static size_t count_open(tstore *ts, const char *name)
{
    mvcc_close(ts->store);
    ts->store = NULL;
    size_t n = count_entries(ts->dir, name);
    ts_reopen(ts);
    return n;
}

/* Physical compaction in tiny steps must give the same answers at every
 * point, and the same final store, as compaction in one go. */
static void compaction_in_small_steps(void **state)
{
    (void)state;
    tstore slow, fast;
    mvcc_options tiny = {.compact_chunk = 3}; /* 3 units, then 1 per entry */
    ts_open(&slow, &tiny);
    ts_open(&fast, NULL);
    tstore *both[2] = {&slow, &fast};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 40; i++) {
            ts_put(both[s], "hot", i % 2 ? "odd" : "even");
        }
        for (int i = 0; i < 8; i++) {
            char key[8];
            snprintf(key, sizeof key, "x%d", i);
            ts_put(both[s], key, "v");
            ts_put(both[s], key, "w");
        }
        ts_del(both[s], "x", "y"); /* tombstones for x0..x7 */
        ts_put(both[s], "x3", "back");
    }
    int64_t cur = mvcc_current_revision(slow.store);
    assert_int_equal(cur, mvcc_current_revision(fast.store));
    assert_int_equal(ts_compact(&slow, cur - 1), FL_OK);
    assert_int_equal(ts_compact(&fast, cur - 1), FL_OK);
    /* Logically compacted at once. */
    char *ds = ts_dump(&slow);
    char *df = ts_dump(&fast);
    assert_string_equal(ds, df);
    free(ds);
    free(df);
    mvcc_range_result res;
    assert_int_equal(range_at(&slow, "hot", NULL, cur - 2, &res), FL_ERR_COMPACTED);
    mvcc_range_result_free(&res);
    /* Physically not yet. */
    size_t fast_rev = count_open(&fast, "rev");
    size_t slow_rev = count_open(&slow, "rev");
    assert_true(slow_rev > fast_rev);
    assert_true(mvcc_compaction_pending(slow.store));
    assert_false(mvcc_compaction_pending(fast.store));
    /* Writes and a second compaction while the walk is pending. */
    for (int s = 0; s < 2; s++) {
        ts_put(both[s], "hot", "later");
        ts_put(both[s], "x5", "later");
        ts_del(both[s], "x3", NULL);
    }
    cur = mvcc_current_revision(slow.store);
    assert_int_equal(ts_compact(&slow, cur), FL_OK);
    assert_int_equal(ts_compact(&fast, cur), FL_OK);
    size_t prev = SIZE_MAX;
    for (int round = 0; round < 200; round++) {
        assert_int_equal(mvcc_apply_noop(slow.store, slow.next_index++), FL_OK);
        if (round % 20 == 19) {
            size_t now = count_open(&slow, "rev");
            assert_true(now <= prev);
            prev = now;
            ds = ts_dump(&slow);
            df = ts_dump(&fast);
            /* the applied index differs (the noops): compare the rest */
            assert_string_equal(strchr(ds, '\n'), strchr(df, '\n'));
            free(ds);
            free(df);
        }
    }
    assert_false(mvcc_compaction_pending(slow.store));
    assert_int_equal(count_open(&slow, "rev"), count_open(&fast, "rev"));
    assert_int_equal(count_open(&slow, "kidx"), count_open(&fast, "kidx"));
    /* hot, x0..x7 minus deleted ones: hot, x5 live -> 2 records. */
    assert_int_equal(count_open(&fast, "rev"), 2);
    ts_close(&slow);
    ts_close(&fast);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(old_versions_are_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(records_are_physically_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(compacted_space_is_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(errors, setup, teardown),
        cmocka_unit_test(new_store_compacts_zero_once),
        cmocka_unit_test_setup_teardown(repeated_compactions_keep_the_latest, setup, teardown),
        cmocka_unit_test(compaction_in_small_steps),
    };
    return cmocka_run_group_tests_name("mvcc.compact", tests, NULL, NULL);
}

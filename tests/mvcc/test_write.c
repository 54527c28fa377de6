/* Put and DeleteRange: options and the revision/version bookkeeping. */
#include "mvcc_test_util.h"

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

static void put_bumps_revision_and_version(void **state)
{
    tstore *ts = *state;
    assert_int_equal(ts_put(ts, "k", "v1"), 2);
    assert_int_equal(ts_put(ts, "k", "v1"), 3); /* same value still changes */
    assert_int_equal(ts_put(ts, "other", "x"), 4);
    assert_int_equal(ts_put(ts, "k", "v3"), 5);
    char buf[16];
    mvcc_kv meta;
    assert_true(ts_get(ts, "k", 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "v3");
    assert_int_equal(meta.create_revision, 2);
    assert_int_equal(meta.mod_revision, 5);
    assert_int_equal(meta.version, 3);
    assert_int_equal(mvcc_current_revision(ts->store), 5);
}

static void delete_and_recreate_resets_version(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "k", "a"); /* 2 */
    ts_put(ts, "k", "b"); /* 3 */
    assert_int_equal(ts_del(ts, "k", NULL), 4);
    char buf[16];
    assert_false(ts_get(ts, "k", 0, buf, sizeof buf, NULL));
    assert_int_equal(ts_put(ts, "k", "c"), 5);
    mvcc_kv meta;
    assert_true(ts_get(ts, "k", 0, buf, sizeof buf, &meta));
    assert_int_equal(meta.version, 1);
    assert_int_equal(meta.create_revision, 5);
    assert_int_equal(meta.mod_revision, 5);
    /* History before the delete is intact. */
    assert_true(ts_get(ts, "k", 3, buf, sizeof buf, &meta));
    assert_string_equal(buf, "b");
    assert_int_equal(meta.version, 2);
    assert_int_equal(meta.create_revision, 2);
    assert_false(ts_get(ts, "k", 4, buf, sizeof buf, NULL));
}

static void delete_of_nothing_keeps_revision(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1");
    mvcc_request req = {.type = MVCC_REQ_DELETE};
    req.u.del.key = B("zzz");
    req.u.del.prev_kv = true;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, 2);
    assert_int_equal(resp.u.del.deleted, 0);
    assert_int_equal(resp.u.del.prev_kvs_count, 0);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_current_revision(ts->store), 2);
    assert_int_equal(mvcc_applied_index(ts->store), 2);
}

static void delete_range_prefix_from_key_with_prev_kv(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1");
    ts_put(ts, "b/1", "2");
    ts_put(ts, "b/2", "3");
    ts_put(ts, "c", "4");
    mvcc_request req = {.type = MVCC_REQ_DELETE};
    req.u.del.key = B("b/");
    req.u.del.range_end = B("b0");
    req.u.del.prev_kv = true;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, 6);
    assert_int_equal(resp.u.del.deleted, 2);
    assert_int_equal(resp.u.del.prev_kvs_count, 2);
    assert_memory_equal(resp.u.del.prev_kvs[0].key.data, "b/1", 3);
    assert_memory_equal(resp.u.del.prev_kvs[1].value.data, "3", 1);
    assert_int_equal(resp.u.del.prev_kvs[1].mod_revision, 4);
    mvcc_response_free(&resp);

    /* from-key: everything >= "b" */
    req.u.del.key = B("b");
    req.u.del.range_end = B0;
    req.u.del.prev_kv = false;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.u.del.deleted, 1); /* only c is left there */
    assert_int_equal(resp.u.del.prev_kvs_count, 0);
    assert_int_equal(resp.revision, 7);
    mvcc_response_free(&resp);
    char buf[8];
    assert_true(ts_get(ts, "a", 0, buf, sizeof buf, NULL));
    assert_false(ts_get(ts, "c", 0, buf, sizeof buf, NULL));

    /* Deletes in one command share the main revision with sub revisions. */
    ts_put(ts, "x1", "1");
    ts_put(ts, "x2", "1");
    req.u.del.key = B0;
    req.u.del.range_end = B0;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.u.del.deleted, 3);
    assert_int_equal(resp.revision, 10);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_current_revision(ts->store), 10);
}

static void put_prev_kv(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B("k");
    req.u.put.value = B("one");
    req.u.put.prev_kv = true;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_false(resp.u.put.has_prev_kv);
    mvcc_response_free(&resp);
    req.u.put.value = B("two");
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_true(resp.u.put.has_prev_kv);
    assert_int_equal(resp.u.put.prev_kv.value.len, 3);
    assert_memory_equal(resp.u.put.prev_kv.value.data, "one", 3);
    assert_memory_equal(resp.u.put.prev_kv.key.data, "k", 1);
    assert_int_equal(resp.u.put.prev_kv.mod_revision, 2);
    assert_int_equal(resp.u.put.prev_kv.version, 1);
    assert_int_equal(resp.revision, 3);
    mvcc_response_free(&resp);
}

static void put_ignore_value(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B("k");
    req.u.put.ignore_value = true;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_NOT_FOUND);
    mvcc_response_free(&resp);
    /* The failed entry still counts as applied; the revision did not move. */
    assert_int_equal(mvcc_applied_index(ts->store), 1);
    assert_int_equal(mvcc_current_revision(ts->store), 1);
    ts_put(ts, "k", "kept");
    req.u.put.prev_kv = true;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_true(resp.u.put.has_prev_kv);
    assert_int_equal(resp.revision, 3);
    mvcc_response_free(&resp);
    char buf[16];
    mvcc_kv meta;
    assert_true(ts_get(ts, "k", 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "kept");
    assert_int_equal(meta.version, 2);
    assert_int_equal(meta.mod_revision, 3);
}

static void put_ignore_lease(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B("k");
    req.u.put.value = B("v");
    req.u.put.ignore_lease = true;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_NOT_FOUND);
    mvcc_response_free(&resp);
    ts_put(ts, "k", "a");
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    char buf[16];
    mvcc_kv meta;
    assert_true(ts_get(ts, "k", 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "v");
    assert_int_equal(meta.lease, 0);
}

static void put_with_lease_has_no_lease_table_yet(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B("k");
    req.u.put.value = B("v");
    req.u.put.lease = 42;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_LEASE_NOT_FOUND);
    mvcc_response_free(&resp);
    /* etcd checks the lease before the key for ignore_value. */
    req.u.put.ignore_value = true;
    req.u.put.value = B("");
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_LEASE_NOT_FOUND);
    mvcc_response_free(&resp);
    char buf[8];
    assert_false(ts_get(ts, "k", 0, buf, sizeof buf, NULL));
    assert_int_equal(mvcc_current_revision(ts->store), 1);
    assert_int_equal(mvcc_applied_index(ts->store), 2);
}

static void empty_value_and_binary_keys(void **state)
{
    tstore *ts = *state;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    uint8_t key[3] = {0, 0xff, 0};
    req.u.put.key = (mvcc_bytes){key, sizeof key};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    mvcc_range_req r = {.key = {key, sizeof key}};
    mvcc_range_result res;
    assert_int_equal(mvcc_range(ts->store, &r, &res), FL_OK);
    assert_int_equal(res.kvs_count, 1);
    assert_int_equal(res.kvs[0].value.len, 0);
    assert_int_equal(res.kvs[0].key.len, 3);
    mvcc_range_result_free(&res);
}

static void big_value(void **state)
{
    tstore *ts = *state;
    size_t n = 1536 * 1024;
    uint8_t *value = malloc(n);
    for (size_t i = 0; i < n; i++) {
        value[i] = (uint8_t)(i * 7);
    }
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B("big");
    req.u.put.value = (mvcc_bytes){value, n};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    mvcc_response_free(&resp);
    mvcc_range_req r = {.key = B("big")};
    mvcc_range_result res;
    assert_int_equal(mvcc_range(ts->store, &r, &res), FL_OK);
    assert_int_equal(res.kvs[0].value.len, n);
    assert_memory_equal(res.kvs[0].value.data, value, n);
    mvcc_range_result_free(&res);
    free(value);
}

/* Keys longer than LMDB's 511-byte limit, sharing a long prefix. */
static void long_keys(void **state)
{
    tstore *ts = *state;
    char keys[5][1200];
    const char *order[5];
    for (int i = 0; i < 5; i++) {
        memset(keys[i], 'p', 1000);
        keys[i][1000] = 0;
    }
    keys[0][500] = 0;            /* 500 bytes of p: a long key */
    strcpy(keys[1] + 1000, "b"); /* p*1000 b */
    strcpy(keys[2] + 1000, "a"); /* p*1000 a */
    keys[3][480] = 0;            /* exactly the prefix: a short key */
    strcpy(keys[4] + 999, "q");  /* p*999 q: after all the others */
    /* Put in an order unrelated to key order. */
    int put_order[5] = {1, 4, 2, 0, 3};
    for (int i = 0; i < 5; i++) {
        ts_put(ts, keys[put_order[i]], keys[put_order[i]] + 990);
    }
    order[0] = keys[3];
    order[1] = keys[0];
    order[2] = keys[2];
    order[3] = keys[1];
    order[4] = keys[4];
    mvcc_range_req req = {.key = B0, .range_end = B0};
    mvcc_range_result res;
    assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
    assert_keys(&res,
                (const char *const[]){order[0], order[1], order[2], order[3], order[4], NULL});
    mvcc_range_result_free(&res);
    /* A range that starts and ends inside the group. */
    req.key = B(keys[0]);
    req.range_end = B(keys[1]);
    assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
    assert_keys(&res, (const char *const[]){keys[0], keys[2], NULL});
    assert_int_equal(res.count, 2);
    mvcc_range_result_free(&res);
    /* Update and read back one long key; version counts per full key. */
    ts_put(ts, keys[2], "new");
    char buf[32];
    mvcc_kv meta;
    assert_true(ts_get(ts, keys[2], 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "new");
    assert_int_equal(meta.version, 2);
    assert_true(ts_get(ts, keys[1], 0, buf, sizeof buf, &meta));
    assert_int_equal(meta.version, 1);
    /* Delete one, recreate it, compact: still right. */
    ts_del(ts, keys[1], NULL);
    assert_false(ts_get(ts, keys[1], 0, buf, sizeof buf, NULL));
    assert_int_equal(ts_compact(ts, mvcc_current_revision(ts->store)), FL_OK);
    ts_put(ts, keys[1], "again");
    assert_true(ts_get(ts, keys[1], 0, buf, sizeof buf, &meta));
    assert_int_equal(meta.version, 1);
    assert_true(ts_get(ts, keys[2], 0, buf, sizeof buf, &meta));
    assert_string_equal(buf, "new");
    req.key = B0;
    req.range_end = B0;
    req.count_only = true;
    assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
    assert_int_equal(res.count, 5);
    mvcc_range_result_free(&res);
    /* Prefix delete across the group. */
    mvcc_request del = {.type = MVCC_REQ_DELETE};
    del.u.del.key = B(keys[0]);
    del.u.del.range_end = B0;
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &del, &resp), FL_OK);
    assert_int_equal(resp.u.del.deleted, 4);
    mvcc_response_free(&resp);
    assert_true(ts_get(ts, keys[3], 0, buf, sizeof buf, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_bumps_revision_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_and_recreate_resets_version, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_of_nothing_keeps_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_range_prefix_from_key_with_prev_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(put_prev_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(put_ignore_value, setup, teardown),
        cmocka_unit_test_setup_teardown(put_ignore_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(put_with_lease_has_no_lease_table_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_value_and_binary_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(big_value, setup, teardown),
        cmocka_unit_test_setup_teardown(long_keys, setup, teardown),
    };
    return cmocka_run_group_tests_name("mvcc.write", tests, NULL, NULL);
}

/* Range: every option, checked against what etcd 3.4 answers for the same
 * history (a=1 b=2 c=3 a=11 d=4 b=22 at revisions 2..7). */
#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static int setup(void **state)
{
    tstore *ts = calloc(1, sizeof *ts);
    ts_open(ts, NULL);
    assert_int_equal(ts_put(ts, "a", "1"), 2);
    assert_int_equal(ts_put(ts, "b", "2"), 3);
    assert_int_equal(ts_put(ts, "c", "3"), 4);
    assert_int_equal(ts_put(ts, "a", "11"), 5);
    assert_int_equal(ts_put(ts, "d", "4"), 6);
    assert_int_equal(ts_put(ts, "b", "22"), 7);
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    ts_close(*state);
    free(*state);
    return 0;
}

static void check(void **state, mvcc_range_req req, const char *const *keys, int64_t count,
                  bool more)
{
    tstore *ts = *state;
    mvcc_range_result res;
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_keys(&res, keys);
    assert_int_equal(res.count, count);
    assert_int_equal(res.more, more);
    assert_int_equal(res.revision, 7);
    mvcc_range_result_free(&res);
}

static void new_store_is_at_revision_1(void **state)
{
    (void)state;
    tstore ts;
    ts_open(&ts, NULL);
    assert_int_equal(mvcc_current_revision(ts.store), 1);
    assert_int_equal(mvcc_compact_revision(ts.store), 0);
    assert_int_equal(mvcc_applied_index(ts.store), 0);
    mvcc_range_result res;
    mvcc_range_req req = {.key = B0, .range_end = B0};
    assert_int_equal(ts_range(&ts, &req, &res), FL_OK);
    assert_int_equal(res.kvs_count, 0);
    assert_int_equal(res.count, 0);
    assert_int_equal(res.revision, 1);
    mvcc_range_result_free(&res);
    ts_close(&ts);
}

static void single_key(void **state)
{
    tstore *ts = *state;
    mvcc_range_result res;
    mvcc_range_req req = {.key = B("a")};
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_int_equal(res.kvs_count, 1);
    assert_memory_equal(res.kvs[0].value.data, "11", 2);
    assert_int_equal(res.kvs[0].create_revision, 2);
    assert_int_equal(res.kvs[0].mod_revision, 5);
    assert_int_equal(res.kvs[0].version, 2);
    assert_int_equal(res.kvs[0].lease, 0);
    assert_int_equal(res.count, 1);
    mvcc_range_result_free(&res);
    check(state, (mvcc_range_req){.key = B("zz")}, (const char *[]){NULL}, 0, false);
    check(state, (mvcc_range_req){.key = {(const uint8_t *)"a\0", 2}}, (const char *[]){NULL}, 0,
          false);
}

static void half_open_range(void **state)
{
    check(state, (mvcc_range_req){.key = B("a"), .range_end = B("c")},
          (const char *[]){"a", "b", NULL}, 2, false);
    check(state, (mvcc_range_req){.key = B("b"), .range_end = B("bb")}, (const char *[]){"b", NULL},
          1, false);
    /* range_end <= key: nothing. */
    check(state, (mvcc_range_req){.key = B("c"), .range_end = B("a")}, (const char *[]){NULL}, 0,
          false);
    check(state, (mvcc_range_req){.key = B("c"), .range_end = B("c")}, (const char *[]){NULL}, 0,
          false);
}

static void prefix(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "pre/1", "x");
    ts_put(ts, "pre/2", "y");
    ts_put(ts, "pre0", "z");
    ts_put(ts, "pre.", "w");
    mvcc_range_result res;
    mvcc_range_req req = {.key = B("pre/"), .range_end = B("pre0")}; /* etcd's prefix end */
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"pre/1", "pre/2", NULL});
    assert_int_equal(res.count, 2);
    mvcc_range_result_free(&res);
}

static void from_key(void **state)
{
    check(state, (mvcc_range_req){.key = B("b"), .range_end = B0},
          (const char *[]){"b", "c", "d", NULL}, 3, false);
    check(state, (mvcc_range_req){.key = B("e"), .range_end = B0}, (const char *[]){NULL}, 0,
          false);
}

static void all_keys(void **state)
{
    check(state, (mvcc_range_req){.key = B0, .range_end = B0},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
}

static void limit_more_count(void **state)
{
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .limit = 2},
          (const char *[]){"a", "b", NULL}, 4, true);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .limit = 4},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .limit = 5},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
    /* A negative limit is no limit, as etcd. */
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .limit = -1},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
}

static void keys_only(void **state)
{
    tstore *ts = *state;
    mvcc_range_result res;
    mvcc_range_req req = {.key = B0, .range_end = B0, .keys_only = true, .limit = 1};
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"a", NULL});
    assert_int_equal(res.kvs[0].value.len, 0);
    assert_int_equal(res.kvs[0].mod_revision, 5);
    assert_int_equal(res.kvs[0].version, 2);
    assert_true(res.more);
    assert_int_equal(res.count, 4);
    mvcc_range_result_free(&res);
}

static void count_only(void **state)
{
    /* etcd: count ignores limit and the revision filters; no kvs, no more. */
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .count_only = true},
          (const char *[]){NULL}, 4, false);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .count_only = true, .limit = 1},
          (const char *[]){NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B0, .range_end = B0, .count_only = true, .max_mod_revision = 5},
          (const char *[]){NULL}, 4, false);
}

static void sort_by_key(void **state)
{
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .sort_order = MVCC_SORT_ASCEND},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"d", "c", "b", "a", NULL}, 4, false);
    /* Sorting happens before the limit. */
    check(state,
          (mvcc_range_req){.key = B0, .range_end = B0, .sort_order = MVCC_SORT_DESCEND, .limit = 1},
          (const char *[]){"d", NULL}, 4, true);
}

static void sort_by_version(void **state)
{
    /* versions: a2 b2 c1 d1; ties keep key order */
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .sort_target = MVCC_SORT_BY_VERSION},
          (const char *[]){"c", "d", "a", "b", NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_VERSION,
                           .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
    /* etcd: --sort-by VERSION --limit 1 gives a (ascending, ties by key)?? no: c */
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_VERSION,
                           .sort_order = MVCC_SORT_ASCEND,
                           .limit = 1},
          (const char *[]){"c", NULL}, 4, true);
}

static void sort_target_without_order_sorts_only_the_fetched(void **state)
{
    /* etcd 3.4 quirk: order NONE with a non-KEY target sorts ascending, but
     * the limit + 1 keys are fetched in key order first (a b c here), so d
     * (version 1) is not considered. */
    check(state,
          (mvcc_range_req){
              .key = B0, .range_end = B0, .sort_target = MVCC_SORT_BY_VERSION, .limit = 2},
          (const char *[]){"c", "a", NULL}, 4, true);
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_VERSION,
                           .sort_order = MVCC_SORT_ASCEND,
                           .limit = 2},
          (const char *[]){"c", "d", NULL}, 4, true);
}

static void sort_by_create(void **state)
{
    /* create: a2 b3 c4 d6 */
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_CREATE,
                           .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"d", "c", "b", "a", NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_CREATE,
                           .sort_order = MVCC_SORT_ASCEND},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
}

static void sort_by_mod(void **state)
{
    /* mod: a5 b7 c4 d6 */
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .sort_target = MVCC_SORT_BY_MOD},
          (const char *[]){"c", "a", "d", "b", NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_MOD,
                           .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"b", "d", "a", "c", NULL}, 4, false);
}

static void sort_by_value(void **state)
{
    /* values: a "11", b "22", c "3", d "4" */
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .sort_target = MVCC_SORT_BY_VALUE,
                           .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"d", "c", "b", "a", NULL}, 4, false);
    tstore *ts = *state;
    ts_put(ts, "a", "9");
    mvcc_range_result res;
    mvcc_range_req req = {.key = B0, .range_end = B0, .sort_target = MVCC_SORT_BY_VALUE};
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"b", "c", "d", "a", NULL});
    mvcc_range_result_free(&res);
}

static void mod_revision_filters(void **state)
{
    /* Same answers as etcd 3.4: filters apply before the limit, count is
     * the unfiltered total. */
    check(state,
          (mvcc_range_req){.key = B("a"), .range_end = B0, .limit = 2, .max_mod_revision = 5},
          (const char *[]){"a", "c", NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B("a"), .range_end = B0, .limit = 1, .min_mod_revision = 5},
          (const char *[]){"a", NULL}, 4, true);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .min_mod_revision = 6},
          (const char *[]){"b", "d", NULL}, 4, false);
    check(
        state,
        (mvcc_range_req){.key = B0, .range_end = B0, .min_mod_revision = 5, .max_mod_revision = 6},
        (const char *[]){"a", "d", NULL}, 4, false);
}

static void create_revision_filters(void **state)
{
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .min_create_revision = 4},
          (const char *[]){"c", "d", NULL}, 4, false);
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .max_create_revision = 3},
          (const char *[]){"a", "b", NULL}, 4, false);
    check(state,
          (mvcc_range_req){.key = B0,
                           .range_end = B0,
                           .max_create_revision = 4,
                           .limit = 2,
                           .sort_order = MVCC_SORT_DESCEND},
          (const char *[]){"c", "b", NULL}, 4, true);
}

static void past_revision(void **state)
{
    tstore *ts = *state;
    char buf[32];
    mvcc_kv meta;
    assert_true(ts_get(ts, "a", 4, buf, sizeof buf, &meta));
    assert_string_equal(buf, "1");
    assert_int_equal(meta.mod_revision, 2);
    assert_int_equal(meta.version, 1);
    assert_false(ts_get(ts, "d", 5, buf, sizeof buf, NULL));
    assert_true(ts_get(ts, "d", 6, buf, sizeof buf, NULL));
    assert_false(ts_get(ts, "a", 1, buf, sizeof buf, NULL));
    mvcc_range_result res;
    mvcc_range_req req = {.key = B0, .range_end = B0, .revision = 4};
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"a", "b", "c", NULL});
    assert_int_equal(res.revision, 7); /* header: the current revision */
    assert_memory_equal(res.kvs[1].value.data, "2", 1);
    mvcc_range_result_free(&res);
    /* A negative revision means the current one, as etcd. */
    check(state, (mvcc_range_req){.key = B0, .range_end = B0, .revision = -1},
          (const char *[]){"a", "b", "c", "d", NULL}, 4, false);
}

static void past_revision_sees_deleted_keys(void **state)
{
    tstore *ts = *state;
    assert_int_equal(ts_del(ts, "b", NULL), 8);
    char buf[32];
    assert_false(ts_get(ts, "b", 0, buf, sizeof buf, NULL));
    assert_true(ts_get(ts, "b", 7, buf, sizeof buf, NULL));
    assert_string_equal(buf, "22");
    mvcc_range_result res;
    mvcc_range_req req = {.key = B0, .range_end = B0, .revision = 7, .count_only = true};
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_int_equal(res.count, 4);
    mvcc_range_result_free(&res);
}

static void future_and_compacted_revision(void **state)
{
    tstore *ts = *state;
    mvcc_range_result res;
    mvcc_range_req req = {.key = B("a"), .revision = 8};
    assert_int_equal(ts_range(ts, &req, &res), FL_ERR_FUTURE_REV);
    mvcc_range_result_free(&res);
    assert_int_equal(ts_compact(ts, 4), FL_OK);
    req.revision = 3;
    assert_int_equal(ts_range(ts, &req, &res), FL_ERR_COMPACTED);
    req.revision = 4; /* the compact revision itself is readable */
    assert_int_equal(ts_range(ts, &req, &res), FL_OK);
    assert_int_equal(res.kvs_count, 1);
    assert_memory_equal(res.kvs[0].value.data, "1", 1);
    mvcc_range_result_free(&res);
}

static void empty_key_is_rejected(void **state)
{
    tstore *ts = *state;
    mvcc_range_result res;
    mvcc_range_req req = {.key = {NULL, 0}};
    assert_int_equal(ts_range(ts, &req, &res), FL_ERR_KEY_EMPTY);
    mvcc_range_result_free(&res);
}

static void large_range_sorted_and_counted(void **state)
{
    (void)state;
    tstore ts;
    ts_open(&ts, NULL);
    assert_int_equal(mvcc_batch_begin(ts.store), FL_OK);
    for (int i = 0; i < 6000; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%05d", i);
        ts_put(&ts, key, i % 2 ? "odd" : "even");
    }
    assert_int_equal(mvcc_batch_commit(ts.store), FL_OK);
    mvcc_range_result res;
    mvcc_range_req req = {
        .key = B("k"), .range_end = B("l"), .sort_order = MVCC_SORT_DESCEND, .limit = 2};
    assert_int_equal(ts_range(&ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"k05999", "k05998", NULL});
    assert_int_equal(res.count, 6000);
    assert_true(res.more);
    mvcc_range_result_free(&res);
    req = (mvcc_range_req){.key = B("k"),
                           .range_end = B("l"),
                           .limit = 1,
                           .sort_target = MVCC_SORT_BY_VALUE,
                           .sort_order = MVCC_SORT_DESCEND};
    assert_int_equal(ts_range(&ts, &req, &res), FL_OK);
    assert_keys(&res, (const char *[]){"k00001", NULL}); /* "odd", first by key */
    mvcc_range_result_free(&res);
    req = (mvcc_range_req){.key = B("k01000"), .range_end = B("k02000"), .count_only = true};
    assert_int_equal(ts_range(&ts, &req, &res), FL_OK);
    assert_int_equal(res.count, 1000);
    mvcc_range_result_free(&res);
    ts_close(&ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_store_is_at_revision_1),
        cmocka_unit_test_setup_teardown(single_key, setup, teardown),
        cmocka_unit_test_setup_teardown(half_open_range, setup, teardown),
        cmocka_unit_test_setup_teardown(prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(from_key, setup, teardown),
        cmocka_unit_test_setup_teardown(all_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_more_count, setup, teardown),
        cmocka_unit_test_setup_teardown(keys_only, setup, teardown),
        cmocka_unit_test_setup_teardown(count_only, setup, teardown),
        cmocka_unit_test_setup_teardown(sort_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(sort_by_version, setup, teardown),
        cmocka_unit_test_setup_teardown(sort_target_without_order_sorts_only_the_fetched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sort_by_create, setup, teardown),
        cmocka_unit_test_setup_teardown(sort_by_mod, setup, teardown),
        cmocka_unit_test_setup_teardown(sort_by_value, setup, teardown),
        cmocka_unit_test_setup_teardown(mod_revision_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(create_revision_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(past_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(past_revision_sees_deleted_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(future_and_compacted_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_key_is_rejected, setup, teardown),
        cmocka_unit_test(large_range_sorted_and_counted),
    };
    return cmocka_run_group_tests_name("mvcc.range", tests, NULL, NULL);
}

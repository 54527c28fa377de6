/* Txn: compares (every target x result, missing keys, ranges), branches,
 * nested txns, read-your-writes, revision rules, state-dependent errors. */
#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static int setup(void **state)
{
    tstore *ts = calloc(1, sizeof *ts);
    ts_open(ts, NULL);
    /* a: create 2, mod 3, version 2, value "v2"; b: create 4, "bb" */
    ts_put(ts, "a", "v1");
    ts_put(ts, "a", "v2");
    ts_put(ts, "b", "bb");
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    ts_close(*state);
    free(*state);
    return 0;
}

/* Runs a txn made of compares and a put of "s" on success / "f" on failure;
 * returns whether it succeeded. */
static bool run_compares(tstore *ts, const mvcc_compare *cmps, size_t n)
{
    mvcc_op succ = {.type = MVCC_OP_RANGE, .u.range = {.key = B("a")}};
    mvcc_op fail = {.type = MVCC_OP_RANGE, .u.range = {.key = B("b")}};
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.compares = cmps,
                               .compares_count = n,
                               .success = &succ,
                               .success_count = 1,
                               .failure = &fail,
                               .failure_count = 1};
    mvcc_response resp;
    int64_t before = mvcc_current_revision(ts->store);
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    bool ok = resp.u.txn.succeeded;
    assert_int_equal(resp.u.txn.responses_count, 1);
    assert_int_equal(resp.u.txn.responses[0].type, MVCC_OP_RANGE);
    const mvcc_range_result *rr = &resp.u.txn.responses[0].u.range;
    assert_int_equal(rr->kvs_count, 1);
    assert_memory_equal(rr->kvs[0].key.data, ok ? "a" : "b", 1);
    /* A read-only txn does not move the revision. */
    assert_int_equal(resp.revision, before);
    assert_int_equal(mvcc_current_revision(ts->store), before);
    mvcc_response_free(&resp);
    return ok;
}

static bool cmp1(tstore *ts, mvcc_compare c)
{
    return run_compares(ts, &c, 1);
}

static mvcc_compare num(const char *key, mvcc_compare_target t, mvcc_compare_result r, int64_t n)
{
    return (mvcc_compare){.key = B(key), .target = t, .result = r, .number = n};
}

static void compare_version(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 2)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 1)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_GREATER, 1)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_GREATER, 2)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_LESS, 3)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_LESS, 2)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_NOT_EQUAL, 1)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_VERSION, MVCC_CMP_NOT_EQUAL, 2)));
}

static void compare_create(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_EQUAL, 2)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_EQUAL, 3)));
    assert_true(cmp1(ts, num("b", MVCC_CMP_CREATE, MVCC_CMP_GREATER, 3)));
    assert_false(cmp1(ts, num("b", MVCC_CMP_CREATE, MVCC_CMP_GREATER, 4)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_LESS, 3)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_LESS, 2)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_NOT_EQUAL, 4)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_CREATE, MVCC_CMP_NOT_EQUAL, 2)));
}

static void compare_mod(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_EQUAL, 3)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_EQUAL, 2)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_GREATER, 2)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_GREATER, 3)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_LESS, 4)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_LESS, 3)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_NOT_EQUAL, 4)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_MOD, MVCC_CMP_NOT_EQUAL, 3)));
}

static mvcc_compare val(const char *key, mvcc_compare_result r, const char *v)
{
    return (mvcc_compare){.key = B(key), .target = MVCC_CMP_VALUE, .result = r, .value = B(v)};
}

static void compare_value(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, val("a", MVCC_CMP_EQUAL, "v2")));
    assert_false(cmp1(ts, val("a", MVCC_CMP_EQUAL, "v1")));
    assert_true(cmp1(ts, val("a", MVCC_CMP_GREATER, "v1")));
    assert_true(cmp1(ts, val("a", MVCC_CMP_GREATER, "v")));
    assert_false(cmp1(ts, val("a", MVCC_CMP_GREATER, "v2")));
    assert_true(cmp1(ts, val("a", MVCC_CMP_LESS, "v3")));
    assert_true(cmp1(ts, val("a", MVCC_CMP_LESS, "v20")));
    assert_false(cmp1(ts, val("a", MVCC_CMP_LESS, "v2")));
    assert_true(cmp1(ts, val("a", MVCC_CMP_NOT_EQUAL, "x")));
    assert_false(cmp1(ts, val("a", MVCC_CMP_NOT_EQUAL, "v2")));
}

static void compare_lease(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, num("a", MVCC_CMP_LEASE, MVCC_CMP_EQUAL, 0)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_LEASE, MVCC_CMP_EQUAL, 5)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_LEASE, MVCC_CMP_LESS, 5)));
    assert_false(cmp1(ts, num("a", MVCC_CMP_LEASE, MVCC_CMP_GREATER, 0)));
    assert_true(cmp1(ts, num("a", MVCC_CMP_LEASE, MVCC_CMP_NOT_EQUAL, 7)));
}

static void compare_missing_key(void **state)
{
    tstore *ts = *state;
    assert_true(cmp1(ts, num("zz", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 0)));
    assert_true(cmp1(ts, num("zz", MVCC_CMP_CREATE, MVCC_CMP_EQUAL, 0)));
    assert_true(cmp1(ts, num("zz", MVCC_CMP_MOD, MVCC_CMP_LESS, 1)));
    assert_true(cmp1(ts, num("zz", MVCC_CMP_LEASE, MVCC_CMP_EQUAL, 0)));
    assert_false(cmp1(ts, num("zz", MVCC_CMP_VERSION, MVCC_CMP_GREATER, 0)));
    /* VALUE on a missing key always fails, even against "". */
    assert_false(cmp1(ts, val("zz", MVCC_CMP_EQUAL, "")));
    assert_false(cmp1(ts, val("zz", MVCC_CMP_NOT_EQUAL, "x")));
    /* A deleted key is missing too. */
    ts_del(ts, "b", NULL);
    assert_true(cmp1(ts, num("b", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 0)));
}

static void compare_range(void **state)
{
    tstore *ts = *state;
    mvcc_compare c = num("a", MVCC_CMP_VERSION, MVCC_CMP_GREATER, 0);
    c.range_end = B("c");
    assert_true(cmp1(ts, c)); /* a (2) and b (1) */
    c.number = 1;
    assert_false(cmp1(ts, c)); /* b has version 1 */
    c = val("a", MVCC_CMP_LESS, "w");
    c.range_end = B0;
    assert_true(cmp1(ts, c));
    c.value = B("bc");
    assert_false(cmp1(ts, c)); /* "v2" is not < "bc" */
    /* An empty range compares the zero kv (VALUE fails). */
    c = num("x", MVCC_CMP_MOD, MVCC_CMP_EQUAL, 0);
    c.range_end = B("y");
    assert_true(cmp1(ts, c));
    c = val("x", MVCC_CMP_EQUAL, "");
    c.range_end = B("y");
    assert_false(cmp1(ts, c));
}

static void all_compares_must_hold(void **state)
{
    tstore *ts = *state;
    mvcc_compare two[2] = {num("a", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 2),
                           val("b", MVCC_CMP_EQUAL, "bb")};
    assert_true(run_compares(ts, two, 2));
    two[1] = val("b", MVCC_CMP_EQUAL, "nope");
    assert_false(run_compares(ts, two, 2));
    assert_true(run_compares(ts, NULL, 0)); /* no compares: success */
}

static void writes_share_one_revision_and_read_your_writes(void **state)
{
    tstore *ts = *state;
    mvcc_op ops[4] = {
        {.type = MVCC_OP_PUT, .u.put = {.key = B("n1"), .value = B("x")}},
        {.type = MVCC_OP_RANGE, .u.range = {.key = B("n"), .range_end = B("o")}},
        {.type = MVCC_OP_PUT, .u.put = {.key = B("n2"), .value = B("y"), .prev_kv = true}},
        {.type = MVCC_OP_DELETE, .u.del = {.key = B("a"), .prev_kv = true}},
    };
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.success = ops, .success_count = 4};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_true(resp.u.txn.succeeded);
    assert_int_equal(resp.revision, 5);
    assert_int_equal(resp.u.txn.responses_count, 4);
    const mvcc_range_result *rr = &resp.u.txn.responses[1].u.range;
    assert_int_equal(rr->kvs_count, 1);
    assert_memory_equal(rr->kvs[0].key.data, "n1", 2);
    assert_int_equal(rr->kvs[0].mod_revision, 5);
    assert_int_equal(rr->revision, 5);
    assert_false(resp.u.txn.responses[2].u.put.has_prev_kv);
    assert_int_equal(resp.u.txn.responses[3].u.del.deleted, 1);
    assert_memory_equal(resp.u.txn.responses[3].u.del.prev_kvs[0].value.data, "v2", 2);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_current_revision(ts->store), 5);
    char buf[8];
    mvcc_kv meta;
    assert_true(ts_get(ts, "n2", 0, buf, sizeof buf, &meta));
    assert_int_equal(meta.mod_revision, 5);
    assert_false(ts_get(ts, "a", 0, buf, sizeof buf, NULL));
}

static void failure_branch_and_empty_branch(void **state)
{
    tstore *ts = *state;
    mvcc_compare c = num("a", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 9);
    mvcc_op put = {.type = MVCC_OP_PUT, .u.put = {.key = B("f"), .value = B("1")}};
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn =
        (mvcc_txn_req){.compares = &c, .compares_count = 1, .success = &put, .success_count = 1};
    mvcc_response resp;
    /* The failure branch is empty: nothing happens, the revision stays. */
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_false(resp.u.txn.succeeded);
    assert_int_equal(resp.u.txn.responses_count, 0);
    assert_int_equal(resp.revision, 4);
    mvcc_response_free(&resp);
    req.u.txn.failure = &put;
    req.u.txn.failure_count = 1;
    req.u.txn.success = NULL;
    req.u.txn.success_count = 0;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_false(resp.u.txn.succeeded);
    assert_int_equal(resp.revision, 5);
    mvcc_response_free(&resp);
}

static void nested_txn_compares_see_state_before_txn(void **state)
{
    tstore *ts = *state;
    /* As etcd 3.4: put t2, then a nested txn comparing t2's version > 0:
     * the nested compare is evaluated before the txn runs, so it fails. */
    mvcc_compare inner_cmp = num("t2", MVCC_CMP_VERSION, MVCC_CMP_GREATER, 0);
    mvcc_op inner_succ = {.type = MVCC_OP_PUT, .u.put = {.key = B("s"), .value = B("1")}};
    mvcc_op inner_fail = {.type = MVCC_OP_RANGE, .u.range = {.key = B("t2")}};
    mvcc_txn_req inner = {.compares = &inner_cmp,
                          .compares_count = 1,
                          .success = &inner_succ,
                          .success_count = 1,
                          .failure = &inner_fail,
                          .failure_count = 1};
    mvcc_op outer[2] = {
        {.type = MVCC_OP_PUT, .u.put = {.key = B("t2"), .value = B("x")}},
        {.type = MVCC_OP_TXN, .u.txn = &inner},
    };
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.success = outer, .success_count = 2};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_true(resp.u.txn.succeeded);
    assert_int_equal(resp.u.txn.responses_count, 2);
    assert_int_equal(resp.u.txn.responses[1].type, MVCC_OP_TXN);
    const mvcc_txn_result *sub = resp.u.txn.responses[1].u.txn;
    assert_false(sub->succeeded);
    assert_int_equal(sub->responses_count, 1);
    /* ... but the nested range does see the put. */
    assert_int_equal(sub->responses[0].u.range.kvs_count, 1);
    assert_int_equal(resp.revision, 5);
    mvcc_response_free(&resp);
    char buf[8];
    assert_false(ts_get(ts, "s", 0, buf, sizeof buf, NULL));
}

static void deeply_nested_txns(void **state)
{
    tstore *ts = *state;
    mvcc_txn_req levels[5];
    mvcc_op ops[5][2];
    char keys[5][8];
    for (int i = 4; i >= 0; i--) {
        snprintf(keys[i], sizeof keys[i], "lvl%d", i);
        ops[i][0] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(keys[i]), .value = B("v")}};
        size_t n = 1;
        if (i < 4) {
            ops[i][1] = (mvcc_op){.type = MVCC_OP_TXN, .u.txn = &levels[i + 1]};
            n = 2;
        }
        levels[i] = (mvcc_txn_req){.success = ops[i], .success_count = n};
    }
    mvcc_request req = {.type = MVCC_REQ_TXN, .u.txn = levels[0]};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_OK);
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.revision, 5);
    const mvcc_txn_result *t = &resp.u.txn;
    for (int i = 0; i < 4; i++) {
        assert_true(t->succeeded);
        assert_int_equal(t->responses_count, 2);
        t = t->responses[1].u.txn;
    }
    assert_int_equal(t->responses_count, 1);
    mvcc_response_free(&resp);
    for (int i = 0; i < 5; i++) {
        char buf[8];
        mvcc_kv meta;
        assert_true(ts_get(ts, keys[i], 0, buf, sizeof buf, &meta));
        assert_int_equal(meta.mod_revision, 5);
    }
}

static void txn_state_errors_change_nothing(void **state)
{
    tstore *ts = *state;
    mvcc_op ops[2] = {
        {.type = MVCC_OP_PUT, .u.put = {.key = B("w"), .value = B("1")}},
        {.type = MVCC_OP_PUT, .u.put = {.key = B("x"), .value = B("1"), .lease = 7}},
    };
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.success = ops, .success_count = 2};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_LEASE_NOT_FOUND);
    mvcc_response_free(&resp);
    ops[1] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B("x"), .ignore_value = true}};
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_NOT_FOUND);
    mvcc_response_free(&resp);
    ops[1] = (mvcc_op){.type = MVCC_OP_RANGE, .u.range = {.key = B("a"), .revision = 99}};
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_FUTURE_REV);
    mvcc_response_free(&resp);
    assert_int_equal(ts_compact(ts, 3), FL_OK);
    ops[1].u.range.revision = 2;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_ERR_COMPACTED);
    mvcc_response_free(&resp);
    ops[1].u.range.revision = 3;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.u.txn.responses[1].u.range.kvs_count, 1);
    assert_memory_equal(resp.u.txn.responses[1].u.range.kvs[0].value.data, "v2", 2);
    mvcc_response_free(&resp);
    assert_int_equal(mvcc_current_revision(ts->store), 5);
    assert_int_equal(mvcc_applied_index(ts->store), 9);
    /* Errors on the branch not taken do not count. */
    mvcc_compare c = num("a", MVCC_CMP_VERSION, MVCC_CMP_EQUAL, 100);
    ops[1] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B("x"), .lease = 7}};
    req.u.txn.compares = &c;
    req.u.txn.compares_count = 1;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_false(resp.u.txn.succeeded);
    mvcc_response_free(&resp);
}

static void ignore_value_inside_txn(void **state)
{
    tstore *ts = *state;
    mvcc_op ops[2] = {
        {.type = MVCC_OP_PUT, .u.put = {.key = B("a"), .ignore_value = true, .prev_kv = true}},
        {.type = MVCC_OP_RANGE, .u.range = {.key = B("a")}},
    };
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.success = ops, .success_count = 2};
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_true(resp.u.txn.responses[0].u.put.has_prev_kv);
    const mvcc_range_result *rr = &resp.u.txn.responses[1].u.range;
    assert_memory_equal(rr->kvs[0].value.data, "v2", 2);
    assert_int_equal(rr->kvs[0].version, 3);
    mvcc_response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(compare_version, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_create, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_mod, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_value, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_missing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_range, setup, teardown),
        cmocka_unit_test_setup_teardown(all_compares_must_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_share_one_revision_and_read_your_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failure_branch_and_empty_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_txn_compares_see_state_before_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(deeply_nested_txns, setup, teardown),
        cmocka_unit_test_setup_teardown(txn_state_errors_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(ignore_value_inside_txn, setup, teardown),
    };
    return cmocka_run_group_tests_name("mvcc.txn", tests, NULL, NULL);
}

/* mvcc_request_validate: etcd 3.4's API checks, cases taken from what the
 * real etcd answered. */
#include "mvcc_test_util.h"

static mvcc_op put(const char *k)
{
    return (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(k), .value = B("v")}};
}

static mvcc_op del(const char *k, const char *end)
{
    mvcc_op op = {.type = MVCC_OP_DELETE, .u.del = {.key = B(k)}};
    if (end != NULL) {
        op.u.del.range_end = end[0] ? B(end) : B0;
    }
    return op;
}

static mvcc_op rng(const char *k)
{
    return (mvcc_op){.type = MVCC_OP_RANGE, .u.range = {.key = B(k)}};
}

static mvcc_op sub(const mvcc_txn_req *t)
{
    return (mvcc_op){.type = MVCC_OP_TXN, .u.txn = t};
}

static fl_err txn(const mvcc_op *succ, size_t ns, const mvcc_op *fail, size_t nf, size_t max)
{
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn =
        (mvcc_txn_req){.success = succ, .success_count = ns, .failure = fail, .failure_count = nf};
    return mvcc_request_validate(&req, max);
}

static void empty_keys(void **state)
{
    (void)state;
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = {NULL, 0}}};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_ERR_KEY_EMPTY);
    req = (mvcc_request){.type = MVCC_REQ_DELETE, .u.del = {.key = {NULL, 0}}};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_ERR_KEY_EMPTY);
    req = (mvcc_request){.type = MVCC_REQ_PUT, .u.put = {.key = B("k")}};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_OK);
    mvcc_op ops[2] = {put("k"), rng("")};
    assert_int_equal(txn(ops, 2, NULL, 0, 128), FL_ERR_KEY_EMPTY);
    ops[1] = del("", NULL);
    assert_int_equal(txn(ops, 2, NULL, 0, 128), FL_ERR_KEY_EMPTY);
    ops[1] = put("");
    assert_int_equal(txn(NULL, 0, ops, 2, 128), FL_ERR_KEY_EMPTY);
    mvcc_compare c = {.key = {NULL, 0}};
    req = (mvcc_request){.type = MVCC_REQ_TXN, .u.txn = {.compares = &c, .compares_count = 1}};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_ERR_KEY_EMPTY);
    /* Inside a nested txn too. */
    mvcc_op inner_ops[1] = {rng("")};
    mvcc_txn_req inner = {.success = inner_ops, .success_count = 1};
    mvcc_op outer[1] = {sub(&inner)};
    assert_int_equal(txn(outer, 1, NULL, 0, 128), FL_ERR_KEY_EMPTY);
}

static void value_and_lease_provided(void **state)
{
    (void)state;
    mvcc_invalid_reason why;
    mvcc_request req = {.type = MVCC_REQ_PUT,
                        .u.put = {.key = B("k"), .value = B("v"), .ignore_value = true}};
    assert_int_equal(mvcc_request_validate_reason(&req, 128, &why), FL_ERR_INVALID);
    assert_int_equal(why, MVCC_INVALID_VALUE_PROVIDED);
    req.u.put = (mvcc_put_req){.key = B("k"), .lease = 5, .ignore_lease = true};
    assert_int_equal(mvcc_request_validate_reason(&req, 128, &why), FL_ERR_INVALID);
    assert_int_equal(why, MVCC_INVALID_LEASE_PROVIDED);
    req.u.put = (mvcc_put_req){.key = B("k"), .ignore_lease = true, .ignore_value = true};
    assert_int_equal(mvcc_request_validate_reason(&req, 128, &why), FL_OK);
    /* etcd: the first bad op decides (value provided before a later empty key). */
    mvcc_op ops[2] = {
        {.type = MVCC_OP_PUT, .u.put = {.key = B("k"), .value = B("v"), .ignore_value = true}},
        put("")};
    req = (mvcc_request){.type = MVCC_REQ_TXN, .u.txn = {.success = ops, .success_count = 2}};
    assert_int_equal(mvcc_request_validate_reason(&req, 128, &why), FL_ERR_INVALID);
    assert_int_equal(why, MVCC_INVALID_VALUE_PROVIDED);
}

static void too_many_ops(void **state)
{
    (void)state;
    mvcc_compare c[3] = {{.key = B("a")}, {.key = B("a")}, {.key = B("a")}};
    mvcc_op s[2] = {put("a"), put("b")};
    mvcc_op f[2] = {put("c"), put("d")};
    /* etcd counts max(compares, success, failure), not the sum. */
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.compares = c,
                               .compares_count = 2,
                               .success = s,
                               .success_count = 2,
                               .failure = f,
                               .failure_count = 2};
    assert_int_equal(mvcc_request_validate(&req, 2), FL_OK);
    req.u.txn.compares_count = 3;
    assert_int_equal(mvcc_request_validate(&req, 2), FL_ERR_TOO_MANY_OPS);
    assert_int_equal(mvcc_request_validate(&req, 3), FL_OK);
    /* A nested txn gets max minus its parent's count (etcd, max 2):
     * success [put, txn{put}] is too many; success [put] + failure
     * [txn{put}] is fine; failure [txn{put, put}] is too many. */
    mvcc_op one[1] = {put("x")};
    mvcc_op two[2] = {put("x"), put("y")};
    mvcc_txn_req inner1 = {.success = one, .success_count = 1};
    mvcc_txn_req inner2 = {.success = two, .success_count = 2};
    mvcc_op a[2] = {put("a"), sub(&inner1)};
    assert_int_equal(txn(a, 2, NULL, 0, 2), FL_ERR_TOO_MANY_OPS);
    mvcc_op b[1] = {sub(&inner1)};
    assert_int_equal(txn(a, 1, b, 1, 2), FL_OK);
    mvcc_op d[1] = {sub(&inner2)};
    assert_int_equal(txn(a, 1, d, 1, 2), FL_ERR_TOO_MANY_OPS);
}

static void duplicate_keys_same_level(void **state)
{
    (void)state;
    mvcc_op two_puts[2] = {put("k"), put("k")};
    assert_int_equal(txn(two_puts, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* then and else are exclusive. */
    assert_int_equal(txn(two_puts, 1, two_puts + 1, 1, 128), FL_OK);
    mvcc_op put_del[2] = {put("k"), del("k", NULL)};
    assert_int_equal(txn(put_del, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    mvcc_op del_range_put[2] = {del("a", "z"), put("k")};
    assert_int_equal(txn(del_range_put, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    mvcc_op range_end_excluded[2] = {del("a", "k"), put("k")};
    assert_int_equal(txn(range_end_excluded, 2, NULL, 0, 128), FL_OK);
    /* Two overlapping deletes are fine; a range and a put of the same key too. */
    mvcc_op two_dels[2] = {del("a", "z"), del("b", NULL)};
    assert_int_equal(txn(two_dels, 2, NULL, 0, 128), FL_OK);
    mvcc_op put_get[2] = {put("k"), rng("k")};
    assert_int_equal(txn(put_get, 2, NULL, 0, 128), FL_OK);
    /* etcd 3.4 quirk: a from-key delete ("\0") is an empty interval. */
    mvcc_op from_key[2] = {del("a", ""), put("k")};
    assert_int_equal(txn(from_key, 2, NULL, 0, 128), FL_OK);
}

static void duplicate_keys_nested(void **state)
{
    (void)state;
    mvcc_op put_q[1] = {put("q")};
    mvcc_op del_q[1] = {del("q", NULL)};
    mvcc_txn_req t_put = {.success = put_q, .success_count = 1};
    mvcc_txn_req t_del = {.success = del_q, .success_count = 1};
    mvcc_txn_req t_put_else_del = {
        .success = put_q, .success_count = 1, .failure = del_q, .failure_count = 1};
    mvcc_txn_req t_put_both = {
        .success = put_q, .success_count = 1, .failure = put_q, .failure_count = 1};
    /* put q; txn{del q} -> duplicate */
    mvcc_op a[2] = {put("q"), sub(&t_del)};
    assert_int_equal(txn(a, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* txn{put q}; txn{del q} -> fine (etcd accepts) */
    mvcc_op b[2] = {sub(&t_put), sub(&t_del)};
    assert_int_equal(txn(b, 2, NULL, 0, 128), FL_OK);
    /* txn{del q}; txn{put q} -> duplicate */
    mvcc_op c[2] = {sub(&t_del), sub(&t_put)};
    assert_int_equal(txn(c, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* txn{then put q, else del q} -> fine */
    mvcc_op d[1] = {sub(&t_put_else_del)};
    assert_int_equal(txn(d, 1, NULL, 0, 128), FL_OK);
    /* txn{put q else put q} -> fine; plus a put q at this level -> duplicate */
    mvcc_op e[2] = {sub(&t_put_both), put("q")};
    assert_int_equal(txn(e, 1, NULL, 0, 128), FL_OK);
    assert_int_equal(txn(e, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* del q at this level vs put q in a nested txn -> duplicate */
    mvcc_op f[2] = {del("q", NULL), sub(&t_put)};
    assert_int_equal(txn(f, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* two nested txns putting q -> duplicate */
    mvcc_op g[2] = {sub(&t_put), sub(&t_put)};
    assert_int_equal(txn(g, 2, NULL, 0, 128), FL_ERR_DUPLICATE_KEY);
    /* too-many-ops is checked before duplicates */
    assert_int_equal(txn(g, 2, NULL, 0, 1), FL_ERR_TOO_MANY_OPS);
}

static void bad_op_type(void **state)
{
    (void)state;
    mvcc_op bad[1] = {{.type = (mvcc_op_type)9}};
    mvcc_invalid_reason why;
    mvcc_request req = {.type = MVCC_REQ_TXN, .u.txn = {.success = bad, .success_count = 1}};
    assert_int_equal(mvcc_request_validate_reason(&req, 128, &why), FL_ERR_INVALID);
    assert_int_equal(why, MVCC_INVALID_BAD_OP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_keys),
        cmocka_unit_test(value_and_lease_provided),
        cmocka_unit_test(too_many_ops),
        cmocka_unit_test(duplicate_keys_same_level),
        cmocka_unit_test(duplicate_keys_nested),
        cmocka_unit_test(bad_op_type),
    };
    return cmocka_run_group_tests_name("mvcc.validate", tests, NULL, NULL);
}

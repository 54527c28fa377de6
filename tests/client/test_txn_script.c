/* client.txn_script: etcdctl's get/put/del argument forms and txn script. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/client_txn_script.h"

static char err[256];

static Etcdserverpb__RequestOp *op_ok(int argc, char **argv, bool *missing)
{
    Etcdserverpb__RequestOp *op = NULL;
    bool m = false;
    fl_err e = client_op_parse(argc, argv, &op, &m, err, sizeof err);
    if (e != FL_OK)
        fail_msg("parse failed: %s", err);
    if (missing)
        *missing = m;
    return op;
}

static void assert_bytes(ProtobufCBinaryData b, const char *s, size_t n)
{
    assert_int_equal(b.len, n);
    if (n)
        assert_memory_equal(b.data, s, n);
}

static void test_get_forms(void **state)
{
    char *a1[] = {"get", "foo",     "--prefix",    "--limit",
                  "5",   "--rev=7", "--keys-only", "--consistency=s"};
    Etcdserverpb__RequestOp *op = op_ok(8, a1, NULL);
    assert_int_equal(op->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE);
    Etcdserverpb__RangeRequest *r = op->request_range;
    assert_bytes(r->key, "foo", 3);
    assert_bytes(r->range_end, "fop", 3);
    assert_int_equal(r->limit, 5);
    assert_int_equal(r->revision, 7);
    assert_true(r->keys_only);
    assert_true(r->serializable);
    client_free_response(op);

    char *a2[] = {"get", "", "--from-key"}; /* every key */
    op = op_ok(3, a2, NULL);
    assert_bytes(op->request_range->key, "\0", 1);
    assert_bytes(op->request_range->range_end, "\0", 1);
    client_free_response(op);

    char *a3[] = {"get", "a", "c", "--sort-by=MODIFY", "--order", "descend", "--count-only"};
    op = op_ok(7, a3, NULL);
    assert_bytes(op->request_range->range_end, "c", 1);
    assert_int_equal(op->request_range->sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD);
    assert_int_equal(op->request_range->sort_order,
                     ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
    assert_true(op->request_range->count_only);
    client_free_response(op);

    /* ascending by key is the natural order: sent as NONE (clientv3's WithSort) */
    char *a4[] = {"get", "a", "--sort-by=KEY", "--order=ASCEND"};
    op = op_ok(4, a4, NULL);
    assert_int_equal(op->request_range->sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE);
    client_free_response(op);
}

static void test_get_errors(void **state)
{
    Etcdserverpb__RequestOp *op = NULL;
    bool m;
    char *a1[] = {"get"};
    assert_int_equal(client_op_parse(1, a1, &op, &m, err, sizeof err), FL_ERR_INVALID);
    assert_string_equal(
        err, "get command needs one argument as key and an optional argument as range_end");
    char *a2[] = {"get", "a", "--prefix", "--from-key"};
    assert_int_equal(client_op_parse(4, a2, &op, &m, err, sizeof err), FL_ERR_INVALID);
    char *a3[] = {"get", "a", "--limit=x"};
    assert_int_equal(client_op_parse(3, a3, &op, &m, err, sizeof err), FL_ERR_INVALID);
    char *a4[] = {"get", "a", "--sort-by=NAME"};
    assert_int_equal(client_op_parse(3, a4, &op, &m, err, sizeof err), FL_ERR_UNIMPLEMENTED);
    assert_string_equal(err, "bad sort target NAME");
    char *a5[] = {"get", "a", "--lease=1"}; /* a put flag */
    assert_int_equal(client_op_parse(3, a5, &op, &m, err, sizeof err), FL_ERR_INVALID);
    assert_string_equal(err, "unknown flag: --lease=1");
    assert_null(op);
}

static void test_put_del(void **state)
{
    bool missing;
    char *a1[] = {"put", "k", "v", "--prev-kv", "--lease=1f"};
    Etcdserverpb__RequestOp *op = op_ok(5, a1, &missing);
    assert_false(missing);
    assert_bytes(op->request_put->key, "k", 1);
    assert_bytes(op->request_put->value, "v", 1);
    assert_true(op->request_put->prev_kv);
    assert_int_equal(op->request_put->lease, 0x1f); /* hex, as etcdctl */
    client_free_response(op);

    char *a2[] = {"put", "k"};
    op = op_ok(2, a2, &missing);
    assert_true(missing); /* the CLI reads stdin */
    client_free_response(op);

    char *a3[] = {"put", "k", "--ignore-value"};
    op = op_ok(3, a3, &missing);
    assert_false(missing);
    assert_true(op->request_put->ignore_value);
    client_free_response(op);

    char *a4[] = {"del", "p", "--prefix", "--prev-kv"};
    op = op_ok(4, a4, NULL);
    assert_int_equal(op->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE);
    assert_bytes(op->request_delete_range->range_end, "q", 1);
    assert_true(op->request_delete_range->prev_kv);
    client_free_response(op);
}

static void test_split(void **state)
{
    char *argv[8];
    int argc = 0;
    assert_int_equal(
        client_script_split("put \"a b\\n\" 'c d'  e\\x", argv, 8, &argc, err, sizeof err), FL_OK);
    assert_int_equal(argc, 4);
    assert_string_equal(argv[0], "put");
    assert_string_equal(argv[1], "a b\n");
    assert_string_equal(argv[2], "c d");
    assert_string_equal(argv[3], "e\\x");
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    assert_int_equal(client_script_split("put \"open", argv, 8, &argc, err, sizeof err),
                     FL_ERR_INVALID);
    assert_int_equal(client_script_split("a b c", argv, 2, &argc, err, sizeof err), FL_ERR_INVALID);
}

static void test_compares(void **state)
{
    Etcdserverpb__Compare *c = NULL;
    assert_int_equal(client_compare_parse("mod(\"k\") > \"5\"", &c, err, sizeof err), FL_OK);
    assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD);
    assert_int_equal(c->result, ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER);
    assert_int_equal(c->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION);
    assert_int_equal(c->mod_revision, 5);
    assert_bytes(c->key, "k", 1);
    client_free_response(c);

    assert_int_equal(client_compare_parse("val(\"a\\\"b\") != \"x y\"", &c, err, sizeof err),
                     FL_OK);
    assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE);
    assert_int_equal(c->result, ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL);
    assert_bytes(c->key, "a\"b", 3);
    assert_bytes(c->value, "x y", 3);
    client_free_response(c);

    assert_int_equal(client_compare_parse("ver(\"k\") < \"2\"", &c, err, sizeof err), FL_OK);
    assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION);
    assert_int_equal(c->version, 2);
    client_free_response(c);
    assert_int_equal(client_compare_parse("c(\"k\") = \"0\"", &c, err, sizeof err), FL_OK);
    assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE);
    client_free_response(c);
    assert_int_equal(client_compare_parse("lease(\"k\") = \"0\"", &c, err, sizeof err), FL_OK);
    assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE);
    client_free_response(c);

    assert_int_equal(client_compare_parse("bogus", &c, err, sizeof err), FL_ERR_INVALID);
    assert_string_equal(err, "malformed comparison: bogus");
    assert_int_equal(client_compare_parse("size(\"k\") = \"1\"", &c, err, sizeof err),
                     FL_ERR_INVALID);
    assert_int_equal(client_compare_parse("mod(\"k\") = \"x\"", &c, err, sizeof err),
                     FL_ERR_INVALID);
    assert_string_equal(err, "invalid txn compare request: mod(\"k\") = \"x\"");
    assert_int_equal(client_compare_parse("mod(\"k\") ~ \"1\"", &c, err, sizeof err),
                     FL_ERR_INVALID);
    assert_int_equal(client_compare_parse("mod(\"k\") = \"1\" extra", &c, err, sizeof err),
                     FL_ERR_INVALID);
    assert_null(c);
}

static void test_script(void **state)
{
    const char *s = "mod(\"x\") > \"0\"\nvalue(\"y\") = \"1\"\n\nput x 2\nget x --prefix\ndel "
                    "nothing\n\nput y 1\n\n";
    Etcdserverpb__TxnRequest *t = NULL;
    assert_int_equal(client_txn_script_parse(s, strlen(s), &t, err, sizeof err), FL_OK);
    assert_int_equal(t->n_compare, 2);
    assert_int_equal(t->n_success, 3);
    assert_int_equal(t->n_failure, 1);
    assert_int_equal(t->success[1]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE);
    assert_bytes(t->success[1]->request_range->range_end, "y", 1);
    assert_int_equal(t->failure[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
    /* it packs: a request the library can send */
    assert_true(protobuf_c_message_get_packed_size(&t->base) > 0);
    client_free_response(t);

    /* End of input closes the open sections; no compares is fine. */
    const char *s2 = "\nput a b";
    assert_int_equal(client_txn_script_parse(s2, strlen(s2), &t, err, sizeof err), FL_OK);
    assert_int_equal(t->n_compare, 0);
    assert_int_equal(t->n_success, 1);
    assert_int_equal(t->n_failure, 0);
    client_free_response(t);

    const char *bad[] = {
        "bogus\n\n\n",               /* compare */
        "\nput\n\n",                 /* op without arguments */
        "\nfrob x\n\n",              /* unknown op */
        "\nput k\n\n",               /* put without a value */
        "\nget a --nope\n\n",        /* unknown flag */
        "\n\n\nput after the end\n", /* input after the failure section */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        assert_int_equal(client_txn_script_parse(bad[i], strlen(bad[i]), &t, err, sizeof err),
                         FL_ERR_INVALID);
        assert_null(t);
        assert_true(err[0] != '\0');
    }
}

static void test_builder_sections(void **state)
{
    client_txn_builder b;
    assert_int_equal(client_txn_builder_init(&b), FL_OK);
    assert_int_equal(b.section, CLIENT_TXN_COMPARES);
    assert_int_equal(client_txn_builder_line(&b, "  ", err, sizeof err), FL_OK);
    assert_int_equal(b.section, CLIENT_TXN_SUCCESS);
    assert_int_equal(client_txn_builder_line(&b, "  put k v  ", err, sizeof err), FL_OK);
    assert_int_equal(client_txn_builder_line(&b, "", err, sizeof err), FL_OK);
    assert_int_equal(b.section, CLIENT_TXN_FAILURE);
    assert_int_equal(client_txn_builder_line(&b, "", err, sizeof err), FL_OK);
    assert_int_equal(b.section, CLIENT_TXN_DONE);
    Etcdserverpb__TxnRequest *t = client_txn_builder_take(&b);
    assert_int_equal(t->n_success, 1);
    client_free_response(t);
    client_txn_builder_free(&b); /* after take: nothing left, no double free */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_forms),        cmocka_unit_test(test_get_errors),
        cmocka_unit_test(test_put_del),          cmocka_unit_test(test_split),
        cmocka_unit_test(test_compares),         cmocka_unit_test(test_script),
        cmocka_unit_test(test_builder_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

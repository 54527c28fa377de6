/* api.error: every fl_err maps to a gRPC status, and the etcd texts are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "api/internal.h"
#include "api/status.h"

static void test_every_error_has_a_status(void **state)
{
    for (int e = 0; e < FL_ERR__COUNT; e++) {
        int code = -1;
        const char *msg = NULL;
        api_error_status((fl_err)e, &code, &msg);
        assert_non_null(msg);
        if (e == FL_OK) {
            assert_int_equal(code, 0);
            continue;
        }
        /* A real error never says OK, never falls to the unknown default. */
        assert_true(code > 0 && code <= 16);
        assert_int_not_equal(code, API_GRPC_UNKNOWN);
        assert_true(strncmp(msg, "etcdserver: ", 12) == 0);
    }
}

static void test_etcd_texts(void **state)
{
    static const struct {
        fl_err err;
        int code;
        const char *msg;
    } want[] = {
        {FL_ERR_KEY_EMPTY, 3, "etcdserver: key is not provided"},
        {FL_ERR_COMPACTED, 11, "etcdserver: mvcc: required revision has been compacted"},
        {FL_ERR_FUTURE_REV, 11, "etcdserver: mvcc: required revision is a future revision"},
        {FL_ERR_DUPLICATE_KEY, 3, "etcdserver: duplicate key given in txn request"},
        {FL_ERR_TOO_MANY_OPS, 3, "etcdserver: too many operations in txn request"},
        {FL_ERR_LEASE_NOT_FOUND, 5, "etcdserver: requested lease not found"},
        {FL_ERR_NOT_FOUND, 3, "etcdserver: key not found"},
        {FL_ERR_NO_SPACE_QUOTA, 8, "etcdserver: mvcc: database space exceeded"},
        {FL_ERR_TOO_LARGE, 3, "etcdserver: request is too large"},
        {FL_ERR_STOPPED, 14, "etcdserver: server stopped"},
        {FL_ERR_TIMEOUT, 14, "etcdserver: request timed out"},
        {FL_ERR_BUSY, 8, "etcdserver: too many requests"},
        {FL_ERR_CORRUPT, 15, "etcdserver: corrupt cluster"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int code;
        const char *msg;
        api_error_status(want[i].err, &code, &msg);
        assert_int_equal(code, want[i].code);
        assert_string_equal(msg, want[i].msg);
    }
}

static void test_out_of_range_is_unknown(void **state)
{
    int code;
    const char *msg;
    api_error_status(FL_ERR__COUNT, &code, &msg);
    assert_int_equal(code, API_GRPC_UNKNOWN);
    api_error_status((fl_err)-1, &code, &msg);
    assert_int_equal(code, API_GRPC_UNKNOWN);
}

static void test_percent_encoding(void **state)
{
    char out[64];
    assert_int_equal(api_percent_encode("plain text: ok", out, sizeof(out)), 14);
    assert_string_equal(out, "plain text: ok");
    api_percent_encode("100% \n\xc3\xa9", out, sizeof(out));
    assert_string_equal(out, "100%25 %0A%C3%A9");
    /* Truncates whole escapes, stays NUL-terminated. */
    char small[6];
    api_percent_encode("ab\n\n", small, sizeof(small));
    assert_string_equal(small, "ab%0A");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_error_has_a_status),
        cmocka_unit_test(test_etcd_texts),
        cmocka_unit_test(test_out_of_range_is_unknown),
        cmocka_unit_test(test_percent_encoding),
    };
    return cmocka_run_group_tests_name("api.error", tests, NULL, NULL);
}

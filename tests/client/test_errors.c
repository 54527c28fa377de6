/* client.errors: gRPC status + etcd message -> fl_err, and the wire helpers
 * (grpc-message decoding, grpc-timeout, endpoint parsing, prefix range end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "client/client_internal.h"

static void test_etcd_texts(void **state)
{
    /* The texts etcd 3.4 sends (checked against a real etcd with etcdctl). */
    assert_int_equal(client_error_from_grpc(3, "etcdserver: key is not provided"),
                     FL_ERR_KEY_EMPTY);
    assert_int_equal(
        client_error_from_grpc(11, "etcdserver: mvcc: required revision has been compacted"),
        FL_ERR_COMPACTED);
    assert_int_equal(
        client_error_from_grpc(11, "etcdserver: mvcc: required revision is a future revision"),
        FL_ERR_FUTURE_REV);
    assert_int_equal(client_error_from_grpc(3, "etcdserver: duplicate key given in txn request"),
                     FL_ERR_DUPLICATE_KEY);
    assert_int_equal(client_error_from_grpc(3, "etcdserver: too many operations in txn request"),
                     FL_ERR_TOO_MANY_OPS);
    assert_int_equal(client_error_from_grpc(3, "etcdserver: request is too large"),
                     FL_ERR_TOO_LARGE);
    assert_int_equal(client_error_from_grpc(5, "etcdserver: requested lease not found"),
                     FL_ERR_LEASE_NOT_FOUND);
    assert_int_equal(client_error_from_grpc(8, "etcdserver: mvcc: database space exceeded"),
                     FL_ERR_NO_SPACE_QUOTA);
    assert_int_equal(client_error_from_grpc(3, "etcdserver: key not found"), FL_ERR_NOT_FOUND);
    /* Without the "etcdserver: " prefix too. */
    assert_int_equal(client_error_from_grpc(11, "mvcc: required revision has been compacted"),
                     FL_ERR_COMPACTED);
}

static void test_codes(void **state)
{
    assert_int_equal(client_error_from_grpc(0, "anything"), FL_OK);
    assert_int_equal(client_error_from_grpc(4, "context deadline exceeded"), FL_ERR_TIMEOUT);
    assert_int_equal(client_error_from_grpc(14, "etcdserver: leader changed"), FL_ERR_UNAVAILABLE);
    assert_int_equal(client_error_from_grpc(12, "unknown method"), FL_ERR_UNIMPLEMENTED);
    assert_int_equal(client_error_from_grpc(3, "some new validation text"), FL_ERR_INVALID);
    assert_int_equal(client_error_from_grpc(5, ""), FL_ERR_NOT_FOUND);
    assert_int_equal(client_error_from_grpc(8, NULL), FL_ERR_BUSY);
    assert_int_equal(client_error_from_grpc(13, "internal"), FL_ERR_IO);
}

static void test_percent_decode(void **state)
{
    char out[64];
    const char *in = "etcdserver:%20key is%25 %zz";
    client_percent_decode((const uint8_t *)in, strlen(in), out, sizeof out);
    assert_string_equal(out, "etcdserver: key is% %zz");
    client_percent_decode((const uint8_t *)"abcdef", 6, out, 4); /* truncates, terminates */
    assert_string_equal(out, "abc");
    client_percent_decode((const uint8_t *)"x%4", 3, out, sizeof out); /* short escape at end */
    assert_string_equal(out, "x%4");
}

static void test_grpc_timeout(void **state)
{
    char buf[24];
    client_grpc_timeout(5000, buf, sizeof buf);
    assert_string_equal(buf, "5000m");
    client_grpc_timeout(99999999, buf, sizeof buf);
    assert_string_equal(buf, "99999999m");
    client_grpc_timeout(100000000, buf, sizeof buf); /* 9 digits: switch to seconds */
    assert_string_equal(buf, "100000S");
}

static void test_endpoints(void **state)
{
    char host[64];
    int port = 0;
    assert_int_equal(client_parse_endpoint("127.0.0.1:2379", host, sizeof host, &port), FL_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 2379);
    assert_int_equal(client_parse_endpoint("http://localhost:23790/", host, sizeof host, &port),
                     FL_OK);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 23790);
    assert_int_equal(client_parse_endpoint("[::1]:2379", host, sizeof host, &port), FL_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(client_parse_endpoint("https://x:1", host, sizeof host, &port),
                     FL_ERR_INVALID);
    assert_int_equal(client_parse_endpoint("nohost", host, sizeof host, &port), FL_ERR_INVALID);
    assert_int_equal(client_parse_endpoint("h:0", host, sizeof host, &port), FL_ERR_INVALID);
    assert_int_equal(client_parse_endpoint("h:65536", host, sizeof host, &port), FL_ERR_INVALID);
    assert_int_equal(client_parse_endpoint(":2379", host, sizeof host, &port), FL_ERR_INVALID);
}

static void test_prefix_end(void **state)
{
    uint8_t end[8];
    size_t n = client_prefix_end((const uint8_t *)"abc", 3, end);
    assert_int_equal(n, 3);
    assert_memory_equal(end, "abd", 3);
    n = client_prefix_end((const uint8_t *)"a\xff\xff", 3, end);
    assert_int_equal(n, 1);
    assert_memory_equal(end, "b", 1);
    n = client_prefix_end((const uint8_t *)"\xff", 1, end);
    assert_int_equal(n, 1);
    assert_int_equal(end[0], 0);
}

static void test_method_paths(void **state)
{
    assert_string_equal(client_method_path(CLIENT_RANGE), "/etcdserverpb.KV/Range");
    assert_string_equal(client_method_path(CLIENT_COMPACT), "/etcdserverpb.KV/Compact");
    assert_string_equal(client_method_path(CLIENT_STATUS), "/etcdserverpb.Maintenance/Status");
    assert_string_equal(client_method_path(CLIENT_MEMBER_LIST), "/etcdserverpb.Cluster/MemberList");
    assert_ptr_equal(client_method_response_descriptor(CLIENT_TXN),
                     &etcdserverpb__txn_response__descriptor);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etcd_texts),     cmocka_unit_test(test_codes),
        cmocka_unit_test(test_percent_decode), cmocka_unit_test(test_grpc_timeout),
        cmocka_unit_test(test_endpoints),      cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_method_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

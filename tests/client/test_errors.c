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

static void test_cluster_texts(void **state)
{
    /* etcd 3.4's texts (seen with etcdctl against etcd 3.4.23), each with its own fl_err. */
    assert_int_equal(client_error_from_grpc(5, "etcdserver: member not found"),
                     FL_ERR_MEMBER_NOT_FOUND);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: Peer URLs already exists"),
                     FL_ERR_PEER_URL_EXISTS);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: peerURL exists"),
                     FL_ERR_PEER_URL_EXISTS);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: can only promote a learner member"),
                     FL_ERR_MEMBER_NOT_LEARNER);
    assert_int_equal(
        client_error_from_grpc(
            9, "etcdserver: can only promote a learner member which is in sync with leader"),
        FL_ERR_LEARNER_NOT_READY);
    assert_int_equal(
        client_error_from_grpc(
            9, "etcdserver: re-configuration failed due to not enough started members"),
        FL_ERR_NOT_ENOUGH_STARTED);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: too many learner members in cluster"),
                     FL_ERR_TOO_MANY_LEARNERS);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: bad leader transferee"),
                     FL_ERR_BAD_LEADER_TRANSFEREE);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: not leader"), FL_ERR_NOT_LEADER);
    assert_int_equal(client_error_from_grpc(9, "etcdserver: ID removed"), FL_ERR_MEMBER_ID_REMOVED);
    /* "no leader" keeps meaning unavailable (bench stops on it) */
    assert_int_equal(client_error_from_grpc(14, "etcdserver: no leader"), FL_ERR_UNAVAILABLE);
}

/* Expects url to be refused with exactly etcd's text want (NULL: accepted). */
static void expect_url(const char *url, const char *want)
{
    char err[CLIENT_MESSAGE_BYTES];
    const char *urls[] = {url};
    fl_err e = client_check_urls(urls, 1, err, sizeof err);
    if (want == NULL) {
        assert_int_equal(e, FL_OK);
        assert_string_equal(err, "");
    } else {
        assert_int_equal(e, FL_ERR_INVALID);
        assert_string_equal(err, want);
    }
}

static void test_check_urls(void **state)
{
    /* The texts of etcd's types.NewURLs (etcdctl 3.4.23 prints them for member add). */
    expect_url("http://127.0.0.1:12380", NULL);
    expect_url("https://[::1]:2380", NULL);
    expect_url("unix://sock:1", NULL);
    expect_url(" http://h:1 ", NULL); /* trimmed, as strings.TrimSpace */
    expect_url("http://h:1?x=1", NULL);
    expect_url("notaurl", "URL scheme must be http, https, unix, or unixs: notaurl");
    expect_url("ftp://h:1", "URL scheme must be http, https, unix, or unixs: ftp://h:1");
    expect_url("http://h", "URL address does not have the form \"host:port\": http://h");
    expect_url("http://::1:2380",
               "URL address does not have the form \"host:port\": http://::1:2380");
    expect_url("http:h:1", "URL address does not have the form \"host:port\": http:h:1");
    expect_url("http://h:1/", "URL must not contain a path: http://h:1/");
    expect_url("http://h:1/p", "URL must not contain a path: http://h:1/p");
    expect_url("http://h:x", "parse \"http://h:x\": invalid port \":x\" after host");
    expect_url(":x", "parse \":x\": missing protocol scheme");
    /* the first bad one of several is reported; counts are bounded */
    char err[CLIENT_MESSAGE_BYTES];
    const char *two[] = {"http://a:1", "http://b"};
    assert_int_equal(client_check_urls(two, 2, err, sizeof err), FL_ERR_INVALID);
    assert_string_equal(err, "URL address does not have the form \"host:port\": http://b");
    assert_int_equal(client_check_urls(two, 0, err, sizeof err), FL_ERR_INVALID);
    assert_int_equal(client_check_urls(two, CLIENT_MAX_PEER_URLS + 1, err, sizeof err),
                     FL_ERR_INVALID);
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
    assert_string_equal(client_method_path(CLIENT_MEMBER_ADD), "/etcdserverpb.Cluster/MemberAdd");
    assert_string_equal(client_method_path(CLIENT_MEMBER_PROMOTE),
                        "/etcdserverpb.Cluster/MemberPromote");
    assert_string_equal(client_method_path(CLIENT_MOVE_LEADER),
                        "/etcdserverpb.Maintenance/MoveLeader");
    /* every method has a path and both descriptors, request and response of one name */
    for (int m = 0; m < CLIENT_METHOD__COUNT; m++) {
        assert_non_null(client_method_path((client_method)m));
        const ProtobufCMessageDescriptor *rq = client_method_request_descriptor((client_method)m);
        const ProtobufCMessageDescriptor *rs = client_method_response_descriptor((client_method)m);
        assert_non_null(rq);
        assert_non_null(rs);
        assert_non_null(strstr(client_method_path((client_method)m), "/etcdserverpb."));
    }
    assert_ptr_equal(client_method_request_descriptor(CLIENT_MEMBER_UPDATE),
                     &etcdserverpb__member_update_request__descriptor);
    assert_ptr_equal(client_method_response_descriptor(CLIENT_MOVE_LEADER),
                     &etcdserverpb__move_leader_response__descriptor);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etcd_texts),     cmocka_unit_test(test_codes),
        cmocka_unit_test(test_percent_decode), cmocka_unit_test(test_grpc_timeout),
        cmocka_unit_test(test_endpoints),      cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_method_paths),   cmocka_unit_test(test_cluster_texts),
        cmocka_unit_test(test_check_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* client.wire: the client against an in-process fake gRPC server (nghttp2
 * server session on the same uv loop) that misbehaves on demand: refused
 * streams, GOAWAY, missing grpc-status, HTTP 503, a malformed message, a
 * percent-encoded etcd error. Deterministic, no real member needed. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "client/client.h"

typedef enum scenario {
    S_OK,          /* a RangeResponse with count 7 */
    S_REFUSE_ONCE, /* RST_STREAM(REFUSED_STREAM) the first stream, then S_OK */
    S_GOAWAY_ONCE, /* GOAWAY(last stream 0) on the first stream, then S_OK */
    S_NO_STATUS,   /* a message but no grpc-status */
    S_HTTP_503,    /* :status 503, nothing else */
    S_BAD_MESSAGE, /* grpc-status 0 with a body that is not a RangeResponse */
    S_ETCD_ERROR,  /* trailers-only: grpc-status 3, percent-encoded etcd text */
    S_BAD_STATUS,  /* a good message, then grpc-status "abc" */
} scenario;

static scenario current;
static int streams_seen, refusals_left;
static char last_timeout[32], last_path[64], last_content_type[32], last_te[16];

/* ---- the fake server ---------------------------------------------------- */

typedef struct fake_conn {
    uv_tcp_t tcp;
    nghttp2_session *session;
    uint8_t body[64];
    size_t body_len, body_sent;
} fake_conn;

static uv_tcp_t listener;
static int listen_port;

static void fake_flush(fake_conn *fc);

static void on_fake_write(uv_write_t *w, int status)
{
    free(w);
}

static void fake_flush(fake_conn *fc)
{
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(fc->session, &data)) > 0) {
        uv_write_t *w = malloc(sizeof *w + (size_t)n);
        memcpy(w + 1, data, (size_t)n);
        uv_buf_t buf = uv_buf_init((char *)(w + 1), (unsigned)n);
        if (uv_write(w, (uv_stream_t *)&fc->tcp, &buf, 1, on_fake_write) != 0)
            free(w);
    }
}

static ssize_t fake_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *flags, nghttp2_data_source *src, void *user)
{
    fake_conn *fc = user;
    size_t n = fc->body_len - fc->body_sent;
    if (n > length)
        n = length;
    memcpy(buf, fc->body + fc->body_sent, n);
    fc->body_sent += n;
    if (fc->body_sent == fc->body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (current != S_NO_STATUS) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            const char *status = current == S_BAD_STATUS ? "abc" : "0";
            nghttp2_nv trailer[] = {
                {(uint8_t *)"grpc-status", (uint8_t *)status, 11, strlen(status), 0}};
            nghttp2_submit_trailer(s, stream_id, trailer, 1);
        }
    }
    return (ssize_t)n;
}

#define NV(k, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

static void fake_answer(fake_conn *fc, int32_t id)
{
    streams_seen++;
    if (current == S_REFUSE_ONCE && refusals_left > 0) {
        refusals_left--;
        nghttp2_submit_rst_stream(fc->session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return;
    }
    if (current == S_GOAWAY_ONCE && refusals_left > 0) {
        refusals_left--;
        nghttp2_submit_goaway(fc->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        return;
    }
    if (current == S_HTTP_503) {
        nghttp2_nv h[] = {NV(":status", "503")};
        nghttp2_submit_response(fc->session, id, h, 1, NULL);
        return;
    }
    if (current == S_ETCD_ERROR) {
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                          NV("grpc-status", "3"),
                          NV("grpc-message", "etcdserver:%20key is not provided")};
        nghttp2_submit_response(fc->session, id, h, 4, NULL);
        return;
    }
    /* a message: a RangeResponse with count 7, or garbage */
    Etcdserverpb__RangeResponse r;
    etcdserverpb__range_response__init(&r);
    r.count = 7;
    size_t len = protobuf_c_message_get_packed_size(&r.base);
    assert_true(len + 5 <= sizeof fc->body);
    protobuf_c_message_pack(&r.base, fc->body + 5);
    if (current == S_BAD_MESSAGE) {
        len = 3;
        memcpy(fc->body + 5, "\xff\xff\xff", 3); /* an invalid varint tag */
    }
    fc->body[0] = 0;
    fc->body[1] = fc->body[2] = fc->body[3] = 0;
    fc->body[4] = (uint8_t)len;
    fc->body_len = len + 5;
    fc->body_sent = 0;
    nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider dp = {.read_callback = fake_read_body};
    nghttp2_submit_response(fc->session, id, h, 2, &dp);
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    snprintf(dst, cap, "%.*s", (int)len, (const char *)v);
}

static int fake_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                          size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                          void *user)
{
    if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0)
        copy_value(last_timeout, sizeof last_timeout, value, valuelen);
    else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
        copy_value(last_path, sizeof last_path, value, valuelen);
    else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
        copy_value(last_content_type, sizeof last_content_type, value, valuelen);
    else if (namelen == 2 && memcmp(name, "te", 2) == 0)
        copy_value(last_te, sizeof last_te, value, valuelen);
    return 0;
}

static int fake_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    /* the request is complete when its stream ends from the client's side */
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        fake_answer(user, f->hd.stream_id);
    return 0;
}

static void fake_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    static char space[65536];
    *buf = uv_buf_init(space, sizeof space);
}

static void fake_closed(uv_handle_t *h)
{
    fake_conn *fc = h->data;
    nghttp2_session_del(fc->session);
    free(fc);
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    fake_conn *fc = st->data;
    if (n < 0) {
        uv_close((uv_handle_t *)&fc->tcp, fake_closed);
        return;
    }
    if (nghttp2_session_mem_recv(fc->session, (const uint8_t *)buf->base, (size_t)n) < 0) {
        uv_close((uv_handle_t *)&fc->tcp, fake_closed);
        return;
    }
    fake_flush(fc);
}

static void fake_accept(uv_stream_t *server, int status)
{
    fake_conn *fc = calloc(1, sizeof *fc); /* freed in fake_closed */
    uv_tcp_init(server->loop, &fc->tcp);
    fc->tcp.data = fc;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&fc->tcp), 0);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, fake_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, fake_on_frame);
    nghttp2_session_server_new(&fc->session, cb, fc);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(fc->session, NGHTTP2_FLAG_NONE, NULL, 0);
    uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
    fake_flush(fc);
}

/* ---- the client side ------------------------------------------------------ */

typedef struct result {
    bool done;
    client_status st;
    void *resp;
} result;

static void on_done(void *ctx, const client_status *st, void *resp)
{
    result *r = ctx;
    r->done = true;
    r->st = *st;
    r->resp = resp;
}

/* One Range through a fresh client, under scenario s; returns the result. */
static result call(uv_loop_t *loop, scenario s, uint64_t timeout_ms)
{
    current = s;
    refusals_left = 1;
    streams_seen = 0;
    char ep[32];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", listen_port);
    const char *eps[] = {ep};
    client_options o = {.endpoints = eps, .endpoint_count = 1};
    client *c = NULL;
    assert_int_equal(client_open(loop, &o, &c), FL_OK);
    Etcdserverpb__RangeRequest req;
    etcdserverpb__range_request__init(&req);
    req.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    result r = {0};
    assert_int_equal(client_call(c, CLIENT_RANGE, &req, timeout_ms, on_done, &r), FL_OK);
    while (!r.done)
        uv_run(loop, UV_RUN_ONCE);
    client_close(c, NULL, NULL);
    for (int i = 0; i < 20; i++) /* let the close and the server's side settle */
        uv_run(loop, UV_RUN_NOWAIT);
    return r;
}

static int setup(void **state)
{
    uv_loop_t *loop = malloc(sizeof *loop);
    uv_loop_init(loop);
    uv_tcp_init(loop, &listener);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&listener, 16, fake_accept), 0);
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
    listen_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *state = loop;
    return 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h == (uv_handle_t *)&listener ? NULL : fake_closed);
}

static int teardown(void **state)
{
    uv_loop_t *loop = *state;
    uv_walk(loop, walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    free(loop);
    return 0;
}

static void test_ok_and_headers(void **state)
{
    result r = call(*state, S_OK, 1500);
    assert_int_equal(r.st.err, FL_OK);
    assert_int_equal(((Etcdserverpb__RangeResponse *)r.resp)->count, 7);
    client_free_response(r.resp);
    assert_string_equal(last_path, "/etcdserverpb.KV/Range");
    assert_string_equal(last_content_type, "application/grpc");
    assert_string_equal(last_te, "trailers");
    /* the deadline travels as grpc-timeout, in ms, at most the timeout */
    size_t n = strlen(last_timeout);
    assert_true(n >= 2 && last_timeout[n - 1] == 'm');
    long ms = strtol(last_timeout, NULL, 10);
    assert_true(ms > 1000 && ms <= 1500);
}

static void test_refused_stream_is_retried(void **state)
{
    result r = call(*state, S_REFUSE_ONCE, 5000);
    assert_int_equal(r.st.err, FL_OK);
    assert_int_equal(streams_seen, 2); /* refused once, answered on the retry */
    client_free_response(r.resp);
}

static void test_goaway_retries_on_a_new_connection(void **state)
{
    result r = call(*state, S_GOAWAY_ONCE, 5000);
    if (r.st.err != FL_OK)
        fail_msg("%s: %s", fl_err_name(r.st.err), r.st.message);
    assert_int_equal(streams_seen, 2);
    client_free_response(r.resp);
}

static void test_missing_status(void **state)
{
    result r = call(*state, S_NO_STATUS, 5000);
    assert_int_equal(r.st.err, FL_ERR_UNAVAILABLE);
    assert_int_equal(r.st.grpc_code, -1);
    assert_string_equal(r.st.message, "response without grpc-status");
    assert_null(r.resp);
}

/* atoi would read "abc" as 0, i.e. success with the message as the answer. */
static void test_malformed_status_is_an_error(void **state)
{
    result r = call(*state, S_BAD_STATUS, 5000);
    assert_int_equal(r.st.err, FL_ERR_UNAVAILABLE);
    assert_string_equal(r.st.message, "response without grpc-status");
    assert_null(r.resp);
}

static void test_http_503(void **state)
{
    result r = call(*state, S_HTTP_503, 5000);
    assert_int_equal(r.st.err, FL_ERR_UNAVAILABLE);
    assert_string_equal(r.st.message, "unexpected HTTP status 503");
}

static void test_bad_message(void **state)
{
    result r = call(*state, S_BAD_MESSAGE, 5000);
    assert_int_equal(r.st.err, FL_ERR_CORRUPT);
    assert_null(r.resp);
}

static void test_etcd_error_trailers_only(void **state)
{
    result r = call(*state, S_ETCD_ERROR, 5000);
    assert_int_equal(r.st.err, FL_ERR_KEY_EMPTY);
    assert_int_equal(r.st.grpc_code, 3);
    assert_string_equal(r.st.message, "etcdserver: key is not provided");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_and_headers),
        cmocka_unit_test(test_refused_stream_is_retried),
        cmocka_unit_test(test_goaway_retries_on_a_new_connection),
        cmocka_unit_test(test_missing_status),
        cmocka_unit_test(test_malformed_status_is_an_error),
        cmocka_unit_test(test_http_503),
        cmocka_unit_test(test_bad_message),
        cmocka_unit_test(test_etcd_error_trailers_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* api.http2: the gRPC server end to end on a real loop and socket, driven by
 * an nghttp2 client in the same process, against the fake server: Put and
 * Range, split DATA frames, unknown and unserved methods, garbage and
 * oversized bodies, a client that resets or disconnects while its request is
 * pending, a bad preface, many streams, and closing with connections open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "api/api.h"
#include "fake_server.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

#define STREAMS_MAX 512

static void api_grpc_write_prefix_for_test(uint8_t *out, uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

typedef struct tstream {
    int32_t id;
    int grpc_status; /* -1 until trailers */
    char grpc_message[512];
    uint8_t *body;
    size_t body_len;
    size_t body_cap;
    bool closed;
    uint32_t close_code;
    /* request body */
    const uint8_t *req;
    size_t req_len;
    size_t req_off;
    size_t split; /* bytes per DATA frame */
    bool end_stream;
} tstream;

typedef struct tclient {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    nghttp2_session *session;
    bool connected;
    bool eof;
    bool closed_handle;
    tstream streams[STREAMS_MAX];
    size_t nstreams;
    uint8_t rbuf[65536];
} tclient;

typedef struct fixture {
    uv_loop_t loop;
    server *srv;
    api_grpc_server *api;
    int port;
    bool api_closed;
} fixture;

/* ---- plumbing --------------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void tc_flush(tclient *tc);

/* Runs the loop until cond(arg) or ~20 s; returns cond's last value. */
static bool run_until(fixture *fx, tclient *tc, bool (*cond)(void *), void *arg)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(&fx->loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, on_timeout, 20000, 0);
    bool ok = cond(arg);
    while (!ok && !timed_out) {
        if (tc) {
            tc_flush(tc);
        }
        uv_run(&fx->loop, UV_RUN_ONCE);
        ok = cond(arg);
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    return ok;
}

static void on_write_done(uv_write_t *req, int status)
{
    free(req->data);
    free(req);
}

static void tc_write_raw(tclient *tc, const void *data, size_t len)
{
    uv_write_t *req = malloc(sizeof(*req));
    char *copy = malloc(len);
    memcpy(copy, data, len);
    req->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    assert_int_equal(uv_write(req, (uv_stream_t *)&tc->tcp, &b, 1, on_write_done), 0);
}

static void tc_flush(tclient *tc)
{
    if (!tc->connected || tc->session == NULL || tc->eof) {
        return;
    }
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(tc->session, &data);
        assert_true(n >= 0);
        if (n == 0) {
            break;
        }
        tc_write_raw(tc, data, (size_t)n);
    }
}

static void tc_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    tclient *tc = h->data;
    buf->base = (char *)tc->rbuf;
    buf->len = sizeof(tc->rbuf);
}

static void tc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tclient *tc = s->data;
    if (nread < 0) {
        tc->eof = true;
        uv_read_stop(s);
        return;
    }
    if (tc->session != NULL && nread > 0) {
        ssize_t rv = nghttp2_session_mem_recv(tc->session, (uint8_t *)buf->base, (size_t)nread);
        assert_true(rv >= 0);
    }
}

static void tc_on_connect(uv_connect_t *req, int status)
{
    tclient *tc = req->data;
    assert_int_equal(status, 0);
    tc->connected = true;
    uv_read_start((uv_stream_t *)&tc->tcp, tc_alloc, tc_read);
}

static tstream *find_stream(tclient *tc, int32_t id)
{
    for (size_t i = 0; i < tc->nstreams; i++) {
        if (tc->streams[i].id == id) {
            return &tc->streams[i];
        }
    }
    return NULL;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    tstream *st = find_stream(ud, f->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char tmp[16] = {0};
        memcpy(tmp, value, vl < 15 ? vl : 15);
        st->grpc_status = atoi(tmp);
    } else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t n = vl < sizeof(st->grpc_message) - 1 ? vl : sizeof(st->grpc_message) - 1;
        memcpy(st->grpc_message, value, n);
        st->grpc_message[n] = 0;
    }
    return 0;
}

static int cb_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    tstream *st = find_stream(ud, id);
    if (st != NULL) {
        if (st->body_len + len > st->body_cap) {
            st->body_cap = (st->body_len + len) * 2;
            st->body = realloc(st->body, st->body_cap);
        }
        memcpy(st->body + st->body_len, data, len);
        st->body_len += len;
    }
    return 0;
}

static int cb_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    tstream *st = find_stream(ud, id);
    if (st != NULL) {
        st->closed = true;
        st->close_code = code;
    }
    return 0;
}

static bool is_connected(void *arg)
{
    return ((tclient *)arg)->connected;
}

static int tc_rcvbuf; /* if set, SO_RCVBUF of the next client socket, before it connects */

static void tc_connect(fixture *fx, tclient *tc, bool http2)
{
    memset(tc, 0, sizeof(*tc));
    tc->loop = &fx->loop;
    uv_tcp_init(&fx->loop, &tc->tcp);
    tc->tcp.data = tc;
    tc->connect_req.data = tc;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", fx->port, &addr);
    assert_int_equal(
        uv_tcp_connect(&tc->connect_req, &tc->tcp, (struct sockaddr *)&addr, tc_on_connect), 0);
    if (tc_rcvbuf != 0) {
        /* Before the handshake ends, so the advertised window stays small. */
        int size = tc_rcvbuf;
        uv_recv_buffer_size((uv_handle_t *)&tc->tcp, &size);
        tc_rcvbuf = 0;
    }
    if (!http2) {
        assert_true(run_until(fx, NULL, is_connected, tc));
        return;
    }
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_close);
    assert_int_equal(nghttp2_session_client_new(&tc->session, cbs, tc), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
    nghttp2_submit_settings(tc->session, NGHTTP2_FLAG_NONE, iv, 1);
    /* The session exists before any server byte can arrive. */
    assert_true(run_until(fx, NULL, is_connected, tc));
}

static void tc_on_close(uv_handle_t *h)
{
    ((tclient *)h->data)->closed_handle = true;
}

static void tc_close(fixture *fx, tclient *tc)
{
    if (tc->session) {
        nghttp2_session_del(tc->session);
        tc->session = NULL;
    }
    uv_close((uv_handle_t *)&tc->tcp, tc_on_close);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < tc->nstreams; i++) {
        free(tc->streams[i].body);
        free((void *)tc->streams[i].req);
    }
    tc->nstreams = 0;
}

static ssize_t req_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    tstream *st = src->ptr;
    size_t n = st->req_len - st->req_off;
    if (n > length) {
        n = length;
    }
    if (st->split && n > st->split) {
        n = st->split;
    }
    memcpy(buf, st->req + st->req_off, n);
    st->req_off += n;
    if (st->req_off == st->req_len) {
        if (st->end_stream) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            return NGHTTP2_ERR_DEFERRED; /* keep the stream open, like Watch */
        }
    }
    return (ssize_t)n;
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* Starts a call with `body` (copied) as the request; split = bytes per DATA frame. */
static tstream *tc_call_raw(tclient *tc, const char *path, const uint8_t *body, size_t len,
                            size_t split, bool end_stream)
{
    assert_true(tc->nstreams < STREAMS_MAX);
    tstream *st = &tc->streams[tc->nstreams++];
    memset(st, 0, sizeof(*st));
    st->grpc_status = -1;
    uint8_t *copy = malloc(len + 1);
    memcpy(copy, body, len);
    st->req = copy;
    st->req_len = len;
    st->split = split;
    st->end_stream = end_stream;
    /* clientv3 sends the endpoint URL as :authority for --cluster calls. */
    nghttp2_nv nva[] = {HDR(":method", "POST"),
                        HDR(":scheme", "http"),
                        HDR(":authority", "http://127.0.0.1:2379"),
                        HDR(":path", path),
                        HDR("content-type", "application/grpc"),
                        HDR("te", "trailers")};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = req_read};
    st->id = nghttp2_submit_request(tc->session, NULL, nva, 6, &prd, NULL);
    assert_true(st->id > 0);
    return st;
}

static tstream *tc_call(tclient *tc, const char *path, const ProtobufCMessage *msg, size_t split)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(size + 5);
    buf[0] = 0;
    buf[1] = (uint8_t)(size >> 24);
    buf[2] = (uint8_t)(size >> 16);
    buf[3] = (uint8_t)(size >> 8);
    buf[4] = (uint8_t)size;
    protobuf_c_message_pack(msg, buf + 5);
    tstream *st = tc_call_raw(tc, path, buf, size + 5, split, true);
    free(buf);
    return st;
}

static bool stream_closed(void *arg)
{
    return ((tstream *)arg)->closed;
}

static void wait_stream(fixture *fx, tclient *tc, tstream *st)
{
    assert_true(run_until(fx, tc, stream_closed, st));
}

/* The one message of a successful reply. */
static ProtobufCMessage *reply_message(tstream *st, const ProtobufCMessageDescriptor *d)
{
    assert_int_equal(st->grpc_status, 0);
    assert_true(st->body_len >= 5);
    uint32_t len = ((uint32_t)st->body[1] << 24) | ((uint32_t)st->body[2] << 16) |
                   ((uint32_t)st->body[3] << 8) | st->body[4];
    assert_int_equal(st->body[0], 0);
    assert_int_equal(len + 5, st->body_len);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, st->body + 5);
    assert_non_null(m);
    return m;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    uv_loop_init(&fx->loop);
    fx->srv = fake_server_create(&fx->loop);
    /* A free port: bind 0 via a probe socket. */
    uv_tcp_t probe;
    uv_tcp_init(&fx->loop, &probe);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&probe, (struct sockaddr *)&addr, 0);
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&name, &namelen);
    fx->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    uv_close((uv_handle_t *)&probe, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    api_options opts = {.max_request_bytes = 1000,
                        .max_concurrent_streams = 600,
                        .conn_buffer_bytes_max = 300 * 1000};
    assert_int_equal(api_grpc_listen(&fx->loop, fx->srv, "127.0.0.1", fx->port, &opts, &fx->api),
                     FL_OK);
    *state = fx;
    return 0;
}

static void on_api_closed(void *ctx)
{
    ((fixture *)ctx)->api_closed = true;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->api != NULL) {
        api_grpc_close(fx->api, on_api_closed, fx);
        fx->api = NULL;
    }
    fake_server_destroy(fx->srv);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->api_closed);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

static tstream *put(tclient *tc, const char *key, const char *value, size_t split)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
    req.value = (ProtobufCBinaryData){strlen(value), (uint8_t *)value};
    return tc_call(tc, "/etcdserverpb.KV/Put", &req.base, split);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_put_then_range(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    tstream *p = put(&tc, "foo", "bar", 0);
    wait_stream(fx, &tc, p);
    Etcdserverpb__PutResponse *pr =
        (void *)reply_message(p, &etcdserverpb__put_response__descriptor);
    assert_non_null(pr->header);
    assert_int_equal(pr->header->revision, 2);
    assert_int_equal(pr->header->cluster_id, 0x1111);
    assert_int_equal(pr->header->member_id, 0x2222);
    assert_int_equal(pr->header->raft_term, 3);
    protobuf_c_message_free_unpacked(&pr->base, NULL);

    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){3, (uint8_t *)"foo"};
    tstream *r = tc_call(&tc, "/etcdserverpb.KV/Range", &rr.base, 0);
    wait_stream(fx, &tc, r);
    Etcdserverpb__RangeResponse *rs =
        (void *)reply_message(r, &etcdserverpb__range_response__descriptor);
    assert_int_equal(rs->header->revision, 2);
    assert_int_equal(rs->n_kvs, 1);
    assert_int_equal(rs->count, 1);
    assert_memory_equal(rs->kvs[0]->key.data, "foo", 3);
    assert_int_equal(rs->kvs[0]->value.len, 3);
    assert_memory_equal(rs->kvs[0]->value.data, "bar", 3);
    assert_int_equal(rs->kvs[0]->create_revision, 2);
    assert_int_equal(rs->kvs[0]->mod_revision, 2);
    assert_int_equal(rs->kvs[0]->version, 1);
    protobuf_c_message_free_unpacked(&rs->base, NULL);
    tc_close(fx, &tc);
}

static void test_split_data_frames(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    /* One byte per DATA frame: the prefix and the message both arrive split. */
    tstream *p = put(&tc, "split-key", "split-value", 1);
    wait_stream(fx, &tc, p);
    assert_int_equal(p->grpc_status, 0);
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){9, (uint8_t *)"split-key"};
    tstream *r = tc_call(&tc, "/etcdserverpb.KV/Range", &rr.base, 3);
    wait_stream(fx, &tc, r);
    Etcdserverpb__RangeResponse *rs =
        (void *)reply_message(r, &etcdserverpb__range_response__descriptor);
    assert_int_equal(rs->n_kvs, 1);
    assert_memory_equal(rs->kvs[0]->value.data, "split-value", 11);
    protobuf_c_message_free_unpacked(&rs->base, NULL);
    tc_close(fx, &tc);
}

static void test_unknown_and_unserved_methods(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    uint8_t empty[5] = {0};
    tstream *a = tc_call_raw(&tc, "/foo.Bar/Baz", empty, 5, 0, true);
    tstream *b = tc_call_raw(&tc, "/etcdserverpb.KV/Nope", empty, 5, 0, true);
    /* A streaming method whose client never half-closes: answered anyway. */
    tstream *c = tc_call_raw(&tc, "/etcdserverpb.Watch/Watch", empty, 0, 0, false);
    tstream *d = tc_call_raw(&tc, "/nonsense", empty, 5, 0, true);
    wait_stream(fx, &tc, a);
    wait_stream(fx, &tc, b);
    wait_stream(fx, &tc, c);
    wait_stream(fx, &tc, d);
    assert_int_equal(a->grpc_status, 12);
    assert_string_equal(a->grpc_message, "unknown service foo.Bar");
    assert_int_equal(b->grpc_status, 12);
    assert_string_equal(b->grpc_message, "unknown method Nope for service etcdserverpb.KV");
    assert_int_equal(c->grpc_status, 12);
    assert_string_equal(c->grpc_message, "method Watch not implemented");
    assert_int_equal(d->grpc_status, 12);
    assert_string_equal(d->grpc_message, "malformed method name: \"/nonsense\"");
    assert_int_equal(fake_server_requests(fx->srv), 0);
    tc_close(fx, &tc);
}

static void test_bad_bodies(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    uint8_t garbage[] = {0, 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    tstream *g = tc_call_raw(&tc, "/etcdserverpb.KV/Put", garbage, sizeof(garbage), 0, true);
    uint8_t big[] = {0, 0, 0x10, 0, 0}; /* announces 1 MiB, sends none */
    tstream *b = tc_call_raw(&tc, "/etcdserverpb.KV/Put", big, sizeof(big), 0, false);
    uint8_t compressed[] = {1, 0, 0, 0, 0};
    tstream *z = tc_call_raw(&tc, "/etcdserverpb.KV/Put", compressed, 5, 0, true);
    uint8_t truncated[] = {0, 0, 0, 0, 9, 0x0a};
    tstream *t = tc_call_raw(&tc, "/etcdserverpb.KV/Put", truncated, sizeof(truncated), 0, true);
    tstream *e = put(&tc, "", "v", 0);
    char value[1001];
    memset(value, 'x', 1000);
    value[1000] = 0;
    tstream *l = put(&tc, "k", value, 0);
    Etcdserverpb__PutRequest pv = ETCDSERVERPB__PUT_REQUEST__INIT;
    pv.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    pv.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
    pv.ignore_value = 1;
    tstream *iv = tc_call(&tc, "/etcdserverpb.KV/Put", &pv.base, 0);
    for (tstream *s = g; s <= iv; s++) {
        wait_stream(fx, &tc, s);
    }
    assert_int_equal(g->grpc_status, 13);
    assert_non_null(strstr(g->grpc_message, "grpc: error unmarshalling request"));
    assert_int_equal(b->grpc_status, 8);
    assert_string_equal(b->grpc_message,
                        "grpc: received message larger than max (1048576 vs. 525288)");
    assert_int_equal(z->grpc_status, 13);
    assert_int_equal(t->grpc_status, 13);
    assert_int_equal(e->grpc_status, 3);
    assert_string_equal(e->grpc_message, "etcdserver: key is not provided");
    assert_int_equal(l->grpc_status, 3);
    assert_string_equal(l->grpc_message, "etcdserver: request is too large");
    assert_int_equal(iv->grpc_status, 3);
    assert_string_equal(iv->grpc_message, "etcdserver: value is provided");
    assert_int_equal(fake_server_requests(fx->srv), 0);
    /* The connection still serves. */
    tstream *ok = put(&tc, "after", "bad", 0);
    wait_stream(fx, &tc, ok);
    assert_int_equal(ok->grpc_status, 0);
    tc_close(fx, &tc);
}

static bool any_status(void *arg)
{
    tstream **s = arg;
    return s[0]->grpc_status >= 0 || s[1]->grpc_status >= 0 || s[2]->grpc_status >= 0;
}

/* Calls that announce big messages and send them slowly: the connection's
 * buffered request bytes are bounded; the call that goes past is refused. */
static void test_connection_buffer_bound(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    size_t part = 120 * 1000;
    uint8_t *body = calloc(1, part + 5);
    body[0] = 0;
    body[1] = 0;
    body[2] = 0x07; /* announces 0x07a120 = 500000 bytes (under 1000 + 512 KiB) */
    body[3] = 0xa1;
    body[4] = 0x20;
    tstream *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = tc_call_raw(&tc, "/etcdserverpb.KV/Put", body, part + 5, 0, false);
    }
    free(body);
    /* 3 x 120 kB > 300 kB: the one whose data crosses the bound is refused
     * (the client interleaves the three), the other two wait for more. */
    assert_true(run_until(fx, &tc, any_status, s));
    int refused = -1;
    for (int i = 0; i < 3; i++) {
        if (s[i]->grpc_status >= 0) {
            assert_int_equal(refused, -1);
            refused = i;
        }
    }
    assert_int_equal(s[refused]->grpc_status, 8);
    assert_string_equal(s[refused]->grpc_message,
                        "grpc: too much request data in flight on this connection");
    /* Nothing else is refused once the refused call's bytes are released. */
    for (int i = 0; i < 20; i++) {
        tc_flush(&tc);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(i == refused || s[i]->grpc_status == -1);
    }
    /* Ending one frees its share; a small call still works meanwhile. */
    nghttp2_submit_rst_stream(tc.session, NGHTTP2_FLAG_NONE, s[(refused + 1) % 3]->id,
                              NGHTTP2_CANCEL);
    tstream *ok = put(&tc, "small", "v", 0);
    wait_stream(fx, &tc, ok);
    assert_int_equal(ok->grpc_status, 0);
    tc_close(fx, &tc);
}

static void test_server_error_mapping(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    fake_server_fail_next_write(fx->srv, FL_ERR_NO_SPACE_QUOTA);
    tstream *q = put(&tc, "q", "v", 0);
    wait_stream(fx, &tc, q);
    assert_int_equal(q->grpc_status, 8);
    assert_string_equal(q->grpc_message, "etcdserver: mvcc: database space exceeded");
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){1, (uint8_t *)"q"};
    rr.revision = 1000;
    tstream *r = tc_call(&tc, "/etcdserverpb.KV/Range", &rr.base, 0);
    wait_stream(fx, &tc, r);
    assert_int_equal(r->grpc_status, 11);
    assert_string_equal(r->grpc_message,
                        "etcdserver: mvcc: required revision is a future revision");
    tc_close(fx, &tc);
}

static void test_status_and_member_list(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    Etcdserverpb__StatusRequest sr = ETCDSERVERPB__STATUS_REQUEST__INIT;
    tstream *s = tc_call(&tc, "/etcdserverpb.Maintenance/Status", &sr.base, 0);
    Etcdserverpb__MemberListRequest mr = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    tstream *m = tc_call(&tc, "/etcdserverpb.Cluster/MemberList", &mr.base, 0);
    wait_stream(fx, &tc, s);
    wait_stream(fx, &tc, m);
    Etcdserverpb__StatusResponse *st =
        (void *)reply_message(s, &etcdserverpb__status_response__descriptor);
    assert_string_equal(st->version, SERVER_ETCD_API_VERSION);
    assert_int_equal(st->dbsize, 4096);
    assert_int_equal(st->dbsizeinuse, 2048);
    assert_int_equal(st->leader, 0x2222);
    assert_int_equal(st->header->member_id, 0x2222);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    Etcdserverpb__MemberListResponse *ml =
        (void *)reply_message(m, &etcdserverpb__member_list_response__descriptor);
    assert_int_equal(ml->header->member_id, 0x2222);
    assert_int_equal(ml->header->revision, 0); /* as etcd's */
    assert_int_equal(ml->n_members, 1);
    assert_string_equal(ml->members[0]->name, "fake");
    assert_int_equal(ml->members[0]->n_peerurls, 1);
    assert_string_equal(ml->members[0]->clienturls[0], "http://127.0.0.1:2379");
    protobuf_c_message_free_unpacked(&ml->base, NULL);
    tc_close(fx, &tc);
}

static bool pending_is(void *arg)
{
    void **a = arg;
    return fake_server_pending(a[0]) == (size_t)(uintptr_t)a[1];
}

static void test_reset_while_pending(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    fake_server_hold(fx->srv, true);
    tstream *p = put(&tc, "held", "v", 0);
    void *args[2] = {fx->srv, (void *)(uintptr_t)1};
    assert_true(run_until(fx, &tc, pending_is, args));
    nghttp2_submit_rst_stream(tc.session, NGHTTP2_FLAG_NONE, p->id, NGHTTP2_CANCEL);
    tc_flush(&tc);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    /* The server's callback arrives after the stream is gone: reply dropped. */
    fake_server_release(fx->srv);
    args[1] = (void *)(uintptr_t)0;
    assert_true(run_until(fx, &tc, pending_is, args));
    /* And the connection goes on serving. */
    tstream *q = put(&tc, "next", "v", 0);
    wait_stream(fx, &tc, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &tc);
}

static void test_disconnect_while_pending(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    fake_server_hold(fx->srv, true);
    for (int i = 0; i < 10; i++) {
        put(&tc, "gone", "v", 0);
    }
    void *args[2] = {fx->srv, (void *)(uintptr_t)10};
    assert_true(run_until(fx, &tc, pending_is, args));
    tc_close(fx, &tc);
    for (int i = 0; i < 20; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    fake_server_release(fx->srv);
    args[1] = (void *)(uintptr_t)0;
    assert_true(run_until(fx, NULL, pending_is, args));
    /* A new client is served. */
    tclient tc2;
    tc_connect(fx, &tc2, true);
    tstream *q = put(&tc2, "again", "v", 0);
    wait_stream(fx, &tc2, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &tc2);
}

static bool client_eof(void *arg)
{
    return ((tclient *)arg)->eof;
}

static void test_bad_preface_closes_connection(void **state)
{
    fixture *fx = *state;
    tclient bad, good;
    tc_connect(fx, &good, true);
    tc_connect(fx, &bad, false);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxx";
    tc_write_raw(&bad, junk, sizeof(junk) - 1);
    uv_read_start((uv_stream_t *)&bad.tcp, tc_alloc, tc_read);
    assert_true(run_until(fx, NULL, client_eof, &bad));
    tc_close(fx, &bad);
    tstream *q = put(&good, "still", "here", 0);
    wait_stream(fx, &good, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &good);
}

static void test_garbage_frames_close_only_that_connection(void **state)
{
    fixture *fx = *state;
    tclient bad, good;
    tc_connect(fx, &good, true);
    tc_connect(fx, &bad, false);
    /* A valid preface, then a frame header claiming a 16 MiB HEADERS frame on stream 0. */
    const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    tc_write_raw(&bad, preface, sizeof(preface) - 1);
    uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    tc_write_raw(&bad, settings, 9);
    uint8_t frame[64] = {0xff, 0xff, 0xff, 1, 4, 0, 0, 0, 0};
    for (int i = 9; i < 64; i++) {
        frame[i] = (uint8_t)(i * 37);
    }
    tc_write_raw(&bad, frame, sizeof(frame));
    assert_true(run_until(fx, NULL, client_eof, &bad));
    tc_close(fx, &bad);
    tstream *q = put(&good, "still", "here", 0);
    wait_stream(fx, &good, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &good);
}

static bool all_closed(void *arg)
{
    tclient *tc = arg;
    for (size_t i = 0; i < tc->nstreams; i++) {
        if (!tc->streams[i].closed) {
            return false;
        }
    }
    return true;
}

static void test_many_streams(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    char key[32];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "k%03d", i % 200);
        put(&tc, key, "value", i % 7 == 0 ? 2 : 0);
    }
    assert_true(run_until(fx, &tc, all_closed, &tc));
    for (size_t i = 0; i < tc.nstreams; i++) {
        assert_int_equal(tc.streams[i].grpc_status, 0);
    }
    assert_int_equal(fake_server_requests(fx->srv), 500);
    /* Replies are batched: far fewer socket writes than calls. */
    api_stats st;
    api_grpc_stats(fx->api, &st);
    assert_int_equal(st.calls, 500);
    assert_true(st.writes < 250);
    assert_int_equal(st.connections_open, 1);
    tc_close(fx, &tc);
}

static bool read_paused(void *arg)
{
    api_stats st;
    api_grpc_stats(arg, &st);
    return st.read_pauses > 0;
}

/* A client that stops reading its socket while large replies are due: the
 * member stops reading that connection once its output buffer is full, keeps
 * serving others, and resumes when the client reads again. */
static void test_backpressure(void **state)
{
    fixture *fx = *state;
    fake_server_put_raw(fx->srv, "big", 200 * 1000, 'b');
    tclient slow, other;
    /* A bounded client receive buffer (Linux autotunes it up to 32 MiB),
     * so a few MB of replies fill the path. */
    tc_rcvbuf = 256 * 1024;
    tc_connect(fx, &slow, true);
    tc_connect(fx, &other, true);
    /* Huge windows, so flow control does not stop the member first. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 1}};
    nghttp2_submit_settings(slow.session, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_submit_window_update(slow.session, NGHTTP2_FLAG_NONE, 0, (1 << 30));
    uv_read_stop((uv_stream_t *)&slow.tcp);
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){3, (uint8_t *)"big"};
    enum { CALLS = 60 }; /* 12 MB of replies: past the socket buffers and ours */
    for (int i = 0; i < CALLS; i++) {
        tc_call(&slow, "/etcdserverpb.KV/Range", &rr.base, 0);
    }
    assert_true(run_until(fx, &slow, read_paused, fx->api));
    /* Paused: more requests from the slow client are not read. */
    uint64_t seen = fake_server_requests(fx->srv);
    for (int i = 0; i < 20; i++) {
        tc_call(&slow, "/etcdserverpb.KV/Range", &rr.base, 0);
    }
    for (int i = 0; i < 50; i++) {
        tc_flush(&slow);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    assert_int_equal(fake_server_requests(fx->srv), seen);
    /* Another connection is served meanwhile. */
    tstream *q = put(&other, "other", "ok", 0);
    wait_stream(fx, &other, q);
    assert_int_equal(q->grpc_status, 0);
    /* The slow client reads again: every reply arrives whole. */
    uv_read_start((uv_stream_t *)&slow.tcp, tc_alloc, tc_read);
    assert_true(run_until(fx, &slow, all_closed, &slow));
    for (size_t i = 0; i < slow.nstreams; i++) {
        assert_int_equal(slow.streams[i].grpc_status, 0);
        assert_true(slow.streams[i].body_len > 200 * 1000);
    }
    tc_close(fx, &slow);
    tc_close(fx, &other);
}

static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64*: deterministic, seeded per test. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

/* Random frames after a valid preface, many connections: the member must
 * neither crash (ASan/UBSan watch) nor stop serving a well-behaved client. */
static void test_random_frames(void **state)
{
    fixture *fx = *state;
    rng_state = 0x9e3779b97f4a7c15ull;
    tclient good;
    tc_connect(fx, &good, true);
    for (int c = 0; c < 60; c++) {
        tclient bad;
        tc_connect(fx, &bad, false);
        uv_read_start((uv_stream_t *)&bad.tcp, tc_alloc, tc_read);
        const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        tc_write_raw(&bad, preface, sizeof(preface) - 1);
        uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
        tc_write_raw(&bad, settings, 9);
        for (int f = 0; f < 20; f++) {
            uint8_t buf[9 + 64];
            uint32_t len = rng() % 65;
            buf[0] = 0;
            buf[1] = 0;
            buf[2] = (uint8_t)len;
            buf[3] = (uint8_t)(rng() % 11); /* DATA .. CONTINUATION, and one unknown */
            buf[4] = (uint8_t)rng();        /* any flags */
            uint32_t sid = rng() % 4 == 0 ? 0 : (rng() % 8) * 2 + 1;
            buf[5] = 0;
            buf[6] = 0;
            buf[7] = 0;
            buf[8] = (uint8_t)sid;
            for (uint32_t i = 0; i < len; i++) {
                buf[9 + i] = (uint8_t)rng();
            }
            tc_write_raw(&bad, buf, 9 + len);
        }
        for (int i = 0; i < 5; i++) {
            uv_run(&fx->loop, UV_RUN_NOWAIT);
        }
        tc_close(fx, &bad);
        if (c % 10 == 9) {
            tstream *q = put(&good, "still", "serving", 0);
            wait_stream(fx, &good, q);
            assert_int_equal(q->grpc_status, 0);
        }
    }
    tc_close(fx, &good);
}

/* Random message bodies to every served method: each call ends with some
 * status (never a hang), and the connection keeps working. */
static void test_random_bodies(void **state)
{
    fixture *fx = *state;
    rng_state = 0x2545f4914f6cdd1dull;
    static const char *const paths[] = {
        "/etcdserverpb.KV/Range",           "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/DeleteRange",     "/etcdserverpb.KV/Txn",
        "/etcdserverpb.KV/Compact",         "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Cluster/MemberList",
    };
    tclient tc;
    tc_connect(fx, &tc, true);
    for (int i = 0; i < 300; i++) {
        uint8_t body[5 + 48];
        uint32_t len = rng() % 48;
        api_grpc_write_prefix_for_test(body, len);
        for (uint32_t j = 0; j < len; j++) {
            /* Mostly plausible tags (fields 1..8, all wire types), some noise. */
            body[5 + j] =
                rng() % 3 == 0 ? (uint8_t)rng() : (uint8_t)((rng() % 8 + 1) << 3 | rng() % 6);
        }
        tc_call_raw(&tc, paths[i % 7], body, 5 + len, rng() % 4 + 1, true);
    }
    assert_true(run_until(fx, &tc, all_closed, &tc));
    for (size_t i = 0; i < tc.nstreams; i++) {
        assert_true(tc.streams[i].grpc_status >= 0);
    }
    tstream *q = put(&tc, "after", "fuzz", 0);
    wait_stream(fx, &tc, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &tc);
}

static bool all_clients_closed(void *arg)
{
    tclient *clients = arg;
    for (int i = 0; i < 100; i++) {
        if (!all_closed(&clients[i])) {
            return false;
        }
    }
    return true;
}

/* Many connections at once, each with a few calls in flight. */
static void test_many_connections(void **state)
{
    fixture *fx = *state;
    tclient *clients = calloc(100, sizeof(*clients));
    char key[32];
    for (int i = 0; i < 100; i++) {
        tc_connect(fx, &clients[i], true);
        for (int j = 0; j < 3; j++) {
            snprintf(key, sizeof(key), "c%02d-%d", i % 50, j);
            put(&clients[i], key, "v", 0);
        }
        tc_flush(&clients[i]);
    }
    bool done = false;
    for (int round = 0; round < 2000 && !done; round++) {
        for (int i = 0; i < 100; i++) {
            tc_flush(&clients[i]);
        }
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        done = all_clients_closed(clients);
        if (!done) {
            usleep(1000);
        }
    }
    assert_true(done);
    api_stats st;
    api_grpc_stats(fx->api, &st);
    assert_int_equal(st.connections_open, 100);
    assert_int_equal(st.calls, 300);
    for (int i = 0; i < 100; i++) {
        for (size_t j = 0; j < clients[i].nstreams; j++) {
            assert_int_equal(clients[i].streams[j].grpc_status, 0);
        }
        tc_close(fx, &clients[i]);
    }
    free(clients);
}

/* A port in use and a bad host are reported, and leave nothing behind. */
static void test_listen_errors(void **state)
{
    fixture *fx = *state;
    api_grpc_server *second = NULL;
    assert_int_equal(api_grpc_listen(&fx->loop, fx->srv, "127.0.0.1", fx->port, NULL, &second),
                     FL_ERR_UNAVAILABLE);
    assert_null(second);
    assert_int_equal(api_grpc_listen(&fx->loop, fx->srv, "not-an-ip", 1, NULL, &second),
                     FL_ERR_INVALID);
    assert_null(second);
    uv_run(&fx->loop, UV_RUN_NOWAIT); /* the failed listener's handles close */
    tclient tc;
    tc_connect(fx, &tc, true);
    tstream *q = put(&tc, "first", "listener", 0);
    wait_stream(fx, &tc, q);
    assert_int_equal(q->grpc_status, 0);
    tc_close(fx, &tc);
}

static void test_close_with_open_connections(void **state)
{
    fixture *fx = *state;
    tclient tc;
    tc_connect(fx, &tc, true);
    fake_server_hold(fx->srv, true);
    put(&tc, "held", "v", 0);
    void *args[2] = {fx->srv, (void *)(uintptr_t)1};
    assert_true(run_until(fx, &tc, pending_is, args));
    api_grpc_close(fx->api, on_api_closed, fx);
    fx->api = NULL;
    assert_true(run_until(fx, NULL, client_eof, &tc));
    tc_close(fx, &tc);
    /* teardown: the fake fails the held write with STOPPED; the detached call
     * frees itself; LeakSanitizer checks. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_then_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_data_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_unserved_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_error_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_buffer_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_member_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_preface_closes_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_frames_close_only_that_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_open_connections, setup, teardown),
    };
    return cmocka_run_group_tests_name("api.http2", tests, NULL, NULL);
}

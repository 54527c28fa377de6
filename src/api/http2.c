/* api/http2: cleartext HTTP/2 (prior knowledge) on libuv TCP with nghttp2,
 * and the gRPC request/response framing on top of it.
 *
 * Data flow, per connection:
 *   uv read -> nghttp2_session_mem_recv -> callbacks: HEADERS open a call
 *   (:path resolves the method), DATA chunks feed the call's gRPC reader,
 *   END_STREAM dispatches the call to service.c. A reply is packed into the
 *   call's buffer and submitted (headers, DATA via a data provider, trailers);
 *   an error is a trailers-only response.
 *   Output: the connection is marked dirty; once per loop turn (a uv_check,
 *   plus a uv_idle so a reply queued after the check phase does not wait for
 *   the next poll) every dirty connection pulls frames from nghttp2 into one
 *   buffer and issues one uv_write.
 * Backpressure: one write in flight per connection; later frames fill a
 * second buffer (written whole when the first completes). When that buffer
 * reaches API_OUT_BUF_LIMIT the connection stops reading until the write
 * completes, so a client that does not read its responses cannot make the
 * member buffer without bound; further frames wait in nghttp2.
 * A call whose stream or connection goes away while the server holds it is
 * detached and freed by the server's callback (see internal.h).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "api/internal.h"
#include "util/log.h"

#define API_READ_BUF_BYTES      65536u
#define API_OUT_BUF_LIMIT       (1u << 20)   /* stop pulling frames past this */
#define API_STREAM_WINDOW_BYTES (1u << 20)   /* advertised initial stream window */
#define API_CONN_WINDOW_BYTES   (16u << 20)  /* connection window */
#define API_FREE_CALLS_MAX      256u         /* recycled call objects kept */
#define API_KEEP_BUFFER_BYTES   (64u * 1024) /* larger per-call buffers are not kept */
#define API_DEFAULT_MAX_REQUEST (1536u * 1024)
#define API_DEFAULT_MAX_STREAMS 1024u
#define API_DEFAULT_MAX_CONNS   4096u
#define API_GRPC_MESSAGE_MAX    512u /* bytes of a percent-encoded grpc-message */
/* Request bytes one connection may hold in calls not yet dispatched (at least
 * four whole maximal messages). nghttp2 refills flow-control windows as data
 * arrives, so this, not the window, bounds what a client that never finishes
 * its requests can make the member buffer. */
#define API_CONN_BODY_BYTES_MIN (64u << 20)

typedef struct api_out_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} api_out_buf;

struct api_conn {
    api_grpc_server *listener;
    uv_tcp_t tcp;
    nghttp2_session *session; /* owned */
    api_conn *prev, *next;    /* listener's connections */
    api_conn *dirty_prev, *dirty_next;
    bool dirty;
    bool reading;
    bool writing;
    bool closing;
    api_call *calls;   /* attached calls of this connection */
    size_t body_bytes; /* request bytes held by calls not yet dispatched */
    uv_write_t write_req;
    api_out_buf out[2];   /* owned: the write in flight, and the next one being filled */
    unsigned out_writing; /* index of the buffer in flight (when writing) */
    uint8_t read_buf[API_READ_BUF_BYTES];
};

struct api_grpc_server {
    uv_loop_t *loop;
    server *srv;
    api_options options;
    uv_tcp_t tcp;
    uv_check_t flush_check;
    uv_idle_t flush_idle;
    nghttp2_session_callbacks *callbacks; /* owned */
    nghttp2_option *session_option;       /* owned */
    api_conn *conns;
    size_t conn_count;
    api_conn *dirty;
    api_call *free_calls;
    size_t free_calls_count;
    api_stats stats;
    bool closing;
    int handles_open;
    void (*closed)(void *ctx);
    void *closed_ctx;
};

static void conn_close(api_conn *conn);

/* ---- calls ------------------------------------------------------------------ */

static void call_destroy(api_call *call)
{
    api_grpc_reader_free(&call->reader);
    api_arena_free(&call->arena);
    free(call->resp);
    free(call);
}

static api_call *call_new(api_conn *conn, int32_t stream_id)
{
    api_grpc_server *l = conn->listener;
    api_call *call = l->free_calls;
    if (call != NULL) {
        l->free_calls = call->next;
        l->free_calls_count--;
    } else {
        call = calloc(1, sizeof(*call));
        if (call == NULL) {
            return NULL;
        }
        api_grpc_reader_init(&call->reader);
        api_arena_init(&call->arena);
    }
    /* Keep the buffers, clear the rest. */
    api_grpc_reader_reset(&call->reader, l->options.max_request_bytes + API_GRPC_OVERHEAD_BYTES,
                          API_KEEP_BUFFER_BYTES);
    api_arena_reset(&call->arena);
    call->listener = l;
    call->conn = conn;
    call->stream_id = stream_id;
    call->method = NULL;
    call->has_early = false;
    call->request_done = call->responded = false;
    call->in_server = call->bad_encoding = false;
    call->resp_len = call->resp_off = 0;
    call->counted = 0;
    call->prev = NULL;
    call->next = conn->calls;
    if (conn->calls != NULL) {
        conn->calls->prev = call;
    }
    conn->calls = call;
    return call;
}

static void call_unlink(api_call *call)
{
    api_conn *conn = call->conn;
    assert(conn != NULL);
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        assert(conn->calls == call);
        conn->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
}

/* The call's request bytes no longer count against its connection. */
static void call_uncount(api_call *call)
{
    if (call->conn != NULL) {
        assert(call->conn->body_bytes >= call->counted);
        call->conn->body_bytes -= call->counted;
    }
    call->counted = 0;
}

static size_t conn_body_bytes_max(const api_grpc_server *l)
{
    if (l->options.conn_buffer_bytes_max != 0) {
        return (size_t)l->options.conn_buffer_bytes_max;
    }
    uint64_t four = 4u * (l->options.max_request_bytes + API_GRPC_OVERHEAD_BYTES);
    return four > API_CONN_BODY_BYTES_MIN ? (size_t)four : API_CONN_BODY_BYTES_MIN;
}

/* The stream is gone: recycle the call, or leave it to the server callback. */
static void call_finish(api_call *call)
{
    call_uncount(call);
    call_unlink(call);
    api_grpc_server *l = call->listener;
    call->conn = NULL;
    if (call->in_server) {
        call->listener = NULL; /* detached: the callback frees it */
        return;
    }
    if (l->closing || l->free_calls_count >= API_FREE_CALLS_MAX) {
        call_destroy(call);
        return;
    }
    /* A kept call holds at most API_KEEP_BUFFER_BYTES of request and of
     * response buffer: up to API_FREE_CALLS_MAX of them must not pin a
     * maximal request each. */
    if (call->resp_cap > API_KEEP_BUFFER_BYTES) {
        free(call->resp);
        call->resp = NULL;
        call->resp_cap = 0;
    }
    api_grpc_reader_reset(&call->reader, 0, API_KEEP_BUFFER_BYTES);
    api_arena_reset(&call->arena);
    call->listener = NULL;
    call->next = l->free_calls;
    l->free_calls = call;
    l->free_calls_count++;
}

server *api_call_server(const api_call *call)
{
    assert(call->conn != NULL);
    return call->listener->srv;
}

uint64_t api_call_max_request_bytes(const api_call *call)
{
    assert(call->conn != NULL);
    return call->listener->options.max_request_bytes;
}

bool api_call_resume(api_call *call)
{
    assert(call->in_server);
    call->in_server = false;
    if (call->conn == NULL) {
        call_destroy(call);
        return false;
    }
    return true;
}

/* ---- output ----------------------------------------------------------------- */

static void listener_flush_all(api_grpc_server *l);

static void on_flush_check(uv_check_t *handle)
{
    listener_flush_all(handle->data);
}

static void on_flush_idle(uv_idle_t *handle)
{
    listener_flush_all(handle->data);
}

static void dirty_remove(api_conn *conn)
{
    if (!conn->dirty) {
        return;
    }
    api_grpc_server *l = conn->listener;
    if (conn->dirty_prev != NULL) {
        conn->dirty_prev->dirty_next = conn->dirty_next;
    } else {
        assert(l->dirty == conn);
        l->dirty = conn->dirty_next;
    }
    if (conn->dirty_next != NULL) {
        conn->dirty_next->dirty_prev = conn->dirty_prev;
    }
    conn->dirty_prev = conn->dirty_next = NULL;
    conn->dirty = false;
}

static void conn_mark_dirty(api_conn *conn)
{
    if (conn->dirty || conn->closing) {
        return;
    }
    api_grpc_server *l = conn->listener;
    conn->dirty = true;
    conn->dirty_prev = NULL;
    conn->dirty_next = l->dirty;
    if (l->dirty != NULL) {
        l->dirty->dirty_prev = conn;
    }
    l->dirty = conn;
    if (!uv_is_active((uv_handle_t *)&l->flush_check)) {
        uv_check_start(&l->flush_check, on_flush_check);
        uv_idle_start(&l->flush_idle, on_flush_idle);
    }
}

static bool out_append(api_out_buf *out, const uint8_t *data, size_t len)
{
    if (out->cap - out->len < len) {
        size_t cap = out->cap ? out->cap : 16384;
        while (cap - out->len < len) {
            cap *= 2;
        }
        uint8_t *grown = realloc(out->data, cap);
        if (grown == NULL) {
            return false;
        }
        out->data = grown;
        out->cap = cap;
    }
    memcpy(out->data + out->len, data, len);
    out->len += len;
    return true;
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

static void conn_read_start(api_conn *conn)
{
    if (!conn->reading && !conn->closing) {
        if (uv_read_start((uv_stream_t *)&conn->tcp, conn_on_alloc, conn_on_read) == 0) {
            conn->reading = true;
        }
    }
}

static void conn_read_stop(api_conn *conn)
{
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = false;
    }
}

static void conn_on_write(uv_write_t *req, int status);

/* The buffer being filled: the one not in flight. */
static api_out_buf *conn_fill_buf(api_conn *conn)
{
    return &conn->out[conn->writing ? 1u - conn->out_writing : conn->out_writing];
}

/* Pulls queued frames from nghttp2 into the fill buffer, up to
 * API_OUT_BUF_LIMIT. Returns false if the connection was closed. */
static bool conn_fill(api_conn *conn)
{
    api_out_buf *out = conn_fill_buf(conn);
    while (out->len < API_OUT_BUF_LIMIT) {
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(conn->session, &data);
        if (n < 0) {
            FL_LOG_WARNF("api", "http2 send failed", "err=\"%s\"", nghttp2_strerror((int)n));
            conn_close(conn);
            return false;
        }
        if (n == 0) {
            break;
        }
        if (!out_append(out, data, (size_t)n)) {
            conn_close(conn);
            return false;
        }
    }
    return true;
}

/* Moves what nghttp2 has queued into the fill buffer; if no write is in
 * flight, writes that buffer (one uv_write). Reading stops while the fill
 * buffer is full, i.e. a whole API_OUT_BUF_LIMIT waits behind the write in
 * flight, and resumes when it drains. */
static void conn_flush(api_conn *conn)
{
    if (conn->closing || !conn_fill(conn)) {
        return;
    }
    api_out_buf *fill = conn_fill_buf(conn);
    if (!conn->writing && fill->len > 0) {
        uv_buf_t b = uv_buf_init((char *)fill->data, (unsigned)fill->len);
        conn->write_req.data = conn;
        if (uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &b, 1, conn_on_write) != 0) {
            conn_close(conn);
            return;
        }
        conn->out_writing = (unsigned)(fill - conn->out);
        conn->writing = true;
        conn->listener->stats.writes++;
        /* Start filling the other buffer right away. */
        if (!conn_fill(conn)) {
            return;
        }
        fill = conn_fill_buf(conn);
    }
    if (!conn->writing && !nghttp2_session_want_read(conn->session) &&
        !nghttp2_session_want_write(conn->session)) {
        /* GOAWAY sent and nothing left: done with this peer. */
        conn_close(conn);
        return;
    }
    if (fill->len >= API_OUT_BUF_LIMIT) {
        if (conn->reading) {
            conn->listener->stats.read_pauses++;
        }
        conn_read_stop(conn);
    } else if (nghttp2_session_want_read(conn->session)) {
        conn_read_start(conn);
    }
}

static void conn_on_write(uv_write_t *req, int status)
{
    api_conn *conn = req->data;
    assert(conn->writing);
    conn->writing = false;
    conn->out[conn->out_writing].len = 0;
    conn->out_writing = 1u - conn->out_writing; /* the filled one goes next */
    if (status < 0) {
        conn_close(conn); /* also the ECANCELED of a closing connection: a no-op then */
        return;
    }
    conn_flush(conn);
}

static void listener_flush_all(api_grpc_server *l)
{
    while (l->dirty != NULL) {
        api_conn *conn = l->dirty;
        dirty_remove(conn);
        conn_flush(conn);
    }
    uv_check_stop(&l->flush_check);
    uv_idle_stop(&l->flush_idle);
}

/* ---- replies ---------------------------------------------------------------- */

size_t api_percent_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    assert(cap >= 1);
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        size_t need = plain ? 1 : 3;
        if (n + need >= cap) {
            break;
        }
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

#define NV(name, value, valuelen)                                                                  \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (valuelen), NGHTTP2_NV_FLAG_NONE  \
    }

static ssize_t reply_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                          uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    api_call *call = source->ptr;
    assert(call->resp_off <= call->resp_len);
    size_t n = call->resp_len - call->resp_off;
    if (n > length) {
        n = length;
    }
    memcpy(buf, call->resp + call->resp_off, n);
    call->resp_off += n;
    if (call->resp_off == call->resp_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        static const char ok[] = "0";
        nghttp2_nv trailers[] = {NV("grpc-status", ok, 1)};
        if (nghttp2_submit_trailer(session, stream_id, trailers, 1) != 0) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

void api_call_reply(api_call *call, const ProtobufCMessage *msg)
{
    assert(call->conn != NULL && !call->responded && !call->in_server);
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > UINT32_MAX) {
        api_call_fail(call, (api_status){API_GRPC_RESOURCE_EXHAUSTED,
                                         "grpc: response message is larger than 4 GiB"});
        return;
    }
    size_t total = API_GRPC_PREFIX_BYTES + size;
    if (call->resp_cap < total) {
        free(call->resp);
        call->resp = malloc(total);
        call->resp_cap = call->resp ? total : 0;
        if (call->resp == NULL) {
            api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
            return;
        }
    }
    api_grpc_write_prefix(call->resp, (uint32_t)size);
    size_t packed = protobuf_c_message_pack(msg, call->resp + API_GRPC_PREFIX_BYTES);
    assert(packed == size);
    (void)packed; /* only asserted */
    call->resp_len = total;
    call->resp_off = 0;
    static const char status[] = "200", ctype[] = "application/grpc";
    nghttp2_nv headers[] = {NV(":status", status, 3), NV("content-type", ctype, sizeof(ctype) - 1)};
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = reply_read};
    call->responded = true;
    int rv = nghttp2_submit_response(call->conn->session, call->stream_id, headers, 2, &prd);
    if (rv != 0) {
        FL_LOG_WARNF("api", "submit response failed", "err=\"%s\"", nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
    }
    conn_mark_dirty(call->conn);
}

void api_call_fail(api_call *call, api_status status)
{
    assert(call->conn != NULL && !call->responded && !call->in_server);
    assert(status.code != API_GRPC_OK);
    call_uncount(call);
    char code[12];
    int code_len = snprintf(code, sizeof(code), "%d", status.code);
    char message[API_GRPC_MESSAGE_MAX];
    size_t message_len =
        api_percent_encode(status.message ? status.message : "", message, sizeof(message));
    static const char http_status[] = "200", ctype[] = "application/grpc";
    nghttp2_nv headers[] = {
        NV(":status", http_status, 3), NV("content-type", ctype, sizeof(ctype) - 1),
        NV("grpc-status", code, (size_t)code_len), NV("grpc-message", message, message_len)};
    call->responded = true;
    nghttp2_session *session = call->conn->session;
    int rv = nghttp2_submit_response(session, call->stream_id, headers, 4, NULL);
    if (rv != 0) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
    }
    /* If the client is still sending, on_frame_send resets the stream once
     * the status is on the wire (a reset queued now could overtake it). */
    conn_mark_dirty(call->conn);
}

/* ---- nghttp2 callbacks ------------------------------------------------------ */

static api_call *stream_call(nghttp2_session *session, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    api_conn *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    api_call *call = call_new(conn, frame->hd.stream_id);
    if (call == NULL) {
        /* Out of memory: refuse this stream only. */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    conn->listener->stats.calls++;
    return 0;
}

static void call_set_early(api_call *call, api_status st)
{
    if (!call->has_early) {
        call->has_early = true;
        call->early = st;
    }
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* trailers from the client carry nothing we use */
    }
    api_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        api_status st;
        call->method = api_method_lookup((const char *)value, valuelen, &call->arena, &st);
        if (call->method == NULL) {
            call_set_early(call, st);
        }
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        static const char grpc[] = "application/grpc";
        if (valuelen < sizeof(grpc) - 1 || memcmp(value, grpc, sizeof(grpc) - 1) != 0 ||
            (valuelen > sizeof(grpc) - 1 && value[sizeof(grpc) - 1] != '+' &&
             value[sizeof(grpc) - 1] != ';')) {
            call_set_early(call, (api_status){API_GRPC_INTERNAL,
                                              "transport: received unexpected content-type"});
        }
    } else if (namelen == 13 && memcmp(name, "grpc-encoding", 13) == 0) {
        call->bad_encoding = !(valuelen == 8 && memcmp(value, "identity", 8) == 0);
    }
    return 0;
}

static void call_request_end(api_call *call)
{
    call->request_done = true;
    if (call->responded) {
        return;
    }
    call_uncount(call); /* decoding copies what it keeps into the arena */
    if (call->reader.state != API_FRAME_DONE) {
        api_call_fail(call, (api_status){API_GRPC_INTERNAL,
                                         "grpc: error unmarshalling request: unexpected EOF"});
        return;
    }
    api_call_dispatch(call);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    api_call *call = NULL;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        call = stream_call(session, frame->hd.stream_id);
        if (call == NULL) {
            return 0;
        }
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (call->method == NULL && !call->has_early) {
                call_set_early(call,
                               (api_status){API_GRPC_UNIMPLEMENTED, "malformed method name: \"\""});
            }
            if (call->has_early && !call->responded) {
                /* Answer at once, even for streaming methods whose client
                 * never half-closes (Watch, LeaseKeepAlive). */
                api_call_fail(call, call->early);
            }
        }
        break;
    case NGHTTP2_DATA:
        call = stream_call(session, frame->hd.stream_id);
        break;
    default:
        return 0;
    }
    if (call != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        call_request_end(call);
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    api_call *call = stream_call(session, stream_id);
    if (call == NULL || call->responded) {
        return 0;
    }
    api_frame_state state = api_grpc_reader_feed(&call->reader, data, len);
    api_conn *conn = call->conn;
    conn->body_bytes += call->reader.body_len - call->counted;
    call->counted = call->reader.body_len;
    switch (state) {
    case API_FRAME_PREFIX:
    case API_FRAME_DONE:
        break;
    case API_FRAME_BODY:
        if (conn->body_bytes > conn_body_bytes_max(conn->listener)) {
            api_call_fail(call, (api_status){API_GRPC_RESOURCE_EXHAUSTED,
                                             "grpc: too much request data in flight on this "
                                             "connection"});
            api_grpc_reader_reset(&call->reader, 0, 0); /* free the partial body now */
        }
        break;
    case API_FRAME_TOO_LARGE: {
        char *msg = api_arena_alloc(&call->arena, 96);
        if (msg != NULL) {
            snprintf(msg, 96, "grpc: received message larger than max (%u vs. %llu)",
                     call->reader.msg_len, (unsigned long long)call->reader.max_len);
        }
        api_call_fail(call, (api_status){API_GRPC_RESOURCE_EXHAUSTED,
                                         msg ? msg : "grpc: received message larger than max"});
        break;
    }
    case API_FRAME_COMPRESSED:
        if (call->bad_encoding) {
            api_call_fail(call, (api_status){API_GRPC_UNIMPLEMENTED,
                                             "grpc: Decompressor is not installed for "
                                             "grpc-encoding"});
        } else {
            api_call_fail(call, (api_status){API_GRPC_INTERNAL,
                                             "grpc: compressed flag set with identity or empty "
                                             "encoding"});
        }
        break;
    case API_FRAME_EXTRA:
        api_call_fail(call, (api_status){API_GRPC_INTERNAL,
                                         "grpc: more than one request message for a unary RPC"});
        break;
    case API_FRAME_NOMEM:
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    api_call *call = stream_call(session, frame->hd.stream_id);
    if (call != NULL && call->responded && !call->request_done) {
        /* As grpc-go: the status is sent, the rest of the request is not
         * wanted; RST_STREAM(NO_ERROR) tells the client to stop sending. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    api_call *call = stream_call(session, stream_id);
    if (call != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        call_finish(call);
    }
    return 0;
}

/* ---- connections ------------------------------------------------------------ */

static void conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    api_conn *conn = handle->data;
    buf->base = (char *)conn->read_buf;
    buf->len = sizeof(conn->read_buf);
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    api_conn *conn = stream->data;
    if (nread < 0) {
        conn_close(conn); /* EOF or a socket error */
        return;
    }
    if (nread == 0) {
        return;
    }
    ssize_t rv = nghttp2_session_mem_recv(conn->session, (const uint8_t *)buf->base, (size_t)nread);
    if (rv < 0) {
        /* Fatal for this connection only: a bad client preface, a broken
         * HPACK block, a callback out of memory. */
        FL_LOG_DEBUGF("api", "closing connection", "err=\"%s\"", nghttp2_strerror((int)rv));
        conn_close(conn);
        return;
    }
    conn_mark_dirty(conn);
}

static void listener_maybe_done(api_grpc_server *l);

static void conn_on_close(uv_handle_t *handle)
{
    api_conn *conn = handle->data;
    api_grpc_server *l = conn->listener;
    assert(conn->calls == NULL && !conn->dirty);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else if (l->conns == conn) {
        l->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    if (conn->session != NULL) {
        l->conn_count--;
        nghttp2_session_del(conn->session);
    }
    free(conn->out[0].data);
    free(conn->out[1].data);
    free(conn);
    l->handles_open--;
    listener_maybe_done(l);
}

static void conn_close(api_conn *conn)
{
    if (conn->closing) {
        return;
    }
    dirty_remove(conn);
    conn->closing = true;
    /* Calls the server still holds are detached; the others go now. */
    while (conn->calls != NULL) {
        api_call *call = conn->calls;
        if (conn->session != NULL) {
            nghttp2_session_set_stream_user_data(conn->session, call->stream_id, NULL);
        }
        call_finish(call);
    }
    conn_read_stop(conn);
    uv_close((uv_handle_t *)&conn->tcp, conn_on_close);
}

static int conn_start_session(api_conn *conn)
{
    api_grpc_server *l = conn->listener;
    int rv = nghttp2_session_server_new2(&conn->session, l->callbacks, conn, l->session_option);
    if (rv != 0) {
        conn->session = NULL;
        return rv;
    }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->options.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, API_STREAM_WINDOW_BYTES},
    };
    rv = nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings,
                                 sizeof(settings) / sizeof(settings[0]));
    if (rv == 0) {
        rv = nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0,
                                                   API_CONN_WINDOW_BYTES);
    }
    return rv;
}

static void on_connection(uv_stream_t *listener_stream, int status)
{
    api_grpc_server *l = listener_stream->data;
    if (status < 0) {
        /* Out of file descriptors comes in bursts: log the first of each
         * thousand, not every one. */
        if (l->stats.accept_errors++ % 1000 == 0) {
            FL_LOG_WARNF("api", "accept failed", "err=\"%s\" count=%llu", uv_strerror(status),
                         (unsigned long long)l->stats.accept_errors);
        }
        return;
    }
    api_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        FL_LOG_WARNF("api", "out of memory for a connection", "conns=%zu", l->conn_count);
        return;
    }
    conn->listener = l;
    conn->tcp.data = conn;
    uv_tcp_init(l->loop, &conn->tcp);
    l->handles_open++;
    conn->next = l->conns;
    if (l->conns != NULL) {
        l->conns->prev = conn;
    }
    l->conns = conn;
    if (uv_accept(listener_stream, (uv_stream_t *)&conn->tcp) != 0) {
        conn_close(conn);
        return;
    }
    if (l->conn_count >= l->options.max_connections) {
        FL_LOG_WARNF("api", "too many connections", "max=%u", l->options.max_connections);
        conn_close(conn);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    if (conn_start_session(conn) != 0) {
        if (conn->session != NULL) {
            nghttp2_session_del(conn->session);
            conn->session = NULL;
        }
        conn_close(conn);
        return;
    }
    l->conn_count++;
    l->stats.connections_accepted++;
    conn_read_start(conn);
    conn_mark_dirty(conn); /* our SETTINGS */
}

/* ---- the listener ----------------------------------------------------------- */

static void listener_maybe_done(api_grpc_server *l)
{
    if (!l->closing || l->handles_open > 0) {
        return;
    }
    while (l->free_calls != NULL) {
        api_call *call = l->free_calls;
        l->free_calls = call->next;
        call_destroy(call);
    }
    nghttp2_session_callbacks_del(l->callbacks);
    nghttp2_option_del(l->session_option);
    void (*closed)(void *) = l->closed;
    void *ctx = l->closed_ctx;
    free(l);
    if (closed != NULL) {
        closed(ctx);
    }
}

static void listener_handle_closed(uv_handle_t *handle)
{
    api_grpc_server *l = handle->data;
    l->handles_open--;
    listener_maybe_done(l);
}

fl_err api_grpc_listen(uv_loop_t *loop, server *srv, const char *host, int port,
                       const api_options *options, api_grpc_server **out)
{
    assert(loop != NULL && host != NULL && out != NULL);
    *out = NULL;
    struct sockaddr_storage addr;
    int rv = strchr(host, ':') != NULL ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                                       : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rv != 0) {
        FL_LOG_ERRORF("api", "bad listen address", "host=%s port=%d", host, port);
        return FL_ERR_INVALID;
    }
    api_grpc_server *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return FL_ERR_NOMEM;
    }
    l->loop = loop;
    l->srv = srv;
    if (options != NULL) {
        l->options = *options;
    }
    if (l->options.max_request_bytes == 0) {
        l->options.max_request_bytes = API_DEFAULT_MAX_REQUEST;
    }
    if (l->options.max_concurrent_streams == 0) {
        l->options.max_concurrent_streams = API_DEFAULT_MAX_STREAMS;
    }
    if (l->options.max_connections == 0) {
        l->options.max_connections = API_DEFAULT_MAX_CONNS;
    }
    /* A gRPC message length is 32 bits; keep the bound representable. */
    if (l->options.max_request_bytes > UINT32_MAX - API_GRPC_OVERHEAD_BYTES) {
        l->options.max_request_bytes = UINT32_MAX - API_GRPC_OVERHEAD_BYTES;
    }
    if (nghttp2_session_callbacks_new(&l->callbacks) != 0) {
        free(l);
        return FL_ERR_NOMEM;
    }
    if (nghttp2_option_new(&l->session_option) != 0) {
        nghttp2_session_callbacks_del(l->callbacks);
        free(l);
        return FL_ERR_NOMEM;
    }
    /* No HTTP semantics checks: grpc-go (etcd's server) accepts any
     * :authority, and clientv3 sends "http://host:port" as the authority
     * for `etcdctl endpoint status --cluster`, which nghttp2's checks reset
     * with PROTOCOL_ERROR. What gRPC needs (:path, content-type) is checked
     * here. */
    nghttp2_option_set_no_http_messaging(l->session_option, 1);
    nghttp2_session_callbacks_set_on_begin_headers_callback(l->callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(l->callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(l->callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(l->callbacks, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(l->callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(l->callbacks, on_frame_send);

    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    uv_check_init(loop, &l->flush_check);
    l->flush_check.data = l;
    uv_idle_init(loop, &l->flush_idle);
    l->flush_idle.data = l;
    l->handles_open = 3;
    rv = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    }
    if (rv != 0) {
        FL_LOG_ERRORF("api", "cannot listen", "host=%s port=%d err=\"%s\"", host, port,
                      uv_strerror(rv));
        api_grpc_close(l, NULL, NULL);
        return rv == UV_EADDRINUSE || rv == UV_EACCES || rv == UV_EADDRNOTAVAIL ? FL_ERR_UNAVAILABLE
                                                                                : FL_ERR_IO;
    }
    FL_LOG_INFOF("api", "serving gRPC", "host=%s port=%d max_request_bytes=%llu", host,
                 api_grpc_port(l), (unsigned long long)l->options.max_request_bytes);
    *out = l;
    return FL_OK;
}

int api_grpc_port(const api_grpc_server *l)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void api_grpc_stats(const api_grpc_server *l, api_stats *out)
{
    *out = l->stats;
    out->connections_open = l->conn_count;
}

void api_grpc_close(api_grpc_server *l, void (*closed)(void *ctx), void *ctx)
{
    assert(!l->closing);
    l->closing = true;
    l->closed = closed;
    l->closed_ctx = ctx;
    while (l->dirty != NULL) {
        dirty_remove(l->dirty);
    }
    for (api_conn *conn = l->conns; conn != NULL; conn = conn->next) {
        conn_close(conn);
    }
    uv_close((uv_handle_t *)&l->tcp, listener_handle_closed);
    uv_close((uv_handle_t *)&l->flush_check, listener_handle_closed);
    uv_close((uv_handle_t *)&l->flush_idle, listener_handle_closed);
}

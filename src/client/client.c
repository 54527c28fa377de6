/* client: the async core. Calls wait in one bounded client-wide queue until a
 * READY connection has a free slot; each call is one HTTP/2 stream carrying one
 * gRPC message each way.
 *
 * Life of a call: client_call packs the request (5-byte gRPC prefix + protobuf)
 * -> queue -> client_pump submits it on a connection (round-robin among READY
 * connections with room) -> nghttp2 sends HEADERS + DATA -> the response's
 * headers, DATA and trailers land in the call -> on_stream_close decodes and
 * runs done. A client-wide 10 ms timer enforces deadlines (RST_STREAM CANCEL).
 *
 * Connections: IDLE -> CONNECTING -> READY -> CLOSING -> IDLE. Every failure
 * goes through conn_shutdown -> uv_close -> on_tcp_closed, which fails the
 * connection's streams, so done callbacks never run inside client_call or
 * inside our own nghttp2 send path. A failed connect moves to the next
 * endpoint; after one full round of failures the waiting calls fail.
 */
#include <assert.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

#define CONN_READ_BUFFER_BYTES (64u << 10)
#define CONN_WRITE_CHUNK_BYTES (64u << 10) /* one uv_write gathers up to this much */
#define CONN_WRITE_LIMIT_BYTES (4u << 20)  /* queued in uv_write per connection */
#define CONN_STREAM_WINDOW     (16u << 20) /* our receive window per stream */
#define CONN_SESSION_WINDOW    (64u << 20) /* and per connection */
#define DEADLINE_TICK_MS       10
#define REFUSED_RETRIES_MAX    3 /* per call; a refused stream was never processed */
#define HOST_BYTES             80

typedef struct req req;
typedef struct conn conn;

typedef struct req_list {
    req *head, *tail;
    size_t count;
} req_list;

struct req {
    client *c;
    conn *conn; /* NULL while queued */
    client_method method;
    uint8_t *body; /* gRPC-framed request; owned */
    size_t body_len, body_sent;
    uint8_t *resp; /* gRPC-framed response bytes received so far; owned */
    size_t resp_len, resp_cap;
    int32_t stream_id;
    uint32_t refused; /* times the server refused the stream (REFUSED_STREAM) */
    int http_status;
    int grpc_status; /* -1 until the trailers say */
    bool resp_too_large;
    char message[CLIENT_MESSAGE_BYTES];
    uint64_t timeout_ms;
    uint64_t deadline_ms; /* loop time; 0 = none */
    client_done_fn done;
    void *ctx;
    req *prev, *next;
};

typedef enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_READY, CONN_CLOSING } conn_state;

struct conn {
    client *c;
    conn_state state;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_timer_t dial_timer;
    uv_connect_t connect_req;
    nghttp2_session *session;
    size_t endpoint; /* index of the endpoint this connection uses/tries */
    size_t attempts; /* failed connects in this round */
    bool was_ready;  /* this socket reached READY */
    bool in_session; /* inside nghttp2_session_mem_recv/mem_send */
    bool dirty;      /* has data to flush */
    bool goaway;     /* the server sent GOAWAY: no new streams here */
    req_list inflight;
    size_t write_outstanding;
    fl_err fail_err;
    char fail_msg[CLIENT_MESSAGE_BYTES];
    uint8_t rbuf[CONN_READ_BUFFER_BYTES];
};

typedef struct endpoint {
    struct sockaddr_storage addr;
    char authority[HOST_BYTES + 16]; /* "host:port", "[v6]:port" */
} endpoint;

struct client {
    uv_loop_t *loop;
    endpoint endpoints[CLIENT_MAX_ENDPOINTS];
    size_t endpoint_count;
    conn *conns;
    uint32_t conn_count;
    uint32_t max_inflight;
    uint32_t max_queued;
    uint64_t dial_timeout_ms;
    uint32_t max_response_bytes;
    req_list queue;
    uint32_t rr; /* next connection to try */
    uv_timer_t deadline_timer;
    bool deadline_running;
    bool closing;
    size_t handles_open;
    void (*closed)(void *ctx);
    void *closed_ctx;
};

static void client_pump(client *c);
static void conn_flush(conn *cn);

/* ---- methods ------------------------------------------------------------ */

static const struct {
    const char *path;
    const ProtobufCMessageDescriptor *request, *response;
} methods[CLIENT_METHOD__COUNT] = {
    [CLIENT_RANGE] = {"/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor,
                      &etcdserverpb__range_response__descriptor},
    [CLIENT_PUT] = {"/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor,
                    &etcdserverpb__put_response__descriptor},
    [CLIENT_DELETE_RANGE] = {"/etcdserverpb.KV/DeleteRange",
                             &etcdserverpb__delete_range_request__descriptor,
                             &etcdserverpb__delete_range_response__descriptor},
    [CLIENT_TXN] = {"/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor,
                    &etcdserverpb__txn_response__descriptor},
    [CLIENT_COMPACT] = {"/etcdserverpb.KV/Compact", &etcdserverpb__compaction_request__descriptor,
                        &etcdserverpb__compaction_response__descriptor},
    [CLIENT_STATUS] = {"/etcdserverpb.Maintenance/Status",
                       &etcdserverpb__status_request__descriptor,
                       &etcdserverpb__status_response__descriptor},
    [CLIENT_MEMBER_LIST] = {"/etcdserverpb.Cluster/MemberList",
                            &etcdserverpb__member_list_request__descriptor,
                            &etcdserverpb__member_list_response__descriptor},
    [CLIENT_MEMBER_ADD] = {"/etcdserverpb.Cluster/MemberAdd",
                           &etcdserverpb__member_add_request__descriptor,
                           &etcdserverpb__member_add_response__descriptor},
    [CLIENT_MEMBER_REMOVE] = {"/etcdserverpb.Cluster/MemberRemove",
                              &etcdserverpb__member_remove_request__descriptor,
                              &etcdserverpb__member_remove_response__descriptor},
    [CLIENT_MEMBER_UPDATE] = {"/etcdserverpb.Cluster/MemberUpdate",
                              &etcdserverpb__member_update_request__descriptor,
                              &etcdserverpb__member_update_response__descriptor},
    [CLIENT_MEMBER_PROMOTE] = {"/etcdserverpb.Cluster/MemberPromote",
                               &etcdserverpb__member_promote_request__descriptor,
                               &etcdserverpb__member_promote_response__descriptor},
    [CLIENT_MOVE_LEADER] = {"/etcdserverpb.Maintenance/MoveLeader",
                            &etcdserverpb__move_leader_request__descriptor,
                            &etcdserverpb__move_leader_response__descriptor},
};

const char *client_method_path(client_method method)
{
    assert(method < CLIENT_METHOD__COUNT);
    return methods[method].path;
}

const ProtobufCMessageDescriptor *client_method_request_descriptor(client_method method)
{
    assert(method < CLIENT_METHOD__COUNT);
    return methods[method].request;
}

const ProtobufCMessageDescriptor *client_method_response_descriptor(client_method method)
{
    assert(method < CLIENT_METHOD__COUNT);
    return methods[method].response;
}

void client_free_response(void *response)
{
    if (response != NULL)
        protobuf_c_message_free_unpacked(response, NULL);
}

/* ---- request lists ------------------------------------------------------ */

static void list_push(req_list *l, req *r)
{
    r->prev = l->tail;
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->count++;
}

static void list_push_front(req_list *l, req *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->count++;
}

static void list_remove(req_list *l, req *r)
{
    assert(l->count > 0);
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->count--;
}

/* ---- completion --------------------------------------------------------- */

static void req_free(req *r)
{
    free(r->body);
    free(r->resp);
    free(r);
}

/* Runs done once and frees the call. The call is on no list any more. */
static void req_finish(req *r, fl_err err, int grpc_code, const char *message, void *response)
{
    client_status status;
    client_status_set(&status, err, grpc_code, message);
    client_done_fn done = r->done;
    void *ctx = r->ctx;
    req_free(r);
    done(ctx, &status, response);
}

/* Completion of a stream that ended normally or was reset by the server. */
static void req_complete(req *r, uint32_t h2_error)
{
    char msg[CLIENT_MESSAGE_BYTES];
    if (r->resp_too_large) {
        snprintf(msg, sizeof msg, "response larger than %u bytes", r->c->max_response_bytes);
        req_finish(r, FL_ERR_TOO_LARGE, -1, msg, NULL);
        return;
    }
    if (r->grpc_status > 0) {
        snprintf(msg, sizeof msg, "%s", r->message);
        req_finish(r, client_error_from_grpc(r->grpc_status, msg), r->grpc_status, msg, NULL);
        return;
    }
    if (r->grpc_status < 0) {
        if (r->http_status != 0 && r->http_status != 200)
            snprintf(msg, sizeof msg, "unexpected HTTP status %d", r->http_status);
        else if (h2_error != 0)
            snprintf(msg, sizeof msg, "stream reset by server: %s",
                     nghttp2_http2_strerror(h2_error));
        else
            snprintf(msg, sizeof msg, "response without grpc-status");
        req_finish(r, FL_ERR_UNAVAILABLE, -1, msg, NULL);
        return;
    }
    /* grpc-status 0: exactly one uncompressed message must have arrived. */
    uint32_t len = 0;
    if (r->resp_len >= 5)
        len = (uint32_t)r->resp[1] << 24 | (uint32_t)r->resp[2] << 16 | (uint32_t)r->resp[3] << 8 |
              (uint32_t)r->resp[4];
    if (r->resp_len < 5 || r->resp[0] != 0 || (size_t)len + 5 != r->resp_len) {
        req_finish(r, FL_ERR_CORRUPT, 0, "malformed gRPC response message", NULL);
        return;
    }
    ProtobufCMessage *m =
        protobuf_c_message_unpack(methods[r->method].response, NULL, len, r->resp + 5);
    if (m == NULL) {
        req_finish(r, FL_ERR_CORRUPT, 0, "cannot decode the response message", NULL);
        return;
    }
    req_finish(r, FL_OK, 0, "", m);
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static req *stream_req(nghttp2_session *s, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(s, stream_id);
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    req *r = stream_req(s, stream_id);
    if (r == NULL) /* timed out while queued in nghttp2: the stream is reset */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = r->body_len - r->body_sent;
    if (n > length)
        n = length;
    memcpy(buf, r->body + r->body_sent, n);
    r->body_sent += n;
    if (r->body_sent == r->body_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* A header value that must be a whole decimal number in [0, max]; -1 if not
 * (atoi would read "abc" as 0, which for grpc-status means success). */
static int header_number(const uint8_t *value, size_t len, int max)
{
    if (len == 0 || len > 3)
        return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1;
        n = n * 10 + (value[i] - '0');
    }
    return n <= max ? n : -1;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    req *r = stream_req(s, frame->hd.stream_id);
    if (r == NULL)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        r->http_status = header_number(value, valuelen, 999);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        /* malformed (-1) reads as "no grpc-status": an error, never success */
        r->grpc_status = header_number(value, valuelen, 16);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        client_percent_decode(value, valuelen, r->message, sizeof r->message);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    req *r = stream_req(s, stream_id);
    if (r == NULL || r->resp_too_large || len == 0)
        return 0;
    size_t limit = (size_t)r->c->max_response_bytes + 5;
    if (r->resp_len + len > limit) {
        r->resp_too_large = true;
        free(r->resp);
        r->resp = NULL;
        r->resp_len = r->resp_cap = 0;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        return 0;
    }
    if (r->resp_len + len > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 256;
        while (cap < r->resp_len + len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        uint8_t *p = realloc(r->resp, cap);
        if (p == NULL)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user_data)
{
    conn *cn = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        cn->goaway = true; /* streams past its last id come back REFUSED_STREAM */
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    conn *cn = user_data;
    req *r = stream_req(s, stream_id);
    if (r == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, stream_id, NULL);
    assert(r->conn == cn);
    list_remove(&cn->inflight, r);
    if (error_code == NGHTTP2_REFUSED_STREAM && r->http_status == 0 &&
        r->refused < REFUSED_RETRIES_MAX && !cn->c->closing) {
        /* RFC 9113 8.7: a refused stream was not processed, so even a Put may
         * go again (e.g. streams past a GOAWAY's last id). */
        r->refused++;
        r->conn = NULL;
        r->stream_id = 0;
        r->body_sent = 0;
        r->grpc_status = -1;
        r->message[0] = '\0';
        free(r->resp);
        r->resp = NULL;
        r->resp_len = r->resp_cap = 0;
        list_push_front(&cn->c->queue, r);
    } else {
        req_complete(r, error_code);
    }
    client_pump(cn->c); /* a slot is free */
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static void client_maybe_finish_close(client *c)
{
    if (!c->closing || c->handles_open > 0)
        return;
    void (*closed)(void *) = c->closed;
    void *ctx = c->closed_ctx;
    free(c->conns);
    free(c);
    if (closed)
        closed(ctx);
}

static void on_handle_closed(uv_handle_t *h)
{
    client *c = h->data;
    assert(c->handles_open > 0);
    c->handles_open--;
    client_maybe_finish_close(c);
}

static bool client_has_live_conn(const client *c)
{
    for (uint32_t i = 0; i < c->conn_count; i++)
        if (c->conns[i].state == CONN_CONNECTING || c->conns[i].state == CONN_READY)
            return true;
    return false;
}

/* Fails the calls queued now. Calls that done callbacks start meanwhile stay
 * queued (failing them here could loop forever). */
static void fail_queue(client *c, fl_err err, const char *msg)
{
    req_list waiting = c->queue;
    c->queue = (req_list){0};
    while (waiting.head != NULL) {
        req *r = waiting.head;
        list_remove(&waiting, r);
        req_finish(r, err, -1, msg, NULL);
    }
}

static void conn_connect(conn *cn);

static void on_tcp_closed(uv_handle_t *h)
{
    conn *cn = h->data;
    client *c = cn->c;
    assert(cn->state == CONN_CLOSING);
    cn->tcp_open = false;
    c->handles_open--;
    /* Detach the streams first: nghttp2_session_del must find no call. */
    req_list lost = cn->inflight;
    cn->inflight = (req_list){0};
    for (req *r = lost.head; r != NULL; r = r->next)
        if (cn->session != NULL && r->stream_id > 0)
            nghttp2_session_set_stream_user_data(cn->session, r->stream_id, NULL);
    if (cn->session != NULL) {
        nghttp2_session_del(cn->session);
        cn->session = NULL;
    }
    cn->state = CONN_IDLE;
    cn->write_outstanding = 0;
    bool was_ready = cn->was_ready;
    if (!c->closing) {
        cn->endpoint = (cn->endpoint + 1) % c->endpoint_count;
        cn->attempts = was_ready ? 0 : cn->attempts + 1;
    }
    /* done callbacks may start calls, which may reconnect this connection */
    while (lost.head != NULL) {
        req *r = lost.head;
        list_remove(&lost, r);
        req_finish(r, cn->fail_err, -1, cn->fail_msg, NULL);
    }
    if (c->closing) {
        client_maybe_finish_close(c);
        return;
    }
    if (cn->state != CONN_IDLE)
        return; /* a callback's call already reconnected it */
    if (was_ready) {
        client_pump(c);
        return;
    }
    if (cn->attempts < c->endpoint_count && c->queue.count > 0) {
        conn_connect(cn);
        return;
    }
    cn->attempts = 0;
    if (!client_has_live_conn(c))
        fail_queue(c, cn->fail_err, cn->fail_msg);
}

/* Closes the socket; the streams fail with err/msg from on_tcp_closed. */
static void conn_shutdown(conn *cn, fl_err err, const char *msg)
{
    if (cn->state == CONN_IDLE || cn->state == CONN_CLOSING)
        return;
    cn->state = CONN_CLOSING;
    cn->fail_err = err;
    snprintf(cn->fail_msg, sizeof cn->fail_msg, "%s", msg);
    uv_timer_stop(&cn->dial_timer);
    assert(cn->tcp_open);
    uv_close((uv_handle_t *)&cn->tcp, on_tcp_closed);
}

static void on_write(uv_write_t *w, int status)
{
    conn *cn = w->data;
    size_t len = *(size_t *)(w + 1);
    assert(cn->write_outstanding >= len);
    cn->write_outstanding -= len;
    free(w);
    if (status < 0) {
        char msg[CLIENT_MESSAGE_BYTES];
        snprintf(msg, sizeof msg, "write to %s: %s", cn->c->endpoints[cn->endpoint].authority,
                 uv_strerror(status));
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, msg);
        return;
    }
    conn_flush(cn);
}

/* Moves what nghttp2 has to send into uv_write buffers, up to the write bound. */
static void conn_flush(conn *cn)
{
    if (cn->state != CONN_READY || cn->in_session)
        return;
    cn->dirty = false;
    const size_t header = sizeof(uv_write_t) + sizeof(size_t);
    while (cn->write_outstanding < CONN_WRITE_LIMIT_BYTES) {
        size_t cap = CONN_WRITE_CHUNK_BYTES, len = 0;
        uint8_t *block = malloc(header + cap);
        if (block == NULL) {
            conn_shutdown(cn, FL_ERR_NOMEM, "out of memory");
            return;
        }
        cn->in_session = true;
        ssize_t n = 0;
        while (len < CONN_WRITE_CHUNK_BYTES) {
            const uint8_t *data;
            n = nghttp2_session_mem_send(cn->session, &data);
            if (n <= 0)
                break;
            if (len + (size_t)n > cap) {
                uint8_t *p = realloc(block, header + len + (size_t)n);
                if (p == NULL) {
                    n = NGHTTP2_ERR_NOMEM;
                    break;
                }
                block = p;
                cap = len + (size_t)n;
            }
            memcpy(block + header + len, data, (size_t)n);
            len += (size_t)n;
        }
        cn->in_session = false;
        if (n < 0 || cn->state != CONN_READY) {
            free(block);
            if (n < 0)
                conn_shutdown(cn, FL_ERR_IO, nghttp2_strerror((int)n));
            return;
        }
        if (len == 0) {
            free(block);
            break;
        }
        uv_write_t *w = (uv_write_t *)block;
        *(size_t *)(w + 1) = len;
        w->data = cn;
        uv_buf_t buf = uv_buf_init((char *)block + header, (unsigned)len);
        int rc = uv_write(w, (uv_stream_t *)&cn->tcp, &buf, 1, on_write);
        if (rc < 0) {
            free(block);
            conn_shutdown(cn, FL_ERR_UNAVAILABLE, uv_strerror(rc));
            return;
        }
        cn->write_outstanding += len;
    }
    if (!nghttp2_session_want_read(cn->session) && !nghttp2_session_want_write(cn->session))
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, "connection closed by server (GOAWAY)");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *cn = h->data;
    *buf = uv_buf_init((char *)cn->rbuf, sizeof cn->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *cn = s->data;
    if (cn->state != CONN_READY)
        return;
    if (n < 0) {
        char msg[CLIENT_MESSAGE_BYTES];
        snprintf(msg, sizeof msg, "connection to %s lost: %s",
                 cn->c->endpoints[cn->endpoint].authority,
                 n == UV_EOF ? "closed by server" : uv_strerror((int)n));
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, msg);
        return;
    }
    if (n == 0)
        return;
    cn->in_session = true;
    ssize_t rc = nghttp2_session_mem_recv(cn->session, (const uint8_t *)buf->base, (size_t)n);
    cn->in_session = false;
    if (rc < 0) {
        conn_shutdown(cn, FL_ERR_IO, nghttp2_strerror((int)rc));
        return;
    }
    client_pump(cn->c);
    conn_flush(cn);
}

static fl_err conn_session_new(conn *cn)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return FL_ERR_NOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    int rc = nghttp2_session_client_new(&cn->session, cbs, cn);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return FL_ERR_NOMEM;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CONN_STREAM_WINDOW},
    };
    rc = nghttp2_submit_settings(cn->session, NGHTTP2_FLAG_NONE, settings, 2);
    if (rc == 0)
        rc = nghttp2_session_set_local_window_size(cn->session, NGHTTP2_FLAG_NONE, 0,
                                                   CONN_SESSION_WINDOW);
    if (rc != 0) {
        nghttp2_session_del(cn->session);
        cn->session = NULL;
        return FL_ERR_NOMEM;
    }
    return FL_OK;
}

static void on_connect(uv_connect_t *creq, int status)
{
    conn *cn = creq->data;
    if (cn->state != CONN_CONNECTING)
        return; /* cancelled by conn_shutdown */
    char msg[CLIENT_MESSAGE_BYTES];
    if (status < 0) {
        snprintf(msg, sizeof msg, "dial tcp %s: %s", cn->c->endpoints[cn->endpoint].authority,
                 uv_strerror(status));
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, msg);
        return;
    }
    uv_timer_stop(&cn->dial_timer);
    if (conn_session_new(cn) != FL_OK) {
        conn_shutdown(cn, FL_ERR_NOMEM, "cannot create an HTTP/2 session");
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read);
    if (rc < 0) {
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, uv_strerror(rc));
        return;
    }
    cn->state = CONN_READY;
    cn->was_ready = true;
    cn->attempts = 0;
    client_pump(cn->c);
    conn_flush(cn);
}

static void on_dial_timeout(uv_timer_t *t)
{
    conn *cn = t->data;
    char msg[CLIENT_MESSAGE_BYTES];
    snprintf(msg, sizeof msg, "dial tcp %s: i/o timeout", cn->c->endpoints[cn->endpoint].authority);
    conn_shutdown(cn, FL_ERR_UNAVAILABLE, msg);
}

static void conn_connect(conn *cn)
{
    client *c = cn->c;
    assert(cn->state == CONN_IDLE && !cn->tcp_open);
    uv_tcp_init(c->loop, &cn->tcp);
    cn->tcp.data = cn;
    cn->tcp_open = true;
    c->handles_open++;
    cn->state = CONN_CONNECTING;
    cn->was_ready = false;
    cn->goaway = false;
    cn->connect_req.data = cn;
    uv_tcp_nodelay(&cn->tcp, 1);
    int rc = uv_tcp_connect(&cn->connect_req, &cn->tcp,
                            (const struct sockaddr *)&c->endpoints[cn->endpoint].addr, on_connect);
    if (rc < 0) {
        char msg[CLIENT_MESSAGE_BYTES];
        snprintf(msg, sizeof msg, "dial tcp %s: %s", c->endpoints[cn->endpoint].authority,
                 uv_strerror(rc));
        conn_shutdown(cn, FL_ERR_UNAVAILABLE, msg);
        return;
    }
    uv_timer_start(&cn->dial_timer, on_dial_timeout, c->dial_timeout_ms, 0);
}

/* ---- dispatch ----------------------------------------------------------- */

static uint32_t conn_capacity(const conn *cn, uint32_t max_inflight)
{
    uint32_t limit = max_inflight;
    uint32_t remote =
        nghttp2_session_get_remote_settings(cn->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (remote < limit)
        limit = remote;
    return cn->inflight.count < limit ? (uint32_t)(limit - cn->inflight.count) : 0;
}

static conn *pick_conn(client *c)
{
    for (uint32_t k = 0; k < c->conn_count; k++) {
        uint32_t i = (c->rr + k) % c->conn_count;
        conn *cn = &c->conns[i];
        if (cn->state == CONN_READY && !cn->goaway && conn_capacity(cn, c->max_inflight) > 0) {
            c->rr = (i + 1) % c->conn_count;
            return cn;
        }
    }
    return NULL;
}

static bool submit(conn *cn, req *r)
{
    client *c = cn->c;
    char timeout[24];
    nghttp2_nv nv[8];
    size_t n = 0;
#define NV(k, v)                                                                                   \
    nv[n++] =                                                                                      \
        (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
    NV(":method", "POST");
    NV(":scheme", "http");
    NV(":path", methods[r->method].path);
    NV(":authority", c->endpoints[cn->endpoint].authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    NV("user-agent", "flotilla-client/" FLOTILLA_VERSION);
    if (r->deadline_ms != 0) {
        uint64_t now = uv_now(c->loop);
        client_grpc_timeout(r->deadline_ms > now ? r->deadline_ms - now : 1, timeout,
                            sizeof timeout);
        NV("grpc-timeout", timeout);
    }
#undef NV
    nghttp2_data_provider body = {.source.ptr = NULL, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(cn->session, NULL, nv, n, &body, r);
    if (id < 0)
        return false;
    r->stream_id = id;
    r->conn = cn;
    list_push(&cn->inflight, r);
    cn->dirty = true;
    return true;
}

static void client_pump(client *c)
{
    if (c->closing)
        return;
    /* A connection the server is draining (GOAWAY) retires once its streams are done. */
    for (uint32_t i = 0; i < c->conn_count; i++) {
        conn *cn = &c->conns[i];
        if (cn->state == CONN_READY && cn->goaway && cn->inflight.count == 0)
            conn_shutdown(cn, FL_ERR_UNAVAILABLE, "connection closed by server (GOAWAY)");
    }
    if (c->queue.count > 0) {
        for (uint32_t i = 0; i < c->conn_count; i++)
            if (c->conns[i].state == CONN_IDLE)
                conn_connect(&c->conns[i]);
    }
    while (c->queue.head != NULL) {
        conn *cn = pick_conn(c);
        if (cn == NULL)
            break;
        req *r = c->queue.head;
        list_remove(&c->queue, r);
        if (!submit(cn, r)) {
            /* Stream ids exhausted or out of memory: retire this connection. */
            list_push_front(&c->queue, r);
            conn_shutdown(cn, FL_ERR_UNAVAILABLE, "connection retired (stream ids exhausted)");
        }
    }
    for (uint32_t i = 0; i < c->conn_count; i++)
        if (c->conns[i].dirty)
            conn_flush(&c->conns[i]);
}

/* ---- deadlines ---------------------------------------------------------- */

static void on_deadline_tick(uv_timer_t *t)
{
    client *c = t->data;
    uint64_t now = uv_now(c->loop);
    req *next;
    for (req *r = c->queue.head; r != NULL; r = next) {
        next = r->next;
        if (r->deadline_ms != 0 && r->deadline_ms <= now) {
            list_remove(&c->queue, r);
            req_finish(r, FL_ERR_TIMEOUT, -1, "context deadline exceeded", NULL);
            next = c->queue.head; /* done may have changed the queue: rescan */
        }
    }
    for (uint32_t i = 0; i < c->conn_count; i++) {
        conn *cn = &c->conns[i];
        for (req *r = cn->inflight.head; r != NULL; r = next) {
            next = r->next;
            if (r->deadline_ms == 0 || r->deadline_ms > now)
                continue;
            nghttp2_session_set_stream_user_data(cn->session, r->stream_id, NULL);
            nghttp2_submit_rst_stream(cn->session, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
            cn->dirty = true;
            list_remove(&cn->inflight, r);
            req_finish(r, FL_ERR_TIMEOUT, -1, "context deadline exceeded", NULL);
            next = cn->inflight.head;
        }
    }
    if (client_outstanding(c) == 0 && c->deadline_running) {
        uv_timer_stop(&c->deadline_timer);
        c->deadline_running = false;
    }
    client_pump(c);
}

/* ---- public ------------------------------------------------------------- */

static fl_err resolve(const char *text, endpoint *ep)
{
    char host[HOST_BYTES];
    int port;
    fl_err err = client_parse_endpoint(text, host, sizeof host, &port);
    if (err != FL_OK)
        return err;
    memset(&ep->addr, 0, sizeof ep->addr);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ep->addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ep->addr) != 0) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
            return FL_ERR_NOT_FOUND;
        memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
        if (res->ai_family == AF_INET)
            ((struct sockaddr_in *)&ep->addr)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)&ep->addr)->sin6_port = htons((uint16_t)port);
        freeaddrinfo(res);
    }
    if (strchr(host, ':') != NULL)
        snprintf(ep->authority, sizeof ep->authority, "[%s]:%d", host, port);
    else
        snprintf(ep->authority, sizeof ep->authority, "%s:%d", host, port);
    return FL_OK;
}

fl_err client_open(uv_loop_t *loop, const client_options *o, client **out)
{
    assert(loop != NULL && o != NULL && out != NULL);
    *out = NULL;
    if (o->endpoint_count == 0 || o->endpoint_count > CLIENT_MAX_ENDPOINTS ||
        o->connections > CLIENT_MAX_CONNECTIONS ||
        o->max_inflight_per_connection > CLIENT_MAX_INFLIGHT || o->max_queued > CLIENT_MAX_QUEUED ||
        o->max_response_bytes > CLIENT_RESPONSE_BYTES_MAX)
        return FL_ERR_INVALID;
    client *c = calloc(1, sizeof *c); /* freed by client_close */
    if (c == NULL)
        return FL_ERR_NOMEM;
    c->loop = loop;
    c->endpoint_count = o->endpoint_count;
    for (size_t i = 0; i < o->endpoint_count; i++) {
        fl_err err = resolve(o->endpoints[i], &c->endpoints[i]);
        if (err != FL_OK) {
            free(c);
            return err;
        }
    }
    c->conn_count = o->connections ? o->connections : 1;
    c->max_inflight = o->max_inflight_per_connection ? o->max_inflight_per_connection : 1000;
    c->max_queued = o->max_queued ? o->max_queued : 10000;
    c->dial_timeout_ms = o->dial_timeout_ms ? o->dial_timeout_ms : 5000;
    c->max_response_bytes = o->max_response_bytes ? o->max_response_bytes : (64u << 20);
    c->conns = calloc(c->conn_count, sizeof *c->conns); /* freed with c */
    if (c->conns == NULL) {
        free(c);
        return FL_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < c->conn_count; i++) {
        conn *cn = &c->conns[i];
        cn->c = c;
        cn->endpoint = i % c->endpoint_count;
        uv_timer_init(loop, &cn->dial_timer);
        cn->dial_timer.data = cn;
        c->handles_open++;
    }
    uv_timer_init(loop, &c->deadline_timer);
    c->deadline_timer.data = c;
    c->handles_open++;
    *out = c;
    return FL_OK;
}

fl_err client_call(client *c, client_method method, const void *request, uint64_t timeout_ms,
                   client_done_fn done, void *ctx)
{
    assert(c != NULL && method < CLIENT_METHOD__COUNT && request != NULL && done != NULL);
    const ProtobufCMessage *m = request;
    assert(m->descriptor == methods[method].request);
    if (c->closing)
        return FL_ERR_STOPPED;
    if (c->queue.count >= c->max_queued)
        return FL_ERR_BUSY;
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len > CLIENT_REQUEST_BYTES_MAX)
        return FL_ERR_TOO_LARGE;
    req *r = calloc(1, sizeof *r); /* freed by req_finish */
    if (r == NULL)
        return FL_ERR_NOMEM;
    r->body = malloc(len + 5);
    if (r->body == NULL) {
        free(r);
        return FL_ERR_NOMEM;
    }
    r->body[0] = 0;
    r->body[1] = (uint8_t)(len >> 24);
    r->body[2] = (uint8_t)(len >> 16);
    r->body[3] = (uint8_t)(len >> 8);
    r->body[4] = (uint8_t)len;
    size_t packed = protobuf_c_message_pack(m, r->body + 5);
    assert(packed == len);
    (void)packed; /* NDEBUG builds */
    r->body_len = len + 5;
    r->c = c;
    r->method = method;
    r->grpc_status = -1;
    r->timeout_ms = timeout_ms;
    r->deadline_ms = timeout_ms ? uv_now(c->loop) + timeout_ms : 0;
    r->done = done;
    r->ctx = ctx;
    list_push(&c->queue, r);
    if (timeout_ms != 0 && !c->deadline_running) {
        uv_timer_start(&c->deadline_timer, on_deadline_tick, DEADLINE_TICK_MS, DEADLINE_TICK_MS);
        c->deadline_running = true;
    }
    client_pump(c);
    return FL_OK;
}

size_t client_outstanding(const client *c)
{
    size_t n = c->queue.count;
    for (uint32_t i = 0; i < c->conn_count; i++)
        n += c->conns[i].inflight.count;
    return n;
}

void client_close(client *c, void (*closed)(void *ctx), void *ctx)
{
    assert(c != NULL && !c->closing);
    c->closing = true;
    c->closed = closed;
    c->closed_ctx = ctx;
    fail_queue(c, FL_ERR_STOPPED, "client closed");
    for (uint32_t i = 0; i < c->conn_count; i++) {
        conn *cn = &c->conns[i];
        conn_shutdown(cn, FL_ERR_STOPPED, "client closed");
        cn->dial_timer.data = c;
        uv_close((uv_handle_t *)&cn->dial_timer, on_handle_closed);
    }
    uv_timer_stop(&c->deadline_timer);
    uv_close((uv_handle_t *)&c->deadline_timer, on_handle_closed);
}

/* transport/conn: one TCP connection to or from a peer.
 *
 * Read side: bytes go into rbuf, frames are cut out with codec_frame_parse
 * and dispatched by role. The first frame either way is the hello; any frame
 * that fails a check closes the connection (one rate-limited log line,
 * bad_frames++) and nothing else. rbuf never holds more than one frame of
 * frame_bytes_max plus TRANSPORT_READ_SLACK.
 *
 * Write side: frames wait in the peer's queue (messages) or the conn's
 * control list (hello, ping, ack, snapshot frames); conn_flush moves all of
 * them into one uv_write. One write in flight per conn.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "transport/internal.h"
#include "util/log.h"

#define MODULE "transport"

static const char *role_name(conn_role r)
{
    return r == CONN_OUT_MSG ? "out-stream" : r == CONN_OUT_SNAP ? "out-snapshot" : "in";
}

/* ---- frames ---- */

struct frame *frame_new(uint32_t payload_len)
{
    struct frame *f = malloc(sizeof *f + CODEC_FRAME_HEADER + (size_t)payload_len);
    if (!f)
        return NULL;
    f->next = NULL;
    f->len = CODEC_FRAME_HEADER + payload_len;
    f->counted = false;
    return f;
}

/* The payload (after the header) is written; fill the header. The payload
 * may be shorter than allocated (a short snapshot read). */
void frame_seal(struct frame *f, uint32_t payload_len)
{
    assert(CODEC_FRAME_HEADER + payload_len <= f->len);
    f->len = CODEC_FRAME_HEADER + payload_len;
    codec_frame_header(f->data, f->data + CODEC_FRAME_HEADER, payload_len);
}

void frame_list_push(struct frame_list *l, struct frame *f)
{
    f->next = NULL;
    if (l->tail)
        l->tail->next = f;
    else
        l->head = f;
    l->tail = f;
    l->count++;
    l->bytes += f->len;
}

void frame_list_free(struct frame_list *l)
{
    for (struct frame *f = l->head, *next; f; f = next) {
        next = f->next;
        free(f);
    }
    memset(l, 0, sizeof *l);
}

/* Appends src to dst, leaving src empty. */
static void frame_list_splice(struct frame_list *dst, struct frame_list *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->count += src->count;
    dst->bytes += src->bytes;
    memset(src, 0, sizeof *src);
}

/* ---- life cycle ---- */

struct conn *conn_new(transport *t, conn_role role)
{
    struct conn *c = calloc(1, sizeof *c); /* owned by t->conns until refs reaches 0 */
    if (!c)
        return NULL;
    if (uv_tcp_init(t->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    c->t = t;
    c->role = role;
    c->refs = 1;
    c->tcp.data = c;
    c->started_ms = c->activity_ms = c->write_ms = uv_now(t->loop);
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->live++;
    if (role == CONN_IN)
        t->n_incoming++;
    return c;
}

void conn_unref(struct conn *c)
{
    assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    transport *t = c->t;
    assert(c->closing && !c->writing);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->role == CONN_IN)
        t->n_incoming--;
    frame_list_free(&c->control);
    frame_list_free(&c->inflight);
    free(c->bufs);
    free(c->rbuf);
    if (c->snap_out)
        snap_out_free(c->snap_out);
    if (c->snap_in)
        snap_in_free(t, c->snap_in);
    free(c);
    transport_release(t);
}

/* Reports what the close means to the user, from the loop (never from
 * inside a transport_* call), then lets the conn go. */
static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    transport *t = c->t;
    if (!t->stopping && c->role == CONN_OUT_MSG && c->peer) {
        struct peer *p = c->peer;
        if (t->o.on_unreachable)
            for (uint32_t i = 0; i < p->n_groups; i++)
                t->o.on_unreachable(t->o.ctx, p->groups[i], p->id);
    }
    if (c->role == CONN_OUT_SNAP && c->snap_out->acked)
        t->stats.snapshots_sent++;
    if (!t->stopping && c->role == CONN_OUT_SNAP && t->o.on_snapshot_sent) {
        bool ok = c->snap_out->acked;
        t->o.on_snapshot_sent(t->o.ctx, c->snap_out->group_id, c->remote_id, ok);
    }
    conn_unref(c);
}

void conn_close(struct conn *c, const char *why)
{
    if (c->closing)
        return;
    transport *t = c->t;
    c->closing = true;
    FL_LOG_DEBUGF(MODULE, "connection closed", "role=%s peer=%016llx reason=\"%s\"",
                  role_name(c->role), (unsigned long long)c->remote_id, why);
    struct peer *p = c->peer;
    if (c->role == CONN_OUT_MSG && p) {
        struct peer_stream *ps = &p->streams[peer_stream_slot(c->stream)];
        assert(ps->conn == c);
        ps->conn = NULL;
        /* Queued messages were meant for this stream; they go with it. The
         * frames of a write in flight are still counted until on_written. */
        assert(p->queued_msgs >= ps->queue.count && p->queued_bytes >= ps->queue.bytes);
        p->queued_msgs -= ps->queue.count;
        p->queued_bytes -= ps->queue.bytes;
        t->stats.dropped += ps->queue.count;
        frame_list_free(&ps->queue);
        uint64_t now = uv_now(t->loop);
        if (c->was_up) {
            p->last_up_ms = now;
            ps->backoff_ms = TRANSPORT_BACKOFF_MIN_MS;
        } else {
            ps->backoff_ms = ps->backoff_ms * 2 > TRANSPORT_BACKOFF_MAX_MS
                                 ? TRANSPORT_BACKOFF_MAX_MS
                                 : ps->backoff_ms * 2;
        }
        ps->next_dial_ms = now + transport_jitter(t, ps->backoff_ms);
    }
    if (c->role == CONN_OUT_SNAP && p) {
        assert(p->snap_out == c);
        p->snap_out = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- write side ---- */

void conn_push_control(struct conn *c, struct frame *f)
{
    frame_list_push(&c->control, f);
    conn_schedule_flush(c);
}

void conn_schedule_flush(struct conn *c)
{
    transport_schedule_flush(c->t);
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    transport *t = c->t;
    assert(c->writing);
    c->writing = false;
    uint32_t msgs = 0;
    uint64_t bytes = 0;
    for (struct frame *f = c->inflight.head; f; f = f->next)
        if (f->counted) {
            msgs++;
            bytes += f->len;
        }
    frame_list_free(&c->inflight);
    if (c->peer && c->role == CONN_OUT_MSG) {
        assert(c->peer->queued_msgs >= msgs && c->peer->queued_bytes >= bytes);
        c->peer->queued_msgs -= msgs;
        c->peer->queued_bytes -= bytes;
    }
    if (status < 0) {
        t->stats.dropped += msgs;
        if (status != UV_ECANCELED)
            transport_log_limited(t, LOG_CONNECT, "peer write failed", "peer=%016llx err=%s",
                                  (unsigned long long)c->remote_id, uv_strerror(status));
        conn_close(c, "write failed");
        return;
    }
    t->stats.sent += msgs;
    c->activity_ms = c->write_ms = uv_now(t->loop);
    if (c->closing)
        return;
    if (c->role == CONN_OUT_SNAP)
        snap_out_pump(c);
    conn_schedule_flush(c);
}

void conn_flush(struct conn *c)
{
    if (c->closing || c->writing)
        return;
    struct frame_list batch = {0};
    frame_list_splice(&batch, &c->control);
    /* Messages only once the peer has answered our hello. */
    if (c->role == CONN_OUT_MSG && c->hello_done && c->peer)
        frame_list_splice(&batch, &c->peer->streams[peer_stream_slot(c->stream)].queue);
    if (batch.count == 0)
        return;
    if (batch.count > c->bufs_cap) {
        uint32_t cap = batch.count < 64 ? 64 : batch.count;
        uv_buf_t *bufs = realloc(c->bufs, cap * sizeof *bufs); /* owned by c */
        if (!bufs) {
            frame_list_splice(&c->inflight, &batch);
            c->writing = true; /* on_written frees the batch */
            on_written(&c->write_req, UV_ENOMEM);
            return;
        }
        c->bufs = bufs;
        c->bufs_cap = cap;
    }
    uint32_t n = 0;
    for (struct frame *f = batch.head; f; f = f->next)
        c->bufs[n++] = uv_buf_init((char *)f->data, f->len);
    assert(n == batch.count);
    c->inflight = batch;
    c->writing = true;
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, c->bufs, n, on_written);
    if (rc != 0)
        on_written(&c->write_req, rc);
}

/* ---- read side ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t limit = (size_t)c->t->o.frame_bytes_max + CODEC_FRAME_HEADER + TRANSPORT_READ_SLACK;
    size_t want = c->rlen + TRANSPORT_READ_SLACK;
    if (want > limit)
        want = limit;
    if (c->rcap < want) {
        size_t cap = c->rcap * 2 > want ? c->rcap * 2 : want;
        if (cap > limit)
            cap = limit;
        uint8_t *p = realloc(c->rbuf, cap); /* owned by c */
        if (!p) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->rbuf = p;
        c->rcap = cap;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void bad_peer(struct conn *c, const char *what)
{
    c->t->stats.bad_frames++;
    transport_log_limited(c->t, LOG_BAD_PEER, "peer connection closed",
                          "role=%s peer=%016llx why=\"%s\"", role_name(c->role),
                          (unsigned long long)c->remote_id, what);
    conn_close(c, what);
}

static void send_hello(struct conn *c, uint64_t to, codec_stream stream)
{
    struct frame *f = frame_new(CODEC_HELLO_BYTES);
    if (!f) {
        conn_close(c, "no memory for hello");
        return;
    }
    struct codec_hello h = {.version = CODEC_WIRE_VERSION,
                            .stream = (uint8_t)stream,
                            .cluster_id = c->t->o.cluster_id,
                            .from = c->t->o.local_id,
                            .to = to};
    codec_hello_encode(&h, f->data + CODEC_FRAME_HEADER);
    frame_seal(f, CODEC_HELLO_BYTES);
    conn_push_control(c, f);
}

static bool incoming_snapshot_busy(const struct conn *c, uint64_t from)
{
    for (const struct conn *o = c->t->conns; o; o = o->next)
        if (o != c && o->role == CONN_IN && o->hello_done && !o->closing &&
            o->stream == CODEC_STREAM_SNAPSHOT && o->remote_id == from)
            return true;
    return false;
}

/* The hello decides whether this connection lives. */
static void on_hello(struct conn *c, const uint8_t *payload, uint32_t len)
{
    transport *t = c->t;
    struct codec_hello h;
    if (codec_hello_decode(payload, len, &h) != FL_OK) {
        bad_peer(c, "first frame is not a hello");
        return;
    }
    uint64_t want_from = c->role == CONN_IN ? h.from : c->remote_id;
    const char *why = NULL;
    /* a member joining an existing cluster does not know its id yet: the
     * first peer (the leader reaching out to it) tells it */
    if (t->o.cluster_id == 0 && h.cluster_id != 0 && h.version == CODEC_WIRE_VERSION) {
        t->o.cluster_id = h.cluster_id;
        transport_log_limited(t, LOG_HANDSHAKE, "cluster id learned from a peer",
                              "cluster=%016llx from=%016llx", (unsigned long long)h.cluster_id,
                              (unsigned long long)h.from);
    }
    if (h.version != CODEC_WIRE_VERSION)
        why = "unknown protocol version";
    else if (h.cluster_id != t->o.cluster_id)
        why = "cluster id mismatch";
    else if (h.to != t->o.local_id)
        why = "hello meant for another member";
    else if (h.from == 0 || h.from == t->o.local_id || h.from != want_from)
        why = "unexpected sender id";
    else if (h.stream < CODEC_STREAM_MSG || h.stream > CODEC_STREAM_APPEND ||
             (c->role != CONN_IN && h.stream != c->stream))
        why = "unknown stream kind";
    if (why) {
        t->stats.bad_frames++;
        transport_log_limited(t, LOG_HANDSHAKE, "peer handshake refused",
                              "role=%s why=\"%s\" version=%u cluster=%016llx from=%016llx "
                              "to=%016llx",
                              role_name(c->role), why, h.version, (unsigned long long)h.cluster_id,
                              (unsigned long long)h.from, (unsigned long long)h.to);
        conn_close(c, why);
        return;
    }
    c->hello_done = true;
    c->was_up = true;
    if (c->role == CONN_IN) {
        c->remote_id = h.from;
        c->stream = (codec_stream)h.stream;
        if (c->stream == CODEC_STREAM_SNAPSHOT &&
            (incoming_snapshot_busy(c, h.from) || transport_faulted(t, h.from))) {
            conn_close(c, "snapshot refused: one in flight or partitioned");
            return;
        }
        send_hello(c, h.from, c->stream);
        return;
    }
    struct peer *p = c->peer;
    if (p) {
        p->ever_up = true;
        p->last_up_ms = uv_now(t->loop);
    }
    if (c->role == CONN_OUT_MSG) {
        t->stats.connects++;
        conn_schedule_flush(c);
        return;
    }
    if (transport_faulted(t, c->remote_id)) {
        conn_close(c, "snapshot to a partitioned peer");
        return;
    }
    snap_out_pump(c);
}

static void on_msg(struct conn *c, const uint8_t *payload, uint32_t len)
{
    transport *t = c->t;
    uint64_t group_id;
    struct raft_msg msg;
    if (codec_msg_decode(payload + 1, len - 1, &group_id, &msg, t->entries, RAFT_MSG_ENTRIES_MAX) !=
            FL_OK ||
        msg.type == RAFT_MSG_SNAPSHOT) {
        bad_peer(c, "malformed message");
        return;
    }
    if (transport_faulted(t, c->remote_id)) {
        t->stats.dropped++;
        return;
    }
    struct peer *p = transport_peer_find(t, c->remote_id);
    if (p) {
        p->ever_recv = true;
        p->last_recv_ms = uv_now(t->loop);
    }
    t->stats.received++;
    t->o.on_message(t->o.ctx, group_id, &msg, NULL);
}

static void dispatch(struct conn *c, const uint8_t *payload, uint32_t len)
{
    if (!c->hello_done) {
        on_hello(c, payload, len);
        return;
    }
    uint8_t kind = payload[0];
    if (c->role == CONN_IN && c->stream != CODEC_STREAM_SNAPSHOT) {
        if (kind == CODEC_KIND_MSG)
            on_msg(c, payload, len);
        else if (kind != CODEC_KIND_PING || len != 1)
            bad_peer(c, "unexpected frame on a message stream");
        return;
    }
    if (c->role == CONN_IN) {
        fl_err err = FL_ERR_CORRUPT;
        if (kind == CODEC_KIND_SNAP_BEGIN)
            err = snap_in_begin(c, payload, len);
        else if (kind == CODEC_KIND_SNAP_CHUNK)
            err = snap_in_chunk(c, payload, len);
        if (err == FL_ERR_CORRUPT)
            bad_peer(c, "unexpected frame on a snapshot stream");
        else if (err != FL_OK)
            conn_close(c, "snapshot could not be stored");
        return;
    }
    if (c->role == CONN_OUT_SNAP && kind == CODEC_KIND_SNAP_ACK && len == 1 && c->snap_out &&
        c->snap_out->offset == c->snap_out->size && !c->snap_out->reading) {
        c->snap_out->acked = true;
        conn_close(c, "snapshot delivered");
        return;
    }
    /* Our outgoing message streams never expect anything after the hello. */
    bad_peer(c, "unexpected frame from the receiving side");
}

void conn_process(struct conn *c)
{
    transport *t = c->t;
    while (!c->closing && !c->read_paused) {
        const uint8_t *payload;
        uint32_t len;
        size_t used;
        fl_err err = codec_frame_parse(c->rbuf + c->rpos, c->rlen - c->rpos, t->o.frame_bytes_max,
                                       &payload, &len, &used);
        if (err != FL_OK) {
            bad_peer(c,
                     err == FL_ERR_TOO_LARGE ? "frame over frame_bytes_max" : "bad frame checksum");
            return;
        }
        if (used == 0)
            break;
        c->rpos += used;
        c->activity_ms = uv_now(t->loop);
        dispatch(c, payload, len);
    }
    /* A paused conn has a disk write pointing into rbuf: keep it in place. */
    if (c->closing || c->read_paused || c->rpos == 0)
        return;
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
    if (c->rlen == 0 && c->rcap > 4 * TRANSPORT_READ_SLACK) {
        /* Give back what one big frame made us take. */
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            transport_log_limited(c->t, LOG_CONNECT, "peer connection lost",
                                  "role=%s peer=%016llx err=%s", role_name(c->role),
                                  (unsigned long long)c->remote_id, uv_strerror((int)nread));
        conn_close(c, nread == UV_EOF ? "closed by peer" : "read failed");
        return;
    }
    c->rlen += (size_t)nread;
    assert(c->rlen <= c->rcap);
    conn_process(c);
}

static void start_reading(struct conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0)
        conn_close(c, "read start failed");
}

void conn_pause_reading(struct conn *c)
{
    if (c->read_paused)
        return;
    c->read_paused = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_resume_reading(struct conn *c)
{
    assert(c->read_paused);
    c->read_paused = false;
    conn_process(c);
    if (!c->closing && !c->read_paused)
        start_reading(c);
}

/* ---- dialing and accepting ---- */

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        transport_log_limited(c->t, LOG_CONNECT, "peer connect failed",
                              "role=%s peer=%016llx err=%s", role_name(c->role),
                              (unsigned long long)c->remote_id, uv_strerror(status));
        conn_close(c, "connect failed");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, TRANSPORT_KEEPALIVE_S);
    start_reading(c);
    if (!c->closing)
        send_hello(c, c->remote_id, c->stream);
}

void conn_dial(struct conn *c, const struct sockaddr *addr)
{
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connected);
    if (rc != 0)
        conn_close(c, "connect failed at once");
}

void conn_on_connection(uv_stream_t *server, int status)
{
    transport *t = server->data;
    if (status < 0 || t->stopping)
        return;
    bool full = t->n_incoming >= TRANSPORT_INCOMING_MAX;
    struct conn *c = conn_new(t, CONN_IN);
    if (!c)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    if (full) {
        transport_log_limited(t, LOG_INCOMING_FULL, "peer connection refused",
                              "why=\"too many incoming connections\" max=%u",
                              TRANSPORT_INCOMING_MAX);
        conn_close(c, "too many incoming connections");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, TRANSPORT_KEEPALIVE_S);
    start_reading(c);
}

/* ---- deadlines ---- */

void conn_tick(struct conn *c, uint64_t now)
{
    if (c->closing)
        return;
    if (!c->hello_done) {
        if (transport_elapsed(now, c->started_ms) > TRANSPORT_HELLO_MS) {
            if (c->role == CONN_IN)
                bad_peer(c, "no hello in time");
            else
                conn_close(c, "connect or hello timed out");
        }
        return;
    }
    if (c->role == CONN_OUT_MSG) {
        if (!c->writing && transport_elapsed(now, c->write_ms) >= TRANSPORT_PING_MS &&
            c->control.count == 0) {
            struct frame *f = frame_new(1);
            if (f) {
                f->data[CODEC_FRAME_HEADER] = CODEC_KIND_PING;
                frame_seal(f, 1);
                conn_push_control(c, f);
            }
        }
        return;
    }
    /* A snapshot stream may wait on a disk (a chunk write, the fsync of a
     * large body before the ack) for longer than a message stream idles. */
    bool disk_busy = (c->snap_in && c->snap_in->busy) || (c->snap_out && c->snap_out->reading);
    uint64_t limit =
        c->role == CONN_OUT_SNAP || (c->role == CONN_IN && c->stream == CODEC_STREAM_SNAPSHOT)
            ? TRANSPORT_SNAPSHOT_STALL_MS
            : TRANSPORT_IDLE_MS;
    if (!disk_busy && transport_elapsed(now, c->activity_ms) > limit)
        conn_close(c, c->role == CONN_IN ? "idle incoming stream" : "snapshot stalled");
}

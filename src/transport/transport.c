/* transport: life cycle, peers, the send path, and the tick timer.
 *
 * The tick (every TRANSPORT_TICK_MS) does everything time-driven: re-reads
 * the fault file, dials peers whose backoff ran out, enforces handshake and
 * idle deadlines, sends pings. Sending only queues and schedules a flush,
 * which writes every connection's pending frames with one uv_write each, so
 * all the messages of one loop phase leave together: a uv_idle handle
 * (before the poll; started on demand, so the poll does not block while
 * frames wait) flushes what timer callbacks sent, a uv_check handle (after
 * the poll) what I/O callbacks sent.
 */
#include "transport/transport.h"

#include <assert.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/internal.h"
#include "util/log.h"

#define MODULE "transport"

/* ---- small helpers ---- */

struct peer *transport_peer_find(const transport *t, uint64_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i]->id == id)
            return t->peers[i];
    return NULL;
}

bool transport_faulted(const transport *t, uint64_t id)
{
    for (uint32_t i = 0; i < t->n_faults; i++)
        if (t->faults[i] == id)
            return true;
    return false;
}

void transport_log_limited(transport *t, enum log_slot slot, const char *msg, const char *fmt, ...)
{
    uint64_t now = uv_now(t->loop);
    if (t->log_last_ms[slot] != 0 && now - t->log_last_ms[slot] < TRANSPORT_LOG_INTERVAL_MS) {
        t->log_suppressed[slot]++;
        return;
    }
    t->log_last_ms[slot] = now ? now : 1;
    char tail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    FL_LOG_WARNF(MODULE, msg, "local=%016llx %s suppressed=%llu", (unsigned long long)t->o.local_id,
                 tail, (unsigned long long)t->log_suppressed[slot]);
    t->log_suppressed[slot] = 0;
}

void transport_release(transport *t)
{
    assert(t->live > 0);
    t->live--;
    if (t->live == 0 && t->free_when_closed) {
        free(t->entries);
        free(t);
        return;
    }
    if (t->live == 0 && t->stopping && t->stopped) {
        void (*cb)(void *) = t->stopped;
        t->stopped = NULL;
        cb(t->stopped_ctx);
    }
}

/* xorshift64*: jitter only, so the quality needs are small. */
uint64_t transport_jitter(transport *t, uint64_t ms)
{
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    uint64_t r = t->rng * 2685821657736338717ull;
    /* In [ms/2, ms]: spread reconnects so peers do not dial in lockstep. */
    return ms / 2 + (ms > 1 ? r % (ms / 2 + 1) : 0);
}

/* "http://HOST:PORT[/]" -> address. HOST: IPv4, [IPv6], or a name resolved
 * now (blocking: only at configuration time). */
static fl_err parse_url(const char *url, struct sockaddr_storage *out)
{
    const char *prefix = "http://";
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        return FL_ERR_INVALID;
    const char *host = url + strlen(prefix);
    char hostbuf[256];
    const char *colon;
    size_t hlen;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || end[1] != ':')
            return FL_ERR_INVALID;
        hlen = (size_t)(end - host - 1);
        host++;
        colon = end + 1;
    } else {
        colon = strrchr(host, ':');
        if (!colon)
            return FL_ERR_INVALID;
        hlen = (size_t)(colon - host);
    }
    if (hlen == 0 || hlen >= sizeof hostbuf)
        return FL_ERR_INVALID;
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || port > 65535 || (*end != '\0' && strcmp(end, "/") != 0))
        return FL_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(hostbuf, (int)port, (struct sockaddr_in *)out) == 0)
        return FL_OK;
    if (uv_ip6_addr(hostbuf, (int)port, (struct sockaddr_in6 *)out) == 0)
        return FL_OK;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(hostbuf, NULL, &hints, &res) != 0 || !res)
        return FL_ERR_INVALID;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return FL_OK;
}

static bool copy_str(char *dst, size_t cap, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return true;
    }
    size_t n = strlen(src);
    if (n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* ---- timers ---- */

static void dial_peer(transport *t, struct peer *p, int slot)
{
    struct peer_stream *ps = &p->streams[slot];
    assert(ps->conn == NULL);
    struct conn *c = conn_new(t, CONN_OUT_MSG);
    if (!c) {
        ps->next_dial_ms = uv_now(t->loop) + ps->backoff_ms;
        return;
    }
    c->peer = p;
    c->remote_id = p->id;
    c->stream = slot == PEER_STREAM_APPEND ? CODEC_STREAM_APPEND : CODEC_STREAM_MSG;
    ps->conn = c;
    conn_dial(c, (const struct sockaddr *)&p->addr);
}

static void on_tick(uv_timer_t *timer)
{
    transport *t = timer->data;
    if (t->stopping)
        return;
    if (t->o.test_fault_file)
        fault_check(t);
    uint64_t now = uv_now(t->loop);
    /* Timers run before the poll: after the loop was stalled (a long
     * callback elsewhere), the deadlines below would fire before the bytes
     * that arrived meanwhile are read. Deadlines count only time the loop
     * was running, so move them by the stall. */
    uint64_t gap = now - t->last_tick_ms;
    if (gap > TRANSPORT_STALL_MS) {
        FL_LOG_INFOF(MODULE, "loop stalled; peer deadlines moved", "local=%016llx ms=%llu",
                     (unsigned long long)t->o.local_id, (unsigned long long)gap);
        for (struct conn *c = t->conns; c; c = c->next) {
            c->started_ms = c->started_ms + gap < now ? c->started_ms + gap : now;
            c->activity_ms = c->activity_ms + gap < now ? c->activity_ms + gap : now;
        }
    }
    t->last_tick_ms = now;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        struct peer *p = t->peers[i];
        for (int slot = 0; slot < PEER_STREAMS; slot++)
            if (!p->streams[slot].conn && now >= p->streams[slot].next_dial_ms)
                dial_peer(t, p, slot);
    }
    for (struct conn *c = t->conns, *next; c; c = next) {
        next = c->next;
        conn_tick(c, now);
    }
}

/* Writes every connection's pending frames, one uv_write each. */
static void flush_all(transport *t)
{
    if (uv_is_active((uv_handle_t *)&t->flush_idle))
        uv_idle_stop(&t->flush_idle);
    if (!t->flush_pending || t->stopping)
        return;
    t->flush_pending = false;
    for (struct conn *c = t->conns, *next; c; c = next) {
        next = c->next;
        conn_flush(c);
    }
}

/* After the poll phase: what I/O callbacks sent. */
static void on_flush_check(uv_check_t *check)
{
    flush_all(check->data);
}

/* Before the poll phase: what timer callbacks sent; an active idle handle
 * also keeps the poll from blocking while something waits to be written. */
static void on_flush_idle(uv_idle_t *idle)
{
    flush_all(idle->data);
}

void transport_schedule_flush(transport *t)
{
    t->flush_pending = true;
    if (!t->stopping && !uv_is_active((uv_handle_t *)&t->flush_idle))
        uv_idle_start(&t->flush_idle, on_flush_idle);
}

static void on_handle_closed(uv_handle_t *h)
{
    transport_release(h->data);
}

/* ---- public API ---- */

static fl_err create_handles(transport *t, char *errbuf, size_t errbuf_len)
{
    struct sockaddr_storage addr;
    if (parse_url(t->listen_url, &addr) != FL_OK) {
        snprintf(errbuf, errbuf_len, "transport: bad listen url %s (want http://HOST:PORT)",
                 t->listen_url);
        return FL_ERR_INVALID;
    }
    int rc = uv_tcp_init(t->loop, &t->listener);
    if (rc != 0) {
        snprintf(errbuf, errbuf_len, "transport: tcp init: %s", uv_strerror(rc));
        return FL_ERR_IO;
    }
    t->listener.data = t;
    t->live++;
    rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, 128, conn_on_connection);
    if (rc != 0) {
        snprintf(errbuf, errbuf_len, "transport: listen on %s: %s", t->listen_url, uv_strerror(rc));
        return FL_ERR_UNAVAILABLE;
    }
    struct sockaddr_storage bound;
    int namelen = sizeof bound;
    uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &namelen);
    t->listen_port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                                 : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_timer_init(t->loop, &t->tick);
    t->tick.data = t;
    t->live++;
    uv_timer_start(&t->tick, on_tick, TRANSPORT_TICK_MS, TRANSPORT_TICK_MS);
    uv_check_init(t->loop, &t->flush_check);
    t->flush_check.data = t;
    t->live++;
    uv_check_start(&t->flush_check, on_flush_check);
    uv_idle_init(t->loop, &t->flush_idle);
    t->flush_idle.data = t;
    t->live++;
    return FL_OK;
}

static void close_handles(transport *t)
{
    uv_close((uv_handle_t *)&t->tick, on_handle_closed);
    uv_close((uv_handle_t *)&t->flush_check, on_handle_closed);
    uv_close((uv_handle_t *)&t->flush_idle, on_handle_closed);
    uv_close((uv_handle_t *)&t->listener, on_handle_closed);
}

fl_err transport_create(uv_loop_t *loop, const transport_options *o, transport **out, char *errbuf,
                        size_t errbuf_len)
{
    assert(loop && o && out);
    *out = NULL;
    if (o->local_id == 0 || !o->listen_url || !o->on_message) {
        snprintf(errbuf, errbuf_len, "transport: local_id, listen_url and on_message are needed");
        return FL_ERR_INVALID;
    }
    if (o->frame_bytes_max != 0 && o->frame_bytes_max < TRANSPORT_FRAME_BYTES_MIN) {
        snprintf(errbuf, errbuf_len, "transport: frame_bytes_max below %u",
                 TRANSPORT_FRAME_BYTES_MIN);
        return FL_ERR_INVALID;
    }
    transport *t = calloc(1, sizeof *t); /* owned by the caller via *out */
    if (!t)
        return FL_ERR_NOMEM;
    t->entries = calloc(RAFT_MSG_ENTRIES_MAX, sizeof *t->entries);
    if (!t->entries) {
        free(t);
        return FL_ERR_NOMEM;
    }
    t->loop = loop;
    t->o = *o;
    if (!copy_str(t->listen_url, sizeof t->listen_url, o->listen_url) ||
        !copy_str(t->snapshot_dir, sizeof t->snapshot_dir, o->snapshot_dir) ||
        !copy_str(t->fault_file, sizeof t->fault_file, o->test_fault_file)) {
        snprintf(errbuf, errbuf_len, "transport: a path or url is too long");
        free(t->entries);
        free(t);
        return FL_ERR_INVALID;
    }
    t->o.listen_url = t->listen_url;
    t->o.snapshot_dir = o->snapshot_dir ? t->snapshot_dir : NULL;
    t->o.test_fault_file = o->test_fault_file ? t->fault_file : NULL;
    if (!t->o.queue_msgs_max)
        t->o.queue_msgs_max = TRANSPORT_QUEUE_MSGS_DEFAULT;
    if (!t->o.queue_bytes_max)
        t->o.queue_bytes_max = TRANSPORT_QUEUE_BYTES_DEFAULT;
    if (!t->o.frame_bytes_max)
        t->o.frame_bytes_max = TRANSPORT_FRAME_BYTES_DEFAULT;
    t->rng = (o->local_id ^ uv_hrtime()) | 1;
    t->last_tick_ms = uv_now(loop);
    fl_err err = create_handles(t, errbuf, errbuf_len);
    if (err != FL_OK) {
        /* A listener that was initialised must be closed through the loop;
         * its close callback frees t (the caller never sees it). */
        t->stopping = true;
        if (t->live == 0) {
            free(t->entries);
            free(t);
        } else {
            t->free_when_closed = true;
            uv_close((uv_handle_t *)&t->listener, on_handle_closed);
        }
        return err;
    }
    if (t->o.test_fault_file)
        fault_check(t);
    *out = t;
    return FL_OK;
}

int transport_listen_port(const transport *t)
{
    return t->listen_port;
}

fl_err transport_add_peer(transport *t, uint64_t peer_id, const char *url)
{
    assert(!t->stopping);
    if (peer_id == 0 || peer_id == t->o.local_id || !url)
        return FL_ERR_INVALID;
    struct sockaddr_storage addr;
    if (strlen(url) >= sizeof t->peers[0]->url || parse_url(url, &addr) != FL_OK)
        return FL_ERR_INVALID;
    struct peer *p = transport_peer_find(t, peer_id);
    if (p) {
        if (strcmp(p->url, url) == 0)
            return FL_OK;
        /* New address: the streams to the old one go; the tick redials. */
        strcpy(p->url, url);
        p->addr = addr;
        for (int slot = 0; slot < PEER_STREAMS; slot++) {
            struct peer_stream *ps = &p->streams[slot];
            if (ps->conn)
                conn_close(ps->conn, "peer url changed");
            assert(ps->conn == NULL);
            ps->backoff_ms = TRANSPORT_BACKOFF_MIN_MS;
            ps->next_dial_ms = 0;
        }
        return FL_OK;
    }
    if (t->n_peers >= TRANSPORT_PEERS_MAX)
        return FL_ERR_BUSY;
    p = calloc(1, sizeof *p); /* owned by t->peers until transport_remove_peer/destroy */
    if (!p)
        return FL_ERR_NOMEM;
    p->id = peer_id;
    strcpy(p->url, url);
    p->addr = addr;
    t->peers[t->n_peers++] = p;
    /* Dial now rather than at the next tick, so the first messages queue on
     * a connecting stream instead of being dropped. */
    for (int slot = 0; slot < PEER_STREAMS; slot++) {
        p->streams[slot].backoff_ms = TRANSPORT_BACKOFF_MIN_MS;
        dial_peer(t, p, slot);
    }
    return FL_OK;
}

static void peer_free(transport *t, struct peer *p)
{
    for (int slot = 0; slot < PEER_STREAMS; slot++) {
        t->stats.dropped += p->streams[slot].queue.count;
        frame_list_free(&p->streams[slot].queue);
    }
    free(p);
}

void transport_remove_peer(transport *t, uint64_t peer_id)
{
    for (uint32_t i = 0; i < t->n_peers; i++) {
        struct peer *p = t->peers[i];
        if (p->id != peer_id)
            continue;
        /* Every conn that points to p lets go of it, closing ones too: their
         * close callbacks run after p is freed. */
        for (int slot = 0; slot < PEER_STREAMS; slot++)
            p->streams[slot].conn = NULL;
        p->snap_out = NULL;
        for (struct conn *c = t->conns; c; c = c->next) {
            if (c->peer != p)
                continue;
            c->peer = NULL;
            conn_close(c, "peer removed");
        }
        t->peers[i] = t->peers[--t->n_peers];
        peer_free(t, p);
        return;
    }
}

static void note_group(struct peer *p, uint64_t group_id)
{
    for (uint32_t i = 0; i < p->n_groups; i++)
        if (p->groups[i] == group_id)
            return;
    if (p->n_groups < TRANSPORT_GROUPS_TRACKED)
        p->groups[p->n_groups++] = group_id;
}

fl_err transport_send(transport *t, uint64_t group_id, const struct raft_msg *msg)
{
    assert(!t->stopping);
    assert(msg->n_entries <= RAFT_MSG_ENTRIES_MAX);
    struct peer *p = transport_peer_find(t, msg->to);
    if (!p)
        return FL_ERR_NOT_FOUND;
    note_group(p, group_id);
    if (msg->type == RAFT_MSG_SNAPSHOT)
        return snap_send(t, p, group_id, msg);
    /* Partitioned by the test hook, or the stream is down and backing off:
     * drop now rather than deliver stale messages later (Raft retries). */
    struct peer_stream *ps =
        &p->streams[msg->type == RAFT_MSG_APPEND ? PEER_STREAM_APPEND : PEER_STREAM_MSG];
    if (transport_faulted(t, p->id) || !ps->conn) {
        t->stats.dropped++;
        return FL_OK;
    }
    size_t payload = 1 + codec_msg_size(msg);
    if (payload > t->o.frame_bytes_max) {
        t->stats.dropped++;
        return FL_ERR_TOO_LARGE;
    }
    uint64_t bytes = CODEC_FRAME_HEADER + payload;
    if (p->queued_msgs + 1 > t->o.queue_msgs_max ||
        p->queued_bytes + bytes > t->o.queue_bytes_max) {
        t->stats.dropped++;
        return FL_ERR_BUSY;
    }
    struct frame *f = frame_new((uint32_t)payload); /* owned by ps->queue */
    if (!f)
        return FL_ERR_NOMEM;
    uint8_t *pl = f->data + CODEC_FRAME_HEADER;
    pl[0] = CODEC_KIND_MSG;
    codec_msg_encode(group_id, msg, pl + 1);
    frame_seal(f, (uint32_t)payload);
    f->counted = true;
    frame_list_push(&ps->queue, f);
    p->queued_msgs++;
    p->queued_bytes += f->len;
    conn_schedule_flush(ps->conn);
    return FL_OK;
}

bool transport_peer_active(const transport *t, uint64_t peer_id, uint64_t within_ms)
{
    const struct peer *p = transport_peer_find(t, peer_id);
    if (!p || transport_faulted(t, peer_id))
        return false;
    for (int slot = 0; slot < PEER_STREAMS; slot++)
        if (p->streams[slot].conn && p->streams[slot].conn->hello_done)
            return true;
    uint64_t now = uv_now(t->loop);
    if (p->ever_up && transport_elapsed(now, p->last_up_ms) <= within_ms)
        return true;
    return p->ever_recv && transport_elapsed(now, p->last_recv_ms) <= within_ms;
}

void transport_get_stats(const transport *t, transport_stats *out)
{
    *out = t->stats;
}

void transport_stop(transport *t, void (*stopped)(void *ctx), void *ctx)
{
    assert(!t->stopping);
    t->stopping = true;
    t->stopped = stopped;
    t->stopped_ctx = ctx;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        for (int slot = 0; slot < PEER_STREAMS; slot++)
            t->peers[i]->streams[slot].conn = NULL;
        t->peers[i]->snap_out = NULL;
    }
    for (struct conn *c = t->conns; c; c = c->next) {
        c->peer = NULL;
        conn_close(c, "transport stopping");
    }
    close_handles(t);
}

void transport_destroy(transport *t)
{
    if (!t)
        return;
    assert(t->stopping && t->live == 0);
    for (uint32_t i = 0; i < t->n_peers; i++)
        peer_free(t, t->peers[i]);
    free(t->entries);
    free(t);
}

/* transport/snapshot: snapshot bodies on a connection of their own.
 *
 * Sender: SNAP_BEGIN (body size + the message, whose snapshot.data is the
 * server's small descriptor), then the body in chunks of at most
 * TRANSPORT_SNAPSHOT_CHUNK read with uv_fs_read (off the loop), one chunk in
 * memory at a time: the next read starts when the last chunk is written.
 * Then it waits for SNAP_ACK and reports success; any close before the ack
 * reports failure.
 *
 * Receiver: the body goes to a temp file in snapshot_dir with uv_fs_write,
 * reading from the socket paused while a chunk is on its way to disk (so at
 * most one frame is buffered); then fsync, rename to its final name,
 * on_message with that path, and SNAP_ACK. A stream that ends early leaves
 * no file behind.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/internal.h"
#include "util/log.h"

#define MODULE "transport"

static uint64_t read_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void write_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- sender ---- */

void snap_out_free(struct snap_out *s)
{
    assert(!s->reading);
    if (s->fd >= 0)
        close(s->fd);
    free(s->begin);
    free(s->chunk);
    free(s);
}

fl_err snap_send(transport *t, struct peer *p, uint64_t group_id, const struct raft_msg *msg)
{
    if (!t->o.snapshot_open)
        return FL_ERR_INVALID;
    if (p->snap_out) {
        t->stats.dropped++;
        return FL_ERR_BUSY;
    }
    size_t payload = 1 + 8 + codec_msg_size(msg);
    if (payload > t->o.frame_bytes_max) {
        t->stats.dropped++;
        return FL_ERR_TOO_LARGE;
    }
    struct snap_out *s = calloc(1, sizeof *s); /* owned by the conn below */
    struct frame *begin = frame_new((uint32_t)payload);
    if (!s || !begin) {
        free(s);
        free(begin);
        return FL_ERR_NOMEM;
    }
    s->fd = -1;
    s->group_id = group_id;
    s->begin = begin;
    uint8_t *pl = begin->data + CODEC_FRAME_HEADER;
    pl[0] = CODEC_KIND_SNAP_BEGIN;
    codec_msg_encode(group_id, msg, pl + 9);
    fl_err err = t->o.snapshot_open(t->o.ctx, group_id, msg, &s->fd, &s->size);
    if (err != FL_OK) {
        s->fd = -1;
        snap_out_free(s);
        return err;
    }
    assert(s->fd >= 0);
    write_u64(pl + 1, s->size);
    frame_seal(begin, (uint32_t)payload);
    struct conn *c = conn_new(t, CONN_OUT_SNAP);
    if (!c) {
        snap_out_free(s);
        return FL_ERR_NOMEM;
    }
    c->snap_out = s;
    c->stream = CODEC_STREAM_SNAPSHOT;
    c->peer = p;
    c->remote_id = p->id;
    p->snap_out = c;
    conn_dial(c, (const struct sockaddr *)&p->addr);
    return FL_OK;
}

static void on_chunk_read(uv_fs_t *req)
{
    struct conn *c = req->data;
    struct snap_out *s = c->snap_out;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    s->reading = false;
    struct frame *f = s->chunk;
    s->chunk = NULL;
    if (c->closing) {
        free(f);
    } else if (n <= 0) {
        free(f);
        transport_log_limited(c->t, LOG_SNAPSHOT, "snapshot body read failed",
                              "peer=%016llx offset=%llu err=%s", (unsigned long long)c->remote_id,
                              (unsigned long long)s->offset,
                              n == 0 ? "short file" : uv_strerror((int)n));
        conn_close(c, "snapshot read failed");
    } else {
        assert((uint64_t)n <= s->size - s->offset);
        frame_seal(f, (uint32_t)(1 + n));
        s->offset += (uint64_t)n;
        c->activity_ms = uv_now(c->t->loop);
        conn_push_control(c, f);
    }
    conn_unref(c);
}

void snap_out_pump(struct conn *c)
{
    struct snap_out *s = c->snap_out;
    assert(s && c->role == CONN_OUT_SNAP);
    if (c->closing || !c->hello_done || s->reading || c->writing || c->control.count > 0)
        return;
    if (s->begin) {
        conn_push_control(c, s->begin);
        s->begin = NULL;
        return;
    }
    if (s->offset == s->size)
        return; /* the whole body is written: wait for the ack */
    /* Chunks fit our own frame limit too (members are meant to share one). */
    uint32_t chunk = TRANSPORT_SNAPSHOT_CHUNK;
    if (chunk > c->t->o.frame_bytes_max - 1)
        chunk = c->t->o.frame_bytes_max - 1;
    uint64_t left = s->size - s->offset;
    uint32_t n = left < chunk ? (uint32_t)left : chunk;
    struct frame *f = frame_new(1 + n); /* owned by s until queued */
    if (!f) {
        conn_close(c, "no memory for a snapshot chunk");
        return;
    }
    f->data[CODEC_FRAME_HEADER] = CODEC_KIND_SNAP_CHUNK;
    s->chunk = f;
    uv_buf_t buf = uv_buf_init((char *)f->data + CODEC_FRAME_HEADER + 1, n);
    s->fs_req.data = c;
    int rc = uv_fs_read(c->t->loop, &s->fs_req, s->fd, &buf, 1, (int64_t)s->offset, on_chunk_read);
    if (rc < 0) {
        s->chunk = NULL;
        free(f);
        conn_close(c, "snapshot read failed to start");
        return;
    }
    s->reading = true;
    c->refs++;
}

/* ---- receiver ---- */

void snap_in_free(transport *t, struct snap_in *s)
{
    assert(!s->busy);
    if (s->fd >= 0)
        close(s->fd);
    if (!s->renamed && s->tmp_path[0])
        unlink(s->tmp_path);
    free(s->begin);
    free(s);
}

static void on_synced(uv_fs_t *req);

static void finish_body(struct conn *c)
{
    struct snap_in *s = c->snap_in;
    conn_pause_reading(c);
    s->fs_req.data = c;
    int rc = uv_fs_fsync(c->t->loop, &s->fs_req, s->fd, on_synced);
    if (rc < 0) {
        conn_close(c, "snapshot fsync failed to start");
        return;
    }
    s->busy = true;
    c->refs++;
}

static void deliver(struct conn *c)
{
    transport *t = c->t;
    struct snap_in *s = c->snap_in;
    close(s->fd);
    s->fd = -1;
    if (rename(s->tmp_path, s->final_path) != 0) {
        transport_log_limited(t, LOG_SNAPSHOT, "snapshot rename failed", "path=%s", s->final_path);
        conn_close(c, "snapshot rename failed");
        return;
    }
    s->renamed = true;
    uint64_t group_id;
    struct raft_msg msg;
    fl_err err = codec_msg_decode(s->begin + 9, s->begin_len - 9, &group_id, &msg, t->entries,
                                  RAFT_MSG_ENTRIES_MAX);
    assert(err == FL_OK); /* decoded once already in snap_in_begin */
    (void)err;
    t->stats.received++;
    t->stats.snapshots_received++;
    t->o.on_message(t->o.ctx, group_id, &msg, s->final_path);
    if (c->closing)
        return;
    struct frame *f = frame_new(1);
    if (!f) {
        conn_close(c, "no memory for the snapshot ack");
        return;
    }
    f->data[CODEC_FRAME_HEADER] = CODEC_KIND_SNAP_ACK;
    frame_seal(f, 1);
    conn_push_control(c, f);
}

static void on_synced(uv_fs_t *req)
{
    struct conn *c = req->data;
    struct snap_in *s = c->snap_in;
    ssize_t rc = req->result;
    uv_fs_req_cleanup(req);
    s->busy = false;
    if (!c->closing) {
        if (rc < 0) {
            transport_log_limited(c->t, LOG_SNAPSHOT, "snapshot fsync failed", "path=%s err=%s",
                                  s->tmp_path, uv_strerror((int)rc));
            conn_close(c, "snapshot fsync failed");
        } else if (transport_faulted(c->t, c->remote_id)) {
            conn_close(c, "snapshot from a partitioned peer");
        } else {
            deliver(c);
            if (!c->closing)
                conn_resume_reading(c);
        }
    }
    conn_unref(c);
}

fl_err snap_in_begin(struct conn *c, const uint8_t *payload, uint32_t len)
{
    transport *t = c->t;
    if (c->snap_in || len < 9)
        return FL_ERR_CORRUPT;
    uint64_t group_id;
    struct raft_msg msg;
    if (codec_msg_decode(payload + 9, len - 9, &group_id, &msg, t->entries, RAFT_MSG_ENTRIES_MAX) !=
            FL_OK ||
        msg.type != RAFT_MSG_SNAPSHOT)
        return FL_ERR_CORRUPT;
    if (!t->o.snapshot_dir) {
        transport_log_limited(t, LOG_SNAPSHOT, "snapshot refused", "why=\"no snapshot_dir\"");
        return FL_ERR_INVALID;
    }
    struct snap_in *s = calloc(1, sizeof *s); /* owned by c */
    if (!s)
        return FL_ERR_NOMEM;
    s->fd = -1;
    s->size = read_u64(payload + 1);
    s->begin_len = len;
    s->begin = malloc(len);
    if (!s->begin) {
        free(s);
        return FL_ERR_NOMEM;
    }
    memcpy(s->begin, payload, len);
    c->snap_in = s;
    t->snap_seq++;
    int n = snprintf(s->final_path, sizeof s->final_path, "%s/snap-%016llx-%016llx-%llu.snap",
                     t->o.snapshot_dir, (unsigned long long)t->o.local_id,
                     (unsigned long long)c->remote_id, (unsigned long long)t->snap_seq);
    if (n < 0 || (size_t)n >= sizeof s->final_path)
        return FL_ERR_INVALID;
    snprintf(s->tmp_path, sizeof s->tmp_path, "%s.tmp", s->final_path);
    s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        s->tmp_path[0] = '\0';
        transport_log_limited(t, LOG_SNAPSHOT, "snapshot temp file failed", "dir=%s",
                              t->o.snapshot_dir);
        return FL_ERR_IO;
    }
    if (s->size == 0)
        finish_body(c);
    return FL_OK;
}

static void on_chunk_written(uv_fs_t *req)
{
    struct conn *c = req->data;
    struct snap_in *s = c->snap_in;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    s->busy = false;
    if (!c->closing) {
        if (n < 0 || (uint64_t)n != s->writing_len) {
            /* A short write to a regular file means the disk is full. */
            transport_log_limited(c->t, LOG_SNAPSHOT, "snapshot write failed", "path=%s err=%s",
                                  s->tmp_path, n < 0 ? uv_strerror((int)n) : "short write");
            conn_close(c, "snapshot write failed");
        } else {
            s->got += (uint64_t)n;
            c->activity_ms = uv_now(c->t->loop);
            if (s->got == s->size)
                finish_body(c);
            else
                conn_resume_reading(c);
        }
    }
    conn_unref(c);
}

fl_err snap_in_chunk(struct conn *c, const uint8_t *payload, uint32_t len)
{
    struct snap_in *s = c->snap_in;
    if (!s || s->busy || len < 2 || s->got + (len - 1) > s->size)
        return FL_ERR_CORRUPT;
    /* The write reads from rbuf: stop reading until it is done, so rbuf
     * neither moves nor grows meanwhile. */
    conn_pause_reading(c);
    s->writing_len = len - 1;
    uv_buf_t buf = uv_buf_init((char *)(uintptr_t)(payload + 1), len - 1);
    s->fs_req.data = c;
    int rc = uv_fs_write(c->t->loop, &s->fs_req, s->fd, &buf, 1, (int64_t)s->got, on_chunk_written);
    if (rc < 0)
        return FL_ERR_IO;
    s->busy = true;
    c->refs++;
    return FL_OK;
}

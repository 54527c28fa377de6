#include "transport/codec.h"

#include <assert.h>
#include <string.h>

#include "transport/transport.h"
#include "util/endian.h"
#include "util/crc32c.h"

/* Fixed part of an encoded message: version, group, type, 8 u64 fields,
 * reject, n_entries. */
#define MSG_FIXED_BYTES   (1u + 8u + 1u + 8u * 8u + 1u + 4u)
#define ENTRY_FIXED_BYTES (8u + 8u + 1u + 4u)
/* Snapshot section without ids and data: index, term, three counts, len. */
#define SNAP_FIXED_BYTES (8u + 8u + 3u + 4u)

/* ---- frames ---- */

void codec_frame_header(uint8_t hdr[CODEC_FRAME_HEADER], const uint8_t *payload, uint32_t len)
{
    assert(len > 0 && payload != NULL);
    fl_le_put_u32(hdr, len);
    fl_le_put_u32(hdr + 4, fl_crc32c(0, payload, len));
}

fl_err codec_frame_parse(const uint8_t *buf, size_t len, uint32_t payload_max,
                         const uint8_t **payload, uint32_t *payload_len, size_t *consumed)
{
    *consumed = 0;
    if (len < CODEC_FRAME_HEADER)
        return FL_OK;
    uint32_t n = fl_le_get_u32(buf);
    if (n == 0)
        return FL_ERR_CORRUPT;
    /* Judged on the header alone, so an oversized frame is refused before
     * anyone buffers it. */
    if (n > payload_max)
        return FL_ERR_TOO_LARGE;
    if (len - CODEC_FRAME_HEADER < n)
        return FL_OK;
    if (fl_crc32c(0, buf + CODEC_FRAME_HEADER, n) != fl_le_get_u32(buf + 4))
        return FL_ERR_CORRUPT;
    *payload = buf + CODEC_FRAME_HEADER;
    *payload_len = n;
    *consumed = CODEC_FRAME_HEADER + (size_t)n;
    return FL_OK;
}

/* ---- hello ---- */

void codec_hello_encode(const struct codec_hello *h, uint8_t out[CODEC_HELLO_BYTES])
{
    uint8_t *p = out;
    *p++ = CODEC_KIND_HELLO;
    fl_le_put_u32(p, CODEC_HELLO_MAGIC);
    p += 4;
    fl_le_put_u16(p, h->version);
    p += 2;
    *p++ = h->stream;
    fl_le_put_u64(p, h->cluster_id);
    fl_le_put_u64(p + 8, h->from);
    fl_le_put_u64(p + 16, h->to);
    assert(p + 24 == out + CODEC_HELLO_BYTES);
}

fl_err codec_hello_decode(const uint8_t *payload, size_t len, struct codec_hello *h)
{
    if (len != CODEC_HELLO_BYTES || payload[0] != CODEC_KIND_HELLO ||
        fl_le_get_u32(payload + 1) != CODEC_HELLO_MAGIC)
        return FL_ERR_CORRUPT;
    h->version = fl_le_get_u16(payload + 5);
    h->stream = payload[7];
    h->cluster_id = fl_le_get_u64(payload + 8);
    h->from = fl_le_get_u64(payload + 16);
    h->to = fl_le_get_u64(payload + 24);
    return FL_OK;
}

/* ---- messages ---- */

static size_t conf_ids(const struct raft_conf *c)
{
    return (size_t)c->n_voters + c->n_voters_outgoing + c->n_learners;
}

size_t codec_msg_size(const struct raft_msg *msg)
{
    size_t n = MSG_FIXED_BYTES;
    for (uint32_t i = 0; i < msg->n_entries; i++)
        n += ENTRY_FIXED_BYTES + msg->entries[i].len;
    if (msg->type == RAFT_MSG_SNAPSHOT)
        n += SNAP_FIXED_BYTES + 8 * conf_ids(&msg->snapshot.conf) + msg->snapshot.len;
    return n;
}

static uint8_t *put_ids(uint8_t *p, const raft_id *ids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++, p += 8)
        fl_le_put_u64(p, ids[i]);
    return p;
}

static uint8_t *encode_snapshot(uint8_t *p, const struct raft_snapshot *s)
{
    assert(s->conf.n_voters <= RAFT_MEMBERS_MAX && s->conf.n_voters_outgoing <= RAFT_MEMBERS_MAX &&
           s->conf.n_learners <= RAFT_MEMBERS_MAX);
    fl_le_put_u64(p, s->index);
    fl_le_put_u64(p + 8, s->term);
    p += 16;
    *p++ = (uint8_t)s->conf.n_voters;
    *p++ = (uint8_t)s->conf.n_voters_outgoing;
    *p++ = (uint8_t)s->conf.n_learners;
    p = put_ids(p, s->conf.voters, s->conf.n_voters);
    p = put_ids(p, s->conf.voters_outgoing, s->conf.n_voters_outgoing);
    p = put_ids(p, s->conf.learners, s->conf.n_learners);
    fl_le_put_u32(p, s->len);
    p += 4;
    if (s->len > 0)
        memcpy(p, s->data, s->len);
    return p + s->len;
}

void codec_msg_encode(uint64_t group_id, const struct raft_msg *msg, uint8_t *out)
{
    assert(msg->n_entries <= RAFT_MSG_ENTRIES_MAX);
    uint8_t *p = out;
    *p++ = CODEC_MSG_VERSION;
    fl_le_put_u64(p, group_id);
    p += 8;
    *p++ = (uint8_t)msg->type;
    const uint64_t fields[8] = {msg->from,  msg->to,     msg->term,        msg->log_term,
                                msg->index, msg->commit, msg->reject_hint, msg->context};
    for (int i = 0; i < 8; i++, p += 8)
        fl_le_put_u64(p, fields[i]);
    *p++ = msg->reject ? 1 : 0;
    fl_le_put_u32(p, msg->n_entries);
    p += 4;
    for (uint32_t i = 0; i < msg->n_entries; i++) {
        const struct raft_entry *e = &msg->entries[i];
        fl_le_put_u64(p, e->term);
        fl_le_put_u64(p + 8, e->index);
        p[16] = (uint8_t)e->type;
        fl_le_put_u32(p + 17, e->len);
        p += ENTRY_FIXED_BYTES;
        if (e->len > 0)
            memcpy(p, e->data, e->len);
        p += e->len;
    }
    if (msg->type == RAFT_MSG_SNAPSHOT)
        p = encode_snapshot(p, &msg->snapshot);
    assert((size_t)(p - out) == codec_msg_size(msg));
}

/* A bounds-checked reader: every take fails once the input is short, and
 * stays failed, so callers check once at the end of a group of takes. */
struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const uint8_t *take(struct reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static uint8_t take_u8(struct reader *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

static uint32_t take_u32(struct reader *r)
{
    const uint8_t *p = take(r, 4);
    return p ? fl_le_get_u32(p) : 0;
}

static uint64_t take_u64(struct reader *r)
{
    const uint8_t *p = take(r, 8);
    return p ? fl_le_get_u64(p) : 0;
}

/* Data of len bytes: NULL when len is 0, as raft.h allows. */
static uint8_t *take_data(struct reader *r, uint32_t len)
{
    const uint8_t *p = take(r, len);
    /* The decoded message is read-only to everyone (raft.h: "data is
     * read-only to the caller"); the cast only fits the struct's type. */
    return len == 0 ? NULL : (uint8_t *)(uintptr_t)p;
}

static bool take_ids(struct reader *r, raft_id *ids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        ids[i] = take_u64(r);
    return !r->bad;
}

static fl_err decode_snapshot(struct reader *r, struct raft_snapshot *s)
{
    s->index = take_u64(r);
    s->term = take_u64(r);
    s->conf.n_voters = take_u8(r);
    s->conf.n_voters_outgoing = take_u8(r);
    s->conf.n_learners = take_u8(r);
    if (r->bad || s->conf.n_voters > RAFT_MEMBERS_MAX ||
        s->conf.n_voters_outgoing > RAFT_MEMBERS_MAX || s->conf.n_learners > RAFT_MEMBERS_MAX)
        return FL_ERR_CORRUPT;
    if (!take_ids(r, s->conf.voters, s->conf.n_voters) ||
        !take_ids(r, s->conf.voters_outgoing, s->conf.n_voters_outgoing) ||
        !take_ids(r, s->conf.learners, s->conf.n_learners))
        return FL_ERR_CORRUPT;
    s->len = take_u32(r);
    s->data = take_data(r, s->len);
    return r->bad ? FL_ERR_CORRUPT : FL_OK;
}

static fl_err decode_entries(struct reader *r, struct raft_entry *entries, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &entries[i];
        e->term = take_u64(r);
        e->index = take_u64(r);
        uint8_t type = take_u8(r);
        if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_CONF_CHANGE)
            return FL_ERR_CORRUPT;
        e->type = (raft_entry_type)type;
        e->len = take_u32(r);
        e->data = take_data(r, e->len);
        if (r->bad)
            return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

fl_err codec_msg_decode(const uint8_t *buf, size_t len, uint64_t *group_id, struct raft_msg *msg,
                        struct raft_entry *entries, uint32_t entries_cap)
{
    struct reader r = {.p = buf, .left = len, .bad = false};
    memset(msg, 0, sizeof *msg);
    if (take_u8(&r) != CODEC_MSG_VERSION)
        return FL_ERR_CORRUPT;
    *group_id = take_u64(&r);
    uint8_t type = take_u8(&r);
    if ((type < RAFT_MSG_APPEND || type > RAFT_MSG_READ_INDEX_RESP) &&
        type != TRANSPORT_MSG_PROPOSE)
        return FL_ERR_CORRUPT;
    msg->type = (raft_msg_type)type;
    msg->from = take_u64(&r);
    msg->to = take_u64(&r);
    msg->term = take_u64(&r);
    msg->log_term = take_u64(&r);
    msg->index = take_u64(&r);
    msg->commit = take_u64(&r);
    msg->reject_hint = take_u64(&r);
    msg->context = take_u64(&r);
    uint8_t reject = take_u8(&r);
    uint32_t n_entries = take_u32(&r);
    if (r.bad || reject > 1 || n_entries > RAFT_MSG_ENTRIES_MAX || n_entries > entries_cap)
        return FL_ERR_CORRUPT;
    /* Each entry takes at least ENTRY_FIXED_BYTES: refuse a count the input
     * cannot hold before touching the entries array. */
    if ((size_t)n_entries * ENTRY_FIXED_BYTES > r.left)
        return FL_ERR_CORRUPT;
    msg->reject = reject == 1;
    msg->n_entries = n_entries;
    msg->entries = n_entries > 0 ? entries : NULL;
    if (decode_entries(&r, entries, n_entries) != FL_OK)
        return FL_ERR_CORRUPT;
    if (msg->type == RAFT_MSG_SNAPSHOT && decode_snapshot(&r, &msg->snapshot) != FL_OK)
        return FL_ERR_CORRUPT;
    if (r.left != 0)
        return FL_ERR_CORRUPT;
    return FL_OK;
}

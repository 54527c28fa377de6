/* server/entry: the envelope of normal entries (see entry.h). */
#include "server/entry.h"

#include <stdlib.h>
#include <string.h>

fl_err entry_decode(const uint8_t *data, size_t len, entry_view *out)
{
    if (len < ENTRY_HEADER_BYTES || data[0] < ENTRY_MVCC || data[0] > ENTRY_MEMBER)
        return FL_ERR_CORRUPT;
    out->kind = (entry_kind)data[0];
    out->request_id = 0;
    for (int i = 0; i < 8; i++)
        out->request_id |= (uint64_t)data[1 + i] << (8 * i);
    out->body = data + ENTRY_HEADER_BYTES;
    out->body_len = len - ENTRY_HEADER_BYTES;
    return FL_OK;
}

fl_err entry_encode(entry_kind kind, uint64_t request_id, const uint8_t *body, size_t body_len,
                    uint8_t **out, size_t *out_len)
{
    uint8_t *buf = malloc(ENTRY_HEADER_BYTES + body_len); /* owned by the caller */
    if (!buf)
        return FL_ERR_NOMEM;
    buf[0] = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(request_id >> (8 * i));
    if (body_len)
        memcpy(buf + ENTRY_HEADER_BYTES, body, body_len);
    *out = buf;
    *out_len = ENTRY_HEADER_BYTES + body_len;
    return FL_OK;
}

/* ---- small writer/reader over a bounded buffer --------------------------- */

#define BODY_BYTES_MAX (CLUSTER_URLS_MAX * (CLUSTER_URL_MAX + 2) + CLUSTER_NAME_MAX + 64)

typedef struct wbuf {
    uint8_t *p;
    size_t len;
} wbuf;

static void w_bytes(wbuf *w, const void *d, size_t n)
{
    memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void w_str(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    uint8_t l[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
    w_bytes(w, l, 2);
    w_bytes(w, s, n);
}

static void w_u64(wbuf *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        w->p[w->len++] = (uint8_t)(v >> (8 * i));
}

typedef struct rbuf {
    const uint8_t *p;
    size_t left;
    bool bad;
} rbuf;

static const uint8_t *r_take(rbuf *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t r_u64(rbuf *r)
{
    const uint8_t *p = r_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint8_t r_u8(rbuf *r)
{
    const uint8_t *p = r_take(r, 1);
    return p ? *p : 0;
}

static void r_str(rbuf *r, char *out, size_t max)
{
    const uint8_t *l = r_take(r, 2);
    size_t n = l ? (size_t)l[0] | (size_t)l[1] << 8 : 0;
    if (n > max) {
        r->bad = true;
        return;
    }
    const uint8_t *p = r_take(r, n);
    if (p) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

static fl_err r_urls(rbuf *r, char urls[][CLUSTER_URL_MAX + 1], uint32_t *n)
{
    *n = r_u8(r);
    if (*n > CLUSTER_URLS_MAX)
        return FL_ERR_CORRUPT;
    for (uint32_t i = 0; i < *n; i++)
        r_str(r, urls[i], CLUSTER_URL_MAX);
    return r->bad ? FL_ERR_CORRUPT : FL_OK;
}

fl_err entry_publish_encode(const cluster_member *m, uint8_t **out, size_t *out_len)
{
    wbuf w = {malloc(BODY_BYTES_MAX), 0}; /* owned by the caller */
    if (!w.p)
        return FL_ERR_NOMEM;
    w_u64(&w, m->id);
    w_str(&w, m->name);
    w.p[w.len++] = (uint8_t)m->n_client_urls;
    for (uint32_t i = 0; i < m->n_client_urls; i++)
        w_str(&w, m->client_urls[i]);
    *out = w.p;
    *out_len = w.len;
    return FL_OK;
}

fl_err entry_publish_decode(const uint8_t *body, size_t len, cluster_member *out)
{
    memset(out, 0, sizeof *out);
    rbuf r = {body, len, false};
    out->id = r_u64(&r);
    r_str(&r, out->name, CLUSTER_NAME_MAX);
    if (r_urls(&r, out->client_urls, &out->n_client_urls) != FL_OK || r.bad || r.left)
        return FL_ERR_CORRUPT;
    return FL_OK;
}

fl_err entry_member_encode(entry_member_op op, const cluster_member *m, uint8_t **out,
                           size_t *out_len)
{
    wbuf w = {malloc(BODY_BYTES_MAX), 0}; /* owned by the caller */
    if (!w.p)
        return FL_ERR_NOMEM;
    w.p[w.len++] = (uint8_t)op;
    w_u64(&w, m->id);
    w.p[w.len++] = m->is_learner;
    w.p[w.len++] = (uint8_t)m->n_peer_urls;
    for (uint32_t i = 0; i < m->n_peer_urls; i++)
        w_str(&w, m->peer_urls[i]);
    *out = w.p;
    *out_len = w.len;
    return FL_OK;
}

fl_err entry_member_decode(const uint8_t *body, size_t len, entry_member_op *op,
                           cluster_member *out)
{
    memset(out, 0, sizeof *out);
    rbuf r = {body, len, false};
    uint8_t o = r_u8(&r);
    if (o < ENTRY_MEMBER_ADD || o > ENTRY_MEMBER_PROMOTE)
        return FL_ERR_CORRUPT;
    *op = (entry_member_op)o;
    out->id = r_u64(&r);
    out->is_learner = r_u8(&r) != 0;
    if (r_urls(&r, out->peer_urls, &out->n_peer_urls) != FL_OK || r.bad || r.left)
        return FL_ERR_CORRUPT;
    return FL_OK;
}

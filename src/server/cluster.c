/* server/cluster: membership table, ids, --initial-cluster (see cluster.h).
 *
 * Encoding of the meta record (little endian), versioned by its first byte:
 *   u8 version(1) | u64 cluster_id | u64 applied_term | str version |
 *   conf: u8 n_voters, ids | u8 n_outgoing, ids | u8 n_learners, ids |
 *   u8 n_members, each: u64 id, str name, u8 learner, u8 n_peer, str*, u8 n_client, str* |
 *   u16 n_removed, u64*
 * where str = u16 length + bytes. Decoding checks every length against what
 * is left and every count against its bound: the record comes from disk.
 */
#include "server/cluster.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLUSTER_ENCODING_VERSION 1u

uint64_t cluster_hash64(uint64_t seed, const void *data, size_t len)
{
    const uint8_t *bytes = data;
    uint64_t hash = seed ? seed : 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

static uint64_t hash_str(uint64_t seed, const char *s)
{
    /* the terminating NUL too, so "ab"+"c" differs from "a"+"bc" */
    return cluster_hash64(seed, s, strlen(s) + 1);
}

uint64_t cluster_member_id(const char *const *peer_urls, size_t n, const char *token)
{
    uint64_t h = hash_str(0, "flotilla-member");
    for (size_t i = 0; i < n; i++)
        h = hash_str(h, peer_urls[i]);
    h = hash_str(h, token);
    return h ? h : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t cluster_cluster_id(const char *token, const uint64_t *ids, size_t n)
{
    assert(n <= RAFT_MEMBERS_MAX);
    uint64_t sorted[RAFT_MEMBERS_MAX];
    memcpy(sorted, ids, n * sizeof *ids);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    uint64_t c = hash_str(0, "flotilla-cluster");
    c = hash_str(c, token);
    for (size_t i = 0; i < n; i++) {
        uint8_t le[8]; /* the same id on every machine, whatever its byte order */
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(sorted[i] >> (8 * b));
        c = cluster_hash64(c, le, sizeof le);
    }
    return c ? c : 1;
}

fl_err cluster_parse_urls(const char *text, char urls[][CLUSTER_URL_MAX + 1], uint32_t max,
                          uint32_t *n)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            if (*n == max || len > CLUSTER_URL_MAX)
                return FL_ERR_INVALID;
            memcpy(urls[*n], p, len);
            urls[*n][len] = '\0';
            (*n)++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return *n > 0 ? FL_OK : FL_ERR_INVALID;
}

fl_err cluster_parse_initial(const char *text, const char *token, cluster_state *out, char *errbuf,
                             size_t errbuf_len)
{
    memset(out, 0, sizeof *out);
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            if (!eq || eq == p || eq == p + len - 1) {
                snprintf(errbuf, errbuf_len, "--initial-cluster: \"%.*s\" is not name=url",
                         (int)len, p);
                return FL_ERR_INVALID;
            }
            size_t name_len = (size_t)(eq - p), url_len = len - name_len - 1;
            if (name_len > CLUSTER_NAME_MAX || url_len > CLUSTER_URL_MAX) {
                snprintf(errbuf, errbuf_len, "--initial-cluster: name or URL too long");
                return FL_ERR_INVALID;
            }
            cluster_member *m = NULL;
            for (uint32_t i = 0; i < out->n_members; i++)
                if (strlen(out->members[i].name) == name_len &&
                    memcmp(out->members[i].name, p, name_len) == 0)
                    m = &out->members[i];
            if (!m) {
                if (out->n_members == RAFT_MEMBERS_MAX) {
                    snprintf(errbuf, errbuf_len, "--initial-cluster: more than %d members",
                             RAFT_MEMBERS_MAX);
                    return FL_ERR_INVALID;
                }
                m = &out->members[out->n_members++];
                memcpy(m->name, p, name_len);
                m->name[name_len] = '\0';
            }
            if (m->n_peer_urls == CLUSTER_URLS_MAX) {
                snprintf(errbuf, errbuf_len, "--initial-cluster: too many URLs for %s", m->name);
                return FL_ERR_INVALID;
            }
            memcpy(m->peer_urls[m->n_peer_urls], eq + 1, url_len);
            m->peer_urls[m->n_peer_urls][url_len] = '\0';
            m->n_peer_urls++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (out->n_members == 0) {
        snprintf(errbuf, errbuf_len, "--initial-cluster is empty");
        return FL_ERR_INVALID;
    }
    /* etcd refuses one peer URL for two members (or twice for one) */
    for (uint32_t i = 0; i < out->n_members; i++)
        for (uint32_t u = 0; u < out->members[i].n_peer_urls; u++)
            for (uint32_t j = i; j < out->n_members; j++)
                for (uint32_t v = j == i ? u + 1 : 0; v < out->members[j].n_peer_urls; v++)
                    if (strcmp(out->members[i].peer_urls[u], out->members[j].peer_urls[v]) == 0) {
                        snprintf(errbuf, errbuf_len,
                                 "--initial-cluster: %s appears more than once (%s, %s)",
                                 out->members[i].peer_urls[u], out->members[i].name,
                                 out->members[j].name);
                        return FL_ERR_INVALID;
                    }
    for (uint32_t i = 0; i < out->n_members; i++) {
        cluster_member *m = &out->members[i];
        const char *urls[CLUSTER_URLS_MAX];
        for (uint32_t u = 0; u < m->n_peer_urls; u++)
            urls[u] = m->peer_urls[u];
        m->id = cluster_member_id(urls, m->n_peer_urls, token);
        for (uint32_t j = 0; j < i; j++) {
            if (out->members[j].id == m->id) {
                snprintf(errbuf, errbuf_len,
                         "--initial-cluster: members %s and %s have the same peer URLs",
                         out->members[j].name, m->name);
                return FL_ERR_INVALID;
            }
        }
        out->conf.voters[out->conf.n_voters++] = m->id;
    }
    return FL_OK;
}

cluster_member *cluster_find(cluster_state *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_members; i++)
        if (c->members[i].id == id)
            return &c->members[i];
    return NULL;
}

const cluster_member *cluster_find_const(const cluster_state *c, uint64_t id)
{
    return cluster_find((cluster_state *)c, id);
}

const cluster_member *cluster_find_peer_url(const cluster_state *c, const char *url)
{
    for (uint32_t i = 0; i < c->n_members; i++)
        for (uint32_t u = 0; u < c->members[i].n_peer_urls; u++)
            if (strcmp(c->members[i].peer_urls[u], url) == 0)
                return &c->members[i];
    return NULL;
}

bool cluster_was_removed(const cluster_state *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_removed; i++)
        if (c->removed[i] == id)
            return true;
    return false;
}

void cluster_remove(cluster_state *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_members; i++) {
        if (c->members[i].id == id) {
            memmove(&c->members[i], &c->members[i + 1],
                    (c->n_members - i - 1) * sizeof c->members[0]);
            c->n_members--;
            break;
        }
    }
    if (!cluster_was_removed(c, id)) {
        if (c->n_removed == CLUSTER_REMOVED_MAX) /* keep the newest: drop the oldest */
            memmove(&c->removed[0], &c->removed[1], (CLUSTER_REMOVED_MAX - 1) * sizeof(uint64_t));
        else
            c->n_removed++;
        c->removed[c->n_removed - 1] = id;
    }
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct enc {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
} enc;

static void put(enc *e, const void *data, size_t len)
{
    if (e->oom)
        return;
    if (e->len + len > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 1024;
        while (cap < e->len + len)
            cap *= 2;
        uint8_t *grown = realloc(e->buf, cap);
        if (!grown) {
            e->oom = true;
            return;
        }
        e->buf = grown;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, data, len);
    e->len += len;
}

static void put_u8(enc *e, uint8_t v)
{
    put(e, &v, 1);
}

static void put_u64(enc *e, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(e, b, 8);
}

static void put_str(enc *e, const char *s)
{
    size_t len = strlen(s);
    assert(len <= 0xffff);
    uint8_t b[2] = {(uint8_t)len, (uint8_t)(len >> 8)};
    put(e, b, 2);
    put(e, s, len);
}

static void put_ids(enc *e, const raft_id *ids, uint32_t n)
{
    put_u8(e, (uint8_t)n);
    for (uint32_t i = 0; i < n; i++)
        put_u64(e, ids[i]);
}

fl_err cluster_encode(const cluster_state *c, uint8_t **out, size_t *out_len)
{
    enc e = {0};
    put_u8(&e, CLUSTER_ENCODING_VERSION);
    put_u64(&e, c->cluster_id);
    put_u64(&e, c->applied_term);
    put_str(&e, c->version);
    put_ids(&e, c->conf.voters, c->conf.n_voters);
    put_ids(&e, c->conf.voters_outgoing, c->conf.n_voters_outgoing);
    put_ids(&e, c->conf.learners, c->conf.n_learners);
    put_u8(&e, (uint8_t)c->n_members);
    for (uint32_t i = 0; i < c->n_members; i++) {
        const cluster_member *m = &c->members[i];
        put_u64(&e, m->id);
        put_str(&e, m->name);
        put_u8(&e, m->is_learner);
        put_u8(&e, (uint8_t)m->n_peer_urls);
        for (uint32_t u = 0; u < m->n_peer_urls; u++)
            put_str(&e, m->peer_urls[u]);
        put_u8(&e, (uint8_t)m->n_client_urls);
        for (uint32_t u = 0; u < m->n_client_urls; u++)
            put_str(&e, m->client_urls[u]);
    }
    uint8_t nr[2] = {(uint8_t)c->n_removed, (uint8_t)(c->n_removed >> 8)};
    put(&e, nr, 2);
    for (uint32_t i = 0; i < c->n_removed; i++)
        put_u64(&e, c->removed[i]);
    if (e.oom) {
        free(e.buf);
        return FL_ERR_NOMEM;
    }
    *out = e.buf;
    *out_len = e.len;
    return FL_OK;
}

typedef struct dec {
    const uint8_t *p;
    size_t left;
    bool bad;
} dec;

static const uint8_t *take(dec *d, size_t len)
{
    if (d->bad || d->left < len) {
        d->bad = true;
        return NULL;
    }
    const uint8_t *p = d->p;
    d->p += len;
    d->left -= len;
    return p;
}

static uint8_t get_u8(dec *d)
{
    const uint8_t *p = take(d, 1);
    return p ? p[0] : 0;
}

static uint64_t get_u64(dec *d)
{
    const uint8_t *p = take(d, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void get_str(dec *d, char *out, size_t max)
{
    const uint8_t *lp = take(d, 2);
    size_t len = lp ? (size_t)lp[0] | (size_t)lp[1] << 8 : 0;
    if (len > max) {
        d->bad = true;
        return;
    }
    const uint8_t *p = take(d, len);
    if (p) {
        memcpy(out, p, len);
        out[len] = '\0';
    }
}

static void get_ids(dec *d, raft_id *ids, uint32_t *n)
{
    uint32_t count = get_u8(d);
    if (count > RAFT_MEMBERS_MAX) {
        d->bad = true;
        return;
    }
    *n = count;
    for (uint32_t i = 0; i < count; i++)
        ids[i] = get_u64(d);
}

fl_err cluster_decode(const uint8_t *data, size_t len, cluster_state *out)
{
    memset(out, 0, sizeof *out);
    dec d = {data, len, false};
    if (get_u8(&d) != CLUSTER_ENCODING_VERSION)
        return FL_ERR_CORRUPT;
    out->cluster_id = get_u64(&d);
    out->applied_term = get_u64(&d);
    get_str(&d, out->version, CLUSTER_VERSION_MAX);
    get_ids(&d, out->conf.voters, &out->conf.n_voters);
    get_ids(&d, out->conf.voters_outgoing, &out->conf.n_voters_outgoing);
    get_ids(&d, out->conf.learners, &out->conf.n_learners);
    uint32_t n = get_u8(&d);
    if (n > RAFT_MEMBERS_MAX)
        return FL_ERR_CORRUPT;
    for (uint32_t i = 0; i < n && !d.bad; i++) {
        cluster_member *m = &out->members[i];
        m->id = get_u64(&d);
        get_str(&d, m->name, CLUSTER_NAME_MAX);
        m->is_learner = get_u8(&d) != 0;
        m->n_peer_urls = get_u8(&d);
        if (m->n_peer_urls > CLUSTER_URLS_MAX)
            return FL_ERR_CORRUPT;
        for (uint32_t u = 0; u < m->n_peer_urls; u++)
            get_str(&d, m->peer_urls[u], CLUSTER_URL_MAX);
        m->n_client_urls = get_u8(&d);
        if (m->n_client_urls > CLUSTER_URLS_MAX)
            return FL_ERR_CORRUPT;
        for (uint32_t u = 0; u < m->n_client_urls; u++)
            get_str(&d, m->client_urls[u], CLUSTER_URL_MAX);
    }
    out->n_members = n;
    const uint8_t *nr = take(&d, 2);
    uint32_t removed = nr ? (uint32_t)nr[0] | (uint32_t)nr[1] << 8 : 0;
    if (removed > CLUSTER_REMOVED_MAX)
        return FL_ERR_CORRUPT;
    out->n_removed = removed;
    for (uint32_t i = 0; i < removed; i++)
        out->removed[i] = get_u64(&d);
    if (d.bad || d.left != 0)
        return FL_ERR_CORRUPT;
    return FL_OK;
}

/* mvcc/range: scans of the key index and etcd's Range.
 *
 * A scan walks kidx in ikey order from the start key and, for each key, takes
 * the newest version at the wanted revision (the first duplicate, or one
 * MDB_GET_BOTH_RANGE for a historic read). It counts every live key (etcd's
 * `count` is the total in range) but keeps only what the caller needs, and
 * values are read from the rev DB only for the kvs that are returned.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc/internal.h"

static fl_err hits_push(mvcc_hits *hits, const mvcc_hit *hit)
{
    if (hits->count == hits->capacity) {
        size_t cap = hits->capacity ? hits->capacity * 2 : 64;
        mvcc_hit *items = realloc(hits->items, cap * sizeof *items); /* owned by the store */
        if (items == NULL) {
            return FL_ERR_NOMEM;
        }
        hits->items = items;
        hits->capacity = cap;
    }
    hits->items[hits->count++] = *hit;
    return FL_OK;
}

void mvcc_hits_trim(mvcc_hits *hits)
{
    enum { HITS_KEEP_MAX = 4096 };
    if (hits->capacity > HITS_KEEP_MAX) {
        free(hits->items);
        hits->items = NULL;
        hits->capacity = 0;
    }
    hits->count = 0;
}

/* The version visible at rev of the key under the cursor, whose first
 * duplicate is `first`. Leaves the cursor on the same key. */
static fl_err version_at(const mvcc_view *view, MDB_val *ikey, const MDB_val *first, int64_t rev,
                         mvcc_dup *dup, bool *found)
{
    if (first->mv_size != MVCC_DUP_LEN) {
        return FL_ERR_CORRUPT;
    }
    mvcc_dup_decode(first->mv_data, dup);
    if (rev == INT64_MAX || dup->main <= rev) {
        *found = true;
        return FL_OK;
    }
    uint8_t probe[MVCC_DUP_LEN] = {0};
    mvcc_put_u64(probe, ~(uint64_t)rev);
    MDB_val v = {sizeof probe, probe};
    int rc = mdb_cursor_get(view->kidx, ikey, &v, MDB_GET_BOTH_RANGE);
    if (rc == MDB_NOTFOUND) {
        *found = false;
        return FL_OK;
    }
    if (rc == 0) {
        rc = mdb_cursor_get(view->kidx, ikey, &v, MDB_GET_CURRENT);
    }
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    if (v.mv_size != MVCC_DUP_LEN) {
        return FL_ERR_CORRUPT;
    }
    mvcc_dup_decode(v.mv_data, dup);
    *found = true;
    return FL_OK;
}

typedef struct scan_state {
    mvcc_store *store;
    const mvcc_view *view;
    mvcc_bytes key;
    mvcc_bytes end;
    bool from_key;
    int64_t rev;
    size_t max_keep;
    int64_t total;
} scan_state;

/* Accepts a hit: counts it, keeps it if there is room. */
static fl_err scan_accept(scan_state *s, const mvcc_hit *hit)
{
    s->total++;
    if (s->view->hits->count < s->max_keep) {
        return hits_push(s->view->hits, hit);
    }
    return FL_OK;
}

static bool before_end(const scan_state *s, const uint8_t *k, size_t klen)
{
    return s->from_key || mvcc_bytes_cmp(k, klen, s->end.data, s->end.len) < 0;
}

static int hit_key_cmp(const void *a, const void *b)
{
    const mvcc_hit *x = a, *y = b;
    return mvcc_bytes_cmp(x->key, x->key_len, y->key, y->key_len);
}

/* A group of long keys sharing the prefix under the cursor: collect the live
 * ones, sort them by full key, accept those in range. *stop when one is past
 * the end (everything after the group is too). Leaves the cursor on the
 * group's last ikey. */
static fl_err scan_long_group(scan_state *s, MDB_val *k, MDB_val *v, bool *stop)
{
    const mvcc_view *view = s->view;
    mvcc_hits *hits = s->view->hits;
    uint8_t prefix[MVCC_IKEY_PREFIX];
    memcpy(prefix, k->mv_data, MVCC_IKEY_PREFIX);
    size_t base = hits->count;
    for (;;) {
        mvcc_dup dup;
        bool found = false;
        fl_err err = version_at(view, k, v, s->rev, &dup, &found);
        if (err != FL_OK) {
            return err;
        }
        if (found && !(dup.flags & MVCC_VF_TOMBSTONE)) {
            mvcc_hit hit = {.dup = dup, .has_rec = true};
            err = mvcc_rec_get(view, dup.main, dup.sub, &hit.rec);
            if (err != FL_OK) {
                return err;
            }
            hit.key = hit.rec.key;
            hit.key_len = hit.rec.key_len;
            err = hits_push(hits, &hit);
            if (err != FL_OK) {
                return err;
            }
        }
        MDB_val nk, nv;
        int rc = mdb_cursor_get(view->kidx, &nk, &nv, MDB_NEXT_NODUP);
        if (rc == MDB_NOTFOUND) {
            break;
        }
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
        if (nk.mv_size != MVCC_IKEY_LONG || memcmp(nk.mv_data, prefix, MVCC_IKEY_PREFIX) != 0) {
            /* Step back so the caller's NEXT_NODUP lands on nk again. */
            rc = mdb_cursor_get(view->kidx, &nk, &nv, MDB_PREV_NODUP);
            if (rc != 0) {
                return mvcc_lmdb_err(rc);
            }
            break;
        }
        *k = nk;
        *v = nv;
    }
    size_t n = hits->count - base;
    if (n > 1) {
        qsort(hits->items + base, n, sizeof(mvcc_hit), hit_key_cmp);
    }
    /* Accept in key order, compacting the slice in place (the write index
     * never passes the read index, and never passes max_keep). */
    size_t write = base;
    for (size_t i = 0; i < n; i++) {
        mvcc_hit hit = hits->items[base + i];
        if (mvcc_bytes_cmp(hit.key, hit.key_len, s->key.data, s->key.len) < 0) {
            continue;
        }
        if (!before_end(s, hit.key, hit.key_len)) {
            *stop = true;
            break;
        }
        s->total++;
        if (write < s->max_keep) {
            hits->items[write++] = hit;
        }
    }
    hits->count = write;
    return FL_OK;
}

static fl_err scan_single(scan_state *s)
{
    uint8_t ikey[MVCC_IKEY_LONG];
    size_t ikey_len = 0;
    bool known = false;
    fl_err err = mvcc_ikey_find(s->view, s->key.data, s->key.len, ikey, &ikey_len, &known);
    if (err != FL_OK || !known) {
        return err;
    }
    mvcc_dup dup;
    bool found = false;
    err = mvcc_dup_at(s->view, ikey, ikey_len, s->rev, &dup, &found);
    if (err != FL_OK || !found || (dup.flags & MVCC_VF_TOMBSTONE)) {
        return err;
    }
    mvcc_hit hit = {.key = s->key.data, .key_len = s->key.len, .dup = dup};
    return scan_accept(s, &hit);
}

fl_err mvcc_scan(mvcc_store *store, const mvcc_view *view, mvcc_bytes key, mvcc_bytes range_end,
                 int64_t rev, size_t max_keep, int64_t *total)
{
    assert(key.len > 0);
    scan_state s = {.store = store,
                    .view = view,
                    .key = key,
                    .end = range_end,
                    .rev = rev,
                    .max_keep = max_keep};
    view->hits->count = 0;
    *total = 0;
    fl_err err = FL_OK;
    if (range_end.len == 0) {
        err = scan_single(&s);
        *total = s.total;
        return err;
    }
    s.from_key = range_end.len == 1 && range_end.data[0] == 0;
    if (!s.from_key && mvcc_bytes_cmp(key.data, key.len, range_end.data, range_end.len) >= 0) {
        return FL_OK;
    }
    MDB_val k = {key.len < MVCC_IKEY_PREFIX ? key.len : MVCC_IKEY_PREFIX, (void *)key.data};
    MDB_val v;
    int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size == MVCC_IKEY_LONG) {
            if (!before_end(&s, k.mv_data, MVCC_IKEY_PREFIX)) {
                break;
            }
            bool stop = false;
            err = scan_long_group(&s, &k, &v, &stop);
            if (err != FL_OK || stop) {
                break;
            }
        } else {
            if (k.mv_size > MVCC_IKEY_PREFIX || k.mv_size == 0) {
                err = FL_ERR_CORRUPT;
                break;
            }
            if (!before_end(&s, k.mv_data, k.mv_size)) {
                break;
            }
            if (mvcc_bytes_cmp(k.mv_data, k.mv_size, key.data, key.len) >= 0) {
                mvcc_dup dup;
                bool found = false;
                err = version_at(view, &k, &v, rev, &dup, &found);
                if (err != FL_OK) {
                    break;
                }
                if (found && !(dup.flags & MVCC_VF_TOMBSTONE)) {
                    mvcc_hit hit = {.key = k.mv_data, .key_len = k.mv_size, .dup = dup};
                    err = scan_accept(&s, &hit);
                    if (err != FL_OK) {
                        break;
                    }
                }
            }
        }
        rc = mdb_cursor_get(view->kidx, &k, &v, MDB_NEXT_NODUP);
    }
    if (err == FL_OK && rc != 0 && rc != MDB_NOTFOUND) {
        err = mvcc_lmdb_err(rc);
    }
    *total = s.total;
    return err;
}

fl_err mvcc_kv_fill(mvcc_arena *arena, const mvcc_rec *rec, int64_t mod_revision, bool keys_only,
                    mvcc_kv *kv)
{
    memset(kv, 0, sizeof *kv);
    uint8_t *key = mvcc_arena_dup(arena, rec->key, rec->key_len);
    if (key == NULL) {
        return FL_ERR_NOMEM;
    }
    kv->key.data = key;
    kv->key.len = rec->key_len;
    if (!keys_only) {
        uint8_t *value = mvcc_arena_dup(arena, rec->value, rec->value_len);
        if (value == NULL) {
            return FL_ERR_NOMEM;
        }
        kv->value.data = value;
        kv->value.len = rec->value_len;
    }
    kv->create_revision = rec->create;
    kv->mod_revision = mod_revision;
    kv->version = rec->version;
    kv->lease = rec->lease;
    return FL_OK;
}

static fl_err hit_rec(const mvcc_view *view, mvcc_hit *hit)
{
    if (hit->has_rec) {
        return FL_OK;
    }
    fl_err err = mvcc_rec_get(view, hit->dup.main, hit->dup.sub, &hit->rec);
    if (err == FL_OK) {
        hit->has_rec = true;
    }
    return err;
}

typedef struct sort_spec {
    mvcc_sort_target target;
    bool descend;
} sort_spec;

/* Ties keep key order in both directions, as etcd's (stable for small
 * inputs) sort of a key-ordered list does. */
static int hit_sort_cmp(const void *a, const void *b, void *arg)
{
    const mvcc_hit *x = a, *y = b;
    const sort_spec *spec = arg;
    int c = 0;
    switch (spec->target) {
    case MVCC_SORT_BY_KEY:
        c = mvcc_bytes_cmp(x->key, x->key_len, y->key, y->key_len);
        break;
    case MVCC_SORT_BY_VERSION:
        c = mvcc_i64_cmp(x->dup.version, y->dup.version);
        break;
    case MVCC_SORT_BY_CREATE:
        c = mvcc_i64_cmp(x->dup.create, y->dup.create);
        break;
    case MVCC_SORT_BY_MOD:
        c = mvcc_i64_cmp(x->dup.main, y->dup.main);
        break;
    case MVCC_SORT_BY_VALUE:
        c = mvcc_bytes_cmp(x->rec.value, x->rec.value_len, y->rec.value, y->rec.value_len);
        break;
    }
    if (spec->descend) {
        c = -c;
    }
    if (c == 0) {
        c = mvcc_bytes_cmp(x->key, x->key_len, y->key, y->key_len);
    }
    return c;
}

static bool hit_filtered_out(const mvcc_range_req *req, const mvcc_hit *hit)
{
    return (req->max_mod_revision != 0 && hit->dup.main > req->max_mod_revision) ||
           (req->min_mod_revision != 0 && hit->dup.main < req->min_mod_revision) ||
           (req->max_create_revision != 0 && hit->dup.create > req->max_create_revision) ||
           (req->min_create_revision != 0 && hit->dup.create < req->min_create_revision);
}

/* Filters then sorts the n hits in place; returns how many are left. */
static fl_err range_select(const mvcc_view *view, const mvcc_range_req *req, mvcc_sort_order order,
                           mvcc_hits *hits, size_t *n)
{
    bool filters = req->min_mod_revision != 0 || req->max_mod_revision != 0 ||
                   req->min_create_revision != 0 || req->max_create_revision != 0;
    if (filters) {
        size_t kept = 0;
        for (size_t i = 0; i < *n; i++) {
            if (!hit_filtered_out(req, &hits->items[i])) {
                hits->items[kept++] = hits->items[i];
            }
        }
        *n = kept;
    }
    bool sorted_already = order == MVCC_SORT_NONE ||
                          (order == MVCC_SORT_ASCEND && req->sort_target == MVCC_SORT_BY_KEY);
    if (sorted_already || *n < 2) {
        return FL_OK;
    }
    if (req->sort_target == MVCC_SORT_BY_VALUE) {
        for (size_t i = 0; i < *n; i++) {
            fl_err err = hit_rec(view, &hits->items[i]);
            if (err != FL_OK) {
                return err;
            }
        }
    }
    sort_spec spec = {.target = req->sort_target, .descend = order == MVCC_SORT_DESCEND};
    qsort_r(hits->items, *n, sizeof(mvcc_hit), hit_sort_cmp, &spec);
    return FL_OK;
}

/* Copies the first n hits into owned kvs. */
static fl_err range_emit(const mvcc_view *view, const mvcc_range_req *req, mvcc_hits *hits,
                         size_t n, mvcc_arena *arena, mvcc_range_result *result)
{
    if (n == 0) {
        return FL_OK;
    }
    mvcc_kv *kvs = mvcc_arena_alloc(arena, n * sizeof *kvs);
    if (kvs == NULL) {
        return FL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        fl_err err = hit_rec(view, &hits->items[i]);
        if (err == FL_OK) {
            err = mvcc_kv_fill(arena, &hits->items[i].rec, hits->items[i].dup.main, req->keys_only,
                               &kvs[i]);
        }
        if (err != FL_OK) {
            return err;
        }
    }
    result->kvs = kvs;
    result->kvs_count = n;
    return FL_OK;
}

/* etcd's applierV3backend.Range: scan, filter, sort, limit. */
fl_err mvcc_range_in(mvcc_store *store, const mvcc_view *view, const mvcc_range_req *req,
                     int64_t current, int64_t compact, mvcc_arena *arena, mvcc_range_result *result)
{
    memset(result, 0, sizeof *result);
    result->revision = current;
    if (req->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    if ((unsigned)req->sort_order > MVCC_SORT_DESCEND ||
        (unsigned)req->sort_target > MVCC_SORT_BY_VALUE) {
        return FL_ERR_INVALID;
    }
    int64_t rev = req->revision <= 0 ? current : req->revision;
    if (rev > current) {
        return FL_ERR_FUTURE_REV;
    }
    if (rev < compact) {
        return FL_ERR_COMPACTED;
    }
    /* As etcd: everything is fetched when the request asks for an order or
     * a filter; otherwise limit + 1 keys in key order (that is all "more"
     * needs). Note etcd's quirk kept here: a non-KEY target with order NONE
     * still sorts ascending, but only the limit + 1 keys fetched. */
    bool fetch_all = req->sort_order != MVCC_SORT_NONE || req->min_mod_revision != 0 ||
                     req->max_mod_revision != 0 || req->min_create_revision != 0 ||
                     req->max_create_revision != 0;
    size_t max_keep = SIZE_MAX;
    if (req->count_only) {
        max_keep = 0;
    } else if (!fetch_all && req->limit > 0 && (uint64_t)req->limit < SIZE_MAX - 1) {
        max_keep = (size_t)req->limit + 1;
    }
    int64_t total = 0;
    int64_t scan_rev = rev >= current ? INT64_MAX : rev;
    fl_err err = mvcc_scan(store, view, req->key, req->range_end, scan_rev, max_keep, &total);
    if (err != FL_OK) {
        return err;
    }
    result->count = total;
    if (req->count_only) {
        return FL_OK;
    }
    mvcc_sort_order order = req->sort_order;
    if (req->sort_target != MVCC_SORT_BY_KEY && order == MVCC_SORT_NONE) {
        order = MVCC_SORT_ASCEND; /* etcd's rule: a non-key target sorts ascending */
    }
    size_t n = view->hits->count;
    err = range_select(view, req, order, view->hits, &n);
    if (err != FL_OK) {
        return err;
    }
    if (req->limit > 0 && n > (uint64_t)req->limit) {
        n = (size_t)req->limit;
        result->more = true;
    }
    return range_emit(view, req, view->hits, n, arena, result);
}

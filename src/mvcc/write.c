/* mvcc/write: Put and DeleteRange inside a write transaction.
 *
 * A put is: one lookup of the newest version in kidx, one append to the rev
 * DB (written in place with MDB_RESERVE), one insert of a kidx duplicate.
 * A delete scans the live keys in range, copies what it needs out of LMDB
 * memory (writes may move pages), then writes one tombstone per key.
 */
#include <assert.h>
#include <string.h>

#include "mvcc/internal.h"

fl_err mvcc_lease_check(mvcc_store *store, int64_t lease)
{
    (void)store;
    /* No lease table yet (a later issue adds it): only "no lease" exists. */
    return lease == 0 ? FL_OK : FL_ERR_LEASE_NOT_FOUND;
}

/* Writes one version: the rev record and the kidx duplicate. */
static fl_err write_version(mvcc_wctx *w, const uint8_t *ikey, size_t ikey_len,
                            const mvcc_bytes key, const mvcc_bytes value, const mvcc_dup *dup,
                            int64_t lease, uint64_t seq)
{
    const mvcc_view *view = w->view;
    if (key.len > UINT32_MAX) {
        return FL_ERR_TOO_LARGE;
    }
    bool long_key = (dup->flags & MVCC_VF_LONGKEY) != 0;
    size_t head = MVCC_REC_FIXED + (long_key ? 8 : 0);
    if (value.len > SIZE_MAX - head - key.len) {
        return FL_ERR_TOO_LARGE;
    }
    uint8_t revkey[MVCC_REVKEY_LEN];
    mvcc_revkey(revkey, dup->main, dup->sub);
    MDB_val k = {sizeof revkey, revkey};
    MDB_val v = {head + key.len + value.len, NULL};
    /* Revisions only grow, so every record is appended at the end. */
    int rc = mdb_cursor_put(view->rev, &k, &v, MDB_RESERVE | MDB_APPEND);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    uint8_t *p = v.mv_data;
    p[0] = dup->flags;
    mvcc_put_u64(p + 1, (uint64_t)dup->create);
    mvcc_put_u64(p + 9, (uint64_t)dup->version);
    mvcc_put_u64(p + 17, (uint64_t)lease);
    size_t off = 25;
    if (long_key) {
        mvcc_put_u64(p + off, seq);
        off += 8;
    }
    p[off] = (uint8_t)(key.len >> 24);
    p[off + 1] = (uint8_t)(key.len >> 16);
    p[off + 2] = (uint8_t)(key.len >> 8);
    p[off + 3] = (uint8_t)key.len;
    off += 4;
    memcpy(p + off, key.data, key.len);
    if (value.len > 0) {
        memcpy(p + off + key.len, value.data, value.len);
    }

    uint8_t dupbuf[MVCC_DUP_LEN];
    mvcc_dup_encode(dupbuf, dup);
    MDB_val ik = {ikey_len, (void *)ikey};
    MDB_val dv = {sizeof dupbuf, dupbuf};
    rc = mdb_cursor_put(view->kidx, &ik, &dv, 0);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    w->store->work.logical_bytes += MVCC_VERSION_BYTES(head + key.len + value.len);
    return FL_OK;
}

/* What a put writes when it uses the old value or lease, and its prev_kv.
 * prev is the live previous version, or NULL when the key is absent. */
static fl_err put_resolve(mvcc_wctx *w, const mvcc_put_req *req, const mvcc_dup *prev,
                          mvcc_put_result *result, mvcc_bytes *value, int64_t *lease)
{
    if (prev == NULL) {
        /* Absent key: the caller checked existence where etcd does; the
         * leftovers (a from-key delete earlier in the same txn) get an empty
         * value / no lease rather than etcd 3.4's panic. */
        if (req->ignore_value) {
            value->data = NULL;
            value->len = 0;
        }
        if (req->ignore_lease) {
            *lease = 0;
        }
        return FL_OK;
    }
    if (!req->prev_kv && !req->ignore_value && !req->ignore_lease) {
        return FL_OK;
    }
    mvcc_rec rec;
    fl_err err = mvcc_rec_get(w->view, prev->main, prev->sub, &rec);
    if (err != FL_OK) {
        return err;
    }
    if (req->prev_kv && result != NULL) {
        err = mvcc_kv_fill(w->arena, &rec, prev->main, false, &result->prev_kv);
        if (err != FL_OK) {
            return err;
        }
        result->has_prev_kv = true;
    }
    if (req->ignore_value) {
        /* The old value lives in a page the writes that follow may move. */
        value->data = mvcc_arena_dup(w->store->scratch, rec.value, rec.value_len);
        value->len = rec.value_len;
        if (value->data == NULL) {
            return FL_ERR_NOMEM;
        }
    }
    if (req->ignore_lease) {
        *lease = rec.lease;
    }
    return FL_OK;
}

fl_err mvcc_write_put(mvcc_wctx *w, const mvcc_put_req *req, mvcc_put_result *result)
{
    const mvcc_view *view = w->view;
    mvcc_store *store = w->store;
    assert(req->key.len > 0);
    uint8_t ikey[MVCC_IKEY_LONG];
    size_t ikey_len = 0;
    bool known = false;
    fl_err err = mvcc_ikey_find(view, req->key.data, req->key.len, ikey, &ikey_len, &known);
    if (err != FL_OK) {
        return err;
    }
    mvcc_dup prev = {0};
    bool found = false;
    if (known) {
        err = mvcc_dup_at(view, ikey, ikey_len, INT64_MAX, &prev, &found);
        if (err != FL_OK) {
            return err;
        }
    }
    bool live = found && !(prev.flags & MVCC_VF_TOMBSTONE);
    mvcc_bytes value = req->value;
    int64_t lease = req->lease;
    err = put_resolve(w, req, live ? &prev : NULL, result, &value, &lease);
    if (err != FL_OK) {
        return err;
    }
    uint64_t seq = 0;
    bool long_key = req->key.len > MVCC_IKEY_PREFIX;
    if (long_key) {
        if (!known) {
            seq = store->work.next_long_seq++;
            memcpy(ikey, req->key.data, MVCC_IKEY_PREFIX);
            mvcc_put_u64(ikey + MVCC_IKEY_PREFIX, seq);
            ikey_len = MVCC_IKEY_LONG;
        } else {
            seq = mvcc_get_u64(ikey + MVCC_IKEY_PREFIX);
        }
    }
    mvcc_dup dup = {
        .main = w->begin_revision + 1,
        .sub = w->sub,
        .flags = long_key ? MVCC_VF_LONGKEY : 0,
        .create = live ? prev.create : w->begin_revision + 1,
        .version = live ? prev.version + 1 : 1,
    };
    err = write_version(w, ikey, ikey_len, req->key, value, &dup, lease, seq);
    if (err != FL_OK) {
        return err;
    }
    w->sub++;
    return FL_OK;
}

fl_err mvcc_put_check_exists(mvcc_wctx *w, const mvcc_put_req *req)
{
    if (!req->ignore_value && !req->ignore_lease) {
        return FL_OK;
    }
    int64_t total = 0;
    mvcc_bytes none = {NULL, 0};
    fl_err err = mvcc_scan(w->store, w->view, req->key, none, INT64_MAX, 0, &total);
    if (err != FL_OK) {
        return err;
    }
    return total == 0 ? FL_ERR_NOT_FOUND : FL_OK;
}

fl_err mvcc_apply_put(mvcc_wctx *w, const mvcc_put_req *req, mvcc_put_result *result)
{
    if (req->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    /* etcd checks the lease first, then the key for ignore_*. */
    fl_err err = mvcc_lease_check(w->store, req->lease);
    if (err == FL_OK) {
        err = mvcc_put_check_exists(w, req);
    }
    return err == FL_OK ? mvcc_write_put(w, req, result) : err;
}

/* What a delete keeps of each key once it starts writing. */
typedef struct staged_key {
    mvcc_bytes key;
    uint8_t *ikey;
    size_t ikey_len;
    uint64_t seq;
} staged_key;

/* Copies what the tombstone of hit needs (key, ikey) out of LMDB memory,
 * and its prev kv if wanted. */
static fl_err stage_key(mvcc_wctx *w, mvcc_hit *hit, staged_key *sk, mvcc_kv *prev)
{
    mvcc_store *store = w->store;
    bool long_key = hit->key_len > MVCC_IKEY_PREFIX;
    if ((prev != NULL || long_key) && !hit->has_rec) {
        fl_err err = mvcc_rec_get(w->view, hit->dup.main, hit->dup.sub, &hit->rec);
        if (err != FL_OK) {
            return err;
        }
        hit->has_rec = true;
    }
    if (prev != NULL) {
        fl_err err = mvcc_kv_fill(w->arena, &hit->rec, hit->dup.main, false, prev);
        if (err != FL_OK) {
            return err;
        }
    }
    sk->key.data = mvcc_arena_dup(store->scratch, hit->key, hit->key_len);
    sk->key.len = hit->key_len;
    sk->ikey_len = long_key ? MVCC_IKEY_LONG : hit->key_len;
    sk->ikey = mvcc_arena_alloc(store->scratch, sk->ikey_len);
    if (sk->key.data == NULL || sk->ikey == NULL) {
        return FL_ERR_NOMEM;
    }
    memcpy(sk->ikey, hit->key, long_key ? MVCC_IKEY_PREFIX : hit->key_len);
    sk->seq = long_key ? hit->rec.seq : 0;
    if (long_key) {
        mvcc_put_u64(sk->ikey + MVCC_IKEY_PREFIX, sk->seq);
    }
    return FL_OK;
}

fl_err mvcc_write_delete(mvcc_wctx *w, const mvcc_delete_req *req, mvcc_delete_result *result)
{
    mvcc_store *store = w->store;
    if (req->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    int64_t total = 0;
    fl_err err = mvcc_scan(store, w->view, req->key, req->range_end, INT64_MAX, SIZE_MAX, &total);
    if (err != FL_OK) {
        return err;
    }
    size_t n = w->view->hits->count;
    assert((int64_t)n == total);
    if (result != NULL) {
        result->deleted = total;
    }
    if (n == 0) {
        return FL_OK;
    }
    staged_key *staged = mvcc_arena_alloc(store->scratch, n * sizeof *staged);
    if (staged == NULL) {
        return FL_ERR_NOMEM;
    }
    mvcc_kv *prev = NULL;
    if (req->prev_kv && result != NULL) {
        prev = mvcc_arena_alloc(w->arena, n * sizeof *prev);
        if (prev == NULL) {
            return FL_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        err = stage_key(w, &w->view->hits->items[i], &staged[i], prev ? &prev[i] : NULL);
        if (err != FL_OK) {
            return err;
        }
    }
    if (prev != NULL) {
        result->prev_kvs = prev;
        result->prev_kvs_count = n;
    }
    /* Only now write: the hits pointed into pages the writes may move. */
    mvcc_bytes empty = {NULL, 0};
    for (size_t i = 0; i < n; i++) {
        staged_key *sk = &staged[i];
        mvcc_dup dup = {
            .main = w->begin_revision + 1,
            .sub = w->sub,
            .flags = MVCC_VF_TOMBSTONE | (sk->key.len > MVCC_IKEY_PREFIX ? MVCC_VF_LONGKEY : 0),
        };
        err = write_version(w, sk->ikey, sk->ikey_len, sk->key, empty, &dup, 0, sk->seq);
        if (err != FL_OK) {
            return err;
        }
        w->sub++;
    }
    return FL_OK;
}

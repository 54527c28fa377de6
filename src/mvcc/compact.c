/* mvcc/compact: drop history older than a revision, in bounded steps.
 *
 * Logical vs physical: Compact(rev) takes effect at once (reads below rev
 * fail, the compact revision is recorded), while the physical removal of old
 * versions is resumable work. Leftover old versions are invisible: a read
 * at or above the compact revision only ever looks at the newest version at
 * or below its revision.
 *
 * The work: only keys changed since the previous compaction can have
 * versions to drop, so the rev DB is walked from where the last walk stopped
 * up to the compact revision. For each record met, the newest version of its
 * key at the compact revision (N) is found in kidx; every older version goes
 * (kidx duplicate + rev record), and N goes too if it is a tombstone. Each
 * version is deleted once over the life of the store, so the total work is
 * proportional to the writes, never to the whole key space.
 *
 * Steps: the compaction's own apply does up to `chunk` units of work (one
 * unit per record visited or version deleted), and every later apply does
 * up to chunk/100 more until the walk is done. Budgets are per apply, so the
 * bytes stay the same on every member whatever the batching, and no LMDB
 * txn grows without bound (a compaction of a hot key with a million versions
 * cannot hit MDB_TXN_FULL and wedge the member on every replay).
 * The walk position is part of the replicated state (the meta record).
 */
#include <assert.h>
#include <string.h>

#include "mvcc/internal.h"

/* Deletes a rev record and takes its logical bytes off the quota count. */
static fl_err delete_rev_record(const mvcc_view *view, int64_t main, int64_t sub,
                                uint64_t *logical_bytes)
{
    uint8_t k[MVCC_REVKEY_LEN];
    mvcc_revkey(k, main, sub);
    MDB_val key = {sizeof k, k};
    MDB_val val;
    int rc = mdb_get(view->txn, view->dbi_rev, &key, &val);
    if (rc == 0) {
        uint64_t bytes = MVCC_VERSION_BYTES(val.mv_size);
        assert(*logical_bytes >= bytes);
        if (*logical_bytes < bytes) {
            return FL_ERR_CORRUPT;
        }
        rc = mdb_del(view->txn, view->dbi_rev, &key, NULL);
        if (rc == 0) {
            *logical_bytes -= bytes;
        }
    }
    return rc == 0 ? FL_OK : (rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc));
}

/* Deletes the kidx duplicate `raw` of ikey and its rev record. */
static fl_err delete_version(mvcc_store *store, const mvcc_view *view, const uint8_t *ikey,
                             size_t ikey_len, const uint8_t raw[MVCC_DUP_LEN])
{
    MDB_val k = {ikey_len, (void *)ikey};
    MDB_val v = {MVCC_DUP_LEN, (void *)raw};
    int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_GET_BOTH);
    if (rc == 0) {
        rc = mdb_cursor_del(view->kidx, 0);
    }
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc);
    }
    mvcc_dup dup;
    mvcc_dup_decode(raw, &dup);
    return delete_rev_record(view, dup.main, dup.sub, &store->work.logical_bytes);
}

/* The duplicate just older than `after` (or NULL if none). Re-seeks every
 * time: deletions move the cursor's notion of "next". */
static fl_err older_than(const mvcc_view *view, const uint8_t *ikey, size_t ikey_len,
                         const uint8_t after[MVCC_DUP_LEN], uint8_t out[MVCC_DUP_LEN], bool *found)
{
    *found = false;
    MDB_val k = {ikey_len, (void *)ikey};
    MDB_val v = {MVCC_DUP_LEN, (void *)after};
    int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_GET_BOTH);
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc);
    }
    rc = mdb_cursor_get(view->kidx, &k, &v, MDB_NEXT_DUP);
    if (rc == MDB_NOTFOUND) {
        return FL_OK;
    }
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    if (v.mv_size != MVCC_DUP_LEN) {
        return FL_ERR_CORRUPT;
    }
    memcpy(out, v.mv_data, MVCC_DUP_LEN);
    *found = true;
    return FL_OK;
}

/* Drops the versions of ikey older than the newest at rev, and that one too
 * if it is a tombstone. The version the walk stands on (visited) goes last,
 * so when the budget runs out the walk can resume on it. *done is false when
 * the budget ran out first. */
static fl_err compact_key(mvcc_store *store, const mvcc_view *view, const uint8_t *ikey,
                          size_t ikey_len, int64_t rev, int64_t visited_main, int64_t visited_sub,
                          int64_t *budget, bool *done)
{
    *done = false;
    mvcc_dup newest;
    bool found = false;
    fl_err err = mvcc_dup_at(view, ikey, ikey_len, rev, &newest, &found);
    if (err != FL_OK) {
        return err;
    }
    assert(found); /* the visited record is at or below rev */
    if (!found) {
        return FL_ERR_CORRUPT;
    }
    uint8_t newest_raw[MVCC_DUP_LEN];
    mvcc_dup_encode(newest_raw, &newest);
    uint8_t cursor_raw[MVCC_DUP_LEN];
    memcpy(cursor_raw, newest_raw, MVCC_DUP_LEN);
    bool visited_is_older = false;
    uint8_t visited_raw[MVCC_DUP_LEN];
    for (;;) {
        uint8_t older[MVCC_DUP_LEN];
        err = older_than(view, ikey, ikey_len, cursor_raw, older, &found);
        if (err != FL_OK) {
            return err;
        }
        if (!found) {
            break;
        }
        mvcc_dup d;
        mvcc_dup_decode(older, &d);
        assert(d.main < newest.main || (d.main == newest.main && d.sub < newest.sub));
        if (d.main == visited_main && d.sub == visited_sub) {
            visited_is_older = true;
            memcpy(visited_raw, older, MVCC_DUP_LEN);
            memcpy(cursor_raw, older, MVCC_DUP_LEN); /* step over it */
            continue;
        }
        if (*budget <= 0) {
            return FL_OK;
        }
        err = delete_version(store, view, ikey, ikey_len, older);
        if (err != FL_OK) {
            return err;
        }
        (*budget)--;
    }
    if (visited_is_older) {
        if (*budget <= 0) {
            return FL_OK;
        }
        err = delete_version(store, view, ikey, ikey_len, visited_raw);
        if (err != FL_OK) {
            return err;
        }
        (*budget)--;
    }
    if (newest.flags & MVCC_VF_TOMBSTONE) {
        if (*budget <= 0) {
            return FL_OK;
        }
        err = delete_version(store, view, ikey, ikey_len, newest_raw);
        if (err != FL_OK) {
            return err;
        }
        (*budget)--;
    }
    *done = true;
    return FL_OK;
}

static fl_err record_ikey(const mvcc_rec *rec, uint8_t ikey[MVCC_IKEY_LONG], size_t *ikey_len)
{
    if (rec->flags & MVCC_VF_LONGKEY) {
        if (rec->key_len <= MVCC_IKEY_PREFIX) {
            return FL_ERR_CORRUPT;
        }
        memcpy(ikey, rec->key, MVCC_IKEY_PREFIX);
        mvcc_put_u64(ikey + MVCC_IKEY_PREFIX, rec->seq);
        *ikey_len = MVCC_IKEY_LONG;
        return FL_OK;
    }
    if (rec->key_len == 0 || rec->key_len > MVCC_IKEY_PREFIX) {
        return FL_ERR_CORRUPT;
    }
    memcpy(ikey, rec->key, rec->key_len);
    *ikey_len = rec->key_len;
    return FL_OK;
}

fl_err mvcc_compact_step(mvcc_store *store, const mvcc_view *view, int64_t budget)
{
    mvcc_state *st = &store->work;
    while (st->compact_scan_main != 0 && budget > 0) {
        uint8_t start[MVCC_REVKEY_LEN];
        mvcc_revkey(start, (int64_t)st->compact_scan_main, (int64_t)st->compact_scan_sub);
        MDB_val k = {sizeof start, start};
        MDB_val v;
        int rc = mdb_cursor_get(view->rev, &k, &v, MDB_SET_RANGE);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return mvcc_lmdb_err(rc);
        }
        if (rc == 0 && k.mv_size != MVCC_REVKEY_LEN) {
            return FL_ERR_CORRUPT;
        }
        int64_t main = rc == 0 ? (int64_t)mvcc_get_u64(k.mv_data) : 0;
        if (rc == MDB_NOTFOUND || main > st->compact_revision) {
            st->compact_scan_main = 0; /* the walk is done */
            st->compact_scan_sub = 0;
            break;
        }
        int64_t sub = (int64_t)mvcc_get_u64((const uint8_t *)k.mv_data + 8);
        mvcc_rec rec;
        if (!mvcc_rec_decode(v.mv_data, v.mv_size, &rec)) {
            return FL_ERR_CORRUPT;
        }
        uint8_t ikey[MVCC_IKEY_LONG];
        size_t ikey_len;
        fl_err err = record_ikey(&rec, ikey, &ikey_len);
        if (err != FL_OK) {
            return err;
        }
        bool done = false;
        err = compact_key(store, view, ikey, ikey_len, st->compact_revision, main, sub, &budget,
                          &done);
        if (err != FL_OK) {
            return err;
        }
        if (!done) {
            break; /* resume on this record next time */
        }
        budget--;
        st->compact_scan_main = (uint64_t)main;
        st->compact_scan_sub = (uint64_t)sub + 1;
    }
    return FL_OK;
}

fl_err mvcc_apply_compact(mvcc_store *store, const mvcc_view *view, int64_t revision,
                          int64_t budget)
{
    mvcc_state *st = &store->work;
    if (revision <= st->compact_revision) {
        return FL_ERR_COMPACTED;
    }
    if (revision > st->current_revision) {
        return FL_ERR_FUTURE_REV;
    }
    if (st->compact_scan_main == 0) {
        /* Nothing pending: walk what was written since the last compaction.
         * Otherwise the pending walk simply goes on to the new target. */
        int64_t from = st->compact_revision + 1;
        st->compact_scan_main = (uint64_t)(from < 1 ? 1 : from);
        st->compact_scan_sub = 0;
    }
    st->compact_revision = revision;
    return mvcc_compact_step(store, view, budget);
}

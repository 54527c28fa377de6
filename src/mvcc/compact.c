/* mvcc/compact: drop history older than a revision.
 *
 * Only keys changed since the previous compaction can have versions to drop,
 * so the rev DB is walked over (previous compact, rev] only. For each record
 * met, the newest version of its key at rev (N) is found in kidx; every older
 * version goes (kidx duplicate + rev record), and N goes too if it is a
 * tombstone. Each version is deleted once over the life of the store, so the
 * total work is proportional to the writes, never to the whole key space.
 * Runs in the apply's LMDB txn (one txn per compaction).
 */
#include <assert.h>
#include <string.h>

#include "mvcc/internal.h"

static fl_err delete_rev_record(const mvcc_view *view, int64_t main, int64_t sub)
{
    uint8_t k[MVCC_REVKEY_LEN];
    mvcc_revkey(k, main, sub);
    MDB_val key = {sizeof k, k};
    int rc = mdb_del(view->txn, view->dbi_rev, &key, NULL);
    return rc == 0 ? FL_OK : (rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc));
}

/* Drops the versions of ikey older than the newest at rev, and that one too
 * if it is a tombstone. */
static fl_err compact_key(const mvcc_view *view, const uint8_t *ikey, size_t ikey_len, int64_t rev)
{
    mvcc_dup newest;
    bool found = false;
    fl_err err = mvcc_dup_at(view, ikey, ikey_len, rev, &newest, &found);
    if (err != FL_OK || !found) {
        return err;
    }
    uint8_t newest_raw[MVCC_DUP_LEN];
    mvcc_dup_encode(newest_raw, &newest);
    for (;;) {
        /* Re-seek each time: deleting moves the cursor's notion of "next". */
        MDB_val k = {ikey_len, (void *)ikey};
        MDB_val v = {sizeof newest_raw, newest_raw};
        int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_GET_BOTH);
        if (rc != 0) {
            return rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc);
        }
        rc = mdb_cursor_get(view->kidx, &k, &v, MDB_NEXT_DUP);
        if (rc == MDB_NOTFOUND) {
            break;
        }
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
        if (v.mv_size != MVCC_DUP_LEN) {
            return FL_ERR_CORRUPT;
        }
        mvcc_dup older;
        mvcc_dup_decode(v.mv_data, &older);
        assert(older.main < newest.main || (older.main == newest.main && older.sub < newest.sub));
        rc = mdb_cursor_del(view->kidx, 0);
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
        err = delete_rev_record(view, older.main, older.sub);
        if (err != FL_OK) {
            return err;
        }
    }
    if (newest.flags & MVCC_VF_TOMBSTONE) {
        MDB_val k = {ikey_len, (void *)ikey};
        MDB_val v = {sizeof newest_raw, newest_raw};
        int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_GET_BOTH);
        if (rc == 0) {
            rc = mdb_cursor_del(view->kidx, 0);
        }
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
        err = delete_rev_record(view, newest.main, newest.sub);
    }
    return err;
}

fl_err mvcc_apply_compact(mvcc_store *store, const mvcc_view *view, int64_t revision)
{
    mvcc_state *st = &store->work;
    if (revision <= st->compact_revision) {
        return FL_ERR_COMPACTED;
    }
    if (revision > st->current_revision) {
        return FL_ERR_FUTURE_REV;
    }
    int64_t from = st->compact_revision + 1;
    if (from < 1) {
        from = 1;
    }
    int64_t next_main = from;
    int64_t next_sub = 0;
    for (;;) {
        uint8_t start[MVCC_REVKEY_LEN];
        mvcc_revkey(start, next_main, next_sub);
        MDB_val k = {sizeof start, start};
        MDB_val v;
        int rc = mdb_cursor_get(view->rev, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            break;
        }
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
        if (k.mv_size != MVCC_REVKEY_LEN) {
            return FL_ERR_CORRUPT;
        }
        int64_t main = (int64_t)mvcc_get_u64(k.mv_data);
        int64_t sub = (int64_t)mvcc_get_u64((const uint8_t *)k.mv_data + 8);
        if (main > revision) {
            break;
        }
        mvcc_rec rec;
        if (!mvcc_rec_decode(v.mv_data, v.mv_size, &rec)) {
            return FL_ERR_CORRUPT;
        }
        uint8_t ikey[MVCC_IKEY_LONG];
        size_t ikey_len;
        if (rec.flags & MVCC_VF_LONGKEY) {
            memcpy(ikey, rec.key, MVCC_IKEY_PREFIX);
            mvcc_put_u64(ikey + MVCC_IKEY_PREFIX, rec.seq);
            ikey_len = MVCC_IKEY_LONG;
        } else {
            if (rec.key_len == 0 || rec.key_len > MVCC_IKEY_PREFIX) {
                return FL_ERR_CORRUPT;
            }
            memcpy(ikey, rec.key, rec.key_len);
            ikey_len = rec.key_len;
        }
        fl_err err = compact_key(view, ikey, ikey_len, revision);
        if (err != FL_OK) {
            return err;
        }
        next_main = main;
        next_sub = sub + 1;
    }
    st->compact_revision = revision;
    return FL_OK;
}

/* mvcc/schema: byte layouts of the LMDB records and the key index lookups.
 *
 * Long keys: LMDB keys are at most 511 bytes, etcd keys are not. A user key of
 * up to MVCC_IKEY_PREFIX bytes is its own ikey. A longer key is stored under
 * its first MVCC_IKEY_PREFIX bytes + an 8-byte sequence number handed out at
 * its first write (deterministic: it comes from the replicated state). All
 * long keys sharing a prefix sit next to each other in kidx, right after the
 * short key equal to the prefix (if any) and before any other key, so key
 * order is preserved except inside such a group, which the scan sorts. The
 * full key is read from the rev record.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "mvcc/internal.h"
#include "util/log.h"

_Thread_local bool mvcc_map_full_seen;

fl_err mvcc_lmdb_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return FL_OK;
    case MDB_MAP_FULL:
        /* Never "applied with no effect": whether the map fills depends on
         * page layout and free pages held by readers, not on the log, so one
         * member could skip a write another applies. A store failure; the
         * store logs it with its map size (mvcc_map_full_seen). */
        mvcc_map_full_seen = true;
        return FL_ERR_IO;
    case ENOSPC:
    case EDQUOT:
        return FL_ERR_NOSPACE;
    case ENOMEM:
        return FL_ERR_NOMEM;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        FL_LOG_ERRORF("mvcc", "lmdb corrupted", "rc=%d err=\"%s\"", rc, mdb_strerror(rc));
        return FL_ERR_CORRUPT;
    default:
        FL_LOG_ERRORF("mvcc", "lmdb failed", "rc=%d err=\"%s\"", rc, mdb_strerror(rc));
        return FL_ERR_IO;
    }
}

void mvcc_put_u64(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t mvcc_get_u64(const uint8_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}

void mvcc_revkey(uint8_t out[MVCC_REVKEY_LEN], int64_t main, int64_t sub)
{
    assert(main >= 0 && sub >= 0);
    mvcc_put_u64(out, (uint64_t)main);
    mvcc_put_u64(out + 8, (uint64_t)sub);
}

/* Inverted revisions make the newest version the first duplicate. */
void mvcc_dup_encode(uint8_t out[MVCC_DUP_LEN], const mvcc_dup *dup)
{
    mvcc_put_u64(out, ~(uint64_t)dup->main);
    mvcc_put_u64(out + 8, ~(uint64_t)dup->sub);
    out[16] = dup->flags;
    mvcc_put_u64(out + 17, (uint64_t)dup->create);
    mvcc_put_u64(out + 25, (uint64_t)dup->version);
}

void mvcc_dup_decode(const uint8_t in[MVCC_DUP_LEN], mvcc_dup *dup)
{
    dup->main = (int64_t)~mvcc_get_u64(in);
    dup->sub = (int64_t)~mvcc_get_u64(in + 8);
    dup->flags = in[16];
    dup->create = (int64_t)mvcc_get_u64(in + 17);
    dup->version = (int64_t)mvcc_get_u64(in + 25);
}

bool mvcc_rec_decode(const void *data, size_t len, mvcc_rec *rec)
{
    const uint8_t *p = data;
    if (len < MVCC_REC_FIXED) {
        return false;
    }
    rec->flags = p[0];
    rec->create = (int64_t)mvcc_get_u64(p + 1);
    rec->version = (int64_t)mvcc_get_u64(p + 9);
    rec->lease = (int64_t)mvcc_get_u64(p + 17);
    size_t off = 25;
    rec->seq = 0;
    if (rec->flags & MVCC_VF_LONGKEY) {
        if (len < off + 8 + 4) {
            return false;
        }
        rec->seq = mvcc_get_u64(p + off);
        off += 8;
    }
    size_t key_len = ((size_t)p[off] << 24) | ((size_t)p[off + 1] << 16) |
                     ((size_t)p[off + 2] << 8) | (size_t)p[off + 3];
    off += 4;
    if (key_len > len - off) {
        return false;
    }
    rec->key = p + off;
    rec->key_len = key_len;
    rec->value = p + off + key_len;
    rec->value_len = len - off - key_len;
    return true;
}

fl_err mvcc_rec_get(const mvcc_view *view, int64_t main, int64_t sub, mvcc_rec *rec)
{
    uint8_t k[MVCC_REVKEY_LEN];
    mvcc_revkey(k, main, sub);
    MDB_val key = {sizeof k, k};
    MDB_val val;
    int rc = mdb_get(view->txn, view->dbi_rev, &key, &val);
    if (rc == MDB_NOTFOUND) {
        FL_LOG_ERRORF("mvcc", "index names a missing revision", "main=%lld sub=%lld",
                      (long long)main, (long long)sub);
        return FL_ERR_CORRUPT;
    }
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    if (!mvcc_rec_decode(val.mv_data, val.mv_size, rec)) {
        return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

fl_err mvcc_dup_at(const mvcc_view *view, const uint8_t *ikey, size_t ikey_len, int64_t rev,
                   mvcc_dup *dup, bool *found)
{
    MDB_val key = {ikey_len, (void *)ikey};
    MDB_val val;
    int rc;
    *found = false;
    if (rev == INT64_MAX) {
        rc = mdb_cursor_get(view->kidx, &key, &val, MDB_SET_KEY);
    } else {
        uint8_t probe[MVCC_DUP_LEN] = {0};
        mvcc_put_u64(probe, ~(uint64_t)rev);
        val.mv_size = sizeof probe;
        val.mv_data = probe;
        rc = mdb_cursor_get(view->kidx, &key, &val, MDB_GET_BOTH_RANGE);
        if (rc == 0) {
            rc = mdb_cursor_get(view->kidx, &key, &val, MDB_GET_CURRENT);
        }
    }
    if (rc == MDB_NOTFOUND) {
        return FL_OK;
    }
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    if (val.mv_size != MVCC_DUP_LEN) {
        return FL_ERR_CORRUPT;
    }
    mvcc_dup_decode(val.mv_data, dup);
    assert(rev == INT64_MAX || dup->main <= rev);
    *found = true;
    return FL_OK;
}

/* Long key: walk the group of ikeys sharing the prefix and compare the full
 * key stored in each one's newest record. */
static fl_err ikey_find_long(const mvcc_view *view, const uint8_t *key, size_t key_len,
                             uint8_t *out, size_t *ikey_len, bool *found)
{
    memcpy(out, key, MVCC_IKEY_PREFIX);
    *ikey_len = MVCC_IKEY_PREFIX;
    MDB_val k = {MVCC_IKEY_PREFIX, out};
    MDB_val v;
    int rc = mdb_cursor_get(view->kidx, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size < MVCC_IKEY_PREFIX || memcmp(k.mv_data, key, MVCC_IKEY_PREFIX) != 0) {
            break;
        }
        if (k.mv_size == MVCC_IKEY_LONG) {
            if (v.mv_size != MVCC_DUP_LEN) {
                return FL_ERR_CORRUPT;
            }
            mvcc_dup dup;
            mvcc_dup_decode(v.mv_data, &dup);
            uint8_t group_key[MVCC_IKEY_LONG];
            memcpy(group_key, k.mv_data, MVCC_IKEY_LONG);
            mvcc_rec rec;
            fl_err err = mvcc_rec_get(view, dup.main, dup.sub, &rec);
            if (err != FL_OK) {
                return err;
            }
            if (rec.key_len == key_len && memcmp(rec.key, key, key_len) == 0) {
                memcpy(out, group_key, MVCC_IKEY_LONG);
                *ikey_len = MVCC_IKEY_LONG;
                *found = true;
                return FL_OK;
            }
            /* mdb_get moved no cursor of ours, but reposition to be plain. */
            k.mv_size = MVCC_IKEY_LONG;
            k.mv_data = group_key;
            rc = mdb_cursor_get(view->kidx, &k, &v, MDB_SET_KEY);
            if (rc != 0) {
                return rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc);
            }
        }
        rc = mdb_cursor_get(view->kidx, &k, &v, MDB_NEXT_NODUP);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc_lmdb_err(rc);
    }
    *found = false;
    return FL_OK;
}

fl_err mvcc_ikey_find(const mvcc_view *view, const uint8_t *key, size_t key_len, uint8_t *out,
                      size_t *ikey_len, bool *found)
{
    assert(key_len > 0);
    *found = false;
    if (key_len <= MVCC_IKEY_PREFIX) {
        memcpy(out, key, key_len);
        *ikey_len = key_len;
        /* Presence is decided by the caller's mvcc_dup_at. */
        *found = true;
        return FL_OK;
    }
    return ikey_find_long(view, key, key_len, out, ikey_len, found);
}

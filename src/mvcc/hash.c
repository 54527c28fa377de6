/* mvcc/hash: Maintenance.HashKV, etcd's check that members hold the same
 * history.
 *
 * What is hashed: every version (put or tombstone) with main revision <=
 * the asked revision that survives compaction at the compact revision C:
 * all versions above C, and at or below C only the newest version of each
 * key at C if it is not a tombstone (what a finished physical compaction
 * keeps). Versions a lazy compaction has not removed yet are skipped by that
 * rule, so the answer does not depend on its progress, nor on batching or
 * restarts. (etcd 3.4 uses the versions kept at the asked revision instead
 * of at C, which makes its hash depend on compaction progress; the
 * revisions and errors are etcd's.)
 *
 * Order and encoding, CRC-32C (Castagnoli, as etcd): the bytes "flotilla
 * kv hash v1", then per version in (main, sub) order: main u64 BE, sub u64
 * BE, tombstone u8, create u64, version u64, lease u64, key_len u64, key,
 * value_len u64, value. Internal details (long-key sequence numbers, flags
 * other than tombstone) are left out, so the hash is a function of the
 * logical history only.
 */
#include <assert.h>
#include <string.h>

#include "mvcc/internal.h"
#include "util/crc32c.h"

static const char HASH_DOMAIN[] = "flotilla kv hash v1";

static uint32_t crc_u64(uint32_t crc, uint64_t v)
{
    uint8_t b[8];
    mvcc_put_u64(b, v);
    return fl_crc32c(crc, b, sizeof b);
}

/* Whether the version (main, sub) of rec survives a compaction at compact:
 * it is the newest of its key at compact and not a tombstone. */
static fl_err survives(const mvcc_view *view, const mvcc_rec *rec, int64_t main, int64_t sub,
                       int64_t compact, bool *keep)
{
    *keep = false;
    if (rec->flags & MVCC_VF_TOMBSTONE) {
        return FL_OK;
    }
    uint8_t ikey[MVCC_IKEY_LONG];
    size_t ikey_len;
    if (rec->flags & MVCC_VF_LONGKEY) {
        if (rec->key_len <= MVCC_IKEY_PREFIX) {
            return FL_ERR_CORRUPT;
        }
        memcpy(ikey, rec->key, MVCC_IKEY_PREFIX);
        mvcc_put_u64(ikey + MVCC_IKEY_PREFIX, rec->seq);
        ikey_len = MVCC_IKEY_LONG;
    } else {
        if (rec->key_len == 0 || rec->key_len > MVCC_IKEY_PREFIX) {
            return FL_ERR_CORRUPT;
        }
        memcpy(ikey, rec->key, rec->key_len);
        ikey_len = rec->key_len;
    }
    mvcc_dup newest;
    bool found = false;
    fl_err err = mvcc_dup_at(view, ikey, ikey_len, compact, &newest, &found);
    if (err != FL_OK) {
        return err;
    }
    if (!found) {
        return FL_ERR_CORRUPT; /* rec itself is at or below compact */
    }
    *keep = newest.main == main && newest.sub == sub;
    return FL_OK;
}

static fl_err hash_upto(const mvcc_view *view, int64_t revision, int64_t compact, uint32_t *out)
{
    uint32_t crc = fl_crc32c(0, HASH_DOMAIN, sizeof HASH_DOMAIN - 1);
    uint8_t start[MVCC_REVKEY_LEN];
    mvcc_revkey(start, 1, 0);
    MDB_val k = {sizeof start, start};
    MDB_val v;
    int rc = mdb_cursor_get(view->rev, &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(view->rev, &k, &v, MDB_NEXT)) {
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
        if (main <= compact) {
            bool keep;
            /* mvcc_dup_at moves the kidx cursor only; rev stays put */
            fl_err err = survives(view, &rec, main, sub, compact, &keep);
            if (err != FL_OK) {
                return err;
            }
            if (!keep) {
                continue;
            }
        }
        crc = crc_u64(crc, (uint64_t)main);
        crc = crc_u64(crc, (uint64_t)sub);
        uint8_t tomb = (rec.flags & MVCC_VF_TOMBSTONE) ? 1 : 0;
        crc = fl_crc32c(crc, &tomb, 1);
        crc = crc_u64(crc, (uint64_t)rec.create);
        crc = crc_u64(crc, (uint64_t)rec.version);
        crc = crc_u64(crc, (uint64_t)rec.lease);
        crc = crc_u64(crc, rec.key_len);
        crc = fl_crc32c(crc, rec.key, rec.key_len);
        crc = crc_u64(crc, rec.value_len);
        if (rec.value_len > 0) {
            crc = fl_crc32c(crc, rec.value, rec.value_len);
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc_lmdb_err(rc);
    }
    *out = crc;
    return FL_OK;
}

fl_err mvcc_hash_kv(mvcc_store *store, int64_t revision, uint32_t *hash, int64_t *compact_revision,
                    int64_t *hash_revision)
{
    *hash = 0;
    *compact_revision = 0;
    *hash_revision = 0;
    mvcc_reader *r;
    fl_err err = mvcc_reader_get(store, &r);
    if (err != FL_OK) {
        return err;
    }
    int64_t current = r->state.current_revision;
    int64_t compact = r->state.compact_revision; /* -1: none */
    *compact_revision = compact < 0 ? 0 : compact;
    if (revision < 0) {
        err = FL_ERR_INVALID;
    } else if (revision > 0 && revision <= compact) {
        err = FL_ERR_COMPACTED;
    } else if (revision > current) {
        err = FL_ERR_FUTURE_REV;
    } else {
        int64_t rev = revision == 0 ? current : revision;
        err = hash_upto(&r->view, rev, compact, hash);
        if (err == FL_OK) {
            *hash_revision = rev; /* the revision hashed up to (etcd 3.5 hash_revision) */
        }
    }
    mvcc_reader_put(store, r);
    return err;
}

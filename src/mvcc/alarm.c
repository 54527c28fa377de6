/* mvcc/alarm: the replicated alarm set (etcd's alarmStore).
 *
 * One record per active alarm in the meta DB: "alarm/" + member id (u64 BE)
 * + alarm type (u8) -> empty, so the set is part of every snapshot and
 * changes in the same txn as the applied index. The count of active NOSPACE
 * alarms is kept in mvcc_state (not stored: recounted at open), so the
 * capped-applier check costs nothing per apply.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc/internal.h"
#include "util/log.h"

#define ALARM_PREFIX     "alarm/"
#define ALARM_PREFIX_LEN (sizeof ALARM_PREFIX - 1)
#define ALARM_KEY_LEN    (ALARM_PREFIX_LEN + 8 + 1)

static void alarm_key(uint8_t out[ALARM_KEY_LEN], uint64_t member_id, mvcc_alarm_type alarm)
{
    memcpy(out, ALARM_PREFIX, ALARM_PREFIX_LEN);
    mvcc_put_u64(out + ALARM_PREFIX_LEN, member_id);
    out[ALARM_PREFIX_LEN + 8] = (uint8_t)alarm;
}

static const char *alarm_name(mvcc_alarm_type alarm)
{
    return alarm == MVCC_ALARM_NOSPACE ? "NOSPACE" : alarm == MVCC_ALARM_CORRUPT ? "CORRUPT" : "?";
}

fl_err mvcc_apply_alarm(mvcc_store *store, const mvcc_alarm_req *req, mvcc_alarm_result *result)
{
    assert(store->wtxn != NULL);
    /* the decoder admits only known actions and types */
    assert(req->alarm == MVCC_ALARM_NOSPACE || req->alarm == MVCC_ALARM_CORRUPT);
    result->changed = false;
    uint8_t kb[ALARM_KEY_LEN];
    alarm_key(kb, req->member_id, req->alarm);
    MDB_val k = {sizeof kb, kb};
    int rc;
    if (req->action == MVCC_ALARM_ACTIVATE) {
        MDB_val v = {0, NULL};
        rc = mdb_put(store->wtxn, store->dbi_meta, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            return FL_OK;
        }
    } else {
        assert(req->action == MVCC_ALARM_DEACTIVATE);
        rc = mdb_del(store->wtxn, store->dbi_meta, &k, NULL);
        if (rc == MDB_NOTFOUND) {
            return FL_OK;
        }
    }
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    result->changed = true;
    if (req->alarm == MVCC_ALARM_NOSPACE) {
        if (req->action == MVCC_ALARM_ACTIVATE) {
            store->work.nospace_alarms++;
        } else {
            assert(store->work.nospace_alarms > 0);
            store->work.nospace_alarms--;
        }
    }
    FL_LOG_WARNF("mvcc", req->action == MVCC_ALARM_ACTIVATE ? "alarm raised" : "alarm disarmed",
                 "alarm=%s member_id=%016llx", alarm_name(req->alarm),
                 (unsigned long long)req->member_id);
    return FL_OK;
}

/* Calls fn for every alarm record in txn, in key order. */
static fl_err alarm_walk(const mvcc_store *store, MDB_txn *txn,
                         fl_err (*fn)(void *ctx, uint64_t member_id, mvcc_alarm_type alarm),
                         void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store->dbi_meta, &cur);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    MDB_val k = {ALARM_PREFIX_LEN, (void *)ALARM_PREFIX};
    MDB_val v;
    fl_err err = FL_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && err == FL_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < ALARM_PREFIX_LEN ||
            memcmp(k.mv_data, ALARM_PREFIX, ALARM_PREFIX_LEN) != 0) {
            break;
        }
        const uint8_t *p = k.mv_data;
        uint8_t type = k.mv_size == ALARM_KEY_LEN ? p[ALARM_PREFIX_LEN + 8] : 0;
        if (type != MVCC_ALARM_NOSPACE && type != MVCC_ALARM_CORRUPT) {
            err = FL_ERR_CORRUPT;
            break;
        }
        err = fn(ctx, mvcc_get_u64(p + ALARM_PREFIX_LEN), (mvcc_alarm_type)type);
    }
    mdb_cursor_close(cur);
    if (err == FL_OK && rc != 0 && rc != MDB_NOTFOUND) {
        err = mvcc_lmdb_err(rc);
    }
    return err;
}

static fl_err count_nospace(void *ctx, uint64_t member_id, mvcc_alarm_type alarm)
{
    (void)member_id;
    uint32_t *n = ctx;
    if (alarm == MVCC_ALARM_NOSPACE) {
        (*n)++;
    }
    return FL_OK;
}

fl_err mvcc_alarm_count_nospace(const mvcc_store *store, MDB_txn *txn, uint32_t *count)
{
    *count = 0;
    return alarm_walk(store, txn, count_nospace, count);
}

typedef struct alarm_list {
    mvcc_alarm *items; /* owned until handed to the caller */
    size_t count;
    size_t capacity;
} alarm_list;

static fl_err collect(void *ctx, uint64_t member_id, mvcc_alarm_type alarm)
{
    alarm_list *l = ctx;
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 4;
        mvcc_alarm *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            return FL_ERR_NOMEM;
        }
        l->items = items;
        l->capacity = cap;
    }
    l->items[l->count++] = (mvcc_alarm){.member_id = member_id, .alarm = alarm};
    return FL_OK;
}

fl_err mvcc_alarms(mvcc_store *store, mvcc_alarm **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    mvcc_reader *r;
    fl_err err = mvcc_reader_get(store, &r);
    if (err != FL_OK) {
        return err;
    }
    alarm_list l = {0};
    err = alarm_walk(store, r->txn, collect, &l);
    mvcc_reader_put(store, r);
    if (err != FL_OK) {
        free(l.items);
        return err;
    }
    *out = l.items; /* ownership passes to the caller */
    *count = l.count;
    return FL_OK;
}

/* mvcc/internal: what the files of the mvcc module share; not a contract.
 *
 * Schema on LMDB (docs/mvcc.md has the long version):
 *   "rev"  key (main u64 BE, sub u64 BE) -> record: one version of one key
 *          (a put or a tombstone), with the full user key and the value.
 *   "kidx" DUPSORT|DUPFIXED, key = ikey (the user key, or for long keys its
 *          first MVCC_IKEY_PREFIX bytes + a u64 sequence) -> one 33-byte
 *          entry per version, newest first (inverted revision).
 *   "meta" "state" -> format, applied index, current/compact revision, the
 *          next long-key sequence, the compaction walk position.
 */
#ifndef FL_MVCC_INTERNAL_H
#define FL_MVCC_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mvcc/arena.h"
#include "mvcc/mvcc.h"

/* User keys up to this length are their own ikey. Longer ones are stored
 * under prefix + sequence (len MVCC_IKEY_LONG), which fits LMDB's default
 * 511-byte key limit. */
#define MVCC_IKEY_PREFIX 480
#define MVCC_IKEY_LONG   (MVCC_IKEY_PREFIX + 8)

/* 2 added the logical byte count to the state record; a format 1 store is
 * upgraded at open (the count is recomputed from the rev DB). */
#define MVCC_FORMAT_VERSION 2

/* Logical bytes of one stored version, for the quota: its rev record, its
 * kidx entry and a fixed overhead (LMDB node headers, page slack). Part of
 * the replicated behaviour: every member must use the same value. */
#define MVCC_VERSION_OVERHEAD       64
#define MVCC_VERSION_BYTES(rec_len) ((uint64_t)(rec_len) + MVCC_DUP_LEN + MVCC_VERSION_OVERHEAD)

/* Flags of a version (in both the rev record and the kidx entry). */
#define MVCC_VF_TOMBSTONE 0x01u
#define MVCC_VF_LONGKEY   0x02u

#define MVCC_REVKEY_LEN 16
#define MVCC_DUP_LEN    33
/* Rev record: flags u8, create i64, version i64, lease i64, [seq u64 if long],
 * key_len u32, key, value. */
#define MVCC_REC_FIXED 29

/* The counters an apply moves; a copy is kept for the committed state. */
typedef struct mvcc_state {
    uint64_t applied_index;
    int64_t current_revision;
    int64_t compact_revision; /* -1 until the first compaction, as etcd */
    uint64_t next_long_seq;
    /* Where the physical compaction walk resumes in the rev DB (main 0 =
     * nothing pending); it runs up to compact_revision. */
    uint64_t compact_scan_main;
    uint64_t compact_scan_sub;
    /* The quota's measure: MVCC_VERSION_BYTES of every version stored
     * (added by writes, removed by physical compaction). A function of the
     * log only, unlike LMDB's page counts. */
    uint64_t logical_bytes;
    /* Active NOSPACE alarms. Not in the state record: derived from the
     * alarm records (alarm.c) and recounted at open. */
    uint32_t nospace_alarms;
} mvcc_state;

/* One version as read from the kidx entry. */
typedef struct mvcc_dup {
    int64_t main;
    int64_t sub;
    uint8_t flags;
    int64_t create;
    int64_t version;
} mvcc_dup;

/* One version as read from the rev record (pointers into LMDB memory). */
typedef struct mvcc_rec {
    uint8_t flags;
    int64_t create;
    int64_t version;
    int64_t lease;
    uint64_t seq;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
} mvcc_rec;

/* A key live at the revision a scan looks at. key points into LMDB memory
 * (valid until the next write in the txn); rec is filled on demand. */
typedef struct mvcc_hit {
    const uint8_t *key;
    size_t key_len;
    mvcc_dup dup;
    bool has_rec;
    mvcc_rec rec;
} mvcc_hit;

/* A growable array of hits, reused across requests. */
typedef struct mvcc_hits {
    mvcc_hit *items;
    size_t count;
    size_t capacity;
} mvcc_hits;

/* Everything a read or write needs about one LMDB transaction. */
typedef struct mvcc_view {
    MDB_txn *txn;
    MDB_cursor *kidx; /* cursor on kidx */
    MDB_cursor *rev;  /* cursor on rev */
    MDB_dbi dbi_rev;
    MDB_dbi dbi_kidx;
    mvcc_hits *hits; /* the scan buffer of whoever owns the txn */
} mvcc_view;

struct mvcc_store {
    MDB_env *env;
    MDB_dbi dbi_rev;
    MDB_dbi dbi_kidx;
    MDB_dbi dbi_meta;
    uint64_t quota_bytes;
    uint64_t map_size; /* for the "map full" log */
    size_t page_size;
    int64_t compact_chunk; /* work units of a Compact's own apply */

    mvcc_state committed; /* what LMDB holds (applier thread only) */
    mvcc_state work;      /* what the open write txn holds (applier only) */

    /* Held around mdb_txn_commit and the update of committed, so whoever
     * holds it sees no commit happen and may read committed
     * (mvcc_snapshot_write pins the state its copy reads this way). Lock
     * order: commit_mu, then pub_mu. */
    pthread_mutex_t commit_mu;
    /* Guards published and the writer fields: what other threads may read. */
    pthread_mutex_t pub_mu;
    mvcc_state published; /* = committed, the getters' fallback */
    bool writer_active;   /* a write txn is open, on thread `writer` */
    pthread_t writer;
    bool mutexes_ready; /* for mvcc_close after a failed open */

    /* The write txn: open during a batch, or within one apply. */
    MDB_txn *wtxn;
    mvcc_view wview;
    bool in_batch;
    fl_err batch_error; /* a failed LMDB call poisoned the batch */

    /* Idle readers (store.c), guarded by pool_mu. */
    pthread_mutex_t pool_mu;
    struct mvcc_reader *pool;
    size_t pool_count;

    mvcc_arena *scratch; /* reset per apply (applier only) */
    mvcc_hits hits;      /* the write txn's scans (applier only) */
};

/* ---- compares (one copy for range, txn and validate) ------------------ */

static inline int mvcc_i64_cmp(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Byte strings in etcd's order (bytes.Compare): -1, 0 or 1. */
static inline int mvcc_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* ---- store.c ----------------------------------------------------------- */

/* A read txn with its cursors and scan buffer, for one read call on any
 * thread. It reads the state record from its own txn, so the revisions it
 * answers with belong to the snapshot it reads. */
typedef struct mvcc_reader {
    MDB_txn *txn;
    mvcc_view view;
    mvcc_hits hits;
    mvcc_state state; /* the committed state this txn sees */
    struct mvcc_reader *next;
} mvcc_reader;

/* Takes a reader with a live txn on the last committed state; give it back
 * with mvcc_reader_put. Any thread. */
fl_err mvcc_reader_get(mvcc_store *store, mvcc_reader **out);
void mvcc_reader_put(mvcc_store *store, mvcc_reader *r);

/* The key of the state record in the meta DB. */
extern const char MVCC_STATE_KEY[];
/* Parses the state record; *upgrade tells that it is format 1 (no logical
 * byte count yet). FL_ERR_CORRUPT if it is not a state record. */
fl_err mvcc_state_decode(const MDB_val *v, mvcc_state *st, bool *upgrade);

/* ---- schema.c ---------------------------------------------------------- */

fl_err mvcc_lmdb_err(int rc);
/* Set by mvcc_lmdb_err on MDB_MAP_FULL (which it maps to FL_ERR_IO), so the
 * store can log it with its sizes; per thread, as LMDB writes are. */
extern _Thread_local bool mvcc_map_full_seen;
void mvcc_put_u64(uint8_t *out, uint64_t v);
uint64_t mvcc_get_u64(const uint8_t *in);
void mvcc_revkey(uint8_t out[MVCC_REVKEY_LEN], int64_t main, int64_t sub);
void mvcc_dup_encode(uint8_t out[MVCC_DUP_LEN], const mvcc_dup *dup);
void mvcc_dup_decode(const uint8_t in[MVCC_DUP_LEN], mvcc_dup *dup);
/* Parses a rev record; false if it is malformed (corruption). */
bool mvcc_rec_decode(const void *data, size_t len, mvcc_rec *rec);
/* Reads the record of version (main, sub); FL_ERR_CORRUPT if it is missing. */
fl_err mvcc_rec_get(const mvcc_view *view, int64_t main, int64_t sub, mvcc_rec *rec);

/* Finds the ikey of `key`. On FL_OK *known tells whether the ikey is known:
 * always for a short key (the key itself; it may still have no version), and
 * for a long key only if it has a version. out (MVCC_IKEY_LONG bytes)
 * receives the ikey and *ikey_len its length. */
fl_err mvcc_ikey_find(const mvcc_view *view, const uint8_t *key, size_t key_len, uint8_t *out,
                      size_t *ikey_len, bool *known);
/* The version of the key at ikey visible at revision rev (the newest with
 * main <= rev); *found false if none. rev INT64_MAX = newest. */
fl_err mvcc_dup_at(const mvcc_view *view, const uint8_t *ikey, size_t ikey_len, int64_t rev,
                   mvcc_dup *dup, bool *found);

/* ---- range.c ----------------------------------------------------------- */

/* Collects into store->hits every key in [key, range_end) (etcd's rules for
 * range_end) that is live at rev (INT64_MAX = newest), in key order. Only the
 * first max_keep hits are kept (SIZE_MAX = all); *total counts all of them. */
fl_err mvcc_scan(mvcc_store *store, const mvcc_view *view, mvcc_bytes key, mvcc_bytes range_end,
                 int64_t rev, size_t max_keep, int64_t *total);
/* Frees the hit array after a very large scan so it does not stay pinned. */
void mvcc_hits_trim(mvcc_hits *hits);
/* A Range against view. current is the revision reads default to and the
 * one reported; compact the compacted revision (-1 none). Memory of the kvs
 * comes from arena. */
fl_err mvcc_range_in(mvcc_store *store, const mvcc_view *view, const mvcc_range_req *req,
                     int64_t current, int64_t compact, mvcc_arena *arena,
                     mvcc_range_result *result);
/* Copies a record into an owned kv. */
fl_err mvcc_kv_fill(mvcc_arena *arena, const mvcc_rec *rec, int64_t mod_revision, bool keys_only,
                    mvcc_kv *kv);

/* ---- write.c ----------------------------------------------------------- */

/* A write txn in progress: one main revision, sub revisions counted up. */
typedef struct mvcc_wctx {
    mvcc_store *store;
    const mvcc_view *view;
    int64_t begin_revision; /* the current revision before this command */
    int64_t sub;            /* changes made so far = next sub revision */
    mvcc_arena *arena;      /* response memory */
} mvcc_wctx;

/* The single place that decides whether a lease exists. There is no lease
 * table yet: every nonzero lease is unknown. The lease issue replaces this. */
fl_err mvcc_lease_check(mvcc_store *store, int64_t lease);

/* Writes a put at (begin+1, sub++). ignore_* use the current value/lease;
 * when the key is absent they fall back to empty value / no lease (the
 * caller checked existence before). prev (may be NULL) gets the old kv. */
fl_err mvcc_write_put(mvcc_wctx *w, const mvcc_put_req *req, mvcc_put_result *result);
fl_err mvcc_write_delete(mvcc_wctx *w, const mvcc_delete_req *req, mvcc_delete_result *result);
/* FL_ERR_NOT_FOUND for a put with ignore_value/ignore_lease on a key that
 * has no live version (etcd's rule, for Put and for a txn's puts). */
fl_err mvcc_put_check_exists(mvcc_wctx *w, const mvcc_put_req *req);
/* A top-level Put with etcd's checks (lease, key not found). */
fl_err mvcc_apply_put(mvcc_wctx *w, const mvcc_put_req *req, mvcc_put_result *result);

/* ---- txn.c ------------------------------------------------------------- */

fl_err mvcc_apply_txn(mvcc_wctx *w, const mvcc_txn_req *req, mvcc_txn_result *result);

/* ---- compact.c --------------------------------------------------------- */

/* Compact(revision): the checks, then a first step of up to budget units. */
fl_err mvcc_apply_compact(mvcc_store *store, const mvcc_view *view, int64_t revision,
                          int64_t budget);
/* Up to budget units of pending physical compaction (nothing if none). */
fl_err mvcc_compact_step(mvcc_store *store, const mvcc_view *view, int64_t budget);

/* ---- alarm.c ----------------------------------------------------------- */

/* Applies an alarm command in the open write txn. */
fl_err mvcc_apply_alarm(mvcc_store *store, const mvcc_alarm_req *req, mvcc_alarm_result *result);
/* Counts the active NOSPACE alarms in txn. */
fl_err mvcc_alarm_count_nospace(const mvcc_store *store, MDB_txn *txn, uint32_t *count);

/* ---- codec.c ----------------------------------------------------------- */

/* Decodes payload into *out; arrays come from arena, byte strings point into
 * payload. FL_ERR_CORRUPT on anything malformed. */
fl_err mvcc_request_decode(const uint8_t *payload, size_t len, mvcc_arena *arena,
                           mvcc_request *out);

#endif

/* mvcc/store: the LMDB environment, the applied index, batches and the
 * dispatch of commands.
 *
 * Transactions: every apply runs in the store's write txn; outside a batch
 * that txn is opened and committed around the one apply, inside a batch it
 * stays open until mvcc_batch_commit, and the meta record (applied index,
 * revisions) is written once, at commit. Cursors on the write txn are opened
 * once per txn. Reads (mvcc_range) use one read txn that is reset and
 * renewed per call, with its cursors renewed rather than reopened.
 *
 * Errors: a request-level error (compacted, future revision, lease not
 * found, key not found, quota, corrupt payload) happens before any write, so
 * the txn stays good and the applied index advances. An LMDB failure breaks
 * the txn: outside a batch it is aborted, inside a batch it poisons the
 * batch, which mvcc_batch_commit then reports. A full LMDB map is such a
 * failure (FL_ERR_IO), never "applied with no effect": whether the map
 * fills is not a function of the log.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "mvcc/internal.h"
#include "util/log.h"

#define DEFAULT_MAP_SIZE      (8ull << 30)
#define DEFAULT_QUOTA         (2ull << 30)
#define STATE_LEN_V1          52
#define STATE_LEN             60
#define DEFAULT_COMPACT_CHUNK 10000
/* Idle readers kept for reuse (more may exist while reads run). */
#define READER_POOL_MAX 8
/* Server metadata names: short, so "srv/" + name is a valid LMDB key. */
#define META_NAME_MAX  200
#define META_VALUE_MAX (64u << 10)
/* A commit that fails with EIO while the file system has less than this
 * free is reported as FL_ERR_NOSPACE (see commit_err). Generous because other
 * writers on the same file system (the WAL cutting a failed append back) may
 * free some space between LMDB's failure and the check. */
#define DISK_FULL_SLACK_BYTES (64ull << 20)

const char MVCC_STATE_KEY[] = "state";

static void readers_free(mvcc_store *store);
static const char META_PREFIX[] = "srv/";

static void state_encode(uint8_t out[STATE_LEN], const mvcc_state *st)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = 0;
    out[3] = MVCC_FORMAT_VERSION;
    mvcc_put_u64(out + 4, st->applied_index);
    mvcc_put_u64(out + 12, (uint64_t)st->current_revision);
    mvcc_put_u64(out + 20, (uint64_t)st->compact_revision);
    mvcc_put_u64(out + 28, st->next_long_seq);
    mvcc_put_u64(out + 36, st->compact_scan_main);
    mvcc_put_u64(out + 44, st->compact_scan_sub);
    mvcc_put_u64(out + 52, st->logical_bytes);
}

/* *upgrade is set for a format 1 record, which has no logical byte count
 * (the caller recounts it). */
fl_err mvcc_state_decode(const MDB_val *v, mvcc_state *st, bool *upgrade)
{
    const uint8_t *p = v->mv_data;
    *upgrade = false;
    if (v->mv_size < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0) {
        return FL_ERR_CORRUPT;
    }
    if (p[3] == 1 && v->mv_size == STATE_LEN_V1) {
        *upgrade = true;
    } else if (p[3] != MVCC_FORMAT_VERSION) {
        FL_LOG_ERRORF("mvcc", "unknown store format", "format=%u", p[3]);
        return FL_ERR_CORRUPT;
    } else if (v->mv_size != STATE_LEN) {
        return FL_ERR_CORRUPT;
    }
    st->applied_index = mvcc_get_u64(p + 4);
    st->current_revision = (int64_t)mvcc_get_u64(p + 12);
    st->compact_revision = (int64_t)mvcc_get_u64(p + 20);
    st->next_long_seq = mvcc_get_u64(p + 28);
    st->compact_scan_main = mvcc_get_u64(p + 36);
    st->compact_scan_sub = mvcc_get_u64(p + 44);
    st->logical_bytes = *upgrade ? 0 : mvcc_get_u64(p + 52);
    if (st->current_revision < 1 || st->compact_revision < -1 ||
        st->compact_revision > st->current_revision) {
        return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

static fl_err state_write(mvcc_store *store)
{
    uint8_t buf[STATE_LEN];
    state_encode(buf, &store->work);
    MDB_val k = {sizeof MVCC_STATE_KEY - 1, (void *)MVCC_STATE_KEY};
    MDB_val v = {sizeof buf, buf};
    return mvcc_lmdb_err(mdb_put(store->wtxn, store->dbi_meta, &k, &v, 0));
}

/* ---- write txn ----------------------------------------------------------- */

static fl_err write_begin(mvcc_store *store)
{
    if (store->wtxn != NULL) {
        return FL_OK;
    }
    mvcc_map_full_seen = false; /* a leftover from outside a write txn */
    int rc = mdb_txn_begin(store->env, NULL, 0, &store->wtxn);
    if (rc != 0) {
        store->wtxn = NULL;
        return mvcc_lmdb_err(rc);
    }
    mvcc_view *v = &store->wview;
    v->txn = store->wtxn;
    v->dbi_rev = store->dbi_rev;
    v->dbi_kidx = store->dbi_kidx;
    v->hits = &store->hits;
    rc = mdb_cursor_open(store->wtxn, store->dbi_kidx, &v->kidx);
    if (rc == 0) {
        rc = mdb_cursor_open(store->wtxn, store->dbi_rev, &v->rev);
    }
    if (rc != 0) {
        mdb_txn_abort(store->wtxn); /* closes the cursors too */
        store->wtxn = NULL;
        return mvcc_lmdb_err(rc);
    }
    store->work = store->committed;
    pthread_mutex_lock(&store->pub_mu);
    store->writer = pthread_self();
    store->writer_active = true;
    pthread_mutex_unlock(&store->pub_mu);
    return FL_OK;
}

static void writer_clear(mvcc_store *store)
{
    pthread_mutex_lock(&store->pub_mu);
    store->writer_active = false;
    pthread_mutex_unlock(&store->pub_mu);
}

static void write_abort(mvcc_store *store)
{
    if (store->wtxn != NULL) {
        mdb_txn_abort(store->wtxn); /* write-txn cursors go with it */
        store->wtxn = NULL;
        writer_clear(store);
    }
    memset(&store->wview, 0, sizeof store->wview);
    store->work = store->committed;
}

/* The error of a failed mdb_txn_commit. LMDB reports a short write of its
 * pages as EIO ("TODO: Use which error code?" in mdb_page_flush), and a full
 * disk gives exactly that: pwritev writes up to the last free block and
 * returns short. Calling that an I/O error would make the server give up on
 * a condition that freeing space cures, so an EIO on a file system that is
 * (nearly) full is reported as FL_ERR_NOSPACE. */
static fl_err commit_err(mvcc_store *store, int rc)
{
    if (rc == EIO) {
        mdb_filehandle_t fd;
        struct statvfs vfs;
        if (mdb_env_get_fd(store->env, &fd) == 0 && fstatvfs(fd, &vfs) == 0 &&
            (uint64_t)vfs.f_bavail * vfs.f_frsize < DISK_FULL_SLACK_BYTES) {
            FL_LOG_WARNF("mvcc", "lmdb commit failed: file system full", "free_bytes=%llu",
                         (unsigned long long)vfs.f_bavail * vfs.f_frsize);
            return FL_ERR_NOSPACE;
        }
    }
    return mvcc_lmdb_err(rc);
}

/* Logs a full map behind a store failure, with what the operator needs. */
static void log_map_full(const mvcc_store *store)
{
    if (!mvcc_map_full_seen) {
        return;
    }
    mvcc_map_full_seen = false;
    FL_LOG_ERRORF("mvcc", "LMDB map full",
                  "map_size=%llu quota=%llu logical_bytes=%llu hint=\"the LMDB map must hold "
                  "the quota plus free pages held by readers: raise the map size "
                  "(mvcc_options.map_size_bytes) or lower the quota, and restart\"",
                  (unsigned long long)store->map_size, (unsigned long long)store->quota_bytes,
                  (unsigned long long)store->work.logical_bytes);
}

static fl_err write_commit(mvcc_store *store)
{
    assert(store->wtxn != NULL);
    fl_err err = state_write(store);
    if (err != FL_OK) {
        log_map_full(store);
        write_abort(store);
        return err;
    }
    pthread_mutex_lock(&store->commit_mu);
    int rc = mdb_txn_commit(store->wtxn);
    if (rc == 0) {
        store->committed = store->work;
    }
    pthread_mutex_lock(&store->pub_mu);
    store->published = store->committed;
    store->writer_active = false;
    pthread_mutex_unlock(&store->pub_mu);
    pthread_mutex_unlock(&store->commit_mu);
    store->wtxn = NULL;
    memset(&store->wview, 0, sizeof store->wview);
    if (rc != 0) {
        fl_err cerr = commit_err(store, rc);
        log_map_full(store);
        store->work = store->committed;
        return cerr;
    }
    return FL_OK;
}

/* ---- open / close --------------------------------------------------------- */

/* The logical byte count of a format 1 store: every version in rev. A
 * function of the stored versions only, so every member gets the same. */
static fl_err count_logical_bytes(const mvcc_store *store, MDB_txn *txn, uint64_t *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store->dbi_rev, &cur);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    uint64_t total = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        total += MVCC_VERSION_BYTES(v.mv_size);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        return mvcc_lmdb_err(rc);
    }
    *out = total;
    return FL_OK;
}

static fl_err open_dbs(mvcc_store *store)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    rc = mdb_dbi_open(txn, "rev", MDB_CREATE, &store->dbi_rev);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "kidx", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &store->dbi_kidx);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &store->dbi_meta);
    }
    fl_err err = mvcc_lmdb_err(rc);
    if (err == FL_OK) {
        MDB_val k = {sizeof MVCC_STATE_KEY - 1, (void *)MVCC_STATE_KEY};
        MDB_val v;
        rc = mdb_get(txn, store->dbi_meta, &k, &v);
        bool upgrade = false;
        if (rc == 0) {
            err = mvcc_state_decode(&v, &store->committed, &upgrade);
        }
        if (rc == 0 && err != FL_OK) {
            FL_LOG_ERRORF("mvcc", "bad state record", "len=%zu", v.mv_size);
        } else if (rc == 0 && !upgrade) {
            /* the usual case: nothing to do */
        } else if (rc == 0) {
            err = count_logical_bytes(store, txn, &store->committed.logical_bytes);
            if (err == FL_OK) {
                uint8_t buf[STATE_LEN];
                state_encode(buf, &store->committed);
                MDB_val nv = {sizeof buf, buf};
                err = mvcc_lmdb_err(mdb_put(txn, store->dbi_meta, &k, &nv, 0));
                FL_LOG_INFOF("mvcc", "store upgraded to format 2", "logical_bytes=%llu",
                             (unsigned long long)store->committed.logical_bytes);
            }
        } else if (rc == MDB_NOTFOUND) {
            /* A new store: revision 1 and nothing compacted, as etcd. */
            store->committed = (mvcc_state){.applied_index = 0,
                                            .current_revision = 1,
                                            .compact_revision = -1,
                                            .next_long_seq = 1};
            uint8_t buf[STATE_LEN];
            state_encode(buf, &store->committed);
            MDB_val nv = {sizeof buf, buf};
            err = mvcc_lmdb_err(mdb_put(txn, store->dbi_meta, &k, &nv, 0));
        } else {
            err = mvcc_lmdb_err(rc);
        }
    }
    if (err == FL_OK) {
        err = mvcc_alarm_count_nospace(store, txn, &store->committed.nospace_alarms);
    }
    if (err != FL_OK) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    store->work = store->committed;
    store->published = store->committed;
    return FL_OK;
}

fl_err mvcc_open(const char *dir, const mvcc_options *options, mvcc_store **out)
{
    *out = NULL;
    mvcc_store *store = calloc(1, sizeof *store); /* owned by the caller via mvcc_close */
    if (store == NULL) {
        return FL_ERR_NOMEM;
    }
    uint64_t map_size =
        options && options->map_size_bytes ? options->map_size_bytes : DEFAULT_MAP_SIZE;
    store->quota_bytes = options && options->quota_bytes ? options->quota_bytes : DEFAULT_QUOTA;
    store->compact_chunk =
        options && options->compact_chunk ? (int64_t)options->compact_chunk : DEFAULT_COMPACT_CHUNK;
    if (!(options && options->map_size_bytes) && map_size < store->quota_bytes / 4 * 5) {
        /* Room for the quota plus free pages held by readers. */
        map_size = store->quota_bytes / 4 * 5;
    }
    store->map_size = map_size;
    store->scratch = mvcc_arena_new();
    if (store->scratch == NULL) {
        free(store);
        return FL_ERR_NOMEM;
    }
    int mu = pthread_mutex_init(&store->commit_mu, NULL);
    if (mu == 0) {
        mu = pthread_mutex_init(&store->pub_mu, NULL);
        if (mu == 0) {
            mu = pthread_mutex_init(&store->pool_mu, NULL);
            if (mu != 0) {
                pthread_mutex_destroy(&store->pub_mu);
            }
        }
        if (mu != 0) {
            pthread_mutex_destroy(&store->commit_mu);
        }
    }
    if (mu != 0) {
        mvcc_arena_free(store->scratch);
        free(store);
        return FL_ERR_NOMEM;
    }
    store->mutexes_ready = true;
    int rc = mdb_env_create(&store->env);
    if (rc != 0) {
        store->env = NULL;
        mvcc_close(store);
        return mvcc_lmdb_err(rc);
    }
    rc = mdb_env_set_maxdbs(store->env, 4);
    if (rc == 0) {
        rc = mdb_env_set_mapsize(store->env, (size_t)map_size);
    }
    if (rc == 0) {
        /* By default the WAL is the durable record: no fsync here. With
         * durable_commits every commit fsyncs the data pages but not the
         * meta page (MDB_NOMETASYNC): LMDB then keeps its integrity through
         * a power loss, which may only undo the last commit. NOTLS: read
         * txns are not tied to threads (readers are pooled, and a thread
         * may read while it has the write txn open). */
        unsigned sync = options && options->durable_commits ? MDB_NOMETASYNC : MDB_NOSYNC;
        rc = mdb_env_open(store->env, dir, sync | MDB_NOTLS, 0600);
    }
    fl_err err = mvcc_lmdb_err(rc);
    if (err == FL_OK && mdb_env_get_maxkeysize(store->env) < MVCC_IKEY_LONG) {
        FL_LOG_ERRORF("mvcc", "lmdb max key size too small", "have=%d need=%d",
                      mdb_env_get_maxkeysize(store->env), MVCC_IKEY_LONG);
        err = FL_ERR_INVALID;
    }
    if (err == FL_OK) {
        MDB_stat st;
        rc = mdb_env_stat(store->env, &st);
        store->page_size = st.ms_psize;
        err = mvcc_lmdb_err(rc);
    }
    if (err == FL_OK) {
        err = open_dbs(store);
    }
    if (err != FL_OK) {
        FL_LOG_ERRORF("mvcc", "open failed", "dir=\"%s\" err=%s", dir, fl_err_name(err));
        mvcc_close(store);
        return err;
    }
    *out = store;
    return FL_OK;
}

void mvcc_close(mvcc_store *store)
{
    if (store == NULL) {
        return;
    }
    write_abort(store);
    readers_free(store);
    if (store->env != NULL) {
        /* A clean close makes the last applies durable; replay is shorter. */
        mdb_env_sync(store->env, 1);
        mdb_env_close(store->env);
    }
    if (store->mutexes_ready) {
        pthread_mutex_destroy(&store->pool_mu);
        pthread_mutex_destroy(&store->pub_mu);
        pthread_mutex_destroy(&store->commit_mu);
    }
    mvcc_arena_free(store->scratch);
    free(store->hits.items);
    free(store);
}

fl_err mvcc_sync(mvcc_store *store)
{
    assert(store != NULL && store->env != NULL);
    /* store->env is set once by mvcc_open and read-only until mvcc_close, so
     * reading it here from another thread races with nothing. */
    int rc = mdb_env_sync(store->env, 1);
    if (rc == 0) {
        return FL_OK;
    }
    return rc == ENOSPC ? FL_ERR_NOSPACE : FL_ERR_IO;
}

/* The last committed state, exactly as LMDB shows it to readers: the state
 * record read in a read txn. A copy published after the commit would lag
 * LMDB for a moment, so a getter could report less than a range just
 * read. The published copy is only the fallback when no read txn can be
 * had (reader table full); it is never ahead of LMDB. */
static mvcc_state visible_state(const mvcc_store *store)
{
    mvcc_store *s = (mvcc_store *)store; /* readers and mutex are internal state */
    mvcc_reader *r;
    if (mvcc_reader_get(s, &r) == FL_OK) {
        mvcc_state st = r->state;
        mvcc_reader_put(s, r);
        return st;
    }
    pthread_mutex_lock(&s->pub_mu);
    mvcc_state st = s->published;
    pthread_mutex_unlock(&s->pub_mu);
    return st;
}

uint64_t mvcc_applied_index(const mvcc_store *store)
{
    mvcc_store *s = (mvcc_store *)store;
    pthread_mutex_lock(&s->pub_mu);
    /* The applier with a write txn open sees its own applies (it numbers the
     * next entry from this); work is its own data, so reading it here races
     * with nothing. Everyone else sees the last commit. */
    bool applier = s->writer_active && pthread_equal(s->writer, pthread_self());
    pthread_mutex_unlock(&s->pub_mu);
    return applier ? s->work.applied_index : visible_state(store).applied_index;
}

int64_t mvcc_current_revision(const mvcc_store *store)
{
    return visible_state(store).current_revision;
}

bool mvcc_compaction_pending(const mvcc_store *store)
{
    return visible_state(store).compact_scan_main != 0;
}

int64_t mvcc_compact_revision(const mvcc_store *store)
{
    int64_t rev = visible_state(store).compact_revision;
    return rev < 0 ? 0 : rev;
}

/* ---- readers --------------------------------------------------------------- */

/* Readers are pooled: one is taken per read call (so calls on different
 * threads never share one; LMDB lets a txn move between threads with
 * MDB_NOTLS), reset and renewed rather than reopened. */

static void reader_free(mvcc_reader *r)
{
    if (r == NULL) {
        return;
    }
    /* cursors of a read txn are closed explicitly (LMDB does not) */
    if (r->view.kidx != NULL) {
        mdb_cursor_close(r->view.kidx);
    }
    if (r->view.rev != NULL) {
        mdb_cursor_close(r->view.rev);
    }
    if (r->txn != NULL) {
        mdb_txn_abort(r->txn);
    }
    free(r->hits.items);
    free(r);
}

static void readers_free(mvcc_store *store)
{
    while (store->pool != NULL) {
        mvcc_reader *r = store->pool;
        store->pool = r->next;
        reader_free(r);
    }
    store->pool_count = 0;
}

static fl_err reader_state(mvcc_store *store, mvcc_reader *r)
{
    MDB_val k = {sizeof MVCC_STATE_KEY - 1, (void *)MVCC_STATE_KEY};
    MDB_val v;
    int rc = mdb_get(r->txn, store->dbi_meta, &k, &v);
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? FL_ERR_CORRUPT : mvcc_lmdb_err(rc);
    }
    bool upgrade;
    return mvcc_state_decode(&v, &r->state, &upgrade);
}

fl_err mvcc_reader_get(mvcc_store *store, mvcc_reader **out)
{
    *out = NULL;
    pthread_mutex_lock(&store->pool_mu);
    mvcc_reader *r = store->pool;
    if (r != NULL) {
        store->pool = r->next;
        store->pool_count--;
    }
    pthread_mutex_unlock(&store->pool_mu);
    int rc;
    if (r != NULL) {
        rc = mdb_txn_renew(r->txn);
        if (rc == 0) {
            rc = mdb_cursor_renew(r->txn, r->view.kidx);
        }
        if (rc == 0) {
            rc = mdb_cursor_renew(r->txn, r->view.rev);
        }
    } else {
        r = calloc(1, sizeof *r); /* owned by the pool or the caller */
        if (r == NULL) {
            return FL_ERR_NOMEM;
        }
        rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &r->txn);
        if (rc != 0) {
            r->txn = NULL;
        }
        r->view.txn = r->txn;
        r->view.dbi_rev = store->dbi_rev;
        r->view.dbi_kidx = store->dbi_kidx;
        r->view.hits = &r->hits;
        if (rc == 0) {
            rc = mdb_cursor_open(r->txn, store->dbi_kidx, &r->view.kidx);
        }
        if (rc == 0) {
            rc = mdb_cursor_open(r->txn, store->dbi_rev, &r->view.rev);
        }
    }
    fl_err err = mvcc_lmdb_err(rc);
    if (err == FL_OK) {
        err = reader_state(store, r);
    }
    if (err != FL_OK) {
        reader_free(r); /* whatever failed, start afresh next time */
        return err;
    }
    *out = r;
    return FL_OK;
}

void mvcc_reader_put(mvcc_store *store, mvcc_reader *r)
{
    mdb_txn_reset(r->txn);
    mvcc_hits_trim(&r->hits);
    pthread_mutex_lock(&store->pool_mu);
    bool keep = store->pool_count < READER_POOL_MAX;
    if (keep) {
        r->next = store->pool;
        store->pool = r;
        store->pool_count++;
    }
    pthread_mutex_unlock(&store->pool_mu);
    if (!keep) {
        reader_free(r);
    }
}

fl_err mvcc_range(mvcc_store *store, const mvcc_range_req *req, mvcc_range_result *result)
{
    memset(result, 0, sizeof *result);
    mvcc_arena *arena = mvcc_arena_new(); /* owned by the result on success */
    if (arena == NULL) {
        return FL_ERR_NOMEM;
    }
    mvcc_reader *r;
    fl_err err = mvcc_reader_get(store, &r);
    if (err == FL_OK) {
        err = mvcc_range_in(store, &r->view, req, r->state.current_revision,
                            r->state.compact_revision, arena, result);
        mvcc_reader_put(store, r);
    }
    if (err != FL_OK) {
        mvcc_arena_free(arena);
        memset(result, 0, sizeof *result);
        return err;
    }
    result->arena = arena;
    return FL_OK;
}

static int64_t pages_of(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st) != 0) {
        return 0;
    }
    return (int64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
}

static int64_t bytes_in_use(const mvcc_store *store, MDB_txn *txn)
{
    int64_t pages = pages_of(txn, store->dbi_rev) + pages_of(txn, store->dbi_kidx) +
                    pages_of(txn, store->dbi_meta) + 3; /* 2 meta pages + main DB root */
    return pages * (int64_t)store->page_size;
}

void mvcc_db_size(const mvcc_store *store, int64_t *size_bytes, int64_t *in_use_bytes)
{
    mvcc_store *s = (mvcc_store *)store; /* the reader pool is internal state */
    MDB_envinfo info;
    *size_bytes = 0;
    *in_use_bytes = 0;
    if (mdb_env_info(s->env, &info) == 0) {
        *size_bytes = (int64_t)(info.me_last_pgno + 1) * (int64_t)s->page_size;
    }
    mvcc_reader *r;
    if (mvcc_reader_get(s, &r) == FL_OK) {
        *in_use_bytes = bytes_in_use(s, r->txn);
        mvcc_reader_put(s, r);
    }
}

/* ---- apply --------------------------------------------------------------- */

static uint64_t cost_ops(const mvcc_op *ops, size_t n);

/* What a put adds to the logical byte count (an ignore_value put is
 * charged its request, as etcd charges the request size). */
static uint64_t put_cost(const mvcc_put_req *p)
{
    size_t head = MVCC_REC_FIXED + (p->key.len > MVCC_IKEY_PREFIX ? 8 : 0);
    return MVCC_VERSION_BYTES(head + p->key.len + p->value.len);
}

static uint64_t cost_txn(const mvcc_txn_req *t)
{
    uint64_t a = cost_ops(t->success, t->success_count);
    uint64_t b = cost_ops(t->failure, t->failure_count);
    return a > b ? a : b;
}

static uint64_t cost_ops(const mvcc_op *ops, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == MVCC_OP_PUT) {
            total += put_cost(&ops[i].u.put);
        } else if (ops[i].type == MVCC_OP_TXN && ops[i].u.txn != NULL) {
            total += cost_txn(ops[i].u.txn);
        }
    }
    return total;
}

/* etcd's quota: a put or txn (with puts) that would take the store to the
 * quota or past it fails. Measured in logical bytes (internal.h), part of
 * the replicated state, so every member decides the same way; LMDB's page
 * counts depend on page size, layout and history and could differ. */
static fl_err quota_check(mvcc_store *store, const mvcc_request *req)
{
    uint64_t cost = 0;
    if (req->type == MVCC_REQ_PUT) {
        cost = put_cost(&req->u.put);
    } else if (req->type == MVCC_REQ_TXN) {
        cost = cost_txn(&req->u.txn);
    }
    if (cost == 0) {
        return FL_OK;
    }
    if (store->work.nospace_alarms > 0) {
        /* etcd's capped applier: no puts while space is short */
        return FL_ERR_NO_SPACE_QUOTA;
    }
    uint64_t in_use = store->work.logical_bytes;
    if (in_use >= store->quota_bytes || cost >= store->quota_bytes - in_use) {
        return FL_ERR_NO_SPACE_QUOTA;
    }
    return FL_OK;
}

static bool needs_arena(const mvcc_request *req)
{
    return req->type == MVCC_REQ_TXN || (req->type == MVCC_REQ_PUT && req->u.put.prev_kv) ||
           (req->type == MVCC_REQ_DELETE && req->u.del.prev_kv);
}

/* Runs one decoded command in the open write txn. */
static fl_err run_request(mvcc_store *store, const mvcc_request *req, mvcc_response *resp,
                          bool *request_level)
{
    *request_level = true;
    fl_err err = quota_check(store, req);
    if (err != FL_OK) {
        return err;
    }
    mvcc_arena *arena = NULL;
    if (needs_arena(req)) {
        arena = mvcc_arena_new(); /* owned by the response on success */
        if (arena == NULL) {
            *request_level = false;
            return FL_ERR_NOMEM;
        }
    }
    mvcc_wctx w = {
        .store = store,
        .view = &store->wview,
        .begin_revision = store->work.current_revision,
        .arena = arena,
    };
    resp->type = req->type;
    switch ((int)req->type) {
    case MVCC_REQ_PUT:
        err = mvcc_apply_put(&w, &req->u.put, &resp->u.put);
        break;
    case MVCC_REQ_DELETE:
        err = mvcc_write_delete(&w, &req->u.del, &resp->u.del);
        break;
    case MVCC_REQ_TXN:
        err = mvcc_apply_txn(&w, &req->u.txn, &resp->u.txn);
        break;
    case MVCC_REQ_COMPACT:
        err =
            mvcc_apply_compact(store, &store->wview, req->u.compact.revision, store->compact_chunk);
        break;
    case MVCC_REQ_ALARM:
        err = mvcc_apply_alarm(store, &req->u.alarm, &resp->u.alarm);
        break;
    default:
        err = FL_ERR_CORRUPT;
    }
    if (err != FL_OK) {
        /* Errors from LMDB (or memory) can come after writes: they break the
         * txn. The others are raised before anything is written. */
        *request_level = !(err == FL_ERR_IO || err == FL_ERR_NOSPACE || err == FL_ERR_NOMEM ||
                           err == FL_ERR_CORRUPT || err == FL_ERR_TOO_LARGE);
        assert(!*request_level || w.sub == 0);
        mvcc_arena_free(arena);
        memset(resp, 0, sizeof *resp);
        return err;
    }
    if (w.sub > 0) {
        store->work.current_revision = w.begin_revision + 1;
    }
    resp->revision = store->work.current_revision;
    resp->arena = arena;
    return FL_OK;
}

static int64_t compact_step_budget(const mvcc_store *store)
{
    int64_t budget = store->compact_chunk / 100;
    return budget > 0 ? budget : 1;
}

/* Outside a batch: the entry cannot be applied on any member (a key or
 * value LMDB refuses: a function of the request), so record it as applied
 * with no effect in a txn of its own. */
static fl_err record_index_only(mvcc_store *store, uint64_t index)
{
    fl_err err = write_begin(store);
    if (err != FL_OK) {
        return err;
    }
    store->work.applied_index = index;
    return write_commit(store);
}

/* The applied index as the applier sees it: its own data, no locks. */
static uint64_t own_applied_index(const mvcc_store *store)
{
    return store->wtxn != NULL ? store->work.applied_index : store->committed.applied_index;
}

/* What every entry (command or not) checks first; opens the write txn. */
static fl_err entry_begin(mvcc_store *store, uint64_t index)
{
    if (store->in_batch && store->batch_error != FL_OK) {
        return store->batch_error;
    }
    if (index <= own_applied_index(store)) {
        FL_LOG_WARNF("mvcc", "apply of an old index", "index=%llu applied=%llu",
                     (unsigned long long)index, (unsigned long long)own_applied_index(store));
        return FL_ERR_INVALID;
    }
    return write_begin(store);
}

/* A store failure inside an entry: the txn is gone, a batch is poisoned. */
static fl_err entry_fail(mvcc_store *store, fl_err err)
{
    log_map_full(store);
    write_abort(store);
    if (store->in_batch) {
        store->batch_error = err;
    }
    return err;
}

/* What every entry does last: a step of pending physical compaction (a
 * Compact did its own), the applied index, and outside a batch the commit. */
static fl_err entry_finish(mvcc_store *store, uint64_t index, bool compact_step)
{
    if (compact_step) {
        fl_err err = mvcc_compact_step(store, &store->wview, compact_step_budget(store));
        if (err != FL_OK) {
            return entry_fail(store, err);
        }
    }
    store->work.applied_index = index;
    return store->in_batch ? FL_OK : write_commit(store);
}

fl_err mvcc_apply(mvcc_store *store, uint64_t index, const uint8_t *payload, size_t payload_len,
                  mvcc_response *response)
{
    memset(response, 0, sizeof *response);
    fl_err err = entry_begin(store, index);
    if (err != FL_OK) {
        return err;
    }
    mvcc_arena_reset(store->scratch);
    mvcc_request req;
    bool request_level = true;
    err = mvcc_request_decode(payload, payload_len, store->scratch, &req);
    if (err == FL_OK) {
        err = run_request(store, &req, response, &request_level);
        mvcc_hits_trim(&store->hits);
    } else {
        FL_LOG_WARNF("mvcc", "undecodable entry", "index=%llu len=%zu", (unsigned long long)index,
                     payload_len);
    }
    if (!request_level) {
        if (err == FL_ERR_IO) {
            FL_LOG_ERRORF("mvcc", "apply failed: store failure", "index=%llu",
                          (unsigned long long)index);
        }
        if (!store->in_batch && err == FL_ERR_TOO_LARGE) {
            write_abort(store);
            fl_err rec = record_index_only(store, index);
            return rec == FL_OK ? err : rec;
        }
        return entry_fail(store, err);
    }
    fl_err ferr = entry_finish(store, index, !(err == FL_OK && req.type == MVCC_REQ_COMPACT));
    if (ferr != FL_OK) {
        mvcc_response_free(response);
        return ferr;
    }
    return err;
}

fl_err mvcc_apply_noop(mvcc_store *store, uint64_t index)
{
    fl_err err = entry_begin(store, index);
    return err == FL_OK ? entry_finish(store, index, true) : err;
}

fl_err mvcc_batch_begin(mvcc_store *store)
{
    if (store->in_batch || store->wtxn != NULL) {
        return FL_ERR_INVALID;
    }
    fl_err err = write_begin(store);
    if (err != FL_OK) {
        return err;
    }
    store->in_batch = true;
    store->batch_error = FL_OK;
    return FL_OK;
}

fl_err mvcc_batch_commit(mvcc_store *store)
{
    if (!store->in_batch) {
        return FL_ERR_INVALID;
    }
    store->in_batch = false;
    fl_err err = store->batch_error;
    store->batch_error = FL_OK;
    if (err != FL_OK) {
        write_abort(store);
        return err;
    }
    return write_commit(store);
}

void mvcc_batch_abort(mvcc_store *store)
{
    write_abort(store);
    store->in_batch = false;
    store->batch_error = FL_OK;
}

/* ---- server metadata ------------------------------------------------------ */

static bool meta_key(const char *name, char *buf, size_t cap, MDB_val *k)
{
    size_t n = name != NULL ? strnlen(name, META_NAME_MAX + 1) : 0;
    if (n == 0 || n > META_NAME_MAX || sizeof META_PREFIX - 1 + n > cap) {
        return false;
    }
    memcpy(buf, META_PREFIX, sizeof META_PREFIX - 1);
    memcpy(buf + sizeof META_PREFIX - 1, name, n);
    k->mv_size = sizeof META_PREFIX - 1 + n;
    k->mv_data = buf;
    return true;
}

fl_err mvcc_put_meta(mvcc_store *store, const char *name, const void *value, size_t len)
{
    char kbuf[sizeof META_PREFIX + META_NAME_MAX];
    MDB_val k;
    if (!meta_key(name, kbuf, sizeof kbuf, &k) || len > META_VALUE_MAX ||
        (value == NULL && len > 0)) {
        return FL_ERR_INVALID;
    }
    if (store->in_batch && store->batch_error != FL_OK) {
        return store->batch_error;
    }
    fl_err err = write_begin(store);
    if (err != FL_OK) {
        return err;
    }
    MDB_val v = {len, (void *)value};
    err = mvcc_lmdb_err(mdb_put(store->wtxn, store->dbi_meta, &k, &v, 0));
    if (err != FL_OK) {
        log_map_full(store);
        write_abort(store);
        if (store->in_batch) {
            store->batch_error = err; /* the txn is broken: so is the batch */
        }
        return err;
    }
    /* The applied index stays where it is: the state record written at
     * commit is the unchanged work state. */
    return store->in_batch ? FL_OK : write_commit(store);
}

fl_err mvcc_get_meta(const mvcc_store *store, const char *name, void **value, size_t *len)
{
    *value = NULL;
    *len = 0;
    char kbuf[sizeof META_PREFIX + META_NAME_MAX];
    MDB_val k;
    if (!meta_key(name, kbuf, sizeof kbuf, &k)) {
        return FL_ERR_INVALID;
    }
    /* The applier with a write txn open sees its own writes; any other
     * caller the last committed state, from a read txn of its own. */
    mvcc_store *s = (mvcc_store *)store; /* the mutex is internal state */
    pthread_mutex_lock(&s->pub_mu);
    bool applier = s->writer_active && pthread_equal(s->writer, pthread_self());
    pthread_mutex_unlock(&s->pub_mu);
    MDB_txn *txn = applier ? store->wtxn : NULL;
    bool own = txn == NULL;
    if (own) {
        int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
        if (rc != 0) {
            return mvcc_lmdb_err(rc);
        }
    }
    MDB_val v;
    int rc = mdb_get(txn, store->dbi_meta, &k, &v);
    fl_err err = FL_OK;
    if (rc == MDB_NOTFOUND) {
        err = FL_ERR_NOT_FOUND;
    } else if (rc != 0) {
        err = mvcc_lmdb_err(rc);
    } else {
        /* owned by the caller (free()); one byte more so len 0 is not NULL */
        void *copy = malloc(v.mv_size + 1);
        if (copy == NULL) {
            err = FL_ERR_NOMEM;
        } else {
            memcpy(copy, v.mv_data, v.mv_size);
            *value = copy;
            *len = v.mv_size;
        }
    }
    if (own) {
        mdb_txn_abort(txn);
    }
    return err;
}

/* ---- results ------------------------------------------------------------- */

void mvcc_range_result_free(mvcc_range_result *result)
{
    if (result == NULL) {
        return;
    }
    mvcc_arena_free(result->arena);
    memset(result, 0, sizeof *result);
}

void mvcc_response_free(mvcc_response *response)
{
    if (response == NULL) {
        return;
    }
    mvcc_arena_free(response->arena);
    memset(response, 0, sizeof *response);
}

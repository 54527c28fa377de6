/* server_recover: bring MVCC up to the end of the WAL at start-up.
 *
 * LMDB commits without fsync, so after a crash it may lag the WAL; it stores
 * the applied index in the same transaction as the effects, so replaying the
 * WAL entries with index > mvcc_applied_index() is exact (no entry applied
 * twice, none skipped). Replay commits every SERVER_REPLAY_BATCH_MAX entries
 * to bound the size of one LMDB transaction. If a batch cannot commit because
 * the LMDB map is full, replay restarts from the applied index one entry per
 * transaction, where mvcc records such entries as applied-with-no-effect (as
 * the write path does).
 *
 * The opposite lag (LMDB ahead of the WAL) means the WAL lost fsynced data or
 * the dirs were mixed up; that is refused with a clear message rather than
 * guessed at.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "server/server_internal.h"
#include "util/log.h"

typedef struct replay_state {
    server *srv;
    bool single; /* one LMDB transaction per entry (no batch) */
    size_t in_batch;
    uint64_t failed_index;
    fl_err failed_err;
    bool commit_failed;
} replay_state;

static bool is_store_failure(fl_err err)
{
    return err == FL_ERR_IO || err == FL_ERR_NOSPACE || err == FL_ERR_CORRUPT ||
           err == FL_ERR_NOMEM || err == FL_ERR_INVALID;
}

static fl_err replay_failed(replay_state *st, uint64_t index, fl_err err, bool commit)
{
    st->failed_index = index;
    st->failed_err = err;
    st->commit_failed = commit;
    return err;
}

static fl_err replay_one(void *arg, const wal_entry *entry)
{
    replay_state *st = arg;
    server *srv = st->srv;
    if (!st->single && st->in_batch == 0) {
        fl_err err = mvcc_batch_begin(srv->store);
        if (err != FL_OK)
            return replay_failed(st, entry->index, err, false);
    }
    fl_err err;
    if (entry->type == WAL_ENTRY_NORMAL) {
        mvcc_response response = {0};
        err = mvcc_apply(srv->store, entry->index, entry->data, entry->len, &response);
        mvcc_response_free(&response);
        /* request-level errors (compacted, quota, ...) were the answer the client
         * got and the entry still applied; only store failures stop replay */
        if (!is_store_failure(err))
            err = FL_OK;
    } else {
        err = mvcc_apply_noop(srv->store, entry->index);
    }
    if (err != FL_OK) {
        if (!st->single)
            mvcc_batch_abort(srv->store);
        st->in_batch = 0;
        return replay_failed(st, entry->index, err, false);
    }
    srv->replayed++;
    if (!st->single && ++st->in_batch == SERVER_REPLAY_BATCH_MAX) {
        st->in_batch = 0;
        err = mvcc_batch_commit(srv->store);
        if (err != FL_OK) {
            srv->replayed -= SERVER_REPLAY_BATCH_MAX;
            return replay_failed(st, entry->index, err, true);
        }
    }
    return FL_OK;
}

static fl_err replay(server *srv, bool single, replay_state *st)
{
    *st = (replay_state){.srv = srv, .single = single};
    uint64_t from = mvcc_applied_index(srv->store);
    fl_err err = wal_replay(srv->log, from, replay_one, st);
    if (err == FL_OK && st->in_batch > 0) {
        size_t pending = st->in_batch;
        st->in_batch = 0;
        err = mvcc_batch_commit(srv->store);
        if (err != FL_OK) {
            srv->replayed -= pending;
            replay_failed(st, wal_last_index(srv->log), err, true);
        }
    } else if (err != FL_OK && st->in_batch > 0) {
        /* the wal stopped the replay (read error): drop the open batch */
        mvcc_batch_abort(srv->store);
        st->in_batch = 0;
    }
    return err;
}

fl_err server_recover(server *srv, const wal_recovery_info *info, char *errbuf, size_t errbuf_len)
{
    uint64_t applied = mvcc_applied_index(srv->store);
    uint64_t last = wal_last_index(srv->log);
    if (applied > last) {
        snprintf(errbuf, errbuf_len,
                 "the MVCC store in %s has applied index %" PRIu64
                 " but the WAL in %s ends at %" PRIu64 ": the WAL lost entries or the dirs do not "
                 "belong together",
                 srv->db_dir, applied, srv->wal_dir, last);
        return FL_ERR_CORRUPT;
    }
    /* Checkpoints release WAL segments LMDB made durable. If LMDB is now
     * behind the WAL's first entry (db/ deleted or replaced, or a power loss
     * took LMDB back past a checkpoint), the entries in between exist
     * nowhere: serving would show a state with a hole, so refuse. A WAL
     * holding no entries (first_index 0) with last > applied is the same gap. */
    if (last > applied && (info->first_index == 0 || info->first_index > applied + 1)) {
        snprintf(
            errbuf, errbuf_len,
            "the WAL in %s starts at index %" PRIu64 " (entries up to %" PRIu64
            " were released after a checkpoint) but the MVCC store in %s has applied only %" PRIu64
            ": entries %" PRIu64 "..%" PRIu64
            " are missing (the db dir was lost or rolled back); refusing to serve a state "
            "with a gap: restore the db dir that belongs to this WAL, or start a new member",
            srv->wal_dir, info->first_index, info->first_index ? info->first_index - 1 : last,
            srv->db_dir, applied, applied + 1, info->first_index ? info->first_index - 1 : last);
        return FL_ERR_CORRUPT;
    }
    if (last == applied)
        return FL_OK;
    replay_state st;
    fl_err err = replay(srv, false, &st);
    if (err != FL_OK && st.commit_failed &&
        (st.failed_err == FL_ERR_NO_SPACE_QUOTA || st.failed_err == FL_ERR_TOO_LARGE)) {
        FL_LOG_WARNF("server", "LMDB map full during replay; replaying entry by entry",
                     "from_index=%" PRIu64, mvcc_applied_index(srv->store) + 1);
        err = replay(srv, true, &st);
    }
    if (err != FL_OK) {
        if (st.failed_index && st.failed_err == FL_ERR_NOSPACE)
            snprintf(errbuf, errbuf_len,
                     "replaying WAL entry %" PRIu64 " into %s failed: no space left on device "
                     "(free disk space and start again; nothing is lost)",
                     st.failed_index, srv->db_dir);
        else if (st.failed_index)
            snprintf(errbuf, errbuf_len, "replaying WAL entry %" PRIu64 " from %s failed: %s",
                     st.failed_index, srv->wal_dir, fl_err_name(st.failed_err));
        else
            snprintf(errbuf, errbuf_len, "reading the WAL in %s failed: %s", srv->wal_dir,
                     fl_err_name(err));
        return err;
    }
    assert(mvcc_applied_index(srv->store) == last);
    FL_LOG_INFOF("server", "replayed the WAL",
                 "entries=%" PRIu64 " from_index=%" PRIu64 " to_index=%" PRIu64, srv->replayed,
                 applied + 1, last);
    return FL_OK;
}

/* server_checkpoint: bound the WAL by making LMDB durable behind it.
 *
 * LMDB commits without fsync (MDB_NOSYNC), so the WAL is the only durable
 * record of what was applied, and without checkpoints every segment would be
 * kept forever. A checkpoint at applied index A:
 *
 *   loop:   after a run of applies is committed (no LMDB batch open), once
 *           snapshot_count entries were applied since the last request,
 *           A = mvcc_applied_index(); ckpt_request = A (under mu)
 *   writer: between two WAL batches, starts a sync thread for A and goes
 *           on writing batches
 *   sync:   mvcc_sync (one fdatasync of LMDB's file), tells the writer
 *   writer: between two WAL batches: wal_release_up_to(A)
 *
 * Why this is safe: commit A returned on the loop before the request was
 * made (the mutex orders them), so A's pages and meta page were written to
 * the file before the fdatasync started, and fdatasync makes durable
 * everything written before it. Commits after A may run concurrently with the
 * sync; they are durable or not, it does not matter: the WAL still holds them
 * (A <= the last fsynced WAL index, since only fsynced entries are applied,
 * and wal_release_up_to keeps every segment holding an entry > A, plus the
 * live one). So a restart finds LMDB at >= A and the WAL from <= A + 1.
 *
 * Why these threads: wal_release_up_to must run on the thread that owns the
 * wal handle (the writer). The fdatasync of LMDB's file must stall neither
 * the loop (reads keep being served) nor the writer: it flushes every page
 * dirtied since the last checkpoint and can take tens of milliseconds, during
 * which group commit must go on (measured: with the sync on the writer, put
 * throughput at 100 clients fell by a quarter). So one short-lived thread per
 * checkpoint (at most one at a time, every snapshot_count entries) does it;
 * the writer joins it, and before exiting at stop it waits for it. mvcc_sync may run off the loop
 * concurrently with commits: it only calls mdb_env_sync, which lmdb.h does
 * not restrict to one thread (it does for transactions and mdb_env_close),
 * and which takes no lock and touches no transaction: LMDB's implementation
 * is fdatasync(data fd) plus a read of the newest meta page whose value only
 * sizes an msync under MDB_WRITEMAP, which the store does not use.
 *
 * Failure: a failed sync (EIO, ENOSPC) or release skips the checkpoint
 * (warning, checkpoint_failures++); nothing is released without a successful
 * sync. The next one is asked for after another snapshot_count entries.
 */
#include <assert.h>
#include <inttypes.h>

#include "server/server_internal.h"
#include "util/log.h"

void server_checkpoint_maybe(server *srv)
{
    if (srv->failed || srv->stopping)
        return; /* after a fatal error LMDB's state is unknown; at stop, finish does it */
    uint64_t applied = mvcc_applied_index(srv->store);
    assert(applied >= srv->ckpt_base);
    if (applied - srv->ckpt_base < srv->options.snapshot_count)
        return;
    pthread_mutex_lock(&srv->mu);
    if (!srv->ckpt_busy) {
        srv->ckpt_busy = true;
        srv->ckpt_request = applied;
        srv->ckpt_base = applied; /* a failed one is retried after another interval, not at once */
        pthread_cond_signal(&srv->cond);
    }
    pthread_mutex_unlock(&srv->mu);
}

fl_err server_checkpoint_sync(server *srv)
{
    fl_err err = FL_OK;
    if (srv->options.test_checkpoint_sync)
        err = srv->options.test_checkpoint_sync(srv->options.test_checkpoint_ctx);
    if (err == FL_OK)
        err = mvcc_sync(srv->store);
    return err;
}

void server_checkpoint_release(server *srv, uint64_t index, fl_err sync_err)
{
    assert(index > 0);
    uint64_t first_before = wal_first_index(srv->log);
    bool synced = sync_err == FL_OK;
    fl_err err = synced ? wal_release_up_to(srv->log, index) : sync_err;
    uint64_t first_after = wal_first_index(srv->log);

    pthread_mutex_lock(&srv->mu);
    if (err == FL_OK) {
        srv->checkpoints++;
        srv->last_checkpoint_index = index;
    } else {
        srv->checkpoint_failures++;
    }
    pthread_mutex_unlock(&srv->mu);

    if (err != FL_OK) {
        FL_LOG_WARNF("server", "checkpoint skipped",
                     "index=%" PRIu64 " step=%s err=%s (nothing released unless LMDB synced)",
                     index, synced ? "wal_release" : "lmdb_sync", fl_err_name(err));
    } else if (first_after != first_before) {
        FL_LOG_INFOF("server", "checkpoint released WAL entries",
                     "index=%" PRIu64 " wal_first_index=%" PRIu64 " was=%" PRIu64, index,
                     first_after, first_before);
    } else {
        FL_LOG_DEBUGF("server", "checkpoint", "index=%" PRIu64 " wal_first_index=%" PRIu64, index,
                      first_after);
    }
}

void server_checkpoint_run(server *srv, uint64_t index)
{
    server_checkpoint_release(srv, index, server_checkpoint_sync(srv));
}

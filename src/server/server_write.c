/* server_write: the write path.
 *
 *   loop:   server_write -> validate, encode, queue (bounded)      ─┐
 *   writer: take up to SERVER_WAL_BATCH_MAX queued, number them,    │
 *           wal_append_batch + ONE wal_sync, move to the done list, │
 *           uv_async_send                                           │
 *   loop:   server_on_async -> apply runs of fsynced entries in log │
 *           order inside one mvcc batch, commit, then call done  <──┘
 *
 * Group commit falls out of the queue: while the writer is inside fdatasync,
 * new writes pile up and the next iteration takes them all in one batch.
 *
 * Indexes are assigned by the writer thread, not by server_write: when an
 * append fails (disk full) the wal cuts the partial write off, and the writer
 * simply does not advance its counter, so the next batch reuses the indexes
 * and the log stays dense. Assigning them on the loop would force renumbering
 * writes queued behind a failed batch. (Raft will assign indexes on the loop
 * later; then a failed append is a leader step-down and the rule changes.)
 *
 * Failures:
 * - wal_append_batch fails (FL_ERR_NOSPACE, FL_ERR_IO, FL_ERR_TOO_LARGE): the
 *   batch's writes get that error; nothing reached the log; the member keeps
 *   serving and later writes succeed once the disk has room.
 * - wal_sync fails: whether the records are on disk is unknown (after a failed
 *   fdatasync the kernel may have dropped the dirty pages), so acking or
 *   failing them could both be a lie later. The writer refuses all further
 *   writes and the member goes fatal (see server_enter_fatal): crash rather
 *   than diverge. A restart replays whatever the log really holds.
 * - LMDB has no disk space for an entry the WAL already made durable
 *   (mvcc reports FL_ERR_NOSPACE: the WAL append fit, LMDB's pages did not):
 *   the entries are in the log, so failing them would be a lie (a restart
 *   applies them) and the member must not die of a full disk either. The
 *   batch is rolled back and its writes wait, unanswered, on the stalled
 *   list; a timer re-applies them with a backoff (50 ms doubling to 1 s)
 *   until LMDB has room, then they get their real answers. Meanwhile reads
 *   work (they see only what was answered) and new writes are refused at
 *   once with FL_ERR_NOSPACE, which is true: they are not logged.
 * - mvcc_apply/commit fails with another LMDB error (FL_ERR_IO,
 *   FL_ERR_CORRUPT, FL_ERR_NOMEM) after the WAL is durable: the batch is
 *   rolled back, its writes get FL_ERR_IO (never success), and the member goes
 *   fatal. A restart replays the WAL from the applied index and loses nothing
 *   acknowledged.
 *   Request-level apply errors (compacted, future revision, quota, lease not
 *   found) are normal answers: the entry is applied as a no-op.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"
#include "util/log.h"

static void pending_write_free(server_pending_write *w)
{
    free(w->payload);
    if (w->response)
        mvcc_response_free(w->response); /* what a failed or unanswered apply left */
    free(w->response);
    free(w);
}

/* ---- writer thread ------------------------------------------------------ */

/* Appends and syncs one batch; returns the error for every write in it. */
static fl_err write_batch(server *srv, server_pending_write *first, size_t count, bool broken,
                          bool *sync_failed)
{
    static _Thread_local wal_entry entries[SERVER_WAL_BATCH_MAX];
    assert(count > 0 && count <= SERVER_WAL_BATCH_MAX);
    *sync_failed = false;
    if (broken)
        return FL_ERR_IO;
    size_t i = 0;
    for (server_pending_write *w = first; i < count; w = w->next, i++) {
        w->index = srv->next_index + i;
        entries[i] = (wal_entry){.index = w->index,
                                 .term = 1,
                                 .type = WAL_ENTRY_NORMAL,
                                 .data = w->payload,
                                 .len = w->payload_len};
    }
    fl_err err = wal_append_batch(srv->log, entries, count, NULL);
    if (err != FL_OK)
        return err; /* the wal cut the partial write off: these indexes get reused */
    err = wal_sync(srv->log);
    if (err != FL_OK) {
        *sync_failed = true;
        return FL_ERR_IO;
    }
    srv->next_index += count;
    return FL_OK;
}

/* The checkpoint's sync thread: LMDB's fdatasync, off the write path. */
static void *checkpoint_sync_main(void *arg)
{
    server *srv = arg;
    fl_err err = server_checkpoint_sync(srv);
    pthread_mutex_lock(&srv->mu);
    srv->ckpt_sync_err = err;
    srv->ckpt_sync_done = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* Writer, mu held: what to do about a checkpoint between two batches.
 * Returns true if it did something (mu was dropped meanwhile). */
static bool writer_checkpoint_step(server *srv)
{
    if (srv->ckpt_sync_done) {
        /* the sync finished: release the WAL behind it (the wal is ours) */
        srv->ckpt_sync_done = false;
        fl_err sync_err = srv->ckpt_sync_err;
        bool broken = srv->wal_broken;
        pthread_mutex_unlock(&srv->mu);
        assert(srv->ckpt_sync_running);
        pthread_join(srv->ckpt_sync_thread, NULL);
        srv->ckpt_sync_running = false;
        if (!broken)
            server_checkpoint_release(srv, srv->ckpt_sync_index, sync_err);
        pthread_mutex_lock(&srv->mu);
        srv->ckpt_busy = false;
        return true;
    }
    if (srv->ckpt_request) {
        assert(!srv->ckpt_sync_running); /* ckpt_busy keeps it to one at a time */
        srv->ckpt_sync_index = srv->ckpt_request;
        srv->ckpt_request = 0;
        bool started = !srv->wal_broken &&
                       pthread_create(&srv->ckpt_sync_thread, NULL, checkpoint_sync_main, srv) == 0;
        srv->ckpt_sync_running = started;
        if (!started) {
            srv->ckpt_busy = false; /* asked again after another interval */
            if (!srv->wal_broken)
                srv->checkpoint_failures++;
        }
        return true;
    }
    return false;
}

static void *writer_main(void *arg)
{
    server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        /* at stop, a running sync is waited for: its thread is ours to join */
        while (!srv->queue_head && !srv->ckpt_request && !srv->ckpt_sync_done &&
               (!srv->writer_stop || srv->ckpt_sync_running))
            pthread_cond_wait(&srv->cond, &srv->mu);
        if (writer_checkpoint_step(srv))
            continue;
        if (!srv->queue_head)
            break; /* stopping and drained */
        /* take up to SERVER_WAL_BATCH_MAX writes / SERVER_WAL_BATCH_BYTES_MAX
         * bytes (at least one write) off the queue */
        server_pending_write *first = srv->queue_head, *last = first;
        size_t count = 1;
        size_t bytes = first->payload_len;
        while (last->next && count < SERVER_WAL_BATCH_MAX &&
               bytes + last->next->payload_len <= SERVER_WAL_BATCH_BYTES_MAX) {
            last = last->next;
            bytes += last->payload_len;
            count++;
        }
        srv->queue_head = last->next;
        if (!srv->queue_head)
            srv->queue_tail = NULL;
        last->next = NULL;
        bool broken = srv->wal_broken;
        pthread_mutex_unlock(&srv->mu);

        bool sync_failed = false;
        fl_err err = write_batch(srv, first, count, broken, &sync_failed);
        if (err != FL_OK && !broken)
            FL_LOG_WARNF("server", "WAL append failed", "err=%s entries=%zu sync_failed=%d",
                         fl_err_name(err), count, (int)sync_failed);
        for (server_pending_write *w = first; w; w = w->next) {
            w->wal_err = err;
            w->logged = err == FL_OK;
        }

        pthread_mutex_lock(&srv->mu);
        if (!broken)
            srv->wal_batches++;
        if (err == FL_OK)
            srv->wal_syncs++;
        if (sync_failed)
            srv->wal_broken = true;
        if (srv->done_tail)
            srv->done_tail->next = first;
        else
            srv->done_head = first;
        srv->done_tail = last;
        if (srv->async_ready)
            uv_async_send(&srv->async);
    }
    srv->writer_exited = true;
    if (srv->async_ready)
        uv_async_send(&srv->async);
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

fl_err server_writer_start(server *srv)
{
    assert(!srv->writer_started);
    srv->next_index = wal_last_index(srv->log) + 1;
    assert(srv->next_index == mvcc_applied_index(srv->store) + 1);
    if (pthread_create(&srv->writer, NULL, writer_main, srv) != 0)
        return FL_ERR_NOMEM;
    srv->writer_started = true;
    int rc = uv_async_init(srv->loop, &srv->async, server_on_async);
    if (rc == 0)
        rc = uv_idle_init(srv->loop, &srv->idle);
    if (rc == 0)
        rc = uv_timer_init(srv->loop, &srv->retry_timer);
    if (rc != 0) {
        /* rare; the async handle was not initialised (idle and timer init cannot fail) */
        pthread_mutex_lock(&srv->mu);
        srv->writer_stop = true;
        pthread_cond_signal(&srv->cond);
        pthread_mutex_unlock(&srv->mu);
        pthread_join(srv->writer, NULL);
        srv->writer_joined = true;
        return FL_ERR_NOMEM;
    }
    srv->async.data = srv;
    srv->idle.data = srv;
    srv->retry_timer.data = srv;
    pthread_mutex_lock(&srv->mu);
    srv->async_ready = true;
    pthread_mutex_unlock(&srv->mu);
    return FL_OK;
}

void server_writer_request_stop(server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->writer_stop = true;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
}

/* ---- loop side ---------------------------------------------------------- */

fl_err server_write(server *srv, const mvcc_request *request, server_write_done_fn done, void *ctx)
{
    assert(request && done);
    if (srv->stopping)
        return FL_ERR_STOPPED;
    if (srv->failed)
        return FL_ERR_IO;
    if (srv->stalled_head)
        return FL_ERR_NOSPACE; /* LMDB is out of disk: logging more would only queue up */
    fl_err err = mvcc_request_validate(request, srv->options.max_txn_ops);
    if (err != FL_OK)
        return err;
    if (srv->writes_pending >= srv->options.pending_writes_max ||
        srv->pending_bytes >= SERVER_PENDING_BYTES_MAX)
        return FL_ERR_BUSY;
    /* w and its response are owned by the server until done is called */
    server_pending_write *w = calloc(1, sizeof *w);
    if (!w)
        return FL_ERR_NOMEM;
    w->response = calloc(1, sizeof *w->response);
    if (!w->response) {
        free(w);
        return FL_ERR_NOMEM;
    }
    err = mvcc_request_encode(request, &w->payload, &w->payload_len);
    if (err != FL_OK) {
        pending_write_free(w);
        return err;
    }
    w->done = done;
    w->ctx = ctx;
    srv->writes_pending++;
    srv->pending_bytes += w->payload_len;
    pthread_mutex_lock(&srv->mu);
    if (srv->queue_tail)
        srv->queue_tail->next = w;
    else
        srv->queue_head = w;
    srv->queue_tail = w;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
    return FL_OK;
}

/* Calls done for one write and frees it. */
static void finish_write(server *srv, server_pending_write *w, fl_err err, bool applied)
{
    assert(srv->writes_pending > 0 && srv->pending_bytes >= w->payload_len);
    srv->writes_pending--;
    srv->pending_bytes -= w->payload_len;
    mvcc_response *response = NULL;
    if (err == FL_OK) {
        response = w->response; /* ownership passes to done */
        w->response = NULL;
    }
    if (applied)
        srv->writes_acked++;
    else
        srv->writes_failed++;
    server_write_done_fn done = w->done;
    void *ctx = w->ctx;
    pending_write_free(w);
    done(ctx, err, response);
}

static bool is_store_failure(fl_err err)
{
    /* INVALID: mvcc refused the index or the batch state: a broken invariant */
    return err == FL_ERR_IO || err == FL_ERR_NOSPACE || err == FL_ERR_CORRUPT ||
           err == FL_ERR_NOMEM || err == FL_ERR_INVALID;
}

static void reason_apply_failed(char *reason, size_t reason_len, uint64_t index, fl_err err)
{
    snprintf(reason, reason_len,
             "applying WAL entry %" PRIu64 " to LMDB failed (%s); the WAL holds it, a restart "
             "replays it",
             index, fl_err_name(err));
}

/* Applies a run of fsynced writes [first, end) in one LMDB transaction; each
 * write's wal_err becomes its request-level answer. Returns FL_OK, or the
 * failure that rolled the whole run back (*commit_failed tells whether it
 * came from the commit, i.e. a store-level error the applies did not show). */
static fl_err apply_run_batched(server *srv, server_pending_write *first, server_pending_write *end,
                                bool *commit_failed, char *reason, size_t reason_len)
{
    *commit_failed = false;
    fl_err err = mvcc_batch_begin(srv->store);
    if (err != FL_OK) {
        snprintf(reason, reason_len, "mvcc_batch_begin failed: %s", fl_err_name(err));
        return err;
    }
    /* after a map-full inside the batch mvcc has rolled the batch back and
     * answers every later apply with that error until the commit */
    bool maybe_broken = false;
    for (server_pending_write *w = first; w != end; w = w->next) {
        assert(maybe_broken || w->index == mvcc_applied_index(srv->store) + 1);
        fl_err apply_err =
            mvcc_apply(srv->store, w->index, w->payload, w->payload_len, w->response);
        if (apply_err == FL_ERR_NO_SPACE_QUOTA || apply_err == FL_ERR_TOO_LARGE)
            maybe_broken = true;
        if (is_store_failure(apply_err)) {
            mvcc_batch_abort(srv->store);
            reason_apply_failed(reason, reason_len, w->index, apply_err);
            return apply_err;
        }
        w->wal_err = apply_err; /* reused: now the request-level answer */
    }
    err = mvcc_batch_commit(srv->store);
    if (err != FL_OK) {
        *commit_failed = true;
        snprintf(reason, reason_len,
                 "LMDB commit failed (%s); the WAL holds the batch, a restart replays it",
                 fl_err_name(err));
    }
    return err;
}

/* The slow path: one LMDB transaction per entry. mvcc turns an entry that
 * does not fit the LMDB map into "applied with no effect" +
 * FL_ERR_NO_SPACE_QUOTA (etcd's "database space exceeded") only outside a
 * batch, so a batch that failed that way is redone here. */
static fl_err apply_run_single(server *srv, server_pending_write *first, server_pending_write *end,
                               server_pending_write **applied_end, char *reason, size_t reason_len)
{
    for (server_pending_write *w = first; w != end; w = w->next) {
        mvcc_response_free(w->response); /* from the rolled-back batch */
        memset(w->response, 0, sizeof *w->response);
        assert(w->index == mvcc_applied_index(srv->store) + 1);
        fl_err apply_err =
            mvcc_apply(srv->store, w->index, w->payload, w->payload_len, w->response);
        if (is_store_failure(apply_err) || mvcc_applied_index(srv->store) != w->index) {
            /* not even "applied with no effect" could be recorded */
            *applied_end = w;
            reason_apply_failed(reason, reason_len, w->index, apply_err);
            return apply_err == FL_OK ? FL_ERR_IO : apply_err;
        }
        w->wal_err = apply_err;
    }
    return FL_OK;
}

/* *applied_end: the first write of the run that was not applied (end when
 * all were); the ones before it are committed and get their answers. */
static fl_err apply_run(server *srv, server_pending_write *first, server_pending_write *end,
                        server_pending_write **applied_end, char *reason, size_t reason_len)
{
    *applied_end = first;
    bool commit_failed = false;
    fl_err err = apply_run_batched(srv, first, end, &commit_failed, reason, reason_len);
    if (err != FL_OK && commit_failed &&
        (err == FL_ERR_NO_SPACE_QUOTA || err == FL_ERR_TOO_LARGE)) {
        FL_LOG_WARNF("server", "LMDB map full in a batch; applying entry by entry",
                     "first_index=%" PRIu64, first->index);
        err = apply_run_single(srv, first, end, applied_end, reason, reason_len);
    }
    if (err == FL_OK)
        *applied_end = end;
    return err;
}

#define RETRY_DELAY_FIRST_MS 50u
#define RETRY_DELAY_MAX_MS   1000u

/* Puts the writes of list behind the stalled ones: logged writes wait there
 * (their answers from a rolled-back batch are dropped); a write the WAL
 * refused is not in the log and is answered at once. */
static void stall_append(server *srv, server_pending_write *list)
{
    while (list) {
        server_pending_write *w = list;
        list = w->next;
        w->next = NULL;
        if (!w->logged) {
            finish_write(srv, w, w->wal_err, false);
            continue;
        }
        mvcc_response_free(w->response);
        memset(w->response, 0, sizeof *w->response);
        w->wal_err = FL_OK;
        if (srv->stalled_tail)
            srv->stalled_tail->next = w;
        else
            srv->stalled_head = w;
        srv->stalled_tail = w;
    }
}

static void process_done(server *srv, server_pending_write *list);

static void on_retry_timer(uv_timer_t *timer)
{
    server *srv = timer->data;
    server_pending_write *list = srv->stalled_head;
    srv->stalled_head = srv->stalled_tail = NULL;
    uint64_t first = list ? list->index : 0;
    process_done(srv, list);
    server_checkpoint_maybe(srv);
    if (!srv->stalled_head && list && !srv->failed) {
        srv->retry_delay_ms = 0;
        FL_LOG_INFOF("server", "LMDB has room again; stalled writes applied",
                     "first_index=%" PRIu64 " applied_index=%" PRIu64, first,
                     mvcc_applied_index(srv->store));
    }
}

/* An apply found no room: list (in log order, the first not applied) waits
 * and the timer is armed with the next backoff step. */
static void stall(server *srv, server_pending_write *list)
{
    assert(!srv->stalled_head);
    stall_append(srv, list);
    if (!srv->stalled_head)
        return;
    if (srv->retry_delay_ms == 0) {
        srv->apply_stalls++;
        FL_LOG_WARNF("server", "no disk space for LMDB; logged writes wait, new writes are refused",
                     "first_index=%" PRIu64, srv->stalled_head->index);
    }
    if (srv->retry_delay_ms == 0)
        srv->retry_delay_ms = RETRY_DELAY_FIRST_MS;
    else if (srv->retry_delay_ms * 2 <= RETRY_DELAY_MAX_MS)
        srv->retry_delay_ms *= 2;
    else
        srv->retry_delay_ms = RETRY_DELAY_MAX_MS;
    uv_timer_start(&srv->retry_timer, on_retry_timer, srv->retry_delay_ms, 0);
}

/* At stop: one last try, then the writes still stalled are answered
 * FL_ERR_STOPPED. They are in the log, so a restart with room applies them:
 * like etcd's "server stopped", the answer does not say they failed. */
void server_stall_finish(server *srv)
{
    if (!srv->stalled_head)
        return;
    uv_timer_stop(&srv->retry_timer);
    server_pending_write *list = srv->stalled_head;
    srv->stalled_head = srv->stalled_tail = NULL;
    process_done(srv, list);
    uv_timer_stop(&srv->retry_timer);
    list = srv->stalled_head;
    srv->stalled_head = srv->stalled_tail = NULL;
    while (list) {
        server_pending_write *w = list;
        list = w->next;
        finish_write(srv, w, FL_ERR_STOPPED, false);
    }
}

/* Handles the writes the writer finished, in log order. */
static void process_done(server *srv, server_pending_write *list)
{
    if (srv->stalled_head) {
        /* keep log order: behind the stalled ones; the timer is pending */
        assert(uv_is_active((uv_handle_t *)&srv->retry_timer));
        stall_append(srv, list);
        return;
    }
    while (list) {
        if (!list->logged || srv->failed) {
            server_pending_write *w = list;
            list = w->next;
            finish_write(srv, w, srv->failed ? FL_ERR_IO : w->wal_err, false);
            continue;
        }
        server_pending_write *end = list;
        while (end && end->logged)
            end = end->next;
        char reason[256];
        server_pending_write *applied_end = NULL;
        fl_err err = apply_run(srv, list, end, &applied_end, reason, sizeof reason);
        if (err != FL_OK) {
            /* answer what was applied; the rest waits for disk space, or
             * (any other store failure) fails with FL_ERR_IO, and everything
             * after it too, and the member goes fatal */
            while (list != applied_end) {
                server_pending_write *w = list;
                list = w->next;
                finish_write(srv, w, w->wal_err, true);
            }
            if (err == FL_ERR_NOSPACE) {
                stall(srv, list);
                return;
            }
            while (list) {
                server_pending_write *w = list;
                list = w->next;
                finish_write(srv, w, FL_ERR_IO, false);
            }
            server_enter_fatal(srv, err, reason);
            return;
        }
        while (list != end) {
            server_pending_write *w = list;
            list = w->next;
            finish_write(srv, w, w->wal_err, true);
        }
    }
}

void server_on_async(uv_async_t *handle)
{
    server *srv = handle->data;
    pthread_mutex_lock(&srv->mu);
    server_pending_write *list = srv->done_head;
    srv->done_head = srv->done_tail = NULL;
    bool exited = srv->writer_exited;
    bool broken = srv->wal_broken;
    pthread_mutex_unlock(&srv->mu);

    process_done(srv, list);
    server_checkpoint_maybe(srv);
    if (broken && !srv->failed)
        server_enter_fatal(srv, FL_ERR_IO,
                           "WAL fsync failed: the log's durable state is unknown; restart to "
                           "recover from what is on disk");
    if (exited && !srv->writer_joined) {
        assert(srv->stopping);
        pthread_join(srv->writer, NULL);
        srv->writer_joined = true;
        server_stall_finish(srv);
        /* the writer exits only with an empty queue, and its last batch was
         * moved to the done list before exited was set: all answered */
        server_finish_stop(srv);
    }
}

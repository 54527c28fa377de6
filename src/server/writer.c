/* server/writer: the WAL writer thread (see writer.h for the contract).
 *
 *   loop:   writer_submit(batch)                          ─┐
 *   thread: take every queued batch, wal_append_batch each, │
 *           ONE wal_sync, move them to the done list,       │
 *           uv_async_send                                   │
 *   loop:   on_done -> writer_take_done -> raft_persisted <─┘
 *
 * Group commit falls out of the queue: while the thread is inside
 * fdatasync, the loop keeps submitting, and the next round covers all of it.
 *
 * Checkpoints (between two rounds): a requested index A, whose LMDB commit
 * returned on the loop before the request (the mutex orders them), is made
 * durable by mvcc_sync on a short-lived thread, so neither the loop nor group
 * commit waits for the LMDB fdatasync; when it finishes the writer, which
 * owns the wal, releases the segments whose entries are all <= A. A failed
 * sync releases nothing. See docs/server.md, "Checkpoints".
 */
#include "server/writer.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "util/log.h"

#define WRITER_RETRY_FIRST_MS 50u
#define WRITER_RETRY_MAX_MS   1000u

struct writer {
    uv_loop_t *loop;
    wal *log;
    mvcc_store *store;
    void (*on_done)(void *ctx);
    void *ctx;
    fl_err (*test_checkpoint_sync)(void *ctx);
    void *test_ctx;

    pthread_t thread;
    bool thread_started;
    bool joined;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    writer_batch *queue_head, *queue_tail; /* (mu) */
    writer_batch *done_head, *done_tail;   /* (mu) */
    bool stop;                             /* (mu) */
    bool exited;                           /* (mu) */
    bool broken;                           /* (mu) an fdatasync failed */
    bool stalled;                          /* (mu) appends failing, being retried */
    writer_stats stats;                    /* (mu) */
    /* checkpoints */
    uint64_t ckpt_request; /* (mu) 0 = none */
    bool ckpt_busy;        /* (mu) */
    bool store_blocked;    /* (mu) the store is being replaced: no checkpoint */
    bool ckpt_sync_done;   /* (mu) */
    fl_err ckpt_sync_err;  /* (mu) */
    pthread_t ckpt_thread; /* (thread) */
    bool ckpt_running;     /* (thread) */
    uint64_t ckpt_index;   /* (thread) */
    uv_async_t async;
    bool async_open;
    void (*closed)(void *ctx);
    void *closed_ctx;
};

void writer_batch_free(writer_batch *batch)
{
    if (!batch)
        return;
    free(batch->entries);
    free(batch->bytes);
    free(batch->held);
    free(batch);
}

/* ---- the thread --------------------------------------------------------- */

static void *checkpoint_sync_main(void *arg)
{
    writer *w = arg;
    fl_err err = w->test_checkpoint_sync ? w->test_checkpoint_sync(w->test_ctx) : FL_OK;
    if (err == FL_OK)
        err = mvcc_sync(w->store);
    pthread_mutex_lock(&w->mu);
    w->ckpt_sync_err = err;
    w->ckpt_sync_done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* mu held. Returns true if it did something (mu was dropped meanwhile). */
static bool checkpoint_step(writer *w)
{
    if (w->ckpt_sync_done) {
        w->ckpt_sync_done = false;
        fl_err err = w->ckpt_sync_err;
        bool broken = w->broken;
        pthread_mutex_unlock(&w->mu);
        assert(w->ckpt_running);
        pthread_join(w->ckpt_thread, NULL);
        w->ckpt_running = false;
        uint64_t first_before = wal_first_index(w->log);
        if (err == FL_OK && !broken)
            err = wal_release_up_to(w->log, w->ckpt_index);
        if (err != FL_OK && !broken)
            FL_LOG_WARNF("server", "checkpoint failed; the WAL is kept", "index=%" PRIu64 " err=%s",
                         w->ckpt_index, fl_err_name(err));
        else if (!broken && wal_first_index(w->log) != first_before)
            FL_LOG_INFOF("server", "checkpoint released WAL entries",
                         "index=%" PRIu64 " wal_first_index=%" PRIu64, w->ckpt_index,
                         wal_first_index(w->log));
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->cond); /* writer_quiesce_store may wait for this */
        if (err == FL_OK && !broken) {
            w->stats.checkpoints++;
            w->stats.last_checkpoint_index = w->ckpt_index;
        } else if (!broken) {
            w->stats.checkpoint_failures++;
        }
        w->ckpt_busy = false;
        return true;
    }
    if (w->ckpt_request) {
        assert(!w->ckpt_running);
        w->ckpt_index = w->ckpt_request;
        w->ckpt_request = 0;
        bool started =
            !w->broken && pthread_create(&w->ckpt_thread, NULL, checkpoint_sync_main, w) == 0;
        w->ckpt_running = started;
        if (!started) {
            w->ckpt_busy = false;
            if (!w->broken)
                w->stats.checkpoint_failures++;
        }
        return true;
    }
    return false;
}

/* Appends one batch, retrying a failed append with a backoff until it fits
 * or the writer is asked to stop (then FL_ERR_STOPPED: not written). */
static fl_err append_with_retry(writer *w, writer_batch *b)
{
    uint32_t delay_ms = 0;
    for (;;) {
        fl_err err = FL_OK;
        if (b->reset) {
            err = wal_reset(w->log, b->reset_index);
            if (err == FL_OK)
                b->reset = false; /* done: a retry must not reset again */
        }
        if (err == FL_OK && (b->n_entries > 0 || b->has_hard_state))
            err = wal_append_batch(w->log, b->entries, b->n_entries,
                                   b->has_hard_state ? &b->hard_state : NULL);
        pthread_mutex_lock(&w->mu);
        w->stats.wal_batches++;
        if (err == FL_OK) {
            if (w->stalled)
                FL_LOG_INFOF("server", "WAL appends succeed again", "retries=%" PRIu64,
                             w->stats.append_retries);
            w->stalled = false;
            pthread_mutex_unlock(&w->mu);
            return FL_OK;
        }
        if (err != FL_ERR_NOSPACE && err != FL_ERR_IO && !(w->stop && w->stalled)) {
            pthread_mutex_unlock(&w->mu);
            return err; /* TOO_LARGE / INVALID: a broken invariant upstream */
        }
        if (!w->stalled)
            FL_LOG_WARNF("server", "WAL append failed; retrying, new writes are refused",
                         "err=%s entries=%zu", fl_err_name(err), b->n_entries);
        w->stalled = true;
        w->stats.append_retries++;
        if (w->stop) {
            pthread_mutex_unlock(&w->mu);
            return FL_ERR_STOPPED;
        }
        delay_ms = delay_ms == 0
                       ? WRITER_RETRY_FIRST_MS
                       : (delay_ms * 2 > WRITER_RETRY_MAX_MS ? WRITER_RETRY_MAX_MS : delay_ms * 2);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
        until.tv_sec += delay_ms / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w->cond, &w->mu, &until);
        pthread_mutex_unlock(&w->mu);
    }
}

/* Writes a round of batches and syncs once. Returns the round's result. */
static fl_err write_round(writer *w, writer_batch *first, bool broken, bool *sync_failed)
{
    *sync_failed = false;
    if (broken)
        return FL_ERR_IO;
    bool wrote = false;
    for (writer_batch *b = first; b; b = b->next) {
        fl_err err = append_with_retry(w, b);
        if (err == FL_ERR_STOPPED)
            return err;
        if (err != FL_OK) {
            FL_LOG_ERRORF("server", "WAL append refused a batch", "err=%s entries=%zu",
                          fl_err_name(err), b->n_entries);
            *sync_failed = true; /* treated as broken: never ack what may not be there */
            return FL_ERR_IO;
        }
        wrote = wrote || b->sync;
    }
    if (!wrote)
        return FL_OK; /* commit-only hard states: the next sync covers them */
    fl_err err = wal_sync(w->log);
    if (err != FL_OK) {
        *sync_failed = true;
        return FL_ERR_IO;
    }
    pthread_mutex_lock(&w->mu);
    w->stats.wal_syncs++;
    pthread_mutex_unlock(&w->mu);
    return FL_OK;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->queue_head && !w->ckpt_request && !w->ckpt_sync_done &&
               (!w->stop || w->ckpt_running))
            pthread_cond_wait(&w->cond, &w->mu);
        if (checkpoint_step(w))
            continue;
        if (!w->queue_head)
            break; /* stopping, drained */
        writer_batch *first = w->queue_head, *last = w->queue_tail;
        w->queue_head = w->queue_tail = NULL;
        bool broken = w->broken;
        pthread_mutex_unlock(&w->mu);

        bool sync_failed = false;
        fl_err err = write_round(w, first, broken, &sync_failed);
        for (writer_batch *b = first; b; b = b->next)
            b->err = err;

        pthread_mutex_lock(&w->mu);
        if (sync_failed && !w->broken) {
            w->broken = true;
            FL_LOG_ERRORF("server", "WAL fsync failed; no more writes", "err=%s", fl_err_name(err));
        }
        if (w->done_tail)
            w->done_tail->next = first;
        else
            w->done_head = first;
        w->done_tail = last;
        uv_async_send(&w->async);
    }
    w->exited = true;
    uv_async_send(&w->async);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- loop side ---------------------------------------------------------- */

static void on_async(uv_async_t *handle)
{
    writer *w = handle->data;
    w->on_done(w->ctx);
}

fl_err writer_create(uv_loop_t *loop, wal *log, mvcc_store *store, void (*on_done)(void *ctx),
                     void *ctx, fl_err (*test_checkpoint_sync)(void *ctx), void *test_ctx,
                     writer **out)
{
    assert(loop && log && store && on_done && out);
    writer *w = calloc(1, sizeof *w); /* owned by the caller on success */
    if (!w)
        return FL_ERR_NOMEM;
    w->loop = loop;
    w->log = log;
    w->store = store;
    w->on_done = on_done;
    w->ctx = ctx;
    w->test_checkpoint_sync = test_checkpoint_sync;
    w->test_ctx = test_ctx;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return FL_ERR_NOMEM;
    }
    w->async.data = w;
    w->async_open = true;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        /* the handle must be closed by the loop: hand back a writer that is
         * already joined so the caller's normal close path frees it */
        w->joined = true;
        *out = w;
        return FL_ERR_NOMEM;
    }
    w->thread_started = true;
    *out = w;
    return FL_OK;
}

void writer_submit(writer *w, writer_batch *batch)
{
    assert(batch && !batch->next);
    pthread_mutex_lock(&w->mu);
    assert(!w->stop);
    if (w->queue_tail)
        w->queue_tail->next = batch;
    else
        w->queue_head = batch;
    w->queue_tail = batch;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

writer_batch *writer_take_done(writer *w, bool *exited)
{
    pthread_mutex_lock(&w->mu);
    writer_batch *list = w->done_head;
    w->done_head = w->done_tail = NULL;
    *exited = w->exited;
    pthread_mutex_unlock(&w->mu);
    return list;
}

bool writer_stalled(const writer *w)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&w->mu;
    pthread_mutex_lock(mu);
    bool stalled = w->stalled || w->broken;
    pthread_mutex_unlock(mu);
    return stalled;
}

void writer_nudge(writer *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->stalled)
        pthread_cond_broadcast(&w->cond); /* retry the append now, not at the backoff's end */
    pthread_mutex_unlock(&w->mu);
}

bool writer_broken(const writer *w)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&w->mu;
    pthread_mutex_lock(mu);
    bool broken = w->broken;
    pthread_mutex_unlock(mu);
    return broken;
}

bool writer_request_checkpoint(writer *w, uint64_t index)
{
    assert(index > 0);
    pthread_mutex_lock(&w->mu);
    bool accepted = !w->ckpt_busy && !w->broken && !w->stop && !w->store_blocked;
    if (accepted) {
        w->ckpt_busy = true;
        w->ckpt_request = index;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->mu);
    return accepted;
}

void writer_quiesce_store(writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->store_blocked = true;
    if (w->ckpt_request) { /* asked, not started: drop it (asked again later) */
        w->ckpt_request = 0;
        w->ckpt_busy = false;
    }
    while (w->ckpt_busy) /* started: the thread clears it and broadcasts when done */
        pthread_cond_wait(&w->cond, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void writer_set_store(writer *w, mvcc_store *store)
{
    pthread_mutex_lock(&w->mu);
    w->store = store;
    w->store_blocked = false;
    pthread_mutex_unlock(&w->mu);
}

void writer_stop(writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    w->ckpt_request = 0; /* a final one is run by the owner after the join */
    pthread_cond_broadcast(&w->cond);
    if (!w->thread_started) {
        w->exited = true;
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->mu);
}

void writer_join(writer *w)
{
    if (w->joined)
        return;
    pthread_join(w->thread, NULL);
    w->joined = true;
    assert(!w->ckpt_running);
}

static void on_closed(uv_handle_t *handle)
{
    writer *w = handle->data;
    w->async_open = false;
    if (w->closed)
        w->closed(w->closed_ctx);
}

void writer_close(writer *w, void (*closed)(void *ctx), void *ctx)
{
    assert(w->joined);
    w->closed = closed;
    w->closed_ctx = ctx;
    uv_close((uv_handle_t *)&w->async, on_closed);
}

void writer_destroy(writer *w)
{
    if (!w)
        return;
    assert(w->joined && !w->async_open);
    writer_batch *lists[2] = {w->queue_head, w->done_head};
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            writer_batch *b = lists[i];
            lists[i] = b->next;
            writer_batch_free(b);
        }
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void writer_get_stats(const writer *w, writer_stats *out)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&w->mu;
    pthread_mutex_lock(mu);
    *out = w->stats;
    pthread_mutex_unlock(mu);
}

/* server/writer: persists what Raft hands out, off the loop thread.
 *
 * Owns: the WAL writer thread and the wal handle while it runs. The loop
 * submits batches (a Ready's entries and hard state, in Ready order); the
 * thread appends every batch queued so far and covers them with ONE
 * fdatasync (group commit), then hands them back to the loop in the same
 * order through a uv_async. Between two syncs it also runs checkpoints: an
 * LMDB sync on a short-lived thread, then the release of WAL segments the
 * synced store covers.
 * Must not: touch raft or mvcc state other than mvcc_sync (which may run off
 * the loop: see mvcc.h), call back into the server except through on_done on
 * the loop thread.
 *
 * Failures: an append that fails (disk full, I/O) is retried by the thread
 * with a backoff (50 ms doubling to 1 s): the entries are already in Raft's
 * log and may be committed by others, so they can neither be dropped nor
 * reported as failed; writer_stalled() tells the loop to refuse new writes
 * meanwhile. A failed fdatasync is fatal: what is durable is unknown, so the
 * thread writes nothing more and reports FL_ERR_IO on every later batch.
 *
 * Threads: writer_create/submit/take_done/stop/destroy on the loop; the
 * batch list handed back is the loop's.
 */
#ifndef FL_SERVER_WRITER_H
#define FL_SERVER_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mvcc/mvcc.h"
#include "raft/raft.h"
#include "wal/wal.h"

/* One Ready's persistence work and what waits for it. Owned by whoever holds
 * it: the loop builds it, the writer owns it while queued, the loop again
 * once handed back. */
typedef struct writer_batch {
    struct writer_batch *next;
    wal_entry *entries; /* owned array; entry data points into `bytes` */
    size_t n_entries;
    uint8_t *bytes; /* owned: every entry's data */
    bool has_hard_state;
    wal_hard_state hard_state;
    /* false when the batch only moves the commit index: written, not synced
     * (as etcd-io/raft's MustSync: a lost commit index is learned again,
     * a lost vote or entry is not); the next synced batch covers it */
    bool sync;
    bool reset; /* first restart the WAL after reset_index (a snapshot was installed) */
    uint64_t reset_index;
    fl_err err; /* set by the writer: FL_OK once durable, FL_ERR_IO after a failed sync */
    /* Loop-side: messages that may go out only once this batch (and every
     * earlier one) is durable. Plain messages without entries or snapshot. */
    struct raft_msg *held;
    size_t n_held;
} writer_batch;

void writer_batch_free(writer_batch *batch);

typedef struct writer writer;

typedef struct writer_stats {
    uint64_t wal_syncs;
    uint64_t wal_batches; /* wal_append_batch calls */
    uint64_t append_retries;
    uint64_t checkpoints;
    uint64_t checkpoint_failures;
    uint64_t last_checkpoint_index;
} writer_stats;

/* Starts the thread. `log` and `store` stay owned by the caller but are the
 * writer's to use (log exclusively) until writer_stop's callback has run.
 * on_done runs on the loop when batches are done or the thread exited.
 * test_checkpoint_sync: TEST-ONLY (see server_options). */
fl_err writer_create(uv_loop_t *loop, wal *log, mvcc_store *store, void (*on_done)(void *ctx),
                     void *ctx, fl_err (*test_checkpoint_sync)(void *ctx), void *test_ctx,
                     writer **out);

/* Queues a batch (ownership passes to the writer until it is handed back). */
void writer_submit(writer *w, writer_batch *batch);

/* The batches finished since the last call, in submit order (owned by the
 * caller), or NULL. *exited: the thread has exited (after writer_stop). */
writer_batch *writer_take_done(writer *w, bool *exited);

/* True while appends fail and are being retried (the disk is full): the
 * loop refuses new writes with FL_ERR_NOSPACE. True for good after a failed
 * fdatasync (writer_broken). */
bool writer_stalled(const writer *w);
bool writer_broken(const writer *w);
/* A client wants to write while stalled: retry the append now. */
void writer_nudge(writer *w);

/* Asks for a checkpoint at an applied index whose LMDB commit has returned:
 * the store is synced and WAL segments up to `index` are released. At most
 * one runs at a time; a request while one runs is dropped (returns false). */
bool writer_request_checkpoint(writer *w, uint64_t index);

/* Replacing the store (a snapshot install): quiesce waits until no
 * checkpoint uses the store and refuses new ones; set_store hands over the
 * new one and allows them again. Loop thread. */
void writer_quiesce_store(writer *w);
void writer_set_store(writer *w, mvcc_store *store);

/* Finishes what is queued, then exits; on_done reports exited. Then call
 * writer_join (loop) before touching the wal again. */
void writer_stop(writer *w);
void writer_join(writer *w);
/* After writer_join: closes the async handle; closed(ctx) runs once it is. */
void writer_close(writer *w, void (*closed)(void *ctx), void *ctx);
/* After closed ran (or if the handle was never used): frees w. */
void writer_destroy(writer *w);

void writer_get_stats(const writer *w, writer_stats *out);

#endif

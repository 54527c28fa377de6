/* server_internal: the member's state, shared by the server_*.c files.
 *
 * Threads: everything here belongs to the loop thread except the fields
 * marked (mu), which the WAL writer thread shares with it under srv->mu, and
 * the fields marked (writer), which only the writer thread touches once it
 * has started (the loop sets them before starting it).
 */
#ifndef FL_SERVER_INTERNAL_H
#define FL_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "mvcc/mvcc.h"
#include "server/server.h"
#include "wal/wal.h"

/* Bounds. */
#define SERVER_PENDING_WRITES_DEFAULT 65536u
#define SERVER_PENDING_READS_MAX      65536u
/* payload bytes accepted and not yet answered */
#define SERVER_PENDING_BYTES_MAX (256ull << 20)
/* one wal_append_batch: entries, and payload bytes (a single larger write still goes alone) */
#define SERVER_WAL_BATCH_MAX       1024u
#define SERVER_WAL_BATCH_BYTES_MAX (16u << 20)
/* entries per LMDB transaction during recovery */
#define SERVER_REPLAY_BATCH_MAX 1024u
#define SERVER_URLS_MAX         16u

/* One accepted write, from server_write until its done callback. Owned by
 * the server; it moves loop -> writer queue -> done list -> loop. */
typedef struct server_pending_write {
    struct server_pending_write *next;
    uint8_t *payload; /* owned (malloc'ed by mvcc_request_encode) */
    size_t payload_len;
    uint64_t index;          /* log index, assigned by the writer thread */
    fl_err wal_err;          /* FL_OK once appended and fsynced; then the apply's answer */
    bool logged;             /* appended and fsynced: it is in the log and must be applied */
    mvcc_response *response; /* allocated up front; handed to done on FL_OK */
    server_write_done_fn done;
    void *ctx;
} server_pending_write;

/* One finished read waiting for its done call on the next loop turn. */
typedef struct server_pending_read {
    struct server_pending_read *next;
    fl_err err;
    mvcc_range_result *result; /* owned until handed to done */
    server_range_done_fn done;
    void *ctx;
} server_pending_read;

typedef struct server_url_list {
    char *items[SERVER_URLS_MAX]; /* owned */
    size_t count;
} server_url_list;

struct server {
    uv_loop_t *loop;
    server_options options; /* string pointers replaced by the owned copies below */
    char *name;
    char *data_dir;
    char *wal_dir;
    char *db_dir;
    server_url_list peer_urls;
    server_url_list client_urls;
    int lock_fd; /* flock on <data-dir>/member, held while open */
    uint64_t cluster_id;
    uint64_t member_id;
    server_member member;

    mvcc_store *store;
    wal *log;

    /* Writer thread. */
    pthread_t writer;
    bool writer_started;
    bool writer_joined;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    server_pending_write *queue_head, *queue_tail; /* (mu) to be written */
    server_pending_write *done_head, *done_tail;   /* (mu) written, to be applied */
    bool writer_stop;                              /* (mu) exit once the queue is empty */
    bool writer_exited;                            /* (mu) */
    bool wal_broken;                               /* (mu) a wal_sync failed: write nothing more */
    bool async_ready;                              /* (mu) the writer may uv_async_send */
    uint64_t wal_syncs;                            /* (mu) */
    uint64_t wal_batches;                          /* (mu) */
    uint64_t next_index;                           /* (writer) */
    /* Checkpoints: the loop asks (ckpt_request = an applied index with no
     * LMDB batch open), the writer syncs LMDB and releases the WAL up to it
     * between two batches, because it owns the wal handle. */
    uint64_t ckpt_request;          /* (mu) index to checkpoint; 0 = none asked */
    bool ckpt_busy;                 /* (mu) asked and not finished */
    bool ckpt_sync_done;            /* (mu) the sync thread finished; result in ckpt_sync_err */
    fl_err ckpt_sync_err;           /* (mu) */
    pthread_t ckpt_sync_thread;     /* (writer) syncs LMDB while the writer goes on */
    bool ckpt_sync_running;         /* (writer) ckpt_sync_thread exists and is not joined */
    uint64_t ckpt_sync_index;       /* (writer) the index that sync covers */
    uint64_t checkpoints;           /* (mu) */
    uint64_t checkpoint_failures;   /* (mu) */
    uint64_t last_checkpoint_index; /* (mu) */
    uv_async_t async;               /* writer -> loop: done list has items or the writer exited */

    /* Loop side. */
    uint64_t writes_pending;
    uint64_t pending_bytes; /* payload bytes of writes_pending */
    uint64_t writes_acked;
    uint64_t writes_failed;
    uint64_t replayed;
    uint64_t ckpt_base; /* applied index of the last checkpoint asked for (or the WAL's start) */
    bool stopping;
    bool failed; /* fatal: apply or sync failed; writes answer FL_ERR_IO */
    /* Logged writes waiting for LMDB to have room again (its commit failed
     * with FL_ERR_NOSPACE), in log order, ahead of anything the writer
     * finishes later. While this is non-empty new writes are refused with
     * FL_ERR_NOSPACE and retry_timer re-applies the list with a backoff. */
    server_pending_write *stalled_head, *stalled_tail;
    uv_timer_t retry_timer;
    uint64_t retry_delay_ms; /* 0 = not stalled since the last success */
    uint64_t apply_stalls;   /* times applies had to wait for disk space */
    server_pending_read *reads_head, *reads_tail;
    size_t reads_count;
    uv_idle_t idle; /* active while reads wait for their done call */
    int handles_open;
    void (*stopped)(void *ctx);
    void *stopped_ctx;
};

/* server_meta.c: the member identity file and data dir lock. */
fl_err server_meta_load_or_create(server *srv, const char *token, char *errbuf, size_t errbuf_len);
uint64_t server_hash64(uint64_t seed, const void *data, size_t len);

/* server_recover.c: replay the WAL past MVCC's applied index. */
fl_err server_recover(server *srv, const wal_recovery_info *info, char *errbuf, size_t errbuf_len);

/* server_write.c: the writer thread and the apply step on the loop. */
fl_err server_writer_start(server *srv);
void server_writer_request_stop(server *srv);
void server_on_async(uv_async_t *handle);
/* server_checkpoint.c: make LMDB durable and release the WAL behind it. */
/* Loop, after applies (no LMDB batch open): asks the writer for a checkpoint
 * when snapshot_count entries were applied since the last one. */
void server_checkpoint_maybe(server *srv);
/* Any thread (see server_checkpoint.c for why that is safe): makes LMDB
 * durable up to every commit that returned before the call. */
fl_err server_checkpoint_sync(server *srv);
/* The wal handle's thread: after a sync with result sync_err, releases WAL
 * segments whose entries are all <= index (only if the sync succeeded) and
 * updates the counters. */
void server_checkpoint_release(server *srv, uint64_t index, fl_err sync_err);
/* The loop once the writer is joined (clean stop): sync, then release. */
void server_checkpoint_run(server *srv, uint64_t index);

/* At stop, after the writer exited: answer what still waits for disk space. */
void server_stall_finish(server *srv);

/* server_read.c */
void server_on_idle(uv_idle_t *handle);
void server_reads_flush(server *srv);

/* server.c: called once the writer has exited and everything is answered. */
void server_finish_stop(server *srv);
void server_enter_fatal(server *srv, fl_err err, const char *reason);

#endif

/* server: one Flotilla member of a Raft cluster (a cluster of one included).
 *
 * Owns: the member's state on its libuv loop: the data dir (wal/, db/,
 * snap/), the Raft node and its ready loop (node.c), persistence off the loop
 * (writer.c: WAL append + one fdatasync per batch = group commit), the peer
 * transport, the one applier of committed entries (replay and live), the
 * requests waiting for their entries, ReadIndex reads, membership, the
 * member identity (cluster id, member id, name, URLs).
 * Must not: parse protobuf or speak gRPC (that is src/api), or block the loop
 * on disk sync (the writer thread does that).
 *
 * Threading: every function here is called on the loop thread, and every
 * callback runs on the loop thread.
 *
 * Callbacks: when a server_* call that takes a `done` callback returns FL_OK,
 * done is called exactly once, later (never from inside the call), even if the
 * member is stopping (then with FL_ERR_STOPPED). When the call returns an
 * error, done is never called. The caller keeps ctx alive until then.
 */
#ifndef FL_SERVER_H
#define FL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mvcc/mvcc.h"
#include "util/error.h"

/* The etcd API version Flotilla implements; clients pick features by it. */
#define SERVER_ETCD_API_VERSION "3.4.0"
/* The cluster version the first leader sets through the log, as etcd 3.4. */
#define SERVER_ETCD_CLUSTER_VERSION "3.4.0"

/* Entries applied between two checkpoints unless options say otherwise. */
#define SERVER_SNAPSHOT_COUNT_DEFAULT 100000u

typedef struct server server;

typedef struct server_options {
    const char *name;                  /* member name; default "default" */
    const char *data_dir;              /* default "<name>.flotilla" */
    const char *advertise_client_urls; /* comma-separated; shown in member list */
    const char *initial_cluster_token; /* seeds the cluster id; default "flotilla-cluster" */
    uint64_t quota_backend_bytes;      /* 0 = 2 GiB, etcd's default */
    uint32_t max_txn_ops;              /* 0 = 128, etcd's default */
    uint32_t pending_writes_max;       /* bound on writes waiting for the WAL; 0 = 65536 (and
                                          256 MiB of payload): more -> FL_ERR_BUSY */
    /* Added by the server engineer (zero-initialised callers keep the old meaning): */
    const char *initial_advertise_peer_urls; /* comma-separated; seeds the member id and shows in
                                                member list; default "http://localhost:2380" */
    uint64_t wal_segment_bytes; /* WAL segment size; 0 = the wal's default (tests use small) */
    const struct wal_test_hooks *wal_test_hooks; /* TEST-ONLY (see wal.h); NULL in production */
    uint64_t backend_map_bytes; /* LMDB map size; 0 = mvcc's default, grown to fit the quota */
    /* Checkpoint (make LMDB durable, release WAL segments it covers) after
     * this many entries applied since the last one, and at a clean stop;
     * 0 = SERVER_SNAPSHOT_COUNT_DEFAULT (etcd's --snapshot-count). */
    uint64_t snapshot_count;
    /* TEST-ONLY, NULL in production: called on the thread running a
     * checkpoint right before its LMDB sync; a non-FL_OK return is taken as
     * the sync's failure (the sync is not made), to test that a failed sync
     * releases nothing. */
    fl_err (*test_checkpoint_sync)(void *ctx);
    void *test_checkpoint_ctx;
    /* Cluster (etcd's flags and meaning). NULL/0 = a cluster of one:
     * initial_cluster "<name>=<first peer URL>", state "new". */
    const char *initial_cluster;       /* "name=peerURL,name=peerURL,..." */
    const char *initial_cluster_state; /* "new" (default) or "existing" */
    const char *listen_peer_urls;      /* where the transport listens; default: the first
                                          advertised peer URL's port on 127.0.0.1 */
    uint32_t heartbeat_ms;             /* 0 = 100 */
    uint32_t election_ms;              /* 0 = 1000; >= 5 x heartbeat (etcd's rule) */
    uint32_t request_timeout_ms;       /* a write or read not answered by then gets
                                          FL_ERR_TIMEOUT; 0 = 5000 + 2 x election_ms */
    const char *test_fault_file;       /* TEST-ONLY: transport drops peers listed there */
    bool test_unsafe_local_reads;      /* TEST-ONLY: linearizable reads served locally
                                          (a planted bug for the linearizability checker) */
    /* Called (on the loop) when the member can no longer make progress safely:
     * LMDB failed to apply entries the WAL already made durable, or a WAL
     * fsync failed. Pending writes have been failed with FL_ERR_IO and new
     * writes get FL_ERR_IO; serializable reads still work (linearizable ones
     * time out: Raft is stopped). The owner should stop and exit
     * non-zero; a restart replays the WAL. NULL = abort(). */
    void (*fatal)(void *ctx, fl_err err, const char *reason);
    void *fatal_ctx;
} server_options;

/* Before server_start_serving: the client URLs this member publishes (e.g.
 * once listeners on port 0 know their port). Comma-separated. */
fl_err server_set_client_urls(server *srv, const char *urls);
/* The listeners are up: publish this member's name and client URLs through
 * the log (retried until applied), as etcd does at every start. */
void server_start_serving(server *srv);

/* Opens the data dir (creating it), recovers, and is ready to serve.
 * On failure returns an error and writes a one-line reason into errbuf
 * (e.g. the corrupt WAL file and offset). *out is owned by the caller:
 * server_stop then server_destroy after the loop has drained. */
fl_err server_create(uv_loop_t *loop, const server_options *options, server **out, char *errbuf,
                     size_t errbuf_len);
/* Stops: a leader first hands leadership over (up to an election timeout);
 * then new work is refused, what waits is answered FL_ERR_STOPPED at once
 * (it may still be in the log: "server stopped" does not claim failure), the
 * writer finishes what it was given, a last checkpoint runs and the handles
 * close. Calls stopped(ctx) when every handle is closed. */
void server_stop(server *srv, void (*stopped)(void *ctx), void *ctx);
void server_destroy(server *srv);

typedef struct server_header {
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t revision;
    uint64_t raft_term;
} server_header;

/* The header every response carries, as of now. */
void server_get_header(const server *srv, server_header *out);

/* Writes: put, delete, txn, compact. The request is borrowed for the duration
 * of the call (it is validated and encoded before this returns).
 * Errors returned at once: validation (FL_ERR_KEY_EMPTY, FL_ERR_DUPLICATE_KEY,
 * FL_ERR_TOO_MANY_OPS), FL_ERR_BUSY (too many pending), FL_ERR_STOPPED.
 * done gets err == FL_OK and an owned, malloc'ed *response (the callee
 * releases it with mvcc_response_free(response) and then free(response)), or an apply-time error
 * (FL_ERR_COMPACTED, FL_ERR_FUTURE_REV, FL_ERR_NOSPACE, FL_ERR_NO_SPACE_QUOTA, ...) and NULL. The
 * reply's header comes from server_get_header at callback time, except header.revision =
 * response->revision. */
typedef void (*server_write_done_fn)(void *ctx, fl_err err, mvcc_response *response);
fl_err server_write(server *srv, const mvcc_request *request, server_write_done_fn done, void *ctx);

/* Reads. serializable=false is linearizable: it observes every write whose
 * reply was sent before this call. done gets an owned, malloc'ed *result
 * (the callee releases it with mvcc_range_result_free(result) and then
 * free(result)) or an error and NULL. */
typedef void (*server_range_done_fn)(void *ctx, fl_err err, mvcc_range_result *result);
fl_err server_range(server *srv, const mvcc_range_req *request, bool serializable,
                    server_range_done_fn done, void *ctx);

/* Membership (etcd's Cluster service). done gets the member id concerned,
 * or an error: FL_ERR_MEMBER_NOT_FOUND, FL_ERR_PEER_URL_EXISTS,
 * FL_ERR_MEMBER_ID_REMOVED, FL_ERR_MEMBER_NOT_LEARNER,
 * FL_ERR_LEARNER_NOT_READY, FL_ERR_NOT_ENOUGH_STARTED, FL_ERR_NO_LEADER,
 * FL_ERR_TIMEOUT. It is called once the change is applied on this member. */
typedef void (*server_member_done_fn)(void *ctx, fl_err err, uint64_t member_id);
fl_err server_member_add(server *srv, const char *const *peer_urls, size_t n, bool is_learner,
                         server_member_done_fn done, void *ctx);
fl_err server_member_remove(server *srv, uint64_t id, server_member_done_fn done, void *ctx);
fl_err server_member_update(server *srv, uint64_t id, const char *const *peer_urls, size_t n,
                            server_member_done_fn done, void *ctx);
fl_err server_member_promote(server *srv, uint64_t id, server_member_done_fn done, void *ctx);

/* Maintenance.MoveLeader: this member must be the leader (FL_ERR_NOT_LEADER);
 * done runs once `target` leads, or with FL_ERR_TIMEOUT. */
fl_err server_move_leader(server *srv, uint64_t target, server_member_done_fn done, void *ctx);

/* Maintenance.HashKV (local, etcd's semantics: every member that applied
 * the same log answers the same hash). */
fl_err server_hash_kv(server *srv, int64_t revision, uint32_t *hash, int64_t *compact_revision,
                      int64_t *hash_revision);
/* Maintenance.Alarm GET: the active alarms as applied here; *out owned by the
 * caller (free()). ACTIVATE/DEACTIVATE are writes (MVCC_REQ_ALARM). */
fl_err server_alarms(server *srv, mvcc_alarm **out, size_t *count);

typedef struct server_status {
    const char *version; /* SERVER_ETCD_API_VERSION */
    int64_t db_size_bytes;
    int64_t db_size_in_use_bytes;
    uint64_t leader_id;
    uint64_t raft_index;
    uint64_t raft_term;
    uint64_t raft_applied_index;
    bool is_learner;
    const char *error; /* a member-level problem ("" when none), for Status.errors */
} server_status;
void server_get_status(const server *srv, server_status *out);

typedef struct server_member {
    uint64_t id;
    const char *name;
    const char *const *peer_urls;
    size_t peer_urls_count;
    const char *const *client_urls;
    size_t client_urls_count;
    bool is_learner;
} server_member;
/* The members, as applied on this member; borrowed until the next loop
 * iteration. */
void server_get_members(const server *srv, const server_member **members, size_t *count);

/* Counters for tests and metrics. wal_syncs < writes_acked proves group commit. */
typedef struct server_stats {
    uint64_t wal_syncs;             /* wal_sync calls that returned FL_OK */
    uint64_t wal_batches;           /* wal_append_batch calls */
    uint64_t writes_acked;          /* writes whose done got FL_OK or an apply-time error */
    uint64_t writes_failed;         /* writes failed before apply (WAL error, stop) */
    uint64_t writes_pending;        /* accepted, done not yet called */
    uint64_t replayed;              /* entries replayed from the WAL at start-up */
    uint64_t apply_stalls;          /* times LMDB had no disk space and logged writes waited */
    uint64_t checkpoints;           /* checkpoints done: LMDB synced, WAL released up to it */
    uint64_t checkpoint_failures;   /* checkpoints skipped: the LMDB sync or the release failed */
    uint64_t last_checkpoint_index; /* applied index the last checkpoint made durable (0: none) */
    uint64_t forwarded;             /* proposals forwarded to the leader */
    uint64_t leader_changes;        /* times this member saw a new leader */
    uint64_t term;
    uint64_t leader_id;
} server_stats;
void server_get_stats(const server *srv, server_stats *out);

/* The data dir actually used (options->data_dir or the default). */
const char *server_data_dir(const server *srv);

#endif

/* server_internal: the member's state, shared by the server files.
 *
 * Threads: everything here belongs to the loop thread. The WAL writer thread
 * has its own type (writer.h) and shares nothing else with the loop.
 *
 * Parts (one file each):
 *   server.c      life cycle, identity, the read-only views
 *   bootstrap.c   data dir, identity file, first start of a cluster, restart
 *   node.c        the Raft ready loop: tick, step, propose, persist (writer),
 *                 send (transport), hand committed entries to apply
 *   apply.c       the one applier, for entries replayed at start and live ones
 *   wait.c        requests waiting for their entry to apply, by request id
 *   read.c        linearizable reads (ReadIndex, batched) and serializable ones
 *   membership.c  member add/remove/update/promote, publish, reconciliation
 *   checkpoint.c  when to sync LMDB and release the WAL and the Raft log
 */
#ifndef FL_SERVER_INTERNAL_H
#define FL_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "mvcc/mvcc.h"
#include "raft/raft.h"
#include "server/cluster.h"
#include "server/server.h"
#include "server/writer.h"
#include "transport/transport.h"
#include "wal/wal.h"

/* Bounds. */
#define SERVER_PENDING_WRITES_DEFAULT 65536u
#define SERVER_PENDING_READS_MAX      65536u
#define SERVER_PENDING_BYTES_MAX      (256ull << 20) /* payload bytes accepted, not answered */
#define SERVER_PROPOSALS_TURN_MAX     4096u          /* proposals flushed per loop turn */
#define SERVER_APPLY_BATCH_MAX        1024u          /* entries per LMDB transaction */
#define SERVER_APPLY_QUEUE_BYTES_MAX  (512ull << 20) /* committed, not yet applied */
#define SERVER_WAIT_BUCKETS           4096u
#define SERVER_RAFT_KEEP_ENTRIES      5000u /* kept in memory behind a compaction */
#define SERVER_GROUP_ID               0u    /* the one Raft group, until sharding */
#define SERVER_INFLIGHT_MAX           1024u /* writer batches in flight */

/* A forwarded proposal is a message the transport carries but raft never
 * sees: the entries of followers' clients, sent to the leader. */
#define SERVER_MSG_PROPOSE TRANSPORT_MSG_PROPOSE

/* One request waiting for its entry to be applied (or a read for its read
 * index). Owned by the server from acceptance until done is called. */
typedef struct server_waiter {
    struct server_waiter *next_in_bucket;
    struct server_waiter *prev_age, *next_age; /* oldest first, for timeouts */
    uint64_t id;
    uint64_t deadline_ms;
    size_t bytes; /* counted in pending_bytes */
    enum { WAITER_WRITE, WAITER_MEMBER } kind;
    server_write_done_fn write_done;
    server_member_done_fn member_done;
    void *ctx;
} server_waiter;

/* A message held until every batch submitted before it is durable. */
typedef struct server_held_msg {
    struct server_held_msg *next;
    uint64_t wait_seq;
    struct raft_msg msg; /* plain: no entries, no snapshot */
} server_held_msg;

/* What the loop remembers of a batch while the writer has it. */
typedef struct server_inflight {
    uint64_t seq;
    uint64_t first, last, last_term; /* entries; 0 when the batch has none */
    uint64_t snap_index, snap_term;  /* an installed snapshot this batch made durable */
} server_inflight;

/* A snapshot raft handed out to install, and the received body for it. */
typedef struct server_snapshot_state {
    char *incoming_path; /* owned: the last body received (in snap/), or NULL */
    uint64_t incoming_index, incoming_term;
} server_snapshot_state;

/* A committed entry copied out of raft, waiting to be applied. */
typedef struct server_apply_item {
    struct server_apply_item *next;
    uint64_t index;
    uint64_t term;
    raft_entry_type type;
    uint32_t len;
    uint8_t data[]; /* len bytes */
} server_apply_item;

/* A linearizable read waiting for its read index, then for applied >= it. */
typedef struct server_read {
    struct server_read *next;
    mvcc_range_req req; /* keys copied into `keys` */
    uint8_t *keys;      /* owned */
    uint64_t read_id;   /* the ReadIndex round it joined */
    uint64_t index;     /* read index once known, else 0 */
    uint64_t deadline_ms;
    server_range_done_fn done;
    void *ctx;
} server_read;

/* A finished read waiting for its done call on the next loop turn. */
typedef struct server_read_done {
    struct server_read_done *next;
    fl_err err;
    mvcc_range_result *result; /* owned until handed to done */
    server_range_done_fn done;
    void *ctx;
} server_read_done;

struct server {
    uv_loop_t *loop;
    server_options options; /* strings point at owned copies or are unused */
    char *name;
    char *data_dir;
    char *wal_dir;
    char *db_dir;
    char *snap_dir;
    char *token;
    char *listen_peer_url;
    wal_hard_state wal_hard_state; /* the newest found at start-up */
    uint64_t wal_first_index;      /* at start-up */
    int lock_fd;
    uint64_t cluster_id;
    uint64_t member_id;
    cluster_member self;   /* this member's own attributes (name, URLs) from flags */
    cluster_state cluster; /* the replicated table, as applied */
    bool published;        /* our PUBLISH entry applied since start */
    bool serving;          /* server_start_serving: client URLs final, publish them */
    bool was_member;       /* the table listed us once: leaving it means removal */
    uint32_t publish_ticks;
    uint64_t peer_ids[RAFT_MEMBERS_MAX]; /* peers given to the transport */
    uint32_t n_peer_ids;
    server_waiter *move_waiter; /* MoveLeader in progress (owned) */
    uint64_t move_target;

    mvcc_store *store;
    wal *log;
    writer *writer;
    transport *transport;
    struct raft_node *raft;

    /* Raft view, updated from each ready (loop). */
    uint64_t leader_id;
    raft_role role;
    uint64_t term;
    uint64_t commit_index;
    uint64_t persisted_index; /* every entry <= it in the current log is durable */
    uint64_t last_index;      /* last entry handed out for persisting */
    uint64_t last_term;
    uint64_t writes_in_flight;                   /* batches submitted, not yet handed back */
    writer_batch *inflight_head, *inflight_tail; /* ...kept in order for held messages */
    uint64_t start_commit; /* commit index at start: applying up to it is replay */
    uint64_t leader_changes;
    uint64_t submitted_seq, completed_seq; /* writer batches */
    server_inflight inflight[SERVER_INFLIGHT_MAX];
    server_held_msg *held_head, *held_tail;
    server_snapshot_state snap;
    uint64_t snapshot_seq;
    bool wal_reset_pending; /* the next batch restarts the WAL after wal_reset_index */
    uint64_t wal_reset_index, wal_reset_term;
    uint64_t snapshot_installed_index; /* raft_applied after the ready's advance */
    bool cluster_id_known;             /* false on a member joining until its first snapshot */
    uint64_t rng;
    uint64_t synced_term, synced_vote; /* hard state last handed out to be synced */
    bool in_process;
    bool kicked;

    /* Proposals of this loop turn, flushed together (raft_propose_many on
     * the leader, one forward message per turn on a follower). Owned. */
    uint8_t *prop_data[SERVER_PROPOSALS_TURN_MAX];
    uint32_t prop_len[SERVER_PROPOSALS_TURN_MAX];
    uint32_t n_props;

    /* Committed entries waiting for local persistence or for LMDB room. */
    server_apply_item *apply_head, *apply_tail;
    uint64_t apply_bytes;
    uv_timer_t retry_timer; /* LMDB had no disk space: retry applying */
    uint64_t retry_delay_ms;
    bool apply_stalled;

    /* Requests waiting for their entry (wait.c). */
    server_waiter *wait_buckets[SERVER_WAIT_BUCKETS];
    server_waiter *age_head, *age_tail;
    uint64_t next_request_id;
    uint64_t writes_pending;
    uint64_t pending_bytes;

    /* Reads (read.c). */
    server_read *reads_waiting_head, *reads_waiting_tail; /* read index not yet known */
    server_read *reads_ready_head, *reads_ready_tail;     /* waiting for applied >= index */
    size_t reads_count;
    uint64_t next_read_id;
    uint64_t read_round_open; /* read id of reads gathered this turn, 0 = none */
    server_read_done *reads_done_head, *reads_done_tail;

    /* Handles. */
    uv_timer_t tick_timer;
    uv_check_t check;       /* after I/O callbacks: flush proposals, process readies */
    uv_prepare_t prepare;   /* before blocking: the same, for work timers queued */
    uv_idle_t idle;         /* keeps the loop from blocking while work remains */
    uv_timer_t sweep_timer; /* deadlines of waiting requests */
    int handles_open;

    /* Counters. */
    uint64_t writes_acked;
    uint64_t writes_failed;
    uint64_t replayed;
    uint64_t apply_stalls;
    uint64_t forwarded;
    uint64_t ckpt_base; /* applied index of the last checkpoint asked for */

    bool stopping;
    bool stop_started; /* new work refused, transport and writer told to stop */
    bool writer_exited;
    bool writer_finishing; /* final checkpoint done, handles closing */
    bool writer_closed;
    bool transport_open; /* transport_stop called, stopped callback not yet */
    bool stop_reported;
    bool create_failed;
    bool joining;              /* --initial-cluster-state existing */
    uv_timer_t transfer_timer; /* stop: waiting for the leadership hand-over */
    bool transfer_timer_open;
    uint64_t transfer_deadline_ms;
    uint64_t final_checkpoint_index;
    server_member member_views[RAFT_MEMBERS_MAX];
    const char *member_url_ptrs[RAFT_MEMBERS_MAX][2][CLUSTER_URLS_MAX];
    bool failed;  /* fatal: writes answer FL_ERR_IO */
    bool removed; /* this member was removed from the cluster */
    void (*stopped)(void *ctx);
    void *stopped_ctx;
};

/* server_meta.c: the identity file and the data dir lock. */
fl_err server_meta_load_or_create(server *srv, char *errbuf, size_t errbuf_len);
fl_err server_fsync_dir(const char *dir); /* errno mapped with fl_err_from_errno */

/* bootstrap.c */
fl_err server_open_storage(server *srv, char *errbuf, size_t errbuf_len);
fl_err server_open_store(server *srv); /* (re)opens srv->store on db_dir */

/* node.c */
raft_entry_type server_raft_type_of(wal_entry_type t);
fl_err server_node_start(server *srv, char *errbuf, size_t errbuf_len);
void server_node_kick(server *srv); /* raft has input: process readies soon */
void server_node_process(server *srv);
void server_node_on_message(void *ctx, uint64_t group_id, const struct raft_msg *msg,
                            const char *snapshot_path);
void server_node_on_writer(void *ctx);
/* Queues an owned entry (entry.h envelope) for this turn's proposal flush.
 * FL_ERR_UNAVAILABLE with no leader, FL_ERR_BUSY when the turn is full. */
fl_err server_node_propose(server *srv, uint8_t *data, uint32_t len);
void server_node_stop(server *srv);

/* snapshot.c */
fl_err server_snapshot_open(void *ctx, uint64_t group_id, const struct raft_msg *msg, int *fd,
                            uint64_t *size);
void server_snapshot_received(server *srv, const struct raft_msg *msg, const char *path);
void server_snapshot_take_ready(server *srv, const struct raft_snapshot *snap);
void server_snapshot_free(server *srv);

/* apply.c */
void server_apply_enqueue(server *srv, const struct raft_entry *entries, size_t n);
void server_apply_run(server *srv);
void server_apply_free_queue(server *srv);
/* Makes the first apply of a new store: index 1 holds the initial cluster. */
fl_err server_apply_bootstrap(server *srv, const cluster_state *initial);
/* Reads the member table from the store's meta record into srv->cluster. */
fl_err server_apply_load_cluster(server *srv);

/* write.c */
fl_err server_write_admit(server *srv);
/* Assigns w an id and deadline, registers it and queues the entry
 * (kind + id + body) for proposal. On error w is not registered (the caller
 * frees it). */
fl_err server_propose_waiting(server *srv, int kind, const uint8_t *body, size_t body_len,
                              server_waiter *w);

/* wait.c */
uint64_t server_wait_new_id(server *srv);
fl_err server_wait_add(server *srv, server_waiter *w);
server_waiter *server_wait_take(server *srv, uint64_t id);
void server_wait_sweep(server *srv, uint64_t now_ms, bool all, fl_err err);
void server_waiter_finish_write(server *srv, server_waiter *w, fl_err err, mvcc_response *response);
void server_waiter_finish_member(server *srv, server_waiter *w, fl_err err, uint64_t member_id);

/* read.c */
void server_reads_on_read_states(server *srv, const struct raft_read_state *rs, size_t n);
void server_reads_on_applied(server *srv);
void server_reads_flush_round(server *srv);
void server_reads_flush_done(server *srv);
void server_reads_fail_all(server *srv, fl_err err);
void server_reads_fail_waiting(server *srv, fl_err err); /* those without a read index yet */
void server_reads_sweep(server *srv, uint64_t now_ms);

/* membership.c */
void server_membership_on_applied(server *srv);
void server_membership_after_leader_change(server *srv);
void server_membership_on_tick(server *srv);
/* Peers of the transport follow the member table (add/remove/URL updates). */
void server_membership_sync_peers(server *srv);

/* checkpoint.c */
void server_checkpoint_maybe(server *srv);

/* server.c */
uint64_t server_now_ms(const server *srv);
void server_enter_fatal(server *srv, fl_err err, const char *reason);
void server_maybe_finish_stop(server *srv);
void server_stop_now(server *srv);

#endif

/* raft/internal.h: the node's insides, shared by the files of src/raft only.
 *
 * One concept per file: alloc.c (the allocation seam), blob.c (shared entry bytes), log.c (the
 * in-memory log), conf.c (configurations and quorums), progress.c (per-follower replication state),
 * election.c, replication.c, read_only.c, confchange.c, ready.c, raft.c (node life cycle and
 * message dispatch).
 */
#ifndef FL_RAFT_INTERNAL_H
#define FL_RAFT_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#ifndef FLOTILLA_RAFT_BUG
#define FLOTILLA_RAFT_BUG 0
#endif
/* Deliberate bugs for the simulation harness; see docs/raft.md. */
#define RAFT_BUG(k) (FLOTILLA_RAFT_BUG == (k))

/* ---- alloc.c: the one allocation seam (fault injection in tests) ---- */
void *raft_malloc(size_t size);
void *raft_calloc(size_t n, size_t size);
void *raft_realloc(void *p, size_t size);
void raft_mfree(void *p);
#ifdef RAFT_FAULT_INJECTION
extern int64_t raft_fault_countdown;
#endif

/* ---- blob.c: reference-counted bytes behind entry and snapshot data ----
 * Entry bytes are shared by the log and by outgoing messages; a message in a
 * ready must outlive a log truncation that happens before it is handed out. */
uint8_t *raft_blob_new(const void *src, uint32_t len); /* NULL if len 0 or no memory */
/* Copying the bytes of many entries with one allocation: begin with the sum
 * of raft_blob_batch_bytes(len) over them, add copies one entry's bytes (one
 * reference), end drops the builder's own reference. */
struct raft_chunk;
struct raft_blob_batch {
    struct raft_chunk *chunk;
    uint8_t *cursor, *end;
};
size_t raft_blob_batch_bytes(uint32_t len);
fl_err raft_blob_batch_begin(struct raft_blob_batch *b, size_t bytes);
uint8_t *raft_blob_batch_add(struct raft_blob_batch *b, const void *src, uint32_t len);
void raft_blob_batch_end(struct raft_blob_batch *b);
void raft_blob_ref(uint8_t *data);   /* data may be NULL */
void raft_blob_unref(uint8_t *data); /* data may be NULL */

/* ---- log.c ----
 * entries[start .. start+len) hold indexes prev_index+1 .. last.
 * Two hand-offs, each with its acknowledgement coming later (ready.c):
 *   handed_persist: entries up to it were handed out to persist;
 *   stable:         the caller reported them durable (raft_persisted);
 *   handed_apply:   committed entries up to it were handed out to apply;
 *   applied:        the caller reported them applied (raft_applied).
 * prev_index <= applied <= handed_apply <= committed, handed_apply <=
 * handed_persist <= last and stable <= handed_persist. A truncation pulls
 * handed_persist and stable back below the truncation point, so the new tail
 * is handed out again. */
struct raft_log {
    struct raft_entry *entries;
    uint64_t start, len, cap;
    uint64_t prev_index, prev_term;
    uint64_t handed_persist, stable;
    uint64_t committed, handed_apply, applied;
};

fl_err raft_log_init(struct raft_log *log, uint64_t prev_index, uint64_t prev_term);
void raft_log_free(struct raft_log *log);
uint64_t raft_log_last_index(const struct raft_log *log);
uint64_t raft_log_last_term(const struct raft_log *log);
/* False if index is compacted or beyond the end. */
bool raft_log_term(const struct raft_log *log, uint64_t index, uint64_t *term);
bool raft_log_match_term(const struct raft_log *log, uint64_t index, uint64_t term);
const struct raft_entry *raft_log_get(const struct raft_log *log, uint64_t index);
/* Makes room for n more entries, so the next n appends cannot fail. */
fl_err raft_log_reserve(struct raft_log *log, uint64_t n);
/* Appends e at last+1, taking ownership of e->data (one reference). */
fl_err raft_log_append(struct raft_log *log, const struct raft_entry *e);
/* Appends copies of es[0..n) (caller-owned bytes) with one allocation for
 * all their bytes. On failure the entries before the failing one stay. */
fl_err raft_log_append_copies(struct raft_log *log, const struct raft_entry *es, size_t n);
/* Drops entries from index on (index > committed). */
void raft_log_truncate_from(struct raft_log *log, uint64_t index);
/* Drops entries up to index (index <= applied). */
void raft_log_compact_to(struct raft_log *log, uint64_t index);
/* Resets to an empty log after (index, term): snapshot install. The snapshot
 * counts as committed, handed out and applied (the caller installs it from the
 * ready); it also counts as stable: its entries are committed, so a leader
 * counting them early cannot commit anything by it (only entries of its own,
 * later, term commit by counting). */
void raft_log_reset(struct raft_log *log, uint64_t index, uint64_t term);
void raft_log_commit_to(struct raft_log *log, uint64_t index);
bool raft_log_up_to_date(const struct raft_log *log, uint64_t index, uint64_t term);
/* The largest index <= index whose term is <= term (fast backtracking). */
uint64_t raft_log_conflict_by_term(const struct raft_log *log, uint64_t index, uint64_t term);

/* ---- conf.c ---- */
bool raft_ids_contain(const raft_id *ids, uint32_t n, raft_id id);
bool raft_conf_is_joint(const struct raft_conf *conf);
bool raft_conf_is_member(const struct raft_conf *conf, raft_id id);
/* The value a majority of each voter set reaches (joint: the smaller one).
 * get(id) returns the value of voter id. */
uint64_t raft_conf_quorum_value(const struct raft_conf *conf,
                                uint64_t (*get)(const void *ctx, raft_id id), const void *ctx);
typedef enum raft_vote_result { RAFT_VOTE_PENDING, RAFT_VOTE_WON, RAFT_VOTE_LOST } raft_vote_result;
/* granted(id): 1 granted, 0 rejected, -1 no answer yet. */
raft_vote_result raft_conf_tally(const struct raft_conf *conf,
                                 int (*granted)(const void *ctx, raft_id id), const void *ctx);

/* ---- progress.c ---- */
typedef enum raft_progress_state {
    RAFT_PROGRESS_PROBE,     /* one append at a time until we find the match */
    RAFT_PROGRESS_REPLICATE, /* pipelined appends, bounded by inflights */
    RAFT_PROGRESS_SNAPSHOT,  /* a snapshot is on its way: send nothing else */
} raft_progress_state;

struct raft_progress {
    raft_id id;
    raft_progress_state state;
    uint64_t match, next;
    uint64_t pending_snapshot;   /* SNAPSHOT: index of the snapshot sent */
    uint64_t snapshot_sent_tick; /* SNAPSHOT: to retry a lost one */
    uint64_t sent_commit;        /* last commit index told to this follower */
    uint64_t read_acked;         /* highest read round the follower acknowledged */
    bool probe_sent;             /* PROBE: an append is outstanding */
    bool recent_active;          /* heard from since the last check-quorum */
    bool vote_answered, vote_granted;
    /* REPLICATE: last index of each append in flight, a ring. */
    uint32_t inflight_start, inflight_count, inflight_cap;
    uint64_t inflight[RAFT_INFLIGHT_MAX];
};

void raft_progress_init(struct raft_progress *pr, raft_id id, uint64_t next, uint32_t inflight_cap);
void raft_progress_become_probe(struct raft_progress *pr);
void raft_progress_become_replicate(struct raft_progress *pr);
void raft_progress_become_snapshot(struct raft_progress *pr, uint64_t index, uint64_t now);
bool raft_progress_is_paused(const struct raft_progress *pr);
/* An accepted append up to index: true if match moved. */
bool raft_progress_maybe_update(struct raft_progress *pr, uint64_t index);
/* A rejection of the append after `rejected`; hint is the follower's guess. */
bool raft_progress_maybe_decrease(struct raft_progress *pr, uint64_t rejected, uint64_t hint);
void raft_progress_sent_entries(struct raft_progress *pr, uint64_t last_index);
void raft_progress_free_inflights_to(struct raft_progress *pr, uint64_t index);

/* ---- the node ---- */
struct raft_read_req {
    uint64_t read_id;
    raft_id from; /* the node itself, or the follower that asked */
    uint64_t round;
};

struct raft_msg_queue {
    struct raft_msg *msgs;
    uint32_t len, cap;
};

struct raft_node {
    struct raft_config cfg;
    raft_id id;
    uint64_t term;
    raft_id vote;
    raft_role role;
    raft_id lead;
    struct raft_log log;
    struct raft_conf conf;
    struct raft_snapshot snapshot; /* latest; data is a blob */
    bool snapshot_to_install;      /* received, not yet handed out */
    uint64_t snapshot_unapplied;   /* handed out, install not yet reported by raft_applied */

    struct raft_progress *prs; /* one per member */
    uint32_t n_prs;

    uint32_t election_elapsed, heartbeat_elapsed, randomized_timeout;
    uint64_t ticks;
    raft_id lead_transferee;
    uint64_t pending_conf_index;
    uint64_t uncommitted_bytes;
    bool bcast_pending; /* leader: send appends when the ready is built */
    /* Leader that won alone (no vote went out, so its new term may not be on
     * disk yet): no append leaves until stable reaches this index (its first
     * entry, handed out with the new hard state). Otherwise a crash before
     * that write could let it lead the same term twice, with two logs. */
    uint64_t appends_wait_stable;

    /* read_only.c */
    struct raft_read_req *reads; /* ring, grown on demand up to RAFT_READS_MAX */
    uint32_t reads_start, reads_len, reads_cap;
    uint64_t read_round;
    bool read_round_pending;
    struct raft_read_state *read_states; /* grown on demand up to RAFT_READS_MAX */
    uint32_t n_read_states, read_states_cap;

    /* ready.c */
    struct raft_msg_queue out, handed;
    struct raft_hard_state prev_hs;
    struct raft_soft_state prev_ss;
    bool in_ready;
    uint64_t ready_persist_to, ready_apply_to;
    bool ready_snapshot;
    struct raft_read_state *handed_read_states;
    uint32_t n_handed_read_states, handed_read_states_cap;
};

/* raft.c */
void raft_send(struct raft_node *n, struct raft_msg *m); /* takes m's entries/blobs */
void raft_msg_release(struct raft_msg *m);
struct raft_progress *raft_progress_of(struct raft_node *n, raft_id id);
bool raft_promotable(const struct raft_node *n);
uint64_t raft_random_timeout(struct raft_node *n);

/* election.c */
void raft_become_follower(struct raft_node *n, uint64_t term, raft_id lead);
void raft_become_leader(struct raft_node *n);
void raft_start_campaign(struct raft_node *n, raft_msg_type kind, bool transfer);
void raft_handle_vote_request(struct raft_node *n, const struct raft_msg *m);
void raft_handle_vote_response(struct raft_node *n, const struct raft_msg *m);
void raft_tick_election(struct raft_node *n);
void raft_tick_leader(struct raft_node *n);

/* replication.c */
fl_err raft_append_entry(struct raft_node *n, raft_entry_type type, const void *data, uint32_t len);
bool raft_appends_held(const struct raft_node *n);
bool raft_send_append(struct raft_node *n, struct raft_progress *pr, bool allow_empty);
void raft_bcast_append(struct raft_node *n);
void raft_bcast_heartbeat(struct raft_node *n);
bool raft_maybe_commit(struct raft_node *n);
void raft_handle_append(struct raft_node *n, const struct raft_msg *m);
void raft_handle_append_response(struct raft_node *n, const struct raft_msg *m);
void raft_handle_heartbeat(struct raft_node *n, const struct raft_msg *m);
void raft_handle_heartbeat_response(struct raft_node *n, const struct raft_msg *m);
void raft_handle_snapshot(struct raft_node *n, const struct raft_msg *m);
void raft_send_timeout_now(struct raft_node *n, raft_id to);

/* read_only.c */
fl_err raft_read_request(struct raft_node *n, uint64_t read_id, raft_id from);
void raft_read_release(struct raft_node *n);
void raft_read_reset(struct raft_node *n);
void raft_handle_read_index(struct raft_node *n, const struct raft_msg *m);
void raft_handle_read_index_response(struct raft_node *n, const struct raft_msg *m);
fl_err raft_read_state_push(struct raft_node *n, uint64_t index, uint64_t read_id);

/* confchange.c */
fl_err raft_apply_conf_entry(struct raft_node *n, const struct raft_entry *e);
fl_err raft_progress_rebuild(struct raft_node *n);
bool raft_has_unapplied_conf_change(const struct raft_node *n);
void raft_maybe_leave_joint(struct raft_node *n);

#endif

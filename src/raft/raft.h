/* raft: the Raft consensus state machine, pure.
 *
 * Owns: terms, votes, the in-memory log (entries after the last snapshot),
 * per-follower replication progress, commit index, membership (joint
 * consensus), ReadIndex, leadership transfer.
 * Must not: do I/O, read clocks, spawn threads, or draw randomness of its own.
 * Time comes in through raft_tick(), randomness through the config callback,
 * durability through the caller, who persists what raft_ready() hands out.
 *
 * The contract, run by one thread (the node takes no locks). Persisting and
 * applying are asynchronous: the event loop never waits for an fsync.
 *
 *     raft_step / raft_tick / raft_propose / raft_read_index / ...   (inputs)
 *     if (raft_has_ready(n)) {
 *         raft_ready(n, &rd);   copy/serialize what you keep, queue the write
 *         raft_advance(n);      taken; raft_* calls are allowed again at once
 *     }
 *     ... later, when the writer's fdatasync of that ready is done:
 *     raft_persisted(n, index, term);   then send the ready's held messages
 *     ... later, when the applier is done:
 *     raft_applied(n, index);
 *
 * raft_ready(n, &rd) hands out: entries not handed out before (a later
 *   truncation below what was handed out hands out again from the truncation
 *   point: entries with an index at or below one already written overwrite
 *   it, truncate the tail), committed entries not yet handed out for apply,
 *   msgs, read_states, hard_state (if changed since last handed out),
 *   soft_state, a snapshot to install.
 * raft_advance(n): the caller has TAKEN the ready. It does not mean persisted
 *   or applied.
 * raft_persisted(n, index, term): the caller's storage made durable every
 *   entry handed out up to index (the entry at index having term), and the
 *   hard state / snapshot handed out in the same or earlier readies. Stale
 *   reports (the entry at index now has another term, e.g. truncated and
 *   rewritten meanwhile; or index beyond what was handed out) are ignored.
 *   Only now does a leader count its own log toward commit. A snapshot of
 *   (index, term) is reported with that index and term. A ready that
 *   persists only a hard state needs no report.
 * raft_applied(n, index): the state machine applied every committed entry up
 *   to index (all handed out before). Configuration entries take effect here;
 *   a leader appends "leave joint" after applying "enter joint"; raft_compact
 *   compacts at this index. Installing a handed-out snapshot is reported as
 *   raft_applied(snapshot.index). An index at or below the applied one is
 *   ignored (e.g. entries a snapshot replaced meanwhile); one beyond what was
 *   handed out for apply is a caller bug (asserted).
 *
 * The caller's obligations:
 *   1. Persist readies in order (FIFO): snapshot, then entries, then hard state.
 *   2. Send a ready's msgs only after everything that ready and earlier ones
 *      asked to persist is durable, EXCEPT RAFT_MSG_APPEND (only a leader
 *      sends it), which may go at once (Raft thesis 10.2.1: the leader
 *      writes in parallel with its followers; it counts itself on
 *      raft_persisted). Votes, vote answers and append answers thus never
 *      promise anything not yet on disk.
 *   3. Apply committed entries in order and only once they are locally
 *      persisted (e.g. queue the apply behind the ready's write); install a
 *      snapshot before applying the entries handed out after it.
 *   4. Hand rd.read_states to the waiting reads; each may read once applied
 *      >= its index.
 * raft_has_ready() reports only work to hand out: writes and applies in
 * flight are not work, so the loop does not spin while it waits for them.
 * A leader that won alone (one voter) holds its appends until its first
 * entry is persisted: no vote request had to wait for its new term to reach
 * the disk, and a crash before that could let it lead the same term twice.
 *
 * Between raft_ready() and raft_advance() no other raft_* call may be made on
 * that node (asserted). Everything a ready points to (entries, message entry
 * arrays, entry and snapshot bytes) is owned by the node and stays valid until
 * raft_advance() returns; the caller copies or serializes what it keeps.
 *
 * Messages passed to raft_step() stay owned by the caller; the node copies
 * what it keeps. Messages are plain structs: ids, terms, indexes, a flag, an
 * entry array and a snapshot; a transport can encode them field by field.
 *
 * Membership: every change goes through joint consensus. A conf-change entry
 * "enter joint" holds the changes; once the leader applies it, it appends a
 * "leave joint" entry by itself. A configuration takes effect on a node when
 * the entry is applied (at raft_applied()). One change at a time.
 * Not supported: demoting a voter straight to learner (remove it, then add it
 * as a learner), reusing the id of a removed member.
 *
 * Bounds: at most RAFT_MEMBERS_MAX members, RAFT_INFLIGHT_MAX in-flight
 * appends per follower, RAFT_MSGS_MAX queued messages (extra ones are dropped:
 * Raft tolerates loss), RAFT_READS_MAX queued reads. The log is held in
 * memory: the caller bounds it by calling raft_compact() after snapshots.
 */
#ifndef FL_RAFT_RAFT_H
#define FL_RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define RAFT_MEMBERS_MAX     16
#define RAFT_INFLIGHT_MAX    256
#define RAFT_MSGS_MAX        4096
#define RAFT_READS_MAX       4096
#define RAFT_MSG_ENTRIES_MAX 4096 /* entries in one append, whatever their size */

typedef uint64_t raft_id; /* 0 means "none" */

typedef enum raft_role {
    RAFT_FOLLOWER,
    RAFT_PRECANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
} raft_role;

typedef enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0,
    RAFT_ENTRY_CONF_CHANGE = 1, /* data: raft_conf_change_encode() */
} raft_entry_type;

/* data is read-only to the caller; len 0 means data may be NULL. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    raft_entry_type type;
    uint32_t len;
    uint8_t *data;
};

/* A configuration. Joint when voters_outgoing is non-empty: then decisions
 * need a majority of voters AND a majority of voters_outgoing. Learners get
 * the log but never vote or count. */
struct raft_conf {
    uint32_t n_voters;
    uint32_t n_voters_outgoing;
    uint32_t n_learners;
    raft_id voters[RAFT_MEMBERS_MAX];
    raft_id voters_outgoing[RAFT_MEMBERS_MAX];
    raft_id learners[RAFT_MEMBERS_MAX];
};

/* Snapshot: the state after applying everything up to index. data is opaque
 * (the server may store a handle to a file there rather than the bytes). */
struct raft_snapshot {
    uint64_t index;
    uint64_t term;
    struct raft_conf conf;
    uint32_t len;
    uint8_t *data;
};

struct raft_hard_state {
    uint64_t term;
    raft_id vote;
    uint64_t commit;
};

struct raft_soft_state {
    raft_id lead;
    raft_role role;
};

typedef enum raft_msg_type {
    RAFT_MSG_APPEND = 1,      /* index/log_term: entry before entries; commit */
    RAFT_MSG_APPEND_RESP,     /* index: match (or rejected index); reject_hint, log_term */
    RAFT_MSG_HEARTBEAT,       /* commit; context: read round */
    RAFT_MSG_HEARTBEAT_RESP,  /* context: echoed read round */
    RAFT_MSG_VOTE,            /* index/log_term: candidate's last entry; context 1: transfer */
    RAFT_MSG_VOTE_RESP,       /* reject */
    RAFT_MSG_PREVOTE,         /* as VOTE, term is the term it would campaign in */
    RAFT_MSG_PREVOTE_RESP,    /* reject */
    RAFT_MSG_SNAPSHOT,        /* snapshot */
    RAFT_MSG_TIMEOUT_NOW,     /* leadership transfer: campaign now */
    RAFT_MSG_READ_INDEX,      /* follower asks the leader; context: caller's read id */
    RAFT_MSG_READ_INDEX_RESP, /* index: read index; context: read id */
} raft_msg_type;

struct raft_msg {
    raft_msg_type type;
    raft_id from;
    raft_id to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t reject_hint;
    uint64_t context;
    bool reject;
    uint32_t n_entries;
    struct raft_entry *entries;
    struct raft_snapshot snapshot; /* RAFT_MSG_SNAPSHOT only */
};

/* A linearizable read point: once applied >= index, read_id may read. */
struct raft_read_state {
    uint64_t index;
    uint64_t read_id;
};

struct raft_config {
    raft_id id;
    uint32_t election_tick;  /* follower timeout, randomized in [election_tick, 2*election_tick) */
    uint32_t heartbeat_tick; /* leader heartbeat period; < election_tick */
    uint32_t max_inflight_msgs;             /* per follower, <= RAFT_INFLIGHT_MAX */
    uint64_t max_size_per_msg;              /* bytes of entry data per append (>= 1 entry) */
    uint64_t max_uncommitted_entries_bytes; /* 0: unlimited */
    bool pre_vote;
    bool check_quorum;
    uint64_t (*rand)(void *ctx); /* the only randomness the node uses */
    void *rand_ctx;
};

/* What the caller persisted, to build a node from.
 * Bootstrap: every member of the initial cluster passes the same snapshot
 * {index 1, term 1, conf = initial voters, data = the empty state} and hard
 * state {term 1}. A member added later starts from all zeroes (index 0, empty
 * conf): the leader sends it a snapshot, which is how it learns the
 * configuration, since index 1 is compacted everywhere. entries must
 * follow snapshot.index contiguously. applied: what the state machine has
 * applied (>= snapshot.index); committed entries after it are handed out again. */
struct raft_restore {
    struct raft_hard_state hard_state;
    struct raft_snapshot snapshot;
    const struct raft_entry *entries;
    size_t n_entries;
    uint64_t applied;
};

struct raft_ready {
    bool has_soft_state;
    struct raft_soft_state soft_state;
    bool has_hard_state;
    struct raft_hard_state hard_state;
    const struct raft_snapshot *snapshot; /* NULL: none to install */
    const struct raft_entry *entries;     /* to persist; never handed out twice */
    size_t n_entries;
    const struct raft_entry *committed; /* to apply, in order, once persisted */
    size_t n_committed;
    struct raft_msg *msgs;
    size_t n_msgs;
    const struct raft_read_state *read_states;
    size_t n_read_states;
};

struct raft_status {
    raft_id id;
    raft_role role;
    raft_id lead;
    uint64_t term;
    raft_id vote;
    uint64_t commit;
    uint64_t persisted; /* last index raft_persisted covers and still valid (a received
                         * snapshot counts at once: it is committed) */
    uint64_t applied;
    uint64_t first_index; /* first entry held in memory */
    uint64_t last_index;
    uint64_t snapshot_index;
    raft_id lead_transferee;
    struct raft_conf conf;
};

struct raft_node;

/* Builds a node. On success *out is owned by the caller (raft_free). The
 * node copies everything it keeps from restore. */
fl_err raft_new(const struct raft_config *config, const struct raft_restore *restore,
                struct raft_node **out);
void raft_free(struct raft_node *node);

/* One logical clock tick. */
void raft_tick(struct raft_node *node);
/* A message from a peer. FL_ERR_INVALID for a malformed one (dropped). */
fl_err raft_step(struct raft_node *node, const struct raft_msg *msg);

/* Leader only (FL_ERR_UNAVAILABLE otherwise: the caller forwards). Copies
 * data. FL_ERR_BUSY while transferring leadership or over the uncommitted
 * bytes bound. *index (may be NULL) receives the entry's index. */
fl_err raft_propose(struct raft_node *node, const void *data, uint32_t len, uint64_t *index);
/* Many proposals at once (say, every request of one event-loop turn): the
 * same rules, all or none, and one allocation for all their bytes.
 * *first_index (may be NULL) receives the first entry's index. */
fl_err raft_propose_many(struct raft_node *node, const void *const *datas, const uint32_t *lens,
                         size_t count, uint64_t *first_index);

/* Membership. */
typedef enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1, /* also promotes a learner */
    RAFT_CONF_ADD_LEARNER = 2,
    RAFT_CONF_REMOVE = 3,
} raft_conf_op;

struct raft_conf_change {
    raft_conf_op op;
    raft_id id;
};

/* Leader only. FL_ERR_BUSY while a change is pending (not yet applied, or
 * still joint); FL_ERR_INVALID if the result is not a valid configuration. */
fl_err raft_propose_conf_change(struct raft_node *node, const struct raft_conf_change *changes,
                                size_t n_changes, uint64_t *index);

/* Conf-change entry payload: [kind u8][n u8] n*[op u8][id u64 LE]. kind 1
 * enters joint with the changes, kind 2 leaves joint (n = 0). */
#define RAFT_CONF_ENTER_JOINT 1
#define RAFT_CONF_LEAVE_JOINT 2
#define RAFT_CONF_ENCODED_MAX (2 + RAFT_MEMBERS_MAX * 9)
size_t raft_conf_change_encode(uint8_t kind, const struct raft_conf_change *changes, size_t n,
                               uint8_t *buf);
fl_err raft_conf_change_decode(const uint8_t *buf, size_t len, uint8_t *kind,
                               struct raft_conf_change *changes, size_t *n);

/* Linearizable read. On the leader it joins the next heartbeat round; on a
 * follower it is forwarded to the leader. The answer is a raft_read_state
 * in a later ready (or nothing if leadership changes: the caller times out).
 * FL_ERR_UNAVAILABLE with no known leader, FL_ERR_BUSY when RAFT_READS_MAX
 * reads are queued, FL_ERR_NOMEM if the queue could not grow. */
fl_err raft_read_index(struct raft_node *node, uint64_t read_id);

/* Leader only: bring `to` up to date, then tell it to campaign. Proposals
 * get FL_ERR_BUSY until it ends; it is abandoned after an election timeout. */
fl_err raft_transfer_leader(struct raft_node *node, raft_id to);

/* Start an election now (tests, and an operator's "campaign"). */
void raft_campaign(struct raft_node *node);

/* The caller took a snapshot of its state machine at the applied index (as
 * reported by raft_applied): the node keeps a copy of data to send to
 * followers that fall behind, and drops log entries up to applied -
 * keep_entries. FL_ERR_BUSY while a received snapshot has not been handed out
 * yet, or its install not yet reported by raft_applied. */
fl_err raft_compact(struct raft_node *node, const void *data, uint32_t len, uint64_t keep_entries);

/* See the contract at the top. A ready may occasionally be empty. */
bool raft_has_ready(const struct raft_node *node);
void raft_ready(struct raft_node *node, struct raft_ready *rd);
void raft_advance(struct raft_node *node);
void raft_persisted(struct raft_node *n, uint64_t index, uint64_t term);
void raft_applied(struct raft_node *n, uint64_t index);

/* Leader only (false otherwise, or for an unknown id): the follower's
 * acknowledged match index (for example, "learner in sync" before promoting
 * it). For the leader itself: what raft_persisted reported. */
bool raft_progress_match(const struct raft_node *n, raft_id id, uint64_t *match);
/* Leader: the transport lost its connection to id. A follower that was
 * pipelining appends goes back to probing (one append at a time). */
void raft_report_unreachable(struct raft_node *n, raft_id id);
/* Leader: a snapshot send to id finished (ok) or failed. Failed: back to
 * probing, retried on the next heartbeat answer. Ok: the follower's append
 * answer moves it on, as without the call. Either way, a snapshot never
 * acknowledged is retried after an election timeout. */
void raft_report_snapshot(struct raft_node *n, raft_id id, bool ok);

void raft_status(const struct raft_node *node, struct raft_status *st);
/* Term of the entry at index, if the node still knows it. */
bool raft_term_at(const struct raft_node *node, uint64_t index, uint64_t *term);

bool raft_conf_is_voter(const struct raft_conf *conf, raft_id id);
bool raft_conf_is_learner(const struct raft_conf *conf, raft_id id);
const char *raft_role_name(raft_role role);
const char *raft_msg_type_name(raft_msg_type type);

#endif

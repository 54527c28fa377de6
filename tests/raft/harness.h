/* tests/raft/harness.h: a tiny deterministic cluster for unit tests.
 *
 * Unlike tests/sim, nothing here is random: messages are delivered in the
 * order sent unless a test cuts a link, and stabilize() runs readies and
 * deliveries until the cluster is quiet. Each node has a "disk" (what its
 * readies persisted) so a test can crash and rebuild it.
 *
 * h_ready() writes a ready to the disk at once and reports it at once
 * (raft_persisted, raft_applied), the simplest correct caller. A test of the
 * asynchronous contract sets `manual` on a node: h_stabilize() then leaves it
 * alone, and the test drives it with h_take() (ready + advance, messages sent,
 * nothing reported) and calls raft_persisted / raft_applied itself.
 */
#ifndef FL_TESTS_RAFT_HARNESS_H
#define FL_TESTS_RAFT_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define H_NODES_MAX   8
#define H_APPLIED_MAX 4096

struct h_entry_copy {
    uint64_t index, term;
    raft_entry_type type;
    uint32_t len;
    uint8_t data[64];
};

struct h_node {
    raft_id id;
    struct raft_node *raft; /* NULL when down */
    /* disk */
    struct raft_hard_state hs;
    struct raft_snapshot snap;
    uint8_t snap_data[64];
    struct h_entry_copy *log; /* persisted entries, index order */
    size_t n_log, cap_log;
    /* state machine */
    struct h_entry_copy *applied;
    size_t n_applied;
    struct raft_read_state reads[64];
    size_t n_reads;
    uint64_t msgs_sent[RAFT_MSG_READ_INDEX_RESP + 1];
    uint64_t appends_with_entries_to[H_NODES_MAX + 1];
    bool manual; /* h_stabilize skips it; the test drives it with h_take */
    /* manual: messages other than appends wait for h_report of their ready */
    struct raft_msg *held;
    uint64_t *held_seq;
    size_t n_held, cap_held;
    uint64_t taken_seq;
};

/* What one ready handed out, for the test to report when it chooses. */
struct h_taken {
    bool taken;           /* there was a ready */
    uint64_t seq;         /* its number among the node's readies */
    size_t n_entries;     /* entries to persist ... */
    uint64_t first_index; /* ... first_index .. last_index */
    uint64_t last_index, last_term;
    bool snapshot;
    uint64_t snapshot_index, snapshot_term;
    size_t n_committed;
    uint64_t apply_to; /* last committed entry handed out (0: none) */
    size_t n_msgs;
};

struct h_cluster {
    uint32_t n;
    struct h_node nodes[H_NODES_MAX];
    struct raft_config cfg;
    struct raft_msg *net;
    size_t n_net, cap_net;
    bool cut[H_NODES_MAX + 1][H_NODES_MAX + 1]; /* cut[from][to] drops */
    uint64_t rng;
    FILE *trace; /* if set: every delivery and ready, one readable line each */
};

/* n voters (ids 1..n) bootstrapped together, plus `extra` nodes (ids n+1..)
 * started empty so they can be added later. */
void h_init(struct h_cluster *c, uint32_t voters, uint32_t extra, const struct raft_config *cfg);
void h_free(struct h_cluster *c);
struct raft_node *h_raft(struct h_cluster *c, raft_id id);
void h_ready(struct h_cluster *c, raft_id id); /* one ready/advance if any, reported at once */
/* One ready/advance if any: disk written, appends queued (other messages are
 * held until h_report of this ready, as the contract asks), entries recorded
 * as applied by the state machine, but nothing reported to the node. */
struct h_taken h_take(struct h_cluster *c, raft_id id);
/* Reports t to the node: raft_persisted, the messages held with it and
 * before it go out, then raft_applied. */
void h_report(struct h_cluster *c, raft_id id, const struct h_taken *t);
void h_deliver_all(struct h_cluster *c); /* every queued message, once */
void h_stabilize(struct h_cluster *c);   /* until nothing moves */
void h_tick(struct h_cluster *c, raft_id id, uint32_t ticks);
void h_tick_all(struct h_cluster *c, uint32_t ticks); /* ticks, stabilizing between */
void h_isolate(struct h_cluster *c, raft_id id, bool isolated);
void h_crash(struct h_cluster *c, raft_id id);
void h_restart(struct h_cluster *c, raft_id id);
raft_id h_leader(struct h_cluster *c);
void h_elect(struct h_cluster *c, raft_id id); /* campaign + stabilize; asserts it won */
uint64_t h_propose_n(struct h_cluster *c, raft_id leader, uint32_t n); /* last index */
struct raft_status h_status(struct h_cluster *c, raft_id id);

#endif

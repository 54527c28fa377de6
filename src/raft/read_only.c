/* raft/read_only.c: ReadIndex, linearizable reads without a log entry.
 *
 * A read may be answered at the leader's commit index once the leader has
 * proven it is still the leader *after* the read arrived: a quorum
 * acknowledged a heartbeat sent after that moment. Reads are numbered into
 * rounds: every read queued before a heartbeat broadcast gets that
 * broadcast's round number, carried in the heartbeat's context and echoed
 * back. A follower that acknowledged round r has acknowledged every round
 * before it, so a quorum's r confirms all reads of round <= r at once.
 * A new leader also waits until it has committed an entry of its own term,
 * as before that its commit index may lag what was committed.
 */
#include <string.h>

#include "raft/internal.h"

/* Most groups never serve a read: the queues start empty and double on demand. */
fl_err raft_read_state_push(struct raft_node *n, uint64_t index, uint64_t read_id)
{
    if (n->n_read_states == RAFT_READS_MAX) {
        return FL_ERR_BUSY;
    }
    if (n->n_read_states == n->read_states_cap) {
        uint32_t cap = n->read_states_cap ? n->read_states_cap * 2 : 16;
        struct raft_read_state *grown = raft_realloc(n->read_states, cap * sizeof(*grown));
        if (grown == NULL) {
            return FL_ERR_NOMEM;
        }
        n->read_states = grown; /* owned by the node */
        n->read_states_cap = cap;
    }
    n->read_states[n->n_read_states++] = (struct raft_read_state){index, read_id};
    return FL_OK;
}

static void answer(struct raft_node *n, raft_id to, uint64_t read_id, uint64_t index)
{
    if (to == n->id) {
        (void)raft_read_state_push(n, index, read_id);
        return;
    }
    raft_send(n,
              &(struct raft_msg){
                  .type = RAFT_MSG_READ_INDEX_RESP, .to = to, .index = index, .context = read_id});
}

static fl_err reads_grow(struct raft_node *n)
{
    uint32_t cap = n->reads_cap ? n->reads_cap * 2 : 16;
    struct raft_read_req *grown = raft_malloc(cap * sizeof(*grown)); /* owned by the node */
    if (grown == NULL) {
        return FL_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n->reads_len; i++) { /* unwrap the ring */
        grown[i] = n->reads[(n->reads_start + i) % n->reads_cap];
    }
    raft_mfree(n->reads);
    n->reads = grown;
    n->reads_cap = cap;
    n->reads_start = 0;
    return FL_OK;
}

fl_err raft_read_request(struct raft_node *n, uint64_t read_id, raft_id from)
{
    assert(n->role == RAFT_LEADER);
    if (RAFT_BUG(4)) {
        /* BUG 4: answer at once, without confirming leadership. */
        answer(n, from, read_id, n->log.committed);
        return FL_OK;
    }
    if (n->reads_len == RAFT_READS_MAX) {
        return FL_ERR_BUSY;
    }
    if (n->reads_len == n->reads_cap && reads_grow(n) != FL_OK) {
        return FL_ERR_NOMEM;
    }
    uint32_t slot = (n->reads_start + n->reads_len) % n->reads_cap;
    n->reads[slot] = (struct raft_read_req){read_id, from, n->read_round + 1};
    n->reads_len++;
    n->read_round_pending = true;
    return FL_OK;
}

static uint64_t acked_of(const void *ctx, raft_id id)
{
    const struct raft_node *n = ctx;
    if (id == n->id) {
        return n->read_round;
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return n->prs[i].read_acked;
        }
    }
    return 0;
}

void raft_read_release(struct raft_node *n)
{
    if (n->role != RAFT_LEADER || n->reads_len == 0) {
        return;
    }
    uint64_t term = 0;
    bool known = raft_log_term(&n->log, n->log.committed, &term);
    if (!RAFT_BUG(6) && (!known || term != n->term)) {
        return; /* BUG 6 answers before the leader committed in its term */
    }
    uint64_t confirmed = raft_conf_quorum_value(&n->conf, acked_of, n);
    while (n->reads_len > 0 && n->reads[n->reads_start].round <= confirmed) {
        struct raft_read_req *r = &n->reads[n->reads_start];
        answer(n, r->from, r->read_id, n->log.committed);
        n->reads_start = (n->reads_start + 1) % n->reads_cap;
        n->reads_len--;
    }
}

void raft_read_reset(struct raft_node *n)
{
    /* Queued reads are dropped with leadership; their callers time out. */
    n->reads_start = n->reads_len = 0;
    n->read_round_pending = false;
}

void raft_handle_read_index(struct raft_node *n, const struct raft_msg *m)
{
    (void)raft_read_request(n, m->context, m->from);
}

void raft_handle_read_index_response(struct raft_node *n, const struct raft_msg *m)
{
    (void)raft_read_state_push(n, m->index, m->context);
}

fl_err raft_read_index(struct raft_node *n, uint64_t read_id)
{
    assert(!n->in_ready);
    if (n->role == RAFT_LEADER) {
        return raft_read_request(n, read_id, n->id);
    }
    if (n->role == RAFT_FOLLOWER && n->lead != 0) {
        raft_send(
            n, &(struct raft_msg){.type = RAFT_MSG_READ_INDEX, .to = n->lead, .context = read_id});
        return FL_OK;
    }
    return FL_ERR_UNAVAILABLE;
}

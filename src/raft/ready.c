/* raft/ready.c: handing work to the caller, and taking its acknowledgements.
 *
 * Three calls, because the caller's disk is slower than its event loop:
 *   raft_ready()     lends the caller slices of the node's own log (entries
 *                    to persist, committed entries to apply) and the queue of
 *                    outgoing messages; nothing is copied.
 *   raft_advance()   the caller took it: the node records what it handed out
 *                    (never hands it out twice) and reclaims the loans.
 *   raft_persisted() / raft_applied() come later, when the caller's writer
 *                    and applier are done; they may lag many readies behind.
 * Only raft_persisted() lets a leader count its own log toward the commit
 * quorum: a leader's vote for its own entries must be on disk too (its
 * appends to followers may leave before that, Raft thesis 10.2.1). Only
 * raft_applied() makes a configuration entry take effect.
 */
#include <string.h>

#include "raft/internal.h"

static struct raft_hard_state hard_state(const struct raft_node *n)
{
    return (struct raft_hard_state){n->term, n->vote, n->log.committed};
}

static bool hs_equal(struct raft_hard_state a, struct raft_hard_state b)
{
    return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

/* Work that a ready would hand out now. Writes and applies in flight are not
 * work: the node waits for raft_persisted / raft_applied without a ready. */
bool raft_has_ready(const struct raft_node *n)
{
    const struct raft_log *log = &n->log;
    bool bcast = n->bcast_pending && !raft_appends_held(n);
    bool leader_work = n->role == RAFT_LEADER && (bcast || n->read_round_pending);
    return n->lead != n->prev_ss.lead || n->role != n->prev_ss.role ||
           !hs_equal(hard_state(n), n->prev_hs) || log->handed_persist < raft_log_last_index(log) ||
           n->snapshot_to_install || log->handed_apply < log->committed || n->out.len > 0 ||
           n->n_read_states > 0 || leader_work;
}

void raft_ready(struct raft_node *n, struct raft_ready *rd)
{
    assert(!n->in_ready);
    assert(n->handed.len == 0);
    if (n->role == RAFT_LEADER) {
        if (n->read_round_pending) {
            raft_bcast_heartbeat(n);
        }
        if (n->bcast_pending) {
            raft_bcast_append(n);
        }
    }
    struct raft_log *log = &n->log;
    assert(log->applied <= log->handed_apply && log->handed_apply <= log->committed);
    assert(log->stable <= log->handed_persist);
    memset(rd, 0, sizeof(*rd));
    rd->soft_state = (struct raft_soft_state){n->lead, n->role};
    rd->has_soft_state = n->lead != n->prev_ss.lead || n->role != n->prev_ss.role;
    rd->hard_state = hard_state(n);
    rd->has_hard_state = !hs_equal(rd->hard_state, n->prev_hs);
    if (RAFT_BUG(2)) {
        rd->hard_state.vote = 0; /* BUG 2: the vote is never made durable */
    }
    if (n->snapshot_to_install) {
        rd->snapshot = &n->snapshot;
    }
    uint64_t last = raft_log_last_index(log);
    if (log->handed_persist < last) {
        rd->entries = raft_log_get(log, log->handed_persist + 1);
        rd->n_entries = last - log->handed_persist;
    }
    if (log->handed_apply < log->committed) {
        rd->committed = raft_log_get(log, log->handed_apply + 1);
        rd->n_committed = log->committed - log->handed_apply;
    }
    /* Lend the outgoing queue; the node keeps filling a fresh one later. */
    struct raft_msg_queue tmp = n->handed;
    n->handed = n->out;
    n->out = tmp;
    rd->msgs = n->handed.msgs;
    rd->n_msgs = n->handed.len;
    struct raft_read_state *rs = n->handed_read_states;
    uint32_t rs_cap = n->handed_read_states_cap;
    n->handed_read_states = n->read_states;
    n->handed_read_states_cap = n->read_states_cap;
    n->read_states = rs;
    n->read_states_cap = rs_cap;
    n->n_handed_read_states = n->n_read_states;
    n->n_read_states = 0;
    rd->read_states = n->handed_read_states;
    rd->n_read_states = n->n_handed_read_states;

    n->ready_persist_to = last;
    n->ready_apply_to = log->committed;
    n->ready_snapshot = n->snapshot_to_install;
    n->in_ready = true;
}

void raft_advance(struct raft_node *n)
{
    assert(n->in_ready);
    struct raft_log *log = &n->log;
    /* Nothing may have changed the log between ready and advance. */
    assert(n->ready_persist_to == raft_log_last_index(log));
    assert(n->ready_apply_to == log->committed);
    log->handed_persist = n->ready_persist_to;
    log->handed_apply = n->ready_apply_to;
    if (n->ready_snapshot) {
        n->snapshot_to_install = false;
        n->snapshot_unapplied = n->snapshot.index;
    }
    n->prev_hs = hard_state(n);
    n->prev_ss = (struct raft_soft_state){n->lead, n->role};
    for (uint32_t i = 0; i < n->handed.len; i++) {
        raft_msg_release(&n->handed.msgs[i]);
    }
    n->handed.len = 0;
    n->n_handed_read_states = 0;
    n->in_ready = false;
    if (RAFT_BUG(8) && n->role == RAFT_LEADER) {
        /* BUG 8: the leader counts its own entries as soon as they are handed out. */
        struct raft_progress *self = raft_progress_of(n, n->id);
        if (self != NULL && raft_progress_maybe_update(self, log->handed_persist)) {
            raft_maybe_commit(n);
        }
    }
}

void raft_persisted(struct raft_node *n, uint64_t index, uint64_t term)
{
    assert(!n->in_ready);
    struct raft_log *log = &n->log;
    /* Stale: never handed out, already known, or the entry at index is no
     * longer the one that was written (truncated and rewritten since; by Log
     * Matching an equal (index, term) means the whole prefix is the same). */
    if (index > log->handed_persist || index <= log->stable ||
        !raft_log_match_term(log, index, term)) {
        return;
    }
    log->stable = index;
    if (n->role != RAFT_LEADER) {
        return;
    }
    if (n->appends_wait_stable != 0 && log->stable >= n->appends_wait_stable) {
        n->appends_wait_stable = 0; /* our term is on disk: appends may leave now */
        n->bcast_pending = true;
    }
    struct raft_progress *self = raft_progress_of(n, n->id);
    if (self != NULL && raft_progress_maybe_update(self, log->stable)) {
        raft_maybe_commit(n);
    }
}

/* Applies configuration entries among the newly applied ones. */
static bool apply_committed(struct raft_node *n, uint64_t to)
{
    struct raft_log *log = &n->log;
    bool conf_changed = false;
    while (log->applied < to) {
        const struct raft_entry *e = raft_log_get(log, log->applied + 1);
        assert(e != NULL);
        log->applied = e->index;
        if (n->role == RAFT_LEADER) {
            n->uncommitted_bytes -= e->len < n->uncommitted_bytes ? e->len : n->uncommitted_bytes;
        }
        if (e->type == RAFT_ENTRY_CONF_CHANGE && raft_apply_conf_entry(n, e) == FL_OK) {
            conf_changed = true;
        }
    }
    return conf_changed;
}

static void after_conf_change(struct raft_node *n)
{
    (void)raft_progress_rebuild(n);
    if (n->role != RAFT_LEADER) {
        return;
    }
    if (!raft_conf_is_voter(&n->conf, n->id)) {
        raft_become_follower(n, n->term, 0); /* removed: the change is committed */
        return;
    }
    if (n->lead_transferee != 0 && !raft_conf_is_voter(&n->conf, n->lead_transferee)) {
        n->lead_transferee = 0;
    }
    n->bcast_pending = true;
}

void raft_applied(struct raft_node *n, uint64_t index)
{
    assert(!n->in_ready);
    struct raft_log *log = &n->log;
    /* Only what was handed out can have been applied. */
    assert(index <= log->handed_apply);
    if (n->snapshot_unapplied != 0 && index >= n->snapshot_unapplied) {
        n->snapshot_unapplied = 0; /* the received snapshot is installed */
    }
    if (index <= log->applied) {
        return; /* stale, e.g. entries applied before a snapshot replaced them */
    }
    if (apply_committed(n, index)) {
        after_conf_change(n);
    }
    raft_maybe_leave_joint(n);
}

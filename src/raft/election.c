/* raft/election.c: roles, campaigns and votes.
 *
 * With pre_vote a node first asks "would you vote for me at term+1?" without
 * touching anyone's term, so a node cut off from the cluster cannot inflate
 * terms and depose a healthy leader when it comes back. With check_quorum a
 * leader that has not heard from a quorum for an election timeout steps down,
 * and followers that heard from a leader within the timeout ignore votes.
 */
#include <string.h>

#include "raft/internal.h"

static void reset(struct raft_node *n, uint64_t term)
{
    if (term != n->term) {
        n->term = term;
        n->vote = 0;
    }
    n->lead = 0;
    n->election_elapsed = 0;
    n->heartbeat_elapsed = 0;
    n->randomized_timeout = (uint32_t)raft_random_timeout(n);
    n->lead_transferee = 0;
    n->bcast_pending = false;
    n->appends_wait_stable = 0;
    n->uncommitted_bytes = 0;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        n->prs[i].vote_answered = n->prs[i].vote_granted = false;
    }
    raft_read_reset(n);
}

void raft_become_follower(struct raft_node *n, uint64_t term, raft_id lead)
{
    assert(term >= n->term);
    reset(n, term);
    n->role = RAFT_FOLLOWER;
    n->lead = lead;
}

void raft_become_leader(struct raft_node *n)
{
    assert(n->role == RAFT_CANDIDATE);
    reset(n, n->term);
    n->role = RAFT_LEADER;
    n->lead = n->id;
    uint64_t last = raft_log_last_index(&n->log);
    for (uint32_t i = 0; i < n->n_prs; i++) {
        struct raft_progress *pr = &n->prs[i];
        raft_progress_init(pr, pr->id, last + 1, n->cfg.max_inflight_msgs);
        pr->recent_active = pr->id == n->id; /* check-quorum: prove it within a timeout */
        if (pr->id == n->id) {
            pr->match = n->log.stable;
            raft_progress_become_replicate(pr);
            pr->next = last + 1;
        }
    }
    /* Entries of earlier terms commit only through one of ours (Raft §5.4.2),
     * and conf changes already in the log may not be applied yet. */
    n->pending_conf_index = last;
    fl_err err = raft_append_entry(n, RAFT_ENTRY_NORMAL, NULL, 0);
    (void)err; /* no data: cannot fail for lack of a blob; a full log array retries on propose */
}

static int vote_of(const void *ctx, raft_id id)
{
    const struct raft_node *n = ctx;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return n->prs[i].vote_answered ? n->prs[i].vote_granted : -1;
        }
    }
    return -1;
}

/* BUG 3: a learner's granted vote is counted toward the incoming voters'
 * majority, as if anyone who answered yes were a voter. */
static raft_vote_result tally_bug3(const struct raft_node *n)
{
    struct raft_conf c = n->conf;
    uint32_t extra = 0;
    for (uint32_t i = 0; i < c.n_learners; i++) {
        extra += vote_of(n, c.learners[i]) == 1;
    }
    uint32_t yes = extra;
    for (uint32_t i = 0; i < c.n_voters; i++) {
        yes += vote_of(n, c.voters[i]) == 1;
    }
    if (yes >= c.n_voters / 2 + 1) {
        c.n_voters = 0; /* the incoming set is "won": only the outgoing one decides */
        if (c.n_voters_outgoing == 0) {
            return RAFT_VOTE_WON;
        }
        memcpy(c.voters, c.voters_outgoing, sizeof(c.voters));
        c.n_voters = c.n_voters_outgoing;
        c.n_voters_outgoing = 0;
    }
    return raft_conf_tally(&c, vote_of, n);
}

static raft_vote_result tally(const struct raft_node *n)
{
    if (RAFT_BUG(3)) {
        return tally_bug3(n);
    }
    return raft_conf_tally(&n->conf, vote_of, n);
}

static void record_vote(struct raft_node *n, raft_id id, bool granted)
{
    struct raft_progress *pr = raft_progress_of(n, id);
    if (pr == NULL || pr->vote_answered) {
        return;
    }
    pr->vote_answered = true;
    pr->vote_granted = granted;
}

static void request_votes(struct raft_node *n, raft_msg_type kind, uint64_t term, bool transfer)
{
    const struct raft_conf *c = &n->conf;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        raft_id id = n->prs[i].id;
        bool ask = raft_conf_is_voter(c, id) || (RAFT_BUG(3) && raft_conf_is_learner(c, id));
        if (id == n->id || !ask) {
            continue;
        }
        raft_send(n, &(struct raft_msg){
                         .type = kind,
                         .to = id,
                         .term = term,
                         .index = raft_log_last_index(&n->log),
                         .log_term = raft_log_last_term(&n->log),
                         .context = transfer ? 1 : 0,
                     });
    }
}

void raft_start_campaign(struct raft_node *n, raft_msg_type kind, bool transfer)
{
    assert(kind == RAFT_MSG_VOTE || kind == RAFT_MSG_PREVOTE);
    if (!raft_promotable(n) || raft_has_unapplied_conf_change(n)) {
        return;
    }
    uint64_t term;
    if (kind == RAFT_MSG_PREVOTE) {
        reset(n, n->term);
        n->role = RAFT_PRECANDIDATE;
        term = n->term + 1;
    } else {
        reset(n, n->term + 1);
        n->role = RAFT_CANDIDATE;
        n->vote = n->id;
        term = n->term;
    }
    record_vote(n, n->id, true);
    if (tally(n) == RAFT_VOTE_WON) {
        if (kind == RAFT_MSG_PREVOTE) {
            raft_start_campaign(n, RAFT_MSG_VOTE, transfer);
        } else {
            /* Won alone: the new term is not on disk yet (no vote request had
             * to wait for it). Appends wait for the first entry of the term,
             * which is handed out with the new hard state. */
            raft_become_leader(n);
            uint64_t last = raft_log_last_index(&n->log);
            n->appends_wait_stable = raft_log_last_term(&n->log) == n->term ? last : last + 1;
        }
        return;
    }
    request_votes(n, kind, term, transfer);
}

void raft_handle_vote_request(struct raft_node *n, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    raft_msg_type resp = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    bool can_vote =
        n->vote == m->from || (n->vote == 0 && n->lead == 0) || (pre && m->term > n->term);
    if (can_vote && raft_log_up_to_date(&n->log, m->index, m->log_term)) {
        /* A pre-vote is answered in the term it asks about. */
        raft_send(n, &(struct raft_msg){.type = resp, .to = m->from, .term = m->term});
        if (!pre) {
            n->election_elapsed = 0;
            n->vote = m->from;
        }
        return;
    }
    raft_send(n, &(struct raft_msg){.type = resp, .to = m->from, .reject = true});
}

void raft_handle_vote_response(struct raft_node *n, const struct raft_msg *m)
{
    raft_msg_type expected = n->role == RAFT_PRECANDIDATE ? RAFT_MSG_PREVOTE_RESP
                             : n->role == RAFT_CANDIDATE  ? RAFT_MSG_VOTE_RESP
                                                          : 0;
    if (m->type != expected) {
        return;
    }
    record_vote(n, m->from, !m->reject);
    switch (tally(n)) {
    case RAFT_VOTE_WON:
        if (n->role == RAFT_PRECANDIDATE) {
            raft_start_campaign(n, RAFT_MSG_VOTE, false);
        } else {
            raft_become_leader(n);
        }
        break;
    case RAFT_VOTE_LOST:
        raft_become_follower(n, n->term, 0);
        break;
    case RAFT_VOTE_PENDING:
        break;
    }
}

void raft_tick_election(struct raft_node *n)
{
    n->election_elapsed++;
    if (raft_promotable(n) && n->election_elapsed >= n->randomized_timeout) {
        raft_start_campaign(n, n->cfg.pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, false);
    }
}

static int active_of(const void *ctx, raft_id id)
{
    const struct raft_node *n = ctx;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return id == n->id || n->prs[i].recent_active;
        }
    }
    return 0;
}

static void check_quorum(struct raft_node *n)
{
    if (raft_conf_tally(&n->conf, active_of, n) != RAFT_VOTE_WON) {
        raft_become_follower(n, n->term, 0);
        return;
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        n->prs[i].recent_active = n->prs[i].id == n->id;
    }
}

void raft_tick_leader(struct raft_node *n)
{
    n->heartbeat_elapsed++;
    n->election_elapsed++;
    if (n->election_elapsed >= n->cfg.election_tick) {
        n->election_elapsed = 0;
        if (n->cfg.check_quorum) {
            check_quorum(n);
            if (n->role != RAFT_LEADER) {
                return;
            }
        }
        n->lead_transferee = 0; /* a transfer that took this long failed */
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        struct raft_progress *pr = &n->prs[i];
        if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
            n->ticks - pr->snapshot_sent_tick >= n->cfg.election_tick) {
            raft_progress_become_probe(pr); /* presume the snapshot lost; try again */
            n->bcast_pending = true;
        }
    }
    if (n->heartbeat_elapsed >= n->cfg.heartbeat_tick) {
        n->heartbeat_elapsed = 0;
        raft_bcast_heartbeat(n);
    }
}

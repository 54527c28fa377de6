/* raft/raft.c: the node's life cycle and the dispatch of its inputs.
 *
 * raft_step() first settles terms (the rules every role shares: a higher
 * term demotes us, a lower one is ignored or answered so a stale leader
 * learns), then hands the message to the handler of its type and our role.
 */
#include <string.h>

#include "raft/internal.h"

/* ---- outgoing messages ---- */

void raft_msg_release(struct raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        raft_blob_unref(m->entries[i].data);
    }
    raft_mfree(m->entries);
    m->entries = NULL;
    m->n_entries = 0;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        raft_blob_unref(m->snapshot.data);
        m->snapshot.data = NULL;
    }
}

void raft_send(struct raft_node *n, struct raft_msg *m)
{
    assert(m->to != 0 && m->to != n->id);
    m->from = n->id;
    if (m->term == 0) {
        m->term = n->term;
    }
    struct raft_msg_queue *q = &n->out;
    if (q->len == q->cap) {
        uint32_t cap = q->cap == 0 ? 16 : q->cap * 2;
        struct raft_msg *grown = NULL;
        if (cap <= RAFT_MSGS_MAX) {
            grown = raft_realloc(q->msgs, cap * sizeof(*grown)); /* owned by the queue */
        }
        if (grown == NULL) {
            raft_msg_release(m); /* over the bound or out of memory: a lost message */
            return;
        }
        q->msgs = grown;
        q->cap = cap;
    }
    q->msgs[q->len++] = *m;
}

static void queue_free(struct raft_msg_queue *q)
{
    for (uint32_t i = 0; i < q->len; i++) {
        raft_msg_release(&q->msgs[i]);
    }
    raft_mfree(q->msgs);
    memset(q, 0, sizeof(*q));
}

/* ---- helpers shared by the other files ---- */

struct raft_progress *raft_progress_of(struct raft_node *n, raft_id id)
{
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return &n->prs[i];
        }
    }
    return NULL;
}

bool raft_promotable(const struct raft_node *n)
{
    return raft_conf_is_voter(&n->conf, n->id);
}

uint64_t raft_random_timeout(struct raft_node *n)
{
    return n->cfg.election_tick + n->cfg.rand(n->cfg.rand_ctx) % n->cfg.election_tick;
}

/* ---- life cycle ---- */

static bool conf_valid(const struct raft_conf *c)
{
    return c->n_voters <= RAFT_MEMBERS_MAX && c->n_voters_outgoing <= RAFT_MEMBERS_MAX &&
           c->n_learners <= RAFT_MEMBERS_MAX;
}

static bool entries_valid(const struct raft_entry *es, size_t n, uint64_t prev_index,
                          uint64_t prev_term)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &es[i];
        uint64_t min_term = i == 0 ? prev_term : es[i - 1].term;
        if (e->index != prev_index + 1 + i || e->term < min_term ||
            (e->len > 0 && e->data == NULL) || e->type > RAFT_ENTRY_CONF_CHANGE) {
            return false;
        }
    }
    return true;
}

static fl_err config_check(const struct raft_config *c)
{
    if (c->id == 0 || c->election_tick < 2 || c->heartbeat_tick == 0 ||
        c->heartbeat_tick >= c->election_tick || c->max_inflight_msgs == 0 ||
        c->max_inflight_msgs > RAFT_INFLIGHT_MAX || c->rand == NULL) {
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

static fl_err restore_log(struct raft_node *n, const struct raft_restore *r)
{
    const struct raft_snapshot *s = &r->snapshot;
    if (!conf_valid(&s->conf) || (s->len > 0 && s->data == NULL) ||
        (r->n_entries > 0 && r->entries == NULL) ||
        !entries_valid(r->entries, r->n_entries, s->index, s->term)) {
        return FL_ERR_INVALID;
    }
    fl_err err = raft_log_init(&n->log, s->index, s->term);
    if (err != FL_OK) {
        return err;
    }
    n->snapshot = *s;
    n->snapshot.data = NULL;
    if (s->len > 0) {
        n->snapshot.data = raft_blob_new(s->data, s->len);
        if (n->snapshot.data == NULL) {
            return FL_ERR_NOMEM;
        }
    }
    return raft_log_append_copies(&n->log, r->entries, r->n_entries);
}

static fl_err restore_state(struct raft_node *n, const struct raft_restore *r)
{
    struct raft_log *log = &n->log;
    uint64_t last = raft_log_last_index(log);
    uint64_t commit =
        r->hard_state.commit > log->prev_index ? r->hard_state.commit : log->prev_index;
    uint64_t applied = r->applied > log->prev_index ? r->applied : log->prev_index;
    if (commit > last || applied > commit) {
        return FL_ERR_INVALID;
    }
    log->handed_persist = log->stable = last; /* it came from the disk */
    log->committed = commit;
    n->term = r->hard_state.term;
    n->vote = r->hard_state.vote;
    n->conf = r->snapshot.conf;
    /* Configurations change on apply: replay what the state machine applied. */
    for (uint64_t i = log->prev_index + 1; i <= applied; i++) {
        log->applied = i;
        const struct raft_entry *e = raft_log_get(log, i);
        if (e->type == RAFT_ENTRY_CONF_CHANGE) {
            (void)raft_apply_conf_entry(n, e);
        }
    }
    log->applied = applied;
    log->handed_apply = applied; /* committed entries after it are handed out again */
    n->prev_hs = (struct raft_hard_state){n->term, n->vote, commit};
    return raft_progress_rebuild(n);
}

fl_err raft_new(const struct raft_config *config, const struct raft_restore *restore,
                struct raft_node **out)
{
    fl_err err = config_check(config);
    if (err != FL_OK) {
        return err;
    }
    struct raft_node *n = raft_calloc(1, sizeof(*n)); /* owned by the caller via raft_free */
    if (n == NULL) {
        return FL_ERR_NOMEM;
    }
    n->cfg = *config;
    n->id = config->id;
    n->prs = raft_calloc(RAFT_MEMBERS_MAX, sizeof(*n->prs));
    err = FL_ERR_NOMEM;
    if (n->prs != NULL) {
        err = restore_log(n, restore);
    }
    if (err == FL_OK) {
        err = restore_state(n, restore);
    }
    if (err != FL_OK) {
        raft_free(n);
        return err;
    }
    raft_become_follower(n, n->term, 0);
    n->prev_ss = (struct raft_soft_state){0, RAFT_FOLLOWER};
    *out = n;
    return FL_OK;
}

void raft_free(struct raft_node *n)
{
    if (n == NULL) {
        return;
    }
    queue_free(&n->out);
    queue_free(&n->handed);
    raft_log_free(&n->log);
    raft_blob_unref(n->snapshot.data);
    raft_mfree(n->prs);
    raft_mfree(n->reads);
    raft_mfree(n->read_states);
    raft_mfree(n->handed_read_states);
    raft_mfree(n);
}

/* ---- inputs ---- */

void raft_tick(struct raft_node *n)
{
    assert(!n->in_ready);
    n->ticks++;
    if (n->role == RAFT_LEADER) {
        raft_tick_leader(n);
    } else {
        raft_tick_election(n);
    }
}

/* A vote request while we hear from a live leader is ignored: that is what
 * keeps a partitioned node that comes back from disrupting the cluster. */
static bool in_lease(const struct raft_node *n, const struct raft_msg *m)
{
    bool transfer = m->context == 1;
    return !transfer && n->cfg.check_quorum && n->lead != 0 &&
           n->election_elapsed < n->cfg.election_tick;
}

/* Returns false if the message is settled by the term rules alone. */
static bool step_term(struct raft_node *n, const struct raft_msg *m)
{
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > n->term) {
        if (vote_req && in_lease(n, m)) {
            return false;
        }
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            return true; /* a pre-vote never moves terms */
        }
        bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                           m->type == RAFT_MSG_SNAPSHOT;
        raft_become_follower(n, m->term, from_leader ? m->from : 0);
        return true;
    }
    if (m->term < n->term) {
        if ((n->cfg.check_quorum || n->cfg.pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APPEND)) {
            /* Tell the stale leader our term so it steps down. */
            raft_send(n, &(struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .to = m->from});
        } else if (m->type == RAFT_MSG_PREVOTE) {
            raft_send(n, &(struct raft_msg){
                             .type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .reject = true});
        }
        return false;
    }
    return true;
}

static void step_leader_msg(struct raft_node *n, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        raft_handle_append_response(n, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        raft_handle_heartbeat_response(n, m);
        break;
    case RAFT_MSG_READ_INDEX:
        raft_handle_read_index(n, m);
        break;
    default:
        break;
    }
}

static void step_follower_msg(struct raft_node *n, const struct raft_msg *m)
{
    bool from_leader =
        m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAPSHOT;
    if (from_leader) {
        if (n->role != RAFT_FOLLOWER) {
            raft_become_follower(n, n->term, m->from);
        }
        n->lead = m->from;
        n->election_elapsed = 0;
    }
    switch (m->type) {
    case RAFT_MSG_APPEND:
        raft_handle_append(n, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        raft_handle_heartbeat(n, m);
        break;
    case RAFT_MSG_SNAPSHOT:
        raft_handle_snapshot(n, m);
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        raft_handle_vote_response(n, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        if (n->role == RAFT_FOLLOWER) {
            raft_start_campaign(n, RAFT_MSG_VOTE, true);
        }
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        raft_handle_read_index_response(n, m);
        break;
    default:
        break;
    }
}

/* Messages come off the network: nothing in them may break an invariant. */
static fl_err msg_check(const struct raft_node *n, const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_READ_INDEX_RESP || m->from == 0 ||
        m->from == n->id || m->to != n->id || (m->n_entries > 0 && m->entries == NULL) ||
        m->n_entries > RAFT_MSG_ENTRIES_MAX || (m->n_entries > 0 && m->type != RAFT_MSG_APPEND)) {
        return FL_ERR_INVALID;
    }
    if (!entries_valid(m->entries, m->n_entries, m->index, m->log_term) ||
        (m->n_entries > 0 && m->entries[m->n_entries - 1].term > m->term)) {
        return FL_ERR_INVALID;
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (!conf_valid(&m->snapshot.conf) || (m->snapshot.len > 0 && m->snapshot.data == NULL) ||
         m->snapshot.index == 0 || m->snapshot.term > m->term)) {
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

fl_err raft_step(struct raft_node *n, const struct raft_msg *m)
{
    assert(!n->in_ready);
    fl_err err = msg_check(n, m);
    if (err != FL_OK) {
        return err;
    }
    if (!step_term(n, m)) {
        return FL_OK;
    }
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
        raft_handle_vote_request(n, m);
    } else if (n->role == RAFT_LEADER) {
        step_leader_msg(n, m);
    } else {
        step_follower_msg(n, m);
    }
    return FL_OK;
}

fl_err raft_propose(struct raft_node *n, const void *data, uint32_t len, uint64_t *index)
{
    return raft_propose_many(n, &data, &len, 1, index);
}

static fl_err propose_check(const struct raft_node *n, const uint32_t *lens, size_t count,
                            size_t *bytes)
{
    if (n->role != RAFT_LEADER) {
        return FL_ERR_UNAVAILABLE;
    }
    if (n->lead_transferee != 0) {
        return FL_ERR_BUSY;
    }
    uint64_t total = 0;
    *bytes = 0;
    for (size_t i = 0; i < count; i++) {
        total += lens[i];
        *bytes += raft_blob_batch_bytes(lens[i]);
    }
    uint64_t max = n->cfg.max_uncommitted_entries_bytes;
    if (max > 0 && n->uncommitted_bytes > 0 && n->uncommitted_bytes + total > max) {
        return FL_ERR_BUSY;
    }
    return FL_OK;
}

fl_err raft_propose_many(struct raft_node *n, const void *const *datas, const uint32_t *lens,
                         size_t count, uint64_t *first_index)
{
    assert(!n->in_ready);
    size_t bytes;
    fl_err err = propose_check(n, lens, count, &bytes);
    if (err != FL_OK || count == 0) {
        return err;
    }
    /* All or nothing: room in the log and one chunk for the bytes, first. */
    err = raft_log_reserve(&n->log, count);
    struct raft_blob_batch b;
    if (err == FL_OK) {
        err = raft_blob_batch_begin(&b, bytes);
    }
    if (err != FL_OK) {
        return err;
    }
    uint64_t first = raft_log_last_index(&n->log) + 1;
    for (size_t i = 0; i < count; i++) {
        struct raft_entry e = {n->term, first + i, RAFT_ENTRY_NORMAL, lens[i],
                               raft_blob_batch_add(&b, datas[i], lens[i])};
        err = raft_log_append(&n->log, &e);
        assert(err == FL_OK); /* reserved above */
        n->uncommitted_bytes += lens[i];
    }
    raft_blob_batch_end(&b);
    n->bcast_pending = true;
    if (first_index != NULL) {
        *first_index = first;
    }
    return FL_OK;
}

fl_err raft_transfer_leader(struct raft_node *n, raft_id to)
{
    assert(!n->in_ready);
    if (n->role != RAFT_LEADER) {
        return FL_ERR_UNAVAILABLE;
    }
    if (to == n->id || !raft_ids_contain(n->conf.voters, n->conf.n_voters, to)) {
        return FL_ERR_INVALID;
    }
    struct raft_progress *pr = raft_progress_of(n, to);
    assert(pr != NULL);
    n->lead_transferee = to;
    n->election_elapsed = 0; /* the transfer gets one election timeout */
    if (pr->match == raft_log_last_index(&n->log)) {
        raft_send_timeout_now(n, to);
    } else {
        n->bcast_pending = true;
    }
    return FL_OK;
}

void raft_campaign(struct raft_node *n)
{
    assert(!n->in_ready);
    if (n->role != RAFT_LEADER) {
        raft_start_campaign(n, n->cfg.pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, false);
    }
}

fl_err raft_compact(struct raft_node *n, const void *data, uint32_t len, uint64_t keep_entries)
{
    assert(!n->in_ready);
    struct raft_log *log = &n->log;
    uint64_t index = log->applied;
    if (n->snapshot_to_install || n->snapshot_unapplied != 0) {
        return FL_ERR_BUSY; /* the caller has not installed the received snapshot yet */
    }
    if (index < n->snapshot.index) {
        return FL_ERR_INVALID;
    }
    uint8_t *copy = raft_blob_new(data, len);
    if (len > 0 && copy == NULL) {
        return FL_ERR_NOMEM;
    }
    uint64_t term = 0;
    if (!raft_log_term(log, index, &term)) {
        raft_blob_unref(copy);
        return FL_ERR_INVALID; /* applied is never compacted past */
    }
    raft_blob_unref(n->snapshot.data);
    n->snapshot = (struct raft_snapshot){index, term, n->conf, len, copy};
    if (index > keep_entries) {
        raft_log_compact_to(log, index - keep_entries);
    }
    return FL_OK;
}

/* ---- introspection ---- */

void raft_status(const struct raft_node *n, struct raft_status *st)
{
    *st = (struct raft_status){
        .id = n->id,
        .role = n->role,
        .lead = n->lead,
        .term = n->term,
        .vote = n->vote,
        .commit = n->log.committed,
        .persisted = n->log.stable,
        .applied = n->log.applied,
        .first_index = n->log.prev_index + 1,
        .last_index = raft_log_last_index(&n->log),
        .snapshot_index = n->snapshot.index,
        .lead_transferee = n->lead_transferee,
        .conf = n->conf,
    };
}

bool raft_term_at(const struct raft_node *n, uint64_t index, uint64_t *term)
{
    return raft_log_term(&n->log, index, term);
}

const char *raft_role_name(raft_role role)
{
    static const char *names[] = {"follower", "precandidate", "candidate", "leader"};
    return role <= RAFT_LEADER ? names[role] : "?";
}

const char *raft_msg_type_name(raft_msg_type type)
{
    static const char *names[] = {
        "?",           "app",        "app_resp",       "hb",           "hb_resp",
        "vote",        "vote_resp",  "prevote",        "prevote_resp", "snap",
        "timeout_now", "read_index", "read_index_resp"};
    return type <= RAFT_MSG_READ_INDEX_RESP ? names[type] : "?";
}

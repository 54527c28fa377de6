/* raft/replication.c: moving the log from the leader to the followers.
 *
 * Proposals only append to the leader's log; the appends go out when the
 * caller builds the next ready, so every proposal made in between shares
 * one message per follower (batching). A follower that rejects an append
 * answers with a hint (an index and the term there) so the leader can skip a
 * whole term of conflicting entries per round trip instead of one entry.
 */

#include "raft/internal.h"

fl_err raft_append_entry(struct raft_node *n, raft_entry_type type, const void *data, uint32_t len)
{
    struct raft_entry e = {
        .term = n->term,
        .index = raft_log_last_index(&n->log) + 1,
        .type = type,
        .len = len,
        .data = raft_blob_new(data, len), /* the log's reference */
    };
    if (len > 0 && e.data == NULL) {
        return FL_ERR_NOMEM;
    }
    fl_err err = raft_log_append(&n->log, &e);
    if (err != FL_OK) {
        raft_blob_unref(e.data);
        return err;
    }
    n->uncommitted_bytes += len;
    n->bcast_pending = true;
    return FL_OK;
}

static bool send_snapshot(struct raft_node *n, struct raft_progress *pr)
{
    const struct raft_snapshot *s = &n->snapshot;
    assert(s->index >= n->log.prev_index);
    raft_progress_become_snapshot(pr, s->index, n->ticks);
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .to = pr->id, .snapshot = *s};
    raft_blob_ref(m.snapshot.data); /* the message's reference */
    raft_send(n, &m);
    return true;
}

/* How many entries from `from` fit in one append. */
static uint32_t batch_count(const struct raft_node *n, uint64_t from)
{
    uint64_t last = raft_log_last_index(&n->log);
    uint64_t bytes = 0;
    uint32_t count = 0;
    for (uint64_t i = from; i <= last && count < RAFT_MSG_ENTRIES_MAX; i++) {
        const struct raft_entry *e = raft_log_get(&n->log, i);
        if (count > 0 && bytes + e->len > n->cfg.max_size_per_msg) {
            break;
        }
        bytes += e->len;
        count++;
    }
    return count;
}

bool raft_appends_held(const struct raft_node *n)
{
    return n->appends_wait_stable != 0 && n->log.stable < n->appends_wait_stable;
}

bool raft_send_append(struct raft_node *n, struct raft_progress *pr, bool allow_empty)
{
    assert(pr->id != n->id);
    if (raft_progress_is_paused(pr) || raft_appends_held(n)) {
        return false;
    }
    assert(pr->next <= raft_log_last_index(&n->log) + 1);
    uint64_t prev = pr->next - 1, prev_term;
    if (!raft_log_term(&n->log, prev, &prev_term)) {
        return send_snapshot(n, pr); /* compacted away */
    }
    uint32_t count = batch_count(n, pr->next);
    if (count == 0 && !allow_empty) {
        return false;
    }
    struct raft_msg m = {
        .type = RAFT_MSG_APPEND,
        .to = pr->id,
        .index = prev,
        .log_term = prev_term,
        .commit = n->log.committed,
    };
    if (count > 0) {
        m.entries = raft_malloc(count * sizeof(*m.entries)); /* owned by the message */
        if (m.entries == NULL) {
            return false; /* as if lost; retried on the next heartbeat answer */
        }
        const struct raft_entry *first = raft_log_get(&n->log, pr->next);
        for (uint32_t i = 0; i < count; i++) {
            m.entries[i] = first[i]; /* contiguous in the log array */
            raft_blob_ref(m.entries[i].data);
        }
        m.n_entries = count;
        raft_progress_sent_entries(pr, prev + count);
    } else if (pr->state == RAFT_PROGRESS_PROBE) {
        pr->probe_sent = true;
    }
    pr->sent_commit = n->log.committed;
    raft_send(n, &m);
    return true;
}

void raft_bcast_append(struct raft_node *n)
{
    if (raft_appends_held(n)) {
        return; /* still pending: raft_persisted sends them */
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        struct raft_progress *pr = &n->prs[i];
        if (pr->id == n->id) {
            continue;
        }
        bool allow_empty = pr->sent_commit < n->log.committed;
        while (raft_send_append(n, pr, allow_empty)) {
            allow_empty = false;
        }
    }
    n->bcast_pending = false;
}

void raft_bcast_heartbeat(struct raft_node *n)
{
    if (n->read_round_pending) {
        n->read_round++; /* every read queued so far rides this round */
        n->read_round_pending = false;
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        struct raft_progress *pr = &n->prs[i];
        if (pr->id == n->id) {
            continue;
        }
        /* Never tell a follower to commit past what it is known to hold. */
        uint64_t commit = pr->match < n->log.committed ? pr->match : n->log.committed;
        raft_send(n, &(struct raft_msg){.type = RAFT_MSG_HEARTBEAT,
                                        .to = pr->id,
                                        .commit = commit,
                                        .context = n->read_round});
    }
    raft_read_release(n);
}

static uint64_t match_of(const void *ctx, raft_id id)
{
    const struct raft_node *n = ctx;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return n->prs[i].match;
        }
    }
    return 0;
}

bool raft_maybe_commit(struct raft_node *n)
{
    assert(n->role == RAFT_LEADER);
    uint64_t index = raft_conf_quorum_value(&n->conf, match_of, n);
    if (index <= n->log.committed) {
        return false;
    }
    uint64_t term = 0;
    if (!raft_log_term(&n->log, index, &term)) {
        assert(false && "a quorum matches an index the leader no longer knows");
        return false;
    }
    /* Raft §5.4.2: count replicas only for entries of the leader's own term.
     * BUG 1 counts them for any term. */
    if (term != n->term && !RAFT_BUG(1)) {
        return false;
    }
    raft_log_commit_to(&n->log, index);
    n->bcast_pending = true;
    raft_read_release(n);
    return true;
}

void raft_send_timeout_now(struct raft_node *n, raft_id to)
{
    raft_send(n, &(struct raft_msg){.type = RAFT_MSG_TIMEOUT_NOW, .to = to});
}

/* ---- follower side ---- */

static void reply_append(struct raft_node *n, raft_id to, uint64_t index)
{
    raft_send(n, &(struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .to = to, .index = index});
}

static void reject_append(struct raft_node *n, const struct raft_msg *m)
{
    uint64_t last = raft_log_last_index(&n->log);
    uint64_t hint =
        raft_log_conflict_by_term(&n->log, m->index < last ? m->index : last, m->log_term);
    uint64_t hint_term = 0;
    if (!raft_log_term(&n->log, hint, &hint_term)) {
        assert(false && "the hint is never below the compacted prefix");
        return;
    }
    raft_send(n, &(struct raft_msg){.type = RAFT_MSG_APPEND_RESP,
                                    .to = m->from,
                                    .reject = true,
                                    .index = m->index,
                                    .reject_hint = hint,
                                    .log_term = hint_term});
}

/* Appends m's entries after the first one we lack or that conflicts.
 * Returns false if memory ran out (the leader will retry). */
static bool append_new_entries(struct raft_node *n, const struct raft_msg *m)
{
    struct raft_log *log = &n->log;
    uint32_t i = 0;
    for (; i < m->n_entries; i++) {
        /* BUG 5: an entry we already hold is assumed to match, whatever its term. */
        bool held = m->entries[i].index <= raft_log_last_index(log);
        if (RAFT_BUG(5) ? !held
                        : !raft_log_match_term(log, m->entries[i].index, m->entries[i].term)) {
            break;
        }
    }
    if (i < m->n_entries && m->entries[i].index <= raft_log_last_index(log)) {
        raft_log_truncate_from(log, m->entries[i].index); /* asserts it is uncommitted */
    }
    return raft_log_append_copies(log, m->entries + i, m->n_entries - i) == FL_OK;
}

void raft_handle_append(struct raft_node *n, const struct raft_msg *m)
{
    struct raft_log *log = &n->log;
    if (m->index < log->committed) {
        reply_append(n, m->from, log->committed);
        return;
    }
    if (!raft_log_match_term(log, m->index, m->log_term)) {
        reject_append(n, m);
        return;
    }
    if (!append_new_entries(n, m)) {
        return;
    }
    /* Only what this message proved to match may commit: entries past it
     * may be a stale tail the leader has not overwritten yet. */
    uint64_t last_new = m->index + m->n_entries;
    raft_log_commit_to(log, m->commit < last_new ? m->commit : last_new);
    reply_append(n, m->from, last_new);
}

void raft_handle_heartbeat(struct raft_node *n, const struct raft_msg *m)
{
    raft_log_commit_to(&n->log, m->commit);
    raft_send(n, &(struct raft_msg){
                     .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .context = m->context});
}

void raft_handle_snapshot(struct raft_node *n, const struct raft_msg *m)
{
    const struct raft_snapshot *s = &m->snapshot;
    struct raft_log *log = &n->log;
    if (s->index <= log->committed) {
        reply_append(n, m->from, log->committed);
        return;
    }
    if (raft_log_match_term(log, s->index, s->term)) {
        raft_log_commit_to(log, s->index); /* we have it all: just catch up */
        reply_append(n, m->from, log->committed);
        return;
    }
    uint8_t *data = raft_blob_new(s->data, s->len);
    if (s->len > 0 && data == NULL) {
        return; /* the leader retries after a timeout */
    }
    raft_log_reset(log, s->index, s->term);
    raft_blob_unref(n->snapshot.data);
    n->snapshot = *s;
    n->snapshot.data = data;
    n->snapshot_to_install = true;
    n->conf = s->conf;
    if (raft_progress_rebuild(n) != FL_OK) {
        return;
    }
    reply_append(n, m->from, s->index);
}

/* ---- leader side ---- */

void raft_handle_append_response(struct raft_node *n, const struct raft_msg *m)
{
    struct raft_progress *pr = raft_progress_of(n, m->from);
    if (pr == NULL) {
        return;
    }
    pr->recent_active = true;
    if (m->reject) {
        uint64_t hint = m->reject_hint;
        if (m->log_term > 0) {
            hint = raft_log_conflict_by_term(&n->log, m->reject_hint, m->log_term);
        }
        if (raft_progress_maybe_decrease(pr, m->index, hint)) {
            if (pr->state == RAFT_PROGRESS_REPLICATE) {
                raft_progress_become_probe(pr);
            }
            n->bcast_pending = true;
        }
        return;
    }
    if (!raft_progress_maybe_update(pr, m->index)) {
        return;
    }
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
        raft_progress_become_replicate(pr);
        break;
    case RAFT_PROGRESS_SNAPSHOT:
        if (pr->match >= pr->pending_snapshot) {
            raft_progress_become_replicate(pr);
        }
        break;
    case RAFT_PROGRESS_REPLICATE:
        raft_progress_free_inflights_to(pr, m->index);
        break;
    }
    raft_maybe_commit(n);
    n->bcast_pending = true;
    if (m->from == n->lead_transferee && pr->match == raft_log_last_index(&n->log)) {
        raft_send_timeout_now(n, m->from);
    }
}

void raft_handle_heartbeat_response(struct raft_node *n, const struct raft_msg *m)
{
    struct raft_progress *pr = raft_progress_of(n, m->from);
    if (pr == NULL) {
        return;
    }
    pr->recent_active = true;
    pr->probe_sent = false;
    if (pr->state == RAFT_PROGRESS_REPLICATE && pr->inflight_count == pr->inflight_cap) {
        /* Free one slot so a lost append cannot stall the pipeline forever. */
        pr->inflight_start = (pr->inflight_start + 1) % pr->inflight_cap;
        pr->inflight_count--;
    }
    if (pr->match < raft_log_last_index(&n->log)) {
        raft_send_append(n, pr, true);
    }
    /* BUG 7: any answer is taken as confirming the newest round, even one
     * sent before the reads of that round arrived. */
    uint64_t round = RAFT_BUG(7) ? n->read_round : m->context;
    if (round > pr->read_acked) {
        pr->read_acked = round;
        raft_read_release(n);
    }
}

/* ---- what the caller tells the leader about its followers ---- */

bool raft_progress_match(const struct raft_node *n, raft_id id, uint64_t *match)
{
    if (n->role != RAFT_LEADER) {
        return false;
    }
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            *match = n->prs[i].match;
            return true;
        }
    }
    return false;
}

void raft_report_unreachable(struct raft_node *n, raft_id id)
{
    assert(!n->in_ready);
    struct raft_progress *pr = n->role == RAFT_LEADER ? raft_progress_of(n, id) : NULL;
    if (pr == NULL || id == n->id) {
        return;
    }
    /* Appends in flight were likely lost with the connection: stop
     * pipelining and find the match again, one probe at a time. */
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        raft_progress_become_probe(pr);
    }
}

void raft_report_snapshot(struct raft_node *n, raft_id id, bool ok)
{
    assert(!n->in_ready);
    struct raft_progress *pr = n->role == RAFT_LEADER ? raft_progress_of(n, id) : NULL;
    if (pr == NULL || id == n->id || pr->state != RAFT_PROGRESS_SNAPSHOT || ok) {
        return; /* ok: the follower's append response moves it on, as before */
    }
    /* Failed: the follower does not have it. Probe from its known match; the
     * next heartbeat answer sends the append (or the snapshot) again, so a
     * follower that cannot take snapshots is not flooded with them. */
    pr->pending_snapshot = 0;
    raft_progress_become_probe(pr);
    pr->probe_sent = true;
}

/* raft/confchange.c: membership changes by joint consensus.
 *
 * A change is proposed as an "enter joint" entry carrying the list of
 * changes. When applied, the node's configuration becomes joint: the old
 * voters move to voters_outgoing and the changes apply to the incoming set;
 * from then on every decision needs a majority of both. The leader, once it
 * has applied that entry, appends "leave joint"; when that is applied the
 * outgoing set is dropped. A leader that is no longer a voter then steps
 * down. Configurations change on apply, so every node walks through the
 * same sequence; only one change may be in flight (pending_conf_index).
 */
#include <string.h>

#include "raft/internal.h"

static void ids_remove(raft_id *ids, uint32_t *n, raft_id id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*n];
            return;
        }
    }
}

static bool ids_add(raft_id *ids, uint32_t *n, raft_id id)
{
    if (raft_ids_contain(ids, *n, id)) {
        return true;
    }
    if (*n == RAFT_MEMBERS_MAX) {
        return false;
    }
    ids[(*n)++] = id;
    return true;
}

static uint32_t members_count(const struct raft_conf *c)
{
    uint32_t count = c->n_voters + c->n_learners;
    for (uint32_t i = 0; i < c->n_voters_outgoing; i++) {
        raft_id id = c->voters_outgoing[i];
        count += !raft_ids_contain(c->voters, c->n_voters, id) &&
                 !raft_ids_contain(c->learners, c->n_learners, id);
    }
    return count;
}

/* The joint configuration that entering with `changes` from `cur` yields. */
static fl_err enter_joint(const struct raft_conf *cur, const struct raft_conf_change *changes,
                          size_t n_changes, struct raft_conf *out)
{
    if (raft_conf_is_joint(cur) || n_changes == 0 || n_changes > RAFT_MEMBERS_MAX) {
        return FL_ERR_INVALID;
    }
    struct raft_conf c = *cur;
    memcpy(c.voters_outgoing, c.voters, sizeof(c.voters));
    c.n_voters_outgoing = c.n_voters;
    for (size_t i = 0; i < n_changes; i++) {
        raft_id id = changes[i].id;
        if (id == 0) {
            return FL_ERR_INVALID;
        }
        switch (changes[i].op) {
        case RAFT_CONF_ADD_VOTER:
            ids_remove(c.learners, &c.n_learners, id);
            if (!ids_add(c.voters, &c.n_voters, id)) {
                return FL_ERR_INVALID;
            }
            break;
        case RAFT_CONF_ADD_LEARNER:
            /* A voter becoming a learner would need a third set: unsupported. */
            if (raft_conf_is_voter(&c, id) || !ids_add(c.learners, &c.n_learners, id)) {
                return FL_ERR_INVALID;
            }
            break;
        case RAFT_CONF_REMOVE:
            ids_remove(c.voters, &c.n_voters, id);
            ids_remove(c.learners, &c.n_learners, id);
            break;
        default:
            return FL_ERR_INVALID;
        }
    }
    if (c.n_voters == 0 || members_count(&c) > RAFT_MEMBERS_MAX) {
        return FL_ERR_INVALID;
    }
    *out = c;
    return FL_OK;
}

size_t raft_conf_change_encode(uint8_t kind, const struct raft_conf_change *changes, size_t n,
                               uint8_t *buf)
{
    assert(n <= RAFT_MEMBERS_MAX);
    size_t at = 0;
    buf[at++] = kind;
    buf[at++] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        buf[at++] = (uint8_t)changes[i].op;
        for (int b = 0; b < 8; b++) {
            buf[at++] = (uint8_t)(changes[i].id >> (8 * b));
        }
    }
    assert(at <= RAFT_CONF_ENCODED_MAX);
    return at;
}

fl_err raft_conf_change_decode(const uint8_t *buf, size_t len, uint8_t *kind,
                               struct raft_conf_change *changes, size_t *n)
{
    if (len < 2 || buf[1] > RAFT_MEMBERS_MAX || len != 2 + (size_t)buf[1] * 9) {
        return FL_ERR_CORRUPT;
    }
    *kind = buf[0];
    *n = buf[1];
    for (size_t i = 0; i < *n; i++) {
        const uint8_t *p = buf + 2 + i * 9;
        uint64_t id = 0;
        for (int b = 0; b < 8; b++) {
            id |= (uint64_t)p[1 + b] << (8 * b);
        }
        changes[i] = (struct raft_conf_change){(raft_conf_op)p[0], id};
    }
    return FL_OK;
}

fl_err raft_propose_conf_change(struct raft_node *n, const struct raft_conf_change *changes,
                                size_t n_changes, uint64_t *index)
{
    assert(!n->in_ready);
    if (n->role != RAFT_LEADER) {
        return FL_ERR_UNAVAILABLE;
    }
    if (n->pending_conf_index > n->log.applied || raft_conf_is_joint(&n->conf) ||
        n->lead_transferee != 0) {
        return FL_ERR_BUSY;
    }
    struct raft_conf next;
    fl_err err = enter_joint(&n->conf, changes, n_changes, &next);
    if (err != FL_OK) {
        return err;
    }
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_change_encode(RAFT_CONF_ENTER_JOINT, changes, n_changes, buf);
    err = raft_append_entry(n, RAFT_ENTRY_CONF_CHANGE, buf, (uint32_t)len);
    if (err != FL_OK) {
        return err;
    }
    n->pending_conf_index = raft_log_last_index(&n->log);
    if (index != NULL) {
        *index = n->pending_conf_index;
    }
    return FL_OK;
}

fl_err raft_apply_conf_entry(struct raft_node *n, const struct raft_entry *e)
{
    assert(e->type == RAFT_ENTRY_CONF_CHANGE);
    uint8_t kind;
    struct raft_conf_change changes[RAFT_MEMBERS_MAX];
    size_t count;
    fl_err err = raft_conf_change_decode(e->data, e->len, &kind, changes, &count);
    if (err != FL_OK) {
        return err;
    }
    if (kind == RAFT_CONF_LEAVE_JOINT) {
        /* Every node sees the same sequence, so an invalid entry is skipped everywhere. */
        if (!raft_conf_is_joint(&n->conf)) {
            return FL_ERR_INVALID;
        }
        n->conf.n_voters_outgoing = 0;
        return FL_OK;
    }
    if (kind != RAFT_CONF_ENTER_JOINT) {
        return FL_ERR_INVALID;
    }
    struct raft_conf next;
    err = enter_joint(&n->conf, changes, count, &next);
    if (err == FL_OK) {
        n->conf = next;
    }
    return err;
}

/* Makes prs hold exactly the members of conf, keeping known progress. */
fl_err raft_progress_rebuild(struct raft_node *n)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n->n_prs; i++) {
        if (raft_conf_is_member(&n->conf, n->prs[i].id)) {
            n->prs[kept++] = n->prs[i];
        }
    }
    n->n_prs = kept;
    const raft_id *sets[3] = {n->conf.voters, n->conf.voters_outgoing, n->conf.learners};
    uint32_t counts[3] = {n->conf.n_voters, n->conf.n_voters_outgoing, n->conf.n_learners};
    uint64_t next = raft_log_last_index(&n->log) + 1;
    for (int s = 0; s < 3; s++) {
        for (uint32_t i = 0; i < counts[s]; i++) {
            if (raft_progress_of(n, sets[s][i]) != NULL) {
                continue;
            }
            assert(n->n_prs < RAFT_MEMBERS_MAX);
            struct raft_progress *pr = &n->prs[n->n_prs++];
            raft_progress_init(pr, sets[s][i], next, n->cfg.max_inflight_msgs);
            if (pr->id == n->id) {
                pr->match = n->log.stable;
            }
        }
    }
    return FL_OK;
}

bool raft_has_unapplied_conf_change(const struct raft_node *n)
{
    for (uint64_t i = n->log.applied + 1; i <= n->log.committed; i++) {
        const struct raft_entry *e = raft_log_get(&n->log, i);
        if (e != NULL && e->type == RAFT_ENTRY_CONF_CHANGE) {
            return true;
        }
    }
    return false;
}

void raft_maybe_leave_joint(struct raft_node *n)
{
    if (n->role != RAFT_LEADER || !raft_conf_is_joint(&n->conf) ||
        n->pending_conf_index > n->log.applied) {
        return;
    }
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_change_encode(RAFT_CONF_LEAVE_JOINT, NULL, 0, buf);
    if (raft_append_entry(n, RAFT_ENTRY_CONF_CHANGE, buf, (uint32_t)len) == FL_OK) {
        n->pending_conf_index = raft_log_last_index(&n->log);
    }
}

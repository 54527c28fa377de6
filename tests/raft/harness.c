/* tests/raft/harness.c: see harness.h. Aborts on harness misuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL && size > 0) {
        abort();
    }
    return q;
}

static uint64_t h_rand(void *ctx)
{
    uint64_t *s = ctx;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void msg_free(struct raft_msg *m);
static void held_free(struct h_node *nd);

static struct h_node *node(struct h_cluster *c, raft_id id)
{
    if (id < 1 || id > c->n) {
        abort();
    }
    return &c->nodes[id - 1];
}

struct raft_node *h_raft(struct h_cluster *c, raft_id id)
{
    return node(c, id)->raft;
}

struct raft_status h_status(struct h_cluster *c, raft_id id)
{
    struct raft_status st;
    raft_status(h_raft(c, id), &st);
    return st;
}

static void start(struct h_cluster *c, struct h_node *nd)
{
    struct raft_entry *es = calloc(nd->n_log + 1, sizeof(*es));
    for (size_t i = 0; i < nd->n_log; i++) {
        es[i] = (struct raft_entry){nd->log[i].term, nd->log[i].index, nd->log[i].type,
                                    nd->log[i].len, nd->log[i].data};
    }
    struct raft_restore r = {nd->hs, nd->snap, es, nd->n_log, nd->snap.index};
    struct raft_config cfg = c->cfg;
    cfg.id = nd->id;
    cfg.rand_ctx = &c->rng;
    if (raft_new(&cfg, &r, &nd->raft) != FL_OK) {
        abort();
    }
    free(es);
    nd->n_applied = 0; /* the state machine restarts from the snapshot */
}

void h_init(struct h_cluster *c, uint32_t voters, uint32_t extra, const struct raft_config *cfg)
{
    memset(c, 0, sizeof(*c));
    c->n = voters + extra;
    c->rng = 42;
    c->cfg = *cfg;
    c->cfg.rand = h_rand;
    for (uint32_t i = 0; i < c->n; i++) {
        struct h_node *nd = &c->nodes[i];
        nd->id = i + 1;
        nd->applied = calloc(H_APPLIED_MAX, sizeof(*nd->applied));
        if (i < voters) {
            nd->snap.index = nd->snap.term = 1;
            for (uint32_t v = 0; v < voters; v++) {
                nd->snap.conf.voters[v] = v + 1;
            }
            nd->snap.conf.n_voters = voters;
            nd->hs = (struct raft_hard_state){.term = 1, .commit = 1};
        }
        start(c, nd);
    }
}

void h_free(struct h_cluster *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        raft_free(c->nodes[i].raft);
        free(c->nodes[i].log);
        free(c->nodes[i].applied);
        held_free(&c->nodes[i]);
        free(c->nodes[i].held);
        free(c->nodes[i].held_seq);
    }
    for (size_t i = 0; i < c->n_net; i++) {
        msg_free(&c->net[i]);
    }
    free(c->net);
}

static void copy_entry(struct h_entry_copy *dst, const struct raft_entry *e)
{
    if (e->len > sizeof(dst->data)) {
        abort();
    }
    *dst = (struct h_entry_copy){e->index, e->term, e->type, e->len, {0}};
    if (e->len > 0) {
        memcpy(dst->data, e->data, e->len);
    }
}

static void persist(struct h_node *nd, const struct raft_ready *rd)
{
    if (rd->snapshot != NULL) {
        nd->snap = *rd->snapshot;
        if (rd->snapshot->len > sizeof(nd->snap_data)) {
            abort();
        }
        if (rd->snapshot->len > 0) {
            memcpy(nd->snap_data, rd->snapshot->data, rd->snapshot->len);
        }
        nd->snap.data = nd->snap_data;
        nd->n_log = 0;
    }
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        while (nd->n_log > 0 && nd->log[nd->n_log - 1].index >= e->index) {
            nd->n_log--;
        }
        if (nd->n_log == nd->cap_log) {
            nd->cap_log = nd->cap_log ? nd->cap_log * 2 : 64;
            nd->log = xrealloc(nd->log, nd->cap_log * sizeof(*nd->log));
        }
        copy_entry(&nd->log[nd->n_log++], e);
    }
    if (rd->has_hard_state) {
        nd->hs = rd->hard_state;
    }
}

static void msg_free(struct raft_msg *m)
{
    for (uint32_t e = 0; e < m->n_entries; e++) {
        free(m->entries[e].data);
    }
    free(m->entries);
    free(m->snapshot.data);
}

static void msg_copy(struct raft_msg *copy, const struct raft_msg *m);

/* A manual node's message that must wait for its ready's write. */
static void hold(struct h_node *nd, const struct raft_msg *m, uint64_t seq)
{
    nd->msgs_sent[m->type]++;
    if (nd->n_held == nd->cap_held) {
        nd->cap_held = nd->cap_held ? nd->cap_held * 2 : 16;
        nd->held = xrealloc(nd->held, nd->cap_held * sizeof(*nd->held));
        nd->held_seq = xrealloc(nd->held_seq, nd->cap_held * sizeof(*nd->held_seq));
    }
    msg_copy(&nd->held[nd->n_held], m);
    nd->held_seq[nd->n_held++] = seq;
}

static void held_free(struct h_node *nd)
{
    for (size_t i = 0; i < nd->n_held; i++) {
        msg_free(&nd->held[i]);
    }
    nd->n_held = 0;
}

static void net_push(struct h_cluster *c, const struct raft_msg *m)
{
    if (c->n_net == c->cap_net) {
        c->cap_net = c->cap_net ? c->cap_net * 2 : 64;
        c->net = xrealloc(c->net, c->cap_net * sizeof(*c->net));
    }
    c->net[c->n_net++] = *m; /* takes m's copies */
}

/* Held messages of readies up to seq go out, in order. */
static void release(struct h_cluster *c, struct h_node *nd, uint64_t seq)
{
    size_t kept = 0;
    for (size_t i = 0; i < nd->n_held; i++) {
        if (nd->held_seq[i] <= seq) {
            net_push(c, &nd->held[i]);
        } else {
            nd->held[kept] = nd->held[i];
            nd->held_seq[kept++] = nd->held_seq[i];
        }
    }
    nd->n_held = kept;
}

static void send(struct h_cluster *c, struct h_node *nd, const struct raft_msg *m)
{
    nd->msgs_sent[m->type]++;
    if (m->type == RAFT_MSG_APPEND && m->n_entries > 0) {
        nd->appends_with_entries_to[m->to]++;
    }
    struct raft_msg copy;
    msg_copy(&copy, m);
    net_push(c, &copy);
}

static void msg_copy(struct raft_msg *copy, const struct raft_msg *m)
{
    *copy = *m;
    copy->entries = NULL;
    if (m->n_entries > 0) {
        copy->entries = calloc(m->n_entries, sizeof(*copy->entries));
        for (uint32_t i = 0; i < m->n_entries; i++) {
            copy->entries[i] = m->entries[i];
            copy->entries[i].data = NULL;
            if (m->entries[i].len > 0) {
                copy->entries[i].data = malloc(m->entries[i].len);
                memcpy(copy->entries[i].data, m->entries[i].data, m->entries[i].len);
            }
        }
    }
    copy->snapshot.data = NULL;
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.len > 0) {
        copy->snapshot.data = malloc(m->snapshot.len);
        memcpy(copy->snapshot.data, m->snapshot.data, m->snapshot.len);
    }
}

static void trace_msg(struct h_cluster *c, const struct raft_msg *m, bool dropped)
{
    if (c->trace == NULL) {
        return;
    }
    fprintf(c->trace, "  %llu->%llu %s term=%llu", (unsigned long long)m->from,
            (unsigned long long)m->to, raft_msg_type_name(m->type), (unsigned long long)m->term);
    switch (m->type) {
    case RAFT_MSG_APPEND:
        fprintf(c->trace, " prev=%llu/%llu commit=%llu entries=[", (unsigned long long)m->index,
                (unsigned long long)m->log_term, (unsigned long long)m->commit);
        for (uint32_t i = 0; i < m->n_entries; i++) {
            fprintf(c->trace, "%s%llu/%llu%s", i ? " " : "",
                    (unsigned long long)m->entries[i].index, (unsigned long long)m->entries[i].term,
                    m->entries[i].type == RAFT_ENTRY_CONF_CHANGE ? "cc" : "");
        }
        fprintf(c->trace, "]");
        break;
    case RAFT_MSG_APPEND_RESP:
        fprintf(c->trace, " index=%llu%s", (unsigned long long)m->index,
                m->reject ? " reject" : "");
        if (m->reject) {
            fprintf(c->trace, " hint=%llu/%llu", (unsigned long long)m->reject_hint,
                    (unsigned long long)m->log_term);
        }
        break;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        fprintf(c->trace, " last=%llu/%llu%s", (unsigned long long)m->index,
                (unsigned long long)m->log_term, m->context ? " transfer" : "");
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        fprintf(c->trace, "%s", m->reject ? " reject" : " grant");
        break;
    case RAFT_MSG_HEARTBEAT:
        fprintf(c->trace, " commit=%llu round=%llu", (unsigned long long)m->commit,
                (unsigned long long)m->context);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        fprintf(c->trace, " round=%llu", (unsigned long long)m->context);
        break;
    case RAFT_MSG_SNAPSHOT:
        fprintf(c->trace, " snapshot=%llu/%llu", (unsigned long long)m->snapshot.index,
                (unsigned long long)m->snapshot.term);
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        fprintf(c->trace, " index=%llu read=%llu", (unsigned long long)m->index,
                (unsigned long long)m->context);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    }
    fprintf(c->trace, "%s\n", dropped ? " DROPPED" : "");
}

static void trace_ready(struct h_cluster *c, raft_id id, const struct raft_ready *rd)
{
    if (c->trace == NULL) {
        return;
    }
    fprintf(c->trace, "ready %llu:", (unsigned long long)id);
    if (rd->has_soft_state) {
        fprintf(c->trace, " %s(lead=%llu)", raft_role_name(rd->soft_state.role),
                (unsigned long long)rd->soft_state.lead);
    }
    if (rd->has_hard_state) {
        fprintf(c->trace, " hs=%llu/%llu/%llu", (unsigned long long)rd->hard_state.term,
                (unsigned long long)rd->hard_state.vote, (unsigned long long)rd->hard_state.commit);
    }
    if (rd->snapshot != NULL) {
        fprintf(c->trace, " snapshot=%llu", (unsigned long long)rd->snapshot->index);
    }
    if (rd->n_entries > 0) {
        fprintf(c->trace, " persist=%llu..%llu", (unsigned long long)rd->entries[0].index,
                (unsigned long long)rd->entries[rd->n_entries - 1].index);
    }
    if (rd->n_committed > 0) {
        fprintf(c->trace, " apply=%llu..%llu", (unsigned long long)rd->committed[0].index,
                (unsigned long long)rd->committed[rd->n_committed - 1].index);
    }
    for (size_t i = 0; i < rd->n_read_states; i++) {
        fprintf(c->trace, " read(%llu)@%llu", (unsigned long long)rd->read_states[i].read_id,
                (unsigned long long)rd->read_states[i].index);
    }
    fprintf(c->trace, " msgs=%zu\n", rd->n_msgs);
}

static struct h_taken taken_of(const struct raft_ready *rd)
{
    struct h_taken t = {.taken = true, .n_msgs = rd->n_msgs};
    if (rd->snapshot != NULL) {
        t.snapshot = true;
        t.snapshot_index = rd->snapshot->index;
        t.snapshot_term = rd->snapshot->term;
    }
    if (rd->n_entries > 0) {
        t.n_entries = rd->n_entries;
        t.first_index = rd->entries[0].index;
        t.last_index = rd->entries[rd->n_entries - 1].index;
        t.last_term = rd->entries[rd->n_entries - 1].term;
    }
    if (rd->n_committed > 0) {
        t.n_committed = rd->n_committed;
        t.apply_to = rd->committed[rd->n_committed - 1].index;
    }
    return t;
}

void h_report(struct h_cluster *c, raft_id id, const struct h_taken *t)
{
    struct h_node *nd = node(c, id);
    struct raft_node *r = nd->raft;
    if (r == NULL || !t->taken) {
        return;
    }
    if (t->snapshot) {
        raft_persisted(r, t->snapshot_index, t->snapshot_term);
    }
    if (t->n_entries > 0) {
        raft_persisted(r, t->last_index, t->last_term);
    }
    release(c, nd, t->seq);
    if (t->snapshot) {
        raft_applied(r, t->snapshot_index);
    }
    if (t->apply_to > 0) {
        raft_applied(r, t->apply_to);
    }
}

void h_ready(struct h_cluster *c, raft_id id)
{
    struct h_taken t = h_take(c, id);
    h_report(c, id, &t);
}

struct h_taken h_take(struct h_cluster *c, raft_id id)
{
    struct h_node *nd = node(c, id);
    if (nd->raft == NULL || !raft_has_ready(nd->raft)) {
        return (struct h_taken){0};
    }
    struct raft_ready rd;
    raft_ready(nd->raft, &rd);
    trace_ready(c, id, &rd);
    struct h_taken t = taken_of(&rd);
    t.seq = ++nd->taken_seq;
    persist(nd, &rd);
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (nd->manual && rd.msgs[i].type != RAFT_MSG_APPEND) {
            hold(nd, &rd.msgs[i], t.seq);
        } else {
            send(c, nd, &rd.msgs[i]);
        }
    }
    if (rd.snapshot != NULL) {
        nd->n_applied = 0;
    }
    for (size_t i = 0; i < rd.n_committed; i++) {
        if (nd->n_applied == H_APPLIED_MAX) {
            abort();
        }
        copy_entry(&nd->applied[nd->n_applied++], &rd.committed[i]);
    }
    for (size_t i = 0; i < rd.n_read_states && nd->n_reads < 64; i++) {
        nd->reads[nd->n_reads++] = rd.read_states[i];
    }
    raft_advance(nd->raft);
    return t;
}

void h_deliver_all(struct h_cluster *c)
{
    size_t n = c->n_net;
    struct raft_msg *batch = c->net;
    c->net = NULL;
    c->n_net = c->cap_net = 0;
    for (size_t i = 0; i < n; i++) {
        struct raft_msg *m = &batch[i];
        struct h_node *to = node(c, m->to);
        bool delivered = to->raft != NULL && !c->cut[m->from][m->to];
        trace_msg(c, m, !delivered);
        if (delivered) {
            (void)raft_step(to->raft, m);
        }
        for (uint32_t e = 0; e < m->n_entries; e++) {
            free(m->entries[e].data);
        }
        free(m->entries);
        free(m->snapshot.data);
    }
    free(batch);
}

void h_stabilize(struct h_cluster *c)
{
    for (int round = 0; round < 1000; round++) {
        bool busy = c->n_net > 0;
        for (uint32_t i = 0; i < c->n; i++) {
            if (c->nodes[i].raft != NULL && !c->nodes[i].manual &&
                raft_has_ready(c->nodes[i].raft)) {
                busy = true;
                h_ready(c, i + 1);
            }
        }
        h_deliver_all(c);
        if (!busy) {
            return;
        }
    }
    abort(); /* never quiet: a livelock */
}

void h_tick(struct h_cluster *c, raft_id id, uint32_t ticks)
{
    for (uint32_t t = 0; t < ticks; t++) {
        if (node(c, id)->raft != NULL) {
            raft_tick(node(c, id)->raft);
        }
    }
}

void h_tick_all(struct h_cluster *c, uint32_t ticks)
{
    for (uint32_t t = 0; t < ticks; t++) {
        for (uint32_t i = 0; i < c->n; i++) {
            h_tick(c, i + 1, 1);
        }
        h_stabilize(c);
    }
}

void h_isolate(struct h_cluster *c, raft_id id, bool isolated)
{
    for (uint32_t i = 1; i <= c->n; i++) {
        if (i != id) {
            c->cut[id][i] = c->cut[i][id] = isolated;
        }
    }
}

void h_crash(struct h_cluster *c, raft_id id)
{
    struct h_node *nd = node(c, id);
    raft_free(nd->raft);
    nd->raft = NULL;
    held_free(nd); /* the answers waiting for a write die with it */
}

void h_restart(struct h_cluster *c, raft_id id)
{
    struct h_node *nd = node(c, id);
    if (nd->raft != NULL) {
        abort();
    }
    start(c, nd);
}

raft_id h_leader(struct h_cluster *c)
{
    raft_id found = 0;
    uint64_t term = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->nodes[i].raft == NULL) {
            continue;
        }
        struct raft_status st = h_status(c, i + 1);
        if (st.role == RAFT_LEADER && st.term >= term) {
            found = i + 1;
            term = st.term;
        }
    }
    return found;
}

void h_elect(struct h_cluster *c, raft_id id)
{
    raft_campaign(h_raft(c, id));
    h_stabilize(c);
    if (h_status(c, id).role != RAFT_LEADER) {
        fprintf(stderr, "h_elect: node %llu did not win\n", (unsigned long long)id);
        abort();
    }
}

uint64_t h_propose_n(struct h_cluster *c, raft_id leader, uint32_t n)
{
    uint64_t index = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t data[8];
        uint64_t v = (uint64_t)i + 1000;
        memcpy(data, &v, sizeof(v));
        if (raft_propose(h_raft(c, leader), data, sizeof(data), &index) != FL_OK) {
            abort();
        }
    }
    return index;
}

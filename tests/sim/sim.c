/* sim: a whole Raft cluster in one process, driven by one seeded PRNG.
 *
 * Every random choice (which message is delivered next, which node ticks,
 * crashes, restarts, proposes, reads, changes membership or hands over
 * leadership, and the nodes' own election jitter) comes from one stream, so
 * a seed replays exactly: `sim --seed N --trace` prints every step.
 *
 * Each node has a "disk" (what it persisted from its readies) and volatile
 * state (the raft node, its state machine, its writes in flight). Persisting
 * is asynchronous, as in the member: a ready becomes a write that completes
 * some random steps later, in order; only then are its messages sent (a
 * leader's appends excepted: they leave at once), raft_persisted reported,
 * and its committed entries applied (raft_applied). A crash frees the
 * volatile part: every write not completed, in flight or not, is lost.
 *
 * After every step the checker verifies: one leader per term; Log Matching
 * (same index and term => same bytes and same previous term, which by
 * induction is the whole property); Leader Completeness (a leader holds every
 * entry committed in its term or before); State Machine Safety (every node
 * applies the same entry at an index, snapshots included); no committed entry
 * is lost across crashes (a consequence of the two before, checked again at
 * the end); and every ReadIndex answer is at or above the commit index the
 * cluster had reached when the read was issued. Then faults stop, and a
 * leader must commit a fresh proposal within a bound of ticks.
 */
#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft/raft.h"

#ifndef FLOTILLA_RAFT_BUG
#define FLOTILLA_RAFT_BUG 0
#endif

#define NODES_MAX         7
#define NET_MAX           20000
#define READS_MAX         100000
#define SPARES            2
#define WAITING_READS_MAX 64
#define WRITES_MAX        4096 /* writes in flight per node (a bound, never reached) */
#define SIM_ASSERT(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fail(__VA_ARGS__);                                                                     \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

/* ---- randomness ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_ctx(void *ctx)
{
    (void)ctx;
    return rng();
}

static uint64_t below(uint64_t n)
{
    return n == 0 ? 0 : rng() % n;
}

static bool chance(uint32_t per_million)
{
    return below(1000000) < per_million;
}

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

/* ---- the world ---- */

struct disk {
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* data: 16 bytes, (applied index, chain) */
    uint8_t snap_data[16];
    struct raft_entry *entries; /* owned; each data owned */
    size_t n_entries, cap;
};

struct applied_rec { /* what the state machine needs of a committed entry */
    uint64_t index, term, hash;
};

/* One ready, taken by the caller and waiting for its "fdatasync". */
struct write {
    uint64_t done_at; /* step at which it becomes durable (non-decreasing in the queue) */
    bool has_snap;
    struct raft_snapshot snap;
    uint8_t snap_data[16];
    struct raft_entry *entries; /* owned; each data owned */
    size_t n_entries;
    bool has_hs;
    struct raft_hard_state hs;
    struct raft_msg *msgs; /* held until durable; deep copies */
    size_t n_msgs;
    struct applied_rec *apply; /* applied once durable */
    size_t n_apply;
    uint64_t persist_index, persist_term; /* raft_persisted report (0: none) */
    uint64_t apply_to;                    /* raft_applied report (0: none) */
};

struct node {
    raft_id id;
    bool up;
    bool removed; /* once a member, now not: never comes back */
    struct raft_node *raft;
    struct disk disk;
    uint64_t sm_applied, sm_chain; /* the state machine: a hash chain of applied entries */
    raft_role traced_role;         /* for --trace: report role changes as they happen */
    uint64_t traced_term;
    uint64_t led_term, led_commit; /* commit rule: last commit seen while leading led_term */
    uint64_t frozen_until;         /* a process pause: no ticks, readies or deliveries */
    uint64_t waiting_reads[WAITING_READS_MAX]; /* client reads sent while paused */
    uint32_t n_waiting_reads;
    uint32_t write_delay_max; /* its disk: a write completes 0..max-1 steps after its ready */
    struct write *writes;     /* in flight, oldest first; lost on a crash */
    size_t n_writes, writes_cap;
};

struct net_msg {
    struct raft_msg m;   /* deep copy: entries and data owned here */
    uint64_t not_before; /* a slow message: not delivered before this step */
    uint64_t seq;        /* send order, for per-link FIFO seeds */
};

struct committed { /* what the cluster committed at one index */
    bool set;      /* term is known (from a committing leader or an applying node) */
    bool hash_set; /* bytes are known (from an applying node) */
    uint64_t term, hash, chain;
    bool chain_set;
    uint64_t commit_term; /* term of the leader seen committing it */
};

struct seen { /* for Log Matching: every (index, term) ever persisted */
    uint64_t term, hash, prev_term;
};

struct world {
    uint64_t seed;
    bool trace;
    uint32_t n_nodes;
    struct node nodes[NODES_MAX];
    struct raft_config cfg;
    struct net_msg *net;
    size_t n_net, net_cap;
    uint32_t drop_ppm, dup_ppm, hold_ppm, slow_ppm;
    bool cut_at_send; /* partitions drop at send time; messages already in flight cross */
    bool fifo;        /* per-link order kept (like TCP); otherwise any order */
    bool commit_rule; /* check the leader's commit rule directly (off: end-to-end only) */
    uint64_t next_seq;
    bool blocked[NODES_MAX][NODES_MAX];
    raft_id *leader_of_term;
    size_t n_terms;
    struct committed *committed;
    size_t n_committed_cap;
    uint64_t known_committed;
    struct seen **seen;
    uint32_t *n_seen;
    size_t n_seen_cap;
    uint64_t *read_floor; /* read id -> commit index when issued */
    size_t read_cap;
    uint64_t next_read, next_write;
    uint64_t step;
    uint64_t stale_reads, two_leader_steps;
    uint64_t reads_checked, writes_proposed, crashes, conf_changes, transfers, snapshots_sent;
    uint64_t writes_lost, appends_before_fsync;
    char failure[512];
};

static struct world W;

static void fail(const char *fmt, ...)
{
    if (W.failure[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(W.failure, sizeof(W.failure), fmt, ap);
    va_end(ap);
}

static void trace(const char *fmt, ...)
{
    if (!W.trace) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("[%6" PRIu64 "] ", W.step);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL && size > 0) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
    }
    return q;
}

static uint8_t *dup_bytes(const uint8_t *p, uint32_t len)
{
    if (len == 0) {
        return NULL;
    }
    uint8_t *q = xrealloc(NULL, len);
    memcpy(q, p, len);
    return q;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, &e->type, sizeof(e->type));
    return fnv(h, e->data, e->len);
}

/* ---- global records ---- */

static void grow_committed(uint64_t index)
{
    if (index < W.n_committed_cap) {
        return;
    }
    size_t cap = W.n_committed_cap ? W.n_committed_cap : 1024;
    while (cap <= index) {
        cap *= 2;
    }
    W.committed = xrealloc(W.committed, cap * sizeof(*W.committed));
    memset(W.committed + W.n_committed_cap, 0, (cap - W.n_committed_cap) * sizeof(*W.committed));
    W.n_committed_cap = cap;
}

static bool record_committed(uint64_t index, uint64_t term, uint64_t hash, const char *who)
{
    grow_committed(index);
    struct committed *c = &W.committed[index];
    if (!c->set) {
        c->set = true;
        c->term = term;
    }
    if (!c->hash_set) {
        c->hash_set = true;
        c->hash = hash;
    }
    SIM_ASSERT(c->term == term && c->hash == hash,
               "state machine safety: index %" PRIu64 " committed as term %" PRIu64
               " but %s has term %" PRIu64,
               index, c->term, who, term);
    return true;
}

static bool check_log_matching(uint64_t index, uint64_t term, uint64_t hash, uint64_t prev_term,
                               raft_id who)
{
    if (index >= W.n_seen_cap) {
        size_t cap = W.n_seen_cap ? W.n_seen_cap : 1024;
        while (cap <= index) {
            cap *= 2;
        }
        W.seen = xrealloc(W.seen, cap * sizeof(*W.seen));
        W.n_seen = xrealloc(W.n_seen, cap * sizeof(*W.n_seen));
        memset(W.seen + W.n_seen_cap, 0, (cap - W.n_seen_cap) * sizeof(*W.seen));
        memset(W.n_seen + W.n_seen_cap, 0, (cap - W.n_seen_cap) * sizeof(*W.n_seen));
        W.n_seen_cap = cap;
    }
    for (uint32_t i = 0; i < W.n_seen[index]; i++) {
        struct seen *s = &W.seen[index][i];
        if (s->term == term) {
            SIM_ASSERT(s->hash == hash && s->prev_term == prev_term,
                       "log matching: node %" PRIu64 " index %" PRIu64 " term %" PRIu64
                       " differs from another log's",
                       who, index, term);
            return true;
        }
    }
    W.seen[index] = xrealloc(W.seen[index], (W.n_seen[index] + 1) * sizeof(struct seen));
    W.seen[index][W.n_seen[index]++] = (struct seen){term, hash, prev_term};
    return true;
}

/* ---- the network ---- */

static void msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    if (src->n_entries > 0) {
        dst->entries = xrealloc(NULL, src->n_entries * sizeof(*dst->entries));
        for (uint32_t i = 0; i < src->n_entries; i++) {
            dst->entries[i] = src->entries[i];
            dst->entries[i].data = dup_bytes(src->entries[i].data, src->entries[i].len);
        }
    }
    if (src->type == RAFT_MSG_SNAPSHOT) {
        dst->snapshot.data = dup_bytes(src->snapshot.data, src->snapshot.len);
    }
}

static void msg_free(struct raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].data);
    }
    free(m->entries);
    if (m->type == RAFT_MSG_SNAPSHOT) {
        free(m->snapshot.data);
    }
}

static bool cut_link(raft_id from, raft_id to)
{
    return from >= 1 && from <= W.n_nodes && to >= 1 && to <= W.n_nodes &&
           W.blocked[from - 1][to - 1];
}

static void net_send(const struct raft_msg *m)
{
    if (chance(W.drop_ppm) || (W.cut_at_send && cut_link(m->from, m->to))) {
        return;
    }
    int copies = chance(W.dup_ppm) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        if (W.n_net == NET_MAX) {
            return; /* the network's bound: a full queue loses messages */
        }
        if (W.n_net == W.net_cap) {
            W.net_cap = W.net_cap ? W.net_cap * 2 : 256;
            W.net = xrealloc(W.net, W.net_cap * sizeof(*W.net));
        }
        struct net_msg *nm = &W.net[W.n_net++];
        msg_copy(&nm->m, m);
        /* Some messages sit in a queue somewhere for a long time. */
        nm->not_before = chance(W.slow_ppm) ? W.step + below(3000) : 0;
        nm->seq = W.next_seq++;
    }
}

static struct node *node_of(raft_id id)
{
    return id >= 1 && id <= W.n_nodes ? &W.nodes[id - 1] : NULL;
}

/* ---- disks and state machines ---- */

static void disk_truncate(struct disk *d, uint64_t from)
{
    while (d->n_entries > 0 && d->entries[d->n_entries - 1].index >= from) {
        free(d->entries[--d->n_entries].data);
    }
}

static uint64_t disk_term(const struct disk *d, uint64_t index)
{
    if (index == d->snap.index) {
        return d->snap.term;
    }
    for (size_t i = d->n_entries; i > 0; i--) {
        if (d->entries[i - 1].index == index) {
            return d->entries[i - 1].term;
        }
    }
    return 0;
}

/* Takes the entries' bytes (each data is moved to the disk and cleared in es). */
static bool disk_append(struct node *nd, struct raft_entry *es, size_t n)
{
    struct disk *d = &nd->disk;
    disk_truncate(d, es[0].index);
    for (size_t i = 0; i < n; i++) {
        struct raft_entry *e = &es[i];
        uint64_t prev_term = disk_term(d, e->index - 1);
        if (!check_log_matching(e->index, e->term, entry_hash(e), prev_term, nd->id)) {
            return false;
        }
        if (d->n_entries == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 64;
            d->entries = xrealloc(d->entries, d->cap * sizeof(*d->entries));
        }
        d->entries[d->n_entries++] = *e;
        e->data = NULL;
    }
    return true;
}

static void disk_set_snapshot(struct disk *d, const struct raft_snapshot *s)
{
    if (s->len != sizeof(d->snap_data)) {
        fprintf(stderr, "sim: snapshot of %u bytes\n", s->len);
        abort();
    }
    d->snap = *s;
    memcpy(d->snap_data, s->data, sizeof(d->snap_data));
    d->snap.data = d->snap_data;
    /* Entries at or below the snapshot are not needed to restart. */
    size_t keep = 0;
    for (size_t i = 0; i < d->n_entries; i++) {
        if (d->entries[i].index > s->index) {
            d->entries[keep++] = d->entries[i];
        } else {
            free(d->entries[i].data);
        }
    }
    d->n_entries = keep;
}

static void disk_free(struct disk *d)
{
    disk_truncate(d, 0);
    free(d->entries);
    memset(d, 0, sizeof(*d));
}

/* The disk's entries follow its snapshot contiguously: O(1) lookup. */
static bool disk_holds(const struct disk *d, uint64_t index, uint64_t term)
{
    if (index <= d->snap.index) {
        return true; /* covered by the snapshot on disk */
    }
    if (d->n_entries == 0 || index < d->entries[0].index) {
        return false;
    }
    uint64_t at = index - d->entries[0].index;
    return at < d->n_entries && d->entries[at].index == index && d->entries[at].term == term;
}

static bool sm_apply(struct node *nd, const struct applied_rec *e)
{
    SIM_ASSERT(e->index == nd->sm_applied + 1,
               "node %" PRIu64 " applies index %" PRIu64 " after %" PRIu64, nd->id, e->index,
               nd->sm_applied);
    /* The caller's obligation 3, and the core's promise that what it hands
     * out to apply was handed out to persist first. */
    SIM_ASSERT(disk_holds(&nd->disk, e->index, e->term),
               "node %" PRIu64 " applies index %" PRIu64 " (term %" PRIu64 ") not on its disk",
               nd->id, e->index, e->term);
    uint64_t hash = e->hash;
    if (!record_committed(e->index, e->term, hash, "an applying node")) {
        return false;
    }
    nd->sm_chain = fnv(nd->sm_chain, &hash, sizeof(hash));
    nd->sm_applied = e->index;
    struct committed *c = &W.committed[e->index];
    if (!c->chain_set) {
        c->chain_set = true;
        c->chain = nd->sm_chain;
    }
    SIM_ASSERT(c->chain == nd->sm_chain,
               "state machine safety: node %" PRIu64 " state at %" PRIu64 " diverges", nd->id,
               e->index);
    return true;
}

static bool sm_install(struct node *nd, const struct raft_snapshot *s)
{
    uint64_t idx, chain;
    memcpy(&idx, s->data, 8);
    memcpy(&chain, s->data + 8, 8);
    SIM_ASSERT(idx == s->index, "snapshot data index %" PRIu64 " != %" PRIu64, idx, s->index);
    grow_committed(idx);
    struct committed *c = &W.committed[idx];
    SIM_ASSERT(!c->chain_set || c->chain == chain,
               "state machine safety: snapshot at %" PRIu64 " diverges (node %" PRIu64 ")", idx,
               nd->id);
    nd->sm_applied = idx;
    nd->sm_chain = chain;
    return true;
}

/* ---- node life ---- */

static bool node_start(struct node *nd)
{
    struct disk *d = &nd->disk;
    struct raft_config cfg = W.cfg;
    cfg.id = nd->id;
    struct raft_restore r = {
        .hard_state = d->hs,
        .snapshot = d->snap,
        .entries = d->entries,
        .n_entries = d->n_entries,
        .applied = d->snap.index,
    };
    fl_err err = raft_new(&cfg, &r, &nd->raft);
    SIM_ASSERT(err == FL_OK, "raft_new failed for node %" PRIu64 ": %d", nd->id, err);
    nd->up = true;
    nd->led_term = nd->led_commit = 0;
    nd->frozen_until = 0;
    nd->n_waiting_reads = 0;
    if (d->snap.index == 0) {
        nd->sm_applied = 0;
        nd->sm_chain = 0;
    } else {
        nd->sm_applied = d->snap.index;
        memcpy(&nd->sm_chain, d->snap_data + 8, 8);
    }
    trace("start node %" PRIu64 " term=%" PRIu64 " vote=%" PRIu64 " commit=%" PRIu64
          " snap=%" PRIu64 " entries=%zu",
          nd->id, d->hs.term, d->hs.vote, d->hs.commit, d->snap.index, d->n_entries);
    return true;
}

/* Up and not paused: a paused process ticks, readies, receives and writes nothing. */
static bool running(const struct node *nd)
{
    return nd->up && W.step >= nd->frozen_until;
}

static void write_free(struct write *w)
{
    for (size_t i = 0; i < w->n_entries; i++) {
        free(w->entries[i].data);
    }
    free(w->entries);
    for (size_t i = 0; i < w->n_msgs; i++) {
        msg_free(&w->msgs[i]);
    }
    free(w->msgs);
    free(w->apply);
    memset(w, 0, sizeof(*w));
}

static void writes_drop(struct node *nd)
{
    for (size_t i = 0; i < nd->n_writes; i++) {
        write_free(&nd->writes[i]);
    }
    W.writes_lost += nd->n_writes;
    nd->n_writes = 0;
}

static void node_crash(struct node *nd)
{
    trace("crash node %" PRIu64 " (%zu writes in flight lost)", nd->id, nd->n_writes);
    raft_free(nd->raft);
    nd->raft = NULL;
    nd->up = false;
    writes_drop(nd);
    W.crashes++;
}

static void trace_send(const struct raft_msg *m, const char *when)
{
    trace("send %s %" PRIu64 "->%" PRIu64 " term=%" PRIu64 " idx=%" PRIu64 " lt=%" PRIu64
          " n=%u commit=%" PRIu64 " rej=%d ctx=%" PRIu64 "%s",
          raft_msg_type_name(m->type), m->from, m->to, m->term, m->index, m->log_term, m->n_entries,
          m->commit, m->reject, m->context, when);
}

/* Which messages may leave before the ready's write is durable. */
static bool sends_at_once(const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_APPEND) {
        return true; /* a leader's append (Raft thesis 10.2.1) */
    }
    /* BUG 9 (sim side): a follower acknowledges entries it has not written yet. */
    return FLOTILLA_RAFT_BUG == 9 && m->type == RAFT_MSG_APPEND_RESP;
}

/* The write of one ready: copies of everything the node lent. */
static void write_fill(struct node *nd, struct write *w, const struct raft_ready *rd)
{
    if (rd->snapshot != NULL) {
        w->has_snap = true;
        w->snap = *rd->snapshot;
        if (rd->snapshot->len != sizeof(w->snap_data)) {
            fprintf(stderr, "sim: snapshot of %u bytes\n", rd->snapshot->len);
            abort();
        }
        memcpy(w->snap_data, rd->snapshot->data, sizeof(w->snap_data));
        w->persist_index = w->apply_to = rd->snapshot->index;
        w->persist_term = rd->snapshot->term;
    }
    if (rd->n_entries > 0) {
        w->entries = xrealloc(NULL, rd->n_entries * sizeof(*w->entries));
        for (size_t i = 0; i < rd->n_entries; i++) {
            w->entries[i] = rd->entries[i];
            w->entries[i].data = dup_bytes(rd->entries[i].data, rd->entries[i].len);
        }
        w->n_entries = rd->n_entries;
        w->persist_index = rd->entries[rd->n_entries - 1].index;
        w->persist_term = rd->entries[rd->n_entries - 1].term;
    }
    w->has_hs = rd->has_hard_state;
    w->hs = rd->hard_state;
    if (rd->n_committed > 0) {
        w->apply = xrealloc(NULL, rd->n_committed * sizeof(*w->apply));
        for (size_t i = 0; i < rd->n_committed; i++) {
            const struct raft_entry *e = &rd->committed[i];
            w->apply[i] = (struct applied_rec){e->index, e->term, entry_hash(e)};
        }
        w->n_apply = rd->n_committed;
        w->apply_to = rd->committed[rd->n_committed - 1].index;
    }
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        if (sends_at_once(m)) {
            trace_send(m, " (before fsync)");
            W.appends_before_fsync += nd->n_writes > 0 || w->n_entries > 0 || w->has_hs;
            net_send(m);
            continue;
        }
        if (w->n_msgs == 0) {
            w->msgs = xrealloc(NULL, rd->n_msgs * sizeof(*w->msgs));
        }
        msg_copy(&w->msgs[w->n_msgs++], m);
    }
}

/* The oldest write of nd is durable: record it on disk, tell the node, send
 * what waited for it, then apply (the apply is queued behind the write). */
static bool write_complete(struct node *nd)
{
    assert(nd->n_writes > 0);
    struct write w = nd->writes[0];
    memmove(nd->writes, nd->writes + 1, (nd->n_writes - 1) * sizeof(*nd->writes));
    nd->n_writes--;
    w.snap.data = w.snap_data; /* the struct moved: point at its own copy again */
    struct disk *d = &nd->disk;
    bool ok = true;
    if (w.has_snap) {
        disk_set_snapshot(d, &w.snap);
        disk_truncate(d, 0);
    }
    if (w.n_entries > 0) {
        ok = disk_append(nd, w.entries, w.n_entries);
    }
    if (w.has_hs) {
        d->hs = w.hs;
    }
    if (ok && w.persist_index > 0) {
        trace("persisted node %" PRIu64 " %" PRIu64 "/%" PRIu64, nd->id, w.persist_index,
              w.persist_term);
        raft_persisted(nd->raft, w.persist_index, w.persist_term);
    }
    for (size_t i = 0; ok && i < w.n_msgs; i++) {
        trace_send(&w.msgs[i], "");
        net_send(&w.msgs[i]);
    }
    if (ok && w.has_snap) {
        ok = sm_install(nd, &w.snap);
    }
    for (size_t i = 0; ok && i < w.n_apply; i++) {
        ok = sm_apply(nd, &w.apply[i]);
    }
    if (ok && w.apply_to > 0) {
        raft_applied(nd->raft, w.apply_to);
    }
    write_free(&w);
    return ok;
}

/* Completes nd's writes that are due (all: every one, the weather is calm). */
static bool writes_complete_due(struct node *nd, bool all, bool *any)
{
    while (running(nd) && nd->n_writes > 0 && (all || nd->writes[0].done_at <= W.step)) {
        *any = true;
        if (!write_complete(nd)) {
            return false;
        }
    }
    return true;
}

static bool process_ready(struct node *nd)
{
    if (!nd->up || !raft_has_ready(nd->raft)) {
        return true;
    }
    struct raft_ready rd;
    raft_ready(nd->raft, &rd);
    bool ok = true;
    if (nd->n_writes == WRITES_MAX) {
        fprintf(stderr, "sim: node %" PRIu64 " has %d writes in flight\n", nd->id, WRITES_MAX);
        abort();
    }
    if (nd->n_writes == nd->writes_cap) {
        nd->writes_cap = nd->writes_cap ? nd->writes_cap * 2 : 16;
        nd->writes = xrealloc(nd->writes, nd->writes_cap * sizeof(*nd->writes));
    }
    struct write *w = &nd->writes[nd->n_writes];
    memset(w, 0, sizeof(*w));
    uint64_t after = nd->n_writes > 0 ? nd->writes[nd->n_writes - 1].done_at : 0;
    uint64_t due = W.step + below(nd->write_delay_max);
    w->done_at = due > after ? due : after; /* in order */
    write_fill(nd, w, &rd);
    nd->n_writes++;
    for (size_t i = 0; ok && i < rd.n_read_states; i++) {
        const struct raft_read_state *rs = &rd.read_states[i];
        if (rs->read_id < W.next_read) {
            uint64_t floor = W.read_floor[rs->read_id];
            if (rs->index < floor) {
                fail("linearizable read: read %" PRIu64 " on node %" PRIu64 " got index %" PRIu64
                     " but %" PRIu64 " was committed before it began",
                     rs->read_id, nd->id, rs->index, floor);
                ok = false;
            }
            W.reads_checked++;
        }
    }
    if (rd.has_soft_state) {
        trace("node %" PRIu64 " is %s (lead %" PRIu64 ") term %" PRIu64, nd->id,
              raft_role_name(rd.soft_state.role), rd.soft_state.lead, rd.hard_state.term);
    }
    raft_advance(nd->raft);
    bool any = false;
    return ok && writes_complete_due(nd, false, &any); /* a write with no delay is done now */
}

/* ---- invariants checked after every step ---- */

static void trace_role(struct node *nd, const struct raft_status *st)
{
    if (st->role != nd->traced_role || st->term != nd->traced_term) {
        trace("node %" PRIu64 " -> %s term %" PRIu64 " (last %" PRIu64 " commit %" PRIu64 ")",
              nd->id, raft_role_name(st->role), st->term, st->last_index, st->commit);
        nd->traced_role = st->role;
        nd->traced_term = st->term;
    }
}

/* Election Safety: at most one leader per term. */
static bool check_one_leader(const struct node *nd, const struct raft_status *st)
{
    if (st->term >= W.n_terms) {
        size_t cap = W.n_terms ? W.n_terms : 64;
        while (cap <= st->term) {
            cap *= 2;
        }
        W.leader_of_term = xrealloc(W.leader_of_term, cap * sizeof(raft_id));
        memset(W.leader_of_term + W.n_terms, 0, (cap - W.n_terms) * sizeof(raft_id));
        W.n_terms = cap;
    }
    raft_id *l = &W.leader_of_term[st->term];
    SIM_ASSERT(*l == 0 || *l == nd->id,
               "election safety: nodes %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64, *l,
               nd->id, st->term);
    *l = nd->id;
    return true;
}

/* Commit rule (Raft §5.4.2): a leader moves its commit index by counting
 * replicas, and only onto an entry of its own term. */
static bool check_commit_rule(struct node *nd, const struct raft_status *st)
{
    if (W.commit_rule && nd->led_term == st->term && st->commit > nd->led_commit) {
        uint64_t term = 0;
        SIM_ASSERT(raft_term_at(nd->raft, st->commit, &term) && term == st->term,
                   "commit rule: leader %" PRIu64 " of term %" PRIu64 " committed index %" PRIu64
                   " of term %" PRIu64 " by counting",
                   nd->id, st->term, st->commit, term);
    }
    nd->led_term = st->term;
    nd->led_commit = st->commit;
    return true;
}

/* Leader Completeness: the newest entry committed in a term <= ours is in
 * our log (and by Log Matching, everything before it). */
static bool check_completeness(const struct node *nd, const struct raft_status *st)
{
    for (uint64_t i = W.known_committed; i > 0; i--) {
        const struct committed *c = &W.committed[i];
        if (!c->set || c->commit_term > st->term) {
            continue;
        }
        if (i < st->first_index) {
            return true; /* compacted into our snapshot: covered by it */
        }
        uint64_t term;
        SIM_ASSERT(raft_term_at(nd->raft, i, &term) && term == c->term,
                   "leader completeness: leader %" PRIu64 " of term %" PRIu64
                   " lacks committed index %" PRIu64 " (term %" PRIu64 ")",
                   nd->id, st->term, i, c->term);
        return true;
    }
    return true;
}

/* Records what a leader commits, and the term it commits it in. */
static bool record_commits(const struct node *nd, const struct raft_status *st)
{
    for (uint64_t i = W.known_committed + 1; i <= st->commit; i++) {
        uint64_t term = 0;
        if (!raft_term_at(nd->raft, i, &term)) {
            continue;
        }
        grow_committed(i);
        struct committed *c = &W.committed[i];
        if (c->commit_term == 0) {
            c->commit_term = st->term;
        }
        if (!c->set) {
            c->set = true;
            c->term = term;
        }
        SIM_ASSERT(c->term == term,
                   "state machine safety: leader %" PRIu64 " commits index %" PRIu64
                   " with term %" PRIu64 ", applied elsewhere as %" PRIu64,
                   nd->id, i, term, c->term);
    }
    if (st->commit > W.known_committed) {
        W.known_committed = st->commit;
    }
    return true;
}

static bool check_node(struct node *nd)
{
    struct raft_status st;
    raft_status(nd->raft, &st);
    trace_role(nd, &st);
    if (st.role != RAFT_LEADER) {
        return true;
    }
    return check_one_leader(nd, &st) && check_commit_rule(nd, &st) && check_completeness(nd, &st) &&
           record_commits(nd, &st);
}

static bool check_all(void)
{
    uint32_t leaders = 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        if (W.nodes[i].up && !check_node(&W.nodes[i])) {
            return false;
        }
        leaders += W.nodes[i].up && W.nodes[i].traced_role == RAFT_LEADER;
    }
    W.two_leader_steps += leaders > 1;
    return W.failure[0] == '\0';
}

/* ---- actions ---- */

static struct node *random_up(void)
{
    for (int tries = 0; tries < 16; tries++) {
        struct node *nd = &W.nodes[below(W.n_nodes)];
        if (running(nd)) {
            return nd;
        }
    }
    return NULL;
}

static struct node *a_leader(void)
{
    struct node *best = NULL;
    uint64_t best_term = 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        struct node *nd = &W.nodes[i];
        struct raft_status st;
        if (!running(nd)) {
            continue;
        }
        raft_status(nd->raft, &st);
        if (st.role == RAFT_LEADER && (best == NULL || st.term > best_term || below(2) == 0)) {
            best = nd;
            best_term = st.term;
        }
    }
    return best;
}

/* With per-link FIFO, the message picked stands for its link: the oldest on it goes. */
static size_t link_head(size_t at)
{
    const struct raft_msg *m = &W.net[at].m;
    size_t head = at;
    for (size_t i = 0; i < W.n_net; i++) {
        const struct net_msg *o = &W.net[i];
        if (o->m.from == m->from && o->m.to == m->to && o->seq < W.net[head].seq) {
            head = i;
        }
    }
    return head;
}

/* FIFO seeds pick a link, not a message: a busy link does not starve a quiet one. */
static size_t pick_fifo(void)
{
    raft_id from = 1 + below(W.n_nodes), to = 1 + below(W.n_nodes);
    for (size_t i = 0; i < W.n_net; i++) {
        if (W.net[i].m.from == from && W.net[i].m.to == to) {
            return link_head(i);
        }
    }
    return link_head(below(W.n_net));
}

static void deliver(size_t at, bool now)
{
    if (W.fifo && !now) {
        at = pick_fifo();
    } else if (W.fifo) {
        at = link_head(at);
    }
    struct raft_msg m = W.net[at].m;
    struct node *to = node_of(m.to);
    if (!now && (W.step < W.net[at].not_before || (to != NULL && !running(to) && to->up))) {
        return; /* still on its slow way, or waiting for a paused process */
    }
    bool cut = !W.cut_at_send && cut_link(m.from, m.to);
    if (cut && chance(W.hold_ppm)) {
        return; /* held on the cut link: it arrives, stale, after the heal */
    }
    W.net[at] = W.net[--W.n_net];
    if (to != NULL && to->up && !cut) {
        trace("recv %s %" PRIu64 "->%" PRIu64 " term=%" PRIu64 " idx=%" PRIu64 " n=%u",
              raft_msg_type_name(m.type), m.from, m.to, m.term, m.index, m.n_entries);
        if (m.type == RAFT_MSG_SNAPSHOT) {
            W.snapshots_sent++;
        }
        (void)raft_step(to->raft, &m);
    }
    msg_free(&m);
}

static void propose(void)
{
    struct node *nd = a_leader();
    if (nd == NULL) {
        return;
    }
    /* Sometimes a client batch: several writes in one raft_propose_many. */
    uint64_t ws[4];
    const void *datas[4];
    uint32_t lens[4];
    uint32_t n = below(3) == 0 ? 2 + (uint32_t)below(3) : 1;
    for (uint32_t i = 0; i < n; i++) {
        ws[i] = ++W.next_write;
        datas[i] = &ws[i];
        lens[i] = sizeof(ws[i]);
    }
    uint64_t index = 0;
    if (raft_propose_many(nd->raft, datas, lens, n, &index) == FL_OK) {
        W.writes_proposed += n;
        trace("propose w%" PRIu64 "..w%" PRIu64 " at node %" PRIu64 " from index %" PRIu64, ws[0],
              ws[n - 1], nd->id, index);
    }
}

/* A node whose disk has not caught up, often a leader: a crash now loses writes
 * it may already have told others about (the leader's appends leave early). */
static struct node *a_writer(void)
{
    struct node *found[NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        if (W.nodes[i].up && W.nodes[i].n_writes > 0) {
            found[n++] = &W.nodes[i];
        }
    }
    if (n == 0) {
        return NULL;
    }
    /* Best of all, a leader whose commit index runs ahead of its own disk:
     * legal only if a majority without it holds those entries. */
    struct node *l = a_leader();
    if (l != NULL && l->n_writes > 0 && below(4) != 0) {
        struct raft_status st;
        raft_status(l->raft, &st);
        const struct disk *d = &l->disk;
        uint64_t on_disk = d->n_entries > 0 ? d->entries[d->n_entries - 1].index : d->snap.index;
        if (st.commit > on_disk || below(2)) {
            return l;
        }
    }
    return found[below(n)];
}

/* Is a candidate other than `voted` campaigning in `term`? */
static bool rival_campaign(uint64_t term, raft_id voted)
{
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        struct raft_status st;
        if (W.nodes[i].up && W.nodes[i].id != voted) {
            raft_status(W.nodes[i].raft, &st);
            if (st.role == RAFT_CANDIDATE && st.term == term) {
                return true;
            }
        }
    }
    return false;
}

/* A node that voted in a term where a rival candidate still campaigns. */
static struct node *a_voter(void)
{
    for (int tries = 0; tries < 8; tries++) {
        struct node *nd = random_up();
        struct raft_status st;
        if (nd == NULL) {
            return NULL;
        }
        raft_status(nd->raft, &st);
        if (st.role != RAFT_LEADER && st.vote != 0 && st.vote != st.id &&
            rival_campaign(st.term, st.vote)) {
            return nd;
        }
    }
    return NULL;
}

/* Any leader, stale ones included (a client may still talk to a deposed leader). */
static struct node *any_leader(bool include_paused)
{
    struct node *found[NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        struct node *nd = &W.nodes[i];
        struct raft_status st;
        if (!nd->up || (!include_paused && !running(nd))) {
            continue;
        }
        raft_status(nd->raft, &st);
        if (st.role == RAFT_LEADER) {
            found[n++] = nd;
        }
    }
    return n == 0 ? NULL : found[below(n)];
}

static void issue_read(struct node *nd, uint64_t id)
{
    struct raft_status me, other;
    raft_status(nd->raft, &me);
    for (uint32_t i = 0; me.role == RAFT_LEADER && i < W.n_nodes; i++) {
        if (W.nodes[i].up) {
            raft_status(W.nodes[i].raft, &other);
            if (other.role == RAFT_LEADER && other.term > me.term) {
                W.stale_reads++; /* statistics: reads that reach a deposed leader */
                break;
            }
        }
    }
    fl_err err = raft_read_index(nd->raft, id);
    trace("read r%" PRIu64 " at node %" PRIu64 " floor %" PRIu64 " -> %d", id, nd->id,
          W.read_floor[id], err);
}

/* A client read. Half go to a leader, possibly a deposed or paused one: the
 * read begins now (its floor is taken now) even if a paused node only sees
 * it when it resumes, as a request waiting in its socket buffer would. */
static void read_index(void)
{
    struct node *nd = below(2) ? any_leader(true) : NULL;
    if (nd == NULL) {
        nd = random_up();
    }
    if (nd == NULL || W.next_read >= READS_MAX) {
        return;
    }
    uint64_t id = W.next_read++;
    if (id >= W.read_cap) {
        W.read_cap = W.read_cap ? W.read_cap * 2 : 256;
        W.read_floor = xrealloc(W.read_floor, W.read_cap * sizeof(*W.read_floor));
    }
    W.read_floor[id] = W.known_committed;
    if (!running(nd)) {
        if (nd->n_waiting_reads < WAITING_READS_MAX) {
            nd->waiting_reads[nd->n_waiting_reads++] = id;
        }
        return;
    }
    issue_read(nd, id);
}

/* Paused nodes that resumed see the reads that waited for them. */
static void resume_paused(void)
{
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        struct node *nd = &W.nodes[i];
        if (!running(nd) || nd->n_waiting_reads == 0) {
            continue;
        }
        for (uint32_t r = 0; r < nd->n_waiting_reads; r++) {
            issue_read(nd, nd->waiting_reads[r]);
        }
        nd->n_waiting_reads = 0;
    }
}

static void partition(void)
{
    memset(W.blocked, 0, sizeof(W.blocked));
    uint32_t kind = (uint32_t)below(3);
    if (kind == 0) { /* isolate one node, both ways; often the leader */
        struct node *l = below(2) ? a_leader() : NULL;
        uint32_t x = l != NULL ? (uint32_t)(l->id - 1) : (uint32_t)below(W.n_nodes);
        for (uint32_t i = 0; i < W.n_nodes; i++) {
            W.blocked[x][i] = W.blocked[i][x] = i != x;
        }
        trace("partition: isolate %u", x + 1);
    } else if (kind == 1) { /* split in two */
        uint32_t side = (uint32_t)rng();
        for (uint32_t i = 0; i < W.n_nodes; i++) {
            for (uint32_t j = 0; j < W.n_nodes; j++) {
                W.blocked[i][j] = ((side >> i) & 1) != ((side >> j) & 1);
            }
        }
        trace("partition: split mask %x", side & ((1u << W.n_nodes) - 1));
    } else { /* one-way cuts */
        for (int k = 0; k < 3; k++) {
            uint32_t a = (uint32_t)below(W.n_nodes), b = (uint32_t)below(W.n_nodes);
            W.blocked[a][b] = a != b;
            trace("partition: one-way %u -> %u", a + 1, b + 1);
        }
    }
}

static void conf_change(void)
{
    struct node *nd = a_leader();
    if (nd == NULL) {
        return;
    }
    struct raft_status st;
    raft_status(nd->raft, &st);
    struct raft_conf_change cc = {0};
    uint32_t pick = (uint32_t)below(4);
    raft_id spare = 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        if (!W.nodes[i].removed && !raft_conf_is_voter(&st.conf, i + 1) &&
            !raft_conf_is_learner(&st.conf, i + 1)) {
            spare = i + 1;
        }
    }
    if (pick == 0 && spare != 0) {
        cc = (struct raft_conf_change){below(2) ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER,
                                       spare};
    } else if (pick == 1 && st.conf.n_learners > 0) {
        cc = (struct raft_conf_change){RAFT_CONF_ADD_VOTER,
                                       st.conf.learners[below(st.conf.n_learners)]};
    } else if (pick == 2 && st.conf.n_voters >= 3) {
        cc = (struct raft_conf_change){RAFT_CONF_REMOVE, st.conf.voters[below(st.conf.n_voters)]};
    } else if (pick == 3 && st.conf.n_learners > 0) {
        cc = (struct raft_conf_change){RAFT_CONF_REMOVE,
                                       st.conf.learners[below(st.conf.n_learners)]};
    } else {
        return;
    }
    fl_err err = raft_propose_conf_change(nd->raft, &cc, 1, NULL);
    trace("conf change op=%d id=%" PRIu64 " at leader %" PRIu64 " -> %d", cc.op, cc.id, nd->id,
          err);
    if (err == FL_OK) {
        W.conf_changes++;
        if (cc.op == RAFT_CONF_REMOVE) {
            W.nodes[cc.id - 1].removed = true; /* never re-added, even if this one fails */
        }
    }
}

static void transfer(void)
{
    struct node *nd = a_leader();
    if (nd == NULL) {
        return;
    }
    struct raft_status st;
    raft_status(nd->raft, &st);
    raft_id to = st.conf.voters[below(st.conf.n_voters)];
    if (to != nd->id && raft_transfer_leader(nd->raft, to) == FL_OK) {
        W.transfers++;
        trace("transfer leadership %" PRIu64 " -> %" PRIu64, nd->id, to);
    }
}

static void compact(void)
{
    struct node *nd = random_up();
    if (nd == NULL) {
        return;
    }
    struct raft_status st;
    raft_status(nd->raft, &st);
    if (st.applied < st.snapshot_index + 8 || nd->sm_applied != st.applied) {
        return;
    }
    uint8_t data[16];
    memcpy(data, &nd->sm_applied, 8);
    memcpy(data + 8, &nd->sm_chain, 8);
    uint64_t term = 0;
    if (!raft_term_at(nd->raft, st.applied, &term) ||
        raft_compact(nd->raft, data, sizeof(data), below(6)) != FL_OK) {
        return;
    }
    struct raft_snapshot s = {st.applied, term, st.conf, sizeof(data), data};
    disk_set_snapshot(&nd->disk, &s);
    trace("compact node %" PRIu64 " at %" PRIu64, nd->id, st.applied);
}

/* Weights (per 10000) of the actions in the fault phase. */
enum {
    A_DELIVER,
    A_TICK,
    A_READY,
    A_PROPOSE,
    A_READ,
    A_CRASH,
    A_RESTART,
    A_PARTITION,
    A_HEAL,
    A_CONF,
    A_TRANSFER,
    A_COMPACT,
    A_FREEZE,
    A_REBOOT,
    A__COUNT
};
static uint32_t weights[A__COUNT]; /* per seed: see world_init */

static uint32_t pick_action(void)
{
    uint32_t total = 0;
    for (uint32_t a = 0; a < A__COUNT; a++) {
        total += weights[a];
    }
    uint32_t r = (uint32_t)below(total);
    for (uint32_t a = 0; a < A__COUNT; a++) {
        if (r < weights[a]) {
            return a;
        }
        r -= weights[a];
    }
    return A_DELIVER;
}

static bool fault_step(void)
{
    struct node *nd = NULL;
    resume_paused();
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        bool any = false;
        if (!writes_complete_due(&W.nodes[i], false, &any)) {
            return false;
        }
    }
    switch (pick_action()) {
    case A_DELIVER:
        if (W.n_net > 0) {
            deliver(below(W.n_net), false);
        }
        break;
    case A_TICK:
        if ((nd = random_up()) != NULL) {
            raft_tick(nd->raft);
        }
        break;
    case A_READY:
        if ((nd = random_up()) != NULL && !process_ready(nd)) {
            return false;
        }
        break;
    case A_PROPOSE:
        propose();
        break;
    case A_READ:
        read_index();
        break;
    case A_CRASH: /* the interesting victims: a leader, or a node with writes in flight */
        switch (below(3)) {
        case 0:
            nd = a_leader();
            break;
        case 1:
            nd = a_writer();
            break;
        default:
            nd = random_up();
            break;
        }
        if (nd != NULL) {
            node_crash(nd);
        }
        break;
    case A_REBOOT: /* during a split vote, a voter reboots at once: it must remember its vote */
        if ((nd = a_voter()) != NULL) {
            node_crash(nd);
            if (!node_start(nd)) {
                return false;
            }
        }
        break;
    case A_RESTART:
        nd = &W.nodes[below(W.n_nodes)];
        if (!nd->up && !node_start(nd)) {
            return false;
        }
        break;
    case A_PARTITION:
        partition();
        break;
    case A_HEAL:
        memset(W.blocked, 0, sizeof(W.blocked));
        trace("heal partitions");
        break;
    case A_CONF:
        conf_change();
        break;
    case A_TRANSFER:
        transfer();
        break;
    case A_COMPACT:
        compact();
        break;
    case A_FREEZE: /* a long process pause (GC, VM migration), usually of a leader */
        if ((below(4) && (nd = a_leader()) != NULL) || (nd = random_up()) != NULL) {
            nd->frozen_until = W.step + 200 + below(1000);
            trace("freeze node %" PRIu64 " until step %" PRIu64, nd->id, nd->frozen_until);
        }
        break;
    }
    return check_all();
}

/* ---- the run ---- */

static void world_free(void)
{
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        raft_free(W.nodes[i].raft);
        disk_free(&W.nodes[i].disk);
        writes_drop(&W.nodes[i]);
        free(W.nodes[i].writes);
    }
    for (size_t i = 0; i < W.n_net; i++) {
        msg_free(&W.net[i].m);
    }
    for (size_t i = 0; i < W.n_seen_cap; i++) {
        free(W.seen[i]);
    }
    free(W.seen);
    free(W.n_seen);
    free(W.net);
    free(W.leader_of_term);
    free(W.committed);
    free(W.read_floor);
}

static bool world_init(uint64_t seed, bool tr)
{
    memset(&W, 0, sizeof(W));
    W.seed = seed;
    W.trace = tr;
    rng_state = seed * 0x2545f4914f6cdd1dull + 1;
    uint32_t voters = 3 + (uint32_t)below(3);
    W.n_nodes = voters + SPARES;
    W.cfg = (struct raft_config){
        .election_tick = 10,
        .heartbeat_tick = 1 + (uint32_t)below(3),
        .max_inflight_msgs = 1 + (uint32_t)below(8),
        .max_size_per_msg = below(2) ? 1 : 64,
        .max_uncommitted_entries_bytes = below(2) ? 0 : 256,
        .pre_vote = below(2),
        .check_quorum = below(2),
        .rand = rng_ctx,
    };
    /* Each seed gets its own weather: how often nodes crash and the network splits. */
    static const uint32_t base[A__COUNT] = {
        [A_DELIVER] = 5000, [A_TICK] = 1500, [A_READY] = 2000,  [A_PROPOSE] = 800,
        [A_READ] = 300,     [A_CRASH] = 20,  [A_RESTART] = 200, [A_PARTITION] = 30,
        [A_HEAL] = 20,      [A_CONF] = 40,   [A_TRANSFER] = 30, [A_COMPACT] = 80,
        [A_FREEZE] = 0,     [A_REBOOT] = 500};
    memcpy(weights, base, sizeof(weights));
    weights[A_CRASH] = (uint32_t[]){5, 15, 40}[below(3)];
    weights[A_PARTITION] = (uint32_t[]){5, 10, 20}[below(3)];
    weights[A_CONF] = (uint32_t[]){20, 80}[below(2)];
    weights[A_FREEZE] = (uint32_t[]){0, 5, 10}[below(3)];
    bool learners_at_boot = below(2);
    W.drop_ppm = (uint32_t)below(100000);
    W.dup_ppm = (uint32_t)below(50000);
    W.hold_ppm = below(2) ? 0 : 1000000;
    W.slow_ppm = below(2) ? 0 : 20000;
    W.cut_at_send = below(2);
    W.fifo = below(2);
    /* Disks: all fast (the old synchronous world), or each its own speed. */
    bool fast_disks = below(4) == 0;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        W.nodes[i].write_delay_max = fast_disks ? 1 : (uint32_t[]){1, 20, 100, 400}[below(4)];
    }
    W.next_read = 1;
    trace("seed %" PRIu64 ": %u voters + %u spares, hb=%u inflight=%u maxsize=%" PRIu64
          " prevote=%d checkquorum=%d drop=%u dup=%u hold=%u slow=%u ppm cut_at_send=%d fifo=%d"
          " crash=%u split=%u freeze=%u learners_at_boot=%d fast_disks=%d",
          seed, voters, SPARES, W.cfg.heartbeat_tick, W.cfg.max_inflight_msgs,
          W.cfg.max_size_per_msg, W.cfg.pre_vote, W.cfg.check_quorum, W.drop_ppm, W.dup_ppm,
          W.hold_ppm, W.slow_ppm, W.cut_at_send, W.fifo, weights[A_CRASH], weights[A_PARTITION],
          weights[A_FREEZE], learners_at_boot, fast_disks);
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        struct node *nd = &W.nodes[i];
        nd->id = i + 1;
        if (i < voters || learners_at_boot) { /* bootstrap: see struct raft_restore */
            for (uint32_t v = 0; v < voters; v++) {
                nd->disk.snap.conf.voters[v] = v + 1;
            }
            nd->disk.snap.conf.n_voters = voters;
            for (uint32_t l = 0; learners_at_boot && l < SPARES; l++) {
                nd->disk.snap.conf.learners[l] = voters + l + 1;
            }
            nd->disk.snap.conf.n_learners = learners_at_boot ? SPARES : 0;
            uint64_t one = 1, zero = 0;
            memcpy(nd->disk.snap_data, &one, 8);
            memcpy(nd->disk.snap_data + 8, &zero, 8);
            nd->disk.snap.index = nd->disk.snap.term = 1;
            nd->disk.snap.data = nd->disk.snap_data;
            nd->disk.snap.len = sizeof(nd->disk.snap_data);
            nd->disk.hs = (struct raft_hard_state){.term = 1, .commit = 1};
        }
        if (!node_start(nd)) {
            return false;
        }
    }
    return true;
}

/* Faults stop; every member comes back; a fresh proposal must commit. */
/* The weather clears: no cuts, drops, duplicates, slow links or pauses;
 * every member is up and non-members are retired. */
static bool clear_weather(void)
{
    memset(W.blocked, 0, sizeof(W.blocked));
    W.drop_ppm = W.dup_ppm = W.hold_ppm = W.slow_ppm = 0;

    struct raft_conf conf = {0};
    uint64_t best = 0;
    bool found = false;
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        W.nodes[i].frozen_until = 0;
        W.nodes[i].write_delay_max = 0; /* the disks catch up */
        if (!W.nodes[i].up && !node_start(&W.nodes[i])) {
            return false;
        }
        struct raft_status st;
        raft_status(W.nodes[i].raft, &st);
        if (st.conf.n_voters > 0 && (!found || st.applied > best)) {
            found = true;
            best = st.applied;
            conf = st.conf; /* the most advanced node knows the membership */
        }
    }
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        if (!raft_conf_is_voter(&conf, i + 1) && !raft_conf_is_learner(&conf, i + 1)) {
            node_crash(&W.nodes[i]);
        }
    }
    return true;
}

/* One tick everywhere, then readies and deliveries until quiet. */
static bool calm_tick(void)
{
    for (uint32_t i = 0; i < W.n_nodes; i++) {
        if (W.nodes[i].up) {
            raft_tick(W.nodes[i].raft);
        }
    }
    for (int round = 0; round < 64; round++) {
        bool busy = false;
        for (uint32_t i = 0; i < W.n_nodes; i++) {
            if (!writes_complete_due(&W.nodes[i], true, &busy)) {
                return false;
            }
            if (W.nodes[i].up && raft_has_ready(W.nodes[i].raft)) {
                busy = true;
                if (!process_ready(&W.nodes[i])) {
                    return false;
                }
            }
        }
        while (W.n_net > 0) {
            busy = true;
            deliver(0, true);
        }
        W.step++;
        if (!check_all()) {
            return false;
        }
        if (!busy) {
            break;
        }
    }
    return true;
}

/* Faults stop; a leader must commit a fresh proposal within a bound. */
static bool liveness(void)
{
    if (!clear_weather()) {
        return false;
    }
    trace("liveness phase");
    uint64_t target = 0, target_term = 0;
    struct node *proposer = NULL;
    struct raft_status st;
    const uint32_t bound = 60 * W.cfg.election_tick;
    for (uint32_t tick = 0; tick < bound; tick++) {
        if (!calm_tick()) {
            return false;
        }
        struct node *l = a_leader();
        if (target == 0 && l != NULL) {
            uint64_t w = ++W.next_write;
            fl_err err = raft_propose(l->raft, &w, sizeof(w), &target);
            trace("liveness: propose w%" PRIu64 " at node %" PRIu64 " -> %d index %" PRIu64, w,
                  l->id, err, target);
            proposer = err == FL_OK ? l : NULL;
            if (proposer != NULL) {
                raft_status(proposer->raft, &st);
                target_term = st.term;
            }
        }
        if (proposer == NULL) {
            target = 0;
            continue;
        }
        raft_status(proposer->raft, &st);
        if (st.role == RAFT_LEADER && st.term == target_term && proposer->sm_applied >= target) {
            trace("liveness: index %" PRIu64 " applied at tick %u", target, tick);
            return true;
        }
        if (st.role != RAFT_LEADER || st.term != target_term) {
            target = 0; /* leadership moved (the entry may be gone): propose again */
            proposer = NULL;
        }
    }
    fail("liveness: no proposal committed within %u ticks after faults stopped", bound);
    return false;
}

static bool end_to_end_only;

static bool run_seed(uint64_t seed, uint64_t steps, bool tr)
{
    bool ok = world_init(seed, tr);
    W.commit_rule = !end_to_end_only;
    for (W.step = 0; ok && W.step < steps; W.step++) {
        ok = fault_step();
    }
    if (ok) {
        ok = liveness();
    }
    if (!ok) {
        printf("FAIL seed %" PRIu64 " at step %" PRIu64 ": %s\n", seed, W.step, W.failure);
        printf("replay: sim --seed %" PRIu64 " --steps %" PRIu64 " --trace\n", seed, steps);
    } else if (tr) {
        printf("seed %" PRIu64 " ok: %" PRIu64 " writes, %" PRIu64 " reads checked, %" PRIu64
               " crashes, %" PRIu64 " conf changes, %" PRIu64 " transfers, %" PRIu64
               " snapshots delivered, %" PRIu64 " reads at deposed leaders, %" PRIu64
               " steps with 2 leaders, %" PRIu64 " appends sent before their fsync, %" PRIu64
               " writes lost in crashes, commit %" PRIu64 "\n",
               seed, W.writes_proposed, W.reads_checked, W.crashes, W.conf_changes, W.transfers,
               W.snapshots_sent, W.stale_reads, W.two_leader_steps, W.appends_before_fsync,
               W.writes_lost, W.known_committed);
    }
    world_free();
    return ok;
}

/* An assertion inside the core aborts: say which seed to replay first. */
static void on_abort(int sig)
{
    char line[160];
    int len = snprintf(line, sizeof(line),
                       "FAIL seed %" PRIu64 " at step %" PRIu64 ": assertion in the core\n"
                       "replay: sim --seed %" PRIu64 " --trace\n",
                       W.seed, W.step, W.seed);
    if (len > 0) {
        fflush(stdout);
        (void)!write(2, line, (size_t)len);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    signal(SIGABRT, on_abort);
    uint64_t seed = 1, count = 1, steps = 6000;
    bool tr = false, soak = false, until_fail = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--trace") == 0) {
            tr = true;
        } else if (strcmp(argv[i], "--soak") == 0) {
            soak = true;
        } else if (strcmp(argv[i], "--until-fail") == 0) {
            until_fail = true;
        } else if (strcmp(argv[i], "--end-to-end") == 0) {
            end_to_end_only = true;
        } else {
            fprintf(stderr, "usage: sim [--seed N] [--seeds COUNT] [--steps K] [--trace] [--soak] "
                            "[--until-fail] [--end-to-end]\n");
            return 2;
        }
    }
    uint64_t failures = 0, ran = 0;
    for (uint64_t s = seed; soak || s < seed + count; s++) {
        ran++;
        if (!run_seed(s, steps, tr)) {
            failures++;
            if (until_fail) {
                printf("first failure after %" PRIu64 " seeds\n", ran);
                return 1;
            }
        }
        if (soak && ran % 1000 == 0) {
            printf("soak: %" PRIu64 " seeds, %" PRIu64 " failures\n", ran, failures);
            fflush(stdout);
        }
    }
    printf("%" PRIu64 " seeds from %" PRIu64 ", %" PRIu64 " failed\n", ran, seed, failures);
    return failures == 0 ? 0 : 1;
}

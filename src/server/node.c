/* server/node: the Raft ready loop of one member.
 *
 *   inputs:  tick timer -> raft_tick; transport -> raft_step;
 *            server_write -> proposals of this turn -> raft_propose_many
 *            (a follower forwards them to the leader in one message);
 *            reads of this turn -> one raft_read_index
 *   ready:   entries + hard state -> a writer batch (copied: the ready's
 *            memory is raft's) -> writer thread (append, ONE fdatasync)
 *            messages -> transport: a leader's at once (its appends may go
 *            before its own fsync, Raft thesis 10.2.1); anyone else's are
 *            held until every batch submitted so far is durable (a vote or
 *            an append response promises what is on disk)
 *            committed entries -> copied to the apply queue; applied once
 *            locally durable (apply.c)
 *            read states -> read.c;  then raft_advance at once
 *   writer:  batch durable -> raft_persisted(last index, term), release
 *            held messages, apply what became durable
 *
 * The loop never waits for the disk: raft_advance only says the ready was
 * taken; durability is reported later with raft_persisted.
 *
 * Bounds: SERVER_INFLIGHT_MAX batches in flight; past it readies wait for
 * the writer (backpressure reaches raft as uncommitted bytes, then clients as
 * FL_ERR_BUSY). Held messages are bounded by raft's own message bound.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/entry.h"
#include "server/server_internal.h"
#include "util/log.h"

_Static_assert(WAL_ENTRY_NORMAL == 1 && RAFT_ENTRY_NORMAL == 0, "entry type mapping below");
_Static_assert(WAL_ENTRY_CONF_CHANGE == RAFT_ENTRY_CONF_CHANGE + 1, "entry type mapping below");

static wal_entry_type wal_type_of(raft_entry_type t)
{
    return (wal_entry_type)(t + 1);
}

raft_entry_type server_raft_type_of(wal_entry_type t)
{
    return t == WAL_ENTRY_CONF_CHANGE ? RAFT_ENTRY_CONF_CHANGE : RAFT_ENTRY_NORMAL;
}

static uint64_t rand_next(void *ctx)
{
    server *srv = ctx;
    /* xorshift64*: only the election jitter uses it */
    uint64_t x = srv->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    srv->rng = x;
    return x * 2685821657736338717ull;
}

/* ---- held messages ------------------------------------------------------ */

static void send_msg(server *srv, const struct raft_msg *m)
{
    fl_err err = transport_send(srv->transport, SERVER_GROUP_ID, m);
    if (err != FL_OK && err != FL_ERR_BUSY && err != FL_ERR_NOT_FOUND)
        FL_LOG_DEBUGF("server", "send failed", "to=%016" PRIx64 " type=%s err=%s", m->to,
                      raft_msg_type_name(m->type), fl_err_name(err));
}

static void hold_msg(server *srv, const struct raft_msg *m)
{
    /* only plain messages are held: leaders' messages (with entries or a
     * snapshot) go out at once */
    assert(m->n_entries == 0 && m->snapshot.len == 0);
    server_held_msg *h = malloc(sizeof *h); /* owned by the held list */
    if (!h)
        return; /* dropped: raft tolerates loss */
    h->next = NULL;
    h->wait_seq = srv->submitted_seq;
    h->msg = *m;
    h->msg.entries = NULL;
    h->msg.snapshot.data = NULL;
    if (srv->held_tail)
        srv->held_tail->next = h;
    else
        srv->held_head = h;
    srv->held_tail = h;
}

static void release_held(server *srv)
{
    while (srv->held_head && srv->held_head->wait_seq <= srv->completed_seq) {
        server_held_msg *h = srv->held_head;
        srv->held_head = h->next;
        if (!srv->held_head)
            srv->held_tail = NULL;
        send_msg(srv, &h->msg);
        free(h);
    }
}

/* ---- the ready ---------------------------------------------------------- */

static writer_batch *build_batch(server *srv, const struct raft_ready *rd)
{
    size_t bytes = 0;
    for (size_t i = 0; i < rd->n_entries; i++)
        bytes += rd->entries[i].len;
    writer_batch *b = calloc(1, sizeof *b); /* owned by the writer once submitted */
    if (!b)
        return NULL;
    if (rd->n_entries) {
        b->entries = calloc(rd->n_entries, sizeof *b->entries);
        b->bytes = malloc(bytes ? bytes : 1);
        if (!b->entries || !b->bytes) {
            writer_batch_free(b);
            return NULL;
        }
    }
    size_t off = 0;
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        if (e->len)
            memcpy(b->bytes + off, e->data, e->len);
        b->entries[i] = (wal_entry){.index = e->index,
                                    .term = e->term,
                                    .type = wal_type_of(e->type),
                                    .data = b->bytes + off,
                                    .len = e->len};
        off += e->len;
    }
    b->n_entries = rd->n_entries;
    if (srv->wal_reset_pending) {
        b->reset = true;
        b->reset_index = srv->wal_reset_index;
    }
    b->sync = rd->n_entries > 0 || b->reset ||
              (rd->has_hard_state && (rd->hard_state.term != srv->synced_term ||
                                      rd->hard_state.vote != srv->synced_vote));
    if (rd->has_hard_state) {
        srv->synced_term = rd->hard_state.term;
        srv->synced_vote = rd->hard_state.vote;
        b->has_hard_state = true;
        b->hard_state =
            (wal_hard_state){rd->hard_state.term, rd->hard_state.vote, rd->hard_state.commit};
    }
    return b;
}

static void on_soft_state(server *srv, const struct raft_soft_state *ss)
{
    bool leader_changed = ss->lead != srv->leader_id;
    bool was_leader = srv->role == RAFT_LEADER;
    srv->role = ss->role;
    if (leader_changed) {
        srv->leader_changes++;
        FL_LOG_INFOF("server", "leader changed",
                     "member_id=%016" PRIx64 " leader=%016" PRIx64 " term=%" PRIu64, srv->member_id,
                     ss->lead, srv->term);
        srv->leader_id = ss->lead;
        /* reads waiting for a read index from the old leader get no answer */
        server_reads_fail_waiting(srv, FL_ERR_LEADER_CHANGED);
    }
    if (was_leader != (ss->role == RAFT_LEADER) || leader_changed)
        server_membership_after_leader_change(srv);
}

/* Takes one ready. Returns false if it could not (backpressure). */
static bool handle_ready(server *srv)
{
    if (srv->writes_in_flight >= SERVER_INFLIGHT_MAX)
        return false;
    struct raft_ready rd;
    raft_ready(srv->raft, &rd);
    if (rd.has_hard_state) {
        srv->term = rd.hard_state.term;
        srv->commit_index = rd.hard_state.commit;
    }
    if (rd.has_soft_state)
        on_soft_state(srv, &rd.soft_state);
    if (rd.snapshot)
        server_snapshot_take_ready(srv, rd.snapshot);

    writer_batch *batch = NULL;
    if (rd.n_entries || rd.has_hard_state || srv->wal_reset_pending) {
        batch = build_batch(srv, &rd);
        if (!batch) {
            /* cannot copy what must be persisted: a broken promise either way */
            raft_advance(srv->raft);
            server_enter_fatal(srv, FL_ERR_NOMEM, "out of memory copying a ready");
            return false;
        }
        if (rd.n_entries) {
            uint64_t first = rd.entries[0].index;
            if (first <= srv->persisted_index)
                srv->persisted_index = first - 1; /* a tail is being overwritten */
            srv->last_index = rd.entries[rd.n_entries - 1].index;
            srv->last_term = rd.entries[rd.n_entries - 1].term;
        }
        srv->submitted_seq++;
        uint32_t slot = (uint32_t)(srv->submitted_seq % SERVER_INFLIGHT_MAX);
        srv->inflight[slot] =
            (server_inflight){.seq = srv->submitted_seq,
                              .first = rd.n_entries ? rd.entries[0].index : 0,
                              .last = rd.n_entries ? rd.entries[rd.n_entries - 1].index : 0,
                              .last_term = rd.n_entries ? rd.entries[rd.n_entries - 1].term : 0,
                              .snap_index = srv->wal_reset_pending ? srv->wal_reset_index : 0,
                              .snap_term = srv->wal_reset_pending ? srv->wal_reset_term : 0};
        srv->wal_reset_pending = false;
    }
    bool leader = srv->role == RAFT_LEADER;
    for (size_t i = 0; i < rd.n_msgs; i++) {
        const struct raft_msg *m = &rd.msgs[i];
        if (leader || srv->submitted_seq == srv->completed_seq)
            send_msg(srv, m);
        else
            hold_msg(srv, m);
    }
    if (rd.n_committed)
        server_apply_enqueue(srv, rd.committed, rd.n_committed);
    if (rd.n_read_states)
        server_reads_on_read_states(srv, rd.read_states, rd.n_read_states);
    raft_advance(srv->raft);
    if (srv->snapshot_installed_index) {
        raft_applied(srv->raft, srv->snapshot_installed_index);
        srv->snapshot_installed_index = 0;
    }
    if (batch) {
        srv->writes_in_flight++;
        writer_submit(srv->writer, batch);
    }
    return true;
}

/* Proposals of this turn: one raft_propose_many on the leader, one forward
 * message to the leader on a follower. */
static void flush_proposals(server *srv)
{
    if (srv->n_props == 0)
        return;
    uint32_t n = srv->n_props;
    srv->n_props = 0;
    fl_err err = FL_OK;
    if (srv->role == RAFT_LEADER) {
        err = raft_propose_many(srv->raft, (const void *const *)srv->prop_data, srv->prop_len, n,
                                NULL);
    } else if (srv->leader_id != 0) {
        struct raft_entry entries[SERVER_PROPOSALS_TURN_MAX];
        for (uint32_t i = 0; i < n; i++)
            entries[i] = (struct raft_entry){
                .type = RAFT_ENTRY_NORMAL, .len = srv->prop_len[i], .data = srv->prop_data[i]};
        struct raft_msg m = {.type = SERVER_MSG_PROPOSE,
                             .from = srv->member_id,
                             .to = srv->leader_id,
                             .term = srv->term,
                             .n_entries = n,
                             .entries = entries};
        err = transport_send(srv->transport, SERVER_GROUP_ID, &m);
        srv->forwarded += n;
    } else {
        err = FL_ERR_NO_LEADER;
    }
    if (err != FL_OK)
        FL_LOG_DEBUGF("server", "proposals not taken; their requests time out", "count=%u err=%s",
                      n, fl_err_name(err));
    for (uint32_t i = 0; i < n; i++)
        free(srv->prop_data[i]);
}

void server_node_process(server *srv)
{
    /* after stop_started the writer takes nothing more: raft stays still */
    if (!srv->raft || srv->in_process || srv->stop_started)
        return;
    srv->in_process = true;
    flush_proposals(srv);
    server_reads_flush_round(srv);
    for (int i = 0; i < 16 && raft_has_ready(srv->raft) && !srv->failed; i++) {
        if (!handle_ready(srv))
            break;
    }
    server_apply_run(srv);
    srv->in_process = false;
    srv->kicked = false;
}

void server_node_kick(server *srv)
{
    srv->kicked = true;
}

static void on_check(uv_check_t *handle)
{
    server *srv = handle->data;
    if (srv->kicked || srv->n_props)
        server_node_process(srv);
    server_reads_flush_done(srv);
}

static void on_idle(uv_idle_t *handle)
{
    server *srv = handle->data;
    server_node_process(srv);
    server_reads_flush_done(srv);
}

static void on_prepare(uv_prepare_t *handle)
{
    server *srv = handle->data;
    if (srv->kicked || srv->n_props)
        server_node_process(srv);
    server_reads_flush_done(srv);
    /* do not block in poll while raft still has work (backpressure aside) */
    bool more = srv->raft && raft_has_ready(srv->raft) &&
                srv->writes_in_flight < SERVER_INFLIGHT_MAX && !srv->failed;
    if (more || srv->reads_done_head) {
        if (!uv_is_active((uv_handle_t *)&srv->idle))
            uv_idle_start(&srv->idle, on_idle);
        srv->kicked = true;
    } else if (uv_is_active((uv_handle_t *)&srv->idle)) {
        uv_idle_stop(&srv->idle);
    }
}

static void on_tick(uv_timer_t *timer)
{
    server *srv = timer->data;
    if (!srv->raft || srv->failed)
        return;
    raft_tick(srv->raft);
    server_membership_on_tick(srv);
    srv->kicked = true;
}

static void on_sweep(uv_timer_t *timer)
{
    server *srv = timer->data;
    uint64_t now = server_now_ms(srv);
    server_wait_sweep(srv, now, false, FL_ERR_TIMEOUT);
    server_reads_sweep(srv, now);
}

fl_err server_node_propose(server *srv, uint8_t *data, uint32_t len)
{
    if (srv->leader_id == 0) {
        free(data);
        return FL_ERR_NO_LEADER;
    }
    if (srv->n_props == SERVER_PROPOSALS_TURN_MAX) {
        free(data);
        return FL_ERR_BUSY;
    }
    srv->prop_data[srv->n_props] = data;
    srv->prop_len[srv->n_props] = len;
    srv->n_props++;
    return FL_OK;
}

/* ---- inputs from the transport and the writer ---------------------------- */

void server_node_on_message(void *ctx, uint64_t group_id, const struct raft_msg *msg,
                            const char *snapshot_path)
{
    server *srv = ctx;
    if (group_id != SERVER_GROUP_ID || !srv->raft || srv->stopping) {
        if (snapshot_path)
            unlink(snapshot_path);
        return;
    }
    if (msg->type == SERVER_MSG_PROPOSE) {
        /* a follower's clients: propose if still leader, else drop (they time out) */
        if (srv->role == RAFT_LEADER && msg->n_entries > 0 &&
            msg->n_entries <= SERVER_PROPOSALS_TURN_MAX) {
            const void *datas[SERVER_PROPOSALS_TURN_MAX];
            uint32_t lens[SERVER_PROPOSALS_TURN_MAX];
            for (uint32_t i = 0; i < msg->n_entries; i++) {
                datas[i] = msg->entries[i].data;
                lens[i] = msg->entries[i].len;
            }
            (void)raft_propose_many(srv->raft, datas, lens, msg->n_entries, NULL);
            srv->kicked = true;
        }
        return;
    }
    if (msg->type == RAFT_MSG_SNAPSHOT)
        server_snapshot_received(srv, msg, snapshot_path);
    fl_err err = raft_step(srv->raft, msg);
    if (err != FL_OK)
        FL_LOG_DEBUGF("server", "raft refused a message", "from=%016" PRIx64 " type=%s err=%s",
                      msg->from, raft_msg_type_name(msg->type), fl_err_name(err));
    srv->kicked = true;
}

static void on_unreachable(void *ctx, uint64_t group_id, uint64_t peer_id)
{
    server *srv = ctx;
    if (group_id == SERVER_GROUP_ID && srv->raft && srv->role == RAFT_LEADER) {
        raft_report_unreachable(srv->raft, peer_id);
        srv->kicked = true;
    }
}

static void on_snapshot_sent(void *ctx, uint64_t group_id, uint64_t peer_id, bool ok)
{
    server *srv = ctx;
    if (group_id == SERVER_GROUP_ID && srv->raft && srv->role == RAFT_LEADER) {
        raft_report_snapshot(srv->raft, peer_id, ok);
        srv->kicked = true;
    }
}

/* The durable index after batch `seq` completed: its last entry, unless a
 * later batch (still in flight) overwrites from an earlier index. */
static uint64_t durable_after(const server *srv, uint64_t seq, uint64_t last)
{
    for (uint64_t s = seq + 1; s <= srv->submitted_seq; s++) {
        const server_inflight *f = &srv->inflight[s % SERVER_INFLIGHT_MAX];
        assert(f->seq == s);
        if (f->first && f->first - 1 < last)
            last = f->first - 1;
    }
    return last;
}

void server_node_on_writer(void *ctx)
{
    server *srv = ctx;
    bool exited = false;
    writer_batch *list = writer_take_done(srv->writer, &exited);
    while (list) {
        writer_batch *b = list;
        list = b->next;
        fl_err err = b->err;
        writer_batch_free(b);
        assert(srv->writes_in_flight > 0);
        srv->writes_in_flight--;
        srv->completed_seq++;
        if (err == FL_ERR_STOPPED)
            continue; /* stopping while the disk was full: never durable */
        if (err != FL_OK) {
            server_enter_fatal(srv, err,
                               "WAL fsync failed: the log's durable state is unknown; restart "
                               "to recover from what is on disk");
            continue;
        }
        const server_inflight *f = &srv->inflight[srv->completed_seq % SERVER_INFLIGHT_MAX];
        assert(f->seq == srv->completed_seq);
        if (f->snap_index && srv->raft && !srv->failed)
            raft_persisted(srv->raft, f->snap_index, f->snap_term);
        if (f->last && srv->raft && !srv->failed) {
            raft_persisted(srv->raft, f->last, f->last_term);
            uint64_t durable = durable_after(srv, f->seq, f->last);
            if (durable > srv->persisted_index)
                srv->persisted_index = durable;
        }
    }
    release_held(srv);
    if (!srv->failed)
        server_node_process(srv);
    if (exited) {
        srv->writer_exited = true;
        server_maybe_finish_stop(srv);
    }
}

/* ---- start -------------------------------------------------------------- */

typedef struct restore_collect {
    struct raft_entry *entries;
    size_t count, cap;
    uint8_t **datas;
} restore_collect;

static fl_err collect_entry(void *arg, const wal_entry *e)
{
    restore_collect *rc = arg;
    if (rc->count == rc->cap) {
        size_t cap = rc->cap ? rc->cap * 2 : 256;
        struct raft_entry *ne = realloc(rc->entries, cap * sizeof *ne);
        if (!ne)
            return FL_ERR_NOMEM;
        rc->entries = ne;
        uint8_t **nd = realloc(rc->datas, cap * sizeof *nd);
        if (!nd)
            return FL_ERR_NOMEM;
        rc->datas = nd;
        rc->cap = cap;
    }
    uint8_t *copy = NULL;
    if (e->len) {
        copy = malloc(e->len);
        if (!copy)
            return FL_ERR_NOMEM;
        memcpy(copy, e->data, e->len);
    }
    rc->datas[rc->count] = copy;
    rc->entries[rc->count] = (struct raft_entry){.term = e->term,
                                                 .index = e->index,
                                                 .type = server_raft_type_of(e->type),
                                                 .len = (uint32_t)e->len,
                                                 .data = copy};
    rc->count++;
    return FL_OK;
}

static void collect_free(restore_collect *rc)
{
    for (size_t i = 0; i < rc->count; i++)
        free(rc->datas[i]);
    free(rc->datas);
    free(rc->entries);
}

static fl_err start_transport(server *srv, char *errbuf, size_t errbuf_len)
{
    transport_options to = {.cluster_id = srv->cluster_id,
                            .local_id = srv->member_id,
                            .listen_url = srv->listen_peer_url,
                            .snapshot_dir = srv->snap_dir,
                            .on_message = server_node_on_message,
                            .on_unreachable = on_unreachable,
                            .snapshot_open = server_snapshot_open,
                            .on_snapshot_sent = on_snapshot_sent,
                            .ctx = srv,
                            .test_fault_file = srv->options.test_fault_file};
    char buf[256] = "";
    fl_err err = transport_create(srv->loop, &to, &srv->transport, buf, sizeof buf);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "cannot listen for peers on %s: %s", srv->listen_peer_url,
                 buf[0] ? buf : fl_err_name(err));
        return err;
    }
    server_membership_sync_peers(srv);
    return FL_OK;
}

fl_err server_node_start(server *srv, char *errbuf, size_t errbuf_len)
{
    uint64_t applied = mvcc_applied_index(srv->store);
    restore_collect rc = {0};
    fl_err err = wal_replay(srv->log, applied, collect_entry, &rc);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "reading the WAL in %s failed: %s", srv->wal_dir,
                 fl_err_name(err));
        collect_free(&rc);
        return err;
    }
    struct raft_restore r = {0};
    r.hard_state = (struct raft_hard_state){srv->wal_hard_state.term, srv->wal_hard_state.vote,
                                            srv->wal_hard_state.commit};
    if (applied > 0) {
        r.snapshot = (struct raft_snapshot){
            .index = applied, .term = srv->cluster.applied_term, .conf = srv->cluster.conf};
        if (r.hard_state.term < srv->cluster.applied_term)
            r.hard_state.term = srv->cluster.applied_term;
    }
    uint64_t last = rc.count ? rc.entries[rc.count - 1].index : applied;
    /* entries are applied once durable, before the commit that covers them is
     * necessarily on disk: what LMDB applied was committed */
    if (r.hard_state.commit < applied)
        r.hard_state.commit = applied;
    if (r.hard_state.commit > last)
        r.hard_state.commit = last;
    r.entries = rc.entries;
    r.n_entries = rc.count;
    r.applied = applied;
    srv->rng = srv->member_id ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (!srv->rng)
        srv->rng = 1;
    struct raft_config cfg = {
        .id = srv->member_id,
        .election_tick = srv->options.election_ms / srv->options.heartbeat_ms,
        .heartbeat_tick = 1,
        .max_inflight_msgs = 256,
        .max_size_per_msg = 1u << 20,
        .max_uncommitted_entries_bytes = 1ull << 30,
        .pre_vote = true,
        .check_quorum = true,
        .rand = rand_next,
        .rand_ctx = srv,
    };
    err = raft_new(&cfg, &r, &srv->raft);
    collect_free(&rc);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len,
                 "cannot restore the Raft state (applied %" PRIu64 ", WAL last %" PRIu64 "): %s",
                 applied, last, fl_err_name(err));
        return err;
    }
    srv->persisted_index = last;
    srv->last_index = last;
    srv->synced_term = srv->wal_hard_state.term;
    srv->synced_vote = srv->wal_hard_state.vote;
    srv->term = r.hard_state.term;
    srv->commit_index = r.hard_state.commit;
    srv->start_commit = r.hard_state.commit;
    /* handles first: a failed start closes them like a stop does */
    uv_timer_init(srv->loop, &srv->tick_timer);
    uv_timer_init(srv->loop, &srv->sweep_timer);
    uv_check_init(srv->loop, &srv->check);
    uv_prepare_init(srv->loop, &srv->prepare);
    uv_idle_init(srv->loop, &srv->idle);
    uv_timer_init(srv->loop, &srv->retry_timer);
    srv->tick_timer.data = srv->sweep_timer.data = srv->retry_timer.data = srv;
    srv->check.data = srv->prepare.data = srv->idle.data = srv;
    err = start_transport(srv, errbuf, errbuf_len);
    if (err != FL_OK)
        return err;
    uv_timer_start(&srv->tick_timer, on_tick, srv->options.heartbeat_ms, srv->options.heartbeat_ms);
    uv_timer_start(&srv->sweep_timer, on_sweep, 100, 100);
    uv_check_start(&srv->check, on_check);
    uv_prepare_start(&srv->prepare, on_prepare);
    /* A lone voter need not wait an election timeout to lead. */
    struct raft_status st;
    raft_status(srv->raft, &st);
    if (st.conf.n_voters == 1 && st.conf.voters[0] == srv->member_id &&
        st.conf.n_voters_outgoing == 0)
        raft_campaign(srv->raft);
    /* Replay: what was committed before the stop is applied now, through
     * the same applier as live entries (it is durable in the WAL). */
    server_node_process(srv);
    return FL_OK;
}

void server_node_stop(server *srv)
{
    uv_timer_stop(&srv->tick_timer);
    uv_timer_stop(&srv->sweep_timer);
    for (uint32_t i = 0; i < srv->n_props; i++)
        free(srv->prop_data[i]);
    srv->n_props = 0;
    while (srv->held_head) {
        server_held_msg *h = srv->held_head;
        srv->held_head = h->next;
        free(h);
    }
    srv->held_tail = NULL;
}

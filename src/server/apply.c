/* server/apply: the one applier of committed entries.
 *
 * Every committed entry goes through here, whether raft hands it out again
 * at start-up (replay: committed before the stop, not yet in LMDB) or as the
 * cluster commits it: copied out of the ready into a queue, applied in log
 * order once it is durable in the local WAL (index <= persisted_index),
 * SERVER_APPLY_BATCH_MAX entries per LMDB transaction. The member table and
 * the applied term ride in the same transaction (mvcc_put_meta "cluster"),
 * so LMDB's applied index, the data and the membership always agree.
 *
 * An entry at or below LMDB's applied index is skipped: a snapshot installed
 * from the leader may be newer than the raft snapshot index it was sent for.
 *
 * Failures after the WAL made the entries durable:
 * - LMDB has no disk space (FL_ERR_NOSPACE from apply or commit): the batch
 *   is rolled back and stays queued; a timer retries with a backoff (50 ms
 *   doubling to 1 s); new writes are refused meanwhile; reads go on.
 * - any other store failure: fatal (a restart replays from the WAL).
 * Request-level errors (compacted, quota, ...) are answers: the entry applies.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/entry.h"
#include "server/server_internal.h"
#include "util/log.h"

#define APPLY_RETRY_FIRST_MS 50u
#define APPLY_RETRY_MAX_MS   1000u
#define CLUSTER_META_NAME    "cluster"

void server_apply_enqueue(server *srv, const struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        /* owned by the queue until applied */
        server_apply_item *it = malloc(sizeof *it + e->len);
        if (!it) {
            server_enter_fatal(srv, FL_ERR_NOMEM, "out of memory queueing committed entries");
            return;
        }
        it->next = NULL;
        it->index = e->index;
        it->term = e->term;
        it->type = e->type;
        it->len = e->len;
        if (e->len)
            memcpy(it->data, e->data, e->len);
        assert(!srv->apply_tail || srv->apply_tail->index + 1 == it->index);
        if (srv->apply_tail)
            srv->apply_tail->next = it;
        else
            srv->apply_head = it;
        srv->apply_tail = it;
        srv->apply_bytes += e->len;
    }
}

void server_apply_free_queue(server *srv)
{
    while (srv->apply_head) {
        server_apply_item *it = srv->apply_head;
        srv->apply_head = it->next;
        free(it);
    }
    srv->apply_tail = NULL;
    srv->apply_bytes = 0;
}

/* One applied request whose answer waits for the commit. */
typedef struct apply_done {
    uint64_t request_id;
    entry_kind kind;
    fl_err err;
    mvcc_response *response; /* owned; MVCC only */
    uint64_t member_id;
} apply_done;

static bool is_store_failure(fl_err err)
{
    return err == FL_ERR_IO || err == FL_ERR_NOSPACE || err == FL_ERR_CORRUPT ||
           err == FL_ERR_NOMEM || err == FL_ERR_INVALID;
}

/* The member table changes an entry makes (on the working copy). */
static fl_err apply_member_entry(server *srv, cluster_state *c, const entry_view *v,
                                 uint64_t *member_id)
{
    cluster_member m;
    if (v->kind == ENTRY_PUBLISH) {
        if (entry_publish_decode(v->body, v->body_len, &m) != FL_OK)
            return FL_ERR_CORRUPT;
        *member_id = m.id;
        cluster_member *cur = cluster_find(c, m.id);
        if (!cur)
            return FL_ERR_MEMBER_NOT_FOUND; /* removed meanwhile: nothing to publish */
        if (m.id == srv->member_id)
            srv->published = true;
        memcpy(cur->name, m.name, sizeof cur->name);
        memcpy(cur->client_urls, m.client_urls, sizeof cur->client_urls);
        cur->n_client_urls = m.n_client_urls;
        return FL_OK;
    }
    if (v->kind == ENTRY_VERSION) {
        size_t n = v->body_len < CLUSTER_VERSION_MAX ? v->body_len : CLUSTER_VERSION_MAX;
        memcpy(c->version, v->body, n);
        c->version[n] = '\0';
        return FL_OK;
    }
    assert(v->kind == ENTRY_MEMBER);
    entry_member_op op;
    if (entry_member_decode(v->body, v->body_len, &op, &m) != FL_OK)
        return FL_ERR_CORRUPT;
    *member_id = m.id;
    cluster_member *cur = cluster_find(c, m.id);
    /* the same checks the proposer made, again at apply: every member
     * decides the same way whatever happened in between */
    switch (op) {
    case ENTRY_MEMBER_ADD:
        if (cur)
            return FL_ERR_PEER_URL_EXISTS;
        if (cluster_was_removed(c, m.id))
            return FL_ERR_MEMBER_ID_REMOVED;
        for (uint32_t u = 0; u < m.n_peer_urls; u++)
            if (cluster_find_peer_url(c, m.peer_urls[u]))
                return FL_ERR_PEER_URL_EXISTS;
        if (c->n_members == RAFT_MEMBERS_MAX)
            return FL_ERR_BUSY;
        c->members[c->n_members++] = m;
        return FL_OK;
    case ENTRY_MEMBER_REMOVE:
        if (!cur)
            return FL_ERR_MEMBER_NOT_FOUND;
        cluster_remove(c, m.id);
        return FL_OK;
    case ENTRY_MEMBER_UPDATE:
        if (!cur)
            return FL_ERR_MEMBER_NOT_FOUND;
        for (uint32_t u = 0; u < m.n_peer_urls; u++) {
            const cluster_member *owner = cluster_find_peer_url(c, m.peer_urls[u]);
            if (owner && owner->id != m.id)
                return FL_ERR_PEER_URL_EXISTS;
        }
        memcpy(cur->peer_urls, m.peer_urls, sizeof cur->peer_urls);
        cur->n_peer_urls = m.n_peer_urls;
        return FL_OK;
    case ENTRY_MEMBER_PROMOTE:
        if (!cur)
            return FL_ERR_MEMBER_NOT_FOUND;
        if (!cur->is_learner)
            return FL_ERR_MEMBER_NOT_LEARNER;
        cur->is_learner = false;
        return FL_OK;
    }
    return FL_ERR_CORRUPT;
}

typedef struct apply_batch {
    server_apply_item *first, *end; /* [first, end) */
    size_t count;
    apply_done *done;
    size_t n_done;
    cluster_state *work; /* NULL until an entry changes the table */
    uint64_t last_index, last_term;
    uint64_t replayed;
} apply_batch;

static cluster_state *working_copy(server *srv, apply_batch *b)
{
    if (!b->work) {
        b->work = malloc(sizeof *b->work); /* owned by the batch */
        if (b->work)
            memcpy(b->work, &srv->cluster, sizeof *b->work);
    }
    return b->work;
}

static void batch_release(apply_batch *b)
{
    for (size_t i = 0; i < b->n_done; i++) {
        if (b->done[i].response) {
            mvcc_response_free(b->done[i].response);
            free(b->done[i].response);
        }
    }
    free(b->done);
    free(b->work);
}

/* Applies one entry inside the open LMDB batch. */
static fl_err apply_one(server *srv, apply_batch *b, const server_apply_item *it)
{
    if (it->type == RAFT_ENTRY_CONF_CHANGE) {
        /* raft changes its configuration at raft_applied; the table follows */
        raft_applied(srv->raft, it->index);
        struct raft_status st;
        raft_status(srv->raft, &st);
        cluster_state *c = working_copy(srv, b);
        if (!c)
            return FL_ERR_NOMEM;
        c->conf = st.conf;
        return mvcc_apply_noop(srv->store, it->index);
    }
    if (it->len == 0)
        return mvcc_apply_noop(srv->store, it->index); /* a new leader's empty entry */
    entry_view v;
    if (entry_decode(it->data, it->len, &v) != FL_OK) {
        /* every member refuses it the same way: a no-op */
        FL_LOG_WARNF("server", "undecodable entry applied as a no-op", "index=%" PRIu64, it->index);
        return mvcc_apply_noop(srv->store, it->index);
    }
    apply_done *d = &b->done[b->n_done];
    *d = (apply_done){.request_id = v.request_id, .kind = v.kind};
    if (v.kind == ENTRY_MVCC) {
        d->response = calloc(1, sizeof *d->response); /* owned by the batch, then done */
        if (!d->response)
            return FL_ERR_NOMEM;
        b->n_done++;
        fl_err err = mvcc_apply(srv->store, it->index, v.body, v.body_len, d->response);
        if (is_store_failure(err))
            return err;
        d->err = err;
        return FL_OK;
    }
    cluster_state *c = working_copy(srv, b);
    if (!c)
        return FL_ERR_NOMEM;
    b->n_done++;
    d->err = apply_member_entry(srv, c, &v, &d->member_id);
    return mvcc_apply_noop(srv->store, it->index);
}

static fl_err apply_batch_run(server *srv, apply_batch *b, char *reason, size_t reason_len)
{
    fl_err err = mvcc_batch_begin(srv->store);
    if (err != FL_OK) {
        snprintf(reason, reason_len, "mvcc_batch_begin failed: %s", fl_err_name(err));
        return err;
    }
    uint64_t applied = mvcc_applied_index(srv->store);
    for (server_apply_item *it = b->first; it != b->end; it = it->next) {
        b->last_index = it->index;
        b->last_term = it->term;
        if (it->index <= applied)
            continue; /* covered by an installed snapshot */
        err = apply_one(srv, b, it);
        if (err != FL_OK) {
            mvcc_batch_abort(srv->store);
            snprintf(reason, reason_len,
                     "applying entry %" PRIu64 " to LMDB failed (%s); the WAL holds it, a "
                     "restart replays it",
                     it->index, fl_err_name(err));
            return err;
        }
        if (it->index <= srv->start_commit)
            b->replayed++;
    }
    if (b->work || b->last_term != srv->cluster.applied_term) {
        cluster_state *c = working_copy(srv, b);
        if (!c) {
            mvcc_batch_abort(srv->store);
            snprintf(reason, reason_len, "out of memory");
            return FL_ERR_NOMEM;
        }
        if (b->last_term > c->applied_term)
            c->applied_term = b->last_term;
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        err = cluster_encode(c, &enc, &enc_len);
        if (err == FL_OK)
            err = mvcc_put_meta(srv->store, CLUSTER_META_NAME, enc, enc_len);
        free(enc);
        if (err != FL_OK) {
            mvcc_batch_abort(srv->store);
            snprintf(reason, reason_len, "storing the member table failed: %s", fl_err_name(err));
            return err;
        }
    }
    err = mvcc_batch_commit(srv->store);
    if (err != FL_OK)
        snprintf(reason, reason_len,
                 "LMDB commit failed (%s); the WAL holds the batch, a restart replays it",
                 fl_err_name(err));
    return err;
}

/* etcd: a member whose request was refused for quota proposes the NOSPACE
 * alarm; once applied, every member refuses puts until it is disarmed. */
static void propose_nospace_alarm(server *srv)
{
    mvcc_alarm *alarms = NULL;
    size_t n = 0;
    bool active = false;
    if (mvcc_alarms(srv->store, &alarms, &n) == FL_OK)
        for (size_t i = 0; i < n; i++)
            active = active || alarms[i].alarm == MVCC_ALARM_NOSPACE;
    free(alarms);
    if (active)
        return;
    mvcc_request req = {.type = MVCC_REQ_ALARM};
    req.u.alarm = (mvcc_alarm_req){MVCC_ALARM_ACTIVATE, srv->member_id, MVCC_ALARM_NOSPACE};
    uint8_t *payload = NULL, *data = NULL;
    size_t payload_len = 0, len = 0;
    if (mvcc_request_encode(&req, &payload, &payload_len) != FL_OK)
        return;
    if (entry_encode(ENTRY_MVCC, server_wait_new_id(srv), payload, payload_len, &data, &len) ==
            FL_OK &&
        server_node_propose(srv, data, (uint32_t)len) == FL_OK)
        FL_LOG_WARNF("server", "database space exceeded: raising the NOSPACE alarm",
                     "member_id=%016" PRIx64, srv->member_id);
    free(payload);
}

static void finish_batch(server *srv, apply_batch *b)
{
    bool raise_nospace = false;
    if (b->work)
        memcpy(&srv->cluster, b->work, sizeof srv->cluster);
    srv->replayed += b->replayed;
    raft_applied(srv->raft, b->last_index);
    for (size_t i = 0; i < b->n_done; i++) {
        apply_done *d = &b->done[i];
        server_waiter *w = server_wait_take(srv, d->request_id);
        if (!w)
            continue; /* another member's request */
        if (d->kind == ENTRY_MVCC && d->err == FL_ERR_NO_SPACE_QUOTA)
            raise_nospace = true;
        if (d->kind == ENTRY_MVCC && w->kind == WAITER_WRITE) {
            server_waiter_finish_write(srv, w, d->err, d->err == FL_OK ? d->response : NULL);
            if (d->err == FL_OK)
                d->response = NULL; /* handed to done */
        } else if (w->kind == WAITER_MEMBER) {
            server_waiter_finish_member(srv, w, d->err, d->member_id);
        } else {
            server_waiter_finish_write(srv, w, FL_ERR_CORRUPT, NULL); /* id collision */
        }
    }
    /* pop the applied items */
    while (srv->apply_head != b->end) {
        server_apply_item *it = srv->apply_head;
        srv->apply_head = it->next;
        srv->apply_bytes -= it->len;
        free(it);
    }
    if (!srv->apply_head)
        srv->apply_tail = NULL;
    if (b->work)
        server_membership_on_applied(srv);
    if (raise_nospace)
        propose_nospace_alarm(srv);
}

static void on_retry(uv_timer_t *timer)
{
    server *srv = timer->data;
    srv->apply_stalled = false;
    server_apply_run(srv);
    if (!srv->apply_stalled && srv->retry_delay_ms) {
        srv->retry_delay_ms = 0;
        FL_LOG_INFOF("server", "LMDB has room again; stalled entries applied",
                     "applied_index=%" PRIu64, mvcc_applied_index(srv->store));
    }
}

static void stall(server *srv)
{
    if (srv->retry_delay_ms == 0) {
        srv->apply_stalls++;
        FL_LOG_WARNF("server",
                     "no disk space for LMDB; committed entries wait, new writes are "
                     "refused",
                     "first_index=%" PRIu64, srv->apply_head ? srv->apply_head->index : 0);
        srv->retry_delay_ms = APPLY_RETRY_FIRST_MS;
    } else {
        srv->retry_delay_ms = srv->retry_delay_ms * 2 > APPLY_RETRY_MAX_MS
                                  ? APPLY_RETRY_MAX_MS
                                  : srv->retry_delay_ms * 2;
    }
    srv->apply_stalled = true;
    uv_timer_start(&srv->retry_timer, on_retry, srv->retry_delay_ms, 0);
}

void server_apply_run(server *srv)
{
    if (srv->apply_stalled || srv->failed)
        return;
    bool applied_any = false;
    while (srv->apply_head && srv->apply_head->index <= srv->persisted_index) {
        apply_batch b = {.first = srv->apply_head};
        b.done = calloc(SERVER_APPLY_BATCH_MAX, sizeof *b.done);
        if (!b.done) {
            server_enter_fatal(srv, FL_ERR_NOMEM, "out of memory applying entries");
            return;
        }
        server_apply_item *it = srv->apply_head;
        while (it && it->index <= srv->persisted_index && b.count < SERVER_APPLY_BATCH_MAX) {
            it = it->next;
            b.count++;
        }
        b.end = it;
        char reason[256] = "";
        fl_err err = apply_batch_run(srv, &b, reason, sizeof reason);
        if (err == FL_ERR_NOSPACE) {
            batch_release(&b);
            stall(srv);
            break;
        }
        if (err != FL_OK) {
            batch_release(&b);
            server_enter_fatal(srv, err, reason);
            return;
        }
        finish_batch(srv, &b);
        batch_release(&b);
        applied_any = true;
    }
    if (applied_any) {
        server_reads_on_applied(srv);
        server_checkpoint_maybe(srv);
        srv->kicked = true; /* raft may have more to say after applying (leave joint) */
    }
}

fl_err server_apply_bootstrap(server *srv, const cluster_state *initial)
{
    assert(mvcc_applied_index(srv->store) == 0);
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    fl_err err = cluster_encode(initial, &enc, &enc_len);
    if (err != FL_OK)
        return err;
    err = mvcc_batch_begin(srv->store);
    if (err == FL_OK) {
        err = mvcc_apply_noop(srv->store, 1);
        if (err == FL_OK)
            err = mvcc_put_meta(srv->store, CLUSTER_META_NAME, enc, enc_len);
        if (err == FL_OK)
            err = mvcc_batch_commit(srv->store);
        else
            mvcc_batch_abort(srv->store);
    }
    free(enc);
    /* index 1 exists nowhere else (not in the WAL): make it durable now */
    if (err == FL_OK)
        err = mvcc_sync(srv->store);
    return err;
}

fl_err server_apply_load_cluster(server *srv)
{
    void *value = NULL;
    size_t len = 0;
    fl_err err = mvcc_get_meta(srv->store, CLUSTER_META_NAME, &value, &len);
    if (err != FL_OK)
        return err;
    err = cluster_decode(value, len, &srv->cluster);
    free(value);
    return err;
}

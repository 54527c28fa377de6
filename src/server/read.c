/* server/read: Range, linearizable (ReadIndex) or serializable.
 *
 * Linearizable: every read that arrives during one loop turn joins one
 * ReadIndex round (one raft_read_index call, one quorum confirmation on the
 * leader, or one forwarded request on a follower); when raft hands out the
 * round's read state (index), the reads wait until this member has applied
 * that index and then read the local LMDB. A read thus sees every write
 * acknowledged before it arrived, on any member.
 * Serializable: the local store at once (may be stale on a follower).
 *
 * done never runs inside server_range: finished reads are answered from the
 * loop's check/idle handles. Bounds: SERVER_PENDING_READS_MAX reads in all;
 * a read not answered by the request timeout gets FL_ERR_TIMEOUT; reads
 * waiting for a read index when the leader changes get FL_ERR_LEADER_CHANGED
 * (the round's answer will never come).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static void push_done(server *srv, fl_err err, mvcc_range_result *result, server_range_done_fn done,
                      void *ctx)
{
    server_read_done *d = calloc(1, sizeof *d); /* owned by the done list */
    if (!d) {
        /* cannot defer: answer now rather than lose the call */
        if (result) {
            mvcc_range_result_free(result);
            free(result);
        }
        done(ctx, FL_ERR_NOMEM, NULL);
        return;
    }
    srv->reads_count++; /* answered, not yet handed over */
    d->err = err;
    d->result = result;
    d->done = done;
    d->ctx = ctx;
    if (srv->reads_done_tail)
        srv->reads_done_tail->next = d;
    else
        srv->reads_done_head = d;
    srv->reads_done_tail = d;
}

static void read_now(server *srv, const mvcc_range_req *req, server_range_done_fn done, void *ctx)
{
    mvcc_range_result *result = calloc(1, sizeof *result); /* owned until handed to done */
    fl_err err = result ? mvcc_range(srv->store, req, result) : FL_ERR_NOMEM;
    if (err != FL_OK && result) {
        mvcc_range_result_free(result);
        free(result);
        result = NULL;
    }
    push_done(srv, err, result, done, ctx);
}

static void read_free(server_read *r)
{
    free(r->keys);
    free(r);
}

fl_err server_range(server *srv, const mvcc_range_req *request, bool serializable,
                    server_range_done_fn done, void *ctx)
{
    assert(request && done);
    if (srv->stopping)
        return FL_ERR_STOPPED;
    if (srv->reads_count >= SERVER_PENDING_READS_MAX)
        return FL_ERR_BUSY;
    if (serializable || srv->options.test_unsafe_local_reads) {
        read_now(srv, request, done, ctx);
        return FL_OK;
    }
    if (srv->leader_id == 0)
        return FL_ERR_NO_LEADER;
    server_read *r = calloc(1, sizeof *r); /* owned by the server until done */
    if (!r)
        return FL_ERR_NOMEM;
    size_t klen = request->key.len + request->range_end.len;
    r->keys = malloc(klen ? klen : 1);
    if (!r->keys) {
        free(r);
        return FL_ERR_NOMEM;
    }
    r->req = *request;
    if (request->key.len)
        memcpy(r->keys, request->key.data, request->key.len);
    if (request->range_end.len)
        memcpy(r->keys + request->key.len, request->range_end.data, request->range_end.len);
    r->req.key.data = r->keys;
    r->req.range_end.data = request->range_end.data ? r->keys + request->key.len : NULL;
    if (srv->read_round_open == 0)
        srv->read_round_open = ++srv->next_read_id;
    r->read_id = srv->read_round_open;
    r->deadline_ms = server_now_ms(srv) + srv->options.request_timeout_ms;
    r->done = done;
    r->ctx = ctx;
    if (srv->reads_waiting_tail)
        srv->reads_waiting_tail->next = r;
    else
        srv->reads_waiting_head = r;
    srv->reads_waiting_tail = r;
    srv->reads_count++;
    server_node_kick(srv);
    return FL_OK;
}

static void finish(server *srv, server_read *r, fl_err err)
{
    assert(srv->reads_count > 0);
    srv->reads_count--;
    if (err == FL_OK)
        read_now(srv, &r->req, r->done, r->ctx);
    else
        push_done(srv, err, NULL, r->done, r->ctx);
    read_free(r);
}

/* Fails the reads of list for which pred holds; returns the rest. */
static server_read *fail_if(server *srv, server_read *list, server_read **tail, fl_err err,
                            bool (*pred)(const server_read *r, uint64_t arg), uint64_t arg)
{
    server_read *keep = NULL, *keep_tail = NULL;
    while (list) {
        server_read *r = list;
        list = r->next;
        r->next = NULL;
        if (pred(r, arg)) {
            finish(srv, r, err);
            continue;
        }
        if (keep_tail)
            keep_tail->next = r;
        else
            keep = r;
        keep_tail = r;
    }
    *tail = keep_tail;
    return keep;
}

static bool has_read_id(const server_read *r, uint64_t read_id)
{
    return r->read_id == read_id;
}

void server_reads_flush_round(server *srv)
{
    if (srv->read_round_open == 0)
        return;
    uint64_t id = srv->read_round_open;
    srv->read_round_open = 0;
    fl_err err = raft_read_index(srv->raft, id);
    if (err == FL_OK)
        return;
    if (err == FL_ERR_UNAVAILABLE)
        err = FL_ERR_NO_LEADER;
    srv->reads_waiting_head =
        fail_if(srv, srv->reads_waiting_head, &srv->reads_waiting_tail, err, has_read_id, id);
}

void server_reads_on_read_states(server *srv, const struct raft_read_state *rs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* a confirmed round also confirms every earlier one (raft's rounds) */
        server_read *list = srv->reads_waiting_head;
        srv->reads_waiting_head = srv->reads_waiting_tail = NULL;
        while (list) {
            server_read *r = list;
            list = r->next;
            r->next = NULL;
            server_read **head = &srv->reads_waiting_head, **tail = &srv->reads_waiting_tail;
            if (r->read_id <= rs[i].read_id) {
                r->index = rs[i].index;
                head = &srv->reads_ready_head;
                tail = &srv->reads_ready_tail;
            }
            if (*tail)
                (*tail)->next = r;
            else
                *head = r;
            *tail = r;
        }
    }
    server_reads_on_applied(srv);
}

static bool index_applied(const server_read *r, uint64_t applied)
{
    return r->index <= applied;
}

void server_reads_on_applied(server *srv)
{
    if (!srv->reads_ready_head)
        return;
    uint64_t applied = mvcc_applied_index(srv->store);
    srv->reads_ready_head =
        fail_if(srv, srv->reads_ready_head, &srv->reads_ready_tail, FL_OK, index_applied, applied);
}

static bool always(const server_read *r, uint64_t arg)
{
    (void)r;
    (void)arg;
    return true;
}

void server_reads_fail_waiting(server *srv, fl_err err)
{
    srv->reads_waiting_head =
        fail_if(srv, srv->reads_waiting_head, &srv->reads_waiting_tail, err, always, 0);
    srv->read_round_open = 0;
}

void server_reads_fail_all(server *srv, fl_err err)
{
    server_reads_fail_waiting(srv, err);
    srv->reads_ready_head =
        fail_if(srv, srv->reads_ready_head, &srv->reads_ready_tail, err, always, 0);
}

static bool past_deadline(const server_read *r, uint64_t now)
{
    return r->deadline_ms <= now;
}

void server_reads_sweep(server *srv, uint64_t now_ms)
{
    srv->reads_waiting_head = fail_if(srv, srv->reads_waiting_head, &srv->reads_waiting_tail,
                                      FL_ERR_TIMEOUT, past_deadline, now_ms);
    srv->reads_ready_head = fail_if(srv, srv->reads_ready_head, &srv->reads_ready_tail,
                                    FL_ERR_TIMEOUT, past_deadline, now_ms);
}

void server_reads_flush_done(server *srv)
{
    /* take the list first: done may call server_range again */
    server_read_done *list = srv->reads_done_head;
    srv->reads_done_head = srv->reads_done_tail = NULL;
    while (list) {
        server_read_done *d = list;
        list = d->next;
        assert(srv->reads_count > 0);
        srv->reads_count--;
        server_range_done_fn done = d->done;
        void *ctx = d->ctx;
        fl_err err = d->err;
        mvcc_range_result *result = d->result; /* ownership passes to done */
        free(d);
        done(ctx, err, result);
    }
}

fl_err server_hash_kv(server *srv, int64_t revision, uint32_t *hash, int64_t *compact_revision,
                      int64_t *hash_revision)
{
    if (srv->stopping)
        return FL_ERR_STOPPED;
    return mvcc_hash_kv(srv->store, revision, hash, compact_revision, hash_revision);
}

fl_err server_alarms(server *srv, mvcc_alarm **out, size_t *count)
{
    if (srv->stopping)
        return FL_ERR_STOPPED;
    return mvcc_alarms(srv->store, out, count);
}

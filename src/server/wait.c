/* server/wait: requests waiting for their entry to be applied.
 *
 * A request is known by a 64-bit id carried in its entry (entry.h), so the
 * member that holds the client's call answers it when it applies the entry,
 * whether it proposed the entry itself (leader) or forwarded it (follower).
 * Ids: the top 16 bits are the member id's low bits, the rest a counter that
 * starts at the start-up time in milliseconds, so ids differ across members
 * and restarts (a restarted member never mistakes an old entry for a new
 * request; a collision would only answer the wrong waiter with the kind
 * check in apply failing it).
 *
 * Waiters live in a hash table by id and in a list by age; the sweep timer
 * fails the ones past their deadline with FL_ERR_TIMEOUT ("etcdserver:
 * request timed out": the outcome is unknown, as with etcd).
 */
#include <assert.h>
#include <stdlib.h>
#include <time.h>

#include "server/server_internal.h"

uint64_t server_wait_new_id(server *srv)
{
    if (srv->next_request_id == 0)
        srv->next_request_id =
            ((srv->member_id & 0xffffull) << 48) | ((server_now_ms(srv) << 8) & 0xffffffffffffull);
    uint64_t id = srv->next_request_id++;
    /* keep the member bits when the counter wraps */
    if ((srv->next_request_id & 0xffffffffffffull) == 0)
        srv->next_request_id = (srv->member_id & 0xffffull) << 48;
    return id ? id : server_wait_new_id(srv);
}

static size_t bucket_of(uint64_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 52) % SERVER_WAIT_BUCKETS;
}

fl_err server_wait_add(server *srv, server_waiter *w)
{
    assert(w->id != 0);
    size_t b = bucket_of(w->id);
    w->next_in_bucket = srv->wait_buckets[b];
    srv->wait_buckets[b] = w;
    w->prev_age = srv->age_tail;
    w->next_age = NULL;
    if (srv->age_tail)
        srv->age_tail->next_age = w;
    else
        srv->age_head = w;
    srv->age_tail = w;
    srv->writes_pending++;
    srv->pending_bytes += w->bytes;
    return FL_OK;
}

server_waiter *server_wait_take(server *srv, uint64_t id)
{
    server_waiter **pp = &srv->wait_buckets[bucket_of(id)];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next_in_bucket;
    server_waiter *w = *pp;
    if (!w)
        return NULL;
    *pp = w->next_in_bucket;
    if (w->prev_age)
        w->prev_age->next_age = w->next_age;
    else
        srv->age_head = w->next_age;
    if (w->next_age)
        w->next_age->prev_age = w->prev_age;
    else
        srv->age_tail = w->prev_age;
    assert(srv->writes_pending > 0 && srv->pending_bytes >= w->bytes);
    srv->writes_pending--;
    srv->pending_bytes -= w->bytes;
    return w;
}

void server_waiter_finish_write(server *srv, server_waiter *w, fl_err err, mvcc_response *response)
{
    assert(w->kind == WAITER_WRITE);
    if (err == FL_OK || err == FL_ERR_COMPACTED || err == FL_ERR_FUTURE_REV ||
        err == FL_ERR_NO_SPACE_QUOTA || err == FL_ERR_LEASE_NOT_FOUND || err == FL_ERR_NOT_FOUND)
        srv->writes_acked++;
    else
        srv->writes_failed++;
    server_write_done_fn done = w->write_done;
    void *ctx = w->ctx;
    free(w);
    done(ctx, err, response); /* response ownership passes to done */
}

void server_waiter_finish_member(server *srv, server_waiter *w, fl_err err, uint64_t member_id)
{
    (void)srv;
    server_member_done_fn done = w->member_done;
    void *ctx = w->ctx;
    bool is_member = w->kind == WAITER_MEMBER;
    free(w);
    if (is_member)
        done(ctx, err, member_id);
}

void server_wait_sweep(server *srv, uint64_t now_ms, bool all, fl_err err)
{
    while (srv->age_head && (all || srv->age_head->deadline_ms <= now_ms)) {
        server_waiter *w = server_wait_take(srv, srv->age_head->id);
        assert(w);
        if (w->kind == WAITER_WRITE)
            server_waiter_finish_write(srv, w, err, NULL);
        else
            server_waiter_finish_member(srv, w, err, 0);
    }
}

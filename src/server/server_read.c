/* server_read: Range.
 *
 * A single member applies every write before answering it, on this loop, so
 * reading the local store at the moment of the call is linearizable: it sees
 * every write whose reply went out before. (With raft this becomes ReadIndex.)
 * The read runs at once; only its done call is deferred to the idle handle so
 * that done never runs inside server_range. All reads finished in one loop
 * turn are answered together.
 */
#include <assert.h>
#include <stdlib.h>

#include "server/server_internal.h"

fl_err server_range(server *srv, const mvcc_range_req *request, bool serializable,
                    server_range_done_fn done, void *ctx)
{
    (void)serializable; /* the same on a single member */
    assert(request && done);
    if (srv->stopping)
        return FL_ERR_STOPPED;
    if (srv->reads_count >= SERVER_PENDING_READS_MAX)
        return FL_ERR_BUSY;
    /* r and r->result are owned by the server until done */
    server_pending_read *r = calloc(1, sizeof *r);
    if (!r)
        return FL_ERR_NOMEM;
    r->result = calloc(1, sizeof *r->result);
    if (!r->result) {
        free(r);
        return FL_ERR_NOMEM;
    }
    r->err = mvcc_range(srv->store, request, r->result);
    if (r->err != FL_OK) {
        mvcc_range_result_free(r->result);
        free(r->result);
        r->result = NULL;
    }
    r->done = done;
    r->ctx = ctx;
    if (srv->reads_tail)
        srv->reads_tail->next = r;
    else
        srv->reads_head = r;
    srv->reads_tail = r;
    srv->reads_count++;
    if (!uv_is_active((uv_handle_t *)&srv->idle))
        uv_idle_start(&srv->idle, server_on_idle);
    return FL_OK;
}

void server_reads_flush(server *srv)
{
    /* take the list first: done may call server_range again (next turn) */
    server_pending_read *list = srv->reads_head;
    srv->reads_head = srv->reads_tail = NULL;
    while (list) {
        server_pending_read *r = list;
        list = r->next;
        assert(srv->reads_count > 0);
        srv->reads_count--;
        server_range_done_fn done = r->done;
        void *ctx = r->ctx;
        fl_err err = r->err;
        mvcc_range_result *result = r->result; /* ownership passes to done */
        free(r);
        done(ctx, err, result);
    }
}

void server_on_idle(uv_idle_t *handle)
{
    server *srv = handle->data;
    server_reads_flush(srv);
    if (!srv->reads_head)
        uv_idle_stop(&srv->idle);
}

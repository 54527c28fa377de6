/* server/write: Put, DeleteRange, Txn and Compact become proposals.
 *
 * A write is validated (etcd's stateless rules), encoded (mvcc's command in
 * an entry envelope with a fresh request id), registered as waiting for that
 * id, and queued for this loop turn's proposal flush (node.c): proposed on
 * the leader, forwarded to it on a follower. It is answered when this member
 * applies the entry (apply.c), or times out.
 *
 * Refused at once: FL_ERR_STOPPED, FL_ERR_IO (fatal state), FL_ERR_NOSPACE
 * (the WAL or LMDB has no room: what is queued waits, nothing more is taken),
 * FL_ERR_NO_LEADER, FL_ERR_BUSY (pending bounds, or apply too far behind
 * commit: etcd's "too many requests"), validation errors.
 */
#include <assert.h>
#include <stdlib.h>

#include "server/entry.h"
#include "server/server_internal.h"

/* etcd refuses proposals while applying lags commit by more than this */
#define SERVER_APPLY_LAG_MAX 5000u

fl_err server_write_admit(server *srv)
{
    if (srv->stopping || srv->removed)
        return FL_ERR_STOPPED;
    if (srv->failed)
        return FL_ERR_IO;
    if (srv->apply_stalled)
        return FL_ERR_NOSPACE;
    if (writer_stalled(srv->writer)) {
        writer_nudge(srv->writer);
        return FL_ERR_NOSPACE;
    }
    if (srv->leader_id == 0)
        return FL_ERR_NO_LEADER;
    if (srv->writes_pending >= srv->options.pending_writes_max ||
        srv->pending_bytes >= SERVER_PENDING_BYTES_MAX)
        return FL_ERR_BUSY;
    uint64_t applied = mvcc_applied_index(srv->store);
    if (srv->commit_index > applied + SERVER_APPLY_LAG_MAX ||
        srv->apply_bytes > SERVER_APPLY_QUEUE_BYTES_MAX)
        return FL_ERR_BUSY;
    return FL_OK;
}

fl_err server_propose_waiting(server *srv, int kind, const uint8_t *body, size_t body_len,
                              server_waiter *w)
{
    w->id = server_wait_new_id(srv);
    uint8_t *data = NULL;
    size_t len = 0;
    fl_err err = entry_encode((entry_kind)kind, w->id, body, body_len, &data, &len);
    if (err != FL_OK)
        return err;
    w->bytes = len;
    w->deadline_ms = server_now_ms(srv) + srv->options.request_timeout_ms;
    server_wait_add(srv, w);
    err = server_node_propose(srv, data, (uint32_t)len); /* takes data */
    if (err != FL_OK) {
        server_waiter *back = server_wait_take(srv, w->id);
        assert(back == w);
        (void)back;
    }
    return err;
}

fl_err server_write(server *srv, const mvcc_request *request, server_write_done_fn done, void *ctx)
{
    assert(request && done);
    fl_err err = server_write_admit(srv);
    if (err != FL_OK)
        return err;
    err = mvcc_request_validate(request, srv->options.max_txn_ops);
    if (err != FL_OK)
        return err;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    err = mvcc_request_encode(request, &payload, &payload_len);
    if (err != FL_OK)
        return err;
    server_waiter *w = calloc(1, sizeof *w); /* owned by the wait table until done */
    if (!w) {
        free(payload);
        return FL_ERR_NOMEM;
    }
    w->kind = WAITER_WRITE;
    w->write_done = done;
    w->ctx = ctx;
    err = server_propose_waiting(srv, ENTRY_MVCC, payload, payload_len, w);
    free(payload);
    if (err != FL_OK)
        free(w);
    return err;
}

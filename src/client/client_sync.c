/* client_sync: the blocking layer. It owns a private uv loop and runs it until
 * the one outstanding call completes; the async core does all the work. */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

#include "client/client_internal.h"

struct client_sync {
    uv_loop_t loop;
    client *c;
};

typedef struct sync_wait {
    bool done;
    client_status *status;
    void *response;
} sync_wait;

fl_err client_sync_open(const client_options *options, client_sync **out)
{
    assert(options != NULL && out != NULL);
    *out = NULL;
    client_sync *sc = calloc(1, sizeof *sc); /* freed by client_sync_close */
    if (sc == NULL)
        return FL_ERR_NOMEM;
    if (uv_loop_init(&sc->loop) != 0) {
        free(sc);
        return FL_ERR_NOMEM;
    }
    fl_err err = client_open(&sc->loop, options, &sc->c);
    if (err != FL_OK) {
        uv_loop_close(&sc->loop);
        free(sc);
        return err;
    }
    *out = sc;
    return FL_OK;
}

void client_sync_close(client_sync *sc)
{
    if (sc == NULL)
        return;
    client_close(sc->c, NULL, NULL);
    uv_run(&sc->loop, UV_RUN_DEFAULT); /* until every handle has closed */
    int rc = uv_loop_close(&sc->loop);
    assert(rc == 0);
    (void)rc;
    free(sc);
}

static void on_done(void *ctx, const client_status *status, void *response)
{
    sync_wait *w = ctx;
    *w->status = *status;
    w->response = response;
    w->done = true;
}

fl_err client_sync_call(client_sync *sc, client_method method, const void *request,
                        uint64_t timeout_ms, void **response, client_status *status)
{
    assert(sc != NULL && response != NULL && status != NULL);
    *response = NULL;
    sync_wait w = {.done = false, .status = status, .response = NULL};
    uv_update_time(&sc->loop); /* the deadline counts from now, not the last loop turn */
    fl_err err = client_call(sc->c, method, request, timeout_ms, on_done, &w);
    if (err != FL_OK) {
        client_status_set(status, err, -1, fl_err_name(err));
        return err;
    }
    while (!w.done)
        uv_run(&sc->loop, UV_RUN_ONCE);
    *response = w.response;
    return status->err;
}

#define SYNC_TYPED(fn, method, req_type, resp_type)                                                \
    fl_err fn(client_sync *sc, const req_type *req, uint64_t timeout_ms, resp_type **resp,         \
              client_status *status)                                                               \
    {                                                                                              \
        void *r = NULL;                                                                            \
        fl_err err = client_sync_call(sc, method, req, timeout_ms, &r, status);                    \
        *resp = r;                                                                                 \
        return err;                                                                                \
    }

SYNC_TYPED(client_sync_range, CLIENT_RANGE, Etcdserverpb__RangeRequest, Etcdserverpb__RangeResponse)
SYNC_TYPED(client_sync_put, CLIENT_PUT, Etcdserverpb__PutRequest, Etcdserverpb__PutResponse)
SYNC_TYPED(client_sync_delete_range, CLIENT_DELETE_RANGE, Etcdserverpb__DeleteRangeRequest,
           Etcdserverpb__DeleteRangeResponse)
SYNC_TYPED(client_sync_txn, CLIENT_TXN, Etcdserverpb__TxnRequest, Etcdserverpb__TxnResponse)
SYNC_TYPED(client_sync_compact, CLIENT_COMPACT, Etcdserverpb__CompactionRequest,
           Etcdserverpb__CompactionResponse)

fl_err client_sync_status(client_sync *sc, uint64_t timeout_ms, Etcdserverpb__StatusResponse **resp,
                          client_status *status)
{
    Etcdserverpb__StatusRequest req;
    etcdserverpb__status_request__init(&req);
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_STATUS, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

fl_err client_sync_member_list(client_sync *sc, uint64_t timeout_ms,
                               Etcdserverpb__MemberListResponse **resp, client_status *status)
{
    Etcdserverpb__MemberListRequest req;
    etcdserverpb__member_list_request__init(&req);
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MEMBER_LIST, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

/* ---- membership and leadership -------------------------------------------- */

fl_err client_sync_member_add(client_sync *sc, const char *const *peer_urls, size_t n,
                              bool is_learner, uint64_t timeout_ms,
                              Etcdserverpb__MemberAddResponse **resp, client_status *status)
{
    assert(sc != NULL && resp != NULL && status != NULL && peer_urls != NULL);
    *resp = NULL;
    char why[CLIENT_MESSAGE_BYTES];
    if (client_check_urls(peer_urls, n, why, sizeof why) != FL_OK) {
        client_status_set(status, FL_ERR_INVALID, -1, why);
        return FL_ERR_INVALID;
    }
    Etcdserverpb__MemberAddRequest req;
    etcdserverpb__member_add_request__init(&req);
    req.n_peerurls = n;
    req.peerurls = (char **)peer_urls; /* only read: packed before the call returns */
    req.islearner = is_learner;
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MEMBER_ADD, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

fl_err client_sync_member_remove(client_sync *sc, uint64_t id, uint64_t timeout_ms,
                                 Etcdserverpb__MemberRemoveResponse **resp, client_status *status)
{
    Etcdserverpb__MemberRemoveRequest req;
    etcdserverpb__member_remove_request__init(&req);
    req.id = id;
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MEMBER_REMOVE, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

fl_err client_sync_member_update(client_sync *sc, uint64_t id, const char *const *peer_urls,
                                 size_t n, uint64_t timeout_ms,
                                 Etcdserverpb__MemberUpdateResponse **resp, client_status *status)
{
    assert(sc != NULL && resp != NULL && status != NULL && peer_urls != NULL);
    *resp = NULL;
    char why[CLIENT_MESSAGE_BYTES];
    if (client_check_urls(peer_urls, n, why, sizeof why) != FL_OK) {
        client_status_set(status, FL_ERR_INVALID, -1, why);
        return FL_ERR_INVALID;
    }
    Etcdserverpb__MemberUpdateRequest req;
    etcdserverpb__member_update_request__init(&req);
    req.id = id;
    req.n_peerurls = n;
    req.peerurls = (char **)peer_urls; /* only read: packed before the call returns */
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MEMBER_UPDATE, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

fl_err client_sync_member_promote(client_sync *sc, uint64_t id, uint64_t timeout_ms,
                                  Etcdserverpb__MemberPromoteResponse **resp, client_status *status)
{
    Etcdserverpb__MemberPromoteRequest req;
    etcdserverpb__member_promote_request__init(&req);
    req.id = id;
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MEMBER_PROMOTE, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

fl_err client_sync_move_leader(client_sync *sc, uint64_t target_id, uint64_t timeout_ms,
                               Etcdserverpb__MoveLeaderResponse **resp, client_status *status)
{
    Etcdserverpb__MoveLeaderRequest req;
    etcdserverpb__move_leader_request__init(&req);
    req.targetid = target_id;
    void *r = NULL;
    fl_err err = client_sync_call(sc, CLIENT_MOVE_LEADER, &req, timeout_ms, &r, status);
    *resp = r;
    return err;
}

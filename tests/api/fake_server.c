/* Test double of src/server for the api tests; see fake_server.h. */
#include "fake_server.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_KEYS_MAX  256
#define FAKE_BYTES_MAX 4096

typedef struct fake_kv {
    uint8_t key[FAKE_BYTES_MAX];
    size_t key_len;
    uint8_t *value; /* owned */
    size_t value_len;
    int64_t create_revision, mod_revision, version;
} fake_kv;

typedef struct fake_pending {
    struct fake_pending *next;
    bool is_write;
    fl_err err;
    mvcc_response *response;
    mvcc_range_result *result;
    server_write_done_fn write_done;
    server_range_done_fn range_done;
    void *ctx;
} fake_pending;

struct server {
    uv_loop_t *loop;
    uv_idle_t idle;
    fake_pending *head, *tail;
    size_t pending;
    bool hold;
    bool closing;
    fl_err fail_next;
    uint64_t requests;
    int64_t revision;
    fake_kv kvs[FAKE_KEYS_MAX];
    size_t kvs_count;
};

/* ---- the two mvcc free functions, for results made here --------------------- */

void mvcc_range_result_free(mvcc_range_result *result)
{
    if (result == NULL) {
        return;
    }
    free(result->arena); /* one block: kvs array, keys, values */
    memset(result, 0, sizeof(*result));
}

void mvcc_response_free(mvcc_response *response)
{
    if (response == NULL) {
        return;
    }
    free(response->arena);
    memset(response, 0, sizeof(*response));
}

/* ---- the table ---------------------------------------------------------------- */

static fake_kv *find(server *srv, mvcc_bytes key)
{
    for (size_t i = 0; i < srv->kvs_count; i++) {
        if (srv->kvs[i].key_len == key.len && memcmp(srv->kvs[i].key, key.data, key.len) == 0) {
            return &srv->kvs[i];
        }
    }
    return NULL;
}

static bool in_range(const fake_kv *kv, mvcc_bytes key, mvcc_bytes end)
{
    size_t n = kv->key_len < key.len ? kv->key_len : key.len;
    int c = memcmp(kv->key, key.data, n);
    if (end.len == 0) {
        return kv->key_len == key.len && c == 0;
    }
    if (c < 0 || (c == 0 && kv->key_len < key.len)) {
        return false;
    }
    if (end.len == 1 && end.data[0] == 0) {
        return true;
    }
    n = kv->key_len < end.len ? kv->key_len : end.len;
    c = memcmp(kv->key, end.data, n);
    return c < 0 || (c == 0 && kv->key_len < end.len);
}

static mvcc_range_result *do_range(server *srv, const mvcc_range_req *req)
{
    mvcc_range_result *r = calloc(1, sizeof(*r));
    assert(r != NULL);
    size_t bytes = 0, count = 0;
    for (size_t i = 0; i < srv->kvs_count; i++) {
        if (in_range(&srv->kvs[i], req->key, req->range_end)) {
            bytes += srv->kvs[i].key_len + srv->kvs[i].value_len;
            count++;
        }
    }
    uint8_t *block = malloc(count * sizeof(mvcc_kv) + bytes + 1);
    assert(block != NULL);
    mvcc_kv *kvs = (mvcc_kv *)block;
    uint8_t *p = block + count * sizeof(mvcc_kv);
    size_t n = 0;
    for (size_t i = 0; i < srv->kvs_count; i++) {
        fake_kv *kv = &srv->kvs[i];
        if (!in_range(kv, req->key, req->range_end)) {
            continue;
        }
        memcpy(p, kv->key, kv->key_len);
        kvs[n].key = (mvcc_bytes){p, kv->key_len};
        p += kv->key_len;
        if (kv->value_len) {
            memcpy(p, kv->value, kv->value_len);
        }
        kvs[n].value = (mvcc_bytes){p, kv->value_len};
        p += kv->value_len;
        kvs[n].create_revision = kv->create_revision;
        kvs[n].mod_revision = kv->mod_revision;
        kvs[n].version = kv->version;
        n++;
    }
    r->arena = block;
    r->kvs = kvs;
    r->kvs_count = count;
    r->count = (int64_t)count;
    r->revision = srv->revision;
    return r;
}

static fl_err do_put(server *srv, const mvcc_put_req *put)
{
    if (put->key.len > FAKE_BYTES_MAX) {
        return FL_ERR_INVALID;
    }
    fake_kv *kv = find(srv, put->key);
    if (kv == NULL) {
        if (srv->kvs_count == FAKE_KEYS_MAX) {
            return FL_ERR_NO_SPACE_QUOTA;
        }
        kv = &srv->kvs[srv->kvs_count++];
        memset(kv, 0, sizeof(*kv));
        memcpy(kv->key, put->key.data, put->key.len);
        kv->key_len = put->key.len;
        kv->create_revision = srv->revision + 1;
    }
    free(kv->value);
    kv->value = malloc(put->value.len + 1);
    assert(kv->value != NULL);
    memcpy(kv->value, put->value.data, put->value.len);
    kv->value_len = put->value.len;
    kv->mod_revision = srv->revision + 1;
    kv->version++;
    return FL_OK;
}

/* ---- completion ----------------------------------------------------------------- */

static void on_idle(uv_idle_t *handle);

static void enqueue(server *srv, fake_pending *p)
{
    srv->requests++;
    srv->pending++;
    if (srv->tail) {
        srv->tail->next = p;
    } else {
        srv->head = p;
    }
    srv->tail = p;
    if (!srv->hold && !uv_is_active((uv_handle_t *)&srv->idle)) {
        uv_idle_start(&srv->idle, on_idle);
    }
}

static void complete_all(server *srv, fl_err force)
{
    fake_pending *list = srv->head;
    srv->head = srv->tail = NULL;
    while (list) {
        fake_pending *p = list;
        list = p->next;
        srv->pending--;
        fl_err err = force != FL_OK ? force : p->err;
        if (p->is_write) {
            mvcc_response *resp = p->response;
            if (err != FL_OK && resp) {
                mvcc_response_free(resp);
                free(resp);
                resp = NULL;
            }
            p->write_done(p->ctx, err, resp);
        } else {
            mvcc_range_result *res = p->result;
            if (err != FL_OK && res) {
                mvcc_range_result_free(res);
                free(res);
                res = NULL;
            }
            p->range_done(p->ctx, err, res);
        }
        free(p);
    }
}

static void on_idle(uv_idle_t *handle)
{
    server *srv = handle->data;
    uv_idle_stop(&srv->idle);
    if (!srv->hold) {
        complete_all(srv, FL_OK);
    }
}

/* ---- the server_* functions the api calls ----------------------------------------- */

server *fake_server_create(uv_loop_t *loop)
{
    server *srv = calloc(1, sizeof(*srv));
    assert(srv != NULL);
    srv->loop = loop;
    srv->revision = 1;
    uv_idle_init(loop, &srv->idle);
    srv->idle.data = srv;
    return srv;
}

static void on_closed(uv_handle_t *handle)
{
    server *srv = handle->data;
    for (size_t i = 0; i < srv->kvs_count; i++) {
        free(srv->kvs[i].value);
    }
    free(srv);
}

void fake_server_destroy(server *srv)
{
    complete_all(srv, FL_ERR_STOPPED);
    uv_close((uv_handle_t *)&srv->idle, on_closed);
}

void fake_server_hold(server *srv, bool hold)
{
    srv->hold = hold;
}

void fake_server_release(server *srv)
{
    srv->hold = false;
    uv_idle_start(&srv->idle, on_idle);
}

size_t fake_server_pending(const server *srv)
{
    return srv->pending;
}

uint64_t fake_server_requests(const server *srv)
{
    return srv->requests;
}

void fake_server_put_raw(server *srv, const char *key, size_t value_len, uint8_t fill)
{
    uint8_t *value = malloc(value_len + 1);
    assert(value != NULL);
    memset(value, fill, value_len);
    mvcc_put_req put = {.key = {(const uint8_t *)key, strlen(key)}, .value = {value, value_len}};
    fl_err err = do_put(srv, &put);
    assert(err == FL_OK);
    (void)err;
    srv->revision++;
    free(value);
}

void fake_server_fail_next_write(server *srv, fl_err err)
{
    srv->fail_next = err;
}

void server_get_header(const server *srv, server_header *out)
{
    out->cluster_id = 0x1111;
    out->member_id = 0x2222;
    out->revision = srv->revision;
    out->raft_term = 3;
}

fl_err server_write(server *srv, const mvcc_request *request, server_write_done_fn done, void *ctx)
{
    if (srv->closing) {
        return FL_ERR_STOPPED;
    }
    fake_pending *p = calloc(1, sizeof(*p));
    assert(p != NULL);
    p->is_write = true;
    p->write_done = done;
    p->ctx = ctx;
    mvcc_response *resp = calloc(1, sizeof(*resp));
    assert(resp != NULL);
    resp->type = request->type;
    if (srv->fail_next != FL_OK) {
        p->err = srv->fail_next;
        srv->fail_next = FL_OK;
    } else if (request->type == MVCC_REQ_PUT) {
        if (request->u.put.key.len == 0) {
            free(resp);
            free(p);
            return FL_ERR_KEY_EMPTY;
        }
        p->err = do_put(srv, &request->u.put);
        if (p->err == FL_OK) {
            srv->revision++;
        }
    } else if (request->type == MVCC_REQ_COMPACT) {
        if (request->u.compact.revision > srv->revision) {
            p->err = FL_ERR_FUTURE_REV;
        }
    } else if (request->type == MVCC_REQ_TXN) {
        resp->u.txn.succeeded = true;
    }
    resp->revision = srv->revision;
    p->response = resp;
    enqueue(srv, p);
    return FL_OK;
}

fl_err server_range(server *srv, const mvcc_range_req *request, bool serializable,
                    server_range_done_fn done, void *ctx)
{
    if (srv->closing) {
        return FL_ERR_STOPPED;
    }
    fake_pending *p = calloc(1, sizeof(*p));
    assert(p != NULL);
    p->range_done = done;
    p->ctx = ctx;
    if (request->revision > srv->revision) {
        p->err = FL_ERR_FUTURE_REV;
    } else {
        p->result = do_range(srv, request);
    }
    enqueue(srv, p);
    return FL_OK;
}

void server_get_status(const server *srv, server_status *out)
{
    memset(out, 0, sizeof(*out));
    out->version = SERVER_ETCD_API_VERSION;
    out->db_size_bytes = 4096;
    out->db_size_in_use_bytes = 2048;
    out->leader_id = 0x2222;
    out->raft_index = (uint64_t)srv->revision;
    out->raft_term = 3;
    out->raft_applied_index = (uint64_t)srv->revision;
}

void server_get_members(const server *srv, const server_member **members, size_t *count)
{
    static const char *const peers[] = {"http://127.0.0.1:2380"};
    static const char *const clients[] = {"http://127.0.0.1:2379"};
    static const server_member m = {.id = 0x2222,
                                    .name = "fake",
                                    .peer_urls = peers,
                                    .peer_urls_count = 1,
                                    .client_urls = clients,
                                    .client_urls_count = 1};
    *members = &m;
    *count = 1;
}

/* Membership is not exercised by the api unit tests (the integration tests
 * drive it against real members): the fake refuses it, as a member with no
 * leader would. */
fl_err server_member_add(server *srv, const char *const *peer_urls, size_t n, bool is_learner,
                         server_member_done_fn done, void *ctx)
{
    (void)srv, (void)peer_urls, (void)n, (void)is_learner, (void)done, (void)ctx;
    return FL_ERR_NO_LEADER;
}

fl_err server_member_remove(server *srv, uint64_t id, server_member_done_fn done, void *ctx)
{
    (void)srv, (void)id, (void)done, (void)ctx;
    return FL_ERR_NO_LEADER;
}

fl_err server_member_update(server *srv, uint64_t id, const char *const *peer_urls, size_t n,
                            server_member_done_fn done, void *ctx)
{
    (void)srv, (void)id, (void)peer_urls, (void)n, (void)done, (void)ctx;
    return FL_ERR_NO_LEADER;
}

fl_err server_member_promote(server *srv, uint64_t id, server_member_done_fn done, void *ctx)
{
    (void)srv, (void)id, (void)done, (void)ctx;
    return FL_ERR_NO_LEADER;
}

fl_err server_move_leader(server *srv, uint64_t target, server_member_done_fn done, void *ctx)
{
    (void)srv, (void)target, (void)done, (void)ctx;
    return FL_ERR_NOT_LEADER;
}

fl_err server_hash_kv(server *srv, int64_t revision, uint32_t *hash, int64_t *compact_revision,
                      int64_t *hash_revision)
{
    (void)srv, (void)revision, (void)hash, (void)compact_revision, (void)hash_revision;
    return FL_ERR_UNAVAILABLE;
}

fl_err server_alarms(server *srv, mvcc_alarm **out, size_t *count)
{
    (void)srv;
    *out = NULL;
    *count = 0;
    return FL_OK;
}

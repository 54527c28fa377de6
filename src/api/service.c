/* api/service: the etcd v3 gRPC methods Flotilla serves.
 *
 * One table maps each gRPC path to its request type and handler. A handler
 * decodes the request into the call's arena, makes etcd's v3rpc checks
 * (convert.c), calls one server_* function and, in its callback, converts
 * the result into the response message (header from server_get_header at
 * that time; revision from the result) and replies. Methods of etcd's
 * services that Flotilla does not serve yet answer UNIMPLEMENTED at once.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/convert.h"
#include "api/internal.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

typedef void (*api_handler_fn)(api_call *call, ProtobufCMessage *request);

struct api_method {
    const char *path;
    const ProtobufCMessageDescriptor *request;
    api_handler_fn handler;
};

static void handle_range(api_call *call, ProtobufCMessage *request);
static void handle_put(api_call *call, ProtobufCMessage *request);
static void handle_delete_range(api_call *call, ProtobufCMessage *request);
static void handle_txn(api_call *call, ProtobufCMessage *request);
static void handle_compact(api_call *call, ProtobufCMessage *request);
static void handle_status(api_call *call, ProtobufCMessage *request);
static void handle_member_list(api_call *call, ProtobufCMessage *request);
static void handle_member_add(api_call *call, ProtobufCMessage *request);
static void handle_member_remove(api_call *call, ProtobufCMessage *request);
static void handle_member_update(api_call *call, ProtobufCMessage *request);
static void handle_member_promote(api_call *call, ProtobufCMessage *request);
static void handle_move_leader(api_call *call, ProtobufCMessage *request);
static void handle_hash_kv(api_call *call, ProtobufCMessage *request);
static void handle_alarm(api_call *call, ProtobufCMessage *request);
static void alarm_reply(api_call *call, const mvcc_alarm *alarms, size_t count);

static const api_method api_methods[] = {
    {"/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor, handle_range},
    {"/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor, handle_put},
    {"/etcdserverpb.KV/DeleteRange", &etcdserverpb__delete_range_request__descriptor,
     handle_delete_range},
    {"/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor, handle_txn},
    {"/etcdserverpb.KV/Compact", &etcdserverpb__compaction_request__descriptor, handle_compact},
    {"/etcdserverpb.Maintenance/Status", &etcdserverpb__status_request__descriptor, handle_status},
    {"/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor,
     handle_member_list},
    {"/etcdserverpb.Cluster/MemberAdd", &etcdserverpb__member_add_request__descriptor,
     handle_member_add},
    {"/etcdserverpb.Cluster/MemberRemove", &etcdserverpb__member_remove_request__descriptor,
     handle_member_remove},
    {"/etcdserverpb.Cluster/MemberUpdate", &etcdserverpb__member_update_request__descriptor,
     handle_member_update},
    {"/etcdserverpb.Cluster/MemberPromote", &etcdserverpb__member_promote_request__descriptor,
     handle_member_promote},
    {"/etcdserverpb.Maintenance/MoveLeader", &etcdserverpb__move_leader_request__descriptor,
     handle_move_leader},
    {"/etcdserverpb.Maintenance/HashKV", &etcdserverpb__hash_kvrequest__descriptor,
     handle_hash_kv},
    {"/etcdserverpb.Maintenance/Alarm", &etcdserverpb__alarm_request__descriptor, handle_alarm},
};

/* etcd 3.4's services and their methods: a method listed here that is not
 * in api_methods is known but not served yet. */
static const struct {
    const char *service;
    const char *methods[17];
} api_etcd_services[] = {
    {"etcdserverpb.KV", {"Range", "Put", "DeleteRange", "Txn", "Compact"}},
    {"etcdserverpb.Watch", {"Watch"}},
    {"etcdserverpb.Lease",
     {"LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"}},
    {"etcdserverpb.Cluster",
     {"MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"}},
    {"etcdserverpb.Maintenance",
     {"Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader"}},
    {"etcdserverpb.Auth",
     {"AuthEnable", "AuthDisable", "Authenticate", "UserAdd", "UserGet", "UserList", "UserDelete",
      "UserChangePassword", "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList",
      "RoleDelete", "RoleGrantPermission", "RoleRevokePermission"}},
};

#define COUNT_OF(a)        (sizeof(a) / sizeof((a)[0]))
#define LOOKUP_MESSAGE_MAX 256

static bool span_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && memcmp(a, b, alen) == 0;
}

const api_method *api_method_lookup(const char *path, size_t len, api_arena *arena,
                                    api_status *status)
{
    for (size_t i = 0; i < COUNT_OF(api_methods); i++) {
        if (span_eq(path, len, api_methods[i].path)) {
            return &api_methods[i];
        }
    }
    /* grpc-go's answers: malformed name, unknown service, unknown method. */
    char *msg = api_arena_alloc(arena, LOOKUP_MESSAGE_MAX);
    status->code = API_GRPC_UNIMPLEMENTED;
    status->message = "unknown method";
    if (msg == NULL) {
        return NULL;
    }
    status->message = msg;
    int shown = len > 100 ? 100 : (int)len; /* keep the message bounded */
    const char *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
    if (len == 0 || path[0] != '/' || slash == NULL) {
        snprintf(msg, LOOKUP_MESSAGE_MAX, "malformed method name: \"%.*s\"", shown, path);
        return NULL;
    }
    const char *service = path + 1;
    size_t service_len = (size_t)(slash - service);
    const char *method = slash + 1;
    size_t method_len = len - service_len - 2;
    int service_shown = service_len > 100 ? 100 : (int)service_len;
    int method_shown = method_len > 100 ? 100 : (int)method_len;
    for (size_t s = 0; s < COUNT_OF(api_etcd_services); s++) {
        if (!span_eq(service, service_len, api_etcd_services[s].service)) {
            continue;
        }
        for (size_t m = 0; m < COUNT_OF(api_etcd_services[s].methods); m++) {
            const char *name = api_etcd_services[s].methods[m];
            if (name != NULL && span_eq(method, method_len, name)) {
                snprintf(msg, LOOKUP_MESSAGE_MAX, "method %s not implemented", name);
                return NULL;
            }
        }
        snprintf(msg, LOOKUP_MESSAGE_MAX, "unknown method %.*s for service %.*s", method_shown,
                 method, service_shown, service);
        return NULL;
    }
    snprintf(msg, LOOKUP_MESSAGE_MAX, "unknown service %.*s", service_shown, service);
    return NULL;
}

void api_call_dispatch(api_call *call)
{
    assert(call->method != NULL && call->reader.state == API_FRAME_DONE);
    const api_method *method = call->method;
    const uint8_t *body = call->reader.body;
    size_t body_len = call->reader.msg_len;
    if (method->handler == handle_txn) {
        api_wire_check wc = api_txn_wire_check(body, body_len, API_TXN_DEPTH_MAX);
        if (wc == API_WIRE_TOO_DEEP) {
            api_call_fail(
                call, (api_status){API_GRPC_INVALID_ARGUMENT, "etcdserver: txn nested too deep"});
            return;
        }
        if (wc == API_WIRE_MALFORMED) {
            api_call_fail(call,
                          (api_status){API_GRPC_INTERNAL, "grpc: error unmarshalling request: "
                                                          "invalid wire-format data"});
            return;
        }
    }
    ProtobufCMessage *request =
        protobuf_c_message_unpack(method->request, &call->arena.pb, body_len, body);
    if (request == NULL) {
        api_call_fail(call, (api_status){API_GRPC_INTERNAL, "grpc: error unmarshalling request: "
                                                            "invalid wire-format data"});
        return;
    }
    if (method->handler == handle_range) {
        api_range_mark_from_key(body, body_len, (Etcdserverpb__RangeRequest *)request);
    } else if (method->handler == handle_txn) {
        api_txn_mark_from_key(body, body_len, (Etcdserverpb__TxnRequest *)request);
    }
    method->handler(call, request);
}

/* ---- writes ----------------------------------------------------------------- */

static void free_response(mvcc_response *response)
{
    if (response != NULL) {
        mvcc_response_free(response);
        free(response); /* the server malloc'ed the struct; ownership came with done */
    }
}

static void write_done(void *ctx, fl_err err, mvcc_response *response)
{
    api_call *call = ctx;
    if (!api_call_resume(call)) {
        free_response(response);
        return;
    }
    if (err != FL_OK || response == NULL) {
        free_response(response);
        api_call_fail(call, api_status_from_err(err != FL_OK ? err : FL_ERR_IO));
        return;
    }
    if (response->type == MVCC_REQ_ALARM) {
        /* etcd lists the request's alarm only when it changed something */
        const mvcc_alarm *asked = call->handler_data;
        alarm_reply(call, asked, response->u.alarm.changed ? 1 : 0);
        free_response(response);
        return;
    }
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    api_arena *arena = &call->arena;
    Etcdserverpb__ResponseHeader *header = api_header_to_pb(arena, &sh, response->revision);
    ProtobufCMessage *msg = NULL;
    if (header != NULL) {
        switch (response->type) {
        case MVCC_REQ_PUT: {
            Etcdserverpb__PutResponse *r = api_put_resp_to_pb(arena, &response->u.put, header);
            msg = r ? &r->base : NULL;
            break;
        }
        case MVCC_REQ_DELETE: {
            Etcdserverpb__DeleteRangeResponse *r =
                api_delete_resp_to_pb(arena, &response->u.del, header);
            msg = r ? &r->base : NULL;
            break;
        }
        case MVCC_REQ_TXN: {
            Etcdserverpb__TxnResponse *r =
                api_txn_resp_to_pb(arena, &response->u.txn, header, response->revision);
            msg = r ? &r->base : NULL;
            break;
        }
        case MVCC_REQ_COMPACT: {
            Etcdserverpb__CompactionResponse *r = api_arena_alloc(arena, sizeof(*r));
            if (r != NULL) {
                etcdserverpb__compaction_response__init(r);
                r->header = header;
                msg = &r->base;
            }
            break;
        }
        }
    }
    if (msg != NULL) {
        api_call_reply(call, msg); /* packs: the response may be freed after */
    } else {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
    }
    free_response(response);
}

/* etcd refuses a raft entry larger than --max-request-bytes. */
static bool write_too_large(const api_call *call)
{
    return (uint64_t)call->reader.msg_len + API_RAFT_OVERHEAD_BYTES >
           api_call_max_request_bytes(call);
}

static void submit_write(api_call *call, const mvcc_request *request, bool check_size)
{
    if (check_size && write_too_large(call)) {
        api_call_fail(call, api_status_from_err(FL_ERR_TOO_LARGE));
        return;
    }
    call->in_server = true;
    fl_err err = server_write(api_call_server(call), request, write_done, call);
    if (err != FL_OK) {
        call->in_server = false;
        api_call_fail(call, api_status_from_err(err));
    }
}

static void handle_put(api_call *call, ProtobufCMessage *request)
{
    mvcc_request req = {.type = MVCC_REQ_PUT};
    api_status st = api_put_from_pb((Etcdserverpb__PutRequest *)request, &req.u.put);
    if (st.code != API_GRPC_OK) {
        api_call_fail(call, st);
        return;
    }
    submit_write(call, &req, true);
}

static void handle_delete_range(api_call *call, ProtobufCMessage *request)
{
    mvcc_request req = {.type = MVCC_REQ_DELETE};
    api_status st = api_delete_from_pb((Etcdserverpb__DeleteRangeRequest *)request, &req.u.del);
    if (st.code != API_GRPC_OK) {
        api_call_fail(call, st);
        return;
    }
    submit_write(call, &req, true);
}

static void handle_txn(api_call *call, ProtobufCMessage *request)
{
    mvcc_request req = {.type = MVCC_REQ_TXN};
    api_status st = api_txn_from_pb(&call->arena, (Etcdserverpb__TxnRequest *)request, &req.u.txn);
    if (st.code != API_GRPC_OK) {
        api_call_fail(call, st);
        return;
    }
    /* etcd serves a read-only txn without a raft entry, so without the size check. */
    submit_write(call, &req, !api_txn_is_read_only(&req.u.txn));
}

static void handle_compact(api_call *call, ProtobufCMessage *request)
{
    mvcc_request req = {.type = MVCC_REQ_COMPACT};
    api_status st = api_compact_from_pb((Etcdserverpb__CompactionRequest *)request, &req.u.compact);
    if (st.code != API_GRPC_OK) {
        api_call_fail(call, st);
        return;
    }
    submit_write(call, &req, true);
}

/* ---- reads ------------------------------------------------------------------ */

static void free_range_result(mvcc_range_result *result)
{
    if (result != NULL) {
        mvcc_range_result_free(result);
        free(result); /* the server malloc'ed the struct; ownership came with done */
    }
}

static void range_done(void *ctx, fl_err err, mvcc_range_result *result)
{
    api_call *call = ctx;
    if (!api_call_resume(call)) {
        free_range_result(result);
        return;
    }
    if (err != FL_OK || result == NULL) {
        free_range_result(result);
        api_call_fail(call, api_status_from_err(err != FL_OK ? err : FL_ERR_IO));
        return;
    }
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    Etcdserverpb__ResponseHeader *header = api_header_to_pb(&call->arena, &sh, result->revision);
    Etcdserverpb__RangeResponse *r =
        header ? api_range_resp_to_pb(&call->arena, result, header) : NULL;
    if (r != NULL) {
        api_call_reply(call, &r->base);
    } else {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
    }
    free_range_result(result);
}

static void handle_range(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__RangeRequest *pb = (Etcdserverpb__RangeRequest *)request;
    mvcc_range_req req;
    api_status st = api_range_from_pb(pb, &req);
    if (st.code != API_GRPC_OK) {
        api_call_fail(call, st);
        return;
    }
    call->in_server = true;
    fl_err err = server_range(api_call_server(call), &req, pb->serializable, range_done, call);
    if (err != FL_OK) {
        call->in_server = false;
        api_call_fail(call, api_status_from_err(err));
    }
}

/* ---- maintenance and cluster ------------------------------------------------ */

static void handle_status(api_call *call, ProtobufCMessage *request)
{
    server *srv = api_call_server(call);
    server_status s;
    server_get_status(srv, &s);
    server_header sh;
    server_get_header(srv, &sh);
    Etcdserverpb__StatusResponse r;
    etcdserverpb__status_response__init(&r);
    r.header = api_header_to_pb(&call->arena, &sh, sh.revision);
    if (r.header == NULL) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    /* Clients pick features by this: the etcd API version, not Flotilla's. */
    r.version = (char *)(uintptr_t)(s.version ? s.version : SERVER_ETCD_API_VERSION);
    r.dbsize = s.db_size_bytes;
    r.dbsizeinuse = s.db_size_in_use_bytes;
    r.leader = s.leader_id;
    r.raftindex = s.raft_index;
    r.raftterm = s.raft_term;
    r.raftappliedindex = s.raft_applied_index;
    r.islearner = s.is_learner;
    char *errors[1];
    if (s.error && s.error[0]) {
        errors[0] = (char *)(uintptr_t)s.error; /* packing only reads */
        r.errors = errors;
        r.n_errors = 1;
    }
    api_call_reply(call, &r.base);
}

static char **strings_to_pb(api_arena *arena, const char *const *strings, size_t count)
{
    if (count == 0) {
        return NULL;
    }
    char **out = api_arena_alloc(arena, count * sizeof(*out));
    if (out != NULL) {
        for (size_t i = 0; i < count; i++) {
            out[i] = (char *)(uintptr_t)strings[i]; /* packing only reads */
        }
    }
    return out;
}

/* Every member, as this member has applied the table, into the call's arena. */
static bool members_to_pb(api_call *call, Etcdserverpb__Member ***out, size_t *out_count,
                          uint64_t find_id, Etcdserverpb__Member **found)
{
    const server_member *members = NULL;
    size_t count = 0;
    server_get_members(api_call_server(call), &members, &count);
    api_arena *arena = &call->arena;
    Etcdserverpb__Member *msgs = count ? api_arena_calloc(arena, count, sizeof(*msgs)) : NULL;
    Etcdserverpb__Member **list = count ? api_arena_alloc(arena, count * sizeof(*list)) : NULL;
    bool ok = count == 0 || (msgs != NULL && list != NULL);
    for (size_t i = 0; ok && i < count; i++) {
        const server_member *m = &members[i];
        etcdserverpb__member__init(&msgs[i]);
        msgs[i].id = m->id;
        msgs[i].name = (char *)(uintptr_t)(m->name ? m->name : "");
        msgs[i].n_peerurls = m->peer_urls_count;
        msgs[i].peerurls = strings_to_pb(arena, m->peer_urls, m->peer_urls_count);
        msgs[i].n_clienturls = m->client_urls_count;
        msgs[i].clienturls = strings_to_pb(arena, m->client_urls, m->client_urls_count);
        msgs[i].islearner = m->is_learner;
        ok = (m->peer_urls_count == 0 || msgs[i].peerurls != NULL) &&
             (m->client_urls_count == 0 || msgs[i].clienturls != NULL);
        list[i] = &msgs[i];
        if (found && m->id == find_id)
            *found = &msgs[i];
    }
    *out = list;
    *out_count = count;
    return ok;
}

static void handle_member_list(api_call *call, ProtobufCMessage *request)
{
    server *srv = api_call_server(call);
    server_header sh;
    server_get_header(srv, &sh);
    Etcdserverpb__MemberListResponse r;
    etcdserverpb__member_list_response__init(&r);
    /* etcd's cluster server header has no revision (ClusterServer.header). */
    r.header = api_header_to_pb(&call->arena, &sh, 0);
    if (r.header == NULL || !members_to_pb(call, &r.members, &r.n_members, 0, NULL)) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    api_call_reply(call, &r.base);
}

/* The four membership changes answer the same way: header + members
 * (MemberAdd also the member added). */
static void member_change_reply(api_call *call, fl_err err, uint64_t member_id, bool add)
{
    if (err != FL_OK) {
        api_call_fail(call, api_status_from_err(err));
        return;
    }
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    Etcdserverpb__ResponseHeader *header = api_header_to_pb(&call->arena, &sh, 0);
    Etcdserverpb__Member **members = NULL;
    size_t count = 0;
    Etcdserverpb__Member *found = NULL;
    if (header == NULL || !members_to_pb(call, &members, &count, member_id, &found)) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    /* MemberAddResponse and the others share field numbers 1 (header) and
     * the members list (3 for add, 2 otherwise): build each type */
    if (add) {
        Etcdserverpb__MemberAddResponse r;
        etcdserverpb__member_add_response__init(&r);
        r.header = header;
        r.member = found;
        r.members = members;
        r.n_members = count;
        api_call_reply(call, &r.base);
        return;
    }
    Etcdserverpb__MemberRemoveResponse r;
    etcdserverpb__member_remove_response__init(&r);
    r.header = header;
    r.members = members;
    r.n_members = count;
    api_call_reply(call, &r.base);
}

static void member_add_done(void *ctx, fl_err err, uint64_t member_id)
{
    api_call *call = ctx;
    if (api_call_resume(call))
        member_change_reply(call, err, member_id, true);
}

static void member_other_done(void *ctx, fl_err err, uint64_t member_id)
{
    api_call *call = ctx;
    if (api_call_resume(call))
        member_change_reply(call, err, member_id, false);
}

static void member_submitted(api_call *call, fl_err err)
{
    if (err == FL_ERR_INVALID) {
        call->in_server = false;
        api_call_fail(call, (api_status){API_GRPC_INVALID_ARGUMENT,
                                         "etcdserver: given member URLs are invalid"});
    } else if (err != FL_OK) {
        call->in_server = false;
        api_call_fail(call, api_status_from_err(err));
    }
}

static void handle_member_add(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__MemberAddRequest *pb = (Etcdserverpb__MemberAddRequest *)request;
    if (pb->n_peerurls == 0) {
        api_call_fail(call, (api_status){API_GRPC_INVALID_ARGUMENT,
                                         "etcdserver: given member URLs are invalid"});
        return;
    }
    call->in_server = true;
    member_submitted(call, server_member_add(api_call_server(call),
                                             (const char *const *)pb->peerurls, pb->n_peerurls,
                                             pb->islearner, member_add_done, call));
}

static void handle_member_remove(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__MemberRemoveRequest *pb = (Etcdserverpb__MemberRemoveRequest *)request;
    call->in_server = true;
    member_submitted(call, server_member_remove(api_call_server(call), pb->id, member_other_done,
                                                call));
}

static void handle_member_update(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__MemberUpdateRequest *pb = (Etcdserverpb__MemberUpdateRequest *)request;
    if (pb->n_peerurls == 0) {
        api_call_fail(call, (api_status){API_GRPC_INVALID_ARGUMENT,
                                         "etcdserver: given member URLs are invalid"});
        return;
    }
    call->in_server = true;
    member_submitted(call, server_member_update(api_call_server(call), pb->id,
                                                (const char *const *)pb->peerurls,
                                                pb->n_peerurls, member_other_done, call));
}

static void handle_member_promote(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__MemberPromoteRequest *pb = (Etcdserverpb__MemberPromoteRequest *)request;
    call->in_server = true;
    member_submitted(call, server_member_promote(api_call_server(call), pb->id,
                                                 member_other_done, call));
}

static void move_leader_done(void *ctx, fl_err err, uint64_t member_id)
{
    (void)member_id;
    api_call *call = ctx;
    if (!api_call_resume(call))
        return;
    if (err != FL_OK) {
        api_call_fail(call, api_status_from_err(err));
        return;
    }
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    (void)sh;
    Etcdserverpb__MoveLeaderResponse r; /* etcd 3.4 answers an empty message */
    etcdserverpb__move_leader_response__init(&r);
    api_call_reply(call, &r.base);
}

static void handle_move_leader(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__MoveLeaderRequest *pb = (Etcdserverpb__MoveLeaderRequest *)request;
    call->in_server = true;
    member_submitted(call, server_move_leader(api_call_server(call), pb->targetid,
                                              move_leader_done, call));
}

/* ---- HashKV and Alarm ------------------------------------------------------- */

static void handle_hash_kv(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__HashKVRequest *pb = (Etcdserverpb__HashKVRequest *)request;
    uint32_t hash = 0;
    int64_t compact_rev = 0, hash_rev = 0;
    fl_err err =
        server_hash_kv(api_call_server(call), pb->revision, &hash, &compact_rev, &hash_rev);
    if (err != FL_OK) {
        api_call_fail(call, api_status_from_err(err));
        return;
    }
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    Etcdserverpb__HashKVResponse r;
    etcdserverpb__hash_kvresponse__init(&r);
    r.header = api_header_to_pb(&call->arena, &sh, sh.revision);
    if (r.header == NULL) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    r.hash = hash;
    r.compact_revision = compact_rev;
    api_call_reply(call, &r.base);
}

/* AlarmResponse with the given alarms (borrowed; packed before return). */
static void alarm_reply(api_call *call, const mvcc_alarm *alarms, size_t count)
{
    server_header sh;
    server_get_header(api_call_server(call), &sh);
    api_arena *arena = &call->arena;
    Etcdserverpb__AlarmResponse r;
    etcdserverpb__alarm_response__init(&r);
    r.header = api_header_to_pb(arena, &sh, sh.revision);
    Etcdserverpb__AlarmMember *ms = count ? api_arena_calloc(arena, count, sizeof(*ms)) : NULL;
    r.alarms = count ? api_arena_alloc(arena, count * sizeof(*r.alarms)) : NULL;
    if (r.header == NULL || (count && (ms == NULL || r.alarms == NULL))) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    for (size_t i = 0; i < count; i++) {
        etcdserverpb__alarm_member__init(&ms[i]);
        ms[i].memberid = alarms[i].member_id;
        ms[i].alarm = (Etcdserverpb__AlarmType)alarms[i].alarm;
        r.alarms[i] = &ms[i];
    }
    r.n_alarms = count;
    api_call_reply(call, &r.base);
}

static void handle_alarm(api_call *call, ProtobufCMessage *request)
{
    Etcdserverpb__AlarmRequest *pb = (Etcdserverpb__AlarmRequest *)request;
    if (pb->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        mvcc_alarm *alarms = NULL;
        size_t count = 0;
        fl_err err = server_alarms(api_call_server(call), &alarms, &count);
        if (err != FL_OK) {
            api_call_fail(call, api_status_from_err(err));
            return;
        }
        /* a type other than NONE lists only that type, as etcd */
        size_t kept = 0;
        for (size_t i = 0; i < count; i++)
            if (pb->alarm == ETCDSERVERPB__ALARM_TYPE__NONE ||
                (int)alarms[i].alarm == (int)pb->alarm)
                alarms[kept++] = alarms[i];
        alarm_reply(call, alarms, kept);
        free(alarms);
        return;
    }
    if (pb->alarm == ETCDSERVERPB__ALARM_TYPE__NONE ||
        (pb->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE &&
         pb->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE)) {
        alarm_reply(call, NULL, 0); /* etcd: nothing to do, an empty answer */
        return;
    }
    mvcc_alarm *asked = api_arena_alloc(&call->arena, sizeof(*asked));
    if (asked == NULL) {
        api_call_fail(call, api_status_from_err(FL_ERR_NOMEM));
        return;
    }
    asked->member_id = pb->memberid;
    asked->alarm = (mvcc_alarm_type)pb->alarm;
    call->handler_data = asked;
    mvcc_request req = {.type = MVCC_REQ_ALARM};
    req.u.alarm = (mvcc_alarm_req){
        pb->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE ? MVCC_ALARM_ACTIVATE
                                                                          : MVCC_ALARM_DEACTIVATE,
        pb->memberid, (mvcc_alarm_type)pb->alarm};
    call->in_server = true;
    fl_err err = server_write(api_call_server(call), &req, write_done, call);
    if (err != FL_OK) {
        call->in_server = false;
        api_call_fail(call, api_status_from_err(err));
    }
}

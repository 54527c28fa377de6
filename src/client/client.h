/* client: the C client library for the etcd v3 API (Flotilla or etcd 3.4).
 *
 * Owns: connections to one or more endpoints ("host:port" or
 * "http://host:port") over cleartext HTTP/2 with prior knowledge (nghttp2's
 * client session on libuv TCP), gRPC framing (5-byte length prefix,
 * grpc-timeout, grpc-status / grpc-message trailers), unary calls Range, Put,
 * DeleteRange, Txn, Compact, Status, MemberList, MemberAdd, MemberRemove,
 * MemberUpdate, MemberPromote and MoveLeader with many requests in flight on
 * one connection, per-call deadlines, failover to the next endpoint when a
 * connection cannot be made or is lost, and the mapping of a gRPC status plus
 * etcd's message text back to fl_err.
 * Must not: depend on server code (src/server, src/api, src/mvcc ...), retry a
 * call that may have been processed (a Put that may have been applied is never
 * sent twice; only streams the server refused with REFUSED_STREAM are queued
 * again, at most 3 times), or block inside the async API after client_open.
 *
 * MESSAGES. Requests and responses are the protobuf-c structs generated from
 * proto/rpc.proto ("rpc.pb-c.h": Etcdserverpb__RangeRequest, ...). The caller
 * builds a request (etcdserverpb__range_request__init(&req), set fields); the
 * library packs it before the call function returns, so the request may live on
 * the caller's stack. A response handed to the caller is owned by the caller and
 * freed with client_free_response() (protobuf_c_message_free_unpacked).
 *
 * TWO LAYERS.
 *  - Async (client_open / client_call): runs on a uv loop the caller owns and
 *    drives; a completion callback runs once per accepted call on that loop.
 *    Used by `flotilla bench` for thousands of requests in flight.
 *  - Blocking (client_sync_*): owns a private loop, one call at a time; for the
 *    CLI, tests and simple C programs. Not thread-safe: one client_sync per
 *    thread.
 *
 * BOUNDS. Requests in flight per connection (max_inflight_per_connection, and
 * never more than the server's SETTINGS_MAX_CONCURRENT_STREAMS: nghttp2 holds
 * the rest), requests waiting for a connection slot (max_queued; beyond it
 * client_call returns FL_ERR_BUSY), request and response message sizes, bytes
 * queued for writing per connection, and connection attempts (each endpoint
 * once per round; a failed round fails the waiting calls with
 * FL_ERR_UNAVAILABLE).
 *
 * ERRORS. Every call ends with a client_status: err is FL_OK or an fl_err;
 * grpc_code is the gRPC status code the server sent (-1 when no status arrived,
 * e.g. the connection failed or the deadline passed); message is the server's
 * grpc-message text (percent-decoded), e.g. "etcdserver: key is not provided",
 * or a client-side description. etcdctl prints "Error: " + message; so does the
 * flotilla CLI.
 */
#ifndef FL_CLIENT_H
#define FL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc.pb-c.h"
#include "util/error.h"

/* Bounds on the options (client_open rejects larger values with FL_ERR_INVALID). */
#define CLIENT_MAX_ENDPOINTS      16
#define CLIENT_MAX_CONNECTIONS    1024
#define CLIENT_MAX_INFLIGHT       4096    /* per connection */
#define CLIENT_MAX_QUEUED         1000000 /* calls waiting for a connection slot */
#define CLIENT_MESSAGE_BYTES      256     /* client_status.message, with the NUL */
#define CLIENT_REQUEST_BYTES_MAX  (64u << 20)
#define CLIENT_RESPONSE_BYTES_MAX (512u << 20)

typedef struct client_options {
    const char *const
        *endpoints;        /* "host:port" or "http://host:port"; names are resolved once, at open */
    size_t endpoint_count; /* 1..CLIENT_MAX_ENDPOINTS */
    uint32_t connections;  /* 0 = 1; connection i starts at endpoint i % endpoint_count */
    uint32_t max_inflight_per_connection; /* 0 = 1000 */
    uint32_t max_queued;                  /* 0 = 10000 */
    uint64_t dial_timeout_ms;             /* per connection attempt; 0 = 5000 */
    uint32_t max_response_bytes;          /* 0 = 64 MiB; at most CLIENT_RESPONSE_BYTES_MAX */
} client_options;

typedef struct client_status {
    fl_err err;
    int grpc_code; /* gRPC status code from the server; -1 when none arrived */
    char message[CLIENT_MESSAGE_BYTES];
} client_status;

/* The unary methods; each has a request and a response type in rpc.pb-c.h. */
typedef enum client_method {
    CLIENT_RANGE,          /* /etcdserverpb.KV/Range: RangeRequest -> RangeResponse */
    CLIENT_PUT,            /* /etcdserverpb.KV/Put */
    CLIENT_DELETE_RANGE,   /* /etcdserverpb.KV/DeleteRange */
    CLIENT_TXN,            /* /etcdserverpb.KV/Txn */
    CLIENT_COMPACT,        /* /etcdserverpb.KV/Compact: CompactionRequest -> CompactionResponse */
    CLIENT_STATUS,         /* /etcdserverpb.Maintenance/Status */
    CLIENT_MEMBER_LIST,    /* /etcdserverpb.Cluster/MemberList */
    CLIENT_MEMBER_ADD,     /* /etcdserverpb.Cluster/MemberAdd */
    CLIENT_MEMBER_REMOVE,  /* /etcdserverpb.Cluster/MemberRemove */
    CLIENT_MEMBER_UPDATE,  /* /etcdserverpb.Cluster/MemberUpdate */
    CLIENT_MEMBER_PROMOTE, /* /etcdserverpb.Cluster/MemberPromote */
    CLIENT_MOVE_LEADER,    /* /etcdserverpb.Maintenance/MoveLeader (only the leader takes it) */
    CLIENT_METHOD__COUNT
} client_method;

/* The gRPC path of a method, e.g. "/etcdserverpb.KV/Range". */
const char *client_method_path(client_method method);

/* Frees a response handed to the caller (NULL is fine). */
void client_free_response(void *response);

/* Maps a gRPC status code and etcd's message text to an fl_err: the text
 * decides where etcd has a specific error ("etcdserver: key is not provided" ->
 * FL_ERR_KEY_EMPTY, "... required revision has been compacted" ->
 * FL_ERR_COMPACTED, ...); otherwise the code does (4 -> FL_ERR_TIMEOUT,
 * 14 -> FL_ERR_UNAVAILABLE, 12 -> FL_ERR_UNIMPLEMENTED, 3 -> FL_ERR_INVALID,
 * ...). Code 0 is FL_OK whatever the text. */
fl_err client_error_from_grpc(int grpc_code, const char *message);

/* ---- async layer ------------------------------------------------------- */

typedef struct client client;

/* Completion of one call, on the loop thread. status is valid only during the
 * callback. On success response is the decoded message of the method's response
 * type, owned by the callee from then on (free with client_free_response); on
 * failure it is NULL. The callback may start new calls, and may call
 * client_close. */
typedef void (*client_done_fn)(void *ctx, const client_status *status, void *response);

/* Creates a client on loop; connects lazily, on the first call. On success *out
 * is owned by the caller and released with client_close. Endpoint names that
 * are not numeric addresses are resolved here (blocking getaddrinfo). */
fl_err client_open(uv_loop_t *loop, const client_options *options, client **out);

/* Starts one call. request must be a message of the method's request type; it
 * is packed before this returns. timeout_ms (0 = none) bounds the call from now
 * and is sent as grpc-timeout. Returns FL_OK when accepted: done then runs
 * exactly once, later, from the loop (never inside client_call). Returns an
 * error (FL_ERR_BUSY queue full, FL_ERR_TOO_LARGE, FL_ERR_STOPPED closing,
 * FL_ERR_NOMEM) when not accepted: done is not called. */
fl_err client_call(client *c, client_method method, const void *request, uint64_t timeout_ms,
                   client_done_fn done, void *ctx);

/* Calls in flight or waiting, across all connections. */
size_t client_outstanding(const client *c);

/* Stops the client: every outstanding call completes with FL_ERR_STOPPED
 * (possibly inside this function), connections close, then closed(ctx) runs
 * from the loop and the client is freed. closed may be NULL. */
void client_close(client *c, void (*closed)(void *ctx), void *ctx);

/* ---- blocking layer ---------------------------------------------------- */

typedef struct client_sync client_sync;

/* On success *out is owned by the caller and freed by client_sync_close. */
fl_err client_sync_open(const client_options *options, client_sync **out);
void client_sync_close(client_sync *sc);

/* One call, waiting for its end. Returns status->err. On FL_OK *response is the
 * decoded response, owned by the caller (client_free_response); otherwise
 * *response is NULL and status says why. */
fl_err client_sync_call(client_sync *sc, client_method method, const void *request,
                        uint64_t timeout_ms, void **response, client_status *status);

/* Typed conveniences over client_sync_call. */
fl_err client_sync_range(client_sync *sc, const Etcdserverpb__RangeRequest *req,
                         uint64_t timeout_ms, Etcdserverpb__RangeResponse **resp,
                         client_status *status);
fl_err client_sync_put(client_sync *sc, const Etcdserverpb__PutRequest *req, uint64_t timeout_ms,
                       Etcdserverpb__PutResponse **resp, client_status *status);
fl_err client_sync_delete_range(client_sync *sc, const Etcdserverpb__DeleteRangeRequest *req,
                                uint64_t timeout_ms, Etcdserverpb__DeleteRangeResponse **resp,
                                client_status *status);
fl_err client_sync_txn(client_sync *sc, const Etcdserverpb__TxnRequest *req, uint64_t timeout_ms,
                       Etcdserverpb__TxnResponse **resp, client_status *status);
fl_err client_sync_compact(client_sync *sc, const Etcdserverpb__CompactionRequest *req,
                           uint64_t timeout_ms, Etcdserverpb__CompactionResponse **resp,
                           client_status *status);
fl_err client_sync_status(client_sync *sc, uint64_t timeout_ms, Etcdserverpb__StatusResponse **resp,
                          client_status *status);
fl_err client_sync_member_list(client_sync *sc, uint64_t timeout_ms,
                               Etcdserverpb__MemberListResponse **resp, client_status *status);

/* Membership (etcd's Cluster service). Member ids are etcd's 64-bit ids.
 * peer_urls (n of them, 1..CLIENT_MAX_PEER_URLS) are checked first with
 * client_check_urls, as clientv3 does, so a malformed URL fails here with
 * FL_ERR_INVALID and etcd's text in status->message, and nothing is sent.
 * The server's refusals come back with etcd's texts, e.g. "etcdserver: member
 * not found" (FL_ERR_MEMBER_NOT_FOUND), "etcdserver: Peer URLs already exists"
 * (FL_ERR_PEER_URL_EXISTS), "etcdserver: can only promote a learner member"
 * (FL_ERR_MEMBER_NOT_LEARNER). None of these is retried: a change that timed
 * out may have been applied. */
fl_err client_sync_member_add(client_sync *sc, const char *const *peer_urls, size_t n,
                              bool is_learner, uint64_t timeout_ms,
                              Etcdserverpb__MemberAddResponse **resp, client_status *status);
fl_err client_sync_member_remove(client_sync *sc, uint64_t id, uint64_t timeout_ms,
                                 Etcdserverpb__MemberRemoveResponse **resp, client_status *status);
fl_err client_sync_member_update(client_sync *sc, uint64_t id, const char *const *peer_urls,
                                 size_t n, uint64_t timeout_ms,
                                 Etcdserverpb__MemberUpdateResponse **resp, client_status *status);
fl_err client_sync_member_promote(client_sync *sc, uint64_t id, uint64_t timeout_ms,
                                  Etcdserverpb__MemberPromoteResponse **resp,
                                  client_status *status);
/* Asks the member at the other end to hand leadership to target_id. Only the
 * leader accepts it (a follower answers "etcdserver: not leader"), so open sc
 * on the leader's endpoint alone: find it with client_sync_status, whose
 * response names the leader (etcdctl move-leader does the same). */
fl_err client_sync_move_leader(client_sync *sc, uint64_t target_id, uint64_t timeout_ms,
                               Etcdserverpb__MoveLeaderResponse **resp, client_status *status);

/* ---- helpers ----------------------------------------------------------- */

#define CLIENT_MAX_PEER_URLS 16

/* etcd's check of member URLs (types.NewURLs, run by clientv3 before
 * MemberAdd/MemberUpdate): each must be scheme://host:port with scheme http,
 * https, unix or unixs and no path. On the first bad one returns
 * FL_ERR_INVALID with etcd's text in err (capacity err_cap), e.g. "URL scheme
 * must be http, https, unix, or unixs: notaurl". n must be 1..CLIENT_MAX_PEER_URLS. */
fl_err client_check_urls(const char *const *urls, size_t n, char *err, size_t err_cap);

/* The range_end that makes [key, end) cover every key with prefix key (etcd's
 * GetPrefixRangeEnd): key with its last byte below 0xff incremented and the rest
 * cut; "\0" (all keys) when every byte is 0xff or key is empty. Writes at most
 * key_len bytes (1 for the all-keys case) to end, which must hold
 * max(key_len, 1) bytes; returns the length. */
size_t client_prefix_end(const uint8_t *key, size_t key_len, uint8_t *end);

#endif

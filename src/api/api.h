/* api: the etcd v3 gRPC services of one member.
 *
 * Owns: cleartext HTTP/2 (prior knowledge) on nghttp2 over libuv TCP, gRPC
 * framing (5-byte length prefix, grpc-status / grpc-message trailers),
 * protobuf-c decode/encode of etcd's messages, request validation and size
 * limits, and the one mapping from fl_err to etcd's gRPC codes and message
 * texts. Dispatches every /etcdserverpb.KV method, Maintenance/Status, Cluster/MemberList
 * to src/server; any other method answers UNIMPLEMENTED.
 * Must not: touch LMDB, the WAL or raft state directly; it only calls
 * server_* functions. A misbehaving connection (bad preface, garbage frames,
 * oversized message) is answered and/or closed without disturbing others.
 */
#ifndef FL_API_H
#define FL_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "server/server.h"
#include "util/error.h"

typedef struct api_grpc_server api_grpc_server;

typedef struct api_options {
    uint64_t max_request_bytes;      /* 0 = 1.5 MiB, etcd's default */
    uint32_t max_concurrent_streams; /* per connection; 0 = 1024 */
    uint32_t max_connections;        /* 0 = 4096 */
    /* Added by api (zero keeps the default): request bytes one connection may
     * buffer in calls not yet complete; 0 = max(64 MiB, 4 maximal messages). */
    uint64_t conn_buffer_bytes_max;
} api_options;

/* Listens on host:port (numeric IPv4/IPv6 host) and serves until closed.
 * On success *out is owned by the caller and freed by api_grpc_close.
 * Requests reach srv only through server_*; a server callback that arrives
 * after its client went away is accepted and its result freed. */
fl_err api_grpc_listen(uv_loop_t *loop, server *srv, const char *host, int port,
                       const api_options *options, api_grpc_server **out);

/* The port the listener is bound to (useful after listening on port 0). */
int api_grpc_port(const api_grpc_server *listener);

/* Stops listening, closes every connection, then calls closed(ctx) and frees
 * the listener. */
void api_grpc_close(api_grpc_server *listener, void (*closed)(void *ctx), void *ctx);

/* Counters for tests and metrics. writes < calls shows output batching;
 * read_pauses counts the times a connection stopped reading because its
 * output was full (backpressure). */
typedef struct api_stats {
    uint64_t connections_accepted;
    uint64_t connections_open;
    uint64_t calls;         /* streams opened */
    uint64_t writes;        /* uv_write calls */
    uint64_t read_pauses;   /* reads stopped on a full output buffer */
    uint64_t accept_errors; /* failed accepts (e.g. out of file descriptors) */
} api_stats;
void api_grpc_stats(const api_grpc_server *listener, api_stats *out);

/* The gRPC status code and etcd message text for an error (e.g.
 * FL_ERR_KEY_EMPTY -> 3 "etcdserver: key is not provided"). */
void api_error_status(fl_err err, int *grpc_code, const char **message);

#endif

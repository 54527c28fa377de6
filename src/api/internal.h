/* api/internal: what the HTTP/2 transport (http2.c) and the gRPC services
 * (service.c) share: the per-stream call object and the calls between them.
 *
 * A call lives from the HEADERS that open a stream until both the stream is
 * closed and no server_* callback is outstanding. When the stream or the
 * connection goes away while the server still holds the call as ctx, the call
 * is *detached* (conn == NULL): the server's callback then frees the result
 * and the call, and nothing is sent.
 */
#ifndef FL_API_INTERNAL_H
#define FL_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "api/api.h"
#include "api/arena.h"
#include "api/grpc_frame.h"
#include "api/status.h"

typedef struct api_conn api_conn;
typedef struct api_call api_call;
typedef struct api_method api_method;

/* etcd's gRPC server accepts messages up to --max-request-bytes plus this
 * (grpcOverheadBytes in etcd's embed/serve.go); larger ones get grpc-go's
 * ResourceExhausted "grpc: received message larger than max". */
#define API_GRPC_OVERHEAD_BYTES (512u * 1024u)
/* etcd compares --max-request-bytes with the raft entry (InternalRaftRequest:
 * the request plus a small header), so a write whose message is a few bytes
 * under the limit is already too large; measured against etcd 3.4: a
 * 9980-byte value with max 10000 is refused, 9000 accepted. */
#define API_RAFT_OVERHEAD_BYTES 16u

struct api_call {
    api_grpc_server *listener; /* valid only while attached */
    api_conn *conn;            /* NULL once detached */
    int32_t stream_id;
    api_call *prev, *next; /* in conn's list of calls, or the listener's free list */
    const api_method *method;
    api_status early; /* set at header time (unknown method, bad content-type) */
    bool has_early;
    bool request_done; /* END_STREAM received */
    bool responded;    /* a response or error was submitted */
    bool in_server;    /* a server_* callback is outstanding */
    bool bad_encoding; /* grpc-encoding other than identity */
    api_grpc_reader reader;
    api_arena arena;
    uint8_t *resp; /* owned: 5-byte prefix + packed message */
    size_t resp_len;
    size_t resp_cap;
    size_t resp_off;    /* bytes handed to nghttp2 */
    size_t counted;     /* request bytes counted in the connection's body_bytes */
    void *handler_data; /* a handler's own state for its callback (in arena); set before use */
};

/* ---- provided by service.c ---- */

/* Resolves a :path. Returns the method, or NULL and the status to answer
 * (UNIMPLEMENTED for unknown services and methods and for etcd methods that
 * Flotilla does not serve yet; its message is formatted in arena). */
const api_method *api_method_lookup(const char *path, size_t len, api_arena *arena,
                                    api_status *status);
/* The whole request message is in call->reader: decode it and serve it.
 * Replies now (api_call_reply / api_call_fail) or after a server callback. */
void api_call_dispatch(api_call *call);

/* ---- provided by http2.c ---- */

server *api_call_server(const api_call *call);
uint64_t api_call_max_request_bytes(const api_call *call);
/* Sends msg as the reply, with grpc-status 0. */
void api_call_reply(api_call *call, const ProtobufCMessage *msg);
/* Sends a trailers-only error reply. */
void api_call_fail(api_call *call, api_status status);
/* Called first thing in every server callback. Returns false when the call
 * was detached: it has then been freed and must not be touched. */
bool api_call_resume(api_call *call);

/* Percent-encodes a grpc-message value (gRPC spec: bytes outside 0x20..0x7e
 * and '%'). Returns the encoded length; writes at most cap bytes (cap >= 1,
 * always NUL-terminated, truncating if needed). */
size_t api_percent_encode(const char *in, char *out, size_t cap);

#endif

/* server/entry: what a normal Raft entry carries.
 *
 * Owns: the envelope of every normal entry's data: a kind byte, the id of the
 * request that proposed it (so the member that holds the client's call can
 * answer it when it applies the entry, whichever member proposed it to the
 * leader), and the kind's body. An empty entry is a new leader's no-op.
 * Must not: interpret an MVCC command (that is mvcc's payload, opaque here).
 *
 *   kind 1 MVCC     body: mvcc_request_encode() bytes
 *   kind 2 PUBLISH  body: u64 member id, str name, u8 n, str client_url*n
 *   kind 3 VERSION  body: str cluster version
 *   kind 4 MEMBER   body: u8 op, u64 member id, u8 learner, u8 n, str peer_url*n
 * str = u16 little-endian length + bytes. Decoding checks every length.
 */
#ifndef FL_SERVER_ENTRY_H
#define FL_SERVER_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/cluster.h"
#include "util/error.h"

typedef enum entry_kind {
    ENTRY_MVCC = 1,
    ENTRY_PUBLISH = 2,
    ENTRY_VERSION = 3,
    ENTRY_MEMBER = 4,
} entry_kind;

typedef enum entry_member_op {
    ENTRY_MEMBER_ADD = 1,
    ENTRY_MEMBER_REMOVE = 2,
    ENTRY_MEMBER_UPDATE = 3,
    ENTRY_MEMBER_PROMOTE = 4,
} entry_member_op;

#define ENTRY_HEADER_BYTES 9u /* kind + request id */

/* A decoded entry: body points into the entry's bytes (borrowed). */
typedef struct entry_view {
    entry_kind kind;
    uint64_t request_id;
    const uint8_t *body;
    size_t body_len;
} entry_view;

fl_err entry_decode(const uint8_t *data, size_t len, entry_view *out);

/* Builds kind + id + body into one malloc'ed buffer owned by the caller. */
fl_err entry_encode(entry_kind kind, uint64_t request_id, const uint8_t *body, size_t body_len,
                    uint8_t **out, size_t *out_len);

/* PUBLISH and MEMBER bodies, to and from a cluster_member (only the fields
 * the kind carries). encode: *out malloc'ed, owned by the caller. */
fl_err entry_publish_encode(const cluster_member *m, uint8_t **out, size_t *out_len);
fl_err entry_publish_decode(const uint8_t *body, size_t len, cluster_member *out);
fl_err entry_member_encode(entry_member_op op, const cluster_member *m, uint8_t **out,
                           size_t *out_len);
fl_err entry_member_decode(const uint8_t *body, size_t len, entry_member_op *op,
                           cluster_member *out);

#endif

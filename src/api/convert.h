/* api/convert: etcd protobuf messages <-> the mvcc request/result structs.
 *
 * Requests: the mvcc structs are borrowed views into the decoded protobuf
 * (keys and values are not copied); arrays a txn needs come from the call's
 * arena. The same checks etcd's v3rpc layer makes before a request reaches
 * the server (empty key, value/lease provided with ignore_*, sort options,
 * empty txn op) are made here and answered with etcd's status.
 * Responses: protobuf messages built in the arena that point into the mvcc
 * result (no copy); pack them before the result is freed.
 */
#ifndef FL_API_CONVERT_H
#define FL_API_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "api/arena.h"
#include "api/status.h"
#include "kv.pb-c.h"
#include "mvcc/mvcc.h"
#include "rpc.pb-c.h"
#include "server/server.h"

/* Deepest txn nesting accepted (a txn inside a txn's op is depth 2). The
 * decoder recurses once per level, so this bounds its stack use. */
#define API_TXN_DEPTH_MAX 32

typedef enum api_wire_check {
    API_WIRE_OK = 0,
    API_WIRE_MALFORMED,
    API_WIRE_TOO_DEEP
} api_wire_check;

/* Checks the nesting depth of an encoded TxnRequest without decoding it
 * (protobuf-c would recurse once per level before we could look). */
api_wire_check api_txn_wire_check(const uint8_t *data, size_t len, unsigned depth_max);

/* etcd 3.4 (gogo protobuf) tells a range_end sent on the wire with length 0
 * from an absent one: in a RangeRequest (alone or as a txn op) and in a
 * txn Compare, a present empty range_end means "every key >= key", like
 * "\0" (DeleteRange treats it as a single key). protobuf-c drops that
 * presence, so these walk the encoded request (already unpacked into pb
 * without error, txn depth already checked) and set such range_ends to "\0"
 * in pb. pb must live in an arena (nothing in it is freed one by one): the
 * "\0" is a static byte. */
void api_range_mark_from_key(const uint8_t *data, size_t len, Etcdserverpb__RangeRequest *pb);
void api_txn_mark_from_key(const uint8_t *data, size_t len, Etcdserverpb__TxnRequest *pb);

/* ---- requests ---- */
api_status api_range_from_pb(const Etcdserverpb__RangeRequest *pb, mvcc_range_req *out);
api_status api_put_from_pb(const Etcdserverpb__PutRequest *pb, mvcc_put_req *out);
api_status api_delete_from_pb(const Etcdserverpb__DeleteRangeRequest *pb, mvcc_delete_req *out);
api_status api_txn_from_pb(api_arena *arena, const Etcdserverpb__TxnRequest *pb, mvcc_txn_req *out);
api_status api_compact_from_pb(const Etcdserverpb__CompactionRequest *pb, mvcc_compact_req *out);
/* True when a txn has only range ops (etcd serves it as a read). */
bool api_txn_is_read_only(const mvcc_txn_req *txn);

/* ---- responses (NULL when the arena is out of memory) ---- */
Etcdserverpb__ResponseHeader *api_header_to_pb(api_arena *arena, const server_header *header,
                                               int64_t revision);
Etcdserverpb__RangeResponse *api_range_resp_to_pb(api_arena *arena, const mvcc_range_result *res,
                                                  Etcdserverpb__ResponseHeader *header);
Etcdserverpb__PutResponse *api_put_resp_to_pb(api_arena *arena, const mvcc_put_result *res,
                                              Etcdserverpb__ResponseHeader *header);
Etcdserverpb__DeleteRangeResponse *api_delete_resp_to_pb(api_arena *arena,
                                                         const mvcc_delete_result *res,
                                                         Etcdserverpb__ResponseHeader *header);
/* Nested responses carry a header with only the revision, as etcd's do:
 * a range its read revision, writes `revision` (the txn's). */
Etcdserverpb__TxnResponse *api_txn_resp_to_pb(api_arena *arena, const mvcc_txn_result *res,
                                              Etcdserverpb__ResponseHeader *header,
                                              int64_t revision);

#endif

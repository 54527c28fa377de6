/* api/error: the one mapping from fl_err to etcd's gRPC status.
 *
 * Codes and texts are etcd 3.4's (api/v3rpc/rpctypes/error.go), checked
 * against etcdctl 3.4 talking to etcd 3.4 where an etcdctl command can
 * provoke them. Errors etcd has no answer for (etcd exits on a failed disk
 * write or fsync; Flotilla's member stays up and fails the request) get a
 * message in the same style, chosen so a client can tell what happened.
 */
#include <assert.h>
#include <stddef.h>

#include "api/api.h"
#include "api/status.h"

static const struct {
    int code;
    const char *message;
} api_error_table[FL_ERR__COUNT] = {
    [FL_OK] = {API_GRPC_OK, ""},
    /* No etcd equivalent: a transient shortage on this member. */
    [FL_ERR_NOMEM] = {API_GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory"},
    /* etcd would exit on a failed backend write/fsync; the member stays up,
     * refuses writes (see server.h fatal) and says so. */
    [FL_ERR_IO] = {API_GRPC_INTERNAL, "etcdserver: storage I/O error"},
    /* Disk full: transient from the client's view (an operator frees space). */
    [FL_ERR_NOSPACE] = {API_GRPC_UNAVAILABLE, "etcdserver: no space left on device"},
    /* etcd's ErrGRPCCorrupt text. */
    [FL_ERR_CORRUPT] = {API_GRPC_DATA_LOSS, "etcdserver: corrupt cluster"},
    [FL_ERR_INVALID] = {API_GRPC_INVALID_ARGUMENT, "etcdserver: invalid request"},
    /* Put with ignore_value / ignore_lease on a missing key: ErrGRPCKeyNotFound. */
    [FL_ERR_NOT_FOUND] = {API_GRPC_INVALID_ARGUMENT, "etcdserver: key not found"},
    [FL_ERR_KEY_EMPTY] = {API_GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided"},
    [FL_ERR_COMPACTED] = {API_GRPC_OUT_OF_RANGE,
                          "etcdserver: mvcc: required revision has been compacted"},
    [FL_ERR_FUTURE_REV] = {API_GRPC_OUT_OF_RANGE,
                           "etcdserver: mvcc: required revision is a future revision"},
    [FL_ERR_DUPLICATE_KEY] = {API_GRPC_INVALID_ARGUMENT,
                              "etcdserver: duplicate key given in txn request"},
    [FL_ERR_TOO_MANY_OPS] = {API_GRPC_INVALID_ARGUMENT,
                             "etcdserver: too many operations in txn request"},
    [FL_ERR_TOO_LARGE] = {API_GRPC_INVALID_ARGUMENT, "etcdserver: request is too large"},
    [FL_ERR_LEASE_NOT_FOUND] = {API_GRPC_NOT_FOUND, "etcdserver: requested lease not found"},
    [FL_ERR_NO_SPACE_QUOTA] = {API_GRPC_RESOURCE_EXHAUSTED,
                               "etcdserver: mvcc: database space exceeded"},
    [FL_ERR_STOPPED] = {API_GRPC_UNAVAILABLE, "etcdserver: server stopped"},
    [FL_ERR_TIMEOUT] = {API_GRPC_UNAVAILABLE, "etcdserver: request timed out"},
    /* etcd's ErrGRPCUnhealthy: the member cannot reach what it needs. */
    [FL_ERR_UNAVAILABLE] = {API_GRPC_UNAVAILABLE, "etcdserver: unhealthy cluster"},
    [FL_ERR_UNIMPLEMENTED] = {API_GRPC_UNIMPLEMENTED, "etcdserver: not implemented"},
    /* etcd's ErrGRPCTooManyRequests (its proposal backlog limit). */
    [FL_ERR_BUSY] = {API_GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests"},
    [FL_ERR_NO_LEADER] = {API_GRPC_UNAVAILABLE, "etcdserver: no leader"},
    [FL_ERR_LEADER_CHANGED] = {API_GRPC_UNAVAILABLE, "etcdserver: leader changed"},
    [FL_ERR_NOT_LEADER] = {API_GRPC_FAILED_PRECONDITION, "etcdserver: not leader"},
    [FL_ERR_MEMBER_NOT_FOUND] = {API_GRPC_NOT_FOUND, "etcdserver: member not found"},
    /* etcd 3.4's text (not the "peerURL exists" its docs show) */
    [FL_ERR_PEER_URL_EXISTS] = {API_GRPC_FAILED_PRECONDITION,
                                "etcdserver: Peer URLs already exists"},
    [FL_ERR_MEMBER_ID_REMOVED] = {API_GRPC_FAILED_PRECONDITION, "etcdserver: ID removed"},
    [FL_ERR_MEMBER_NOT_LEARNER] = {API_GRPC_FAILED_PRECONDITION,
                                   "etcdserver: can only promote a learner member"},
    [FL_ERR_LEARNER_NOT_READY] = {API_GRPC_FAILED_PRECONDITION,
                                  "etcdserver: can only promote a learner member which is in sync "
                                  "with leader"},
    [FL_ERR_NOT_ENOUGH_STARTED] = {API_GRPC_FAILED_PRECONDITION,
                                   "etcdserver: re-configuration failed due to not enough started "
                                   "members"},
    [FL_ERR_TOO_MANY_LEARNERS] = {API_GRPC_FAILED_PRECONDITION,
                                  "etcdserver: too many learner members in cluster"},
    [FL_ERR_BAD_LEADER_TRANSFEREE] = {API_GRPC_FAILED_PRECONDITION,
                                      "etcdserver: bad leader transferee"},
};

void api_error_status(fl_err err, int *grpc_code, const char **message)
{
    if ((unsigned)err >= FL_ERR__COUNT || api_error_table[err].message == NULL) {
        /* Unknown to this table: etcd's togRPCError default is codes.Unknown. */
        *grpc_code = API_GRPC_UNKNOWN;
        *message = "etcdserver: unknown error";
        return;
    }
    *grpc_code = api_error_table[err].code;
    *message = api_error_table[err].message;
    assert((*grpc_code == API_GRPC_OK) == (err == FL_OK));
}

api_status api_status_from_err(fl_err err)
{
    api_status st;
    api_error_status(err, &st.code, &st.message);
    return st;
}

/* util/error: the one error enum of the project.
 *
 * Every fallible function returns fl_err (FL_OK on success) and hands results
 * back through out-parameters. The mapping to etcd's gRPC status codes and
 * message texts lives in one place, src/api; this header must not know gRPC.
 */
#ifndef FL_UTIL_ERROR_H
#define FL_UTIL_ERROR_H

typedef enum fl_err {
    FL_OK = 0,
    FL_ERR_NOMEM,           /* an allocation failed */
    FL_ERR_IO,              /* a read/write/fsync failed (errno-level detail is logged) */
    FL_ERR_NOSPACE,         /* the disk is full (ENOSPC/EDQUOT) */
    FL_ERR_CORRUPT,         /* bad checksum or impossible structure on disk */
    FL_ERR_INVALID,         /* malformed argument or request */
    FL_ERR_NOT_FOUND,       /* no such thing */
    FL_ERR_KEY_EMPTY,       /* etcd: key is not provided */
    FL_ERR_COMPACTED,       /* etcd: mvcc: required revision has been compacted */
    FL_ERR_FUTURE_REV,      /* etcd: mvcc: required revision is a future revision */
    FL_ERR_DUPLICATE_KEY,   /* etcd: duplicate key given in txn request */
    FL_ERR_TOO_MANY_OPS,    /* etcd: too many operations in txn request */
    FL_ERR_TOO_LARGE,       /* etcd: request is too large */
    FL_ERR_LEASE_NOT_FOUND, /* etcd: requested lease not found */
    FL_ERR_NO_SPACE_QUOTA,  /* etcd: mvcc: database space exceeded */
    FL_ERR_STOPPED,         /* the member is shutting down */
    FL_ERR_TIMEOUT,         /* a deadline passed */
    FL_ERR_UNAVAILABLE,     /* cannot reach a peer/endpoint */
    FL_ERR_UNIMPLEMENTED,   /* the method exists in etcd but not (yet) here */
    FL_ERR_BUSY,            /* a bounded queue is full; retry later */
    /* cluster (etcd's texts in src/api/error.c) */
    FL_ERR_NO_LEADER,          /* etcd: no leader */
    FL_ERR_LEADER_CHANGED,     /* etcd: leader changed */
    FL_ERR_NOT_LEADER,         /* etcd: not leader (MoveLeader on a follower) */
    FL_ERR_MEMBER_NOT_FOUND,   /* etcd: member not found */
    FL_ERR_PEER_URL_EXISTS,    /* etcd: peerURL exists */
    FL_ERR_MEMBER_ID_REMOVED,  /* etcd: ID removed */
    FL_ERR_MEMBER_NOT_LEARNER, /* etcd: can only promote a learner member */
    FL_ERR_LEARNER_NOT_READY,  /* etcd: can only promote a learner member which is in sync */
    FL_ERR_NOT_ENOUGH_STARTED, /* etcd: re-configuration failed due to not enough started members */
    FL_ERR_TOO_MANY_LEARNERS,  /* etcd: too many learner members in cluster */
    FL_ERR_BAD_LEADER_TRANSFEREE, /* etcd: bad leader transferee */
    FL_ERR__COUNT
} fl_err;

/* A short, stable, lower-case name for logs ("nospace", "corrupt", ...). */
const char *fl_err_name(fl_err err);

/* The one errno -> fl_err mapping: ENOSPC/EDQUOT -> FL_ERR_NOSPACE, ENOMEM ->
 * FL_ERR_NOMEM, anything else FL_ERR_IO. Read errno into a local before
 * logging (logging may change it) and pass that. */
fl_err fl_err_from_errno(int errnum);

#endif

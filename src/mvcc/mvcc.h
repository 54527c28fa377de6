/* mvcc: every version of every key, on LMDB.
 *
 * Owns: revisions (main, sub) as etcd has them, the key index, Range, Put,
 * DeleteRange, Txn and Compact semantics, the applied index, and the binary
 * encoding of write commands (the payload of a WAL/Raft entry).
 * Must not: know about the network, protobuf, gRPC, raft or the WAL.
 *
 * Threads. One thread at a time is the *applier*: it alone calls
 * mvcc_apply, mvcc_apply_noop, mvcc_batch_begin/commit/abort and
 * mvcc_put_meta (LMDB ties a write txn to the thread that began it, so a
 * batch begins, applies and commits on one thread). Any number of other
 * threads may at the same time call the *readers*: mvcc_range,
 * mvcc_hash_kv, mvcc_alarms, mvcc_get_meta, mvcc_db_size,
 * mvcc_applied_index, mvcc_current_revision, mvcc_compact_revision,
 * mvcc_compaction_pending, mvcc_snapshot_write and mvcc_sync; the applier may call them too.
 * Readers see committed state only (an open batch is invisible to them),
 * each call one consistent commit: a range's revisions come from the same
 * LMDB snapshot as its keys (each read takes its own read txn and reads the
 * state record in it). The getters read that state record too (in a pooled
 * read txn), so they never go backwards and never lag behind what a range
 * has already shown. The exceptions, for the applier's own bookkeeping:
 * mvcc_applied_index and mvcc_get_meta called by the thread that has a batch
 * open include that batch. mvcc_request_encode/validate are pure (any
 * thread). mvcc_open and mvcc_close must not overlap anything. A reader's
 * cost to the applier: none, except that commits wait while
 * mvcc_snapshot_write starts its copy (up to its first 1 MiB); a long read
 * (snapshot, hash) keeps LMDB from reusing pages freed after it began.
 *
 * Requests are *borrowed views*: every pointer in a request struct belongs to
 * the caller and must stay valid only for the duration of the call.
 * Results are *owned*: a result struct filled by this module owns all memory
 * it points to and is released with the matching *_free function (safe to
 * call on a zeroed struct, and twice).
 *
 * Durability: LMDB is opened without fsync (MDB_NOSYNC), or with
 * mvcc_options.durable_commits with MDB_NOMETASYNC; the WAL is the durable
 * record. Each apply stores the applied index in the same LMDB
 * transaction as its effects, so after a crash the caller replays the WAL
 * entries with index > mvcc_applied_index().
 *
 * Keys: any length etcd accepts. Keys longer than 480 bytes (LMDB's key
 * limit is 511) are stored under a prefix + sequence number; they work like
 * any other key, with a lookup cost that grows with the number of keys
 * sharing their first 480 bytes (docs/mvcc.md).
 *
 * Quota: a Put or a Txn with puts that would take the logical bytes of the
 * store to quota_bytes or more fails with FL_ERR_NO_SPACE_QUOTA. Logical
 * bytes: per stored version (put or tombstone) its record (29 bytes + key +
 * value, +8 for a key over 480 bytes) + 33 (index entry) + 64 (overhead);
 * kept in the replicated state, added by writes, removed by physical
 * compaction, so every member with the same log decides the same way (LMDB's
 * page counts would not). A full LMDB map is a store failure (FL_ERR_IO,
 * logged "LMDB map full"), never a request error: the map must be larger
 * than the quota (the default is 1.25 x quota or 8 GiB).
 */
#ifndef FL_MVCC_H
#define FL_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct mvcc_store mvcc_store;

typedef struct mvcc_options {
    /* LMDB map size; 0 = default (8 GiB, or 1.25 x quota if that is larger) */
    uint64_t map_size_bytes;
    /* writes fail with FL_ERR_NO_SPACE_QUOTA past this; 0 = default (2 GiB, etcd's) */
    uint64_t quota_bytes;
    /* Work units (records visited or versions removed) a Compact does in its
     * own apply; every later entry does 1/100 of it until the compaction is
     * physically done. 0 = default (10000). Part of the replicated
     * behaviour: every member must use the same value. */
    uint64_t compact_chunk;
    /* false (default): MDB_NOSYNC, commits are not fsynced; the WAL is the
     * durable record and a power loss between mvcc_sync calls can leave
     * data.mdb inconsistent on ext4 (docs/server.md, "Checkpoints").
     * true: MDB_NOMETASYNC, every commit fsyncs its data pages (not the meta
     * page): a crash or power loss can only undo the last commit(s), never
     * corrupt the file; mvcc_sync still makes the last commit durable.
     * Cost: one fdatasync per commit (docs/mvcc.md has measurements). */
    bool durable_commits;
} mvcc_options;

/* A byte string; borrowed in requests, owned (by the enclosing result) in results. */
typedef struct mvcc_bytes {
    const uint8_t *data;
    size_t len;
} mvcc_bytes;

typedef struct mvcc_kv {
    mvcc_bytes key;
    mvcc_bytes value;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} mvcc_kv;

/* ---- requests (borrowed) ------------------------------------------------ */

typedef enum { MVCC_SORT_NONE = 0, MVCC_SORT_ASCEND = 1, MVCC_SORT_DESCEND = 2 } mvcc_sort_order;
typedef enum {
    MVCC_SORT_BY_KEY = 0,
    MVCC_SORT_BY_VERSION = 1,
    MVCC_SORT_BY_CREATE = 2,
    MVCC_SORT_BY_MOD = 3,
    MVCC_SORT_BY_VALUE = 4
} mvcc_sort_target;

/* Same meaning as etcd's RangeRequest. range_end: empty = single key;
 * "\0" (len 1, byte 0) = every key >= key; otherwise [key, range_end).
 * revision <= 0 means the current revision. */
typedef struct mvcc_range_req {
    mvcc_bytes key;
    mvcc_bytes range_end;
    int64_t limit;
    int64_t revision;
    mvcc_sort_order sort_order;
    mvcc_sort_target sort_target;
    bool keys_only;
    bool count_only;
    int64_t min_mod_revision;
    int64_t max_mod_revision;
    int64_t min_create_revision;
    int64_t max_create_revision;
} mvcc_range_req;

typedef struct mvcc_put_req {
    mvcc_bytes key;
    mvcc_bytes value;
    int64_t lease;
    bool prev_kv;
    bool ignore_value;
    bool ignore_lease;
} mvcc_put_req;

typedef struct mvcc_delete_req {
    mvcc_bytes key;
    mvcc_bytes range_end;
    bool prev_kv;
} mvcc_delete_req;

typedef enum {
    MVCC_CMP_EQUAL = 0,
    MVCC_CMP_GREATER = 1,
    MVCC_CMP_LESS = 2,
    MVCC_CMP_NOT_EQUAL = 3
} mvcc_compare_result;
typedef enum {
    MVCC_CMP_VERSION = 0,
    MVCC_CMP_CREATE = 1,
    MVCC_CMP_MOD = 2,
    MVCC_CMP_VALUE = 3,
    MVCC_CMP_LEASE = 4
} mvcc_compare_target;

typedef struct mvcc_compare {
    mvcc_compare_result result;
    mvcc_compare_target target;
    mvcc_bytes key;
    mvcc_bytes range_end;
    int64_t number;   /* version, create/mod revision or lease, by target */
    mvcc_bytes value; /* for MVCC_CMP_VALUE */
} mvcc_compare;

typedef enum {
    MVCC_OP_RANGE = 1,
    MVCC_OP_PUT = 2,
    MVCC_OP_DELETE = 3,
    MVCC_OP_TXN = 4
} mvcc_op_type;

struct mvcc_txn_req;
typedef struct mvcc_op {
    mvcc_op_type type;
    union {
        mvcc_range_req range;
        mvcc_put_req put;
        mvcc_delete_req del;
        const struct mvcc_txn_req *txn;
    } u;
} mvcc_op;

typedef struct mvcc_txn_req {
    const mvcc_compare *compares;
    size_t compares_count;
    const mvcc_op *success;
    size_t success_count;
    const mvcc_op *failure;
    size_t failure_count;
} mvcc_txn_req;

/* physical is etcd's "answer only once the compaction is physically done".
 * It is carried in the entry but apply does not look at it: every member
 * compacts in the same bounded steps whatever it says (see compact_chunk).
 * The server honours it by answering once mvcc_compaction_pending() is
 * false. */
typedef struct mvcc_compact_req {
    int64_t revision;
    bool physical;
} mvcc_compact_req;

/* A write command: what goes into one WAL/Raft entry. */
typedef enum {
    MVCC_REQ_PUT = 1,
    MVCC_REQ_DELETE = 2,
    MVCC_REQ_TXN = 3,
    MVCC_REQ_COMPACT = 4
} mvcc_request_type;

/* Alarms (etcd's Maintenance.Alarm), replicated like the other commands.
 * MVCC_REQ_ALARM is a constant of the request type rather than a member of
 * the enum so that switches over the KV request types elsewhere (src/api)
 * build unchanged; handle it before such a switch. */
#define MVCC_REQ_ALARM ((mvcc_request_type)5)

typedef enum { MVCC_ALARM_ACTIVATE = 1, MVCC_ALARM_DEACTIVATE = 2 } mvcc_alarm_action;
typedef enum { MVCC_ALARM_NOSPACE = 1, MVCC_ALARM_CORRUPT = 2 } mvcc_alarm_type;

typedef struct mvcc_alarm_req {
    mvcc_alarm_action action;
    uint64_t member_id;
    mvcc_alarm_type alarm;
} mvcc_alarm_req;

typedef struct mvcc_request {
    mvcc_request_type type;
    union {
        mvcc_put_req put;
        mvcc_delete_req del;
        mvcc_txn_req txn;
        mvcc_compact_req compact;
        mvcc_alarm_req alarm;
    } u;
} mvcc_request;

/* ---- results (owned) ---------------------------------------------------- */

typedef struct mvcc_range_result {
    mvcc_kv *kvs;
    size_t kvs_count;
    bool more;
    int64_t count;
    int64_t revision; /* the store's current revision when read (header.revision) */
    void *arena;      /* private: memory behind kvs */
} mvcc_range_result;

typedef struct mvcc_put_result {
    bool has_prev_kv;
    mvcc_kv prev_kv;
} mvcc_put_result;

typedef struct mvcc_delete_result {
    int64_t deleted;
    mvcc_kv *prev_kvs;
    size_t prev_kvs_count;
} mvcc_delete_result;

struct mvcc_txn_result;
typedef struct mvcc_op_result {
    mvcc_op_type type;
    union {
        mvcc_range_result range;
        mvcc_put_result put;
        mvcc_delete_result del;
        struct mvcc_txn_result *txn;
    } u;
} mvcc_op_result;

typedef struct mvcc_txn_result {
    bool succeeded;
    mvcc_op_result *responses;
    size_t responses_count;
} mvcc_txn_result;

/* An alarm command's effect: changed is false when activating an alarm
 * already active or deactivating one that is not (etcd then lists no alarm
 * in its AlarmResponse; otherwise it lists the request's member and alarm). */
typedef struct mvcc_alarm_result {
    bool changed;
} mvcc_alarm_result;

/* What applying one command produced. revision is the store's revision after
 * the apply (etcd's header.revision). */
typedef struct mvcc_response {
    mvcc_request_type type;
    int64_t revision;
    union {
        mvcc_put_result put;
        mvcc_delete_result del;
        mvcc_txn_result txn;
        mvcc_alarm_result alarm;
    } u;
    void *arena; /* private */
} mvcc_response;

void mvcc_range_result_free(mvcc_range_result *result);
void mvcc_response_free(mvcc_response *response);

/* ---- the store ---------------------------------------------------------- */

/* Opens (creating if needed) the LMDB environment in `dir` (an existing
 * directory). On success *out owns the store; close with mvcc_close. */
fl_err mvcc_open(const char *dir, const mvcc_options *options, mvcc_store **out);
void mvcc_close(mvcc_store *store);

/* Makes every transaction committed before the call durable (LMDB is opened
 * with MDB_NOSYNC, so commits alone are not): one fdatasync of the data file
 * (mdb_env_sync(env, 1)). After FL_OK, a crash or power loss cannot take the
 * store below the applied index it had when the call started (assuming the
 * later transactions do not damage it; see docs/server.md on MDB_NOSYNC).
 * Errors: FL_ERR_NOSPACE (ENOSPC), FL_ERR_IO (anything else); then nothing is
 * known to be durable beyond what an earlier FL_OK covered.
 * Threads: a reader (see the top): it touches only the environment handle
 * (no transaction, no store state) and LMDB does not restrict mdb_env_sync
 * to the thread that writes (unlike transactions and mdb_env_close). */
fl_err mvcc_sync(mvcc_store *store);

/* The index of the last entry applied (0 for a new store): committed, or on
 * the applier inside a batch, including the batch. */
uint64_t mvcc_applied_index(const mvcc_store *store);
/* The current revision (1 for a new store, as etcd) and the compacted one (0 if none).
 * As etcd, a new store accepts a compaction at revision 0 once. */
int64_t mvcc_current_revision(const mvcc_store *store);
int64_t mvcc_compact_revision(const mvcc_store *store);
/* Whether old versions below the compact revision are still being removed
 * (the physical part of a Compact, done in steps by later applies). */
bool mvcc_compaction_pending(const mvcc_store *store);
/* Bytes of the LMDB file, and bytes in use (etcd's dbSize / dbSizeInUse). */
void mvcc_db_size(const mvcc_store *store, int64_t *size_bytes, int64_t *in_use_bytes);

/* Checks a request before it is proposed, with etcd's rules that need no
 * state: empty key (FL_ERR_KEY_EMPTY), duplicate key in a txn's put/delete ops
 * (FL_ERR_DUPLICATE_KEY), too many ops (FL_ERR_TOO_MANY_OPS: etcd's rule is
 * max(#compares, #success, #failure) > max_txn_ops, and a nested txn is held
 * to max_txn_ops minus its parent's count), and FL_ERR_INVALID for a put with
 * ignore_value and a value ("etcdserver: value is provided"), with
 * ignore_lease and a lease ("etcdserver: lease is provided"), an op of
 * unknown type, or an alarm with an unknown action or alarm type. The first failing check in etcd's
 * order names the error. Errors that depend on state (compacted, future revision, lease not found)
 * come from apply. */
fl_err mvcc_request_validate(const mvcc_request *request, size_t max_txn_ops);

/* Which etcd error an FL_ERR_INVALID from validation stands for. */
typedef enum {
    MVCC_INVALID_NONE = 0,
    MVCC_INVALID_VALUE_PROVIDED = 1, /* etcdserver: value is provided */
    MVCC_INVALID_LEASE_PROVIDED = 2, /* etcdserver: lease is provided */
    MVCC_INVALID_BAD_OP = 3          /* an op of unknown type (etcd: key not found) */
} mvcc_invalid_reason;

/* mvcc_request_validate, telling in *reason (may be NULL) what an
 * FL_ERR_INVALID means. */
fl_err mvcc_request_validate_reason(const mvcc_request *request, size_t max_txn_ops,
                                    mvcc_invalid_reason *reason);

/* Encodes a request into a self-contained byte string (the entry payload).
 * On success *out is malloc'ed and owned by the caller (free()). The format is
 * versioned by its first byte; decode rejects what it does not know. */
fl_err mvcc_request_encode(const mvcc_request *request, uint8_t **out, size_t *out_len);

/* Applies the command encoded in payload as entry `index` (which must be
 * mvcc_applied_index()+1, or a later one when entries without a payload were
 * skipped by mvcc_apply_noop). Deterministic: the same sequence of entries
 * gives the same bytes on every member, however they are batched.
 * Returns FL_OK and fills *response (owned by the caller, release with
 * mvcc_response_free), or a request-level error: FL_ERR_COMPACTED,
 * FL_ERR_FUTURE_REV, FL_ERR_LEASE_NOT_FOUND, FL_ERR_NOT_FOUND (put with
 * ignore_value/ignore_lease on a missing key), FL_ERR_KEY_EMPTY,
 * FL_ERR_NO_SPACE_QUOTA, or FL_ERR_CORRUPT for an undecodable payload: the
 * applied index still advances, nothing else changes (every member decides
 * the same way).
 * LMDB failures: FL_ERR_IO / FL_ERR_NOSPACE / FL_ERR_NOMEM mean the store
 * did not advance. A full LMDB map is FL_ERR_IO (a store failure: the server
 * must stop, not skip the entry; raise map_size_bytes and restart).
 * Inside a batch, any LMDB failure rolls the whole batch back at once: later
 * applies return the same error, and mvcc_batch_commit reports it.
 * An index <= mvcc_applied_index() gives FL_ERR_INVALID and no effect.
 * In a txn response, nested range results use the response's memory (their
 * arena is NULL) and carry the revision seen inside the txn, like etcd's
 * inner headers. */
fl_err mvcc_apply(mvcc_store *store, uint64_t index, const uint8_t *payload, size_t payload_len,
                  mvcc_response *response);

/* Batching: applies between mvcc_batch_begin and mvcc_batch_commit share one
 * LMDB write transaction (one commit per batch of entries, as the write path
 * wants). Without an open batch each apply commits its own transaction.
 * Responses from a batch must not be sent before mvcc_batch_commit returns
 * FL_OK; if it fails, the whole batch is rolled back (applied index included)
 * and the caller replays it later or stops. */
fl_err mvcc_batch_begin(mvcc_store *store);
fl_err mvcc_batch_commit(mvcc_store *store);
void mvcc_batch_abort(mvcc_store *store);

/* Advances the applied index over an entry that carries no command (a raft
 * no-op or configuration entry). */
fl_err mvcc_apply_noop(mvcc_store *store, uint64_t index);

/* The active alarms, sorted by (member_id, alarm), from the last committed
 * state. On FL_OK *out is malloc'ed and owned by the caller (free()), NULL
 * when *count is 0. Errors: FL_ERR_NOMEM, FL_ERR_IO, FL_ERR_CORRUPT.
 * While any NOSPACE alarm is active, applying a Put, or a Txn with a put in
 * either branch (nested txns included), fails with FL_ERR_NO_SPACE_QUOTA
 * (request-level: the index advances, nothing else changes), as etcd 3.4's
 * capped applier; deletes, compactions, reads, alarms still work. The server
 * proposes ACTIVATE {its member id, NOSPACE} after a write is refused for
 * quota (unless one is active), and Maintenance.Alarm DEACTIVATE disarms. */
typedef struct mvcc_alarm {
    uint64_t member_id;
    mvcc_alarm_type alarm;
} mvcc_alarm;
fl_err mvcc_alarms(mvcc_store *store, mvcc_alarm **out, size_t *count);

/* Server metadata (raft applied term, membership, configuration): a small
 * named record kept in the same LMDB as the applied index, so a snapshot
 * carries it and a crash keeps the two consistent. name: 1..200 bytes
 * (NUL-terminated); value: up to 64 KiB (len 0 allowed).
 * mvcc_put_meta writes in the open batch's txn (committed or rolled back
 * with it; a poisoned batch returns its error), or in a txn of its own
 * outside a batch. It does not move the applied index. Errors:
 * FL_ERR_INVALID (bad name/size), LMDB failures as for mvcc_apply (inside a
 * batch they poison it).
 * mvcc_get_meta returns an owned copy in *value (free(); never NULL on
 * FL_OK, even for len 0) or FL_ERR_NOT_FOUND. On the applier thread inside
 * a batch it sees the batch's writes; otherwise the last committed value. */
fl_err mvcc_put_meta(mvcc_store *store, const char *name, const void *value, size_t len);
fl_err mvcc_get_meta(const mvcc_store *store, const char *name, void **value, size_t *len);

/* Maintenance.HashKV: a CRC-32C over every key version with mod revision
 * <= revision (0 = the current one) that survives compaction at the
 * compacted revision, in revision order, in a canonical encoding (hash.c).
 * Members with the same applied log get the same hash however they were
 * batched, restarted, or how far their lazy compaction has got. Reads the last
 * committed state. Fills *compact_revision (0 if none) and *hash_revision
 * (the revision hashed up to). Errors: FL_ERR_COMPACTED (0 < revision <=
 * compacted, as etcd), FL_ERR_FUTURE_REV (revision > current),
 * FL_ERR_INVALID (revision < 0), FL_ERR_IO/FL_ERR_CORRUPT. Cost: a walk of
 * the whole rev DB up to revision. */
fl_err mvcc_hash_kv(mvcc_store *store, int64_t revision, uint32_t *hash, int64_t *compact_revision,
                    int64_t *hash_revision);

/* Snapshots.
 * mvcc_snapshot_write writes a consistent, compacted copy of the whole
 * environment (every version, the state, the server metadata) to fd, as an
 * LMDB data file, and reports in *applied_index the applied index it holds
 * (the last committed one when the copy began; an open batch is not in it).
 * It does not fsync fd. Threads: it may run on any thread, concurrently
 * with applies and reads (it uses its own LMDB read txn and threads); it
 * holds up commits only until the copy has begun (its first 1 MiB); while
 * it runs, LMDB cannot reuse pages freed after it began, so the file may
 * grow. It must not overlap mvcc_open/mvcc_close. Errors: FL_ERR_IO,
 * FL_ERR_NOSPACE, FL_ERR_NOMEM; then fd holds garbage.
 * mvcc_snapshot_install, with the store of db_dir closed (no mvcc_store open
 * on it, in any process), checks that snapshot_file holds a store
 * (FL_ERR_CORRUPT if not, nothing changed), fsyncs it, renames it over
 * db_dir/data.mdb, removes db_dir/lock.mdb and fsyncs db_dir: after a crash
 * db_dir holds the old store or the new one. snapshot_file must be on
 * db_dir's file system (FL_ERR_INVALID otherwise); it is consumed on
 * success. Then mvcc_open(db_dir) opens the snapshot's state. */
fl_err mvcc_snapshot_write(mvcc_store *store, int fd, uint64_t *applied_index);
fl_err mvcc_snapshot_install(const char *db_dir, const char *snapshot_file);

/* Reads, at req->revision or the current one, from the last committed state
 * (applies of a batch that is still open are not visible). Errors:
 * FL_ERR_KEY_EMPTY, FL_ERR_COMPACTED, FL_ERR_FUTURE_REV, FL_ERR_IO. On FL_OK
 * *result is owned by the caller; result->revision is the committed current
 * revision (etcd's header), also for a read of the past. */
fl_err mvcc_range(mvcc_store *store, const mvcc_range_req *req, mvcc_range_result *result);

#endif

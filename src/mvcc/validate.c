/* mvcc/validate: etcd's request checks that need no state
 * (etcdserver/api/v3rpc/key.go in etcd 3.4).
 *
 * Order matters because the first failure names the error:
 *   1. the op tree, in order: a txn first checks its size
 *      (max(#compares, #success, #failure) > max_txn_ops; a nested txn gets
 *      max_txn_ops minus its parent's count), then its compare keys, then
 *      each op (empty key; a put with ignore_value and a value, or
 *      ignore_lease and a lease);
 *   2. then duplicate keys: checkIntervals over success, then failure.
 *
 * checkIntervals: in one list of ops, a key put twice, or put and inside a
 * deleted interval, is a duplicate; nested txns' puts are collected (a key
 * put in both the then and the else of one nested txn is fine) and checked
 * against this level's deletes and earlier nested txns' deletes; deletes
 * never conflict with each other. Intervals are [key, range_end) with
 * range_end as given, so a from-key delete ("\0") is an empty interval and
 * conflicts with nothing, exactly as in etcd 3.4.
 */
#include <limits.h>
#include <string.h>

#include "mvcc/internal.h"

static int bytes_cmp(mvcc_bytes a, mvcc_bytes b)
{
    return mvcc_bytes_cmp(a.data, a.len, b.data, b.len);
}

static fl_err check_put(const mvcc_put_req *p, mvcc_invalid_reason *reason)
{
    if (p->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    if (p->ignore_value && p->value.len != 0) {
        *reason = MVCC_INVALID_VALUE_PROVIDED;
        return FL_ERR_INVALID;
    }
    if (p->ignore_lease && p->lease != 0) {
        *reason = MVCC_INVALID_LEASE_PROVIDED;
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

static fl_err check_txn(const mvcc_txn_req *t, long long max_ops, int depth,
                        mvcc_invalid_reason *reason);

static fl_err check_op(const mvcc_op *op, long long max_ops, int depth, mvcc_invalid_reason *reason)
{
    switch (op->type) {
    case MVCC_OP_RANGE:
        return op->u.range.key.len == 0 ? FL_ERR_KEY_EMPTY : FL_OK;
    case MVCC_OP_PUT:
        return check_put(&op->u.put, reason);
    case MVCC_OP_DELETE:
        return op->u.del.key.len == 0 ? FL_ERR_KEY_EMPTY : FL_OK;
    case MVCC_OP_TXN:
        if (op->u.txn == NULL) {
            break;
        }
        return check_txn(op->u.txn, max_ops, depth + 1, reason);
    }
    *reason = MVCC_INVALID_BAD_OP;
    return FL_ERR_INVALID;
}

static fl_err check_txn(const mvcc_txn_req *t, long long max_ops, int depth,
                        mvcc_invalid_reason *reason)
{
    if (depth > 64) {
        return FL_ERR_TOO_MANY_OPS;
    }
    size_t opc = t->compares_count;
    if (opc < t->success_count) {
        opc = t->success_count;
    }
    if (opc < t->failure_count) {
        opc = t->failure_count;
    }
    if (max_ops < 0 || opc > (unsigned long long)max_ops) {
        return FL_ERR_TOO_MANY_OPS;
    }
    for (size_t i = 0; i < t->compares_count; i++) {
        if (t->compares[i].key.len == 0) {
            return FL_ERR_KEY_EMPTY;
        }
    }
    const mvcc_op *lists[2] = {t->success, t->failure};
    size_t counts[2] = {t->success_count, t->failure_count};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            fl_err err = check_op(&lists[l][i], max_ops - (long long)opc, depth, reason);
            if (err != FL_OK) {
                return err;
            }
        }
    }
    return FL_OK;
}

/* ---- duplicate keys ------------------------------------------------------ */

typedef struct key_set {
    mvcc_bytes *items;
    size_t count;
} key_set;

typedef struct interval_set {
    const mvcc_delete_req **items;
    size_t count;
} interval_set;

static bool set_has(const key_set *s, mvcc_bytes k)
{
    for (size_t i = 0; i < s->count; i++) {
        if (bytes_cmp(s->items[i], k) == 0) {
            return true;
        }
    }
    return false;
}

/* Every set of one level is bounded by the ops below it, so arrays sized
 * by the subtree's op count never overflow. */
static size_t tree_ops(const mvcc_op *ops, size_t n)
{
    size_t total = n;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == MVCC_OP_TXN && ops[i].u.txn != NULL) {
            total += tree_ops(ops[i].u.txn->success, ops[i].u.txn->success_count);
            total += tree_ops(ops[i].u.txn->failure, ops[i].u.txn->failure_count);
        }
    }
    return total;
}

/* A put of k against a delete [key, range_end), or the point key. */
static bool deleted_by(const mvcc_delete_req *d, mvcc_bytes k)
{
    if (d->range_end.len == 0) {
        return bytes_cmp(d->key, k) == 0;
    }
    return bytes_cmp(d->key, k) <= 0 && bytes_cmp(k, d->range_end) < 0;
}

static bool dels_hit(const interval_set *dels, mvcc_bytes k)
{
    for (size_t i = 0; i < dels->count; i++) {
        if (deleted_by(dels->items[i], k)) {
            return true;
        }
    }
    return false;
}

static fl_err check_intervals(mvcc_arena *arena, const mvcc_op *ops, size_t n, key_set *puts_out,
                              interval_set *dels_out)
{
    size_t cap = tree_ops(ops, n);
    key_set puts = {mvcc_arena_alloc(arena, cap * sizeof(mvcc_bytes)), 0};
    interval_set dels = {mvcc_arena_alloc(arena, cap * sizeof(mvcc_delete_req *)), 0};
    if (puts.items == NULL || dels.items == NULL) {
        return FL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == MVCC_OP_DELETE) {
            dels.items[dels.count++] = &ops[i].u.del;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != MVCC_OP_TXN || ops[i].u.txn == NULL) {
            continue;
        }
        const mvcc_txn_req *t = ops[i].u.txn;
        key_set puts_then, puts_else;
        interval_set dels_then, dels_else;
        fl_err err = check_intervals(arena, t->success, t->success_count, &puts_then, &dels_then);
        if (err == FL_OK) {
            err = check_intervals(arena, t->failure, t->failure_count, &puts_else, &dels_else);
        }
        if (err != FL_OK) {
            return err;
        }
        for (size_t j = 0; j < puts_then.count; j++) {
            mvcc_bytes k = puts_then.items[j];
            if (set_has(&puts, k) || dels_hit(&dels, k)) {
                return FL_ERR_DUPLICATE_KEY;
            }
            puts.items[puts.count++] = k;
        }
        for (size_t j = 0; j < puts_else.count; j++) {
            mvcc_bytes k = puts_else.items[j];
            bool seen = set_has(&puts, k);
            if (seen && !set_has(&puts_then, k)) {
                return FL_ERR_DUPLICATE_KEY;
            }
            if (dels_hit(&dels, k)) {
                return FL_ERR_DUPLICATE_KEY;
            }
            if (!seen) {
                puts.items[puts.count++] = k;
            }
        }
        for (size_t j = 0; j < dels_then.count; j++) {
            dels.items[dels.count++] = dels_then.items[j];
        }
        for (size_t j = 0; j < dels_else.count; j++) {
            dels.items[dels.count++] = dels_else.items[j];
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != MVCC_OP_PUT) {
            continue;
        }
        mvcc_bytes k = ops[i].u.put.key;
        if (set_has(&puts, k) || dels_hit(&dels, k)) {
            return FL_ERR_DUPLICATE_KEY;
        }
        puts.items[puts.count++] = k;
    }
    *puts_out = puts;
    *dels_out = dels;
    return FL_OK;
}

fl_err mvcc_request_validate_reason(const mvcc_request *request, size_t max_txn_ops,
                                    mvcc_invalid_reason *reason)
{
    mvcc_invalid_reason ignored;
    if (reason == NULL) {
        reason = &ignored;
    }
    *reason = MVCC_INVALID_NONE;
    switch ((int)request->type) {
    case MVCC_REQ_PUT:
        return check_put(&request->u.put, reason);
    case MVCC_REQ_DELETE:
        return request->u.del.key.len == 0 ? FL_ERR_KEY_EMPTY : FL_OK;
    case MVCC_REQ_COMPACT:
        return FL_OK;
    case MVCC_REQ_ALARM: {
        const mvcc_alarm_req *a = &request->u.alarm;
        if ((a->action != MVCC_ALARM_ACTIVATE && a->action != MVCC_ALARM_DEACTIVATE) ||
            (a->alarm != MVCC_ALARM_NOSPACE && a->alarm != MVCC_ALARM_CORRUPT)) {
            *reason = MVCC_INVALID_BAD_OP;
            return FL_ERR_INVALID;
        }
        return FL_OK;
    }
    case MVCC_REQ_TXN:
        break;
    default:
        *reason = MVCC_INVALID_BAD_OP;
        return FL_ERR_INVALID;
    }
    const mvcc_txn_req *t = &request->u.txn;
    long long max_ops = max_txn_ops > (size_t)LLONG_MAX ? LLONG_MAX : (long long)max_txn_ops;
    fl_err err = check_txn(t, max_ops, 0, reason);
    if (err != FL_OK) {
        return err;
    }
    mvcc_arena *arena = mvcc_arena_new(); /* freed below */
    if (arena == NULL) {
        return FL_ERR_NOMEM;
    }
    key_set puts;
    interval_set dels;
    err = check_intervals(arena, t->success, t->success_count, &puts, &dels);
    if (err == FL_OK) {
        err = check_intervals(arena, t->failure, t->failure_count, &puts, &dels);
    }
    mvcc_arena_free(arena);
    return err;
}

fl_err mvcc_request_validate(const mvcc_request *request, size_t max_txn_ops)
{
    return mvcc_request_validate_reason(request, max_txn_ops, NULL);
}

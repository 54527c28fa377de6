/* mvcc/txn: etcd 3.4's Txn.
 *
 * As etcd's applierV3backend.Txn: every compare of the whole tree (the top
 * txn and the nested txns on the branches that will run) is evaluated first,
 * against the state before the txn; that gives a path of branch choices in
 * pre-order. Then, along that path, puts are checked (ignore_* needs the key,
 * the lease must exist) if the txn writes anywhere, and ranges are checked
 * (future / compacted revision). Only then are the ops run, in order, at one
 * main revision; a range inside sees the writes made before it.
 */
#include <assert.h>
#include <string.h>

#include "mvcc/internal.h"

static bool txn_has_writes(const mvcc_txn_req *t)
{
    const mvcc_op *lists[2] = {t->success, t->failure};
    size_t counts[2] = {t->success_count, t->failure_count};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            const mvcc_op *op = &lists[l][i];
            if (op->type == MVCC_OP_PUT || op->type == MVCC_OP_DELETE) {
                return true;
            }
            if (op->type == MVCC_OP_TXN && op->u.txn != NULL && txn_has_writes(op->u.txn)) {
                return true;
            }
        }
    }
    return false;
}

static size_t txn_count_nodes(const mvcc_txn_req *t)
{
    size_t n = 1;
    const mvcc_op *lists[2] = {t->success, t->failure};
    size_t counts[2] = {t->success_count, t->failure_count};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            if (lists[l][i].type == MVCC_OP_TXN && lists[l][i].u.txn != NULL) {
                n += txn_count_nodes(lists[l][i].u.txn);
            }
        }
    }
    return n;
}

static bool compare_result(const mvcc_compare *c, int r)
{
    switch (c->result) {
    case MVCC_CMP_EQUAL:
        return r == 0;
    case MVCC_CMP_NOT_EQUAL:
        return r != 0;
    case MVCC_CMP_GREATER:
        return r > 0;
    case MVCC_CMP_LESS:
        return r < 0;
    }
    return true;
}

/* One kv against one compare; hit NULL is the zero kv of a missing key. */
static fl_err compare_hit(const mvcc_view *view, const mvcc_compare *c, mvcc_hit *hit, bool *ok)
{
    int r = 0;
    if ((c->target == MVCC_CMP_VALUE || c->target == MVCC_CMP_LEASE) && hit != NULL &&
        !hit->has_rec) {
        fl_err err = mvcc_rec_get(view, hit->dup.main, hit->dup.sub, &hit->rec);
        if (err != FL_OK) {
            return err;
        }
        hit->has_rec = true;
    }
    switch (c->target) {
    case MVCC_CMP_VALUE:
        assert(hit != NULL);
        r = mvcc_bytes_cmp(hit->rec.value, hit->rec.value_len, c->value.data, c->value.len);
        break;
    case MVCC_CMP_VERSION:
        r = mvcc_i64_cmp(hit ? hit->dup.version : 0, c->number);
        break;
    case MVCC_CMP_CREATE:
        r = mvcc_i64_cmp(hit ? hit->dup.create : 0, c->number);
        break;
    case MVCC_CMP_MOD:
        r = mvcc_i64_cmp(hit ? hit->dup.main : 0, c->number);
        break;
    case MVCC_CMP_LEASE:
        r = mvcc_i64_cmp(hit ? hit->rec.lease : 0, c->number);
        break;
    }
    *ok = compare_result(c, r);
    return FL_OK;
}

/* etcd's applyCompare: every key in range must pass; an empty range compares
 * the zero kv, except VALUE, which then fails. */
static fl_err compare_one(mvcc_wctx *w, const mvcc_compare *c, bool *ok)
{
    *ok = false;
    if (c->key.len == 0) {
        return FL_OK; /* etcd's range on an empty key finds nothing usable */
    }
    int64_t total = 0;
    fl_err err = mvcc_scan(w->store, w->view, c->key, c->range_end, INT64_MAX, SIZE_MAX, &total);
    if (err != FL_OK) {
        return err;
    }
    mvcc_hits *hits = w->view->hits;
    if (hits->count == 0) {
        if (c->target == MVCC_CMP_VALUE) {
            return FL_OK;
        }
        return compare_hit(w->view, c, NULL, ok);
    }
    for (size_t i = 0; i < hits->count; i++) {
        err = compare_hit(w->view, c, &hits->items[i], ok);
        if (err != FL_OK || !*ok) {
            return err;
        }
    }
    return FL_OK;
}

typedef struct txn_path {
    bool *taken; /* success branch taken, per txn node in pre-order */
    size_t count;
    size_t next;
} txn_path;

static fl_err compare_to_path(mvcc_wctx *w, const mvcc_txn_req *t, txn_path *path)
{
    assert(path->next < path->count);
    bool ok = true;
    for (size_t i = 0; i < t->compares_count && ok; i++) {
        fl_err err = compare_one(w, &t->compares[i], &ok);
        if (err != FL_OK) {
            return err;
        }
    }
    path->taken[path->next++] = ok;
    const mvcc_op *ops = ok ? t->success : t->failure;
    size_t n = ok ? t->success_count : t->failure_count;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == MVCC_OP_TXN && ops[i].u.txn != NULL) {
            fl_err err = compare_to_path(w, ops[i].u.txn, path);
            if (err != FL_OK) {
                return err;
            }
        }
    }
    return FL_OK;
}

typedef fl_err (*op_check_fn)(mvcc_wctx *w, const mvcc_op *op);

static fl_err check_put(mvcc_wctx *w, const mvcc_op *op)
{
    if (op->type != MVCC_OP_PUT) {
        return FL_OK;
    }
    const mvcc_put_req *put = &op->u.put;
    if (put->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    /* etcd's txn checks the key for ignore_* first, then the lease */
    fl_err err = mvcc_put_check_exists(w, put);
    return err == FL_OK ? mvcc_lease_check(w->store, put->lease) : err;
}

static fl_err check_range(mvcc_wctx *w, const mvcc_op *op)
{
    if (op->type == MVCC_OP_DELETE && op->u.del.key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    if (op->type != MVCC_OP_RANGE) {
        return FL_OK;
    }
    const mvcc_range_req *r = &op->u.range;
    if (r->key.len == 0) {
        return FL_ERR_KEY_EMPTY;
    }
    /* etcd's checkRequestRange: note a negative revision is "compacted"
     * here (it is below the initial compact revision -1 or any later one). */
    if (r->revision == 0) {
        return FL_OK;
    }
    if (r->revision > w->begin_revision) {
        return FL_ERR_FUTURE_REV;
    }
    if (r->revision < w->store->work.compact_revision) {
        return FL_ERR_COMPACTED;
    }
    return FL_OK;
}

static fl_err check_requests(mvcc_wctx *w, const mvcc_txn_req *t, txn_path *path, op_check_fn f)
{
    assert(path->next < path->count);
    bool ok = path->taken[path->next++];
    const mvcc_op *ops = ok ? t->success : t->failure;
    size_t n = ok ? t->success_count : t->failure_count;
    for (size_t i = 0; i < n; i++) {
        fl_err err;
        if (ops[i].type == MVCC_OP_TXN) {
            if (ops[i].u.txn == NULL) {
                return FL_ERR_INVALID;
            }
            err = check_requests(w, ops[i].u.txn, path, f);
        } else {
            err = f(w, &ops[i]);
        }
        if (err != FL_OK) {
            return err;
        }
    }
    return FL_OK;
}

static fl_err execute(mvcc_wctx *w, const mvcc_txn_req *t, txn_path *path, mvcc_txn_result *res)
{
    assert(path->next < path->count);
    bool ok = path->taken[path->next++];
    const mvcc_op *ops = ok ? t->success : t->failure;
    size_t n = ok ? t->success_count : t->failure_count;
    res->succeeded = ok;
    res->responses = NULL;
    res->responses_count = 0;
    if (n == 0) {
        return FL_OK;
    }
    mvcc_op_result *out = mvcc_arena_alloc(w->arena, n * sizeof *out);
    if (out == NULL) {
        return FL_ERR_NOMEM;
    }
    memset(out, 0, n * sizeof *out);
    res->responses = out;
    res->responses_count = n;
    for (size_t i = 0; i < n; i++) {
        const mvcc_op *op = &ops[i];
        out[i].type = op->type;
        fl_err err = FL_OK;
        switch (op->type) {
        case MVCC_OP_RANGE: {
            int64_t in_txn_rev = w->begin_revision + (w->sub > 0 ? 1 : 0);
            err = mvcc_range_in(w->store, w->view, &op->u.range, in_txn_rev,
                                w->store->work.compact_revision, w->arena, &out[i].u.range);
            break;
        }
        case MVCC_OP_PUT:
            err = mvcc_write_put(w, &op->u.put, &out[i].u.put);
            break;
        case MVCC_OP_DELETE:
            err = mvcc_write_delete(w, &op->u.del, &out[i].u.del);
            break;
        case MVCC_OP_TXN: {
            mvcc_txn_result *sub = mvcc_arena_alloc(w->arena, sizeof *sub);
            if (sub == NULL) {
                return FL_ERR_NOMEM;
            }
            memset(sub, 0, sizeof *sub);
            out[i].u.txn = sub;
            err = execute(w, op->u.txn, path, sub);
            break;
        }
        default:
            err = FL_ERR_INVALID;
        }
        if (err != FL_OK) {
            return err;
        }
    }
    return FL_OK;
}

static fl_err check_shapes(const mvcc_txn_req *t, int depth)
{
    if (depth > 64) {
        return FL_ERR_INVALID;
    }
    if ((t->compares_count > 0 && t->compares == NULL) ||
        (t->success_count > 0 && t->success == NULL) ||
        (t->failure_count > 0 && t->failure == NULL)) {
        return FL_ERR_INVALID;
    }
    for (size_t i = 0; i < t->compares_count; i++) {
        const mvcc_compare *c = &t->compares[i];
        if (c->key.len == 0) {
            return FL_ERR_KEY_EMPTY;
        }
        if ((unsigned)c->result > MVCC_CMP_NOT_EQUAL || (unsigned)c->target > MVCC_CMP_LEASE) {
            return FL_ERR_INVALID;
        }
    }
    const mvcc_op *lists[2] = {t->success, t->failure};
    size_t counts[2] = {t->success_count, t->failure_count};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            const mvcc_op *op = &lists[l][i];
            if (op->type < MVCC_OP_RANGE || op->type > MVCC_OP_TXN ||
                (op->type == MVCC_OP_TXN && op->u.txn == NULL)) {
                return FL_ERR_INVALID;
            }
            if (op->type == MVCC_OP_TXN) {
                fl_err err = check_shapes(op->u.txn, depth + 1);
                if (err != FL_OK) {
                    return err;
                }
            }
        }
    }
    return FL_OK;
}

fl_err mvcc_apply_txn(mvcc_wctx *w, const mvcc_txn_req *req, mvcc_txn_result *result)
{
    memset(result, 0, sizeof *result);
    /* Guards apply against requests that skipped mvcc_request_validate. */
    fl_err err = check_shapes(req, 0);
    if (err != FL_OK) {
        return err;
    }
    txn_path path = {.count = txn_count_nodes(req)};
    path.taken = mvcc_arena_alloc(w->store->scratch, path.count * sizeof(bool));
    if (path.taken == NULL) {
        return FL_ERR_NOMEM;
    }
    err = compare_to_path(w, req, &path);
    if (err != FL_OK) {
        return err;
    }
    if (txn_has_writes(req)) {
        path.next = 0;
        err = check_requests(w, req, &path, check_put);
        if (err != FL_OK) {
            return err;
        }
    }
    path.next = 0;
    err = check_requests(w, req, &path, check_range);
    if (err != FL_OK) {
        return err;
    }
    path.next = 0;
    return execute(w, req, &path, result);
}

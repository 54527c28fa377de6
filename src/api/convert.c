/* api/convert: see convert.h. */
#include "api/convert.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* ---- wire pre-check ------------------------------------------------------- */

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end) {
            return false;
        }
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* One field of an encoded message: its number and, for length-delimited
 * fields, the payload. */
typedef struct wire_field {
    uint64_t number;
    bool delimited;
    const uint8_t *data;
    size_t len;
} wire_field;

/* Reads the field at *p; false at the end or on malformed input. */
static bool wire_next(const uint8_t **p, const uint8_t *end, wire_field *f)
{
    uint64_t key;
    uint64_t v;
    if (*p >= end || !wire_varint(p, end, &key)) {
        return false;
    }
    f->number = key >> 3;
    f->delimited = false;
    switch (key & 7u) {
    case 0:
        return wire_varint(p, end, &v);
    case 1:
    case 5: {
        size_t n = (key & 7u) == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n) {
            return false;
        }
        *p += n;
        return true;
    }
    case 2:
        if (!wire_varint(p, end, &v) || v > (uint64_t)(end - *p)) {
            return false;
        }
        f->delimited = true;
        f->data = *p;
        f->len = (size_t)v;
        *p += v;
        return true;
    default:
        return false;
    }
}

static api_wire_check wire_txn(const uint8_t *p, const uint8_t *end, unsigned depth,
                               unsigned depth_max);

/* Walks one message's fields; for each length-delimited field that holds a
 * txn-carrying submessage (TxnRequest.success/failure = RequestOp,
 * RequestOp.request_txn = TxnRequest) descends one level. */
static api_wire_check wire_message(const uint8_t *p, const uint8_t *end, bool is_txn,
                                   unsigned depth, unsigned depth_max)
{
    wire_field f;
    while (p < end) {
        if (!wire_next(&p, end, &f)) {
            return API_WIRE_MALFORMED;
        }
        if (!f.delimited) {
            continue;
        }
        api_wire_check rc = API_WIRE_OK;
        if (is_txn && (f.number == 2 || f.number == 3)) {
            rc = wire_message(f.data, f.data + f.len, false, depth, depth_max);
        } else if (!is_txn && f.number == 4) {
            rc = wire_txn(f.data, f.data + f.len, depth + 1, depth_max);
        }
        if (rc != API_WIRE_OK) {
            return rc;
        }
    }
    return API_WIRE_OK;
}

static api_wire_check wire_txn(const uint8_t *p, const uint8_t *end, unsigned depth,
                               unsigned depth_max)
{
    if (depth > depth_max) {
        return API_WIRE_TOO_DEEP;
    }
    return wire_message(p, end, true, depth, depth_max);
}

api_wire_check api_txn_wire_check(const uint8_t *data, size_t len, unsigned depth_max)
{
    if (len == 0) {
        return API_WIRE_OK;
    }
    return wire_txn(data, data + len, 1, depth_max);
}

/* ---- present but empty range_end ------------------------------------------ */

/* True when the last occurrence of bytes field `number` in the message is
 * present with length 0. */
static bool wire_last_is_empty(const uint8_t *data, size_t len, uint64_t number)
{
    const uint8_t *p = data;
    const uint8_t *end = data + len;
    wire_field f;
    bool empty = false;
    while (wire_next(&p, end, &f)) {
        if (f.number == number && f.delimited) {
            empty = f.len == 0;
        }
    }
    return empty;
}

static uint8_t from_key_byte[1] = {0}; /* never written: pb lives in an arena */

static void mark_from_key(ProtobufCBinaryData *range_end, const uint8_t *data, size_t len,
                          uint64_t number)
{
    if (range_end->len == 0 && wire_last_is_empty(data, len, number)) {
        range_end->data = from_key_byte;
        range_end->len = 1;
    }
}

void api_range_mark_from_key(const uint8_t *data, size_t len, Etcdserverpb__RangeRequest *pb)
{
    mark_from_key(&pb->range_end, data, len, 2); /* RangeRequest.range_end */
}

static void op_mark_from_key(const uint8_t *data, size_t len, Etcdserverpb__RequestOp *op)
{
    const uint8_t *p = data;
    const uint8_t *end = data + len;
    wire_field f;
    while (wire_next(&p, end, &f)) {
        if (!f.delimited) {
            continue;
        }
        if (f.number == 1 && op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) {
            api_range_mark_from_key(f.data, f.len, op->request_range);
        } else if (f.number == 4 &&
                   op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            /* depth bounded by api_txn_wire_check before the unpack */
            api_txn_mark_from_key(f.data, f.len, op->request_txn);
        }
    }
}

void api_txn_mark_from_key(const uint8_t *data, size_t len, Etcdserverpb__TxnRequest *pb)
{
    /* protobuf-c appends repeated message fields in wire order, so the k-th
     * occurrence of a field is element k of its array. */
    size_t compares = 0;
    size_t success = 0;
    size_t failure = 0;
    const uint8_t *p = data;
    const uint8_t *end = data + len;
    wire_field f;
    while (wire_next(&p, end, &f)) {
        if (!f.delimited) {
            continue;
        }
        if (f.number == 1 && compares < pb->n_compare) {
            mark_from_key(&pb->compare[compares++]->range_end, f.data, f.len, 64);
        } else if (f.number == 2 && success < pb->n_success) {
            op_mark_from_key(f.data, f.len, pb->success[success++]);
        } else if (f.number == 3 && failure < pb->n_failure) {
            op_mark_from_key(f.data, f.len, pb->failure[failure++]);
        }
    }
}

/* ---- requests ------------------------------------------------------------- */

static mvcc_bytes bytes_from_pb(ProtobufCBinaryData b)
{
    return (mvcc_bytes){.data = b.data, .len = b.len};
}

static api_status status_invalid(const char *message)
{
    return (api_status){API_GRPC_INVALID_ARGUMENT, message};
}

api_status api_range_from_pb(const Etcdserverpb__RangeRequest *pb, mvcc_range_req *out)
{
    memset(out, 0, sizeof(*out));
    if (pb->key.len == 0) {
        return api_status_from_err(FL_ERR_KEY_EMPTY);
    }
    /* etcd's checkRangeRequest: unknown enum values are ErrGRPCInvalidSortOption. */
    if ((unsigned)pb->sort_order > ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ||
        (unsigned)pb->sort_target > ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
        return status_invalid("etcdserver: invalid sort option");
    }
    out->key = bytes_from_pb(pb->key);
    out->range_end = bytes_from_pb(pb->range_end);
    out->limit = pb->limit;
    out->revision = pb->revision;
    out->sort_order = (mvcc_sort_order)pb->sort_order;
    out->sort_target = (mvcc_sort_target)pb->sort_target;
    out->keys_only = pb->keys_only;
    out->count_only = pb->count_only;
    out->min_mod_revision = pb->min_mod_revision;
    out->max_mod_revision = pb->max_mod_revision;
    out->min_create_revision = pb->min_create_revision;
    out->max_create_revision = pb->max_create_revision;
    return api_status_ok();
}

api_status api_put_from_pb(const Etcdserverpb__PutRequest *pb, mvcc_put_req *out)
{
    memset(out, 0, sizeof(*out));
    if (pb->key.len == 0) {
        return api_status_from_err(FL_ERR_KEY_EMPTY);
    }
    if (pb->ignore_value && pb->value.len != 0) {
        return status_invalid("etcdserver: value is provided");
    }
    if (pb->ignore_lease && pb->lease != 0) {
        return status_invalid("etcdserver: lease is provided");
    }
    out->key = bytes_from_pb(pb->key);
    out->value = bytes_from_pb(pb->value);
    out->lease = pb->lease;
    out->prev_kv = pb->prev_kv;
    out->ignore_value = pb->ignore_value;
    out->ignore_lease = pb->ignore_lease;
    return api_status_ok();
}

api_status api_delete_from_pb(const Etcdserverpb__DeleteRangeRequest *pb, mvcc_delete_req *out)
{
    memset(out, 0, sizeof(*out));
    if (pb->key.len == 0) {
        return api_status_from_err(FL_ERR_KEY_EMPTY);
    }
    out->key = bytes_from_pb(pb->key);
    out->range_end = bytes_from_pb(pb->range_end);
    out->prev_kv = pb->prev_kv;
    return api_status_ok();
}

api_status api_compact_from_pb(const Etcdserverpb__CompactionRequest *pb, mvcc_compact_req *out)
{
    out->revision = pb->revision;
    out->physical = pb->physical;
    return api_status_ok();
}

static api_status compare_from_pb(const Etcdserverpb__Compare *pb, mvcc_compare *out)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)pb->result > ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL ||
        (unsigned)pb->target > ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE) {
        return status_invalid("etcdserver: invalid compare");
    }
    out->result = (mvcc_compare_result)pb->result;
    out->target = (mvcc_compare_target)pb->target;
    out->key = bytes_from_pb(pb->key);
    out->range_end = bytes_from_pb(pb->range_end);
    /* Like etcd's getters: a oneof member that is not the one set reads as 0. */
    Etcdserverpb__Compare__TargetUnionCase c = pb->target_union_case;
    switch (out->target) {
    case MVCC_CMP_VERSION:
        out->number = c == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION ? pb->version : 0;
        break;
    case MVCC_CMP_CREATE:
        out->number =
            c == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION ? pb->create_revision : 0;
        break;
    case MVCC_CMP_MOD:
        out->number = c == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION ? pb->mod_revision : 0;
        break;
    case MVCC_CMP_LEASE:
        out->number = c == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE ? pb->lease : 0;
        break;
    case MVCC_CMP_VALUE:
        if (c == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) {
            out->value = bytes_from_pb(pb->value);
        }
        break;
    }
    return api_status_ok();
}

static api_status ops_from_pb(api_arena *arena, Etcdserverpb__RequestOp **pb, size_t n,
                              const mvcc_op **out);

static api_status txn_from_pb(api_arena *arena, const Etcdserverpb__TxnRequest *pb,
                              mvcc_txn_req *out)
{
    memset(out, 0, sizeof(*out));
    if (pb->n_compare > 0) {
        mvcc_compare *cmps = api_arena_calloc(arena, pb->n_compare, sizeof(*cmps));
        if (cmps == NULL) {
            return api_status_from_err(FL_ERR_NOMEM);
        }
        for (size_t i = 0; i < pb->n_compare; i++) {
            api_status st = compare_from_pb(pb->compare[i], &cmps[i]);
            if (st.code != API_GRPC_OK) {
                return st;
            }
        }
        out->compares = cmps;
        out->compares_count = pb->n_compare;
    }
    api_status st = ops_from_pb(arena, pb->success, pb->n_success, &out->success);
    if (st.code != API_GRPC_OK) {
        return st;
    }
    out->success_count = pb->n_success;
    st = ops_from_pb(arena, pb->failure, pb->n_failure, &out->failure);
    if (st.code != API_GRPC_OK) {
        return st;
    }
    out->failure_count = pb->n_failure;
    return api_status_ok();
}

static api_status ops_from_pb(api_arena *arena, Etcdserverpb__RequestOp **pb, size_t n,
                              const mvcc_op **out)
{
    *out = NULL;
    if (n == 0) {
        return api_status_ok();
    }
    mvcc_op *ops = api_arena_calloc(arena, n, sizeof(*ops));
    if (ops == NULL) {
        return api_status_from_err(FL_ERR_NOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = pb[i];
        api_status st;
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            ops[i].type = MVCC_OP_RANGE;
            st = api_range_from_pb(op->request_range, &ops[i].u.range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            ops[i].type = MVCC_OP_PUT;
            st = api_put_from_pb(op->request_put, &ops[i].u.put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            ops[i].type = MVCC_OP_DELETE;
            st = api_delete_from_pb(op->request_delete_range, &ops[i].u.del);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
            mvcc_txn_req *nested = api_arena_alloc(arena, sizeof(*nested));
            if (nested == NULL) {
                return api_status_from_err(FL_ERR_NOMEM);
            }
            ops[i].type = MVCC_OP_TXN;
            st = txn_from_pb(arena, op->request_txn, nested);
            ops[i].u.txn = nested;
            break;
        }
        default:
            /* etcd's checkRequestOp answers an empty op with ErrGRPCKeyNotFound. */
            st = api_status_from_err(FL_ERR_NOT_FOUND);
            break;
        }
        if (st.code != API_GRPC_OK) {
            return st;
        }
    }
    *out = ops;
    return api_status_ok();
}

api_status api_txn_from_pb(api_arena *arena, const Etcdserverpb__TxnRequest *pb, mvcc_txn_req *out)
{
    return txn_from_pb(arena, pb, out);
}

bool api_txn_is_read_only(const mvcc_txn_req *txn)
{
    const mvcc_op *lists[2] = {txn->success, txn->failure};
    size_t counts[2] = {txn->success_count, txn->failure_count};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            const mvcc_op *op = &lists[l][i];
            if (op->type == MVCC_OP_PUT || op->type == MVCC_OP_DELETE) {
                return false;
            }
            if (op->type == MVCC_OP_TXN && !api_txn_is_read_only(op->u.txn)) {
                return false;
            }
        }
    }
    return true;
}

/* ---- responses ------------------------------------------------------------ */

static ProtobufCBinaryData bytes_to_pb(mvcc_bytes b)
{
    /* protobuf-c's field is not const; packing only reads it. */
    return (ProtobufCBinaryData){.len = b.len, .data = (uint8_t *)(uintptr_t)b.data};
}

Etcdserverpb__ResponseHeader *api_header_to_pb(api_arena *arena, const server_header *header,
                                               int64_t revision)
{
    Etcdserverpb__ResponseHeader *h = api_arena_alloc(arena, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    etcdserverpb__response_header__init(h);
    if (header != NULL) {
        h->cluster_id = header->cluster_id;
        h->member_id = header->member_id;
        h->raft_term = header->raft_term;
    }
    h->revision = revision;
    return h;
}

static Mvccpb__KeyValue *kv_to_pb(api_arena *arena, const mvcc_kv *kv)
{
    Mvccpb__KeyValue *out = api_arena_alloc(arena, sizeof(*out));
    if (out == NULL) {
        return NULL;
    }
    mvccpb__key_value__init(out);
    out->key = bytes_to_pb(kv->key);
    out->value = bytes_to_pb(kv->value);
    out->create_revision = kv->create_revision;
    out->mod_revision = kv->mod_revision;
    out->version = kv->version;
    out->lease = kv->lease;
    return out;
}

static Mvccpb__KeyValue **kvs_to_pb(api_arena *arena, const mvcc_kv *kvs, size_t n)
{
    if (n == 0) {
        return NULL;
    }
    /* One allocation for the pointer array and one for the messages. */
    Mvccpb__KeyValue **ptrs = api_arena_alloc(arena, n * sizeof(*ptrs));
    Mvccpb__KeyValue *msgs = api_arena_alloc(arena, n * sizeof(*msgs));
    if (ptrs == NULL || msgs == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        mvccpb__key_value__init(&msgs[i]);
        msgs[i].key = bytes_to_pb(kvs[i].key);
        msgs[i].value = bytes_to_pb(kvs[i].value);
        msgs[i].create_revision = kvs[i].create_revision;
        msgs[i].mod_revision = kvs[i].mod_revision;
        msgs[i].version = kvs[i].version;
        msgs[i].lease = kvs[i].lease;
        ptrs[i] = &msgs[i];
    }
    return ptrs;
}

Etcdserverpb__RangeResponse *api_range_resp_to_pb(api_arena *arena, const mvcc_range_result *res,
                                                  Etcdserverpb__ResponseHeader *header)
{
    Etcdserverpb__RangeResponse *r = api_arena_alloc(arena, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__range_response__init(r);
    r->header = header;
    r->more = res->more;
    r->count = res->count;
    r->n_kvs = res->kvs_count;
    r->kvs = kvs_to_pb(arena, res->kvs, res->kvs_count);
    if (res->kvs_count > 0 && r->kvs == NULL) {
        return NULL;
    }
    return r;
}

Etcdserverpb__PutResponse *api_put_resp_to_pb(api_arena *arena, const mvcc_put_result *res,
                                              Etcdserverpb__ResponseHeader *header)
{
    Etcdserverpb__PutResponse *r = api_arena_alloc(arena, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__put_response__init(r);
    r->header = header;
    if (res->has_prev_kv) {
        r->prev_kv = kv_to_pb(arena, &res->prev_kv);
        if (r->prev_kv == NULL) {
            return NULL;
        }
    }
    return r;
}

Etcdserverpb__DeleteRangeResponse *api_delete_resp_to_pb(api_arena *arena,
                                                         const mvcc_delete_result *res,
                                                         Etcdserverpb__ResponseHeader *header)
{
    Etcdserverpb__DeleteRangeResponse *r = api_arena_alloc(arena, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__delete_range_response__init(r);
    r->header = header;
    r->deleted = res->deleted;
    r->n_prev_kvs = res->prev_kvs_count;
    r->prev_kvs = kvs_to_pb(arena, res->prev_kvs, res->prev_kvs_count);
    if (res->prev_kvs_count > 0 && r->prev_kvs == NULL) {
        return NULL;
    }
    return r;
}

static Etcdserverpb__ResponseOp *op_resp_to_pb(api_arena *arena, const mvcc_op_result *op,
                                               int64_t revision)
{
    Etcdserverpb__ResponseOp *r = api_arena_alloc(arena, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__response_op__init(r);
    /* etcd 3.4 gives a nested txn an empty header (revision 0; only its ops
     * carry revisions), and a range its own read revision. */
    int64_t rev = op->type == MVCC_OP_RANGE ? op->u.range.revision
                  : op->type == MVCC_OP_TXN ? 0
                                            : revision;
    Etcdserverpb__ResponseHeader *h = api_header_to_pb(arena, NULL, rev);
    if (h == NULL) {
        return NULL;
    }
    void *sub = NULL;
    switch (op->type) {
    case MVCC_OP_RANGE:
        r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
        sub = r->response_range = api_range_resp_to_pb(arena, &op->u.range, h);
        break;
    case MVCC_OP_PUT:
        r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
        sub = r->response_put = api_put_resp_to_pb(arena, &op->u.put, h);
        break;
    case MVCC_OP_DELETE:
        r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
        sub = r->response_delete_range = api_delete_resp_to_pb(arena, &op->u.del, h);
        break;
    case MVCC_OP_TXN:
        r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
        assert(op->u.txn != NULL);
        sub = r->response_txn = api_txn_resp_to_pb(arena, op->u.txn, h, revision);
        break;
    }
    return sub == NULL ? NULL : r;
}

Etcdserverpb__TxnResponse *api_txn_resp_to_pb(api_arena *arena, const mvcc_txn_result *res,
                                              Etcdserverpb__ResponseHeader *header,
                                              int64_t revision)
{
    Etcdserverpb__TxnResponse *r = api_arena_alloc(arena, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__txn_response__init(r);
    r->header = header;
    r->succeeded = res->succeeded;
    if (res->responses_count > 0) {
        r->responses = api_arena_alloc(arena, res->responses_count * sizeof(*r->responses));
        if (r->responses == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < res->responses_count; i++) {
            r->responses[i] = op_resp_to_pb(arena, &res->responses[i], revision);
            if (r->responses[i] == NULL) {
                return NULL;
            }
        }
        r->n_responses = res->responses_count;
    }
    return r;
}

/* mvcc/codec: the binary encoding of a write command (a WAL/Raft payload).
 *
 * Format version 1 (docs/mvcc.md has the grammar):
 *   payload := version(u8 = 1) type(u8) body
 *   integers are LEB128 varints; signed ones are zigzag varints; bytes are a
 *   varint length then the bytes; bools are packed into one flags byte whose
 *   unknown bits must be zero; enums are one byte and checked.
 * Deterministic: one request has exactly one encoding. The decoder checks
 * every length against what is left, bounds array counts by the bytes left
 * (each element takes at least one byte), caps nesting, and rejects trailing
 * bytes, so a corrupt payload gives FL_ERR_CORRUPT, never an over-read.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc/internal.h"

#define CODEC_VERSION    1
#define CODEC_DEPTH_MAX  64
#define PUT_PREV_KV      0x01u
#define PUT_IGNORE_VALUE 0x02u
#define PUT_IGNORE_LEASE 0x04u
#define RANGE_KEYS_ONLY  0x01u
#define RANGE_COUNT_ONLY 0x02u

/* ---- encoder ------------------------------------------------------------ */

typedef struct encoder {
    uint8_t *buf; /* malloc'ed, handed to the caller on success */
    size_t len;
    size_t cap;
    bool failed;
} encoder;

static void enc_reserve(encoder *e, size_t n)
{
    if (e->failed) {
        return;
    }
    if (n > SIZE_MAX - e->len) {
        e->failed = true;
        return;
    }
    if (e->len + n <= e->cap) {
        return;
    }
    size_t cap = e->cap ? e->cap : 64;
    while (cap < e->len + n) {
        if (cap > SIZE_MAX / 2) {
            e->failed = true;
            return;
        }
        cap *= 2;
    }
    uint8_t *buf = realloc(e->buf, cap);
    if (buf == NULL) {
        e->failed = true;
        return;
    }
    e->buf = buf;
    e->cap = cap;
}

static void enc_u8(encoder *e, uint8_t v)
{
    enc_reserve(e, 1);
    if (!e->failed) {
        e->buf[e->len++] = v;
    }
}

static void enc_uvar(encoder *e, uint64_t v)
{
    enc_reserve(e, 10);
    if (e->failed) {
        return;
    }
    while (v >= 0x80) {
        e->buf[e->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    e->buf[e->len++] = (uint8_t)v;
}

static void enc_svar(encoder *e, int64_t v)
{
    enc_uvar(e, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void enc_bytes(encoder *e, mvcc_bytes b)
{
    enc_uvar(e, b.len);
    enc_reserve(e, b.len);
    if (!e->failed && b.len > 0) {
        memcpy(e->buf + e->len, b.data, b.len);
        e->len += b.len;
    }
}

static void enc_put(encoder *e, const mvcc_put_req *p)
{
    enc_bytes(e, p->key);
    enc_bytes(e, p->value);
    enc_svar(e, p->lease);
    enc_u8(e, (uint8_t)((p->prev_kv ? PUT_PREV_KV : 0) | (p->ignore_value ? PUT_IGNORE_VALUE : 0) |
                        (p->ignore_lease ? PUT_IGNORE_LEASE : 0)));
}

static void enc_delete(encoder *e, const mvcc_delete_req *d)
{
    enc_bytes(e, d->key);
    enc_bytes(e, d->range_end);
    enc_u8(e, d->prev_kv ? 1 : 0);
}

static void enc_range(encoder *e, const mvcc_range_req *r)
{
    enc_bytes(e, r->key);
    enc_bytes(e, r->range_end);
    enc_svar(e, r->limit);
    enc_svar(e, r->revision);
    enc_u8(e, (uint8_t)r->sort_order);
    enc_u8(e, (uint8_t)r->sort_target);
    enc_u8(e, (uint8_t)((r->keys_only ? RANGE_KEYS_ONLY : 0) |
                        (r->count_only ? RANGE_COUNT_ONLY : 0)));
    enc_svar(e, r->min_mod_revision);
    enc_svar(e, r->max_mod_revision);
    enc_svar(e, r->min_create_revision);
    enc_svar(e, r->max_create_revision);
}

static fl_err enc_txn(encoder *e, const mvcc_txn_req *t, int depth);

static fl_err enc_ops(encoder *e, const mvcc_op *ops, size_t n, int depth)
{
    enc_uvar(e, n);
    for (size_t i = 0; i < n; i++) {
        const mvcc_op *op = &ops[i];
        enc_u8(e, (uint8_t)op->type);
        switch (op->type) {
        case MVCC_OP_RANGE:
            enc_range(e, &op->u.range);
            break;
        case MVCC_OP_PUT:
            enc_put(e, &op->u.put);
            break;
        case MVCC_OP_DELETE:
            enc_delete(e, &op->u.del);
            break;
        case MVCC_OP_TXN: {
            if (op->u.txn == NULL) {
                return FL_ERR_INVALID;
            }
            fl_err err = enc_txn(e, op->u.txn, depth + 1);
            if (err != FL_OK) {
                return err;
            }
            break;
        }
        default:
            return FL_ERR_INVALID;
        }
    }
    return FL_OK;
}

static fl_err enc_txn(encoder *e, const mvcc_txn_req *t, int depth)
{
    if (depth > CODEC_DEPTH_MAX) {
        return FL_ERR_TOO_LARGE;
    }
    enc_uvar(e, t->compares_count);
    for (size_t i = 0; i < t->compares_count; i++) {
        const mvcc_compare *c = &t->compares[i];
        if ((unsigned)c->result > MVCC_CMP_NOT_EQUAL || (unsigned)c->target > MVCC_CMP_LEASE) {
            return FL_ERR_INVALID;
        }
        enc_u8(e, (uint8_t)c->result);
        enc_u8(e, (uint8_t)c->target);
        enc_bytes(e, c->key);
        enc_bytes(e, c->range_end);
        enc_svar(e, c->number);
        enc_bytes(e, c->value);
    }
    fl_err err = enc_ops(e, t->success, t->success_count, depth);
    if (err == FL_OK) {
        err = enc_ops(e, t->failure, t->failure_count, depth);
    }
    return err;
}

fl_err mvcc_request_encode(const mvcc_request *request, uint8_t **out, size_t *out_len)
{
    encoder e = {0};
    fl_err err = FL_OK;
    enc_u8(&e, CODEC_VERSION);
    enc_u8(&e, (uint8_t)request->type);
    switch ((int)request->type) {
    case MVCC_REQ_PUT:
        enc_put(&e, &request->u.put);
        break;
    case MVCC_REQ_DELETE:
        enc_delete(&e, &request->u.del);
        break;
    case MVCC_REQ_TXN:
        err = enc_txn(&e, &request->u.txn, 0);
        break;
    case MVCC_REQ_COMPACT:
        enc_svar(&e, request->u.compact.revision);
        enc_u8(&e, request->u.compact.physical ? 1 : 0);
        break;
    case MVCC_REQ_ALARM:
        enc_u8(&e, (uint8_t)request->u.alarm.action);
        enc_uvar(&e, request->u.alarm.member_id);
        enc_u8(&e, (uint8_t)request->u.alarm.alarm);
        break;
    default:
        err = FL_ERR_INVALID;
    }
    if (err == FL_OK && e.failed) {
        err = FL_ERR_NOMEM;
    }
    if (err != FL_OK) {
        free(e.buf);
        return err;
    }
    *out = e.buf; /* ownership passes to the caller */
    *out_len = e.len;
    return FL_OK;
}

/* ---- decoder ------------------------------------------------------------ */

typedef struct decoder {
    const uint8_t *p;
    const uint8_t *end;
    mvcc_arena *arena;
    /* Elements (ops, compares) the whole payload may still declare. Each
     * takes at least CODEC_ELEMENT_BYTES_MIN bytes, so a payload of len bytes
     * holds at most len / CODEC_ELEMENT_BYTES_MIN of them in all: counting
     * against one budget bounds what a corrupt payload can make the decoder
     * allocate to a fixed multiple of its length, however deeply it nests
     * (a per-list bound alone allows that much again at every level). */
    size_t elements_left;
    bool bad;
} decoder;

#define CODEC_ELEMENT_BYTES_MIN 4

static size_t dec_left(const decoder *d)
{
    return (size_t)(d->end - d->p);
}

static uint8_t dec_u8(decoder *d)
{
    if (d->bad || d->p >= d->end) {
        d->bad = true;
        return 0;
    }
    return *d->p++;
}

static uint64_t dec_uvar(decoder *d)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = dec_u8(d);
        if (d->bad) {
            return 0;
        }
        /* The tenth byte may only carry the top bit. */
        if (shift == 63 && b > 1) {
            d->bad = true;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            /* One request, one encoding: no redundant trailing zero groups. */
            if (b == 0 && shift > 0) {
                d->bad = true;
                return 0;
            }
            return v;
        }
    }
    d->bad = true;
    return 0;
}

static int64_t dec_svar(decoder *d)
{
    uint64_t u = dec_uvar(d);
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

static mvcc_bytes dec_bytes(decoder *d)
{
    mvcc_bytes b = {NULL, 0};
    uint64_t len = dec_uvar(d);
    if (d->bad) {
        return b;
    }
    if (len > dec_left(d)) {
        d->bad = true;
        return b;
    }
    b.data = len > 0 ? d->p : NULL;
    b.len = (size_t)len;
    d->p += len;
    return b;
}

/* Reads a count of elements that take at least min_bytes each. */
static size_t dec_count(decoder *d, size_t min_bytes)
{
    uint64_t n = dec_uvar(d);
    if (d->bad) {
        return 0;
    }
    assert(min_bytes >= CODEC_ELEMENT_BYTES_MIN);
    if (n > dec_left(d) / min_bytes || n > d->elements_left) {
        d->bad = true;
        return 0;
    }
    d->elements_left -= (size_t)n;
    return (size_t)n;
}

static uint8_t dec_flags(decoder *d, uint8_t allowed)
{
    uint8_t f = dec_u8(d);
    if (f & ~allowed) {
        d->bad = true;
    }
    return f;
}

static void dec_put(decoder *d, mvcc_put_req *p)
{
    p->key = dec_bytes(d);
    p->value = dec_bytes(d);
    p->lease = dec_svar(d);
    uint8_t f = dec_flags(d, PUT_PREV_KV | PUT_IGNORE_VALUE | PUT_IGNORE_LEASE);
    p->prev_kv = f & PUT_PREV_KV;
    p->ignore_value = f & PUT_IGNORE_VALUE;
    p->ignore_lease = f & PUT_IGNORE_LEASE;
}

static void dec_delete(decoder *d, mvcc_delete_req *r)
{
    r->key = dec_bytes(d);
    r->range_end = dec_bytes(d);
    r->prev_kv = dec_flags(d, 1) & 1;
}

static void dec_range(decoder *d, mvcc_range_req *r)
{
    r->key = dec_bytes(d);
    r->range_end = dec_bytes(d);
    r->limit = dec_svar(d);
    r->revision = dec_svar(d);
    uint8_t order = dec_u8(d);
    uint8_t target = dec_u8(d);
    if (order > MVCC_SORT_DESCEND || target > MVCC_SORT_BY_VALUE) {
        d->bad = true;
    }
    r->sort_order = (mvcc_sort_order)order;
    r->sort_target = (mvcc_sort_target)target;
    uint8_t f = dec_flags(d, RANGE_KEYS_ONLY | RANGE_COUNT_ONLY);
    r->keys_only = f & RANGE_KEYS_ONLY;
    r->count_only = f & RANGE_COUNT_ONLY;
    r->min_mod_revision = dec_svar(d);
    r->max_mod_revision = dec_svar(d);
    r->min_create_revision = dec_svar(d);
    r->max_create_revision = dec_svar(d);
}

static void dec_txn(decoder *d, mvcc_txn_req *t, int depth);

static void dec_ops(decoder *d, const mvcc_op **out, size_t *out_count, int depth)
{
    /* The smallest op (a txn with nothing in it) takes 4 bytes. */
    size_t n = dec_count(d, 4);
    *out = NULL;
    *out_count = 0;
    if (d->bad || n == 0) {
        return;
    }
    mvcc_op *ops = mvcc_arena_alloc(d->arena, n * sizeof *ops);
    if (ops == NULL) {
        d->bad = true;
        return;
    }
    memset(ops, 0, n * sizeof *ops);
    for (size_t i = 0; i < n && !d->bad; i++) {
        uint8_t type = dec_u8(d);
        ops[i].type = (mvcc_op_type)type;
        switch (type) {
        case MVCC_OP_RANGE:
            dec_range(d, &ops[i].u.range);
            break;
        case MVCC_OP_PUT:
            dec_put(d, &ops[i].u.put);
            break;
        case MVCC_OP_DELETE:
            dec_delete(d, &ops[i].u.del);
            break;
        case MVCC_OP_TXN: {
            mvcc_txn_req *sub = mvcc_arena_alloc(d->arena, sizeof *sub);
            if (sub == NULL) {
                d->bad = true;
                return;
            }
            memset(sub, 0, sizeof *sub);
            dec_txn(d, sub, depth + 1);
            ops[i].u.txn = sub;
            break;
        }
        default:
            d->bad = true;
        }
    }
    *out = ops;
    *out_count = n;
}

static void dec_txn(decoder *d, mvcc_txn_req *t, int depth)
{
    if (depth > CODEC_DEPTH_MAX) {
        d->bad = true;
        return;
    }
    /* A compare takes at least 6 bytes (two enums, three empty lengths, 0). */
    size_t nc = dec_count(d, 6);
    if (d->bad) {
        return;
    }
    if (nc > 0) {
        mvcc_compare *cs = mvcc_arena_alloc(d->arena, nc * sizeof *cs);
        if (cs == NULL) {
            d->bad = true;
            return;
        }
        memset(cs, 0, nc * sizeof *cs);
        for (size_t i = 0; i < nc && !d->bad; i++) {
            uint8_t result = dec_u8(d);
            uint8_t target = dec_u8(d);
            if (result > MVCC_CMP_NOT_EQUAL || target > MVCC_CMP_LEASE) {
                d->bad = true;
            }
            cs[i].result = (mvcc_compare_result)result;
            cs[i].target = (mvcc_compare_target)target;
            cs[i].key = dec_bytes(d);
            cs[i].range_end = dec_bytes(d);
            cs[i].number = dec_svar(d);
            cs[i].value = dec_bytes(d);
        }
        t->compares = cs;
        t->compares_count = nc;
    }
    dec_ops(d, &t->success, &t->success_count, depth);
    dec_ops(d, &t->failure, &t->failure_count, depth);
}

fl_err mvcc_request_decode(const uint8_t *payload, size_t len, mvcc_arena *arena, mvcc_request *out)
{
    memset(out, 0, sizeof *out);
    if (payload == NULL || len == 0) {
        return FL_ERR_CORRUPT;
    }
    decoder d = {.p = payload,
                 .end = payload + len,
                 .arena = arena,
                 .elements_left = len / CODEC_ELEMENT_BYTES_MIN};
    uint8_t version = dec_u8(&d);
    uint8_t type = dec_u8(&d);
    if (d.bad || version != CODEC_VERSION) {
        return FL_ERR_CORRUPT;
    }
    out->type = (mvcc_request_type)type;
    switch (type) {
    case MVCC_REQ_PUT:
        dec_put(&d, &out->u.put);
        break;
    case MVCC_REQ_DELETE:
        dec_delete(&d, &out->u.del);
        break;
    case MVCC_REQ_TXN:
        dec_txn(&d, &out->u.txn, 0);
        break;
    case MVCC_REQ_COMPACT:
        out->u.compact.revision = dec_svar(&d);
        out->u.compact.physical = dec_flags(&d, 1) & 1;
        break;
    case MVCC_REQ_ALARM: {
        uint8_t action = dec_u8(&d);
        out->u.alarm.member_id = dec_uvar(&d);
        uint8_t alarm = dec_u8(&d);
        if (!(action == MVCC_ALARM_ACTIVATE || action == MVCC_ALARM_DEACTIVATE) ||
            !(alarm == MVCC_ALARM_NOSPACE || alarm == MVCC_ALARM_CORRUPT)) {
            d.bad = true;
        }
        out->u.alarm.action = (mvcc_alarm_action)action;
        out->u.alarm.alarm = (mvcc_alarm_type)alarm;
        break;
    }
    default:
        return FL_ERR_CORRUPT;
    }
    if (d.bad || d.p != d.end) {
        memset(out, 0, sizeof *out);
        return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

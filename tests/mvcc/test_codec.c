/* The command encoding: round trips, canonical form, corrupt payloads. */
#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>

#include "mvcc/arena.h"
#include "mvcc/internal.h"

/* A txn using every field, with a nested txn. */
static mvcc_compare g_cmps[2];
static mvcc_op g_inner_ops[2];
static mvcc_txn_req g_inner;
static mvcc_op g_succ[3];
static mvcc_op g_fail[1];
static mvcc_txn_req g_empty;

static mvcc_request full_txn(void)
{
    g_cmps[0] = (mvcc_compare){.result = MVCC_CMP_NOT_EQUAL,
                               .target = MVCC_CMP_VALUE,
                               .key = B("ck"),
                               .range_end = B0,
                               .value = B("val")};
    g_cmps[1] = (mvcc_compare){
        .result = MVCC_CMP_LESS, .target = MVCC_CMP_MOD, .key = B("m"), .number = -123456789012345};
    g_inner_ops[0] = (mvcc_op){.type = MVCC_OP_DELETE,
                               .u.del = {.key = B("d"), .range_end = B("e"), .prev_kv = true}};
    g_inner_ops[1] = (mvcc_op){
        .type = MVCC_OP_PUT, .u.put = {.key = B("p2"), .ignore_lease = true, .ignore_value = true}};
    g_inner = (mvcc_txn_req){.compares = g_cmps + 1,
                             .compares_count = 1,
                             .success = g_inner_ops,
                             .success_count = 1,
                             .failure = g_inner_ops + 1,
                             .failure_count = 1};
    g_succ[0] = (mvcc_op){.type = MVCC_OP_RANGE,
                          .u.range = {.key = B("r"),
                                      .range_end = B("s"),
                                      .limit = 10,
                                      .revision = 7,
                                      .sort_order = MVCC_SORT_DESCEND,
                                      .sort_target = MVCC_SORT_BY_VALUE,
                                      .keys_only = true,
                                      .count_only = true,
                                      .min_mod_revision = 1,
                                      .max_mod_revision = 2,
                                      .min_create_revision = 3,
                                      .max_create_revision = INT64_MAX}};
    g_succ[1] =
        (mvcc_op){.type = MVCC_OP_PUT,
                  .u.put = {.key = B("p"), .value = B("v"), .lease = INT64_MIN, .prev_kv = true}};
    g_succ[2] = (mvcc_op){.type = MVCC_OP_TXN, .u.txn = &g_inner};
    g_fail[0] = (mvcc_op){.type = MVCC_OP_TXN, .u.txn = &g_empty};
    mvcc_request req = {.type = MVCC_REQ_TXN};
    req.u.txn = (mvcc_txn_req){.compares = g_cmps,
                               .compares_count = 2,
                               .success = g_succ,
                               .success_count = 3,
                               .failure = g_fail,
                               .failure_count = 1};
    return req;
}

static void assert_bytes_eq(mvcc_bytes a, mvcc_bytes b)
{
    assert_int_equal(a.len, b.len);
    if (a.len > 0) {
        assert_memory_equal(a.data, b.data, a.len);
    }
}

static void round_trip_simple(void **state)
{
    (void)state;
    mvcc_request reqs[4] = {
        {.type = MVCC_REQ_PUT,
         .u.put = {.key = B("k"), .value = B("v"), .lease = 5, .prev_kv = true}},
        {.type = MVCC_REQ_DELETE, .u.del = {.key = B("a"), .range_end = B0, .prev_kv = true}},
        {.type = MVCC_REQ_COMPACT, .u.compact = {.revision = 1234567, .physical = true}},
        {.type = MVCC_REQ_COMPACT, .u.compact = {.revision = -1}},
    };
    mvcc_arena *arena = mvcc_arena_new();
    for (int i = 0; i < 4; i++) {
        uint8_t *buf;
        size_t len;
        assert_int_equal(mvcc_request_encode(&reqs[i], &buf, &len), FL_OK);
        assert_int_equal(buf[0], 1); /* format version */
        mvcc_request out;
        assert_int_equal(mvcc_request_decode(buf, len, arena, &out), FL_OK);
        assert_int_equal(out.type, reqs[i].type);
        switch (out.type) {
        case MVCC_REQ_PUT:
            assert_bytes_eq(out.u.put.key, reqs[i].u.put.key);
            assert_bytes_eq(out.u.put.value, reqs[i].u.put.value);
            assert_int_equal(out.u.put.lease, 5);
            assert_true(out.u.put.prev_kv);
            assert_false(out.u.put.ignore_value);
            break;
        case MVCC_REQ_DELETE:
            assert_bytes_eq(out.u.del.range_end, B0);
            assert_true(out.u.del.prev_kv);
            break;
        default:
            assert_int_equal(out.u.compact.revision, reqs[i].u.compact.revision);
            assert_int_equal(out.u.compact.physical, reqs[i].u.compact.physical);
        }
        free(buf);
    }
    mvcc_arena_free(arena);
}

static void round_trip_txn(void **state)
{
    (void)state;
    mvcc_request req = full_txn();
    uint8_t *buf;
    size_t len;
    assert_int_equal(mvcc_request_encode(&req, &buf, &len), FL_OK);
    mvcc_arena *arena = mvcc_arena_new();
    mvcc_request out;
    assert_int_equal(mvcc_request_decode(buf, len, arena, &out), FL_OK);
    const mvcc_txn_req *t = &out.u.txn;
    assert_int_equal(t->compares_count, 2);
    assert_int_equal(t->compares[0].result, MVCC_CMP_NOT_EQUAL);
    assert_int_equal(t->compares[0].target, MVCC_CMP_VALUE);
    assert_bytes_eq(t->compares[0].value, B("val"));
    assert_bytes_eq(t->compares[0].range_end, B0);
    assert_int_equal(t->compares[1].number, -123456789012345);
    assert_int_equal(t->success_count, 3);
    const mvcc_range_req *r = &t->success[0].u.range;
    assert_int_equal(r->limit, 10);
    assert_int_equal(r->revision, 7);
    assert_int_equal(r->sort_order, MVCC_SORT_DESCEND);
    assert_int_equal(r->sort_target, MVCC_SORT_BY_VALUE);
    assert_true(r->keys_only && r->count_only);
    assert_int_equal(r->max_create_revision, INT64_MAX);
    assert_int_equal(t->success[1].u.put.lease, INT64_MIN);
    const mvcc_txn_req *inner = t->success[2].u.txn;
    assert_int_equal(inner->success[0].u.del.prev_kv, true);
    assert_bytes_eq(inner->success[0].u.del.range_end, B("e"));
    assert_true(inner->failure[0].u.put.ignore_lease);
    assert_int_equal(t->failure_count, 1);
    assert_int_equal(t->failure[0].type, MVCC_OP_TXN);
    assert_int_equal(t->failure[0].u.txn->success_count, 0);
    /* Re-encoding the decoded request gives the same bytes. */
    uint8_t *again;
    size_t again_len;
    assert_int_equal(mvcc_request_encode(&out, &again, &again_len), FL_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    free(again);
    free(buf);
    mvcc_arena_free(arena);
}

static void rejects_bad_headers_and_trailing_bytes(void **state)
{
    (void)state;
    mvcc_arena *arena = mvcc_arena_new();
    mvcc_request out;
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B("k")}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(mvcc_request_encode(&req, &buf, &len), FL_OK);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(mvcc_request_decode(longer, len + 1, arena, &out), FL_ERR_CORRUPT);
    longer[0] = 2; /* unknown version */
    assert_int_equal(mvcc_request_decode(longer, len, arena, &out), FL_ERR_CORRUPT);
    longer[0] = 1;
    longer[1] = 9; /* unknown type */
    assert_int_equal(mvcc_request_decode(longer, len, arena, &out), FL_ERR_CORRUPT);
    longer[1] = MVCC_REQ_PUT;
    longer[len - 1] = 0x80; /* unknown flag bit */
    assert_int_equal(mvcc_request_decode(longer, len, arena, &out), FL_ERR_CORRUPT);
    /* Non-minimal varint for the key length (0x81 0x00 = 1). */
    const uint8_t overlong[] = {1, MVCC_REQ_PUT, 0x81, 0x00, 'k', 0, 0, 0};
    assert_int_equal(mvcc_request_decode(overlong, sizeof overlong, arena, &out), FL_ERR_CORRUPT);
    /* A length far past the end. */
    const uint8_t huge[] = {1, MVCC_REQ_PUT, 0xff, 0xff, 0xff, 0xff, 0x0f, 'k'};
    assert_int_equal(mvcc_request_decode(huge, sizeof huge, arena, &out), FL_ERR_CORRUPT);
    /* A txn claiming a billion ops. */
    const uint8_t many[] = {1, MVCC_REQ_TXN, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0};
    assert_int_equal(mvcc_request_decode(many, sizeof many, arena, &out), FL_ERR_CORRUPT);
    free(longer);
    free(buf);
    mvcc_arena_free(arena);
}

static void nesting_is_capped(void **state)
{
    (void)state;
    /* 100 nested txns: each level is op count 1, op type TXN, 0 compares. */
    uint8_t buf[1024];
    size_t n = 0;
    buf[n++] = 1;
    buf[n++] = MVCC_REQ_TXN;
    for (int i = 0; i < 100; i++) {
        buf[n++] = 0; /* compares */
        buf[n++] = 1; /* success count */
        buf[n++] = MVCC_OP_TXN;
    }
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    for (int i = 0; i < 100; i++) {
        buf[n++] = 0; /* failure count */
    }
    mvcc_arena *arena = mvcc_arena_new();
    mvcc_request out;
    assert_int_equal(mvcc_request_decode(buf, n, arena, &out), FL_ERR_CORRUPT);
    mvcc_arena_free(arena);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Any accepted payload is the canonical encoding of what it decodes to. */
static void check_payload(mvcc_arena *arena, const uint8_t *p, size_t len, int *accepted)
{
    mvcc_request out;
    mvcc_arena_reset(arena);
    fl_err err = mvcc_request_decode(p, len, arena, &out);
    if (err != FL_OK) {
        assert_int_equal(err, FL_ERR_CORRUPT);
        return;
    }
    (*accepted)++;
    uint8_t *again;
    size_t again_len;
    assert_int_equal(mvcc_request_encode(&out, &again, &again_len), FL_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, p, len);
    free(again);
}

static void truncations_and_bit_flips(void **state)
{
    (void)state;
    mvcc_request req = full_txn();
    uint8_t *buf;
    size_t len;
    assert_int_equal(mvcc_request_encode(&req, &buf, &len), FL_OK);
    mvcc_arena *arena = mvcc_arena_new();
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly cut bytes, so ASan sees any over-read. */
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, buf, cut);
        check_payload(arena, part, cut, &accepted);
        free(part);
    }
    assert_int_equal(accepted, 0);
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, buf, len);
            copy[i] ^= (uint8_t)(1u << bit);
            check_payload(arena, copy, len, &accepted);
        }
    }
    free(copy);
    free(buf);
    mvcc_arena_free(arena);
}

static void random_bytes(void **state)
{
    (void)state;
    mvcc_arena *arena = mvcc_arena_new();
    uint64_t seed = 42;
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = rnd(&seed) % 48;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t j = 0; j < len; j++) {
            p[j] = (uint8_t)rnd(&seed);
            if (i & 2) {
                p[j] &= 3; /* small values parse more often */
            }
        }
        /* Give the header a fair chance so the body parsers get exercised. */
        if (len > 1 && (i & 1)) {
            p[0] = 1;
            p[1] = (uint8_t)(1 + rnd(&seed) % 4);
        }
        check_payload(arena, p, len, &accepted);
        free(p);
    }
    assert_true(accepted > 0);
    mvcc_arena_free(arena);
}

/* Accepted random payloads applied to a real store: errors are fine,
 * crashes and leaks are not; the store stays consistent. */
static void apply_random_payloads(void **state)
{
    (void)state;
    tstore ts;
    ts_open(&ts, NULL);
    ts_put(&ts, "a", "1");
    mvcc_arena *arena = mvcc_arena_new();
    uint64_t seed = 7;
    int applied = 0;
    for (int i = 0; i < 20000 && applied < 300; i++) {
        size_t len = 2 + rnd(&seed) % 30;
        uint8_t p[32];
        for (size_t j = 0; j < len; j++) {
            p[j] = (uint8_t)rnd(&seed);
            if (rnd(&seed) % 3 == 0) {
                p[j] = (uint8_t)(rnd(&seed) % 3); /* small values parse more often */
            }
        }
        p[0] = 1;
        p[1] = (uint8_t)(1 + rnd(&seed) % 4);
        mvcc_request out;
        mvcc_arena_reset(arena);
        if (mvcc_request_decode(p, len, arena, &out) != FL_OK) {
            continue;
        }
        mvcc_response resp;
        fl_err err = mvcc_apply(ts.store, ts.next_index++, p, len, &resp);
        assert_true(err != FL_ERR_IO && err != FL_ERR_CORRUPT);
        mvcc_response_free(&resp);
        applied++;
    }
    assert_true(applied > 50);
    assert_int_equal(mvcc_applied_index(ts.store), ts.next_index - 1);
    char *dump = ts_dump(&ts);
    free(dump);
    mvcc_arena_free(arena);
    ts_close(&ts);
}

/* A corrupt payload that nests txns, each level declaring as many ops as
 * the bytes left allow, must not make the decoder allocate per level: the
 * whole payload shares one element budget. Before that bound, 30 levels of a
 * 64 KiB payload allocated ~50 MB before failing. */
static void declared_counts_share_one_budget(void **state)
{
    (void)state;
    enum { PAYLOAD_BYTES = 64 * 1024, LEVELS = 30, DECLARED_OPS = 16000 };
    uint8_t *payload = calloc(1, PAYLOAD_BYTES);
    assert_non_null(payload);
    size_t at = 0;
    payload[at++] = 1;            /* codec version */
    payload[at++] = MVCC_REQ_TXN; /* request type */
    for (int level = 0; level < LEVELS; level++) {
        payload[at++] = 0;                                       /* no compares */
        payload[at++] = (uint8_t)(0x80 | (DECLARED_OPS & 0x7f)); /* success ops: */
        payload[at++] = (uint8_t)(DECLARED_OPS >> 7);            /* varint 16000 */
        payload[at++] = MVCC_OP_TXN;                             /* the first is a txn */
    }
    /* the rest stays zero: the innermost txn is empty, then an op type 0 */
    mvcc_arena *arena = mvcc_arena_new();
    mvcc_request out;
    assert_int_equal(mvcc_request_decode(payload, PAYLOAD_BYTES, arena, &out), FL_ERR_CORRUPT);
    /* ~104 bytes per op struct over at most PAYLOAD_BYTES / 4 declared ops */
    assert_true(mvcc_arena_bytes_used(arena) <= 32u * PAYLOAD_BYTES);
    mvcc_arena_free(arena);
    free(payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_simple),
        cmocka_unit_test(round_trip_txn),
        cmocka_unit_test(rejects_bad_headers_and_trailing_bytes),
        cmocka_unit_test(nesting_is_capped),
        cmocka_unit_test(truncations_and_bit_flips),
        cmocka_unit_test(random_bytes),
        cmocka_unit_test(declared_counts_share_one_budget),
        cmocka_unit_test(apply_random_payloads),
    };
    return cmocka_run_group_tests_name("mvcc.codec", tests, NULL, NULL);
}

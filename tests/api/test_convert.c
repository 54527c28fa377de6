/* api.convert: protobuf <-> mvcc conversion, both ways, through the wire
 * encoding (pack, unpack into an arena, convert; convert, pack, unpack). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/arena.h"
#include "api/convert.h"

static ProtobufCBinaryData B(const char *s)
{
    return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

static void assert_bytes(mvcc_bytes b, const char *s)
{
    assert_int_equal(b.len, strlen(s));
    if (b.len) {
        assert_memory_equal(b.data, s, b.len);
    }
}

/* Packs msg and unpacks it into the arena, as the server does with a request. */
static void *wire(api_arena *arena, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(msg, buf);
    void *out = protobuf_c_message_unpack(msg->descriptor, &arena->pb, n, buf);
    free(buf);
    assert_non_null(out);
    return out;
}

static void test_range_request(void **state)
{
    api_arena a;
    api_arena_init(&a);
    Etcdserverpb__RangeRequest pb = ETCDSERVERPB__RANGE_REQUEST__INIT;
    pb.key = B("a");
    pb.range_end = B("z");
    pb.limit = 7;
    pb.revision = 9;
    pb.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    pb.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    pb.keys_only = 1;
    pb.count_only = 1;
    pb.min_mod_revision = 1;
    pb.max_mod_revision = 2;
    pb.min_create_revision = 3;
    pb.max_create_revision = 4;
    Etcdserverpb__RangeRequest *in = wire(&a, &pb.base);
    mvcc_range_req r;
    assert_int_equal(api_range_from_pb(in, &r).code, 0);
    assert_bytes(r.key, "a");
    assert_bytes(r.range_end, "z");
    assert_int_equal(r.limit, 7);
    assert_int_equal(r.revision, 9);
    assert_int_equal(r.sort_order, MVCC_SORT_DESCEND);
    assert_int_equal(r.sort_target, MVCC_SORT_BY_MOD);
    assert_true(r.keys_only && r.count_only);
    assert_int_equal(r.min_mod_revision, 1);
    assert_int_equal(r.max_mod_revision, 2);
    assert_int_equal(r.min_create_revision, 3);
    assert_int_equal(r.max_create_revision, 4);
    /* A view: no copy of the key. */
    assert_ptr_equal(r.key.data, in->key.data);
    pb.key = B("");
    api_status st = api_range_from_pb(&pb, &r);
    assert_int_equal(st.code, 3);
    assert_string_equal(st.message, "etcdserver: key is not provided");
    pb.key = B("a");
    pb.sort_order = 7;
    st = api_range_from_pb(&pb, &r);
    assert_int_equal(st.code, 3);
    assert_string_equal(st.message, "etcdserver: invalid sort option");
    api_arena_free(&a);
}

static void test_put_delete_compact(void **state)
{
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("k");
    p.value = B("v");
    p.lease = 42;
    p.prev_kv = 1;
    mvcc_put_req put;
    assert_int_equal(api_put_from_pb(&p, &put).code, 0);
    assert_bytes(put.key, "k");
    assert_bytes(put.value, "v");
    assert_int_equal(put.lease, 42);
    assert_true(put.prev_kv && !put.ignore_value && !put.ignore_lease);
    p.ignore_lease = 1;
    api_status st = api_put_from_pb(&p, &put);
    assert_string_equal(st.message, "etcdserver: lease is provided");
    p.lease = 0;
    assert_int_equal(api_put_from_pb(&p, &put).code, 0);
    assert_true(put.ignore_lease);

    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B("a");
    d.range_end = (ProtobufCBinaryData){1, (uint8_t *)"\0"};
    d.prev_kv = 1;
    mvcc_delete_req del;
    assert_int_equal(api_delete_from_pb(&d, &del).code, 0);
    assert_int_equal(del.range_end.len, 1);
    assert_int_equal(del.range_end.data[0], 0);
    assert_true(del.prev_kv);
    d.key = B("");
    assert_int_equal(api_delete_from_pb(&d, &del).code, 3);

    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = 77;
    c.physical = 1;
    mvcc_compact_req comp;
    assert_int_equal(api_compact_from_pb(&c, &comp).code, 0);
    assert_int_equal(comp.revision, 77);
    assert_true(comp.physical);
}

/* txn: compare value("a") == "1" then { put b, txn { compare mod(c) > 5
 * then range c else delete [d, e) } } else { range a }. */
static void test_nested_txn_request(void **state)
{
    api_arena a;
    api_arena_init(&a);
    Etcdserverpb__Compare inner_cmp = ETCDSERVERPB__COMPARE__INIT;
    inner_cmp.key = B("c");
    inner_cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    inner_cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    inner_cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    inner_cmp.mod_revision = 5;
    Etcdserverpb__Compare *inner_cmps[] = {&inner_cmp};
    Etcdserverpb__RangeRequest rc = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rc.key = B("c");
    Etcdserverpb__RequestOp op_rc = ETCDSERVERPB__REQUEST_OP__INIT;
    op_rc.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op_rc.request_range = &rc;
    Etcdserverpb__DeleteRangeRequest dd = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    dd.key = B("d");
    dd.range_end = B("e");
    Etcdserverpb__RequestOp op_dd = ETCDSERVERPB__REQUEST_OP__INIT;
    op_dd.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op_dd.request_delete_range = &dd;
    Etcdserverpb__RequestOp *inner_succ[] = {&op_rc}, *inner_fail[] = {&op_dd};
    Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
    inner.n_compare = 1;
    inner.compare = inner_cmps;
    inner.n_success = 1;
    inner.success = inner_succ;
    inner.n_failure = 1;
    inner.failure = inner_fail;

    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.key = B("a");
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    cmp.value = B("1");
    Etcdserverpb__Compare *cmps[] = {&cmp};
    Etcdserverpb__PutRequest pb_put = ETCDSERVERPB__PUT_REQUEST__INIT;
    pb_put.key = B("b");
    pb_put.value = B("2");
    Etcdserverpb__RequestOp op_put = ETCDSERVERPB__REQUEST_OP__INIT;
    op_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op_put.request_put = &pb_put;
    Etcdserverpb__RequestOp op_txn = ETCDSERVERPB__REQUEST_OP__INIT;
    op_txn.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    op_txn.request_txn = &inner;
    Etcdserverpb__RangeRequest ra = ETCDSERVERPB__RANGE_REQUEST__INIT;
    ra.key = B("a");
    Etcdserverpb__RequestOp op_ra = ETCDSERVERPB__REQUEST_OP__INIT;
    op_ra.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op_ra.request_range = &ra;
    Etcdserverpb__RequestOp *succ[] = {&op_put, &op_txn}, *fail[] = {&op_ra};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 2;
    txn.success = succ;
    txn.n_failure = 1;
    txn.failure = fail;

    size_t n = protobuf_c_message_get_packed_size(&txn.base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&txn.base, buf);
    assert_int_equal(api_txn_wire_check(buf, n, API_TXN_DEPTH_MAX), API_WIRE_OK);
    assert_int_equal(api_txn_wire_check(buf, n, 1), API_WIRE_TOO_DEEP);
    assert_int_equal(api_txn_wire_check(buf, n - 1, API_TXN_DEPTH_MAX), API_WIRE_MALFORMED);
    free(buf);

    Etcdserverpb__TxnRequest *in = wire(&a, &txn.base);
    mvcc_txn_req t;
    assert_int_equal(api_txn_from_pb(&a, in, &t).code, 0);
    assert_int_equal(t.compares_count, 1);
    assert_int_equal(t.compares[0].target, MVCC_CMP_VALUE);
    assert_int_equal(t.compares[0].result, MVCC_CMP_EQUAL);
    assert_bytes(t.compares[0].key, "a");
    assert_bytes(t.compares[0].value, "1");
    assert_int_equal(t.success_count, 2);
    assert_int_equal(t.success[0].type, MVCC_OP_PUT);
    assert_bytes(t.success[0].u.put.key, "b");
    assert_bytes(t.success[0].u.put.value, "2");
    assert_int_equal(t.success[1].type, MVCC_OP_TXN);
    const mvcc_txn_req *nt = t.success[1].u.txn;
    assert_int_equal(nt->compares_count, 1);
    assert_int_equal(nt->compares[0].target, MVCC_CMP_MOD);
    assert_int_equal(nt->compares[0].result, MVCC_CMP_GREATER);
    assert_int_equal(nt->compares[0].number, 5);
    assert_int_equal(nt->success_count, 1);
    assert_int_equal(nt->success[0].type, MVCC_OP_RANGE);
    assert_bytes(nt->success[0].u.range.key, "c");
    assert_int_equal(nt->failure_count, 1);
    assert_int_equal(nt->failure[0].type, MVCC_OP_DELETE);
    assert_bytes(nt->failure[0].u.del.range_end, "e");
    assert_int_equal(t.failure_count, 1);
    assert_int_equal(t.failure[0].type, MVCC_OP_RANGE);
    assert_false(api_txn_is_read_only(&t));
    assert_true(api_txn_is_read_only(nt) == false); /* the inner one deletes */

    /* An empty op: etcd's ErrGRPCKeyNotFound; an empty key deep inside. */
    Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
    Etcdserverpb__RequestOp *bad[] = {&empty};
    txn.success = bad;
    txn.n_success = 1;
    api_status st = api_txn_from_pb(&a, &txn, &t);
    assert_int_equal(st.code, 3);
    assert_string_equal(st.message, "etcdserver: key not found");
    rc.key = B("");
    txn.success = succ;
    txn.n_success = 2;
    st = api_txn_from_pb(&a, &txn, &t);
    assert_string_equal(st.message, "etcdserver: key is not provided");
    api_arena_free(&a);
}

static void test_wire_check_deep_nesting(void **state)
{
    /* Build txn{success: [op{txn{...}}]} 1000 levels deep, by hand. */
    size_t cap = 16 * 1000 + 16;
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < 1000; i++) {
        /* wrap current (a TxnRequest) as RequestOp field 4, then TxnRequest field 2 */
        uint8_t hdr[12];
        size_t h = 0;
        for (int wrap = 0; wrap < 2; wrap++) {
            h = 0;
            hdr[h++] = wrap == 0 ? (4 << 3 | 2) : (2 << 3 | 2);
            size_t v = len;
            do {
                hdr[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                v >>= 7;
            } while (v);
            memmove(buf + h, buf, len);
            memcpy(buf, hdr, h);
            len += h;
        }
    }
    assert_int_equal(api_txn_wire_check(buf, len, API_TXN_DEPTH_MAX), API_WIRE_TOO_DEEP);
    assert_int_equal(api_txn_wire_check(buf, len, 2000), API_WIRE_OK);
    free(buf);
}

static void test_responses_round_trip(void **state)
{
    api_arena a;
    api_arena_init(&a);
    mvcc_kv kvs[2] = {
        {{(const uint8_t *)"k1", 2}, {(const uint8_t *)"v1", 2}, 2, 3, 2, 0},
        {{(const uint8_t *)"k2", 2}, {(const uint8_t *)"", 0}, 4, 4, 1, 99},
    };
    mvcc_range_result rr = {.kvs = kvs, .kvs_count = 2, .more = true, .count = 5, .revision = 8};
    server_header sh = {.cluster_id = 1, .member_id = 2, .revision = 8, .raft_term = 4};
    Etcdserverpb__RangeResponse *r =
        api_range_resp_to_pb(&a, &rr, api_header_to_pb(&a, &sh, rr.revision));
    Etcdserverpb__RangeResponse *back = wire(&a, &r->base);
    assert_int_equal(back->header->cluster_id, 1);
    assert_int_equal(back->header->member_id, 2);
    assert_int_equal(back->header->revision, 8);
    assert_int_equal(back->header->raft_term, 4);
    assert_true(back->more);
    assert_int_equal(back->count, 5);
    assert_int_equal(back->n_kvs, 2);
    assert_memory_equal(back->kvs[0]->key.data, "k1", 2);
    assert_memory_equal(back->kvs[0]->value.data, "v1", 2);
    assert_int_equal(back->kvs[0]->create_revision, 2);
    assert_int_equal(back->kvs[0]->mod_revision, 3);
    assert_int_equal(back->kvs[0]->version, 2);
    assert_int_equal(back->kvs[1]->value.len, 0);
    assert_int_equal(back->kvs[1]->lease, 99);

    /* A txn result: [put with prev_kv, txn{[range, delete]}]. */
    mvcc_op_result inner_ops[2] = {
        {.type = MVCC_OP_RANGE, .u.range = {.kvs = kvs, .kvs_count = 1, .count = 1, .revision = 6}},
        {.type = MVCC_OP_DELETE, .u.del = {.deleted = 2, .prev_kvs = kvs, .prev_kvs_count = 2}},
    };
    mvcc_txn_result inner = {.succeeded = false, .responses = inner_ops, .responses_count = 2};
    mvcc_op_result ops[2] = {
        {.type = MVCC_OP_PUT, .u.put = {.has_prev_kv = true, .prev_kv = kvs[1]}},
        {.type = MVCC_OP_TXN, .u.txn = &inner},
    };
    mvcc_txn_result txn = {.succeeded = true, .responses = ops, .responses_count = 2};
    Etcdserverpb__TxnResponse *t = api_txn_resp_to_pb(&a, &txn, api_header_to_pb(&a, &sh, 9), 9);
    Etcdserverpb__TxnResponse *tb = wire(&a, &t->base);
    assert_true(tb->succeeded);
    assert_int_equal(tb->header->revision, 9);
    assert_int_equal(tb->n_responses, 2);
    assert_int_equal(tb->responses[0]->response_case,
                     ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
    Etcdserverpb__PutResponse *p = tb->responses[0]->response_put;
    assert_non_null(p->prev_kv);
    assert_memory_equal(p->prev_kv->key.data, "k2", 2);
    assert_int_equal(p->prev_kv->lease, 99);
    assert_int_equal(p->header->revision, 9);
    assert_int_equal(p->header->cluster_id, 0); /* nested headers carry only the revision */
    Etcdserverpb__TxnResponse *nt = tb->responses[1]->response_txn;
    assert_false(nt->succeeded);
    assert_non_null(nt->header); /* etcd 3.4: present but empty in a nested txn */
    assert_int_equal(nt->header->revision, 0);
    assert_int_equal(nt->n_responses, 2);
    Etcdserverpb__RangeResponse *nr = nt->responses[0]->response_range;
    assert_int_equal(nr->header->revision, 6);
    assert_int_equal(nr->n_kvs, 1);
    Etcdserverpb__DeleteRangeResponse *nd = nt->responses[1]->response_delete_range;
    assert_int_equal(nd->deleted, 2);
    assert_int_equal(nd->n_prev_kvs, 2);
    assert_memory_equal(nd->prev_kvs[1]->key.data, "k2", 2);
    api_arena_free(&a);
}

/* etcd 3.4 reads a range_end present on the wire with length 0 as "every key
 * >= key" in a Range, a txn's range op (nested too) and a Compare; an absent
 * one, a non-empty one and a delete's stay as they are. */
static void test_empty_range_end_on_the_wire(void **state)
{
    (void)state;
    api_arena a;
    api_arena_init(&a);
    /* RangeRequest{key "b", range_end ""} and without range_end */
    static const uint8_t range_empty[] = {0x0a, 1, 'b', 0x12, 0};
    static const uint8_t range_absent[] = {0x0a, 1, 'b'};
    static const uint8_t range_z[] = {0x0a, 1, 'b', 0x12, 0, 0x12, 1, 'z'}; /* last wins */
    Etcdserverpb__RangeRequest *r =
        etcdserverpb__range_request__unpack(&a.pb, sizeof(range_empty), range_empty);
    assert_non_null(r);
    assert_int_equal(r->range_end.len, 0); /* what protobuf-c gives */
    api_range_mark_from_key(range_empty, sizeof(range_empty), r);
    assert_int_equal(r->range_end.len, 1);
    assert_int_equal(r->range_end.data[0], 0);
    r = etcdserverpb__range_request__unpack(&a.pb, sizeof(range_absent), range_absent);
    api_range_mark_from_key(range_absent, sizeof(range_absent), r);
    assert_int_equal(r->range_end.len, 0);
    r = etcdserverpb__range_request__unpack(&a.pb, sizeof(range_z), range_z);
    api_range_mark_from_key(range_z, sizeof(range_z), r);
    assert_int_equal(r->range_end.len, 1);
    assert_int_equal(r->range_end.data[0], 'z');

    /* TxnRequest{compare: [{key "b", range_end ""}, {key "c"}],
     *            success: [delete{b, ""}, range{b, ""}],
     *            failure: [txn{success: [range{b}, range{b, ""}]}]} */
    static const uint8_t txn[] = {
        0x0a, 6,  0x1a, 1,  'b',  0x82, 0x04, 0,                  /* compare 0, range_end = 64 */
        0x0a, 3,  0x1a, 1,  'c',                                  /* compare 1 */
        0x12, 7,  0x1a, 5,  0x0a, 1,    'b',  0x12, 0,            /* success 0: delete */
        0x12, 7,  0x0a, 5,  0x0a, 1,    'b',  0x12, 0,            /* success 1: range */
        0x1a, 18, 0x22, 16, 0x12, 5,    0x0a, 3,    0x0a, 1, 'b', /* failure 0: txn */
        0x12, 7,  0x0a, 5,  0x0a, 1,    'b',  0x12, 0,
    };
    assert_int_equal(api_txn_wire_check(txn, sizeof(txn), API_TXN_DEPTH_MAX), API_WIRE_OK);
    Etcdserverpb__TxnRequest *t = etcdserverpb__txn_request__unpack(&a.pb, sizeof(txn), txn);
    assert_non_null(t);
    assert_int_equal(t->n_compare, 2);
    assert_int_equal(t->n_success, 2);
    assert_int_equal(t->n_failure, 1);
    api_txn_mark_from_key(txn, sizeof(txn), t);
    assert_int_equal(t->compare[0]->range_end.len, 1);
    assert_int_equal(t->compare[1]->range_end.len, 0);
    assert_int_equal(t->success[0]->request_delete_range->range_end.len, 0);
    assert_int_equal(t->success[1]->request_range->range_end.len, 1);
    Etcdserverpb__TxnRequest *inner = t->failure[0]->request_txn;
    assert_int_equal(inner->n_success, 2);
    assert_int_equal(inner->success[0]->request_range->range_end.len, 0);
    assert_int_equal(inner->success[1]->request_range->range_end.len, 1);
    mvcc_txn_req m;
    assert_int_equal(api_txn_from_pb(&a, t, &m).code, 0);
    assert_int_equal(m.compares[0].range_end.len, 1);
    assert_int_equal(m.success[1].u.range.range_end.data[0], 0);
    api_arena_free(&a);
}

static void test_arena(void **state)
{
    api_arena a;
    api_arena_init(&a);
    void *p1 = api_arena_alloc(&a, 1);
    void *p2 = api_arena_alloc(&a, 1);
    assert_int_equal(((uintptr_t)p1) % 16, 0);
    assert_int_equal((uintptr_t)p2 - (uintptr_t)p1, 16);
    void *big = api_arena_alloc(&a, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    for (int i = 0; i < 10000; i++) {
        assert_non_null(api_arena_alloc(&a, 100));
    }
    api_arena_reset(&a);
    assert_ptr_equal(api_arena_alloc(&a, 1), p1); /* the first block is kept */
    assert_null(api_arena_alloc(&a, SIZE_MAX - 3));
    api_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_request),
        cmocka_unit_test(test_put_delete_compact),
        cmocka_unit_test(test_nested_txn_request),
        cmocka_unit_test(test_wire_check_deep_nesting),
        cmocka_unit_test(test_responses_round_trip),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_empty_range_end_on_the_wire),
    };
    return cmocka_run_group_tests_name("api.convert", tests, NULL, NULL);
}

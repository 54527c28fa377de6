/* Unit tests for src/server/entry.c: the envelope of normal Raft entries
 * (kind + request id + body) and the PUBLISH and MEMBER bodies: round trips
 * at the bounds, the byte layout entry.h documents, every truncation and
 * every trailing byte refused, bad kinds and ops refused, garbled bodies
 * never crash (seeded; FLOTILLA_TEST_SEED=<n> replays a run). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/entry.h"

/* ---- the envelope --------------------------------------------------------- */

static void test_envelope_round_trip(void **state)
{
    (void)state;
    const uint8_t body[] = {0, 1, 2, 0xff, 0x80};
    const uint64_t ids[] = {0, 1, 0x0102030405060708ull, UINT64_MAX};
    const entry_kind kinds[] = {ENTRY_MVCC, ENTRY_PUBLISH, ENTRY_VERSION, ENTRY_MEMBER};
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0; i < 4; i++) {
            for (size_t body_len = 0; body_len <= sizeof body; body_len += sizeof body) {
                uint8_t *data = NULL;
                size_t len = 0;
                assert_int_equal(
                    entry_encode(kinds[k], ids[i], body_len ? body : NULL, body_len, &data, &len),
                    FL_OK);
                assert_int_equal(len, ENTRY_HEADER_BYTES + body_len);
                /* the documented layout: kind byte, little-endian id, body */
                assert_int_equal(data[0], kinds[k]);
                for (int b = 0; b < 8; b++)
                    assert_int_equal(data[1 + b], (uint8_t)(ids[i] >> (8 * b)));
                entry_view v;
                memset(&v, 0xa5, sizeof v);
                assert_int_equal(entry_decode(data, len, &v), FL_OK);
                assert_int_equal(v.kind, kinds[k]);
                assert_int_equal(v.request_id, ids[i]);
                assert_int_equal(v.body_len, body_len);
                assert_ptr_equal(v.body, data + ENTRY_HEADER_BYTES); /* borrowed, not copied */
                if (body_len)
                    assert_memory_equal(v.body, body, body_len);
                free(data);
            }
        }
    }
}

static void test_envelope_bad(void **state)
{
    (void)state;
    uint8_t *data = NULL;
    size_t len = 0;
    const uint8_t body[] = {7, 7, 7};
    assert_int_equal(entry_encode(ENTRY_MVCC, 42, body, sizeof body, &data, &len), FL_OK);
    entry_view v;
    /* a header cut short (an empty entry is a leader's no-op, never decoded) */
    for (size_t cut = 0; cut < ENTRY_HEADER_BYTES; cut++) {
        uint8_t *prefix = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        assert_non_null(prefix);
        memcpy(prefix, data, cut);
        assert_int_equal(entry_decode(prefix, cut, &v), FL_ERR_CORRUPT);
        free(prefix);
    }
    /* a header alone is an entry with an empty body */
    assert_int_equal(entry_decode(data, ENTRY_HEADER_BYTES, &v), FL_OK);
    assert_int_equal(v.body_len, 0);
    /* kinds outside 1..4 */
    const uint8_t bad_kinds[] = {0, ENTRY_MEMBER + 1, 0x80, 0xff};
    for (size_t i = 0; i < sizeof bad_kinds; i++) {
        data[0] = bad_kinds[i];
        assert_int_equal(entry_decode(data, len, &v), FL_ERR_CORRUPT);
    }
    free(data);
}

/* ---- PUBLISH and MEMBER bodies -------------------------------------------- */

static void fill_member(cluster_member *m, bool full, uint32_t seed)
{
    memset(m, 0, sizeof *m);
    m->id = 0x8e9e05c52164694dull + seed;
    if (full)
        memset(m->name, 'n', CLUSTER_NAME_MAX);
    else
        snprintf(m->name, sizeof m->name, "infra%u", seed);
    m->n_peer_urls = full ? CLUSTER_URLS_MAX : 2;
    m->n_client_urls = full ? CLUSTER_URLS_MAX : 1;
    for (uint32_t u = 0; u < CLUSTER_URLS_MAX; u++) {
        if (full) {
            memset(m->peer_urls[u], 'a' + (int)u, CLUSTER_URL_MAX);
            memset(m->client_urls[u], 'A' + (int)u, CLUSTER_URL_MAX);
        } else {
            snprintf(m->peer_urls[u], CLUSTER_URL_MAX + 1, "http://10.0.%u.%u:2380", seed, u);
            snprintf(m->client_urls[u], CLUSTER_URL_MAX + 1, "http://10.0.%u.%u:2379", seed, u);
        }
    }
    m->is_learner = seed % 2;
}

static void test_publish_round_trip(void **state)
{
    (void)state;
    for (int full = 0; full < 2; full++) {
        cluster_member m, back;
        fill_member(&m, full, 3);
        uint8_t *body = NULL;
        size_t len = 0;
        assert_int_equal(entry_publish_encode(&m, &body, &len), FL_OK);
        memset(&back, 0xa5, sizeof back);
        assert_int_equal(entry_publish_decode(body, len, &back), FL_OK);
        /* PUBLISH carries the id, the name and the client URLs, nothing else */
        assert_int_equal(back.id, m.id);
        assert_string_equal(back.name, m.name);
        assert_int_equal(back.n_client_urls, m.n_client_urls);
        for (uint32_t u = 0; u < m.n_client_urls; u++)
            assert_string_equal(back.client_urls[u], m.client_urls[u]);
        assert_int_equal(back.n_peer_urls, 0);
        assert_false(back.is_learner);
        /* the documented layout: u64 id, str name, u8 n, str client_url * n */
        size_t want = 8 + 2 + strlen(m.name) + 1;
        for (uint32_t u = 0; u < m.n_client_urls; u++)
            want += 2 + strlen(m.client_urls[u]);
        assert_int_equal(len, want);
        free(body);
    }
    /* a member that has no client URLs yet */
    cluster_member m, back;
    fill_member(&m, false, 1);
    m.n_client_urls = 0;
    m.name[0] = '\0';
    uint8_t *body = NULL;
    size_t len = 0;
    assert_int_equal(entry_publish_encode(&m, &body, &len), FL_OK);
    assert_int_equal(entry_publish_decode(body, len, &back), FL_OK);
    assert_int_equal(back.n_client_urls, 0);
    assert_string_equal(back.name, "");
    free(body);
}

static void test_member_round_trip(void **state)
{
    (void)state;
    const entry_member_op ops[] = {ENTRY_MEMBER_ADD, ENTRY_MEMBER_REMOVE, ENTRY_MEMBER_UPDATE,
                                   ENTRY_MEMBER_PROMOTE};
    for (int full = 0; full < 2; full++) {
        for (size_t o = 0; o < 4; o++) {
            for (uint32_t learner = 0; learner < 2; learner++) {
                cluster_member m, back;
                fill_member(&m, full, learner);
                uint8_t *body = NULL;
                size_t len = 0;
                assert_int_equal(entry_member_encode(ops[o], &m, &body, &len), FL_OK);
                entry_member_op op = 0;
                memset(&back, 0xa5, sizeof back);
                assert_int_equal(entry_member_decode(body, len, &op, &back), FL_OK);
                /* MEMBER carries the op, the id, the learner flag and the peer URLs */
                assert_int_equal(op, ops[o]);
                assert_int_equal(back.id, m.id);
                assert_int_equal(back.is_learner, m.is_learner);
                assert_int_equal(back.n_peer_urls, m.n_peer_urls);
                for (uint32_t u = 0; u < m.n_peer_urls; u++)
                    assert_string_equal(back.peer_urls[u], m.peer_urls[u]);
                assert_string_equal(back.name, "");
                assert_int_equal(back.n_client_urls, 0);
                size_t want = 1 + 8 + 1 + 1;
                for (uint32_t u = 0; u < m.n_peer_urls; u++)
                    want += 2 + strlen(m.peer_urls[u]);
                assert_int_equal(len, want);
                free(body);
            }
        }
    }
    /* a REMOVE or PROMOTE names only the id: no URLs */
    cluster_member m = {.id = 77}, back;
    uint8_t *body = NULL;
    size_t len = 0;
    entry_member_op op;
    assert_int_equal(entry_member_encode(ENTRY_MEMBER_REMOVE, &m, &body, &len), FL_OK);
    assert_int_equal(entry_member_decode(body, len, &op, &back), FL_OK);
    assert_int_equal(op, ENTRY_MEMBER_REMOVE);
    assert_int_equal(back.id, 77);
    assert_int_equal(back.n_peer_urls, 0);
    free(body);
}

/* Every strict prefix of a body and the body with a byte appended are
 * refused; nothing is read past the given length (ASan). */
typedef fl_err (*decode_fn)(const uint8_t *body, size_t len);

static fl_err decode_publish(const uint8_t *body, size_t len)
{
    cluster_member m;
    return entry_publish_decode(body, len, &m);
}

static fl_err decode_member(const uint8_t *body, size_t len)
{
    cluster_member m;
    entry_member_op op;
    return entry_member_decode(body, len, &op, &m);
}

static void check_truncations(const uint8_t *body, size_t len, decode_fn decode)
{
    assert_int_equal(decode(body, len), FL_OK);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *prefix = malloc(cut ? cut : 1);
        assert_non_null(prefix);
        memcpy(prefix, body, cut);
        fl_err rc = decode(prefix, cut);
        if (rc != FL_ERR_CORRUPT)
            fail_msg("prefix of %zu of %zu bytes: %s", cut, len, fl_err_name(rc));
        free(prefix);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, body, len);
    longer[len] = 'x';
    assert_int_equal(decode(longer, len + 1), FL_ERR_CORRUPT);
    free(longer);
}

static void test_body_truncations(void **state)
{
    (void)state;
    for (int full = 0; full < 2; full++) {
        cluster_member m;
        fill_member(&m, full, 5);
        uint8_t *body = NULL;
        size_t len = 0;
        assert_int_equal(entry_publish_encode(&m, &body, &len), FL_OK);
        check_truncations(body, len, decode_publish);
        free(body);
        assert_int_equal(entry_member_encode(ENTRY_MEMBER_UPDATE, &m, &body, &len), FL_OK);
        check_truncations(body, len, decode_member);
        free(body);
    }
}

static void test_body_bad_values(void **state)
{
    (void)state;
    cluster_member m, back;
    fill_member(&m, false, 2);
    uint8_t *body = NULL;
    size_t len = 0;
    entry_member_op op;
    assert_int_equal(entry_member_encode(ENTRY_MEMBER_ADD, &m, &body, &len), FL_OK);
    const uint8_t bad_ops[] = {0, ENTRY_MEMBER_PROMOTE + 1, 0xff};
    for (size_t i = 0; i < sizeof bad_ops; i++) {
        body[0] = bad_ops[i];
        assert_int_equal(entry_member_decode(body, len, &op, &back), FL_ERR_CORRUPT);
    }
    body[0] = ENTRY_MEMBER_ADD;
    size_t n_at = 1 + 8 + 1;
    assert_int_equal(body[n_at], m.n_peer_urls);
    body[n_at] = CLUSTER_URLS_MAX + 1; /* more URLs than a member can have */
    assert_int_equal(entry_member_decode(body, len, &op, &back), FL_ERR_CORRUPT);
    body[n_at] = (uint8_t)m.n_peer_urls;
    body[n_at + 1] = 0xff; /* a URL longer than CLUSTER_URL_MAX */
    body[n_at + 2] = 0xff;
    assert_int_equal(entry_member_decode(body, len, &op, &back), FL_ERR_CORRUPT);
    free(body);

    assert_int_equal(entry_publish_encode(&m, &body, &len), FL_OK);
    size_t name_at = 8;
    body[name_at] = (uint8_t)(CLUSTER_NAME_MAX + 1); /* a name longer than the field */
    body[name_at + 1] = (uint8_t)((CLUSTER_NAME_MAX + 1) >> 8);
    assert_int_equal(entry_publish_decode(body, len, &back), FL_ERR_CORRUPT);
    free(body);
    assert_int_equal(entry_publish_encode(&m, &body, &len), FL_OK);
    size_t count_at = 8 + 2 + strlen(m.name);
    assert_int_equal(body[count_at], m.n_client_urls);
    body[count_at] = CLUSTER_URLS_MAX + 1;
    assert_int_equal(entry_publish_decode(body, len, &back), FL_ERR_CORRUPT);
    free(body);
}

/* Random bodies and garbled valid ones never crash decoding, and what
 * decodes stays within the bounds. */
static void test_body_garbage(void **state)
{
    (void)state;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *env = getenv("FLOTILLA_TEST_SEED");
    if (env && env[0])
        seed = strtoull(env, NULL, 0);
    print_message("seed %" PRIu64 " (FLOTILLA_TEST_SEED replays it)\n", seed);
    uint64_t x = seed ? seed : 1;
    cluster_member m, out;
    fill_member(&m, false, 9);
    uint8_t *bodies[2];
    size_t lens[2];
    assert_int_equal(entry_publish_encode(&m, &bodies[0], &lens[0]), FL_OK);
    assert_int_equal(entry_member_encode(ENTRY_MEMBER_ADD, &m, &bodies[1], &lens[1]), FL_OK);
    int decoded = 0;
    for (int round = 0; round < 20000; round++) {
        int which = round % 2;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = round % 4 < 2 ? lens[which] : (size_t)(x % (lens[which] + 16));
        uint8_t *buf = malloc(n ? n : 1);
        assert_non_null(buf);
        if (round % 4 < 2) {
            memcpy(buf, bodies[which], n);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[x % n] ^= (uint8_t)(1 + (x >> 40) % 255);
        } else {
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (uint8_t)x;
            }
        }
        entry_member_op op;
        fl_err rc =
            which ? entry_member_decode(buf, n, &op, &out) : entry_publish_decode(buf, n, &out);
        if (rc == FL_OK) {
            decoded++;
            assert_true(out.n_peer_urls <= CLUSTER_URLS_MAX);
            assert_true(out.n_client_urls <= CLUSTER_URLS_MAX);
            assert_true(strlen(out.name) <= CLUSTER_NAME_MAX);
        }
        entry_view v;
        if (entry_decode(buf, n, &v) == FL_OK)
            assert_true(v.body_len == n - ENTRY_HEADER_BYTES);
        free(buf);
    }
    print_message("%d of 20000 garbled bodies decoded (all within bounds)\n", decoded);
    free(bodies[0]);
    free(bodies[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_round_trip), cmocka_unit_test(test_envelope_bad),
        cmocka_unit_test(test_publish_round_trip),  cmocka_unit_test(test_member_round_trip),
        cmocka_unit_test(test_body_truncations),    cmocka_unit_test(test_body_bad_values),
        cmocka_unit_test(test_body_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The peer wire codec: frames, hello, every message type round trip, and
 * every truncated or garbled input rejected without a crash.
 * Seed for the random parts: TRANSPORT_TEST_SEED (printed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "transport/codec.h"

static uint64_t g_rng;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static struct raft_entry g_entries[RAFT_MSG_ENTRIES_MAX];
static uint8_t g_data[3][40];

/* A message of `type` with every field set to something distinct. */
static struct raft_msg sample(raft_msg_type type)
{
    struct raft_msg m = {.type = type,
                         .from = 0x1111222233334444ull,
                         .to = 0x5555666677778888ull,
                         .term = 7,
                         .log_term = 6,
                         .index = 1ull << 40,
                         .commit = 99,
                         .reject_hint = 12345,
                         .context = UINT64_MAX,
                         .reject = (type % 2) == 0};
    if (type == RAFT_MSG_APPEND) {
        static struct raft_entry es[3];
        for (int i = 0; i < 3; i++)
            for (size_t j = 0; j < sizeof g_data[i]; j++)
                g_data[i][j] = (uint8_t)(i * 50 + j);
        es[0] = (struct raft_entry){
            .term = 5, .index = 100, .type = RAFT_ENTRY_NORMAL, .len = 40, .data = g_data[0]};
        es[1] = (struct raft_entry){.term = 6, .index = 101, .type = RAFT_ENTRY_NORMAL};
        es[2] = (struct raft_entry){
            .term = 6, .index = 102, .type = RAFT_ENTRY_CONF_CHANGE, .len = 11, .data = g_data[2]};
        m.n_entries = 3;
        m.entries = es;
    }
    if (type == RAFT_MSG_SNAPSHOT) {
        m.snapshot.index = 500;
        m.snapshot.term = 4;
        m.snapshot.conf.n_voters = 3;
        m.snapshot.conf.voters[0] = 1;
        m.snapshot.conf.voters[1] = 2;
        m.snapshot.conf.voters[2] = 3;
        m.snapshot.conf.n_voters_outgoing = 1;
        m.snapshot.conf.voters_outgoing[0] = 9;
        m.snapshot.conf.n_learners = 2;
        m.snapshot.conf.learners[0] = 4;
        m.snapshot.conf.learners[1] = 5;
        m.snapshot.len = 17;
        m.snapshot.data = g_data[1];
    }
    return m;
}

static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject_hint, b->reject_hint);
    assert_int_equal(a->context, b->context);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_int_equal(x->term, y->term);
        assert_int_equal(x->index, y->index);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->len, y->len);
        if (x->len)
            assert_memory_equal(x->data, y->data, x->len);
        else
            assert_null(y->data);
    }
    if (a->type != RAFT_MSG_SNAPSHOT)
        return;
    const struct raft_snapshot *s = &a->snapshot, *t = &b->snapshot;
    assert_int_equal(s->index, t->index);
    assert_int_equal(s->term, t->term);
    assert_memory_equal(&s->conf, &t->conf, sizeof s->conf);
    assert_int_equal(s->len, t->len);
    assert_memory_equal(s->data, t->data, s->len);
}

static uint8_t *encode(uint64_t group, const struct raft_msg *m, size_t *len)
{
    *len = codec_msg_size(m);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    codec_msg_encode(group, m, buf);
    return buf;
}

static void test_round_trip_every_type(void **state)
{
    (void)state;
    for (int type = RAFT_MSG_APPEND; type <= RAFT_MSG_READ_INDEX_RESP; type++) {
        struct raft_msg m = sample((raft_msg_type)type);
        size_t len;
        uint64_t group = 0xabcdef0000000000ull + (uint64_t)type;
        uint8_t *buf = encode(group, &m, &len);
        struct raft_msg out;
        uint64_t group_out = 0;
        assert_int_equal(
            codec_msg_decode(buf, len, &group_out, &out, g_entries, RAFT_MSG_ENTRIES_MAX), FL_OK);
        assert_int_equal(group_out, group);
        assert_msg_equal(&m, &out);
        free(buf);
    }
}

/* Every prefix, and the message with one byte more, is refused. */
static void test_truncated_rejected(void **state)
{
    (void)state;
    for (int type = RAFT_MSG_APPEND; type <= RAFT_MSG_READ_INDEX_RESP; type++) {
        struct raft_msg m = sample((raft_msg_type)type);
        size_t len;
        uint8_t *buf = encode(1, &m, &len);
        struct raft_msg out;
        uint64_t g;
        for (size_t cut = 0; cut < len; cut++) {
            /* A fresh copy of exactly `cut` bytes so ASan sees any overread. */
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, buf, cut);
            assert_int_equal(codec_msg_decode(p, cut, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX),
                             FL_ERR_CORRUPT);
            free(p);
        }
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, buf, len);
        longer[len] = 0;
        assert_int_equal(
            codec_msg_decode(longer, len + 1, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX),
            FL_ERR_CORRUPT);
        free(longer);
        free(buf);
    }
}

/* Structural bytes set to impossible values are refused. Offsets follow the
 * layout in docs/transport.md. */
static void test_garbled_fields_rejected(void **state)
{
    (void)state;
    struct raft_msg m = sample(RAFT_MSG_APPEND);
    size_t len;
    uint8_t *buf = encode(1, &m, &len);
    struct raft_msg out;
    uint64_t g;
    const size_t type_at = 9, reject_at = 10 + 64, count_at = reject_at + 1,
                 entry_type_at = count_at + 4 + 16;
    struct {
        size_t at;
        uint8_t value;
    } cases[] = {{0, 0},
                 {0, 2},
                 {type_at, 0},
                 {type_at, 13},
                 {reject_at, 2},
                 {count_at, 4},
                 {count_at + 3, 1},
                 {entry_type_at, 2},
                 {count_at + 4 + 17 + 3, 0xff}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *p = malloc(len);
        memcpy(p, buf, len);
        p[cases[i].at] = cases[i].value;
        fl_err err = codec_msg_decode(p, len, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX);
        if (err != FL_ERR_CORRUPT)
            fprintf(stderr, "case %zu (offset %zu = %u) was accepted\n", i, cases[i].at,
                    cases[i].value);
        assert_int_equal(err, FL_ERR_CORRUPT);
        free(p);
    }
    /* More entries than the caller's array holds. */
    assert_int_equal(codec_msg_decode(buf, len, &g, &out, g_entries, 2), FL_ERR_CORRUPT);
    free(buf);

    struct raft_msg s = sample(RAFT_MSG_SNAPSHOT);
    buf = encode(1, &s, &len);
    const size_t voters_at = count_at + 4 + 16;
    uint8_t *p = malloc(len);
    memcpy(p, buf, len);
    p[voters_at] = RAFT_MEMBERS_MAX + 1;
    assert_int_equal(codec_msg_decode(p, len, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX),
                     FL_ERR_CORRUPT);
    free(p);
    free(buf);
}

/* Every single-byte change decodes to something or is refused; with ASan
 * this shows no change reads out of bounds. Random buffers likewise. */
static void test_flips_and_noise_never_crash(void **state)
{
    (void)state;
    int accepted = 0, refused = 0;
    for (int type = RAFT_MSG_APPEND; type <= RAFT_MSG_READ_INDEX_RESP; type++) {
        struct raft_msg m = sample((raft_msg_type)type);
        size_t len;
        uint8_t *buf = encode(3, &m, &len);
        for (size_t i = 0; i < len; i++) {
            uint8_t *p = malloc(len);
            memcpy(p, buf, len);
            p[i] ^= (uint8_t)(1 + rnd() % 255);
            struct raft_msg out;
            uint64_t g;
            if (codec_msg_decode(p, len, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX) == FL_OK)
                accepted++;
            else
                refused++;
            free(p);
        }
        free(buf);
    }
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(rnd() % 200);
        uint8_t *p = malloc(len ? len : 1);
        for (size_t j = 0; j < len; j++)
            p[j] = (uint8_t)rnd();
        if (len > 0)
            p[0] = CODEC_MSG_VERSION; /* get past the first check more often */
        struct raft_msg out;
        uint64_t g;
        if (codec_msg_decode(p, len, &g, &out, g_entries, RAFT_MSG_ENTRIES_MAX) == FL_OK)
            accepted++;
        else
            refused++;
        free(p);
    }
    /* Both outcomes happen: value bytes may change freely, structure may not. */
    assert_true(accepted > 0);
    assert_true(refused > 0);
}

static void test_frames(void **state)
{
    (void)state;
    uint8_t frame[CODEC_FRAME_HEADER + 5];
    memcpy(frame + CODEC_FRAME_HEADER, "hello", 5);
    codec_frame_header(frame, frame + CODEC_FRAME_HEADER, 5);
    const uint8_t *payload;
    uint32_t plen;
    size_t used;
    for (size_t have = 0; have < sizeof frame; have++) {
        assert_int_equal(codec_frame_parse(frame, have, 100, &payload, &plen, &used), FL_OK);
        assert_int_equal(used, 0);
    }
    assert_int_equal(codec_frame_parse(frame, sizeof frame, 100, &payload, &plen, &used), FL_OK);
    assert_int_equal(used, sizeof frame);
    assert_int_equal(plen, 5);
    assert_memory_equal(payload, "hello", 5);
    /* Over the limit, judged from the header alone. */
    assert_int_equal(codec_frame_parse(frame, CODEC_FRAME_HEADER, 4, &payload, &plen, &used),
                     FL_ERR_TOO_LARGE);
    /* Any bit flipped in the payload or the crc is caught. */
    for (size_t i = 4; i < sizeof frame; i++) {
        frame[i] ^= 0x10;
        assert_int_equal(codec_frame_parse(frame, sizeof frame, 100, &payload, &plen, &used),
                         FL_ERR_CORRUPT);
        frame[i] ^= 0x10;
    }
    /* An empty frame is not a frame. */
    memset(frame, 0, CODEC_FRAME_HEADER);
    assert_int_equal(codec_frame_parse(frame, CODEC_FRAME_HEADER, 100, &payload, &plen, &used),
                     FL_ERR_CORRUPT);
}

static void test_hello(void **state)
{
    (void)state;
    struct codec_hello h = {.version = CODEC_WIRE_VERSION,
                            .stream = CODEC_STREAM_SNAPSHOT,
                            .cluster_id = 0x1234,
                            .from = 5,
                            .to = 6};
    uint8_t buf[CODEC_HELLO_BYTES + 1];
    codec_hello_encode(&h, buf);
    struct codec_hello out;
    assert_int_equal(codec_hello_decode(buf, CODEC_HELLO_BYTES, &out), FL_OK);
    assert_int_equal(out.version, h.version);
    assert_int_equal(out.stream, h.stream);
    assert_int_equal(out.cluster_id, h.cluster_id);
    assert_int_equal(out.from, 5);
    assert_int_equal(out.to, 6);
    assert_int_equal(codec_hello_decode(buf, CODEC_HELLO_BYTES - 1, &out), FL_ERR_CORRUPT);
    assert_int_equal(codec_hello_decode(buf, CODEC_HELLO_BYTES + 1, &out), FL_ERR_CORRUPT);
    buf[2] ^= 1; /* magic */
    assert_int_equal(codec_hello_decode(buf, CODEC_HELLO_BYTES, &out), FL_ERR_CORRUPT);
    buf[2] ^= 1;
    buf[0] = CODEC_KIND_MSG;
    assert_int_equal(codec_hello_decode(buf, CODEC_HELLO_BYTES, &out), FL_ERR_CORRUPT);
}

int main(void)
{
    const char *seed = getenv("TRANSPORT_TEST_SEED");
    g_rng = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
    if (g_rng == 0)
        g_rng = 1;
    printf("TRANSPORT_TEST_SEED=%llu\n", (unsigned long long)g_rng);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_truncated_rejected),
        cmocka_unit_test(test_garbled_fields_rejected),
        cmocka_unit_test(test_flips_and_noise_never_crash),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

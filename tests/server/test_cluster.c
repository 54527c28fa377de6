/* Unit tests for src/server/cluster.c: parsing --initial-cluster and URL
 * lists (good and bad inputs), the ids (deterministic, nonzero, the cluster
 * id independent of the members' order), the removed-ids bound, and the
 * encoding of the member table stored in LMDB: round trips at the bounds,
 * every truncation and every trailing byte refused, garbled records never
 * crash (seeded; FLOTILLA_TEST_SEED=<n> replays a run). */
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

#include "server/cluster.h"

/* ---- helpers -------------------------------------------------------------- */

/* FNV-1a 64 written here from its definition (offset basis, prime), so the
 * ids are checked against the documented formula, not against themselves. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_BASIS 0xcbf29ce484222325ull

static uint64_t fnv_str(uint64_t h, const char *s)
{
    return fnv(h, s, strlen(s) + 1); /* with its NUL, as cluster.c documents */
}

static fl_err parse(const char *text, cluster_state *out, char *err, size_t err_len)
{
    err[0] = '\0';
    return cluster_parse_initial(text, "tok", out, err, err_len);
}

/* Parsing must fail with a message (and never crash). */
static void expect_bad(const char *text)
{
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    char err[512];
    fl_err rc = parse(text, c, err, sizeof err);
    print_message("bad --initial-cluster \"%.60s%s\": %s: %s\n", text,
                  strlen(text) > 60 ? "..." : "", fl_err_name(rc), err);
    free(c); /* before the checks: a failing one must not leak it */
    assert_int_equal(rc, FL_ERR_INVALID);
    assert_true(err[0] != '\0');
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ---- --initial-cluster ---------------------------------------------------- */

static void test_parse_initial(void **state)
{
    (void)state;
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    char err[256];
    assert_int_equal(parse("infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,"
                           "infra0=http://10.0.2.10:2380,infra2=http://10.0.1.12:2380",
                           c, err, sizeof err),
                     FL_OK);
    assert_int_equal(c->n_members, 3); /* one per distinct name, in order of appearance */
    assert_string_equal(c->members[0].name, "infra0");
    assert_int_equal(c->members[0].n_peer_urls, 2); /* its URLs in order */
    assert_string_equal(c->members[0].peer_urls[0], "http://10.0.1.10:2380");
    assert_string_equal(c->members[0].peer_urls[1], "http://10.0.2.10:2380");
    assert_string_equal(c->members[1].name, "infra1");
    assert_string_equal(c->members[2].name, "infra2");
    assert_string_equal(c->members[2].peer_urls[0], "http://10.0.1.12:2380");
    for (uint32_t i = 0; i < c->n_members; i++) {
        const cluster_member *m = &c->members[i];
        assert_int_equal(m->n_client_urls, 0); /* learned from PUBLISH */
        assert_false(m->is_learner);
        const char *urls[CLUSTER_URLS_MAX];
        for (uint32_t u = 0; u < m->n_peer_urls; u++)
            urls[u] = m->peer_urls[u];
        assert_int_equal(m->id, cluster_member_id(urls, m->n_peer_urls, "tok"));
        assert_int_not_equal(m->id, 0);
        for (uint32_t j = 0; j < i; j++)
            assert_int_not_equal(m->id, c->members[j].id);
        /* every initial member is a voter, in the same order */
        assert_int_equal(c->conf.voters[i], m->id);
    }
    assert_int_equal(c->conf.n_voters, 3);
    assert_int_equal(c->conf.n_learners, 0);
    assert_int_equal(c->conf.n_voters_outgoing, 0);
    assert_int_equal(c->n_removed, 0);
    assert_string_equal(c->version, "");

    /* an '=' inside the URL belongs to the URL */
    assert_int_equal(parse("a=http://h:1/?x=y", c, err, sizeof err), FL_OK);
    assert_int_equal(c->n_members, 1);
    assert_string_equal(c->members[0].name, "a");
    assert_string_equal(c->members[0].peer_urls[0], "http://h:1/?x=y");

    /* the bounds themselves are accepted */
    char *name = repeat('n', CLUSTER_NAME_MAX);
    char *url = repeat('u', CLUSTER_URL_MAX);
    char text[CLUSTER_NAME_MAX + CLUSTER_URL_MAX + 2];
    snprintf(text, sizeof text, "%s=%s", name, url);
    assert_int_equal(parse(text, c, err, sizeof err), FL_OK);
    assert_string_equal(c->members[0].name, name);
    assert_string_equal(c->members[0].peer_urls[0], url);
    free(name);
    free(url);

    char big[4096] = "";
    for (int i = 0; i < RAFT_MEMBERS_MAX; i++) {
        char item[64];
        snprintf(item, sizeof item, "%sm%d=http://127.0.0.%d:2380", i ? "," : "", i, i + 1);
        strcat(big, item);
    }
    assert_int_equal(parse(big, c, err, sizeof err), FL_OK);
    assert_int_equal(c->n_members, RAFT_MEMBERS_MAX);
    assert_int_equal(c->conf.n_voters, RAFT_MEMBERS_MAX);

    big[0] = '\0';
    for (unsigned i = 0; i < CLUSTER_URLS_MAX; i++) {
        char item[64];
        snprintf(item, sizeof item, "%sm=http://127.0.0.%u:2380", i ? "," : "", i + 1);
        strcat(big, item);
    }
    assert_int_equal(parse(big, c, err, sizeof err), FL_OK);
    assert_int_equal(c->n_members, 1);
    assert_int_equal(c->members[0].n_peer_urls, CLUSTER_URLS_MAX);
    free(c);
}

static void test_parse_initial_bad(void **state)
{
    (void)state;
    expect_bad("");
    expect_bad(",");
    expect_bad(",,,");
    expect_bad("infra0");
    expect_bad("infra0=");
    expect_bad("=http://h:2380");
    expect_bad("=");
    expect_bad("a=http://h:1,b");
    expect_bad("a=http://h:1,=http://h:2");
    /* two members with the same peer URLs get the same id */
    expect_bad("a=http://h:1,b=http://h:1");

    char *name = repeat('n', CLUSTER_NAME_MAX + 1);
    char *url = repeat('u', CLUSTER_URL_MAX + 1);
    char text[2 * (CLUSTER_NAME_MAX + CLUSTER_URL_MAX) + 8];
    snprintf(text, sizeof text, "%s=http://h:1", name);
    expect_bad(text);
    snprintf(text, sizeof text, "a=%s", url);
    expect_bad(text);
    free(name);
    free(url);

    char big[4096] = "";
    for (int i = 0; i <= RAFT_MEMBERS_MAX; i++) { /* one member too many */
        char item[64];
        snprintf(item, sizeof item, "%sm%d=http://127.0.0.%d:2380", i ? "," : "", i, i + 1);
        strcat(big, item);
    }
    expect_bad(big);
    big[0] = '\0';
    for (unsigned i = 0; i <= CLUSTER_URLS_MAX; i++) { /* one URL too many */
        char item[64];
        snprintf(item, sizeof item, "%sm=http://127.0.0.%u:2380", i ? "," : "", i + 1);
        strcat(big, item);
    }
    expect_bad(big);

    /* a tiny or absent error buffer is not overrun */
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    char tiny[4] = "xyz";
    assert_int_equal(cluster_parse_initial("nope", "tok", c, tiny, sizeof tiny), FL_ERR_INVALID);
    assert_int_equal(strlen(tiny), 3);
    assert_int_equal(cluster_parse_initial("nope", "tok", c, NULL, 0), FL_ERR_INVALID);
    free(c);
}

/* etcd 3.4 refuses an --initial-cluster in which a peer URL appears twice
 * ("initial cluster ... has duplicate url"): two members would share an
 * address. cluster_parse_initial only refuses members whose whole URL list
 * is the same (equal ids). */
static void test_parse_initial_duplicate_url(void **state)
{
    (void)state;
    expect_bad("a=http://h:1,b=http://h:1,b=http://h:2"); /* b shares a's URL */
    expect_bad("a=http://h:1,a=http://h:1");              /* a lists it twice */
}

static void test_parse_urls(void **state)
{
    (void)state;
    char urls[CLUSTER_URLS_MAX][CLUSTER_URL_MAX + 1];
    uint32_t n = 99;
    assert_int_equal(cluster_parse_urls("http://a:1,http://b:2", urls, CLUSTER_URLS_MAX, &n),
                     FL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(urls[0], "http://a:1");
    assert_string_equal(urls[1], "http://b:2");
    assert_int_equal(cluster_parse_urls(",http://a:1,,", urls, CLUSTER_URLS_MAX, &n), FL_OK);
    assert_int_equal(n, 1); /* empty items are skipped */
    assert_string_equal(urls[0], "http://a:1");
    assert_int_equal(cluster_parse_urls("", urls, CLUSTER_URLS_MAX, &n), FL_ERR_INVALID);
    assert_int_equal(cluster_parse_urls(",,", urls, CLUSTER_URLS_MAX, &n), FL_ERR_INVALID);
    assert_int_equal(cluster_parse_urls("a,b,c", urls, 2, &n), FL_ERR_INVALID); /* too many */
    assert_int_equal(cluster_parse_urls("a,b", urls, 2, &n), FL_OK);
    char *url = repeat('u', CLUSTER_URL_MAX);
    assert_int_equal(cluster_parse_urls(url, urls, CLUSTER_URLS_MAX, &n), FL_OK);
    assert_string_equal(urls[0], url);
    free(url);
    url = repeat('u', CLUSTER_URL_MAX + 1);
    assert_int_equal(cluster_parse_urls(url, urls, CLUSTER_URLS_MAX, &n), FL_ERR_INVALID);
    free(url);
}

/* ---- ids ------------------------------------------------------------------ */

static void test_ids(void **state)
{
    (void)state;
    const char *one[] = {"http://localhost:2380"};
    const char *two[] = {"http://10.0.0.1:2380", "http://10.0.0.2:2380"};
    const char *two_other[] = {"http://10.0.0.1:2380", "http://10.0.0.3:2380"};
    /* the documented formula: FNV-1a over "flotilla-member", each URL, the token */
    uint64_t want = fnv_str(fnv_str(fnv_str(FNV_BASIS, "flotilla-member"), one[0]), "tok");
    assert_int_equal(cluster_member_id(one, 1, "tok"), want);
    assert_int_equal(cluster_member_id(one, 1, "tok"), cluster_member_id(one, 1, "tok"));
    assert_int_not_equal(cluster_member_id(one, 1, "tok"), cluster_member_id(one, 1, "tok2"));
    assert_int_not_equal(cluster_member_id(two, 2, "tok"), cluster_member_id(two_other, 2, "tok"));
    assert_int_not_equal(cluster_member_id(two, 1, "tok"), cluster_member_id(two, 2, "tok"));
    /* the NUL between items: ("ab", "c") is not ("a", "bc") */
    const char *split1[] = {"ab", "c"}, *split2[] = {"a", "bc"};
    assert_int_not_equal(cluster_member_id(split1, 2, "t"), cluster_member_id(split2, 2, "t"));
    assert_int_equal(cluster_hash64(0, "", 0), FNV_BASIS);
    assert_int_equal(cluster_hash64(0, "a", 1), fnv(FNV_BASIS, "a", 1));

    /* The ids of a default cluster of one are in every existing data dir's
     * identity file: they must never change (a change refuses the dir). */
    assert_int_equal(cluster_member_id(one, 1, "flotilla-cluster"), 0xff8ba4301763bdc1ull);
    uint64_t self = 0xff8ba4301763bdc1ull;
    assert_int_equal(cluster_cluster_id("flotilla-cluster", &self, 1), 0xb778618f046215a7ull);

    /* the cluster id: the token and the members' ids in ascending order */
    uint64_t ids[5] = {50, 10, 40, 20, 30};
    uint64_t sorted[5] = {10, 20, 30, 40, 50};
    uint64_t cid = cluster_cluster_id("tok", ids, 5);
    uint64_t h = fnv_str(fnv_str(FNV_BASIS, "flotilla-cluster"), "tok");
    for (int i = 0; i < 5; i++)
        h = fnv(h, &sorted[i], sizeof sorted[i]);
    assert_int_equal(cid, h);
    assert_int_equal(ids[0], 50); /* the caller's array is left alone */
    /* every rotation and a reversal give the same id */
    for (int r = 0; r < 5; r++) {
        uint64_t perm[5];
        for (int i = 0; i < 5; i++)
            perm[i] = ids[(i + r) % 5];
        assert_int_equal(cluster_cluster_id("tok", perm, 5), cid);
        for (int i = 0; i < 5; i++)
            perm[i] = ids[4 - (i + r) % 5];
        assert_int_equal(cluster_cluster_id("tok", perm, 5), cid);
    }
    assert_int_not_equal(cluster_cluster_id("tok2", ids, 5), cid);
    assert_int_not_equal(cluster_cluster_id("tok", ids, 4), cid);
    uint64_t changed[5] = {50, 10, 40, 20, 31};
    assert_int_not_equal(cluster_cluster_id("tok", changed, 5), cid);

    /* --initial-cluster in another order: the same members, the same cluster */
    cluster_state *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    char err[256];
    assert_int_equal(parse("x=http://h:1,y=http://h:2,z=http://h:3", a, err, sizeof err), FL_OK);
    assert_int_equal(parse("z=http://h:3,x=http://h:1,y=http://h:2", b, err, sizeof err), FL_OK);
    uint64_t ia[3], ib[3];
    for (int i = 0; i < 3; i++) {
        ia[i] = a->members[i].id;
        ib[i] = b->members[i].id;
    }
    assert_int_equal(ia[0], ib[1]); /* x has the same id in both */
    assert_int_equal(cluster_cluster_id("tok", ia, 3), cluster_cluster_id("tok", ib, 3));
    free(a);
    free(b);
}

/* ---- the table ------------------------------------------------------------ */

static void test_find_and_remove(void **state)
{
    (void)state;
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    char err[256];
    assert_int_equal(
        parse("a=http://h:1,b=http://h:2,b=http://h:22,c=http://h:3", c, err, sizeof err), FL_OK);
    uint64_t ida = c->members[0].id, idb = c->members[1].id, idc = c->members[2].id;
    assert_ptr_equal(cluster_find(c, idb), &c->members[1]);
    assert_ptr_equal(cluster_find_const(c, idc), &c->members[2]);
    assert_null(cluster_find(c, 12345));
    assert_ptr_equal(cluster_find_peer_url(c, "http://h:22"), &c->members[1]);
    assert_null(cluster_find_peer_url(c, "http://h:4"));
    assert_false(cluster_was_removed(c, idb));
    cluster_remove(c, idb);
    assert_int_equal(c->n_members, 2);
    assert_null(cluster_find(c, idb));
    assert_int_equal(c->members[0].id, ida); /* the others keep their order */
    assert_int_equal(c->members[1].id, idc);
    assert_string_equal(c->members[1].name, "c");
    assert_true(cluster_was_removed(c, idb));
    assert_int_equal(c->n_removed, 1);
    cluster_remove(c, idb); /* again: nothing changes */
    assert_int_equal(c->n_removed, 1);
    assert_int_equal(c->n_members, 2);
    cluster_remove(c, 777); /* never a member: still recorded as removed */
    assert_true(cluster_was_removed(c, 777));
    assert_int_equal(c->n_members, 2);

    /* the removed list is bounded; the newest ids are kept */
    memset(c, 0, sizeof *c);
    const uint64_t total = CLUSTER_REMOVED_MAX + 44;
    for (uint64_t id = 1; id <= total; id++)
        cluster_remove(c, id);
    assert_int_equal(c->n_removed, CLUSTER_REMOVED_MAX);
    assert_false(cluster_was_removed(c, 1));
    assert_false(cluster_was_removed(c, total - CLUSTER_REMOVED_MAX));
    assert_true(cluster_was_removed(c, total - CLUSTER_REMOVED_MAX + 1));
    assert_true(cluster_was_removed(c, total));
    assert_int_equal(c->removed[CLUSTER_REMOVED_MAX - 1], total);
    free(c);
}

/* ---- encoding ------------------------------------------------------------- */

/* A table with every field set, at its bounds when `full`. */
static void fill_state(cluster_state *c, bool full)
{
    memset(c, 0, sizeof *c);
    c->cluster_id = 0x0123456789abcdefull;
    c->applied_term = 0xfedcba9876543210ull;
    snprintf(c->version, sizeof c->version, "%s", full ? "3.4.0-abcdefghi" : "3.4.0");
    c->n_members = full ? RAFT_MEMBERS_MAX : 3;
    for (uint32_t i = 0; i < c->n_members; i++) {
        cluster_member *m = &c->members[i];
        m->id = 0x1000000000000000ull + i * 0x0101010101ull;
        if (full)
            memset(m->name, 'a' + (int)i, CLUSTER_NAME_MAX);
        else
            snprintf(m->name, sizeof m->name, "m%u", i);
        m->is_learner = i % 3 == 2;
        m->n_peer_urls = full ? CLUSTER_URLS_MAX : 1 + i;
        for (uint32_t u = 0; u < m->n_peer_urls; u++) {
            if (full)
                memset(m->peer_urls[u], '0' + (int)(u % 10), CLUSTER_URL_MAX);
            else
                snprintf(m->peer_urls[u], CLUSTER_URL_MAX + 1, "http://10.0.%u.%u:2380", i, u);
        }
        m->n_client_urls = full ? CLUSTER_URLS_MAX : i; /* the first has none yet */
        for (uint32_t u = 0; u < m->n_client_urls; u++) {
            if (full)
                memset(m->client_urls[u], 'A' + (int)(u % 26), CLUSTER_URL_MAX);
            else
                snprintf(m->client_urls[u], CLUSTER_URL_MAX + 1, "http://10.0.%u.%u:2379", i, u);
        }
        if (m->is_learner)
            c->conf.learners[c->conf.n_learners++] = m->id;
        else
            c->conf.voters[c->conf.n_voters++] = m->id;
    }
    if (!full) { /* joint: the outgoing set differs */
        c->conf.voters_outgoing[0] = c->members[0].id;
        c->conf.voters_outgoing[1] = 99;
        c->conf.n_voters_outgoing = 2;
    } else {
        for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
            c->conf.voters_outgoing[i] = 500 + i;
        c->conf.n_voters_outgoing = RAFT_MEMBERS_MAX;
    }
    c->n_removed = full ? CLUSTER_REMOVED_MAX : 2;
    for (uint32_t i = 0; i < c->n_removed; i++)
        c->removed[i] = 0xdead000000000000ull + i;
}

static void assert_same_state(const cluster_state *a, const cluster_state *b)
{
    assert_int_equal(a->cluster_id, b->cluster_id);
    assert_int_equal(a->applied_term, b->applied_term);
    assert_string_equal(a->version, b->version);
    assert_int_equal(a->conf.n_voters, b->conf.n_voters);
    assert_int_equal(a->conf.n_voters_outgoing, b->conf.n_voters_outgoing);
    assert_int_equal(a->conf.n_learners, b->conf.n_learners);
    assert_memory_equal(a->conf.voters, b->conf.voters, a->conf.n_voters * sizeof(raft_id));
    assert_memory_equal(a->conf.voters_outgoing, b->conf.voters_outgoing,
                        a->conf.n_voters_outgoing * sizeof(raft_id));
    assert_memory_equal(a->conf.learners, b->conf.learners, a->conf.n_learners * sizeof(raft_id));
    assert_int_equal(a->n_members, b->n_members);
    for (uint32_t i = 0; i < a->n_members; i++) {
        const cluster_member *x = &a->members[i], *y = &b->members[i];
        assert_int_equal(x->id, y->id);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->is_learner, y->is_learner);
        assert_int_equal(x->n_peer_urls, y->n_peer_urls);
        for (uint32_t u = 0; u < x->n_peer_urls; u++)
            assert_string_equal(x->peer_urls[u], y->peer_urls[u]);
        assert_int_equal(x->n_client_urls, y->n_client_urls);
        for (uint32_t u = 0; u < x->n_client_urls; u++)
            assert_string_equal(x->client_urls[u], y->client_urls[u]);
    }
    assert_int_equal(a->n_removed, b->n_removed);
    assert_memory_equal(a->removed, b->removed, a->n_removed * sizeof(uint64_t));
}

static void round_trip(const cluster_state *c)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    assert_non_null(enc);
    assert_true(len > 0);
    cluster_state *back = malloc(sizeof *back);
    assert_non_null(back);
    memset(back, 0xa5, sizeof *back); /* decode must set everything it reports */
    assert_int_equal(cluster_decode(enc, len, back), FL_OK);
    assert_same_state(c, back);
    /* encoding what was decoded gives the same bytes (one encoding per table) */
    uint8_t *again = NULL;
    size_t again_len = 0;
    assert_int_equal(cluster_encode(back, &again, &again_len), FL_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, enc, len);
    free(again);
    free(back);
    free(enc);
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    round_trip(c); /* empty */
    fill_state(c, false);
    round_trip(c);
    fill_state(c, true);
    round_trip(c);
    /* what parsing --initial-cluster gives, as bootstrap stores it */
    char err[256];
    assert_int_equal(parse("a=http://h:1,b=http://h:2,b=http://h:22", c, err, sizeof err), FL_OK);
    round_trip(c);
    free(c);
}

/* Every strict prefix of a record, and the record with a byte appended,
 * is refused; nothing is read past the given length (ASan). A record at
 * the bounds is ~140 KB: `stride` > 1 checks every cut in its first and
 * last 4 KB and every stride-th in between (quadratic cost under ASan). */
static void check_truncations(const cluster_state *c, size_t stride)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    cluster_state *out = malloc(sizeof *out);
    assert_non_null(out);
    for (size_t cut = 0; cut < len; cut += cut < 4096 || cut + 4096 >= len ? 1 : stride) {
        uint8_t *prefix = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        assert_non_null(prefix);
        memcpy(prefix, enc, cut);
        fl_err rc = cluster_decode(prefix, cut, out);
        if (rc != FL_ERR_CORRUPT)
            fail_msg("prefix of %zu of %zu bytes decoded: %s", cut, len, fl_err_name(rc));
        free(prefix);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, enc, len);
    longer[len] = 0;
    assert_int_equal(cluster_decode(longer, len + 1, out), FL_ERR_CORRUPT);
    free(longer);
    free(out);
    free(enc);
}

static void test_decode_truncations(void **state)
{
    (void)state;
    cluster_state *c = calloc(1, sizeof *c);
    assert_non_null(c);
    check_truncations(c, 1);
    fill_state(c, false);
    check_truncations(c, 1); /* every cut: every field kind is in this one */
    fill_state(c, true);
    check_truncations(c, 61);
    free(c);
}

/* Records that are well framed but say impossible things are refused. */
static void test_decode_bad_values(void **state)
{
    (void)state;
    cluster_state *c = calloc(1, sizeof *c), *out = malloc(sizeof *out);
    assert_non_null(c);
    assert_non_null(out);
    fill_state(c, false);
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    /* layout: u8 version | u64 cluster_id | u64 applied_term | u16 len + version | ... */
    enc[0] = 2; /* an unknown encoding version */
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    enc[0] = 1;
    assert_int_equal(cluster_decode(enc, len, out), FL_OK);
    size_t vlen_at = 1 + 8 + 8;
    uint8_t saved = enc[vlen_at];
    enc[vlen_at] = CLUSTER_VERSION_MAX + 1; /* longer than the field */
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    enc[vlen_at] = saved;
    size_t voters_at = vlen_at + 2 + strlen(c->version);
    assert_int_equal(enc[voters_at], c->conf.n_voters);
    enc[voters_at] = RAFT_MEMBERS_MAX + 1; /* more voters than members can be */
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    enc[voters_at] = 0xff;
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    free(enc);

    /* member, URL and removed counts past their bounds */
    c->n_members = 1;
    c->members[0].n_peer_urls = 1;
    c->members[0].n_client_urls = 0;
    c->n_removed = 0;
    memset(&c->conf, 0, sizeof c->conf);
    c->version[0] = '\0';
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    size_t members_at = 1 + 8 + 8 + 2 + 3; /* version "", three empty id lists */
    assert_int_equal(enc[members_at], 1);
    enc[members_at] = RAFT_MEMBERS_MAX + 1;
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    enc[members_at] = 1;
    size_t name_at = members_at + 1 + 8;
    size_t peers_at = name_at + 2 + strlen(c->members[0].name) + 1;
    assert_int_equal(enc[peers_at], 1);
    enc[peers_at] = CLUSTER_URLS_MAX + 1;
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    enc[peers_at] = 1;
    enc[name_at] = 0xff; /* name length 0x..ff > CLUSTER_NAME_MAX */
    enc[name_at + 1] = 0xff;
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    free(enc);
    c->n_members = 0;
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    assert_int_equal(len, members_at + 1 + 2);
    enc[len - 2] = (uint8_t)(CLUSTER_REMOVED_MAX + 1);
    enc[len - 1] = (uint8_t)((CLUSTER_REMOVED_MAX + 1) >> 8);
    assert_int_equal(cluster_decode(enc, len, out), FL_ERR_CORRUPT);
    free(enc);
    free(out);
    free(c);
}

/* Random bytes, and valid records with random bytes changed, never crash
 * decode or make it report counts past their bounds. */
static void test_decode_garbage(void **state)
{
    (void)state;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *env = getenv("FLOTILLA_TEST_SEED");
    if (env && env[0])
        seed = strtoull(env, NULL, 0);
    print_message("seed %" PRIu64 " (FLOTILLA_TEST_SEED replays it)\n", seed);
    uint64_t x = seed ? seed : 1;
    cluster_state *c = calloc(1, sizeof *c), *out = malloc(sizeof *out);
    assert_non_null(c);
    assert_non_null(out);
    fill_state(c, false);
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_int_equal(cluster_encode(c, &enc, &len), FL_OK);
    int decoded = 0;
    for (int round = 0; round < 20000; round++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = round % 2 ? len : (size_t)(x % (len + 16));
        uint8_t *buf = malloc(n ? n : 1);
        assert_non_null(buf);
        if (round % 2) {
            memcpy(buf, enc, n);
            for (int k = 0; k < 1 + (int)(x >> 60); k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[x % n] = (uint8_t)(x >> 32);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (uint8_t)x;
            }
        }
        if (cluster_decode(buf, n, out) == FL_OK) {
            decoded++;
            assert_true(out->n_members <= RAFT_MEMBERS_MAX);
            assert_true(out->conf.n_voters <= RAFT_MEMBERS_MAX);
            assert_true(out->n_removed <= CLUSTER_REMOVED_MAX);
            for (uint32_t i = 0; i < out->n_members; i++) {
                assert_true(out->members[i].n_peer_urls <= CLUSTER_URLS_MAX);
                assert_true(strlen(out->members[i].name) <= CLUSTER_NAME_MAX);
            }
        }
        free(buf);
    }
    print_message("%d of 20000 garbled records decoded (all within bounds)\n", decoded);
    free(enc);
    free(out);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_initial),
        cmocka_unit_test(test_parse_initial_bad),
        cmocka_unit_test(test_parse_initial_duplicate_url),
        cmocka_unit_test(test_parse_urls),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_find_and_remove),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_decode_truncations),
        cmocka_unit_test(test_decode_bad_values),
        cmocka_unit_test(test_decode_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

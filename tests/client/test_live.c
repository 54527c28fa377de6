/* client.live: the client library against a real server (Flotilla or etcd).
 * usage: test_live LIVE_ENDPOINT DEAD_ENDPOINT BLACKHOLE_ENDPOINT
 *   LIVE: a serving member; DEAD: nothing listens; BLACKHOLE: accepts TCP and
 *   never answers. Prints one line per check; exits non-zero on the first
 *   failure. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static const char *live, *dead, *blackhole;

static client_sync *open_sync(const char *const *eps, size_t n, uint64_t dial_ms)
{
    client_options o = {.endpoints = eps, .endpoint_count = n, .dial_timeout_ms = dial_ms};
    client_sync *sc = NULL;
    fl_err err = client_sync_open(&o, &sc);
    CHECK(err == FL_OK, "open: %s", fl_err_name(err));
    return sc;
}

static void put(client_sync *sc, const char *k, const char *v)
{
    Etcdserverpb__PutRequest req;
    etcdserverpb__put_request__init(&req);
    req.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
    req.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
    Etcdserverpb__PutResponse *resp = NULL;
    client_status st;
    fl_err err = client_sync_put(sc, &req, 5000, &resp, &st);
    CHECK(err == FL_OK, "put %s: %s", k, st.message);
    CHECK(resp->header != NULL && resp->header->revision > 0, "put has a revision");
    client_free_response(resp);
}

/* 1. Many requests in flight on one connection. */
typedef struct counter {
    int ok, failed, stopped;
    fl_err last;
} counter;

static void count_done(void *ctx, const client_status *st, void *resp)
{
    counter *c = ctx;
    if (st->err == FL_OK)
        c->ok++;
    else if (st->err == FL_ERR_STOPPED)
        c->stopped++;
    else
        c->failed++;
    c->last = st->err;
    client_free_response(resp);
}

static void check_pipelining(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    client_options o = {.endpoints = &live, .endpoint_count = 1, .connections = 1};
    client *c = NULL;
    CHECK(client_open(&loop, &o, &c) == FL_OK, "open");
    counter cnt = {0};
    enum { N = 300 };
    char keys[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "live/pipe/%04d", i);
        Etcdserverpb__PutRequest req;
        etcdserverpb__put_request__init(&req);
        req.key = (ProtobufCBinaryData){strlen(keys[i]), (uint8_t *)keys[i]};
        req.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
        CHECK(client_call(c, CLIENT_PUT, &req, 10000, count_done, &cnt) == FL_OK, "call accepted");
    }
    /* done never runs inside client_call */
    CHECK(cnt.ok + cnt.failed == 0, "no completion before the loop runs");
    CHECK(client_outstanding(c) == N, "all outstanding");
    while (cnt.ok + cnt.failed < N)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(cnt.ok == N, "%d of %d puts ok (last %s)", cnt.ok, N, fl_err_name(cnt.last));
    /* Range over the prefix: exactly the N keys. */
    Etcdserverpb__RangeRequest rr;
    etcdserverpb__range_request__init(&rr);
    uint8_t end[16];
    size_t end_len = client_prefix_end((const uint8_t *)"live/pipe/", 10, end);
    rr.key = (ProtobufCBinaryData){10, (uint8_t *)"live/pipe/"};
    rr.range_end = (ProtobufCBinaryData){end_len, end};
    rr.count_only = 1;
    counter rc = {0};
    CHECK(client_call(c, CLIENT_RANGE, &rr, 5000, count_done, &rc) == FL_OK, "range accepted");
    while (rc.ok + rc.failed == 0)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(rc.ok == 1, "range ok");
    /* Close with calls outstanding: each completes with FL_ERR_STOPPED. */
    counter late = {0};
    for (int i = 0; i < 10; i++)
        CHECK(client_call(c, CLIENT_RANGE, &rr, 5000, count_done, &late) == FL_OK, "accepted");
    client_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(late.stopped + late.ok == 10, "outstanding calls completed at close (%d stopped, %d ok)",
          late.stopped, late.ok);
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");
    printf("ok pipelining: %d puts in flight on one connection\n", N);
}

/* 2. etcd's errors come back as fl_err + etcd's message. */
static void check_errors(void)
{
    client_sync *sc = open_sync(&live, 1, 2000);
    Etcdserverpb__PutRequest req;
    etcdserverpb__put_request__init(&req);
    req.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
    Etcdserverpb__PutResponse *resp = (void *)1;
    client_status st;
    fl_err err = client_sync_put(sc, &req, 5000, &resp, &st);
    CHECK(err == FL_ERR_KEY_EMPTY, "empty key: %s", fl_err_name(err));
    CHECK(resp == NULL, "no response on error");
    CHECK(st.grpc_code == 3, "InvalidArgument, got %d", st.grpc_code);
    CHECK(strcmp(st.message, "etcdserver: key is not provided") == 0, "message: %s", st.message);

    Etcdserverpb__RangeRequest rr;
    etcdserverpb__range_request__init(&rr);
    rr.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    rr.revision = 1000000000;
    Etcdserverpb__RangeResponse *rresp = NULL;
    err = client_sync_range(sc, &rr, 5000, &rresp, &st);
    CHECK(err == FL_ERR_FUTURE_REV, "future rev: %s (%s)", fl_err_name(err), st.message);
    CHECK(strstr(st.message, "required revision is a future revision") != NULL, "%s", st.message);

    /* Txn: compare-and-swap succeeds once, then fails. */
    put(sc, "live/cas", "a");
    Etcdserverpb__RangeRequest get;
    etcdserverpb__range_request__init(&get);
    get.key = (ProtobufCBinaryData){8, (uint8_t *)"live/cas"};
    err = client_sync_range(sc, &get, 5000, &rresp, &st);
    CHECK(err == FL_OK && rresp->n_kvs == 1, "get live/cas");
    int64_t mod = rresp->kvs[0]->mod_revision;
    client_free_response(rresp);
    for (int round = 0; round < 2; round++) {
        Etcdserverpb__Compare cmp;
        etcdserverpb__compare__init(&cmp);
        cmp.key = get.key;
        cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        cmp.mod_revision = mod;
        Etcdserverpb__PutRequest p;
        etcdserverpb__put_request__init(&p);
        p.key = get.key;
        p.value = (ProtobufCBinaryData){1, (uint8_t *)"b"};
        Etcdserverpb__RequestOp op;
        etcdserverpb__request_op__init(&op);
        op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op.request_put = &p;
        Etcdserverpb__Compare *cmps[] = {&cmp};
        Etcdserverpb__RequestOp *ops[] = {&op};
        Etcdserverpb__TxnRequest t;
        etcdserverpb__txn_request__init(&t);
        t.n_compare = 1;
        t.compare = cmps;
        t.n_success = 1;
        t.success = ops;
        Etcdserverpb__TxnResponse *tr = NULL;
        err = client_sync_txn(sc, &t, 5000, &tr, &st);
        CHECK(err == FL_OK, "txn: %s", st.message);
        CHECK(tr->succeeded == (round == 0), "round %d succeeded=%d", round, tr->succeeded);
        client_free_response(tr);
    }

    Etcdserverpb__StatusResponse *sr = NULL;
    CHECK(client_sync_status(sc, 5000, &sr, &st) == FL_OK, "status: %s", st.message);
    CHECK(sr->header && sr->header->member_id != 0, "status names the member");
    client_free_response(sr);
    Etcdserverpb__MemberListResponse *ml = NULL;
    CHECK(client_sync_member_list(sc, 5000, &ml, &st) == FL_OK, "member list: %s", st.message);
    CHECK(ml->n_members >= 1, "at least one member");
    client_free_response(ml);
    client_sync_close(sc);
    printf("ok errors: key empty, future revision, txn compare-and-swap, status, member list\n");
}

/* Generous: a membership change is a log entry, fsynced on a shared, loaded machine. */
#define MEMBERSHIP_TIMEOUT_MS 20000

/* Membership and leadership on a one-member cluster: a learner is added,
 * updated and removed; the refusals come back as their own fl_err. */
static void check_membership(void)
{
    client_sync *sc = open_sync(&live, 1, 2000);
    client_status st;
    Etcdserverpb__MemberListResponse *ml = NULL;
    CHECK(client_sync_member_list(sc, MEMBERSHIP_TIMEOUT_MS, &ml, &st) == FL_OK, "member list: %s",
          st.message);
    CHECK(ml->n_members == 1 && ml->members[0]->n_peerurls >= 1, "one member with a peer URL");
    uint64_t self = ml->members[0]->id;
    char self_peer[256];
    snprintf(self_peer, sizeof self_peer, "%s", ml->members[0]->peerurls[0]);
    client_free_response(ml);

    /* clientv3's URL check: nothing is sent */
    const char *bad[] = {"notaurl"};
    Etcdserverpb__MemberAddResponse *add = (void *)1;
    fl_err err = client_sync_member_add(sc, bad, 1, true, MEMBERSHIP_TIMEOUT_MS, &add, &st);
    CHECK(err == FL_ERR_INVALID && add == NULL && st.grpc_code == -1, "bad URL: %s",
          fl_err_name(err));
    CHECK(strcmp(st.message, "URL scheme must be http, https, unix, or unixs: notaurl") == 0,
          "bad URL text: %s", st.message);

    const char *taken[] = {self_peer};
    err = client_sync_member_add(sc, taken, 1, true, MEMBERSHIP_TIMEOUT_MS, &add, &st);
    CHECK(err == FL_ERR_PEER_URL_EXISTS && add == NULL, "an existing peer URL: %s (%s)",
          fl_err_name(err), st.message);

    const char *urls[] = {"http://127.0.0.1:1", "http://127.0.0.1:2"};
    err = client_sync_member_add(sc, urls, 2, true, MEMBERSHIP_TIMEOUT_MS, &add, &st);
    CHECK(err == FL_OK, "add learner: %s", st.message);
    CHECK(add->member && add->member->islearner && add->member->n_peerurls == 2,
          "the added member is a learner with both URLs");
    CHECK(add->n_members == 2 && add->header && add->header->cluster_id != 0, "two members");
    uint64_t learner = add->member->id;
    CHECK(learner != 0 && learner != self, "a new id");
    client_free_response(add);

    const char *moved[] = {"http://127.0.0.1:3"};
    Etcdserverpb__MemberUpdateResponse *upd = NULL;
    err = client_sync_member_update(sc, learner, moved, 1, MEMBERSHIP_TIMEOUT_MS, &upd, &st);
    CHECK(err == FL_OK && upd->n_members == 2, "update: %s", st.message);
    client_free_response(upd);

    Etcdserverpb__MemberPromoteResponse *pro = (void *)1;
    err = client_sync_member_promote(sc, self, MEMBERSHIP_TIMEOUT_MS, &pro, &st);
    CHECK(err == FL_ERR_MEMBER_NOT_LEARNER && pro == NULL, "promote a voter: %s (%s)",
          fl_err_name(err), st.message);
    CHECK(strcmp(st.message, "etcdserver: can only promote a learner member") == 0, "text: %s",
          st.message);

    Etcdserverpb__MemberRemoveResponse *rem = NULL;
    err = client_sync_member_remove(sc, learner, MEMBERSHIP_TIMEOUT_MS, &rem, &st);
    CHECK(err == FL_OK && rem->n_members == 1, "remove: %s", st.message);
    client_free_response(rem);
    err = client_sync_member_remove(sc, learner, MEMBERSHIP_TIMEOUT_MS, &rem, &st);
    CHECK(err == FL_ERR_MEMBER_NOT_FOUND && rem == NULL, "remove again: %s", fl_err_name(err));
    CHECK(strcmp(st.message, "etcdserver: member not found") == 0, "text: %s", st.message);

    Etcdserverpb__MoveLeaderResponse *mv = NULL;
    err = client_sync_move_leader(sc, self, MEMBERSHIP_TIMEOUT_MS, &mv, &st);
    CHECK(err == FL_OK, "move leader to itself: %s", st.message);
    client_free_response(mv);
    err = client_sync_move_leader(sc, 0x1234, MEMBERSHIP_TIMEOUT_MS, &mv, &st);
    CHECK(err == FL_ERR_BAD_LEADER_TRANSFEREE && mv == NULL, "unknown transferee: %s (%s)",
          fl_err_name(err), st.message);
    client_sync_close(sc);
    printf("ok membership: bad URL, add learner, existing peer URL, update, promote a voter, "
           "remove twice, move-leader\n");
}

/* 4. Bounds: the wait queue, the response size, the server's request size. */
static void check_bounds(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    client_options o = {.endpoints = &live, .endpoint_count = 1, .max_queued = 2};
    client *c = NULL;
    CHECK(client_open(&loop, &o, &c) == FL_OK, "open");
    Etcdserverpb__RangeRequest rr;
    etcdserverpb__range_request__init(&rr);
    rr.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    counter cnt = {0};
    /* Nothing is connected before the loop runs, so all three wait in the queue. */
    CHECK(client_call(c, CLIENT_RANGE, &rr, 5000, count_done, &cnt) == FL_OK, "1st queued");
    CHECK(client_call(c, CLIENT_RANGE, &rr, 5000, count_done, &cnt) == FL_OK, "2nd queued");
    CHECK(client_call(c, CLIENT_RANGE, &rr, 5000, count_done, &cnt) == FL_ERR_BUSY, "3rd refused");
    while (cnt.ok + cnt.failed < 2)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(cnt.ok == 2, "the two queued calls completed");
    client_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");

    /* A response above max_response_bytes is cut off with FL_ERR_TOO_LARGE. */
    static uint8_t big[1600000];
    memset(big, 'v', sizeof big);
    client_sync *sc = open_sync(&live, 1, 2000);
    Etcdserverpb__PutRequest p;
    etcdserverpb__put_request__init(&p);
    p.key = (ProtobufCBinaryData){8, (uint8_t *)"live/big"};
    p.value = (ProtobufCBinaryData){100000, big};
    Etcdserverpb__PutResponse *presp = NULL;
    client_status st;
    CHECK(client_sync_put(sc, &p, 5000, &presp, &st) == FL_OK, "100 kB put: %s", st.message);
    client_free_response(presp);
    /* The server refuses a request above its 1.5 MiB limit with etcd's text. */
    p.value = (ProtobufCBinaryData){sizeof big, big};
    fl_err err = client_sync_put(sc, &p, 5000, &presp, &st);
    CHECK(err == FL_ERR_TOO_LARGE, "1.6 MB put: %s (%s)", fl_err_name(err), st.message);
    CHECK(strstr(st.message, "request is too large") != NULL, "message: %s", st.message);
    client_sync_close(sc);

    const char *one[] = {live};
    client_options small = {.endpoints = one, .endpoint_count = 1, .max_response_bytes = 50000};
    CHECK(client_sync_open(&small, &sc) == FL_OK, "open small");
    Etcdserverpb__RangeRequest get;
    etcdserverpb__range_request__init(&get);
    get.key = p.key;
    Etcdserverpb__RangeResponse *rresp = NULL;
    err = client_sync_range(sc, &get, 5000, &rresp, &st);
    CHECK(err == FL_ERR_TOO_LARGE && rresp == NULL, "100 kB response, 50 kB cap: %s",
          fl_err_name(err));
    /* the connection stays usable */
    get.keys_only = 1;
    err = client_sync_range(sc, &get, 5000, &rresp, &st);
    CHECK(err == FL_OK && rresp->n_kvs == 1, "keys-only after the cut: %s", st.message);
    client_free_response(rresp);
    client_sync_close(sc);
    printf("ok bounds: queue full, response cap, server request limit\n");
}

/* A caller's retry policy runs inside done: each failure starts the next call. */
typedef struct retrier {
    client *c;
    int calls, failures, depth, max_depth;
    uint64_t iteration, last_failure_iteration;
    bool same_iteration; /* two failures in one loop turn: a retry never got its own connect */
    Etcdserverpb__RangeRequest *req;
} retrier;

static void count_iteration(uv_check_t *h)
{
    ((retrier *)h->data)->iteration++;
}

static void retry_done(void *ctx, const client_status *st, void *resp)
{
    retrier *r = ctx;
    r->depth++;
    if (r->depth > r->max_depth)
        r->max_depth = r->depth;
    client_free_response(resp);
    if (st->err == FL_ERR_UNAVAILABLE) {
        if (r->failures > 0 && r->iteration == r->last_failure_iteration)
            r->same_iteration = true;
        r->last_failure_iteration = r->iteration;
        r->failures++;
    }
    if (r->calls < 5) {
        r->calls++;
        CHECK(client_call(r->c, CLIENT_RANGE, r->req, 5000, retry_done, r) == FL_OK,
              "retry accepted");
    }
    r->depth--;
}

static void check_retry_from_done(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *eps[] = {dead};
    client_options o = {.endpoints = eps, .endpoint_count = 1, .connections = 2};
    retrier r = {0};
    CHECK(client_open(&loop, &o, &r.c) == FL_OK, "open");
    uv_check_t turns;
    uv_check_init(&loop, &turns);
    turns.data = &r;
    uv_check_start(&turns, count_iteration);
    Etcdserverpb__RangeRequest rr;
    etcdserverpb__range_request__init(&rr);
    rr.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    r.req = &rr;
    r.calls = 1;
    CHECK(client_call(r.c, CLIENT_RANGE, &rr, 5000, retry_done, &r) == FL_OK, "call");
    uint64_t t0 = uv_hrtime();
    while (r.failures < 5 && (uv_hrtime() - t0) < 10000000000ull)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(r.failures == 5 && r.calls == 5, "%d failures of %d calls", r.failures, r.calls);
    CHECK(r.max_depth == 1, "done never nested in done (depth %d)", r.max_depth);
    CHECK(!r.same_iteration, "each retry failed on its own connect, not in its predecessor's turn");
    uv_close((uv_handle_t *)&turns, NULL);
    client_close(r.c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");
    printf("ok retry from done: 5 calls against a dead endpoint, each failed alone\n");
}

/* 3. Deadlines, unreachable endpoints, failover. */
static void check_failures(void)
{
    client_sync *sc = open_sync(&blackhole, 1, 2000);
    Etcdserverpb__RangeRequest rr;
    etcdserverpb__range_request__init(&rr);
    rr.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
    Etcdserverpb__RangeResponse *resp = NULL;
    client_status st;
    uint64_t t0 = uv_hrtime();
    fl_err err = client_sync_range(sc, &rr, 300, &resp, &st);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK(err == FL_ERR_TIMEOUT, "black hole: %s (%s)", fl_err_name(err), st.message);
    CHECK(ms >= 250 && ms < 2000, "deadline honoured: %llu ms", (unsigned long long)ms);
    client_sync_close(sc);

    sc = open_sync(&dead, 1, 2000);
    err = client_sync_range(sc, &rr, 5000, &resp, &st);
    CHECK(err == FL_ERR_UNAVAILABLE, "dead endpoint: %s", fl_err_name(err));
    CHECK(strstr(st.message, "connection refused") != NULL, "message: %s", st.message);
    client_sync_close(sc);

    const char *both[] = {dead, live};
    sc = open_sync(both, 2, 2000);
    err = client_sync_range(sc, &rr, 5000, &resp, &st);
    CHECK(err == FL_OK, "failover to the second endpoint: %s", st.message);
    client_free_response(resp);
    client_sync_close(sc);
    printf("ok failures: deadline, refused, failover\n");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_live LIVE DEAD BLACKHOLE\n");
        return 2;
    }
    live = argv[1];
    dead = argv[2];
    blackhole = argv[3];
    check_pipelining();
    check_errors();
    check_membership();
    check_failures();
    check_bounds();
    check_retry_from_done();
    return 0;
}

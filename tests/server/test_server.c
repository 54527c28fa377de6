/* Unit tests for src/server, a member that is a Raft node: the write path
 * (group commit per loop turn and in the writer, one fsync per lone write,
 * nothing answered before its fdatasync, bounds, validation vs apply-time
 * answers, callbacks never re-entrant), the log of a new member (etcd 3.4's
 * indexes and revisions), a cluster of two without quorum, recovery
 * (committed entries past LMDB's applied index replayed, a SIGKILLed
 * member), identity checked against the flags, WAL disk full (appends
 * retried, new writes refused, the stuck ones time out, a stop while full),
 * fdatasync failure, quota, LMDB map full (fatal, replayed) and LMDB disk
 * full (applies wait), corrupt WAL detection, checkpoints (WAL release,
 * bounded WAL, gap refused at start-up) — all with the real wal and mvcc in
 * a temp dir on a uv loop. Expectations about indexes are computed from the
 * member's status before and after, not from the old one-entry-per-write log. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "mvcc/mvcc.h"
#include "server/cluster.h"
#include "server/entry.h"
#include "server/server.h"
#include "wal/wal.h"

/* ---- fixture ------------------------------------------------------------ */

typedef struct fixture {
    char dir[256];  /* temp dir (removed at teardown) */
    char data[300]; /* the data dir inside it */
    uv_loop_t loop;
    server *srv;
    server_options options;
} fixture;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/flotilla-server-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->options.name = "t";
    f->options.data_dir = f->data;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_null(f->srv); /* every test stops its member */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start(fixture *f)
{
    char err[512] = "";
    fl_err rc = server_create(&f->loop, &f->options, &f->srv, err, sizeof err);
    if (rc != FL_OK)
        fail_msg("server_create: %s: %s", fl_err_name(rc), err);
}

static void on_stopped(void *ctx)
{
    *(int *)ctx = 1;
}

static void stop(fixture *f)
{
    int stopped = 0;
    server_stop(f->srv, on_stopped, &stopped);
    while (!stopped)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    server_destroy(f->srv);
    f->srv = NULL;
}

/* ---- request helpers ---------------------------------------------------- */

typedef struct write_result {
    int calls;
    fl_err err;
    int64_t revision;
    int *in_call; /* set while server_write runs: done must not see it set */
    int *completed;
} write_result;

static void on_write(void *ctx, fl_err err, mvcc_response *response)
{
    write_result *r = ctx;
    assert_int_equal(*r->in_call, 0);
    r->calls++;
    r->err = err;
    if (err == FL_OK) {
        assert_non_null(response);
        r->revision = response->revision;
        mvcc_response_free(response);
        free(response);
    } else {
        assert_null(response);
    }
    (*r->completed)++;
}

static int in_call_flag;

static fl_err put(fixture *f, const char *key, const char *value, write_result *r, int *completed)
{
    memset(r, 0, sizeof *r);
    r->in_call = &in_call_flag;
    r->completed = completed;
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = (mvcc_bytes){(const uint8_t *)key, strlen(key)};
    req.u.put.value = (mvcc_bytes){(const uint8_t *)value, strlen(value)};
    in_call_flag = 1;
    fl_err err = server_write(f->srv, &req, on_write, r);
    in_call_flag = 0;
    return err;
}

/* Every wait has a deadline: a hang fails the test (with what it waited
 * for) instead of blocking CTest until its timeout. Generous, because the
 * machine is shared and ASan is slow. */
#define WAIT_MS_MAX 60000u

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void wait_for(fixture *f, const int *completed, int target)
{
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (*completed < target) {
        if (now_ms() > deadline)
            fail_msg("waited %u ms for %d answers, got %d", WAIT_MS_MAX, target, *completed);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* Runs the loop until the member leads, has applied everything in its log,
 * and its PUBLISH (name + client URLs) is in the applied member table: the
 * start-up entries (the leader's empty entry, PUBLISH, VERSION on a new
 * cluster) are then behind it, so the next write is the next index.
 * (The start-up proposals are queued while server_create elects the lone
 * member and flushed at the next loop turn, before anything past the
 * create-time state can be applied: applied == raft_index cannot hold
 * in between.) */
static void settle(fixture *f, server_status *out)
{
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    for (;;) {
        server_status st;
        server_get_status(f->srv, &st);
        server_header h;
        server_get_header(f->srv, &h);
        const server_member *members;
        size_t count;
        server_get_members(f->srv, &members, &count);
        bool published = false;
        for (size_t i = 0; i < count; i++)
            if (members[i].id == h.member_id && members[i].client_urls_count > 0)
                published = true;
        if (published && st.leader_id == h.member_id && st.raft_applied_index == st.raft_index) {
            if (out)
                *out = st;
            return;
        }
        if (now_ms() > deadline)
            fail_msg("member did not settle: leader=%016" PRIx64 " published=%d index=%" PRIu64
                     " applied=%" PRIu64,
                     st.leader_id, published, st.raft_index, st.raft_applied_index);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* Runs the loop for about ms without blocking in it: for checks that
 * something does NOT happen within a while. */
static void run_for_ms(fixture *f, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(10 * 1000);
    }
}

/* server_create must fail with `want` and a message containing `text`. */
static void expect_refused(fixture *f, fl_err want, const char *text)
{
    char msg[1024] = "";
    server *srv = NULL;
    fl_err rc = server_create(&f->loop, &f->options, &srv, msg, sizeof msg);
    print_message("refused (%s): %s\n", fl_err_name(rc), msg);
    assert_int_equal(rc, want);
    assert_null(srv);
    assert_non_null(strstr(msg, text));
}

static int64_t put_sync(fixture *f, const char *key, const char *value, fl_err *err_out)
{
    write_result r;
    int completed = 0;
    assert_int_equal(put(f, key, value, &r, &completed), FL_OK);
    wait_for(f, &completed, 1);
    assert_int_equal(r.calls, 1);
    *err_out = r.err;
    return r.revision;
}

typedef struct read_result {
    int calls;
    fl_err err;
    mvcc_range_result *result;
} read_result;

static void on_read(void *ctx, fl_err err, mvcc_range_result *result)
{
    read_result *r = ctx;
    assert_int_equal(in_call_flag, 0);
    r->calls++;
    r->err = err;
    r->result = result;
}

/* Reads one key, linearizable or serializable; returns its value
 * (malloc'ed, caller frees) or NULL. */
static char *get_ex(fixture *f, const char *key, int64_t *mod_revision, bool serializable)
{
    read_result r = {0};
    mvcc_range_req req = {.key = {(const uint8_t *)key, strlen(key)}};
    in_call_flag = 1;
    assert_int_equal(server_range(f->srv, &req, serializable, on_read, &r), FL_OK);
    in_call_flag = 0;
    assert_int_equal(r.calls, 0); /* never from inside the call */
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (r.calls == 0) {
        if (now_ms() > deadline)
            fail_msg("read of %s not answered in %u ms", key, WAIT_MS_MAX);
        /* a read is usually answered within one turn; UV_RUN_ONCE would then
         * block in poll until the next timer (tens of ms per read) */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (r.calls == 0)
            uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(r.calls, 1);
    if (r.err != FL_OK)
        fail_msg("read of %s: %s", key, fl_err_name(r.err));
    char *value = NULL;
    if (r.result->kvs_count == 1) {
        value = strndup((const char *)r.result->kvs[0].value.data, r.result->kvs[0].value.len);
        if (mod_revision)
            *mod_revision = r.result->kvs[0].mod_revision;
    }
    mvcc_range_result_free(r.result);
    free(r.result);
    return value;
}

static char *get(fixture *f, const char *key, int64_t *mod_revision)
{
    return get_ex(f, key, mod_revision, false);
}

static void assert_value_ex(fixture *f, const char *key, const char *want, bool serializable)
{
    char *got = get_ex(f, key, NULL, serializable);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void assert_value(fixture *f, const char *key, const char *want)
{
    assert_value_ex(f, key, want, false);
}

/* Sends a linearizable read of key and runs the loop until it is answered
 * (bounded); returns the error it got (the result, if any, is freed). */
static fl_err linearizable_read_err(fixture *f, const char *key)
{
    read_result r = {0};
    mvcc_range_req req = {.key = {(const uint8_t *)key, strlen(key)}};
    assert_int_equal(server_range(f->srv, &req, false, on_read, &r), FL_OK);
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (r.calls == 0) {
        if (now_ms() > deadline)
            fail_msg("linearizable read of %s never answered", key);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(r.calls, 1);
    if (r.result) {
        mvcc_range_result_free(r.result);
        free(r.result);
    }
    return r.err;
}

/* ---- tests -------------------------------------------------------------- */

/* Many writes queued at once: all answered in order, far fewer fsyncs than
 * writes (the proposals of one loop turn are one ready, one writer batch,
 * one fdatasync; batches queued while the writer syncs share the next). */
static void test_group_commit(void **state)
{
    fixture *f = *state;
    start(f);
    server_status st0;
    settle(f, &st0);
    server_header h0;
    server_get_header(f->srv, &h0);
    server_stats s0;
    server_get_stats(f->srv, &s0);
    enum { N = 3000 };
    write_result *results = calloc(N, sizeof *results);
    int completed = 0;
    char key[32], value[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_int_equal(put(f, key, value, &results[i], &completed), FL_OK);
    }
    assert_int_equal(completed, 0); /* nothing answered inside server_write */
    wait_for(f, &completed, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(results[i].calls, 1);
        assert_int_equal(results[i].err, FL_OK);
        assert_int_equal(results[i].revision, h0.revision + 1 + i); /* log order = submit order */
    }
    server_stats stats;
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.writes_acked - s0.writes_acked, N);
    assert_int_equal(stats.writes_pending, 0);
    uint64_t syncs = stats.wal_syncs - s0.wal_syncs;
    print_message("group commit: %d writes, %" PRIu64 " fsyncs, %" PRIu64 " WAL batches\n", N,
                  syncs, stats.wal_batches - s0.wal_batches);
    assert_true(syncs >= 1);
    assert_true(syncs <= N / 100); /* group commit: one fsync covers many writes */
    /* a batch that only moves the commit index is written, not synced */
    assert_true(stats.wal_syncs <= stats.wal_batches);
    server_status status;
    server_get_status(f->srv, &status);
    assert_int_equal(status.raft_index, st0.raft_index + N); /* one entry per write */
    assert_int_equal(status.raft_applied_index, status.raft_index);
    assert_int_equal(status.raft_term, st0.raft_term); /* no election meanwhile */
    assert_string_equal(status.version, SERVER_ETCD_API_VERSION);
    assert_true(status.db_size_bytes > 0);
    server_header header;
    server_get_header(f->srv, &header);
    assert_int_equal(header.revision, h0.revision + N);
    assert_value(f, "k00000", "v0");
    assert_value(f, "k02999", "v2999");
    free(results);
    stop(f);
}

/* Held inside fdatasync by the test (bounded), so batches queue behind it. */
static int hold_sync, in_sync;

static int hook_fdatasync_held(void *ctx, int fd)
{
    (void)ctx;
    __atomic_store_n(&in_sync, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 60000 && __atomic_load_n(&hold_sync, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    return fdatasync(fd);
}

/* Writes arriving in separate loop turns while the writer is inside an
 * fdatasync each become their own batch; the writer covers all of them with
 * ONE fdatasync when it gets back (group commit in the writer). And no write
 * is answered before the fdatasync covering its entry returned. */
static void test_group_commit_across_turns(void **state)
{
    fixture *f = *state;
    static const wal_test_hooks hooks = {.fdatasync = hook_fdatasync_held};
    f->options.wal_test_hooks = &hooks;
    start(f);
    server_status st0;
    settle(f, &st0);
    server_stats s0;
    server_get_stats(f->srv, &s0);
    enum { N = 50 };
    write_result r[N];
    int completed = 0;
    char key[32];
    __atomic_store_n(&in_sync, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&hold_sync, 1, __ATOMIC_SEQ_CST);
    assert_int_equal(put(f, "g00", "v", &r[0], &completed), FL_OK);
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (!__atomic_load_n(&in_sync, __ATOMIC_SEQ_CST)) { /* the writer syncs g00 */
        if (now_ms() > deadline)
            fail_msg("the writer never synced");
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    for (int i = 1; i < N; i++) { /* one write per loop turn: one batch each */
        snprintf(key, sizeof key, "g%02d", i);
        assert_int_equal(put(f, key, "v", &r[i], &completed), FL_OK);
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    server_status st;
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st0.raft_index + N); /* all in Raft's log */
    run_for_ms(f, 100);
    assert_int_equal(completed, 0); /* nothing answered before its fdatasync */
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_applied_index, st0.raft_applied_index); /* nor applied */
    __atomic_store_n(&hold_sync, 0, __ATOMIC_SEQ_CST);
    wait_for(f, &completed, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].err, FL_OK);
        if (i > 0)
            assert_int_equal(r[i].revision, r[i - 1].revision + 1);
    }
    server_stats stats;
    server_get_stats(f->srv, &stats);
    uint64_t syncs = stats.wal_syncs - s0.wal_syncs, batches = stats.wal_batches - s0.wal_batches;
    print_message("across turns: %d writes in %" PRIu64 " batches, %" PRIu64 " fsyncs\n", N,
                  batches, syncs);
    assert_true(batches >= N);
    assert_true(syncs <= 3); /* g00's, then one for the queued rest (a split at most) */
    stop(f);
}

/* One write at a time: each gets exactly one fsync (its entry); the ready
 * that then only moves the commit index is written without one. */
static void test_sequential_writes_sync_each(void **state)
{
    fixture *f = *state;
    start(f);
    settle(f, NULL);
    server_header h0;
    server_get_header(f->srv, &h0);
    server_stats s0;
    server_get_stats(f->srv, &s0);
    fl_err err;
    for (int i = 0; i < 20; i++) {
        int64_t rev = put_sync(f, "same", "x", &err);
        assert_int_equal(err, FL_OK);
        assert_int_equal(rev, h0.revision + 1 + i);
    }
    server_stats stats;
    server_get_stats(f->srv, &stats);
    print_message("sequential: 20 writes, %" PRIu64 " fsyncs, %" PRIu64 " WAL batches\n",
                  stats.wal_syncs - s0.wal_syncs, stats.wal_batches - s0.wal_batches);
    assert_int_equal(stats.wal_syncs - s0.wal_syncs, 20);
    /* and the commit-only readies were written: more batches than syncs */
    assert_true(stats.wal_batches - s0.wal_batches > 20);
    stop(f);
}

/* The log of a new single member is etcd 3.4's: index 1 the initial
 * configuration (term 1), index 2 the first leader's empty entry (term 2),
 * then its PUBLISH and the cluster VERSION, so three puts end at raft index
 * 7 and revision 4 (what etcd 3.4 reports). A restart adds the new leader's
 * empty entry and a PUBLISH (the version is set already) in term 3. */
static void test_new_member_log(void **state)
{
    fixture *f = *state;
    start(f);
    server_status st;
    settle(f, &st);
    server_header h;
    server_get_header(f->srv, &h);
    print_message("new member: index=%" PRIu64 " applied=%" PRIu64 " term=%" PRIu64
                  " revision=%" PRId64 "\n",
                  st.raft_index, st.raft_applied_index, st.raft_term, h.revision);
    assert_int_equal(st.raft_index, 4);
    assert_int_equal(st.raft_term, 2);
    assert_int_equal(st.leader_id, h.member_id);
    assert_int_equal(h.raft_term, 2);
    assert_int_equal(h.revision, 1); /* the start-up entries are no MVCC writes */
    server_stats stats;
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.term, 2);
    assert_int_equal(stats.leader_id, h.member_id);
    assert_int_equal(stats.leader_changes, 1);
    assert_int_equal(stats.forwarded, 0);
    assert_int_equal(stats.replayed, 0);
    const server_member *members;
    size_t count;
    server_get_members(f->srv, &members, &count);
    assert_int_equal(count, 1);
    assert_int_equal(members[0].client_urls_count, 1); /* published */
    assert_string_equal(members[0].client_urls[0], "http://localhost:2379");
    fl_err err;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(put_sync(f, "foo", "bar", &err), 2 + i);
        assert_int_equal(err, FL_OK);
    }
    server_get_status(f->srv, &st);
    server_get_header(f->srv, &h);
    assert_int_equal(st.raft_index, 7);
    assert_int_equal(st.raft_applied_index, 7);
    assert_int_equal(h.revision, 4);
    stop(f);

    start(f);
    server_status st2;
    settle(f, &st2);
    server_get_header(f->srv, &h);
    server_get_stats(f->srv, &stats);
    print_message("restarted: index=%" PRIu64 " term=%" PRIu64 "\n", st2.raft_index, st2.raft_term);
    assert_int_equal(st2.raft_term, st.raft_term + 1);
    assert_int_equal(h.raft_term, st2.raft_term);
    assert_int_equal(stats.term, st2.raft_term);
    assert_int_equal(st2.raft_index, st.raft_index + 2);
    assert_int_equal(stats.replayed, 0); /* a clean stop applied everything */
    assert_int_equal(h.revision, 4);
    assert_int_equal(put_sync(f, "foo", "baz", &err), 5);
    assert_int_equal(err, FL_OK);
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st2.raft_index + 1);
    stop(f);
}

static void test_validation_and_bounds(void **state)
{
    fixture *f = *state;
    f->options.pending_writes_max = 4;
    start(f);
    write_result r[5];
    int completed = 0;
    assert_int_equal(put(f, "", "v", &r[0], &completed), FL_ERR_KEY_EMPTY);
    for (int i = 0; i < 4; i++)
        assert_int_equal(put(f, "a", "v", &r[i], &completed), FL_OK);
    assert_int_equal(put(f, "a", "v", &r[4], &completed), FL_ERR_BUSY);
    wait_for(f, &completed, 4);
    assert_int_equal(put(f, "a", "v", &r[4], &completed), FL_OK); /* room again */
    wait_for(f, &completed, 5);
    assert_int_equal(r[4].err, FL_OK);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(completed, 5); /* the rejected ones were never answered */
    stop(f);
}

/* Writes one request and waits for its answer; returns the error. */
static fl_err write_sync(fixture *f, const mvcc_request *req, write_result *r)
{
    int completed = 0;
    memset(r, 0, sizeof *r);
    r->in_call = &in_call_flag;
    r->completed = &completed;
    in_call_flag = 1;
    fl_err err = server_write(f->srv, req, on_write, r);
    in_call_flag = 0;
    if (err != FL_OK)
        return err;
    wait_for(f, &completed, 1);
    assert_int_equal(r->calls, 1);
    return r->err;
}

/* Validation fails at once and takes no index; an error that depends on
 * the state (future or compacted revision) is the entry's answer: it is
 * applied (the index moves) and counted as acknowledged. */
static void test_validation_and_apply_errors(void **state)
{
    fixture *f = *state;
    f->options.max_txn_ops = 2;
    start(f);
    server_status st0, st;
    settle(f, &st0);
    server_stats s0, stats;
    server_get_stats(f->srv, &s0);
    write_result r;
    mvcc_op ops[3];
    for (int i = 0; i < 3; i++) {
        ops[i] = (mvcc_op){.type = MVCC_OP_PUT};
        ops[i].u.put.key = (mvcc_bytes){(const uint8_t *)(i == 2 ? "a" : i ? "b" : "a"), 1};
        ops[i].u.put.value = (mvcc_bytes){(const uint8_t *)"v", 1};
    }
    mvcc_request txn = {.type = MVCC_REQ_TXN};
    txn.u.txn.success = ops;
    txn.u.txn.success_count = 3; /* more than max_txn_ops */
    assert_int_equal(write_sync(f, &txn, &r), FL_ERR_TOO_MANY_OPS);
    txn.u.txn.success = &ops[1];
    txn.u.txn.success_count = 2; /* "b" and "a" */
    assert_int_equal(write_sync(f, &txn, &r), FL_OK);
    ops[1].u.put.key = (mvcc_bytes){(const uint8_t *)"a", 1};
    assert_int_equal(write_sync(f, &txn, &r), FL_ERR_DUPLICATE_KEY); /* "a" twice */
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st0.raft_index + 1); /* only the good txn took one */

    mvcc_request compact = {.type = MVCC_REQ_COMPACT};
    compact.u.compact.revision = 1000;
    assert_int_equal(write_sync(f, &compact, &r), FL_ERR_FUTURE_REV);
    assert_int_equal(r.calls, 1);
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st0.raft_index + 2); /* applied, with an error answer */
    assert_int_equal(st.raft_applied_index, st.raft_index);
    server_header h;
    server_get_header(f->srv, &h);
    compact.u.compact.revision = h.revision;
    assert_int_equal(write_sync(f, &compact, &r), FL_OK);
    compact.u.compact.revision = h.revision - 1;
    assert_int_equal(write_sync(f, &compact, &r), FL_ERR_COMPACTED);
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.writes_acked - s0.writes_acked, 4);
    assert_int_equal(stats.writes_failed - s0.writes_failed, 0);
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st0.raft_index + 4);
    stop(f);
}

/* A write accepted before stop is answered exactly once, FL_OK or
 * FL_ERR_STOPPED (which claims nothing: the entry may be in the log). The
 * writes are in the log in submit order, so after a restart the keys that
 * made it are a prefix of the submitted ones, and each has its value. */
static void test_stop_answers_pending(void **state)
{
    fixture *f = *state;
    start(f);
    settle(f, NULL);
    enum { N = 200 };
    write_result r[N];
    int completed = 0;
    char key[32];
    for (int round = 0; round < 2; round++) {
        /* half before a loop turn (proposed, handed to the writer), half after */
        for (int i = round * N / 2; i < (round + 1) * N / 2; i++) {
            snprintf(key, sizeof key, "p%03d", i);
            assert_int_equal(put(f, key, "v", &r[i], &completed), FL_OK);
        }
        if (round == 0)
            uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    int answered_before_stop = completed;
    int stopped = 0;
    server_stop(f->srv, on_stopped, &stopped);
    write_result late;
    assert_int_equal(put(f, "p", "v", &late, &completed), FL_ERR_STOPPED);
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (!stopped) {
        if (now_ms() > deadline)
            fail_msg("stop did not finish");
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(completed, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_true(r[i].err == FL_OK || r[i].err == FL_ERR_STOPPED);
        ok += r[i].err == FL_OK;
    }
    server_destroy(f->srv);
    f->srv = NULL;
    start(f);
    int present = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "p%03d", i);
        char *v = get(f, key, NULL);
        if (v) {
            assert_string_equal(v, "v");
            assert_int_equal(present, i); /* a prefix: no gap in submit order */
            present++;
            free(v);
        } else {
            assert_int_not_equal(r[i].err, FL_OK); /* an acknowledged write is there */
        }
    }
    print_message("stop: %d answered before stop, %d OK, %d in the log after restart\n",
                  answered_before_stop, ok, present);
    assert_true(present >= ok);
    stop(f);
}

/* Identity: nonzero, deterministic from the flags, kept across restarts,
 * and checked against the flags: a data dir of another member (name, peer
 * URLs, cluster token) is refused, and accepted again with the right flags. */
static void test_identity_stable(void **state)
{
    fixture *f = *state;
    start(f);
    server_header h1;
    server_get_header(f->srv, &h1);
    assert_int_not_equal(h1.member_id, 0);
    assert_int_not_equal(h1.cluster_id, 0);
    const server_member *members;
    size_t count;
    server_get_members(f->srv, &members, &count);
    assert_int_equal(count, 1);
    assert_int_equal(members[0].id, h1.member_id);
    assert_string_equal(members[0].name, "t");
    assert_int_equal(members[0].peer_urls_count, 1);
    assert_string_equal(members[0].peer_urls[0], "http://localhost:2380");
    assert_false(members[0].is_learner);
    stop(f);

    f->options.initial_cluster_token = "other"; /* another member id and cluster id */
    expect_refused(f, FL_ERR_INVALID, "belongs to member");
    f->options.initial_cluster_token = NULL;
    f->options.name = "u";
    expect_refused(f, FL_ERR_INVALID, "belongs to the member named \"t\"");
    f->options.name = "t";
    f->options.initial_advertise_peer_urls = "http://127.0.0.1:2390";
    expect_refused(f, FL_ERR_INVALID, "belongs to member");
    f->options.initial_advertise_peer_urls = NULL;
    /* the same member in another initial cluster: another cluster id */
    f->options.initial_cluster = "t=http://localhost:2380,u=http://localhost:2381";
    expect_refused(f, FL_ERR_INVALID, "belongs to cluster");
    /* the same cluster of one spelled out in --initial-cluster is the same member */
    f->options.initial_cluster = "t=http://localhost:2380";
    start(f);
    server_header h2;
    server_get_header(f->srv, &h2);
    assert_int_equal(h2.member_id, h1.member_id);
    assert_int_equal(h2.cluster_id, h1.cluster_id);
    stop(f);
    f->options.initial_cluster = NULL;

    /* the same flags elsewhere give the same ids, another token other ids */
    f->options.initial_cluster_token = "other";
    snprintf(f->data, sizeof f->data, "%s/data2", f->dir);
    start(f);
    server_get_header(f->srv, &h2);
    assert_int_not_equal(h2.member_id, h1.member_id);
    assert_int_not_equal(h2.cluster_id, h1.cluster_id);
    stop(f);
    f->options.initial_cluster_token = NULL;
    snprintf(f->data, sizeof f->data, "%s/data3", f->dir);
    start(f);
    server_get_header(f->srv, &h2);
    assert_int_equal(h2.member_id, h1.member_id);
    assert_int_equal(h2.cluster_id, h1.cluster_id);
    stop(f);
    /* a --initial-cluster that does not name this member with its URLs */
    snprintf(f->data, sizeof f->data, "%s/data4", f->dir);
    f->options.initial_cluster = "t=http://localhost:2381";
    expect_refused(f, FL_ERR_INVALID, "must name the same URLs");
    f->options.initial_cluster = "x=http://localhost:2380";
    expect_refused(f, FL_ERR_INVALID, "no member named");
    f->options.initial_cluster = NULL;
}

/* A new cluster of two whose other member never comes: this member writes
 * the same index 1 (both members, both voters), campaigns without winning
 * (pre-vote: an isolated member does not inflate its term), refuses writes
 * and linearizable reads with FL_ERR_NO_LEADER, serves serializable reads,
 * and stops and restarts cleanly. */
static void test_no_quorum(void **state)
{
    fixture *f = *state;
    f->options.initial_cluster = "t=http://127.0.0.1:1,u=http://127.0.0.1:2";
    f->options.initial_advertise_peer_urls = "http://127.0.0.1:1";
    f->options.listen_peer_urls = "http://127.0.0.1:0"; /* nobody dials us */
    f->options.heartbeat_ms = 10;
    f->options.election_ms = 50;
    start(f);
    server_header h;
    server_get_header(f->srv, &h);
    const char *t_urls[] = {"http://127.0.0.1:1"}, *u_urls[] = {"http://127.0.0.1:2"};
    uint64_t ids[2] = {cluster_member_id(t_urls, 1, "flotilla-cluster"),
                       cluster_member_id(u_urls, 1, "flotilla-cluster")};
    assert_int_equal(h.member_id, ids[0]);
    assert_int_equal(h.cluster_id, cluster_cluster_id("flotilla-cluster", ids, 2));
    const server_member *members;
    size_t count;
    server_get_members(f->srv, &members, &count);
    assert_int_equal(count, 2);
    assert_string_equal(members[1].name, "u");
    run_for_ms(f, 500); /* ten election timeouts */
    server_status st;
    server_get_status(f->srv, &st);
    server_stats stats;
    server_get_stats(f->srv, &stats);
    print_message("no quorum: leader=%" PRIx64 " term=%" PRIu64 " index=%" PRIu64
                  " applied=%" PRIu64 " leader_changes=%" PRIu64 "\n",
                  st.leader_id, st.raft_term, st.raft_index, st.raft_applied_index,
                  stats.leader_changes);
    assert_int_equal(st.leader_id, 0);
    assert_int_equal(st.raft_applied_index, 1); /* the initial configuration only */
    assert_int_equal(st.raft_term, 1);          /* pre-vote never won: no new term */
    assert_int_equal(stats.leader_changes, 0);
    write_result r;
    int completed = 0;
    assert_int_equal(put(f, "k", "v", &r, &completed), FL_ERR_NO_LEADER);
    read_result rr = {0};
    mvcc_range_req req = {.key = {(const uint8_t *)"k", 1}};
    assert_int_equal(server_range(f->srv, &req, false, on_read, &rr), FL_ERR_NO_LEADER);
    assert_value_ex(f, "k", NULL, true); /* serializable: the local state */
    run_for_ms(f, 50);
    assert_int_equal(completed, 0);
    assert_int_equal(rr.calls, 0);
    stop(f);
    start(f); /* the same flags: the stored identity and table */
    server_get_header(f->srv, &h);
    assert_int_equal(h.member_id, ids[0]);
    server_get_members(f->srv, &members, &count);
    assert_int_equal(count, 2);
    stop(f);
}

/* A second member on the same data dir is refused. */
static void test_data_dir_locked(void **state)
{
    fixture *f = *state;
    start(f);
    server *second = NULL;
    char err[512] = "";
    assert_int_equal(server_create(&f->loop, &f->options, &second, err, sizeof err), FL_ERR_BUSY);
    assert_non_null(strstr(err, "in use"));
    stop(f);
}

/* Appends puts keys[i]=values[i] to the stopped member's WAL, as entries of
 * its last term in the entry envelope (kind MVCC, a request id no waiter has).
 * commit: the hard state's commit covers them (a crash after the WAL's fsync
 * and before LMDB's commit leaves that), else the old one is kept (appended,
 * never committed). Returns the index of the first. */
static uint64_t append_puts(fixture *f, const wal_options *wopts, const char *const *keys,
                            const char *const *values, size_t n, bool commit)
{
    enum { MAX = 4 };
    assert_true(n <= MAX);
    char wal_dir[400];
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", f->data);
    wal *log = NULL;
    wal_recovery_info info;
    assert_int_equal(wal_open(wal_dir, wopts, &log, &info, NULL, 0), FL_OK);
    assert_true(info.has_hard_state);
    assert_true(info.last_index > 0);
    wal_entry entries[MAX];
    uint8_t *data[MAX];
    for (size_t i = 0; i < n; i++) {
        mvcc_request req = {.type = MVCC_REQ_PUT};
        req.u.put.key = (mvcc_bytes){(const uint8_t *)keys[i], strlen(keys[i])};
        req.u.put.value = (mvcc_bytes){(const uint8_t *)values[i], strlen(values[i])};
        uint8_t *payload = NULL;
        size_t payload_len = 0, len = 0;
        assert_int_equal(mvcc_request_encode(&req, &payload, &payload_len), FL_OK);
        assert_int_equal(entry_encode(ENTRY_MVCC, 0x7e57000000000000ull + i, payload, payload_len,
                                      &data[i], &len),
                         FL_OK);
        free(payload);
        entries[i] = (wal_entry){.index = info.last_index + 1 + i,
                                 .term = info.hard_state.term,
                                 .type = WAL_ENTRY_NORMAL,
                                 .data = data[i],
                                 .len = len};
    }
    wal_hard_state hs = info.hard_state;
    if (commit)
        hs.commit = info.last_index + n;
    assert_int_equal(wal_append_batch(log, entries, n, &hs), FL_OK);
    assert_int_equal(wal_sync(log), FL_OK);
    wal_close(log);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    return info.last_index + 1;
}

/* Committed entries in the WAL past LMDB's applied index are applied at
 * start (counted in stats.replayed); an entry appended but never committed
 * is not replayed, and a lone member's new leadership commits it. */
static void test_replay_past_applied(void **state)
{
    fixture *f = *state;
    start(f);
    settle(f, NULL);
    fl_err err;
    for (int i = 0; i < 10; i++)
        put_sync(f, "r", "old", &err);
    assert_int_equal(err, FL_OK);
    server_header h0;
    server_get_header(f->srv, &h0);
    server_status st0;
    server_get_status(f->srv, &st0);
    stop(f);

    const char *keys[2] = {"r", "r"}, *values[2] = {"new", "newer"};
    uint64_t first = append_puts(f, NULL, keys, values, 2, true);
    assert_int_equal(first, st0.raft_index + 1);

    start(f);
    server_stats stats;
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.replayed, 2); /* applied inside server_create */
    server_status st;
    server_get_status(f->srv, &st);
    assert_true(st.raft_applied_index >= first + 1);
    int64_t mod = 0;
    char *v = get(f, "r", &mod);
    assert_string_equal(v, "newer");
    free(v);
    assert_int_equal(mod, h0.revision + 2);
    settle(f, &st);
    int64_t rev = put_sync(f, "r", "after", &err); /* revisions and indexes continue */
    assert_int_equal(err, FL_OK);
    assert_int_equal(rev, h0.revision + 3);
    server_status st1;
    server_get_status(f->srv, &st1);
    assert_int_equal(st1.raft_index, st.raft_index + 1);
    stop(f);

    /* appended, not committed: no replay; the restarted leader's empty entry
     * commits it (a lone member is its own quorum), so it is applied */
    const char *k2[1] = {"u"}, *v2[1] = {"uncommitted"};
    append_puts(f, NULL, k2, v2, 1, false);
    start(f);
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.replayed, 0);
    settle(f, NULL);
    mod = 0;
    v = get(f, "u", &mod);
    assert_non_null(v);
    assert_string_equal(v, "uncommitted");
    free(v);
    assert_int_equal(mod, h0.revision + 4);
    stop(f);
    start(f);
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.replayed, 0);
    assert_value(f, "r", "after");
    stop(f);
}

/* A member killed with SIGKILL loses no acknowledged write. */
static void test_sigkill_recovery(void **state)
{
    fixture *f = *state;
    enum { N = 500 };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* child: write, and die hard once everything is acknowledged */
        uv_loop_t loop;
        uv_loop_init(&loop);
        server *srv = NULL;
        if (server_create(&loop, &f->options, &srv, NULL, 0) != FL_OK)
            _exit(3);
        static write_result r[N];
        int completed = 0;
        char key[32];
        for (int i = 0; i < N; i++) {
            snprintf(key, sizeof key, "kill%04d", i);
            r[i].in_call = &in_call_flag;
            r[i].completed = &completed;
            mvcc_request req = {.type = MVCC_REQ_PUT};
            req.u.put.key = (mvcc_bytes){(const uint8_t *)key, strlen(key)};
            req.u.put.value = (mvcc_bytes){(const uint8_t *)key, strlen(key)};
            if (server_write(srv, &req, on_write, &r[i]) != FL_OK)
                _exit(4);
        }
        while (completed < N)
            uv_run(&loop, UV_RUN_ONCE);
        for (int i = 0; i < N; i++)
            if (r[i].err != FL_OK || r[i].revision != 2 + i)
                _exit(5);
        raise(SIGKILL);
        _exit(6);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    start(f);
    char key[32];
    for (int i = 0; i < N; i += 7) {
        snprintf(key, sizeof key, "kill%04d", i);
        int64_t mod = 0;
        char *v = get(f, key, &mod);
        assert_non_null(v);
        assert_string_equal(v, key);
        assert_int_equal(mod, 2 + i);
        free(v);
    }
    server_header h;
    server_get_header(f->srv, &h);
    assert_int_equal(h.revision, N + 1);
    stop(f);
}

/* ---- disk full through the wal's test seam -------------------------------- */

static int disk_full; /* read by the hook on the writer thread; set only while idle */
static int fatal_count;

static void on_fatal_count(void *ctx, fl_err err, const char *reason)
{
    (void)ctx;
    print_message("fatal: %s: %s\n", fl_err_name(err), reason);
    fatal_count++;
}

static ssize_t hook_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t offset)
{
    (void)ctx;
    if (__atomic_load_n(&disk_full, __ATOMIC_SEQ_CST)) {
        /* a partial write first, as a real full disk may do, then ENOSPC */
        if (len > 8 && pwrite(fd, buf, 8, offset) == 8)
            return 8;
        errno = ENOSPC;
        return -1;
    }
    return pwrite(fd, buf, len, offset);
}

/* Tries a put on every loop turn until server_write stops refusing it with
 * FL_ERR_NOSPACE; returns that result (the put is then accepted or refused
 * for another reason). */
static fl_err put_when_room(fixture *f, const char *key, const char *value, write_result *r,
                            int *completed)
{
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    for (int tries = 0;; tries++) {
        fl_err err = put(f, key, value, r, completed);
        if (err != FL_ERR_NOSPACE) {
            print_message("put %s accepted after %d refusals\n", key, tries);
            return err;
        }
        if (now_ms() > deadline)
            fail_msg("writes still refused with nospace after %u ms", WAIT_MS_MAX);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* The WAL's disk fills up: the write whose entry is already in Raft's log
 * waits while the writer retries the append and times out
 * (FL_ERR_TIMEOUT: outcome unknown); new writes are refused at once with
 * FL_ERR_NOSPACE; reads go on; once space returns the same member (no
 * restart) appends the stuck entry, applies it, and takes writes again. */
static void test_wal_disk_full(void **state)
{
    fixture *f = *state;
    static const wal_test_hooks hooks = {.pwrite = hook_pwrite};
    f->options.wal_test_hooks = &hooks;
    f->options.request_timeout_ms = 1000;
    start(f);
    settle(f, NULL);
    fl_err err;
    server_header h0;
    server_get_header(f->srv, &h0);
    assert_int_equal(put_sync(f, "a", "1", &err), h0.revision + 1);
    assert_int_equal(err, FL_OK);
    server_status st1;
    server_get_status(f->srv, &st1);

    __atomic_store_n(&disk_full, 1, __ATOMIC_SEQ_CST);
    write_result stuck;
    int stuck_done = 0;
    assert_int_equal(put(f, "b", "stuck", &stuck, &stuck_done), FL_OK);
    uint64_t t0 = now_ms();
    wait_for(f, &stuck_done, 1);
    print_message("stuck write answered %s after %" PRIu64 " ms\n", fl_err_name(stuck.err),
                  now_ms() - t0);
    assert_int_equal(stuck.err, FL_ERR_TIMEOUT);
    server_stats stats;
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.writes_pending, 0);
    write_result refused;
    int refused_done = 0;
    assert_int_equal(put(f, "c", "refused", &refused, &refused_done), FL_ERR_NOSPACE);
    assert_int_equal(put(f, "a", "refused", &refused, &refused_done), FL_ERR_NOSPACE);
    server_status st;
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st1.raft_index + 1); /* the stuck entry, in Raft's log */
    assert_int_equal(st.raft_applied_index, st1.raft_applied_index);
    assert_value(f, "a", "1"); /* linearizable reads still work */
    assert_value(f, "b", NULL);
    read_result rr = {0};
    mvcc_range_req req = {.key = {(const uint8_t *)"a", 1}};
    assert_int_equal(server_range(f->srv, &req, true, on_read, &rr), FL_OK);
    while (rr.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(rr.err, FL_OK);
    assert_int_equal(rr.result->kvs_count, 1); /* and serializable ones */
    mvcc_range_result_free(rr.result);
    free(rr.result);

    __atomic_store_n(&disk_full, 0, __ATOMIC_SEQ_CST);
    write_result r;
    int completed = 0;
    assert_int_equal(put_when_room(f, "c", "3", &r, &completed), FL_OK);
    wait_for(f, &completed, 1);
    assert_int_equal(r.err, FL_OK);
    /* the stuck entry came first: it took the next revision */
    assert_int_equal(r.revision, h0.revision + 3);
    assert_value(f, "b", "stuck");
    assert_int_equal(refused_done, 0); /* refused writes are never answered */
    assert_int_equal(stuck.calls, 1);  /* nor is the timed-out one answered again */
    server_get_status(f->srv, &st);
    assert_int_equal(st.raft_index, st1.raft_index + 2); /* refused writes took no index */
    assert_int_equal(st.raft_applied_index, st.raft_index);
    stop(f);
    f->options.wal_test_hooks = NULL;
    start(f); /* the log is consistent: it opens and holds what was logged */
    assert_value(f, "a", "1");
    assert_value(f, "b", "stuck");
    assert_value(f, "c", "3");
    settle(f, NULL);
    assert_int_equal(put_sync(f, "d", "4", &err), h0.revision + 4);
    assert_int_equal(err, FL_OK);
    stop(f);
}

/* A pwrite hook for a deterministic interleaving: while disk_full is set
 * every write fails with ENOSPC, and while hold_write is set the failing
 * write first waits (bounded), with in_write set, so the test can queue more
 * batches behind the one the writer is appending. */
static int hold_write, in_write;

static ssize_t hook_pwrite_held(void *ctx, int fd, const void *buf, size_t len, off_t offset)
{
    (void)ctx;
    if (__atomic_load_n(&disk_full, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&in_write, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < 60000 && __atomic_load_n(&hold_write, __ATOMIC_SEQ_CST); i++)
            usleep(1000);
        errno = ENOSPC;
        return -1;
    }
    return pwrite(fd, buf, len, offset);
}

/* A stop while the WAL's disk is full, with a second batch queued behind the
 * one the writer keeps retrying: the writer gives up (it cannot append the
 * second without the first), the stop is clean (nothing fatal: nothing was
 * lost or acked), both waiting writes are answered FL_ERR_STOPPED once, and
 * a restart finds a clean log without them. */
static void test_wal_disk_full_stop(void **state)
{
    fixture *f = *state;
    static const wal_test_hooks hooks = {.pwrite = hook_pwrite_held};
    f->options.wal_test_hooks = &hooks;
    f->options.fatal = on_fatal_count;
    fatal_count = 0;
    start(f);
    settle(f, NULL);
    fl_err err;
    assert_true(put_sync(f, "a", "1", &err) > 0);
    assert_int_equal(err, FL_OK);
    server_status st0;
    server_get_status(f->srv, &st0);

    __atomic_store_n(&in_write, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&hold_write, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&disk_full, 1, __ATOMIC_SEQ_CST);
    enum { MAX = 64 };
    write_result r[MAX];
    int completed = 0, accepted = 0;
    assert_int_equal(put(f, "x", "first", &r[accepted++], &completed), FL_OK);
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (!__atomic_load_n(&in_write, __ATOMIC_SEQ_CST)) { /* the writer holds batch A */
        if (now_ms() > deadline)
            fail_msg("the writer never tried the append");
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    /* not stalled yet: a second write is taken and its batch queued behind */
    assert_int_equal(put(f, "y", "second", &r[accepted++], &completed), FL_OK);
    server_status st;
    do {
        if (now_ms() > deadline)
            fail_msg("the second entry was never handed to the writer");
        uv_run(&f->loop, UV_RUN_NOWAIT);
        server_get_status(f->srv, &st);
    } while (st.raft_index < st0.raft_index + 2);
    __atomic_store_n(&hold_write, 0, __ATOMIC_SEQ_CST); /* A's append fails now */
    for (;;) {                                          /* until the member refuses */
        assert_true(accepted < MAX);
        fl_err rc = put(f, "z", "more", &r[accepted], &completed);
        if (rc == FL_ERR_NOSPACE)
            break;
        assert_int_equal(rc, FL_OK);
        accepted++;
        if (now_ms() > deadline)
            fail_msg("the writer never stalled");
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    print_message("stalled with %d writes waiting\n", accepted);
    assert_int_equal(completed, 0); /* waiting (default timeout: seconds) */
    stop(f);
    __atomic_store_n(&disk_full, 0, __ATOMIC_SEQ_CST);
    assert_int_equal(completed, accepted);
    for (int i = 0; i < accepted; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, FL_ERR_STOPPED);
    }
    if (fatal_count != 0)
        fail_msg("a stop while the WAL was full made the member fatal (%d): the writer appended "
                 "a batch queued behind the one it gave up (wal: invalid index) and took that "
                 "for a broken WAL",
                 fatal_count);
    f->options.wal_test_hooks = NULL;
    start(f);
    assert_value(f, "a", "1");
    assert_value(f, "x", NULL); /* never made durable: cut, not half there */
    assert_value(f, "y", NULL);
    settle(f, NULL);
    assert_true(put_sync(f, "x", "ok", &err) > 0);
    assert_int_equal(err, FL_OK);
    stop(f);
}

/* A failed fdatasync leaves the log's durable state unknown: the write gets
 * FL_ERR_IO (never success), the member goes fatal and refuses later writes,
 * reads still work; a restart recovers from what is on disk. */
static int sync_fails;
static int fatal_calls_sync;

static int hook_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    if (__atomic_load_n(&sync_fails, __ATOMIC_SEQ_CST)) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static void on_fatal_sync(void *ctx, fl_err err, const char *reason)
{
    (void)ctx, (void)reason;
    assert_int_equal(err, FL_ERR_IO);
    fatal_calls_sync++;
}

static void test_wal_sync_failure_fatal(void **state)
{
    fixture *f = *state;
    static const wal_test_hooks hooks = {.fdatasync = hook_fdatasync};
    f->options.wal_test_hooks = &hooks;
    f->options.fatal = on_fatal_sync;
    f->options.request_timeout_ms = 1000;
    fatal_calls_sync = 0;
    start(f);
    settle(f, NULL);
    server_header h0;
    server_get_header(f->srv, &h0);
    fl_err err;
    assert_int_equal(put_sync(f, "s", "1", &err), h0.revision + 1);
    assert_int_equal(err, FL_OK);
    __atomic_store_n(&sync_fails, 1, __ATOMIC_SEQ_CST);
    put_sync(f, "s", "unknown", &err);
    assert_int_equal(err, FL_ERR_IO);
    assert_int_equal(fatal_calls_sync, 1);
    write_result r;
    int completed = 0;
    assert_int_equal(put(f, "s", "refused", &r, &completed), FL_ERR_IO);
    assert_value_ex(f, "s", "1", true); /* serializable reads still work */
    /* a linearizable read needs Raft, which a fatal member no longer runs:
     * it must still be answered once (server.h says "reads still work") */
    fl_err lin = linearizable_read_err(f, "s");
    print_message("linearizable read after fatal: %s\n", fl_err_name(lin));
    assert_true(lin == FL_OK || lin == FL_ERR_TIMEOUT);
    __atomic_store_n(&sync_fails, 0, __ATOMIC_SEQ_CST);
    stop(f);
    f->options.wal_test_hooks = NULL;
    start(f);
    char *v = get(f, "s", NULL); /* "1", or the unknown write if it reached the disk */
    assert_non_null(v);
    assert_true(strcmp(v, "1") == 0 || strcmp(v, "unknown") == 0);
    bool unknown_kept = strcmp(v, "unknown") == 0;
    free(v);
    settle(f, NULL);
    int64_t rev = put_sync(f, "s", "2", &err);
    assert_int_equal(err, FL_OK);
    /* the next revision after what the restart found */
    assert_int_equal(rev, h0.revision + (unknown_kept ? 3 : 2));
    stop(f);
    assert_int_equal(fatal_calls_sync, 1);
}

/* Writes 4 KB values under keys big0000.. all at once; returns how many got
 * FL_OK, fills r (N entries), and checks everything else is `refused_err`
 * (or FL_ERR_IO once the member went fatal). */
enum { BIG_N = 600, BIG_VALUE = 4000 };
static char big_values[BIG_N][BIG_VALUE + 1];
static int fatal_calls;

static void on_fatal(void *ctx, fl_err err, const char *reason)
{
    (void)ctx, (void)err, (void)reason;
    fatal_calls++;
}

static int put_big_values(fixture *f, write_result *r, fl_err refused_err, int *refused)
{
    int completed = 0;
    char key[32];
    for (int i = 0; i < BIG_N; i++) {
        snprintf(key, sizeof key, "big%04d", i);
        memset(big_values[i], 'a' + i % 26, BIG_VALUE);
        big_values[i][BIG_VALUE] = '\0';
        assert_int_equal(put(f, key, big_values[i], &r[i], &completed), FL_OK);
    }
    wait_for(f, &completed, BIG_N);
    int ok = 0;
    *refused = 0;
    for (int i = 0; i < BIG_N; i++) {
        assert_int_equal(r[i].calls, 1);
        if (r[i].err == FL_OK)
            ok++;
        else if (r[i].err == refused_err)
            (*refused)++;
        else if (!(r[i].err == FL_ERR_IO && fatal_calls > 0))
            fail_msg("write %d: %s", i, fl_err_name(r[i].err));
    }
    return ok;
}

static void assert_big_values(fixture *f, const write_result *r)
{
    char key[32];
    for (int i = 0; i < BIG_N; i++) {
        snprintf(key, sizeof key, "big%04d", i);
        if (r[i].err == FL_OK)
            assert_value(f, key, big_values[i]);
    }
}

/* Past --quota-backend-bytes writes get etcd's "database space exceeded"
 * (FL_ERR_NO_SPACE_QUOTA) as an answer; the member stays up, reads work, the
 * refused entries still took their log index. */
static void test_quota_exceeded(void **state)
{
    fixture *f = *state;
    f->options.quota_backend_bytes = 512u << 10;
    f->options.fatal = on_fatal;
    fatal_calls = 0;
    start(f);
    server_status st0;
    settle(f, &st0);
    write_result *r = calloc(BIG_N, sizeof *r);
    int refused = 0;
    int ok = put_big_values(f, r, FL_ERR_NO_SPACE_QUOTA, &refused);
    print_message("quota: %d applied, %d refused\n", ok, refused);
    assert_true(ok > 0 && refused > 0);
    assert_int_equal(ok + refused, BIG_N);
    assert_int_equal(fatal_calls, 0);
    server_status status;
    server_get_status(f->srv, &status);
    assert_int_equal(status.raft_index, st0.raft_index + BIG_N);
    assert_int_equal(status.raft_applied_index, status.raft_index);
    assert_big_values(f, r);
    stop(f);
    start(f);
    assert_big_values(f, r);
    stop(f);
    free(r);
}

/* The LMDB map itself fills up (quota above the map): that is a store
 * failure (mvcc), not an answer: the LMDB batch is rolled back and the member
 * goes fatal without acking any write of it (FL_ERR_IO); later writes get
 * FL_ERR_IO at once; serializable reads still work. The failed entries are
 * durable in the WAL: a restart with a bigger map replays them, and every
 * write answered FL_OK is there. Writes go in waves so some commit first. */
static void test_lmdb_map_full(void **state)
{
    fixture *f = *state;
    f->options.backend_map_bytes = 1u << 20;
    f->options.fatal = on_fatal;
    fatal_calls = 0;
    start(f);
    settle(f, NULL);
    enum { WAVE = 20 };
    write_result *r = calloc(BIG_N, sizeof *r);
    int ok = 0, failed = 0, sent = 0;
    char key[32];
    while (sent < BIG_N && fatal_calls == 0) {
        int completed = 0, n = 0;
        for (; n < WAVE && sent + n < BIG_N; n++) {
            int i = sent + n;
            snprintf(key, sizeof key, "big%04d", i);
            memset(big_values[i], 'a' + i % 26, BIG_VALUE);
            big_values[i][BIG_VALUE] = '\0';
            assert_int_equal(put(f, key, big_values[i], &r[i], &completed), FL_OK);
        }
        wait_for(f, &completed, n);
        for (int i = sent; i < sent + n; i++) {
            if (r[i].err == FL_OK)
                ok++;
            else if (r[i].err == FL_ERR_IO)
                failed++;
            else
                fail_msg("write %d: %s", i, fl_err_name(r[i].err));
        }
        sent += n;
    }
    print_message("map full: %d applied, %d failed (io) of %d sent, fatal=%d\n", ok, failed, sent,
                  fatal_calls);
    assert_int_equal(fatal_calls, 1);
    assert_true(ok > 0 && failed > 0);
    write_result late;
    int late_done = 0;
    assert_int_equal(put(f, "late", "x", &late, &late_done), FL_ERR_IO);
    for (int i = 0; i < sent; i++) { /* serializable reads still work */
        snprintf(key, sizeof key, "big%04d", i);
        if (r[i].err == FL_OK)
            assert_value_ex(f, key, big_values[i], true);
    }
    server_status st;
    server_get_status(f->srv, &st);
    assert_non_null(strstr(st.error, "failed"));
    stop(f);
    f->options.backend_map_bytes = 64u << 20;
    fatal_calls = 0;
    start(f); /* replays what LMDB could not take */
    server_stats stats;
    server_get_stats(f->srv, &stats);
    int present = 0;
    for (int i = 0; i < sent; i++) {
        snprintf(key, sizeof key, "big%04d", i);
        char *v = get(f, key, NULL);
        if (r[i].err == FL_OK)
            assert_non_null(v); /* acknowledged: there */
        if (v) {
            assert_string_equal(v, big_values[i]);
            present++;
            free(v);
        }
    }
    print_message("after restart: replayed=%" PRIu64 ", %d of %d present\n", stats.replayed,
                  present, sent);
    assert_true(stats.replayed >= 1); /* at least the entry LMDB could not take */
    assert_true(present > ok);
    assert_int_equal(fatal_calls, 0);
    stop(f);
    free(r);
}

/* The disk under LMDB fills up while the WAL still has room (a 1 MiB tmpfs
 * mounted on <data>/db; needs root). The logged write is neither failed nor
 * acked: it waits while the member retries; new writes get FL_ERR_NOSPACE at
 * once, reads work, nothing is fatal. With room it is answered FL_OK. A stop
 * during such a wait answers FL_ERR_STOPPED and the restart applies it. */
static char lmdb_mount[320];
static bool lmdb_mounted;

static int teardown_lmdb_mount(void **state)
{
    if (lmdb_mounted) {
        umount2(lmdb_mount, MNT_DETACH);
        lmdb_mounted = false;
    }
    return teardown(state);
}

/* Runs the loop until *completed reaches 1 or the member has stalled
 * `stalls` times; returns whether the write completed. */
static bool run_until_done_or_stall(fixture *f, const int *completed, uint64_t stalls)
{
    server_stats st;
    for (;;) {
        server_get_stats(f->srv, &st);
        if (*completed || st.apply_stalls >= stalls)
            return *completed != 0;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void test_lmdb_disk_full(void **state)
{
    fixture *f = *state;
    snprintf(lmdb_mount, sizeof lmdb_mount, "%s/db", f->data);
    assert_int_equal(mkdir(f->data, 0700), 0);
    assert_int_equal(mkdir(lmdb_mount, 0700), 0);
    if (geteuid() != 0 || mount("tmpfs", lmdb_mount, "tmpfs", 0, "size=1m") != 0) {
        const char *skip_env = getenv("FLOTILLA_SKIP_PRIVILEGED");
        if (skip_env && strcmp(skip_env, "1") == 0) {
            print_message("SKIP: test_lmdb_disk_full needs root to mount a tmpfs\n");
            skip();
        }
        fail_msg("test_lmdb_disk_full needs root to mount a tmpfs on %s (set "
                 "FLOTILLA_SKIP_PRIVILEGED=1 to skip)",
                 lmdb_mount);
    }
    lmdb_mounted = true;
    f->options.fatal = on_fatal;
    fatal_calls = 0;
    start(f);

    enum { VALUE = 100 * 1024, MAX_PUTS = 30 };
    static char value[VALUE + 1];
    memset(value, 'v', VALUE);
    char key[32];
    write_result r;
    int completed = 0;
    int i = 0;
    for (; i < MAX_PUTS; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        completed = 0;
        assert_int_equal(put(f, key, value, &r, &completed), FL_OK);
        if (!run_until_done_or_stall(f, &completed, 1))
            break;
        assert_int_equal(r.err, FL_OK);
        assert_int_equal(r.revision, i + 2);
    }
    assert_true(i > 0 && i < MAX_PUTS);
    /* k<i> is logged but LMDB has no room: it waits, unanswered */
    run_for_ms(f, 300);
    assert_int_equal(r.calls, 0);
    assert_int_equal(fatal_calls, 0);
    write_result r2;
    int completed2 = 0;
    assert_int_equal(put(f, "refused", "x", &r2, &completed2), FL_ERR_NOSPACE);
    assert_value_ex(f, "k00", value, true); /* serializable reads work */
    assert_value_ex(f, key, NULL, true);    /* and see only what was applied */
    /* a linearizable read's index is the commit index, which holds the
     * waiting entry: it waits for it (it must not miss a committed write) */
    read_result lin = {0};
    mvcc_range_req lin_req = {.key = {(const uint8_t *)key, strlen(key)}};
    assert_int_equal(server_range(f->srv, &lin_req, false, on_read, &lin), FL_OK);
    run_for_ms(f, 200);
    assert_int_equal(lin.calls, 0);

    /* room again: the same write is applied and answered */
    assert_int_equal(mount("tmpfs", lmdb_mount, "tmpfs", MS_REMOUNT, "size=8m"), 0);
    wait_for(f, &completed, 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, FL_OK);
    assert_int_equal(r.revision, i + 2);
    uint64_t deadline = now_ms() + WAIT_MS_MAX;
    while (lin.calls == 0 && now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(lin.calls, 1);
    assert_int_equal(lin.err, FL_OK); /* answered within the request timeout, with the write */
    assert_int_equal(lin.result->kvs_count, 1);
    assert_int_equal(lin.result->kvs[0].mod_revision, i + 2);
    mvcc_range_result_free(lin.result);
    free(lin.result);
    assert_value(f, key, value);
    int64_t rev = put_sync(f, "after", "1", &r2.err);
    assert_int_equal(r2.err, FL_OK);
    assert_int_equal(rev, i + 3);

    /* full again, then a stop while the write waits */
    char filler[400];
    snprintf(filler, sizeof filler, "%s/filler", lmdb_mount);
    int fd = open(filler, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    for (int n = 0; n < 8 * 1024; n++)
        if (write(fd, value, 1024) != 1024)
            break;
    close(fd);
    completed = 0;
    assert_int_equal(put(f, "stopped", value, &r, &completed), FL_OK);
    assert_false(run_until_done_or_stall(f, &completed, 2));
    stop(f);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, FL_ERR_STOPPED);
    assert_int_equal(fatal_calls, 0);
    assert_int_equal(unlink(filler), 0);
    start(f); /* it was logged: the restart applies it */
    int64_t mod = 0;
    char *got = get(f, "stopped", &mod);
    assert_non_null(got);
    assert_int_equal(mod, i + 4);
    free(got);
    assert_value(f, key, value);
    stop(f);
}

/* A corrupt record in the middle of the WAL stops start-up, naming the file. */
static void test_corrupt_wal_refused(void **state)
{
    fixture *f = *state;
    start(f);
    fl_err err;
    for (int i = 0; i < 50; i++)
        put_sync(f, "c", "0123456789abcdef", &err);
    stop(f);
    char wal_dir[400], seg[700] = "";
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", f->data);
    DIR *d = opendir(wal_dir);
    assert_non_null(d);
    struct dirent *e;
    off_t biggest = 0;
    while ((e = readdir(d))) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", wal_dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > biggest) {
            biggest = st.st_size;
            snprintf(seg, sizeof seg, "%s", path);
        }
    }
    closedir(d);
    assert_true(biggest > 200);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    unsigned char byte;
    off_t at = biggest / 2;
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0xff;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);
    char msg[512] = "";
    server *srv = NULL;
    assert_int_equal(server_create(&f->loop, &f->options, &srv, msg, sizeof msg), FL_ERR_CORRUPT);
    assert_null(srv);
    const char *base = strrchr(seg, '/') + 1;
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, base));
    assert_non_null(strstr(msg, "offset"));
}

/* ---- checkpoints: LMDB synced, WAL segments released ---------------------- */

/* Counts the segment files in <data>/wal; *min_first gets the smallest first
 * index in their names ("<seq>-<first index>.wal"), 0 if there are none. */
static int wal_files(const fixture *f, uint64_t *min_first)
{
    char wal_dir[400];
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", f->data);
    DIR *d = opendir(wal_dir);
    assert_non_null(d);
    int n = 0;
    *min_first = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".wal") != 0)
            continue;
        const char *dash = strchr(e->d_name, '-');
        assert_non_null(dash);
        uint64_t first = strtoull(dash + 1, NULL, 16);
        if (n == 0 || first < *min_first)
            *min_first = first;
        n++;
    }
    closedir(d);
    return n;
}

enum { CKPT_SEGMENT = 4096, CKPT_EVERY = 100, CKPT_ROUNDS = 40, CKPT_WAVE = 50 };
#define CKPT_VALUE "value-0123456789-0123456789-0123456789-0123456789"

/* Queues one wave of puts ck<i> and waits for all of them. */
static void ckpt_wave(fixture *f, int first, write_result *r)
{
    int completed = 0;
    char key[32];
    for (int i = 0; i < CKPT_WAVE; i++) {
        snprintf(key, sizeof key, "ck%05d", first + i);
        assert_int_equal(put(f, key, CKPT_VALUE, &r[i], &completed), FL_OK);
    }
    wait_for(f, &completed, CKPT_WAVE);
    for (int i = 0; i < CKPT_WAVE; i++) {
        assert_int_equal(r[i].err, FL_OK);
        assert_int_equal(r[i].revision, 2 + first + i);
    }
}

static void ckpt_check_all(fixture *f, int count)
{
    char key[32];
    for (int i = 0; i < count; i++) {
        snprintf(key, sizeof key, "ck%05d", i);
        int64_t mod = 0;
        char *v = get(f, key, &mod);
        assert_non_null(v);
        assert_string_equal(v, CKPT_VALUE);
        assert_int_equal(mod, 2 + i);
        free(v);
    }
}

/* Many writes with 4 KiB segments and a checkpoint every 100 entries: old
 * segments go, the number of WAL files stays bounded, the stats count the
 * checkpoints, and a restart finds every write. */
static void test_checkpoint_releases_wal(void **state)
{
    fixture *f = *state;
    f->options.wal_segment_bytes = CKPT_SEGMENT;
    f->options.snapshot_count = CKPT_EVERY;
    start(f);
    write_result r[CKPT_WAVE];
    int most_files = 0;
    uint64_t min_first = 0;
    for (int round = 0; round < CKPT_ROUNDS; round++) {
        ckpt_wave(f, round * CKPT_WAVE, r);
        int n = wal_files(f, &min_first);
        if (n > most_files)
            most_files = n;
    }
    const int total = CKPT_ROUNDS * CKPT_WAVE;
    server_status st;
    server_stats stats;
    /* The sync runs beside the writer, and a request that comes while one
     * still runs is dropped: it is asked again at the next apply only. So
     * when the last waves' requests were dropped (a slow disk, a loaded
     * machine), nothing asks again until another write: nudge with one. */
    const uint64_t checkpoints_min = (uint64_t)(total / CKPT_EVERY) / 4;
    int nudges = 0;
    uint64_t deadline = now_ms() + WAIT_MS_MAX, last_seen = 0, since = now_ms();
    for (;;) {
        server_get_status(f->srv, &st);
        server_get_stats(f->srv, &stats);
        if (stats.checkpoints >= checkpoints_min &&
            stats.last_checkpoint_index > st.raft_applied_index - 2 * CKPT_EVERY)
            break;
        if (now_ms() > deadline)
            fail_msg("checkpoints stuck at %" PRIu64 " (applied %" PRIu64 ")",
                     stats.last_checkpoint_index, st.raft_applied_index);
        if (stats.last_checkpoint_index != last_seen) {
            last_seen = stats.last_checkpoint_index;
            since = now_ms();
        } else if (now_ms() - since > 300) {
            fl_err nudge_err;
            put_sync(f, "nudge", "x", &nudge_err);
            assert_int_equal(nudge_err, FL_OK);
            nudges++;
            since = now_ms();
        }
        run_for_ms(f, 20);
    }
    const uint64_t applied = st.raft_applied_index; /* every write is answered: all applied */
    assert_true(applied >= (uint64_t)total);
    int files = wal_files(f, &min_first);
    print_message("checkpoints=%" PRIu64 " failures=%" PRIu64 " last=%" PRIu64 " applied=%" PRIu64
                  " wal files now=%d most=%d min_first=%" PRIu64 "\n",
                  stats.checkpoints, stats.checkpoint_failures, stats.last_checkpoint_index,
                  applied, files, most_files, min_first);
    print_message("nudges: %d\n", nudges);
    /* ~100 bytes a record: 2000 entries are ~50 segments without release */
    assert_true(stats.checkpoints >= checkpoints_min);
    assert_int_equal(stats.checkpoint_failures, 0);
    assert_true(stats.last_checkpoint_index > applied - 2 * CKPT_EVERY);
    assert_true(stats.last_checkpoint_index <= applied);
    assert_true(most_files <= 20); /* loaded machines lag; without release it is ~50 */
    assert_true(min_first > applied - 3 * CKPT_EVERY);
    /* never past the applied index: the member's WAL still starts <= applied + 1 */
    assert_true(min_first <= stats.last_checkpoint_index + 1);
    ckpt_check_all(f, total);
    stop(f);

    /* the clean stop checkpointed: nothing to replay, every key there */
    start(f);
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.replayed, 0);
    ckpt_check_all(f, total);
    server_header h;
    server_get_header(f->srv, &h);
    /* a new member's first put is revision 2 */
    assert_int_equal(h.revision, total + nudges + 1);
    /* writes continue at the right index after a released prefix */
    settle(f, &st);
    fl_err err;
    assert_int_equal(put_sync(f, "after", "x", &err), total + nudges + 2);
    assert_int_equal(err, FL_OK);
    server_status st_after;
    server_get_status(f->srv, &st_after);
    assert_int_equal(st_after.raft_index, st.raft_index + 1);
    stop(f);

    /* replay after a release: two committed entries appended behind the
     * member's back (a crash between WAL fsync and LMDB commit) are applied at
     * start */
    wal_options wopts = {.segment_bytes_max = CKPT_SEGMENT};
    const char *keys[2] = {"late1", "late2"}, *values[2] = {"v", "v"};
    uint64_t first = append_puts(f, &wopts, keys, values, 2, true);
    assert_int_equal(first, st_after.raft_index + 1);
    assert_true(wal_files(f, &min_first) > 0);
    assert_true(min_first > 1);
    start(f);
    server_get_stats(f->srv, &stats);
    assert_int_equal(stats.replayed, 2);
    int64_t mod = 0;
    char *v = get(f, "late2", &mod);
    assert_non_null(v);
    free(v);
    assert_int_equal(mod, total + nudges + 4); /* after "after" and late1 */
    ckpt_check_all(f, total);
    stop(f);
}

/* LMDB behind the WAL's first entry (db/ lost after a release): start-up
 * refuses with a clear message instead of serving a state with a gap; with
 * the right db/ back it starts. */
static void test_checkpoint_gap_refused(void **state)
{
    fixture *f = *state;
    f->options.wal_segment_bytes = CKPT_SEGMENT;
    f->options.snapshot_count = CKPT_EVERY;
    start(f);
    write_result r[CKPT_WAVE];
    for (int round = 0; round < 10; round++)
        ckpt_wave(f, round * CKPT_WAVE, r);
    stop(f);
    uint64_t min_first = 0;
    wal_files(f, &min_first);
    assert_true(min_first > 1);
    char db[400], moved[400];
    snprintf(db, sizeof db, "%s/db", f->data);
    snprintf(moved, sizeof moved, "%s/db.saved", f->dir);
    assert_int_equal(rename(db, moved), 0);
    char msg[1024] = "";
    server *srv = NULL;
    assert_int_equal(server_create(&f->loop, &f->options, &srv, msg, sizeof msg), FL_ERR_CORRUPT);
    assert_null(srv);
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, "missing"));
    assert_non_null(strstr(msg, "gap"));
    /* the refused start created an empty db/; put the real one back */
    nftw(db, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(rename(moved, db), 0);
    start(f);
    ckpt_check_all(f, 10 * CKPT_WAVE);
    stop(f);
}

static int ckpt_sync_fail; /* set while the loop is idle; read on the writer thread */
static int ckpt_sync_calls;

static fl_err hook_checkpoint_sync(void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&ckpt_sync_calls, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&ckpt_sync_fail, __ATOMIC_SEQ_CST) ? FL_ERR_NOSPACE : FL_OK;
}

/* A failed LMDB sync skips the checkpoint: counted, nothing released, the
 * member keeps serving; once syncs work again the WAL is released. */
static void test_checkpoint_sync_failure(void **state)
{
    fixture *f = *state;
    f->options.wal_segment_bytes = CKPT_SEGMENT;
    f->options.snapshot_count = CKPT_EVERY;
    f->options.test_checkpoint_sync = hook_checkpoint_sync;
    ckpt_sync_calls = 0;
    __atomic_store_n(&ckpt_sync_fail, 1, __ATOMIC_SEQ_CST);
    start(f);
    write_result r[CKPT_WAVE];
    ckpt_wave(f, 0, r);
    uint64_t wal_start = 0; /* the WAL's first index before any release */
    wal_files(f, &wal_start);
    assert_true(wal_start > 0);
    for (int round = 1; round < 12; round++)
        ckpt_wave(f, round * CKPT_WAVE, r);
    server_stats stats;
    server_get_stats(f->srv, &stats);
    for (int i = 0; i < 2000 && stats.checkpoint_failures < 2; i++) {
        usleep(5000);
        server_get_stats(f->srv, &stats);
    }
    uint64_t min_first = 0;
    int files = wal_files(f, &min_first);
    print_message("sync failing: failures=%" PRIu64 " checkpoints=%" PRIu64
                  " files=%d first=%" PRIu64 "\n",
                  stats.checkpoint_failures, stats.checkpoints, files, min_first);
    assert_true(stats.checkpoint_failures >= 2); /* requests while one runs are dropped */
    assert_int_equal(stats.checkpoints, 0);
    assert_int_equal(stats.last_checkpoint_index, 0);
    assert_int_equal(min_first, wal_start); /* nothing released */
    assert_true(files > 8);
    ckpt_check_all(f, 12 * CKPT_WAVE);
    server_status st;
    server_get_status(f->srv, &st); /* every entry so far was written while syncs failed */

    __atomic_store_n(&ckpt_sync_fail, 0, __ATOMIC_SEQ_CST);
    for (int round = 12; round < 16; round++)
        ckpt_wave(f, round * CKPT_WAVE, r);
    for (int i = 0; i < 2000 && stats.checkpoints < 1; i++) {
        usleep(5000);
        server_get_stats(f->srv, &stats);
    }
    assert_true(stats.checkpoints >= 1);
    files = wal_files(f, &min_first);
    print_message("sync works: checkpoints=%" PRIu64 " last=%" PRIu64 " files=%d first=%" PRIu64
                  " (applied before: %" PRIu64 ")\n",
                  stats.checkpoints, stats.last_checkpoint_index, files, min_first,
                  st.raft_applied_index);
    assert_true(min_first > st.raft_applied_index);
    assert_true(files <= 6);
    stop(f);
    start(f);
    ckpt_check_all(f, 16 * CKPT_WAVE);
    stop(f);
}

/* A member SIGKILLed after checkpoints released segments, with entries past
 * the last checkpoint: the restart finds every acknowledged write at its
 * revision and continues the index. */
static void test_checkpoint_sigkill(void **state)
{
    fixture *f = *state;
    f->options.wal_segment_bytes = CKPT_SEGMENT;
    f->options.snapshot_count = CKPT_EVERY;
    const int total = 20 * CKPT_WAVE + 30;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture *c = calloc(1, sizeof *c); /* the child's own loop; dies with it */
        if (!c || uv_loop_init(&c->loop) != 0)
            _exit(3);
        c->options = f->options;
        start(c);
        static write_result cr[CKPT_WAVE];
        for (int round = 0; round < 20; round++)
            ckpt_wave(c, round * CKPT_WAVE, cr);
        server_stats st;
        server_get_stats(c->srv, &st);
        /* a request while a sync runs is dropped (folded into the next), so
         * under load there are fewer than 1000 / CKPT_EVERY: ask for a few */
        for (int i = 0; i < 2000 && st.checkpoints < 3; i++) {
            usleep(5000);
            server_get_stats(c->srv, &st);
        }
        if (st.checkpoints < 3)
            _exit(4);
        /* 30 more, fewer than the interval: past the last checkpoint */
        int completed = 0;
        char key[32];
        for (int i = 0; i < 30; i++) {
            snprintf(key, sizeof key, "ck%05d", 20 * CKPT_WAVE + i);
            if (put(c, key, CKPT_VALUE, &cr[i], &completed) != FL_OK)
                _exit(5);
        }
        wait_for(c, &completed, 30);
        for (int i = 0; i < 30; i++)
            if (cr[i].err != FL_OK || cr[i].revision != 2 + 20 * CKPT_WAVE + i)
                _exit(6);
        raise(SIGKILL);
        _exit(7);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("child exited with %d", WEXITSTATUS(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    uint64_t min_first = 0;
    int files = wal_files(f, &min_first);
    print_message("after SIGKILL: wal files=%d min_first=%" PRIu64 "\n", files, min_first);
    assert_true(min_first > 1);
    start(f);
    ckpt_check_all(f, total);
    fl_err err;
    assert_int_equal(put_sync(f, "next", "x", &err), total + 2);
    assert_int_equal(err, FL_OK);
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_across_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequential_writes_sync_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_member_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_and_apply_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_answers_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_dir_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_quorum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_past_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_disk_full_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_sync_failure_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_exceeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_disk_full, setup, teardown_lmdb_mount),
        cmocka_unit_test_setup_teardown(test_corrupt_wal_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_releases_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_gap_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_sync_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_sigkill, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

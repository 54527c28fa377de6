/* Snapshots: write one, install it elsewhere, and it is the same store. */
#include "mvcc_test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Applies a random command; request-level refusals are fine (both stores
 * refuse alike), store failures are not. Returns apply's result. */
static fl_err apply_cmd(tstore *ts, ts_cmd *c)
{
    mvcc_response resp;
    fl_err err = ts_apply(ts, &c->req, &resp);
    mvcc_response_free(&resp);
    assert_true(err == FL_OK || err == FL_ERR_COMPACTED || err == FL_ERR_FUTURE_REV);
    return err;
}

static void expect_meta(mvcc_store *s, const char *name, const char *want)
{
    void *v = NULL;
    size_t len = 0;
    assert_int_equal(mvcc_get_meta(s, name, &v, &len), FL_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

/* Writes a snapshot of ts into dir/name; returns the applied index it holds. */
static uint64_t snapshot_to(tstore *ts, const char *dir, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    uint64_t applied = 0;
    assert_int_equal(mvcc_snapshot_write(ts->store, fd, &applied), FL_OK);
    close(fd);
    return applied;
}

static void snapshot_roundtrip(void **state)
{
    (void)state;
    uint64_t seed = ts_seed(0x5eed5eedull);
    tstore a, b;
    ts_open(&a, NULL);
    ts_open(&b, NULL);
    assert_int_equal(mvcc_put_meta(a.store, "term", "42", 2), FL_OK);
    for (int i = 0; i < 600; i++) {
        if (i % 50 == 0) {
            assert_int_equal(mvcc_batch_begin(a.store), FL_OK);
        }
        ts_cmd c;
        ts_random_cmd(&seed, &c, mvcc_current_revision(a.store));
        apply_cmd(&a, &c);
        if (i % 50 == 49) {
            assert_int_equal(mvcc_batch_commit(a.store), FL_OK);
        }
    }
    assert_int_equal(mvcc_put_meta(a.store, "members", "m1,m2", 5), FL_OK);
    mvcc_request alarm = {
        .type = MVCC_REQ_ALARM,
        .u.alarm = {.action = MVCC_ALARM_ACTIVATE, .member_id = 77, .alarm = MVCC_ALARM_CORRUPT}};
    mvcc_response aresp;
    assert_int_equal(ts_apply(&a, &alarm, &aresp), FL_OK);
    mvcc_response_free(&aresp);
    /* an open batch is not part of the snapshot */
    assert_int_equal(mvcc_batch_begin(a.store), FL_OK);
    ts_put(&a, "uncommitted", "x");
    char path[512];
    uint64_t applied = snapshot_to(&a, b.dir, "snap.tmp", path, sizeof path);
    assert_int_equal(applied, 601);
    assert_int_equal(mvcc_batch_commit(a.store), FL_OK);

    mvcc_close(b.store);
    b.store = NULL;
    assert_int_equal(mvcc_snapshot_install(b.dir, path), FL_OK);
    assert_int_equal(access(path, F_OK), -1); /* consumed */
    assert_int_equal(mvcc_open(b.dir, NULL, &b.store), FL_OK);
    b.next_index = mvcc_applied_index(b.store) + 1;
    assert_int_equal(mvcc_applied_index(b.store), applied);
    expect_meta(b.store, "term", "42");
    expect_meta(b.store, "members", "m1,m2");
    mvcc_alarm *alarms;
    size_t nalarms;
    assert_int_equal(mvcc_alarms(b.store, &alarms, &nalarms), FL_OK);
    assert_int_equal(nalarms, 1);
    assert_int_equal(alarms[0].member_id, 77);
    assert_int_equal(alarms[0].alarm, MVCC_ALARM_CORRUPT);
    free(alarms);

    /* b is a full replica: the same entries from here give the same store,
     * starting with the one a had uncommitted when the copy began */
    assert_int_equal(b.next_index, a.next_index - 1);
    ts_put(&b, "uncommitted", "x");
    char *da = ts_dump(&a);
    char *db = ts_dump(&b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    uint32_t ha, hb;
    int64_t ca, cb, ra, rb;
    assert_int_equal(mvcc_hash_kv(a.store, 0, &ha, &ca, &ra), FL_OK);
    assert_int_equal(mvcc_hash_kv(b.store, 0, &hb, &cb, &rb), FL_OK);
    assert_int_equal(ha, hb);
    assert_int_equal(ca, cb);
    assert_int_equal(ra, rb);
    for (int i = 0; i < 200; i++) {
        ts_cmd c;
        ts_random_cmd(&seed, &c, mvcc_current_revision(a.store));
        assert_int_equal(apply_cmd(&a, &c), apply_cmd(&b, &c));
    }
    da = ts_dump(&a);
    db = ts_dump(&b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    ts_close(&a);
    ts_close(&b);
}

static void install_rejects_garbage(void **state)
{
    (void)state;
    tstore a;
    ts_open(&a, NULL);
    ts_put(&a, "k", "v");
    mvcc_close(a.store);
    a.store = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/junk", a.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 3000; i++) {
        fputs("not an lmdb file ", f);
    }
    fclose(f);
    assert_int_equal(mvcc_snapshot_install(a.dir, path), FL_ERR_CORRUPT);
    unlink(path);
    assert_int_equal(mvcc_snapshot_install(a.dir, path), FL_ERR_CORRUPT); /* missing */
    assert_int_equal(mvcc_open(a.dir, NULL, &a.store), FL_OK);
    char buf[8];
    assert_true(ts_get(&a, "k", 0, buf, sizeof buf, NULL));
    assert_string_equal(buf, "v");
    ts_close(&a);
}

/* Snapshots taken on another thread while the applier commits: each holds
 * exactly the state of the applied index it reports (entry i puts key i, so
 * that state is known). */
typedef struct snap_job {
    tstore *ts;
    const char *dir;
    int rounds;
    uint64_t applied[8];
    volatile int done;
} snap_job;

static void *snap_main(void *arg)
{
    snap_job *job = arg;
    for (int r = 0; r < job->rounds; r++) {
        char name[32], path[512];
        snprintf(name, sizeof name, "snap%d", r);
        job->applied[r] = snapshot_to(job->ts, job->dir, name, path, sizeof path);
    }
    __atomic_store_n(&job->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void snapshot_while_applying(void **state)
{
    (void)state;
    tstore a;
    ts_open(&a, NULL);
    char value[4096];
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = 0;
    char key[32];
    /* some data first, so a copy takes a while */
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%06d", (int)a.next_index);
        ts_put(&a, key, value);
    }
    snap_job job = {.ts = &a, .dir = a.dir, .rounds = 4};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, snap_main, &job), 0);
    int n = 0;
    while (!__atomic_load_n(&job.done, __ATOMIC_ACQUIRE) && n < 200000) {
        assert_int_equal(mvcc_batch_begin(a.store), FL_OK);
        for (int j = 0; j < 3; j++, n++) {
            snprintf(key, sizeof key, "k%06d", (int)a.next_index);
            ts_put(&a, key, "v");
        }
        assert_int_equal(mvcc_batch_commit(a.store), FL_OK);
    }
    pthread_join(t, NULL);
    printf("applied %d entries during %d snapshots\n", n, job.rounds);
    for (int r = 0; r < job.rounds; r++) {
        tstore b;
        ts_open(&b, NULL);
        mvcc_close(b.store);
        b.store = NULL;
        char path[512];
        snprintf(path, sizeof path, "%s/snap%d", a.dir, r);
        assert_int_equal(mvcc_snapshot_install(b.dir, path), FL_OK);
        assert_int_equal(mvcc_open(b.dir, NULL, &b.store), FL_OK);
        uint64_t k = job.applied[r];
        printf("snapshot %d: applied=%llu\n", r, (unsigned long long)k);
        assert_int_equal(mvcc_applied_index(b.store), k);
        assert_int_equal(mvcc_current_revision(b.store), (int64_t)k + 1);
        mvcc_range_req req = {.key = B0, .range_end = B0, .count_only = true};
        mvcc_range_result res;
        assert_int_equal(mvcc_range(b.store, &req, &res), FL_OK);
        assert_int_equal(res.count, (int64_t)k);
        mvcc_range_result_free(&res);
        char buf[8];
        snprintf(key, sizeof key, "k%06d", (int)k + 1);
        assert_false(ts_get(&b, key, 0, buf, sizeof buf, NULL));
        ts_close(&b);
    }
    ts_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_roundtrip),
        cmocka_unit_test(install_rejects_garbage),
        cmocka_unit_test(snapshot_while_applying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

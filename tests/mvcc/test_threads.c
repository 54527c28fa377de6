/* One applier thread, one reader thread: reads always see one consistent,
 * committed state, and it only moves forward.
 *
 * The applier's entries keep an invariant in every committed state: the
 * value of "count" is the number of live "x/" keys (each entry is a txn
 * that adds or deletes one x/ key and rewrites count). Batches are of
 * random size, and each writes meta "last" = its last index. The reader
 * checks, in a loop until the applier is done:
 *   - a range over everything: count == number of x/ keys, and its header
 *     revision never goes backwards; the same at a random past revision;
 *   - the getters (applied index, current and compact revision) never go
 *     backwards; applied index >= meta "last" read just before it;
 *   - hash_kv at a fixed revision gives the same hash every time;
 *   - mvcc_alarms, mvcc_db_size and a snapshot to /dev/null run as well.
 * Run with durable_commits both off and on.
 */
#include "mvcc_test_util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ENTRIES 3000

/* cmocka's asserts longjmp to the test; off the test's thread, fail hard. */
#define APPLIER_OK(expr)                                                                           \
    do {                                                                                           \
        fl_err e_ = (expr);                                                                        \
        if (e_ != FL_OK) {                                                                         \
            fprintf(stderr, "applier: %s failed: %s\n", #expr, fl_err_name(e_));                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct shared {
    tstore *ts;
    uint64_t seed;
    int done; /* set by the applier (atomic) */
} shared;

static void *applier_main(void *arg)
{
    shared *sh = arg;
    tstore *ts = sh->ts;
    uint64_t seed = sh->seed;
    int live[ENTRIES];
    int nlive = 0;
    int i = 0;
    int64_t rev = 1;
    while (i < ENTRIES) {
        int batch = 1 + (int)(ts_rnd(&seed) % 20);
        APPLIER_OK(mvcc_batch_begin(ts->store));
        for (int j = 0; j < batch && i < ENTRIES; j++, i++) {
            char key[32], count[32];
            mvcc_op ops[2];
            mvcc_response resp;
            if (i % 400 == 399 && rev > 300) {
                /* compaction keeps the invariant; readers meet its walk */
                mvcc_request c = {.type = MVCC_REQ_COMPACT, .u.compact = {.revision = rev - 200}};
                APPLIER_OK(ts_apply(ts, &c, &resp));
                mvcc_response_free(&resp);
                continue;
            }
            if (nlive > 0 && ts_rnd(&seed) % 3 == 0) {
                int victim = (int)(ts_rnd(&seed) % (uint64_t)nlive);
                snprintf(key, sizeof key, "x/%06d", live[victim]);
                live[victim] = live[--nlive];
                ops[0] = (mvcc_op){.type = MVCC_OP_DELETE, .u.del = {.key = B(key)}};
            } else {
                snprintf(key, sizeof key, "x/%06d", i);
                live[nlive++] = i;
                ops[0] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(key), .value = B("v")}};
            }
            snprintf(count, sizeof count, "%d", nlive);
            ops[1] =
                (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B("count"), .value = B(count)}};
            mvcc_request req = {.type = MVCC_REQ_TXN,
                                .u.txn = {.success = ops, .success_count = 2}};
            APPLIER_OK(ts_apply(ts, &req, &resp));
            rev = resp.revision;
            mvcc_response_free(&resp);
        }
        char last[32];
        snprintf(last, sizeof last, "%" PRIu64, mvcc_applied_index(ts->store));
        APPLIER_OK(mvcc_put_meta(ts->store, "last", last, strlen(last)));
        APPLIER_OK(mvcc_batch_commit(ts->store));
    }
    __atomic_store_n(&sh->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Checks the invariant in one range result; returns the number of x/ keys. */
static int64_t check_consistent(const mvcc_range_result *res)
{
    int64_t xs = 0;
    long count = -1;
    for (size_t k = 0; k < res->kvs_count; k++) {
        const mvcc_kv *kv = &res->kvs[k];
        /* the header revision belongs to the same snapshot as the data */
        if (kv->mod_revision > res->revision) {
            fail_msg("key modified at %lld in a read at revision %lld", (long long)kv->mod_revision,
                     (long long)res->revision);
        }
        if (kv->key.len > 2 && memcmp(kv->key.data, "x/", 2) == 0) {
            xs++;
        } else if (kv->key.len == 5 && memcmp(kv->key.data, "count", 5) == 0) {
            char buf[32];
            assert_true(kv->value.len < sizeof buf);
            memcpy(buf, kv->value.data, kv->value.len);
            buf[kv->value.len] = 0;
            count = strtol(buf, NULL, 10);
        }
    }
    if (count < 0) {
        assert_int_equal(xs, 0); /* before the first entry */
    } else if (count != xs) {
        fail_msg("inconsistent read at revision %lld: count=%ld but %lld x/ keys",
                 (long long)res->revision, count, (long long)xs);
    }
    return xs;
}

static uint64_t meta_last(mvcc_store *s)
{
    void *v;
    size_t len;
    fl_err err = mvcc_get_meta(s, "last", &v, &len);
    if (err == FL_ERR_NOT_FOUND) {
        return 0;
    }
    assert_int_equal(err, FL_OK);
    char buf[32];
    assert_true(len < sizeof buf);
    memcpy(buf, v, len);
    buf[len] = 0;
    free(v);
    return strtoull(buf, NULL, 10);
}

static void run(bool durable)
{
    /* On the heap: if a check fails, cmocka longjmps out of this frame
     * while the applier thread still uses them. */
    tstore *tsp = calloc(1, sizeof *tsp);
    shared *shp = calloc(1, sizeof *shp);
    assert_non_null(tsp);
    assert_non_null(shp);
    mvcc_options opt = {.durable_commits = durable};
    ts_open(tsp, &opt);
    shp->ts = tsp;
    shp->seed = ts_seed(0x7e57ab1eull);
    pthread_t applier;
    assert_int_equal(pthread_create(&applier, NULL, applier_main, shp), 0);

    uint64_t rseed = shp->seed ^ 0x5555;
    int64_t last_header = 0, last_cur = 0, last_compact = 0, fixed_rev = 0;
    uint64_t last_applied = 0, last_meta = 0;
    uint32_t fixed_hash = 0;
    int64_t fixed_compact = 0;
    int reads = 0, past_reads = 0, snapshots = 0, hash_checks = 0;
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(devnull >= 0);
    while (!__atomic_load_n(&shp->done, __ATOMIC_ACQUIRE)) {
        uint64_t meta = meta_last(tsp->store);
        uint64_t applied = mvcc_applied_index(tsp->store);
        int64_t cur = mvcc_current_revision(tsp->store);
        int64_t compact = mvcc_compact_revision(tsp->store);
        assert_true(meta >= last_meta);
        assert_true(applied >= meta); /* meta commits with its batch */
        assert_true(applied >= last_applied);
        assert_true(cur >= last_cur);
        assert_true(compact >= last_compact);
        last_meta = meta;
        last_applied = applied;
        last_cur = cur;
        last_compact = compact;

        mvcc_range_req all = {.key = B0, .range_end = B0};
        mvcc_range_result res;
        assert_int_equal(mvcc_range(tsp->store, &all, &res), FL_OK);
        check_consistent(&res);
        assert_true(res.revision >= last_header);
        assert_true(res.revision >= cur); /* read after the getter */
        last_header = res.revision;
        int64_t now = res.revision;
        mvcc_range_result_free(&res);
        reads++;

        int64_t lowest = compact > 0 ? compact : 1;
        if (now > lowest) {
            all.revision = lowest + (int64_t)(ts_rnd(&rseed) % (uint64_t)(now - lowest + 1));
            fl_err err = mvcc_range(tsp->store, &all, &res);
            /* a compaction may have committed since the getter */
            assert_true(err == FL_OK || err == FL_ERR_COMPACTED);
            if (err == FL_OK) {
                check_consistent(&res);
                mvcc_range_result_free(&res);
                past_reads++;
            }
        }
        /* The hash at a fixed revision does not change while applies go on,
         * until a compaction legitimately drops versions below it. */
        uint32_t hash = 0;
        int64_t c = 0, h = 0;
        fl_err herr =
            fixed_rev == 0 ? FL_ERR_NOT_FOUND : mvcc_hash_kv(tsp->store, fixed_rev, &hash, &c, &h);
        assert_true(herr == FL_OK || herr == FL_ERR_COMPACTED || herr == FL_ERR_NOT_FOUND);
        if (herr == FL_OK && c == fixed_compact) {
            assert_int_equal(hash, fixed_hash);
            hash_checks++;
        } else if (now > compact + 100) {
            fixed_rev = now - 50;
            herr = mvcc_hash_kv(tsp->store, fixed_rev, &fixed_hash, &fixed_compact, &h);
            /* the applier may have compacted past it since `now` */
            assert_true(herr == FL_OK || herr == FL_ERR_COMPACTED);
            if (herr != FL_OK) {
                fixed_rev = 0;
            }
        }
        if (reads % 50 == 0) {
            mvcc_alarm *alarms;
            size_t n;
            assert_int_equal(mvcc_alarms(tsp->store, &alarms, &n), FL_OK);
            assert_int_equal(n, 0);
            int64_t size, in_use;
            mvcc_db_size(tsp->store, &size, &in_use);
            assert_true(size > 0 && in_use > 0);
            uint64_t snap_applied;
            assert_int_equal(mvcc_snapshot_write(tsp->store, devnull, &snap_applied), FL_OK);
            assert_true(snap_applied >= applied);
            snapshots++;
        }
    }
    pthread_join(applier, NULL);
    close(devnull);
    printf("durable=%d: %d reads (%d of the past), %d hash checks, %d snapshots, during %d "
           "entries, compacted at %lld\n",
           durable, reads, past_reads, hash_checks, snapshots, ENTRIES,
           (long long)mvcc_compact_revision(tsp->store));
    assert_true(reads > 0);
    assert_int_equal(mvcc_applied_index(tsp->store), ENTRIES);
    assert_int_equal(meta_last(tsp->store), ENTRIES);
    ts_close(tsp);
    free(tsp);
    free(shp);
}

static void reader_and_applier_threads(void **state)
{
    (void)state;
    run(false);
}

static void reader_and_applier_threads_durable(void **state)
{
    (void)state;
    run(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reader_and_applier_threads),
        cmocka_unit_test(reader_and_applier_threads_durable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

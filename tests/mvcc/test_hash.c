/* HashKV: equal histories give equal hashes however they were applied;
 * any difference changes the hash. */
#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static fl_err apply_cmd(tstore *ts, ts_cmd *c)
{
    mvcc_response resp;
    fl_err err = ts_apply(ts, &c->req, &resp);
    mvcc_response_free(&resp);
    assert_true(err == FL_OK || err == FL_ERR_COMPACTED || err == FL_ERR_FUTURE_REV);
    return err;
}

static uint32_t hash_at(tstore *ts, int64_t rev)
{
    uint32_t h = 0;
    int64_t compact = -1, hrev = -1;
    assert_int_equal(mvcc_hash_kv(ts->store, rev, &h, &compact, &hrev), FL_OK);
    assert_int_equal(compact, mvcc_compact_revision(ts->store));
    assert_int_equal(hrev, rev == 0 ? mvcc_current_revision(ts->store) : rev);
    return h;
}

/* Store a applies one entry per txn; b in batches of random size with
 * restarts, and a tiny compaction chunk so its lazy compaction lags behind
 * (the chunk is replicated behaviour, so c uses the same as b to compare
 * bytes; a against b compares only hashes). Hashes agree at several
 * revisions along the way. */
static void same_log_same_hash(void **state)
{
    (void)state;
    uint64_t seed = ts_seed(0xa11ce5eedull);
    tstore a, b;
    mvcc_options lazy = {.compact_chunk = 3};
    ts_open(&a, NULL);
    ts_open(&b, &lazy);
    bool in_batch = false;
    int checks = 0;
    for (int i = 0; i < 1500; i++) {
        ts_cmd c;
        ts_random_cmd(&seed, &c, mvcc_current_revision(a.store));
        if (!in_batch && ts_rnd(&seed) % 3 == 0) {
            assert_int_equal(mvcc_batch_begin(b.store), FL_OK);
            in_batch = true;
        }
        assert_int_equal(apply_cmd(&a, &c), apply_cmd(&b, &c));
        if (in_batch && ts_rnd(&seed) % 4 == 0) {
            assert_int_equal(mvcc_batch_commit(b.store), FL_OK);
            in_batch = false;
        }
        if (!in_batch && ts_rnd(&seed) % 97 == 0) {
            mvcc_close(b.store);
            assert_int_equal(mvcc_open(b.dir, &lazy, &b.store), FL_OK);
        }
        if (!in_batch && i % 100 == 99) {
            int64_t cur = mvcc_current_revision(a.store);
            int64_t comp = mvcc_compact_revision(a.store);
            assert_int_equal(cur, mvcc_current_revision(b.store));
            int64_t revs[3] = {0, cur,
                               comp + 1 + (int64_t)(ts_rnd(&seed) % (uint64_t)(cur - comp))};
            for (int j = 0; j < 3; j++) {
                assert_int_equal(hash_at(&a, revs[j]), hash_at(&b, revs[j]));
                checks++;
            }
        }
    }
    if (in_batch) {
        assert_int_equal(mvcc_batch_commit(b.store), FL_OK);
    }
    printf("%d hash checks, final revision %lld compacted %lld\n", checks,
           (long long)mvcc_current_revision(a.store), (long long)mvcc_compact_revision(a.store));
    assert_true(mvcc_compact_revision(a.store) > 100);
    assert_int_equal(hash_at(&a, 0), hash_at(&b, 0));
    ts_close(&a);
    ts_close(&b);
}

/* The hash sees a one-byte difference in a value, in a key, an extra
 * version, and it depends on the revision asked. */
static void difference_changes_hash(void **state)
{
    (void)state;
    tstore a, b, c, d;
    ts_open(&a, NULL);
    ts_open(&b, NULL);
    ts_open(&c, NULL);
    ts_open(&d, NULL);
    tstore *all[4] = {&a, &b, &c, &d};
    for (int i = 0; i < 4; i++) {
        ts_put(all[i], "alpha", "one");
        ts_put(all[i], "beta", "two");
    }
    ts_put(&a, "gamma", "three");
    ts_put(&b, "gamma", "threE");
    ts_put(&c, "gammA", "three");
    ts_put(&d, "gamma", "three");
    assert_int_equal(hash_at(&a, 0), hash_at(&d, 0));
    assert_int_not_equal(hash_at(&a, 0), hash_at(&b, 0));
    assert_int_not_equal(hash_at(&a, 0), hash_at(&c, 0));
    assert_int_not_equal(hash_at(&a, 3), hash_at(&a, 4));
    assert_int_equal(hash_at(&a, 3), hash_at(&b, 3)); /* the difference is at 4 */
    ts_put(&d, "gamma", "three");
    assert_int_not_equal(hash_at(&a, 0), hash_at(&d, 0));
    for (int i = 0; i < 4; i++) {
        ts_close(all[i]);
    }
}

static void revision_rules(void **state)
{
    (void)state;
    tstore a;
    ts_open(&a, NULL);
    uint32_t h;
    int64_t comp, hrev;
    /* a new store: revision 1, nothing compacted */
    assert_int_equal(mvcc_hash_kv(a.store, 0, &h, &comp, &hrev), FL_OK);
    assert_int_equal(hrev, 1);
    assert_int_equal(mvcc_hash_kv(a.store, 2, &h, &comp, &hrev), FL_ERR_FUTURE_REV);
    for (int i = 0; i < 5; i++) {
        ts_put(&a, "k", "v");
    }
    ts_del(&a, "k", NULL); /* rev 7 */
    ts_put(&a, "k", "w");  /* rev 8 */
    uint32_t h6 = hash_at(&a, 6);
    uint32_t h8 = hash_at(&a, 8);
    assert_int_equal(ts_compact(&a, 4), FL_OK);
    assert_int_equal(mvcc_hash_kv(a.store, 4, &h, &comp, &hrev), FL_ERR_COMPACTED);
    assert_int_equal(comp, 4);
    assert_int_equal(mvcc_hash_kv(a.store, 3, &h, &comp, &hrev), FL_ERR_COMPACTED);
    assert_int_equal(mvcc_hash_kv(a.store, 9, &h, &comp, &hrev), FL_ERR_FUTURE_REV);
    assert_int_equal(mvcc_hash_kv(a.store, -1, &h, &comp, &hrev), FL_ERR_INVALID);
    /* compaction drops versions 2..3 from the hash: it changes */
    assert_int_not_equal(hash_at(&a, 6), h6);
    assert_int_not_equal(hash_at(&a, 8), h8);
    /* the same history compacted the same way, in one go, hashes the same */
    tstore b;
    mvcc_options lazy = {.compact_chunk = 1};
    ts_open(&b, &lazy);
    for (int i = 0; i < 5; i++) {
        ts_put(&b, "k", "v");
    }
    ts_del(&b, "k", NULL);
    ts_put(&b, "k", "w");
    assert_int_equal(ts_compact(&b, 4), FL_OK);
    assert_int_equal(hash_at(&a, 0), hash_at(&b, 0));
    assert_int_equal(hash_at(&a, 5), hash_at(&b, 5));
    ts_close(&a);
    ts_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_log_same_hash),
        cmocka_unit_test(difference_changes_hash),
        cmocka_unit_test(revision_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

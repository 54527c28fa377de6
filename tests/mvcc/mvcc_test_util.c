#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void ts_open(tstore *ts, const mvcc_options *opt)
{
    memset(ts, 0, sizeof *ts);
    snprintf(ts->dir, sizeof ts->dir, "/tmp/mvcc-test-XXXXXX");
    assert_non_null(mkdtemp(ts->dir));
    assert_int_equal(mvcc_open(ts->dir, opt, &ts->store), FL_OK);
    ts->next_index = mvcc_applied_index(ts->store) + 1;
}

void ts_reopen(tstore *ts)
{
    mvcc_close(ts->store);
    ts->store = NULL;
    assert_int_equal(mvcc_open(ts->dir, NULL, &ts->store), FL_OK);
    ts->next_index = mvcc_applied_index(ts->store) + 1;
}

void ts_close(tstore *ts)
{
    mvcc_close(ts->store);
    ts->store = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", ts->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", ts->dir);
    unlink(path);
    rmdir(ts->dir);
}

fl_err ts_apply(tstore *ts, const mvcc_request *req, mvcc_response *resp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(mvcc_request_encode(req, &buf, &len), FL_OK);
    fl_err err = mvcc_apply(ts->store, ts->next_index++, buf, len, resp);
    free(buf);
    return err;
}

int64_t ts_put(tstore *ts, const char *key, const char *value)
{
    mvcc_request req = {.type = MVCC_REQ_PUT};
    req.u.put.key = B(key);
    req.u.put.value = B(value);
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    int64_t rev = resp.revision;
    mvcc_response_free(&resp);
    return rev;
}

int64_t ts_del(tstore *ts, const char *key, const char *range_end)
{
    mvcc_request req = {.type = MVCC_REQ_DELETE};
    req.u.del.key = B(key);
    if (range_end != NULL) {
        req.u.del.range_end = range_end[0] ? B(range_end) : B0;
    }
    mvcc_response resp;
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    int64_t rev = resp.revision;
    mvcc_response_free(&resp);
    return rev;
}

fl_err ts_compact(tstore *ts, int64_t rev)
{
    mvcc_request req = {.type = MVCC_REQ_COMPACT};
    req.u.compact.revision = rev;
    mvcc_response resp;
    fl_err err = ts_apply(ts, &req, &resp);
    mvcc_response_free(&resp);
    return err;
}

fl_err ts_range(tstore *ts, const mvcc_range_req *req, mvcc_range_result *res)
{
    return mvcc_range(ts->store, req, res);
}

bool ts_get(tstore *ts, const char *key, int64_t rev, char *buf, size_t cap, mvcc_kv *meta)
{
    mvcc_range_req req = {.key = B(key), .revision = rev};
    mvcc_range_result res;
    assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
    buf[0] = 0;
    bool found = res.kvs_count == 1;
    assert_true(res.kvs_count <= 1);
    assert_int_equal(res.count, (int64_t)res.kvs_count);
    if (found) {
        assert_true(res.kvs[0].value.len < cap);
        memcpy(buf, res.kvs[0].value.data, res.kvs[0].value.len);
        buf[res.kvs[0].value.len] = 0;
        if (meta != NULL) {
            *meta = res.kvs[0];
            meta->key.data = NULL;
            meta->value.data = NULL;
        }
    }
    mvcc_range_result_free(&res);
    return found;
}

void assert_keys(const mvcc_range_result *res, const char *const *keys)
{
    size_t n = 0;
    while (keys[n] != NULL) {
        n++;
    }
    if (res->kvs_count != n) {
        fprintf(stderr, "got %zu keys:", res->kvs_count);
        for (size_t i = 0; i < res->kvs_count; i++) {
            fprintf(stderr, " %.*s", (int)res->kvs[i].key.len, res->kvs[i].key.data);
        }
        fprintf(stderr, "\n");
    }
    assert_int_equal(res->kvs_count, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res->kvs[i].key.len, strlen(keys[i]));
        assert_memory_equal(res->kvs[i].key.data, keys[i], strlen(keys[i]));
    }
}

char *ts_dump(tstore *ts)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    int64_t cur = mvcc_current_revision(ts->store);
    int64_t compact = mvcc_compact_revision(ts->store);
    fprintf(f, "applied=%llu current=%lld compact=%lld\n",
            (unsigned long long)mvcc_applied_index(ts->store), (long long)cur, (long long)compact);
    for (int64_t rev = compact > 0 ? compact : 1; rev <= cur; rev++) {
        mvcc_range_req req = {.key = B0, .range_end = B0, .revision = rev};
        mvcc_range_result res;
        assert_int_equal(mvcc_range(ts->store, &req, &res), FL_OK);
        fprintf(f, "rev %lld count=%lld:", (long long)rev, (long long)res.count);
        for (size_t i = 0; i < res.kvs_count; i++) {
            const mvcc_kv *kv = &res.kvs[i];
            fprintf(f, " [%.*s=%.*s c%lld m%lld v%lld l%lld]", (int)kv->key.len, kv->key.data,
                    (int)kv->value.len, kv->value.data, (long long)kv->create_revision,
                    (long long)kv->mod_revision, (long long)kv->version, (long long)kv->lease);
        }
        fprintf(f, "\n");
        mvcc_range_result_free(&res);
    }
    fclose(f);
    return buf;
}

uint64_t ts_rnd(uint64_t *seed)
{
    /* xorshift64*: small, deterministic, good enough for scripts */
    uint64_t x = *seed;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *seed = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t ts_seed(uint64_t fallback)
{
    const char *env = getenv("MVCC_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : fallback;
    if (seed == 0) {
        seed = 1;
    }
    printf("seed=0x%llx (set MVCC_SEED to repeat)\n", (unsigned long long)seed);
    return seed;
}

static void random_key(uint64_t *seed, char *out)
{
    unsigned n = (unsigned)(ts_rnd(seed) % 30);
    if (ts_rnd(seed) % 8 == 0) {
        /* a long key: stored under prefix + sequence */
        memset(out, 'L', 490);
        snprintf(out + 490, 16, "%02u", n % 4);
    } else {
        snprintf(out, 16, "key%02u", n);
    }
}

void ts_random_cmd(uint64_t *seed, ts_cmd *c, int64_t current_revision)
{
    mvcc_request *req = &c->req;
    random_key(seed, c->k1);
    random_key(seed, c->k2);
    snprintf(c->v, sizeof c->v, "v%u", (unsigned)(ts_rnd(seed) % 100000));
    memset(req, 0, sizeof *req);
    switch (ts_rnd(seed) % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
        req->type = MVCC_REQ_PUT;
        req->u.put = (mvcc_put_req){.key = B(c->k1), .value = B(c->v)};
        break;
    case 4:
    case 5:
        req->type = MVCC_REQ_DELETE;
        req->u.del = (mvcc_delete_req){.key = B(c->k1)};
        if (strcmp(c->k1, c->k2) < 0) {
            req->u.del.range_end = B(c->k2);
        }
        break;
    case 6:
    case 7:
        req->type = MVCC_REQ_TXN;
        c->cmp = (mvcc_compare){
            .key = B(c->k1), .target = MVCC_CMP_VERSION, .result = MVCC_CMP_GREATER, .number = 1};
        c->ops[0] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(c->k2), .value = B(c->v)}};
        c->ops[1] = (mvcc_op){.type = MVCC_OP_PUT, .u.put = {.key = B(c->k1), .value = B(c->v)}};
        c->ops[2] = (mvcc_op){.type = MVCC_OP_DELETE, .u.del = {.key = B(c->k1)}};
        req->u.txn = (mvcc_txn_req){.compares = &c->cmp,
                                    .compares_count = 1,
                                    .success = c->ops,
                                    .success_count = strcmp(c->k1, c->k2) != 0 ? 2 : 1,
                                    .failure = c->ops + 2,
                                    .failure_count = 1};
        break;
    default:
        req->type = MVCC_REQ_COMPACT;
        req->u.compact.revision = current_revision - (int64_t)(ts_rnd(seed) % 30);
    }
}

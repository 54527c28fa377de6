/* Helpers shared by the mvcc unit tests: a store in a temp dir, one-line
 * writes through the real encode + apply path, and reads. */
#ifndef FL_MVCC_TEST_UTIL_H
#define FL_MVCC_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mvcc/mvcc.h"

typedef struct tstore {
    mvcc_store *store;
    char dir[256];
    uint64_t next_index;
} tstore;

#define B(s) ((mvcc_bytes){(const uint8_t *)(s), strlen(s)})
#define B0   ((mvcc_bytes){(const uint8_t *)"\0", 1})

void ts_open(tstore *ts, const mvcc_options *opt);
void ts_reopen(tstore *ts);
void ts_close(tstore *ts); /* closes and removes the dir */

/* Encodes and applies req as the next index; returns apply's result. */
fl_err ts_apply(tstore *ts, const mvcc_request *req, mvcc_response *resp);
/* Shorthands; assert success; return the response revision. */
int64_t ts_put(tstore *ts, const char *key, const char *value);
int64_t ts_del(tstore *ts, const char *key, const char *range_end);
fl_err ts_compact(tstore *ts, int64_t rev);

/* Range; returns the error; result must be freed. */
fl_err ts_range(tstore *ts, const mvcc_range_req *req, mvcc_range_result *res);
/* The value of key at rev (0 = current) into buf, or "" + false if absent. */
bool ts_get(tstore *ts, const char *key, int64_t rev, char *buf, size_t cap, mvcc_kv *meta);

/* Asserts kvs' keys equal the NULL-terminated list. */
void assert_keys(const mvcc_range_result *res, const char *const *keys);

/* A random command for scripts: puts (some with keys over 480 bytes),
 * deletes (single and ranges), txns, compactions near the current revision.
 * All pointers of req point into the ts_cmd. */
typedef struct ts_cmd {
    mvcc_request req;
    char k1[600], k2[600], v[64];
    mvcc_op ops[3];
    mvcc_compare cmp;
} ts_cmd;
uint64_t ts_rnd(uint64_t *seed);
void ts_random_cmd(uint64_t *seed, ts_cmd *c, int64_t current_revision);
/* The seed for randomized tests: $MVCC_SEED if set, else `fallback`; printed. */
uint64_t ts_seed(uint64_t fallback);

/* A text dump of every key at every revision plus the counters. malloc'ed. */
char *ts_dump(tstore *ts);

#endif

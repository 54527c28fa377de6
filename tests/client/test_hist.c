/* client.hist: percentiles of the log-linear histogram against distributions
 * whose true percentiles are known exactly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "client/client_hist.h"

/* The reported value must be >= the true one and within the bucket width (1/64). */
static void assert_close(uint64_t got, uint64_t truth)
{
    if (truth < CLIENT_HIST_LINEAR) {
        assert_int_equal(got, truth);
        return;
    }
    assert_true(got >= truth);
    assert_true((double)(got - truth) <= (double)truth / 64.0 + 1);
}

/* The exact p-th percentile of 1..n (nearest rank). */
static uint64_t rank_of(uint64_t n, double p)
{
    double r = ceil(p / 100.0 * (double)n);
    return r < 1 ? 1 : (uint64_t)r;
}

static void test_empty(void **state)
{
    client_hist h;
    client_hist_init(&h);
    assert_int_equal(client_hist_percentile(&h, 50), 0);
    assert_int_equal(client_hist_percentile(&h, 100), 0);
    assert_true(client_hist_mean(&h) == 0.0);
}

static void test_uniform(void **state)
{
    client_hist *h = malloc(sizeof *h);
    client_hist_init(h);
    const uint64_t n = 1000000;
    for (uint64_t v = 1; v <= n; v++)
        client_hist_record(h, v);
    assert_int_equal(h->count, n);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, n);
    const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        assert_close(client_hist_percentile(h, ps[i]), rank_of(n, ps[i]));
    assert_int_equal(client_hist_percentile(h, 100), n);
    assert_true(fabs(client_hist_mean(h) - (double)(n + 1) / 2) < 1e-6);
    free(h);
}

static void test_small_values_exact(void **state)
{
    client_hist h;
    client_hist_init(&h);
    for (uint64_t v = 0; v < 100; v++)
        client_hist_record(&h, v);
    assert_int_equal(client_hist_percentile(&h, 50), 49);
    assert_int_equal(client_hist_percentile(&h, 1), 0);
    assert_int_equal(client_hist_percentile(&h, 100), 99);
}

/* Two point masses: 99% at 1 ms, 1% at 1 s (in ns). p99 is 1 ms, p99.9 is 1 s. */
static void test_bimodal(void **state)
{
    client_hist h;
    client_hist_init(&h);
    for (int i = 0; i < 9900; i++)
        client_hist_record(&h, 1000000);
    for (int i = 0; i < 100; i++)
        client_hist_record(&h, 1000000000);
    assert_close(client_hist_percentile(&h, 50), 1000000);
    assert_close(client_hist_percentile(&h, 99), 1000000);
    assert_int_equal(client_hist_percentile(&h, 99.9), 1000000000); /* capped at max */
    assert_int_equal(client_hist_percentile(&h, 100), 1000000000);
}

/* Exponential with a fixed seed: compare with the sorted samples. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_exponential(void **state)
{
    const size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    client_hist *h = malloc(sizeof *h);
    client_hist_init(h);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        v[i] = (uint64_t)(-log(u) * 2e6); /* mean 2 ms in ns */
        client_hist_record(h, v[i]);
    }
    qsort(v, n, sizeof *v, cmp_u64);
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < 4; i++)
        assert_close(client_hist_percentile(h, ps[i]), v[rank_of(n, ps[i]) - 1]);
    free(v);
    free(h);
}

static void test_buckets_cover_range(void **state)
{
    /* Every bucket's range maps back to the bucket; ranges are contiguous. */
    uint64_t prev_high = 0;
    for (unsigned b = 0; b < CLIENT_HIST_BUCKETS; b++) {
        uint64_t lo, hi;
        client_hist_bucket_range(b, &lo, &hi);
        assert_int_equal(client_hist_bucket(lo), b);
        assert_int_equal(client_hist_bucket(hi), b);
        if (b > 0)
            assert_int_equal(lo, prev_high + 1);
        prev_high = hi;
    }
    assert_int_equal(prev_high, (UINT64_C(1) << CLIENT_HIST_MAX_BITS) - 1);
    /* Larger values clamp into the top bucket. */
    assert_int_equal(client_hist_bucket(UINT64_MAX), CLIENT_HIST_BUCKETS - 1);
}

static void test_merge(void **state)
{
    client_hist a, b;
    client_hist_init(&a);
    client_hist_init(&b);
    for (uint64_t v = 1; v <= 5000; v++)
        client_hist_record(&a, v);
    for (uint64_t v = 5001; v <= 10000; v++)
        client_hist_record(&b, v);
    client_hist_merge(&a, &b);
    assert_int_equal(a.count, 10000);
    assert_int_equal(a.min, 1);
    assert_int_equal(a.max, 10000);
    assert_close(client_hist_percentile(&a, 75), 7500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_bimodal),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_buckets_cover_range),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

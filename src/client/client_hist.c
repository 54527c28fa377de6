/* client_hist: log-linear buckets. For v >= 128, let s = floor(log2 v) - 6, so
 * v >> s is in [64, 128): the bucket is 128 + (s - 1) * 64 + ((v >> s) - 64)
 * and holds the 2^s values sharing those top 7 bits. */
#include "client/client_hist.h"

#include <assert.h>
#include <string.h>

#define HIST_VALUE_MAX ((UINT64_C(1) << CLIENT_HIST_MAX_BITS) - 1)

void client_hist_init(client_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned client_hist_bucket(uint64_t value)
{
    if (value > HIST_VALUE_MAX)
        value = HIST_VALUE_MAX;
    if (value < CLIENT_HIST_LINEAR)
        return (unsigned)value;
    unsigned log2 = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = log2 - 6;
    unsigned b = CLIENT_HIST_LINEAR + (shift - 1) * CLIENT_HIST_HALF +
                 (unsigned)((value >> shift) - CLIENT_HIST_HALF);
    assert(b < CLIENT_HIST_BUCKETS);
    return b;
}

void client_hist_bucket_range(unsigned bucket, uint64_t *low, uint64_t *high)
{
    assert(bucket < CLIENT_HIST_BUCKETS);
    if (bucket < CLIENT_HIST_LINEAR) {
        *low = *high = bucket;
        return;
    }
    unsigned shift = (bucket - CLIENT_HIST_LINEAR) / CLIENT_HIST_HALF + 1;
    uint64_t top = (bucket - CLIENT_HIST_LINEAR) % CLIENT_HIST_HALF + CLIENT_HIST_HALF;
    *low = top << shift;
    *high = *low + (UINT64_C(1) << shift) - 1;
}

void client_hist_record(client_hist *h, uint64_t value)
{
    h->buckets[client_hist_bucket(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void client_hist_merge(client_hist *into, const client_hist *from)
{
    for (unsigned i = 0; i < CLIENT_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t client_hist_percentile(const client_hist *h, double p)
{
    assert(p > 0 && p <= 100);
    if (h->count == 0)
        return 0;
    double exact = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < CLIENT_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t low, high;
            client_hist_bucket_range(i, &low, &high);
            if (high > h->max)
                high = h->max;
            if (high < h->min)
                high = h->min;
            return high;
        }
    }
    assert(0 && "bucket counts do not add up to count");
    return h->max;
}

double client_hist_mean(const client_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

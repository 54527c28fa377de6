/* client_hist: a latency histogram with bounded relative error (HDR-style
 * log-linear buckets), for `flotilla bench` and any caller timing calls.
 *
 * Values are unsigned integers (bench records nanoseconds) up to 2^40 - 1
 * (about 18 minutes in ns); larger values are clamped into the top bucket but
 * max stays exact. Values below 128 have a bucket each; above, each power of
 * two is split into 64 buckets, so a reported percentile is within 1/64
 * (1.6%) of the true sample, and never above the recorded max. count, sum, min
 * and max are exact. Fixed size, no allocation: a histogram is a plain value
 * (about 18 KiB) that can be merged and copied. Must not: allocate, lock.
 */
#ifndef FL_CLIENT_HIST_H
#define FL_CLIENT_HIST_H

#include <stdint.h>

#define CLIENT_HIST_LINEAR   128 /* values below this are exact */
#define CLIENT_HIST_HALF     64
#define CLIENT_HIST_MAX_BITS 40
#define CLIENT_HIST_BUCKETS  (CLIENT_HIST_LINEAR + (CLIENT_HIST_MAX_BITS - 7) * CLIENT_HIST_HALF)

typedef struct client_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[CLIENT_HIST_BUCKETS];
} client_hist;

void client_hist_init(client_hist *h);
void client_hist_record(client_hist *h, uint64_t value);
/* Adds every sample of from into into. */
void client_hist_merge(client_hist *into, const client_hist *from);
/* The value at percentile p (0 < p <= 100): the highest value of the bucket that
 * holds the ceil(p/100 * count)-th smallest sample, capped at max. 0 when empty. */
uint64_t client_hist_percentile(const client_hist *h, double p);
/* Mean; 0 when empty. */
double client_hist_mean(const client_hist *h);

/* Bucket index of a value and the [low, high] range of values a bucket holds
 * (exposed for the tests). */
unsigned client_hist_bucket(uint64_t value);
void client_hist_bucket_range(unsigned bucket, uint64_t *low, uint64_t *high);

#endif

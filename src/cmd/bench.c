/* bench: `flotilla bench`, a load generator on the async client, speaking the
 * etcd v3 API so it runs against Flotilla and etcd alike.
 *
 * --clients requests are kept in flight (a "client" is a slot that issues its
 * next request when the previous one completes), spread over --conns HTTP/2
 * connections (at most ceil(clients/conns) streams each). Latency is measured
 * per request from client_call to completion with uv_hrtime and recorded in a
 * log-linear histogram (src/client/client_hist.h).
 *
 * Workloads:
 *   put      Put(random key, value)
 *   range    Range(random key), --consistency l (linearizable) or s (serializable)
 *   txn-put  compare-and-swap: Txn(if mod(key) == last seen mod then put, else get);
 *            the last seen mod revision per key is kept, so each op is one RPC
 *   mixed    range with probability --read-fraction, else put
 *
 * A failed request is counted and the run goes on, except FL_ERR_UNAVAILABLE
 * (the connection failed): then no new request is issued and the run ends
 * when those in flight have completed.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_hist.h"
#include "cmd/client_cli.h"

#define BENCH_KEY_BYTES_MAX   1024
#define BENCH_VALUE_BYTES_MAX (1u << 20)
#define BENCH_KEY_SPACE_MAX   (16u << 20) /* txn-put keeps 8 bytes per key */
#define BENCH_CLIENTS_MAX     100000

typedef enum workload { W_PUT, W_RANGE, W_TXN_PUT, W_MIXED } workload;
static const char *const workload_names[] = {"put", "range", "txn-put", "mixed"};

typedef struct bench_config {
    workload w;
    uint32_t conns, clients;
    uint64_t total; /* 0 = run for duration_ms */
    uint64_t duration_ms;
    uint32_t key_size, val_size;
    uint64_t key_space;
    uint64_t seed;
    bool serializable;
    double read_fraction;
    bool sequential;
    uint64_t key_offset; /* added to every key number (loading in steps) */
    bool json;
    uint64_t timeout_ms;
} bench_config;

typedef struct bench bench;

typedef struct slot {
    bench *b;
    uint64_t start_ns;
    uint64_t key;
    bool is_read;
} slot;

struct bench {
    bench_config cfg;
    const cli_globals *g;
    uv_loop_t loop;
    client *c;
    uv_timer_t progress;
    uv_signal_t sigint; /* Ctrl-C: stop issuing, report what was measured */
    slot *slots;
    uint64_t rng;
    uint64_t issued, done, ok, errors, txn_succeeded, txn_failed;
    uint64_t last_progress_done;
    uint64_t start_ns, end_ns;
    bool stopping;
    bool aborted; /* a call was refused: issue no more */
    uint32_t inflight;
    int64_t *mod_revs; /* txn-put: last seen mod revision per key */
    uint8_t *value;
    client_hist hist;
    char first_error[CLIENT_MESSAGE_BYTES + 32];
};

/* xorshift64*: deterministic from --seed, cheap, good enough for key choice. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static size_t make_key(const bench *b, uint64_t k, uint8_t *out)
{
    /* Zero-padded decimal when it fits (readable keys), else big-endian binary. */
    uint32_t n = b->cfg.key_size;
    uint64_t v = k;
    bool fits = true;
    for (uint32_t i = n; i > 0; i--) {
        out[i - 1] = (uint8_t)('0' + v % 10);
        v /= 10;
    }
    if (v != 0)
        fits = false;
    if (!fits) {
        memset(out, 0, n);
        for (uint32_t i = 0; i < n && i < 8; i++)
            out[n - 1 - i] = (uint8_t)(k >> (8 * i));
    }
    return n;
}

static void bench_issue(slot *s);

static void bench_stop(bench *b)
{
    if (b->stopping)
        return;
    b->stopping = true;
    b->end_ns = uv_hrtime();
    uv_timer_stop(&b->progress);
    uv_close((uv_handle_t *)&b->progress, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
    client_close(b->c, NULL, NULL);
}

static void bench_maybe_finish(bench *b)
{
    bool more =
        !b->aborted && (b->cfg.total ? b->issued < b->cfg.total
                                     : (uv_hrtime() - b->start_ns) / 1000000 < b->cfg.duration_ms);
    if (b->inflight == 0 && !more)
        bench_stop(b);
}

static void on_done(void *ctx, const client_status *st, void *response)
{
    slot *s = ctx;
    bench *b = s->b;
    uint64_t ns = uv_hrtime() - s->start_ns;
    b->inflight--;
    b->done++;
    if (st->err == FL_OK) {
        b->ok++;
        client_hist_record(&b->hist, ns);
        if (b->cfg.w == W_TXN_PUT) {
            const Etcdserverpb__TxnResponse *t = response;
            if (t->succeeded) {
                b->txn_succeeded++;
                b->mod_revs[s->key] = t->header ? t->header->revision : 0;
            } else {
                b->txn_failed++;
                int64_t mod = 0;
                if (t->n_responses == 1 && t->responses[0]->response_case ==
                                               ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE) {
                    const Etcdserverpb__RangeResponse *r = t->responses[0]->response_range;
                    if (r->n_kvs == 1)
                        mod = r->kvs[0]->mod_revision;
                }
                b->mod_revs[s->key] = mod;
            }
        }
    } else {
        b->errors++;
        /* the server is gone: stop rather than spin on reconnects */
        if (st->err == FL_ERR_UNAVAILABLE)
            b->aborted = true;
        if (b->first_error[0] == '\0')
            snprintf(b->first_error, sizeof b->first_error, "%s (%s)", st->message,
                     fl_err_name(st->err));
    }
    client_free_response(response);
    if (b->stopping)
        return;
    bench_issue(s);
    bench_maybe_finish(b);
}

/* txn-put: if mod(key) == the last mod revision seen, put; else get (to learn it). */
static fl_err issue_txn_put(bench *b, slot *s, ProtobufCBinaryData kb, ProtobufCBinaryData vb)
{
    Etcdserverpb__Compare cmp;
    etcdserverpb__compare__init(&cmp);
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    cmp.key = kb;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    cmp.mod_revision = b->mod_revs[s->key];
    Etcdserverpb__PutRequest put;
    etcdserverpb__put_request__init(&put);
    put.key = kb;
    put.value = vb;
    Etcdserverpb__RangeRequest get;
    etcdserverpb__range_request__init(&get);
    get.key = kb;
    Etcdserverpb__RequestOp ok_op, fail_op;
    etcdserverpb__request_op__init(&ok_op);
    etcdserverpb__request_op__init(&fail_op);
    ok_op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ok_op.request_put = &put;
    fail_op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    fail_op.request_range = &get;
    Etcdserverpb__Compare *cmps[1] = {&cmp};
    Etcdserverpb__RequestOp *oks[1] = {&ok_op}, *fails[1] = {&fail_op};
    Etcdserverpb__TxnRequest txn;
    etcdserverpb__txn_request__init(&txn);
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 1;
    txn.success = oks;
    txn.n_failure = 1;
    txn.failure = fails;
    return client_call(b->c, CLIENT_TXN, &txn, b->cfg.timeout_ms, on_done, s);
}

/* Starts the slot's next request, if the run is not over. */
static void bench_issue(slot *s)
{
    bench *b = s->b;
    if (b->stopping || b->aborted)
        return;
    if (b->cfg.total ? b->issued >= b->cfg.total
                     : (uv_hrtime() - b->start_ns) / 1000000 >= b->cfg.duration_ms)
        return;
    uint64_t k =
        b->cfg.sequential ? b->issued % b->cfg.key_space : rng_next(&b->rng) % b->cfg.key_space;
    uint8_t key[BENCH_KEY_BYTES_MAX];
    size_t key_len = make_key(b, k + b->cfg.key_offset, key);
    ProtobufCBinaryData kb = {key_len, key}, vb = {b->cfg.val_size, b->value};
    s->key = k;
    bool read = b->cfg.w == W_RANGE ||
                (b->cfg.w == W_MIXED &&
                 (double)(rng_next(&b->rng) >> 11) / 9007199254740992.0 < b->cfg.read_fraction);
    s->is_read = read;
    fl_err err;
    s->start_ns = uv_hrtime();
    if (b->cfg.w == W_TXN_PUT) {
        err = issue_txn_put(b, s, kb, vb);
    } else if (read) {
        Etcdserverpb__RangeRequest r;
        etcdserverpb__range_request__init(&r);
        r.key = kb;
        r.serializable = b->cfg.serializable;
        err = client_call(b->c, CLIENT_RANGE, &r, b->cfg.timeout_ms, on_done, s);
    } else {
        Etcdserverpb__PutRequest p;
        etcdserverpb__put_request__init(&p);
        p.key = kb;
        p.value = vb;
        err = client_call(b->c, CLIENT_PUT, &p, b->cfg.timeout_ms, on_done, s);
    }
    b->issued++;
    if (err != FL_OK) {
        /* not accepted: count it and stop issuing (no busy loop) */
        b->aborted = true;
        b->done++;
        b->errors++;
        if (b->first_error[0] == '\0')
            snprintf(b->first_error, sizeof b->first_error, "not sent: %s", fl_err_name(err));
        return;
    }
    b->inflight++;
}

/* One progress line on stderr: rewritten in place on a terminal, one line per
 * second otherwise; the last one (final) carries the totals. */
static void print_progress(bench *b, bool final)
{
    double secs = (double)(uv_hrtime() - b->start_ns) / 1e9;
    uint64_t delta = b->done - b->last_progress_done;
    b->last_progress_done = b->done;
    bool tty = isatty(STDERR_FILENO);
    char total[48] = "";
    if (b->cfg.total)
        snprintf(total, sizeof total, "/%" PRIu64, b->cfg.total);
    fprintf(stderr, "%s%s: %" PRIu64 "%s done, %" PRIu64 " errors, %.0f req/s%s, %.1fs%s",
            tty ? "\r" : "", workload_names[b->cfg.w], b->done, total, b->errors,
            final ? (secs > 0 ? (double)b->done / secs : 0) : (double)delta,
            final ? " overall" : "", secs, tty && !final ? "   " : "\n");
}

static void on_progress(uv_timer_t *t)
{
    bench *b = t->data;
    print_progress(b, false);
    /* duration runs: stop once the time is up and nothing is in flight */
    bench_maybe_finish(b);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    bench *b = h->data;
    if (b->aborted) /* a second Ctrl-C: give up on the requests in flight */
        _exit(130);
    b->aborted = true;
    bench_maybe_finish(b);
}

static void usage(void)
{
    printf("usage: flotilla bench put|range|txn-put|mixed [flags]\n"
           "  --endpoints A,B       (global) endpoints, default 127.0.0.1:2379\n"
           "  --conns N             HTTP/2 connections (default 1)\n"
           "  --clients N           requests in flight, spread over the connections (default 1)\n"
           "  --total N             requests to send (default 10000), or\n"
           "  --duration D          run for D (e.g. 10s) instead\n"
           "  --key-size N          bytes per key (default 8)\n"
           "  --val-size N          bytes per value (default 256)\n"
           "  --key-space N         distinct keys (default 100000)\n"
           "  --seed N              random seed (default 1)\n"
           "  --sequential          keys 0,1,2,... in order instead of random (loading)\n"
           "  --key-offset N        add N to every key number (default 0)\n"
           "  --consistency l|s     range: linearizable (default) or serializable\n"
           "  --read-fraction F     mixed: share of ranges (default 0.5)\n"
           "  --timeout D           per request (default 30s)\n"
           "  --json                print one JSON line instead of the report\n");
}

static int parse_u64(const char *flag, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi)
        return cli_fail(CLI_EXIT_BAD_ARGS,
                        "%s wants an integer in [%" PRIu64 ", %" PRIu64 "], got \"%s\"", flag, lo,
                        hi, v);
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv, bench_config *c)
{
    *c = (bench_config){.conns = 1,
                        .clients = 1,
                        .total = 10000,
                        .key_size = 8,
                        .val_size = 256,
                        .key_space = 100000,
                        .seed = 1,
                        .read_fraction = 0.5,
                        .timeout_ms = 30000};
    int wi = -1;
    bool total_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return -1;
        }
        if (a[0] != '-') {
            if (wi >= 0)
                return cli_fail(CLI_EXIT_BAD_ARGS, "bench takes one workload");
            for (int w = 0; w < 4; w++)
                if (strcmp(a, workload_names[w]) == 0)
                    wi = w;
            if (wi < 0)
                return cli_fail(CLI_EXIT_BAD_ARGS,
                                "unknown workload \"%s\" (put|range|txn-put|mixed)", a);
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '='), *v = NULL;
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (strcmp(name, "--json") == 0) {
            c->json = true;
            continue;
        }
        if (strcmp(name, "--sequential") == 0) {
            c->sequential = true;
            continue;
        }
        v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (v == NULL)
            return cli_fail(CLI_EXIT_BAD_ARGS, "flag needs an argument: %s", a);
        uint64_t x = 0;
        int rc = 0;
        if (strcmp(name, "--conns") == 0) {
            rc = parse_u64(name, v, 1, CLIENT_MAX_CONNECTIONS, &x);
            c->conns = (uint32_t)x;
        } else if (strcmp(name, "--clients") == 0) {
            rc = parse_u64(name, v, 1, BENCH_CLIENTS_MAX, &x);
            c->clients = (uint32_t)x;
        } else if (strcmp(name, "--total") == 0) {
            rc = parse_u64(name, v, 1, UINT64_C(1) << 40, &c->total);
            total_set = true;
        } else if (strcmp(name, "--duration") == 0) {
            if (!cli_parse_duration_ms(v, &c->duration_ms) || c->duration_ms == 0)
                return cli_fail(CLI_EXIT_BAD_ARGS, "bad --duration \"%s\"", v);
        } else if (strcmp(name, "--timeout") == 0) {
            if (!cli_parse_duration_ms(v, &c->timeout_ms) || c->timeout_ms == 0)
                return cli_fail(CLI_EXIT_BAD_ARGS, "bad --timeout \"%s\"", v);
        } else if (strcmp(name, "--key-size") == 0) {
            rc = parse_u64(name, v, 1, BENCH_KEY_BYTES_MAX, &x);
            c->key_size = (uint32_t)x;
        } else if (strcmp(name, "--val-size") == 0) {
            rc = parse_u64(name, v, 0, BENCH_VALUE_BYTES_MAX, &x);
            c->val_size = (uint32_t)x;
        } else if (strcmp(name, "--key-space") == 0) {
            rc = parse_u64(name, v, 1, UINT64_C(1) << 40, &c->key_space);
        } else if (strcmp(name, "--key-offset") == 0) {
            rc = parse_u64(name, v, 0, UINT64_C(1) << 40, &c->key_offset);
        } else if (strcmp(name, "--seed") == 0) {
            rc = parse_u64(name, v, 0, UINT64_MAX, &c->seed);
        } else if (strcmp(name, "--consistency") == 0) {
            if (strcmp(v, "l") != 0 && strcmp(v, "s") != 0)
                return cli_fail(CLI_EXIT_BAD_ARGS, "--consistency wants l or s");
            c->serializable = v[0] == 's';
        } else if (strcmp(name, "--read-fraction") == 0) {
            char *end;
            c->read_fraction = strtod(v, &end);
            if (*end != '\0' || c->read_fraction < 0 || c->read_fraction > 1)
                return cli_fail(CLI_EXIT_BAD_ARGS, "--read-fraction wants a number in [0, 1]");
        } else {
            return cli_fail(CLI_EXIT_BAD_ARGS, "unknown flag: %s", a);
        }
        if (rc)
            return rc;
    }
    if (wi < 0)
        return cli_fail(CLI_EXIT_BAD_ARGS, "bench needs a workload: put|range|txn-put|mixed");
    c->w = (workload)wi;
    if (c->duration_ms && total_set)
        return cli_fail(CLI_EXIT_BAD_ARGS, "--total and --duration exclude each other");
    if (c->duration_ms)
        c->total = 0;
    if (c->w == W_TXN_PUT && c->key_space > BENCH_KEY_SPACE_MAX)
        return cli_fail(CLI_EXIT_BAD_ARGS, "txn-put: --key-space at most %u", BENCH_KEY_SPACE_MAX);
    if (c->conns > c->clients)
        c->conns = c->clients;
    return 0;
}

static void report(const bench *b)
{
    const bench_config *c = &b->cfg;
    double secs = (double)(b->end_ns - b->start_ns) / 1e9;
    double rps = secs > 0 ? (double)b->ok / secs : 0;
    const client_hist *h = &b->hist;
    double ms[6] = {client_hist_mean(h) / 1e6,
                    (double)client_hist_percentile(h, 50) / 1e6,
                    (double)client_hist_percentile(h, 90) / 1e6,
                    (double)client_hist_percentile(h, 99) / 1e6,
                    (double)client_hist_percentile(h, 99.9) / 1e6,
                    (double)h->max / 1e6};
    if (h->count == 0)
        ms[5] = 0;
    if (c->json) {
        printf("{\"workload\":\"%s\",\"endpoints\":", workload_names[c->w]);
        cli_json_string(stdout, b->g->endpoints_buf, strlen(b->g->endpoints_buf));
        printf(
            ",\"conns\":%u,\"clients\":%u,\"consistency\":\"%s\",\"key_size\":%u,\"val_size\":%u,"
            "\"key_space\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"ok\":%" PRIu64
            ",\"errors\":%" PRIu64 ",\"txn_succeeded\":%" PRIu64 ",\"txn_failed\":%" PRIu64
            ",\"duration_s\":%.3f,\"throughput_rps\":%.1f,\"latency_ms\":{\"avg\":%.3f,\"p50\":%."
            "3f,"
            "\"p90\":%.3f,\"p99\":%.3f,\"p99.9\":%.3f,\"max\":%.3f}",
            c->conns, c->clients, c->serializable ? "s" : "l", c->key_size, c->val_size,
            c->key_space, b->done, b->ok, b->errors, b->txn_succeeded, b->txn_failed, secs, rps,
            ms[0], ms[1], ms[2], ms[3], ms[4], ms[5]);
        if (b->first_error[0]) {
            fputs(",\"first_error\":", stdout);
            cli_json_string(stdout, b->first_error, strlen(b->first_error));
        }
        puts("}");
        return;
    }
    printf("workload %s%s: %u clients over %u connections, %u-byte keys, %u-byte values, key space "
           "%" PRIu64 "\n",
           workload_names[c->w],
           c->w == W_RANGE || c->w == W_MIXED
               ? (c->serializable ? " (serializable)" : " (linearizable)")
               : "",
           c->clients, c->conns, c->key_size, c->val_size, c->key_space);
    printf("requests:   %" PRIu64 " (%" PRIu64 " ok, %" PRIu64 " failed) in %.2f s\n", b->done,
           b->ok, b->errors, secs);
    if (c->w == W_TXN_PUT)
        printf("txn:        %" PRIu64 " swapped, %" PRIu64 " lost the race\n", b->txn_succeeded,
               b->txn_failed);
    printf("throughput: %.1f req/s\n", rps);
    printf("latency ms: avg %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", ms[0],
           ms[1], ms[2], ms[3], ms[4], ms[5]);
    if (b->first_error[0])
        printf("first error: %s\n", b->first_error);
}

int cli_bench(const cli_globals *g, int argc, char **argv)
{
    bench *b = calloc(1, sizeof *b); /* freed below */
    if (b == NULL)
        return cli_fail(CLI_EXIT_ERROR, "out of memory");
    int rc = parse_args(argc, argv, &b->cfg);
    if (rc != 0) {
        free(b);
        return rc < 0 ? 0 : rc;
    }
    b->g = g;
    b->rng = b->cfg.seed * 2 + 1; /* xorshift needs a non-zero state */
    client_hist_init(&b->hist);
    b->slots = calloc(b->cfg.clients, sizeof *b->slots);
    b->value = malloc(b->cfg.val_size + 1);
    if (b->cfg.w == W_TXN_PUT)
        b->mod_revs = calloc(b->cfg.key_space, sizeof *b->mod_revs);
    rc = CLI_EXIT_ERROR;
    if (b->slots == NULL || b->value == NULL || (b->cfg.w == W_TXN_PUT && b->mod_revs == NULL)) {
        cli_fail(rc, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < b->cfg.val_size; i++)
        b->value[i] = (uint8_t)('a' + rng_next(&b->rng) % 26);
    uv_loop_init(&b->loop);
    client_options o = {
        .endpoints = g->endpoints,
        .endpoint_count = g->endpoint_count,
        .connections = b->cfg.conns,
        .max_inflight_per_connection = (b->cfg.clients + b->cfg.conns - 1) / b->cfg.conns,
        .max_queued = b->cfg.clients,
        .dial_timeout_ms = g->dial_timeout_ms,
    };
    fl_err err = client_open(&b->loop, &o, &b->c);
    if (err != FL_OK) {
        cli_fail(rc, "cannot use endpoints %s: %s", g->endpoints_buf, fl_err_name(err));
        uv_loop_close(&b->loop);
        goto out;
    }
    uv_timer_init(&b->loop, &b->progress);
    b->progress.data = b;
    uv_timer_start(&b->progress, on_progress, 1000, 1000);
    uv_signal_init(&b->loop, &b->sigint);
    b->sigint.data = b;
    uv_signal_start(&b->sigint, on_sigint, SIGINT);
    b->start_ns = uv_hrtime();
    for (uint32_t i = 0; i < b->cfg.clients; i++) {
        b->slots[i].b = b;
        bench_issue(&b->slots[i]);
    }
    bench_maybe_finish(b);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    print_progress(b, true);
    report(b);
    rc = b->errors == 0 && b->ok > 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
out:
    free(b->mod_revs);
    free(b->value);
    free(b->slots);
    free(b);
    return rc;
}

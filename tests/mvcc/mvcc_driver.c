/* mvcc_driver: runs a script of commands against a fresh store and prints
 * one canonical line per answer, so etcd_diff.py can compare it with what a
 * real etcd 3.4 answers to the same script.
 *
 * Input, one command per line, tokens separated by spaces, byte strings in
 * hex ("-" = empty):
 *   put KEY VALUE LEASE FLAGS(prev,ignore_value,ignore_lease as 3 digits)
 *   del KEY END PREV
 *   range KEY END LIMIT REV ORDER TARGET KEYS_ONLY COUNT_ONLY MINMOD MAXMOD MINCREATE MAXCREATE
 *   compact REV
 *   txn NCMP (RESULT TARGET KEY END NUMBER VALUE)*NCMP NSUCC OP* NFAIL OP*
 *       where OP is "R" + range fields, "P" + put fields, "D" + del fields,
 *       "T" + txn fields (nested).
 * Every command is validated (max 128 ops), encoded and applied, as the
 * server does. With an argument "batch", consecutive writes share LMDB
 * batches (committed before each range and every 7 writes), as the server's
 * write path does; the answers must not change.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mvcc/mvcc.h"

typedef struct parser {
    char *save;
    /* Everything parsed lives until the line is done. */
    void *allocs[4096];
    size_t nallocs;
} parser;

static void *palloc(parser *p, size_t n)
{
    void *m = calloc(1, n ? n : 1);
    if (m == NULL || p->nallocs == sizeof p->allocs / sizeof p->allocs[0]) {
        fprintf(stderr, "driver: out of memory\n");
        exit(2);
    }
    p->allocs[p->nallocs++] = m;
    return m;
}

static char *tok(parser *p)
{
    char *t = strtok_r(NULL, " \n", &p->save);
    if (t == NULL) {
        fprintf(stderr, "driver: short line\n");
        exit(2);
    }
    return t;
}

static long long num(parser *p)
{
    return strtoll(tok(p), NULL, 10);
}

static mvcc_bytes hex(parser *p)
{
    char *t = tok(p);
    mvcc_bytes b = {NULL, 0};
    if (strcmp(t, "-") == 0) {
        return b;
    }
    size_t n = strlen(t) / 2;
    uint8_t *d = palloc(p, n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(t + 2 * i, "%2x", &v);
        d[i] = (uint8_t)v;
    }
    b.data = d;
    b.len = n;
    return b;
}

static void parse_put(parser *p, mvcc_put_req *r)
{
    r->key = hex(p);
    r->value = hex(p);
    r->lease = num(p);
    char *f = tok(p);
    r->prev_kv = f[0] == '1';
    r->ignore_value = f[1] == '1';
    r->ignore_lease = f[2] == '1';
}

static void parse_del(parser *p, mvcc_delete_req *r)
{
    r->key = hex(p);
    r->range_end = hex(p);
    r->prev_kv = num(p) != 0;
}

static void parse_range(parser *p, mvcc_range_req *r)
{
    r->key = hex(p);
    r->range_end = hex(p);
    r->limit = num(p);
    r->revision = num(p);
    r->sort_order = (mvcc_sort_order)num(p);
    r->sort_target = (mvcc_sort_target)num(p);
    r->keys_only = num(p) != 0;
    r->count_only = num(p) != 0;
    r->min_mod_revision = num(p);
    r->max_mod_revision = num(p);
    r->min_create_revision = num(p);
    r->max_create_revision = num(p);
}

static void parse_txn(parser *p, mvcc_txn_req *t);

static const mvcc_op *parse_ops(parser *p, size_t *count)
{
    size_t n = (size_t)num(p);
    mvcc_op *ops = palloc(p, n * sizeof *ops);
    for (size_t i = 0; i < n; i++) {
        char *kind = tok(p);
        switch (kind[0]) {
        case 'R':
            ops[i].type = MVCC_OP_RANGE;
            parse_range(p, &ops[i].u.range);
            break;
        case 'P':
            ops[i].type = MVCC_OP_PUT;
            parse_put(p, &ops[i].u.put);
            break;
        case 'D':
            ops[i].type = MVCC_OP_DELETE;
            parse_del(p, &ops[i].u.del);
            break;
        default: {
            mvcc_txn_req *t = palloc(p, sizeof *t);
            parse_txn(p, t);
            ops[i].type = MVCC_OP_TXN;
            ops[i].u.txn = t;
        }
        }
    }
    *count = n;
    return ops;
}

static void parse_txn(parser *p, mvcc_txn_req *t)
{
    size_t nc = (size_t)num(p);
    mvcc_compare *cs = palloc(p, nc * sizeof *cs);
    for (size_t i = 0; i < nc; i++) {
        cs[i].result = (mvcc_compare_result)num(p);
        cs[i].target = (mvcc_compare_target)num(p);
        cs[i].key = hex(p);
        cs[i].range_end = hex(p);
        cs[i].number = num(p);
        cs[i].value = hex(p);
    }
    t->compares = cs;
    t->compares_count = nc;
    t->success = parse_ops(p, &t->success_count);
    t->failure = parse_ops(p, &t->failure_count);
}

static void print_bytes(mvcc_bytes b)
{
    if (b.len == 0) {
        printf("-");
    }
    for (size_t i = 0; i < b.len; i++) {
        printf("%02x", b.data[i]);
    }
}

static void print_kvs(const mvcc_kv *kvs, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? ";" : "");
        print_bytes(kvs[i].key);
        printf(",");
        print_bytes(kvs[i].value);
        printf(",%lld,%lld,%lld,%lld", (long long)kvs[i].create_revision,
               (long long)kvs[i].mod_revision, (long long)kvs[i].version, (long long)kvs[i].lease);
    }
    printf("]");
}

static void print_range(const mvcc_range_result *r)
{
    printf("R rev=%lld count=%lld more=%d kvs=", (long long)r->revision, (long long)r->count,
           r->more ? 1 : 0);
    print_kvs(r->kvs, r->kvs_count);
}

static void print_txn(const mvcc_txn_result *t)
{
    printf("T succ=%d {", t->succeeded ? 1 : 0);
    for (size_t i = 0; i < t->responses_count; i++) {
        const mvcc_op_result *o = &t->responses[i];
        printf(" ");
        switch (o->type) {
        case MVCC_OP_RANGE:
            print_range(&o->u.range);
            break;
        case MVCC_OP_PUT:
            printf("P prev=");
            print_kvs(&o->u.put.prev_kv, o->u.put.has_prev_kv ? 1 : 0);
            break;
        case MVCC_OP_DELETE:
            printf("D deleted=%lld prev=", (long long)o->u.del.deleted);
            print_kvs(o->u.del.prev_kvs, o->u.del.prev_kvs_count);
            break;
        case MVCC_OP_TXN:
            print_txn(o->u.txn);
            break;
        }
    }
    printf(" }");
}

static const char *err_name(fl_err err, mvcc_invalid_reason why)
{
    if (err == FL_ERR_INVALID && why == MVCC_INVALID_VALUE_PROVIDED) {
        return "value_provided";
    }
    if (err == FL_ERR_INVALID && why == MVCC_INVALID_LEASE_PROVIDED) {
        return "lease_provided";
    }
    return fl_err_name(err);
}

int main(int argc, char **argv)
{
    bool batch = argc > 1 && strcmp(argv[1], "batch") == 0;
    bool in_batch = false;
    int batched = 0;
    char dir[] = "/tmp/mvcc-driver-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        return 2;
    }
    mvcc_store *store;
    if (mvcc_open(dir, NULL, &store) != FL_OK) {
        return 2;
    }
    uint64_t index = 1;
    char line[65536];
    while (fgets(line, sizeof line, stdin) != NULL) {
        parser p = {0};
        char *cmd = strtok_r(line, " \n", &p.save);
        if (cmd == NULL) {
            continue;
        }
        if (in_batch && (strcmp(cmd, "range") == 0 || batched == 7)) {
            if (mvcc_batch_commit(store) != FL_OK) {
                return 2;
            }
            in_batch = false;
        }
        if (strcmp(cmd, "range") == 0) {
            mvcc_range_req req = {0};
            parse_range(&p, &req);
            mvcc_range_result res;
            fl_err err = req.key.len == 0 ? FL_ERR_KEY_EMPTY : mvcc_range(store, &req, &res);
            if (err != FL_OK) {
                printf("ERR %s\n", fl_err_name(err));
            } else {
                print_range(&res);
                printf("\n");
                mvcc_range_result_free(&res);
            }
        } else {
            mvcc_request req = {0};
            if (strcmp(cmd, "put") == 0) {
                req.type = MVCC_REQ_PUT;
                parse_put(&p, &req.u.put);
            } else if (strcmp(cmd, "del") == 0) {
                req.type = MVCC_REQ_DELETE;
                parse_del(&p, &req.u.del);
            } else if (strcmp(cmd, "compact") == 0) {
                req.type = MVCC_REQ_COMPACT;
                req.u.compact.revision = num(&p);
            } else {
                req.type = MVCC_REQ_TXN;
                parse_txn(&p, &req.u.txn);
            }
            mvcc_invalid_reason why;
            fl_err err = mvcc_request_validate_reason(&req, 128, &why);
            mvcc_response resp = {0};
            if (err == FL_OK && batch && !in_batch) {
                if (mvcc_batch_begin(store) != FL_OK) {
                    return 2;
                }
                in_batch = true;
                batched = 0;
            }
            if (err == FL_OK) {
                batched++;
                uint8_t *buf;
                size_t len;
                if (mvcc_request_encode(&req, &buf, &len) != FL_OK) {
                    return 2;
                }
                err = mvcc_apply(store, index++, buf, len, &resp);
                free(buf);
            }
            if (err != FL_OK) {
                printf("ERR %s\n", err_name(err, why));
            } else {
                printf("%c rev=%lld ", cmd[0], (long long)resp.revision);
                if (req.type == MVCC_REQ_PUT) {
                    printf("prev=");
                    print_kvs(&resp.u.put.prev_kv, resp.u.put.has_prev_kv ? 1 : 0);
                } else if (req.type == MVCC_REQ_DELETE) {
                    printf("deleted=%lld prev=", (long long)resp.u.del.deleted);
                    print_kvs(resp.u.del.prev_kvs, resp.u.del.prev_kvs_count);
                } else if (req.type == MVCC_REQ_TXN) {
                    print_txn(&resp.u.txn);
                }
                printf("\n");
            }
            mvcc_response_free(&resp);
        }
        for (size_t i = 0; i < p.nallocs; i++) {
            free(p.allocs[i]);
        }
        fflush(stdout);
    }
    if (in_batch && mvcc_batch_commit(store) != FL_OK) {
        return 2;
    }
    mvcc_close(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 2;
}

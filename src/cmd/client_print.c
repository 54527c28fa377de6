/* client_print: etcdctl 3.4's output formats.
 *  simple: printer_simple.go (key and value lines, "OK", counts).
 *  json:   Go's encoding/json of the etcdserverpb structs: snake_case or
 *          camelCase names as in the .proto's json tags, every field omitted
 *          when zero (omitempty), bytes as standard base64, oneofs as
 *          {"Response":{"ResponsePut":{...}}}.
 *  table:  olekukonko/tablewriter with ALIGN_RIGHT, only where etcdctl has it
 *          (member list, endpoint status); the caller rejects the rest.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/client_cli.h"

/* ---- json primitives ------------------------------------------------------ */

void cli_json_string(FILE *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        case '<':
        case '>':
        case '&': /* Go escapes these for HTML safety */
            fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            break;
        default:
            if (c < 0x20)
                fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

void cli_json_base64(FILE *out, const uint8_t *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', out);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputc(tab[(v >> 6) & 63], out);
        fputc(tab[v & 63], out);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        fprintf(out, "%c%c==", tab[v >> 18], tab[(v >> 12) & 63]);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        fprintf(out, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63]);
    }
    fputc('"', out);
}

/* An object being written: tracks whether a comma is due. */
typedef struct jobj {
    FILE *out;
    bool any;
} jobj;

static void jkey(jobj *o, const char *name)
{
    fprintf(o->out, "%s\"%s\":", o->any ? "," : "", name);
    o->any = true;
}

static void jint(jobj *o, const char *name, int64_t v)
{
    if (v == 0)
        return;
    jkey(o, name);
    fprintf(o->out, "%" PRId64, v);
}

static void juint(jobj *o, const char *name, uint64_t v)
{
    if (v == 0)
        return;
    jkey(o, name);
    fprintf(o->out, "%" PRIu64, v);
}

static void jbool(jobj *o, const char *name, bool v)
{
    if (!v)
        return;
    jkey(o, name);
    fputs("true", o->out);
}

static void jbytes(jobj *o, const char *name, ProtobufCBinaryData b)
{
    if (b.len == 0)
        return;
    jkey(o, name);
    cli_json_base64(o->out, b.data, b.len);
}

static void jstr(jobj *o, const char *name, const char *s)
{
    if (s == NULL || s[0] == '\0')
        return;
    jkey(o, name);
    cli_json_string(o->out, s, strlen(s));
}

static void jstrs(jobj *o, const char *name, char **v, size_t n)
{
    if (n == 0)
        return;
    jkey(o, name);
    fputc('[', o->out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', o->out);
        cli_json_string(o->out, v[i], strlen(v[i]));
    }
    fputc(']', o->out);
}

static void json_header(jobj *o, const Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL)
        return;
    jkey(o, "header");
    jobj in = {o->out, false};
    fputc('{', o->out);
    juint(&in, "cluster_id", h->cluster_id);
    juint(&in, "member_id", h->member_id);
    jint(&in, "revision", h->revision);
    juint(&in, "raft_term", h->raft_term);
    fputc('}', o->out);
}

static void json_kv_body(FILE *out, const Mvccpb__KeyValue *kv)
{
    jobj in = {out, false};
    fputc('{', out);
    jbytes(&in, "key", kv->key);
    jint(&in, "create_revision", kv->create_revision);
    jint(&in, "mod_revision", kv->mod_revision);
    jint(&in, "version", kv->version);
    jbytes(&in, "value", kv->value);
    jint(&in, "lease", kv->lease);
    fputc('}', out);
}

static void json_kv(jobj *o, const char *name, const Mvccpb__KeyValue *kv)
{
    if (kv == NULL)
        return;
    jkey(o, name);
    json_kv_body(o->out, kv);
}

static void json_kvs(jobj *o, const char *name, Mvccpb__KeyValue **kvs, size_t n)
{
    if (n == 0)
        return;
    jkey(o, name);
    fputc('[', o->out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', o->out);
        json_kv_body(o->out, kvs[i]);
    }
    fputc(']', o->out);
}

static void json_range_body(FILE *out, const Etcdserverpb__RangeResponse *r)
{
    jobj o = {out, false};
    fputc('{', out);
    json_header(&o, r->header);
    json_kvs(&o, "kvs", r->kvs, r->n_kvs);
    jbool(&o, "more", r->more);
    jint(&o, "count", r->count);
    fputc('}', out);
}

static void json_put_body(FILE *out, const Etcdserverpb__PutResponse *r)
{
    jobj o = {out, false};
    fputc('{', out);
    json_header(&o, r->header);
    json_kv(&o, "prev_kv", r->prev_kv);
    fputc('}', out);
}

static void json_delete_body(FILE *out, const Etcdserverpb__DeleteRangeResponse *r)
{
    jobj o = {out, false};
    fputc('{', out);
    json_header(&o, r->header);
    jint(&o, "deleted", r->deleted);
    json_kvs(&o, "prev_kvs", r->prev_kvs, r->n_prev_kvs);
    fputc('}', out);
}

static void json_txn_body(FILE *out, const Etcdserverpb__TxnResponse *r)
{
    jobj o = {out, false};
    fputc('{', out);
    json_header(&o, r->header);
    jbool(&o, "succeeded", r->succeeded);
    if (r->n_responses > 0) {
        jkey(&o, "responses");
        fputc('[', out);
        for (size_t i = 0; i < r->n_responses; i++) {
            const Etcdserverpb__ResponseOp *op = r->responses[i];
            if (i)
                fputc(',', out);
            switch (op->response_case) {
            case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
                fputs("{\"Response\":{\"ResponseRange\":", out);
                json_range_body(out, op->response_range);
                fputs("}}", out);
                break;
            case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
                fputs("{\"Response\":{\"ResponsePut\":", out);
                json_put_body(out, op->response_put);
                fputs("}}", out);
                break;
            case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
                fputs("{\"Response\":{\"ResponseDeleteRange\":", out);
                json_delete_body(out, op->response_delete_range);
                fputs("}}", out);
                break;
            case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN:
                fputs("{\"Response\":{\"ResponseTxn\":", out);
                json_txn_body(out, op->response_txn);
                fputs("}}", out);
                break;
            default:
                fputs("{}", out);
            }
        }
        fputc(']', out);
    }
    fputc('}', out);
}

/* ---- simple --------------------------------------------------------------- */

static void print_kv(const Mvccpb__KeyValue *kv, bool value_only)
{
    /* empty bytes arrive as data == NULL: fwrite must not see it */
    if (!value_only) {
        if (kv->key.len > 0)
            fwrite(kv->key.data, 1, kv->key.len, stdout);
        fputc('\n', stdout);
    }
    if (kv->value.len > 0)
        fwrite(kv->value.data, 1, kv->value.len, stdout);
    fputc('\n', stdout);
}

void cli_print_range(cli_format f, const Etcdserverpb__RangeResponse *r, bool value_only,
                     bool count_only)
{
    if (f == CLI_JSON) {
        json_range_body(stdout, r);
        fputc('\n', stdout);
        return;
    }
    if (count_only) {
        printf("%" PRId64 "\n", r->count);
        return;
    }
    for (size_t i = 0; i < r->n_kvs; i++)
        print_kv(r->kvs[i], value_only);
}

void cli_print_put(cli_format f, const Etcdserverpb__PutResponse *r)
{
    if (f == CLI_JSON) {
        json_put_body(stdout, r);
        fputc('\n', stdout);
        return;
    }
    puts("OK");
    if (r->prev_kv != NULL)
        print_kv(r->prev_kv, false);
}

void cli_print_delete(cli_format f, const Etcdserverpb__DeleteRangeResponse *r)
{
    if (f == CLI_JSON) {
        json_delete_body(stdout, r);
        fputc('\n', stdout);
        return;
    }
    printf("%" PRId64 "\n", r->deleted);
    for (size_t i = 0; i < r->n_prev_kvs; i++)
        print_kv(r->prev_kvs[i], false);
}

void cli_print_txn(cli_format f, const Etcdserverpb__TxnResponse *r)
{
    if (f == CLI_JSON) {
        json_txn_body(stdout, r);
        fputc('\n', stdout);
        return;
    }
    puts(r->succeeded ? "SUCCESS" : "FAILURE");
    for (size_t i = 0; i < r->n_responses; i++) {
        const Etcdserverpb__ResponseOp *op = r->responses[i];
        fputc('\n', stdout);
        switch (op->response_case) {
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
            cli_print_range(f, op->response_range, false, false);
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
            cli_print_put(f, op->response_put);
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
            cli_print_delete(f, op->response_delete_range);
            break;
        default:
            printf("unexpected response\n");
        }
    }
}

/* ---- table (tablewriter) -------------------------------------------------- */

#define TABLE_MAX_COLS 10

static void table_rule(const size_t *w, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++) {
        fputc('+', stdout);
        for (size_t i = 0; i < w[c] + 2; i++)
            fputc('-', stdout);
    }
    puts("+");
}

/* rows: nrows x ncols strings; header is centered, cells right-aligned. */
static void table_print(const char *const *hdr, size_t ncols, char ***rows, size_t nrows)
{
    size_t w[TABLE_MAX_COLS];
    for (size_t c = 0; c < ncols; c++) {
        w[c] = strlen(hdr[c]);
        for (size_t r = 0; r < nrows; r++)
            if (strlen(rows[r][c]) > w[c])
                w[c] = strlen(rows[r][c]);
    }
    table_rule(w, ncols);
    for (size_t c = 0; c < ncols; c++) {
        size_t extra = w[c] - strlen(hdr[c]), left = extra / 2;
        printf("| %*s%s%*s ", (int)left, "", hdr[c], (int)(extra - left), "");
    }
    puts("|");
    table_rule(w, ncols);
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++)
            printf("| %*s ", (int)w[c], rows[r][c]);
        puts("|");
    }
    table_rule(w, ncols);
}

static char *join(char **v, size_t n, const char *sep)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + strlen(sep);
    char *s = calloc(1, len); /* freed by the caller */
    if (s == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, sep);
        strcat(s, v[i]);
    }
    return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

static void rows_free(char ***rows, size_t nrows, size_t ncols)
{
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++)
            free(rows[r][c]);
        free(rows[r]);
    }
    free(rows);
}

static void rows_print(cli_format f, const char *const *hdr, size_t ncols, char ***rows,
                       size_t nrows)
{
    if (f == CLI_TABLE) {
        table_print(hdr, ncols, rows, nrows);
        return;
    }
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < ncols; c++)
            printf("%s%s", rows[r][c], c + 1 < ncols ? ", " : "\n");
}

static void json_member_body(FILE *out, const Etcdserverpb__Member *m)
{
    jobj mo = {out, false};
    fputc('{', out);
    juint(&mo, "ID", m->id);
    jstr(&mo, "name", m->name);
    jstrs(&mo, "peerURLs", m->peerurls, m->n_peerurls);
    jstrs(&mo, "clientURLs", m->clienturls, m->n_clienturls);
    jbool(&mo, "isLearner", m->islearner);
    fputc('}', out);
}

static void json_members(jobj *o, Etcdserverpb__Member *const *members, size_t n)
{
    if (n == 0)
        return;
    jkey(o, "members");
    fputc('[', o->out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', o->out);
        json_member_body(o->out, members[i]);
    }
    fputc(']', o->out);
}

void cli_print_member_change_json(const Etcdserverpb__ResponseHeader *header,
                                  const Etcdserverpb__Member *member,
                                  Etcdserverpb__Member *const *members, size_t n)
{
    jobj o = {stdout, false};
    fputc('{', stdout);
    json_header(&o, header);
    if (member != NULL) {
        jkey(&o, "member");
        json_member_body(stdout, member);
    }
    json_members(&o, members, n);
    puts("}");
}

void cli_print_header_json(const Etcdserverpb__ResponseHeader *header)
{
    jobj o = {stdout, false};
    fputc('{', stdout);
    json_header(&o, header);
    puts("}");
}

void cli_print_member_list(cli_format f, const Etcdserverpb__MemberListResponse *r)
{
    if (f == CLI_JSON) {
        cli_print_member_change_json(r->header, NULL, r->members, r->n_members);
        return;
    }
    static const char *const hdr[] = {"ID",         "STATUS",       "NAME",
                                      "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"};
    char ***rows = calloc(r->n_members + 1, sizeof *rows);
    if (rows == NULL)
        abort();
    for (size_t i = 0; i < r->n_members; i++) {
        const Etcdserverpb__Member *m = r->members[i];
        rows[i] = calloc(6, sizeof **rows);
        if (rows[i] == NULL)
            abort();
        rows[i][0] = fmt("%" PRIx64, m->id);
        rows[i][1] = fmt("%s", m->name && m->name[0] ? "started" : "unstarted");
        rows[i][2] = fmt("%s", m->name ? m->name : "");
        rows[i][3] = join(m->peerurls, m->n_peerurls, ",");
        rows[i][4] = join(m->clienturls, m->n_clienturls, ",");
        rows[i][5] = fmt("%s", m->islearner ? "true" : "false");
    }
    rows_print(f, hdr, 6, rows, r->n_members);
    rows_free(rows, r->n_members, 6);
}

/* go-humanize's Bytes: SI units, one decimal below 10. */
static char *humanize_bytes(uint64_t s)
{
    static const char *const sizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    if (s < 10)
        return fmt("%" PRIu64 " B", s);
    int e = (int)floor(log((double)s) / log(1000.0));
    double val = floor((double)s / pow(1000.0, e) * 10 + 0.5) / 10;
    return fmt(val < 10 ? "%.1f %s" : "%.0f %s", val, sizes[e]);
}

void cli_print_status(cli_format f, const char *const *endpoints,
                      Etcdserverpb__StatusResponse *const *st, size_t n)
{
    if (f == CLI_JSON) {
        fputc('[', stdout);
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            const Etcdserverpb__StatusResponse *s = st[i];
            if (s == NULL)
                continue;
            fputs(first ? "{\"Endpoint\":" : ",{\"Endpoint\":", stdout);
            first = false;
            cli_json_string(stdout, endpoints[i], strlen(endpoints[i]));
            fputs(",\"Status\":{", stdout);
            jobj o = {stdout, false};
            json_header(&o, s->header);
            jstr(&o, "version", s->version);
            jint(&o, "dbSize", s->dbsize);
            juint(&o, "leader", s->leader);
            juint(&o, "raftIndex", s->raftindex);
            juint(&o, "raftTerm", s->raftterm);
            juint(&o, "raftAppliedIndex", s->raftappliedindex);
            jstrs(&o, "errors", s->errors, s->n_errors);
            jint(&o, "dbSizeInUse", s->dbsizeinuse);
            jbool(&o, "isLearner", s->islearner);
            fputs("}}", stdout);
        }
        puts("]");
        return;
    }
    static const char *const hdr[] = {"ENDPOINT",           "ID",         "VERSION",   "DB SIZE",
                                      "IS LEADER",          "IS LEARNER", "RAFT TERM", "RAFT INDEX",
                                      "RAFT APPLIED INDEX", "ERRORS"};
    char ***rows = calloc(n + 1, sizeof *rows);
    if (rows == NULL)
        abort();
    size_t nrows = 0;
    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__StatusResponse *s = st[i];
        if (s == NULL)
            continue;
        uint64_t member = s->header ? s->header->member_id : 0;
        char **row = calloc(10, sizeof *row);
        if (row == NULL)
            abort();
        row[0] = fmt("%s", endpoints[i]);
        row[1] = fmt("%" PRIx64, member);
        row[2] = fmt("%s", s->version ? s->version : "");
        row[3] = humanize_bytes((uint64_t)s->dbsize);
        row[4] = fmt("%s", s->leader == member ? "true" : "false");
        row[5] = fmt("%s", s->islearner ? "true" : "false");
        row[6] = fmt("%" PRIu64, s->raftterm);
        row[7] = fmt("%" PRIu64, s->raftindex);
        row[8] = fmt("%" PRIu64, s->raftappliedindex);
        row[9] = join(s->errors, s->n_errors, ", ");
        rows[nrows++] = row;
    }
    rows_print(f, hdr, 10, rows, nrows);
    rows_free(rows, nrows, 10);
}

/* ---- endpoint health ------------------------------------------------------ */

void cli_go_duration(uint64_t ns, char *buf, size_t cap)
{
    /* Go's time.Duration.String: "850ns", "1.5µs", "12.830119ms", "5.000887174s", "1m2.5s". */
    if (ns == 0) {
        snprintf(buf, cap, "0s");
        return;
    }
    uint64_t unit;
    const char *name;
    if (ns < 1000) {
        snprintf(buf, cap, "%" PRIu64 "ns", ns);
        return;
    } else if (ns < 1000000) {
        unit = 1000, name = "\xc2\xb5s";
    } else if (ns < 1000000000) {
        unit = 1000000, name = "ms";
    } else {
        unit = 1000000000, name = "s";
    }
    uint64_t whole = ns / unit, frac = ns % unit;
    char prefix[48] = "";
    if (unit == 1000000000 && whole >= 60) {
        uint64_t h = whole / 3600, m = whole / 60 % 60;
        if (h > 0)
            snprintf(prefix, sizeof prefix, "%" PRIu64 "h%" PRIu64 "m", h, m);
        else
            snprintf(prefix, sizeof prefix, "%" PRIu64 "m", m);
        whole %= 60;
    }
    char digits[16] = "";
    int width = unit == 1000 ? 3 : unit == 1000000 ? 6 : 9;
    if (frac != 0) {
        snprintf(digits, sizeof digits, ".%0*" PRIu64, width, frac);
        size_t len = strlen(digits);
        while (len > 1 && digits[len - 1] == '0')
            digits[--len] = '\0';
    }
    snprintf(buf, cap, "%s%" PRIu64 "%s%s", prefix, whole, digits, name);
}

void cli_print_health(cli_format f, const cli_health *h, size_t n)
{
    if (f == CLI_JSON) {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",{\"endpoint\":" : "{\"endpoint\":", stdout);
            cli_json_string(stdout, h[i].endpoint, strlen(h[i].endpoint));
            printf(",\"health\":%s,\"took\":", h[i].healthy ? "true" : "false");
            cli_json_string(stdout, h[i].took, strlen(h[i].took));
            if (h[i].error[0] != '\0') {
                fputs(",\"error\":", stdout);
                cli_json_string(stdout, h[i].error, strlen(h[i].error));
            }
            fputc('}', stdout);
        }
        puts("]");
        return;
    }
    if (f == CLI_TABLE) {
        static const char *const hdr[] = {"ENDPOINT", "HEALTH", "TOOK", "ERROR"};
        char ***rows = calloc(n + 1, sizeof *rows);
        if (rows == NULL)
            abort();
        for (size_t i = 0; i < n; i++) {
            rows[i] = calloc(4, sizeof **rows);
            if (rows[i] == NULL)
                abort();
            rows[i][0] = fmt("%s", h[i].endpoint);
            rows[i][1] = fmt("%s", h[i].healthy ? "true" : "false");
            rows[i][2] = fmt("%s", h[i].took);
            rows[i][3] = fmt("%s", h[i].error);
        }
        table_print(hdr, 4, rows, n);
        rows_free(rows, n, 4);
        return;
    }
    /* etcdctl 3.4 writes both kinds of line to stderr */
    fflush(stdout);
    for (size_t i = 0; i < n; i++) {
        if (h[i].error[0] == '\0')
            fprintf(stderr, "%s is healthy: successfully committed proposal: took = %s\n",
                    h[i].endpoint, h[i].took);
        else
            fprintf(stderr, "%s is unhealthy: failed to commit proposal: %s\n", h[i].endpoint,
                    h[i].error);
    }
}

/* ---- Go's %q ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || n > left || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

void cli_go_quote(FILE *out, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text);
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\a':
            esc = "\\a";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\v':
            esc = "\\v";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            fputs(esc, out);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\x%02x", c);
        } else if (c < 0x80) {
            fputc(c, out);
        } else {
            /* multi-byte: kept when valid UTF-8 (printable runes, as Go keeps them) */
            size_t n = utf8_len(s + i, len - i);
            if (n == 0) {
                fprintf(out, "\\x%02x", c);
            } else {
                fwrite(s + i, 1, n, out);
                i += n - 1;
            }
        }
    }
    fputc('"', out);
}

/* client_txn_script: etcdctl's get/put/del argument forms and txn script,
 * parsed into protobuf-c requests allocated field by field with malloc, so
 * protobuf_c_message_free_unpacked frees them. */
#include "client/client_txn_script.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR(...) (snprintf(err, err_cap, __VA_ARGS__), FL_ERR_INVALID)

/* ---- words -------------------------------------------------------------- */

/* A Go-style double-quoted string starting at s[0] == '"'. Writes the decoded
 * bytes to out (capacity >= strlen(s)), sets *used to the bytes consumed. */
static bool unquote(const char *s, char *out, size_t *out_len, size_t *used)
{
    assert(s[0] == '"');
    size_t o = 0, i = 1;
    for (;;) {
        char ch = s[i];
        if (ch == '\0')
            return false;
        if (ch == '"') {
            i++;
            break;
        }
        if (ch != '\\') {
            out[o++] = ch;
            i++;
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'n':
            out[o++] = '\n';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case '0':
            out[o++] = '\0';
            break;
        case '\\':
            out[o++] = '\\';
            break;
        case '"':
            out[o++] = '"';
            break;
        case '\'':
            out[o++] = '\'';
            break;
        case 'x': {
            char hex[3] = {s[i], s[i] ? s[i + 1] : 0, 0};
            char *end;
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
                return false;
            out[o++] = (char)strtol(hex, &end, 16);
            i += 2;
            break;
        }
        default:
            return false;
        }
    }
    *out_len = o;
    *used = i;
    return true;
}

fl_err client_script_split(const char *line, char **argv, int argv_cap, int *argc, char *err,
                           size_t err_cap)
{
    int n = 0;
    const char *p = line;
    size_t line_len = strlen(line);
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (n == argv_cap) {
            for (int i = 0; i < n; i++)
                free(argv[i]);
            return ERR("too many words in line: %s", line);
        }
        char *word = malloc(line_len + 1); /* owned by the caller via argv */
        if (word == NULL) {
            for (int i = 0; i < n; i++)
                free(argv[i]);
            return FL_ERR_NOMEM;
        }
        size_t len = 0, used = 0;
        if (*p == '"') {
            if (!unquote(p, word, &len, &used)) {
                free(word);
                for (int i = 0; i < n; i++)
                    free(argv[i]);
                return ERR("invalid quoted string in: %s", line);
            }
            p += used;
        } else if (*p == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (end == NULL) {
                free(word);
                for (int i = 0; i < n; i++)
                    free(argv[i]);
                return ERR("unterminated quote in: %s", line);
            }
            len = (size_t)(end - p - 1);
            memcpy(word, p + 1, len);
            p = end + 1;
        } else {
            while (*p && !isspace((unsigned char)*p))
                word[len++] = *p++;
        }
        word[len] = '\0';
        argv[n++] = word;
    }
    *argc = n;
    return FL_OK;
}

/* ---- flags -------------------------------------------------------------- */

static bool set_bytes(ProtobufCBinaryData *b, const char *s, size_t len)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    if (len == 0)
        return true;
    b->data = malloc(len);
    if (b->data == NULL)
        return false;
    memcpy(b->data, s, len);
    b->len = len;
    return true;
}

typedef struct op_flags {
    bool prefix, from_key, keys_only, count_only, serializable;
    bool prev_kv, ignore_value, ignore_lease;
    int64_t limit, rev, lease;
    const char *sort_by, *order;
    const char *pos[4];
    int npos;
} op_flags;

static bool parse_bool(const char *v, bool *out)
{
    if (v == NULL || strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_int(const char *v, int base, int64_t *out)
{
    if (v == NULL || *v == '\0')
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, base);
    if (errno != 0 || *end != '\0')
        return false;
    *out = x;
    return true;
}

/* Parses argv[1..] of one verb into f. Flags are accepted anywhere. */
static fl_err parse_flags(const char *verb, int argc, char *const *argv, op_flags *f, char *err,
                          size_t err_cap)
{
    memset(f, 0, sizeof *f);
    bool is_get = strcmp(verb, "get") == 0, is_put = strcmp(verb, "put") == 0;
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flags_done || a[0] != '-' || a[1] == '\0') {
            if (f->npos == 4)
                return ERR("too many arguments for %s", verb);
            f->pos[f->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            flags_done = true;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        char namebuf[64];
        const char *eq = strchr(name, '=');
        const char *value = NULL;
        if (eq != NULL) {
            snprintf(namebuf, sizeof namebuf, "%.*s", (int)(eq - name), name);
            value = eq + 1;
        } else {
            snprintf(namebuf, sizeof namebuf, "%s", name);
        }
        bool *bflag = NULL;
        if (strcmp(namebuf, "prefix") == 0 && !is_put)
            bflag = &f->prefix;
        else if (strcmp(namebuf, "from-key") == 0 && !is_put)
            bflag = &f->from_key;
        else if (strcmp(namebuf, "keys-only") == 0 && is_get)
            bflag = &f->keys_only;
        else if (strcmp(namebuf, "count-only") == 0 && is_get)
            bflag = &f->count_only;
        else if (strcmp(namebuf, "prev-kv") == 0 && !is_get)
            bflag = &f->prev_kv;
        else if (strcmp(namebuf, "ignore-value") == 0 && is_put)
            bflag = &f->ignore_value;
        else if (strcmp(namebuf, "ignore-lease") == 0 && is_put)
            bflag = &f->ignore_lease;
        if (bflag != NULL) {
            if (!parse_bool(value, bflag))
                return ERR("invalid argument \"%s\" for \"--%s\" flag", value, namebuf);
            continue;
        }
        /* Flags with a value: "--flag=v" or "--flag v". */
        bool known = (is_get && (strcmp(namebuf, "limit") == 0 || strcmp(namebuf, "rev") == 0 ||
                                 strcmp(namebuf, "sort-by") == 0 || strcmp(namebuf, "order") == 0 ||
                                 strcmp(namebuf, "consistency") == 0)) ||
                     (is_put && strcmp(namebuf, "lease") == 0);
        if (!known)
            return ERR("unknown flag: %s", a);
        if (value == NULL) {
            if (i + 1 >= argc)
                return ERR("flag needs an argument: %s", a);
            value = argv[++i];
        }
        if (strcmp(namebuf, "limit") == 0 || strcmp(namebuf, "rev") == 0) {
            int64_t *dst = namebuf[0] == 'l' ? &f->limit : &f->rev;
            if (!parse_int(value, 10, dst))
                return ERR("invalid argument \"%s\" for \"--%s\" flag", value, namebuf);
        } else if (strcmp(namebuf, "lease") == 0) {
            if (!parse_int(value, 16, &f->lease))
                return ERR("bad lease ID (%s), expecting ID in Hex", value);
        } else if (strcmp(namebuf, "sort-by") == 0) {
            f->sort_by = value;
        } else if (strcmp(namebuf, "order") == 0) {
            f->order = value;
        } else {
            if (strcmp(value, "s") == 0)
                f->serializable = true;
            else if (strcmp(value, "l") == 0)
                f->serializable = false;
            else
                return ERR("unknown consistency flag %s", value);
        }
    }
    return FL_OK;
}

/* key/range_end from positional arguments and --prefix/--from-key, as etcdctl. */
static fl_err key_range(const char *verb, const op_flags *f, ProtobufCBinaryData *key,
                        ProtobufCBinaryData *end, char *err, size_t err_cap)
{
    if (f->npos < 1 || f->npos > 2)
        return ERR("%s command needs one argument as key and an optional argument as range_end",
                   verb);
    if (f->prefix && f->from_key)
        return ERR("`--prefix` and `--from-key` cannot be set at the same time, choose one");
    if ((f->prefix || f->from_key) && f->npos == 2)
        return ERR("too many arguments, only accept one argument when `--%s` is set",
                   f->prefix ? "prefix" : "from-key");
    const char *k = f->pos[0];
    size_t klen = strlen(k);
    if (f->prefix || f->from_key) {
        if (klen == 0) {
            /* the whole key space, as clientv3 does */
            if (!set_bytes(key, "\0", 1) || !set_bytes(end, "\0", 1))
                return FL_ERR_NOMEM;
            return FL_OK;
        }
        if (!set_bytes(key, k, klen))
            return FL_ERR_NOMEM;
        if (f->from_key)
            return set_bytes(end, "\0", 1) ? FL_OK : FL_ERR_NOMEM;
        uint8_t *tmp = malloc(klen);
        if (tmp == NULL)
            return FL_ERR_NOMEM;
        size_t n = client_prefix_end((const uint8_t *)k, klen, tmp);
        bool ok = set_bytes(end, (const char *)tmp, n);
        free(tmp);
        return ok ? FL_OK : FL_ERR_NOMEM;
    }
    if (!set_bytes(key, k, klen))
        return FL_ERR_NOMEM;
    if (f->npos == 2 && !set_bytes(end, f->pos[1], strlen(f->pos[1])))
        return FL_ERR_NOMEM;
    return FL_OK;
}

static fl_err build_range(const op_flags *f, Etcdserverpb__RangeRequest *r, char *err,
                          size_t err_cap)
{
    fl_err e = key_range("get", f, &r->key, &r->range_end, err, err_cap);
    if (e != FL_OK)
        return e;
    r->limit = f->limit;
    r->revision = f->rev;
    r->keys_only = f->keys_only;
    r->count_only = f->count_only;
    r->serializable = f->serializable;
    Etcdserverpb__RangeRequest__SortOrder order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    if (f->order != NULL && f->order[0] != '\0') {
        if (strcasecmp(f->order, "ASCEND") == 0)
            order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
        else if (strcasecmp(f->order, "DESCEND") == 0)
            order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
        else {
            snprintf(err, err_cap, "bad sort order %s", f->order);
            return FL_ERR_UNIMPLEMENTED;
        }
    }
    Etcdserverpb__RangeRequest__SortTarget target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    if (f->sort_by != NULL && f->sort_by[0] != '\0') {
        static const struct {
            const char *name;
            Etcdserverpb__RangeRequest__SortTarget t;
        } targets[] = {
            {"KEY", ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY},
            {"CREATE", ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE},
            {"MODIFY", ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD},
            {"VALUE", ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE},
            {"VERSION", ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION},
        };
        size_t i = 0;
        while (i < 5 && strcasecmp(f->sort_by, targets[i].name) != 0)
            i++;
        if (i == 5) {
            snprintf(err, err_cap, "bad sort target %s", f->sort_by);
            return FL_ERR_UNIMPLEMENTED;
        }
        target = targets[i].t;
    }
    /* As clientv3.WithSort: ascending by key is the server's natural order. */
    if (target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND)
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    r->sort_order = order;
    r->sort_target = target;
    return FL_OK;
}

static fl_err build_put(const op_flags *f, Etcdserverpb__PutRequest *p, bool *value_missing,
                        char *err, size_t err_cap)
{
    *value_missing = false;
    if (f->npos < 1)
        return ERR("put command needs 1 argument and input from stdin or 2 arguments");
    if (f->ignore_value && f->npos > 1)
        return ERR("put command needs only 1 argument when 'ignore-value' is set");
    if (!set_bytes(&p->key, f->pos[0], strlen(f->pos[0])))
        return FL_ERR_NOMEM;
    if (f->npos >= 2) {
        if (!set_bytes(&p->value, f->pos[1], strlen(f->pos[1])))
            return FL_ERR_NOMEM;
    } else if (!f->ignore_value) {
        *value_missing = true;
    }
    p->lease = f->lease;
    p->prev_kv = f->prev_kv;
    p->ignore_value = f->ignore_value;
    p->ignore_lease = f->ignore_lease;
    return FL_OK;
}

fl_err client_op_parse(int argc, char *const *argv, Etcdserverpb__RequestOp **out,
                       bool *value_missing, char *err, size_t err_cap)
{
    assert(argc >= 1 && out != NULL && value_missing != NULL);
    *out = NULL;
    *value_missing = false;
    const char *verb = argv[0];
    if (strcmp(verb, "get") != 0 && strcmp(verb, "put") != 0 && strcmp(verb, "del") != 0)
        return ERR("unknown operation %s (want get, put or del)", verb);
    op_flags f;
    fl_err e = parse_flags(verb, argc, argv, &f, err, err_cap);
    if (e != FL_OK)
        return e;
    Etcdserverpb__RequestOp *op = malloc(sizeof *op); /* owned by the caller on success */
    if (op == NULL)
        return FL_ERR_NOMEM;
    etcdserverpb__request_op__init(op);
    if (verb[0] == 'g') {
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        op->request_range = malloc(sizeof *op->request_range);
        if (op->request_range != NULL) {
            etcdserverpb__range_request__init(op->request_range);
            e = build_range(&f, op->request_range, err, err_cap);
        }
    } else if (verb[0] == 'p') {
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op->request_put = malloc(sizeof *op->request_put);
        if (op->request_put != NULL) {
            etcdserverpb__put_request__init(op->request_put);
            e = build_put(&f, op->request_put, value_missing, err, err_cap);
        }
    } else {
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        op->request_delete_range = malloc(sizeof *op->request_delete_range);
        if (op->request_delete_range != NULL) {
            etcdserverpb__delete_range_request__init(op->request_delete_range);
            e = key_range("del", &f, &op->request_delete_range->key,
                          &op->request_delete_range->range_end, err, err_cap);
            op->request_delete_range->prev_kv = f.prev_kv;
        }
    }
    if (op->request_range == NULL && op->request_put == NULL && op->request_delete_range == NULL) {
        /* the union's one pointer failed to allocate */
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST__NOT_SET;
        e = FL_ERR_NOMEM;
    }
    if (e != FL_OK) {
        protobuf_c_message_free_unpacked(&op->base, NULL);
        return e;
    }
    *out = op;
    return FL_OK;
}

/* ---- compares ----------------------------------------------------------- */

fl_err client_compare_parse(const char *line, Etcdserverpb__Compare **out, char *err,
                            size_t err_cap)
{
    *out = NULL;
    const char *lparen = strchr(line, '(');
    if (lparen == NULL)
        return ERR("malformed comparison: %s", line);
    char target[16];
    size_t tlen = (size_t)(lparen - line);
    if (tlen == 0 || tlen >= sizeof target)
        return ERR("malformed comparison: %s", line);
    memcpy(target, line, tlen);
    target[tlen] = '\0';
    const char *p = lparen + 1;
    size_t cap = strlen(line) + 1;
    char *key = malloc(cap), *val = malloc(cap);
    fl_err e = FL_ERR_INVALID;
    Etcdserverpb__Compare *c = NULL;
    if (key == NULL || val == NULL) {
        e = FL_ERR_NOMEM;
        goto out;
    }
    size_t key_len, val_len, used;
    if (*p != '"' || !unquote(p, key, &key_len, &used) || p[used] != ')') {
        e = ERR("malformed comparison: %s", line);
        goto out;
    }
    p += used + 1;
    while (*p == ' ' || *p == '\t')
        p++;
    char op[3] = {0};
    size_t oplen = 0;
    while (oplen < 2 && *p && *p != ' ' && *p != '\t')
        op[oplen++] = *p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '"' || !unquote(p, val, &val_len, &used)) {
        e = ERR("malformed comparison: %s", line);
        goto out;
    }
    for (p += used; *p; p++)
        if (!isspace((unsigned char)*p)) {
            e = ERR("malformed comparison: %s", line);
            goto out;
        }
    c = malloc(sizeof *c); /* owned by the caller on success */
    if (c == NULL) {
        e = FL_ERR_NOMEM;
        goto out;
    }
    etcdserverpb__compare__init(c);
    if (strcmp(op, "=") == 0)
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    else if (strcmp(op, "!=") == 0)
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
    else if (strcmp(op, "<") == 0)
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
    else if (strcmp(op, ">") == 0)
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    else {
        e = ERR("malformed comparison: %s (unknown op %s)", line, op);
        goto out;
    }
    if (!set_bytes(&c->key, key, key_len)) {
        e = FL_ERR_NOMEM;
        goto out;
    }
    val[val_len] = '\0';
    int64_t n = 0;
    bool numeric = parse_int(val, 10, &n);
    if (strcmp(target, "ver") == 0 || strcmp(target, "version") == 0) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        c->version = n;
    } else if (strcmp(target, "c") == 0 || strcmp(target, "create") == 0) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        c->create_revision = n;
    } else if (strcmp(target, "m") == 0 || strcmp(target, "mod") == 0) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        c->mod_revision = n;
    } else if (strcmp(target, "lease") == 0) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
        c->lease = n;
    } else if (strcmp(target, "val") == 0 || strcmp(target, "value") == 0) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        numeric = true;
        if (!set_bytes(&c->value, val, val_len)) {
            e = FL_ERR_NOMEM;
            goto out;
        }
    } else {
        e = ERR("malformed comparison: %s (unknown target %s)", line, target);
        goto out;
    }
    if (!numeric) {
        e = ERR("invalid txn compare request: %s", line);
        goto out;
    }
    *out = c;
    c = NULL;
    e = FL_OK;
out:
    if (c != NULL)
        protobuf_c_message_free_unpacked(&c->base, NULL);
    free(key);
    free(val);
    return e;
}

/* ---- the txn script ----------------------------------------------------- */

fl_err client_txn_builder_init(client_txn_builder *b)
{
    b->section = CLIENT_TXN_COMPARES;
    b->req = malloc(sizeof *b->req); /* owned by b */
    if (b->req == NULL)
        return FL_ERR_NOMEM;
    etcdserverpb__txn_request__init(b->req);
    return FL_OK;
}

static bool is_blank(const char *line)
{
    for (; *line; line++)
        if (!isspace((unsigned char)*line))
            return false;
    return true;
}

static bool append_ptr(void ***array, size_t *n, void *item)
{
    if (*n >= CLIENT_SCRIPT_MAX_OPS)
        return false;
    void **p = realloc(*array, (*n + 1) * sizeof **array);
    if (p == NULL)
        return false;
    p[*n] = item;
    *array = p;
    (*n)++;
    return true;
}

fl_err client_txn_builder_line(client_txn_builder *b, const char *line, char *err, size_t err_cap)
{
    assert(b->req != NULL);
    if (b->section == CLIENT_TXN_DONE)
        return is_blank(line) ? FL_OK
                              : ERR("unexpected input after the failure requests: %s", line);
    if (is_blank(line)) {
        b->section++;
        return FL_OK;
    }
    while (isspace((unsigned char)*line))
        line++;
    if (b->section == CLIENT_TXN_COMPARES) {
        Etcdserverpb__Compare *c;
        fl_err e = client_compare_parse(line, &c, err, err_cap);
        if (e != FL_OK)
            return e;
        if (!append_ptr((void ***)&b->req->compare, &b->req->n_compare, c)) {
            protobuf_c_message_free_unpacked(&c->base, NULL);
            return ERR("too many compares (at most %d)", CLIENT_SCRIPT_MAX_OPS);
        }
        return FL_OK;
    }
    char *argv[CLIENT_SCRIPT_MAX_ARGS];
    int argc = 0;
    fl_err e = client_script_split(line, argv, CLIENT_SCRIPT_MAX_ARGS, &argc, err, err_cap);
    if (e != FL_OK)
        return e;
    Etcdserverpb__RequestOp *op = NULL;
    bool value_missing = false;
    char why[CLIENT_MESSAGE_BYTES];
    if (argc < 2)
        e = ERR("invalid txn compare request: %s", line);
    else
        e = client_op_parse(argc, argv, &op, &value_missing, why, sizeof why);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    if ((e == FL_ERR_INVALID || e == FL_ERR_UNIMPLEMENTED) && argc >= 2)
        return ERR("invalid txn request: %s (%s)", line, why);
    if (e != FL_OK)
        return e;
    if (value_missing) {
        protobuf_c_message_free_unpacked(&op->base, NULL);
        return ERR("invalid txn request: %s (put needs a value)", line);
    }
    bool ok = b->section == CLIENT_TXN_SUCCESS
                  ? append_ptr((void ***)&b->req->success, &b->req->n_success, op)
                  : append_ptr((void ***)&b->req->failure, &b->req->n_failure, op);
    if (!ok) {
        protobuf_c_message_free_unpacked(&op->base, NULL);
        return ERR("too many operations (at most %d)", CLIENT_SCRIPT_MAX_OPS);
    }
    return FL_OK;
}

Etcdserverpb__TxnRequest *client_txn_builder_take(client_txn_builder *b)
{
    Etcdserverpb__TxnRequest *r = b->req;
    b->req = NULL;
    b->section = CLIENT_TXN_DONE;
    return r;
}

void client_txn_builder_free(client_txn_builder *b)
{
    if (b->req != NULL)
        protobuf_c_message_free_unpacked(&b->req->base, NULL);
    b->req = NULL;
}

fl_err client_txn_script_parse(const char *text, size_t len, Etcdserverpb__TxnRequest **out,
                               char *err, size_t err_cap)
{
    *out = NULL;
    client_txn_builder b;
    fl_err e = client_txn_builder_init(&b);
    if (e != FL_OK)
        return e;
    char *line = malloc(len + 1);
    if (line == NULL) {
        client_txn_builder_free(&b);
        return FL_ERR_NOMEM;
    }
    size_t start = 0;
    while (start < len && e == FL_OK) {
        size_t end = start;
        while (end < len && text[end] != '\n')
            end++;
        memcpy(line, text + start, end - start);
        line[end - start] = '\0';
        e = client_txn_builder_line(&b, line, err, err_cap);
        start = end + 1;
    }
    free(line);
    if (e != FL_OK) {
        client_txn_builder_free(&b);
        return e;
    }
    *out = client_txn_builder_take(&b);
    return FL_OK;
}

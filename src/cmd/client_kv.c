/* client_kv: the key-value verbs get, put, del, txn and compact. Argument forms
 * are parsed by src/client/client_txn_script (shared with txn scripts); here
 * only the CLI-only flags, the request and the printing. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_txn_script.h"
#include "cmd/client_cli.h"

#define STDIN_VALUE_BYTES_MAX (64u << 20)
#define TXN_LINE_BYTES_MAX    (16u << 20)

/* Runs one call and prints "Error: <etcd message>" on failure. */
static int call(const cli_globals *g, client_method method, const void *req, void **resp)
{
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    client_status st;
    fl_err err = client_sync_call(sc, method, req, g->command_timeout_ms, resp, &st);
    client_sync_close(sc);
    if (err != FL_OK)
        return cli_fail(CLI_EXIT_ERROR, "%s", st.message[0] ? st.message : fl_err_name(err));
    return CLI_EXIT_OK;
}

static int no_table(const cli_globals *g)
{
    if (g->format == CLI_TABLE)
        return cli_fail(CLI_EXIT_BAD_FEATURE, "table not supported as output format");
    return 0;
}

/* Removes a boolean CLI-only flag (e.g. --print-value-only[=true|false]) from argv. */
static bool take_bool_flag(int *argc, char **argv, const char *name, bool *value)
{
    size_t len = strlen(name);
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        bool match = false, v = true;
        if (strcmp(a, name) == 0)
            match = true;
        else if (strncmp(a, name, len) == 0 && a[len] == '=') {
            match = true;
            v = strcmp(a + len + 1, "false") != 0 && strcmp(a + len + 1, "0") != 0;
        }
        if (match) {
            *value = v;
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof *argv);
            (*argc)--;
            i--;
        }
    }
    return true;
}

static int parse_op(int argc, char **argv, Etcdserverpb__RequestOp **op, bool *value_missing)
{
    char err[CLIENT_MESSAGE_BYTES];
    fl_err e = client_op_parse(argc, argv, op, value_missing, err, sizeof err);
    if (e == FL_ERR_INVALID)
        return cli_fail(CLI_EXIT_BAD_ARGS, "%s", err);
    if (e == FL_ERR_UNIMPLEMENTED) /* unknown sort target/order: etcdctl's ExitBadFeature */
        return cli_fail(CLI_EXIT_BAD_FEATURE, "%s", err);
    if (e != FL_OK)
        return cli_fail(CLI_EXIT_ERROR, "%s", fl_err_name(e));
    return 0;
}

int cli_get(const cli_globals *g, int argc, char **argv)
{
    bool value_only = false, missing;
    take_bool_flag(&argc, argv, "--print-value-only", &value_only);
    int rc = no_table(g);
    Etcdserverpb__RequestOp *op = NULL;
    if (rc == 0)
        rc = parse_op(argc, argv, &op, &missing);
    if (rc != 0)
        return rc;
    void *resp = NULL;
    rc = call(g, CLIENT_RANGE, op->request_range, &resp);
    if (rc == 0)
        cli_print_range(g->format, resp, value_only, op->request_range->count_only);
    client_free_response(resp);
    client_free_response(op);
    return rc;
}

/* Reads all of stdin (the value of `put KEY` without VALUE, as etcdctl). */
static bool read_stdin(uint8_t **data, size_t *len)
{
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            if (cap >= STDIN_VALUE_BYTES_MAX) {
                free(buf);
                return false;
            }
            uint8_t *p = realloc(buf, cap * 2);
            if (p == NULL)
                break;
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + n, cap - n);
        if (r < 0) {
            free(buf);
            return false;
        }
        if (r == 0) {
            *data = buf;
            *len = n;
            return true;
        }
        n += (size_t)r;
    }
    free(buf);
    return false;
}

int cli_put(const cli_globals *g, int argc, char **argv)
{
    bool missing = false;
    int rc = no_table(g);
    Etcdserverpb__RequestOp *op = NULL;
    if (rc == 0)
        rc = parse_op(argc, argv, &op, &missing);
    if (rc != 0)
        return rc;
    if (missing) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (!read_stdin(&data, &len) || len == 0) {
            free(data);
            client_free_response(op);
            return cli_fail(CLI_EXIT_BAD_ARGS,
                            "put command needs 1 argument and input from stdin or 2 arguments");
        }
        op->request_put->value.data = data; /* freed with op */
        op->request_put->value.len = len;
    }
    void *resp = NULL;
    rc = call(g, CLIENT_PUT, op->request_put, &resp);
    if (rc == 0)
        cli_print_put(g->format, resp);
    client_free_response(resp);
    client_free_response(op);
    return rc;
}

int cli_del(const cli_globals *g, int argc, char **argv)
{
    bool missing;
    int rc = no_table(g);
    Etcdserverpb__RequestOp *op = NULL;
    if (rc == 0)
        rc = parse_op(argc, argv, &op, &missing);
    if (rc != 0)
        return rc;
    void *resp = NULL;
    rc = call(g, CLIENT_DELETE_RANGE, op->request_delete_range, &resp);
    if (rc == 0)
        cli_print_delete(g->format, resp);
    client_free_response(resp);
    client_free_response(op);
    return rc;
}

int cli_txn(const cli_globals *g, int argc, char **argv)
{
    bool interactive = false;
    take_bool_flag(&argc, argv, "--interactive", &interactive);
    take_bool_flag(&argc, argv, "-i", &interactive);
    if (argc != 1)
        return cli_fail(CLI_EXIT_BAD_ARGS, "txn command does not accept argument");
    int rc = no_table(g);
    if (rc)
        return rc;
    client_txn_builder b;
    if (client_txn_builder_init(&b) != FL_OK)
        return cli_fail(CLI_EXIT_ERROR, "out of memory");
    static const char *const prompts[] = {
        "compares:", "success requests (get, put, del):", "failure requests (get, put, del):"};
    client_txn_section shown = CLIENT_TXN_DONE;
    char *line = NULL;
    size_t cap = 0;
    char err[CLIENT_MESSAGE_BYTES];
    while (b.section != CLIENT_TXN_DONE) {
        if (interactive && shown != b.section) {
            puts(prompts[b.section]);
            fflush(stdout);
            shown = b.section;
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break; /* end of input ends the sections still open */
        if ((size_t)n > TXN_LINE_BYTES_MAX) {
            rc = cli_fail(CLI_EXIT_INVALID_INPUT, "txn line longer than %u bytes",
                          TXN_LINE_BYTES_MAX);
            break;
        }
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (client_txn_builder_line(&b, line, err, sizeof err) != FL_OK) {
            rc = cli_fail(CLI_EXIT_INVALID_INPUT, "%s", err);
            break;
        }
    }
    free(line);
    if (rc) {
        client_txn_builder_free(&b);
        return rc;
    }
    Etcdserverpb__TxnRequest *req = client_txn_builder_take(&b);
    void *resp = NULL;
    rc = call(g, CLIENT_TXN, req, &resp);
    if (rc == 0)
        cli_print_txn(g->format, resp);
    client_free_response(resp);
    client_free_response(req);
    return rc;
}

int cli_compact(const cli_globals *g, int argc, char **argv)
{
    bool physical = false;
    take_bool_flag(&argc, argv, "--physical", &physical);
    if (argc != 2)
        return cli_fail(CLI_EXIT_BAD_ARGS, "compaction command needs 1 argument");
    char *end;
    long long rev = strtoll(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0')
        return cli_fail(CLI_EXIT_BAD_ARGS, "bad revision \"%s\"", argv[1]);
    int rc = no_table(g);
    if (rc)
        return rc;
    Etcdserverpb__CompactionRequest req;
    etcdserverpb__compaction_request__init(&req);
    req.revision = rev;
    req.physical = physical;
    void *resp = NULL;
    rc = call(g, CLIENT_COMPACT, &req, &resp);
    if (rc == 0)
        printf("compacted revision %lld\n", rev); /* etcdctl prints this for json too */
    client_free_response(resp);
    return rc;
}

/* client_main: the client verbs' entry point. Global flags (etcdctl's
 * --endpoints, -w/--write-out, --command-timeout, --dial-timeout) may appear
 * anywhere on the line; they are taken out before the verb parses the rest. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/client_cli.h"
#include "cmd/commands.h"

void cmd_client_usage(void)
{
    printf(
        "  put KEY [VALUE]      put a key (--prev-kv --lease HEX --ignore-value --ignore-lease);\n"
        "                       without VALUE the value is read from stdin\n"
        "  get KEY [END]        get a key or range (--prefix --from-key --limit N --rev N\n"
        "                       --sort-by KEY|CREATE|MODIFY|VALUE|VERSION --order ASCEND|DESCEND\n"
        "                       --keys-only --count-only --print-value-only --consistency l|s)\n"
        "  del KEY [END]        delete a key or range (--prefix --from-key --prev-kv)\n"
        "  txn [-i]             a transaction read from stdin in etcdctl's format:\n"
        "                       compares, blank line, success ops, blank line, failure ops\n"
        "  compact REV          compact history up to REV (--physical)\n"
        "  status [--cluster]   status of each endpoint (also: endpoint status); --cluster:\n"
        "                       of every member's client URL from the member list\n"
        "  endpoint health [--cluster]  a linearizable get through each endpoint\n"
        "  member list          the cluster's members\n"
        "  member add NAME --peer-urls=URL[,URL] [--learner]\n"
        "  member remove ID | member update ID --peer-urls=URL[,URL] | member promote ID\n"
        "                       (ID in hex, as member list prints it)\n"
        "  move-leader ID       hand leadership to member ID (the leader is found among\n"
        "                       the endpoints)\n"
        "  bench WORKLOAD       load generator: put|range|txn-put|mixed (flotilla bench --help)\n"
        "\n  client flags (anywhere on the line):\n"
        "  --endpoints A,B      endpoints host:port or http://host:port (default 127.0.0.1:2379)\n"
        "  -w, --write-out F    simple|json|table (table: status, health and member list only)\n"
        "  --command-timeout D  per request, e.g. 5s (default 5s)\n"
        "  --dial-timeout D     per connection attempt (default 2s)\n"
        "  exit codes: 0 ok, 1 request failed, 3 invalid txn input, 4 unsupported\n"
        "              output format, 128 bad arguments (as etcdctl)\n");
}

int cli_fail(int code, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    fflush(stdout);
    fputs("Error: ", stderr);
    vfprintf(stderr, f, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

bool cli_parse_duration_ms(const char *text, uint64_t *ms)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || v < 0)
        return false;
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0)
        scale = 1000;
    else if (strcmp(end, "ms") == 0)
        scale = 1;
    else if (strcmp(end, "m") == 0)
        scale = 60000;
    else if (strcmp(end, "h") == 0)
        scale = 3600000;
    else
        return false;
    *ms = (uint64_t)(v * scale);
    return true;
}

bool cli_open(const cli_globals *g, int only_endpoint, client_sync **out)
{
    client_options o = {0};
    o.endpoints = only_endpoint >= 0 ? &g->endpoints[only_endpoint] : g->endpoints;
    o.endpoint_count = only_endpoint >= 0 ? 1 : g->endpoint_count;
    o.connections = 1;
    o.dial_timeout_ms = g->dial_timeout_ms;
    fl_err err = client_sync_open(&o, out);
    if (err != FL_OK) {
        cli_fail(CLI_EXIT_ERROR, "cannot use endpoints %s: %s", g->endpoints_buf, fl_err_name(err));
        return false;
    }
    return true;
}

static int set_endpoints(cli_globals *g, const char *list)
{
    snprintf(g->endpoints_buf, sizeof g->endpoints_buf, "%s", list);
    g->endpoint_count = 0;
    char *save = NULL;
    /* endpoints point into split_buf; commas become NULs */
    snprintf(g->split_buf, sizeof g->split_buf, "%s", list);
    for (char *t = strtok_r(g->split_buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (g->endpoint_count == CLI_MAX_ENDPOINTS)
            return cli_fail(CLI_EXIT_BAD_ARGS, "too many endpoints (at most %d)",
                            CLI_MAX_ENDPOINTS);
        g->endpoints[g->endpoint_count++] = t;
    }
    if (g->endpoint_count == 0)
        return cli_fail(CLI_EXIT_BAD_ARGS, "--endpoints is empty");
    return 0;
}

/* Takes the global flags out of argv (in place); returns 0 or an exit code. */
static int parse_globals(cli_globals *g, int *argc, char **argv)
{
    int out = 0;
    int rc = set_endpoints(g, "127.0.0.1:2379");
    if (rc)
        return rc;
    g->format = CLI_SIMPLE;
    g->command_timeout_ms = 5000;
    g->dial_timeout_ms = 2000;
    bool flags_done = false;
    for (int i = 0; i < *argc; i++) {
        char *a = argv[i];
        if (flags_done || strcmp(a, "--") == 0) {
            flags_done = true;
            argv[out++] = a;
            continue;
        }
        const char *names[] = {"--endpoints", "--write-out", "-w", "--command-timeout",
                               "--dial-timeout"};
        int which = -1;
        const char *value = NULL;
        for (int n = 0; n < 5 && which < 0; n++) {
            size_t len = strlen(names[n]);
            if (strcmp(a, names[n]) == 0) {
                which = n;
                if (i + 1 >= *argc)
                    return cli_fail(CLI_EXIT_BAD_ARGS, "flag needs an argument: %s", a);
                value = argv[++i];
            } else if (strncmp(a, names[n], len) == 0 && a[len] == '=') {
                which = n;
                value = a + len + 1;
            }
        }
        if (which < 0) {
            argv[out++] = a;
            continue;
        }
        if (which == 0) {
            rc = set_endpoints(g, value);
            if (rc)
                return rc;
        } else if (which == 1 || which == 2) {
            if (strcmp(value, "simple") == 0)
                g->format = CLI_SIMPLE;
            else if (strcmp(value, "json") == 0)
                g->format = CLI_JSON;
            else if (strcmp(value, "table") == 0)
                g->format = CLI_TABLE;
            else
                return cli_fail(CLI_EXIT_BAD_FEATURE, "unsupported output format %s", value);
        } else {
            uint64_t *dst = which == 3 ? &g->command_timeout_ms : &g->dial_timeout_ms;
            if (!cli_parse_duration_ms(value, dst))
                return cli_fail(CLI_EXIT_BAD_ARGS, "invalid duration \"%s\" for %s", value, a);
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int cmd_client_main(int argc, char **argv)
{
    cli_globals g;
    memset(&g, 0, sizeof g);
    int rc = parse_globals(&g, &argc, argv);
    if (rc)
        return rc;
    if (argc == 0)
        return cli_fail(CLI_EXIT_BAD_ARGS, "no verb");
    const char *verb = argv[0];
    if (strcmp(verb, "bench") != 0)
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                printf("usage: flotilla [client flags] <verb> [flags]\n\n");
                cmd_client_usage();
                return CLI_EXIT_OK;
            }
    static const struct {
        const char *name;
        int (*fn)(const cli_globals *, int, char **);
    } verbs[] = {
        {"get", cli_get},       {"put", cli_put},         {"del", cli_del},
        {"txn", cli_txn},       {"compact", cli_compact}, {"status", cli_status},
        {"member", cli_member}, {"bench", cli_bench},     {"move-leader", cli_move_leader},
    };
    if (strcmp(verb, "endpoint") == 0) {
        if (argc >= 2 && strcmp(argv[1], "status") == 0)
            rc = cli_status(&g, argc - 1, argv + 1);
        else if (argc >= 2 && strcmp(argv[1], "health") == 0)
            rc = cli_endpoint_health(&g, argc - 1, argv + 1);
        else
            return cli_fail(CLI_EXIT_BAD_ARGS, "unknown command \"endpoint %s\"",
                            argc >= 2 ? argv[1] : "");
        fflush(stdout);
        return rc;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verb, verbs[i].name) == 0) {
            rc = verbs[i].fn(&g, argc, argv);
            fflush(stdout);
            return rc;
        }
    return cli_fail(CLI_EXIT_BAD_ARGS, "unknown command \"%s\" for \"flotilla\" (flotilla --help)",
                    verb);
}

/* client_cluster: `status` / `endpoint status` and `endpoint health`, each
 * with etcdctl's --cluster: the client URLs of the member list (read through
 * the given endpoints, with failover) become the endpoints. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/client_cli.h"

/* Endpoints taken from the member list; the strings are owned here. */
typedef struct cluster_endpoints {
    cli_globals g; /* a copy of the caller's, with the endpoints replaced */
    char urls[CLI_MAX_ENDPOINTS][256];
} cluster_endpoints;

/* Takes "--cluster[=true|false]" out of argv[1..]; rejects anything else. */
static int parse_cluster_flag(int argc, char **argv, const char *what, bool *cluster)
{
    *cluster = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--cluster") == 0 || strcmp(a, "--cluster=true") == 0)
            *cluster = true;
        else if (strcmp(a, "--cluster=false") == 0)
            *cluster = false;
        else if (a[0] == '-')
            return cli_fail(CLI_EXIT_BAD_ARGS, "unknown flag: %s", a);
        else
            return cli_fail(CLI_EXIT_BAD_ARGS, "%s command takes no arguments", what);
    }
    return 0;
}

/* etcdctl's endpointsFromCluster: every client URL of every member, in the
 * member list's order. Returns 0 or an exit code (message printed). */
static int endpoints_from_cluster(const cli_globals *g, cluster_endpoints *out)
{
    out->g = *g;
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    Etcdserverpb__MemberListResponse *list = NULL;
    client_status s;
    fl_err err = client_sync_member_list(sc, g->command_timeout_ms, &list, &s);
    client_sync_close(sc);
    if (err != FL_OK)
        return cli_fail(CLI_EXIT_ERROR,
                        "failed to fetch endpoints from etcd cluster member list: %s",
                        s.message[0] ? s.message : fl_err_name(err));
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < list->n_members && rc == 0; i++)
        for (size_t u = 0; u < list->members[i]->n_clienturls && rc == 0; u++) {
            const char *url = list->members[i]->clienturls[u];
            if (n == CLI_MAX_ENDPOINTS || strlen(url) >= sizeof out->urls[0])
                rc = cli_fail(CLI_EXIT_ERROR, "the member list has more than %d client URLs",
                              CLI_MAX_ENDPOINTS);
            else {
                snprintf(out->urls[n], sizeof out->urls[n], "%s", url);
                out->g.endpoints[n] = out->urls[n];
                n++;
            }
        }
    client_free_response(list);
    out->g.endpoint_count = n;
    return rc;
}

static int status_of(const cli_globals *g)
{
    /* One Status per endpoint, as etcdctl endpoint status does; a failing
     * endpoint is reported on stderr and the exit code is 1. */
    Etcdserverpb__StatusResponse *st[CLI_MAX_ENDPOINTS] = {0};
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < g->endpoint_count; i++) {
        client_sync *sc;
        if (!cli_open(g, (int)i, &sc)) {
            rc = CLI_EXIT_ERROR;
            break;
        }
        client_status s;
        if (client_sync_status(sc, g->command_timeout_ms, &st[i], &s) != FL_OK) {
            fflush(stdout);
            fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n", g->endpoints[i],
                    s.message);
            rc = CLI_EXIT_ERROR;
        }
        client_sync_close(sc);
    }
    cli_print_status(g->format, g->endpoints, st, g->endpoint_count);
    for (size_t i = 0; i < g->endpoint_count; i++)
        client_free_response(st[i]);
    return rc;
}

int cli_status(const cli_globals *g, int argc, char **argv)
{
    bool cluster;
    int rc = parse_cluster_flag(argc, argv, "status", &cluster);
    if (rc)
        return rc;
    if (!cluster)
        return status_of(g);
    cluster_endpoints *ce = calloc(1, sizeof *ce); /* freed below */
    if (ce == NULL)
        return cli_fail(CLI_EXIT_ERROR, "out of memory");
    rc = endpoints_from_cluster(g, ce);
    if (rc == 0)
        rc = status_of(&ce->g);
    free(ce);
    return rc;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* etcdctl's health check: a linearizable Get of "health" through this
 * endpoint alone; any answer (even no key) means the member can reach a
 * quorum. Endpoints are checked one after another (etcdctl runs them in
 * parallel and prints them as they finish; here they come in order). */
static int health_of(const cli_globals *g)
{
    cli_health h[CLI_MAX_ENDPOINTS];
    memset(h, 0, sizeof h);
    bool any_error = false;
    for (size_t i = 0; i < g->endpoint_count; i++) {
        h[i].endpoint = g->endpoints[i];
        client_sync *sc;
        uint64_t start = now_ns();
        if (!cli_open(g, (int)i, &sc))
            return CLI_EXIT_ERROR;
        Etcdserverpb__RangeRequest get;
        etcdserverpb__range_request__init(&get);
        get.key = (ProtobufCBinaryData){.len = 6, .data = (uint8_t *)"health"};
        Etcdserverpb__RangeResponse *resp = NULL;
        client_status s;
        fl_err err = client_sync_range(sc, &get, g->command_timeout_ms, &resp, &s);
        cli_go_duration(now_ns() - start, h[i].took, sizeof h[i].took);
        client_sync_close(sc);
        client_free_response(resp);
        h[i].healthy = err == FL_OK;
        if (err != FL_OK) {
            snprintf(h[i].error, sizeof h[i].error, "%s",
                     s.message[0] ? s.message : fl_err_name(err));
            any_error = true;
        }
    }
    cli_print_health(g->format, h, g->endpoint_count);
    if (any_error)
        return cli_fail(CLI_EXIT_ERROR, "unhealthy cluster");
    return CLI_EXIT_OK;
}

int cli_endpoint_health(const cli_globals *g, int argc, char **argv)
{
    bool cluster;
    int rc = parse_cluster_flag(argc, argv, "endpoint health", &cluster);
    if (rc)
        return rc;
    if (!cluster)
        return health_of(g);
    cluster_endpoints *ce = calloc(1, sizeof *ce); /* freed below */
    if (ce == NULL)
        return cli_fail(CLI_EXIT_ERROR, "out of memory");
    rc = endpoints_from_cluster(g, ce);
    if (rc == 0)
        rc = health_of(&ce->g);
    free(ce);
    return rc;
}

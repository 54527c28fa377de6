/* client_cluster: `status` (etcdctl's `endpoint status`) and `member list`. */
#include <stdlib.h>
#include <string.h>

#include "cmd/client_cli.h"

int cli_status(const cli_globals *g, int argc, char **argv)
{
    if (argc != 1)
        return cli_fail(CLI_EXIT_BAD_ARGS, "status command takes no arguments");
    /* One Status per endpoint, as etcdctl endpoint status does; a failing
     * endpoint is reported on stderr and the exit code is 1. */
    Etcdserverpb__StatusResponse *st[CLI_MAX_ENDPOINTS] = {0};
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < g->endpoint_count; i++) {
        client_sync *sc;
        if (!cli_open(g, (int)i, &sc))
            return CLI_EXIT_ERROR;
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

int cli_member(const cli_globals *g, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "list") != 0)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member: only \"member list\" is supported");
    if (argc != 2)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member list takes no arguments");
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    Etcdserverpb__MemberListResponse *resp = NULL;
    client_status s;
    fl_err err = client_sync_member_list(sc, g->command_timeout_ms, &resp, &s);
    client_sync_close(sc);
    if (err != FL_OK)
        return cli_fail(CLI_EXIT_ERROR, "%s", s.message);
    cli_print_member_list(g->format, resp);
    client_free_response(resp);
    return CLI_EXIT_OK;
}

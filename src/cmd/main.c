/* The `flotilla` binary: one entry point, dispatching on the verb. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"

static void usage(void)
{
    printf("flotilla %s: a distributed, strongly consistent key-value store (etcd v3 API)\n\n"
           "usage: flotilla <verb> [flags]\n\n"
           "  serve [flags]        run a member (flotilla serve --help for flags)\n",
           FLOTILLA_VERSION);
    cmd_client_usage();
    printf("\n  --version            print Flotilla's version\n");
}

/* etcd's command line: `etcd --name ... --initial-cluster ...` starts a
 * member. So that a script that starts etcd starts Flotilla with only the
 * binary changed, a first argument that is one of the member's own flags
 * (never a client flag) means `serve`. */
static bool is_member_flag(const char *arg)
{
    static const char *const flags[] = {
        "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
        "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
        "initial-cluster-token", "heartbeat-interval", "election-timeout", "snapshot-count",
        "quota-backend-bytes", "max-request-bytes", "max-txn-ops", "logger", "log-level"};
    if (arg[0] != '-')
        return false;
    const char *name = arg + (arg[1] == '-' ? 2 : 1);
    size_t len = strcspn(name, "=");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i]) == len && strncmp(flags[i], name, len) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && is_member_flag(argv[1]))
        return cmd_serve_main(argc, argv); /* argv[0] stands where "serve" would */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("flotilla %s (etcd API 3.4)\n", FLOTILLA_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve_main(argc - 1, argv + 1);
    return cmd_client_main(argc - 1, argv + 1);
}

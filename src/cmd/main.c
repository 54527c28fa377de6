/* The `flotilla` binary: one entry point, dispatching on the verb. */
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

int main(int argc, char **argv)
{
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

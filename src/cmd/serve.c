/* serve: `flotilla serve`, one member.
 *
 * Parses etcd-style flags (`--flag value` or `--flag=value`), opens the
 * member (src/server), listens for gRPC on every --listen-client-urls entry
 * (src/api), and runs the loop until SIGINT/SIGTERM. Shutdown order: close
 * the listeners (no new requests, connections closed), then stop the member
 * (the WAL writer drains, pending writes are applied and answered), then
 * close the signal handles; main frees the member (closes WAL and LMDB).
 * Exit codes: 0 clean stop, 1 start-up or runtime failure, 2 bad flags.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api/api.h"
#include "cmd/commands.h"
#include "server/server.h"
#include "util/log.h"

#define SERVE_LISTENERS_MAX 16
#define SERVE_HOST_BYTES    64

typedef struct serve_flags {
    const char *name;
    const char *data_dir;
    const char *listen_client_urls;
    const char *advertise_client_urls;
    const char *listen_peer_urls;
    const char *initial_advertise_peer_urls;
    const char *initial_cluster;
    const char *initial_cluster_state;
    const char *initial_cluster_token;
    const char *log_level;
    const char *logger; /* accepted for etcd compatibility; one logger here */
    uint64_t heartbeat_interval;
    uint64_t election_timeout;
    uint64_t max_request_bytes;
    uint64_t quota_backend_bytes;
    uint64_t max_txn_ops;
    uint64_t snapshot_count;
    uint64_t wal_segment_bytes; /* advanced/testing: not in --help */
} serve_flags;

typedef struct serve_url {
    char host[SERVE_HOST_BYTES];
    int port;
} serve_url;

typedef struct serve_state {
    uv_loop_t loop;
    server *srv;
    api_grpc_server *listeners[SERVE_LISTENERS_MAX];
    size_t listeners_count;
    size_t listeners_open;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    bool shutting_down;
    int exit_code;
} serve_state;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: flotilla serve [flags]\n\n"
        "Runs one Flotilla member (etcd v3 API over gRPC, cleartext HTTP/2).\n"
        "Flags take `--flag value` or `--flag=value`.\n\n"
        "  --name NAME                         member name (default \"default\")\n"
        "  --data-dir DIR                      data dir (default \"<name>.flotilla\")\n"
        "  --listen-client-urls URLS           comma list of http://IP:PORT to serve clients on\n"
        "                                      (default http://127.0.0.1:2379)\n"
        "  --advertise-client-urls URLS        client URLs shown in member list\n"
        "                                      (default: the listen URLs)\n"
        "  --listen-peer-urls URLS             where peers connect (default: the advertised peer\n"
        "                                      URL; a lone member without cluster flags listens\n"
        "                                      on an ephemeral port of 127.0.0.1)\n"
        "  --initial-advertise-peer-urls URLS  this member's peer URLs; seed the member id\n"
        "                                      (default http://localhost:2380)\n"
        "  --initial-cluster NAME=URL,...      the members of a new cluster (default\n"
        "                                      <name>=<advertised peer URL>: a cluster of one)\n"
        "  --initial-cluster-state STATE       new (default) or existing (joining a cluster,\n"
        "                                      after etcdctl member add)\n"
        "  --initial-cluster-token TOKEN       seeds the ids (default \"flotilla-cluster\")\n"
        "  --heartbeat-interval MS             leader heartbeat period (default 100)\n"
        "  --election-timeout MS               follower timeout before an election (default\n"
        "                                      1000; at least 5 x the heartbeat interval)\n"
        "  --max-request-bytes N               largest client request (default 1572864)\n"
        "  --quota-backend-bytes N             backend size quota (default 2147483648; 0 = "
        "default)\n"
        "  --max-txn-ops N                     most operations in one txn (default 128)\n"
        "  --snapshot-count N                  entries applied between checkpoints, which sync\n"
        "                                      the backend and release old WAL segments\n"
        "                                      (default 100000, as etcd 3.4)\n"
        "  --log-level LEVEL                   debug, info, warn or error (default info)\n"
        "  --logger NAME                       accepted for etcd compatibility\n"
        "  --help                              this text\n");
}

static bool parse_u64(const char *text, uint64_t *out)
{
    if (!text || !*text || *text == '-')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

typedef enum { FLAG_STRING, FLAG_U64 } flag_kind;
typedef struct flag_def {
    const char *name;
    flag_kind kind;
    size_t offset;
} flag_def;

static const flag_def flag_defs[] = {
    {"name", FLAG_STRING, offsetof(serve_flags, name)},
    {"data-dir", FLAG_STRING, offsetof(serve_flags, data_dir)},
    {"listen-client-urls", FLAG_STRING, offsetof(serve_flags, listen_client_urls)},
    {"advertise-client-urls", FLAG_STRING, offsetof(serve_flags, advertise_client_urls)},
    {"listen-peer-urls", FLAG_STRING, offsetof(serve_flags, listen_peer_urls)},
    {"initial-advertise-peer-urls", FLAG_STRING,
     offsetof(serve_flags, initial_advertise_peer_urls)},
    {"initial-cluster", FLAG_STRING, offsetof(serve_flags, initial_cluster)},
    {"initial-cluster-state", FLAG_STRING, offsetof(serve_flags, initial_cluster_state)},
    {"initial-cluster-token", FLAG_STRING, offsetof(serve_flags, initial_cluster_token)},
    {"log-level", FLAG_STRING, offsetof(serve_flags, log_level)},
    {"logger", FLAG_STRING, offsetof(serve_flags, logger)},
    {"heartbeat-interval", FLAG_U64, offsetof(serve_flags, heartbeat_interval)},
    {"election-timeout", FLAG_U64, offsetof(serve_flags, election_timeout)},
    {"max-request-bytes", FLAG_U64, offsetof(serve_flags, max_request_bytes)},
    {"quota-backend-bytes", FLAG_U64, offsetof(serve_flags, quota_backend_bytes)},
    {"max-txn-ops", FLAG_U64, offsetof(serve_flags, max_txn_ops)},
    {"snapshot-count", FLAG_U64, offsetof(serve_flags, snapshot_count)},
    /* advanced, for tests: WAL segment size in bytes (default 64 MiB) */
    {"wal-segment-bytes", FLAG_U64, offsetof(serve_flags, wal_segment_bytes)},
};

/* Returns 0 to run, 1 after --help, 2 on a bad flag (message printed). */
static int parse_flags(int argc, char **argv, serve_flags *flags)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0 || strcmp(arg, "--") == 0) {
            fprintf(stderr, "flotilla serve: unexpected argument %s (see --help)\n", arg);
            return 2;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1); /* Go's flag package takes - and -- */
        if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0) {
            usage(stdout);
            return 1;
        }
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const flag_def *def = NULL;
        for (size_t d = 0; d < sizeof flag_defs / sizeof flag_defs[0]; d++)
            if (strlen(flag_defs[d].name) == name_len &&
                memcmp(flag_defs[d].name, name, name_len) == 0)
                def = &flag_defs[d];
        if (!def) {
            fprintf(stderr, "flotilla serve: unknown flag %.*s (see --help)\n",
                    (int)((size_t)(name - arg) + name_len), arg);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "flotilla serve: flag --%s needs a value\n", def->name);
                return 2;
            }
            value = argv[++i];
        }
        void *field = (char *)flags + def->offset;
        if (def->kind == FLAG_STRING) {
            *(const char **)field = value;
        } else if (!parse_u64(value, (uint64_t *)field)) {
            fprintf(stderr, "flotilla serve: --%s wants a non-negative integer, not \"%s\"\n",
                    def->name, value);
            return 2;
        }
    }
    return 0;
}

/* Parses one http://IP:PORT listen URL; prints why not and returns false. */
static bool parse_listen_url(const char *url, size_t len, serve_url *out)
{
    static const char http[] = "http://";
    if (len >= 8 && strncmp(url, "https://", 8) == 0) {
        fprintf(stderr,
                "flotilla serve: %.*s: https is not supported yet (TLS comes later); use http://\n",
                (int)len, url);
        return false;
    }
    if (len < sizeof http || strncmp(url, http, sizeof http - 1) != 0) {
        fprintf(stderr, "flotilla serve: %.*s: a listen URL must look like http://IP:PORT\n",
                (int)len, url);
        return false;
    }
    const char *host = url + sizeof http - 1;
    const char *end = url + len;
    if (end > host && end[-1] == '/')
        end--;
    const char *host_end, *colon;
    if (*host == '[') { /* [IPv6]:port */
        host++;
        host_end = memchr(host, ']', (size_t)(end - host));
        colon = host_end && host_end + 1 < end && host_end[1] == ':' ? host_end + 1 : NULL;
    } else {
        colon = NULL;
        for (const char *p = host; p < end; p++)
            if (*p == ':')
                colon = p;
        host_end = colon;
    }
    if (!colon || !host_end || host_end == host || (size_t)(host_end - host) >= SERVE_HOST_BYTES) {
        fprintf(stderr, "flotilla serve: %.*s: a listen URL needs a host and a port\n", (int)len,
                url);
        return false;
    }
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    if (strcmp(out->host, "localhost") == 0)
        strcpy(out->host, "127.0.0.1");
    char port_text[8];
    size_t port_len = (size_t)(end - colon - 1);
    uint64_t port = 0;
    if (port_len == 0 || port_len >= sizeof port_text) {
        port = 0;
    } else {
        memcpy(port_text, colon + 1, port_len);
        port_text[port_len] = '\0';
        if (!parse_u64(port_text, &port))
            port = 0;
    }
    /* port 0: the kernel picks one; the "serving gRPC" log line names it,
     * so tests never race for a port */
    bool zero = port_len == 1 && colon[1] == '0';
    if ((port == 0 && !zero) || port > 65535) {
        fprintf(stderr, "flotilla serve: %.*s: bad port\n", (int)len, url);
        return false;
    }
    struct in6_addr addr6;
    struct in_addr addr4;
    if (uv_inet_pton(AF_INET, out->host, &addr4) != 0 &&
        uv_inet_pton(AF_INET6, out->host, &addr6) != 0) {
        fprintf(
            stderr,
            "flotilla serve: %.*s: the host of a listen URL must be an IP address (or localhost)\n",
            (int)len, url);
        return false;
    }
    out->port = (int)port;
    return true;
}

static bool parse_listen_urls(const char *text, serve_url *urls, size_t *count)
{
    *count = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            if (*count == SERVE_LISTENERS_MAX) {
                fprintf(stderr, "flotilla serve: at most %d listen URLs\n", SERVE_LISTENERS_MAX);
                return false;
            }
            if (!parse_listen_url(p, len, &urls[*count]))
                return false;
            (*count)++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (*count == 0) {
        fprintf(stderr, "flotilla serve: --listen-client-urls is empty\n");
        return false;
    }
    return true;
}

static bool parse_log_level(const char *text, fl_log_level *out)
{
    static const struct {
        const char *name;
        fl_log_level level;
    } levels[] = {{"debug", FL_LOG_DEBUG},
                  {"info", FL_LOG_INFO},
                  {"warn", FL_LOG_WARN},
                  {"error", FL_LOG_ERROR}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(text, levels[i].name) == 0) {
            *out = levels[i].level;
            return true;
        }
    fprintf(stderr, "flotilla serve: --log-level must be debug, info, warn or error\n");
    return false;
}

/* ---- shutdown ------------------------------------------------------------ */

static void on_signal_closed(uv_handle_t *handle)
{
    (void)handle;
}

static void on_server_stopped(void *ctx)
{
    serve_state *st = ctx;
    uv_close((uv_handle_t *)&st->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&st->sigterm, on_signal_closed);
}

static void on_listener_closed(void *ctx)
{
    serve_state *st = ctx;
    assert(st->listeners_open > 0);
    if (--st->listeners_open == 0)
        server_stop(st->srv, on_server_stopped, st);
}

static void begin_shutdown(serve_state *st, int exit_code)
{
    if (st->exit_code == 0)
        st->exit_code = exit_code;
    if (st->shutting_down)
        return;
    st->shutting_down = true;
    FL_LOG_INFOF("serve", "shutting down", "exit_code=%d", st->exit_code);
    if (st->listeners_count == 0) {
        server_stop(st->srv, on_server_stopped, st);
        return;
    }
    st->listeners_open = st->listeners_count;
    for (size_t i = 0; i < st->listeners_count; i++)
        api_grpc_close(st->listeners[i], on_listener_closed, st);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    serve_state *st = handle->data;
    FL_LOG_INFOF("serve", "signal received", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_shutdown(st, 0);
}

static void on_fatal(void *ctx, fl_err err, const char *reason)
{
    serve_state *st = ctx;
    if (err == FL_ERR_MEMBER_ID_REMOVED) {
        /* removed from the cluster: a clean stop, as etcd's */
        FL_LOG_WARNF("serve", "stopping: removed from the cluster", "reason=\"%s\"", reason);
        begin_shutdown(st, 0);
        return;
    }
    FL_LOG_ERRORF("serve", "stopping after a fatal member error", "err=%s reason=\"%s\"",
                  fl_err_name(err), reason);
    begin_shutdown(st, 1);
}

/* ---- main ---------------------------------------------------------------- */

static int run(serve_state *st, const serve_flags *flags, const serve_url *urls, size_t url_count)
{
    server_options options = {
        .name = flags->name,
        .data_dir = flags->data_dir,
        .advertise_client_urls =
            flags->advertise_client_urls ? flags->advertise_client_urls : flags->listen_client_urls,
        .initial_cluster_token = flags->initial_cluster_token,
        .initial_advertise_peer_urls = flags->initial_advertise_peer_urls,
        .quota_backend_bytes = flags->quota_backend_bytes,
        .max_txn_ops = (uint32_t)flags->max_txn_ops,
        .snapshot_count = flags->snapshot_count,
        .wal_segment_bytes = flags->wal_segment_bytes,
        .initial_cluster = flags->initial_cluster,
        .initial_cluster_state = flags->initial_cluster_state,
        .listen_peer_urls = flags->listen_peer_urls,
        .heartbeat_ms = (uint32_t)flags->heartbeat_interval,
        .election_ms = (uint32_t)flags->election_timeout,
        /* TEST-ONLY hooks, from the environment so no production flag exists */
        .test_fault_file = getenv("FLOTILLA_TEST_FAULT_FILE"),
        .test_unsafe_local_reads = getenv("FLOTILLA_TEST_UNSAFE_LOCAL_READS") != NULL &&
                                   strcmp(getenv("FLOTILLA_TEST_UNSAFE_LOCAL_READS"), "1") == 0,
        .fatal = on_fatal,
        .fatal_ctx = st,
    };
    char errbuf[1024] = "";
    fl_err err = server_create(&st->loop, &options, &st->srv, errbuf, sizeof errbuf);
    if (err != FL_OK) {
        FL_LOG_ERRORF("serve", "cannot start the member", "err=%s reason=\"%s\"", fl_err_name(err),
                      errbuf);
        fprintf(stderr, "flotilla serve: %s\n", errbuf);
        return 1;
    }
    uv_signal_init(&st->loop, &st->sigint);
    uv_signal_init(&st->loop, &st->sigterm);
    st->sigint.data = st->sigterm.data = st;
    uv_signal_start(&st->sigint, on_signal, SIGINT);
    uv_signal_start(&st->sigterm, on_signal, SIGTERM);

    api_options api_opts = {.max_request_bytes = flags->max_request_bytes};
    for (size_t i = 0; i < url_count; i++) {
        err = api_grpc_listen(&st->loop, st->srv, urls[i].host, urls[i].port, &api_opts,
                              &st->listeners[st->listeners_count]);
        if (err != FL_OK) {
            FL_LOG_ERRORF("serve", "cannot listen", "host=%s port=%d err=%s", urls[i].host,
                          urls[i].port, fl_err_name(err));
            fprintf(stderr, "flotilla serve: cannot listen on %s:%d: %s\n", urls[i].host,
                    urls[i].port, fl_err_name(err));
            begin_shutdown(st, 1);
            break;
        }
        st->listeners_count++;
    }
    if (!st->shutting_down && !flags->advertise_client_urls) {
        /* advertised = the listen URLs, with the ports really bound (port 0) */
        char adv[SERVE_LISTENERS_MAX * (SERVE_HOST_BYTES + 16)] = "";
        size_t used = 0;
        for (size_t i = 0; i < st->listeners_count; i++) {
            bool v6 = strchr(urls[i].host, ':') != NULL;
            int n = snprintf(adv + used, sizeof adv - used, "%shttp://%s%s%s:%d", i ? "," : "",
                             v6 ? "[" : "", urls[i].host, v6 ? "]" : "",
                             api_grpc_port(st->listeners[i]));
            if (n > 0 && (size_t)n < sizeof adv - used)
                used += (size_t)n;
        }
        if (used > 0)
            (void)server_set_client_urls(st->srv, adv);
    }
    if (!st->shutting_down) {
        server_start_serving(st->srv);
        server_status status;
        server_get_status(st->srv, &status);
        FL_LOG_INFOF("serve", "serving",
                     "flotilla_version=%s etcd_api_version=%s name=%s data_dir=%s "
                     "listen_client_urls=%s advertise_client_urls=%s raft_index=%" PRIu64,
                     FLOTILLA_VERSION, SERVER_ETCD_API_VERSION,
                     flags->name ? flags->name : "default", server_data_dir(st->srv),
                     flags->listen_client_urls, options.advertise_client_urls, status.raft_index);
    }
    uv_run(&st->loop, UV_RUN_DEFAULT);
    server_destroy(st->srv);
    st->srv = NULL;
    FL_LOG_INFOF("serve", "exited", "exit_code=%d", st->exit_code);
    return st->exit_code;
}

int cmd_serve_main(int argc, char **argv)
{
    serve_flags flags = {
        .name = "default",
        .listen_client_urls = "http://127.0.0.1:2379",
        .max_request_bytes = 1572864,
        .quota_backend_bytes = 0,
        .snapshot_count = SERVER_SNAPSHOT_COUNT_DEFAULT,
        .log_level = "info",
        .heartbeat_interval = 100,
        .election_timeout = 1000,
    };
    int rc = parse_flags(argc, argv, &flags);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    fl_log_level level;
    if (!parse_log_level(flags.log_level, &level))
        return 2;
    fl_log_set_level(level);
    if (flags.max_txn_ops > UINT32_MAX || flags.max_request_bytes == 0) {
        fprintf(stderr, "flotilla serve: --max-txn-ops or --max-request-bytes out of range\n");
        return 2;
    }
    if (flags.heartbeat_interval > 60000 || flags.election_timeout > 600000) {
        fprintf(stderr, "flotilla serve: --heartbeat-interval or --election-timeout too large\n");
        return 2;
    }
    if (flags.snapshot_count == 0) {
        fprintf(stderr, "flotilla serve: --snapshot-count must be at least 1\n");
        return 2;
    }
    if (flags.name[0] == '\0') {
        fprintf(stderr, "flotilla serve: --name must not be empty\n");
        return 2;
    }
    serve_url urls[SERVE_LISTENERS_MAX];
    size_t url_count = 0;
    if (!parse_listen_urls(flags.listen_client_urls, urls, &url_count))
        return 2;

    serve_state *st = calloc(1, sizeof *st); /* freed below */
    if (!st || uv_loop_init(&st->loop) != 0) {
        free(st);
        fprintf(stderr, "flotilla serve: out of memory\n");
        return 1;
    }
    rc = run(st, &flags, urls, url_count);
    if (uv_loop_close(&st->loop) != 0)
        FL_LOG_WARNF("serve", "loop closed with live handles", "%s", "");
    free(st);
    return rc;
}

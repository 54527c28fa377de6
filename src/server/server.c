/* server: one member's lifecycle and its read-only views (header, status,
 * members). The write path is in server_write.c, reads in server_read.c,
 * recovery in server_recover.c, the identity file in server_meta.c.
 *
 * Lifecycle: create (open dirs, identity, MVCC, WAL, replay, start the writer
 * thread) -> serve -> stop (refuse new work, let the writer drain its queue,
 * apply and answer what it wrote, join it, answer pending reads, close the
 * handles) -> destroy (close WAL and LMDB, free).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "util/log.h"

#define DEFAULT_PEER_URLS   "http://localhost:2380"
#define DEFAULT_CLIENT_URLS "http://localhost:2379"
#define DEFAULT_TOKEN       "flotilla-cluster"

static char *dup_str(const char *s)
{
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    if (copy)
        memcpy(copy, s, len + 1);
    return copy;
}

static char *join_path(const char *dir, const char *leaf)
{
    size_t len = strlen(dir) + 1 + strlen(leaf) + 1;
    char *path = malloc(len);
    if (path)
        snprintf(path, len, "%s/%s", dir, leaf);
    return path;
}

static void url_list_free(server_url_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    list->count = 0;
}

/* Splits a comma-separated list; empty items are skipped. */
static fl_err url_list_parse(const char *text, server_url_list *out)
{
    assert(out->count == 0);
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            if (out->count == SERVER_URLS_MAX)
                return FL_ERR_INVALID;
            char *item = malloc(len + 1);
            if (!item)
                return FL_ERR_NOMEM;
            memcpy(item, p, len);
            item[len] = '\0';
            out->items[out->count++] = item;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return out->count > 0 ? FL_OK : FL_ERR_INVALID;
}

/* mkdir -p with mode 0700 (etcd keeps its data dir private too). */
static fl_err make_dirs(const char *path, char *errbuf, size_t errbuf_len)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        snprintf(errbuf, errbuf_len, "bad data dir path");
        return FL_ERR_INVALID;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            snprintf(errbuf, errbuf_len, "cannot create %s: %s", buf, strerror(errno));
            return errno == ENOSPC ? FL_ERR_NOSPACE : FL_ERR_IO;
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errbuf_len, "%s is not a directory", path);
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

static fl_err copy_options(server *srv, const server_options *options)
{
    srv->options = *options;
    srv->name = dup_str(options->name && options->name[0] ? options->name : "default");
    if (!srv->name)
        return FL_ERR_NOMEM;
    if (options->data_dir && options->data_dir[0]) {
        srv->data_dir = dup_str(options->data_dir);
    } else {
        size_t len = strlen(srv->name) + sizeof ".flotilla";
        srv->data_dir = malloc(len);
        if (srv->data_dir)
            snprintf(srv->data_dir, len, "%s.flotilla", srv->name);
    }
    if (!srv->data_dir)
        return FL_ERR_NOMEM;
    srv->wal_dir = join_path(srv->data_dir, "wal");
    srv->db_dir = join_path(srv->data_dir, "db");
    if (!srv->wal_dir || !srv->db_dir)
        return FL_ERR_NOMEM;
    const char *peers =
        options->initial_advertise_peer_urls && options->initial_advertise_peer_urls[0]
            ? options->initial_advertise_peer_urls
            : DEFAULT_PEER_URLS;
    const char *clients = options->advertise_client_urls && options->advertise_client_urls[0]
                              ? options->advertise_client_urls
                              : DEFAULT_CLIENT_URLS;
    fl_err err = url_list_parse(peers, &srv->peer_urls);
    if (err == FL_OK)
        err = url_list_parse(clients, &srv->client_urls);
    if (err != FL_OK)
        return err;
    if (srv->options.max_txn_ops == 0)
        srv->options.max_txn_ops = 128;
    if (srv->options.snapshot_count == 0)
        srv->options.snapshot_count = SERVER_SNAPSHOT_COUNT_DEFAULT;
    if (srv->options.pending_writes_max == 0)
        srv->options.pending_writes_max = SERVER_PENDING_WRITES_DEFAULT;
    /* the string options now point at our copies or are unused */
    srv->options.name = srv->name;
    srv->options.data_dir = srv->data_dir;
    srv->options.advertise_client_urls = NULL;
    srv->options.initial_advertise_peer_urls = NULL;
    srv->options.initial_cluster_token = NULL;
    return FL_OK;
}

static fl_err open_storage(server *srv, const char *token, char *errbuf, size_t errbuf_len)
{
    fl_err err = make_dirs(srv->data_dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = make_dirs(srv->db_dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = server_meta_load_or_create(srv, token, errbuf, errbuf_len);
    if (err != FL_OK)
        return err;
    mvcc_options mvcc_opts = {.quota_bytes = srv->options.quota_backend_bytes};
    /* LMDB's map must hold the quota; mvcc's default map (8 GiB) does up to 6 GiB */
    if (mvcc_opts.quota_bytes > (6ull << 30))
        mvcc_opts.map_size_bytes = mvcc_opts.quota_bytes + (2ull << 30);
    if (srv->options.backend_map_bytes)
        mvcc_opts.map_size_bytes = srv->options.backend_map_bytes;
    err = mvcc_open(srv->db_dir, &mvcc_opts, &srv->store);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "cannot open the MVCC store in %s: %s", srv->db_dir,
                 fl_err_name(err));
        return err;
    }
    wal_options wal_opts = {.segment_bytes_max = srv->options.wal_segment_bytes,
                            .test_hooks = srv->options.wal_test_hooks};
    wal_recovery_info info;
    memset(&info, 0, sizeof info);
    char walbuf[512] = "";
    err = wal_open(srv->wal_dir, &wal_opts, &srv->log, &info, walbuf, sizeof walbuf);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "cannot open the WAL in %s: %s: %s", srv->wal_dir,
                 fl_err_name(err), walbuf[0] ? walbuf : "(no detail)");
        return err;
    }
    if (info.torn_bytes_cut > 0)
        FL_LOG_WARNF("server", "cut a torn WAL tail", "wal_dir=%s bytes=%" PRIu64, srv->wal_dir,
                     info.torn_bytes_cut);
    return server_recover(srv, &info, errbuf, errbuf_len);
}

static void fill_member(server *srv)
{
    srv->member.id = srv->member_id;
    srv->member.name = srv->name;
    srv->member.peer_urls = (const char *const *)srv->peer_urls.items;
    srv->member.peer_urls_count = srv->peer_urls.count;
    srv->member.client_urls = (const char *const *)srv->client_urls.items;
    srv->member.client_urls_count = srv->client_urls.count;
    srv->member.is_learner = false;
}

/* Frees everything create may have taken; handles must already be closed. */
static void server_free(server *srv)
{
    if (srv->log)
        wal_close(srv->log);
    if (srv->store)
        mvcc_close(srv->store);
    if (srv->lock_fd >= 0)
        close(srv->lock_fd);
    url_list_free(&srv->peer_urls);
    url_list_free(&srv->client_urls);
    free(srv->name);
    free(srv->data_dir);
    free(srv->wal_dir);
    free(srv->db_dir);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

fl_err server_create(uv_loop_t *loop, const server_options *options, server **out, char *errbuf,
                     size_t errbuf_len)
{
    assert(loop && options && out);
    char scratch[8];
    if (!errbuf || errbuf_len == 0) {
        errbuf = scratch;
        errbuf_len = sizeof scratch;
    }
    errbuf[0] = '\0';
    server *srv = calloc(1, sizeof *srv); /* owned by the caller on success */
    if (!srv) {
        snprintf(errbuf, errbuf_len, "out of memory");
        return FL_ERR_NOMEM;
    }
    srv->loop = loop;
    srv->lock_fd = -1;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cond, NULL);
    fl_err err = copy_options(srv, options);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "bad options: %s (URL lists take at most %u items)",
                 fl_err_name(err), SERVER_URLS_MAX);
        server_free(srv);
        return err;
    }
    const char *token = options->initial_cluster_token && options->initial_cluster_token[0]
                            ? options->initial_cluster_token
                            : DEFAULT_TOKEN;
    err = open_storage(srv, token, errbuf, errbuf_len);
    if (err == FL_OK) {
        /* count from the WAL's first entry, so a member with a long WAL
         * (e.g. from before checkpoints) checkpoints soon after start */
        uint64_t first = wal_first_index(srv->log);
        srv->ckpt_base = first > 0 ? first - 1 : mvcc_applied_index(srv->store);
        assert(srv->ckpt_base <= mvcc_applied_index(srv->store));
        err = server_writer_start(srv);
    }
    if (err != FL_OK) {
        if (!errbuf[0])
            snprintf(errbuf, errbuf_len, "cannot start: %s", fl_err_name(err));
        server_free(srv);
        return err;
    }
    fill_member(srv);
    FL_LOG_INFOF("server", "member ready",
                 "name=%s member_id=%016" PRIx64 " cluster_id=%016" PRIx64
                 " data_dir=%s applied_index=%" PRIu64 " revision=%" PRId64 " replayed=%" PRIu64,
                 srv->name, srv->member_id, srv->cluster_id, srv->data_dir,
                 mvcc_applied_index(srv->store), mvcc_current_revision(srv->store), srv->replayed);
    *out = srv;
    return FL_OK;
}

static void on_handle_closed(uv_handle_t *handle)
{
    server *srv = handle->data;
    assert(srv->handles_open > 0);
    if (--srv->handles_open == 0 && srv->stopped)
        srv->stopped(srv->stopped_ctx);
}

void server_stop(server *srv, void (*stopped)(void *ctx), void *ctx)
{
    assert(!srv->stopping);
    srv->stopping = true;
    srv->stopped = stopped;
    srv->stopped_ctx = ctx;
    server_writer_request_stop(srv);
}

/* Called from the async callback once the writer has exited and its last
 * batch has been applied and answered. */
void server_finish_stop(server *srv)
{
    assert(srv->stopping && srv->writer_joined);
    assert(srv->writes_pending == 0);
    server_reads_flush(srv);
    assert(srv->reads_count == 0);
    if (uv_is_active((uv_handle_t *)&srv->idle))
        uv_idle_stop(&srv->idle);
    assert(!srv->stalled_head);
    /* Clean stop: one last checkpoint, so the restart replays nothing and the
     * WAL keeps only what it must. The writer is joined, so the wal handle is
     * the loop's now. Not after a fatal error (LMDB's state is in doubt). */
    uint64_t applied = mvcc_applied_index(srv->store);
    pthread_mutex_lock(&srv->mu);
    bool ckpt_ok = !srv->wal_broken && applied > srv->last_checkpoint_index;
    srv->ckpt_request = 0;
    srv->ckpt_busy = false;
    pthread_mutex_unlock(&srv->mu);
    if (ckpt_ok && !srv->failed)
        server_checkpoint_run(srv, applied);
    srv->handles_open = 3;
    uv_close((uv_handle_t *)&srv->async, on_handle_closed);
    uv_close((uv_handle_t *)&srv->idle, on_handle_closed);
    uv_close((uv_handle_t *)&srv->retry_timer, on_handle_closed);
    server_stats stats;
    server_get_stats(srv, &stats);
    FL_LOG_INFOF("server", "member stopped",
                 "name=%s applied_index=%" PRIu64 " writes_acked=%" PRIu64 " writes_failed=%" PRIu64
                 " wal_syncs=%" PRIu64 " checkpoints=%" PRIu64 " last_checkpoint_index=%" PRIu64,
                 srv->name, mvcc_applied_index(srv->store), stats.writes_acked, stats.writes_failed,
                 stats.wal_syncs, stats.checkpoints, stats.last_checkpoint_index);
}

void server_destroy(server *srv)
{
    if (!srv)
        return;
    assert(srv->writer_joined && srv->handles_open == 0);
    server_free(srv);
}

void server_enter_fatal(server *srv, fl_err err, const char *reason)
{
    if (srv->failed)
        return;
    srv->failed = true;
    FL_LOG_ERRORF("server", "member cannot continue safely", "err=%s reason=\"%s\"",
                  fl_err_name(err), reason);
    if (srv->options.fatal)
        srv->options.fatal(srv->options.fatal_ctx, err, reason);
    else
        abort();
}

void server_get_header(const server *srv, server_header *out)
{
    out->cluster_id = srv->cluster_id;
    out->member_id = srv->member_id;
    out->revision = mvcc_current_revision(srv->store);
    out->raft_term = 1; /* a single member, term 1, until raft lands */
}

void server_get_status(const server *srv, server_status *out)
{
    memset(out, 0, sizeof *out);
    out->version = SERVER_ETCD_API_VERSION;
    mvcc_db_size(srv->store, &out->db_size_bytes, &out->db_size_in_use_bytes);
    out->leader_id = srv->member_id;
    out->raft_index = mvcc_applied_index(srv->store);
    out->raft_term = 1;
    out->raft_applied_index = out->raft_index;
    out->is_learner = false;
}

void server_get_members(const server *srv, const server_member **members, size_t *count)
{
    *members = &srv->member;
    *count = 1;
}

void server_get_stats(const server *srv, server_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_t *mu = (pthread_mutex_t *)&srv->mu; /* counters are shared with the writer */
    pthread_mutex_lock(mu);
    out->wal_syncs = srv->wal_syncs;
    out->wal_batches = srv->wal_batches;
    out->checkpoints = srv->checkpoints;
    out->checkpoint_failures = srv->checkpoint_failures;
    out->last_checkpoint_index = srv->last_checkpoint_index;
    pthread_mutex_unlock(mu);
    out->writes_acked = srv->writes_acked;
    out->writes_failed = srv->writes_failed;
    out->writes_pending = srv->writes_pending;
    out->replayed = srv->replayed;
    out->apply_stalls = srv->apply_stalls;
}

const char *server_data_dir(const server *srv)
{
    return srv->data_dir;
}

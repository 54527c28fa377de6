/* server: one member's life cycle and its read-only views (header, status,
 * members, stats). The parts are listed in server_internal.h.
 *
 * Life cycle: create (identity, storage, the writer thread, the Raft node
 * and the transport; committed entries not yet applied are applied before
 * create returns: that is replay) -> serve -> stop -> destroy.
 *
 * Stop: a leader first hands leadership to the most caught-up voter (as
 * etcd does on SIGTERM) and waits for it up to an election timeout; then
 * new work is refused, waiting requests are answered FL_ERR_STOPPED (which
 * does not claim they failed: a write may still be in the log), the
 * transport and the timers stop, the writer finishes what it was given and
 * exits, a last checkpoint makes LMDB durable and releases the WAL, the
 * handles close, and `stopped` runs.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

uint64_t server_now_ms(const server *srv)
{
    return uv_now(srv->loop);
}

/* The transport's listen URL: the first --listen-peer-urls entry; with no
 * cluster flags at all (a lone member by default) an ephemeral port on
 * 127.0.0.1, so several default members on one machine do not collide on
 * 2380 (a lone member needs no peers until one is added, and adding one
 * needs real peer URLs anyway, as with etcd). */
static char *listen_peer_url(const server_options *o, const cluster_member *self)
{
    if (o->listen_peer_urls && o->listen_peer_urls[0]) {
        size_t len = strcspn(o->listen_peer_urls, ",");
        char *url = malloc(len + 1);
        if (url) {
            memcpy(url, o->listen_peer_urls, len);
            url[len] = '\0';
        }
        return url;
    }
    if (!o->initial_cluster || !o->initial_cluster[0])
        return dup_str("http://127.0.0.1:0");
    return dup_str(self->peer_urls[0]);
}

static fl_err copy_options(server *srv, const server_options *options, char *errbuf,
                           size_t errbuf_len)
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
    srv->token = dup_str(options->initial_cluster_token && options->initial_cluster_token[0]
                             ? options->initial_cluster_token
                             : DEFAULT_TOKEN);
    if (!srv->data_dir || !srv->token)
        return FL_ERR_NOMEM;
    srv->wal_dir = join_path(srv->data_dir, "wal");
    srv->db_dir = join_path(srv->data_dir, "db");
    srv->snap_dir = join_path(srv->data_dir, "snap");
    if (!srv->wal_dir || !srv->db_dir || !srv->snap_dir)
        return FL_ERR_NOMEM;
    if (strlen(srv->name) > CLUSTER_NAME_MAX) {
        snprintf(errbuf, errbuf_len, "--name is longer than %u bytes", CLUSTER_NAME_MAX);
        return FL_ERR_INVALID;
    }
    memcpy(srv->self.name, srv->name, strlen(srv->name) + 1);
    const char *peers =
        options->initial_advertise_peer_urls && options->initial_advertise_peer_urls[0]
            ? options->initial_advertise_peer_urls
            : DEFAULT_PEER_URLS;
    const char *clients = options->advertise_client_urls && options->advertise_client_urls[0]
                              ? options->advertise_client_urls
                              : DEFAULT_CLIENT_URLS;
    if (cluster_parse_urls(peers, srv->self.peer_urls, CLUSTER_URLS_MAX, &srv->self.n_peer_urls) !=
            FL_OK ||
        cluster_parse_urls(clients, srv->self.client_urls, CLUSTER_URLS_MAX,
                           &srv->self.n_client_urls) != FL_OK) {
        snprintf(errbuf, errbuf_len, "bad URL list (at most %u URLs of %u bytes)", CLUSTER_URLS_MAX,
                 CLUSTER_URL_MAX);
        return FL_ERR_INVALID;
    }
    srv->listen_peer_url = listen_peer_url(options, &srv->self);
    if (!srv->listen_peer_url)
        return FL_ERR_NOMEM;
    server_options *o = &srv->options;
    if (o->max_txn_ops == 0)
        o->max_txn_ops = 128;
    if (o->snapshot_count == 0)
        o->snapshot_count = SERVER_SNAPSHOT_COUNT_DEFAULT;
    if (o->pending_writes_max == 0)
        o->pending_writes_max = SERVER_PENDING_WRITES_DEFAULT;
    if (o->heartbeat_ms == 0)
        o->heartbeat_ms = 100;
    if (o->election_ms == 0)
        o->election_ms = 1000;
    if (o->election_ms < 5 * o->heartbeat_ms) {
        /* etcd's rule */
        snprintf(errbuf, errbuf_len,
                 "--election-timeout (%u ms) must be at least 5 times --heartbeat-interval "
                 "(%u ms)",
                 o->election_ms, o->heartbeat_ms);
        return FL_ERR_INVALID;
    }
    if (o->request_timeout_ms == 0)
        o->request_timeout_ms = 5000 + 2 * o->election_ms;
    if (o->initial_cluster_state && o->initial_cluster_state[0] &&
        strcmp(o->initial_cluster_state, "new") != 0 &&
        strcmp(o->initial_cluster_state, "existing") != 0) {
        snprintf(errbuf, errbuf_len, "--initial-cluster-state must be new or existing, not %s",
                 o->initial_cluster_state);
        return FL_ERR_INVALID;
    }
    /* the string options are used only during create (bootstrap), except
     * the test fault file, which the transport copies */
    o->name = srv->name;
    o->data_dir = srv->data_dir;
    return FL_OK;
}

static void server_free(server *srv)
{
    if (srv->raft)
        raft_free(srv->raft);
    if (srv->transport)
        transport_destroy(srv->transport);
    if (srv->writer)
        writer_destroy(srv->writer);
    server_apply_free_queue(srv);
    server_snapshot_free(srv);
    if (srv->log)
        wal_close(srv->log);
    if (srv->store)
        mvcc_close(srv->store);
    if (srv->lock_fd >= 0)
        close(srv->lock_fd);
    free(srv->name);
    free(srv->data_dir);
    free(srv->wal_dir);
    free(srv->db_dir);
    free(srv->snap_dir);
    free(srv->token);
    free(srv->listen_peer_url);
    free(srv);
}

static void on_writer_closed_at_failed_create(void *ctx)
{
    (void)ctx;
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
    fl_err err = copy_options(srv, options, errbuf, errbuf_len);
    if (err == FL_OK)
        err = server_open_storage(srv, errbuf, errbuf_len);
    if (err == FL_OK) {
        uint64_t first = wal_first_index(srv->log);
        uint64_t applied = mvcc_applied_index(srv->store);
        srv->ckpt_base = first > 0 && first - 1 < applied ? first - 1 : applied;
        err = writer_create(loop, srv->log, srv->store, server_node_on_writer, srv,
                            options->test_checkpoint_sync, options->test_checkpoint_ctx,
                            &srv->writer);
        if (err != FL_OK && srv->writer) {
            /* the async handle must be closed by the loop before freeing */
            writer_close(srv->writer, on_writer_closed_at_failed_create, NULL);
            uv_run(loop, UV_RUN_NOWAIT);
        }
    }
    if (err == FL_OK)
        err = server_node_start(srv, errbuf, errbuf_len);
    if (err == FL_OK && srv->apply_stalled) {
        /* replay found no room in LMDB: say so rather than serve a store
         * that lags its own log */
        snprintf(errbuf, errbuf_len,
                 "replaying WAL entry %" PRIu64 " into %s failed: no space left on device "
                 "(free disk space and start again; nothing is lost)",
                 srv->apply_head ? srv->apply_head->index : 0, srv->db_dir);
        err = FL_ERR_NOSPACE;
    }
    if (err != FL_OK) {
        if (!errbuf[0])
            snprintf(errbuf, errbuf_len, "cannot start: %s", fl_err_name(err));
        /* a failed start after the handles exist is rare (transport bind):
         * stop what runs and let the loop close it before freeing */
        if (srv->writer && srv->raft) {
            srv->stopping = true;
            srv->create_failed = true;
            server_stop_now(srv);
            while (srv->handles_open > 0 || !srv->writer_closed || srv->transport_open)
                uv_run(loop, UV_RUN_ONCE);
        } else if (srv->writer) {
            writer_stop(srv->writer);
            writer_join(srv->writer);
            writer_close(srv->writer, on_writer_closed_at_failed_create, NULL);
            uv_run(loop, UV_RUN_NOWAIT);
        }
        server_free(srv);
        return err;
    }
    FL_LOG_INFOF("server", "member ready",
                 "name=%s member_id=%016" PRIx64 " cluster_id=%016" PRIx64
                 " data_dir=%s applied_index=%" PRIu64 " revision=%" PRId64 " replayed=%" PRIu64
                 " members=%u peer_url=%s peer_port=%d",
                 srv->name, srv->member_id, srv->cluster_id, srv->data_dir,
                 mvcc_applied_index(srv->store), mvcc_current_revision(srv->store), srv->replayed,
                 srv->cluster.n_members, srv->listen_peer_url,
                 transport_listen_port(srv->transport));
    *out = srv;
    return FL_OK;
}

/* ---- stop ----------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    server *srv = handle->data;
    assert(srv->handles_open > 0);
    srv->handles_open--;
    server_maybe_finish_stop(srv);
}

static void on_writer_closed(void *ctx)
{
    server *srv = ctx;
    srv->writer_closed = true;
    server_maybe_finish_stop(srv);
}

static void on_transport_stopped(void *ctx)
{
    server *srv = ctx;
    srv->transport_open = false;
    server_maybe_finish_stop(srv);
}

/* The writer exited (all it was given is durable or failed): one last
 * checkpoint, then the handles close. */
static void finish_after_writer(server *srv)
{
    writer_join(srv->writer);
    uint64_t applied = mvcc_applied_index(srv->store);
    writer_stats ws;
    writer_get_stats(srv->writer, &ws);
    if (!srv->failed && !writer_broken(srv->writer) && applied > ws.last_checkpoint_index &&
        !srv->create_failed) {
        fl_err err = mvcc_sync(srv->store);
        if (err == FL_OK)
            err = wal_release_up_to(srv->log, applied);
        if (err != FL_OK)
            FL_LOG_WARNF("server", "final checkpoint failed", "err=%s", fl_err_name(err));
        else
            srv->final_checkpoint_index = applied;
    }
    writer_close(srv->writer, on_writer_closed, srv);
    srv->handles_open = 6 + (srv->transfer_timer_open ? 1 : 0);
    uv_handle_t *handles[] = {(uv_handle_t *)&srv->tick_timer, (uv_handle_t *)&srv->sweep_timer,
                              (uv_handle_t *)&srv->check,      (uv_handle_t *)&srv->prepare,
                              (uv_handle_t *)&srv->idle,       (uv_handle_t *)&srv->retry_timer};
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++)
        uv_close(handles[i], on_handle_closed);
    if (srv->transfer_timer_open)
        uv_close((uv_handle_t *)&srv->transfer_timer, on_handle_closed);
}

void server_maybe_finish_stop(server *srv)
{
    if (!srv->stopping)
        return;
    if (srv->writer_exited && !srv->writer_finishing) {
        srv->writer_finishing = true;
        finish_after_writer(srv);
        return;
    }
    if (srv->handles_open == 0 && srv->writer_closed && !srv->transport_open &&
        srv->writer_finishing && !srv->stop_reported) {
        srv->stop_reported = true;
        server_stats stats;
        server_get_stats(srv, &stats);
        FL_LOG_INFOF(
            "server", "member stopped",
            "name=%s applied_index=%" PRIu64 " writes_acked=%" PRIu64 " writes_failed=%" PRIu64
            " wal_syncs=%" PRIu64 " checkpoints=%" PRIu64 " last_checkpoint_index=%" PRIu64,
            srv->name, mvcc_applied_index(srv->store), stats.writes_acked, stats.writes_failed,
            stats.wal_syncs, stats.checkpoints, stats.last_checkpoint_index);
        if (srv->stopped)
            srv->stopped(srv->stopped_ctx);
    }
}

/* Refuses new work, answers what waits, stops the transport and the writer. */
void server_stop_now(server *srv)
{
    if (srv->stop_started)
        return;
    srv->stop_started = true;
    if (srv->transfer_timer_open)
        uv_timer_stop(&srv->transfer_timer);
    server_node_stop(srv);
    server_wait_sweep(srv, 0, true, FL_ERR_STOPPED);
    if (srv->move_waiter) {
        server_waiter *w = srv->move_waiter;
        srv->move_waiter = NULL;
        server_waiter_finish_member(srv, w, FL_ERR_STOPPED, 0);
    }
    server_reads_fail_all(srv, FL_ERR_STOPPED);
    server_reads_flush_done(srv);
    if (srv->transport) {
        srv->transport_open = true;
        transport_stop(srv->transport, on_transport_stopped, srv);
    }
    writer_stop(srv->writer);
}

static void on_transfer_timer(uv_timer_t *timer)
{
    server *srv = timer->data;
    if (srv->role != RAFT_LEADER || server_now_ms(srv) >= srv->transfer_deadline_ms)
        server_stop_now(srv);
}

/* The voter whose log matches the leader's furthest, or 0. */
static uint64_t best_transferee(server *srv)
{
    uint64_t best = 0, best_match = 0;
    for (uint32_t i = 0; i < srv->cluster.conf.n_voters; i++) {
        uint64_t id = srv->cluster.conf.voters[i];
        uint64_t match = 0;
        if (id == srv->member_id || !raft_progress_match(srv->raft, id, &match))
            continue;
        if (!transport_peer_active(srv->transport, id, srv->options.election_ms))
            continue;
        if (match >= best_match) {
            best = id;
            best_match = match;
        }
    }
    return best;
}

void server_stop(server *srv, void (*stopped)(void *ctx), void *ctx)
{
    assert(!srv->stopping);
    srv->stopping = true;
    srv->stopped = stopped;
    srv->stopped_ctx = ctx;
    uint64_t to = srv->role == RAFT_LEADER && !srv->failed ? best_transferee(srv) : 0;
    if (to && raft_transfer_leader(srv->raft, to) == FL_OK) {
        FL_LOG_INFOF("server", "handing leadership over before stopping", "to=%016" PRIx64, to);
        server_node_process(srv);
        srv->transfer_deadline_ms = server_now_ms(srv) + srv->options.election_ms;
        uv_timer_init(srv->loop, &srv->transfer_timer);
        srv->transfer_timer.data = srv;
        srv->transfer_timer_open = true;
        uv_timer_start(&srv->transfer_timer, on_transfer_timer, 10, 10);
        return;
    }
    server_stop_now(srv);
}

void server_destroy(server *srv)
{
    if (!srv)
        return;
    assert(srv->stop_reported);
    server_free(srv);
}

void server_enter_fatal(server *srv, fl_err err, const char *reason)
{
    if (srv->failed)
        return;
    srv->failed = true;
    FL_LOG_ERRORF("server", "member cannot continue safely", "err=%s reason=\"%s\"",
                  fl_err_name(err), reason);
    /* answer what waits: never success, and never a claim that a logged
     * write failed (a restart replays it) */
    server_wait_sweep(srv, 0, true, FL_ERR_IO);
    if (srv->options.fatal)
        srv->options.fatal(srv->options.fatal_ctx, err, reason);
    else
        abort();
}

/* ---- views ---------------------------------------------------------------- */

void server_get_header(const server *srv, server_header *out)
{
    out->cluster_id = srv->cluster_id;
    out->member_id = srv->member_id;
    out->revision = mvcc_current_revision(srv->store);
    out->raft_term = srv->term;
}

void server_get_status(const server *srv, server_status *out)
{
    memset(out, 0, sizeof *out);
    out->version = SERVER_ETCD_API_VERSION;
    mvcc_db_size(srv->store, &out->db_size_bytes, &out->db_size_in_use_bytes);
    out->leader_id = srv->leader_id;
    out->raft_index = srv->last_index > srv->commit_index ? srv->last_index : srv->commit_index;
    out->raft_term = srv->term;
    out->raft_applied_index = mvcc_applied_index(srv->store);
    const cluster_member *self = cluster_find_const(&srv->cluster, srv->member_id);
    out->is_learner = self && self->is_learner;
    out->error = srv->failed                   ? "member failed: see its log"
                 : srv->apply_stalled          ? "no space left on device: applies wait"
                 : writer_stalled(srv->writer) ? "no space left on device: WAL appends wait"
                                               : "";
}

void server_get_members(const server *srv, const server_member **members, size_t *count)
{
    server *s = (server *)srv; /* the views are a cache rebuilt here */
    for (uint32_t i = 0; i < s->cluster.n_members; i++) {
        const cluster_member *m = &s->cluster.members[i];
        server_member *v = &s->member_views[i];
        for (uint32_t u = 0; u < m->n_peer_urls; u++)
            s->member_url_ptrs[i][0][u] = m->peer_urls[u];
        for (uint32_t u = 0; u < m->n_client_urls; u++)
            s->member_url_ptrs[i][1][u] = m->client_urls[u];
        *v = (server_member){.id = m->id,
                             .name = m->name,
                             .peer_urls = s->member_url_ptrs[i][0],
                             .peer_urls_count = m->n_peer_urls,
                             .client_urls = s->member_url_ptrs[i][1],
                             .client_urls_count = m->n_client_urls,
                             .is_learner = m->is_learner};
    }
    /* etcd lists members by id */
    for (uint32_t i = 1; i < s->cluster.n_members; i++)
        for (uint32_t j = i; j > 0 && s->member_views[j - 1].id > s->member_views[j].id; j--) {
            server_member t = s->member_views[j];
            s->member_views[j] = s->member_views[j - 1];
            s->member_views[j - 1] = t;
        }
    *members = s->member_views;
    *count = s->cluster.n_members;
}

void server_get_stats(const server *srv, server_stats *out)
{
    memset(out, 0, sizeof *out);
    writer_stats ws;
    writer_get_stats(srv->writer, &ws);
    out->wal_syncs = ws.wal_syncs;
    out->wal_batches = ws.wal_batches;
    out->checkpoints = ws.checkpoints + (srv->final_checkpoint_index ? 1 : 0);
    out->checkpoint_failures = ws.checkpoint_failures;
    out->last_checkpoint_index =
        srv->final_checkpoint_index ? srv->final_checkpoint_index : ws.last_checkpoint_index;
    out->writes_acked = srv->writes_acked;
    out->writes_failed = srv->writes_failed;
    out->writes_pending = srv->writes_pending;
    out->replayed = srv->replayed;
    out->apply_stalls = srv->apply_stalls;
    out->forwarded = srv->forwarded;
    out->leader_changes = srv->leader_changes;
    out->term = srv->term;
    out->leader_id = srv->leader_id;
}

const char *server_data_dir(const server *srv)
{
    return srv->data_dir;
}

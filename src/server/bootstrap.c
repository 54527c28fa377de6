/* server/bootstrap: the data dir, the identity, the first start of a
 * cluster and every restart.
 *
 *   <data-dir>/member  identity (server_meta.c), flock'ed while running
 *   <data-dir>/wal/    the Raft log + hard state (src/wal)
 *   <data-dir>/db/     LMDB: data, applied index, member table, applied term
 *   <data-dir>/snap/   snapshot bodies received from a leader
 *
 * Like etcd 3.4: --initial-cluster name=peerURL,... lists the members of a
 * new cluster; this member is the one named --name, and its URLs there must
 * be its --initial-advertise-peer-urls. With --initial-cluster-state new,
 * every initial member writes the same state at index 1 (the member table
 * and the Raft configuration) into LMDB, durably, and starts Raft from it.
 * With "existing" (a member added with MemberAdd), it starts empty and gets
 * everything from a snapshot the leader sends. On a restart the flags only
 * have to agree with the identity file; the cluster comes from LMDB.
 *
 * LMDB ahead of the WAL is normal after a snapshot was installed and the
 * process died before the WAL restarted behind it: the WAL is reset (its
 * hard state kept). LMDB behind the WAL's first entry is a hole (a lost or
 * rolled-back db/): refused, as before.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "util/log.h"


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
            int mkdir_errno = errno;
            snprintf(errbuf, errbuf_len, "cannot create %s: %s", buf, strerror(mkdir_errno));
            return fl_err_from_errno(mkdir_errno);
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

fl_err server_open_store(server *srv)
{
    /* durable commits (MDB_NOMETASYNC): a power loss can undo at most
     * LMDB's last commit, never corrupt it, so the WAL kept since the last
     * checkpoint is always enough to rebuild (docs/server.md) */
    mvcc_options o = {.quota_bytes = srv->options.quota_backend_bytes, .durable_commits = true};
    /* LMDB's map must hold the quota; mvcc's default map (8 GiB) does up to 6 GiB */
    if (o.quota_bytes > (6ull << 30))
        o.map_size_bytes = o.quota_bytes + (2ull << 30);
    if (srv->options.backend_map_bytes)
        o.map_size_bytes = srv->options.backend_map_bytes;
    fl_err err = mvcc_open(srv->db_dir, &o, &srv->store);
    /* LMDB may just have created data.mdb: its directory entry must be
     * durable before the WAL behind it is ever released (found by the
     * power-loss shim's POSIX directory model) */
    if (err == FL_OK)
        err = server_fsync_dir(srv->db_dir);
    return err;
}

/* The ids. A member's id comes from its advertised peer URLs and the token
 * (cluster.c), whatever the other flags say. --initial-cluster only matters
 * for a data dir that is new: as with etcd, a restart ignores it (the
 * cluster may have grown or shrunk since), and the identity file and LMDB
 * say who we are and which cluster we belong to. */
static fl_err resolve_identity(server *srv, cluster_state *initial, bool *initial_ok, char *errbuf,
                               size_t errbuf_len)
{
    const char *urls[CLUSTER_URLS_MAX];
    for (uint32_t u = 0; u < srv->self.n_peer_urls; u++)
        urls[u] = srv->self.peer_urls[u];
    srv->member_id = cluster_member_id(urls, srv->self.n_peer_urls, srv->token);
    srv->self.id = srv->member_id;
    srv->joining = srv->options.initial_cluster_state &&
                   strcmp(srv->options.initial_cluster_state, "existing") == 0;
    *initial_ok = false;
    char fallback[CLUSTER_NAME_MAX + CLUSTER_URL_MAX + 2];
    const char *text = srv->options.initial_cluster;
    if (!text || !text[0]) {
        snprintf(fallback, sizeof fallback, "%s=%s", srv->name, srv->self.peer_urls[0]);
        text = fallback;
    }
    fl_err err = cluster_parse_initial(text, srv->token, initial, errbuf, errbuf_len);
    if (err != FL_OK)
        return err;
    const cluster_member *me = NULL;
    for (uint32_t i = 0; i < initial->n_members; i++)
        if (strcmp(initial->members[i].name, srv->name) == 0)
            me = &initial->members[i];
    if (!me) {
        snprintf(errbuf, errbuf_len,
                 "--initial-cluster has no member named \"%s\" (--name): it must list this "
                 "member with its --initial-advertise-peer-urls",
                 srv->name);
        return FL_ERR_INVALID;
    }
    if (me->id != srv->member_id) {
        snprintf(errbuf, errbuf_len,
                 "--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s: they "
                 "must name the same URLs",
                 srv->name, me->peer_urls[0], srv->self.peer_urls[0]);
        return FL_ERR_INVALID;
    }
    uint64_t ids[RAFT_MEMBERS_MAX];
    for (uint32_t i = 0; i < initial->n_members; i++)
        ids[i] = initial->members[i].id;
    srv->cluster_id = srv->joining ? 0 : cluster_cluster_id(srv->token, ids, initial->n_members);
    initial->cluster_id = srv->cluster_id;
    initial->applied_term = 1;
    *initial_ok = true;
    return FL_OK;
}

static fl_err open_wal(server *srv, wal_recovery_info *info, char *errbuf, size_t errbuf_len)
{
    wal_options wo = {.segment_bytes_max = srv->options.wal_segment_bytes,
                      .test_hooks = srv->options.wal_test_hooks};
    memset(info, 0, sizeof *info);
    char walbuf[512] = "";
    fl_err err = wal_open(srv->wal_dir, &wo, &srv->log, info, walbuf, sizeof walbuf);
    if (err != FL_OK) {
        snprintf(errbuf, errbuf_len, "cannot open the WAL in %s: %s: %s", srv->wal_dir,
                 fl_err_name(err), walbuf[0] ? walbuf : "(no detail)");
        return err;
    }
    if (info->torn_bytes_cut > 0)
        FL_LOG_WARNF("server", "cut a torn WAL tail", "wal_dir=%s bytes=%" PRIu64, srv->wal_dir,
                     info->torn_bytes_cut);
    srv->wal_hard_state = info->hard_state;
    srv->wal_first_index = info->first_index;
    return FL_OK;
}

/* LMDB and the WAL must fit together (see the top comment). */
static fl_err check_log_against_store(server *srv, const wal_recovery_info *info, char *errbuf,
                                      size_t errbuf_len)
{
    uint64_t applied = mvcc_applied_index(srv->store);
    uint64_t last = wal_last_index(srv->log);
    if (applied > last) {
        if (!info->has_hard_state && applied > 1) {
            snprintf(errbuf, errbuf_len,
                     "the MVCC store in %s has applied index %" PRIu64
                     " but the WAL in %s is empty: the WAL (and the member's vote) was lost; "
                     "refusing to start (remove the member and add it again)",
                     srv->db_dir, applied, srv->wal_dir);
            return FL_ERR_CORRUPT;
        }
        if (last > 0 || info->first_index > 0) {
            fl_err err = wal_reset(srv->log, applied);
            if (err != FL_OK) {
                snprintf(errbuf, errbuf_len, "cannot restart the WAL after index %" PRIu64 ": %s",
                         applied, fl_err_name(err));
                return err;
            }
        }
        return FL_OK;
    }
    if (last > applied && (info->first_index == 0 || info->first_index > applied + 1)) {
        snprintf(errbuf, errbuf_len,
                 "the WAL in %s starts at index %" PRIu64 " but the MVCC store in %s has applied "
                 "only %" PRIu64 ": entries %" PRIu64 "..%" PRIu64
                 " are missing (the db dir was lost or rolled back); refusing to serve a state "
                 "with a gap: restore the db dir that belongs to this WAL, or remove this member "
                 "and add it again",
                 srv->wal_dir, info->first_index, srv->db_dir, applied, applied + 1,
                 info->first_index ? info->first_index - 1 : last);
        return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

fl_err server_open_storage(server *srv, char *errbuf, size_t errbuf_len)
{
    cluster_state *initial = calloc(1, sizeof *initial); /* freed below */
    if (!initial)
        return FL_ERR_NOMEM;
    char member_file[4096];
    snprintf(member_file, sizeof member_file, "%s/member", srv->data_dir);
    bool restarting = access(member_file, F_OK) == 0;
    bool initial_ok = false;
    char initial_why[2048] = ""; /* names and URLs up to 255 bytes each */
    fl_err err = resolve_identity(srv, initial, &initial_ok, initial_why, sizeof initial_why);
    if (err != FL_OK && !restarting) {
        snprintf(errbuf, errbuf_len, "%s", initial_why);
        free(initial);
        return err;
    }
    err = make_dirs(srv->data_dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = make_dirs(srv->db_dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = make_dirs(srv->snap_dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = server_meta_load_or_create(srv, errbuf, errbuf_len);
    if (err == FL_OK) {
        err = server_open_store(srv);
        if (err != FL_OK)
            snprintf(errbuf, errbuf_len, "cannot open the MVCC store in %s: %s", srv->db_dir,
                     fl_err_name(err));
    }
    wal_recovery_info info;
    if (err == FL_OK)
        err = open_wal(srv, &info, errbuf, errbuf_len);
    if (err == FL_OK && mvcc_applied_index(srv->store) == 0) {
        if (!srv->joining && !initial_ok) {
            snprintf(errbuf, errbuf_len, "%s", initial_why);
            err = FL_ERR_INVALID;
        } else if (!srv->joining) {
            /* a new cluster: every initial member writes the same index 1 */
            err = server_apply_bootstrap(srv, initial);
            if (err == FL_OK)
                memcpy(&srv->cluster, initial, sizeof srv->cluster);
            else
                snprintf(errbuf, errbuf_len, "cannot write the initial cluster to %s: %s",
                         srv->db_dir, fl_err_name(err));
        } else {
            /* joining: peers to talk to until the leader's snapshot brings the
             * real table; no configuration (raft starts empty) */
            memcpy(&srv->cluster, initial, sizeof srv->cluster);
            memset(&srv->cluster.conf, 0, sizeof srv->cluster.conf);
        }
    } else if (err == FL_OK) {
        err = server_apply_load_cluster(srv);
        if (err != FL_OK)
            snprintf(errbuf, errbuf_len, "the member table in %s is unreadable: %s", srv->db_dir,
                     fl_err_name(err));
        else if (srv->cluster.cluster_id)
            srv->cluster_id = srv->cluster.cluster_id;
    }
    srv->cluster_id_known = srv->cluster_id != 0;
    if (err == FL_OK)
        err = check_log_against_store(srv, &info, errbuf, errbuf_len);
    free(initial);
    return err;
}

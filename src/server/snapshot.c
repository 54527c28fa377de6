/* server/snapshot: sending and installing snapshots of the store.
 *
 * The Raft snapshot a leader sends names an index S (its last compaction,
 * or 1 for a cluster never compacted); its data is only a marker. The body
 * streamed to the follower is made when the transport asks for it: a
 * consistent, compacted copy of the whole LMDB store (mvcc_snapshot_write),
 * holding data, applied index A >= S and the member table. A body newer than
 * S is safe: A is applied on the leader, so committed; entries S+1..A that
 * the follower then receives are skipped by its applier (apply.c skips what
 * LMDB already applied), and Raft's own configuration catches up as they
 * pass through raft_applied.
 *
 * Installing (follower): the transport has written the body to snap/ and
 * fsynced it; when raft hands the snapshot out to install, the store is
 * closed, the body replaces db/data.mdb atomically (mvcc_snapshot_install),
 * the store is reopened, the member table is read from it, and the next
 * writer batch restarts the WAL after S (wal_reset) before anything else.
 * A crash before the WAL reset leaves LMDB ahead of the WAL: start-up resets
 * the WAL then (bootstrap.c).
 *
 * Caveat: the body is written on the loop thread (a store of several GiB
 * stalls this member while it is copied); moving it to a thread is open.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "util/log.h"

fl_err server_snapshot_open(void *ctx, uint64_t group_id, const struct raft_msg *msg, int *fd,
                            uint64_t *size)
{
    server *srv = ctx;
    (void)group_id;
    char path[4096];
    snprintf(path, sizeof path, "%s/send-%d-%" PRIu64 ".tmp", srv->snap_dir, (int)getpid(),
             ++srv->snapshot_seq);
    int f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f < 0)
        return fl_err_from_errno(errno);
    unlink(path); /* the fd keeps it; nothing to clean up after a crash */
    uint64_t applied = 0;
    fl_err err = mvcc_snapshot_write(srv->store, f, &applied);
    off_t end = err == FL_OK ? lseek(f, 0, SEEK_END) : -1;
    if (err == FL_OK && (end < 0 || lseek(f, 0, SEEK_SET) != 0))
        err = FL_ERR_IO;
    if (err != FL_OK) {
        close(f);
        FL_LOG_WARNF("server", "cannot write a snapshot for a follower", "to=%016" PRIx64 " err=%s",
                     msg->to, fl_err_name(err));
        return err;
    }
    FL_LOG_INFOF("server", "sending a snapshot",
                 "to=%016" PRIx64 " raft_index=%" PRIu64 " applied_index=%" PRIu64 " bytes=%lld",
                 msg->to, msg->snapshot.index, applied, (long long)end);
    *fd = f;
    *size = (uint64_t)end;
    return FL_OK;
}

void server_snapshot_received(server *srv, const struct raft_msg *msg, const char *path)
{
    if (!path)
        return;
    if (srv->snap.incoming_path) {
        unlink(srv->snap.incoming_path);
        free(srv->snap.incoming_path);
    }
    size_t len = strlen(path);
    srv->snap.incoming_path = malloc(len + 1); /* owned by srv->snap */
    if (srv->snap.incoming_path)
        memcpy(srv->snap.incoming_path, path, len + 1);
    else
        unlink(path);
    srv->snap.incoming_index = msg->snapshot.index;
    srv->snap.incoming_term = msg->snapshot.term;
}

void server_snapshot_take_ready(server *srv, const struct raft_snapshot *snap)
{
    if (!srv->snap.incoming_path || srv->snap.incoming_index != snap->index) {
        server_enter_fatal(srv, FL_ERR_CORRUPT,
                           "raft asked to install a snapshot whose body was not received");
        return;
    }
    /* entries queued for apply are older than the snapshot: it covers them */
    server_apply_free_queue(srv);
    writer_quiesce_store(srv->writer); /* a checkpoint thread may be syncing the old store */
    mvcc_close(srv->store);
    srv->store = NULL;
    fl_err err = mvcc_snapshot_install(srv->db_dir, srv->snap.incoming_path);
    free(srv->snap.incoming_path);
    srv->snap.incoming_path = NULL;
    if (err == FL_OK)
        err = server_open_store(srv);
    if (err == FL_OK) {
        writer_set_store(srv->writer, srv->store);
        err = server_apply_load_cluster(srv);
    }
    if (err != FL_OK) {
        server_enter_fatal(srv, err, "installing a snapshot from the leader failed");
        return;
    }
    if (!srv->cluster_id_known && srv->cluster.cluster_id) {
        srv->cluster_id = srv->cluster.cluster_id;
        srv->cluster_id_known = true;
    }
    srv->wal_reset_pending = true;
    srv->wal_reset_index = snap->index;
    srv->wal_reset_term = snap->term;
    srv->snapshot_installed_index = snap->index;
    srv->persisted_index = snap->index;
    srv->ckpt_base = mvcc_applied_index(srv->store);
    server_membership_on_applied(srv);
    FL_LOG_INFOF("server", "installed a snapshot from the leader",
                 "raft_index=%" PRIu64 " applied_index=%" PRIu64 " members=%u", snap->index,
                 mvcc_applied_index(srv->store), srv->cluster.n_members);
}

void server_snapshot_free(server *srv)
{
    if (srv->snap.incoming_path) {
        unlink(srv->snap.incoming_path);
        free(srv->snap.incoming_path);
        srv->snap.incoming_path = NULL;
    }
}

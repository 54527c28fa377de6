/* server/checkpoint: when to make LMDB durable and drop what it covers.
 *
 * Every snapshot_count entries applied (and at a clean stop) the member
 * asks the writer for a checkpoint at the applied index A (an index whose
 * LMDB commit has returned): the writer's sync thread fdatasyncs LMDB, then
 * the writer releases the WAL segments whose entries are all <= A (see
 * writer.c). The Raft core's in-memory log is compacted at the same time,
 * keeping SERVER_RAFT_KEEP_ENTRIES behind A for followers that lag a little;
 * one that lags more gets a snapshot of the store (snapshot.c).
 *
 * Why it is safe: LMDB is opened with durable commits (MDB_NOMETASYNC: data
 * pages are synced at every commit, only the meta page lags, so a power loss
 * can undo at most the last commit and never corrupts the tree), and a
 * checkpoint's sync makes A itself durable before anything <= A is
 * released; the WAL keeps everything after it. See docs/server.md.
 */
#include <assert.h>

#include "server/server_internal.h"
#include "util/log.h"

/* The raft snapshot's data is only a marker: the body is made on demand
 * when a follower needs it (snapshot.c). */
static const char snapshot_marker[] = "flotilla-store";

void server_checkpoint_maybe(server *srv)
{
    if (srv->failed || srv->stopping)
        return;
    uint64_t applied = mvcc_applied_index(srv->store);
    if (applied < srv->ckpt_base + srv->options.snapshot_count)
        return;
    if (!writer_request_checkpoint(srv->writer, applied))
        return; /* one is running: asked again after the next apply */
    srv->ckpt_base = applied;
    fl_err err =
        raft_compact(srv->raft, snapshot_marker, sizeof snapshot_marker, SERVER_RAFT_KEEP_ENTRIES);
    if (err != FL_OK && err != FL_ERR_BUSY)
        FL_LOG_WARNF("server", "raft log compaction failed", "err=%s", fl_err_name(err));
}

/* wal/release: deleting segments a snapshot made obsolete.
 *
 * Only a prefix of the segments is deleted, oldest first, so what remains —
 * also after a crash halfway — is a suffix of the record stream, and
 * recovery of a suffix yields the same live entries above the released
 * index (a rewrite always follows the records it overrides). The live
 * segment is never deleted. The newest hard state must survive: if its
 * record is in a segment about to go, it is written again into the live
 * segment and synced first.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"
#include "wal/wal_internal.h"

/* How many of the oldest segments hold only live entries <= index. */
static size_t count_releasable(const wal *log, uint64_t index)
{
    size_t n = 0, r = 0;
    while (n + 1 < log->segment_count) {
        uint64_t seq = log->segments[n].seq;
        /* Runs are in log order and their seqs never decrease. */
        while (r < log->run_count && log->runs[r].seq < seq)
            r++;
        bool keep = false;
        for (size_t k = r; k < log->run_count && log->runs[k].seq == seq; k++)
            keep = keep || log->runs[k].last_index > index;
        if (keep)
            break;
        n++;
    }
    return n;
}

static fl_err keep_hard_state(wal *log, uint64_t last_released_seq)
{
    if (!log->has_hard_state || log->hard_state_seq > last_released_seq)
        return FL_OK;
    wal_hard_state hard_state = log->hard_state;
    fl_err err = wal_append_batch(log, NULL, 0, &hard_state);
    if (err == FL_OK)
        err = wal_sync(log);
    assert(err != FL_OK || log->hard_state_seq > last_released_seq);
    return err;
}

fl_err wal_release_up_to(wal *log, uint64_t index)
{
    assert(log);
    if (log->failed != FL_OK)
        return FL_ERR_IO;
    size_t n = count_releasable(log, index);
    if (n == 0)
        return FL_OK;
    fl_err err = keep_hard_state(log, log->segments[n - 1].seq);
    if (err != FL_OK)
        return err;
    size_t removed = 0;
    err = wal_segments_remove_oldest(log, n, &removed);
    if (removed > 0)
        FL_LOG_INFOF("wal", "segments released", "dir=%s count=%zu up_to=%" PRIu64, log->dir,
                     removed, index);
    assert(log->segment_count >= 1);
    return err;
}

fl_err wal_segments_remove_oldest(wal *log, size_t n, size_t *removed_out)
{
    assert(n < log->segment_count); /* never the live segment */
    fl_err err = FL_OK;
    size_t removed = 0;
    for (; removed < n; removed++) {
        const wal_segment *segment = &log->segments[removed];
        char path[WAL_PATH_BYTES_MAX];
        if (wal_segment_path(log, segment->seq, segment->first_index, path, sizeof path) != FL_OK ||
            (unlink(path) != 0 && errno != ENOENT)) {
            int unlink_errno = errno;
            FL_LOG_ERRORF("wal", "cannot remove segment", "path=%s errno=%d", path, unlink_errno);
            err = FL_ERR_IO;
            break;
        }
    }
    if (removed > 0) {
        fl_err sync_err = wal_io_fsync_dir(log);
        if (err == FL_OK)
            err = sync_err;
        uint64_t seq_min = log->segments[removed].seq;
        memmove(log->segments, log->segments + removed,
                (log->segment_count - removed) * sizeof *log->segments);
        log->segment_count -= removed;
        wal_index_drop_before(log, seq_min);
    }
    *removed_out = removed;
    return err;
}

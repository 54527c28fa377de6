/* wal/reset: restart the log after a snapshot (see wal.h, wal_reset).
 *
 * Order matters for crashes: the new segment (header first_index = index+1)
 * and the hard state in it are durable before any old segment goes, and
 * recovery treats a segment that starts past the log's end as a reset, so
 * every crash point leaves either the old log or the reset one.
 */
#include <assert.h>
#include <inttypes.h>

#include "util/log.h"
#include "wal/wal_internal.h"

fl_err wal_reset(wal *log, uint64_t index)
{
    assert(log);
    if (log->failed != FL_OK)
        return FL_ERR_IO;
    fl_err err = wal_append_roll(log, index + 1);
    if (err != FL_OK)
        return err;
    wal_index_reset(log, index);
    if (log->has_hard_state) {
        wal_hard_state hard_state = log->hard_state;
        err = wal_append_batch(log, NULL, 0, &hard_state);
        if (err != FL_OK)
            return err;
    }
    err = wal_sync(log);
    if (err != FL_OK)
        return err;
    size_t removed = 0;
    err = wal_segments_remove_oldest(log, log->segment_count - 1, &removed);
    FL_LOG_INFOF("wal", "log reset after a snapshot", "dir=%s next_index=%" PRIu64, log->dir,
                 index + 1);
    return err;
}

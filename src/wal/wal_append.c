/* wal/append: the write path — append a batch, sync, roll segments.
 *
 * A batch is encoded into one reused buffer and written with one pwrite at
 * the tracked end of the live segment (a loop only if the kernel writes
 * short). If any write fails, the file is cut back to where the batch
 * began, so the log on disk and in memory stays what it was and a later
 * append can succeed (e.g. after space is freed). The in-memory index is
 * updated only after the whole batch is written.
 *
 * Segment roll: before a batch that would push the live segment past
 * segment_bytes_max, the live segment is fdatasynced (so only the last
 * segment can ever have a torn tail) and a new one is created. A batch never
 * spans two segments.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/log.h"
#include "wal/wal_internal.h"

/* A bound on one batch, so a runaway caller fails cleanly instead of
 * allocating without limit. */
#define WAL_BATCH_BYTES_MAX (256ull << 20)
/* Bounds on retrying interrupted calls. */
#define WAL_EINTR_RETRIES_MAX 64

fl_err wal_io_write_all(wal *log, int fd, const uint8_t *buf, size_t len, uint64_t offset)
{
    const wal_test_hooks *hooks = log->options.test_hooks;
    size_t done = 0;
    int interrupted = 0;
    while (done < len) {
        ssize_t n =
            hooks && hooks->pwrite
                ? hooks->pwrite(hooks->ctx, fd, buf + done, len - done, (off_t)(offset + done))
                : pwrite(fd, buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR && interrupted++ < WAL_EINTR_RETRIES_MAX)
            continue;
        if (n <= 0) {
            int saved = n < 0 ? errno : EIO; /* 0 bytes for a non-empty write: no progress */
            FL_LOG_ERRORF("wal", "write failed", "dir=%s errno=%d bytes=%zu", log->dir, saved,
                          len - done);
            return fl_err_from_errno(saved);
        }
        assert((size_t)n <= len - done);
        done += (size_t)n;
    }
    return FL_OK;
}

fl_err wal_io_fdatasync(wal *log, int fd)
{
    const wal_test_hooks *hooks = log->options.test_hooks;
    int interrupted = 0;
    for (;;) {
#ifdef FLOTILLA_TEST_BREAK_WAL_FSYNC
        /* TEST-ONLY deliberate bug (CMake FLOTILLA_TEST_BREAK_WAL_FSYNC, never in
         * make test): the WAL's fdatasync does nothing, so integration
         * test_powerloss must fail (docs/testing-durability.md). */
        int rc = hooks && hooks->fdatasync ? hooks->fdatasync(hooks->ctx, fd) : 0;
#else
        int rc = hooks && hooks->fdatasync ? hooks->fdatasync(hooks->ctx, fd) : fdatasync(fd);
#endif
        if (rc == 0)
            return FL_OK;
        int sync_errno = errno; /* before logging can change it */
        if (sync_errno == EINTR && interrupted++ < WAL_EINTR_RETRIES_MAX)
            continue;
        FL_LOG_ERRORF("wal", "fdatasync failed", "dir=%s errno=%d", log->dir, sync_errno);
        return fl_err_from_errno(sync_errno);
    }
}

fl_err wal_io_fsync_dir(wal *log)
{
    if (fsync(log->dir_fd) != 0) {
        FL_LOG_ERRORF("wal", "directory fsync failed", "dir=%s errno=%d", log->dir, errno);
        return FL_ERR_IO;
    }
    return FL_OK;
}

/* Validates a batch and sizes its encoding. */
static fl_err check_batch(const wal *log, const wal_entry *entries, size_t count,
                          const wal_hard_state *hard_state, size_t *total)
{
    uint64_t bytes = hard_state ? WAL_HARD_STATE_RECORD_BYTES : 0;
    for (size_t k = 0; k < count; k++) {
        const wal_entry *e = &entries[k];
        if (e->len > log->options.record_bytes_max)
            return FL_ERR_TOO_LARGE;
        if ((e->len && !e->data) || e->type < WAL_ENTRY_NORMAL || e->type > WAL_ENTRY_NOOP)
            return FL_ERR_INVALID;
        if (e->index != entries[0].index + k)
            return FL_ERR_INVALID;
        bytes += wal_record_entry_bytes(e);
        if (bytes > WAL_BATCH_BYTES_MAX)
            return FL_ERR_TOO_LARGE;
    }
    if (count && wal_index_check_next(log, entries[0].index) != FL_OK)
        return FL_ERR_INVALID;
    *total = (size_t)bytes;
    return FL_OK;
}

static fl_err reserve_buffer(wal *log, size_t bytes)
{
    if (bytes <= log->buffer_cap)
        return FL_OK;
    size_t cap = log->buffer_cap ? log->buffer_cap : 64u << 10;
    while (cap < bytes)
        cap *= 2;
    /* Ownership: the buffer belongs to the handle, freed in wal_close (or
     * after a batch when it grew past WAL_BUFFER_KEEP_BYTES). */
    uint8_t *grown = realloc(log->buffer, cap);
    if (!grown)
        return FL_ERR_NOMEM;
    log->buffer = grown;
    log->buffer_cap = cap;
    return FL_OK;
}

fl_err wal_append_roll(wal *log, uint64_t first_index)
{
    uint64_t seq = log->segment_count ? log->segments[log->segment_count - 1].seq + 1 : 1;
    fl_err err = wal_segment_reserve(log);
    if (err != FL_OK)
        return err;
    if (log->active_fd >= 0) {
        err = wal_io_fdatasync(log, log->active_fd);
        if (err != FL_OK) {
            log->failed = FL_ERR_IO; /* after a failed fdatasync the page cache is unknown */
            return err;
        }
    }
    int fd = -1;
    err = wal_segment_create(log, seq, first_index, &fd);
    if (err != FL_OK)
        return err;
    if (log->active_fd >= 0)
        close(log->active_fd);
    log->active_fd = fd;
    log->segments[log->segment_count++] = (wal_segment){
        .seq = seq, .first_index = first_index, .bytes = WAL_SEGMENT_HEADER_RECORD_BYTES};
    FL_LOG_DEBUGF("wal", "segment created", "dir=%s seq=%" PRIu64 " first_index=%" PRIu64, log->dir,
                  seq, first_index);
    return FL_OK;
}

/* A write failed at some point after `offset`: drop whatever reached the
 * file, and make the cut durable so a crash cannot bring back records the
 * caller was told failed. */
static void cut_back(wal *log, uint64_t offset)
{
    if (ftruncate(log->active_fd, (off_t)offset) != 0 ||
        wal_io_fdatasync(log, log->active_fd) != FL_OK) {
        FL_LOG_ERRORF("wal", "cannot cut back a failed write; wal is read-only now",
                      "dir=%s offset=%" PRIu64 " errno=%d", log->dir, offset, errno);
        log->failed = FL_ERR_IO;
    }
}

static void note_batch(wal *log, const wal_entry *entries, size_t count,
                       const wal_hard_state *hard_state, uint64_t offset)
{
    uint64_t seq = log->segments[log->segment_count - 1].seq;
    for (size_t k = 0; k < count; k++) {
        fl_err err = wal_index_note_entry(log, seq, offset, entries[k].index);
        assert(err == FL_OK); /* room was reserved before writing */
        (void)err;
        offset += wal_record_entry_bytes(&entries[k]);
    }
    if (hard_state) {
        log->hard_state = *hard_state;
        log->has_hard_state = true;
        log->hard_state_seq = seq;
    }
}

fl_err wal_append_batch(wal *log, const wal_entry *entries, size_t count,
                        const wal_hard_state *hard_state)
{
    assert(log && (count == 0 || entries));
    if (log->failed != FL_OK)
        return FL_ERR_IO;
    if (count == 0 && !hard_state)
        return FL_OK;
    size_t total = 0;
    fl_err err = check_batch(log, entries, count, hard_state, &total);
    if (err == FL_OK)
        err = reserve_buffer(log, total);
    if (err == FL_OK)
        err = wal_index_reserve(log);
    if (err != FL_OK)
        return err;
    size_t used = 0;
    for (size_t k = 0; k < count; k++)
        used += wal_record_encode_entry(log->buffer + used, &entries[k]);
    if (hard_state)
        used += wal_record_encode_hard_state(log->buffer + used, hard_state);
    assert(used == total);

    wal_segment *live = log->segment_count ? &log->segments[log->segment_count - 1] : NULL;
    if (!live || log->active_fd < 0 ||
        (live->bytes > WAL_SEGMENT_HEADER_RECORD_BYTES &&
         live->bytes + total > log->options.segment_bytes_max)) {
        err = wal_append_roll(log, count ? entries[0].index : log->last_index + 1);
        if (err != FL_OK)
            return err;
        live = &log->segments[log->segment_count - 1];
    }
    uint64_t offset = live->bytes;
    err = wal_io_write_all(log, log->active_fd, log->buffer, total, offset);
    if (err != FL_OK) {
        cut_back(log, offset);
        return err;
    }
    live->bytes += total;
    note_batch(log, entries, count, hard_state, offset);
    if (log->buffer_cap > WAL_BUFFER_KEEP_BYTES) {
        free(log->buffer);
        log->buffer = NULL;
        log->buffer_cap = 0;
    }
    return FL_OK;
}

fl_err wal_sync(wal *log)
{
    assert(log);
    if (log->failed != FL_OK)
        return FL_ERR_IO;
    if (log->active_fd < 0)
        return FL_OK;
    fl_err err = wal_io_fdatasync(log, log->active_fd);
    if (err != FL_OK)
        log->failed = FL_ERR_IO; /* the kernel may have dropped the dirty pages */
    return err;
}

/* wal/replay: streaming the live entries back, in index order.
 *
 * Nothing of the log is held in memory but the runs and sparse checkpoints
 * (wal_internal.h): for each run past after_index the segment is re-read
 * from the run's first record or the checkpoint nearest below after_index, checking every crc again
 * (a record that went bad since open is FL_ERR_CORRUPT, not silently skipped), and the run's
 * entries are handed to the visitor one at a time from the read window.
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <unistd.h>

#include "util/log.h"
#include "wal/wal_internal.h"

typedef struct replay_ctx {
    const wal_run *run;
    uint64_t after_index;
    uint64_t next_index; /* the index the next entry record must carry */
    wal_visit_fn visit;
    void *visit_ctx;
    fl_err visit_err;
    const char *why;
} replay_ctx;

static fl_err replay_record(void *opaque, uint64_t offset, wal_record_type type,
                            const uint8_t *payload, uint32_t len, bool *stop)
{
    replay_ctx *ctx = opaque;
    (void)offset;
    if (type != WAL_RECORD_ENTRY)
        return FL_OK;
    wal_entry entry;
    if (wal_record_decode_entry(payload, len, &entry, &ctx->why) != FL_OK)
        return FL_ERR_CORRUPT;
    if (entry.index != ctx->next_index) {
        ctx->why = "entry index differs from what recovery found";
        return FL_ERR_CORRUPT;
    }
    ctx->next_index++;
    if (entry.index > ctx->after_index) {
        ctx->visit_err = ctx->visit(ctx->visit_ctx, &entry);
        if (ctx->visit_err != FL_OK)
            *stop = true;
    }
    if (entry.index == ctx->run->last_index)
        *stop = true;
    return FL_OK;
}

static fl_err replay_run(wal *log, const wal_run *run, replay_ctx *ctx)
{
    assert(log->segment_count > 0 && run->seq >= log->segments[0].seq);
    size_t position = (size_t)(run->seq - log->segments[0].seq);
    assert(position < log->segment_count);
    const wal_segment *segment = &log->segments[position];
    char path[WAL_PATH_BYTES_MAX];
    if (wal_segment_path(log, segment->seq, segment->first_index, path, sizeof path) != FL_OK)
        return FL_ERR_INVALID;
    bool is_live = position + 1 == log->segment_count;
    int fd = is_live ? log->active_fd : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        FL_LOG_ERRORF("wal", "cannot open segment for replay", "path=%s", path);
        return FL_ERR_IO;
    }
    wal_reader reader;
    wal_reader_init(&reader, fd, segment->bytes);
    uint64_t end = 0;
    const char *why = NULL;
    uint64_t want =
        ctx->after_index + 1 > run->first_index ? ctx->after_index + 1 : run->first_index;
    uint64_t offset;
    ctx->run = run;
    wal_index_seek(log, run, want, &offset, &ctx->next_index);
    ctx->why = NULL;
    uint64_t payload_max = WAL_PAYLOAD_BYTES_READ_MAX;
    fl_err err = wal_segment_walk(&reader, offset, payload_max, replay_record, ctx, &end, &why);
    wal_reader_free(&reader);
    if (!is_live)
        close(fd);
    if (err == FL_OK && ctx->visit_err == FL_OK && ctx->next_index != run->last_index + 1) {
        err = FL_ERR_CORRUPT;
        if (!ctx->why)
            ctx->why = why ? why : "entries missing";
    }
    if (err == FL_ERR_CORRUPT)
        FL_LOG_ERRORF("wal", "corrupt record during replay",
                      "path=%s offset=%" PRIu64 " why=\"%s\"", path, end,
                      ctx->why ? ctx->why : "?");
    return err;
}

fl_err wal_replay(wal *log, uint64_t after_index, wal_visit_fn visit, void *ctx)
{
    assert(log && visit);
    replay_ctx replay = {.after_index = after_index, .visit = visit, .visit_ctx = ctx};
    for (size_t i = 0; i < log->run_count; i++) {
        const wal_run *run = &log->runs[i];
        if (run->last_index <= after_index)
            continue;
        fl_err err = replay_run(log, run, &replay);
        if (err != FL_OK)
            return err;
        if (replay.visit_err != FL_OK)
            return replay.visit_err;
    }
    return FL_OK;
}

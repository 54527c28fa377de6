/* wal/open: opening a log — recovery — and closing it.
 *
 * Recovery reads every segment front to back, checking each record's frame
 * and crc and feeding entries and hard states through the same index rules
 * append uses. Where a walk stops before the end of a file:
 *   - in the last segment, with no valid record anywhere after that point,
 *     it is a torn tail (a crash mid-write, or zero/garbage fill): cut off;
 *   - anywhere else it is corruption: FL_ERR_CORRUPT, naming file and offset.
 * Non-last segments are synced before the next one is created (see
 * wal_append.c), so a torn tail can only be in the last one.
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

#include "util/log.h"
#include "wal/wal_internal.h"

typedef struct recovery_ctx {
    wal *log;
    const wal_segment *segment;
    const char *path;
    char *errbuf;
    size_t errbuf_len;
} recovery_ctx;

static fl_err corrupt(const recovery_ctx *ctx, uint64_t offset, const char *why)
{
    if (ctx->errbuf)
        snprintf(ctx->errbuf, ctx->errbuf_len,
                 "wal: corrupt record in %s at offset %" PRIu64 ": %s", ctx->path, offset, why);
    FL_LOG_ERRORF("wal", "corrupt record", "path=%s offset=%" PRIu64 " why=\"%s\"", ctx->path,
                  offset, why);
    return FL_ERR_CORRUPT;
}

static fl_err recovery_visit(void *opaque, uint64_t offset, wal_record_type type,
                             const uint8_t *payload, uint32_t len, bool *stop)
{
    recovery_ctx *ctx = opaque;
    wal *log = ctx->log;
    const char *why = NULL;
    (void)stop;
    if ((offset == 0) != (type == WAL_RECORD_SEGMENT_HEADER))
        return corrupt(ctx, offset,
                       offset == 0 ? "missing segment header"
                                   : "segment header in the middle of a segment");
    switch (type) {
    case WAL_RECORD_SEGMENT_HEADER: {
        uint64_t seq, first_index;
        if (wal_record_decode_segment_header(payload, len, &seq, &first_index, &why) != FL_OK)
            return corrupt(ctx, offset, why);
        if (seq != ctx->segment->seq || first_index != ctx->segment->first_index)
            return corrupt(ctx, offset, "segment header does not match the file name");
        /* A segment that starts past the end of the log was begun by
         * wal_reset (a snapshot covers everything before it); a crash may
         * have left older segments behind it: the log restarts here. */
        if (log->run_count > 0 && first_index > log->last_index + 1)
            wal_index_reset(log, first_index - 1);
        return FL_OK;
    }
    case WAL_RECORD_ENTRY: {
        wal_entry entry;
        if (wal_record_decode_entry(payload, len, &entry, &why) != FL_OK)
            return corrupt(ctx, offset, why);
        if (wal_index_check_next(log, entry.index) != FL_OK) {
            char text[96];
            snprintf(text, sizeof text, "entry index %" PRIu64 " leaves a gap after %" PRIu64,
                     entry.index, log->last_index);
            return corrupt(ctx, offset, text);
        }
        return wal_index_note_entry(log, ctx->segment->seq, offset, entry.index);
    }
    case WAL_RECORD_HARD_STATE:
        if (wal_record_decode_hard_state(payload, len, &log->hard_state, &why) != FL_OK)
            return corrupt(ctx, offset, why);
        log->has_hard_state = true;
        log->hard_state_seq = ctx->segment->seq;
        return FL_OK;
    }
    return corrupt(ctx, offset, "unknown record type");
}

#define TORN_PAGE_BYTES 4096u

static fl_err all_zero(wal_reader *reader, uint64_t from, uint64_t to, bool *zero)
{
    *zero = true;
    while (from < to && *zero) {
        size_t want = (size_t)(to - from < 65536 ? to - from : 65536);
        const uint8_t *p = NULL;
        size_t got = 0;
        fl_err err = wal_reader_peek(reader, from, want, &p, &got);
        if (err != FL_OK)
            return err;
        if (got == 0)
            break;
        for (size_t i = 0; i < got && *zero; i++)
            *zero = p[i] == 0;
        from += got;
    }
    return FL_OK;
}

/* See judge_stop: does the bad record at `end` show a never-written page? */
static fl_err torn_write_signature(wal_reader *reader, uint64_t end, bool *torn)
{
    *torn = false;
    uint64_t file = reader->file_bytes;
    uint64_t page_end = (end / TORN_PAGE_BYTES + 1) * TORN_PAGE_BYTES;
    fl_err err = all_zero(reader, end, page_end < file ? page_end : file, torn);
    if (err != FL_OK || *torn)
        return err;
    const uint8_t *h = NULL;
    size_t got = 0;
    err = wal_reader_peek(reader, end, WAL_RECORD_HEADER_BYTES, &h, &got);
    if (err != FL_OK || got < WAL_RECORD_HEADER_BYTES)
        return err;
    uint64_t len =
        (uint64_t)h[0] | (uint64_t)h[1] << 8 | (uint64_t)h[2] << 16 | (uint64_t)h[3] << 24;
    if (len > WAL_RECORD_BYTES_LIMIT)
        return FL_OK;
    uint64_t span_end = end + WAL_RECORD_HEADER_BYTES + len;
    if (span_end > file)
        span_end = file;
    /* every page the record reaches into, whole (clipped at EOF) */
    for (uint64_t p = page_end; p < span_end && !*torn; p += TORN_PAGE_BYTES) {
        err = all_zero(reader, p, p + TORN_PAGE_BYTES < file ? p + TORN_PAGE_BYTES : file, torn);
        if (err != FL_OK)
            return err;
    }
    return FL_OK;
}

/* The walk stopped at end < file_bytes: torn tail or corruption. */
static fl_err judge_stop(recovery_ctx *ctx, wal_reader *reader, int fd, bool is_last, uint64_t end,
                         const char *why, wal_recovery_info *info)
{
    if (!is_last || end == 0)
        return corrupt(ctx, end, why);
    fl_err err;
    /* A torn write, not damage: the last segment's synced prefix has no
     * holes (fdatasync made every byte before its end durable), and space
     * past the old end of the file reads as zeros until written. So a bad
     * record showing a never-written page (zeros from its start to the end
     * of its page, or a whole zero page inside its span) lies past the last
     * sync, and so does every record after it, even a whole one: the pages
     * of one unsynced batch reach the disk in any order. Cut there; nothing
     * acknowledged is lost. A bad record without that signature, followed by
     * a valid one, is damage (etcd's WAL decoder uses the same signature). */
    bool zero_hole = false;
    err = torn_write_signature(reader, end, &zero_hole);
    if (err != FL_OK)
        return err;
    bool found = false;
    uint64_t found_offset = 0;
    uint64_t payload_max = WAL_PAYLOAD_BYTES_READ_MAX;
    err = zero_hole
              ? FL_OK
              : wal_segment_find_valid_after(reader, end + 1, payload_max, &found, &found_offset);
    if (err != FL_OK)
        return err;
    if (found) {
        char text[160];
        snprintf(text, sizeof text, "%s (a valid record follows at offset %" PRIu64 ")", why,
                 found_offset);
        return corrupt(ctx, end, text);
    }
    uint64_t cut = reader->file_bytes - end;
    FL_LOG_WARNF("wal", "cutting torn tail",
                 "path=%s offset=%" PRIu64 " bytes=%" PRIu64 " why=\"%s\"", ctx->path, end, cut,
                 why);
    if (ftruncate(fd, (off_t)end) != 0 || fdatasync(fd) != 0) {
        if (ctx->errbuf)
            snprintf(ctx->errbuf, ctx->errbuf_len, "wal: cannot cut torn tail of %s: %s", ctx->path,
                     strerror(errno));
        return FL_ERR_IO;
    }
    if (info)
        info->torn_bytes_cut += cut;
    return FL_OK;
}

static fl_err recover_segment(wal *log, size_t position, wal_recovery_info *info, char *errbuf,
                              size_t errbuf_len)
{
    wal_segment *segment = &log->segments[position];
    bool is_last = position + 1 == log->segment_count;
    char path[WAL_PATH_BYTES_MAX];
    if (wal_segment_path(log, segment->seq, segment->first_index, path, sizeof path) != FL_OK)
        return FL_ERR_INVALID;
    int fd = open(path, (is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return FL_ERR_IO;
    }
    recovery_ctx ctx = {log, segment, path, errbuf, errbuf_len};
    wal_reader reader;
    wal_reader_init(&reader, fd, (uint64_t)st.st_size);
    uint64_t end = 0;
    const char *why = NULL;
    uint64_t payload_max = WAL_PAYLOAD_BYTES_READ_MAX;
    fl_err err = wal_segment_walk(&reader, 0, payload_max, recovery_visit, &ctx, &end, &why);
    if (err == FL_OK && end < reader.file_bytes)
        err = judge_stop(&ctx, &reader, fd, is_last, end, why, info);
    if (err == FL_OK && end == 0)
        err = corrupt(&ctx, 0, "empty segment file");
    wal_reader_free(&reader);
    if (err != FL_OK) {
        if (errbuf && errbuf_len && errbuf[0] == '\0')
            snprintf(errbuf, errbuf_len, "wal: cannot recover %s: %s", path, fl_err_name(err));
        close(fd);
        return err;
    }
    segment->bytes = end;
    if (is_last)
        log->active_fd = fd;
    else
        close(fd);
    return FL_OK;
}

/* Creates dir if missing and makes its name durable in the parent. */
static fl_err make_dir(const char *dir, char *errbuf, size_t errbuf_len)
{
    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST)
            return FL_OK;
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot create %s: %s", dir, strerror(errno));
        return fl_err_from_errno(errno);
    }
    char parent[WAL_PATH_BYTES_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot sync %s: %s", parent, strerror(errno));
        return FL_ERR_IO;
    }
    close(fd);
    return FL_OK;
}

static fl_err open_dir(wal *log, const char *dir, char *errbuf, size_t errbuf_len)
{
    if (strlen(dir) + WAL_SEGMENT_NAME_BYTES + 8 >= WAL_PATH_BYTES_MAX)
        return FL_ERR_INVALID;
    /* Ownership: log->dir belongs to the handle, freed in wal_close. */
    log->dir = strdup(dir);
    if (!log->dir)
        return FL_ERR_NOMEM;
    fl_err err = make_dir(dir, errbuf, errbuf_len);
    if (err != FL_OK)
        return err;
    log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot open %s: %s", dir, strerror(errno));
        return FL_ERR_IO;
    }
    return FL_OK;
}

fl_err wal_open(const char *dir, const wal_options *options, wal **out, wal_recovery_info *info,
                char *errbuf, size_t errbuf_len)
{
    assert(dir && out);
    *out = NULL;
    if (info)
        memset(info, 0, sizeof *info);
    if (errbuf && errbuf_len)
        errbuf[0] = '\0';
    /* Ownership: the handle is the caller's on success (wal_close), ours on error. */
    wal *log = calloc(1, sizeof *log);
    if (!log)
        return FL_ERR_NOMEM;
    log->dir_fd = -1;
    log->active_fd = -1;
    if (options)
        log->options = *options;
    if (log->options.segment_bytes_max == 0)
        log->options.segment_bytes_max = WAL_SEGMENT_BYTES_MAX_DEFAULT;
    if (log->options.record_bytes_max == 0)
        log->options.record_bytes_max = WAL_RECORD_BYTES_MAX_DEFAULT;
    fl_err err = FL_OK;
    if (log->options.record_bytes_max > WAL_RECORD_BYTES_LIMIT) {
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: record_bytes_max %u exceeds the limit %u",
                     log->options.record_bytes_max, WAL_RECORD_BYTES_LIMIT);
        err = FL_ERR_INVALID;
    }
    if (err == FL_OK)
        err = open_dir(log, dir, errbuf, errbuf_len);
    if (err == FL_OK)
        err = wal_segment_list(log, errbuf, errbuf_len);
    for (size_t i = 0; err == FL_OK && i < log->segment_count; i++)
        err = recover_segment(log, i, info, errbuf, errbuf_len);
    if (err != FL_OK) {
        wal_close(log);
        return err;
    }
    /* With no entries left, the newest segment's name still says where the
     * log stood: it was created when the next index was first_index. */
    if (log->run_count == 0 && log->segment_count > 0 &&
        log->segments[log->segment_count - 1].first_index > 0)
        log->last_index = log->segments[log->segment_count - 1].first_index - 1;
    if (info) {
        info->first_index = wal_first_index(log);
        info->last_index = log->last_index;
        info->has_hard_state = log->has_hard_state;
        info->hard_state = log->hard_state;
    }
    FL_LOG_INFOF("wal", "opened", "dir=%s segments=%zu first_index=%" PRIu64 " last_index=%" PRIu64,
                 dir, log->segment_count, wal_first_index(log), log->last_index);
    *out = log;
    return FL_OK;
}

void wal_close(wal *log)
{
    if (!log)
        return;
    if (log->active_fd >= 0)
        close(log->active_fd);
    if (log->dir_fd >= 0)
        close(log->dir_fd);
    free(log->segments);
    free(log->runs);
    free(log->checkpoints);
    free(log->buffer);
    free(log->dir);
    free(log);
}

uint64_t wal_last_index(const wal *log)
{
    return log->last_index;
}

uint64_t wal_first_index(const wal *log)
{
    return log->run_count ? log->runs[0].first_index : 0;
}

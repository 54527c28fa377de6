/* wal/segment: segment files — names, listing, creation and record walks.
 *
 * A segment is named <seq>-<first index>.wal, both as 16 lower-case hex
 * digits, so `ls` order is log order. It begins with a segment header record
 * repeating both numbers. A new segment is written under <name>.tmp, synced,
 * renamed into place and the directory fsynced: a segment file that exists
 * under its final name always has a durable header.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"
#include "wal/wal_internal.h"

void wal_segment_name(char out[WAL_SEGMENT_NAME_BYTES + 1], uint64_t seq, uint64_t first_index)
{
    int n = snprintf(out, WAL_SEGMENT_NAME_BYTES + 1, "%016" PRIx64 "-%016" PRIx64 ".wal", seq,
                     first_index);
    assert(n == (int)WAL_SEGMENT_NAME_BYTES);
    (void)n;
}

static bool parse_hex16(const char *text, uint64_t *out)
{
    uint64_t value = 0;
    for (int i = 0; i < 16; i++) {
        char c = text[i];
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            digit = (unsigned)(c - 'a' + 10);
        else
            return false;
        value = (value << 4) | digit;
    }
    *out = value;
    return true;
}

bool wal_segment_parse_name(const char *name, uint64_t *seq, uint64_t *first_index)
{
    if (strlen(name) != WAL_SEGMENT_NAME_BYTES || name[16] != '-' || strcmp(name + 33, ".wal"))
        return false;
    return parse_hex16(name, seq) && parse_hex16(name + 17, first_index) && *seq > 0;
}

fl_err wal_segment_path(const wal *log, uint64_t seq, uint64_t first_index, char *out,
                        size_t out_len)
{
    char name[WAL_SEGMENT_NAME_BYTES + 1];
    wal_segment_name(name, seq, first_index);
    int n = snprintf(out, out_len, "%s/%s", log->dir, name);
    return n < 0 || (size_t)n >= out_len ? FL_ERR_INVALID : FL_OK;
}

static int compare_segments(const void *a, const void *b)
{
    const wal_segment *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

fl_err wal_segment_reserve(wal *log)
{
    if (log->segment_count == log->segment_cap) {
        size_t cap = log->segment_cap ? log->segment_cap * 2 : 16;
        /* Ownership: the array belongs to the handle, freed in wal_close. */
        wal_segment *grown = realloc(log->segments, cap * sizeof *grown);
        if (!grown)
            return FL_ERR_NOMEM;
        log->segments = grown;
        log->segment_cap = cap;
    }
    return FL_OK;
}

static fl_err push_segment(wal *log, uint64_t seq, uint64_t first_index)
{
    fl_err err = wal_segment_reserve(log);
    if (err != FL_OK)
        return err;
    log->segments[log->segment_count++] =
        (wal_segment){.seq = seq, .first_index = first_index, .bytes = 0};
    return FL_OK;
}

/* A crashed roll leaves <segment name>.tmp behind: it never became part of
 * the log, so it is removed. */
static bool is_leftover_tmp(const char *name)
{
    size_t len = strlen(name);
    uint64_t seq, first;
    char base[WAL_SEGMENT_NAME_BYTES + 1];
    if (len != WAL_SEGMENT_NAME_BYTES + 4 || strcmp(name + WAL_SEGMENT_NAME_BYTES, ".tmp"))
        return false;
    memcpy(base, name, WAL_SEGMENT_NAME_BYTES);
    base[WAL_SEGMENT_NAME_BYTES] = '\0';
    return wal_segment_parse_name(base, &seq, &first);
}

fl_err wal_segment_list(wal *log, char *errbuf, size_t errbuf_len)
{
    DIR *dir = opendir(log->dir);
    if (!dir) {
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot list %s: %s", log->dir, strerror(errno));
        return FL_ERR_IO;
    }
    fl_err err = FL_OK;
    bool removed = false;
    struct dirent *ent;
    while (err == FL_OK && (ent = readdir(dir)) != NULL) {
        uint64_t seq, first;
        if (wal_segment_parse_name(ent->d_name, &seq, &first)) {
            err = push_segment(log, seq, first);
        } else if (is_leftover_tmp(ent->d_name)) {
            FL_LOG_WARNF("wal", "removing unfinished segment", "dir=%s file=%s", log->dir,
                         ent->d_name);
            if (unlinkat(log->dir_fd, ent->d_name, 0) != 0)
                err = FL_ERR_IO;
            removed = true;
        }
    }
    closedir(dir);
    if (err == FL_OK && removed)
        err = wal_io_fsync_dir(log);
    if (err != FL_OK) {
        if (errbuf)
            snprintf(errbuf, errbuf_len, "wal: cannot list %s: %s", log->dir, fl_err_name(err));
        return err;
    }
    if (log->segment_count > 1)
        qsort(log->segments, log->segment_count, sizeof *log->segments, compare_segments);
    for (size_t i = 1; i < log->segment_count; i++) {
        if (log->segments[i].seq != log->segments[i - 1].seq + 1) {
            if (errbuf)
                snprintf(errbuf, errbuf_len,
                         "wal: segments missing in %s: seq %" PRIu64 " follows seq %" PRIu64,
                         log->dir, log->segments[i].seq, log->segments[i - 1].seq);
            return FL_ERR_CORRUPT;
        }
    }
    return FL_OK;
}

fl_err wal_segment_create(wal *log, uint64_t seq, uint64_t first_index, int *fd_out)
{
    char path[WAL_PATH_BYTES_MAX], tmp[WAL_PATH_BYTES_MAX + 8];
    if (wal_segment_path(log, seq, first_index, path, sizeof path) != FL_OK)
        return FL_ERR_INVALID;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int open_errno = errno; /* before logging can change it */
        FL_LOG_ERRORF("wal", "cannot create segment", "path=%s errno=%d", tmp, open_errno);
        return fl_err_from_errno(open_errno);
    }
    uint8_t header[WAL_SEGMENT_HEADER_RECORD_BYTES];
    size_t n = wal_record_encode_segment_header(header, seq, first_index);
    assert(n == sizeof header);
    fl_err err = wal_io_write_all(log, fd, header, n, 0);
    if (err == FL_OK)
        err = wal_io_fdatasync(log, fd);
    if (err == FL_OK && rename(tmp, path) != 0)
        err = fl_err_from_errno(errno);
    if (err != FL_OK) {
        close(fd);
        unlink(tmp);
        return err;
    }
    /* The name is in place; if the directory cannot be made durable the
     * segment might vanish in a crash with acknowledged data in it, so the
     * handle stops accepting writes. */
    err = wal_io_fsync_dir(log);
    if (err != FL_OK) {
        close(fd);
        log->failed = FL_ERR_IO;
        return FL_ERR_IO;
    }
    *fd_out = fd;
    return FL_OK;
}

/* Checks the frame at offset, reading the whole record if the header fits. */
static fl_err frame_at(wal_reader *reader, uint64_t offset, uint64_t payload_bytes_max,
                       wal_frame_status *status, wal_record_type *type, const uint8_t **payload,
                       uint32_t *len, const char **why)
{
    const uint8_t *p;
    size_t got;
    fl_err err = wal_reader_peek(reader, offset, WAL_RECORD_HEADER_BYTES, &p, &got);
    if (err != FL_OK)
        return err;
    *status = wal_record_check(p, got, payload_bytes_max, type, len, why);
    if (*status == WAL_FRAME_SHORT && got == WAL_RECORD_HEADER_BYTES) {
        err = wal_reader_peek(reader, offset, WAL_RECORD_HEADER_BYTES + (size_t)*len, &p, &got);
        if (err != FL_OK)
            return err;
        *status = wal_record_check(p, got, payload_bytes_max, type, len, why);
    }
    *payload = p + WAL_RECORD_HEADER_BYTES;
    return FL_OK;
}

fl_err wal_segment_walk(wal_reader *reader, uint64_t offset, uint64_t payload_bytes_max,
                        wal_walk_fn fn, void *ctx, uint64_t *end_offset, const char **why)
{
    *why = NULL;
    while (offset < reader->file_bytes) {
        wal_frame_status status;
        wal_record_type type = 0;
        const uint8_t *payload;
        uint32_t len = 0;
        fl_err err =
            frame_at(reader, offset, payload_bytes_max, &status, &type, &payload, &len, why);
        if (err != FL_OK || status != WAL_FRAME_OK) {
            *end_offset = offset;
            return err;
        }
        bool stop = false;
        err = fn(ctx, offset, type, payload, len, &stop);
        if (err != FL_OK) {
            *end_offset = offset;
            return err;
        }
        offset += WAL_RECORD_HEADER_BYTES + (uint64_t)len;
        if (stop)
            break;
    }
    *why = NULL;
    *end_offset = offset;
    return FL_OK;
}

fl_err wal_segment_find_valid_after(wal_reader *reader, uint64_t from, uint64_t payload_bytes_max,
                                    bool *found, uint64_t *found_offset)
{
    *found = false;
    for (uint64_t p = from; p + WAL_RECORD_HEADER_BYTES <= reader->file_bytes; p++) {
        const uint8_t *h;
        size_t got;
        fl_err err = wal_reader_peek(reader, p, WAL_RECORD_HEADER_BYTES, &h, &got);
        if (err != FL_OK)
            return err;
        /* Cheap rejections first: in zeros or random bytes almost every
         * position fails on the type or reserved bytes. */
        if (h[8] < WAL_RECORD_SEGMENT_HEADER || h[8] > WAL_RECORD_HARD_STATE ||
            (h[9] | h[10] | h[11]))
            continue;
        wal_frame_status status;
        wal_record_type type;
        const uint8_t *payload;
        uint32_t len;
        const char *why;
        err = frame_at(reader, p, payload_bytes_max, &status, &type, &payload, &len, &why);
        if (err != FL_OK)
            return err;
        if (status == WAL_FRAME_OK) {
            *found = true;
            *found_offset = p;
            return FL_OK;
        }
    }
    return FL_OK;
}

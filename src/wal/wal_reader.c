/* wal/reader: a window over a segment file for sequential scans.
 *
 * Recovery and replay walk records front to back; the window is refilled
 * with one pread of WAL_READ_WINDOW_BYTES (or one record, if bigger) when
 * the next record does not fit, so a scan costs about one syscall per
 * window, not per record.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/log.h"
#include "wal/wal_internal.h"

void wal_reader_init(wal_reader *reader, int fd, uint64_t file_bytes)
{
    *reader = (wal_reader){.fd = fd, .file_bytes = file_bytes};
}

void wal_reader_free(wal_reader *reader)
{
    free(reader->window);
    reader->window = NULL;
    reader->window_cap = 0;
    reader->window_len = 0;
}

static fl_err reader_refill(wal_reader *reader, uint64_t offset, size_t need)
{
    size_t cap = need > WAL_READ_WINDOW_BYTES ? need : WAL_READ_WINDOW_BYTES;
    if (cap > reader->window_cap) {
        /* Ownership: the window belongs to the reader, freed in wal_reader_free. */
        uint8_t *grown = realloc(reader->window, cap);
        if (!grown)
            return FL_ERR_NOMEM;
        reader->window = grown;
        reader->window_cap = cap;
    }
    uint64_t in_file = reader->file_bytes - offset;
    size_t want = in_file < reader->window_cap ? (size_t)in_file : reader->window_cap;
    size_t done = 0;
    while (done < want) {
        ssize_t n = pread(reader->fd, reader->window + done, want - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            FL_LOG_ERRORF("wal", "read failed", "errno=%d", errno);
            reader->window_len = 0;
            return FL_ERR_IO;
        }
        if (n == 0)
            break; /* the file is shorter than we were told: report what is there */
        done += (size_t)n;
    }
    reader->window_offset = offset;
    reader->window_len = done;
    return FL_OK;
}

fl_err wal_reader_peek(wal_reader *reader, uint64_t offset, size_t want, const uint8_t **out,
                       size_t *got)
{
    *got = 0;
    *out = NULL;
    if (offset >= reader->file_bytes)
        return FL_OK;
    uint64_t in_file = reader->file_bytes - offset;
    size_t need = in_file < want ? (size_t)in_file : want;
    bool inside = reader->window_len > 0 && offset >= reader->window_offset &&
                  offset - reader->window_offset + need <= reader->window_len;
    if (!inside) {
        fl_err err = reader_refill(reader, offset, need);
        if (err != FL_OK)
            return err;
        if (need > reader->window_len)
            need = reader->window_len;
    }
    assert(offset >= reader->window_offset);
    *out = reader->window + (offset - reader->window_offset);
    *got = need;
    return FL_OK;
}

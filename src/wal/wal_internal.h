/* wal/internal: the handle and the pieces the wal_*.c files share.
 *
 * Not part of the contract (src/wal/wal.h is). The in-memory picture of the
 * log is small: one wal_segment per file and one wal_run per stretch of
 * consecutive live entries inside one segment. A run starts at a segment
 * roll or at a logical truncation, so memory is O(segments + truncations),
 * not O(entries); replay re-reads the bytes from disk.
 */
#ifndef FL_WAL_INTERNAL_H
#define FL_WAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wal/wal.h"
#include "wal/wal_record.h"

#define WAL_SEGMENT_BYTES_MAX_DEFAULT (64ull << 20)
#define WAL_RECORD_BYTES_MAX_DEFAULT  (16u << 20)
/* The append buffer is kept between batches up to this size; a bigger one
 * (from a batch of large entries) is freed after the batch. */
#define WAL_BUFFER_KEEP_BYTES (4u << 20)
/* Read window for scans and replay; grows to fit one record. */
#define WAL_READ_WINDOW_BYTES (256u << 10)
/* "%016x-%016x.wal" */
#define WAL_SEGMENT_NAME_BYTES 37u
#define WAL_PATH_BYTES_MAX     4096u

typedef struct wal_segment {
    uint64_t seq;         /* position in the log; consecutive, from 1 */
    uint64_t first_index; /* from the name: first entry written here, or the next index expected */
    uint64_t bytes;       /* valid bytes (the file size after recovery) */
} wal_segment;

/* Live entries first_index..last_index sit consecutively (hard state records
 * may be interleaved) in segment `seq`, starting with the record at offset. */
typedef struct wal_run {
    uint64_t seq;
    uint64_t offset;
    uint64_t first_index;
    uint64_t last_index;
} wal_run;

/* Every WAL_CHECKPOINT_EVERY-th live entry's position, so replay from a
 * high after_index starts near it instead of at its run's first record.
 * Sorted by index; an optimisation only (a missing one costs a longer read). */
#define WAL_CHECKPOINT_EVERY 256u
typedef struct wal_checkpoint {
    uint64_t index;
    uint64_t seq;
    uint64_t offset;
} wal_checkpoint;

struct wal {
    char *dir;             /* owned */
    int dir_fd;            /* for fsync after create/remove */
    wal_options options;   /* defaults filled in */
    wal_segment *segments; /* owned array, oldest first */
    size_t segment_count, segment_cap;
    int active_fd; /* segments[segment_count-1], or -1 when there is none */
    wal_run *runs; /* owned array, in log order */
    size_t run_count, run_cap;
    wal_checkpoint *checkpoints; /* owned array, sorted by index */
    size_t checkpoint_count, checkpoint_cap;
    uint64_t last_index;
    bool has_hard_state;
    wal_hard_state hard_state;
    uint64_t hard_state_seq; /* segment holding the newest hard state record */
    uint8_t *buffer;         /* owned; append encoding buffer */
    size_t buffer_cap;
    fl_err failed; /* sticky: FL_OK, or the handle is read-only */
};

/* ---- buffered reader (wal_reader.c) ---- */
typedef struct wal_reader {
    int fd;
    uint64_t file_bytes;
    uint8_t *window; /* owned */
    size_t window_cap;
    uint64_t window_offset; /* file offset of window[0] */
    size_t window_len;
} wal_reader;

void wal_reader_init(wal_reader *reader, int fd, uint64_t file_bytes);
void wal_reader_free(wal_reader *reader);
/* Makes bytes [offset, offset + want) readable at *out, clipped at end of
 * file: *got < want only at EOF. want is bounded by the caller (one record). */
fl_err wal_reader_peek(wal_reader *reader, uint64_t offset, size_t want, const uint8_t **out,
                       size_t *got);

/* ---- segment files (wal_segment.c) ---- */
void wal_segment_name(char out[WAL_SEGMENT_NAME_BYTES + 1], uint64_t seq, uint64_t first_index);
bool wal_segment_parse_name(const char *name, uint64_t *seq, uint64_t *first_index);
fl_err wal_segment_path(const wal *log, uint64_t seq, uint64_t first_index, char *out,
                        size_t out_len);
/* Lists segment files (sorted by seq) into log->segments and removes
 * leftovers of an interrupted roll (*.wal.tmp). */
fl_err wal_segment_list(wal *log, char *errbuf, size_t errbuf_len);
/* Makes room for one more entry in log->segments. */
fl_err wal_segment_reserve(wal *log);
/* Creates segment seq (tmp file, header, fdatasync, rename, dir fsync) and
 * returns its fd. */
fl_err wal_segment_create(wal *log, uint64_t seq, uint64_t first_index, int *fd_out);

/* Walks records from `offset`, calling fn for each whole record with a good
 * crc, until fn sets *stop, EOF, or a bad/short frame. *end_offset is where
 * the walk stopped; *why says why when it was not EOF or *stop. */
typedef fl_err (*wal_walk_fn)(void *ctx, uint64_t offset, wal_record_type type,
                              const uint8_t *payload, uint32_t len, bool *stop);
fl_err wal_segment_walk(wal_reader *reader, uint64_t offset, uint64_t payload_bytes_max,
                        wal_walk_fn fn, void *ctx, uint64_t *end_offset, const char **why);
/* Searches [from, EOF) byte by byte for a whole record with a good crc.
 * Sets *found and its offset. */
fl_err wal_segment_find_valid_after(wal_reader *reader, uint64_t from, uint64_t payload_bytes_max,
                                    bool *found, uint64_t *found_offset);

/* ---- live-entry index (wal_index.c) ---- */
/* Can a batch starting at first_index be appended? FL_ERR_INVALID on a gap. */
fl_err wal_index_check_next(const wal *log, uint64_t first_index);
/* Makes room for one more run, so the next wal_index_note_entry cannot fail
 * (a batch starts at most one run: its first entry). */
fl_err wal_index_reserve(wal *log);
/* Notes that entry `index` was written at (seq, offset), truncating the live
 * log from `index` when it rewrites one. The caller checked continuity. */
fl_err wal_index_note_entry(wal *log, uint64_t seq, uint64_t offset, uint64_t index);
/* Deletes the n oldest segment files (never the live one), fsyncs the
 * directory and forgets them; *removed says how many went (all on FL_OK). */
fl_err wal_segments_remove_oldest(wal *log, size_t n, size_t *removed);
/* Forgets every live entry: the log holds none and continues after `index`. */
void wal_index_reset(wal *log, uint64_t index);
/* Forgets runs and checkpoints in segments with seq < seq_min. */
void wal_index_drop_before(wal *log, uint64_t seq_min);
/* Where to start reading run `run` to reach entry `index` (in the run):
 * *offset of a record and *start_index, the entry it holds. */
void wal_index_seek(const wal *log, const wal_run *run, uint64_t index, uint64_t *offset,
                    uint64_t *start_index);

/* ---- io helpers (wal_append.c) ---- */
/* Syncs the live segment and starts segment seq+1 whose header names first_index. */
fl_err wal_append_roll(wal *log, uint64_t first_index);
fl_err wal_io_write_all(wal *log, int fd, const uint8_t *buf, size_t len, uint64_t offset);
fl_err wal_io_fdatasync(wal *log, int fd);
fl_err wal_io_fsync_dir(wal *log);

#endif

/* Helpers shared by the wal unit tests: temp dirs, deterministic entries,
 * collecting a replay, poking at segment files. Test code only. */
#ifndef FL_WAL_TEST_SUPPORT_H
#define FL_WAL_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wal/wal.h"

#define TS_COLLECT_MAX 20000

/* A fresh dir under /tmp (malloc'd path); the wal goes in <it>/wal. */
char *ts_tmpdir_make(void);
/* Removes the tree and frees the path. */
void ts_tmpdir_remove(char *path);
/* <tmp>/wal into a static buffer. */
const char *ts_wal_dir(const char *tmp);

/* Payload of entry (index, term): a length and bytes derived from both. */
size_t ts_payload_len(uint64_t index);
void ts_payload_fill(uint8_t *out, size_t len, uint64_t index, uint64_t term);

/* Appends entries first..last (one batch) with the given term, and an
 * optional hard state; returns what wal_append_batch returned. */
fl_err ts_append_range(wal *log, uint64_t first, uint64_t last, uint64_t term,
                       const wal_hard_state *hard_state);

typedef struct ts_collected {
    size_t count;
    uint64_t index[TS_COLLECT_MAX];
    uint64_t term[TS_COLLECT_MAX];
    bool payload_ok[TS_COLLECT_MAX]; /* data matches ts_payload_fill(index, term) */
    size_t stop_after;               /* 0 = never; else visitor returns FL_ERR_STOPPED after n */
} ts_collected;

/* Replays after after_index into a heap ts_collected (free()). */
fl_err ts_replay(wal *log, uint64_t after_index, ts_collected **out);
/* Asserts the collection is exactly first..last with the given term for
 * every index (term_of may be NULL: use `term`). */
void ts_expect_range(const ts_collected *c, uint64_t first, uint64_t last, uint64_t term);

/* Sorted segment file names (*.wal) in dir; returns the count. */
size_t ts_list_segments(const char *dir, char names[][64], size_t max);
/* Full path of the n-th (sorted) segment into a static buffer. */
const char *ts_segment_path(const char *dir, size_t n);
uint64_t ts_file_size(const char *path);
void ts_file_truncate(const char *path, uint64_t size);
void ts_file_append(const char *path, const uint8_t *bytes, size_t len);
void ts_file_flip_byte(const char *path, uint64_t offset);
/* Copies a file's bytes to a heap buffer (free()); sets *len. */
uint8_t *ts_file_read(const char *path, size_t *len);
void ts_file_write(const char *path, const uint8_t *bytes, size_t len);

#endif

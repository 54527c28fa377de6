#include "wal_test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *ts_tmpdir_make(void)
{
    char *path = strdup("/tmp/fl-wal-test-XXXXXX");
    assert_non_null(path);
    assert_non_null(mkdtemp(path));
    return path;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ts_tmpdir_remove(char *path)
{
    if (!path)
        return;
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

const char *ts_wal_dir(const char *tmp)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/wal", tmp);
    return buf;
}

size_t ts_payload_len(uint64_t index)
{
    return (size_t)((index * 37) % 61); /* includes 0-length entries */
}

void ts_payload_fill(uint8_t *out, size_t len, uint64_t index, uint64_t term)
{
    for (size_t j = 0; j < len; j++)
        out[j] = (uint8_t)(index * 131 + term * 17 + j);
}

fl_err ts_append_range(wal *log, uint64_t first, uint64_t last, uint64_t term,
                       const wal_hard_state *hard_state)
{
    size_t count = first <= last ? (size_t)(last - first + 1) : 0;
    wal_entry *entries = calloc(count ? count : 1, sizeof *entries);
    uint8_t *data = malloc(count * 64 + 1);
    assert_non_null(entries);
    assert_non_null(data);
    for (size_t k = 0; k < count; k++) {
        uint64_t index = first + k;
        size_t len = ts_payload_len(index);
        ts_payload_fill(data + k * 64, len, index, term);
        entries[k] = (wal_entry){.index = index,
                                 .term = term,
                                 .type = (index % 5 == 0) ? WAL_ENTRY_NOOP : WAL_ENTRY_NORMAL,
                                 .data = data + k * 64,
                                 .len = len};
    }
    fl_err err = wal_append_batch(log, entries, count, hard_state);
    free(data);
    free(entries);
    return err;
}

static fl_err collect(void *ctx, const wal_entry *entry)
{
    ts_collected *c = ctx;
    assert_true(c->count < TS_COLLECT_MAX);
    uint8_t expect[64];
    size_t len = ts_payload_len(entry->index);
    ts_payload_fill(expect, len, entry->index, entry->term);
    wal_entry_type type = (entry->index % 5 == 0) ? WAL_ENTRY_NOOP : WAL_ENTRY_NORMAL;
    c->index[c->count] = entry->index;
    c->term[c->count] = entry->term;
    c->payload_ok[c->count] = entry->len == len && entry->type == type &&
                              (len == 0 || memcmp(entry->data, expect, len) == 0);
    c->count++;
    if (c->stop_after && c->count == c->stop_after)
        return FL_ERR_STOPPED;
    return FL_OK;
}

fl_err ts_replay(wal *log, uint64_t after_index, ts_collected **out)
{
    ts_collected *c = calloc(1, sizeof *c);
    assert_non_null(c);
    *out = c;
    return wal_replay(log, after_index, collect, c);
}

void ts_expect_range(const ts_collected *c, uint64_t first, uint64_t last, uint64_t term)
{
    size_t want = first <= last ? (size_t)(last - first + 1) : 0;
    assert_int_equal(c->count, want);
    for (size_t k = 0; k < want; k++) {
        assert_int_equal(c->index[k], first + k);
        assert_int_equal(c->term[k], term);
        assert_true(c->payload_ok[k]);
    }
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

size_t ts_list_segments(const char *dir, char names[][64], size_t max)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        if (len > 4 && strcmp(ent->d_name + len - 4, ".wal") == 0) {
            assert_true(n < max && len < 64);
            strcpy(names[n++], ent->d_name);
        }
    }
    closedir(d);
    qsort(names, n, 64, compare_names);
    return n;
}

const char *ts_segment_path(const char *dir, size_t n)
{
    static char names[4096][64];
    static char path[700];
    size_t count = ts_list_segments(dir, names, 4096);
    assert_true(n < count);
    snprintf(path, sizeof path, "%s/%s", dir, names[n]);
    return path;
}

uint64_t ts_file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

void ts_file_truncate(const char *path, uint64_t size)
{
    assert_int_equal(truncate(path, (off_t)size), 0);
}

void ts_file_append(const char *path, const uint8_t *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    close(fd);
}

void ts_file_flip_byte(const char *path, uint64_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)offset), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

uint8_t *ts_file_read(const char *path, size_t *len)
{
    *len = (size_t)ts_file_size(path);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, *len, 0), (ssize_t)*len);
    close(fd);
    return buf;
}

void ts_file_write(const char *path, const uint8_t *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    close(fd);
}

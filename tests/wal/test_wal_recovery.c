/* wal unit tests: recovery — torn tails are cut, corruption is reported
 * with file and offset. The tests compute record offsets from the on-disk
 * layout in docs/wal.md (44-byte segment header record; an entry record is
 * 12 + 24 + data bytes; a hard state record is 12 + 24 bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal_test_support.h"

#define HEADER_RECORD_BYTES     44u
#define HARD_STATE_RECORD_BYTES 36u
#define ENTRIES                 30u

typedef struct fixture {
    char *tmp;
    wal *log;
    wal_options options;
    wal_recovery_info info;
    char errbuf[512];
    /* The standard log: one segment; entries 1..30 in batches of ten, a hard
     * state after entry 20. */
    uint64_t entry_offset[ENTRIES + 2]; /* [i] = start of entry i; [31] = end */
    uint64_t hard_state_offset;
    uint8_t *good; /* the standard segment's bytes */
    size_t good_len;
    char path[600];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = ts_tmpdir_make();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wal_close(f->log);
    ts_tmpdir_remove(f->tmp);
    free(f->good);
    free(f);
    return 0;
}

static fl_err try_open(fixture *f)
{
    wal_close(f->log);
    f->log = NULL;
    f->errbuf[0] = '\0';
    return wal_open(ts_wal_dir(f->tmp), &f->options, &f->log, &f->info, f->errbuf,
                    sizeof f->errbuf);
}

static void reopen(fixture *f)
{
    fl_err err = try_open(f);
    if (err != FL_OK)
        fail_msg("wal_open: %s: %s", fl_err_name(err), f->errbuf);
}

static void build_standard_log(fixture *f)
{
    reopen(f);
    wal_hard_state hs = {.term = 1, .vote = 1, .commit = 20};
    assert_int_equal(ts_append_range(f->log, 1, 10, 1, NULL), FL_OK);
    assert_int_equal(ts_append_range(f->log, 11, 20, 1, &hs), FL_OK);
    assert_int_equal(ts_append_range(f->log, 21, 30, 1, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    wal_close(f->log);
    f->log = NULL;
    uint64_t at = HEADER_RECORD_BYTES;
    for (uint64_t i = 1; i <= ENTRIES; i++) {
        f->entry_offset[i] = at;
        at += 36 + ts_payload_len(i);
        if (i == 20) {
            f->hard_state_offset = at;
            at += HARD_STATE_RECORD_BYTES;
        }
    }
    f->entry_offset[ENTRIES + 1] = at;
    snprintf(f->path, sizeof f->path, "%s", ts_segment_path(ts_wal_dir(f->tmp), 0));
    f->good = ts_file_read(f->path, &f->good_len);
    assert_int_equal(f->good_len, at); /* the layout is what docs/wal.md says */
}

/* After recovery: entries 1..last intact, and appending last+1 works and
 * survives a reopen. */
static void expect_recovered(fixture *f, uint64_t last)
{
    assert_int_equal(f->info.last_index, last);
    ts_collected *c;
    assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
    ts_expect_range(c, 1, last, 1);
    free(c);
    assert_int_equal(ts_append_range(f->log, last + 1, last + 1, 1, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, 0);
    assert_int_equal(f->info.last_index, last + 1);
    assert_int_equal(ts_replay(f->log, 0, &c), FL_OK);
    ts_expect_range(c, 1, last + 1, 1);
    free(c);
}

/* The record boundary at or before `cut`, and the entries before it. */
static uint64_t boundary_before(const fixture *f, uint64_t cut, uint64_t *entries)
{
    uint64_t boundary = HEADER_RECORD_BYTES;
    *entries = 0;
    for (uint64_t i = 1; i <= ENTRIES; i++) {
        uint64_t end = f->entry_offset[i] + 36 + ts_payload_len(i);
        if (end > cut)
            break;
        boundary = end;
        *entries = i;
        if (i == 20 && f->hard_state_offset + HARD_STATE_RECORD_BYTES <= cut)
            boundary = f->hard_state_offset + HARD_STATE_RECORD_BYTES;
    }
    return boundary;
}

static void torn_tail_at_every_cut_point(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    int checked = 0;
    for (uint64_t cut = HEADER_RECORD_BYTES; cut < f->good_len; cut++) {
        /* Every byte of the last records, a stride through the rest. */
        if (cut < f->entry_offset[27] && cut % 7 != 0)
            continue;
        ts_file_write(f->path, f->good, (size_t)cut);
        reopen(f);
        uint64_t entries;
        uint64_t boundary = boundary_before(f, cut, &entries);
        assert_int_equal(f->info.torn_bytes_cut, cut - boundary);
        assert_int_equal(ts_file_size(f->path), boundary);
        assert_int_equal(f->info.has_hard_state,
                         boundary >= f->hard_state_offset + HARD_STATE_RECORD_BYTES);
        expect_recovered(f, entries);
        checked++;
    }
    assert_true(checked > 150);
}

/* A segment cut inside its header record is not a torn tail: segments are
 * created complete (tmp + rename), so this is damage. */
static void cut_inside_segment_header_is_corrupt(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    ts_file_write(f->path, f->good, 20);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_non_null(strstr(f->errbuf, f->path));
}

static void append_tail_and_expect_cut(fixture *f, const uint8_t *tail, size_t len)
{
    ts_file_write(f->path, f->good, f->good_len);
    ts_file_append(f->path, tail, len);
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, len);
    assert_int_equal(ts_file_size(f->path), f->good_len);
    expect_recovered(f, ENTRIES);
}

static void zero_and_garbage_tails_are_cut(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    uint8_t *tail = calloc(1, 8192);
    assert_non_null(tail);
    size_t zero_lens[] = {1, 11, 12, 13, 100, 4096, 8192};
    for (size_t k = 0; k < sizeof zero_lens / sizeof *zero_lens; k++)
        append_tail_and_expect_cut(f, tail, zero_lens[k]);
    /* Pseudo-random garbage. */
    uint32_t x = 12345;
    for (size_t j = 0; j < 8192; j++) {
        x = x * 1103515245u + 12345u;
        tail[j] = (uint8_t)(x >> 16);
    }
    size_t garbage_lens[] = {1, 5, 12, 37, 1000, 8192};
    for (size_t k = 0; k < sizeof garbage_lens / sizeof *garbage_lens; k++)
        append_tail_and_expect_cut(f, tail, garbage_lens[k]);
    /* A plausible header claiming an enormous length. */
    uint8_t huge[12] = {0x00, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 2, 0, 0, 0};
    append_tail_and_expect_cut(f, huge, sizeof huge);
    /* Half of a real record, then zeros (a torn write in preallocated space). */
    size_t rec = (size_t)(f->entry_offset[31] - f->entry_offset[30]);
    memset(tail, 0, 8192);
    memcpy(tail, f->good + f->entry_offset[30], rec / 2);
    append_tail_and_expect_cut(f, tail, rec / 2 + 500);
    free(tail);
}

/* A bad crc in the last record with nothing valid after it is a torn write. */
static void bad_last_record_is_torn(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    ts_file_flip_byte(f->path, f->entry_offset[30] + 20);
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, f->good_len - f->entry_offset[30]);
    expect_recovered(f, 29);
}

static void expect_corrupt_at(fixture *f, const char *path, uint64_t offset, const char *why)
{
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_null(f->log);
    char want[800];
    snprintf(want, sizeof want, "wal: corrupt record in %s at offset %llu: %s", path,
             (unsigned long long)offset, why);
    if (strncmp(f->errbuf, want, strlen(want)) != 0)
        fail_msg("errbuf \"%s\" does not start with \"%s\"", f->errbuf, want);
}

static void corrupt_record_in_the_middle(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    uint64_t at = f->entry_offset[15];
    /* A flipped payload byte. */
    ts_file_flip_byte(f->path, at + 40);
    expect_corrupt_at(f, f->path, at, "crc mismatch");
    /* A flipped length byte. */
    ts_file_write(f->path, f->good, f->good_len);
    ts_file_flip_byte(f->path, at);
    expect_corrupt_at(f, f->path, at, "");
    /* A length beyond any bound. */
    ts_file_write(f->path, f->good, f->good_len);
    uint8_t *copy = malloc(f->good_len);
    memcpy(copy, f->good, f->good_len);
    copy[at + 3] = 0x7f;
    ts_file_write(f->path, copy, f->good_len);
    expect_corrupt_at(f, f->path, at, "record length exceeds");
    /* Zeros over a record in the middle. */
    memcpy(copy, f->good, f->good_len);
    memset(copy + at, 0, 36);
    ts_file_write(f->path, copy, f->good_len);
    expect_corrupt_at(f, f->path, at, "");
    /* The hard state record. */
    memcpy(copy, f->good, f->good_len);
    copy[f->hard_state_offset + 20] ^= 1;
    ts_file_write(f->path, copy, f->good_len);
    expect_corrupt_at(f, f->path, f->hard_state_offset, "crc mismatch");
    free(copy);
    /* Restored, the log opens and is whole: nothing was changed on disk. */
    ts_file_write(f->path, f->good, f->good_len);
    reopen(f);
    assert_int_equal(f->info.torn_bytes_cut, 0);
    expect_recovered(f, ENTRIES);
}

static void build_segmented_log(fixture *f, size_t *segments)
{
    f->options.segment_bytes_max = 600;
    reopen(f);
    for (uint64_t i = 1; i <= 60; i += 2)
        assert_int_equal(ts_append_range(f->log, i, i + 1, 1, NULL), FL_OK);
    assert_int_equal(wal_sync(f->log), FL_OK);
    wal_close(f->log);
    f->log = NULL;
    char names[64][64];
    *segments = ts_list_segments(ts_wal_dir(f->tmp), names, 64);
    assert_true(*segments >= 4);
}

static void corrupt_record_in_a_non_last_segment(void **state)
{
    fixture *f = *state;
    size_t segments;
    build_segmented_log(f, &segments);
    char path[600];
    snprintf(path, sizeof path, "%s", ts_segment_path(ts_wal_dir(f->tmp), 1));
    size_t len;
    uint8_t *good = ts_file_read(path, &len);
    /* Damage in the last record of a non-last segment is not a torn tail. */
    ts_file_flip_byte(path, len - 3);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_non_null(strstr(f->errbuf, path));
    assert_non_null(strstr(f->errbuf, "crc mismatch"));
    /* Nor is a short non-last segment. */
    ts_file_write(path, good, len - 3);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_non_null(strstr(f->errbuf, path));
    /* Nor zeros after it. */
    ts_file_write(path, good, len);
    uint8_t zeros[64] = {0};
    ts_file_append(path, zeros, sizeof zeros);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    char want[64];
    snprintf(want, sizeof want, "at offset %zu: ", len);
    assert_non_null(strstr(f->errbuf, want));
    ts_file_write(path, good, len);
    free(good);
    reopen(f);
    assert_int_equal(f->info.last_index, 60);
}

static void missing_or_misnamed_segment_is_corrupt(void **state)
{
    fixture *f = *state;
    size_t segments;
    build_segmented_log(f, &segments);
    char path[600], moved[700];
    snprintf(path, sizeof path, "%s", ts_segment_path(ts_wal_dir(f->tmp), 1));
    snprintf(moved, sizeof moved, "%s/elsewhere", f->tmp);
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_non_null(strstr(f->errbuf, "missing"));
    /* The same file under another first index: its header disagrees. */
    char wrong[700];
    snprintf(wrong, sizeof wrong, "%s", path);
    char *dash = strrchr(wrong, '-');
    dash[16] = dash[16] == '9' ? '8' : '9'; /* last hex digit of the first index */
    assert_int_equal(rename(moved, wrong), 0);
    assert_int_equal(try_open(f), FL_ERR_CORRUPT);
    assert_non_null(strstr(f->errbuf, "does not match the file name"));
    assert_int_equal(rename(wrong, path), 0);
    reopen(f);
    assert_int_equal(f->info.last_index, 60);
}

/* A crash during roll leaves <name>.tmp: removed; other files are ignored. */
static void leftover_tmp_is_removed(void **state)
{
    fixture *f = *state;
    build_standard_log(f);
    char tmp[700], other[700];
    snprintf(tmp, sizeof tmp, "%s/0000000000000002-000000000000001f.wal.tmp", ts_wal_dir(f->tmp));
    snprintf(other, sizeof other, "%s/README", ts_wal_dir(f->tmp));
    FILE *fp = fopen(tmp, "w");
    fputs("partial", fp);
    fclose(fp);
    fp = fopen(other, "w");
    fclose(fp);
    reopen(f);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    expect_recovered(f, ENTRIES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(torn_tail_at_every_cut_point, setup, teardown),
        cmocka_unit_test_setup_teardown(cut_inside_segment_header_is_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(zero_and_garbage_tails_are_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_last_record_is_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_record_in_the_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_record_in_a_non_last_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_or_misnamed_segment_is_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(leftover_tmp_is_removed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

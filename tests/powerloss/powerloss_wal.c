/*
 * powerloss_wal write <dir> | check <dir>: the WAL alone under the power-loss
 * shim (test_wal_tail.py runs it).
 *
 *   write  opens a WAL in <dir> with 8 KiB segments, appends SYNCED_ENTRIES
 *          entries and wal_syncs them, then appends TAIL_ENTRIES more (about
 *          16 KiB, several pages, crossing into a new segment) WITHOUT a sync,
 *          and SIGKILLs itself: the synced entries are durable, the tail is not.
 *   check  opens the WAL and replays it; prints one line
 *          "open ok last=N torn=B" or "open failed err=E: <message>";
 *          exits 0 if every synced entry is there with its bytes and the
 *          entries after them are a prefix of the tail (each with its bytes),
 *          1 otherwise.
 */
#include "wal/wal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYNCED_ENTRIES 10
#define TAIL_ENTRIES   48
#define ENTRY_BYTES    300
#define SEGMENT_BYTES  65536

/* Entry i's payload: a byte pattern that depends on i and the offset. */
static void payload(uint64_t index, uint8_t *buf)
{
    for (size_t k = 0; k < ENTRY_BYTES; k++)
        buf[k] = (uint8_t)(index * 31u + k * 7u + 1u);
}

static fl_err append_one(wal *log, uint64_t index)
{
    uint8_t buf[ENTRY_BYTES];
    payload(index, buf);
    wal_entry e = {
        .index = index, .term = 1, .type = WAL_ENTRY_NORMAL, .data = buf, .len = sizeof buf};
    return wal_append_batch(log, &e, 1, NULL);
}

static int do_write(const char *dir)
{
    wal_options opts = {.segment_bytes_max = SEGMENT_BYTES};
    wal *log = NULL;
    char errbuf[512] = "";
    if (wal_open(dir, &opts, &log, NULL, errbuf, sizeof errbuf) != FL_OK) {
        fprintf(stderr, "powerloss_wal: open failed: %s\n", errbuf);
        return 1;
    }
    for (uint64_t i = 1; i <= SYNCED_ENTRIES; i++)
        if (append_one(log, i) != FL_OK || wal_sync(log) != FL_OK) {
            fprintf(stderr, "powerloss_wal: synced append %llu failed\n", (unsigned long long)i);
            return 1;
        }
    /* the tail: one batch per entry (as group commit would), never synced */
    for (uint64_t i = SYNCED_ENTRIES + 1; i <= SYNCED_ENTRIES + TAIL_ENTRIES; i++)
        if (append_one(log, i) != FL_OK) {
            fprintf(stderr, "powerloss_wal: tail append %llu failed\n", (unsigned long long)i);
            return 1;
        }
    kill(getpid(), SIGKILL);
    return 4;
}

typedef struct check_state {
    uint64_t next;
    int bad;
} check_state;

static fl_err visit(void *ctx, const wal_entry *entry)
{
    check_state *st = ctx;
    uint8_t want[ENTRY_BYTES];
    payload(entry->index, want);
    if (entry->index != st->next || entry->len != ENTRY_BYTES ||
        memcmp(entry->data, want, ENTRY_BYTES) != 0) {
        printf("entry %llu: wrong (expected index %llu, len %zu)\n",
               (unsigned long long)entry->index, (unsigned long long)st->next, entry->len);
        st->bad = 1;
    }
    st->next = entry->index + 1;
    return FL_OK;
}

static int do_check(const char *dir)
{
    wal_options opts = {.segment_bytes_max = SEGMENT_BYTES};
    wal *log = NULL;
    wal_recovery_info info = {0};
    char errbuf[512] = "";
    fl_err err = wal_open(dir, &opts, &log, &info, errbuf, sizeof errbuf);
    if (err != FL_OK) {
        printf("open failed err=%s: %s\n", fl_err_name(err), errbuf);
        return 1;
    }
    check_state st = {.next = 1};
    err = wal_replay(log, 0, visit, &st);
    uint64_t last = wal_last_index(log);
    printf("open ok last=%llu torn=%llu\n", (unsigned long long)last,
           (unsigned long long)info.torn_bytes_cut);
    wal_close(log);
    if (err != FL_OK || st.bad || last < SYNCED_ENTRIES || last > SYNCED_ENTRIES + TAIL_ENTRIES) {
        printf("replay err=%s bad=%d last=%llu\n", fl_err_name(err), st.bad,
               (unsigned long long)last);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        return do_write(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check") == 0)
        return do_check(argv[2]);
    fprintf(stderr, "usage: powerloss_wal write|check <dir>\n");
    return 2;
}

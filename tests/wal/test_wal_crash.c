/* wal unit test: a writer process killed (SIGKILL) at random moments while
 * appending, syncing, rolling and releasing; after each kill the log must
 * open, hold every entry the writer had reported synced, and be contiguous
 * and intact. (A process kill keeps the page cache; power loss is covered by
 * the torn-tail tests in test_wal_recovery.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal_test_support.h"

#define ROUNDS                20
#define MIN_ENTRIES_PER_ROUND 20

/* The child: append batches until killed, reporting each synced index on
 * the pipe. Never returns. */
static void writer(const char *dir, int report_fd, unsigned seed)
{
    wal_options options = {.segment_bytes_max = 16u << 10};
    wal *log;
    wal_recovery_info info;
    if (wal_open(dir, &options, &log, &info, NULL, 0) != FL_OK)
        _exit(3);
    uint64_t next = wal_last_index(log) + 1;
    for (int batch = 0; batch < 1000000; batch++) {
        seed = seed * 1103515245u + 12345u;
        uint64_t count = 1 + (seed >> 16) % 40;
        if (ts_append_range(log, next, next + count - 1, 1, NULL) != FL_OK)
            _exit(4);
        if (wal_sync(log) != FL_OK)
            _exit(5);
        next += count;
        uint64_t synced = next - 1;
        if (write(report_fd, &synced, sizeof synced) != (ssize_t)sizeof synced)
            _exit(6);
        if (batch % 25 == 24 && wal_release_up_to(log, synced - 300) != FL_OK)
            _exit(7);
    }
    _exit(0);
}

static void killed_writer_loses_nothing_synced(void **state)
{
    (void)state;
    char *tmp = ts_tmpdir_make();
    const char *dir = ts_wal_dir(tmp);
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    uint64_t acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            writer(dir, fds[1], (unsigned)rand());
        }
        close(fds[1]);
        /* Progress is not left to timing on a loaded machine: every round
         * waits until the writer has synced some entries past where it
         * started, then kills it at a random moment after that. */
        uint64_t synced;
        uint64_t progress_min = acked + MIN_ENTRIES_PER_ROUND;
        do {
            if (read(fds[0], &synced, sizeof synced) != (ssize_t)sizeof synced)
                fail_msg("round %d: writer died before syncing (seed %u)", round, seed);
            acked = synced;
        } while (synced < progress_min);
        usleep((useconds_t)(rand() % 25000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("writer exited with %d (seed %u)", WEXITSTATUS(status), seed);
        while (read(fds[0], &synced, sizeof synced) == (ssize_t)sizeof synced)
            acked = synced;
        close(fds[0]);

        wal *log;
        wal_recovery_info info;
        char errbuf[512];
        fl_err err = wal_open(dir, NULL, &log, &info, errbuf, sizeof errbuf);
        if (err != FL_OK)
            fail_msg("round %d: open: %s: %s (seed %u)", round, fl_err_name(err), errbuf, seed);
        assert_true(info.last_index >= acked);
        ts_collected *c;
        assert_int_equal(ts_replay(log, 0, &c), FL_OK);
        if (info.last_index == 0) /* killed before its first append */
            assert_int_equal(c->count, 0);
        else
            ts_expect_range(c, info.first_index, info.last_index, 1);
        free(c);
        acked = info.last_index; /* the next writer continues from here */
        wal_close(log);
    }
    /* The writers got far enough to roll and release segments. */
    print_message("%d kills, last index %llu, seed %u\n", ROUNDS, (unsigned long long)acked, seed);
    assert_true(acked > 300);
    ts_tmpdir_remove(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(killed_writer_loses_nothing_synced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

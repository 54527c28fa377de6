/*
 * powerloss_scenario <name> <root>: one write/sync pattern under <root>, run
 * by test_shim.py under libflpowerloss.so. Each scenario ends by SIGKILLing
 * itself (a crash: the page cache keeps every write), so what a power loss
 * would take away is only what the shim's journal says. test_shim.py knows
 * the bytes each scenario leaves and checks them after powerloss_restore.
 * Any failing call exits 1 with the call named (the shim must not change
 * results).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE                  4096
#define THREADS               4
#define THREAD_RECORDS        200
#define THREAD_SYNC_EVERY     10
#define THREAD_RECORDS_SYNCED 190 /* syncs after records 10, 20, ..., 190 */
#define THREAD_RECORD_BYTES   100
#define CONCURRENT_RECORDS    4000
#define CONCURRENT_SYNC_UNTIL 2000

static const char *g_root;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "powerloss_scenario: %s failed: %s\n", what, strerror(errno));
        exit(1);
    }
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_root, name);
}

static int open_in_root(const char *name, int flags)
{
    char path[4096];
    path_of(path, sizeof path, name);
    int fd = open(path, flags | O_CLOEXEC, 0644);
    check(fd >= 0, name);
    return fd;
}

static void fill(int fd, char byte, size_t len, off_t offset)
{
    char buf[PAGE * 3];
    check(len <= sizeof buf, "fill size");
    memset(buf, byte, len);
    check(pwrite(fd, buf, len, offset) == (ssize_t)len, "pwrite");
}

static void sync_root(void)
{
    int fd = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    check(fd >= 0 && fsync(fd) == 0, "fsync(root)");
    close(fd);
}

/* A file with durable content 'len' bytes of 'byte', its entry durable too. */
static int durable_file(const char *name, char byte, size_t len)
{
    int fd = open_in_root(name, O_RDWR | O_CREAT | O_TRUNC);
    fill(fd, byte, len, 0);
    check(fsync(fd) == 0, "fsync");
    sync_root();
    return fd;
}

/* 3 durable pages of 'A', then unsynced: page 1 partly 'B', a new page 5 of
 * 'C' (file grows to 6 pages), 10 'D' + 10 'E' at offset 0 through writev. */
static void scenario_pages(int sync_at_end)
{
    int fd = durable_file("a", 'A', 3 * PAGE);
    fill(fd, 'B', 100, PAGE + 10);
    fill(fd, 'C', PAGE, 5 * PAGE);
    char d[10], e[10];
    memset(d, 'D', sizeof d);
    memset(e, 'E', sizeof e);
    struct iovec iov[2] = {{d, sizeof d}, {e, sizeof e}};
    check(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    check(writev(fd, iov, 2) == 20, "writev");
    if (sync_at_end)
        check(fdatasync(fd) == 0, "fdatasync");
}

/* b: created, data fdatasynced, its dir never fsynced. */
static void scenario_newfile(void)
{
    int fd = open_in_root("b", O_RDWR | O_CREAT | O_EXCL);
    check(write(fd, "hello", 5) == 5, "write");
    check(fdatasync(fd) == 0, "fdatasync");
}

/* c.tmp durable, renamed to c; d ("old") durable, replaced by d.tmp ("new");
 * the renames are not followed by a dir fsync. */
static void scenario_rename(void)
{
    char from[4096], to[4096];
    close(durable_file("c.tmp", 'c', 10));
    close(durable_file("d", 'o', 3));
    close(durable_file("d.tmp", 'n', 5));
    path_of(from, sizeof from, "c.tmp");
    path_of(to, sizeof to, "c");
    check(rename(from, to) == 0, "rename c");
    path_of(from, sizeof from, "d.tmp");
    path_of(to, sizeof to, "d");
    check(rename(from, to) == 0, "rename d");
}

/* f unlinked and the dir fsynced; then e unlinked without a dir fsync. */
static void scenario_unlink(void)
{
    char path[4096];
    close(durable_file("e", 'e', 6000));
    close(durable_file("f", 'f', 10));
    int dir = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    check(dir >= 0, "open root");
    check(unlinkat(dir, "f", 0) == 0, "unlinkat f");
    check(fsync(dir) == 0, "fsync dir");
    path_of(path, sizeof path, "e");
    check(unlink(path) == 0, "unlink e");
}

/* g: 3 durable pages cut to 100 bytes; h: 5000 durable bytes reopened O_TRUNC. */
static void scenario_truncate(void)
{
    int g = durable_file("g", 'G', 3 * PAGE);
    check(ftruncate(g, 100) == 0, "ftruncate");
    close(durable_file("h", 'H', 5000));
    int h = open_in_root("h", O_WRONLY | O_TRUNC);
    check(write(h, "x", 1) == 1, "write h");
}

/* sub/ made and synced inside, but the root never fsynced after mkdir. */
static void scenario_subdir(void)
{
    char path[4096];
    path_of(path, sizeof path, "sub");
    check(mkdir(path, 0755) == 0, "mkdir");
    int fd = open_in_root("sub/x", O_RDWR | O_CREAT);
    check(write(fd, "x", 1) == 1 && fsync(fd) == 0, "write+fsync sub/x");
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    check(dir >= 0 && fsync(dir) == 0, "fsync sub");
}

/* Must abort inside the shim: writable shared maps cannot be journaled. */
static void scenario_mmap(void)
{
    int fd = open_in_root("m", O_RDWR | O_CREAT);
    check(ftruncate(fd, PAGE) == 0, "ftruncate");
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(p != MAP_FAILED, "mmap");
    memset(p, 'M', PAGE);
    fprintf(stderr, "powerloss_scenario: mmap was allowed\n");
    exit(3);
}

static void *thread_main(void *arg)
{
    int id = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "t%d", id);
    int fd = open_in_root(name, O_RDWR | O_CREAT);
    for (int k = 0; k < THREAD_RECORDS; k++) {
        char rec[THREAD_RECORD_BYTES];
        memset(rec, 'a' + (k % 26), sizeof rec);
        snprintf(rec, sizeof rec, "t%d-%d", id, k); /* NUL-terminated prefix */
        check(pwrite(fd, rec, sizeof rec, (off_t)k * (off_t)sizeof rec) == (ssize_t)sizeof rec,
              "pwrite t");
        if ((k + 1) % THREAD_SYNC_EVERY == 0 && k + 1 <= THREAD_RECORDS_SYNCED)
            check(fdatasync(fd) == 0, "fdatasync t");
    }
    return NULL;
}

/* w: 2 durable pages of 'W' rewritten through a write-only descriptor (the
 * shim must reopen it to read the pre-image). */
static void scenario_wronly(void)
{
    close(durable_file("w", 'W', 2 * PAGE));
    int fd = open_in_root("w", O_WRONLY);
    fill(fd, 'X', 10, PAGE - 5); /* straddles pages 0 and 1 */
}

static int g_written; /* records the writer has finished (atomic) */

static void *concurrent_writer(void *arg)
{
    int fd = *(int *)arg;
    for (int k = 0; k < CONCURRENT_RECORDS; k++) {
        char rec[THREAD_RECORD_BYTES];
        memset(rec, '.', sizeof rec);
        snprintf(rec, sizeof rec, "c-%d", k);
        check(pwrite(fd, rec, sizeof rec, (off_t)k * (off_t)sizeof rec) == (ssize_t)sizeof rec,
              "pwrite c");
        __atomic_store_n(&g_written, k + 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* One thread writes records to "conc" while this one fdatasyncs it again
 * and again until CONCURRENT_SYNC_UNTIL records are written; after each
 * successful sync it notes in <root>.synced (outside the root, so the power
 * loss keeps it) how many records were complete before the sync began.
 * After a drop the file must hold exactly a prefix of whole records, at
 * least as long as the last note and shorter than everything written. */
static void scenario_concurrent(void)
{
    int fd = open_in_root("conc", O_RDWR | O_CREAT);
    sync_root();
    char note_path[4096];
    snprintf(note_path, sizeof note_path, "%s.synced", g_root);
    int note = open(note_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check(note >= 0, "open note");
    pthread_t writer;
    check(pthread_create(&writer, NULL, concurrent_writer, &fd) == 0, "pthread_create");
    for (;;) {
        int before = __atomic_load_n(&g_written, __ATOMIC_SEQ_CST);
        if (before >= CONCURRENT_SYNC_UNTIL)
            break;
        check(fdatasync(fd) == 0, "fdatasync conc");
        char text[32];
        int n = snprintf(text, sizeof text, "%010d\n", before);
        check(pwrite(note, text, (size_t)n, 0) == n, "write note");
    }
    pthread_join(writer, NULL);
}

/* Four threads, one file each, writing and syncing at once: after a drop each
 * file holds exactly its first THREAD_RECORDS_SYNCED records. */
static void scenario_threads(void)
{
    pthread_t threads[THREADS];
    for (long k = 0; k < THREADS; k++) {
        char name[16];
        snprintf(name, sizeof name, "t%ld", k);
        close(open_in_root(name, O_RDWR | O_CREAT));
    }
    sync_root();
    for (long k = 0; k < THREADS; k++)
        check(pthread_create(&threads[k], NULL, thread_main, (void *)k) == 0, "pthread_create");
    for (int k = 0; k < THREADS; k++)
        pthread_join(threads[k], NULL);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: powerloss_scenario <name> <root>\n");
        return 2;
    }
    const char *name = argv[1];
    g_root = argv[2];
    if (strcmp(name, "pages") == 0)
        scenario_pages(0);
    else if (strcmp(name, "synced") == 0)
        scenario_pages(1);
    else if (strcmp(name, "newfile") == 0)
        scenario_newfile();
    else if (strcmp(name, "rename") == 0)
        scenario_rename();
    else if (strcmp(name, "unlink") == 0)
        scenario_unlink();
    else if (strcmp(name, "truncate") == 0)
        scenario_truncate();
    else if (strcmp(name, "subdir") == 0)
        scenario_subdir();
    else if (strcmp(name, "mmap") == 0)
        scenario_mmap();
    else if (strcmp(name, "threads") == 0)
        scenario_threads();
    else if (strcmp(name, "wronly") == 0)
        scenario_wronly();
    else if (strcmp(name, "concurrent") == 0)
        scenario_concurrent();
    else {
        fprintf(stderr, "powerloss_scenario: unknown scenario %s\n", name);
        return 2;
    }
    /* A crash, not an exit: nothing gets a chance to flush or sync. */
    kill(getpid(), SIGKILL);
    return 4;
}

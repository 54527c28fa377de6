/*
 * The shim's state: configuration from the environment, the fd and file
 * tables, dirty-page sets and the journal. Everything here runs with pl_lock
 * held (except the constructor, which runs before any other thread exists)
 * and calls only the real libc functions, never the interposed ones, so a
 * journal write can never re-enter the shim.
 */
#include "shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds: the file table and each page set grow by doubling up to these. */
#define PL_FILES_MAX  65536
#define PL_PAGES_MAX  (1u << 24) /* 64 GiB of dirty pages per file */
#define PL_IGNORE_MAX 8

typedef struct pl_fd_entry {
    pl_file *file;   /* tracked regular file, or NULL */
    bool dir;        /* a tracked directory */
    bool sync_write; /* opened O_SYNC/O_DSYNC/O_DIRECT: writes are not modelled */
    /* identity when tracked, to catch a descriptor closed behind the shim's
     * back (close_range, libc-internal closes) and its number reused */
    dev_t dev;
    ino_t ino;
} pl_fd_entry;

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_sync_done = PTHREAD_COND_INITIALIZER;
static bool g_active;
static char g_root[PL_PATH_BYTES_MAX];
static size_t g_root_len;
static char g_grave_dir[PL_PATH_BYTES_MAX + 16];
static char g_ignore[PL_IGNORE_MAX][64];
static size_t g_ignore_count;
static int g_journal_fd = -1;
static uint64_t g_seq; /* seq of the last record written */
static pl_fd_entry g_fds[PL_FD_MAX];
/* Ownership: the table and every pl_file in it live until the process exits
 * (inodes stay alive through the graveyard, so identities are never reused). */
static pl_file **g_files;
static size_t g_files_count, g_files_cap;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static int (*real_open)(const char *, int, ...);
static int (*real_close)(int);
static int (*real_mkdir)(const char *, mode_t);

_Noreturn void pl_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "flpowerloss: FATAL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (the power-loss model cannot record this; see docs/testing-durability.md)\n");
    va_end(ap);
    abort();
}

void *pl_real(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (fn == NULL)
        pl_die("dlsym(RTLD_NEXT, %s) found nothing", name);
    return fn;
}

bool pl_active(void)
{
    return g_active;
}
void pl_lock(void)
{
    pthread_mutex_lock(&g_mutex);
}
void pl_unlock(void)
{
    pthread_mutex_unlock(&g_mutex);
}
void pl_wait_sync(void)
{
    pthread_cond_wait(&g_sync_done, &g_mutex);
}
void pl_signal_sync(void)
{
    pthread_cond_broadcast(&g_sync_done);
}

/* --- paths --- */

/* Rewrites an absolute path in place without ".", ".." or repeated slashes. */
static void normalize(char *path)
{
    char *out = path;
    const char *in = path;
    while (*in) {
        while (*in == '/')
            in++;
        const char *end = strchr(in, '/');
        size_t len = end ? (size_t)(end - in) : strlen(in);
        if (len == 0)
            break;
        if (len == 1 && in[0] == '.') {
            /* skip */
        } else if (len == 2 && in[0] == '.' && in[1] == '.') {
            while (out > path && *--out != '/') {
            }
        } else {
            *out++ = '/';
            memmove(out, in, len);
            out += len;
        }
        in += len;
    }
    if (out == path)
        *out++ = '/';
    *out = '\0';
}

bool pl_resolve(int dirfd, const char *path, char out[PL_PATH_BYTES_MAX])
{
    char base[PL_PATH_BYTES_MAX];
    if (path == NULL)
        return false;
    if (path[0] == '/') {
        base[0] = '\0';
    } else if (dirfd == AT_FDCWD) {
        if (getcwd(base, sizeof base) == NULL)
            return false;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n <= 0)
            return false;
        base[n] = '\0';
    }
    int n = snprintf(out, PL_PATH_BYTES_MAX, "%s/%s", base, path);
    if (n < 0 || n >= PL_PATH_BYTES_MAX)
        return false;
    normalize(out);
    return true;
}

bool pl_tracked_path(const char *abs)
{
    if (!g_active || strncmp(abs, g_root, g_root_len) != 0)
        return false;
    if (abs[g_root_len] != '\0' && abs[g_root_len] != '/')
        return false;
    const char *slash = strrchr(abs, '/');
    const char *name = slash ? slash + 1 : abs;
    for (size_t k = 0; k < g_ignore_count; k++)
        if (strcmp(name, g_ignore[k]) == 0)
            return false;
    return true;
}

bool pl_tracked_entry(const char *abs)
{
    return pl_tracked_path(abs) && abs[g_root_len] == '/';
}

uint64_t pl_parent_ino(const char *abs)
{
    char parent[PL_PATH_BYTES_MAX];
    snprintf(parent, sizeof parent, "%s", abs);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        return 0;
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    return stat(parent, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* --- fd and file tables --- */

static pl_fd_entry *fd_entry(int fd)
{
    return fd >= 0 && fd < PL_FD_MAX ? &g_fds[fd] : NULL;
}

/* The entry of a tracked fd, or NULL; an entry whose descriptor now names
 * another object is forgotten. Untracked descriptors cost no system call. */
static pl_fd_entry *fd_tracked(int fd)
{
    pl_fd_entry *e = fd_entry(fd);
    if (e == NULL || (e->file == NULL && !e->dir))
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != e->dev || st.st_ino != e->ino) {
        *e = (pl_fd_entry){0};
        return NULL;
    }
    return e;
}

pl_file *pl_fd_file(int fd)
{
    pl_fd_entry *e = fd_tracked(fd);
    return e ? e->file : NULL;
}

bool pl_fd_is_dir(int fd)
{
    pl_fd_entry *e = fd_tracked(fd);
    return e && e->dir;
}

bool pl_fd_is_sync_write(int fd)
{
    pl_fd_entry *e = fd_tracked(fd);
    return e && e->sync_write;
}

void pl_fd_track(int fd, const char *abs, int open_flags)
{
    pl_fd_entry *e = fd_entry(fd);
    if (e == NULL)
        pl_die("descriptor %d for %s is above the shim's table (%d)", fd, abs, PL_FD_MAX);
    struct stat st;
    if (fstat(fd, &st) != 0)
        pl_die("fstat(%d) for %s failed: %s", fd, abs, strerror(errno));
    *e = (pl_fd_entry){.dev = st.st_dev, .ino = st.st_ino};
    if (S_ISDIR(st.st_mode)) {
        e->dir = true;
    } else if (S_ISREG(st.st_mode)) {
        e->file = pl_file_get(st.st_dev, st.st_ino, (uint64_t)st.st_size);
        e->sync_write = (open_flags & (O_SYNC | O_DSYNC | O_DIRECT)) != 0;
    }
}

void pl_fd_forget(int fd)
{
    pl_fd_entry *e = fd_entry(fd);
    if (e)
        *e = (pl_fd_entry){0};
}

void pl_fd_copy(int from, int to)
{
    pl_fd_entry *src = fd_entry(from), *dst = fd_entry(to);
    if (dst)
        *dst = src ? *src : (pl_fd_entry){0};
}

pl_file *pl_file_get(dev_t dev, ino_t ino, uint64_t size)
{
    for (size_t k = 0; k < g_files_count; k++)
        if (g_files[k]->dev == dev && g_files[k]->ino == ino)
            return g_files[k];
    if (g_files_count == g_files_cap) {
        size_t cap = g_files_cap ? g_files_cap * 2 : 64;
        if (cap > PL_FILES_MAX)
            pl_die("more than %d tracked files", PL_FILES_MAX);
        pl_file **grown = realloc(g_files, cap * sizeof *grown);
        if (grown == NULL)
            pl_die("out of memory for the file table");
        g_files = grown;
        g_files_cap = cap;
    }
    /* Ownership: the table owns it until exit. */
    pl_file *f = calloc(1, sizeof *f);
    if (f == NULL)
        pl_die("out of memory for a file");
    f->dev = dev;
    f->ino = ino;
    f->durable_size = size; /* at process start, what is on disk counts as durable */
    g_files[g_files_count++] = f;
    return f;
}

/* Adds page to f's dirty set; false if it was already there. */
static bool page_add(pl_file *f, uint64_t page)
{
    if ((f->pages_count + 1) * 2 > f->pages_cap) {
        size_t cap = f->pages_cap ? f->pages_cap * 2 : 256;
        if (cap > PL_PAGES_MAX * 2)
            pl_die("more than %u dirty pages in one file", PL_PAGES_MAX);
        uint64_t *grown = calloc(cap, sizeof *grown);
        if (grown == NULL)
            pl_die("out of memory for a page set");
        for (size_t k = 0; k < f->pages_cap; k++) {
            uint64_t key = f->pages[k];
            if (key == 0)
                continue;
            size_t slot = (size_t)(key * 0x9e3779b97f4a7c15ull) & (cap - 1);
            while (grown[slot] != 0)
                slot = (slot + 1) & (cap - 1);
            grown[slot] = key;
        }
        free(f->pages);
        f->pages = grown;
        f->pages_cap = cap;
    }
    uint64_t key = page + 1;
    size_t slot = (size_t)(key * 0x9e3779b97f4a7c15ull) & (f->pages_cap - 1);
    while (f->pages[slot] != 0) {
        if (f->pages[slot] == key)
            return false;
        slot = (slot + 1) & (f->pages_cap - 1);
    }
    f->pages[slot] = key;
    f->pages_count++;
    return true;
}

/* --- journal --- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

/* Appends one record with one write(): records never interleave, even with
 * another process appending to the same journal. */
static void journal(uint32_t type, uint64_t dev, uint64_t ino, uint64_t a, uint64_t b,
                    const char *path, size_t path_len, const void *data, size_t data_len)
{
    unsigned char buf[PL_RECORD_HEADER_BYTES + 2 * PL_PATH_BYTES_MAX + PL_PAGE_BYTES];
    if (path_len > 2 * PL_PATH_BYTES_MAX || data_len > PL_PAGE_BYTES)
        pl_die("journal record too large (path %zu, data %zu)", path_len, data_len);
    g_seq++;
    put_u32(buf, PL_JOURNAL_MAGIC);
    put_u32(buf + 4, type);
    put_u64(buf + 8, g_seq);
    put_u64(buf + 16, dev);
    put_u64(buf + 24, ino);
    put_u64(buf + 32, a);
    put_u64(buf + 40, b);
    put_u32(buf + 48, (uint32_t)path_len);
    put_u32(buf + 52, (uint32_t)data_len);
    if (path_len)
        memcpy(buf + PL_RECORD_HEADER_BYTES, path, path_len);
    if (data_len)
        memcpy(buf + PL_RECORD_HEADER_BYTES + path_len, data, data_len);
    size_t total = PL_RECORD_HEADER_BYTES + path_len + data_len;
    ssize_t n = real_write(g_journal_fd, buf, total);
    if (n != (ssize_t)total)
        pl_die("journal write failed (%zd of %zu bytes): %s", n, total, strerror(errno));
}

uint64_t pl_next_seq(void)
{
    return g_seq + 1;
}

/* Reads the durable bytes of page into buf through fd (or a fresh read-only
 * descriptor when fd was opened write-only); returns how many. */
static size_t read_page(pl_file *f, int fd, uint64_t page, size_t want, unsigned char *buf)
{
    off_t offset = (off_t)(page * PL_PAGE_BYTES);
    ssize_t n = fd >= 0 ? real_pread(fd, buf, want, offset) : -1;
    if (n < 0) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        int rfd = real_open(link, O_RDONLY | O_CLOEXEC);
        if (rfd < 0)
            pl_die("cannot reopen fd %d of inode %llu to read a pre-image: %s", fd,
                   (unsigned long long)f->ino, strerror(errno));
        n = real_pread(rfd, buf, want, offset);
        real_close(rfd);
    }
    if (n < 0)
        pl_die("pre-image read of inode %llu page %llu failed: %s", (unsigned long long)f->ino,
               (unsigned long long)page, strerror(errno));
    /* Shorter than the durable size says: the file was changed behind the
     * shim's back; the missing bytes read as zeros after a power loss too. */
    memset(buf + n, 0, want - (size_t)n);
    return want;
}

void pl_capture(pl_file *f, int fd, uint64_t offset, uint64_t length, const char *why)
{
    if (length == 0)
        return;
    if (!f->dirty) {
        f->dirty = true;
        journal(PL_REC_DIRTY, f->dev, f->ino, 0, f->durable_size, why, strlen(why), NULL, 0);
    }
    uint64_t first = offset / PL_PAGE_BYTES, last = (offset + length - 1) / PL_PAGE_BYTES;
    for (uint64_t page = first; page <= last; page++) {
        if (!page_add(f, page))
            continue;
        uint64_t start = page * PL_PAGE_BYTES;
        if (start >= f->durable_size)
            continue; /* nothing durable there: a power loss leaves a hole or a shorter file */
        size_t want = (size_t)(f->durable_size - start < PL_PAGE_BYTES ? f->durable_size - start
                                                                       : PL_PAGE_BYTES);
        unsigned char buf[PL_PAGE_BYTES];
        size_t n = read_page(f, fd, page, want, buf);
        journal(PL_REC_PREIMAGE, f->dev, f->ino, page, f->durable_size, NULL, 0, buf, n);
    }
}

void pl_synced(pl_file *f, uint64_t size)
{
    if (f->pages_cap)
        memset(f->pages, 0, f->pages_cap * sizeof *f->pages);
    f->pages_count = 0;
    f->dirty = false;
    f->durable_size = size;
    journal(PL_REC_SYNC, f->dev, f->ino, size, 0, NULL, 0, NULL, 0);
}

void pl_journal_create(const char *abs, uint64_t dev, uint64_t ino, bool is_dir)
{
    journal(PL_REC_CREATE, dev, ino, pl_parent_ino(abs), is_dir ? 1 : 0, abs, strlen(abs), NULL, 0);
}

void pl_journal_rename(const char *old_abs, const char *new_abs, uint64_t dev, uint64_t ino,
                       uint64_t old_parent, uint64_t new_parent, const char *replaced_grave)
{
    char both[2 * PL_PATH_BYTES_MAX];
    size_t old_len = strlen(old_abs), new_len = strlen(new_abs);
    memcpy(both, old_abs, old_len + 1);
    memcpy(both + old_len + 1, new_abs, new_len);
    journal(PL_REC_RENAME, dev, ino, old_parent, new_parent, both, old_len + 1 + new_len,
            replaced_grave, strlen(replaced_grave));
}

void pl_journal_unlink(const char *abs, uint64_t dev, uint64_t ino, uint64_t parent,
                       const char *grave)
{
    journal(PL_REC_UNLINK, dev, ino, parent, 0, abs, strlen(abs), grave, strlen(grave));
}

void pl_journal_dirsync(uint64_t dev, uint64_t ino, uint64_t seq_bound)
{
    journal(PL_REC_DIRSYNC, dev, ino, seq_bound, 0, NULL, 0, NULL, 0);
}

void pl_bury(const char *abs, char name[64])
{
    char path[sizeof g_grave_dir + 64];
    snprintf(name, 64, "g%llu", (unsigned long long)pl_next_seq());
    snprintf(path, sizeof path, "%s/%s", g_grave_dir, name);
    if (link(abs, path) != 0) {
        fprintf(stderr,
                "flpowerloss: cannot keep %s in %s (%s): a power loss cannot bring it back\n", abs,
                path, strerror(errno));
        name[0] = '\0';
    }
}

/* --- set-up --- */

__attribute__((constructor)) static void pl_init(void)
{
    real_write = (ssize_t(*)(int, const void *, size_t))pl_real("write");
    real_pread = (ssize_t(*)(int, void *, size_t, off_t))pl_real("pread");
    real_open = (int (*)(const char *, int, ...))pl_real("open");
    real_close = (int (*)(int))pl_real("close");
    real_mkdir = (int (*)(const char *, mode_t))pl_real("mkdir");
    const char *root = getenv("FLOTILLA_POWERLOSS_ROOT");
    const char *journal_path = getenv("FLOTILLA_POWERLOSS_JOURNAL");
    if (root == NULL || root[0] == '\0' || journal_path == NULL || journal_path[0] == '\0')
        return; /* not configured: pass everything through */
    if (!pl_resolve(AT_FDCWD, root, g_root))
        pl_die("cannot resolve FLOTILLA_POWERLOSS_ROOT=%s", root);
    g_root_len = strlen(g_root);
    char journal_abs[PL_PATH_BYTES_MAX];
    if (!pl_resolve(AT_FDCWD, journal_path, journal_abs))
        pl_die("cannot resolve FLOTILLA_POWERLOSS_JOURNAL=%s", journal_path);
    if (strncmp(journal_abs, g_root, g_root_len) == 0 &&
        (journal_abs[g_root_len] == '/' || journal_abs[g_root_len] == '\0'))
        pl_die("the journal %s must be outside the root %s", journal_abs, g_root);
    const char *ignore = getenv("FLOTILLA_POWERLOSS_IGNORE");
    if (ignore == NULL)
        ignore = "lock.mdb"; /* LMDB's reader table: rebuilt at open, mmapped writable */
    for (const char *p = ignore; *p && g_ignore_count < PL_IGNORE_MAX;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < sizeof g_ignore[0]) {
            memcpy(g_ignore[g_ignore_count], p, len);
            g_ignore[g_ignore_count++][len] = '\0';
        }
        p += len + (p[len] == ',');
    }
    g_journal_fd = real_open(journal_abs, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (g_journal_fd < 0)
        pl_die("cannot open the journal %s: %s", journal_abs, strerror(errno));
    /* Seqs must grow across processes appending to one journal: start past
     * the journal's size, since every record is longer than one byte. */
    struct stat st;
    if (fstat(g_journal_fd, &st) != 0)
        pl_die("fstat of the journal failed: %s", strerror(errno));
    g_seq = (uint64_t)st.st_size;
    snprintf(g_grave_dir, sizeof g_grave_dir, "%s.graveyard", journal_abs);
    if (real_mkdir(g_grave_dir, 0700) != 0 && errno != EEXIST)
        pl_die("cannot create %s: %s", g_grave_dir, strerror(errno));
    g_active = true;
}

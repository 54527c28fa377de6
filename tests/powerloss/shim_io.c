/*
 * The interposed libc calls. Each one resolves its real function lazily
 * (dlsym RTLD_NEXT), passes calls on untracked descriptors and paths straight
 * through, and for tracked ones journals under pl_lock around the real call:
 * pre-images before a change, a marker after a successful sync, entry records
 * after a successful create/rename/unlink. errno is what the real call set.
 */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* glibc's fortified entry points (not declared without _FORTIFY_SOURCE). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* The real function, looked up on first use (a call can come before the
 * constructor ran, from another library's constructor). */
static void *real_lookup(void **slot, const char *name)
{
    if (*slot == NULL)
        *slot = pl_real(name);
    return *slot;
}
#define REAL(name) ((__typeof__(real_##name))real_lookup((void **)&real_##name, #name))

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off64_t, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off64_t, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);
static int (*real_msync)(void *, size_t, int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);

/* --- open --- */

/* What an open of a tracked path needs from before the real call. */
typedef struct open_state {
    char abs[PL_PATH_BYTES_MAX];
    bool tracked;
    bool existed;
} open_state;

/* Resolves the path; when tracked, takes pl_lock (released by open_after)
 * and journals the pre-images an O_TRUNC is about to destroy. */
static void open_before(open_state *s, int dirfd, const char *path, int flags)
{
    s->tracked = pl_active() && pl_resolve(dirfd, path, s->abs) && pl_tracked_path(s->abs);
    if (!s->tracked)
        return;
    pl_lock();
    struct stat st;
    s->existed = lstat(s->abs, &st) == 0;
    bool writes = (flags & O_ACCMODE) != O_RDONLY;
    if (s->existed && S_ISREG(st.st_mode) && writes && (flags & O_TRUNC) && st.st_size > 0) {
        pl_file *f = pl_file_get(st.st_dev, st.st_ino, (uint64_t)st.st_size);
        while (f->syncing)
            pl_wait_sync();
        int rfd = REAL(open)(s->abs, O_RDONLY | O_CLOEXEC);
        if (rfd < 0)
            pl_die("cannot read %s before O_TRUNC: %s", s->abs, strerror(errno));
        pl_capture(f, rfd, 0, (uint64_t)st.st_size, "open O_TRUNC");
        REAL(close)(rfd);
    }
}

static int open_after(open_state *s, int fd, int flags)
{
    if (!s->tracked)
        return fd;
    int saved = errno;
    if (fd >= 0) {
        pl_fd_track(fd, s->abs, flags);
        if (!s->existed && pl_tracked_entry(s->abs)) {
            struct stat st;
            if (fstat(fd, &st) != 0)
                pl_die("fstat of new %s failed", s->abs);
            pl_journal_create(s->abs, st.st_dev, st.st_ino, S_ISDIR(st.st_mode));
        }
    }
    pl_unlock();
    errno = saved;
    return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, unsigned int) : 0;
}

#define DEFINE_OPEN(name)                                                                          \
    int name(const char *path, int flags, ...)                                                     \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = open_mode(flags, ap);                                                        \
        va_end(ap);                                                                                \
        open_state s;                                                                              \
        open_before(&s, AT_FDCWD, path, flags);                                                    \
        return open_after(&s, REAL(name)(path, flags, mode), flags);                               \
    }
DEFINE_OPEN(open)
DEFINE_OPEN(open64)

#define DEFINE_OPENAT(name)                                                                        \
    int name(int dirfd, const char *path, int flags, ...)                                          \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = open_mode(flags, ap);                                                        \
        va_end(ap);                                                                                \
        open_state s;                                                                              \
        open_before(&s, dirfd, path, flags);                                                       \
        return open_after(&s, REAL(name)(dirfd, path, flags, mode), flags);                        \
    }
DEFINE_OPENAT(openat)
DEFINE_OPENAT(openat64)

#define DEFINE_OPEN_2(name)                                                                        \
    int name(const char *path, int flags)                                                          \
    {                                                                                              \
        open_state s;                                                                              \
        open_before(&s, AT_FDCWD, path, flags);                                                    \
        return open_after(&s, REAL(name)(path, flags), flags);                                     \
    }
DEFINE_OPEN_2(__open_2)
DEFINE_OPEN_2(__open64_2)

#define DEFINE_OPENAT_2(name)                                                                      \
    int name(int dirfd, const char *path, int flags)                                               \
    {                                                                                              \
        open_state s;                                                                              \
        open_before(&s, dirfd, path, flags);                                                       \
        return open_after(&s, REAL(name)(dirfd, path, flags), flags);                              \
    }
DEFINE_OPENAT_2(__openat_2)
DEFINE_OPENAT_2(__openat64_2)

#define DEFINE_CREAT(name)                                                                         \
    int name(const char *path, mode_t mode)                                                        \
    {                                                                                              \
        int flags = O_CREAT | O_WRONLY | O_TRUNC;                                                  \
        open_state s;                                                                              \
        open_before(&s, AT_FDCWD, path, flags);                                                    \
        return open_after(&s, REAL(name)(path, mode), flags);                                      \
    }
DEFINE_CREAT(creat)
DEFINE_CREAT(creat64)

/* glibc's stdio writes through internal calls the shim never sees. */
#define DEFINE_FOPEN(name)                                                                         \
    FILE *name(const char *path, const char *mode)                                                 \
    {                                                                                              \
        char abs[PL_PATH_BYTES_MAX];                                                               \
        if (pl_active() && strpbrk(mode, "wa+") && pl_resolve(AT_FDCWD, path, abs) &&              \
            pl_tracked_path(abs))                                                                  \
            pl_die("%s(%s, \"%s\"): stdio writes to a tracked file are not seen", #name, abs,      \
                   mode);                                                                          \
        return REAL(name)(path, mode);                                                             \
    }
DEFINE_FOPEN(fopen)
DEFINE_FOPEN(fopen64)

/* --- writes --- */

/* Takes pl_lock if fd is a tracked file and waits out a sync of it; returns
 * the file (lock held) or NULL (lock not held). */
static pl_file *write_begin(int fd, const char *call)
{
    if (!pl_active())
        return NULL;
    pl_lock();
    pl_file *f = pl_fd_file(fd);
    if (f == NULL) {
        pl_unlock();
        return NULL;
    }
    if (pl_fd_is_sync_write(fd))
        pl_die("%s on fd %d opened O_SYNC/O_DSYNC/O_DIRECT", call, fd);
    while (f->syncing)
        pl_wait_sync();
    return f;
}

static void write_end(void)
{
    int saved = errno;
    pl_unlock();
    errno = saved;
}

/* Where a write at the current position lands (for O_APPEND: the end). */
static uint64_t current_offset(int fd)
{
    if (fcntl(fd, F_GETFL) & O_APPEND) {
        struct stat st;
        return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    off_t at = lseek(fd, 0, SEEK_CUR);
    return at < 0 ? 0 : (uint64_t)at;
}

static uint64_t iov_bytes(const struct iovec *iov, int count)
{
    uint64_t total = 0;
    for (int k = 0; k < count && iov; k++)
        total += iov[k].iov_len;
    return total;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    pl_file *f = write_begin(fd, "write");
    if (f == NULL)
        return REAL(write)(fd, buf, count);
    pl_capture(f, fd, current_offset(fd), count, "write");
    ssize_t n = REAL(write)(fd, buf, count);
    write_end();
    return n;
}

#define DEFINE_PWRITE(name, off_type)                                                              \
    ssize_t name(int fd, const void *buf, size_t count, off_type offset)                           \
    {                                                                                              \
        pl_file *f = write_begin(fd, #name);                                                       \
        if (f == NULL)                                                                             \
            return REAL(name)(fd, buf, count, offset);                                             \
        if (offset >= 0)                                                                           \
            pl_capture(f, fd, (uint64_t)offset, count, #name);                                     \
        ssize_t n = REAL(name)(fd, buf, count, offset);                                            \
        write_end();                                                                               \
        return n;                                                                                  \
    }
DEFINE_PWRITE(pwrite, off_t)
DEFINE_PWRITE(pwrite64, off64_t)

ssize_t writev(int fd, const struct iovec *iov, int count)
{
    pl_file *f = write_begin(fd, "writev");
    if (f == NULL)
        return REAL(writev)(fd, iov, count);
    pl_capture(f, fd, current_offset(fd), iov_bytes(iov, count), "writev");
    ssize_t n = REAL(writev)(fd, iov, count);
    write_end();
    return n;
}

#define DEFINE_PWRITEV(name, off_type)                                                             \
    ssize_t name(int fd, const struct iovec *iov, int count, off_type offset)                      \
    {                                                                                              \
        pl_file *f = write_begin(fd, #name);                                                       \
        if (f == NULL)                                                                             \
            return REAL(name)(fd, iov, count, offset);                                             \
        if (offset >= 0)                                                                           \
            pl_capture(f, fd, (uint64_t)offset, iov_bytes(iov, count), #name);                     \
        ssize_t n = REAL(name)(fd, iov, count, offset);                                            \
        write_end();                                                                               \
        return n;                                                                                  \
    }
DEFINE_PWRITEV(pwritev, off_t)
DEFINE_PWRITEV(pwritev64, off64_t)

#define DEFINE_PWRITEV2(name, off_type)                                                            \
    ssize_t name(int fd, const struct iovec *iov, int count, off_type offset, int flags)           \
    {                                                                                              \
        pl_file *f = write_begin(fd, #name);                                                       \
        if (f == NULL)                                                                             \
            return REAL(name)(fd, iov, count, offset, flags);                                      \
        if (flags & (RWF_DSYNC | RWF_SYNC))                                                        \
            pl_die("%s with RWF_DSYNC/RWF_SYNC on fd %d", #name, fd);                              \
        uint64_t at = offset == -1 ? current_offset(fd) : (uint64_t)offset;                        \
        if (flags & RWF_APPEND) {                                                                  \
            struct stat st;                                                                        \
            at = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : at;                                  \
        }                                                                                          \
        pl_capture(f, fd, at, iov_bytes(iov, count), #name);                                       \
        ssize_t n = REAL(name)(fd, iov, count, offset, flags);                                     \
        write_end();                                                                               \
        return n;                                                                                  \
    }
DEFINE_PWRITEV2(pwritev2, off_t)
DEFINE_PWRITEV2(pwritev64v2, off64_t)

/* A size change: pages between the old and the new end change (cut, or
 * zeros appear), so both directions are journaled. */
#define DEFINE_FTRUNCATE(name, off_type)                                                           \
    int name(int fd, off_type length)                                                              \
    {                                                                                              \
        pl_file *f = write_begin(fd, #name);                                                       \
        if (f == NULL)                                                                             \
            return REAL(name)(fd, length);                                                         \
        struct stat st;                                                                            \
        if (length >= 0 && fstat(fd, &st) == 0) {                                                  \
            uint64_t now = (uint64_t)st.st_size, want = (uint64_t)length;                          \
            uint64_t low = now < want ? now : want, high = now < want ? want : now;                \
            pl_capture(f, fd, low, high - low, #name);                                             \
        }                                                                                          \
        int rc = REAL(name)(fd, length);                                                           \
        write_end();                                                                               \
        return rc;                                                                                 \
    }
DEFINE_FTRUNCATE(ftruncate, off_t)
DEFINE_FTRUNCATE(ftruncate64, off64_t)

#define DEFINE_FALLOCATE(name, off_type)                                                           \
    int name(int fd, int mode, off_type offset, off_type length)                                   \
    {                                                                                              \
        pl_file *f = write_begin(fd, #name);                                                       \
        if (f == NULL)                                                                             \
            return REAL(name)(fd, mode, offset, length);                                           \
        uint64_t end = (uint64_t)offset + (uint64_t)length;                                        \
        if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {                          \
            struct stat st; /* everything after offset moves */                                    \
            if (fstat(fd, &st) == 0)                                                               \
                end = (uint64_t)st.st_size + (uint64_t)length;                                     \
        }                                                                                          \
        if (offset >= 0 && length > 0)                                                             \
            pl_capture(f, fd, (uint64_t)offset, end - (uint64_t)offset, #name);                    \
        int rc = REAL(name)(fd, mode, offset, length);                                             \
        write_end();                                                                               \
        return rc;                                                                                 \
    }
DEFINE_FALLOCATE(fallocate, off_t)
DEFINE_FALLOCATE(fallocate64, off64_t)

/* --- syncs --- */

/* fsync and fdatasync both make a file's data and size durable; for a
 * directory, fsync makes its entries durable. */
static int sync_common(int fd, int (*real)(int))
{
    if (!pl_active())
        return real(fd);
    pl_lock();
    if (pl_fd_is_dir(fd)) {
        uint64_t bound = pl_next_seq();
        pl_unlock();
        int rc = real(fd);
        int saved = errno;
        struct stat st;
        if (rc == 0 && fstat(fd, &st) == 0) {
            pl_lock();
            pl_journal_dirsync(st.st_dev, st.st_ino, bound);
            pl_unlock();
        }
        errno = saved;
        return rc;
    }
    pl_file *f = pl_fd_file(fd);
    if (f == NULL) {
        pl_unlock();
        return real(fd);
    }
    while (f->syncing)
        pl_wait_sync();
    struct stat st;
    uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : f->durable_size;
    f->syncing = true; /* writes to f wait until this sync is recorded */
    pl_unlock();
    int rc = real(fd);
    int saved = errno;
    pl_lock();
    f->syncing = false;
    if (rc == 0)
        pl_synced(f, size);
    pl_signal_sync();
    pl_unlock();
    errno = saved;
    return rc;
}

int fsync(int fd)
{
    return sync_common(fd, REAL(fsync));
}
int fdatasync(int fd)
{
    return sync_common(fd, REAL(fdatasync));
}

/* Starts writeback only: no metadata, no disk cache flush, so nothing it
 * touches counts as durable. Interposed to say so, not to record. */
int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
    return REAL(sync_file_range)(fd, offset, nbytes, flags);
}

/* msync only matters for writable shared mappings, which mmap refuses for
 * tracked files; so it passes through. */
int msync(void *addr, size_t length, int flags)
{
    return REAL(msync)(addr, length, flags);
}

#define DEFINE_MMAP(name, off_type)                                                                \
    void *name(void *addr, size_t length, int prot, int flags, int fd, off_type offset)            \
    {                                                                                              \
        if (pl_active() && fd >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED)) {               \
            pl_lock();                                                                             \
            bool tracked = pl_fd_file(fd) != NULL;                                                 \
            pl_unlock();                                                                           \
            if (tracked)                                                                           \
                pl_die("writable shared mmap of tracked fd %d (LMDB MDB_WRITEMAP?)", fd);          \
        }                                                                                          \
        return REAL(name)(addr, length, prot, flags, fd, offset);                                  \
    }
DEFINE_MMAP(mmap, off_t)
DEFINE_MMAP(mmap64, off64_t)

/* --- directory entries --- */

/* A path strictly under the root names an entry the model tracks (the
 * root's own entry lives in a directory outside it). */
static bool entry_tracked(int dirfd, const char *path, char abs[PL_PATH_BYTES_MAX])
{
    return pl_active() && pl_resolve(dirfd, path, abs) && pl_tracked_entry(abs);
}

static int rename_common(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                         unsigned int flags, bool with_flags)
{
    char old_abs[PL_PATH_BYTES_MAX], new_abs[PL_PATH_BYTES_MAX];
    bool old_tracked = entry_tracked(olddirfd, oldpath, old_abs);
    bool new_tracked = entry_tracked(newdirfd, newpath, new_abs);
    if (!old_tracked && !new_tracked)
        return with_flags ? REAL(renameat2)(olddirfd, oldpath, newdirfd, newpath, flags)
                          : REAL(renameat)(olddirfd, oldpath, newdirfd, newpath);
    if (old_tracked != new_tracked)
        pl_die("rename %s -> %s moves an entry across the root", oldpath, newpath);
    if (flags & RENAME_EXCHANGE)
        pl_die("rename %s -> %s with RENAME_EXCHANGE", old_abs, new_abs);
    pl_lock();
    struct stat old_st, new_st;
    char grave[64] = "";
    bool replaces = lstat(new_abs, &new_st) == 0;
    if (lstat(old_abs, &old_st) == 0 && replaces && S_ISREG(new_st.st_mode) &&
        !(flags & RENAME_NOREPLACE))
        pl_bury(new_abs, grave);
    uint64_t old_parent = pl_parent_ino(old_abs);
    int rc = with_flags ? REAL(renameat2)(olddirfd, oldpath, newdirfd, newpath, flags)
                        : REAL(renameat)(olddirfd, oldpath, newdirfd, newpath);
    int saved = errno;
    if (rc == 0)
        pl_journal_rename(old_abs, new_abs, old_st.st_dev, old_st.st_ino, old_parent,
                          pl_parent_ino(new_abs), grave);
    pl_unlock();
    errno = saved;
    return rc;
}

int rename(const char *oldpath, const char *newpath)
{
    return rename_common(AT_FDCWD, oldpath, AT_FDCWD, newpath, 0, false);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    return rename_common(olddirfd, oldpath, newdirfd, newpath, 0, false);
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    return rename_common(olddirfd, oldpath, newdirfd, newpath, flags, true);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    char abs[PL_PATH_BYTES_MAX];
    if (!entry_tracked(dirfd, path, abs))
        return REAL(unlinkat)(dirfd, path, flags);
    if (flags & AT_REMOVEDIR)
        pl_die("rmdir of %s is not modelled", abs);
    pl_lock();
    struct stat st;
    char grave[64] = "";
    bool exists = lstat(abs, &st) == 0;
    if (exists && S_ISREG(st.st_mode))
        pl_bury(abs, grave);
    uint64_t parent = pl_parent_ino(abs);
    int rc = REAL(unlinkat)(dirfd, path, flags);
    int saved = errno;
    if (rc == 0 && exists)
        pl_journal_unlink(abs, st.st_dev, st.st_ino, parent, grave);
    pl_unlock();
    errno = saved;
    return rc;
}

int unlink(const char *path)
{
    return unlinkat(AT_FDCWD, path, 0);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    char abs[PL_PATH_BYTES_MAX];
    if (!entry_tracked(dirfd, path, abs))
        return REAL(mkdirat)(dirfd, path, mode);
    pl_lock();
    int rc = REAL(mkdirat)(dirfd, path, mode);
    int saved = errno;
    struct stat st;
    if (rc == 0 && lstat(abs, &st) == 0)
        pl_journal_create(abs, st.st_dev, st.st_ino, true);
    pl_unlock();
    errno = saved;
    return rc;
}

int mkdir(const char *path, mode_t mode)
{
    return mkdirat(AT_FDCWD, path, mode);
}

/* --- descriptors --- */

int close(int fd)
{
    if (pl_active()) {
        pl_lock();
        pl_fd_forget(fd);
        pl_unlock();
    }
    return REAL(close)(fd);
}

int dup(int fd)
{
    int copy = REAL(dup)(fd);
    if (copy >= 0 && pl_active()) {
        pl_lock();
        pl_fd_copy(fd, copy);
        pl_unlock();
    }
    return copy;
}

int dup2(int fd, int to)
{
    int copy = REAL(dup2)(fd, to);
    if (copy >= 0 && pl_active()) {
        pl_lock();
        pl_fd_copy(fd, copy);
        pl_unlock();
    }
    return copy;
}

int dup3(int fd, int to, int flags)
{
    int copy = REAL(dup3)(fd, to, flags);
    if (copy >= 0 && pl_active()) {
        pl_lock();
        pl_fd_copy(fd, copy);
        pl_unlock();
    }
    return copy;
}

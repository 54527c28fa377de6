/*
 * libflpowerloss: a TEST-ONLY LD_PRELOAD shim that records what a power loss
 * would take away from the files under one directory (docs/testing-durability.md).
 *
 * What it owns: the undo journal ($FLOTILLA_POWERLOSS_JOURNAL) and its
 * graveyard dir (<journal>.graveyard/, hard links keeping unlinked or
 * replaced files alive so a power loss can bring them back). For every file
 * under $FLOTILLA_POWERLOSS_ROOT it journals, before a write first touches a
 * 4 KiB page since that file's last fsync/fdatasync, the page's durable
 * pre-image; a successful fsync/fdatasync journals a "synced" marker. It also
 * journals every directory entry created, renamed or unlinked under the root
 * and every fsync of a directory there. `powerloss_restore` reads the journal
 * after the process died and rewrites the files as a power loss would leave them.
 *
 * What it must not do: change what the process sees. Every call is passed to
 * the real libc function with the same arguments and result; the shim only
 * reads (pre-images) and appends to its own journal. It does not model the
 * disk's page cache for reads: a killed process's data stays in the kernel
 * until powerloss_restore rewrites it.
 *
 * Limits (each one aborts loudly where it can be detected, rather than record
 * a wrong model): a writable MAP_SHARED mapping of a tracked file; a write
 * through an O_SYNC/O_DSYNC/O_DIRECT descriptor or with RWF_DSYNC/RWF_SYNC;
 * stdio opened for writing on a tracked file (glibc's stdio writes bypass the
 * interposed write). Not intercepted at all: sync/syncfs, copy_file_range,
 * sendfile, truncate(path), posix_fallocate, rmdir, link, symlink, fork'ed
 * children writing through inherited descriptors. Paths are resolved
 * lexically (symlinks under the root are not followed).
 *
 * Threads: one mutex (pl_lock) guards every table and the journal. A write to
 * a tracked file runs with the mutex held, so it cannot overlap a sync of the
 * same file; a fsync/fdatasync of a file runs without the mutex but marks the
 * file "syncing", and writes to that file wait for it. Writes that start after
 * a sync began are therefore never counted as made durable by it. This
 * serializes I/O more than a kernel does; it changes timing, not results.
 */
#ifndef FL_POWERLOSS_SHIM_H
#define FL_POWERLOSS_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Journal format (little-endian, append-only, one write() per record): a
 * 56-byte header then path_len bytes of path then data_len bytes of data.
 *
 *   u32 magic (PL_JOURNAL_MAGIC)  u32 type  u64 seq  u64 dev  u64 ino
 *   u64 a  u64 b  u32 path_len  u32 data_len
 *
 * seq numbers records from 1 in file order. Types and their fields:
 *   PL_REC_DIRTY     file ino became dirty (first change since its last sync):
 *                    b = its durable size; path = the call that dirtied it
 *   PL_REC_PREIMAGE  a = page number; data = the page's durable bytes
 *                    (shorter than a page when the durable size ends inside it)
 *   PL_REC_SYNC      fsync/fdatasync of file ino succeeded; a = size made durable
 *   PL_REC_CREATE    entry path created for ino (b = 1 for a dir); a = parent dir ino
 *   PL_REC_RENAME    ino moved; path = "old\0new"; a = old parent ino,
 *                    b = new parent ino; data = graveyard name of the file the
 *                    rename replaced (empty if none)
 *   PL_REC_UNLINK    entry path of ino removed; a = parent dir ino;
 *                    data = graveyard name (empty if the link failed)
 *   PL_REC_DIRSYNC   fsync of dir ino succeeded; a = every entry op with a
 *                    smaller seq was done before the fsync started
 */
#define PL_JOURNAL_MAGIC       0x4a4c5046u /* "FPLJ" */
#define PL_RECORD_HEADER_BYTES 56
#define PL_PAGE_BYTES          4096u

enum pl_record_type {
    PL_REC_DIRTY = 1,
    PL_REC_PREIMAGE = 2,
    PL_REC_SYNC = 3,
    PL_REC_CREATE = 4,
    PL_REC_RENAME = 5,
    PL_REC_UNLINK = 6,
    PL_REC_DIRSYNC = 7,
};

/* Longest path the shim tracks; a longer one under the root aborts. */
#define PL_PATH_BYTES_MAX 4096
/* Descriptors above this are not tracked (abort if one names a tracked file). */
#define PL_FD_MAX 65536

/* One tracked regular file (by device and inode, so renames keep it). Owned
 * by the file table for the life of the process. */
typedef struct pl_file {
    dev_t dev;
    ino_t ino;
    uint64_t durable_size; /* size at the last sync (or when first seen) */
    bool dirty;            /* changed since the last sync */
    bool syncing;          /* a fsync/fdatasync of it is running */
    uint64_t *pages;       /* open-addressing set of dirty page numbers + 1 (0 = empty) */
    size_t pages_cap;      /* power of two, 0 when never allocated */
    size_t pages_count;
} pl_file;

/* --- shim_state.c: configuration, tables, journal (callers hold pl_lock) --- */

/* True once the environment named a root and a journal (else every call
 * passes straight through). Set once by the constructor. */
bool pl_active(void);
void pl_lock(void);
void pl_unlock(void);
/* Waits on the sync condition; pl_lock must be held. */
void pl_wait_sync(void);
void pl_signal_sync(void);

/* Absolute, lexically normalized form of path relative to dirfd (AT_FDCWD or
 * an open dir); false if it cannot be resolved or is too long. */
bool pl_resolve(int dirfd, const char *path, char out[PL_PATH_BYTES_MAX]);
/* True if abs is the root or under it and not an ignored (volatile) file. */
bool pl_tracked_path(const char *abs);
/* True if abs is strictly under the root and tracked: an entry the model
 * journals (the root's own entry lives in a directory outside it). */
bool pl_tracked_entry(const char *abs);
/* The parent directory's inode of abs (0 if it cannot be stat'ed). */
uint64_t pl_parent_ino(const char *abs);

/* fd table: the tracked file behind fd, or NULL. */
pl_file *pl_fd_file(int fd);
bool pl_fd_is_dir(int fd);
bool pl_fd_is_sync_write(int fd);
/* Records that fd now refers to the tracked path abs (a file or a dir). */
void pl_fd_track(int fd, const char *abs, int open_flags);
void pl_fd_forget(int fd);
void pl_fd_copy(int from, int to);

/* Finds or adds the file with st's identity; a new one starts clean with
 * st's size as its durable size. */
pl_file *pl_file_get(dev_t dev, ino_t ino, uint64_t size);

/* Before a change to bytes [offset, offset + length) of f through fd: marks
 * each page dirty, journaling the durable pre-image of pages first touched
 * since the last sync. */
void pl_capture(pl_file *f, int fd, uint64_t offset, uint64_t length, const char *why);
/* After a successful fsync/fdatasync of f: size is what became durable. */
void pl_synced(pl_file *f, uint64_t size);

/* Namespace records. seq_bound is returned by pl_next_seq() before the dir fsync. */
uint64_t pl_next_seq(void);
void pl_journal_create(const char *abs, uint64_t dev, uint64_t ino, bool is_dir);
void pl_journal_rename(const char *old_abs, const char *new_abs, uint64_t dev, uint64_t ino,
                       uint64_t old_parent, uint64_t new_parent, const char *replaced_grave);
void pl_journal_unlink(const char *abs, uint64_t dev, uint64_t ino, uint64_t parent,
                       const char *grave);
void pl_journal_dirsync(uint64_t dev, uint64_t ino, uint64_t seq_bound);
/* Hard-links abs into the graveyard; writes the name used into name (empty
 * on failure, which is reported on stderr). */
void pl_bury(const char *abs, char name[64]);

/* Prints "flpowerloss: <msg>" and aborts: a case the model cannot record. */
_Noreturn void pl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The next definition of name after this library (dlsym RTLD_NEXT); aborts
 * if there is none. */
void *pl_real(const char *name);

#endif

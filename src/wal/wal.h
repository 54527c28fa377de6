/* wal: the segmented write-ahead log, the member's durable record.
 *
 * Owns: segment files in <data-dir>/wal/, record framing (length, crc32c,
 * type, payload), recovery (a torn tail is cut off; a bad record before the
 * tail stops start-up with an error naming file and offset), segment
 * roll-over and release of segments made obsolete by a snapshot.
 * Must not: know about keys, MVCC or the network; start threads (the caller
 * runs appends on its writer thread); decide when to sync (the caller does,
 * once per batch: group commit).
 *
 * Shaped for the Raft log: an entry is (index, term, type, data); a hard
 * state record carries (term, vote, commit). Appending an entry whose index
 * is <= the last index truncates the log logically from that index (Raft's
 * conflict rule): replay yields only the newest entry for each index and
 * drops every entry after a rewritten one.
 *
 * Thread-safety: a wal handle is used by one thread at a time.
 */
#ifndef FL_WAL_H
#define FL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef struct wal wal;

/* TEST-ONLY fault injection seam (see tests/wal/). Production code leaves
 * wal_options.test_hooks NULL. When set, every write and fdatasync of segment
 * data goes through these functions instead of pwrite(2)/fdatasync(2), so a
 * test can return -1 with errno = ENOSPC/EIO, or a short count. The struct
 * must outlive the wal handle. A NULL member means "use the real call". */
typedef struct wal_test_hooks {
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t offset);
    int (*fdatasync)(void *ctx, int fd);
    void *ctx;
} wal_test_hooks;

typedef struct wal_options {
    /* Roll to a new segment before a batch would grow the live one past
     * this; 0 = 64 MiB. A single larger batch still goes in one segment. */
    uint64_t segment_bytes_max;
    /* Entry data larger than this fails with FL_ERR_TOO_LARGE; 0 = 16 MiB.
     * At most 256 MiB, the fixed bound on lengths read from disk (else
     * wal_open fails with FL_ERR_INVALID). */
    uint32_t record_bytes_max;
    const wal_test_hooks *test_hooks; /* TEST-ONLY; NULL in production */
} wal_options;

typedef enum {
    WAL_ENTRY_NORMAL = 1,      /* a command (opaque payload) */
    WAL_ENTRY_CONF_CHANGE = 2, /* a membership change (opaque payload) */
    WAL_ENTRY_NOOP = 3         /* e.g. a new leader's empty entry */
} wal_entry_type;

typedef struct wal_entry {
    uint64_t index;
    uint64_t term;
    wal_entry_type type;
    const uint8_t *data; /* borrowed on append; points into wal-owned memory during replay */
    size_t len;
} wal_entry;

typedef struct wal_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
} wal_hard_state;

/* What recovery found. */
typedef struct wal_recovery_info {
    uint64_t first_index; /* first entry still in the log (0 if empty) */
    uint64_t last_index;  /* as wal_last_index() */
    bool has_hard_state;
    wal_hard_state hard_state; /* the newest one */
    uint64_t torn_bytes_cut;   /* bytes cut off a torn tail */
} wal_recovery_info;

/* Opens the log in `dir` (created if missing, parent must exist), scanning
 * every segment. `options` may be NULL (defaults).
 * A torn tail (incomplete or bad-checksum record at the very end of the last
 * segment, followed only by zeros/garbage to EOF) is truncated. Anything else
 * that fails to parse returns FL_ERR_CORRUPT and writes a message naming the
 * segment file and byte offset into errbuf (if non-NULL).
 * On success *out owns the handle; close with wal_close. */
fl_err wal_open(const char *dir, const wal_options *options, wal **out, wal_recovery_info *info,
                char *errbuf, size_t errbuf_len);
void wal_close(wal *log);

/* Calls visit for every live entry with index > after_index, in index order.
 * The entry's data is valid only during the call. A non-FL_OK return from
 * visit stops the replay and is returned. */
typedef fl_err (*wal_visit_fn)(void *ctx, const wal_entry *entry);
fl_err wal_replay(wal *log, uint64_t after_index, wal_visit_fn visit, void *ctx);

/* Appends entries (consecutive indexes) and optionally a hard state (written
 * after the entries), as records written with one write() where possible.
 * Nothing is durable until wal_sync returns FL_OK. On error (FL_ERR_NOSPACE,
 * FL_ERR_IO, FL_ERR_TOO_LARGE, FL_ERR_INVALID) the log is left as it was
 * before the call: the partial write is cut off, and a later append works
 * (e.g. once space is freed).
 * Index rules: entries[k].index == entries[0].index + k; when the log holds
 * entries, entries[0].index <= wal_last_index() + 1 (a smaller index
 * truncates the log logically from there); when it holds none (fresh, or
 * everything released), any index >= 1 starts it. Violations: FL_ERR_INVALID.
 * If cutting a failed write back fails too, or an fdatasync fails, the handle
 * turns read-only: every later append/sync returns FL_ERR_IO; close it and
 * open it again to let recovery decide what is on disk. */
fl_err wal_append_batch(wal *log, const wal_entry *entries, size_t count,
                        const wal_hard_state *hard_state);

/* Makes everything appended so far durable (fdatasync; also fsyncs the
 * directory after a segment roll). */
fl_err wal_sync(wal *log);

/* A snapshot covers every entry up to and including index: the oldest
 * segments whose live entries are all <= index are deleted (never the segment
 * being appended to). If the newest hard state lives in one of them it is
 * first re-written (and synced) into the live segment. Entries <= index in
 * kept segments stay readable; wal_first_index() tells what is left. */
fl_err wal_release_up_to(wal *log, uint64_t index);

/* A snapshot installed from elsewhere covers every entry up to and
 * including index, and the log must continue at index + 1 whatever it held
 * (possibly less, possibly conflicting entries): starts a new segment whose
 * first index is index + 1, writes the newest hard state into it, syncs, and
 * deletes every older segment. A crash part way leaves older segments
 * behind the new one; recovery then restarts the log at the new segment (a
 * segment that starts past the end of the log marks a reset). */
fl_err wal_reset(wal *log, uint64_t index);

/* The last live entry's index. When the log holds no entries: 0 for a fresh
 * log, else the last index it held before everything was released. */
uint64_t wal_last_index(const wal *log);

/* The first live entry's index, 0 when the log holds no entries. */
uint64_t wal_first_index(const wal *log);

#endif

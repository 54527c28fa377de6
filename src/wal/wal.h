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

#include "util/error.h"

typedef struct wal wal;

typedef struct wal_options {
    uint64_t segment_bytes_max;  /* roll to a new segment past this; 0 = 64 MiB */
    uint32_t record_bytes_max;   /* reject larger payloads with FL_ERR_TOO_LARGE; 0 = 16 MiB */
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
    uint64_t first_index;     /* first entry still in the log (0 if empty) */
    uint64_t last_index;      /* last entry (0 if empty) */
    bool has_hard_state;
    wal_hard_state hard_state; /* the newest one */
    uint64_t torn_bytes_cut;  /* bytes cut off a torn tail */
} wal_recovery_info;

/* Opens the log in `dir` (created if missing), scanning every segment.
 * A torn tail (incomplete or bad-checksum record at the very end of the last
 * segment, followed only by zeros/garbage to EOF) is truncated. Anything else
 * that fails to parse returns FL_ERR_CORRUPT and writes a message naming the
 * segment file and byte offset into errbuf (if non-NULL).
 * On success *out owns the handle; close with wal_close. */
fl_err wal_open(const char *dir, const wal_options *options, wal **out,
                wal_recovery_info *info, char *errbuf, size_t errbuf_len);
void wal_close(wal *log);

/* Calls visit for every live entry with index > after_index, in index order.
 * The entry's data is valid only during the call. A non-FL_OK return from
 * visit stops the replay and is returned. */
typedef fl_err (*wal_visit_fn)(void *ctx, const wal_entry *entry);
fl_err wal_replay(wal *log, uint64_t after_index, wal_visit_fn visit, void *ctx);

/* Appends entries (consecutive indexes) and optionally a hard state, as
 * records written with one write() where possible. Nothing is durable until
 * wal_sync returns FL_OK. On error (FL_ERR_NOSPACE, FL_ERR_IO, FL_ERR_TOO_LARGE)
 * the log is left as it was before the call: the partial write is cut off. */
fl_err wal_append_batch(wal *log, const wal_entry *entries, size_t count,
                        const wal_hard_state *hard_state);

/* Makes everything appended so far durable (fdatasync; also fsyncs the
 * directory after a segment roll). */
fl_err wal_sync(wal *log);

/* A snapshot covers every entry up to and including index: segments holding
 * only such entries may be deleted. */
fl_err wal_release_up_to(wal *log, uint64_t index);

uint64_t wal_last_index(const wal *log);

#endif

/* wal/index: which record holds each live entry.
 *
 * Raft's conflict rule makes the log a stream that can step back: writing
 * index i when i <= last drops every live entry >= i. The live log is kept
 * as runs (see wal_internal.h): a rewrite pops the runs that start at or
 * after i, trims the one holding i and starts a new run. Recovery feeds the
 * records in file order through the same function as append does, so the
 * picture after a restart is the picture before it.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "wal/wal_internal.h"

fl_err wal_index_check_next(const wal *log, uint64_t first_index)
{
    if (first_index == 0)
        return FL_ERR_INVALID;
    /* An empty log (fresh, or everything released) may start anywhere, e.g.
     * right after a snapshot installed from a leader. */
    if (log->run_count == 0)
        return FL_OK;
    return first_index <= log->last_index + 1 ? FL_OK : FL_ERR_INVALID;
}

fl_err wal_index_reserve(wal *log)
{
    if (log->run_count == log->run_cap) {
        size_t cap = log->run_cap ? log->run_cap * 2 : 16;
        /* Ownership: the array belongs to the handle, freed in wal_close. */
        wal_run *grown = realloc(log->runs, cap * sizeof *grown);
        if (!grown)
            return FL_ERR_NOMEM;
        log->runs = grown;
        log->run_cap = cap;
    }
    return FL_OK;
}

/* Best effort: without memory the checkpoint is skipped, replay just reads
 * from further back. */
static void note_checkpoint(wal *log, uint64_t seq, uint64_t offset, uint64_t index)
{
    if (index % WAL_CHECKPOINT_EVERY != 0)
        return;
    assert(log->checkpoint_count == 0 || log->checkpoints[log->checkpoint_count - 1].index < index);
    if (log->checkpoint_count == log->checkpoint_cap) {
        size_t cap = log->checkpoint_cap ? log->checkpoint_cap * 2 : 64;
        /* Ownership: the array belongs to the handle, freed in wal_close. */
        wal_checkpoint *grown = realloc(log->checkpoints, cap * sizeof *grown);
        if (!grown)
            return;
        log->checkpoints = grown;
        log->checkpoint_cap = cap;
    }
    log->checkpoints[log->checkpoint_count++] =
        (wal_checkpoint){.index = index, .seq = seq, .offset = offset};
}

static void truncate_from(wal *log, uint64_t index)
{
    while (log->checkpoint_count > 0 && log->checkpoints[log->checkpoint_count - 1].index >= index)
        log->checkpoint_count--;
    while (log->run_count > 0 && log->runs[log->run_count - 1].first_index >= index)
        log->run_count--;
    if (log->run_count > 0) {
        wal_run *last = &log->runs[log->run_count - 1];
        if (last->last_index >= index)
            last->last_index = index - 1;
        assert(last->first_index <= last->last_index);
    }
}

fl_err wal_index_note_entry(wal *log, uint64_t seq, uint64_t offset, uint64_t index)
{
    assert(index >= 1);
    assert(wal_index_check_next(log, index) == FL_OK);
    /* Reserve before changing anything so a failed allocation leaves the
     * index as it was. */
    fl_err err = wal_index_reserve(log);
    if (err != FL_OK)
        return err;
    if (log->run_count > 0) {
        wal_run *last = &log->runs[log->run_count - 1];
        assert(last->last_index == log->last_index);
        if (index == log->last_index + 1 && last->seq == seq) {
            last->last_index = index;
            log->last_index = index;
            note_checkpoint(log, seq, offset, index);
            return FL_OK;
        }
        if (index <= log->last_index)
            truncate_from(log, index);
    }
    log->runs[log->run_count++] =
        (wal_run){.seq = seq, .offset = offset, .first_index = index, .last_index = index};
    log->last_index = index;
    note_checkpoint(log, seq, offset, index);
    return FL_OK;
}

void wal_index_drop_before(wal *log, uint64_t seq_min)
{
    size_t gone = 0;
    while (gone < log->checkpoint_count && log->checkpoints[gone].seq < seq_min)
        gone++;
    if (gone > 0) {
        memmove(log->checkpoints, log->checkpoints + gone,
                (log->checkpoint_count - gone) * sizeof *log->checkpoints);
        log->checkpoint_count -= gone;
    }
    size_t drop = 0;
    while (drop < log->run_count && log->runs[drop].seq < seq_min)
        drop++;
    if (drop == 0)
        return;
    memmove(log->runs, log->runs + drop, (log->run_count - drop) * sizeof *log->runs);
    log->run_count -= drop;
}

void wal_index_seek(const wal *log, const wal_run *run, uint64_t index, uint64_t *offset,
                    uint64_t *start_index)
{
    assert(index >= run->first_index && index <= run->last_index);
    *offset = run->offset;
    *start_index = run->first_index;
    /* The last checkpoint with checkpoint.index <= index. */
    size_t lo = 0, hi = log->checkpoint_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->checkpoints[mid].index <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return;
    const wal_checkpoint *c = &log->checkpoints[lo - 1];
    /* Checkpoints only name live records, so one inside the run's index
     * range is in the run. */
    if (c->index > run->first_index) {
        assert(c->seq == run->seq && c->offset > run->offset);
        *offset = c->offset;
        *start_index = c->index;
    }
}

void wal_index_reset(wal *log, uint64_t index)
{
    log->run_count = 0;
    log->checkpoint_count = 0;
    log->last_index = index;
}

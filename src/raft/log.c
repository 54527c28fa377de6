/* raft/log.c: the in-memory log.
 *
 * A single array; entries[start] holds index prev_index + 1. Compaction moves
 * `start` forward and slides the array down only when more than half of it is
 * dead, so both ends are amortized O(1) and readies can point straight into
 * it (a contiguous slice) without copying.
 */
#include <string.h>

#include "raft/internal.h"

fl_err raft_log_init(struct raft_log *log, uint64_t prev_index, uint64_t prev_term)
{
    memset(log, 0, sizeof(*log));
    log->cap = 64;
    log->entries = raft_calloc(log->cap, sizeof(*log->entries)); /* owned by log */
    if (log->entries == NULL) {
        return FL_ERR_NOMEM;
    }
    log->prev_index = prev_index;
    log->prev_term = prev_term;
    log->handed_persist = log->stable = prev_index;
    log->committed = log->handed_apply = log->applied = prev_index;
    return FL_OK;
}

void raft_log_free(struct raft_log *log)
{
    for (uint64_t i = 0; i < log->len; i++) {
        raft_blob_unref(log->entries[log->start + i].data);
    }
    raft_mfree(log->entries);
    memset(log, 0, sizeof(*log));
}

uint64_t raft_log_last_index(const struct raft_log *log)
{
    return log->prev_index + log->len;
}

uint64_t raft_log_last_term(const struct raft_log *log)
{
    return log->len == 0 ? log->prev_term : log->entries[log->start + log->len - 1].term;
}

const struct raft_entry *raft_log_get(const struct raft_log *log, uint64_t index)
{
    if (index <= log->prev_index || index > raft_log_last_index(log)) {
        return NULL;
    }
    const struct raft_entry *e = &log->entries[log->start + (index - log->prev_index - 1)];
    assert(e->index == index);
    return e;
}

bool raft_log_term(const struct raft_log *log, uint64_t index, uint64_t *term)
{
    if (index == log->prev_index) {
        *term = log->prev_term;
        return true;
    }
    const struct raft_entry *e = raft_log_get(log, index);
    if (e == NULL) {
        return false;
    }
    *term = e->term;
    return true;
}

bool raft_log_match_term(const struct raft_log *log, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft_log_term(log, index, &t) && t == term;
}

fl_err raft_log_reserve(struct raft_log *log, uint64_t n)
{
    if (log->start + log->len + n <= log->cap) {
        return FL_OK;
    }
    if (log->len + n <= log->cap / 2) {
        /* Slide down over the compacted front rather than grow. */
        memmove(log->entries, log->entries + log->start, log->len * sizeof(*log->entries));
        log->start = 0;
        return FL_OK;
    }
    uint64_t cap = log->cap;
    while (cap < log->start + log->len + n) {
        cap *= 2;
    }
    struct raft_entry *grown = raft_realloc(log->entries, cap * sizeof(*grown));
    if (grown == NULL) {
        return FL_ERR_NOMEM;
    }
    log->entries = grown;
    log->cap = cap;
    return FL_OK;
}

fl_err raft_log_append(struct raft_log *log, const struct raft_entry *e)
{
    assert(e->index == raft_log_last_index(log) + 1);
    assert(e->term >= raft_log_last_term(log));
    fl_err err = raft_log_reserve(log, 1);
    if (err != FL_OK) {
        return err;
    }
    log->entries[log->start + log->len] = *e;
    log->len++;
    return FL_OK;
}

fl_err raft_log_append_copies(struct raft_log *log, const struct raft_entry *es, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += raft_blob_batch_bytes(es[i].len);
    }
    struct raft_blob_batch b;
    fl_err err = raft_blob_batch_begin(&b, bytes);
    for (size_t i = 0; err == FL_OK && i < n; i++) {
        struct raft_entry e = es[i];
        e.data = raft_blob_batch_add(&b, es[i].data, es[i].len);
        err = raft_log_append(log, &e);
        if (err != FL_OK) {
            raft_blob_unref(e.data);
        }
    }
    raft_blob_batch_end(&b);
    return err;
}

void raft_log_truncate_from(struct raft_log *log, uint64_t index)
{
    assert(index > log->committed);
    assert(index > log->prev_index);
    while (raft_log_last_index(log) >= index) {
        log->len--;
        raft_blob_unref(log->entries[log->start + log->len].data);
    }
    /* The new tail must be handed out again, and what was durable at and
     * after `index` is about to be overwritten: it no longer counts. */
    if (log->handed_persist >= index) {
        log->handed_persist = index - 1;
    }
    if (log->stable >= index) {
        log->stable = index - 1;
    }
    assert(log->handed_apply <= log->handed_persist);
}

void raft_log_compact_to(struct raft_log *log, uint64_t index)
{
    assert(index <= log->applied);
    while (log->prev_index < index && log->len > 0) {
        struct raft_entry *e = &log->entries[log->start];
        log->prev_index = e->index;
        log->prev_term = e->term;
        raft_blob_unref(e->data);
        log->start++;
        log->len--;
    }
    if (log->len == 0) {
        log->start = 0;
    }
}

void raft_log_reset(struct raft_log *log, uint64_t index, uint64_t term)
{
    for (uint64_t i = 0; i < log->len; i++) {
        raft_blob_unref(log->entries[log->start + i].data);
    }
    log->start = log->len = 0;
    log->prev_index = index;
    log->prev_term = term;
    log->handed_persist = log->stable = index;
    log->committed = log->handed_apply = log->applied = index;
}

void raft_log_commit_to(struct raft_log *log, uint64_t index)
{
    if (index <= log->committed) {
        return;
    }
    assert(index <= raft_log_last_index(log));
    log->committed = index;
}

bool raft_log_up_to_date(const struct raft_log *log, uint64_t index, uint64_t term)
{
    uint64_t last_term = raft_log_last_term(log);
    return term > last_term || (term == last_term && index >= raft_log_last_index(log));
}

uint64_t raft_log_conflict_by_term(const struct raft_log *log, uint64_t index, uint64_t term)
{
    uint64_t last = raft_log_last_index(log);
    if (index > last) {
        index = last;
    }
    uint64_t t;
    while (index > log->prev_index && raft_log_term(log, index, &t) && t > term) {
        index--;
    }
    return index;
}

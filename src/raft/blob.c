/* raft/blob.c: reference-counted bytes behind entry and snapshot data.
 *
 * The log and every outgoing message that carries an entry hold one
 * reference each, so a message handed out in a ready never dangles when the
 * log is truncated or compacted underneath it. Callers only ever see the
 * data pointer.
 *
 * Bytes live in segments of a chunk: one allocation can hold the bytes of a
 * whole batch of entries (an incoming append, restored entries, a batch of
 * proposals), so the core makes about one allocation per batch instead of
 * one per entry. Each segment starts with a pointer to its chunk; the chunk
 * counts the references of all its segments and is freed when the last one
 * goes. The price: a chunk lives as long as its longest-lived entry.
 */
#include <stddef.h>
#include <string.h>

#include "raft/internal.h"

struct raft_chunk {
    uint64_t refs;
};

struct raft_seg {
    struct raft_chunk *chunk;
    uint8_t data[];
};

static size_t seg_size(uint32_t len)
{
    return (sizeof(struct raft_seg) + (size_t)len + 7) & ~(size_t)7; /* keeps segments aligned */
}

static struct raft_chunk *chunk_of(uint8_t *data)
{
    return ((struct raft_seg *)(void *)(data - offsetof(struct raft_seg, data)))->chunk;
}

size_t raft_blob_batch_bytes(uint32_t len)
{
    return len > 0 ? seg_size(len) : 0;
}

fl_err raft_blob_batch_begin(struct raft_blob_batch *b, size_t bytes)
{
    b->chunk = NULL;
    b->cursor = b->end = NULL;
    if (bytes == 0) {
        return FL_OK;
    }
    /* Owned by the references to its segments, plus the builder's own until end. */
    b->chunk = raft_malloc(sizeof(struct raft_chunk) + bytes);
    if (b->chunk == NULL) {
        return FL_ERR_NOMEM;
    }
    b->chunk->refs = 1;
    b->cursor = (uint8_t *)(b->chunk + 1);
    b->end = b->cursor + bytes;
    return FL_OK;
}

uint8_t *raft_blob_batch_add(struct raft_blob_batch *b, const void *src, uint32_t len)
{
    if (len == 0) {
        return NULL;
    }
    assert(b->chunk != NULL && b->cursor + seg_size(len) <= b->end);
    struct raft_seg *seg = (struct raft_seg *)(void *)b->cursor;
    seg->chunk = b->chunk;
    if (src != NULL) {
        memcpy(seg->data, src, len);
    }
    b->cursor += seg_size(len);
    b->chunk->refs++;
    return seg->data;
}

void raft_blob_batch_end(struct raft_blob_batch *b)
{
    if (b->chunk != NULL && --b->chunk->refs == 0) {
        raft_mfree(b->chunk); /* nothing was kept */
    }
    b->chunk = NULL;
}

uint8_t *raft_blob_new(const void *src, uint32_t len)
{
    struct raft_blob_batch b;
    if (len == 0 || raft_blob_batch_begin(&b, raft_blob_batch_bytes(len)) != FL_OK) {
        return NULL;
    }
    uint8_t *data = raft_blob_batch_add(&b, src, len);
    raft_blob_batch_end(&b);
    return data;
}

void raft_blob_ref(uint8_t *data)
{
    if (data == NULL) {
        return;
    }
    struct raft_chunk *c = chunk_of(data);
    assert(c->refs > 0);
    c->refs++;
}

void raft_blob_unref(uint8_t *data)
{
    if (data == NULL) {
        return;
    }
    struct raft_chunk *c = chunk_of(data);
    assert(c->refs > 0);
    if (--c->refs == 0) {
        raft_mfree(c);
    }
}

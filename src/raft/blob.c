/* raft/blob.c: reference-counted byte buffers for entry and snapshot data.
 *
 * The log and every outgoing message that carries an entry hold one
 * reference each, so a message handed out in a ready never dangles when the
 * log is truncated or compacted underneath it. The count lives just before
 * the bytes; callers only ever see the data pointer.
 */
#include <string.h>
#include <stddef.h>

#include "raft/internal.h"

struct raft_blob {
    uint64_t refs; /* 64 bits keeps data 8-aligned */
    uint8_t data[];
};

static struct raft_blob *blob_of(uint8_t *data)
{
    return (struct raft_blob *)(void *)(data - offsetof(struct raft_blob, data));
}

uint8_t *raft_blob_new(const void *src, uint32_t len)
{
    if (len == 0) {
        return NULL;
    }
    /* Owned by the references; freed when the last one is dropped. */
    struct raft_blob *b = raft_malloc(sizeof(*b) + len);
    if (b == NULL) {
        return NULL;
    }
    b->refs = 1;
    if (src != NULL) {
        memcpy(b->data, src, len);
    }
    return b->data;
}

void raft_blob_ref(uint8_t *data)
{
    if (data == NULL) {
        return;
    }
    struct raft_blob *b = blob_of(data);
    assert(b->refs > 0);
    b->refs++;
}

void raft_blob_unref(uint8_t *data)
{
    if (data == NULL) {
        return;
    }
    struct raft_blob *b = blob_of(data);
    assert(b->refs > 0);
    if (--b->refs == 0) {
        raft_mfree(b);
    }
}

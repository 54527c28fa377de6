#include "mvcc/arena.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocks grow geometrically up to a cap so a big result costs few mallocs,
 * and one oversized request gets a block of its own. */
enum { ARENA_BLOCK_MIN = 4096, ARENA_BLOCK_MAX = 1u << 20 };

typedef struct arena_block {
    struct arena_block *next;
    size_t capacity;
    size_t used;
    alignas(max_align_t) unsigned char data[];
} arena_block;

struct mvcc_arena {
    arena_block *head;
    size_t next_block_size;
};

mvcc_arena *mvcc_arena_new(void)
{
    mvcc_arena *arena = calloc(1, sizeof *arena); /* owned by the caller */
    if (arena != NULL) {
        arena->next_block_size = ARENA_BLOCK_MIN;
    }
    return arena;
}

void mvcc_arena_free(mvcc_arena *arena)
{
    if (arena == NULL) {
        return;
    }
    arena_block *block = arena->head;
    while (block != NULL) {
        arena_block *next = block->next;
        free(block);
        block = next;
    }
    free(arena);
}

void mvcc_arena_reset(mvcc_arena *arena)
{
    if (arena == NULL || arena->head == NULL) {
        return;
    }
    /* Keep the largest ordinary block; an oversized one (a huge request)
     * is not worth holding on to. */
    arena_block *keep = NULL;
    for (arena_block *b = arena->head; b != NULL; b = b->next) {
        if (b->capacity <= ARENA_BLOCK_MAX && (keep == NULL || b->capacity > keep->capacity)) {
            keep = b;
        }
    }
    arena_block *block = arena->head;
    while (block != NULL) {
        arena_block *next = block->next;
        if (block != keep) {
            free(block);
        }
        block = next;
    }
    if (keep != NULL) {
        keep->next = NULL;
        keep->used = 0;
    }
    arena->head = keep;
}

size_t mvcc_arena_bytes_used(const mvcc_arena *arena)
{
    size_t used = 0;
    for (const arena_block *b = arena->head; b != NULL; b = b->next) {
        used += b->used;
    }
    return used;
}

void *mvcc_arena_alloc(mvcc_arena *arena, size_t size)
{
    assert(arena != NULL);
    const size_t align = alignof(max_align_t);
    if (size > SIZE_MAX - align) {
        return NULL;
    }
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded == 0) {
        rounded = align;
    }
    arena_block *head = arena->head;
    if (head == NULL || head->capacity - head->used < rounded) {
        size_t capacity = arena->next_block_size;
        if (capacity < rounded) {
            capacity = rounded;
        }
        if (capacity > SIZE_MAX - sizeof(arena_block)) {
            return NULL;
        }
        arena_block *block = malloc(sizeof(arena_block) + capacity); /* owned by the arena */
        if (block == NULL) {
            return NULL;
        }
        block->capacity = capacity;
        block->used = 0;
        block->next = head;
        arena->head = block;
        head = block;
        if (arena->next_block_size < ARENA_BLOCK_MAX) {
            arena->next_block_size *= 2;
        }
    }
    void *out = head->data + head->used;
    head->used += rounded;
    assert(head->used <= head->capacity);
    return out;
}

void *mvcc_arena_dup(mvcc_arena *arena, const void *data, size_t len)
{
    void *out = mvcc_arena_alloc(arena, len);
    if (out != NULL && len > 0) {
        memcpy(out, data, len);
    }
    return out;
}

/* api/arena: see arena.h. */
#include "api/arena.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct api_arena_chunk {
    api_arena_chunk *next;
    size_t size;
    /* payload follows, 16-byte aligned */
    _Alignas(16) uint8_t data[];
};

static void *arena_pb_alloc(void *ctx, size_t size)
{
    return api_arena_alloc(ctx, size);
}

static void arena_pb_free(void *ctx, void *ptr)
{
    /* Released all at once by api_arena_reset. */
    (void)ctx;
    (void)ptr;
}

void api_arena_init(api_arena *arena)
{
    memset(arena, 0, sizeof(*arena));
    arena->pb.alloc = arena_pb_alloc;
    arena->pb.free = arena_pb_free;
    arena->pb.allocator_data = arena;
}

void *api_arena_alloc(api_arena *arena, size_t size)
{
    assert(arena->pb.allocator_data == arena);
    size_t rounded = (size + 15u) & ~(size_t)15u;
    if (rounded < size) {
        return NULL; /* overflow */
    }
    if (rounded <= API_ARENA_BLOCK_BYTES) {
        if (arena->block == NULL) {
            arena->block = aligned_alloc(16, API_ARENA_BLOCK_BYTES);
            if (arena->block == NULL) {
                return NULL;
            }
            arena->used = 0;
        }
        if (API_ARENA_BLOCK_BYTES - arena->used >= rounded) {
            void *ptr = arena->block + arena->used;
            arena->used += rounded;
            return ptr;
        }
    }
    /* Does not fit in the kept block: one overflow chunk per allocation that
     * did not fit, at least a block big so small allocations share it. */
    if (arena->overflow != NULL) {
        /* Reuse the tail of the newest chunk if it has room. */
        api_arena_chunk *c = arena->overflow;
        size_t *used = (size_t *)c->data; /* first 16 bytes hold the used count */
        if (c->size - *used >= rounded) {
            void *ptr = c->data + *used;
            *used += rounded;
            return ptr;
        }
    }
    size_t payload = rounded + 16u;
    if (payload < 4u * API_ARENA_BLOCK_BYTES) {
        payload = 4u * API_ARENA_BLOCK_BYTES;
    }
    if (payload < rounded) {
        return NULL;
    }
    api_arena_chunk *c = aligned_alloc(16, sizeof(api_arena_chunk) + payload);
    if (c == NULL) {
        return NULL;
    }
    c->size = payload;
    c->next = arena->overflow;
    arena->overflow = c;
    size_t *used = (size_t *)c->data;
    *used = 16u + rounded;
    return c->data + 16u;
}

void *api_arena_calloc(api_arena *arena, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    void *ptr = api_arena_alloc(arena, count * size);
    if (ptr != NULL) {
        memset(ptr, 0, count * size);
    }
    return ptr;
}

void api_arena_reset(api_arena *arena)
{
    while (arena->overflow != NULL) {
        api_arena_chunk *next = arena->overflow->next;
        free(arena->overflow);
        arena->overflow = next;
    }
    arena->used = 0;
}

void api_arena_free(api_arena *arena)
{
    api_arena_reset(arena);
    free(arena->block);
    arena->block = NULL;
}

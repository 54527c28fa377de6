/* api/arena: a per-request bump allocator.
 *
 * Every request decodes its protobuf into, and builds its response in, one
 * arena: no per-field malloc/free, and the whole request is released at once.
 * The first block is kept across requests (the call objects are recycled), so
 * a typical small request allocates nothing. Larger requests add overflow
 * blocks, freed at the next reset. Also usable as a ProtobufCAllocator.
 */
#ifndef FL_API_ARENA_H
#define FL_API_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Size of the block kept across requests. */
#define API_ARENA_BLOCK_BYTES 8192

typedef struct api_arena_chunk api_arena_chunk;

typedef struct api_arena {
    uint8_t *block; /* owned; API_ARENA_BLOCK_BYTES, allocated on first use */
    size_t used;
    api_arena_chunk *overflow; /* owned list of blocks for what did not fit */
    ProtobufCAllocator pb;     /* points back at this arena */
} api_arena;

void api_arena_init(api_arena *arena);
/* Returns 16-byte aligned memory owned by the arena, or NULL when out of memory. */
void *api_arena_alloc(api_arena *arena, size_t size);
/* Zero-filled api_arena_alloc. */
void *api_arena_calloc(api_arena *arena, size_t count, size_t size);
/* Forgets every allocation; frees overflow blocks, keeps the first block. */
void api_arena_reset(api_arena *arena);
/* Frees everything. */
void api_arena_free(api_arena *arena);

#endif

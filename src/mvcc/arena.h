/* mvcc/arena: a bump allocator made of linked blocks.
 *
 * Results own their memory through one arena each (freed in one call), and the
 * store keeps a scratch arena that is reset, not freed, between applies, so
 * decoding a command and staging a delete cost no malloc once warm.
 */
#ifndef FL_MVCC_ARENA_H
#define FL_MVCC_ARENA_H

#include <stddef.h>

typedef struct mvcc_arena mvcc_arena;

/* A new empty arena (NULL on allocation failure). */
mvcc_arena *mvcc_arena_new(void);
/* Frees every block; NULL is fine. */
void mvcc_arena_free(mvcc_arena *arena);
/* Forgets all allocations but keeps the largest block for reuse. */
void mvcc_arena_reset(mvcc_arena *arena);
/* size bytes aligned for any type; NULL on allocation failure. size 0 gives a
 * valid non-NULL pointer. The memory lives until reset/free. */
void *mvcc_arena_alloc(mvcc_arena *arena, size_t size);
/* Bytes handed out since the last reset (summed over the blocks). */
size_t mvcc_arena_bytes_used(const mvcc_arena *arena);
/* A copy of len bytes (NULL only on failure; len 0 gives a valid pointer). */
void *mvcc_arena_dup(mvcc_arena *arena, const void *data, size_t len);

#endif

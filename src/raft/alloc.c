/* raft/alloc.c: every allocation of the core goes through here.
 *
 * One seam so tests can make the Nth allocation fail (the fl_raft_faults
 * build, RAFT_FAULT_INJECTION) and check that each error path frees what it
 * took and leaves the node consistent. In the normal build these are plain
 * calls to the C library.
 */
#include <stdlib.h>

#include "raft/internal.h"

#ifdef RAFT_FAULT_INJECTION
/* Allocations left before one fails (then it keeps counting down below 0). */
int64_t raft_fault_countdown = INT64_MAX;

static bool fail_now(void)
{
    return raft_fault_countdown-- == 0;
}
#else
static bool fail_now(void)
{
    return false;
}
#endif

void *raft_malloc(size_t size)
{
    return fail_now() ? NULL : malloc(size);
}

void *raft_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *raft_realloc(void *p, size_t size)
{
    return fail_now() ? NULL : realloc(p, size);
}

void raft_mfree(void *p)
{
    free(p);
}

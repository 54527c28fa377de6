/* raft/progress.c: what the leader knows about one follower.
 *
 * PROBE: the leader does not know where the follower's log matches; it sends
 * one append and waits for the answer (or the next heartbeat) before another.
 * REPLICATE: the match is known; appends are pipelined, `next` moves on
 * optimistically, and at most inflight_cap appends are unacknowledged.
 * SNAPSHOT: the follower needs entries we compacted; a snapshot is on its way
 * and nothing else is sent until it is acknowledged (or presumed lost).
 */
#include <string.h>

#include "raft/internal.h"

void raft_progress_init(struct raft_progress *pr, raft_id id, uint64_t next, uint32_t inflight_cap)
{
    assert(inflight_cap >= 1 && inflight_cap <= RAFT_INFLIGHT_MAX);
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->next = next;
    pr->state = RAFT_PROGRESS_PROBE;
    pr->inflight_cap = inflight_cap;
    pr->recent_active = true; /* a new member gets one check-quorum period of grace */
}

static void inflights_reset(struct raft_progress *pr)
{
    pr->inflight_start = pr->inflight_count = 0;
}

void raft_progress_become_probe(struct raft_progress *pr)
{
    /* Coming back from a snapshot, the follower will have at least it. */
    uint64_t floor = pr->state == RAFT_PROGRESS_SNAPSHOT ? pr->pending_snapshot : pr->match;
    pr->next = (floor > pr->match ? floor : pr->match) + 1;
    pr->state = RAFT_PROGRESS_PROBE;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    inflights_reset(pr);
}

void raft_progress_become_replicate(struct raft_progress *pr)
{
    pr->state = RAFT_PROGRESS_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    inflights_reset(pr);
}

void raft_progress_become_snapshot(struct raft_progress *pr, uint64_t index, uint64_t now)
{
    pr->state = RAFT_PROGRESS_SNAPSHOT;
    pr->pending_snapshot = index;
    pr->snapshot_sent_tick = now;
    pr->probe_sent = false;
    inflights_reset(pr);
}

bool raft_progress_is_paused(const struct raft_progress *pr)
{
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
        return pr->probe_sent;
    case RAFT_PROGRESS_REPLICATE:
        return pr->inflight_count >= pr->inflight_cap;
    case RAFT_PROGRESS_SNAPSHOT:
        return true;
    }
    return true;
}

bool raft_progress_maybe_update(struct raft_progress *pr, uint64_t index)
{
    bool updated = false;
    if (pr->match < index) {
        pr->match = index;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < index + 1) {
        pr->next = index + 1;
    }
    return updated;
}

bool raft_progress_maybe_decrease(struct raft_progress *pr, uint64_t rejected, uint64_t hint)
{
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        if (rejected <= pr->match) {
            return false; /* stale: we already know it matches there */
        }
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected) {
        return false; /* stale: not an answer to the append we last sent */
    }
    uint64_t next = rejected < hint + 1 ? rejected : hint + 1;
    pr->next = next > pr->match + 1 ? next : pr->match + 1;
    pr->probe_sent = false;
    return true;
}

void raft_progress_sent_entries(struct raft_progress *pr, uint64_t last_index)
{
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        assert(pr->inflight_count < pr->inflight_cap);
        uint32_t slot = (pr->inflight_start + pr->inflight_count) % pr->inflight_cap;
        pr->inflight[slot] = last_index;
        pr->inflight_count++;
        pr->next = last_index + 1;
    } else {
        pr->probe_sent = true;
    }
}

void raft_progress_free_inflights_to(struct raft_progress *pr, uint64_t index)
{
    while (pr->inflight_count > 0 && pr->inflight[pr->inflight_start] <= index) {
        pr->inflight_start = (pr->inflight_start + 1) % pr->inflight_cap;
        pr->inflight_count--;
    }
}

/* raft/conf.c: configurations and quorum arithmetic.
 *
 * A configuration is one voter set, or two during joint consensus; every
 * decision (commit, election, read confirmation, check-quorum) needs a
 * majority of each non-empty set. Learners never appear in these sums.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/internal.h"

bool raft_ids_contain(const raft_id *ids, uint32_t n, raft_id id)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

bool raft_conf_is_joint(const struct raft_conf *conf)
{
    return conf->n_voters_outgoing > 0;
}

bool raft_conf_is_voter(const struct raft_conf *conf, raft_id id)
{
    return raft_ids_contain(conf->voters, conf->n_voters, id) ||
           raft_ids_contain(conf->voters_outgoing, conf->n_voters_outgoing, id);
}

bool raft_conf_is_learner(const struct raft_conf *conf, raft_id id)
{
    return raft_ids_contain(conf->learners, conf->n_learners, id);
}

bool raft_conf_is_member(const struct raft_conf *conf, raft_id id)
{
    return raft_conf_is_voter(conf, id) || raft_conf_is_learner(conf, id);
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* The largest value that a majority of ids has reached. An empty set places
 * no constraint (UINT64_MAX), so joint and simple configs share one path. */
static uint64_t majority_value(const raft_id *ids, uint32_t n,
                               uint64_t (*get)(const void *ctx, raft_id id), const void *ctx)
{
    if (n == 0) {
        return UINT64_MAX;
    }
    assert(n <= RAFT_MEMBERS_MAX);
    uint64_t values[RAFT_MEMBERS_MAX];
    for (uint32_t i = 0; i < n; i++) {
        values[i] = get(ctx, ids[i]);
    }
    qsort(values, n, sizeof(values[0]), cmp_desc);
    return values[n / 2]; /* n/2+1 voters have at least this */
}

uint64_t raft_conf_quorum_value(const struct raft_conf *conf,
                                uint64_t (*get)(const void *ctx, raft_id id), const void *ctx)
{
    uint64_t in = majority_value(conf->voters, conf->n_voters, get, ctx);
    uint64_t out = majority_value(conf->voters_outgoing, conf->n_voters_outgoing, get, ctx);
    uint64_t v = in < out ? in : out;
    return v == UINT64_MAX ? 0 : v;
}

static raft_vote_result tally_set(const raft_id *ids, uint32_t n,
                                  int (*granted)(const void *ctx, raft_id id), const void *ctx)
{
    if (n == 0) {
        return RAFT_VOTE_WON;
    }
    uint32_t yes = 0, no = 0;
    for (uint32_t i = 0; i < n; i++) {
        int g = granted(ctx, ids[i]);
        yes += g == 1;
        no += g == 0;
    }
    uint32_t q = n / 2 + 1;
    if (yes >= q) {
        return RAFT_VOTE_WON;
    }
    if (n - no < q) {
        return RAFT_VOTE_LOST;
    }
    return RAFT_VOTE_PENDING;
}

raft_vote_result raft_conf_tally(const struct raft_conf *conf,
                                 int (*granted)(const void *ctx, raft_id id), const void *ctx)
{
    raft_vote_result in = tally_set(conf->voters, conf->n_voters, granted, ctx);
    raft_vote_result out = tally_set(conf->voters_outgoing, conf->n_voters_outgoing, granted, ctx);
    if (in == RAFT_VOTE_LOST || out == RAFT_VOTE_LOST) {
        return RAFT_VOTE_LOST;
    }
    if (in == RAFT_VOTE_WON && out == RAFT_VOTE_WON) {
        return RAFT_VOTE_WON;
    }
    return RAFT_VOTE_PENDING;
}

/* server/membership: the member table, Raft's configuration and the peers.
 *
 * Two replicated things describe the cluster: the member table (names, URLs,
 * learner flags; changed by MEMBER/PUBLISH entries, apply.c) and Raft's
 * configuration (voters, learners; changed by conf-change entries, which take
 * joint consensus inside the Raft core). A membership request appends one
 * MEMBER entry and is answered when it applies; the leader then makes Raft's
 * configuration follow the table, one change at a time
 * (reconcile_configuration, on every tick). Because the table is the intent
 * and reconciliation is idempotent, a leader that dies between the two steps
 * leaves nothing half done: the next leader finishes it.
 *
 * Also here: every member publishes its name and client URLs through the log
 * once per start (as etcd does), the first leader sets the cluster version,
 * the transport's peers follow the table, a member removed from the table
 * stops itself, MoveLeader.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "server/entry.h"
#include "server/server_internal.h"
#include "util/log.h"

#define PUBLISH_RETRY_TICKS 10u

/* ---- peers and self --------------------------------------------------- */

void server_membership_sync_peers(server *srv)
{
    if (!srv->transport)
        return;
    /* add or update every member but us */
    for (uint32_t i = 0; i < srv->cluster.n_members; i++) {
        const cluster_member *m = &srv->cluster.members[i];
        if (m->id == srv->member_id || m->n_peer_urls == 0)
            continue;
        fl_err err = transport_add_peer(srv->transport, m->id, m->peer_urls[0]);
        if (err != FL_OK)
            FL_LOG_WARNF("server", "cannot add peer", "id=%016" PRIx64 " url=%s err=%s", m->id,
                         m->peer_urls[0], fl_err_name(err));
    }
    /* drop peers no longer in the table */
    for (uint32_t i = 0; i < srv->n_peer_ids;) {
        if (!cluster_find_const(&srv->cluster, srv->peer_ids[i])) {
            transport_remove_peer(srv->transport, srv->peer_ids[i]);
            srv->peer_ids[i] = srv->peer_ids[--srv->n_peer_ids];
            continue;
        }
        i++;
    }
    for (uint32_t i = 0; i < srv->cluster.n_members; i++) {
        uint64_t id = srv->cluster.members[i].id;
        bool known = id == srv->member_id;
        for (uint32_t j = 0; j < srv->n_peer_ids && !known; j++)
            known = srv->peer_ids[j] == id;
        if (!known && srv->n_peer_ids < RAFT_MEMBERS_MAX)
            srv->peer_ids[srv->n_peer_ids++] = id;
    }
}

void server_membership_on_applied(server *srv)
{
    server_membership_sync_peers(srv);
    const cluster_member *self = cluster_find_const(&srv->cluster, srv->member_id);
    if (self && srv->cluster.n_members > 0)
        srv->was_member = true;
    if (!self && srv->was_member && !srv->removed) {
        srv->removed = true;
        FL_LOG_WARNF("server", "this member was removed from the cluster; stopping",
                     "member_id=%016" PRIx64, srv->member_id);
        if (srv->options.fatal)
            srv->options.fatal(srv->options.fatal_ctx, FL_ERR_MEMBER_ID_REMOVED,
                               "the member has been permanently removed from the cluster");
    }
}

/* ---- publish and cluster version ---------------------------------------- */

static void publish(server *srv)
{
    if (srv->published || !srv->serving || srv->leader_id == 0 || srv->stopping || srv->removed)
        return;
    if (!cluster_find_const(&srv->cluster, srv->member_id))
        return; /* not (yet) a member: a joining member learns the table first */
    uint8_t *body = NULL;
    size_t len = 0;
    if (entry_publish_encode(&srv->self, &body, &len) != FL_OK)
        return;
    uint8_t *data = NULL;
    size_t data_len = 0;
    if (entry_encode(ENTRY_PUBLISH, server_wait_new_id(srv), body, len, &data, &data_len) == FL_OK)
        (void)server_node_propose(srv, data, (uint32_t)data_len); /* takes data */
    free(body);
}

static void propose_version(server *srv)
{
    if (srv->role != RAFT_LEADER || srv->cluster.version[0])
        return;
    uint8_t *data = NULL;
    size_t len = 0;
    const char *v = SERVER_ETCD_CLUSTER_VERSION;
    if (entry_encode(ENTRY_VERSION, server_wait_new_id(srv), (const uint8_t *)v, strlen(v), &data,
                     &len) == FL_OK)
        (void)server_node_propose(srv, data, (uint32_t)len);
}

/* ---- reconciliation (leader) --------------------------------------------- */

static bool in_ids(const raft_id *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* etcd's rule for promotion: the learner's acknowledged index is within 10%
 * of the leader's commit (leader only: only it sees progress). */
static bool learner_in_sync(server *srv, uint64_t id)
{
    uint64_t match = 0;
    return raft_progress_match(srv->raft, id, &match) &&
           (double)match >= 0.9 * (double)srv->commit_index;
}

static void reconcile_configuration(server *srv)
{
    if (srv->role != RAFT_LEADER)
        return;
    struct raft_status st;
    raft_status(srv->raft, &st);
    if (st.conf.n_voters_outgoing > 0 || st.lead_transferee)
        return; /* joint, or transferring: one change at a time */
    struct raft_conf_change change = {0};
    for (uint32_t i = 0; i < srv->cluster.n_members && !change.id; i++) {
        const cluster_member *m = &srv->cluster.members[i];
        bool voter = in_ids(st.conf.voters, st.conf.n_voters, m->id);
        bool learner = in_ids(st.conf.learners, st.conf.n_learners, m->id);
        if (!voter && !learner)
            change = (struct raft_conf_change){
                m->is_learner ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER, m->id};
        else if (learner && !m->is_learner && learner_in_sync(srv, m->id))
            change = (struct raft_conf_change){RAFT_CONF_ADD_VOTER, m->id};
    }
    for (uint32_t i = 0; i < st.conf.n_voters && !change.id; i++)
        if (!cluster_find_const(&srv->cluster, st.conf.voters[i]))
            change = (struct raft_conf_change){RAFT_CONF_REMOVE, st.conf.voters[i]};
    for (uint32_t i = 0; i < st.conf.n_learners && !change.id; i++)
        if (!cluster_find_const(&srv->cluster, st.conf.learners[i]))
            change = (struct raft_conf_change){RAFT_CONF_REMOVE, st.conf.learners[i]};
    if (!change.id)
        return;
    fl_err err = raft_propose_conf_change(srv->raft, &change, 1, NULL);
    if (err == FL_OK) {
        FL_LOG_INFOF("server", "configuration change proposed", "op=%d id=%016" PRIx64,
                     (int)change.op, change.id);
        server_node_kick(srv);
    } else if (err != FL_ERR_BUSY) {
        FL_LOG_WARNF("server", "configuration change refused", "op=%d id=%016" PRIx64 " err=%s",
                     (int)change.op, change.id, fl_err_name(err));
    }
}

void server_membership_after_leader_change(server *srv)
{
    publish(srv);
    propose_version(srv);
    if (srv->move_waiter && srv->leader_id == srv->move_target) {
        server_waiter *w = srv->move_waiter;
        srv->move_waiter = NULL;
        server_waiter_finish_member(srv, w, FL_OK, srv->move_target);
    }
}

void server_membership_on_tick(server *srv)
{
    if (!srv->published && srv->publish_ticks++ % PUBLISH_RETRY_TICKS == 0) {
        publish(srv);
        propose_version(srv);
    }
    reconcile_configuration(srv);
    if (srv->move_waiter && srv->leader_id == srv->move_target) {
        server_waiter *w = srv->move_waiter;
        srv->move_waiter = NULL;
        server_waiter_finish_member(srv, w, FL_OK, srv->move_target);
    } else if (srv->move_waiter && server_now_ms(srv) >= srv->move_waiter->deadline_ms) {
        server_waiter *w = srv->move_waiter;
        srv->move_waiter = NULL;
        server_waiter_finish_member(srv, w, FL_ERR_TIMEOUT, 0);
    }
}

/* ---- requests ------------------------------------------------------------ */

/* etcd's rule: after the change, the voters this member sees as started
 * (itself, and peers heard from lately) must still be a quorum. */
static bool enough_started(server *srv, bool adding, uint64_t removing)
{
    uint32_t voters = 0, started = 0;
    uint64_t within_ms = 2ull * srv->options.election_ms + 1000u;
    for (uint32_t i = 0; i < srv->cluster.n_members; i++) {
        const cluster_member *m = &srv->cluster.members[i];
        if (m->is_learner || m->id == removing)
            continue;
        voters++;
        if (m->id == srv->member_id || transport_peer_active(srv->transport, m->id, within_ms))
            started++;
    }
    if (adding)
        voters++; /* the new member has not started yet */
    return started >= voters / 2 + 1;
}

static fl_err propose_member(server *srv, entry_member_op op, const cluster_member *m,
                             server_member_done_fn done, void *ctx)
{
    uint8_t *body = NULL;
    size_t len = 0;
    fl_err err = entry_member_encode(op, m, &body, &len);
    if (err != FL_OK)
        return err;
    server_waiter *w = calloc(1, sizeof *w); /* owned by the wait table until done */
    if (!w) {
        free(body);
        return FL_ERR_NOMEM;
    }
    w->kind = WAITER_MEMBER;
    w->member_done = done;
    w->ctx = ctx;
    err = server_propose_waiting(srv, ENTRY_MEMBER, body, len, w);
    free(body);
    if (err != FL_OK)
        free(w);
    return err;
}

static fl_err fill_urls(cluster_member *m, const char *const *urls, size_t n)
{
    if (n == 0 || n > CLUSTER_URLS_MAX)
        return FL_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(urls[i]);
        if (len == 0 || len > CLUSTER_URL_MAX || strncmp(urls[i], "http", 4) != 0)
            return FL_ERR_INVALID;
        memcpy(m->peer_urls[i], urls[i], len + 1);
    }
    m->n_peer_urls = (uint32_t)n;
    return FL_OK;
}

fl_err server_member_add(server *srv, const char *const *peer_urls, size_t n, bool is_learner,
                         server_member_done_fn done, void *ctx)
{
    fl_err err = server_write_admit(srv);
    if (err != FL_OK)
        return err;
    cluster_member *m = calloc(1, sizeof *m);
    if (!m)
        return FL_ERR_NOMEM;
    err = fill_urls(m, peer_urls, n);
    if (err == FL_OK) {
        m->is_learner = is_learner;
        m->id = cluster_member_id(peer_urls, n, srv->token);
        for (size_t i = 0; i < n && err == FL_OK; i++)
            if (cluster_find_peer_url(&srv->cluster, peer_urls[i]))
                err = FL_ERR_PEER_URL_EXISTS;
    }
    if (err == FL_OK && cluster_was_removed(&srv->cluster, m->id))
        err = FL_ERR_MEMBER_ID_REMOVED;
    if (err == FL_OK && is_learner) {
        uint32_t learners = 0;
        for (uint32_t i = 0; i < srv->cluster.n_members; i++)
            learners += srv->cluster.members[i].is_learner;
        if (learners >= 1) /* etcd 3.4 allows one learner */
            err = FL_ERR_TOO_MANY_LEARNERS;
    }
    if (err == FL_OK && !is_learner && !enough_started(srv, true, 0))
        err = FL_ERR_NOT_ENOUGH_STARTED;
    if (err == FL_OK)
        err = propose_member(srv, ENTRY_MEMBER_ADD, m, done, ctx);
    free(m);
    return err;
}

fl_err server_member_remove(server *srv, uint64_t id, server_member_done_fn done, void *ctx)
{
    fl_err err = server_write_admit(srv);
    if (err != FL_OK)
        return err;
    const cluster_member *cur = cluster_find_const(&srv->cluster, id);
    if (!cur)
        return FL_ERR_MEMBER_NOT_FOUND;
    if (!cur->is_learner && !enough_started(srv, false, id))
        return FL_ERR_NOT_ENOUGH_STARTED;
    cluster_member m = {.id = id};
    return propose_member(srv, ENTRY_MEMBER_REMOVE, &m, done, ctx);
}

fl_err server_member_update(server *srv, uint64_t id, const char *const *peer_urls, size_t n,
                            server_member_done_fn done, void *ctx)
{
    fl_err err = server_write_admit(srv);
    if (err != FL_OK)
        return err;
    if (!cluster_find_const(&srv->cluster, id))
        return FL_ERR_MEMBER_NOT_FOUND;
    cluster_member *m = calloc(1, sizeof *m);
    if (!m)
        return FL_ERR_NOMEM;
    m->id = id;
    err = fill_urls(m, peer_urls, n);
    for (size_t i = 0; i < n && err == FL_OK; i++) {
        const cluster_member *owner = cluster_find_peer_url(&srv->cluster, peer_urls[i]);
        if (owner && owner->id != id)
            err = FL_ERR_PEER_URL_EXISTS;
    }
    if (err == FL_OK)
        err = propose_member(srv, ENTRY_MEMBER_UPDATE, m, done, ctx);
    free(m);
    return err;
}

fl_err server_member_promote(server *srv, uint64_t id, server_member_done_fn done, void *ctx)
{
    fl_err err = server_write_admit(srv);
    if (err != FL_OK)
        return err;
    const cluster_member *cur = cluster_find_const(&srv->cluster, id);
    if (!cur)
        return FL_ERR_MEMBER_NOT_FOUND;
    if (!cur->is_learner)
        return FL_ERR_MEMBER_NOT_LEARNER;
    /* etcd: the learner's match must be within 10% of the leader's commit.
     * Only the leader sees progress; a follower lets the leader's
     * reconciliation wait for the learner instead (it is added as a voter
     * only by a conf change the leader proposes). */
    if (srv->role == RAFT_LEADER && !learner_in_sync(srv, id))
        return FL_ERR_LEARNER_NOT_READY;
    cluster_member m = {.id = id};
    return propose_member(srv, ENTRY_MEMBER_PROMOTE, &m, done, ctx);
}

fl_err server_move_leader(server *srv, uint64_t target, server_member_done_fn done, void *ctx)
{
    if (srv->stopping)
        return FL_ERR_STOPPED;
    if (srv->role != RAFT_LEADER)
        return FL_ERR_NOT_LEADER;
    const cluster_member *m = cluster_find_const(&srv->cluster, target);
    if (!m || m->is_learner)
        return FL_ERR_BAD_LEADER_TRANSFEREE;
    if (srv->move_waiter)
        return FL_ERR_BUSY;
    server_waiter *w = calloc(1, sizeof *w); /* owned by move_waiter until done */
    if (!w)
        return FL_ERR_NOMEM;
    w->kind = WAITER_MEMBER;
    w->member_done = done;
    w->ctx = ctx;
    w->deadline_ms = server_now_ms(srv) + srv->options.request_timeout_ms;
    if (target != srv->member_id) {
        fl_err err = raft_transfer_leader(srv->raft, target);
        if (err != FL_OK) {
            free(w);
            return err == FL_ERR_UNAVAILABLE ? FL_ERR_NOT_LEADER : err;
        }
    }
    /* answered from the tick once target leads (already, when it is us) */
    srv->move_waiter = w;
    srv->move_target = target;
    server_node_kick(srv);
    return FL_OK;
}

fl_err server_set_client_urls(server *srv, const char *urls)
{
    cluster_member m;
    if (cluster_parse_urls(urls, m.client_urls, CLUSTER_URLS_MAX, &m.n_client_urls) != FL_OK)
        return FL_ERR_INVALID;
    memcpy(srv->self.client_urls, m.client_urls, sizeof m.client_urls);
    srv->self.n_client_urls = m.n_client_urls;
    return FL_OK;
}

void server_start_serving(server *srv)
{
    srv->serving = true;
    srv->publish_ticks = 0;
    publish(srv);
}

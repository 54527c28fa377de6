/* server/cluster: the replicated membership table and its encoding.
 *
 * Owns: the list of members (id, name, peer URLs, client URLs, learner),
 * the ids of removed members (never reused: the Raft core does not support
 * it), the cluster version; its byte encoding, stored in the MVCC meta record
 * "cluster" in the same LMDB transaction as the applied index, so a snapshot
 * of the store carries it; parsing etcd's --initial-cluster; the ids.
 * Must not: touch raft, LMDB or the network; it is plain data.
 *
 * Ids (stable, as etcd's are deterministic): a member's id is FNV-1a-64 of
 * its peer URLs (as given) and the cluster token; the cluster id folds the
 * token and the initial members' ids in ascending order. A cluster of one
 * started with no cluster flags gets the same ids it always had.
 */
#ifndef FL_SERVER_CLUSTER_H
#define FL_SERVER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "util/error.h"

#define CLUSTER_URLS_MAX    16u
#define CLUSTER_REMOVED_MAX 256u
#define CLUSTER_NAME_MAX    255u
#define CLUSTER_URL_MAX     255u
#define CLUSTER_VERSION_MAX 15u

typedef struct cluster_member {
    uint64_t id;
    char name[CLUSTER_NAME_MAX + 1]; /* "" until the member published it */
    char peer_urls[CLUSTER_URLS_MAX][CLUSTER_URL_MAX + 1];
    uint32_t n_peer_urls;
    char client_urls[CLUSTER_URLS_MAX][CLUSTER_URL_MAX + 1];
    uint32_t n_client_urls;
    bool is_learner;
} cluster_member;

typedef struct cluster_state {
    uint64_t cluster_id; /* so a member that joins learns it from its first snapshot */
    cluster_member members[RAFT_MEMBERS_MAX];
    uint32_t n_members;
    uint64_t removed[CLUSTER_REMOVED_MAX];
    uint32_t n_removed;
    char version[CLUSTER_VERSION_MAX + 1]; /* "" until the leader sets it */
    uint64_t applied_term;                 /* term of the last applied entry */
    struct raft_conf conf;                 /* the Raft configuration as applied */
} cluster_state;

/* FNV-1a 64 over len bytes, continuing from seed (0 = the offset basis). */
uint64_t cluster_hash64(uint64_t seed, const void *data, size_t len);
uint64_t cluster_member_id(const char *const *peer_urls, size_t n, const char *token);
/* ids need not be sorted; the result does not depend on their order */
uint64_t cluster_cluster_id(const char *token, const uint64_t *ids, size_t n);

/* Splits "a,b,c" into urls (borrowing nothing: copied). FL_ERR_INVALID for an
 * empty list, too many or too long items. */
fl_err cluster_parse_urls(const char *text, char urls[][CLUSTER_URL_MAX + 1], uint32_t max,
                          uint32_t *n);

/* Parses etcd's --initial-cluster "name=url,name=url2,other=url3": one member
 * per distinct name, its URLs in order. Fills members (ids from token),
 * leaves client URLs empty. errbuf says what is wrong. */
fl_err cluster_parse_initial(const char *text, const char *token, cluster_state *out, char *errbuf,
                             size_t errbuf_len);

cluster_member *cluster_find(cluster_state *c, uint64_t id);
const cluster_member *cluster_find_const(const cluster_state *c, uint64_t id);
/* A member whose peer URLs include url, or NULL. */
const cluster_member *cluster_find_peer_url(const cluster_state *c, const char *url);
bool cluster_was_removed(const cluster_state *c, uint64_t id);
/* Removes a member and records its id as removed. */
void cluster_remove(cluster_state *c, uint64_t id);

/* Encoding for the meta record. encode: *out malloc'ed, owned by the caller. */
fl_err cluster_encode(const cluster_state *c, uint8_t **out, size_t *out_len);
fl_err cluster_decode(const uint8_t *data, size_t len, cluster_state *out);

#endif

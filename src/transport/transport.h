/* transport: Raft messages between the members of a cluster, over TCP.
 *
 * Owns: the peer listener, two outgoing streams per peer, one for appends and
 * one for every other message, as etcd's rafthttp (dial, handshake,
 * reconnect with capped exponential backoff + jitter), incoming streams
 * (handshake check, frame reading), a bounded send queue per peer,
 * snapshot bodies streamed on a connection of their own, the message codec
 * (codec.h: every message carries a Raft group id), and the TEST-ONLY fault
 * file that partitions a member.
 * Must not: know Raft rules (it moves struct raft_msg values and routes them
 * by type only), touch the WAL or the store, or block the loop on disk
 * (snapshot bodies are read with uv_fs_read and written in bounded steps).
 *
 * Wire format, connection life cycle and bounds: docs/transport.md.
 *
 * Threading: every function here is called on the loop thread, and every
 * callback runs on the loop thread. Callbacks are never called from inside a
 * transport_* call (always from a later loop turn).
 *
 * Loss and order: the transport may drop any message (full queue, broken
 * stream, fault file); Raft retries. Of the messages to one peer that are
 * delivered, appends arrive in the order they were sent, and all other
 * messages (snapshots aside) in the order they were sent; an append and a
 * heartbeat may overtake each other (that is the point: a heartbeat never
 * waits behind a large append), and a snapshot travels on its own
 * connection. Raft tolerates reordering.
 *
 * Life cycle: transport_create -> ... -> transport_stop(stopped) -> (loop runs
 * until stopped is called) -> transport_destroy. No transport_* call other
 * than transport_destroy after transport_stop.
 */
#ifndef FL_TRANSPORT_TRANSPORT_H
#define FL_TRANSPORT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "raft/raft.h"
#include "util/error.h"

#define TRANSPORT_QUEUE_MSGS_DEFAULT  4096u
#define TRANSPORT_QUEUE_BYTES_DEFAULT (64ull << 20)
#define TRANSPORT_FRAME_BYTES_DEFAULT (64u << 20)
#define TRANSPORT_INCOMING_MAX        64u /* accepted connections at once; more are closed */
#define TRANSPORT_PEERS_MAX           64u /* transport_add_peer beyond it: FL_ERR_BUSY */
#define TRANSPORT_SNAPSHOT_CHUNK      (1u << 20)
/* Besides Raft's own message types the codec carries this one, which Raft
 * never sees: a follower's client proposals forwarded to the leader (same
 * fields, entries only). */
#define TRANSPORT_MSG_PROPOSE ((raft_msg_type)100)

typedef struct transport transport;

typedef struct transport_options {
    uint64_t cluster_id;      /* peers of another cluster are refused (handshake) and logged;
                                 0 = joining an existing cluster: the first peer's hello
                                 sets it */
    uint64_t local_id;        /* this member's id */
    const char *listen_url;   /* "http://127.0.0.1:2380"; port 0 = pick one
                                 (transport_listen_port) */
    const char *snapshot_dir; /* existing dir where received snapshot bodies are written;
                                 NULL: incoming snapshots are refused */
    /* A message arrived. msg and everything it points to is borrowed for the call. For
       RAFT_MSG_SNAPSHOT, snapshot_path names the fully received, fsynced body file in
       snapshot_dir; the callee owns the file from then on (renames or unlinks it). NULL
       otherwise. */
    void (*on_message)(void *ctx, uint64_t group_id, const struct raft_msg *msg,
                       const char *snapshot_path);
    /* The stream to a peer broke (connect failed, reset, timeout): raft_report_unreachable.
       Called for each group sent to that peer (the first 16 groups seen). */
    void (*on_unreachable)(void *ctx, uint64_t group_id, uint64_t peer_id);
    /* Sender side of snapshots: a RAFT_MSG_SNAPSHOT's snapshot.data is a small descriptor
       chosen by the server; the transport asks for the body to stream: return an open fd
       (transport closes it) and its size. Called on the loop thread. */
    fl_err (*snapshot_open)(void *ctx, uint64_t group_id, const struct raft_msg *msg, int *fd,
                            uint64_t *size);
    /* A snapshot send finished (ok) or failed: raft_report_snapshot. */
    void (*on_snapshot_sent)(void *ctx, uint64_t group_id, uint64_t peer_id, bool ok);
    void *ctx;
    uint32_t queue_msgs_max;     /* per peer; 0 = 4096. A full queue drops (Raft retries). */
    uint64_t queue_bytes_max;    /* per peer; 0 = 64 MiB */
    uint32_t frame_bytes_max;    /* largest frame accepted; 0 = 64 MiB; at least 4096 */
    const char *test_fault_file; /* TEST-ONLY, NULL in production: each line a peer id in
                                    16-digit hex; traffic to and from them is dropped */
} transport_options;

/* Binds and listens on listen_url. On failure returns an error (FL_ERR_INVALID
 * for bad options, FL_ERR_UNAVAILABLE if the address cannot be bound), writes
 * a one-line reason into errbuf, and leaves the caller nothing to free (a
 * listener already opened is closed through the loop, which frees the rest
 * when it next runs). On success *out is owned by the caller
 * (transport_stop, then transport_destroy). The options' strings are copied. */
fl_err transport_create(uv_loop_t *loop, const transport_options *o, transport **out, char *errbuf,
                        size_t errbuf_len);
/* The port actually bound (useful with port 0). */
int transport_listen_port(const transport *t);
/* Idempotent; a new url for a known peer replaces the old one (the stream
 * reconnects). FL_ERR_INVALID for a bad url or peer_id 0 / local_id. */
fl_err transport_add_peer(transport *t, uint64_t peer_id, const char *url);
/* Drops the peer's queue and closes its streams; unknown ids are ignored. */
void transport_remove_peer(transport *t, uint64_t peer_id);
/* Encodes msg now (the caller's memory may go away after the call) and queues it to msg->to.
   FL_ERR_NOT_FOUND unknown peer, FL_ERR_BUSY queue full (dropped, counted).
   Also: FL_ERR_TOO_LARGE when the encoded message exceeds frame_bytes_max (dropped, counted).
   While the stream to the peer is down (backing off) or the peer is in the fault file, the
   message is dropped and counted, and FL_OK is returned: Raft retries.
   RAFT_MSG_SNAPSHOT: snapshot_open is called inside this call (its error is returned);
   FL_ERR_BUSY while a snapshot to that peer is in flight. After FL_OK, on_snapshot_sent is
   called exactly once, later (unless transport_stop comes first); after an error, never. */
fl_err transport_send(transport *t, uint64_t group_id, const struct raft_msg *msg);
/* True if a message from this peer arrived, or a connection to it was up, within the last
   `within_ms` (etcd's "started members" check for membership changes). */
bool transport_peer_active(const transport *t, uint64_t peer_id, uint64_t within_ms);

typedef struct transport_stats {
    uint64_t sent;       /* messages written to a socket */
    uint64_t received;   /* messages delivered to on_message */
    uint64_t dropped;    /* messages dropped: full queue, broken stream, fault file */
    uint64_t bad_frames; /* connections closed for what they sent */
    uint64_t connects;   /* outgoing streams that completed the handshake (2 per peer) */
    uint64_t snapshots_sent;
    uint64_t snapshots_received;
} transport_stats;

void transport_get_stats(const transport *t, transport_stats *out);
/* Closes all handles; stopped(ctx) is called once they are all closed. No other callback
   runs after this call. */
void transport_stop(transport *t, void (*stopped)(void *ctx), void *ctx);
/* Frees t. Only after stopped was called. */
void transport_destroy(transport *t);

#endif

/* transport/internal: the structures shared by the transport's files.
 *
 * Ownership, in one place:
 *   transport  owns its peers (array), its connections (list), the fault list,
 *              the listener, the tick timer and the flush check handle.
 *   peer       owns its queue of encoded message frames (not yet written).
 *   conn       owns its read buffer, its control frames (hello, ping, ack,
 *              snapshot frames), the frames of the write in flight, and its
 *              snapshot state (fd, temp file). A conn points to its peer
 *              (outgoing) until the peer is removed; then it is detached
 *              (peer = NULL) and closes.
 * A conn is freed when its handle is closed and no fs request of its own is
 * in flight (refs reaches 0). User callbacks that report a broken stream or a
 * failed snapshot run from the handle's close callback, so never from inside
 * a transport_* call.
 */
#ifndef FL_TRANSPORT_INTERNAL_H
#define FL_TRANSPORT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "transport/codec.h"
#include "transport/transport.h"

#define TRANSPORT_TICK_MS  20u    /* timer period: faults, deadlines, reconnects */
#define TRANSPORT_HELLO_MS 5000u  /* connect + handshake must finish within */
#define TRANSPORT_IDLE_MS  10000u /* an incoming stream silent this long is closed */
#define TRANSPORT_PING_MS  1000u  /* an idle outgoing stream sends a ping this often */
#define TRANSPORT_SNAPSHOT_STALL_MS                                                                \
    60000u                            /* a snapshot stream without progress this long fails        \
                                       */
#define TRANSPORT_KEEPALIVE_S     10u /* TCP keepalive: finds peers that vanished silently */
#define TRANSPORT_BACKOFF_MIN_MS  50u
#define TRANSPORT_BACKOFF_MAX_MS  2000u
#define TRANSPORT_GROUPS_TRACKED  16u   /* groups per peer that on_unreachable reports */
#define TRANSPORT_FAULTS_MAX      64u   /* ids read from the fault file */
#define TRANSPORT_STALL_MS        1000u /* a tick this late means the loop was stalled */
#define TRANSPORT_FAULT_FILE_MAX  4096u
#define TRANSPORT_FRAME_BYTES_MIN 4096u       /* smaller frame_bytes_max is refused */
#define TRANSPORT_READ_SLACK      (64u << 10) /* read buffer room beyond one frame */
#define TRANSPORT_LOG_INTERVAL_MS 1000u       /* one line per kind per interval */

/* One encoded frame (header + payload) in a singly linked list. counted: a
 * message frame that counts against its peer's queue bounds until written. */
struct frame {
    struct frame *next;
    uint32_t len;
    bool counted;
    uint8_t data[];
};

struct frame_list {
    struct frame *head;
    struct frame *tail;
    uint32_t count;
    uint64_t bytes;
};

typedef enum conn_role {
    CONN_OUT_MSG,  /* we dialed: a message or append stream to a peer (c->stream) */
    CONN_OUT_SNAP, /* we dialed: one snapshot to a peer */
    CONN_IN,       /* accepted: either stream kind, known after hello */
} conn_role;

enum log_slot { LOG_BAD_PEER, LOG_HANDSHAKE, LOG_INCOMING_FULL, LOG_CONNECT, LOG_SNAPSHOT, LOG__N };

struct peer;
struct conn;

/* Sender side of one snapshot (conn role CONN_OUT_SNAP). */
struct snap_out {
    uint64_t group_id;
    int fd;                /* owned; closed when the conn is freed */
    uint64_t size, offset; /* body bytes, bytes read so far */
    struct frame *begin;   /* SNAP_BEGIN frame until queued */
    struct frame *chunk;   /* chunk being read by fs_req */
    uv_fs_t fs_req;
    bool reading; /* fs_req in flight */
    bool acked;   /* the receiver confirmed: report success */
};

/* Receiver side of one snapshot (an incoming snapshot stream). */
struct snap_in {
    uint8_t *begin; /* copy of the SNAP_BEGIN payload (the message) */
    uint32_t begin_len;
    uint64_t size, got;
    uint32_t writing_len; /* bytes of the chunk write in flight */
    int fd;               /* -1 when not open */
    bool renamed;         /* the body is the callee's now */
    uv_fs_t fs_req;
    bool busy; /* fs_req in flight */
    char final_path[500];
    char tmp_path[512]; /* final_path + ".tmp" */
};

struct conn {
    transport *t;
    struct conn *prev, *next; /* t->conns */
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    conn_role role;
    codec_stream stream; /* CONN_OUT_MSG: which one; CONN_IN: from the hello */
    struct peer *peer;   /* outgoing only; NULL once detached */
    uint64_t remote_id;  /* outgoing: from the start; incoming: after hello */
    unsigned refs;       /* 1 for the handle + 1 per fs request in flight */
    bool hello_done;
    bool closing;
    bool writing;
    bool read_paused; /* a snapshot chunk is being written to disk */
    bool was_up;      /* the handshake completed once */
    uint64_t started_ms, activity_ms, write_ms;
    struct frame_list control;  /* frames of this conn not yet written */
    struct frame_list inflight; /* frames of the write in flight */
    uv_buf_t *bufs;
    uint32_t bufs_cap;
    uint8_t *rbuf; /* [rpos, rlen) not parsed yet */
    size_t rpos, rlen, rcap;
    struct snap_out *snap_out;
    struct snap_in *snap_in;
};

/* Two outgoing streams per peer, as etcd's rafthttp has: appends on one,
 * everything else (heartbeats, votes, responses, read index) on the other,
 * so a heartbeat never waits behind a large append. Order is kept within
 * each stream. */
enum { PEER_STREAM_MSG, PEER_STREAM_APPEND, PEER_STREAMS };

struct peer_stream {
    struct conn *conn;       /* NULL while backing off */
    struct frame_list queue; /* frames not yet written */
    uint32_t backoff_ms;
    uint64_t next_dial_ms;
};

struct peer {
    uint64_t id;
    char url[256];
    struct sockaddr_storage addr;
    struct peer_stream streams[PEER_STREAMS];
    uint32_t queued_msgs; /* both queues + counted frames in flight */
    uint64_t queued_bytes;
    struct conn *snap_out; /* the one snapshot in flight to it */
    bool ever_up, ever_recv;
    uint64_t last_up_ms, last_recv_ms;
    uint32_t n_groups;
    uint64_t groups[TRANSPORT_GROUPS_TRACKED];
};

struct transport {
    uv_loop_t *loop;
    transport_options o; /* strings point into the copies below */
    char listen_url[256];
    char snapshot_dir[512];
    char fault_file[512];
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_check_t flush_check;
    uv_idle_t flush_idle;
    int listen_port;
    bool stopping;
    bool flush_pending;
    bool free_when_closed; /* transport_create failed: the close callback frees t */
    unsigned live;         /* handles and conns not yet closed/freed */
    void (*stopped)(void *ctx);
    void *stopped_ctx;
    uint32_t n_peers;
    struct peer *peers[TRANSPORT_PEERS_MAX];
    struct conn *conns;
    uint32_t n_incoming;
    struct raft_entry *entries; /* decode scratch, RAFT_MSG_ENTRIES_MAX */
    uint64_t rng;
    uint64_t snap_seq;
    uint64_t last_tick_ms;
    /* fault hook */
    bool fault_known;
    int64_t fault_mtime_ns;
    int64_t fault_size;
    uint32_t n_faults;
    uint64_t faults[TRANSPORT_FAULTS_MAX];
    uint64_t log_last_ms[LOG__N];
    uint64_t log_suppressed[LOG__N];
    transport_stats stats;
};

/* transport.c */
struct peer *transport_peer_find(const transport *t, uint64_t id);
bool transport_faulted(const transport *t, uint64_t id);
/* A log line at most every TRANSPORT_LOG_INTERVAL_MS per slot; the next line
 * says how many were suppressed. */
void transport_log_limited(transport *t, enum log_slot slot, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void transport_release(transport *t); /* live--; calls stopped at 0 when stopping */
void transport_schedule_flush(transport *t);
uint64_t transport_jitter(transport *t, uint64_t ms);

/* frames (conn.c) */
struct frame *frame_new(uint32_t payload_len); /* owned by the caller; NULL on ENOMEM */
void frame_seal(struct frame *f, uint32_t payload_len);
void frame_list_push(struct frame_list *l, struct frame *f);
void frame_list_free(struct frame_list *l);

/* now - then, 0 if then is later (a timestamp moved by a stall, or taken
 * from a cached loop time): deadlines never wrap around. */
static inline uint64_t transport_elapsed(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

static inline int peer_stream_slot(codec_stream s)
{
    return s == CODEC_STREAM_APPEND ? PEER_STREAM_APPEND : PEER_STREAM_MSG;
}

/* conn.c */
struct conn *conn_new(transport *t, conn_role role);
void conn_dial(struct conn *c, const struct sockaddr *addr);
void conn_close(struct conn *c, const char *why);
void conn_unref(struct conn *c);
void conn_push_control(struct conn *c, struct frame *f);
void conn_schedule_flush(struct conn *c);
void conn_flush(struct conn *c);
void conn_process(struct conn *c);
/* Stop reading (rbuf stays put: a disk write points into it) / read again,
 * first whatever rbuf already holds. */
void conn_pause_reading(struct conn *c);
void conn_resume_reading(struct conn *c);
void conn_on_connection(uv_stream_t *server, int status);
void conn_tick(struct conn *c, uint64_t now);

/* snapshot.c */
fl_err snap_send(transport *t, struct peer *p, uint64_t group_id, const struct raft_msg *msg);
void snap_out_pump(struct conn *c);
void snap_out_free(struct snap_out *s);
fl_err snap_in_begin(struct conn *c, const uint8_t *payload, uint32_t len);
fl_err snap_in_chunk(struct conn *c, const uint8_t *payload, uint32_t len);
void snap_in_free(transport *t, struct snap_in *s);

/* fault.c */
void fault_check(transport *t);

#endif

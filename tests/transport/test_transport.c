/* The transport over real sockets on 127.0.0.1, all transports on one uv
 * loop in this process. Every wait is a loop until a condition, with a
 * deadline; a missed deadline prints what was seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "transport/codec.h"
#include "transport/transport.h"
#include "util/crc32c.h"
#include "util/log.h"

#define DEADLINE_MS 30000
#define RECORDS_MAX 8192

struct record {
    uint64_t group;
    struct raft_msg msg; /* entries/snapshot pointers cleared */
    uint32_t first_len;
    uint8_t first_data[64];
    bool has_snapshot_path;
    uint32_t snapshot_crc;
    uint64_t snapshot_size;
    uint64_t heartbeats_before; /* heartbeats received before this record */
};

struct node {
    uv_loop_t *loop;
    transport *t;
    uint64_t id;
    uint64_t cluster;
    int port;
    char dir[64];
    char fault_file[96];
    char snap_src[96]; /* file the snapshot_open callback hands out */
    uint32_t n_records;
    struct record records[RECORDS_MAX];
    uint64_t heartbeats;
    uint32_t unreachable;
    uint32_t snap_ok, snap_failed;
    transport_options opts;
};

static uv_loop_t g_loop;

/* ---- callbacks ---- */

static uint32_t file_crc(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    static uint8_t buf[1 << 16];
    uint32_t crc = 0;
    *size = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        crc = fl_crc32c(crc, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    close(fd);
    return crc;
}

static void on_message(void *ctx, uint64_t group_id, const struct raft_msg *msg,
                       const char *snapshot_path)
{
    struct node *n = ctx;
    /* Tests that send heartbeats every loop turn (as long as something else
     * takes) may get many: past the array's end they are only counted. */
    if (msg->type == RAFT_MSG_HEARTBEAT && n->n_records >= RECORDS_MAX - 64) {
        n->heartbeats++;
        return;
    }
    assert_true(n->n_records < RECORDS_MAX);
    struct record *r = &n->records[n->n_records++];
    memset(r, 0, sizeof *r);
    r->group = group_id;
    r->msg = *msg;
    r->msg.entries = NULL;
    r->msg.snapshot.data = NULL;
    r->heartbeats_before = n->heartbeats;
    if (msg->n_entries > 0 && msg->entries[0].len > 0) {
        r->first_len = msg->entries[0].len;
        memcpy(r->first_data, msg->entries[0].data,
               r->first_len < sizeof r->first_data ? r->first_len : sizeof r->first_data);
    } else if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot.len > 0) {
        r->first_len = msg->snapshot.len;
        memcpy(r->first_data, msg->snapshot.data,
               r->first_len < sizeof r->first_data ? r->first_len : sizeof r->first_data);
    }
    if (msg->type == RAFT_MSG_HEARTBEAT)
        n->heartbeats++;
    assert_int_equal(snapshot_path != NULL, msg->type == RAFT_MSG_SNAPSHOT);
    if (snapshot_path) {
        r->has_snapshot_path = true;
        r->snapshot_crc = file_crc(snapshot_path, &r->snapshot_size);
        assert_int_equal(unlink(snapshot_path), 0); /* ours now */
    }
}

static void on_unreachable(void *ctx, uint64_t group_id, uint64_t peer_id)
{
    struct node *n = ctx;
    n->unreachable++;
}

static fl_err snapshot_open(void *ctx, uint64_t group_id, const struct raft_msg *msg, int *fd,
                            uint64_t *size)
{
    struct node *n = ctx;
    *fd = open(n->snap_src, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return FL_ERR_IO;
    struct stat st;
    fstat(*fd, &st);
    *size = (uint64_t)st.st_size;
    return FL_OK;
}

static void on_snapshot_sent(void *ctx, uint64_t group_id, uint64_t peer_id, bool ok)
{
    struct node *n = ctx;
    if (ok)
        n->snap_ok++;
    else
        n->snap_failed++;
}

/* ---- fixture ---- */

static void node_start(struct node *n, uint64_t id, uint64_t cluster, int port)
{
    n->loop = &g_loop;
    n->id = id;
    n->cluster = cluster;
    if (n->dir[0] == '\0') {
        strcpy(n->dir, "/tmp/fl-transport-XXXXXX");
        assert_non_null(mkdtemp(n->dir));
        snprintf(n->fault_file, sizeof n->fault_file, "%s/faults", n->dir);
        snprintf(n->snap_src, sizeof n->snap_src, "%s/snap-src", n->dir);
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    transport_options o = n->opts;
    o.cluster_id = cluster;
    o.local_id = id;
    o.listen_url = url;
    o.snapshot_dir = n->dir;
    o.on_message = on_message;
    o.on_unreachable = on_unreachable;
    o.snapshot_open = snapshot_open;
    o.on_snapshot_sent = on_snapshot_sent;
    o.ctx = n;
    o.test_fault_file = n->fault_file;
    char err[256] = "";
    fl_err rc = transport_create(&g_loop, &o, &n->t, err, sizeof err);
    if (rc != FL_OK)
        fprintf(stderr, "transport_create: %s\n", err);
    assert_int_equal(rc, FL_OK);
    n->port = transport_listen_port(n->t);
    assert_true(n->port > 0);
}

static void on_stopped(void *ctx)
{
    *(bool *)ctx = true;
}

static void run_until_flag(bool *flag)
{
    uint64_t deadline = uv_now(&g_loop) + DEADLINE_MS;
    while (!*flag && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    assert_true(*flag);
}

static void node_stop(struct node *n)
{
    bool stopped = false;
    transport_stop(n->t, on_stopped, &stopped);
    run_until_flag(&stopped);
    transport_destroy(n->t);
    n->t = NULL;
}

static void node_cleanup(struct node *n)
{
    if (n->t)
        node_stop(n);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", n->dir);
    assert_int_equal(system(cmd), 0);
    free(n);
}

static struct node *node_new(uint64_t id, uint64_t cluster)
{
    struct node *n = calloc(1, sizeof *n);
    assert_non_null(n);
    node_start(n, id, cluster, 0);
    return n;
}

static void connect_nodes(struct node **nodes, int count)
{
    for (int i = 0; i < count; i++)
        for (int j = 0; j < count; j++) {
            if (i == j)
                continue;
            char url[64];
            snprintf(url, sizeof url, "http://127.0.0.1:%d", nodes[j]->port);
            assert_int_equal(transport_add_peer(nodes[i]->t, nodes[j]->id, url), FL_OK);
        }
}

typedef bool (*cond_fn)(void *ctx);

/* Runs the loop until cond holds; false (with a message) at the deadline. */
static bool run_until(cond_fn cond, void *ctx, const char *what)
{
    uint64_t deadline = uv_now(&g_loop) + DEADLINE_MS;
    while (!cond(ctx)) {
        if (uv_now(&g_loop) >= deadline) {
            fprintf(stderr, "deadline passed waiting for: %s\n", what);
            return false;
        }
        uv_run(&g_loop, UV_RUN_ONCE);
    }
    return true;
}

struct count_wait {
    struct node *n;
    uint32_t records;
};

static bool has_records(void *ctx)
{
    struct count_wait *w = ctx;
    return w->n->n_records >= w->records;
}

static void wait_records(struct node *n, uint32_t count)
{
    struct count_wait w = {n, count};
    if (!run_until(has_records, &w, "records")) {
        transport_stats st;
        transport_get_stats(n->t, &st);
        fprintf(stderr, "node %llu has %u records, want %u; received=%llu bad=%llu\n",
                (unsigned long long)n->id, n->n_records, count, (unsigned long long)st.received,
                (unsigned long long)st.bad_frames);
        fail();
    }
}

static struct raft_msg plain(raft_msg_type type, uint64_t from, uint64_t to, uint64_t context)
{
    return (struct raft_msg){.type = type, .from = from, .to = to, .term = 3, .context = context};
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_snapshot_source(struct node *n, uint64_t bytes, uint32_t *crc)
{
    FILE *f = fopen(n->snap_src, "w");
    assert_non_null(f);
    uint8_t block[4096];
    uint32_t c = 0;
    for (uint64_t off = 0; off < bytes; off += sizeof block) {
        size_t len = bytes - off < sizeof block ? (size_t)(bytes - off) : sizeof block;
        for (size_t i = 0; i < len; i++)
            block[i] = (uint8_t)((off + i) * 31 + (off >> 12));
        fwrite(block, 1, len, f);
        c = fl_crc32c(c, block, len);
    }
    fclose(f);
    *crc = c;
}

static int setup(void **state)
{
    assert_int_equal(uv_loop_init(&g_loop), 0);
    return 0;
}

static int teardown(void **state)
{
    /* Every handle of every transport is closed: the loop closes cleanly. */
    uv_run(&g_loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&g_loop);
    if (rc != 0)
        uv_print_all_handles(&g_loop, stderr);
    assert_int_equal(rc, 0);
    return 0;
}

/* ---- tests ---- */

static uint8_t g_payload[40];
static struct raft_entry g_two_entries[2];

/* Every message type from src to dst, fields that identify it filled in. */
static void send_every_type(struct node *src, struct node *dst, uint64_t group)
{
    for (size_t i = 0; i < sizeof g_payload; i++)
        g_payload[i] = (uint8_t)(i + 1);
    g_two_entries[0] = (struct raft_entry){
        .term = 3, .index = 10, .type = RAFT_ENTRY_NORMAL, .len = 40, .data = g_payload};
    g_two_entries[1] = (struct raft_entry){.term = 3, .index = 11, .type = RAFT_ENTRY_CONF_CHANGE};
    for (int type = RAFT_MSG_APPEND; type <= RAFT_MSG_READ_INDEX_RESP; type++) {
        struct raft_msg m = plain((raft_msg_type)type, src->id, dst->id, 100 + type);
        m.index = 1000 + type;
        m.reject = type == RAFT_MSG_VOTE_RESP;
        if (type == RAFT_MSG_APPEND) {
            m.n_entries = 2;
            m.entries = g_two_entries;
        }
        if (type == RAFT_MSG_SNAPSHOT) {
            m.snapshot.index = 77;
            m.snapshot.term = 2;
            m.snapshot.conf.n_voters = 2;
            m.snapshot.conf.voters[0] = src->id;
            m.snapshot.conf.voters[1] = dst->id;
            m.snapshot.len = 5;
            m.snapshot.data = (uint8_t *)"desc!";
        }
        assert_int_equal(transport_send(src->t, group, &m), FL_OK);
    }
}

/* dst holds exactly one of every type from each of the others, intact. */
static void check_every_type(struct node *dst, struct node **nodes, int count, uint64_t group,
                             uint32_t snapshot_crc)
{
    const uint32_t types = RAFT_MSG_READ_INDEX_RESP;
    wait_records(dst, types * (uint32_t)(count - 1));
    assert_int_equal(dst->n_records, types * (uint32_t)(count - 1));
    for (int k = 0; k < count; k++) {
        struct node *src = nodes[k];
        if (src == dst)
            continue;
        bool seen[RAFT_MSG_READ_INDEX_RESP + 1] = {0};
        for (uint32_t i = 0; i < dst->n_records; i++) {
            struct record *r = &dst->records[i];
            if (r->msg.from != src->id)
                continue;
            assert_int_equal(r->group, group);
            assert_int_equal(r->msg.to, dst->id);
            assert_int_equal(r->msg.context, 100 + r->msg.type);
            assert_int_equal(r->msg.index, 1000 + r->msg.type);
            assert_int_equal(r->msg.reject, r->msg.type == RAFT_MSG_VOTE_RESP);
            assert_false(seen[r->msg.type]);
            seen[r->msg.type] = true;
            if (r->msg.type == RAFT_MSG_APPEND) {
                assert_int_equal(r->msg.n_entries, 2);
                assert_int_equal(r->first_len, 40);
                assert_memory_equal(r->first_data, g_payload, 40);
            }
            if (r->msg.type == RAFT_MSG_SNAPSHOT) {
                assert_true(r->has_snapshot_path);
                assert_int_equal(r->snapshot_size, 12345);
                assert_int_equal(r->snapshot_crc, snapshot_crc);
                assert_int_equal(r->msg.snapshot.index, 77);
                assert_int_equal(r->msg.snapshot.conf.n_voters, 2);
                assert_int_equal(r->msg.snapshot.conf.voters[0], src->id);
                assert_int_equal(r->first_len, 5);
                assert_memory_equal(r->first_data, "desc!", 5);
            }
        }
        for (uint32_t type = RAFT_MSG_APPEND; type <= types; type++)
            assert_true(seen[type]);
    }
}

struct snap_count_wait {
    struct node *n;
    uint32_t want;
};

static bool snapshots_reported(void *ctx)
{
    struct snap_count_wait *w = ctx;
    return w->n->snap_ok + w->n->snap_failed >= w->want;
}

/* Two, then three transports: every message type from each to each other,
 * fields intact (entries, snapshot meta, and the snapshot body). */
static void test_every_type(void **state)
{
    for (int count = 2; count <= 3; count++) {
        struct node *nodes[3];
        for (int i = 0; i < count; i++)
            nodes[i] = node_new(0xa0 + (uint64_t)i, 7);
        connect_nodes(nodes, count);
        uint32_t crc = 0;
        for (int i = 0; i < count; i++)
            make_snapshot_source(nodes[i], 12345, &crc);
        const uint64_t group = 42 + (uint64_t)count;
        for (int i = 0; i < count; i++)
            for (int j = 0; j < count; j++)
                if (i != j)
                    send_every_type(nodes[i], nodes[j], group);
        for (int j = 0; j < count; j++)
            check_every_type(nodes[j], nodes, count, group, crc);
        /* A sender learns of delivery from the ack, after the receiver's
         * on_message: wait for the reports. */
        for (int i = 0; i < count; i++) {
            struct snap_count_wait w = {nodes[i], (uint32_t)count - 1};
            assert_true(run_until(snapshots_reported, &w, "snapshot reports"));
        }
        for (int i = 0; i < count; i++) {
            transport_stats st;
            transport_get_stats(nodes[i]->t, &st);
            assert_int_equal(st.snapshots_sent, (uint64_t)count - 1);
            assert_int_equal(st.snapshots_received, (uint64_t)count - 1);
            assert_int_equal(st.bad_frames, 0);
            assert_int_equal(nodes[i]->snap_ok, (uint32_t)count - 1);
            assert_true(transport_peer_active(nodes[i]->t, nodes[(i + 1) % count]->id, 1000));
        }
        for (int i = 0; i < count; i++)
            node_cleanup(nodes[i]);
    }
}

/* Three transports, each to both others; per-peer order kept. */
static void test_three_ordering(void **state)
{
    struct node *nodes[3] = {node_new(1, 9), node_new(2, 9), node_new(3, 9)};
    connect_nodes(nodes, 3);
    const uint32_t per_peer = 1500;
    /* Appends and responses alternate: each keeps its own order (they travel
     * on different streams). Spread over loop turns so batches of different
     * sizes are written. */
    for (uint32_t k = 0; k < per_peer; k++) {
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                if (i == j)
                    continue;
                raft_msg_type type = k % 2 ? RAFT_MSG_APPEND : RAFT_MSG_APPEND_RESP;
                struct raft_msg m = plain(type, nodes[i]->id, nodes[j]->id, k);
                assert_int_equal(transport_send(nodes[i]->t, 1, &m), FL_OK);
            }
        if (k % 100 == 99)
            uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    for (int j = 0; j < 3; j++)
        wait_records(nodes[j], 2 * per_peer);
    for (int j = 0; j < 3; j++) {
        /* next[from][append?]: the next context expected */
        uint64_t next[4][2] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}};
        for (uint32_t r = 0; r < nodes[j]->n_records; r++) {
            struct raft_msg *m = &nodes[j]->records[r].msg;
            assert_true(m->from >= 1 && m->from <= 3 && m->from != nodes[j]->id);
            int app = m->type == RAFT_MSG_APPEND;
            if (m->context != next[m->from][app])
                fprintf(stderr, "node %d: from %llu (%s) got %llu, want %llu\n", j,
                        (unsigned long long)m->from, raft_msg_type_name(m->type),
                        (unsigned long long)m->context, (unsigned long long)next[m->from][app]);
            assert_int_equal(m->context, next[m->from][app]);
            next[m->from][app] += 2;
        }
        for (uint64_t from = 1; from <= 3; from++)
            if (from != nodes[j]->id) {
                assert_int_equal(next[from][0], per_peer);
                assert_int_equal(next[from][1], per_peer + 1);
            }
    }
    for (int i = 0; i < 3; i++)
        node_cleanup(nodes[i]);
}

struct reconnect_wait {
    struct node *a, *b;
    uint32_t context;
};

static bool b_received_after_resend(void *ctx)
{
    struct reconnect_wait *w = ctx;
    if (w->b->n_records > 0)
        return true;
    /* Until the new stream is up, sends are dropped: keep sending, like Raft. */
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, w->a->id, w->b->id, ++w->context);
    assert_int_equal(transport_send(w->a->t, 1, &m), FL_OK);
    return false;
}

static bool a_saw_unreachable(void *ctx)
{
    return ((struct node *)ctx)->unreachable > 0;
}

/* The peer transport is destroyed and recreated on the same port: the stream
 * is reported broken, then comes back by itself. */
static void test_reconnect(void **state)
{
    struct node *a = node_new(0x10, 1), *b = node_new(0x20, 1);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct reconnect_wait w = {a, b, 0};
    assert_true(run_until(b_received_after_resend, &w, "first delivery"));
    int port = b->port;
    node_stop(b);
    assert_true(run_until(a_saw_unreachable, a, "on_unreachable after the peer went away"));
    b->n_records = 0;
    node_start(b, 0x20, 1, port);
    assert_int_equal(b->port, port);
    assert_true(run_until(b_received_after_resend, &w, "delivery after the peer came back"));
    transport_stats st;
    transport_get_stats(a->t, &st);
    assert_true(st.connects >= 2);
    node_cleanup(a);
    node_cleanup(b);
}

struct refuse_wait {
    struct node *a, *b;
};

static bool refused_both_sides(void *ctx)
{
    struct refuse_wait *w = ctx;
    transport_stats sb;
    transport_get_stats(w->b->t, &sb);
    return sb.bad_frames >= 1 && w->a->unreachable >= 1;
}

/* A peer of another cluster is refused at the handshake; nothing delivered. */
static void test_wrong_cluster_refused(void **state)
{
    struct node *a = node_new(0x1, 100), *b = node_new(0x2, 200);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct raft_msg m = plain(RAFT_MSG_VOTE, a->id, b->id, 1);
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    struct refuse_wait w = {a, b};
    assert_true(run_until(refused_both_sides, &w, "handshake refused"));
    assert_int_equal(b->n_records, 0);
    assert_int_equal(a->n_records, 0);
    transport_stats sa;
    transport_get_stats(a->t, &sa);
    assert_int_equal(sa.connects, 0);
    assert_int_equal(sa.sent, 0);
    node_cleanup(a);
    node_cleanup(b);
}

/* A raw TCP client that writes bytes and waits for the server to close. */
struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t *bytes;
    size_t len;
    bool connected, closed_by_peer, handle_closed;
    bool close_after_write; /* hang up once the bytes are written */
    size_t got;             /* bytes the transport sent us */
    char rbuf[4096];
};

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    struct raw *r = h->data;
    *buf = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void raw_closed(uv_handle_t *h)
{
    ((struct raw *)h->data)->handle_closed = true;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    if (n > 0)
        r->got += (size_t)n;
    if (n < 0 && !r->closed_by_peer && !uv_is_closing((uv_handle_t *)&r->tcp)) {
        r->closed_by_peer = true;
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
    }
}

static void raw_written(uv_write_t *req, int status)
{
    struct raw *r = req->data;
    if (r->close_after_write && !uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    assert_int_equal(status, 0);
    r->connected = true;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    if (r->len == 0)
        return;
    uv_buf_t buf = uv_buf_init((char *)r->bytes, (unsigned)r->len);
    uv_write(&r->write, (uv_stream_t *)&r->tcp, &buf, 1, raw_written);
}

static bool raw_done(void *ctx)
{
    return ((struct raw *)ctx)->handle_closed;
}

/* Connects to port and writes bytes; the caller runs the loop. */
static struct raw *raw_open(int port, const uint8_t *bytes, size_t len)
{
    struct raw *r = calloc(1, sizeof *r); /* freed by raw_free */
    assert_non_null(r);
    r->bytes = malloc(len ? len : 1);
    if (len)
        memcpy(r->bytes, bytes, len);
    r->len = len;
    uv_tcp_init(&g_loop, &r->tcp);
    r->tcp.data = r;
    r->connect.data = r;
    r->write.data = r;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    assert_int_equal(
        uv_tcp_connect(&r->connect, &r->tcp, (const struct sockaddr *)&addr, raw_connected), 0);
    return r;
}

/* Closes our side (if the transport has not) and frees r. */
static void raw_free(struct raw *r)
{
    if (!r->closed_by_peer && !uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
    assert_true(run_until(raw_done, r, "raw client closed"));
    free(r->bytes);
    free(r);
}

/* Connects to port, writes bytes, and returns once the transport closed the
 * connection (fails the test if it does not within the deadline). */
static void raw_send_expect_close(int port, const uint8_t *bytes, size_t len)
{
    struct raw *r = raw_open(port, bytes, len);
    /* Well inside TRANSPORT_HELLO_MS and the idle timeout: the close must
     * come from the check on the bytes, not from a deadline. */
    uint64_t deadline = uv_now(&g_loop) + 3000;
    while (!raw_done(r) && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    if (!raw_done(r))
        fprintf(stderr, "the transport did not close a bad connection within 3 s\n");
    assert_true(raw_done(r));
    raw_free(r);
}

static size_t put_frame(uint8_t *out, const uint8_t *payload, uint32_t len)
{
    memcpy(out + CODEC_FRAME_HEADER, payload, len);
    codec_frame_header(out, out + CODEC_FRAME_HEADER, len);
    return CODEC_FRAME_HEADER + len;
}

static size_t put_hello_stream(uint8_t *out, uint16_t version, codec_stream stream,
                               uint64_t cluster, uint64_t from, uint64_t to)
{
    struct codec_hello h = {
        .version = version, .stream = stream, .cluster_id = cluster, .from = from, .to = to};
    uint8_t p[CODEC_HELLO_BYTES];
    codec_hello_encode(&h, p);
    return put_frame(out, p, sizeof p);
}

static size_t put_hello(uint8_t *out, uint16_t version, uint64_t cluster, uint64_t from,
                        uint64_t to)
{
    return put_hello_stream(out, version, CODEC_STREAM_MSG, cluster, from, to);
}

struct serving_wait {
    struct node *a, *b;
    uint32_t want;
    uint32_t context;
};

static bool b_got_more(void *ctx)
{
    struct serving_wait *w = ctx;
    if (w->b->n_records >= w->want)
        return true;
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, w->a->id, w->b->id, ++w->context);
    transport_send(w->a->t, 1, &m);
    return false;
}

/* Garbage, a bad crc, an oversized frame, a bad version, a malformed
 * message: each closes that connection, is counted, and the good peer keeps
 * being served. */
static void test_bad_input_closes_connection(void **state)
{
    struct node *a = node_new(0xa, 5);
    struct node *b = calloc(1, sizeof *b);
    b->opts.frame_bytes_max = 1 << 16;
    node_start(b, 0xb, 5, 0);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct serving_wait w = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &w, "delivery before the bad inputs"));

    uint8_t buf[512];
    size_t n;
    struct {
        const char *name;
        size_t len;
        uint8_t bytes[512];
    } cases[7];
    int nc = 0;
    /* 1. plain garbage */
    cases[nc].name = "garbage";
    memset(cases[nc].bytes, 'G', 64);
    cases[nc++].len = 64;
    /* 2. a hello with a bad crc */
    n = put_hello(buf, CODEC_WIRE_VERSION, 5, 0xc, 0xb);
    buf[5] ^= 0xff;
    cases[nc].name = "bad crc";
    memcpy(cases[nc].bytes, buf, n);
    cases[nc++].len = n;
    /* 3. a frame over frame_bytes_max (only the header is sent) */
    memset(buf, 0, 8);
    buf[0] = 0x01;
    buf[3] = 0x01; /* 16 MiB + 1 */
    cases[nc].name = "oversized frame";
    memcpy(cases[nc].bytes, buf, 8);
    cases[nc++].len = 8;
    /* 3b. the same after a good hello */
    n = put_hello(buf, CODEC_WIRE_VERSION, 5, 0xc, 0xb);
    memset(buf + n, 0, 8);
    buf[n] = 0x01;
    buf[n + 3] = 0x01;
    cases[nc].name = "oversized frame after hello";
    memcpy(cases[nc].bytes, buf, n + 8);
    cases[nc++].len = n + 8;
    /* 4. an unknown protocol version */
    n = put_hello(buf, 99, 5, 0xc, 0xb);
    cases[nc].name = "unknown version";
    memcpy(cases[nc].bytes, buf, n);
    cases[nc++].len = n;
    /* 5. a good hello, then a message frame whose payload is not a message */
    n = put_hello(buf, CODEC_WIRE_VERSION, 5, 0xc, 0xb);
    uint8_t bad_msg[20] = {CODEC_KIND_MSG, CODEC_MSG_VERSION, 1, 2, 3};
    n += put_frame(buf + n, bad_msg, sizeof bad_msg);
    cases[nc].name = "malformed message";
    memcpy(cases[nc].bytes, buf, n);
    cases[nc++].len = n;
    /* 6. a good hello, then a good frame of a kind a message stream never carries */
    n = put_hello(buf, CODEC_WIRE_VERSION, 5, 0xc, 0xb);
    uint8_t ack[1] = {CODEC_KIND_SNAP_ACK};
    n += put_frame(buf + n, ack, 1);
    cases[nc].name = "unexpected kind";
    memcpy(cases[nc].bytes, buf, n);
    cases[nc++].len = n;

    for (int i = 0; i < nc; i++) {
        transport_stats before, after;
        transport_get_stats(b->t, &before);
        fprintf(stderr, "bad input case: %s\n", cases[i].name);
        raw_send_expect_close(b->port, cases[i].bytes, cases[i].len);
        transport_get_stats(b->t, &after);
        assert_int_equal(after.bad_frames, before.bad_frames + 1);
        w.want = b->n_records + 1;
        assert_true(run_until(b_got_more, &w, "delivery from the good peer after a bad input"));
    }
    /* The good streams (messages and appends) were never broken. */
    transport_stats sa;
    transport_get_stats(a->t, &sa);
    assert_int_equal(sa.connects, 2);
    assert_int_equal(a->unreachable, 0);
    node_cleanup(a);
    node_cleanup(b);
}

/* A full queue drops and counts; what was queued arrives. */
static void test_full_queue_drops(void **state)
{
    struct node *a = calloc(1, sizeof *a);
    a->opts.queue_msgs_max = 10;
    a->opts.queue_bytes_max = 4096;
    node_start(a, 0xaa, 3, 0);
    struct node *b = node_new(0xbb, 3);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    /* The stream is still connecting: messages queue up to the bound. */
    int ok = 0, busy = 0;
    for (int i = 0; i < 25; i++) {
        struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, (uint64_t)i);
        fl_err err = transport_send(a->t, 1, &m);
        assert_true(err == FL_OK || err == FL_ERR_BUSY);
        err == FL_OK ? ok++ : busy++;
    }
    assert_int_equal(ok, 10);
    assert_int_equal(busy, 15);
    transport_stats st;
    transport_get_stats(a->t, &st);
    assert_int_equal(st.dropped, 15);
    wait_records(b, 10);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(b->records[i].msg.context, i);
    /* The byte bound: one append of 3000 bytes fits, a second does not. */
    static uint8_t big[3000];
    struct raft_entry e = {.term = 1, .index = 1, .len = sizeof big, .data = big};
    struct raft_msg m = plain(RAFT_MSG_APPEND, a->id, b->id, 99);
    m.n_entries = 1;
    m.entries = &e;
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    assert_int_equal(transport_send(a->t, 1, &m), FL_ERR_BUSY);
    wait_records(b, 11);
    transport_get_stats(a->t, &st);
    assert_int_equal(st.dropped, 16);
    /* Unknown peer. */
    m.to = 0x999;
    assert_int_equal(transport_send(a->t, 1, &m), FL_ERR_NOT_FOUND);
    node_cleanup(a);
    node_cleanup(b);
}

struct snap_wait {
    struct node *a, *b;
    uint32_t context;
};

static bool snapshot_arrived(void *ctx)
{
    struct snap_wait *w = ctx;
    if (w->a->snap_ok + w->a->snap_failed > 0)
        return true;
    /* Heartbeats every loop turn while the body streams. */
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, w->a->id, w->b->id, ++w->context);
    transport_send(w->a->t, 1, &m);
    return false;
}

/* An 8 MiB body streams on its own connection while heartbeats keep flowing
 * on the message stream; the body arrives intact; one snapshot per peer. */
static void test_snapshot_streams_beside_heartbeats(void **state)
{
    struct node *a = node_new(0x5a, 8), *b = node_new(0x5b, 8);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct serving_wait sw = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &sw, "stream up"));
    b->n_records = 0;
    b->heartbeats = 0;
    const uint64_t size = 8ull << 20;
    uint32_t crc;
    make_snapshot_source(a, size, &crc);
    struct raft_msg m = plain(RAFT_MSG_SNAPSHOT, a->id, b->id, 0);
    m.snapshot.index = 1000;
    m.snapshot.term = 5;
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    assert_int_equal(transport_send(a->t, 1, &m), FL_ERR_BUSY);
    struct snap_wait w = {a, b, 0};
    assert_true(run_until(snapshot_arrived, &w, "snapshot sent"));
    assert_int_equal(a->snap_ok, 1);
    struct record *snap = NULL;
    for (uint32_t i = 0; i < b->n_records; i++)
        if (b->records[i].msg.type == RAFT_MSG_SNAPSHOT)
            snap = &b->records[i];
    assert_non_null(snap);
    assert_int_equal(snap->snapshot_size, size);
    assert_int_equal(snap->snapshot_crc, crc);
    assert_int_equal(snap->msg.snapshot.index, 1000);
    fprintf(stderr, "heartbeats delivered while the snapshot streamed: %llu (sent %u)\n",
            (unsigned long long)snap->heartbeats_before, w.context);
    /* Heartbeats were not held behind the body. */
    assert_true(snap->heartbeats_before >= 3);
    /* No temp file left behind (the delivered file was unlinked by the callee). */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '^snap-.*snap'", b->dir);
    assert_int_not_equal(system(cmd), 0);
    node_cleanup(a);
    node_cleanup(b);
}

struct fault_wait {
    struct node *a, *b;
    uint32_t context;
};

static bool both_receiving(void *ctx)
{
    struct fault_wait *w = ctx;
    if (w->a->n_records > 0 && w->b->n_records > 0)
        return true;
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, w->a->id, w->b->id, ++w->context);
    transport_send(w->a->t, 1, &m);
    m = plain(RAFT_MSG_HEARTBEAT, w->b->id, w->a->id, w->context);
    transport_send(w->b->t, 1, &m);
    return false;
}

/* Only a's fault file names b: traffic is dropped both ways (a drops its
 * sends and b's frames); removing the file restores it. */
static void test_fault_file(void **state)
{
    struct node *a = node_new(0xfa, 4), *b = node_new(0xfb, 4);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct fault_wait w = {a, b, 0};
    assert_true(run_until(both_receiving, &w, "traffic before the fault"));
    char line[64];
    snprintf(line, sizeof line, "# partition\n%016llx\n", (unsigned long long)b->id);
    write_file(a->fault_file, line);
    /* The tick re-reads the file within TRANSPORT_TICK_MS. */
    uint64_t deadline = uv_now(&g_loop) + DEADLINE_MS;
    while (transport_peer_active(a->t, b->id, 60000) && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    assert_false(transport_peer_active(a->t, b->id, 60000));
    a->n_records = b->n_records = 0;
    transport_stats sa;
    transport_get_stats(a->t, &sa);
    /* a drops its own sends to b and the frames b sends it. */
    uint64_t a_dropped_before = sa.dropped;
    uint32_t sends = 0;
    while (sends < 50) {
        struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, 1000 + sends);
        assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
        m = plain(RAFT_MSG_HEARTBEAT, b->id, a->id, 1000 + sends);
        assert_int_equal(transport_send(b->t, 1, &m), FL_OK);
        sends++;
        uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    /* Wait until a has dropped all 50 of its sends and all 50 of b's. */
    deadline = uv_now(&g_loop) + DEADLINE_MS;
    for (;;) {
        transport_get_stats(a->t, &sa);
        if (sa.dropped >= a_dropped_before + 100 || uv_now(&g_loop) >= deadline)
            break;
        uv_run(&g_loop, UV_RUN_ONCE);
    }
    fprintf(stderr, "a dropped %llu while partitioned\n",
            (unsigned long long)(sa.dropped - a_dropped_before));
    assert_true(sa.dropped >= a_dropped_before + 100);
    assert_int_equal(a->n_records, 0);
    assert_int_equal(b->n_records, 0);
    /* Snapshots fail both ways too (reported, never delivered). */
    uint32_t crc;
    make_snapshot_source(a, 1000, &crc);
    make_snapshot_source(b, 1000, &crc);
    struct raft_msg snap = plain(RAFT_MSG_SNAPSHOT, a->id, b->id, 0);
    assert_int_equal(transport_send(a->t, 1, &snap), FL_OK);
    snap = plain(RAFT_MSG_SNAPSHOT, b->id, a->id, 0);
    assert_int_equal(transport_send(b->t, 1, &snap), FL_OK);
    deadline = uv_now(&g_loop) + DEADLINE_MS;
    while ((a->snap_failed == 0 || b->snap_failed == 0) && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_ONCE);
    assert_int_equal(a->snap_failed, 1);
    assert_int_equal(b->snap_failed, 1);
    assert_int_equal(a->snap_ok + b->snap_ok, 0);
    assert_int_equal(a->n_records + b->n_records, 0);
    /* Heal. */
    assert_int_equal(unlink(a->fault_file), 0);
    assert_true(run_until(both_receiving, &w, "traffic after the fault file is removed"));
    node_cleanup(a);
    node_cleanup(b);
}

/* Peer bookkeeping: remove, url change, bad urls. */
static void test_peers(void **state)
{
    struct node *a = node_new(0x71, 2), *b = node_new(0x72, 2);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", b->port);
    assert_int_equal(transport_add_peer(a->t, b->id, url), FL_OK); /* idempotent */
    assert_int_equal(transport_add_peer(a->t, 0, url), FL_ERR_INVALID);
    assert_int_equal(transport_add_peer(a->t, a->id, url), FL_ERR_INVALID);
    assert_int_equal(transport_add_peer(a->t, 0x99, "https://127.0.0.1:1"), FL_ERR_INVALID);
    assert_int_equal(transport_add_peer(a->t, 0x99, "http://127.0.0.1"), FL_ERR_INVALID);
    assert_int_equal(transport_add_peer(a->t, 0x99, "http://127.0.0.1:99999"), FL_ERR_INVALID);
    struct serving_wait w = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &w, "delivery"));
    /* A url change moves the stream: still delivered (same place, new conn). */
    snprintf(url, sizeof url, "http://localhost:%d/", b->port);
    assert_int_equal(transport_add_peer(a->t, b->id, url), FL_OK);
    w.want = b->n_records + 1;
    assert_true(run_until(b_got_more, &w, "delivery after a url change"));
    transport_remove_peer(a->t, b->id);
    transport_remove_peer(a->t, 0x12345); /* unknown: ignored */
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, 1);
    assert_int_equal(transport_send(a->t, 1, &m), FL_ERR_NOT_FOUND);
    assert_false(transport_peer_active(a->t, b->id, 100000));
    node_cleanup(a);
    node_cleanup(b);
}

struct raws_wait {
    struct raw **raws;
    int count;
};

static bool all_answered(void *ctx)
{
    struct raws_wait *w = ctx;
    for (int i = 0; i < w->count; i++)
        if (w->raws[i]->got == 0 || w->raws[i]->closed_by_peer)
            return false;
    return true;
}

static bool raw_answered_or_closed(void *ctx)
{
    struct raw *r = ctx;
    return r->got > 0 || r->closed_by_peer;
}

/* At most TRANSPORT_INCOMING_MAX incoming connections: the next one is
 * closed without an answer; once one goes away, a new one is served. */
static void test_incoming_connection_limit(void **state)
{
    struct node *b = node_new(0xb0, 6);
    enum { LIMIT = 64 };
    _Static_assert(LIMIT == TRANSPORT_INCOMING_MAX, "the test follows the header");
    struct raw *raws[LIMIT];
    uint8_t hello[64];
    size_t n = put_hello(hello, CODEC_WIRE_VERSION, 6, 0xc0, 0xb0);
    for (int i = 0; i < LIMIT; i++)
        raws[i] = raw_open(b->port, hello, n);
    struct raws_wait w = {raws, LIMIT};
    assert_true(run_until(all_answered, &w, "64 handshakes answered"));
    struct raw *extra = raw_open(b->port, hello, n);
    assert_true(run_until(raw_answered_or_closed, extra, "the 65th connection handled"));
    assert_int_equal(extra->got, 0);
    assert_true(extra->closed_by_peer);
    raw_free(extra);
    /* The 64 are still served. */
    for (int i = 0; i < LIMIT; i++)
        assert_false(raws[i]->closed_by_peer);
    raw_free(raws[0]);
    /* The transport learns of the close when it reads the EOF; retry until
     * the freed slot is taken (bounded). */
    bool served = false;
    for (int attempt = 0; attempt < 50 && !served; attempt++) {
        struct raw *r = raw_open(b->port, hello, n);
        assert_true(run_until(raw_answered_or_closed, r, "a new connection handled"));
        served = r->got > 0 && !r->closed_by_peer;
        raw_free(r);
    }
    assert_true(served);
    for (int i = 1; i < LIMIT; i++)
        raw_free(raws[i]);
    node_cleanup(b);
}

static bool dir_has_tmp(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '\\.tmp$'", dir);
    return system(cmd) == 0;
}

struct started_wait {
    struct node *a, *b;
};

/* The receiver has a temp file, or the sender already reported (which the
 * test then shows as a failure, with the stats). */
static bool receiving_started(void *ctx)
{
    struct started_wait *w = ctx;
    return w->a->snap_ok + w->a->snap_failed > 0 || dir_has_tmp(w->b->dir);
}

static bool sender_reported(void *ctx)
{
    struct node *n = ctx;
    return n->snap_ok + n->snap_failed > 0;
}

static bool tmp_gone(void *ctx)
{
    return !dir_has_tmp(((struct node *)ctx)->dir);
}

/* Either side stopping in the middle of a body: the sender reports failure
 * (or, stopping itself, nothing), the receiver leaves no temp file, and
 * nothing leaks (ASan). */
static void test_stop_during_snapshot(void **state)
{
    for (int stop_receiver = 0; stop_receiver <= 1; stop_receiver++) {
        struct node *a = node_new(0x61, 8), *b = node_new(0x62, 8);
        struct node *nodes[] = {a, b};
        connect_nodes(nodes, 2);
        uint32_t crc;
        make_snapshot_source(a, 16ull << 20, &crc);
        struct raft_msg m = plain(RAFT_MSG_SNAPSHOT, a->id, b->id, 0);
        assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
        struct started_wait sw = {a, b};
        assert_true(run_until(receiving_started, &sw, "the receiver's temp file"));
        if (a->snap_ok + a->snap_failed > 0) {
            transport_stats sa, sb;
            transport_get_stats(a->t, &sa);
            transport_get_stats(b->t, &sb);
            fprintf(stderr,
                    "snapshot ended before the test saw it start: ok=%u failed=%u "
                    "b.snapshots_received=%llu b.bad_frames=%llu\n",
                    a->snap_ok, a->snap_failed, (unsigned long long)sb.snapshots_received,
                    (unsigned long long)sb.bad_frames);
            fail();
        }
        if (stop_receiver) {
            node_stop(b);
            assert_true(run_until(sender_reported, a, "the sender's report"));
            assert_int_equal(a->snap_failed, 1);
            assert_false(dir_has_tmp(b->dir));
        } else {
            node_stop(a);
            assert_int_equal(a->snap_ok + a->snap_failed, 0); /* none after stop */
            assert_true(run_until(tmp_gone, b, "the receiver to drop its temp file"));
        }
        assert_int_equal(b->n_records, 0);
        node_cleanup(a);
        node_cleanup(b);
    }
}

/* A send from a timer callback (Raft's tick) must not sit in the queue while
 * the loop blocks in poll: with frames waiting, the loop's poll timeout is 0,
 * and once they are written the loop may block again. */
static void test_send_does_not_wait_for_poll(void **state)
{
    struct node *a = node_new(0xd1, 2), *b = node_new(0xd2, 2);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct serving_wait w = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &w, "stream up"));
    /* Let the loop settle: nothing pending, so the poll may block. */
    uint64_t deadline = uv_now(&g_loop) + DEADLINE_MS;
    while (uv_backend_timeout(&g_loop) == 0 && uv_now(&g_loop) < deadline)
        uv_run(&g_loop, UV_RUN_NOWAIT);
    assert_int_not_equal(uv_backend_timeout(&g_loop), 0);
    uint32_t before = b->n_records;
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, 12345);
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    assert_int_equal(uv_backend_timeout(&g_loop), 0);
    wait_records(b, before + 1);
    assert_int_equal(b->records[before].msg.context, 12345);
    node_cleanup(a);
    node_cleanup(b);
}

/* A heartbeat sent right after a large append arrives before it: appends
 * have a stream of their own, so nothing small waits behind them. */
static void test_heartbeat_overtakes_big_append(void **state)
{
    struct node *a = node_new(0xe1, 2), *b = node_new(0xe2, 2);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    /* Both streams up: one message each way on each. */
    struct serving_wait w = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &w, "message stream up"));
    struct raft_entry small = {.term = 1, .index = 1, .len = 1, .data = (uint8_t *)"x"};
    struct raft_msg m = plain(RAFT_MSG_APPEND, a->id, b->id, 1);
    m.n_entries = 1;
    m.entries = &small;
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    wait_records(b, b->n_records + 1);
    uint32_t base = b->n_records;
    const uint32_t big_bytes = 16u << 20;
    uint8_t *big = malloc(big_bytes);
    assert_non_null(big);
    memset(big, 0xab, big_bytes);
    struct raft_entry e = {.term = 1, .index = 2, .len = big_bytes, .data = big};
    m = plain(RAFT_MSG_APPEND, a->id, b->id, 2);
    m.n_entries = 1;
    m.entries = &e;
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    free(big); /* encoded at send time */
    struct raft_msg hb = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, 3);
    assert_int_equal(transport_send(a->t, 1, &hb), FL_OK);
    wait_records(b, base + 2);
    fprintf(stderr, "arrival order: %s then %s\n", raft_msg_type_name(b->records[base].msg.type),
            raft_msg_type_name(b->records[base + 1].msg.type));
    assert_int_equal(b->records[base].msg.type, RAFT_MSG_HEARTBEAT);
    assert_int_equal(b->records[base + 1].msg.type, RAFT_MSG_APPEND);
    assert_int_equal(b->records[base + 1].first_len, big_bytes);
    node_cleanup(a);
    node_cleanup(b);
}

static bool both_streams_up(void *ctx)
{
    struct node *n = ctx;
    transport_stats st;
    transport_get_stats(n->t, &st);
    return st.connects >= 2;
}

/* A loop stalled longer than the handshake deadline (another callback ran
 * long) must not time out the connections it could not serve meanwhile. */
static void test_loop_stall_is_not_a_timeout(void **state)
{
    struct node *a = node_new(0xc1, 2), *b = node_new(0xc2, 2);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2); /* dials now; nothing is read until the loop runs */
    /* Queued on the connecting streams: a timeout would drop them. */
    struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, a->id, b->id, 1);
    assert_int_equal(transport_send(a->t, 1, &m), FL_OK);
    m = plain(RAFT_MSG_HEARTBEAT, b->id, a->id, 1);
    assert_int_equal(transport_send(b->t, 1, &m), FL_OK);
    usleep(5500 * 1000); /* the stall under test, longer than TRANSPORT_HELLO_MS */
    assert_true(run_until(both_streams_up, a, "a's streams up after the stall"));
    assert_true(run_until(both_streams_up, b, "b's streams up after the stall"));
    wait_records(a, 1);
    wait_records(b, 1);
    transport_stats sa, sb;
    transport_get_stats(a->t, &sa);
    transport_get_stats(b->t, &sb);
    assert_int_equal(sa.dropped + sb.dropped, 0);
    assert_int_equal(sa.connects, 2); /* the first dials, not redials */
    assert_int_equal(a->unreachable + b->unreachable, 0);
    node_cleanup(a);
    node_cleanup(b);
}

/* transport_create refuses what it cannot serve, says why, and leaves
 * nothing behind (the loop closes cleanly in teardown; ASan sees no leak). */
static void test_create_errors(void **state)
{
    struct node *a = node_new(0x91, 1);
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", a->port);
    transport_options o = {
        .cluster_id = 1, .local_id = 0x92, .listen_url = url, .on_message = on_message, .ctx = a};
    transport *t = NULL;
    err[0] = '\0';
    assert_int_equal(transport_create(&g_loop, &o, &t, err, sizeof err), FL_ERR_UNAVAILABLE);
    assert_null(t);
    fprintf(stderr, "port in use: %s\n", err);
    assert_non_null(strstr(err, "listen"));
    o.listen_url = "127.0.0.1:2380";
    assert_int_equal(transport_create(&g_loop, &o, &t, err, sizeof err), FL_ERR_INVALID);
    o.listen_url = "http://127.0.0.1:0";
    o.local_id = 0;
    assert_int_equal(transport_create(&g_loop, &o, &t, err, sizeof err), FL_ERR_INVALID);
    o.local_id = 0x92;
    o.frame_bytes_max = 100;
    assert_int_equal(transport_create(&g_loop, &o, &t, err, sizeof err), FL_ERR_INVALID);
    assert_null(t);
    node_cleanup(a);
}

struct idle_wait {
    struct raw *silent, *hello_only;
    uint64_t silent_closed_ms, hello_closed_ms;
};

static bool both_idle_closed(void *ctx)
{
    struct idle_wait *w = ctx;
    uint64_t now = uv_hrtime() / 1000000;
    if (w->silent->closed_by_peer && !w->silent_closed_ms)
        w->silent_closed_ms = now;
    if (w->hello_only->closed_by_peer && !w->hello_closed_ms)
        w->hello_closed_ms = now;
    return w->silent_closed_ms && w->hello_closed_ms;
}

/* Idle incoming connections are closed: one that never says hello after the
 * hello deadline (5 s), one that says hello and then nothing after the idle
 * deadline (10 s); neither earlier. */
static void test_idle_connections_time_out(void **state)
{
    struct node *b = node_new(0x1d, 6);
    uint8_t hello[64];
    size_t n = put_hello(hello, CODEC_WIRE_VERSION, 6, 0x2d, 0x1d);
    uint64_t start_ms = uv_hrtime() / 1000000;
    struct idle_wait w = {raw_open(b->port, NULL, 0), raw_open(b->port, hello, n), 0, 0};
    assert_true(run_until(both_idle_closed, &w, "idle connections closed"));
    fprintf(stderr, "closed after %llu ms (no hello) and %llu ms (hello only)\n",
            (unsigned long long)(w.silent_closed_ms - start_ms),
            (unsigned long long)(w.hello_closed_ms - start_ms));
    assert_true(w.silent_closed_ms - start_ms >= 5000);
    assert_true(w.hello_closed_ms - start_ms >= 10000);
    assert_true(w.hello_only->got > 0); /* it was answered, so it was served */
    transport_stats st;
    transport_get_stats(b->t, &st);
    assert_int_equal(st.bad_frames, 1); /* no hello in time is bad; idling is not */
    raw_free(w.silent);
    raw_free(w.hello_only);
    node_cleanup(b);
}

static uint64_t g_rng = 1;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* One random blob: noise, or a good hello and then frames with good crcs
 * around random payloads, or a good hello and a real message with bytes
 * changed (re-checksummed, so the codec sees them). */
static size_t random_blob(uint8_t *out, size_t cap)
{
    size_t n = 0;
    int kind = (int)(rnd() % 3);
    if (kind == 0) {
        n = 1 + rnd() % 600;
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)rnd();
        return n;
    }
    n = put_hello(out, CODEC_WIRE_VERSION, 5, 0xc, 0xb);
    uint8_t payload[400];
    for (int frames = 1 + (int)(rnd() % 4); frames > 0; frames--) {
        uint32_t len;
        if (kind == 1) {
            len = 1 + (uint32_t)(rnd() % 300);
            for (uint32_t i = 0; i < len; i++)
                payload[i] = (uint8_t)rnd();
            payload[0] = (uint8_t)(1 + rnd() % 7); /* mostly known kinds */
        } else {
            struct raft_msg m = plain((raft_msg_type)(1 + rnd() % 12), 0xc, 0xb, rnd());
            if (m.type == RAFT_MSG_SNAPSHOT)
                m.type = RAFT_MSG_APPEND;
            uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
            struct raft_entry e = {.term = 1, .index = 2, .len = 8, .data = data};
            m.n_entries = m.type == RAFT_MSG_APPEND ? 1 : 0;
            m.entries = &e;
            len = 1 + (uint32_t)codec_msg_size(&m);
            payload[0] = CODEC_KIND_MSG;
            codec_msg_encode(1, &m, payload + 1);
            for (int flips = (int)(rnd() % 3); flips > 0; flips--)
                payload[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
        }
        if (n + CODEC_FRAME_HEADER + len > cap)
            break;
        n += put_frame(out + n, payload, len);
    }
    return n;
}

/* Many connections send random bytes and hang up; the transport stays up,
 * keeps serving the good peer, and (under ASan) touches nothing it should
 * not. Seed: TRANSPORT_TEST_SEED (printed). */
static void test_random_input(void **state)
{
    struct node *a = node_new(0xa, 5);
    struct node *b = calloc(1, sizeof *b);
    b->opts.frame_bytes_max = 1 << 16;
    node_start(b, 0xb, 5, 0);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    struct serving_wait w = {a, b, 1, 0};
    assert_true(run_until(b_got_more, &w, "delivery before the noise"));
    static uint8_t blob[4096];
    for (int i = 0; i < 300; i++) {
        size_t n = random_blob(blob, sizeof blob);
        struct raw *r = raw_open(b->port, blob, n);
        r->close_after_write = true;
        assert_true(run_until(raw_done, r, "random connection finished"));
        raw_free(r);
        if (i % 50 == 49) {
            w.want = b->n_records + 1;
            assert_true(run_until(b_got_more, &w, "delivery from the good peer amid noise"));
        }
    }
    transport_stats st;
    transport_get_stats(b->t, &st);
    fprintf(stderr, "random input: bad_frames=%llu received=%llu\n",
            (unsigned long long)st.bad_frames, (unsigned long long)st.received);
    assert_true(st.bad_frames > 0);
    transport_get_stats(a->t, &st);
    assert_int_equal(st.connects, 2); /* the good streams never broke */
    node_cleanup(a);
    node_cleanup(b);
}

/* One incoming snapshot per peer: a second snapshot stream from the same
 * member is closed unanswered while the first is open; another member's is
 * served. And a message over frame_bytes_max is refused at the sender. */
static void test_one_incoming_snapshot_per_peer(void **state)
{
    struct node *b = calloc(1, sizeof *b);
    b->opts.frame_bytes_max = 1 << 16;
    node_start(b, 0x5b, 8, 0);
    uint8_t hello[64];
    size_t n = put_hello_stream(hello, CODEC_WIRE_VERSION, CODEC_STREAM_SNAPSHOT, 8, 0x5c, 0x5b);
    struct raw *first = raw_open(b->port, hello, n);
    assert_true(run_until(raw_answered_or_closed, first, "first snapshot stream answered"));
    assert_true(first->got > 0 && !first->closed_by_peer);
    struct raw *second = raw_open(b->port, hello, n);
    assert_true(run_until(raw_answered_or_closed, second, "second snapshot stream handled"));
    assert_int_equal(second->got, 0);
    assert_true(second->closed_by_peer);
    n = put_hello_stream(hello, CODEC_WIRE_VERSION, CODEC_STREAM_SNAPSHOT, 8, 0x5d, 0x5b);
    struct raw *other = raw_open(b->port, hello, n);
    assert_true(run_until(raw_answered_or_closed, other, "another member's snapshot stream"));
    assert_true(other->got > 0 && !other->closed_by_peer);
    raw_free(first);
    raw_free(second);
    raw_free(other);

    struct node *a = node_new(0x5a, 8);
    struct node *nodes[] = {a, b};
    connect_nodes(nodes, 2);
    static uint8_t big[70000];
    struct raft_entry e = {.term = 1, .index = 1, .len = sizeof big, .data = big};
    struct raft_msg m = plain(RAFT_MSG_APPEND, b->id, a->id, 1);
    m.n_entries = 1;
    m.entries = &e;
    transport_stats before, after;
    transport_get_stats(b->t, &before);
    assert_int_equal(transport_send(b->t, 1, &m), FL_ERR_TOO_LARGE);
    transport_get_stats(b->t, &after);
    assert_int_equal(after.dropped, before.dropped + 1);
    node_cleanup(a);
    node_cleanup(b);
}

static bool all_pairs_deliver(void *ctx)
{
    struct node **nodes = ctx;
    bool all = true;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            if (i == j)
                continue;
            bool seen = false;
            for (uint32_t r = 0; r < nodes[j]->n_records && !seen; r++)
                seen = nodes[j]->records[r].msg.from == nodes[i]->id &&
                       nodes[j]->records[r].msg.term == 99;
            if (!seen) {
                all = false;
                struct raft_msg m = plain(RAFT_MSG_HEARTBEAT, nodes[i]->id, nodes[j]->id, 0);
                m.term = 99;
                transport_send(nodes[i]->t, 1, &m);
            }
        }
    return all;
}

/* A seeded schedule of sends (appends of random sizes and small messages),
 * member restarts on the same port and fault-file partitions among three
 * transports. Whatever is delivered arrives in order per sender and stream
 * (appends / the rest), nothing is delivered twice, and once healed every
 * pair talks again. Seed: TRANSPORT_TEST_SEED (printed). */
static void test_random_schedule(void **state)
{
    struct node *nodes[3] = {node_new(0x31, 4), node_new(0x32, 4), node_new(0x33, 4)};
    connect_nodes(nodes, 3);
    uint64_t next_ctx = 1; /* one counter: contexts are unique and increasing */
    static uint8_t data[200000];
    int restarts = 0, partitions = 0;
    for (int step = 0; step < 3000; step++) {
        uint64_t dice = rnd() % 1000;
        int i = (int)(rnd() % 3), j = (int)((i + 1 + rnd() % 2) % 3);
        if (dice < 3) {
            int port = nodes[i]->port;
            node_stop(nodes[i]);
            node_start(nodes[i], nodes[i]->id, 4, port);
            for (int k = 0; k < 3; k++)
                if (k != i) {
                    char url[64];
                    snprintf(url, sizeof url, "http://127.0.0.1:%d", nodes[k]->port);
                    assert_int_equal(transport_add_peer(nodes[i]->t, nodes[k]->id, url), FL_OK);
                }
            restarts++;
        } else if (dice < 6) {
            char line[32] = "";
            if (rnd() % 2)
                snprintf(line, sizeof line, "%016llx\n", (unsigned long long)nodes[j]->id);
            write_file(nodes[i]->fault_file, line);
            partitions++;
        } else {
            bool append = rnd() % 2;
            struct raft_msg m = plain(append ? RAFT_MSG_APPEND : RAFT_MSG_APPEND_RESP, nodes[i]->id,
                                      nodes[j]->id, next_ctx++);
            struct raft_entry e = {
                .term = 1,
                .index = m.context,
                .len = (uint32_t)(rnd() % 4 == 0 ? rnd() % sizeof data : rnd() % 64),
                .data = data};
            if (append) {
                m.n_entries = 1;
                m.entries = &e;
            }
            fl_err err = transport_send(nodes[i]->t, 1, &m);
            assert_true(err == FL_OK || err == FL_ERR_BUSY);
        }
        uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < 3; i++)
        unlink(nodes[i]->fault_file);
    assert_true(run_until(all_pairs_deliver, nodes, "every pair delivers after healing"));
    uint64_t delivered = 0;
    for (int j = 0; j < 3; j++) {
        uint64_t last[3][2] = {{0}};
        for (uint32_t r = 0; r < nodes[j]->n_records; r++) {
            struct raft_msg *m = &nodes[j]->records[r].msg;
            if (m->term == 99)
                continue;
            int from = (int)(m->from - 0x31), app = m->type == RAFT_MSG_APPEND;
            assert_true(from >= 0 && from < 3 && from != j);
            if (m->context <= last[from][app])
                fprintf(stderr, "node %d: from %d stream %d: %llu after %llu\n", j, from, app,
                        (unsigned long long)m->context, (unsigned long long)last[from][app]);
            assert_true(m->context > last[from][app]);
            last[from][app] = m->context;
            delivered++;
        }
    }
    fprintf(stderr, "random schedule: %llu of %llu sends delivered, %d restarts, %d fault edits\n",
            (unsigned long long)delivered, (unsigned long long)next_ctx - 1, restarts, partitions);
    assert_true(delivered > 0);
    for (int i = 0; i < 3; i++)
        node_cleanup(nodes[i]);
}

int main(void)
{
    /* TRANSPORT_TEST_DEBUG=1 shows every connection close and its reason. */
    if (getenv("TRANSPORT_TEST_DEBUG"))
        fl_log_set_level(FL_LOG_DEBUG);
    /* TRANSPORT_TEST_FILTER=test_fault_file (a cmocka pattern) runs a subset. */
    if (getenv("TRANSPORT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("TRANSPORT_TEST_FILTER"));
    const char *seed = getenv("TRANSPORT_TEST_SEED");
    g_rng = seed ? strtoull(seed, NULL, 0) : (uint64_t)uv_hrtime();
    if (g_rng == 0)
        g_rng = 1;
    printf("TRANSPORT_TEST_SEED=%llu\n", (unsigned long long)g_rng);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_ordering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_cluster_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_closes_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_streams_beside_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incoming_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_does_not_wait_for_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_overtakes_big_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_stall_is_not_a_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connections_time_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_incoming_snapshot_per_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_schedule, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

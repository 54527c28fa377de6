/* transport/codec: the peer wire format, as pure functions over byte buffers.
 *
 * Owns: frames (length + crc32c + payload), the handshake payload, and the
 * versioned encoding of one struct raft_msg with its Raft group id.
 * Must not: do I/O or allocate. Decoding never trusts a length it has not
 * checked against the bytes it was given; anything malformed is
 * FL_ERR_CORRUPT and never a crash. Layout: docs/transport.md.
 *
 * Integers are little endian.
 */
#ifndef FL_TRANSPORT_CODEC_H
#define FL_TRANSPORT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "util/error.h"

#define CODEC_WIRE_VERSION 1u /* handshake protocol version */
#define CODEC_MSG_VERSION  1u /* first byte of every encoded message */
#define CODEC_FRAME_HEADER 8u /* u32 payload length, u32 crc32c(payload) */
#define CODEC_HELLO_BYTES  (1u + 4u + 2u + 1u + 3u * 8u)
#define CODEC_HELLO_MAGIC  0x52544c46u /* "FLTR" */

/* The first payload byte says what a frame carries. */
typedef enum codec_kind {
    CODEC_KIND_HELLO = 1,      /* handshake, both directions, first frame of every connection */
    CODEC_KIND_MSG = 2,        /* one encoded message */
    CODEC_KIND_SNAP_BEGIN = 3, /* u64 body bytes, then one encoded RAFT_MSG_SNAPSHOT */
    CODEC_KIND_SNAP_CHUNK = 4, /* raw body bytes */
    CODEC_KIND_SNAP_ACK = 5,   /* receiver -> sender: body stored and delivered */
    CODEC_KIND_PING = 6,       /* keeps an idle message stream from timing out */
} codec_kind;

typedef enum codec_stream {
    CODEC_STREAM_MSG = 1,      /* every message but appends and snapshots */
    CODEC_STREAM_SNAPSHOT = 2, /* one snapshot: begin, chunks, ack */
    CODEC_STREAM_APPEND = 3,   /* RAFT_MSG_APPEND only, so heartbeats never queue behind them */
} codec_stream;

struct codec_hello {
    uint16_t version;
    uint8_t stream; /* codec_stream */
    uint64_t cluster_id;
    uint64_t from;
    uint64_t to;
};

/* Writes the frame header for payload[0..len) into hdr. */
void codec_frame_header(uint8_t hdr[CODEC_FRAME_HEADER], const uint8_t *payload, uint32_t len);

/* Looks for one frame at buf[0..len). FL_OK: either a whole frame (*payload,
 * *payload_len set, *consumed = header + payload) or not enough bytes yet
 * (*consumed = 0). FL_ERR_TOO_LARGE if the header announces more than
 * payload_max bytes (known from the header alone), FL_ERR_CORRUPT for a crc
 * mismatch or an empty payload. */
fl_err codec_frame_parse(const uint8_t *buf, size_t len, uint32_t payload_max,
                         const uint8_t **payload, uint32_t *payload_len, size_t *consumed);

/* Hello payload: kind, magic, version, stream, cluster id, from, to. */
void codec_hello_encode(const struct codec_hello *h, uint8_t out[CODEC_HELLO_BYTES]);
/* FL_ERR_CORRUPT: wrong size, kind or magic. The version is returned as sent
 * (the caller decides what it accepts). */
fl_err codec_hello_decode(const uint8_t *payload, size_t len, struct codec_hello *h);

/* Bytes codec_msg_encode writes for msg (no frame header, no kind byte). */
size_t codec_msg_size(const struct raft_msg *msg);
/* Encodes group_id and msg into out[0..codec_msg_size(msg)). The snapshot
 * section is written for RAFT_MSG_SNAPSHOT only. */
void codec_msg_encode(uint64_t group_id, const struct raft_msg *msg, uint8_t *out);
/* Decodes one message that fills buf[0..len) exactly. Entries go into
 * entries[0..entries_cap); entry and snapshot data point into buf (borrowed:
 * valid while buf is). FL_ERR_CORRUPT for anything malformed: unknown
 * version, type or entry type, counts over the raft bounds or entries_cap,
 * lengths past the end, trailing bytes. */
fl_err codec_msg_decode(const uint8_t *buf, size_t len, uint64_t *group_id, struct raft_msg *msg,
                        struct raft_entry *entries, uint32_t entries_cap);

#endif

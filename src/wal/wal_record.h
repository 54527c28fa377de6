/* wal/record: the framing of one record on disk, and the payload layouts.
 *
 * A record is a 12-byte header followed by the payload (little-endian):
 *   u32 payload_bytes | u32 crc32c | u8 type | u8[3] zero | payload
 * The crc covers the length field, the type byte, the three zero bytes and
 * the payload, so a flipped length is caught as well as a flipped payload.
 * Type 0 is never valid, so a run of zero bytes (preallocated or never
 * written space) never parses as a record.
 *
 * This file knows bytes only: no file descriptors, no index rules.
 */
#ifndef FL_WAL_RECORD_H
#define FL_WAL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "wal/wal.h"

#define WAL_RECORD_HEADER_BYTES         12u
#define WAL_ENTRY_HEADER_BYTES          24u /* index, term, entry type, zero */
#define WAL_HARD_STATE_BYTES            24u /* term, vote, commit */
#define WAL_SEGMENT_HEADER_BYTES        32u /* magic, version, zero, seq, first index */
#define WAL_SEGMENT_HEADER_RECORD_BYTES (WAL_RECORD_HEADER_BYTES + WAL_SEGMENT_HEADER_BYTES)
#define WAL_HARD_STATE_RECORD_BYTES     (WAL_RECORD_HEADER_BYTES + WAL_HARD_STATE_BYTES)
#define WAL_FORMAT_VERSION              1u

typedef enum wal_record_type {
    WAL_RECORD_SEGMENT_HEADER = 1, /* first record of every segment */
    WAL_RECORD_ENTRY = 2,          /* one log entry */
    WAL_RECORD_HARD_STATE = 3      /* (term, vote, commit) */
} wal_record_type;

/* The largest entry data any log may hold: wal_options.record_bytes_max
 * may not exceed it. Reads check lengths against this fixed limit rather
 * than against the option, so a log written with a larger record_bytes_max
 * than the current one is still read in full instead of being cut as torn;
 * a length read from disk is never trusted beyond it (nor beyond the end
 * of the file). */
#define WAL_RECORD_BYTES_LIMIT     (256u << 20)
#define WAL_PAYLOAD_BYTES_READ_MAX ((uint64_t)WAL_RECORD_BYTES_LIMIT + WAL_ENTRY_HEADER_BYTES)

static inline size_t wal_record_entry_bytes(const wal_entry *entry)
{
    return WAL_RECORD_HEADER_BYTES + WAL_ENTRY_HEADER_BYTES + entry->len;
}

/* Encoders write one whole record at dst, which must have room for it, and
 * return the number of bytes written. */
size_t wal_record_encode_entry(uint8_t *dst, const wal_entry *entry);
size_t wal_record_encode_hard_state(uint8_t *dst, const wal_hard_state *hard_state);
size_t wal_record_encode_segment_header(uint8_t *dst, uint64_t seq, uint64_t first_index);

typedef enum wal_frame_status {
    WAL_FRAME_OK,    /* a whole record with a good crc */
    WAL_FRAME_SHORT, /* the bytes end before the record does */
    WAL_FRAME_BAD    /* impossible header or crc mismatch */
} wal_frame_status;

/* Checks the record at p, of which `avail` bytes are readable. On OK sets
 * *type, *payload_bytes. On SHORT/BAD sets *why to a static description.
 * When the header alone is fine but the record is longer than avail,
 * returns SHORT and still sets *payload_bytes (so the caller can read more). */
wal_frame_status wal_record_check(const uint8_t *p, size_t avail, uint64_t payload_bytes_max,
                                  wal_record_type *type, uint32_t *payload_bytes, const char **why);

/* Payload decoders: FL_ERR_CORRUPT with *why set if the payload is not a
 * well-formed record of that type. entry->data points into payload. */
fl_err wal_record_decode_entry(const uint8_t *payload, uint32_t len, wal_entry *entry,
                               const char **why);
fl_err wal_record_decode_hard_state(const uint8_t *payload, uint32_t len,
                                    wal_hard_state *hard_state, const char **why);
fl_err wal_record_decode_segment_header(const uint8_t *payload, uint32_t len, uint64_t *seq,
                                        uint64_t *first_index, const char **why);

#endif

#include "wal/wal_record.h"

#include <assert.h>
#include <string.h>

#include "util/endian.h"
#include "util/crc32c.h"

static const uint8_t segment_magic[8] = {'F', 'L', 'O', 'T', 'W', 'A', 'L', '\n'};

/* crc over length, type + zero bytes, payload: everything but the crc field. */
static uint32_t record_crc(const uint8_t *record, uint32_t payload_bytes)
{
    uint32_t crc = fl_crc32c(0, record, 4);
    return fl_crc32c(crc, record + 8, 4 + (size_t)payload_bytes);
}

/* Fills the header of a record whose payload is already at dst + 12. */
static size_t finish_record(uint8_t *dst, wal_record_type type, size_t payload_bytes)
{
    assert(payload_bytes <= UINT32_MAX);
    fl_le_put_u32(dst, (uint32_t)payload_bytes);
    dst[8] = (uint8_t)type;
    dst[9] = dst[10] = dst[11] = 0;
    fl_le_put_u32(dst + 4, record_crc(dst, (uint32_t)payload_bytes));
    return WAL_RECORD_HEADER_BYTES + payload_bytes;
}

size_t wal_record_encode_entry(uint8_t *dst, const wal_entry *entry)
{
    assert(entry->len == 0 || entry->data != NULL);
    uint8_t *p = dst + WAL_RECORD_HEADER_BYTES;
    fl_le_put_u64(p, entry->index);
    fl_le_put_u64(p + 8, entry->term);
    fl_le_put_u32(p + 16, (uint32_t)entry->type);
    fl_le_put_u32(p + 20, 0);
    if (entry->len)
        memcpy(p + WAL_ENTRY_HEADER_BYTES, entry->data, entry->len);
    return finish_record(dst, WAL_RECORD_ENTRY, WAL_ENTRY_HEADER_BYTES + entry->len);
}

size_t wal_record_encode_hard_state(uint8_t *dst, const wal_hard_state *hard_state)
{
    uint8_t *p = dst + WAL_RECORD_HEADER_BYTES;
    fl_le_put_u64(p, hard_state->term);
    fl_le_put_u64(p + 8, hard_state->vote);
    fl_le_put_u64(p + 16, hard_state->commit);
    return finish_record(dst, WAL_RECORD_HARD_STATE, WAL_HARD_STATE_BYTES);
}

size_t wal_record_encode_segment_header(uint8_t *dst, uint64_t seq, uint64_t first_index)
{
    uint8_t *p = dst + WAL_RECORD_HEADER_BYTES;
    memcpy(p, segment_magic, sizeof segment_magic);
    fl_le_put_u32(p + 8, WAL_FORMAT_VERSION);
    fl_le_put_u32(p + 12, 0);
    fl_le_put_u64(p + 16, seq);
    fl_le_put_u64(p + 24, first_index);
    return finish_record(dst, WAL_RECORD_SEGMENT_HEADER, WAL_SEGMENT_HEADER_BYTES);
}

wal_frame_status wal_record_check(const uint8_t *p, size_t avail, uint64_t payload_bytes_max,
                                  wal_record_type *type, uint32_t *payload_bytes, const char **why)
{
    if (avail < WAL_RECORD_HEADER_BYTES) {
        *why = "truncated record header";
        return WAL_FRAME_SHORT;
    }
    uint32_t len = fl_le_get_u32(p);
    uint8_t t = p[8];
    if (t < WAL_RECORD_SEGMENT_HEADER || t > WAL_RECORD_HARD_STATE) {
        *why = t == 0 && len == 0 ? "zero-filled space" : "unknown record type";
        return WAL_FRAME_BAD;
    }
    if (p[9] | p[10] | p[11]) {
        *why = "non-zero reserved header bytes";
        return WAL_FRAME_BAD;
    }
    if (len > payload_bytes_max) {
        *why = "record length exceeds record_bytes_max";
        return WAL_FRAME_BAD;
    }
    *payload_bytes = len;
    if (avail - WAL_RECORD_HEADER_BYTES < len) {
        *why = "truncated record";
        return WAL_FRAME_SHORT;
    }
    if (record_crc(p, len) != fl_le_get_u32(p + 4)) {
        *why = "crc mismatch";
        return WAL_FRAME_BAD;
    }
    *type = (wal_record_type)t;
    return WAL_FRAME_OK;
}

fl_err wal_record_decode_entry(const uint8_t *payload, uint32_t len, wal_entry *entry,
                               const char **why)
{
    if (len < WAL_ENTRY_HEADER_BYTES) {
        *why = "entry record too short";
        return FL_ERR_CORRUPT;
    }
    uint32_t type = fl_le_get_u32(payload + 16);
    if (type < WAL_ENTRY_NORMAL || type > WAL_ENTRY_NOOP || fl_le_get_u32(payload + 20) != 0) {
        *why = "bad entry type";
        return FL_ERR_CORRUPT;
    }
    entry->index = fl_le_get_u64(payload);
    entry->term = fl_le_get_u64(payload + 8);
    entry->type = (wal_entry_type)type;
    entry->data = payload + WAL_ENTRY_HEADER_BYTES;
    entry->len = len - WAL_ENTRY_HEADER_BYTES;
    if (entry->index == 0) {
        *why = "entry index 0";
        return FL_ERR_CORRUPT;
    }
    return FL_OK;
}

fl_err wal_record_decode_hard_state(const uint8_t *payload, uint32_t len,
                                    wal_hard_state *hard_state, const char **why)
{
    if (len != WAL_HARD_STATE_BYTES) {
        *why = "hard state record has the wrong size";
        return FL_ERR_CORRUPT;
    }
    hard_state->term = fl_le_get_u64(payload);
    hard_state->vote = fl_le_get_u64(payload + 8);
    hard_state->commit = fl_le_get_u64(payload + 16);
    return FL_OK;
}

fl_err wal_record_decode_segment_header(const uint8_t *payload, uint32_t len, uint64_t *seq,
                                        uint64_t *first_index, const char **why)
{
    if (len != WAL_SEGMENT_HEADER_BYTES || memcmp(payload, segment_magic, sizeof segment_magic)) {
        *why = "bad segment header";
        return FL_ERR_CORRUPT;
    }
    if (fl_le_get_u32(payload + 8) != WAL_FORMAT_VERSION || fl_le_get_u32(payload + 12) != 0) {
        *why = "unsupported segment format version";
        return FL_ERR_CORRUPT;
    }
    *seq = fl_le_get_u64(payload + 16);
    *first_index = fl_le_get_u64(payload + 24);
    return FL_OK;
}

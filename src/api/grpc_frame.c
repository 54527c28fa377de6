/* api/grpc_frame: see grpc_frame.h. */
#include "api/grpc_frame.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void api_grpc_reader_init(api_grpc_reader *reader)
{
    memset(reader, 0, sizeof(*reader));
}

void api_grpc_reader_reset(api_grpc_reader *reader, uint64_t max_len, size_t keep_cap)
{
    if (reader->body_cap > keep_cap) {
        free(reader->body);
        reader->body = NULL;
        reader->body_cap = 0;
    }
    reader->state = API_FRAME_PREFIX;
    reader->prefix_len = 0;
    reader->msg_len = 0;
    reader->body_len = 0;
    reader->max_len = max_len;
}

void api_grpc_reader_free(api_grpc_reader *reader)
{
    free(reader->body);
    memset(reader, 0, sizeof(*reader));
}

static api_frame_state reader_start_body(api_grpc_reader *reader)
{
    assert(reader->prefix_len == API_GRPC_PREFIX_BYTES);
    const uint8_t *p = reader->prefix;
    uint32_t len = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
    reader->msg_len = len;
    if (p[0] != 0) {
        return API_FRAME_COMPRESSED;
    }
    if (len > reader->max_len) {
        return API_FRAME_TOO_LARGE;
    }
    /* The buffer grows as bytes arrive (body_grow), so a prefix that
     * announces a large message costs nothing until the data comes. */
    reader->body_len = 0;
    return len == 0 ? API_FRAME_DONE : API_FRAME_BODY;
}

/* Makes room for `more` bytes past body_len, doubling up to msg_len. */
static bool body_grow(api_grpc_reader *reader, size_t more)
{
    size_t need = reader->body_len + more;
    assert(need <= reader->msg_len);
    if (need <= reader->body_cap) {
        return true;
    }
    size_t cap = reader->body_cap < 4096 ? 4096 : reader->body_cap;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > reader->msg_len) {
        cap = reader->msg_len;
    }
    uint8_t *body = realloc(reader->body, cap);
    if (body == NULL) {
        return false;
    }
    reader->body = body;
    reader->body_cap = cap;
    return true;
}

api_frame_state api_grpc_reader_feed(api_grpc_reader *reader, const uint8_t *data, size_t len)
{
    while (len > 0) {
        switch (reader->state) {
        case API_FRAME_PREFIX: {
            size_t take = API_GRPC_PREFIX_BYTES - reader->prefix_len;
            if (take > len) {
                take = len;
            }
            memcpy(reader->prefix + reader->prefix_len, data, take);
            reader->prefix_len += take;
            data += take;
            len -= take;
            if (reader->prefix_len == API_GRPC_PREFIX_BYTES) {
                reader->state = reader_start_body(reader);
            }
            break;
        }
        case API_FRAME_BODY: {
            size_t take = reader->msg_len - reader->body_len;
            if (take > len) {
                take = len;
            }
            if (!body_grow(reader, take)) {
                reader->state = API_FRAME_NOMEM;
                return reader->state;
            }
            memcpy(reader->body + reader->body_len, data, take);
            reader->body_len += take;
            data += take;
            len -= take;
            assert(reader->body_len <= reader->msg_len);
            if (reader->body_len == reader->msg_len) {
                reader->state = API_FRAME_DONE;
            }
            break;
        }
        case API_FRAME_DONE:
            reader->state = API_FRAME_EXTRA;
            return reader->state;
        default:
            return reader->state; /* final */
        }
    }
    return reader->state;
}

void api_grpc_write_prefix(uint8_t out[API_GRPC_PREFIX_BYTES], uint32_t msg_len)
{
    out[0] = 0;
    out[1] = (uint8_t)(msg_len >> 24);
    out[2] = (uint8_t)(msg_len >> 16);
    out[3] = (uint8_t)(msg_len >> 8);
    out[4] = (uint8_t)msg_len;
}

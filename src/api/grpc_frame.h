/* api/grpc_frame: reassembly of one gRPC length-prefixed message.
 *
 * A gRPC request body is a sequence of messages, each a 1-byte compressed
 * flag, a 4-byte big-endian length and the message bytes. HTTP/2 may split
 * it anywhere across DATA frames. The unary methods served here take exactly
 * one message; the reader collects it, bounded by a maximum length that is
 * checked from the prefix before any body byte is stored.
 */
#ifndef FL_API_GRPC_FRAME_H
#define FL_API_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define API_GRPC_PREFIX_BYTES 5

typedef enum api_frame_state {
    API_FRAME_PREFIX = 0, /* waiting for (the rest of) the 5-byte prefix */
    API_FRAME_BODY,       /* prefix read, collecting the message */
    API_FRAME_DONE,       /* one whole message collected */
    API_FRAME_TOO_LARGE,  /* the prefix announced more than max_len bytes */
    API_FRAME_COMPRESSED, /* the compressed flag was set */
    API_FRAME_EXTRA,      /* bytes arrived after the one message */
    API_FRAME_NOMEM       /* the body buffer could not be allocated */
} api_frame_state;

typedef struct api_grpc_reader {
    api_frame_state state;
    uint8_t prefix[API_GRPC_PREFIX_BYTES];
    size_t prefix_len;
    uint32_t msg_len; /* valid from API_FRAME_BODY on */
    uint8_t *body;    /* owned; kept across api_grpc_reader_reset */
    size_t body_len;
    size_t body_cap;
    uint64_t max_len;
} api_grpc_reader;

void api_grpc_reader_init(api_grpc_reader *reader);
/* Starts a new message bounded by max_len bytes; keeps the buffer if it is
 * no bigger than keep_cap, frees it otherwise. */
void api_grpc_reader_reset(api_grpc_reader *reader, uint64_t max_len, size_t keep_cap);
void api_grpc_reader_free(api_grpc_reader *reader);

/* Feeds bytes of the request body; returns the new state. Once the state is
 * anything but PREFIX/BODY/DONE it is final and further bytes are ignored;
 * bytes after DONE move to API_FRAME_EXTRA. */
api_frame_state api_grpc_reader_feed(api_grpc_reader *reader, const uint8_t *data, size_t len);

/* Writes the 5-byte prefix for an uncompressed message of msg_len bytes. */
void api_grpc_write_prefix(uint8_t out[API_GRPC_PREFIX_BYTES], uint32_t msg_len);

#endif

/* client internals shared by the files of src/client (not part of the contract). */
#ifndef FL_CLIENT_INTERNAL_H
#define FL_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"

/* The protobuf-c descriptors of a method's request and response. */
const ProtobufCMessageDescriptor *client_method_request_descriptor(client_method method);
const ProtobufCMessageDescriptor *client_method_response_descriptor(client_method method);

/* Decodes grpc-message's percent-encoding (%XX) from src[0..len) into dst
 * (capacity dst_cap, always NUL-terminated, truncated if needed). */
void client_percent_decode(const uint8_t *src, size_t len, char *dst, size_t dst_cap);

/* Fills status (err from code and message). */
void client_status_set(client_status *status, fl_err err, int grpc_code, const char *message);

/* Formats the grpc-timeout header value for timeout_ms into buf (>= 16 bytes):
 * at most 8 digits and a unit (m or S), as the gRPC spec requires. */
void client_grpc_timeout(uint64_t timeout_ms, char *buf, size_t buf_cap);

/* Splits "http://host:port" / "host:port" / "[v6]:port" into host and port.
 * Returns FL_ERR_INVALID when malformed. */
fl_err client_parse_endpoint(const char *endpoint, char *host, size_t host_cap, int *port);

#endif

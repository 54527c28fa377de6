/* api/status: gRPC status codes and the (code, message) pair a call ends with.
 *
 * The fl_err -> (code, etcd text) table itself is api_error_status (api.h,
 * error.c). Some answers have no fl_err (etcd's "value is provided", grpc's
 * own framing errors); they are api_status values made here.
 */
#ifndef FL_API_STATUS_H
#define FL_API_STATUS_H

#include "util/error.h"

/* gRPC status codes (google.golang.org/grpc/codes). */
enum {
    API_GRPC_OK = 0,
    API_GRPC_CANCELLED = 1,
    API_GRPC_UNKNOWN = 2,
    API_GRPC_INVALID_ARGUMENT = 3,
    API_GRPC_DEADLINE_EXCEEDED = 4,
    API_GRPC_NOT_FOUND = 5,
    API_GRPC_ALREADY_EXISTS = 6,
    API_GRPC_PERMISSION_DENIED = 7,
    API_GRPC_RESOURCE_EXHAUSTED = 8,
    API_GRPC_FAILED_PRECONDITION = 9,
    API_GRPC_ABORTED = 10,
    API_GRPC_OUT_OF_RANGE = 11,
    API_GRPC_UNIMPLEMENTED = 12,
    API_GRPC_INTERNAL = 13,
    API_GRPC_UNAVAILABLE = 14,
    API_GRPC_DATA_LOSS = 15,
    API_GRPC_UNAUTHENTICATED = 16
};

typedef struct api_status {
    int code;            /* API_GRPC_* */
    const char *message; /* static, or owned by the call's arena */
} api_status;

static inline api_status api_status_ok(void)
{
    return (api_status){API_GRPC_OK, ""};
}

/* The status for an fl_err (api_error_status as a value). */
api_status api_status_from_err(fl_err err);

#endif

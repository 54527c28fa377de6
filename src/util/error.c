#include "util/error.h"

#include <assert.h>

const char *fl_err_name(fl_err err)
{
    static const char *const names[FL_ERR__COUNT] = {
        [FL_OK] = "ok",
        [FL_ERR_NOMEM] = "nomem",
        [FL_ERR_IO] = "io",
        [FL_ERR_NOSPACE] = "nospace",
        [FL_ERR_CORRUPT] = "corrupt",
        [FL_ERR_INVALID] = "invalid",
        [FL_ERR_NOT_FOUND] = "not_found",
        [FL_ERR_KEY_EMPTY] = "key_empty",
        [FL_ERR_COMPACTED] = "compacted",
        [FL_ERR_FUTURE_REV] = "future_rev",
        [FL_ERR_DUPLICATE_KEY] = "duplicate_key",
        [FL_ERR_TOO_MANY_OPS] = "too_many_ops",
        [FL_ERR_TOO_LARGE] = "too_large",
        [FL_ERR_LEASE_NOT_FOUND] = "lease_not_found",
        [FL_ERR_NO_SPACE_QUOTA] = "no_space_quota",
        [FL_ERR_STOPPED] = "stopped",
        [FL_ERR_TIMEOUT] = "timeout",
        [FL_ERR_UNAVAILABLE] = "unavailable",
        [FL_ERR_UNIMPLEMENTED] = "unimplemented",
        [FL_ERR_BUSY] = "busy",
    };
    if ((unsigned)err >= FL_ERR__COUNT)
        return "unknown";
    assert(names[err] != 0);
    return names[err];
}

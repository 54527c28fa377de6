#include "util/error.h"

#include <assert.h>
#include <errno.h>

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
        [FL_ERR_NO_LEADER] = "no_leader",
        [FL_ERR_LEADER_CHANGED] = "leader_changed",
        [FL_ERR_NOT_LEADER] = "not_leader",
        [FL_ERR_MEMBER_NOT_FOUND] = "member_not_found",
        [FL_ERR_PEER_URL_EXISTS] = "peer_url_exists",
        [FL_ERR_MEMBER_ID_REMOVED] = "member_id_removed",
        [FL_ERR_MEMBER_NOT_LEARNER] = "member_not_learner",
        [FL_ERR_LEARNER_NOT_READY] = "learner_not_ready",
        [FL_ERR_NOT_ENOUGH_STARTED] = "not_enough_started",
        [FL_ERR_TOO_MANY_LEARNERS] = "too_many_learners",
        [FL_ERR_BAD_LEADER_TRANSFEREE] = "bad_leader_transferee",
    };
    if ((unsigned)err >= FL_ERR__COUNT)
        return "unknown";
    assert(names[err] != 0);
    return names[err];
}

fl_err fl_err_from_errno(int errnum)
{
    switch (errnum) {
    case ENOSPC:
    case EDQUOT:
        return FL_ERR_NOSPACE;
    case ENOMEM:
        return FL_ERR_NOMEM;
    default:
        return FL_ERR_IO;
    }
}

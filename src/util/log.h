/* util/log: structured log lines on stderr.
 *
 * One line per event, key=value pairs: `ts=... level=warn module=wal msg="fsync slow" ms=812`.
 * Callers pass the module name and a printf-style tail of extra key=value pairs.
 * Keep log calls off hot paths; this module must not buffer or allocate.
 */
#ifndef FL_UTIL_LOG_H
#define FL_UTIL_LOG_H

typedef enum fl_log_level { FL_LOG_DEBUG, FL_LOG_INFO, FL_LOG_WARN, FL_LOG_ERROR } fl_log_level;

/* Lines below this level are dropped. Default FL_LOG_INFO. */
void fl_log_set_level(fl_log_level level);

void fl_log(fl_log_level level, const char *module, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define FL_LOG_DEBUGF(mod, msg, ...) fl_log(FL_LOG_DEBUG, mod, msg, __VA_ARGS__)
#define FL_LOG_INFOF(mod, msg, ...)  fl_log(FL_LOG_INFO, mod, msg, __VA_ARGS__)
#define FL_LOG_WARNF(mod, msg, ...)  fl_log(FL_LOG_WARN, mod, msg, __VA_ARGS__)
#define FL_LOG_ERRORF(mod, msg, ...) fl_log(FL_LOG_ERROR, mod, msg, __VA_ARGS__)

#endif

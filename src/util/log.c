#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static fl_log_level log_level_min = FL_LOG_INFO;

void fl_log_set_level(fl_log_level level)
{
    log_level_min = level;
}

void fl_log(fl_log_level level, const char *module, const char *msg, const char *fmt, ...)
{
    static const char *const level_names[] = {"debug", "info", "warn", "error"};
    if (level < log_level_min)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm_utc;
    gmtime_r(&now.tv_sec, &tm_utc);
    char line[1024];
    int used = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s module=%s msg=\"%s\"",
                        tm_utc.tm_year + 1900, tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour,
                        tm_utc.tm_min, tm_utc.tm_sec, now.tv_nsec / 1000000L, level_names[level],
                        module, msg);
    if (used < 0)
        return;
    if (fmt && fmt[0] && (size_t)used < sizeof line - 2) {
        line[used++] = ' ';
        va_list args;
        va_start(args, fmt);
        int extra = vsnprintf(line + used, sizeof line - (size_t)used, fmt, args);
        va_end(args);
        if (extra > 0)
            used += extra;
    }
    if ((size_t)used >= sizeof line)
        used = (int)sizeof line - 1;
    line[used] = '\n';
    fwrite(line, 1, (size_t)used + 1, stderr);
}

/* transport/fault: the TEST-ONLY partition hook.
 *
 * The nemesis of the fault tests writes, per member, a file of peer ids (one
 * per line, 16-digit hex as `etcdctl member list` prints them). The tick
 * stats it (at most every TRANSPORT_TICK_MS) and re-reads it when its mtime
 * or size changes; a missing or empty file means no faults. Traffic to and
 * from a listed peer is dropped silently in both directions. Unparsable lines
 * are ignored; at most TRANSPORT_FAULTS_MAX ids are kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "transport/internal.h"
#include "util/log.h"

#define MODULE "transport"

static void parse_faults(transport *t, char *text)
{
    t->n_faults = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        char *end;
        errno = 0;
        unsigned long long id = strtoull(line, &end, 16);
        while (*end == ' ' || *end == '\t' || *end == '\r')
            end++;
        if (end == line || *end != '\0' || errno != 0 || id == 0)
            continue;
        if (t->n_faults < TRANSPORT_FAULTS_MAX)
            t->faults[t->n_faults++] = id;
    }
}

void fault_check(transport *t)
{
    struct stat st;
    if (stat(t->o.test_fault_file, &st) != 0) {
        if (t->fault_known || t->n_faults > 0)
            FL_LOG_INFOF(MODULE, "test faults cleared", "local=%016llx",
                         (unsigned long long)t->o.local_id);
        t->fault_known = false;
        t->n_faults = 0;
        return;
    }
    int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (t->fault_known && mtime_ns == t->fault_mtime_ns && st.st_size == t->fault_size)
        return;
    FILE *f = fopen(t->o.test_fault_file, "r");
    if (!f)
        return; /* retried at the next tick */
    char text[TRANSPORT_FAULT_FILE_MAX + 1];
    size_t n = fread(text, 1, TRANSPORT_FAULT_FILE_MAX, f);
    fclose(f);
    text[n] = '\0';
    t->fault_known = true;
    t->fault_mtime_ns = mtime_ns;
    t->fault_size = (int64_t)st.st_size;
    parse_faults(t, text);
    FL_LOG_INFOF(MODULE, "test faults loaded", "local=%016llx peers=%u",
                 (unsigned long long)t->o.local_id, t->n_faults);
}

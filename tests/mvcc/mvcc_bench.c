/* Apply throughput with and without durable_commits, batches of 1 and 100
 * entries. Not a test: run by hand, on the file system to measure:
 *   mvcc_bench [dir-parent] (default .)
 * Prints one line per configuration. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mvcc/mvcc.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *parent, bool durable, int batch, int entries)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mvcc-bench-XXXXXX", parent);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mvcc_options opt = {.durable_commits = durable};
    mvcc_store *s;
    if (mvcc_open(dir, &opt, &s) != FL_OK) {
        fprintf(stderr, "open failed\n");
        return 1;
    }
    char key[32], value[101];
    memset(value, 'v', 100);
    value[100] = 0;
    double t0 = now_s();
    uint64_t index = 1;
    for (int i = 0; i < entries; i += batch) {
        if (batch > 1 && mvcc_batch_begin(s) != FL_OK) {
            return 1;
        }
        for (int j = 0; j < batch; j++, index++) {
            snprintf(key, sizeof key, "key%08d", (int)(index % 10000));
            mvcc_request req = {.type = MVCC_REQ_PUT};
            req.u.put.key = (mvcc_bytes){(const uint8_t *)key, strlen(key)};
            req.u.put.value = (mvcc_bytes){(const uint8_t *)value, 100};
            uint8_t *buf;
            size_t len;
            mvcc_response resp;
            if (mvcc_request_encode(&req, &buf, &len) != FL_OK ||
                mvcc_apply(s, index, buf, len, &resp) != FL_OK) {
                fprintf(stderr, "apply failed\n");
                return 1;
            }
            free(buf);
            mvcc_response_free(&resp);
        }
        if (batch > 1 && mvcc_batch_commit(s) != FL_OK) {
            return 1;
        }
    }
    double dt = now_s() - t0;
    printf(
        "durable_commits=%d batch=%3d: %6d entries in %.3f s = %8.0f entries/s, %7.0f commits/s\n",
        durable, batch, entries, dt, entries / dt, entries / batch / dt);
    mvcc_close(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : ".";
    int rc = 0;
    rc |= run(parent, false, 1, 20000);
    rc |= run(parent, true, 1, 2000);
    rc |= run(parent, false, 100, 100000);
    rc |= run(parent, true, 100, 100000);
    return rc;
}

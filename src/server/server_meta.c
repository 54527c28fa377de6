/* server_meta: the member's identity on disk and the data dir lock.
 *
 * <data-dir>/member is a small text file written once, at the first start:
 *
 *   name=default
 *   member_id=8e9e05c52164694d
 *   cluster_id=cdf818194e3a8c32
 *
 * Ids are derived deterministically from the flags (cluster.c), as etcd
 * does; once written they are read back and checked against the flags: a
 * data dir of another member or cluster is refused. A member joining an
 * existing cluster writes cluster_id 0: it learns the id from its first
 * snapshot (kept in LMDB's member table from then on). The file
 * is written to a temp name, fsynced, renamed and the dir fsynced, so a crash
 * leaves either no file or a whole one. While the member runs it holds an
 * exclusive flock on the file: a second process on the same data dir fails
 * at start instead of interleaving WAL writes.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "util/log.h"

#define META_FILE_BYTES_MAX 4096

fl_err server_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fl_err_from_errno(errno);
    int rc = fsync(fd);
    int fsync_errno = errno;
    close(fd);
    return rc == 0 ? FL_OK : fl_err_from_errno(fsync_errno);
}

static fl_err write_meta(server *srv, const char *path, char *errbuf, size_t errbuf_len)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return FL_ERR_INVALID;
    char text[META_FILE_BYTES_MAX];
    n = snprintf(text, sizeof text,
                 "# flotilla member identity, written at the first start; do not edit\n"
                 "name=%s\nmember_id=%016" PRIx64 "\ncluster_id=%016" PRIx64 "\n",
                 srv->name, srv->member_id, srv->cluster_id);
    if (n < 0 || (size_t)n >= sizeof text) {
        snprintf(errbuf, errbuf_len, "member name too long");
        return FL_ERR_INVALID;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int open_errno = errno; /* before anything can change it */
        snprintf(errbuf, errbuf_len, "cannot create %s: %s", tmp, strerror(open_errno));
        return fl_err_from_errno(open_errno);
    }
    ssize_t written = write(fd, text, (size_t)n);
    int saved = errno;
    bool ok = written == n && fsync(fd) == 0;
    if (written == n && !ok)
        saved = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            saved = errno;
        unlink(tmp);
        snprintf(errbuf, errbuf_len, "cannot write %s: %s", path, strerror(saved));
        return fl_err_from_errno(saved);
    }
    return server_fsync_dir(srv->data_dir);
}

static fl_err parse_hex_field(const char *text, const char *field, uint64_t *out, bool zero_ok)
{
    const char *p = strstr(text, field);
    if (!p)
        return FL_ERR_CORRUPT;
    p += strlen(field);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 16);
    if (errno != 0 || end == p || (*end != '\n' && *end != '\0') || (v == 0 && !zero_ok))
        return FL_ERR_CORRUPT;
    *out = (uint64_t)v;
    return FL_OK;
}

static fl_err read_meta(server *srv, const char *path, uint64_t *member_id, uint64_t *cluster_id,
                        char *errbuf, size_t errbuf_len)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(errbuf, errbuf_len, "cannot open %s: %s", path, strerror(errno));
        return FL_ERR_IO;
    }
    char text[META_FILE_BYTES_MAX + 1];
    size_t len = fread(text, 1, META_FILE_BYTES_MAX, f);
    fclose(f);
    text[len] = '\0';
    if (parse_hex_field(text, "\nmember_id=", member_id, false) != FL_OK ||
        parse_hex_field(text, "\ncluster_id=", cluster_id, true) != FL_OK) {
        snprintf(errbuf, errbuf_len, "%s: corrupt member identity file", path);
        return FL_ERR_CORRUPT;
    }
    const char *name = strstr(text, "\nname=");
    if (name) {
        name += strlen("\nname=");
        size_t name_len = strcspn(name, "\n");
        if (name_len != strlen(srv->name) || memcmp(name, srv->name, name_len) != 0) {
            snprintf(errbuf, errbuf_len,
                     "data dir %s belongs to the member named \"%.*s\", not \"%s\"", srv->data_dir,
                     (int)name_len, name, srv->name);
            return FL_ERR_INVALID;
        }
    }
    return FL_OK;
}

fl_err server_meta_load_or_create(server *srv, char *errbuf, size_t errbuf_len)
{
    assert(srv->lock_fd < 0);
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/member", srv->data_dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(errbuf, errbuf_len, "data dir path too long");
        return FL_ERR_INVALID;
    }
    bool exists = access(path, F_OK) == 0;
    if (!exists) {
        fl_err err = write_meta(srv, path, errbuf, errbuf_len);
        if (err != FL_OK)
            return err;
    } else {
        uint64_t member_id = 0, cluster_id = 0;
        fl_err err = read_meta(srv, path, &member_id, &cluster_id, errbuf, errbuf_len);
        if (err != FL_OK)
            return err;
        if (member_id != srv->member_id) {
            snprintf(errbuf, errbuf_len,
                     "data dir %s belongs to member %016" PRIx64 " (of cluster %016" PRIx64
                     "), but the flags (--initial-advertise-peer-urls and "
                     "--initial-cluster-token) make this member %016" PRIx64,
                     srv->data_dir, member_id, cluster_id, srv->member_id);
            return FL_ERR_INVALID;
        }
        /* a restart keeps its cluster whatever --initial-cluster says now
         * (etcd ignores it too: the cluster may have changed since) */
        srv->cluster_id = cluster_id;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errbuf, errbuf_len, "cannot open %s: %s", path, strerror(errno));
        return FL_ERR_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(errbuf, errbuf_len, "data dir %s is in use by another process", srv->data_dir);
        close(fd);
        return FL_ERR_BUSY;
    }
    srv->lock_fd = fd;
    assert(srv->member_id != 0);
    return FL_OK;
}

/* server_meta: the member's identity on disk and the data dir lock.
 *
 * <data-dir>/member is a small text file written once, at the first start:
 *
 *   name=default
 *   member_id=8e9e05c52164694d
 *   cluster_id=cdf818194e3a8c32
 *
 * Ids are derived deterministically, as etcd does from the peer URLs and the
 * cluster token, so the same flags give the same ids; once written they are
 * read back, so a restart keeps the identity even if flags change. The file
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

/* FNV-1a, 64 bit: stable across platforms and releases, which is all the ids need. */
uint64_t server_hash64(uint64_t seed, const void *data, size_t len)
{
    const uint8_t *bytes = data;
    uint64_t hash = seed ? seed : 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

static uint64_t hash_str(uint64_t seed, const char *s)
{
    /* include the terminating NUL so "ab"+"c" differs from "a"+"bc" */
    return server_hash64(seed, s, strlen(s) + 1);
}

static void derive_ids(server *srv, const char *token)
{
    uint64_t h = hash_str(0, "flotilla-member");
    for (size_t i = 0; i < srv->peer_urls.count; i++)
        h = hash_str(h, srv->peer_urls.items[i]);
    h = hash_str(h, token);
    srv->member_id = h ? h : 1;
    uint64_t c = hash_str(0, "flotilla-cluster");
    c = hash_str(c, token);
    c = server_hash64(c, &srv->member_id, sizeof srv->member_id);
    srv->cluster_id = c ? c : 1;
}

static fl_err fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return FL_ERR_IO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? FL_OK : FL_ERR_IO;
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
        snprintf(errbuf, errbuf_len, "cannot create %s: %s", tmp, strerror(errno));
        return errno == ENOSPC ? FL_ERR_NOSPACE : FL_ERR_IO;
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
        return saved == ENOSPC ? FL_ERR_NOSPACE : FL_ERR_IO;
    }
    return fsync_dir(srv->data_dir);
}

static fl_err parse_hex_field(const char *text, const char *field, uint64_t *out)
{
    const char *p = strstr(text, field);
    if (!p)
        return FL_ERR_CORRUPT;
    p += strlen(field);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 16);
    if (errno != 0 || end == p || (*end != '\n' && *end != '\0') || v == 0)
        return FL_ERR_CORRUPT;
    *out = (uint64_t)v;
    return FL_OK;
}

static fl_err read_meta(server *srv, const char *path, char *errbuf, size_t errbuf_len)
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
    if (parse_hex_field(text, "\nmember_id=", &srv->member_id) != FL_OK ||
        parse_hex_field(text, "\ncluster_id=", &srv->cluster_id) != FL_OK) {
        snprintf(errbuf, errbuf_len, "%s: corrupt member identity file", path);
        return FL_ERR_CORRUPT;
    }
    const char *name = strstr(text, "\nname=");
    if (name) {
        name += strlen("\nname=");
        size_t name_len = strcspn(name, "\n");
        if (name_len != strlen(srv->name) || memcmp(name, srv->name, name_len) != 0)
            FL_LOG_WARNF("server", "member name differs from the data dir's",
                         "data_dir=%s stored=%.*s flag=%s", srv->data_dir, (int)name_len, name,
                         srv->name);
    }
    return FL_OK;
}

fl_err server_meta_load_or_create(server *srv, const char *token, char *errbuf, size_t errbuf_len)
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
        derive_ids(srv, token);
        fl_err err = write_meta(srv, path, errbuf, errbuf_len);
        if (err != FL_OK)
            return err;
    } else {
        fl_err err = read_meta(srv, path, errbuf, errbuf_len);
        if (err != FL_OK)
            return err;
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
    assert(srv->member_id != 0 && srv->cluster_id != 0);
    return FL_OK;
}

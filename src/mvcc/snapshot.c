/* mvcc/snapshot: a consistent copy of the whole store, and installing one.
 *
 * Write: LMDB copies from a read txn of its own (mdb_env_copyfd2 with
 * MDB_CP_COMPACT), so the copy is one committed state while applies go on.
 * The applied index it holds must be known exactly, and LMDB does not say
 * which txn the copy read. So the copy writes into a pipe, and commit_mu
 * (held around every commit) is held from reading the published state until
 * the first bytes come out of the pipe: LMDB begins its read txn before it
 * writes anything, so that txn sees exactly the state read under the lock.
 * Commits (not applies) wait for that first buffer (LMDB writes in 1 MiB
 * chunks); the rest of the copy runs with the lock released, pumped from
 * the pipe to the caller's fd. MDB_CP_COMPACT matters beyond size: the
 * plain copy briefly takes LMDB's writer lock, which the applier holds
 * (batch open) while it waits for commit_mu: that would deadlock.
 *
 * Install: with the store closed, the file is checked (an LMDB file with a
 * state record), fsynced, renamed over data.mdb, lock.mdb is removed and
 * the directory fsynced: a crash leaves the old or the new store.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mvcc/internal.h"
#include "util/log.h"

#define PUMP_BUF (256u << 10)

typedef struct copy_job {
    MDB_env *env;
    int fd; /* the pipe's write end; the thread closes it */
    int rc;
} copy_job;

static void *copy_main(void *arg)
{
    copy_job *job = arg;
    job->rc = mdb_env_copyfd2(job->env, job->fd, MDB_CP_COMPACT);
    close(job->fd); /* EOF for the pump */
    return NULL;
}

static ssize_t read_some(int fd, uint8_t *buf, size_t cap)
{
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0 || errno != EINTR) {
            return n;
        }
    }
}

static fl_err write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            FL_LOG_ERRORF("mvcc", "snapshot write failed", "errno=%d err=\"%s\"", e, strerror(e));
            return e == ENOSPC || e == EDQUOT ? FL_ERR_NOSPACE : FL_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return FL_OK;
}

fl_err mvcc_snapshot_write(mvcc_store *store, int fd, uint64_t *applied_index)
{
    *applied_index = 0;
    uint8_t *buf = malloc(PUMP_BUF); /* owned here, freed below */
    if (buf == NULL) {
        return FL_ERR_NOMEM;
    }
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        free(buf);
        return FL_ERR_IO;
    }
    copy_job job = {.env = store->env, .fd = pipefd[1], .rc = 0};
    pthread_t thread;

    pthread_mutex_lock(&store->commit_mu);
    /* committed changes only in write_commit, under commit_mu */
    uint64_t applied = store->committed.applied_index;
    if (pthread_create(&thread, NULL, copy_main, &job) != 0) {
        pthread_mutex_unlock(&store->commit_mu);
        close(pipefd[0]);
        close(pipefd[1]);
        free(buf);
        return FL_ERR_NOMEM;
    }
    /* The first bytes (or EOF if the copy failed at once) mean the copy's
     * read txn has begun: from here on commits cannot change what it sees. */
    ssize_t n = read_some(pipefd[0], buf, PUMP_BUF);
    pthread_mutex_unlock(&store->commit_mu);

    fl_err err = FL_OK;
    uint64_t total = 0;
    while (n > 0) {
        if (err == FL_OK) {
            err = write_all(fd, buf, (size_t)n);
        }
        /* after a failed write keep draining, so the copy ends normally
         * instead of writing into a closed pipe */
        total += (uint64_t)n;
        n = read_some(pipefd[0], buf, PUMP_BUF);
    }
    if (n < 0 && err == FL_OK) {
        err = FL_ERR_IO;
    }
    close(pipefd[0]);
    pthread_join(thread, NULL);
    free(buf);
    if (job.rc != 0) {
        FL_LOG_ERRORF("mvcc", "snapshot copy failed", "rc=%d err=\"%s\"", job.rc,
                      mdb_strerror(job.rc));
        return job.rc == ENOSPC || job.rc == EDQUOT ? FL_ERR_NOSPACE : FL_ERR_IO;
    }
    if (err != FL_OK) {
        return err;
    }
    FL_LOG_INFOF("mvcc", "snapshot written", "applied_index=%llu bytes=%llu",
                 (unsigned long long)applied, (unsigned long long)total);
    *applied_index = applied;
    return FL_OK;
}

/* Checks that path is an LMDB file holding a store: its state record
 * decodes. */
static fl_err check_snapshot(const char *path)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        return mvcc_lmdb_err(rc);
    }
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val v;
    rc = mdb_env_set_maxdbs(env, 4);
    if (rc == 0) {
        rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600);
    }
    if (rc == 0) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "meta", 0, &dbi);
    }
    if (rc == 0) {
        MDB_val k = {strlen(MVCC_STATE_KEY), (void *)MVCC_STATE_KEY};
        rc = mdb_get(txn, dbi, &k, &v);
    }
    fl_err err = FL_OK;
    if (rc == 0) {
        mvcc_state st;
        bool upgrade;
        err = mvcc_state_decode(&v, &st, &upgrade);
    } else {
        FL_LOG_ERRORF("mvcc", "not a store snapshot", "path=\"%s\" rc=%d err=\"%s\"", path, rc,
                      mdb_strerror(rc));
        err = FL_ERR_CORRUPT;
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return err;
}

static fl_err fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? FL_ERR_NOT_FOUND : FL_ERR_IO;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) {
        FL_LOG_ERRORF("mvcc", "fsync failed", "path=\"%s\" errno=%d", path, e);
        return e == ENOSPC ? FL_ERR_NOSPACE : FL_ERR_IO;
    }
    return FL_OK;
}

fl_err mvcc_snapshot_install(const char *db_dir, const char *snapshot_file)
{
    char data[4096], lock[4096];
    if (snprintf(data, sizeof data, "%s/data.mdb", db_dir) >= (int)sizeof data ||
        snprintf(lock, sizeof lock, "%s/lock.mdb", db_dir) >= (int)sizeof lock) {
        return FL_ERR_INVALID;
    }
    fl_err err = check_snapshot(snapshot_file);
    if (err == FL_OK) {
        err = fsync_path(snapshot_file, O_RDONLY);
    }
    if (err != FL_OK) {
        return err;
    }
    if (rename(snapshot_file, data) != 0) {
        int e = errno;
        FL_LOG_ERRORF("mvcc", "snapshot install: rename failed", "from=\"%s\" to=\"%s\" errno=%d",
                      snapshot_file, data, e);
        /* EXDEV: the snapshot must be on db_dir's file system */
        return e == EXDEV || e == ENOENT ? FL_ERR_INVALID : FL_ERR_IO;
    }
    /* The old reader table means nothing for the new file; LMDB rebuilds
     * it on open anyway, but a stale one must not outlive its data file. */
    if (unlink(lock) != 0 && errno != ENOENT) {
        return FL_ERR_IO;
    }
    err = fsync_path(db_dir, O_RDONLY | O_DIRECTORY);
    if (err == FL_OK) {
        FL_LOG_INFOF("mvcc", "snapshot installed", "dir=\"%s\"", db_dir);
    }
    return err;
}

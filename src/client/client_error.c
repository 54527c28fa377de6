/* client_error: gRPC status + etcd message text -> fl_err, and small helpers
 * around the wire (grpc-message decoding, grpc-timeout, endpoint parsing). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

/* etcd's texts for the errors that have an fl_err of their own. The text is
 * matched as a suffix so that both "etcdserver: mvcc: ..." (what etcd 3.4
 * sends) and "mvcc: ..." match. */
static const struct {
    const char *text;
    fl_err err;
} error_texts[] = {
    {"key is not provided", FL_ERR_KEY_EMPTY},
    {"required revision has been compacted", FL_ERR_COMPACTED},
    {"required revision is a future revision", FL_ERR_FUTURE_REV},
    {"duplicate key given in txn request", FL_ERR_DUPLICATE_KEY},
    {"too many operations in txn request", FL_ERR_TOO_MANY_OPS},
    {"request is too large", FL_ERR_TOO_LARGE},
    {"requested lease not found", FL_ERR_LEASE_NOT_FOUND},
    {"database space exceeded", FL_ERR_NO_SPACE_QUOTA},
    {"key not found", FL_ERR_NOT_FOUND},
    {"server stopped", FL_ERR_STOPPED},
    {"request timed out", FL_ERR_TIMEOUT},
    {"no leader", FL_ERR_UNAVAILABLE},
    /* membership: "Peer URLs already exists" is etcd 3.4's text, "peerURL
     * exists" its v2 one (and what some servers send). */
    {"member not found", FL_ERR_MEMBER_NOT_FOUND},
    {"Peer URLs already exists", FL_ERR_PEER_URL_EXISTS},
    {"peerURL exists", FL_ERR_PEER_URL_EXISTS},
    {"ID removed", FL_ERR_MEMBER_ID_REMOVED},
    {"can only promote a learner member", FL_ERR_MEMBER_NOT_LEARNER},
    {"can only promote a learner member which is in sync with leader", FL_ERR_LEARNER_NOT_READY},
    {"re-configuration failed due to not enough started members", FL_ERR_NOT_ENOUGH_STARTED},
    {"too many learner members in cluster", FL_ERR_TOO_MANY_LEARNERS},
    {"bad leader transferee", FL_ERR_BAD_LEADER_TRANSFEREE},
    {"not leader", FL_ERR_NOT_LEADER},
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

fl_err client_error_from_grpc(int grpc_code, const char *message)
{
    if (grpc_code == 0)
        return FL_OK;
    if (message != NULL) {
        for (size_t i = 0; i < sizeof error_texts / sizeof error_texts[0]; i++)
            if (ends_with(message, error_texts[i].text))
                return error_texts[i].err;
    }
    switch (grpc_code) {
    case 1: /* CANCELLED */
        return FL_ERR_STOPPED;
    case 3:  /* INVALID_ARGUMENT */
    case 9:  /* FAILED_PRECONDITION */
    case 11: /* OUT_OF_RANGE */
        return FL_ERR_INVALID;
    case 4: /* DEADLINE_EXCEEDED */
        return FL_ERR_TIMEOUT;
    case 5: /* NOT_FOUND */
        return FL_ERR_NOT_FOUND;
    case 8: /* RESOURCE_EXHAUSTED */
        return FL_ERR_BUSY;
    case 12: /* UNIMPLEMENTED */
        return FL_ERR_UNIMPLEMENTED;
    case 14: /* UNAVAILABLE */
        return FL_ERR_UNAVAILABLE;
    case 15: /* DATA_LOSS */
        return FL_ERR_CORRUPT;
    default: /* UNKNOWN, PERMISSION_DENIED, ABORTED, INTERNAL, UNAUTHENTICATED ... */
        return FL_ERR_IO;
    }
}

void client_status_set(client_status *status, fl_err err, int grpc_code, const char *message)
{
    assert(status != NULL);
    status->err = err;
    status->grpc_code = grpc_code;
    snprintf(status->message, sizeof status->message, "%s", message ? message : "");
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void client_percent_decode(const uint8_t *src, size_t len, char *dst, size_t dst_cap)
{
    assert(dst_cap > 0);
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < dst_cap; i++) {
        if (src[i] == '%' && i + 2 < len && hex_digit(src[i + 1]) >= 0 &&
            hex_digit(src[i + 2]) >= 0) {
            dst[o++] = (char)(hex_digit(src[i + 1]) * 16 + hex_digit(src[i + 2]));
            i += 2;
        } else {
            dst[o++] = (char)src[i];
        }
    }
    dst[o] = '\0';
}

void client_grpc_timeout(uint64_t timeout_ms, char *buf, size_t buf_cap)
{
    /* gRPC allows at most 8 digits; fall back to coarser units. */
    if (timeout_ms <= 99999999u)
        snprintf(buf, buf_cap, "%llum", (unsigned long long)timeout_ms);
    else if (timeout_ms / 1000 <= 99999999u)
        snprintf(buf, buf_cap, "%lluS", (unsigned long long)(timeout_ms / 1000));
    else
        snprintf(buf, buf_cap, "99999999S");
}

fl_err client_parse_endpoint(const char *endpoint, char *host, size_t host_cap, int *port)
{
    const char *p = endpoint;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://") != NULL)
        return FL_ERR_INVALID; /* https and other schemes: no TLS here */
    const char *host_start = p, *host_end;
    const char *colon;
    if (*p == '[') {
        host_start = p + 1;
        host_end = strchr(p, ']');
        if (host_end == NULL || host_end[1] != ':')
            return FL_ERR_INVALID;
        colon = host_end + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            return FL_ERR_INVALID;
        host_end = colon;
    }
    size_t host_len = (size_t)(host_end - host_start);
    if (host_len == 0 || host_len >= host_cap)
        return FL_ERR_INVALID;
    char *end = NULL;
    long v = strtol(colon + 1, &end, 10);
    /* allow a trailing "/" as in "http://host:port/" */
    if (end == colon + 1 || (*end != '\0' && strcmp(end, "/") != 0) || v <= 0 || v > 65535)
        return FL_ERR_INVALID;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (int)v;
    return FL_OK;
}

size_t client_prefix_end(const uint8_t *key, size_t key_len, uint8_t *end)
{
    for (size_t i = key_len; i > 0; i--) {
        if (key[i - 1] < 0xff) {
            memcpy(end, key, i);
            end[i - 1] = (uint8_t)(key[i - 1] + 1);
            return i;
        }
    }
    end[0] = 0; /* every key */
    return 1;
}

/* ---- member URLs (etcd's types.NewURLs) ------------------------------------ */

static bool scheme_char(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

/* One URL, following Go's url.Parse as far as etcd's checks need: the scheme
 * (letters first, up to ':'), then "//authority" up to the next '/', '?' or
 * '#', the host after any "user@", then the path. */
static fl_err check_url(const char *text, char *err, size_t err_cap)
{
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n'))
        len--;
    while (len > 0 && (*text == ' ' || *text == '\t' || *text == '\n')) {
        text++;
        len--;
    }
    if (len >= 512) {
        snprintf(err, err_cap, "URL too long: %.64s...", text);
        return FL_ERR_INVALID;
    }
    char u[512];
    memcpy(u, text, len);
    u[len] = '\0';
    size_t i = 0;
    while (u[i] != '\0' && scheme_char(u[i], i == 0))
        i++;
    if (u[0] == ':') {
        snprintf(err, err_cap, "parse \"%s\": missing protocol scheme", u);
        return FL_ERR_INVALID;
    }
    char scheme[16] = "";
    const char *rest = u;
    if (u[i] == ':' && i > 0 && i < sizeof scheme) {
        for (size_t k = 0; k < i; k++)
            scheme[k] = (char)(u[k] >= 'A' && u[k] <= 'Z' ? u[k] - 'A' + 'a' : u[k]);
        scheme[i] = '\0';
        rest = u + i + 1;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
        strcmp(scheme, "unix") != 0 && strcmp(scheme, "unixs") != 0) {
        snprintf(err, err_cap, "URL scheme must be http, https, unix, or unixs: %s", u);
        return FL_ERR_INVALID;
    }
    char host[512] = "";
    const char *path = rest;
    if (strncmp(rest, "//", 2) == 0) {
        const char *a = rest + 2;
        size_t alen = strcspn(a, "/?#");
        const char *at = memchr(a, '@', alen);
        const char *h = at ? at + 1 : a;
        size_t hlen = alen - (size_t)(h - a);
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        path = a + alen;
        const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
        if (colon != NULL) {
            const char *port = colon + (host[0] == '[' ? 2 : 1);
            if (port[strspn(port, "0123456789")] != '\0') {
                snprintf(err, err_cap, "parse \"%s\": invalid port \"%s\" after host", u, port - 1);
                return FL_ERR_INVALID;
            }
        }
    }
    /* net.SplitHostPort: "[v6]:port", or exactly one colon */
    bool has_port;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        has_port = close != NULL && close[1] == ':' && strchr(close + 2, ':') == NULL;
    } else {
        const char *colon = strchr(host, ':');
        has_port = colon != NULL && strchr(colon + 1, ':') == NULL;
    }
    if (!has_port) {
        snprintf(err, err_cap, "URL address does not have the form \"host:port\": %s", u);
        return FL_ERR_INVALID;
    }
    size_t path_len = strcspn(path, "?#");
    if (path_len > 0) {
        snprintf(err, err_cap, "URL must not contain a path: %s", u);
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

fl_err client_check_urls(const char *const *urls, size_t n, char *err, size_t err_cap)
{
    assert(urls != NULL && err != NULL && err_cap > 0);
    err[0] = '\0';
    if (n == 0 || n > CLIENT_MAX_PEER_URLS) {
        snprintf(err, err_cap, "between 1 and %d URLs, not %zu", CLIENT_MAX_PEER_URLS, n);
        return FL_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        assert(urls[i] != NULL);
        fl_err e = check_url(urls[i], err, err_cap);
        if (e != FL_OK)
            return e;
    }
    return FL_OK;
}

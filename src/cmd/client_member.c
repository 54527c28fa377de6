/* client_member: `member list|add|remove|update|promote` and `move-leader`,
 * with etcdctl 3.4's arguments, messages, output and exit codes
 * (ctlv3/command/member_command.go, move_leader_command.go).
 *
 * -w table: etcdctl has no table form for these; it makes the change and then
 * fails with "table not supported as output format" (exit 4). Here the format
 * is refused before anything is sent (as the KV verbs do, docs/client.md):
 * a membership change that reports failure must not have happened. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmd/client_cli.h"

#define MEMBER_ADD_LIST_ROUNDS_MAX 8 /* re-reads of the member list after an add */

/* ---- arguments -------------------------------------------------------------- */

typedef struct member_args {
    const char *positional[4];
    int positional_count;
    const char *peer_urls; /* NULL when not given */
    bool learner;
    char *urls[CLIENT_MAX_PEER_URLS]; /* split peer_urls; point into urls_buf */
    size_t url_count;
    char urls_buf[2048];
} member_args;

/* Takes --peer-urls and --learner (where the verb has them) out of argv[1..];
 * the rest are positional. Returns 0 or an exit code (message printed). */
static int parse_member_args(int argc, char **argv, bool with_urls, bool with_learner,
                             member_args *a)
{
    memset(a, 0, sizeof *a);
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!flags_done && strcmp(s, "--") == 0) {
            flags_done = true;
        } else if (!flags_done && with_urls && strncmp(s, "--peer-urls", 11) == 0 &&
                   (s[11] == '\0' || s[11] == '=')) {
            if (s[11] == '=') {
                a->peer_urls = s + 12;
            } else if (i + 1 < argc) {
                a->peer_urls = argv[++i];
            } else {
                return cli_fail(CLI_EXIT_BAD_ARGS, "flag needs an argument: --peer-urls");
            }
        } else if (!flags_done && with_learner && strncmp(s, "--learner", 9) == 0 &&
                   (s[9] == '\0' || s[9] == '=')) {
            a->learner = s[9] == '\0' || strcmp(s + 10, "true") == 0 || strcmp(s + 10, "1") == 0;
        } else if (!flags_done && s[0] == '-' && s[1] != '\0') {
            return cli_fail(CLI_EXIT_BAD_ARGS, "unknown flag: %s", s);
        } else {
            if (a->positional_count == (int)(sizeof a->positional / sizeof a->positional[0]))
                return cli_fail(CLI_EXIT_BAD_ARGS, "too many arguments");
            a->positional[a->positional_count++] = s;
        }
    }
    return 0;
}

/* etcdctl: strings.Split(--peer-urls, ","); empty pieces stay (and fail the URL check). */
static int split_urls(member_args *a)
{
    assert(a->peer_urls != NULL && a->url_count == 0);
    size_t len = strlen(a->peer_urls);
    if (len >= sizeof a->urls_buf)
        return cli_fail(CLI_EXIT_BAD_ARGS, "--peer-urls is too long");
    memcpy(a->urls_buf, a->peer_urls, len + 1);
    char *p = a->urls_buf;
    for (;;) {
        if (a->url_count == CLIENT_MAX_PEER_URLS)
            return cli_fail(CLI_EXIT_BAD_ARGS, "too many peer URLs (at most %d)",
                            CLIENT_MAX_PEER_URLS);
        a->urls[a->url_count++] = p;
        char *comma = strchr(p, ',');
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return 0;
}

/* Go's strconv.ParseUint(text, 16, 64), with its error texts: a syntax error
 * for any non-hex character (no "0x", sign or '_'), a range error at the first
 * digit that overflows. Returns false and fills why on error. */
static bool parse_hex_id(const char *text, uint64_t *id, char *why, size_t why_cap)
{
    assert(text != NULL && id != NULL && why != NULL && why_cap > 0);
    uint64_t v = 0;
    const char *kind = NULL;
    if (text[0] == '\0')
        kind = "invalid syntax";
    for (const char *p = text; *p != '\0' && kind == NULL; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else {
            kind = "invalid syntax";
            break;
        }
        if (v > (UINT64_MAX >> 4)) {
            kind = "value out of range";
            break;
        }
        v = v << 4 | (uint64_t)d;
    }
    if (kind != NULL) {
        /* Go quotes the input with strconv.Quote */
        char *q = NULL;
        size_t qlen = 0;
        FILE *m = open_memstream(&q, &qlen);
        if (m == NULL)
            abort();
        cli_go_quote(m, text);
        fclose(m);
        snprintf(why, why_cap, "strconv.ParseUint: parsing %s: %s", q, kind);
        free(q);
        return false;
    }
    *id = v;
    return true;
}

/* The member id argument of remove/update/promote. */
static int member_id_arg(const member_args *a, uint64_t *id)
{
    if (a->positional_count != 1)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member ID is not provided");
    char why[CLIENT_MESSAGE_BYTES];
    if (!parse_hex_id(a->positional[0], id, why, sizeof why))
        return cli_fail(CLI_EXIT_BAD_ARGS, "bad member ID arg (%s), expecting ID in Hex", why);
    return 0;
}

static int request_failed(const client_status *s, fl_err err)
{
    return cli_fail(CLI_EXIT_ERROR, "%s", s->message[0] ? s->message : fl_err_name(err));
}

static int no_table_printer(void)
{
    return cli_fail(CLI_EXIT_BAD_FEATURE, "table not supported as output format");
}

/* ---- member list ------------------------------------------------------------ */

static int member_list(const cli_globals *g, int argc, char **argv)
{
    member_args a;
    int rc = parse_member_args(argc, argv, false, false, &a);
    if (rc)
        return rc;
    if (a.positional_count != 0)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member list takes no arguments");
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    Etcdserverpb__MemberListResponse *resp = NULL;
    client_status s;
    fl_err err = client_sync_member_list(sc, g->command_timeout_ms, &resp, &s);
    client_sync_close(sc);
    if (err != FL_OK)
        return request_failed(&s, err);
    cli_print_member_list(g->format, resp);
    client_free_response(resp);
    return CLI_EXIT_OK;
}

/* ---- member add ------------------------------------------------------------- */

/* The member list as the member that made the change sees it: etcdctl reads
 * the list until it comes from that member, with a linearizable Get between
 * reads (after a failover the new member might not know the change yet). */
static fl_err list_after_add(client_sync *sc, const cli_globals *g, uint64_t changed_by,
                             Etcdserverpb__MemberListResponse **out, client_status *s)
{
    *out = NULL;
    for (int round = 0; round < MEMBER_ADD_LIST_ROUNDS_MAX; round++) {
        Etcdserverpb__MemberListResponse *list = NULL;
        fl_err err = client_sync_member_list(sc, g->command_timeout_ms, &list, s);
        if (err != FL_OK)
            return err;
        if (list->header != NULL && list->header->member_id == changed_by) {
            *out = list;
            return FL_OK;
        }
        client_free_response(list);
        Etcdserverpb__RangeRequest get;
        etcdserverpb__range_request__init(&get);
        get.key = (ProtobufCBinaryData){.len = 1, .data = (uint8_t *)"_"};
        Etcdserverpb__RangeResponse *got = NULL;
        err = client_sync_range(sc, &get, g->command_timeout_ms, &got, s);
        if (err != FL_OK)
            return err;
        changed_by = got->header != NULL ? got->header->member_id : 0;
        client_free_response(got);
    }
    s->err = FL_ERR_UNAVAILABLE;
    s->grpc_code = -1;
    snprintf(s->message, sizeof s->message, "member list keeps coming from another member");
    return FL_ERR_UNAVAILABLE;
}

/* The lines etcdctl prints after "Member ... added": how to start the new member. */
static void print_join_block(const Etcdserverpb__MemberListResponse *list, uint64_t new_id,
                             const char *new_name, const char *peer_urls)
{
    assert(list != NULL && new_name != NULL && peer_urls != NULL);
    char *conf = NULL;
    size_t conf_len = 0;
    FILE *m = open_memstream(&conf, &conf_len); /* freed below */
    if (m == NULL)
        abort();
    bool first = true;
    for (size_t i = 0; i < list->n_members; i++) {
        const Etcdserverpb__Member *mem = list->members[i];
        const char *name = mem->id == new_id ? new_name : (mem->name ? mem->name : "");
        for (size_t u = 0; u < mem->n_peerurls; u++) {
            fprintf(m, "%s%s=%s", first ? "" : ",", name, mem->peerurls[u]);
            first = false;
        }
    }
    fclose(m);
    fputs("\nETCD_NAME=", stdout);
    cli_go_quote(stdout, new_name);
    fputs("\nETCD_INITIAL_CLUSTER=", stdout);
    cli_go_quote(stdout, conf);
    fputs("\nETCD_INITIAL_ADVERTISE_PEER_URLS=", stdout);
    cli_go_quote(stdout, peer_urls);
    fputs("\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n", stdout);
    free(conf);
}

static int member_add(const cli_globals *g, int argc, char **argv)
{
    member_args a;
    int rc = parse_member_args(argc, argv, true, true, &a);
    if (rc)
        return rc;
    if (a.positional_count < 1)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member name not provided");
    if (a.positional_count > 1) {
        char msg[1024] = "too many arguments";
        for (int i = 0; i < a.positional_count; i++)
            if (strncasecmp(a.positional[i], "http", 4) == 0) {
                size_t used = strlen(msg);
                snprintf(msg + used, sizeof msg - used, ", did you mean --peer-urls=%s",
                         a.positional[i]);
            }
        return cli_fail(CLI_EXIT_BAD_ARGS, "%s", msg);
    }
    if (a.peer_urls == NULL || a.peer_urls[0] == '\0')
        return cli_fail(CLI_EXIT_BAD_ARGS, "member peer urls not provided");
    if ((rc = split_urls(&a)) != 0)
        return rc;
    if (g->format == CLI_TABLE)
        return no_table_printer();
    const char *name = a.positional[0];
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    Etcdserverpb__MemberAddResponse *resp = NULL;
    client_status s;
    fl_err err = client_sync_member_add(sc, (const char *const *)a.urls, a.url_count, a.learner,
                                        g->command_timeout_ms, &resp, &s);
    if (err != FL_OK) {
        client_sync_close(sc);
        return request_failed(&s, err);
    }
    rc = CLI_EXIT_OK;
    if (g->format == CLI_JSON) {
        cli_print_member_change_json(resp->header, resp->member, resp->members, resp->n_members);
    } else {
        uint64_t new_id = resp->member ? resp->member->id : 0;
        /* etcdctl 3.4 says "added to" for a learner too */
        printf("Member %16" PRIx64 " added to cluster %16" PRIx64 "\n", new_id,
               resp->header ? resp->header->cluster_id : 0);
        Etcdserverpb__MemberListResponse *list = NULL;
        err = list_after_add(sc, g, resp->header ? resp->header->member_id : 0, &list, &s);
        if (err != FL_OK) {
            rc = request_failed(&s, err);
        } else {
            print_join_block(list, new_id, name, a.peer_urls);
            client_free_response(list);
        }
    }
    client_free_response(resp);
    client_sync_close(sc);
    return rc;
}

/* ---- member remove / update / promote ------------------------------------------- */

typedef enum member_change { CHANGE_REMOVE, CHANGE_UPDATE, CHANGE_PROMOTE } member_change;

static int member_change_verb(const cli_globals *g, int argc, char **argv, member_change what)
{
    member_args a;
    int rc = parse_member_args(argc, argv, what == CHANGE_UPDATE, false, &a);
    if (rc)
        return rc;
    uint64_t id = 0;
    if ((rc = member_id_arg(&a, &id)) != 0)
        return rc;
    if (what == CHANGE_UPDATE) {
        if (a.peer_urls == NULL || a.peer_urls[0] == '\0')
            return cli_fail(CLI_EXIT_BAD_ARGS, "member peer urls not provided");
        if ((rc = split_urls(&a)) != 0)
            return rc;
    }
    if (g->format == CLI_TABLE)
        return no_table_printer();
    client_sync *sc;
    if (!cli_open(g, -1, &sc))
        return CLI_EXIT_ERROR;
    client_status s;
    fl_err err;
    /* The three responses share their layout (header, members); keep each typed. */
    const Etcdserverpb__ResponseHeader *header = NULL;
    Etcdserverpb__Member **members = NULL;
    size_t n = 0;
    void *resp = NULL;
    const char *verb;
    if (what == CHANGE_REMOVE) {
        Etcdserverpb__MemberRemoveResponse *r = NULL;
        err = client_sync_member_remove(sc, id, g->command_timeout_ms, &r, &s);
        if (r != NULL)
            header = r->header, members = r->members, n = r->n_members;
        resp = r;
        verb = "removed from";
    } else if (what == CHANGE_UPDATE) {
        Etcdserverpb__MemberUpdateResponse *r = NULL;
        err = client_sync_member_update(sc, id, (const char *const *)a.urls, a.url_count,
                                        g->command_timeout_ms, &r, &s);
        if (r != NULL)
            header = r->header, members = r->members, n = r->n_members;
        resp = r;
        verb = "updated in";
    } else {
        Etcdserverpb__MemberPromoteResponse *r = NULL;
        err = client_sync_member_promote(sc, id, g->command_timeout_ms, &r, &s);
        if (r != NULL)
            header = r->header, members = r->members, n = r->n_members;
        resp = r;
        verb = "promoted in";
    }
    client_sync_close(sc);
    if (err != FL_OK)
        return request_failed(&s, err);
    rc = CLI_EXIT_OK;
    if (g->format == CLI_JSON)
        cli_print_member_change_json(header, NULL, members, n);
    else
        printf("Member %16" PRIx64 " %s cluster %16" PRIx64 "\n", id, verb,
               header ? header->cluster_id : 0);
    client_free_response(resp);
    return rc;
}

int cli_member(const cli_globals *g, int argc, char **argv)
{
    if (argc < 2)
        return cli_fail(CLI_EXIT_BAD_ARGS, "member: a subcommand is needed (list, add, remove, "
                                           "update, promote)");
    const char *sub = argv[1];
    if (strcmp(sub, "list") == 0)
        return member_list(g, argc - 1, argv + 1);
    if (strcmp(sub, "add") == 0)
        return member_add(g, argc - 1, argv + 1);
    if (strcmp(sub, "remove") == 0)
        return member_change_verb(g, argc - 1, argv + 1, CHANGE_REMOVE);
    if (strcmp(sub, "update") == 0)
        return member_change_verb(g, argc - 1, argv + 1, CHANGE_UPDATE);
    if (strcmp(sub, "promote") == 0)
        return member_change_verb(g, argc - 1, argv + 1, CHANGE_PROMOTE);
    return cli_fail(CLI_EXIT_BAD_ARGS, "unknown command \"member %s\"", sub);
}

/* ---- move-leader -------------------------------------------------------------- */

/* Asks each endpoint in turn for its status and returns (opened on that
 * endpoint alone) the first that says it is the leader; *sc is NULL when none
 * does. A failing endpoint ends the search with its error, as in etcdctl. */
static int find_leader(const cli_globals *g, client_sync **sc, uint64_t *leader_id)
{
    assert(g->endpoint_count > 0 && g->endpoint_count <= CLI_MAX_ENDPOINTS);
    *sc = NULL;
    for (size_t i = 0; i < g->endpoint_count; i++) {
        client_sync *c;
        if (!cli_open(g, (int)i, &c))
            return CLI_EXIT_ERROR;
        Etcdserverpb__StatusResponse *st = NULL;
        client_status s;
        fl_err err = client_sync_status(c, g->command_timeout_ms, &st, &s);
        if (err != FL_OK) {
            client_sync_close(c);
            return request_failed(&s, err);
        }
        bool is_leader = st->header != NULL && st->header->member_id == st->leader;
        *leader_id = st->leader;
        client_free_response(st);
        if (is_leader) {
            *sc = c;
            return 0;
        }
        client_sync_close(c);
    }
    return 0;
}

int cli_move_leader(const cli_globals *g, int argc, char **argv)
{
    member_args a;
    int rc = parse_member_args(argc, argv, false, false, &a);
    if (rc)
        return rc;
    if (a.positional_count != 1)
        return cli_fail(CLI_EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    uint64_t target = 0;
    char why[CLIENT_MESSAGE_BYTES];
    if (!parse_hex_id(a.positional[0], &target, why, sizeof why))
        return cli_fail(CLI_EXIT_BAD_ARGS, "%s", why);
    if (g->format == CLI_TABLE)
        return no_table_printer();
    client_sync *sc = NULL;
    uint64_t leader = 0;
    if ((rc = find_leader(g, &sc, &leader)) != 0)
        return rc;
    if (sc == NULL) {
        /* Go's %v of the endpoint slice: [a b c] */
        char list[sizeof g->endpoints_buf + 2] = "[";
        for (size_t i = 0; i < g->endpoint_count; i++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", g->endpoints[i]);
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "]");
        return cli_fail(CLI_EXIT_BAD_ARGS, "no leader endpoint given at %s", list);
    }
    Etcdserverpb__MoveLeaderResponse *resp = NULL;
    client_status s;
    fl_err err = client_sync_move_leader(sc, target, g->command_timeout_ms, &resp, &s);
    client_sync_close(sc);
    if (err != FL_OK)
        return request_failed(&s, err);
    rc = CLI_EXIT_OK;
    if (g->format == CLI_JSON)
        cli_print_header_json(resp->header);
    else /* types.ID's String: hex without padding */
        printf("Leadership transferred from %" PRIx64 " to %" PRIx64 "\n", leader, target);
    client_free_response(resp);
    return rc;
}

/* cmd/client_cli: what the client verbs (client_*.c) and bench share: global
 * flags, exit codes, and the output printers (etcdctl's simple/json/table). */
#ifndef FL_CMD_CLIENT_CLI_H
#define FL_CMD_CLIENT_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "client/client.h"

/* Exit codes: etcdctl 3.4's (ctlv3/command/error.go), so scripts written for
 * etcdctl keep working. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_ERROR = 1,         /* the request failed: server error, unreachable, timeout */
    CLI_EXIT_INVALID_INPUT = 3, /* a malformed txn script */
    CLI_EXIT_BAD_FEATURE = 4,   /* e.g. an output format the verb does not have */
    CLI_EXIT_BAD_ARGS = 128,    /* wrong arguments or flags */
};

typedef enum cli_format { CLI_SIMPLE, CLI_JSON, CLI_TABLE } cli_format;

#define CLI_MAX_ENDPOINTS CLIENT_MAX_ENDPOINTS

typedef struct cli_globals {
    const char *endpoints[CLI_MAX_ENDPOINTS];
    size_t endpoint_count;
    char endpoints_buf[1024]; /* as given, for messages */
    char split_buf[1024];     /* endpoints[] point into it */
    cli_format format;
    uint64_t command_timeout_ms;
    uint64_t dial_timeout_ms;
} cli_globals;

/* Prints "Error: <msg>" on stderr (etcdctl's form) and returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a duration "5s", "500ms", "1m", "2h" or plain seconds. */
bool cli_parse_duration_ms(const char *text, uint64_t *ms);

/* Opens a blocking client on the global endpoints (or only endpoint index
 * only_endpoint when >= 0). On failure prints the error and returns false. */
bool cli_open(const cli_globals *g, int only_endpoint, client_sync **out);

/* Printers. Each prints one response in the chosen format to stdout. */
void cli_print_range(cli_format f, const Etcdserverpb__RangeResponse *r, bool value_only,
                     bool count_only);
void cli_print_put(cli_format f, const Etcdserverpb__PutResponse *r);
void cli_print_delete(cli_format f, const Etcdserverpb__DeleteRangeResponse *r);
void cli_print_txn(cli_format f, const Etcdserverpb__TxnResponse *r);
void cli_print_member_list(cli_format f, const Etcdserverpb__MemberListResponse *r);
/* Go's json.Marshal of a membership response (MemberAdd's member is NULL for
 * the others): {"header":{...},"member":{...},"members":[...]} as etcdctl -w json. */
void cli_print_member_change_json(const Etcdserverpb__ResponseHeader *header,
                                  const Etcdserverpb__Member *member,
                                  Etcdserverpb__Member *const *members, size_t n);
/* {"header":{...}} (MoveLeader's response), or {} without a header. */
void cli_print_header_json(const Etcdserverpb__ResponseHeader *header);

/* One endpoint's health, as etcdctl's epHealth. */
typedef struct cli_health {
    const char *endpoint;
    bool healthy;
    char took[32];                    /* Go's duration text, e.g. "1.85478ms" */
    char error[CLIENT_MESSAGE_BYTES]; /* "" when healthy */
} cli_health;
void cli_print_health(cli_format f, const cli_health *h, size_t n);
/* Go's time.Duration.String of ns into buf. */
void cli_go_duration(uint64_t ns, char *buf, size_t cap);
/* Go's %q (strconv.Quote) of a string. */
void cli_go_quote(FILE *out, const char *s);

/* statuses[i] is NULL when endpoint i failed (it is then left out, as etcdctl does). */
void cli_print_status(cli_format f, const char *const *endpoints,
                      Etcdserverpb__StatusResponse *const *statuses, size_t n);

/* Writes s[0..len) as a JSON string with Go's encoding/json escaping. */
void cli_json_string(FILE *out, const char *s, size_t len);
/* Standard base64 of data (as Go's []byte in JSON). */
void cli_json_base64(FILE *out, const uint8_t *data, size_t len);

/* The verbs. argv[0] is the verb. */
int cli_get(const cli_globals *g, int argc, char **argv);
int cli_put(const cli_globals *g, int argc, char **argv);
int cli_del(const cli_globals *g, int argc, char **argv);
int cli_txn(const cli_globals *g, int argc, char **argv);
int cli_compact(const cli_globals *g, int argc, char **argv);
int cli_status(const cli_globals *g, int argc, char **argv);
int cli_member(const cli_globals *g, int argc, char **argv);
int cli_move_leader(const cli_globals *g, int argc, char **argv);
int cli_endpoint_health(const cli_globals *g, int argc, char **argv);
int cli_bench(const cli_globals *g, int argc, char **argv);

#endif

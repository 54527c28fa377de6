/* client_txn_script: etcdctl's text forms of requests, parsed into protobuf-c
 * requests. Used by `flotilla get|put|del` (one operation from argv) and
 * `flotilla txn` (etcdctl's txn script), and testable without a server.
 *
 * Operation (etcdctl's get/put/del arguments):
 *   get KEY [RANGE_END] [--prefix] [--from-key] [--limit N] [--rev N]
 *       [--sort-by KEY|CREATE|MODIFY|VALUE|VERSION] [--order ASCEND|DESCEND]
 *       [--keys-only] [--count-only] [--consistency l|s]
 *   put KEY [VALUE] [--prev-kv] [--lease HEXID] [--ignore-value] [--ignore-lease]
 *   del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]
 * Flags take "--flag=value" or "--flag value"; booleans also "--flag=true|false".
 *
 * Txn script (etcdctl txn): compares, one per line, then a blank line; success
 * operations (as above) one per line, then a blank line; failure operations,
 * then a blank line (or the end of the input). A compare is
 *   TARGET("KEY") OP "VALUE"     TARGET: ver|version c|create m|mod val|value lease
 *                                OP: = != < >
 * Keys and values in operations are words, "double-quoted" with Go escapes, or
 * 'single-quoted'.
 *
 * Every request built here is allocated like protobuf-c's unpack (malloc for
 * each field) and freed with client_free_response(). Must not: do I/O.
 */
#ifndef FL_CLIENT_TXN_SCRIPT_H
#define FL_CLIENT_TXN_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include "client/client.h"

#define CLIENT_SCRIPT_MAX_ARGS 64 /* words per line */
#define CLIENT_SCRIPT_MAX_OPS                                                                      \
    10000 /* compares or operations per txn (etcd allows 128 by default) */

/* Splits a line into words (etcdctl's argify). On success *argc words are
 * malloc'd into argv (free each with free()). */
fl_err client_script_split(const char *line, char **argv, int argv_cap, int *argc, char *err,
                           size_t err_cap);

/* Builds one operation from argv[0] = "get"|"put"|"del" and its arguments.
 * On success *out is owned by the caller (client_free_response). For put,
 * *value_missing says that no VALUE was given and --ignore-value is unset (the
 * CLI then reads the value from stdin; a txn rejects it). On error, err holds
 * etcdctl's text (e.g. "get command needs one argument as key and an optional
 * argument as range_end"); the error is FL_ERR_INVALID for bad arguments and
 * FL_ERR_UNIMPLEMENTED for an unknown --sort-by/--order value (etcdctl exits
 * with "bad feature" for those). */
fl_err client_op_parse(int argc, char *const *argv, Etcdserverpb__RequestOp **out,
                       bool *value_missing, char *err, size_t err_cap);

/* One compare line, e.g. mod("k") = "5". On success *out is owned by the
 * caller (client_free_response). */
fl_err client_compare_parse(const char *line, Etcdserverpb__Compare **out, char *err,
                            size_t err_cap);

/* Incremental txn script parser: feed lines (without the newline). */
typedef enum client_txn_section {
    CLIENT_TXN_COMPARES,
    CLIENT_TXN_SUCCESS,
    CLIENT_TXN_FAILURE,
    CLIENT_TXN_DONE
} client_txn_section;

typedef struct client_txn_builder {
    Etcdserverpb__TxnRequest *req; /* owned until client_txn_builder_take */
    client_txn_section section;
} client_txn_builder;

fl_err client_txn_builder_init(client_txn_builder *b);
/* A blank (or all-space) line ends the current section. Error text in err. */
fl_err client_txn_builder_line(client_txn_builder *b, const char *line, char *err, size_t err_cap);
/* Hands the request over (caller frees with client_free_response) and resets
 * b; sections not yet ended count as ended. */
Etcdserverpb__TxnRequest *client_txn_builder_take(client_txn_builder *b);
void client_txn_builder_free(client_txn_builder *b);

/* Parses a whole script (text need not end with a newline). On success *out is
 * owned by the caller. */
fl_err client_txn_script_parse(const char *text, size_t len, Etcdserverpb__TxnRequest **out,
                               char *err, size_t err_cap);

#endif

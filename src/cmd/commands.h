/* cmd: the verbs of the `flotilla` binary.
 *
 * `serve` runs a member (serve.c). The client verbs talk to members through
 * src/client (client_*.c, bench.c). Verbs hold no logic that a library should.
 * Each returns the process exit code.
 */
#ifndef FL_CMD_COMMANDS_H
#define FL_CMD_COMMANDS_H

/* argv[0] is the verb name. */
int cmd_serve_main(int argc, char **argv);
/* put get del txn compact status member bench ...: argv[0] is the verb. */
int cmd_client_main(int argc, char **argv);
/* Prints the client verbs' usage lines to stdout. */
void cmd_client_usage(void);

#endif

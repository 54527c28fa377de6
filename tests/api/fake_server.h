/* A test double of the server_* functions src/api calls (and of the two
 * mvcc free functions it uses), so the api tests run without LMDB or a WAL.
 * Keys live in a small in-memory table; writes and reads complete on a later
 * loop turn (uv_idle), as the real server's do. `hold` keeps requests
 * pending until fake_server_release, to test a client that goes away first.
 */
#ifndef FL_TEST_FAKE_SERVER_H
#define FL_TEST_FAKE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/server.h"

server *fake_server_create(uv_loop_t *loop);
/* Completes what is pending with FL_ERR_STOPPED, closes its handle. */
void fake_server_destroy(server *srv);
void fake_server_hold(server *srv, bool hold);
/* Completes every held request on the next loop turn. */
void fake_server_release(server *srv);
size_t fake_server_pending(const server *srv);
uint64_t fake_server_requests(const server *srv);
/* Stores key -> value_len bytes of `fill` directly (no request size limit). */
void fake_server_put_raw(server *srv, const char *key, size_t value_len, uint8_t fill);
/* The next write completes with this error instead (once). */
void fake_server_fail_next_write(server *srv, fl_err err);

#endif

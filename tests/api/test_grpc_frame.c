/* api.grpc_frame: one gRPC message reassembled from any split of the body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/grpc_frame.h"

static size_t frame(uint8_t *out, const uint8_t *msg, uint32_t len)
{
    api_grpc_write_prefix(out, len);
    memcpy(out + 5, msg, len);
    return len + 5u;
}

static void test_every_split(void **state)
{
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof(msg); i++) {
        msg[i] = (uint8_t)(i * 7 + 1);
    }
    uint8_t buf[305];
    size_t n = frame(buf, msg, sizeof(msg));
    api_grpc_reader r;
    api_grpc_reader_init(&r);
    /* Two chunks cut at every position, then chunk sizes 1..9. */
    for (size_t cut = 0; cut <= n; cut++) {
        api_grpc_reader_reset(&r, 1000, 4096);
        api_frame_state s = api_grpc_reader_feed(&r, buf, cut);
        assert_true(cut == n ? s == API_FRAME_DONE : s == API_FRAME_PREFIX || s == API_FRAME_BODY);
        s = api_grpc_reader_feed(&r, buf + cut, n - cut);
        assert_int_equal(s, API_FRAME_DONE);
        assert_int_equal(r.msg_len, sizeof(msg));
        assert_memory_equal(r.body, msg, sizeof(msg));
    }
    for (size_t step = 1; step < 10; step++) {
        api_grpc_reader_reset(&r, 1000, 4096);
        api_frame_state s = API_FRAME_PREFIX;
        for (size_t off = 0; off < n; off += step) {
            s = api_grpc_reader_feed(&r, buf + off, off + step > n ? n - off : step);
        }
        assert_int_equal(s, API_FRAME_DONE);
        assert_memory_equal(r.body, msg, sizeof(msg));
    }
    api_grpc_reader_free(&r);
}

static void test_empty_message(void **state)
{
    api_grpc_reader r;
    api_grpc_reader_init(&r);
    api_grpc_reader_reset(&r, 10, 0);
    uint8_t prefix[5];
    api_grpc_write_prefix(prefix, 0);
    assert_int_equal(api_grpc_reader_feed(&r, prefix, 4), API_FRAME_PREFIX);
    assert_int_equal(api_grpc_reader_feed(&r, prefix + 4, 1), API_FRAME_DONE);
    assert_int_equal(r.msg_len, 0);
    api_grpc_reader_free(&r);
}

static void test_limits_and_flags(void **state)
{
    api_grpc_reader r;
    api_grpc_reader_init(&r);
    uint8_t prefix[5];
    /* Over the limit: known from the prefix alone, nothing allocated. */
    api_grpc_reader_reset(&r, 100, 0);
    api_grpc_write_prefix(prefix, 101);
    assert_int_equal(api_grpc_reader_feed(&r, prefix, 5), API_FRAME_TOO_LARGE);
    assert_null(r.body);
    assert_int_equal(r.msg_len, 101);
    /* Final: more bytes change nothing. */
    assert_int_equal(api_grpc_reader_feed(&r, prefix, 5), API_FRAME_TOO_LARGE);
    /* Exactly the limit is fine. */
    api_grpc_reader_reset(&r, 100, 0);
    api_grpc_write_prefix(prefix, 100);
    assert_int_equal(api_grpc_reader_feed(&r, prefix, 5), API_FRAME_BODY);
    /* The compressed flag. */
    api_grpc_reader_reset(&r, 100, 0);
    uint8_t compressed[5] = {1, 0, 0, 0, 1};
    assert_int_equal(api_grpc_reader_feed(&r, compressed, 5), API_FRAME_COMPRESSED);
    /* A second message after the first. */
    api_grpc_reader_reset(&r, 100, 4096);
    uint8_t two[12];
    size_t n = frame(two, (const uint8_t *)"a", 1);
    n += frame(two + n, (const uint8_t *)"b", 1);
    assert_int_equal(api_grpc_reader_feed(&r, two, n), API_FRAME_EXTRA);
    /* A 4 GiB announcement against a large limit is still refused. */
    api_grpc_reader_reset(&r, UINT32_MAX - 1, 0);
    uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(api_grpc_reader_feed(&r, huge, 5), API_FRAME_TOO_LARGE);
    api_grpc_reader_free(&r);
}

static void test_buffer_kept_or_dropped(void **state)
{
    api_grpc_reader r;
    api_grpc_reader_init(&r);
    uint8_t buf[64 + 5];
    uint8_t msg[64] = {0};
    size_t n = frame(buf, msg, sizeof(msg));
    api_grpc_reader_reset(&r, 100, 0);
    assert_int_equal(api_grpc_reader_feed(&r, buf, n), API_FRAME_DONE);
    uint8_t *kept = r.body;
    api_grpc_reader_reset(&r, 100, 64); /* fits: kept */
    assert_ptr_equal(r.body, kept);
    api_grpc_reader_reset(&r, 100, 63); /* too big to keep: freed */
    assert_null(r.body);
    api_grpc_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_limits_and_flags),
        cmocka_unit_test(test_buffer_kept_or_dropped),
    };
    return cmocka_run_group_tests_name("api.grpc_frame", tests, NULL, NULL);
}

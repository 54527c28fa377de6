#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/crc32c.h"
#include "util/error.h"

/* Known-answer vectors from RFC 3720 (iSCSI), appendix B.4. */
static void crc32c_known_answers(void **state)
{
    (void)state;
    assert_int_equal(fl_crc32c(0, "123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    assert_int_equal(fl_crc32c(0, zeros, sizeof zeros), 0x8A9136AAu);
    uint8_t ones[32];
    memset(ones, 0xff, sizeof ones);
    assert_int_equal(fl_crc32c(0, ones, sizeof ones), 0x62A8AB43u);
}

static void crc32c_incremental_equals_whole(void **state)
{
    (void)state;
    const char *text = "the quick brown fox jumps over the lazy dog, twice over";
    size_t len = strlen(text);
    uint32_t whole = fl_crc32c(0, text, len);
    for (size_t cut = 0; cut <= len; cut++) {
        uint32_t part = fl_crc32c(fl_crc32c(0, text, cut), text + cut, len - cut);
        assert_int_equal(part, whole);
    }
}

static void error_names_are_distinct(void **state)
{
    (void)state;
    for (int a = 0; a < FL_ERR__COUNT; a++) {
        assert_string_not_equal(fl_err_name((fl_err)a), "unknown");
        for (int b = a + 1; b < FL_ERR__COUNT; b++)
            assert_string_not_equal(fl_err_name((fl_err)a), fl_err_name((fl_err)b));
    }
    assert_string_equal(fl_err_name(FL_ERR__COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_known_answers),
        cmocka_unit_test(crc32c_incremental_equals_whole),
        cmocka_unit_test(error_names_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Alarms: a replicated set; NOSPACE caps puts as etcd 3.4's capped applier. */
#include "mvcc_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static int setup(void **state)
{
    tstore *ts = calloc(1, sizeof *ts);
    ts_open(ts, NULL);
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    ts_close(*state);
    free(*state);
    return 0;
}

/* Applies an alarm command; returns whether it changed the set. */
static bool alarm(tstore *ts, mvcc_alarm_action action, uint64_t member, mvcc_alarm_type type)
{
    mvcc_request req = {.type = MVCC_REQ_ALARM,
                        .u.alarm = {.action = action, .member_id = member, .alarm = type}};
    assert_int_equal(mvcc_request_validate(&req, 128), FL_OK);
    mvcc_response resp;
    int64_t rev = mvcc_current_revision(ts->store);
    assert_int_equal(ts_apply(ts, &req, &resp), FL_OK);
    assert_int_equal(resp.type, MVCC_REQ_ALARM);
    assert_int_equal(resp.revision, rev); /* not a KV change */
    bool changed = resp.u.alarm.changed;
    mvcc_response_free(&resp);
    return changed;
}

static void expect_alarms(tstore *ts, size_t n, const mvcc_alarm *want)
{
    mvcc_alarm *got = NULL;
    size_t count = 99;
    assert_int_equal(mvcc_alarms(ts->store, &got, &count), FL_OK);
    assert_int_equal(count, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got[i].member_id, want[i].member_id);
        assert_int_equal(got[i].alarm, want[i].alarm);
    }
    if (n == 0) {
        assert_null(got);
    }
    free(got);
}

static fl_err put(tstore *ts, const char *k, const char *v)
{
    mvcc_request req = {.type = MVCC_REQ_PUT, .u.put = {.key = B(k), .value = B(v)}};
    mvcc_response resp;
    fl_err err = ts_apply(ts, &req, &resp);
    mvcc_response_free(&resp);
    return err;
}

static fl_err txn(tstore *ts, const mvcc_op *success, size_t ns, const mvcc_op *failure, size_t nf)
{
    mvcc_request req = {
        .type = MVCC_REQ_TXN,
        .u.txn = {
            .success = success, .success_count = ns, .failure = failure, .failure_count = nf}};
    mvcc_response resp;
    fl_err err = ts_apply(ts, &req, &resp);
    mvcc_response_free(&resp);
    return err;
}

static void alarm_set_is_replicated_state(void **state)
{
    tstore *ts = *state;
    expect_alarms(ts, 0, NULL);
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 7, MVCC_ALARM_CORRUPT));
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 3, MVCC_ALARM_NOSPACE));
    assert_false(alarm(ts, MVCC_ALARM_ACTIVATE, 3, MVCC_ALARM_NOSPACE)); /* already */
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 3, MVCC_ALARM_CORRUPT));
    const mvcc_alarm three[] = {
        {3, MVCC_ALARM_NOSPACE}, {3, MVCC_ALARM_CORRUPT}, {7, MVCC_ALARM_CORRUPT}};
    expect_alarms(ts, 3, three);
    assert_int_equal(mvcc_applied_index(ts->store), 4);
    ts_reopen(ts);
    expect_alarms(ts, 3, three);
    assert_false(alarm(ts, MVCC_ALARM_DEACTIVATE, 9, MVCC_ALARM_NOSPACE)); /* not active */
    assert_true(alarm(ts, MVCC_ALARM_DEACTIVATE, 3, MVCC_ALARM_NOSPACE));
    expect_alarms(ts, 2, three + 1);
    /* a rolled-back batch takes its alarm changes with it */
    assert_int_equal(mvcc_batch_begin(ts->store), FL_OK);
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 5, MVCC_ALARM_NOSPACE));
    mvcc_batch_abort(ts->store);
    ts->next_index = mvcc_applied_index(ts->store) + 1;
    expect_alarms(ts, 2, three + 1);
    assert_int_equal(put(ts, "k", "v"), FL_OK);
}

static void nospace_caps_puts(void **state)
{
    tstore *ts = *state;
    ts_put(ts, "a", "1");
    ts_put(ts, "b", "2");
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 1, MVCC_ALARM_CORRUPT));
    assert_int_equal(put(ts, "c", "3"), FL_OK); /* CORRUPT does not cap */
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 1, MVCC_ALARM_NOSPACE));
    assert_true(alarm(ts, MVCC_ALARM_ACTIVATE, 2, MVCC_ALARM_NOSPACE));
    int64_t rev = mvcc_current_revision(ts->store);
    uint64_t index = mvcc_applied_index(ts->store);

    assert_int_equal(put(ts, "c", "4"), FL_ERR_NO_SPACE_QUOTA);
    mvcc_op p = {.type = MVCC_OP_PUT, .u.put = {.key = B("d"), .value = B("x")}};
    mvcc_op d = {.type = MVCC_OP_DELETE, .u.del = {.key = B("a")}};
    mvcc_op r = {.type = MVCC_OP_RANGE, .u.range = {.key = B("a")}};
    assert_int_equal(txn(ts, &p, 1, NULL, 0), FL_ERR_NO_SPACE_QUOTA);
    assert_int_equal(txn(ts, &r, 1, &p, 1), FL_ERR_NO_SPACE_QUOTA); /* put in failure */
    mvcc_txn_req inner = {.success = &p, .success_count = 1};
    mvcc_op nested = {.type = MVCC_OP_TXN, .u.txn = &inner};
    assert_int_equal(txn(ts, &nested, 1, NULL, 0), FL_ERR_NO_SPACE_QUOTA);
    /* refused entries are applied with no effect */
    assert_int_equal(mvcc_applied_index(ts->store), index + 4);
    assert_int_equal(mvcc_current_revision(ts->store), rev);
    char buf[8];
    assert_false(ts_get(ts, "d", 0, buf, sizeof buf, NULL));

    /* reads, deletes, txns without puts, compaction still work */
    assert_true(ts_get(ts, "c", 0, buf, sizeof buf, NULL));
    assert_string_equal(buf, "3");
    assert_int_equal(txn(ts, &r, 1, &d, 1), FL_OK);
    ts_del(ts, "b", NULL);
    assert_int_equal(ts_compact(ts, mvcc_current_revision(ts->store)), FL_OK);

    /* the cap survives a restart, and lasts while any NOSPACE alarm does */
    ts_reopen(ts);
    assert_int_equal(put(ts, "c", "5"), FL_ERR_NO_SPACE_QUOTA);
    assert_true(alarm(ts, MVCC_ALARM_DEACTIVATE, 1, MVCC_ALARM_NOSPACE));
    assert_int_equal(put(ts, "c", "5"), FL_ERR_NO_SPACE_QUOTA);
    assert_true(alarm(ts, MVCC_ALARM_DEACTIVATE, 2, MVCC_ALARM_NOSPACE));
    assert_int_equal(put(ts, "c", "5"), FL_OK);
    assert_int_equal(txn(ts, &nested, 1, NULL, 0), FL_OK);
}

static void alarm_codec_and_validation(void **state)
{
    (void)state;
    mvcc_request req = {.type = MVCC_REQ_ALARM,
                        .u.alarm = {.action = MVCC_ALARM_DEACTIVATE,
                                    .member_id = 0xfedcba9876543210ull,
                                    .alarm = MVCC_ALARM_CORRUPT}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(mvcc_request_encode(&req, &buf, &len), FL_OK);
    /* decode through apply: a bad action byte is an undecodable entry */
    tstore ts;
    ts_open(&ts, NULL);
    mvcc_response resp;
    assert_int_equal(mvcc_apply(ts.store, 1, buf, len, &resp), FL_OK);
    assert_false(resp.u.alarm.changed);
    mvcc_response_free(&resp);
    buf[2] = 9; /* action */
    assert_int_equal(mvcc_apply(ts.store, 2, buf, len, &resp), FL_ERR_CORRUPT);
    buf[2] = MVCC_ALARM_ACTIVATE;
    buf[len - 1] = 0; /* alarm type NONE */
    assert_int_equal(mvcc_apply(ts.store, 3, buf, len, &resp), FL_ERR_CORRUPT);
    buf[len - 1] = MVCC_ALARM_NOSPACE;
    assert_int_equal(mvcc_apply(ts.store, 4, buf, len - 1, &resp), FL_ERR_CORRUPT); /* short */
    assert_int_equal(mvcc_apply(ts.store, 5, buf, len, &resp), FL_OK);
    assert_true(resp.u.alarm.changed);
    free(buf);
    mvcc_alarm *got;
    size_t n;
    assert_int_equal(mvcc_alarms(ts.store, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(got[0].member_id, 0xfedcba9876543210ull);
    assert_int_equal(got[0].alarm, MVCC_ALARM_NOSPACE);
    free(got);
    ts_close(&ts);

    req.u.alarm.alarm = (mvcc_alarm_type)0;
    assert_int_equal(mvcc_request_validate(&req, 128), FL_ERR_INVALID);
    req.u.alarm.alarm = MVCC_ALARM_NOSPACE;
    req.u.alarm.action = (mvcc_alarm_action)0; /* etcd's GET is not a command */
    assert_int_equal(mvcc_request_validate(&req, 128), FL_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(alarm_set_is_replicated_state, setup, teardown),
        cmocka_unit_test_setup_teardown(nospace_caps_puts, setup, teardown),
        cmocka_unit_test(alarm_codec_and_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_rcd_trace.c - trace ids: made at random or taken from a request's
    traceparent or X-Request-Id, and nothing else. */
#include "rcd_trace.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define T_ID "4bf92f3577b34da6a3ce929d0e0e4736"

static void
test_new_ids_are_valid_and_different (void **state)
{
    (void)state;
    char a[RCD_TRACE_SIZE], b[RCD_TRACE_SIZE];
    assert_int_equal (rcd_trace_new (a), 0);
    assert_int_equal (rcd_trace_new (b), 0);
    assert_true (rcd_trace_valid (a));
    assert_true (rcd_trace_valid (b));
    assert_int_equal (strlen (a), RCD_TRACE_LEN);
    assert_string_not_equal (a, b);
}

static void
test_valid_means_32_lowercase_hex_digits_not_all_zero (void **state)
{
    (void)state;
    assert_true (rcd_trace_valid (T_ID));
    const char *bad[] = {NULL,
                         "",
                         "00000000000000000000000000000000",
                         "4BF92F3577B34DA6A3CE929D0E0E4736",
                         "4bf92f3577b34da6a3ce929d0e0e473",
                         "4bf92f3577b34da6a3ce929d0e0e47366",
                         "4bf92f3577b34da6a3ce929d0e0e473g",
                         "4bf92f35-7b34da6a3ce929d0e0e4736"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rcd_trace_valid (bad[i]))
            fail_msg ("accepted %s", bad[i] ? bad[i] : "NULL");
}

static void
test_traceparent_gives_its_trace_id (void **state)
{
    (void)state;
    const char *good[] = {
        "00-" T_ID "-00f067aa0ba902b7-01",
        "00-" T_ID "-00f067aa0ba902b7-00",
        "  00-" T_ID "-00f067aa0ba902b7-01 ",
        /* a later version may append fields */
        "01-" T_ID "-00f067aa0ba902b7-01",
        "cc-" T_ID "-00f067aa0ba902b7-01-what-the-future-holds",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char out[RCD_TRACE_SIZE] = "";
        if (!rcd_trace_from_traceparent (good[i], out))
            fail_msg ("refused %s", good[i]);
        assert_string_equal (out, T_ID);
    }
}

static void
test_malformed_traceparents_are_ignored (void **state)
{
    (void)state;
    const char *bad[] = {
        NULL,
        "",
        "00-" T_ID "-00f067aa0ba902b7",
        "00-" T_ID "-00f067aa0ba902b7-01-extra", /* 00 is exact */
        "ff-" T_ID "-00f067aa0ba902b7-01",       /* forbidden version */
        "0g-" T_ID "-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-" T_ID "-0000000000000000-01", /* zero parent */
        "00-" T_ID "-00f067aa0ba902b7-0x",
        "00_" T_ID "_00f067aa0ba902b7_01",
        "01-" T_ID "-00f067aa0ba902b7-01x",             /* not "-" after */
        "00-" T_ID "\"},{\"x\":\"-00f067aa0ba902b7-01", /* no injection */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[RCD_TRACE_SIZE] = "untouched";
        if (rcd_trace_from_traceparent (bad[i], out))
            fail_msg ("accepted %s", bad[i] ? bad[i] : "NULL");
        assert_string_equal (out, "untouched");
    }
}

static void
test_request_ids_of_32_hex_digits_or_uuids_are_taken_lowercased (void **state)
{
    (void)state;
    const char *good[] = {T_ID, "4BF92F3577B34DA6A3CE929D0E0E4736",
                          "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
                          "4BF92F35-77B3-4DA6-A3CE-929D0E0E4736"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char out[RCD_TRACE_SIZE] = "";
        if (!rcd_trace_from_request_id (good[i], out))
            fail_msg ("refused %s", good[i]);
        assert_string_equal (out, T_ID);
    }
    const char *bad[] = {NULL,
                         "",
                         "req-42",
                         "00000000-0000-0000-0000-000000000000",
                         "00000000000000000000000000000000",
                         "4bf92f3577b34da6-a3ce-929d0e0e4736xx",
                         "4bf92f35-77b3-4da6-a3ce-929d0e0e473g",
                         "4bf92f35x77b3-4da6-a3ce-929d0e0e4736",
                         "4bf92f3577b34da6a3ce929d0e0e4736 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[RCD_TRACE_SIZE] = "untouched";
        if (rcd_trace_from_request_id (bad[i], out))
            fail_msg ("accepted %s", bad[i] ? bad[i] : "NULL");
        assert_string_equal (out, "untouched");
    }
}

static void
test_a_request_takes_traceparent_then_request_id_then_a_new_one (void **state)
{
    (void)state;
    const char *other = "0af7651916cd43dd8448eb211c80319c";
    char out[RCD_TRACE_SIZE];
    assert_int_equal (
        rcd_trace_for_request ("00-" T_ID "-00f067aa0ba902b7-01", other, out),
        0);
    assert_string_equal (out, T_ID);
    assert_int_equal (rcd_trace_for_request ("garbage", other, out), 0);
    assert_string_equal (out, other);
    assert_int_equal (rcd_trace_for_request (NULL, "req-42", out), 0);
    assert_true (rcd_trace_valid (out));
    assert_string_not_equal (out, T_ID);
    assert_string_not_equal (out, other);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_new_ids_are_valid_and_different),
        cmocka_unit_test (
            test_valid_means_32_lowercase_hex_digits_not_all_zero),
        cmocka_unit_test (test_traceparent_gives_its_trace_id),
        cmocka_unit_test (test_malformed_traceparents_are_ignored),
        cmocka_unit_test (
            test_request_ids_of_32_hex_digits_or_uuids_are_taken_lowercased),
        cmocka_unit_test (
            test_a_request_takes_traceparent_then_request_id_then_a_new_one),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

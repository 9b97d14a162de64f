/*  test_rcd_turns.c - the record of which stream each claim round
    served: rounds remembered per stream, the less recently served half
    forgotten when full, and the claim's parameters in stream order. */
#include "rcd_turns.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void
test_a_stream_remembers_the_last_round_that_served_it (void **state)
{
    (void)state;
    rcd_turns_t *t = rcd_turns_new (16);
    assert_non_null (t);
    assert_int_equal (rcd_turns_round_of (t, 7), 0);
    assert_int_equal (rcd_turns_next_round (t), 1);
    rcd_turns_served (t, 7);
    rcd_turns_served (t, -3); /* a tenant's messages outside campaigns */
    rcd_turns_served (t, 7);  /* twice in a round: one entry */
    assert_int_equal (rcd_turns_next_round (t), 2);
    rcd_turns_served (t, 9);
    assert_int_equal (rcd_turns_next_round (t), 3);
    rcd_turns_served (t, 7);
    assert_int_equal (rcd_turns_size (t), 3);
    assert_int_equal (rcd_turns_round_of (t, 7), 3);
    assert_int_equal (rcd_turns_round_of (t, -3), 1);
    assert_int_equal (rcd_turns_round_of (t, 9), 2);
    assert_int_equal (rcd_turns_round_of (t, 8), 0);

    char *streams = NULL, *rounds = NULL;
    assert_int_equal (rcd_turns_params (t, &streams, &rounds), 0);
    assert_string_equal (streams, "{-3,7,9}");
    assert_string_equal (rounds, "{1,3,2}");
    free (streams);
    free (rounds);
    rcd_turns_destroy (&t);
    assert_null (t);
}

static void
test_when_full_the_less_recently_served_half_is_forgotten (void **state)
{
    (void)state;
    rcd_turns_t *t = rcd_turns_new (8);
    assert_non_null (t);
    /* streams 108, 107, ... 101 served in rounds 1..8: stream 109 - r in
       round r, so the order by stream is not the order by round */
    for (int r = 1; r <= 8; r++) {
        rcd_turns_next_round (t);
        rcd_turns_served (t, 109 - r);
    }
    assert_int_equal (rcd_turns_size (t), 8);
    /* an old one served again stays one entry */
    rcd_turns_next_round (t); /* round 9 */
    rcd_turns_served (t, 108);
    assert_int_equal (rcd_turns_size (t), 8);
    /* a ninth stream: the four served least recently (rounds 2..5:
       streams 107..104) are forgotten, the newest four stay */
    rcd_turns_next_round (t); /* round 10 */
    rcd_turns_served (t, 50);
    assert_int_equal (rcd_turns_size (t), 5);
    for (int64_t s = 104; s <= 107; s++)
        assert_int_equal (rcd_turns_round_of (t, s), 0);
    assert_int_equal (rcd_turns_round_of (t, 103), 6);
    assert_int_equal (rcd_turns_round_of (t, 101), 8);
    assert_int_equal (rcd_turns_round_of (t, 108), 9);
    assert_int_equal (rcd_turns_round_of (t, 50), 10);
    /* still sorted by stream for the claim */
    char *streams = NULL, *rounds = NULL;
    assert_int_equal (rcd_turns_params (t, &streams, &rounds), 0);
    assert_string_equal (streams, "{50,101,102,103,108}");
    assert_string_equal (rounds, "{10,8,7,6,9}");
    free (streams);
    free (rounds);
    rcd_turns_destroy (&t);
}

static void
test_an_empty_record_gives_empty_arrays (void **state)
{
    (void)state;
    rcd_turns_t *t = rcd_turns_new (0); /* at least 2 */
    assert_non_null (t);
    char *streams = NULL, *rounds = NULL;
    assert_int_equal (rcd_turns_params (t, &streams, &rounds), 0);
    assert_string_equal (streams, "{}");
    assert_string_equal (rounds, "{}");
    free (streams);
    free (rounds);
    rcd_turns_next_round (t);
    rcd_turns_served (t, 1);
    rcd_turns_served (t, 2);
    rcd_turns_next_round (t);
    rcd_turns_served (t, 3); /* full at 2: one of round 1's is forgotten */
    assert_int_equal (rcd_turns_size (t), 2);
    assert_int_equal (rcd_turns_round_of (t, 3), 2);
    rcd_turns_destroy (&t);
    rcd_turns_destroy (NULL);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (
            test_a_stream_remembers_the_last_round_that_served_it),
        cmocka_unit_test (
            test_when_full_the_less_recently_served_half_is_forgotten),
        cmocka_unit_test (test_an_empty_record_gives_empty_arrays),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

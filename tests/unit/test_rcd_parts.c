/*  test_rcd_parts.c - long texts split into parts at word boundaries:
    never inside a UTF-8 character or a word (a filled placeholder
    included), every byte but the separators kept, in order. */
#include "rcd_parts.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*  The parts of text as one string joined by '|', for compact asserts. */
static char *
s_joined (const char *text, size_t limit)
{
    size_t cap = strlen (text) * 2 + 2, n = 0;
    char *out = calloc (1, cap);
    size_t pos = 0, start, len;
    while (rcd_parts_next (text, limit, &pos, &start, &len)) {
        if (n)
            out[n++] = '|';
        memcpy (out + n, text + start, len);
        n += len;
    }
    out[n] = 0;
    return out;
}

static void
s_assert_parts (const char *text, size_t limit, const char *expected)
{
    char *got = s_joined (text, limit);
    bool same = strcmp (got, expected) == 0;
    if (!same)
        print_error ("parts \"%s\", expected \"%s\"\n", got, expected);
    free (got);
    assert_true (same);
}

static void
test_a_text_within_the_limit_is_one_part_as_written (void **state)
{
    (void)state;
    s_assert_parts ("hello world", 11, "hello world");
    s_assert_parts ("  padded  ", 10, "  padded  ");
    s_assert_parts ("anything", 0, "anything");
    assert_int_equal (rcd_parts_count ("hello world", 11), 1);
    assert_int_equal (rcd_parts_count ("", 5), 1);
    s_assert_parts ("", 5, "");
}

static void
test_cuts_at_the_last_word_boundary_within_the_limit (void **state)
{
    (void)state;
    s_assert_parts ("aaa bbb ccc ddd", 9, "aaa bbb|ccc ddd");
    s_assert_parts ("aaa bbb ccc ddd", 7, "aaa bbb|ccc ddd");
    s_assert_parts ("aaa bbb ccc ddd", 6, "aaa|bbb|ccc|ddd");
    /* the whitespace run at a cut is dropped, newlines included */
    s_assert_parts ("one two\n\n  three", 8, "one two|three");
    assert_int_equal (rcd_parts_count ("aaa bbb ccc ddd", 6), 4);
}

static void
test_a_word_ending_exactly_at_the_limit_stays_whole (void **state)
{
    (void)state;
    s_assert_parts ("abcde fghij", 5, "abcde|fghij");
    s_assert_parts ("ab de fghij", 5, "ab de|fghij");
    /* one more character and the second word moves on */
    s_assert_parts ("ab def ghij", 5, "ab|def|ghij");
}

static void
test_a_word_longer_than_the_limit_is_cut_at_the_limit (void **state)
{
    (void)state;
    s_assert_parts ("abcdefghij xy", 4, "abcd|efgh|ij|xy");
    s_assert_parts ("abcdefghij xy", 5, "abcde|fghij|xy");
    s_assert_parts ("xy abcdefghij", 4, "xy|abcd|efgh|ij");
}

static void
test_never_cuts_inside_a_multibyte_character (void **state)
{
    (void)state;
    /* "ção" is 3 characters, 5 bytes; emoji are 4 bytes each */
    s_assert_parts ("ção ção ção", 7, "ção ção|ção");
    assert_int_equal (rcd_parts_chars ("ção"), 3);
    s_assert_parts ("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 2,
                    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80|\xf0\x9f\x98\x80");
    /* a long word of accented letters cut by characters, not bytes */
    const char *word = "áéíóúáéíóú";
    size_t pos = 0, start, len;
    assert_true (rcd_parts_next (word, 4, &pos, &start, &len));
    assert_int_equal (len, 8); /* 4 characters of 2 bytes */
    assert_true (rcd_parts_next (word, 4, &pos, &start, &len));
    assert_int_equal (start, 8);
    assert_int_equal (len, 8);
    assert_true (rcd_parts_next (word, 4, &pos, &start, &len));
    assert_int_equal (len, 4);
    assert_false (rcd_parts_next (word, 4, &pos, &start, &len));
}

static void
test_a_filled_placeholder_is_a_word_never_cut (void **state)
{
    (void)state;
    /* "Olá {{name}}, sua fatura {{code}} vence hoje" rendered: the
       filled code sits across the limit and moves whole to part 2 */
    const char *text = "Olá Maria, sua fatura INV-2026-000123 vence hoje";
    s_assert_parts (text, 30,
                    "Olá Maria, sua fatura|INV-2026-000123 vence "
                    "hoje");
}

static void
test_parts_of_3500_characters_at_1000_are_four_whole_words (void **state)
{
    (void)state;
    /* 700 words "wNNN" of 4 characters and a space: 3 499 characters */
    char text[3600];
    size_t n = 0;
    for (int i = 0; i < 700; i++)
        n += (size_t)snprintf (text + n, sizeof text - n, "%sw%03d",
                               i ? " " : "", i);
    assert_int_equal (rcd_parts_count (text, 1000), 4);
    size_t pos = 0, start, len, total = 0, k = 0;
    while (rcd_parts_next (text, 1000, &pos, &start, &len)) {
        assert_true (len <= 1000);
        assert_int_equal (text[start], 'w'); /* starts with a word */
        assert_true (start + len == strlen (text) || text[start + len] == ' ');
        total += len;
        k++;
    }
    assert_int_equal (k, 4);
    assert_int_equal (total + 3, strlen (text)); /* 3 spaces dropped */
    size_t s2, l2;
    assert_true (rcd_parts_get (text, 1000, 2, &s2, &l2));
    assert_false (rcd_parts_get (text, 1000, 4, &s2, &l2));
}

static void
test_trailing_whitespace_makes_no_empty_part (void **state)
{
    (void)state;
    s_assert_parts ("aaa bbb   ", 3, "aaa|bbb");
    assert_int_equal (rcd_parts_count ("aaa bbb   ", 3), 2);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_a_text_within_the_limit_is_one_part_as_written),
        cmocka_unit_test (test_cuts_at_the_last_word_boundary_within_the_limit),
        cmocka_unit_test (test_a_word_ending_exactly_at_the_limit_stays_whole),
        cmocka_unit_test (
            test_a_word_longer_than_the_limit_is_cut_at_the_limit),
        cmocka_unit_test (test_never_cuts_inside_a_multibyte_character),
        cmocka_unit_test (test_a_filled_placeholder_is_a_word_never_cut),
        cmocka_unit_test (
            test_parts_of_3500_characters_at_1000_are_four_whole_words),
        cmocka_unit_test (test_trailing_whitespace_makes_no_empty_part),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

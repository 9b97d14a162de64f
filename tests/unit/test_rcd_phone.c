/*  test_rcd_phone.c - phone normalisation, table driven: the formats
    people really type into spreadsheets and forms. */
#include "rcd_phone.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    const char *input;
    const char *country; /* default country */
    const char *expect;  /* E.164, or NULL when rejected */
    const char *why;     /* part of the reason when rejected */
} s_case_t;

static const s_case_t s_valid[] = {
    /* Brazilian mobiles, every common spelling */
    {"+55 11 91234-5678", "55", "+5511912345678", NULL},
    {"+5511912345678", "55", "+5511912345678", NULL},
    {"+55 (11) 91234-5678", "55", "+5511912345678", NULL},
    {"+55 (11) 9 1234-5678", "55", "+5511912345678", NULL},
    {"55 11 91234 5678", "55", "+5511912345678", NULL},
    {"5511912345678", "55", "+5511912345678", NULL},
    {"(11) 91234-5678", "55", "+5511912345678", NULL},
    {"11 91234-5678", "55", "+5511912345678", NULL},
    {"11912345678", "55", "+5511912345678", NULL},
    {"11.91234.5678", "55", "+5511912345678", NULL},
    {"011 91234-5678", "55", "+5511912345678", NULL},
    {"(011) 91234-5678", "55", "+5511912345678", NULL},
    {"0 21 11 91234-5678", "55", "+5511912345678", NULL},
    {"0055 11 91234-5678", "55", "+5511912345678", NULL},
    {"00 55 (11) 91234 5678", "55", "+5511912345678", NULL},
    {"+55 (011) 91234-5678", "55", "+5511912345678", NULL},
    {"  +55 11 91234-5678  ", "55", "+5511912345678", NULL},
    {"+55\t21\t99876-5432", "55", "+5521998765432", NULL},
    {"(21) 99876/5432", "55", "+5521998765432", NULL},
    /* mobiles written without the ninth digit get it back */
    {"(31) 8765-4321", "55", "+5531987654321", NULL},
    {"+55 31 8765-4321", "55", "+5531987654321", NULL},
    {"553187654321", "55", "+5531987654321", NULL},
    {"031 7654-3210", "55", "+5531976543210", NULL},
    {"0 15 31 6543-2109", "55", "+5531965432109", NULL},
    /* landlines stay 8 digits */
    {"(11) 3456-7890", "55", "+551134567890", NULL},
    {"+55 51 3212-3456", "55", "+555132123456", NULL},
    {"011 2345-6789", "55", "+551123456789", NULL},
    {"55 4533-2211", "55", "+555545332211", NULL}, /* DDD 55 */
    {"555545332211", "55", "+555545332211", NULL}, /* +55 DDD 55 */
    {"(99) 99123-4567", "55", "+5599991234567", NULL},
    /* other countries as they are */
    {"+1 (415) 555-2671", "55", "+14155552671", NULL},
    {"+44 20 7946 0958", "55", "+442079460958", NULL},
    {"0044 20 7946 0958", "55", "+442079460958", NULL},
    {"+351 912 345 678", "55", "+351912345678", NULL},
    {"+54 9 11 1234-5678", "55", "+5491112345678", NULL},
    {"+49 30 12345678", NULL, "+493012345678", NULL},
    {"+86 138 0013 8000", "55", "+8613800138000", NULL},
    /* another default country */
    {"415 555 2671", "1", "+14155552671", NULL},
};

static const s_case_t s_invalid[] = {
    {"", "55", NULL, "empty"},
    {"   ", "55", NULL, "empty"},
    {NULL, "55", NULL, "empty"},
    {"+", "55", NULL, "no digits"},
    {"abc", "55", NULL, "letters"},
    {"11 91234-5678 ramal 12", "55", NULL, "letters"},
    {"+55 11 91234-5678 x12", "55", NULL, "letters"},
    {"0800 123 4567", "55", NULL, "area code"},
    {"0XX11 91234-5678", "55", NULL, "letters"},
    {"91234-5678", "55", NULL, "area code"},
    {"1234-5678", "55", NULL, "area code"},
    {"+55 91234-5678", "55", NULL, "short"},
    {"(10) 91234-5678", "55", NULL, "area code"},
    {"(01) 3456-7890", "55", NULL, "short"},
    {"(20) 3456-7890", "55", NULL, "area code"},
    {"(11) 81234-5678", "55", NULL, "start with 9"},
    {"(11) 1234-5678", "55", NULL, "start with 2-9"},
    {"(11) 0234-5678", "55", NULL, "start with 2-9"},
    {"+55 11 912345-67890", "55", NULL, "long"},
    {"11 91234-56789", "55", NULL, "long"},
    {"+1 555 123", "55", NULL, "short"},
    {"+1234567890123456", "55", NULL, "long"},
    {"+0 11 1234 5678", "55", NULL, "cannot start with 0"},
    {"00 0 11 1234 5678", "55", NULL, "cannot start with 0"},
    {"55+11912345678", "55", NULL, "only at the start"},
    {"++5511912345678", "55", NULL, "only at the start"},
    {"11_91234_5678", "55", NULL, "not a digit"},
    {"11 91234-5678;", "55", NULL, "not a digit"},
    {"\xef\xbc\x91\xef\xbc\x91 91234-5678", "55", NULL, "not a digit"},
    {"11912345678", NULL, NULL, "missing country code"},
    {"123456789012345678901234567890", "55", NULL, "too many digits"},
    {"1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3", "55",
     NULL, "too long"},
};

/*  Runs one table row and says which row failed. */
static void
s_check (const s_case_t *c)
{
    char out[RCD_PHONE_MAX];
    const char *why = NULL;
    int rc = rcd_phone_normalize (c->input, c->country, out, sizeof out, &why);
    if (c->expect) {
        if (rc != 0 || strcmp (out, c->expect) != 0)
            fail_msg ("\"%s\": expected %s, got rc %d \"%s\" (%s)",
                      c->input ? c->input : "(null)", c->expect, rc, out,
                      why ? why : "");
        assert_null (why);
    }
    else {
        if (rc != -2)
            fail_msg ("\"%s\": expected rejection, got rc %d \"%s\"",
                      c->input ? c->input : "(null)", rc, out);
        assert_non_null (why);
        if (!strstr (why, c->why))
            fail_msg ("\"%s\": reason \"%s\" lacks \"%s\"",
                      c->input ? c->input : "(null)", why, c->why);
        assert_string_equal (out, "");
    }
}

static void
test_normalises_real_world_formats (void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_valid / sizeof s_valid[0]; i++)
        s_check (&s_valid[i]);
}

static void
test_rejects_unusable_numbers_with_a_reason (void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_invalid / sizeof s_invalid[0]; i++)
        s_check (&s_invalid[i]);
}

static void
test_small_output_buffer_is_a_caller_error (void **state)
{
    (void)state;
    char out[8];
    assert_int_equal (
        rcd_phone_normalize ("+5511912345678", "55", out, sizeof out, NULL),
        -1);
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+5511912345678", out, sizeof out), -1);
}

static void
test_output_is_idempotent (void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_valid / sizeof s_valid[0]; i++) {
        if (!s_valid[i].expect)
            continue;
        char out[RCD_PHONE_MAX];
        assert_int_equal (rcd_phone_normalize (s_valid[i].expect, "55", out,
                                               sizeof out, NULL),
                          0);
        assert_string_equal (out, s_valid[i].expect);
    }
}

static void
test_whatsapp_alias_drops_the_ninth_digit (void **state)
{
    (void)state;
    char out[RCD_PHONE_MAX];
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+5531987654321", out, sizeof out), 0);
    assert_string_equal (out, "+553187654321");
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+5511998765432", out, sizeof out), 0);
    assert_string_equal (out, "+551198765432");

    /* and the alias normalises back to the canonical form */
    char back[RCD_PHONE_MAX];
    assert_int_equal (rcd_phone_normalize (out, "55", back, sizeof back, NULL),
                      0);
    assert_string_equal (back, "+5511998765432");
}

static void
test_whatsapp_alias_only_for_brazilian_mobiles (void **state)
{
    (void)state;
    char out[RCD_PHONE_MAX];
    /* landline */
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+551134567890", out, sizeof out), 1);
    assert_string_equal (out, "+551134567890");
    /* 9 + 1..5: never had an 8-digit mobile form */
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+5511912345678", out, sizeof out), 1);
    assert_string_equal (out, "+5511912345678");
    /* other country of the same length */
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+4420794609581", out, sizeof out), 1);
    /* already without the 9 */
    assert_int_equal (
        rcd_phone_whatsapp_alias ("+553187654321", out, sizeof out), 1);
    assert_int_equal (rcd_phone_whatsapp_alias (NULL, out, sizeof out), 1);
    assert_string_equal (out, "");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_normalises_real_world_formats),
        cmocka_unit_test (test_rejects_unusable_numbers_with_a_reason),
        cmocka_unit_test (test_small_output_buffer_is_a_caller_error),
        cmocka_unit_test (test_output_is_idempotent),
        cmocka_unit_test (test_whatsapp_alias_drops_the_ninth_digit),
        cmocka_unit_test (test_whatsapp_alias_only_for_brazilian_mobiles),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

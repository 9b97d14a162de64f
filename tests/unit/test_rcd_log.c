/*  test_rcd_log.c - JSON lines on stderr, level filtering, trace ids,
    phone masks. */
#include "rcd_log.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/*  Captures stderr between start and end. */
typedef struct {
    int saved;
    FILE *file;
} t_capture_t;

static void
s_capture_start (t_capture_t *c)
{
    fflush (stderr);
    c->file = tmpfile ();
    assert_non_null (c->file);
    c->saved = dup (2);
    assert_true (c->saved >= 0);
    assert_true (dup2 (fileno (c->file), 2) >= 0);
}

/*  Restores stderr and returns what was written. Caller frees. */
static char *
s_capture_end (t_capture_t *c)
{
    fflush (stderr);
    assert_true (dup2 (c->saved, 2) >= 0);
    close (c->saved);
    long size = ftell (c->file);
    assert_true (size >= 0);
    char *text = calloc (1, (size_t)size + 1);
    assert_non_null (text);
    rewind (c->file);
    assert_int_equal (fread (text, 1, (size_t)size, c->file), size);
    fclose (c->file);
    return text;
}

/*  Splits captured text into parsed lines; every line must be one JSON
    object and the text must end with a newline. Returns a JSON array. */
static json_t *
s_parse_lines (const char *text)
{
    json_t *lines = json_array ();
    const char *p = text;
    while (*p) {
        const char *nl = strchr (p, '\n');
        if (!nl)
            fail_msg ("unterminated line: %s", p);
        json_error_t err;
        json_t *line = json_loadb (p, (size_t)(nl - p), 0, &err);
        if (!line || !json_is_object (line))
            fail_msg ("not a JSON object: %.*s (%s)", (int)(nl - p), p,
                      err.text);
        json_array_append_new (lines, line);
        p = nl + 1;
    }
    return lines;
}

static const char *
s_str (json_t *obj, const char *key)
{
    const char *v = json_string_value (json_object_get (obj, key));
    if (!v)
        fail_msg ("no string \"%s\"", key);
    return v;
}

static int
s_reset (void **state)
{
    (void)state;
    unsetenv ("RECADO_LOG_LEVEL");
    rcd_log_init ("test-svc");
    rcd_log_set_level (RCD_LOG_DEBUG);
    return 0;
}

/*  The object under "fields" of a line. */
static json_t *
s_fields (json_t *line)
{
    json_t *fields = json_object_get (line, "fields");
    if (!json_is_object (fields))
        fail_msg ("no \"fields\" object");
    return fields;
}

static void
test_each_line_is_one_object_with_core_and_extra_fields (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_info ("claimed", "{s:i, s:s, s:b, s:I}", "count", 42, "tenant",
                  "acme", "ok", 1, "big", (json_int_t)INT64_MAX);
    rcd_log_warn ("no fields");
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), 2);

    json_t *line = json_array_get (lines, 0);
    assert_string_equal (s_str (line, "level"), "info");
    assert_string_equal (s_str (line, "service"), "test-svc");
    assert_string_equal (s_str (line, "event"), "claimed");
    json_t *fields = s_fields (line);
    assert_int_equal (json_object_size (fields), 4);
    assert_int_equal (json_integer_value (json_object_get (fields, "count")),
                      42);
    assert_string_equal (s_str (fields, "tenant"), "acme");
    assert_true (json_is_true (json_object_get (fields, "ok")));
    assert_true (json_integer_value (json_object_get (fields, "big")) ==
                 INT64_MAX);
    /* no trace on this thread, none given: no trace_id key */
    assert_null (json_object_get (line, "trace_id"));
    /* RFC 3339 UTC with milliseconds: 2026-01-02T03:04:05.678Z */
    const char *ts = s_str (line, "time");
    assert_int_equal (strlen (ts), 24);
    assert_true (ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' &&
                 ts[23] == 'Z');
    int y, mo, d, h, mi, s, ms;
    assert_int_equal (sscanf (ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d,
                              &h, &mi, &s, &ms),
                      7);
    assert_true (y >= 2024 && mo >= 1 && mo <= 12 && ms >= 0 && ms <= 999);
    /* core fields come first, in a stable order */
    assert_int_equal (strncmp (text, "{\"time\":", 8), 0);
    const char *level = strstr (text, "\"level\"");
    const char *service = strstr (text, "\"service\"");
    const char *event = strstr (text, "\"event\"");
    const char *rest = strstr (text, "\"fields\"");
    assert_true (level && service && event && rest);
    assert_true (level < service && service < event && event < rest);

    line = json_array_get (lines, 1);
    assert_string_equal (s_str (line, "level"), "warn");
    assert_string_equal (s_str (line, "event"), "no fields");
    assert_int_equal (json_object_size (line), 4); /* no "fields" either */
    json_decref (lines);
    free (text);
}

static void
test_newlines_and_quotes_stay_inside_one_line (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_error ("line one\nline \"two\"\r\n", "{s:s}", "detail",
                   "a\nb\\c\t\x01");
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), 1);
    json_t *line = json_array_get (lines, 0);
    assert_string_equal (s_str (line, "event"), "line one\nline \"two\"\r\n");
    assert_string_equal (s_str (s_fields (line), "detail"), "a\nb\\c\t\x01");
    json_decref (lines);
    free (text);
}

static void
test_lines_below_the_level_are_dropped (void **state)
{
    (void)state;
    const char *names[] = {"debug", "info", "warn", "error"};
    for (int min = RCD_LOG_DEBUG; min <= RCD_LOG_ERROR; min++) {
        rcd_log_set_level ((rcd_log_level_t)min);
        t_capture_t c;
        s_capture_start (&c);
        rcd_log_debug ("d");
        rcd_log_info ("i", "{s:i}", "n", 1);
        rcd_log_warn ("w");
        rcd_log_error ("e");
        char *text = s_capture_end (&c);
        json_t *lines = s_parse_lines (text);
        assert_int_equal (json_array_size (lines), 4 - min);
        for (size_t i = 0; i < json_array_size (lines); i++)
            assert_string_equal (s_str (json_array_get (lines, i), "level"),
                                 names[min + (int)i]);
        json_decref (lines);
        free (text);
    }
}

static void
test_log_level_comes_from_RECADO_LOG_LEVEL (void **state)
{
    (void)state;
    setenv ("RECADO_LOG_LEVEL", "error", 1);
    rcd_log_init ("env-svc");
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_warn ("dropped");
    rcd_log_error ("kept");
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), 1);
    assert_string_equal (s_str (json_array_get (lines, 0), "event"), "kept");
    assert_string_equal (s_str (json_array_get (lines, 0), "service"),
                         "env-svc");
    json_decref (lines);
    free (text);
    unsetenv ("RECADO_LOG_LEVEL");
}

static void
test_dropped_lines_release_the_objects_they_were_given (void **state)
{
    (void)state;
    rcd_log_set_level (RCD_LOG_ERROR);
    t_capture_t c;
    s_capture_start (&c);
    /* "o" steals the reference: LeakSanitizer fails the test if the
       filtered call keeps it */
    json_t *obj = json_pack ("{s:[i,i,i]}", "ids", 1, 2, 3);
    rcd_log_info ("filtered", "{s:o, s:i}", "payload", obj, "n", 1);
    rcd_log_debug ("filtered", "{s:o}", "payload", json_string ("x"));
    char *text = s_capture_end (&c);
    assert_string_equal (text, "");
    free (text);
}

static void
test_extra_fields_cannot_replace_core_fields (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_info ("real", "{s:s, s:s, s:s, s:s, s:s, s:i}", "event", "fake",
                  "level", "debug", "service", "other", "time", "never",
                  "fields", "nested", "n", 5);
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    json_t *line = json_array_get (lines, 0);
    assert_string_equal (s_str (line, "event"), "real");
    assert_string_equal (s_str (line, "level"), "info");
    assert_string_equal (s_str (line, "service"), "test-svc");
    assert_string_not_equal (s_str (line, "time"), "never");
    /* they are fields like any other, under "fields" */
    json_t *fields = s_fields (line);
    assert_string_equal (s_str (fields, "event"), "fake");
    assert_string_equal (s_str (fields, "time"), "never");
    assert_string_equal (s_str (fields, "fields"), "nested");
    assert_int_equal (json_integer_value (json_object_get (fields, "n")), 5);
    json_decref (lines);
    free (text);
}

#define T_TRACE_A "4bf92f3577b34da6a3ce929d0e0e4736"
#define T_TRACE_B "0af7651916cd43dd8448eb211c80319c"

/*  Another thread's lines: the trace is per thread. */
static void *
s_other_thread (void *arg)
{
    (void)arg;
    rcd_log_info ("other thread");
    return NULL;
}

static void
test_trace_id_comes_from_the_fields_or_else_the_thread (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_info ("given", "{s:s, s:i}", "trace_id", T_TRACE_A, "n", 1);
    rcd_log_set_trace (T_TRACE_B);
    rcd_log_info ("thread's");
    rcd_log_info ("null given", "{s:s?}", "trace_id", NULL);
    rcd_log_warn ("given wins", "{s:s}", "trace_id", T_TRACE_A);
    pthread_t other;
    assert_int_equal (pthread_create (&other, NULL, s_other_thread, NULL), 0);
    pthread_join (other, NULL);
    rcd_log_set_trace (NULL);
    rcd_log_info ("cleared");
    rcd_log_set_trace (T_TRACE_B);
    rcd_log_set_trace ("");
    rcd_log_info ("cleared by empty");
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), 7);
    const char *want[] = {T_TRACE_A, T_TRACE_B, T_TRACE_B, T_TRACE_A,
                          NULL,      NULL,      NULL};
    for (size_t i = 0; i < 7; i++) {
        json_t *line = json_array_get (lines, i);
        const char *got =
            json_string_value (json_object_get (line, "trace_id"));
        if (want[i])
            assert_string_equal (got, want[i]);
        else
            assert_null (json_object_get (line, "trace_id"));
        /* never a field too */
        assert_null (
            json_object_get (json_object_get (line, "fields"), "trace_id"));
    }
    /* the only other field stays; a null trace leaves no fields at all */
    assert_int_equal (json_object_size (s_fields (json_array_get (lines, 0))),
                      1);
    assert_null (json_object_get (json_array_get (lines, 2), "fields"));
    assert_string_equal (s_str (json_array_get (lines, 4), "event"),
                         "other thread");
    /* right after the event, before the fields */
    const char *first = strstr (text, "\"event\":\"given\",\"trace_id\":");
    assert_non_null (first);
    assert_true (first < strstr (text, "\"fields\""));
    json_decref (lines);
    free (text);
}

static void
test_bad_formats_and_bad_text_still_give_a_line (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    rcd_log_info ("broken format", "{s:i", "n", 1);
    rcd_log_info ("not an object", "[i, i]", 1, 2);
    rcd_log_info ("bad utf-8 field", "{s:s}", "v", "\xff\xfe");
    rcd_log_info ("\xc3\x28 bad utf-8 msg");
    rcd_log_info (NULL);
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), 5);
    for (size_t i = 0; i < 3; i++) {
        json_t *line = json_array_get (lines, i);
        assert_true (strlen (s_str (line, "log_error")) > 0);
    }
    assert_string_equal (s_str (json_array_get (lines, 1), "log_error"),
                         "fields is not an object");
    assert_string_equal (s_str (json_array_get (lines, 3), "level"), "info");
    assert_string_equal (s_str (json_array_get (lines, 4), "event"), "");
    json_decref (lines);
    free (text);
}

#define T_THREADS 4
#define T_LINES   300

static void *
s_writer (void *arg)
{
    intptr_t id = (intptr_t)arg;
    char pad[200];
    memset (pad, 'a' + (int)id, sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int i = 0; i < T_LINES; i++)
        rcd_log_info ("concurrent", "{s:i, s:i, s:s}", "thread", (int)id, "i",
                      i, "pad", pad);
    return NULL;
}

static void
test_concurrent_writers_never_split_lines (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c);
    pthread_t threads[T_THREADS];
    for (intptr_t i = 0; i < T_THREADS; i++)
        assert_int_equal (
            pthread_create (&threads[i], NULL, s_writer, (void *)i), 0);
    for (int i = 0; i < T_THREADS; i++)
        pthread_join (threads[i], NULL);
    char *text = s_capture_end (&c);
    json_t *lines = s_parse_lines (text);
    assert_int_equal (json_array_size (lines), T_THREADS * T_LINES);
    /* each thread's lines arrive whole and in its order */
    int next[T_THREADS] = {0};
    for (size_t i = 0; i < json_array_size (lines); i++) {
        json_t *line = s_fields (json_array_get (lines, i));
        int t = (int)json_integer_value (json_object_get (line, "thread"));
        assert_true (t >= 0 && t < T_THREADS);
        assert_int_equal (json_integer_value (json_object_get (line, "i")),
                          next[t]++);
        assert_int_equal (strlen (s_str (line, "pad")), 199);
    }
    json_decref (lines);
    free (text);
}

static void
test_mask_phone_keeps_the_prefix_and_last_four_digits (void **state)
{
    (void)state;
    char out[33];
    /* the example of rcd_log.h: '+', country code, two more digits */
    assert_string_equal (rcd_log_mask_phone ("+5511987655678", out, sizeof out),
                         "+5511*****5678");
    assert_string_equal (rcd_log_mask_phone ("+14155550123", out, sizeof out),
                         "+1415***0123");
    assert_string_equal (rcd_log_mask_phone ("5511987655678", out, sizeof out),
                         "5511*****5678");
    /* the middle digits never show, the length does */
    const char *phone = "+442079460958";
    rcd_log_mask_phone (phone, out, sizeof out);
    assert_int_equal (strlen (out), strlen (phone));
    assert_null (strstr (out, "794609"));
    assert_int_equal (strspn (out + 5, "*"), strlen (phone) - 9);
    assert_string_equal (out + strlen (out) - 4, "0958");
}

static void
test_mask_phone_hides_short_numbers_and_handles_edges (void **state)
{
    (void)state;
    char out[33];
    /* too short to keep anything without giving most of it away */
    const char *shorts[] = {"+55119876", "+5511", "12345678", "", "1"};
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++)
        assert_string_equal (rcd_log_mask_phone (shorts[i], out, sizeof out),
                             "****");
    assert_string_equal (rcd_log_mask_phone (NULL, out, sizeof out), "null");
    /* a small buffer truncates, always terminated, never past its size */
    char small[8];
    memset (small, 'x', sizeof small);
    rcd_log_mask_phone ("+5511987655678", small, sizeof small);
    assert_string_equal (small, "+5511**");
    /* longer than the documented 33 bytes: cut, not overflowed */
    char *long_phone = malloc (101);
    assert_non_null (long_phone);
    memset (long_phone, '7', 100);
    long_phone[100] = 0;
    rcd_log_mask_phone (long_phone, out, sizeof out);
    assert_int_equal (strlen (out), 32);
    assert_int_equal (strncmp (out, "7777*", 5), 0);
    free (long_phone);
    /* a zero-size buffer is left alone */
    assert_ptr_equal (rcd_log_mask_phone ("+5511987655678", small, 0), small);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (
            test_each_line_is_one_object_with_core_and_extra_fields, s_reset),
        cmocka_unit_test_setup (test_newlines_and_quotes_stay_inside_one_line,
                                s_reset),
        cmocka_unit_test_setup (test_lines_below_the_level_are_dropped,
                                s_reset),
        cmocka_unit_test_setup (test_log_level_comes_from_RECADO_LOG_LEVEL,
                                s_reset),
        cmocka_unit_test_setup (
            test_dropped_lines_release_the_objects_they_were_given, s_reset),
        cmocka_unit_test_setup (test_extra_fields_cannot_replace_core_fields,
                                s_reset),
        cmocka_unit_test_setup (
            test_trace_id_comes_from_the_fields_or_else_the_thread, s_reset),
        cmocka_unit_test_setup (test_bad_formats_and_bad_text_still_give_a_line,
                                s_reset),
        cmocka_unit_test_setup (test_concurrent_writers_never_split_lines,
                                s_reset),
        cmocka_unit_test_setup (
            test_mask_phone_keeps_the_prefix_and_last_four_digits, s_reset),
        cmocka_unit_test_setup (
            test_mask_phone_hides_short_numbers_and_handles_edges, s_reset),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

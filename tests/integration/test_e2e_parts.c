/*  test_e2e_parts - long texts go in parts, end to end: the five
    services as processes, the gateway simulator, real PostgreSQL. A
    3 500-character text reaches the gateway as 4 parts in order; when
    the gateway fails part 3, the retry sends parts 3 and 4 only, and no
    part is ever sent twice. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rcd_parts.h"
#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#define S_NUMBER "5511900000001"
#define S_TO     "+" S_NUMBER
#define S_INST   "parts"

static const char *const s_env[] = {"RECADO_RETRY_BASE_MS=20",
                                    "RECADO_RETRY_CAP_MS=100",
                                    "RECADO_RECIPIENT_INTERVAL_MS=100",
                                    "RECADO_POLL_MS=20",
                                    "RECADO_BATCH_WAIT_MS=5",
                                    "RECADO_PARTS_DELAY_MS=200",
                                    NULL};

typedef struct {
    rcd_test_pipeline_t *p;
    char *key;
} s_case_t;

static int
setup (void **state)
{
    s_case_t *c = calloc (1, sizeof *c);
    rcd_test_pipeline_opts_t opts = {.name = "parts", .env = s_env};
    c->p = rcd_test_pipeline_new (&opts);
    c->key = rcd_test_pipeline_tenant (c->p, "parts");
    rcd_test_pipeline_evolution (c->p, c->key, S_INST, 100);
    *state = c;
    return 0;
}

/*  For the crash case: a short lease that recovery checks often, and a
    long wait between parts (Meta: the sender's own) to kill it in. */
static const char *const s_crash_env[] = {"RECADO_LEASE_MS=5000",
                                          "RECADO_LEASE_CHECK_MS=200",
                                          "RECADO_PARTS_DELAY_MS=1500", NULL};

static int
setup_crash (void **state)
{
    s_case_t *c = calloc (1, sizeof *c);
    rcd_test_pipeline_opts_t opts = {.name = "partscrash", .env = s_env};
    for (int k = 0; k < RCD_TP_KINDS; k++)
        opts.kind_env[k] = s_crash_env;
    c->p = rcd_test_pipeline_new (&opts);
    c->key = rcd_test_pipeline_tenant (c->p, "parts");
    rcd_test_pipeline_meta (c->p, c->key, "meta", "1065", 100);
    *state = c;
    return 0;
}

static int
teardown (void **state)
{
    s_case_t *c = *state;
    rcd_test_pipeline_destroy (&c->p);
    free (c->key);
    free (c);
    return 0;
}

/*  A text of exactly 3 500 characters (4 199 bytes): 700 words "çNNN"
    and a final "!", so every part boundary falls between two words and
    the parts hold two-byte characters. */
static char *
s_long_text (void)
{
    char *text = malloc (8192);
    size_t n = 0;
    for (int i = 0; i < 700; i++)
        n += (size_t)snprintf (text + n, 8192 - n, "%s\xc3\xa7%03d",
                               i ? " " : "", i);
    snprintf (text + n, 8192 - n, "!");
    assert_int_equal (rcd_parts_chars (text), 3500);
    return text;
}

/*  Posts text to S_TO; answers the message id. */
static long long
s_post_text (s_case_t *c, const char *text)
{
    json_t *body = json_pack ("{s:s, s:s}", "to", S_TO, "text", text);
    char *json = json_dumps (body, 0);
    json_t *answer =
        rcd_test_api_expect (rcd_test_pipeline_api_port (c->p), 202, "POST",
                             "/v1/messages", c->key, json);
    long long id = json_integer_value (json_object_get (answer, "id"));
    json_decref (answer);
    free (json);
    json_decref (body);
    assert_true (id > 0);
    return id;
}

typedef struct {
    const char *db;
    long long id;
} s_wait_t;

static bool
s_message_sent (void *arg)
{
    s_wait_t *w = arg;
    char id[24];
    snprintf (id, sizeof id, "%lld", w->id);
    const char *params[] = {id};
    return rcd_test_sql_int (w->db,
                             "SELECT count(*) FROM messages"
                             " WHERE id = $1::bigint AND status = 'sent'",
                             1, params) == 1;
}

/*  The simulator's log entries [seq, recv_unix_ms, instance, number,
    text] for S_NUMBER, in arrival order (caller decrefs). */
static json_t *
s_arrivals (s_case_t *c)
{
    char url[160];
    snprintf (url, sizeof url, "%s/_sim/log?since_seq=0",
              rcd_gwsim_url (rcd_test_pipeline_sim (c->p)));
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    assert_int_equal (res.status, 200);
    json_t *log = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    assert_non_null (log);
    json_t *texts = json_array ();
    json_t *entry;
    size_t i;
    json_array_foreach (json_object_get (log, "entries"), i, entry)
    {
        if (strcmp (json_string_value (json_array_get (entry, 3)), S_NUMBER) ==
            0)
            json_array_append (texts, entry);
    }
    json_decref (log);
    return texts;
}

/*  Asserts that arrivals are the 4 parts of text, in order, each once:
    at most 1 000 characters, whole words, and together the text. */
static void
s_assert_four_parts (json_t *arrivals, const char *text)
{
    assert_int_equal (json_array_size (arrivals), 4);
    char joined[8192] = "";
    for (size_t k = 0; k < 4; k++) {
        const char *part = json_string_value (
            json_array_get (json_array_get (arrivals, k), 4));
        assert_true (rcd_parts_chars (part) <= 1000);
        if (k < 3) /* full: only the last part is shorter */
            assert_true (rcd_parts_chars (part) >= 990);
        assert_true (strncmp (part, "\xc3\xa7", 2) == 0); /* a word starts */
        if (k)
            strcat (joined, " ");
        strcat (joined, part);
    }
    assert_string_equal (joined, text);
}

/*  Asserts that part k + 1 arrived at least min_ms after part k, for
    every k from first on: the typing delay between parts. */
static void
s_assert_gaps (json_t *arrivals, size_t first, long long min_ms)
{
    for (size_t k = first; k + 1 < json_array_size (arrivals); k++) {
        long long a = json_integer_value (
            json_array_get (json_array_get (arrivals, k), 1));
        long long b = json_integer_value (
            json_array_get (json_array_get (arrivals, k + 1), 1));
        if (b - a < min_ms)
            fail_msg ("part %zu arrived %lld ms after part %zu", k + 2, b - a,
                      k + 1);
    }
}

static void
test_a_3500_character_text_arrives_as_4_parts_in_order (void **state)
{
    s_case_t *c = *state;
    char *text = s_long_text ();
    s_wait_t w = {rcd_test_pipeline_db (c->p), s_post_text (c, text)};
    assert_true (rcd_test_wait_until (s_message_sent, &w, 30000));

    json_t *arrivals = s_arrivals (c);
    s_assert_four_parts (arrivals, text);
    /* parts 2 to 4 ask Evolution to show typing for parts_delay_ms (it
       holds the answer that long), so 3 and 4 follow at least that late */
    s_assert_gaps (arrivals, 1, 200);
    json_decref (arrivals);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);

    /* one attempt; progress and every part's id in the history; the
       message's provider id is the last part's */
    char id[24];
    snprintf (id, sizeof id, "%lld", w.id);
    const char *params[] = {id};
    assert_int_equal (rcd_test_sql_int (w.db,
                                        "SELECT attempts * 100 + parts_sent"
                                        "       * 10 + (part_limit = 1000)::int"
                                        "  FROM messages WHERE id = $1::bigint",
                                        1, params),
                      100 + 40 + 1);
    assert_int_equal (rcd_test_sql_int (w.db,
                                        "SELECT count(*) FROM message_history"
                                        " WHERE message_id = $1::bigint"
                                        "   AND detail LIKE 'part _ of 4: %'",
                                        1, params),
                      4);
    assert_int_equal (
        rcd_test_sql_int (w.db,
                          "SELECT count(*) FROM messages m"
                          "  JOIN message_history h ON h.message_id = m.id"
                          " WHERE m.id = $1::bigint AND h.status = 'sent'"
                          "   AND h.detail = 'part 4 of 4: '"
                          "                  || m.provider_message_id",
                          1, params),
        1);
    free (text);
    rcd_test_pipeline_passed (c->p);
}

static void
test_a_failed_part_3_is_retried_with_part_4_only (void **state)
{
    s_case_t *c = *state;
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (
        rcd_gwsim_configure (sim, "{\"number_errors\": {\"" S_NUMBER
                                  "\": {\"kind\": \"5xx\", \"nth\": 3}}}"),
        0);
    char *text = s_long_text ();
    s_wait_t w = {rcd_test_pipeline_db (c->p), s_post_text (c, text)};
    assert_true (rcd_test_wait_until (s_message_sent, &w, 30000));

    /* the gateway refused part 3 once (a 503 is not a send) */
    assert_int_equal (rcd_gwsim_errors (sim, "5xx"), 1);
    /* and counted each part exactly once, in order: parts 1 and 2 by
       the first attempt, 3 and 4 by the retry */
    json_t *arrivals = s_arrivals (c);
    s_assert_four_parts (arrivals, text);
    json_decref (arrivals);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);

    char id[24];
    snprintf (id, sizeof id, "%lld", w.id);
    const char *params[] = {id};
    assert_int_equal (rcd_test_sql_int (w.db,
                                        "SELECT attempts * 10 + parts_sent"
                                        "  FROM messages WHERE id = $1::bigint",
                                        1, params),
                      24);
    /* the history tells it: parts 1-2, the retry, parts 3-4 */
    char *story = rcd_test_sql (
        w.db,
        "SELECT string_agg(CASE WHEN detail LIKE 'part %'"
        "                       THEN substr(detail, 1, 6) ELSE status END,"
        "                  ',' ORDER BY id)"
        "  FROM message_history WHERE message_id = $1::bigint"
        "   AND (status <> 'sending' OR detail LIKE 'part %')",
        1, params);
    assert_string_equal (story, "pending,part 1,part 2,pending,part 3,part 4");
    free (story);
    free (text);
    rcd_test_pipeline_passed (c->p);
}

/*  Meta has no typing delay: the sender waits parts_delay_ms itself
    between two parts. */
static void
test_meta_parts_are_spaced_by_the_parts_delay (void **state)
{
    s_case_t *c = *state;
    free (c->key);
    c->key = rcd_test_pipeline_tenant (c->p, "partsmeta");
    rcd_test_pipeline_meta (c->p, c->key, "meta", "1065", 100);
    char *text = s_long_text ();
    s_wait_t w = {rcd_test_pipeline_db (c->p), s_post_text (c, text)};
    assert_true (rcd_test_wait_until (s_message_sent, &w, 30000));
    json_t *arrivals = s_arrivals (c);
    s_assert_four_parts (arrivals, text);
    assert_string_equal (
        json_string_value (json_array_get (json_array_get (arrivals, 0), 2)),
        "1065");
    s_assert_gaps (arrivals, 0, 200);
    json_decref (arrivals);
    assert_int_equal (rcd_gwsim_duplicates (rcd_test_pipeline_sim (c->p)), 0);
    free (text);
    rcd_test_pipeline_passed (c->p);
}

static bool
s_two_parts_committed (void *arg)
{
    s_wait_t *w = arg;
    char id[24];
    snprintf (id, sizeof id, "%lld", w->id);
    const char *params[] = {id};
    return rcd_test_sql_int (w->db,
                             "SELECT parts_sent FROM messages"
                             " WHERE id = $1::bigint",
                             1, params) == 2;
}

/*  The sender dies between parts 2 and 3 (SIGKILL while it waits to send
    part 3). Its lease runs out, recovery puts the message back, and the
    restarted sender sends parts 3 and 4 only: no part twice. */
static void
test_a_killed_sender_resumes_at_the_next_part (void **state)
{
    s_case_t *c = *state;
    char *text = s_long_text ();
    s_wait_t w = {rcd_test_pipeline_db (c->p), s_post_text (c, text)};
    assert_true (rcd_test_wait_until (s_two_parts_committed, &w, 30000));
    assert_int_equal (
        rcd_test_pipeline_stop (c->p, RCD_TP_SENDER, 0, SIGKILL, 5000),
        128 + SIGKILL);
    json_t *arrivals = s_arrivals (c);
    assert_int_equal (json_array_size (arrivals), 2);
    json_decref (arrivals);
    rcd_test_pipeline_start (c->p, RCD_TP_SENDER, 0);
    assert_true (rcd_test_wait_until (s_message_sent, &w, 60000));

    arrivals = s_arrivals (c);
    s_assert_four_parts (arrivals, text);
    json_decref (arrivals);
    assert_int_equal (rcd_gwsim_duplicates (rcd_test_pipeline_sim (c->p)), 0);
    char id[24];
    snprintf (id, sizeof id, "%lld", w.id);
    const char *params[] = {id};
    assert_int_equal (rcd_test_sql_int (w.db,
                                        "SELECT attempts * 10 + parts_sent"
                                        "  FROM messages WHERE id = $1::bigint",
                                        1, params),
                      24);
    free (text);
    rcd_test_pipeline_stop_all (c->p);
    rcd_test_pipeline_passed (c->p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (
            test_a_3500_character_text_arrives_as_4_parts_in_order, setup,
            teardown),
        cmocka_unit_test_setup_teardown (
            test_a_failed_part_3_is_retried_with_part_4_only, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_meta_parts_are_spaced_by_the_parts_delay, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_a_killed_sender_resumes_at_the_next_part, setup_crash,
            teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

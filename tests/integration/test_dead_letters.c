/*  test_dead_letters.c - GET /v1/dead-letters and POST
    /v1/dead-letters/replay against a real PostgreSQL over real HTTP on
    loopback, and the delivery state GET /v1/instances shows with them
    (usage against the caps, circuit, pause, health).

    The ingestor actor runs in process on a fresh database; failed
    messages and their dead letters are put in place with SQL, as the
    sender would leave them (status 'failed', attempts used up, a lease
    left behind on purpose so that clearing it shows). The test binds the
    scheduler's PULL to see the nudge a replay sends.
*/
#include "rcd_proto.h"
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"

typedef struct {
    char *url;               /* test database */
    rcd_test_ingestor_t ing; /* the ingestor and its port */
    zsock_t *nudges;         /* PULL bound where the ingestor pushes */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
    int phone; /* last phone suffix used */
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

static json_t *
s_expect (long expected, const char *method, const char *path, const char *key,
          const char *body)
{
    return rcd_test_api_expect (s_fx.ing.port, expected, method, path, key,
                                body);
}

static long long
s_int (const char *sql, long long a, long long b)
{
    char p1[24], p2[24];
    snprintf (p1, sizeof p1, "%lld", a);
    snprintf (p2, sizeof p2, "%lld", b);
    const char *params[] = {p1, p2};
    int n = strstr (sql, "$2") ? 2 : strstr (sql, "$1") ? 1 : 0;
    return rcd_test_sql_int (s_fx.url, sql, n, params);
}

static char *
s_text (const char *sql, long long a)
{
    char p1[24];
    snprintf (p1, sizeof p1, "%lld", a);
    const char *params[] = {p1};
    return rcd_test_sql (s_fx.url, sql, 1, params);
}

/*  A failed message of tenant with its dead letter, created age_s seconds
    ago; returns the dead letter's id and the message's in *message_id. */
static long long
s_dead_letter (long long tenant, int age_s, long long *message_id)
{
    char t[24], phone[32], age[24];
    snprintf (t, sizeof t, "%lld", tenant);
    snprintf (phone, sizeof phone, "+55119%08d", 10000000 + ++s_fx.phone);
    snprintf (age, sizeof age, "%d", age_s);
    const char *params[] = {t, phone, age};
    long long mid = rcd_test_sql_int (
        s_fx.url,
        "INSERT INTO messages (tenant_id, to_phone, body, status, attempts,"
        "                      max_attempts, lease_until, last_error,"
        "                      send_at)"
        "VALUES ($1::bigint, $2, 'boleto vencido', 'failed', 5, 5,"
        "        now() - interval '1 hour', 'gateway said 500',"
        "        now() - interval '2 hours')"
        "RETURNING id",
        2, params);
    assert_true (mid > 0);
    char m[24];
    snprintf (m, sizeof m, "%lld", mid);
    const char *dl_params[] = {t, m, age};
    long long id = rcd_test_sql_int (
        s_fx.url,
        "INSERT INTO dead_letters (tenant_id, message_id, reason, attempts,"
        "                          gateway_answer, created_at)"
        "VALUES ($1::bigint, $2::bigint, 'attempts exhausted', 5,"
        "        '{\"status\":500}',"
        "        now() - make_interval(secs => $3::int))"
        "RETURNING id",
        3, dl_params);
    assert_true (id > 0);
    if (message_id)
        *message_id = mid;
    return id;
}

static char *
s_status_of (long long message_id)
{
    return s_text ("SELECT status FROM messages WHERE id = $1::bigint",
                   message_id);
}

static void
s_assert_status (long long message_id, const char *expected)
{
    char *status = s_status_of (message_id);
    assert_non_null (status);
    assert_string_equal (status, expected);
    free (status);
}

static bool
s_replayed (long long dead_letter_id)
{
    return s_int ("SELECT count(*) FROM dead_letters WHERE id = $1::bigint"
                  "   AND replayed_at IS NOT NULL",
                  dead_letter_id, 0) == 1;
}

/*  POSTs a replay body and returns {replayed, skipped} (asserting 200). */
static void
s_replay (const char *key, const char *body, long long replayed,
          long long skipped)
{
    json_t *a = s_expect (200, "POST", "/v1/dead-letters/replay", key, body);
    assert_int_equal (json_integer_value (json_object_get (a, "replayed")),
                      replayed);
    assert_int_equal (json_integer_value (json_object_get (a, "skipped")),
                      skipped);
    json_decref (a);
}

/*  An RFC 3339 UTC timestamp of now + offset_s, from PostgreSQL's
    clock (the one created_at uses). Caller frees. */
static char *
s_time (int offset_s)
{
    char o[24];
    snprintf (o, sizeof o, "%d", offset_s);
    const char *params[] = {o};
    return rcd_test_sql (
        s_fx.url,
        "SELECT to_char((now() + make_interval(secs => $1::int))"
        "               AT TIME ZONE 'UTC',"
        "               'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        1, params);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.url = rcd_test_db_create ("dead_letters");
    int nudge_port = rcd_test_free_port ();
    s_fx.nudges = zsock_new (ZMQ_PULL);
    assert_int_equal (
        zsock_bind (s_fx.nudges, "tcp://127.0.0.1:%d", nudge_port), nudge_port);
    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, 4, nudge_port,
                                0);
    s_fx.key_a = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant a",
                                         &s_fx.tenant_a);
    s_fx.key_b = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant b",
                                         &s_fx.tenant_b);
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    zsock_destroy (&s_fx.nudges);
    rcd_test_db_drop (&s_fx.url);
    free (s_fx.key_a);
    free (s_fx.key_b);
    curl_global_cleanup ();
    return 0;
}

/*  Each test starts from no dead letter and no message. */
static int
s_clean (void **state)
{
    (void)state;
    free (rcd_test_sql (s_fx.url,
                        "WITH d AS (DELETE FROM dead_letters),"
                        "     h AS (DELETE FROM message_history)"
                        "DELETE FROM messages",
                        0, NULL));
    return 0;
}

/*  --- listing --- */

static void
test_list_pages_oldest_first_and_shows_the_message (void **state)
{
    (void)state;
    long long ids[5], mids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = s_dead_letter (s_fx.tenant_a, 50 - i, &mids[i]);
    long long other = s_dead_letter (s_fx.tenant_b, 10, NULL);

    long long seen[6];
    int n = 0;
    char path[128] = "/v1/dead-letters?limit=2";
    for (int page = 0; page < 4; page++) {
        json_t *a = s_expect (200, "GET", path, s_fx.key_a, NULL);
        json_t *items = json_object_get (a, "items");
        size_t i;
        json_t *item;
        json_array_foreach (items, i, item)
        {
            assert_true (n < 6);
            seen[n++] = json_integer_value (json_object_get (item, "id"));
        }
        const char *next = rcd_test_str (a, "next_cursor");
        if (page < 2) {
            assert_int_equal (json_array_size (items), 2);
            assert_non_null (next);
            snprintf (path, sizeof path, "/v1/dead-letters?limit=2&cursor=%s",
                      next);
        }
        else {
            assert_int_equal (json_array_size (items), 1);
            assert_true (json_is_null (json_object_get (a, "next_cursor")));
        }
        json_decref (a);
        if (page == 2)
            break;
    }
    /* all of tenant a's, oldest first, none of tenant b's */
    assert_int_equal (n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal (seen[i], ids[i]);

    /* the document of one */
    json_t *a =
        s_expect (200, "GET", "/v1/dead-letters?limit=1", s_fx.key_a, NULL);
    json_t *dl = json_array_get (json_object_get (a, "items"), 0);
    assert_int_equal (json_integer_value (json_object_get (dl, "id")), ids[0]);
    assert_int_equal (json_integer_value (json_object_get (dl, "message_id")),
                      mids[0]);
    assert_string_equal (rcd_test_str (dl, "reason"), "attempts exhausted");
    assert_int_equal (json_integer_value (json_object_get (dl, "attempts")), 5);
    assert_string_equal (rcd_test_str (dl, "gateway_answer"),
                         "{\"status\":500}");
    assert_non_null (rcd_test_str (dl, "created_at"));
    assert_true (json_is_null (json_object_get (dl, "replayed_at")));
    json_t *m = json_object_get (dl, "message");
    assert_string_equal (rcd_test_str (m, "status"), "failed");
    assert_string_equal (rcd_test_str (m, "to"), "+5511910000001");
    assert_int_equal (json_integer_value (json_object_get (m, "attempts")), 5);
    json_decref (a);

    /* tenant b sees only its own */
    a = s_expect (200, "GET", "/v1/dead-letters", s_fx.key_b, NULL);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 1);
    assert_int_equal (
        json_integer_value (json_object_get (json_array_get (items, 0), "id")),
        other);
    json_decref (a);
}

static void
test_list_since_keeps_the_newer_ones (void **state)
{
    (void)state;
    s_dead_letter (s_fx.tenant_a, 7200, NULL);
    long long recent = s_dead_letter (s_fx.tenant_a, 60, NULL);
    char *since = s_time (-600);
    char path[128];
    snprintf (path, sizeof path, "/v1/dead-letters?since=%s", since);
    free (since);
    json_t *a = s_expect (200, "GET", path, s_fx.key_a, NULL);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 1);
    assert_int_equal (
        json_integer_value (json_object_get (json_array_get (items, 0), "id")),
        recent);
    json_decref (a);
}

static void
test_list_refuses_bad_query_arguments (void **state)
{
    (void)state;
    static const struct {
        const char *query;
        const char *field;
    } cases[] = {
        {"since=yesterday", "since"}, {"since=2026-13-01T00:00:00Z", "since"},
        {"limit=0", "limit"},         {"limit=501", "limit"},
        {"limit=ten", "limit"},       {"limit=-1", "limit"},
        {"cursor=abc", "cursor"},     {"cursor=0", "cursor"},
        {"cursor=-5", "cursor"},      {"status=failed", "status"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        snprintf (path, sizeof path, "/v1/dead-letters?%s", cases[i].query);
        rcd_test_api_expect_error (s_fx.ing.port, 400, "GET", path, s_fx.key_a,
                                   NULL, "invalid_field", cases[i].field);
    }
    /* no key, no listing */
    rcd_test_api_expect_error (s_fx.ing.port, 401, "GET", "/v1/dead-letters",
                               NULL, NULL, "unauthorized", NULL);
}

/*  --- replay --- */

static void
test_replay_by_ids_requeues_and_shows_in_history (void **state)
{
    (void)state;
    long long m1, m2, m3;
    long long d1 = s_dead_letter (s_fx.tenant_a, 30, &m1);
    long long d2 = s_dead_letter (s_fx.tenant_a, 20, &m2);
    long long d3 = s_dead_letter (s_fx.tenant_a, 10, &m3);
    rcd_test_nudges_drain (s_fx.nudges);

    char body[128];
    snprintf (body, sizeof body, "{\"ids\":[%lld,%lld,%lld]}", d1, d2, d1);
    s_replay (s_fx.key_a, body, 2, 0); /* a repeat counts once */

    rcd_nudge_t nudge = {0};
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal ((long long)nudge.tenant_id, s_fx.tenant_a);
    assert_int_equal (nudge.count, 2);

    long long mids[] = {m1, m2};
    long long dls[] = {d1, d2};
    for (int i = 0; i < 2; i++) {
        s_assert_status (mids[i], "pending");
        /* attempts kept (the fencing token), five new tries, due now,
           lease gone, the last error kept */
        assert_int_equal (
            s_int ("SELECT count(*) FROM messages WHERE id = $1::bigint"
                   "   AND attempts = 5 AND max_attempts = 10"
                   "   AND lease_until IS NULL"
                   "   AND last_error = 'gateway said 500'"
                   "   AND send_at > now() - interval '1 minute'"
                   "   AND send_at <= now()",
                   mids[i], 0),
            1);
        assert_true (s_replayed (dls[i]));

        /* the history, through the API */
        char path[64], detail[64];
        snprintf (path, sizeof path, "/v1/messages/%lld", mids[i]);
        snprintf (detail, sizeof detail, "replayed from dead letter %lld",
                  dls[i]);
        json_t *a = s_expect (200, "GET", path, s_fx.key_a, NULL);
        assert_string_equal (rcd_test_str (a, "status"), "pending");
        json_t *history = json_object_get (a, "history");
        json_t *last = json_array_get (history, json_array_size (history) - 1);
        assert_non_null (last);
        assert_string_equal (rcd_test_str (last, "status"), "pending");
        assert_string_equal (rcd_test_str (last, "detail"), detail);
        json_decref (a);
    }
    /* the one not named is untouched */
    s_assert_status (m3, "failed");
    assert_false (s_replayed (d3));

    /* the listing shows replayed_at and the message now pending */
    json_t *a =
        s_expect (200, "GET", "/v1/dead-letters?limit=1", s_fx.key_a, NULL);
    json_t *dl = json_array_get (json_object_get (a, "items"), 0);
    assert_int_equal (json_integer_value (json_object_get (dl, "id")), d1);
    assert_non_null (rcd_test_str (dl, "replayed_at"));
    assert_string_equal (
        rcd_test_str (json_object_get (dl, "message"), "status"), "pending");
    json_decref (a);
}

static void
test_replay_twice_and_the_unreplayable_count_as_skipped (void **state)
{
    (void)state;
    long long m1, m2;
    long long d1 = s_dead_letter (s_fx.tenant_a, 30, &m1);
    long long d2 = s_dead_letter (s_fx.tenant_a, 20, &m2);
    char body[160];
    snprintf (body, sizeof body, "{\"ids\":[%lld]}", d1);
    s_replay (s_fx.key_a, body, 1, 0);
    /* the replayed message fails again and is replayed by its old dead
       letter: nothing happens */
    free (s_text ("UPDATE messages SET status = 'failed' WHERE id = $1::bigint",
                  m1));
    s_replay (s_fx.key_a, body, 0, 1);
    s_assert_status (m1, "failed");
    assert_int_equal (s_int ("SELECT max_attempts FROM messages"
                             " WHERE id = $1::bigint",
                             m1, 0),
                      10);

    /* a message no longer failed (sent meanwhile) and an unknown id */
    free (s_text ("UPDATE messages SET status = 'sent' WHERE id = $1::bigint",
                  m2));
    snprintf (body, sizeof body, "{\"ids\":[%lld, 999999999]}", d2);
    s_replay (s_fx.key_a, body, 0, 2);
    s_assert_status (m2, "sent");
    assert_false (s_replayed (d2));
    assert_int_equal (s_int ("SELECT count(*) FROM message_history"
                             " WHERE message_id = $1::bigint",
                             m2, 0),
                      0);
}

static void
test_replay_never_touches_another_tenants_dead_letters (void **state)
{
    (void)state;
    long long mb;
    long long db = s_dead_letter (s_fx.tenant_b, 30, &mb);
    char body[64];
    snprintf (body, sizeof body, "{\"ids\":[%lld]}", db);
    s_replay (s_fx.key_a, body, 0, 1);
    char *since = s_time (-3600);
    snprintf (body, sizeof body, "{\"since\":\"%s\"}", since);
    free (since);
    s_replay (s_fx.key_a, body, 0, 0);
    s_assert_status (mb, "failed");
    assert_false (s_replayed (db));
    assert_int_equal (s_int ("SELECT count(*) FROM message_history"
                             " WHERE message_id = $1::bigint",
                             mb, 0),
                      0);
    /* its own tenant can */
    snprintf (body, sizeof body, "{\"ids\":[%lld]}", db);
    s_replay (s_fx.key_b, body, 1, 0);
    s_assert_status (mb, "pending");
}

static void
test_replay_since_takes_the_newer_ones (void **state)
{
    (void)state;
    long long old_m, m1, m2, m3;
    long long old = s_dead_letter (s_fx.tenant_a, 7200, &old_m);
    long long d1 = s_dead_letter (s_fx.tenant_a, 300, &m1);
    long long d2 = s_dead_letter (s_fx.tenant_a, 200, &m2);
    long long d3 = s_dead_letter (s_fx.tenant_a, 100, &m3);
    /* d3's message was sent meanwhile: skipped */
    free (s_text ("UPDATE messages SET status = 'sent' WHERE id = $1::bigint",
                  m3));
    rcd_test_nudges_drain (s_fx.nudges);
    char *since = s_time (-3600);
    char body[96];
    snprintf (body, sizeof body, "{\"since\":\"%s\"}", since);
    free (since);
    s_replay (s_fx.key_a, body, 2, 1);
    rcd_nudge_t nudge = {0};
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal (nudge.count, 2);
    s_assert_status (m1, "pending");
    s_assert_status (m2, "pending");
    s_assert_status (m3, "sent");
    s_assert_status (old_m, "failed");
    assert_true (s_replayed (d1));
    assert_true (s_replayed (d2));
    assert_false (s_replayed (d3));
    assert_false (s_replayed (old));
    /* again: all three are skipped now */
    s_replay (s_fx.key_a, body, 0, 3);
    /* a time zone offset is honoured: the same instant at -03:00 */
    since = rcd_test_sql (
        s_fx.url,
        "SELECT to_char((now() - interval '3 hours' - interval '1 hour')"
        "               AT TIME ZONE 'UTC',"
        "               'YYYY-MM-DD\"T\"HH24:MI:SS\"-03:00\"')",
        0, NULL);
    snprintf (body, sizeof body, "{\"since\":\"%s\"}", since);
    free (since);
    s_replay (s_fx.key_a, body, 0, 3);
}

static void
test_replay_refuses_bad_input_and_changes_nothing (void **state)
{
    (void)state;
    long long m1;
    long long d1 = s_dead_letter (s_fx.tenant_a, 30, &m1);
    long long history = s_int ("SELECT count(*) FROM message_history", 0, 0);

    char both[128], bad_item[128], zero[64], big[64];
    snprintf (both, sizeof both,
              "{\"ids\":[%lld],\"since\":\"2026-01-01T00:00:00Z\"}", d1);
    snprintf (bad_item, sizeof bad_item, "{\"ids\":[%lld,\"7\"]}", d1);
    snprintf (zero, sizeof zero, "{\"ids\":[%lld,0]}", d1);
    snprintf (big, sizeof big, "{\"ids\":[%lld,1.5]}", d1);
    static char too_many[8192];
    size_t len = (size_t)snprintf (too_many, sizeof too_many, "{\"ids\":[");
    for (int i = 0; i < 1001; i++)
        len += (size_t)snprintf (too_many + len, sizeof too_many - len,
                                 "%s%lld", i ? "," : "", d1);
    snprintf (too_many + len, sizeof too_many - len, "]}");

    const struct {
        const char *body;
        const char *code;
        const char *field; /* NULL: JSON null */
    } cases[] = {
        {NULL, "invalid_json", NULL},
        {"{\"ids\":[", "invalid_json", NULL},
        {"[1,2]", "invalid_json", NULL},
        {"{}", "missing_field", "ids"},
        {"{\"ids\":null}", "missing_field", "ids"},
        {"{\"ids\":[]}", "invalid_field", "ids"},
        {"{\"ids\":5}", "invalid_field", "ids"},
        {"{\"ids\":\"1,2\"}", "invalid_field", "ids"},
        {bad_item, "invalid_field", "ids[1]"},
        {zero, "invalid_field", "ids[1]"},
        {big, "invalid_field", "ids[1]"},
        {too_many, "invalid_field", "ids"},
        {"{\"since\":\"yesterday\"}", "invalid_field", "since"},
        {"{\"since\":\"2026-02-30T00:00:00Z\"}", "invalid_field", "since"},
        {"{\"since\":\"2026-01-01T00:00:00\"}", "invalid_field", "since"},
        {"{\"since\":1767225600}", "invalid_field", "since"},
        {both, "invalid_field", "since"},
        {"{\"id\":[1]}", "invalid_field", "id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        rcd_test_api_expect_error (
            s_fx.ing.port, 400, "POST", "/v1/dead-letters/replay", s_fx.key_a,
            cases[i].body, cases[i].code, cases[i].field);
    /* nothing changed */
    s_assert_status (m1, "failed");
    assert_false (s_replayed (d1));
    assert_int_equal (s_int ("SELECT count(*) FROM message_history", 0, 0),
                      history);
    assert_int_equal (s_int ("SELECT max_attempts FROM messages"
                             " WHERE id = $1::bigint",
                             m1, 0),
                      5);
    /* and the same dead letter replays fine afterwards */
    char body[64];
    snprintf (body, sizeof body, "{\"ids\":[%lld]}", d1);
    s_replay (s_fx.key_a, body, 1, 0);
}

/*  --- instance usage (issue 4's other GET /v1/instances addition) --- */

static void
test_instances_show_this_periods_usage_and_no_credential (void **state)
{
    (void)state;
    json_t *a = s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                          "{\"name\":\"usage-now\",\"provider\":"
                          "\"evolution\",\"base_url\":\"http://127.0.0.1:1\","
                          "\"api_key\":\"secret-usage-key\"}");
    json_t *usage = json_object_get (a, "usage");
    assert_int_equal (json_integer_value (json_object_get (usage, "hour")), 0);
    assert_int_equal (json_integer_value (json_object_get (usage, "day")), 0);
    json_decref (a);
    a = s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                  "{\"name\":\"usage-old\",\"provider\":\"evolution\","
                  "\"base_url\":\"http://127.0.0.1:1\",\"api_key\":\"k2\"}");
    json_decref (a);
    /* counted this hour and this (tenant) day, as the scheduler writes
       them; the other instance's counters belong to older periods */
    free (rcd_test_sql (
        s_fx.url,
        "UPDATE instances i SET"
        "  hour_start = date_trunc('hour', now())"
        "               - CASE WHEN i.name = 'usage-old' THEN interval '1 hour'"
        "                      ELSE interval '0' END,"
        "  hour_used = 7,"
        "  day_start = date_trunc('day', now(), t.timezone)"
        "              - CASE WHEN i.name = 'usage-old' THEN interval '1 day'"
        "                     ELSE interval '0' END,"
        "  day_used = 42,"
        "  circuit_state = 'open', circuit_reason = 'auth failed (401)',"
        "  circuit_opened_at = now(), paused_until = now() + interval '1 min',"
        "  health = 'close', health_at = now()"
        "  FROM tenants t WHERE t.id = i.tenant_id",
        0, NULL));
    a = s_expect (200, "GET", "/v1/instances", s_fx.key_a, NULL);
    char *text = json_dumps (a, JSON_COMPACT);
    assert_null (strstr (text, "secret-usage-key"));
    free (text);
    size_t i;
    json_t *inst;
    int seen = 0;
    json_array_foreach (json_object_get (a, "items"), i, inst)
    {
        const char *name = rcd_test_str (inst, "name");
        bool now = strcmp (name, "usage-now") == 0;
        usage = json_object_get (inst, "usage");
        assert_int_equal (json_integer_value (json_object_get (usage, "hour")),
                          now ? 7 : 0);
        assert_int_equal (json_integer_value (json_object_get (usage, "day")),
                          now ? 42 : 0);
        assert_string_equal (rcd_test_str (inst, "circuit_state"), "open");
        assert_string_equal (rcd_test_str (inst, "circuit_reason"),
                             "auth failed (401)");
        assert_non_null (rcd_test_str (inst, "circuit_opened_at"));
        assert_non_null (rcd_test_str (inst, "paused_until"));
        assert_string_equal (rcd_test_str (inst, "health"), "close");
        assert_non_null (rcd_test_str (inst, "health_at"));
        assert_null (json_object_get (inst, "api_key"));
        seen++;
    }
    assert_int_equal (seen, 2);
    json_decref (a);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (
            test_list_pages_oldest_first_and_shows_the_message, s_clean),
        cmocka_unit_test_setup (test_list_since_keeps_the_newer_ones, s_clean),
        cmocka_unit_test_setup (test_list_refuses_bad_query_arguments, s_clean),
        cmocka_unit_test_setup (
            test_replay_by_ids_requeues_and_shows_in_history, s_clean),
        cmocka_unit_test_setup (
            test_replay_twice_and_the_unreplayable_count_as_skipped, s_clean),
        cmocka_unit_test_setup (
            test_replay_never_touches_another_tenants_dead_letters, s_clean),
        cmocka_unit_test_setup (test_replay_since_takes_the_newer_ones,
                                s_clean),
        cmocka_unit_test_setup (
            test_replay_refuses_bad_input_and_changes_nothing, s_clean),
        cmocka_unit_test (
            test_instances_show_this_periods_usage_and_no_credential),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

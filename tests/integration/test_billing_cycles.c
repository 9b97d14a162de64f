/*  test_billing_cycles.c - billing cycles (POST /v1/billing-cycles,
    /batch, GET, cancel) against a real PostgreSQL over real HTTP on
    loopback.

    The ingestor actor runs in process, so rcd_clock_test_shift_ms moves
    the "now" it passes to PostgreSQL: each test puts now at a chosen
    local instant and picks the tenant's time zone and business hours so
    that every expected send_at is exact. Expected instants are computed
    by PostgreSQL's own timezone() in the test, never by the code under
    test. Reminders are moved through their statuses with SQL, as the
    sender would, to watch cycles complete. Every refused request is
    checked to have stored nothing by counting rows before and after.
*/
#include "rcd_clock.h"
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"
#define SP        "America/Sao_Paulo"
#define SCL       "America/Santiago"
/*  Weekdays 10:00-18:00, closed at the weekend. */
#define WEEKDAYS_10_18                                                         \
    "{\"mon\":[[\"10:00\",\"18:00\"]],\"tue\":[[\"10:00\",\"18:00\"]],"        \
    "\"wed\":[[\"10:00\",\"18:00\"]],\"thu\":[[\"10:00\",\"18:00\"]],"         \
    "\"fri\":[[\"10:00\",\"18:00\"]]}"

typedef struct {
    rcd_test_ingestor_t ing; /* the ingestor, its database and port */
    char *key_a;             /* São Paulo tenant, generic template */
    char *key_s;             /* Santiago tenant, generic template */
    char *key_n;             /* tenant without any template */
    long long tenant_a, tenant_s, tenant_n;
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

/*  rcd_test_api_expect on this test's ingestor. */
static json_t *
s_expect (long expected, const char *method, const char *path, const char *key,
          const char *body)
{
    return rcd_test_api_expect (s_fx.ing.port, expected, method, path, key,
                                body);
}

/*  rcd_test_api_expect_error on this test's ingestor. */
static void
s_expect_error (long status, const char *method, const char *path,
                const char *key, const char *body, const char *code,
                const char *field)
{
    rcd_test_api_expect_error (s_fx.ing.port, status, method, path, key, body,
                               code, field);
}

static long long
s_int (json_t *obj, const char *name)
{
    return (long long)json_integer_value (json_object_get (obj, name));
}

static long long
s_sql_int (const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    return rcd_test_sql_int (s_fx.ing.url, sql, p2 ? 2 : p1 ? 1 : 0, params);
}

static char *
s_sql (const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    return rcd_test_sql (s_fx.ing.url, sql, p2 ? 2 : p1 ? 1 : 0, params);
}

/*  Row counts that a refused request must leave as they were. */
typedef struct {
    long long cycles, messages, history, contacts;
} s_rows_t;

static s_rows_t
s_rows (void)
{
    s_rows_t r;
    r.cycles = s_sql_int ("SELECT count(*) FROM billing_cycles", NULL, NULL);
    r.messages = s_sql_int ("SELECT count(*) FROM messages", NULL, NULL);
    r.history = s_sql_int ("SELECT count(*) FROM message_history", NULL, NULL);
    r.contacts = s_sql_int ("SELECT count(*) FROM contacts", NULL, NULL);
    return r;
}

static void
s_assert_unchanged (s_rows_t before)
{
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles);
    assert_int_equal (after.messages, before.messages);
    assert_int_equal (after.history, before.history);
    assert_int_equal (after.contacts, before.contacts);
}

/*  Puts this process's clock (the in-process ingestor's "now") at the
    local time local ("YYYY-MM-DD HH:MM[:SS]") in time zone tz, as
    PostgreSQL reads it. */
static void
s_set_now (const char *local, const char *tz)
{
    long long target = s_sql_int (
        "SELECT (extract(epoch FROM timezone($2, $1::timestamp)) * 1000)"
        "::bigint",
        local, tz);
#ifdef RECADO_TEST_HOOKS
    rcd_clock_test_shift_ms (0);
    rcd_clock_test_shift_ms (target - rcd_clock_now_ms ());
#else
    (void)target;
#endif
}

/*  Sets the settings the cycle rules depend on. hours is JSON. */
static void
s_tenant (const char *key, const char *tz, const char *hours,
          const char *reminder, const char *offsets)
{
    char body[1024];
    snprintf (body, sizeof body,
              "{\"timezone\":\"%s\",\"business_hours\":%s,"
              "\"reminder_time\":\"%s\",\"default_offsets_days\":%s}",
              tz, hours, reminder, offsets);
    json_decref (s_expect (200, "PATCH", "/v1/tenant", key, body));
}

/*  A cycle's JSON: contact name "Cliente", R$ 159,90; offsets (JSON) and
    more (extra members) are optional. */
static void
s_cycle_json (char *buf, size_t size, const char *ext, const char *phone,
              const char *due, const char *offsets, const char *more)
{
    snprintf (buf, size,
              "{\"external_billing_id\":\"%s\",\"contact\":{\"phone\":\"%s\","
              "\"name\":\"Cliente\"},\"amount_cents\":15990,"
              "\"currency\":\"BRL\",\"due_date\":\"%s\"%s%s%s%s}",
              ext, phone, due, offsets ? ",\"offsets_days\":" : "",
              offsets ? offsets : "", more ? "," : "", more ? more : "");
}

/*  Posts one cycle, asserting 201; returns the answer. */
static json_t *
s_create (const char *key, const char *ext, const char *phone, const char *due,
          const char *offsets, const char *more)
{
    char body[2048];
    s_cycle_json (body, sizeof body, ext, phone, due, offsets, more);
    return s_expect (201, "POST", "/v1/billing-cycles", key, body);
}

/*  GET /v1/billing-cycles/{ext}, asserting 200. */
static json_t *
s_get (const char *key, const char *ext)
{
    char path[300];
    snprintf (path, sizeof path, "/v1/billing-cycles/%s", ext);
    return s_expect (200, "GET", path, key, NULL);
}

/*  Asserts that the instant text (ISO 8601) is local time local in tz. */
static void
s_assert_at (const char *text, const char *local, const char *tz)
{
    assert_non_null (text);
    const char *params[] = {text, local, tz};
    long long same = rcd_test_sql_int (
        s_fx.ing.url,
        "SELECT ($1::timestamptz = timezone($3, $2::timestamp))::int", 3,
        params);
    if (same != 1) {
        char *want = rcd_test_sql (
            s_fx.ing.url,
            "SELECT timezone($3, $2::timestamp) AT TIME ZONE 'UTC' || 'Z'"
            " WHERE $1 IS NOT NULL",
            3, params);
        fail_msg ("send_at %s, expected %s %s = %s", text, local, tz,
                  want ? want : "?");
    }
}

/*  Asserts that the instant text lies within [from_ms, to_ms] (the
    to_timestamp of a Unix ms may round down by one). */
static void
s_assert_between (const char *text, long long from_ms, long long to_ms)
{
    assert_non_null (text);
    long long ms = s_sql_int (
        "SELECT (extract(epoch FROM $1::timestamptz) * 1000)::bigint", text,
        NULL);
    if (ms < from_ms - 1 || ms > to_ms + 1)
        fail_msg ("send_at %s (%lld) is not now [%lld, %lld]", text, ms,
                  from_ms, to_ms);
}

/*  One expected reminder: its offset, status and local send_at (NULL:
    "now", the instant of the request). */
typedef struct {
    int offset;
    const char *status;
    const char *local;
} s_want_t;

/*  Asserts the reminders of a 201 answer, or of a GET document, against
    want[0..n) (in offset order). */
static void
s_assert_reminders (json_t *doc, const char *tz, const s_want_t *want, size_t n,
                    long long from_ms, long long to_ms)
{
    json_t *messages = json_object_get (doc, "messages");
    if (json_array_size (messages) != n) {
        char *text = json_dumps (doc, JSON_COMPACT);
        fail_msg ("expected %zu reminders: %s", n, text);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get (messages, i);
        assert_true (s_int (m, "id") > 0);
        assert_int_equal (s_int (m, "offset_days"), want[i].offset);
        if (strcmp (rcd_test_str (m, "status"), want[i].status) != 0)
            fail_msg ("offset %d: expected %s, got %s", want[i].offset,
                      want[i].status, rcd_test_str (m, "status"));
        if (want[i].local)
            s_assert_at (rcd_test_str (m, "send_at"), want[i].local, tz);
        else
            s_assert_between (rcd_test_str (m, "send_at"), from_ms, to_ms);
    }
}

/*  Creates a cycle and asserts its answer, the GET document and the
    stored rows against want. Returns the cycle id. */
static long long
s_create_expect (const char *key, const char *tz, const char *ext,
                 const char *phone, const char *due, const char *offsets,
                 const s_want_t *want, size_t n)
{
    s_rows_t before = s_rows ();
    long long from = rcd_clock_now_ms ();
    json_t *a = s_create (key, ext, phone, due, offsets, NULL);
    long long to = rcd_clock_now_ms ();
    s_assert_reminders (a, tz, want, n, from, to);
    size_t skipped = 0, pending = 0;
    for (size_t i = 0; i < n; i++) {
        skipped += strcmp (want[i].status, "skipped") == 0;
        pending += strcmp (want[i].status, "pending") == 0;
    }
    assert_int_equal (s_int (a, "skipped"), skipped);
    assert_string_equal (rcd_test_str (a, "status"),
                         pending ? "active" : "complete");
    assert_string_equal (rcd_test_str (a, "external_billing_id"), ext);
    long long id = s_int (a, "id");
    assert_true (id > 0);
    json_decref (a);

    json_t *doc = s_get (key, ext);
    assert_int_equal (s_int (doc, "id"), id);
    assert_string_equal (rcd_test_str (doc, "status"),
                         pending ? "active" : "complete");
    s_assert_reminders (doc, tz, want, n, from, to);
    json_decref (doc);

    /* one row and one history row per reminder, open ones counted */
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 1);
    assert_int_equal (after.messages, before.messages + (long long)n);
    assert_int_equal (after.history, before.history + (long long)n);
    char text[24];
    snprintf (text, sizeof text, "%lld", id);
    assert_int_equal (s_sql_int ("SELECT open_messages FROM billing_cycles"
                                 " WHERE id = $1::bigint",
                                 text, NULL),
                      pending);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m JOIN message_history h"
                   "    ON h.message_id = m.id AND h.status = m.status"
                   " WHERE m.billing_cycle_id = $1::bigint",
                   text, NULL),
        n);
    return id;
}

/*  Sets a reminder's status with SQL, as the sender would. */
static void
s_move (long long message_id, const char *status)
{
    char id[24];
    snprintf (id, sizeof id, "%lld", message_id);
    const char *params[] = {id, status};
    char *r =
        rcd_test_sql (s_fx.ing.url,
                      "UPDATE messages SET status = $2,"
                      "  lease_until = CASE WHEN $2 = 'sending'"
                      "                     THEN now() + interval '1 min' END"
                      " WHERE id = $1::bigint RETURNING status",
                      2, params);
    assert_non_null (r);
    free (r);
}

/*  The id of the reminder of cycle ext with that offset. */
static long long
s_reminder (const char *key, const char *ext, int offset)
{
    json_t *doc = s_get (key, ext);
    json_t *m;
    size_t i;
    long long id = 0;
    json_array_foreach (json_object_get (doc, "messages"), i, m)
    {
        if (s_int (m, "offset_days") == offset)
            id = s_int (m, "id");
    }
    json_decref (doc);
    assert_true (id > 0);
    return id;
}

/*  The cycle's status and whether completed_at is set. */
static void
s_assert_cycle (const char *key, const char *ext, const char *status,
                bool completed)
{
    json_t *doc = s_get (key, ext);
    assert_string_equal (rcd_test_str (doc, "status"), status);
    assert_int_equal (json_is_string (json_object_get (doc, "completed_at")),
                      completed);
    json_decref (doc);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    rcd_test_ingestor_start (&s_fx.ing, "cycles", ADMIN_KEY, 4);
    s_fx.key_a = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant a",
                                         &s_fx.tenant_a);
    s_fx.key_s = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant s",
                                         &s_fx.tenant_s);
    s_fx.key_n = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant n",
                                         &s_fx.tenant_n);
    const char *keys[] = {s_fx.key_a, s_fx.key_s};
    for (size_t i = 0; i < 2; i++) {
        json_decref (s_expect (200, "PUT", "/v1/templates/generico", keys[i],
                               "{\"variations\":[\"Fatura de {{amount}} vence"
                               " em {{due_date}}\"]}"));
        json_decref (s_expect (200, "PATCH", "/v1/tenant", keys[i],
                               "{\"generic_template\":\"generico\"}"));
    }
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
#ifdef RECADO_TEST_HOOKS
    rcd_clock_test_shift_ms (0);
#endif
    rcd_test_ingestor_stop (&s_fx.ing);
    free (s_fx.key_a);
    free (s_fx.key_s);
    free (s_fx.key_n);
    curl_global_cleanup ();
    return 0;
}

/*  Every test moves the clock. */
#ifdef RECADO_TEST_HOOKS
#define S_NEEDS_HOOKS()
#else
#define S_NEEDS_HOOKS() skip ()
#endif

/*  --- scheduling --- */

static void
test_one_reminder_per_offset_at_the_reminder_time (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    json_decref (
        s_expect (200, "PUT", "/v1/templates/cobranca", s_fx.key_a,
                  "{\"variations\":[\"Olá {{name}}, sua fatura de {{amount}} "
                  "({{amount_cents}}) vence em {{due_date}}. {{extra}}\"]}"));
    s_set_now ("2026-11-01 12:00", SP);

    /* the default offsets, at the default 09:00 local */
    s_rows_t before = s_rows ();
    json_t *a = s_expect (
        201, "POST", "/v1/billing-cycles", s_fx.key_a,
        "{\"external_billing_id\":\"INV-2026-0001\","
        "\"contact\":{\"phone\":\"+55 11 99876-1001\",\"name\":\"Ana\"},"
        "\"amount_cents\":123456,\"currency\":\"BRL\","
        "\"due_date\":\"2026-12-05\",\"template\":\"cobranca\","
        "\"vars\":{\"extra\":\"Pix: chave@x\"}}");
    const s_want_t want[] = {{-3, "pending", "2026-12-02 09:00"},
                             {0, "pending", "2026-12-05 09:00"},
                             {3, "pending", "2026-12-08 09:00"}};
    s_assert_reminders (a, SP, want, 3, 0, 0);
    assert_string_equal (rcd_test_str (a, "status"), "active");
    assert_string_equal (rcd_test_str (a, "external_billing_id"),
                         "INV-2026-0001");
    assert_int_equal (s_int (a, "skipped"), 0);
    long long id = s_int (a, "id");
    json_decref (a);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 1);
    assert_int_equal (after.messages, before.messages + 3);
    assert_int_equal (after.history, before.history + 3);

    /* the document: the cycle as uploaded, the rendered texts */
    json_t *doc = s_get (s_fx.key_a, "INV-2026-0001");
    assert_int_equal (s_int (doc, "id"), id);
    json_t *contact = json_object_get (doc, "contact");
    assert_string_equal (rcd_test_str (contact, "phone"), "+5511998761001");
    assert_string_equal (rcd_test_str (contact, "name"), "Ana");
    assert_int_equal (s_int (doc, "amount_cents"), 123456);
    assert_string_equal (rcd_test_str (doc, "currency"), "BRL");
    assert_string_equal (rcd_test_str (doc, "due_date"), "2026-12-05");
    assert_string_equal (rcd_test_str (doc, "status"), "active");
    assert_true (json_is_null (json_object_get (doc, "completed_at")));
    char *offsets = json_dumps (json_object_get (doc, "offsets_days"), 0);
    assert_string_equal (offsets, "[-3, 0, 3]");
    free (offsets);
    s_assert_reminders (doc, SP, want, 3, 0, 0);
    json_t *m;
    size_t i;
    json_array_foreach (json_object_get (doc, "messages"), i, m)
    {
        assert_string_equal (rcd_test_str (m, "text"),
                             "Olá Ana, sua fatura de R$ 1.234,56 (123456) "
                             "vence em 05/12/2026. Pix: chave@x");
        assert_int_equal (s_int (m, "attempts"), 0);
        assert_true (json_is_null (json_object_get (m, "sent_at")));
    }
    json_decref (doc);
    /* the rows: linked to the cycle, to its phone, accepted */
    char text[24];
    snprintf (text, sizeof text, "%lld", id);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m JOIN message_history h"
                   "    ON h.message_id = m.id AND h.status = 'pending'"
                   " WHERE m.billing_cycle_id = $1::bigint"
                   "   AND m.to_phone = '+5511998761001'"
                   "   AND m.offset_days IN (-3, 0, 3)",
                   text, NULL),
        3);
    assert_int_equal (s_sql_int ("SELECT open_messages FROM billing_cycles"
                                 " WHERE id = $1::bigint",
                                 text, NULL),
                      3);
    /* and born with the upload's trace id, one for all three */
    assert_int_equal (s_sql_int ("SELECT count(DISTINCT trace_id) FROM messages"
                                 " WHERE billing_cycle_id = $1::bigint"
                                 "   AND octet_length(trace_id) = 32",
                                 text, NULL),
                      1);

    /* the generic template when none is named; a big amount grouped */
    before = s_rows ();
    a = s_expect (201, "POST", "/v1/billing-cycles", s_fx.key_a,
                  "{\"external_billing_id\":\"INV-2026-0002\","
                  "\"contact\":{\"phone\":\"+5511998761002\"},"
                  "\"amount_cents\":100000000000,\"due_date\":\"2026-12-05\","
                  "\"offsets_days\":[0]}");
    json_decref (a);
    doc = s_get (s_fx.key_a, "INV-2026-0002");
    assert_string_equal (
        rcd_test_str (json_array_get (json_object_get (doc, "messages"), 0),
                      "text"),
        "Fatura de R$ 1.000.000.000,00 vence em 05/12/2026");
    json_decref (doc);

    /* a PATCHed reminder time and default offsets apply to new cycles */
    s_tenant (s_fx.key_a, SP, "null", "14:30", "[-5,1]");
    const s_want_t patched[] = {{-5, "pending", "2026-11-30 14:30"},
                                {1, "pending", "2026-12-06 14:30"}};
    s_create_expect (s_fx.key_a, SP, "INV-2026-0003", "+5511998761003",
                     "2026-12-05", NULL, patched, 2);
    /* explicit offsets in any order: one reminder each, by offset */
    const s_want_t given[] = {{-1, "pending", "2026-12-04 14:30"},
                              {0, "pending", "2026-12-05 14:30"},
                              {2, "pending", "2026-12-07 14:30"}};
    s_create_expect (s_fx.key_a, SP, "INV-2026-0004", "+5511998761004",
                     "2026-12-05", "[2,-1,0]", given, 3);
    /* offsets reaching far: a year before and after */
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    const s_want_t far[] = {{-30, "pending", "2026-12-20 09:00"},
                            {365, "pending", "2028-01-19 09:00"}};
    s_create_expect (s_fx.key_a, SP, "INV-2026-0005", "+5511998761005",
                     "2027-01-19", "[365,-30]", far, 2);
}

static void
test_a_reminder_outside_business_hours_moves_to_the_next_opening (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    /* weekdays, with a lunch break; 2026-12-02 is a Wednesday, 12-05 a
       Saturday, 12-07 a Monday */
    const char *hours =
        "{\"mon\":[[\"10:00\",\"12:00\"],[\"13:00\",\"18:00\"]],"
        "\"tue\":[[\"10:00\",\"12:00\"],[\"13:00\",\"18:00\"]],"
        "\"wed\":[[\"10:00\",\"12:00\"],[\"13:00\",\"18:00\"]],"
        "\"thu\":[[\"10:00\",\"12:00\"],[\"13:00\",\"18:00\"]],"
        "\"fri\":[[\"10:00\",\"12:00\"],[\"13:00\",\"18:00\"]]}";
    assert_int_equal (s_sql_int ("SELECT extract(isodow FROM $1::date)::int",
                                 "2026-12-05", NULL),
                      6);
    s_set_now ("2026-11-01 12:00", SP);

    /* 09:00, before the opening: 10:00 that day, Monday for Saturday */
    s_tenant (s_fx.key_a, SP, hours, "09:00", "[-3,0,3]");
    const s_want_t early[] = {{-3, "pending", "2026-12-02 10:00"},
                              {0, "pending", "2026-12-07 10:00"},
                              {2, "pending", "2026-12-07 10:00"}};
    s_create_expect (s_fx.key_a, SP, "BH-1", "+5511998762001", "2026-12-05",
                     "[-3,0,2]", early, 3);
    /* 12:30, at lunch: 13:00 */
    s_tenant (s_fx.key_a, SP, hours, "12:30", "[-3,0,3]");
    const s_want_t lunch[] = {{-3, "pending", "2026-12-02 13:00"},
                              {0, "pending", "2026-12-07 10:00"},
                              {2, "pending", "2026-12-07 13:00"}};
    s_create_expect (s_fx.key_a, SP, "BH-2", "+5511998762002", "2026-12-05",
                     "[-3,0,2]", lunch, 3);
    /* 11:00, inside: kept */
    s_tenant (s_fx.key_a, SP, hours, "11:00", "[-3,0,3]");
    const s_want_t inside[] = {{-3, "pending", "2026-12-02 11:00"},
                               {0, "pending", "2026-12-07 10:00"},
                               {2, "pending", "2026-12-07 11:00"}};
    s_create_expect (s_fx.key_a, SP, "BH-3", "+5511998762003", "2026-12-05",
                     "[-3,0,2]", inside, 3);
    /* 18:00, the end is exclusive: the next morning */
    s_tenant (s_fx.key_a, SP, hours, "18:00", "[-3,0,3]");
    const s_want_t closing[] = {{-3, "pending", "2026-12-03 10:00"},
                                {0, "pending", "2026-12-07 10:00"},
                                {2, "pending", "2026-12-08 10:00"}};
    s_create_expect (s_fx.key_a, SP, "BH-4", "+5511998762004", "2026-12-05",
                     "[-3,0,2]", closing, 3);
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
}

static void
test_a_late_upload_collapses_past_reminders_into_one_sent_now (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    /* Thursday 2026-12-10, 11:00: 12-02, 12-05 and 12-08 are past */
    s_set_now ("2026-12-10 11:00", SP);
    const s_want_t late[] = {{-3, "skipped", "2026-12-02 09:00"},
                             {0, "skipped", "2026-12-05 09:00"},
                             {3, "pending", NULL},
                             {7, "pending", "2026-12-12 09:00"}};
    long long id = s_create_expect (s_fx.key_a, SP, "LATE-1", "+5511998763001",
                                    "2026-12-05", "[-3,0,3,7]", late, 4);
    /* the skipped ones say why in their history */
    char text[24];
    snprintf (text, sizeof text, "%lld", id);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m JOIN message_history h"
                   "    ON h.message_id = m.id"
                   " WHERE m.billing_cycle_id = $1::bigint"
                   "   AND h.status = 'skipped' AND h.detail <> ''",
                   text, NULL),
        2);

    /* every day past: the latest is sent now, the cycle stays active */
    const s_want_t all_past[] = {{-3, "skipped", "2026-12-02 09:00"},
                                 {0, "pending", NULL}};
    s_create_expect (s_fx.key_a, SP, "LATE-2", "+5511998763002", "2026-12-05",
                     "[-3,0]", all_past, 2);

    /* today's reminder already past its time is sent now, yesterday's
       skipped, tomorrow's normal */
    const s_want_t today_past[] = {{-1, "skipped", "2026-12-09 09:00"},
                                   {0, "pending", NULL},
                                   {1, "pending", "2026-12-11 09:00"}};
    s_create_expect (s_fx.key_a, SP, "LATE-3", "+5511998763003", "2026-12-10",
                     "[-1,0,1]", today_past, 3);

    /* a reminder later today keeps its time; yesterday's is skipped */
    s_tenant (s_fx.key_a, SP, "null", "15:00", "[-3,0,3]");
    const s_want_t later_today[] = {{-1, "skipped", "2026-12-09 15:00"},
                                    {0, "pending", "2026-12-10 15:00"}};
    s_create_expect (s_fx.key_a, SP, "LATE-4", "+5511998763004", "2026-12-10",
                     "[-1,0]", later_today, 2);
    /* one past day alone is not skipped: it is the latest, sent now */
    const s_want_t one_past[] = {{-2, "pending", NULL},
                                 {5, "pending", "2026-12-16 15:00"}};
    s_create_expect (s_fx.key_a, SP, "LATE-5", "+5511998763005", "2026-12-11",
                     "[-2,5]", one_past, 2);

    /* "today" is the tenant's: at 23:30 in São Paulo it is already the
       next day in UTC, yet today's reminder is not past */
    s_set_now ("2026-12-10 22:30", SP);
    s_tenant (s_fx.key_a, SP, "null", "23:45", "[-3,0,3]");
    const s_want_t local_today[] = {{-1, "skipped", "2026-12-09 23:45"},
                                    {0, "pending", "2026-12-10 23:45"},
                                    {1, "pending", "2026-12-11 23:45"}};
    s_create_expect (s_fx.key_a, SP, "LATE-6", "+5511998763006", "2026-12-10",
                     "[-1,0,1]", local_today, 3);
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
}

static void
test_a_late_upload_outside_business_hours_waits_for_the_opening (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, WEEKDAYS_10_18, "09:00", "[-3,0,3]");
    /* Thursday 20:00: the kept reminder goes out Friday 10:00; skipped
       ones record the reminder time of their own day, unmoved */
    s_set_now ("2026-12-10 20:00", SP);
    const s_want_t evening[] = {{-3, "skipped", "2026-12-02 09:00"},
                                {0, "skipped", "2026-12-05 09:00"},
                                {3, "pending", "2026-12-11 10:00"}};
    s_create_expect (s_fx.key_a, SP, "LATEBH-1", "+5511998764001", "2026-12-05",
                     "[-3,0,3]", evening, 3);
    /* Saturday 11:00: Monday 10:00 */
    s_set_now ("2026-12-12 11:00", SP);
    const s_want_t weekend[] = {{0, "skipped", "2026-12-05 09:00"},
                                {3, "pending", "2026-12-14 10:00"}};
    s_create_expect (s_fx.key_a, SP, "LATEBH-2", "+5511998764002", "2026-12-05",
                     "[0,3]", weekend, 2);
    /* Thursday 08:00: today's 09:00 is ahead but closed: 10:00 */
    s_set_now ("2026-12-10 08:00", SP);
    const s_want_t morning[] = {{-1, "skipped", "2026-12-09 09:00"},
                                {0, "pending", "2026-12-10 10:00"}};
    s_create_expect (s_fx.key_a, SP, "LATEBH-3", "+5511998764003", "2026-12-10",
                     "[-1,0]", morning, 2);
    /* Thursday 15:00, inside: the kept reminder goes now */
    s_set_now ("2026-12-10 15:00", SP);
    const s_want_t open[] = {{-2, "skipped", "2026-12-08 09:00"},
                             {-1, "pending", NULL}};
    s_create_expect (s_fx.key_a, SP, "LATEBH-4", "+5511998764004", "2026-12-10",
                     "[-2,-1]", open, 2);
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
}

static void
test_daylight_saving_and_a_window_across_midnight_in_santiago (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    /* weekdays 08-18, and Saturday night into Sunday */
    const char *hours =
        "{\"mon\":[[\"08:00\",\"18:00\"]],\"tue\":[[\"08:00\",\"18:00\"]],"
        "\"wed\":[[\"08:00\",\"18:00\"]],\"thu\":[[\"08:00\",\"18:00\"]],"
        "\"fri\":[[\"08:00\",\"18:00\"]],\"sat\":[[\"22:00\",\"24:00\"]],"
        "\"sun\":[[\"00:00\",\"02:00\"]]}";
    s_tenant (s_fx.key_s, SCL, hours, "09:00", "[-3,0,3]");
    s_set_now ("2026-08-20 12:00", SCL);

    /* Santiago moves from -04 to -03 at 2026-09-06 00:00: the same local
       09:00 is 13:00Z on Friday 09-04 and 12:00Z on Monday 09-07 */
    const s_want_t spring[] = {{-1, "pending", "2026-09-04 09:00"},
                               {0, "pending", "2026-09-05 22:00"},
                               {1, "pending", "2026-09-07 08:00"},
                               {2, "pending", "2026-09-07 09:00"}};
    s_create_expect (s_fx.key_s, SCL, "DST-1", "+56 9 6123 4001", "2026-09-05",
                     "[-1,0,1,2]", spring, 4);
    json_t *doc = s_get (s_fx.key_s, "DST-1");
    json_t *ms = json_object_get (doc, "messages");
    /* the offsets themselves, literally: the test's premise */
    assert_string_equal (rcd_test_str (json_array_get (ms, 0), "send_at"),
                         "2026-09-04T13:00:00.000Z");
    assert_string_equal (rcd_test_str (json_array_get (ms, 1), "send_at"),
                         "2026-09-06T02:00:00.000Z");
    assert_string_equal (rcd_test_str (json_array_get (ms, 2), "send_at"),
                         "2026-09-07T11:00:00.000Z");
    assert_string_equal (rcd_test_str (json_array_get (ms, 3), "send_at"),
                         "2026-09-07T12:00:00.000Z");
    json_decref (doc);

    /* back from -03 to -04 at 2027-04-04 00:00 (to 04-03 23:00) */
    const s_want_t autumn[] = {{-1, "pending", "2027-04-02 09:00"},
                               {0, "pending", "2027-04-03 22:00"},
                               {2, "pending", "2027-04-05 09:00"}};
    s_create_expect (s_fx.key_s, SCL, "DST-2", "+56 9 6123 4002", "2027-04-03",
                     "[-1,0,2]", autumn, 3);
    doc = s_get (s_fx.key_s, "DST-2");
    ms = json_object_get (doc, "messages");
    assert_string_equal (rcd_test_str (json_array_get (ms, 0), "send_at"),
                         "2027-04-02T12:00:00.000Z");
    assert_string_equal (rcd_test_str (json_array_get (ms, 1), "send_at"),
                         "2027-04-04T01:00:00.000Z");
    assert_string_equal (rcd_test_str (json_array_get (ms, 2), "send_at"),
                         "2027-04-05T13:00:00.000Z");
    json_decref (doc);

    /* the window across midnight, 2026-10-09 Friday .. 10-12 Monday:
       01:00 is open only on Sunday */
    s_tenant (s_fx.key_s, SCL, hours, "01:00", "[-3,0,3]");
    const s_want_t one_am[] = {{-1, "pending", "2026-10-09 08:00"},
                               {0, "pending", "2026-10-10 22:00"},
                               {1, "pending", "2026-10-11 01:00"},
                               {2, "pending", "2026-10-12 08:00"}};
    s_create_expect (s_fx.key_s, SCL, "MID-1", "+56 9 6123 4003", "2026-10-10",
                     "[-1,0,1,2]", one_am, 4);
    /* 23:30 is open only on Saturday */
    s_tenant (s_fx.key_s, SCL, hours, "23:30", "[-3,0,3]");
    const s_want_t late_night[] = {{-1, "pending", "2026-10-10 22:00"},
                                   {0, "pending", "2026-10-10 23:30"},
                                   {1, "pending", "2026-10-12 08:00"}};
    s_create_expect (s_fx.key_s, SCL, "MID-2", "+56 9 6123 4004", "2026-10-10",
                     "[-1,0,1]", late_night, 3);
    /* late uploads around the window: Saturday 21:00 waits for 22:00;
       Saturday 23:50 goes now; Sunday 03:00 waits for Monday 08:00 */
    s_tenant (s_fx.key_s, SCL, hours, "01:00", "[-3,0,3]");
    s_set_now ("2026-10-10 21:00", SCL);
    const s_want_t sat_evening[] = {{-1, "skipped", "2026-10-09 01:00"},
                                    {0, "pending", "2026-10-10 22:00"}};
    s_create_expect (s_fx.key_s, SCL, "MID-3", "+56 9 6123 4005", "2026-10-10",
                     "[-1,0]", sat_evening, 2);
    s_set_now ("2026-10-10 23:50", SCL);
    const s_want_t sat_night[] = {{0, "pending", NULL}};
    s_create_expect (s_fx.key_s, SCL, "MID-4", "+56 9 6123 4006", "2026-10-10",
                     "[0]", sat_night, 1);
    s_set_now ("2026-10-11 03:00", SCL);
    const s_want_t sun_night[] = {{-1, "skipped", "2026-10-10 01:00"},
                                  {0, "pending", "2026-10-12 08:00"}};
    s_create_expect (s_fx.key_s, SCL, "MID-5", "+56 9 6123 4007", "2026-10-11",
                     "[-1,0]", sun_night, 2);
}

/*  --- validation --- */

static void
test_due_dates_beyond_one_year_are_refused (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    /* 23:00 on 2026-06-15 in São Paulo is 2026-06-16 in UTC: the
       tenant's today counts */
    const struct {
        const char *now, *today;
    } days[] = {
        {"2026-06-15 23:00", "2026-06-15"},
        {"2028-02-29 12:00", "2028-02-29"}, /* a year on: 2029-02-28 */
    };
    char body[2048], ext[64];
    int n = 0;
    for (size_t d = 0; d < 2; d++) {
        s_set_now (days[d].now, SP);
        const char *q = "SELECT (($1::date + $2::interval)::date)::text";
        char *year_on = s_sql (q, days[d].today, "1 year");
        char *after = s_sql (q, days[d].today, "1 year 1 day");
        char *year_ago = s_sql (q, days[d].today, "-1 year");
        char *before = s_sql ("SELECT (($1::date - interval '1 year')::date"
                              " - 1)::text",
                              days[d].today, NULL);
        const char *ok[] = {year_on, year_ago};
        for (size_t i = 0; i < 2; i++) {
            snprintf (ext, sizeof ext, "RANGE-%d", n++);
            json_decref (s_create (s_fx.key_a, ext, "+5511998765001", ok[i],
                                   NULL, NULL));
        }
        const char *bad[] = {after, before};
        s_rows_t rows = s_rows ();
        for (size_t i = 0; i < 2; i++) {
            snprintf (ext, sizeof ext, "RANGE-%d", n++);
            s_cycle_json (body, sizeof body, ext, "+5511998765001", bad[i],
                          NULL, NULL);
            s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a, body,
                            "invalid_field", "due_date");
        }
        s_assert_unchanged (rows);
        free (year_on);
        free (after);
        free (year_ago);
        free (before);
    }
    /* the first day's limits, literally */
    s_set_now ("2026-06-15 23:00", SP);
    s_rows_t rows = s_rows ();
    s_cycle_json (body, sizeof body, "RANGE-X", "+5511998765001", "2027-06-16",
                  NULL, NULL);
    s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a, body,
                    "invalid_field", "due_date");
    s_assert_unchanged (rows);
    json_decref (s_create (s_fx.key_a, "RANGE-Y", "+5511998765001",
                           "2027-06-15", NULL, NULL));
}

/*  Sets member path ("a" or "a.b") of obj to the JSON value (NULL:
    removes it). */
static void
s_mutate (json_t *obj, const char *path, const char *value)
{
    const char *dot = strchr (path, '.');
    if (dot) {
        char head[64];
        snprintf (head, sizeof head, "%.*s", (int)(dot - path), path);
        obj = json_object_get (obj, head);
        path = dot + 1;
    }
    assert_true (json_is_object (obj));
    if (!value) {
        json_object_del (obj, path);
        return;
    }
    json_error_t jerr;
    json_t *v = json_loads (value, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg ("bad test value %s: %s", value, jerr.text);
    json_object_set_new (obj, path, v);
}

/*  A mutation of the base cycle and the error it must get. */
typedef struct {
    const char *path, *value, *code, *field;
} s_bad_t;

static const s_bad_t s_bad[] = {
    {"external_billing_id", NULL, "missing_field", "external_billing_id"},
    {"external_billing_id", "null", "missing_field", "external_billing_id"},
    {"external_billing_id", "\"\"", "invalid_field", "external_billing_id"},
    {"external_billing_id", "20260001", "invalid_field", "external_billing_id"},
    {"external_billing_id", "\"INV/2026/1\"", "invalid_field",
     "external_billing_id"},
    {"external_billing_id", "\"INV\\n1\"", "invalid_field",
     "external_billing_id"},
    {"external_billing_id", "\"INV\\t1\"", "invalid_field",
     "external_billing_id"},
    {"contact", NULL, "missing_field", "contact"},
    {"contact", "null", "missing_field", "contact"},
    {"contact", "\"+5511998766001\"", "invalid_field", "contact"},
    {"contact", "[\"+5511998766001\"]", "invalid_field", "contact"},
    {"contact", "{}", "missing_field", "contact.phone"},
    {"contact", "{\"name\":\"Ana\"}", "missing_field", "contact.phone"},
    {"contact.phone", "null", "missing_field", "contact.phone"},
    {"contact.phone", "\"\"", "invalid_phone", "contact.phone"},
    {"contact.phone", "\"abc\"", "invalid_phone", "contact.phone"},
    {"contact.phone", "\"123\"", "invalid_phone", "contact.phone"},
    {"contact.phone", "5511998766001", "invalid_field", "contact.phone"},
    {"contact.phone", "5.511998766001E12", "invalid_field", "contact.phone"},
    {"contact.name", "\"\"", "invalid_field", "contact.name"},
    {"contact.name", "42", "invalid_field", "contact.name"},
    {"contact.name", "\"Ana\\nMaria\"", "invalid_field", "contact.name"},
    {"contact.email", "\"ana@example.com\"", "invalid_field", "contact.email"},
    {"amount_cents", NULL, "missing_field", "amount_cents"},
    {"amount_cents", "null", "missing_field", "amount_cents"},
    {"amount_cents", "-15990", "invalid_field", "amount_cents"},
    {"amount_cents", "0", "invalid_field", "amount_cents"},
    {"amount_cents", "159.9", "invalid_field", "amount_cents"},
    {"amount_cents", "15990.0", "invalid_field", "amount_cents"},
    {"amount_cents", "1.599E4", "invalid_field", "amount_cents"},
    {"amount_cents", "\"159,90\"", "invalid_field", "amount_cents"},
    {"amount_cents", "\"15990\"", "invalid_field", "amount_cents"},
    {"amount_cents", "\"\"", "invalid_field", "amount_cents"},
    {"amount_cents", "true", "invalid_field", "amount_cents"},
    {"amount_cents", "[15990]", "invalid_field", "amount_cents"},
    {"amount_cents", "100000000001", "invalid_field", "amount_cents"},
    {"currency", "\"USD\"", "invalid_field", "currency"},
    {"currency", "\"brl\"", "invalid_field", "currency"},
    {"currency", "\"R$\"", "invalid_field", "currency"},
    {"currency", "\"\"", "invalid_field", "currency"},
    {"currency", "986", "invalid_field", "currency"},
    {"due_date", NULL, "missing_field", "due_date"},
    {"due_date", "null", "missing_field", "due_date"},
    {"due_date", "\"\"", "invalid_field", "due_date"},
    {"due_date", "\"05/12/2026\"", "invalid_field", "due_date"},
    {"due_date", "\"12/05/2026\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-12-5\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-2-05\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-02-30\"", "invalid_field", "due_date"},
    {"due_date", "\"2027-02-29\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-13-01\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-00-10\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-12-00\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-12-05T00:00:00Z\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-12-05 00:00:00\"", "invalid_field", "due_date"},
    {"due_date", "\" 2026-12-05\"", "invalid_field", "due_date"},
    {"due_date", "\"2026-12-05 \"", "invalid_field", "due_date"},
    {"due_date", "\"20261205\"", "invalid_field", "due_date"},
    {"due_date", "\"2026/12/05\"", "invalid_field", "due_date"},
    {"due_date", "\"+2026-12-05\"", "invalid_field", "due_date"},
    {"due_date", "46361", "invalid_field", "due_date"},
    {"due_date", "46361.0", "invalid_field", "due_date"},
    {"due_date", "\"46361\"", "invalid_field", "due_date"},
    {"due_date", "\"-046361\"", "invalid_field", "due_date"},
    {"offsets_days", "\"-3,0,3\"", "invalid_field", "offsets_days"},
    {"offsets_days", "\"[-3,0,3]\"", "invalid_field", "offsets_days"},
    {"offsets_days", "3", "invalid_field", "offsets_days"},
    {"offsets_days", "{\"a\":1}", "invalid_field", "offsets_days"},
    {"offsets_days", "[]", "invalid_field", "offsets_days"},
    {"offsets_days", "[1,2,3,4,5,6,7,8,9,10,11]", "invalid_field",
     "offsets_days"},
    {"offsets_days", "[-3,0.5]", "invalid_field", "offsets_days[1]"},
    {"offsets_days", "[-3.0]", "invalid_field", "offsets_days[0]"},
    {"offsets_days", "[\"-3\"]", "invalid_field", "offsets_days[0]"},
    {"offsets_days", "[null]", "invalid_field", "offsets_days[0]"},
    {"offsets_days", "[0,true]", "invalid_field", "offsets_days[1]"},
    {"offsets_days", "[0,[1]]", "invalid_field", "offsets_days[1]"},
    {"offsets_days", "[-3,0,-3]", "invalid_field", "offsets_days[2]"},
    {"offsets_days", "[1,1]", "invalid_field", "offsets_days[1]"},
    {"offsets_days", "[366]", "invalid_field", "offsets_days[0]"},
    {"offsets_days", "[0,-366]", "invalid_field", "offsets_days[1]"},
    {"template", "\"\"", "invalid_field", "template"},
    {"template", "5", "invalid_field", "template"},
    {"template", "[\"generico\"]", "invalid_field", "template"},
    {"vars", "\"plan=gold\"", "invalid_field", "vars"},
    {"vars", "[1]", "invalid_field", "vars"},
    {"vars", "{\"plan\":[1]}", "invalid_field", "vars.plan"},
    {"vars", "{\"plan\":null}", "invalid_field", "vars.plan"},
    {"vars", "{\"plan\":{\"a\":1}}", "invalid_field", "vars.plan"},
    {"vars", "{\"my plan\":\"gold\"}", "invalid_field", "vars"},
    {"customer_name", "\"Ana\"", "invalid_field", "customer_name"},
    {"Amount_cents", "15990", "invalid_field", "Amount_cents"},
    {"id", "1", "invalid_field", "id"},
    {"status", "\"active\"", "invalid_field", "status"},
};

/*  The valid base of the bad-input cases (the clock is at 2026-11-01). */
static json_t *
s_base (const char *ext)
{
    json_t *base = json_loads (
        "{\"external_billing_id\":\"BAD-0\","
        "\"contact\":{\"phone\":\"+5511998766001\",\"name\":\"Ana\"},"
        "\"amount_cents\":15990,\"currency\":\"BRL\","
        "\"due_date\":\"2026-12-05\",\"template\":\"generico\","
        "\"vars\":{\"plan\":\"gold\"},\"offsets_days\":[-3,0,3]}",
        0, NULL);
    assert_non_null (base);
    json_object_set_new (base, "external_billing_id", json_string (ext));
    return base;
}

static void
test_bad_input_names_the_field_and_stores_nothing (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    char long_text[260];
    memset (long_text, 'x', 201);
    long_text[201] = '\0';
    char long_id[270], long_name[270], long_template[120];
    snprintf (long_id, sizeof long_id, "\"%s\"", long_text);
    snprintf (long_name, sizeof long_name, "\"%s\"", long_text);
    snprintf (long_template, sizeof long_template, "\"%.101s\"", long_text);
    const s_bad_t more[] = {
        {"external_billing_id", long_id, "invalid_field",
         "external_billing_id"},
        {"contact.name", long_name, "invalid_field", "contact.name"},
        {"template", long_template, "invalid_field", "template"},
    };
    size_t nbad = sizeof s_bad / sizeof s_bad[0];
    size_t n = nbad + sizeof more / sizeof more[0];

    s_rows_t before = s_rows ();
    for (size_t i = 0; i < n; i++) {
        const s_bad_t *c = i < nbad ? &s_bad[i] : &more[i - nbad];
        json_t *body = s_base ("BAD-1");
        s_mutate (body, c->path, c->value);
        char *text = json_dumps (body, JSON_COMPACT);
        json_decref (body);
        s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a, text,
                        c->code, c->field);
        free (text);
    }
    /* bodies that are no JSON object at all */
    const char *garbage[] = {
        "",
        "[]",
        "\"INV-1\"",
        "{\"external_billing_id\":\"BAD-1\"",
        "external_billing_id,amount_cents\nBAD-1,15990\n",
        "{\"external_billing_id\":\"BAD-1\",\"external_billing_id\":\"B\"}",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a,
                        garbage[i], "invalid_json", NULL);
    s_assert_unchanged (before);

    /* the base itself, and the limits just inside, are accepted */
    json_t *body = s_base ("BAD-OK-1");
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    json_decref (
        s_expect (201, "POST", "/v1/billing-cycles", s_fx.key_a, text));
    free (text);
    memset (long_text, 'x', 200);
    long_text[200] = '\0';
    body = s_base (long_text);
    s_mutate (body, "amount_cents", "100000000000");
    s_mutate (body, "offsets_days", "[-365,1,2,3,4,5,6,7,8,365]");
    s_mutate (body, "currency", "null");
    s_mutate (body, "contact.name", "null");
    text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    json_t *a = s_expect (201, "POST", "/v1/billing-cycles", s_fx.key_a, text);
    free (text);
    assert_int_equal (json_array_size (json_object_get (a, "messages")), 10);
    json_decref (a);
}

static void
test_template_errors_store_nothing (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_set_now ("2026-11-01 12:00", SP);
    s_rows_t before = s_rows ();
    char body[2048];
    /* no template named, none generic */
    s_cycle_json (body, sizeof body, "TPL-1", "+5511998767001", "2026-12-05",
                  NULL, NULL);
    s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_n, body,
                    "missing_field", "template");
    /* an unknown one named, none generic */
    s_cycle_json (body, sizeof body, "TPL-1", "+5511998767001", "2026-12-05",
                  NULL, "\"template\":\"nao-existe\"");
    s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_n, body,
                    "invalid_field", "template");
    /* a placeholder without a value */
    json_decref (s_expect (200, "PUT", "/v1/templates/com-plano", s_fx.key_a,
                           "{\"variations\":[\"{{name}}: plano {{plan}}\"]}"));
    s_cycle_json (body, sizeof body, "TPL-1", "+5511998767001", "2026-12-05",
                  NULL, "\"template\":\"com-plano\"");
    s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a, body,
                    "invalid_field", "vars.plan");
    /* no name anywhere: the built-in has no value */
    s_expect_error (400, "POST", "/v1/billing-cycles", s_fx.key_a,
                    "{\"external_billing_id\":\"TPL-1\","
                    "\"contact\":{\"phone\":\"+5511998767001\"},"
                    "\"amount_cents\":15990,\"due_date\":\"2026-12-05\","
                    "\"template\":\"com-plano\",\"vars\":{\"plan\":\"x\"}}",
                    "invalid_field", "vars.name");
    s_assert_unchanged (before);

    /* in a batch: that item, named; the others stored */
    json_t *a =
        s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a,
                  "{\"items\":["
                  "{\"external_billing_id\":\"TPL-2\",\"contact\":{\"phone\":"
                  "\"+5511998767002\",\"name\":\"A\"},\"amount_cents\":100,"
                  "\"due_date\":\"2026-12-05\",\"template\":\"com-plano\","
                  "\"vars\":{\"plan\":\"p\"}},"
                  "{\"external_billing_id\":\"TPL-3\",\"contact\":{\"phone\":"
                  "\"+5511998767003\",\"name\":\"B\"},\"amount_cents\":100,"
                  "\"due_date\":\"2026-12-05\",\"template\":\"com-plano\"},"
                  "{\"external_billing_id\":\"TPL-4\",\"contact\":{\"phone\":"
                  "\"+5511998767004\"},\"amount_cents\":100,"
                  "\"due_date\":\"2026-12-05\"}]}");
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 3);
    assert_true (s_int (json_array_get (items, 0), "id") > 0);
    rcd_test_assert_api_error (json_array_get (items, 1), "invalid_field",
                               "items[1].vars.plan");
    assert_true (s_int (json_array_get (items, 2), "id") > 0);
    json_decref (a);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 2);
    assert_int_equal (after.messages, before.messages + 6);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM billing_cycles"
                                 " WHERE external_billing_id = 'TPL-3'",
                                 NULL, NULL),
                      0);
    json_t *doc = s_get (s_fx.key_a, "TPL-2");
    assert_string_equal (
        rcd_test_str (json_array_get (json_object_get (doc, "messages"), 0),
                      "text"),
        "A: plano p");
    json_decref (doc);
}

static void
test_a_batch_stores_good_items_and_answers_bad_ones (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    /* every bad case as an item, a good item between each two */
    size_t nbad = sizeof s_bad / sizeof s_bad[0];
    json_t *items = json_array ();
    for (size_t i = 0; i < nbad; i++) {
        char ext[32];
        snprintf (ext, sizeof ext, "MIX-GOOD-%zu", i);
        json_array_append_new (items, s_base (ext));
        snprintf (ext, sizeof ext, "MIX-BAD-%zu", i);
        json_t *bad = s_base (ext);
        s_mutate (bad, s_bad[i].path, s_bad[i].value);
        json_array_append_new (items, bad);
    }
    /* items that are no object */
    json_array_append_new (items, json_string ("MIX-1"));
    json_array_append_new (items, json_null ());
    json_array_append_new (items, json_array ());
    json_t *req = json_pack ("{s:o}", "items", items);
    char *text = json_dumps (req, JSON_COMPACT);
    json_decref (req);
    s_rows_t before = s_rows ();
    json_t *a =
        s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, text);
    free (text);
    json_t *answers = json_object_get (a, "items");
    assert_int_equal (json_array_size (answers), 2 * nbad + 3);
    for (size_t i = 0; i < 2 * nbad + 3; i++) {
        json_t *item = json_array_get (answers, i);
        assert_int_equal (s_int (item, "index"), i);
        char field[96];
        if (i >= 2 * nbad) {
            snprintf (field, sizeof field, "items[%zu]", i);
            rcd_test_assert_api_error (item, "invalid_field", field);
            continue;
        }
        if (i % 2 == 0) {
            assert_null (json_object_get (item, "error"));
            assert_true (s_int (item, "id") > 0);
            assert_string_equal (rcd_test_str (item, "status"), "active");
            assert_int_equal (
                json_array_size (json_object_get (item, "messages")), 3);
            continue;
        }
        snprintf (field, sizeof field, "items[%zu].%s", i, s_bad[i / 2].field);
        rcd_test_assert_api_error (item, s_bad[i / 2].code, field);
        assert_null (json_object_get (item, "id"));
    }
    json_decref (a);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + (long long)nbad);
    assert_int_equal (after.messages, before.messages + 3 * (long long)nbad);
    assert_int_equal (after.history, before.history + 3 * (long long)nbad);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM billing_cycles"
                                 " WHERE external_billing_id LIKE 'MIX-BAD-%'",
                                 NULL, NULL),
                      0);

    /* the batch body itself */
    before = s_rows ();
    s_expect_error (400, "POST", "/v1/billing-cycles/batch", s_fx.key_a, "{}",
                    "missing_field", "items");
    s_expect_error (400, "POST", "/v1/billing-cycles/batch", s_fx.key_a,
                    "{\"items\":{}}", "invalid_field", "items");
    s_expect_error (400, "POST", "/v1/billing-cycles/batch", s_fx.key_a,
                    "[{\"external_billing_id\":\"X\"}]", "invalid_json", NULL);
    a = s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a,
                  "{\"items\":[]}");
    assert_int_equal (json_array_size (json_object_get (a, "items")), 0);
    json_decref (a);

    /* 1001 items: refused whole; 1000: stored in chunks, in order */
    items = json_array ();
    for (int i = 0; i < 1001; i++) {
        char ext[32], phone[32];
        snprintf (ext, sizeof ext, "BULK-%04d", i);
        snprintf (phone, sizeof phone, "+55119%08d", 70000000 + i);
        json_t *item = s_base (ext);
        json_object_set_new (json_object_get (item, "contact"), "phone",
                             json_string (phone));
        json_array_append_new (items, item);
    }
    req = json_pack ("{s:O}", "items", items);
    text = json_dumps (req, JSON_COMPACT);
    json_decref (req);
    s_expect_error (413, "POST", "/v1/billing-cycles/batch", s_fx.key_a, text,
                    "payload_too_large", "items");
    free (text);
    s_assert_unchanged (before);
    json_array_remove (items, 1000);
    req = json_pack ("{s:o}", "items", items);
    text = json_dumps (req, JSON_COMPACT);
    json_decref (req);
    a = s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, text);
    free (text);
    answers = json_object_get (a, "items");
    assert_int_equal (json_array_size (answers), 1000);
    for (size_t i = 0; i < 1000; i++) {
        json_t *item = json_array_get (answers, i);
        char ext[32];
        snprintf (ext, sizeof ext, "BULK-%04zu", i);
        assert_int_equal (s_int (item, "index"), i);
        assert_null (json_object_get (item, "error"));
        assert_string_equal (rcd_test_str (item, "external_billing_id"), ext);
        assert_int_equal (json_array_size (json_object_get (item, "messages")),
                          3);
    }
    json_decref (a);
    after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 1000);
    assert_int_equal (after.messages, before.messages + 3000);
    assert_int_equal (after.contacts, before.contacts + 1000);
    /* each answer's id is the cycle with that external id and phone */
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM billing_cycles b JOIN messages m"
                   "    ON m.billing_cycle_id = b.id"
                   " WHERE b.external_billing_id LIKE 'BULK-%'"
                   "   AND m.to_phone = '+55119'"
                   "       || (70000000 + substr(b.external_billing_id, 6)"
                   "                       ::int)::text",
                   NULL, NULL),
        3000);
}

/*  --- uniqueness, cancel, completion --- */

static void
test_one_active_cycle_per_external_id (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    json_t *a = s_create (s_fx.key_a, "DUP-1", "+5511998768001", "2026-12-05",
                          NULL, NULL);
    long long first = s_int (a, "id");
    json_decref (a);
    json_decref (s_expect (200, "GET", "/v1/contacts/%2B5511998768001",
                           s_fx.key_a, NULL));

    /* a second upload of the active id: 409, nothing stored, the contact
       untouched */
    s_rows_t before = s_rows ();
    s_expect_error (409, "POST", "/v1/billing-cycles", s_fx.key_a,
                    "{\"external_billing_id\":\"DUP-1\",\"contact\":{\"phone\":"
                    "\"+5511998768001\",\"name\":\"Outro Nome\"},"
                    "\"amount_cents\":999,\"due_date\":\"2026-12-20\"}",
                    "conflict", "external_billing_id");
    s_expect_error (409, "POST", "/v1/billing-cycles", s_fx.key_a,
                    "{\"external_billing_id\":\"DUP-1\",\"contact\":{\"phone\":"
                    "\"+5511998768002\",\"name\":\"Novo\"},"
                    "\"amount_cents\":999,\"due_date\":\"2026-12-20\"}",
                    "conflict", "external_billing_id");
    s_assert_unchanged (before);
    json_t *contact = s_expect (200, "GET", "/v1/contacts/%2B5511998768001",
                                s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (contact, "name"), "Cliente");
    json_decref (contact);
    json_t *doc = s_get (s_fx.key_a, "DUP-1");
    assert_int_equal (s_int (doc, "id"), first);
    assert_int_equal (s_int (doc, "amount_cents"), 15990);
    json_decref (doc);
    /* another tenant has its own ids */
    json_decref (s_create (s_fx.key_s, "DUP-1", "+5511998768001", "2026-12-05",
                           NULL, NULL));

    /* a cancelled id can be used again; GET shows the active one */
    json_decref (s_expect (200, "POST", "/v1/billing-cycles/DUP-1/cancel",
                           s_fx.key_a, NULL));
    a = s_create (s_fx.key_a, "DUP-1", "+5511998768001", "2026-12-06", NULL,
                  NULL);
    long long second = s_int (a, "id");
    json_decref (a);
    assert_true (second != first);
    doc = s_get (s_fx.key_a, "DUP-1");
    assert_int_equal (s_int (doc, "id"), second);
    assert_string_equal (rcd_test_str (doc, "status"), "active");
    assert_string_equal (rcd_test_str (doc, "due_date"), "2026-12-06");
    json_decref (doc);

    /* a complete one too */
    a = s_create (s_fx.key_a, "DUP-2", "+5511998768003", "2026-12-05", "[0]",
                  NULL);
    long long message =
        s_int (json_array_get (json_object_get (a, "messages"), 0), "id");
    json_decref (a);
    s_move (message, "sent");
    s_assert_cycle (s_fx.key_a, "DUP-2", "complete", true);
    json_decref (s_create (s_fx.key_a, "DUP-2", "+5511998768003", "2026-12-05",
                           "[0]", NULL));
    s_assert_cycle (s_fx.key_a, "DUP-2", "active", false);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM billing_cycles"
                                 " WHERE external_billing_id = 'DUP-2'",
                                 NULL, NULL),
                      2);

    /* in one batch: later repeats and the active id are answered 409 */
    before = s_rows ();
    char b0[512], b1[512], b2[512], b3[512], b4[512], body[4096];
    s_cycle_json (b0, sizeof b0, "DUP-3", "+5511998768004", "2026-12-05", NULL,
                  NULL);
    s_cycle_json (b1, sizeof b1, "DUP-4", "+5511998768005", "2026-12-05", NULL,
                  NULL);
    s_cycle_json (b2, sizeof b2, "DUP-3", "+5511998768006", "2026-12-07", NULL,
                  NULL);
    s_cycle_json (b3, sizeof b3, "DUP-1", "+5511998768007", "2026-12-05", NULL,
                  NULL);
    s_cycle_json (b4, sizeof b4, "DUP-3", "+5511998768008", "2026-12-08", NULL,
                  NULL);
    snprintf (body, sizeof body, "{\"items\":[%s,%s,%s,%s,%s]}", b0, b1, b2, b3,
              b4);
    a = s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, body);
    json_t *items = json_object_get (a, "items");
    assert_true (s_int (json_array_get (items, 0), "id") > 0);
    assert_true (s_int (json_array_get (items, 1), "id") > 0);
    rcd_test_assert_api_error (json_array_get (items, 2), "conflict",
                               "items[2].external_billing_id");
    const char *message_text = rcd_test_str (
        json_object_get (json_array_get (items, 2), "error"), "message");
    assert_non_null (strstr (message_text, "items[0]"));
    rcd_test_assert_api_error (json_array_get (items, 3), "conflict",
                               "items[3].external_billing_id");
    rcd_test_assert_api_error (json_array_get (items, 4), "conflict",
                               "items[4].external_billing_id");
    json_decref (a);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 2);
    assert_int_equal (after.messages, before.messages + 6);
    assert_int_equal (after.contacts, before.contacts + 2);
    doc = s_get (s_fx.key_a, "DUP-3");
    assert_string_equal (
        rcd_test_str (json_object_get (doc, "contact"), "phone"),
        "+5511998768004");
    json_decref (doc);
}

/*  One of several concurrent uploads of one external id. */
typedef struct {
    const char *body;
    long status;
} s_race_t;

static void *
s_race (void *arg)
{
    s_race_t *r = arg;
    json_t *a = rcd_test_api (s_fx.ing.port, "POST", "/v1/billing-cycles",
                              s_fx.key_a, r->body, &r->status);
    json_decref (a);
    return NULL;
}

static void
test_concurrent_uploads_of_one_id_store_one_cycle (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    enum { N = 8 };
    char body[1024];
    s_cycle_json (body, sizeof body, "RACE-1", "+5511998769301", "2026-12-05",
                  NULL, NULL);
    pthread_t threads[N];
    s_race_t races[N];
    s_rows_t before = s_rows ();
    for (int i = 0; i < N; i++) {
        races[i] = (s_race_t){body, 0};
        assert_int_equal (pthread_create (&threads[i], NULL, s_race, &races[i]),
                          0);
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        pthread_join (threads[i], NULL);
        assert_true (races[i].status == 201 || races[i].status == 409);
        created += races[i].status == 201;
    }
    assert_int_equal (created, 1);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 1);
    assert_int_equal (after.messages, before.messages + 3);
    assert_int_equal (after.history, before.history + 3);
}

static void
test_cancel_cancels_pending_reminders_once (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-12-10 11:00", SP);
    /* -3 skipped, 3 pending now (then claimed: sending), 7 and 9 pending */
    json_decref (s_create (s_fx.key_a, "CAN-1", "+5511998769001", "2026-12-05",
                           "[-3,3,7,9]", NULL));
    long long skipped = s_reminder (s_fx.key_a, "CAN-1", -3);
    long long sending = s_reminder (s_fx.key_a, "CAN-1", 3);
    long long later = s_reminder (s_fx.key_a, "CAN-1", 7);
    long long last = s_reminder (s_fx.key_a, "CAN-1", 9);
    s_move (sending, "sending");

    s_rows_t before = s_rows ();
    json_t *doc = s_expect (200, "POST", "/v1/billing-cycles/CAN-1/cancel",
                            s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (doc, "status"), "cancelled");
    assert_true (json_is_string (json_object_get (doc, "cancelled_at")));
    assert_true (json_is_null (json_object_get (doc, "completed_at")));
    json_t *ms = json_object_get (doc, "messages");
    assert_int_equal (json_array_size (ms), 4);
    assert_string_equal (rcd_test_str (json_array_get (ms, 0), "status"),
                         "skipped");
    assert_string_equal (rcd_test_str (json_array_get (ms, 1), "status"),
                         "sending");
    assert_string_equal (rcd_test_str (json_array_get (ms, 2), "status"),
                         "cancelled");
    assert_string_equal (rcd_test_str (json_array_get (ms, 3), "status"),
                         "cancelled");
    assert_non_null (rcd_test_str (json_array_get (ms, 2), "last_error"));
    json_decref (doc);
    /* one history row per cancelled reminder, nothing else */
    s_rows_t after = s_rows ();
    assert_int_equal (after.history, before.history + 2);
    assert_int_equal (after.messages, before.messages);
    char l1[24], l2[24];
    snprintf (l1, sizeof l1, "%lld", later);
    snprintf (l2, sizeof l2, "%lld", last);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM message_history"
                                 " WHERE message_id IN ($1::bigint, $2::bigint)"
                                 "   AND status = 'cancelled'",
                                 l1, l2),
                      2);
    (void)skipped;

    /* a second cancel: 409, nothing changes */
    before = s_rows ();
    s_expect_error (409, "POST", "/v1/billing-cycles/CAN-1/cancel", s_fx.key_a,
                    NULL, "conflict", NULL);
    s_assert_unchanged (before);
    /* the claimed one finishes; the cycle stays cancelled */
    s_move (sending, "sent");
    s_assert_cycle (s_fx.key_a, "CAN-1", "cancelled", false);

    /* unknown, or another tenant's: 404 */
    s_expect_error (404, "POST", "/v1/billing-cycles/NOPE/cancel", s_fx.key_a,
                    NULL, "not_found", NULL);
    s_expect_error (404, "GET", "/v1/billing-cycles/NOPE", s_fx.key_a, NULL,
                    "not_found", NULL);
    s_expect_error (404, "POST", "/v1/billing-cycles/CAN-1/cancel", s_fx.key_n,
                    NULL, "not_found", NULL);
    s_expect_error (404, "GET", "/v1/billing-cycles/CAN-1", s_fx.key_n, NULL,
                    "not_found", NULL);

    /* a complete cycle: 409, stays complete */
    json_t *a = s_create (s_fx.key_a, "CAN-2", "+5511998769002", "2026-12-20",
                          "[0]", NULL);
    long long only =
        s_int (json_array_get (json_object_get (a, "messages"), 0), "id");
    json_decref (a);
    s_move (only, "delivered");
    before = s_rows ();
    s_expect_error (409, "POST", "/v1/billing-cycles/CAN-2/cancel", s_fx.key_a,
                    NULL, "conflict", NULL);
    s_assert_unchanged (before);
    s_assert_cycle (s_fx.key_a, "CAN-2", "complete", true);
}

static void
test_a_cycle_completes_when_its_last_reminder_is_terminal (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    json_decref (s_create (s_fx.key_a, "DONE-1", "+5511998769101", "2026-12-05",
                           "[-3,0,3,5]", NULL));
    long long r[4] = {s_reminder (s_fx.key_a, "DONE-1", -3),
                      s_reminder (s_fx.key_a, "DONE-1", 0),
                      s_reminder (s_fx.key_a, "DONE-1", 3),
                      s_reminder (s_fx.key_a, "DONE-1", 5)};
    s_move (r[0], "sending");
    s_move (r[0], "sent");
    s_assert_cycle (s_fx.key_a, "DONE-1", "active", false);
    s_move (r[1], "failed");
    s_assert_cycle (s_fx.key_a, "DONE-1", "active", false);
    /* the API's own cancel of a message counts like any other move */
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", r[3]);
    json_decref (s_expect (200, "DELETE", path, s_fx.key_a, NULL));
    s_assert_cycle (s_fx.key_a, "DONE-1", "active", false);
    /* moves between open statuses change nothing */
    s_move (r[2], "sending");
    s_move (r[2], "unknown");
    s_move (r[2], "pending");
    s_move (r[2], "sending");
    s_assert_cycle (s_fx.key_a, "DONE-1", "active", false);
    s_move (r[2], "delivered");
    s_assert_cycle (s_fx.key_a, "DONE-1", "complete", true);
    assert_int_equal (s_sql_int ("SELECT open_messages FROM billing_cycles"
                                 " WHERE external_billing_id = 'DONE-1'",
                                 NULL, NULL),
                      0);
    /* a complete cycle cannot be cancelled */
    s_expect_error (409, "POST", "/v1/billing-cycles/DONE-1/cancel", s_fx.key_a,
                    NULL, "conflict", NULL);

    /* a late upload: the skipped ones are not open; the one sent
       completes it */
    s_set_now ("2026-12-10 11:00", SP);
    json_decref (s_create (s_fx.key_a, "DONE-2", "+5511998769102", "2026-12-05",
                           "[-3,0,3]", NULL));
    s_assert_cycle (s_fx.key_a, "DONE-2", "active", false);
    s_move (s_reminder (s_fx.key_a, "DONE-2", 3), "expired");
    s_assert_cycle (s_fx.key_a, "DONE-2", "complete", true);
}

static void
test_the_contact_is_upserted_and_opt_out_blocks_reminders (void **state)
{
    (void)state;
    S_NEEDS_HOOKS ();
    s_tenant (s_fx.key_a, SP, "null", "09:00", "[-3,0,3]");
    s_set_now ("2026-11-01 12:00", SP);
    json_decref (s_expect (200, "PUT", "/v1/templates/nome", s_fx.key_a,
                           "{\"variations\":[\"Oi {{name}} ({{plan}})\"]}"));

    /* a new number becomes a contact with the cycle's name */
    json_decref (s_expect (
        201, "POST", "/v1/billing-cycles", s_fx.key_a,
        "{\"external_billing_id\":\"CT-1\",\"contact\":{\"phone\":"
        "\"(11) 99876-9201\",\"name\":\"Ana Antiga\"},\"amount_cents\":100,"
        "\"due_date\":\"2026-12-05\",\"template\":\"nome\","
        "\"vars\":{\"plan\":\"p\"},\"offsets_days\":[0]}"));
    json_t *c = s_expect (200, "GET", "/v1/contacts/%2B5511998769201",
                          s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (c, "name"), "Ana Antiga");
    json_decref (c);
    /* contact data changing between uploads updates it; vars are the
       contact's own and stay */
    json_decref (s_expect (200, "PUT", "/v1/contacts/%2B5511998769201",
                           s_fx.key_a, "{\"vars\":{\"plan\":\"gold\"}}"));
    json_decref (s_expect (
        201, "POST", "/v1/billing-cycles", s_fx.key_a,
        "{\"external_billing_id\":\"CT-2\",\"contact\":{\"phone\":"
        "\"+5511998769201\",\"name\":\"Ana Nova\"},\"amount_cents\":100,"
        "\"due_date\":\"2026-12-05\",\"template\":\"nome\","
        "\"offsets_days\":[0]}"));
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769201", s_fx.key_a,
                  NULL);
    assert_string_equal (rcd_test_str (c, "name"), "Ana Nova");
    assert_string_equal (rcd_test_str (json_object_get (c, "vars"), "plan"),
                         "gold");
    json_decref (c);
    json_t *doc = s_get (s_fx.key_a, "CT-2");
    assert_string_equal (
        rcd_test_str (json_array_get (json_object_get (doc, "messages"), 0),
                      "text"),
        "Oi Ana Nova (gold)");
    json_decref (doc);
    /* without a name, the stored one stays and is used */
    json_decref (
        s_expect (201, "POST", "/v1/billing-cycles", s_fx.key_a,
                  "{\"external_billing_id\":\"CT-3\",\"contact\":{\"phone\":"
                  "\"+5511998769201\"},\"amount_cents\":100,"
                  "\"due_date\":\"2026-12-05\",\"template\":\"nome\","
                  "\"offsets_days\":[0]}"));
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769201", s_fx.key_a,
                  NULL);
    assert_string_equal (rcd_test_str (c, "name"), "Ana Nova");
    json_decref (c);
    doc = s_get (s_fx.key_a, "CT-3");
    assert_string_equal (
        rcd_test_str (json_array_get (json_object_get (doc, "messages"), 0),
                      "text"),
        "Oi Ana Nova (gold)");
    json_decref (doc);
    /* in one batch the last item's name wins */
    char b0[512], b1[512], body[2048];
    s_cycle_json (b0, sizeof b0, "CT-4", "+5511998769201", "2026-12-05", "[0]",
                  NULL);
    s_cycle_json (b1, sizeof b1, "CT-5", "+5511998769201", "2026-12-05", "[0]",
                  NULL);
    char *named = strstr (b1, "Cliente");
    assert_non_null (named);
    memcpy (named, "Ultimo!", 7);
    snprintf (body, sizeof body, "{\"items\":[%s,%s]}", b0, b1);
    json_decref (
        s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, body));
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769201", s_fx.key_a,
                  NULL);
    assert_string_equal (rcd_test_str (c, "name"), "Ultimo!");
    json_decref (c);
    /* a later item of the batch without a name keeps the earlier one's */
    s_cycle_json (b0, sizeof b0, "CT-6", "+5511998769201", "2026-12-05", "[0]",
                  NULL);
    named = strstr (b0, "Cliente");
    assert_non_null (named);
    memcpy (named, "Do Meio", 7);
    snprintf (body, sizeof body,
              "{\"items\":[%s,{\"external_billing_id\":\"CT-7\","
              "\"contact\":{\"phone\":\"+5511998769201\"},"
              "\"amount_cents\":100,\"due_date\":\"2026-12-05\","
              "\"template\":\"nome\",\"offsets_days\":[0]}]}",
              b0);
    json_t *r =
        s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, body);
    assert_true (json_is_integer (json_object_get (
        json_array_get (json_object_get (r, "items"), 1), "id")));
    json_decref (r);
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769201", s_fx.key_a,
                  NULL);
    assert_string_equal (rcd_test_str (c, "name"), "Do Meio");
    json_decref (c);
    /* a new number named by the batch's first item and unnamed in its
       102nd (another chunk): the name reaches that item's {{name}} */
    size_t cap = 120 * 300, len = 0;
    char *big = malloc (cap);
    assert_non_null (big);
    len += (size_t)snprintf (big + len, cap - len, "{\"items\":[");
    for (int i = 0; i <= 101; i++) {
        char item[512], ext[32], phone[32];
        snprintf (ext, sizeof ext, "CT-BIG-%d", i);
        snprintf (phone, sizeof phone, "+55119987693%02d", i == 101 ? 0 : i);
        s_cycle_json (item, sizeof item, ext, phone, "2026-12-05", "[0]",
                      "\"template\":\"nome\",\"vars\":{\"plan\":\"x\"}");
        if (i == 0)
            memcpy (strstr (item, "Cliente"), "Zuleica", 7);
        if (i == 101) { /* drop the name: "name":"Cliente" -> no member */
            char *n = strstr (item, ",\"name\":\"Cliente\"");
            assert_non_null (n);
            memmove (n, n + 17, strlen (n + 17) + 1);
        }
        len +=
            (size_t)snprintf (big + len, cap - len, "%s%s", i ? "," : "", item);
    }
    snprintf (big + len, cap - len, "]}");
    json_decref (
        s_expect (207, "POST", "/v1/billing-cycles/batch", s_fx.key_a, big));
    free (big);
    doc = s_get (s_fx.key_a, "CT-BIG-101");
    assert_string_equal (
        rcd_test_str (json_array_get (json_object_get (doc, "messages"), 0),
                      "text"),
        "Oi Zuleica (x)");
    json_decref (doc);

    /* opted out: reminders are created blocked, the cycle complete, the
       contact stays opted out with its new name */
    json_decref (s_expect (200, "POST", "/v1/contacts/%2B5511998769202/opt-out",
                           s_fx.key_a, NULL));
    s_rows_t before = s_rows ();
    json_t *a = s_expect (
        201, "POST", "/v1/billing-cycles", s_fx.key_a,
        "{\"external_billing_id\":\"CT-OUT-1\",\"contact\":{\"phone\":"
        "\"+5511998769202\",\"name\":\"Bia\"},\"amount_cents\":100,"
        "\"due_date\":\"2026-12-05\"}");
    assert_string_equal (rcd_test_str (a, "status"), "complete");
    assert_int_equal (s_int (a, "skipped"), 0);
    const s_want_t blocked[] = {{-3, "blocked", "2026-12-02 09:00"},
                                {0, "blocked", "2026-12-05 09:00"},
                                {3, "blocked", "2026-12-08 09:00"}};
    s_assert_reminders (a, SP, blocked, 3, 0, 0);
    json_decref (a);
    doc = s_get (s_fx.key_a, "CT-OUT-1");
    assert_string_equal (rcd_test_str (doc, "status"), "complete");
    assert_true (json_is_string (json_object_get (doc, "completed_at")));
    json_t *m;
    size_t i;
    json_array_foreach (json_object_get (doc, "messages"), i, m)
    {
        assert_string_equal (rcd_test_str (m, "status"), "blocked");
        assert_non_null (rcd_test_str (m, "last_error"));
    }
    json_decref (doc);
    s_rows_t after = s_rows ();
    assert_int_equal (after.cycles, before.cycles + 1);
    assert_int_equal (after.messages, before.messages + 3);
    assert_int_equal (after.history, before.history + 3);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM message_history h JOIN messages m"
                   "    ON m.id = h.message_id"
                   " WHERE m.to_phone = '+5511998769202'"
                   "   AND h.status = 'blocked'",
                   NULL, NULL),
        3);
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769202", s_fx.key_a,
                  NULL);
    assert_true (json_is_true (json_object_get (c, "opted_out")));
    assert_string_equal (rcd_test_str (c, "name"), "Bia");
    json_decref (c);
    /* an opted-out contact never completes a cycle id's reuse wrongly:
       the id is free again at once */
    json_decref (s_expect (
        201, "POST", "/v1/billing-cycles", s_fx.key_a,
        "{\"external_billing_id\":\"CT-OUT-1\",\"contact\":{\"phone\":"
        "\"+5511998769202\"},\"amount_cents\":100,"
        "\"due_date\":\"2026-12-05\"}"));
    /* late and opted out: earlier days skipped, the kept one blocked */
    s_set_now ("2026-12-10 11:00", SP);
    const s_want_t late_blocked[] = {{-3, "skipped", "2026-12-02 09:00"},
                                     {0, "skipped", "2026-12-05 09:00"},
                                     {3, "blocked", NULL}};
    s_create_expect (s_fx.key_a, SP, "CT-OUT-2", "+5511998769202", "2026-12-05",
                     "[-3,0,3]", late_blocked, 3);
    c = s_expect (200, "GET", "/v1/contacts/%2B5511998769202", s_fx.key_a,
                  NULL);
    assert_true (json_is_true (json_object_get (c, "opted_out")));
    assert_string_equal (rcd_test_str (c, "name"), "Cliente");
    json_decref (c);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_one_reminder_per_offset_at_the_reminder_time),
        cmocka_unit_test (
            test_a_reminder_outside_business_hours_moves_to_the_next_opening),
        cmocka_unit_test (
            test_a_late_upload_collapses_past_reminders_into_one_sent_now),
        cmocka_unit_test (
            test_a_late_upload_outside_business_hours_waits_for_the_opening),
        cmocka_unit_test (
            test_daylight_saving_and_a_window_across_midnight_in_santiago),
        cmocka_unit_test (test_due_dates_beyond_one_year_are_refused),
        cmocka_unit_test (test_bad_input_names_the_field_and_stores_nothing),
        cmocka_unit_test (test_template_errors_store_nothing),
        cmocka_unit_test (test_a_batch_stores_good_items_and_answers_bad_ones),
        cmocka_unit_test (test_one_active_cycle_per_external_id),
        cmocka_unit_test (test_concurrent_uploads_of_one_id_store_one_cycle),
        cmocka_unit_test (test_cancel_cancels_pending_reminders_once),
        cmocka_unit_test (
            test_a_cycle_completes_when_its_last_reminder_is_terminal),
        cmocka_unit_test (
            test_the_contact_is_upserted_and_opt_out_blocks_reminders),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

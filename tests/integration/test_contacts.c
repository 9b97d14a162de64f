/*  test_contacts.c - contacts (upsert, show, opt-out) and the tenant
    settings PATCH, against a real PostgreSQL over real HTTP on loopback.

    The ingestor actor runs in process on a free port with a fresh
    database, as in test_ingestor.c; messages in every status are put in
    place with SQL so that opt-out's blocking can be checked row by row.
*/
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
    rcd_test_ingestor_t ing; /* the ingestor, its database and port */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

/*  Calls the in-process ingestor. */
static json_t *
s_call (const char *method, const char *path, const char *key, const char *body,
        long *status)
{
    return rcd_test_api (s_fx.ing.port, method, path, key, body, status);
}

/*  rcd_test_api_expect on this test's ingestor. */
static json_t *
s_expect (long expected, const char *method, const char *path, const char *key,
          const char *body)
{
    return rcd_test_api_expect (s_fx.ing.port, expected, method, path, key,
                                body);
}

/*  rcd_test_api_expect_error of a 400 on this test's ingestor. */
static void
s_expect_error (const char *method, const char *path, const char *key,
                const char *body, const char *code, const char *field)
{
    rcd_test_api_expect_error (s_fx.ing.port, 400, method, path, key, body,
                               code, field);
}

static long long
s_count (const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    return rcd_test_sql_int (s_fx.ing.url, sql, p2 ? 2 : p1 ? 1 : 0, params);
}

/*  Inserts a message of tenant to phone in status; returns its id. */
static long long
s_insert_message (long long tenant, const char *phone, const char *status)
{
    char t[24];
    snprintf (t, sizeof t, "%lld", tenant);
    const char *params[] = {t, phone, status};
    long long id = rcd_test_sql_int (
        s_fx.ing.url,
        "INSERT INTO messages (tenant_id, to_phone, body, status,"
        "                      lease_until)"
        "VALUES ($1::bigint, $2, 'boleto vence amanhã', $3,"
        "        CASE WHEN $3 = 'sending' THEN now() + interval '1 min' END)"
        "RETURNING id",
        3, params);
    assert_true (id > 0);
    return id;
}

static char *
s_status_of (long long id)
{
    char text[24];
    snprintf (text, sizeof text, "%lld", id);
    const char *params[] = {text};
    return rcd_test_sql (s_fx.ing.url,
                         "SELECT status FROM messages WHERE id = $1::bigint", 1,
                         params);
}

static void
s_assert_status (long long id, const char *expected)
{
    char *status = s_status_of (id);
    assert_non_null (status);
    assert_string_equal (status, expected);
    free (status);
}

/*  The tenant's settings document as text (keys sorted), for
    comparisons. Caller frees. */
static char *
s_settings (const char *key)
{
    json_t *a = s_expect (200, "GET", "/v1/tenant", key, NULL);
    char *text = json_dumps (a, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref (a);
    assert_non_null (text);
    return text;
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    rcd_test_ingestor_start (&s_fx.ing, "contacts", ADMIN_KEY, 4);
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
    free (s_fx.key_a);
    free (s_fx.key_b);
    curl_global_cleanup ();
    return 0;
}

/*  --- contacts --- */

static void
test_put_creates_then_updates_one_row_per_number (void **state)
{
    (void)state;
    /* URL-encoded international form */
    json_t *a = s_expect (200, "PUT", "/v1/contacts/%2B55%2011%2099876-0001",
                          s_fx.key_a,
                          "{\"name\":\"Ana\",\"vars\":{\"plan\":\"gold\","
                          "\"amount\":159.9,\"n\":3}}");
    assert_string_equal (rcd_test_str (a, "phone"), "+5511998760001");
    assert_string_equal (rcd_test_str (a, "name"), "Ana");
    json_t *vars = json_object_get (a, "vars");
    assert_string_equal (rcd_test_str (vars, "plan"), "gold");
    assert_true (json_is_number (json_object_get (vars, "amount")));
    assert_int_equal (json_integer_value (json_object_get (vars, "n")), 3);
    assert_true (json_is_false (json_object_get (a, "opted_out")));
    assert_true (json_is_null (json_object_get (a, "opted_out_at")));
    assert_non_null (rcd_test_str (a, "updated_at"));
    json_decref (a);

    /* the same number without '+': the name changes, the vars stay */
    a = s_expect (200, "PUT", "/v1/contacts/5511998760001", s_fx.key_a,
                  "{\"name\":\"Ana Maria\"}");
    assert_string_equal (rcd_test_str (a, "phone"), "+5511998760001");
    assert_string_equal (rcd_test_str (a, "name"), "Ana Maria");
    assert_string_equal (rcd_test_str (json_object_get (a, "vars"), "plan"),
                         "gold");
    json_decref (a);

    /* national form, with the mobile ninth digit missing: the vars are
       replaced as a whole, the name stays */
    a = s_expect (200, "PUT", "/v1/contacts/(11)%209876-0001", s_fx.key_a,
                  "{\"vars\":{\"plan\":\"silver\"}}");
    assert_string_equal (rcd_test_str (a, "phone"), "+5511998760001");
    assert_string_equal (rcd_test_str (a, "name"), "Ana Maria");
    vars = json_object_get (a, "vars");
    assert_int_equal (json_object_size (vars), 1);
    assert_string_equal (rcd_test_str (vars, "plan"), "silver");
    json_decref (a);

    /* null clears */
    a = s_expect (200, "PUT", "/v1/contacts/011%2099876-0001", s_fx.key_a,
                  "{\"name\":null,\"vars\":null}");
    assert_true (json_is_null (json_object_get (a, "name")));
    assert_int_equal (json_object_size (json_object_get (a, "vars")), 0);
    json_decref (a);

    char t[24];
    snprintf (t, sizeof t, "%lld", s_fx.tenant_a);
    assert_int_equal (s_count ("SELECT count(*) FROM contacts"
                               " WHERE tenant_id = $1::bigint"
                               "   AND phone = '+5511998760001'",
                               t, NULL),
                      1);

    /* GET shows what PUT answered */
    a = s_expect (200, "PUT", "/v1/contacts/%2B5511998760001", s_fx.key_a,
                  "{\"name\":\"Ana\",\"vars\":{\"k\":\"v\"}}");
    json_t *g = s_expect (200, "GET", "/v1/contacts/%2B5511998760001",
                          s_fx.key_a, NULL);
    assert_true (json_equal (a, g));
    json_decref (a);
    json_decref (g);
}

static void
test_get_of_an_unknown_contact_is_404 (void **state)
{
    (void)state;
    json_t *a =
        s_expect (404, "GET", "/v1/contacts/5511912340099", s_fx.key_a, NULL);
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
    /* no route for other methods */
    a = s_expect (405, "DELETE", "/v1/contacts/5511912340099", s_fx.key_a,
                  NULL);
    json_decref (a);
    /* and no key, no contact */
    a = s_expect (401, "GET", "/v1/contacts/5511912340099", NULL, NULL);
    json_decref (a);
}

static void
test_bad_phones_and_bodies_are_named_and_store_nothing (void **state)
{
    (void)state;
    long long before = s_count ("SELECT count(*) FROM contacts", NULL, NULL);
    static const char *const bad[] = {
        "abc", "123", "%2B", "55119123", "11%20ramal%2012",
        "%2B55%2000%2091234-5678", "0000000000000", "%2B1234567890123456789",
        /* decoded once, by MHD: "%2B..." is not a phone */
        "%252B5511998760001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf (path, sizeof path, "/v1/contacts/%s", bad[i]);
        s_expect_error ("PUT", path, s_fx.key_a, "{\"name\":\"x\"}",
                        "invalid_phone", "phone");
        s_expect_error ("GET", path, s_fx.key_a, NULL, "invalid_phone",
                        "phone");
        snprintf (path, sizeof path, "/v1/contacts/%s/opt-out", bad[i]);
        s_expect_error ("POST", path, s_fx.key_a, NULL, "invalid_phone",
                        "phone");
    }
    /* the reason is told */
    json_t *a = s_expect (400, "PUT", "/v1/contacts/abc", s_fx.key_a, "{}");
    const char *message = json_string_value (
        json_object_get (json_object_get (a, "error"), "message"));
    assert_non_null (strstr (message, "not a usable phone number: "));
    assert_true (strlen (message) > strlen ("not a usable phone number: "));
    json_decref (a);

    const char *path = "/v1/contacts/5511912340002";
    s_expect_error ("PUT", path, s_fx.key_a, "{\"email\":\"a@b\"}",
                    "invalid_field", "email");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"name\":7}", "invalid_field",
                    "name");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"name\":\"\"}", "invalid_field",
                    "name");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"vars\":[1]}", "invalid_field",
                    "vars");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"vars\":{\"ok\":true}}",
                    "invalid_field", "vars.ok");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"vars\":{\"x\":{\"y\":1}}}",
                    "invalid_field", "vars.x");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"vars\":{\"x\":null}}",
                    "invalid_field", "vars.x");
    s_expect_error ("PUT", path, s_fx.key_a, "{\"vars\":{\"bad key\":1}}",
                    "invalid_field", "vars");
    s_expect_error ("PUT", path, s_fx.key_a, "[]", "invalid_json", NULL);
    s_expect_error ("PUT", path, s_fx.key_a, "{", "invalid_json", NULL);
    assert_int_equal (s_count ("SELECT count(*) FROM contacts", NULL, NULL),
                      before);
}

static void
test_an_opted_out_contact_stays_opted_out_after_uploads (void **state)
{
    (void)state;
    /* opt-out of a number never seen creates it opted out */
    json_t *a = s_expect (200, "POST", "/v1/contacts/%2B5511912340003/opt-out",
                          s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (a, "phone"), "+5511912340003");
    assert_true (json_is_true (json_object_get (a, "opted_out")));
    assert_int_equal (json_integer_value (json_object_get (a, "blocked")), 0);
    json_decref (a);
    json_t *g =
        s_expect (200, "GET", "/v1/contacts/5511912340003", s_fx.key_a, NULL);
    assert_true (json_is_true (json_object_get (g, "opted_out")));
    char *at = strdup (rcd_test_str (g, "opted_out_at"));
    json_decref (g);

    /* a later upload changes the name and vars, not the opt-out */
    a = s_expect (200, "PUT", "/v1/contacts/11912340003", s_fx.key_a,
                  "{\"name\":\"Bruno\",\"vars\":{\"city\":\"Recife\"}}");
    assert_string_equal (rcd_test_str (a, "name"), "Bruno");
    assert_true (json_is_true (json_object_get (a, "opted_out")));
    assert_string_equal (rcd_test_str (a, "opted_out_at"), at);
    json_decref (a);
    /* not even with opted_out in the body: it is not a field */
    s_expect_error ("PUT", "/v1/contacts/11912340003", s_fx.key_a,
                    "{\"opted_out\":false}", "invalid_field", "opted_out");
    g = s_expect (200, "GET", "/v1/contacts/11912340003", s_fx.key_a, NULL);
    assert_true (json_is_true (json_object_get (g, "opted_out")));
    assert_string_equal (rcd_test_str (g, "name"), "Bruno");
    json_decref (g);
    free (at);
}

static void
test_opt_out_blocks_only_that_tenants_pending_messages_to_it (void **state)
{
    (void)state;
    const char *phone = "+5521998760004", *other = "+5521998760005";
    long long a = s_fx.tenant_a, b = s_fx.tenant_b;
    long long p1 = s_insert_message (a, phone, "pending");
    long long p2 = s_insert_message (a, phone, "pending");
    long long sending = s_insert_message (a, phone, "sending");
    long long sent = s_insert_message (a, phone, "sent");
    long long cancelled = s_insert_message (a, phone, "cancelled");
    long long other_phone = s_insert_message (a, other, "pending");
    long long other_tenant = s_insert_message (b, phone, "pending");
    /* the contact exists already, with a name the opt-out keeps */
    json_t *r = s_expect (200, "PUT", "/v1/contacts/21998760004", s_fx.key_a,
                          "{\"name\":\"Carla\"}");
    json_decref (r);

    r = s_expect (200, "POST", "/v1/contacts/(21)%2099876-0004/opt-out",
                  s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (r, "phone"), phone);
    assert_true (json_is_true (json_object_get (r, "opted_out")));
    assert_int_equal (json_integer_value (json_object_get (r, "blocked")), 2);
    json_decref (r);

    s_assert_status (p1, "blocked");
    s_assert_status (p2, "blocked");
    s_assert_status (sending, "sending");
    s_assert_status (sent, "sent");
    s_assert_status (cancelled, "cancelled");
    s_assert_status (other_phone, "pending");
    s_assert_status (other_tenant, "pending");

    /* one history row per blocked message, none for the others */
    char ids[128];
    snprintf (ids, sizeof ids, "{%lld,%lld}", p1, p2);
    const char *hist = "SELECT count(*) FROM message_history"
                       " WHERE message_id = ANY($1::bigint[])"
                       "   AND status = 'blocked'"
                       "   AND detail = 'contact opted out'"
                       "   AND tenant_id = $2::bigint";
    char t[24];
    snprintf (t, sizeof t, "%lld", a);
    assert_int_equal (s_count (hist, ids, t), 2);
    snprintf (ids, sizeof ids, "{%lld,%lld,%lld,%lld,%lld}", sending, sent,
              cancelled, other_phone, other_tenant);
    assert_int_equal (s_count ("SELECT count(*) FROM message_history"
                               " WHERE message_id = ANY($1::bigint[])",
                               ids, NULL),
                      0);

    json_t *g =
        s_expect (200, "GET", "/v1/contacts/21998760004", s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (g, "name"), "Carla");
    assert_true (json_is_true (json_object_get (g, "opted_out")));
    char *at = strdup (rcd_test_str (g, "opted_out_at"));
    json_decref (g);

    /* idempotent: nothing left to block, the first time is kept */
    r = s_expect (200, "POST", "/v1/contacts/5521998760004/opt-out", s_fx.key_a,
                  NULL);
    assert_int_equal (json_integer_value (json_object_get (r, "blocked")), 0);
    assert_true (json_is_true (json_object_get (r, "opted_out")));
    json_decref (r);
    snprintf (ids, sizeof ids, "{%lld,%lld}", p1, p2);
    assert_int_equal (s_count (hist, ids, t), 2);
    g = s_expect (200, "GET", "/v1/contacts/21998760004", s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (g, "opted_out_at"), at);
    json_decref (g);
    free (at);

    /* tenant b's contact with the same number is not opted out */
    r = s_expect (404, "GET", "/v1/contacts/21998760004", s_fx.key_b, NULL);
    json_decref (r);

    /* a message accepted after the opt-out is stored blocked, never
       pending; tenant b's to the same number is pending */
    r = s_expect (202, "POST", "/v1/messages", s_fx.key_a,
                  "{\"to\":\"21998760004\",\"text\":\"fatura\"}");
    assert_string_equal (rcd_test_str (r, "status"), "blocked");
    long long late = json_integer_value (json_object_get (r, "id"));
    json_decref (r);
    s_assert_status (late, "blocked");
    snprintf (ids, sizeof ids, "{%lld}", late);
    assert_int_equal (s_count (hist, ids, t), 1);
    r = s_expect (202, "POST", "/v1/messages", s_fx.key_b,
                  "{\"to\":\"21998760004\",\"text\":\"fatura\"}");
    assert_string_equal (rcd_test_str (r, "status"), "pending");
    json_decref (r);
}

static void
test_tenants_do_not_see_each_others_contacts (void **state)
{
    (void)state;
    const char *path = "/v1/contacts/5531987650006";
    json_t *r = s_expect (200, "PUT", path, s_fx.key_a,
                          "{\"name\":\"Of A\",\"vars\":{\"s\":\"a\"}}");
    json_decref (r);
    r = s_expect (404, "GET", path, s_fx.key_b, NULL);
    rcd_test_assert_api_error (r, "not_found", NULL);
    json_decref (r);
    /* b's upload of the same number is b's own row */
    r = s_expect (200, "PUT", path, s_fx.key_b, "{\"name\":\"Of B\"}");
    assert_string_equal (rcd_test_str (r, "name"), "Of B");
    assert_int_equal (json_object_size (json_object_get (r, "vars")), 0);
    json_decref (r);
    r = s_expect (200, "POST", "/v1/contacts/5531987650006/opt-out", s_fx.key_b,
                  NULL);
    json_decref (r);
    r = s_expect (200, "GET", path, s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (r, "name"), "Of A");
    assert_string_equal (rcd_test_str (json_object_get (r, "vars"), "s"), "a");
    assert_true (json_is_false (json_object_get (r, "opted_out")));
    json_decref (r);
    assert_int_equal (s_count ("SELECT count(*) FROM contacts"
                               " WHERE phone = '+5531987650006'",
                               NULL, NULL),
                      2);
}

/*  --- tenant settings --- */

static void
test_patch_changes_each_setting_and_get_shows_it (void **state)
{
    (void)state;
    json_t *before = s_expect (200, "GET", "/v1/tenant", s_fx.key_a, NULL);
    assert_string_equal (rcd_test_str (before, "timezone"),
                         "America/Sao_Paulo");
    assert_string_equal (rcd_test_str (before, "reminder_time"), "09:00");
    assert_true (json_is_array (json_object_get (before, "optout_keywords")));
    json_decref (before);
    char *b_before = s_settings (s_fx.key_b);

    json_t *a = s_expect (
        200, "PATCH", "/v1/tenant", s_fx.key_a,
        "{\"timezone\":\"America/Manaus\","
        "\"business_hours\":{\"mon\":[[\"08:00\",\"12:00\"],"
        "[\"13:00\",\"24:00\"]],\"sat\":[[\"09:00\",\"13:00\"]]},"
        "\"generic_template\":\"generic_v2\","
        "\"optout_keywords\":[\"sair\",\" Parar \",\"SAIR\",\"stop\"],"
        "\"default_offsets_days\":[3,-3,0,3,-10],"
        "\"reminder_time\":\"08:30\"}");
    assert_string_equal (rcd_test_str (a, "timezone"), "America/Manaus");
    json_t *bh = json_object_get (a, "business_hours");
    assert_string_equal (
        json_string_value (json_array_get (
            json_array_get (json_object_get (bh, "mon"), 1), 1)),
        "24:00");
    assert_string_equal (rcd_test_str (a, "generic_template"), "generic_v2");
    json_t *kw = json_object_get (a, "optout_keywords");
    assert_int_equal (json_array_size (kw), 3);
    assert_string_equal (json_string_value (json_array_get (kw, 0)), "SAIR");
    assert_string_equal (json_string_value (json_array_get (kw, 1)), "PARAR");
    assert_string_equal (json_string_value (json_array_get (kw, 2)), "STOP");
    json_t *off = json_object_get (a, "default_offsets_days");
    assert_int_equal (json_array_size (off), 4);
    static const int expected[] = {-10, -3, 0, 3};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal (json_integer_value (json_array_get (off, i)),
                          expected[i]);
    assert_string_equal (rcd_test_str (a, "reminder_time"), "08:30");
    assert_true (json_is_integer (json_object_get (a, "id")));
    assert_true (json_is_string (json_object_get (a, "webhook_token")));

    /* GET answers the same document */
    char *patched = json_dumps (a, JSON_SORT_KEYS | JSON_COMPACT);
    char *got = s_settings (s_fx.key_a);
    assert_string_equal (patched, got);
    free (patched);
    free (got);
    json_decref (a);

    /* a partial PATCH touches only its field; null clears the nullable
       ones */
    a = s_expect (200, "PATCH", "/v1/tenant", s_fx.key_a,
                  "{\"business_hours\":null,\"generic_template\":null}");
    assert_true (json_is_null (json_object_get (a, "business_hours")));
    assert_true (json_is_null (json_object_get (a, "generic_template")));
    assert_string_equal (rcd_test_str (a, "timezone"), "America/Manaus");
    assert_string_equal (rcd_test_str (a, "reminder_time"), "08:30");
    json_decref (a);
    a = s_expect (200, "PATCH", "/v1/tenant", s_fx.key_a,
                  "{\"reminder_time\":\"00:00\"}");
    assert_string_equal (rcd_test_str (a, "reminder_time"), "00:00");
    json_decref (a);
    a = s_expect (200, "PATCH", "/v1/tenant", s_fx.key_a,
                  "{\"reminder_time\":\"23:59\",\"optout_keywords\":[\"x\"],"
                  "\"default_offsets_days\":[-365,365]}");
    assert_string_equal (rcd_test_str (a, "reminder_time"), "23:59");
    assert_int_equal (json_array_size (json_object_get (a, "optout_keywords")),
                      1);
    json_decref (a);
    a = s_expect (200, "PATCH", "/v1/tenant", s_fx.key_a, "{}");
    json_decref (a);

    /* the other tenant is untouched */
    char *b_after = s_settings (s_fx.key_b);
    assert_string_equal (b_before, b_after);
    free (b_before);
    free (b_after);
}

static void
test_patch_refuses_bad_settings_and_changes_nothing (void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *code;
        const char *field;
    } bad[] = {
        {"{\"color\":\"red\"}", "invalid_field", "color"},
        {"{\"name\":\"renamed\"}", "invalid_field", "name"},
        {"{\"timezone\":\"Mars/Olympus_Mons\"}", "invalid_field", "timezone"},
        {"{\"timezone\":\"\"}", "invalid_field", "timezone"},
        {"{\"timezone\":-3}", "invalid_field", "timezone"},
        {"{\"timezone\":null}", "invalid_field", "timezone"},
        {"{\"business_hours\":\"always\"}", "invalid_field", "business_hours"},
        {"{\"business_hours\":{\"mon\":[[\"10:00\",\"09:00\"]]}}",
         "invalid_field", "business_hours.mon[0]"},
        {"{\"business_hours\":{\"xyz\":[]}}", "invalid_field",
         "business_hours.xyz"},
        {"{\"generic_template\":7}", "invalid_field", "generic_template"},
        {"{\"generic_template\":\"\"}", "invalid_field", "generic_template"},
        {"{\"generic_template\":\"has space\"}", "invalid_field",
         "generic_template"},
        {"{\"optout_keywords\":\"SAIR\"}", "invalid_field", "optout_keywords"},
        {"{\"optout_keywords\":[]}", "invalid_field", "optout_keywords"},
        {"{\"optout_keywords\":null}", "invalid_field", "optout_keywords"},
        {"{\"optout_keywords\":[\"\"]}", "invalid_field", "optout_keywords[0]"},
        {"{\"optout_keywords\":[\"SAIR\",\"   \"]}", "invalid_field",
         "optout_keywords[1]"},
        {"{\"optout_keywords\":[\"SAIR\",3]}", "invalid_field",
         "optout_keywords[1]"},
        {"{\"optout_keywords\":[\"123456789012345678901234567890123\"]}",
         "invalid_field", "optout_keywords[0]"},
        {"{\"optout_keywords\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\","
         "\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\",\"r\","
         "\"s\",\"t\",\"u\"]}",
         "invalid_field", "optout_keywords"},
        {"{\"default_offsets_days\":3}", "invalid_field",
         "default_offsets_days"},
        {"{\"default_offsets_days\":[]}", "invalid_field",
         "default_offsets_days"},
        {"{\"default_offsets_days\":[0,366]}", "invalid_field",
         "default_offsets_days[1]"},
        {"{\"default_offsets_days\":[-366]}", "invalid_field",
         "default_offsets_days[0]"},
        {"{\"default_offsets_days\":[1.5]}", "invalid_field",
         "default_offsets_days[0]"},
        {"{\"default_offsets_days\":[\"3\"]}", "invalid_field",
         "default_offsets_days[0]"},
        {"{\"default_offsets_days\":[1,2,3,4,5,6,7,8,9,10,11]}",
         "invalid_field", "default_offsets_days"},
        {"{\"reminder_time\":\"24:00\"}", "invalid_field", "reminder_time"},
        {"{\"reminder_time\":\"9:00\"}", "invalid_field", "reminder_time"},
        {"{\"reminder_time\":\"12:60\"}", "invalid_field", "reminder_time"},
        {"{\"reminder_time\":\"09:00:00\"}", "invalid_field", "reminder_time"},
        {"{\"reminder_time\":900}", "invalid_field", "reminder_time"},
        {"{\"reminder_time\":null}", "invalid_field", "reminder_time"},
        /* a good field next to a bad one: neither is stored */
        {"{\"reminder_time\":\"07:00\",\"timezone\":\"Nowhere/Land\"}",
         "invalid_field", "timezone"},
        {"{\"reminder_time\":\"07:00\",\"optout_keywords\":[]}",
         "invalid_field", "optout_keywords"},
        {"{\"generic_template\":\"g\",\"default_offsets_days\":[999]}",
         "invalid_field", "default_offsets_days[0]"},
        {"", "invalid_json", NULL},
        {"[1]", "invalid_json", NULL},
    };
    char *before = s_settings (s_fx.key_a);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long status = 0;
        json_t *a = s_call ("PATCH", "/v1/tenant", s_fx.key_a,
                            bad[i].body[0] ? bad[i].body : NULL, &status);
        if (status != 400)
            fail_msg ("PATCH %s: expected 400, got %ld", bad[i].body, status);
        rcd_test_assert_api_error (a, bad[i].code, bad[i].field);
        json_decref (a);
        char *after = s_settings (s_fx.key_a);
        if (strcmp (before, after) != 0)
            fail_msg ("PATCH %s changed the settings", bad[i].body);
        free (after);
    }
    free (before);
    /* the admin key is not a tenant */
    json_t *a = s_expect (403, "PATCH", "/v1/tenant", ADMIN_KEY,
                          "{\"reminder_time\":\"07:00\"}");
    json_decref (a);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_put_creates_then_updates_one_row_per_number),
        cmocka_unit_test (test_get_of_an_unknown_contact_is_404),
        cmocka_unit_test (
            test_bad_phones_and_bodies_are_named_and_store_nothing),
        cmocka_unit_test (
            test_an_opted_out_contact_stays_opted_out_after_uploads),
        cmocka_unit_test (
            test_opt_out_blocks_only_that_tenants_pending_messages_to_it),
        cmocka_unit_test (test_tenants_do_not_see_each_others_contacts),
        cmocka_unit_test (test_patch_changes_each_setting_and_get_shows_it),
        cmocka_unit_test (test_patch_refuses_bad_settings_and_changes_nothing),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

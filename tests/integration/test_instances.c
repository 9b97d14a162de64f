/*  test_instances.c - PATCH /v1/instances/{id}: enabling, limits,
    base_url and credential rotation, against a real PostgreSQL over real
    HTTP on loopback.

    The ingestor actor runs in process on a free port with a fresh
    database, as in test_contacts.c. Every change is checked in the row
    itself (read as the superuser, past row-level security), every
    refusal by comparing the whole row before and after, and every answer
    is searched for the credentials: each secret the test uses contains
    "SECRET", which no answer may contain.
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

/*  Fails when answer shows a credential: a credential key anywhere at
    its top level or in an item, or any text holding "SECRET". */
static void
s_assert_no_secrets (json_t *answer)
{
    static const char *const keys[] = {"api_key", "access_token", "app_secret",
                                       "verify_token"};
    char *text = json_dumps (answer, JSON_COMPACT);
    assert_non_null (text);
    if (strstr (text, "SECRET"))
        fail_msg ("a credential was answered: %s", text);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get (answer, keys[i]))
            fail_msg ("%s was answered: %s", keys[i], text);
    free (text);
}

/*  Calls the in-process ingestor; checks the answer for credentials. */
static json_t *
s_call (const char *method, const char *path, const char *key, const char *body,
        long *status)
{
    json_t *a = rcd_test_api (s_fx.ing.port, method, path, key, body, status);
    if (a)
        s_assert_no_secrets (a);
    return a;
}

/*  rcd_test_api_expect on this test's ingestor, checking for
    credentials. */
static json_t *
s_expect (long expected, const char *method, const char *path, const char *key,
          const char *body)
{
    json_t *a =
        rcd_test_api_expect (s_fx.ing.port, expected, method, path, key, body);
    s_assert_no_secrets (a);
    return a;
}

/*  Creates an instance of tenant key from body; returns its id. */
static long long
s_create (const char *key, const char *body)
{
    json_t *a = s_expect (201, "POST", "/v1/instances", key, body);
    long long id = json_integer_value (json_object_get (a, "id"));
    assert_true (id > 0);
    json_decref (a);
    return id;
}

/*  One column of instance id as text (NULL for SQL NULL), read as the
    superuser. col is an SQL expression of this test. Caller frees. */
static char *
s_column (long long id, const char *col)
{
    char sql[256], text[24];
    snprintf (sql, sizeof sql, "SELECT (%s)::text FROM instances WHERE id = $1",
              col);
    snprintf (text, sizeof text, "%lld", id);
    const char *params[] = {text};
    return rcd_test_sql (s_fx.ing.url, sql, 1, params);
}

/*  Asserts column col of instance id reads expected (NULL: SQL NULL). */
static void
s_assert_column (long long id, const char *col, const char *expected)
{
    char *value = s_column (id, col);
    if (!expected && value)
        fail_msg ("instance %lld: %s is %s, expected NULL", id, col, value);
    if (expected && (!value || strcmp (value, expected) != 0))
        fail_msg ("instance %lld: %s is %s, expected %s", id, col,
                  value ? value : "NULL", expected);
    free (value);
}

/*  The whole row, credentials and circuit included. Caller frees. */
static char *
s_row (long long id)
{
    char *row = s_column (id, "(SELECT row_to_json(i) FROM instances i"
                              " WHERE i.id = instances.id)");
    assert_non_null (row);
    return row;
}

/*  PATCHes instance id with body as key, expecting 200; checks the answer
    is the instance GET /v1/instances lists. Returns the answer (caller
    decrefs). */
static json_t *
s_patch (long long id, const char *key, const char *body)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/instances/%lld", id);
    json_t *a = s_expect (200, "PATCH", path, key, body);
    assert_int_equal (json_integer_value (json_object_get (a, "id")), id);
    json_t *list = s_expect (200, "GET", "/v1/instances", key, NULL);
    json_t *items = json_object_get (list, "items"), *item, *found = NULL;
    size_t i;
    json_array_foreach (items, i, item)
    {
        if (json_integer_value (json_object_get (item, "id")) == id)
            found = item;
    }
    assert_non_null (found);
    if (!json_equal (a, found)) {
        char *x = json_dumps (a, JSON_SORT_KEYS | JSON_COMPACT);
        char *y = json_dumps (found, JSON_SORT_KEYS | JSON_COMPACT);
        fail_msg ("PATCH answered %s, GET lists %s", x, y);
    }
    json_decref (list);
    return a;
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    rcd_test_ingestor_start (&s_fx.ing, "instances", ADMIN_KEY, 4);
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

/*  --- tests --- */

static void
test_each_field_changes_the_row_and_the_answer (void **state)
{
    (void)state;
    long long evo =
        s_create (s_fx.key_a, "{\"name\":\"evo-fields\",\"provider\":"
                              "\"evolution\",\"base_url\":\"http://127.0.0.1:1"
                              "\",\"api_key\":\"evo-SECRET-1\"}");
    long long meta =
        s_create (s_fx.key_a, "{\"name\":\"meta-fields\",\"provider\":\"meta\","
                              "\"base_url\":\"https://graph.example\","
                              "\"access_token\":\"meta-SECRET-token-1\","
                              "\"phone_number_id\":\"pn-fields\"}");

    json_t *a = s_patch (evo, s_fx.key_a, "{\"enabled\":false}");
    assert_true (json_is_false (json_object_get (a, "enabled")));
    json_decref (a);
    s_assert_column (evo, "enabled", "false");
    a = s_patch (evo, s_fx.key_a, "{\"enabled\":true}");
    assert_true (json_is_true (json_object_get (a, "enabled")));
    json_decref (a);
    s_assert_column (evo, "enabled", "true");

    a = s_patch (evo, s_fx.key_a, "{\"rate_per_second\":2.5}");
    assert_true (json_number_value (json_object_get (a, "rate_per_second")) ==
                 2.5);
    json_decref (a);
    s_assert_column (evo, "rate_per_second", "2.5");
    a = s_patch (evo, s_fx.key_a, "{\"rate_per_second\":1000}");
    json_decref (a);
    s_assert_column (evo, "rate_per_second", "1000");

    a = s_patch (evo, s_fx.key_a, "{\"hourly_cap\":120}");
    assert_int_equal (json_integer_value (json_object_get (a, "hourly_cap")),
                      120);
    json_decref (a);
    s_assert_column (evo, "hourly_cap", "120");
    a = s_patch (evo, s_fx.key_a, "{\"daily_cap\":900}");
    assert_int_equal (json_integer_value (json_object_get (a, "daily_cap")),
                      900);
    /* one cap changed, the other kept */
    assert_int_equal (json_integer_value (json_object_get (a, "hourly_cap")),
                      120);
    json_decref (a);
    s_assert_column (evo, "daily_cap", "900");
    s_assert_column (evo, "hourly_cap", "120");
    /* null removes a cap, the other stays */
    a = s_patch (evo, s_fx.key_a, "{\"hourly_cap\":null}");
    assert_true (json_is_null (json_object_get (a, "hourly_cap")));
    json_decref (a);
    s_assert_column (evo, "hourly_cap", NULL);
    s_assert_column (evo, "daily_cap", "900");
    a = s_patch (evo, s_fx.key_a, "{\"daily_cap\":null}");
    assert_true (json_is_null (json_object_get (a, "daily_cap")));
    json_decref (a);
    s_assert_column (evo, "daily_cap", NULL);

    /* trailing slashes dropped, as at creation */
    a = s_patch (evo, s_fx.key_a,
                 "{\"base_url\":\"https://evo.example/v2//\"}");
    assert_string_equal (rcd_test_str (a, "base_url"),
                         "https://evo.example/v2");
    json_decref (a);
    s_assert_column (evo, "base_url", "https://evo.example/v2");

    a = s_patch (evo, s_fx.key_a, "{\"api_key\":\"evo-SECRET-2\"}");
    json_decref (a);
    s_assert_column (evo, "api_key", "evo-SECRET-2");

    a = s_patch (meta, s_fx.key_a,
                 "{\"access_token\":\"meta-SECRET-token-2\"}");
    json_decref (a);
    s_assert_column (meta, "access_token", "meta-SECRET-token-2");
    a = s_patch (meta, s_fx.key_a, "{\"app_secret\":\"meta-SECRET-app\"}");
    json_decref (a);
    s_assert_column (meta, "app_secret", "meta-SECRET-app");
    a = s_patch (meta, s_fx.key_a, "{\"verify_token\":\"meta-SECRET-verify\"}");
    json_decref (a);
    s_assert_column (meta, "verify_token", "meta-SECRET-verify");
    /* the untouched credential stayed */
    s_assert_column (meta, "access_token", "meta-SECRET-token-2");

    /* everything at once, in one statement */
    a = s_patch (meta, s_fx.key_a,
                 "{\"enabled\":false,\"rate_per_second\":40,"
                 "\"hourly_cap\":1000,\"daily_cap\":20000,"
                 "\"base_url\":\"http://graph.local:9000\","
                 "\"access_token\":\"meta-SECRET-token-3\","
                 "\"app_secret\":\"meta-SECRET-app-2\","
                 "\"verify_token\":\"meta-SECRET-verify-2\"}");
    assert_true (json_is_false (json_object_get (a, "enabled")));
    assert_int_equal (json_integer_value (json_object_get (a, "daily_cap")),
                      20000);
    assert_string_equal (rcd_test_str (a, "provider"), "meta");
    assert_string_equal (rcd_test_str (a, "phone_number_id"), "pn-fields");
    assert_non_null (json_object_get (a, "usage"));
    assert_string_equal (rcd_test_str (a, "circuit_state"), "closed");
    json_decref (a);
    s_assert_column (meta, "enabled", "false");
    s_assert_column (meta, "rate_per_second", "40");
    s_assert_column (meta, "hourly_cap", "1000");
    s_assert_column (meta, "daily_cap", "20000");
    s_assert_column (meta, "base_url", "http://graph.local:9000");
    s_assert_column (meta, "access_token", "meta-SECRET-token-3");
    s_assert_column (meta, "app_secret", "meta-SECRET-app-2");
    s_assert_column (meta, "verify_token", "meta-SECRET-verify-2");
    /* the other instance was not touched by any of it */
    s_assert_column (evo, "api_key", "evo-SECRET-2");
    s_assert_column (evo, "enabled", "true");
}

static void
test_reenabling_keeps_the_circuit_and_the_usage (void **state)
{
    (void)state;
    long long id =
        s_create (s_fx.key_a, "{\"name\":\"evo-circuit\",\"provider\":"
                              "\"evolution\",\"base_url\":\"http://127.0.0.1:1"
                              "\",\"api_key\":\"evo-SECRET-c\"}");
    char text[24];
    snprintf (text, sizeof text, "%lld", id);
    const char *params[] = {text};
    char *done = rcd_test_sql (
        s_fx.ing.url,
        "UPDATE instances SET circuit_state = 'open', circuit_failures = 5,"
        "  circuit_until = now() + interval '5 min',"
        "  circuit_reason = 'gateway_401',"
        "  circuit_opened_at = now() - interval '1 min',"
        "  paused_until = now() + interval '30 s',"
        "  hour_start = date_trunc('hour', now(), 'UTC'), hour_used = 7"
        " WHERE id = $1::bigint RETURNING 'ok'",
        1, params);
    assert_non_null (done);
    free (done);
    const char *kept = "(circuit_state, circuit_failures, circuit_until,"
                       " circuit_reason, circuit_opened_at, paused_until,"
                       " hour_start, hour_used)";
    char *before = s_column (id, kept);
    assert_non_null (before);

    json_t *a = s_patch (id, s_fx.key_a, "{\"enabled\":false}");
    json_decref (a);
    a = s_patch (id, s_fx.key_a,
                 "{\"enabled\":true,\"api_key\":\"evo-SECRET-c2\"}");
    assert_true (json_is_true (json_object_get (a, "enabled")));
    assert_string_equal (rcd_test_str (a, "circuit_state"), "open");
    assert_string_equal (rcd_test_str (a, "circuit_reason"), "gateway_401");
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (a, "usage"), "hour")),
                      7);
    json_decref (a);
    s_assert_column (id, "enabled", "true");
    s_assert_column (id, "api_key", "evo-SECRET-c2");
    char *after = s_column (id, kept);
    assert_non_null (after);
    assert_string_equal (after, before);
    free (before);
    free (after);
}

static void
test_bad_patches_are_named_and_change_nothing (void **state)
{
    (void)state;
    long long evo =
        s_create (s_fx.key_a, "{\"name\":\"evo-bad\",\"provider\":"
                              "\"evolution\",\"base_url\":\"http://127.0.0.1:1"
                              "\",\"api_key\":\"evo-SECRET-b\","
                              "\"hourly_cap\":50}");
    long long meta =
        s_create (s_fx.key_a, "{\"name\":\"meta-bad\",\"provider\":\"meta\","
                              "\"base_url\":\"https://graph.example\","
                              "\"access_token\":\"meta-SECRET-b\","
                              "\"phone_number_id\":\"pn-bad\"}");
    static const struct {
        int which; /* 0: the evolution instance, 1: the meta one */
        const char *body;
        const char *code;
        const char *field;
    } bad[] = {
        {0, "{}", "missing_field", NULL},
        {0, "{\"name\":\"other\"}", "invalid_field", "name"},
        {0, "{\"provider\":\"meta\"}", "invalid_field", "provider"},
        {1, "{\"phone_number_id\":\"pn-2\"}", "invalid_field",
         "phone_number_id"},
        {0, "{\"circuit_state\":\"closed\"}", "invalid_field", "circuit_state"},
        {0, "{\"enabled\":\"yes\"}", "invalid_field", "enabled"},
        {0, "{\"enabled\":1}", "invalid_field", "enabled"},
        {0, "{\"enabled\":null}", "invalid_field", "enabled"},
        {0, "{\"rate_per_second\":0}", "invalid_field", "rate_per_second"},
        {0, "{\"rate_per_second\":-2}", "invalid_field", "rate_per_second"},
        {0, "{\"rate_per_second\":10000.5}", "invalid_field",
         "rate_per_second"},
        {0, "{\"rate_per_second\":\"5\"}", "invalid_field", "rate_per_second"},
        {0, "{\"rate_per_second\":null}", "invalid_field", "rate_per_second"},
        {0, "{\"hourly_cap\":0}", "invalid_field", "hourly_cap"},
        {0, "{\"hourly_cap\":-1}", "invalid_field", "hourly_cap"},
        {0, "{\"hourly_cap\":1.5}", "invalid_field", "hourly_cap"},
        {0, "{\"hourly_cap\":\"10\"}", "invalid_field", "hourly_cap"},
        {0, "{\"hourly_cap\":1000000001}", "invalid_field", "hourly_cap"},
        {0, "{\"daily_cap\":0}", "invalid_field", "daily_cap"},
        {0, "{\"daily_cap\":true}", "invalid_field", "daily_cap"},
        {0, "{\"daily_cap\":99999999999}", "invalid_field", "daily_cap"},
        {0, "{\"base_url\":\"ftp://x\"}", "invalid_field", "base_url"},
        {0, "{\"base_url\":\"\"}", "invalid_field", "base_url"},
        {0, "{\"base_url\":\"http://u:p@h\"}", "invalid_field", "base_url"},
        {0, "{\"base_url\":\"http://a b\"}", "invalid_field", "base_url"},
        {0, "{\"base_url\":null}", "invalid_field", "base_url"},
        {0, "{\"base_url\":5}", "invalid_field", "base_url"},
        {0, "{\"api_key\":\"\"}", "invalid_field", "api_key"},
        {0, "{\"api_key\":null}", "invalid_field", "api_key"},
        {0, "{\"api_key\":7}", "invalid_field", "api_key"},
        {0, "{\"api_key\":\"SECRET\\nx\"}", "invalid_field", "api_key"},
        {1, "{\"app_secret\":\"\"}", "invalid_field", "app_secret"},
        {1, "{\"verify_token\":null}", "invalid_field", "verify_token"},
        {1, "{\"access_token\":[\"SECRET\"]}", "invalid_field", "access_token"},
        /* a credential of the other provider, found out by the UPDATE */
        {0, "{\"access_token\":\"meta-SECRET-x\"}", "invalid_field",
         "access_token"},
        {0, "{\"verify_token\":\"meta-SECRET-x\"}", "invalid_field",
         "verify_token"},
        {1, "{\"api_key\":\"evo-SECRET-x\"}", "invalid_field", "api_key"},
        /* a good field next to a bad one: neither is stored */
        {0, "{\"enabled\":false,\"rate_per_second\":0}", "invalid_field",
         "rate_per_second"},
        {0, "{\"hourly_cap\":null,\"base_url\":\"gopher://x\"}",
         "invalid_field", "base_url"},
        {0,
         "{\"enabled\":false,\"hourly_cap\":null,"
         "\"api_key\":\"evo-SECRET-y\",\"app_secret\":\"meta-SECRET-y\"}",
         "invalid_field", "app_secret"},
        {1,
         "{\"enabled\":false,\"daily_cap\":5,"
         "\"access_token\":\"meta-SECRET-z\",\"api_key\":\"evo-SECRET-z\"}",
         "invalid_field", "api_key"},
        {0, "", "invalid_json", NULL},
        {0, "[1]", "invalid_json", NULL},
        {0, "{", "invalid_json", NULL},
    };
    long long ids[] = {evo, meta};
    char *before[] = {s_row (evo), s_row (meta)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[64];
        snprintf (path, sizeof path, "/v1/instances/%lld", ids[bad[i].which]);
        long status = 0;
        json_t *a = s_call ("PATCH", path, s_fx.key_a,
                            bad[i].body[0] ? bad[i].body : NULL, &status);
        if (status != 400)
            fail_msg ("PATCH %s: expected 400, got %ld", bad[i].body, status);
        rcd_test_assert_api_error (a, bad[i].code, bad[i].field);
        json_decref (a);
        for (size_t k = 0; k < 2; k++) {
            char *after = s_row (ids[k]);
            if (strcmp (before[k], after) != 0)
                fail_msg ("PATCH %s changed instance %lld: %s -> %s",
                          bad[i].body, ids[k], before[k], after);
            free (after);
        }
    }
    free (before[0]);
    free (before[1]);
}

static void
test_other_tenants_and_missing_ids_are_not_found (void **state)
{
    (void)state;
    long long id =
        s_create (s_fx.key_a, "{\"name\":\"evo-wall\",\"provider\":"
                              "\"evolution\",\"base_url\":\"http://127.0.0.1:1"
                              "\",\"api_key\":\"evo-SECRET-w\"}");
    char *before = s_row (id);
    char path[64];
    snprintf (path, sizeof path, "/v1/instances/%lld", id);

    /* tenant b sees no such instance, and changes nothing */
    json_t *a = s_expect (404, "PATCH", path, s_fx.key_b,
                          "{\"enabled\":false,\"api_key\":\"b-SECRET\"}");
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
    /* an id never given */
    a = s_expect (404, "PATCH", "/v1/instances/999999999", s_fx.key_a,
                  "{\"enabled\":false}");
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
    /* ids that are not positive integers: no such route, as elsewhere */
    static const char *const not_ids[] = {
        "0", "-1", "abc", "1.5", "1234567890123456789", "%20"};
    for (size_t i = 0; i < sizeof not_ids / sizeof not_ids[0]; i++) {
        char p[64];
        snprintf (p, sizeof p, "/v1/instances/%s", not_ids[i]);
        long status = 0;
        a = s_call ("PATCH", p, s_fx.key_a, "{\"enabled\":false}", &status);
        if (status != 404)
            fail_msg ("PATCH %s: expected 404, got %ld", p, status);
        rcd_test_assert_api_error (a, "not_found", NULL);
        json_decref (a);
    }
    /* no key, the admin key */
    a = s_expect (401, "PATCH", path, NULL, "{\"enabled\":false}");
    json_decref (a);
    a = s_expect (403, "PATCH", path, ADMIN_KEY, "{\"enabled\":false}");
    json_decref (a);

    char *after = s_row (id);
    assert_string_equal (after, before);
    free (after);
    free (before);
    /* and tenant a still can */
    a = s_patch (id, s_fx.key_a, "{\"enabled\":false}");
    json_decref (a);
    s_assert_column (id, "enabled", "false");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_each_field_changes_the_row_and_the_answer),
        cmocka_unit_test (test_reenabling_keeps_the_circuit_and_the_usage),
        cmocka_unit_test (test_bad_patches_are_named_and_change_nothing),
        cmocka_unit_test (test_other_tenants_and_missing_ids_are_not_found),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

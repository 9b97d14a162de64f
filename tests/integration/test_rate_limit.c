/*  test_rate_limit.c - the tenant API's rate limit: a token bucket per
    tenant key kept in PostgreSQL (api_rate_buckets), 429 rate_limited
    with Retry-After when empty, 503 unavailable (never a free pass) when
    the bucket cannot be read or written.

    The ingestor actor runs in process on a fresh database with a small
    limit (1 request a second, bursts of 5), so the burst is used up in a
    few requests; each test works with tenants of its own, whose buckets
    start full. Timing bounds allow for a slow, shared machine: they
    check the refill rate from above and below with a whole token of
    slack, never an exact count.
*/
#include "rcd_clock.h"
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
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"
#define RATE      1 /* tokens a second */
#define BURST     5 /* bucket size */

typedef struct {
    char *url;               /* test database */
    rcd_test_ingestor_t ing; /* the ingestor and its port */
    int tenants;             /* tenants made so far, for names */
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

/*  One answer with the header this test is about. */
typedef struct {
    long status;
    json_t *body;      /* NULL when not JSON */
    long retry_after;  /* -1: no Retry-After header */
    bool retry_digits; /* the header was whole seconds */
} s_answer_t;

static size_t
s_on_body (char *data, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen (*buf) : 0;
    char *grown = realloc (*buf, old + size * n + 1);
    if (!grown)
        return 0;
    memcpy (grown + old, data, size * n);
    grown[old + size * n] = 0;
    *buf = grown;
    return size * n;
}

static size_t
s_on_header (char *data, size_t size, size_t n, void *arg)
{
    s_answer_t *a = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        char value[32] = "";
        size_t v = 0;
        for (size_t i = 12; i < len && v + 1 < sizeof value; i++)
            if (data[i] != ' ' && data[i] != '\r' && data[i] != '\n')
                value[v++] = data[i];
        value[v] = 0;
        a->retry_digits = v > 0 && strspn (value, "0123456789") == v;
        a->retry_after = strtol (value, NULL, 10);
    }
    return len;
}

/*  Calls the in-process ingestor (port 0: this test's), keeping the
    Retry-After header. Caller frees with s_answer_free. */
static s_answer_t
s_call_on (int port, const char *method, const char *path, const char *key,
           const char *body)
{
    s_answer_t a = {.status = 0, .body = NULL, .retry_after = -1};
    char url[256], auth[300];
    char *text = NULL;
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s",
              port ? port : s_fx.ing.port, path);
    CURL *curl = curl_easy_init ();
    assert_non_null (curl);
    struct curl_slist *headers =
        curl_slist_append (NULL, "Content-Type: application/json");
    if (key) {
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
        headers = curl_slist_append (headers, auth);
    }
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    if (body)
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 20000L);
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &a.status);
    curl_slist_free_all (headers);
    curl_easy_cleanup (curl);
    a.body = text ? json_loads (text, 0, NULL) : NULL;
    free (text);
    return a;
}

static s_answer_t
s_call (const char *method, const char *path, const char *key, const char *body)
{
    return s_call_on (0, method, path, key, body);
}

static void
s_answer_free (s_answer_t *a)
{
    json_decref (a->body);
    a->body = NULL;
}

/*  Asserts a 429 as API.md says: rate_limited, Retry-After in whole
    seconds, at least 1 and at most what one token takes to come back. */
static void
s_assert_limited (s_answer_t *a)
{
    assert_int_equal (a->status, 429);
    rcd_test_assert_api_error (a->body, "rate_limited", NULL);
    assert_true (a->retry_digits);
    assert_true (a->retry_after >= 1);
    assert_true (a->retry_after <= (1 + RATE - 1) / RATE);
}

/*  A new tenant (a full bucket); its key (caller frees). */
static char *
s_tenant (long long *id)
{
    char name[32];
    snprintf (name, sizeof name, "tenant %d", ++s_fx.tenants);
    return rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, name, id);
}

/*  Calls GET /v1/tenant with key until the first 429 (at most 100
    calls); returns how many were let through before it, and the 429 in
    *limited (caller frees). */
static int
s_use_up (int port, const char *key, s_answer_t *limited)
{
    for (int n = 0; n < 100; n++) {
        s_answer_t a = s_call_on (port, "GET", "/v1/tenant", key, NULL);
        if (a.status == 429) {
            *limited = a;
            return n;
        }
        assert_int_equal (a.status, 200);
        s_answer_free (&a);
    }
    fail_msg ("no 429 after 100 requests");
    return -1;
}

static long long
s_messages_of (long long tenant)
{
    char t[24];
    snprintf (t, sizeof t, "%lld", tenant);
    const char *params[] = {t};
    return rcd_test_sql_int (
        s_fx.url, "SELECT count(*) FROM messages WHERE tenant_id = $1::bigint",
        1, params);
}

static void
s_sql (const char *sql)
{
    free (rcd_test_sql (s_fx.url, sql, 0, NULL));
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    char v[16];
    snprintf (v, sizeof v, "%d", RATE);
    setenv ("RECADO_API_RATE_PER_SECOND", v, 1);
    snprintf (v, sizeof v, "%d", BURST);
    setenv ("RECADO_API_BURST", v, 1);
    s_fx.url = rcd_test_db_create ("rate_limit");
    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, 4, 0, 0);
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    rcd_test_db_drop (&s_fx.url);
    unsetenv ("RECADO_API_RATE_PER_SECOND");
    unsetenv ("RECADO_API_BURST");
    curl_global_cleanup ();
    return 0;
}

/*  --- tests --- */

static void
test_burst_then_429_with_retry_after_and_nothing_done (void **state)
{
    (void)state;
    long long tenant = 0;
    char *key = s_tenant (&tenant);
    int64_t t0 = rcd_clock_mono_ms ();
    s_answer_t limited;
    int through = s_use_up (0, key, &limited);
    double elapsed_s = (double)(rcd_clock_mono_ms () - t0) / 1000.0;
    /* the whole burst, plus what refilled meanwhile, and no more */
    assert_true (through >= BURST);
    assert_true (through <= BURST + (int)(RATE * elapsed_s) + 1);
    s_assert_limited (&limited);
    s_answer_free (&limited);

    /* a limited write is not done */
    long long before = s_messages_of (tenant);
    s_answer_t a = s_call ("POST", "/v1/messages", key,
                           "{\"to\":\"+5511987650001\",\"text\":\"oi\"}");
    if (a.status != 202) { /* unless a token came back meanwhile */
        s_assert_limited (&a);
        assert_int_equal (s_messages_of (tenant), before);
    }
    s_answer_free (&a);

    /* routes that are not the tenant API are not limited */
    for (int i = 0; i < 3; i++) {
        a = s_call ("GET", "/healthz", NULL, NULL);
        assert_int_equal (a.status, 200);
        s_answer_free (&a);
        a = s_call ("GET", "/readyz", NULL, NULL);
        assert_int_equal (a.status, 200);
        s_answer_free (&a);
    }
    char *other = s_tenant (NULL); /* an admin POST /v1/tenants */
    free (other);
    free (key);
}

static void
test_tokens_refill_at_the_configured_rate (void **state)
{
    (void)state;
    char *key = s_tenant (NULL);
    s_answer_t a;
    s_use_up (0, key, &a);
    s_answer_free (&a);

    /* for 3 s, a request every 100 ms: the empty bucket lets through
       about RATE a second (the fraction left at the first 429 may add
       one), never a new burst */
    int64_t t0 = rcd_clock_mono_ms ();
    int64_t first_ok_ms = -1;
    int ok = 0;
    while (rcd_clock_mono_ms () - t0 < 3000) {
        a = s_call ("GET", "/v1/tenant", key, NULL);
        if (a.status == 200) {
            ok++;
            if (first_ok_ms < 0)
                first_ok_ms = rcd_clock_mono_ms () - t0;
        }
        else
            s_assert_limited (&a);
        s_answer_free (&a);
        usleep (100000); /* pacing the probe, not synchronising */
    }
    double span_s = (double)(rcd_clock_mono_ms () - t0) / 1000.0;
    assert_true (ok >= (int)(RATE * span_s) - 1);
    assert_true (ok <= (int)(RATE * span_s) + 1);
    /* the first token came back within about a second (1/RATE) */
    assert_true (first_ok_ms >= 0 && first_ok_ms <= 1000 / RATE + 300);
    free (key);
}

static void
test_tenants_have_their_own_buckets_shared_by_replicas (void **state)
{
    (void)state;
    char *key_a = s_tenant (NULL);
    char *key_b = s_tenant (NULL);
    s_answer_t a;
    s_use_up (0, key_a, &a);
    s_answer_free (&a);

    /* a second ingestor on the same database: the same bucket */
    rcd_test_ingestor_t second;
    rcd_test_ingestor_start_on (&second, s_fx.url, ADMIN_KEY, 2, 0, 0);
    a = s_call_on (second.port, "GET", "/v1/tenant", key_a, NULL);
    s_assert_limited (&a);
    s_answer_free (&a);

    /* tenant b still has its whole burst, on either replica */
    for (int i = 0; i < BURST; i++) {
        a = s_call_on (i % 2 ? second.port : 0, "GET", "/v1/tenant", key_b,
                       NULL);
        assert_int_equal (a.status, 200);
        s_answer_free (&a);
    }
    /* and uses it up on the second: then the first refuses it too */
    int more = s_use_up (second.port, key_b, &a);
    s_answer_free (&a);
    assert_true (more <= 2);
    a = s_call ("GET", "/v1/tenant", key_b, NULL);
    if (a.status != 200) /* a token may have come back meanwhile */
        s_assert_limited (&a);
    s_answer_free (&a);
    rcd_test_ingestor_stop (&second);
    free (key_a);
    free (key_b);
}

static void
test_fails_closed_when_the_bucket_cannot_be_written (void **state)
{
    (void)state;
    long long tenant = 0;
    char *key = s_tenant (&tenant);
    s_answer_t a = s_call ("GET", "/v1/tenant", key, NULL);
    assert_int_equal (a.status, 200);
    s_answer_free (&a);

    /* for real: the role tenant requests run as may read the bucket but
       not write it, then not even read it */
    static const char *const revokes[] = {
        "REVOKE UPDATE ON api_rate_buckets FROM recado_tenant",
        "REVOKE ALL ON api_rate_buckets FROM recado_tenant",
    };
    for (size_t r = 0; r < 2; r++) {
        s_sql (revokes[r]);
        for (int i = 0; i < 3; i++) {
            a = s_call ("POST", "/v1/messages", key,
                        "{\"to\":\"+5511987650002\",\"text\":\"oi\"}");
            assert_int_equal (a.status, 503);
            rcd_test_assert_api_error (a.body, "unavailable", NULL);
            assert_true (a.retry_digits && a.retry_after >= 1);
            s_answer_free (&a);
            a = s_call ("GET", "/v1/tenant", key, NULL);
            assert_int_equal (a.status, 503);
            rcd_test_assert_api_error (a.body, "unavailable", NULL);
            s_answer_free (&a);
        }
        assert_int_equal (s_messages_of (tenant), 0);
    }
    /* admin routes and readiness do not depend on it */
    char *other = s_tenant (NULL);
    free (other);
    a = s_call ("GET", "/readyz", NULL, NULL);
    assert_int_equal (a.status, 200);
    s_answer_free (&a);

    /* rights back: the same request goes through, once */
    s_sql ("GRANT SELECT, INSERT, UPDATE ON api_rate_buckets"
           " TO recado_tenant");
    a = s_call ("POST", "/v1/messages", key,
                "{\"to\":\"+5511987650002\",\"text\":\"oi\"}");
    assert_int_equal (a.status, 202);
    s_answer_free (&a);
    assert_int_equal (s_messages_of (tenant), 1);
    free (key);
}

static void
test_zero_turns_the_limit_off (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    setenv ("RECADO_API_BURST", "0", 1);
    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, 4, 0, 0);
    char *key = s_tenant (NULL);
    for (int i = 0; i < BURST * 3; i++) {
        s_answer_t a = s_call ("GET", "/v1/tenant", key, NULL);
        assert_int_equal (a.status, 200);
        s_answer_free (&a);
    }
    free (key);
    char v[16];
    snprintf (v, sizeof v, "%d", BURST);
    setenv ("RECADO_API_BURST", v, 1);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (
            test_burst_then_429_with_retry_after_and_nothing_done),
        cmocka_unit_test (test_tokens_refill_at_the_configured_rate),
        cmocka_unit_test (
            test_tenants_have_their_own_buckets_shared_by_replicas),
        cmocka_unit_test (test_fails_closed_when_the_bucket_cannot_be_written),
        cmocka_unit_test (test_zero_turns_the_limit_off),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

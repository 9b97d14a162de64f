/*  test_ingestor.c - the ingestor's HTTP API against a real PostgreSQL,
    real HTTP on loopback and real ZeroMQ sockets.

    The actor runs in process on a free port with a fresh database; the
    test binds the scheduler's PULL (nudges) and the monitor's SUB
    (events) itself to see what the ingestor sends. The last tests run
    the built binary.
*/
#include "rcd_crypto.h"
#include "rcd_proto.h"
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"

typedef struct {
    char *url;               /* test database */
    rcd_test_ingestor_t ing; /* the ingestor and its port */
    zsock_t *nudges;         /* PULL bound where the ingestor pushes */
    zsock_t *events;         /* SUB bound where the ingestor publishes */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

static json_t *
s_call (const char *method, const char *path, const char *key, const char *body,
        long *status)
{
    return rcd_test_api (s_fx.ing.port, method, path, key, body, status);
}

static long long
s_count (const char *sql)
{
    return rcd_test_sql_int (s_fx.url, sql, 0, NULL);
}

/*  Posts a message and returns its id (asserting 202). */
static long long
s_post_message (const char *key, const char *body)
{
    long status = 0;
    json_t *answer = s_call ("POST", "/v1/messages", key, body, &status);
    assert_int_equal (status, 202);
    long long id = json_integer_value (json_object_get (answer, "id"));
    assert_true (id > 0);
    json_decref (answer);
    return id;
}

static bool
s_healthy (int port)
{
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    return rcd_test_wait_http_ok (url, 10000);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.url = rcd_test_db_create ("ingestor");
    int nudge_port = rcd_test_free_port ();
    int events_port = rcd_test_free_port ();
    s_fx.nudges = zsock_new (ZMQ_PULL);
    assert_int_equal (
        zsock_bind (s_fx.nudges, "tcp://127.0.0.1:%d", nudge_port), nudge_port);
    s_fx.events = zsock_new (ZMQ_SUB);
    zsock_set_subscribe (s_fx.events, "");
    assert_int_equal (
        zsock_bind (s_fx.events, "tcp://127.0.0.1:%d", events_port),
        events_port);
    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, 4, nudge_port,
                                events_port);
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
    zsock_destroy (&s_fx.events);
    free (s_fx.key_a);
    free (s_fx.key_b);
    rcd_test_db_drop (&s_fx.url);
    curl_global_cleanup ();
    return 0;
}

/*  --- health --- */

static void
test_healthz_and_readyz_answer_200 (void **state)
{
    (void)state;
    long status = 0;
    json_t *a = s_call ("GET", "/healthz", NULL, NULL, &status);
    assert_int_equal (status, 200);
    json_decref (a);
    a = s_call ("GET", "/readyz", NULL, NULL, &status);
    assert_int_equal (status, 200);
    json_decref (a);
    a = s_call ("GET", "/no/such/route", NULL, NULL, &status);
    assert_int_equal (status, 404);
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
}

/*  --- tenants --- */

static void
test_tenant_creation_needs_the_admin_key (void **state)
{
    (void)state;
    long long before = s_count ("SELECT count(*) FROM tenants");
    const char *body = "{\"name\":\"intruder\"}";
    long status = 0;
    json_t *a = s_call ("POST", "/v1/tenants", NULL, body, &status);
    assert_int_equal (status, 401);
    rcd_test_assert_api_error (a, "unauthorized", NULL);
    json_decref (a);
    a = s_call ("POST", "/v1/tenants", "wrong-key", body, &status);
    assert_int_equal (status, 401);
    rcd_test_assert_api_error (a, "unauthorized", NULL);
    json_decref (a);
    a = s_call ("POST", "/v1/tenants", s_fx.key_a, body, &status);
    assert_int_equal (status, 403);
    rcd_test_assert_api_error (a, "forbidden", NULL);
    json_decref (a);
    /* and the admin key is not a tenant key */
    a = s_call ("GET", "/v1/tenant", ADMIN_KEY, NULL, &status);
    assert_int_equal (status, 403);
    rcd_test_assert_api_error (a, "forbidden", NULL);
    json_decref (a);
    assert_int_equal (s_count ("SELECT count(*) FROM tenants"), before);
}

static void
test_tenant_key_is_stored_hashed_and_shown_once (void **state)
{
    (void)state;
    long status = 0;
    json_t *a = s_call ("POST", "/v1/tenants", ADMIN_KEY,
                        "{\"name\":\"Padaria São João\",\"timezone\":"
                        "\"America/Manaus\",\"business_hours\":{\"mon\":"
                        "[[\"08:00\",\"12:00\"],[\"13:00\",\"24:00\"]]}}",
                        &status);
    assert_int_equal (status, 201);
    const char *key = json_string_value (json_object_get (a, "api_key"));
    assert_non_null (key);
    assert_int_equal (strncmp (key, "rcd_", 4), 0);
    assert_int_equal (strlen (key), 4 + 48);
    char hash[65], id[24];
    assert_int_equal (rcd_crypto_sha256_hex (key, hash), 0);
    snprintf (id, sizeof id, "%lld",
              (long long)json_integer_value (json_object_get (a, "id")));
    const char *params[] = {id, hash, key};
    assert_int_equal (
        rcd_test_sql_int (s_fx.url,
                          "SELECT count(*) FROM tenants WHERE id = $1::bigint"
                          " AND api_key_hash = decode($2, 'hex')"
                          " AND api_key_hash <> convert_to($3, 'UTF8')"
                          " AND timezone = 'America/Manaus'"
                          " AND business_hours->'mon'->1->>1 = '24:00'",
                          3, params),
        1);

    /* the key works at once; its settings never show it or its hash */
    char *copy = strdup (key);
    json_decref (a);
    a = s_call ("GET", "/v1/tenant", copy, NULL, &status);
    assert_int_equal (status, 200);
    assert_string_equal (json_string_value (json_object_get (a, "name")),
                         "Padaria São João");
    assert_true (json_is_string (json_object_get (a, "webhook_token")));
    assert_true (json_is_array (json_object_get (a, "optout_keywords")));
    assert_null (json_object_get (a, "api_key"));
    assert_null (json_object_get (a, "api_key_hash"));
    char *text = json_dumps (a, 0);
    assert_null (strstr (text, copy));
    assert_null (strstr (text, hash));
    free (text);
    json_decref (a);
    free (copy);
}

static void
test_admin_api_is_forbidden_without_an_admin_key (void **state)
{
    (void)state;
    rcd_test_ingestor_t ing;
    rcd_test_ingestor_start_on (&ing, s_fx.url, NULL, 4, 0, 0);
    assert_string_equal (ing.cfg.admin_key, ""); /* unset */
    rcd_test_api_expect_error (ing.port, 403, "POST", "/v1/tenants", "anything",
                               "{\"name\":\"x\"}", "forbidden", NULL);
    rcd_test_ingestor_stop (&ing);
}

/*  --- instances --- */

static void
test_instance_registration_never_answers_credentials (void **state)
{
    (void)state;
    long status = 0;
    json_t *a = s_call ("POST", "/v1/instances", s_fx.key_a,
                        "{\"name\":\"evo-1\",\"provider\":\"evolution\","
                        "\"base_url\":\"http://127.0.0.1:9/\","
                        "\"api_key\":\"EVO-SECRET-1\"}",
                        &status);
    assert_int_equal (status, 201);
    char *text = json_dumps (a, 0);
    assert_null (strstr (text, "EVO-SECRET-1"));
    free (text);
    assert_null (json_object_get (a, "api_key"));
    assert_string_equal (json_string_value (json_object_get (a, "base_url")),
                         "http://127.0.0.1:9");
    assert_true (json_number_value (json_object_get (a, "rate_per_second")) ==
                 1.0);
    json_decref (a);

    a = s_call ("POST", "/v1/instances", s_fx.key_a,
                "{\"name\":\"meta-1\",\"provider\":\"meta\","
                "\"base_url\":\"https://graph.example\","
                "\"access_token\":\"META-TOKEN-1\",\"phone_number_id\":"
                "\"1055\",\"app_secret\":\"META-APP-SECRET\","
                "\"verify_token\":\"META-VERIFY\",\"hourly_cap\":500}",
                &status);
    assert_int_equal (status, 201);
    assert_true (json_number_value (json_object_get (a, "rate_per_second")) ==
                 80.0);
    json_decref (a);

    /* the listing shows health and circuit state, no secret */
    rcd_test_http_t res = {0};
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/instances",
              s_fx.ing.port);
    res = rcd_test_http ("GET", url, s_fx.key_a, NULL, NULL);
    assert_int_equal (res.status, 200);
    assert_null (strstr (res.body, "EVO-SECRET-1"));
    assert_null (strstr (res.body, "META-TOKEN-1"));
    assert_null (strstr (res.body, "META-APP-SECRET"));
    assert_null (strstr (res.body, "META-VERIFY"));
    json_t *list = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    json_t *items = json_object_get (list, "items");
    assert_int_equal (json_array_size (items), 2);
    json_t *first = json_array_get (items, 0);
    assert_string_equal (
        json_string_value (json_object_get (first, "circuit_state")), "closed");
    assert_true (json_is_string (json_object_get (first, "health")));
    json_decref (list);

    /* the credentials were stored for the senders */
    assert_int_equal (s_count ("SELECT count(*) FROM instances WHERE"
                               " api_key = 'EVO-SECRET-1' AND rate_per_second"
                               " = 1 AND provider = 'evolution'"),
                      1);
    assert_int_equal (s_count ("SELECT count(*) FROM instances WHERE"
                               " access_token = 'META-TOKEN-1' AND"
                               " app_secret = 'META-APP-SECRET' AND"
                               " rate_per_second = 80 AND hourly_cap = 500"),
                      1);

    /* same name again: conflict; another tenant sees none of them */
    a = s_call ("POST", "/v1/instances", s_fx.key_a,
                "{\"name\":\"evo-1\",\"provider\":\"evolution\","
                "\"base_url\":\"http://127.0.0.1:9\",\"api_key\":\"k\"}",
                &status);
    assert_int_equal (status, 409);
    rcd_test_assert_api_error (a, "conflict", "name");
    json_decref (a);
    a = s_call ("GET", "/v1/instances", s_fx.key_b, NULL, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 0);
    json_decref (a);
}

/*  --- messages --- */

static void
test_message_is_accepted_pending_with_history (void **state)
{
    (void)state;
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages", s_fx.key_a,
                        "{\"to\":\"+55 (11) 91234-5678\",\"text\":\"Olá!\","
                        "\"send_at\":\"2030-01-02T03:04:05-03:00\","
                        "\"valid_until\":\"2030-01-03T03:04:05Z\","
                        "\"priority\":\"low\",\"delay_ms\":1200}",
                        &status);
    assert_int_equal (status, 202);
    assert_string_equal (json_string_value (json_object_get (a, "status")),
                         "pending");
    assert_string_equal (json_string_value (json_object_get (a, "to")),
                         "+5511912345678");
    assert_string_equal (json_string_value (json_object_get (a, "send_at")),
                         "2030-01-02T06:04:05.000Z");
    char id[24];
    snprintf (id, sizeof id, "%lld",
              (long long)json_integer_value (json_object_get (a, "id")));
    json_decref (a);
    const char *params[] = {id};
    assert_int_equal (
        rcd_test_sql_int (s_fx.url,
                          "SELECT count(*) FROM messages WHERE id = $1::bigint"
                          " AND status = 'pending' AND to_phone ="
                          " '+5511912345678' AND body = 'Olá!'"
                          " AND priority = 2 AND delay_ms = 1200"
                          " AND send_at = '2030-01-02T06:04:05Z'"
                          " AND valid_until = '2030-01-03T03:04:05Z'"
                          " AND NOT pinned AND instance_id IS NULL",
                          1, params),
        1);
    assert_int_equal (
        rcd_test_sql_int (s_fx.url,
                          "SELECT count(*) FROM message_history WHERE"
                          " message_id = $1::bigint AND status = 'pending'"
                          " AND detail = 'accepted'",
                          1, params),
        1);
    /* offsets count: 10:00+03:00 is 07:00Z, before 08:00Z */
    s_post_message (s_fx.key_a, "{\"to\":\"+5511912345678\",\"text\":\"tz\","
                                "\"send_at\":\"2030-01-01T10:00:00+03:00\","
                                "\"valid_until\":\"2030-01-01T08:00:00Z\"}");
}

static void
test_same_idempotency_key_answers_the_same_message (void **state)
{
    (void)state;
    const char *body = "{\"to\":\"11 98888-0001\",\"text\":\"once\","
                       "\"idempotency_key\":\"invoice-42\"}";
    long long first = s_post_message (s_fx.key_a, body);
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages", s_fx.key_a, body, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_integer_value (json_object_get (a, "id")), first);
    json_decref (a);
    assert_int_equal (s_count ("SELECT count(*) FROM messages WHERE"
                               " idempotency_key = 'invoice-42'"),
                      1);
    /* the same key is another message for another tenant */
    long long other = s_post_message (s_fx.key_b, body);
    assert_true (other != first);
}

typedef struct {
    const char *key;
    long status;
    long long id;
} race_t;

static void *
s_race (void *arg)
{
    race_t *r = arg;
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/messages",
              s_fx.ing.port);
    rcd_test_http_t res =
        rcd_test_http ("POST", url, r->key,
                       "{\"to\":\"11 98888-0002\",\"text\":\"raced\","
                       "\"idempotency_key\":\"race-1\"}",
                       NULL);
    r->status = res.status;
    json_t *a = json_loads (res.body, 0, NULL);
    r->id = json_integer_value (json_object_get (a, "id"));
    json_decref (a);
    rcd_test_http_free (&res);
    return NULL;
}

static void
test_concurrent_requests_with_one_key_store_one_message (void **state)
{
    (void)state;
    enum { N = 8 };
    pthread_t threads[N];
    race_t races[N];
    for (int i = 0; i < N; i++) {
        races[i] = (race_t){s_fx.key_a, 0, 0};
        assert_int_equal (pthread_create (&threads[i], NULL, s_race, &races[i]),
                          0);
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        pthread_join (threads[i], NULL);
        assert_true (races[i].status == 202 || races[i].status == 200);
        created += races[i].status == 202;
        assert_int_equal (races[i].id, races[0].id);
    }
    assert_int_equal (created, 1);
    assert_int_equal (s_count ("SELECT count(*) FROM messages WHERE"
                               " idempotency_key = 'race-1'"),
                      1);
}

static void
test_get_message_shows_fields_and_history (void **state)
{
    (void)state;
    long long id =
        s_post_message (s_fx.key_a, "{\"to\":\"(21) 8765-4321\",\"text\":"
                                    "\"pinned\",\"instance\":\"evo-1\","
                                    "\"priority\":\"high\"}");
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    long status = 0;
    json_t *a = s_call ("GET", path, s_fx.key_a, NULL, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_integer_value (json_object_get (a, "id")), id);
    assert_string_equal (json_string_value (json_object_get (a, "to")),
                         "+5521987654321"); /* the ninth digit added */
    assert_string_equal (json_string_value (json_object_get (a, "instance")),
                         "evo-1");
    assert_string_equal (json_string_value (json_object_get (a, "priority")),
                         "high");
    assert_int_equal (json_integer_value (json_object_get (a, "attempts")), 0);
    const char *nulls[] = {"provider_message_id", "sent_at", "delivered_at",
                           "read_at", "last_error"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
        json_t *v = json_object_get (a, nulls[i]);
        if (!v || !json_is_null (v))
            fail_msg ("%s should be present and null", nulls[i]);
    }
    json_t *history = json_object_get (a, "history");
    assert_int_equal (json_array_size (history), 1);
    json_t *h = json_array_get (history, 0);
    assert_string_equal (json_string_value (json_object_get (h, "status")),
                         "pending");
    assert_string_equal (json_string_value (json_object_get (h, "detail")),
                         "accepted");
    const char *at = json_string_value (json_object_get (h, "at"));
    assert_non_null (at);
    assert_int_equal (at[strlen (at) - 1], 'Z');
    json_decref (a);
    assert_int_equal (s_count ("SELECT count(*) FROM messages m JOIN"
                               " instances i ON i.id = m.instance_id WHERE"
                               " m.pinned AND i.name = 'evo-1' AND m.body ="
                               " 'pinned'"),
                      1);
}

/*  POSTs body to path with extra header lines, asserting status. */
static json_t *
s_post_with (const char *path, const char *body, const char *const *headers,
             long status)
{
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", s_fx.ing.port, path);
    rcd_test_http_t res =
        rcd_test_http ("POST", url, s_fx.key_a, body, headers);
    if (res.status != status)
        fail_msg ("POST %s: %ld %s", path, res.status, res.body);
    json_t *answer = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    assert_non_null (answer);
    return answer;
}

/*  The trace_id GET shows for message id (NULL when null). Caller frees. */
static char *
s_trace_of (long long id)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    long status = 0;
    json_t *a = s_call ("GET", path, s_fx.key_a, NULL, &status);
    assert_int_equal (status, 200);
    const char *trace = json_string_value (json_object_get (a, "trace_id"));
    char *copy = trace ? strdup (trace) : NULL;
    json_decref (a);
    return copy;
}

static void
test_messages_keep_the_trace_id_of_their_request (void **state)
{
    (void)state;
    const char *body = "{\"to\":\"+5511955550000\",\"text\":\"traced\"}";
    /* a W3C traceparent's trace-id wins over X-Request-Id */
    const char *both[] = {
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "X-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736", NULL};
    json_t *a = s_post_with ("/v1/messages", body, both, 202);
    char *trace = s_trace_of (json_integer_value (json_object_get (a, "id")));
    assert_string_equal (trace, "0af7651916cd43dd8448eb211c80319c");
    free (trace);
    json_decref (a);

    /* a UUID X-Request-Id, lowercased without its hyphens, for every
       message of a batch */
    const char *uuid[] = {"X-Request-Id: 4BF92F35-77B3-4DA6-A3CE-929D0E0E4736",
                          NULL};
    a = s_post_with ("/v1/messages/batch",
                     "{\"items\":[{\"to\":\"+5511955550001\",\"text\":\"a\"},"
                     "{\"to\":\"+5511955550002\",\"text\":\"b\"}]}",
                     uuid, 207);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 2);
    for (size_t i = 0; i < 2; i++) {
        trace = s_trace_of (json_integer_value (
            json_object_get (json_array_get (items, i), "id")));
        assert_string_equal (trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        free (trace);
    }
    json_decref (a);

    /* malformed headers are ignored: a fresh random id, never their text */
    const char *junk[] = {"traceparent: 00-not-a-trace-01",
                          "X-Request-Id: req-42\"},{\"x", NULL};
    char *seen[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        a = s_post_with ("/v1/messages", body, k ? NULL : junk, 202);
        seen[k] = s_trace_of (json_integer_value (json_object_get (a, "id")));
        json_decref (a);
        assert_non_null (seen[k]);
        assert_int_equal (strlen (seen[k]), 32);
        assert_int_equal (strspn (seen[k], "0123456789abcdef"), 32);
    }
    assert_string_not_equal (seen[0], seen[1]);
    free (seen[0]);
    free (seen[1]);
    /* the column refuses an id of another length (the block fails the
       test unless the update is refused) */
    assert_null (
        rcd_test_sql (s_fx.url,
                      "DO $$ BEGIN"
                      "  UPDATE messages SET trace_id = 'req-42'"
                      "   WHERE id = (SELECT max(id) FROM messages);"
                      "  RAISE EXCEPTION 'a malformed trace_id was stored';"
                      " EXCEPTION WHEN check_violation THEN NULL;"
                      " END $$",
                      0, NULL));
}

static void
test_cancel_answers_200_then_409 (void **state)
{
    (void)state;
    long long id = s_post_message (
        s_fx.key_a, "{\"to\":\"+5511977770000\",\"text\":\"cancel me\"}");
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    long status = 0;
    json_t *a = s_call ("DELETE", path, s_fx.key_a, NULL, &status);
    assert_int_equal (status, 200);
    assert_string_equal (json_string_value (json_object_get (a, "status")),
                         "cancelled");
    json_t *history = json_object_get (a, "history");
    assert_int_equal (json_array_size (history), 2);
    assert_string_equal (json_string_value (json_object_get (
                             json_array_get (history, 1), "status")),
                         "cancelled");
    json_decref (a);
    a = s_call ("DELETE", path, s_fx.key_a, NULL, &status);
    assert_int_equal (status, 409);
    rcd_test_assert_api_error (a, "conflict", NULL);
    json_decref (a);
    a = s_call ("DELETE", "/v1/messages/999999999", s_fx.key_a, NULL, &status);
    assert_int_equal (status, 404);
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
    char sql[160];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM message_history WHERE message_id = %lld",
              id);
    assert_int_equal (s_count (sql), 2);
}

static void
test_other_tenants_messages_are_not_found (void **state)
{
    (void)state;
    long long id = s_post_message (
        s_fx.key_a, "{\"to\":\"+5511977770001\",\"text\":\"private\"}");
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    long status = 0;
    json_t *a = s_call ("GET", path, s_fx.key_b, NULL, &status);
    assert_int_equal (status, 404);
    rcd_test_assert_api_error (a, "not_found", NULL);
    json_decref (a);
    a = s_call ("DELETE", path, s_fx.key_b, NULL, &status);
    assert_int_equal (status, 404);
    json_decref (a);
    char sql[128];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE id = %lld AND status ="
              " 'pending'",
              id);
    assert_int_equal (s_count (sql), 1);
    /* and b's listing does not show it */
    a = s_call ("GET", "/v1/messages?limit=500", s_fx.key_b, NULL, &status);
    assert_int_equal (status, 200);
    json_t *items = json_object_get (a, "items");
    for (size_t i = 0; i < json_array_size (items); i++)
        assert_true (json_integer_value (json_object_get (
                         json_array_get (items, i), "id")) != id);
    json_decref (a);
}

static void
test_listing_pages_with_a_cursor (void **state)
{
    (void)state;
    long long tenant = 0;
    char *key =
        rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "lister", &tenant);
    long long ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = s_post_message (
            key, "{\"to\":\"+5511966660000\",\"text\":\"page\"}");
    char path[128] = "/v1/messages?limit=2";
    long long seen[5];
    int n = 0, pages = 0;
    while (true) {
        long status = 0;
        json_t *a = s_call ("GET", path, key, NULL, &status);
        assert_int_equal (status, 200);
        json_t *items = json_object_get (a, "items");
        assert_true (json_array_size (items) <= 2);
        for (size_t i = 0; i < json_array_size (items); i++) {
            assert_true (n < 5);
            seen[n++] = json_integer_value (
                json_object_get (json_array_get (items, i), "id"));
        }
        pages++;
        json_t *cursor = json_object_get (a, "next_cursor");
        if (json_is_null (cursor)) {
            json_decref (a);
            break;
        }
        snprintf (path, sizeof path, "/v1/messages?limit=2&cursor=%s",
                  json_string_value (cursor));
        json_decref (a);
        assert_true (pages < 10);
    }
    assert_int_equal (pages, 3);
    assert_int_equal (n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal (seen[i], ids[i]);

    /* filters */
    char del[64];
    snprintf (del, sizeof del, "/v1/messages/%lld", ids[2]);
    long status = 0;
    json_decref (s_call ("DELETE", del, key, NULL, &status));
    assert_int_equal (status, 200);
    json_t *a =
        s_call ("GET", "/v1/messages?status=cancelled", key, NULL, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 1);
    json_decref (a);
    a = s_call ("GET", "/v1/messages?since=2100-01-01T00:00:00Z", key, NULL,
                &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 0);
    json_decref (a);

    /* bad parameters name themselves */
    const char *bad[][2] = {{"/v1/messages?limit=0", "limit"},
                            {"/v1/messages?limit=501", "limit"},
                            {"/v1/messages?status=lost", "status"},
                            {"/v1/messages?since=yesterday", "since"},
                            {"/v1/messages?cursor=abc", "cursor"},
                            {"/v1/messages?colour=red", "colour"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = s_call ("GET", bad[i][0], key, NULL, &status);
        assert_int_equal (status, 400);
        rcd_test_assert_api_error (a, "invalid_field", bad[i][1]);
        json_decref (a);
    }
    free (key);
}

static void
test_batch_answers_each_item_and_stores_only_good_ones (void **state)
{
    (void)state;
    long long tenant = 0;
    char *key =
        rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "batcher", &tenant);
    const char *body =
        "{\"items\":["
        "{\"to\":\"11 91234-0001\",\"text\":\"b0\"},"
        "{\"to\":\"not a phone\",\"text\":\"b1\"},"
        "{\"to\":\"11 91234-0002\",\"text\":\"b2\","
        "\"send_at\":\"2031-05-06T07:08:09+01:00\"},"
        "{\"to\":\"11 91234-0003\",\"text\":\"b3\",\"x\":1},"
        "42,"
        "{\"to\":\"11 91234-0005\",\"text\":\"b5\",\"instance\":\"ghost\"},"
        "{\"to\":\"11 91234-0006\",\"text\":\"b6\",\"idempotency_key\":\"bk\"},"
        "{\"to\":\"11 91234-0007\",\"text\":\"b7\",\"idempotency_key\":\"bk\"},"
        "{\"to\":\"11 91234-0008\",\"text\":\"\"}"
        "]}";
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages/batch", key, body, &status);
    assert_int_equal (status, 207);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 9);
    struct {
        bool ok;
        const char *code, *field;
    } expect[] = {
        {true, NULL, NULL},
        {false, "invalid_phone", "items[1].to"},
        {true, NULL, NULL},
        {false, "invalid_field", "items[3].x"},
        {false, "invalid_field", "items[4]"},
        {false, "invalid_field", "items[5].instance"},
        {true, NULL, NULL},
        {true, NULL, NULL},
        {false, "invalid_field", "items[8].text"},
    };
    for (size_t i = 0; i < 9; i++) {
        json_t *item = json_array_get (items, i);
        assert_int_equal (json_integer_value (json_object_get (item, "index")),
                          i);
        if (expect[i].ok)
            assert_true (json_integer_value (json_object_get (item, "id")) > 0);
        else {
            assert_null (json_object_get (item, "id"));
            json_t *wrapped =
                json_pack ("{s:O}", "error", json_object_get (item, "error"));
            rcd_test_assert_api_error (wrapped, expect[i].code,
                                       expect[i].field);
            json_decref (wrapped);
        }
    }
    /* the repeated key answers the first one's message */
    assert_int_equal (
        json_integer_value (json_object_get (json_array_get (items, 7), "id")),
        json_integer_value (json_object_get (json_array_get (items, 6), "id")));
    assert_true (json_is_true (
        json_object_get (json_array_get (items, 7), "duplicate")));
    json_decref (a);

    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE tenant_id = %lld", tenant);
    assert_int_equal (s_count (sql), 3);
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM message_history WHERE tenant_id = %lld",
              tenant);
    assert_int_equal (s_count (sql), 3);
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE tenant_id = %lld AND body ="
              " 'b2' AND send_at = '2031-05-06T06:08:09Z'",
              tenant);
    assert_int_equal (s_count (sql), 1);
    free (key);
}

static void
test_large_batch_is_stored_in_chunks_in_order (void **state)
{
    (void)state;
    long long tenant = 0;
    char *key =
        rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "bulk", &tenant);
    json_t *items = json_array ();
    for (int i = 0; i < 250; i++) {
        char to[32], text[32];
        snprintf (to, sizeof to, "+5511955%06d", i);
        snprintf (text, sizeof text, "bulk %d", i);
        json_array_append_new (
            items, json_pack ("{s:s, s:s}", "to", to, "text", text));
    }
    json_t *batch = json_pack ("{s:o}", "items", items);
    char *body = json_dumps (batch, JSON_COMPACT);
    json_decref (batch);
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages/batch", key, body, &status);
    free (body);
    assert_int_equal (status, 207);
    json_t *answers = json_object_get (a, "items");
    assert_int_equal (json_array_size (answers), 250);
    char sql[256];
    for (int i = 0; i < 250; i += 83) { /* the answer matches the item */
        long long id = json_integer_value (
            json_object_get (json_array_get (answers, (size_t)i), "id"));
        snprintf (sql, sizeof sql,
                  "SELECT count(*) FROM messages WHERE id = %lld AND body ="
                  " 'bulk %d'",
                  id, i);
        assert_int_equal (s_count (sql), 1);
    }
    json_decref (a);
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE tenant_id = %lld", tenant);
    assert_int_equal (s_count (sql), 250);
    free (key);
}

static void
test_batch_over_the_limit_is_refused (void **state)
{
    (void)state;
    long long before = s_count ("SELECT count(*) FROM messages");
    json_t *items = json_array ();
    for (int i = 0; i < 1001; i++)
        json_array_append_new (
            items,
            json_pack ("{s:s, s:s}", "to", "+5511912345678", "text", "x"));
    json_t *batch = json_pack ("{s:o}", "items", items);
    char *body = json_dumps (batch, JSON_COMPACT);
    json_decref (batch);
    long status = 0;
    json_t *a =
        s_call ("POST", "/v1/messages/batch", s_fx.key_a, body, &status);
    free (body);
    assert_int_equal (status, 413);
    rcd_test_assert_api_error (a, "payload_too_large", "items");
    json_decref (a);
    assert_int_equal (s_count ("SELECT count(*) FROM messages"), before);
}

typedef struct {
    const char *path;
    const char *body;
    long status;
    const char *code;
    const char *field;
} bad_input_t;

static void
test_bad_input_is_named_and_stores_nothing (void **state)
{
    (void)state;
    static const bad_input_t cases[] = {
        /* messages */
        {"/v1/messages", "not json", 400, "invalid_json", NULL},
        {"/v1/messages", "", 400, "invalid_json", NULL},
        {"/v1/messages", "[1, 2]", 400, "invalid_json", NULL},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"a\","
         "\"text\":\"b\"}",
         400, "invalid_json", NULL},
        {"/v1/messages", "{\"to\":\"+5511912345678\"}", 400, "missing_field",
         "text"},
        {"/v1/messages", "{\"text\":\"hi\"}", 400, "missing_field", "to"},
        {"/v1/messages", "{\"to\":null,\"text\":\"hi\"}", 400, "missing_field",
         "to"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"colour\":\"red\"}", 400,
         "invalid_field", "colour"},
        {"/v1/messages", "{\"to\":5511912345678,\"text\":\"hi\"}", 400,
         "invalid_field", "to"},
        {"/v1/messages", "{\"to\":\"+5511912345678\",\"text\":[\"hi\"]}", 400,
         "invalid_field", "text"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"delay_ms\":\"5\"}", 400,
         "invalid_field", "delay_ms"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"delay_ms\":60001}", 400,
         "invalid_field", "delay_ms"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"priority\":\"urgent\"}",
         400, "invalid_field", "priority"},
        {"/v1/messages", "{\"to\":\"+5511912345678\",\"text\":\"\"}", 400,
         "invalid_field", "text"},
        {"/v1/messages", "{\"to\":\"banana\",\"text\":\"hi\"}", 400,
         "invalid_phone", "to"},
        {"/v1/messages", "{\"to\":\"(11) 1234\",\"text\":\"hi\"}", 400,
         "invalid_phone", "to"},
        {"/v1/messages", "{\"to\":\"+55 (10) 91234-5678\",\"text\":\"hi\"}",
         400, "invalid_phone", "to"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"send_at\":"
         "\"tomorrow\"}",
         400, "invalid_field", "send_at"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"send_at\":"
         "\"2030-11-22T09:00:00\"}",
         400, "invalid_field", "send_at"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"send_at\":"
         "\"2031-02-29T09:00:00Z\"}",
         400, "invalid_field", "send_at"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"send_at\":"
         "\"2030-01-01T10:00:00Z\",\"valid_until\":\"2030-01-01T09:00:00Z\"}",
         400, "invalid_field", "valid_until"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"valid_until\":"
         "\"2030-13-01T00:00:00Z\"}",
         400, "invalid_field", "valid_until"},
        /* 10:00-03:00 is 13:00Z: a valid_until of 12:00Z is before it */
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"send_at\":"
         "\"2030-01-01T10:00:00-03:00\",\"valid_until\":"
         "\"2030-01-01T12:00:00Z\"}",
         400, "invalid_field", "valid_until"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"instance\":\"ghost\"}",
         400, "invalid_field", "instance"},
        {"/v1/messages", "{\"to\":\"+5511912345678\",\"template\":\"bill\"}",
         400, "invalid_field", "template"},
        {"/v1/messages",
         "{\"to\":\"+5511912345678\",\"text\":\"hi\",\"idempotency_key\":\"\"}",
         400, "invalid_field", "idempotency_key"},
        /* batches */
        {"/v1/messages/batch", "{}", 400, "missing_field", "items"},
        {"/v1/messages/batch", "{\"items\":{}}", 400, "invalid_field", "items"},
        {"/v1/messages/batch", "{\"items\":[],\"x\":1}", 400, "invalid_field",
         "x"},
        /* instances */
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"twilio\",\"base_url\":\"http://x\"}",
         400, "invalid_field", "provider"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"http://x\"}",
         400, "missing_field", "api_key"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"meta\",\"base_url\":\"http://x\","
         "\"access_token\":\"t\"}",
         400, "missing_field", "phone_number_id"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"meta\",\"base_url\":\"http://x\","
         "\"access_token\":\"t\",\"phone_number_id\":\"1\",\"api_key\":\"k\"}",
         400, "invalid_field", "api_key"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"ftp://x\",\"api_key\":\"k\"}",
         400, "invalid_field", "base_url"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"http://u:p@x\",\"api_key\":\"k\"}",
         400, "invalid_field", "base_url"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"http://x\",\"api_key\":\"k\",\"rate_per_second\":0}",
         400, "invalid_field", "rate_per_second"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"http://x\",\"api_key\":\"k\",\"rate_per_second\":\"fast\"}",
         400, "invalid_field", "rate_per_second"},
        {"/v1/instances",
         "{\"name\":\"a\",\"provider\":\"evolution\",\"base_url\":"
         "\"http://x\",\"api_key\":\"k\",\"hourly_cap\":1.5}",
         400, "invalid_field", "hourly_cap"},
        {"/v1/instances", "{\"provider\":\"evolution\"}", 400, "missing_field",
         "name"},
        /* tenants (admin) */
        {"/v1/tenants", "{\"timezone\":\"UTC\"}", 400, "missing_field", "name"},
        {"/v1/tenants", "{\"name\":\"\"}", 400, "invalid_field", "name"},
        {"/v1/tenants", "{\"name\":123}", 400, "invalid_field", "name"},
        {"/v1/tenants", "{\"name\":\"x\",\"extra\":1}", 400, "invalid_field",
         "extra"},
        {"/v1/tenants", "{\"name\":\"x\",\"timezone\":\"Nowhere/City\"}", 400,
         "invalid_field", "timezone"},
        {"/v1/tenants", "{\"name\":\"x\",\"business_hours\":{\"funday\":[]}}",
         400, "invalid_field", "business_hours.funday"},
        {"/v1/tenants",
         "{\"name\":\"x\",\"business_hours\":{\"mon\":[[\"8:00\",\"12:00\"]]}"
         "}",
         400, "invalid_field", "business_hours.mon[0]"},
        {"/v1/tenants", "{\"name\":\"x\",\"business_hours\":[]}", 400,
         "invalid_field", "business_hours"},
    };
    const char *counts = "SELECT (SELECT count(*) FROM tenants) * 1000000000"
                         " + (SELECT count(*) FROM instances) * 1000000"
                         " + (SELECT count(*) FROM messages) * 1000"
                         " + (SELECT count(*) FROM message_history)";
    long long before = s_count (counts);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_input_t *c = &cases[i];
        const char *key =
            strcmp (c->path, "/v1/tenants") == 0 ? ADMIN_KEY : s_fx.key_b;
        long status = 0;
        json_t *a = s_call ("POST", c->path, key, c->body, &status);
        if (status != c->status)
            fail_msg ("case %zu (%s): status %ld, expected %ld", i, c->body,
                      status, c->status);
        rcd_test_assert_api_error (a, c->code, c->field);
        json_decref (a);
    }
    assert_int_equal (s_count (counts), before);
}

static void
test_oversize_body_is_refused_before_parsing (void **state)
{
    (void)state;
    long long before = s_count ("SELECT count(*) FROM messages");
    /* not JSON at all: a 413, not an invalid_json, proves no parse */
    size_t size = (size_t)s_fx.ing.cfg.max_body_bytes + 1;
    char *body = malloc (size + 1);
    assert_non_null (body);
    memset (body, 'x', size);
    body[size] = 0;
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages", s_fx.key_a, body, &status);
    assert_int_equal (status, 413);
    rcd_test_assert_api_error (a, "payload_too_large", NULL);
    json_decref (a);

    /* the same without a Content-Length: counted as it arrives */
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/messages",
              s_fx.ing.port);
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    rcd_test_http_t res =
        rcd_test_http ("POST", url, s_fx.key_a, body, chunked);
    assert_int_equal (res.status, 413);
    a = json_loads (res.body, 0, NULL);
    rcd_test_assert_api_error (a, "payload_too_large", NULL);
    json_decref (a);
    rcd_test_http_free (&res);
    free (body);

    /* a body just under the limit is parsed (and refused as text) */
    a = s_call ("POST", "/v1/messages", s_fx.key_a, "{\"to\":1}", &status);
    assert_int_equal (status, 400);
    json_decref (a);
    assert_int_equal (s_count ("SELECT count(*) FROM messages"), before);
}

/*  --- what the ingestor sends --- */

static void
test_stored_messages_nudge_the_scheduler (void **state)
{
    (void)state;
    rcd_test_nudges_drain (s_fx.nudges);
    s_post_message (s_fx.key_b, "{\"to\":\"+5511944440000\",\"text\":\"n\"}");
    rcd_nudge_t nudge;
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal (nudge.tenant_id, s_fx.tenant_b);
    assert_int_equal (nudge.count, 1);

    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages/batch", s_fx.key_b,
                        "{\"items\":[{\"to\":\"+5511944440001\",\"text\":"
                        "\"a\"},{\"to\":\"+5511944440002\",\"text\":\"b\"},"
                        "{\"to\":\"bad\",\"text\":\"c\"}]}",
                        &status);
    assert_int_equal (status, 207);
    json_decref (a);
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal (nudge.tenant_id, s_fx.tenant_b);
    assert_int_equal (nudge.count, 2);

    /* nothing stored, nothing nudged */
    a = s_call ("POST", "/v1/messages", s_fx.key_b, "{\"to\":\"bad\"}",
                &status);
    assert_int_equal (status, 400);
    json_decref (a);
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 200), -1);
}

typedef struct {
    zsock_t *sub;
    bool heartbeat, accepted;
} events_seen_t;

static bool
s_events_seen (void *arg)
{
    events_seen_t *w = arg;
    zsock_set_rcvtimeo (w->sub, 0);
    rcd_proto_msg_t msg;
    while (rcd_proto_recv (w->sub, &msg) != -1) {
        if (msg.type == RCD_MSG_HEARTBEAT &&
            strcmp (msg.u.heartbeat.service, "ingestor") == 0)
            w->heartbeat = true;
        if (msg.type == RCD_MSG_EVENT &&
            strcmp (msg.u.event.kind, "message.accepted") == 0)
            w->accepted = true;
        rcd_proto_msg_clear (&msg);
    }
    return w->heartbeat && w->accepted;
}

static void
test_heartbeats_and_events_reach_the_monitor (void **state)
{
    (void)state;
    s_post_message (s_fx.key_b, "{\"to\":\"+5511944440003\",\"text\":\"e\"}");
    events_seen_t w = {s_fx.events, false, false};
    assert_true (rcd_test_wait_until (s_events_seen, &w, 5000));
}

/*  --- the database away, the binary --- */

static void
test_database_down_answers_503 (void **state)
{
    (void)state;
    char db[128];
    snprintf (db, sizeof db,
              "host=127.0.0.1 port=%d dbname=none connect_timeout=2",
              rcd_test_free_port ());
    rcd_test_ingestor_t ing;
    rcd_test_ingestor_start_on (&ing, db, ADMIN_KEY, 4, 0, 0);
    rcd_test_api_expect_error (ing.port, 503, "GET", "/readyz", NULL, NULL,
                               "unavailable", NULL);
    rcd_test_api_expect_error (
        ing.port, 503, "POST", "/v1/messages", s_fx.key_a,
        "{\"to\":\"+5511912345678\",\"text\":\"x\"}", "unavailable", NULL);
    rcd_test_ingestor_stop (&ing);
}

/*  Environment for the binary; entries point into buf. */
static void
s_binary_env (char buf[5][160], const char *env[6], int port)
{
    snprintf (buf[0], 160, "DATABASE_URL=%s", s_fx.url);
    snprintf (buf[1], 160, "RECADO_HTTP_PORT=%d", port);
    snprintf (buf[2], 160, "RECADO_ADMIN_KEY=%s", ADMIN_KEY);
    snprintf (buf[3], 160, "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (buf[4], 160, "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    for (int i = 0; i < 5; i++)
        env[i] = buf[i];
    env[5] = NULL;
}

static void
test_binary_exits_0_on_sigterm (void **state)
{
    (void)state;
    char *bin = rcd_test_bin ("recado-ingestor");
    int port = rcd_test_free_port ();
    char buf[5][160];
    const char *env[6];
    s_binary_env (buf, env, port);
    const char *argv[] = {bin, NULL};
    char log[64];
    snprintf (log, sizeof log, "/tmp/test_ingestor_%d.log", (int)getpid ());
    pid_t pid = rcd_test_spawn (argv, env, log);
    assert_true (pid > 0);
    assert_true (s_healthy (port));
    long status = 0;
    json_t *a =
        rcd_test_api (port, "POST", "/v1/messages", s_fx.key_a,
                      "{\"to\":\"+5511912345678\",\"text\":\"bin\"}", &status);
    assert_int_equal (status, 202);
    json_decref (a);
    assert_int_equal (rcd_test_stop (pid, SIGTERM, 15000), 0);
    unlink (log);
    free (bin);
}

static void
test_binary_answers_help_and_refuses_bad_config (void **state)
{
    (void)state;
    char *bin = rcd_test_bin ("recado-ingestor");
    const char *help[] = {bin, "--help", NULL};
    pid_t pid = rcd_test_spawn (help, NULL, "/dev/null");
    assert_true (pid > 0);
    assert_int_equal (rcd_test_stop (pid, 0, 10000), 0);

    const char *argv[] = {bin, NULL};
    const char *bad_port[] = {"RECADO_HTTP_PORT=70000", NULL};
    pid = rcd_test_spawn (argv, bad_port, "/dev/null");
    assert_int_equal (rcd_test_stop (pid, 0, 10000), 78);
    const char *bad_country[] = {"RECADO_DEFAULT_COUNTRY=5a", NULL};
    pid = rcd_test_spawn (argv, bad_country, "/dev/null");
    assert_int_equal (rcd_test_stop (pid, 0, 10000), 78);
    free (bin);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_healthz_and_readyz_answer_200),
        cmocka_unit_test (test_tenant_creation_needs_the_admin_key),
        cmocka_unit_test (test_tenant_key_is_stored_hashed_and_shown_once),
        cmocka_unit_test (test_admin_api_is_forbidden_without_an_admin_key),
        cmocka_unit_test (test_instance_registration_never_answers_credentials),
        cmocka_unit_test (test_message_is_accepted_pending_with_history),
        cmocka_unit_test (test_same_idempotency_key_answers_the_same_message),
        cmocka_unit_test (
            test_concurrent_requests_with_one_key_store_one_message),
        cmocka_unit_test (test_get_message_shows_fields_and_history),
        cmocka_unit_test (test_messages_keep_the_trace_id_of_their_request),
        cmocka_unit_test (test_cancel_answers_200_then_409),
        cmocka_unit_test (test_other_tenants_messages_are_not_found),
        cmocka_unit_test (test_listing_pages_with_a_cursor),
        cmocka_unit_test (
            test_batch_answers_each_item_and_stores_only_good_ones),
        cmocka_unit_test (test_large_batch_is_stored_in_chunks_in_order),
        cmocka_unit_test (test_batch_over_the_limit_is_refused),
        cmocka_unit_test (test_bad_input_is_named_and_stores_nothing),
        cmocka_unit_test (test_oversize_body_is_refused_before_parsing),
        cmocka_unit_test (test_stored_messages_nudge_the_scheduler),
        cmocka_unit_test (test_heartbeats_and_events_reach_the_monitor),
        cmocka_unit_test (test_database_down_answers_503),
        cmocka_unit_test (test_binary_exits_0_on_sigterm),
        cmocka_unit_test (test_binary_answers_help_and_refuses_bad_config),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

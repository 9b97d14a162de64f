/*  test_campaigns.c - campaigns (issue 7): POST /v1/campaigns with its
    audience parsed as it arrives, pause / resume / cancel, GET with
    counts, rates and the time to finish, against a real PostgreSQL over
    real HTTP on loopback, with the scheduler's PULL socket bound here to
    see the nudges.

    What the scheduler and the senders would do to a campaign's messages
    (claim, send, fail, requeue) is done with SQL, exactly as their
    statements move a row, so that the counts can be checked one by one.
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
/*  The campaign body limit this test runs the ingestor with. */
#define CAMPAIGN_MAX_BODY 12000000
/*  Tenant a's template: two variations, rotating by message id. */
#define PROMO_0 "Oi {{name}}, cupom {{code}}."
#define PROMO_1 "{{name}}: use {{code}} hoje."

typedef struct {
    char *url;               /* the test database */
    rcd_test_ingestor_t ing; /* the ingestor and its port */
    zsock_t *nudges;         /* PULL bound where the ingestor pushes */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
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
s_int (const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    return rcd_test_sql_int (s_fx.url, sql, p2 ? 2 : p1 ? 1 : 0, params);
}

static char *
s_text (const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    return rcd_test_sql (s_fx.url, sql, p2 ? 2 : p1 ? 1 : 0, params);
}

static void
s_exec (const char *sql, const char *p1, const char *p2)
{
    free (s_text (sql, p1, p2));
}

static long long
s_member (json_t *obj, const char *name)
{
    json_t *v = json_object_get (obj, name);
    if (!json_is_integer (v))
        fail_msg ("%s is not an integer", name);
    return json_integer_value (v);
}

/*  The messages of campaign id in status. */
static long long
s_messages (long long id, const char *status)
{
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    return s_int ("SELECT count(*) FROM messages"
                  " WHERE campaign_id = $1::bigint AND status = $2::text",
                  c, status);
}

/*  All the messages of campaign id. */
static long long
s_messages_all (long long id)
{
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    return s_int (
        "SELECT count(*) FROM messages WHERE campaign_id = $1::bigint", c,
        NULL);
}

/*  The stored state of campaign id. Caller frees. */
static char *
s_state (long long id)
{
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    return s_text ("SELECT state FROM campaigns WHERE id = $1::bigint", c,
                   NULL);
}

static void
s_assert_state (long long id, const char *expected)
{
    char *state = s_state (id);
    assert_non_null (state);
    assert_string_equal (state, expected);
    free (state);
}

/*  A body of count contacts +5511 9<base + i>, each with name and code
    vars. Caller frees. */
static char *
s_audience_body (const char *name, long base, long count, const char *extra)
{
    size_t cap = (size_t)count * 80 + 512, len = 0;
    char *body = malloc (cap);
    assert_non_null (body);
    len += (size_t)snprintf (body, cap,
                             "{\"name\":\"%s\",\"template\":\"promo\"%s%s,"
                             "\"audience\":[",
                             name, extra ? "," : "", extra ? extra : "");
    for (long i = 0; i < count; i++)
        len += (size_t)snprintf (body + len, cap - len,
                                 "%s{\"phone\":\"+55119%08ld\",\"vars\":{"
                                 "\"name\":\"C%ld\",\"code\":\"K%ld\"}}",
                                 i ? "," : "", base + i, i, i);
    snprintf (body + len, cap - len, "]}");
    return body;
}

/*  Posts a campaign body and expects status; answers the body. */
static json_t *
s_post (const char *key, const char *body, long expected)
{
    return s_expect (expected, "POST", "/v1/campaigns", key, body);
}

/*  The answer's id. */
static long long
s_id_of (json_t *a)
{
    return s_member (a, "id");
}

/*  GET /v1/campaigns/{id} as tenant a. */
static json_t *
s_get (long long id)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/campaigns/%lld", id);
    return s_expect (200, "GET", path, s_fx.key_a, NULL);
}

/*  POST /v1/campaigns/{id}/<verb> as key, expecting status. */
static json_t *
s_change (long long id, const char *verb, const char *key, long expected)
{
    char path[80];
    snprintf (path, sizeof path, "/v1/campaigns/%lld/%s", id, verb);
    return s_expect (expected, "POST", path, key, NULL);
}

/*  Asserts GET's counts equal the stored messages by status. */
static void
s_assert_counts_match (long long id)
{
    static const char *const statuses[] = {
        "pending", "paused", "sending",   "unknown", "sent",   "delivered",
        "read",    "failed", "cancelled", "expired", "blocked"};
    json_t *a = s_get (id);
    json_t *counts = json_object_get (a, "counts");
    long long remaining = 0;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        long long want = s_messages (id, statuses[i]);
        if (s_member (counts, statuses[i]) != want)
            fail_msg ("counts.%s: %lld, stored %lld", statuses[i],
                      s_member (counts, statuses[i]), want);
        if (i < 4)
            remaining += want;
    }
    assert_int_equal (s_member (a, "remaining"), remaining);
    json_decref (a);
}

/*  What the scheduler's claim does to n pending messages of campaign id. */
static void
s_claim (long long id, int n)
{
    char c[24], k[24];
    snprintf (c, sizeof c, "%lld", id);
    snprintf (k, sizeof k, "%d", n);
    s_exec ("UPDATE messages SET status = 'sending', attempts = attempts + 1,"
            "       lease_until = now() + interval '1 minute'"
            " WHERE id IN (SELECT id FROM messages WHERE campaign_id ="
            "              $1::bigint AND status = 'pending' ORDER BY id"
            "              LIMIT $2::int)",
            c, k);
}

/*  What a sender does with n leased messages of campaign id: status
    'sent', 'failed', or 'pending' (a retry after a transient failure). */
static void
s_outcome (long long id, int n, const char *status)
{
    char c[24], k[24];
    snprintf (c, sizeof c, "%lld", id);
    snprintf (k, sizeof k, "%d", n);
    const char *params[] = {c, k, status};
    free (rcd_test_sql (
        s_fx.url,
        "UPDATE messages SET status = $3::text, lease_until = NULL,"
        "       updated_at = now(),"
        "       sent_at = CASE WHEN $3::text = 'sent' THEN now() END,"
        "       send_at = CASE WHEN $3::text = 'pending'"
        "                      THEN now() ELSE send_at END"
        " WHERE id IN (SELECT id FROM messages WHERE campaign_id ="
        "              $1::bigint AND status = 'sending' ORDER BY id"
        "              LIMIT $2::int)",
        3, params));
}

/*  A dead letter for the first failed message of campaign id, replayed
    through the API; answers how many the replay requeued. */
static long long
s_replay_failed (long long id)
{
    char c[24], t[24], f[24];
    snprintf (c, sizeof c, "%lld", id);
    snprintf (t, sizeof t, "%lld", s_fx.tenant_a);
    snprintf (f, sizeof f, "%lld",
              s_int ("SELECT min(id) FROM messages"
                     " WHERE campaign_id = $1::bigint AND status = 'failed'",
                     c, NULL));
    long long dl = s_int ("INSERT INTO dead_letters (tenant_id, message_id,"
                          " reason, attempts) VALUES ($1::bigint, $2::bigint,"
                          " 'test', 1) RETURNING id",
                          t, f);
    char replay[64];
    snprintf (replay, sizeof replay, "{\"ids\":[%lld]}", dl);
    json_t *a =
        s_expect (200, "POST", "/v1/dead-letters/replay", s_fx.key_a, replay);
    long long replayed = s_member (a, "replayed");
    json_decref (a);
    return replayed;
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.url = rcd_test_db_create ("campaigns");
    int nudge_port = rcd_test_free_port ();
    s_fx.nudges = zsock_new (ZMQ_PULL);
    assert_int_equal (
        zsock_bind (s_fx.nudges, "tcp://127.0.0.1:%d", nudge_port), nudge_port);
    char limit[24];
    snprintf (limit, sizeof limit, "%d", CAMPAIGN_MAX_BODY);
    setenv ("RECADO_CAMPAIGN_MAX_BODY_BYTES", limit, 1);
    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, 4, nudge_port,
                                0);
    s_fx.key_a = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant a",
                                         &s_fx.tenant_a);
    s_fx.key_b = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant b",
                                         &s_fx.tenant_b);
    json_decref (s_expect (200, "PUT", "/v1/templates/promo", s_fx.key_a,
                           "{\"variations\":[\"" PROMO_0 "\",\"" PROMO_1
                           "\"]}"));
    json_decref (s_expect (200, "PUT", "/v1/templates/promo", s_fx.key_b,
                           "{\"variations\":[\"b: {{name}}\"]}"));
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
    unsetenv ("RECADO_CAMPAIGN_MAX_BODY_BYTES");
    curl_global_cleanup ();
    return 0;
}

/*  --- the audience --- */

static void
test_audience_filters_invalid_repeated_and_opted_out_numbers (void **state)
{
    (void)state;
    /* a stored contact whose name and vars fill the template, and one
       who opted out */
    json_decref (s_expect (200, "PUT", "/v1/contacts/5511987000003", s_fx.key_a,
                           "{\"name\":\"Stored\",\"vars\":{\"code\":\"S3\"}}"));
    json_decref (s_expect (200, "POST", "/v1/contacts/5511987000004/opt-out",
                           s_fx.key_a, NULL));
    rcd_test_nudges_drain (s_fx.nudges);
    json_t *a =
        s_post (s_fx.key_a,
                "{\"name\":\"filters\",\"template\":\"promo\",\"audience\":["
                "{\"phone\":\"+55 11 98700-0001\",\"vars\":{\"name\":\"Ana\","
                "\"code\":\"A1\"}},"
                "{\"phone\":\"(11) 98700-0002\",\"vars\":{\"name\":\"Bia\","
                "\"code\":7}},"
                "{\"phone\":\"5511987000001\",\"vars\":{\"name\":\"Ana again\","
                "\"code\":\"X\"}},"
                "{\"phone\":\"abc\"},"
                "{\"phone\":\"5511987000003\"},"
                "{\"phone\":\"123\",\"vars\":{\"name\":\"x\"}},"
                "{\"phone\":\"+5511987000004\",\"vars\":{\"name\":\"Out\","
                "\"code\":\"O\"}},"
                "{\"phone\":\"11 8700-0005\",\"vars\":{\"name\":\"Ninth\","
                "\"code\":\"N\"},\"phone\":null}"
                "]}",
                400);
    /* a phone given twice in one contact is refused whole */
    rcd_test_assert_api_error (a, "invalid_field", "audience[7].phone");
    json_decref (a);
    assert_int_equal (s_int ("SELECT count(*) FROM campaigns", NULL, NULL), 0);

    a = s_post (s_fx.key_a,
                "{\"name\":\"filters\",\"template\":\"promo\",\"audience\":["
                "{\"phone\":\"+55 11 98700-0001\",\"vars\":{\"name\":\"Ana\","
                "\"code\":\"A1\"}},"
                "{\"phone\":\"(11) 98700-0002\",\"vars\":{\"name\":\"Bia\","
                "\"code\":7}},"
                "{\"phone\":\"5511987000001\",\"vars\":{\"name\":\"Ana again\","
                "\"code\":\"X\"}},"
                "{\"phone\":\"abc\"},"
                "{\"phone\":\"5511987000003\"},"
                "{\"phone\":\"123\",\"vars\":{\"name\":\"x\"}},"
                "{\"phone\":\"+5511987000004\",\"vars\":{\"name\":\"Out\","
                "\"code\":\"O\"}},"
                "{\"phone\":\"11 8700-0005\",\"vars\":{\"name\":\"Ninth\","
                "\"code\":\"N\"}}"
                "]}",
                201);
    long long id = s_id_of (a);
    assert_string_equal (rcd_test_str (a, "state"), "running");
    assert_string_equal (rcd_test_str (a, "priority"), "low");
    assert_int_equal (s_member (a, "received"), 8);
    assert_int_equal (s_member (a, "accepted"), 4);
    assert_int_equal (s_member (a, "duplicates"), 1);
    assert_int_equal (s_member (a, "invalid"), 2);
    assert_int_equal (s_member (a, "opted_out"), 1);
    json_t *bad = json_object_get (a, "invalid_phones");
    assert_int_equal (json_array_size (bad), 2);
    assert_int_equal (s_member (json_array_get (bad, 0), "index"), 3);
    assert_string_equal (rcd_test_str (json_array_get (bad, 0), "phone"),
                         "abc");
    assert_non_null (rcd_test_str (json_array_get (bad, 0), "reason"));
    assert_int_equal (s_member (json_array_get (bad, 1), "index"), 5);
    assert_string_equal (rcd_test_str (json_array_get (bad, 1), "phone"),
                         "123");
    json_decref (a);

    /* exactly the four usable, distinct, not opted-out numbers */
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    char *phones = s_text ("SELECT string_agg(to_phone, ',' ORDER BY to_phone)"
                           "  FROM messages WHERE campaign_id = $1::bigint",
                           c, NULL);
    assert_string_equal (phones, "+5511987000001,+5511987000002,"
                                 "+5511987000003,+5511987000005");
    free (phones);
    assert_int_equal (s_int ("SELECT count(*) FROM messages"
                             " WHERE to_phone = '+5511987000004'",
                             NULL, NULL),
                      0);
    /* pending, low priority, with the request's trace id, an 'accepted'
       history row each, and the tenant's id */
    char t[24];
    snprintf (t, sizeof t, "%lld", s_fx.tenant_a);
    assert_int_equal (
        s_int ("SELECT count(*) FROM messages m WHERE campaign_id = $1::bigint"
               "   AND status = 'pending' AND priority = 2"
               "   AND trace_id IS NOT NULL AND tenant_id = $2::bigint"
               "   AND EXISTS (SELECT 1 FROM message_history h"
               "                WHERE h.message_id = m.id"
               "                  AND h.status = 'pending'"
               "                  AND h.detail = 'accepted')",
               c, t),
        4);
    /* the text: the item's vars first (Ana, not "Ana again"), then the
       stored contact's vars and name; the variation is id % 2 */
    char *texts =
        s_text ("SELECT string_agg(to_phone || '=' || body || '@' || (id % 2),"
                "                  '|' ORDER BY to_phone)"
                "  FROM messages WHERE campaign_id = $1::bigint",
                c, NULL);
    char want[512];
    long long id1 =
        s_int ("SELECT id % 2 FROM messages WHERE to_phone = '+5511987000001'",
               NULL, NULL);
    long long id2 =
        s_int ("SELECT id % 2 FROM messages WHERE to_phone = '+5511987000002'",
               NULL, NULL);
    long long id3 =
        s_int ("SELECT id % 2 FROM messages WHERE to_phone = '+5511987000003'",
               NULL, NULL);
    long long id5 =
        s_int ("SELECT id % 2 FROM messages WHERE to_phone = '+5511987000005'",
               NULL, NULL);
    snprintf (want, sizeof want,
              "+5511987000001=%s@%lld|+5511987000002=%s@%lld|"
              "+5511987000003=%s@%lld|+5511987000005=%s@%lld",
              id1 ? "Ana: use A1 hoje." : "Oi Ana, cupom A1.", id1,
              id2 ? "Bia: use 7 hoje." : "Oi Bia, cupom 7.", id2,
              id3 ? "Stored: use S3 hoje." : "Oi Stored, cupom S3.", id3,
              id5 ? "Ninth: use N hoje." : "Oi Ninth, cupom N.", id5);
    assert_string_equal (texts, want);
    free (texts);
    /* both variations are used: consecutive ids alternate */
    assert_int_equal (s_int ("SELECT count(DISTINCT id % 2) FROM messages"
                             " WHERE campaign_id = $1::bigint",
                             c, NULL),
                      2);

    /* the campaign row keeps the upload's counts */
    assert_int_equal (s_int ("SELECT messages * 1000000 + duplicates * 10000"
                             "       + invalid * 100 + opted_out"
                             "  FROM campaigns WHERE id = $1::bigint",
                             c, NULL),
                      4010201);
    s_assert_state (id, "running");

    /* the scheduler is told */
    rcd_nudge_t nudge = {0};
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal ((long long)nudge.tenant_id, s_fx.tenant_a);
    assert_int_equal (nudge.count, 4);
    s_assert_counts_match (id);
}

static void
test_reposting_the_same_audience_adds_nothing (void **state)
{
    (void)state;
    char *body =
        s_audience_body ("repost", 1000, 20, "\"priority\":\"normal\"");
    json_t *a = s_post (s_fx.key_a, body, 201);
    long long id = s_id_of (a);
    assert_int_equal (s_member (a, "accepted"), 20);
    assert_string_equal (rcd_test_str (a, "priority"), "normal");
    json_decref (a);
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    long long history = s_int ("SELECT count(*) FROM message_history h"
                               "  JOIN messages m ON m.id = h.message_id"
                               " WHERE m.campaign_id = $1::bigint",
                               c, NULL);
    assert_int_equal (history, 20);

    /* the same body again: the same campaign, nothing added */
    a = s_post (s_fx.key_a, body, 200);
    assert_int_equal (s_id_of (a), id);
    assert_int_equal (s_member (a, "accepted"), 0);
    assert_int_equal (s_member (a, "duplicates"), 20);
    json_decref (a);
    assert_int_equal (s_messages_all (id), 20);
    assert_int_equal (s_int ("SELECT count(*) FROM message_history h"
                             "  JOIN messages m ON m.id = h.message_id"
                             " WHERE m.campaign_id = $1::bigint",
                             c, NULL),
                      history);
    free (body);

    /* an overlapping audience adds only the new contacts */
    body = s_audience_body ("repost", 1015, 10, NULL);
    a = s_post (s_fx.key_a, body, 200);
    assert_int_equal (s_member (a, "accepted"), 5);
    assert_int_equal (s_member (a, "duplicates"), 5);
    json_decref (a);
    free (body);
    assert_int_equal (s_messages_all (id), 25);
    assert_int_equal (s_int ("SELECT messages * 1000 + duplicates FROM"
                             " campaigns WHERE id = $1::bigint",
                             c, NULL),
                      25025);
    /* the unique index, not only the ingestor, holds one message per
       (campaign, contact) */
    assert_int_equal (s_int ("SELECT count(*) FROM pg_index i"
                             "  JOIN pg_class x ON x.oid = i.indexrelid"
                             " WHERE x.relname = 'messages_campaign'"
                             "   AND i.indisunique",
                             NULL, NULL),
                      1);

    /* a re-post that contradicts the campaign is refused, stores nothing */
    long long before = s_int ("SELECT count(*) FROM messages", NULL, NULL);
    rcd_test_api_expect_error (
        s_fx.ing.port, 409, "POST", "/v1/campaigns", s_fx.key_a,
        "{\"name\":\"repost\",\"template\":\"other\",\"audience\":"
        "[{\"phone\":\"5511990009999\"}]}",
        "conflict", "template");
    rcd_test_api_expect_error (
        s_fx.ing.port, 409, "POST", "/v1/campaigns", s_fx.key_a,
        "{\"name\":\"repost\",\"template\":\"promo\",\"priority\":\"high\","
        "\"audience\":[{\"phone\":\"5511990009999\"}]}",
        "conflict", "priority");
    rcd_test_api_expect_error (
        s_fx.ing.port, 409, "POST", "/v1/campaigns", s_fx.key_a,
        "{\"name\":\"repost\",\"template\":\"promo\","
        "\"send_at\":\"2030-01-01T00:00:00Z\",\"audience\":"
        "[{\"phone\":\"5511990009999\"}]}",
        "conflict", "send_at");
    assert_int_equal (s_int ("SELECT count(*) FROM messages", NULL, NULL),
                      before);
}

/*  --- states --- */

static void
test_pause_resume_and_cancel_move_exact_counts (void **state)
{
    (void)state;
    char *body = s_audience_body ("states", 2000, 50, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    free (body);
    long long id = s_id_of (a);
    json_decref (a);
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    /* 12 claimed: 5 sent, 2 failed, 5 still leased; 38 pending */
    s_claim (id, 12);
    s_outcome (id, 5, "sent");
    s_outcome (id, 2, "failed");
    assert_int_equal (s_messages (id, "pending"), 38);
    assert_int_equal (s_messages (id, "sending"), 5);

    /* pause: the 38 pending are held, the leased ones go on */
    a = s_change (id, "pause", s_fx.key_a, 200);
    assert_string_equal (rcd_test_str (a, "state"), "paused");
    assert_non_null (rcd_test_str (a, "paused_at"));
    assert_int_equal (s_member (json_object_get (a, "counts"), "paused"), 38);
    json_decref (a);
    s_assert_state (id, "paused");
    assert_int_equal (s_messages (id, "pending"), 0);
    assert_int_equal (s_messages (id, "paused"), 38);
    assert_int_equal (s_messages (id, "sending"), 5);
    assert_int_equal (s_int ("SELECT count(*) FROM message_history h"
                             "  JOIN messages m ON m.id = h.message_id"
                             " WHERE m.campaign_id = $1::bigint"
                             "   AND h.status = 'paused'"
                             "   AND h.detail = 'campaign paused'",
                             c, NULL),
                      38);
    /* nothing for the claim to take */
    assert_int_equal (s_int ("SELECT count(*) FROM messages"
                             " WHERE campaign_id = $1::bigint"
                             "   AND status = 'pending' AND send_at <= now()",
                             c, NULL),
                      0);
    a = s_change (id, "pause", s_fx.key_a, 409);
    rcd_test_assert_api_error (a, "conflict", NULL);
    json_decref (a);

    /* a leased message that fails transiently comes back paused, not
       pending (the sender knows nothing of campaigns) */
    s_outcome (id, 1, "pending");
    assert_int_equal (s_messages (id, "pending"), 0);
    assert_int_equal (s_messages (id, "paused"), 39);
    assert_int_equal (s_messages (id, "sending"), 4);
    assert_int_equal (s_int ("SELECT count(*) FROM message_history h"
                             "  JOIN messages m ON m.id = h.message_id"
                             " WHERE m.campaign_id = $1::bigint"
                             "   AND h.status = 'paused'",
                             c, NULL),
                      39);

    /* an upload while paused stores its messages paused */
    body = s_audience_body ("states", 2100, 2, NULL);
    a = s_post (s_fx.key_a, body, 200);
    free (body);
    assert_int_equal (s_member (a, "accepted"), 2);
    assert_string_equal (rcd_test_str (a, "state"), "paused");
    json_decref (a);
    assert_int_equal (s_messages (id, "paused"), 41);
    assert_int_equal (s_messages (id, "pending"), 0);

    /* an opt-out blocks a held message too */
    json_decref (s_expect (200, "POST", "/v1/contacts/%2B5511900002049/opt-out",
                           s_fx.key_a, NULL));
    assert_int_equal (s_messages (id, "paused"), 40);
    assert_int_equal (s_messages (id, "blocked"), 1);
    /* a held message can be cancelled on its own and listed */
    long long one = s_int ("SELECT min(id) FROM messages"
                           " WHERE campaign_id = $1::bigint"
                           "   AND status = 'paused'",
                           c, NULL);
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", one);
    json_decref (s_expect (200, "DELETE", path, s_fx.key_a, NULL));
    assert_int_equal (s_messages (id, "paused"), 39);
    a = s_expect (200, "GET", "/v1/messages?status=paused&limit=500",
                  s_fx.key_a, NULL);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 39);
    json_decref (a);
    s_assert_counts_match (id);

    /* resume: every held message is pending again, the scheduler told */
    rcd_test_nudges_drain (s_fx.nudges);
    a = s_change (id, "resume", s_fx.key_a, 200);
    assert_string_equal (rcd_test_str (a, "state"), "running");
    json_decref (a);
    s_assert_state (id, "running");
    assert_int_equal (s_messages (id, "paused"), 0);
    assert_int_equal (s_messages (id, "pending"), 39);
    rcd_nudge_t nudge = {0};
    assert_int_equal (rcd_test_nudge_next (s_fx.nudges, &nudge, 5000), 0);
    assert_int_equal (nudge.count, 39);
    a = s_change (id, "resume", s_fx.key_a, 409);
    json_decref (a);
    s_assert_counts_match (id);

    /* cancel: pending and paused become cancelled; leased ones finish */
    s_claim (id, 3);
    a = s_change (id, "cancel", s_fx.key_a, 200);
    assert_string_equal (rcd_test_str (a, "state"), "cancelled");
    assert_non_null (rcd_test_str (a, "cancelled_at"));
    json_decref (a);
    s_assert_state (id, "cancelled");
    assert_int_equal (s_messages (id, "pending"), 0);
    assert_int_equal (s_messages (id, "cancelled"), 36 + 1);
    assert_int_equal (s_messages (id, "sending"), 4 + 3);
    assert_int_equal (s_messages (id, "sent"), 5);
    /* a leased one sent, another requeued: the requeued is cancelled */
    s_outcome (id, 1, "sent");
    s_outcome (id, 1, "pending");
    assert_int_equal (s_messages (id, "sent"), 6);
    assert_int_equal (s_messages (id, "pending"), 0);
    assert_int_equal (s_messages (id, "cancelled"), 38);
    /* a dead letter of a cancelled campaign is not replayed */
    assert_int_equal (s_replay_failed (id), 0);
    assert_int_equal (s_messages (id, "failed"), 2);
    s_assert_counts_match (id);

    /* nothing more to change */
    json_decref (s_change (id, "cancel", s_fx.key_a, 409));
    json_decref (s_change (id, "pause", s_fx.key_a, 409));
    json_decref (s_change (id, "resume", s_fx.key_a, 409));
    rcd_test_api_expect_error (
        s_fx.ing.port, 409, "POST", "/v1/campaigns", s_fx.key_a,
        "{\"name\":\"states\",\"template\":\"promo\",\"audience\":[]}",
        "conflict", "name");
    json_decref (s_change (999999, "pause", s_fx.key_a, 404));
}

static void
test_a_failed_message_replayed_while_paused_stays_held (void **state)
{
    (void)state;
    char *body = s_audience_body ("replay", 3000, 3, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    free (body);
    long long id = s_id_of (a);
    json_decref (a);
    s_claim (id, 1);
    s_outcome (id, 1, "failed");
    json_decref (s_change (id, "pause", s_fx.key_a, 200));
    assert_int_equal (s_replay_failed (id), 1);
    assert_int_equal (s_messages (id, "paused"), 3);
    json_decref (s_change (id, "resume", s_fx.key_a, 200));
    assert_int_equal (s_messages (id, "pending"), 3);
}

/*  A dead letter of a completed campaign replayed: the campaign is
    running again (the claim walks only scheduled and running campaigns,
    so it would otherwise never be sent), and completed again once the
    message is sent. */
static void
test_a_replay_reopens_a_completed_campaign (void **state)
{
    (void)state;
    char *body = s_audience_body ("reopen", 3100, 2, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    free (body);
    long long id = s_id_of (a);
    json_decref (a);
    s_claim (id, 2);
    s_outcome (id, 1, "sent");
    s_outcome (id, 1, "failed");
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    assert_int_equal (
        s_int ("SELECT rcd_campaign_complete($1::bigint)::int", c, NULL), 1);
    s_assert_state (id, "completed");
    assert_int_equal (s_replay_failed (id), 1);
    s_assert_state (id, "running");
    assert_int_equal (s_messages (id, "pending"), 1);
    assert_int_equal (s_int ("SELECT count(*) FROM campaigns"
                             " WHERE id = $1::bigint AND completed_at IS NULL"
                             "   AND sent_messages IS NULL",
                             c, NULL),
                      1);
    assert_int_equal (
        s_int ("SELECT rcd_campaign_complete($1::bigint)::int", c, NULL), 0);
    s_claim (id, 1);
    s_outcome (id, 1, "sent");
    assert_int_equal (
        s_int ("SELECT rcd_campaign_complete($1::bigint)::int", c, NULL), 1);
    s_assert_state (id, "completed");
    assert_int_equal (s_int ("SELECT sent_messages FROM campaigns"
                             " WHERE id = $1::bigint",
                             c, NULL),
                      2);
}

/*  An opt-out blocks the contact's messages in every open campaign of
    the tenant (running, scheduled, paused) and outside campaigns, and
    nothing of another contact or of a campaign already finished with
    it. */
static void
test_an_opt_out_blocks_the_contact_in_every_open_campaign (void **state)
{
    (void)state;
    /* the same three contacts in a running, a scheduled and a paused
       campaign */
    long long ids[3];
    static const char *const names[] = {"optrun", "optlater", "optheld"};
    for (int k = 0; k < 3; k++) {
        char *body = s_audience_body (
            names[k], 3200, 3,
            k == 1 ? "\"send_at\":\"2099-01-01T00:00:00Z\"" : NULL);
        json_t *a = s_post (s_fx.key_a, body, 201);
        free (body);
        ids[k] = s_id_of (a);
        json_decref (a);
    }
    s_assert_state (ids[0], "running");
    s_assert_state (ids[1], "scheduled");
    json_decref (s_change (ids[2], "pause", s_fx.key_a, 200));
    json_decref (s_expect (202, "POST", "/v1/messages", s_fx.key_a,
                           "{\"to\":\"+5511900003201\",\"text\":\"hi\"}"));
    json_decref (s_expect (200, "POST", "/v1/contacts/%2B5511900003201/opt-out",
                           s_fx.key_a, NULL));
    for (int k = 0; k < 3; k++) {
        char c[24];
        snprintf (c, sizeof c, "%lld", ids[k]);
        assert_int_equal (s_int ("SELECT count(*) FROM messages"
                                 " WHERE campaign_id = $1::bigint"
                                 "   AND to_phone = '+5511900003201'"
                                 "   AND status = 'blocked'",
                                 c, NULL),
                          1);
        assert_int_equal (s_messages (ids[k], "blocked"), 1);
        assert_int_equal (s_messages (ids[k], k == 2 ? "paused" : "pending"),
                          2);
    }
    assert_int_equal (s_int ("SELECT count(*) FROM messages"
                             " WHERE campaign_id IS NULL"
                             "   AND to_phone = '+5511900003201'"
                             "   AND status = 'blocked'",
                             NULL, NULL),
                      1);
}

/*  --- progress --- */

static void
test_get_shows_counts_rates_and_the_time_to_finish (void **state)
{
    (void)state;
    /* limits: 5/s; 10/s capped at 86 400 a day (1/s); disabled and
       logged-out instances do not count */
    json_decref (s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                           "{\"name\":\"n1\",\"provider\":\"evolution\","
                           "\"base_url\":\"http://127.0.0.1:1\","
                           "\"api_key\":\"k\",\"rate_per_second\":5}"));
    json_decref (s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                           "{\"name\":\"n2\",\"provider\":\"evolution\","
                           "\"base_url\":\"http://127.0.0.1:1\","
                           "\"api_key\":\"k\",\"rate_per_second\":10,"
                           "\"daily_cap\":86400}"));
    json_t *i3 = s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                           "{\"name\":\"n3\",\"provider\":\"evolution\","
                           "\"base_url\":\"http://127.0.0.1:1\","
                           "\"api_key\":\"k\",\"rate_per_second\":50}");
    char path[64];
    snprintf (path, sizeof path, "/v1/instances/%lld", s_member (i3, "id"));
    json_decref (i3);
    json_decref (
        s_expect (200, "PATCH", path, s_fx.key_a, "{\"enabled\":false}"));
    json_decref (s_expect (201, "POST", "/v1/instances", s_fx.key_a,
                           "{\"name\":\"n4\",\"provider\":\"evolution\","
                           "\"base_url\":\"http://127.0.0.1:1\","
                           "\"api_key\":\"k\",\"rate_per_second\":50}"));
    s_exec ("UPDATE instances SET health = 'logged_out' WHERE name = 'n4'",
            NULL, NULL);

    char *body = s_audience_body ("progress", 4000, 30, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    free (body);
    long long id = s_id_of (a);
    json_decref (a);
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    /* six sent, 1.5 s apart from the first to the last */
    s_claim (id, 6);
    s_outcome (id, 6, "sent");
    s_exec ("UPDATE messages m SET sent_at = now() - interval '10 s'"
            "                        + (x.k - 1) * interval '300 ms'"
            "  FROM (SELECT id, row_number() OVER (ORDER BY id) AS k"
            "          FROM messages WHERE campaign_id = $1::bigint"
            "           AND status = 'sent') x"
            " WHERE m.id = x.id",
            c, NULL);
    a = s_get (id);
    assert_string_equal (rcd_test_str (a, "state"), "running");
    assert_int_equal (s_member (a, "remaining"), 24);
    assert_int_equal (s_member (a, "sent"), 6);
    json_t *rate = json_object_get (a, "rate");
    assert_true (json_number_value (json_object_get (rate, "limit")) == 6.0);
    assert_true (json_number_value (json_object_get (rate, "last_minute")) ==
                 0.1);
    /* 6 sent over 1.5 s */
    assert_true (json_number_value (json_object_get (rate, "average")) == 4.0);
    /* 24 left at 6/s */
    assert_int_equal (s_member (a, "eta_seconds"), 4);
    assert_non_null (rcd_test_str (a, "estimated_finish_at"));
    char *first = s_text ("SELECT to_char(min(sent_at) AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                          "  FROM messages WHERE campaign_id = $1::bigint",
                          c, NULL);
    assert_string_equal (rcd_test_str (a, "first_sent_at"), first);
    free (first);
    json_t *audience = json_object_get (a, "audience");
    assert_int_equal (s_member (audience, "messages"), 30);
    json_decref (a);
    s_assert_counts_match (id);

    /* everything settles: the campaign completes when read */
    s_claim (id, 24);
    s_outcome (id, 20, "sent");
    s_outcome (id, 4, "failed");
    s_assert_state (id, "running");
    a = s_get (id);
    assert_string_equal (rcd_test_str (a, "state"), "completed");
    assert_int_equal (s_member (a, "remaining"), 0);
    assert_true (json_is_null (json_object_get (a, "eta_seconds")));
    char *last = s_text ("SELECT to_char(max(updated_at) AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                         "  FROM messages WHERE campaign_id = $1::bigint"
                         "   AND status = 'failed'",
                         c, NULL);
    /* when its last message left the queue (here a failure) */
    assert_string_equal (rcd_test_str (a, "completed_at"), last);
    free (last);
    json_decref (a);
    s_assert_state (id, "completed");
    assert_int_equal (s_int ("SELECT sent_messages FROM campaigns"
                             " WHERE id = $1::bigint",
                             c, NULL),
                      26);
    /* pausing a completed campaign is a conflict; new contacts reopen it */
    json_decref (s_change (id, "pause", s_fx.key_a, 409));
    body = s_audience_body ("progress", 4100, 1, NULL);
    a = s_post (s_fx.key_a, body, 200);
    free (body);
    assert_string_equal (rcd_test_str (a, "state"), "running");
    json_decref (a);
    s_assert_state (id, "running");

    /* a campaign for later waits: scheduled, finishing after its send_at */
    char *later = s_text ("SELECT to_char((now() + interval '1 hour')"
                          " AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                          NULL, NULL);
    char extra[128];
    snprintf (extra, sizeof extra, "\"send_at\":\"%s\",\"priority\":\"high\"",
              later);
    body = s_audience_body ("later", 5000, 12, extra);
    a = s_post (s_fx.key_a, body, 201);
    free (body);
    assert_string_equal (rcd_test_str (a, "state"), "scheduled");
    long long later_id = s_id_of (a);
    json_decref (a);
    snprintf (c, sizeof c, "%lld", later_id);
    assert_int_equal (
        s_int ("SELECT count(*) FROM messages WHERE campaign_id = $1::bigint"
               "   AND priority = 0 AND send_at = $2::timestamptz",
               c, later),
        12);
    free (later);
    a = s_get (later_id);
    assert_string_equal (rcd_test_str (a, "state"), "scheduled");
    assert_true (json_is_null (json_object_get (a, "started_at")));
    /* 12 at 6/s after an hour's wait */
    long long eta = s_member (a, "eta_seconds");
    assert_true (eta >= 3600 - 5 && eta <= 3602);
    json_decref (a);
    /* pausing a scheduled campaign holds its messages too */
    json_decref (s_change (later_id, "pause", s_fx.key_a, 200));
    assert_int_equal (s_messages (later_id, "paused"), 12);
    a = s_change (later_id, "resume", s_fx.key_a, 200);
    assert_string_equal (rcd_test_str (a, "state"), "scheduled");
    json_decref (a);
}

static void
test_an_empty_audience_is_a_draft_until_contacts_come (void **state)
{
    (void)state;
    json_t *a = s_post (s_fx.key_a,
                        "{\"name\":\"draft\",\"template\":\"promo\","
                        "\"audience\":[{\"phone\":\"nope\"}]}",
                        201);
    long long id = s_id_of (a);
    assert_string_equal (rcd_test_str (a, "state"), "draft");
    assert_int_equal (s_member (a, "invalid"), 1);
    json_decref (a);
    json_decref (s_change (id, "pause", s_fx.key_a, 409));
    a = s_get (id);
    assert_string_equal (rcd_test_str (a, "state"), "draft");
    json_decref (a);
    a = s_post (s_fx.key_a,
                "{\"name\":\"draft\",\"template\":\"promo\",\"audience\":"
                "[{\"phone\":\"5511977770001\",\"vars\":{\"name\":\"D\","
                "\"code\":\"1\"}}]}",
                200);
    assert_string_equal (rcd_test_str (a, "state"), "running");
    json_decref (a);
    a = s_get (id);
    assert_non_null (rcd_test_str (a, "started_at"));
    json_decref (a);
}

/*  --- size --- */

static void
test_a_hundred_thousand_contacts_are_accepted_at_once (void **state)
{
    (void)state;
    char *body = s_audience_body ("big", 10000000, 100000, NULL);
    long long before = s_int ("SELECT count(*) FROM messages", NULL, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    long long id = s_id_of (a);
    assert_int_equal (s_member (a, "received"), 100000);
    assert_int_equal (s_member (a, "accepted"), 100000);
    json_decref (a);
    assert_int_equal (s_messages_all (id), 100000);
    assert_int_equal (s_int ("SELECT count(*) FROM messages", NULL, NULL),
                      before + 100000);
    char c[24];
    snprintf (c, sizeof c, "%lld", id);
    /* one per contact, both variations used evenly */
    assert_int_equal (s_int ("SELECT count(DISTINCT to_phone) FROM messages"
                             " WHERE campaign_id = $1::bigint",
                             c, NULL),
                      100000);
    assert_int_equal (s_int ("SELECT count(*) FROM messages"
                             " WHERE campaign_id = $1::bigint"
                             "   AND body LIKE 'Oi %'",
                             c, NULL),
                      50000);
    /* again: nothing added */
    a = s_post (s_fx.key_a, body, 200);
    assert_int_equal (s_member (a, "accepted"), 0);
    assert_int_equal (s_member (a, "duplicates"), 100000);
    json_decref (a);
    assert_int_equal (s_messages_all (id), 100000);
    free (body);
    /* one more contact than allowed: 413, nothing stored */
    body = s_audience_body ("too many", 20000000, 100001, NULL);
    rcd_test_api_expect_error (s_fx.ing.port, 413, "POST", "/v1/campaigns",
                               s_fx.key_a, body, "payload_too_large",
                               "audience");
    free (body);
    assert_int_equal (
        s_int ("SELECT count(*) FROM campaigns WHERE name = 'too many'", NULL,
               NULL),
        0);
}

/*  --- bad input --- */

static void
test_bad_input_is_named_and_stores_nothing (void **state)
{
    (void)state;
    char long_value[1100], long_name[260];
    memset (long_value, 'v', 1001);
    long_value[1001] = 0;
    memset (long_name, 'n', 201);
    long_name[201] = 0;
    char value_body[1400], name_body[512];
    snprintf (value_body, sizeof value_body,
              "{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
              "[{\"phone\":\"5511912340000\",\"vars\":{\"a\":\"%s\"}}]}",
              long_value);
    snprintf (name_body, sizeof name_body,
              "{\"name\":\"%s\",\"template\":\"promo\",\"audience\":[]}",
              long_name);
    static const char *const ok_item = "{\"phone\":\"5511912340000\","
                                       "\"vars\":{\"name\":\"n\","
                                       "\"code\":\"c\"}}";
    char with_ok[256];
    snprintf (with_ok, sizeof with_ok,
              "{\"name\":\"b\",\"template\":\"promo\",\"audience\":[%s,7]}",
              ok_item);
    const struct {
        const char *body;
        long status;
        const char *code;
        const char *field;
    } cases[] = {
        {"", 400, "invalid_json", NULL},
        {"[]", 400, "invalid_json", NULL},
        {"{\"name\":", 400, "invalid_json", NULL},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":[]} x", 400,
         "invalid_json", NULL},
        {"{\"template\":\"promo\",\"audience\":[]}", 400, "missing_field",
         "name"},
        {"{\"name\":\"b\",\"audience\":[]}", 400, "missing_field", "template"},
        {"{\"name\":\"b\",\"template\":\"promo\"}", 400, "missing_field",
         "audience"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":null}", 400,
         "missing_field", "audience"},
        {"{\"name\":5,\"template\":\"promo\",\"audience\":[]}", 400,
         "invalid_field", "name"},
        {"{\"name\":\"\",\"template\":\"promo\",\"audience\":[]}", 400,
         "invalid_field", "name"},
        {name_body, 400, "invalid_field", "name"},
        {"{\"name\":\"b\",\"template\":\"a b\",\"audience\":[]}", 400,
         "invalid_field", "template"},
        {"{\"name\":\"b\",\"template\":\"nope\",\"audience\":[]}", 400,
         "invalid_field", "template"},
        {"{\"name\":\"b\",\"template\":[],\"audience\":[]}", 400,
         "invalid_field", "template"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":{}}", 400,
         "invalid_field", "audience"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":\"x\"}", 400,
         "invalid_field", "audience"},
        {with_ok, 400, "invalid_field", "audience[1]"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":[{}]}", 400,
         "missing_field", "audience[0].phone"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":5511912340000}]}",
         400, "invalid_field", "audience[0].phone"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"name\":\"x\"}]}",
         400, "invalid_field", "audience[0].name"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"vars\":[]}]}",
         400, "invalid_field", "audience[0].vars"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"vars\":{\"a\":{}}}]}",
         400, "invalid_field", "audience[0].vars.a"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"vars\":{\"a\":true}}]}",
         400, "invalid_field", "audience[0].vars.a"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"vars\":{\"a-b\":\"x\"}}]}",
         400, "invalid_field", "audience[0].vars"},
        {value_body, 400, "invalid_field", "audience[0].vars.a"},
        /* a placeholder without a value for one contact */
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":"
         "[{\"phone\":\"5511912340000\",\"vars\":{\"name\":\"n\","
         "\"code\":\"c\"}},{\"phone\":\"5511912340001\",\"vars\":{\"name\":"
         "\"n\"}}]}",
         400, "invalid_field", "audience[1].vars.code"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"send_at\":\"tomorrow\","
         "\"audience\":[]}",
         400, "invalid_field", "send_at"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"priority\":\"urgent\","
         "\"audience\":[]}",
         400, "invalid_field", "priority"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"priority\":2,"
         "\"audience\":[]}",
         400, "invalid_field", "priority"},
        {"{\"name\":\"b\",\"template\":\"promo\",\"audience\":[],"
         "\"foo\":1}",
         400, "invalid_field", "foo"},
        {"{\"name\":\"b\",\"name\":\"c\",\"template\":\"promo\","
         "\"audience\":[]}",
         400, "invalid_field", "name"},
    };
    long long campaigns = s_int ("SELECT count(*) FROM campaigns", NULL, NULL);
    long long messages = s_int ("SELECT count(*) FROM messages", NULL, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rcd_test_api_expect_error (s_fx.ing.port, cases[i].status, "POST",
                                   "/v1/campaigns", s_fx.key_a, cases[i].body,
                                   cases[i].code, cases[i].field);
        assert_int_equal (s_int ("SELECT count(*) FROM campaigns", NULL, NULL),
                          campaigns);
        assert_int_equal (s_int ("SELECT count(*) FROM messages", NULL, NULL),
                          messages);
    }

    /* a body over campaign_max_body_bytes: 413 before it is parsed */
    size_t big = CAMPAIGN_MAX_BODY + 1000;
    char *huge = malloc (big + 1);
    assert_non_null (huge);
    memset (huge, ' ', big);
    memcpy (huge, "{\"name\":\"", 9);
    huge[big - 2] = '"';
    huge[big - 1] = '}';
    huge[big] = 0;
    rcd_test_api_expect_error (s_fx.ing.port, 413, "POST", "/v1/campaigns",
                               s_fx.key_a, huge, "payload_too_large", NULL);
    /* the other routes keep their own, smaller limit (1 MiB) */
    huge[(size_t)2 * 1024 * 1024] = 0;
    rcd_test_api_expect_error (s_fx.ing.port, 413, "POST", "/v1/messages",
                               s_fx.key_a, huge, "payload_too_large", NULL);
    free (huge);
    assert_int_equal (s_int ("SELECT count(*) FROM campaigns", NULL, NULL),
                      campaigns);
    /* no key, no campaign: answered when the headers arrive, whatever
       the body (even one that is not JSON, or over the limit) */
    rcd_test_api_expect_error (s_fx.ing.port, 401, "POST", "/v1/campaigns",
                               NULL, "{}", "unauthorized", NULL);
    rcd_test_api_expect_error (s_fx.ing.port, 401, "POST", "/v1/campaigns",
                               "rcd_not_a_key", "{\"audience\": [",
                               "unauthorized", NULL);
    rcd_test_api_expect_error (s_fx.ing.port, 403, "POST", "/v1/campaigns",
                               ADMIN_KEY, "not json", "forbidden", NULL);
    assert_int_equal (s_int ("SELECT count(*) FROM campaigns", NULL, NULL),
                      campaigns);
}

/*  --- the tenant wall --- */

static void
test_campaigns_are_walled_between_tenants (void **state)
{
    (void)state;
    char *body = s_audience_body ("shared name", 6000, 3, NULL);
    json_t *a = s_post (s_fx.key_a, body, 201);
    long long id_a = s_id_of (a);
    json_decref (a);
    /* b sees none of a's campaign */
    char path[80];
    snprintf (path, sizeof path, "/v1/campaigns/%lld", id_a);
    rcd_test_api_expect_error (s_fx.ing.port, 404, "GET", path, s_fx.key_b,
                               NULL, "not_found", NULL);
    static const char *const verbs[] = {"pause", "resume", "cancel"};
    for (int i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "/v1/campaigns/%lld/%s", id_a, verbs[i]);
        rcd_test_api_expect_error (s_fx.ing.port, 404, "POST", path, s_fx.key_b,
                                   NULL, "not_found", NULL);
    }
    s_assert_state (id_a, "running");
    assert_int_equal (s_messages (id_a, "pending"), 3);
    /* the same name is b's own campaign; the same numbers its own
       messages, rendered with b's template */
    a = s_post (s_fx.key_b, body, 201);
    long long id_b = s_id_of (a);
    assert_true (id_b != id_a);
    assert_int_equal (s_member (a, "accepted"), 3);
    json_decref (a);
    free (body);
    char c[24], t[24];
    snprintf (c, sizeof c, "%lld", id_b);
    snprintf (t, sizeof t, "%lld", s_fx.tenant_b);
    assert_int_equal (s_int ("SELECT count(*) FROM messages"
                             " WHERE campaign_id = $1::bigint"
                             "   AND tenant_id = $2::bigint"
                             "   AND body LIKE 'b: C%'",
                             c, t),
                      3);
    /* both rows were written under the wall, as their own tenant */
    assert_int_equal (s_int ("SELECT count(*) FROM pg_policies"
                             " WHERE tablename = 'campaigns'"
                             "   AND policyname = 'tenant_wall'",
                             NULL, NULL),
                      1);
    s_assert_state (id_a, "running");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (
            test_audience_filters_invalid_repeated_and_opted_out_numbers),
        cmocka_unit_test (test_reposting_the_same_audience_adds_nothing),
        cmocka_unit_test (test_pause_resume_and_cancel_move_exact_counts),
        cmocka_unit_test (
            test_a_failed_message_replayed_while_paused_stays_held),
        cmocka_unit_test (test_a_replay_reopens_a_completed_campaign),
        cmocka_unit_test (
            test_an_opt_out_blocks_the_contact_in_every_open_campaign),
        cmocka_unit_test (test_get_shows_counts_rates_and_the_time_to_finish),
        cmocka_unit_test (
            test_an_empty_audience_is_a_draft_until_contacts_come),
        cmocka_unit_test (
            test_a_hundred_thousand_contacts_are_accepted_at_once),
        cmocka_unit_test (test_bad_input_is_named_and_stores_nothing),
        cmocka_unit_test (test_campaigns_are_walled_between_tenants),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

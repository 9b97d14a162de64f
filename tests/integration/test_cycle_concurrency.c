/*  test_cycle_concurrency.c - many clients upload the same billing cycles
    at the same moment; exactly one cycle per external_billing_id may come
    out, and every item of every 207 answer must say truthfully what
    happened to it.

    20 client threads, each with its own libcurl handle, wait on one
    barrier and then POST /v1/billing-cycles/batch with a shuffled,
    overlapping subset of the same 200 external ids (some ids twice in one
    batch) to the in-process ingestor (8 HTTP threads, so 8 concurrent
    transactions). Each client sends its own name and its own number of
    offsets for an id, so the stored row and its reminders show whose
    upload won and whether reminders were attached to the right cycle.

    Round two cancels half of the ids and races again: a cancelled id may
    be created once more, an active one may not.

    What decides it in the schema is the partial unique index
    billing_cycles_active; without it this test fails (several cycles per
    id, several "id" answers per id).
*/
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
#include <time.h>

#include <cmocka.h>

#define ADMIN_KEY   "test-admin-key"
#define CLIENTS     20
#define IDS         200 /* distinct external ids */
#define PICK        100 /* distinct ids per client and round */
#define REPEATS     6   /* ids sent twice in one batch, per client */
#define ITEMS       (PICK + REPEATS)
#define OFFSETS_MAX 4

typedef struct {
    rcd_test_ingestor_t ing; /* the ingestor, its database and port */
    char *key;               /* the tenant's key */
    long long tenant;
    int today; /* UTC days since 1970-01-01 at set-up */
} fixture_t;

static fixture_t s_fx;

/*  One client's upload and what came back. Filled by its thread; only
    the main thread asserts (cmocka cannot fail from another thread). */
typedef struct {
    int client;
    int round;
    int ids[ITEMS];      /* external id number of each item */
    int noffsets[ITEMS]; /* offsets sent with each item */
    char *body;          /* the request */
    pthread_barrier_t *barrier;
    long status; /* HTTP status, 0 when the request failed */
    char *answer;
    size_t answer_size;
    char curl_error[CURL_ERROR_SIZE];
} client_t;

/*  --- helpers --- */

static const int s_offsets[OFFSETS_MAX] = {-5, -2, 0, 2};

static void
s_external_id (int id, char *buf, size_t size)
{
    snprintf (buf, size, "inv-%03d", id);
}

/*  A client's name for an id: the winner shows in the stored cycle. */
static void
s_name (int client, int round, int id, char *buf, size_t size)
{
    snprintf (buf, size, "Cliente r%d c%02d i%03d", round, client, id);
}

/*  Offsets a client sends for an id: 1 to 4 of them, varying by client. */
static int
s_noffsets (int client, int id)
{
    return 1 + (client + id) % OFFSETS_MAX;
}

static uint32_t
s_rand (uint32_t *state)
{
    /* xorshift32: reproducible per client and round */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/*  Picks PICK distinct ids of IDS, adds REPEATS of them a second time,
    shuffles the lot and builds the batch body. */
static void
s_client_prepare (client_t *c)
{
    uint32_t seed = 2654435761u * (uint32_t)(c->client + 1) +
                    (uint32_t)c->round * 40503u + 1u;
    int all[IDS];
    for (int i = 0; i < IDS; i++)
        all[i] = i;
    for (int i = IDS - 1; i > 0; i--) {
        int j = (int)(s_rand (&seed) % (uint32_t)(i + 1));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    for (int i = 0; i < PICK; i++)
        c->ids[i] = all[i];
    for (int i = 0; i < REPEATS; i++)
        c->ids[PICK + i] = all[s_rand (&seed) % PICK];
    for (int i = ITEMS - 1; i > 0; i--) {
        int j = (int)(s_rand (&seed) % (uint32_t)(i + 1));
        int t = c->ids[i];
        c->ids[i] = c->ids[j];
        c->ids[j] = t;
    }

    json_t *items = json_array ();
    for (int i = 0; i < ITEMS; i++) {
        int id = c->ids[i];
        char ext[32], name[64], phone[32], due[16];
        s_external_id (id, ext, sizeof ext);
        s_name (c->client, c->round, id, name, sizeof name);
        snprintf (phone, sizeof phone, "+55119%08d", 70000000 + id);
        /* 20 to 49 days ahead: every reminder day is in the future */
        time_t t = (time_t)(s_fx.today + 20 + id % 30) * 86400;
        struct tm tm;
        gmtime_r (&t, &tm);
        strftime (due, sizeof due, "%Y-%m-%d", &tm);
        c->noffsets[i] = s_noffsets (c->client, id);
        json_t *offsets = json_array ();
        for (int o = 0; o < c->noffsets[i]; o++)
            json_array_append_new (offsets, json_integer (s_offsets[o]));
        json_array_append_new (
            items,
            json_pack ("{s:s, s:{s:s, s:s}, s:I, s:s, s:s, s:o}",
                       "external_billing_id", ext, "contact", "phone", phone,
                       "name", name, "amount_cents",
                       (json_int_t)(10000 + id * 7 + c->client), "due_date",
                       due, "template", "cobranca", "offsets_days", offsets));
    }
    json_t *body = json_pack ("{s:o}", "items", items);
    c->body = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    assert_non_null (c->body);
}

static size_t
s_collect (char *data, size_t size, size_t nmemb, void *arg)
{
    client_t *c = arg;
    size_t n = size * nmemb;
    char *grown = realloc (c->answer, c->answer_size + n + 1);
    if (!grown)
        return 0;
    memcpy (grown + c->answer_size, data, n);
    c->answer_size += n;
    grown[c->answer_size] = 0;
    c->answer = grown;
    return n;
}

/*  A client thread: its own easy handle, set up before the barrier so
    that all requests leave together. */
static void *
s_client_run (void *arg)
{
    client_t *c = arg;
    char url[128], auth[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/billing-cycles/batch",
              s_fx.ing.port);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", s_fx.key);
    CURL *curl = curl_easy_init ();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append (headers, auth);
    headers = curl_slist_append (headers, "Content-Type: application/json");
    if (curl) {
        curl_easy_setopt (curl, CURLOPT_URL, url);
        curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_collect);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, c);
        curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, c->curl_error);
        curl_easy_setopt (curl, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    }
    pthread_barrier_wait (c->barrier);
    if (curl && curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all (headers);
    if (curl)
        curl_easy_cleanup (curl);
    return NULL;
}

/*  Runs CLIENTS uploads of round at once; fills clients. */
static void
s_race (client_t *clients, int round)
{
    pthread_barrier_t barrier;
    pthread_t threads[CLIENTS];
    assert_int_equal (pthread_barrier_init (&barrier, NULL, CLIENTS), 0);
    for (int c = 0; c < CLIENTS; c++) {
        memset (&clients[c], 0, sizeof clients[c]);
        clients[c].client = c;
        clients[c].round = round;
        clients[c].barrier = &barrier;
        s_client_prepare (&clients[c]);
    }
    for (int c = 0; c < CLIENTS; c++)
        assert_int_equal (
            pthread_create (&threads[c], NULL, s_client_run, &clients[c]), 0);
    for (int c = 0; c < CLIENTS; c++)
        pthread_join (threads[c], NULL);
    pthread_barrier_destroy (&barrier);
}

static void
s_clients_free (client_t *clients)
{
    for (int c = 0; c < CLIENTS; c++) {
        free (clients[c].body);
        free (clients[c].answer);
    }
}

/*  What the answers of one round say, per id. */
typedef struct {
    int uploaded[IDS];    /* items naming the id, all clients */
    int created[IDS];     /* items answered with an "id" */
    int conflicts[IDS];   /* items answered 409 conflict */
    long long cycle[IDS]; /* the created cycle's id */
    int winner[IDS];      /* the client whose item created it */
    int noffsets[IDS];    /* the winner's offsets */
    int created_total;
    int round;
    int unexpected;      /* items answered neither an id nor a 409 */
    char example[256];   /* the first of them */
    json_t *message_ids; /* "id" -> cycle id, every reminder answered */
} tally_t;

/*  Checks every answer item against its request item and tallies them.
    Any error other than a 409 conflict on external_billing_id fails. */
static void
s_tally (client_t *clients, tally_t *t)
{
    memset (t, 0, sizeof *t);
    t->message_ids = json_object ();
    t->round = clients[0].round;
    for (int c = 0; c < CLIENTS; c++) {
        client_t *cl = &clients[c];
        if (cl->status != 207)
            fail_msg ("client %d: HTTP %ld (%s) %s", c, cl->status,
                      cl->curl_error, cl->answer ? cl->answer : "");
        json_t *answer = json_loads (cl->answer, 0, NULL);
        assert_non_null (answer);
        json_t *items = json_object_get (answer, "items");
        assert_int_equal (json_array_size (items), ITEMS);
        for (int i = 0; i < ITEMS; i++) {
            json_t *item = json_array_get (items, i);
            int id = cl->ids[i];
            char ext[32];
            s_external_id (id, ext, sizeof ext);
            t->uploaded[id]++;
            assert_int_equal (
                json_integer_value (json_object_get (item, "index")), i);
            json_t *cycle = json_object_get (item, "id");
            json_t *error = json_object_get (item, "error");
            if (cycle) {
                if (error)
                    fail_msg ("client %d item %d: both id and error", c, i);
                assert_true (json_integer_value (cycle) > 0);
                assert_string_equal (json_string_value (json_object_get (
                                         item, "external_billing_id")),
                                     ext);
                assert_string_equal (
                    json_string_value (json_object_get (item, "status")),
                    "active");
                json_t *messages = json_object_get (item, "messages");
                assert_int_equal (json_array_size (messages), cl->noffsets[i]);
                assert_int_equal (
                    json_integer_value (json_object_get (item, "skipped")), 0);
                size_t m;
                json_t *msg;
                json_array_foreach (messages, m, msg)
                {
                    char key[24];
                    snprintf (key, sizeof key, "%lld",
                              (long long)json_integer_value (
                                  json_object_get (msg, "id")));
                    if (json_object_get (t->message_ids, key))
                        fail_msg ("message %s answered twice", key);
                    json_object_set_new (
                        t->message_ids, key,
                        json_integer (json_integer_value (cycle)));
                    assert_string_equal (
                        json_string_value (json_object_get (msg, "status")),
                        "pending");
                }
                t->created[id]++;
                t->created_total++;
                t->cycle[id] = json_integer_value (cycle);
                t->winner[id] = c;
                t->noffsets[id] = cl->noffsets[i];
                continue;
            }
            if (!error) {
                char *text = json_dumps (item, JSON_COMPACT);
                fail_msg ("client %d item %d: neither id nor error: %s", c, i,
                          text);
            }
            const char *code =
                json_string_value (json_object_get (error, "code"));
            const char *field =
                json_string_value (json_object_get (error, "field"));
            char expected[64];
            snprintf (expected, sizeof expected,
                      "items[%d].external_billing_id", i);
            if (!code || strcmp (code, "conflict") != 0 || !field ||
                strcmp (field, expected) != 0) {
                /* counted, then reported with the first example */
                if (!t->unexpected)
                    snprintf (t->example, sizeof t->example,
                              "client %d items[%d] (%s): %s %s", c, i, ext,
                              code ? code : "?", field ? field : "null");
                t->unexpected++;
                continue;
            }
            t->conflicts[id]++;
        }
        json_decref (answer);
    }
    if (t->unexpected)
        fail_msg ("round %d: %d of %d items answered neither an id nor a 409 "
                  "conflict on external_billing_id, e.g. %s",
                  t->round, t->unexpected, CLIENTS * ITEMS, t->example);
}

static long long
s_sql_int (const char *sql)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", s_fx.tenant);
    const char *params[] = {tenant};
    return rcd_test_sql_int (s_fx.ing.url, sql, 1, params);
}

/*  The database agrees with the answers: per id the answered cycle is
    the active one, holds the winner's name and offsets, and owns exactly
    the answered reminders, one per offset. */
static void
s_check_database (const tally_t *t, int expected_rows)
{
    /* one active cycle per id, at most: the index is what this tests */
    assert_int_equal (s_sql_int ("SELECT count(*) FROM ("
                                 "  SELECT 1 FROM billing_cycles"
                                 "   WHERE tenant_id = $1::bigint"
                                 "     AND status = 'active'"
                                 "   GROUP BY external_billing_id"
                                 "  HAVING count(*) > 1) x"),
                      0);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM billing_cycles"
                                 " WHERE tenant_id = $1::bigint"),
                      expected_rows);
    /* a reminder per offset, none twice, none outside the offsets */
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM billing_cycles b"
                   " WHERE b.tenant_id = $1::bigint"
                   "   AND (SELECT count(*) FROM messages m"
                   "         WHERE m.billing_cycle_id = b.id"
                   "           AND m.offset_days = ANY (b.offsets_days))"
                   "       <> cardinality(b.offsets_days)"),
        0);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM ("
                                 "  SELECT 1 FROM messages"
                                 "   WHERE tenant_id = $1::bigint"
                                 "     AND billing_cycle_id IS NOT NULL"
                                 "   GROUP BY billing_cycle_id, offset_days"
                                 "  HAVING count(*) > 1) x"),
                      0);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m"
                   "  JOIN billing_cycles b ON b.id = m.billing_cycle_id"
                   " WHERE m.tenant_id = $1::bigint"
                   "   AND (m.to_phone <> b.phone"
                   "        OR position(b.contact_name IN m.body) = 0)"),
        0);
    /* open_messages counts the pending reminders */
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM billing_cycles b"
                   " WHERE b.tenant_id = $1::bigint"
                   "   AND b.open_messages <> (SELECT count(*) FROM messages m"
                   "         WHERE m.billing_cycle_id = b.id"
                   "           AND m.status = 'pending')"),
        0);
    /* every reminder has its history row, once */
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m"
                   " WHERE m.tenant_id = $1::bigint"
                   "   AND m.billing_cycle_id IS NOT NULL"
                   "   AND (SELECT count(*) FROM message_history h"
                   "         WHERE h.message_id = m.id) <> 1"
                   "   AND m.status = 'pending'"),
        0);

    for (int id = 0; id < IDS; id++) {
        if (!t->created[id])
            continue;
        char ext[32], tenant[24];
        s_external_id (id, ext, sizeof ext);
        snprintf (tenant, sizeof tenant, "%lld", s_fx.tenant);
        const char *params[] = {tenant, ext};
        char *row = rcd_test_sql (
            s_fx.ing.url,
            "SELECT id || ' ' || cardinality(offsets_days) || ' ' ||"
            "       contact_name"
            "  FROM billing_cycles"
            " WHERE tenant_id = $1::bigint AND external_billing_id = $2"
            "   AND status = 'active'",
            2, params);
        char expected[128];
        snprintf (expected, sizeof expected, "%lld %d ", t->cycle[id],
                  t->noffsets[id]);
        assert_non_null (row);
        /* the answered cycle, the winner's offsets and name */
        assert_memory_equal (row, expected, strlen (expected));
        char client_part[32];
        snprintf (client_part, sizeof client_part, "r%d c%02d i%03d", t->round,
                  t->winner[id], id);
        if (!strstr (row, client_part))
            fail_msg ("%s: stored %s, the answer's winner was client %d", ext,
                      row, t->winner[id]);
        free (row);
    }

    /* the answered reminders are exactly the stored ones of the cycles
       answered in this round */
    const char *key;
    json_t *cycle;
    long long answered = 0;
    json_object_foreach (t->message_ids, key, cycle)
    {
        const char *params[] = {key};
        long long stored = rcd_test_sql_int (
            s_fx.ing.url,
            "SELECT billing_cycle_id FROM messages WHERE id = $1::bigint", 1,
            params);
        assert_int_equal (stored, json_integer_value (cycle));
        answered++;
    }
    long long created_offsets = 0;
    for (int id = 0; id < IDS; id++)
        if (t->created[id])
            created_offsets += t->noffsets[id];
    assert_int_equal (answered, created_offsets);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any client thread */
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.today = (int)(time (NULL) / 86400);
    rcd_test_ingestor_start (&s_fx.ing, "cycle_concurrency", ADMIN_KEY, 8);
    s_fx.key = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "racers",
                                       &s_fx.tenant);
    json_decref (rcd_test_api_expect (
        s_fx.ing.port, 200, "PUT", "/v1/templates/cobranca", s_fx.key,
        "{\"variations\":[\"Olá {{name}}, sua fatura de {{amount}} vence "
        "em {{due_date}}.\",\"{{name}}: {{amount}} até {{due_date}}.\"]}"));
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    free (s_fx.key);
    curl_global_cleanup ();
    return 0;
}

/*  --- tests --- */

static void
test_concurrent_uploads_create_one_cycle_per_id (void **state)
{
    (void)state;
    static client_t clients[CLIENTS];
    static tally_t t;

    /* round 1: nothing exists yet */
    s_race (clients, 1);
    s_tally (clients, &t);
    int distinct = 0;
    for (int id = 0; id < IDS; id++) {
        if (!t.uploaded[id])
            continue;
        distinct++;
        if (t.created[id] != 1)
            fail_msg ("inv-%03d: %d of %d items created a cycle", id,
                      t.created[id], t.uploaded[id]);
        assert_int_equal (t.conflicts[id], t.uploaded[id] - 1);
    }
    assert_true (distinct > IDS / 2); /* the subsets overlap, and cover */
    assert_int_equal (t.created_total, distinct);
    s_check_database (&t, distinct);
    json_decref (t.message_ids);
    s_clients_free (clients);

    /* cancel the even ids: their external ids are free again */
    int cancelled = 0;
    bool was_cancelled[IDS] = {false}, existed[IDS] = {false};
    for (int id = 0; id < IDS; id++)
        existed[id] = t.created[id] == 1;
    for (int id = 0; id < IDS; id += 2) {
        char path[96];
        snprintf (path, sizeof path, "/v1/billing-cycles/inv-%03d/cancel", id);
        long status = 0;
        json_t *a =
            rcd_test_api (s_fx.ing.port, "POST", path, s_fx.key, NULL, &status);
        if (status == 200) {
            assert_string_equal (
                json_string_value (json_object_get (a, "status")), "cancelled");
            was_cancelled[id] = true;
            cancelled++;
        }
        else
            assert_int_equal (status, 404); /* nobody uploaded it */
        json_decref (a);
    }
    assert_true (cancelled > 0);

    /* round 2: the same ids again; only the cancelled ones may be
       created, once each, and all the others conflict */
    s_race (clients, 2);
    s_tally (clients, &t);
    int recreated = 0, round2_new = 0;
    for (int id = 0; id < IDS; id++) {
        if (!t.uploaded[id])
            continue;
        char ext[32], tenant[24];
        s_external_id (id, ext, sizeof ext);
        snprintf (tenant, sizeof tenant, "%lld", s_fx.tenant);
        const char *params[] = {tenant, ext};
        long long rows = rcd_test_sql_int (
            s_fx.ing.url,
            "SELECT count(*) FROM billing_cycles"
            " WHERE tenant_id = $1::bigint AND external_billing_id = $2",
            2, params);
        if (was_cancelled[id] || !existed[id]) {
            /* free: exactly one of the racing items takes it */
            if (t.created[id] != 1)
                fail_msg ("%s inv-%03d: %d of %d items created a cycle",
                          was_cancelled[id] ? "cancelled" : "new", id,
                          t.created[id], t.uploaded[id]);
            assert_int_equal (rows, was_cancelled[id] ? 2 : 1);
            recreated += was_cancelled[id];
            round2_new += !was_cancelled[id];
        }
        else {
            if (t.created[id] != 0)
                fail_msg ("active inv-%03d: %d items created a second cycle",
                          id, t.created[id]);
            assert_int_equal (rows, 1);
        }
        assert_int_equal (t.conflicts[id], t.uploaded[id] - t.created[id]);
    }
    assert_int_equal (recreated, cancelled);
    assert_int_equal (t.created_total, recreated + round2_new);
    /* the cancelled cycles stay cancelled, their reminders too */
    assert_int_equal (s_sql_int ("SELECT count(*) FROM billing_cycles"
                                 " WHERE tenant_id = $1::bigint"
                                 "   AND status = 'cancelled'"),
                      cancelled);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM messages m"
                                 "  JOIN billing_cycles b"
                                 "    ON b.id = m.billing_cycle_id"
                                 " WHERE m.tenant_id = $1::bigint"
                                 "   AND b.status = 'cancelled'"
                                 "   AND m.status <> 'cancelled'"),
                      0);
    s_check_database (&t, distinct + recreated + round2_new);
    json_decref (t.message_ids);
    s_clients_free (clients);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_concurrent_uploads_create_one_cycle_per_id),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

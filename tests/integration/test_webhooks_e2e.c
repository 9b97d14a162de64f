/*  test_webhooks_e2e - gateway webhooks through the real processes
    (rcd_test_pipeline: scheduler, sender, recovery and ingestor as
    processes, the gateway simulator in process calling the ingestor's
    webhook routes back the way Evolution API v2 and Meta's Cloud API do).

    Each case makes one tenant with one Evolution and one Meta instance on
    the simulator, points the simulator's webhooks at the ingestor
    (Evolution: /v1/webhooks/evolution/{tenant}?token=<webhook_token>;
    Meta: /v1/webhooks/meta signed with the instance's app_secret), sends
    messages through the API and asserts where they end:

      receipts      every message ends 'read' with sent_at, delivered_at
                    and read_at, reached the gateway once; with every
                    third webhook posted twice, webhook_events still holds
                    each event once (4 per Evolution message: the echo and
                    three receipts; 3 per Meta message) and the ingestor
                    answered every post 2xx.
      unknown_400   a fifth of the sends are answered as Evolution's bare
                    400 / Meta's 131000 (outcome unknown; the simulator
                    counts them as sent): the echo (Evolution) or the first
                    receipt (Meta) settles them, they end 'read', were
                    sent once, and left no dead letter.
      receipts first  the sender writes its outcomes 2.5 s late
                    (batch_wait_ms) while the webhooks go out at once, so
                    echoes and receipts reach the ingestor before the
                    provider id is known: stored 'unmatched', then applied
                    by recovery's rematch (webhook_rematch_ms 100), and
                    every message still ends 'read'.

    In every case sent_at <= delivered_at <= read_at. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rcd_db.h"
#include "rcd_gwsim.h"
#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#define S_EVO        "evo"
#define S_META       "meta"
#define S_META_PNID  "1099002"
#define S_APP_SECRET "meta-app-secret"
#define S_PER_GW     100
#define S_TOTAL      (S_PER_GW + S_PER_GW)
#define S_WAIT_MS    20000

static const char *const s_env[] = {"RECADO_RETRY_BASE_MS=20",
                                    "RECADO_RETRY_CAP_MS=200",
                                    "RECADO_POLL_MS=20",
                                    "RECADO_BATCH_WAIT_MS=5",
                                    "RECADO_LEASE_CHECK_MS=200",
                                    "RECADO_WEBHOOK_REMATCH_MS=100",
                                    "RECADO_RECIPIENT_INTERVAL_MS=100",
                                    NULL};

typedef struct {
    rcd_test_pipeline_t *p;
    rcd_gwsim_t *sim;
    char *key;
    int64_t started_ms;
} s_case_t;

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  The pipeline with one tenant, an Evolution instance and a Meta
    instance (with an app secret) on the simulator, and the simulator's
    webhooks pointed at the ingestor with the extra settings in
    webhook_extra (a JSON object's members, or NULL). */
static s_case_t *
s_case_new (void **state, const char *name, const char *webhook_extra,
            const char *const *sender_env)
{
    s_case_t *c = calloc (1, sizeof *c);
    assert_non_null (c);
    *state = c; /* teardown frees it whatever fails next */
    c->started_ms = s_wall_ms ();
    rcd_test_pipeline_opts_t opts = {.name = name, .env = s_env};
    opts.kind_env[RCD_TP_SENDER] = sender_env;
    c->p = rcd_test_pipeline_new (&opts);
    c->sim = rcd_test_pipeline_sim (c->p);
    c->key = rcd_test_pipeline_tenant (c->p, name);
    rcd_test_pipeline_evolution (c->p, c->key, S_EVO, 1000);
    rcd_test_pipeline_instance (
        c->p, c->key,
        "{\"name\": \"" S_META "\", \"provider\": \"meta\","
        " \"access_token\": \"EAAGsimtoken\","
        " \"phone_number_id\": \"" S_META_PNID "\","
        " \"app_secret\": \"" S_APP_SECRET "\", \"rate_per_second\": 1000}");

    int port = rcd_test_pipeline_api_port (c->p);
    json_t *tenant =
        rcd_test_api_expect (port, 200, "GET", "/v1/tenant", c->key, NULL);
    json_int_t tenant_id = json_integer_value (json_object_get (tenant, "id"));
    const char *token = rcd_test_str (tenant, "webhook_token");
    assert_true (tenant_id > 0);
    assert_non_null (token);
    char config[1024];
    snprintf (config, sizeof config,
              "{\"webhook\": {\"evolution_url\": "
              "\"http://127.0.0.1:%d/v1/webhooks/evolution/%lld?token=%s\","
              " \"meta_url\": \"http://127.0.0.1:%d/v1/webhooks/meta\","
              " \"meta_app_secret\": \"" S_APP_SECRET "\"%s%s}}",
              port, (long long)tenant_id, token, port,
              webhook_extra ? ", " : "", webhook_extra ? webhook_extra : "");
    json_decref (tenant);
    assert_int_equal (rcd_gwsim_configure (c->sim, config), 0);
    return c;
}

static int
teardown (void **state)
{
    s_case_t *c = *state;
    if (c) {
        rcd_test_pipeline_destroy (&c->p);
        fprintf (stderr, "  case took %.1f s\n",
                 (double)(s_wall_ms () - c->started_ms) / 1000.0);
        free (c->key);
        free (c);
    }
    *state = NULL;
    return 0;
}

static long long
s_sql_int (s_case_t *c, const char *sql)
{
    return rcd_test_sql_int (rcd_test_pipeline_db (c->p), sql, 0, NULL);
}

/*  S_PER_GW messages pinned to each instance: i in [0, 100) to
    Evolution, [100, 200) to Meta, each to its own number. */
static void
s_submit (s_case_t *c, const char *prefix)
{
    json_t *items = rcd_test_pipeline_messages (0, S_PER_GW, prefix, S_EVO);
    json_t *meta =
        rcd_test_pipeline_messages (S_PER_GW, S_PER_GW, prefix, S_META);
    json_array_extend (items, meta);
    json_decref (meta);
    assert_int_equal (rcd_test_pipeline_submit (c->p, c->key, items), S_TOTAL);
}

static bool
s_all_read (void *arg)
{
    s_case_t *c = arg;
    return s_sql_int (c, "SELECT count(*) FROM messages"
                         " WHERE status = 'read'") == S_TOTAL;
}

/*  Quiet: the simulator has no webhook left to post, and no event waits
    for recovery's rematch. */
static bool
s_quiet (void *arg)
{
    s_case_t *c = arg;
    return rcd_gwsim_webhooks (c->sim, "pending") == 0 &&
           s_sql_int (c, "SELECT count(*) FROM webhook_events"
                         " WHERE outcome = 'unmatched'") == 0;
}

/*  Waits until every message is read and everything is quiet, printing
    the state on a timeout. */
static void
s_wait_read_and_quiet (s_case_t *c)
{
    if (!rcd_test_wait_until (s_all_read, c, S_WAIT_MS)) {
        rcd_test_pipeline_print_counts (c->p, "not all read");
        char *outcomes = rcd_test_sql (
            rcd_test_pipeline_db (c->p),
            "SELECT string_agg(kind || '/' || coalesce(status, '-') || '/' ||"
            " outcome || '=' || n, ' ') FROM (SELECT kind, status, outcome,"
            " count(*) AS n FROM webhook_events GROUP BY 1, 2, 3) s",
            0, NULL);
        fprintf (stderr, "webhook events: %s\n", outcomes ? outcomes : "none");
        free (outcomes);
        fail_msg ("messages not all read after %d ms (webhooks: scheduled "
                  "%zu posted %zu rejected %zu failed %zu pending %zu)",
                  S_WAIT_MS, rcd_gwsim_webhooks (c->sim, "scheduled"),
                  rcd_gwsim_webhooks (c->sim, "posted"),
                  rcd_gwsim_webhooks (c->sim, "rejected"),
                  rcd_gwsim_webhooks (c->sim, "failed"),
                  rcd_gwsim_webhooks (c->sim, "pending"));
    }
    if (!rcd_test_wait_until (s_quiet, c, S_WAIT_MS))
        fail_msg ("webhooks still pending (%zu) or events unmatched (%lld)",
                  rcd_gwsim_webhooks (c->sim, "pending"),
                  s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                " WHERE outcome = 'unmatched'"));
}

/*  What every case ends with: each message read with its three
    timestamps, sent to the gateway exactly once, one 'read' history row;
    every webhook answered 2xx; each event stored once and pointing at
    its message; no dead letter. */
static void
s_verify_all_read (s_case_t *c)
{
    rcd_test_pipeline_t *p = c->p;
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages"
                                    " WHERE status = 'read'"
                                    "   AND sent_at IS NOT NULL"
                                    "   AND delivered_at IS NOT NULL"
                                    "   AND read_at IS NOT NULL"
                                    "   AND provider_message_id IS NOT NULL"),
                      S_TOTAL);
    /* the times keep their order whatever order the receipts were
       applied in (a rematch, two applied at once, Meta's whole seconds) */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages"
                                    " WHERE NOT (sent_at <= delivered_at"
                                    "            AND delivered_at <= read_at)"),
                      0);
    rcd_db_t *db = rcd_db_new (rcd_test_pipeline_db (p));
    assert_non_null (db);
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT m.to_phone, m.body, i.provider"
                     "  FROM messages m JOIN instances i"
                     "    ON i.id = m.instance_id ORDER BY m.id",
                     0, NULL, &res) != 0)
        fail_msg ("messages: %s", rcd_db_error (db));
    assert_int_equal (rcd_db_res_rows (res), S_TOTAL);
    for (int r = 0; r < rcd_db_res_rows (res); r++) {
        const char *to = rcd_db_res_value (res, r, 0);
        const char *text = rcd_db_res_value (res, r, 1);
        bool evolution =
            strcmp (rcd_db_res_value (res, r, 2), "evolution") == 0;
        /* the simulator counts the number as the sender wrote it: the
           digits, without the + */
        size_t seen = rcd_gwsim_count (c->sim, evolution ? S_EVO : S_META_PNID,
                                       to + 1, text);
        if (seen != 1)
            fail_msg ("%s '%s' reached the gateway %zu times", to, text, seen);
    }
    rcd_db_res_destroy (&res);
    rcd_db_destroy (&db);
    assert_int_equal (rcd_gwsim_duplicates (c->sim), 0);
    assert_int_equal (rcd_gwsim_total (c->sim), S_TOTAL);
    /* exactly one 'read' step in each history */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages m"
                                    " WHERE (SELECT count(*)"
                                    "   FROM message_history h"
                                    "  WHERE h.message_id = m.id"
                                    "    AND h.status = 'read') <> 1"),
                      0);
    /* each gateway event once: the echo and three receipts of an
       Evolution message, three statuses of a Meta one, all pointing at
       their message, none left unmatched */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events"),
                      S_PER_GW * 4 + S_PER_GW * 3);
    assert_int_equal (
        s_sql_int (c, "SELECT count(*) FROM messages m"
                      " JOIN instances i ON i.id = m.instance_id"
                      " WHERE (SELECT count(*) FROM webhook_events w"
                      "         WHERE w.message_id = m.id"
                      "           AND w.tenant_id = m.tenant_id"
                      "           AND w.instance_id = m.instance_id)"
                      "    <> CASE i.provider WHEN 'evolution' THEN 4"
                      "       ELSE 3 END"),
        0);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                    " WHERE outcome NOT IN ('applied',"
                                    "   'settled', 'stale', 'known')"),
                      0);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM dead_letters"), 0);
    /* the ingestor answered every post 2xx */
    size_t scheduled = rcd_gwsim_webhooks (c->sim, "scheduled");
    assert_int_equal (rcd_gwsim_webhooks (c->sim, "posted"), scheduled);
    assert_int_equal (rcd_gwsim_webhooks (c->sim, "rejected"), 0);
    assert_int_equal (rcd_gwsim_webhooks (c->sim, "failed"), 0);
    assert_int_equal (rcd_gwsim_webhooks (c->sim, "dropped"), 0);
    assert_int_equal (scheduled - rcd_gwsim_webhooks (c->sim, "duplicated"),
                      S_PER_GW * 4 + S_PER_GW * 3);
}

/*  GET /v1/messages/{id} of the first message to each instance shows it
    read with its timestamps. */
static void
s_verify_api (s_case_t *c)
{
    const char *instances[] = {S_EVO, S_META};
    for (int k = 0; k < 2; k++) {
        const char *params[] = {instances[k]};
        long long id = rcd_test_sql_int (
            rcd_test_pipeline_db (c->p),
            "SELECT min(m.id) FROM messages m"
            " JOIN instances i ON i.id = m.instance_id WHERE i.name = $1",
            1, params);
        char path[64];
        snprintf (path, sizeof path, "/v1/messages/%lld", id);
        json_t *message = rcd_test_api_expect (
            rcd_test_pipeline_api_port (c->p), 200, "GET", path, c->key, NULL);
        assert_non_null (rcd_test_str (message, "status"));
        assert_string_equal (rcd_test_str (message, "status"), "read");
        assert_non_null (rcd_test_str (message, "sent_at"));
        assert_non_null (rcd_test_str (message, "delivered_at"));
        assert_non_null (rcd_test_str (message, "read_at"));
        assert_non_null (rcd_test_str (message, "provider_message_id"));
        json_decref (message);
    }
}

/*  The simulator answers every send to the numbers errors names
    (digits -> error; stolen) with that error. */
static void
s_lose_answers (s_case_t *c, json_t *errors)
{
    json_t *cfg = json_pack ("{s:o}", "number_errors", errors);
    char *text = json_dumps (cfg, JSON_COMPACT);
    json_decref (cfg);
    assert_int_equal (rcd_gwsim_configure (c->sim, text), 0);
    free (text);
}

static void
test_receipts_end_every_message_read_once (void **state)
{
    s_case_t *c =
        s_case_new (state, "wh_receipts", "\"duplicate_every\": 3", NULL);
    s_submit (c, "receipt");
    s_wait_read_and_quiet (c);
    s_verify_all_read (c);
    s_verify_api (c);
    /* the copies reached the ingestor and changed nothing */
    size_t duplicated = rcd_gwsim_webhooks (c->sim, "duplicated");
    fprintf (stderr, "  webhooks posted %zu, of which duplicates %zu\n",
             rcd_gwsim_webhooks (c->sim, "posted"), duplicated);
    assert_true (duplicated >= (S_PER_GW * 7) / 3);
    rcd_test_pipeline_passed (c->p);
}

static void
test_unknown_outcomes_are_settled_by_echo_or_receipt (void **state)
{
    s_case_t *c = s_case_new (state, "wh_unknown", NULL, NULL);
    /* every fifth number, on both gateways: Evolution answers 400
       ["Connection Closed"], Meta 500 code 131000, and both send it */
    json_t *errors = json_object ();
    for (int i = 0; i < S_TOTAL; i += 5) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("unknown_400"));
    }
    s_lose_answers (c, errors);

    s_submit (c, "unknown");
    s_wait_read_and_quiet (c);
    assert_int_equal (rcd_gwsim_errors (c->sim, "unknown_400"), S_TOTAL / 5);
    s_verify_all_read (c);
    /* they went through 'unknown', were settled by the gateway (echo or
       receipt), and were never attempted twice */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages m"
                                    " WHERE EXISTS (SELECT 1"
                                    "   FROM message_history h"
                                    "  WHERE h.message_id = m.id"
                                    "    AND h.status = 'unknown')"),
                      S_TOTAL / 5);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                    " WHERE outcome = 'settled'"),
                      S_TOTAL / 5);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages"
                                    " WHERE attempts <> 1"),
                      0);
    /* each settled by one event of its own; an Evolution message's id is
       the key id of its echo (whichever of echo and receipts came first) */
    assert_int_equal (s_sql_int (c, "SELECT count(DISTINCT message_id)"
                                    "  FROM webhook_events"
                                    " WHERE outcome = 'settled'"),
                      S_TOTAL / 5);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events w"
                                    " JOIN messages m ON m.id = w.message_id"
                                    " WHERE w.kind = 'echo'"
                                    "   AND m.provider_message_id"
                                    "       = w.provider_message_id"),
                      S_PER_GW);
    rcd_test_pipeline_passed (c->p);
}

static void
test_receipts_before_the_send_is_recorded_are_rematched (void **state)
{
    /* the sender writes its outcomes 2.5 s after the first answer of a
       batch, while the simulator posts the webhooks at once (the 700 of
       them take about 1.5 s here) */
    static const char *const slow_flush[] = {"RECADO_BATCH_WAIT_MS=2500", NULL};
    s_case_t *c = s_case_new (state, "wh_early", NULL, slow_flush);
    s_submit (c, "early");
    s_wait_read_and_quiet (c);
    s_verify_all_read (c);
    /* most events came before the sender recorded the provider id, were
       stored unmatched, and were applied by recovery on a later try */
    long long rematched =
        s_sql_int (c, "SELECT count(*) FROM webhook_events WHERE tries > 1");
    fprintf (stderr, "  events applied on a rematch: %lld of %d\n", rematched,
             S_PER_GW * 7);
    assert_true (rematched >= S_PER_GW * 7 / 2);
    rcd_test_pipeline_passed (c->p);
}

/*  Texts of S_LONG_CHARS characters, S_LONG_PER_GW to each gateway: each
    goes as 4 parts of at most 1 000 (the sender's part_max_chars). */
#define S_LONG_PER_GW 5
#define S_LONG_CHARS  3500
#define S_LONG_PARTS  4

static bool
s_long_read (void *arg)
{
    s_case_t *c = arg;
    return s_sql_int (c, "SELECT count(*) FROM messages"
                         " WHERE status = 'read'") == 2 * S_LONG_PER_GW;
}

/*  S_LONG_PER_GW long texts to each gateway, to the numbers of messages
    [0, S_LONG_PER_GW) (Evolution) and [S_PER_GW, S_PER_GW +
    S_LONG_PER_GW) (Meta). */
static void
s_submit_long (s_case_t *c)
{
    json_t *items = rcd_test_pipeline_messages (0, S_LONG_PER_GW, "l", S_EVO);
    json_t *meta =
        rcd_test_pipeline_messages (S_PER_GW, S_LONG_PER_GW, "l", S_META);
    json_array_extend (items, meta);
    json_decref (meta);
    for (size_t k = 0; k < json_array_size (items); k++) {
        char text[S_LONG_CHARS + 1];
        /* words numbered, so that no two parts have the same text */
        size_t len = (size_t)snprintf (text, sizeof text, "Aviso %zu:", k);
        for (unsigned w = 0; len + 12 <= S_LONG_CHARS; w++)
            len +=
                (size_t)snprintf (text + len, sizeof text - len, " parte%u", w);
        while (len < S_LONG_CHARS)
            text[len++] = '.';
        text[len] = 0;
        json_object_set_new (json_array_get (items, k), "text",
                             json_string (text));
    }
    assert_int_equal (rcd_test_pipeline_submit (c->p, c->key, items),
                      2 * S_LONG_PER_GW);
}

/*  The gateway sends an echo and receipts for every part of a long text
    (Evolution: the echo and three receipts; Meta: three statuses). The
    earlier parts' events find their message through part_ids (migration
    0012) and are recorded 'part', moving nothing; none is left
    unmatched for recovery to try again for ten minutes; the last part's
    move the message to 'read'. */
static void
test_events_of_earlier_parts_find_their_message (void **state)
{
    static const char *const quick_parts[] = {"RECADO_PARTS_DELAY_MS=50", NULL};
    s_case_t *c = s_case_new (state, "wh_parts", NULL, quick_parts);
    s_submit_long (c);
    if (!rcd_test_wait_until (s_long_read, c, S_WAIT_MS)) {
        rcd_test_pipeline_print_counts (c->p, "not all read");
        fail_msg ("long texts not all read");
    }
    if (!rcd_test_wait_until (s_quiet, c, S_WAIT_MS))
        fail_msg ("events left unmatched: %lld",
                  s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                " WHERE outcome = 'unmatched'"));
    assert_int_equal (rcd_gwsim_total (c->sim),
                      (size_t)(2 * S_LONG_PER_GW * S_LONG_PARTS));
    assert_int_equal (rcd_gwsim_duplicates (c->sim), 0);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages"
                                    " WHERE cardinality(part_ids) = 3"
                                    "   AND parts_sent = 4"
                                    "   AND NOT provider_message_id"
                                    "           = ANY (part_ids)"),
                      2 * S_LONG_PER_GW);
    /* every earlier part's events, pointing at their own message */
    long long parts = s_sql_int (c, "SELECT count(*) FROM webhook_events w"
                                    " JOIN messages m ON m.id = w.message_id"
                                    " WHERE w.outcome = 'part'"
                                    "   AND w.provider_message_id"
                                    "       = ANY (m.part_ids)");
    fprintf (stderr, "  events of earlier parts: %lld\n", parts);
    assert_int_equal (parts, S_LONG_PER_GW * (S_LONG_PARTS - 1) * (4 + 3));
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                    " WHERE outcome = 'part'"),
                      parts);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM webhook_events"
                                    " WHERE outcome NOT IN ('applied',"
                                    "   'settled', 'stale', 'known', 'part')"),
                      0);
    rcd_test_pipeline_passed (c->p);
}

/*  Every part's answer is lost (Evolution's bare 400, Meta's 131000;
    the simulator sends them all the same). Each part is settled by the
    gateway's echo of its text (Evolution) or by its first status (Meta:
    the one 'unknown' message to that number): the message goes back to
    pending with that part counted and the next attempt sends the next
    part; the last part's settlement makes it sent, and its receipts
    read. Every part reaches the gateway once (one attempt each); none is sent
    again, nothing waits for the reconciliation deadline. */
static void
test_a_long_texts_lost_answers_are_settled_part_by_part (void **state)
{
    static const char *const quick_parts[] = {"RECADO_PARTS_DELAY_MS=50", NULL};
    s_case_t *c = s_case_new (state, "wh_lost", NULL, quick_parts);
    json_t *errors = json_object ();
    for (int i = 0; i < S_LONG_PER_GW; i++) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("unknown_400"));
        rcd_test_pipeline_digits (S_PER_GW + i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("unknown_400"));
    }
    s_lose_answers (c, errors);

    s_submit_long (c);
    if (!rcd_test_wait_until (s_long_read, c, S_WAIT_MS)) {
        rcd_test_pipeline_print_counts (c->p, "not all read");
        fail_msg ("long texts not all read");
    }
    assert_int_equal (rcd_gwsim_errors (c->sim, "unknown_400"),
                      (size_t)(2 * S_LONG_PER_GW * S_LONG_PARTS));
    assert_int_equal (rcd_gwsim_total (c->sim),
                      (size_t)(2 * S_LONG_PER_GW * S_LONG_PARTS));
    assert_int_equal (rcd_gwsim_duplicates (c->sim), 0);
    /* each part went once, on its own attempt, and was settled: three
       parts back to pending, the last one sent */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages"
                                    " WHERE attempts = 4 AND parts_sent = 4"
                                    "   AND cardinality(part_ids) = 3"
                                    "   AND unknown_part IS NULL"),
                      2 * S_LONG_PER_GW);
    assert_int_equal (s_sql_int (c,
                                 "SELECT count(*) FROM message_history"
                                 " WHERE status = 'pending'"
                                 "   AND detail LIKE 'part _ of 4 settled%'"),
                      2 * S_LONG_PER_GW * (S_LONG_PARTS - 1));
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM message_history"
                                    " WHERE detail LIKE 'outcome of the last"
                                    " part settled%'"),
                      2 * S_LONG_PER_GW);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM dead_letters"), 0);
    rcd_test_pipeline_passed (c->p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (test_receipts_end_every_message_read_once,
                                   teardown),
        cmocka_unit_test_teardown (
            test_unknown_outcomes_are_settled_by_echo_or_receipt, teardown),
        cmocka_unit_test_teardown (
            test_receipts_before_the_send_is_recorded_are_rematched, teardown),
        cmocka_unit_test_teardown (
            test_events_of_earlier_parts_find_their_message, teardown),
        cmocka_unit_test_teardown (
            test_a_long_texts_lost_answers_are_settled_part_by_part, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

/*  test_faults - the fault matrix of issue 4: the pipeline as processes
    (rcd_test_pipeline) against the gateway simulator injecting one kind
    of failure per case. Each case sends a few hundred messages and
    asserts the final states, the attempts, one dead letter per failed
    message, and that the simulator saw each successful message exactly
    once.

    Rules held (DESIGN.md, issue 4, common/rcd_gateway.c):
      5xx, reset before an answer, 429, Meta 130429/131048  transient:
          retried with backoff until max_attempts (5), then failed + dead
          letter; a throttle (429, 130429, 131048) pauses the whole
          instance (instances.paused_until)
      not on WhatsApp      permanent: failed at once, one attempt
      timeout after the request went out, Evolution 400 with a bare text
                           unknown: never resent blindly
      gateway down, then back   the circuit opens after N consecutive
          transient failures, the scheduler stops claiming, one probe per
          cool-down; when the gateway is back everything is sent, none
          failed, none twice
    Retries are fast here (base 20 ms, cap 200 ms) so each case takes
    seconds. */
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

#define S_SETTLE_MS  60000
#define S_EVO        "evo"
#define S_META_PNID  "1099001"
#define S_MAX_ATTEMP 5

static const char *const s_env[] = {"RECADO_RETRY_BASE_MS=20",
                                    "RECADO_RETRY_CAP_MS=200",
                                    "RECADO_THROTTLE_PAUSE_MS=200",
                                    "RECADO_CIRCUIT_THRESHOLD=5",
                                    "RECADO_CIRCUIT_COOLDOWN_MS=300",
                                    "RECADO_RECIPIENT_INTERVAL_MS=100",
                                    "RECADO_LEASE_MS=10000",
                                    "RECADO_LEASE_CHECK_MS=200",
                                    "RECADO_POLL_MS=20",
                                    "RECADO_BATCH_WAIT_MS=5",
                                    NULL};

typedef struct {
    rcd_test_pipeline_t *p;
    rcd_gwsim_t *sim;
    char *key;
    long long instance;
    const char *sim_instance; /* the simulator's counting key */
    int64_t started_ms;       /* wall clock at the start, to report */
} s_case_t;

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  Starts the pipeline with one tenant and one instance (Meta or
    Evolution) at 1000/s, with extra environment for every process. */
static s_case_t *
s_case_new (void **state, const char *name, bool meta, const char *const *extra)
{
    s_case_t *c = calloc (1, sizeof *c);
    assert_non_null (c);
    *state = c; /* teardown frees it whatever fails next */
    c->started_ms = s_wall_ms ();
    rcd_test_pipeline_opts_t opts = {.name = name, .senders = 2, .env = s_env};
    opts.kind_env[RCD_TP_SENDER] = extra;
    c->p = rcd_test_pipeline_new (&opts);
    c->sim = rcd_test_pipeline_sim (c->p);
    c->key = rcd_test_pipeline_tenant (c->p, name);
    if (meta) {
        c->instance =
            rcd_test_pipeline_meta (c->p, c->key, "meta", S_META_PNID, 1000);
        c->sim_instance = S_META_PNID;
    }
    else {
        c->instance = rcd_test_pipeline_evolution (c->p, c->key, S_EVO, 1000);
        c->sim_instance = S_EVO;
    }
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

static void
s_configure (s_case_t *c, const char *json)
{
    assert_int_equal (rcd_gwsim_configure (c->sim, json), 0);
}

static long long
s_sql_int (s_case_t *c, const char *sql)
{
    char id[32];
    snprintf (id, sizeof id, "%lld", c->instance);
    const char *params[] = {id};
    return rcd_test_sql_int (rcd_test_pipeline_db (c->p), sql,
                             strstr (sql, "$1") ? 1 : 0, params);
}

typedef struct {
    long long sent, failed, unknown;
    long long attempts;       /* summed over every message */
    long long unknown_seen;   /* unknown messages the simulator counted */
    long long failed_max_att; /* failed messages with attempts == max */
} s_tally_t;

/*  Walks every message: a sent one reached the simulator exactly once,
    a failed one never, an unknown one at most once; no other status.
    Then one dead letter (with a reason and the attempts) per failed
    message and none for any other, and no duplicate at all. */
static s_tally_t
s_verify (s_case_t *c)
{
    s_tally_t t = {0};
    rcd_db_t *db = rcd_db_new (rcd_test_pipeline_db (c->p));
    assert_non_null (db);
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT to_phone, body, status, attempts,"
                     "       provider_message_id IS NOT NULL, max_attempts"
                     "  FROM messages ORDER BY id",
                     0, NULL, &res) != 0)
        fail_msg ("messages: %s", rcd_db_error (db));
    for (int r = 0; r < rcd_db_res_rows (res); r++) {
        const char *to = rcd_db_res_value (res, r, 0);
        const char *body = rcd_db_res_value (res, r, 1);
        const char *status = rcd_db_res_value (res, r, 2);
        long long attempts = atoll (rcd_db_res_value (res, r, 3));
        bool has_pmid = rcd_db_res_value (res, r, 4)[0] == 't';
        long long max = atoll (rcd_db_res_value (res, r, 5));
        size_t seen = rcd_gwsim_count (c->sim, c->sim_instance,
                                       to[0] == '+' ? to + 1 : to, body);
        t.attempts += attempts;
        if (strcmp (status, "sent") == 0) {
            t.sent++;
            if (seen != 1 || !has_pmid || attempts < 1)
                fail_msg ("sent %s '%s': seen %zu times, pmid %d, "
                          "attempts %lld",
                          to, body, seen, has_pmid, attempts);
        }
        else if (strcmp (status, "failed") == 0) {
            t.failed++;
            if (attempts == max)
                t.failed_max_att++;
            if (seen != 0)
                fail_msg ("failed %s '%s' reached the gateway %zu times", to,
                          body, seen);
        }
        else if (strcmp (status, "unknown") == 0) {
            t.unknown++;
            t.unknown_seen += seen > 0;
            if (seen > 1)
                fail_msg ("unknown %s '%s' reached the gateway %zu times", to,
                          body, seen);
        }
        else
            fail_msg ("%s '%s' ended %s (attempts %lld)", to, body, status,
                      attempts);
    }
    rcd_db_res_destroy (&res);
    rcd_db_destroy (&db);

    assert_int_equal (rcd_gwsim_duplicates (c->sim), 0);
    assert_int_equal (rcd_gwsim_total (c->sim), t.sent + t.unknown_seen);
    /* one dead letter per failed message, with its reason and attempts */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM messages m"
                                    " WHERE m.status = 'failed' AND"
                                    " (SELECT count(*) FROM dead_letters d"
                                    "   WHERE d.message_id = m.id"
                                    "     AND d.tenant_id = m.tenant_id"
                                    "     AND length(d.reason) > 0"
                                    "     AND d.attempts = m.attempts) <> 1"),
                      0);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM dead_letters d"
                                    " JOIN messages m ON m.id = d.message_id"
                                    " WHERE m.status <> 'failed'"),
                      0);
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM dead_letters"),
                      t.failed);
    fprintf (stderr,
             "  sent %lld failed %lld (at max attempts %lld) unknown %lld "
             "(seen %lld) attempts %lld\n",
             t.sent, t.failed, t.failed_max_att, t.unknown, t.unknown_seen,
             t.attempts);
    return t;
}

static void
s_submit (s_case_t *c, int first, int count, const char *prefix)
{
    assert_int_equal (
        rcd_test_pipeline_submit (
            c->p, c->key,
            rcd_test_pipeline_messages (first, count, prefix, NULL)),
        count);
}

static void
s_settle (s_case_t *c)
{
    if (!rcd_test_pipeline_wait_settled (c->p, S_SETTLE_MS))
        fail_msg ("messages still pending or sending after %d ms", S_SETTLE_MS);
}

/*  Whether the instance's paused_until was ever written (it stays after
    the pause has passed). */
static bool
s_was_paused (s_case_t *c)
{
    return s_sql_int (
               c, "SELECT count(*) FROM instances"
                  " WHERE id = $1::bigint AND paused_until IS NOT NULL") == 1;
}

typedef struct {
    s_case_t *c;
    int64_t at_least; /* wall ms paused_until must reach */
    long long paused_ms;
} s_pause_wait_t;

static bool
s_paused_past (void *arg)
{
    s_pause_wait_t *w = arg;
    w->paused_ms = s_sql_int (
        w->c, "SELECT coalesce((extract(epoch FROM paused_until) * 1000)"
              "::bigint, 0) FROM instances WHERE id = $1::bigint");
    return w->paused_ms >= w->at_least;
}

/*  A transient kind drawn at rate: every message ends sent (once) or,
    after max_attempts transient failures, failed with a dead letter;
    every attempt was one request the gateway answered with that kind or
    accepted. */
static s_tally_t
s_transient_case (s_case_t *c, int n, const char *kind)
{
    s_submit (c, 0, n, kind);
    s_settle (c);
    s_tally_t t = s_verify (c);
    size_t errors = rcd_gwsim_errors (c->sim, kind);
    fprintf (stderr, "  %s answers: %zu\n", kind, errors);
    assert_true (errors > 0);
    assert_int_equal (t.sent + t.failed, n);
    assert_int_equal (t.unknown, 0);
    assert_int_equal (t.failed, t.failed_max_att);
    assert_true (t.sent >= n * 95 / 100);
    assert_int_equal (t.attempts, (long long)(t.sent + errors));
    assert_true (t.attempts > t.sent);
    return t;
}

static void
test_5xx_is_retried_until_sent_or_dead_lettered (void **state)
{
    s_case_t *c = s_case_new (state, "f_5xx", false, NULL);
    /* six numbers fail every time: they must exhaust max_attempts */
    json_t *errors = json_object ();
    for (int i = 7; i < 300; i += 50) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("5xx"));
    }
    json_t *cfg = json_pack ("{s:{s:f}, s:o}", "error_rates", "5xx", 0.25,
                             "number_errors", errors);
    char *text = json_dumps (cfg, JSON_COMPACT);
    json_decref (cfg);
    s_configure (c, text);
    free (text);
    s_tally_t t = s_transient_case (c, 300, "5xx");
    assert_true (t.failed >= 6);
    /* each of them: failed after exactly max_attempts, dead-lettered
       with the gateway's answer */
    assert_int_equal (s_sql_int (c,
                                 "SELECT count(*) FROM messages m"
                                 " JOIN dead_letters d ON d.message_id = m.id"
                                 " WHERE m.status = 'failed'"
                                 "   AND m.attempts = 5 AND d.attempts = 5"
                                 "   AND d.gateway_answer LIKE '%Unavailable%'"
                                 "   AND m.body IN ('5xx 7', '5xx 57',"
                                 "     '5xx 107', '5xx 157', '5xx 207',"
                                 "     '5xx 257')"),
                      6);
    rcd_test_pipeline_passed (c->p);
}

static void
test_429_is_retried_and_pauses_the_instance (void **state)
{
    s_case_t *c = s_case_new (state, "f_429", false, NULL);
    s_configure (c, "{\"retry_after_s\": 1, \"error_rates\": {\"429\": 0.2}}");
    s_transient_case (c, 200, "429");
    if (!s_was_paused (c))
        fail_msg ("a 429 did not pause the instance (paused_until unset)");
    rcd_test_pipeline_passed (c->p);
}

/*  The active scheduler has logged the instance as unusable for a
    gateway pause. */
static bool
s_scheduler_saw_pause (void *arg)
{
    s_case_t *c = arg;
    return rcd_test_pipeline_log_has (c->p, RCD_TP_SCHEDULER, 0,
                                      "\"reason\":\"paused\"");
}

/*  The pause covers the whole instance: after one message's 429 with
    Retry-After 2, no other message reaches the gateway before
    paused_until. */
static void
test_throttle_pauses_the_whole_instance (void **state)
{
    s_case_t *c = s_case_new (state, "f_pause", false, NULL);
    char digits[32];
    rcd_test_pipeline_digits (0, digits, sizeof digits);
    char cfg[256];
    snprintf (cfg, sizeof cfg,
              "{\"retry_after_s\": 2, \"number_errors\": {\"%s\": \"429\"}}",
              digits);
    s_configure (c, cfg);
    s_submit (c, 0, 1, "pause");
    int64_t start = s_wall_ms ();
    /* the throttle is recorded on the instance */
    s_pause_wait_t pw = {c, start + 1, 0};
    rcd_test_wait_until (s_paused_past, &pw, 10000);
    long long paused_ms = pw.paused_ms;
    if (paused_ms <= start)
        fail_msg ("the 429 did not pause the instance (paused_until unset; "
                  "%zu 429 answers)",
                  rcd_gwsim_errors (c->sim, "429"));
    assert_int_equal (rcd_gwsim_errors (c->sim, "429"), 1);
    /* Retry-After 2 s, observed well within a second of the answer */
    assert_true (paused_ms >= start + 1000);
    /* the scheduler reads instances once a poll period: the new messages
       go in once it has seen the pause (what it claimed before is the
       approximation a poll period allows) */
    assert_true (rcd_test_wait_until (s_scheduler_saw_pause, c, 10000));
    snprintf (cfg, sizeof cfg, "{\"number_errors\": {\"%s\": null}}", digits);
    s_configure (c, cfg);
    s_submit (c, 1, 50, "pause");
    s_settle (c);
    s_tally_t t = s_verify (c);
    assert_int_equal (t.sent, 51);
    /* nothing reached the gateway for this instance during the pause */
    char url[128];
    snprintf (url, sizeof url, "%s/_sim/log?since_seq=0",
              rcd_gwsim_url (c->sim));
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    assert_int_equal (res.status, 200);
    json_t *log = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    json_t *entries = json_object_get (log, "entries");
    assert_int_equal (json_array_size (entries), 51);
    for (size_t i = 0; i < json_array_size (entries); i++) {
        json_int_t at = json_integer_value (
            json_array_get (json_array_get (entries, i), 1));
        if (at < paused_ms - 50)
            fail_msg ("a send arrived %lld ms before the pause ended",
                      (long long)(paused_ms - at));
    }
    json_decref (log);
    rcd_test_pipeline_passed (c->p);
}

static void
test_meta_130429_is_retried_and_pauses_the_instance (void **state)
{
    s_case_t *c = s_case_new (state, "f_130429", true, NULL);
    s_configure (c, "{\"error_rates\": {\"meta_130429\": 0.2}}");
    s_transient_case (c, 200, "meta_130429");
    if (!s_was_paused (c))
        fail_msg ("130429 did not pause the instance (paused_until unset)");
    rcd_test_pipeline_passed (c->p);
}

typedef struct {
    s_case_t *c;
    size_t total;
} s_growth_t;

static bool
s_sim_grew (void *arg)
{
    s_growth_t *g = arg;
    return rcd_gwsim_total (g->c->sim) > g->total;
}

static bool
s_none_sending (void *arg)
{
    s_case_t *c = arg;
    return rcd_test_pipeline_count (c->p, "sending") == 0;
}

/*  Meta's spam limit pauses the instance for at least a minute
    (rcd_gateway). The test checks the pause's length and that it holds,
    then ends it in the database instead of waiting a minute. */
static void
test_meta_131048_pauses_the_instance_for_a_minute (void **state)
{
    s_case_t *c = s_case_new (state, "f_131048", true, NULL);
    s_configure (c, "{\"error_rates\": {\"meta_131048\": 0.1}}");
    s_submit (c, 0, 200, "spam");
    int64_t start = s_wall_ms ();
    s_pause_wait_t pw = {c, start + 50000, 0};
    rcd_test_wait_until (s_paused_past, &pw, 15000);
    long long paused_ms = pw.paused_ms;
    assert_true (rcd_gwsim_errors (c->sim, "meta_131048") > 0);
    if (paused_ms < start + 50000)
        fail_msg ("131048 paused the instance until %lld ms from the start, "
                  "expected about a minute",
                  paused_ms ? (long long)(paused_ms - start) : 0LL);
    s_configure (c, "{\"error_rates\": {\"meta_131048\": null}}");
    /* what was in flight has come back; from now on nothing goes out */
    assert_true (rcd_test_wait_until (s_none_sending, c, 10000));
    assert_true (rcd_test_pipeline_count (c->p, "pending") > 0);
    s_growth_t g = {c, rcd_gwsim_total (c->sim)};
    assert_false (rcd_test_wait_until (s_sim_grew, &g, 1500));
    /* the minute is over: the pause, and the throttled messages' own
       retry times (at least the same minute) */
    s_sql_int (c, "UPDATE instances SET paused_until = now()"
                  " WHERE id = $1::bigint RETURNING 1");
    s_sql_int (c, "WITH u AS (UPDATE messages SET send_at = now()"
                  " WHERE status = 'pending' AND send_at > now()"
                  " RETURNING 1) SELECT count(*) FROM u");
    s_settle (c);
    s_tally_t t = s_verify (c);
    assert_int_equal (t.sent, 200);
    rcd_test_pipeline_passed (c->p);
}

static void
test_not_on_whatsapp_fails_at_once (void **state)
{
    s_case_t *c = s_case_new (state, "f_notwa", false, NULL);
    json_t *errors = json_object ();
    for (int i = 0; i < 300; i += 10) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("not_on_whatsapp"));
    }
    json_t *cfg = json_pack ("{s:o}", "number_errors", errors);
    char *text = json_dumps (cfg, JSON_COMPACT);
    json_decref (cfg);
    s_configure (c, text);
    free (text);
    s_submit (c, 0, 300, "notwa");
    s_settle (c);
    s_tally_t t = s_verify (c);
    assert_int_equal (t.failed, 30);
    assert_int_equal (t.sent, 270);
    assert_int_equal (t.attempts, 300); /* no retry of a permanent failure */
    assert_int_equal (rcd_gwsim_errors (c->sim, "not_on_whatsapp"), 30);
    /* the gateway's answer is kept */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM dead_letters"
                                    " WHERE gateway_answer LIKE '%exists%'"),
                      30);
    /* a permanent failure says nothing about the instance */
    assert_int_equal (s_sql_int (c, "SELECT count(*) FROM instances"
                                    " WHERE id = $1::bigint"
                                    "   AND circuit_state = 'closed'"),
                      1);
    rcd_test_pipeline_passed (c->p);
}

static const char *const s_timeout_env[] = {"RECADO_REQUEST_TIMEOUT_MS=500",
                                            NULL};

/*  A request that went out and got no answer may have been sent: the
    message waits in 'unknown' and is never sent again blindly. */
static void
test_timeout_leaves_the_message_unknown (void **state)
{
    s_case_t *c = s_case_new (state, "f_timeout", false, s_timeout_env);
    json_t *errors = json_object ();
    for (int i = 0; i < 100; i += 10) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("hang"));
    }
    json_t *cfg =
        json_pack ("{s:i, s:o}", "hang_ms", 5000, "number_errors", errors);
    char *text = json_dumps (cfg, JSON_COMPACT);
    json_decref (cfg);
    s_configure (c, text);
    free (text);
    s_submit (c, 0, 100, "timeout");
    s_settle (c);
    s_tally_t t = s_verify (c);
    assert_int_equal (t.sent, 90);
    assert_int_equal (t.unknown, 10);
    assert_int_equal (t.failed, 0);
    assert_int_equal (t.attempts, 100);
    assert_int_equal (rcd_gwsim_errors (c->sim, "hang"), 10);
    rcd_test_pipeline_passed (c->p);
}

/*  The connection closed after the request went out: either a transient
    connection error (retried) or, as rcd_gateway classifies it, an
    unknown outcome (never resent). Both keep exactly-once: a message
    ends sent once or unknown, and none fails before max_attempts. */
static void
test_reset_is_never_a_duplicate (void **state)
{
    s_case_t *c = s_case_new (state, "f_reset", false, NULL);
    s_configure (c, "{\"error_rates\": {\"reset\": 0.2}}");
    s_submit (c, 0, 200, "reset");
    s_settle (c);
    s_tally_t t = s_verify (c);
    size_t resets = rcd_gwsim_errors (c->sim, "reset");
    fprintf (stderr, "  resets %zu: %s\n", resets,
             t.unknown ? "held as unknown" : "retried as transient");
    assert_true (resets > 0);
    assert_int_equal (t.sent + t.failed + t.unknown, 200);
    assert_int_equal (t.failed, t.failed_max_att);
    assert_int_equal (t.attempts, (long long)(t.sent + resets));
    /* an unknown message was not resent after its reset */
    assert_int_equal (t.unknown_seen, 0);
    rcd_test_pipeline_passed (c->p);
}

/*  Evolution's 400 with a bare error text: the gateway may have sent it
    (the simulator counts it), so the message waits in 'unknown' and is
    never resent. */
static void
test_unknown_400_is_held_not_resent (void **state)
{
    s_case_t *c = s_case_new (state, "f_unknown", false, NULL);
    s_configure (c, "{\"error_rates\": {\"unknown_400\": 0.2}}");
    s_submit (c, 0, 200, "unknown");
    s_settle (c);
    s_tally_t t = s_verify (c);
    size_t unknowns = rcd_gwsim_errors (c->sim, "unknown_400");
    assert_true (unknowns > 0);
    assert_int_equal (t.unknown, (long long)unknowns);
    assert_int_equal (t.unknown_seen, t.unknown);
    assert_int_equal (t.sent + t.unknown, 200);
    assert_int_equal (t.attempts, 200);
    rcd_test_pipeline_passed (c->p);
}

typedef struct {
    s_case_t *c;
    const char *state;
} s_circuit_wait_t;

static bool
s_circuit_is (void *arg)
{
    s_circuit_wait_t *w = arg;
    char id[32];
    snprintf (id, sizeof id, "%lld", w->c->instance);
    const char *params[] = {id, w->state};
    return rcd_test_sql_int (rcd_test_pipeline_db (w->c->p),
                             "SELECT count(*) FROM instances WHERE id = "
                             "$1::bigint AND circuit_state = $2",
                             2, params) == 1;
}

static const char *const s_down_env[] = {"RECADO_CIRCUIT_COOLDOWN_MS=500",
                                         NULL};

/*  The gateway is down for a while, then back: the circuit opens, the
    scheduler stops claiming (only probes, one per cool-down, reach the
    gateway), and once it is back everything is sent, none failed, none
    twice. */
static void
test_gateway_down_then_back (void **state)
{
    s_case_t *c = s_case_new (state, "f_down", false, s_down_env);
    s_configure (c, "{\"down\": true}");
    s_submit (c, 0, 200, "down");
    s_circuit_wait_t w = {c, "open"};
    if (!rcd_test_wait_until (s_circuit_is, &w, 10000))
        fail_msg ("the circuit did not open while the gateway was down "
                  "(%zu requests refused)",
                  rcd_gwsim_errors (c->sim, "down"));
    /* what was in flight when it opened comes back first */
    assert_true (rcd_test_wait_until (s_none_sending, c, 5000));
    size_t at_open = rcd_gwsim_errors (c->sim, "down");
    int64_t from = s_wall_ms ();
    /* down for 4 s more: only probes (cool-down 500 ms) */
    s_growth_t never = {c, (size_t)-1};
    rcd_test_wait_until (s_sim_grew, &never, 4000);
    size_t probes = rcd_gwsim_errors (c->sim, "down") - at_open;
    int64_t window = s_wall_ms () - from;
    fprintf (stderr,
             "  refused %zu before the circuit opened, %zu in %lld ms "
             "after\n",
             at_open, probes, (long long)window);
    assert_true (probes <= (size_t)(window / 500 + 2));
    assert_int_equal (rcd_test_pipeline_count (c->p, "failed"), 0);
    s_configure (c, "{\"down\": false}");
    s_settle (c);
    s_tally_t t = s_verify (c);
    assert_int_equal (t.sent, 200);
    assert_int_equal (t.failed, 0);
    w.state = "closed";
    assert_true (rcd_test_wait_until (s_circuit_is, &w, 5000));
    rcd_test_pipeline_passed (c->p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (
            test_5xx_is_retried_until_sent_or_dead_lettered, teardown),
        cmocka_unit_test_teardown (test_429_is_retried_and_pauses_the_instance,
                                   teardown),
        cmocka_unit_test_teardown (test_throttle_pauses_the_whole_instance,
                                   teardown),
        cmocka_unit_test_teardown (
            test_meta_130429_is_retried_and_pauses_the_instance, teardown),
        cmocka_unit_test_teardown (
            test_meta_131048_pauses_the_instance_for_a_minute, teardown),
        cmocka_unit_test_teardown (test_not_on_whatsapp_fails_at_once,
                                   teardown),
        cmocka_unit_test_teardown (test_timeout_leaves_the_message_unknown,
                                   teardown),
        cmocka_unit_test_teardown (test_reset_is_never_a_duplicate, teardown),
        cmocka_unit_test_teardown (test_unknown_400_is_held_not_resent,
                                   teardown),
        cmocka_unit_test_teardown (test_gateway_down_then_back, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

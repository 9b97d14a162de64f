/*  test_campaigns_e2e - campaigns through the real processes
    (rcd_test_pipeline: scheduler, sender, recovery and ingestor as
    processes, the gateway simulator in process), issue 7:

      fairness  a large campaign does not delay anyone's reminders beyond
                a claim cycle (below);
      turns     the claims take turns between a tenant's campaigns and
                its other low-priority messages
                (test_campaigns_of_a_tenant_take_turns);
      control   pause, resume and cancel while the campaign is being
                sent, with exact counts after each
                (test_pause_resume_and_cancel_mid_run).

    Fairness: tenant A posts a campaign of F_CONTACTS contacts (low priority, the
    default) to its own Evolution instance at F_RATE_A messages a second,
    so it drains for about F_CONTACTS / F_RATE_A seconds. While it drains,
    at F_ROUNDS points of its progress (polled, not slept for), tenant B
    posts F_B_PER_ROUND messages due now to its own instance (every other
    one low priority, as low as the campaign, so that only the claim's
    per-tenant walk and not priority keeps it ahead of A's backlog; the
    rest normal, as billing reminders are), and tenant A posts
    F_A_PER_ROUND messages of its own due now (normal priority, the same
    instance as its campaign).

    Asserted:
      - every round was posted while the campaign still had more than a
        second of its rate pending (so the reminders really competed
        with its backlog);
      - B's due-to-sent latency (sent_at - send_at) stays within
        F_BOUND_B_MS: one claim cycle (poll_ms: the scheduler claims at
        least that often, and the ingestor's nudge makes it sooner) plus
        the gateway's answer (latency_ms) plus F_SLACK_MS for the claim
        statement, the dispatch hop and the sender's outcome write
        (batch_wait_ms 5) on a loaded two-core machine under ASan. A's
        backlog is walked only for A (the claim's per-tenant LATERAL), so
        nothing of it stands in front of B;
      - A's own reminders (normal before low within the tenant) stay
        within F_BOUND_A_MS: the same, plus the wait for the instance's
        next tokens (the campaign keeps A's bucket empty; the bucket
        refills F_RATE_A a second, so the round's F_A_PER_ROUND take
        F_A_PER_ROUND / F_RATE_A s) and the claim batch already leased
        ahead of them (at most burst_ms of the rate). Without priority
        they would wait for the whole backlog left (seconds);
      - the campaign completes (GET shows completed, sent = contacts)
        with every contact messaged exactly once at the simulator and no
        duplicate there.
    p50/p99/max of both latencies are printed. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#define F_CONTACTS    3000
#define F_RATE_A      200
#define F_RATE_B      1000
#define F_ROUNDS      5
#define F_B_PER_ROUND 20
#define F_A_PER_ROUND 10
#define F_POLL_MS     100
#define F_BURST_MS    250
#define F_GATEWAY_MS  20
#define F_SLACK_MS    400
#define F_BOUND_B_MS  (F_POLL_MS + F_GATEWAY_MS + F_SLACK_MS)
#define F_BOUND_A_MS                                                           \
    (F_BOUND_B_MS + F_BURST_MS + F_A_PER_ROUND * 1000 / F_RATE_A)
#define F_WAIT_MS 90000
/*  The turns case: two campaigns of R_CONTACTS and R_DIRECT low-priority
    messages of one tenant through one number at R_RATE a second. */
#define R_CONTACTS  400
#define R_DIRECT    200
#define R_RATE      100
#define R_WINDOW    300
#define R_SHARE_MIN 70
/*  B's message i is rcd_test_pipeline_messages index F_B_BASE + i, A's
    F_A_BASE + i: numbers apart from the campaign's [0, F_CONTACTS). */
#define F_B_BASE 200000
#define F_A_BASE 300000

static const char *const s_env[] = {
    "RECADO_POLL_MS=100",      "RECADO_BURST_MS=250",
    "RECADO_BATCH_WAIT_MS=5",  "RECADO_RETRY_BASE_MS=50",
    "RECADO_RETRY_CAP_MS=500", NULL};

typedef struct {
    rcd_test_pipeline_t *p;
    char *key_a;
    char *key_b;
    long long campaign;
    long long target; /* campaign messages sent to wait for */
} s_case_t;

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
s_sql_int (s_case_t *c, const char *sql, const char *p1)
{
    const char *params[] = {p1};
    return rcd_test_sql_int (rcd_test_pipeline_db (c->p), sql, p1 ? 1 : 0,
                             params);
}

static long long
s_campaign_count (s_case_t *c, const char *statuses)
{
    char id[24];
    snprintf (id, sizeof id, "%lld", c->campaign);
    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE campaign_id = $1::bigint"
              " AND status IN (%s)",
              statuses);
    return s_sql_int (c, sql, id);
}

static bool
s_campaign_reached (void *arg)
{
    s_case_t *c = arg;
    return s_campaign_count (c, "'sent', 'delivered', 'read'") >= c->target;
}

/*  A campaign's body: contacts i in [first, first + count), phone
    +<rcd_test_pipeline_digits(i)>, var name "C<i>". Caller frees. */
static char *
s_campaign_body (const char *name, int first, int count)
{
    size_t cap = (size_t)count * 64 + 256, len = 0;
    char *body = malloc (cap);
    assert_non_null (body);
    len += (size_t)snprintf (body, cap,
                             "{\"name\":\"%s\",\"template\":\"promo\","
                             "\"audience\":[",
                             name);
    for (int i = first; i < first + count; i++) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        len += (size_t)snprintf (body + len, cap - len,
                                 "%s{\"phone\":\"+%s\",\"vars\":{"
                                 "\"name\":\"C%d\"}}",
                                 i > first ? "," : "", digits, i);
    }
    snprintf (body + len, cap - len, "]}");
    return body;
}

/*  Percentile q of the due-to-sent latency (ms) of the messages outside
    campaigns of tenant key's instance name. */
static long long
s_latency (s_case_t *c, const char *instance, const char *what,
           const char *filter)
{
    char sql[640];
    snprintf (sql, sizeof sql,
              "SELECT coalesce(%s, -1)::bigint FROM (SELECT"
              " extract(epoch FROM m.sent_at - m.send_at) * 1000 AS ms"
              " FROM messages m JOIN instances i ON i.id = m.instance_id"
              " WHERE m.campaign_id IS NULL AND i.name = $1 %s) s",
              what, filter ? filter : "");
    return s_sql_int (c, sql, instance);
}

static int
teardown (void **state)
{
    s_case_t *c = *state;
    if (c) {
        rcd_test_pipeline_destroy (&c->p);
        free (c->key_a);
        free (c->key_b);
        free (c);
    }
    *state = NULL;
    return 0;
}

/*  Posts campaign name of count contacts from first; answers its id. */
static long long
s_post_campaign (s_case_t *c, const char *name, int first, int count)
{
    char *body = s_campaign_body (name, first, count);
    json_t *created =
        rcd_test_api_expect (rcd_test_pipeline_api_port (c->p), 201, "POST",
                             "/v1/campaigns", c->key_a, body);
    free (body);
    assert_int_equal (
        json_integer_value (json_object_get (created, "accepted")), count);
    long long id = json_integer_value (json_object_get (created, "id"));
    assert_true (id > 0);
    json_decref (created);
    return id;
}

/*  A case's pipeline (named name) and its tenant A (named name too),
    with an Evolution instance at rate a second and the template "promo"
    ("Offer for {{name}}"). */
static s_case_t *
s_case_new (void **state, const char *name, const char *instance, int rate)
{
    s_case_t *c = calloc (1, sizeof *c);
    assert_non_null (c);
    *state = c; /* teardown frees it whatever fails next */
    rcd_test_pipeline_opts_t opts = {.name = name, .env = s_env};
    c->p = rcd_test_pipeline_new (&opts);
    c->key_a = rcd_test_pipeline_tenant (c->p, name);
    rcd_test_pipeline_evolution (c->p, c->key_a, instance, rate);
    json_decref (rcd_test_api_expect (rcd_test_pipeline_api_port (c->p), 200,
                                      "PUT", "/v1/templates/promo", c->key_a,
                                      "{\"variations\":[\"Offer for "
                                      "{{name}}\"]}"));
    return c;
}

static void
test_campaign_does_not_delay_reminders (void **state)
{
    int64_t started = s_wall_ms ();
    s_case_t *c = s_case_new (state, "fair_a", "a_evo", F_RATE_A);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    char cfg[64];
    snprintf (cfg, sizeof cfg, "{\"latency_ms\": %d}", F_GATEWAY_MS);
    assert_int_equal (rcd_gwsim_configure (sim, cfg), 0);
    int port = rcd_test_pipeline_api_port (c->p);
    c->key_b = rcd_test_pipeline_tenant (c->p, "fair_b");
    rcd_test_pipeline_evolution (c->p, c->key_b, "b_evo", F_RATE_B);

    c->campaign = s_post_campaign (c, "big", 0, F_CONTACTS);

    /* F_ROUNDS rounds at 10%, 20%, ... of the campaign sent */
    for (int r = 0; r < F_ROUNDS; r++) {
        c->target = (long long)F_CONTACTS * (r + 1) / 10;
        if (!rcd_test_wait_until (s_campaign_reached, c, F_WAIT_MS)) {
            rcd_test_pipeline_print_counts (c->p, "campaign stalled");
            fail_msg ("campaign did not reach %lld sent", c->target);
        }
        char prefix[32];
        snprintf (prefix, sizeof prefix, "B reminder %d", r);
        json_t *b_items = rcd_test_pipeline_messages (
            F_B_BASE + r * F_B_PER_ROUND, F_B_PER_ROUND, prefix, NULL);
        /* every other one as low as the campaign: only the per-tenant
           walk, not priority, keeps those ahead of A's backlog */
        for (size_t k = 1; k < json_array_size (b_items); k += 2)
            json_object_set_new (json_array_get (b_items, k), "priority",
                                 json_string ("low"));
        assert_int_equal (rcd_test_pipeline_submit (c->p, c->key_b, b_items),
                          F_B_PER_ROUND);
        snprintf (prefix, sizeof prefix, "A reminder %d", r);
        assert_int_equal (
            rcd_test_pipeline_submit (
                c->p, c->key_a,
                rcd_test_pipeline_messages (F_A_BASE + r * F_A_PER_ROUND,
                                            F_A_PER_ROUND, prefix, NULL)),
            F_A_PER_ROUND);
        /* the reminders compete with a backlog still pending */
        long long pending = s_campaign_count (c, "'pending'");
        fprintf (stderr, "  round %d: campaign pending %lld\n", r, pending);
        assert_true (pending > F_RATE_A);
    }

    if (!rcd_test_pipeline_wait_settled (c->p, F_WAIT_MS))
        fail_msg ("messages not settled");
    long long total = F_CONTACTS + F_ROUNDS * (F_B_PER_ROUND + F_A_PER_ROUND);
    assert_int_equal (rcd_test_pipeline_count (c->p, "sent"), total);

    static const char *const p50 =
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)";
    static const char *const p99 =
        "percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)";
    static const char *const low = "AND m.priority = 2";
    long long b_p50 = s_latency (c, "b_evo", p50, NULL);
    long long b_p99 = s_latency (c, "b_evo", p99, NULL);
    long long b_max = s_latency (c, "b_evo", "max(ms)", NULL);
    long long bl_p99 = s_latency (c, "b_evo", p99, low);
    long long bl_max = s_latency (c, "b_evo", "max(ms)", low);
    long long a_p50 = s_latency (c, "a_evo", p50, NULL);
    long long a_p99 = s_latency (c, "a_evo", p99, NULL);
    long long a_max = s_latency (c, "a_evo", "max(ms)", NULL);
    fprintf (stderr,
             "  due-to-sent, tenant B (own instance, %d msgs): p50 %lld ms,"
             " p99 %lld ms, max %lld ms (bound %d); its low-priority half:"
             " p99 %lld ms, max %lld ms\n"
             "  due-to-sent, tenant A (beside its campaign, %d msgs): p50 "
             "%lld ms, p99 %lld ms, max %lld ms (bound %d)\n",
             F_ROUNDS * F_B_PER_ROUND, b_p50, b_p99, b_max, F_BOUND_B_MS,
             bl_p99, bl_max, F_ROUNDS * F_A_PER_ROUND, a_p50, a_p99, a_max,
             F_BOUND_A_MS);
    assert_int_equal (s_sql_int (c,
                                 "SELECT count(*) FROM messages m"
                                 " JOIN instances i ON i.id = m.instance_id"
                                 " WHERE m.campaign_id IS NULL"
                                 "   AND i.name = 'b_evo' AND m.priority = 2",
                                 NULL),
                      F_ROUNDS * F_B_PER_ROUND / 2);
    assert_int_equal (s_sql_int (c,
                                 "SELECT count(*) FROM messages"
                                 " WHERE campaign_id IS NULL",
                                 NULL),
                      F_ROUNDS * (F_B_PER_ROUND + F_A_PER_ROUND));
    assert_true (b_p50 >= 0 && b_p99 >= 0 && a_p50 >= 0 && a_p99 >= 0);
    if (b_max > F_BOUND_B_MS)
        fail_msg ("tenant B's reminder waited %lld ms > %d ms", b_max,
                  F_BOUND_B_MS);
    if (a_max > F_BOUND_A_MS)
        fail_msg ("tenant A's reminder waited %lld ms > %d ms", a_max,
                  F_BOUND_A_MS);

    /* the campaign completed, each contact messaged once */
    char path[64];
    snprintf (path, sizeof path, "/v1/campaigns/%lld", c->campaign);
    json_t *got = rcd_test_api_expect (port, 200, "GET", path, c->key_a, NULL);
    assert_non_null (rcd_test_str (got, "state"));
    assert_string_equal (rcd_test_str (got, "state"), "completed");
    assert_int_equal (json_integer_value (json_object_get (got, "sent")),
                      F_CONTACTS);
    json_decref (got);
    for (int i = 0; i < F_CONTACTS; i++) {
        char digits[32], text[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        snprintf (text, sizeof text, "Offer for C%d", i);
        size_t seen = rcd_gwsim_count (sim, "a_evo", digits, text);
        if (seen != 1)
            fail_msg ("contact %d got '%s' %zu times", i, text, seen);
    }
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);
    assert_int_equal (rcd_gwsim_total (sim), (size_t)total);
    fprintf (stderr, "  case took %.1f s\n",
             (double)(s_wall_ms () - started) / 1000.0);
    rcd_test_pipeline_passed (c->p);
}

/*  The number of claims (history 'sending' rows) after history row mark,
    the first limit of them, that took from campaign (NULL: outside
    campaigns). */
static long long
s_claims_from (s_case_t *c, long long mark, const char *campaign, int limit)
{
    char m[24], l[24];
    snprintf (m, sizeof m, "%lld", mark);
    snprintf (l, sizeof l, "%d", limit);
    const char *params[] = {m, l, campaign};
    return rcd_test_sql_int (
        rcd_test_pipeline_db (c->p),
        "SELECT count(*) FROM (SELECT m.campaign_id FROM message_history h"
        "  JOIN messages m ON m.id = h.message_id"
        " WHERE h.status = 'sending' AND h.id > $1::bigint"
        " ORDER BY h.id LIMIT $2::int) s"
        " WHERE s.campaign_id IS NOT DISTINCT FROM $3::bigint",
        3, params);
}

typedef struct {
    s_case_t *c;
    long long mark;
} s_window_t;

static bool
s_window_claimed (void *arg)
{
    s_window_t *w = arg;
    char m[24];
    snprintf (m, sizeof m, "%lld", w->mark);
    return s_sql_int (w->c,
                      "SELECT count(*) FROM message_history"
                      " WHERE status = 'sending' AND id > $1::bigint",
                      m) >= R_WINDOW;
}

/*  One tenant, one number, two campaigns posted one after the other and
    low-priority messages of its own: once all three are queued, the
    claims take turns between them (R_WINDOW claims, each of the three
    streams at least R_SHARE_MIN of them: a third each, give or take a
    claim batch), instead of draining the first campaign before the
    second starts. Then everything is sent, each contact once. */
static void
test_campaigns_of_a_tenant_take_turns (void **state)
{
    s_case_t *c = s_case_new (state, "turns", "t_evo", R_RATE);

    long long first = s_post_campaign (c, "first", 0, R_CONTACTS);
    long long second = s_post_campaign (c, "second", R_CONTACTS, R_CONTACTS);
    json_t *low =
        rcd_test_pipeline_messages (2 * R_CONTACTS, R_DIRECT, "Low", NULL);
    for (size_t k = 0; k < json_array_size (low); k++)
        json_object_set_new (json_array_get (low, k), "priority",
                             json_string ("low"));
    assert_int_equal (rcd_test_pipeline_submit (c->p, c->key_a, low), R_DIRECT);
    s_window_t w = {
        .c = c,
        .mark = s_sql_int (
            c, "SELECT coalesce(max(id), 0) FROM message_history", NULL),
    };
    /* the first campaign still has more than the window's share left */
    char id[24];
    snprintf (id, sizeof id, "%lld", first);
    assert_true (s_sql_int (c,
                            "SELECT count(*) FROM messages"
                            " WHERE campaign_id = $1::bigint"
                            "   AND status = 'pending'",
                            id) > R_WINDOW);
    if (!rcd_test_wait_until (s_window_claimed, &w, F_WAIT_MS))
        fail_msg ("fewer than %d claims", R_WINDOW);
    char second_id[24];
    snprintf (second_id, sizeof second_id, "%lld", second);
    long long n_first = s_claims_from (c, w.mark, id, R_WINDOW);
    long long n_second = s_claims_from (c, w.mark, second_id, R_WINDOW);
    long long n_low = s_claims_from (c, w.mark, NULL, R_WINDOW);
    fprintf (stderr,
             "  of %d claims: first campaign %lld, second %lld,"
             " outside campaigns %lld\n",
             R_WINDOW, n_first, n_second, n_low);
    assert_int_equal (n_first + n_second + n_low, R_WINDOW);
    assert_true (n_first >= R_SHARE_MIN);
    assert_true (n_second >= R_SHARE_MIN);
    assert_true (n_low >= R_SHARE_MIN);

    if (!rcd_test_pipeline_wait_settled (c->p, F_WAIT_MS))
        fail_msg ("messages not settled");
    long long total = 2 * R_CONTACTS + R_DIRECT;
    assert_int_equal (rcd_test_pipeline_count (c->p, "sent"), total);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);
    assert_int_equal (rcd_gwsim_total (sim), (size_t)total);
    rcd_test_pipeline_passed (c->p);
}

/*  The control case: C_CONTACTS contacts at C_RATE a second. */
#define C_CONTACTS 1500
#define C_RATE     150
#define C_STEP     300 /* sent before each change */

static long long
s_count_of (s_case_t *c, const char *status)
{
    char id[24];
    snprintf (id, sizeof id, "%lld", c->campaign);
    const char *params[] = {id, status};
    return rcd_test_sql_int (rcd_test_pipeline_db (c->p),
                             "SELECT count(*) FROM messages"
                             " WHERE campaign_id = $1::bigint"
                             "   AND status = $2::text",
                             2, params);
}

static bool
s_none_in_flight (void *arg)
{
    s_case_t *c = arg;
    return s_count_of (c, "sending") == 0 && s_count_of (c, "pending") == 0;
}

/*  POST /v1/campaigns/{id}/<action>; answers the campaign. */
static json_t *
s_change (s_case_t *c, const char *action)
{
    char path[96];
    snprintf (path, sizeof path, "/v1/campaigns/%lld/%s", c->campaign, action);
    return rcd_test_api_expect (rcd_test_pipeline_api_port (c->p), 200, "POST",
                                path, c->key_a, NULL);
}

/*  The campaign as GET answers it: its counts match the simulator's
    sends (sent) and the database (each status), and sent + open +
    cancelled is every contact. Answers sent. */
static long long
s_check_counts (s_case_t *c, const char *state)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/campaigns/%lld", c->campaign);
    json_t *got = rcd_test_api_expect (rcd_test_pipeline_api_port (c->p), 200,
                                       "GET", path, c->key_a, NULL);
    assert_non_null (rcd_test_str (got, "state"));
    assert_string_equal (rcd_test_str (got, "state"), state);
    json_t *counts = json_object_get (got, "counts");
    static const char *const statuses[] = {"pending", "paused",    "sending",
                                           "sent",    "cancelled", "failed"};
    long long sum = 0;
    for (size_t k = 0; k < sizeof statuses / sizeof *statuses; k++) {
        long long n =
            json_integer_value (json_object_get (counts, statuses[k]));
        assert_int_equal (n, s_count_of (c, statuses[k]));
        sum += n;
    }
    assert_int_equal (sum, C_CONTACTS);
    long long sent = json_integer_value (json_object_get (got, "sent"));
    json_decref (got);
    assert_int_equal (sent, s_count_of (c, "sent"));
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (rcd_gwsim_total (sim), (size_t)sent);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);
    return sent;
}

/*  Pause while the campaign is being sent: nothing more is claimed,
    what was leased finishes, the rest is held (paused); nothing reaches
    the gateway while paused. Resume: it continues where it stopped.
    Cancel: the rest is cancelled, what was leased finishes. After each,
    the counts by status add up to the audience and the simulator saw
    exactly the sent ones, each once. */
static void
test_pause_resume_and_cancel_mid_run (void **state)
{
    s_case_t *c = s_case_new (state, "control", "c_evo", C_RATE);
    c->campaign = s_post_campaign (c, "control", 0, C_CONTACTS);

    /* pause mid-run */
    c->target = C_STEP;
    if (!rcd_test_wait_until (s_campaign_reached, c, F_WAIT_MS))
        fail_msg ("campaign did not reach %d sent", C_STEP);
    json_t *a = s_change (c, "pause");
    assert_string_equal (rcd_test_str (a, "state"), "paused");
    json_decref (a);
    if (!rcd_test_wait_until (s_none_in_flight, c, F_WAIT_MS))
        fail_msg ("leased messages did not finish");
    long long sent = s_check_counts (c, "paused");
    assert_true (sent >= C_STEP && sent < C_CONTACTS);
    assert_int_equal (s_count_of (c, "paused"), C_CONTACTS - sent);
    /* a second later, still nothing more reached the gateway: at C_RATE
       that would have been C_RATE sends */
    usleep (1000 * 1000);
    assert_int_equal (rcd_gwsim_total (rcd_test_pipeline_sim (c->p)),
                      (size_t)sent);
    assert_int_equal (s_check_counts (c, "paused"), sent);
    fprintf (stderr, "  paused at %lld sent\n", sent);

    /* resume, then cancel mid-run */
    a = s_change (c, "resume");
    assert_string_equal (rcd_test_str (a, "state"), "running");
    json_decref (a);
    c->target = sent + C_STEP;
    if (!rcd_test_wait_until (s_campaign_reached, c, F_WAIT_MS))
        fail_msg ("campaign did not resume");
    a = s_change (c, "cancel");
    assert_string_equal (rcd_test_str (a, "state"), "cancelled");
    json_decref (a);
    if (!rcd_test_wait_until (s_none_in_flight, c, F_WAIT_MS))
        fail_msg ("leased messages did not finish");
    long long total = s_check_counts (c, "cancelled");
    assert_true (total >= sent + C_STEP && total < C_CONTACTS);
    assert_int_equal (s_count_of (c, "cancelled"), C_CONTACTS - total);
    assert_int_equal (s_count_of (c, "paused"), 0);
    fprintf (stderr, "  cancelled at %lld sent, %lld cancelled\n", total,
             C_CONTACTS - total);
    /* each contact sent reached the gateway once, the others never */
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    char id[24];
    snprintf (id, sizeof id, "%lld", c->campaign);
    long long checked = 0;
    for (int i = 0; i < C_CONTACTS; i++) {
        char digits[32], text[32], phone[40];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        snprintf (text, sizeof text, "Offer for C%d", i);
        snprintf (phone, sizeof phone, "+%s", digits);
        const char *p2[] = {id, phone};
        long long was_sent = rcd_test_sql_int (
            rcd_test_pipeline_db (c->p),
            "SELECT count(*) FROM messages WHERE campaign_id = $1::bigint"
            "   AND to_phone = $2 AND status = 'sent'",
            2, p2);
        if (rcd_gwsim_count (sim, "c_evo", digits, text) != (size_t)was_sent)
            fail_msg ("contact %d: simulator and database disagree", i);
        checked += was_sent;
    }
    assert_int_equal (checked, total);
    rcd_test_pipeline_passed (c->p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (test_campaign_does_not_delay_reminders,
                                   teardown),
        cmocka_unit_test_teardown (test_campaigns_of_a_tenant_take_turns,
                                   teardown),
        cmocka_unit_test_teardown (test_pause_resume_and_cancel_mid_run,
                                   teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

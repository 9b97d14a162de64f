/*  test_sender.c - the sender actor against real PostgreSQL, real ZeroMQ
    sockets and the gateway simulator over loopback HTTP.

    Each test starts a sender actor in process, connected to a PUSH socket
    the test binds (playing the scheduler) and publishing events to a SUB
    socket the test binds (playing the monitor). Message rows are inserted
    as the scheduler's claim leaves them: status 'sending', attempts = 1,
    a lease, an instance.
*/
#include "rcd_clock.h"
#include "rcd_gwsim.h"
#include "rcd_http.h"
#include "rcd_proto.h"
#include "rcd_sender_server.h"
#include "rcd_test.h"

#include <czmq.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define S_WAIT_MS 15000

/*  Shared by every test: one database, one simulator, one tenant. */
static char *s_url;
static rcd_gwsim_t *s_sim;
static char s_tenant[24];
static char s_evo[24]; /* instance ids */
static char s_meta[24];
static char s_disabled[24];
static char s_ghost[24];    /* evolution instance the gateway does not know */
static char s_badtoken[24]; /* meta instance with a wrong token */
static char s_refused[24];  /* nothing listens at its base_url */
static char s_circ[24];     /* evolution, for circuit tests */
static char s_circ_bad[24]; /* evolution, its apikey is wrong once asked */
static char s_thr[24];      /* evolution, for throttle tests */
static char s_thr_meta[24]; /* meta, for throttle tests */

/*  Per test: the sockets we bind and the actor. */
typedef struct {
    zsock_t *push; /* we are the scheduler */
    zsock_t *sub;  /* we are the monitor */
    char dispatch_ep[64];
    char events_ep[64];
    rcd_sender_config_t cfg;
    zactor_t *actor;
    zhashx_t *events;  /* kind -> (uintptr_t) summed count */
    zhashx_t *details; /* kind -> last detail (string) */
} fixture_t;

/*  --------------------------------------------------------------------
    Helpers */

static char *
s_sql (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql (s_url, sql, n, params);
}

static long long
s_sql_int (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql_int (s_url, sql, n, params);
}

/*  Inserts an instance; returns its id in out. */
static void
s_instance (char *out, const char *name, const char *provider,
            const char *base_url, const char *api_key, const char *token,
            const char *phone_number_id, const char *enabled)
{
    const char *params[] = {s_tenant, name,  provider,        base_url,
                            api_key,  token, phone_number_id, enabled};
    char *id = rcd_test_sql (
        s_url,
        "INSERT INTO instances (tenant_id, name, provider, base_url, api_key,"
        " access_token, phone_number_id, rate_per_second, enabled)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, 80, $8::boolean) RETURNING id",
        8, params);
    assert_non_null (id);
    snprintf (out, 24, "%s", id);
    free (id);
}

/*  A message as a claim leaves it; returns its id. */
static long long
s_message (const char *instance_id, const char *to, const char *text,
           int attempts)
{
    char att[16];
    snprintf (att, sizeof att, "%d", attempts);
    return s_sql_int (
        "INSERT INTO messages (tenant_id, to_phone, body, status, instance_id,"
        " attempts, lease_until)"
        " VALUES ($1, $2, $3, 'sending', $4, $5::int,"
        "         now() + interval '2 minutes') RETURNING id",
        5, s_tenant, to, text, instance_id, att);
}

/*  Pushes the dispatch of a message as the scheduler would. */
static void
s_dispatch (fixture_t *fx, long long id, int attempt, const char *instance_id,
            const char *to, const char *text, int64_t lease_until_ms)
{
    rcd_dispatch_t d = {
        .id = (uint64_t)id,
        .attempt = (uint32_t)attempt,
        .lease_until_ms =
            lease_until_ms ? lease_until_ms : rcd_clock_now_ms () + 120000,
        .tenant_id = strtoull (s_tenant, NULL, 10),
        .instance_id = strtoull (instance_id, NULL, 10),
        .to = (char *)to,
        .text = (char *)text,
        .delay_ms = 0,
    };
    assert_int_equal (rcd_dispatch_send (&d, fx->push), 0);
}

/*  Sends message id (inserted with attempts) and returns its id. */
static long long
s_send (fixture_t *fx, const char *instance_id, const char *to,
        const char *text)
{
    long long id = s_message (instance_id, to, text, 1);
    s_dispatch (fx, id, 1, instance_id, to, text, 0);
    return id;
}

typedef struct {
    const char *sql;
    const char *param;
    long long expect;
} s_poll_t;

static bool
s_poll_sql (void *arg)
{
    s_poll_t *p = arg;
    const char *params[] = {p->param};
    return rcd_test_sql_int (s_url, p->sql, p->param ? 1 : 0, params) ==
           p->expect;
}

/*  Waits until sql (one optional parameter) answers expect. */
static void
s_wait_sql (const char *sql, const char *param, long long expect)
{
    s_poll_t p = {sql, param, expect};
    if (!rcd_test_wait_until (s_poll_sql, &p, S_WAIT_MS))
        fail_msg ("timed out waiting for %lld from: %s", expect, sql);
}

static char *
s_idstr (long long id)
{
    static char buf[8][24];
    static int next;
    char *out = buf[next++ % 8];
    snprintf (out, 24, "%lld", id);
    return out;
}

/*  Waits for a message to reach a status. */
static void
s_wait_status (long long id, const char *status)
{
    char sql[160];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM messages WHERE id = $1 AND status = '%s'",
              status);
    s_wait_sql (sql, s_idstr (id), 1);
}

static char *
s_col (long long id, const char *col)
{
    char sql[128];
    snprintf (sql, sizeof sql, "SELECT (%s)::text FROM messages WHERE id = $1",
              col);
    return s_sql (sql, 1, s_idstr (id));
}

static void
s_assert_col (long long id, const char *col, const char *expect)
{
    char *v = s_col (id, col);
    if (expect == NULL) {
        if (v)
            fail_msg ("message %lld %s: expected NULL, got %s", id, col, v);
    }
    else {
        if (!v)
            fail_msg ("message %lld %s: expected %s, got NULL", id, col,
                      expect);
        assert_string_equal (v, expect);
    }
    free (v);
}

static void
s_configure (const char *json)
{
    assert_int_equal (rcd_gwsim_configure (s_sim, json), 0);
}

/*  An instances column (expression) as text. */
static char *
s_inst_col (const char *instance_id, const char *col)
{
    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT (%s)::text FROM instances WHERE id = $1::bigint", col);
    return s_sql (sql, 1, instance_id);
}

static void
s_assert_inst (const char *instance_id, const char *col, const char *expect)
{
    char *v = s_inst_col (instance_id, col);
    if (expect == NULL) {
        if (v)
            fail_msg ("instance %s %s: expected NULL, got %s", instance_id, col,
                      v);
    }
    else {
        if (!v)
            fail_msg ("instance %s %s: expected %s, got NULL", instance_id, col,
                      expect);
        if (strcmp (v, expect) != 0)
            fail_msg ("instance %s %s: expected %s, got %s", instance_id, col,
                      expect, v);
    }
    free (v);
}

/*  A closed circuit, no pause: how each circuit test starts. */
static void
s_instance_reset (const char *instance_id)
{
    free (s_sql ("UPDATE instances SET circuit_state = 'closed',"
                 " circuit_failures = 0, circuit_until = NULL,"
                 " circuit_reason = NULL, circuit_opened_at = NULL,"
                 " paused_until = NULL WHERE id = $1::bigint",
                 1, instance_id));
}

/*  Makes the test database refuse connections and drops the sender's
    (on = false), or lets them in again (on = true). */
static void
s_database_reachable (bool on)
{
    const char *dbname = strstr (s_url, "dbname=") + 7;
    char admin[512], sql[256];
    snprintf (admin, sizeof admin, "%s dbname=postgres",
              getenv ("RECADO_TEST_PG"));
    snprintf (sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", dbname,
              on ? "true" : "false");
    free (rcd_test_sql (admin, sql, 0, NULL));
    if (on)
        return;
    const char *params[] = {dbname};
    free (rcd_test_sql (admin,
                        "SELECT count(pg_terminate_backend(pid)) FROM"
                        " pg_stat_activity WHERE datname = $1",
                        1, params));
}

/*  Reads every event frame waiting on the SUB socket into the counts. */
static void
s_pump_events (fixture_t *fx)
{
    while (zsock_events (fx->sub) & ZMQ_POLLIN) {
        rcd_proto_msg_t msg;
        memset (&msg, 0, sizeof msg);
        if (rcd_proto_recv (fx->sub, &msg) != 0)
            continue;
        const char *kind = NULL;
        uint64_t count = 1;
        if (msg.type == RCD_MSG_EVENT) {
            kind = msg.u.event.kind;
            count = msg.u.event.count;
        }
        else if (msg.type == RCD_MSG_HEARTBEAT)
            kind = "heartbeat";
        if (kind) {
            uintptr_t sum = (uintptr_t)zhashx_lookup (fx->events, kind);
            zhashx_update (fx->events, kind, (void *)(sum + count));
            if (msg.type == RCD_MSG_EVENT && msg.u.event.detail)
                zhashx_update (fx->details, kind, msg.u.event.detail);
        }
        rcd_proto_msg_clear (&msg);
    }
}

static uint64_t
s_event_count (fixture_t *fx, const char *kind)
{
    s_pump_events (fx);
    return (uintptr_t)zhashx_lookup (fx->events, kind);
}

/*  The detail of the last event of a kind ("" when none came). */
static const char *
s_event_detail (fixture_t *fx, const char *kind)
{
    s_pump_events (fx);
    const char *d = zhashx_lookup (fx->details, kind);
    return d ? d : "";
}

typedef struct {
    fixture_t *fx;
    const char *kind;
    uint64_t min;
} s_event_wait_t;

static bool
s_poll_event (void *arg)
{
    s_event_wait_t *w = arg;
    return s_event_count (w->fx, w->kind) >= w->min;
}

static void
s_wait_event (fixture_t *fx, const char *kind, uint64_t min)
{
    s_event_wait_t w = {fx, kind, min};
    if (!rcd_test_wait_until (s_poll_event, &w, S_WAIT_MS))
        fail_msg ("timed out waiting for event %s >= %llu (have %llu)", kind,
                  (unsigned long long)min,
                  (unsigned long long)s_event_count (fx, kind));
}

static void
s_start (fixture_t *fx)
{
    fx->actor = zactor_new (rcd_sender_server, &fx->cfg);
    assert_non_null (fx->actor);
    /* The first heartbeat proves the event path is up (slow joiner). */
    s_wait_event (fx, "heartbeat", 1);
}

typedef struct {
    rcd_gwsim_t *sim;
    size_t held;
} s_held_t;

static bool
s_poll_held (void *arg)
{
    s_held_t *h = arg;
    return rcd_gwsim_held (h->sim) >= h->held;
}

/*  --------------------------------------------------------------------
    Fixture */

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    fx->push = zsock_new (ZMQ_PUSH);
    fx->sub = zsock_new (ZMQ_SUB);
    assert_non_null (fx->push);
    assert_non_null (fx->sub);
    zsock_set_subscribe (fx->sub, "");
    zsock_set_sndtimeo (fx->push, 2000);
    /* A kernel-chosen port, not czmq's "*" (the lowest free one from
       49152 up): on a shared box, a socket of another test program still
       reconnecting to "its" old port there would take a share of our
       dispatches or events. */
    int port =
        zsock_bind (fx->push, "tcp://127.0.0.1:%d", rcd_test_free_port ());
    assert_true (port > 0);
    snprintf (fx->dispatch_ep, sizeof fx->dispatch_ep, "tcp://127.0.0.1:%d",
              port);
    port = zsock_bind (fx->sub, "tcp://127.0.0.1:%d", rcd_test_free_port ());
    assert_true (port > 0);
    snprintf (fx->events_ep, sizeof fx->events_ep, "tcp://127.0.0.1:%d", port);
    fx->events = zhashx_new ();
    fx->details = zhashx_new ();
    zhashx_set_destructor (fx->details, (zhashx_destructor_fn *)zstr_free);
    zhashx_set_duplicator (fx->details, (zhashx_duplicator_fn *)strdup);
    fx->cfg = (rcd_sender_config_t){
        .database_url = s_url,
        .dispatch_endpoint = fx->dispatch_ep,
        .events_endpoint = fx->events_ep,
        .dispatch_hwm = 100,
        .max_inflight = 64,
        .batch_max = 500,
        .batch_wait_ms = 5,
        .connect_timeout_ms = 2000,
        .request_timeout_ms = 10000,
        .retry_base_ms = 1000,
        .retry_cap_ms = 300000,
        .lease_margin_ms = 1000,
        .instance_refresh_s = 10,
        .drain_timeout_ms = 20000,
        .circuit_threshold = 5,
        .circuit_cooldown_ms = 30000,
        .throttle_pause_ms = 5000,
    };
    rcd_gwsim_reset (s_sim);
    s_configure ("{\"instances\": {\"evo1\": {\"apikey\": \"evo-key\"},"
                 " \"1065\": {\"token\": \"meta-token\"},"
                 " \"ghost\": {\"unknown\": true}}}");
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    zactor_destroy (&fx->actor);
    zsock_destroy (&fx->push);
    zsock_destroy (&fx->sub);
    zhashx_destroy (&fx->events);
    zhashx_destroy (&fx->details);
    free (fx);
    return 0;
}

static int
s_group_setup (void **state)
{
    (void)state;
    s_url = rcd_test_db_create ("sender");
    s_sim = rcd_gwsim_new (NULL, 0);
    assert_non_null (s_sim);
    char *tenant =
        rcd_test_sql (s_url,
                      "INSERT INTO tenants (name, api_key_hash, webhook_token)"
                      " VALUES ('acme', '\\x01'::bytea, 'tok') RETURNING id",
                      0, NULL);
    assert_non_null (tenant);
    snprintf (s_tenant, sizeof s_tenant, "%s", tenant);
    free (tenant);
    const char *sim = rcd_gwsim_url (s_sim);
    s_instance (s_evo, "evo1", "evolution", sim, "evo-key", NULL, NULL, "true");
    s_instance (s_meta, "meta1", "meta", sim, NULL, "meta-token", "1065",
                "true");
    s_instance (s_disabled, "off", "evolution", sim, "evo-key", NULL, NULL,
                "false");
    s_instance (s_ghost, "ghost", "evolution", sim, "evo-key", NULL, NULL,
                "true");
    s_instance (s_badtoken, "meta-bad", "meta", sim, NULL, "wrong-token",
                "1066", "true");
    /* tokens of the simulator's 1066 are checked once it knows one */
    char refused[64];
    snprintf (refused, sizeof refused, "http://127.0.0.1:%d",
              rcd_test_free_port ());
    s_instance (s_refused, "nowhere", "evolution", refused, "evo-key", NULL,
                NULL, "true");
    s_instance (s_circ, "circ1", "evolution", sim, "evo-key", NULL, NULL,
                "true");
    s_instance (s_circ_bad, "circ2", "evolution", sim, "evo-key", NULL, NULL,
                "true");
    s_instance (s_thr, "thr1", "evolution", sim, "evo-key", NULL, NULL, "true");
    s_instance (s_thr_meta, "thr-meta", "meta", sim, NULL, "meta-token", "1067",
                "true");
    return 0;
}

static int
s_group_teardown (void **state)
{
    (void)state;
    rcd_gwsim_destroy (&s_sim);
    rcd_test_db_drop (&s_url);
    return 0;
}

/*  --------------------------------------------------------------------
    Tests */

static void
test_sends_through_evolution_and_meta_exactly_once (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    enum { N = 25 };
    long long evo[N], meta[N];
    char to[N][20], text[N][40];
    for (int i = 0; i < N; i++) {
        snprintf (to[i], sizeof to[i], "+55119%08d", 10000000 + i);
        snprintf (text[i], sizeof text[i], "fatura %d vence hoje", i);
        evo[i] = s_send (fx, s_evo, to[i], text[i]);
        meta[i] = s_send (fx, s_meta, to[i], text[i]);
    }
    char ids[2][24];
    snprintf (ids[0], sizeof ids[0], "%lld", evo[0]);
    snprintf (ids[1], sizeof ids[1], "%lld", meta[N - 1]);
    s_wait_sql ("SELECT count(*) FROM messages WHERE status = 'sent'"
                " AND id BETWEEN $1::bigint AND $1::bigint + 49",
                ids[0], 2 * N);
    for (int i = 0; i < N; i++) {
        assert_int_equal (rcd_gwsim_count (s_sim, "evo1", to[i] + 1, text[i]),
                          1);
        assert_int_equal (rcd_gwsim_count (s_sim, "1065", to[i] + 1, text[i]),
                          1);
        char *pmid = s_col (evo[i], "provider_message_id");
        assert_non_null (pmid);
        assert_true (strncmp (pmid, "3EB0", 4) == 0);
        free (pmid);
        pmid = s_col (meta[i], "provider_message_id");
        assert_non_null (pmid);
        assert_true (strncmp (pmid, "wamid.", 6) == 0);
        free (pmid);
        s_assert_col (evo[i], "lease_until", NULL);
        s_assert_col (meta[i], "last_error", NULL);
        s_assert_col (meta[i], "attempts", "1");
        s_assert_col (evo[i], "sent_at IS NOT NULL", "true");
    }
    assert_int_equal (rcd_gwsim_total (s_sim), 2 * N);
    assert_int_equal (rcd_gwsim_duplicates (s_sim), 0);
    /* every provider id distinct, each with its history row */
    assert_int_equal (
        s_sql_int ("SELECT count(DISTINCT provider_message_id) FROM messages"
                   " WHERE status = 'sent' AND id >= $1::bigint",
                   1, ids[0]),
        2 * N);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM message_history h JOIN messages m"
                   " ON m.id = h.message_id WHERE h.status = 'sent'"
                   " AND h.detail LIKE m.provider_message_id || '%'"
                   " AND m.id >= $1::bigint",
                   1, ids[0]),
        2 * N);
    s_wait_event (fx, "message.sent", 2 * N);
    s_wait_event (fx, "send.latency_us", 2 * N);
}

static void
test_5xx_returns_to_pending_with_backoff (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"number_errors\": {\"5511900000001\": \"5xx\"}}");
    s_start (fx);
    long long evo = s_send (fx, s_evo, "+5511900000001", "five hundred");
    long long meta = s_send (fx, s_meta, "+5511900000001", "five hundred");
    s_wait_status (evo, "pending");
    s_wait_status (meta, "pending");
    s_assert_col (evo, "attempts", "1");
    s_assert_col (evo, "lease_until", NULL);
    s_assert_col (evo, "last_error", "http_503");
    s_assert_col (meta, "last_error", "meta_2");
    s_assert_col (evo, "send_at > now() - interval '1 second'", "true");
    s_assert_col (evo, "send_at <= now() + interval '1001 milliseconds'",
                  "true");
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM message_history WHERE message_id ="
                   " $1::bigint AND status = 'pending'",
                   1, s_idstr (evo)),
        1);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM dead_letters WHERE"
                                 " message_id = $1::bigint",
                                 1, s_idstr (evo)),
                      0);
    s_wait_event (fx, "message.retry", 2);
}

static void
test_retry_after_is_honoured_and_instance_throttled (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"retry_after_s\": 120,"
                 " \"number_errors\": {\"5511900000002\": \"429\"}}");
    s_start (fx);
    long long id = s_send (fx, s_evo, "+5511900000002", "slow down");
    s_wait_status (id, "pending");
    s_assert_col (id, "last_error", "http_429");
    s_assert_col (id,
                  "send_at BETWEEN now() + interval '110 seconds'"
                  " AND now() + interval '121 seconds'",
                  "true");
    s_wait_event (fx, "instance.throttled", 1);
}

static void
test_exhausted_attempts_fail_with_dead_letter (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"number_errors\": {\"5511900000003\": \"5xx\"}}");
    s_start (fx);
    long long id = s_message (s_evo, "+5511900000003", "last try", 5);
    s_dispatch (fx, id, 5, s_evo, "+5511900000003", "last try", 0);
    s_wait_status (id, "failed");
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM dead_letters WHERE message_id ="
                   " $1::bigint AND reason = 'attempts_exhausted: http_503'"
                   " AND attempts = 5 AND gateway_answer LIKE '%Unavailable%'",
                   1, s_idstr (id)),
        1);
    s_wait_event (fx, "message.failed", 1);
}

static void
test_not_on_whatsapp_fails_with_dead_letter (void **state)
{
    fixture_t *fx = *state;
    s_configure (
        "{\"number_errors\": {\"5511900000004\": \"not_on_whatsapp\"}}");
    s_start (fx);
    long long evo = s_send (fx, s_evo, "+5511900000004", "hello?");
    long long meta = s_send (fx, s_meta, "+5511900000004", "hello?");
    s_wait_status (evo, "failed");
    s_wait_status (meta, "failed");
    s_assert_col (evo, "last_error", "not_on_whatsapp");
    s_assert_col (meta, "last_error", "meta_131026");
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM dead_letters WHERE message_id ="
                   " $1::bigint AND reason = 'not_on_whatsapp'"
                   " AND attempts = 1 AND gateway_answer LIKE '%\"exists\"%'",
                   1, s_idstr (evo)),
        1);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM dead_letters WHERE message_id ="
                   " $1::bigint AND reason = 'meta_131026'",
                   1, s_idstr (meta)),
        1);
    assert_int_equal (rcd_gwsim_total (s_sim), 0);
}

static void
test_unknown_outcomes_are_held_not_resent (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"hang_ms\": 60000, \"number_errors\": {"
                 " \"5511900000005\": \"unknown_400\","
                 " \"5511900000006\": \"hang\"}}");
    fx->cfg.request_timeout_ms = 700;
    s_start (fx);
    long long threw = s_send (fx, s_evo, "+5511900000005", "maybe");
    long long meta = s_send (fx, s_meta, "+5511900000005", "maybe");
    long long hung = s_send (fx, s_evo, "+5511900000006", "maybe");
    s_wait_status (threw, "unknown");
    s_wait_status (meta, "unknown");
    s_wait_status (hung, "unknown");
    s_assert_col (threw, "last_error", "send_error");
    s_assert_col (meta, "last_error", "meta_131000");
    s_assert_col (hung, "last_error", "timeout_after_send");
    s_assert_col (threw, "lease_until", NULL);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM message_history WHERE message_id ="
                   " $1::bigint AND status = 'unknown'"
                   " AND detail LIKE 'send_error: %Connection Closed%'",
                   1, s_idstr (threw)),
        1);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM dead_letters WHERE"
                                 " message_id IN ($1::bigint, $2::bigint)",
                                 2, s_idstr (threw), s_idstr (hung)),
                      0);
    /* the gateway saw each exactly once: nothing was resent */
    assert_int_equal (rcd_gwsim_count (s_sim, "evo1", "5511900000005", "maybe"),
                      1);
    assert_int_equal (rcd_gwsim_count (s_sim, "1065", "5511900000005", "maybe"),
                      1);
    assert_int_equal (rcd_gwsim_errors (s_sim, "hang"), 1);
    s_wait_event (fx, "message.unknown", 3);
}

/*  libcurl by itself resends a request whose reused keep-alive
    connection died without an answer; the gateway may have acted on it,
    so that must not happen: the outcome is unknown, sent once. */
static void
test_reset_on_a_reused_connection_is_not_resent (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"number_errors\": {\"5511900000007\": \"reset\"}}");
    s_start (fx);
    for (int i = 0; i < 2; i++) {
        /* an idle keep-alive connection to the gateway is now cached */
        long long warm =
            s_send (fx, i ? s_evo : s_meta, "+5511900000018", "warm up");
        s_wait_status (warm, "sent");
        long long id =
            s_send (fx, i ? s_evo : s_meta, "+5511900000007", "reset me");
        s_wait_status (id, "unknown");
        s_assert_col (id, "last_error", "reset_after_send");
        assert_int_equal (rcd_gwsim_errors (s_sim, "reset"), (size_t)i + 1);
    }
}

static void
test_connection_refused_is_transient (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    long long id = s_send (fx, s_refused, "+5511900000008", "anyone?");
    s_wait_status (id, "pending");
    s_assert_col (id, "last_error", "connect_failed");
}

static void
test_broken_instances_fail_the_message_and_raise_an_event (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"instances\": {\"1066\": {\"token\": \"right-token\"}}}");
    s_start (fx);
    long long ghost = s_send (fx, s_ghost, "+5511900000009", "boo");
    long long bad = s_send (fx, s_badtoken, "+5511900000009", "boo");
    s_wait_status (ghost, "failed");
    s_wait_status (bad, "failed");
    s_assert_col (ghost, "last_error", "instance_not_found");
    s_assert_col (bad, "last_error", "meta_190");
    assert_int_equal (s_sql_int ("SELECT count(*) FROM dead_letters WHERE"
                                 " message_id IN ($1::bigint, $2::bigint)",
                                 2, s_idstr (ghost), s_idstr (bad)),
                      2);
    s_wait_event (fx, "instance.failure", 2);
}

static void
test_disabled_or_missing_instance_is_transient (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    long long off = s_send (fx, s_disabled, "+5511900000010", "off");
    /* the row must name a real instance; the dispatch names a gone one */
    long long missing = s_message (s_evo, "+5511900000010", "missing", 1);
    s_dispatch (fx, missing, 1, "987654", "+5511900000010", "missing", 0);
    s_wait_status (off, "pending");
    s_wait_status (missing, "pending");
    s_assert_col (off, "last_error", "instance_unavailable");
    s_assert_col (missing, "last_error", "instance_unavailable");
    assert_int_equal (rcd_gwsim_total (s_sim), 0);
}

static void
test_expired_lease_is_not_sent (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    long long late = s_message (s_evo, "+5511900000011", "too late", 1);
    s_dispatch (fx, late, 1, s_evo, "+5511900000011", "too late",
                rcd_clock_now_ms () - 1000);
    /* within the margin counts as expired too */
    long long tight = s_message (s_evo, "+5511900000011", "tight", 1);
    s_dispatch (fx, tight, 1, s_evo, "+5511900000011", "tight",
                rcd_clock_now_ms () + 200);
    /* the same socket is FIFO: once this one is sent, the others were
       seen */
    long long ok = s_send (fx, s_evo, "+5511900000011", "on time");
    s_wait_status (ok, "sent");
    s_wait_event (fx, "dispatch.expired", 2);
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000011", "too late"), 0);
    assert_int_equal (rcd_gwsim_count (s_sim, "evo1", "5511900000011", "tight"),
                      0);
    s_assert_col (late, "status", "sending");
    s_assert_col (tight, "status", "sending");
}

static void
test_stale_attempt_changes_nothing (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    /* the row was re-claimed (attempt 2) while attempt 1 was in flight */
    long long id = s_message (s_evo, "+5511900000012", "stale", 2);
    s_dispatch (fx, id, 1, s_evo, "+5511900000012", "stale", 0);
    s_wait_event (fx, "outcome.stale", 1);
    s_assert_col (id, "status", "sending");
    s_assert_col (id, "attempts", "2");
    s_assert_col (id, "provider_message_id", NULL);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM message_history"
                                 " WHERE message_id = $1::bigint",
                                 1, s_idstr (id)),
                      0);
}

static void
test_malformed_frames_are_dropped_and_sending_goes_on (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    zstr_send (fx->push, "junk");                        /* one frame */
    zstr_sendx (fx->push, "dispatch", "\x93\x01", NULL); /* bad body */
    rcd_nudge_t nudge = {.tenant_id = 0, .count = 1};    /* wrong message */
    assert_int_equal (rcd_nudge_send (&nudge, fx->push), 0);
    long long id = s_send (fx, s_meta, "+5511900000013", "still here");
    s_wait_status (id, "sent");
    s_wait_event (fx, "frame.malformed", 3);
}

static void
test_drain_finishes_inflight_and_hands_back_the_queue (void **state)
{
    fixture_t *fx = *state;
    s_configure ("{\"latency_ms\": 300}");
    fx->cfg.max_inflight = 4;
    s_start (fx);
    long long ids[7];
    char text[7][16];
    /* rows first, then one burst of frames: all seven are on the
       sender's socket long before the first answer is due (frames still
       travelling at DRAIN are left to lease recovery by design) */
    for (int i = 0; i < 7; i++) {
        snprintf (text[i], sizeof text[i], "drain %d", i);
        ids[i] = s_message (s_evo, "+5511900000014", text[i], 1);
    }
    for (int i = 0; i < 7; i++)
        s_dispatch (fx, ids[i], 1, s_evo, "+5511900000014", text[i], 0);
    s_held_t held = {s_sim, 4};
    assert_true (rcd_test_wait_until (s_poll_held, &held, S_WAIT_MS));
    zstr_send (fx->actor, "DRAIN");
    zpoller_t *poller = zpoller_new (fx->actor, NULL);
    assert_non_null (zpoller_wait (poller, S_WAIT_MS));
    zpoller_destroy (&poller);
    char *reply = zstr_recv (fx->actor);
    assert_non_null (reply);
    assert_string_equal (reply, "DRAINED");
    zstr_free (&reply);
    /* by DRAINED everything is recorded: no waiting from here on */
    long long sent = 0, released = 0;
    for (int i = 0; i < 7; i++) {
        char *status = s_col (ids[i], "status");
        assert_non_null (status);
        if (strcmp (status, "sent") == 0) {
            sent++;
            assert_int_equal (
                rcd_gwsim_count (s_sim, "evo1", "5511900000014", text[i]), 1);
        }
        else {
            assert_string_equal (status, "pending");
            released++;
            s_assert_col (ids[i], "lease_until", NULL);
            s_assert_col (ids[i], "attempts", "1");
            s_assert_col (ids[i], "max_attempts", "6");
            assert_int_equal (
                rcd_gwsim_count (s_sim, "evo1", "5511900000014", text[i]), 0);
        }
        free (status);
    }
    assert_int_equal (sent, 4);
    assert_int_equal (released, 3);
    assert_int_equal (rcd_gwsim_total (s_sim), 4);
}

/*  The database goes away while a request is out: its outcome is kept,
    not resent, and written once the database is back. */
static void
test_flush_is_retried_after_the_database_returns (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    long long warm = s_send (fx, s_evo, "+5511900000016", "warm up");
    s_wait_status (warm, "sent");
    s_configure ("{\"latency_ms\": 1500}");
    long long id = s_send (fx, s_evo, "+5511900000016", "during outage");
    /* the request reached the gateway (past the opt-out check) */
    s_held_t held = {s_sim, 1};
    assert_true (rcd_test_wait_until (s_poll_held, &held, S_WAIT_MS));
    s_database_reachable (false);
    s_wait_event (fx, "outcome.flush_failed", 2);
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000016", "during outage"), 1);

    s_database_reachable (true);
    s_wait_status (id, "sent");
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000016", "during outage"), 1);
    assert_int_equal (rcd_gwsim_duplicates (s_sim), 0);
}

/*  --------------------------------------------------------------------
    Circuits, throttles, opt-out re-check */

/*  Sends one message through instance and waits for its status. */
static long long
s_send_wait (fixture_t *fx, const char *instance, const char *to,
             const char *text, const char *status)
{
    long long id = s_send (fx, instance, to, text);
    s_wait_status (id, status);
    return id;
}

static void
test_circuit_opens_after_consecutive_transient_failures (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.circuit_threshold = 3;
    fx->cfg.circuit_cooldown_ms = 60000;
    s_instance_reset (s_circ);
    s_configure ("{\"down\": true}");
    s_start (fx);
    s_send_wait (fx, s_circ, "+5511900000101", "down 1", "pending");
    s_assert_inst (s_circ, "circuit_failures", "1");
    s_assert_inst (s_circ, "circuit_state", "closed");
    s_send_wait (fx, s_circ, "+5511900000102", "down 2", "pending");
    s_assert_inst (s_circ, "circuit_failures", "2");
    s_assert_inst (s_circ, "circuit_state", "closed");
    s_assert_inst (s_circ, "circuit_until", NULL);
    s_send_wait (fx, s_circ, "+5511900000103", "down 3", "pending");
    s_assert_inst (s_circ, "circuit_state", "open");
    s_assert_inst (s_circ, "circuit_failures", "3");
    s_assert_inst (s_circ, "circuit_reason", "http_503");
    s_assert_inst (s_circ,
                   "circuit_until BETWEEN now() + interval '50 seconds'"
                   " AND now() + interval '60 seconds'",
                   "true");
    s_assert_inst (s_circ, "circuit_opened_at > now() - interval '10 seconds'",
                   "true");
    s_wait_event (fx, "instance.circuit_open", 1);
    char detail[96];
    snprintf (detail, sizeof detail, "instance=%s reason=http_503", s_circ);
    assert_string_equal (s_event_detail (fx, "instance.circuit_open"), detail);

    /* a straggler failing while open: counted, the cool-down stays */
    char *until = s_inst_col (s_circ, "circuit_until");
    assert_non_null (until);
    s_send_wait (fx, s_circ, "+5511900000104", "down 4", "pending");
    s_assert_inst (s_circ, "circuit_state", "open");
    s_assert_inst (s_circ, "circuit_failures", "4");
    s_assert_inst (s_circ, "circuit_until", until);
    free (until);

    /* the scheduler lets one probe go (half_open); the gateway is back:
       its success closes the circuit */
    free (s_sql ("UPDATE instances SET circuit_state = 'half_open',"
                 " circuit_until = now() + interval '2 minutes'"
                 " WHERE id = $1::bigint",
                 1, s_circ));
    s_configure ("{\"down\": false}");
    s_send_wait (fx, s_circ, "+5511900000105", "probe", "sent");
    s_assert_inst (s_circ, "circuit_state", "closed");
    s_assert_inst (s_circ, "circuit_failures", "0");
    s_assert_inst (s_circ, "circuit_until", NULL);
    s_assert_inst (s_circ, "circuit_reason", NULL);
    s_assert_inst (s_circ, "circuit_opened_at", NULL);
    assert_int_equal (rcd_gwsim_errors (s_sim, "down"), 4);
    assert_int_equal (s_event_count (fx, "instance.circuit_open"), 1);
}

static void
test_circuit_half_open_failure_reopens_at_once (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.circuit_threshold = 5;
    fx->cfg.circuit_cooldown_ms = 45000;
    s_instance_reset (s_circ);
    /* as the scheduler leaves it for its probe */
    free (s_sql ("UPDATE instances SET circuit_state = 'half_open',"
                 " circuit_failures = 5, circuit_reason = 'http_503',"
                 " circuit_opened_at = now() - interval '1 minute',"
                 " circuit_until = now() + interval '2 minutes'"
                 " WHERE id = $1::bigint",
                 1, s_circ));
    s_configure ("{\"number_errors\": {\"5511900000111\": \"5xx\"}}");
    s_start (fx);
    s_send_wait (fx, s_circ, "+5511900000111", "probe fails", "pending");
    s_assert_inst (s_circ, "circuit_state", "open");
    s_assert_inst (s_circ, "circuit_failures", "6");
    s_assert_inst (s_circ,
                   "circuit_until BETWEEN now() + interval '35 seconds'"
                   " AND now() + interval '45 seconds'",
                   "true");
    s_assert_inst (s_circ, "circuit_opened_at > now() - interval '10 seconds'",
                   "true");
    s_wait_event (fx, "instance.circuit_open", 1);
}

/*  Answers of one flush count in the order they came: failures before a
    success are forgiven, failures after one are not. */
static void
test_circuit_counts_in_outcome_order_within_a_flush (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.circuit_threshold = 3;
    fx->cfg.max_inflight = 1;     /* one answer after the other */
    fx->cfg.batch_wait_ms = 1500; /* all in one flush */
    s_instance_reset (s_circ);
    s_configure ("{\"number_errors\": {\"5511900000121\": \"5xx\"}}");
    s_start (fx);
    const char *fail = "+5511900000121", *ok = "+5511900000122";
    long long ids[4];
    /* fail, fail, fail, success: closed at 0 */
    for (int i = 0; i < 4; i++) {
        char text[32];
        snprintf (text, sizeof text, "order a%d", i);
        ids[i] = s_send (fx, s_circ, i < 3 ? fail : ok, text);
    }
    s_wait_status (ids[3], "sent");
    for (int i = 0; i < 3; i++)
        s_wait_status (ids[i], "pending");
    s_assert_inst (s_circ, "circuit_state", "closed");
    s_assert_inst (s_circ, "circuit_failures", "0");
    /* success, fail, fail, fail: open */
    for (int i = 0; i < 4; i++) {
        char text[32];
        snprintf (text, sizeof text, "order b%d", i);
        ids[i] = s_send (fx, s_circ, i == 0 ? ok : fail, text);
    }
    s_wait_status (ids[0], "sent");
    for (int i = 1; i < 4; i++)
        s_wait_status (ids[i], "pending");
    s_assert_inst (s_circ, "circuit_state", "open");
    s_assert_inst (s_circ, "circuit_failures", "3");
    s_wait_event (fx, "instance.circuit_open", 1);
}

static void
test_instance_failure_opens_the_circuit_at_once (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.circuit_threshold = 5;
    s_instance_reset (s_circ_bad);
    s_configure ("{\"instances\": {\"circ2\": {\"apikey\": \"right-key\"}}}");
    s_start (fx);
    long long id =
        s_send_wait (fx, s_circ_bad, "+5511900000131", "wrong key", "failed");
    s_assert_col (id, "last_error", "unauthorized");
    s_assert_inst (s_circ_bad, "circuit_state", "open");
    s_assert_inst (s_circ_bad, "circuit_reason", "unauthorized");
    s_assert_inst (s_circ_bad, "circuit_failures", "0");
    s_assert_inst (s_circ_bad,
                   "circuit_until BETWEEN now() + interval '20 seconds'"
                   " AND now() + interval '30 seconds'",
                   "true");
    s_wait_event (fx, "instance.circuit_open", 1);
    char detail[96];
    snprintf (detail, sizeof detail, "instance=%s reason=unauthorized",
              s_circ_bad);
    assert_string_equal (s_event_detail (fx, "instance.circuit_open"), detail);
}

static void
test_throttle_pauses_the_instance (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.throttle_pause_ms = 9000;
    s_instance_reset (s_thr);
    s_instance_reset (s_thr_meta);
    s_configure ("{\"retry_after_s\": 7, \"number_errors\": {"
                 " \"5511900000141\": \"429\","
                 " \"5511900000142\": \"meta_130429\"}}");
    s_start (fx);
    /* Evolution 429 with Retry-After: 7 */
    long long id =
        s_send_wait (fx, s_thr, "+5511900000141", "throttled", "pending");
    s_assert_col (id, "last_error", "http_429");
    s_assert_inst (s_thr,
                   "paused_until BETWEEN now() + interval '5 seconds'"
                   " AND now() + interval '7 seconds'",
                   "true");
    char *sql_param = s_idstr (id);
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m JOIN instances i"
                   " ON i.id = m.instance_id WHERE m.id = $1::bigint"
                   " AND m.send_at >= i.paused_until",
                   1, sql_param),
        1);
    /* a throttle is not a failure of the gateway */
    s_assert_inst (s_thr, "circuit_failures", "0");
    s_assert_inst (s_thr, "circuit_state", "closed");
    s_wait_event (fx, "instance.throttled", 1);

    /* a shorter advice later never shortens the pause */
    char *paused = s_inst_col (s_thr, "paused_until");
    assert_non_null (paused);
    s_configure ("{\"retry_after_s\": 1}");
    s_send_wait (fx, s_thr, "+5511900000141", "throttled again", "pending");
    s_assert_inst (s_thr, "paused_until", paused);
    free (paused);

    /* Meta's throttle codes come without Retry-After: throttle_pause_ms */
    id = s_send_wait (fx, s_thr_meta, "+5511900000142", "throttled", "pending");
    s_assert_col (id, "last_error", "meta_130429");
    s_assert_inst (s_thr_meta,
                   "paused_until BETWEEN now() + interval '7 seconds'"
                   " AND now() + interval '9 seconds'",
                   "true");
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM messages m JOIN instances i"
                   " ON i.id = m.instance_id WHERE m.id = $1::bigint"
                   " AND m.send_at >= i.paused_until",
                   1, s_idstr (id)),
        1);
}

static void
test_contact_opted_out_after_claim_is_blocked (void **state)
{
    fixture_t *fx = *state;
    /* opted out after the claim: the rows are already 'sending' */
    long long out = s_message (s_evo, "+5511900000151", "you said SAIR", 1);
    long long other = s_message (s_evo, "+5511900000152", "not you", 1);
    long long in = s_message (s_evo, "+5511900000153", "still in", 1);
    free (s_sql ("INSERT INTO contacts (tenant_id, phone, opted_out,"
                 " opted_out_at) VALUES ($1, '+5511900000151', true, now()),"
                 " ($1, '+5511900000153', false, NULL)",
                 1, s_tenant));
    /* another tenant's contact with the same phone opted out: not ours */
    char *t2 = s_sql ("INSERT INTO tenants (name, api_key_hash,"
                      " webhook_token) VALUES ('other', '\\x02'::bytea,"
                      " 'tok2') RETURNING id",
                      0);
    assert_non_null (t2);
    free (s_sql ("INSERT INTO contacts (tenant_id, phone, opted_out)"
                 " VALUES ($1, '+5511900000152', true)",
                 1, t2));
    free (t2);
    s_start (fx);
    s_dispatch (fx, out, 1, s_evo, "+5511900000151", "you said SAIR", 0);
    s_dispatch (fx, other, 1, s_evo, "+5511900000152", "not you", 0);
    s_dispatch (fx, in, 1, s_evo, "+5511900000153", "still in", 0);
    s_wait_status (out, "blocked");
    s_wait_status (other, "sent");
    s_wait_status (in, "sent");
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000151", "you said SAIR"), 0);
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000152", "not you"), 1);
    assert_int_equal (rcd_gwsim_total (s_sim), 2);
    s_assert_col (out, "lease_until", NULL);
    s_assert_col (out, "last_error", "contact_opted_out");
    s_assert_col (out, "attempts", "1");
    assert_int_equal (
        s_sql_int ("SELECT count(*) FROM message_history WHERE message_id ="
                   " $1::bigint AND status = 'blocked'"
                   " AND detail = 'contact opted out before sending'",
                   1, s_idstr (out)),
        1);
    assert_int_equal (s_sql_int ("SELECT count(*) FROM dead_letters WHERE"
                                 " message_id = $1::bigint",
                                 1, s_idstr (out)),
                      0);
    s_wait_event (fx, "message.blocked", 1);
}

/*  The re-check cannot be made (database unreachable): nothing is sent,
    the message is retried later. */
static void
test_failed_optout_check_sends_nothing (void **state)
{
    fixture_t *fx = *state;
    s_start (fx);
    /* the instance is cached: only the opt-out check needs the database */
    s_send_wait (fx, s_evo, "+5511900000161", "warm up", "sent");
    long long id = s_message (s_evo, "+5511900000161", "unchecked", 1);
    s_database_reachable (false);
    s_dispatch (fx, id, 1, s_evo, "+5511900000161", "unchecked", 0);
    s_wait_event (fx, "outcome.flush_failed", 1);
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000161", "unchecked"), 0);
    s_database_reachable (true);
    s_wait_status (id, "pending");
    s_assert_col (id, "last_error", "optout_check_failed");
    s_assert_col (id, "lease_until", NULL);
    assert_int_equal (
        rcd_gwsim_count (s_sim, "evo1", "5511900000161", "unchecked"), 0);
    assert_int_equal (rcd_gwsim_total (s_sim), 1);
}

/*  The binary: --help, a bad setting, and SIGTERM after real work. */
static void
test_binary_exits_0_on_sigterm (void **state)
{
    fixture_t *fx = *state;
    char *bin = rcd_test_bin ("recado-sender");
    const char *help_argv[] = {bin, "--help", NULL};
    pid_t pid = rcd_test_spawn (help_argv, NULL, "/dev/null");
    assert_true (pid > 0);
    assert_int_equal (rcd_test_stop (pid, 0, 10000), 0);

    const char *argv[] = {bin, NULL};
    const char *bad_env[] = {"RECADO_MAX_INFLIGHT=0", NULL};
    pid = rcd_test_spawn (argv, bad_env, "/dev/null");
    assert_true (pid > 0);
    assert_int_equal (rcd_test_stop (pid, 0, 10000), 78);

    char db[600], disp[96], ev[96];
    snprintf (db, sizeof db, "DATABASE_URL=%s", s_url);
    snprintf (disp, sizeof disp, "RECADO_DISPATCH_ENDPOINT=%s",
              fx->dispatch_ep);
    snprintf (ev, sizeof ev, "RECADO_EVENTS_ENDPOINT=%s", fx->events_ep);
    const char *env[] = {db, disp, ev, NULL};
    pid = rcd_test_spawn (argv, env, "/dev/null");
    assert_true (pid > 0);
    long long id = s_send (fx, s_meta, "+5511900000017", "from the binary");
    s_wait_status (id, "sent");
    assert_int_equal (rcd_test_stop (pid, SIGTERM, 20000), 0);
    free (bin);
}

int
main (void)
{
    if (rcd_http_global_init () != 0)
        return 1;
    zsys_init ();
    zsys_set_linger (0);
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown (name, s_setup, s_teardown)
        T (test_sends_through_evolution_and_meta_exactly_once),
        T (test_5xx_returns_to_pending_with_backoff),
        T (test_retry_after_is_honoured_and_instance_throttled),
        T (test_exhausted_attempts_fail_with_dead_letter),
        T (test_not_on_whatsapp_fails_with_dead_letter),
        T (test_unknown_outcomes_are_held_not_resent),
        T (test_reset_on_a_reused_connection_is_not_resent),
        T (test_connection_refused_is_transient),
        T (test_broken_instances_fail_the_message_and_raise_an_event),
        T (test_disabled_or_missing_instance_is_transient),
        T (test_expired_lease_is_not_sent),
        T (test_stale_attempt_changes_nothing),
        T (test_malformed_frames_are_dropped_and_sending_goes_on),
        T (test_drain_finishes_inflight_and_hands_back_the_queue),
        T (test_flush_is_retried_after_the_database_returns),
        T (test_circuit_opens_after_consecutive_transient_failures),
        T (test_circuit_half_open_failure_reopens_at_once),
        T (test_circuit_counts_in_outcome_order_within_a_flush),
        T (test_instance_failure_opens_the_circuit_at_once),
        T (test_throttle_pauses_the_instance),
        T (test_contact_opted_out_after_claim_is_blocked),
        T (test_failed_optout_check_sends_nothing),
        T (test_binary_exits_0_on_sigterm),
#undef T
    };
    int rc = cmocka_run_group_tests (tests, s_group_setup, s_group_teardown);
    rcd_http_global_cleanup ();
    return rc;
}

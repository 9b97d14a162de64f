/*  test_recovery.c - the recovery actor against real PostgreSQL, real
    ZeroMQ sockets and the gateway simulator over loopback HTTP.

    Each test starts the recovery actor in process with only the tasks it
    checks turned on (a period of 0 turns one off), bound sockets playing
    the scheduler (PULL, for nudges) and the monitor (SUB, for events),
    and rows inserted as the other services leave them. Times in the past
    are made by back-dating rows: the actor compares with PostgreSQL's
    now().
*/
#include "rcd_gwsim.h"
#include "rcd_http.h"
#include "rcd_proto.h"
#include "rcd_recovery_server.h"
#include "rcd_test.h"

#include <czmq.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#define S_WAIT_MS 15000

/*  Shared by every test: one database, one simulator, one tenant. */
static char *s_url;
static rcd_gwsim_t *s_sim;
static char s_tenant[24];

/*  An event as the monitor would see it. */
typedef struct {
    char *kind;
    uint64_t count;
    uint64_t tenant_id;
    int64_t value;
    char *detail;
} s_event_t;

typedef struct {
    zsock_t *pull; /* we are the scheduler */
    zsock_t *sub;  /* we are the monitor */
    char nudge_ep[64];
    char events_ep[64];
    rcd_recovery_config_t cfg;
    zactor_t *actor;
    zlistx_t *events; /* s_event_t, arrival order */
} fixture_t;

/*  --------------------------------------------------------------------
    Helpers */

/*  Runs SQL with up to 8 text parameters; answers the first value
    (caller frees; NULL for no row or NULL). */
static char *
s_sql (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n && i < 8; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql (s_url, sql, n, params);
}

static long long
s_int (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n && i < 8; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql_int (s_url, sql, n, params);
}

/*  Asserts a single-value query's answer. */
static void
s_expect (const char *expect, const char *sql, const char *param)
{
    char *v = param ? s_sql (sql, 1, param) : s_sql (sql, 0);
    /* copied, so that a failure (a longjmp) leaks nothing */
    char got[512];
    snprintf (got, sizeof got, "%s", v ? v : "NULL");
    bool same = v && expect ? strcmp (v, expect) == 0 : v == expect;
    free (v);
    if (!same)
        fail_msg ("%s [%s]: expected %s, got %s", sql, param ? param : "",
                  expect ? expect : "NULL", got);
}

/*  Inserts a message of our tenant as another service left it: status,
    attempts of max, updated age_s seconds ago, optional last_error and
    billing cycle (NULL: none). Answers its id as text in out. */
static void
s_message (char out[24], const char *status, int attempts, int max_attempts,
           int age_s, const char *last_error, const char *cycle)
{
    char a[16], m[16], age[16];
    snprintf (a, sizeof a, "%d", attempts);
    snprintf (m, sizeof m, "%d", max_attempts);
    snprintf (age, sizeof age, "%d", age_s);
    char *id = s_sql (
        "INSERT INTO messages (tenant_id, to_phone, body, status, attempts,"
        " max_attempts, updated_at, created_at, last_error, billing_cycle_id,"
        " lease_until, send_at)"
        " VALUES ($1, '+5511900000001', 'hello', $2, $3::int, $4::int,"
        " now() - $5::int * interval '1 second',"
        " now() - $5::int * interval '1 second', $6, $7::bigint,"
        " CASE WHEN $2 = 'sending' THEN now() + interval '1 hour' END,"
        " now() - interval '1 day') RETURNING id",
        7, s_tenant, status, a, m, age, last_error, cycle);
    assert_non_null (id);
    snprintf (out, 24, "%s", id);
    free (id);
}

/*  Adds n history rows to message id. */
static void
s_history (const char *id, int n, const char *status, const char *detail)
{
    char count[16];
    snprintf (count, sizeof count, "%d", n);
    free (s_sql ("INSERT INTO message_history (tenant_id, message_id, status,"
                 " detail) SELECT $1, $2::bigint, $3, $4"
                 " FROM generate_series(1, $5::int) RETURNING 1",
                 5, s_tenant, id, status, detail, count));
}

/*  A billing cycle of our tenant in status, with open reminders. */
static void
s_cycle (char out[24], const char *ext, const char *status, int open)
{
    char o[16];
    snprintf (o, sizeof o, "%d", open);
    char *id = s_sql (
        "INSERT INTO billing_cycles (tenant_id, external_billing_id, phone,"
        " amount_cents, due_date, offsets_days, status, open_messages)"
        " VALUES ($1, $2, '+5511900000001', 1000, current_date, '{0}', $3,"
        " $4::int) RETURNING id",
        4, s_tenant, ext, status, o);
    assert_non_null (id);
    snprintf (out, 24, "%s", id);
    free (id);
}

static void
s_event_destroy (void **item)
{
    s_event_t *e = *item;
    if (!e)
        return;
    free (e->kind);
    free (e->detail);
    free (e);
    *item = NULL;
}

/*  Reads every event frame waiting on the SUB socket. */
static void
s_pump_events (fixture_t *fx)
{
    while (zsock_events (fx->sub) & ZMQ_POLLIN) {
        rcd_proto_msg_t msg;
        memset (&msg, 0, sizeof msg);
        if (rcd_proto_recv (fx->sub, &msg) != 0)
            continue;
        s_event_t *e = calloc (1, sizeof *e);
        assert_non_null (e);
        if (msg.type == RCD_MSG_EVENT) {
            e->kind = strdup (msg.u.event.kind);
            e->count = msg.u.event.count;
            e->tenant_id = msg.u.event.tenant_id;
            e->value = msg.u.event.value;
            e->detail = msg.u.event.detail ? strdup (msg.u.event.detail) : NULL;
        }
        else {
            e->kind =
                strdup (msg.type == RCD_MSG_HEARTBEAT ? "heartbeat" : "other");
            e->count = 1;
        }
        zlistx_add_end (fx->events, e);
        rcd_proto_msg_clear (&msg);
    }
}

/*  Sum of the counts of kind. */
static uint64_t
s_event_sum (fixture_t *fx, const char *kind)
{
    s_pump_events (fx);
    uint64_t sum = 0;
    for (s_event_t *e = zlistx_first (fx->events); e;
         e = zlistx_next (fx->events))
        if (streq (e->kind, kind))
            sum += e->count;
    return sum;
}

/*  Number of events of kind. */
static size_t
s_event_frames (fixture_t *fx, const char *kind)
{
    s_pump_events (fx);
    size_t n = 0;
    for (s_event_t *e = zlistx_first (fx->events); e;
         e = zlistx_next (fx->events))
        if (streq (e->kind, kind))
            n++;
    return n;
}

/*  The latest event of kind (with detail, when given). Borrowed. */
static s_event_t *
s_event_find (fixture_t *fx, const char *kind, const char *detail)
{
    s_pump_events (fx);
    s_event_t *found = NULL;
    for (s_event_t *e = zlistx_first (fx->events); e;
         e = zlistx_next (fx->events))
        if (streq (e->kind, kind) &&
            (!detail || (e->detail && streq (e->detail, detail))))
            found = e;
    return found;
}

typedef struct {
    fixture_t *fx;
    const char *kind;
    const char *detail;
    uint64_t min;
} s_event_wait_t;

static bool
s_poll_sum (void *arg)
{
    s_event_wait_t *w = arg;
    return s_event_sum (w->fx, w->kind) >= w->min;
}

static bool
s_poll_frames (void *arg)
{
    s_event_wait_t *w = arg;
    return s_event_frames (w->fx, w->kind) >= w->min;
}

static bool
s_poll_detail (void *arg)
{
    s_event_wait_t *w = arg;
    return s_event_find (w->fx, w->kind, w->detail) != NULL;
}

/*  Waits until the counts of kind add up to at least min. */
static void
s_wait_sum (fixture_t *fx, const char *kind, uint64_t min)
{
    s_event_wait_t w = {fx, kind, NULL, min};
    if (!rcd_test_wait_until (s_poll_sum, &w, S_WAIT_MS))
        fail_msg ("timed out waiting for event %s >= %llu (have %llu)", kind,
                  (unsigned long long)min,
                  (unsigned long long)s_event_sum (fx, kind));
}

/*  Waits until at least min events of kind arrived. */
static void
s_wait_frames (fixture_t *fx, const char *kind, size_t min)
{
    s_event_wait_t w = {fx, kind, NULL, min};
    if (!rcd_test_wait_until (s_poll_frames, &w, S_WAIT_MS))
        fail_msg ("timed out waiting for %zu events %s (have %zu)", min, kind,
                  s_event_frames (fx, kind));
}

static void
s_wait_detail (fixture_t *fx, const char *kind, const char *detail)
{
    s_event_wait_t w = {fx, kind, detail, 1};
    if (!rcd_test_wait_until (s_poll_detail, &w, S_WAIT_MS))
        fail_msg ("timed out waiting for event %s \"%s\"", kind, detail);
}

static void
s_start (fixture_t *fx)
{
    fx->actor = zactor_new (rcd_recovery_server, &fx->cfg);
    assert_non_null (fx->actor);
    /* The first heartbeat proves the event path is up (slow joiner):
       the tasks ran once at start, before it could be seen, so the
       tests insert their rows before starting and wait for events that
       later runs produce, or for the database state. */
    s_wait_sum (fx, "heartbeat", 1);
}

/*  Receives one nudge within timeout_ms; false when none came. */
static bool
s_recv_nudge (fixture_t *fx, rcd_nudge_t *out, int timeout_ms)
{
    zsock_set_rcvtimeo (fx->pull, timeout_ms);
    rcd_proto_msg_t msg;
    memset (&msg, 0, sizeof msg);
    if (rcd_proto_recv (fx->pull, &msg) != 0)
        return false;
    assert_int_equal (msg.type, RCD_MSG_NUDGE);
    *out = msg.u.nudge;
    rcd_proto_msg_clear (&msg);
    return true;
}

typedef struct {
    const char *sql;
    const char *param;
    long long want;
} s_count_wait_t;

static bool
s_poll_count (void *arg)
{
    s_count_wait_t *w = arg;
    return s_int (w->sql, w->param ? 1 : 0, w->param) == w->want;
}

/*  Waits until a count query answers want. */
static void
s_wait_count (const char *sql, const char *param, long long want)
{
    s_count_wait_t w = {sql, param, want};
    if (!rcd_test_wait_until (s_poll_count, &w, S_WAIT_MS))
        fail_msg ("timed out waiting for %s = %lld (have %lld)", sql, want,
                  s_int (sql, param ? 1 : 0, param));
}

/*  --------------------------------------------------------------------
    Fixture */

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    fx->pull = zsock_new (ZMQ_PULL);
    fx->sub = zsock_new (ZMQ_SUB);
    assert_non_null (fx->pull);
    assert_non_null (fx->sub);
    zsock_set_subscribe (fx->sub, "");
    int port = zsock_bind (fx->pull, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    snprintf (fx->nudge_ep, sizeof fx->nudge_ep, "tcp://127.0.0.1:%d", port);
    port = zsock_bind (fx->sub, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    snprintf (fx->events_ep, sizeof fx->events_ep, "tcp://127.0.0.1:%d", port);
    fx->events = zlistx_new ();
    assert_non_null (fx->events);
    zlistx_set_destructor (fx->events, s_event_destroy);
    /* every task off: each test turns on what it checks */
    fx->cfg = (rcd_recovery_config_t){
        .database_url = s_url,
        .nudge_endpoint = fx->nudge_ep,
        .events_endpoint = fx->events_ep,
        .batch = 2, /* smaller than the work: sweeps must repeat */
        .drain_timeout_ms = 1000,
        .unknown_deadline_ms = 600000,
        .unknown_policy = "fail",
        .health_timeout_ms = 2000,
        .health_connect_timeout_ms = 1000,
        .retention_batch = 3,
    };
    free (s_sql ("TRUNCATE messages, message_history, dead_letters,"
                 " recipient_pacing, billing_cycles, instances,"
                 " webhook_events, campaigns",
                 0));
    rcd_gwsim_reset (s_sim);
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    zactor_destroy (&fx->actor);
    zsock_destroy (&fx->pull);
    zsock_destroy (&fx->sub);
    zlistx_destroy (&fx->events);
    free (fx);
    return 0;
}

static int
s_group_setup (void **state)
{
    (void)state;
    s_url = rcd_test_db_create ("recovery");
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
    Unknown outcomes */

static void
test_unknown_past_deadline_fails_with_dead_letter (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.unknown_check_ms = 50;
    char old[3][24], young[24], pending[24], reminder[24], cycle[24];
    for (int i = 0; i < 3; i++)
        s_message (old[i], "unknown", 2, 5, 1200, "unknown_400", NULL);
    /* the sender's history row holds the gateway's answer */
    s_history (old[0], 1, "unknown", "unknown_400: [\"Connection Closed\"]");
    s_message (young, "unknown", 1, 5, 60, "unknown_400", NULL);
    s_message (pending, "pending", 0, 5, 1200, NULL, NULL);
    s_cycle (cycle, "inv-1", "active", 1);
    s_message (reminder, "unknown", 1, 5, 1200, "timeout_after_send", cycle);

    s_start (fx);
    s_wait_count ("SELECT count(*) FROM messages WHERE status = 'failed'", NULL,
                  4);

    for (int i = 0; i < 3; i++) {
        s_expect ("failed", "SELECT status FROM messages WHERE id = $1",
                  old[i]);
        s_expect ("unknown_outcome_unreconciled|2",
                  "SELECT string_agg(reason || '|' || attempts, ',')"
                  " FROM dead_letters WHERE message_id = $1",
                  old[i]);
        s_expect ("failed: outcome unknown past the deadline",
                  "SELECT detail FROM message_history WHERE message_id = $1"
                  " AND status = 'failed'",
                  old[i]);
    }
    s_expect ("unknown_400: [\"Connection Closed\"]",
              "SELECT gateway_answer FROM dead_letters WHERE message_id = $1",
              old[0]);
    s_expect ("unknown_400",
              "SELECT gateway_answer FROM dead_letters WHERE message_id = $1",
              old[1]);
    s_expect ("unknown", "SELECT status FROM messages WHERE id = $1", young);
    s_expect ("pending", "SELECT status FROM messages WHERE id = $1", pending);
    s_expect ("0", "SELECT count(*) FROM dead_letters WHERE message_id = $1",
              young);
    /* the cycle's last open reminder failed: the cycle is complete */
    s_expect ("failed", "SELECT status FROM messages WHERE id = $1", reminder);
    s_expect ("complete|0",
              "SELECT status || '|' || open_messages FROM billing_cycles"
              " WHERE id = $1",
              cycle);

    /* the event comes from the start-up run or a later one: wait for it
       from a run the SUB socket saw, by failing one more row */
    char late[24];
    s_message (late, "unknown", 1, 5, 1200, "unknown_400", NULL);
    s_wait_detail (fx, "unknown.reconciled", "retried=0 failed=1");
    s_event_t *e =
        s_event_find (fx, "unknown.reconciled", "retried=0 failed=1");
    assert_int_equal (e->count, 1);
    assert_int_equal (e->value, 0);
    /* nothing went back to pending: no nudge */
    rcd_nudge_t nudge;
    assert_false (s_recv_nudge (fx, &nudge, 300));
}

static void
test_unknown_retry_policy_requeues_until_attempts_are_used_up (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.unknown_check_ms = 50;
    fx->cfg.unknown_policy = "retry";
    /* slow joiner: start first, then make the work */
    s_start (fx);
    char retry[3][24], spent[2][24], young[24];
    for (int i = 0; i < 3; i++)
        s_message (retry[i], "unknown", 1, 5, 1200, "unknown_400", NULL);
    for (int i = 0; i < 2; i++)
        s_message (spent[i], "unknown", 5, 5, 1200, "unknown_400", NULL);
    s_message (young, "unknown", 1, 5, 30, "unknown_400", NULL);

    s_wait_sum (fx, "unknown.reconciled", 5);
    s_event_t *e = s_event_find (fx, "unknown.reconciled", NULL);
    assert_non_null (e);
    uint64_t retried = 0;
    for (s_event_t *x = zlistx_first (fx->events); x;
         x = zlistx_next (fx->events))
        if (streq (x->kind, "unknown.reconciled"))
            retried += (uint64_t)x->value;
    assert_int_equal (retried, 3);
    rcd_nudge_t nudge;
    assert_true (s_recv_nudge (fx, &nudge, S_WAIT_MS));
    assert_true (nudge.count >= 1);

    for (int i = 0; i < 3; i++) {
        /* due now, not at its old send_at a day ago, and no lease */
        s_expect ("pending|true|true|1",
                  "SELECT status || '|' || (send_at > now() - interval '1"
                  " minute') || '|' || (lease_until IS NULL) || '|' ||"
                  " attempts FROM messages WHERE id = $1",
                  retry[i]);
        s_expect ("retried: outcome unknown past the deadline",
                  "SELECT detail FROM message_history WHERE message_id = $1",
                  retry[i]);
        s_expect ("0",
                  "SELECT count(*) FROM dead_letters WHERE message_id = $1",
                  retry[i]);
    }
    for (int i = 0; i < 2; i++) {
        s_expect ("failed", "SELECT status FROM messages WHERE id = $1",
                  spent[i]);
        s_expect ("unknown_outcome_unreconciled|5",
                  "SELECT reason || '|' || attempts FROM dead_letters"
                  " WHERE message_id = $1",
                  spent[i]);
    }
    s_expect ("unknown", "SELECT status FROM messages WHERE id = $1", young);
}

static void
test_bad_unknown_policy_is_refused (void **state)
{
    fixture_t *fx = *state;
    assert_false (rcd_recovery_policy_valid ("maybe"));
    assert_false (rcd_recovery_policy_valid (NULL));
    assert_true (rcd_recovery_policy_valid ("retry"));
    /* the actor refuses to start */
    fx->cfg.unknown_policy = "maybe";
    zactor_t *actor = zactor_new (rcd_recovery_server, &fx->cfg);
    assert_non_null (actor);
    char *cmd = NULL, *why = NULL;
    assert_int_equal (zsock_recv (actor, "ss", &cmd, &why), 0);
    assert_string_equal (cmd, "FATAL");
    zstr_free (&cmd);
    zstr_free (&why);
    zactor_destroy (&actor);
    /* the binary exits 78 (bad configuration) */
    char *bin = rcd_test_bin ("recado-recovery");
    char db[512];
    snprintf (db, sizeof db, "DATABASE_URL=%s", s_url);
    const char *argv[] = {bin, NULL};
    const char *env[] = {db, "RECADO_UNKNOWN_POLICY=maybe", NULL};
    pid_t pid = rcd_test_spawn (argv, env, "/dev/null");
    assert_true (pid > 0);
    int status = 0;
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    pid_t done = 0;
    while ((done = waitpid (pid, &status, WNOHANG)) == 0 &&
           zclock_mono () < deadline)
        zclock_sleep (10); /* polling a child's exit */
    if (done != pid) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
        fail_msg ("recado-recovery did not exit on a bad unknown_policy");
    }
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 78);
    free (bin);
}

/*  --------------------------------------------------------------------
    Gateway health */

/*  Inserts an instance; answers its id in out. */
static void
s_instance (char out[24], const char *name, const char *provider,
            const char *base_url, const char *api_key, const char *enabled)
{
    char *id = s_sql (
        "INSERT INTO instances (tenant_id, name, provider, base_url, api_key,"
        " phone_number_id, access_token, rate_per_second, enabled)"
        " VALUES ($1, $2, $3, $4, $5,"
        " CASE WHEN $3 = 'meta' THEN '1065' END,"
        " CASE WHEN $3 = 'meta' THEN 'tok' END, 10, $6::boolean)"
        " RETURNING id",
        6, s_tenant, name, provider, base_url, api_key, enabled);
    assert_non_null (id);
    snprintf (out, 24, "%s", id);
    free (id);
}

static void
test_health_is_polled_and_recorded (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.health_check_ms = 200;
    const char *sim = rcd_gwsim_url (s_sim);
    char down_url[64];
    snprintf (down_url, sizeof down_url, "http://127.0.0.1:%d",
              rcd_test_free_port ());
    assert_int_equal (rcd_gwsim_configure (
                          s_sim, "{\"instances\": {"
                                 " \"evo-open\": {\"apikey\": \"k1\"},"
                                 " \"evo closed\": {\"state\": \"close\"},"
                                 " \"evo-auth\": {\"apikey\": \"right\"},"
                                 " \"evo-ghost\": {\"unknown\": true},"
                                 " \"evo-odd\": {\"state\": \"not a word!\"},"
                                 " \"evo-off\": {\"state\": \"close\"}}}"),
                      0);
    char open[24], closed[24], auth[24], ghost[24], odd[24], down[24], off[24],
        meta[24];
    /* a trailing slash on base_url is not doubled */
    char sim_slash[96];
    snprintf (sim_slash, sizeof sim_slash, "%s/", sim);
    s_instance (open, "evo-open", "evolution", sim_slash, "k1", "true");
    /* the name must reach the gateway as one path segment */
    s_instance (closed, "evo closed", "evolution", sim, "k", "true");
    s_instance (auth, "evo-auth", "evolution", sim, "wrong", "true");
    s_instance (ghost, "evo-ghost", "evolution", sim, "k", "true");
    s_instance (odd, "evo-odd", "evolution", sim, "k", "true");
    s_instance (down, "evo-down", "evolution", down_url, "k", "true");
    s_instance (off, "evo-off", "evolution", sim, "k", "false");
    s_instance (meta, "meta1", "meta", sim, NULL, "true");

    s_start (fx);
    /* a round the SUB socket saw from its start */
    s_wait_frames (fx, "health.checked", 2);
    s_expect ("open", "SELECT health FROM instances WHERE id = $1", open);
    s_expect ("close", "SELECT health FROM instances WHERE id = $1", closed);
    s_expect ("unauthorized", "SELECT health FROM instances WHERE id = $1",
              auth);
    s_expect ("not_found", "SELECT health FROM instances WHERE id = $1", ghost);
    s_expect ("unknown", "SELECT health FROM instances WHERE id = $1", odd);
    s_expect ("unreachable", "SELECT health FROM instances WHERE id = $1",
              down);
    s_expect ("6",
              "SELECT count(*) FROM instances WHERE health_at >"
              " now() - interval '1 minute'",
              NULL);
    /* Meta and disabled instances are not polled */
    s_expect ("unknown|true",
              "SELECT health || '|' || (health_at IS NULL) FROM instances"
              " WHERE id = $1",
              meta);
    s_expect ("unknown|true",
              "SELECT health || '|' || (health_at IS NULL) FROM instances"
              " WHERE id = $1",
              off);
    s_event_t *checked = s_event_find (fx, "health.checked", NULL);
    assert_int_equal (checked->count, 6);
    assert_int_equal (checked->value, 5); /* not open */

    /* Each change is announced once, in its tenant's name. The first
       round may have run before the SUB socket was connected, so the
       announcements are looked for in the database's next change. */
    assert_int_equal (rcd_gwsim_configure (s_sim,
                                           "{\"instances\": {\"evo-open\":"
                                           " {\"apikey\": \"k1\","
                                           " \"state\": \"close\"}}}"),
                      0);
    char detail[96];
    snprintf (detail, sizeof detail, "instance=%s state=close", open);
    s_wait_detail (fx, "instance.health", detail);
    s_event_t *e = s_event_find (fx, "instance.health", detail);
    assert_int_equal (e->count, 1);
    assert_int_equal ((long long)e->tenant_id, atoll (s_tenant));
    size_t changes = s_event_frames (fx, "instance.health");
    /* two more rounds: nothing changed, nothing announced */
    size_t rounds = s_event_frames (fx, "health.checked");
    s_wait_frames (fx, "health.checked", rounds + 2);
    assert_int_equal (s_event_frames (fx, "instance.health"), changes);
    s_expect ("close", "SELECT health FROM instances WHERE id = $1", open);
}

static void
test_health_events_name_every_first_change (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.health_check_ms = 200;
    const char *sim = rcd_gwsim_url (s_sim);
    assert_int_equal (rcd_gwsim_configure (
                          s_sim, "{\"instances\": {\"a\": {\"apikey\": \"k\"},"
                                 " \"b\": {\"state\": \"connecting\"}}}"),
                      0);
    /* started with no instance: the first rounds find nothing */
    s_start (fx);
    s_wait_frames (fx, "health.checked", 1);
    assert_int_equal (s_event_find (fx, "health.checked", NULL)->count, 0);
    char a[24], b[24], detail[96];
    s_instance (a, "a", "evolution", sim, "k", "true");
    s_instance (b, "b", "evolution", sim, "k", "true");
    snprintf (detail, sizeof detail, "instance=%s state=open", a);
    s_wait_detail (fx, "instance.health", detail);
    snprintf (detail, sizeof detail, "instance=%s state=connecting", b);
    s_wait_detail (fx, "instance.health", detail);
    assert_int_equal (s_event_frames (fx, "instance.health"), 2);
}

/*  --------------------------------------------------------------------
    Retention */

static void
test_retention_deletes_old_terminal_rows_in_batches (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.retention_s = 3600;
    fx->cfg.retention_check_ms = 200;
    fx->cfg.retention_batch = 3;
    const char *terminal[] = {"sent",    "delivered", "read",
                              "failed",  "cancelled", "expired",
                              "blocked", "skipped",   "sent"};
    char gone[11][24];
    for (int i = 0; i < 9; i++) {
        s_message (gone[i], terminal[i], 1, 5, 7200, NULL, NULL);
        s_history (gone[i], 2, terminal[i], "old");
    }
    /* a reminder of a complete cycle goes too */
    char done_cycle[24], live_cycle[24];
    s_cycle (done_cycle, "inv-done", "complete", 0);
    s_cycle (live_cycle, "inv-live", "active", 1);
    s_message (gone[9], "sent", 1, 5, 7200, NULL, done_cycle);
    s_history (gone[9], 2, "sent", "old");
    /* kept: young terminal, old open ones, a reminder of a live cycle */
    const char *kept_status[] = {"sent", "pending", "sending", "unknown",
                                 "sent"};
    const int kept_age[] = {600, 7200, 7200, 7200, 7200};
    char kept[5][24];
    for (int i = 0; i < 5; i++) {
        s_message (kept[i], kept_status[i], 1, 5, kept_age[i], NULL,
                   i == 4 ? live_cycle : NULL);
        s_history (kept[i], 2, kept_status[i], "keep");
    }
    /* dead letters: old of a deleted message (goes), young of a deleted
       message and old of a message that stays (both kept) */
    free (s_sql ("INSERT INTO dead_letters (tenant_id, message_id, reason,"
                 " attempts, created_at) VALUES"
                 " ($1, $2::bigint, 'old', 5, now() - interval '2 hours'),"
                 " ($1, $2::bigint, 'young', 5, now() - interval '10 minutes'),"
                 " ($1, $3::bigint, 'replayed', 5, now() - interval '2 hours')"
                 " RETURNING 1",
                 3, s_tenant, gone[3], kept[1]));

    s_start (fx);
    /* The first round ran at start, unseen; the next deletes what we
       add now, so its event is seen whole. */
    s_wait_count ("SELECT count(*) FROM messages", NULL, 5);
    char late[24];
    s_message (late, "failed", 5, 5, 7200, NULL, NULL);
    s_history (late, 3, "failed", "late");
    /* webhook events (they hold the contacts' replies) go by age too */
    free (s_sql ("INSERT INTO webhook_events (tenant_id, instance_id,"
                 " provider, kind, event_key, payload, received_at)"
                 " VALUES ($1, 1, 'evolution', 'inbound', 'inbound:old', '{}',"
                 "         now() - interval '2 hours'),"
                 "        ($1, 1, 'evolution', 'inbound', 'inbound:young',"
                 "         '{}', now()) RETURNING 1",
                 1, s_tenant));
    /* one message, its 3 history rows, one event; a batch of each phase */
    s_wait_detail (fx, "retention.deleted",
                   "messages=1 history=3 dead_letters=0 webhook_events=1"
                   " batches=3");
    s_expect ("inbound:young",
              "SELECT string_agg(event_key, ',')"
              " FROM webhook_events",
              NULL);

    for (int i = 0; i < 10; i++) {
        s_expect ("0", "SELECT count(*) FROM messages WHERE id = $1", gone[i]);
        s_expect ("0",
                  "SELECT count(*) FROM message_history WHERE message_id = $1",
                  gone[i]);
    }
    for (int i = 0; i < 5; i++) {
        s_expect ("1", "SELECT count(*) FROM messages WHERE id = $1", kept[i]);
        s_expect ("2",
                  "SELECT count(*) FROM message_history WHERE message_id = $1",
                  kept[i]);
    }
    s_expect ("replayed,young",
              "SELECT string_agg(reason, ',' ORDER BY reason)"
              " FROM dead_letters",
              NULL);
    /* cycles are left as they were */
    s_expect ("active|1",
              "SELECT status || '|' || open_messages FROM billing_cycles"
              " WHERE id = $1",
              live_cycle);
    s_expect ("complete|0",
              "SELECT status || '|' || open_messages FROM billing_cycles"
              " WHERE id = $1",
              done_cycle);
    s_event_t *e = s_event_find (fx, "retention.deleted",
                                 "messages=1 history=3 dead_letters=0"
                                 " webhook_events=1 batches=3");
    assert_int_equal (e->count, 1);
    assert_int_equal (e->value, 3);
    s_expect ("0", "SELECT count(*) FROM messages WHERE id = $1", late);
}

static void
test_retention_rounds_work_off_a_backlog_in_small_batches (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.retention_s = 3600;
    fx->cfg.retention_check_ms = 100;
    fx->cfg.retention_batch = 3;
    s_start (fx);
    /* 10 rows: batches of 3, 3, 3, 1, then one of dead letters and one
       of webhook events */
    free (s_sql ("WITH m AS (INSERT INTO messages (tenant_id, to_phone, body,"
                 " status, updated_at) SELECT $1, '+5511900000002', 'x',"
                 " 'sent', now() - interval '2 hours'"
                 " FROM generate_series(1, 10) RETURNING id, tenant_id)"
                 " INSERT INTO message_history (tenant_id, message_id,"
                 " status) SELECT tenant_id, id, 'sent' FROM m RETURNING 1",
                 1, s_tenant));
    s_wait_sum (fx, "retention.deleted", 10);
    s_event_t *e = s_event_find (fx, "retention.deleted", NULL);
    assert_int_equal (e->count, 10);
    assert_int_equal (e->value, 6);
    assert_string_equal (e->detail, "messages=10 history=10 dead_letters=0 "
                                    "webhook_events=0 batches=6");
    s_expect ("0", "SELECT count(*) FROM messages", NULL);
    s_expect ("0", "SELECT count(*) FROM message_history", NULL);
    /* DRAIN is answered while rounds go on */
    zstr_send (fx->actor, "DRAIN");
    zsock_set_rcvtimeo (fx->actor, 2000);
    char *reply = zstr_recv (fx->actor);
    assert_non_null (reply);
    assert_string_equal (reply, "DRAINED");
    zstr_free (&reply);
    zsock_set_rcvtimeo (fx->actor, -1);
}

static void
test_retention_zero_keeps_everything (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.retention_s = 0;
    fx->cfg.retention_check_ms = 50;
    fx->cfg.expiry_check_ms = 50; /* a task that runs, to see time pass */
    char id[24];
    s_message (id, "sent", 1, 5, 365 * 86400, NULL, NULL);
    free (s_sql ("INSERT INTO recipient_pacing (tenant_id, phone, next_at)"
                 " VALUES ($1, '+5511900000003', now() - interval '1 hour')"
                 " RETURNING 1",
                 1, s_tenant));
    s_start (fx);
    s_wait_count ("SELECT count(*) FROM recipient_pacing", NULL, 0);
    s_wait_sum (fx, "heartbeat", 2);
    s_expect ("1", "SELECT count(*) FROM messages WHERE id = $1", id);
    assert_int_equal (s_event_frames (fx, "retention.deleted"), 0);
}

/*  --------------------------------------------------------------------
    Recipient pacing */

static void
test_pacing_rows_past_a_minute_are_deleted (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.expiry_check_ms = 50;
    s_start (fx);
    free (s_sql ("INSERT INTO recipient_pacing (tenant_id, phone, next_at)"
                 " SELECT $1, '+55119100000' || lpad(g::text, 2, '0'),"
                 " now() - CASE WHEN g <= 5 THEN interval '2 minutes'"
                 "              WHEN g <= 7 THEN interval '10 seconds'"
                 "              ELSE interval '-1 minute' END"
                 " FROM generate_series(1, 8) g RETURNING 1",
                 1, s_tenant));
    s_wait_sum (fx, "pacing.deleted", 5);
    s_expect ("3", "SELECT count(*) FROM recipient_pacing", NULL);
    s_expect ("0",
              "SELECT count(*) FROM recipient_pacing"
              " WHERE next_at < now() - interval '1 minute'",
              NULL);
    s_expect ("+5511910000006,+5511910000007,+5511910000008",
              "SELECT string_agg(phone, ',' ORDER BY phone)"
              " FROM recipient_pacing",
              NULL);
    assert_int_equal (s_event_sum (fx, "pacing.deleted"), 5);
}

/*  --------------------------------------------------------------------
    Unmatched webhook events */

/*  Records a receipt through the ingestor's own function; answers its
    outcome. */
static char *
s_receipt (const char *provider_id, const char *status)
{
    char key[96];
    snprintf (key, sizeof key, "receipt:%s:%s", provider_id, status);
    return s_sql ("SELECT outcome FROM rcd_webhook_record($1, 1, 'evolution',"
                  " 'receipt', $2, $3, $4, NULL, NULL, NULL, NULL, '{}')",
                  4, s_tenant, key, provider_id, status);
}

static void
test_unmatched_receipts_are_applied_once_their_message_is_known (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.webhook_rematch_ms = 50;
    fx->cfg.webhook_window_ms = 60000;
    /* receipts that overtook the sender's record of the send */
    const char *outcomes[] = {"delivered", "read"};
    for (int i = 0; i < 2; i++) {
        char *o = s_receipt ("LATE1", outcomes[i]);
        assert_string_equal (o, "unmatched");
        free (o);
    }
    /* one received before the window: never tried again */
    char *o = s_receipt ("OLD1", "delivered");
    assert_string_equal (o, "unmatched");
    free (o);
    free (s_sql ("UPDATE webhook_events SET received_at = now() - interval"
                 " '2 minutes', retry_at = now() WHERE provider_message_id ="
                 " 'OLD1' RETURNING 1",
                 0));
    s_start (fx);
    char id[24], old[24];
    s_message (id, "sent", 1, 5, 0, NULL, NULL);
    s_message (old, "sent", 1, 5, 0, NULL, NULL);
    free (s_sql ("UPDATE messages SET provider_message_id = CASE id"
                 " WHEN $1::bigint THEN 'LATE1' ELSE 'OLD1' END"
                 " WHERE id IN ($1::bigint, $2::bigint) RETURNING 1",
                 2, id, old));
    /* the first retry comes a second after the receipt */
    s_wait_sum (fx, "webhook.rematched", 2);
    s_expect ("read", "SELECT status FROM messages WHERE id = $1", id);
    s_expect ("t",
              "SELECT delivered_at IS NOT NULL AND read_at IS NOT NULL"
              " FROM messages WHERE id = $1",
              id);
    s_expect ("applied,applied",
              "SELECT string_agg(outcome, ',' ORDER BY id) FROM webhook_events"
              " WHERE provider_message_id = 'LATE1'",
              NULL);
    s_expect ("0",
              "SELECT count(*) FROM webhook_events"
              " WHERE provider_message_id = 'LATE1'"
              "   AND retry_at IS NOT NULL",
              NULL);
    /* the old one stays unmatched, no longer retried */
    s_wait_count ("SELECT count(*) FROM webhook_events"
                  " WHERE provider_message_id = 'OLD1' AND retry_at IS NULL",
                  NULL, 1);
    s_expect ("sent", "SELECT status FROM messages WHERE id = $1", old);
    s_expect ("unmatched",
              "SELECT outcome FROM webhook_events"
              " WHERE provider_message_id = 'OLD1'",
              NULL);
    assert_int_equal (s_event_sum (fx, "webhook.rematched"), 2);
}

/*  --------------------------------------------------------------------
    Campaign completion */

/*  A campaign of our tenant in state, named name, with statuses[] as its
    messages (NULL-ended); 'sent' ones sent i minutes ago, i their index.
    Answers its id as text in out. */
static void
s_campaign (char out[24], const char *name, const char *state,
            const char *const *statuses)
{
    int n = 0;
    while (statuses[n])
        n++;
    char count[16];
    snprintf (count, sizeof count, "%d", n);
    char *id = s_sql ("INSERT INTO campaigns (tenant_id, name, template,"
                      " state, messages, started_at)"
                      " VALUES ($1, $2, 'promo', $3, $4::int, now())"
                      " RETURNING id",
                      4, s_tenant, name, state, count);
    assert_non_null (id);
    snprintf (out, 24, "%s", id);
    free (id);
    for (int i = 0; i < n; i++) {
        char m[24], phone[32], ago[16];
        s_message (m, statuses[i], 1, 5, 0, NULL, NULL);
        snprintf (phone, sizeof phone, "+551190000%04d", i);
        snprintf (ago, sizeof ago, "%d", n - i);
        free (s_sql ("UPDATE messages SET campaign_id = $2::bigint,"
                     " to_phone = $3, lease_until = NULL,"
                     " sent_at = CASE WHEN status = 'sent'"
                     "   THEN now() - $4::int * interval '1 minute' END"
                     " WHERE id = $1::bigint RETURNING 1",
                     4, m, out, phone, ago));
    }
}

static void
test_campaigns_with_nothing_left_to_send_are_completed (void **state)
{
    fixture_t *fx = *state;
    fx->cfg.campaign_check_ms = 50;
    /* done: two sent, one failed, one still being sent */
    static const char *const done_st[] = {"sent", "failed", "sent", "sending",
                                          NULL};
    /* open: a message still pending; held: paused, nothing open */
    static const char *const open_st[] = {"sent", "pending", NULL};
    static const char *const held_st[] = {"sent", NULL};
    char done[24], open[24], held[24];
    s_campaign (done, "done", "running", done_st);
    s_campaign (open, "open", "running", open_st);
    s_campaign (held, "held", "paused", held_st);
    s_start (fx);
    /* sweeps run and complete nothing while a message is open */
    s_wait_sum (fx, "heartbeat", 2);
    s_expect ("running", "SELECT state FROM campaigns WHERE id = $1", done);
    assert_int_equal (s_event_frames (fx, "campaign.completed"), 0);

    /* the last message of done is sent: the next sweep completes it */
    free (s_sql ("UPDATE messages SET status = 'sent', sent_at = now(),"
                 " updated_at = now()"
                 " WHERE campaign_id = $1::bigint AND status = 'sending'"
                 " RETURNING 1",
                 1, done));
    char detail[64];
    snprintf (detail, sizeof detail, "campaign=%s sent=3", done);
    s_wait_detail (fx, "campaign.completed", detail);
    s_event_t *e = s_event_find (fx, "campaign.completed", detail);
    assert_int_equal (e->count, 1);
    assert_int_equal (e->value, 3);
    assert_int_equal (e->tenant_id, strtoull (s_tenant, NULL, 10));
    s_expect ("completed|3|true|true",
              "SELECT c.state || '|' || c.sent_messages || '|' ||"
              " (c.completed_at = (SELECT max(sent_at) FROM messages"
              "                     WHERE campaign_id = c.id)) || '|' ||"
              " (c.first_sent_at = (SELECT min(sent_at) FROM messages"
              "                      WHERE campaign_id = c.id))"
              " FROM campaigns c WHERE c.id = $1",
              done);
    s_expect ("running", "SELECT state FROM campaigns WHERE id = $1", open);
    s_expect ("paused", "SELECT state FROM campaigns WHERE id = $1", held);

    /* open's pending message is cancelled: it completes with 1 sent */
    free (s_sql ("UPDATE messages SET status = 'cancelled',"
                 " updated_at = now()"
                 " WHERE campaign_id = $1::bigint AND status = 'pending'"
                 " RETURNING 1",
                 1, open));
    snprintf (detail, sizeof detail, "campaign=%s sent=1", open);
    s_wait_detail (fx, "campaign.completed", detail);
    s_expect ("completed", "SELECT state FROM campaigns WHERE id = $1", open);
    /* each published once, however many sweeps ran since; the paused
       one is left alone */
    s_wait_sum (fx, "heartbeat", s_event_sum (fx, "heartbeat") + 1);
    assert_int_equal (s_event_frames (fx, "campaign.completed"), 2);
    s_expect ("paused", "SELECT state FROM campaigns WHERE id = $1", held);
}

/*  --------------------------------------------------------------------
    rcd_http_escape */

static void
test_http_escape_keeps_a_name_in_one_segment (void **state)
{
    (void)state;
    char *s = rcd_http_escape ("evo closed/1?#%~._-Aé");
    assert_non_null (s);
    assert_string_equal (s, "evo%20closed%2F1%3F%23%25~._-A%C3%A9");
    free (s);
    s = rcd_http_escape ("");
    assert_non_null (s);
    assert_string_equal (s, "");
    free (s);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (
            test_unknown_past_deadline_fails_with_dead_letter, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_unknown_retry_policy_requeues_until_attempts_are_used_up,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_unknown_policy_is_refused,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_health_is_polled_and_recorded,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_health_events_name_every_first_change, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_retention_deletes_old_terminal_rows_in_batches, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_retention_rounds_work_off_a_backlog_in_small_batches, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (test_retention_zero_keeps_everything,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_pacing_rows_past_a_minute_are_deleted, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_unmatched_receipts_are_applied_once_their_message_is_known,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_campaigns_with_nothing_left_to_send_are_completed, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_http_escape_keeps_a_name_in_one_segment, NULL, NULL),
    };
    return cmocka_run_group_tests (tests, s_group_setup, s_group_teardown);
}

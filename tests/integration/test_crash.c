/*  test_crash - crash tests of issue 4 on the pipeline as processes
    (rcd_test_pipeline): a sender killed -9 in the middle of a 5 000
    message run, the active scheduler killed -9 with a standby running,
    and PostgreSQL restarted mid-run (on a cluster of this test's own:
    the shared RECADO_TEST_PG serves other tests and is never
    restarted). Afterwards every message is terminal and none is lost;
    duplicates at the simulator can only come from the sender's crash
    window, and are counted and printed. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rcd_gwsim.h"
#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#ifndef RCD_PG_CLUSTER
#define RCD_PG_CLUSTER "deploy/pg-cluster"
#endif

#define S_SETTLE_MS   90000
#define S_TAKEOVER_MS 5000

static const char *const s_env[] = {
    "RECADO_LEASE_MS=5000",           "RECADO_LEASE_CHECK_MS=200",
    "RECADO_RECIPIENT_INTERVAL_MS=0", "RECADO_RETRY_BASE_MS=20",
    "RECADO_RETRY_CAP_MS=200",        NULL};

typedef struct {
    rcd_test_pipeline_t *p;
    char *key;
    char *pg_dir; /* own cluster, when the test runs one */
} s_crash_t;

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_pg_cluster (const char *verb, const char *dir, int port, char *out,
              size_t size)
{
    char cmd[1024];
    if (port)
        snprintf (cmd, sizeof cmd, "%s %s %s %d 2>&1", RCD_PG_CLUSTER, verb,
                  dir, port);
    else
        snprintf (cmd, sizeof cmd, "%s %s %s 2>&1", RCD_PG_CLUSTER, verb, dir);
    FILE *pipe = popen (cmd, "r");
    assert_non_null (pipe);
    char line[512] = "";
    size_t used = 0;
    if (out && size)
        out[0] = 0;
    while (fgets (line, sizeof line, pipe))
        if (out && used + strlen (line) < size) {
            strcpy (out + used, line);
            used += strlen (line);
        }
    int rc = pclose (pipe);
    if (rc != 0)
        fail_msg ("%s: exit %d: %s", cmd, rc, out ? out : "");
    if (out && used && out[used - 1] == '\n')
        out[used - 1] = 0;
}

static int
teardown (void **state)
{
    s_crash_t *c = *state;
    if (!c)
        return 0;
    rcd_test_pipeline_destroy (&c->p);
    if (c->pg_dir) {
        s_pg_cluster ("stop", c->pg_dir, 0, NULL, 0);
        char cmd[512];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", c->pg_dir);
        if (system (cmd) != 0)
            fprintf (stderr, "could not remove %s\n", c->pg_dir);
        free (c->pg_dir);
    }
    free (c->key);
    free (c);
    *state = NULL;
    return 0;
}

static s_crash_t *
s_crash_new (void **state, const rcd_test_pipeline_opts_t *opts)
{
    s_crash_t *c = calloc (1, sizeof *c);
    assert_non_null (c);
    *state = c; /* teardown frees it whatever fails next */
    c->p = rcd_test_pipeline_new (opts);
    c->key = rcd_test_pipeline_tenant (c->p, opts->name);
    rcd_test_pipeline_evolution (c->p, c->key, "evo", 1000);
    return c;
}

static void
s_submit (s_crash_t *c, int n)
{
    assert_int_equal (
        rcd_test_pipeline_submit (
            c->p, c->key, rcd_test_pipeline_messages (0, n, "crash", NULL)),
        n);
}

/*  Every message ends sent (none lost, none failed), and the simulator
    saw each of them: distinct == n. Returns the duplicates. */
static size_t
s_all_sent_once_or_more (s_crash_t *c, int n)
{
    if (!rcd_test_pipeline_wait_settled (c->p, S_SETTLE_MS))
        fail_msg ("not settled in %d ms", S_SETTLE_MS);
    rcd_test_pipeline_print_counts (c->p, "  final");
    assert_int_equal (rcd_test_pipeline_count (c->p, NULL), n);
    assert_int_equal (rcd_test_pipeline_count (c->p, "sent"), n);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (rcd_gwsim_distinct (sim), n);
    return rcd_gwsim_duplicates (sim);
}

typedef struct {
    rcd_test_pipeline_t *p;
    long long sent, sending;
} s_busy_wait_t;

/*  At least sent messages are sent and at least sending are leased. */
static bool
s_busy (void *arg)
{
    s_busy_wait_t *w = arg;
    return rcd_test_pipeline_count (w->p, "sent") >= w->sent &&
           rcd_test_pipeline_count (w->p, "sending") >= w->sending;
}

/*  (a) kill -9 one of two senders in the middle of a 5 000-message run. */
static void
test_sender_killed_mid_run (void **state)
{
    rcd_test_pipeline_opts_t opts = {
        .name = "c_sender", .senders = 2, .env = s_env};
    s_crash_t *c = s_crash_new (state, &opts);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    /* answers take 50-100 ms: a sender always has requests in flight */
    assert_int_equal (
        rcd_gwsim_configure (sim,
                             "{\"latency_ms\": 50, \"latency_jitter_ms\": 50}"),
        0);
    s_submit (c, 5000);
    /* the middle of the run, with work leased to the senders */
    s_busy_wait_t bw = {c->p, 1000, 100};
    if (!rcd_test_wait_until (s_busy, &bw, 60000))
        fail_msg ("the run did not get going");
    long long leased_before = rcd_test_pipeline_count (c->p, "sending");
    size_t held = rcd_gwsim_held (sim);
    int code = rcd_test_pipeline_stop (c->p, RCD_TP_SENDER, 1, SIGKILL, 5000);
    assert_int_equal (code, 128 + SIGKILL);
    /* what the dead sender could have had in flight was leased then or
       is still leased now */
    long long leased_after = rcd_test_pipeline_count (c->p, "sending");
    long long leased =
        leased_before > leased_after ? leased_before : leased_after;
    long long sent_at_kill = rcd_test_pipeline_count (c->p, "sent");
    fprintf (stderr, "  killed with %zu answers held at the gateway\n", held);
    /* as an orchestrator would, start it again */
    rcd_test_pipeline_start (c->p, RCD_TP_SENDER, 1);
    assert_true (sent_at_kill < 5000);
    size_t dups = s_all_sent_once_or_more (c, 5000);
    fprintf (stderr,
             "  sender killed at %lld sent, %lld leased: %zu duplicates at "
             "the gateway\n",
             sent_at_kill, leased, dups);
    assert_true ((long long)dups <= leased);
    /* the survivor and the rest stop cleanly */
    rcd_test_pipeline_stop_all (c->p);
    rcd_test_pipeline_passed (c->p);
}

typedef struct {
    rcd_test_pipeline_t *p;
    int index;
} s_log_wait_t;

static bool
s_became_active (void *arg)
{
    s_log_wait_t *w = arg;
    return rcd_test_pipeline_log_has (w->p, RCD_TP_SCHEDULER, w->index,
                                      "holding the scheduler lock");
}

typedef struct {
    rcd_test_pipeline_t *p;
    int index;
} s_exit_wait_t;

static bool
s_exited (void *arg)
{
    s_exit_wait_t *w = arg;
    return !rcd_test_pipeline_running (w->p, RCD_TP_SCHEDULER, w->index);
}

typedef struct {
    rcd_test_pipeline_t *p;
    int active; /* the scheduler that logged taking the lock, or -1 */
} s_active_wait_t;

static bool
s_one_active (void *arg)
{
    s_active_wait_t *aw = arg;
    for (int i = 0; i < 2; i++) {
        s_log_wait_t w = {aw->p, i};
        if (s_became_active (&w)) {
            aw->active = i;
            return true;
        }
    }
    return false;
}

typedef struct {
    rcd_test_pipeline_t *p;
    const char *since; /* database time */
} s_claim_wait_t;

/*  Whether some row was claimed after since. */
static bool
s_claimed_since (void *arg)
{
    s_claim_wait_t *w = arg;
    const char *params[] = {w->since};
    return rcd_test_sql_int (rcd_test_pipeline_db (w->p),
                             "SELECT count(*) FROM message_history"
                             " WHERE status = 'sending'"
                             "   AND at > $1::timestamptz",
                             1, params) > 0;
}

/*  (b) kill -9 the active scheduler with a standby running: the standby
    takes over within 5 s and everything completes once. */
static void
test_active_scheduler_killed_standby_takes_over (void **state)
{
    rcd_test_pipeline_opts_t opts = {
        .name = "c_sched", .schedulers = 2, .senders = 2, .env = s_env};
    s_crash_t *c = s_crash_new (state, &opts);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (c->p);
    assert_int_equal (
        rcd_gwsim_configure (sim,
                             "{\"latency_ms\": 5, \"latency_jitter_ms\": 10}"),
        0);
    /* one of them is active */
    s_active_wait_t aw = {c->p, -1};
    assert_true (rcd_test_wait_until (s_one_active, &aw, 10000));
    int active = aw.active;
    int standby = 1 - active;
    s_exit_wait_t ew = {c->p, standby};
    if (rcd_test_wait_until (s_exited, &ew, 1500))
        fail_msg ("the standby scheduler exited while the other was active "
                  "(log %s)",
                  rcd_test_pipeline_log (c->p, RCD_TP_SCHEDULER, standby));
    s_log_wait_t w = {c->p, standby};
    assert_false (s_became_active (&w));

    s_submit (c, 3000);
    if (!rcd_test_pipeline_wait_count (c->p, "sent", 500, 60000))
        fail_msg ("the run did not get going");
    assert_int_equal (
        rcd_test_pipeline_stop (c->p, RCD_TP_SCHEDULER, active, SIGKILL, 5000),
        128 + SIGKILL);
    int64_t killed = s_mono_ms ();
    long long sent_at_kill = rcd_test_pipeline_count (c->p, "sent");
    char *killed_at = rcd_test_sql (rcd_test_pipeline_db (c->p),
                                    "SELECT now()::text", 0, NULL);
    if (!rcd_test_wait_until (s_became_active, &w, S_TAKEOVER_MS))
        fail_msg ("the standby did not take over within %d ms (log %s)",
                  S_TAKEOVER_MS,
                  rcd_test_pipeline_log (c->p, RCD_TP_SCHEDULER, standby));
    int64_t took = s_mono_ms () - killed;
    /* claims resume: rows claimed after the kill, by the new active */
    s_claim_wait_t cw = {c->p, killed_at};
    bool resumed = rcd_test_pipeline_count (c->p, "pending") == 0 ||
                   rcd_test_wait_until (s_claimed_since, &cw, S_TAKEOVER_MS);
    free (killed_at);
    assert_true (resumed);
    fprintf (stderr, "  standby active %lld ms after the kill (%lld sent)\n",
             (long long)took, sent_at_kill);
    size_t dups = s_all_sent_once_or_more (c, 3000);
    assert_int_equal (dups, 0);
    rcd_test_pipeline_stop_all (c->p);
    rcd_test_pipeline_passed (c->p);
}

/*  (c) restart PostgreSQL mid-run: every message ends sent, once. */
static void
test_postgres_restart_mid_run (void **state)
{
    s_crash_t *holder = calloc (1, sizeof *holder);
    assert_non_null (holder);
    *state = holder;
    char dir[] = "/tmp/rcd-crash-pg-XXXXXX";
    assert_non_null (mkdtemp (dir));
    holder->pg_dir = strdup (dir);
    int port = rcd_test_free_port ();
    char base[512];
    s_pg_cluster ("start", dir, port, base, sizeof base);
    assert_non_null (strstr (base, "port="));

    static const char *const env[] = {
        "RECADO_LEASE_MS=10000",          "RECADO_LEASE_CHECK_MS=200",
        "RECADO_RECIPIENT_INTERVAL_MS=0", "RECADO_RETRY_BASE_MS=20",
        "RECADO_RETRY_CAP_MS=200",        NULL};
    rcd_test_pipeline_opts_t opts = {
        .name = "c_pg", .pg_base = base, .senders = 2, .env = env};
    holder->p = rcd_test_pipeline_new (&opts);
    holder->key = rcd_test_pipeline_tenant (holder->p, "c_pg");
    rcd_test_pipeline_evolution (holder->p, holder->key, "evo", 1000);
    rcd_gwsim_t *sim = rcd_test_pipeline_sim (holder->p);
    assert_int_equal (
        rcd_gwsim_configure (sim,
                             "{\"latency_ms\": 5, \"latency_jitter_ms\": 10}"),
        0);
    s_submit (holder, 3000);
    if (!rcd_test_pipeline_wait_count (holder->p, "sent", 500, 60000))
        fail_msg ("the run did not get going");
    int64_t t0 = s_mono_ms ();
    s_pg_cluster ("stop", dir, 0, NULL, 0);
    size_t total_down = rcd_gwsim_total (sim);
    char again[512];
    s_pg_cluster ("start", dir, port, again, sizeof again);
    fprintf (stderr,
             "  PostgreSQL restarted in %lld ms (%zu sends when it stopped)\n",
             (long long)(s_mono_ms () - t0), total_down);
    size_t dups = s_all_sent_once_or_more (holder, 3000);
    assert_int_equal (dups, 0);
    /* every service lived through it */
    static const rcd_tp_kind_t kinds[] = {RCD_TP_SCHEDULER, RCD_TP_SENDER,
                                          RCD_TP_SENDER, RCD_TP_RECOVERY,
                                          RCD_TP_INGESTOR};
    static const int index[] = {0, 0, 1, 0, 0};
    for (int i = 0; i < 5; i++)
        if (!rcd_test_pipeline_running (holder->p, kinds[i], index[i]))
            fail_msg ("a service died with the database restart (log %s)",
                      rcd_test_pipeline_log (holder->p, kinds[i], index[i]));
    rcd_test_pipeline_stop_all (holder->p);
    rcd_test_pipeline_passed (holder->p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (test_sender_killed_mid_run, teardown),
        cmocka_unit_test_teardown (
            test_active_scheduler_killed_standby_takes_over, teardown),
        cmocka_unit_test_teardown (test_postgres_restart_mid_run, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

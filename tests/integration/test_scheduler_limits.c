/*  test_scheduler_limits - what the scheduler lets out per sender number:
    token buckets, hourly and daily caps counted durably, instance choice,
    recipient pacing, circuits (one probe), throttle pauses and health.
    Real PostgreSQL, the scheduler actor in process, a real PULL socket
    standing in for the senders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "rcd_clock.h"
#include "rcd_proto.h"
#include "rcd_scheduler_server.h"
#include "rcd_test.h"

typedef struct {
    char *url;
    char endpoints[3][64]; /* nudge, dispatch, events */
    rcd_scheduler_config_t cfg;
    long long tenant_id;
    zsock_t *pull;
} fixture_t;

static long long
s_sql_int (const char *url, const char *sql, long long a, long long b)
{
    char pa[24], pb[24];
    snprintf (pa, sizeof pa, "%lld", a);
    snprintf (pb, sizeof pb, "%lld", b);
    const char *p[] = {pa, pb};
    return rcd_test_sql_int (url, sql, 2, p);
}

/*  A tenant's instance; settings is SQL for the remaining columns, e.g.
    "rate_per_second = 5, hourly_cap = 3". */
static long long
s_instance (fixture_t *f, const char *name, const char *settings)
{
    char t[24];
    snprintf (t, sizeof t, "%lld", f->tenant_id);
    const char *p[] = {t, name};
    long long id = rcd_test_sql_int (
        f->url,
        "INSERT INTO instances (tenant_id, name, provider, base_url, api_key,"
        " rate_per_second) VALUES ($1, 'inst-' || $2, 'evolution',"
        " 'http://127.0.0.1:1', 'k', 100000) RETURNING id",
        2, p);
    /* a data-modifying CTE's rows are invisible to the statement's own
       UPDATE, hence two statements */
    char sql[512];
    snprintf (sql, sizeof sql,
              "UPDATE instances SET %s WHERE id = $1 AND $2 = 0 RETURNING id",
              settings);
    return s_sql_int (f->url, sql, id, 0);
}

/*  count due messages to distinct numbers (or all to one when same);
    answers the first id. */
static long long
s_messages (fixture_t *f, int count, bool same_phone)
{
    return s_sql_int (f->url,
                      "WITH m AS (INSERT INTO messages (tenant_id, to_phone,"
                      " body, send_at) SELECT $1, CASE WHEN $2 < 0"
                      " THEN '+5511900000000' ELSE '+55119' ||"
                      " (10000000 + g) END, 'm' || g, now() - interval '1 s'"
                      " FROM generate_series(1, abs($2::int)) g RETURNING id)"
                      " SELECT min(id) FROM m",
                      f->tenant_id, same_phone ? -count : count);
}

static int
setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    assert_non_null (f);
    f->url = rcd_test_db_create ("sched_limits");
    for (int i = 0; i < 3; i++)
        snprintf (f->endpoints[i], sizeof f->endpoints[i], "tcp://127.0.0.1:%d",
                  rcd_test_free_port ());
    f->cfg = (rcd_scheduler_config_t){
        .database_url = f->url,
        .nudge_bind = f->endpoints[0],
        .dispatch_bind = f->endpoints[1],
        .events_endpoint = f->endpoints[2],
        .poll_ms = 20,
        .claim_batch = 100,
        .lease_ms = 30000,
        .dispatch_hwm = 10000,
        .lock_key = 4343,
        .drain_timeout_ms = 1000,
        .burst_ms = 1000,
        .recipient_interval_ms = 0,
    };
    const char *p[] = {"limits"};
    f->tenant_id = rcd_test_sql_int (
        f->url,
        "INSERT INTO tenants (name, api_key_hash, webhook_token) "
        "VALUES ($1, sha256(convert_to($1, 'UTF8')), 'tok') RETURNING id",
        1, p);
    f->pull = zsock_new (ZMQ_PULL);
    assert_non_null (f->pull);
    assert_int_equal (zsock_connect (f->pull, "%s", f->endpoints[1]), 0);
    *state = f;
    return 0;
}

static int
teardown (void **state)
{
    fixture_t *f = *state;
    zsock_destroy (&f->pull);
    rcd_test_db_drop (&f->url);
    free (f);
    return 0;
}

/*  Receives one dispatch within timeout_ms; false when none came. */
static bool
s_recv (fixture_t *f, rcd_dispatch_t *out, int timeout_ms)
{
    zsock_set_rcvtimeo (f->pull, timeout_ms);
    rcd_proto_msg_t msg;
    if (rcd_proto_recv (f->pull, &msg) != 0)
        return false;
    assert_int_equal (msg.type, RCD_MSG_DISPATCH);
    *out = msg.u.dispatch;
    return true;
}

/*  Counts dispatches arriving within ms; instance ids land in per. */
static int
s_drain_for (fixture_t *f, int ms, long long *ids, int max)
{
    int64_t end = rcd_clock_mono_ms () + ms;
    int got = 0;
    rcd_dispatch_t d;
    for (int64_t left = ms; left > 0; left = end - rcd_clock_mono_ms ()) {
        if (!s_recv (f, &d, (int)left))
            break;
        if (ids && got < max)
            ids[got] = (long long)d.instance_id;
        rcd_dispatch_clear (&d);
        got++;
    }
    return got;
}

static void
test_token_bucket_holds_the_rate (void **state)
{
    fixture_t *f = *state;
    s_instance (f, "slow", "rate_per_second = 10");
    s_messages (f, 200, false);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    /* the bucket starts empty and holds one second at most */
    int got = s_drain_for (f, 2000, NULL, 0);
    zactor_destroy (&sched);
    printf ("# 10/s for 2 s: %d dispatched\n", got);
    assert_true (got >= 15);
    assert_true (got <= 21);
}

/*  An idle number saves up at most burst_ms of its rate, not more. */
static void
test_an_idle_bucket_holds_only_its_burst (void **state)
{
    fixture_t *f = *state;
    f->cfg.burst_ms = 250;
    s_instance (f, "bursty", "rate_per_second = 20");
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    /* idle for a second and a half: a full bucket is 5 messages */
    assert_int_equal (s_drain_for (f, 1500, NULL, 0), 0);
    s_messages (f, 100, false);
    int64_t t0 = rcd_clock_mono_ms ();
    int first = s_drain_for (f, 200, NULL, 0);
    int64_t took = rcd_clock_mono_ms () - t0;
    zactor_destroy (&sched);
    printf ("# burst then %lld ms at 20/s: %d dispatched\n", (long long)took,
            first);
    assert_true (first >= 5);
    assert_true (first <= 5 + 1 + (int)(took * 20 / 1000));
}

static void
test_hourly_cap_stops_exactly_and_survives_a_restart (void **state)
{
    fixture_t *f = *state;
    long long inst = s_instance (f, "capped", "hourly_cap = 50");
    s_messages (f, 80, false);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_int_equal (s_drain_for (f, 1500, NULL, 0), 50);
    zactor_destroy (&sched);
    assert_int_equal (s_sql_int (f->url,
                                 "SELECT hour_used + 0 * $2 FROM instances"
                                 " WHERE id = $1",
                                 inst, 0),
                      50);
    /* a new scheduler reads the counter: nothing more this hour */
    sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_int_equal (s_drain_for (f, 700, NULL, 0), 0);
    zactor_destroy (&sched);
    /* the next hour starts from zero: pretend the counter is an hour old */
    s_sql_int (f->url,
               "UPDATE instances SET hour_start = hour_start - interval "
               "'1 hour' WHERE id = $1 AND $2 = 0 RETURNING 1",
               inst, 0);
    sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_int_equal (s_drain_for (f, 1500, NULL, 0), 30);
    zactor_destroy (&sched);
    assert_int_equal (
        s_sql_int (f->url,
                   "SELECT count(*) FROM messages WHERE tenant_id = $1"
                   " AND status = 'sending' AND instance_id = $2",
                   f->tenant_id, inst),
        80);
}

static void
test_daily_cap_counts_in_the_tenants_day (void **state)
{
    fixture_t *f = *state;
    long long inst = s_instance (f, "daily", "daily_cap = 7");
    s_messages (f, 10, false);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_int_equal (s_drain_for (f, 1000, NULL, 0), 7);
    zactor_destroy (&sched);
    assert_int_equal (
        s_sql_int (f->url,
                   "SELECT count(*) FROM instances i JOIN tenants t"
                   " ON t.id = i.tenant_id WHERE i.id = $1 AND"
                   " i.day_used = 7 AND i.day_start ="
                   " date_trunc('day', now(), t.timezone) AND $2 = 0",
                   inst, 0),
        1);
}

static void
test_instance_choice_pinned_sticky_then_headroom (void **state)
{
    fixture_t *f = *state;
    long long a = s_instance (f, "a", "hourly_cap = 1000");
    long long b = s_instance (f, "b", "hourly_cap = 1000");
    /* b has used most of its hour: a has the most headroom */
    s_sql_int (f->url,
               "UPDATE instances SET hour_used = 990, hour_start ="
               " date_trunc('hour', now()) WHERE id = $1 AND $2 = 0"
               " RETURNING 1",
               b, 0);
    long long pinned = s_sql_int (
        f->url,
        "INSERT INTO messages (tenant_id, to_phone, body, instance_id, pinned)"
        " VALUES ($1, '+5511911111111', 'pinned', $2, true) RETURNING id",
        f->tenant_id, b);
    s_sql_int (f->url,
               "INSERT INTO contacts (tenant_id, phone, last_instance_id)"
               " VALUES ($1, '+5511922222222', $2) RETURNING 1",
               f->tenant_id, b);
    long long sticky =
        s_sql_int (f->url,
                   "INSERT INTO messages (tenant_id, to_phone, body) VALUES"
                   " ($1, '+5511922222222', 'sticky') RETURNING id + 0 * $2",
                   f->tenant_id, 0);
    long long free_ =
        s_sql_int (f->url,
                   "INSERT INTO messages (tenant_id, to_phone, body) VALUES"
                   " ($1, '+5511933333333', 'free') RETURNING id + 0 * $2",
                   f->tenant_id, 0);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    int seen = 0;
    rcd_dispatch_t d;
    while (seen < 3 && s_recv (f, &d, 3000)) {
        if ((long long)d.id == pinned || (long long)d.id == sticky)
            assert_int_equal (d.instance_id, b);
        else {
            assert_int_equal (d.id, free_);
            assert_int_equal (d.instance_id, a);
        }
        rcd_dispatch_clear (&d);
        seen++;
    }
    zactor_destroy (&sched);
    assert_int_equal (seen, 3);
    /* the free contact has no row; the sticky one keeps b */
    assert_int_equal (s_sql_int (f->url,
                                 "SELECT last_instance_id FROM contacts"
                                 " WHERE tenant_id = $1 AND phone ="
                                 " '+5511922222222' AND $2 = 0",
                                 f->tenant_id, 0),
                      b);
}

static void
test_one_recipient_is_paced (void **state)
{
    fixture_t *f = *state;
    s_instance (f, "p1", "rate_per_second = 100000");
    s_instance (f, "p2", "rate_per_second = 100000");
    f->cfg.recipient_interval_ms = 600;
    s_messages (f, 3, true);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    int64_t at[3];
    rcd_dispatch_t d;
    for (int i = 0; i < 3; i++) {
        assert_true (s_recv (f, &d, 5000));
        at[i] = rcd_clock_mono_ms ();
        rcd_dispatch_clear (&d);
    }
    zactor_destroy (&sched);
    printf ("# gaps %lld ms, %lld ms\n", (long long)(at[1] - at[0]),
            (long long)(at[2] - at[1]));
    /* across both numbers, never two within the interval */
    assert_true (at[1] - at[0] >= 550);
    assert_true (at[2] - at[1] >= 550);
}

static void
test_open_circuit_gets_one_probe_after_its_cool_down (void **state)
{
    fixture_t *f = *state;
    long long inst = s_instance (
        f, "broken",
        "circuit_state = 'open', circuit_until = now() + interval '1 hour'");
    s_messages (f, 5, false);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_int_equal (s_drain_for (f, 500, NULL, 0), 0);
    /* cool-down over: exactly one probe, the circuit goes half open */
    s_sql_int (f->url,
               "UPDATE instances SET circuit_until = now() WHERE id = $1"
               " AND $2 = 0 RETURNING 1",
               inst, 0);
    assert_int_equal (s_drain_for (f, 1000, NULL, 0), 1);
    assert_int_equal (
        s_sql_int (f->url,
                   "SELECT count(*) FROM instances WHERE id = $1 AND"
                   " circuit_state = 'half_open' AND circuit_until >"
                   " now() + interval '20 s' AND $2 = 0",
                   inst, 0),
        1);
    /* the probe succeeded (as the sender writes it): the rest flows */
    s_sql_int (f->url,
               "UPDATE instances SET circuit_state = 'closed',"
               " circuit_failures = 0 WHERE id = $1 AND $2 = 0 RETURNING 1",
               inst, 0);
    assert_int_equal (s_drain_for (f, 1000, NULL, 0), 4);
    zactor_destroy (&sched);
}

static void
test_paused_or_disconnected_instances_wait (void **state)
{
    fixture_t *f = *state;
    long long paused =
        s_instance (f, "paused", "paused_until = now() + interval '700 ms'");
    long long closed = s_instance (f, "closed", "health = 'close'");
    s_messages (f, 4, false);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    long long ids[4];
    int64_t start = rcd_clock_mono_ms ();
    rcd_dispatch_t d;
    assert_true (s_recv (f, &d, 3000));
    ids[0] = (long long)d.instance_id;
    rcd_dispatch_clear (&d);
    /* nothing before the pause ends, and only through the paused one */
    assert_true (rcd_clock_mono_ms () - start >= 500);
    assert_int_equal (ids[0], paused);
    assert_int_equal (s_drain_for (f, 1000, ids + 1, 3), 3);
    for (int i = 1; i < 4; i++)
        assert_int_equal (ids[i], paused);
    zactor_destroy (&sched);
    assert_int_equal (s_sql_int (f->url,
                                 "SELECT hour_used FROM instances WHERE"
                                 " id = $1 AND $2 = 0",
                                 closed, 0),
                      0);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_token_bucket_holds_the_rate,
                                         setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_an_idle_bucket_holds_only_its_burst, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_hourly_cap_stops_exactly_and_survives_a_restart, setup,
            teardown),
        cmocka_unit_test_setup_teardown (
            test_daily_cap_counts_in_the_tenants_day, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_instance_choice_pinned_sticky_then_headroom, setup, teardown),
        cmocka_unit_test_setup_teardown (test_one_recipient_is_paced, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (
            test_open_circuit_gets_one_probe_after_its_cool_down, setup,
            teardown),
        cmocka_unit_test_setup_teardown (
            test_paused_or_disconnected_instances_wait, setup, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

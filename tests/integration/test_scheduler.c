/*  test_scheduler - the scheduler and recovery actors against a real
    PostgreSQL and real ZeroMQ sockets on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "rcd_clock.h"
#include "rcd_proto.h"
#include "rcd_recovery_server.h"
#include "rcd_scheduler_server.h"
#include "rcd_test.h"

typedef struct {
    char *url;
    char endpoints[4][64]; /* nudge, dispatch, events, spare */
    rcd_scheduler_config_t cfg;
    long long tenant_id;
    long long instance_id;
} fixture_t;

static long long
s_insert_tenant (const char *url, const char *name, bool with_instance,
                 long long *instance_id)
{
    const char *p[] = {name};
    long long tenant = rcd_test_sql_int (
        url,
        "INSERT INTO tenants (name, api_key_hash, webhook_token) "
        "VALUES ($1, sha256(convert_to($1, 'UTF8')), 'tok') RETURNING id",
        1, p);
    if (with_instance) {
        char t[24];
        snprintf (t, sizeof t, "%lld", tenant);
        const char *q[] = {t};
        long long inst = rcd_test_sql_int (
            url,
            "INSERT INTO instances (tenant_id, name, provider, base_url, "
            "api_key, rate_per_second) VALUES ($1, 'main', 'evolution', "
            "'http://127.0.0.1:1', 'k', 100000) RETURNING id",
            1, q);
        if (instance_id)
            *instance_id = inst;
    }
    return tenant;
}

/*  Inserts count messages for tenant; send_at offset in seconds from now.
    Answers the first id. */
static long long
s_insert_messages (const char *url, long long tenant, int count,
                   int send_at_offset_s, int priority, const char *phone)
{
    char t[24], n[24], off[24], prio[8];
    snprintf (t, sizeof t, "%lld", tenant);
    snprintf (n, sizeof n, "%d", count);
    snprintf (off, sizeof off, "%d", send_at_offset_s);
    snprintf (prio, sizeof prio, "%d", priority);
    const char *p[] = {t, n, off, prio, phone};
    return rcd_test_sql_int (
        url,
        "WITH ins AS (INSERT INTO messages (tenant_id, to_phone, body, "
        "send_at, priority) SELECT $1, $5, 'hello ' || g, "
        "now() + $3::int * interval '1 second', $4::smallint "
        "FROM generate_series(1, $2::int) g RETURNING id) "
        "SELECT min(id) FROM ins",
        5, p);
}

static int
setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    assert_non_null (f);
    f->url = rcd_test_db_create ("scheduler");
    for (int i = 0; i < 3; i++)
        snprintf (f->endpoints[i], sizeof f->endpoints[i], "tcp://127.0.0.1:%d",
                  rcd_test_free_port ());
    f->cfg = (rcd_scheduler_config_t){
        .database_url = f->url,
        .nudge_bind = f->endpoints[0],
        .dispatch_bind = f->endpoints[1],
        .events_endpoint = f->endpoints[2],
        .poll_ms = 50,
        .claim_batch = 100,
        .lease_ms = 30000,
        .dispatch_hwm = 1000,
        .lock_key = 4242,
        .drain_timeout_ms = 1000,
        .burst_ms = 1000,
    };
    f->tenant_id = s_insert_tenant (f->url, "acme", true, &f->instance_id);
    *state = f;
    return 0;
}

static int
teardown (void **state)
{
    fixture_t *f = *state;
    rcd_test_db_drop (&f->url);
    free (f);
    return 0;
}

/*  A PULL socket connected (not bound) to endpoint. */
static zsock_t *
s_pull_from (const char *endpoint)
{
    zsock_t *pull = zsock_new (ZMQ_PULL);
    assert_non_null (pull);
    assert_int_equal (zsock_connect (pull, "%s", endpoint), 0);
    return pull;
}

/*  Receives one dispatch within timeout_ms; false when none came. */
static bool
s_recv_dispatch (zsock_t *pull, rcd_dispatch_t *out, int timeout_ms)
{
    zsock_set_rcvtimeo (pull, timeout_ms);
    rcd_proto_msg_t msg;
    int rc = rcd_proto_recv (pull, &msg);
    if (rc != 0)
        return false;
    assert_int_equal (msg.type, RCD_MSG_DISPATCH);
    *out = msg.u.dispatch;
    return true;
}

static long long
s_count (const char *url, const char *sql)
{
    return rcd_test_sql_int (url, sql, 0, NULL);
}

static void
test_claims_due_messages_and_dispatches_them (void **state)
{
    fixture_t *f = *state;
    long long first =
        s_insert_messages (f->url, f->tenant_id, 250, -1, 1, "+5511912345678");
    s_insert_messages (f->url, f->tenant_id, 5, 3600, 1, "+5511912345678");
    /* the first carries a trace id (the ingestor's), the rest none (rows
       stored before migration 0008) */
    char id[24];
    snprintf (id, sizeof id, "%lld", first);
    const char *p[] = {id};
    rcd_test_sql_int (f->url,
                      "UPDATE messages SET trace_id = "
                      "'4bf92f3577b34da6a3ce929d0e0e4736' WHERE id = $1 "
                      "RETURNING 1",
                      1, p);
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    assert_non_null (pull);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_non_null (sched);

    int got = 0;
    bool seen[250] = {false};
    rcd_dispatch_t d;
    while (got < 250 && s_recv_dispatch (pull, &d, 5000)) {
        long long idx = (long long)d.id - first;
        assert_true (idx >= 0 && idx < 250);
        assert_false (seen[idx]); /* never twice */
        seen[idx] = true;
        assert_int_equal (d.attempt, 1);
        assert_int_equal (d.tenant_id, f->tenant_id);
        assert_int_equal (d.instance_id, f->instance_id);
        assert_string_equal (d.to, "+5511912345678");
        assert_true (d.lease_until_ms > rcd_clock_now_ms () + 20000);
        if (idx == 0)
            assert_string_equal (d.trace_id,
                                 "4bf92f3577b34da6a3ce929d0e0e4736");
        else
            assert_null (d.trace_id);
        rcd_dispatch_clear (&d);
        got++;
    }
    assert_int_equal (got, 250);
    /* the five future ones stay pending and are not sent */
    assert_false (s_recv_dispatch (pull, &d, 300));
    zactor_destroy (&sched);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE status = 'sending' AND "
                                       "attempts = 1 AND lease_until > now()"),
                      250);
    assert_int_equal (s_count (f->url,
                               "SELECT count(*) FROM messages WHERE status = "
                               "'pending'"),
                      5);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM message_history "
                                       "WHERE status = 'sending'"),
                      250);
    zsock_destroy (&pull);
}

static void
test_claim_blocks_opted_out_and_skips_instanceless_tenants (void **state)
{
    fixture_t *f = *state;
    long long lonely = s_insert_tenant (f->url, "no-instance", false, NULL);
    s_insert_messages (f->url, lonely, 3, -1, 1, "+5511911110000");
    char t[24];
    snprintf (t, sizeof t, "%lld", f->tenant_id);
    const char *p[] = {t};
    rcd_test_sql_int (f->url,
                      "INSERT INTO contacts (tenant_id, phone, opted_out) "
                      "VALUES ($1, '+5511922220000', true) RETURNING 1",
                      1, p);
    s_insert_messages (f->url, f->tenant_id, 3, -1, 1, "+5511922220000");
    long long ok =
        s_insert_messages (f->url, f->tenant_id, 1, -1, 1, "+5511933330000");

    zsock_t *pull = s_pull_from (f->endpoints[1]);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    rcd_dispatch_t d;
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.id, ok);
    rcd_dispatch_clear (&d);
    assert_false (s_recv_dispatch (pull, &d, 500));
    zactor_destroy (&sched);
    zsock_destroy (&pull);
    /* the instanceless tenant's wait; the opted-out contact's are blocked
       by the claim, never sent, never left pending for ever */
    assert_int_equal (s_count (f->url,
                               "SELECT count(*) FROM messages WHERE status = "
                               "'pending'"),
                      3);
    assert_int_equal (s_count (f->url,
                               "SELECT count(*) FROM messages m JOIN "
                               "message_history h ON h.message_id = m.id "
                               "WHERE m.status = 'blocked' AND m.to_phone = "
                               "'+5511922220000' AND h.status = 'blocked'"),
                      3);
}

static void
test_high_priority_leaves_first (void **state)
{
    fixture_t *f = *state;
    f->cfg.claim_batch = 1;
    s_insert_messages (f->url, f->tenant_id, 3, -60, 2, "+5511900000001");
    long long high =
        s_insert_messages (f->url, f->tenant_id, 1, -1, 0, "+5511900000002");
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    rcd_dispatch_t d;
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.id, high);
    rcd_dispatch_clear (&d);
    zactor_destroy (&sched);
    zsock_destroy (&pull);
}

static void
test_nothing_is_leased_without_a_sender (void **state)
{
    fixture_t *f = *state;
    s_insert_messages (f->url, f->tenant_id, 10, -1, 1, "+5511900000003");
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    /* several poll periods with no sender connected */
    zclock_sleep (400); /* observation window, not synchronisation */
    assert_int_equal (s_count (f->url,
                               "SELECT count(*) FROM messages WHERE status = "
                               "'sending'"),
                      0);
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    rcd_dispatch_t d;
    assert_true (s_recv_dispatch (pull, &d, 5000));
    rcd_dispatch_clear (&d);
    zactor_destroy (&sched);
    zsock_destroy (&pull);
}

static void
test_nudge_wakes_the_scheduler_between_polls (void **state)
{
    fixture_t *f = *state;
    f->cfg.poll_ms = 60000;
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    zsock_t *push = zsock_new_push (f->endpoints[0]);
    /* the first poll happens at start; wait until it is past */
    rcd_dispatch_t d;
    assert_false (s_recv_dispatch (pull, &d, 300));
    long long id =
        s_insert_messages (f->url, f->tenant_id, 1, -1, 1, "+5511900000004");
    int64_t t0 = rcd_clock_mono_ms ();
    rcd_nudge_t nudge = {.tenant_id = (uint64_t)f->tenant_id, .count = 1};
    assert_int_equal (rcd_nudge_send (&nudge, push), 0);
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.id, id);
    assert_true (rcd_clock_mono_ms () - t0 < 5000);
    rcd_dispatch_clear (&d);
    /* a malformed nudge is dropped and the scheduler keeps working */
    zstr_sendm (push, "nudge");
    zstr_send (push, "garbage");
    id = s_insert_messages (f->url, f->tenant_id, 1, -1, 1, "+5511900000005");
    assert_int_equal (rcd_nudge_send (&nudge, push), 0);
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.id, id);
    rcd_dispatch_clear (&d);
    zactor_destroy (&sched);
    zsock_destroy (&push);
    zsock_destroy (&pull);
}

static void
test_a_scheduled_message_leaves_when_due_not_a_poll_later (void **state)
{
    fixture_t *f = *state;
    f->cfg.poll_ms = 60000;
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    char t[24];
    snprintf (t, sizeof t, "%lld", f->tenant_id);
    const char *p[] = {t};
    char *due_ms = rcd_test_sql (
        f->url,
        "WITH m AS (INSERT INTO messages (tenant_id, to_phone, body, send_at) "
        "VALUES ($1, '+5511900000009', 'timed', now() + interval '800 ms') "
        "RETURNING send_at) SELECT (extract(epoch FROM send_at) * 1000)"
        "::bigint FROM m",
        1, p);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &f->cfg);
    rcd_dispatch_t d;
    assert_true (s_recv_dispatch (pull, &d, 5000));
    int64_t late = rcd_clock_now_ms () - strtoll (due_ms, NULL, 10);
    assert_true (late >= 0);
    assert_true (late < 1000); /* far less than the 60 s poll period */
    rcd_dispatch_clear (&d);
    free (due_ms);
    zactor_destroy (&sched);
    zsock_destroy (&pull);
}

/*  Active and standby run with the same endpoints, as deployed: only the
    lock holder binds them, and the one sender socket follows whoever
    does. */
static void
test_standby_takes_over_when_active_stops (void **state)
{
    fixture_t *f = *state;
    zsock_t *pull = s_pull_from (f->endpoints[1]);
    zactor_t *active = zactor_new (rcd_scheduler_server, &f->cfg);
    zactor_t *standby = zactor_new (rcd_scheduler_server, &f->cfg);
    assert_non_null (active);
    assert_non_null (standby);
    s_insert_messages (f->url, f->tenant_id, 20, -1, 1, "+5511900000006");
    rcd_dispatch_t d;
    int got1 = 0;
    while (got1 < 20 && s_recv_dispatch (pull, &d, 3000)) {
        rcd_dispatch_clear (&d);
        got1++;
    }
    assert_int_equal (got1, 20);
    zactor_destroy (&active);
    int64_t gone = rcd_clock_mono_ms ();
    s_insert_messages (f->url, f->tenant_id, 5, -1, 1, "+5511900000007");
    int got2 = 0;
    while (got2 < 5 && s_recv_dispatch (pull, &d, 5000)) {
        rcd_dispatch_clear (&d);
        got2++;
    }
    assert_int_equal (got2, 5);
    printf ("# standby claimed %lld ms after the active one stopped\n",
            (long long)(rcd_clock_mono_ms () - gone));
    assert_true (rcd_clock_mono_ms () - gone < 5000);
    zactor_destroy (&standby);
    zsock_destroy (&pull);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE attempts <> 1"),
                      0);
}

static void
test_recovery_returns_expired_leases_and_expires_late_messages (void **state)
{
    fixture_t *f = *state;
    char t[24];
    snprintf (t, sizeof t, "%lld", f->tenant_id);
    const char *p[] = {t};
    /* 4 expired leases with attempts left, 2 with attempts used up,
       1 live lease, 3 pending past valid_until */
    rcd_test_sql_int (
        f->url,
        "WITH a AS (INSERT INTO messages (tenant_id, to_phone, body, status, "
        "attempts, lease_until) SELECT $1, '+5511900000008', 'x', 'sending', "
        "1, now() - interval '1 second' FROM generate_series(1,4) "
        "RETURNING 1), b AS (INSERT INTO messages (tenant_id, to_phone, "
        "body, status, attempts, max_attempts, lease_until) SELECT $1, "
        "'+5511900000008', 'y', 'sending', 5, 5, now() - interval '1 second' "
        "FROM generate_series(1,2) RETURNING 1), c AS (INSERT INTO messages "
        "(tenant_id, to_phone, body, status, attempts, lease_until) VALUES "
        "($1, '+5511900000008', 'z', 'sending', 1, now() + interval '1 "
        "hour') RETURNING 1), d AS (INSERT INTO messages (tenant_id, "
        "to_phone, body, send_at, valid_until) SELECT $1, '+5511900000008', "
        "'w', now() + interval '1 hour', now() - interval '1 second' FROM "
        "generate_series(1,3) RETURNING 1) SELECT (SELECT count(*) FROM a) + "
        "(SELECT count(*) FROM b) + (SELECT count(*) FROM c) + (SELECT "
        "count(*) FROM d)",
        1, p);
    zsock_t *nudges = zsock_new_pull (f->endpoints[0]); /* binds */
    rcd_recovery_config_t rcfg = {
        .database_url = f->url,
        .nudge_endpoint = f->endpoints[0],
        .events_endpoint = f->endpoints[2],
        .lease_check_ms = 50,
        .expiry_check_ms = 50,
        .batch = 3, /* smaller than the work: sweeps must repeat */
        .drain_timeout_ms = 100,
    };
    zactor_t *rec = zactor_new (rcd_recovery_server, &rcfg);
    zsock_set_rcvtimeo (nudges, 5000);
    rcd_proto_msg_t msg;
    assert_int_equal (rcd_proto_recv (nudges, &msg), 0);
    assert_int_equal (msg.type, RCD_MSG_NUDGE);
    assert_true (msg.u.nudge.count >= 1);
    rcd_proto_msg_clear (&msg);
    zactor_destroy (&rec);
    zsock_destroy (&nudges);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE body = 'x' AND status = "
                                       "'pending' AND lease_until IS NULL"),
                      4);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE body = 'y' AND status = "
                                       "'failed'"),
                      2);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM dead_letters"), 2);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE body = 'z' AND status = "
                                       "'sending'"),
                      1);
    assert_int_equal (s_count (f->url, "SELECT count(*) FROM messages "
                                       "WHERE body = 'w' AND status = "
                                       "'expired'"),
                      3);
    assert_int_equal (
        s_count (f->url, "SELECT count(*) FROM message_history WHERE detail "
                         "= 'recovered: lease expired'"),
        4);
}

static void
test_binaries_exit_zero_on_sigterm (void **state)
{
    fixture_t *f = *state;
    const char *names[] = {"recado-scheduler", "recado-recovery"};
    for (int i = 0; i < 2; i++) {
        char *bin = rcd_test_bin (names[i]);
        char db[512], n[96], d[96], e[96];
        snprintf (db, sizeof db, "DATABASE_URL=%s", f->url);
        snprintf (n, sizeof n, "RECADO_NUDGE_BIND=%s", f->endpoints[0]);
        snprintf (d, sizeof d, "RECADO_DISPATCH_BIND=%s", f->endpoints[1]);
        snprintf (e, sizeof e, "RECADO_NUDGE_ENDPOINT=%s", f->endpoints[0]);
        const char *argv[] = {bin, NULL};
        const char *env[] = {db, n, d, e, NULL};
        pid_t pid = rcd_test_spawn (argv, env, "/dev/null");
        assert_true (pid > 0);
        zclock_sleep (300); /* let it get past start-up */
        assert_int_equal (rcd_test_stop (pid, SIGTERM, 10000), 0);
        free (bin);
    }
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (
            test_claims_due_messages_and_dispatches_them, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_claim_blocks_opted_out_and_skips_instanceless_tenants, setup,
            teardown),
        cmocka_unit_test_setup_teardown (test_high_priority_leaves_first, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (
            test_nothing_is_leased_without_a_sender, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_nudge_wakes_the_scheduler_between_polls, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_a_scheduled_message_leaves_when_due_not_a_poll_later, setup,
            teardown),
        cmocka_unit_test_setup_teardown (
            test_standby_takes_over_when_active_stops, setup, teardown),
        cmocka_unit_test_setup_teardown (
            test_recovery_returns_expired_leases_and_expires_late_messages,
            setup, teardown),
        cmocka_unit_test_setup_teardown (test_binaries_exit_zero_on_sigterm,
                                         setup, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

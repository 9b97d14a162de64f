/*  test_rcd_events.c - heartbeats and events reach a monitor's SUB socket.

    The test plays the monitor: it binds a SUB on a free loopback port and
    lets rcd_events connect its PUB to it. PUB/SUB drops whatever is sent
    before the subscription reaches the publisher (the slow joiner), so the
    first heartbeat is awaited by publishing again on every poll.
*/
#include "rcd_events.h"
#include "rcd_log.h"
#include "rcd_proto.h"
#include "rcd_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/*  The monitor side and the publisher under test. */
typedef struct {
    zsock_t *sub;
    rcd_events_t *events;
    rcd_proto_msg_t msg; /* the last message received */
    bool have_msg;
} t_fixture_t;

static void
s_fixture_init (t_fixture_t *f, const char *service, const char *replica)
{
    memset (f, 0, sizeof *f);
    int port = rcd_test_free_port ();
    f->sub = zsock_new_sub (NULL, "");
    assert_non_null (f->sub);
    assert_int_equal (zsock_bind (f->sub, "tcp://127.0.0.1:%d", port), port);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    f->events = rcd_events_new (endpoint, service, replica);
    assert_non_null (f->events);
}

static void
s_fixture_destroy (t_fixture_t *f)
{
    if (f->have_msg)
        rcd_proto_msg_clear (&f->msg);
    rcd_events_destroy (&f->events);
    assert_null (f->events);
    zsock_destroy (&f->sub);
}

/*  Receives one message if one is waiting. */
static bool
s_try_recv (t_fixture_t *f)
{
    if (f->have_msg) {
        rcd_proto_msg_clear (&f->msg);
        f->have_msg = false;
    }
    if (!(zsock_events (f->sub) & ZMQ_POLLIN))
        return false;
    assert_int_equal (rcd_proto_recv (f->sub, &f->msg), 0);
    f->have_msg = true;
    return true;
}

/*  Poll step: publish a heartbeat, then look for one. */
static bool
s_heartbeat_arrived (void *arg)
{
    t_fixture_t *f = arg;
    assert_int_equal (rcd_events_heartbeat (f->events, "active"), 0);
    return s_try_recv (f) && f->msg.type == RCD_MSG_HEARTBEAT;
}

/*  Waits (with a deadline) for the next message of a type. */
static void
s_expect (t_fixture_t *f, rcd_msg_type_t type)
{
    zsock_set_rcvtimeo (f->sub, 5000);
    while (true) {
        if (f->have_msg)
            rcd_proto_msg_clear (&f->msg);
        f->have_msg = false;
        int rc = rcd_proto_recv (f->sub, &f->msg);
        if (rc != 0)
            fail_msg ("no %s within 5 s (rc %d)", rcd_proto_topic (type), rc);
        f->have_msg = true;
        if (f->msg.type == type)
            return;
    }
}

/*  Waits until the publisher is connected and subscribed. */
static void
s_await_first_heartbeat (t_fixture_t *f)
{
    if (!rcd_test_wait_until (s_heartbeat_arrived, f, 10000))
        fail_msg ("no heartbeat within 10 s");
}

static void
test_heartbeats_reach_the_monitor_with_increasing_seq (void **state)
{
    (void)state;
    t_fixture_t f;
    s_fixture_init (&f, "scheduler", NULL);
    s_await_first_heartbeat (&f);

    rcd_heartbeat_t *hb = &f.msg.u.heartbeat;
    assert_string_equal (hb->service, "scheduler");
    assert_string_equal (hb->replica, rcd_events_replica (f.events));
    assert_string_equal (hb->state, "active");
    assert_true (hb->seq >= 1);
    assert_true (hb->uptime_ms < 60000);
    /* the default replica is <hostname>:<pid> */
    char host[64] = "";
    gethostname (host, sizeof host - 1);
    char expected[128];
    snprintf (expected, sizeof expected, "%.39s:%d", host, (int)getpid ());
    assert_string_equal (hb->replica, expected);

    /* from here on nothing is lost: each heartbeat's seq is one more than
       the last; those still queued from polling ("active") come first,
       then five without a state word (it is optional) */
    uint64_t last = hb->seq;
    for (int i = 0; i < 5; i++)
        assert_int_equal (rcd_events_heartbeat (f.events, NULL), 0);
    int stateless = 0;
    while (stateless < 5) {
        s_expect (&f, RCD_MSG_HEARTBEAT);
        assert_true (f.msg.u.heartbeat.seq == last + 1);
        last = f.msg.u.heartbeat.seq;
        if (f.msg.u.heartbeat.state)
            assert_int_equal (stateless, 0);
        else
            stateless++;
    }
    s_fixture_destroy (&f);
}

static void
test_events_carry_every_field_to_the_monitor (void **state)
{
    (void)state;
    t_fixture_t f;
    s_fixture_init (&f, "sender", "sender-7:abc");
    s_await_first_heartbeat (&f);
    assert_string_equal (f.msg.u.heartbeat.replica, "sender-7:abc");

    assert_int_equal (rcd_events_emit (f.events, "message.sent", 3, 77,
                                       -123456789, "gateway said ok"),
                      0);
    s_expect (&f, RCD_MSG_EVENT);
    rcd_event_t *ev = &f.msg.u.event;
    assert_string_equal (ev->service, "sender");
    assert_string_equal (ev->replica, "sender-7:abc");
    assert_string_equal (ev->kind, "message.sent");
    assert_true (ev->count == 3);
    assert_true (ev->tenant_id == 77);
    assert_true (ev->value == -123456789);
    assert_string_equal (ev->detail, "gateway said ok");

    assert_int_equal (rcd_events_emit (f.events, "lease.expired", UINT64_MAX, 0,
                                       INT64_MIN, NULL),
                      0);
    s_expect (&f, RCD_MSG_EVENT);
    ev = &f.msg.u.event;
    assert_string_equal (ev->kind, "lease.expired");
    assert_true (ev->count == UINT64_MAX);
    assert_true (ev->value == INT64_MIN);
    assert_null (ev->detail);
    s_fixture_destroy (&f);
}

static void
test_an_event_the_monitor_would_reject_is_refused_at_the_source (void **state)
{
    (void)state;
    t_fixture_t f;
    s_fixture_init (&f, "ingestor", NULL);
    s_await_first_heartbeat (&f);
    char kind[66];
    memset (kind, 'k', 65);
    kind[65] = 0; /* one over the model's 64 */
    assert_int_equal (rcd_events_emit (f.events, kind, 1, 0, 0, NULL), -1);
    assert_int_equal (rcd_events_emit (f.events, NULL, 1, 0, 0, NULL), -1);
    /* the next thing the monitor sees is the valid event after them */
    kind[64] = 0;
    assert_int_equal (rcd_events_emit (f.events, kind, 1, 0, 0, NULL), 0);
    s_expect (&f, RCD_MSG_EVENT);
    assert_string_equal (f.msg.u.event.kind, kind);
    s_fixture_destroy (&f);
}

static void
test_long_service_and_replica_names_fit_the_wire_limits (void **state)
{
    (void)state;
    char service[100], replica[200];
    memset (service, 's', sizeof service - 1);
    service[sizeof service - 1] = 0;
    memset (replica, 'r', sizeof replica - 1);
    replica[sizeof replica - 1] = 0;
    t_fixture_t f;
    s_fixture_init (&f, service, replica);
    s_await_first_heartbeat (&f);
    rcd_heartbeat_t *hb = &f.msg.u.heartbeat;
    assert_true (strlen (hb->service) > 0 && strlen (hb->service) <= 32);
    assert_true (strlen (hb->replica) > 0 && strlen (hb->replica) <= 64);
    assert_int_equal (strncmp (hb->service, service, strlen (hb->service)), 0);
    assert_int_equal (rcd_events_emit (f.events, "x", 1, 0, 0, NULL), 0);
    s_expect (&f, RCD_MSG_EVENT);
    s_fixture_destroy (&f);
}

static void
test_destroy_says_goodbye_with_a_stopped_heartbeat (void **state)
{
    (void)state;
    t_fixture_t f;
    s_fixture_init (&f, "recovery", "recovery-1");
    s_await_first_heartbeat (&f);
    rcd_events_destroy (&f.events);
    assert_null (f.events);
    /* the monitor can tell a clean stop from a silent death */
    while (true) {
        s_expect (&f, RCD_MSG_HEARTBEAT);
        const char *hb_state = f.msg.u.heartbeat.state;
        if (hb_state && strcmp (hb_state, "stopped") == 0)
            break;
        assert_string_equal (hb_state, "active"); /* queued from polling */
    }
    assert_string_equal (f.msg.u.heartbeat.replica, "recovery-1");
    s_fixture_destroy (&f);
}

static void
test_publishing_without_a_monitor_never_blocks (void **state)
{
    (void)state;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    rcd_events_t *events = rcd_events_new (endpoint, "recovery", NULL);
    assert_non_null (events);
    int64_t start = zclock_mono ();
    /* more than the high-water mark: the excess is dropped, not queued */
    for (int i = 0; i < 25000; i++)
        assert_int_equal (
            rcd_events_emit (events, "message.failed", 1, 1, i, NULL), 0);
    assert_int_equal (rcd_events_heartbeat (events, "draining"), 0);
    assert_true (zclock_mono () - start < 10000);
    rcd_events_destroy (&events);
    rcd_events_destroy (&events); /* safe on NULL */
}

static void
test_a_bad_endpoint_gives_no_publisher (void **state)
{
    (void)state;
    /* each logs one error line */
    assert_null (rcd_events_new ("not an endpoint", "x", NULL));
    assert_null (rcd_events_new ("tcp://", "x", NULL));
}

int
main (void)
{
    rcd_log_init ("test_rcd_events");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (
            test_heartbeats_reach_the_monitor_with_increasing_seq),
        cmocka_unit_test (test_events_carry_every_field_to_the_monitor),
        cmocka_unit_test (
            test_an_event_the_monitor_would_reject_is_refused_at_the_source),
        cmocka_unit_test (
            test_long_service_and_replica_names_fit_the_wire_limits),
        cmocka_unit_test (test_destroy_says_goodbye_with_a_stopped_heartbeat),
        cmocka_unit_test (test_publishing_without_a_monitor_never_blocks),
        cmocka_unit_test (test_a_bad_endpoint_gives_no_publisher),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

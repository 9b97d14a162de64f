/*  test_rates - a sender number's limits hold however many senders run:
    the pipeline as processes (rcd_test_pipeline), four sender replicas,
    the gateway simulator counting arrivals per wall-clock second.

      rate accuracy   one instance at 20/s for 30 s: no second above the
                      rate plus one bucket (the scheduler's burst_ms of
                      the rate), and the total within 3 % of 20 x 30
      hourly cap      a cap of 50 lets exactly 50 through; the rest wait
                      (pending), and GET /v1/instances shows the usage */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rcd_clock.h"
#include "rcd_gwsim.h"
#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#define S_RATE    20
#define S_SECONDS 30
#define S_BURST   (S_RATE / 4) /* the scheduler's default burst_ms: 250 */

static const char *const s_env[] = {"RECADO_POLL_MS=20", NULL};

static rcd_test_pipeline_t *
s_pipeline (const char *name)
{
    rcd_test_pipeline_opts_t opts = {.name = name, .senders = 4, .env = s_env};
    rcd_test_pipeline_t *p = rcd_test_pipeline_new (&opts);
    assert_non_null (p);
    return p;
}

/*  Reads the simulator's arrival log from seq on; adds arrivals to per
    (seconds since *first, which the first arrival sets). Answers the
    next seq. Sets *past when an arrival lies beyond the window. */
static long long
s_read_log (rcd_test_pipeline_t *p, long long seq, int64_t *first, int *per,
            int seconds, bool *past)
{
    char url[200];
    snprintf (url, sizeof url, "%s/_sim/log?since_seq=%lld",
              rcd_gwsim_url (rcd_test_pipeline_sim (p)), seq);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    assert_int_equal (res.status, 200);
    json_t *log = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    assert_non_null (log);
    long long next = json_integer_value (json_object_get (log, "next_seq"));
    size_t i;
    json_t *entry;
    json_array_foreach (json_object_get (log, "entries"), i, entry)
    {
        int64_t at = json_integer_value (json_array_get (entry, 1));
        if (!*first)
            *first = at;
        int64_t sec = (at - *first) / 1000;
        if (sec < seconds)
            per[sec]++;
        else
            *past = true;
    }
    json_decref (log);
    return next;
}

static void
test_one_instance_holds_its_rate_with_four_senders (void **state)
{
    (void)state;
    rcd_test_pipeline_t *p = s_pipeline ("rates");
    char *key = rcd_test_pipeline_tenant (p, "rates");
    rcd_test_pipeline_evolution (p, key, "paced", S_RATE);
    int count = S_RATE * S_SECONDS * 3 / 2;
    assert_int_equal (
        rcd_test_pipeline_submit (
            p, key, rcd_test_pipeline_messages (0, count, "rate", NULL)),
        count);
    int per[S_SECONDS] = {0};
    int64_t first = 0;
    long long seq = 0;
    bool past = false;
    int64_t deadline = rcd_clock_mono_ms () + (S_SECONDS + 30) * 1000;
    while (!past && rcd_clock_mono_ms () < deadline) {
        seq = s_read_log (p, seq, &first, per, S_SECONDS, &past);
        if (!past)
            usleep (250 * 1000);
    }
    assert_true (past);
    int total = 0, busiest = 0;
    printf ("# per second:");
    for (int i = 0; i < S_SECONDS; i++) {
        printf (" %d", per[i]);
        total += per[i];
        if (per[i] > busiest)
            busiest = per[i];
    }
    printf ("\n# %d in %d s (%+.1f %% of %d), busiest second %d\n", total,
            S_SECONDS,
            100.0 * (total - S_RATE * S_SECONDS) / (S_RATE * S_SECONDS),
            S_RATE * S_SECONDS, busiest);
    assert_true (busiest <= S_RATE + S_BURST);
    assert_true (total * 100 >= S_RATE * S_SECONDS * 97);
    assert_true (total * 100 <= S_RATE * S_SECONDS * 103);
    /* and nothing reached the gateway twice */
    assert_int_equal (rcd_gwsim_duplicates (rcd_test_pipeline_sim (p)), 0);
    free (key);
    rcd_test_pipeline_stop_all (p);
    rcd_test_pipeline_passed (p);
    rcd_test_pipeline_destroy (&p);
}

static void
test_an_hourly_cap_stops_at_exactly_its_value (void **state)
{
    (void)state;
    rcd_test_pipeline_t *p = s_pipeline ("hourly_cap");
    char *key = rcd_test_pipeline_tenant (p, "capped");
    long long inst = rcd_test_pipeline_instance (
        p, key,
        "{\"name\": \"capped\", \"provider\": \"evolution\", \"api_key\": "
        "\"k\", \"rate_per_second\": 1000, \"hourly_cap\": 50}");
    assert_int_equal (
        rcd_test_pipeline_submit (
            p, key, rcd_test_pipeline_messages (0, 80, "cap", NULL)),
        80);
    assert_true (rcd_test_pipeline_wait_count (p, "sent", 50, 30000));
    /* a while longer: still 50, and the other 30 wait */
    int64_t until = rcd_clock_mono_ms () + 1500;
    while (rcd_clock_mono_ms () < until)
        usleep (100 * 1000);
    assert_int_equal (rcd_test_pipeline_count (p, "sent"), 50);
    assert_int_equal (rcd_test_pipeline_count (p, "pending"), 30);
    assert_int_equal (rcd_gwsim_total (rcd_test_pipeline_sim (p)), 50);
    long status = 0;
    json_t *list = rcd_test_api (rcd_test_pipeline_api_port (p), "GET",
                                 "/v1/instances", key, NULL, &status);
    assert_int_equal (status, 200);
    json_t *item = json_array_get (json_object_get (list, "items"), 0);
    assert_non_null (item);
    assert_int_equal (json_integer_value (json_object_get (item, "id")), inst);
    json_t *usage = json_object_get (item, "usage");
    assert_int_equal (json_integer_value (json_object_get (usage, "hour")), 50);
    assert_int_equal (json_integer_value (json_object_get (usage, "day")), 50);
    json_decref (list);
    free (key);
    rcd_test_pipeline_stop_all (p);
    rcd_test_pipeline_passed (p);
    rcd_test_pipeline_destroy (&p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_an_hourly_cap_stops_at_exactly_its_value),
        cmocka_unit_test (test_one_instance_holds_its_rate_with_four_senders),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

/*  test_monitor_classes.c - the monitor's building blocks on their own:
    rcd_metrics (registry and Prometheus text, histograms included),
    rcd_window (sliding windows), rcd_fleet (replicas by heartbeat) and
    rcd_alerts (fire once, resolve once). No sockets and
    no database: these live in tests/integration only because they link
    the monitor library.
*/
#include "rcd_alerts.h"
#include "rcd_fleet.h"
#include "rcd_metrics.h"
#include "rcd_window.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

/*  ---- rcd_metrics ------------------------------------------------------ */

static void
test_metrics_render_help_type_and_samples_in_order (void **state)
{
    (void)state;
    rcd_metrics_t *reg = rcd_metrics_new (100);
    assert_non_null (reg);
    rcd_metric_t *events = rcd_metrics_counter (
        reg, "recado_events_total", "Events.", "service", "kind", NULL);
    rcd_metric_t *up =
        rcd_metrics_gauge (reg, "recado_database_up", "1 when up.", NULL);
    assert_non_null (events);
    assert_non_null (up);
    assert_int_equal (
        rcd_metric_add (events, 3, "sender", "message.sent", NULL), 0);
    assert_int_equal (
        rcd_metric_add (events, 4, "sender", "message.sent", NULL), 0);
    assert_int_equal (rcd_metric_add (events, 1, "scheduler", "tick", NULL), 0);
    assert_int_equal (rcd_metric_set (up, 1, NULL), 0);
    assert_true (rcd_metric_value (events, "sender", "message.sent", NULL) ==
                 7);
    assert_true (isnan (rcd_metric_value (events, "x", "y", NULL)));
    char *text = rcd_metrics_render (reg);
    assert_string_equal (
        text,
        "# HELP recado_events_total Events.\n"
        "# TYPE recado_events_total counter\n"
        "recado_events_total{service=\"sender\",kind=\"message.sent\"} 7\n"
        "recado_events_total{service=\"scheduler\",kind=\"tick\"} 1\n"
        "# HELP recado_database_up 1 when up.\n"
        "# TYPE recado_database_up gauge\n"
        "recado_database_up 1\n");
    free (text);
    rcd_metrics_destroy (&reg);
    assert_null (reg);
    rcd_metrics_destroy (&reg);
}

static void
test_metrics_escape_labels_and_help (void **state)
{
    (void)state;
    rcd_metrics_t *reg = rcd_metrics_new (10);
    rcd_metric_t *g =
        rcd_metrics_gauge (reg, "odd", "a \\ and\na \"quote\"", "v", NULL);
    assert_int_equal (rcd_metric_set (g, 0.25, "a\"b\\c\nd", NULL), 0);
    assert_int_equal (rcd_metric_set (g, NAN, "nan", NULL), 0);
    assert_int_equal (rcd_metric_set (g, -INFINITY, "neg", NULL), 0);
    assert_int_equal (rcd_metric_set (g, 1e20, "big", NULL), 0);
    char *text = rcd_metrics_render (reg);
    assert_string_equal (text, "# HELP odd a \\\\ and\\na \"quote\"\n"
                               "# TYPE odd gauge\n"
                               "odd{v=\"a\\\"b\\\\c\\nd\"} 0.25\n"
                               "odd{v=\"nan\"} NaN\n"
                               "odd{v=\"neg\"} -Inf\n"
                               "odd{v=\"big\"} 1e+20\n");
    free (text);
    rcd_metrics_destroy (&reg);
}

static void
test_metrics_refuse_bad_names_duplicates_and_decreasing_counters (void **state)
{
    (void)state;
    rcd_metrics_t *reg = rcd_metrics_new (10);
    assert_null (rcd_metrics_gauge (reg, "9lives", "x", NULL));
    assert_null (rcd_metrics_gauge (reg, "has-dash", "x", NULL));
    assert_null (rcd_metrics_gauge (reg, "", "x", NULL));
    assert_null (rcd_metrics_gauge (reg, "ok", "x", "bad:label", NULL));
    assert_null (rcd_metrics_gauge (reg, "ok", "x", "__reserved", NULL));
    assert_null (rcd_metrics_gauge (reg, "ok", "x", "a", "a", NULL));
    assert_non_null (rcd_metrics_gauge (reg, "ok:sub_1", "x", NULL));
    assert_null (rcd_metrics_counter (reg, "ok:sub_1", "x", NULL));
    rcd_metric_t *c = rcd_metrics_counter (reg, "c_total", "x", NULL);
    assert_int_equal (rcd_metric_add (c, -1, NULL), -1);
    assert_int_equal (rcd_metric_add (c, NAN, NULL), -1);
    assert_int_equal (rcd_metric_add (c, 2, NULL), 0);
    assert_true (rcd_metric_value (c, NULL) == 2);
    assert_true (rcd_metrics_name_valid ("recado_a:b_2"));
    assert_false (rcd_metrics_name_valid ("a b"));
    rcd_metrics_destroy (&reg);
}

static void
test_metrics_series_limit_holds_and_remove_frees_a_slot (void **state)
{
    (void)state;
    rcd_metrics_t *reg = rcd_metrics_new (3);
    rcd_metric_t *g = rcd_metrics_gauge (reg, "g", "x", "k", NULL);
    assert_int_equal (rcd_metric_set (g, 1, "a", NULL), 0);
    assert_int_equal (rcd_metric_set (g, 2, "b", NULL), 0);
    assert_int_equal (rcd_metric_set (g, 3, "c", NULL), 0);
    assert_int_equal (rcd_metric_set (g, 4, "d", NULL), -1);
    assert_int_equal (rcd_metric_set (g, 5, "a", NULL), 0); /* existing */
    assert_int_equal (rcd_metric_size (g), 3);
    assert_int_equal (rcd_metric_remove (g, "b", NULL), 0);
    assert_int_equal (rcd_metric_remove (g, "b", NULL), -1);
    assert_int_equal (rcd_metric_set (g, 4, "d", NULL), 0);
    char *text = rcd_metrics_render (reg);
    assert_string_equal (text, "# HELP g x\n# TYPE g gauge\n"
                               "g{k=\"a\"} 5\ng{k=\"c\"} 3\ng{k=\"d\"} 4\n");
    free (text);
    /* a label value too long for a sane series is refused, not stored */
    char huge[5000];
    memset (huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    assert_int_equal (rcd_metric_remove (g, "a", NULL), 0);
    assert_int_equal (rcd_metric_set (g, 1, huge, NULL), -1);
    rcd_metrics_destroy (&reg);
}

/*  A histogram renders cumulative buckets with le, +Inf, _sum and
    _count per series; pre-bucketed observations land where the same
    bounds put them; clear drops every series. */
static void
test_metrics_histogram_renders_cumulative_buckets (void **state)
{
    (void)state;
    rcd_metrics_t *reg = rcd_metrics_new (10);
    static const double bounds[] = {0.1, 1, 2.5};
    static const double unsorted[] = {1, 0.5};
    assert_null (rcd_metrics_histogram (reg, "h_bad", "x", unsorted, 2, NULL));
    assert_null (
        rcd_metrics_histogram (reg, "h_le", "x", bounds, 3, "le", NULL));
    rcd_metric_t *h =
        rcd_metrics_histogram (reg, "lat_seconds", "Latency.", bounds, 3, NULL);
    rcd_metric_t *hl =
        rcd_metrics_histogram (reg, "by_seconds", "By.", bounds, 3, "k", NULL);
    assert_non_null (h);
    assert_non_null (hl);
    assert_int_equal (rcd_metric_observe (h, 0.05, 2, NULL), 0);
    assert_int_equal (rcd_metric_observe (h, 1, 1, NULL), 0); /* le="1" */
    assert_int_equal (rcd_metric_observe (h, 7, 1, NULL), 0); /* +Inf */
    assert_int_equal (rcd_metric_observe (h, 1, -1, NULL), -1);
    assert_int_equal (rcd_metric_observe_bucket (hl, 2.5, 3, 6, "a", NULL), 0);
    assert_int_equal (
        rcd_metric_observe_bucket (hl, INFINITY, 1, 40, "a", NULL), 0);
    assert_true (rcd_metric_value (h, NULL) == 4);
    char *text = rcd_metrics_render (reg);
    assert_string_equal (text, "# HELP lat_seconds Latency.\n"
                               "# TYPE lat_seconds histogram\n"
                               "lat_seconds_bucket{le=\"0.1\"} 2\n"
                               "lat_seconds_bucket{le=\"1\"} 3\n"
                               "lat_seconds_bucket{le=\"2.5\"} 3\n"
                               "lat_seconds_bucket{le=\"+Inf\"} 4\n"
                               "lat_seconds_sum 8.1\n"
                               "lat_seconds_count 4\n"
                               "# HELP by_seconds By.\n"
                               "# TYPE by_seconds histogram\n"
                               "by_seconds_bucket{k=\"a\",le=\"0.1\"} 0\n"
                               "by_seconds_bucket{k=\"a\",le=\"1\"} 0\n"
                               "by_seconds_bucket{k=\"a\",le=\"2.5\"} 3\n"
                               "by_seconds_bucket{k=\"a\",le=\"+Inf\"} 4\n"
                               "by_seconds_sum{k=\"a\"} 46\n"
                               "by_seconds_count{k=\"a\"} 4\n");
    free (text);
    rcd_metric_clear (hl);
    rcd_metric_clear (h);
    assert_int_equal (rcd_metric_size (hl), 0);
    assert_true (rcd_metric_value (h, NULL) == 0);
    rcd_metrics_destroy (&reg);
}

/*  ---- rcd_window ------------------------------------------------------- */

/*  Counts age out by the second; spans sum the right seconds; the
    series has the recent history oldest first. */
static void
test_window_sums_spans_and_forgets_old_seconds (void **state)
{
    (void)state;
    rcd_window_t *w = rcd_window_new ();
    assert_non_null (w);
    int64_t t0 = 5000000; /* ms: second 5000 */
    rcd_window_add (w, t0, 2);
    rcd_window_add (w, t0 + 999, 1);    /* same second */
    rcd_window_add (w, t0 + 30000, 4);  /* 30 s later */
    rcd_window_add (w, t0 + 120000, 8); /* 2 min later */
    int64_t now = t0 + 120500;
    assert_true (rcd_window_sum (w, now, 60000) == 8);
    assert_true (rcd_window_sum (w, now, 100000) == 12);
    assert_true (rcd_window_sum (w, now, 300000) == 15);
    double series[3];
    rcd_window_series (w, now, 60, 3, series); /* 3 buckets of a minute */
    assert_true (series[0] == 3 && series[1] == 4 && series[2] == 8);
    /* an hour and more later every count has gone, however the ring is
       reused */
    assert_true (rcd_window_sum (w, t0 + 3600000 + 121000, 3600000) == 0);
    rcd_window_add (w, t0 + 3600000, 16); /* the slot of t0, a lap later */
    assert_true (rcd_window_sum (w, t0 + 3600000, 1000) == 16);
    assert_true (rcd_window_sum (w, t0 + 3600000, 3600000) == 28);
    rcd_window_destroy (&w);
    assert_null (w);
}

/*  ---- rcd_fleet -------------------------------------------------------- */

typedef struct {
    int forgotten;
    char last[160];
} s_forget_t;

static void
s_on_forget (const rcd_fleet_replica_t *replica, void *arg)
{
    s_forget_t *f = arg;
    f->forgotten++;
    snprintf (f->last, sizeof f->last, "%s/%s", replica->service,
              replica->replica);
}

static void
test_fleet_tracks_liveness_sorted_and_forgets (void **state)
{
    (void)state;
    rcd_fleet_t *fleet = rcd_fleet_new (3);
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "sender", "h:2", "active", 1, 10, 1000), 1);
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "ingestor", "h:1", NULL, 1, 10, 1000), 1);
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "sender", "h:1", NULL, 1, 10, 1000), 1);
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "sender", "h:2", "active", 2, 20, 1500), 0);
    /* full: a fourth replica is refused, known ones still count */
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "recovery", "h:9", NULL, 1, 1, 1500), -1);
    assert_int_equal (rcd_fleet_size (fleet), 3);
    assert_string_equal (rcd_fleet_at (fleet, 0)->service, "ingestor");
    assert_string_equal (rcd_fleet_at (fleet, 1)->replica, "h:1");
    assert_string_equal (rcd_fleet_at (fleet, 2)->replica, "h:2");
    assert_int_equal (rcd_fleet_at (fleet, 2)->seq, 2);
    assert_int_equal (rcd_fleet_at (fleet, 2)->heartbeats, 2);
    assert_null (rcd_fleet_at (fleet, 3));

    s_forget_t f = {0};
    rcd_fleet_sweep (fleet, 2200, 1000, 5000, s_on_forget, &f);
    assert_false (rcd_fleet_at (fleet, 0)->up); /* 1200 ms silent */
    assert_true (rcd_fleet_at (fleet, 2)->up);  /* 700 ms */
    assert_int_equal (f.forgotten, 0);
    rcd_fleet_sweep (fleet, 6100, 1000, 5000, s_on_forget, &f);
    assert_int_equal (f.forgotten, 2);
    assert_int_equal (rcd_fleet_size (fleet), 1);
    assert_string_equal (rcd_fleet_at (fleet, 0)->replica, "h:2");
    rcd_fleet_destroy (&fleet);
    assert_null (fleet);
}

static void
test_fleet_stopped_replica_is_neither_up_nor_down_and_leaves_soon (void **state)
{
    (void)state;
    rcd_fleet_t *fleet = rcd_fleet_new (4);
    rcd_fleet_heartbeat (fleet, "sender", "h:1", "active", 1, 1, 0);
    rcd_fleet_heartbeat (fleet, "sender", "h:1", "stopped", 2, 2, 100);
    const rcd_fleet_replica_t *r = rcd_fleet_at (fleet, 0);
    assert_true (r->stopped);
    assert_false (r->up);
    s_forget_t f = {0};
    rcd_fleet_sweep (fleet, 600, 1000, 60000, s_on_forget, &f);
    assert_int_equal (rcd_fleet_size (fleet), 1);
    rcd_fleet_sweep (fleet, 1200, 1000, 60000, s_on_forget, &f);
    assert_int_equal (rcd_fleet_size (fleet), 0);
    assert_string_equal (f.last, "sender/h:1");
    /* it may come back */
    assert_int_equal (
        rcd_fleet_heartbeat (fleet, "sender", "h:1", "active", 3, 3, 1300), 1);
    assert_true (rcd_fleet_at (fleet, 0)->up);
    rcd_fleet_destroy (&fleet);
}

/*  ---- rcd_alerts ------------------------------------------------------- */

#define S_MAX_SEEN 8

typedef struct {
    int count;
    char topic[S_MAX_SEEN][80];
    char state[S_MAX_SEEN][16];
    json_t *body[S_MAX_SEEN];
} s_sink_t;

static void
s_sink (const char *topic, const char *body, const char *rule,
        const char *state, void *arg)
{
    s_sink_t *sink = arg;
    (void)rule;
    assert_true (sink->count < S_MAX_SEEN);
    snprintf (sink->topic[sink->count], sizeof sink->topic[0], "%s", topic);
    snprintf (sink->state[sink->count], sizeof sink->state[0], "%s", state);
    sink->body[sink->count] = json_loads (body, 0, NULL);
    assert_non_null (sink->body[sink->count]);
    sink->count++;
}

static void
s_sink_clear (s_sink_t *sink)
{
    for (int i = 0; i < sink->count; i++)
        json_decref (sink->body[i]);
    memset (sink, 0, sizeof *sink);
}

static void
test_alerts_fire_after_for_once_and_resolve_once (void **state)
{
    (void)state;
    s_sink_t sink = {0};
    rcd_alerts_t *alerts = rcd_alerts_new (s_sink, &sink);
    json_t *labels = json_pack ("{s:s}", "instance", "a");
    /* holds, but not yet for 500 ms */
    assert_int_equal (rcd_alerts_observe (alerts, "backlog", "warning", 500,
                                          "a", true, labels, "big", 1000),
                      0);
    assert_int_equal (rcd_alerts_observe (alerts, "backlog", "warning", 500,
                                          "a", true, labels, "big", 1400),
                      0);
    assert_int_equal (sink.count, 0);
    assert_int_equal (rcd_alerts_firing (alerts, NULL), 0);
    /* a break restarts the wait */
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", false, labels,
                        "ok", 1450);
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", true, labels,
                        "big", 1500);
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", true, labels,
                        "big", 1900);
    assert_int_equal (sink.count, 0);
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", true, labels,
                        "bigger", 2000);
    assert_int_equal (sink.count, 1);
    assert_string_equal (sink.topic[0], "alert.warning.backlog");
    assert_string_equal (sink.state[0], "firing");
    json_t *body = sink.body[0];
    assert_string_equal (json_string_value (json_object_get (body, "rule")),
                         "backlog");
    assert_string_equal (json_string_value (json_object_get (body, "summary")),
                         "bigger");
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (body, "labels"), "instance")),
                         "a");
    const char *since = json_string_value (json_object_get (body, "since"));
    assert_int_equal (strlen (since), strlen ("2026-11-22T12:00:00.000+00:00"));
    assert_string_equal (since + 23, "+00:00");
    /* still holding: no second frame */
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", true, labels,
                        "big", 5000);
    assert_int_equal (sink.count, 1);
    assert_int_equal (rcd_alerts_firing (alerts, "backlog"), 1);
    assert_int_equal (rcd_alerts_firing (alerts, "other"), 0);
    json_t *list = rcd_alerts_json (alerts);
    assert_int_equal (json_array_size (list), 1);
    json_decref (list);
    /* clears: resolved once */
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", false, labels,
                        "drained", 6000);
    rcd_alerts_observe (alerts, "backlog", "warning", 500, "a", false, labels,
                        "drained", 6100);
    assert_int_equal (sink.count, 2);
    assert_string_equal (sink.state[1], "resolved");
    assert_string_equal (
        json_string_value (json_object_get (sink.body[1], "summary")),
        "drained");
    assert_int_equal (rcd_alerts_firing (alerts, NULL), 0);
    json_decref (labels);
    s_sink_clear (&sink);
    rcd_alerts_destroy (&alerts);
    assert_null (alerts);
}

static void
test_alerts_sweep_resolves_subjects_no_longer_reported (void **state)
{
    (void)state;
    s_sink_t sink = {0};
    rcd_alerts_t *alerts = rcd_alerts_new (s_sink, &sink);
    rcd_alerts_observe (alerts, "down", "critical", 0, "x", true, NULL, "x", 0);
    rcd_alerts_observe (alerts, "down", "critical", 0, "y", true, NULL, "y", 0);
    rcd_alerts_observe (alerts, "other", "info", 0, "z", true, NULL, "z", 0);
    assert_int_equal (sink.count, 3);
    rcd_alerts_sweep (alerts, "down", "gone");
    assert_int_equal (sink.count, 3); /* both were observed this round */
    rcd_alerts_observe (alerts, "down", "critical", 0, "x", true, NULL, "x",
                        100);
    rcd_alerts_sweep (alerts, "down", "gone");
    assert_int_equal (sink.count, 4);
    assert_string_equal (sink.state[3], "resolved");
    assert_string_equal (
        json_string_value (json_object_get (sink.body[3], "summary")), "gone");
    assert_int_equal (rcd_alerts_firing (alerts, "down"), 1);
    assert_int_equal (rcd_alerts_firing (alerts, "other"), 1);
    json_t *list = rcd_alerts_json (alerts);
    assert_int_equal (json_array_size (list), 2);
    assert_string_equal (
        json_string_value (json_object_get (json_array_get (list, 0), "rule")),
        "down");
    json_decref (list);
    s_sink_clear (&sink);
    rcd_alerts_destroy (&alerts);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_metrics_render_help_type_and_samples_in_order),
        cmocka_unit_test (test_metrics_escape_labels_and_help),
        cmocka_unit_test (
            test_metrics_refuse_bad_names_duplicates_and_decreasing_counters),
        cmocka_unit_test (
            test_metrics_series_limit_holds_and_remove_frees_a_slot),
        cmocka_unit_test (test_metrics_histogram_renders_cumulative_buckets),
        cmocka_unit_test (test_window_sums_spans_and_forgets_old_seconds),
        cmocka_unit_test (test_fleet_tracks_liveness_sorted_and_forgets),
        cmocka_unit_test (
            test_fleet_stopped_replica_is_neither_up_nor_down_and_leaves_soon),
        cmocka_unit_test (test_alerts_fire_after_for_once_and_resolve_once),
        cmocka_unit_test (
            test_alerts_sweep_resolves_subjects_no_longer_reported),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

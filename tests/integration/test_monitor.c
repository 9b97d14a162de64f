/*  test_monitor.c - the monitor against real sockets, real HTTP and a
    real PostgreSQL.

    Each test starts the monitor actor in process on free ports and talks
    to it as the other services and operators do: heartbeats and events
    through rcd_events (the real publisher) or a raw PUB socket, alerts on
    a SUB socket, documents over HTTP. Process-level tests run the
    recado-monitor binary.
*/
#include "rcd_events.h"
#include "rcd_monitor_server.h"
#include "rcd_proto.h"
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <czmq.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <cmocka.h>

#define S_WAIT_MS 10000

static char *s_db_url = NULL; /* one fresh database for the program */

/*  One monitor under test. */
typedef struct {
    rcd_monitor_config_t cfg;
    zactor_t *actor;
    char base[64];   /* http://127.0.0.1:<port> */
    char events[64]; /* where services connect */
    char alerts[64]; /* where subscribers connect */
    int port;        /* HTTP port */
} s_monitor_t;

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

/*  Starts the actor with settings from the environment, as main does.
    database_url NULL means the program's test database. */
static void
s_monitor_start (s_monitor_t *mon, int heartbeat_timeout_ms,
                 const char *database_url)
{
    memset (mon, 0, sizeof *mon);
    mon->port = rcd_test_free_port ();
    int events_port = rcd_test_free_port ();
    int alerts_port = rcd_test_free_port ();
    char value[64];
    snprintf (mon->events, sizeof mon->events, "tcp://127.0.0.1:%d",
              events_port);
    snprintf (mon->alerts, sizeof mon->alerts, "tcp://127.0.0.1:%d",
              alerts_port);
    snprintf (mon->base, sizeof mon->base, "http://127.0.0.1:%d", mon->port);
    setenv ("RECADO_EVENTS_BIND", mon->events, 1);
    setenv ("RECADO_ALERTS_ENDPOINT", mon->alerts, 1);
    setenv ("RECADO_MONITOR_BIND", "127.0.0.1", 1);
    snprintf (value, sizeof value, "%d", mon->port);
    setenv ("RECADO_MONITOR_PORT", value, 1);
    snprintf (value, sizeof value, "%d", heartbeat_timeout_ms);
    setenv ("RECADO_HEARTBEAT_TIMEOUT_MS", value, 1);
    setenv ("RECADO_DB_POLL_MS", "200", 1);
    setenv ("RECADO_DB_SLOW_POLL_MS", "200", 1);
    setenv ("DATABASE_URL", database_url ? database_url : s_db_url, 1);
    assert_int_equal (rcd_config_load (rcd_monitor_config_specs, &mon->cfg), 0);
    mon->actor = zactor_new (rcd_monitor_server, &mon->cfg);
    assert_non_null (mon->actor);
}

static void
s_monitor_stop (s_monitor_t *mon)
{
    zactor_destroy (&mon->actor);
    rcd_config_free (rcd_monitor_config_specs, &mon->cfg);
}

/*  GET base+path. Caller frees with rcd_test_http_free. */
static rcd_test_http_t
s_get (const s_monitor_t *mon, const char *path)
{
    char url[128];
    snprintf (url, sizeof url, "%s%s", mon->base, path);
    return rcd_test_http ("GET", url, NULL, NULL, NULL);
}

/*  Value of one exact series ("name{labels}") in a /metrics text, or NAN
    when absent. */
static double
s_series_value (const char *text, const char *series)
{
    size_t n = strlen (series);
    for (const char *line = text; line && *line;) {
        if (strncmp (line, series, n) == 0 && line[n] == ' ')
            return strtod (line + n + 1, NULL);
        line = strchr (line, '\n');
        if (line)
            line++;
    }
    return NAN;
}

static double
s_metric (const s_monitor_t *mon, const char *series)
{
    rcd_test_http_t res = s_get (mon, "/metrics");
    double value = res.status == 200 ? s_series_value (res.body, series) : NAN;
    rcd_test_http_free (&res);
    return value;
}

/*  Publishers whose heartbeats a wait keeps going (every 100 ms): a
    replica must stay alive while the test polls. */
typedef struct {
    rcd_events_t *events[6]; /* real publishers; NULL slots unused */
    zsock_t *raw;            /* optional raw PUB beating as raw/raw-1 */
    int64_t last;            /* last beat, monotonic ms */
    uint64_t raw_seq;        /* raw heartbeat sequence */
} s_pumps_t;

static void
s_pumps_beat (s_pumps_t *pumps)
{
    if (!pumps || s_now_ms () - pumps->last < 100)
        return;
    for (size_t i = 0; i < 6; i++)
        if (pumps->events[i])
            rcd_events_heartbeat (pumps->events[i], "active");
    if (pumps->raw) {
        rcd_heartbeat_t hb = {.service = "raw",
                              .replica = "raw-1",
                              .seq = ++pumps->raw_seq,
                              .uptime_ms = 1};
        rcd_heartbeat_send (&hb, pumps->raw);
    }
    pumps->last = s_now_ms ();
}

typedef struct {
    const s_monitor_t *mon;
    const char *series;
    double expected;
    s_pumps_t *pumps;
} s_wait_t;

static bool
s_metric_reached (void *arg)
{
    s_wait_t *w = arg;
    s_pumps_beat (w->pumps);
    return s_metric (w->mon, w->series) == w->expected;
}

/*  Waits for a series to show expected, beating pumps meanwhile. */
static bool
s_wait_metric (const s_monitor_t *mon, const char *series, double expected,
               s_pumps_t *pumps)
{
    s_wait_t w = {mon, series, expected, pumps};
    bool ok = rcd_test_wait_until (s_metric_reached, &w, S_WAIT_MS);
    if (!ok)
        print_error ("%s is %g, expected %g\n", series, s_metric (mon, series),
                     expected);
    return ok;
}

/*  GET a JSON document. Caller owns the result. */
static json_t *
s_get_json (const s_monitor_t *mon, const char *path, long *status)
{
    rcd_test_http_t res = s_get (mon, path);
    if (status)
        *status = res.status;
    json_t *json = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    return json;
}

/*  ---- Prometheus text format checks ---------------------------------- */

static bool
s_name_ok (const char *name, size_t n, bool label)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     c == '_' || (!label && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

#define S_MAX_FAMILIES 64

/*  What the checker knows of one family. */
typedef struct {
    char name[128];
    bool help, type, samples, closed;
    bool histogram; /* samples are <name>_bucket, _sum and _count */
} s_family_t;

static s_family_t *
s_family (s_family_t *families, size_t *count, const char *name, size_t n)
{
    for (size_t i = 0; i < *count; i++)
        if (strlen (families[i].name) == n &&
            strncmp (families[i].name, name, n) == 0)
            return &families[i];
    assert_true (*count < S_MAX_FAMILIES);
    assert_true (n < sizeof families[0].name);
    s_family_t *f = &families[(*count)++];
    memset (f, 0, sizeof *f);
    memcpy (f->name, name, n);
    return f;
}

/*  Parses a label set starting after '{'; returns the position after
    '}' or NULL when malformed. */
static const char *
s_parse_labels (const char *p)
{
    if (*p == '}')
        return p + 1;
    while (true) {
        const char *start = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               (*p >= '0' && *p <= '9') || *p == '_')
            p++;
        if (!s_name_ok (start, (size_t)(p - start), true) || *p++ != '=')
            return NULL;
        if (*p++ != '"')
            return NULL;
        while (*p != '"') {
            if (*p == 0 || *p == '\n')
                return NULL;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    return NULL;
            }
            p++;
        }
        p++;
        if (*p == '}')
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static bool
s_value_ok (const char *text)
{
    if (!strcmp (text, "NaN") || !strcmp (text, "+Inf") ||
        !strcmp (text, "-Inf"))
        return true;
    char *end = NULL;
    strtod (text, &end);
    return end != text && *end == 0;
}

/*  Checks a whole exposition: every line well formed, HELP and TYPE
    once each and before the family's samples, families contiguous,
    no series twice, every family with HELP and TYPE. */
static void
s_check_exposition (const char *text)
{
    s_family_t families[S_MAX_FAMILIES];
    size_t count = 0;
    s_family_t *current = NULL;
    zhashx_t *seen = zhashx_new ();
    assert_true (strlen (text) > 0 && text[strlen (text) - 1] == '\n');
    char *copy = strdup (text);
    char *save = NULL;
    for (char *line = strtok_r (copy, "\n", &save); line;
         line = strtok_r (NULL, "\n", &save)) {
        if (line[0] == '#') {
            bool help = strncmp (line, "# HELP ", 7) == 0;
            bool type = strncmp (line, "# TYPE ", 7) == 0;
            if (!help && !type)
                fail_msg ("unexpected comment: %s", line);
            const char *name = line + 7;
            size_t n = strcspn (name, " ");
            if (!s_name_ok (name, n, false) || name[n] != ' ')
                fail_msg ("bad metric name: %s", line);
            s_family_t *f = s_family (families, &count, name, n);
            if (f->samples)
                fail_msg ("HELP/TYPE after samples: %s", line);
            if (help) {
                if (f->help)
                    fail_msg ("HELP twice: %s", line);
                f->help = true;
                for (const char *q = name + n + 1; *q; q++)
                    if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
                        fail_msg ("bad escape in HELP: %s", line);
                    else if (*q == '\\')
                        q++;
            }
            else {
                const char *t = name + n + 1;
                if (f->type)
                    fail_msg ("TYPE twice: %s", line);
                static const char *const types[] = {
                    "counter", "gauge", "histogram", "summary", "untyped"};
                bool known = false;
                for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
                    known = known || strcmp (t, types[i]) == 0;
                if (!known)
                    fail_msg ("bad TYPE: %s", line);
                f->type = true;
                f->histogram = strcmp (t, "histogram") == 0;
            }
            if (current && current != f)
                current->closed = true;
            current = f;
            continue;
        }
        size_t n = strspn (line, "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
        if (!s_name_ok (line, n, false))
            fail_msg ("bad sample name: %s", line);
        const char *p = line + n;
        if (*p == '{') {
            p = s_parse_labels (p + 1);
            if (!p)
                fail_msg ("bad labels: %s", line);
        }
        if (*p != ' ' || !s_value_ok (p + 1))
            fail_msg ("bad sample value: %s", line);
        char series[1024];
        snprintf (series, sizeof series, "%.*s", (int)(p - line), line);
        if (zhashx_lookup (seen, series))
            fail_msg ("series twice: %s", line);
        zhashx_insert (seen, series, (void *)1);
        /* a histogram's samples belong to the family without suffix */
        size_t base = n;
        static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t len = strlen (suffixes[i]);
            if (n > len && strncmp (line + n - len, suffixes[i], len) == 0) {
                for (size_t h = 0; h < count; h++)
                    if (families[h].histogram &&
                        strlen (families[h].name) == n - len &&
                        strncmp (families[h].name, line, n - len) == 0)
                        base = n - len;
            }
        }
        s_family_t *f = s_family (families, &count, line, base);
        if (!f->help || !f->type)
            fail_msg ("sample without HELP and TYPE: %s", line);
        if (f->closed || (current && current != f))
            fail_msg ("family not contiguous: %s", line);
        f->samples = true;
        current = f;
    }
    for (size_t i = 0; i < count; i++)
        if (!families[i].help || !families[i].type)
            fail_msg ("family %s lacks HELP or TYPE", families[i].name);
    free (copy);
    zhashx_destroy (&seen);
}

/*  ---- tests ----------------------------------------------------------- */

/*  Counters from events and liveness from heartbeats reach /metrics,
    every line of which is valid exposition text; /health lists the
    service with its replica. */
static void
test_events_and_heartbeats_reach_metrics_and_health (void **state)
{
    (void)state;
    s_monitor_t mon;
    s_monitor_start (&mon, 10000, NULL);
    rcd_events_t *sched = rcd_events_new (mon.events, "scheduler", "sched-1");
    rcd_events_t *sender = rcd_events_new (mon.events, "sender", "send-1");
    assert_non_null (sched);
    assert_non_null (sender);
    s_pumps_t pumps = {.events = {sched, sender}};
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"scheduler\",replica=\"sched-1\"}", 1,
        &pumps));
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"sender\",replica=\"send-1\"}", 1,
        &pumps));

    /* both connections are up: events sent now are not lost */
    assert_int_equal (rcd_events_emit (sender, "message.sent", 3, 1, 0, NULL),
                      0);
    assert_int_equal (rcd_events_emit (sender, "message.sent", 4, 2, 0, NULL),
                      0);
    assert_int_equal (
        rcd_events_emit (sender, "message.failed", 2, 1, 0, "gateway 400"), 0);
    assert_int_equal (rcd_events_emit (sched, "claim.batch", 5, 0, 0, NULL), 0);
    assert_int_equal (
        rcd_events_emit (sender, "odd\"kind\\path\nx", 1, 0, 0, NULL), 0);
    /* request times: summed per second, and (when a sender buckets them)
       per bucket into the histogram */
    assert_int_equal (
        rcd_events_emit (sender, "send.latency_us", 3, 0, 150000, NULL), 0);
    assert_int_equal (rcd_events_emit (sender, "send.latency_bucket", 2, 0,
                                       30000, "le_us=25000"),
                      0);
    assert_int_equal (rcd_events_emit (sender, "send.latency_bucket", 1, 0,
                                       120000, "le_us=+Inf"),
                      0);
    assert_int_equal (
        rcd_events_emit (sender, "send.latency_bucket", 1, 0, 1, "le_us=x"), 0);
    assert_true (s_wait_metric (&mon, "recado_messages_total{status=\"sent\"}",
                                7, &pumps));
    assert_true (s_wait_metric (
        &mon, "recado_messages_total{status=\"failed\"}", 2, &pumps));
    assert_true (s_wait_metric (
        &mon, "recado_events_total{service=\"sender\",kind=\"message.sent\"}",
        7, &pumps));
    assert_true (s_wait_metric (
        &mon, "recado_events_total{service=\"scheduler\",kind=\"claim.batch\"}",
        5, &pumps));
    /* label values are escaped per the format */
    assert_true (s_wait_metric (&mon,
                                "recado_events_total{service=\"sender\",kind="
                                "\"odd\\\"kind\\\\path\\nx\"}",
                                1, &pumps));
    assert_true (
        s_metric (&mon, "recado_frames_received_total{type=\"event\"}") >= 5);
    assert_true (s_wait_metric (&mon, "recado_send_requests_total", 3, &pumps));
    assert_true (fabs (s_metric (&mon, "recado_send_request_seconds_total") -
                       0.15) < 1e-9);
    assert_true (
        s_wait_metric (&mon, "recado_send_latency_seconds_count", 3, &pumps));
    assert_true (
        s_metric (&mon, "recado_send_latency_seconds_bucket{le=\"0.01\"}") ==
        0);
    assert_true (
        s_metric (&mon, "recado_send_latency_seconds_bucket{le=\"0.025\"}") ==
        2);
    assert_true (
        s_metric (&mon, "recado_send_latency_seconds_bucket{le=\"60\"}") == 2);
    assert_true (
        s_metric (&mon, "recado_send_latency_seconds_bucket{le=\"+Inf\"}") ==
        3);
    assert_true (fabs (s_metric (&mon, "recado_send_latency_seconds_sum") -
                       0.15) < 1e-9);
    assert_true (s_wait_metric (
        &mon, "recado_monitor_dropped_total{reason=\"bad_event\"}", 1, &pumps));
    double age = s_metric (&mon, "recado_heartbeat_age_seconds{service="
                                 "\"scheduler\",replica=\"sched-1\"}");
    assert_true (age >= 0 && age < 5);

    /* content type and format of the whole exposition */
    char url[128];
    snprintf (url, sizeof url, "%s/metrics", mon.base);
    CURL *curl = curl_easy_init ();
    FILE *sink = fopen ("/dev/null", "w");
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, sink);
    assert_int_equal (curl_easy_perform (curl), CURLE_OK);
    char *type = NULL;
    curl_easy_getinfo (curl, CURLINFO_CONTENT_TYPE, &type);
    assert_non_null (type);
    assert_string_equal (type, "text/plain; version=0.0.4");
    curl_easy_cleanup (curl);
    fclose (sink);
    rcd_test_http_t res = s_get (&mon, "/metrics");
    assert_int_equal (res.status, 200);
    s_check_exposition (res.body);
    const char *const names[] = {"recado_events_total",
                                 "recado_messages_total",
                                 "recado_frames_received_total",
                                 "recado_frames_malformed_total",
                                 "recado_service_up",
                                 "recado_heartbeat_age_seconds",
                                 "recado_messages",
                                 "recado_oldest_due_seconds",
                                 "recado_leases_expired",
                                 "recado_dead_letters",
                                 "recado_database_up",
                                 "recado_alerts_firing",
                                 "recado_send_latency_seconds",
                                 "recado_claim_to_outcome_seconds",
                                 "recado_window_messages",
                                 "recado_messages_due",
                                 "recado_leases_stuck",
                                 "recado_scheduler_tick_age_seconds"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char type_line[128];
        snprintf (type_line, sizeof type_line, "# TYPE %s ", names[i]);
        if (!strstr (res.body, type_line))
            fail_msg ("missing family %s", names[i]);
    }
    rcd_test_http_free (&res);

    /* /health lists each service that spoke, with its replica */
    json_t *health = s_get_json (&mon, "/health", NULL);
    assert_non_null (health);
    json_t *sc = json_object_get (json_object_get (health, "components"),
                                  "service:scheduler");
    assert_non_null (sc);
    assert_string_equal (json_string_value (json_object_get (sc, "status")),
                         "healthy");
    json_t *replica = json_array_get (json_object_get (sc, "replicas"), 0);
    assert_string_equal (
        json_string_value (json_object_get (replica, "replica")), "sched-1");
    assert_string_equal (json_string_value (json_object_get (replica, "state")),
                         "up");
    assert_true (json_is_integer (json_object_get (replica, "age_ms")));
    assert_non_null (json_object_get (json_object_get (health, "components"),
                                      "service:sender"));
    json_decref (health);

    rcd_events_destroy (&sender);
    rcd_events_destroy (&sched);
    s_monitor_stop (&mon);
}

/*  Gauges read from PostgreSQL follow the messages table, /queue-stats
    shows counts by status and priority, and the monitor changes nothing
    in the database. */
static void
test_database_gauges_and_queue_stats_follow_messages (void **state)
{
    (void)state;
    char *tenant =
        rcd_test_sql (s_db_url,
                      "INSERT INTO tenants (name, api_key_hash, webhook_token)"
                      " VALUES ('monitor', '\\x01', 'token') RETURNING id",
                      0, NULL);
    assert_non_null (tenant);
    const char *p[] = {tenant};
    free (rcd_test_sql (
        s_db_url,
        "INSERT INTO instances (tenant_id, name, provider, base_url,"
        " rate_per_second, hourly_cap, hour_start, hour_used)"
        " VALUES ($1, 'inst-a', 'evolution', 'http://127.0.0.1:1', 10, 100,"
        " date_trunc('hour', now(), 'UTC'), 7)",
        1, p));
    free (rcd_test_sql (
        s_db_url,
        "INSERT INTO billing_cycles (tenant_id, external_billing_id, phone,"
        " amount_cents, due_date, offsets_days) VALUES"
        " ($1, 'old', '+5511912345678', 100, current_date, '{0}'),"
        " ($1, 'new', '+5511912345678', 100, current_date, '{0}')",
        1, p));
    free (rcd_test_sql (s_db_url,
                        "UPDATE billing_cycles SET created_at = now() -"
                        " interval '2 hours' WHERE external_billing_id = 'old'",
                        0, NULL));
    free (rcd_test_sql (
        s_db_url,
        "INSERT INTO webhook_events (tenant_id, instance_id, provider, kind,"
        " event_key, payload, outcome) VALUES"
        " ($1, 1, 'evolution', 'receipt', 'k1', '{}', 'unmatched'),"
        " ($1, 1, 'evolution', 'receipt', 'k2', '{}', 'applied')",
        1, p));
    free (rcd_test_sql (
        s_db_url,
        "INSERT INTO messages (tenant_id, to_phone, body, priority, status,"
        " send_at, lease_until, attempts) VALUES"
        " ($1, '+5511912345678', 'a', 0, 'pending',"
        "  now() - interval '90 seconds', NULL, 0),"
        " ($1, '+5511912345678', 'b', 2, 'pending',"
        "  now() + interval '1 hour', NULL, 0),"
        " ($1, '+5511912345678', 'c', 1, 'sending',"
        "  now() - interval '5 minutes', now() - interval '1 minute', 1),"
        " ($1, '+5511912345678', 'd', 1, 'sending',"
        "  now(), now() + interval '1 hour', 1),"
        " ($1, '+5511912345678', 'e', 1, 'sent', now(), NULL, 1)",
        1, p));
    free (rcd_test_sql (s_db_url,
                        "INSERT INTO dead_letters (tenant_id, message_id,"
                        " reason, attempts) VALUES ($1, 999, 'test', 5)",
                        1, p));
    const char *fingerprint_sql =
        "SELECT md5(string_agg(m::text, ',' ORDER BY id)) FROM messages m";
    char *before = rcd_test_sql (s_db_url, fingerprint_sql, 0, NULL);

    s_monitor_t mon;
    s_monitor_start (&mon, 10000, NULL);
    assert_true (s_wait_metric (&mon, "recado_database_up", 1, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"pending\"}", 2, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"sending\"}", 2, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"sent\"}", 1, NULL));
    assert_true (s_wait_metric (&mon, "recado_leases_expired", 1, NULL));
    assert_true (s_wait_metric (&mon, "recado_dead_letters", 1, NULL));
    double oldest = s_metric (&mon, "recado_oldest_due_seconds");
    assert_true (oldest >= 90 && oldest < 600);
    assert_true (s_wait_metric (&mon, "recado_messages_due", 1, NULL));
    assert_true (s_wait_metric (&mon, "recado_billing_cycles_created_last_hour",
                                1, NULL));
    assert_true (s_wait_metric (
        &mon, "recado_webhook_events_unmatched_last_hour", 1, NULL));
    char *inst_id = rcd_test_sql (
        s_db_url, "SELECT id FROM instances WHERE name = 'inst-a'", 0, NULL);
    char series[160];
    snprintf (series, sizeof series,
              "recado_instance_hour_used{instance=\"%s\",tenant=\"%s\","
              "name=\"inst-a\"}",
              inst_id, tenant);
    assert_true (s_wait_metric (&mon, series, 7, NULL));
    snprintf (series, sizeof series,
              "recado_instance_hourly_cap{instance=\"%s\",tenant=\"%s\","
              "name=\"inst-a\"}",
              inst_id, tenant);
    assert_true (s_metric (&mon, series) == 100);
    free (inst_id);

    long status = 0;
    json_t *qs = s_get_json (&mon, "/queue-stats", &status);
    assert_int_equal (status, 200);
    assert_non_null (qs);
    assert_true (json_is_true (json_object_get (qs, "database_up")));
    json_t *by_status = json_object_get (qs, "by_status");
    assert_int_equal (
        json_integer_value (json_object_get (by_status, "pending")), 2);
    assert_int_equal (
        json_integer_value (json_object_get (by_status, "sending")), 2);
    assert_int_equal (
        json_integer_value (json_object_get (by_status, "failed")), 0);
    json_t *by_priority = json_object_get (qs, "by_priority");
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (by_priority, "high"), "pending")),
                      1);
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (by_priority, "low"), "pending")),
                      1);
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (by_priority, "normal"), "sending")),
                      2);
    assert_true (json_real_value (json_object_get (qs, "oldest_due_seconds")) >=
                 90);
    assert_int_equal (
        json_integer_value (json_object_get (qs, "leases_expired")), 1);
    assert_int_equal (json_integer_value (json_object_get (qs, "dead_letters")),
                      1);
    json_t *instances = json_object_get (qs, "instances");
    assert_int_equal (json_array_size (instances), 1);
    assert_string_equal (json_string_value (json_object_get (
                             json_array_get (instances, 0), "name")),
                         "inst-a");
    assert_null (json_object_get (json_array_get (instances, 0), "api_key"));
    assert_int_equal (json_integer_value (json_object_get (
                          json_array_get (instances, 0), "hour_used")),
                      7);
    assert_int_equal (json_integer_value (json_object_get (
                          json_array_get (instances, 0), "hourly_cap")),
                      100);
    assert_true (json_is_null (
        json_object_get (json_array_get (instances, 0), "daily_cap")));
    assert_int_equal (json_integer_value (json_object_get (qs, "due")), 1);
    assert_int_equal (json_integer_value (json_object_get (
                          qs, "billing_cycles_created_last_hour")),
                      1);
    assert_true (json_is_string (json_object_get (qs, "polled_at")));
    json_decref (qs);

    /* a row changing shows at the next poll */
    free (rcd_test_sql (s_db_url,
                        "UPDATE messages SET status = 'failed'"
                        " WHERE body = 'e'",
                        0, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"failed\"}", 1, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"sent\"}", 0, NULL));

    /* several polls later nothing changed but our own update */
    free (rcd_test_sql (s_db_url,
                        "UPDATE messages SET status = 'sent'"
                        " WHERE body = 'e'",
                        0, NULL));
    assert_true (
        s_wait_metric (&mon, "recado_messages{status=\"sent\"}", 1, NULL));
    char *after = rcd_test_sql (s_db_url, fingerprint_sql, 0, NULL);
    assert_string_equal (before, after);
    free (after);
    free (before);

    s_monitor_stop (&mon);
    free (rcd_test_sql (s_db_url, "DELETE FROM messages", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM dead_letters", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM webhook_events", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM billing_cycles", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM instances", 0, NULL));
    free (tenant);
}

/*  Sends raw frames on a socket. */
static void
s_send_frames (zsock_t *sock, int count, ...)
{
    va_list args;
    va_start (args, count);
    zmsg_t *msg = zmsg_new ();
    for (int i = 0; i < count; i++) {
        const char *data = va_arg (args, const char *);
        size_t size = va_arg (args, size_t);
        zmsg_addmem (msg, data, size);
    }
    va_end (args);
    assert_int_equal (zmsg_send (&msg, sock), 0);
}

/*  Garbage on the events socket is counted and dropped; well-formed
    frames after it are still handled. */
static void
test_malformed_frames_are_counted_and_dropped (void **state)
{
    (void)state;
    s_monitor_t mon;
    s_monitor_start (&mon, 10000, NULL);
    zsock_t *raw = zsock_new_pub (NULL);
    assert_non_null (raw);
    assert_int_equal (zsock_connect (raw, "%s", mon.events), 0);
    s_pumps_t pumps = {.raw = raw};
    /* the raw socket's connection is up once its heartbeats count */
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"raw\",replica=\"raw-1\"}", 1,
        &pumps));

    rcd_event_t ev = {.service = "raw",
                      .replica = "raw-1",
                      .kind = "message.sent",
                      .count = 1};
    char *body = NULL;
    size_t size = 0;
    assert_int_equal (rcd_event_encode (&ev, &body, &size), 0);
    s_send_frames (raw, 1, "garbage", (size_t)7);
    s_send_frames (raw, 2, "event", (size_t)5, "\x01\x02", (size_t)2);
    s_send_frames (raw, 2, "bogus", (size_t)5, body, size);
    s_send_frames (raw, 3, "event", (size_t)5, body, size, "x", (size_t)1);
    s_send_frames (raw, 2, "event", (size_t)5, body, size / 2);
    /* the same event with schema version 2: an unknown version */
    assert_int_equal ((unsigned char)body[1], RCD_PROTO_VERSION);
    body[1] = RCD_PROTO_VERSION + 1;
    s_send_frames (raw, 2, "event", (size_t)5, body, size);
    body[1] = RCD_PROTO_VERSION;
    assert_true (
        s_wait_metric (&mon, "recado_frames_malformed_total", 6, &pumps));
    assert_true (s_metric (&mon, "recado_messages_total{status=\"sent\"}") ==
                 0);

    /* and the monitor goes on */
    s_send_frames (raw, 2, "event", (size_t)5, body, size);
    assert_true (s_wait_metric (&mon, "recado_messages_total{status=\"sent\"}",
                                1, &pumps));
    assert_true (
        s_wait_metric (&mon, "recado_frames_malformed_total", 6, &pumps));
    rcd_test_http_t res = s_get (&mon, "/metrics");
    s_check_exposition (res.body);
    rcd_test_http_free (&res);
    free (body);
    zsock_destroy (&raw);
    s_monitor_stop (&mon);
}

/*  Receives one alert (topic + JSON body) within timeout_ms while
    beating pumps. Returns NULL on timeout; *topic_p gets the topic. */
static json_t *
s_recv_alert (zsock_t *sub, char **topic_p, int timeout_ms, s_pumps_t *pumps)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    zsock_set_rcvtimeo (sub, 20);
    while (s_now_ms () < deadline) {
        s_pumps_beat (pumps);
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg)
            continue;
        assert_int_equal (zmsg_size (msg), 2);
        *topic_p = zmsg_popstr (msg);
        char *text = zmsg_popstr (msg);
        zmsg_destroy (&msg);
        json_error_t error;
        json_t *body = json_loads (text, 0, &error);
        if (!body)
            fail_msg ("alert body is not JSON: %s", text);
        free (text);
        return body;
    }
    return NULL;
}

static void
s_assert_alert (json_t *body, const char *state, const char *service,
                const char *replica)
{
    assert_non_null (body);
    assert_string_equal (json_string_value (json_object_get (body, "rule")),
                         "service_down");
    assert_string_equal (json_string_value (json_object_get (body, "severity")),
                         "critical");
    assert_string_equal (json_string_value (json_object_get (body, "state")),
                         state);
    const char *since = json_string_value (json_object_get (body, "since"));
    assert_non_null (since);
    assert_true (strlen (since) >= 20 && since[10] == 'T');
    assert_non_null (json_string_value (json_object_get (body, "summary")));
    json_t *labels = json_object_get (body, "labels");
    assert_string_equal (
        json_string_value (json_object_get (labels, "service")), service);
    assert_string_equal (
        json_string_value (json_object_get (labels, "replica")), replica);
}

typedef struct {
    const s_monitor_t *mon;
    size_t expected;
    s_pumps_t *pumps;
} s_alerts_wait_t;

static bool
s_alerts_count_is (void *arg)
{
    s_alerts_wait_t *w = arg;
    s_pumps_beat (w->pumps);
    json_t *alerts = s_get_json (w->mon, "/alerts", NULL);
    bool ok = json_is_array (alerts) && json_array_size (alerts) == w->expected;
    json_decref (alerts);
    return ok;
}

/*  A replica that goes silent fires service_down once; when it beats
    again the alert resolves once. A replica that said "stopped" before
    going silent raises nothing. */
static void
test_silent_replica_fires_once_and_resolves_once (void **state)
{
    (void)state;
    const int timeout_ms = 400;
    s_monitor_t mon;
    s_monitor_start (&mon, timeout_ms, NULL);
    zsock_t *sub = zsock_new_sub (mon.alerts, "alert.");
    assert_non_null (sub);
    rcd_events_t *a = rcd_events_new (mon.events, "scheduler", "sched-A");
    rcd_events_t *b = rcd_events_new (mon.events, "sender", "send-B");
    s_pumps_t both = {.events = {a, b}};
    s_pumps_t only_a = {.events = {a}};
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"scheduler\",replica=\"sched-A\"}", 1,
        &both));
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"sender\",replica=\"send-B\"}", 1,
        &both));

    /* B leaves cleanly, then A falls silent */
    assert_int_equal (rcd_events_heartbeat (b, "stopped"), 0);
    assert_true (s_wait_metric (
        &mon, "recado_service_up{service=\"sender\",replica=\"send-B\"}", 0,
        &only_a));
    char *topic = NULL;
    json_t *body = s_recv_alert (sub, &topic, S_WAIT_MS, NULL);
    assert_non_null (body);
    assert_string_equal (topic, "alert.critical.service_down");
    s_assert_alert (body, "firing", "scheduler", "sched-A");
    json_decref (body);
    zstr_free (&topic);

    /* /alerts lists it; /health shows the replica down */
    s_alerts_wait_t w = {&mon, 1, NULL};
    assert_true (rcd_test_wait_until (s_alerts_count_is, &w, S_WAIT_MS));
    json_t *alerts = s_get_json (&mon, "/alerts", NULL);
    s_assert_alert (json_array_get (alerts, 0), "firing", "scheduler",
                    "sched-A");
    json_decref (alerts);
    long status = 0;
    json_t *health = s_get_json (&mon, "/health", &status);
    assert_int_equal (status, 503);
    assert_string_equal (json_string_value (json_object_get (health, "status")),
                         "unhealthy");
    json_t *components = json_object_get (health, "components");
    json_t *sc = json_object_get (components, "service:scheduler");
    assert_string_equal (json_string_value (json_object_get (sc, "status")),
                         "unhealthy");
    assert_string_equal (
        json_string_value (json_object_get (
            json_array_get (json_object_get (sc, "replicas"), 0), "state")),
        "down");
    json_decref (health);

    /* once: nothing more while it stays silent (B never fires) */
    body = s_recv_alert (sub, &topic, 3 * timeout_ms, NULL);
    assert_null (body);

    /* it comes back: resolved, once */
    body = s_recv_alert (sub, &topic, S_WAIT_MS, &only_a);
    assert_non_null (body);
    assert_string_equal (topic, "alert.critical.service_down");
    s_assert_alert (body, "resolved", "scheduler", "sched-A");
    json_decref (body);
    zstr_free (&topic);
    body = s_recv_alert (sub, &topic, 3 * timeout_ms, &only_a);
    assert_null (body);
    w.expected = 0;
    w.pumps = &only_a;
    assert_true (rcd_test_wait_until (s_alerts_count_is, &w, S_WAIT_MS));
    assert_true (s_wait_metric (
        &mon,
        "recado_alerts_published_total{rule=\"service_down\",state=\"firing\"}",
        1, &only_a));
    assert_true (s_wait_metric (&mon,
                                "recado_alerts_published_total{rule=\"service_"
                                "down\",state=\"resolved\"}",
                                1, &only_a));
    assert_true (s_wait_metric (
        &mon, "recado_alerts_firing{rule=\"service_down\"}", 0, &only_a));

    rcd_events_destroy (&b);
    rcd_events_destroy (&a);
    zsock_destroy (&sub);
    s_monitor_stop (&mon);
}

typedef struct {
    const s_monitor_t *mon;
    const char *status;
    s_pumps_t *pumps;
} s_health_wait_t;

static bool
s_health_is (void *arg)
{
    s_health_wait_t *w = arg;
    s_pumps_beat (w->pumps);
    json_t *health = s_get_json (w->mon, "/health", NULL);
    const char *status = json_string_value (json_object_get (health, "status"));
    bool ok = status && strcmp (status, w->status) == 0;
    json_decref (health);
    return ok;
}

/*  healthy with every core service live and the database up; degraded
    when one of two sender replicas goes silent. */
static void
test_health_is_healthy_then_degraded (void **state)
{
    (void)state;
    s_monitor_t mon;
    s_monitor_start (&mon, 400, NULL);
    rcd_events_t *ing = rcd_events_new (mon.events, "ingestor", "ing-1");
    rcd_events_t *sch = rcd_events_new (mon.events, "scheduler", "sch-1");
    rcd_events_t *s1 = rcd_events_new (mon.events, "sender", "snd-1");
    rcd_events_t *s2 = rcd_events_new (mon.events, "sender", "snd-2");
    rcd_events_t *rec = rcd_events_new (mon.events, "recovery", "rec-1");
    s_pumps_t all = {.events = {ing, sch, s1, s2, rec}};
    s_pumps_t without_s2 = {.events = {ing, sch, s1, rec}};
    s_health_wait_t w = {&mon, "healthy", &all};
    assert_true (rcd_test_wait_until (s_health_is, &w, S_WAIT_MS));
    long status = 0;
    json_t *health = s_get_json (&mon, "/health", &status);
    assert_int_equal (status, 200);
    json_t *db =
        json_object_get (json_object_get (health, "components"), "database");
    assert_string_equal (json_string_value (json_object_get (db, "status")),
                         "healthy");
    json_decref (health);

    w.status = "degraded";
    w.pumps = &without_s2;
    assert_true (rcd_test_wait_until (s_health_is, &w, S_WAIT_MS));
    health = s_get_json (&mon, "/health", &status);
    assert_int_equal (status, 200);
    json_t *sender = json_object_get (json_object_get (health, "components"),
                                      "service:sender");
    assert_string_equal (json_string_value (json_object_get (sender, "status")),
                         "degraded");
    json_t *replicas = json_object_get (sender, "replicas");
    assert_int_equal (json_array_size (replicas), 2);
    assert_string_equal (json_string_value (json_object_get (
                             json_array_get (replicas, 1), "replica")),
                         "snd-2");
    assert_string_equal (json_string_value (json_object_get (
                             json_array_get (replicas, 1), "state")),
                         "down");
    json_decref (health);

    rcd_events_destroy (&rec);
    rcd_events_destroy (&s2);
    rcd_events_destroy (&s1);
    rcd_events_destroy (&sch);
    rcd_events_destroy (&ing);
    s_monitor_stop (&mon);
}

typedef struct {
    const s_monitor_t *mon;
} s_db_down_wait_t;

static bool
s_database_reported_down (void *arg)
{
    s_db_down_wait_t *w = arg;
    json_t *health = s_get_json (w->mon, "/health", NULL);
    json_t *db =
        json_object_get (json_object_get (health, "components"), "database");
    const char *detail = json_string_value (json_object_get (db, "detail"));
    bool ok = detail && strcmp (detail, "not polled yet") != 0;
    json_decref (health);
    return ok;
}

/*  Without a database the monitor keeps serving and says so. */
static void
test_unreachable_database_is_reported_unhealthy (void **state)
{
    (void)state;
    char url[160];
    snprintf (url, sizeof url,
              "host=127.0.0.1 port=%d user=nobody dbname=none"
              " connect_timeout=2",
              rcd_test_free_port ());
    s_monitor_t mon;
    s_monitor_start (&mon, 10000, url);
    s_db_down_wait_t w = {&mon};
    assert_true (rcd_test_wait_until (s_database_reported_down, &w, S_WAIT_MS));
    long status = 0;
    json_t *health = s_get_json (&mon, "/health", &status);
    assert_int_equal (status, 503);
    assert_string_equal (json_string_value (json_object_get (health, "status")),
                         "unhealthy");
    json_t *db =
        json_object_get (json_object_get (health, "components"), "database");
    assert_string_equal (json_string_value (json_object_get (db, "status")),
                         "unhealthy");
    json_decref (health);
    assert_true (s_metric (&mon, "recado_database_up") == 0);
    assert_true (s_metric (&mon, "recado_db_poll_errors_total") >= 1);
    json_t *qs = s_get_json (&mon, "/queue-stats", &status);
    assert_int_equal (status, 200);
    assert_true (json_is_false (json_object_get (qs, "database_up")));
    json_decref (qs);
    s_monitor_stop (&mon);
}

/*  The dashboard is one self-contained page; unknown paths and other
    methods get the JSON errors of API.md. */
static void
test_dashboard_and_http_errors (void **state)
{
    (void)state;
    s_monitor_t mon;
    s_monitor_start (&mon, 10000, NULL);
    rcd_test_http_t res = s_get (&mon, "/");
    assert_int_equal (res.status, 200);
    assert_non_null (strstr (res.body, "<!doctype html>"));
    assert_non_null (strstr (res.body, "queue-stats"));
    assert_non_null (strstr (res.body, "health"));
    assert_non_null (strstr (res.body, "queue-stats"));
    /* nothing fetched from elsewhere: the one <link> is the inline
       favicon that keeps the browser from asking for /favicon.ico */
    assert_null (strstr (res.body, "src=\"http"));
    assert_null (strstr (res.body, "href=\"http"));
    assert_null (strstr (res.body, "src=\"//"));
    assert_null (strstr (res.body, "href=\"//"));
    assert_non_null (strstr (res.body, "<link rel=\"icon\" href=\"data:,\">"));
    rcd_test_http_free (&res);

    res = s_get (&mon, "/nope");
    assert_int_equal (res.status, 404);
    json_t *err = json_loads (res.body, 0, NULL);
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (err, "error"), "code")),
                         "not_found");
    json_decref (err);
    rcd_test_http_free (&res);

    char url[128];
    snprintf (url, sizeof url, "%s/metrics", mon.base);
    res = rcd_test_http ("POST", url, NULL, "{}", NULL);
    assert_int_equal (res.status, 405);
    assert_non_null (strstr (res.body, "\"error\""));
    rcd_test_http_free (&res);

    json_t *alerts = s_get_json (&mon, "/alerts", NULL);
    assert_true (json_is_array (alerts));
    assert_int_equal (json_array_size (alerts), 0);
    json_decref (alerts);
    s_monitor_stop (&mon);
}

/*  ---- campaigns ------------------------------------------------------ */

#define S_ADMIN_KEY "monitor-admin-key"

/*  The campaign series of one campaign ("total" or "remaining"). */
static double
s_campaign_metric (const s_monitor_t *mon, long long id, long long tenant,
                   const char *kind)
{
    char series[160];
    snprintf (series, sizeof series,
              "recado_campaign_messages{campaign_id=\"%lld\","
              "tenant_id=\"%lld\",kind=\"%s\"}",
              id, tenant, kind);
    return s_metric (mon, series);
}

typedef struct {
    const s_monitor_t *mon;
    long long id, tenant;
    const char *state; /* expected; NULL: not listed */
    long long total, remaining;
} s_campaign_wait_t;

/*  The campaign as /queue-stats lists it, or NULL. Borrowed from qs. */
static json_t *
s_listed_campaign (json_t *qs, long long id)
{
    json_t *list = json_object_get (qs, "campaigns");
    size_t i;
    json_t *c;
    json_array_foreach (list, i, c)
    {
        if (json_integer_value (json_object_get (c, "id")) == id)
            return c;
    }
    return NULL;
}

/*  Both /queue-stats and /metrics show the campaign as expected (or
    neither lists it). */
static bool
s_campaign_shown (void *arg)
{
    s_campaign_wait_t *w = arg;
    json_t *qs = s_get_json (w->mon, "/queue-stats", NULL);
    json_t *c = s_listed_campaign (qs, w->id);
    bool json_ok;
    if (!w->state)
        json_ok = qs && json_is_array (json_object_get (qs, "campaigns")) && !c;
    else
        json_ok =
            c &&
            json_integer_value (json_object_get (c, "tenant_id")) ==
                w->tenant &&
            json_is_string (json_object_get (c, "name")) &&
            strcmp (json_string_value (json_object_get (c, "state")),
                    w->state) == 0 &&
            json_integer_value (json_object_get (c, "total")) == w->total &&
            json_integer_value (json_object_get (c, "remaining")) ==
                w->remaining;
    json_decref (qs);
    if (!json_ok)
        return false;
    double total = s_campaign_metric (w->mon, w->id, w->tenant, "total");
    double remaining =
        s_campaign_metric (w->mon, w->id, w->tenant, "remaining");
    if (!w->state)
        return isnan (total) && isnan (remaining);
    return total == (double)w->total && remaining == (double)w->remaining;
}

static void
s_assert_campaign (const s_monitor_t *mon, long long id, long long tenant,
                   const char *state, long long total, long long remaining)
{
    s_campaign_wait_t w = {mon, id, tenant, state, total, remaining};
    if (!rcd_test_wait_until (s_campaign_shown, &w, S_WAIT_MS)) {
        json_t *qs = s_get_json (mon, "/queue-stats", NULL);
        char *text = json_dumps (json_object_get (qs, "campaigns"), 0);
        fail_msg ("campaign %lld not shown as %s %lld/%lld: campaigns %s, "
                  "metric total %g remaining %g",
                  id, state ? state : "(gone)", remaining, total,
                  text ? text : "?",
                  s_campaign_metric (mon, id, tenant, "total"),
                  s_campaign_metric (mon, id, tenant, "remaining"));
    }
}

/*  recado_campaigns{state} and /queue-stats' campaigns_by_state both
    read these counts (draft, scheduled, running, paused, completed,
    cancelled). */
typedef struct {
    const s_monitor_t *mon;
    const long long *counts;
} s_states_wait_t;

static const char *const s_campaign_states[] = {
    "draft", "scheduled", "running", "paused", "completed", "cancelled"};

static bool
s_campaign_states_are (void *arg)
{
    s_states_wait_t *w = arg;
    json_t *qs = s_get_json (w->mon, "/queue-stats", NULL);
    json_t *by = json_object_get (qs, "campaigns_by_state");
    bool ok = json_is_object (by);
    for (size_t i = 0; ok && i < 6; i++) {
        json_t *v = json_object_get (by, s_campaign_states[i]);
        ok = json_is_integer (v) && json_integer_value (v) == w->counts[i];
    }
    json_decref (qs);
    for (size_t i = 0; ok && i < 6; i++) {
        char series[64];
        snprintf (series, sizeof series, "recado_campaigns{state=\"%s\"}",
                  s_campaign_states[i]);
        ok = s_metric (w->mon, series) == (double)w->counts[i];
    }
    return ok;
}

static void
s_assert_campaign_states (const s_monitor_t *mon, long long draft,
                          long long scheduled, long long running,
                          long long paused, long long completed,
                          long long cancelled)
{
    const long long counts[] = {draft,  scheduled, running,
                                paused, completed, cancelled};
    s_states_wait_t w = {mon, counts};
    if (!rcd_test_wait_until (s_campaign_states_are, &w, S_WAIT_MS)) {
        json_t *qs = s_get_json (mon, "/queue-stats", NULL);
        char *text = json_dumps (json_object_get (qs, "campaigns_by_state"), 0);
        fail_msg ("campaigns by state: %s, expected %lld %lld %lld %lld %lld "
                  "%lld",
                  text ? text : "?", draft, scheduled, running, paused,
                  completed, cancelled);
    }
}

/*  What the scheduler and a sender do to n of a campaign's pending
    messages: claimed, then sent. */
static void
s_send_campaign_messages (long long id, int n)
{
    char c[24], k[24];
    snprintf (c, sizeof c, "%lld", id);
    snprintf (k, sizeof k, "%d", n);
    const char *p[] = {c, k};
    free (rcd_test_sql (
        s_db_url,
        "UPDATE messages SET status = 'sending', attempts = attempts + 1,"
        " lease_until = now() + interval '1 minute'"
        " WHERE id IN (SELECT id FROM messages WHERE campaign_id = $1::bigint"
        " AND status = 'pending' ORDER BY id LIMIT $2::int)",
        2, p));
    free (
        rcd_test_sql (s_db_url,
                      "UPDATE messages SET status = 'sent', lease_until = NULL,"
                      " sent_at = now(), updated_at = now()"
                      " WHERE campaign_id = $1::bigint AND status = 'sending'",
                      1, p));
}

/*  POSTs a campaign of count contacts through the ingestor; answers its
    id. */
static long long
s_post_campaign (int port, const char *key, const char *name, int count)
{
    char body[2048];
    size_t len = (size_t)snprintf (
        body, sizeof body,
        "{\"name\":\"%s\",\"template\":\"promo\",\"audience\":[", name);
    for (int i = 0; i < count; i++)
        len += (size_t)snprintf (body + len, sizeof body - len,
                                 "%s{\"phone\":\"+55119870%05d\","
                                 "\"vars\":{\"name\":\"C%d\"}}",
                                 i ? "," : "", i, i);
    snprintf (body + len, sizeof body - len, "]}");
    json_t *a =
        rcd_test_api_expect (port, 201, "POST", "/v1/campaigns", key, body);
    long long id = json_integer_value (json_object_get (a, "id"));
    json_decref (a);
    assert_true (id > 0);
    return id;
}

static void
s_campaign_verb (int port, const char *key, long long id, const char *verb)
{
    char path[80];
    snprintf (path, sizeof path, "/v1/campaigns/%lld/%s", id, verb);
    json_decref (rcd_test_api_expect (port, 200, "POST", path, key, NULL));
}

/*  Campaigns made through the real ingestor show in /queue-stats and
    /metrics with their exact total and remaining, follow sends, pause
    and the end of the campaign, and vanish once no longer open. */
static void
test_campaign_progress_follows_the_campaigns (void **state)
{
    (void)state;
    rcd_test_ingestor_t ing;
    rcd_test_ingestor_start_on (&ing, s_db_url, S_ADMIN_KEY, 2, 0, 0);
    long long tenant = 0;
    char *key =
        rcd_test_create_tenant (ing.port, S_ADMIN_KEY, "campaigns", &tenant);
    json_decref (rcd_test_api_expect (ing.port, 200, "PUT",
                                      "/v1/templates/promo", key,
                                      "{\"variations\":[\"Oi {{name}}\"]}"));

    s_monitor_t mon;
    s_monitor_start (&mon, 10000, NULL);
    assert_true (s_wait_metric (&mon, "recado_database_up", 1, NULL));
    /* none yet: every state reads 0, the list is empty */
    s_assert_campaign_states (&mon, 0, 0, 0, 0, 0, 0);
    json_t *qs = s_get_json (&mon, "/queue-stats", NULL);
    assert_true (json_is_array (json_object_get (qs, "campaigns")));
    assert_int_equal (json_array_size (json_object_get (qs, "campaigns")), 0);
    json_decref (qs);

    long long spring = s_post_campaign (ing.port, key, "spring", 7);
    long long summer = s_post_campaign (ing.port, key, "ver\u00e3o", 2);
    s_assert_campaign (&mon, spring, tenant, "running", 7, 7);
    s_assert_campaign (&mon, summer, tenant, "running", 2, 2);
    s_assert_campaign_states (&mon, 0, 0, 2, 0, 0, 0);
    /* the newest first, with its name (UTF-8 kept whole) */
    qs = s_get_json (&mon, "/queue-stats", NULL);
    json_t *first = json_array_get (json_object_get (qs, "campaigns"), 0);
    assert_int_equal (json_integer_value (json_object_get (first, "id")),
                      summer);
    assert_string_equal (json_string_value (json_object_get (first, "name")),
                         "ver\u00e3o");
    json_decref (qs);
    /* the exposition stays valid with campaign series in it */
    rcd_test_http_t res = s_get (&mon, "/metrics");
    assert_int_equal (res.status, 200);
    s_check_exposition (res.body);
    rcd_test_http_free (&res);

    /* three sent: 4 remaining of 7 */
    s_send_campaign_messages (spring, 3);
    s_assert_campaign (&mon, spring, tenant, "running", 7, 4);

    /* paused: its 4 open messages are paused, still remaining */
    s_campaign_verb (ing.port, key, spring, "pause");
    s_assert_campaign (&mon, spring, tenant, "paused", 7, 4);
    s_assert_campaign_states (&mon, 0, 0, 1, 1, 0, 0);
    s_campaign_verb (ing.port, key, spring, "resume");
    s_assert_campaign (&mon, spring, tenant, "running", 7, 4);
    s_assert_campaign_states (&mon, 0, 0, 2, 0, 0, 0);

    /* summer sent whole: completed once read (rcd_campaign_complete),
       gone from the open list and from /metrics */
    s_send_campaign_messages (summer, 2);
    s_assert_campaign (&mon, summer, tenant, "running", 2, 0);
    char path[64];
    snprintf (path, sizeof path, "/v1/campaigns/%lld", summer);
    json_t *got = rcd_test_api_expect (ing.port, 200, "GET", path, key, NULL);
    assert_string_equal (rcd_test_str (got, "state"), "completed");
    json_decref (got);
    s_assert_campaign (&mon, summer, tenant, NULL, 0, 0);
    s_assert_campaign_states (&mon, 0, 0, 1, 0, 1, 0);

    /* spring cancelled: gone too */
    s_campaign_verb (ing.port, key, spring, "cancel");
    s_assert_campaign (&mon, spring, tenant, NULL, 0, 0);
    s_assert_campaign_states (&mon, 0, 0, 0, 0, 1, 1);
    qs = s_get_json (&mon, "/queue-stats", NULL);
    assert_int_equal (json_array_size (json_object_get (qs, "campaigns")), 0);
    /* the documents' other fields are still there */
    assert_non_null (json_object_get (qs, "by_status"));
    assert_non_null (json_object_get (qs, "instances"));
    json_decref (qs);

    s_monitor_stop (&mon);
    rcd_test_ingestor_stop (&ing);
    free (key);
    free (rcd_test_sql (s_db_url, "DELETE FROM message_history", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM messages", 0, NULL));
    free (rcd_test_sql (s_db_url, "DELETE FROM campaigns", 0, NULL));
}

/*  A port already taken is a FATAL start-up failure, not a hang. */
static void
test_taken_http_port_is_fatal (void **state)
{
    (void)state;
    s_monitor_t first;
    s_monitor_start (&first, 10000, NULL);
    char port[16];
    snprintf (port, sizeof port, "%d", first.port);
    /* second monitor: fresh socket endpoints, the same HTTP port */
    rcd_monitor_config_t cfg = {0};
    setenv ("RECADO_EVENTS_BIND", "tcp://127.0.0.1:*", 1);
    setenv ("RECADO_ALERTS_ENDPOINT", "tcp://127.0.0.1:*", 1);
    setenv ("RECADO_MONITOR_PORT", port, 1);
    assert_int_equal (rcd_config_load (rcd_monitor_config_specs, &cfg), 0);
    zactor_t *second = zactor_new (rcd_monitor_server, &cfg);
    assert_non_null (second);
    zsock_set_rcvtimeo (second, S_WAIT_MS);
    char *command = NULL, *reason = NULL;
    assert_int_equal (zsock_recv (second, "ss", &command, &reason), 0);
    assert_string_equal (command, "FATAL");
    assert_non_null (strstr (reason, "monitor_port"));
    zstr_free (&command);
    zstr_free (&reason);
    zactor_destroy (&second);
    rcd_config_free (rcd_monitor_config_specs, &cfg);
    /* the first one is unharmed */
    rcd_test_http_t res = s_get (&first, "/metrics");
    assert_int_equal (res.status, 200);
    rcd_test_http_free (&res);
    s_monitor_stop (&first);
}

/*  The binary: --help answers, a bad setting exits 78, SIGTERM exits 0. */
static void
test_binary_help_config_and_sigterm (void **state)
{
    (void)state;
    char *bin = rcd_test_bin ("recado-monitor");
    const char *help_argv[] = {bin, "--help", NULL};
    pid_t pid = rcd_test_spawn (help_argv, NULL, "/dev/null");
    assert_true (pid > 0);
    assert_int_equal (rcd_test_stop (pid, 0, S_WAIT_MS), 0);

    const char *argv[] = {bin, NULL};
    const char *bad_env[] = {"RECADO_DB_POLL_MS=often", NULL};
    pid = rcd_test_spawn (argv, bad_env, "/dev/null");
    assert_true (pid > 0);
    assert_int_equal (rcd_test_stop (pid, 0, S_WAIT_MS), 78);

    int port = rcd_test_free_port ();
    char env_port[64], env_events[64], env_alerts[64], env_db[512];
    char url[128];
    snprintf (env_port, sizeof env_port, "RECADO_MONITOR_PORT=%d", port);
    snprintf (env_events, sizeof env_events,
              "RECADO_EVENTS_BIND=tcp://127.0.0.1:%d", rcd_test_free_port ());
    snprintf (env_alerts, sizeof env_alerts,
              "RECADO_ALERTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env_db, sizeof env_db, "DATABASE_URL=%s", s_db_url);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    const char *env[] = {env_port, env_events, env_alerts, env_db, NULL};
    pid = rcd_test_spawn (argv, env, "/dev/null");
    assert_true (pid > 0);
    assert_true (rcd_test_wait_http_ok (url, S_WAIT_MS));
    assert_int_equal (rcd_test_stop (pid, SIGTERM, S_WAIT_MS), 0);
    free (bin);
}

static int
s_setup (void **state)
{
    (void)state;
    s_db_url = rcd_test_db_create ("monitor");
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_db_drop (&s_db_url);
    return 0;
}

int
main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_events_and_heartbeats_reach_metrics_and_health),
        cmocka_unit_test (test_database_gauges_and_queue_stats_follow_messages),
        cmocka_unit_test (test_malformed_frames_are_counted_and_dropped),
        cmocka_unit_test (test_silent_replica_fires_once_and_resolves_once),
        cmocka_unit_test (test_health_is_healthy_then_degraded),
        cmocka_unit_test (test_unreachable_database_is_reported_unhealthy),
        cmocka_unit_test (test_dashboard_and_http_errors),
        cmocka_unit_test (test_taken_http_port_is_fatal),
        cmocka_unit_test (test_binary_help_config_and_sigterm),
        cmocka_unit_test (test_campaign_progress_follows_the_campaigns),
    };
    int rc = cmocka_run_group_tests (tests, s_setup, s_teardown);
    curl_global_cleanup ();
    return rc;
}

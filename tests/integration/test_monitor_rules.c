/*  test_monitor_rules.c - the monitor's alert rules, fan-out and
    robustness with real processes.

    Each case runs the pipeline (rcd_test_pipeline: scheduler, senders,
    recovery, ingestor and the monitor as processes, the gateway
    simulator in process) with small thresholds and "for" durations set
    through the monitor's environment, drives a condition the way it
    happens in production (the gateway down, an instance disconnected,
    a sender killed, the scheduler frozen, a lease stalled, the database
    refusing connections), and watches the alerts PUB socket: each rule
    must fire exactly once and resolve exactly once, and no unrelated
    rule may fire. Fan-out is checked with a subscriber written in
    Python (pyzmq), `recado alerts --severity critical`, and the webhook
    sink against a flaky receiver and a dead one. promtool checks a live
    /metrics; a flood of 100 000 events a second with malformed frames
    mixed in measures the monitor's peak memory.

    Needs python3-zmq and prometheus (promtool) from Debian
    (deploy/install-deps).
*/
#include "rcd_gwsim.h"
#include "rcd_proto.h"
#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#include <curl/curl.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#ifndef RCD_TESTS_DIR
#error                                                                         \
    "RCD_TESTS_DIR must name the tests folder (tests/integration/CMakeLists.txt)"
#endif

#define S_WAIT_MS  20000
#define S_QUIET_MS 1500 /* watched after the last transition: no duplicate */
#define S_MAX_SEEN 256

/*  Settings every process of every case gets: fast retries and circuit,
    frequent polls, and a heartbeat timeout that a loaded box (sanitizers,
    two cores) never trips by accident. */
static const char *const s_env[] = {
    "RECADO_RETRY_BASE_MS=20",          "RECADO_RETRY_CAP_MS=200",
    "RECADO_CIRCUIT_THRESHOLD=3",       "RECADO_CIRCUIT_COOLDOWN_MS=500",
    "RECADO_RECIPIENT_INTERVAL_MS=0",   "RECADO_POLL_MS=20",
    "RECADO_BATCH_WAIT_MS=5",           "RECADO_LEASE_MS=10000",
    "RECADO_HEALTH_CHECK_MS=200",       "RECADO_DB_POLL_MS=200",
    "RECADO_HEARTBEAT_TIMEOUT_MS=3000", NULL};

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

/*  ---- the alert tap: a SUB socket counting transitions -------------- */

typedef struct {
    char topic[128];
    char rule[64];
    char state[16];
    json_t *body;
} s_seen_t;

typedef struct {
    zsock_t *sub;
    s_seen_t seen[S_MAX_SEEN];
    size_t n;
} s_tap_t;

/*  Reads every alert waiting on the socket; each must be well formed. */
static void
s_tap_poll (s_tap_t *tap)
{
    while (zsock_events (tap->sub) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv (tap->sub);
        if (!msg)
            return;
        assert_int_equal (zmsg_size (msg), 2);
        char *topic = zmsg_popstr (msg);
        char *text = zmsg_popstr (msg);
        zmsg_destroy (&msg);
        json_t *body = json_loads (text, 0, NULL);
        if (!body)
            fail_msg ("alert body is not JSON: %s", text);
        const char *rule = rcd_test_str (body, "rule");
        const char *severity = rcd_test_str (body, "severity");
        const char *state = rcd_test_str (body, "state");
        assert_non_null (rule);
        assert_non_null (severity);
        assert_non_null (state);
        assert_non_null (rcd_test_str (body, "since"));
        assert_non_null (rcd_test_str (body, "summary"));
        assert_true (json_is_object (json_object_get (body, "labels")));
        char expected[160];
        snprintf (expected, sizeof expected, "alert.%s.%s", severity, rule);
        assert_string_equal (topic, expected);
        assert_true (tap->n < S_MAX_SEEN);
        s_seen_t *s = &tap->seen[tap->n++];
        snprintf (s->topic, sizeof s->topic, "%s", topic);
        snprintf (s->rule, sizeof s->rule, "%s", rule);
        snprintf (s->state, sizeof s->state, "%s", state);
        s->body = body;
        fprintf (stderr, "  alert %s %s: %s\n", state, rule,
                 rcd_test_str (body, "summary"));
        zstr_free (&topic);
        zstr_free (&text);
    }
}

static size_t
s_tap_count (s_tap_t *tap, const char *rule, const char *state)
{
    size_t n = 0;
    for (size_t i = 0; i < tap->n; i++)
        n += strcmp (tap->seen[i].rule, rule) == 0 &&
             strcmp (tap->seen[i].state, state) == 0;
    return n;
}

/*  The n-th (from 1) alert of rule in state, or NULL. Borrowed. */
static json_t *
s_tap_get (s_tap_t *tap, const char *rule, const char *state, size_t nth)
{
    for (size_t i = 0; i < tap->n; i++)
        if (strcmp (tap->seen[i].rule, rule) == 0 &&
            strcmp (tap->seen[i].state, state) == 0 && --nth == 0)
            return tap->seen[i].body;
    return NULL;
}

typedef struct {
    s_tap_t *tap;
    const char *rule, *state;
    size_t n;
} s_tap_wait_t;

static bool
s_tap_reached (void *arg)
{
    s_tap_wait_t *w = arg;
    s_tap_poll (w->tap);
    return w->rule && s_tap_count (w->tap, w->rule, w->state) >= w->n;
}

/*  Waits until n alerts of rule in state have been seen. */
static bool
s_tap_wait (s_tap_t *tap, const char *rule, const char *state, size_t n)
{
    s_tap_wait_t w = {tap, rule, state, n};
    bool ok = rcd_test_wait_until (s_tap_reached, &w, S_WAIT_MS);
    if (!ok)
        print_error ("%s %s: seen %zu, expected %zu\n", rule, state,
                     s_tap_count (tap, rule, state), n);
    return ok;
}

/*  Keeps reading for ms: nothing may arrive late (a second firing). */
static void
s_tap_quiet (s_tap_t *tap, int ms)
{
    s_tap_wait_t w = {tap, NULL, NULL, 0};
    rcd_test_wait_until (s_tap_reached, &w, ms);
}

/*  Exactly fired firings and resolved resolutions of rule. */
static void
s_tap_expect (s_tap_t *tap, const char *rule, size_t fired, size_t resolved)
{
    size_t f = s_tap_count (tap, rule, "firing");
    size_t r = s_tap_count (tap, rule, "resolved");
    if (f != fired || r != resolved)
        fail_msg ("%s: fired %zu and resolved %zu times, expected %zu and %zu",
                  rule, f, r, fired, resolved);
}

/*  Every rule not in the NULL-ended list never fired. */
static void
s_tap_expect_only (s_tap_t *tap, ...)
{
    for (size_t i = 0; i < tap->n; i++) {
        bool listed = false;
        va_list args;
        va_start (args, tap);
        const char *rule;
        while (!listed && (rule = va_arg (args, const char *)) != NULL)
            listed = strcmp (rule, tap->seen[i].rule) == 0;
        va_end (args);
        if (!listed)
            fail_msg ("unexpected alert %s %s", tap->seen[i].state,
                      tap->seen[i].rule);
    }
}

static void
s_tap_clear (s_tap_t *tap)
{
    for (size_t i = 0; i < tap->n; i++)
        json_decref (tap->seen[i].body);
    tap->n = 0;
    zsock_destroy (&tap->sub);
}

/*  ---- a case: the pipeline with a monitor and a tap ---------------- */

typedef struct s_hook s_hook_t;
static void
s_hook_stop (s_hook_t *hook);

typedef struct {
    rcd_test_pipeline_t *p;
    rcd_gwsim_t *sim;
    s_tap_t tap;
    char alerts[64];    /* where subscribers connect */
    char *key;          /* the tenant's API key */
    int64_t started_ms; /* to report the case's time */
    pid_t helpers[4];   /* other processes to stop at teardown */
    char *env[32];      /* the monitor's environment entries */
    s_hook_t *hook;     /* a webhook receiver, when the case has one */
    int hole;           /* a socket that never accepts, or -1 */
    char *db;           /* a database of the case's own, or NULL */
} s_case_t;

/*  A case with nothing started yet: teardown stops whatever it gets. */
static s_case_t *
s_case_alloc (void **state)
{
    s_case_t *c = calloc (1, sizeof *c);
    assert_non_null (c);
    c->hole = -1;
    c->started_ms = s_now_ms ();
    *state = c; /* teardown frees it whatever fails next */
    return c;
}

/*  Starts the pipeline with a monitor (extra settings in monitor_env,
    recovery_env; NULL-ended, may be NULL) and subscribes to its alerts
    before anything can fire; creates one tenant. */
static void
s_case_start (s_case_t *c, const char *name, int senders,
              const char *const *monitor_env, const char *const *recovery_env)
{
    snprintf (c->alerts, sizeof c->alerts, "tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    size_t n = 0;
    c->env[n] = malloc (128);
    snprintf (c->env[n++], 128, "RECADO_ALERTS_ENDPOINT=%s", c->alerts);
    for (size_t i = 0; monitor_env && monitor_env[i]; i++) {
        assert_true (n < 30);
        c->env[n++] = strdup (monitor_env[i]);
    }
    c->env[n] = NULL;
    rcd_test_pipeline_opts_t opts = {
        .name = name, .senders = senders, .monitor = true, .env = s_env};
    opts.kind_env[RCD_TP_MONITOR] = (const char *const *)c->env;
    opts.kind_env[RCD_TP_RECOVERY] = recovery_env;
    c->p = rcd_test_pipeline_new (&opts);
    c->sim = rcd_test_pipeline_sim (c->p);
    /* the monitor started first: its alerts socket is bound by now */
    c->tap.sub = zsock_new_sub (c->alerts, "alert.");
    assert_non_null (c->tap.sub);
    c->key = rcd_test_pipeline_tenant (c->p, name);
}

static s_case_t *
s_case_new (void **state, const char *name, int senders,
            const char *const *monitor_env, const char *const *recovery_env)
{
    s_case_t *c = s_case_alloc (state);
    s_case_start (c, name, senders, monitor_env, recovery_env);
    return c;
}

static int
s_teardown (void **state)
{
    s_case_t *c = *state;
    if (!c)
        return 0;
    for (size_t i = 0; i < sizeof c->helpers / sizeof c->helpers[0]; i++)
        if (c->helpers[i] > 0)
            rcd_test_stop (c->helpers[i], SIGKILL, 5000);
    rcd_test_pipeline_destroy (&c->p);
    if (c->hook) {
        s_hook_stop (c->hook);
        free (c->hook);
    }
    if (c->hole >= 0)
        close (c->hole);
    if (c->db)
        rcd_test_db_drop (&c->db);
    s_tap_clear (&c->tap);
    for (size_t i = 0; c->env[i]; i++)
        free (c->env[i]);
    fprintf (stderr, "  case took %.1f s\n",
             (double)(s_now_ms () - c->started_ms) / 1000.0);
    free (c->key);
    free (c);
    *state = NULL;
    return 0;
}

static void
s_configure (s_case_t *c, const char *json)
{
    assert_int_equal (rcd_gwsim_configure (c->sim, json), 0);
}

static void
s_sql (s_case_t *c, const char *sql)
{
    free (rcd_test_sql (rcd_test_pipeline_db (c->p), sql, 0, NULL));
}

static long long
s_sql_int (s_case_t *c, const char *sql)
{
    return rcd_test_sql_int (rcd_test_pipeline_db (c->p), sql, 0, NULL);
}

/*  GET a monitor document. Caller frees. */
static rcd_test_http_t
s_get (s_case_t *c, const char *path)
{
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s",
              rcd_test_pipeline_monitor_port (c->p), path);
    return rcd_test_http ("GET", url, NULL, NULL, NULL);
}

static json_t *
s_get_json (s_case_t *c, const char *path, long *status)
{
    rcd_test_http_t res = s_get (c, path);
    if (status)
        *status = res.status;
    json_t *json = res.body ? json_loads (res.body, 0, NULL) : NULL;
    rcd_test_http_free (&res);
    return json;
}

/*  Value of one exact series in a /metrics text, NAN when absent. */
static double
s_series (const char *text, const char *series)
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
s_metric_at (int port, const char *series)
{
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    double value = res.status == 200 ? s_series (res.body, series) : NAN;
    rcd_test_http_free (&res);
    return value;
}

static double
s_metric (s_case_t *c, const char *series)
{
    return s_metric_at (rcd_test_pipeline_monitor_port (c->p), series);
}

typedef struct {
    int port;
    const char *series;
    double at_least;
} s_metric_wait_t;

static bool
s_metric_reached (void *arg)
{
    s_metric_wait_t *w = arg;
    return s_metric_at (w->port, w->series) >= w->at_least;
}

static bool
s_wait_metric (int port, const char *series, double at_least)
{
    s_metric_wait_t w = {port, series, at_least};
    bool ok = rcd_test_wait_until (s_metric_reached, &w, S_WAIT_MS);
    if (!ok)
        print_error ("%s is %g, expected at least %g\n", series,
                     s_metric_at (port, series), at_least);
    return ok;
}

/*  Two series of one /metrics page equal (and above 0). */
static bool
s_metrics_equal (void *arg)
{
    const s_metric_wait_t *w = arg; /* series: the first; at_least unused */
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", w->port);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    bool equal = false;
    if (res.status == 200) {
        double a = s_series (res.body, w->series);
        double b = s_series (res.body, "recado_send_requests_total");
        equal = a > 0 && a == b;
    }
    rcd_test_http_free (&res);
    return equal;
}

/*  The component of /health, with its status in *status_p. Caller owns
    the result. */
static json_t *
s_health_component (s_case_t *c, const char *name, long *http_status)
{
    json_t *health = s_get_json (c, "/health", http_status);
    json_t *component = json_incref (
        json_object_get (json_object_get (health, "components"), name));
    json_decref (health);
    return component;
}

typedef struct {
    s_case_t *c;
    const char *path;   /* document */
    const char *member; /* top-level member, or "a.b" one level down */
    json_int_t value;   /* expected integer, or array size */
} s_doc_wait_t;

/*  The documents are rendered every 250 ms: what an alert announced
    shows there a moment later. */
static bool
s_doc_has (void *arg)
{
    s_doc_wait_t *w = arg;
    json_t *doc = s_get_json (w->c, w->path, NULL);
    json_t *at = doc;
    if (w->member) {
        char first[64];
        snprintf (first, sizeof first, "%.*s", (int)strcspn (w->member, "."),
                  w->member);
        at = json_object_get (doc, first);
        const char *dot = strchr (w->member, '.');
        if (dot)
            at = json_object_get (at, dot + 1);
    }
    bool ok = json_is_array (at)
                  ? (json_int_t)json_array_size (at) >= w->value
                  : json_is_integer (at) && json_integer_value (at) == w->value;
    json_decref (doc);
    return ok;
}

static bool
s_wait_doc (s_case_t *c, const char *path, const char *member, json_int_t value)
{
    s_doc_wait_t w = {c, path, member, value};
    bool ok = rcd_test_wait_until (s_doc_has, &w, S_WAIT_MS);
    if (!ok)
        print_error ("%s %s never showed %lld\n", path, member ? member : "",
                     (long long)value);
    return ok;
}

typedef struct {
    s_case_t *c;
    const char *name;
    const char *status;
} s_component_wait_t;

static bool
s_component_is (void *arg)
{
    s_component_wait_t *w = arg;
    json_t *component = s_health_component (w->c, w->name, NULL);
    const char *status = rcd_test_str (component, "status");
    bool ok = status && strcmp (status, w->status) == 0;
    json_decref (component);
    return ok;
}

/*  Waits until /health shows the component with status, and returns
    it (caller owns it). */
static json_t *
s_wait_component (s_case_t *c, const char *name, const char *status)
{
    s_component_wait_t w = {c, name, status};
    if (!rcd_test_wait_until (s_component_is, &w, S_WAIT_MS))
        fail_msg ("/health never showed %s %s", name, status);
    return s_health_component (c, name, NULL);
}

/*  A program on PATH, or a fixed path when it exists. Caller frees. */
static char *
s_which (const char *preferred, const char *name)
{
    if (preferred && access (preferred, X_OK) == 0)
        return strdup (preferred);
    const char *path = getenv ("PATH");
    char *copy = strdup (path ? path : "/usr/bin:/bin");
    char *save = NULL, *found = NULL;
    for (char *dir = strtok_r (copy, ":", &save); dir && !found;
         dir = strtok_r (NULL, ":", &save)) {
        char full[1024];
        snprintf (full, sizeof full, "%s/%s", dir, name);
        if (access (full, X_OK) == 0)
            found = strdup (full);
    }
    free (copy);
    return found;
}

/*  A scratch file name in the build tree. Caller frees. */
static char *
s_scratch (const char *name)
{
    const char *bin = getenv ("RECADO_BIN_DIR");
    char path[1024];
    snprintf (path, sizeof path, "%s/../test-logs/monitor-rules-%d-%s",
              bin ? bin : ".", (int)getpid (), name);
    remove (path);
    return strdup (path);
}

/*  Whole text of a file (NULL when absent). Caller frees. */
static char *
s_slurp (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream (&text, &size);
    char buf[4096];
    size_t n;
    while ((n = fread (buf, 1, sizeof buf, f)) > 0)
        fwrite (buf, 1, n, mem);
    fclose (mem);
    fclose (f);
    return text;
}

typedef struct {
    const char *path;
    const char *needle;
} s_file_wait_t;

static bool
s_file_has (void *arg)
{
    s_file_wait_t *w = arg;
    char *text = s_slurp (w->path);
    bool ok = text && strstr (text, w->needle);
    free (text);
    return ok;
}

/*  promtool check metrics on the live /metrics. */
static void
s_promtool (s_case_t *c)
{
    char *promtool = s_which ("/usr/bin/promtool", "promtool");
    if (!promtool)
        fail_msg ("promtool not found: install Debian's prometheus package "
                  "(deploy/install-deps)");
    rcd_test_http_t res = s_get (c, "/metrics");
    assert_int_equal (res.status, 200);
    char *metrics = s_scratch ("metrics.txt");
    char *out = s_scratch ("promtool.txt");
    FILE *f = fopen (metrics, "w");
    assert_non_null (f);
    fwrite (res.body, 1, res.size, f);
    fclose (f);
    rcd_test_http_free (&res);
    char command[2400];
    snprintf (command, sizeof command, "exec '%s' check metrics < '%s'",
              promtool, metrics);
    const char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t pid = rcd_test_spawn (argv, NULL, out);
    assert_true (pid > 0);
    int code = rcd_test_stop (pid, 0, S_WAIT_MS);
    char *report = s_slurp (out);
    if (code != 0)
        fail_msg ("promtool check metrics exited %d:\n%s\n(metrics in %s)",
                  code, report ? report : "", metrics);
    /* lint findings are printed even when it exits 0: there must be none */
    if (report && *report)
        fail_msg ("promtool check metrics complained:\n%s", report);
    free (report);
    remove (metrics);
    remove (out);
    free (out);
    free (metrics);
    free (promtool);
}

/*  ---- the cases ------------------------------------------------------ */

typedef struct {
    s_case_t *c;
    long long instance;
    const char *state;
} s_circuit_wait_t;

/*  The gateway goes down: the instance's circuit opens and the error
    rate crosses 10 %, each alert firing once; when the gateway is back
    and everything is sent, each resolves once. A live /metrics with real
    traffic (histograms filled) passes promtool. */
static void
test_gateway_down_fires_circuit_open_and_error_rate_once (void **state)
{
    static const char *const monitor[] = {
        "RECADO_ERROR_RATE_WINDOW_MS=4000", "RECADO_ERROR_RATE_MIN_VOLUME=3",
        "RECADO_DEAD_LETTERS_PER_MIN=0", NULL};
    s_case_t *c = s_case_new (state, "mr_down", 1, monitor, NULL);
    long long inst = rcd_test_pipeline_evolution (c->p, c->key, "evo", 200);
    /* a healthy start: sends that succeed, in the windows too */
    rcd_test_pipeline_submit (c->p, c->key,
                              rcd_test_pipeline_messages (0, 20, "ok", NULL));
    assert_true (rcd_test_pipeline_wait_settled (c->p, S_WAIT_MS));

    s_configure (c, "{\"down\": true}");
    rcd_test_pipeline_submit (
        c->p, c->key, rcd_test_pipeline_messages (100, 20, "down", NULL));
    assert_true (s_tap_wait (&c->tap, "circuit_open", "firing", 1));
    assert_true (s_tap_wait (&c->tap, "error_rate", "firing", 1));
    json_t *fired = s_tap_get (&c->tap, "circuit_open", "firing", 1);
    char id[32];
    snprintf (id, sizeof id, "%lld", inst);
    assert_string_equal (
        rcd_test_str (json_object_get (fired, "labels"), "instance"), id);
    assert_string_equal (
        rcd_test_str (json_object_get (fired, "labels"), "name"), "evo");
    assert_string_equal (rcd_test_str (fired, "severity"), "warning");
    /* /health says why the instance cannot send */
    char name[48];
    snprintf (name, sizeof name, "instance:%lld", inst);
    json_t *component = s_wait_component (c, name, "degraded");
    assert_non_null (strstr (rcd_test_str (component, "detail"), "circuit"));
    json_decref (component);
    assert_true (s_wait_doc (c, "/alerts", NULL, 2));

    s_configure (c, "{\"down\": false}");
    assert_true (rcd_test_pipeline_wait_settled (c->p, S_WAIT_MS));
    assert_int_equal (rcd_test_pipeline_count (c->p, "sent"), 40);
    assert_true (s_tap_wait (&c->tap, "circuit_open", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "error_rate", "resolved", 1));
    s_tap_quiet (&c->tap, S_QUIET_MS);
    s_tap_expect (&c->tap, "circuit_open", 1, 1);
    s_tap_expect (&c->tap, "error_rate", 1, 1);
    s_tap_expect_only (&c->tap, "circuit_open", "error_rate", NULL);

    /* what the senders and the database said reached the metrics */
    int port = rcd_test_pipeline_monitor_port (c->p);
    assert_true (s_wait_metric (port, "recado_send_requests_total", 40));
    /* every request in one of the senders' buckets */
    assert_true (s_wait_metric (port, "recado_send_latency_seconds_count", 40));
    s_metric_wait_t same = {port, "recado_send_latency_seconds_count", 0};
    assert_true (rcd_test_wait_until (s_metrics_equal, &same, S_WAIT_MS));
    assert_true (
        s_wait_metric (port, "recado_claim_to_outcome_seconds_count", 40));
    assert_true (s_wait_metric (
        port, "recado_window_messages{status=\"sent\",window=\"5m\"}", 40));
    assert_true (s_metric (c, "recado_window_messages{status=\"retry\","
                              "window=\"5m\"}") >= 1);
    assert_true (s_metric (c, "recado_alerts_published_total{rule=\"circuit_"
                              "open\",state=\"resolved\"}") == 1);
    s_promtool (c);
    rcd_test_pipeline_passed (c->p);
}

typedef struct {
    s_case_t *c;
    long long instance;
    const char *health;
} s_health_wait_t;

static bool
s_instance_health_is (void *arg)
{
    s_health_wait_t *w = arg;
    char id[32];
    snprintf (id, sizeof id, "%lld", w->instance);
    const char *params[] = {id};
    char *health =
        rcd_test_sql (rcd_test_pipeline_db (w->c->p),
                      "SELECT health FROM instances WHERE id = $1", 1, params);
    bool ok = health && strcmp (health, w->health) == 0;
    free (health);
    return ok;
}

/*  The tenant's only instance disconnects (gateway state "close"):
    instance_offline fires after its for, the messages pile up (backlog
    over N, oldest due older than T) and, made two hours old, count as
    stuck. The instance reconnects: everything is sent and each of the
    four alerts resolves, once. */
static void
test_offline_instance_fires_offline_backlog_oldest_and_stuck_once (void **state)
{
    static const char *const monitor[] = {
        "RECADO_INSTANCE_OFFLINE_MS=1000", "RECADO_BACKLOG_MAX=5",
        "RECADO_BACKLOG_FOR_MS=500", "RECADO_OLDEST_DUE_MAX_MS=1500", NULL};
    s_case_t *c = s_case_new (state, "mr_offline", 1, monitor, NULL);
    s_configure (c, "{\"instances\": {\"evo\": {\"state\": \"close\"}}}");
    long long inst = rcd_test_pipeline_evolution (c->p, c->key, "evo", 200);
    s_health_wait_t w = {c, inst, "close"};
    assert_true (rcd_test_wait_until (s_instance_health_is, &w, S_WAIT_MS));
    /* the scheduler reads instances once a poll period: once it says the
       instance is unusable, nothing is claimed for it */
    assert_true (s_wait_metric (rcd_test_pipeline_monitor_port (c->p),
                                "recado_events_total{service=\"scheduler\","
                                "kind=\"instance.unusable\"}",
                                1));
    rcd_test_pipeline_submit (c->p, c->key,
                              rcd_test_pipeline_messages (0, 10, "wait", NULL));
    assert_true (s_tap_wait (&c->tap, "instance_offline", "firing", 1));
    assert_true (s_tap_wait (&c->tap, "backlog", "firing", 1));
    assert_true (s_tap_wait (&c->tap, "oldest_due", "firing", 1));
    json_t *offline = s_tap_get (&c->tap, "instance_offline", "firing", 1);
    assert_string_equal (rcd_test_str (offline, "severity"), "critical");
    assert_string_equal (
        rcd_test_str (json_object_get (offline, "labels"), "health"), "close");

    /* /health and /queue-stats tell the same story */
    char name[48];
    snprintf (name, sizeof name, "instance:%lld", inst);
    json_t *component = s_wait_component (c, name, "degraded");
    assert_non_null (strstr (rcd_test_str (component, "detail"), "offline"));
    json_decref (component);
    assert_true (s_wait_doc (c, "/queue-stats", "due", 10));
    json_t *qs = s_get_json (c, "/queue-stats", NULL);
    assert_int_equal (json_integer_value (json_object_get (qs, "due")), 10);
    json_t *listed = json_array_get (json_object_get (qs, "instances"), 0);
    assert_string_equal (rcd_test_str (listed, "health"), "close");
    assert_true (json_is_integer (json_object_get (listed, "hour_used")));
    assert_true (json_is_array (
        json_object_get (json_object_get (qs, "history"), "sent")));
    json_decref (qs);

    /* two hours late: stuck (the default stuck_ms) */
    assert_int_equal (s_sql_int (c, "WITH u AS (UPDATE messages"
                                    " SET send_at = now() - interval '3 hours'"
                                    " WHERE status = 'pending' RETURNING 1)"
                                    " SELECT count(*) FROM u"),
                      10);
    assert_true (s_tap_wait (&c->tap, "messages_stuck", "firing", 1));
    json_t *stuck = s_tap_get (&c->tap, "messages_stuck", "firing", 1);
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (stuck, "labels"), "pending")),
                      10);

    s_configure (c, "{\"instances\": {\"evo\": null}}"); /* open again */
    assert_true (rcd_test_pipeline_wait_settled (c->p, S_WAIT_MS));
    assert_int_equal (rcd_test_pipeline_count (c->p, "sent"), 10);
    assert_true (s_tap_wait (&c->tap, "instance_offline", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "backlog", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "oldest_due", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "messages_stuck", "resolved", 1));
    s_tap_quiet (&c->tap, S_QUIET_MS);
    s_tap_expect (&c->tap, "instance_offline", 1, 1);
    s_tap_expect (&c->tap, "backlog", 1, 1);
    s_tap_expect (&c->tap, "oldest_due", 1, 1);
    s_tap_expect (&c->tap, "messages_stuck", 1, 1);
    s_tap_expect_only (&c->tap, "instance_offline", "backlog", "oldest_due",
                       "messages_stuck", NULL);
    rcd_test_pipeline_passed (c->p);
}

/*  Dead letters pile up faster than R a minute (numbers not on
    WhatsApp): fires, and resolves once the window has passed. Then a
    lease stalls (a row put back in 'sending' an hour past its lease)
    and a message sits in 'unknown' for three hours while recovery runs
    its sweeps rarely: stuck_sending and messages_stuck fire. Recovery,
    restarted with its usual periods, repairs both and both resolve. */
static void
test_dead_letters_stalled_lease_and_unknown_fire_once (void **state)
{
    static const char *const monitor[] = {
        "RECADO_DEAD_LETTERS_PER_MIN=30", "RECADO_DEAD_LETTERS_WINDOW_MS=3000",
        "RECADO_LEASE_MARGIN_MS=1000", "RECADO_ERROR_RATE_MIN_VOLUME=1000000",
        NULL};
    static const char *const recovery[] = {"RECADO_LEASE_CHECK_MS=600000",
                                           "RECADO_UNKNOWN_CHECK_MS=3600000",
                                           NULL};
    s_case_t *c = s_case_new (state, "mr_stuck", 1, monitor, recovery);
    rcd_test_pipeline_evolution (c->p, c->key, "evo", 200);
    json_t *errors = json_object ();
    for (int i = 0; i < 6; i++) {
        char digits[32];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        json_object_set_new (errors, digits, json_string ("not_on_whatsapp"));
    }
    json_t *config = json_pack ("{s:o}", "number_errors", errors);
    char *text = json_dumps (config, JSON_COMPACT);
    s_configure (c, text);
    free (text);
    json_decref (config);
    rcd_test_pipeline_submit (c->p, c->key,
                              rcd_test_pipeline_messages (0, 6, "dead", NULL));
    assert_true (s_tap_wait (&c->tap, "dead_letters_growth", "firing", 1));
    assert_int_equal (rcd_test_pipeline_count (c->p, "failed"), 6);
    assert_true (s_tap_wait (&c->tap, "dead_letters_growth", "resolved", 1));

    rcd_test_pipeline_submit (c->p, c->key,
                              rcd_test_pipeline_messages (100, 2, "ok", NULL));
    assert_true (rcd_test_pipeline_wait_count (c->p, "sent", 2, S_WAIT_MS));
    s_sql (c, "UPDATE messages SET status = 'sending',"
              " lease_until = now() - interval '1 hour' WHERE body = 'ok 100'");
    s_sql (c, "UPDATE messages SET status = 'unknown',"
              " updated_at = now() - interval '3 hours' WHERE body = 'ok 101'");
    assert_true (s_tap_wait (&c->tap, "stuck_sending", "firing", 1));
    assert_true (s_tap_wait (&c->tap, "messages_stuck", "firing", 1));
    assert_true (s_wait_doc (c, "/queue-stats", "leases_stuck", 1));
    assert_true (s_wait_doc (c, "/queue-stats", "stuck.unknown", 1));

    /* recovery with its usual periods repairs both */
    assert_int_equal (
        rcd_test_pipeline_stop (c->p, RCD_TP_RECOVERY, 0, SIGTERM, S_WAIT_MS),
        0);
    rcd_test_pipeline_set_env (c->p, RCD_TP_RECOVERY, 0,
                               "RECADO_LEASE_CHECK_MS=200");
    rcd_test_pipeline_set_env (c->p, RCD_TP_RECOVERY, 0,
                               "RECADO_UNKNOWN_CHECK_MS=200");
    rcd_test_pipeline_start (c->p, RCD_TP_RECOVERY, 0);
    assert_true (s_tap_wait (&c->tap, "stuck_sending", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "messages_stuck", "resolved", 1));
    assert_true (rcd_test_pipeline_wait_count (c->p, "failed", 7, S_WAIT_MS));
    s_tap_quiet (&c->tap, S_QUIET_MS);
    s_tap_expect (&c->tap, "dead_letters_growth", 1, 1);
    s_tap_expect (&c->tap, "stuck_sending", 1, 1);
    s_tap_expect (&c->tap, "messages_stuck", 1, 1);
    s_tap_expect_only (&c->tap, "dead_letters_growth", "stuck_sending",
                       "messages_stuck", NULL);
    rcd_test_pipeline_passed (c->p);
}

/*  ---- a webhook receiver: fails the first requests, then takes ------ */

struct s_hook {
    pthread_mutex_t lock;
    struct MHD_Daemon *daemon;
    int port;
    int fail_first; /* requests answered 500 */
    int requests;   /* every request */
    char *bodies[64];
    int nbodies; /* bodies of every request, in arrival order */
};

typedef struct {
    char *data;
    size_t len;
} s_upload_t;

static enum MHD_Result
s_hook_handle (void *cls, struct MHD_Connection *conn, const char *url,
               const char *method, const char *version, const char *upload_data,
               size_t *upload_size, void **con_cls)
{
    s_hook_t *hook = cls;
    (void)url;
    (void)method;
    (void)version;
    s_upload_t *up = *con_cls;
    if (!up) {
        *con_cls = calloc (1, sizeof (s_upload_t));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        char *grown = realloc (up->data, up->len + *upload_size + 1);
        if (!grown)
            return MHD_NO;
        memcpy (grown + up->len, upload_data, *upload_size);
        up->data = grown;
        up->len += *upload_size;
        up->data[up->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock (&hook->lock);
    int n = ++hook->requests;
    if (hook->nbodies < 64)
        hook->bodies[hook->nbodies++] = strdup (up->data ? up->data : "");
    pthread_mutex_unlock (&hook->lock);
    unsigned int status = n <= hook->fail_first ? 500 : 200;
    static const char answer[] = "ok";
    struct MHD_Response *res = MHD_create_response_from_buffer (
        2, (void *)answer, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response (conn, status, res);
    MHD_destroy_response (res);
    return rc;
}

static void
s_hook_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
                  enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)conn;
    (void)code;
    s_upload_t *up = *con_cls;
    if (up)
        free (up->data);
    free (up);
    *con_cls = NULL;
}

static void
s_hook_start (s_hook_t *hook, int fail_first)
{
    memset (hook, 0, sizeof *hook);
    pthread_mutex_init (&hook->lock, NULL);
    hook->fail_first = fail_first;
    hook->port = rcd_test_free_port ();
    hook->daemon = MHD_start_daemon (
        MHD_USE_AUTO_INTERNAL_THREAD, (uint16_t)hook->port, NULL, NULL,
        s_hook_handle, hook, MHD_OPTION_NOTIFY_COMPLETED, s_hook_completed,
        NULL, MHD_OPTION_END);
    assert_non_null (hook->daemon);
}

static void
s_hook_stop (s_hook_t *hook)
{
    if (hook->daemon)
        MHD_stop_daemon (hook->daemon);
    for (int i = 0; i < hook->nbodies; i++)
        free (hook->bodies[i]);
    pthread_mutex_destroy (&hook->lock);
    memset (hook, 0, sizeof *hook);
}

typedef struct {
    s_hook_t *hook;
    int requests;
} s_hook_wait_t;

static bool
s_hook_reached (void *arg)
{
    s_hook_wait_t *w = arg;
    pthread_mutex_lock (&w->hook->lock);
    bool ok = w->hook->requests >= w->requests;
    pthread_mutex_unlock (&w->hook->lock);
    return ok;
}

typedef struct {
    s_case_t *c;
    const char *service;
    size_t up;
} s_replicas_wait_t;

/*  /health lists the service with this many replicas up. */
static bool
s_replicas_up (void *arg)
{
    s_replicas_wait_t *w = arg;
    char name[64];
    snprintf (name, sizeof name, "service:%s", w->service);
    json_t *component = s_health_component (w->c, name, NULL);
    json_t *replicas = json_object_get (component, "replicas");
    size_t up = 0;
    for (size_t i = 0; i < json_array_size (replicas); i++) {
        const char *s = rcd_test_str (json_array_get (replicas, i), "state");
        up += s && strcmp (s, "up") == 0;
    }
    json_decref (component);
    return up == w->up;
}

/*  Starts the Python subscriber for one alert; waits until it is
    connected. Returns its pid; *out_p gets its output file. */
static pid_t
s_python_subscriber (s_case_t *c, const char *rule, const char *state,
                     char **out_p)
{
    char *python = s_which ("/usr/bin/python3", "python3");
    assert_non_null (python);
    char *out = s_scratch ("python.txt");
    const char *argv[] = {
        python,    RCD_TESTS_DIR "/integration/alert_subscriber.py",
        c->alerts, rule,
        state,     "60",
        NULL};
    pid_t pid = rcd_test_spawn (argv, NULL, out);
    assert_true (pid > 0);
    s_file_wait_t w = {out, "READY"};
    if (!rcd_test_wait_until (s_file_has, &w, S_WAIT_MS)) {
        char *text = s_slurp (out);
        fail_msg ("the Python subscriber did not connect: %s",
                  text ? text : "(no output)");
    }
    free (python);
    *out_p = out;
    return pid;
}

/*  A sender killed with SIGKILL fires service_down once; its
    replacement is a new replica and the silent one resolves when it is
    forgotten. The scheduler frozen (SIGSTOP) fires scheduler_not_ticking
    and service_down; thawed, both resolve. The alerts reach a Python
    (pyzmq) subscriber, `recado alerts --severity critical`, and the
    webhook, whose first answer is a 500 (retried). */
static void
test_killed_sender_and_frozen_scheduler_reach_every_subscriber (void **state)
{
    s_case_t *c = s_case_alloc (state);
    c->hook = calloc (1, sizeof *c->hook);
    assert_non_null (c->hook);
    s_hook_t *hook = c->hook;
    s_hook_start (hook, 1);
    char webhook[128];
    snprintf (webhook, sizeof webhook,
              "RECADO_ALERT_WEBHOOK_URL=http://127.0.0.1:%d/hook", hook->port);
    const char *const monitor[] = {"RECADO_REPLICA_FORGET_MS=4000",
                                   "RECADO_SCHEDULER_STALL_MS=2500",
                                   "RECADO_ALERT_WEBHOOK_TIMEOUT_MS=2000",
                                   "RECADO_ALERT_WEBHOOK_RETRIES=3",
                                   webhook,
                                   NULL};
    s_case_start (c, "mr_fleet", 2, monitor, NULL);
    char *python_out = NULL;
    c->helpers[0] =
        s_python_subscriber (c, "service_down", "firing", &python_out);
    char *cli_out = s_scratch ("cli.txt");
    char *cli = rcd_test_bin ("recado");
    char cli_env[96];
    snprintf (cli_env, sizeof cli_env, "RECADO_ALERTS_ENDPOINT=%s", c->alerts);
    const char *cli_argv[] = {cli, "alerts", "--severity", "critical", NULL};
    const char *cli_envp[] = {cli_env, NULL};
    c->helpers[1] = rcd_test_spawn (cli_argv, cli_envp, cli_out);
    assert_true (c->helpers[1] > 0);
    s_replicas_wait_t senders = {c, "sender", 2};
    assert_true (rcd_test_wait_until (s_replicas_up, &senders, S_WAIT_MS));

    /* a sender dies */
    pid_t killed = rcd_test_pipeline_pid (c->p, RCD_TP_SENDER, 1);
    assert_int_equal (
        rcd_test_pipeline_stop (c->p, RCD_TP_SENDER, 1, SIGKILL, S_WAIT_MS),
        128 + SIGKILL);
    assert_true (s_tap_wait (&c->tap, "service_down", "firing", 1));
    json_t *labels = json_object_get (
        s_tap_get (&c->tap, "service_down", "firing", 1), "labels");
    assert_string_equal (rcd_test_str (labels, "service"), "sender");
    char pid_suffix[32];
    snprintf (pid_suffix, sizeof pid_suffix, ":%d", (int)killed);
    const char *replica = rcd_test_str (labels, "replica");
    assert_non_null (replica);
    assert_string_equal (replica + strlen (replica) - strlen (pid_suffix),
                         pid_suffix);
    /* the Python subscriber got the same alert */
    assert_int_equal (rcd_test_stop (c->helpers[0], 0, S_WAIT_MS), 0);
    c->helpers[0] = 0;
    char *python_text = s_slurp (python_out);
    const char *line = python_text ? strstr (python_text, "ALERT ") : NULL;
    if (!line)
        fail_msg ("no alert from the Python subscriber: %s",
                  python_text ? python_text : "(no output)");
    json_t *seen = json_loads (line + 6, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null (seen);
    assert_string_equal (rcd_test_str (seen, "rule"), "service_down");
    assert_string_equal (rcd_test_str (seen, "state"), "firing");
    assert_string_equal (
        rcd_test_str (json_object_get (seen, "labels"), "replica"), replica);
    json_decref (seen);
    free (python_text);

    /* its replacement beats; the silent replica is forgotten: resolved */
    rcd_test_pipeline_start (c->p, RCD_TP_SENDER, 1);
    assert_true (s_tap_wait (&c->tap, "service_down", "resolved", 1));
    assert_true (rcd_test_wait_until (s_replicas_up, &senders, S_WAIT_MS));

    /* the scheduler freezes, then thaws */
    pid_t scheduler = rcd_test_pipeline_pid (c->p, RCD_TP_SCHEDULER, 0);
    assert_int_equal (kill (scheduler, SIGSTOP), 0);
    assert_true (s_tap_wait (&c->tap, "scheduler_not_ticking", "firing", 1));
    assert_true (s_tap_wait (&c->tap, "service_down", "firing", 2));
    json_decref (s_wait_component (c, "scheduler_tick", "unhealthy"));
    assert_int_equal (kill (scheduler, SIGCONT), 0);
    assert_true (s_tap_wait (&c->tap, "scheduler_not_ticking", "resolved", 1));
    assert_true (s_tap_wait (&c->tap, "service_down", "resolved", 2));
    s_tap_quiet (&c->tap, S_QUIET_MS);
    s_tap_expect (&c->tap, "service_down", 2, 2);
    s_tap_expect (&c->tap, "scheduler_not_ticking", 1, 1);
    s_tap_expect_only (&c->tap, "service_down", "scheduler_not_ticking", NULL);

    /* recado alerts --severity critical printed the six, as JSON lines */
    assert_int_equal (rcd_test_stop (c->helpers[1], SIGTERM, S_WAIT_MS), 0);
    c->helpers[1] = 0;
    char *cli_text = s_slurp (cli_out);
    assert_non_null (cli_text);
    int lines = 0;
    char *save = NULL;
    for (char *l = strtok_r (cli_text, "\n", &save); l;
         l = strtok_r (NULL, "\n", &save)) {
        if (l[0] != '{')
            continue; /* its own log lines carry "level" */
        json_t *alert = json_loads (l, 0, NULL);
        if (alert && json_object_get (alert, "level") &&
            !json_object_get (alert, "rule")) {
            json_decref (alert); /* a log line of its own */
            continue;
        }
        if (!alert || !rcd_test_str (alert, "rule"))
            fail_msg ("recado alerts printed: %s", l);
        assert_string_equal (rcd_test_str (alert, "severity"), "critical");
        lines++;
        json_decref (alert);
    }
    assert_int_equal (lines, 6);
    free (cli_text);

    /* the webhook: six alerts, the first one twice (a 500, then a retry) */
    s_hook_wait_t hw = {hook, 7};
    assert_true (rcd_test_wait_until (s_hook_reached, &hw, S_WAIT_MS));
    pthread_mutex_lock (&hook->lock);
    assert_string_equal (hook->bodies[0], hook->bodies[1]);
    for (int i = 0; i < hook->nbodies; i++) {
        json_t *body = json_loads (hook->bodies[i], 0, NULL);
        const char *t = rcd_test_str (body, "text");
        assert_non_null (t);
        assert_true (strncmp (t, "[FIRING] critical ", 18) == 0 ||
                     strncmp (t, "[RESOLVED] critical ", 20) == 0);
        json_decref (body);
    }
    assert_non_null (strstr (hook->bodies[0], "service_down"));
    pthread_mutex_unlock (&hook->lock);
    int port = rcd_test_pipeline_monitor_port (c->p);
    assert_true (s_wait_metric (
        port, "recado_alert_webhook_total{result=\"delivered\"}", 6));
    assert_true (
        s_metric (c, "recado_alert_webhook_total{result=\"attempts\"}") == 7);
    assert_true (
        s_metric (c, "recado_alert_webhook_total{result=\"failed\"}") == 0);
    rcd_test_pipeline_passed (c->p);
    remove (cli_out);
    remove (python_out);
    free (cli);
    free (cli_out);
    free (python_out);
}

/*  Runs a statement on the server's maintenance database. */
static void
s_admin (const char *sql, const char *param)
{
    const char *base = getenv ("RECADO_TEST_PG");
    assert_non_null (base);
    char url[512];
    snprintf (url, sizeof url, "%s dbname=postgres", base);
    const char *params[] = {param};
    free (rcd_test_sql (url, sql, param ? 1 : 0, param ? params : NULL));
}

/*  The database of a pipeline, from its conninfo. */
static void
s_dbname (s_case_t *c, char *buf, size_t size)
{
    const char *at = strstr (rcd_test_pipeline_db (c->p), "dbname=");
    assert_non_null (at);
    snprintf (buf, size, "%.*s", (int)strcspn (at + 7, " "), at + 7);
}

/*  The database refuses connections and drops every session: the
    monitor says unhealthy, database_down fires once and resolves once
    when it is back, and the monitor never stops answering. Its webhook
    points at a socket that accepts and never answers: alerts still go
    out on the PUB socket at once. */
static void
test_database_away_fires_once_and_dead_webhook_never_blocks (void **state)
{
    s_case_t *c = s_case_alloc (state);
    int hole = c->hole = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (hole >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    assert_int_equal (bind (hole, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal (listen (hole, 16), 0); /* and never accept */
    assert_int_equal (getsockname (hole, (struct sockaddr *)&addr, &len), 0);
    char webhook[128];
    snprintf (webhook, sizeof webhook,
              "RECADO_ALERT_WEBHOOK_URL=http://127.0.0.1:%d/hook",
              ntohs (addr.sin_port));
    const char *const monitor[] = {"RECADO_DATABASE_DOWN_FOR_MS=500",
                                   "RECADO_ALERT_WEBHOOK_TIMEOUT_MS=10000",
                                   "RECADO_ALERT_WEBHOOK_RETRIES=5", webhook,
                                   NULL};
    s_case_start (c, "mr_dbaway", 1, monitor, NULL);
    int port = rcd_test_pipeline_monitor_port (c->p);
    assert_true (s_wait_metric (port, "recado_database_up", 1));
    char db[96], stmt[192];
    s_dbname (c, db, sizeof db);
    snprintf (stmt, sizeof stmt, "ALTER DATABASE %s ALLOW_CONNECTIONS false",
              db);
    s_admin (stmt, NULL);
    s_admin ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = $1",
             db);
    int64_t away = s_now_ms ();
    assert_true (s_tap_wait (&c->tap, "database_down", "firing", 1));
    fprintf (stderr, "  database_down fired %.1f s after the database went\n",
             (double)(s_now_ms () - away) / 1000.0);
    json_decref (s_wait_component (c, "database", "unhealthy"));
    long status = 0;
    json_t *component = s_health_component (c, "database", &status);
    assert_int_equal (status, 503);
    assert_string_equal (rcd_test_str (component, "status"), "unhealthy");
    assert_string_not_equal (rcd_test_str (component, "detail"), "connected");
    json_decref (component);
    assert_true (s_metric (c, "recado_database_up") == 0);
    assert_true (rcd_test_pipeline_running (c->p, RCD_TP_MONITOR, 0));

    snprintf (stmt, sizeof stmt, "ALTER DATABASE %s ALLOW_CONNECTIONS true",
              db);
    s_admin (stmt, NULL);
    int64_t back = s_now_ms ();
    assert_true (s_tap_wait (&c->tap, "database_down", "resolved", 1));
    /* the webhook is still busy with its first alert (10 s per attempt,
       five retries): the resolution did not wait for it (reconnecting
       takes rcd_db's backoff, at most 5 s) */
    int64_t took = s_now_ms () - back;
    fprintf (stderr, "  resolved %.1f s after the database came back\n",
             (double)took / 1000.0);
    assert_true (took < 8000);
    assert_true (
        s_metric (c, "recado_alert_webhook_total{result=\"delivered\"}") == 0);
    assert_true (s_wait_metric (
        port, "recado_alert_webhook_total{result=\"attempts\"}", 1));
    assert_true (s_wait_metric (port, "recado_database_up", 1));
    s_tap_quiet (&c->tap, S_QUIET_MS);
    s_tap_expect (&c->tap, "database_down", 1, 1);
    assert_true (rcd_test_pipeline_running (c->p, RCD_TP_MONITOR, 0));
    /* and it stops cleanly with a webhook request hanging */
    assert_int_equal (
        rcd_test_pipeline_stop (c->p, RCD_TP_MONITOR, 0, SIGTERM, S_WAIT_MS),
        0);
    rcd_test_pipeline_passed (c->p);
}

/*  ---- the flood ------------------------------------------------------ */

/*  Peak resident memory of a process in KiB (VmHWM), -1 when unknown. */
static long
s_peak_rss_kib (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = s_slurp (path);
    const char *at = text ? strstr (text, "VmHWM:") : NULL;
    long kib = at ? strtol (at + 6, NULL, 10) : -1;
    free (text);
    return kib;
}

#if defined(__SANITIZE_ADDRESS__)
#define S_RSS_LIMIT_KIB (512L * 1024) /* ASan's shadow and quarantine */
#else
#define S_RSS_LIMIT_KIB (64L * 1024)
#endif

/*  The flood's publisher: a raw PUB socket beating as flood/flood-1. */
typedef struct {
    zsock_t *pub;
    rcd_heartbeat_t hb;
    int http;      /* the monitor's HTTP port */
    double last;   /* last count read */
    int64_t moved; /* when it last changed, monotonic ms */
} s_flood_t;

static void
s_flood_beat (s_flood_t *f)
{
    f->hb.seq++;
    rcd_heartbeat_send (&f->hb, f->pub);
}

/*  The connection is up once a heartbeat counts. */
static bool
s_flood_connected (void *arg)
{
    s_flood_t *f = arg;
    s_flood_beat (f);
    return s_metric_at (f->http, "recado_service_up{service=\"flood\","
                                 "replica=\"flood-1\"}") == 1;
}

/*  The monitor has read everything: its count stood still for 500 ms. */
static bool
s_flood_drained (void *arg)
{
    s_flood_t *f = arg;
    s_flood_beat (f);
    double now = s_metric_at (
        f->http,
        "recado_events_total{service=\"flood\",kind=\"message.sent\"}");
    if (now != f->last) {
        f->last = now;
        f->moved = s_now_ms ();
    }
    return s_now_ms () - f->moved >= 500;
}

/*  The recado-monitor binary alone takes a flood of 100 000 events a
    second for 3 s, one frame in a hundred malformed: it keeps answering,
    counts what it read and what was malformed, and its peak memory stays
    under 64 MB (measured and printed; with AddressSanitizer, whose shadow
    memory counts too, under 512 MB). */
static void
test_flood_of_events_keeps_memory_bounded (void **state)
{
    s_case_t *c = s_case_alloc (state);
    c->db = rcd_test_db_create ("monitor_flood");
    s_flood_t f = {.http = rcd_test_free_port (),
                   .hb = {.service = "flood", .replica = "flood-1"},
                   .last = -1};
    int events_port = rcd_test_free_port ();
    char env_port[64], env_events[64], env_alerts[64], env_db[512];
    snprintf (env_port, sizeof env_port, "RECADO_MONITOR_PORT=%d", f.http);
    snprintf (env_events, sizeof env_events,
              "RECADO_EVENTS_BIND=tcp://127.0.0.1:%d", events_port);
    snprintf (env_alerts, sizeof env_alerts,
              "RECADO_ALERTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env_db, sizeof env_db, "DATABASE_URL=%s", c->db);
    const char *env[] = {env_port, env_events, env_alerts, env_db,
                         "RECADO_DB_POLL_MS=500",
                         /* a smaller quarantine: ASan builds only */
                         "ASAN_OPTIONS=quarantine_size_mb=16", NULL};
    char *bin = rcd_test_bin ("recado-monitor");
    char *log = s_scratch ("flood-monitor.log");
    const char *argv[] = {bin, NULL};
    pid_t pid = c->helpers[0] = rcd_test_spawn (argv, env, log);
    assert_true (pid > 0);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", f.http);
    assert_true (rcd_test_wait_http_ok (url, S_WAIT_MS));

    f.pub = zsock_new (ZMQ_PUB);
    assert_non_null (f.pub);
    zsock_set_sndhwm (f.pub, 0); /* we measure the monitor, not ourselves */
    assert_int_equal (zsock_connect (f.pub, "tcp://127.0.0.1:%d", events_port),
                      0);
    rcd_event_t ev = {.service = "flood",
                      .replica = "flood-1",
                      .kind = "message.sent",
                      .count = 1,
                      .value = 1234};
    char *body = NULL;
    size_t size = 0;
    assert_int_equal (rcd_event_encode (&ev, &body, &size), 0);
    assert_true (rcd_test_wait_until (s_flood_connected, &f, S_WAIT_MS));
    long before = s_peak_rss_kib (pid);

    void *sock = zsock_resolve (f.pub);
    const long rate = 100000, seconds = 3;
    long sent = 0, malformed = 0;
    int64_t start = s_now_ms (), next_beat = start;
    while (s_now_ms () - start < seconds * 1000) {
        int64_t now = s_now_ms ();
        if (now >= next_beat) {
            s_flood_beat (&f);
            next_beat = now + 200;
        }
        long due = (long)(now - start) * (rate / 1000);
        while (sent + malformed < due) {
            zmq_send (sock, "event", 5, ZMQ_SNDMORE);
            if ((sent + malformed) % 100 == 99) {
                zmq_send (sock, "\xc1garbage", 8, 0);
                malformed++;
            }
            else {
                zmq_send (sock, body, size, 0);
                sent++;
            }
        }
        struct timespec pace = {0, 200000}; /* the flood's own pace */
        nanosleep (&pace, NULL);
    }
    double took = (double)(s_now_ms () - start) / 1000.0;
    /* it answers at once while its queue drains */
    int64_t asked = s_now_ms ();
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    assert_int_equal (res.status, 200);
    rcd_test_http_free (&res);
    fprintf (stderr, "  /metrics answered in %lld ms right after the flood\n",
             (long long)(s_now_ms () - asked));
    f.moved = s_now_ms ();
    assert_true (rcd_test_wait_until (s_flood_drained, &f, 60000));
    double bad = s_metric_at (f.http, "recado_frames_malformed_total");
    long peak = s_peak_rss_kib (pid);
    fprintf (stderr,
             "  flood: %ld events + %ld malformed in %.1f s (%.0f frames/s); "
             "the monitor counted %.0f events and %.0f malformed; peak RSS "
             "%.1f MB (%.1f MB before the flood)\n",
             sent, malformed, took, (double)(sent + malformed) / took, f.last,
             bad, (double)peak / 1024.0, (double)before / 1024.0);
    assert_true (f.last > 0);
    assert_true (bad > 0);
    assert_true (peak > 0 && peak < S_RSS_LIMIT_KIB);
    assert_true (s_metric_at (f.http, "recado_window_messages{status=\"sent\","
                                      "window=\"1m\"}") > 0);
    assert_int_equal (rcd_test_stop (pid, SIGTERM, S_WAIT_MS), 0);
    c->helpers[0] = 0;
    free (body);
    zsock_destroy (&f.pub);
    remove (log);
    free (log);
    free (bin);
}

int
main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (
            test_gateway_down_fires_circuit_open_and_error_rate_once,
            s_teardown),
        cmocka_unit_test_teardown (
            test_offline_instance_fires_offline_backlog_oldest_and_stuck_once,
            s_teardown),
        cmocka_unit_test_teardown (
            test_dead_letters_stalled_lease_and_unknown_fire_once, s_teardown),
        cmocka_unit_test_teardown (
            test_killed_sender_and_frozen_scheduler_reach_every_subscriber,
            s_teardown),
        cmocka_unit_test_teardown (
            test_database_away_fires_once_and_dead_webhook_never_blocks,
            s_teardown),
        cmocka_unit_test_teardown (test_flood_of_events_keeps_memory_bounded,
                                   s_teardown),
    };
    int rc = cmocka_run_group_tests (tests, NULL, NULL);
    curl_global_cleanup ();
    return rc;
}

/*  test_dashboard - the monitor's dashboard (GET /) in a real browser.

    The whole pipeline runs as processes (rcd_test_pipeline, monitor on).
    Debian's chromium is driven through Debian's chromedriver over its
    WebDriver HTTP API (libcurl, jansson): no framework, no other
    language. The page is first opened on an idle pipeline (no tenant,
    instance or message); then a tenant with a capped and an uncapped
    instance sends messages through the API to the gateway simulator,
    which fails a fifth of the sends with 503, so that the error rate is
    up and an alert is active; then more messages go out while the page
    stays open. The tenant also has a campaign, posted through the API
    for a later day and paused (so nothing of it is sent or pending),
    a few of whose messages are then marked sent in PostgreSQL: the
    Campaigns panel must show its state, progress and remaining as the
    database has them ("no open campaign" on the idle pipeline).

    Console errors: every session asks for the browser log
    (goog:loggingPrefs browser=ALL); after each test every entry is
    printed and any SEVERE one fails it. Chromium logs as SEVERE an
    uncaught exception or rejection, a script that does not parse,
    console.error (the page writes every failed refresh there) and a
    resource that failed to load. test_console_errors_are_caught proves
    on broken pages that this catches what it must.

    Live numbers: the page is read back through the DOM until it shows
    what PostgreSQL holds (messages sent) and what the monitor answers
    (overall health, the active alerts, each capped instance's usage
    against its caps), with a throughput, an error rate and a chart, and
    it must keep refreshing (a refresh that throws stops its counter).

    Screenshots go to <build>/test-artifacts/ (RCD_TEST_ARTIFACTS):
    dashboard.png (desktop, 1280 px wide, whole page),
    dashboard-phone.png (a 390x844 phone at 3x, mobile emulation, where
    the viewport meta matters: what the phone shows first) and
    dashboard-phone-full.png (the same phone, whole page).

    Programs: /usr/bin/chromedriver and /usr/bin/chromium (packages
    chromium-driver and chromium, deploy/install-deps), or
    RECADO_CHROMEDRIVER / RECADO_CHROMIUM.
*/
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#ifndef RCD_TEST_ARTIFACTS
#define RCD_TEST_ARTIFACTS "test-artifacts"
#endif

#define S_WAIT_MS       20000
#define S_FIRST_BATCH   200
#define S_SECOND_BATCH  100
#define S_HOURLY_CAP    500
#define S_DAILY_CAP     900
#define S_AUDIENCE      12 /* the campaign's contacts */
#define S_CAMPAIGN_SENT 5  /* of them marked sent */

/*  Everything the tests share. */
typedef struct {
    rcd_test_pipeline_t *pipeline;
    char *key;           /* the tenant's API key */
    long long campaign;  /* its campaign, 0 before traffic */
    char monitor[64];    /* http://127.0.0.1:<port>/ */
    pid_t driver;        /* chromedriver */
    char driver_url[64]; /* http://127.0.0.1:<port> */
    char *driver_log;    /* its log file */
    char *session;       /* the open WebDriver session, or NULL */
    json_t *console;     /* browser log entries of the current session */
    int passed;          /* tests that ran to their end */
} s_fixture_t;

/*  Prints a step with the seconds since the program started. */
static void
s_note (const char *step)
{
    static struct timespec start;
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    if (!start.tv_sec)
        start = now;
    fprintf (stderr, "dashboard %5.1f s: %s\n",
             (double)(now.tv_sec - start.tv_sec) +
                 (double)(now.tv_nsec - start.tv_nsec) / 1e9,
             step);
}

/*  --- WebDriver over HTTP --- */

/*  Calls the driver and answers the "value" of a 200 answer (caller
    decrefs; never NULL). Fails the test on any other answer. */
static json_t *
s_wd (s_fixture_t *f, const char *method, const char *path, json_t *body)
{
    char url[512];
    snprintf (url, sizeof url, "%s%s", f->driver_url, path);
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    rcd_test_http_t res = rcd_test_http (method, url, NULL, text, NULL);
    free (text);
    json_t *answer = res.status ? json_loads (res.body, 0, NULL) : NULL;
    json_t *value = json_incref (json_object_get (answer, "value"));
    if (res.status != 200 || !value)
        fail_msg ("WebDriver %s %s: %ld %.2000s", method, path, res.status,
                  res.body);
    json_decref (answer);
    rcd_test_http_free (&res);
    return value;
}

/*  Opens a session: a desktop window, or a phone (mobile emulation: the
    viewport meta decides the layout width, as on a phone). */
static void
s_session_open (s_fixture_t *f, bool phone)
{
    assert_null (f->session);
    const char *chromium = getenv ("RECADO_CHROMIUM");
    if (!chromium)
        chromium = "/usr/bin/chromium";
    if (access (chromium, X_OK) != 0)
        fail_msg ("no %s: install Debian's chromium (deploy/install-deps)",
                  chromium);
    json_t *args =
        json_pack ("[s,s,s,s,s,s,s]", "--headless", "--no-sandbox",
                   "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                   "--hide-scrollbars", "--disable-background-networking");
    json_t *options =
        json_pack ("{s:s, s:o}", "binary", chromium, "args", args);
    /* exact viewports: a desktop 1280x1000, or a phone 390x844 at 3x
       that lays the page out as a phone does (viewport meta) */
    json_object_set_new (
        options, "mobileEmulation",
        json_pack ("{s:{s:i, s:i, s:f, s:b, s:b}}", "deviceMetrics", "width",
                   phone ? 390 : 1280, "height", phone ? 844 : 1000,
                   "pixelRatio", phone ? 3.0 : 1.0, "touch", phone, "mobile",
                   phone));
    json_t *caps =
        json_pack ("{s:{s:{s:s, s:o, s:{s:s}}}}", "capabilities", "alwaysMatch",
                   "browserName", "chrome", "goog:chromeOptions", options,
                   "goog:loggingPrefs", "browser", "ALL");
    json_t *value = s_wd (f, "POST", "/session", caps);
    const char *id = json_string_value (json_object_get (value, "sessionId"));
    assert_non_null (id);
    f->session = strdup (id);
    json_decref (value);
    json_decref (f->console);
    f->console = json_array ();
    s_note (phone ? "phone session open" : "desktop session open");
}

/*  "/session/<id><suffix>" */
static const char *
s_path (s_fixture_t *f, const char *suffix)
{
    static char path[256];
    snprintf (path, sizeof path, "/session/%s%s", f->session, suffix);
    return path;
}

static void
s_session_close (s_fixture_t *f)
{
    if (!f->session)
        return;
    char url[256];
    snprintf (url, sizeof url, "%s/session/%s", f->driver_url, f->session);
    rcd_test_http_t res = rcd_test_http ("DELETE", url, NULL, NULL, NULL);
    rcd_test_http_free (&res);
    free (f->session);
    f->session = NULL;
}

static void
s_navigate (s_fixture_t *f, const char *url)
{
    json_decref (
        s_wd (f, "POST", s_path (f, "/url"), json_pack ("{s:s}", "url", url)));
}

/*  Runs a script in the page and answers its value (caller decrefs). */
static json_t *
s_exec (s_fixture_t *f, const char *script)
{
    return s_wd (f, "POST", s_path (f, "/execute/sync"),
                 json_pack ("{s:s, s:[]}", "script", script, "args"));
}

/*  Moves the browser log gathered since the last call into f->console
    (chromedriver hands each entry out once). */
static void
s_console_collect (s_fixture_t *f)
{
    json_t *entries = s_wd (f, "POST", s_path (f, "/se/log"),
                            json_pack ("{s:s}", "type", "browser"));
    assert_true (json_is_array (entries));
    json_array_extend (f->console, entries);
    json_decref (entries);
}

/*  Prints every browser log entry and answers how many are errors. */
static int
s_console_errors (s_fixture_t *f)
{
    s_console_collect (f);
    int errors = 0;
    size_t i;
    json_t *entry;
    json_array_foreach (f->console, i, entry)
    {
        const char *level =
            json_string_value (json_object_get (entry, "level"));
        bool error = level && strcmp (level, "SEVERE") == 0;
        errors += error;
        fprintf (stderr, "browser console %s: %s\n", level ? level : "?",
                 json_string_value (json_object_get (entry, "message")));
    }
    return errors;
}

static void
s_assert_no_console_error (s_fixture_t *f)
{
    int errors = s_console_errors (f);
    if (errors)
        fail_msg ("%d console error(s) in the dashboard (printed above)",
                  errors);
}

static int
s_b64 (int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/*  Saves a PNG screenshot as RCD_TEST_ARTIFACTS/name: the viewport
    (WebDriver's screenshot), or the whole page (chromedriver's CDP
    passthrough, Page.captureScreenshot beyond the viewport). Checks
    that it is a PNG of the page's size in device pixels. */
static void
s_screenshot (s_fixture_t *f, const char *name, bool full_page)
{
    json_t *m = s_exec (f, "var d = document.documentElement;"
                           "return [innerWidth, innerHeight, d.scrollWidth,"
                           "        d.scrollHeight, devicePixelRatio];");
    double dpr = json_number_value (json_array_get (m, 4));
    long css_w =
        (long)json_integer_value (json_array_get (m, full_page ? 2 : 0));
    long css_h =
        (long)json_integer_value (json_array_get (m, full_page ? 3 : 1));
    json_decref (m);
    json_t *value;
    if (full_page)
        value =
            s_wd (f, "POST", s_path (f, "/goog/cdp/execute"),
                  json_pack ("{s:s, s:{s:s, s:b, s:{s:i, s:i, s:i, s:i, s:i}}}",
                             "cmd", "Page.captureScreenshot", "params",
                             "format", "png", "captureBeyondViewport", 1,
                             "clip", "x", 0, "y", 0, "width", (int)css_w,
                             "height", (int)css_h, "scale", 1));
    else
        value = s_wd (f, "GET", s_path (f, "/screenshot"), NULL);
    const char *text = json_is_object (value)
                           ? json_string_value (json_object_get (value, "data"))
                           : json_string_value (value);
    assert_non_null (text);
    size_t len = strlen (text);
    unsigned char *png = malloc (len / 4 * 3 + 3);
    assert_non_null (png);
    size_t n = 0;
    unsigned int acc = 0;
    int bits = 0;
    bool base64 = true;
    for (size_t i = 0; i < len && text[i] != '='; i++) {
        int v = s_b64 ((unsigned char)text[i]);
        base64 = base64 && v >= 0;
        acc = (acc << 6) | (unsigned int)(v & 63);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            png[n++] = (unsigned char)(acc >> bits);
        }
    }
    json_decref (value);
    /* signature, then the IHDR chunk's big-endian width and height */
    bool is_png = base64 && n > 24 && memcmp (png, "\x89PNG\r\n\x1a\n", 8) == 0;
    long w = is_png
                 ? (long)png[16] << 24 | png[17] << 16 | png[18] << 8 | png[19]
                 : 0;
    long h = is_png
                 ? (long)png[20] << 24 | png[21] << 16 | png[22] << 8 | png[23]
                 : 0;
    char path[512];
    snprintf (path, sizeof path, "%s/%s", RCD_TEST_ARTIFACTS, name);
    bool saved = false;
    if (is_png && (mkdir (RCD_TEST_ARTIFACTS, 0755) == 0 || errno == EEXIST)) {
        FILE *file = fopen (path, "wb");
        saved = file && fwrite (png, 1, n, file) == n;
        saved = file && fclose (file) == 0 && saved;
    }
    free (png);
    assert_true (is_png);
    assert_true (saved);
    assert_int_equal (w, (long)(css_w * dpr + 0.5));
    assert_int_equal (h, (long)(css_h * dpr + 0.5));
    fprintf (stderr, "screenshot: %s (%ldx%ld)\n", path, w, h);
}

/*  --- what the page shows and what it should --- */

/*  The page's numbers, read back through the DOM. */
static const char s_snapshot_js[] =
    "var q = function (s) { var e = document.querySelector(s);"
    "  return e ? e.textContent.trim() : null; };"
    "var all = function (s, f) {"
    "  return Array.prototype.map.call(document.querySelectorAll(s), f); };"
    "return {polls: +document.body.dataset.polls, overall: q('#overall'),"
    "  err: q('#err'), tput: q('#tput'), errrate: q('#errrate'),"
    "  backlog: q('#backlog'), nalerts: q('#nalerts'),"
    "  sent: q('#queue tr[data-status=\"sent\"] td.total'),"
    "  capped_hour: q('#instances tr[data-name=\"capped\"] td.hour > span'),"
    "  capped_day: q('#instances tr[data-name=\"capped\"] td.day > span'),"
    "  free_hour: q('#instances tr[data-name=\"free\"] td.hour'),"
    "  campaigns_none: q('#campaigns td.mute'),"
    "  campaign_rows: document.querySelectorAll('#campaigns tr[data-id]')"
    "    .length,"
    "  campaign_id: (document.querySelector('#campaigns tr[data-id]') ||"
    "    {dataset: {}}).dataset.id || null,"
    "  campaign_state: q('#campaigns tr[data-id] td.state'),"
    "  campaign_done: q('#campaigns tr[data-id] td.progress > span'),"
    "  campaign_left: q('#campaigns tr[data-id] td.remaining'),"
    "  campaign_bar: (document.querySelector("
    "    '#campaigns tr[data-id] .meter i') || {style: {}}).style.width"
    "    || null,"
    "  services: all('#components tr[data-component^=\"service:\"]',"
    "    function (r) { return r.dataset.component; }).length,"
    "  bars: document.querySelectorAll('#chart rect').length,"
    "  alerts: all('#alerts tr[data-rule]',"
    "    function (r) { return r.dataset.rule; }).join(','),"
    "  overflowing: all('.scroll', function (e) {"
    "    return e.scrollWidth > e.clientWidth + 1; }).filter(Boolean).length,"
    "  width: window.innerWidth,"
    "  scroll_width: document.documentElement.scrollWidth,"
    "  font_px: parseFloat(getComputedStyle(document.body).fontSize)};";

/*  A number as the page writes it ("1,234.5" or "22.9 %"); -1 for "-"
    or a missing element. */
static double
s_page_num (json_t *snap, const char *name)
{
    const char *text = json_string_value (json_object_get (snap, name));
    if (!text)
        return -1;
    char digits[64];
    size_t n = 0;
    for (const char *c = text; *c && n + 1 < sizeof digits; c++)
        if (*c != ',')
            digits[n++] = *c;
    digits[n] = '\0';
    char *end;
    double v = strtod (digits, &end);
    return end == digits ? -1 : v;
}

static json_t *
s_monitor_json (s_fixture_t *f, const char *path)
{
    char url[128];
    snprintf (url, sizeof url, "%s%s", f->monitor, path);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    json_t *json = res.status == 200 ? json_loads (res.body, 0, NULL) : NULL;
    rcd_test_http_free (&res);
    return json;
}

/*  One wait for the page to show what the monitor and the database say. */
typedef struct {
    s_fixture_t *f;
    int min_polls; /* complete refreshes the page must have done */
    bool traffic;  /* messages went out: rates, chart and instances */
    json_t *snap;  /* last page snapshot */
    char why[512]; /* why the last look did not match */
} s_live_t;

static bool
s_mismatch (s_live_t *live, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (live->why, sizeof live->why, fmt, ap);
    va_end (ap);
    return false;
}

/*  The Campaigns panel shows what PostgreSQL holds: none before the
    traffic, then the tenant's paused campaign with its total, done
    (total - remaining), remaining and a bar that wide. */
static bool
s_campaign_is_shown (s_live_t *live, json_t *snap)
{
    s_fixture_t *f = live->f;
    long long rows =
        json_integer_value (json_object_get (snap, "campaign_rows"));
    if (!f->campaign) {
        const char *none =
            json_string_value (json_object_get (snap, "campaigns_none"));
        if (rows != 0 || !none || strcmp (none, "no open campaign") != 0)
            return s_mismatch (live, "%lld campaigns shown, none open", rows);
        return true;
    }
    char id[24];
    snprintf (id, sizeof id, "%lld", f->campaign);
    const char *p[] = {id};
    const char *db = rcd_test_pipeline_db (f->pipeline);
    long long total = rcd_test_sql_int (
        db, "SELECT messages FROM campaigns WHERE id = $1::bigint", 1, p);
    long long left = rcd_test_sql_int (
        db,
        "SELECT count(*) FROM messages WHERE campaign_id = $1::bigint"
        " AND status IN ('pending', 'paused', 'sending', 'unknown')",
        1, p);
    char *state = rcd_test_sql (
        db, "SELECT state FROM campaigns WHERE id = $1::bigint", 1, p);
    char done[64], bar[32];
    snprintf (done, sizeof done, "%lld / %lld", total - left, total);
    snprintf (bar, sizeof bar, "%.1f%%",
              total > 0 ? 100.0 * (double)(total - left) / (double)total : 0);
    const char *shown_id =
        json_string_value (json_object_get (snap, "campaign_id"));
    const char *shown_state =
        json_string_value (json_object_get (snap, "campaign_state"));
    const char *shown_done =
        json_string_value (json_object_get (snap, "campaign_done"));
    const char *shown_bar =
        json_string_value (json_object_get (snap, "campaign_bar"));
    bool ok = rows == 1 && shown_id && strcmp (shown_id, id) == 0 && state &&
              shown_state && strcmp (shown_state, state) == 0 && shown_done &&
              strcmp (shown_done, done) == 0 &&
              s_page_num (snap, "campaign_left") == (double)left && shown_bar &&
              strcmp (shown_bar, bar) == 0;
    if (!ok)
        s_mismatch (live,
                    "campaign %s shown as %s, %s done, %s left, bar %s;"
                    " database %s, %s done, %lld left, bar %s",
                    shown_id, shown_state, shown_done,
                    json_string_value (json_object_get (snap, "campaign_left")),
                    shown_bar, state, done, left, bar);
    free (state);
    return ok;
}

static bool
s_page_is_live (void *arg)
{
    s_live_t *live = arg;
    s_fixture_t *f = live->f;
    json_decref (live->snap);
    live->snap = s_exec (f, s_snapshot_js);
    json_t *snap = live->snap;
    long long polls = json_integer_value (json_object_get (snap, "polls"));
    if (polls < live->min_polls)
        return s_mismatch (live, "%lld refreshes, want %d", polls,
                           live->min_polls);
    const char *err = json_string_value (json_object_get (snap, "err"));
    if (err && *err)
        return s_mismatch (live, "page says: %s", err);
    long long sent = rcd_test_pipeline_count (f->pipeline, "sent");
    if (s_page_num (snap, "sent") != (double)sent)
        return s_mismatch (live, "page shows %s sent, database %lld",
                           json_string_value (json_object_get (snap, "sent")),
                           sent);
    if (live->traffic && !(s_page_num (snap, "tput") > 0))
        return s_mismatch (live, "no throughput shown");
    if (live->traffic && !(s_page_num (snap, "errrate") > 0))
        return s_mismatch (live, "no error rate shown");
    if (live->traffic &&
        json_integer_value (json_object_get (snap, "bars")) < 1)
        return s_mismatch (live, "empty chart");
    if (json_integer_value (json_object_get (snap, "services")) < 4)
        return s_mismatch (live, "fewer than 4 services shown");
    if (!s_campaign_is_shown (live, snap))
        return false;

    json_t *health = s_monitor_json (f, "health");
    json_t *alerts = s_monitor_json (f, "alerts");
    json_t *stats = s_monitor_json (f, "queue-stats");
    bool ok = false;
    if (!health || !alerts || !stats) {
        s_mismatch (live, "the monitor did not answer");
        goto done;
    }
    const char *status = json_string_value (json_object_get (health, "status"));
    const char *overall = json_string_value (json_object_get (snap, "overall"));
    if (!status || !overall || strcmp (status, overall) != 0) {
        s_mismatch (live, "page shows %s, /health %s", overall, status);
        goto done;
    }
    char rules[512] = "";
    size_t i;
    json_t *alert;
    json_array_foreach (alerts, i, alert)
    {
        const char *rule = json_string_value (json_object_get (alert, "rule"));
        snprintf (rules + strlen (rules), sizeof rules - strlen (rules), "%s%s",
                  i ? "," : "", rule ? rule : "");
    }
    const char *shown = json_string_value (json_object_get (snap, "alerts"));
    if (!shown || strcmp (shown, rules) != 0 ||
        s_page_num (snap, "nalerts") != (double)json_array_size (alerts)) {
        s_mismatch (live, "page shows alerts [%s], /alerts [%s]", shown, rules);
        goto done;
    }
    if (live->traffic) {
        json_t *inst;
        json_array_foreach (json_object_get (stats, "instances"), i, inst)
        {
            const char *name =
                json_string_value (json_object_get (inst, "name"));
            if (!name || strcmp (name, "capped") != 0)
                continue;
            char hour[64], day[64];
            snprintf (hour, sizeof hour, "%lld / %d",
                      (long long)json_integer_value (
                          json_object_get (inst, "hour_used")),
                      S_HOURLY_CAP);
            snprintf (day, sizeof day, "%lld / %d",
                      (long long)json_integer_value (
                          json_object_get (inst, "day_used")),
                      S_DAILY_CAP);
            const char *ph =
                json_string_value (json_object_get (snap, "capped_hour"));
            const char *pd =
                json_string_value (json_object_get (snap, "capped_day"));
            if (!ph || !pd || strcmp (ph, hour) != 0 || strcmp (pd, day) != 0) {
                s_mismatch (live, "capped shows %s and %s, monitor %s and %s",
                            ph, pd, hour, day);
                goto done;
            }
        }
        const char *free_hour =
            json_string_value (json_object_get (snap, "free_hour"));
        if (!free_hour || !strstr (free_hour, "no cap")) {
            s_mismatch (live, "uncapped instance shows %s", free_hour);
            goto done;
        }
    }
    ok = true;
done:
    json_decref (health);
    json_decref (alerts);
    json_decref (stats);
    return ok;
}

/*  Waits for the page to show live numbers; answers the last snapshot
    (caller decrefs). */
static json_t *
s_wait_live (s_fixture_t *f, int min_polls, bool traffic)
{
    s_live_t live = {.f = f, .min_polls = min_polls, .traffic = traffic};
    if (!rcd_test_wait_until (s_page_is_live, &live, S_WAIT_MS)) {
        char page[2048];
        char *text = json_dumps (live.snap, JSON_COMPACT);
        snprintf (page, sizeof page, "%s", text ? text : "?");
        free (text);
        json_decref (live.snap);
        s_console_errors (f);
        fail_msg ("the dashboard never showed live numbers: %s\npage: %s",
                  live.why, page);
    }
    s_note ("the page shows live numbers");
    return live.snap;
}

static void
s_send (s_fixture_t *f, int first, int count)
{
    json_t *items = rcd_test_pipeline_messages (first, count, "dash", NULL);
    assert_int_equal (rcd_test_pipeline_submit (f->pipeline, f->key, items),
                      count);
    assert_true (rcd_test_pipeline_wait_settled (f->pipeline, S_WAIT_MS));
    s_note ("messages settled");
}

static bool
s_alert_active (void *arg)
{
    json_t *alerts = s_monitor_json (arg, "alerts");
    bool active = json_array_size (alerts) > 0;
    json_decref (alerts);
    return active;
}

/*  A campaign of S_AUDIENCE contacts for a later day, paused at once (so
    none of its messages is pending), S_CAMPAIGN_SENT of them then
    marked sent as if sent before the pause. */
static void
s_campaign_start (s_fixture_t *f)
{
    int port = rcd_test_pipeline_api_port (f->pipeline);
    json_decref (rcd_test_api_expect (port, 200, "PUT", "/v1/templates/promo",
                                      f->key,
                                      "{\"variations\":[\"Oi {{name}}\"]}"));
    char body[2048];
    size_t len = (size_t)snprintf (
        body, sizeof body,
        "{\"name\":\"Black Friday\",\"template\":\"promo\","
        "\"send_at\":\"2030-01-01T12:00:00Z\",\"audience\":[");
    for (int i = 0; i < S_AUDIENCE; i++)
        len += (size_t)snprintf (body + len, sizeof body - len,
                                 "%s{\"phone\":\"+55119860%05d\","
                                 "\"vars\":{\"name\":\"C%d\"}}",
                                 i ? "," : "", i, i);
    snprintf (body + len, sizeof body - len, "]}");
    json_t *a =
        rcd_test_api_expect (port, 201, "POST", "/v1/campaigns", f->key, body);
    f->campaign = json_integer_value (json_object_get (a, "id"));
    json_decref (a);
    assert_true (f->campaign > 0);
    char path[80];
    snprintf (path, sizeof path, "/v1/campaigns/%lld/pause", f->campaign);
    json_decref (rcd_test_api_expect (port, 200, "POST", path, f->key, NULL));
    char id[24], n[24];
    snprintf (id, sizeof id, "%lld", f->campaign);
    snprintf (n, sizeof n, "%d", S_CAMPAIGN_SENT);
    const char *p[] = {id, n};
    free (
        rcd_test_sql (rcd_test_pipeline_db (f->pipeline),
                      "UPDATE messages SET status = 'sent', sent_at = now(),"
                      " updated_at = now() WHERE id IN (SELECT id FROM messages"
                      " WHERE campaign_id = $1::bigint AND status = 'paused'"
                      " ORDER BY id LIMIT $2::int)",
                      2, p));
    s_note ("campaign posted and paused");
}

/*  A tenant, a capped and an uncapped instance, a simulator that fails
    a fifth of the sends with 503 (so the error rate is up and an alert
    fires), and the first batch of messages. */
static void
s_traffic_start (s_fixture_t *f)
{
    f->key = rcd_test_pipeline_tenant (f->pipeline, "dashboard");
    char body[256];
    snprintf (body, sizeof body,
              "{\"name\":\"capped\",\"provider\":\"evolution\","
              "\"api_key\":\"sim-key\",\"rate_per_second\":100,"
              "\"hourly_cap\":%d,\"daily_cap\":%d}",
              S_HOURLY_CAP, S_DAILY_CAP);
    rcd_test_pipeline_instance (f->pipeline, f->key, body);
    rcd_test_pipeline_evolution (f->pipeline, f->key, "free", 100);
    /* a fifth of the sends fail with 503 and are retried: error rate up */
    assert_int_equal (rcd_gwsim_configure (rcd_test_pipeline_sim (f->pipeline),
                                           "{\"error_rates\":{\"5xx\":0.2}}"),
                      0);
    s_campaign_start (f);
    s_send (f, 0, S_FIRST_BATCH);
    assert_true (rcd_test_wait_until (s_alert_active, f, S_WAIT_MS));
    s_note ("first batch settled, an alert is active");
}

/*  --- fixture --- */

static int
setup (void **state)
{
    s_fixture_t *f = calloc (1, sizeof *f);
    assert_non_null (f);
    *state = f;
    const char *driver = getenv ("RECADO_CHROMEDRIVER");
    if (!driver)
        driver = "/usr/bin/chromedriver";
    if (access (driver, X_OK) != 0)
        fail_msg ("no %s: install Debian's chromium-driver "
                  "(deploy/install-deps)",
                  driver);

    s_note ("start");
    /* quick retries and no recipient pacing, so that a message the
       simulator fails settles soon; the monitor polls PostgreSQL often,
       so that the page follows */
    static const char *const env[] = {"RECADO_RETRY_BASE_MS=20",
                                      "RECADO_RETRY_CAP_MS=200",
                                      "RECADO_RECIPIENT_INTERVAL_MS=0",
                                      "RECADO_POLL_MS=20",
                                      "RECADO_BATCH_WAIT_MS=5",
                                      "RECADO_DB_POLL_MS=500",
                                      NULL};
    rcd_test_pipeline_opts_t opts = {
        .name = "dashboard", .monitor = true, .env = env};
    f->pipeline = rcd_test_pipeline_new (&opts);
    s_note ("pipeline ready");
    snprintf (f->monitor, sizeof f->monitor, "http://127.0.0.1:%d/",
              rcd_test_pipeline_monitor_port (f->pipeline));
    int port = rcd_test_free_port ();
    snprintf (f->driver_url, sizeof f->driver_url, "http://127.0.0.1:%d", port);
    char port_arg[32];
    snprintf (port_arg, sizeof port_arg, "--port=%d", port);
    const char *argv[] = {driver, port_arg, NULL};
    /* chromedriver logs beside the pipeline's processes */
    const char *monitor_log =
        rcd_test_pipeline_log (f->pipeline, RCD_TP_MONITOR, 0);
    const char *slash = strrchr (monitor_log, '/');
    assert_non_null (slash);
    int dir_len = (int)(slash - monitor_log);
    size_t size = (size_t)dir_len + sizeof "/chromedriver.log";
    f->driver_log = malloc (size);
    assert_non_null (f->driver_log);
    snprintf (f->driver_log, size, "%.*s/chromedriver.log", dir_len,
              monitor_log);
    f->driver = rcd_test_spawn (argv, NULL, f->driver_log);
    assert_true (f->driver > 0);
    char status[96];
    snprintf (status, sizeof status, "%s/status", f->driver_url);
    if (!rcd_test_wait_http_ok (status, S_WAIT_MS))
        fail_msg ("chromedriver did not start (log: %s)", f->driver_log);
    s_note ("chromedriver ready");
    return 0;
}

static int
teardown (void **state)
{
    s_fixture_t *f = *state;
    s_session_close (f);
    if (f->driver > 0)
        rcd_test_stop (f->driver, SIGTERM, 5000);
    if (f->passed == 3)
        rcd_test_pipeline_passed (f->pipeline);
    json_decref (f->console);
    free (f->driver_log);
    free (f->key);
    rcd_test_pipeline_destroy (&f->pipeline);
    free (f);
    return 0;
}

/*  After each test: a test that failed leaves its session open. */
static int
s_after (void **state)
{
    s_session_close (*state);
    return 0;
}

/*  --- tests --- */

static bool
s_has_console_error (void *arg)
{
    s_fixture_t *f = arg;
    s_console_collect (f);
    size_t i;
    json_t *entry;
    json_array_foreach (f->console, i, entry)
    {
        const char *level =
            json_string_value (json_object_get (entry, "level"));
        if (level && strcmp (level, "SEVERE") == 0)
            return true;
    }
    return false;
}

/*  Opens url (or runs script in the page when url is NULL) and asserts
    that the detector sees an error; then forgets the log. */
static void
s_expect_console_error (s_fixture_t *f, const char *url, const char *script)
{
    if (url)
        s_navigate (f, url);
    else
        json_decref (s_exec (f, script));
    assert_true (rcd_test_wait_until (s_has_console_error, f, 5000));
    assert_true (s_console_errors (f) >= 1);
    json_decref (f->console);
    f->console = json_array ();
}

/*  The detector works: an uncaught exception, console.error and a
    request the monitor answers 404 are all caught, and a clean page is
    not. If chromedriver stopped handing out the browser log, the other
    tests could pass on a broken page; this one would fail. */
static void
test_console_errors_are_caught (void **state)
{
    s_fixture_t *f = *state;
    fprintf (stderr, "(the console errors printed next are deliberate)\n");
    s_session_open (f, false);
    s_navigate (f, "data:text/html,<p>ok</p><script>console.log('fine')"
                   "</script>");
    assert_int_equal (s_console_errors (f), 0);
    s_expect_console_error (
        f, "data:text/html,<script>no_such_function()</script>", NULL);
    s_expect_console_error (
        f, "data:text/html,<script>console.error('bad')</script>", NULL);
    /* in the dashboard itself: an endpoint that is not there */
    s_navigate (f, f->monitor);
    s_expect_console_error (f, NULL, "fetch('no-such-endpoint'); return 1;");
    f->passed++;
}

/*  Desktop, at the page's own pace (every 3 s): first an idle pipeline
    (no tenant, no instance, no message), then traffic and an alert,
    then more traffic while the page stays open; its numbers must follow
    without a reload, with no console error in any of these states. */
static void
test_dashboard_desktop (void **state)
{
    s_fixture_t *f = *state;
    s_session_open (f, false);
    s_navigate (f, f->monitor);
    json_t *title = s_wd (f, "GET", s_path (f, "/title"), NULL);
    assert_string_equal (json_string_value (title), "recado monitor");
    json_decref (title);
    json_t *snap = s_wait_live (f, 1, false);
    long long polls = json_integer_value (json_object_get (snap, "polls"));
    json_decref (snap);

    s_traffic_start (f);
    snap = s_wait_live (f, (int)polls + 1, true);
    polls = json_integer_value (json_object_get (snap, "polls"));
    json_decref (snap);

    /* more traffic while the page stays open */
    s_send (f, S_FIRST_BATCH, S_SECOND_BATCH);
    snap = s_wait_live (f, (int)polls + 1, true);
    polls = json_integer_value (json_object_get (snap, "polls"));
    json_decref (snap);
    /* one more refresh of the same numbers: nothing breaks on a repeat */
    json_decref (s_wait_live (f, (int)polls + 1, true));
    s_screenshot (f, "dashboard.png", true);
    s_assert_no_console_error (f);
    f->passed++;
}

/*  A phone (390x844 CSS pixels at 3x, refreshing every second): live
    numbers over several refreshes, nothing wider than the screen, no
    table that needs scrolling sideways, body text at least 14 px, no
    console error, screenshots. */
static void
test_dashboard_phone (void **state)
{
    s_fixture_t *f = *state;
    if (!f->key)
        s_traffic_start (f);
    s_session_open (f, true);
    char url[128];
    snprintf (url, sizeof url, "%s?refresh=1", f->monitor);
    s_navigate (f, url);
    json_t *snap = s_wait_live (f, 4, true);
    assert_int_equal (json_integer_value (json_object_get (snap, "width")),
                      390);
    long long scroll =
        json_integer_value (json_object_get (snap, "scroll_width"));
    if (scroll > 390)
        fail_msg ("the page is %lld px wide on a 390 px phone", scroll);
    assert_int_equal (
        json_integer_value (json_object_get (snap, "overflowing")), 0);
    assert_true (json_number_value (json_object_get (snap, "font_px")) >= 14);
    json_decref (snap);
    s_screenshot (f, "dashboard-phone.png", false);
    s_screenshot (f, "dashboard-phone-full.png", true);
    s_assert_no_console_error (f);
    f->passed++;
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown (test_console_errors_are_caught, s_after),
        cmocka_unit_test_teardown (test_dashboard_desktop, s_after),
        cmocka_unit_test_teardown (test_dashboard_phone, s_after),
    };
    return cmocka_run_group_tests (tests, setup, teardown);
}

/*  test_e2e - the whole pipeline as separate processes (rcd_test_pipeline:
    the five services, two senders, the gateway simulator in process),
    real PostgreSQL, ZeroMQ over tcp on loopback, HTTP on loopback. 1000 messages go in through the API; each
    must reach the simulator exactly once and end 'sent'. Every process
    logs JSON lines; the trace id a message got at ingest is on the
    ingestor's line and on the sender's, and no log shows a phone. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rcd_test.h"
#include "rcd_test_pipeline.h"

#define N_SINGLE 200
#define N_BATCH  800
#define N_TOTAL  (N_SINGLE + N_BATCH)

static int
setup (void **state)
{
    rcd_test_pipeline_opts_t opts = {
        .name = "e2e", .schedulers = 1, .senders = 2, .monitor = true};
    *state = rcd_test_pipeline_new (&opts);
    return 0;
}

static int
teardown (void **state)
{
    rcd_test_pipeline_t *p = *state;
    rcd_test_pipeline_destroy (&p);
    return 0;
}

/*  POSTs body with key and extra header lines (may be NULL) and answers
    the parsed JSON (caller decrefs), asserting the status. */
static json_t *
s_post_with (const char *url, const char *key, const char *body, long status,
             const char *const *headers)
{
    rcd_test_http_t res = rcd_test_http ("POST", url, key, body, headers);
    if (res.status != status)
        fail_msg ("POST %s: %ld %s", url, res.status, res.body);
    json_t *json = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    assert_non_null (json);
    return json;
}

static json_t *
s_post (const char *url, const char *key, const char *body, long status)
{
    return s_post_with (url, key, body, status, NULL);
}

static json_t *
s_get (const char *url, const char *key)
{
    rcd_test_http_t res = rcd_test_http ("GET", url, key, NULL, NULL);
    if (res.status != 200)
        fail_msg ("GET %s: %ld %s", url, res.status, res.body);
    json_t *json = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    assert_non_null (json);
    return json;
}

/*  --- logs --- */

#define S_TRACE_GIVEN "0af7651916cd43dd8448eb211c80319c"

/*  Every line of a process's log, parsed: each must be one JSON object
    with the keys every line has (rcd_log.h). Caller decrefs. */
static json_t *
s_log_lines (rcd_test_pipeline_t *p, rcd_tp_kind_t kind, int index,
             const char *service)
{
    const char *path = rcd_test_pipeline_log (p, kind, index);
    FILE *file = fopen (path, "r");
    if (!file)
        fail_msg ("cannot read %s", path);
    json_t *lines = json_array ();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline (&line, &cap, file)) > 0) {
        json_error_t err;
        json_t *obj = json_loadb (line, (size_t)len, 0, &err);
        const char *keys[] = {"time", "level", "service", "event"};
        for (size_t k = 0; k < 4; k++)
            if (!json_is_string (json_object_get (obj, keys[k])))
                fail_msg ("%s: no \"%s\" in %s", path, keys[k], line);
        if (strcmp (json_string_value (json_object_get (obj, "service")),
                    service) != 0)
            fail_msg ("%s: not a %s line: %s", path, service, line);
        json_array_append_new (lines, obj);
    }
    free (line);
    fclose (file);
    assert_true (json_array_size (lines) > 0);
    return lines;
}

/*  The line of lines with this event about message id (0: any), or
    NULL. Borrowed. */
static json_t *
s_log_find (json_t *lines, const char *event, long long id)
{
    size_t i;
    json_t *line;
    json_array_foreach (lines, i, line)
    {
        json_t *fields = json_object_get (line, "fields");
        if (strcmp (json_string_value (json_object_get (line, "event")),
                    event) == 0 &&
            (id == 0 ||
             json_integer_value (json_object_get (fields, "message_id")) == id))
            return line;
    }
    return NULL;
}

static const char *
s_trace (json_t *line)
{
    return json_string_value (json_object_get (line, "trace_id"));
}

/*  Fails when a log shows a phone: a '+' and 8 digits or more, or the
    digits of any number the test sent. */
static void
s_assert_no_phone (rcd_test_pipeline_t *p, rcd_tp_kind_t kind, int index,
                   char (*phones)[16], int nphones)
{
    const char *path = rcd_test_pipeline_log (p, kind, index);
    FILE *file = fopen (path, "r");
    assert_non_null (file);
    char *line = NULL;
    size_t cap = 0;
    while (getline (&line, &cap, file) > 0) {
        for (const char *plus = strchr (line, '+'); plus;
             plus = strchr (plus + 1, '+'))
            if (strspn (plus + 1, "0123456789") >= 8)
                fail_msg ("%s shows a phone: %s", path, line);
        for (int i = 0; i < nphones; i++)
            if (strstr (line, phones[i]))
                fail_msg ("%s shows %s: %s", path, phones[i], line);
    }
    free (line);
    fclose (file);
}

typedef struct {
    const char *db;
    long long want;
} sent_wait_t;

static bool
s_all_sent (void *arg)
{
    sent_wait_t *w = arg;
    return rcd_test_sql_int (w->db,
                             "SELECT count(*) FROM messages "
                             "WHERE status = 'sent'",
                             0, NULL) >= w->want;
}

typedef struct {
    const char *url;
    const char *needle;
} metric_wait_t;

static bool
s_metrics_show (void *arg)
{
    metric_wait_t *w = arg;
    rcd_test_http_t res = rcd_test_http ("GET", w->url, NULL, NULL, NULL);
    bool found = res.status == 200 && strstr (res.body, w->needle);
    rcd_test_http_free (&res);
    return found;
}

static void
test_thousand_messages_reach_the_gateway_exactly_once (void **state)
{
    rcd_test_pipeline_t *p = *state;
    const char *db = rcd_test_pipeline_db (p);
    char api[64], monitor[64], url[256];
    snprintf (api, sizeof api, "http://127.0.0.1:%d",
              rcd_test_pipeline_api_port (p));
    snprintf (monitor, sizeof monitor, "http://127.0.0.1:%d",
              rcd_test_pipeline_monitor_port (p));
    const char *sim = rcd_gwsim_url (rcd_test_pipeline_sim (p));

    /* the admin creates a tenant, the tenant registers an instance */
    snprintf (url, sizeof url, "%s/v1/tenants", api);
    json_t *tenant =
        s_post (url, RCD_TP_ADMIN_KEY, "{\"name\":\"e2e tenant\"}", 201);
    char *key =
        strdup (json_string_value (json_object_get (tenant, "api_key")));
    json_decref (tenant);
    char body[512];
    snprintf (body, sizeof body,
              "{\"name\":\"sim\",\"provider\":\"evolution\",\"base_url\":"
              "\"%s\",\"api_key\":\"sim-key\",\"rate_per_second\":1000}",
              sim);
    snprintf (url, sizeof url, "%s/v1/instances", api);
    json_decref (s_post (url, key, body, 201));

    /* 200 single messages, then one batch of 800; the first comes with
       a W3C traceparent, whose trace id it keeps */
    static char phones[N_TOTAL][16];
    long long first_id = 0;
    snprintf (url, sizeof url, "%s/v1/messages", api);
    for (int i = 0; i < N_SINGLE; i++) {
        snprintf (body, sizeof body,
                  "{\"to\":\"+55 11 9%04d-%04d\",\"text\":\"e2e message %d\"}",
                  1000 + i % 9000, i, i);
        snprintf (phones[i], sizeof phones[i], "55119%04d%04d", 1000 + i % 9000,
                  i);
        const char *traceparent[] = {
            "traceparent: 00-" S_TRACE_GIVEN "-b7ad6b7169203331-01", NULL};
        json_t *m = s_post_with (url, key, body, 202, i ? NULL : traceparent);
        assert_string_equal (json_string_value (json_object_get (m, "status")),
                             "pending");
        if (i == 0)
            first_id = json_integer_value (json_object_get (m, "id"));
        json_decref (m);
    }
    json_t *items = json_array ();
    for (int i = N_SINGLE; i < N_TOTAL; i++) {
        char to[32], text[64];
        snprintf (to, sizeof to, "+5511%09d", 900000000 + i);
        snprintf (phones[i], sizeof phones[i], "%.15s", to + 1);
        snprintf (text, sizeof text, "e2e message %d", i);
        json_array_append_new (
            items, json_pack ("{s:s, s:s}", "to", to, "text", text));
    }
    json_t *batch = json_pack ("{s:o}", "items", items);
    char *batch_body = json_dumps (batch, JSON_COMPACT);
    json_decref (batch);
    snprintf (url, sizeof url, "%s/v1/messages/batch", api);
    json_t *answer = s_post (url, key, batch_body, 207);
    free (batch_body);
    json_t *results = json_object_get (answer, "items");
    assert_int_equal (json_array_size (results), N_BATCH);
    for (size_t i = 0; i < json_array_size (results); i++)
        assert_non_null (json_object_get (json_array_get (results, i), "id"));
    long long batch_id = json_integer_value (
        json_object_get (json_array_get (results, 0), "id"));
    json_decref (answer);

    /* every row ends sent */
    sent_wait_t w = {db, N_TOTAL};
    assert_true (rcd_test_wait_until (s_all_sent, &w, 120000));
    assert_int_equal (
        rcd_test_sql_int (db, "SELECT count(*) FROM messages", 0, NULL),
        N_TOTAL);
    assert_int_equal (
        rcd_test_sql_int (db,
                          "SELECT count(*) FROM messages WHERE status = "
                          "'sent' AND provider_message_id IS NOT NULL",
                          0, NULL),
        N_TOTAL);

    /* the simulator saw each exactly once */
    snprintf (url, sizeof url, "%s/_sim/counts", sim);
    json_t *counts = s_get (url, NULL);
    assert_int_equal (json_integer_value (json_object_get (counts, "total")),
                      N_TOTAL);
    assert_int_equal (json_integer_value (json_object_get (counts, "distinct")),
                      N_TOTAL);
    assert_int_equal (
        json_integer_value (json_object_get (counts, "duplicates")), 0);
    json_decref (counts);

    /* the API shows the outcome with its history */
    snprintf (url, sizeof url, "%s/v1/messages/%lld", api, first_id);
    json_t *msg = s_get (url, key);
    assert_string_equal (json_string_value (json_object_get (msg, "status")),
                         "sent");
    assert_int_equal (json_integer_value (json_object_get (msg, "attempts")),
                      1);
    assert_true (json_is_string (json_object_get (msg, "provider_message_id")));
    assert_true (json_is_string (json_object_get (msg, "sent_at")));
    assert_true (json_array_size (json_object_get (msg, "history")) >= 3);
    assert_string_equal (json_string_value (json_object_get (msg, "trace_id")),
                         S_TRACE_GIVEN);
    json_decref (msg);
    snprintf (url, sizeof url, "%s/v1/messages/%lld", api, batch_id);
    msg = s_get (url, key);
    char batch_trace[40];
    snprintf (batch_trace, sizeof batch_trace, "%s",
              json_string_value (json_object_get (msg, "trace_id")));
    assert_int_equal (strlen (batch_trace), 32);
    assert_string_not_equal (batch_trace, S_TRACE_GIVEN);
    json_decref (msg);
    free (key);

    /* the monitor counted them and sees every service */
    snprintf (url, sizeof url, "%s/metrics", monitor);
    metric_wait_t mw = {url, "recado_messages_total{status=\"sent\"} 1000"};
    assert_true (rcd_test_wait_until (s_metrics_show, &mw, 15000));
    const char *services[] = {"ingestor", "scheduler", "sender", "recovery"};
    for (int i = 0; i < 4; i++) {
        char needle[96];
        snprintf (needle, sizeof needle, "recado_service_up{service=\"%s\"",
                  services[i]);
        mw.needle = needle;
        assert_true (rcd_test_wait_until (s_metrics_show, &mw, 15000));
    }
    snprintf (url, sizeof url, "%s/health", monitor);
    json_t *health = s_get (url, NULL);
    json_t *components = json_object_get (health, "components");
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf (name, sizeof name, "service:%s", services[i]);
        assert_non_null (json_object_get (components, name));
    }
    json_decref (health);

    /* SIGTERM stops every process cleanly */
    rcd_test_pipeline_stop_all (p);

    /* The logs: JSON lines from every process. The ingestor logged each
       single message with its request's trace id, and the batch once
       with its own; the sender that sent a message logged the same
       trace id with it, and every message went out traced. */
    json_t *ingestor = s_log_lines (p, RCD_TP_INGESTOR, 0, "ingestor");
    json_t *line = s_log_find (ingestor, "message.accepted", first_id);
    assert_non_null (line);
    assert_string_equal (s_trace (line), S_TRACE_GIVEN);
    line = s_log_find (ingestor, "message.batch", 0);
    assert_non_null (line);
    assert_string_equal (s_trace (line), batch_trace);
    assert_int_equal (json_integer_value (json_object_get (
                          json_object_get (line, "fields"), "accepted")),
                      N_BATCH);
    json_decref (ingestor);
    int sent_lines = 0, found_first = 0, found_batch = 0;
    for (int s = 0; s < 2; s++) {
        json_t *sender = s_log_lines (p, RCD_TP_SENDER, s, "sender");
        size_t i;
        json_array_foreach (sender, i, line)
        {
            if (strcmp (json_string_value (json_object_get (line, "event")),
                        "message.sent") != 0)
                continue;
            sent_lines++;
            assert_int_equal (strlen (s_trace (line)), 32);
        }
        if ((line = s_log_find (sender, "message.sent", first_id))) {
            assert_string_equal (s_trace (line), S_TRACE_GIVEN);
            found_first++;
        }
        if ((line = s_log_find (sender, "message.sent", batch_id))) {
            assert_string_equal (s_trace (line), batch_trace);
            found_batch++;
        }
        json_decref (sender);
    }
    assert_int_equal (sent_lines, N_TOTAL);
    assert_int_equal (found_first, 1);
    assert_int_equal (found_batch, 1);
    json_decref (s_log_lines (p, RCD_TP_SCHEDULER, 0, "scheduler"));
    json_decref (s_log_lines (p, RCD_TP_RECOVERY, 0, "recovery"));
    json_decref (s_log_lines (p, RCD_TP_MONITOR, 0, "monitor"));

    /* and no log shows a phone number unmasked */
    const rcd_tp_kind_t kinds[] = {RCD_TP_INGESTOR, RCD_TP_SCHEDULER,
                                   RCD_TP_SENDER,   RCD_TP_SENDER,
                                   RCD_TP_RECOVERY, RCD_TP_MONITOR};
    const int index[] = {0, 0, 0, 1, 0, 0};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        s_assert_no_phone (p, kinds[k], index[k], phones, N_TOTAL);
    rcd_test_pipeline_passed (p);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (
            test_thousand_messages_reach_the_gateway_exactly_once, setup,
            teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

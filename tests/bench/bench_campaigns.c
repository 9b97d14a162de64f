/*  bench_campaigns - campaign creation through the real ingestor binary
    over HTTP. Prints table rows; never gates CI.

      bench_campaigns [CONTACTS] [RUNS]

    Each run POSTs /v1/campaigns with a new campaign of CONTACTS (100 000)
    distinct contacts, each with two vars for a template of two
    variations ({{name}}, {{code}}), one JSON body (about 7 MB for 100 000) sent
    in one request; a tenth of the contacts are also stored contacts
    (their vars and name are looked up), and 100 of them opted out.
    Then it POSTs the same body again to the same campaign, which must
    add nothing. The body is built before the clock starts.

    Reports seconds from the first byte sent to the answer (201 with
    every count checked: accepted, opted_out, duplicates on the
    re-post) for the first post and the re-post, the messages stored
    (checked in the database), the CPU of the ingestor and of the
    PostgreSQL backends, and the ingestor's peak RSS (VmHWM) after the
    runs, next to its peak before the first one.

      bench_campaigns fairness [CONTACTS] [RATE]

    Reminders beside a large campaign, through every service as a
    process (simulator, scheduler, sender, recovery, ingestor): tenant A
    posts a campaign of CONTACTS (20 000) on its own instance at RATE
    (200) messages a second; while it drains, every 200 ms tenant B posts
    4 messages due now to its own instance (half normal, half low like
    the campaign) and tenant A 2 of its own (normal; every round up to a
    tenth of RATE, so every second round at 50/s). Reports the
    due-to-sent latency (sent_at - send_at) of B's and of A's reminders
    (p50, p99, max), the campaign's drain time and that it completed
    with every contact messaged once (simulator: distinct = total).
    The figure, "fairness 100000 50", drains for about 37 min
    (A's own reminders take a tenth of the rate), so tests/bench/run
    uses a scaled-down default (20 000 at 200/s: 100 s); "fairness
    100000 1000" keeps the backlog and drains it in 100 s. RATE
    only paces A: the claim walks each tenant's due work up to its
    budget (the tokens of a cycle), never the rest of a backlog.

    Needs RECADO_BENCH_PG (conninfo of a PostgreSQL superuser, no dbname)
    and RECADO_BIN_DIR; tests/bench/run sets both.
*/
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_log.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

#define S_DB_NAME "recado_bench_campaigns"
/*  Contacts stored before the runs (one in S_STORED_EVERY), and of them
    the opted-out ones (one in S_OPTED_EVERY). */
#define S_STORED_EVERY 10
#define S_OPTED_EVERY  1000

static pid_t s_ingestor;
/*  The fairness mode's other processes: simulator, scheduler, sender,
    recovery. */
#define S_OTHERS 4
static pid_t s_others[S_OTHERS];
static char s_db_url[512];
static char s_api_url[64];
static char *s_key; /* the tenant's API key */

static void
s_die (const char *what, const char *detail)
{
    fprintf (stderr, "bench_campaigns: %s%s%s\n", what, detail ? ": " : "",
             detail ? detail : "");
    if (s_ingestor > 0)
        rcd_test_stop (s_ingestor, SIGKILL, 2000);
    for (int i = 0; i < S_OTHERS; i++)
        if (s_others[i] > 0)
            rcd_test_stop (s_others[i], SIGKILL, 2000);
    exit (1);
}

static rcd_db_t *
s_db (void)
{
    rcd_db_t *db = rcd_db_new (s_db_url);
    if (!db || !rcd_db_connected (db))
        s_die ("cannot connect", db ? rcd_db_error (db) : NULL);
    return db;
}

static int64_t
s_query_int (rcd_db_t *db, const char *sql, int nparams,
             const char *const *params)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        s_die (sql, rcd_db_error (db));
    int64_t v = rcd_db_res_rows (res) > 0 ? rcd_db_res_int64 (res, 0, 0) : 0;
    rcd_db_res_destroy (&res);
    return v;
}

/*  POSTs body to path with the tenant's key; dies unless the status is
    expected. Answers the parsed body and the seconds it took. */
static json_t *
s_post (const char *path, const char *body, size_t len, long expected,
        double *seconds)
{
    char url[256], auth[256];
    snprintf (url, sizeof url, "%s%s", s_api_url, path);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", s_key);
    CURL *curl = curl_easy_init ();
    struct curl_slist *headers = curl_slist_append (NULL, auth);
    headers = curl_slist_append (headers, "Content-Type: application/json");
    bench_buffer_t buf = {NULL, 0};
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, bench_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    int64_t t0 = rcd_clock_mono_us ();
    long status = 0;
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    *seconds = (double)(rcd_clock_mono_us () - t0) / 1e6;
    curl_slist_free_all (headers);
    curl_easy_cleanup (curl);
    if (status != expected) {
        fprintf (stderr, "POST %s: %ld %.300s\n", path, status,
                 buf.data ? buf.data : "");
        s_die ("unexpected answer", path);
    }
    json_t *answer = json_loads (buf.data ? buf.data : "", 0, NULL);
    free (buf.data);
    if (!answer)
        s_die ("answer is not JSON", path);
    return answer;
}

/*  A call with a small body through rcd_test_http. */
static json_t *
s_api (const char *method, const char *path, const char *key, const char *body,
       long expected)
{
    bool ok;
    json_t *answer =
        bench_api (s_api_url, method, path, key, body, expected, &ok);
    if (!ok)
        s_die ("unexpected answer", path);
    return answer;
}

/*  The phone of contact i of run r: distinct over every run. */
static void
s_phone (int r, long i, char *out, size_t size)
{
    snprintf (out, size, "+55119%08ld", 10000000 + (long)r * 1000000 + i);
}

/*  A fresh database with the stored contacts, the ingestor on a free
    port, a tenant and its template. */
static void
s_prepare (int runs)
{
    const char *why =
        bench_fresh_database (S_DB_NAME, s_db_url, sizeof s_db_url);
    if (why)
        s_die (why, NULL);
    s_ingestor = bench_start_ingestor (s_db_url, "bench-admin", s_api_url,
                                       sizeof s_api_url);
    if (s_ingestor <= 0)
        s_die ("cannot start recado-ingestor", NULL);

    json_t *t = s_api ("POST", "/v1/tenants", "bench-admin",
                       "{\"name\":\"bench campaigns\"}", 201);
    const char *key = json_string_value (json_object_get (t, "api_key"));
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld",
              (long long)json_integer_value (json_object_get (t, "id")));
    if (!key)
        s_die ("tenant", NULL);
    s_key = strdup (key);
    json_decref (t);
    json_decref (s_api ("PUT", "/v1/templates/promo", s_key,
                        "{\"variations\":["
                        "\"Olá {{name}}, seu cupom {{code}} vale até "
                        "domingo.\","
                        "\"{{name}}, use o cupom {{code}} e ganhe 10%.\"]}",
                        200));
    /* stored contacts: a tenth of every run's audience, some opted out */
    rcd_db_t *db = s_db ();
    char every[24], opted[24], total[24];
    snprintf (every, sizeof every, "%d", S_STORED_EVERY);
    snprintf (opted, sizeof opted, "%d", S_OPTED_EVERY);
    snprintf (total, sizeof total, "%ld", (long)(runs + 1) * 1000000);
    const char *params[] = {tenant, every, opted, total};
    s_query_int (db,
                 "INSERT INTO contacts (tenant_id, phone, name, vars,"
                 "                      opted_out)"
                 "SELECT $1::bigint, '+55119' || lpad((10000000 + g)::text,"
                 "                                    8, '0'),"
                 "       'Stored ' || g, jsonb_build_object('segment', 'vip'),"
                 "       g % $3::int = 0"
                 "  FROM generate_series(0, $4::int - 1, $2::int) g",
                 4, params);
    s_query_int (db, "ANALYZE contacts", 0, NULL);
    rcd_db_destroy (&db);
}

/*  The body of run r (prefix names the campaign). Caller frees. */
static char *
s_body (const char *name, int r, long contacts, size_t *len_p)
{
    size_t cap = (size_t)contacts * 96 + 256, len = 0;
    char *body = malloc (cap);
    if (!body)
        s_die ("out of memory", NULL);
    len += (size_t)snprintf (body, cap,
                             "{\"name\":\"%s\",\"template\":\"promo\","
                             "\"audience\":[",
                             name);
    for (long i = 0; i < contacts; i++) {
        char phone[32];
        s_phone (r, i, phone, sizeof phone);
        len += (size_t)snprintf (body + len, cap - len,
                                 "%s{\"phone\":\"%s\",\"vars\":{\"name\":"
                                 "\"Cliente %ld\",\"code\":\"C%06ld\"}}",
                                 i ? "," : "", phone, i, i);
        if (len >= cap - 128)
            s_die ("body overflow", NULL);
    }
    len += (size_t)snprintf (body + len, cap - len, "]}");
    *len_p = len;
    return body;
}

/*  --------------------------------------------------------------------
    fairness */

#define S_FAIR_PERIOD_US 200000
#define S_FAIR_B         4
#define S_FAIR_A         2

static pid_t
s_spawn (const char *program, const char *const *argv_extra,
         const char *const *envp)
{
    char *bin = rcd_test_bin (program);
    const char *argv[4] = {bin, NULL, NULL, NULL};
    for (int i = 0; argv_extra && argv_extra[i] && i < 2; i++)
        argv[i + 1] = argv_extra[i];
    pid_t pid = rcd_test_spawn (argv, envp, "bench-services.log");
    free (bin);
    if (pid <= 0)
        s_die ("cannot start", program);
    return pid;
}

/*  A tenant through the API; answers its key (caller frees). */
static char *
s_tenant (const char *name)
{
    char body[128];
    snprintf (body, sizeof body, "{\"name\":\"%s\"}", name);
    json_t *t = s_api ("POST", "/v1/tenants", "bench-admin", body, 201);
    const char *key = json_string_value (json_object_get (t, "api_key"));
    if (!key)
        s_die ("tenant", name);
    char *copy = strdup (key);
    json_decref (t);
    return copy;
}

/*  count messages of key due now, numbers from first, text "<tag> <i>";
    every other one low priority when half_low. */
static void
s_reminders (const char *key, const char *tag, long first, int count,
             bool half_low)
{
    json_t *items = json_array ();
    for (int i = 0; i < count; i++) {
        char to[32], text[64];
        snprintf (to, sizeof to, "+55119%08ld", first + i);
        snprintf (text, sizeof text, "%s %ld", tag, first + i);
        json_t *item = json_pack ("{s:s, s:s}", "to", to, "text", text);
        if (half_low && i % 2)
            json_object_set_new (item, "priority", json_string ("low"));
        json_array_append_new (items, item);
    }
    json_t *body = json_pack ("{s:o}", "items", items);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    json_decref (s_api ("POST", "/v1/messages/batch", key, text, 207));
    free (text);
}

/*  p50, p99 and max of the due-to-sent latency (ms) of the messages
    outside campaigns sent by instance name. */
static void
s_latencies (rcd_db_t *db, const char *name, double out[3], long *n)
{
    rcd_db_res_t *res = NULL;
    const char *params[] = {name};
    if (rcd_db_exec (db,
                     "SELECT count(*),"
                     " coalesce(percentile_cont(0.5) WITHIN GROUP"
                     "   (ORDER BY ms), -1),"
                     " coalesce(percentile_cont(0.99) WITHIN GROUP"
                     "   (ORDER BY ms), -1), coalesce(max(ms), -1)"
                     "  FROM (SELECT extract(epoch FROM m.sent_at"
                     "               - m.send_at) * 1000 AS ms"
                     "          FROM messages m JOIN instances i"
                     "            ON i.id = m.instance_id"
                     "         WHERE m.campaign_id IS NULL AND i.name = $1"
                     "           AND m.sent_at IS NOT NULL) s",
                     1, params, &res) != 0)
        s_die ("latencies", rcd_db_error (db));
    *n = (long)rcd_db_res_int64 (res, 0, 0);
    for (int k = 0; k < 3; k++)
        out[k] = strtod (rcd_db_res_value (res, 0, k + 1), NULL);
    rcd_db_res_destroy (&res);
}

static int
s_fairness (long contacts, long rate)
{
    const char *err =
        bench_fresh_database (S_DB_NAME, s_db_url, sizeof s_db_url);
    if (err)
        s_die ("database", err);
    int sim_port = rcd_test_free_port (), port = rcd_test_free_port ();
    int nudge = rcd_test_free_port (), dispatch = rcd_test_free_port ();
    char sim_url[64];
    snprintf (sim_url, sizeof sim_url, "http://127.0.0.1:%d", sim_port);
    snprintf (s_api_url, sizeof s_api_url, "http://127.0.0.1:%d", port);
    static char env[10][600];
    int e = 0;
    snprintf (env[e++], sizeof env[0], "DATABASE_URL=%s", s_db_url);
    snprintf (env[e++], sizeof env[0], "RECADO_ADMIN_KEY=bench-admin");
    snprintf (env[e++], sizeof env[0], "RECADO_HTTP_PORT=%d", port);
    snprintf (env[e++], sizeof env[0],
              "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env[e++], sizeof env[0], "RECADO_NUDGE_BIND=tcp://127.0.0.1:%d",
              nudge);
    snprintf (env[e++], sizeof env[0],
              "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d", nudge);
    snprintf (env[e++], sizeof env[0],
              "RECADO_DISPATCH_BIND=tcp://127.0.0.1:%d", dispatch);
    snprintf (env[e++], sizeof env[0],
              "RECADO_DISPATCH_ENDPOINT=tcp://127.0.0.1:%d", dispatch);
    snprintf (env[e++], sizeof env[0], "RECADO_LOG_LEVEL=warn");
    snprintf (env[e++], sizeof env[0], "RECADO_API_RATE_PER_SECOND=0");
    const char *envp[11];
    for (int i = 0; i < e; i++)
        envp[i] = env[i];
    envp[e] = NULL;

    char sim_port_s[16];
    snprintf (sim_port_s, sizeof sim_port_s, "%d", sim_port);
    const char *sim_args[] = {"--port", sim_port_s, NULL};
    s_others[0] = s_spawn ("recado-gwsim", sim_args, envp);
    char url[160];
    snprintf (url, sizeof url, "%s/_sim/counts", sim_url);
    if (!rcd_test_wait_http_ok (url, 10000))
        s_die ("simulator did not start", NULL);
    s_others[1] = s_spawn ("recado-sender", NULL, envp);
    s_others[2] = s_spawn ("recado-scheduler", NULL, envp);
    s_others[3] = s_spawn ("recado-recovery", NULL, envp);
    s_ingestor = s_spawn ("recado-ingestor", NULL, envp);
    snprintf (url, sizeof url, "%s/readyz", s_api_url);
    if (!rcd_test_wait_http_ok (url, 20000))
        s_die ("ingestor not ready", NULL);

    char *key_a = s_tenant ("fair a");
    char *key_b = s_tenant ("fair b");
    char body[512];
    snprintf (body, sizeof body,
              "{\"name\":\"a\",\"provider\":\"evolution\","
              "\"base_url\":\"%s\",\"api_key\":\"k\","
              "\"rate_per_second\":%ld}",
              sim_url, rate);
    json_decref (s_api ("POST", "/v1/instances", key_a, body, 201));
    snprintf (body, sizeof body,
              "{\"name\":\"b\",\"provider\":\"evolution\","
              "\"base_url\":\"%s\",\"api_key\":\"k\","
              "\"rate_per_second\":1000}",
              sim_url);
    json_decref (s_api ("POST", "/v1/instances", key_b, body, 201));
    s_key = key_a;
    json_decref (s_api ("PUT", "/v1/templates/promo", s_key,
                        "{\"variations\":[\"Olá {{name}}, seu cupom "
                        "{{code}} vale até domingo.\"]}",
                        200));

    size_t len = 0;
    char *campaign = s_body ("big", 0, contacts, &len);
    double seconds = 0;
    int64_t t0 = rcd_clock_mono_ms ();
    json_t *a = s_post ("/v1/campaigns", campaign, len, 201, &seconds);
    free (campaign);
    if (json_integer_value (json_object_get (a, "accepted")) != contacts)
        s_die ("wrong counts", NULL);
    char id[24];
    snprintf (id, sizeof id, "%lld",
              (long long)json_integer_value (json_object_get (a, "id")));
    json_decref (a);

    rcd_db_t *db = s_db ();
    const char *params[] = {id};
    long rounds = 0, a_rounds = 0;
    /* A's own reminders take at most a tenth of its instance's rate
       (S_FAIR_A a round is 10/s): every round from 100/s, every second
       round at 50/s */
    long a_every = S_FAIR_A * 10 * (1000000 / S_FAIR_PERIOD_US) / rate;
    if (a_every < 1)
        a_every = 1;
    int64_t deadline = t0 + (contacts * 5 / (rate * 4) + 120) * 1000;
    while (s_query_int (db,
                        "SELECT count(*) FROM messages"
                        " WHERE campaign_id = $1::bigint AND status IN"
                        " ('pending', 'sending')",
                        1, params) > 0) {
        if (rcd_clock_mono_ms () > deadline)
            s_die ("campaign did not drain in time", id);
        s_reminders (key_b, "B", 50000000 + rounds * S_FAIR_B, S_FAIR_B, true);
        if (rounds % a_every == 0) {
            s_reminders (key_a, "A", 60000000 + a_rounds * S_FAIR_A, S_FAIR_A,
                         false);
            a_rounds++;
        }
        rounds++;
        usleep (S_FAIR_PERIOD_US); /* pacing the load, not waiting */
    }
    double drain_s = (double)(rcd_clock_mono_ms () - t0) / 1000.0;
    /* the last reminders leave */
    while (s_query_int (db,
                        "SELECT count(*) FROM messages"
                        " WHERE status IN ('pending', 'sending')",
                        0, NULL) > 0) {
        if (rcd_clock_mono_ms () > deadline)
            s_die ("reminders did not leave", NULL);
        usleep (20000);
    }
    snprintf (url, sizeof url, "/v1/campaigns/%s", id);
    json_t *got = s_api ("GET", url, key_a, NULL, 200);
    const char *state = json_string_value (json_object_get (got, "state"));
    bool completed =
        state && strcmp (state, "completed") == 0 &&
        json_integer_value (json_object_get (got, "sent")) == contacts;
    json_decref (got);
    snprintf (url, sizeof url, "%s/_sim/counts", sim_url);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    json_t *counts = json_loads (res.body ? res.body : "", 0, NULL);
    rcd_test_http_free (&res);
    long long total = json_integer_value (json_object_get (counts, "total"));
    long long distinct =
        json_integer_value (json_object_get (counts, "distinct"));
    json_decref (counts);

    double lb[3], la[3];
    long nb = 0, na = 0;
    s_latencies (db, "b", lb, &nb);
    s_latencies (db, "a", la, &na);
    printf ("| reminders beside a campaign of %ld contacts at %ld/s "
            "(drained in %.1f s; completed %s; simulator %lld sends, %lld "
            "distinct) | tenant B (own instance, %ld msgs): p50 %.0f ms, "
            "p99 %.0f ms, max %.0f ms; tenant A's own (same instance, "
            "normal before low, %ld msgs): p50 %.0f ms, p99 %.0f ms, max "
            "%.0f ms |\n",
            contacts, rate, drain_s, completed ? "yes" : "NO", total, distinct,
            nb, lb[0], lb[1], lb[2], na, la[0], la[1], la[2]);
    rcd_db_destroy (&db);
    rcd_test_stop (s_ingestor, SIGTERM, 30000);
    s_ingestor = 0;
    for (int i = S_OTHERS - 1; i >= 0; i--) {
        rcd_test_stop (s_others[i], SIGTERM, 30000);
        s_others[i] = 0;
    }
    free (key_a);
    free (key_b);
    s_key = NULL;
    return completed && total == distinct &&
                   total == contacts + rounds * S_FAIR_B + a_rounds * S_FAIR_A
               ? 0
               : 1;
}

int
main (int argc, char **argv)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp (argv[1], "fairness") == 0) {
        long contacts = argc > 2 ? strtol (argv[2], NULL, 10) : 20000;
        long rate = argc > 3 ? strtol (argv[3], NULL, 10) : 200;
        if (contacts < 1 || contacts > 100000 || rate < 1 || rate > 10000) {
            fprintf (stderr, "usage: bench_campaigns fairness "
                             "[CONTACTS<=100000] [RATE]\n");
            return 64;
        }
        curl_global_init (CURL_GLOBAL_ALL);
        rcd_log_init ("bench_campaigns");
        rcd_log_set_level (RCD_LOG_WARN);
        int rc = s_fairness (contacts, rate);
        curl_global_cleanup ();
        return rc;
    }
    long contacts = argc > 1 ? strtol (argv[1], NULL, 10) : 100000;
    int runs = argc > 2 ? (int)strtol (argv[2], NULL, 10) : 3;
    if (contacts < 1 || contacts > 100000 || runs < 1 || runs > 9) {
        fprintf (stderr, "usage: bench_campaigns [CONTACTS<=100000] "
                         "[RUNS<=9]\n");
        return 64;
    }
    curl_global_init (CURL_GLOBAL_ALL);
    rcd_log_init ("bench_campaigns");
    rcd_log_set_level (RCD_LOG_WARN); /* not a line per migration */
    s_prepare (runs);
    rcd_db_t *db = s_db ();

    /* warm-up, not measured: connections, plans */
    size_t len = 0;
    char *body = s_body ("warm-up", runs, 1000, &len);
    double seconds = 0;
    json_decref (s_post ("/v1/campaigns", body, len, 201, &seconds));
    free (body);

    long rss_before = bench_peak_rss_kb (s_ingestor);
    double first_sum = 0, first_max = 0, again_max = 0, again_sum = 0;
    double cpu_ing = 0, cpu_pg = 0;
    long expected_opted = 0;
    for (long i = 0; i < contacts; i += S_STORED_EVERY)
        expected_opted += i % S_OPTED_EVERY == 0;
    size_t body_bytes = 0;
    for (int r = 0; r < runs; r++) {
        char name[32];
        snprintf (name, sizeof name, "campaign %d", r);
        body = s_body (name, r, contacts, &len);
        body_bytes = len;
        double ing0 = bench_cpu_seconds (s_ingestor, NULL);
        double pg0 = bench_postgres_cpu ();
        json_t *a = s_post ("/v1/campaigns", body, len, 201, &seconds);
        cpu_ing += bench_cpu_seconds (s_ingestor, NULL) - ing0;
        cpu_pg += bench_postgres_cpu () - pg0;
        first_sum += seconds;
        first_max = seconds > first_max ? seconds : first_max;
        long opted = expected_opted; /* the same pattern in every run */
        if (json_integer_value (json_object_get (a, "accepted")) !=
                contacts - opted ||
            json_integer_value (json_object_get (a, "opted_out")) != opted)
            s_die ("wrong counts", json_dumps (a, JSON_COMPACT));
        char id[24];
        snprintf (id, sizeof id, "%lld",
                  (long long)json_integer_value (json_object_get (a, "id")));
        json_decref (a);
        a = s_post ("/v1/campaigns", body, len, 200, &seconds);
        again_sum += seconds;
        again_max = seconds > again_max ? seconds : again_max;
        if (json_integer_value (json_object_get (a, "accepted")) != 0 ||
            json_integer_value (json_object_get (a, "duplicates")) !=
                contacts - opted)
            s_die ("re-post added messages", json_dumps (a, JSON_COMPACT));
        json_decref (a);
        free (body);
        const char *params[] = {id};
        if (s_query_int (db,
                         "SELECT count(*) FROM messages"
                         " WHERE campaign_id = $1::bigint",
                         1, params) != contacts - opted)
            s_die ("wrong number of messages stored", id);
    }
    long rss_after = bench_peak_rss_kb (s_ingestor);

    printf ("| campaign creation, %ld contacts (%.1f MB body), %d runs | "
            "%.2f s to 201 (mean; max %.2f s); re-post adding nothing "
            "%.2f s (max %.2f s); CPU per run: ingestor %.2f s, PostgreSQL "
            "%.2f s |\n",
            contacts, (double)body_bytes / 1e6, runs, first_sum / runs,
            first_max, again_sum / runs, again_max, cpu_ing / runs,
            cpu_pg / runs);
    printf ("| ingestor peak RSS, campaign creation | %.1f MiB after the "
            "runs (%.1f MiB before the first) |\n",
            (double)rss_after / 1024.0, (double)rss_before / 1024.0);

    rcd_test_stop (s_ingestor, SIGTERM, 30000);
    s_ingestor = 0;
    rcd_db_destroy (&db);
    free (s_key);
    curl_global_cleanup ();
    return 0;
}

/*  bench_pipeline - end-to-end figures of the real pipeline on this
    machine. Prints a table; never gates CI.

      bench_pipeline throughput N SENDERS   N pending messages, SENDERS
                                            sender replicas, simulator at
                                            zero latency: messages/second
                                            from the first claim to the last
                                            outcome committed
      bench_pipeline latency RATE SECONDS   messages posted to the API at
                                            RATE/s: due -> received at the
                                            simulator, p50/p99/max
      bench_pipeline faults N SENDERS P     throughput with a share P of
                                            the gateway's answers 503
                                            (transient, retried)
      bench_pipeline rate R SECONDS SENDERS one instance limited to R/s,
                                            SENDERS replicas: the
                                            simulator's per-second counts
                                            (max, and the total against
                                            R x SECONDS)

    Needs RECADO_BENCH_PG (conninfo of a PostgreSQL superuser, no dbname)
    and RECADO_BIN_DIR; tests/bench/run sets both.
*/
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

enum { B_SIM, B_SCHEDULER, B_INGESTOR, B_RECOVERY, B_SENDER0, B_MAX = 12 };

typedef struct {
    const char *name;
    pid_t pid;
    long peak_rss_kb;
    double cpu_s; /* user + system CPU seconds used */
} proc_t;

static double s_pg_cpu_s; /* PostgreSQL backends' CPU during the run */

static proc_t s_procs[B_MAX];
static char s_env[16][700];
static const char *s_envp[17];
static int s_nenv;
static char s_db_url[512];
static char s_sim_url[64], s_api_url[64];
static int s_sim_port, s_api_port;

static void
s_die (const char *what, const char *detail)
{
    fprintf (stderr, "bench: %s%s%s\n", what, detail ? ": " : "",
             detail ? detail : "");
    for (int i = 0; i < B_MAX; i++)
        if (s_procs[i].pid > 0)
            rcd_test_stop (s_procs[i].pid, SIGKILL, 2000);
    exit (1);
}

static int
s_free_port (void)
{
    return rcd_test_free_port ();
}

static void
s_start (int slot, const char *program, const char *const *extra_argv)
{
    char *bin = rcd_test_bin (program);
    const char *argv[6] = {bin, NULL};
    for (int i = 0; extra_argv && extra_argv[i] && i < 4; i++)
        argv[i + 1] = extra_argv[i];
    s_procs[slot].name = program;
    s_procs[slot].pid = rcd_test_spawn (argv, s_envp, "bench-services.log");
    free (bin);
    if (s_procs[slot].pid <= 0)
        s_die ("cannot start", program);
}

static void
s_stop_all (void)
{
    s_pg_cpu_s = bench_postgres_cpu ();
    for (int i = B_MAX - 1; i >= 0; i--) {
        if (s_procs[i].pid <= 0)
            continue;
        s_procs[i].peak_rss_kb = bench_peak_rss_kb (s_procs[i].pid);
        s_procs[i].cpu_s = bench_cpu_seconds (s_procs[i].pid, NULL);
        rcd_test_stop (s_procs[i].pid, SIGTERM, 30000);
        s_procs[i].pid = 0;
    }
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
s_query_int (rcd_db_t *db, const char *sql)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, 0, NULL, &res) != 0)
        s_die (sql, rcd_db_error (db));
    int64_t v = rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
    return v;
}

/*  A fresh database "recado_bench" and the shared environment. */
static void
s_prepare (void)
{
    const char *base = getenv ("RECADO_BENCH_PG");
    if (!base)
        s_die ("RECADO_BENCH_PG is not set (use tests/bench/run)", NULL);
    char admin[512];
    snprintf (admin, sizeof admin, "%s dbname=postgres", base);
    rcd_db_t *db = rcd_db_new (admin);
    if (!db || !rcd_db_connected (db))
        s_die ("cannot reach PostgreSQL", NULL);
    if (rcd_db_script (
            db, "DROP DATABASE IF EXISTS recado_bench WITH (FORCE)") != 0 ||
        rcd_db_script (db, "CREATE DATABASE recado_bench") != 0)
        s_die ("cannot create database", rcd_db_error (db));
    rcd_db_destroy (&db);
    snprintf (s_db_url, sizeof s_db_url, "%s dbname=recado_bench", base);
    db = s_db ();
    if (rcd_migrate_apply (db) < 0)
        s_die ("migrations failed", rcd_db_error (db));
    rcd_db_destroy (&db);

    s_sim_port = s_free_port ();
    s_api_port = s_free_port ();
    snprintf (s_sim_url, sizeof s_sim_url, "http://127.0.0.1:%d", s_sim_port);
    snprintf (s_api_url, sizeof s_api_url, "http://127.0.0.1:%d", s_api_port);
    int e = 0, nudge = s_free_port (), dispatch = s_free_port ();
    snprintf (s_env[e++], sizeof s_env[0], "DATABASE_URL=%s", s_db_url);
    snprintf (s_env[e++], sizeof s_env[0], "RECADO_ADMIN_KEY=bench-admin");
    snprintf (s_env[e++], sizeof s_env[0], "RECADO_HTTP_PORT=%d", s_api_port);
    snprintf (s_env[e++], sizeof s_env[0],
              "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d", s_free_port ());
    snprintf (s_env[e++], sizeof s_env[0],
              "RECADO_NUDGE_BIND=tcp://127.0.0.1:%d", nudge);
    snprintf (s_env[e++], sizeof s_env[0],
              "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d", nudge);
    snprintf (s_env[e++], sizeof s_env[0],
              "RECADO_DISPATCH_BIND=tcp://127.0.0.1:%d", dispatch);
    snprintf (s_env[e++], sizeof s_env[0],
              "RECADO_DISPATCH_ENDPOINT=tcp://127.0.0.1:%d", dispatch);
    snprintf (s_env[e++], sizeof s_env[0], "RECADO_LOG_LEVEL=warn");
    /* the latency run posts 1 000 requests a second with one key */
    snprintf (s_env[e++], sizeof s_env[0], "RECADO_API_RATE_PER_SECOND=0");
    for (int i = 0; i < e; i++)
        s_envp[i] = s_env[i];
    s_envp[e] = NULL;
    s_nenv = e;

    char port[16];
    snprintf (port, sizeof port, "%d", s_sim_port);
    const char *sim_args[] = {"--port", port, NULL};
    s_start (B_SIM, "recado-gwsim", sim_args);
    char url[128];
    snprintf (url, sizeof url, "%s/_sim/counts", s_sim_url);
    if (!rcd_test_wait_http_ok (url, 10000))
        s_die ("simulator did not start", NULL);
}

/*  One more KEY=value for the processes started from now on. */
static void
s_env_add (const char *kv)
{
    if (s_nenv >= 16)
        s_die ("too many settings", kv);
    snprintf (s_env[s_nenv], sizeof s_env[0], "%s", kv);
    s_envp[s_nenv] = s_env[s_nenv];
    s_envp[++s_nenv] = NULL;
}

/*  POSTs knobs to the simulator's /_sim/config. */
static void
s_sim_config (const char *json)
{
    char url[128];
    snprintf (url, sizeof url, "%s/_sim/config", s_sim_url);
    rcd_test_http_t res = rcd_test_http ("POST", url, NULL, json, NULL);
    long status = res.status;
    rcd_test_http_free (&res);
    if (status != 200)
        s_die ("simulator refused its config", json);
}

/*  Tenant + one instance on the simulator, straight into the database. */
static void
s_seed_tenant (rcd_db_t *db)
{
    const char *p[] = {s_sim_url};
    if (rcd_db_exec (db,
                     "WITH t AS (INSERT INTO tenants (name, api_key_hash, "
                     "webhook_token) VALUES ('bench', sha256('bench'), 'tok') "
                     "RETURNING id) INSERT INTO instances (tenant_id, name, "
                     "provider, base_url, api_key, rate_per_second) "
                     "SELECT id, 'bench', 'evolution', $1, 'k', 100000 "
                     "FROM t",
                     1, p, NULL) != 0)
        s_die ("seed", rcd_db_error (db));
}

static void
s_print_settings (rcd_db_t *db)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT name || '=' || setting FROM pg_settings WHERE "
                     "name IN ('synchronous_commit', 'fsync', "
                     "'shared_buffers', 'wal_level', 'max_connections', "
                     "'server_version') ORDER BY name",
                     0, NULL, &res) == 0) {
        printf ("| postgres |");
        for (int r = 0; r < rcd_db_res_rows (res); r++)
            printf (" %s", rcd_db_res_value (res, r, 0));
        printf (" |\n");
    }
    rcd_db_res_destroy (&res);
    printf ("| cores | %ld |\n", sysconf (_SC_NPROCESSORS_ONLN));
}

static void
s_print_rss (void)
{
    for (int i = 0; i < B_MAX; i++)
        if (s_procs[i].name && s_procs[i].peak_rss_kb > 0)
            printf ("| peak RSS %s | %.1f MiB (CPU %.2f s) |\n",
                    s_procs[i].name, s_procs[i].peak_rss_kb / 1024.0,
                    s_procs[i].cpu_s);
    printf ("| CPU PostgreSQL (postmaster and backends) | %.2f s |\n",
            s_pg_cpu_s);
}

static int
s_throughput (long n, int senders, double fail_share)
{
    s_prepare ();
    rcd_db_t *db = s_db ();
    s_seed_tenant (db);
    if (fail_share > 0) {
        char knobs[128];
        snprintf (knobs, sizeof knobs, "{\"error_rates\": {\"5xx\": %.4f}}",
                  fail_share);
        s_sim_config (knobs);
        /* retries come back within a second: the figure is the pipeline's,
           not the backoff's */
        s_env_add ("RECADO_RETRY_BASE_MS=100");
        s_env_add ("RECADO_RETRY_CAP_MS=1000");
    }
    char count[24];
    snprintf (count, sizeof count, "%ld", n);
    const char *p[] = {count};
    if (rcd_db_exec (
            db,
            "INSERT INTO messages (tenant_id, to_phone, body, send_at) "
            "SELECT (SELECT id FROM tenants LIMIT 1), "
            "'+55119' || lpad((10000000 + g)::text, 8, '0'), "
            "'bench message ' || g, now() - interval '1 second' "
            "FROM generate_series(1, $1::int) g",
            1, p, NULL) != 0)
        s_die ("insert", rcd_db_error (db));
    if (rcd_db_script (db, "VACUUM ANALYZE messages") != 0)
        s_die ("vacuum", rcd_db_error (db));
    for (int i = 0; i < senders; i++)
        s_start (B_SENDER0 + i, "recado-sender", NULL);
    s_start (B_RECOVERY, "recado-recovery", NULL);
    s_start (B_SCHEDULER, "recado-scheduler", NULL);
    int64_t t0 = rcd_clock_mono_ms ();
    int64_t done = 0;
    while (rcd_clock_mono_ms () - t0 < 600000) {
        /* open work through the two small partial indexes, not a scan of
           the whole table that would steal CPU from the pipeline */
        done = n - s_query_int (db, "SELECT (SELECT count(*) FROM messages "
                                    "WHERE status = 'pending') + (SELECT "
                                    "count(*) FROM messages WHERE "
                                    "lease_until IS NOT NULL)");
        if (done >= n)
            break;
        usleep (250000);
    }
    if (done < n)
        s_die ("timed out", NULL);
    double span_s =
        (double)s_query_int (
            db, "SELECT (extract(epoch FROM (SELECT max(sent_at) FROM "
                "messages) - (SELECT min(at) FROM message_history WHERE "
                "status = 'sending')) * 1000000)::bigint") /
        1e6;
    int64_t sent = s_query_int (db, "SELECT count(*) FROM messages WHERE "
                                    "status = 'sent'");
    int64_t recovered =
        s_query_int (db, "SELECT count(*) FROM message_history WHERE "
                         "detail = 'recovered: lease expired'");
    char url[128];
    snprintf (url, sizeof url, "%s/_sim/counts", s_sim_url);
    rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
    json_t *counts = json_loads (res.body ? res.body : "", 0, NULL);
    rcd_test_http_free (&res);
    long long sim_total =
        json_integer_value (json_object_get (counts, "total"));
    long long dups =
        json_integer_value (json_object_get (counts, "duplicates"));
    json_decref (counts);
    int64_t attempts = s_query_int (db, "SELECT sum(attempts) FROM messages");
    s_stop_all ();
    char label[64] = "";
    if (fail_share > 0)
        snprintf (label, sizeof label, ", %.1f %% answered 503",
                  fail_share * 100);
    printf ("| throughput, %ld messages, %d sender(s)%s | %.0f msg/s "
            "(%.2f s first claim to last outcome; sent %lld, attempts "
            "%lld, at simulator %lld, duplicates %lld, leases recovered "
            "%lld) |\n",
            n, senders, label, (double)sent / span_s, span_s, (long long)sent,
            (long long)attempts, sim_total, dups, (long long)recovered);
    s_print_settings (db);
    s_print_rss ();
    rcd_db_destroy (&db);
    return sent == n && sim_total == n && dups == 0 ? 0 : 1;
}

/*  Latency: one poster thread per slot paces POSTs so the total is RATE/s. */
typedef struct {
    const char *key;
    int rate, seconds, index, threads;
} poster_t;

static void *
s_poster (void *arg)
{
    poster_t *p = arg;
    char url[128], body[256];
    snprintf (url, sizeof url, "%s/v1/messages", s_api_url);
    int per_thread = p->rate / p->threads;
    int total = per_thread * p->seconds;
    int64_t start = rcd_clock_now_us ();
    for (int i = 0; i < total; i++) {
        int64_t due = start + (int64_t)i * 1000000 / per_thread;
        int64_t now = rcd_clock_now_us ();
        if (due > now)
            usleep ((useconds_t)(due - now));
        snprintf (body, sizeof body,
                  "{\"to\":\"+5511%09d\",\"text\":\"lat %d-%d\"}",
                  900000000 + p->index * 100000 + i, p->index, i);
        rcd_test_http_t res = rcd_test_http ("POST", url, p->key, body, NULL);
        if (res.status != 202)
            fprintf (stderr, "post: %ld %s\n", res.status, res.body);
        rcd_test_http_free (&res);
    }
    return NULL;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int
s_latency (int rate, int seconds)
{
    s_prepare ();
    rcd_db_t *db = s_db ();
    s_start (B_SENDER0, "recado-sender", NULL);
    s_start (B_SCHEDULER, "recado-scheduler", NULL);
    s_start (B_RECOVERY, "recado-recovery", NULL);
    s_start (B_INGESTOR, "recado-ingestor", NULL);
    char url[256];
    snprintf (url, sizeof url, "%s/readyz", s_api_url);
    if (!rcd_test_wait_http_ok (url, 20000))
        s_die ("ingestor not ready", NULL);
    snprintf (url, sizeof url, "%s/v1/tenants", s_api_url);
    rcd_test_http_t res = rcd_test_http ("POST", url, "bench-admin",
                                         "{\"name\":\"bench\"}", NULL);
    json_t *t = json_loads (res.body ? res.body : "", 0, NULL);
    rcd_test_http_free (&res);
    const char *key = json_string_value (json_object_get (t, "api_key"));
    if (!key)
        s_die ("tenant", NULL);
    char body[256];
    snprintf (body, sizeof body,
              "{\"name\":\"bench\",\"provider\":\"evolution\",\"base_url\":"
              "\"%s\",\"api_key\":\"k\",\"rate_per_second\":10000}",
              s_sim_url);
    snprintf (url, sizeof url, "%s/v1/instances", s_api_url);
    res = rcd_test_http ("POST", url, key, body, NULL);
    if (res.status != 201)
        s_die ("instance", res.body);
    rcd_test_http_free (&res);

    /* Warm-up, not measured: first connections, caches, plans. */
    snprintf (url, sizeof url, "%s/v1/messages", s_api_url);
    for (int i = 0; i < 200; i++) {
        snprintf (body, sizeof body,
                  "{\"to\":\"+5511%09d\",\"text\":\"warm %d\"}", 800000000 + i,
                  i);
        res = rcd_test_http ("POST", url, key, body, NULL);
        rcd_test_http_free (&res);
    }
    int64_t w0 = rcd_clock_mono_ms ();
    while (s_query_int (db, "SELECT count(*) FROM messages WHERE status = "
                            "'sent'") < 200 &&
           rcd_clock_mono_ms () - w0 < 30000)
        usleep (50000);

    enum { THREADS = 4 };
    pthread_t th[THREADS];
    poster_t posters[THREADS];
    for (int i = 0; i < THREADS; i++) {
        posters[i] = (poster_t){key, rate, seconds, i, THREADS};
        pthread_create (&th[i], NULL, s_poster, &posters[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join (th[i], NULL);
    long n = (long)(rate / THREADS) * THREADS * seconds;
    int64_t t0 = rcd_clock_mono_ms ();
    while (s_query_int (db, "SELECT count(*) FROM messages WHERE status = "
                            "'sent'") < n + 200 &&
           rcd_clock_mono_ms () - t0 < 60000)
        usleep (100000);

    /* due time per text from the database, receive time from the sim */
    rcd_db_res_t *rows = NULL;
    if (rcd_db_exec (db,
                     "SELECT body, (extract(epoch FROM send_at) * 1000000)"
                     "::bigint FROM messages",
                     0, NULL, &rows) != 0)
        s_die ("select", rcd_db_error (db));
    json_t *due = json_object ();
    for (int r = 0; r < rcd_db_res_rows (rows); r++)
        json_object_set_new (due, rcd_db_res_value (rows, r, 0),
                             json_integer (rcd_db_res_int64 (rows, r, 1)));
    rcd_db_res_destroy (&rows);
    double *lat = calloc ((size_t)n + 1, sizeof *lat);
    long got = 0;
    long long seq = 0;
    while (got < n) {
        snprintf (url, sizeof url, "%s/_sim/log?since_seq=%lld", s_sim_url,
                  seq);
        res = rcd_test_http ("GET", url, NULL, NULL, NULL);
        json_t *log = json_loads (res.body ? res.body : "", 0, NULL);
        rcd_test_http_free (&res);
        json_t *entries = json_object_get (log, "entries");
        if (!json_array_size (entries)) {
            json_decref (log);
            break;
        }
        size_t i;
        json_t *e;
        json_array_foreach (entries, i, e)
        {
            const char *text = json_string_value (json_array_get (e, 4));
            json_t *d = text && !strncmp (text, "lat ", 4)
                            ? json_object_get (due, text)
                            : NULL;
            if (d && got < n)
                lat[got++] =
                    (double)json_integer_value (json_array_get (e, 1)) -
                    json_integer_value (d) / 1000.0;
        }
        seq = json_integer_value (json_object_get (log, "next_seq"));
        json_decref (log);
    }
    json_decref (due);
    json_decref (t);
    s_stop_all ();
    qsort (lat, (size_t)got, sizeof *lat, s_cmp_double);
    if (got > 0)
        printf (
            "| latency due -> simulator at %d msg/s for %d s | p50 %.1f ms, "
            "p99 %.1f ms, max %.1f ms (%ld of %ld messages) |\n",
            rate, seconds, lat[got / 2], lat[(long)(got * 0.99)], lat[got - 1],
            got, n);
    s_print_rss ();
    free (lat);
    rcd_db_destroy (&db);
    return got == n ? 0 : 1;
}

/*  Rate accuracy: one instance at rate/s, more messages than it may send,
    senders replicas. Counts what the simulator received per wall-clock
    second from its first arrival, over the given seconds. */
static int
s_rate (int rate, int seconds, int senders)
{
    s_prepare ();
    rcd_db_t *db = s_db ();
    s_seed_tenant (db);
    char r[24], count[24];
    snprintf (r, sizeof r, "%d", rate);
    snprintf (count, sizeof count, "%d", rate * seconds * 3 / 2 + 10);
    const char *p[] = {r, count};
    if (rcd_db_exec (db, "UPDATE instances SET rate_per_second = $1", 1, p,
                     NULL) != 0 ||
        rcd_db_exec (
            db,
            "INSERT INTO messages (tenant_id, to_phone, body, send_at) "
            "SELECT (SELECT id FROM tenants LIMIT 1), "
            "'+55119' || lpad((10000000 + g)::text, 8, '0'), "
            "'rate message ' || g, now() - interval '1 second' "
            "FROM generate_series(1, $2::int) g WHERE $1::int > 0",
            2, p, NULL) != 0)
        s_die ("seed", rcd_db_error (db));
    for (int i = 0; i < senders; i++)
        s_start (B_SENDER0 + i, "recado-sender", NULL);
    s_start (B_RECOVERY, "recado-recovery", NULL);
    s_start (B_SCHEDULER, "recado-scheduler", NULL);
    /* per-second counts from the simulator's log of arrivals */
    int *per = calloc ((size_t)seconds, sizeof *per);
    if (!per)
        s_die ("no memory", NULL);
    int64_t first = 0, seq = 0, start = rcd_clock_mono_ms ();
    long total = 0;
    while (rcd_clock_mono_ms () - start < (int64_t)(seconds + 15) * 1000) {
        char url[160];
        snprintf (url, sizeof url, "%s/_sim/log?since_seq=%lld", s_sim_url,
                  (long long)seq);
        rcd_test_http_t res = rcd_test_http ("GET", url, NULL, NULL, NULL);
        json_t *log = json_loads (res.body ? res.body : "", 0, NULL);
        rcd_test_http_free (&res);
        seq = json_integer_value (json_object_get (log, "next_seq"));
        size_t i;
        json_t *entry;
        bool past = false;
        json_array_foreach (json_object_get (log, "entries"), i, entry)
        {
            int64_t at = json_integer_value (json_array_get (entry, 1));
            if (!first)
                first = at;
            int64_t sec = (at - first) / 1000;
            if (sec < seconds) {
                per[sec]++;
                total++;
            }
            else
                past = true;
        }
        json_decref (log);
        if (past)
            break;
        usleep (200000);
    }
    s_stop_all ();
    int max = 0;
    for (int i = 0; i < seconds; i++)
        if (per[i] > max)
            max = per[i];
    long expected = (long)rate * seconds;
    double off = 100.0 * (double)(total - expected) / (double)expected;
    printf ("| rate accuracy, 1 instance at %d/s, %d sender(s), %d s | "
            "%ld sent (%+.1f %% of %ld), busiest second %d, per second:",
            rate, senders, seconds, total, off, expected, max);
    for (int i = 0; i < seconds; i++)
        printf (" %d", per[i]);
    printf (" |\n");
    free (per);
    rcd_db_destroy (&db);
    return max <= 2 * rate && off > -3.0 && off < 3.0 ? 0 : 1;
}

int
main (int argc, char **argv)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp (argv[1], "throughput"))
        return s_throughput (argc > 2 ? atol (argv[2]) : 100000,
                             argc > 3 ? atoi (argv[3]) : 1, 0);
    if (argc >= 2 && !strcmp (argv[1], "faults"))
        return s_throughput (argc > 2 ? atol (argv[2]) : 100000,
                             argc > 3 ? atoi (argv[3]) : 1,
                             argc > 4 ? atof (argv[4]) : 0.05);
    if (argc >= 2 && !strcmp (argv[1], "rate"))
        return s_rate (argc > 2 ? atoi (argv[2]) : 20,
                       argc > 3 ? atoi (argv[3]) : 30,
                       argc > 4 ? atoi (argv[4]) : 4);
    if (argc >= 2 && !strcmp (argv[1], "latency"))
        return s_latency (argc > 2 ? atoi (argv[2]) : 1000,
                          argc > 3 ? atoi (argv[3]) : 10);
    fprintf (stderr, "usage: bench_pipeline throughput [N] [SENDERS] | "
                     "latency [RATE] [SECONDS] | faults [N] [SENDERS] "
                     "[SHARE] | rate [R] [SECONDS] [SENDERS]\n");
    return 64;
}

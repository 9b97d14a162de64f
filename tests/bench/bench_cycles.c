/*  bench_cycles - ingest figures of billing cycles through the real
    ingestor binary over HTTP. Prints table rows; never gates CI.

      bench_cycles [BATCHES] [SIZE] [CLIENTS]

    BATCHES (100) POSTs of /v1/billing-cycles/batch with SIZE (1000)
    cycles each, distinct external ids and phones, 3 reminders per cycle
    (the tenant's default offsets -3, 0, 3), a template with two
    variations and the {{name}} {{amount}} {{due_date}} placeholders, due
    dates spread over the next 60 days (so the nearest ones collapse their
    past reminders). CLIENTS (1) threads share the batches, each with its
    own connection, one request in flight per client. Bodies are built
    before the clock starts; answers are checked after it stops.

    Reports cycles/second and messages/second from the first request sent
    to the last answer received, batch latency p50/p99/max, and the CPU
    used by the ingestor and the PostgreSQL backends.

    Needs RECADO_BENCH_PG (conninfo of a PostgreSQL superuser, no dbname)
    and RECADO_BIN_DIR; tests/bench/run sets both.
*/
#include <curl/curl.h>
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

#define S_CLIENTS_MAX 16
#define S_DB_NAME     "recado_bench_cycles"

static pid_t s_ingestor;
static char s_db_url[512];
static char s_api_url[64];
static char *s_key; /* the tenant's API key */

static void
s_die (const char *what, const char *detail)
{
    fprintf (stderr, "bench_cycles: %s%s%s\n", what, detail ? ": " : "",
             detail ? detail : "");
    if (s_ingestor > 0)
        rcd_test_stop (s_ingestor, SIGKILL, 2000);
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
s_query_int (rcd_db_t *db, const char *sql)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, 0, NULL, &res) != 0)
        s_die (sql, rcd_db_error (db));
    int64_t v = rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
    return v;
}

/*  Calls the API with the tenant's key (or the admin key); dies unless
    the status is the expected one. Returns the parsed answer. */
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

/*  A fresh database, the ingestor on a free port, a tenant and its
    template. */
static void
s_prepare (void)
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
                       "{\"name\":\"bench cycles\"}", 201);
    const char *key = json_string_value (json_object_get (t, "api_key"));
    if (!key)
        s_die ("tenant", NULL);
    s_key = strdup (key);
    json_decref (t);
    json_decref (s_api ("PUT", "/v1/templates/cobranca", s_key,
                        "{\"variations\":["
                        "\"Olá {{name}}, sua fatura de {{amount}} vence em "
                        "{{due_date}}.\","
                        "\"{{name}}, lembrete: {{amount}} com vencimento em "
                        "{{due_date}}. Pague pelo app.\"]}",
                        200));
}

/*  The body of batch b: cycles b*size .. b*size+size-1 (prefix keeps
    the warm-up's ids apart). Caller frees. */
static char *
s_batch_body (const char *prefix, int b, int size)
{
    int today = (int)(time (NULL) / 86400);
    size_t cap = (size_t)size * 256 + 64, len = 0;
    char *body = malloc (cap);
    if (!body)
        s_die ("out of memory", NULL);
    len += (size_t)snprintf (body + len, cap - len, "{\"items\":[");
    for (int i = 0; i < size; i++) {
        long n = (long)b * size + i;
        char due[16];
        time_t t = (time_t)(today + 1 + n % 60) * 86400;
        struct tm tm;
        gmtime_r (&t, &tm);
        strftime (due, sizeof due, "%Y-%m-%d", &tm);
        len += (size_t)snprintf (
            body + len, cap - len,
            "%s{\"external_billing_id\":\"%s-%07ld\",\"contact\":{\"phone\":"
            "\"+55119%08ld\",\"name\":\"Cliente %ld\"},\"amount_cents\":%ld,"
            "\"due_date\":\"%s\",\"template\":\"cobranca\"}",
            i ? "," : "", prefix, n, 10000000 + n, n, 1990 + n % 50000, due);
        if (len >= cap - 256)
            s_die ("batch body overflow", NULL);
    }
    snprintf (body + len, cap - len, "]}");
    return body;
}

typedef struct {
    char **bodies; /* the batches this client sends */
    char **answers;
    double *latency_ms;
    int count;
    int failed; /* requests without a 207 */
} client_t;

static void *
s_client_run (void *arg)
{
    client_t *c = arg;
    char url[128], auth[256];
    snprintf (url, sizeof url, "%s/v1/billing-cycles/batch", s_api_url);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", s_key);
    CURL *curl = curl_easy_init ();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append (headers, auth);
    headers = curl_slist_append (headers, "Content-Type: application/json");
    for (int i = 0; curl && i < c->count; i++) {
        bench_buffer_t buf = {NULL, 0};
        curl_easy_setopt (curl, CURLOPT_URL, url);
        curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, c->bodies[i]);
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, bench_collect);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, &buf);
        curl_easy_setopt (curl, CURLOPT_TIMEOUT, 300L);
        curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
        int64_t t0 = rcd_clock_mono_us ();
        long status = 0;
        if (curl_easy_perform (curl) == CURLE_OK)
            curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
        c->latency_ms[i] = (double)(rcd_clock_mono_us () - t0) / 1000.0;
        c->failed += status != 207;
        c->answers[i] = buf.data;
    }
    c->failed += curl ? 0 : c->count;
    curl_slist_free_all (headers);
    if (curl)
        curl_easy_cleanup (curl);
    return NULL;
}

/*  Cycles created and items refused in one 207 answer. */
static void
s_count_answer (const char *text, long *created, long *refused)
{
    json_t *answer = json_loads (text ? text : "", 0, NULL);
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get (answer, "items"), i, item)
    {
        if (json_object_get (item, "id"))
            (*created)++;
        else
            (*refused)++;
    }
    json_decref (answer);
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*  Runs count batches of size cycles over nclients clients. */
static void
s_run (const char *prefix, int count, int size, int nclients, client_t *clients,
       double *elapsed_s)
{
    for (int c = 0; c < nclients; c++) {
        memset (&clients[c], 0, sizeof clients[c]);
        clients[c].bodies = calloc ((size_t)count, sizeof (char *));
        clients[c].answers = calloc ((size_t)count, sizeof (char *));
        clients[c].latency_ms = calloc ((size_t)count, sizeof (double));
        if (!clients[c].bodies || !clients[c].answers || !clients[c].latency_ms)
            s_die ("out of memory", NULL);
    }
    for (int b = 0; b < count; b++) {
        client_t *c = &clients[b % nclients];
        c->bodies[c->count++] = s_batch_body (prefix, b, size);
    }
    pthread_t threads[S_CLIENTS_MAX];
    int64_t t0 = rcd_clock_mono_us ();
    for (int c = 0; c < nclients; c++)
        if (pthread_create (&threads[c], NULL, s_client_run, &clients[c]) != 0)
            s_die ("pthread_create", NULL);
    for (int c = 0; c < nclients; c++)
        pthread_join (threads[c], NULL);
    *elapsed_s = (double)(rcd_clock_mono_us () - t0) / 1e6;
}

static void
s_clients_free (client_t *clients, int nclients)
{
    for (int c = 0; c < nclients; c++) {
        for (int i = 0; i < clients[c].count; i++) {
            free (clients[c].bodies[i]);
            free (clients[c].answers[i]);
        }
        free (clients[c].bodies);
        free (clients[c].answers);
        free (clients[c].latency_ms);
    }
}

int
main (int argc, char **argv)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    int batches = argc > 1 ? atoi (argv[1]) : 100;
    int size = argc > 2 ? atoi (argv[2]) : 1000;
    int nclients = argc > 3 ? atoi (argv[3]) : 1;
    if (batches < 1 || size < 1 || size > 1000 || nclients < 1 ||
        nclients > S_CLIENTS_MAX) {
        fprintf (stderr,
                 "usage: bench_cycles [BATCHES] [SIZE<=1000] "
                 "[CLIENTS<=%d]\n",
                 S_CLIENTS_MAX);
        return 64;
    }
    curl_global_init (CURL_GLOBAL_ALL);
    s_prepare ();

    /* Warm-up, not measured: connections, plans, caches. */
    client_t clients[S_CLIENTS_MAX];
    double elapsed_s = 0;
    int warm = nclients * 2;
    s_run ("warm", warm, 100, nclients, clients, &elapsed_s);
    s_clients_free (clients, nclients);

    rcd_db_t *db = s_db ();
    int64_t before_cycles = s_query_int (db, "SELECT count(*) FROM "
                                             "billing_cycles");
    int64_t before_messages = s_query_int (db, "SELECT count(*) FROM "
                                               "messages");
    double ingestor_cpu0 = bench_cpu_seconds (s_ingestor, NULL);
    double pg_cpu0 = bench_postgres_cpu ();

    s_run ("inv", batches, size, nclients, clients, &elapsed_s);

    double ingestor_cpu = bench_cpu_seconds (s_ingestor, NULL) - ingestor_cpu0;
    double pg_cpu = bench_postgres_cpu () - pg_cpu0;
    long created = 0, refused = 0;
    int failed = 0, n = 0;
    double *lat = calloc ((size_t)batches, sizeof *lat);
    for (int c = 0; c < nclients; c++) {
        failed += clients[c].failed;
        for (int i = 0; i < clients[c].count; i++) {
            s_count_answer (clients[c].answers[i], &created, &refused);
            lat[n++] = clients[c].latency_ms[i];
        }
    }
    s_clients_free (clients, nclients);
    qsort (lat, (size_t)n, sizeof *lat, s_cmp_double);
    int64_t cycles =
        s_query_int (db, "SELECT count(*) FROM billing_cycles") - before_cycles;
    int64_t messages =
        s_query_int (db, "SELECT count(*) FROM messages") - before_messages;
    long expected = (long)batches * size;

    printf ("| billing cycles ingest, %d batches x %d, %d client(s) | "
            "%.0f cycles/s, %.0f msg/s (%.2f s; batch p50 %.0f ms, p99 %.0f "
            "ms, max %.0f ms; stored %lld cycles, %lld messages; refused "
            "%ld; failed requests %d) |\n",
            batches, size, nclients, (double)cycles / elapsed_s,
            (double)messages / elapsed_s, elapsed_s, lat[n / 2],
            lat[(int)((n - 1) * 0.99)], lat[n - 1], (long long)cycles,
            (long long)messages, refused, failed);
    printf ("| CPU during cycles ingest, %d client(s) | ingestor %.2f s, "
            "PostgreSQL %.2f s, over %.2f s on %ld cores |\n",
            nclients, ingestor_cpu, pg_cpu, elapsed_s,
            sysconf (_SC_NPROCESSORS_ONLN));
    free (lat);

    rcd_test_stop (s_ingestor, SIGTERM, 30000);
    s_ingestor = 0;
    rcd_db_destroy (&db);
    free (s_key);
    curl_global_cleanup ();
    return failed == 0 && refused == 0 && created == expected &&
                   cycles == expected && messages == expected * 3
               ? 0
               : 1;
}

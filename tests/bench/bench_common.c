/*  bench_common.c - what the benchmark programs share. */
#include "bench_common.h"
#include "rcd_db.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  User + system CPU seconds of a process (fields 14 and 15 of stat);
    *ppid receives its parent. */
double
bench_cpu_seconds (pid_t pid, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    char state;
    int parent;
    unsigned long utime = 0, stime = 0;
    if (sscanf (p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                &state, &parent, &utime, &stime) != 4)
        return 0;
    if (ppid)
        *ppid = parent;
    return (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
}

/*  CPU seconds of the bench cluster's postmaster and all its children. */
double
bench_postgres_cpu (void)
{
    const char *base = getenv ("RECADO_BENCH_PG");
    const char *host = base ? strstr (base, "host=") : NULL;
    if (!host)
        return 0;
    char dir[400], path[512];
    snprintf (dir, sizeof dir, "%.*s", (int)strcspn (host + 5, " "), host + 5);
    char *run = strstr (dir, "/run");
    if (run)
        *run = 0;
    snprintf (path, sizeof path, "%s/data/postmaster.pid", dir);
    FILE *f = fopen (path, "r");
    int postmaster = 0;
    if (!f || fscanf (f, "%d", &postmaster) != 1)
        postmaster = 0;
    if (f)
        fclose (f);
    double total = postmaster ? bench_cpu_seconds (postmaster, NULL) : 0;
    DIR *proc = postmaster ? opendir ("/proc") : NULL;
    struct dirent *entry;
    while (proc && (entry = readdir (proc))) {
        pid_t pid = (pid_t)atoi (entry->d_name);
        pid_t parent = 0;
        double cpu = pid > 0 ? bench_cpu_seconds (pid, &parent) : 0;
        if (parent == postmaster)
            total += cpu;
    }
    if (proc)
        closedir (proc);
    return total;
}

const char *
bench_fresh_database (const char *name, char *url, size_t size)
{
    const char *base = getenv ("RECADO_BENCH_PG");
    if (!base)
        return "RECADO_BENCH_PG is not set (use tests/bench/run)";
    char admin[512];
    snprintf (admin, sizeof admin, "%s dbname=postgres", base);
    rcd_db_t *db = rcd_db_new (admin);
    const char *why = NULL;
    if (!db || !rcd_db_connected (db))
        why = "cannot reach PostgreSQL";
    /* name is the program's own constant: identifiers cannot be
       parameters */
    char sql[256];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (!why && rcd_db_script (db, sql) != 0)
        why = "cannot drop the old database";
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", name);
    if (!why && rcd_db_script (db, sql) != 0)
        why = "cannot create the database";
    rcd_db_destroy (&db);
    if (why)
        return why;
    snprintf (url, size, "%s dbname=%s", base, name);
    db = rcd_db_new (url);
    if (!db || rcd_migrate_apply (db) < 0)
        why = "migrations failed";
    rcd_db_destroy (&db);
    return why;
}

pid_t
bench_start_ingestor (const char *db_url, const char *admin_key, char *api_url,
                      size_t size)
{
    int port = rcd_test_free_port ();
    snprintf (api_url, size, "http://127.0.0.1:%d", port);
    char env[7][600];
    snprintf (env[0], sizeof env[0], "DATABASE_URL=%s", db_url);
    snprintf (env[1], sizeof env[1], "RECADO_ADMIN_KEY=%s", admin_key);
    snprintf (env[2], sizeof env[2], "RECADO_HTTP_PORT=%d", port);
    snprintf (env[3], sizeof env[3],
              "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env[4], sizeof env[4], "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env[5], sizeof env[5], "RECADO_LOG_LEVEL=warn");
    snprintf (env[6], sizeof env[6], "RECADO_API_RATE_PER_SECOND=0");
    const char *envp[] = {env[0], env[1], env[2], env[3],
                          env[4], env[5], env[6], NULL};
    char *bin = rcd_test_bin ("recado-ingestor");
    const char *argv[] = {bin, NULL};
    pid_t pid = rcd_test_spawn (argv, envp, "bench-services.log");
    free (bin);
    if (pid <= 0)
        return -1;
    char url[160];
    snprintf (url, sizeof url, "%s/readyz", api_url);
    if (!rcd_test_wait_http_ok (url, 20000)) {
        rcd_test_stop (pid, SIGKILL, 2000);
        return -1;
    }
    return pid;
}

long
bench_peak_rss_kb (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen (path, "r");
    long kb = -1;
    while (f && fgets (line, sizeof line, f))
        if (!strncmp (line, "VmHWM:", 6))
            kb = strtol (line + 6, NULL, 10);
    if (f)
        fclose (f);
    return kb;
}

size_t
bench_collect (char *data, size_t size, size_t nmemb, void *arg)
{
    bench_buffer_t *buf = arg;
    size_t n = size * nmemb;
    char *grown = realloc (buf->data, buf->size + n + 1);
    if (!grown)
        return 0;
    memcpy (grown + buf->size, data, n);
    buf->size += n;
    grown[buf->size] = 0;
    buf->data = grown;
    return n;
}

json_t *
bench_api (const char *api_url, const char *method, const char *path,
           const char *key, const char *body, long expected, bool *ok)
{
    char url[256];
    snprintf (url, sizeof url, "%s%s", api_url, path);
    rcd_test_http_t res = rcd_test_http (method, url, key, body, NULL);
    *ok = res.status == expected;
    if (!*ok)
        fprintf (stderr, "%s %s: %ld %s\n", method, path, res.status,
                 res.body ? res.body : "");
    json_t *answer =
        *ok ? json_loads (res.body ? res.body : "", 0, NULL) : NULL;
    rcd_test_http_free (&res);
    return answer;
}

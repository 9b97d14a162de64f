/*  bench_common.h - what the benchmark programs share. */
#ifndef BENCH_COMMON_H_INCLUDED
#define BENCH_COMMON_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*  User + system CPU seconds of a process (fields 14 and 15 of
    /proc/PID/stat); *ppid (may be NULL) receives its parent. 0 when the
    process is gone. */
double
bench_cpu_seconds (pid_t pid, pid_t *ppid);

/*  CPU seconds of the bench cluster (RECADO_BENCH_PG's host= folder): its
    postmaster and every child of it. */
double
bench_postgres_cpu (void);

/*  Creates database name afresh on RECADO_BENCH_PG with every migration
    applied; its conninfo goes to url. Returns NULL, or what failed. */
const char *
bench_fresh_database (const char *name, char *url, size_t size);

/*  Starts recado-ingestor on db_url and a free port with admin key
    admin_key, its events and nudges going where nobody listens (dropped,
    as the ingestor allows), log level warn and the per-key API rate
    limit off (the figures are the ingest's), its output appended to
    bench-services.log; api_url receives "http://127.0.0.1:<port>".
    Returns its pid once /readyz answers, or -1. */
pid_t
bench_start_ingestor (const char *db_url, const char *admin_key, char *api_url,
                      size_t size);

/*  Peak resident memory of a process in KiB (VmHWM), -1 when unknown. */
long
bench_peak_rss_kb (pid_t pid);

/*  A response body being received by libcurl (bench_collect, as
    CURLOPT_WRITEFUNCTION with the buffer as CURLOPT_WRITEDATA):
    NUL-terminated, the caller frees data. */
typedef struct {
    char *data;
    size_t size;
} bench_buffer_t;

size_t
bench_collect (char *data, size_t size, size_t nmemb, void *arg);

/*  Calls api_url + path (key as bearer, body may be NULL). *ok says
    whether the status was expected (when not, the call and the answer
    are printed on stderr); the answer parsed as JSON, NULL when it is
    not JSON or the status was not expected. Caller decrefs. */
json_t *
bench_api (const char *api_url, const char *method, const char *path,
           const char *key, const char *body, long expected, bool *ok);

#endif

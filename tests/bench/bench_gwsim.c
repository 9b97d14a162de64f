/*  =========================================================================
    bench_gwsim - how many Evolution sends per second the simulator takes

    Usage: bench_gwsim [-n N] [-c CONCURRENCY] [--url BASE] [--instance NAME]
    Sends N (default 100000) sendText requests with distinct texts over C
    (default 64) keep-alive connections with libcurl multi, to a simulator
    started in process or to the one at --url (e.g. a running
    recado-gwsim). Prints one JSON line with the figures, then checks that
    the simulator counted exactly N new distinct sends and no duplicate.
    Exit 0 when the check holds, 1 when it does not, 78 on bad arguments.
    A benchmark prints figures; it never gates CI.
    =========================================================================
*/

#include "rcd_gwsim.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_EXIT_CONFIG 78

//  One in-flight request slot, reused for the next request when it ends.
typedef struct {
    CURL *easy;       //  keeps its connection across requests
    char body[128];   //  request body (curl does not copy POSTFIELDS)
    int64_t start_us; //  when the request was added
} s_slot_t;

//  Everything the run needs and measures.
typedef struct {
    const char *base_url;       //  simulator base URL
    const char *instance;       //  Evolution instance name
    long total;                 //  requests to send
    int concurrency;            //  slots
    long run;                   //  tag making this run's texts new
    long sent;                  //  requests started
    long ok;                    //  201 answers
    long failed;                //  anything else
    int64_t *latency_us;        //  per-request latency, for percentiles
    struct curl_slist *headers; //  shared request headers
    char url[256];              //  sendText URL
} s_bench_t;

//  Monotonic microseconds.
static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  Discard answer bodies; only the status matters here.
static size_t
s_discard_body (char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

//  Collect a control answer into a growing string.
static size_t
s_collect_body (char *data, size_t size, size_t nmemb, void *arg)
{
    char **text = arg;
    size_t old = *text ? strlen (*text) : 0;
    char *grown = realloc (*text, old + size * nmemb + 1);
    if (!grown)
        return 0;
    memcpy (grown + old, data, size * nmemb);
    grown[old + size * nmemb] = '\0';
    *text = grown;
    return size * nmemb;
}

//  Read total and distinct from GET /_sim/counts; -1 when unreachable.
static int
s_read_counts (const char *base_url, long *total, long *distinct)
{
    char url[256];
    snprintf (url, sizeof url, "%s/_sim/counts", base_url);
    char *text = NULL;
    CURL *easy = curl_easy_init ();
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_collect_body);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform (easy);
    curl_easy_cleanup (easy);
    json_t *doc = rc == CURLE_OK && text ? json_loads (text, 0, NULL) : NULL;
    free (text);
    if (!doc)
        return -1;
    *total = (long)json_integer_value (json_object_get (doc, "total"));
    *distinct = (long)json_integer_value (json_object_get (doc, "distinct"));
    json_decref (doc);
    return 0;
}

//  Point a slot at the next request and hand it to the multi handle.
static void
s_start_request (s_bench_t *bench, CURLM *multi, s_slot_t *slot)
{
    snprintf (slot->body, sizeof slot->body,
              "{\"number\":\"55119%08ld\",\"text\":\"bench %ld-%ld\"}",
              bench->sent % 50000, bench->run, bench->sent);
    curl_easy_setopt (slot->easy, CURLOPT_POSTFIELDS, slot->body);
    curl_easy_setopt (slot->easy, CURLOPT_POSTFIELDSIZE,
                      (long)strlen (slot->body));
    slot->start_us = s_now_us ();
    bench->sent++;
    curl_multi_add_handle (multi, slot->easy);
}

//  Sort helper for latency percentiles.
static int
s_compare_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

//  One help text for --help and argument errors.
static void
s_print_usage (FILE *out)
{
    fprintf (out, "usage: bench_gwsim [-n N] [-c CONCURRENCY] [--url BASE] "
                  "[--instance NAME]\n");
}

int
main (int argc, char *argv[])
{
    s_bench_t bench = {.instance = "bench", .total = 100000, .concurrency = 64};
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp (argv[i], "-n") == 0 && has_value)
            bench.total = strtol (argv[++i], NULL, 10);
        else if (strcmp (argv[i], "-c") == 0 && has_value)
            bench.concurrency = (int)strtol (argv[++i], NULL, 10);
        else if (strcmp (argv[i], "--url") == 0 && has_value)
            bench.base_url = argv[++i];
        else if (strcmp (argv[i], "--instance") == 0 && has_value)
            bench.instance = argv[++i];
        else if (strcmp (argv[i], "--help") == 0) {
            s_print_usage (stdout);
            return 0;
        }
        else {
            s_print_usage (stderr);
            return S_EXIT_CONFIG;
        }
    }
    if (bench.total <= 0 || bench.concurrency <= 0 ||
        bench.concurrency > 4096) {
        s_print_usage (stderr);
        return S_EXIT_CONFIG;
    }
    curl_global_init (CURL_GLOBAL_DEFAULT);
    rcd_gwsim_t *sim = NULL;
    if (!bench.base_url) {
        sim = rcd_gwsim_new ("127.0.0.1", 0);
        if (!sim) {
            fprintf (stderr, "bench_gwsim: cannot start the simulator\n");
            return 1;
        }
        bench.base_url = rcd_gwsim_url (sim);
    }
    long total_before = 0, distinct_before = 0;
    if (s_read_counts (bench.base_url, &total_before, &distinct_before)) {
        fprintf (stderr, "bench_gwsim: no simulator at %s\n", bench.base_url);
        rcd_gwsim_destroy (&sim);
        return 1;
    }
    snprintf (bench.url, sizeof bench.url, "%s/message/sendText/%s",
              bench.base_url, bench.instance);
    bench.headers = curl_slist_append (NULL, "Content-Type: application/json");
    bench.headers = curl_slist_append (bench.headers, "apikey: bench-key");
    bench.headers = curl_slist_append (bench.headers, "Expect:");
    bench.run = (long)(s_now_us () % 1000000000);
    bench.latency_us = calloc ((size_t)bench.total, sizeof (int64_t));

    CURLM *multi = curl_multi_init ();
    curl_multi_setopt (multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                       (long)bench.concurrency);
    curl_multi_setopt (multi, CURLMOPT_MAXCONNECTS, (long)bench.concurrency);
    s_slot_t *slots = calloc ((size_t)bench.concurrency, sizeof *slots);
    int64_t started = s_now_us ();
    for (int i = 0; i < bench.concurrency && bench.sent < bench.total; i++) {
        CURL *easy = curl_easy_init ();
        slots[i].easy = easy;
        curl_easy_setopt (easy, CURLOPT_URL, bench.url);
        curl_easy_setopt (easy, CURLOPT_HTTPHEADER, bench.headers);
        curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_discard_body);
        curl_easy_setopt (easy, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt (easy, CURLOPT_PRIVATE, &slots[i]);
        s_start_request (&bench, multi, &slots[i]);
    }
    long done = 0;
    while (done < bench.total) {
        int running = 0;
        curl_multi_perform (multi, &running);
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read (multi, &queued))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            s_slot_t *slot;
            long status = 0;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, &slot);
            curl_easy_getinfo (msg->easy_handle, CURLINFO_RESPONSE_CODE,
                               &status);
            if (msg->data.result == CURLE_OK && status == 201)
                bench.ok++;
            else
                bench.failed++;
            bench.latency_us[done++] = s_now_us () - slot->start_us;
            curl_multi_remove_handle (multi, slot->easy);
            if (bench.sent < bench.total)
                s_start_request (&bench, multi, slot);
        }
        if (done < bench.total)
            curl_multi_poll (multi, NULL, 0, 1000, NULL);
    }
    double seconds = (double)(s_now_us () - started) / 1e6;
    for (int i = 0; i < bench.concurrency; i++)
        curl_easy_cleanup (slots[i].easy);
    curl_multi_cleanup (multi);
    free (slots);
    curl_slist_free_all (bench.headers);

    qsort (bench.latency_us, (size_t)done, sizeof (int64_t), s_compare_i64);
    long total_after = 0, distinct_after = 0;
    int counted = s_read_counts (bench.base_url, &total_after, &distinct_after);
    long new_total = total_after - total_before;
    long new_distinct = distinct_after - distinct_before;
    bool verified = counted == 0 && bench.ok == bench.total &&
                    new_total == bench.total && new_distinct == bench.total;
    printf ("{\"bench\":\"gwsim\",\"target\":\"%s\",\"requests\":%ld,"
            "\"concurrency\":%d,\"seconds\":%.3f,\"requests_per_s\":%.0f,"
            "\"ok\":%ld,\"failed\":%ld,\"p50_us\":%" PRId64
            ",\"p99_us\":%" PRId64 ",\"counted\":%ld,\"distinct\":%ld,"
            "\"verified\":%s}\n",
            sim ? "in-process" : bench.base_url, bench.total, bench.concurrency,
            seconds, (double)bench.total / seconds, bench.ok, bench.failed,
            bench.latency_us[done / 2], bench.latency_us[(done * 99) / 100],
            new_total, new_distinct, verified ? "true" : "false");
    free (bench.latency_us);
    rcd_gwsim_destroy (&sim);
    curl_global_cleanup ();
    return verified ? 0 : 1;
}

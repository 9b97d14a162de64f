/*  =========================================================================
    rcd_gwhooks - the gateway simulator's webhook caller

    Contract (README.md "Webhooks" is the long form):

    Input: one call per send the simulator counted (rcd_gwhooks_evolution_
    sent, rcd_gwhooks_meta_sent), from libmicrohttpd's threads. Each call
    builds the bodies the real gateway would post and queues one job per
    body, due at arrival + the send's typing delay + delay_ms + k * step_ms
    (k = 0, 1, ... in the order echo, sent, delivered, read), plus a second
    copy of every duplicate_every-th job.

    Output: HTTP POSTs from one thread of our own over rcd_http (libcurl
    multi, keep-alive), at most S_INFLIGHT_MAX at once, earliest due first
    (jobs due together leave together and may arrive in any order, as
    with the real gateways). A job whose POST gets no answer, or a 408,
    429 or 5xx answer, is posted again retry_ms later while it has
    retries left.

    Bounds: at most S_QUEUE_MAX jobs wait; a job that does not fit is
    dropped and counted under "dropped". Nothing here ever blocks a
    request handler on the network: the handlers take the lock only to
    push jobs.

    Counters ("scheduled", "posted" = answered 2xx, "rejected" = answered
    otherwise, "failed" = no answer, "dropped", "duplicated", "retried",
    "pending" = queued + in flight) and answers by HTTP status; a reset
    forgets them and the queue, and results of posts that were in flight
    at the reset are not counted.

    Threads and locks: lock guards the settings pointer, the queue, the
    generation and last_error; counters are atomics; http and slots belong
    to the webhook thread alone. The lock never nests with rcd_gwsim's.
    =========================================================================
*/

#include "rcd_gwhooks.h"
#include "rcd_crypto.h"
#include "rcd_http.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define S_QUEUE_MAX     100000
#define S_INFLIGHT_MAX  16
#define S_IDLE_WAIT_MS  1000
#define S_CONNECT_MS    2000
#define S_MAX_DELAY_MS  3600000
#define S_URL_MAX       2048
#define S_SECRET_MAX    256
#define S_HEADER_MAX    1024
#define S_STATUS_SLOTS  600
#define S_OWNER_JID     "5511940028922@s.whatsapp.net"
#define S_WABA_ID       "102290129340398"
#define S_DISPLAY_PHONE "5511940028922"
#define S_FNV_BASIS     0xcbf29ce484222325ULL

//  Receipts a send may get, in the order they are posted.
typedef enum {
    RECEIPT_SENT,
    RECEIPT_DELIVERED,
    RECEIPT_READ,
    RECEIPT_COUNT
} s_receipt_t;

//  Our names (the "receipts" setting, Meta's status) and Evolution's.
static const char *s_receipt_names[RECEIPT_COUNT] = {"sent", "delivered",
                                                     "read"};
static const char *s_evolution_statuses[RECEIPT_COUNT] = {
    "SERVER_ACK", "DELIVERY_ACK", "READ"};

//  The counters, indexed as s_counter_names.
typedef enum {
    COUNTER_SCHEDULED,
    COUNTER_POSTED,
    COUNTER_REJECTED,
    COUNTER_FAILED,
    COUNTER_DROPPED,
    COUNTER_DUPLICATED,
    COUNTER_RETRIED,
    COUNTER_COUNT
} s_counter_t;

static const char *s_counter_names[COUNTER_COUNT] = {
    "scheduled", "posted",     "rejected", "failed",
    "dropped",   "duplicated", "retried"};

//  Installed settings, parsed from the JSON object; shared read-only by
//  reference between the lock holder and the threads building jobs.
typedef struct {
    atomic_int refs;              //  references held
    char *evolution_url;          //  NULL: no Evolution webhooks
    char *meta_url;               //  NULL: no Meta webhooks
    char *meta_app_secret;        //  signing key when the instance has none
    char **evolution_headers;     //  "Name: value" lines, NULL-ended
    bool evolution_apikey;        //  envelope apikey = the send's apikey
    bool echo;                    //  post Evolution's send.message echo
    bool strip_ninth_digit;       //  jids and recipient_id without the 9
    bool receipts[RECEIPT_COUNT]; //  receipts to post
    int delay_ms;                 //  from the send to the first webhook
    int step_ms;                  //  between the webhooks of one send
    int duplicate_every;          //  every n-th job twice, 0 off
    int timeout_ms;               //  per POST
    int retries;                  //  extra attempts of a failed POST
    int retry_ms;                 //  wait before each extra attempt
} s_settings_t;

//  One POST to make, and again on failure while retries are left.
typedef struct {
    int64_t due_ms;      //  monotonic milliseconds
    uint64_t seq;        //  queue order among equal due times
    uint64_t generation; //  reset generation it belongs to
    int retries_left;    //  extra attempts allowed
    int retry_ms;        //  wait before one
    int timeout_ms;      //  per attempt
    int slot;            //  in-flight slot, -1 while queued
    char *url;           //  where to POST
    char **headers;      //  header lines, NULL-ended
    char *body;          //  the exact bytes posted (and signed)
    size_t body_len;     //  bytes in body
} s_job_t;

struct rcd_gwhooks {
    pthread_mutex_t lock;                    //  guards up to last_error
    s_settings_t *settings;                  //  installed settings
    s_job_t **heap;                          //  min-heap on (due, seq)
    size_t count;                            //  jobs queued
    size_t cap;                              //  slots in heap
    uint64_t seq;                            //  next job's seq
    uint64_t generation;                     //  bumped by reset
    bool stopping;                           //  destroy started
    char last_error[256];                    //  last failure, or ""
    atomic_size_t counters[COUNTER_COUNT];   //  see s_counter_names
    atomic_size_t by_status[S_STATUS_SLOTS]; //  answers per status
    atomic_size_t inflight;                  //  POSTs out now
    atomic_uint_fast64_t numbered;           //  jobs numbered so far
    int wake_fd;                             //  eventfd: queue changed
    pthread_t thread;                        //  posts the jobs
    bool thread_started;                     //  thread must be joined
    rcd_http_t *http;                        //  webhook thread only
    s_job_t *slots[S_INFLIGHT_MAX];          //  webhook thread only
};

//  --------------------------------------------------------------------------
//  Helpers

//  Monotonic milliseconds, for due times.
static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Wall-clock milliseconds, for the timestamps in bodies.
static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  FNV-1a, to derive stable ids from values we already have.
static uint64_t
s_hash (const char *text, uint64_t hash)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        hash ^= *c;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

//  The digits of a number as the gateway's webhooks name it: without the
//  Brazilian ninth digit when strip is set (an account registered before
//  the 9 was added: 55 + DDD + 9 + 8 digits becomes 55 + DDD + 8 digits).
static void
s_gateway_digits (const char *number, bool strip, char *out, size_t out_size)
{
    size_t used = 0;
    for (const char *c = number; *c && used + 1 < out_size; c++)
        if (*c >= '0' && *c <= '9')
            out[used++] = *c;
    out[used] = '\0';
    if (strip && used == 13 && strncmp (out, "55", 2) == 0 && out[4] == '9')
        memmove (out + 4, out + 5, used - 4);
}

//  Evolution's date_time: the server's local time written as if it were
//  UTC (toISOString of a shifted Date), which receivers must not trust.
static void
s_evolution_date_time (char *out, size_t out_size)
{
    int64_t now = s_wall_ms ();
    time_t seconds = (time_t)(now / 1000);
    struct tm local;
    localtime_r (&seconds, &local);
    char stamp[32];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &local);
    snprintf (out, out_size, "%s.%03dZ", stamp, (int)(now % 1000));
}

//  Evolution's own row id of a message (a cuid: "c" + 24 lower-case
//  letters and digits), derived from the WhatsApp id so it is stable.
static void
s_evolution_row_id (const char *key_id, char out[26])
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t bits = s_hash (key_id, S_FNV_BASIS);
    out[0] = 'c';
    out[1] = 'm';
    for (int i = 2; i < 25; i++) {
        if (i % 12 == 0)
            bits = s_hash (key_id, bits);
        out[i] = alphabet[bits % 36];
        bits /= 36;
    }
    out[25] = '\0';
}

//  Free a NULL-ended array of strings.
static void
s_free_lines (char **lines)
{
    for (size_t i = 0; lines && lines[i]; i++)
        free (lines[i]);
    free (lines);
}

//  --------------------------------------------------------------------------
//  Settings

json_t *
rcd_gwhooks_defaults (void)
{
    return json_pack ("{s:n, s:n, s:s, s:{}, s:b, s:b, s:[sss], s:i, s:i, "
                      "s:i, s:b, s:i, s:i, s:i}",
                      "evolution_url", "meta_url", "meta_app_secret", "",
                      "evolution_headers", "evolution_apikey", 1, "echo", 1,
                      "receipts", "sent", "delivered", "read", "delay_ms", 0,
                      "step_ms", 0, "duplicate_every", 0, "strip_ninth_digit",
                      0, "timeout_ms", 5000, "retries", 0, "retry_ms", 1000);
}

//  An integer setting within [min, max].
static bool
s_int_ok (json_t *value, json_int_t min, json_int_t max)
{
    return json_is_integer (value) && json_integer_value (value) >= min &&
           json_integer_value (value) <= max;
}

//  A webhook URL: null, or an http(s) URL without blanks.
static bool
s_url_ok (json_t *value)
{
    if (json_is_null (value))
        return true;
    const char *url = json_string_value (value);
    if (!url || strlen (url) >= S_URL_MAX)
        return false;
    if (strncmp (url, "http://", 7) != 0 && strncmp (url, "https://", 8) != 0)
        return false;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ')
            return false;
    return true;
}

//  Extra headers: an object of header names (RFC 7230 tokens) to values
//  without line breaks.
static bool
s_headers_ok (json_t *value)
{
    if (!json_is_object (value) || json_object_size (value) > 16)
        return false;
    const char *name;
    json_t *text;
    json_object_foreach (value, name, text)
    {
        const char *line = json_string_value (text);
        if (!*name || strlen (name) > 64 || !line ||
            strlen (name) + strlen (line) + 3 > S_HEADER_MAX ||
            strpbrk (line, "\r\n"))
            return false;
        for (const char *c = name; *c; c++)
            if (!isalnum ((unsigned char)*c) && !strchr ("!#$%&'*+-.^_`|~", *c))
                return false;
    }
    return true;
}

//  Receipts: an array of distinct names among sent, delivered, read.
static bool
s_receipts_ok (json_t *value)
{
    if (!json_is_array (value))
        return false;
    bool seen[RECEIPT_COUNT] = {false};
    size_t i;
    json_t *item;
    json_array_foreach (value, i, item)
    {
        const char *name = json_string_value (item);
        int found = -1;
        for (int r = 0; name && r < RECEIPT_COUNT; r++)
            if (strcmp (name, s_receipt_names[r]) == 0)
                found = r;
        if (found < 0 || seen[found])
            return false;
        seen[found] = true;
    }
    return true;
}

//  Whether value is acceptable for the setting key (known to exist).
static bool
s_setting_ok (const char *key, json_t *value)
{
    if (strcmp (key, "evolution_url") == 0 || strcmp (key, "meta_url") == 0)
        return s_url_ok (value);
    if (strcmp (key, "meta_app_secret") == 0)
        return json_is_string (value) &&
               strlen (json_string_value (value)) < S_SECRET_MAX;
    if (strcmp (key, "evolution_headers") == 0)
        return s_headers_ok (value);
    if (strcmp (key, "receipts") == 0)
        return s_receipts_ok (value);
    if (strcmp (key, "evolution_apikey") == 0 || strcmp (key, "echo") == 0 ||
        strcmp (key, "strip_ninth_digit") == 0)
        return json_is_boolean (value);
    if (strcmp (key, "duplicate_every") == 0)
        return s_int_ok (value, 0, 1000000);
    if (strcmp (key, "timeout_ms") == 0)
        return s_int_ok (value, 1, 600000);
    if (strcmp (key, "retries") == 0)
        return s_int_ok (value, 0, 10);
    //  delay_ms, step_ms, retry_ms
    return s_int_ok (value, 0, S_MAX_DELAY_MS);
}

int
rcd_gwhooks_merge (json_t *current, json_t *patch, json_t **merged, char *err,
                   size_t err_size)
{
    assert (current && merged);
    *merged = NULL;
    json_t *defaults = rcd_gwhooks_defaults ();
    json_t *next = json_deep_copy (current);
    int rc = defaults && next ? 0 : -1;
    if (rc == 0 && json_is_null (patch)) {
        json_decref (next);
        next = defaults;
        defaults = NULL;
    }
    else if (rc == 0 && !json_is_object (patch)) {
        snprintf (err, err_size, "webhook must be an object or null");
        rc = -2;
    }
    const char *key;
    json_t *value;
    if (rc == 0 && json_is_object (patch))
        json_object_foreach (patch, key, value)
        {
            json_t *fallback = json_object_get (defaults, key);
            if (!fallback) {
                snprintf (err, err_size, "webhook.%s: unknown setting", key);
                rc = -2;
                break;
            }
            if (json_is_null (value))
                value = fallback;
            else if (!s_setting_ok (key, value)) {
                snprintf (err, err_size, "webhook.%s: bad value", key);
                rc = -2;
                break;
            }
            if (json_object_set (next, key, value)) {
                rc = -1;
                break;
            }
        }
    json_decref (defaults);
    if (rc == 0)
        *merged = next;
    else
        json_decref (next);
    return rc;
}

//  Drop one reference to settings; the last one frees them.
static void
s_settings_release (s_settings_t **settings_p)
{
    s_settings_t *settings = *settings_p;
    *settings_p = NULL;
    if (!settings || atomic_fetch_sub (&settings->refs, 1) != 1)
        return;
    free (settings->evolution_url);
    free (settings->meta_url);
    free (settings->meta_app_secret);
    s_free_lines (settings->evolution_headers);
    free (settings);
}

//  A string setting copied out, NULL for null; *failed on no memory.
static char *
s_copy_setting (json_t *doc, const char *key, bool *failed)
{
    const char *value = json_string_value (json_object_get (doc, key));
    if (!value)
        return NULL;
    char *copy = strdup (value);
    if (!copy)
        *failed = true;
    return copy;
}

//  Parse a full, valid settings object. NULL when out of memory.
static s_settings_t *
s_settings_new (json_t *doc)
{
    s_settings_t *settings = calloc (1, sizeof *settings);
    if (!settings)
        return NULL;
    atomic_init (&settings->refs, 1);
    bool failed = false;
    settings->evolution_url = s_copy_setting (doc, "evolution_url", &failed);
    settings->meta_url = s_copy_setting (doc, "meta_url", &failed);
    settings->meta_app_secret =
        s_copy_setting (doc, "meta_app_secret", &failed);
    json_t *headers = json_object_get (doc, "evolution_headers");
    settings->evolution_headers =
        calloc (json_object_size (headers) + 1, sizeof (char *));
    failed |= !settings->evolution_headers;
    const char *name;
    json_t *value;
    size_t at = 0;
    json_object_foreach (headers, name, value)
    {
        if (failed)
            break;
        if (asprintf (&settings->evolution_headers[at], "%s: %s", name,
                      json_string_value (value)) < 0) {
            settings->evolution_headers[at] = NULL;
            failed = true;
        }
        else
            at++;
    }
    settings->evolution_apikey =
        json_is_true (json_object_get (doc, "evolution_apikey"));
    settings->echo = json_is_true (json_object_get (doc, "echo"));
    settings->strip_ninth_digit =
        json_is_true (json_object_get (doc, "strip_ninth_digit"));
    size_t i;
    json_array_foreach (json_object_get (doc, "receipts"), i, value)
    {
        for (int r = 0; r < RECEIPT_COUNT; r++)
            if (strcmp (json_string_value (value), s_receipt_names[r]) == 0)
                settings->receipts[r] = true;
    }
    settings->delay_ms =
        (int)json_integer_value (json_object_get (doc, "delay_ms"));
    settings->step_ms =
        (int)json_integer_value (json_object_get (doc, "step_ms"));
    settings->duplicate_every =
        (int)json_integer_value (json_object_get (doc, "duplicate_every"));
    settings->timeout_ms =
        (int)json_integer_value (json_object_get (doc, "timeout_ms"));
    settings->retries =
        (int)json_integer_value (json_object_get (doc, "retries"));
    settings->retry_ms =
        (int)json_integer_value (json_object_get (doc, "retry_ms"));
    if (failed || !settings->meta_app_secret)
        s_settings_release (&settings);
    return settings;
}

//  Take a reference to the installed settings and the generation they
//  belong to.
static s_settings_t *
s_settings_take (rcd_gwhooks_t *self, uint64_t *generation)
{
    pthread_mutex_lock (&self->lock);
    s_settings_t *settings = self->settings;
    atomic_fetch_add (&settings->refs, 1);
    *generation = self->generation;
    pthread_mutex_unlock (&self->lock);
    return settings;
}

int
rcd_gwhooks_set_settings (rcd_gwhooks_t *self, json_t *settings)
{
    assert (self && settings);
    s_settings_t *fresh = s_settings_new (settings);
    if (!fresh)
        return -1;
    pthread_mutex_lock (&self->lock);
    s_settings_t *old = self->settings;
    self->settings = fresh;
    pthread_mutex_unlock (&self->lock);
    s_settings_release (&old);
    return 0;
}

//  --------------------------------------------------------------------------
//  The queue: a min-heap on (due_ms, seq)

//  Whether job a must leave before job b.
static bool
s_job_before (const s_job_t *a, const s_job_t *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

//  Free a job and what it owns. Safe on NULL.
static void
s_job_destroy (s_job_t **job_p)
{
    s_job_t *job = *job_p;
    if (!job)
        return;
    free (job->url);
    s_free_lines (job->headers);
    free (job->body);
    free (job);
    *job_p = NULL;
}

//  Push a job. Caller holds lock. Returns -1 when out of memory.
static int
s_push_job (rcd_gwhooks_t *self, s_job_t *job)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 1024;
        s_job_t **heap = realloc (self->heap, cap * sizeof *heap);
        if (!heap)
            return -1;
        self->heap = heap;
        self->cap = cap;
    }
    job->seq = self->seq++;
    job->slot = -1;
    size_t at = self->count++;
    self->heap[at] = job;
    while (at > 0) {
        size_t parent = (at - 1) / 2;
        if (!s_job_before (self->heap[at], self->heap[parent]))
            break;
        s_job_t *swap = self->heap[parent];
        self->heap[parent] = self->heap[at];
        self->heap[at] = swap;
        at = parent;
    }
    return 0;
}

//  Remove and return the earliest job. Caller holds lock; count > 0.
static s_job_t *
s_pop_job (rcd_gwhooks_t *self)
{
    s_job_t **heap = self->heap;
    s_job_t *top = heap[0];
    heap[0] = heap[--self->count];
    size_t at = 0;
    while (true) {
        size_t left = at * 2 + 1, right = left + 1, least = at;
        if (left < self->count && s_job_before (heap[left], heap[least]))
            least = left;
        if (right < self->count && s_job_before (heap[right], heap[least]))
            least = right;
        if (least == at)
            break;
        s_job_t *swap = heap[least];
        heap[least] = heap[at];
        heap[at] = swap;
        at = least;
    }
    return top;
}

//  Wake the webhook thread: the queue or the stop flag changed.
static void
s_wake (rcd_gwhooks_t *self)
{
    uint64_t one = 1;
    ssize_t written = write (self->wake_fd, &one, sizeof one);
    (void)written; //  a full counter already wakes it
}

//  A job for body (consumed) to url with header lines, or NULL when out
//  of memory (body is freed then).
static s_job_t *
s_job_new (const s_settings_t *settings, const char *url,
           const char *const *headers, char *body, int64_t due_ms)
{
    s_job_t *job = body ? calloc (1, sizeof *job) : NULL;
    if (!job) {
        free (body);
        return NULL;
    }
    size_t lines = 0;
    while (headers[lines])
        lines++;
    job->headers = calloc (lines + 1, sizeof (char *));
    job->url = strdup (url);
    job->body = body;
    job->body_len = strlen (body);
    bool failed = !job->headers || !job->url;
    for (size_t i = 0; !failed && i < lines; i++)
        failed = !(job->headers[i] = strdup (headers[i]));
    job->due_ms = due_ms;
    job->retries_left = settings->retries;
    job->retry_ms = settings->retry_ms;
    job->timeout_ms = settings->timeout_ms;
    if (failed)
        s_job_destroy (&job);
    return job;
}

//  A copy of a job, for duplicate_every. NULL when out of memory.
static s_job_t *
s_job_copy (const s_settings_t *settings, const s_job_t *job)
{
    char *body = strdup (job->body);
    return s_job_new (settings, job->url, (const char *const *)job->headers,
                      body, job->due_ms);
}

//  Queue a job (consumed; NULL counts as dropped), and a copy of it when
//  its number comes up under duplicate_every. Jobs built before a reset
//  are dropped silently: they belong to the old counters.
static void
s_schedule (rcd_gwhooks_t *self, const s_settings_t *settings,
            uint64_t generation, s_job_t *job)
{
    s_job_t *copy = NULL;
    uint64_t number = atomic_fetch_add (&self->numbered, 1) + 1;
    if (job && settings->duplicate_every &&
        number % (uint64_t)settings->duplicate_every == 0) {
        copy = s_job_copy (settings, job);
        if (copy)
            atomic_fetch_add (&self->counters[COUNTER_DUPLICATED], 1);
    }
    s_job_t *jobs[2] = {job, copy};
    size_t wanted = copy ? 2 : 1;
    for (size_t i = 0; i < wanted; i++)
        if (jobs[i])
            jobs[i]->generation = generation;
    bool wake = false;
    pthread_mutex_lock (&self->lock);
    bool current = generation == self->generation && !self->stopping;
    for (size_t i = 0; i < wanted; i++) {
        if (current)
            atomic_fetch_add (&self->counters[COUNTER_SCHEDULED], 1);
        if (current && jobs[i] && self->count < S_QUEUE_MAX &&
            s_push_job (self, jobs[i]) == 0) {
            wake |= self->heap[0] == jobs[i];
            jobs[i] = NULL;
        }
        else if (current) {
            atomic_fetch_add (&self->counters[COUNTER_DROPPED], 1);
            snprintf (self->last_error, sizeof self->last_error,
                      "queue full (%d jobs) or out of memory", S_QUEUE_MAX);
        }
    }
    pthread_mutex_unlock (&self->lock);
    s_job_destroy (&jobs[0]);
    s_job_destroy (&jobs[1]);
    if (wake)
        s_wake (self);
}

//  --------------------------------------------------------------------------
//  Bodies

//  Dump a document (consumed) compactly; NULL when out of memory.
static char *
s_dump (json_t *doc)
{
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    return text;
}

//  Evolution's envelope around data (consumed), as webhook.controller.ts
//  emits it.
static char *
s_evolution_envelope (const s_settings_t *settings,
                      const rcd_gwhooks_evolution_t *send, const char *event,
                      json_t *data)
{
    if (!data)
        return NULL;
    char date_time[48];
    s_evolution_date_time (date_time, sizeof date_time);
    json_t *apikey = settings->evolution_apikey && send->apikey
                         ? json_string (send->apikey)
                         : json_null ();
    return s_dump (json_pack (
        "{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:o*}", "event", event, "instance",
        send->instance, "data", data, "destination", settings->evolution_url,
        "date_time", date_time, "sender", S_OWNER_JID, "server_url",
        send->server_url, "apikey", apikey));
}

//  send.message: the message Evolution stored for our sendText (the same
//  object the 201 answered with), status PENDING.
static char *
s_evolution_echo (const s_settings_t *settings,
                  const rcd_gwhooks_evolution_t *send, const char *jid)
{
    json_t *data =
        json_pack ("{s:{s:s, s:b, s:s}, s:s, s:s, s:{s:s}, s:s, s:I, s:s, s:s}",
                   "key", "remoteJid", jid, "fromMe", 1, "id", send->key_id,
                   "pushName", "", "status", "PENDING", "message",
                   "conversation", send->text, "messageType", "conversation",
                   "messageTimestamp", (json_int_t)send->timestamp,
                   "instanceId", send->instance_id, "source", "unknown");
    return s_evolution_envelope (settings, send, "send.message", data);
}

//  messages.update: one receipt of our message, as Baileys' handler
//  relays it (keyId is the 201's key.id; messageId is Evolution's row).
static char *
s_evolution_receipt (const s_settings_t *settings,
                     const rcd_gwhooks_evolution_t *send, const char *jid,
                     s_receipt_t receipt)
{
    char row_id[26];
    s_evolution_row_id (send->key_id, row_id);
    json_t *data = json_pack (
        "{s:s, s:s, s:b, s:s, s:s, s:s}", "keyId", send->key_id, "remoteJid",
        jid, "fromMe", 1, "status", s_evolution_statuses[receipt], "instanceId",
        send->instance_id, "messageId", row_id);
    return s_evolution_envelope (settings, send, "messages.update", data);
}

//  Meta's statuses change for one receipt of one message, at unix
//  seconds when. sent and delivered carry conversation and pricing; read
//  carries neither.
static char *
s_meta_status (const rcd_gwhooks_meta_t *send, const char *recipient,
               s_receipt_t receipt, int64_t when)
{
    char timestamp[24], expires[24], conversation[40];
    snprintf (timestamp, sizeof timestamp, "%" PRId64, when);
    snprintf (expires, sizeof expires, "%" PRId64, when + 86400);
    uint64_t hash =
        s_hash (recipient, s_hash (send->phone_number_id, S_FNV_BASIS));
    snprintf (conversation, sizeof conversation, "%016" PRIx64 "%016" PRIx64,
              hash, s_hash (send->wamid, hash));
    json_t *status = json_pack ("{s:s, s:s, s:s, s:s}", "id", send->wamid,
                                "status", s_receipt_names[receipt], "timestamp",
                                timestamp, "recipient_id", recipient);
    if (status && receipt != RECEIPT_READ) {
        json_object_set_new (status, "conversation",
                             json_pack ("{s:s, s:s, s:{s:s}}", "id",
                                        conversation, "expiration_timestamp",
                                        expires, "origin", "type", "utility"));
        json_object_set_new (status, "pricing",
                             json_pack ("{s:b, s:s, s:s, s:s}", "billable", 1,
                                        "pricing_model", "PMP", "category",
                                        "utility", "type", "regular"));
    }
    return s_dump (json_pack (
        "{s:s, s:[{s:s, s:[{s:{s:s, s:{s:s, s:s}, s:[o*]}, s:s}]}]}", "object",
        "whatsapp_business_account", "entry", "id", S_WABA_ID, "changes",
        "value", "messaging_product", "whatsapp", "metadata",
        "display_phone_number", S_DISPLAY_PHONE, "phone_number_id",
        send->phone_number_id, "statuses", status, "field", "messages"));
}

//  --------------------------------------------------------------------------
//  What a send triggers

void
rcd_gwhooks_evolution_sent (rcd_gwhooks_t *self,
                            const rcd_gwhooks_evolution_t *send)
{
    assert (self && send);
    uint64_t generation;
    s_settings_t *settings = s_settings_take (self, &generation);
    if (!settings->evolution_url) {
        s_settings_release (&settings);
        return;
    }
    char digits[64], jid[96];
    s_gateway_digits (send->number, settings->strip_ninth_digit, digits,
                      sizeof digits);
    snprintf (jid, sizeof jid, "%s@s.whatsapp.net", digits);
    //  the message leaves after the typing delay; webhooks follow it
    int64_t due = s_mono_ms () + send->typing_ms + settings->delay_ms;
    const char *base[] = {"Content-Type: application/json",
                          "User-Agent: axios/1.7.9"};
    size_t extra = 0;
    while (settings->evolution_headers[extra])
        extra++;
    const char **headers = calloc (extra + 3, sizeof *headers);
    if (headers) {
        headers[0] = base[0];
        headers[1] = base[1];
        for (size_t i = 0; i < extra; i++)
            headers[2 + i] = settings->evolution_headers[i];
    }
    int step = 0;
    if (settings->echo) {
        char *body = headers ? s_evolution_echo (settings, send, jid) : NULL;
        s_schedule (self, settings, generation,
                    body ? s_job_new (settings, settings->evolution_url,
                                      headers, body, due)
                         : NULL);
        step++;
    }
    for (int r = 0; r < RECEIPT_COUNT; r++) {
        if (!settings->receipts[r])
            continue;
        char *body =
            headers ? s_evolution_receipt (settings, send, jid, (s_receipt_t)r)
                    : NULL;
        int64_t at = due + (int64_t)step++ * settings->step_ms;
        s_schedule (self, settings, generation,
                    body ? s_job_new (settings, settings->evolution_url,
                                      headers, body, at)
                         : NULL);
    }
    free (headers);
    s_settings_release (&settings);
}

void
rcd_gwhooks_meta_sent (rcd_gwhooks_t *self, const rcd_gwhooks_meta_t *send)
{
    assert (self && send);
    uint64_t generation;
    s_settings_t *settings = s_settings_take (self, &generation);
    if (!settings->meta_url) {
        s_settings_release (&settings);
        return;
    }
    char recipient[64];
    s_gateway_digits (send->to, settings->strip_ninth_digit, recipient,
                      sizeof recipient);
    const char *secret =
        send->app_secret ? send->app_secret : settings->meta_app_secret;
    int64_t now_ms = s_wall_ms ();
    int64_t due = s_mono_ms () + settings->delay_ms;
    int step = 0;
    for (int r = 0; r < RECEIPT_COUNT; r++) {
        if (!settings->receipts[r])
            continue;
        int64_t offset = settings->delay_ms + (int64_t)step * settings->step_ms;
        char *body = s_meta_status (send, recipient, (s_receipt_t)r,
                                    (now_ms + offset) / 1000);
        char signature[96] = "";
        char mac[65];
        if (body && *secret &&
            rcd_crypto_hmac_sha256_hex (secret, body, strlen (body), mac) == 0)
            snprintf (signature, sizeof signature,
                      "X-Hub-Signature-256: sha256=%s", mac);
        //  Meta signs every body; no secret configured: no header
        const char *headers[] = {"Content-Type: application/json",
                                 "User-Agent: facebookexternalua",
                                 *signature ? signature : NULL, NULL};
        s_schedule (self, settings, generation,
                    body ? s_job_new (settings, settings->meta_url, headers,
                                      body,
                                      due + (int64_t)step * settings->step_ms)
                         : NULL);
        step++;
    }
    s_settings_release (&settings);
}

//  --------------------------------------------------------------------------
//  The webhook thread

//  Hand one due job to rcd_http in a free slot.
static void
s_start_job (rcd_gwhooks_t *self, s_job_t *job)
{
    int slot = 0;
    while (slot < S_INFLIGHT_MAX && self->slots[slot])
        slot++;
    assert (slot < S_INFLIGHT_MAX);
    int connect_ms =
        job->timeout_ms < S_CONNECT_MS ? job->timeout_ms : S_CONNECT_MS;
    if (rcd_http_post (self->http, job->url, (const char *const *)job->headers,
                       job->body, job->body_len, connect_ms, job->timeout_ms,
                       job) != 0) {
        pthread_mutex_lock (&self->lock);
        if (job->generation == self->generation) {
            atomic_fetch_add (&self->counters[COUNTER_FAILED], 1);
            snprintf (self->last_error, sizeof self->last_error,
                      "cannot queue a POST to %.200s", job->url);
        }
        pthread_mutex_unlock (&self->lock);
        s_job_destroy (&job);
        return;
    }
    job->slot = slot;
    self->slots[slot] = job;
    atomic_fetch_add (&self->inflight, 1);
}

//  Count one finished POST and queue it again when it failed and may
//  retry (no answer, 408, 429, 5xx: what a gateway retries).
static void
s_finish_job (rcd_gwhooks_t *self, const rcd_http_result_t *res)
{
    s_job_t *job = res->user;
    self->slots[job->slot] = NULL;
    job->slot = -1;
    pthread_mutex_lock (&self->lock);
    bool retry = false;
    if (job->generation == self->generation && !self->stopping) {
        long status = res->status;
        if (status > 0 && status < S_STATUS_SLOTS)
            atomic_fetch_add (&self->by_status[status], 1);
        if (status >= 200 && status < 300)
            atomic_fetch_add (&self->counters[COUNTER_POSTED], 1);
        else if (status > 0) {
            atomic_fetch_add (&self->counters[COUNTER_REJECTED], 1);
            snprintf (self->last_error, sizeof self->last_error,
                      "%ld from %.100s: %.120s", status, job->url, res->body);
            retry = status == 408 || status == 429 || status >= 500;
        }
        else {
            atomic_fetch_add (&self->counters[COUNTER_FAILED], 1);
            snprintf (self->last_error, sizeof self->last_error,
                      "%s from %.100s: %.100s",
                      rcd_http_error_name (res->error), job->url,
                      res->error_text);
            retry = true;
        }
        retry = retry && job->retries_left > 0;
        if (retry) {
            job->retries_left--;
            job->due_ms = s_mono_ms () + job->retry_ms;
            retry = s_push_job (self, job) == 0;
            if (retry)
                atomic_fetch_add (&self->counters[COUNTER_RETRIED], 1);
        }
    }
    //  out of inflight only once it is back in the queue, so pending
    //  never reads 0 between the two
    atomic_fetch_sub (&self->inflight, 1);
    pthread_mutex_unlock (&self->lock);
    if (!retry)
        s_job_destroy (&job);
}

//  The thread: start due jobs while slots are free, wait for the network,
//  the next due time or a wake-up, collect what finished.
static void *
s_run (void *arg)
{
    rcd_gwhooks_t *self = arg;
    while (true) {
        s_job_t *ready[S_INFLIGHT_MAX];
        size_t nready = 0;
        size_t free_slots = S_INFLIGHT_MAX - atomic_load (&self->inflight);
        int64_t wait_ms = S_IDLE_WAIT_MS;
        pthread_mutex_lock (&self->lock);
        if (self->stopping) {
            pthread_mutex_unlock (&self->lock);
            break;
        }
        int64_t now = s_mono_ms ();
        while (self->count && nready < free_slots &&
               self->heap[0]->due_ms <= now)
            ready[nready++] = s_pop_job (self);
        if (self->count && nready < free_slots) {
            int64_t until = self->heap[0]->due_ms - now;
            wait_ms = until < 0 ? 0 : until < wait_ms ? until : wait_ms;
        }
        pthread_mutex_unlock (&self->lock);
        for (size_t i = 0; i < nready; i++)
            s_start_job (self, ready[i]);
        if (nready)
            wait_ms = 0;
        rcd_http_perform_fds (self->http, &self->wake_fd, 1, (int)wait_ms);
        uint64_t wakes;
        while (read (self->wake_fd, &wakes, sizeof wakes) > 0)
            ;
        rcd_http_result_t res;
        while (rcd_http_next (self->http, &res))
            s_finish_job (self, &res);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Public API

rcd_gwhooks_t *
rcd_gwhooks_new (void)
{
    if (rcd_http_global_init () != 0)
        return NULL;
    rcd_gwhooks_t *self = calloc (1, sizeof *self);
    if (!self) {
        rcd_http_global_cleanup ();
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    json_t *defaults = rcd_gwhooks_defaults ();
    self->settings = defaults ? s_settings_new (defaults) : NULL;
    json_decref (defaults);
    self->http = rcd_http_new (S_INFLIGHT_MAX);
    if (self->wake_fd < 0 || !self->settings || !self->http ||
        pthread_create (&self->thread, NULL, s_run, self) != 0) {
        rcd_gwhooks_destroy (&self);
        return NULL;
    }
    self->thread_started = true;
    return self;
}

void
rcd_gwhooks_destroy (rcd_gwhooks_t **self_p)
{
    assert (self_p);
    rcd_gwhooks_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    pthread_mutex_unlock (&self->lock);
    if (self->thread_started) {
        s_wake (self);
        pthread_join (self->thread, NULL);
    }
    //  aborts the POSTs in flight; their jobs are still in the slots
    rcd_http_destroy (&self->http);
    for (int slot = 0; slot < S_INFLIGHT_MAX; slot++)
        s_job_destroy (&self->slots[slot]);
    while (self->count) {
        s_job_t *job = s_pop_job (self);
        s_job_destroy (&job);
    }
    free (self->heap);
    s_settings_release (&self->settings);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    pthread_mutex_destroy (&self->lock);
    free (self);
    rcd_http_global_cleanup ();
    *self_p = NULL;
}

void
rcd_gwhooks_reset (rcd_gwhooks_t *self)
{
    assert (self);
    json_t *defaults = rcd_gwhooks_defaults ();
    s_settings_t *fresh = defaults ? s_settings_new (defaults) : NULL;
    json_decref (defaults);
    pthread_mutex_lock (&self->lock);
    self->generation++;
    s_job_t **queued = self->heap;
    size_t count = self->count;
    self->heap = NULL;
    self->count = self->cap = 0;
    s_settings_t *old = NULL;
    if (fresh) {
        old = self->settings;
        self->settings = fresh;
    }
    for (int c = 0; c < COUNTER_COUNT; c++)
        atomic_store (&self->counters[c], 0);
    for (int s = 0; s < S_STATUS_SLOTS; s++)
        atomic_store (&self->by_status[s], 0);
    atomic_store (&self->numbered, 0);
    self->last_error[0] = '\0';
    pthread_mutex_unlock (&self->lock);
    for (size_t i = 0; i < count; i++)
        s_job_destroy (&queued[i]);
    free (queued);
    s_settings_release (&old);
}

size_t
rcd_gwhooks_counter (rcd_gwhooks_t *self, const char *name)
{
    assert (self && name);
    if (strcmp (name, "pending") == 0) {
        pthread_mutex_lock (&self->lock);
        size_t pending = self->count + atomic_load (&self->inflight);
        pthread_mutex_unlock (&self->lock);
        return pending;
    }
    for (int c = 0; c < COUNTER_COUNT; c++)
        if (strcmp (s_counter_names[c], name) == 0)
            return atomic_load (&self->counters[c]);
    return 0;
}

json_t *
rcd_gwhooks_stats (rcd_gwhooks_t *self)
{
    assert (self);
    json_t *doc = json_object ();
    json_t *by_status = json_object ();
    for (int c = 0; doc && c < COUNTER_COUNT; c++)
        json_object_set_new (
            doc, s_counter_names[c],
            json_integer ((json_int_t)atomic_load (&self->counters[c])));
    for (int s = 0; by_status && s < S_STATUS_SLOTS; s++) {
        size_t n = atomic_load (&self->by_status[s]);
        char name[8];
        snprintf (name, sizeof name, "%d", s);
        if (n)
            json_object_set_new (by_status, name, json_integer ((json_int_t)n));
    }
    pthread_mutex_lock (&self->lock);
    size_t pending = self->count + atomic_load (&self->inflight);
    json_t *last =
        self->last_error[0] ? json_string (self->last_error) : json_null ();
    pthread_mutex_unlock (&self->lock);
    if (doc) {
        json_object_set_new (doc, "pending",
                             json_integer ((json_int_t)pending));
        json_object_set_new (doc, "by_status",
                             by_status ? by_status : json_object ());
        json_object_set_new (doc, "last_error", last);
    }
    else {
        json_decref (by_status);
        json_decref (last);
    }
    return doc;
}

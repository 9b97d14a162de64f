/*  rcd_alert_sink.c - the alert webhook, on its own thread.

    The actor owns an rcd_http client and a queue of webhook bodies; it
    waits on libcurl and on its pipe together (rcd_http_perform_fds with
    the pipe's ZMQ_FD), so a new alert or $TERM is seen at once while a
    request hangs. */
#include "rcd_alert_sink.h"
#include "rcd_clock.h"
#include "rcd_http.h"
#include "rcd_log.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BACKOFF_FIRST_MS 500
#define S_BACKOFF_MAX_MS   30000
#define S_CONNECT_MAX_MS   5000
#define S_IDLE_WAIT_MS     1000

/*  Settings and counters shared by the two threads; counters are
    atomic, the rest is written before the actor starts. */
typedef struct {
    char *url;
    int64_t timeout_ms;
    int64_t retries;
    uint64_t delivered, failed, dropped, attempts; /* __atomic */
} s_shared_t;

struct rcd_alert_sink {
    zactor_t *actor;
    s_shared_t *shared; /* outlives the actor */
};

/*  The actor's private state. */
typedef struct {
    zsock_t *pipe;
    s_shared_t *shared;
    rcd_http_t *http;
    zlistx_t *queue;   /* char * bodies, oldest first (owned) */
    bool busy;         /* the head is in flight */
    int64_t attempt;   /* attempts made for the head */
    int64_t next_ms;   /* monotonic: head may be tried again */
    int64_t logged_ms; /* last "giving up"/"dropped" line */
    bool terminated;
} s_actor_t;

static void
s_count (uint64_t *counter)
{
    __atomic_add_fetch (counter, 1, __ATOMIC_RELAXED);
}

/*  The Slack-compatible body of one alert JSON. Caller frees. */
static char *
s_webhook_body (const char *alert)
{
    json_t *a = json_loads (alert, 0, NULL);
    const char *state = json_string_value (json_object_get (a, "state"));
    char text[1024];
    snprintf (text, sizeof text, "[%s] %s %s: %s",
              state && strcmp (state, "resolved") == 0 ? "RESOLVED" : "FIRING",
              json_string_value (json_object_get (a, "severity"))
                  ? json_string_value (json_object_get (a, "severity"))
                  : "?",
              json_string_value (json_object_get (a, "rule"))
                  ? json_string_value (json_object_get (a, "rule"))
                  : "?",
              json_string_value (json_object_get (a, "summary"))
                  ? json_string_value (json_object_get (a, "summary"))
                  : "");
    json_decref (a);
    json_t *body = json_pack ("{s:s}", "text", text);
    char *out = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    return out;
}

static void
s_destroy_body (void **item)
{
    free (*item);
    *item = NULL;
}

/*  Logs at most one line a second (a dead webhook must not flood). */
static void
s_actor_log (s_actor_t *self, const char *what, const char *why)
{
    int64_t now = rcd_clock_mono_ms ();
    if (self->logged_ms && now - self->logged_ms < 1000)
        return;
    self->logged_ms = now;
    rcd_log_warn (
        what, "{s:s, s:I, s:I}", "why", why ? why : "", "failed_total",
        (json_int_t)__atomic_load_n (&self->shared->failed, __ATOMIC_RELAXED),
        "dropped_total",
        (json_int_t)__atomic_load_n (&self->shared->dropped, __ATOMIC_RELAXED));
}

static void
s_actor_handle_pipe (s_actor_t *self)
{
    while (!self->terminated && (zsock_events (self->pipe) & ZMQ_POLLIN)) {
        zmsg_t *msg = zmsg_recv (self->pipe);
        if (!msg) {
            self->terminated = true;
            break;
        }
        char *command = zmsg_popstr (msg);
        if (command && strcmp (command, "$TERM") == 0)
            self->terminated = true;
        else if (command && strcmp (command, "POST") == 0) {
            char *alert = zmsg_popstr (msg);
            char *body = alert ? s_webhook_body (alert) : NULL;
            if (!body || zlistx_size (self->queue) >= RCD_ALERT_SINK_QUEUE) {
                s_count (&self->shared->dropped);
                s_actor_log (self, "alert webhook: alert dropped",
                             body ? "queue full" : "out of memory");
                free (body);
            }
            else
                zlistx_add_end (self->queue, body);
            zstr_free (&alert);
        }
        zstr_free (&command);
        zmsg_destroy (&msg);
    }
}

/*  Starts the head of the queue when it is due. */
static void
s_actor_start (s_actor_t *self)
{
    if (self->busy || zlistx_size (self->queue) == 0 ||
        rcd_clock_mono_ms () < self->next_ms)
        return;
    const char *body = zlistx_first (self->queue);
    static const char *const headers[] = {"Content-Type: application/json",
                                          NULL};
    int64_t timeout = self->shared->timeout_ms;
    int64_t connect = timeout < S_CONNECT_MAX_MS ? timeout : S_CONNECT_MAX_MS;
    s_count (&self->shared->attempts);
    self->attempt++;
    if (rcd_http_post (self->http, self->shared->url, headers, body,
                       strlen (body), (long)connect, (long)timeout, NULL) == 0)
        self->busy = true;
    else
        self->next_ms = rcd_clock_mono_ms () + S_BACKOFF_FIRST_MS;
}

/*  Takes a finished attempt: done, or retried after a backoff, or given
    up. */
static void
s_actor_finish (s_actor_t *self, const rcd_http_result_t *res)
{
    self->busy = false;
    bool ok = res->status >= 200 && res->status < 300;
    if (!ok && self->attempt <= self->shared->retries) {
        int64_t backoff = S_BACKOFF_FIRST_MS;
        for (int64_t i = 1; i < self->attempt && backoff < S_BACKOFF_MAX_MS;
             i++)
            backoff *= 2;
        if (backoff > S_BACKOFF_MAX_MS)
            backoff = S_BACKOFF_MAX_MS;
        self->next_ms = rcd_clock_mono_ms () + backoff;
        return;
    }
    if (ok)
        s_count (&self->shared->delivered);
    else {
        s_count (&self->shared->failed);
        char why[160];
        if (res->status)
            snprintf (why, sizeof why, "HTTP %ld", res->status);
        else
            snprintf (why, sizeof why, "%s", rcd_http_error_name (res->error));
        s_actor_log (self, "alert webhook: giving up on an alert", why);
    }
    zlistx_first (self->queue);
    zlistx_delete (self->queue, zlistx_cursor (self->queue));
    self->attempt = 0;
    self->next_ms = 0;
}

static void
s_alert_sink_actor (zsock_t *pipe, void *args)
{
    s_actor_t self = {.pipe = pipe, .shared = args};
    self.http = rcd_http_new (2);
    self.queue = zlistx_new ();
    if (self.queue)
        zlistx_set_destructor (self.queue, s_destroy_body);
    zsock_signal (pipe, 0);
    if (!self.http || !self.queue)
        rcd_log_error ("alert webhook: out of memory", NULL);
    int fd = zsock_fd (pipe);
    while (self.http && self.queue && !self.terminated) {
        s_actor_handle_pipe (&self);
        if (self.terminated)
            break;
        s_actor_start (&self);
        int64_t wait = S_IDLE_WAIT_MS;
        if (!self.busy && zlistx_size (self.queue) > 0) {
            wait = self.next_ms - rcd_clock_mono_ms ();
            if (wait < 0)
                wait = 0;
            if (wait > S_IDLE_WAIT_MS)
                wait = S_IDLE_WAIT_MS;
        }
        /* the pipe's fd is edge-triggered: its events are re-read at the
           top of the loop whatever woke us */
        if (rcd_http_perform_fds (self.http, &fd, 1, (int)wait) < 0) {
            rcd_log_error ("alert webhook: multi handle failed", NULL);
            break;
        }
        rcd_http_result_t res;
        while (rcd_http_next (self.http, &res))
            s_actor_finish (&self, &res);
    }
    if (self.queue && zlistx_size (self.queue) > 0)
        rcd_log_warn ("alert webhook: stopped with alerts unsent", "{s:I}",
                      "queued", (json_int_t)zlistx_size (self.queue));
    /* $TERM is the only way out, so zactor_destroy returns */
    while (!self.terminated) {
        char *command = zstr_recv (pipe);
        self.terminated = !command || strcmp (command, "$TERM") == 0;
        zstr_free (&command);
    }
    zlistx_destroy (&self.queue);
    rcd_http_destroy (&self.http);
}

rcd_alert_sink_t *
rcd_alert_sink_new (const char *url, int64_t timeout_ms, int64_t retries)
{
    assert (url && timeout_ms > 0 && retries >= 0);
    rcd_alert_sink_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = calloc (1, sizeof *self->shared);
    if (self->shared)
        self->shared->url = strdup (url);
    if (!self->shared || !self->shared->url) {
        rcd_alert_sink_destroy (&self);
        return NULL;
    }
    self->shared->timeout_ms = timeout_ms;
    self->shared->retries = retries;
    self->actor = zactor_new (s_alert_sink_actor, self->shared);
    if (!self->actor) {
        rcd_alert_sink_destroy (&self);
        return NULL;
    }
    /* posting never waits for the thread: a full pipe drops */
    zsock_set_sndtimeo (self->actor, 0);
    return self;
}

void
rcd_alert_sink_destroy (rcd_alert_sink_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_alert_sink_t *self = *self_p;
    zactor_destroy (&self->actor);
    if (self->shared)
        free (self->shared->url);
    free (self->shared);
    free (self);
    *self_p = NULL;
}

int
rcd_alert_sink_post (rcd_alert_sink_t *self, const char *body)
{
    assert (self && body);
    zmsg_t *msg = zmsg_new ();
    if (msg && zmsg_addstr (msg, "POST") == 0 && zmsg_addstr (msg, body) == 0 &&
        zmsg_send (&msg, self->actor) == 0)
        return 0;
    zmsg_destroy (&msg);
    s_count (&self->shared->dropped);
    return -1;
}

void
rcd_alert_sink_stats (rcd_alert_sink_t *self, rcd_alert_sink_stats_t *stats)
{
    assert (self && stats);
    stats->delivered =
        __atomic_load_n (&self->shared->delivered, __ATOMIC_RELAXED);
    stats->failed = __atomic_load_n (&self->shared->failed, __ATOMIC_RELAXED);
    stats->dropped = __atomic_load_n (&self->shared->dropped, __ATOMIC_RELAXED);
    stats->attempts =
        __atomic_load_n (&self->shared->attempts, __ATOMIC_RELAXED);
}

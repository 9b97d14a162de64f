/*  rcd_alerts.c - alert state table: fire once, resolve once. */
#include "rcd_alerts.h"
#include "rcd_clock.h"
#include "rcd_log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  One alert that is pending (condition true, for_ms not yet reached) or
    firing. Resolved alerts leave the table. */
typedef struct {
    char *rule;         /* rule name */
    char *severity;     /* "critical", "warning", ... */
    char *key;          /* subject within the rule */
    json_t *labels;     /* latest labels (owned reference) */
    char *summary;      /* latest summary */
    bool firing;        /* fired (a frame went out) */
    bool observed;      /* reported since the rule's last sweep */
    int64_t pending_ms; /* monotonic ms the condition began to hold */
    int64_t since_ms;   /* unix ms it fired */
} s_alert_t;

struct rcd_alerts {
    rcd_alerts_publish_fn *publish; /* transition sink */
    void *arg;                      /* for publish */
    s_alert_t **alerts;             /* active table, unordered */
    size_t size, cap;
};

char *
rcd_alerts_time (int64_t unix_ms, char *buf, size_t size)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    char date[24];
    strftime (date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf, size, "%s.%03d+00:00", date, (int)(unix_ms % 1000));
    return buf;
}

rcd_alerts_t *
rcd_alerts_new (rcd_alerts_publish_fn *publish, void *arg)
{
    rcd_alerts_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->publish = publish;
    self->arg = arg;
    return self;
}

static void
s_alert_destroy (s_alert_t **alert_p)
{
    s_alert_t *alert = *alert_p;
    if (!alert)
        return;
    json_decref (alert->labels);
    free (alert->summary);
    free (alert->key);
    free (alert->severity);
    free (alert->rule);
    free (alert);
    *alert_p = NULL;
}

void
rcd_alerts_destroy (rcd_alerts_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_alerts_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        s_alert_destroy (&self->alerts[i]);
    free (self->alerts);
    free (self);
    *self_p = NULL;
}

/*  The alert body of API.md in the given state. Caller owns it. */
static json_t *
s_alert_body (const s_alert_t *alert, const char *state, int64_t since_ms)
{
    char since[40];
    rcd_alerts_time (since_ms, since, sizeof since);
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:O}", "rule", alert->rule,
                      "severity", alert->severity, "state", state, "since",
                      since, "summary", alert->summary, "labels",
                      alert->labels);
}

/*  Sends one transition to the sink and logs it. */
static void
s_alerts_emit (rcd_alerts_t *self, const s_alert_t *alert, const char *state,
               int64_t since_ms)
{
    json_t *body = s_alert_body (alert, state, since_ms);
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    char topic[160];
    snprintf (topic, sizeof topic, "alert.%s.%s", alert->severity, alert->rule);
    if (text) {
        rcd_log_warn ("alert", "{s:s, s:s, s:s, s:s}", "rule", alert->rule,
                      "state", state, "subject", alert->key, "summary",
                      alert->summary);
        if (self->publish)
            self->publish (topic, text, alert->rule, state, self->arg);
    }
    else
        rcd_log_error ("alert: out of memory", "{s:s}", "rule", alert->rule);
    free (text);
    json_decref (body);
}

static s_alert_t *
s_alerts_find (rcd_alerts_t *self, const char *rule, const char *key,
               size_t *index)
{
    for (size_t i = 0; i < self->size; i++) {
        s_alert_t *alert = self->alerts[i];
        if (strcmp (alert->key, key) == 0 && strcmp (alert->rule, rule) == 0) {
            *index = i;
            return alert;
        }
    }
    return NULL;
}

/*  Removes the i-th alert (order does not matter). */
static void
s_alerts_remove (rcd_alerts_t *self, size_t index)
{
    s_alert_destroy (&self->alerts[index]);
    self->alerts[index] = self->alerts[--self->size];
}

/*  Takes a new summary and labels for an alert that is kept. */
static int
s_alert_update (s_alert_t *alert, json_t *labels, const char *summary)
{
    char *copy = strdup (summary ? summary : "");
    if (!copy)
        return -1;
    free (alert->summary);
    alert->summary = copy;
    if (labels && labels != alert->labels) {
        json_decref (alert->labels);
        alert->labels = json_deep_copy (labels);
    }
    if (!alert->labels)
        alert->labels = json_object ();
    return alert->labels ? 0 : -1;
}

int
rcd_alerts_observe (rcd_alerts_t *self, const char *rule, const char *severity,
                    int64_t for_ms, const char *key, bool active,
                    json_t *labels, const char *summary, int64_t now_ms)
{
    assert (self && rule && severity && key);
    size_t index = 0;
    s_alert_t *alert = s_alerts_find (self, rule, key, &index);
    if (!active) {
        if (!alert)
            return 0;
        if (alert->firing) {
            if (s_alert_update (alert, labels, summary) != 0)
                return -1;
            s_alerts_emit (self, alert, "resolved", rcd_clock_now_ms ());
        }
        s_alerts_remove (self, index);
        return 0;
    }
    if (!alert) {
        if (self->size == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 16;
            s_alert_t **grown = realloc (self->alerts, cap * sizeof *grown);
            if (!grown)
                return -1;
            self->alerts = grown;
            self->cap = cap;
        }
        alert = calloc (1, sizeof *alert);
        if (!alert)
            return -1;
        alert->rule = strdup (rule);
        alert->severity = strdup (severity);
        alert->key = strdup (key);
        alert->summary = strdup ("");
        alert->labels = json_object ();
        alert->pending_ms = now_ms;
        if (!alert->rule || !alert->severity || !alert->key ||
            !alert->summary || !alert->labels) {
            s_alert_destroy (&alert);
            return -1;
        }
        self->alerts[self->size++] = alert;
    }
    alert->observed = true;
    if (s_alert_update (alert, labels, summary) != 0)
        return -1;
    if (!alert->firing && now_ms - alert->pending_ms >= for_ms) {
        alert->firing = true;
        alert->since_ms = rcd_clock_now_ms ();
        s_alerts_emit (self, alert, "firing", alert->since_ms);
    }
    return 0;
}

void
rcd_alerts_sweep (rcd_alerts_t *self, const char *rule, const char *summary)
{
    assert (self && rule);
    size_t i = 0;
    while (i < self->size) {
        s_alert_t *alert = self->alerts[i];
        if (strcmp (alert->rule, rule) != 0) {
            i++;
            continue;
        }
        if (alert->observed) {
            alert->observed = false;
            i++;
            continue;
        }
        if (alert->firing && s_alert_update (alert, NULL, summary) == 0)
            s_alerts_emit (self, alert, "resolved", rcd_clock_now_ms ());
        s_alerts_remove (self, i);
    }
}

bool
rcd_alerts_is_firing (rcd_alerts_t *self, const char *rule, const char *key)
{
    assert (self && rule && key);
    size_t index = 0;
    s_alert_t *alert = s_alerts_find (self, rule, key, &index);
    return alert && alert->firing;
}

size_t
rcd_alerts_firing (rcd_alerts_t *self, const char *rule)
{
    assert (self);
    size_t count = 0;
    for (size_t i = 0; i < self->size; i++)
        if (self->alerts[i]->firing &&
            (!rule || strcmp (self->alerts[i]->rule, rule) == 0))
            count++;
    return count;
}

static int
s_compare_alerts (const void *a, const void *b)
{
    const s_alert_t *x = *(s_alert_t *const *)a;
    const s_alert_t *y = *(s_alert_t *const *)b;
    int rc = strcmp (x->rule, y->rule);
    return rc ? rc : strcmp (x->key, y->key);
}

json_t *
rcd_alerts_json (rcd_alerts_t *self)
{
    assert (self);
    json_t *array = json_array ();
    if (!array || self->size == 0)
        return array;
    s_alert_t **sorted = malloc (self->size * sizeof *sorted);
    if (!sorted) {
        json_decref (array);
        return NULL;
    }
    memcpy (sorted, self->alerts, self->size * sizeof *sorted);
    qsort (sorted, self->size, sizeof *sorted, s_compare_alerts);
    for (size_t i = 0; i < self->size; i++)
        if (sorted[i]->firing)
            json_array_append_new (
                array, s_alert_body (sorted[i], "firing", sorted[i]->since_ms));
    free (sorted);
    return array;
}

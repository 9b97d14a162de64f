/*  rcd_metrics.c - counters and gauges with labels, Prometheus text. */
#include "rcd_metrics.h"

#include <assert.h>
#include <czmq.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RCD_METRICS_MAX_LABELS 8
/* A rendered label set longer than this is refused: our label values
   are bounded by proto/ (at most 64 bytes each). */
#define RCD_METRICS_MAX_KEY 4096

typedef enum { S_COUNTER, S_GAUGE, S_HISTOGRAM } s_type_t;

/*  One time series: its rendered label set and its value. */
typedef struct {
    char *labels;    /* `k="v",k2="v2"` escaped; "" without labels */
    double value;    /* counter or gauge value; a histogram's count */
    double sum;      /* histogram: sum of the observed values */
    double *buckets; /* histogram: per-bucket counts, not cumulative;
                        nbounds + 1 of them, the last one +Inf */
} s_series_t;

struct rcd_metric {
    rcd_metrics_t *owner;                      /* for the series limit */
    char *name;                                /* metric name */
    char *help;                                /* # HELP text, unescaped */
    s_type_t type;                             /* counter, gauge, ... */
    double *bounds;                            /* histogram upper bounds */
    size_t nbounds;                            /* ascending, finite */
    size_t nlabels;                            /* label names in use */
    char *label_names[RCD_METRICS_MAX_LABELS]; /* owned */
    zhashx_t *index;                           /* labels -> s_series_t * */
    s_series_t **series;                       /* creation order */
    size_t size, cap;                          /* of series */
};

struct rcd_metrics {
    size_t max_series;       /* per family */
    rcd_metric_t **families; /* declaration order */
    size_t size, cap;        /* of families */
};

/*  A growable string; on allocation failure it stays failed and the
    caller sees NULL at the end. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} s_buf_t;

static void
s_buf_putn (s_buf_t *buf, const char *text, size_t n)
{
    if (buf->failed)
        return;
    if (buf->len + n + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 256;
        while (buf->len + n + 1 > cap)
            cap *= 2;
        char *grown = realloc (buf->data, cap);
        if (!grown) {
            buf->failed = true;
            return;
        }
        buf->data = grown;
        buf->cap = cap;
    }
    memcpy (buf->data + buf->len, text, n);
    buf->len += n;
    buf->data[buf->len] = 0;
}

static void
s_buf_puts (s_buf_t *buf, const char *text)
{
    s_buf_putn (buf, text, strlen (text));
}

/*  Appends text escaped for a label value (\\, \", \n) or, with
    help_only, for a # HELP line (\\ and \n). */
static void
s_buf_escaped (s_buf_t *buf, const char *text, bool help_only)
{
    const char *run = text;
    for (const char *p = text; *p; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && !help_only)
            esc = "\\\"";
        if (!esc)
            continue;
        s_buf_putn (buf, run, (size_t)(p - run));
        s_buf_puts (buf, esc);
        run = p + 1;
    }
    s_buf_puts (buf, run);
}

/*  Prometheus sample value: integers without a fraction (counters read
    naturally), other values with 15 significant digits. */
static void
s_buf_value (s_buf_t *buf, double value)
{
    char text[64];
    if (isnan (value))
        snprintf (text, sizeof text, "NaN");
    else if (isinf (value))
        snprintf (text, sizeof text, value > 0 ? "+Inf" : "-Inf");
    else if (value == floor (value) && fabs (value) < 1e15)
        snprintf (text, sizeof text, "%.0f", value == 0 ? 0.0 : value);
    else
        snprintf (text, sizeof text, "%.15g", value);
    s_buf_puts (buf, text);
}

bool
rcd_metrics_name_valid (const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     *p == '_' || *p == ':';
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != name))
            return false;
    }
    return true;
}

/*  Label names are metric names without ':' and not reserved (__). */
static bool
s_label_name_valid (const char *name)
{
    return rcd_metrics_name_valid (name) && !strchr (name, ':') &&
           strncmp (name, "__", 2) != 0;
}

rcd_metrics_t *
rcd_metrics_new (size_t max_series)
{
    assert (max_series > 0);
    rcd_metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max_series = max_series;
    return self;
}

static void
s_series_destroy (s_series_t **series_p)
{
    s_series_t *series = *series_p;
    if (!series)
        return;
    free (series->buckets);
    free (series->labels);
    free (series);
    *series_p = NULL;
}

static void
s_metric_destroy (rcd_metric_t **self_p)
{
    rcd_metric_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->size; i++)
        s_series_destroy (&self->series[i]);
    free (self->series);
    zhashx_destroy (&self->index);
    for (size_t i = 0; i < self->nlabels; i++)
        free (self->label_names[i]);
    free (self->bounds);
    free (self->help);
    free (self->name);
    free (self);
    *self_p = NULL;
}

void
rcd_metrics_destroy (rcd_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_metrics_t *self = *self_p;
    for (size_t i = self->size; i > 0; i--)
        s_metric_destroy (&self->families[i - 1]);
    free (self->families);
    free (self);
    *self_p = NULL;
}

/*  Finds the series whose rendered label set is key, creating it when
    create is set. Returns NULL when absent (or refused). */
static s_series_t *
s_metric_find (rcd_metric_t *self, const char *key, bool create)
{
    s_series_t *series = zhashx_lookup (self->index, key);
    if (series || !create)
        return series;
    if (self->size >= self->owner->max_series)
        return NULL;
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        s_series_t **grown = realloc (self->series, cap * sizeof *grown);
        if (!grown)
            return NULL;
        self->series = grown;
        self->cap = cap;
    }
    series = calloc (1, sizeof *series);
    if (!series)
        return NULL;
    series->labels = strdup (key);
    if (self->type == S_HISTOGRAM)
        series->buckets = calloc (self->nbounds + 1, sizeof (double));
    if (!series->labels || (self->type == S_HISTOGRAM && !series->buckets) ||
        zhashx_insert (self->index, series->labels, series) != 0) {
        s_series_destroy (&series);
        return NULL;
    }
    self->series[self->size++] = series;
    return series;
}

/*  Finds the series for the label values in args, creating it when
    create is set. Returns NULL when absent (or refused). */
static s_series_t *
s_metric_series (rcd_metric_t *self, va_list args, bool create)
{
    s_buf_t key = {0};
    size_t n = 0;
    const char *value;
    s_buf_puts (&key, "");
    while ((value = va_arg (args, const char *)) != NULL) {
        /* a wrong count of label values is a programmer error */
        assert (n < self->nlabels);
        if (n > 0)
            s_buf_puts (&key, ",");
        s_buf_puts (&key, self->label_names[n]);
        s_buf_puts (&key, "=\"");
        s_buf_escaped (&key, value, false);
        s_buf_puts (&key, "\"");
        n++;
    }
    assert (n == self->nlabels);
    s_series_t *series = NULL;
    if (!key.failed && key.len <= RCD_METRICS_MAX_KEY)
        series = s_metric_find (self, key.data, create);
    free (key.data);
    return series;
}

/*  Declares a family; label names come from args. */
static rcd_metric_t *
s_metrics_declare (rcd_metrics_t *self, const char *name, const char *help,
                   s_type_t type, const double *bounds, size_t nbounds,
                   va_list args)
{
    if (!rcd_metrics_name_valid (name))
        return NULL;
    for (size_t i = 0; i < self->size; i++)
        if (strcmp (self->families[i]->name, name) == 0)
            return NULL;
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        rcd_metric_t **grown = realloc (self->families, cap * sizeof *grown);
        if (!grown)
            return NULL;
        self->families = grown;
        self->cap = cap;
    }
    rcd_metric_t *metric = calloc (1, sizeof *metric);
    if (!metric)
        return NULL;
    metric->owner = self;
    metric->type = type;
    metric->name = strdup (name);
    metric->help = strdup (help ? help : "");
    metric->index = zhashx_new ();
    if (!metric->name || !metric->help || !metric->index)
        goto failed;
    if (type == S_HISTOGRAM) {
        metric->bounds = malloc ((nbounds ? nbounds : 1) * sizeof (double));
        if (!metric->bounds)
            goto failed;
        for (size_t i = 0; i < nbounds; i++) {
            /* ascending and finite: +Inf is always added */
            if (!isfinite (bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
                goto failed;
            metric->bounds[i] = bounds[i];
        }
        metric->nbounds = nbounds;
    }
    const char *label;
    while ((label = va_arg (args, const char *)) != NULL) {
        if (metric->nlabels == RCD_METRICS_MAX_LABELS ||
            !s_label_name_valid (label) ||
            (type == S_HISTOGRAM && strcmp (label, "le") == 0))
            goto failed;
        for (size_t i = 0; i < metric->nlabels; i++)
            if (strcmp (metric->label_names[i], label) == 0)
                goto failed;
        metric->label_names[metric->nlabels] = strdup (label);
        if (!metric->label_names[metric->nlabels])
            goto failed;
        metric->nlabels++;
    }
    self->families[self->size++] = metric;
    if (metric->nlabels == 0 && !s_metric_find (metric, "", true)) {
        self->size--;
        goto failed;
    }
    return metric;
failed:
    s_metric_destroy (&metric);
    return NULL;
}

rcd_metric_t *
rcd_metrics_counter (rcd_metrics_t *self, const char *name, const char *help,
                     ...)
{
    va_list args;
    va_start (args, help);
    rcd_metric_t *metric =
        s_metrics_declare (self, name, help, S_COUNTER, NULL, 0, args);
    va_end (args);
    return metric;
}

rcd_metric_t *
rcd_metrics_gauge (rcd_metrics_t *self, const char *name, const char *help, ...)
{
    va_list args;
    va_start (args, help);
    rcd_metric_t *metric =
        s_metrics_declare (self, name, help, S_GAUGE, NULL, 0, args);
    va_end (args);
    return metric;
}

rcd_metric_t *
rcd_metrics_histogram (rcd_metrics_t *self, const char *name, const char *help,
                       const double *bounds, size_t nbounds, ...)
{
    va_list args;
    va_start (args, nbounds);
    rcd_metric_t *metric = s_metrics_declare (self, name, help, S_HISTOGRAM,
                                              bounds, nbounds, args);
    va_end (args);
    return metric;
}

int
rcd_metric_add (rcd_metric_t *self, double delta, ...)
{
    assert (self && self->type != S_HISTOGRAM);
    if (self->type == S_COUNTER && !(delta >= 0))
        return -1;
    va_list args;
    va_start (args, delta);
    s_series_t *series = s_metric_series (self, args, true);
    va_end (args);
    if (!series)
        return -1;
    series->value += delta;
    return 0;
}

int
rcd_metric_set (rcd_metric_t *self, double value, ...)
{
    assert (self && self->type != S_HISTOGRAM);
    va_list args;
    va_start (args, value);
    s_series_t *series = s_metric_series (self, args, true);
    va_end (args);
    if (!series)
        return -1;
    series->value = value;
    return 0;
}

/*  Index of the first bucket whose bound is >= value (nbounds: +Inf). */
static size_t
s_metric_bucket_of (rcd_metric_t *self, double value)
{
    size_t lo = 0, hi = self->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->bounds[mid] >= value)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

int
rcd_metric_observe (rcd_metric_t *self, double value, double count, ...)
{
    assert (self && self->type == S_HISTOGRAM);
    if (!(count >= 0) || isnan (value))
        return -1;
    va_list args;
    va_start (args, count);
    s_series_t *series = s_metric_series (self, args, true);
    va_end (args);
    if (!series)
        return -1;
    series->buckets[s_metric_bucket_of (self, value)] += count;
    series->sum += value * count;
    series->value += count;
    return 0;
}

int
rcd_metric_observe_bucket (rcd_metric_t *self, double le, double count,
                           double sum, ...)
{
    assert (self && self->type == S_HISTOGRAM);
    if (!(count >= 0) || isnan (le) || isnan (sum))
        return -1;
    va_list args;
    va_start (args, sum);
    s_series_t *series = s_metric_series (self, args, true);
    va_end (args);
    if (!series)
        return -1;
    series->buckets[s_metric_bucket_of (self, le)] += count;
    series->sum += sum;
    series->value += count;
    return 0;
}

void
rcd_metric_clear (rcd_metric_t *self)
{
    assert (self);
    for (size_t i = 0; i < self->size; i++) {
        zhashx_delete (self->index, self->series[i]->labels);
        s_series_destroy (&self->series[i]);
    }
    self->size = 0;
    if (self->nlabels == 0)
        s_metric_find (self, "", true);
}

double
rcd_metric_value (rcd_metric_t *self, ...)
{
    assert (self);
    va_list args;
    va_start (args, self);
    s_series_t *series = s_metric_series (self, args, false);
    va_end (args);
    return series ? series->value : NAN;
}

int
rcd_metric_remove (rcd_metric_t *self, ...)
{
    assert (self);
    va_list args;
    va_start (args, self);
    s_series_t *series = s_metric_series (self, args, false);
    va_end (args);
    if (!series)
        return -1;
    zhashx_delete (self->index, series->labels);
    for (size_t i = 0; i < self->size; i++)
        if (self->series[i] == series) {
            memmove (&self->series[i], &self->series[i + 1],
                     (self->size - i - 1) * sizeof *self->series);
            self->size--;
            break;
        }
    s_series_destroy (&series);
    return 0;
}

size_t
rcd_metric_size (rcd_metric_t *self)
{
    assert (self);
    return self->size;
}

/*  Appends one sample line: name, suffix, the series' labels plus an
    optional le label, and the value. */
static void
s_buf_sample (s_buf_t *buf, const rcd_metric_t *metric, const char *suffix,
              const s_series_t *series, const char *le, double value)
{
    s_buf_puts (buf, metric->name);
    s_buf_puts (buf, suffix);
    if (*series->labels || le) {
        s_buf_puts (buf, "{");
        s_buf_puts (buf, series->labels);
        if (le) {
            s_buf_puts (buf, *series->labels ? ",le=\"" : "le=\"");
            s_buf_puts (buf, le);
            s_buf_puts (buf, "\"");
        }
        s_buf_puts (buf, "}");
    }
    s_buf_puts (buf, " ");
    s_buf_value (buf, value);
    s_buf_puts (buf, "\n");
}

/*  A histogram series: cumulative buckets, +Inf, _sum and _count. */
static void
s_buf_histogram (s_buf_t *buf, const rcd_metric_t *metric,
                 const s_series_t *series)
{
    double cumulative = 0;
    for (size_t b = 0; b < metric->nbounds; b++) {
        char le[64];
        snprintf (le, sizeof le, "%.15g", metric->bounds[b]);
        cumulative += series->buckets[b];
        s_buf_sample (buf, metric, "_bucket", series, le, cumulative);
    }
    cumulative += series->buckets[metric->nbounds];
    s_buf_sample (buf, metric, "_bucket", series, "+Inf", cumulative);
    s_buf_sample (buf, metric, "_sum", series, NULL, series->sum);
    s_buf_sample (buf, metric, "_count", series, NULL, cumulative);
}

char *
rcd_metrics_render (rcd_metrics_t *self)
{
    assert (self);
    static const char *const types[] = {" counter\n", " gauge\n",
                                        " histogram\n"};
    s_buf_t buf = {0};
    s_buf_puts (&buf, "");
    for (size_t f = 0; f < self->size; f++) {
        rcd_metric_t *metric = self->families[f];
        s_buf_puts (&buf, "# HELP ");
        s_buf_puts (&buf, metric->name);
        s_buf_puts (&buf, " ");
        s_buf_escaped (&buf, metric->help, true);
        s_buf_puts (&buf, "\n# TYPE ");
        s_buf_puts (&buf, metric->name);
        s_buf_puts (&buf, types[metric->type]);
        for (size_t i = 0; i < metric->size; i++) {
            if (metric->type == S_HISTOGRAM)
                s_buf_histogram (&buf, metric, metric->series[i]);
            else
                s_buf_sample (&buf, metric, "", metric->series[i], NULL,
                              metric->series[i]->value);
        }
    }
    if (buf.failed) {
        free (buf.data);
        return NULL;
    }
    return buf.data;
}

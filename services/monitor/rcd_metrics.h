/*  rcd_metrics.h - a small registry of counters, gauges and histograms
    with labels, rendered as Prometheus text exposition (format 0.0.4).

    A family (one metric name, one type, one fixed list of label names) is
    declared once and returns a handle; samples are addressed by their
    label values in declaration order, NULL-terminated:

        rcd_metric_t *m = rcd_metrics_counter (reg, "recado_events_total",
                                               "Events received.",
                                               "service", "kind", NULL);
        rcd_metric_add (m, 3, "sender", "message.sent", NULL);

    A histogram family has fixed, ascending upper bounds (+Inf is
    implied) and renders each series as cumulative <name>_bucket{le}
    lines, <name>_sum and <name>_count.

    Label values come from the network, so each family holds at most
    max_series samples: beyond that a new series is refused (-1) and the
    caller counts the drop, keeping memory bounded under any input.
    Families render in declaration order, series in creation order.
    Not thread-safe: one owner thread.
*/
#ifndef RCD_METRICS_H_INCLUDED
#define RCD_METRICS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef struct rcd_metrics rcd_metrics_t;
typedef struct rcd_metric rcd_metric_t;

/*  Creates an empty registry. Returns NULL when out of memory. Caller
    owns the result. */
rcd_metrics_t *
rcd_metrics_new (size_t max_series);

void
rcd_metrics_destroy (rcd_metrics_t **self_p);

/*  Declares a counter or gauge family with its label names (NULL-ended;
    none for a single unlabelled series, which then exists at 0 at once).
    Returns a handle owned by the registry (borrowed), or NULL when the
    name or a label name is invalid, already declared, or out of memory. */
rcd_metric_t *
rcd_metrics_counter (rcd_metrics_t *self, const char *name, const char *help,
                     ...) __attribute__ ((sentinel));
rcd_metric_t *
rcd_metrics_gauge (rcd_metrics_t *self, const char *name, const char *help, ...)
    __attribute__ ((sentinel));

/*  Declares a histogram family with nbounds ascending finite upper
    bounds (copied), then its label names as above ("le" is reserved).
    Returns NULL as above, or when the bounds are not ascending. */
rcd_metric_t *
rcd_metrics_histogram (rcd_metrics_t *self, const char *name, const char *help,
                       const double *bounds, size_t nbounds, ...)
    __attribute__ ((sentinel));

/*  Histograms: records count observations of value in the series with
    these label values. Returns 0, or -1 as rcd_metric_add (also for a
    negative count or a NaN value). */
int
rcd_metric_observe (rcd_metric_t *self, double value, double count, ...)
    __attribute__ ((sentinel));

/*  Histograms, for observations bucketed elsewhere: adds count to the
    first bucket whose bound is >= le (an le above every bound, e.g.
    INFINITY, is the +Inf bucket) and sum to the series' sum. Exact when
    the bucketing side used the same bounds. Returns 0 or -1. */
int
rcd_metric_observe_bucket (rcd_metric_t *self, double le, double count,
                           double sum, ...) __attribute__ ((sentinel));

/*  Counters and gauges: adds delta to the series with these label
    values (created at 0 when new). Counters only go up: a negative delta
    on a counter is refused.
    Returns 0, or -1 when the series limit is reached or out of memory. */
int
rcd_metric_add (rcd_metric_t *self, double delta, ...)
    __attribute__ ((sentinel));

/*  Sets the series with these label values. Returns 0 or -1 as above. */
int
rcd_metric_set (rcd_metric_t *self, double value, ...)
    __attribute__ ((sentinel));

/*  Value of a series (a histogram's count); NAN when it does not
    exist. */
double
rcd_metric_value (rcd_metric_t *self, ...) __attribute__ ((sentinel));

/*  Removes a series (a replica forgotten). Returns 0, or -1 when absent. */
int
rcd_metric_remove (rcd_metric_t *self, ...) __attribute__ ((sentinel));

/*  Removes every series of the family (a family without labels keeps
    its one series, back at 0). For gauges re-read whole on each poll,
    so that vanished subjects vanish from the exposition. */
void
rcd_metric_clear (rcd_metric_t *self);

/*  Number of series in the family. */
size_t
rcd_metric_size (rcd_metric_t *self);

/*  Renders every family with its # HELP and # TYPE lines. Returns a new
    string (caller frees) or NULL when out of memory. */
char *
rcd_metrics_render (rcd_metrics_t *self);

/*  True when name matches [a-zA-Z_:][a-zA-Z0-9_:]*. */
bool
rcd_metrics_name_valid (const char *name);

#endif

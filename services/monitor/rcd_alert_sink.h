/*  rcd_alert_sink.h - posts each alert to a Slack-compatible webhook
    (RECADO_ALERT_WEBHOOK_URL) from a thread of its own, so a slow or
    dead webhook never blocks the monitor.

    Body: {"text": "[FIRING] critical service_down: <summary>"} (or
    [RESOLVED]), Content-Type application/json; Slack, Mattermost,
    Rocket.Chat and Discord's /slack endpoint take it as is. Alerts go
    out one at a time in the order they were posted (a resolution never
    overtakes its firing). An attempt that gets no 2xx within timeout_ms
    is repeated up to retries times, 0.5 s, 1 s, 2 s ... (at most 30 s)
    apart; then the alert is given up (counted, logged). At most
    RCD_ALERT_SINK_QUEUE alerts wait; beyond that a new one is dropped
    (counted, logged) rather than held in memory without bound.

    rcd_http_global_init must have run before the sink is created (main
    does it). The sink is a czmq actor; post and stats are safe from the
    creating thread only, stats from any thread.
*/
#ifndef RCD_ALERT_SINK_H_INCLUDED
#define RCD_ALERT_SINK_H_INCLUDED

#include <stdint.h>

#define RCD_ALERT_SINK_QUEUE 256

typedef struct rcd_alert_sink rcd_alert_sink_t;

/*  What became of the alerts posted so far. */
typedef struct {
    uint64_t delivered; /* a 2xx answer came */
    uint64_t failed;    /* every attempt failed: given up */
    uint64_t dropped;   /* the queue was full */
    uint64_t attempts;  /* requests made, retries included */
} rcd_alert_sink_stats_t;

/*  Starts the sink thread for url. Returns NULL when out of memory or
    the thread cannot start. Caller owns the result. */
rcd_alert_sink_t *
rcd_alert_sink_new (const char *url, int64_t timeout_ms, int64_t retries);

/*  Stops the thread at once (an attempt in flight is abandoned; alerts
    still queued are lost and logged) and frees. */
void
rcd_alert_sink_destroy (rcd_alert_sink_t **self_p);

/*  Queues one alert: body is the alert JSON of API.md (copied). Never
    blocks. Returns 0, or -1 when it was dropped. */
int
rcd_alert_sink_post (rcd_alert_sink_t *self, const char *body);

/*  Reads the counters. */
void
rcd_alert_sink_stats (rcd_alert_sink_t *self, rcd_alert_sink_stats_t *stats);

#endif

/*  rcd_events.h - a service's voice to the monitor.

    One PUB socket connected to the monitor's SUB endpoint
    (RECADO_EVENTS_ENDPOINT). Publishes heartbeat and event frames of
    proto/. PUB never blocks: when the high-water mark (10 000 frames) is
    reached, or no monitor listens, frames are dropped; events are news,
    PostgreSQL keeps the facts. Not thread-safe: one per actor thread.
*/
#ifndef RCD_EVENTS_H_INCLUDED
#define RCD_EVENTS_H_INCLUDED

#include <stdint.h>

typedef struct rcd_events rcd_events_t;

/*  Connects to endpoint as service. replica is "<hostname>:<pid>" unless
    given. Returns NULL on a bad endpoint. Caller owns the result. */
rcd_events_t *
rcd_events_new (const char *endpoint, const char *service, const char *replica);

void
rcd_events_destroy (rcd_events_t **self_p);

/*  Publishes that kind happened count times. detail may be NULL. */
int
rcd_events_emit (rcd_events_t *self, const char *kind, uint64_t count,
                 uint64_t tenant_id, int64_t value, const char *detail);

/*  Publishes a heartbeat with an optional state word. */
int
rcd_events_heartbeat (rcd_events_t *self, const char *state);

/*  Upper bounds in seconds of the gateway request-time buckets: a sender
    reports its requests per bucket as "send.latency_bucket" events
    (count = requests, value = their summed microseconds, detail
    "le_us=<bound in us>" or "le_us=+Inf"), and the monitor renders them
    as the histogram recado_send_latency_seconds with the same bounds. */
#define RCD_LATENCY_BUCKETS 13
extern const double rcd_latency_bounds_s[RCD_LATENCY_BUCKETS];

/*  Replica name. Borrowed. */
const char *
rcd_events_replica (rcd_events_t *self);

#endif

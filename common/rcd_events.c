/*  rcd_events.c - heartbeat and event publisher. */
#include "rcd_events.h"
#include "rcd_clock.h"
#include "rcd_log.h"
#include "rcd_proto.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rcd_events {
    zsock_t *pub;       /* connected PUB */
    char service[32];   /* service name */
    char replica[64];   /* unique process name */
    uint64_t seq;       /* heartbeat sequence */
    int64_t started_ms; /* for uptime */
};

rcd_events_t *
rcd_events_new (const char *endpoint, const char *service, const char *replica)
{
    rcd_events_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->service, sizeof self->service, "%s", service);
    if (replica && *replica)
        snprintf (self->replica, sizeof self->replica, "%s", replica);
    else {
        char host[40] = "host";
        gethostname (host, sizeof host - 1);
        snprintf (self->replica, sizeof self->replica, "%s:%d", host,
                  (int)getpid ());
    }
    self->started_ms = rcd_clock_mono_ms ();
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->pub) {
        free (self);
        return NULL;
    }
    zsock_set_sndhwm (self->pub, 10000);
    zsock_set_linger (self->pub, 200);
    if (zsock_connect (self->pub, "%s", endpoint) != 0) {
        rcd_log_error ("events: bad endpoint", "{s:s}", "endpoint", endpoint);
        rcd_events_destroy (&self);
        return NULL;
    }
    return self;
}

void
rcd_events_destroy (rcd_events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_events_t *self = *self_p;
    /* A goodbye: the monitor then knows the silence is not a failure. */
    rcd_events_heartbeat (self, "stopped");
    zsock_destroy (&self->pub);
    free (self);
    *self_p = NULL;
}

int
rcd_events_emit (rcd_events_t *self, const char *kind, uint64_t count,
                 uint64_t tenant_id, int64_t value, const char *detail)
{
    rcd_event_t ev = {
        .service = self->service,
        .replica = self->replica,
        .kind = (char *)kind,
        .count = count,
        .tenant_id = tenant_id,
        .value = value,
        .detail = (char *)detail,
    };
    return rcd_event_send (&ev, self->pub);
}

int
rcd_events_heartbeat (rcd_events_t *self, const char *state)
{
    rcd_heartbeat_t hb = {
        .service = self->service,
        .replica = self->replica,
        .seq = ++self->seq,
        .uptime_ms = (uint64_t)(rcd_clock_mono_ms () - self->started_ms),
        .state = (char *)state,
    };
    return rcd_heartbeat_send (&hb, self->pub);
}

const char *
rcd_events_replica (rcd_events_t *self)
{
    return self->replica;
}

const double rcd_latency_bounds_s[RCD_LATENCY_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

/*  rcd_scheduler_server.h - the scheduler actor: decides what is sent when
    and through which number.

    Usage: zactor_new (rcd_scheduler_server, (void *) &config), where the
    config stays alive while the actor runs.
*/
#ifndef RCD_SCHEDULER_SERVER_H_INCLUDED
#define RCD_SCHEDULER_SERVER_H_INCLUDED

#include <czmq.h>
#include <stdint.h>

#include "rcd_config.h"

typedef struct {
    char *database_url;       /* PostgreSQL conninfo */
    char *nudge_bind;         /* PULL, bound: nudges from ingestor/recovery */
    char *dispatch_bind;      /* PUSH, bound: dispatches to senders */
    char *events_endpoint;    /* PUB, connected: monitor */
    int64_t poll_ms;          /* claim poll period */
    int64_t claim_batch;      /* rows per claim statement */
    int64_t lease_ms;         /* lease beyond the typing delay */
    int64_t dispatch_hwm;     /* dispatch socket send high-water mark */
    int64_t lock_key;         /* advisory lock making one scheduler active */
    int64_t drain_timeout_ms; /* how long main lets us drain */
    int64_t recipient_interval_ms; /* pacing per recipient, 0: none */
    int64_t burst_ms;              /* bucket size, as time at the rate */
} rcd_scheduler_config_t;

/*  The settings table (RECADO_* environment). */
extern const rcd_config_spec_t rcd_scheduler_config_specs[];

void
rcd_scheduler_server (zsock_t *pipe, void *args);

#endif

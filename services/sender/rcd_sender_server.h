/*  rcd_sender_server.h - the sender actor: pulls dispatches, talks to the
    gateways over HTTP with many requests in flight, records outcomes in
    PostgreSQL in batches.

    Usage: zactor_new (rcd_sender_server, (void *) &config), where the
    config stays alive while the actor runs. The process must have called
    rcd_http_global_init before starting it.
*/
#ifndef RCD_SENDER_SERVER_H_INCLUDED
#define RCD_SENDER_SERVER_H_INCLUDED

#include <czmq.h>
#include <stdint.h>

#include "rcd_config.h"

typedef struct {
    char *database_url;          /* PostgreSQL conninfo */
    char *dispatch_endpoint;     /* PULL, connected: dispatches */
    char *events_endpoint;       /* PUB, connected: monitor */
    int64_t dispatch_hwm;        /* dispatch socket receive high-water mark */
    int64_t max_inflight;        /* gateway requests at once */
    int64_t batch_max;           /* outcomes per database flush */
    int64_t batch_wait_ms;       /* longest an outcome waits for its flush */
    int64_t connect_timeout_ms;  /* TCP/TLS connect timeout */
    int64_t request_timeout_ms;  /* whole request, plus any typing delay */
    int64_t retry_base_ms;       /* first retry backoff ceiling */
    int64_t retry_cap_ms;        /* largest retry backoff */
    int64_t lease_margin_ms;     /* drop a dispatch with less lease left */
    int64_t instance_refresh_s;  /* instance cache refresh period */
    int64_t drain_timeout_ms;    /* how long main lets us drain */
    int64_t circuit_threshold;   /* consecutive transient failures that
                                   open an instance's circuit */
    int64_t circuit_cooldown_ms; /* open circuit: wait before a probe */
    int64_t throttle_pause_ms;   /* instance pause on a throttle without
                                   Retry-After */
    int64_t part_max_chars;      /* a longer text goes in parts (rcd_parts.h) */
    int64_t parts_delay_ms;      /* typing delay before each further part */
} rcd_sender_config_t;

/*  The settings table (RECADO_* environment). */
extern const rcd_config_spec_t rcd_sender_config_specs[];

void
rcd_sender_server (zsock_t *pipe, void *args);

#endif

/*  rcd_ingestor_server.h - the ingestor actor: the tenants' HTTP API.

    Usage: zactor_new (rcd_ingestor_server, (void *) &config), where the
    config stays alive while the actor runs. The actor answers the pipe
    protocol of rcd_service.h; see rcd_ingestor_server.c for its whole
    contract.
*/
#ifndef RCD_INGESTOR_SERVER_H_INCLUDED
#define RCD_INGESTOR_SERVER_H_INCLUDED

#include <czmq.h>
#include <stdint.h>

#include "rcd_config.h"

typedef struct {
    char *database_url;              /* PostgreSQL conninfo */
    char *http_bind;                 /* address the HTTP API listens on */
    int64_t http_port;               /* its port */
    int64_t http_threads;            /* MHD thread pool size */
    int64_t http_max_connections;    /* concurrent connections accepted */
    int64_t http_timeout_s;          /* idle connections closed after */
    int64_t max_body_bytes;          /* larger bodies: 413 before parsing */
    int64_t campaign_max_body_bytes; /* the same for POST /v1/campaigns */
    char *admin_key;                 /* manages tenants; "": admin API off */
    char *nudge_endpoint;            /* PUSH, connected: the scheduler's PULL */
    int64_t nudge_hwm;               /* nudges queued before they are dropped */
    char *events_endpoint;           /* PUB, connected: the monitor */
    int64_t auth_cache_ms;           /* key -> tenant lookups reused for */
    char *default_country;           /* calling code for national numbers */
    int64_t drain_timeout_ms;        /* how long main lets us drain */
    int64_t api_rate_per_second;     /* tenant API bucket refill; 0: off */
    int64_t api_burst;               /* tenant API bucket size; 0: off */
    int64_t replay_attempts;         /* new attempts a replay gives */
} rcd_ingestor_config_t;

/*  The settings table (RECADO_* environment). */
extern const rcd_config_spec_t rcd_ingestor_config_specs[];

/*  The actor. args: a borrowed rcd_ingestor_config_t. */
void
rcd_ingestor_server (zsock_t *pipe, void *args);

#endif

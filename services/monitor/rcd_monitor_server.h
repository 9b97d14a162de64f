/*  rcd_monitor_server.h - the monitor service actor.

    Start it with zactor_new (rcd_monitor_server, &config); the config is
    borrowed and must outlive the actor. See rcd_monitor_server.c for the
    contract (sockets, frames, HTTP routes, metrics, alert rules).
*/
#ifndef RCD_MONITOR_SERVER_H_INCLUDED
#define RCD_MONITOR_SERVER_H_INCLUDED

#include "rcd_config.h"

#include <czmq.h>
#include <stdint.h>

/*  The monitor's settings, filled from rcd_monitor_config_specs. */
typedef struct {
    char *events_bind;            /* SUB bind endpoint for events */
    char *alerts_endpoint;        /* PUB bind endpoint for alerts */
    char *monitor_bind;           /* HTTP listen address */
    int64_t monitor_port;         /* HTTP port */
    char *database_url;           /* PostgreSQL, read-only use */
    int64_t db_poll_ms;           /* period of the gauge queries */
    int64_t heartbeat_timeout_ms; /* silence after which a replica is down */
    int64_t replica_forget_ms;    /* silence after which it is forgotten */
    int64_t events_hwm;           /* SUB receive high-water mark, frames */
} rcd_monitor_config_t;

/*  The settings table (key, env, default, bounds). */
extern const rcd_config_spec_t rcd_monitor_config_specs[];

/*  The actor. args is a borrowed const rcd_monitor_config_t *. */
void
rcd_monitor_server (zsock_t *pipe, void *args);

#endif

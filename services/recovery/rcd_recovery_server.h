/*  rcd_recovery_server.h - the recovery actor: time-driven repair.

    Usage: zactor_new (rcd_recovery_server, (void *) &config), where the
    config stays alive while the actor runs.
*/
#ifndef RCD_RECOVERY_SERVER_H_INCLUDED
#define RCD_RECOVERY_SERVER_H_INCLUDED

#include <czmq.h>
#include <stdint.h>

#include "rcd_config.h"

typedef struct {
    char *database_url;       /* PostgreSQL conninfo */
    char *nudge_endpoint;     /* PUSH, connected: scheduler */
    char *events_endpoint;    /* PUB, connected: monitor */
    int64_t lease_check_ms;   /* period of the expired-lease sweep */
    int64_t expiry_check_ms;  /* period of the valid_until sweep */
    int64_t batch;            /* rows per repair statement */
    int64_t drain_timeout_ms; /* how long main lets us drain */
} rcd_recovery_config_t;

extern const rcd_config_spec_t rcd_recovery_config_specs[];

void
rcd_recovery_server (zsock_t *pipe, void *args);

#endif

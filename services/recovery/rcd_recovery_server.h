/*  rcd_recovery_server.h - the recovery actor: time-driven repair.

    Usage: zactor_new (rcd_recovery_server, (void *) &config), where the
    config stays alive while the actor runs. A period of 0 turns its task
    off (a config struct zeroed except for the fields a test sets runs only
    what it names); unknown_policy NULL means "fail".
*/
#ifndef RCD_RECOVERY_SERVER_H_INCLUDED
#define RCD_RECOVERY_SERVER_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "rcd_config.h"

typedef struct {
    char *database_url;       /* PostgreSQL conninfo */
    char *nudge_endpoint;     /* PUSH, connected: scheduler */
    char *events_endpoint;    /* PUB, connected: monitor */
    int64_t lease_check_ms;   /* period of the expired-lease sweep */
    int64_t expiry_check_ms;  /* period of the valid_until and pacing sweeps */
    int64_t batch;            /* rows per repair statement */
    int64_t drain_timeout_ms; /* how long main lets us drain */
    int64_t unknown_check_ms; /* period of the unknown-outcome sweep */
    int64_t unknown_deadline_ms; /* time a message may wait in 'unknown' */
    char *unknown_policy;        /* "fail" or "retry" at the deadline */
    int64_t health_check_ms;     /* period of the instance health round */
    int64_t health_timeout_ms;   /* total time of one connectionState call */
    int64_t health_connect_timeout_ms; /* its connect phase */
    int64_t retention_s;        /* age of deletable terminal rows, 0: keep */
    int64_t retention_check_ms; /* period of the retention round */
    int64_t retention_batch;    /* messages deleted per transaction */
    int64_t webhook_rematch_ms; /* period of the unmatched webhook retry */
    int64_t webhook_window_ms;  /* how long unmatched events are retried */
    int64_t campaign_check_ms;  /* period of the campaign completion sweep */
} rcd_recovery_config_t;

extern const rcd_config_spec_t rcd_recovery_config_specs[];

/*  True when policy is a valid unknown_policy value ("fail", "retry"). */
bool
rcd_recovery_policy_valid (const char *policy);

void
rcd_recovery_server (zsock_t *pipe, void *args);

#endif

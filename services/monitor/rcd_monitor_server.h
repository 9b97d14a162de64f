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
    int64_t db_slow_poll_ms;      /* period of the hourly-count queries */
    /* alert rules (rcd_monitor_rules.c): thresholds and for durations */
    int64_t database_down_for_ms;   /* database_down */
    int64_t scheduler_stall_ms;     /* scheduler_not_ticking */
    int64_t instance_offline_ms;    /* instance_offline (its for) */
    int64_t circuit_open_for_ms;    /* circuit_open */
    int64_t error_rate_pct;         /* error_rate: percent of attempts */
    int64_t error_rate_min_volume;  /* error_rate: attempts in the window */
    int64_t error_rate_window_ms;   /* error_rate: window */
    int64_t error_rate_for_ms;      /* error_rate */
    int64_t lease_margin_ms;        /* stuck_sending: past lease + this */
    int64_t stuck_sending_for_ms;   /* stuck_sending */
    int64_t stuck_ms;               /* messages_stuck: age */
    int64_t messages_stuck_for_ms;  /* messages_stuck */
    int64_t backlog_max;            /* backlog: due messages (0: off) */
    int64_t backlog_for_ms;         /* backlog */
    int64_t oldest_due_max_ms;      /* oldest_due: age (0: off) */
    int64_t oldest_due_for_ms;      /* oldest_due */
    int64_t dead_letters_per_min;   /* dead_letters_growth (0: off) */
    int64_t dead_letters_window_ms; /* dead_letters_growth: window */
    int64_t dead_letters_for_ms;    /* dead_letters_growth */
    /* alert webhook sink (rcd_alert_sink.c) */
    char *alert_webhook_url;          /* "" : no webhook */
    int64_t alert_webhook_timeout_ms; /* per attempt */
    int64_t alert_webhook_retries;    /* attempts after the first */
} rcd_monitor_config_t;

/*  The settings table (key, env, default, bounds). */
extern const rcd_config_spec_t rcd_monitor_config_specs[];

/*  The actor. args is a borrowed const rcd_monitor_config_t *. */
void
rcd_monitor_server (zsock_t *pipe, void *args);

#endif

/*  rcd_monitor_rules.h - the monitor's alert rules (DESIGN.md, "Monitor
    rules"): one table of (name, severity, for, condition).

    Each evaluation reports every rule's condition per subject to an
    rcd_alerts table, which turns observations into one "firing" and one
    "resolved" frame per episode. Thresholds and for durations come from
    the monitor's config (RECADO_<KEY>, see rcd_monitor_config_specs):

    rule                   severity  subject    condition (for)
    service_down           critical  replica    no heartbeat for
                                                heartbeat_timeout_ms, not
                                                said "stopped" (0)
    database_down          critical  -          the gauge poll fails
                                                (database_down_for_ms)
    scheduler_not_ticking  critical  -          no heartbeat from a
                                                scheduler in state "active"
                                                for scheduler_stall_ms (0)
    stuck_sending          critical  -          'sending' rows past lease +
                                                lease_margin_ms
                                                (stuck_sending_for_ms)
    instance_offline       critical  instance   enabled, gateway state
                                                neither open nor unknown
                                                (instance_offline_ms)
    circuit_open           warning   instance   enabled, circuit not closed
                                                (circuit_open_for_ms)
    error_rate             warning   -          failed + retried + unknown
                                                attempts > error_rate_pct %
                                                of attempts over
                                                error_rate_window_ms, with
                                                at least error_rate_min_volume
                                                attempts (error_rate_for_ms)
    messages_stuck         warning   -          due pending, or unknown
                                                unchanged, for stuck_ms
                                                (messages_stuck_for_ms)
    backlog                warning   -          due pending > backlog_max
                                                (backlog_for_ms)
    oldest_due             warning   -          oldest due pending older
                                                than oldest_due_max_ms
                                                (oldest_due_for_ms)
    dead_letters_growth    warning   -          dead letters created per
                                                minute > dead_letters_per_min
                                                over dead_letters_window_ms
                                                (dead_letters_for_ms)

    Rules on database numbers are not evaluated while the database is
    down: their alerts keep their state (database_down speaks for it).
    error_rate has hysteresis: once firing it resolves when the rate
    falls to the threshold or no attempt is left in the window, not when
    the volume merely dips under the minimum. A subject no longer
    reported (an instance deleted, a replica forgotten) resolves.
*/
#ifndef RCD_MONITOR_RULES_H_INCLUDED
#define RCD_MONITOR_RULES_H_INCLUDED

#include "rcd_alerts.h"
#include "rcd_fleet.h"
#include "rcd_monitor_poll.h"
#include "rcd_monitor_server.h"

#include <stddef.h>
#include <stdint.h>

/*  What the rules look at. Everything is borrowed. */
typedef struct {
    const rcd_monitor_config_t *cfg;
    const rcd_monitor_db_state_t *db; /* last poll */
    rcd_fleet_t *fleet;               /* swept for now_ms */
    int64_t scheduler_tick_ms;        /* mono ms of the last heartbeat of an
                                  active scheduler (or the monitor's start) */
    double attempts; /* send outcomes in the error-rate window */
    double errors;   /* of which failed, retried or unknown */
} rcd_monitor_view_t;

/*  Evaluates every rule at now_ms (monotonic). */
void
rcd_monitor_rules_evaluate (rcd_alerts_t *alerts,
                            const rcd_monitor_view_t *view, int64_t now_ms);

/*  Number of rules and the i-th one's name and severity. */
size_t
rcd_monitor_rules_count (void);
const char *
rcd_monitor_rule_name (size_t index);
const char *
rcd_monitor_rule_severity (size_t index);

#endif

/*  rcd_monitor_server.c - the monitor actor: observes, never changes state.

    Inputs
      events_bind (SUB, bound, subscribed to everything; default
        tcp://127.0.0.1:9092): proto/ "heartbeat" and "event" frames from
        every service's rcd_events PUB. A malformed frame is counted
        (recado_frames_malformed_total) and dropped. Receive high-water
        mark events_hwm: past it ZeroMQ drops frames (events are news;
        PostgreSQL keeps the facts). At most S_EVENTS_BATCH frames are
        handled before the periodic work gets its turn, so a flood only
        delays counters, never rules, health or HTTP.
      PostgreSQL (database_url): every db_poll_ms, a few cheap read-only
        queries in one READ ONLY transaction with a statement timeout
        (rcd_monitor_poll.h lists them). rcd_db reconnects by itself;
        while it cannot, the database component is unhealthy,
        recado_database_up is 0 and database_down fires.
    Outputs
      alerts_endpoint (PUB, bound; default tcp://127.0.0.1:9091): two
        frames, topic "alert.<severity>.<rule>" and the JSON body of
        API.md; each alert fires once and resolves once (rcd_alerts).
        With alert_webhook_url set, each is also posted to that
        Slack-compatible webhook from a thread of its own
        (rcd_alert_sink.h): a dead webhook never blocks the monitor.
      HTTP monitor_bind:monitor_port (default 127.0.0.1:9090): /metrics,
        /health, /alerts, /queue-stats and the dashboard at / (see
        rcd_monitor_http.h). Documents are rendered here every 250 ms.
    Alert rules: rcd_monitor_rules.h (service_down, database_down,
      scheduler_not_ticking, stuck_sending, instance_offline,
      circuit_open, error_rate, messages_stuck, backlog, oldest_due,
      dead_letters_growth), evaluated every 100 ms.
    Events read (rcd_events_emit kinds)
      message.accepted/sent/failed/retry/unknown/blocked, claim: counters
        and sliding windows (1 m, 5 m, 1 h); sent + failed + retry +
        unknown are the send attempts of the error rate.
      send.latency_us (count = requests, value = summed us):
        recado_send_requests_total, recado_send_request_seconds_total.
      send.latency_bucket (count = requests whose time fell in one
        bucket, value = their summed us, detail "le_us=<upper bound>" or
        "le_us=+Inf"): recado_send_latency_seconds, with the sender's
        bounds (rcd_latency_bounds_s, rcd_events.h).
      heartbeat state "active" from the service "scheduler": the
        scheduler's tick (it heartbeats from its tick handler).
    Metrics (Prometheus names)
      recado_events_total{service,kind}        counter, sum of event counts
      recado_messages_total{status}            counter, from message.* events
      recado_window_messages{status,window}    gauge, events in 1m/5m/1h
      recado_window_error_ratio{window}        gauge, errors / attempts
      recado_send_requests_total               counter, gateway requests
      recado_send_request_seconds_total        counter, their summed time
      recado_send_latency_seconds              histogram (bucket events)
      recado_claim_to_outcome_seconds          histogram, from history
      recado_frames_received_total{type}       counter
      recado_frames_malformed_total            counter
      recado_monitor_dropped_total{reason}     counter, series/replica limits
      recado_service_up{service,replica}       gauge 1/0
      recado_heartbeat_age_seconds{service,replica} gauge
      recado_scheduler_tick_age_seconds        gauge
      recado_messages{status}                  gauge, rows by status
      recado_messages_due                      gauge, due pending rows
      recado_oldest_due_seconds                gauge, oldest due pending
      recado_leases_expired                    gauge, sending past lease
      recado_leases_stuck                      gauge, past lease + margin
      recado_messages_stuck{status}            gauge, pending/unknown
      recado_dead_letters                      gauge, dead_letters rows
      recado_dead_letters_per_minute           gauge, created
      recado_billing_cycles_created_last_hour  gauge
      recado_webhook_events_unmatched_last_hour gauge
      recado_campaigns{state}                  gauge, campaigns by state
      recado_campaign_messages{campaign_id,tenant_id,kind} gauge, total
                                               and remaining messages of
                                               each open campaign
      recado_instance_online{instance,tenant,name}   gauge 1/0
      recado_instance_circuit_open{...}        gauge 1/0 (not closed)
      recado_instance_paused_seconds{...}      gauge, throttle pause left
      recado_instance_hour_used{...}, recado_instance_hourly_cap{...},
      recado_instance_day_used{...}, recado_instance_daily_cap{...} gauges
        (caps only for capped instances)
      recado_database_up                       gauge 1/0
      recado_db_poll_errors_total              counter
      recado_alerts_firing{rule}               gauge
      recado_alerts_published_total{rule,state} counter
      recado_alert_webhook_total{result}       counter (delivered, failed,
                                               dropped, attempts)
    Config keys: events_bind, alerts_endpoint, monitor_bind, monitor_port,
      database_url, db_poll_ms, db_slow_poll_ms, heartbeat_timeout_ms,
      replica_forget_ms, events_hwm, the rules' thresholds and for
      durations (rcd_monitor_rules.h), alert_webhook_url,
      alert_webhook_timeout_ms, alert_webhook_retries (env RECADO_<KEY>,
      DATABASE_URL).
    Pipe: answers DRAIN with DRAINED at once (nothing is ever in flight)
      and keeps serving until $TERM. Sends FATAL when a socket or the HTTP
      port cannot be bound; recado-monitor then exits 1.
    The monitor does not publish its own heartbeat: it is its own
    observer, and reaching /health proves it runs.
*/
#include "rcd_monitor_server.h"
#include "rcd_alert_sink.h"
#include "rcd_alerts.h"
#include "rcd_clock.h"
#include "rcd_events.h"
#include "rcd_fleet.h"
#include "rcd_log.h"
#include "rcd_metrics.h"
#include "rcd_monitor_http.h"
#include "rcd_monitor_poll.h"
#include "rcd_monitor_rules.h"
#include "rcd_proto.h"
#include "rcd_window.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TYPE rcd_monitor_config_t
const rcd_config_spec_t rcd_monitor_config_specs[] = {
    RCD_CONFIG_STR ("events_bind", rcd_monitor_config_t, events_bind,
                    "tcp://127.0.0.1:9092",
                    "endpoint the events SUB socket binds"),
    RCD_CONFIG_STR ("alerts_endpoint", rcd_monitor_config_t, alerts_endpoint,
                    "tcp://127.0.0.1:9091",
                    "endpoint the alerts PUB socket binds"),
    RCD_CONFIG_STR ("monitor_bind", rcd_monitor_config_t, monitor_bind,
                    "127.0.0.1", "HTTP listen address (numeric)"),
    RCD_CONFIG_INT ("monitor_port", rcd_monitor_config_t, monitor_port, "9090",
                    1, 65535, "HTTP port"),
    RCD_CONFIG_DATABASE_URL (rcd_monitor_config_t, database_url),
    RCD_CONFIG_INT ("db_poll_ms", rcd_monitor_config_t, db_poll_ms, "2000", 100,
                    600000, "period of the PostgreSQL gauge queries"),
    RCD_CONFIG_INT ("heartbeat_timeout_ms", rcd_monitor_config_t,
                    heartbeat_timeout_ms, "10000", 100, 3600000,
                    "silence after which a replica is down"),
    RCD_CONFIG_INT ("replica_forget_ms", rcd_monitor_config_t,
                    replica_forget_ms, "3600000", 1000, 604800000,
                    "silence after which a replica is forgotten"),
    RCD_CONFIG_INT ("events_hwm", rcd_monitor_config_t, events_hwm, "100000",
                    100, 10000000,
                    "events SUB high-water mark (frames; extra dropped)"),
    RCD_CONFIG_INT ("db_slow_poll_ms", S_TYPE, db_slow_poll_ms, "30000", 100,
                    3600000,
                    "period of the hourly counts (billing cycles created, "
                    "unmatched webhook events)"),
    RCD_CONFIG_INT ("database_down_for_ms", S_TYPE, database_down_for_ms,
                    "5000", 0, 86400000,
                    "database_down: polls failing this long"),
    RCD_CONFIG_INT ("scheduler_stall_ms", S_TYPE, scheduler_stall_ms, "10000",
                    100, 86400000,
                    "scheduler_not_ticking: no heartbeat from an active "
                    "scheduler this long"),
    RCD_CONFIG_INT ("instance_offline_ms", S_TYPE, instance_offline_ms,
                    "1800000", 0, 604800000,
                    "instance_offline: an enabled instance's gateway state "
                    "neither open nor unknown this long"),
    RCD_CONFIG_INT ("circuit_open_for_ms", S_TYPE, circuit_open_for_ms, "0", 0,
                    86400000, "circuit_open: circuit not closed this long"),
    RCD_CONFIG_INT ("error_rate_pct", S_TYPE, error_rate_pct, "10", 1, 100,
                    "error_rate: failed, retried or unknown attempts above "
                    "this percent of all attempts"),
    RCD_CONFIG_INT ("error_rate_min_volume", S_TYPE, error_rate_min_volume,
                    "20", 1, 1000000000,
                    "error_rate: fewer attempts in the window never fire"),
    RCD_CONFIG_INT ("error_rate_window_ms", S_TYPE, error_rate_window_ms,
                    "300000", 1000, 3600000, "error_rate: sliding window"),
    RCD_CONFIG_INT ("error_rate_for_ms", S_TYPE, error_rate_for_ms, "0", 0,
                    86400000, "error_rate: condition holding this long"),
    RCD_CONFIG_INT ("lease_margin_ms", S_TYPE, lease_margin_ms, "60000", 0,
                    86400000,
                    "stuck_sending: 'sending' rows this long past their "
                    "lease (recovery should have taken them back)"),
    RCD_CONFIG_INT ("stuck_sending_for_ms", S_TYPE, stuck_sending_for_ms, "0",
                    0, 86400000, "stuck_sending: condition holding this long"),
    RCD_CONFIG_INT ("stuck_ms", S_TYPE, stuck_ms, "7200000", 1000, 604800000,
                    "messages_stuck: due and pending, or unknown, this long"),
    RCD_CONFIG_INT ("messages_stuck_for_ms", S_TYPE, messages_stuck_for_ms, "0",
                    0, 86400000, "messages_stuck: condition holding this long"),
    RCD_CONFIG_INT ("backlog_max", S_TYPE, backlog_max, "10000", 0, 1000000000,
                    "backlog: due pending messages above this "
                    "(0: rule off)"),
    RCD_CONFIG_INT ("backlog_for_ms", S_TYPE, backlog_for_ms, "300000", 0,
                    86400000, "backlog: condition holding this long"),
    RCD_CONFIG_INT ("oldest_due_max_ms", S_TYPE, oldest_due_max_ms, "900000", 0,
                    604800000,
                    "oldest_due: oldest due pending message older than this "
                    "(0: rule off)"),
    RCD_CONFIG_INT ("oldest_due_for_ms", S_TYPE, oldest_due_for_ms, "0", 0,
                    86400000, "oldest_due: condition holding this long"),
    RCD_CONFIG_INT ("dead_letters_per_min", S_TYPE, dead_letters_per_min, "10",
                    0, 1000000000,
                    "dead_letters_growth: dead letters created per minute "
                    "above this (0: rule off)"),
    RCD_CONFIG_INT ("dead_letters_window_ms", S_TYPE, dead_letters_window_ms,
                    "60000", 1000, 3600000,
                    "dead_letters_growth: window the rate is taken over"),
    RCD_CONFIG_INT ("dead_letters_for_ms", S_TYPE, dead_letters_for_ms, "0", 0,
                    86400000,
                    "dead_letters_growth: condition holding this "
                    "long"),
    RCD_CONFIG_SECRET ("alert_webhook_url", S_TYPE, alert_webhook_url, "",
                       "Slack-compatible webhook each alert is posted to "
                       "(empty: none)"),
    RCD_CONFIG_INT ("alert_webhook_timeout_ms", S_TYPE,
                    alert_webhook_timeout_ms, "5000", 100, 120000,
                    "alert webhook: time allowed per attempt"),
    RCD_CONFIG_INT ("alert_webhook_retries", S_TYPE, alert_webhook_retries, "3",
                    0, 20, "alert webhook: attempts after the first"),
    RCD_CONFIG_END};
#undef S_TYPE

#define S_TICK_MS          100   /* fleet sweep and rule evaluation */
#define S_RENDER_MS        250   /* documents re-rendered for HTTP */
#define S_EVENTS_BATCH     1000  /* frames handled before looking at the tick */
#define S_MAX_SERIES       2000  /* per metric family */
#define S_MAX_REPLICAS     1000  /* replicas tracked */
#define S_LOG_EVERY_MS     60000 /* malformed frames: one log line a minute */
#define S_HISTORY_BUCKET_S 10    /* /queue-stats history: 60 buckets of 10 s */
#define S_HISTORY_BUCKETS  60

/*  Services that must have a live replica for the system to work. */
static const char *const s_core_services[] = {"ingestor", "scheduler", "sender",
                                              "recovery"};
#define S_CORE_COUNT (sizeof s_core_services / sizeof s_core_services[0])

/*  Events counted in recado_messages_total (when total is set) and in
    the sliding windows, by status label. */
typedef enum {
    S_W_ACCEPTED,
    S_W_SENT,
    S_W_FAILED,
    S_W_RETRY,
    S_W_UNKNOWN,
    S_W_BLOCKED,
    S_W_CLAIMED,
    S_W_COUNT
} s_window_kind_t;

static const struct {
    const char *kind;   /* event kind */
    const char *status; /* label */
    bool total;         /* also in recado_messages_total */
} s_window_kinds[S_W_COUNT] = {
    {"message.accepted", "accepted", true},
    {"message.sent", "sent", true},
    {"message.failed", "failed", true},
    {"message.retry", "retry", true},
    {"message.unknown", "unknown", true},
    {"message.blocked", "blocked", false},
    {"claim", "claimed", false},
};

/*  The sliding windows rendered, by label. */
static const struct {
    const char *label;
    int64_t span_ms;
} s_windows[] = {{"1m", 60000}, {"5m", 300000}, {"1h", 3600000}};
#define S_WINDOW_COUNT (sizeof s_windows / sizeof s_windows[0])

/*  The metric families the monitor renders. */
typedef struct {
    rcd_metric_t *events_total;
    rcd_metric_t *messages_total;
    rcd_metric_t *window_messages;
    rcd_metric_t *window_error_ratio;
    rcd_metric_t *send_requests;
    rcd_metric_t *send_seconds;
    rcd_metric_t *send_latency;
    rcd_metric_t *claim_to_outcome;
    rcd_metric_t *frames_received;
    rcd_metric_t *frames_malformed;
    rcd_metric_t *dropped;
    rcd_metric_t *service_up;
    rcd_metric_t *heartbeat_age;
    rcd_metric_t *scheduler_tick_age;
    rcd_metric_t *messages;
    rcd_metric_t *messages_due;
    rcd_metric_t *oldest_due;
    rcd_metric_t *leases_expired;
    rcd_metric_t *leases_stuck;
    rcd_metric_t *messages_stuck;
    rcd_metric_t *dead_letters;
    rcd_metric_t *dead_letters_rate;
    rcd_metric_t *cycles_hour;
    rcd_metric_t *unmatched_hour;
    rcd_metric_t *campaigns;
    rcd_metric_t *campaign_messages;
    rcd_metric_t *instance_online;
    rcd_metric_t *instance_circuit_open;
    rcd_metric_t *instance_paused;
    rcd_metric_t *instance_hour_used;
    rcd_metric_t *instance_hourly_cap;
    rcd_metric_t *instance_day_used;
    rcd_metric_t *instance_daily_cap;
    rcd_metric_t *database_up;
    rcd_metric_t *db_poll_errors;
    rcd_metric_t *alerts_firing;
    rcd_metric_t *alerts_published;
    rcd_metric_t *webhook;
} s_families_t;

typedef struct {
    zsock_t *pipe;                    /* to main or the test */
    const rcd_monitor_config_t *cfg;  /* borrowed */
    zsock_t *events;                  /* SUB, bound */
    zsock_t *alerts_pub;              /* PUB, bound */
    zpoller_t *poller;                /* pipe + events */
    rcd_monitor_poll_t *poll;         /* PostgreSQL gauges */
    rcd_metrics_t *metrics;           /* registry */
    s_families_t m;                   /* handles into metrics */
    rcd_fleet_t *fleet;               /* replicas by heartbeat */
    rcd_alerts_t *alerts;             /* active alerts */
    rcd_alert_sink_t *sink;           /* webhook, NULL when none */
    rcd_monitor_http_t *http;         /* HTTP thread */
    rcd_window_t *windows[S_W_COUNT]; /* per-second counts, last hour */
    int64_t scheduler_tick_ms;        /* mono: active scheduler heartbeat */
    bool scheduler_heard;             /* one has beaten since our start */
    int64_t next_tick_ms;             /* monotonic */
    int64_t next_poll_ms;             /* monotonic */
    int64_t next_render_ms;           /* monotonic */
    int64_t malformed_logged_ms;      /* last malformed-frame log line */
    bool terminated;                  /* $TERM received */
} self_t;

/*  Declares every metric family; false when one could not be. */
static bool
s_self_declare_metrics (self_t *self)
{
    rcd_metrics_t *r = self->metrics;
    s_families_t *m = &self->m;
    m->events_total =
        rcd_metrics_counter (r, "recado_events_total",
                             "Events received from services (sum of counts).",
                             "service", "kind", NULL);
    m->messages_total = rcd_metrics_counter (
        r, "recado_messages_total",
        "Messages by outcome, from message.* events.", "status", NULL);
    m->window_messages = rcd_metrics_gauge (
        r, "recado_window_messages",
        "Messages by outcome in a sliding window (1m, 5m, 1h), from events.",
        "status", "window", NULL);
    m->window_error_ratio = rcd_metrics_gauge (
        r, "recado_window_error_ratio",
        "Failed, retried or unknown send attempts over all send attempts in "
        "a sliding window (0 without attempts).",
        "window", NULL);
    m->send_requests = rcd_metrics_counter (
        r, "recado_send_requests_total",
        "Gateway requests made by the senders (send.latency_us events).", NULL);
    m->send_seconds = rcd_metrics_counter (
        r, "recado_send_request_seconds_total",
        "Time the senders' gateway requests took, summed.", NULL);
    m->send_latency = rcd_metrics_histogram (
        r, "recado_send_latency_seconds",
        "Gateway request time per request (send.latency_bucket events).",
        rcd_latency_bounds_s, RCD_LATENCY_BUCKETS, NULL);
    m->claim_to_outcome = rcd_metrics_histogram (
        r, "recado_claim_to_outcome_seconds",
        "Time from a message's claim to its recorded outcome (sent, failed, "
        "retry, unknown, back to pending, blocked), from message_history.",
        rcd_monitor_claim_bounds, RCD_MONITOR_CLAIM_BOUNDS, NULL);
    m->frames_received = rcd_metrics_counter (
        r, "recado_frames_received_total",
        "Well-formed frames received on the events socket.", "type", NULL);
    m->frames_malformed = rcd_metrics_counter (
        r, "recado_frames_malformed_total",
        "Malformed frames received on the events socket and dropped.", NULL);
    m->dropped = rcd_metrics_counter (
        r, "recado_monitor_dropped_total",
        "Observations dropped by the monitor's own limits.", "reason", NULL);
    m->service_up = rcd_metrics_gauge (
        r, "recado_service_up",
        "1 while a replica's heartbeats arrive within the timeout.", "service",
        "replica", NULL);
    m->heartbeat_age =
        rcd_metrics_gauge (r, "recado_heartbeat_age_seconds",
                           "Seconds since a replica's last heartbeat.",
                           "service", "replica", NULL);
    m->scheduler_tick_age = rcd_metrics_gauge (
        r, "recado_scheduler_tick_age_seconds",
        "Seconds since the last heartbeat of an active scheduler (since the "
        "monitor started when none yet).",
        NULL);
    m->messages = rcd_metrics_gauge (
        r, "recado_messages", "Rows in messages by status.", "status", NULL);
    m->messages_due = rcd_metrics_gauge (
        r, "recado_messages_due",
        "Pending messages already due (counted up to 1000000).", NULL);
    m->oldest_due = rcd_metrics_gauge (
        r, "recado_oldest_due_seconds",
        "Age of the oldest due pending message (0 when none).", NULL);
    m->leases_expired = rcd_metrics_gauge (
        r, "recado_leases_expired",
        "Messages in sending whose lease has expired.", NULL);
    m->leases_stuck = rcd_metrics_gauge (
        r, "recado_leases_stuck",
        "Messages in sending past their lease plus lease_margin_ms.", NULL);
    m->messages_stuck = rcd_metrics_gauge (
        r, "recado_messages_stuck",
        "Due pending messages, or unknown ones, unchanged for stuck_ms.",
        "status", NULL);
    m->dead_letters = rcd_metrics_gauge (r, "recado_dead_letters",
                                         "Rows in dead_letters.", NULL);
    m->dead_letters_rate = rcd_metrics_gauge (
        r, "recado_dead_letters_per_minute",
        "Dead letters created per minute over dead_letters_window_ms.", NULL);
    m->cycles_hour =
        rcd_metrics_gauge (r, "recado_billing_cycles_created_last_hour",
                           "Billing cycles created in the last hour.", NULL);
    m->unmatched_hour = rcd_metrics_gauge (
        r, "recado_webhook_events_unmatched_last_hour",
        "Gateway webhook events received in the last hour that matched no "
        "message (yet).",
        NULL);
    m->campaigns = rcd_metrics_gauge (r, "recado_campaigns",
                                      "Campaigns by state.", "state", NULL);
    m->campaign_messages = rcd_metrics_gauge (
        r, "recado_campaign_messages",
        "An open campaign's messages: total stored, remaining (pending, "
        "paused, sending or unknown).",
        "campaign_id", "tenant_id", "kind", NULL);
    m->instance_online = rcd_metrics_gauge (
        r, "recado_instance_online",
        "1 unless an enabled instance's gateway state is known and not open.",
        "instance", "tenant", "name", NULL);
    m->instance_circuit_open = rcd_metrics_gauge (
        r, "recado_instance_circuit_open",
        "1 while an instance's circuit is open or half open.", "instance",
        "tenant", "name", NULL);
    m->instance_paused = rcd_metrics_gauge (
        r, "recado_instance_paused_seconds",
        "Seconds left of an instance's gateway throttle pause.", "instance",
        "tenant", "name", NULL);
    m->instance_hour_used =
        rcd_metrics_gauge (r, "recado_instance_hour_used",
                           "Messages an instance was given this UTC hour.",
                           "instance", "tenant", "name", NULL);
    m->instance_hourly_cap = rcd_metrics_gauge (
        r, "recado_instance_hourly_cap", "An instance's hourly cap.",
        "instance", "tenant", "name", NULL);
    m->instance_day_used = rcd_metrics_gauge (
        r, "recado_instance_day_used",
        "Messages an instance was given this day (tenant's time zone).",
        "instance", "tenant", "name", NULL);
    m->instance_daily_cap = rcd_metrics_gauge (
        r, "recado_instance_daily_cap", "An instance's daily cap.", "instance",
        "tenant", "name", NULL);
    m->database_up =
        rcd_metrics_gauge (r, "recado_database_up",
                           "1 when the last database poll succeeded.", NULL);
    m->db_poll_errors = rcd_metrics_counter (
        r, "recado_db_poll_errors_total", "Database polls that failed.", NULL);
    m->alerts_firing = rcd_metrics_gauge (
        r, "recado_alerts_firing", "Alerts firing now, by rule.", "rule", NULL);
    m->alerts_published =
        rcd_metrics_counter (r, "recado_alerts_published_total",
                             "Alert transitions published, by rule and state.",
                             "rule", "state", NULL);
    m->webhook = rcd_metrics_counter (
        r, "recado_alert_webhook_total",
        "Alert webhook outcomes: delivered, failed (given up), dropped "
        "(queue full), attempts.",
        "result", NULL);
    const rcd_metric_t *all[] = {m->events_total,
                                 m->messages_total,
                                 m->window_messages,
                                 m->window_error_ratio,
                                 m->send_requests,
                                 m->send_seconds,
                                 m->send_latency,
                                 m->claim_to_outcome,
                                 m->frames_received,
                                 m->frames_malformed,
                                 m->dropped,
                                 m->service_up,
                                 m->heartbeat_age,
                                 m->scheduler_tick_age,
                                 m->messages,
                                 m->messages_due,
                                 m->oldest_due,
                                 m->leases_expired,
                                 m->leases_stuck,
                                 m->messages_stuck,
                                 m->dead_letters,
                                 m->dead_letters_rate,
                                 m->cycles_hour,
                                 m->unmatched_hour,
                                 m->campaigns,
                                 m->campaign_messages,
                                 m->instance_online,
                                 m->instance_circuit_open,
                                 m->instance_paused,
                                 m->instance_hour_used,
                                 m->instance_hourly_cap,
                                 m->instance_day_used,
                                 m->instance_daily_cap,
                                 m->database_up,
                                 m->db_poll_errors,
                                 m->alerts_firing,
                                 m->alerts_published,
                                 m->webhook};
    _Static_assert(sizeof all == sizeof *m, "every family is checked");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return false;
    /* Series that exist from the start, so rate() has a baseline. */
    for (size_t i = 0; i < S_W_COUNT; i++)
        if (s_window_kinds[i].total)
            rcd_metric_add (m->messages_total, 0, s_window_kinds[i].status,
                            NULL);
    for (size_t i = 0; i < RCD_MONITOR_STATUS_COUNT; i++)
        rcd_metric_set (m->messages, 0, rcd_monitor_statuses[i], NULL);
    rcd_metric_set (m->messages_stuck, 0, "pending", NULL);
    rcd_metric_set (m->messages_stuck, 0, "unknown", NULL);
    for (size_t i = 0; i < RCD_MONITOR_CAMPAIGN_STATE_COUNT; i++)
        rcd_metric_set (m->campaigns, 0, rcd_monitor_campaign_states[i], NULL);
    for (size_t i = 0; i < rcd_monitor_rules_count (); i++) {
        rcd_metric_set (m->alerts_firing, 0, rcd_monitor_rule_name (i), NULL);
        rcd_metric_add (m->alerts_published, 0, rcd_monitor_rule_name (i),
                        "firing", NULL);
        rcd_metric_add (m->alerts_published, 0, rcd_monitor_rule_name (i),
                        "resolved", NULL);
    }
    rcd_metric_add (m->dropped, 0, "series_limit", NULL);
    rcd_metric_add (m->dropped, 0, "replica_limit", NULL);
    rcd_metric_add (m->frames_received, 0, "heartbeat", NULL);
    rcd_metric_add (m->frames_received, 0, "event", NULL);
    static const char *const results[] = {"delivered", "failed", "dropped",
                                          "attempts"};
    for (size_t i = 0; i < 4; i++)
        rcd_metric_add (m->webhook, 0, results[i], NULL);
    return true;
}

/*  Counts a drop of the monitor's own limits. */
static void
s_self_dropped (self_t *self, const char *reason)
{
    rcd_metric_add (self->m.dropped, 1, reason, NULL);
}

/*  Publishes an alert transition on the PUB socket and hands it to the
    webhook (rcd_alerts sink). */
static void
s_self_publish_alert (const char *topic, const char *body, const char *rule,
                      const char *state, void *arg)
{
    self_t *self = arg;
    zmsg_t *msg = zmsg_new ();
    if (msg) {
        zmsg_addstr (msg, topic);
        zmsg_addstr (msg, body);
        /* PUB never blocks; zmsg_send keeps the message on failure */
        if (zmsg_send (&msg, self->alerts_pub) != 0)
            zmsg_destroy (&msg);
    }
    if (self->sink)
        rcd_alert_sink_post (self->sink, body); /* drops are counted */
    rcd_metric_add (self->m.alerts_published, 1, rule, state, NULL);
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    rcd_monitor_http_destroy (&self->http);
    rcd_alert_sink_destroy (&self->sink);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->alerts_pub);
    zsock_destroy (&self->events);
    rcd_monitor_poll_destroy (&self->poll);
    for (size_t i = 0; i < S_W_COUNT; i++)
        rcd_window_destroy (&self->windows[i]);
    rcd_alerts_destroy (&self->alerts);
    rcd_fleet_destroy (&self->fleet);
    rcd_metrics_destroy (&self->metrics);
    free (self);
    *self_p = NULL;
}

/*  Builds the actor's state and binds its endpoints. On failure returns
    NULL with *why set to the reason (for FATAL). */
static self_t *
s_self_new (zsock_t *pipe, const rcd_monitor_config_t *cfg, const char **why)
{
    self_t *self = calloc (1, sizeof *self);
    *why = "out of memory";
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->cfg = cfg;
    self->metrics = rcd_metrics_new (S_MAX_SERIES);
    self->fleet = rcd_fleet_new (S_MAX_REPLICAS);
    self->alerts = rcd_alerts_new (s_self_publish_alert, self);
    self->poll = rcd_monitor_poll_new (cfg);
    if (!self->metrics || !self->fleet || !self->alerts || !self->poll ||
        !s_self_declare_metrics (self))
        goto failed;
    for (size_t i = 0; i < S_W_COUNT; i++)
        if (!(self->windows[i] = rcd_window_new ()))
            goto failed;
    if (cfg->alert_webhook_url && *cfg->alert_webhook_url) {
        self->sink = rcd_alert_sink_new (cfg->alert_webhook_url,
                                         cfg->alert_webhook_timeout_ms,
                                         cfg->alert_webhook_retries);
        if (!self->sink)
            goto failed;
    }

    self->events = zsock_new (ZMQ_SUB);
    self->alerts_pub = zsock_new (ZMQ_PUB);
    if (!self->events || !self->alerts_pub)
        goto failed;
    zsock_set_rcvhwm (self->events, (int)cfg->events_hwm);
    zsock_set_subscribe (self->events, "");
    zsock_set_rcvtimeo (self->events, 0);
    zsock_set_linger (self->events, 0);
    if (zsock_bind (self->events, "%s", cfg->events_bind) == -1) {
        rcd_log_error ("cannot bind events", "{s:s, s:s}", "endpoint",
                       cfg->events_bind, "error", zmq_strerror (zmq_errno ()));
        *why = "cannot bind events_bind";
        goto failed;
    }
    zsock_set_sndhwm (self->alerts_pub, 1000);
    zsock_set_linger (self->alerts_pub, 200);
    if (zsock_bind (self->alerts_pub, "%s", cfg->alerts_endpoint) == -1) {
        rcd_log_error ("cannot bind alerts", "{s:s, s:s}", "endpoint",
                       cfg->alerts_endpoint, "error",
                       zmq_strerror (zmq_errno ()));
        *why = "cannot bind alerts_endpoint";
        goto failed;
    }
    self->poller = zpoller_new (pipe, self->events, NULL);
    if (!self->poller)
        goto failed;
    self->http =
        rcd_monitor_http_new (cfg->monitor_bind, (int)cfg->monitor_port);
    if (!self->http) {
        *why = "cannot listen on monitor_bind:monitor_port";
        goto failed;
    }
    int64_t now = rcd_clock_mono_ms ();
    self->next_tick_ms = now;
    self->next_poll_ms = now;
    self->next_render_ms = now;
    /* a scheduler gets one stall period from our start to be heard */
    self->scheduler_tick_ms = now;
    *why = NULL;
    return self;
failed:
    s_self_destroy (&self);
    return NULL;
}

/*  Labels of an instance's series: id, tenant and name. */
#define S_INSTANCE_LABELS(id, tenant, inst) id, tenant, (inst)->name, NULL

/*  Re-reads every gauge from the poll's state. Per-instance families are
    rebuilt so that deleted instances vanish. */
static void
s_self_store_gauges (self_t *self, const rcd_monitor_db_state_t *st)
{
    s_families_t *m = &self->m;
    for (size_t s = 0; s < RCD_MONITOR_STATUS_COUNT; s++) {
        int64_t total = 0;
        for (size_t p = 0; p < RCD_MONITOR_PRIORITY_COUNT; p++)
            total += st->counts[s][p];
        rcd_metric_set (m->messages, (double)total, rcd_monitor_statuses[s],
                        NULL);
    }
    rcd_metric_set (m->messages_due, (double)st->due_backlog, NULL);
    rcd_metric_set (m->oldest_due, st->oldest_due_s, NULL);
    rcd_metric_set (m->leases_expired, (double)st->leases_expired, NULL);
    rcd_metric_set (m->leases_stuck, (double)st->leases_stuck, NULL);
    rcd_metric_set (m->messages_stuck, (double)st->stuck_pending, "pending",
                    NULL);
    rcd_metric_set (m->messages_stuck, (double)st->stuck_unknown, "unknown",
                    NULL);
    rcd_metric_set (m->dead_letters, (double)st->dead_letters, NULL);
    rcd_metric_set (m->dead_letters_rate, st->dead_letters_per_min, NULL);
    rcd_metric_set (m->cycles_hour, (double)st->cycles_last_hour, NULL);
    rcd_metric_set (m->unmatched_hour, (double)st->unmatched_last_hour, NULL);
    for (size_t i = 0; i < RCD_MONITOR_CAMPAIGN_STATE_COUNT; i++)
        rcd_metric_set (m->campaigns, (double)st->campaign_states[i],
                        rcd_monitor_campaign_states[i], NULL);
    /* rebuilt whole: a campaign no longer open vanishes */
    rcd_metric_clear (m->campaign_messages);
    for (size_t i = 0; i < st->ncampaigns; i++) {
        const rcd_monitor_campaign_t *c = &st->campaigns[i];
        char id[32], tenant[32];
        snprintf (id, sizeof id, "%lld", (long long)c->id);
        snprintf (tenant, sizeof tenant, "%lld", (long long)c->tenant_id);
        rcd_metric_set (m->campaign_messages, (double)c->total, id, tenant,
                        "total", NULL);
        rcd_metric_set (m->campaign_messages, (double)c->remaining, id, tenant,
                        "remaining", NULL);
    }
    rcd_metric_t *per_instance[] = {
        m->instance_online,    m->instance_circuit_open, m->instance_paused,
        m->instance_hour_used, m->instance_hourly_cap,   m->instance_day_used,
        m->instance_daily_cap};
    for (size_t i = 0; i < sizeof per_instance / sizeof per_instance[0]; i++)
        rcd_metric_clear (per_instance[i]);
    for (size_t i = 0; i < st->ninstances; i++) {
        const rcd_monitor_instance_t *inst = &st->instances[i];
        char id[32], tenant[32];
        snprintf (id, sizeof id, "%lld", (long long)inst->id);
        snprintf (tenant, sizeof tenant, "%lld", (long long)inst->tenant_id);
        bool offline = rcd_monitor_instance_offline (inst);
        rcd_metric_set (m->instance_online, offline ? 0 : 1,
                        S_INSTANCE_LABELS (id, tenant, inst));
        rcd_metric_set (m->instance_circuit_open,
                        strcmp (inst->circuit_state, "closed") != 0,
                        S_INSTANCE_LABELS (id, tenant, inst));
        rcd_metric_set (m->instance_paused, inst->paused_s,
                        S_INSTANCE_LABELS (id, tenant, inst));
        rcd_metric_set (m->instance_hour_used, (double)inst->hour_used,
                        S_INSTANCE_LABELS (id, tenant, inst));
        rcd_metric_set (m->instance_day_used, (double)inst->day_used,
                        S_INSTANCE_LABELS (id, tenant, inst));
        if (inst->hourly_cap >= 0)
            rcd_metric_set (m->instance_hourly_cap, (double)inst->hourly_cap,
                            S_INSTANCE_LABELS (id, tenant, inst));
        if (inst->daily_cap >= 0)
            rcd_metric_set (m->instance_daily_cap, (double)inst->daily_cap,
                            S_INSTANCE_LABELS (id, tenant, inst));
    }
}

/*  One poll: gauges, the claim-to-outcome histogram, the database's
    up/down state. */
static void
s_self_poll_db (self_t *self, int64_t now_ms)
{
    rcd_monitor_claims_t claims;
    int rc = rcd_monitor_poll_run (self->poll, now_ms, &claims);
    const rcd_monitor_db_state_t *st = rcd_monitor_poll_state (self->poll);
    if (rc == 0) {
        s_self_store_gauges (self, st);
        for (size_t b = 0; b <= RCD_MONITOR_CLAIM_BOUNDS; b++)
            if (claims.counts[b] > 0)
                rcd_metric_observe_bucket (
                    self->m.claim_to_outcome,
                    b < RCD_MONITOR_CLAIM_BOUNDS ? rcd_monitor_claim_bounds[b]
                                                 : INFINITY,
                    claims.counts[b], claims.sums[b], NULL);
    }
    else
        rcd_metric_add (self->m.db_poll_errors, 1, NULL);
    rcd_metric_set (self->m.database_up, st->up ? 1 : 0, NULL);
}

static void
s_self_on_heartbeat (self_t *self, const rcd_heartbeat_t *hb)
{
    int64_t now = rcd_clock_mono_ms ();
    int rc = rcd_fleet_heartbeat (self->fleet, hb->service, hb->replica,
                                  hb->state, hb->seq, hb->uptime_ms, now);
    if (rc == 1)
        rcd_log_info ("replica joined", "{s:s, s:s}", "service", hb->service,
                      "replica", hb->replica);
    else if (rc < 0)
        s_self_dropped (self, "replica_limit");
    /* the scheduler heartbeats from its tick handler: an active one that
       beats is ticking */
    if (strcmp (hb->service, "scheduler") == 0 && hb->state &&
        strcmp (hb->state, "active") == 0) {
        self->scheduler_tick_ms = now;
        self->scheduler_heard = true;
    }
}

/*  send.latency_bucket: "le_us=<bound>" or "le_us=+Inf" in detail. */
static void
s_self_on_latency_bucket (self_t *self, const rcd_event_t *ev)
{
    const char *le = ev->detail ? strstr (ev->detail, "le_us=") : NULL;
    if (!le) {
        s_self_dropped (self, "bad_event");
        return;
    }
    le += 6;
    char *end = NULL;
    double bound = strcmp (le, "+Inf") == 0 ? INFINITY : strtod (le, &end);
    if (isnan (bound) || (end && (end == le || *end)) || bound < 0 ||
        rcd_metric_observe_bucket (self->m.send_latency, bound / 1e6,
                                   (double)ev->count, (double)ev->value / 1e6,
                                   NULL) != 0)
        s_self_dropped (self, "bad_event");
}

static void
s_self_on_event (self_t *self, const rcd_event_t *ev)
{
    if (rcd_metric_add (self->m.events_total, (double)ev->count, ev->service,
                        ev->kind, NULL) != 0)
        s_self_dropped (self, "series_limit");
    for (size_t i = 0; i < S_W_COUNT; i++)
        if (strcmp (ev->kind, s_window_kinds[i].kind) == 0) {
            if (s_window_kinds[i].total)
                rcd_metric_add (self->m.messages_total, (double)ev->count,
                                s_window_kinds[i].status, NULL);
            rcd_window_add (self->windows[i], rcd_clock_mono_ms (),
                            (double)ev->count);
            return;
        }
    if (strcmp (ev->kind, "send.latency_us") == 0) {
        rcd_metric_add (self->m.send_requests, (double)ev->count, NULL);
        if (ev->value > 0)
            rcd_metric_add (self->m.send_seconds, (double)ev->value / 1e6,
                            NULL);
    }
    else if (strcmp (ev->kind, "send.latency_bucket") == 0)
        s_self_on_latency_bucket (self, ev);
}

/*  Drains up to a batch of frames from the events socket, so a flood
    cannot starve the tick. */
static void
s_self_handle_events (self_t *self)
{
    for (int i = 0; i < S_EVENTS_BATCH; i++) {
        /* zeroed: rcd_proto_recv leaves msg untouched on some malformed
           paths (a wrong frame count), and clearing must stay safe */
        rcd_proto_msg_t msg;
        memset (&msg, 0, sizeof msg);
        int rc = rcd_proto_recv (self->events, &msg);
        if (rc == -1)
            break; /* nothing more for now */
        if (rc == -2) {
            rcd_metric_add (self->m.frames_malformed, 1, NULL);
            int64_t now = rcd_clock_mono_ms ();
            if (self->malformed_logged_ms == 0 ||
                now - self->malformed_logged_ms >= S_LOG_EVERY_MS) {
                rcd_log_warn (
                    "malformed frame dropped", "{s:s, s:f}", "why",
                    rcd_proto_last_error (), "total",
                    rcd_metric_value (self->m.frames_malformed, NULL));
                self->malformed_logged_ms = now;
            }
            rcd_proto_msg_clear (&msg);
            continue;
        }
        rcd_metric_add (self->m.frames_received, 1, rcd_proto_topic (msg.type),
                        NULL);
        if (msg.type == RCD_MSG_HEARTBEAT)
            s_self_on_heartbeat (self, &msg.u.heartbeat);
        else if (msg.type == RCD_MSG_EVENT)
            s_self_on_event (self, &msg.u.event);
        rcd_proto_msg_clear (&msg);
    }
}

static void
s_self_handle_pipe (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true; /* interrupted */
        return;
    }
    char *command = zmsg_popstr (msg);
    if (command && strcmp (command, "$TERM") == 0)
        self->terminated = true;
    else if (command && strcmp (command, "DRAIN") == 0) {
        /* Nothing is in flight here: keep serving until $TERM so the
           other services' last words are still seen. */
        zstr_send (self->pipe, "DRAINED");
    }
    else
        rcd_log_warn ("unknown pipe command", "{s:s}", "command",
                      command ? command : "");
    zstr_free (&command);
    zmsg_destroy (&msg);
}

/*  Forgets a replica's series when the fleet forgets it. */
static void
s_self_forget_replica (const rcd_fleet_replica_t *r, void *arg)
{
    self_t *self = arg;
    rcd_metric_remove (self->m.service_up, r->service, r->replica, NULL);
    rcd_metric_remove (self->m.heartbeat_age, r->service, r->replica, NULL);
    rcd_log_info ("replica forgotten", "{s:s, s:s, s:b}", "service", r->service,
                  "replica", r->replica, "stopped", r->stopped);
}

/*  Recomputes liveness and the per-replica gauges. */
static void
s_self_sweep_fleet (self_t *self, int64_t now_ms)
{
    int64_t forget = self->cfg->replica_forget_ms;
    /* forgetting before the timeout would hide every outage */
    if (forget < self->cfg->heartbeat_timeout_ms)
        forget = self->cfg->heartbeat_timeout_ms;
    rcd_fleet_sweep (self->fleet, now_ms, self->cfg->heartbeat_timeout_ms,
                     forget, s_self_forget_replica, self);
    for (size_t i = 0; i < rcd_fleet_size (self->fleet); i++) {
        const rcd_fleet_replica_t *r = rcd_fleet_at (self->fleet, i);
        if (rcd_metric_set (self->m.service_up, r->up ? 1 : 0, r->service,
                            r->replica, NULL) != 0 ||
            rcd_metric_set (self->m.heartbeat_age,
                            (double)(now_ms - r->last_ms) / 1000.0, r->service,
                            r->replica, NULL) != 0)
            s_self_dropped (self, "series_limit");
    }
}

/*  Send attempts and errors in the last span_ms. */
static void
s_self_attempts (self_t *self, int64_t now_ms, int64_t span_ms,
                 double *attempts, double *errors)
{
    double sent = rcd_window_sum (self->windows[S_W_SENT], now_ms, span_ms);
    *errors = rcd_window_sum (self->windows[S_W_FAILED], now_ms, span_ms) +
              rcd_window_sum (self->windows[S_W_RETRY], now_ms, span_ms) +
              rcd_window_sum (self->windows[S_W_UNKNOWN], now_ms, span_ms);
    *attempts = sent + *errors;
}

static void
s_self_evaluate_rules (self_t *self, int64_t now_ms)
{
    rcd_monitor_view_t view = {
        .cfg = self->cfg,
        .db = rcd_monitor_poll_state (self->poll),
        .fleet = self->fleet,
        .scheduler_tick_ms = self->scheduler_tick_ms,
    };
    s_self_attempts (self, now_ms, self->cfg->error_rate_window_ms,
                     &view.attempts, &view.errors);
    rcd_monitor_rules_evaluate (self->alerts, &view, now_ms);
}

/*  Health levels, worst last. */
static const char *const s_levels[] = {"healthy", "degraded", "unhealthy"};

/*  One service's component: its replicas from index *i on (the fleet is
    sorted by service); *i moves past them. */
static json_t *
s_self_service_health (self_t *self, size_t *i, int64_t now_ms)
{
    size_t n = rcd_fleet_size (self->fleet);
    const char *service = rcd_fleet_at (self->fleet, *i)->service;
    json_t *replicas = json_array ();
    size_t total = 0, up = 0, down = 0;
    for (; *i < n &&
           strcmp (rcd_fleet_at (self->fleet, *i)->service, service) == 0;
         (*i)++) {
        const rcd_fleet_replica_t *r = rcd_fleet_at (self->fleet, *i);
        total++;
        up += r->up;
        down += !r->up && !r->stopped;
        json_array_append_new (
            replicas,
            json_pack ("{s:s, s:I, s:s, s:s, s:I}", "replica", r->replica,
                       "age_ms", (json_int_t)(now_ms - r->last_ms), "state",
                       r->up        ? "up"
                       : r->stopped ? "stopped"
                                    : "down",
                       "reported_state", r->state, "uptime_ms",
                       (json_int_t)r->uptime_ms));
    }
    bool core = false;
    for (size_t c = 0; c < S_CORE_COUNT; c++)
        core = core || strcmp (service, s_core_services[c]) == 0;
    /* no live replica: the system cannot work without a core service */
    int level = up == 0 ? (core ? 2 : 1) : down > 0 ? 1 : 0;
    char detail[96];
    if (up == 0)
        snprintf (detail, sizeof detail, "no live replica (%zu down)", down);
    else
        snprintf (detail, sizeof detail, "%zu of %zu replicas up", up, total);
    return json_pack ("{s:s, s:s, s:o}", "status", s_levels[level], "detail",
                      detail, "replicas", replicas);
}

/*  One instance's component: degraded while it cannot send (offline,
    circuit not closed, paused by a throttle, a cap reached). */
static json_t *
s_instance_health (const rcd_monitor_instance_t *inst)
{
    char detail[200];
    int level = 1;
    if (!inst->enabled) {
        level = 0;
        snprintf (detail, sizeof detail, "disabled");
    }
    else if (rcd_monitor_instance_offline (inst))
        snprintf (detail, sizeof detail, "offline: gateway state %s",
                  inst->health);
    else if (strcmp (inst->circuit_state, "closed") != 0)
        snprintf (detail, sizeof detail, "circuit %s: %s", inst->circuit_state,
                  inst->circuit_reason[0] ? inst->circuit_reason : "no reason");
    else if (inst->paused_s > 0)
        snprintf (detail, sizeof detail, "paused by the gateway for %.0f s",
                  inst->paused_s);
    else if (inst->hourly_cap >= 0 && inst->hour_used >= inst->hourly_cap)
        snprintf (detail, sizeof detail, "hourly cap reached (%lld)",
                  (long long)inst->hourly_cap);
    else if (inst->daily_cap >= 0 && inst->day_used >= inst->daily_cap)
        snprintf (detail, sizeof detail, "daily cap reached (%lld)",
                  (long long)inst->daily_cap);
    else {
        level = 0;
        snprintf (detail, sizeof detail, "gateway state %s, circuit closed",
                  inst->health);
    }
    return json_pack ("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "status",
                      s_levels[level], "detail", detail, "id",
                      (json_int_t)inst->id, "tenant_id",
                      (json_int_t)inst->tenant_id, "name", inst->name, "health",
                      inst->health, "circuit_state", inst->circuit_state);
}

/*  The /health document; *status_p gets the HTTP status (503 while
    unhealthy, so load balancers and compose health checks can use it). */
static json_t *
s_self_health (self_t *self, int64_t now_ms, unsigned int *status_p)
{
    const rcd_monitor_db_state_t *st = rcd_monitor_poll_state (self->poll);
    json_t *components = json_object ();
    json_t *db = json_pack ("{s:s, s:s}", "status", s_levels[st->up ? 0 : 2],
                            "detail", st->detail);
    if (st->polled_ms) {
        char polled[40];
        rcd_alerts_time (st->polled_ms, polled, sizeof polled);
        json_object_set_new (db, "polled_at", json_string (polled));
    }
    json_object_set_new (components, "database", db);
    /* Core services appear even before (or long after) any heartbeat. */
    for (size_t c = 0; c < S_CORE_COUNT; c++) {
        char name[64];
        snprintf (name, sizeof name, "service:%s", s_core_services[c]);
        json_object_set_new (components, name,
                             json_pack ("{s:s, s:s, s:[]}", "status",
                                        s_levels[2], "detail",
                                        "no live replica", "replicas"));
    }
    size_t i = 0;
    while (i < rcd_fleet_size (self->fleet)) {
        char name[64];
        snprintf (name, sizeof name, "service:%s",
                  rcd_fleet_at (self->fleet, i)->service);
        json_object_set_new (components, name,
                             s_self_service_health (self, &i, now_ms));
    }
    int64_t tick_age = now_ms - self->scheduler_tick_ms;
    bool ticking = tick_age <= self->cfg->scheduler_stall_ms;
    char detail[128];
    if (!self->scheduler_heard)
        snprintf (detail, sizeof detail,
                  "no active scheduler heard from since the monitor started "
                  "%.1f s ago",
                  (double)tick_age / 1000.0);
    else
        snprintf (detail, sizeof detail,
                  ticking ? "an active scheduler ticked %.1f s ago"
                          : "no active scheduler has ticked for %.1f s",
                  (double)tick_age / 1000.0);
    json_object_set_new (components, "scheduler_tick",
                         json_pack ("{s:s, s:s, s:I}", "status",
                                    s_levels[ticking ? 0 : 2], "detail", detail,
                                    "age_ms", (json_int_t)tick_age));
    for (size_t n = 0; n < st->ninstances; n++) {
        char name[48];
        snprintf (name, sizeof name, "instance:%lld",
                  (long long)st->instances[n].id);
        json_object_set_new (components, name,
                             s_instance_health (&st->instances[n]));
    }
    int worst = 0;
    const char *key;
    json_t *component;
    json_object_foreach (components, key, component)
    {
        const char *status =
            json_string_value (json_object_get (component, "status"));
        for (int level = worst + 1; status && level < 3; level++)
            if (strcmp (status, s_levels[level]) == 0)
                worst = level;
    }
    *status_p = worst == 2 ? 503 : 200;
    return json_pack ("{s:s, s:o}", "status", s_levels[worst], "components",
                      components);
}

/*  One instance in /queue-stats: state and usage against the caps. */
static json_t *
s_instance_json (const rcd_monitor_instance_t *inst)
{
    json_t *j = json_pack (
        "{s:I, s:I, s:s, s:s, s:b, s:s, s:s, s:f, s:I, s:I}", "id",
        (json_int_t)inst->id, "tenant_id", (json_int_t)inst->tenant_id, "name",
        inst->name, "provider", inst->provider, "enabled", inst->enabled,
        "health", inst->health, "circuit_state", inst->circuit_state,
        "paused_seconds", inst->paused_s, "hour_used",
        (json_int_t)inst->hour_used, "day_used", (json_int_t)inst->day_used);
    json_object_set_new (j, "hourly_cap",
                         inst->hourly_cap >= 0
                             ? json_integer ((json_int_t)inst->hourly_cap)
                             : json_null ());
    json_object_set_new (j, "daily_cap",
                         inst->daily_cap >= 0
                             ? json_integer ((json_int_t)inst->daily_cap)
                             : json_null ());
    json_object_set_new (j, "circuit_reason",
                         inst->circuit_reason[0]
                             ? json_string (inst->circuit_reason)
                             : json_null ());
    return j;
}

/*  One open campaign in /queue-stats. */
static json_t *
s_campaign_json (const rcd_monitor_campaign_t *c)
{
    return json_pack ("{s:I, s:I, s:s, s:s, s:I, s:I}", "id", (json_int_t)c->id,
                      "tenant_id", (json_int_t)c->tenant_id, "name", c->name,
                      "state", c->state, "total", (json_int_t)c->total,
                      "remaining", (json_int_t)c->remaining);
}

/*  The sliding windows: counts by status and the error ratio. */
static json_t *
s_self_windows_json (self_t *self, int64_t now_ms)
{
    json_t *windows = json_object ();
    for (size_t w = 0; w < S_WINDOW_COUNT; w++) {
        json_t *one = json_object ();
        for (size_t k = 0; k < S_W_COUNT; k++)
            json_object_set_new (
                one, s_window_kinds[k].status,
                json_real (rcd_window_sum (self->windows[k], now_ms,
                                           s_windows[w].span_ms)));
        double attempts, errors;
        s_self_attempts (self, now_ms, s_windows[w].span_ms, &attempts,
                         &errors);
        json_object_set_new (one, "error_ratio",
                             json_real (attempts > 0 ? errors / attempts : 0));
        json_object_set_new (windows, s_windows[w].label, one);
    }
    return windows;
}

/*  The last ten minutes in ten-second buckets, for the dashboard's
    chart. */
static json_t *
s_self_history_json (self_t *self, int64_t now_ms)
{
    json_t *history = json_pack ("{s:i, s:i}", "bucket_s", S_HISTORY_BUCKET_S,
                                 "buckets", S_HISTORY_BUCKETS);
    static const s_window_kind_t kinds[] = {S_W_SENT, S_W_FAILED, S_W_RETRY,
                                            S_W_UNKNOWN, S_W_ACCEPTED};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        double values[S_HISTORY_BUCKETS];
        rcd_window_series (self->windows[kinds[k]], now_ms, S_HISTORY_BUCKET_S,
                           S_HISTORY_BUCKETS, values);
        json_t *array = json_array ();
        for (size_t b = 0; b < S_HISTORY_BUCKETS; b++)
            json_array_append_new (array, json_integer ((json_int_t)values[b]));
        json_object_set_new (history, s_window_kinds[kinds[k]].status, array);
    }
    return history;
}

/*  The /queue-stats document. */
static json_t *
s_self_queue_stats (self_t *self, int64_t now_ms)
{
    const rcd_monitor_db_state_t *st = rcd_monitor_poll_state (self->poll);
    json_t *by_status = json_object ();
    json_t *by_priority = json_object ();
    for (size_t p = 0; p < RCD_MONITOR_PRIORITY_COUNT; p++)
        json_object_set_new (by_priority, rcd_monitor_priorities[p],
                             json_object ());
    for (size_t s = 0; s < RCD_MONITOR_STATUS_COUNT; s++) {
        int64_t total = 0;
        for (size_t p = 0; p < RCD_MONITOR_PRIORITY_COUNT; p++) {
            total += st->counts[s][p];
            json_object_set_new (
                json_object_get (by_priority, rcd_monitor_priorities[p]),
                rcd_monitor_statuses[s],
                json_integer ((json_int_t)st->counts[s][p]));
        }
        json_object_set_new (by_status, rcd_monitor_statuses[s],
                             json_integer ((json_int_t)total));
    }
    json_t *instances = json_array ();
    for (size_t i = 0; i < st->ninstances; i++)
        json_array_append_new (instances, s_instance_json (&st->instances[i]));
    char polled[40] = "";
    if (st->polled_ms)
        rcd_alerts_time (st->polled_ms, polled, sizeof polled);
    json_t *qs = json_pack (
        "{s:b, s:s?, s:o, s:o, s:I, s:f, s:I, s:I, s:{s:I, s:I}, s:I, s:f}",
        "database_up", st->up, "polled_at", st->polled_ms ? polled : NULL,
        "by_status", by_status, "by_priority", by_priority, "due",
        (json_int_t)st->due_backlog, "oldest_due_seconds", st->oldest_due_s,
        "leases_expired", (json_int_t)st->leases_expired, "leases_stuck",
        (json_int_t)st->leases_stuck, "stuck", "pending",
        (json_int_t)st->stuck_pending, "unknown", (json_int_t)st->stuck_unknown,
        "dead_letters", (json_int_t)st->dead_letters, "dead_letters_per_minute",
        st->dead_letters_per_min);
    json_object_set_new (qs, "billing_cycles_created_last_hour",
                         st->hourly_valid
                             ? json_integer ((json_int_t)st->cycles_last_hour)
                             : json_null ());
    json_object_set_new (
        qs, "webhook_events_unmatched_last_hour",
        st->hourly_valid ? json_integer ((json_int_t)st->unmatched_last_hour)
                         : json_null ());
    json_object_set_new (qs, "instances", instances);
    json_t *campaigns = json_array ();
    for (size_t i = 0; i < st->ncampaigns; i++)
        json_array_append_new (campaigns, s_campaign_json (&st->campaigns[i]));
    json_object_set_new (qs, "campaigns", campaigns);
    json_t *campaign_states = json_object ();
    for (size_t i = 0; i < RCD_MONITOR_CAMPAIGN_STATE_COUNT; i++)
        json_object_set_new (campaign_states, rcd_monitor_campaign_states[i],
                             json_integer ((json_int_t)st->campaign_states[i]));
    json_object_set_new (qs, "campaigns_by_state", campaign_states);
    json_object_set_new (qs, "windows", s_self_windows_json (self, now_ms));
    json_object_set_new (qs, "history", s_self_history_json (self, now_ms));
    json_object_set_new (
        qs, "alerts_firing",
        json_integer ((json_int_t)rcd_alerts_firing (self->alerts, NULL)));
    return qs;
}

/*  Serialises a JSON document (consumed) and publishes it. */
static void
s_self_publish_json (self_t *self, rcd_monitor_doc_t doc, json_t *json,
                     unsigned int status)
{
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text) {
        rcd_log_error ("render failed", "{s:i}", "doc", (int)doc);
        return;
    }
    rcd_monitor_http_publish (self->http, doc, &text, status);
}

/*  Gauges computed at render time: windows, alert counts, the
    scheduler's tick age, the webhook's counters. */
static void
s_self_render_gauges (self_t *self, int64_t now_ms)
{
    s_families_t *m = &self->m;
    for (size_t i = 0; i < rcd_monitor_rules_count (); i++)
        rcd_metric_set (
            m->alerts_firing,
            (double)rcd_alerts_firing (self->alerts, rcd_monitor_rule_name (i)),
            rcd_monitor_rule_name (i), NULL);
    for (size_t w = 0; w < S_WINDOW_COUNT; w++) {
        for (size_t k = 0; k < S_W_COUNT; k++)
            rcd_metric_set (
                m->window_messages,
                rcd_window_sum (self->windows[k], now_ms, s_windows[w].span_ms),
                s_window_kinds[k].status, s_windows[w].label, NULL);
        double attempts, errors;
        s_self_attempts (self, now_ms, s_windows[w].span_ms, &attempts,
                         &errors);
        rcd_metric_set (m->window_error_ratio,
                        attempts > 0 ? errors / attempts : 0,
                        s_windows[w].label, NULL);
    }
    rcd_metric_set (m->scheduler_tick_age,
                    (double)(now_ms - self->scheduler_tick_ms) / 1000.0, NULL);
    if (self->sink) {
        rcd_alert_sink_stats_t stats;
        rcd_alert_sink_stats (self->sink, &stats);
        /* the sink's own counters: monotonic, so set equals add */
        rcd_metric_set (m->webhook, (double)stats.delivered, "delivered", NULL);
        rcd_metric_set (m->webhook, (double)stats.failed, "failed", NULL);
        rcd_metric_set (m->webhook, (double)stats.dropped, "dropped", NULL);
        rcd_metric_set (m->webhook, (double)stats.attempts, "attempts", NULL);
    }
}

/*  Renders every document for the HTTP thread. */
static void
s_self_render (self_t *self, int64_t now_ms)
{
    s_self_render_gauges (self, now_ms);
    char *text = rcd_metrics_render (self->metrics);
    if (text)
        rcd_monitor_http_publish (self->http, RCD_MONITOR_DOC_METRICS, &text,
                                  200);
    unsigned int status = 200;
    json_t *health = s_self_health (self, now_ms, &status);
    s_self_publish_json (self, RCD_MONITOR_DOC_HEALTH, health, status);
    s_self_publish_json (self, RCD_MONITOR_DOC_ALERTS,
                         rcd_alerts_json (self->alerts), 200);
    s_self_publish_json (self, RCD_MONITOR_DOC_QUEUE_STATS,
                         s_self_queue_stats (self, now_ms), 200);
}

/*  Periodic work with per-task periods (serverCron in miniature). */
static void
s_self_tick (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    if (now >= self->next_poll_ms) {
        s_self_poll_db (self, now);
        now = rcd_clock_mono_ms ();
        self->next_poll_ms = now + self->cfg->db_poll_ms;
        /* heartbeats that queued while a slow poll blocked us must count
           before the sweep, or a slow database looks like dead services */
        s_self_handle_events (self);
    }
    s_self_sweep_fleet (self, now);
    s_self_evaluate_rules (self, now);
    if (now >= self->next_render_ms) {
        s_self_render (self, now);
        self->next_render_ms = now + S_RENDER_MS;
    }
    self->next_tick_ms = now + S_TICK_MS;
}

void
rcd_monitor_server (zsock_t *pipe, void *args)
{
    const rcd_monitor_config_t *cfg = args;
    const char *why = NULL;
    self_t *self = s_self_new (pipe, cfg, &why);
    /* every document exists once zactor_new returns (the database is
       polled on the first tick: it may be slow or away) */
    if (self)
        s_self_render (self, rcd_clock_mono_ms ());
    zsock_signal (pipe, 0);
    if (!self) {
        /* main exits 1; wait for $TERM as the pipe protocol requires */
        zstr_sendx (pipe, "FATAL", why, NULL);
        while (true) {
            char *command = zstr_recv (pipe);
            bool term = !command || strcmp (command, "$TERM") == 0;
            zstr_free (&command);
            if (term)
                break;
        }
        return;
    }
    rcd_log_info ("monitor started", "{s:s, s:s, s:s, s:I, s:b}", "events",
                  cfg->events_bind, "alerts", cfg->alerts_endpoint, "http",
                  cfg->monitor_bind, "port", (json_int_t)cfg->monitor_port,
                  "webhook", self->sink != NULL);
    while (!self->terminated) {
        int64_t wait = self->next_tick_ms - rcd_clock_mono_ms ();
        void *which = zpoller_wait (self->poller, wait > 0 ? (int)wait : 0);
        if (which == pipe)
            s_self_handle_pipe (self);
        else if (which == self->events)
            s_self_handle_events (self);
        else if (zpoller_terminated (self->poller))
            break;
        if (rcd_clock_mono_ms () >= self->next_tick_ms)
            s_self_tick (self);
    }
    rcd_log_info ("monitor stopped", NULL);
    s_self_destroy (&self);
}

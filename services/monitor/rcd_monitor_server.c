/*  rcd_monitor_server.c - the monitor actor: observes, never changes state.

    Inputs
      events_bind (SUB, bound, subscribed to everything; default
        tcp://127.0.0.1:9092): proto/ "heartbeat" and "event" frames from
        every service's rcd_events PUB. A malformed frame is counted
        (recado_frames_malformed_total) and dropped. Receive high-water
        mark events_hwm: past it ZeroMQ drops frames (events are news;
        PostgreSQL keeps the facts).
      PostgreSQL (database_url): every db_poll_ms, a few cheap read-only
        queries in one READ ONLY transaction with a statement timeout.
        rcd_db reconnects by itself; while it cannot, the database
        component is unhealthy and recado_database_up is 0.
    Outputs
      alerts_endpoint (PUB, bound; default tcp://127.0.0.1:9091): two
        frames, topic "alert.<severity>.<rule>" and the JSON body of
        API.md; each alert fires once and resolves once (rcd_alerts).
      HTTP monitor_bind:monitor_port (default 127.0.0.1:9090): /metrics,
        /health, /alerts, /queue-stats and the dashboard at / (see
        rcd_monitor_http.h). Documents are rendered here every 250 ms.
    Alert rules (s_rules[]; add a row and an evaluate function):
      service_down (critical): a replica that sent heartbeats went silent
        for heartbeat_timeout_ms; resolves when it heartbeats again or is
        forgotten (silent past replica_forget_ms). A replica whose last
        heartbeat had the state "stopped" left cleanly: no alert.
    Metrics (Prometheus names)
      recado_events_total{service,kind}        counter, sum of event counts
      recado_messages_total{status}            counter, from message.* events
      recado_frames_received_total{type}       counter
      recado_frames_malformed_total            counter
      recado_monitor_dropped_total{reason}     counter, series/replica limits
      recado_service_up{service,replica}       gauge 1/0
      recado_heartbeat_age_seconds{service,replica} gauge
      recado_messages{status}                  gauge, rows by status
      recado_oldest_due_seconds                gauge, oldest due pending
      recado_leases_expired                    gauge, sending past lease
      recado_dead_letters                      gauge, dead_letters rows
      recado_database_up                       gauge 1/0
      recado_db_poll_errors_total              counter
      recado_alerts_firing{rule}               gauge
      recado_alerts_published_total{rule,state} counter
    Config keys: events_bind, alerts_endpoint, monitor_bind, monitor_port,
      database_url, db_poll_ms, heartbeat_timeout_ms, replica_forget_ms,
      events_hwm (env RECADO_<KEY>, DATABASE_URL).
    Pipe: answers DRAIN with DRAINED at once (nothing is ever in flight)
      and keeps serving until $TERM. Sends FATAL when a socket or the HTTP
      port cannot be bound; recado-monitor then exits 1.
    The monitor does not publish its own heartbeat: it is its own
    observer, and reaching /health proves it runs.
*/
#include "rcd_monitor_server.h"
#include "rcd_alerts.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_fleet.h"
#include "rcd_log.h"
#include "rcd_metrics.h"
#include "rcd_monitor_http.h"
#include "rcd_proto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    RCD_CONFIG_END};

#define S_TICK_MS       100   /* fleet sweep and rule evaluation */
#define S_RENDER_MS     250   /* documents re-rendered for HTTP */
#define S_EVENTS_BATCH  1000  /* frames handled before looking at the tick */
#define S_MAX_SERIES    2000  /* per metric family */
#define S_MAX_REPLICAS  1000  /* replicas tracked */
#define S_MAX_INSTANCES 500   /* instances listed in /queue-stats */
#define S_LOG_EVERY_MS  60000 /* malformed frames: one log line a minute */

/*  messages.status values, in life-cycle order (migrations/0001). */
static const char *const s_statuses[] = {
    "pending", "sending",   "unknown", "sent",    "delivered", "read",
    "failed",  "cancelled", "expired", "blocked", "skipped"};
#define S_STATUS_COUNT (sizeof s_statuses / sizeof s_statuses[0])

/*  messages.priority 0, 1, 2. */
static const char *const s_priorities[] = {"high", "normal", "low"};
#define S_PRIORITY_COUNT 3

/*  Services that must have a live replica for the system to work. */
static const char *const s_core_services[] = {"ingestor", "scheduler", "sender",
                                              "recovery"};
#define S_CORE_COUNT (sizeof s_core_services / sizeof s_core_services[0])

/*  Events that count toward recado_messages_total, by status label. */
static const struct {
    const char *kind;
    const char *status;
} s_message_kinds[] = {
    {"message.accepted", "accepted"}, {"message.sent", "sent"},
    {"message.failed", "failed"},     {"message.retry", "retry"},
    {"message.unknown", "unknown"},
};
#define S_MESSAGE_KIND_COUNT                                                   \
    (sizeof s_message_kinds / sizeof s_message_kinds[0])

typedef struct self_t self_t;
typedef struct s_rule s_rule_t;

/*  An alert rule: evaluate reports each subject's condition to
    self->alerts (rcd_alerts_observe); the table does fire-once and
    resolve-once. */
struct s_rule {
    const char *name;     /* topic alert.<severity>.<name> */
    const char *severity; /* critical, warning, info */
    int64_t for_ms;       /* condition must hold this long */
    void (*evaluate) (self_t *self, const s_rule_t *rule, int64_t now_ms);
};

static void
s_rule_service_down (self_t *self, const s_rule_t *rule, int64_t now_ms);

static const s_rule_t s_rules[] = {
    {"service_down", "critical", 0, s_rule_service_down},
};
#define S_RULE_COUNT (sizeof s_rules / sizeof s_rules[0])

/*  What the last database poll saw. */
typedef struct {
    bool up;           /* the last poll succeeded */
    int64_t polls;     /* polls attempted */
    char detail[256];  /* "connected" or the error */
    int64_t polled_ms; /* unix ms of the last successful poll */
    int64_t counts[S_STATUS_COUNT][S_PRIORITY_COUNT];
    double oldest_due_s;    /* age of the oldest due pending message */
    int64_t leases_expired; /* sending rows past their lease */
    int64_t dead_letters;   /* dead_letters rows */
    json_t *instances;      /* array of instance states (owned) */
} s_db_state_t;

/*  The metric families the monitor renders. */
typedef struct {
    rcd_metric_t *events_total;
    rcd_metric_t *messages_total;
    rcd_metric_t *frames_received;
    rcd_metric_t *frames_malformed;
    rcd_metric_t *dropped;
    rcd_metric_t *service_up;
    rcd_metric_t *heartbeat_age;
    rcd_metric_t *messages;
    rcd_metric_t *oldest_due;
    rcd_metric_t *leases_expired;
    rcd_metric_t *dead_letters;
    rcd_metric_t *database_up;
    rcd_metric_t *db_poll_errors;
    rcd_metric_t *alerts_firing;
    rcd_metric_t *alerts_published;
} s_families_t;

struct self_t {
    zsock_t *pipe;                   /* to main or the test */
    const rcd_monitor_config_t *cfg; /* borrowed */
    zsock_t *events;                 /* SUB, bound */
    zsock_t *alerts_pub;             /* PUB, bound */
    zpoller_t *poller;               /* pipe + events */
    rcd_db_t *db;                    /* read-only use */
    rcd_metrics_t *metrics;          /* registry */
    s_families_t m;                  /* handles into metrics */
    rcd_fleet_t *fleet;              /* replicas by heartbeat */
    rcd_alerts_t *alerts;            /* active alerts */
    rcd_monitor_http_t *http;        /* HTTP thread */
    s_db_state_t dbs;                /* last poll */
    int64_t next_tick_ms;            /* monotonic */
    int64_t next_poll_ms;            /* monotonic */
    int64_t next_render_ms;          /* monotonic */
    int64_t malformed_logged_ms;     /* last malformed-frame log line */
    bool terminated;                 /* $TERM received */
};

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
    m->messages = rcd_metrics_gauge (
        r, "recado_messages", "Rows in messages by status.", "status", NULL);
    m->oldest_due = rcd_metrics_gauge (
        r, "recado_oldest_due_seconds",
        "Age of the oldest due pending message (0 when none).", NULL);
    m->leases_expired = rcd_metrics_gauge (
        r, "recado_leases_expired",
        "Messages in sending whose lease has expired.", NULL);
    m->dead_letters = rcd_metrics_gauge (r, "recado_dead_letters",
                                         "Rows in dead_letters.", NULL);
    m->database_up =
        rcd_metrics_gauge (r, "recado_database_up",
                           "1 when the last PostgreSQL poll succeeded.", NULL);
    m->db_poll_errors = rcd_metrics_counter (r, "recado_db_poll_errors_total",
                                             "Failed PostgreSQL polls.", NULL);
    m->alerts_firing = rcd_metrics_gauge (
        r, "recado_alerts_firing", "Alerts firing by rule.", "rule", NULL);
    m->alerts_published =
        rcd_metrics_counter (r, "recado_alerts_published_total",
                             "Alert transitions published, by rule and state.",
                             "rule", "state", NULL);
    const rcd_metric_t *all[] = {
        m->events_total,     m->messages_total, m->frames_received,
        m->frames_malformed, m->dropped,        m->service_up,
        m->heartbeat_age,    m->messages,       m->oldest_due,
        m->leases_expired,   m->dead_letters,   m->database_up,
        m->db_poll_errors,   m->alerts_firing,  m->alerts_published};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return false;
    /* Series that exist from the start, so rate() has a baseline. */
    for (size_t i = 0; i < S_MESSAGE_KIND_COUNT; i++)
        rcd_metric_add (m->messages_total, 0, s_message_kinds[i].status, NULL);
    for (size_t i = 0; i < S_STATUS_COUNT; i++)
        rcd_metric_set (m->messages, 0, s_statuses[i], NULL);
    for (size_t i = 0; i < S_RULE_COUNT; i++)
        rcd_metric_set (m->alerts_firing, 0, s_rules[i].name, NULL);
    rcd_metric_add (m->dropped, 0, "series_limit", NULL);
    rcd_metric_add (m->dropped, 0, "replica_limit", NULL);
    rcd_metric_add (m->frames_received, 0, "heartbeat", NULL);
    rcd_metric_add (m->frames_received, 0, "event", NULL);
    return true;
}

/*  Counts a drop of the monitor's own limits. */
static void
s_self_dropped (self_t *self, const char *reason)
{
    rcd_metric_add (self->m.dropped, 1, reason, NULL);
}

/*  Publishes an alert transition on the PUB socket (rcd_alerts sink). */
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
    rcd_metric_add (self->m.alerts_published, 1, rule, state, NULL);
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    rcd_monitor_http_destroy (&self->http);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->alerts_pub);
    zsock_destroy (&self->events);
    rcd_db_destroy (&self->db);
    json_decref (self->dbs.instances);
    rcd_alerts_destroy (&self->alerts);
    rcd_fleet_destroy (&self->fleet);
    rcd_metrics_destroy (&self->metrics);
    free (self);
    *self_p = NULL;
}

static const char s_sql_counts[] =
    "SELECT status, priority, count(*) FROM messages GROUP BY 1, 2";

/*  min(send_at) per priority walks the partial due index once each. */
static const char s_sql_scalars[] =
    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - LEAST("
    " (SELECT min(send_at) FROM messages WHERE status = 'pending'"
    "  AND priority = 0 AND send_at <= now()),"
    " (SELECT min(send_at) FROM messages WHERE status = 'pending'"
    "  AND priority = 1 AND send_at <= now()),"
    " (SELECT min(send_at) FROM messages WHERE status = 'pending'"
    "  AND priority = 2 AND send_at <= now())))::float8, 0),"
    " (SELECT count(*) FROM messages WHERE status = 'sending'"
    "  AND lease_until < now()),"
    " (SELECT count(*) FROM dead_letters)";

static const char s_sql_instances[] =
    "SELECT id, tenant_id, name, provider, enabled, health, circuit_state"
    " FROM instances ORDER BY id LIMIT $1";

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
    self->dbs.instances = json_array ();
    if (!self->metrics || !self->fleet || !self->alerts ||
        !self->dbs.instances || !s_self_declare_metrics (self))
        goto failed;
    snprintf (self->dbs.detail, sizeof self->dbs.detail, "not polled yet");

    self->db = rcd_db_new (cfg->database_url);
    if (!self->db ||
        rcd_db_prepare (self->db, "monitor_counts", s_sql_counts) ||
        rcd_db_prepare (self->db, "monitor_scalars", s_sql_scalars) ||
        rcd_db_prepare (self->db, "monitor_instances", s_sql_instances))
        goto failed;

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
    *why = NULL;
    return self;
failed:
    s_self_destroy (&self);
    return NULL;
}

/*  Reads one poll's results into self->dbs. */
static void
s_self_store_poll (self_t *self, rcd_db_res_t *counts, rcd_db_res_t *scalars,
                   rcd_db_res_t *instances)
{
    s_db_state_t *dbs = &self->dbs;
    memset (dbs->counts, 0, sizeof dbs->counts);
    for (int row = 0; row < rcd_db_res_rows (counts); row++) {
        const char *status = rcd_db_res_value (counts, row, 0);
        int64_t priority = rcd_db_res_int64 (counts, row, 1);
        for (size_t s = 0; status && s < S_STATUS_COUNT; s++)
            if (strcmp (status, s_statuses[s]) == 0 && priority >= 0 &&
                priority < S_PRIORITY_COUNT)
                dbs->counts[s][priority] += rcd_db_res_int64 (counts, row, 2);
    }
    const char *oldest = rcd_db_res_value (scalars, 0, 0);
    dbs->oldest_due_s = oldest ? strtod (oldest, NULL) : 0;
    if (!(dbs->oldest_due_s > 0))
        dbs->oldest_due_s = 0; /* clock skew makes tiny negatives */
    dbs->leases_expired = rcd_db_res_int64 (scalars, 0, 1);
    dbs->dead_letters = rcd_db_res_int64 (scalars, 0, 2);
    json_t *list = json_array ();
    for (int row = 0; list && row < rcd_db_res_rows (instances); row++) {
        const char *enabled = rcd_db_res_value (instances, row, 4);
        json_array_append_new (
            list,
            json_pack ("{s:I, s:I, s:s?, s:s?, s:b, s:s?, s:s?}", "id",
                       (json_int_t)rcd_db_res_int64 (instances, row, 0),
                       "tenant_id",
                       (json_int_t)rcd_db_res_int64 (instances, row, 1), "name",
                       rcd_db_res_value (instances, row, 2), "provider",
                       rcd_db_res_value (instances, row, 3), "enabled",
                       enabled && *enabled == 't', "health",
                       rcd_db_res_value (instances, row, 5), "circuit_state",
                       rcd_db_res_value (instances, row, 6)));
    }
    if (list) {
        json_decref (dbs->instances);
        dbs->instances = list;
    }
    dbs->up = true;
    dbs->polled_ms = rcd_clock_now_ms ();
    snprintf (dbs->detail, sizeof dbs->detail, "connected");

    for (size_t s = 0; s < S_STATUS_COUNT; s++) {
        int64_t total = 0;
        for (size_t p = 0; p < S_PRIORITY_COUNT; p++)
            total += dbs->counts[s][p];
        rcd_metric_set (self->m.messages, (double)total, s_statuses[s], NULL);
    }
    rcd_metric_set (self->m.oldest_due, dbs->oldest_due_s, NULL);
    rcd_metric_set (self->m.leases_expired, (double)dbs->leases_expired, NULL);
    rcd_metric_set (self->m.dead_letters, (double)dbs->dead_letters, NULL);
}

/*  Reads the gauges from PostgreSQL in one read-only transaction so the
    numbers agree with each other. Failures leave the previous numbers
    in place and mark the database down until the next good poll. */
static void
s_self_poll_db (self_t *self)
{
    rcd_db_res_t *counts = NULL, *scalars = NULL, *instances = NULL;
    char timeout[32], limit[16];
    /* a poll never runs longer than its own period */
    snprintf (timeout, sizeof timeout, "%lld",
              (long long)(self->cfg->db_poll_ms < 1000
                              ? 1000
                              : self->cfg->db_poll_ms));
    snprintf (limit, sizeof limit, "%d", S_MAX_INSTANCES);
    const char *timeout_param[] = {timeout};
    const char *limit_param[] = {limit};
    bool ok =
        rcd_db_exec (self->db,
                     "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
                     NULL) == 0 &&
        rcd_db_exec (self->db,
                     "SELECT set_config('statement_timeout', $1, true)", 1,
                     timeout_param, NULL) == 0 &&
        rcd_db_run (self->db, "monitor_counts", 0, NULL, &counts) == 0 &&
        rcd_db_run (self->db, "monitor_scalars", 0, NULL, &scalars) == 0 &&
        rcd_db_run (self->db, "monitor_instances", 1, limit_param,
                    &instances) == 0 &&
        rcd_db_commit (self->db) == 0;
    bool was_up = self->dbs.up;
    bool first = self->dbs.polls++ == 0;
    if (ok && rcd_db_res_rows (scalars) == 1) {
        s_self_store_poll (self, counts, scalars, instances);
        if (!was_up)
            rcd_log_info ("database reachable", NULL);
    }
    else {
        rcd_db_rollback (self->db);
        /* one line per change of state, not one per poll */
        if (was_up || first)
            rcd_log_warn ("database poll failed", "{s:s}", "error",
                          rcd_db_error (self->db));
        self->dbs.up = false;
        snprintf (self->dbs.detail, sizeof self->dbs.detail, "%s",
                  *rcd_db_error (self->db) ? rcd_db_error (self->db)
                                           : "poll failed");
        rcd_metric_add (self->m.db_poll_errors, 1, NULL);
    }
    rcd_metric_set (self->m.database_up, self->dbs.up ? 1 : 0, NULL);
    rcd_db_res_destroy (&instances);
    rcd_db_res_destroy (&scalars);
    rcd_db_res_destroy (&counts);
}

static void
s_self_on_heartbeat (self_t *self, const rcd_heartbeat_t *hb)
{
    int rc =
        rcd_fleet_heartbeat (self->fleet, hb->service, hb->replica, hb->state,
                             hb->seq, hb->uptime_ms, rcd_clock_mono_ms ());
    if (rc == 1)
        rcd_log_info ("replica joined", "{s:s, s:s}", "service", hb->service,
                      "replica", hb->replica);
    else if (rc < 0)
        s_self_dropped (self, "replica_limit");
}

static void
s_self_on_event (self_t *self, const rcd_event_t *ev)
{
    if (rcd_metric_add (self->m.events_total, (double)ev->count, ev->service,
                        ev->kind, NULL) != 0)
        s_self_dropped (self, "series_limit");
    for (size_t i = 0; i < S_MESSAGE_KIND_COUNT; i++)
        if (strcmp (ev->kind, s_message_kinds[i].kind) == 0) {
            rcd_metric_add (self->m.messages_total, (double)ev->count,
                            s_message_kinds[i].status, NULL);
            break;
        }
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

/*  service_down: one alert per replica that went silent. */
static void
s_rule_service_down (self_t *self, const s_rule_t *rule, int64_t now_ms)
{
    for (size_t i = 0; i < rcd_fleet_size (self->fleet); i++) {
        const rcd_fleet_replica_t *r = rcd_fleet_at (self->fleet, i);
        bool down = !r->up && !r->stopped;
        char key[128], summary[256];
        snprintf (key, sizeof key, "%s/%s", r->service, r->replica);
        if (down)
            snprintf (summary, sizeof summary,
                      "%s replica %s sent no heartbeat for %.1f s", r->service,
                      r->replica, (double)(now_ms - r->last_ms) / 1000.0);
        else
            snprintf (summary, sizeof summary,
                      "%s replica %s is sending heartbeats again", r->service,
                      r->replica);
        json_t *labels = json_pack ("{s:s, s:s}", "service", r->service,
                                    "replica", r->replica);
        if (!labels || rcd_alerts_observe (self->alerts, rule->name,
                                           rule->severity, rule->for_ms, key,
                                           down, labels, summary, now_ms) != 0)
            rcd_log_error ("alert: out of memory", "{s:s}", "rule", rule->name);
        json_decref (labels);
    }
    rcd_alerts_sweep (self->alerts, rule->name,
                      "replica forgotten after a long silence");
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
    snprintf (detail, sizeof detail, "%zu of %zu replicas up", up, total);
    return json_pack ("{s:s, s:s, s:o}", "status", s_levels[level], "detail",
                      detail, "replicas", replicas);
}

/*  The /health document; *status_p gets the HTTP status (503 while
    unhealthy, so load balancers and compose health checks can use it). */
static json_t *
s_self_health (self_t *self, int64_t now_ms, unsigned int *status_p)
{
    json_t *components = json_object ();
    json_object_set_new (components, "database",
                         json_pack ("{s:s, s:s}", "status",
                                    s_levels[self->dbs.up ? 0 : 2], "detail",
                                    self->dbs.detail));
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

/*  The /queue-stats document. */
static json_t *
s_self_queue_stats (self_t *self)
{
    const s_db_state_t *dbs = &self->dbs;
    json_t *by_status = json_object ();
    json_t *by_priority = json_object ();
    for (size_t p = 0; p < S_PRIORITY_COUNT; p++)
        json_object_set_new (by_priority, s_priorities[p], json_object ());
    for (size_t s = 0; s < S_STATUS_COUNT; s++) {
        int64_t total = 0;
        for (size_t p = 0; p < S_PRIORITY_COUNT; p++) {
            total += dbs->counts[s][p];
            json_object_set_new (json_object_get (by_priority, s_priorities[p]),
                                 s_statuses[s],
                                 json_integer ((json_int_t)dbs->counts[s][p]));
        }
        json_object_set_new (by_status, s_statuses[s],
                             json_integer ((json_int_t)total));
    }
    char polled[40] = "";
    if (dbs->polled_ms)
        rcd_alerts_time (dbs->polled_ms, polled, sizeof polled);
    return json_pack (
        "{s:b, s:s?, s:o, s:o, s:f, s:I, s:I, s:O}", "database_up", dbs->up,
        "polled_at", dbs->polled_ms ? polled : NULL, "by_status", by_status,
        "by_priority", by_priority, "oldest_due_seconds", dbs->oldest_due_s,
        "leases_expired", (json_int_t)dbs->leases_expired, "dead_letters",
        (json_int_t)dbs->dead_letters, "instances", dbs->instances);
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

/*  Renders every document for the HTTP thread. */
static void
s_self_render (self_t *self, int64_t now_ms)
{
    for (size_t i = 0; i < S_RULE_COUNT; i++)
        rcd_metric_set (
            self->m.alerts_firing,
            (double)rcd_alerts_firing (self->alerts, s_rules[i].name),
            s_rules[i].name, NULL);
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
                         s_self_queue_stats (self), 200);
}

/*  Periodic work with per-task periods (serverCron in miniature). */
static void
s_self_tick (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    if (now >= self->next_poll_ms) {
        s_self_poll_db (self);
        now = rcd_clock_mono_ms ();
        self->next_poll_ms = now + self->cfg->db_poll_ms;
        /* heartbeats that queued while a slow poll blocked us must count
           before the sweep, or a slow database looks like dead services */
        s_self_handle_events (self);
    }
    s_self_sweep_fleet (self, now);
    for (size_t i = 0; i < S_RULE_COUNT; i++)
        s_rules[i].evaluate (self, &s_rules[i], now);
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
    rcd_log_info ("monitor started", "{s:s, s:s, s:s, s:I}", "events",
                  cfg->events_bind, "alerts", cfg->alerts_endpoint, "http",
                  cfg->monitor_bind, "port", (json_int_t)cfg->monitor_port);
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

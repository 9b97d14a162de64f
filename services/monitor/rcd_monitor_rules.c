/*  rcd_monitor_rules.c - the alert rules table and their conditions. */
#include "rcd_monitor_rules.h"
#include "rcd_log.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

typedef struct s_rule s_rule_t;

/*  One rule: evaluate reports each subject's condition to the alerts
    table (s_observe); for_key is the config field holding its for
    duration (or SIZE_MAX: none). */
struct s_rule {
    const char *name;     /* topic alert.<severity>.<name> */
    const char *severity; /* critical, warning */
    size_t for_key;       /* offsetof in rcd_monitor_config_t */
    bool needs_db;        /* skipped while the database is down */
    void (*evaluate) (rcd_alerts_t *alerts, const s_rule_t *rule,
                      const rcd_monitor_view_t *view, int64_t now_ms);
};

#define S_FOR(field) offsetof (rcd_monitor_config_t, field)
#define S_NO_FOR     SIZE_MAX

static void
s_rule_service_down (rcd_alerts_t *, const s_rule_t *,
                     const rcd_monitor_view_t *, int64_t);
static void
s_rule_database_down (rcd_alerts_t *, const s_rule_t *,
                      const rcd_monitor_view_t *, int64_t);
static void
s_rule_scheduler (rcd_alerts_t *, const s_rule_t *, const rcd_monitor_view_t *,
                  int64_t);
static void
s_rule_stuck_sending (rcd_alerts_t *, const s_rule_t *,
                      const rcd_monitor_view_t *, int64_t);
static void
s_rule_instance_offline (rcd_alerts_t *, const s_rule_t *,
                         const rcd_monitor_view_t *, int64_t);
static void
s_rule_circuit_open (rcd_alerts_t *, const s_rule_t *,
                     const rcd_monitor_view_t *, int64_t);
static void
s_rule_error_rate (rcd_alerts_t *, const s_rule_t *, const rcd_monitor_view_t *,
                   int64_t);
static void
s_rule_messages_stuck (rcd_alerts_t *, const s_rule_t *,
                       const rcd_monitor_view_t *, int64_t);
static void
s_rule_backlog (rcd_alerts_t *, const s_rule_t *, const rcd_monitor_view_t *,
                int64_t);
static void
s_rule_oldest_due (rcd_alerts_t *, const s_rule_t *, const rcd_monitor_view_t *,
                   int64_t);
static void
s_rule_dead_letters (rcd_alerts_t *, const s_rule_t *,
                     const rcd_monitor_view_t *, int64_t);

static const s_rule_t s_rules[] = {
    {"service_down", "critical", S_NO_FOR, false, s_rule_service_down},
    {"database_down", "critical", S_FOR (database_down_for_ms), false,
     s_rule_database_down},
    {"scheduler_not_ticking", "critical", S_NO_FOR, false, s_rule_scheduler},
    {"stuck_sending", "critical", S_FOR (stuck_sending_for_ms), true,
     s_rule_stuck_sending},
    {"instance_offline", "critical", S_FOR (instance_offline_ms), true,
     s_rule_instance_offline},
    {"circuit_open", "warning", S_FOR (circuit_open_for_ms), true,
     s_rule_circuit_open},
    {"error_rate", "warning", S_FOR (error_rate_for_ms), false,
     s_rule_error_rate},
    {"messages_stuck", "warning", S_FOR (messages_stuck_for_ms), true,
     s_rule_messages_stuck},
    {"backlog", "warning", S_FOR (backlog_for_ms), true, s_rule_backlog},
    {"oldest_due", "warning", S_FOR (oldest_due_for_ms), true,
     s_rule_oldest_due},
    {"dead_letters_growth", "warning", S_FOR (dead_letters_for_ms), true,
     s_rule_dead_letters},
};
#define S_RULE_COUNT (sizeof s_rules / sizeof s_rules[0])

size_t
rcd_monitor_rules_count (void)
{
    return S_RULE_COUNT;
}

const char *
rcd_monitor_rule_name (size_t index)
{
    return index < S_RULE_COUNT ? s_rules[index].name : NULL;
}

const char *
rcd_monitor_rule_severity (size_t index)
{
    return index < S_RULE_COUNT ? s_rules[index].severity : NULL;
}

static int64_t
s_for_ms (const s_rule_t *rule, const rcd_monitor_view_t *view)
{
    if (rule->for_key == S_NO_FOR)
        return 0;
    return *(const int64_t *)((const char *)view->cfg + rule->for_key);
}

/*  Reports one subject's condition; labels is consumed (may be NULL). */
static void
s_observe (rcd_alerts_t *alerts, const s_rule_t *rule,
           const rcd_monitor_view_t *view, const char *key, bool active,
           json_t *labels, const char *summary, int64_t now_ms)
{
    if (!labels)
        labels = json_object ();
    if (!labels || rcd_alerts_observe (alerts, rule->name, rule->severity,
                                       s_for_ms (rule, view), key, active,
                                       labels, summary, now_ms) != 0)
        rcd_log_error ("alert: out of memory", "{s:s}", "rule", rule->name);
    json_decref (labels);
}

/*  service_down: one alert per replica that went silent. */
static void
s_rule_service_down (rcd_alerts_t *alerts, const s_rule_t *rule,
                     const rcd_monitor_view_t *view, int64_t now_ms)
{
    for (size_t i = 0; i < rcd_fleet_size (view->fleet); i++) {
        const rcd_fleet_replica_t *r = rcd_fleet_at (view->fleet, i);
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
        s_observe (alerts, rule, view, key, down,
                   json_pack ("{s:s, s:s}", "service", r->service, "replica",
                              r->replica),
                   summary, now_ms);
    }
    rcd_alerts_sweep (alerts, rule->name,
                      "replica forgotten after a long silence");
}

static void
s_rule_database_down (rcd_alerts_t *alerts, const s_rule_t *rule,
                      const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    bool down = db->polls > 0 && !db->up;
    char summary[320];
    if (down)
        snprintf (summary, sizeof summary, "database unreachable: %s",
                  db->detail);
    else
        snprintf (summary, sizeof summary, "database reachable again");
    s_observe (alerts, rule, view, "database", down, NULL, summary, now_ms);
}

static void
s_rule_scheduler (rcd_alerts_t *alerts, const s_rule_t *rule,
                  const rcd_monitor_view_t *view, int64_t now_ms)
{
    int64_t age = now_ms - view->scheduler_tick_ms;
    bool stalled = age > view->cfg->scheduler_stall_ms;
    char summary[160];
    if (stalled)
        snprintf (summary, sizeof summary,
                  "no active scheduler has ticked for %.1f s",
                  (double)age / 1000.0);
    else
        snprintf (summary, sizeof summary, "an active scheduler ticks again");
    s_observe (alerts, rule, view, "scheduler", stalled, NULL, summary, now_ms);
}

static void
s_rule_stuck_sending (rcd_alerts_t *alerts, const s_rule_t *rule,
                      const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    bool active = db->leases_stuck > 0;
    char summary[200];
    if (active)
        snprintf (summary, sizeof summary,
                  "%lld messages in sending more than %lld ms past their "
                  "lease (oldest %.0f s past)",
                  (long long)db->leases_stuck,
                  (long long)view->cfg->lease_margin_ms,
                  db->oldest_stuck_lease_s);
    else
        snprintf (summary, sizeof summary,
                  "no message is stuck in sending past its lease");
    s_observe (alerts, rule, view, "messages", active,
               json_pack ("{s:I}", "count", (json_int_t)db->leases_stuck),
               summary, now_ms);
}

/*  The labels of an instance's alerts. Caller owns the result. */
static json_t *
s_instance_labels (const rcd_monitor_instance_t *inst)
{
    char id[32], tenant[32];
    snprintf (id, sizeof id, "%lld", (long long)inst->id);
    snprintf (tenant, sizeof tenant, "%lld", (long long)inst->tenant_id);
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s}", "instance", id,
                      "tenant_id", tenant, "name", inst->name, "provider",
                      inst->provider, "health", inst->health, "circuit_state",
                      inst->circuit_state);
}

static void
s_rule_instance_offline (rcd_alerts_t *alerts, const s_rule_t *rule,
                         const rcd_monitor_view_t *view, int64_t now_ms)
{
    for (size_t i = 0; i < view->db->ninstances; i++) {
        const rcd_monitor_instance_t *inst = &view->db->instances[i];
        bool offline = rcd_monitor_instance_offline (inst);
        char key[48], summary[256];
        snprintf (key, sizeof key, "instance:%lld", (long long)inst->id);
        if (offline)
            snprintf (summary, sizeof summary,
                      "instance %s (%lld) is offline: gateway state %s",
                      inst->name, (long long)inst->id, inst->health);
        else
            snprintf (summary, sizeof summary,
                      "instance %s (%lld) is back: gateway state %s",
                      inst->name, (long long)inst->id,
                      inst->enabled ? inst->health : "disabled");
        s_observe (alerts, rule, view, key, offline, s_instance_labels (inst),
                   summary, now_ms);
    }
    rcd_alerts_sweep (alerts, rule->name, "instance deleted");
}

static void
s_rule_circuit_open (rcd_alerts_t *alerts, const s_rule_t *rule,
                     const rcd_monitor_view_t *view, int64_t now_ms)
{
    for (size_t i = 0; i < view->db->ninstances; i++) {
        const rcd_monitor_instance_t *inst = &view->db->instances[i];
        bool open =
            inst->enabled && strcmp (inst->circuit_state, "closed") != 0;
        char key[48], summary[256];
        snprintf (key, sizeof key, "instance:%lld", (long long)inst->id);
        if (open)
            snprintf (summary, sizeof summary,
                      "instance %s (%lld): circuit %s for %.0f s (%s)",
                      inst->name, (long long)inst->id, inst->circuit_state,
                      inst->circuit_open_s,
                      inst->circuit_reason[0] ? inst->circuit_reason
                                              : "no reason recorded");
        else
            snprintf (summary, sizeof summary,
                      "instance %s (%lld): circuit closed", inst->name,
                      (long long)inst->id);
        json_t *labels = s_instance_labels (inst);
        json_object_set_new (labels, "reason",
                             json_string (inst->circuit_reason));
        s_observe (alerts, rule, view, key, open, labels, summary, now_ms);
    }
    rcd_alerts_sweep (alerts, rule->name, "instance deleted");
}

static void
s_rule_error_rate (rcd_alerts_t *alerts, const s_rule_t *rule,
                   const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_config_t *cfg = view->cfg;
    double pct = view->attempts > 0 ? 100.0 * view->errors / view->attempts : 0;
    bool above = view->attempts > 0 && pct > (double)cfg->error_rate_pct;
    bool active =
        rcd_alerts_is_firing (alerts, rule->name, "sends")
            ? above
            : above && view->attempts >= (double)cfg->error_rate_min_volume;
    char summary[200];
    snprintf (summary, sizeof summary,
              "%.1f %% of %.0f send attempts failed, retried or unknown in "
              "the last %.0f s (threshold %lld %%)",
              pct, view->attempts, (double)cfg->error_rate_window_ms / 1000.0,
              (long long)cfg->error_rate_pct);
    s_observe (alerts, rule, view, "sends", active,
               json_pack ("{s:f, s:f}", "attempts", view->attempts, "errors",
                          view->errors),
               summary, now_ms);
}

static void
s_rule_messages_stuck (rcd_alerts_t *alerts, const s_rule_t *rule,
                       const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    bool active = db->stuck_pending + db->stuck_unknown > 0;
    char summary[200];
    snprintf (summary, sizeof summary,
              "%lld due pending and %lld unknown messages unchanged for "
              "more than %.0f s",
              (long long)db->stuck_pending, (long long)db->stuck_unknown,
              (double)view->cfg->stuck_ms / 1000.0);
    s_observe (alerts, rule, view, "messages", active,
               json_pack ("{s:I, s:I}", "pending",
                          (json_int_t)db->stuck_pending, "unknown",
                          (json_int_t)db->stuck_unknown),
               summary, now_ms);
}

static void
s_rule_backlog (rcd_alerts_t *alerts, const s_rule_t *rule,
                const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    int64_t max = view->cfg->backlog_max;
    bool active = max > 0 && db->due_backlog > max;
    char summary[160];
    snprintf (summary, sizeof summary,
              "%lld due messages waiting (threshold %lld)",
              (long long)db->due_backlog, (long long)max);
    s_observe (alerts, rule, view, "messages", active,
               json_pack ("{s:I}", "due", (json_int_t)db->due_backlog), summary,
               now_ms);
}

static void
s_rule_oldest_due (rcd_alerts_t *alerts, const s_rule_t *rule,
                   const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    int64_t max = view->cfg->oldest_due_max_ms;
    bool active = max > 0 && db->oldest_due_s * 1000.0 > (double)max;
    char summary[160];
    snprintf (summary, sizeof summary,
              "the oldest due message has waited %.0f s (threshold %.0f s)",
              db->oldest_due_s, (double)max / 1000.0);
    s_observe (alerts, rule, view, "messages", active, NULL, summary, now_ms);
}

static void
s_rule_dead_letters (rcd_alerts_t *alerts, const s_rule_t *rule,
                     const rcd_monitor_view_t *view, int64_t now_ms)
{
    const rcd_monitor_db_state_t *db = view->db;
    int64_t max = view->cfg->dead_letters_per_min;
    bool active = max > 0 && db->dead_letters_per_min > (double)max;
    char summary[160];
    snprintf (summary, sizeof summary,
              "%.1f dead letters a minute over the last %.0f s "
              "(threshold %lld)",
              db->dead_letters_per_min,
              (double)view->cfg->dead_letters_window_ms / 1000.0,
              (long long)max);
    s_observe (alerts, rule, view, "dead_letters", active,
               json_pack ("{s:f}", "per_minute", db->dead_letters_per_min),
               summary, now_ms);
}

void
rcd_monitor_rules_evaluate (rcd_alerts_t *alerts,
                            const rcd_monitor_view_t *view, int64_t now_ms)
{
    assert (alerts && view && view->cfg && view->db && view->fleet);
    /* before the first good poll there are no numbers to judge */
    bool db_numbers = view->db->up && view->db->polled_ms > 0;
    for (size_t i = 0; i < S_RULE_COUNT; i++)
        if (!s_rules[i].needs_db || db_numbers)
            s_rules[i].evaluate (alerts, &s_rules[i], view, now_ms);
}

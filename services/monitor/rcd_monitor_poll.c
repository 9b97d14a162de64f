/*  rcd_monitor_poll.c - the monitor's read-only PostgreSQL gauges. */
#include "rcd_monitor_poll.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rcd_monitor_statuses[RCD_MONITOR_STATUS_COUNT] = {
    "pending", "sending",   "unknown", "sent",    "delivered", "read",
    "failed",  "cancelled", "expired", "blocked", "skipped",   "paused"};
const char *const rcd_monitor_priorities[RCD_MONITOR_PRIORITY_COUNT] = {
    "high", "normal", "low"};
const char
    *const rcd_monitor_campaign_states[RCD_MONITOR_CAMPAIGN_STATE_COUNT] = {
        "draft", "scheduled", "running", "paused", "completed", "cancelled"};
const double rcd_monitor_claim_bounds[RCD_MONITOR_CLAIM_BOUNDS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};

/*  Dead-letter id samples kept for the rate (one per poll, within the
    window; the oldest go first beyond this). */
#define S_MAX_SAMPLES 4096

static const char s_sql_counts[] =
    "SELECT status, priority, count(*) FROM messages GROUP BY 1, 2";

/*  $1 lease margin ms, $2 stuck ms, $3 most rows counted. min(send_at)
    per priority walks the partial due index once each; lease_until is
    set only on 'sending' rows and has its own partial index. */
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
    " (SELECT count(*) FROM messages WHERE status = 'sending'"
    "  AND lease_until < now() - $1::bigint * interval '1 millisecond'),"
    " COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(lease_until))"
    "  FROM messages WHERE status = 'sending' AND lease_until < now())"
    "  ::float8, 0),"
    " (SELECT count(*) FROM (SELECT 1 FROM messages WHERE status = 'pending'"
    "  AND send_at <= now() LIMIT $3::int) b),"
    " (SELECT count(*) FROM (SELECT 1 FROM messages WHERE status = 'pending'"
    "  AND send_at <= now() - $2::bigint * interval '1 millisecond'"
    "  LIMIT $3::int) s),"
    " (SELECT count(*) FROM messages WHERE status = 'unknown'"
    "  AND updated_at <= now() - $2::bigint * interval '1 millisecond'),"
    " (SELECT count(*) FROM dead_letters),"
    " (SELECT COALESCE(max(id), 0) FROM dead_letters)";

/*  Usage of another hour or day reads 0, as the scheduler counts it. */
static const char s_sql_instances[] =
    "SELECT i.id, i.tenant_id, i.name, i.provider, i.enabled, i.health,"
    " i.circuit_state, COALESCE(i.circuit_reason, ''),"
    " COALESCE(EXTRACT(EPOCH FROM now() - i.circuit_opened_at)::float8, 0),"
    " GREATEST(COALESCE(EXTRACT(EPOCH FROM i.paused_until - now())"
    "  ::float8, 0), 0),"
    " CASE WHEN i.hour_start = date_trunc('hour', now(), 'UTC')"
    "  THEN i.hour_used ELSE 0 END, COALESCE(i.hourly_cap, -1),"
    " CASE WHEN i.day_start = date_trunc('day', now(), t.timezone)"
    "  THEN i.day_used ELSE 0 END, COALESCE(i.daily_cap, -1)"
    " FROM instances i JOIN tenants t ON t.id = i.tenant_id"
    " ORDER BY i.id LIMIT $1::int";

/*  Hourly counts. Billing cycles: the newest id older than an hour is
    found walking the primary key backwards through the last hour's rows
    only (ids and created_at grow together), then the rows after it are
    counted by the key. Webhook events: by their received_at index. */
static const char s_sql_hourly[] =
    "SELECT (SELECT count(*) FROM billing_cycles WHERE id > COALESCE("
    "  (SELECT max(id) FROM billing_cycles"
    "    WHERE created_at < now() - interval '1 hour'), 0)"
    "  AND created_at >= now() - interval '1 hour'),"
    " (SELECT count(*) FROM webhook_events"
    "  WHERE received_at >= now() - interval '1 hour'"
    "  AND outcome = 'unmatched')";

/*  A stored 'scheduled' whose send_at has passed is running, as the
    ingestor's GET answers it (rcd_api_campaigns.c). */
#define S_CAMPAIGN_STATE                                                       \
    "CASE WHEN c.state = 'scheduled' AND c.send_at <= now() THEN 'running'"    \
    " ELSE c.state END"

/*  Campaigns by state: one pass over the (small) campaigns table. */
static const char s_sql_campaign_states[] =
    "SELECT " S_CAMPAIGN_STATE ", count(*) FROM campaigns c GROUP BY 1";

/*  $1 rows at most. The newest open campaigns (through campaigns_open)
    and, for each, its open messages counted over its range of
    messages_campaign_open (campaign_id, status, send_at): an index-only
    scan, never the messages table. */
static const char s_sql_campaigns[] =
    "SELECT c.id, c.tenant_id, c.name, " S_CAMPAIGN_STATE ", c.messages,"
    " (SELECT count(*) FROM messages m WHERE m.campaign_id = c.id"
    "   AND m.status IN ('pending', 'paused', 'sending', 'unknown'))"
    " FROM campaigns c WHERE c.state IN ('scheduled', 'running', 'paused')"
    " ORDER BY c.created_at DESC, c.id DESC LIMIT $1::int";

static const char s_sql_history_head[] =
    "SELECT COALESCE(max(id), 0) FROM message_history";

/*  $1 last history id seen, $2 rows at most, $3 bucket bounds. An
    outcome row (sent, failed, unknown, back to pending, blocked) whose
    previous row for the message is the claim: the time between them,
    counted in the first bucket whose bound is >= it (Prometheus' le;
    the number of bounds below it is that bucket's index). The first row
    answers the highest id read (bucket -1). */
static const char s_sql_claims[] =
    "WITH o AS (SELECT id, message_id, status, at FROM message_history"
    "            WHERE id > $1::bigint ORDER BY id LIMIT $2::int),"
    " d AS (SELECT EXTRACT(EPOCH FROM o.at - p.at)::float8 AS s"
    "         FROM o CROSS JOIN LATERAL ("
    "           SELECT h.status, h.at FROM message_history h"
    "            WHERE h.message_id = o.message_id AND h.id < o.id"
    "            ORDER BY h.id DESC LIMIT 1) p"
    "        WHERE o.status IN ('sent', 'failed', 'unknown', 'pending',"
    "                           'blocked') AND p.status = 'sending')"
    " SELECT -1, COALESCE((SELECT max(id) FROM o), $1::bigint), 0::float8"
    " UNION ALL"
    " SELECT (SELECT count(*) FROM unnest($3::float8[]) b WHERE b < d.s),"
    "        count(*), sum(s) FROM d GROUP BY 1";

/*  One dead-letter id sample. */
typedef struct {
    int64_t mono_ms;
    int64_t last_id;
} s_sample_t;

struct rcd_monitor_poll {
    const rcd_monitor_config_t *cfg; /* borrowed */
    rcd_db_t *db;                    /* read-only use */
    rcd_monitor_db_state_t state;    /* last poll */
    int64_t next_hourly_ms;          /* monotonic */
    int64_t history_id;              /* last message_history id read; -1 */
    s_sample_t *samples;             /* ring of dead-letter samples */
    size_t nsamples, first;          /* in use, index of the oldest */
    char bounds[256];                /* claim bounds as a float8[] */
};

rcd_monitor_poll_t *
rcd_monitor_poll_new (const rcd_monitor_config_t *cfg)
{
    assert (cfg);
    rcd_monitor_poll_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->history_id = -1;
    snprintf (self->state.detail, sizeof self->state.detail, "not polled yet");
    size_t len = 0;
    for (size_t i = 0; i < RCD_MONITOR_CLAIM_BOUNDS; i++)
        len += (size_t)snprintf (self->bounds + len, sizeof self->bounds - len,
                                 "%s%g", i ? "," : "{",
                                 rcd_monitor_claim_bounds[i]);
    snprintf (self->bounds + len, sizeof self->bounds - len, "}");
    self->samples = calloc (S_MAX_SAMPLES, sizeof *self->samples);
    self->db = rcd_db_new (cfg->database_url);
    if (!self->samples || !self->db ||
        rcd_db_prepare (self->db, "monitor_counts", s_sql_counts) ||
        rcd_db_prepare (self->db, "monitor_scalars", s_sql_scalars) ||
        rcd_db_prepare (self->db, "monitor_instances", s_sql_instances) ||
        rcd_db_prepare (self->db, "monitor_hourly", s_sql_hourly) ||
        rcd_db_prepare (self->db, "monitor_campaign_states",
                        s_sql_campaign_states) ||
        rcd_db_prepare (self->db, "monitor_campaigns", s_sql_campaigns) ||
        rcd_db_prepare (self->db, "monitor_history_head", s_sql_history_head) ||
        rcd_db_prepare (self->db, "monitor_claims", s_sql_claims)) {
        rcd_monitor_poll_destroy (&self);
        return NULL;
    }
    return self;
}

void
rcd_monitor_poll_destroy (rcd_monitor_poll_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_monitor_poll_t *self = *self_p;
    rcd_db_destroy (&self->db);
    free (self->samples);
    free (self->state.instances);
    free (self);
    *self_p = NULL;
}

bool
rcd_monitor_instance_offline (const rcd_monitor_instance_t *inst)
{
    assert (inst);
    return inst->enabled && inst->health[0] &&
           strcmp (inst->health, "open") != 0 &&
           strcmp (inst->health, "unknown") != 0;
}

const rcd_monitor_db_state_t *
rcd_monitor_poll_state (rcd_monitor_poll_t *self)
{
    assert (self);
    return &self->state;
}

/*  Copies a text column into a fixed field ("" for NULL). */
static void
s_copy (char *field, size_t size, const rcd_db_res_t *res, int row, int col)
{
    const char *v = rcd_db_res_value (res, row, col);
    snprintf (field, size, "%s", v ? v : "");
}

static double
s_double (const rcd_db_res_t *res, int row, int col)
{
    const char *v = rcd_db_res_value (res, row, col);
    double d = v ? strtod (v, NULL) : 0;
    return d > 0 ? d : 0; /* clock skew makes tiny negatives */
}

/*  Records a dead-letter id sample and returns the rate per minute over
    the window: ids created since the oldest sample still inside it,
    scaled to the whole window (so a young monitor underestimates rather
    than fires). */
static double
s_poll_dead_letter_rate (rcd_monitor_poll_t *self, int64_t mono_ms,
                         int64_t last_id)
{
    int64_t window = self->cfg->dead_letters_window_ms;
    while (self->nsamples > 0 &&
           self->samples[self->first].mono_ms < mono_ms - window) {
        self->first = (self->first + 1) % S_MAX_SAMPLES;
        self->nsamples--;
    }
    if (self->nsamples == S_MAX_SAMPLES) {
        self->first = (self->first + 1) % S_MAX_SAMPLES;
        self->nsamples--;
    }
    size_t at = (self->first + self->nsamples) % S_MAX_SAMPLES;
    self->samples[at].mono_ms = mono_ms;
    self->samples[at].last_id = last_id;
    self->nsamples++;
    int64_t base = self->samples[self->first].last_id;
    int64_t created = last_id > base ? last_id - base : 0;
    return (double)created * 60000.0 / (double)window;
}

/*  Reads the instances into a fresh array. Returns 0 or -1. */
static int
s_poll_store_instances (rcd_monitor_poll_t *self, const rcd_db_res_t *res)
{
    int rows = rcd_db_res_rows (res);
    rcd_monitor_instance_t *list =
        calloc ((size_t)(rows > 0 ? rows : 1), sizeof *list);
    if (!list)
        return -1;
    for (int r = 0; r < rows; r++) {
        rcd_monitor_instance_t *i = &list[r];
        i->id = rcd_db_res_int64 (res, r, 0);
        i->tenant_id = rcd_db_res_int64 (res, r, 1);
        s_copy (i->name, sizeof i->name, res, r, 2);
        s_copy (i->provider, sizeof i->provider, res, r, 3);
        const char *enabled = rcd_db_res_value (res, r, 4);
        i->enabled = enabled && *enabled == 't';
        s_copy (i->health, sizeof i->health, res, r, 5);
        s_copy (i->circuit_state, sizeof i->circuit_state, res, r, 6);
        s_copy (i->circuit_reason, sizeof i->circuit_reason, res, r, 7);
        i->circuit_open_s = s_double (res, r, 8);
        i->paused_s = s_double (res, r, 9);
        i->hour_used = rcd_db_res_int64 (res, r, 10);
        i->hourly_cap = rcd_db_res_int64 (res, r, 11);
        i->day_used = rcd_db_res_int64 (res, r, 12);
        i->daily_cap = rcd_db_res_int64 (res, r, 13);
    }
    free (self->state.instances);
    self->state.instances = list;
    self->state.ninstances = (size_t)rows;
    return 0;
}

/*  Reads the campaign counts by state and the open campaigns. */
static void
s_poll_store_campaigns (rcd_monitor_poll_t *self, const rcd_db_res_t *states,
                        const rcd_db_res_t *open)
{
    rcd_monitor_db_state_t *st = &self->state;
    memset (st->campaign_states, 0, sizeof st->campaign_states);
    for (int r = 0; r < rcd_db_res_rows (states); r++) {
        const char *state = rcd_db_res_value (states, r, 0);
        for (size_t s = 0; state && s < RCD_MONITOR_CAMPAIGN_STATE_COUNT; s++)
            if (strcmp (state, rcd_monitor_campaign_states[s]) == 0)
                st->campaign_states[s] += rcd_db_res_int64 (states, r, 1);
    }
    int rows = rcd_db_res_rows (open);
    if (rows > RCD_MONITOR_MAX_CAMPAIGNS)
        rows = RCD_MONITOR_MAX_CAMPAIGNS;
    memset (st->campaigns, 0, sizeof st->campaigns);
    for (int r = 0; r < rows; r++) {
        rcd_monitor_campaign_t *c = &st->campaigns[r];
        c->id = rcd_db_res_int64 (open, r, 0);
        c->tenant_id = rcd_db_res_int64 (open, r, 1);
        s_copy (c->name, sizeof c->name, open, r, 2);
        s_copy (c->state, sizeof c->state, open, r, 3);
        c->total = rcd_db_res_int64 (open, r, 4);
        c->remaining = rcd_db_res_int64 (open, r, 5);
    }
    st->ncampaigns = (size_t)(rows > 0 ? rows : 0);
}

/*  Takes the claim-to-outcome buckets and moves the history mark. */
static void
s_poll_store_claims (rcd_monitor_poll_t *self, const rcd_db_res_t *res,
                     rcd_monitor_claims_t *claims)
{
    for (int r = 0; r < rcd_db_res_rows (res); r++) {
        int64_t bucket = rcd_db_res_int64 (res, r, 0);
        if (bucket < 0) {
            self->history_id = rcd_db_res_int64 (res, r, 1);
            continue;
        }
        if (bucket > RCD_MONITOR_CLAIM_BOUNDS)
            bucket = RCD_MONITOR_CLAIM_BOUNDS;
        claims->counts[bucket] += (double)rcd_db_res_int64 (res, r, 1);
        claims->sums[bucket] += s_double (res, r, 2);
    }
}

/*  Stores one successful poll's results. */
static void
s_poll_store (rcd_monitor_poll_t *self, int64_t mono_ms,
              const rcd_db_res_t *counts, const rcd_db_res_t *scalars)
{
    rcd_monitor_db_state_t *st = &self->state;
    memset (st->counts, 0, sizeof st->counts);
    for (int row = 0; row < rcd_db_res_rows (counts); row++) {
        const char *status = rcd_db_res_value (counts, row, 0);
        int64_t priority = rcd_db_res_int64 (counts, row, 1);
        for (size_t s = 0; status && s < RCD_MONITOR_STATUS_COUNT; s++)
            if (strcmp (status, rcd_monitor_statuses[s]) == 0 &&
                priority >= 0 && priority < RCD_MONITOR_PRIORITY_COUNT)
                st->counts[s][priority] += rcd_db_res_int64 (counts, row, 2);
    }
    st->oldest_due_s = s_double (scalars, 0, 0);
    st->leases_expired = rcd_db_res_int64 (scalars, 0, 1);
    st->leases_stuck = rcd_db_res_int64 (scalars, 0, 2);
    st->oldest_stuck_lease_s = s_double (scalars, 0, 3);
    st->due_backlog = rcd_db_res_int64 (scalars, 0, 4);
    st->stuck_pending = rcd_db_res_int64 (scalars, 0, 5);
    st->stuck_unknown = rcd_db_res_int64 (scalars, 0, 6);
    st->dead_letters = rcd_db_res_int64 (scalars, 0, 7);
    st->dead_letters_last_id = rcd_db_res_int64 (scalars, 0, 8);
    st->dead_letters_per_min =
        s_poll_dead_letter_rate (self, mono_ms, st->dead_letters_last_id);
    st->polled_ms = rcd_clock_now_ms ();
    snprintf (st->detail, sizeof st->detail, "connected");
}

int
rcd_monitor_poll_run (rcd_monitor_poll_t *self, int64_t mono_ms,
                      rcd_monitor_claims_t *claims)
{
    assert (self && claims);
    memset (claims, 0, sizeof *claims);
    rcd_monitor_db_state_t *st = &self->state;
    rcd_db_res_t *counts = NULL, *scalars = NULL, *instances = NULL;
    rcd_db_res_t *hourly = NULL, *history = NULL;
    rcd_db_res_t *campaign_states = NULL, *campaigns = NULL;
    const rcd_monitor_config_t *cfg = self->cfg;
    char timeout[32], limit[16], margin[32], stuck[32], cap[16];
    char history_id[32], batch[16], max_campaigns[16];
    /* a poll never runs longer than its own period */
    snprintf (timeout, sizeof timeout, "%lld",
              (long long)(cfg->db_poll_ms < 1000 ? 1000 : cfg->db_poll_ms));
    snprintf (limit, sizeof limit, "%d", RCD_MONITOR_MAX_INSTANCES);
    snprintf (margin, sizeof margin, "%lld", (long long)cfg->lease_margin_ms);
    snprintf (stuck, sizeof stuck, "%lld", (long long)cfg->stuck_ms);
    snprintf (cap, sizeof cap, "%d", RCD_MONITOR_BACKLOG_CAP);
    snprintf (history_id, sizeof history_id, "%lld",
              (long long)self->history_id);
    snprintf (batch, sizeof batch, "%d", RCD_MONITOR_HISTORY_BATCH);
    snprintf (max_campaigns, sizeof max_campaigns, "%d",
              RCD_MONITOR_MAX_CAMPAIGNS);
    const char *campaigns_param[] = {max_campaigns};
    const char *timeout_param[] = {timeout};
    const char *limit_param[] = {limit};
    const char *scalar_params[] = {margin, stuck, cap};
    const char *claim_params[] = {history_id, batch, self->bounds};
    bool hourly_due = mono_ms >= self->next_hourly_ms;
    bool head = self->history_id < 0;
    bool ok = rcd_db_exec (self->db,
                           "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
                           NULL, NULL) == 0 &&
              rcd_db_exec (self->db,
                           "SELECT set_config('statement_timeout', $1, true)",
                           1, timeout_param, NULL) == 0 &&
              rcd_db_run (self->db, "monitor_counts", 0, NULL, &counts) == 0 &&
              rcd_db_run (self->db, "monitor_scalars", 3, scalar_params,
                          &scalars) == 0 &&
              rcd_db_run (self->db, "monitor_instances", 1, limit_param,
                          &instances) == 0 &&
              rcd_db_run (self->db, "monitor_campaign_states", 0, NULL,
                          &campaign_states) == 0 &&
              rcd_db_run (self->db, "monitor_campaigns", 1, campaigns_param,
                          &campaigns) == 0 &&
              (!hourly_due || rcd_db_run (self->db, "monitor_hourly", 0, NULL,
                                          &hourly) == 0) &&
              (head ? rcd_db_run (self->db, "monitor_history_head", 0, NULL,
                                  &history) == 0
                    : rcd_db_run (self->db, "monitor_claims", 3, claim_params,
                                  &history) == 0) &&
              rcd_db_commit (self->db) == 0 && rcd_db_res_rows (scalars) == 1 &&
              s_poll_store_instances (self, instances) == 0;
    bool was_up = st->up;
    bool first = st->polls++ == 0;
    if (ok) {
        s_poll_store (self, mono_ms, counts, scalars);
        s_poll_store_campaigns (self, campaign_states, campaigns);
        if (hourly && rcd_db_res_rows (hourly) == 1) {
            st->cycles_last_hour = rcd_db_res_int64 (hourly, 0, 0);
            st->unmatched_last_hour = rcd_db_res_int64 (hourly, 0, 1);
            st->hourly_valid = true;
            self->next_hourly_ms = mono_ms + cfg->db_slow_poll_ms;
        }
        if (head)
            self->history_id = rcd_db_res_int64 (history, 0, 0);
        else
            s_poll_store_claims (self, history, claims);
        st->up = true;
        if (!was_up)
            rcd_log_info ("database reachable", NULL);
    }
    else {
        rcd_db_rollback (self->db);
        const char *error = rcd_db_error (self->db);
        /* one line per change of state, not one per poll */
        if (was_up || first)
            rcd_log_warn ("database poll failed", "{s:s}", "error", error);
        st->up = false;
        st->errors++;
        snprintf (st->detail, sizeof st->detail, "%s",
                  *error ? error : "poll failed");
    }
    rcd_db_res_destroy (&campaigns);
    rcd_db_res_destroy (&campaign_states);
    rcd_db_res_destroy (&history);
    rcd_db_res_destroy (&hourly);
    rcd_db_res_destroy (&instances);
    rcd_db_res_destroy (&scalars);
    rcd_db_res_destroy (&counts);
    return ok ? 0 : -1;
}

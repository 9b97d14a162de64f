/*  rcd_recovery_server.c - the recovery actor: time-driven repair.

    Contract
      out  PUSH  nudge_endpoint    proto "nudge" after rows went back to
                                   pending (expired leases, unknown
                                   outcomes retried), so they leave at once;
                                   high-water mark 100, dropped when full
                                   (the scheduler polls anyway)
      out  PUB   events_endpoint   heartbeat each second, and the events
                                   below
      out  HTTP  GET {base_url}/instance/connectionState/{name} (header
                 apikey) of every enabled Evolution instance, all of them
                 in parallel (libcurl multi), health_connect_timeout_ms /
                 health_timeout_ms each

    Tasks, each on its own period (config key; 0 turns a task off):
      lease_check_ms      'sending' rows whose lease passed go back to
                          'pending', or to 'failed' with a dead letter when
                          their attempts are used up.
      expiry_check_ms     'pending' rows past valid_until become 'expired';
                          recipient_pacing rows whose next_at is more than
                          a minute past are deleted (they pace nothing).
      unknown_check_ms    'unknown' rows not updated for
                          unknown_deadline_ms (default 15 min) are decided
                          by unknown_policy: "fail" (default: never risk a
                          duplicate) -> 'failed' + dead letter
                          'unknown_outcome_unreconciled' (gateway_answer:
                          the detail of the row's last 'unknown' history
                          entry, else last_error); "retry" -> 'pending'
                          with send_at = now() while attempts <
                          max_attempts, else failed as under "fail".
      health_check_ms     every enabled Evolution instance's health and
                          health_at: the gateway's state word ('open',
                          'connecting', 'close', 'refused'; 'unknown' when
                          the answer has none or is not a plain word),
                          'unauthorized' (401/403), 'not_found' (404),
                          'unreachable' (no answer, 5xx), 'unknown' (any
                          other status). Written in one statement per
                          round. Meta instances are not polled (Meta has
                          no connection state).
      retention_check_ms  when retention_s > 0: terminal messages (sent
                          delivered read failed cancelled expired blocked
                          skipped) not updated for retention_s are deleted
                          with their message_history, retention_batch rows
                          per transaction, then dead letters older than
                          retention_s whose message is gone. Reminders of
                          an active billing cycle are kept until the cycle
                          is complete or cancelled (its document lists
                          them); the cycle trigger fires on UPDATE OF status
                          only, and deleting terminal rows, which it no
                          longer counts, leaves open_messages right.
                          Last, gateway webhook events received more than
                          retention_s ago (they hold the contacts' texts).
      webhook_rematch_ms  webhook events stored 'unmatched' (a receipt or
                          echo that overtook the sender's record of the
                          send) are applied again, each after 1, 2, 4 ..
                          60 s, while younger than webhook_window_ms
                          (rcd_webhook_rematch, migrations/0007).
      campaign_check_ms   every campaign 'scheduled' or 'running' whose
                          messages have all left the queue (none pending,
                          paused, sending or unknown) is marked
                          'completed' by rcd_campaign_complete
                          (migrations/0010: one index probe per campaign
                          still sending, the row locked only to finish
                          it), recovery_batch campaigns per statement;
                          so a campaign completes, with its sent count
                          and first and last send kept on its row, even
                          when nobody reads it (GET does the same).
    Config keys also: database_url, nudge_endpoint, events_endpoint,
    recovery_batch (rows per repair statement), drain_timeout_ms.

    Each sweep repeats while it fills a whole batch, so a backlog after an
    outage is worked off in small transactions without holding locks long.
    Rows locked by someone else (a sender writing its outcome, a webhook)
    are skipped (SKIP LOCKED) and seen again next time. Retention runs one
    batch per turn of the loop (at most S_RETENTION_BATCHES per phase and
    round), and health answers are collected by the loop itself, which
    waits in curl_multi_poll together with the pipe: nothing blocks the
    actor longer than one statement.

    Events (rcd_events_emit: kind, count, tenant_id, value, detail)
      lease.recovered     count rows back to pending
      lease.failed        count rows failed, attempts used up
      message.expired     count rows expired
      unknown.reconciled  count = retried + failed, value = retried,
                          detail "retried=<n> failed=<n>"
      instance.health     per instance whose health changed: count 1,
                          tenant_id, detail "instance=<id> state=<s>"
      health.checked      every round: count instances polled, value how
                          many of them are not 'open'
      retention.deleted   count messages, value batches, detail
                          "messages=<n> history=<n> dead_letters=<n>
                          webhook_events=<n> batches=<n>"
      pacing.deleted      count recipient_pacing rows deleted
      webhook.rematched   count events that found their message on a
                          retry, value events tried
      campaign.completed  per campaign completed by the sweep: count 1,
                          tenant_id, value its messages sent (reached the
                          gateway), detail "campaign=<id> sent=<n>"
                          (the ingestor's campaign.completed counts those
                          it finds complete when read)
    Events are sent only when their count is above 0 (health.checked
    always).

    Shutdown: DRAIN answers DRAINED at once (every task is one statement
    at a time) and starts no more work; $TERM exits, aborting health
    requests in flight (nothing is written for them).
*/
#include "rcd_recovery_server.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_events.h"
#include "rcd_http.h"
#include "rcd_log.h"
#include "rcd_proto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Retention batches per phase (messages, dead letters, webhook events)
    and round: a backlog beyond that waits for the next round, so one
    round never keeps the database busy for long. */
#define S_RETENTION_BATCHES 100
/*  Longest health word stored. */
#define S_STATE_MAX 32
/*  A period of 0: the task never runs. */
#define S_NEVER INT64_MAX

#define S_TYPE rcd_recovery_config_t
const rcd_config_spec_t rcd_recovery_config_specs[] = {
    RCD_CONFIG_DATABASE_URL (S_TYPE, database_url),
    RCD_CONFIG_STR ("nudge_endpoint", S_TYPE, nudge_endpoint,
                    "tcp://127.0.0.1:9093", "scheduler nudge endpoint"),
    RCD_CONFIG_STR ("events_endpoint", S_TYPE, events_endpoint,
                    "tcp://127.0.0.1:9092", "monitor events endpoint"),
    RCD_CONFIG_INT ("lease_check_ms", S_TYPE, lease_check_ms, "1000", 10,
                    600000, "period of the expired-lease sweep"),
    RCD_CONFIG_INT ("expiry_check_ms", S_TYPE, expiry_check_ms, "5000", 10,
                    3600000,
                    "period of the valid_until and recipient pacing sweeps"),
    RCD_CONFIG_INT ("recovery_batch", S_TYPE, batch, "1000", 1, 100000,
                    "rows per repair statement"),
    RCD_CONFIG_INT ("drain_timeout_ms", S_TYPE, drain_timeout_ms, "2000", 0,
                    600000, "time allowed to drain on SIGTERM"),
    RCD_CONFIG_INT ("unknown_check_ms", S_TYPE, unknown_check_ms, "5000", 10,
                    3600000, "period of the unknown-outcome sweep"),
    RCD_CONFIG_INT ("unknown_deadline_ms", S_TYPE, unknown_deadline_ms,
                    "900000", 1000, 604800000,
                    "time a message may wait in 'unknown' for a receipt"),
    RCD_CONFIG_STR ("unknown_policy", S_TYPE, unknown_policy, "fail",
                    "at the deadline: fail (dead letter) or retry"),
    RCD_CONFIG_INT ("health_check_ms", S_TYPE, health_check_ms, "30000", 0,
                    86400000,
                    "period of the Evolution connectionState poll (0: off)"),
    RCD_CONFIG_INT ("health_timeout_ms", S_TYPE, health_timeout_ms, "5000", 100,
                    120000, "total time allowed to one health request"),
    RCD_CONFIG_INT ("health_connect_timeout_ms", S_TYPE,
                    health_connect_timeout_ms, "2000", 100, 120000,
                    "time allowed to connect for one health request"),
    RCD_CONFIG_INT ("retention_s", S_TYPE, retention_s, "2592000", 0, 315360000,
                    "age of terminal messages that are deleted (0: keep)"),
    RCD_CONFIG_INT ("retention_check_ms", S_TYPE, retention_check_ms, "60000",
                    10, 86400000, "period of the retention round"),
    RCD_CONFIG_INT ("retention_batch", S_TYPE, retention_batch, "1000", 1,
                    100000, "messages deleted per retention transaction"),
    RCD_CONFIG_INT ("webhook_rematch_ms", S_TYPE, webhook_rematch_ms, "1000", 0,
                    600000,
                    "period of the retry of unmatched webhook events (0: "
                    "off)"),
    RCD_CONFIG_INT ("webhook_window_ms", S_TYPE, webhook_window_ms, "600000",
                    1000, 86400000,
                    "how long an unmatched webhook event is retried"),
    RCD_CONFIG_INT ("campaign_check_ms", S_TYPE, campaign_check_ms, "5000", 0,
                    3600000,
                    "period of the campaign completion sweep (0: off)"),
    RCD_CONFIG_END};
#undef S_TYPE

bool
rcd_recovery_policy_valid (const char *policy)
{
    return policy && (streq (policy, "fail") || streq (policy, "retry"));
}

/*  Expired leases: back to pending, or failed + dead letter when the
    attempts are used up. $1 batch. Answers (recovered, failed). */
static const char *s_leases_sql =
    "WITH expired AS ("
    "  SELECT id FROM messages"
    "   WHERE status = 'sending' AND lease_until < now()"
    "   ORDER BY lease_until LIMIT $1"
    "   FOR UPDATE SKIP LOCKED"
    "), moved AS ("
    "  UPDATE messages m"
    "     SET status = CASE WHEN m.attempts >= m.max_attempts"
    "                       THEN 'failed' ELSE 'pending' END,"
    "         lease_until = NULL, updated_at = now(),"
    "         last_error = 'lease expired (sender lost)'"
    "    FROM expired WHERE m.id = expired.id"
    "  RETURNING m.id, m.tenant_id, m.status, m.attempts"
    "), dead AS ("
    "  INSERT INTO dead_letters (tenant_id, message_id, reason, attempts)"
    "  SELECT tenant_id, id, 'lease expired and attempts used up', attempts"
    "    FROM moved WHERE status = 'failed'"
    "), history AS ("
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
    "  SELECT tenant_id, id, status,"
    "         CASE status WHEN 'pending' THEN 'recovered: lease expired'"
    "              ELSE 'failed: lease expired, attempts used up' END"
    "    FROM moved"
    ")"
    "SELECT count(*) FILTER (WHERE status = 'pending'),"
    "       count(*) FILTER (WHERE status = 'failed') FROM moved";

/*  Pending messages past valid_until become expired. $1 batch. Answers
    the count. */
static const char *s_expiry_sql =
    "WITH late AS ("
    "  SELECT id FROM messages"
    "   WHERE status = 'pending' AND valid_until IS NOT NULL"
    "     AND valid_until <= now()"
    "   LIMIT $1 FOR UPDATE SKIP LOCKED"
    "), moved AS ("
    "  UPDATE messages m SET status = 'expired', updated_at = now()"
    "    FROM late WHERE m.id = late.id"
    "  RETURNING m.id, m.tenant_id"
    "), history AS ("
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
    "  SELECT tenant_id, id, 'expired', 'valid_until passed' FROM moved"
    ")"
    "SELECT count(*) FROM moved";

/*  Unknown outcomes past the deadline ($2 ms, oldest first through
    messages_unknown), decided by policy $3. The dead letter carries the
    gateway's words as the sender recorded them when the outcome became
    unknown (its history detail holds the answer, last_error only the
    reason). $1 batch. Answers (retried, failed). */
static const char *s_unknown_sql =
    "WITH due AS ("
    "  SELECT id FROM messages"
    "   WHERE status = 'unknown'"
    "     AND updated_at < now() - $2::bigint * interval '1 millisecond'"
    "   ORDER BY updated_at LIMIT $1"
    "   FOR UPDATE SKIP LOCKED"
    "), moved AS ("
    "  UPDATE messages m"
    "     SET status = CASE WHEN $3::text = 'retry'"
    "                        AND m.attempts < m.max_attempts"
    "                       THEN 'pending' ELSE 'failed' END,"
    "         send_at = CASE WHEN $3::text = 'retry'"
    "                         AND m.attempts < m.max_attempts"
    "                        THEN now() ELSE m.send_at END,"
    "         lease_until = NULL, updated_at = now()"
    "    FROM due WHERE m.id = due.id"
    "  RETURNING m.id, m.tenant_id, m.status, m.attempts, m.last_error"
    "), dead AS ("
    "  INSERT INTO dead_letters (tenant_id, message_id, reason, attempts,"
    "                            gateway_answer)"
    "  SELECT tenant_id, id, 'unknown_outcome_unreconciled', attempts,"
    "         coalesce((SELECT h.detail FROM message_history h"
    "                    WHERE h.message_id = moved.id"
    "                      AND h.status = 'unknown'"
    "                    ORDER BY h.id DESC LIMIT 1), last_error)"
    "    FROM moved WHERE status = 'failed'"
    "), history AS ("
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
    "  SELECT tenant_id, id, status,"
    "         CASE status WHEN 'pending'"
    "              THEN 'retried: outcome unknown past the deadline'"
    "              ELSE 'failed: outcome unknown past the deadline' END"
    "    FROM moved"
    ")"
    "SELECT count(*) FILTER (WHERE status = 'pending'),"
    "       count(*) FILTER (WHERE status = 'failed') FROM moved";

/*  Recipient pacing rows that pace nothing any more. The row lock keeps
    a concurrent claim's upsert of the same recipient from being lost:
    it waits, finds the row gone and inserts. $1 batch. */
static const char *s_pacing_sql =
    "WITH old AS ("
    "  SELECT tenant_id, phone FROM recipient_pacing"
    "   WHERE next_at < now() - interval '1 minute'"
    "   LIMIT $1 FOR UPDATE SKIP LOCKED"
    "), gone AS ("
    "  DELETE FROM recipient_pacing p USING old"
    "   WHERE p.tenant_id = old.tenant_id AND p.phone = old.phone"
    "  RETURNING 1"
    ")"
    "SELECT count(*) FROM gone";

/*  The instances a health round polls. */
static const char *s_health_targets_sql =
    "SELECT id, name, base_url, api_key FROM instances"
    " WHERE provider = 'evolution' AND enabled ORDER BY id";

/*  One round's health, all instances at once: $1 ids, $2 states.
    Answers each row written with its tenant and whether it changed. */
static const char *s_health_record_sql =
    "WITH u AS ("
    "  SELECT * FROM unnest($1::bigint[], $2::text[]) AS u (id, state)"
    "), old AS ("
    "  SELECT i.id, i.health FROM instances i JOIN u ON u.id = i.id"
    "   ORDER BY i.id FOR UPDATE OF i"
    ")"
    "UPDATE instances i SET health = u.state, health_at = now()"
    "  FROM u JOIN old ON old.id = u.id"
    " WHERE i.id = u.id"
    " RETURNING i.id, i.tenant_id, u.state,"
    "           old.health IS DISTINCT FROM u.state";

/*  One retention batch, one transaction: terminal messages not updated
    for $1 seconds, except reminders of a cycle still active, with their
    history. $2 batch. Answers (messages, history rows). */
static const char *s_retention_messages_sql =
    "WITH victims AS ("
    "  SELECT m.id FROM messages m"
    "   WHERE m.status IN ('sent', 'delivered', 'read', 'failed',"
    "                      'cancelled', 'expired', 'blocked', 'skipped')"
    "     AND m.updated_at < now() - $1::bigint * interval '1 second'"
    "     AND (m.billing_cycle_id IS NULL OR NOT EXISTS ("
    "            SELECT 1 FROM billing_cycles c"
    "             WHERE c.id = m.billing_cycle_id AND c.status = 'active'))"
    "   LIMIT $2 FOR UPDATE OF m SKIP LOCKED"
    "), history AS ("
    "  DELETE FROM message_history h USING victims v"
    "   WHERE h.message_id = v.id RETURNING 1"
    "), gone AS ("
    "  DELETE FROM messages m USING victims v WHERE m.id = v.id RETURNING 1"
    ")"
    "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM history)";

/*  Dead letters are the audit trail of failures: kept while their
    message exists, deleted once older than $1 seconds and the message is
    gone. $2 batch. Answers the count. */
static const char *s_retention_dead_sql =
    "WITH old AS ("
    "  SELECT d.id FROM dead_letters d"
    "   WHERE d.created_at < now() - $1::bigint * interval '1 second'"
    "     AND NOT EXISTS (SELECT 1 FROM messages m"
    "                      WHERE m.id = d.message_id)"
    "   LIMIT $2 FOR UPDATE SKIP LOCKED"
    "), gone AS ("
    "  DELETE FROM dead_letters d USING old WHERE d.id = old.id RETURNING 1"
    ")"
    "SELECT count(*) FROM gone";

/*  Webhook events received more than $1 seconds ago. $2 batch. Answers
    the count. */
static const char *s_retention_webhooks_sql =
    "WITH old AS ("
    "  SELECT id FROM webhook_events"
    "   WHERE received_at < now() - $1::bigint * interval '1 second'"
    "   ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    "), gone AS ("
    "  DELETE FROM webhook_events w USING old WHERE w.id = old.id RETURNING 1"
    ")"
    "SELECT count(*) FROM gone";

/*  Unmatched webhook events due for another try: $1 window ms, $2 batch.
    Answers (tried, matched). */
static const char *s_rematch_sql =
    "SELECT tried, matched FROM rcd_webhook_rematch($1::bigint, $2::integer)";

/*  Campaigns scheduled or running with no open message left are marked
    completed (rcd_campaign_complete, migrations/0010; it probes first
    without a lock, so one still sending costs a read). $1 batch. The
    function's update is not visible to this statement: the completed
    campaigns' counts are read by s_campaign_done_sql. Answers their ids
    and tenants. */
static const char *s_campaign_complete_sql =
    "WITH done AS ("
    "  SELECT c.id, c.tenant_id FROM campaigns c"
    "   WHERE c.state IN ('scheduled', 'running') AND c.messages > 0"
    "     AND rcd_campaign_complete(c.id)"
    "   LIMIT $1"
    ")"
    "SELECT id, tenant_id FROM done ORDER BY id";

/*  What a campaign completed by the sweep sent. $1 its id. */
static const char *s_campaign_done_sql =
    "SELECT coalesce(sent_messages, 0) FROM campaigns WHERE id = $1::bigint";

/*  One instance being polled. */
typedef struct {
    int64_t id;
    char state[S_STATE_MAX + 1]; /* the health to record */
} s_probe_t;

/*  A health round: probes in flight until pending drops to 0. */
typedef struct {
    s_probe_t *probes; /* NULL: no round under way */
    size_t count;
    size_t pending; /* requests not yet answered */
} s_health_t;

/*  A retention round, one batch per turn of the loop. */
typedef enum {
    S_PHASE_MESSAGES,
    S_PHASE_DEAD_LETTERS,
    S_PHASE_WEBHOOKS,
    S_PHASES
} s_phase_t;

typedef struct {
    bool active;
    s_phase_t phase;
    int phase_batches;
    int64_t batches, messages, history, dead_letters, webhooks;
} s_retention_t;

typedef struct {
    zsock_t *pipe;        /* actor pipe */
    zsock_t *nudge;       /* PUSH to the scheduler */
    rcd_events_t *events; /* PUB to the monitor */
    rcd_db_t *db;
    rcd_http_t *http; /* health requests; also the loop's wait */
    const rcd_recovery_config_t *cfg;
    const char *policy; /* unknown_policy, validated */
    int64_t batch;      /* recovery_batch, at least 1 */
    int64_t retention_batch;
    bool terminated; /* $TERM received */
    bool draining;   /* DRAIN received */
    int64_t next_heartbeat_ms, next_lease_ms, next_expiry_ms, next_unknown_ms,
        next_health_ms, next_retention_ms, next_rematch_ms, next_campaign_ms;
    s_health_t health;
    s_retention_t retention;
} self_t;

static void
s_self_destroy (self_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    self_t *self = *self_p;
    rcd_http_destroy (&self->http);
    free (self->health.probes);
    rcd_db_destroy (&self->db);
    rcd_events_destroy (&self->events);
    zsock_destroy (&self->nudge);
    free (self);
    *self_p = NULL;
}

/*  First run of a task: now, or never when its period is 0. */
static int64_t
s_first_run (int64_t period_ms, int64_t now)
{
    return period_ms > 0 ? now : S_NEVER;
}

static self_t *
s_self_new (zsock_t *pipe, const rcd_recovery_config_t *cfg)
{
    const char *policy = cfg->unknown_policy ? cfg->unknown_policy : "fail";
    if (!rcd_recovery_policy_valid (policy)) {
        rcd_log_error ("bad unknown_policy, want fail or retry", "{s:s}",
                       "unknown_policy", policy);
        return NULL;
    }
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->cfg = cfg;
    self->policy = policy;
    self->batch = cfg->batch > 0 ? cfg->batch : 1000;
    self->retention_batch =
        cfg->retention_batch > 0 ? cfg->retention_batch : 1000;
    int64_t now = rcd_clock_mono_ms ();
    self->next_lease_ms = s_first_run (cfg->lease_check_ms, now);
    self->next_expiry_ms = s_first_run (cfg->expiry_check_ms, now);
    self->next_unknown_ms = s_first_run (cfg->unknown_check_ms, now);
    self->next_health_ms = s_first_run (cfg->health_check_ms, now);
    self->next_rematch_ms = s_first_run (cfg->webhook_rematch_ms, now);
    self->next_campaign_ms = s_first_run (cfg->campaign_check_ms, now);
    self->next_retention_ms = cfg->retention_s > 0
                                  ? s_first_run (cfg->retention_check_ms, now)
                                  : S_NEVER;
    self->nudge = zsock_new (ZMQ_PUSH);
    if (!self->nudge)
        goto fail;
    zsock_set_sndhwm (self->nudge, 100);
    zsock_set_sndtimeo (self->nudge, 0);
    zsock_set_linger (self->nudge, 0);
    if (zsock_connect (self->nudge, "%s", cfg->nudge_endpoint) < 0) {
        rcd_log_error ("bad nudge endpoint", "{s:s}", "endpoint",
                       cfg->nudge_endpoint);
        goto fail;
    }
    self->events = rcd_events_new (cfg->events_endpoint, "recovery", NULL);
    self->db = rcd_db_new (cfg->database_url);
    self->http = rcd_http_new (64);
    if (!self->events || !self->db || !self->http)
        goto fail;
    /* JIT is off in every rcd_db session: the retention batch's generic
       plan is costed as a scan of the whole table and spent ~30 ms
       compiling per batch that runs in a few. */
    if (rcd_db_prepare (self->db, "leases", s_leases_sql) != 0 ||
        rcd_db_prepare (self->db, "expiry", s_expiry_sql) != 0 ||
        rcd_db_prepare (self->db, "unknown", s_unknown_sql) != 0 ||
        rcd_db_prepare (self->db, "pacing", s_pacing_sql) != 0 ||
        rcd_db_prepare (self->db, "health_targets", s_health_targets_sql) !=
            0 ||
        rcd_db_prepare (self->db, "health_record", s_health_record_sql) != 0 ||
        rcd_db_prepare (self->db, "retention_messages",
                        s_retention_messages_sql) != 0 ||
        rcd_db_prepare (self->db, "retention_dead", s_retention_dead_sql) !=
            0 ||
        rcd_db_prepare (self->db, "retention_webhooks",
                        s_retention_webhooks_sql) != 0 ||
        rcd_db_prepare (self->db, "rematch", s_rematch_sql) != 0 ||
        rcd_db_prepare (self->db, "campaign_complete",
                        s_campaign_complete_sql) != 0 ||
        rcd_db_prepare (self->db, "campaign_done", s_campaign_done_sql) != 0)
        goto fail;
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

/*  Runs one repair statement repeatedly while it fills whole batches.
    params[0] is the batch size ($1); cols is how many count columns it
    answers; totals receives sums. */
static int
s_self_sweep (self_t *self, const char *stmt, int nparams,
              const char *const *params, int cols, int64_t *totals)
{
    for (int round = 0; round < 100; round++) {
        rcd_db_res_t *res = NULL;
        if (rcd_db_run (self->db, stmt, nparams, params, &res) != 0) {
            rcd_log_warn ("sweep failed", "{s:s, s:s}", "sweep", stmt, "error",
                          rcd_db_error (self->db));
            return -1;
        }
        int64_t moved = 0;
        for (int c = 0; c < cols; c++) {
            int64_t n = rcd_db_res_int64 (res, 0, c);
            totals[c] += n;
            moved += n;
        }
        rcd_db_res_destroy (&res);
        if (moved < self->batch)
            break;
    }
    return 0;
}

/*  Tells the scheduler that count rows are pending again. */
static void
s_self_nudge (self_t *self, int64_t count)
{
    uint32_t n = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    rcd_nudge_t nudge = {.tenant_id = 0, .count = n};
    rcd_nudge_send (&nudge, self->nudge); /* dropped if none listens */
}

static void
s_self_recover_leases (self_t *self)
{
    char batch[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    const char *params[] = {batch};
    int64_t counts[2] = {0, 0};
    if (s_self_sweep (self, "leases", 1, params, 2, counts) != 0)
        return;
    if (counts[0] > 0) {
        rcd_log_info ("leases recovered", "{s:I}", "count",
                      (json_int_t)counts[0]);
        rcd_events_emit (self->events, "lease.recovered", (uint64_t)counts[0],
                         0, 0, NULL);
        s_self_nudge (self, counts[0]);
    }
    if (counts[1] > 0) {
        rcd_log_warn ("leases expired with attempts used up", "{s:I}", "count",
                      (json_int_t)counts[1]);
        rcd_events_emit (self->events, "lease.failed", (uint64_t)counts[1], 0,
                         0, NULL);
    }
}

static void
s_self_expire_messages (self_t *self)
{
    char batch[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    const char *params[] = {batch};
    int64_t count = 0;
    if (s_self_sweep (self, "expiry", 1, params, 1, &count) != 0 || count == 0)
        return;
    rcd_log_info ("messages expired", "{s:I}", "count", (json_int_t)count);
    rcd_events_emit (self->events, "message.expired", (uint64_t)count, 0, 0,
                     NULL);
}

static void
s_self_clean_pacing (self_t *self)
{
    char batch[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    const char *params[] = {batch};
    int64_t count = 0;
    if (s_self_sweep (self, "pacing", 1, params, 1, &count) != 0 || count == 0)
        return;
    rcd_log_debug ("recipient pacing rows deleted", "{s:I}", "count",
                   (json_int_t)count);
    rcd_events_emit (self->events, "pacing.deleted", (uint64_t)count, 0, 0,
                     NULL);
}

static void
s_self_reconcile_unknown (self_t *self)
{
    char batch[24], deadline[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    snprintf (deadline, sizeof deadline, "%lld",
              (long long)(self->cfg->unknown_deadline_ms > 0
                              ? self->cfg->unknown_deadline_ms
                              : 900000));
    const char *params[] = {batch, deadline, self->policy};
    int64_t counts[2] = {0, 0}; /* retried, failed */
    if (s_self_sweep (self, "unknown", 3, params, 2, counts) != 0 ||
        counts[0] + counts[1] == 0)
        return;
    rcd_log_warn ("unknown outcomes reconciled by policy", "{s:s, s:I, s:I}",
                  "policy", self->policy, "retried", (json_int_t)counts[0],
                  "failed", (json_int_t)counts[1]);
    char detail[64];
    snprintf (detail, sizeof detail, "retried=%lld failed=%lld",
              (long long)counts[0], (long long)counts[1]);
    rcd_events_emit (self->events, "unknown.reconciled",
                     (uint64_t)(counts[0] + counts[1]), 0, counts[0], detail);
    if (counts[0] > 0)
        s_self_nudge (self, counts[0]);
}

/*  Applies again the unmatched webhook events whose retry time came. */
static void
s_self_rematch_webhooks (self_t *self)
{
    char window[24], batch[24];
    snprintf (window, sizeof window, "%lld",
              (long long)self->cfg->webhook_window_ms);
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    const char *params[] = {window, batch};
    int64_t counts[2] = {0, 0}; /* tried, matched */
    if (s_self_sweep (self, "rematch", 2, params, 2, counts) != 0 ||
        counts[0] == 0)
        return;
    rcd_log_debug ("unmatched webhook events tried again", "{s:I, s:I}",
                   "tried", (json_int_t)counts[0], "matched",
                   (json_int_t)counts[1]);
    if (counts[1] > 0)
        rcd_events_emit (self->events, "webhook.rematched", (uint64_t)counts[1],
                         0, counts[0], NULL);
}

/*  Marks completed the campaigns with nothing left to send, a batch per
    statement while batches come back full, and publishes each. */
static void
s_self_complete_campaigns (self_t *self)
{
    char batch[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->batch);
    const char *params[] = {batch};
    for (int round = 0; round < 100; round++) {
        rcd_db_res_t *res = NULL;
        if (rcd_db_run (self->db, "campaign_complete", 1, params, &res) != 0) {
            rcd_log_warn ("sweep failed", "{s:s, s:s}", "sweep",
                          "campaign_complete", "error",
                          rcd_db_error (self->db));
            return;
        }
        int rows = rcd_db_res_rows (res);
        for (int r = 0; r < rows; r++) {
            int64_t id = rcd_db_res_int64 (res, r, 0);
            int64_t tenant = rcd_db_res_int64 (res, r, 1);
            char idtext[24];
            snprintf (idtext, sizeof idtext, "%lld", (long long)id);
            const char *p[] = {idtext};
            rcd_db_res_t *done = NULL;
            int64_t sent = 0;
            if (rcd_db_run (self->db, "campaign_done", 1, p, &done) == 0 &&
                rcd_db_res_rows (done) == 1)
                sent = rcd_db_res_int64 (done, 0, 0);
            rcd_db_res_destroy (&done);
            rcd_log_info ("campaign.completed", "{s:I, s:I, s:I}", "tenant_id",
                          (json_int_t)tenant, "campaign_id", (json_int_t)id,
                          "sent", (json_int_t)sent);
            char detail[64];
            snprintf (detail, sizeof detail, "campaign=%lld sent=%lld",
                      (long long)id, (long long)sent);
            rcd_events_emit (self->events, "campaign.completed", 1,
                             (uint64_t)tenant, sent, detail);
        }
        rcd_db_res_destroy (&res);
        if (rows < self->batch)
            break;
    }
}

/*  --------------------------------------------------------------------
    Gateway health */

/*  Copies the connection state of a 2xx answer into out: instance.state
    (v2), else a top-level state, when it is a plain word; else
    "unknown". */
static void
s_parse_state (const char *body, char *out, size_t size)
{
    snprintf (out, size, "unknown");
    json_t *doc = json_loads (body, 0, NULL);
    if (!doc)
        return;
    json_t *state =
        json_object_get (json_object_get (doc, "instance"), "state");
    if (!json_is_string (state))
        state = json_object_get (doc, "state");
    const char *word = json_is_string (state) ? json_string_value (state) : "";
    size_t len = strlen (word);
    bool plain = len > 0 && len <= S_STATE_MAX;
    for (size_t i = 0; plain && i < len; i++)
        plain = (word[i] >= 'a' && word[i] <= 'z') ||
                (word[i] >= 'A' && word[i] <= 'Z') ||
                (word[i] >= '0' && word[i] <= '9') || word[i] == '_' ||
                word[i] == '-';
    if (plain)
        snprintf (out, size, "%s", word);
    json_decref (doc);
}

/*  What a connectionState answer says about the instance. */
static void
s_classify (const rcd_http_result_t *res, char *out, size_t size)
{
    if (res->error != RCD_HTTP_ERR_NONE || res->status >= 500)
        snprintf (out, size, "unreachable");
    else if (res->status == 401 || res->status == 403)
        snprintf (out, size, "unauthorized");
    else if (res->status == 404)
        snprintf (out, size, "not_found");
    else if (res->status >= 200 && res->status < 300)
        s_parse_state (res->body, out, size);
    else
        snprintf (out, size, "unknown");
}

/*  Queues one instance's connectionState request. Returns 0, or -1 when
    it could not be queued. */
static int
s_self_queue_probe (self_t *self, s_probe_t *probe, const char *name,
                    const char *base_url, const char *api_key)
{
    int rc = -1;
    char *segment = rcd_http_escape (name);
    char *url = NULL;
    char *header = NULL;
    if (!segment)
        goto cleanup;
    size_t base_len = strlen (base_url);
    while (base_len > 0 && base_url[base_len - 1] == '/')
        base_len--;
    url = zsys_sprintf ("%.*s/instance/connectionState/%s", (int)base_len,
                        base_url, segment);
    if (!url)
        goto cleanup;
    /* A key that would break the header line is not sent: the gateway
       then answers 401 and the instance reads 'unauthorized'. */
    if (api_key && *api_key && !strpbrk (api_key, "\r\n")) {
        header = zsys_sprintf ("apikey: %s", api_key);
        if (!header)
            goto cleanup;
    }
    const char *headers[] = {header, NULL};
    long total = self->cfg->health_timeout_ms > 0
                     ? (long)self->cfg->health_timeout_ms
                     : 5000L;
    long connect = self->cfg->health_connect_timeout_ms > 0
                       ? (long)self->cfg->health_connect_timeout_ms
                       : 2000L;
    if (connect > total)
        connect = total;
    rc = rcd_http_get (self->http, url, header ? headers : NULL, connect, total,
                       probe);
cleanup:
    free (segment);
    zstr_free (&url);
    zstr_free (&header);
    return rc;
}

/*  Writes a finished round in one statement and reports what changed. */
static void
s_self_finish_health (self_t *self)
{
    s_health_t *health = &self->health;
    int64_t *ids = calloc (health->count ? health->count : 1, sizeof *ids);
    char *states = NULL, *id_list = NULL;
    size_t len = 0, cap = 0;
    size_t not_open = 0;
    rcd_db_res_t *res = NULL;
    if (!ids)
        goto cleanup;
    if (health->count == 0)
        goto report;
    for (size_t i = 0; i < health->count; i++) {
        ids[i] = health->probes[i].id;
        if (!streq (health->probes[i].state, "open"))
            not_open++;
        if (rcd_db_text_array_append (&states, &len, &cap,
                                      health->probes[i].state) != 0)
            goto cleanup;
    }
    id_list = rcd_db_int64_array (ids, health->count);
    if (!id_list)
        goto cleanup;
    const char *params[] = {id_list, states};
    if (rcd_db_run (self->db, "health_record", 2, params, &res) != 0) {
        rcd_log_warn ("recording instance health failed", "{s:s}", "error",
                      rcd_db_error (self->db));
        goto cleanup;
    }
    for (int row = 0; row < rcd_db_res_rows (res); row++) {
        const char *changed = rcd_db_res_value (res, row, 3);
        if (!changed || *changed != 't')
            continue;
        int64_t id = rcd_db_res_int64 (res, row, 0);
        int64_t tenant = rcd_db_res_int64 (res, row, 1);
        const char *state = rcd_db_res_value (res, row, 2);
        char detail[96];
        snprintf (detail, sizeof detail, "instance=%lld state=%s",
                  (long long)id, state ? state : "");
        rcd_log_info ("instance health changed", "{s:I, s:I, s:s}", "instance",
                      (json_int_t)id, "tenant", (json_int_t)tenant, "state",
                      state ? state : "");
        rcd_events_emit (self->events, "instance.health", 1, (uint64_t)tenant,
                         0, detail);
    }
report:
    rcd_events_emit (self->events, "health.checked", (uint64_t)health->count, 0,
                     (int64_t)not_open, NULL);
cleanup:
    rcd_db_res_destroy (&res);
    free (id_list);
    free (states);
    free (ids);
    free (health->probes);
    *health = (s_health_t){0};
}

/*  Starts a round: every enabled Evolution instance at once. */
static void
s_self_start_health (self_t *self)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (self->db, "health_targets", 0, NULL, &res) != 0) {
        rcd_log_warn ("reading instances for health failed", "{s:s}", "error",
                      rcd_db_error (self->db));
        return;
    }
    size_t count = (size_t)rcd_db_res_rows (res);
    s_probe_t *probes = calloc (count ? count : 1, sizeof *probes);
    if (!probes) {
        rcd_db_res_destroy (&res);
        return;
    }
    self->health = (s_health_t){.probes = probes, .count = count};
    for (size_t i = 0; i < count; i++) {
        s_probe_t *probe = &probes[i];
        probe->id = rcd_db_res_int64 (res, (int)i, 0);
        const char *name = rcd_db_res_value (res, (int)i, 1);
        const char *base = rcd_db_res_value (res, (int)i, 2);
        const char *key = rcd_db_res_value (res, (int)i, 3);
        if (s_self_queue_probe (self, probe, name ? name : "", base ? base : "",
                                key) == 0)
            self->health.pending++;
        else
            snprintf (probe->state, sizeof probe->state, "unreachable");
    }
    rcd_db_res_destroy (&res);
    if (self->health.pending == 0)
        s_self_finish_health (self);
}

/*  Takes the answers that came in; writes the round once all are in. */
static void
s_self_handle_http (self_t *self)
{
    rcd_http_result_t res;
    while (rcd_http_next (self->http, &res)) {
        s_probe_t *probe = res.user;
        s_classify (&res, probe->state, sizeof probe->state);
        if (res.error != RCD_HTTP_ERR_NONE || res.status >= 500)
            rcd_log_debug ("instance unreachable", "{s:I, s:i, s:s}",
                           "instance", (json_int_t)probe->id, "status",
                           (int)res.status, "error",
                           rcd_http_error_name (res.error));
        if (self->health.pending > 0)
            self->health.pending--;
    }
    if (self->health.probes && self->health.pending == 0)
        s_self_finish_health (self);
}

/*  --------------------------------------------------------------------
    Retention */

static void
s_self_finish_retention (self_t *self)
{
    s_retention_t *r = &self->retention;
    if (r->messages + r->dead_letters + r->webhooks > 0) {
        char detail[160];
        snprintf (detail, sizeof detail,
                  "messages=%lld history=%lld dead_letters=%lld "
                  "webhook_events=%lld batches=%lld",
                  (long long)r->messages, (long long)r->history,
                  (long long)r->dead_letters, (long long)r->webhooks,
                  (long long)r->batches);
        rcd_log_info ("retention deleted old rows", "{s:I, s:I, s:I, s:I, s:I}",
                      "messages", (json_int_t)r->messages, "history",
                      (json_int_t)r->history, "dead_letters",
                      (json_int_t)r->dead_letters, "webhook_events",
                      (json_int_t)r->webhooks, "batches",
                      (json_int_t)r->batches);
        rcd_events_emit (self->events, "retention.deleted",
                         (uint64_t)r->messages, 0, r->batches, detail);
    }
    *r = (s_retention_t){0};
}

/*  One batch of the round under way: a transaction of its own. */
static void
s_self_retention_step (self_t *self)
{
    s_retention_t *r = &self->retention;
    char age[24], batch[24];
    snprintf (age, sizeof age, "%lld", (long long)self->cfg->retention_s);
    snprintf (batch, sizeof batch, "%lld", (long long)self->retention_batch);
    const char *params[] = {age, batch};
    rcd_db_res_t *res = NULL;
    static const char *const stmts[S_PHASES] = {
        "retention_messages", "retention_dead", "retention_webhooks"};
    const char *stmt = stmts[r->phase];
    if (rcd_db_run (self->db, stmt, 2, params, &res) != 0) {
        rcd_log_warn ("retention failed", "{s:s, s:s}", "step", stmt, "error",
                      rcd_db_error (self->db));
        s_self_finish_retention (self); /* the next round tries again */
        return;
    }
    int64_t deleted = rcd_db_res_int64 (res, 0, 0);
    if (r->phase == S_PHASE_MESSAGES) {
        r->messages += deleted;
        r->history += rcd_db_res_int64 (res, 0, 1);
    }
    else if (r->phase == S_PHASE_DEAD_LETTERS)
        r->dead_letters += deleted;
    else
        r->webhooks += deleted;
    rcd_db_res_destroy (&res);
    r->batches++;
    r->phase_batches++;
    if (deleted < self->retention_batch ||
        r->phase_batches >= S_RETENTION_BATCHES) {
        if (r->phase + 1 == S_PHASES)
            s_self_finish_retention (self);
        else {
            r->phase++;
            r->phase_batches = 0;
        }
    }
}

/*  --------------------------------------------------------------------
    The loop */

/*  Next run of a task that just ran. */
static int64_t
s_next_run (int64_t period_ms, int64_t now)
{
    return period_ms > 0 ? now + period_ms : S_NEVER;
}

/*  Periodic work with per-task periods. */
static void
s_self_handle_tick (self_t *self)
{
    const rcd_recovery_config_t *cfg = self->cfg;
    int64_t now = rcd_clock_mono_ms ();
    if (now >= self->next_heartbeat_ms) {
        rcd_events_heartbeat (self->events,
                              self->draining ? "draining" : "active");
        self->next_heartbeat_ms = now + 1000;
    }
    if (self->draining)
        return;
    if (now >= self->next_lease_ms) {
        s_self_recover_leases (self);
        self->next_lease_ms = s_next_run (cfg->lease_check_ms, now);
    }
    if (now >= self->next_expiry_ms) {
        s_self_expire_messages (self);
        s_self_clean_pacing (self);
        self->next_expiry_ms = s_next_run (cfg->expiry_check_ms, now);
    }
    if (now >= self->next_unknown_ms) {
        s_self_reconcile_unknown (self);
        self->next_unknown_ms = s_next_run (cfg->unknown_check_ms, now);
    }
    if (now >= self->next_rematch_ms) {
        s_self_rematch_webhooks (self);
        self->next_rematch_ms = s_next_run (cfg->webhook_rematch_ms, now);
    }
    if (now >= self->next_campaign_ms) {
        s_self_complete_campaigns (self);
        self->next_campaign_ms = s_next_run (cfg->campaign_check_ms, now);
    }
    if (now >= self->next_health_ms && !self->health.probes) {
        s_self_start_health (self);
        self->next_health_ms = s_next_run (cfg->health_check_ms, now);
    }
    if (now >= self->next_retention_ms && !self->retention.active) {
        self->retention = (s_retention_t){.active = true};
        self->next_retention_ms = s_next_run (cfg->retention_check_ms, now);
    }
    if (self->retention.active)
        s_self_retention_step (self);
}

/*  How long the loop may sleep: until the next task is due (a round
    under way goes on at once). */
static int
s_self_wait_ms (self_t *self)
{
    if (self->retention.active && !self->draining)
        return 0;
    int64_t next = self->next_heartbeat_ms;
    if (!self->draining) {
        int64_t due[] = {self->next_lease_ms,
                         self->next_expiry_ms,
                         self->next_unknown_ms,
                         self->next_retention_ms,
                         self->next_rematch_ms,
                         self->next_campaign_ms,
                         self->health.probes ? S_NEVER : self->next_health_ms};
        for (size_t i = 0; i < sizeof due / sizeof due[0]; i++)
            if (due[i] < next)
                next = due[i];
    }
    int64_t wait = next - rcd_clock_mono_ms ();
    return wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
}

static void
s_self_handle_pipe (self_t *self)
{
    char *cmd = zstr_recv (self->pipe);
    if (!cmd || streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "DRAIN")) {
        self->draining = true;
        if (self->retention.active)
            s_self_finish_retention (self);
        zstr_send (self->pipe, "DRAINED");
    }
    zstr_free (&cmd);
}

void
rcd_recovery_server (zsock_t *pipe, void *args)
{
    const rcd_recovery_config_t *cfg = args;
    self_t *self = s_self_new (pipe, cfg);
    zsock_signal (pipe, 0);
    if (!self) {
        zsock_send (pipe, "ss", "FATAL", "recovery failed to start");
        return;
    }
    rcd_log_info ("recovery started", "{s:s, s:I, s:I, s:I}", "unknown_policy",
                  self->policy, "health_check_ms",
                  (json_int_t)cfg->health_check_ms, "retention_s",
                  (json_int_t)cfg->retention_s, "batch",
                  (json_int_t)self->batch);
    int pipe_fd = zsock_fd (pipe);
    while (!self->terminated) {
        while (!self->terminated && (zsock_events (pipe) & ZMQ_POLLIN))
            s_self_handle_pipe (self);
        if (self->terminated)
            break;
        s_self_handle_http (self);
        s_self_handle_tick (self);
        /* ZMQ_FD is edge-triggered: sleep only when the pipe holds
           nothing (zsock_events also re-arms it). The wait covers the
           health requests in flight as well. */
        int wait = s_self_wait_ms (self);
        if (zsock_events (pipe) & ZMQ_POLLIN)
            wait = 0;
        if (rcd_http_perform_fds (self->http, &pipe_fd, 1, wait) < 0) {
            rcd_log_error ("http multi failure", NULL);
            zclock_sleep (wait < 100 ? wait : 100); /* no busy loop */
        }
    }
    rcd_log_info ("recovery stopped", NULL);
    s_self_destroy (&self);
}

/*  rcd_recovery_server.c - the recovery actor.

    Contract
      out  PUSH  nudge_endpoint    proto "nudge" after rows went back to
                                   pending, so they leave at once
      out  PUB   events_endpoint   heartbeat; events "lease.recovered",
                                   "lease.failed" (attempts used up),
                                   "message.expired" with counts
      db   every lease_check_ms: messages in 'sending' whose lease passed go
           back to 'pending' (or to 'failed' with a dead letter when their
           attempts are used up), with history, in one statement per batch;
           every expiry_check_ms: pending messages past valid_until become
           'expired'.
    Each sweep repeats while it fills a whole batch, so a backlog after an
    outage is worked off in small transactions without holding locks long.
    Rows locked by a sender writing its outcome are skipped (SKIP LOCKED)
    and seen again next sweep.

    Shutdown: DRAIN answers DRAINED at once (a sweep is one statement);
    $TERM exits.
*/
#include "rcd_recovery_server.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_events.h"
#include "rcd_log.h"
#include "rcd_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                    3600000, "period of the valid_until sweep"),
    RCD_CONFIG_INT ("recovery_batch", S_TYPE, batch, "1000", 1, 100000,
                    "rows per repair statement"),
    RCD_CONFIG_INT ("drain_timeout_ms", S_TYPE, drain_timeout_ms, "2000", 0,
                    600000, "time allowed to drain on SIGTERM"),
    RCD_CONFIG_END};
#undef S_TYPE

/*  Expired leases: back to pending, or failed + dead letter when the
    attempts are used up. Answers (recovered, failed). */
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

/*  Pending messages past valid_until become expired. Answers the count. */
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

typedef struct {
    zsock_t *pipe;  /* actor pipe */
    zsock_t *nudge; /* PUSH to the scheduler */
    zpoller_t *poller;
    rcd_events_t *events; /* PUB to the monitor */
    rcd_db_t *db;
    const rcd_recovery_config_t *cfg;
    bool terminated; /* $TERM received */
    bool draining;   /* DRAIN received */
    int64_t next_heartbeat_ms, next_lease_ms, next_expiry_ms;
} self_t;

static void
s_self_destroy (self_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    self_t *self = *self_p;
    rcd_db_destroy (&self->db);
    rcd_events_destroy (&self->events);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->nudge);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const rcd_recovery_config_t *cfg)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->cfg = cfg;
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
    self->poller = zpoller_new (pipe, NULL);
    if (!self->events || !self->db || !self->poller)
        goto fail;
    if (rcd_db_prepare (self->db, "leases", s_leases_sql) != 0 ||
        rcd_db_prepare (self->db, "expiry", s_expiry_sql) != 0)
        goto fail;
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

/*  Runs one repair statement repeatedly while it fills whole batches.
    cols is how many count columns it answers; totals receives sums. */
static int
s_self_sweep (self_t *self, const char *stmt, int cols, int64_t *totals)
{
    char batch[24];
    snprintf (batch, sizeof batch, "%lld", (long long)self->cfg->batch);
    const char *params[] = {batch};
    for (int round = 0; round < 100; round++) {
        rcd_db_res_t *res = NULL;
        if (rcd_db_run (self->db, stmt, 1, params, &res) != 0) {
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
        if (moved < self->cfg->batch)
            break;
    }
    return 0;
}

static void
s_self_recover_leases (self_t *self)
{
    int64_t counts[2] = {0, 0};
    if (s_self_sweep (self, "leases", 2, counts) != 0)
        return;
    if (counts[0] > 0) {
        rcd_log_info ("leases recovered", "{s:I}", "count",
                      (json_int_t)counts[0]);
        rcd_events_emit (self->events, "lease.recovered", (uint64_t)counts[0],
                         0, 0, NULL);
        rcd_nudge_t nudge = {.tenant_id = 0, .count = (uint32_t)counts[0]};
        rcd_nudge_send (&nudge, self->nudge); /* dropped if none listens */
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
    int64_t count = 0;
    if (s_self_sweep (self, "expiry", 1, &count) != 0 || count == 0)
        return;
    rcd_log_info ("messages expired", "{s:I}", "count", (json_int_t)count);
    rcd_events_emit (self->events, "message.expired", (uint64_t)count, 0, 0,
                     NULL);
}

/*  Periodic work with per-task periods. */
static void
s_self_handle_tick (self_t *self)
{
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
        self->next_lease_ms = now + self->cfg->lease_check_ms;
    }
    if (now >= self->next_expiry_ms) {
        s_self_expire_messages (self);
        self->next_expiry_ms = now + self->cfg->expiry_check_ms;
    }
}

static void
s_self_handle_pipe (self_t *self)
{
    char *cmd = zstr_recv (self->pipe);
    if (!cmd || streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "DRAIN")) {
        self->draining = true;
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
    rcd_log_info ("recovery started", NULL);
    while (!self->terminated) {
        int64_t now = rcd_clock_mono_ms ();
        int64_t next = self->next_heartbeat_ms;
        if (!self->draining) {
            if (self->next_lease_ms < next)
                next = self->next_lease_ms;
            if (self->next_expiry_ms < next)
                next = self->next_expiry_ms;
        }
        int wait = next > now ? (int)(next - now) : 0;
        void *which = zpoller_wait (self->poller, wait);
        if (which == pipe)
            s_self_handle_pipe (self);
        else if (zpoller_terminated (self->poller))
            break;
        s_self_handle_tick (self);
    }
    s_self_destroy (&self);
}

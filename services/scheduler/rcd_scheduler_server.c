/*  rcd_scheduler_server.c - the scheduler actor.

    Contract
      in   PULL  nudge_bind (bound)     proto "nudge": work may be due now
      out  PUSH  dispatch_bind (bound)  proto "dispatch": one claimed message
                                        (with its trace_id, for the
                                        sender's log lines, and for a long
                                        text parts_sent and part_limit:
                                        where a retry resumes)
      out  PUB   events_endpoint        heartbeat (state active|standby) and
                                        events "claim" (count),
                                        "dispatch.dropped" (lease expired
                                        before a sender took it),
                                        "frame.malformed",
                                        "instance.unusable" / "instance.usable"
                                        (detail "instance=<id> reason=<r>",
                                        once per change; reasons
                                        health_<state>, paused,
                                        circuit_open, circuit_half_open,
                                        cap_reached)
      db   claims due rows pending -> sending in one statement
           (FOR UPDATE SKIP LOCKED), sets lease_until and attempts, picks the
           instance, writes history, all in one statement per batch.
           Only tenants whose business hours (tenants.business_hours in
           tenants.timezone, PostgreSQL rcd_business_open) are open now
           are claimed; a message due while its tenant is closed stays
           pending and is claimed by the first poll after the window
           opens, in priority order, taking turns between the tenant's
           campaigns and its other messages (rcd_turns), each in
           send_at order.

    Sender numbers. Before each claim the instances are read (one small
    query): an instance is usable when enabled, its health is not
    close/refused/unauthorized/not_found/logged_out (the last set by a
    connection.update webhook), no gateway throttle pauses it
    (paused_until), its circuit is closed, and its hourly and daily caps
    have headroom. Each has a token bucket here (rate_per_second, burst_ms
    of burst, starting empty); the claim takes per instance at
    most its whole tokens within its cap headroom. Caps are counted in
    the instances row by the claim itself, so they survive restarts and
    failovers. A circuit that is open past circuit_until gets exactly one
    probe: the claim moves it to half_open with the lease as the probe's
    deadline; the sender closes or reopens it by the probe's outcome.
    Instance choice: pinned, else the contact's last instance when usable,
    else the message's previous instance when usable, else the tenant's
    instances with the most budget first. No usable instance: the
    messages wait (and "instance.unusable" says why).

    Recipient pacing: one message per recipient (tenant, number) per
    recipient_interval_ms across all of the tenant's numbers, through
    recipient_pacing, written by the claim. Opt-out is checked here and
    again by the sender just before the call.

    Only one scheduler is active: the one holding the PostgreSQL advisory
    lock lock_key. Others stay standby and try the lock every second. A
    lost database session loses the lock, so a reconnect drops to standby
    first. Taking the lock empties every bucket: a new active scheduler
    cannot know what its predecessor sent in its last second, so it never
    starts with a burst.

    Back-pressure: the dispatch socket has a small send high-water mark and
    a zero send timeout. Claimed frames that cannot be sent wait in a small
    in-process queue; nothing more is claimed until it is empty, so work
    is not leased faster than senders take it. A queued frame whose lease
    has passed is dropped (recovery returns the row to pending).

    Wake-up: every poll_ms, at once on every nudge, and when the next
    scheduled message becomes due (looked up after each claim round).
    Shutdown: DRAIN stops claiming and answers DRAINED (claimed frames
    already sent are the senders' now; queued ones are left to lease
    recovery). $TERM exits.
*/
#include "rcd_scheduler_server.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_events.h"
#include "rcd_log.h"
#include "rcd_proto.h"
#include "rcd_trace.h"
#include "rcd_turns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TYPE rcd_scheduler_config_t
const rcd_config_spec_t rcd_scheduler_config_specs[] = {
    RCD_CONFIG_DATABASE_URL (S_TYPE, database_url),
    RCD_CONFIG_STR ("nudge_bind", S_TYPE, nudge_bind, "tcp://127.0.0.1:9093",
                    "PULL endpoint bound for nudges"),
    RCD_CONFIG_STR ("dispatch_bind", S_TYPE, dispatch_bind,
                    "tcp://127.0.0.1:9094", "PUSH endpoint bound for senders"),
    RCD_CONFIG_STR ("events_endpoint", S_TYPE, events_endpoint,
                    "tcp://127.0.0.1:9092", "monitor events endpoint"),
    RCD_CONFIG_INT ("poll_ms", S_TYPE, poll_ms, "100", 5, 60000,
                    "claim poll period"),
    RCD_CONFIG_INT ("claim_batch", S_TYPE, claim_batch, "500", 1, 10000,
                    "rows per claim statement"),
    RCD_CONFIG_INT ("lease_ms", S_TYPE, lease_ms, "60000", 1000, 3600000,
                    "lease on a claimed message (plus its typing delay)"),
    RCD_CONFIG_INT ("dispatch_hwm", S_TYPE, dispatch_hwm, "200", 1, 100000,
                    "dispatch socket high-water mark per sender"),
    RCD_CONFIG_INT ("lock_key", S_TYPE, lock_key, "7166328424302707", 1,
                    INT64_MAX, "advisory lock key of the active scheduler"),
    RCD_CONFIG_INT ("drain_timeout_ms", S_TYPE, drain_timeout_ms, "5000", 0,
                    600000, "time allowed to drain on SIGTERM"),
    RCD_CONFIG_INT ("burst_ms", S_TYPE, burst_ms, "250", 1, 60000,
                    "an instance's token bucket holds this much of its rate "
                    "(at least one message)"),
    RCD_CONFIG_INT ("recipient_interval_ms", S_TYPE, recipient_interval_ms,
                    "6000", 0, 86400000,
                    "least time between two messages to one recipient of a "
                    "tenant (0: no pacing)"),
    RCD_CONFIG_END};
#undef S_TYPE

/*  The instances and what each may take now: enabled rows with the
    headroom left under their hourly and daily caps (counters of another
    period read as 0), and why an instance cannot be used, NULL when it
    can. A circuit that is open (or half open with its probe overdue)
    past circuit_until asks for a probe. */
static const char *s_instances_sql =
    "SELECT id, tenant_id, rate_per_second, headroom,"
    "       circuit_state <> 'closed' AS probe,"
    "       CASE WHEN health IN ('close', 'refused', 'unauthorized', "
    "'logged_out',"
    "                            'not_found') THEN 'health_' || health"
    "            WHEN paused_until > now() THEN 'paused'"
    "            WHEN circuit_state <> 'closed'"
    "             AND coalesce(circuit_until > now(), false)"
    "            THEN 'circuit_' || circuit_state"
    "            WHEN headroom <= 0 THEN 'cap_reached'"
    "       END AS unusable"
    "  FROM (SELECT i.*, least("
    "          coalesce(i.hourly_cap - CASE WHEN i.hour_start"
    "                   = date_trunc('hour', now(), 'UTC') THEN i.hour_used"
    "                   ELSE 0 END, 2147483647),"
    "          coalesce(i.daily_cap - CASE WHEN i.day_start"
    "                   = date_trunc('day', now(), t.timezone)"
    "                   THEN i.day_used ELSE 0 END, 2147483647)) AS headroom"
    "          FROM instances i JOIN tenants t ON t.id = i.tenant_id"
    "         WHERE i.enabled) x"
    " ORDER BY id";

/*  A claim candidate's columns, and the conditions that make a pending
    message claimable now (see s_claim_sql). */
#define S_CAND_COLS                                                            \
    "SELECT m.id, m.tenant_id, m.campaign_id, m.to_phone, m.priority,"         \
    "       m.send_at, m.instance_id AS prev, m.pinned,"                       \
    "       coalesce((SELECT ct.opted_out FROM contacts ct"                    \
    "                  WHERE ct.tenant_id = m.tenant_id"                       \
    "                    AND ct.phone = m.to_phone), false) AS opted"          \
    "  FROM messages m"
#define S_CAND_DUE                                                             \
    "   AND m.send_at <= now()"                                                \
    "   AND (m.valid_until IS NULL OR m.valid_until > now())"                  \
    "   AND (NOT m.pinned OR m.instance_id IN"                                 \
    "          (SELECT instance_id FROM bi WHERE budget > 0))"                 \
    "   AND coalesce((SELECT p.next_at FROM recipient_pacing p"                \
    "                   WHERE p.tenant_id = m.tenant_id"                       \
    "                     AND p.phone = m.to_phone), '-infinity')"             \
    "       <= now()"
/*  The claim's order: priority, then turns between streams (the n-th due
    message of each stream before the n+1-th of any), the least recently
    served stream first, then due time; of the rows named x. */
#define S_FAIR "x.priority, x.turn, x.served, x.send_at, x.id"

/*  One claim. $1..$3 are the usable instances with the number of
    messages each may take now (its tokens, within its caps) and whether
    that one is a circuit probe; $4 the lease, $5 the recipient interval
    (0: no pacing), $6 the most rows to claim, $7/$8 the streams this
    scheduler served and the claim round it last served each in (see
    rcd_turns; a stream not named counts as never served).

    Each tenant with budget and open business hours (migration 0002)
    walks its own due work, at most its budget plus a little, so one
    tenant's backlog is never walked for another. Its due work is
    streams (migration 0011): its messages outside campaigns
    (messages_tenant_due) and each of its scheduled or running campaigns
    (messages_campaign_open), the least recently served first; a
    campaign walks at most its share of the budget plus a little, and no
    more campaigns are walked than the budget has messages. Within a
    priority the claim takes turns between the streams (S_FAIR), so a
    tenant's second campaign, or its low-priority messages sent one by
    one, do not wait behind a first campaign's backlog, and across
    tenants the pick's limit takes turns too. A due
    message whose contact has opted out is not sent: it becomes 'blocked'
    here (the opt-out itself blocks the pending messages it finds; this
    catches one inserted while it ran). The opt-out and pacing checks
    are scalar subqueries on purpose: one
    primary-key probe per row walked, whatever the statistics. Written
    as NOT EXISTS they became anti joins or hashed subplans reading every
    opted-out contact or paced recipient of the tenant on every claim.
    The session uses generic plans (see s_self_new); check this one with
    EXPLAIN under force_generic_plan after any change. Rows pinned to an
    instance without budget and recipients paced (recipient_pacing) are
    passed over. A message goes
    to its pinned instance, else its contact's last instance when usable,
    else the instance it had on its last attempt when usable, else the
    tenant's budgets are dealt out in order, largest first. Per instance
    at most its budget is taken and per recipient at most one message.

    In the same statement: history, the recipient's next allowed time,
    the instances' hour and day counters (the caps are counted at claim,
    so they hold across restarts and never count low), a probed
    circuit's move to half_open with the lease as the probe's deadline,
    and the contact's last instance. */
static const char *s_claim_sql =
    "WITH b AS ("
    "  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
    "           AS b (instance_id, budget, probe)"
    "), srv AS ("
    "  SELECT * FROM unnest($7::bigint[], $8::bigint[]) AS s (stream, served)"
    "), bi AS ("
    "  SELECT b.instance_id, b.budget, i.tenant_id"
    "    FROM b JOIN instances i ON i.id = b.instance_id"
    "), bt AS ("
    "  SELECT bi.tenant_id, sum(bi.budget)::bigint AS budget"
    "    FROM bi JOIN tenants t ON t.id = bi.tenant_id"
    "   WHERE bi.budget > 0"
    "     AND (t.business_hours IS NULL"
    "          OR rcd_business_open(t.business_hours, t.timezone, now()))"
    "   GROUP BY bi.tenant_id"
    "), gc AS ("
    "  SELECT g.id, g.tenant_id, bt.budget,"
    "         row_number() OVER (PARTITION BY g.tenant_id"
    "           ORDER BY coalesce(s.served, 0), g.id) AS pos,"
    "         count(*) OVER (PARTITION BY g.tenant_id) AS n"
    "    FROM bt JOIN campaigns g ON g.tenant_id = bt.tenant_id"
    "    LEFT JOIN srv s ON s.stream = g.id"
    "   WHERE g.state IN ('scheduled', 'running')"
    "), cand AS ("
    "  SELECT c.* FROM bt CROSS JOIN LATERAL ("
    "    " S_CAND_COLS
    "     WHERE m.tenant_id = bt.tenant_id AND m.status = 'pending'"
    "       AND m.campaign_id IS NULL " S_CAND_DUE
    "     ORDER BY m.priority, m.send_at"
    "     LIMIT bt.budget + 16"
    "     FOR UPDATE OF m SKIP LOCKED"
    "  ) c"
    "  UNION ALL"
    "  SELECT c.* FROM gc CROSS JOIN LATERAL ("
    "    " S_CAND_COLS
    "     WHERE m.campaign_id = gc.id AND m.status = 'pending' " S_CAND_DUE
    "     ORDER BY m.send_at"
    "     LIMIT gc.budget / least(gc.n, gc.budget) + 4"
    "     FOR UPDATE OF m SKIP LOCKED"
    "  ) c"
    "   WHERE gc.pos <= gc.budget"
    "), pref AS ("
    "  SELECT c.*, CASE WHEN c.pinned THEN c.prev ELSE coalesce("
    "           (SELECT ct.last_instance_id FROM contacts ct"
    "             WHERE ct.tenant_id = c.tenant_id AND ct.phone = c.to_phone"
    "               AND ct.last_instance_id IN (SELECT instance_id FROM bi)),"
    "           (SELECT bi.instance_id FROM bi"
    "             WHERE bi.instance_id = c.prev)) END AS pref"
    "    FROM cand c WHERE NOT c.opted"
    "), turned AS ("
    "  SELECT p.*, coalesce(s.served, 0) AS served,"
    "         row_number() OVER (PARTITION BY p.tenant_id, p.priority,"
    "           p.campaign_id ORDER BY p.send_at, p.id) AS turn"
    "    FROM pref p LEFT JOIN srv s"
    "      ON s.stream = coalesce(p.campaign_id, -p.tenant_id)"
    "), numbered AS ("
    "  SELECT x.*, row_number() OVER (PARTITION BY x.tenant_id,"
    "             x.pref IS NULL ORDER BY " S_FAIR ") AS k"
    "    FROM turned x"
    "), ranges AS ("
    "  SELECT instance_id, tenant_id, sum(budget) OVER w - budget AS lo,"
    "         sum(budget) OVER w AS hi"
    "    FROM bi WHERE budget > 0"
    "  WINDOW w AS (PARTITION BY tenant_id ORDER BY budget DESC, instance_id)"
    "), assigned AS ("
    "  SELECT n.*, coalesce(n.pref, r.instance_id) AS inst"
    "    FROM numbered n LEFT JOIN ranges r"
    "      ON n.pref IS NULL AND r.tenant_id = n.tenant_id"
    "     AND n.k > r.lo AND n.k <= r.hi"
    "), ranked AS ("
    "  SELECT x.*, row_number() OVER (PARTITION BY x.inst"
    "                ORDER BY " S_FAIR ") AS rn,"
    "              row_number() OVER (PARTITION BY x.tenant_id, x.to_phone"
    "                ORDER BY " S_FAIR ") AS rr"
    "    FROM assigned x WHERE x.inst IS NOT NULL"
    "), pick AS ("
    "  SELECT x.id, x.inst FROM ranked x JOIN b ON b.instance_id = x.inst"
    "   WHERE x.rn <= b.budget AND (x.rr = 1 OR $5::bigint = 0)"
    "   ORDER BY " S_FAIR " LIMIT $6"
    "), claimed AS ("
    "  UPDATE messages m"
    "     SET status = 'sending', attempts = m.attempts + 1,"
    "         lease_until = now() + ($4::bigint + m.delay_ms)"
    "                               * interval '1 millisecond',"
    "         instance_id = pick.inst, updated_at = now()"
    "    FROM pick WHERE m.id = pick.id"
    "  RETURNING m.id, m.tenant_id, m.attempts,"
    "            (extract(epoch FROM m.lease_until) * 1000)::bigint,"
    "            m.instance_id, m.to_phone, m.body, m.delay_ms, m.trace_id,"
    "            m.parts_sent, m.part_limit,"
    "            coalesce(m.campaign_id, -m.tenant_id)"
    "), history AS ("
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
    "  SELECT tenant_id, id, 'sending', 'claimed, attempt ' || attempts"
    "    FROM claimed"
    "), paced AS ("
    "  INSERT INTO recipient_pacing (tenant_id, phone, next_at)"
    "  SELECT tenant_id, to_phone,"
    "         now() + $5::bigint * interval '1 millisecond'"
    "    FROM claimed WHERE $5::bigint > 0"
    "  ON CONFLICT (tenant_id, phone) DO UPDATE SET next_at = excluded.next_at"
    "), used AS ("
    "  SELECT instance_id, count(*)::int AS n FROM claimed"
    "   GROUP BY instance_id"
    "), counted AS ("
    "  UPDATE instances i"
    "     SET hour_used = CASE WHEN i.hour_start = date_trunc('hour', now(), "
    "'UTC')"
    "                          THEN i.hour_used ELSE 0 END + used.n,"
    "         hour_start = date_trunc('hour', now(), 'UTC'),"
    "         day_used = CASE WHEN i.day_start"
    "                             = date_trunc('day', now(), t.timezone)"
    "                         THEN i.day_used ELSE 0 END + used.n,"
    "         day_start = date_trunc('day', now(), t.timezone),"
    "         circuit_state = CASE WHEN b.probe = 1 THEN 'half_open'"
    "                              ELSE i.circuit_state END,"
    "         circuit_until = CASE WHEN b.probe = 1"
    "                              THEN now() + $4::bigint"
    "                                           * interval '1 millisecond'"
    "                              ELSE i.circuit_until END"
    "    FROM used JOIN b ON b.instance_id = used.instance_id, tenants t"
    "   WHERE i.id = used.instance_id AND t.id = i.tenant_id"
    "), blocked AS ("
    "  UPDATE messages m"
    "     SET status = 'blocked', last_error = 'contact_opted_out',"
    "         updated_at = now()"
    "    FROM cand WHERE cand.opted AND m.id = cand.id"
    "  RETURNING m.id, m.tenant_id"
    "), blocked_history AS ("
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
    "  SELECT tenant_id, id, 'blocked', 'contact opted out' FROM blocked"
    "), sticky AS ("
    "  UPDATE contacts c SET last_instance_id = claimed.instance_id"
    "    FROM claimed WHERE c.tenant_id = claimed.tenant_id"
    "     AND c.phone = claimed.to_phone"
    "     AND c.last_instance_id IS DISTINCT FROM claimed.instance_id"
    ")"
    "SELECT * FROM claimed";

/*  When the next not-yet-due message becomes due (unix ms; NULL: none), so
    a message scheduled for 09:00:00.000 leaves then, not a poll later.
    One index probe per priority. */
static const char *s_next_due_sql =
    "SELECT (extract(epoch FROM min(s)) * 1000)::bigint FROM ("
    "  SELECT min(send_at) s FROM messages"
    "   WHERE status = 'pending' AND priority = 0 AND send_at > now()"
    "  UNION ALL"
    "  SELECT min(send_at) FROM messages"
    "   WHERE status = 'pending' AND priority = 1 AND send_at > now()"
    "  UNION ALL"
    "  SELECT min(send_at) FROM messages"
    "   WHERE status = 'pending' AND priority = 2 AND send_at > now()"
    ") x";

/*  A usable-or-not sender number and its token bucket. The bucket holds
    burst_ms of its rate (default a quarter second; at least one token),
    so a number that was idle starts with a small burst, never a second's
    worth on top of its pace. It starts empty, both when the instance is
    first seen and when this scheduler becomes active: a scheduler taking
    over cannot know what its predecessor sent in its last moments, so it
    gives nothing away it has not earned. */
typedef struct {
    int64_t id;
    double rate;       /* tokens per second */
    double tokens;     /* available now */
    int64_t refill_ms; /* mono time tokens were last added */
    int64_t headroom;  /* messages left under its hourly and daily caps */
    bool probe;        /* its circuit asks for one probe */
    bool usable;
    char why[32]; /* unusable: the reason, "" when usable */
} s_instance_t;

/*  Streams remembered for the claims' turns (rcd_turns). */
#define S_STREAMS_MAX 1024

/*  A dispatch encoded and waiting for room on the socket. */
typedef struct {
    char *data; /* msgpack body */
    size_t size;
    int64_t lease_until_ms;
} s_pending_frame_t;

typedef struct {
    zsock_t *pipe;     /* actor pipe */
    zsock_t *nudge;    /* PULL, bound */
    zsock_t *dispatch; /* PUSH, bound */
    zpoller_t *poller;
    rcd_events_t *events; /* PUB to the monitor */
    rcd_db_t *db;         /* our one connection */
    const rcd_scheduler_config_t *cfg;
    bool active;                  /* we hold the advisory lock */
    bool bound;                   /* nudge and dispatch endpoints bound */
    uint64_t lock_gen;            /* db generation the lock was taken on */
    bool draining;                /* DRAIN received: claim nothing more */
    bool terminated;              /* $TERM received */
    s_pending_frame_t *queue;     /* claimed, not yet sent */
    size_t queue_head, queue_len; /* unsent frames are [head, len) */
    int64_t next_heartbeat_ms;
    int64_t next_due_ms;     /* wall ms of the next future send_at */
    int64_t next_poll_ms;    /* mono ms of the next poll claim */
    s_instance_t *instances; /* sorted by id */
    size_t ninstances;
    int64_t instances_until_ms; /* mono time the next read is due */
    char *budget_ids, *budget_n, *budget_probe; /* claim parameters */
    rcd_turns_t *turns;     /* the streams the claims served */
    uint64_t claimed_total; /* for the log line on exit */
    uint64_t malformed;     /* malformed nudge frames */
} self_t;

static void
s_queue_clear (self_t *self)
{
    for (size_t i = self->queue_head; i < self->queue_len; i++)
        free (self->queue[i].data);
    self->queue_head = self->queue_len = 0;
}

static void
s_self_destroy (self_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    self_t *self = *self_p;
    s_queue_clear (self);
    free (self->queue);
    free (self->instances);
    free (self->budget_ids);
    free (self->budget_n);
    free (self->budget_probe);
    rcd_turns_destroy (&self->turns);
    rcd_db_destroy (&self->db);
    rcd_events_destroy (&self->events);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->dispatch);
    zsock_destroy (&self->nudge);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const rcd_scheduler_config_t *cfg)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->cfg = cfg;
    self->queue = calloc ((size_t)cfg->claim_batch, sizeof *self->queue);
    self->turns = rcd_turns_new (S_STREAMS_MAX);
    self->nudge = zsock_new (ZMQ_PULL);
    self->dispatch = zsock_new (ZMQ_PUSH);
    if (!self->queue || !self->turns || !self->nudge || !self->dispatch)
        goto fail;
    zsock_set_rcvhwm (self->nudge, 1000);
    zsock_set_sndhwm (self->dispatch, (int)cfg->dispatch_hwm);
    zsock_set_sndtimeo (self->dispatch, 0);
    /* Small kernel buffers too: frames are small, and a default TCP buffer
       holds thousands of them beyond the high-water mark, which would let
       us lease far more than the senders can take. */
    zsock_set_sndbuf (self->dispatch, 32 * 1024);
    zsock_set_linger (self->dispatch, 1000);
    /* The endpoints are bound only while active (s_self_bind): a standby
       on the same host shares them, and takes them over with the lock. */
    self->events = rcd_events_new (cfg->events_endpoint, "scheduler", NULL);
    self->db = rcd_db_new (cfg->database_url);
    self->poller = zpoller_new (pipe, self->nudge, NULL);
    if (!self->events || !self->db || !self->poller)
        goto fail;
    /* One plan per statement for the session's life: the claim's custom
       plans cost 2-5 ms of planning per claim, which is the whole latency
       budget of the nudge path. Its plan is built to hold whatever the
       data (see s_claim_sql); rcd_db turns JIT off, which its estimates
       would otherwise trigger. A database down at start is not fatal. */
    (void)rcd_db_on_connect (self->db,
                             "SET plan_cache_mode = force_generic_plan");
    if (rcd_db_prepare (self->db, "claim", s_claim_sql) != 0 ||
        rcd_db_prepare (self->db, "instances", s_instances_sql) != 0 ||
        rcd_db_prepare (self->db, "next_due", s_next_due_sql) != 0)
        goto fail;
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

/*  Binds (or unbinds) the nudge and dispatch endpoints. Only the active
    scheduler holds them, so a standby can run beside it with the same
    configuration: the senders, ingestor and recovery connect to one
    address, and ZeroMQ reconnects them to whoever binds it next.
    Returns 0, or -1 when an endpoint could not be bound (then neither
    is). */
static int
s_self_bind (self_t *self, bool bind)
{
    if (self->bound == bind)
        return 0;
    if (!bind) {
        zsock_unbind (self->nudge, "%s", self->cfg->nudge_bind);
        zsock_unbind (self->dispatch, "%s", self->cfg->dispatch_bind);
        s_queue_clear (self); /* their leases bring them back */
        self->bound = false;
        return 0;
    }
    if (zsock_bind (self->nudge, "%s", self->cfg->nudge_bind) < 0) {
        rcd_log_error ("cannot bind nudge endpoint", "{s:s, s:s}", "endpoint",
                       self->cfg->nudge_bind, "error",
                       zmq_strerror (zmq_errno ()));
        return -1;
    }
    if (zsock_bind (self->dispatch, "%s", self->cfg->dispatch_bind) < 0) {
        rcd_log_error ("cannot bind dispatch endpoint", "{s:s, s:s}",
                       "endpoint", self->cfg->dispatch_bind, "error",
                       zmq_strerror (zmq_errno ()));
        zsock_unbind (self->nudge, "%s", self->cfg->nudge_bind);
        return -1;
    }
    self->bound = true;
    return 0;
}

/*  Takes or confirms the advisory lock. A new database session means the
    old lock is gone, whatever we believed. Taking it binds the
    endpoints; when they cannot be bound (the previous active scheduler
    still holds them, having lost its session but not its process) the
    lock is given back and we stay standby. */
static void
s_self_update_leadership (self_t *self)
{
    if (self->active && rcd_db_connected (self->db) &&
        rcd_db_generation (self->db) == self->lock_gen)
        return;
    if (self->active)
        rcd_log_warn ("lost database session: standby", NULL);
    self->active = false;
    s_self_bind (self, false);
    if (!rcd_db_connected (self->db))
        return;
    char key[24];
    snprintf (key, sizeof key, "%lld", (long long)self->cfg->lock_key);
    const char *params[] = {key};
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (self->db, "SELECT pg_try_advisory_lock($1::bigint)", 1,
                     params, &res) != 0)
        return;
    const char *got = rcd_db_res_value (res, 0, 0);
    bool locked = got && got[0] == 't';
    rcd_db_res_destroy (&res);
    if (!locked)
        return;
    if (s_self_bind (self, true) != 0) {
        if (rcd_db_exec (self->db, "SELECT pg_advisory_unlock($1::bigint)", 1,
                         params, NULL) != 0)
            rcd_log_warn ("could not give the lock back", "{s:s}", "error",
                          rcd_db_error (self->db));
        return;
    }
    self->active = true;
    self->lock_gen = rcd_db_generation (self->db);
    /* every bucket starts empty again */
    free (self->instances);
    self->instances = NULL;
    self->ninstances = 0;
    self->instances_until_ms = 0;
    rcd_log_info ("active: holding the scheduler lock", "{s:s, s:s}", "nudge",
                  self->cfg->nudge_bind, "dispatch", self->cfg->dispatch_bind);
}

/*  Sends queued frames while the socket takes them; drops expired ones.
    Returns true when the queue is empty. */
static bool
s_self_flush_queue (self_t *self)
{
    int64_t now = rcd_clock_now_ms ();
    uint64_t dropped = 0;
    void *handle = zsock_resolve (self->dispatch);
    while (self->queue_head < self->queue_len) {
        s_pending_frame_t *f = &self->queue[self->queue_head];
        if (f->lease_until_ms <= now)
            dropped++;
        else if (zmq_send (handle, "dispatch", 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) <
                 0)
            break;
        else
            zmq_send (handle, f->data, f->size, 0);
        free (f->data);
        f->data = NULL;
        self->queue_head++;
    }
    if (dropped)
        rcd_events_emit (self->events, "dispatch.dropped", dropped, 0, 0, NULL);
    if (self->queue_head == self->queue_len) {
        self->queue_head = self->queue_len = 0;
        return true;
    }
    return false;
}

/*  True when at least one sender can take a frame now. */
static bool
s_self_senders_ready (self_t *self)
{
    return (zsock_events (self->dispatch) & ZMQ_POLLOUT) != 0;
}

static s_instance_t *
s_instance_find (s_instance_t *list, size_t count, int64_t id)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (list[mid].id == id)
            return &list[mid];
        if (list[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/*  Tells the monitor when an instance stops or starts being usable, once
    per change rather than every round. */
static void
s_self_note_usable (self_t *self, const s_instance_t *inst, const char *was)
{
    if (strcmp (was, inst->why) == 0)
        return;
    char detail[96];
    snprintf (detail, sizeof detail, "instance=%lld reason=%s",
              (long long)inst->id, inst->usable ? was : inst->why);
    rcd_events_emit (self->events,
                     inst->usable ? "instance.usable" : "instance.unusable", 1,
                     0, 0, detail);
    if (!inst->usable)
        rcd_log_info ("instance unusable", "{s:I, s:s}", "instance_id",
                      (json_int_t)inst->id, "reason", inst->why);
}

/*  Re-reads the instances (state, caps, circuits) and refills their
    buckets. Buckets carry over by id. Returns 0 or -1. */
static int
s_self_refresh_instances (self_t *self)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (self->db, "instances", 0, NULL, &res) != 0) {
        rcd_log_error ("instance refresh failed", "{s:s}", "error",
                       rcd_db_error (self->db));
        return -1;
    }
    int rows = rcd_db_res_rows (res);
    s_instance_t *fresh = calloc ((size_t)(rows > 0 ? rows : 1), sizeof *fresh);
    if (!fresh) {
        rcd_db_res_destroy (&res);
        return -1;
    }
    int64_t now = rcd_clock_mono_ms ();
    for (int r = 0; r < rows; r++) {
        s_instance_t *inst = &fresh[r];
        inst->id = rcd_db_res_int64 (res, r, 0);
        inst->rate = strtod (rcd_db_res_value (res, r, 2), NULL);
        inst->headroom = rcd_db_res_int64 (res, r, 3);
        const char *probe = rcd_db_res_value (res, r, 4);
        inst->probe = probe && probe[0] == 't';
        inst->usable = rcd_db_res_isnull (res, r, 5);
        snprintf (inst->why, sizeof inst->why, "%s",
                  inst->usable ? "" : rcd_db_res_value (res, r, 5));
        s_instance_t *old =
            s_instance_find (self->instances, self->ninstances, inst->id);
        inst->tokens = old ? old->tokens : 0;
        inst->refill_ms = old ? old->refill_ms : now;
        s_self_note_usable (self, inst, old ? old->why : "");
    }
    rcd_db_res_destroy (&res);
    free (self->instances);
    self->instances = fresh;
    self->ninstances = (size_t)rows;
    self->instances_until_ms = now + self->cfg->poll_ms;
    return 0;
}

/*  Adds the tokens earned since the last refill, up to each bucket's
    burst. */
static void
s_self_refill (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    for (size_t i = 0; i < self->ninstances; i++) {
        s_instance_t *inst = &self->instances[i];
        double capacity = inst->rate * (double)self->cfg->burst_ms / 1000.0;
        if (capacity < 1)
            capacity = 1;
        inst->tokens += inst->rate * (double)(now - inst->refill_ms) / 1000.0;
        if (inst->tokens > capacity)
            inst->tokens = capacity;
        inst->refill_ms = now;
    }
}

/*  Builds the claim's budget arrays. Returns the total budget, 0 when
    no instance may take anything now, -1 when out of memory. */
static int64_t
s_self_budgets (self_t *self)
{
    size_t n = self->ninstances;
    int64_t *ids = calloc (n + 1, sizeof *ids);
    int64_t *budget = calloc (n + 1, sizeof *budget);
    int64_t *probe = calloc (n + 1, sizeof *probe);
    int64_t total = -1;
    if (!ids || !budget || !probe)
        goto cleanup;
    size_t k = 0;
    total = 0;
    for (size_t i = 0; i < n; i++) {
        const s_instance_t *inst = &self->instances[i];
        if (!inst->usable)
            continue;
        int64_t b = (int64_t)inst->tokens;
        if (b > inst->headroom)
            b = inst->headroom;
        if (b > self->cfg->claim_batch)
            b = self->cfg->claim_batch;
        if (inst->probe && b > 1)
            b = 1; /* exactly one probe, then wait for its outcome */
        if (b < 0)
            b = 0;
        ids[k] = inst->id;
        budget[k] = b;
        probe[k] = inst->probe;
        total += b;
        k++;
    }
    free (self->budget_ids);
    free (self->budget_n);
    free (self->budget_probe);
    self->budget_ids = rcd_db_int64_array (ids, k);
    self->budget_n = rcd_db_int64_array (budget, k);
    self->budget_probe = rcd_db_int64_array (probe, k);
    if (!self->budget_ids || !self->budget_n || !self->budget_probe)
        total = -1;
cleanup:
    free (ids);
    free (budget);
    free (probe);
    return total;
}

/*  Claims one batch within the instances' budgets and queues its frames.
    Returns the number claimed, or -1 on a database error. */
static int
s_self_claim_batch (self_t *self)
{
    /* The instances' state is read at most once a poll period; between
       reads the claims' own counts keep the caps' headroom exact, and a
       pause or circuit written meanwhile is seen within that period. */
    if (rcd_clock_mono_ms () >= self->instances_until_ms &&
        s_self_refresh_instances (self) != 0)
        return -1;
    s_self_refill (self);
    int64_t total = s_self_budgets (self);
    if (total <= 0)
        return 0; /* nothing may go now: not an error */
    char *streams = NULL, *rounds = NULL;
    if (rcd_turns_params (self->turns, &streams, &rounds) != 0)
        return -1;
    char limit[24], lease[24], interval[24];
    snprintf (limit, sizeof limit, "%lld", (long long)self->cfg->claim_batch);
    snprintf (lease, sizeof lease, "%lld", (long long)self->cfg->lease_ms);
    snprintf (interval, sizeof interval, "%lld",
              (long long)self->cfg->recipient_interval_ms);
    const char *params[] = {self->budget_ids,
                            self->budget_n,
                            self->budget_probe,
                            lease,
                            interval,
                            limit,
                            streams,
                            rounds};
    rcd_db_res_t *res = NULL;
    rcd_turns_next_round (self->turns);
    int rc = rcd_db_run (self->db, "claim", 8, params, &res);
    free (streams);
    free (rounds);
    if (rc != 0) {
        rcd_log_error ("claim failed", "{s:s, s:s}", "error",
                       rcd_db_error (self->db), "sqlstate",
                       rcd_db_sqlstate (self->db));
        return -1;
    }
    int rows = rcd_db_res_rows (res);
    for (int r = 0; r < rows; r++) {
        rcd_dispatch_t d = {
            .id = (uint64_t)rcd_db_res_int64 (res, r, 0),
            .tenant_id = (uint64_t)rcd_db_res_int64 (res, r, 1),
            .attempt = (uint32_t)rcd_db_res_int64 (res, r, 2),
            .lease_until_ms = rcd_db_res_int64 (res, r, 3),
            .instance_id = (uint64_t)rcd_db_res_int64 (res, r, 4),
            .to = (char *)rcd_db_res_value (res, r, 5),
            .text = (char *)rcd_db_res_value (res, r, 6),
            .delay_ms = (uint32_t)rcd_db_res_int64 (res, r, 7),
            .trace_id = (char *)rcd_db_res_value (res, r, 8),
            .parts_sent = (uint32_t)rcd_db_res_int64 (res, r, 9),
            .part_limit = (uint32_t)rcd_db_res_int64 (res, r, 10),
        };
        rcd_turns_served (self->turns, rcd_db_res_int64 (res, r, 11));
        /* the ingestor stores only well-formed ids and the column's
           CHECK only their length (migration 0008); a malformed one
           goes as none: the message must still go, and a frame that
           cannot be encoded would come back with every lease */
        if (d.trace_id && !rcd_trace_valid (d.trace_id))
            d.trace_id = NULL;
        s_instance_t *inst = s_instance_find (self->instances, self->ninstances,
                                              (int64_t)d.instance_id);
        if (inst) {
            inst->tokens -= 1;
            inst->headroom -= 1;
            if (inst->probe) { /* its one probe is out: nothing more */
                inst->probe = false;
                inst->usable = false;
                snprintf (inst->why, sizeof inst->why, "circuit_half_open");
            }
        }
        s_pending_frame_t *f = &self->queue[self->queue_len];
        if (rcd_dispatch_encode (&d, &f->data, &f->size) != 0)
            continue; /* out of memory: the lease will bring it back */
        f->lease_until_ms = d.lease_until_ms;
        self->queue_len++;
    }
    rcd_db_res_destroy (&res);
    if (rows > 0) {
        self->claimed_total += (uint64_t)rows;
        rcd_events_emit (self->events, "claim", (uint64_t)rows, 0, 0, NULL);
    }
    return rows;
}

/*  Looks up when the next future message becomes due. */
static void
s_self_update_next_due (self_t *self)
{
    rcd_db_res_t *res = NULL;
    self->next_due_ms = 0;
    if (rcd_db_run (self->db, "next_due", 0, NULL, &res) != 0)
        return;
    if (!rcd_db_res_isnull (res, 0, 0))
        self->next_due_ms = rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
}

/*  Claims and dispatches until nothing is due, senders are full, or the
    time slice is used (so the pipe and nudges stay responsive). */
static void
s_self_dispatch_due (self_t *self)
{
    if (!self->active || self->draining)
        return;
    int64_t slice_end = rcd_clock_mono_ms () + 50;
    while (s_self_flush_queue (self) && s_self_senders_ready (self)) {
        self->next_poll_ms = rcd_clock_mono_ms () + self->cfg->poll_ms;
        int n = s_self_claim_batch (self);
        if (n < 0) {
            s_self_update_leadership (self);
            return;
        }
        if (n < self->cfg->claim_batch) {
            s_self_update_next_due (self);
            break;
        }
        if (rcd_clock_mono_ms () >= slice_end)
            break;
    }
    s_self_flush_queue (self);
}

/*  Drains every waiting nudge; the claim that follows serves them all. */
static void
s_self_handle_nudge (self_t *self)
{
    while (zsock_events (self->nudge) & ZMQ_POLLIN) {
        rcd_proto_msg_t msg;
        int rc = rcd_proto_recv (self->nudge, &msg);
        if (rc == -2 || (rc == 0 && msg.type != RCD_MSG_NUDGE)) {
            self->malformed++;
            rcd_events_emit (self->events, "frame.malformed", 1, 0, 0,
                             rcd_proto_last_error ());
        }
        rcd_proto_msg_clear (&msg);
        if (rc == -1)
            break;
    }
    s_self_dispatch_due (self);
}

static void
s_self_handle_pipe (self_t *self)
{
    char *cmd = zstr_recv (self->pipe);
    if (!cmd) {
        self->terminated = true;
        return;
    }
    if (streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "DRAIN")) {
        self->draining = true;
        s_self_flush_queue (self);
        zstr_send (self->pipe, "DRAINED");
    }
    zstr_free (&cmd);
}

/*  Periodic work: leadership, heartbeat, the poll claim. */
static void
s_self_handle_tick (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    if (now >= self->next_heartbeat_ms) {
        s_self_update_leadership (self);
        rcd_events_heartbeat (self->events, self->draining ? "draining"
                                            : self->active ? "active"
                                                           : "standby");
        self->next_heartbeat_ms = now + 1000;
    }
    bool due_reached =
        self->next_due_ms && self->next_due_ms <= rcd_clock_now_ms ();
    if (due_reached)
        self->next_due_ms = 0; /* the claim round looks it up anew */
    if (due_reached || now >= self->next_poll_ms ||
        self->queue_head < self->queue_len)
        s_self_dispatch_due (self);
}

void
rcd_scheduler_server (zsock_t *pipe, void *args)
{
    const rcd_scheduler_config_t *cfg = args;
    self_t *self = s_self_new (pipe, cfg);
    zsock_signal (pipe, 0);
    if (!self) {
        zsock_send (pipe, "ss", "FATAL", "scheduler failed to start");
        return;
    }
    rcd_log_info ("scheduler started", "{s:s, s:s}", "nudge", cfg->nudge_bind,
                  "dispatch", cfg->dispatch_bind);
    s_self_update_leadership (self);
    s_self_handle_tick (self);
    while (!self->terminated) {
        int64_t wait = self->cfg->poll_ms;
        if (self->queue_head < self->queue_len)
            wait = 5; /* frames waiting for a sender: retry soon */
        else if (self->active && !s_self_senders_ready (self) && wait > 50)
            wait = 50; /* no sender yet: notice the first one quickly */
        if (self->active && self->next_due_ms > 0) {
            int64_t until = self->next_due_ms - rcd_clock_now_ms ();
            if (until < wait)
                wait = until > 0 ? until : 0;
        }
        void *which = zpoller_wait (self->poller, (int)wait);
        if (which == pipe)
            s_self_handle_pipe (self);
        else if (which == self->nudge)
            s_self_handle_nudge (self);
        else if (zpoller_terminated (self->poller))
            break;
        s_self_handle_tick (self);
    }
    rcd_log_info ("scheduler stopped", "{s:I, s:I}", "claimed",
                  (json_int_t)self->claimed_total, "malformed_frames",
                  (json_int_t)self->malformed);
    s_self_destroy (&self);
}

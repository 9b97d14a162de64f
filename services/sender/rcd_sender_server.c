/*  rcd_sender_server.c - the sender actor.

    Contract
      in   PULL  dispatch_endpoint (connected)  proto "dispatch": one
                 claimed message (id, attempt, lease_until_ms, tenant,
                 instance, to, text, delay_ms, trace_id, parts_sent,
                 part_limit). Receive HWM dispatch_hwm.
      out  HTTP  the gateways (Evolution API v2, Meta Cloud API) through
                 rcd_http: up to max_inflight requests at once over
                 keep-alive connections.
      out  PUB   events_endpoint: heartbeat every second (state active or
                 draining) and events
                   (counters summed over the last second, published with
                   the heartbeat, and at DRAINED and exit)
                   message.sent / message.retry / message.failed /
                   message.unknown / message.blocked
                                     messages written with that outcome
                   message.part_sent parts of long texts accepted before
                                     their last (whose outcome is the
                                     message's)
                   message.released  dispatches handed back on DRAIN
                   send.latency_us   count = requests, value = summed us
                   send.latency_bucket  the same per request-time bucket
                                     (rcd_latency_bounds_s, detail
                                     "le_us=<bound>" or "le_us=+Inf")
                   outcome.stale     results the fence rejected
                   frame.malformed   undecodable or unexpected frames
                   dispatch.expired  dispatches dropped, lease (nearly) over
                   gateway.unrecognised  answers no classification rule
                                     names (also logged, see below)
                   (per flush, value = instance id)
                   instance.failure  detail "instance=<id> reason=<r>":
                                     auth failure, banned, unknown number
                                     id (count = messages in the flush)
                   instance.throttled detail as above: gateway throttle
                   instance.circuit_open  detail as above, count 1: this
                                     sender's flush opened the circuit
                                     (also a warn log line)
                   outcome.flush_failed  a flush failed; it will be retried
      log  one line per outcome once its flush has committed, with the
           message's trace_id from the dispatch (rcd_log.h): message.sent,
           message.retry, message.blocked, message.released (info);
           message.failed (permanent, instance, or attempts used up) and
           message.unknown (warn). Fields: message_id, tenant_id,
           instance_id, attempt, to (masked), and as they apply
           provider_message_id, reason, retry_ms, attempts_exhausted,
           latency_us. dispatch.expired per dropped dispatch (debug).
      db   reads instances (cache by id: one query on a miss, refreshed
           every instance_refresh_s) and contacts (the opt-out re-check);
           writes outcomes, and the instances' circuit and paused_until,
           in batches.

    Config (RECADO_<KEY>): database_url, dispatch_endpoint,
    events_endpoint, dispatch_hwm, max_inflight, batch_max, batch_wait_ms,
    connect_timeout_ms, request_timeout_ms, retry_base_ms, retry_cap_ms,
    lease_margin_ms, instance_refresh_s, drain_timeout_ms,
    circuit_threshold (5), circuit_cooldown_ms (30000), throttle_pause_ms
    (5000), part_max_chars (1000), parts_delay_ms (1000); see
    rcd_sender_config_specs.

    Long texts: a text over part_max_chars characters (or the message's
    part_limit, once its first part went) is sent as the parts of
    rcd_parts.h, one after the other on the same job slot and instance.
    A part after the first of an attempt shows typing for parts_delay_ms
    (the message's delay_ms when longer): Evolution's delay field; Meta
    has none, so the sender waits that long itself. Each part but the
    last, once accepted, becomes a "part" outcome: parts_sent = k,
    part_limit and the part's gateway id (part_ids, migration 0012),
    fenced like every outcome, plus a history row "part k of n: <id>". The next part is sent only after that outcome's flush has
    committed and only if the fence let it through (a job fenced off
    ends there: a later attempt owns the message). A failure of part k
    is the message's outcome as usual (retry, failed, unknown) and
    leaves parts_sent = k - 1, so the retry starts at part k; parts
    already accepted are never sent again. An unknown outcome of part k
    also records k, n and part k's bytes in the text (migration 0012), so
    the gateway's echo or receipt of that part settles it: the rest goes
    on the next attempt, never part k again. The last part's success is
    the message's: sent, provider_message_id = the last part's id (the
    one whose receipts mean the whole text arrived), parts_sent = n.
    Before each further part the lease is checked: with less than
    lease_margin_ms plus the typing delay left, the message goes back to
    pending at once (transient "parts_lease_ending") and resumes there.
    Window: the same as a one-part message's, per part: a part accepted
    by the gateway whose progress was not committed (the process died,
    or the flush kept failing until the lease ran out) is sent again by
    the next attempt; at most that one part, since the following part
    waits for the commit. A one-part text takes the path it always did
    (one request, one outcome; parts_sent stays 0).

    Flow: dispatches are read in rounds (whatever the socket holds, up to
    what the limits below leave room for). A dispatch whose lease ends
    within lease_margin_ms is dropped unsent (recovery re-queues it).
    Otherwise its instance is looked up (missing or disabled: transient
    failure, no request). Then one query per round re-checks opt-out:
    a recipient whose contact opted out since the claim gets nothing
    (blocked); when that query fails nothing is sent (transient,
    optout_check_failed): the check never fails open. The rest have their
    requests built and queued. While max_inflight requests are out, or a
    full batch of outcomes is waiting to be written, the dispatch socket
    is not read: back-pressure reaches the scheduler through the
    high-water marks. Outcomes are buffered and written when batch_max
    are waiting or batch_wait_ms after the first: one transaction per
    flush, one statement per outcome kind (unnest arrays), each fenced by
    (tenant_id, id, attempts, status 'sending') and writing
    message_history (and dead_letters) in the same statement, plus one
    statement for the instances touched (below). No transaction is ever
    open while a request is in flight.

      success    -> sent, provider_message_id, sent_at (a long text:
                    after its last part; each part before it -> parts_sent)
      transient  -> pending, send_at = now + backoff (full jitter from
                    retry_base_ms doubling to retry_cap_ms, or the advised
                    Retry-After; a throttle: never before the instance's
                    pause ends), unless attempts >= max_attempts: failed
                    + dead letter
      permanent, instance -> failed + dead letter (gateway answer, 2 KiB)
      unknown    -> unknown (awaits reconciliation; never resent blindly)
      opted out  -> blocked (history "contact opted out before sending")

    Instances (shared with the scheduler, which reads them, moves an open
    circuit to half_open and claims its single probe; the sender claims
    nothing). Per flush, per instance, in the order the answers came:
      - a success resets circuit_failures to 0 and closes the circuit
        (from open or half_open too: a probe that succeeded);
      - a transient gateway failure (an answer or transport error
        classified transient, and also a timeout or reset after the
        request went out, outcome unknown: a gateway that answers nothing
        is down) adds 1. Throttles, and failures decided before any
        request (instance lookup, opt-out check, a request we could not
        build), change nothing;
      - the circuit opens (circuit_state 'open', circuit_until = now +
        circuit_cooldown_ms, circuit_opened_at, circuit_reason = the last
        failure's reason) when circuit_failures reaches circuit_threshold
        while closed, at once on a failure while half_open, and at once on
        an instance outcome (auth failure, Meta 190/368/131031/100-33,
        Evolution 401/403/404). Failures while already open are counted
        but do not extend the cool-down. Closing clears circuit_until,
        circuit_reason and circuit_opened_at;
      - a throttle (429, Meta 130429/131048/4/80007) pauses the whole
        instance: paused_until = greatest(paused_until, now + Retry-After,
        or throttle_pause_ms when none was advised).
    An answer no classification rule names (rcd_gateway.c) is retried as
    transient and its body logged, phones masked, at most 20 a second.

    When the database is down a flush fails; the outcomes are kept and
    the flush retried with capped backoff, and nothing more is read from
    the dispatch socket meanwhile. Window: if leases run out before the
    flush succeeds, recovery re-queues those rows and another attempt may
    send a message the gateway already accepted; the late flush is then
    rejected by the fence (counted as outcome.stale). The same window
    opens when the process dies between a gateway's answer and the flush
    (at most batch_wait_ms plus one commit in normal operation).

    Shutdown: DRAIN takes the dispatches already queued on our socket and
    hands them back (pending again, their attempt refunded through
    max_attempts), disconnects from the scheduler, finishes the requests
    in flight, flushes, then answers DRAINED. Frames still travelling
    (scheduler and TCP buffers) stay leased until recovery. $TERM exits
    at once after one last flush attempt; requests still in flight are
    abandoned (their rows stay 'sending' until their lease expires).
    Exit codes are main's: 0 clean, 1 FATAL (bad endpoint at start), 78
    bad config.
*/
#include "rcd_sender_server.h"
#include "rcd_clock.h"
#include "rcd_db.h"
#include "rcd_events.h"
#include "rcd_gateway.h"
#include "rcd_http.h"
#include "rcd_log.h"
#include "rcd_parts.h"
#include "rcd_proto.h"
#include "rcd_trace.h"

#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_TYPE rcd_sender_config_t
const rcd_config_spec_t rcd_sender_config_specs[] = {
    RCD_CONFIG_DATABASE_URL (S_TYPE, database_url),
    RCD_CONFIG_STR ("dispatch_endpoint", S_TYPE, dispatch_endpoint,
                    "tcp://127.0.0.1:9094",
                    "scheduler's dispatch endpoint (we connect PULL)"),
    RCD_CONFIG_STR ("events_endpoint", S_TYPE, events_endpoint,
                    "tcp://127.0.0.1:9092", "monitor events endpoint"),
    RCD_CONFIG_INT ("dispatch_hwm", S_TYPE, dispatch_hwm, "100", 1, 100000,
                    "dispatch socket receive high-water mark"),
    RCD_CONFIG_INT ("max_inflight", S_TYPE, max_inflight, "512", 1, 65536,
                    "gateway requests in flight at once"),
    RCD_CONFIG_INT ("batch_max", S_TYPE, batch_max, "500", 1, 10000,
                    "outcomes written per database flush"),
    RCD_CONFIG_INT ("batch_wait_ms", S_TYPE, batch_wait_ms, "5", 0, 10000,
                    "longest an outcome waits to be written"),
    RCD_CONFIG_INT ("connect_timeout_ms", S_TYPE, connect_timeout_ms, "5000",
                    50, 600000, "gateway connect timeout"),
    RCD_CONFIG_INT ("request_timeout_ms", S_TYPE, request_timeout_ms, "30000",
                    100, 3600000,
                    "gateway request timeout (plus the typing delay)"),
    RCD_CONFIG_INT ("retry_base_ms", S_TYPE, retry_base_ms, "1000", 1, 86400000,
                    "backoff ceiling of the first retry"),
    RCD_CONFIG_INT ("retry_cap_ms", S_TYPE, retry_cap_ms, "300000", 1, 86400000,
                    "largest retry backoff"),
    RCD_CONFIG_INT ("lease_margin_ms", S_TYPE, lease_margin_ms, "1000", 0,
                    600000, "drop a dispatch with less lease left than this"),
    RCD_CONFIG_INT ("instance_refresh_s", S_TYPE, instance_refresh_s, "10", 1,
                    86400, "instance cache refresh period"),
    RCD_CONFIG_INT ("drain_timeout_ms", S_TYPE, drain_timeout_ms, "20000", 0,
                    600000, "time allowed to drain on SIGTERM"),
    RCD_CONFIG_INT ("circuit_threshold", S_TYPE, circuit_threshold, "5", 1,
                    100000,
                    "consecutive transient gateway failures that open an"
                    " instance's circuit"),
    RCD_CONFIG_INT ("circuit_cooldown_ms", S_TYPE, circuit_cooldown_ms, "30000",
                    100, 86400000,
                    "how long an opened circuit waits for its probe"),
    RCD_CONFIG_INT ("throttle_pause_ms", S_TYPE, throttle_pause_ms, "5000", 1,
                    3600000,
                    "instance pause after a gateway throttle that advised"
                    " no wait"),
    RCD_CONFIG_INT ("part_max_chars", S_TYPE, part_max_chars, "1000", 1, 65536,
                    "characters a part of a long text holds at most"),
    RCD_CONFIG_INT ("parts_delay_ms", S_TYPE, parts_delay_ms, "1000", 0, 600000,
                    "typing delay before each part after the first (the"
                    " message's own delay when that is longer)"),
    RCD_CONFIG_END};
#undef S_TYPE

#define S_INSTANCE_BUCKETS  256
#define S_ANSWER_MAX        2048 /* gateway answer kept in dead letters */
#define S_UNKNOWN_DETAIL    512  /* gateway answer kept in history */
#define S_FLUSH_BACKOFF_MIN 100
#define S_FLUSH_BACKOFF_MAX 5000
#define S_RETRY_AFTER_MAX_S 3600
#define S_UNRECOGNISED_LOGS 20  /* answer bodies logged a second, at most */
#define S_UNRECOGNISED_BODY 512 /* bytes of such a body logged */

/*  --------------------------------------------------------------------
    SQL: one statement per outcome kind, each fenced and writing its own
    history (and dead letters). Parameters are array literals. */

static const char *s_sql_instances =
    "SELECT id, tenant_id, name, provider, base_url, api_key, access_token,"
    "       phone_number_id, api_version, enabled"
    "  FROM instances WHERE id = ANY($1::bigint[])";

#define S_FENCE                                                                \
    " WHERE m.tenant_id = v.tenant_id AND m.id = v.id"                         \
    "   AND m.attempts = v.attempt AND m.status = 'sending'"

static const char *s_sql_sent =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
    "                                $4::text[], $5::text[], $6::int[],"
    "                                $7::int[])"
    "             AS v (id, tenant_id, attempt, pmid, detail, parts,"
    "                   part_limit)),"
    " u AS (UPDATE messages m"
    "          SET status = 'sent', provider_message_id = v.pmid,"
    "              parts_sent = greatest(m.parts_sent, v.parts),"
    "              part_limit = coalesce(nullif(v.part_limit, 0),"
    "                                    m.part_limit),"
    "              sent_at = now(), lease_until = NULL, last_error = NULL,"
    "              updated_at = now()"
    "         FROM v" S_FENCE "       RETURNING m.id, m.tenant_id, v.detail),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'sent', detail FROM u)"
    "SELECT count(*) FROM u";

static const char *s_sql_retry =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
    "                                $4::bigint[], $5::text[], $6::text[])"
    "             AS v (id, tenant_id, attempt, retry_ms, reason, answer)),"
    " u AS (UPDATE messages m"
    "          SET status = CASE WHEN m.attempts >= m.max_attempts"
    "                            THEN 'failed' ELSE 'pending' END,"
    "              send_at = CASE WHEN m.attempts >= m.max_attempts"
    "                             THEN m.send_at"
    "                             ELSE now() + v.retry_ms"
    "                                          * interval '1 millisecond'"
    "                        END,"
    "              lease_until = NULL, last_error = v.reason,"
    "              updated_at = now()"
    "         FROM v" S_FENCE
    "       RETURNING m.id, m.tenant_id, m.status, m.attempts, v.reason,"
    "                 v.answer, v.retry_ms),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, status,"
    "              CASE WHEN status = 'failed'"
    "                   THEN 'attempts exhausted: ' || reason"
    "                   ELSE reason || ', retry in ' || retry_ms || ' ms'"
    "              END FROM u),"
    " d AS (INSERT INTO dead_letters (tenant_id, message_id, reason,"
    "                                 attempts, gateway_answer)"
    "       SELECT tenant_id, id, 'attempts_exhausted: ' || reason,"
    "              attempts, answer FROM u WHERE status = 'failed')"
    "SELECT count(*) FILTER (WHERE status = 'pending'),"
    "       count(*) FILTER (WHERE status = 'failed'),"
    "       string_agg(id::text, ',') FILTER (WHERE status = 'failed')"
    "  FROM u";

static const char *s_sql_failed =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
    "                                $4::text[], $5::text[])"
    "             AS v (id, tenant_id, attempt, reason, answer)),"
    " u AS (UPDATE messages m"
    "          SET status = 'failed', lease_until = NULL,"
    "              last_error = v.reason, updated_at = now()"
    "         FROM v" S_FENCE
    "       RETURNING m.id, m.tenant_id, m.attempts, v.reason, v.answer),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'failed', reason FROM u),"
    " d AS (INSERT INTO dead_letters (tenant_id, message_id, reason,"
    "                                 attempts, gateway_answer)"
    "       SELECT tenant_id, id, reason, attempts, answer FROM u)"
    "SELECT count(*) FROM u";

/*  An answer lost. For a part of a long text, which part and its bytes
    in the text are kept (migration 0012), so the gateway's echo or
    receipt of that part can settle it (rcd_webhook_apply_any). */
static const char *s_sql_unknown =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
    "                                $4::text[], $5::text[], $6::int[],"
    "                                $7::int[], $8::int[], $9::int[],"
    "                                $10::int[])"
    "             AS v (id, tenant_id, attempt, reason, answer, part,"
    "                   part_limit, nparts, part_at, part_len)),"
    " u AS (UPDATE messages m"
    "          SET status = 'unknown', lease_until = NULL,"
    "              last_error = v.reason, updated_at = now(),"
    "              unknown_part = nullif(v.part, 0),"
    "              part_count = nullif(v.nparts, 0),"
    "              unknown_part_at = v.part_at,"
    "              unknown_part_len = v.part_len,"
    "              part_limit = coalesce(nullif(v.part_limit, 0),"
    "                                    m.part_limit)"
    "         FROM v" S_FENCE
    "       RETURNING m.id, m.tenant_id, v.reason, v.answer),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'unknown',"
    "              reason || coalesce(': ' || answer, '') FROM u)"
    "SELECT count(*) FROM u";

/*  One part of a long text accepted, more to come: the progress a retry
    resumes from, written (and committed) before the next part is sent,
    and the part's gateway id, so its receipts find the message
    (migration 0012). Returns the "id:attempt" pairs written, so only
    their next parts go. */
static const char *s_sql_part =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[],"
    "                                $4::int[], $5::int[], $6::text[],"
    "                                $7::text[])"
    "             AS v (id, tenant_id, attempt, parts, part_limit, detail,"
    "                   pmid)),"
    " u AS (UPDATE messages m"
    "          SET parts_sent = v.parts, part_limit = v.part_limit,"
    "              part_ids = CASE WHEN coalesce(v.pmid, '') = ''"
    "                              THEN m.part_ids"
    "                              ELSE array_append(m.part_ids, v.pmid) END,"
    "              updated_at = now()"
    "         FROM v" S_FENCE "   AND m.parts_sent < v.parts"
    "       RETURNING m.id, m.tenant_id, m.attempts, v.detail),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'sending', detail FROM u)"
    "SELECT count(*), string_agg(id || ':' || attempts, ',') FROM u";

/*  A dispatch handed back unsent on DRAIN: attempts is the fencing token
    and only grows, so the wasted attempt is refunded via max_attempts. */
static const char *s_sql_release =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])"
    "             AS v (id, tenant_id, attempt)),"
    " u AS (UPDATE messages m"
    "          SET status = 'pending', lease_until = NULL,"
    "              max_attempts = m.max_attempts + 1, updated_at = now()"
    "         FROM v" S_FENCE "       RETURNING m.id, m.tenant_id),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'pending', 'released unsent by a"
    " draining sender' FROM u)"
    "SELECT count(*) FROM u";

/*  A contact who opted out after the claim: nothing is sent. */
static const char *s_sql_blocked =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])"
    "             AS v (id, tenant_id, attempt)),"
    " u AS (UPDATE messages m"
    "          SET status = 'blocked', lease_until = NULL,"
    "              last_error = 'contact_opted_out', updated_at = now()"
    "         FROM v" S_FENCE "       RETURNING m.id, m.tenant_id),"
    " h AS (INSERT INTO message_history (tenant_id, message_id, status,"
    "                                    detail)"
    "       SELECT tenant_id, id, 'blocked', 'contact opted out before"
    " sending' FROM u)"
    "SELECT count(*) FROM u";

/*  The opt-out re-check of one round of dispatches: the 1-based
    positions of the (tenant, phone) pairs whose contact opted out. */
static const char *s_sql_optout =
    "SELECT v.n FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY"
    "                AS v (tenant_id, phone, n)"
    "  JOIN contacts c ON c.tenant_id = v.tenant_id AND c.phone = v.phone"
    " WHERE c.opted_out";

/*  Circuits and throttle pauses: one row per instance touched by the
    flush, summarised in C in outcome order (s_self_circuits_collect):
    ok = the batch had a success (it closed the circuit and zeroed the
    count before what follows), fails = transient failures after the
    last success, hard = an instance failure after the last success,
    reason = the failure to record, pause_ms = the longest throttle wait
    advised. $7 threshold, $8 cool-down (ms). Rows whose circuit stays
    closed at zero and that are not paused are neither locked nor
    written (the common case: a batch of successes). The old state is
    read under the row lock, so "this statement opened it" is exact
    whatever other senders do at the same time. Returns the instances
    this statement opened. */
static const char *s_sql_circuits =
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[],"
    "                                $4::int[], $5::text[], $6::bigint[])"
    "             AS v (id, ok, fails, hard, reason, pause_ms)),"
    " o AS (SELECT i.id, i.circuit_state, i.circuit_failures"
    "         FROM instances i JOIN v ON v.id = i.id"
    "        WHERE v.fails > 0 OR v.hard <> 0 OR v.pause_ms > 0"
    "           OR i.circuit_state <> 'closed' OR i.circuit_failures <> 0"
    "        ORDER BY i.id FOR UPDATE OF i),"
    " b AS (SELECT o.id, v.reason, v.pause_ms, v.fails, v.hard,"
    "              CASE WHEN v.ok <> 0 THEN 'closed'"
    "                   ELSE o.circuit_state END AS state,"
    "              CASE WHEN v.ok <> 0 THEN 0"
    "                   ELSE o.circuit_failures END + v.fails AS failures"
    "         FROM o JOIN v ON v.id = o.id),"
    " s AS (SELECT b.*, b.state <> 'open'"
    "              AND (b.hard <> 0 OR (b.fails > 0"
    "                   AND (b.state = 'half_open' OR b.failures >= $7)))"
    "              AS opens FROM b),"
    " u AS (UPDATE instances i"
    "          SET circuit_failures = s.failures,"
    "              circuit_state = CASE WHEN s.opens THEN 'open'"
    "                                   ELSE s.state END,"
    "              circuit_until = CASE WHEN s.opens"
    "                                   THEN now() + $8::bigint"
    "                                              * interval '1 millisecond'"
    "                                   WHEN s.state = 'closed' THEN NULL"
    "                                   ELSE i.circuit_until END,"
    "              circuit_reason = CASE WHEN s.opens THEN s.reason"
    "                                    WHEN s.state = 'closed' THEN NULL"
    "                                    ELSE i.circuit_reason END,"
    "              circuit_opened_at = CASE WHEN s.opens THEN now()"
    "                                       WHEN s.state = 'closed' THEN NULL"
    "                                       ELSE i.circuit_opened_at END,"
    "              paused_until = CASE WHEN s.pause_ms > 0"
    "                                  THEN greatest(i.paused_until, now()"
    "                                       + s.pause_ms"
    "                                         * interval '1 millisecond')"
    "                                  ELSE i.paused_until END"
    "         FROM s WHERE i.id = s.id"
    "       RETURNING i.id, i.tenant_id, s.opens, s.reason)"
    "SELECT id, tenant_id, reason FROM u WHERE opens";

/*  --------------------------------------------------------------------
    State */

/*  Outcome kinds as written: the gateway's, plus a release on DRAIN. */
typedef enum {
    S_OUT_SENT = 0,
    S_OUT_RETRY,  /* transient */
    S_OUT_FAILED, /* permanent or instance */
    S_OUT_UNKNOWN,
    S_OUT_RELEASE,
    S_OUT_BLOCKED, /* the contact opted out after the claim */
    S_OUT_PART,    /* a part of a long text accepted, more to come */
    S_OUT_KINDS
} s_out_kind_t;

/*  What an outcome says about its instance's circuit. */
typedef enum {
    S_CIRCUIT_NONE = 0, /* nothing: no request, a throttle, an answer */
    S_CIRCUIT_SUCCESS,  /* the gateway accepted a message */
    S_CIRCUIT_FAIL,     /* a transient gateway failure */
    S_CIRCUIT_HARD      /* the instance is broken (auth, banned, gone) */
} s_circuit_effect_t;

/*  One instance's summary of a flush (s_sql_circuits). */
typedef struct {
    int64_t id;
    int64_t tenant_id;
    bool ok;                 /* a success came */
    int64_t fails;           /* transient failures after the last success */
    bool hard;               /* an instance failure after the last success */
    int64_t pause_ms;        /* longest throttle wait advised, 0: none */
    const char *fail_reason; /* the last of fails (points into out) */
    const char *hard_reason; /* the last hard one (points into out) */
    bool opened;             /* this flush's statement opened its circuit */
    char opened_reason[RCD_GATEWAY_REASON_MAX];
} s_circuit_t;

/*  One instances row, cached by id. */
typedef struct s_instance {
    struct s_instance *next; /* bucket chain */
    int64_t id;
    int64_t tenant_id;
    bool found; /* false: no such row (negative entry) */
    bool enabled;
    char *strings;             /* one block holding gw's strings */
    rcd_gateway_instance_t gw; /* points into strings */
} s_instance_t;

/*  A request in flight. */
typedef struct {
    int64_t id;
    int64_t tenant_id;
    int64_t instance_id;
    uint32_t attempt;
    rcd_gateway_provider_t provider;
    char digits[24];               /* recipient without '+', for wa_id */
    char trace_id[RCD_TRACE_SIZE]; /* the dispatch's, "" when none */
    int next_free;                 /* free list link, -1 ends */
    /* A long text (text set) keeps its slot from part to part: */
    char *text;             /* the whole text, owned; NULL: one part */
    uint32_t part;          /* the part in flight or next (0-based) */
    uint32_t nparts;        /* parts of the text */
    uint32_t part_limit;    /* characters a part */
    uint32_t delay_ms;      /* the message's typing delay */
    int64_t lease_until_ms; /* the dispatch's lease (unix ms) */
    bool parked;            /* part accepted, its progress being written */
    bool resumable;         /* that progress committed: next part may go */
    bool waiting;           /* committed, its next part not yet sent */
    int64_t ready_at_ms;    /* mono: the next part not before */
} s_job_t;

/*  One outcome waiting to be written. */
typedef struct {
    s_out_kind_t kind;
    int64_t id;
    int64_t tenant_id;
    int64_t instance_id;
    uint32_t attempt;
    uint32_t parts;             /* parts accepted so far (0: one-part text);
                                   S_OUT_UNKNOWN: the part whose answer
                                   was lost */
    uint32_t part_limit;        /* the split's limit (0: one-part text) */
    uint32_t nparts;            /* S_OUT_UNKNOWN: parts of the text */
    uint32_t part_at, part_len; /* S_OUT_UNKNOWN: that part's bytes */
    int64_t retry_ms;           /* S_OUT_RETRY: backoff */
    int64_t pause_ms;           /* throttled: instance pause advised */
    s_circuit_effect_t circuit; /* what it says about the instance */
    int64_t latency_us;         /* request time, -1: no request made */
    rcd_gateway_kind_t gw_kind; /* the gateway's verdict */
    bool throttled;             /* the gateway throttles the instance */
    bool exhausted;             /* S_OUT_RETRY: attempts ran out, so the
                                   statement failed it instead */
    char reason[RCD_GATEWAY_REASON_MAX];
    char pmid[RCD_GATEWAY_ID_MAX];
    char *detail;                  /* history detail (sent) or gateway
                                      answer (others); owned, may be NULL */
    char to[40];                   /* recipient, masked for the log */
    char trace_id[RCD_TRACE_SIZE]; /* for the log, "" when none */
} s_outcome_t;

typedef struct {
    zsock_t *pipe; /* actor pipe */
    zsock_t *pull; /* dispatches */
    const rcd_sender_config_t *cfg;
    rcd_events_t *events;
    rcd_db_t *db;
    rcd_http_t *http;
    rcd_gateway_request_t req; /* reused for every request */

    s_instance_t *instances[S_INSTANCE_BUCKETS];
    int64_t refresh_at_ms; /* next instance cache refresh (mono) */

    s_job_t *jobs; /* max_inflight slots */
    int free_job;  /* head of the free list */
    size_t jobs_busy;

    s_outcome_t *out; /* batch_max + max_inflight slots */
    size_t nout;
    size_t out_cap;
    s_circuit_t *circuits; /* out_cap slots, per flush */
    size_t ncircuits;
    /* the circuit and throttle settings, defaults where a config built
       in code left them 0 */
    int64_t circuit_threshold;
    int64_t circuit_cooldown_ms;
    int64_t throttle_pause_ms;
    int64_t part_max_chars; /* characters a part of a long text */

    /* one round of dispatches (s_self_handle_dispatch) */
    rcd_proto_msg_t *round;
    s_instance_t **round_inst; /* each one's instance, NULL: settled */
    size_t *round_pos;         /* opt-out check position -> round index */
    size_t round_cap;
    int64_t first_out_ms;      /* mono time of the oldest buffered */
    int64_t flush_retry_at_ms; /* after a failed flush (mono), 0: none */
    int flush_backoff_ms;

    int64_t heartbeat_at_ms; /* next heartbeat (mono) */
    uint64_t rng;            /* xorshift state for jitter */
    bool pull_connected;
    bool draining;   /* DRAIN received */
    bool drained;    /* DRAINED sent */
    bool terminated; /* $TERM received */

    /* counters published once a second (s_self_emit_counters) */
    uint64_t malformed;
    uint64_t expired;
    uint64_t n_sent, n_retry, n_failed, n_unknown, n_released, n_stale;
    uint64_t n_blocked;
    uint64_t n_parts;             /* parts accepted before a text's last */
    size_t parked;                /* jobs whose part progress is unwritten */
    size_t waiting;               /* jobs waiting to send their next part */
    int64_t parts_wake_ms;        /* mono: the next part due, 0: none */
    uint64_t n_unrecognised;      /* gateway answers no rule names */
    uint64_t unrecognised_logged; /* bodies logged this second */
    uint64_t n_requests;          /* send.latency_us count */
    int64_t latency_sum_us;       /* send.latency_us value */
    /* send.latency_bucket: requests and summed us per bucket, the last
       one past every bound */
    uint64_t bucket_n[RCD_LATENCY_BUCKETS + 1];
    int64_t bucket_us[RCD_LATENCY_BUCKETS + 1];
    /* totals, logged at exit */
    uint64_t total_sent, total_retry, total_failed, total_unknown;
    uint64_t total_stale, total_released, total_blocked;
} self_t;

/*  --------------------------------------------------------------------
    Small helpers */

static uint64_t
s_self_random (self_t *self)
{
    uint64_t x = self->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/*  Exponential backoff with full jitter (uniform in [0, ceiling]), or the
    gateway's advice when it gave one. */
static int64_t
s_self_backoff_ms (self_t *self, uint32_t attempt, int retry_after_s)
{
    if (retry_after_s > 0) {
        if (retry_after_s > S_RETRY_AFTER_MAX_S)
            retry_after_s = S_RETRY_AFTER_MAX_S;
        return (int64_t)retry_after_s * 1000;
    }
    int64_t ceiling = self->cfg->retry_base_ms;
    for (uint32_t i = 1; i < attempt && ceiling < self->cfg->retry_cap_ms; i++)
        ceiling *= 2;
    if (ceiling > self->cfg->retry_cap_ms)
        ceiling = self->cfg->retry_cap_ms;
    return (int64_t)(s_self_random (self) % (uint64_t)(ceiling + 1));
}

/*  --------------------------------------------------------------------
    Instance cache */

static void
s_instance_destroy (s_instance_t **inst_p)
{
    s_instance_t *inst = *inst_p;
    if (!inst)
        return;
    free (inst->strings);
    free (inst);
    *inst_p = NULL;
}

static s_instance_t *
s_self_instance_find (self_t *self, int64_t id)
{
    for (s_instance_t *i = self->instances[(uint64_t)id % S_INSTANCE_BUCKETS];
         i; i = i->next)
        if (i->id == id)
            return i;
    return NULL;
}

static s_instance_t *
s_self_instance_add (self_t *self, int64_t id)
{
    s_instance_t *inst = calloc (1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->id = id;
    s_instance_t **bucket = &self->instances[(uint64_t)id % S_INSTANCE_BUCKETS];
    inst->next = *bucket;
    *bucket = inst;
    return inst;
}

/*  Fills an entry from one row of s_sql_instances. */
static int
s_instance_set (s_instance_t *inst, rcd_db_res_t *res, int row)
{
    const char *cols[7];
    size_t total = 0;
    for (int c = 0; c < 7; c++) {
        cols[c] = rcd_db_res_value (res, row, 2 + c);
        total += (cols[c] ? strlen (cols[c]) : 0) + 1;
    }
    rcd_gateway_provider_t provider;
    if (!rcd_gateway_provider_parse (cols[1], &provider))
        return -1;
    char *strings = malloc (total);
    if (!strings)
        return -1;
    const char *ptrs[7];
    char *p = strings;
    for (int c = 0; c < 7; c++) {
        size_t n = cols[c] ? strlen (cols[c]) : 0;
        memcpy (p, cols[c] ? cols[c] : "", n + 1);
        ptrs[c] = cols[c] ? p : NULL;
        p += n + 1;
    }
    free (inst->strings);
    inst->strings = strings;
    inst->tenant_id = rcd_db_res_int64 (res, row, 1);
    const char *enabled = rcd_db_res_value (res, row, 9);
    inst->enabled = enabled && enabled[0] == 't';
    inst->found = true;
    inst->gw = (rcd_gateway_instance_t){
        .provider = provider,
        .name = ptrs[0],
        .base_url = ptrs[2],
        .api_key = ptrs[3],
        .access_token = ptrs[4],
        .phone_number_id = ptrs[5],
        .api_version = ptrs[6],
    };
    return 0;
}

/*  Loads the given instance ids in one query; ids without a row become
    negative entries. Returns 0 or -1 (database unavailable). */
static int
s_self_instances_load (self_t *self, const int64_t *ids, size_t count)
{
    char *array = rcd_db_int64_array (ids, count);
    if (!array)
        return -1;
    const char *params[] = {array};
    rcd_db_res_t *res = NULL;
    int rc = rcd_db_run (self->db, "sender_instances", 1, params, &res);
    free (array);
    if (rc != 0) {
        rcd_log_warn ("instance lookup failed", "{s:s}", "error",
                      rcd_db_error (self->db));
        return -1;
    }
    for (size_t k = 0; k < count; k++) {
        s_instance_t *inst = s_self_instance_find (self, ids[k]);
        if (!inst)
            inst = s_self_instance_add (self, ids[k]);
        if (inst)
            inst->found = false; /* until a row says otherwise */
    }
    for (int row = 0; row < rcd_db_res_rows (res); row++) {
        s_instance_t *inst =
            s_self_instance_find (self, rcd_db_res_int64 (res, row, 0));
        if (inst && s_instance_set (inst, res, row) != 0)
            rcd_log_warn ("instance unusable", "{s:I}", "instance_id",
                          (json_int_t)inst->id);
    }
    rcd_db_res_destroy (&res);
    return 0;
}

/*  The cached instance, loading it on a miss. NULL when the database
    could not be asked. */
static s_instance_t *
s_self_instance (self_t *self, int64_t id)
{
    s_instance_t *inst = s_self_instance_find (self, id);
    if (inst)
        return inst;
    if (s_self_instances_load (self, &id, 1) != 0)
        return NULL;
    return s_self_instance_find (self, id);
}

/*  Re-reads every cached instance (credentials, enabled) in one query. */
static void
s_self_instances_refresh (self_t *self)
{
    size_t count = 0;
    for (size_t b = 0; b < S_INSTANCE_BUCKETS; b++)
        for (s_instance_t *i = self->instances[b]; i; i = i->next)
            count++;
    if (count == 0)
        return;
    int64_t *ids = malloc (count * sizeof *ids);
    if (!ids)
        return;
    size_t n = 0;
    for (size_t b = 0; b < S_INSTANCE_BUCKETS; b++)
        for (s_instance_t *i = self->instances[b]; i; i = i->next)
            ids[n++] = i->id;
    (void)s_self_instances_load (self, ids, n);
    free (ids);
}

/*  --------------------------------------------------------------------
    Outcomes */

/*  Takes the next outcome slot. The buffer is sized so it cannot
    overflow: we admit a dispatch only while nout < batch_max and fewer
    than max_inflight are in flight, and each yields one outcome. to and
    trace_id are only logged (masked; a malformed trace is left out). */
static s_outcome_t *
s_self_outcome (self_t *self, s_out_kind_t kind, int64_t id, int64_t tenant_id,
                int64_t instance_id, uint32_t attempt, const char *reason,
                const char *to, const char *trace_id)
{
    assert (self->nout < self->out_cap);
    if (self->nout == 0)
        self->first_out_ms = rcd_clock_mono_ms ();
    s_outcome_t *o = &self->out[self->nout++];
    memset (o, 0, sizeof *o);
    o->kind = kind;
    o->id = id;
    o->tenant_id = tenant_id;
    o->instance_id = instance_id;
    o->attempt = attempt;
    o->latency_us = -1;
    snprintf (o->reason, sizeof o->reason, "%s", reason ? reason : "");
    rcd_log_mask_phone (to, o->to, sizeof o->to);
    if (rcd_trace_valid (trace_id))
        memcpy (o->trace_id, trace_id, RCD_TRACE_SIZE);
    return o;
}

/*  An outcome for dispatch d. */
static s_outcome_t *
s_self_outcome_of (self_t *self, s_out_kind_t kind, const rcd_dispatch_t *d,
                   const char *reason)
{
    return s_self_outcome (self, kind, (int64_t)d->id, (int64_t)d->tenant_id,
                           (int64_t)d->instance_id, d->attempt, reason, d->to,
                           d->trace_id);
}

/*  A transient failure decided before any request was made. */
static void
s_self_fail_transient (self_t *self, const rcd_dispatch_t *d,
                       const char *reason)
{
    s_outcome_t *o = s_self_outcome_of (self, S_OUT_RETRY, d, reason);
    o->gw_kind = RCD_GATEWAY_TRANSIENT;
    o->retry_ms = s_self_backoff_ms (self, d->attempt, 0);
}

static void
s_self_fail_permanent (self_t *self, const rcd_dispatch_t *d,
                       const char *reason)
{
    s_outcome_t *o = s_self_outcome_of (self, S_OUT_FAILED, d, reason);
    o->gw_kind = RCD_GATEWAY_PERMANENT;
}

/*  Marks the retry outcomes whose message the retry statement failed
    instead, its attempts used up: ids is its "1,2,3" (NULL: none). */
static void
s_self_mark_exhausted (self_t *self, const char *ids)
{
    for (size_t i = 0; i < self->nout; i++)
        self->out[i].exhausted = false;
    while (ids && *ids) {
        char *end = NULL;
        long long id = strtoll (ids, &end, 10);
        if (end == ids)
            break;
        for (size_t i = 0; i < self->nout; i++)
            if (self->out[i].kind == S_OUT_RETRY && self->out[i].id == id)
                self->out[i].exhausted = true;
        ids = *end == ',' ? end + 1 : end;
    }
}

/*  Marks the parked jobs whose part progress the part statement wrote:
    ids is its "id:attempt,..." (NULL: none). The others were fenced off
    (a later attempt owns the message): their next parts never go. */
static void
s_self_mark_resumable (self_t *self, const char *ids)
{
    while (ids && *ids) {
        char *end = NULL;
        long long id = strtoll (ids, &end, 10);
        if (end == ids || *end != ':')
            break;
        const char *at = end + 1;
        long long attempt = strtoll (at, &end, 10);
        if (end == at)
            break;
        for (int i = 0; i < self->cfg->max_inflight; i++) {
            s_job_t *job = &self->jobs[i];
            if (job->parked && job->id == id &&
                (long long)job->attempt == attempt)
                job->resumable = true;
        }
        ids = *end == ',' ? end + 1 : end;
    }
}

/*  Builds the parameter arrays of one kind and runs its statement.
    Returns rows changed (first column) or -1. */
static int64_t
s_self_flush_kind (self_t *self, s_out_kind_t kind, int64_t *second)
{
    static const char *names[S_OUT_KINDS] = {
        "sender_sent",    "sender_retry",   "sender_failed", "sender_unknown",
        "sender_release", "sender_blocked", "sender_part"};
    size_t count = 0;
    for (size_t i = 0; i < self->nout; i++)
        count += self->out[i].kind == kind;
    if (count == 0)
        return 0;
    int64_t *ids = malloc (count * sizeof *ids);
    int64_t *tenants = malloc (count * sizeof *tenants);
    int64_t *attempts = malloc (count * sizeof *attempts);
    int64_t *retry = malloc (count * sizeof *retry);
    int64_t *parts = malloc (count * sizeof *parts);
    int64_t *plimit = malloc (count * sizeof *plimit);
    /* S_OUT_UNKNOWN: parts of the text, the lost part's start and length */
    int64_t *lost =
        kind == S_OUT_UNKNOWN ? malloc (3 * count * sizeof *lost) : NULL;
    char *a_ids = NULL, *a_tenants = NULL, *a_attempts = NULL, *a_retry = NULL;
    char *a_parts = NULL, *a_plimit = NULL;
    char *a_lost[3] = {NULL, NULL, NULL};
    char *t1 = NULL, *t2 = NULL;
    size_t t1_len = 0, t1_cap = 0, t2_len = 0, t2_cap = 0;
    int64_t rc = -1;
    if (!ids || !tenants || !attempts || !retry || !parts || !plimit ||
        (kind == S_OUT_UNKNOWN && !lost))
        goto cleanup;
    size_t n = 0;
    for (size_t i = 0; i < self->nout; i++) {
        const s_outcome_t *o = &self->out[i];
        if (o->kind != kind)
            continue;
        ids[n] = o->id;
        tenants[n] = o->tenant_id;
        attempts[n] = o->attempt;
        retry[n] = o->retry_ms;
        parts[n] = o->parts;
        plimit[n] = o->part_limit;
        if (lost) {
            lost[n] = o->nparts;
            lost[count + n] = o->part_at;
            lost[2 * count + n] = o->part_len;
        }
        n++;
        int e = 0;
        if (kind == S_OUT_PART) {
            e |= rcd_db_text_array_append (&t2, &t2_len, &t2_cap, o->detail);
            e |= rcd_db_text_array_append (&t1, &t1_len, &t1_cap, o->pmid);
        }
        else if (kind == S_OUT_SENT) {
            e |= rcd_db_text_array_append (&t1, &t1_len, &t1_cap, o->pmid);
            e |= rcd_db_text_array_append (&t2, &t2_len, &t2_cap, o->detail);
        }
        else if (kind != S_OUT_RELEASE && kind != S_OUT_BLOCKED) {
            e |= rcd_db_text_array_append (&t1, &t1_len, &t1_cap, o->reason);
            e |= rcd_db_text_array_append (&t2, &t2_len, &t2_cap, o->detail);
        }
        if (e)
            goto cleanup;
    }
    a_ids = rcd_db_int64_array (ids, n);
    a_tenants = rcd_db_int64_array (tenants, n);
    a_attempts = rcd_db_int64_array (attempts, n);
    a_retry = rcd_db_int64_array (retry, n);
    a_parts = rcd_db_int64_array (parts, n);
    a_plimit = rcd_db_int64_array (plimit, n);
    if (!a_ids || !a_tenants || !a_attempts || !a_retry || !a_parts ||
        !a_plimit)
        goto cleanup;
    if (kind == S_OUT_UNKNOWN)
        for (int k = 0; k < 3; k++)
            if (!(a_lost[k] = rcd_db_int64_array (lost + (size_t)k * count, n)))
                goto cleanup;
    const char *params[10] = {a_ids, a_tenants, a_attempts};
    int nparams = 3;
    if (kind == S_OUT_PART) {
        params[nparams++] = a_parts;
        params[nparams++] = a_plimit;
        params[nparams++] = t2;
        params[nparams++] = t1;
    }
    else if (kind == S_OUT_SENT) {
        params[nparams++] = t1;
        params[nparams++] = t2;
        params[nparams++] = a_parts;
        params[nparams++] = a_plimit;
    }
    else if (kind == S_OUT_RETRY) {
        params[nparams++] = a_retry;
        params[nparams++] = t1;
        params[nparams++] = t2;
    }
    else if (kind != S_OUT_RELEASE && kind != S_OUT_BLOCKED) {
        params[nparams++] = t1;
        params[nparams++] = t2;
        if (kind == S_OUT_UNKNOWN) {
            params[nparams++] = a_parts;
            params[nparams++] = a_plimit;
            for (int k = 0; k < 3; k++)
                params[nparams++] = a_lost[k];
        }
    }
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (self->db, names[kind], nparams, params, &res) == 0) {
        rc = rcd_db_res_int64 (res, 0, 0);
        if (second)
            *second =
                rcd_db_res_cols (res) > 1 ? rcd_db_res_int64 (res, 0, 1) : 0;
        if (kind == S_OUT_RETRY && rcd_db_res_cols (res) > 2)
            s_self_mark_exhausted (self, rcd_db_res_value (res, 0, 2));
        if (kind == S_OUT_PART)
            s_self_mark_resumable (self, rcd_db_res_value (res, 0, 1));
        rcd_db_res_destroy (&res);
    }
cleanup:
    for (int k = 0; k < 3; k++)
        free (a_lost[k]);
    free (lost);
    free (ids);
    free (tenants);
    free (attempts);
    free (retry);
    free (parts);
    free (plimit);
    free (a_parts);
    free (a_plimit);
    free (a_ids);
    free (a_tenants);
    free (a_attempts);
    free (a_retry);
    free (t1);
    free (t2);
    return rc;
}

/*  Per-instance news of one flush: failures and throttles, one event
    each rather than one per message. */
static void
s_self_emit_instance_events (self_t *self)
{
    for (size_t i = 0; i < self->nout; i++) {
        const s_outcome_t *o = &self->out[i];
        const char *kind = o->gw_kind == RCD_GATEWAY_INSTANCE
                               ? "instance.failure"
                           : o->throttled ? "instance.throttled"
                                          : NULL;
        if (!kind)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = self->out[j].instance_id == o->instance_id &&
                   self->out[j].gw_kind == o->gw_kind &&
                   self->out[j].throttled == o->throttled &&
                   strcmp (self->out[j].reason, o->reason) == 0;
        if (seen)
            continue;
        uint64_t count = 0;
        for (size_t j = i; j < self->nout; j++)
            count += self->out[j].instance_id == o->instance_id &&
                     self->out[j].gw_kind == o->gw_kind &&
                     self->out[j].throttled == o->throttled &&
                     strcmp (self->out[j].reason, o->reason) == 0;
        char detail[128];
        snprintf (detail, sizeof detail, "instance=%lld reason=%s",
                  (long long)o->instance_id, o->reason);
        rcd_events_emit (self->events, kind, count, (uint64_t)o->tenant_id,
                         o->instance_id, detail);
        if (o->gw_kind == RCD_GATEWAY_INSTANCE)
            rcd_log_warn ("instance failing", "{s:I, s:s, s:I}", "instance_id",
                          (json_int_t)o->instance_id, "reason", o->reason,
                          "count", (json_int_t)count);
    }
}

/*  Summarises the buffered outcomes per instance, in outcome order
    (the order answers came in): consecutive failures are counted from
    the last success on. Returns how many instances need the statement. */
static size_t
s_self_circuits_collect (self_t *self)
{
    self->ncircuits = 0;
    for (size_t i = 0; i < self->nout; i++) {
        const s_outcome_t *o = &self->out[i];
        if (o->circuit == S_CIRCUIT_NONE && o->pause_ms <= 0)
            continue;
        s_circuit_t *c = NULL;
        for (size_t k = 0; k < self->ncircuits && !c; k++)
            if (self->circuits[k].id == o->instance_id)
                c = &self->circuits[k];
        if (!c) {
            assert (self->ncircuits < self->out_cap);
            c = &self->circuits[self->ncircuits++];
            memset (c, 0, sizeof *c);
            c->id = o->instance_id;
            c->tenant_id = o->tenant_id;
        }
        if (o->pause_ms > c->pause_ms)
            c->pause_ms = o->pause_ms;
        switch (o->circuit) {
            case S_CIRCUIT_SUCCESS:
                c->ok = true;
                c->fails = 0;
                c->hard = false;
                c->fail_reason = c->hard_reason = NULL;
                break;
            case S_CIRCUIT_FAIL:
                c->fails++;
                c->fail_reason = o->reason;
                break;
            case S_CIRCUIT_HARD:
                c->hard = true;
                c->hard_reason = o->reason;
                break;
            case S_CIRCUIT_NONE:
                break;
        }
    }
    return self->ncircuits;
}

/*  Runs s_sql_circuits for the collected instances and marks those it
    opened. Returns 0 or -1. */
static int
s_self_circuits_write (self_t *self)
{
    size_t n = self->ncircuits;
    int64_t *nums = malloc (5 * n * sizeof *nums);
    char *a[5] = {NULL};
    char *reasons = NULL;
    size_t r_len = 0, r_cap = 0;
    int rc = -1;
    if (!nums)
        goto cleanup;
    for (size_t k = 0; k < n; k++) {
        const s_circuit_t *c = &self->circuits[k];
        nums[k] = c->id;
        nums[n + k] = c->ok;
        nums[2 * n + k] = c->fails;
        nums[3 * n + k] = c->hard;
        nums[4 * n + k] = c->pause_ms;
        const char *reason = c->hard ? c->hard_reason : c->fail_reason;
        if (rcd_db_text_array_append (&reasons, &r_len, &r_cap, reason) != 0)
            goto cleanup;
    }
    for (int p = 0; p < 5; p++)
        if (!(a[p] = rcd_db_int64_array (nums + (size_t)p * n, n)))
            goto cleanup;
    char threshold[24], cooldown[24];
    snprintf (threshold, sizeof threshold, "%lld",
              (long long)self->circuit_threshold);
    snprintf (cooldown, sizeof cooldown, "%lld",
              (long long)self->circuit_cooldown_ms);
    const char *params[8] = {a[0],    a[1], a[2],      a[3],
                             reasons, a[4], threshold, cooldown};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (self->db, "sender_circuits", 8, params, &res) != 0)
        goto cleanup;
    for (int row = 0; row < rcd_db_res_rows (res); row++) {
        int64_t id = rcd_db_res_int64 (res, row, 0);
        for (size_t k = 0; k < n; k++) {
            s_circuit_t *c = &self->circuits[k];
            if (c->id != id)
                continue;
            c->opened = true;
            c->tenant_id = rcd_db_res_int64 (res, row, 1);
            const char *reason = rcd_db_res_value (res, row, 2);
            snprintf (c->opened_reason, sizeof c->opened_reason, "%s",
                      reason ? reason : "");
        }
    }
    rcd_db_res_destroy (&res);
    rc = 0;
cleanup:
    free (nums);
    for (int p = 0; p < 5; p++)
        free (a[p]);
    free (reasons);
    return rc;
}

/*  After the commit: one event and one log line per circuit opened. */
static void
s_self_emit_circuit_events (self_t *self)
{
    for (size_t k = 0; k < self->ncircuits; k++) {
        const s_circuit_t *c = &self->circuits[k];
        if (!c->opened)
            continue;
        char detail[128];
        snprintf (detail, sizeof detail, "instance=%lld reason=%s",
                  (long long)c->id, c->opened_reason);
        rcd_events_emit (self->events, "instance.circuit_open", 1,
                         (uint64_t)c->tenant_id, c->id, detail);
        rcd_log_warn ("circuit opened", "{s:I, s:s, s:I}", "instance_id",
                      (json_int_t)c->id, "reason", c->opened_reason,
                      "cooldown_ms", (json_int_t)self->circuit_cooldown_ms);
    }
}

/*  After the commit: one line per outcome, with the message's trace id.
    A line says what this sender made of the dispatch (the gateway's
    answer, or why no request was made); a result the fence rejected
    (outcome.stale: another attempt owns the message now) is logged the
    same and counted apart. */
static void
s_self_log_outcomes (self_t *self)
{
    static const char *events[S_OUT_KINDS] = {
        [S_OUT_SENT] = "message.sent",
        [S_OUT_RETRY] = "message.retry",
        [S_OUT_FAILED] = "message.failed",
        [S_OUT_UNKNOWN] = "message.unknown",
        [S_OUT_RELEASE] = "message.released",
        [S_OUT_BLOCKED] = "message.blocked",
        [S_OUT_PART] = "message.part_sent"};
    for (size_t i = 0; i < self->nout; i++) {
        const s_outcome_t *o = &self->out[i];
        bool failed = o->kind == S_OUT_FAILED || o->exhausted;
        rcd_log_level_t level =
            failed || o->kind == S_OUT_UNKNOWN ? RCD_LOG_WARN : RCD_LOG_INFO;
        if (!rcd_log_enabled (level))
            continue;
        json_t *fields =
            json_pack ("{s:I, s:I, s:I, s:I, s:s}", "message_id",
                       (json_int_t)o->id, "tenant_id", (json_int_t)o->tenant_id,
                       "instance_id", (json_int_t)o->instance_id, "attempt",
                       (json_int_t)o->attempt, "to", o->to);
        if (!fields)
            continue;
        if (o->kind == S_OUT_SENT || o->kind == S_OUT_PART)
            json_object_set_new (fields, "provider_message_id",
                                 json_string (o->pmid));
        if (o->parts > 0)
            json_object_set_new (fields, "parts_sent",
                                 json_integer ((json_int_t)o->parts));
        else if (o->kind != S_OUT_RELEASE)
            json_object_set_new (fields, "reason", json_string (o->reason));
        if (o->exhausted)
            json_object_set_new (fields, "attempts_exhausted", json_true ());
        else if (o->kind == S_OUT_RETRY)
            json_object_set_new (fields, "retry_ms",
                                 json_integer ((json_int_t)o->retry_ms));
        if (o->latency_us >= 0)
            json_object_set_new (fields, "latency_us",
                                 json_integer ((json_int_t)o->latency_us));
        if (o->trace_id[0])
            json_object_set_new (fields, "trace_id", json_string (o->trace_id));
        rcd_log_write (level, failed ? "message.failed" : events[o->kind], "o",
                       fields);
    }
}

static void
s_self_settle_parked (self_t *self);

/*  Writes every buffered outcome in one transaction. On failure keeps
    them all and schedules a retry; returns 0 or -1. */
static int
s_self_flush (self_t *self)
{
    if (self->nout == 0)
        return 0;
    size_t per_kind[S_OUT_KINDS] = {0};
    int kinds = 0;
    for (size_t i = 0; i < self->nout; i++)
        if (per_kind[self->out[i].kind]++ == 0)
            kinds++;
    size_t ncircuits = s_self_circuits_collect (self);
    /* One statement is atomic on its own: skip BEGIN/COMMIT round trips
       when one kind and no circuit or pause is to be written. */
    bool tx = kinds + (ncircuits > 0) > 1;
    int64_t changed[S_OUT_KINDS] = {0};
    int64_t exhausted = 0;
    if (tx && rcd_db_begin (self->db) != 0)
        goto failed;
    for (int k = 0; k < S_OUT_KINDS; k++) {
        if (!per_kind[k])
            continue;
        changed[k] = s_self_flush_kind (self, (s_out_kind_t)k,
                                        k == S_OUT_RETRY ? &exhausted : NULL);
        if (changed[k] < 0)
            goto failed;
    }
    /* Last, so the instance rows (which the scheduler updates at every
       claim) stay locked for the shortest time. */
    if (ncircuits > 0 && s_self_circuits_write (self) != 0)
        goto failed;
    if (tx && rcd_db_commit (self->db) != 0)
        goto failed;

    /* Committed: account for it. */
    int64_t retried = changed[S_OUT_RETRY];
    int64_t failed = changed[S_OUT_FAILED] + exhausted;
    int64_t written = changed[S_OUT_SENT] + retried + exhausted +
                      changed[S_OUT_FAILED] + changed[S_OUT_UNKNOWN] +
                      changed[S_OUT_RELEASE] + changed[S_OUT_BLOCKED] +
                      changed[S_OUT_PART];
    int64_t stale = (int64_t)self->nout - written;
    uint64_t requests = 0;
    int64_t latency_sum = 0;
    for (size_t i = 0; i < self->nout; i++)
        if (self->out[i].latency_us >= 0) {
            int64_t us = self->out[i].latency_us;
            requests++;
            latency_sum += us;
            size_t b = 0;
            while (b < RCD_LATENCY_BUCKETS &&
                   (double)us > rcd_latency_bounds_s[b] * 1e6)
                b++;
            self->bucket_n[b]++;
            self->bucket_us[b] += us;
        }
    self->n_sent += (uint64_t)changed[S_OUT_SENT];
    self->n_retry += (uint64_t)retried;
    self->n_failed += (uint64_t)failed;
    self->n_unknown += (uint64_t)changed[S_OUT_UNKNOWN];
    self->n_released += (uint64_t)changed[S_OUT_RELEASE];
    self->n_blocked += (uint64_t)changed[S_OUT_BLOCKED];
    self->n_parts += (uint64_t)changed[S_OUT_PART];
    if (stale > 0) {
        self->n_stale += (uint64_t)stale;
        rcd_log_info ("stale outcomes ignored", "{s:I}", "count",
                      (json_int_t)stale);
    }
    self->n_requests += requests;
    self->latency_sum_us += latency_sum;
    s_self_emit_instance_events (self);
    s_self_emit_circuit_events (self);
    s_self_log_outcomes (self);
    self->total_sent += (uint64_t)changed[S_OUT_SENT];
    self->total_retry += (uint64_t)retried;
    self->total_failed += (uint64_t)failed;
    self->total_unknown += (uint64_t)changed[S_OUT_UNKNOWN];
    self->total_released += (uint64_t)changed[S_OUT_RELEASE];
    self->total_blocked += (uint64_t)changed[S_OUT_BLOCKED];
    self->total_stale += stale > 0 ? (uint64_t)stale : 0;
    for (size_t i = 0; i < self->nout; i++)
        free (self->out[i].detail);
    self->nout = 0;
    self->ncircuits = 0;
    self->flush_retry_at_ms = 0;
    self->flush_backoff_ms = S_FLUSH_BACKOFF_MIN;
    s_self_settle_parked (self);
    return 0;

failed:
    rcd_db_rollback (self->db);
    rcd_log_warn ("outcome flush failed", "{s:s, s:I, s:i}", "error",
                  rcd_db_error (self->db), "outcomes", (json_int_t)self->nout,
                  "retry_ms", self->flush_backoff_ms);
    rcd_events_emit (self->events, "outcome.flush_failed", self->nout, 0, 0,
                     NULL);
    self->flush_retry_at_ms = rcd_clock_mono_ms () + self->flush_backoff_ms;
    self->flush_backoff_ms *= 2;
    if (self->flush_backoff_ms > S_FLUSH_BACKOFF_MAX)
        self->flush_backoff_ms = S_FLUSH_BACKOFF_MAX;
    return -1;
}

/*  --------------------------------------------------------------------
    Dispatches and requests */

/*  True while we take more work from the dispatch socket. Not while a
    flush is failing: every send we could not record widens the window
    in which recovery may send a message twice. */
static bool
s_self_admitting (self_t *self)
{
    return !self->draining && self->pull_connected &&
           self->flush_retry_at_ms == 0 &&
           self->jobs_busy < (size_t)self->cfg->max_inflight &&
           self->nout < (size_t)self->cfg->batch_max;
}

/*  First look at one dispatch: drop it, fail it at once, or return its
    instance (it goes on to the opt-out check, then to the gateway). */
static s_instance_t *
s_self_screen_dispatch (self_t *self, const rcd_dispatch_t *d)
{
    if (d->id == 0 || d->attempt == 0) {
        self->malformed++;
        return NULL;
    }
    if (d->lease_until_ms - self->cfg->lease_margin_ms <= rcd_clock_now_ms ()) {
        self->expired++;
        rcd_log_debug ("dispatch.expired", "{s:s?, s:I, s:I}", "trace_id",
                       rcd_trace_valid (d->trace_id) ? d->trace_id : NULL,
                       "message_id", (json_int_t)d->id, "attempt",
                       (json_int_t)d->attempt);
        return NULL;
    }
    s_instance_t *inst = s_self_instance (self, (int64_t)d->instance_id);
    if (!inst) {
        s_self_fail_transient (self, d, "instance_lookup_failed");
        return NULL;
    }
    if (!inst->found || !inst->enabled) {
        s_self_fail_transient (self, d, "instance_unavailable");
        return NULL;
    }
    if (inst->tenant_id != (int64_t)d->tenant_id) {
        /* Never send a tenant's message through another's number. */
        s_self_fail_permanent (self, d, "instance_tenant_mismatch");
        return NULL;
    }
    return inst;
}

/*  Gives a job's slot back. */
static void
s_self_job_free (self_t *self, s_job_t *job)
{
    free (job->text);
    job->text = NULL;
    job->parked = job->resumable = job->waiting = false;
    int slot = (int)(job - self->jobs);
    job->next_free = self->free_job;
    self->free_job = slot;
    self->jobs_busy--;
}

/*  An outcome for a job decided without an answer, which ends it. */
static void
s_self_job_fail (self_t *self, s_job_t *job, bool permanent, const char *reason)
{
    char to[32];
    snprintf (to, sizeof to, "+%s", job->digits);
    s_outcome_t *o = s_self_outcome (
        self, permanent ? S_OUT_FAILED : S_OUT_RETRY, job->id, job->tenant_id,
        job->instance_id, job->attempt, reason, to, job->trace_id);
    o->gw_kind = permanent ? RCD_GATEWAY_PERMANENT : RCD_GATEWAY_TRANSIENT;
    if (!permanent)
        o->retry_ms = s_self_backoff_ms (self, job->attempt, 0);
    s_self_job_free (self, job);
}

/*  Builds and queues the request of text for job (a whole one-part text
    or one part). On failure records the job's outcome and frees it. */
static void
s_self_job_post (self_t *self, s_job_t *job, const s_instance_t *inst,
                 const char *text, uint32_t delay_ms)
{
    char to[32];
    snprintf (to, sizeof to, "+%s", job->digits);
    int rc = rcd_gateway_build_send (&inst->gw, to, text, delay_ms, &self->req);
    if (rc != 0) {
        s_self_job_fail (self, job, rc == -2,
                         rc == -2 ? "invalid_request" : "no_memory");
        return;
    }
    long timeout = self->req.typing_ms + (long)self->cfg->request_timeout_ms;
    if (rcd_http_post (self->http, self->req.url, self->req.headers,
                       self->req.body, self->req.body_len,
                       (long)self->cfg->connect_timeout_ms, timeout, job) != 0)
        s_self_job_fail (self, job, false, "queue_failed");
}

/*  Sends part job->part of a long text. A part after the first of this
    attempt shows typing for parts_delay_ms (or the message's delay when
    longer): Evolution's delay field; Meta has none, so its wait was
    spent before this call (ready_at_ms). */
static void
s_self_job_post_part (self_t *self, s_job_t *job, const s_instance_t *inst,
                      bool first)
{
    size_t start = 0, len = 0;
    if (!rcd_parts_get (job->text, job->part_limit, job->part, &start, &len)) {
        s_self_job_fail (self, job, true, "invalid_request");
        return;
    }
    char *part = malloc (len + 1);
    if (!part) {
        s_self_job_fail (self, job, false, "no_memory");
        return;
    }
    memcpy (part, job->text + start, len);
    part[len] = 0;
    uint32_t delay = job->delay_ms;
    if (!first && inst->gw.provider == RCD_GATEWAY_EVOLUTION &&
        (int64_t)delay < self->cfg->parts_delay_ms)
        delay = (uint32_t)self->cfg->parts_delay_ms;
    s_self_job_post (self, job, inst, part, delay);
    free (part);
}

/*  Takes a job slot for a dispatch that passed every check and sends its
    text, or the first part of it not yet sent (a retry resumes there). */
static void
s_self_send_dispatch (self_t *self, const rcd_dispatch_t *d,
                      const s_instance_t *inst)
{
    assert (self->free_job >= 0);
    int slot = self->free_job;
    s_job_t *job = &self->jobs[slot];
    self->free_job = job->next_free;
    self->jobs_busy++;
    job->id = (int64_t)d->id;
    job->tenant_id = (int64_t)d->tenant_id;
    job->instance_id = (int64_t)d->instance_id;
    job->attempt = d->attempt;
    job->provider = inst->gw.provider;
    snprintf (job->digits, sizeof job->digits, "%s",
              d->to[0] == '+' ? d->to + 1 : d->to);
    snprintf (job->trace_id, sizeof job->trace_id, "%s",
              rcd_trace_valid (d->trace_id) ? d->trace_id : "");
    job->text = NULL;
    job->parked = job->resumable = job->waiting = false;
    job->delay_ms = d->delay_ms;
    job->lease_until_ms = d->lease_until_ms;
    job->part_limit =
        d->part_limit ? d->part_limit : (uint32_t)self->part_max_chars;
    if (d->parts_sent == 0 && rcd_parts_chars (d->text) <= job->part_limit) {
        job->nparts = 1; /* the common case: one request, as ever */
        job->part = 0;
        s_self_job_post (self, job, inst, d->text, d->delay_ms);
        return;
    }
    job->text = strdup (d->text);
    if (!job->text) {
        s_self_job_fail (self, job, false, "no_memory");
        return;
    }
    job->nparts = (uint32_t)rcd_parts_count (job->text, job->part_limit);
    job->part = d->parts_sent;
    if (job->part >= job->nparts) {
        /* every part went before; cannot happen with the fence */
        s_self_job_fail (self, job, true, "parts_already_sent");
        return;
    }
    s_self_job_post_part (self, job, inst, true);
}

/*  After a committed flush: the parked jobs whose progress was written
    wait for their next part; the rest were fenced off and end here. */
static void
s_self_settle_parked (self_t *self)
{
    if (self->parked == 0)
        return;
    for (int i = 0; i < self->cfg->max_inflight; i++) {
        s_job_t *job = &self->jobs[i];
        if (!job->parked)
            continue;
        self->parked--;
        if (!job->resumable) {
            s_self_job_free (self, job);
            continue;
        }
        job->parked = job->resumable = false;
        job->waiting = true;
        self->waiting++;
        if (self->parts_wake_ms == 0 || job->ready_at_ms < self->parts_wake_ms)
            self->parts_wake_ms = job->ready_at_ms;
    }
}

/*  Sends the next part of each waiting job whose time has come, unless
    its lease would end first (then it goes back to pending and resumes
    at this part) or its instance is gone. */
static void
s_self_next_parts (self_t *self)
{
    if (self->waiting == 0)
        return;
    int64_t now = rcd_clock_mono_ms ();
    if (now < self->parts_wake_ms)
        return;
    self->parts_wake_ms = 0;
    for (int i = 0; i < self->cfg->max_inflight && self->waiting; i++) {
        s_job_t *job = &self->jobs[i];
        if (!job->waiting)
            continue;
        if (job->ready_at_ms > now) {
            if (self->parts_wake_ms == 0 ||
                job->ready_at_ms < self->parts_wake_ms)
                self->parts_wake_ms = job->ready_at_ms;
            continue;
        }
        job->waiting = false;
        self->waiting--;
        if (self->nout >= self->out_cap) {
            /* cannot happen: each job has at most one outcome buffered */
            job->waiting = true;
            self->waiting++;
            continue;
        }
        int64_t typing = job->delay_ms > (uint32_t)self->cfg->parts_delay_ms
                             ? job->delay_ms
                             : self->cfg->parts_delay_ms;
        if (job->lease_until_ms - self->cfg->lease_margin_ms - typing <=
            rcd_clock_now_ms ()) {
            char to[32];
            snprintf (to, sizeof to, "+%s", job->digits);
            s_outcome_t *o = s_self_outcome (
                self, S_OUT_RETRY, job->id, job->tenant_id, job->instance_id,
                job->attempt, "parts_lease_ending", to, job->trace_id);
            o->gw_kind = RCD_GATEWAY_TRANSIENT;
            o->retry_ms = 0; /* resume at once, at this part */
            s_self_job_free (self, job);
            continue;
        }
        s_instance_t *inst = s_self_instance (self, job->instance_id);
        if (!inst || !inst->found || !inst->enabled) {
            s_self_job_fail (self, job, false, "instance_unavailable");
            continue;
        }
        s_self_job_post_part (self, job, inst, false);
    }
}

/*  The opt-out re-check of a round: one query for every dispatch still
    going ahead (round_inst set). A recipient who opted out since the
    claim gets nothing (blocked). When the check cannot be made nothing
    is sent either: never fail open; they are retried later. */
static void
s_self_check_optouts (self_t *self, size_t n)
{
    size_t checks = 0;
    int64_t *tenants = malloc (n * sizeof *tenants);
    char *phones = NULL, *a_tenants = NULL;
    size_t p_len = 0, p_cap = 0;
    rcd_db_res_t *res = NULL;
    bool ok = false;
    if (!tenants)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (!self->round_inst[i])
            continue;
        const rcd_dispatch_t *d = &self->round[i].u.dispatch;
        tenants[checks] = (int64_t)d->tenant_id;
        self->round_pos[checks++] = i;
        if (rcd_db_text_array_append (&phones, &p_len, &p_cap, d->to) != 0)
            goto done;
    }
    if (checks == 0) {
        ok = true;
        goto done;
    }
    a_tenants = rcd_db_int64_array (tenants, checks);
    if (!a_tenants)
        goto done;
    const char *params[] = {a_tenants, phones};
    if (rcd_db_run (self->db, "sender_optout", 2, params, &res) != 0) {
        rcd_log_warn ("opt-out check failed", "{s:s, s:I}", "error",
                      rcd_db_error (self->db), "dispatches",
                      (json_int_t)checks);
        goto done;
    }
    ok = true;
    for (int row = 0; row < rcd_db_res_rows (res); row++) {
        int64_t k = rcd_db_res_int64 (res, row, 0);
        if (k < 1 || (size_t)k > checks)
            continue;
        size_t i = self->round_pos[k - 1];
        const rcd_dispatch_t *d = &self->round[i].u.dispatch;
        s_self_outcome_of (self, S_OUT_BLOCKED, d, "contact_opted_out");
        self->round_inst[i] = NULL;
    }
done:
    if (!ok)
        for (size_t i = 0; i < n; i++)
            if (self->round_inst[i]) {
                s_self_fail_transient (self, &self->round[i].u.dispatch,
                                       "optout_check_failed");
                self->round_inst[i] = NULL;
            }
    rcd_db_res_destroy (&res);
    free (tenants);
    free (phones);
    free (a_tenants);
}

/*  Reads one frame without waiting (the socket's receive timeout is 0,
    so no ZMQ_EVENTS round per message). Returns 1 with a dispatch in
    msg (caller clears it), 0 when the frame was dropped, -1 when nothing
    more is ready. */
static int
s_self_read_frame (self_t *self, rcd_proto_msg_t *msg)
{
    memset (msg, 0, sizeof *msg);
    int rc = rcd_proto_recv (self->pull, msg);
    if (rc == -1)
        return -1;
    if (rc == -2) {
        self->malformed++;
        rcd_log_warn ("malformed frame dropped", "{s:s}", "why",
                      rcd_proto_last_error ());
        return 0;
    }
    if (msg->type != RCD_MSG_DISPATCH) {
        self->malformed++;
        rcd_log_warn ("unexpected frame dropped", "{s:s}", "topic",
                      rcd_proto_topic (msg->type));
        rcd_proto_msg_clear (msg);
        return 0;
    }
    return 1;
}

/*  On DRAIN: hands one waiting dispatch back unsent. False when nothing
    more is ready. */
static bool
s_self_release_one (self_t *self)
{
    rcd_proto_msg_t msg;
    int rc = s_self_read_frame (self, &msg);
    if (rc < 0)
        return false;
    if (rc == 1) {
        const rcd_dispatch_t *d = &msg.u.dispatch;
        if (d->id && d->attempt)
            s_self_outcome_of (self, S_OUT_RELEASE, d, "released");
        rcd_proto_msg_clear (&msg);
    }
    return true;
}

/*  Reads what the socket holds in rounds: each round takes at most what
    the request and outcome limits leave room for, is screened, re-checked
    for opt-outs in one query, and sent. */
static void
s_self_handle_dispatch (self_t *self)
{
    bool more = true;
    while (more && s_self_admitting (self)) {
        size_t room = (size_t)self->cfg->max_inflight - self->jobs_busy;
        size_t out_room = (size_t)self->cfg->batch_max - self->nout;
        if (out_room < room)
            room = out_room;
        if (self->round_cap < room)
            room = self->round_cap;
        size_t n = 0;
        while (n < room) {
            int rc = s_self_read_frame (self, &self->round[n]);
            if (rc < 0) {
                more = false;
                break;
            }
            n += rc == 1;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++)
            self->round_inst[i] =
                s_self_screen_dispatch (self, &self->round[i].u.dispatch);
        s_self_check_optouts (self, n);
        for (size_t i = 0; i < n; i++) {
            if (self->round_inst[i])
                s_self_send_dispatch (self, &self->round[i].u.dispatch,
                                      self->round_inst[i]);
            rcd_proto_msg_clear (&self->round[i]);
        }
    }
}

/*  An answer no classification rule names: logged with its body,
    phones masked, at most S_UNRECOGNISED_LOGS a second (the rest are
    counted in the log at the next heartbeat and in the
    gateway.unrecognised event). */
static void
s_self_log_unrecognised (self_t *self, const s_job_t *job,
                         const rcd_http_result_t *res,
                         const rcd_gateway_outcome_t *g)
{
    self->n_unrecognised++;
    if (self->unrecognised_logged++ >= S_UNRECOGNISED_LOGS)
        return;
    char *body = rcd_gateway_log_excerpt (res->body ? res->body : "",
                                          res->body ? res->body_len : 0,
                                          S_UNRECOGNISED_BODY);
    rcd_log_warn (
        "unrecognised gateway answer", "{s:s?, s:I, s:I, s:s, s:i, s:s, s:s}",
        "trace_id", job->trace_id[0] ? job->trace_id : NULL, "message_id",
        (json_int_t)job->id, "instance_id", (json_int_t)job->instance_id,
        "provider", rcd_gateway_provider_name (job->provider), "status",
        (int)res->status, "reason", g->reason, "body", body ? body : "");
    free (body);
}

/*  Turns finished requests into outcomes. */
static void
s_self_handle_http (self_t *self)
{
    rcd_http_result_t res;
    while (rcd_http_next (self->http, &res)) {
        s_job_t *job = res.user;
        rcd_gateway_outcome_t g;
        rcd_gateway_classify (job->provider, res.status, res.body, res.error,
                              res.retry_after_s, &g);
        static const s_out_kind_t kind_of[] = {
            [RCD_GATEWAY_SUCCESS] = S_OUT_SENT,
            [RCD_GATEWAY_TRANSIENT] = S_OUT_RETRY,
            [RCD_GATEWAY_PERMANENT] = S_OUT_FAILED,
            [RCD_GATEWAY_INSTANCE] = S_OUT_FAILED,
            [RCD_GATEWAY_UNKNOWN] = S_OUT_UNKNOWN};
        char to[32];
        snprintf (to, sizeof to, "+%s", job->digits);
        /* a part before the last: its progress is written, then the
           next part goes (s_self_settle_parked, s_self_next_parts) */
        bool more = job->text && g.kind == RCD_GATEWAY_SUCCESS &&
                    job->part + 1 < job->nparts;
        s_outcome_t *o = s_self_outcome (
            self, more ? S_OUT_PART : kind_of[g.kind], job->id, job->tenant_id,
            job->instance_id, job->attempt, g.reason, to, job->trace_id);
        if (job->text &&
            (g.kind == RCD_GATEWAY_SUCCESS || g.kind == RCD_GATEWAY_UNKNOWN)) {
            o->parts = job->part + 1;
            o->part_limit = job->part_limit;
        }
        if (job->text && g.kind == RCD_GATEWAY_UNKNOWN) {
            size_t at = 0, len = 0;
            (void)rcd_parts_get (job->text, job->part_limit, job->part, &at,
                                 &len);
            o->nparts = job->nparts;
            o->part_at = (uint32_t)at;
            o->part_len = (uint32_t)len;
        }
        o->gw_kind = g.kind;
        o->throttled = g.throttled;
        o->latency_us = res.total_us;
        /* A gateway that answers nothing (a timeout or reset after the
           request went out: outcome unknown) is failing as surely as one
           answering 503, and more costly: each such message waits for
           reconciliation. So both count toward the circuit. */
        if (g.kind == RCD_GATEWAY_SUCCESS)
            o->circuit = S_CIRCUIT_SUCCESS;
        else if (g.kind == RCD_GATEWAY_INSTANCE)
            o->circuit = S_CIRCUIT_HARD;
        else if ((g.kind == RCD_GATEWAY_TRANSIENT && !g.throttled) ||
                 (g.kind == RCD_GATEWAY_UNKNOWN &&
                  res.error != RCD_HTTP_ERR_NONE))
            o->circuit = S_CIRCUIT_FAIL;
        if (g.throttled) {
            int s_after = g.retry_after_s > S_RETRY_AFTER_MAX_S
                              ? S_RETRY_AFTER_MAX_S
                              : g.retry_after_s;
            o->pause_ms =
                s_after > 0 ? (int64_t)s_after * 1000 : self->throttle_pause_ms;
        }
        if (g.unrecognised)
            s_self_log_unrecognised (self, job, &res, &g);
        if (g.kind == RCD_GATEWAY_SUCCESS) {
            snprintf (o->pmid, sizeof o->pmid, "%s", g.provider_message_id);
            char detail[RCD_GATEWAY_ID_MAX + 96];
            char part[48] = "";
            if (job->text)
                snprintf (part, sizeof part, "part %u of %u: ", job->part + 1,
                          job->nparts);
            if (g.wa_id[0] && strcmp (g.wa_id, job->digits) != 0)
                snprintf (detail, sizeof detail, "%s%s (wa_id %s)", part,
                          g.provider_message_id, g.wa_id);
            else
                snprintf (detail, sizeof detail, "%s%s", part,
                          g.provider_message_id);
            o->detail =
                rcd_gateway_excerpt (detail, strlen (detail), sizeof detail);
        }
        else {
            if (g.kind == RCD_GATEWAY_TRANSIENT)
                o->retry_ms =
                    s_self_backoff_ms (self, job->attempt, g.retry_after_s);
            /* never before the instance's pause is over */
            if (o->retry_ms < o->pause_ms)
                o->retry_ms = o->pause_ms;
            /* What the gateway said (or libcurl, when it said nothing). */
            const char *answer = res.error ? res.error_text : res.body;
            size_t len = res.error ? strlen (answer) : res.body_len;
            size_t max =
                g.kind == RCD_GATEWAY_UNKNOWN ? S_UNKNOWN_DETAIL : S_ANSWER_MAX;
            if (len)
                o->detail = rcd_gateway_excerpt (answer, len, max);
        }
        if (more) {
            job->parked = true;
            job->resumable = false;
            self->parked++;
            job->part++;
            /* Meta shows no typing: the wait is ours */
            job->ready_at_ms =
                rcd_clock_mono_ms () +
                (job->provider == RCD_GATEWAY_EVOLUTION
                     ? 0
                     : (job->delay_ms > (uint32_t)self->cfg->parts_delay_ms
                            ? job->delay_ms
                            : self->cfg->parts_delay_ms));
        }
        else
            s_self_job_free (self, job);
    }
}

/*  --------------------------------------------------------------------
    Pipe, drain, tick */

/*  Hands back what already sits on our socket, then disconnects so the
    scheduler stops routing to us. */
static void
s_self_start_drain (self_t *self)
{
    self->draining = true;
    if (!self->pull_connected)
        return;
    size_t budget = (size_t)self->cfg->dispatch_hwm;
    /* each request in flight still needs its outcome slot */
    while (budget-- > 0 && self->nout + self->jobs_busy < self->out_cap &&
           s_self_release_one (self))
        ;
    zsock_disconnect (self->pull, "%s", self->cfg->dispatch_endpoint);
    self->pull_connected = false;
    rcd_log_info ("draining", "{s:I, s:I}", "inflight",
                  (json_int_t)self->jobs_busy, "outcomes",
                  (json_int_t)self->nout);
}

static void
s_self_handle_pipe (self_t *self)
{
    while (!self->terminated && (zsock_events (self->pipe) & ZMQ_POLLIN)) {
        char *cmd = zstr_recv (self->pipe);
        if (!cmd) {
            self->terminated = true; /* interrupted */
            break;
        }
        if (streq (cmd, "$TERM"))
            self->terminated = true;
        else if (streq (cmd, "DRAIN"))
            s_self_start_drain (self);
        else
            rcd_log_warn ("unknown pipe command", "{s:s}", "command", cmd);
        zstr_free (&cmd);
    }
}

/*  Publishes the counters gathered since the last call, then zeroes
    them. Once a second rather than per flush: a few events a second
    instead of hundreds at full speed, and the first ones go out after
    the PUB socket has had a second to connect and receive the monitor's
    subscription (PUB drops what it sends before that). */
static void
s_self_emit_counters (self_t *self)
{
    static const struct {
        const char *kind;
        size_t offset;
    } counters[] = {
        {"message.sent", offsetof (self_t, n_sent)},
        {"message.retry", offsetof (self_t, n_retry)},
        {"message.failed", offsetof (self_t, n_failed)},
        {"message.unknown", offsetof (self_t, n_unknown)},
        {"message.released", offsetof (self_t, n_released)},
        {"message.blocked", offsetof (self_t, n_blocked)},
        {"message.part_sent", offsetof (self_t, n_parts)},
        {"gateway.unrecognised", offsetof (self_t, n_unrecognised)},
        {"outcome.stale", offsetof (self_t, n_stale)},
        {"frame.malformed", offsetof (self_t, malformed)},
        {"dispatch.expired", offsetof (self_t, expired)},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t *n = (uint64_t *)((char *)self + counters[i].offset);
        if (*n)
            rcd_events_emit (self->events, counters[i].kind, *n, 0, 0, NULL);
        *n = 0;
    }
    if (self->n_requests)
        rcd_events_emit (self->events, "send.latency_us", self->n_requests, 0,
                         self->latency_sum_us, NULL);
    self->n_requests = 0;
    self->latency_sum_us = 0;
    for (size_t b = 0; b <= RCD_LATENCY_BUCKETS; b++) {
        if (!self->bucket_n[b])
            continue;
        char le[32];
        if (b < RCD_LATENCY_BUCKETS)
            snprintf (le, sizeof le, "le_us=%.0f",
                      rcd_latency_bounds_s[b] * 1e6);
        else
            snprintf (le, sizeof le, "le_us=+Inf");
        rcd_events_emit (self->events, "send.latency_bucket", self->bucket_n[b],
                         0, self->bucket_us[b], le);
        self->bucket_n[b] = 0;
        self->bucket_us[b] = 0;
    }
}

/*  Periodic work: flushes, the once-a-second news, cache refresh, and
    the end of a drain. */
static void
s_self_handle_tick (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    if (self->nout > 0 && now >= self->flush_retry_at_ms &&
        (self->nout >= (size_t)self->cfg->batch_max || self->draining ||
         now >= self->first_out_ms + self->cfg->batch_wait_ms))
        s_self_flush (self);
    if (now >= self->heartbeat_at_ms) {
        if (self->unrecognised_logged > S_UNRECOGNISED_LOGS)
            rcd_log_warn (
                "unrecognised gateway answers not logged", "{s:I}", "count",
                (json_int_t)(self->unrecognised_logged - S_UNRECOGNISED_LOGS));
        self->unrecognised_logged = 0;
        rcd_events_heartbeat (self->events,
                              self->draining ? "draining" : "active");
        if (self->expired)
            rcd_log_info ("expired dispatches dropped", "{s:I}", "count",
                          (json_int_t)self->expired);
        s_self_emit_counters (self);
        self->heartbeat_at_ms = now + 1000;
    }
    if (now >= self->refresh_at_ms) {
        s_self_instances_refresh (self);
        self->refresh_at_ms = now + self->cfg->instance_refresh_s * 1000;
    }
    if (self->draining && !self->drained && self->jobs_busy == 0 &&
        self->nout == 0) {
        s_self_emit_counters (self);
        zstr_send (self->pipe, "DRAINED");
        self->drained = true;
        rcd_log_info ("drained", NULL);
    }
}

/*  How long the loop may sleep before the tick has work. */
static int
s_self_wait_ms (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    int64_t until = self->heartbeat_at_ms;
    if (self->refresh_at_ms < until)
        until = self->refresh_at_ms;
    if (self->nout > 0) {
        int64_t flush_at = self->nout >= (size_t)self->cfg->batch_max
                               ? now
                               : self->first_out_ms + self->cfg->batch_wait_ms;
        if (self->flush_retry_at_ms > flush_at)
            flush_at = self->flush_retry_at_ms;
        if (flush_at < until)
            until = flush_at;
    }
    if (self->waiting > 0 && self->parts_wake_ms < until)
        until = self->parts_wake_ms;
    int64_t wait = until - now;
    return wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
}

/*  --------------------------------------------------------------------
    Construction */

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nout; i++)
        free (self->out[i].detail);
    free (self->out);
    free (self->circuits);
    if (self->round)
        for (size_t i = 0; i < self->round_cap; i++)
            rcd_proto_msg_clear (&self->round[i]);
    free (self->round);
    free (self->round_inst);
    free (self->round_pos);
    if (self->jobs)
        for (int i = 0; i < self->cfg->max_inflight; i++)
            free (self->jobs[i].text);
    free (self->jobs);
    for (size_t b = 0; b < S_INSTANCE_BUCKETS; b++) {
        s_instance_t *inst = self->instances[b];
        while (inst) {
            s_instance_t *next = inst->next;
            s_instance_destroy (&inst);
            inst = next;
        }
    }
    rcd_gateway_request_clear (&self->req);
    rcd_http_destroy (&self->http);
    rcd_db_destroy (&self->db);
    rcd_events_destroy (&self->events);
    zsock_destroy (&self->pull);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const rcd_sender_config_t *cfg)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->cfg = cfg;
    self->rng = (uint64_t)rcd_clock_now_us () ^ ((uint64_t)getpid () << 32) ^
                (uint64_t)(uintptr_t)self;
    if (!self->rng)
        self->rng = 0x9E3779B97F4A7C15ULL;
    self->flush_backoff_ms = S_FLUSH_BACKOFF_MIN;
    self->circuit_threshold =
        cfg->circuit_threshold > 0 ? cfg->circuit_threshold : 5;
    self->circuit_cooldown_ms =
        cfg->circuit_cooldown_ms > 0 ? cfg->circuit_cooldown_ms : 30000;
    self->throttle_pause_ms =
        cfg->throttle_pause_ms > 0 ? cfg->throttle_pause_ms : 5000;
    self->part_max_chars = cfg->part_max_chars > 0 ? cfg->part_max_chars : 1000;
    self->events = rcd_events_new (cfg->events_endpoint, "sender", NULL);
    self->db = rcd_db_new (cfg->database_url);
    self->http = rcd_http_new ((int)cfg->max_inflight);
    self->pull = zsock_new (ZMQ_PULL);
    size_t max_inflight = (size_t)cfg->max_inflight;
    self->jobs = calloc (max_inflight, sizeof *self->jobs);
    self->out_cap = (size_t)cfg->batch_max + max_inflight;
    self->out = calloc (self->out_cap, sizeof *self->out);
    self->circuits = calloc (self->out_cap, sizeof *self->circuits);
    /* a round never takes more than both limits leave room for */
    self->round_cap = max_inflight < (size_t)cfg->batch_max
                          ? max_inflight
                          : (size_t)cfg->batch_max;
    self->round = calloc (self->round_cap, sizeof *self->round);
    self->round_inst = calloc (self->round_cap, sizeof *self->round_inst);
    self->round_pos = calloc (self->round_cap, sizeof *self->round_pos);
    if (!self->events || !self->db || !self->http || !self->pull ||
        !self->jobs || !self->out || !self->circuits || !self->round ||
        !self->round_inst || !self->round_pos)
        goto failed;
    for (size_t i = 0; i < max_inflight; i++)
        self->jobs[i].next_free = i + 1 < max_inflight ? (int)i + 1 : -1;
    self->free_job = 0;
    if (rcd_db_prepare (self->db, "sender_instances", s_sql_instances) != 0 ||
        rcd_db_prepare (self->db, "sender_sent", s_sql_sent) != 0 ||
        rcd_db_prepare (self->db, "sender_retry", s_sql_retry) != 0 ||
        rcd_db_prepare (self->db, "sender_failed", s_sql_failed) != 0 ||
        rcd_db_prepare (self->db, "sender_unknown", s_sql_unknown) != 0 ||
        rcd_db_prepare (self->db, "sender_release", s_sql_release) != 0 ||
        rcd_db_prepare (self->db, "sender_blocked", s_sql_blocked) != 0 ||
        rcd_db_prepare (self->db, "sender_part", s_sql_part) != 0 ||
        rcd_db_prepare (self->db, "sender_optout", s_sql_optout) != 0 ||
        rcd_db_prepare (self->db, "sender_circuits", s_sql_circuits) != 0)
        goto failed;
    zsock_set_rcvhwm (self->pull, (int)cfg->dispatch_hwm);
    zsock_set_rcvtimeo (self->pull, 0);
    zsock_set_linger (self->pull, 0);
    if (zsock_connect (self->pull, "%s", cfg->dispatch_endpoint) != 0) {
        rcd_log_error ("bad dispatch endpoint", "{s:s}", "endpoint",
                       cfg->dispatch_endpoint);
        goto failed;
    }
    self->pull_connected = true;
    int64_t now = rcd_clock_mono_ms ();
    self->heartbeat_at_ms = now;
    self->refresh_at_ms = now + cfg->instance_refresh_s * 1000;
    return self;

failed:
    s_self_destroy (&self);
    return NULL;
}

void
rcd_sender_server (zsock_t *pipe, void *args)
{
    const rcd_sender_config_t *cfg = args;
    self_t *self = s_self_new (pipe, cfg);
    zsock_signal (pipe, 0);
    if (!self) {
        zsock_send (pipe, "ss", "FATAL", "sender failed to start");
        return;
    }
    rcd_log_info ("sender started", "{s:s, s:I, s:I}", "dispatch",
                  cfg->dispatch_endpoint, "max_inflight",
                  (json_int_t)cfg->max_inflight, "batch_max",
                  (json_int_t)cfg->batch_max);
    int fds[2] = {zsock_fd (pipe), zsock_fd (self->pull)};
    while (!self->terminated) {
        s_self_handle_pipe (self);
        if (self->terminated)
            break;
        s_self_handle_dispatch (self);
        s_self_handle_http (self);
        s_self_handle_tick (self);
        s_self_next_parts (self);
        /* ZMQ_FD is edge-triggered: sleep only when neither socket holds
           a message we would read now (zsock_events also re-arms it). */
        bool admitting = s_self_admitting (self);
        int wait = s_self_wait_ms (self);
        if ((zsock_events (pipe) & ZMQ_POLLIN) ||
            (admitting && (zsock_events (self->pull) & ZMQ_POLLIN)))
            wait = 0;
        if (rcd_http_perform_fds (self->http, fds, admitting ? 2 : 1, wait) < 0)
            rcd_log_error ("http multi failure", NULL);
    }
    if (self->nout > 0)
        (void)s_self_flush (self); /* last chance, $TERM came first */
    s_self_emit_counters (self);
    rcd_log_info (
        "sender stopped", "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "blocked", (json_int_t)self->total_blocked, "sent",
        (json_int_t)self->total_sent, "retried", (json_int_t)self->total_retry,
        "failed", (json_int_t)self->total_failed, "unknown",
        (json_int_t)self->total_unknown, "released",
        (json_int_t)self->total_released, "stale",
        (json_int_t)self->total_stale, "abandoned_inflight",
        (json_int_t)self->jobs_busy, "unwritten", (json_int_t)self->nout);
    s_self_destroy (&self);
}

/*  rcd_ingestor_server.c - the ingestor actor: the tenants' HTTP API in
    front of PostgreSQL, nudging the scheduler when work arrives.

    Inputs
      HTTP on http_bind:http_port (libmicrohttpd, a pool of http_threads
      threads, keep-alive). Routes (API.md):
        GET    /healthz              anyone  200 while the process runs
        GET    /readyz               anyone  200 when SELECT 1 answers,
                                             else 503 unavailable
        POST   /v1/tenants           admin   create a tenant -> 201
        GET    /v1/tenant            tenant  own settings
        PATCH  /v1/tenant            tenant  change some settings -> 200
                                             with the GET document
        POST   /v1/instances         tenant  register a sender -> 201
        GET    /v1/instances         tenant  list (no credentials)
        PATCH  /v1/instances/{id}    tenant  enabled, limits, base_url,
                                             credentials -> 200 with the
                                             instance (no credentials)
        POST   /v1/messages          tenant  one message -> 202 (200 when
                                             the idempotency key is known)
        POST   /v1/messages/batch    tenant  up to 1000 -> 207 per item
        GET    /v1/messages          tenant  keyset-paginated listing
        GET    /v1/messages/{id}     tenant  one message with its history
        DELETE /v1/messages/{id}     tenant  cancel if pending, else 409
        PUT    /v1/contacts/{phone}  tenant  upsert name/vars -> 200
        GET    /v1/contacts/{phone}  tenant  the contact, 404 when absent
        POST   /v1/contacts/{phone}/opt-out
                                     tenant  opt out and block its pending
                                             messages -> 200 {blocked}
        (templates and billing cycles: see s_routes)
        GET    /v1/dead-letters      tenant  keyset-paginated listing,
                                             oldest first
        POST   /v1/dead-letters/replay
                                     tenant  requeue failed messages by
                                             dead letter ids or since a
                                             time -> 200 {replayed, skipped}
        POST   /v1/campaigns         tenant  a campaign and its audience
                                             (up to 100 000 contacts) ->
                                             201, or 200 adding to the
                                             campaign of that name
        GET    /v1/campaigns/{id}    tenant  counts, rates, time to finish
        POST   /v1/campaigns/{id}/pause, /resume, /cancel
                                     tenant  state changes -> 200
                                             (rcd_api_campaigns.c)
        POST   /v1/webhooks/evolution/{tenant_id}
                                     gateway Evolution events, by the
                                             tenant's webhook token
        GET    /v1/webhooks/meta     gateway Meta's verification handshake
        POST   /v1/webhooks/meta     gateway Meta events, by signature
                                             (rcd_api_webhooks.c)
      {phone} arrives URL-decoded by MHD and is normalised with
      default_country.
      Authentication: "Authorization: Bearer <key>". The admin key
      (admin_key; unset: admin routes answer 403) is compared in constant
      time; tenant keys are looked up by SHA-256, cached for
      auth_cache_ms. Bodies above max_body_bytes answer 413 before any
      parsing (Content-Length checked up front, chunked bodies counted as
      they arrive). Every 4xx/5xx body is {"error": {code, message,
      field}}. POST /v1/campaigns is the one streaming route (s_streams):
      its key is checked when its headers arrive (401/403 answered then,
      the body never read), and its body, up to campaign_max_body_bytes,
      is not held but fed chunk by chunk to a parser made then, which
      the handler reads.
      Rate limit: every tenant request (not admin routes, /healthz,
      /readyz or gateway webhooks) takes a token from its tenant's bucket
      (api_rate_per_second refill, api_burst capacity; either 0: off),
      kept in PostgreSQL (api_rate_buckets, migrations/0006) so that every
      replica shares it, with one statement per request after the
      session is set. No token: 429 rate_limited with Retry-After (whole
      seconds until one is back, at least 1). The bucket cannot be read
      or written (any database error): 503 unavailable with Retry-After
      1, the handler not run. It fails closed: never let through unmetered.
      The actor pipe: $TERM, DRAIN (stop accepting, finish the requests in
      flight, answer DRAINED).

    Outputs
      PUSH nudge_endpoint (connected; the scheduler binds PULL): one nudge
      {tenant_id, count} after messages are stored, requeued by a
      dead-letter replay or released by a campaign resume. Send timeout
      0 and a high-water mark of nudge_hwm: when full the nudge is
      dropped (and counted), since the scheduler polls anyway.
      PUB events_endpoint (rcd_events): heartbeat every second ("active"
      or "draining"), and once a second the counts of the last second:
        http.request       count by detail "2xx"/"4xx"/"5xx", value =
                           mean latency in microseconds
        message.accepted   messages stored
        message.duplicate  idempotent replays answered
        message.rejected   messages refused (bad input, unknown instance)
        message.cancelled  messages cancelled by the API
        message.replayed   messages requeued from dead letters
        api.rate_limited   tenant requests answered 429
        api.limiter_failed tenant requests refused (503) because the
                           bucket could not be read or written
        tenant.created, instance.created
        auth.failed        requests with a missing or unknown key
        nudge.dropped      nudges the scheduler could not take
        webhook.applied    gateway events stored and applied
        webhook.duplicate  gateway events already stored (redeliveries)
        webhook.unmatched  receipts and echoes stored without a message
                           to apply to yet
        webhook.ignored    gateway events skipped (not tracked)
        message.settled    unknown outcomes settled by an echo or receipt
        contact.opted_out  contacts opted out by a reply
        message.blocked    pending messages those opt-outs blocked
        campaign.created, campaign.paused, campaign.resumed,
        campaign.cancelled, campaign.completed (seen complete when read)
        message.paused     messages a campaign pause held back
        message.resumed    messages a campaign resume released (nudged)

    Trace ids: every routed request gets one (rcd_trace.h: its
    traceparent's, else its X-Request-Id when that is 32 hex digits or a
    UUID, else a random one). It is answered as X-Trace-Id, put on every
    log line the request causes (rcd_log_set_trace) and stored with the
    messages the request makes, which carry it to the sender. Log lines
    of the requests that make messages: message.accepted or
    message.duplicate (one message: message_id, to masked, status),
    message.batch (items, accepted, duplicates, rejected), cycle.created
    (cycle_id, to masked, messages, pending), cycle.batch. The debug line
    of every request names its route's pattern, never a path that may
    hold a phone.

    Threads: MHD's pool threads run the handlers. Each takes a database
    connection from a small pool (rcd_db_t is single-threaded) and gives
    it back; connections are made lazily, at most one per pool thread,
    and closed at shutdown. The nudge socket and the auth cache each have
    their own mutex; counters are atomics the actor thread publishes.

    Config keys: see rcd_ingestor_config_specs below.
    Shutdown: DRAIN stops the listener and waits for in-flight requests;
    $TERM frees everything. A start-up failure (cannot listen) is sent as
    FATAL: main exits 1. The database being down is not fatal: /readyz
    says 503 and requests answer 503 until it is back.
*/
#include "rcd_ingestor_server.h"
#include "rcd_api.h"
#include "rcd_clock.h"
#include "rcd_crypto.h"
#include "rcd_db.h"
#include "rcd_events.h"
#include "rcd_gateway.h"
#include "rcd_log.h"
#include "rcd_proto.h"
#include "rcd_trace.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

const rcd_config_spec_t rcd_ingestor_config_specs[] = {
    RCD_CONFIG_DATABASE_URL (rcd_ingestor_config_t, database_url),
    RCD_CONFIG_STR ("http_bind", rcd_ingestor_config_t, http_bind, "127.0.0.1",
                    "address the HTTP API listens on"),
    RCD_CONFIG_INT ("http_port", rcd_ingestor_config_t, http_port, "8080", 1,
                    65535, "HTTP API port"),
    RCD_CONFIG_INT ("http_threads", rcd_ingestor_config_t, http_threads, "4", 1,
                    64,
                    "HTTP worker threads (one database connection "
                    "each)"),
    RCD_CONFIG_INT ("http_max_connections", rcd_ingestor_config_t,
                    http_max_connections, "1024", 1, 65536,
                    "concurrent HTTP connections accepted"),
    RCD_CONFIG_INT ("http_timeout_s", rcd_ingestor_config_t, http_timeout_s,
                    "60", 1, 3600, "idle HTTP connections closed after"),
    RCD_CONFIG_INT ("max_body_bytes", rcd_ingestor_config_t, max_body_bytes,
                    "1048576", 1024, 67108864,
                    "larger request bodies answer 413"),
    RCD_CONFIG_INT ("campaign_max_body_bytes", rcd_ingestor_config_t,
                    campaign_max_body_bytes, "16777216", 1024, 268435456,
                    "larger POST /v1/campaigns bodies answer 413 (parsed "
                    "as they arrive, never held)"),
    RCD_CONFIG_SECRET ("admin_key", rcd_ingestor_config_t, admin_key, "",
                       "admin key for /v1/tenants (unset: admin API off)"),
    RCD_CONFIG_STR ("nudge_endpoint", rcd_ingestor_config_t, nudge_endpoint,
                    "tcp://127.0.0.1:9093", "scheduler nudge PULL endpoint"),
    RCD_CONFIG_INT ("nudge_hwm", rcd_ingestor_config_t, nudge_hwm, "100", 1,
                    100000, "nudges queued before new ones are dropped"),
    RCD_CONFIG_STR ("events_endpoint", rcd_ingestor_config_t, events_endpoint,
                    "tcp://127.0.0.1:9092", "monitor events SUB endpoint"),
    RCD_CONFIG_INT ("auth_cache_ms", rcd_ingestor_config_t, auth_cache_ms,
                    "30000", 0, 600000,
                    "how long a tenant key lookup is reused"),
    RCD_CONFIG_STR ("default_country", rcd_ingestor_config_t, default_country,
                    "55", "calling code for phone numbers without one"),
    RCD_CONFIG_INT ("drain_timeout_ms", rcd_ingestor_config_t, drain_timeout_ms,
                    "10000", 0, 600000,
                    "how long in-flight requests may finish on SIGTERM"),
    RCD_CONFIG_INT ("api_rate_per_second", rcd_ingestor_config_t,
                    api_rate_per_second, "50", 0, 1000000,
                    "tenant API requests per second per tenant key, "
                    "refill of its bucket (0: no limit)"),
    RCD_CONFIG_INT ("api_burst", rcd_ingestor_config_t, api_burst, "100", 0,
                    1000000,
                    "tenant API requests a tenant may make at once, "
                    "its bucket's size (0: no limit)"),
    RCD_CONFIG_INT ("replay_attempts", rcd_ingestor_config_t, replay_attempts,
                    "5", 1, 100,
                    "new attempts a dead-letter replay gives a message"),
    RCD_CONFIG_END};

/*  Most tenant keys cached before the cache is emptied. */
#define S_AUTH_CACHE_MAX 10000
/*  Bytes of an oversize chunked body read (and thrown away) before the
    connection is closed instead of answered. */
#define S_DISCARD_MAX ((size_t)16 * 1024 * 1024)
/*  Longest bearer key considered. */
#define S_KEY_MAX 256
/*  Longest {name} path segment routed. */
#define S_ARG_MAX 256

/*  Puts a pooled connection's session in the state a request needs, in
    one round trip: $1 the role ("recado_tenant", or "none" for the
    connecting role), $2 the tenant ("" for none). set_config('role')
    is SET ROLE (same membership check). Session-wide (false), and run
    outside any transaction, so it outlives the statement. */
#define S_SESSION_SQL                                                          \
    "SELECT set_config('role', $1::text, false),"                              \
    "       set_config('recado.tenant_id', $2::text, false)"

/*  Takes a token from the bucket of tenant $1 (refill $2 tokens a second,
    capacity $3) in one statement: refill for the time since the last
    take (PostgreSQL's clock, shared by every replica; a statement that
    started before the last writer refills nothing), take one if there is
    one. The row lock serialises a tenant's concurrent requests. A new
    bucket starts full. Answers (allowed, seconds until a token is back).
    Runs as recado_tenant under the tenant wall, after s_session_set. */
#define S_LEVEL                                                                \
    "least($3::float8, b.tokens + $2::float8 * greatest(0, extract(epoch "     \
    "FROM now() - b.refilled_at)::float8))"
#define S_RATE_SQL                                                             \
    "INSERT INTO api_rate_buckets AS b (tenant_id, tokens, refilled_at,"       \
    "                                   allowed)"                              \
    "VALUES ($1::bigint, $3::float8 - 1, now(), $3::float8 >= 1)"              \
    "ON CONFLICT (tenant_id) DO UPDATE SET"                                    \
    "  tokens = " S_LEVEL " - CASE WHEN " S_LEVEL " >= 1 THEN 1 ELSE 0 END,"   \
    "  refilled_at = greatest(b.refilled_at, now()),"                          \
    "  allowed = " S_LEVEL " >= 1 "                                            \
    "RETURNING allowed, CASE WHEN allowed THEN 0"                              \
    "  ELSE greatest(1, ceil((1 - tokens) / $2::float8))::int END"

/*  One pooled connection and the session state last set on it
    (s_session_set), so that a request pays a statement only when the
    state changes: consecutive requests of one tenant, or of tenants
    sharing the role, cost nothing. */
typedef struct {
    rcd_db_t *db;
    uint64_t gen;      /* rcd_db_generation the state was set on */
    int64_t tenant_id; /* > 0: role recado_tenant acting for it; 0: the
                          connecting role, no tenant; -1: unknown */
} s_conn_t;

/*  Counters the pool threads bump and the actor publishes. */
typedef struct {
    atomic_uint_fast64_t http[3];      /* 2xx, 4xx, 5xx */
    atomic_uint_fast64_t latency_us;   /* sum over all requests */
    atomic_uint_fast64_t accepted;     /* message.accepted */
    atomic_uint_fast64_t duplicates;   /* message.duplicate */
    atomic_uint_fast64_t rejected;     /* message.rejected */
    atomic_uint_fast64_t cancelled;    /* message.cancelled */
    atomic_uint_fast64_t requeued;     /* message.replayed */
    atomic_uint_fast64_t limited;      /* api.rate_limited */
    atomic_uint_fast64_t limiter_err;  /* api.limiter_failed */
    atomic_uint_fast64_t tenants;      /* tenant.created */
    atomic_uint_fast64_t instances;    /* instance.created */
    atomic_uint_fast64_t auth_failed;  /* auth.failed */
    atomic_uint_fast64_t nudges_lost;  /* nudge.dropped */
    atomic_uint_fast64_t wh_applied;   /* webhook.applied */
    atomic_uint_fast64_t wh_dup;       /* webhook.duplicate */
    atomic_uint_fast64_t wh_unmatched; /* webhook.unmatched */
    atomic_uint_fast64_t wh_ignored;   /* webhook.ignored */
    atomic_uint_fast64_t settled;      /* message.settled */
    atomic_uint_fast64_t opted_out;    /* contact.opted_out */
    atomic_uint_fast64_t blocked;      /* message.blocked */
    atomic_uint_fast64_t camp_created; /* campaign.created */
    atomic_uint_fast64_t camp_paused;  /* campaign.paused */
    atomic_uint_fast64_t camp_resumed; /* campaign.resumed */
    atomic_uint_fast64_t camp_cancel;  /* campaign.cancelled */
    atomic_uint_fast64_t camp_done;    /* campaign.completed */
    atomic_uint_fast64_t held;         /* message.paused */
    atomic_uint_fast64_t released;     /* message.resumed */
} s_counters_t;

typedef struct {
    rcd_ingestor_config_t *config; /* borrowed */
    zsock_t *pipe;                 /* borrowed: our actor pipe */
    rcd_events_t *events;          /* heartbeat and events */
    struct MHD_Daemon *httpd;      /* NULL once drained */
    bool draining;                 /* DRAIN received */
    int64_t next_tick_ms;          /* monotonic time of the next tick */

    pthread_mutex_t flight_lock; /* guards in_flight */
    pthread_cond_t flight_done;  /* signalled when in_flight drops to 0 */
    int in_flight;               /* requests begun and not yet answered */

    pthread_mutex_t pool_lock; /* guards the idle connections */
    s_conn_t **pool;           /* idle connections */
    size_t pool_size, pool_cap;

    pthread_mutex_t auth_lock; /* guards auth */
    zhashx_t *auth;            /* key sha256 hex -> s_auth_entry_t */

    pthread_mutex_t nudge_lock; /* guards nudge */
    zsock_t *nudge;             /* PUSH to the scheduler */

    s_counters_t counters;
} self_t;

typedef struct {
    int64_t tenant_id;  /* whose key it is */
    int64_t expires_ms; /* monotonic */
} s_auth_entry_t;

/*  One HTTP request while its body arrives. */
typedef struct {
    char *body;         /* received so far, NUL-terminated */
    size_t size, cap;   /* bytes held, allocated */
    bool too_large;     /* over its body limit: body dropped */
    size_t discarded;   /* bytes dropped since */
    int64_t started_us; /* monotonic, for the latency count */
    /* a streaming route's operations (s_streams), or NULL */
    const rcd_api_stream_ops_t *stream_ops;
    void *stream; /* its parser, fed the body instead of body */
} s_request_t;

/*  Who may call a route. S_GATEWAY: no bearer key; the handler
    authenticates the request from its own contents and puts the session
    behind the tenant's wall itself (rcd_api_req_t.as_tenant). */
typedef enum { S_ANYONE, S_ADMIN, S_TENANT, S_GATEWAY } s_who_t;

/*  What a route creates, for the events. */
typedef enum { S_MADE_NOTHING, S_MADE_TENANT, S_MADE_INSTANCE } s_made_t;

typedef void (*s_handler_fn) (rcd_api_req_t *req, rcd_api_reply_t *reply);

typedef struct {
    const char *method;
    const char *path; /* "{id}" matches a decimal id segment */
    s_who_t who;
    s_handler_fn fn;
    s_made_t made; /* what the reply's "created" counts */
} s_route_t;

/*  --- the connection pool --- */

static void
s_conn_destroy (s_conn_t **self_p)
{
    s_conn_t *self = *self_p;
    if (!self)
        return;
    rcd_db_destroy (&self->db);
    free (self);
    *self_p = NULL;
}

/*  Wraps a new connection (taking it), its session state unknown. NULL
    when db is NULL or out of memory. */
static s_conn_t *
s_conn_new (rcd_db_t **db_p)
{
    s_conn_t *self = *db_p ? calloc (1, sizeof *self) : NULL;
    if (!self) {
        rcd_db_destroy (db_p);
        return NULL;
    }
    self->db = *db_p;
    *db_p = NULL;
    self->tenant_id = -1;
    return self;
}

/*  A connection for this request: an idle one, or a new one with every
    statement registered. NULL only when out of memory. */
static s_conn_t *
s_pool_acquire (self_t *self)
{
    s_conn_t *conn = NULL;
    pthread_mutex_lock (&self->pool_lock);
    if (self->pool_size > 0)
        conn = self->pool[--self->pool_size];
    pthread_mutex_unlock (&self->pool_lock);
    if (conn)
        return conn;
    rcd_db_t *db = rcd_db_new (self->config->database_url);
    if (!db)
        return NULL;
    /* Every session, this one and any remade behind our back, starts
       behind the tenant wall with no tenant: it sees no tenant rows and
       may write none until s_session_set says whose request it serves.
       A failure here (0004 not applied) leaves the connection down, so
       requests answer 503 rather than run unwalled. */
    (void)rcd_db_on_connect (db, "SET ROLE recado_tenant");
    if (rcd_db_prepare (db, "auth_lookup",
                        "SELECT id FROM tenants"
                        " WHERE api_key_hash = decode($1::text, 'hex')") != 0 ||
        rcd_db_prepare (db, "session_tenant", S_SESSION_SQL) != 0 ||
        rcd_db_prepare (db, "ready", "SELECT 1") != 0 ||
        rcd_db_prepare (db, "api_rate_take", S_RATE_SQL) != 0 ||
        rcd_api_tenants_prepare (db) != 0 ||
        rcd_api_messages_prepare (db) != 0 ||
        rcd_api_contacts_prepare (db) != 0 ||
        rcd_api_templates_prepare (db) != 0 ||
        rcd_api_cycles_prepare (db) != 0 ||
        rcd_api_dead_letters_prepare (db) != 0 ||
        rcd_api_webhooks_prepare (db) != 0 ||
        rcd_api_campaigns_prepare (db) != 0)
        rcd_db_destroy (&db);
    return s_conn_new (&db);
}

static void
s_pool_release (self_t *self, s_conn_t **conn_p)
{
    s_conn_t *conn = *conn_p;
    *conn_p = NULL;
    if (!conn)
        return;
    rcd_db_rollback (conn->db); /* never hand on an open transaction */
    pthread_mutex_lock (&self->pool_lock);
    if (self->pool_size == self->pool_cap) {
        size_t cap = self->pool_cap ? self->pool_cap * 2 : 8;
        s_conn_t **grown = realloc (self->pool, cap * sizeof (s_conn_t *));
        if (grown) {
            self->pool = grown;
            self->pool_cap = cap;
        }
    }
    if (self->pool_size < self->pool_cap) {
        self->pool[self->pool_size++] = conn;
        conn = NULL;
    }
    pthread_mutex_unlock (&self->pool_lock);
    s_conn_destroy (&conn);
}

/*  Puts the session of conn in the state a route needs. A tenant route
    (tenant_id > 0) runs as role recado_tenant with recado.tenant_id set,
    so row-level security (migrations/0004_row_security.sql) hides every
    other tenant's rows and refuses to write one, whatever a statement
    forgets to filter: the second tenant wall. Every other route
    (tenant_id 0: admin, readiness) runs as the connecting role, which
    creates tenants and, unlike recado_tenant, may one day work across
    them. The authentication lookup needs neither: tenants has no policy
    and both roles may read it, so it runs in whatever state the
    connection is in. A statement is issued only when the state changes
    or the connection was remade (a new session has lost the old
    state). Returns 0, or -1 with reply filled. */
static int
s_session_set (s_conn_t *conn, int64_t tenant_id, rcd_api_reply_t *reply)
{
    /* A connection found broken is remade here, when its backoff allows,
       so that the new session shows as a new generation now, rather than
       being made by the handler's first statement (walled with no tenant,
       it would find nothing). No round trip when it is up. */
    if (!rcd_db_connected (conn->db)) {
        rcd_api_reply_db_error (reply, conn->db, "session_tenant");
        return -1;
    }
    if (conn->tenant_id == tenant_id &&
        conn->gen == rcd_db_generation (conn->db))
        return 0;
    char id[24] = "";
    if (tenant_id > 0)
        snprintf (id, sizeof id, "%" PRId64, tenant_id);
    const char *params[] = {tenant_id > 0 ? "recado_tenant" : "none", id};
    conn->tenant_id = -1; /* unknown until the statement succeeds */
    if (rcd_db_run (conn->db, "session_tenant", 2, params, NULL) != 0) {
        rcd_api_reply_db_error (reply, conn->db, "session_tenant");
        return -1;
    }
    conn->tenant_id = tenant_id;
    conn->gen = rcd_db_generation (conn->db);
    return 0;
}

/*  --- authentication --- */

static void
s_auth_entry_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

/*  The bearer key of the request, or NULL. Borrowed from MHD. */
static const char *
s_bearer (struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp (h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    size_t len = strlen (h);
    return len > 0 && len <= S_KEY_MAX ? h : NULL;
}

/*  The tenant of a key: 1 found, 0 unknown, -1 database failure. */
static int
s_tenant_of_key (self_t *self, rcd_db_t *db, const char *key,
                 int64_t *tenant_id)
{
    char hash[65];
    if (rcd_crypto_sha256_hex (key, hash) != 0)
        return -1;
    int64_t now = rcd_clock_mono_ms ();
    pthread_mutex_lock (&self->auth_lock);
    s_auth_entry_t *entry = zhashx_lookup (self->auth, hash);
    bool hit = entry && entry->expires_ms > now;
    if (hit)
        *tenant_id = entry->tenant_id;
    pthread_mutex_unlock (&self->auth_lock);
    if (hit)
        return 1;

    const char *params[] = {hash};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (db, "auth_lookup", 1, params, &res) != 0)
        return -1;
    int found = rcd_db_res_rows (res) == 1;
    if (found)
        *tenant_id = rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
    if (!found || self->config->auth_cache_ms == 0)
        return found;

    entry = malloc (sizeof *entry);
    if (entry) {
        entry->tenant_id = *tenant_id;
        entry->expires_ms = now + self->config->auth_cache_ms;
        pthread_mutex_lock (&self->auth_lock);
        if (zhashx_size (self->auth) >= S_AUTH_CACHE_MAX)
            zhashx_purge (self->auth);
        zhashx_update (self->auth, hash, entry);
        pthread_mutex_unlock (&self->auth_lock);
    }
    return 1;
}

/*  Checks the caller against the route. Returns 0 with *tenant_id set
    (tenant routes), or -1 with reply filled. */
static int
s_authenticate (self_t *self, struct MHD_Connection *conn, rcd_db_t *db,
                s_who_t who, int64_t *tenant_id, rcd_api_reply_t *reply)
{
    const char *key = s_bearer (conn);
    const char *admin = self->config->admin_key;
    bool is_admin = key && admin && *admin && rcd_crypto_equal (key, admin);
    if (who == S_ADMIN) {
        if (!admin || !*admin) {
            rcd_api_reply_fail (reply, 403, "forbidden", NULL,
                                "the admin API is disabled (no "
                                "RECADO_ADMIN_KEY)");
            return -1;
        }
        if (is_admin)
            return 0;
    }
    if (!key) {
        rcd_api_reply_fail (reply, 401, "unauthorized", NULL,
                            "missing \"Authorization: Bearer <key>\"");
        return -1;
    }
    if (who == S_TENANT && is_admin) {
        rcd_api_reply_fail (reply, 403, "forbidden", NULL,
                            "the admin key cannot act as a tenant");
        return -1;
    }
    int found = s_tenant_of_key (self, db, key, tenant_id);
    if (found < 0) {
        rcd_api_reply_db_error (reply, db, "auth_lookup");
        return -1;
    }
    if (!found) {
        rcd_api_reply_fail (reply, 401, "unauthorized", NULL, "unknown key");
        return -1;
    }
    if (who == S_ADMIN) { /* a tenant knocking on the admin door */
        rcd_api_reply_fail (reply, 403, "forbidden", NULL,
                            "this route needs the admin key");
        return -1;
    }
    return 0;
}

/*  --- routes --- */

static void
s_handle_healthz (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    (void)req;
    rcd_api_reply_text (reply, 200, "{\"status\":\"ok\"}");
}

static void
s_handle_readyz (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "ready", 0, NULL, &res) == 0)
        rcd_api_reply_text (reply, 200, "{\"status\":\"ready\"}");
    else
        rcd_api_reply_fail (reply, 503, "unavailable", NULL,
                            "the database does not answer");
    rcd_db_res_destroy (&res);
}

static const s_route_t s_routes[] = {
    {"GET", "/healthz", S_ANYONE, s_handle_healthz, S_MADE_NOTHING},
    {"GET", "/readyz", S_ANYONE, s_handle_readyz, S_MADE_NOTHING},
    {"POST", "/v1/tenants", S_ADMIN, rcd_api_tenant_create, S_MADE_TENANT},
    {"GET", "/v1/tenant", S_TENANT, rcd_api_tenant_get, S_MADE_NOTHING},
    {"PATCH", "/v1/tenant", S_TENANT, rcd_api_tenant_patch, S_MADE_NOTHING},
    {"POST", "/v1/instances", S_TENANT, rcd_api_instance_create,
     S_MADE_INSTANCE},
    {"GET", "/v1/instances", S_TENANT, rcd_api_instance_list, S_MADE_NOTHING},
    {"PATCH", "/v1/instances/{id}", S_TENANT, rcd_api_instance_patch,
     S_MADE_NOTHING},
    {"POST", "/v1/messages/batch", S_TENANT, rcd_api_message_batch,
     S_MADE_NOTHING},
    {"POST", "/v1/messages", S_TENANT, rcd_api_message_create, S_MADE_NOTHING},
    {"GET", "/v1/messages", S_TENANT, rcd_api_message_list, S_MADE_NOTHING},
    {"GET", "/v1/messages/{id}", S_TENANT, rcd_api_message_get, S_MADE_NOTHING},
    {"DELETE", "/v1/messages/{id}", S_TENANT, rcd_api_message_cancel,
     S_MADE_NOTHING},
    {"PUT", "/v1/contacts/{phone}", S_TENANT, rcd_api_contact_put,
     S_MADE_NOTHING},
    {"GET", "/v1/contacts/{phone}", S_TENANT, rcd_api_contact_get,
     S_MADE_NOTHING},
    {"POST", "/v1/contacts/{phone}/opt-out", S_TENANT, rcd_api_contact_opt_out,
     S_MADE_NOTHING},
    {"PUT", "/v1/templates/{key}", S_TENANT, rcd_api_template_put,
     S_MADE_NOTHING},
    {"GET", "/v1/templates", S_TENANT, rcd_api_template_list, S_MADE_NOTHING},
    {"POST", "/v1/billing-cycles/batch", S_TENANT, rcd_api_cycle_batch,
     S_MADE_NOTHING},
    {"POST", "/v1/billing-cycles", S_TENANT, rcd_api_cycle_create,
     S_MADE_NOTHING},
    {"GET", "/v1/billing-cycles/{external_billing_id}", S_TENANT,
     rcd_api_cycle_get, S_MADE_NOTHING},
    {"POST", "/v1/billing-cycles/{external_billing_id}/cancel", S_TENANT,
     rcd_api_cycle_cancel, S_MADE_NOTHING},
    {"GET", "/v1/dead-letters", S_TENANT, rcd_api_dead_letter_list,
     S_MADE_NOTHING},
    {"POST", "/v1/dead-letters/replay", S_TENANT, rcd_api_dead_letter_replay,
     S_MADE_NOTHING},
    {"POST", "/v1/campaigns", S_TENANT, rcd_api_campaign_create,
     S_MADE_NOTHING},
    {"GET", "/v1/campaigns/{id}", S_TENANT, rcd_api_campaign_get,
     S_MADE_NOTHING},
    {"POST", "/v1/campaigns/{id}/pause", S_TENANT, rcd_api_campaign_pause,
     S_MADE_NOTHING},
    {"POST", "/v1/campaigns/{id}/resume", S_TENANT, rcd_api_campaign_resume,
     S_MADE_NOTHING},
    {"POST", "/v1/campaigns/{id}/cancel", S_TENANT, rcd_api_campaign_cancel,
     S_MADE_NOTHING},
    {"POST", "/v1/webhooks/evolution/{id}", S_GATEWAY,
     rcd_api_webhook_evolution, S_MADE_NOTHING},
    {"GET", "/v1/webhooks/meta", S_GATEWAY, rcd_api_webhook_meta_verify,
     S_MADE_NOTHING},
    {"POST", "/v1/webhooks/meta", S_GATEWAY, rcd_api_webhook_meta,
     S_MADE_NOTHING},
};

/*  True when path matches pattern. A pattern holds at most one "{...}"
    hole standing for one whole segment: "{id}" must be a decimal id,
    stored in *id; any other name takes a segment of 1 to S_ARG_MAX bytes,
    copied into arg. MHD hands over the path already URL-decoded
    ("%2B55%2011%20..." arrives as "+55 11 ..."), so it is not decoded
    again: "%252B" stays "%2B", as the caller meant. */
static bool
s_path_matches (const char *pattern, const char *path, int64_t *id, char *arg,
                size_t arg_size)
{
    const char *hole = strchr (pattern, '{');
    if (!hole)
        return strcmp (pattern, path) == 0;
    const char *tail = strchr (hole, '}');
    if (!tail)
        return false;
    tail++;
    size_t head = (size_t)(hole - pattern);
    if (strncmp (pattern, path, head) != 0)
        return false;
    const char *seg = path + head;
    size_t seg_len = strcspn (seg, "/");
    if (seg_len == 0 || strcmp (seg + seg_len, tail) != 0)
        return false;
    if (strncmp (hole, "{id}", 4) == 0) {
        char text[20];
        if (seg_len > 18)
            return false;
        memcpy (text, seg, seg_len);
        text[seg_len] = 0;
        return rcd_api_parse_id (text, id) == 0;
    }
    if (seg_len > S_ARG_MAX || seg_len >= arg_size)
        return false;
    memcpy (arg, seg, seg_len);
    arg[seg_len] = 0;
    return true;
}

/*  Collects one query argument into the json object. */
static enum MHD_Result
s_collect_query (void *cls, enum MHD_ValueKind kind, const char *key,
                 const char *value)
{
    (void)kind;
    json_object_set_new ((json_t *)cls, key, json_string (value ? value : ""));
    return MHD_YES;
}

/*  --- HTTP plumbing --- */

/*  Queues reply as the answer (taking its body), with the request's
    trace id as X-Trace-Id when there is one. */
static enum MHD_Result
s_queue (struct MHD_Connection *conn, rcd_api_reply_t *reply,
         const char *trace_id)
{
    const char *empty = "";
    char *body = reply->body;
    reply->body = NULL;
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer (strlen (body), body,
                                                MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer (0, (void *)empty,
                                                MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free (body);
        return MHD_NO;
    }
    MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                             reply->content_type ? reply->content_type
                                                 : "application/json");
    if (reply->retry_after_s > 0) {
        char seconds[16];
        snprintf (seconds, sizeof seconds, "%d", reply->retry_after_s);
        MHD_add_response_header (resp, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (trace_id && *trace_id)
        MHD_add_response_header (resp, "X-Trace-Id", trace_id);
    enum MHD_Result rc =
        MHD_queue_response (conn, (unsigned int)reply->status, resp);
    MHD_destroy_response (resp);
    return rc;
}

/*  Counts one answered request. */
static void
s_count_reply (self_t *self, const s_request_t *r, int status)
{
    int cls = status >= 500 ? 2 : status >= 400 ? 1 : 0;
    atomic_fetch_add (&self->counters.http[cls], 1);
    atomic_fetch_add (&self->counters.latency_us,
                      (uint64_t)(rcd_clock_mono_us () - r->started_us));
    if (status == 401)
        atomic_fetch_add (&self->counters.auth_failed, 1);
}

/*  Answers an error before routing (oversize bodies). */
static enum MHD_Result
s_answer_error (self_t *self, struct MHD_Connection *conn, s_request_t *r,
                int status, const char *code, const char *message)
{
    rcd_api_reply_t reply = {0};
    rcd_api_reply_fail (&reply, status, code, NULL, "%s", message);
    s_count_reply (self, r, status);
    return s_queue (conn, &reply, NULL);
}

/*  Tells the scheduler count messages of tenant_id wait. Never blocks. */
static void
s_nudge (self_t *self, int64_t tenant_id, uint32_t count)
{
    rcd_nudge_t nudge = {.tenant_id = (uint64_t)tenant_id, .count = count};
    pthread_mutex_lock (&self->nudge_lock);
    int rc = self->nudge ? rcd_nudge_send (&nudge, self->nudge) : -1;
    pthread_mutex_unlock (&self->nudge_lock);
    if (rc != 0)
        atomic_fetch_add (&self->counters.nudges_lost, 1);
}

/*  Takes a token from the tenant's bucket (S_RATE_SQL) on conn, whose
    session s_session_set has just put in the tenant's state. Returns 0
    when the request may go on (or the limit is off), or -1 with reply
    filled: 429 rate_limited when the bucket is empty, 503 unavailable
    when it could not be read or written, whatever the reason (fail
    closed: a limit that cannot be checked refuses). */
static int
s_rate_take (self_t *self, s_conn_t *conn, int64_t tenant_id,
             rcd_api_reply_t *reply)
{
    rcd_ingestor_config_t *cfg = self->config;
    if (cfg->api_rate_per_second == 0 || cfg->api_burst == 0)
        return 0;
    char tenant[24], rate[24], burst[24];
    snprintf (tenant, sizeof tenant, "%" PRId64, tenant_id);
    snprintf (rate, sizeof rate, "%" PRId64, cfg->api_rate_per_second);
    snprintf (burst, sizeof burst, "%" PRId64, cfg->api_burst);
    const char *params[] = {tenant, rate, burst};
    rcd_db_res_t *res = NULL;
    int rc = rcd_db_run (conn->db, "api_rate_take", 3, params, &res);
    if (rc != 0 || rcd_db_res_rows (res) != 1 ||
        rcd_db_generation (conn->db) != conn->gen) {
        /* a session remade under us ran it walled with no tenant: it
           cannot have taken this tenant's token either */
        rcd_log_warn ("rate limit unavailable: request refused",
                      "{s:I, s:s, s:s}", "tenant_id", (json_int_t)tenant_id,
                      "sqlstate", rcd_db_sqlstate (conn->db), "error",
                      rc != 0 ? rcd_db_error (conn->db) : "no row");
        rcd_db_res_destroy (&res);
        atomic_fetch_add (&self->counters.limiter_err, 1);
        rcd_api_reply_fail (reply, 503, "unavailable", NULL,
                            "the rate limit cannot be checked right now; "
                            "retry later");
        reply->retry_after_s = 1;
        return -1;
    }
    bool allowed = strcmp (rcd_db_res_value (res, 0, 0), "t") == 0;
    int64_t wait_s = rcd_db_res_int64 (res, 0, 1);
    rcd_db_res_destroy (&res);
    if (allowed)
        return 0;
    atomic_fetch_add (&self->counters.limited, 1);
    rcd_api_reply_fail (reply, 429, "rate_limited", NULL,
                        "more than %" PRId64 " requests a second (bursts of "
                        "%" PRId64 "); retry after %" PRId64 " s",
                        cfg->api_rate_per_second, cfg->api_burst, wait_s);
    reply->retry_after_s = wait_s < 1       ? 1
                           : wait_s > 86400 ? 86400
                                            : (int)wait_s;
    return -1;
}

/*  rcd_api_req_t.as_tenant: ctx is the request's pooled connection. */
static int
s_as_tenant (void *ctx, int64_t tenant_id, rcd_api_reply_t *reply)
{
    return s_session_set (ctx, tenant_id, reply);
}

/*  Routes, authenticates and runs one complete request. */
static enum MHD_Result
s_dispatch (self_t *self, struct MHD_Connection *conn, const char *url,
            const char *method, s_request_t *r)
{
    rcd_api_reply_t reply = {0};
    rcd_api_req_t req = {0};
    s_conn_t *pooled = NULL;
    /* The request's trace id (rcd_trace.h): on every log line of this
       thread until the answer is queued, on the messages it stores, and
       in the answer's X-Trace-Id. */
    char trace_id[RCD_TRACE_SIZE];
    (void)rcd_trace_for_request (
        MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "traceparent"),
        MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "X-Request-Id"),
        trace_id);
    rcd_log_set_trace (trace_id);
    req.trace_id = trace_id[0] ? trace_id : NULL;
    req.body = r->body;
    req.body_size = r->size;
    req.stream = r->stream;
    req.default_country = self->config->default_country;
    req.replay_attempts = self->config->replay_attempts;
    req.webhook_token =
        MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "X-Webhook-Token");
    req.signature = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                 "X-Hub-Signature-256");
    req.as_tenant = s_as_tenant;

    const s_route_t *route = NULL;
    bool path_known = false;
    char arg[S_ARG_MAX + 1];
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        int64_t id = 0;
        arg[0] = 0;
        if (!s_path_matches (s_routes[i].path, url, &id, arg, sizeof arg))
            continue;
        path_known = true;
        if (strcmp (s_routes[i].method, method) == 0) {
            route = &s_routes[i];
            req.id = id;
            req.arg = arg[0] ? arg : NULL;
            break;
        }
    }
    if (!route) {
        if (path_known)
            rcd_api_reply_fail (&reply, 405, "method_not_allowed", NULL,
                                "method %s is not allowed here", method);
        else
            rcd_api_reply_fail (&reply, 404, "not_found", NULL,
                                "no such route");
        goto answer;
    }
    if (route->fn == s_handle_healthz) {
        route->fn (&req, &reply);
        goto answer;
    }
    pooled = s_pool_acquire (self);
    req.db = pooled ? pooled->db : NULL;
    if (!req.db) {
        rcd_api_reply_fail (&reply, 500, "internal_error", NULL,
                            "out of memory");
        goto answer;
    }
    req.as_tenant_ctx = pooled;
    if ((route->who == S_ADMIN || route->who == S_TENANT) &&
        s_authenticate (self, conn, req.db, route->who, &req.tenant_id,
                        &reply) != 0)
        goto answer;
    /* a gateway route's lookups work in whatever state the session is
       in (SECURITY DEFINER functions); it calls as_tenant itself */
    if (route->who != S_GATEWAY &&
        s_session_set (pooled, route->who == S_TENANT ? req.tenant_id : 0,
                       &reply) != 0)
        goto answer;
    if (route->who == S_TENANT &&
        s_rate_take (self, pooled, req.tenant_id, &reply) != 0)
        goto answer;
    req.query = json_object ();
    if (req.query)
        MHD_get_connection_values (conn, MHD_GET_ARGUMENT_KIND, s_collect_query,
                                   req.query);
    route->fn (&req, &reply);
    if (req.tenant_id > 0 && rcd_db_generation (req.db) != pooled->gen) {
        /* The connection was remade while the handler ran: what it did
           after that ran in a fresh session, walled but with no tenant
           (rcd_db_on_connect), so it read nothing and wrote nothing.
           That answer would be wrong, not leaked: say retry instead. */
        rcd_log_warn ("database reconnected during a tenant request", "{s:s}",
                      "route", route->path);
        rcd_api_reply_fail (&reply, 503, "unavailable", NULL,
                            "the database connection was lost; retry later");
    }

    if (reply.accepted + reply.requeued + reply.resumed > 0)
        s_nudge (self, req.tenant_id,
                 reply.accepted + reply.requeued + reply.resumed);
    s_counters_t *c = &self->counters;
    atomic_fetch_add (&c->accepted, reply.accepted);
    atomic_fetch_add (&c->duplicates, reply.duplicates);
    atomic_fetch_add (&c->rejected, reply.rejected);
    atomic_fetch_add (&c->cancelled, reply.cancelled);
    atomic_fetch_add (&c->requeued, reply.requeued);
    atomic_fetch_add (&c->wh_applied, reply.webhook_applied);
    atomic_fetch_add (&c->wh_dup, reply.webhook_duplicates);
    atomic_fetch_add (&c->wh_unmatched, reply.webhook_unmatched);
    atomic_fetch_add (&c->wh_ignored, reply.webhook_ignored);
    atomic_fetch_add (&c->settled, reply.settled);
    atomic_fetch_add (&c->opted_out, reply.opted_out);
    atomic_fetch_add (&c->blocked, reply.blocked);
    atomic_fetch_add (&c->camp_created, reply.campaigns_created);
    atomic_fetch_add (&c->camp_paused, reply.campaigns_paused);
    atomic_fetch_add (&c->camp_resumed, reply.campaigns_resumed);
    atomic_fetch_add (&c->camp_cancel, reply.campaigns_cancelled);
    atomic_fetch_add (&c->camp_done, reply.campaigns_completed);
    atomic_fetch_add (&c->held, reply.paused);
    atomic_fetch_add (&c->released, reply.resumed);
    if (route->made == S_MADE_TENANT)
        atomic_fetch_add (&c->tenants, reply.created);
    else if (route->made == S_MADE_INSTANCE)
        atomic_fetch_add (&c->instances, reply.created);

answer:
    json_decref (req.query);
    s_pool_release (self, &pooled);
    if (!reply.status)
        rcd_api_reply_fail (&reply, 500, "internal_error", NULL,
                            "internal error");
    s_count_reply (self, r, reply.status);
    if (rcd_log_enabled (RCD_LOG_DEBUG)) {
        /* the route's pattern, not the path: /v1/contacts/{phone} carries
           a phone; an unrouted path is logged with its numbers masked */
        char *path =
            route ? NULL : rcd_gateway_log_excerpt (url, strlen (url), 256);
        rcd_log_debug ("http", "{s:s, s:s, s:i, s:I}", "method", method,
                       route ? "route" : "path",
                       route  ? route->path
                       : path ? path
                              : "",
                       "status", reply.status, "us",
                       (json_int_t)(rcd_clock_mono_us () - r->started_us));
        free (path);
    }
    enum MHD_Result rc = s_queue (conn, &reply, req.trace_id);
    rcd_log_set_trace (NULL);
    return rc;
}

/*  Routes whose body is parsed as it arrives instead of held
    (rcd_api.h), found by method and exact path when the headers are in. */
static const struct {
    const char *method;
    const char *path;
    const rcd_api_stream_ops_t *ops;
} s_streams[] = {
    {"POST", "/v1/campaigns", &rcd_api_campaign_stream},
};

/*  The stream operations of a streaming route, or NULL. */
static const rcd_api_stream_ops_t *
s_stream_route (const char *method, const char *url)
{
    for (size_t i = 0; i < sizeof s_streams / sizeof s_streams[0]; i++)
        if (strcmp (s_streams[i].method, method) == 0 &&
            strcmp (s_streams[i].path, url) == 0)
            return s_streams[i].ops;
    return NULL;
}

/*  The body limit of a request. */
static size_t
s_body_limit (self_t *self, const s_request_t *r)
{
    return (size_t)(r->stream_ops ? self->config->campaign_max_body_bytes
                                  : self->config->max_body_bytes);
}

/*  Appends upload data to the request (a streaming route's goes to its
    parser, counted but not kept), or drops it once over the limit. */
static bool
s_accumulate (self_t *self, s_request_t *r, const char *data, size_t size)
{
    if (!r->too_large && r->size + size > s_body_limit (self, r)) {
        r->too_large = true;
        free (r->body);
        r->body = NULL;
        r->size = r->cap = 0;
        if (r->stream)
            r->stream_ops->destroy_fn (&r->stream);
    }
    if (r->too_large) {
        r->discarded += size;
        return r->discarded <= S_DISCARD_MAX;
    }
    if (r->stream) {
        /* a bad body keeps its first error in the parser, for the
           handler; the rest is counted against the limit and dropped */
        (void)r->stream_ops->feed_fn (r->stream, data, size);
        r->size += size;
        return true;
    }
    if (r->size + size + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->size + size + 1)
            cap *= 2;
        char *grown = realloc (r->body, cap);
        if (!grown)
            return false;
        r->body = grown;
        r->cap = cap;
    }
    memcpy (r->body + r->size, data, size);
    r->size += size;
    r->body[r->size] = 0;
    return true;
}

/*  MHD's access handler: called once with the headers, once per chunk of
    body, and once more when the body is complete. */
static enum MHD_Result
s_self_handle_http (void *cls, struct MHD_Connection *conn, const char *url,
                    const char *method, const char *version,
                    const char *upload_data, size_t *upload_data_size,
                    void **req_cls)
{
    (void)version;
    self_t *self = cls;
    s_request_t *r = *req_cls;
    if (!r) {
        r = calloc (1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->started_us = rcd_clock_mono_us ();
        *req_cls = r;
        pthread_mutex_lock (&self->flight_lock);
        self->in_flight++;
        pthread_mutex_unlock (&self->flight_lock);
        r->stream_ops = s_stream_route (method, url);
        if (r->stream_ops) {
            /* a streaming body is parsed as it arrives: only for a
               caller with a key, checked now (s_dispatch checks it again,
               from the cache); anyone else is answered at once and the
               body is never read */
            rcd_api_reply_t reply = {0};
            int64_t tenant_id = 0;
            s_conn_t *pooled = s_pool_acquire (self);
            int rc = pooled ? s_authenticate (self, conn, pooled->db, S_TENANT,
                                              &tenant_id, &reply)
                            : -1;
            s_pool_release (self, &pooled);
            if (rc != 0) {
                if (!reply.status)
                    rcd_api_reply_fail (&reply, 500, "internal_error", NULL,
                                        "out of memory");
                r->too_large = true; /* drop the body, as an oversize one */
                s_count_reply (self, r, reply.status);
                return s_queue (conn, &reply, NULL);
            }
            r->stream = r->stream_ops->new_fn (self->config->default_country);
            if (!r->stream)
                return MHD_NO; /* out of memory */
        }
        const char *length = MHD_lookup_connection_value (
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull (length, NULL, 10) >
                          (unsigned long long)s_body_limit (self, r)) {
            r->too_large = true;
            return s_answer_error (self, conn, r, 413, "payload_too_large",
                                   "the body is larger than the configured "
                                   "maximum");
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool ok = s_accumulate (self, r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (r->too_large)
        return s_answer_error (self, conn, r, 413, "payload_too_large",
                               "the body is larger than the configured "
                               "maximum");
    return s_dispatch (self, conn, url, method, r);
}

static void
s_self_handle_completed (void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    self_t *self = cls;
    s_request_t *r = *req_cls;
    if (r) {
        if (r->stream)
            r->stream_ops->destroy_fn (&r->stream);
        free (r->body);
        free (r);
        pthread_mutex_lock (&self->flight_lock);
        if (--self->in_flight == 0)
            pthread_cond_broadcast (&self->flight_done);
        pthread_mutex_unlock (&self->flight_lock);
    }
    *req_cls = NULL;
}

/*  Starts listening. Returns 0, or -1 with *why set. */
static int
s_self_start_http (self_t *self, const char **why)
{
    rcd_ingestor_config_t *cfg = self->config;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr *addr = NULL;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                         MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    memset (&in4, 0, sizeof in4);
    memset (&in6, 0, sizeof in6);
    if (inet_pton (AF_INET, cfg->http_bind, &in4.sin_addr) == 1) {
        in4.sin_family = AF_INET;
        in4.sin_port = htons ((uint16_t)cfg->http_port);
        addr = (struct sockaddr *)&in4;
    }
    else if (inet_pton (AF_INET6, cfg->http_bind, &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons ((uint16_t)cfg->http_port);
        addr = (struct sockaddr *)&in6;
        flags |= MHD_USE_IPv6;
    }
    else {
        *why = "http_bind is not an IPv4 or IPv6 address";
        return -1;
    }
    /* the logger goes first so that MHD never prints on its own */
    self->httpd = MHD_start_daemon (
        flags, (uint16_t)cfg->http_port, NULL, NULL, s_self_handle_http, self,
        MHD_OPTION_EXTERNAL_LOGGER, rcd_log_external, "http server",
        MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)cfg->http_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)cfg->http_max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)cfg->http_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        s_self_handle_completed, self, MHD_OPTION_END);
    if (!self->httpd) {
        *why = "cannot listen on http_bind:http_port";
        return -1;
    }
    rcd_log_info ("listening", "{s:s, s:i, s:i}", "bind", cfg->http_bind,
                  "port", (int)cfg->http_port, "threads",
                  (int)cfg->http_threads);
    return 0;
}

/*  Stops accepting, lets the requests in flight be answered for up to
    wait_ms, then closes every connection (idle keep-alive ones
    included). */
static void
s_self_stop_http (self_t *self, int64_t wait_ms)
{
    if (!self->httpd)
        return;
    MHD_socket listener = MHD_quiesce_daemon (self->httpd);
    struct timespec deadline;
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (wait_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock (&self->flight_lock);
    int rc = 0;
    while (self->in_flight > 0 && rc == 0)
        rc = pthread_cond_timedwait (&self->flight_done, &self->flight_lock,
                                     &deadline);
    int left = self->in_flight;
    pthread_mutex_unlock (&self->flight_lock);
    if (left > 0)
        rcd_log_warn ("requests cut short", "{s:i}", "count", left);
    MHD_stop_daemon (self->httpd);
    self->httpd = NULL;
    /* quiesce handed the listening socket over to us: closed only now,
       when no MHD thread can use it any more */
    if (listener != MHD_INVALID_SOCKET)
        close (listener);
}

/*  --- the actor --- */

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    s_self_stop_http (self, 0);
    zsock_destroy (&self->nudge);
    rcd_events_destroy (&self->events);
    zhashx_destroy (&self->auth);
    for (size_t i = 0; i < self->pool_size; i++)
        s_conn_destroy (&self->pool[i]);
    free (self->pool);
    pthread_mutex_destroy (&self->nudge_lock);
    pthread_mutex_destroy (&self->auth_lock);
    pthread_mutex_destroy (&self->pool_lock);
    pthread_cond_destroy (&self->flight_done);
    pthread_mutex_destroy (&self->flight_lock);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, rcd_ingestor_config_t *config)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->config = config;
    pthread_mutex_init (&self->flight_lock, NULL);
    pthread_cond_init (&self->flight_done, NULL);
    pthread_mutex_init (&self->pool_lock, NULL);
    pthread_mutex_init (&self->auth_lock, NULL);
    pthread_mutex_init (&self->nudge_lock, NULL);
    self->auth = zhashx_new ();
    if (!self->auth) {
        s_self_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->auth, s_auth_entry_destroy);
    return self;
}

/*  Opens the sockets and starts the HTTP server. Returns 0, or -1 with
    *why set. */
static int
s_self_start (self_t *self, const char **why)
{
    rcd_ingestor_config_t *cfg = self->config;
    self->events = rcd_events_new (cfg->events_endpoint, "ingestor", NULL);
    if (!self->events) {
        *why = "bad events_endpoint";
        return -1;
    }
    self->nudge = zsock_new (ZMQ_PUSH);
    if (!self->nudge) {
        *why = "cannot create the nudge socket";
        return -1;
    }
    zsock_set_sndhwm (self->nudge, (int)cfg->nudge_hwm);
    zsock_set_sndtimeo (self->nudge, 0);
    zsock_set_linger (self->nudge, 0);
    if (zsock_connect (self->nudge, "%s", cfg->nudge_endpoint) != 0) {
        *why = "bad nudge_endpoint";
        return -1;
    }
    return s_self_start_http (self, why);
}

/*  Publishes what the pool threads counted since the last tick. */
static void
s_self_publish_counts (self_t *self)
{
    s_counters_t *c = &self->counters;
    static const char *const classes[] = {"2xx", "4xx", "5xx"};
    uint64_t total = 0, n[3];
    for (int i = 0; i < 3; i++) {
        n[i] = atomic_exchange (&c->http[i], 0);
        total += n[i];
    }
    uint64_t latency = atomic_exchange (&c->latency_us, 0);
    for (int i = 0; i < 3; i++)
        if (n[i])
            rcd_events_emit (self->events, "http.request", n[i], 0,
                             (int64_t)(latency / total), classes[i]);
    struct {
        const char *kind;
        atomic_uint_fast64_t *counter;
    } simple[] = {
        {"message.accepted", &c->accepted},
        {"message.duplicate", &c->duplicates},
        {"message.rejected", &c->rejected},
        {"message.cancelled", &c->cancelled},
        {"message.replayed", &c->requeued},
        {"api.rate_limited", &c->limited},
        {"api.limiter_failed", &c->limiter_err},
        {"tenant.created", &c->tenants},
        {"instance.created", &c->instances},
        {"auth.failed", &c->auth_failed},
        {"nudge.dropped", &c->nudges_lost},
        {"webhook.applied", &c->wh_applied},
        {"webhook.duplicate", &c->wh_dup},
        {"webhook.unmatched", &c->wh_unmatched},
        {"webhook.ignored", &c->wh_ignored},
        {"message.settled", &c->settled},
        {"contact.opted_out", &c->opted_out},
        {"message.blocked", &c->blocked},
        {"campaign.created", &c->camp_created},
        {"campaign.paused", &c->camp_paused},
        {"campaign.resumed", &c->camp_resumed},
        {"campaign.cancelled", &c->camp_cancel},
        {"campaign.completed", &c->camp_done},
        {"message.paused", &c->held},
        {"message.resumed", &c->released},
    };
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        uint64_t v = atomic_exchange (simple[i].counter, 0);
        if (v)
            rcd_events_emit (self->events, simple[i].kind, v, 0, 0, NULL);
    }
}

/*  Periodic work: heartbeat and counts, once a second. */
static void
s_self_tick (self_t *self)
{
    int64_t now = rcd_clock_mono_ms ();
    if (now < self->next_tick_ms)
        return;
    self->next_tick_ms = now + 1000;
    if (self->events) {
        rcd_events_heartbeat (self->events,
                              self->draining ? "draining" : "active");
        s_self_publish_counts (self);
    }
}

/*  One command from main. Returns -1 on $TERM. */
static int
s_self_handle_pipe (self_t *self)
{
    char *cmd = zstr_recv (self->pipe);
    if (!cmd)
        return -1; /* interrupted */
    int rc = 0;
    if (streq (cmd, "$TERM"))
        rc = -1;
    else if (streq (cmd, "DRAIN")) {
        self->draining = true;
        rcd_log_info ("draining http", NULL);
        /* leaves main's deadline room to hear DRAINED */
        s_self_stop_http (self, self->config->drain_timeout_ms * 3 / 4);
        zstr_send (self->pipe, "DRAINED");
    }
    else
        rcd_log_warn ("unknown actor command", "{s:s}", "command", cmd);
    zstr_free (&cmd);
    return rc;
}

void
rcd_ingestor_server (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (rcd_ingestor_config_t *)args);
    zpoller_t *poller = zpoller_new (pipe, NULL);
    zsock_signal (pipe, 0);
    const char *why = "out of memory";
    if (!self || !poller || s_self_start (self, &why) != 0) {
        rcd_log_error ("ingestor cannot start", "{s:s}", "why", why);
        zsock_send (pipe, "ss", "FATAL", why);
        if (self)
            s_self_stop_http (self, 0);
    }
    while (poller) {
        int64_t wait = self ? self->next_tick_ms - rcd_clock_mono_ms () : 1000;
        void *which = zpoller_wait (poller, wait < 0 ? 0 : (int)wait);
        if (which == pipe) {
            if (!self) { /* only waiting for $TERM */
                char *cmd = zstr_recv (pipe);
                bool term = !cmd || streq (cmd, "$TERM");
                zstr_free (&cmd);
                if (term)
                    break;
                continue;
            }
            if (s_self_handle_pipe (self) != 0)
                break;
        }
        else if (zpoller_terminated (poller))
            break;
        if (self)
            s_self_tick (self);
    }
    if (self) {
        s_self_stop_http (self, 1000);
        if (self->events)
            s_self_publish_counts (self);
    }
    zpoller_destroy (&poller);
    s_self_destroy (&self);
}

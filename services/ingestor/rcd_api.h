/*  rcd_api.h - the ingestor's HTTP handlers and what they share.

    The server (rcd_ingestor_server.c) owns HTTP, authentication and the
    connection pool; a handler only turns one authenticated request into
    one reply, with its database work on the borrowed connection. Side
    effects the server must act on (nudging the scheduler, counting
    events) come back as counts in the reply, so handlers stay free of
    sockets and threads.

    Every handler fills reply->status and reply->body on every path; an
    error body is API.md's {"error": {"code", "message", "field"}}.
*/
#ifndef RCD_API_H_INCLUDED
#define RCD_API_H_INCLUDED

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcd_db.h"

struct rcd_api_reply;

/*  One authenticated request, as a handler sees it. All borrowed. */
typedef struct {
    rcd_db_t *db;                /* this thread's connection */
    int64_t tenant_id;           /* the caller's tenant; 0 on admin routes */
    int64_t id;                  /* the {id} path segment, when routed */
    const char *arg;             /* another {name} path segment (MHD has
                                    URL-decoded it); NULL when none */
    const char *body;            /* NUL-terminated body; NULL when none */
    size_t body_size;            /* bytes in body */
    json_t *query;               /* query arguments, name -> string */
    const char *default_country; /* calling code for national numbers */
    int64_t replay_attempts;     /* new attempts a dead-letter replay
                                    gives a message */
    const char *webhook_token;   /* header X-Webhook-Token, or NULL */
    const char *signature;       /* header X-Hub-Signature-256, or NULL */
    const char *trace_id;        /* the request's trace id (rcd_trace.h),
                                    stored with the messages it makes;
                                    NULL only when none could be made */
    void *stream;                /* a streaming route's body, parsed as it
                                    arrived (rcd_api_stream_ops_t); body
                                    is then NULL */
    /*  Gateway routes learn their tenant from the request itself: this
        puts the connection's session behind that tenant's wall (as the
        server does before a tenant route), after which the handler sets
        tenant_id. Returns 0, or -1 with reply filled. */
    int (*as_tenant) (void *ctx, int64_t tenant_id,
                      struct rcd_api_reply *reply);
    void *as_tenant_ctx;
} rcd_api_req_t;

/*  One reply. */
typedef struct rcd_api_reply {
    int status;          /* HTTP status */
    char *body;          /* JSON text, owned (free); NULL: empty body */
    uint32_t accepted;   /* messages newly stored (the scheduler's nudge) */
    uint32_t duplicates; /* idempotent replays answered */
    uint32_t rejected;   /* batch items answered with an error */
    uint32_t cancelled;  /* messages cancelled */
    uint32_t created;    /* tenants or instances created */
    uint32_t requeued;   /* messages made pending again (the scheduler's
                            nudge too) */
    int retry_after_s;   /* > 0: sent as a Retry-After header */
    const char *content_type; /* static; NULL: application/json */
    /* gateway webhooks: events newly applied, already stored, stored
       without a message to apply to, skipped; unknown outcomes settled,
       contacts opted out by a reply and the messages that blocked */
    uint32_t webhook_applied, webhook_duplicates, webhook_unmatched,
        webhook_ignored, settled, opted_out, blocked;
    /* campaigns: state changes made (one each), the messages a pause
       held back and a resume released (the scheduler's nudge too) */
    uint32_t campaigns_created, campaigns_paused, campaigns_resumed,
        campaigns_cancelled, campaigns_completed, paused, resumed;
} rcd_api_reply_t;

/*  A route whose body is parsed as it arrives instead of being held
    whole (POST /v1/campaigns). The server makes one stream per request
    with new_fn when the headers are in, gives it every chunk of the
    body with feed_fn (whose result it ignores: the stream keeps its own
    error for the handler), hands it to the handler as req->stream, and
    destroys it when the request ends. */
typedef struct {
    void *(*new_fn) (const char *default_country);
    int (*feed_fn) (void *stream, const char *data, size_t size);
    void (*destroy_fn) (void **stream_p);
} rcd_api_stream_ops_t;

/*  A validation or processing error, before it becomes a body. */
typedef struct {
    int status;        /* HTTP status */
    const char *code;  /* API.md error code; static */
    char field[128];   /* JSON path of the culprit; "" for null */
    char message[256]; /* human text */
} rcd_api_error_t;

/*  JSON value kinds a body field may have. */
typedef enum {
    RCD_API_STRING,
    RCD_API_INTEGER,
    RCD_API_NUMBER, /* integer or real */
    RCD_API_BOOLEAN,
    RCD_API_OBJECT,
    RCD_API_ARRAY,
    RCD_API_ANY
} rcd_api_type_t;

/*  One allowed field of a body object; tables end with a NULL name. */
typedef struct {
    const char *name;
    rcd_api_type_t type;
    bool required; /* null counts as missing */
} rcd_api_field_t;

/*  Handlers: tenants and instances (rcd_api_tenants.c). */
void
rcd_api_tenant_create (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_tenant_get (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_tenant_patch (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_instance_create (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_instance_list (rcd_api_req_t *req, rcd_api_reply_t *reply);
/*  PATCH /v1/instances/{id} (req->id): enabled, limits, base_url,
    rotated credentials; answers the instance as GET lists it. */
void
rcd_api_instance_patch (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: messages (rcd_api_messages.c). */
void
rcd_api_message_create (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_message_batch (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_message_get (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_message_list (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_message_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: contacts (rcd_api_contacts.c); req->arg is the phone as
    written in the path. */
void
rcd_api_contact_put (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_contact_get (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_contact_opt_out (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: templates (rcd_api_templates.c); req->arg is the key. */
void
rcd_api_template_put (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_template_list (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: billing cycles (rcd_api_cycles.c); req->arg is the
    external_billing_id. */
void
rcd_api_cycle_create (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_cycle_batch (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_cycle_get (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_cycle_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: campaigns (rcd_api_campaigns.c); req->id is the campaign.
    create reads its body from req->stream (rcd_api_campaign_stream). */
void
rcd_api_campaign_create (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_campaign_get (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_campaign_pause (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_campaign_resume (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_campaign_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  The streamed body of POST /v1/campaigns. */
extern const rcd_api_stream_ops_t rcd_api_campaign_stream;

/*  Most contacts one POST /v1/campaigns may carry. */
#define RCD_API_AUDIENCE_MAX 100000

/*  Handlers: dead letters (rcd_api_dead_letters.c). */
void
rcd_api_dead_letter_list (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_dead_letter_replay (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Handlers: gateway webhooks (rcd_api_webhooks.c). No bearer key: the
    Evolution route checks the tenant's webhook token (req->id is the
    tenant), the Meta routes the instance's verify token or the body's
    signature. */
void
rcd_api_webhook_evolution (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_webhook_meta_verify (rcd_api_req_t *req, rcd_api_reply_t *reply);
void
rcd_api_webhook_meta (rcd_api_req_t *req, rcd_api_reply_t *reply);

/*  Registers the named statements the handlers run, on a new
    connection. */
int
rcd_api_tenants_prepare (rcd_db_t *db);
int
rcd_api_messages_prepare (rcd_db_t *db);
int
rcd_api_contacts_prepare (rcd_db_t *db);
int
rcd_api_templates_prepare (rcd_db_t *db);
int
rcd_api_cycles_prepare (rcd_db_t *db);
int
rcd_api_dead_letters_prepare (rcd_db_t *db);
int
rcd_api_webhooks_prepare (rcd_db_t *db);
int
rcd_api_campaigns_prepare (rcd_db_t *db);

/*  --- rendering templates (rcd_api_templates.c) --- */

/*  What rendering a chunk of messages needs, loaded in one round trip. */
typedef struct rcd_api_render rcd_api_render_t;

/*  Loads the templates named in keys[0..n) (NULL entries skipped) and the
    tenant's generic template, the stored contacts of phones[0..n), and
    nids fresh message ids. keys or phones may be NULL. Returns 0, or -1
    on a database failure. */
int
rcd_api_render_load (rcd_db_t *db, int64_t tenant_id, const char *const *keys,
                     const char *const *phones, size_t n, size_t nids,
                     rcd_api_render_t **self_p);
void
rcd_api_render_destroy (rcd_api_render_t **self_p);

/*  The next of the fresh message ids (0 when none is left). */
int64_t
rcd_api_render_next_id (rcd_api_render_t *self);

/*  True when template key (NULL: none), or else the tenant's generic
    template, has a variation to render. */
bool
rcd_api_render_has_template (rcd_api_render_t *self, const char *key);

/*  The stored contact of phone as {name, vars}, or NULL. Borrowed. */
json_t *
rcd_api_render_contact (rcd_api_render_t *self, const char *phone);

/*  Renders the message with id from template key (NULL or unknown: the
    tenant's generic template), variation id % n, placeholders filled
    from scopes in order. prefix ("" or "items[3].") goes before field
    names in errors. Returns 0 with *out_p (caller frees), or -2 with err
    filled (no template; a placeholder without a value, named as
    "<prefix>vars.<name>"). */
int
rcd_api_render_text (rcd_api_render_t *self, const char *key, int64_t id,
                     json_t *const *scopes, size_t nscopes, const char *prefix,
                     char **out_p, rcd_api_error_t *err);

/*  Most messages a batch may hold. */
#define RCD_API_BATCH_MAX 1000

/*  --- helpers (rcd_api_json.c) --- */

/*  Fills err and returns -2 (the "bad input" return of the caller). */
int
rcd_api_fail (rcd_api_error_t *err, int status, const char *code,
              const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

/*  {"code", "message", "field"} of err. Caller owns the result. */
json_t *
rcd_api_error_json (const rcd_api_error_t *err);

/*  Answers err as {"error": {...}}. */
void
rcd_api_reply_error (rcd_api_reply_t *reply, const rcd_api_error_t *err);

/*  Answers an error made on the spot. */
void
rcd_api_reply_fail (rcd_api_reply_t *reply, int status, const char *code,
                    const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

/*  Answers a database failure: 503 unavailable (with Retry-After: 1)
    when the connection is down, 500 internal_error otherwise (logged
    with what). */
void
rcd_api_reply_db_error (rcd_api_reply_t *reply, rcd_db_t *db, const char *what);

/*  Answers obj as JSON with status. Takes ownership of obj. */
void
rcd_api_reply_json (rcd_api_reply_t *reply, int status, json_t *obj);

/*  Answers a copy of JSON text with status. */
void
rcd_api_reply_text (rcd_api_reply_t *reply, int status, const char *json_text);

/*  Runs the prepared statement stmt, whose one row and column is the
    answer's JSON document, and answers it with 200; no row answers 404
    not_found with missing as the message; a failure answers as
    rcd_api_reply_db_error. */
void
rcd_api_reply_document (rcd_api_req_t *req, rcd_api_reply_t *reply,
                        const char *stmt, int nparams,
                        const char *const *params, const char *missing);

/*  Parses the request body as a JSON object. Returns 0 and *obj_p (caller
    owns it), or -2 with err filled (invalid_json). */
int
rcd_api_parse_body (const rcd_api_req_t *req, json_t **obj_p,
                    rcd_api_error_t *err);

/*  Checks obj against a field table: unknown fields (invalid_field),
    wrong types (invalid_field), missing required ones (missing_field).
    prefix ("" or "items[3].") is put before field names in errors.
    Returns 0 or -2 with err filled. */
int
rcd_api_check_fields (json_t *obj, const rcd_api_field_t *fields,
                      const char *prefix, rcd_api_error_t *err);

/*  The string value of an optional field: NULL when absent or null
    (types were checked by rcd_api_check_fields). Borrowed. */
const char *
rcd_api_string (json_t *obj, const char *name);

/*  True when text holds a control character (names end up in URLs and
    logs). */
bool
rcd_api_has_control (const char *text);

/*  Number of UTF-8 characters in text (jansson strings are valid UTF-8). */
size_t
rcd_api_utf8_length (const char *text);

/*  Parses an RFC 3339 timestamp with its offset ("2026-11-22T09:00:00-03:00",
    'Z', optional seconds and fraction) into Unix milliseconds, checking
    the calendar. Returns 0, or -2 when malformed. */
int
rcd_api_parse_time (const char *text, int64_t *ms_p);

/*  Checks a business_hours value (null, or weekdays to lists of
    ["HH:MM", "HH:MM"] windows). Returns 0 or -2 with err filled. */
int
rcd_api_check_business_hours (json_t *value, rcd_api_error_t *err);

/*  Parses "HH:MM" (00:00 to 23:59; "24:00" too when end is true) into
    minutes of the day. Returns them, or -1 when malformed. */
int
rcd_api_parse_clock (const char *text, bool end);

/*  Limits of a vars object (a message's, a cycle's or a contact's). */
#define RCD_API_VARS_MAX        100
#define RCD_API_VAR_VALUE_CHARS 1000

/*  Parses a batch body {"items": [...]} of at most RCD_API_BATCH_MAX
    items. Returns 0 with *body_p (caller decrefs) and *items_p (borrowed
    from it), or -1 with reply filled (400, or 413 payload_too_large on
    "items"); *body_p may then still need a decref. */
int
rcd_api_parse_batch (const rcd_api_req_t *req, json_t **body_p,
                     json_t **items_p, rcd_api_reply_t *reply);

/*  Fills err for a batch item that was valid but not stored: 503
    unavailable when the database is down, else 500 internal_error. */
void
rcd_api_fail_unstored (rcd_api_error_t *err, bool db_down);

/*  Reminder offsets: how many, and how far from the due date. */
#define RCD_API_OFFSETS_MAX 10
#define RCD_API_OFFSET_DAYS 365

/*  Checks a list of offsets in days (1 to RCD_API_OFFSETS_MAX whole
    numbers in +-RCD_API_OFFSET_DAYS; a repeat refused unless repeats_ok)
    named field in errors, into days[0..*n_p). Returns 0 or -2 with err
    filled. */
int
rcd_api_check_offsets (json_t *list, const char *field, bool repeats_ok,
                       int *days, size_t *n_p, rcd_api_error_t *err);

/*  Checks a vars object: at most RCD_API_VARS_MAX keys of letters,
    digits and '_' (the names {{var}} placeholders use), to strings or
    numbers. prefix ("" or "items[3].") goes before "vars" in errors.
    Returns 0 or -2 with err filled. */
int
rcd_api_check_vars (json_t *vars, const char *prefix, rcd_api_error_t *err);

/*  Parses a strict "YYYY-MM-DD" calendar date (year 1900 on). Returns 0
    with *y, *m, *d, or -2. */
int
rcd_api_parse_date (const char *text, int *y, int *m, int *d);

/*  Days since 1970-01-01 of a Gregorian date (month 1..12); a day past
    the month's end counts as its last day, so 29 Feb of a common year is
    28 Feb. */
int64_t
rcd_api_days (int y, int m, int d);

/*  Parses a decimal id of 1 to 18 digits. Returns 0 or -2. */
int
rcd_api_parse_id (const char *text, int64_t *id_p);

/*  The keyset page of a listing (GET /v1/messages, /v1/dead-letters):
    query parameters since (RFC 3339), limit (1 to RCD_API_PAGE_MAX,
    default RCD_API_PAGE_DEFAULT) and cursor (the last id of the previous
    page, 0: from the start). */
#define RCD_API_PAGE_DEFAULT 50
#define RCD_API_PAGE_MAX     500
typedef struct {
    int64_t limit;
    int64_t cursor;
    const char *since; /* as given (borrowed from the query), NULL: none */
    int64_t since_ms;  /* the same instant, when since is set */
} rcd_api_page_t;

/*  A page with the defaults. */
void
rcd_api_page_init (rcd_api_page_t *page);

/*  Reads query parameter key = value into page when it is one of the
    page's. Returns 1 when it was (and is valid), 0 when key is another
    parameter, -1 when its value is invalid (reply holds the 400 naming
    it). */
int
rcd_api_page_param (rcd_api_page_t *page, const char *key, const char *value,
                    rcd_api_reply_t *reply);

/*  A SQL expression formatting timestamptz column col as RFC 3339 UTC
    with milliseconds; NULL stays NULL. */
#define RCD_API_TS(col)                                                        \
    "to_char((" col ") AT TIME ZONE 'UTC', "                                   \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

#endif

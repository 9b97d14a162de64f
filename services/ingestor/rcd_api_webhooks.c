/*  rcd_api_webhooks.c - what the gateways tell us after a send: receipts,
    the contacts' replies, echoes of our own sends, connection changes.

    POST /v1/webhooks/evolution/{tenant_id}
      Evolution API v2's envelope {event, instance, data, date_time,
      apikey, ...}. Evolution signs nothing, so the tenant's webhook_token
      (header X-Webhook-Token or ?token=) authenticates it; an apikey in
      the envelope, when there is one, must be the instance's. The
      instance is named in the envelope and must be the tenant's.
      Handled events: messages.update (receipts), messages.upsert
      (replies; fromMe: an echo), send.message (an echo),
      connection.update; others are acknowledged and ignored. Event names
      are compared case-insensitively with '_' as '.', so the
      MESSAGES_UPDATE form is the same event. date_time is the gateway's
      local time mislabelled as UTC and is never used.
    GET /v1/webhooks/meta
      The verification handshake: hub.verify_token equal to a Meta
      instance's verify_token echoes hub.challenge as text/plain.
    POST /v1/webhooks/meta
      {object, entry: [{changes: [{field: "messages", value: {metadata:
      {phone_number_id}, statuses | messages}}]}]}. The phone_number_id
      names the instance, whose app_secret must give the body's
      X-Hub-Signature-256 (HMAC-SHA256 of the raw body, compared in
      constant time); every instance named must.

    Each event becomes one call of rcd_webhook_record
    (migrations/0007_webhooks.sql): the event is stored under its gateway
    key and applied in the same statement, or found already stored and
    acknowledged as a duplicate; redeliveries, concurrent or not, apply
    once. Events are recorded one statement each, without an enclosing
    transaction: a failure half-way answers 5xx, the gateway delivers the
    whole body again, and what was stored the first time is found as
    duplicates. Bad envelopes answer 4xx (neither gateway retries those);
    an event inside a good envelope that cannot be read (no id, a status
    we do not track, a group chat, a reply without text) is counted as
    ignored.

    The answer to a good request is 200 {"received", "applied",
    "duplicates", "unmatched", "ignored"}: events read, events newly
    applied, events already stored, events stored that matched no
    message yet (recovery tries those again), events skipped.
*/
#include "rcd_api.h"
#include "rcd_crypto.h"
#include "rcd_log.h"
#include "rcd_phone.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*  Longest gateway message id kept; longer ones are ignored. */
#define S_ID_MAX 200
/*  Most Meta instances one request may name. */
#define S_META_INSTANCES_MAX 16

/* clang-format off */
int
rcd_api_webhooks_prepare (rcd_db_t *db)
{
    int rc = 0;
    rc |= rcd_db_prepare (db, "webhook_evolution_route",
        "SELECT webhook_token, instance_id, api_key"
        "  FROM rcd_webhook_evolution_route($1::bigint, $2::text)");
    rc |= rcd_db_prepare (db, "webhook_meta_route",
        "SELECT tenant_id, instance_id, app_secret"
        "  FROM rcd_webhook_meta_route($1::text)"
        " WHERE instance_id IS NOT NULL");
    rc |= rcd_db_prepare (db, "webhook_meta_verify",
        "SELECT rcd_webhook_meta_verify($1::text)");
    rc |= rcd_db_prepare (db, "webhook_record",
        "SELECT outcome, message_id, blocked FROM rcd_webhook_record("
        "  $1::bigint, $2::bigint, $3::text, $4::text, $5::text, $6::text,"
        "  $7::text, $8::text, $9::text, $10::text,"
        "  to_timestamp(nullif($11::text, '')::float8), $12::jsonb)");
    return rc ? -1 : 0;
}
/* clang-format on */

/*  One event read from a payload, as rcd_webhook_record takes it. */
typedef struct {
    const char *kind; /* receipt, inbound, echo, connection */
    char key[S_ID_MAX + 64];
    const char *message_id; /* the gateway's message id; borrowed */
    const char *status;     /* static */
    char phone[RCD_PHONE_MAX];
    const char *body; /* text; borrowed */
    char reason[512]; /* failed receipts */
    int64_t occurred; /* the gateway's Unix time, 0: none */
    json_t *payload;  /* what is stored; borrowed */
} s_event_t;

/*  Counts of one request. */
typedef struct {
    uint32_t received, applied, duplicates, unmatched, ignored;
} s_tally_t;

/*  Where one request's events go. */
typedef struct {
    rcd_api_req_t *req;
    rcd_api_reply_t *reply;
    const char *provider;
    int64_t tenant_id;
    int64_t instance_id;
    s_tally_t tally;
} s_sink_t;

/*  --- reading payloads --- */

/*  A string member, or NULL. */
static const char *
s_str (json_t *obj, const char *name)
{
    return json_string_value (json_object_get (obj, name));
}

/*  A usable gateway id: 1 to S_ID_MAX bytes, no control characters. */
static bool
s_id_ok (const char *id)
{
    return id && *id && strlen (id) <= S_ID_MAX && !rcd_api_has_control (id);
}

/*  The canonical E.164 phone of a WhatsApp address ("5511987654321",
    "551187654321@s.whatsapp.net", "5511987654321:12@s.whatsapp.net"), with
    the ninth digit put back. false for anything that is not a person's
    phone (a group, a broadcast list, a newsletter, an @lid, junk). */
static bool
s_phone_of (const char *jid, char *out, size_t out_size)
{
    if (!jid)
        return false;
    const char *at = strchr (jid, '@');
    if (at && strcmp (at, "@s.whatsapp.net") != 0 && strcmp (at, "@c.us") != 0)
        return false;
    size_t digits = strspn (jid, "0123456789");
    if (digits < 8 || digits > 15 ||
        (jid[digits] && jid[digits] != '@' && jid[digits] != ':'))
        return false;
    char plus[20];
    plus[0] = '+';
    memcpy (plus + 1, jid, digits);
    plus[digits + 1] = 0;
    return rcd_phone_normalize (plus, NULL, out, out_size, NULL) == 0;
}

/*  True for chats that are not one person: groups, status broadcasts,
    newsletters. */
static bool
s_not_a_person (const char *jid)
{
    return !jid || strstr (jid, "@g.us") || strstr (jid, "@broadcast") ||
           strstr (jid, "@newsletter");
}

/*  A Unix time in seconds given as a number, a string of digits or a
    protobuf Long ({"low", "high"}); 0 when absent or implausible. */
static int64_t
s_unix_time (json_t *value)
{
    int64_t t = 0;
    if (json_is_integer (value))
        t = json_integer_value (value);
    else if (json_is_real (value))
        t = (int64_t)json_real_value (value);
    else if (json_is_string (value)) {
        const char *s = json_string_value (value);
        if (*s && strspn (s, "0123456789") == strlen (s) && strlen (s) <= 12)
            t = strtoll (s, NULL, 10);
    }
    else if (json_is_object (value))
        t = json_integer_value (json_object_get (value, "low"));
    /* 2001-09-09 .. 2286: anything else is not a time in seconds */
    return t >= 1000000000 && t < 10000000000 ? t : 0;
}

/*  The text of a WhatsApp message object (Baileys' proto as Evolution
    relays it), or NULL when it carries none (media, reactions). */
static const char *
s_evolution_text (json_t *message)
{
    const char *text = s_str (message, "conversation");
    if (!text)
        text = s_str (json_object_get (message, "extendedTextMessage"), "text");
    if (!text)
        text = s_str (json_object_get (message, "buttonsResponseMessage"),
                      "selectedDisplayText");
    if (!text)
        text = s_str (json_object_get (message, "templateButtonReplyMessage"),
                      "selectedDisplayText");
    if (!text)
        text =
            s_str (json_object_get (message, "listResponseMessage"), "title");
    return text;
}

/*  Baileys' message status, by name or number, as our receipt status;
    NULL for the ones we do not track (PENDING, DELETED). */
static const char *
s_evolution_status (json_t *value)
{
    static const char *const by_number[] = {"failed",    NULL,   "sent",
                                            "delivered", "read", "read"};
    if (json_is_integer (value)) {
        json_int_t n = json_integer_value (value);
        return n >= 0 && n <= 5 ? by_number[n] : NULL;
    }
    const char *name = json_string_value (value);
    if (!name)
        return NULL;
    if (strcasecmp (name, "SERVER_ACK") == 0)
        return "sent";
    if (strcasecmp (name, "DELIVERY_ACK") == 0)
        return "delivered";
    if (strcasecmp (name, "READ") == 0 || strcasecmp (name, "PLAYED") == 0)
        return "read";
    if (strcasecmp (name, "ERROR") == 0)
        return "failed";
    return NULL;
}

/*  --- recording --- */

/*  Stores and applies one event. Returns 0, or -1 with the reply filled
    (the request then answers it). */
static int
s_record (s_sink_t *sink, s_event_t *ev)
{
    rcd_api_req_t *req = sink->req;
    char tenant[24], instance[24], occurred[24] = "";
    snprintf (tenant, sizeof tenant, "%" PRId64, sink->tenant_id);
    snprintf (instance, sizeof instance, "%" PRId64, sink->instance_id);
    if (ev->occurred)
        snprintf (occurred, sizeof occurred, "%" PRId64, ev->occurred);
    char *payload = json_dumps (ev->payload, JSON_COMPACT);
    if (!payload) {
        rcd_api_reply_fail (sink->reply, 500, "internal_error", NULL,
                            "out of memory");
        return -1;
    }
    const char *params[] = {tenant,         instance,
                            sink->provider, ev->kind,
                            ev->key,        ev->message_id,
                            ev->status,     ev->phone[0] ? ev->phone : NULL,
                            ev->body,       ev->reason[0] ? ev->reason : NULL,
                            occurred,       payload};
    rcd_db_res_t *res = NULL;
    int rc = rcd_db_run (req->db, "webhook_record", 12, params, &res);
    free (payload);
    if (rc != 0) {
        /* a data exception is the payload's (a \u0000 jsonb refuses):
           the gateway must not send it again */
        if (strncmp (rcd_db_sqlstate (req->db), "22", 2) == 0)
            rcd_api_reply_fail (sink->reply, 400, "invalid_json", NULL,
                                "the event holds a value that cannot be "
                                "stored");
        else
            rcd_api_reply_db_error (sink->reply, req->db, "webhook_record");
        return -1;
    }
    const char *outcome = rcd_db_res_value (res, 0, 0);
    int64_t blocked = rcd_db_res_int64 (res, 0, 2);
    sink->tally.received++;
    rcd_api_reply_t *reply = sink->reply;
    if (strcmp (outcome, "duplicate") == 0) {
        sink->tally.duplicates++;
        reply->webhook_duplicates++;
    }
    else if (strcmp (outcome, "unmatched") == 0) {
        sink->tally.unmatched++;
        reply->webhook_unmatched++;
    }
    else {
        sink->tally.applied++;
        reply->webhook_applied++;
        if (strcmp (outcome, "settled") == 0)
            reply->settled++;
        else if (strcmp (outcome, "opted_out") == 0) {
            reply->opted_out++;
            reply->blocked += (uint32_t)blocked;
            char masked[40];
            rcd_log_info ("contact opted out by reply", "{s:I, s:s, s:I}",
                          "tenant_id", (json_int_t)sink->tenant_id, "phone",
                          rcd_log_mask_phone (ev->phone, masked, sizeof masked),
                          "blocked", (json_int_t)blocked);
        }
    }
    rcd_db_res_destroy (&res);
    return 0;
}

/*  Counts an event that is skipped. */
static int
s_ignore (s_sink_t *sink)
{
    sink->tally.received++;
    sink->tally.ignored++;
    sink->reply->webhook_ignored++;
    return 0;
}

/*  Answers the request's counts. */
static void
s_reply_tally (s_sink_t *sink)
{
    s_tally_t *t = &sink->tally;
    rcd_api_reply_json (
        sink->reply, 200,
        json_pack ("{s:i, s:i, s:i, s:i, s:i}", "received", (int)t->received,
                   "applied", (int)t->applied, "duplicates", (int)t->duplicates,
                   "unmatched", (int)t->unmatched, "ignored", (int)t->ignored));
}

/*  --- Evolution --- */

/*  One messages.update item: {keyId, remoteJid, fromMe, status} (v2), or
    {key: {id, remoteJid, fromMe}, update: {status}} (the older form). */
static int
s_evolution_receipt (s_sink_t *sink, json_t *item)
{
    json_t *key = json_object_get (item, "key");
    const char *id = s_str (item, "keyId");
    if (!id)
        id = s_str (key, "id");
    const char *jid = s_str (item, "remoteJid");
    if (!jid)
        jid = s_str (key, "remoteJid");
    json_t *from_me = json_object_get (item, "fromMe");
    if (!from_me)
        from_me = json_object_get (key, "fromMe");
    json_t *status = json_object_get (item, "status");
    if (!status)
        status = json_object_get (json_object_get (item, "update"), "status");
    s_event_t ev = {.kind = "receipt", .payload = item};
    ev.status = s_evolution_status (status);
    /* receipts of the contact's own messages (fromMe false) are ours
       reading theirs: nothing to track */
    if (!s_id_ok (id) || !ev.status || json_is_false (from_me))
        return s_ignore (sink);
    ev.message_id = id;
    snprintf (ev.key, sizeof ev.key, "receipt:%s:%s", id, ev.status);
    if (!s_phone_of (jid, ev.phone, sizeof ev.phone))
        ev.phone[0] = 0;
    if (strcmp (ev.status, "failed") == 0)
        snprintf (ev.reason, sizeof ev.reason,
                  "the gateway reported the message as ERROR");
    return s_record (sink, &ev);
}

/*  One messages.upsert or send.message item: {key: {remoteJid, fromMe,
    id, remoteJidAlt?}, message, messageTimestamp}. echo: it is our own
    send whatever fromMe says (send.message). */
static int
s_evolution_message (s_sink_t *sink, json_t *item, bool echo)
{
    json_t *key = json_object_get (item, "key");
    const char *id = s_str (key, "id");
    const char *jid = s_str (key, "remoteJid");
    if (!s_id_ok (id) || s_not_a_person (jid))
        return s_ignore (sink);
    s_event_t ev = {.payload = item};
    ev.message_id = id;
    ev.body = s_evolution_text (json_object_get (item, "message"));
    ev.occurred = s_unix_time (json_object_get (item, "messageTimestamp"));
    if (!ev.body)
        return s_ignore (sink);
    /* an @lid sender may carry its phone in remoteJidAlt */
    if (!s_phone_of (jid, ev.phone, sizeof ev.phone) &&
        !s_phone_of (s_str (key, "remoteJidAlt"), ev.phone, sizeof ev.phone))
        ev.phone[0] = 0;
    if (echo || json_is_true (json_object_get (key, "fromMe"))) {
        if (!ev.phone[0])
            return s_ignore (sink);
        ev.kind = "echo";
        snprintf (ev.key, sizeof ev.key, "echo:%s", id);
    }
    else {
        ev.kind = "inbound";
        snprintf (ev.key, sizeof ev.key, "inbound:%s", id);
    }
    return s_record (sink, &ev);
}

/*  connection.update: {instance, state, statusReason}. Redeliveries of
    one change are the same bytes, so the key is their hash. */
static int
s_evolution_connection (s_sink_t *sink, json_t *envelope, json_t *data)
{
    static const char *const states[] = {"open", "connecting", "close",
                                         "refused"};
    const char *state = s_str (data, "state");
    s_event_t ev = {.kind = "connection", .payload = data};
    for (size_t i = 0; state && i < sizeof states / sizeof states[0]; i++)
        if (strcmp (state, states[i]) == 0)
            ev.status = states[i];
    if (!ev.status)
        return s_ignore (sink);
    /* logged out for good: a person must pair the number again */
    json_int_t why =
        json_integer_value (json_object_get (data, "statusReason"));
    if (strcmp (ev.status, "close") == 0 &&
        (why == 401 || why == 402 || why == 403 || why == 406))
        ev.status = "logged_out";
    char *text = json_dumps (data, JSON_COMPACT | JSON_SORT_KEYS);
    const char *when = s_str (envelope, "date_time");
    size_t size = (text ? strlen (text) : 0) + (when ? strlen (when) : 0) + 2;
    char *both = malloc (size);
    char hash[65] = "";
    if (both) {
        snprintf (both, size, "%s|%s", text ? text : "", when ? when : "");
        if (rcd_crypto_sha256_hex (both, hash) != 0)
            hash[0] = 0;
    }
    free (both);
    free (text);
    if (!hash[0]) {
        rcd_api_reply_fail (sink->reply, 500, "internal_error", NULL,
                            "out of memory");
        return -1;
    }
    snprintf (ev.key, sizeof ev.key, "connection:%.32s", hash);
    return s_record (sink, &ev);
}

/*  The event name folded: "MESSAGES_UPDATE" -> "messages.update". */
static void
s_event_name (const char *name, char *out, size_t out_size)
{
    size_t i = 0;
    for (; name && name[i] && i + 1 < out_size; i++)
        out[i] = name[i] == '_' ? '.' : (char)tolower ((unsigned char)name[i]);
    out[i] = 0;
}

/*  Runs fn on data, or on each element when data is an array (older
    Evolution versions batch). */
static int
s_each (s_sink_t *sink, json_t *data, bool echo,
        int (*fn) (s_sink_t *, json_t *, bool))
{
    if (!json_is_array (data))
        return json_is_object (data) ? fn (sink, data, echo) : s_ignore (sink);
    size_t i;
    json_t *item;
    json_array_foreach (data, i, item)
    {
        int rc =
            json_is_object (item) ? fn (sink, item, echo) : s_ignore (sink);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
s_receipt_fn (s_sink_t *sink, json_t *item, bool echo)
{
    (void)echo;
    return s_evolution_receipt (sink, item);
}

/*  Checks the token of an Evolution request against the tenant's, and
    the envelope's apikey against the instance's. Returns 0 with the
    instance id in *instance_id (0 when the tenant has no such
    instance), or -1 with the reply filled. */
static int
s_evolution_auth (rcd_api_req_t *req, rcd_api_reply_t *reply, json_t *body,
                  int64_t *instance_id)
{
    const char *token = req->webhook_token;
    if (!token)
        token = s_str (req->query, "token");
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%" PRId64, req->id);
    const char *params[] = {tenant, body ? s_str (body, "instance") : NULL};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "webhook_evolution_route", 2, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "webhook_evolution_route");
        return -1;
    }
    int rc = -1;
    /* an unknown tenant (a row of NULLs) answers as a wrong token does */
    const char *expected =
        rcd_db_res_rows (res) == 1 ? rcd_db_res_value (res, 0, 0) : NULL;
    if (!token || !expected || !rcd_crypto_equal (token, expected)) {
        rcd_api_reply_fail (reply, 401, "unauthorized", NULL,
                            "missing or wrong webhook token (header "
                            "X-Webhook-Token or ?token=)");
        goto done;
    }
    *instance_id =
        rcd_db_res_isnull (res, 0, 1) ? 0 : rcd_db_res_int64 (res, 0, 1);
    const char *apikey = body ? s_str (body, "apikey") : NULL;
    const char *ours = rcd_db_res_value (res, 0, 2);
    if (apikey && *apikey && ours && *ours &&
        !rcd_crypto_equal (apikey, ours)) {
        rcd_api_reply_fail (reply, 401, "unauthorized", "apikey",
                            "the apikey is not this instance's");
        goto done;
    }
    rc = 0;
done:
    rcd_db_res_destroy (&res);
    return rc;
}

void
rcd_api_webhook_evolution (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    int64_t instance_id = 0;
    int parsed = rcd_api_parse_body (req, &body, &err);
    /* the token is checked before a parse error is told */
    if (s_evolution_auth (req, reply, body, &instance_id) != 0)
        goto done;
    if (parsed != 0) {
        rcd_api_reply_error (reply, &err);
        goto done;
    }
    const char *name = s_str (body, "instance");
    if (!name || !*name) {
        rcd_api_reply_fail (reply, 400, "missing_field", "instance",
                            "the envelope names no instance");
        goto done;
    }
    if (instance_id == 0) {
        rcd_api_reply_fail (reply, 403, "forbidden", "instance",
                            "this tenant has no Evolution instance by that "
                            "name");
        goto done;
    }
    if (req->as_tenant (req->as_tenant_ctx, req->id, reply) != 0)
        goto done;
    req->tenant_id = req->id;
    /* the apikey is a secret: never stored with the event */
    json_object_del (body, "apikey");
    s_sink_t sink = {.req = req,
                     .reply = reply,
                     .provider = "evolution",
                     .tenant_id = req->id,
                     .instance_id = instance_id};
    char event[64];
    s_event_name (s_str (body, "event"), event, sizeof event);
    json_t *data = json_object_get (body, "data");
    int rc = 0;
    if (strcmp (event, "messages.update") == 0)
        rc = s_each (&sink, data, false, s_receipt_fn);
    else if (strcmp (event, "messages.upsert") == 0) {
        /* older versions wrap the batch as {messages: [...]} */
        json_t *batch = json_object_get (data, "messages");
        rc = s_each (&sink, batch ? batch : data, false, s_evolution_message);
    }
    else if (strcmp (event, "send.message") == 0)
        rc = s_each (&sink, data, true, s_evolution_message);
    else if (strcmp (event, "connection.update") == 0)
        rc = json_is_object (data) ? s_evolution_connection (&sink, body, data)
                                   : s_ignore (&sink);
    else
        rc = s_ignore (&sink);
    if (rc == 0)
        s_reply_tally (&sink);
done:
    json_decref (body);
}

/*  --- Meta --- */

void
rcd_api_webhook_meta_verify (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    const char *mode = s_str (req->query, "hub.mode");
    const char *token = s_str (req->query, "hub.verify_token");
    const char *challenge = s_str (req->query, "hub.challenge");
    if (!mode || strcmp (mode, "subscribe") != 0 || !token || !*token ||
        !challenge || strlen (challenge) > 256 ||
        rcd_api_has_control (challenge)) {
        rcd_api_reply_fail (reply, 403, "forbidden", NULL,
                            "not a subscription handshake");
        return;
    }
    const char *params[] = {token};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "webhook_meta_verify", 1, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "webhook_meta_verify");
        return;
    }
    bool known = strcmp (rcd_db_res_value (res, 0, 0), "t") == 0;
    rcd_db_res_destroy (&res);
    if (!known) {
        rcd_api_reply_fail (reply, 403, "forbidden", NULL,
                            "no instance has this verify token");
        return;
    }
    reply->status = 200;
    reply->body = strdup (challenge);
    reply->content_type = "text/plain";
}

/*  An instance a Meta request names. */
typedef struct {
    const char *phone_number_id; /* borrowed from the body */
    int64_t tenant_id, instance_id;
} s_meta_instance_t;

/*  One status: {id, status, timestamp, recipient_id, errors?}. */
static int
s_meta_status (s_sink_t *sink, json_t *item)
{
    static const char *const statuses[] = {"sent", "delivered", "read",
                                           "failed"};
    const char *id = s_str (item, "id");
    const char *status = s_str (item, "status");
    s_event_t ev = {.kind = "receipt", .payload = item};
    for (size_t i = 0; status && i < sizeof statuses / sizeof statuses[0]; i++)
        if (strcmp (status, statuses[i]) == 0)
            ev.status = statuses[i];
    if (!s_id_ok (id) || !ev.status)
        return s_ignore (sink);
    ev.message_id = id;
    snprintf (ev.key, sizeof ev.key, "receipt:%s:%s", id, ev.status);
    ev.occurred = s_unix_time (json_object_get (item, "timestamp"));
    if (!s_phone_of (s_str (item, "recipient_id"), ev.phone, sizeof ev.phone))
        ev.phone[0] = 0;
    if (strcmp (ev.status, "failed") == 0) {
        json_t *error = json_array_get (json_object_get (item, "errors"), 0);
        const char *title = s_str (error, "title");
        const char *details =
            s_str (json_object_get (error, "error_data"), "details");
        snprintf (ev.reason, sizeof ev.reason,
                  "meta %" JSON_INTEGER_FORMAT ": %s%s%s",
                  json_integer_value (json_object_get (error, "code")),
                  title ? title : "failed", details ? ": " : "",
                  details ? details : "");
    }
    return s_record (sink, &ev);
}

/*  One inbound message: {from, id, timestamp, type, text: {body} |
    button: {text} | interactive: {button_reply | list_reply: {title}}}. */
static int
s_meta_message (s_sink_t *sink, json_t *item)
{
    const char *id = s_str (item, "id");
    s_event_t ev = {.kind = "inbound", .payload = item};
    ev.body = s_str (json_object_get (item, "text"), "body");
    if (!ev.body)
        ev.body = s_str (json_object_get (item, "button"), "text");
    json_t *interactive = json_object_get (item, "interactive");
    if (!ev.body)
        ev.body =
            s_str (json_object_get (interactive, "button_reply"), "title");
    if (!ev.body)
        ev.body = s_str (json_object_get (interactive, "list_reply"), "title");
    if (!s_id_ok (id) || !ev.body)
        return s_ignore (sink);
    ev.message_id = id;
    snprintf (ev.key, sizeof ev.key, "inbound:%s", id);
    ev.occurred = s_unix_time (json_object_get (item, "timestamp"));
    if (!s_phone_of (s_str (item, "from"), ev.phone, sizeof ev.phone))
        ev.phone[0] = 0;
    return s_record (sink, &ev);
}

/*  The value of every "messages" change of the body, in order, with its
    phone_number_id; NULL-ended array of borrowed values (caller frees the
    array), or NULL when out of memory. */
static json_t **
s_meta_values (json_t *body, size_t *count)
{
    size_t cap = 8, n = 0;
    json_t **values = malloc ((cap + 1) * sizeof *values);
    if (!values)
        return NULL;
    size_t i, j;
    json_t *entry, *change;
    json_array_foreach (json_object_get (body, "entry"), i, entry)
    {
        json_array_foreach (json_object_get (entry, "changes"), j, change)
        {
            const char *field = s_str (change, "field");
            json_t *value = json_object_get (change, "value");
            if (!field || strcmp (field, "messages") != 0 ||
                !json_is_object (value))
                continue;
            if (n == cap) {
                cap *= 2;
                json_t **grown = realloc (values, (cap + 1) * sizeof *values);
                if (!grown) {
                    free (values);
                    return NULL;
                }
                values = grown;
            }
            values[n++] = value;
        }
    }
    values[n] = NULL;
    *count = n;
    return values;
}

/*  The sha256=<hex> of the request in lowercase into out; false when the
    header is missing or malformed. */
static bool
s_signature (const char *header, char out[65])
{
    if (!header || strncmp (header, "sha256=", 7) != 0 ||
        strlen (header + 7) != 64)
        return false;
    for (int i = 0; i < 64; i++) {
        char c = (char)tolower ((unsigned char)header[7 + i]);
        if (!isxdigit ((unsigned char)c))
            return false;
        out[i] = c;
    }
    out[64] = 0;
    return true;
}

/*  Finds the instance of phone_number_id and checks the body's signature
    with its app secret. Returns 0 with *inst filled, or -1 with the
    reply filled. */
static int
s_meta_instance (rcd_api_req_t *req, rcd_api_reply_t *reply,
                 const char *phone_number_id, const char *signature,
                 s_meta_instance_t *inst)
{
    const char *params[] = {phone_number_id};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "webhook_meta_route", 1, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "webhook_meta_route");
        return -1;
    }
    int rc = -1;
    if (rcd_db_res_rows (res) != 1) {
        rcd_api_reply_fail (reply, 403, "forbidden",
                            "entry.changes.value.metadata.phone_number_id",
                            "no Meta instance has this phone_number_id");
        goto done;
    }
    const char *secret = rcd_db_res_value (res, 0, 2);
    char mac[65];
    if (!secret || !*secret ||
        rcd_crypto_hmac_sha256_hex (secret, req->body, req->body_size, mac) !=
            0 ||
        !rcd_crypto_equal (mac, signature)) {
        rcd_api_reply_fail (reply, 401, "unauthorized", NULL,
                            "X-Hub-Signature-256 does not match the body");
        goto done;
    }
    inst->phone_number_id = phone_number_id;
    inst->tenant_id = rcd_db_res_int64 (res, 0, 0);
    inst->instance_id = rcd_db_res_int64 (res, 0, 1);
    rc = 0;
done:
    rcd_db_res_destroy (&res);
    return rc;
}

void
rcd_api_webhook_meta (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char signature[65];
    if (!s_signature (req->signature, signature)) {
        rcd_api_reply_fail (reply, 401, "unauthorized", NULL,
                            "missing or malformed X-Hub-Signature-256");
        return;
    }
    rcd_api_error_t err;
    json_t *body = NULL;
    json_t **values = NULL;
    s_meta_instance_t **of_value = NULL; /* the instance of each value */
    if (rcd_api_parse_body (req, &body, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        return;
    }
    size_t count = 0;
    values = s_meta_values (body, &count);
    of_value = values ? calloc (count + 1, sizeof *of_value) : NULL;
    if (!of_value) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "out of memory");
        goto done;
    }
    /* every instance named must vouch for the body before anything of
       it is stored */
    s_meta_instance_t known[S_META_INSTANCES_MAX];
    size_t nknown = 0;
    for (size_t i = 0; i < count; i++) {
        const char *pnid =
            s_str (json_object_get (values[i], "metadata"), "phone_number_id");
        if (!pnid || !*pnid) {
            rcd_api_reply_fail (reply, 400, "missing_field",
                                "entry.changes.value.metadata.phone_number_id",
                                "a change names no phone_number_id");
            goto done;
        }
        of_value[i] = NULL;
        for (size_t k = 0; k < nknown && !of_value[i]; k++)
            if (strcmp (known[k].phone_number_id, pnid) == 0)
                of_value[i] = &known[k];
        if (of_value[i])
            continue;
        if (nknown == S_META_INSTANCES_MAX) {
            rcd_api_reply_fail (reply, 400, "invalid_field", "entry",
                                "more than %d phone numbers in one request",
                                S_META_INSTANCES_MAX);
            goto done;
        }
        if (s_meta_instance (req, reply, pnid, signature, &known[nknown]) != 0)
            goto done;
        of_value[i] = &known[nknown++];
    }
    s_sink_t sink = {.req = req, .reply = reply, .provider = "meta"};
    for (size_t i = 0; i < count; i++) {
        s_meta_instance_t *inst = of_value[i];
        if (inst->tenant_id != sink.tenant_id) {
            if (req->as_tenant (req->as_tenant_ctx, inst->tenant_id, reply) !=
                0)
                goto done;
            req->tenant_id = inst->tenant_id;
        }
        sink.tenant_id = inst->tenant_id;
        sink.instance_id = inst->instance_id;
        size_t j;
        json_t *item;
        json_array_foreach (json_object_get (values[i], "statuses"), j, item)
        {
            if (s_meta_status (&sink, item) != 0)
                goto done;
        }
        json_array_foreach (json_object_get (values[i], "messages"), j, item)
        {
            if (s_meta_message (&sink, item) != 0)
                goto done;
        }
    }
    s_reply_tally (&sink);
done:
    free (of_value);
    free (values);
    json_decref (body);
}

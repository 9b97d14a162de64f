/*  rcd_api_messages.c - accepting, showing, listing and cancelling
    messages.

    One message and a batch share one statement (msg_insert): the items
    travel as parallel arrays, are unnested, get their ids from the
    sequence, and are inserted with their 'accepted' history rows in one
    statement, which is one transaction. Idempotency is the unique index
    messages_idempotency's job: ON CONFLICT DO NOTHING, then the row that
    won is looked up in the same statement (or, when a concurrent request
    committed it after our snapshot, in a second one).
*/
#include "rcd_api.h"
#include "rcd_clock.h"
#include "rcd_log.h"
#include "rcd_phone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Items per insert statement in a batch. */
#define S_CHUNK 100
/*  Largest text, in bytes. */
#define S_TEXT_MAX 65536
/*  SQL reads better laid out as SQL. */
/* clang-format off */

#define S_PRIORITY_WORD(col)                                                 \
    "CASE " col " WHEN 0 THEN 'high' WHEN 2 THEN 'low' ELSE 'normal' END"

/*  A message as the listing shows it (m: messages, i: instances). */
#define S_LIST_JSON                                                          \
    "json_build_object("                                                     \
    " 'id', m.id, 'status', m.status, 'to', m.to_phone,"                     \
    " 'priority', " S_PRIORITY_WORD ("m.priority") ","                       \
    " 'send_at', " RCD_API_TS ("m.send_at") ","                              \
    " 'valid_until', " RCD_API_TS ("m.valid_until") ","                      \
    " 'instance', i.name, 'attempts', m.attempts,"                           \
    " 'provider_message_id', m.provider_message_id,"                         \
    " 'sent_at', " RCD_API_TS ("m.sent_at") ","                              \
    " 'delivered_at', " RCD_API_TS ("m.delivered_at") ","                    \
    " 'read_at', " RCD_API_TS ("m.read_at") ","                              \
    " 'last_error', m.last_error,"                                           \
    " 'created_at', " RCD_API_TS ("m.created_at") ")"

int
rcd_api_messages_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* $1 tenant, then one array per column, in item order ($10: the id
       drawn for a rendered text, else NULL), $11 the request's trace id
       (every message of a batch shares it). A message to a contact who
       opted out is stored 'blocked', so it is answered and visible but
       never waits in the due index. An item naming
       an unknown instance gets no id and is not inserted; a conflicting
       idempotency key finds the row that won, inserted by an earlier
       item of this statement (b) or before it (e). */
    rc |= rcd_db_prepare (db, "msg_insert",
        "WITH input AS ("
        "  SELECT u.ord, u.to_phone, u.body, u.priority,"
        "         COALESCE(u.send_at::timestamptz, now()) AS send_at,"
        "         u.valid_until::timestamptz AS valid_until,"
        "         i.id AS instance_id, u.delay_ms, u.idem,"
        "         COALESCE(c.opted_out, false) AS opted_out,"
        "         CASE WHEN u.instance IS NULL OR i.id IS NOT NULL"
        "              THEN COALESCE(u.given_id, nextval('messages_id_seq'))"
        "         END AS id"
        "    FROM unnest($2::text[], $3::text[], $4::int[], $5::text[],"
        "                $6::text[], $7::text[], $8::int[], $9::text[],"
        "                $10::bigint[])"
        "         WITH ORDINALITY AS u(to_phone, body, priority, send_at,"
        "                              valid_until, instance, delay_ms,"
        "                              idem, given_id, ord)"
        "    LEFT JOIN instances i"
        "           ON i.tenant_id = $1::bigint AND i.name = u.instance"
        /* a plain join: the per-row subquery and LATERAL forms cost
           2-4 ms of p50 latency on single messages (bench_pipeline) */
        "    LEFT JOIN contacts c"
        "           ON c.tenant_id = $1::bigint AND c.phone = u.to_phone"
        "), ins AS ("
        "  INSERT INTO messages (id, tenant_id, to_phone, body, priority,"
        "                        send_at, valid_until, instance_id, pinned,"
        "                        delay_ms, idempotency_key, status,"
        "                        last_error, trace_id)"
        "  SELECT id, $1::bigint, to_phone, body, priority, send_at,"
        "         valid_until, instance_id, instance_id IS NOT NULL,"
        "         delay_ms, idem,"
        "         CASE WHEN opted_out THEN 'blocked' ELSE 'pending' END,"
        "         CASE WHEN opted_out THEN 'contact opted out' END,"
        "         $11::text"
        "    FROM input WHERE id IS NOT NULL ORDER BY ord"
        "  ON CONFLICT (tenant_id, idempotency_key)"
        "     WHERE idempotency_key IS NOT NULL DO NOTHING"
        "  RETURNING id, idempotency_key, status, to_phone, send_at"
        "), hist AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, status, CASE status WHEN 'pending'"
        "         THEN 'accepted' ELSE 'contact opted out' END FROM ins"
        ")"
        "SELECT u.ord,"
        "       CASE WHEN a.id IS NOT NULL THEN 'created'"
        "            WHEN COALESCE(b.id, e.id) IS NOT NULL THEN 'existing'"
        "            WHEN u.id IS NULL THEN 'no_instance'"
        "            ELSE 'retry' END,"
        "       COALESCE(a.id, b.id, e.id),"
        "       COALESCE(a.status, b.status, e.status),"
        "       COALESCE(a.to_phone, b.to_phone, e.to_phone),"
        "       " RCD_API_TS ("COALESCE(a.send_at, b.send_at, e.send_at)")
        "  FROM input u"
        "  LEFT JOIN ins a ON a.id = u.id"
        "  LEFT JOIN ins b ON a.id IS NULL AND u.idem IS NOT NULL"
        "                 AND b.idempotency_key = u.idem"
        "  LEFT JOIN messages e ON a.id IS NULL AND b.id IS NULL"
        "                      AND u.idem IS NOT NULL"
        "                      AND e.tenant_id = $1::bigint"
        "                      AND e.idempotency_key = u.idem"
        " ORDER BY u.ord");
    rc |= rcd_db_prepare (db, "msg_by_key",
        "SELECT id, status, to_phone, " RCD_API_TS ("send_at")
        "  FROM messages"
        " WHERE tenant_id = $1::bigint AND idempotency_key = $2::text");
    rc |= rcd_db_prepare (db, "msg_get",
        "SELECT json_build_object("
        "         'id', m.id, 'status', m.status, 'to', m.to_phone,"
        "         'text', m.body,"
        "         'priority', " S_PRIORITY_WORD ("m.priority") ","
        "         'send_at', " RCD_API_TS ("m.send_at") ","
        "         'valid_until', " RCD_API_TS ("m.valid_until") ","
        "         'instance', i.name, 'attempts', m.attempts,"
        "         'provider_message_id', m.provider_message_id,"
        "         'sent_at', " RCD_API_TS ("m.sent_at") ","
        "         'delivered_at', " RCD_API_TS ("m.delivered_at") ","
        "         'read_at', " RCD_API_TS ("m.read_at") ","
        "         'last_error', m.last_error,"
        "         'idempotency_key', m.idempotency_key,"
        "         'delay_ms', m.delay_ms, 'trace_id', m.trace_id,"
        "         'created_at', " RCD_API_TS ("m.created_at") ","
        "         'updated_at', " RCD_API_TS ("m.updated_at") ","
        "         'history', COALESCE(("
        "            SELECT json_agg(json_build_object("
        "                     'at', " RCD_API_TS ("h.at") ","
        "                     'status', h.status, 'detail', h.detail)"
        "                   ORDER BY h.at, h.id)"
        "              FROM message_history h"
        "             WHERE h.message_id = m.id"
        "               AND h.tenant_id = m.tenant_id), '[]'::json))::text"
        "  FROM messages m LEFT JOIN instances i ON i.id = m.instance_id"
        " WHERE m.tenant_id = $1::bigint AND m.id = $2::bigint");
    /* Keyset pagination on id: one row beyond the page says whether a
       next page exists. */
    rc |= rcd_db_prepare (db, "msg_list",
        "WITH page AS ("
        "  SELECT m.*, row_number() OVER (ORDER BY m.id) AS rn"
        "    FROM (SELECT * FROM messages"
        "           WHERE tenant_id = $1::bigint"
        "             AND ($2::text IS NULL OR status = $2::text)"
        "             AND ($3::timestamptz IS NULL"
        "                  OR created_at >= $3::timestamptz)"
        "             AND id > $4::bigint"
        "           ORDER BY id LIMIT $5::int + 1) m"
        ")"
        "SELECT json_build_object("
        "         'items', COALESCE(json_agg(" S_LIST_JSON " ORDER BY m.id)"
        "                    FILTER (WHERE m.rn <= $5::int), '[]'::json),"
        "         'next_cursor', CASE WHEN count(*) > $5::int THEN"
        "           (max(m.id) FILTER (WHERE m.rn <= $5::int))::text END"
        "       )::text"
        "  FROM page m LEFT JOIN instances i ON i.id = m.instance_id");
    /* The history row and the status change are one statement; the
       status seen by the second column is the one before it. A message
       a paused campaign holds may be cancelled too. */
    rc |= rcd_db_prepare (db, "msg_cancel",
        "WITH upd AS ("
        "  UPDATE messages SET status = 'cancelled', updated_at = now()"
        "   WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "     AND status IN ('pending', 'paused')"
        "  RETURNING id, tenant_id"
        "), hist AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT tenant_id, id, 'cancelled', 'cancelled by API' FROM upd"
        ")"
        "SELECT (SELECT count(*) FROM upd),"
        "       (SELECT status FROM messages"
        "         WHERE tenant_id = $1::bigint AND id = $2::bigint)");
    return rc ? -1 : 0;
}

/* clang-format on */

/*  --- validation --- */

/*  One validated message, ready for the arrays. Strings are borrowed
    from the parsed body. */
typedef struct {
    char to[RCD_PHONE_MAX]; /* E.164 */
    const char *text;       /* the text, or rendered */
    const char *template_key;
    json_t *vars;   /* with a template; borrowed */
    char *rendered; /* owned; freed by s_msgs_free */
    int64_t id;     /* drawn for rendering; 0: from the sequence */
    int priority;   /* 0 high, 1 normal, 2 low */
    const char *send_at;
    const char *valid_until;
    const char *instance;
    const char *idempotency_key;
    int delay_ms;
} s_msg_t;

static const rcd_api_field_t s_message_fields[] = {
    {"to", RCD_API_STRING, true},
    {"text", RCD_API_STRING, false},
    {"template", RCD_API_STRING, false},
    {"vars", RCD_API_OBJECT, false},
    {"send_at", RCD_API_STRING, false},
    {"valid_until", RCD_API_STRING, false},
    {"priority", RCD_API_STRING, false},
    {"instance", RCD_API_STRING, false},
    {"idempotency_key", RCD_API_STRING, false},
    {"delay_ms", RCD_API_INTEGER, false},
    {NULL, RCD_API_ANY, false},
};

/*  Validates one message object. prefix locates it in errors ("" or
    "items[3]."). Returns 0 or -2 with err filled. */
static int
s_parse_message (json_t *item, const char *prefix, const char *default_country,
                 s_msg_t *m, rcd_api_error_t *err)
{
    char path[128];
#define S_PATH(name) (snprintf (path, sizeof path, "%s%s", prefix, name), path)
    memset (m, 0, sizeof *m);
    m->priority = 1;
    if (!json_is_object (item)) {
        /* "items[4]." names the item itself as "items[4]" */
        size_t n = strlen (prefix);
        snprintf (path, sizeof path, "%.*s", (int)(n ? n - 1 : 0), prefix);
        return rcd_api_fail (err, 400, "invalid_field", path,
                             "a message must be an object");
    }
    if (rcd_api_check_fields (item, s_message_fields, prefix, err) != 0)
        return -2;

    const char *why = NULL;
    if (rcd_phone_normalize (rcd_api_string (item, "to"), default_country,
                             m->to, sizeof m->to, &why) != 0)
        return rcd_api_fail (err, 400, "invalid_phone", S_PATH ("to"),
                             "not a usable phone number: %s",
                             why ? why : "invalid");

    m->text = rcd_api_string (item, "text");
    m->template_key = rcd_api_string (item, "template");
    m->vars = json_object_get (item, "vars");
    if (json_is_null (m->vars))
        m->vars = NULL;
    if (m->text && m->template_key)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("template"),
                             "give either text or template, not both");
    if (!m->text && !m->template_key)
        return rcd_api_fail (err, 400, "missing_field", S_PATH ("text"),
                             "is required (or a template)");
    if (m->vars && !m->template_key)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("vars"),
                             "vars fill a template's placeholders; give a "
                             "template");
    if (m->vars && rcd_api_check_vars (m->vars, prefix, err) != 0)
        return -2;
    if (m->template_key &&
        (!*m->template_key || strlen (m->template_key) > 100))
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("template"),
                             "must be a template key of 1 to 100 bytes");
    size_t len = m->text ? strlen (m->text) : 1;
    if (len < 1 || len > S_TEXT_MAX)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("text"),
                             "must be 1 to %d bytes", S_TEXT_MAX);

    int64_t send_ms = rcd_clock_now_ms (), until_ms = 0;
    m->send_at = rcd_api_string (item, "send_at");
    if (m->send_at && rcd_api_parse_time (m->send_at, &send_ms) != 0)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("send_at"),
                             "must be an RFC 3339 timestamp with offset, "
                             "e.g. 2026-11-22T09:00:00-03:00");
    m->valid_until = rcd_api_string (item, "valid_until");
    if (m->valid_until) {
        if (rcd_api_parse_time (m->valid_until, &until_ms) != 0)
            return rcd_api_fail (err, 400, "invalid_field",
                                 S_PATH ("valid_until"),
                                 "must be an RFC 3339 timestamp with offset, "
                                 "e.g. 2026-11-22T18:00:00-03:00");
        if (until_ms <= send_ms)
            return rcd_api_fail (err, 400, "invalid_field",
                                 S_PATH ("valid_until"),
                                 "must be after send_at (or now)");
    }

    const char *priority = rcd_api_string (item, "priority");
    if (priority) {
        if (strcmp (priority, "high") == 0)
            m->priority = 0;
        else if (strcmp (priority, "normal") == 0)
            m->priority = 1;
        else if (strcmp (priority, "low") == 0)
            m->priority = 2;
        else
            return rcd_api_fail (err, 400, "invalid_field", S_PATH ("priority"),
                                 "must be \"high\", \"normal\" or \"low\"");
    }

    m->instance = rcd_api_string (item, "instance");
    if (m->instance &&
        (!*m->instance || rcd_api_utf8_length (m->instance) > 100))
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("instance"),
                             "must be an instance name of 1 to 100 "
                             "characters");
    m->idempotency_key = rcd_api_string (item, "idempotency_key");
    if (m->idempotency_key &&
        (!*m->idempotency_key || strlen (m->idempotency_key) > 200))
        return rcd_api_fail (err, 400, "invalid_field",
                             S_PATH ("idempotency_key"),
                             "must be 1 to 200 bytes");
    json_t *delay = json_object_get (item, "delay_ms");
    if (delay && !json_is_null (delay)) {
        json_int_t v = json_integer_value (delay);
        if (v < 0 || v > 60000)
            return rcd_api_fail (err, 400, "invalid_field", S_PATH ("delay_ms"),
                                 "must be 0 to 60000");
        m->delay_ms = (int)v;
    }
    return 0;
#undef S_PATH
}

/*  --- storing --- */

/*  What msg_insert said about one item. */
typedef enum {
    S_CREATED,     /* stored now */
    S_EXISTING,    /* idempotency key seen before: that message */
    S_NO_INSTANCE, /* the pinned instance does not exist */
    S_RETRY,       /* a concurrent request with the key won: look it up */
    S_FAILED       /* the statement failed */
} s_outcome_t;

typedef struct {
    s_outcome_t outcome;
    json_t *answer; /* {id, status, to, send_at}; owned */
} s_result_t;

/*  Builds {id, status, to, send_at} from columns col.. of a result. */
static json_t *
s_answer (const rcd_db_res_t *res, int row, int col)
{
    return json_pack ("{s:I, s:s?, s:s?, s:s?}", "id",
                      (json_int_t)rcd_db_res_int64 (res, row, col), "status",
                      rcd_db_res_value (res, row, col + 1), "to",
                      rcd_db_res_value (res, row, col + 2), "send_at",
                      rcd_db_res_value (res, row, col + 3));
}

/*  Appends one array element built from an int. */
static int
s_append_int (char **buf, size_t *len, size_t *cap, int value)
{
    char text[16];
    snprintf (text, sizeof text, "%d", value);
    return rcd_db_text_array_append (buf, len, cap, text);
}

/*  Inserts msgs[0..n) with one statement; fills results[0..n). Returns 0,
    or -1 when the statement failed (results then say S_FAILED). */
static int
s_insert (rcd_db_t *db, int64_t tenant_id, const char *trace_id,
          const s_msg_t *msgs, size_t n, s_result_t *results)
{
    enum { TO, BODY, PRIO, SEND, UNTIL, INST, DELAY, IDEM, GIVEN, NCOLS };
    char *arr[NCOLS] = {NULL};
    size_t len[NCOLS] = {0}, cap[NCOLS] = {0};
    rcd_db_res_t *res = NULL;
    int rc = -1;
    for (size_t i = 0; i < n; i++)
        results[i].outcome = S_FAILED;
    for (size_t i = 0; i < n; i++) {
        const s_msg_t *m = &msgs[i];
        if (rcd_db_text_array_append (&arr[TO], &len[TO], &cap[TO], m->to) ||
            rcd_db_text_array_append (&arr[BODY], &len[BODY], &cap[BODY],
                                      m->text) ||
            s_append_int (&arr[PRIO], &len[PRIO], &cap[PRIO], m->priority) ||
            rcd_db_text_array_append (&arr[SEND], &len[SEND], &cap[SEND],
                                      m->send_at) ||
            rcd_db_text_array_append (&arr[UNTIL], &len[UNTIL], &cap[UNTIL],
                                      m->valid_until) ||
            rcd_db_text_array_append (&arr[INST], &len[INST], &cap[INST],
                                      m->instance) ||
            s_append_int (&arr[DELAY], &len[DELAY], &cap[DELAY], m->delay_ms) ||
            rcd_db_text_array_append (&arr[IDEM], &len[IDEM], &cap[IDEM],
                                      m->idempotency_key))
            goto cleanup;
        char id[24];
        snprintf (id, sizeof id, "%lld", (long long)m->id);
        if (rcd_db_text_array_append (&arr[GIVEN], &len[GIVEN], &cap[GIVEN],
                                      m->id ? id : NULL))
            goto cleanup;
    }
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)tenant_id);
    const char *params[] = {tenant,    arr[TO],    arr[BODY], arr[PRIO],
                            arr[SEND], arr[UNTIL], arr[INST], arr[DELAY],
                            arr[IDEM], arr[GIVEN], trace_id};
    if (rcd_db_run (db, "msg_insert", 11, params, &res) != 0)
        goto cleanup;
    int rows = rcd_db_res_rows (res);
    for (int r = 0; r < rows; r++) {
        int64_t ord = rcd_db_res_int64 (res, r, 0);
        if (ord < 1 || (size_t)ord > n)
            continue;
        s_result_t *out = &results[ord - 1];
        const char *what = rcd_db_res_value (res, r, 1);
        if (strcmp (what, "created") == 0)
            out->outcome = S_CREATED;
        else if (strcmp (what, "existing") == 0)
            out->outcome = S_EXISTING;
        else if (strcmp (what, "no_instance") == 0)
            out->outcome = S_NO_INSTANCE;
        else
            out->outcome = S_RETRY;
        if (out->outcome == S_CREATED || out->outcome == S_EXISTING)
            out->answer = s_answer (res, r, 2);
    }
    rc = 0;
cleanup:
    rcd_db_res_destroy (&res);
    for (int c = 0; c < NCOLS; c++)
        free (arr[c]);
    return rc;
}

/*  Renders the templated messages among msgs[0..n), a round trip per
    S_CHUNK that holds any: each gets a fresh id and its text. Built-in
    values: name (the stored contact's). A message that cannot be
    rendered is dropped from msgs and index, its error put in
    answers[index[k]] (or, with no answers, in *err). Returns the count
    left, or -1 on a database failure. */
static long
s_render (rcd_api_req_t *req, s_msg_t *msgs, size_t *index, size_t n,
          json_t *answers, rcd_api_error_t *err, uint32_t *rejected)
{
    size_t kept = 0;
    for (size_t start = 0; start < n; start += S_CHUNK) {
        size_t count = n - start < S_CHUNK ? n - start : S_CHUNK;
        const char *keys[S_CHUNK], *phones[S_CHUNK];
        size_t templated = 0;
        for (size_t k = 0; k < count; k++) {
            keys[k] = msgs[start + k].template_key;
            phones[k] = keys[k] ? msgs[start + k].to : NULL;
            templated += keys[k] != NULL;
        }
        rcd_api_render_t *ctx = NULL;
        if (templated &&
            rcd_api_render_load (req->db, req->tenant_id, keys, phones, count,
                                 templated, &ctx) != 0)
            return -1;
        for (size_t k = start; k < start + count; k++) {
            s_msg_t *m = &msgs[k];
            if (m->template_key) {
                json_t *contact = rcd_api_render_contact (ctx, m->to);
                json_t *builtins = json_pack (
                    "{s:O?}", "name", json_object_get (contact, "name"));
                json_t *scopes[] = {m->vars, json_object_get (contact, "vars"),
                                    builtins};
                char prefix[32] = "";
                if (answers)
                    snprintf (prefix, sizeof prefix, "items[%zu].", index[k]);
                m->id = rcd_api_render_next_id (ctx);
                int rc =
                    rcd_api_render_text (ctx, m->template_key, m->id, scopes, 3,
                                         prefix, &m->rendered, err);
                json_decref (builtins);
                if (rc != 0) {
                    if (answers)
                        json_object_set_new (json_array_get (answers, index[k]),
                                             "error", rcd_api_error_json (err));
                    (*rejected)++;
                    continue;
                }
                m->text = m->rendered;
            }
            if (kept != k) {
                msgs[kept] = *m;
                m->rendered = NULL; /* moved */
                index[kept] = index[k];
            }
            kept++;
        }
        rcd_api_render_destroy (&ctx);
    }
    return (long)kept;
}

/*  Frees what rendering allocated in msgs[0..n). */
static void
s_msgs_free (s_msg_t *msgs, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free (msgs[k].rendered);
        msgs[k].rendered = NULL;
    }
}

/*  Settles an S_RETRY item: the message a concurrent request stored with
    the same key, committed after our statement's snapshot. */
static void
s_settle_retry (rcd_db_t *db, int64_t tenant_id, const s_msg_t *m,
                s_result_t *result)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)tenant_id);
    const char *params[] = {tenant, m->idempotency_key};
    rcd_db_res_t *res = NULL;
    result->outcome = S_FAILED;
    if (m->idempotency_key &&
        rcd_db_run (db, "msg_by_key", 2, params, &res) == 0 &&
        rcd_db_res_rows (res) == 1) {
        result->outcome = S_EXISTING;
        result->answer = s_answer (res, 0, 0);
    }
    rcd_db_res_destroy (&res);
}

/*  The log line of one message stored (message.accepted) or found by
    its idempotency key (message.duplicate); answer is s_answer's. A
    batch logs one message.batch line instead. */
static void
s_log_stored (const rcd_api_req_t *req, s_outcome_t outcome,
              const json_t *answer)
{
    char masked[40];
    rcd_log_mask_phone (json_string_value (json_object_get (answer, "to")),
                        masked, sizeof masked);
    rcd_log_info (
        outcome == S_CREATED ? "message.accepted" : "message.duplicate",
        "{s:s?, s:I, s:I, s:s, s:s?}", "trace_id", req->trace_id, "message_id",
        (json_int_t)json_integer_value (json_object_get (answer, "id")),
        "tenant_id", (json_int_t)req->tenant_id, "to", masked, "status",
        json_string_value (json_object_get (answer, "status")));
}

void
rcd_api_message_create (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    s_msg_t m = {.rendered = NULL};
    size_t index = 0;
    s_result_t result = {S_FAILED, NULL};
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        s_parse_message (body, "", req->default_country, &m, &err) != 0) {
        reply->rejected = 1;
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    long left = s_render (req, &m, &index, 1, NULL, &err, &reply->rejected);
    if (left < 0) {
        rcd_api_reply_db_error (reply, req->db, "render_load");
        goto cleanup;
    }
    if (left == 0) {
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    if (s_insert (req->db, req->tenant_id, req->trace_id, &m, 1, &result) !=
        0) {
        rcd_api_reply_db_error (reply, req->db, "msg_insert");
        goto cleanup;
    }
    if (result.outcome == S_RETRY)
        s_settle_retry (req->db, req->tenant_id, &m, &result);
    if (result.outcome == S_CREATED || result.outcome == S_EXISTING)
        s_log_stored (req, result.outcome, result.answer);
    switch (result.outcome) {
        case S_CREATED:
            reply->accepted = 1;
            rcd_api_reply_json (reply, 202, result.answer);
            result.answer = NULL;
            break;
        case S_EXISTING:
            reply->duplicates = 1;
            rcd_api_reply_json (reply, 200, result.answer);
            result.answer = NULL;
            break;
        case S_NO_INSTANCE:
            reply->rejected = 1;
            rcd_api_reply_fail (reply, 400, "invalid_field", "instance",
                                "no instance with this name");
            break;
        default:
            rcd_api_reply_db_error (reply, req->db, "msg_by_key");
            break;
    }
cleanup:
    s_msgs_free (&m, 1);
    json_decref (result.answer);
    json_decref (body);
}

void
rcd_api_message_batch (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    json_t *answers = NULL;
    s_msg_t *msgs = NULL;
    size_t *index = NULL;
    s_result_t *results = NULL;
    json_t *items = NULL;
    if (rcd_api_parse_batch (req, &body, &items, reply) != 0)
        goto cleanup;
    size_t count = json_array_size (items);
    answers = json_array ();
    msgs = calloc (count ? count : 1, sizeof *msgs);
    index = calloc (count ? count : 1, sizeof *index);
    results = calloc (count ? count : 1, sizeof *results);
    if (!answers || !msgs || !index || !results) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "out of memory");
        goto cleanup;
    }

    /* validate all first; the valid ones are packed into msgs */
    size_t nvalid = 0;
    for (size_t i = 0; i < count; i++) {
        char prefix[32];
        snprintf (prefix, sizeof prefix, "items[%zu].", i);
        json_t *answer = NULL;
        if (s_parse_message (json_array_get (items, i), prefix,
                             req->default_country, &msgs[nvalid], &err) == 0) {
            index[nvalid++] = i;
            answer = json_pack ("{s:I}", "index", (json_int_t)i);
        }
        else {
            answer = json_pack ("{s:I, s:o}", "index", (json_int_t)i, "error",
                                rcd_api_error_json (&err));
            reply->rejected++;
        }
        json_array_append_new (answers, answer);
    }

    long left =
        s_render (req, msgs, index, nvalid, answers, &err, &reply->rejected);
    if (left < 0) {
        rcd_api_reply_db_error (reply, req->db, "render_load");
        goto cleanup;
    }
    nvalid = (size_t)left;

    /* store the valid ones, a chunk per statement (and transaction) */
    for (size_t start = 0; start < nvalid; start += S_CHUNK) {
        size_t n = nvalid - start < S_CHUNK ? nvalid - start : S_CHUNK;
        if (s_insert (req->db, req->tenant_id, req->trace_id, msgs + start, n,
                      results + start) != 0)
            rcd_log_warn ("batch chunk failed", "{s:s, s:I}", "error",
                          rcd_db_error (req->db), "items", (json_int_t)n);
        for (size_t k = start; k < start + n; k++)
            if (results[k].outcome == S_RETRY)
                s_settle_retry (req->db, req->tenant_id, &msgs[k], &results[k]);
    }
    bool db_down = !rcd_db_connected (req->db);
    for (size_t k = 0; k < nvalid; k++) {
        json_t *answer = json_array_get (answers, index[k]);
        s_result_t *r = &results[k];
        if (r->outcome == S_CREATED || r->outcome == S_EXISTING) {
            json_object_update (answer, r->answer);
            if (r->outcome == S_EXISTING)
                json_object_set_new (answer, "duplicate", json_true ());
            if (r->outcome == S_CREATED)
                reply->accepted++;
            else
                reply->duplicates++;
            continue;
        }
        char field[48];
        snprintf (field, sizeof field, "items[%zu].instance", index[k]);
        if (r->outcome == S_NO_INSTANCE)
            rcd_api_fail (&err, 400, "invalid_field", field,
                          "no instance with this name");
        else
            rcd_api_fail_unstored (&err, db_down);
        json_object_set_new (answer, "error", rcd_api_error_json (&err));
        reply->rejected++;
    }
    rcd_log_info ("message.batch", "{s:s?, s:I, s:I, s:I, s:I, s:I}",
                  "trace_id", req->trace_id, "tenant_id",
                  (json_int_t)req->tenant_id, "items", (json_int_t)count,
                  "accepted", (json_int_t)reply->accepted, "duplicates",
                  (json_int_t)reply->duplicates, "rejected",
                  (json_int_t)reply->rejected);
    rcd_api_reply_json (reply, 207, json_pack ("{s:O}", "items", answers));

cleanup:
    if (results)
        for (size_t k = 0; k < json_array_size (answers); k++)
            json_decref (results[k].answer);
    free (results);
    free (index);
    if (msgs)
        s_msgs_free (msgs, json_array_size (answers));
    free (msgs);
    json_decref (answers);
    json_decref (body);
}

void
rcd_api_message_get (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24], id[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (id, sizeof id, "%lld", (long long)req->id);
    const char *params[] = {tenant, id};
    rcd_api_reply_document (req, reply, "msg_get", 2, params,
                            "no message with this id");
}

/*  Statuses a listing may filter on. */
static bool
s_known_status (const char *status)
{
    static const char *const statuses[] = {
        "pending",   "paused",  "sending", "unknown",   "sent",
        "delivered", "read",    "failed",  "cancelled", "expired",
        "blocked",   "skipped", NULL};
    for (int i = 0; statuses[i]; i++)
        if (strcmp (statuses[i], status) == 0)
            return true;
    return false;
}

void
rcd_api_message_list (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    const char *status = NULL;
    rcd_api_page_t page;
    rcd_api_page_init (&page);
    const char *key;
    json_t *value;
    json_object_foreach (req->query, key, value)
    {
        const char *v = json_string_value (value);
        int rc = rcd_api_page_param (&page, key, v, reply);
        if (rc < 0)
            return;
        if (rc == 1)
            continue;
        if (strcmp (key, "status") == 0 && v && s_known_status (v))
            status = v;
        else if (strcmp (key, "status") == 0) {
            rcd_api_reply_fail (reply, 400, "invalid_field", "status",
                                "unknown status");
            return;
        }
        else {
            rcd_api_reply_fail (reply, 400, "invalid_field", key,
                                "unknown query parameter (status, since, "
                                "limit, cursor)");
            return;
        }
    }
    char tenant[24], after[24], lim[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (after, sizeof after, "%lld", (long long)page.cursor);
    snprintf (lim, sizeof lim, "%lld", (long long)page.limit);
    const char *params[] = {tenant, status, page.since, after, lim};
    rcd_api_reply_document (req, reply, "msg_list", 5, params, "no listing");
}

void
rcd_api_message_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24], id[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (id, sizeof id, "%lld", (long long)req->id);
    const char *params[] = {tenant, id};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "msg_cancel", 2, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "msg_cancel");
        goto cleanup;
    }
    const char *before = rcd_db_res_value (res, 0, 1);
    if (rcd_db_res_int64 (res, 0, 0) == 1) {
        reply->cancelled = 1;
        rcd_api_message_get (req, reply); /* shows the new history row */
    }
    else if (!before)
        rcd_api_reply_fail (reply, 404, "not_found", NULL,
                            "no message with this id");
    else
        rcd_api_reply_fail (reply, 409, "conflict", NULL,
                            "the message is %s; only pending (or paused) "
                            "messages can be cancelled",
                            strcmp (before, "pending") == 0 ||
                                    strcmp (before, "paused") == 0
                                ? "no longer pending"
                                : before);
cleanup:
    rcd_db_res_destroy (&res);
}

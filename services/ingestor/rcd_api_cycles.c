/*  rcd_api_cycles.c - billing cycles: an invoice and its reminders.

    A cycle makes one message per offset (days from the due date), due at
    the tenant's reminder time on that day in the tenant's time zone and
    moved to the next business-hours opening when outside the window.
    PostgreSQL does all of that arithmetic, in the statement that stores
    the chunk, with "now" passed in by the ingestor (so a test build can
    move it).

    Late uploads: the reminders whose day is today or already past
    collapse into one, the latest of them, sent today (at its time when
    that is still ahead, else now, or at the next opening); the earlier
    ones are stored as 'skipped' and reported. Today's reminder counts in
    the collapse so that a late upload never sends two reminders on one
    day.

    Uniqueness: billing_cycles_active (tenant_id, external_billing_id)
    WHERE status = 'active' decides, with ON CONFLICT DO NOTHING, so two
    concurrent uploads of one id create one cycle and the loser answers
    409. Duplicates inside one batch are found here first and reported on
    the later items.

    A batch is validated whole; one render_load fetches its templates,
    stored contacts and message ids; then each chunk of S_CHUNK cycles is
    rendered and stored by one cycle_insert (contacts, cycles, messages,
    history in one statement, so one transaction). A 1000-cycle batch is
    12 round trips.
*/
#include "rcd_api.h"
#include "rcd_clock.h"
#include "rcd_log.h"
#include "rcd_phone.h"
#include "rcd_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Cycles per insert statement in a batch. */
#define S_CHUNK 100
/*  Most reminders a cycle may have, and how far an offset may reach. */
#define RCD_API_OFFSETS_MAX 10
#define S_EXTERNAL_MAX      200
#define S_NAME_CHARS        200
#define S_AMOUNT_MAX        100000000000LL /* R$ 1 billion */

/*  SQL reads better laid out as SQL. */
/* clang-format off */

int
rcd_api_cycles_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* $2 is "now" in Unix ms. The tenant's local today and the defaults
       the validation needs. */
    rc |= rcd_db_prepare (db, "cycle_settings",
        "SELECT (to_timestamp($2::bigint / 1000.0)"
        "          AT TIME ZONE timezone)::date::text,"
        "       array_to_json(default_offsets_days)::text"
        "  FROM tenants WHERE id = $1::bigint");
    /* $1 tenant, $2 now (Unix ms); cycles as parallel arrays $3..$11;
       their reminders as parallel arrays $12..$15 (the cycle's ord, the
       offset, the drawn id, the rendered text); $16 the request's trace
       id, shared by every reminder it stores. Answers one row per
       cycle in order: ord, cycle id (NULL: an active cycle with that
       external id exists), the reminders as JSON. */
    rc |= rcd_db_prepare (db, "cycle_insert",
        "WITH t AS ("
        "  SELECT timezone AS tz, business_hours AS hours,"
        "         reminder_time AS rt,"
        "         to_timestamp($2::bigint / 1000.0) AS now,"
        "         (to_timestamp($2::bigint / 1000.0)"
        "            AT TIME ZONE timezone)::date AS today"
        "    FROM tenants WHERE id = $1::bigint"
        "), c AS ("
        /* the contact looked up per item, through its primary key: a
           join would let a plan made on an empty table hash the tenant's
           every contact */
        "  SELECT u.*, COALESCE((SELECT x.opted_out FROM contacts x"
        "                         WHERE x.tenant_id = $1::bigint"
        "                           AND x.phone = u.phone), false)"
        "           AS opted_out"
        "    FROM unnest($3::int[], $4::text[], $5::text[],"
        "                $6::text[], $7::bigint[], $8::date[],"
        "                $9::text[], $10::jsonb[], $11::text[])"
        "         AS u(ord, ext, phone, name, amount, due, template, vars,"
        "              offsets)"
        "), r AS ("
        "  SELECT u.cord, u.off, u.id, u.body, c.opted_out,"
        "         c.due + u.off AS day,"
        "         timezone(t.tz, (c.due + u.off) + t.rt) AS planned"
        "    FROM unnest($12::int[], $13::int[], $14::bigint[], $15::text[])"
        "         AS u(cord, off, id, body)"
        "    JOIN c ON c.ord = u.cord CROSS JOIN t"
        "), k AS ("
        "  SELECT r.*,"
        "         CASE WHEN r.day < max(r.day) FILTER (WHERE r.day <= t.today)"
        "                           OVER (PARTITION BY r.cord)"
        "              THEN 'skipped'"
        "              WHEN r.opted_out THEN 'blocked'"
        "              ELSE 'pending' END AS status,"
        "         CASE WHEN r.day > t.today THEN r.planned"
        "              ELSE greatest(r.planned, t.now) END AS wanted"
        "    FROM r CROSS JOIN t"
        "), moved AS ("
        /* the next opening, once per distinct instant (a chunk has a few
           dozen: the reminder time on each day, and now), and not at all
           for a tenant that is always open */
        "  SELECT w.wanted,"
        "         rcd_business_next_open(t.hours, t.tz, w.wanted) AS at"
        "    FROM (SELECT DISTINCT wanted FROM k"
        "           WHERE status <> 'skipped') w CROSS JOIN t"
        "   WHERE t.hours IS NOT NULL AND jsonb_typeof(t.hours) <> 'null'"
        "), s AS ("
        "  SELECT k.*, CASE WHEN k.status = 'skipped' THEN k.planned"
        "                   ELSE COALESCE(mv.at, k.wanted) END AS send_at"
        "    FROM k LEFT JOIN moved mv ON mv.wanted = k.wanted"
        "), open AS ("
        "  SELECT cord, count(*) FILTER (WHERE status = 'pending') AS n"
        "    FROM s GROUP BY cord"
        "), ins AS ("
        "  INSERT INTO billing_cycles (tenant_id, external_billing_id, phone,"
        "                              contact_name, amount_cents, due_date,"
        "                              template, vars, offsets_days,"
        "                              open_messages, status, completed_at)"
        "  SELECT $1::bigint, c.ext, c.phone, c.name, c.amount, c.due,"
        "         c.template, COALESCE(c.vars, '{}'::jsonb), c.offsets::int[],"
        "         o.n, CASE WHEN o.n = 0 THEN 'complete' ELSE 'active' END,"
        "         CASE WHEN o.n = 0 THEN now() END"
        "    FROM c JOIN open o ON o.cord = c.ord ORDER BY c.ext"
        "  ON CONFLICT (tenant_id, external_billing_id)"
        "     WHERE status = 'active' DO NOTHING"
        "  RETURNING id, external_billing_id"
        "), contact AS ("
        /* the batch's latest name for a phone wins; vars and opted_out
           stay; a cycle refused as a conflict touches no contact */
        "  INSERT INTO contacts AS x (tenant_id, phone, name)"
        "  SELECT DISTINCT ON (c.phone) $1::bigint, c.phone, c.name"
        "    FROM c JOIN ins ON ins.external_billing_id = c.ext"
        "   ORDER BY c.phone, c.name IS NULL, c.ord DESC"
        "  ON CONFLICT (tenant_id, phone) DO UPDATE SET"
        "    name = COALESCE(EXCLUDED.name, x.name),"
        "    updated_at = CASE WHEN EXCLUDED.name IS NOT NULL"
        "                       AND EXCLUDED.name IS DISTINCT FROM x.name"
        "                      THEN now() ELSE x.updated_at END"
        "), msg AS ("
        "  INSERT INTO messages (id, tenant_id, to_phone, body, status,"
        "                        send_at, billing_cycle_id, offset_days,"
        "                        last_error, trace_id)"
        "  SELECT s.id, $1::bigint, c.phone, s.body, s.status, s.send_at,"
        "         ins.id, s.off,"
        "         CASE s.status WHEN 'blocked' THEN 'contact opted out' END,"
        "         $16::text"
        "    FROM s JOIN c ON c.ord = s.cord"
        "    JOIN ins ON ins.external_billing_id = c.ext"
        "   ORDER BY s.id"
        "  RETURNING id, status"
        "), hist AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, status, CASE status"
        "           WHEN 'pending' THEN 'accepted'"
        "           WHEN 'skipped' THEN 'reminder day already past: a later"
        " reminder of the cycle is sent instead'"
        "           ELSE 'contact opted out' END"
        "    FROM msg"
        "), answer AS ("
        "  SELECT s.cord, json_agg(json_build_object('id', s.id,"
        "           'offset_days', s.off, 'status', s.status,"
        "           'send_at', " RCD_API_TS ("s.send_at") ")"
        "           ORDER BY s.off) AS reminders"
        "    FROM s GROUP BY s.cord"
        ")"
        "SELECT c.ord, ins.id,"
        "       CASE WHEN ins.id IS NOT NULL THEN a.reminders::text END"
        "  FROM c LEFT JOIN ins ON ins.external_billing_id = c.ext"
        "  LEFT JOIN answer a ON a.cord = c.ord"
        " ORDER BY c.ord");
    /* The active cycle with this external id, else the latest one. */
    rc |= rcd_db_prepare (db, "cycle_get",
        "SELECT json_build_object("
        "  'id', b.id, 'external_billing_id', b.external_billing_id,"
        "  'status', b.status,"
        "  'contact', json_build_object('phone', b.phone,"
        "                               'name', b.contact_name),"
        "  'amount_cents', b.amount_cents, 'currency', b.currency,"
        "  'due_date', b.due_date::text, 'template', b.template,"
        "  'vars', b.vars, 'offsets_days', b.offsets_days,"
        "  'created_at', " RCD_API_TS ("b.created_at") ","
        "  'completed_at', " RCD_API_TS ("b.completed_at") ","
        "  'cancelled_at', " RCD_API_TS ("b.cancelled_at") ","
        "  'messages', COALESCE((SELECT json_agg(json_build_object("
        "       'id', m.id, 'offset_days', m.offset_days,"
        "       'status', m.status, 'text', m.body,"
        "       'send_at', " RCD_API_TS ("m.send_at") ","
        "       'attempts', m.attempts,"
        "       'sent_at', " RCD_API_TS ("m.sent_at") ","
        "       'last_error', m.last_error) ORDER BY m.offset_days)"
        "     FROM messages m WHERE m.tenant_id = b.tenant_id"
        "      AND m.billing_cycle_id = b.id), '[]'::json))::text"
        "  FROM billing_cycles b"
        " WHERE b.tenant_id = $1::bigint AND b.external_billing_id = $2::text"
        " ORDER BY b.status = 'active' DESC, b.id DESC LIMIT 1");
    /* One statement, so one transaction: the cycle and its pending
       reminders are cancelled together. A reminder already claimed
       ('sending') finishes; the status seen by the first column is the
       one before the change. */
    rc |= rcd_db_prepare (db, "cycle_cancel",
        "WITH b AS ("
        "  SELECT id, status FROM billing_cycles"
        "   WHERE tenant_id = $1::bigint AND external_billing_id = $2::text"
        "   ORDER BY status = 'active' DESC, id DESC LIMIT 1"
        "   FOR UPDATE"
        "), cyc AS ("
        "  UPDATE billing_cycles SET status = 'cancelled', cancelled_at = now()"
        "   WHERE id = (SELECT id FROM b) AND status = 'active'"
        "  RETURNING id"
        "), upd AS ("
        "  UPDATE messages SET status = 'cancelled', updated_at = now(),"
        "                      last_error = 'billing cycle cancelled'"
        "   WHERE tenant_id = $1::bigint"
        "     AND billing_cycle_id = (SELECT id FROM cyc)"
        "     AND status = 'pending'"
        "  RETURNING id, tenant_id"
        "), hist AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT tenant_id, id, 'cancelled', 'billing cycle cancelled'"
        "    FROM upd"
        ")"
        "SELECT (SELECT status FROM b), (SELECT count(*) FROM upd)");
    return rc ? -1 : 0;
}

/* clang-format on */

/*  --- validation --- */

/*  One validated cycle. Strings are borrowed from the parsed body. */
typedef struct {
    const char *external_id;
    char phone[RCD_PHONE_MAX];
    const char *name;
    const char *earlier_name; /* without a name: the batch's latest
                                 earlier one for this phone, if any */
    int64_t amount_cents;
    const char *due_date; /* YYYY-MM-DD, checked */
    const char *template_key;
    json_t *vars; /* NULL when none */
    int offsets[RCD_API_OFFSETS_MAX];
    size_t noffsets;
} s_cycle_t;

/*  What a request's validation needs from the tenant. */
typedef struct {
    int64_t now_ms;
    int64_t today;    /* the tenant's local date as days since 1970 */
    int64_t year_ago; /* today one year back, as days */
    int64_t year_on;  /* today one year on, as days */
    int offsets[RCD_API_OFFSETS_MAX];
    size_t noffsets;
} s_settings_t;

static const rcd_api_field_t s_cycle_fields[] = {
    {"external_billing_id", RCD_API_STRING, true},
    {"contact", RCD_API_OBJECT, true},
    {"amount_cents", RCD_API_INTEGER, true},
    {"currency", RCD_API_STRING, false},
    {"due_date", RCD_API_STRING, true},
    {"template", RCD_API_STRING, false},
    {"vars", RCD_API_OBJECT, false},
    {"offsets_days", RCD_API_ARRAY, false},
    {NULL, RCD_API_ANY, false},
};

static const rcd_api_field_t s_contact_fields[] = {
    {"phone", RCD_API_STRING, true},
    {"name", RCD_API_STRING, false},
    {NULL, RCD_API_ANY, false},
};

/*  Validates one cycle object. prefix locates it in errors ("" or
    "items[3]."). Returns 0 or -2 with err filled. */
static int
s_parse_cycle (json_t *item, const char *prefix, const char *default_country,
               const s_settings_t *settings, s_cycle_t *c, rcd_api_error_t *err)
{
    char path[160], sub[160];
#define S_PATH(name) (snprintf (path, sizeof path, "%s%s", prefix, name), path)
    memset (c, 0, sizeof *c);
    if (!json_is_object (item)) {
        size_t n = strlen (prefix);
        snprintf (path, sizeof path, "%.*s", (int)(n ? n - 1 : 0), prefix);
        return rcd_api_fail (err, 400, "invalid_field", path,
                             "a billing cycle must be an object");
    }
    if (rcd_api_check_fields (item, s_cycle_fields, prefix, err) != 0)
        return -2;

    c->external_id = rcd_api_string (item, "external_billing_id");
    size_t len = rcd_api_utf8_length (c->external_id);
    if (len < 1 || len > S_EXTERNAL_MAX ||
        rcd_api_has_control (c->external_id) || strchr (c->external_id, '/'))
        return rcd_api_fail (err, 400, "invalid_field",
                             S_PATH ("external_billing_id"),
                             "must be 1 to %d characters, without '/' or "
                             "control characters",
                             S_EXTERNAL_MAX);

    json_t *contact = json_object_get (item, "contact");
    snprintf (sub, sizeof sub, "%scontact.", prefix);
    if (rcd_api_check_fields (contact, s_contact_fields, sub, err) != 0)
        return -2;
    const char *why = NULL;
    if (rcd_phone_normalize (rcd_api_string (contact, "phone"), default_country,
                             c->phone, sizeof c->phone, &why) != 0)
        return rcd_api_fail (
            err, 400, "invalid_phone", S_PATH ("contact.phone"),
            "not a usable phone number: %s", why ? why : "invalid");
    c->name = rcd_api_string (contact, "name");
    len = c->name ? rcd_api_utf8_length (c->name) : 1;
    if (len < 1 || len > S_NAME_CHARS ||
        (c->name && rcd_api_has_control (c->name)))
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("contact.name"),
                             "must be 1 to %d characters without control "
                             "characters",
                             S_NAME_CHARS);

    c->amount_cents =
        (int64_t)json_integer_value (json_object_get (item, "amount_cents"));
    if (c->amount_cents < 1 || c->amount_cents > S_AMOUNT_MAX)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("amount_cents"),
                             "must be a whole number of cents from 1 to %lld "
                             "(R$ 159,90 is 15990)",
                             (long long)S_AMOUNT_MAX);
    const char *currency = rcd_api_string (item, "currency");
    if (currency && strcmp (currency, "BRL") != 0)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("currency"),
                             "only \"BRL\" is supported");

    c->due_date = rcd_api_string (item, "due_date");
    int y, m, d;
    if (rcd_api_parse_date (c->due_date, &y, &m, &d) != 0)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("due_date"),
                             "must be a calendar date written YYYY-MM-DD, "
                             "e.g. 2026-12-05");
    int64_t due = rcd_api_days (y, m, d);
    if (due < settings->year_ago || due > settings->year_on)
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("due_date"),
                             "must be within one year of today");

    c->template_key = rcd_api_string (item, "template");
    if (c->template_key &&
        (!*c->template_key || strlen (c->template_key) > 100))
        return rcd_api_fail (err, 400, "invalid_field", S_PATH ("template"),
                             "must be a template key of 1 to 100 bytes");
    c->vars = json_object_get (item, "vars");
    if (json_is_null (c->vars))
        c->vars = NULL;
    if (c->vars && rcd_api_check_vars (c->vars, prefix, err) != 0)
        return -2;

    json_t *offsets = json_object_get (item, "offsets_days");
    if (!offsets || json_is_null (offsets)) {
        memcpy (c->offsets, settings->offsets, sizeof c->offsets);
        c->noffsets = settings->noffsets;
        return 0;
    }
    snprintf (sub, sizeof sub, "%soffsets_days", prefix);
    return rcd_api_check_offsets (offsets, sub, false, c->offsets, &c->noffsets,
                                  err);
#undef S_PATH
}

/*  Loads the tenant's local today and default offsets. Returns 0, or -1
    on a database failure (reply filled). */
static int
s_settings (rcd_api_req_t *req, s_settings_t *settings, rcd_api_reply_t *reply)
{
    char tenant[24], now[24];
    memset (settings, 0, sizeof *settings);
    settings->now_ms = rcd_clock_now_ms ();
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (now, sizeof now, "%lld", (long long)settings->now_ms);
    const char *params[] = {tenant, now};
    rcd_db_res_t *res = NULL;
    json_t *offsets = NULL;
    int y, m, d, rc = -1;
    if (rcd_db_run (req->db, "cycle_settings", 2, params, &res) != 0 ||
        rcd_db_res_rows (res) != 1) {
        rcd_api_reply_db_error (reply, req->db, "cycle_settings");
        goto cleanup;
    }
    offsets = json_loads (rcd_db_res_value (res, 0, 1), 0, NULL);
    if (rcd_api_parse_date (rcd_db_res_value (res, 0, 0), &y, &m, &d) != 0 ||
        !json_is_array (offsets)) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "unreadable tenant settings");
        goto cleanup;
    }
    settings->today = rcd_api_days (y, m, d);
    settings->year_ago = rcd_api_days (y - 1, m, d);
    settings->year_on = rcd_api_days (y + 1, m, d);
    for (size_t i = 0; i < json_array_size (offsets) && i < RCD_API_OFFSETS_MAX;
         i++)
        settings->offsets[settings->noffsets++] =
            (int)json_integer_value (json_array_get (offsets, i));
    rc = 0;
cleanup:
    json_decref (offsets);
    rcd_db_res_destroy (&res);
    return rc;
}

/*  --- storing --- */

/*  What cycle_insert said about one cycle. */
typedef struct {
    int64_t id;          /* 0: not stored */
    bool conflict;       /* an active cycle with the id exists */
    json_t *reminders;   /* [{id, offset_days, status, send_at}]; owned */
    rcd_api_error_t err; /* when rendering failed */
    bool invalid;
} s_result_t;

/*  Appends one array element built from an int64. */
static int
s_append_int (char **buf, size_t *len, size_t *cap, int64_t value)
{
    char text[24];
    snprintf (text, sizeof text, "%lld", (long long)value);
    return rcd_db_text_array_append (buf, len, cap, text);
}

/*  Loads what rendering cycles[0..n) needs, in one round trip for the
    whole request. Returns 0 or -1. */
static int
s_render_load (rcd_api_req_t *req, const s_cycle_t *cycles, size_t n,
               rcd_api_render_t **ctx_p)
{
    const char **keys = calloc (n ? n : 1, sizeof *keys);
    const char **phones = calloc (n ? n : 1, sizeof *phones);
    size_t nids = 0;
    int rc = -1;
    if (keys && phones) {
        for (size_t k = 0; k < n; k++) {
            keys[k] = cycles[k].template_key;
            phones[k] = cycles[k].phone;
            nids += cycles[k].noffsets;
        }
        rc = rcd_api_render_load (req->db, req->tenant_id, keys, phones, n,
                                  nids, ctx_p);
    }
    free (keys);
    free (phones);
    return rc;
}

/*  Renders cycles[0..n) (one chunk) with ctx and stores them with one
    cycle_insert. index[k] is the cycle's position in the request (for
    error fields; -1 for a single cycle). Returns 0, or -1 when a
    statement failed (the results then say nothing was stored). */
static int
s_store (rcd_api_req_t *req, const s_settings_t *settings,
         rcd_api_render_t *ctx, const s_cycle_t *cycles, const size_t *index,
         size_t n, s_result_t *results)
{
    enum {
        ORD,
        EXT,
        PHONE,
        NAME,
        AMOUNT,
        DUE,
        TPL,
        VARS,
        OFFS,
        R_CORD,
        R_OFF,
        R_ID,
        R_BODY,
        NCOLS
    };
    char *arr[NCOLS] = {NULL};
    size_t len[NCOLS] = {0}, cap[NCOLS] = {0};
    rcd_db_res_t *res = NULL;
    int rc = -1;
    size_t stored = 0;
    for (size_t k = 0; k < n; k++) {
        const s_cycle_t *c = &cycles[k];
        s_result_t *r = &results[k];
        char prefix[32] = "", amount[48], due[16];
        if (index[k] != (size_t)-1)
            snprintf (prefix, sizeof prefix, "items[%zu].", index[k]);
        rcd_template_brl (c->amount_cents, amount, sizeof amount);
        snprintf (due, sizeof due, "%.2s/%.2s/%.4s", c->due_date + 8,
                  c->due_date + 5, c->due_date);
        json_t *contact = rcd_api_render_contact (ctx, c->phone);
        json_t *name = c->name ? json_string (c->name)
                       : c->earlier_name
                           ? json_string (c->earlier_name)
                           : json_incref (json_object_get (contact, "name"));
        json_t *builtins = json_pack (
            "{s:o?, s:s, s:s, s:I}", "name", name, "amount", amount, "due_date",
            due, "amount_cents", (json_int_t)c->amount_cents);
        json_t *scopes[] = {c->vars, json_object_get (contact, "vars"),
                            builtins};
        /* render every reminder first: a cycle is stored whole or not */
        char *bodies[RCD_API_OFFSETS_MAX] = {NULL};
        int64_t ids[RCD_API_OFFSETS_MAX];
        for (size_t o = 0; o < c->noffsets && !r->invalid; o++) {
            ids[o] = rcd_api_render_next_id (ctx);
            if (rcd_api_render_text (ctx, c->template_key, ids[o], scopes, 3,
                                     prefix, &bodies[o], &r->err) != 0)
                r->invalid = true;
        }
        json_decref (builtins);
        int failed = 0;
        if (!r->invalid) {
            char *vars = c->vars ? json_dumps (c->vars, JSON_COMPACT) : NULL;
            char offsets[RCD_API_OFFSETS_MAX * 6 + 4];
            size_t w = 0;
            offsets[w++] = '{';
            for (size_t o = 0; o < c->noffsets; o++)
                w += (size_t)snprintf (offsets + w, sizeof offsets - w, "%s%d",
                                       o ? "," : "", c->offsets[o]);
            snprintf (offsets + w, sizeof offsets - w, "}");
            failed |=
                s_append_int (&arr[ORD], &len[ORD], &cap[ORD], (int64_t)k + 1);
            failed |= rcd_db_text_array_append (&arr[EXT], &len[EXT], &cap[EXT],
                                                c->external_id);
            failed |= rcd_db_text_array_append (&arr[PHONE], &len[PHONE],
                                                &cap[PHONE], c->phone);
            failed |= rcd_db_text_array_append (&arr[NAME], &len[NAME],
                                                &cap[NAME], c->name);
            failed |= s_append_int (&arr[AMOUNT], &len[AMOUNT], &cap[AMOUNT],
                                    c->amount_cents);
            failed |= rcd_db_text_array_append (&arr[DUE], &len[DUE], &cap[DUE],
                                                c->due_date);
            failed |= rcd_db_text_array_append (&arr[TPL], &len[TPL], &cap[TPL],
                                                c->template_key);
            failed |= rcd_db_text_array_append (&arr[VARS], &len[VARS],
                                                &cap[VARS], vars);
            failed |= rcd_db_text_array_append (&arr[OFFS], &len[OFFS],
                                                &cap[OFFS], offsets);
            for (size_t o = 0; o < c->noffsets; o++) {
                failed |= s_append_int (&arr[R_CORD], &len[R_CORD],
                                        &cap[R_CORD], (int64_t)k + 1);
                failed |= s_append_int (&arr[R_OFF], &len[R_OFF], &cap[R_OFF],
                                        c->offsets[o]);
                failed |=
                    s_append_int (&arr[R_ID], &len[R_ID], &cap[R_ID], ids[o]);
                failed |= rcd_db_text_array_append (&arr[R_BODY], &len[R_BODY],
                                                    &cap[R_BODY], bodies[o]);
            }
            free (vars);
            stored++;
        }
        for (size_t o = 0; o < c->noffsets; o++)
            free (bodies[o]);
        if (failed)
            goto cleanup;
    }
    if (stored == 0) {
        rc = 0;
        goto cleanup;
    }
    char tenant[24], now[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (now, sizeof now, "%lld", (long long)settings->now_ms);
    const char *params[] = {tenant,     now,       arr[ORD],    arr[EXT],
                            arr[PHONE], arr[NAME], arr[AMOUNT], arr[DUE],
                            arr[TPL],   arr[VARS], arr[OFFS],   arr[R_CORD],
                            arr[R_OFF], arr[R_ID], arr[R_BODY], req->trace_id};
    if (rcd_db_run (req->db, "cycle_insert", 16, params, &res) != 0)
        goto cleanup;
    for (int row = 0; row < rcd_db_res_rows (res); row++) {
        int64_t ord = rcd_db_res_int64 (res, row, 0);
        if (ord < 1 || (size_t)ord > n)
            continue;
        s_result_t *r = &results[ord - 1];
        if (rcd_db_res_isnull (res, row, 1)) {
            r->conflict = true;
            continue;
        }
        r->id = rcd_db_res_int64 (res, row, 1);
        r->reminders = json_loads (rcd_db_res_value (res, row, 2), 0, NULL);
    }
    rc = 0;
cleanup:
    rcd_db_res_destroy (&res);
    for (int col = 0; col < NCOLS; col++)
        free (arr[col]);
    return rc;
}

/*  The answer for a stored cycle: {id, external_billing_id, status,
    messages, skipped}. */
static json_t *
s_answer (const s_cycle_t *c, s_result_t *r)
{
    json_int_t skipped = 0, open = 0;
    size_t i;
    json_t *m;
    json_array_foreach (r->reminders, i, m)
    {
        const char *status = json_string_value (json_object_get (m, "status"));
        skipped += status && strcmp (status, "skipped") == 0;
        open += status && strcmp (status, "pending") == 0;
    }
    json_t *answer = json_pack (
        "{s:I, s:s, s:s, s:O, s:I}", "id", (json_int_t)r->id,
        "external_billing_id", c->external_id, "status",
        open ? "active" : "complete", "messages",
        r->reminders ? r->reminders : json_array (), "skipped", skipped);
    return answer;
}

/*  Counts the pending reminders of r (the scheduler's nudge). */
static uint32_t
s_pending (const s_result_t *r)
{
    uint32_t n = 0;
    size_t i;
    json_t *m;
    json_array_foreach (r->reminders, i, m)
    {
        const char *status = json_string_value (json_object_get (m, "status"));
        n += status && strcmp (status, "pending") == 0;
    }
    return n;
}

void
rcd_api_cycle_create (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    s_settings_t settings;
    s_cycle_t c;
    s_result_t r;
    memset (&r, 0, sizeof r);
    size_t index = (size_t)-1;
    rcd_api_render_t *ctx = NULL;
    if (rcd_api_parse_body (req, &body, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    if (s_settings (req, &settings, reply) != 0)
        goto cleanup;
    if (s_parse_cycle (body, "", req->default_country, &settings, &c, &err) !=
        0) {
        reply->rejected = 1;
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    if (s_render_load (req, &c, 1, &ctx) != 0) {
        rcd_api_reply_db_error (reply, req->db, "render_load");
        goto cleanup;
    }
    if (s_store (req, &settings, ctx, &c, &index, 1, &r) != 0) {
        rcd_api_reply_db_error (reply, req->db, "cycle_insert");
        goto cleanup;
    }
    if (r.invalid) {
        reply->rejected = 1;
        rcd_api_reply_error (reply, &r.err);
    }
    else if (r.conflict) {
        reply->rejected = 1;
        rcd_api_reply_fail (reply, 409, "conflict", "external_billing_id",
                            "an active billing cycle with this "
                            "external_billing_id exists");
    }
    else {
        reply->accepted = s_pending (&r);
        char masked[40];
        rcd_log_info ("cycle.created", "{s:s?, s:I, s:I, s:s, s:I, s:I}",
                      "trace_id", req->trace_id, "cycle_id", (json_int_t)r.id,
                      "tenant_id", (json_int_t)req->tenant_id, "to",
                      rcd_log_mask_phone (c.phone, masked, sizeof masked),
                      "messages", (json_int_t)json_array_size (r.reminders),
                      "pending", (json_int_t)reply->accepted);
        rcd_api_reply_json (reply, 201, s_answer (&c, &r));
    }
cleanup:
    rcd_api_render_destroy (&ctx);
    json_decref (r.reminders);
    json_decref (body);
}

void
rcd_api_cycle_batch (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL, *answers = NULL, *seen = NULL, *names = NULL;
    rcd_api_render_t *ctx = NULL;
    s_cycle_t *cycles = NULL;
    size_t *index = NULL;
    s_result_t *results = NULL;
    s_settings_t settings;
    json_t *items = NULL;
    if (rcd_api_parse_batch (req, &body, &items, reply) != 0)
        goto cleanup;
    size_t count = json_array_size (items);
    if (s_settings (req, &settings, reply) != 0)
        goto cleanup;
    answers = json_array ();
    seen = json_object ();  /* external id -> index of its first item */
    names = json_object (); /* phone -> latest name given in the batch */
    cycles = calloc (count ? count : 1, sizeof *cycles);
    index = calloc (count ? count : 1, sizeof *index);
    results = calloc (count ? count : 1, sizeof *results);
    if (!answers || !seen || !names || !cycles || !index || !results) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "out of memory");
        goto cleanup;
    }

    /* validate all first; the valid ones are packed into cycles */
    size_t nvalid = 0;
    for (size_t i = 0; i < count; i++) {
        char prefix[32];
        snprintf (prefix, sizeof prefix, "items[%zu].", i);
        json_t *answer = json_pack ("{s:I}", "index", (json_int_t)i);
        s_cycle_t *c = &cycles[nvalid];
        if (s_parse_cycle (json_array_get (items, i), prefix,
                           req->default_country, &settings, c, &err) == 0) {
            json_t *first = json_object_get (seen, c->external_id);
            if (!first) {
                json_object_set_new (seen, c->external_id,
                                     json_integer ((json_int_t)i));
                /* the render context is loaded once, before any chunk is
                   stored: a later chunk's {{name}} must still see a name
                   an earlier item gave for the same phone */
                if (c->name)
                    json_object_set_new (names, c->phone,
                                         json_string (c->name));
                else
                    c->earlier_name =
                        json_string_value (json_object_get (names, c->phone));
                index[nvalid++] = i;
            }
            else {
                char field[48];
                snprintf (field, sizeof field, "items[%zu].external_billing_id",
                          i);
                rcd_api_fail (&err, 409, "conflict", field,
                              "repeats items[%lld] of this batch",
                              (long long)json_integer_value (first));
                json_object_set_new (answer, "error",
                                     rcd_api_error_json (&err));
                reply->rejected++;
            }
        }
        else {
            json_object_set_new (answer, "error", rcd_api_error_json (&err));
            reply->rejected++;
        }
        json_array_append_new (answers, answer);
    }

    /* store the valid ones, a chunk per statement (and transaction),
       rendered from one load for the whole batch */
    bool failed = nvalid > 0 && s_render_load (req, cycles, nvalid, &ctx) != 0;
    for (size_t start = 0; start < nvalid; start += S_CHUNK) {
        size_t n = nvalid - start < S_CHUNK ? nvalid - start : S_CHUNK;
        if (!failed && s_store (req, &settings, ctx, cycles + start,
                                index + start, n, results + start) != 0) {
            rcd_log_warn ("billing cycle chunk failed", "{s:s, s:I}", "error",
                          rcd_db_error (req->db), "items", (json_int_t)n);
            failed = !rcd_db_connected (req->db);
        }
    }
    bool db_down = !rcd_db_connected (req->db);
    for (size_t k = 0; k < nvalid; k++) {
        json_t *answer = json_array_get (answers, index[k]);
        s_result_t *r = &results[k];
        char field[48];
        snprintf (field, sizeof field, "items[%zu].external_billing_id",
                  index[k]);
        if (r->id) {
            json_t *a = s_answer (&cycles[k], r);
            json_object_update (answer, a);
            json_decref (a);
            reply->accepted += s_pending (r);
            continue;
        }
        if (r->invalid)
            err = r->err;
        else if (r->conflict)
            rcd_api_fail (&err, 409, "conflict", field,
                          "an active billing cycle with this "
                          "external_billing_id exists");
        else
            rcd_api_fail_unstored (&err, db_down);
        json_object_set_new (answer, "error", rcd_api_error_json (&err));
        reply->rejected++;
    }
    rcd_log_info ("cycle.batch", "{s:s?, s:I, s:I, s:I, s:I}", "trace_id",
                  req->trace_id, "tenant_id", (json_int_t)req->tenant_id,
                  "items", (json_int_t)count, "pending",
                  (json_int_t)reply->accepted, "rejected",
                  (json_int_t)reply->rejected);
    rcd_api_reply_json (reply, 207, json_pack ("{s:O}", "items", answers));

cleanup:
    if (results)
        for (size_t k = 0; k < json_array_size (answers); k++)
            json_decref (results[k].reminders);
    free (results);
    free (index);
    free (cycles);
    rcd_api_render_destroy (&ctx);
    json_decref (names);
    json_decref (seen);
    json_decref (answers);
    json_decref (body);
}

void
rcd_api_cycle_get (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant, req->arg};
    rcd_api_reply_document (req, reply, "cycle_get", 2, params,
                            "no billing cycle with this external_billing_id");
}

void
rcd_api_cycle_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant, req->arg};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "cycle_cancel", 2, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "cycle_cancel");
        goto cleanup;
    }
    const char *before = rcd_db_res_value (res, 0, 0);
    if (!before)
        rcd_api_reply_fail (reply, 404, "not_found", NULL,
                            "no billing cycle with this external_billing_id");
    else if (strcmp (before, "active") != 0)
        rcd_api_reply_fail (reply, 409, "conflict", NULL,
                            "the billing cycle is already %s", before);
    else {
        reply->cancelled = (uint32_t)rcd_db_res_int64 (res, 0, 1);
        rcd_api_cycle_get (req, reply);
    }
cleanup:
    rcd_db_res_destroy (&res);
}

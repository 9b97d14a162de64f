/*  rcd_api_campaigns.c - campaigns: a template sent to an audience of up
    to RCD_API_AUDIENCE_MAX contacts per request, paused, resumed,
    cancelled and watched (migrations/0010_campaigns.sql).

    Creating: the body was parsed as it arrived (rcd_campaign_parser.h):
    what reaches the handler is the top-level fields and the usable,
    distinct, normalised numbers with their vars. In one transaction:
      1. the campaign row is inserted, or, when the tenant already has
         a campaign of that name, found and held FOR NO KEY UPDATE (a
         re-post adds its audience to it). Uploads to one campaign are
         so serialised (two overlapping audiences inserted concurrently
         in different orders could deadlock on the unique index), and
         pause, resume and cancel (FOR UPDATE) wait until it commits, so
         its messages are stored 'paused' exactly when the campaign is.
         Neither the messages' hold trigger (FOR KEY SHARE) nor anything
         on the sending path waits for it;
      2. per chunk of S_CHUNK contacts, one render_load round trip (the
         template, the stored contacts' names and vars, fresh message
         ids) and the rendered messages COPYed into a temporary table;
      3. one statement moves them into messages, skipping opted-out
         contacts and, through the unique index messages_campaign,
         contacts the campaign already has (ON CONFLICT DO NOTHING),
         with an 'accepted' history row each, and adds the counts to
         the campaign row.
    Nothing is stored when any step fails: the body's errors (400, 413)
    come before the transaction, a template or vars error during it
    rolls everything back.

    Pause, resume and cancel are one transaction each: the campaign row
    locked FOR UPDATE first, then (a second statement, so it sees what
    a concurrent upload committed) the state and the messages moved:
    pause pending -> paused, resume paused -> pending, cancel pending and
    paused -> cancelled, each with a history row. Messages already
    claimed finish. A message that comes back to pending later (a retry)
    follows the campaign's state (trigger messages_campaign_hold).

    GET marks a campaign completed when no open message is left
    (rcd_campaign_complete), then answers its counts by status, rates and
    the time to finish at its tenant's instances' limits.
*/
#include "rcd_api.h"
#include "rcd_campaign_parser.h"
#include "rcd_clock.h"
#include "rcd_log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Contacts rendered per render_load round trip and per COPY. */
#define S_CHUNK 5000
/*  Limits of the top-level fields. */
#define S_NAME_CHARS 200
#define S_KEY_CHARS  100

/*  SQL reads better laid out as SQL. */
/* clang-format off */

/*  The state a campaign is in: a stored 'scheduled' whose send_at has
    passed is running (nothing has to wake up to flip it). */
#define S_STATE(c)                                                           \
    "CASE WHEN " c ".state = 'scheduled' AND " c ".send_at <= now()"         \
    " THEN 'running' ELSE " c ".state END"

/*  When it started: stored when it began running at once, else the
    send_at it waited for, once passed. */
#define S_STARTED(c)                                                         \
    "COALESCE(" c ".started_at, CASE WHEN " c ".state <> 'draft'"            \
    " AND " c ".send_at <= now() THEN " c ".send_at END)"

#define S_PRIORITY_WORD(col)                                                 \
    "CASE " col " WHEN 0 THEN 'high' WHEN 2 THEN 'low' ELSE 'normal' END"

/*  The messages still stored, counted by status in one pass over the
    campaign's part of messages_campaign. */
#define S_COUNT(status) \
    "count(*) FILTER (WHERE status = '" status "')"

int
rcd_api_campaigns_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* $1 tenant, $2 name, $3 template, $4 priority (NULL: low), $5
       send_at (NULL: now). A new campaign is a draft until messages are
       stored. Answers id, state, template, priority, send_at (Unix
       ms). */
    rc |= rcd_db_prepare (db, "camp_insert",
        "INSERT INTO campaigns (tenant_id, name, template, priority, send_at,"
        "                       state)"
        "VALUES ($1::bigint, $2::text, $3::text,"
        "        COALESCE($4::smallint, 2),"
        "        COALESCE($5::timestamptz, now()), 'draft')"
        "ON CONFLICT (tenant_id, name) DO NOTHING "
        "RETURNING id, state, template, priority,"
        "          (extract(epoch FROM send_at) * 1000)::bigint");
    rc |= rcd_db_prepare (db, "camp_find",
        "SELECT id, " S_STATE ("c") ", template, priority,"
        "       (extract(epoch FROM send_at) * 1000)::bigint"
        "  FROM campaigns c"
        " WHERE tenant_id = $1::bigint AND name = $2::text"
        "   FOR NO KEY UPDATE");
    rc |= rcd_db_prepare (db, "camp_lock",
        "SELECT " S_STATE ("c") " FROM campaigns c"
        " WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "   FOR UPDATE");
    rc |= rcd_db_prepare (db, "camp_pause",
        "WITH k AS ("
        "  UPDATE campaigns c SET state = 'paused', paused_at = now(),"
        "                         started_at = " S_STARTED ("c")
        "   WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "  RETURNING id"
        "), m AS ("
        "  UPDATE messages SET status = 'paused', updated_at = now()"
        "   WHERE tenant_id = $1::bigint AND campaign_id = $2::bigint"
        "     AND status = 'pending'"
        "  RETURNING id"
        "), h AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, 'paused', 'campaign paused' FROM m"
        ")"
        "SELECT count(*) FROM m");
    rc |= rcd_db_prepare (db, "camp_resume",
        "WITH k AS ("
        "  UPDATE campaigns c"
        "     SET state = CASE WHEN send_at > now() THEN 'scheduled'"
        "                      ELSE 'running' END"
        "   WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "  RETURNING id"
        "), m AS ("
        "  UPDATE messages SET status = 'pending', updated_at = now()"
        "   WHERE tenant_id = $1::bigint AND campaign_id = $2::bigint"
        "     AND status = 'paused'"
        "  RETURNING id"
        "), h AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, 'pending', 'campaign resumed' FROM m"
        ")"
        "SELECT count(*) FROM m");
    rc |= rcd_db_prepare (db, "camp_cancel",
        "WITH k AS ("
        "  UPDATE campaigns c SET state = 'cancelled', cancelled_at = now(),"
        "                         started_at = " S_STARTED ("c")
        "   WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "  RETURNING id"
        "), m AS ("
        "  UPDATE messages SET status = 'cancelled', updated_at = now(),"
        "                      last_error = 'campaign cancelled'"
        "   WHERE tenant_id = $1::bigint AND campaign_id = $2::bigint"
        "     AND status IN ('pending', 'paused')"
        "  RETURNING id"
        "), h AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, 'cancelled', 'campaign cancelled' FROM m"
        ")"
        "SELECT count(*) FROM m");
    rc |= rcd_db_prepare (db, "camp_complete",
        "SELECT rcd_campaign_complete(id) FROM campaigns"
        " WHERE tenant_id = $1::bigint AND id = $2::bigint"
        "   AND state IN ('scheduled', 'running')");
    /* The document of GET. The limit is what the tenant's instances may
       send together (each its rate_per_second, or less when an hourly or
       daily cap allows less over its period), counting those enabled
       and not waiting for a person (re-pairing, credentials); the time
       to finish is the campaign's remaining messages at that limit,
       from its send_at when that is ahead. Other traffic of the tenant
       shares the limit, so it is the soonest the campaign can finish. */
    rc |= rcd_db_prepare (db, "camp_get",
        "WITH c AS ("
        "  SELECT c.*, " S_STATE ("c") " AS eff,"
        "         " S_STARTED ("c") " AS started"
        "    FROM campaigns c"
        "   WHERE c.tenant_id = $1::bigint AND c.id = $2::bigint"
        "), m AS ("
        "  SELECT " S_COUNT ("pending") " AS n_pending,"
        "         " S_COUNT ("paused") " AS n_paused,"
        "         " S_COUNT ("sending") " AS n_sending,"
        "         " S_COUNT ("unknown") " AS n_unknown,"
        "         " S_COUNT ("sent") " AS n_sent,"
        "         " S_COUNT ("delivered") " AS n_delivered,"
        "         " S_COUNT ("read") " AS n_read,"
        "         " S_COUNT ("failed") " AS n_failed,"
        "         " S_COUNT ("cancelled") " AS n_cancelled,"
        "         " S_COUNT ("expired") " AS n_expired,"
        "         " S_COUNT ("blocked") " AS n_blocked,"
        "         min(sent_at) AS first_sent, max(sent_at) AS last_sent,"
        "         count(*) FILTER (WHERE sent_at > now() - interval '1 minute')"
        "           AS last_minute"
        "    FROM messages"
        "   WHERE tenant_id = $1::bigint AND campaign_id = $2::bigint"
        "), lim AS ("
        "  SELECT sum(least(rate_per_second,"
        "                   COALESCE(hourly_cap / 3600.0::float8, 'Infinity'),"
        "                   COALESCE(daily_cap / 86400.0::float8, 'Infinity')))"
        "           AS rate"
        "    FROM instances"
        "   WHERE tenant_id = $1::bigint AND enabled"
        "     AND health NOT IN ('unauthorized', 'not_found', 'logged_out')"
        "), e AS ("
        "  SELECT c.*, m.*, lim.rate,"
        "         m.n_pending + m.n_paused + m.n_sending + m.n_unknown"
        "           AS remaining,"
        "         greatest(m.n_sent + m.n_delivered + m.n_read,"
        "                  COALESCE(c.sent_messages, 0)) AS sent,"
        "         least(m.first_sent, c.first_sent_at) AS first_at,"
        "         greatest(m.last_sent, c.last_sent_at) AS last_at"
        "    FROM c, m, lim"
        "), f AS ("
        "  SELECT e.*, CASE WHEN e.eff IN ('scheduled', 'running')"
        "                    AND e.rate > 0"
        "              THEN ceil(e.remaining / e.rate + greatest(0,"
        "                     extract(epoch FROM e.send_at - now())))::bigint"
        "              END AS eta"
        "    FROM e"
        ")"
        "SELECT json_build_object("
        "  'id', id, 'name', name, 'template', template, 'state', eff,"
        "  'priority', " S_PRIORITY_WORD ("priority") ","
        "  'send_at', " RCD_API_TS ("send_at") ","
        "  'created_at', " RCD_API_TS ("created_at") ","
        "  'started_at', " RCD_API_TS ("started") ","
        "  'paused_at', " RCD_API_TS ("paused_at") ","
        "  'completed_at', " RCD_API_TS ("completed_at") ","
        "  'cancelled_at', " RCD_API_TS ("cancelled_at") ","
        "  'audience', json_build_object('messages', messages,"
        "     'duplicates', duplicates, 'invalid', invalid,"
        "     'opted_out', opted_out),"
        "  'counts', json_build_object('pending', n_pending,"
        "     'paused', n_paused, 'sending', n_sending, 'unknown', n_unknown,"
        "     'sent', n_sent, 'delivered', n_delivered, 'read', n_read,"
        "     'failed', n_failed, 'cancelled', n_cancelled,"
        "     'expired', n_expired, 'blocked', n_blocked),"
        "  'remaining', remaining, 'sent', sent,"
        "  'first_sent_at', " RCD_API_TS ("first_at") ","
        "  'last_sent_at', " RCD_API_TS ("last_at") ","
        "  'rate', json_build_object("
        "     'last_minute', round(last_minute / 60.0, 2),"
        "     'average', CASE WHEN last_at > first_at THEN round((sent /"
        "        extract(epoch FROM last_at - first_at))::numeric, 2) END,"
        "     'limit', round(COALESCE(rate, 0)::numeric, 2)),"
        "  'eta_seconds', eta,"
        "  'estimated_finish_at', "
               RCD_API_TS ("now() + eta * interval '1 second'")
        ")::text FROM f");
    return rc ? -1 : 0;
}

/*  The staging table of one upload, gone at commit or rollback. */
#define S_STAGE_SQL                                                          \
    "CREATE TEMP TABLE campaign_audience (id bigint NOT NULL,"               \
    " phone text NOT NULL, body text NOT NULL) ON COMMIT DROP"
#define S_COPY_SQL "COPY campaign_audience (id, phone, body) FROM STDIN"

/*  $1 tenant, $2 campaign, $3 trace id, $4 numbers repeated within the
    request, $5 unusable numbers. Moves the staged messages of contacts
    who have not opted out into messages (stored 'paused' when the
    campaign is: its row is locked by this transaction, so its state
    cannot change meanwhile), a contact the campaign already
    has skipped by messages_campaign; adds the counts to the campaign
    and moves a draft (or a completed campaign that got new messages)
    to scheduled or running. Answers stored, opted out, already there,
    the state, send_at and the priority.
    Plain text, not prepared: it names the session's temporary table. */
#define S_STORE_SQL                                                          \
    "WITH c AS ("                                                            \
    "  SELECT id, priority, send_at, state FROM campaigns"                   \
    "   WHERE tenant_id = $1::bigint AND id = $2::bigint"                    \
    "), s AS ("                                                              \
    "  SELECT a.id, a.phone, a.body,"                                        \
    "         COALESCE((SELECT x.opted_out FROM contacts x"                  \
    "                    WHERE x.tenant_id = $1::bigint"                     \
    "                      AND x.phone = a.phone), false) AS opted_out"      \
    "    FROM campaign_audience a"                                           \
    "), ins AS ("                                                            \
    "  INSERT INTO messages (id, tenant_id, campaign_id, to_phone, body,"    \
    "                        priority, send_at, status, trace_id)"           \
    "  SELECT s.id, $1::bigint, c.id, s.phone, s.body, c.priority,"          \
    "         c.send_at, CASE WHEN c.state = 'paused' THEN 'paused'"         \
    "                         ELSE 'pending' END, $3::text"                  \
    "    FROM s CROSS JOIN c WHERE NOT s.opted_out"            \
    "  ON CONFLICT (campaign_id, to_phone) WHERE campaign_id IS NOT NULL"    \
    "     DO NOTHING"                                                        \
    "  RETURNING id, status"                                                 \
    "), hist AS ("                                                           \
    "  INSERT INTO message_history (tenant_id, message_id, status, detail)"  \
    "  SELECT $1::bigint, id, status, CASE status WHEN 'paused'"             \
    "         THEN 'accepted; campaign paused' ELSE 'accepted' END FROM ins" \
    "), n AS ("                                                              \
    "  SELECT (SELECT count(*) FROM ins) AS stored,"                         \
    "         (SELECT count(*) FROM s WHERE opted_out) AS opted,"            \
    "         (SELECT count(*) FROM s) AS staged"                            \
    ")"                                                                      \
    "UPDATE campaigns k"                                                     \
    "   SET messages = k.messages + n.stored,"                               \
    "       duplicates = k.duplicates + (n.staged - n.opted - n.stored)"     \
    "                    + $4::int,"                                         \
    "       invalid = k.invalid + $5::int,"                                  \
    "       opted_out = k.opted_out + n.opted,"                              \
    "       state = CASE WHEN n.stored > 0"                                  \
    "                     AND k.state IN ('draft', 'completed')"             \
    "                    THEN CASE WHEN k.send_at > now() THEN 'scheduled'"  \
    "                              ELSE 'running' END"                       \
    "                    ELSE k.state END,"                                  \
    "       started_at = CASE WHEN n.stored > 0 AND k.state = 'draft'"       \
    "                         AND k.send_at <= now() THEN now()"             \
    "                         ELSE k.started_at END,"                        \
    "       completed_at = CASE WHEN n.stored > 0"                           \
    "                           AND k.state = 'completed' THEN NULL"         \
    "                           ELSE k.completed_at END"                     \
    "  FROM n WHERE k.tenant_id = $1::bigint AND k.id = $2::bigint"          \
    " RETURNING n.stored, n.opted, n.staged - n.opted - n.stored,"           \
    "           " S_STATE ("k") ", " RCD_API_TS ("k.send_at") ","            \
    "           " S_PRIORITY_WORD ("k.priority")

/* clang-format on */

/*  The checked top-level fields of a body. */
typedef struct {
    const char *name;
    const char *template_key;
    const char *send_at; /* NULL: now (or, on a re-post, as stored) */
    int64_t send_at_ms;
    int priority; /* 0 high, 1 normal, 2 low; -1: not given */
} s_fields_t;

/*  The campaign the upload goes to. */
typedef struct {
    int64_t id;
    bool created; /* by this request */
} s_campaign_t;

/*  Checks what the parser collected. Returns 0 or -2 with err. */
static int
s_check_fields (rcd_campaign_parser_t *parser, s_fields_t *f,
                rcd_api_error_t *err)
{
    memset (f, 0, sizeof *f);
    f->priority = -1;
    f->name = rcd_campaign_parser_name (parser);
    f->template_key = rcd_campaign_parser_template (parser);
    if (!f->name || !f->template_key) /* finish has refused that */
        return rcd_api_fail (err, 400, "missing_field",
                             f->name ? "template" : "name", "is required");
    size_t chars = rcd_api_utf8_length (f->name);
    if (chars < 1 || chars > S_NAME_CHARS || rcd_api_has_control (f->name))
        return rcd_api_fail (err, 400, "invalid_field", "name",
                             "must be 1 to %d characters without control "
                             "characters",
                             S_NAME_CHARS);
    size_t len = strlen (f->template_key);
    if (len < 1 || len > S_KEY_CHARS ||
        strspn (f->template_key,
                "abcdefghijklmnopqrstuvwxyz"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != len)
        return rcd_api_fail (err, 400, "invalid_field", "template",
                             "must be a template key: 1 to %d letters, "
                             "digits, '_', '-' or '.'",
                             S_KEY_CHARS);
    f->send_at = rcd_campaign_parser_send_at (parser);
    if (f->send_at && rcd_api_parse_time (f->send_at, &f->send_at_ms) != 0)
        return rcd_api_fail (err, 400, "invalid_field", "send_at",
                             "must be an RFC 3339 timestamp with offset, "
                             "e.g. 2026-11-22T09:00:00-03:00");
    const char *priority = rcd_campaign_parser_priority (parser);
    if (priority) {
        f->priority = strcmp (priority, "high") == 0     ? 0
                      : strcmp (priority, "normal") == 0 ? 1
                      : strcmp (priority, "low") == 0    ? 2
                                                         : -2;
        if (f->priority == -2)
            return rcd_api_fail (err, 400, "invalid_field", "priority",
                                 "must be \"high\", \"normal\" or \"low\"");
    }
    return 0;
}

/*  Inserts the campaign, or finds and holds the tenant's campaign of that
    name, refusing a re-post that contradicts it. Returns 0 with *c, -2
    with err (409), or -1 on a database failure. */
static int
s_open_campaign (rcd_api_req_t *req, const s_fields_t *f, s_campaign_t *c,
                 rcd_api_error_t *err)
{
    assert (f->name && f->template_key); /* checked by s_check_fields */
    char tenant[24], priority[8];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (priority, sizeof priority, "%d", f->priority);
    const char *params[] = {tenant, f->name, f->template_key,
                            f->priority >= 0 ? priority : NULL, f->send_at};
    /* found, else inserted, else (a concurrent request inserted it
       meanwhile: the insert waited for it to commit) found */
    rcd_db_res_t *res = NULL;
    c->created = false;
    if (rcd_db_run (req->db, "camp_find", 2, params, &res) != 0)
        return -1;
    if (rcd_db_res_rows (res) == 0) {
        rcd_db_res_destroy (&res);
        if (rcd_db_run (req->db, "camp_insert", 5, params, &res) != 0)
            return -1;
        c->created = rcd_db_res_rows (res) == 1;
    }
    if (rcd_db_res_rows (res) == 0) {
        rcd_db_res_destroy (&res);
        if (rcd_db_run (req->db, "camp_find", 2, params, &res) != 0)
            return -1;
    }
    if (rcd_db_res_rows (res) != 1) {
        rcd_db_res_destroy (&res);
        return -1;
    }
    c->id = rcd_db_res_int64 (res, 0, 0);
    const char *state = rcd_db_res_value (res, 0, 1); /* NOT NULL columns */
    const char *stored_key = rcd_db_res_value (res, 0, 2);
    if (!state || !stored_key) {
        rcd_db_res_destroy (&res);
        return -1;
    }
    int64_t stored_priority = rcd_db_res_int64 (res, 0, 3);
    int64_t stored_send_ms = rcd_db_res_int64 (res, 0, 4);
    int rc = 0;
    if (c->created) { /* nothing to compare */
    }
    else if (strcmp (state, "cancelled") == 0)
        rc = rcd_api_fail (err, 409, "conflict", "name",
                           "campaign %lld of this name is cancelled; "
                           "choose another name",
                           (long long)c->id);
    else if (strcmp (stored_key, f->template_key) != 0)
        rc = rcd_api_fail (err, 409, "conflict", "template",
                           "campaign %lld of this name uses template "
                           "\"%.100s\"",
                           (long long)c->id, stored_key);
    else if (f->priority >= 0 && f->priority != stored_priority)
        rc = rcd_api_fail (err, 409, "conflict", "priority",
                           "campaign %lld of this name has another "
                           "priority",
                           (long long)c->id);
    /* send_at is stored to the microsecond, given to the millisecond */
    else if (f->send_at && (f->send_at_ms - stored_send_ms > 1 ||
                            stored_send_ms - f->send_at_ms > 1))
        rc = rcd_api_fail (err, 409, "conflict", "send_at",
                           "campaign %lld of this name has another send_at",
                           (long long)c->id);
    rcd_db_res_destroy (&res);
    return rc;
}

/*  Renders the kept contacts, S_CHUNK per round trip, and COPYs them
    into the staging table. Returns 0, -2 with err (no template, a
    placeholder without a value), or -1 on a database failure. */
static int
s_stage (rcd_api_req_t *req, rcd_campaign_parser_t *parser,
         const char *template_key, rcd_api_error_t *err)
{
    size_t n;
    const rcd_campaign_contact_t *contacts =
        rcd_campaign_parser_contacts (parser, &n);
    const char **keys = calloc (S_CHUNK, sizeof *keys);
    const char **phones = calloc (S_CHUNK, sizeof *phones);
    rcd_api_render_t *ctx = NULL;
    int rc = -1;
    if (!keys || !phones)
        goto cleanup;
    keys[0] = template_key; /* the others stay NULL: one key to load */
    for (size_t start = 0; start == 0 || start < n; start += S_CHUNK) {
        size_t count = n - start < S_CHUNK ? n - start : S_CHUNK;
        for (size_t k = 0; k < S_CHUNK; k++)
            phones[k] = k < count ? contacts[start + k].phone : NULL;
        if (rcd_api_render_load (req->db, req->tenant_id, keys, phones,
                                 count ? count : 1, count, &ctx) != 0)
            goto cleanup;
        if (start == 0 && !rcd_api_render_has_template (ctx, template_key)) {
            rc = rcd_api_fail (err, 400, "invalid_field", "template",
                               "no template \"%.100s\" and no generic "
                               "template to fall back to (PUT "
                               "/v1/templates/{key}, PATCH /v1/tenant "
                               "generic_template)",
                               template_key);
            goto cleanup;
        }
        if (count == 0)
            break;
        if (rcd_db_copy_begin (req->db, S_COPY_SQL) != 0)
            goto cleanup;
        for (size_t k = start; k < start + count; k++) {
            const rcd_campaign_contact_t *c = &contacts[k];
            json_t *vars = rcd_campaign_parser_vars (parser, c);
            json_t *contact = rcd_api_render_contact (ctx, c->phone);
            json_t *builtins =
                json_pack ("{s:O?}", "name", json_object_get (contact, "name"));
            json_t *scopes[] = {vars, json_object_get (contact, "vars"),
                                builtins};
            char prefix[32], id[24];
            snprintf (prefix, sizeof prefix, "audience[%u].", c->index);
            int64_t message_id = rcd_api_render_next_id (ctx);
            snprintf (id, sizeof id, "%lld", (long long)message_id);
            char *body = NULL;
            int r = (c->vars_len && !vars) || !builtins || message_id == 0
                        ? rcd_api_fail (err, 500, "internal_error", NULL,
                                        "out of memory")
                        : rcd_api_render_text (ctx, template_key, message_id,
                                               scopes, 3, prefix, &body, err);
            json_decref (builtins);
            json_decref (vars);
            const char *row[] = {id, c->phone, body};
            if (r == 0 && rcd_db_copy_row (req->db, 3, row) != 0)
                r = -1;
            free (body);
            if (r != 0) {
                rcd_db_copy_abort (req->db, "rendering failed");
                rc = r == -2 && err->status == 400 ? -2 : -1;
                goto cleanup;
            }
        }
        if (rcd_db_copy_end (req->db, NULL) != 0)
            goto cleanup;
        rcd_api_render_destroy (&ctx);
    }
    rc = 0;
cleanup:
    rcd_api_render_destroy (&ctx);
    free (keys);
    free (phones);
    return rc;
}

/*  The body of the 201/200: the campaign and what this upload did. */
static json_t *
s_answer (rcd_campaign_parser_t *parser, const s_campaign_t *c,
          const s_fields_t *f, rcd_db_res_t *res)
{
    int64_t duplicates = rcd_db_res_int64 (res, 0, 2) +
                         (int64_t)rcd_campaign_parser_duplicates (parser);
    return json_pack (
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "id",
        (json_int_t)c->id, "name", f->name, "template", f->template_key,
        "state", rcd_db_res_value (res, 0, 3), "send_at",
        rcd_db_res_value (res, 0, 4), "priority", rcd_db_res_value (res, 0, 5),
        "received", (json_int_t)rcd_campaign_parser_received (parser),
        "accepted", (json_int_t)rcd_db_res_int64 (res, 0, 0), "duplicates",
        (json_int_t)duplicates, "invalid",
        (json_int_t)rcd_campaign_parser_invalid (parser), "opted_out",
        (json_int_t)rcd_db_res_int64 (res, 0, 1), "invalid_phones",
        rcd_campaign_parser_invalid_examples (parser));
}

void
rcd_api_campaign_create (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_campaign_parser_t *parser = req->stream;
    rcd_api_error_t err;
    s_fields_t f;
    s_campaign_t c = {0, false};
    rcd_db_res_t *res = NULL;
    const char *during = "campaign";
    if (!parser) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "the body was not streamed");
        return;
    }
    int rc = rcd_campaign_parser_finish (parser, &err);
    if (rc == 0)
        rc = s_check_fields (parser, &f, &err);
    if (rc == -1) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "out of memory");
        return;
    }
    if (rc != 0) {
        rcd_api_reply_error (reply, &err);
        return;
    }

    if (rcd_db_begin (req->db) != 0)
        goto db_error;
    during = "camp_insert";
    rc = s_open_campaign (req, &f, &c, &err);
    if (rc == -2)
        goto refused;
    if (rc != 0)
        goto db_error;
    during = "campaign staging";
    if (rcd_db_exec (req->db, S_STAGE_SQL, 0, NULL, NULL) != 0)
        goto db_error;
    rc = s_stage (req, parser, f.template_key, &err);
    if (rc == -2)
        goto refused;
    if (rc != 0)
        goto db_error;
    size_t repeated = rcd_campaign_parser_duplicates (parser);
    size_t invalid = rcd_campaign_parser_invalid (parser);
    char tenant[24], campaign[24], dups[24], bad[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (campaign, sizeof campaign, "%lld", (long long)c.id);
    snprintf (dups, sizeof dups, "%zu", repeated);
    snprintf (bad, sizeof bad, "%zu", invalid);
    const char *params[] = {tenant, campaign, req->trace_id, dups, bad};
    during = "campaign store";
    if (rcd_db_exec (req->db, S_STORE_SQL, 5, params, &res) != 0 ||
        rcd_db_res_rows (res) != 1 || rcd_db_commit (req->db) != 0)
        goto db_error;

    reply->accepted = (uint32_t)rcd_db_res_int64 (res, 0, 0);
    reply->campaigns_created = c.created;
    int64_t duplicates = rcd_db_res_int64 (res, 0, 2) + (int64_t)repeated;
    rcd_log_info (c.created ? "campaign.created" : "campaign.audience",
                  "{s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "trace_id",
                  req->trace_id, "tenant_id", (json_int_t)req->tenant_id,
                  "campaign_id", (json_int_t)c.id, "received",
                  (json_int_t)rcd_campaign_parser_received (parser), "accepted",
                  (json_int_t)reply->accepted, "duplicates",
                  (json_int_t)duplicates, "invalid", (json_int_t)invalid,
                  "opted_out", (json_int_t)rcd_db_res_int64 (res, 0, 1));
    rcd_api_reply_json (reply, c.created ? 201 : 200,
                        s_answer (parser, &c, &f, res));
    rcd_db_res_destroy (&res);
    return;

refused:
    rcd_db_rollback (req->db);
    rcd_api_reply_error (reply, &err);
    return;
db_error:
    rcd_api_reply_db_error (reply, req->db, during);
    rcd_db_rollback (req->db);
    rcd_db_res_destroy (&res);
}

void
rcd_api_campaign_get (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24], id[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (id, sizeof id, "%lld", (long long)req->id);
    const char *params[] = {tenant, id};
    rcd_db_res_t *res = NULL;
    /* completed when nothing is left to send: checked when read */
    if (rcd_db_run (req->db, "camp_complete", 2, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "camp_complete");
        return;
    }
    if (rcd_db_res_rows (res) == 1 &&
        strcmp (rcd_db_res_value (res, 0, 0), "t") == 0) {
        reply->campaigns_completed++;
        rcd_log_info ("campaign.completed", "{s:s?, s:I, s:I}", "trace_id",
                      req->trace_id, "tenant_id", (json_int_t)req->tenant_id,
                      "campaign_id", (json_int_t)req->id);
    }
    rcd_db_res_destroy (&res);
    rcd_api_reply_document (req, reply, "camp_get", 2, params,
                            "no campaign with this id");
}

/*  A state change: the states it may start from, its statement, its
    name in logs and answers. */
typedef struct {
    const char *stmt;
    const char *const *from; /* NULL-ended */
    const char *verb;        /* "pause" */
    const char *event;       /* "campaign.paused" */
} s_change_t;

/*  Applies change to campaign req->id in one transaction and answers
    the campaign. Returns the messages it moved, or -1 when it answered
    an error. */
static int64_t
s_change (rcd_api_req_t *req, rcd_api_reply_t *reply, const s_change_t *change)
{
    char tenant[24], id[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (id, sizeof id, "%lld", (long long)req->id);
    const char *params[] = {tenant, id};
    rcd_db_res_t *res = NULL;
    int64_t moved = -1;
    const char *during = "camp_lock";
    if (rcd_db_begin (req->db) != 0 ||
        rcd_db_run (req->db, "camp_lock", 2, params, &res) != 0)
        goto db_error;
    if (rcd_db_res_rows (res) != 1) {
        rcd_db_rollback (req->db);
        rcd_api_reply_fail (reply, 404, "not_found", NULL,
                            "no campaign with this id");
        goto cleanup;
    }
    const char *state = rcd_db_res_value (res, 0, 0);
    bool allowed = false;
    for (const char *const *s = change->from; *s; s++)
        allowed |= strcmp (*s, state) == 0;
    if (!allowed) {
        rcd_db_rollback (req->db);
        rcd_api_reply_fail (reply, 409, "conflict", NULL,
                            "the campaign is %s; it cannot %s", state,
                            change->verb);
        goto cleanup;
    }
    rcd_db_res_destroy (&res);
    during = change->stmt;
    if (rcd_db_run (req->db, change->stmt, 2, params, &res) != 0 ||
        rcd_db_commit (req->db) != 0)
        goto db_error;
    moved = rcd_db_res_int64 (res, 0, 0);
    rcd_log_info (change->event, "{s:s?, s:I, s:I, s:I}", "trace_id",
                  req->trace_id, "tenant_id", (json_int_t)req->tenant_id,
                  "campaign_id", (json_int_t)req->id, "messages",
                  (json_int_t)moved);
    rcd_api_campaign_get (req, reply);
    goto cleanup;
db_error:
    rcd_api_reply_db_error (reply, req->db, during);
    rcd_db_rollback (req->db);
cleanup:
    rcd_db_res_destroy (&res);
    return moved;
}

void
rcd_api_campaign_pause (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    static const char *const from[] = {"scheduled", "running", NULL};
    static const s_change_t change = {"camp_pause", from, "pause",
                                      "campaign.paused"};
    int64_t moved = s_change (req, reply, &change);
    if (moved >= 0) {
        reply->campaigns_paused = 1;
        reply->paused = (uint32_t)moved;
    }
}

void
rcd_api_campaign_resume (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    static const char *const from[] = {"paused", NULL};
    static const s_change_t change = {"camp_resume", from, "resume",
                                      "campaign.resumed"};
    int64_t moved = s_change (req, reply, &change);
    if (moved >= 0) {
        reply->campaigns_resumed = 1;
        reply->resumed = (uint32_t)moved;
    }
}

void
rcd_api_campaign_cancel (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    static const char *const from[] = {"draft", "scheduled", "running",
                                       "paused", NULL};
    static const s_change_t change = {"camp_cancel", from, "be cancelled",
                                      "campaign.cancelled"};
    int64_t moved = s_change (req, reply, &change);
    if (moved >= 0) {
        reply->campaigns_cancelled = 1;
        reply->cancelled = (uint32_t)moved;
    }
}

/*  --- the streamed body --- */

static void *
s_stream_new (const char *default_country)
{
    return rcd_campaign_parser_new (default_country, RCD_API_AUDIENCE_MAX);
}

static int
s_stream_feed (void *stream, const char *data, size_t size)
{
    return rcd_campaign_parser_feed (stream, data, size);
}

static void
s_stream_destroy (void **stream_p)
{
    rcd_campaign_parser_t *parser = *stream_p;
    rcd_campaign_parser_destroy (&parser);
    *stream_p = NULL;
}

const rcd_api_stream_ops_t rcd_api_campaign_stream = {
    s_stream_new, s_stream_feed, s_stream_destroy};

/*  rcd_api_dead_letters.c - a tenant's dead letters: listing them and
    replaying them.

    A dead letter is the row the sender writes when a message ends
    'failed' (permanent failure or attempts exhausted). Listing walks them
    oldest first with keyset pagination on the id, like GET /v1/messages:
    a client that keeps the last next_cursor resumes where it stopped,
    and rows added meanwhile land at the end instead of shifting pages.

    A replay requeues, in one statement (one transaction), the messages
    of the named dead letters not replayed yet whose message is still
    'failed' and not a reminder of a cancelled billing cycle nor a
    message of a cancelled campaign (one of a paused campaign becomes
    'paused', by the trigger messages_campaign_hold): pending, due
    now, lease cleared, last_error kept, and max_attempts = attempts +
    replay_attempts (attempts is the senders' fencing token and only
    grows, so the replay gives that many new tries on top of it instead
    of resetting it). Each requeued message gets the history row
    'pending' "replayed from dead letter <id>" and its dead letter
    replayed_at = now(). Concurrent replays of the same dead letter are
    serialised by its row lock: one requeues, the other counts it
    skipped.
*/
#include "rcd_api.h"
#include "rcd_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Most dead letter ids one replay may name. */
#define S_REPLAY_IDS_MAX 1000

/*  SQL reads better laid out as SQL. */
/* clang-format off */

/*  A dead letter as listed (d: dead_letters, m: its message, NULL when
    retention removed it). */
#define S_DEAD_LETTER_JSON                                                   \
    "json_build_object("                                                     \
    " 'id', d.id, 'message_id', d.message_id, 'reason', d.reason,"           \
    " 'attempts', d.attempts, 'gateway_answer', d.gateway_answer,"           \
    " 'created_at', " RCD_API_TS ("d.created_at") ","                        \
    " 'replayed_at', " RCD_API_TS ("d.replayed_at") ","                      \
    " 'message', CASE WHEN m.id IS NOT NULL THEN json_build_object("         \
    "   'status', m.status, 'to', m.to_phone, 'attempts', m.attempts) END)"

int
rcd_api_dead_letters_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* $1 tenant, $2 since (Unix ms or NULL), $3 the cursor (last id
       seen, 0 for the start), $4 the page size. Keyset pagination on
       dead_letters_tenant_id: one row beyond the page says whether a
       next page exists. */
    rc |= rcd_db_prepare (db, "dl_list",
        "WITH page AS ("
        "  SELECT d.*, row_number() OVER (ORDER BY d.id) AS rn"
        "    FROM (SELECT * FROM dead_letters"
        "           WHERE tenant_id = $1::bigint"
        "             AND ($2::bigint IS NULL"
        "                  OR created_at >= to_timestamp($2::bigint / 1000.0))"
        "             AND id > $3::bigint"
        "           ORDER BY id LIMIT $4::int + 1) d"
        ")"
        "SELECT json_build_object("
        "         'items', COALESCE(json_agg(" S_DEAD_LETTER_JSON
        "                                    ORDER BY d.id)"
        "                    FILTER (WHERE d.rn <= $4::int), '[]'::json),"
        "         'next_cursor', CASE WHEN count(*) > $4::int THEN"
        "           (max(d.id) FILTER (WHERE d.rn <= $4::int))::text END"
        "       )::text"
        "  FROM page d"
        "  LEFT JOIN messages m"
        "         ON m.tenant_id = d.tenant_id AND m.id = d.message_id");
    /* $1 tenant, $2 dead letter ids (NULL: by time), $3 since (Unix ms;
       with $2 NULL), $4 new attempts a replay gives. want: the dead
       letters named; todo: those not replayed yet, locked so that a
       concurrent replay of the same one waits and then finds it
       replayed; req: their messages still failed (one update per
       message, whose newest dead letter the history names). Answers the
       dead letters replayed, the ones named, and the messages
       requeued. */
    rc |= rcd_db_prepare (db, "dl_replay",
        "WITH want AS ("
        "  SELECT id FROM dead_letters"
        "   WHERE tenant_id = $1::bigint"
        "     AND CASE WHEN $2::bigint[] IS NOT NULL"
        "              THEN id = ANY ($2::bigint[])"
        "              ELSE created_at >= to_timestamp($3::bigint / 1000.0)"
        "         END"
        "), todo AS ("
        "  SELECT d.id, d.message_id FROM dead_letters d"
        "   WHERE d.tenant_id = $1::bigint AND d.replayed_at IS NULL"
        "     AND d.id IN (SELECT id FROM want)"
        "     FOR UPDATE"
        "), req AS ("
        "  UPDATE messages m"
        "     SET status = 'pending', send_at = now(), lease_until = NULL,"
        "         max_attempts = m.attempts + $4::int, updated_at = now()"
        "    FROM (SELECT message_id, max(id) AS dl_id FROM todo"
        "           GROUP BY message_id) t"
        "   WHERE m.tenant_id = $1::bigint AND m.id = t.message_id"
        "     AND m.status = 'failed'"
        "     AND NOT EXISTS (SELECT 1 FROM billing_cycles c"
        "                      WHERE c.tenant_id = $1::bigint"
        "                        AND c.id = m.billing_cycle_id"
        "                        AND c.status = 'cancelled')"
        "     AND NOT EXISTS (SELECT 1 FROM campaigns k"
        "                      WHERE k.tenant_id = $1::bigint"
        "                        AND k.id = m.campaign_id"
        "                        AND k.state = 'cancelled')"
        "  RETURNING m.id, t.dl_id"
        "), hist AS ("
        "  INSERT INTO message_history (tenant_id, message_id, status, detail)"
        "  SELECT $1::bigint, id, 'pending', 'replayed from dead letter '"
        "         || dl_id FROM req"
        "), mark AS ("
        "  UPDATE dead_letters d SET replayed_at = now()"
        "    FROM todo t"
        "   WHERE d.id = t.id AND t.message_id IN (SELECT id FROM req)"
        "  RETURNING d.id"
        ")"
        "SELECT (SELECT count(*) FROM mark), (SELECT count(*) FROM want),"
        "       (SELECT count(*) FROM req)");
    return rc ? -1 : 0;
}

/* clang-format on */

void
rcd_api_dead_letter_list (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_page_t page;
    rcd_api_page_init (&page);
    const char *key;
    json_t *value;
    json_object_foreach (req->query, key, value)
    {
        int rc =
            rcd_api_page_param (&page, key, json_string_value (value), reply);
        if (rc < 0)
            return;
        if (rc == 0) {
            rcd_api_reply_fail (reply, 400, "invalid_field", key,
                                "unknown query parameter (since, limit, "
                                "cursor)");
            return;
        }
    }
    char tenant[24], since[24], after[24], lim[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (since, sizeof since, "%lld", (long long)page.since_ms);
    snprintf (after, sizeof after, "%lld", (long long)page.cursor);
    snprintf (lim, sizeof lim, "%lld", (long long)page.limit);
    const char *params[] = {tenant, page.since ? since : NULL, after, lim};
    rcd_api_reply_document (req, reply, "dl_list", 4, params, "no listing");
}

static const rcd_api_field_t s_replay_fields[] = {
    {"ids", RCD_API_ARRAY, false},
    {"since", RCD_API_STRING, false},
    {NULL, RCD_API_ANY, false},
};

static int
s_id_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/*  Checks the ids of a replay into ids[0..*n_p), sorted and without
    repeats. Returns 0, or -2 with err filled. */
static int
s_check_ids (json_t *list, int64_t *ids, size_t *n_p, rcd_api_error_t *err)
{
    size_t n = json_array_size (list);
    if (n < 1 || n > S_REPLAY_IDS_MAX)
        return rcd_api_fail (err, 400, "invalid_field", "ids",
                             "must hold 1 to %d dead letter ids",
                             S_REPLAY_IDS_MAX);
    size_t i;
    json_t *v;
    json_array_foreach (list, i, v)
    {
        if (!json_is_integer (v) || json_integer_value (v) < 1) {
            char path[32];
            snprintf (path, sizeof path, "ids[%zu]", i);
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be a dead letter id (a positive "
                                 "integer)");
        }
        ids[i] = (int64_t)json_integer_value (v);
    }
    qsort (ids, n, sizeof ids[0], s_id_compare);
    size_t unique = 0;
    for (i = 0; i < n; i++)
        if (unique == 0 || ids[unique - 1] != ids[i])
            ids[unique++] = ids[i];
    *n_p = unique;
    return 0;
}

void
rcd_api_dead_letter_replay (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    char *ids_text = NULL;
    rcd_db_res_t *res = NULL;
    int64_t ids[S_REPLAY_IDS_MAX];
    size_t nids = 0;
    int64_t since_ms = 0;
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, s_replay_fields, "", &err) != 0)
        goto invalid;
    json_t *list = json_object_get (body, "ids");
    const char *since = rcd_api_string (body, "since");
    if (json_is_null (list))
        list = NULL;
    if (!list && !since) {
        rcd_api_fail (&err, 400, "missing_field", "ids",
                      "give the dead letters to replay: \"ids\" (a list) "
                      "or \"since\" (an RFC 3339 timestamp)");
        goto invalid;
    }
    if (list && since) {
        rcd_api_fail (&err, 400, "invalid_field", "since",
                      "give either ids or since, not both");
        goto invalid;
    }
    if (list && s_check_ids (list, ids, &nids, &err) != 0)
        goto invalid;
    if (since && rcd_api_parse_time (since, &since_ms) != 0) {
        rcd_api_fail (&err, 400, "invalid_field", "since",
                      "must be an RFC 3339 timestamp with offset, e.g. "
                      "2026-11-22T09:00:00-03:00");
        goto invalid;
    }
    if (list && !(ids_text = rcd_db_int64_array (ids, nids))) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "out of memory");
        goto cleanup;
    }

    char tenant[24], from[24], extra[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    snprintf (from, sizeof from, "%lld", (long long)since_ms);
    snprintf (extra, sizeof extra, "%lld", (long long)req->replay_attempts);
    const char *params[] = {tenant, ids_text, since ? from : NULL, extra};
    if (rcd_db_run (req->db, "dl_replay", 4, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "dl_replay");
        goto cleanup;
    }
    int64_t replayed = rcd_db_res_int64 (res, 0, 0);
    int64_t named = list ? (int64_t)nids : rcd_db_res_int64 (res, 0, 1);
    int64_t requeued = rcd_db_res_int64 (res, 0, 2);
    reply->requeued = (uint32_t)requeued;
    rcd_api_reply_json (reply, 200,
                        json_pack ("{s:I, s:I}", "replayed",
                                   (json_int_t)replayed, "skipped",
                                   (json_int_t)(named - replayed)));
    rcd_log_info ("dead letters replayed", "{s:I, s:I, s:I, s:I}", "tenant_id",
                  (json_int_t)req->tenant_id, "replayed", (json_int_t)replayed,
                  "skipped", (json_int_t)(named - replayed), "messages",
                  (json_int_t)requeued);
    goto cleanup;

invalid:
    rcd_api_reply_error (reply, &err);
cleanup:
    rcd_db_res_destroy (&res);
    free (ids_text);
    json_decref (body);
}

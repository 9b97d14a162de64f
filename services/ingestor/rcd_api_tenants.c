/*  rcd_api_tenants.c - tenants (admin) and their sender instances.

    A tenant's API key is shown once, at creation: only its SHA-256 is
    stored. Instance credentials (api_key, access_token, app_secret,
    verify_token) are stored for the senders and never answered.
*/
#include "rcd_api.h"
#include "rcd_crypto.h"
#include "rcd_log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  SQL reads better laid out as SQL. */
/* clang-format off */

/*  The columns an instance is answered with: never a credential. Usage
    is what the scheduler counted against the caps in the current hour
    and the current day of the tenant's time zone (the same periods it
    compares with, migrations/0005_delivery.sql); a counter of an older
    period reads 0. Written for "FROM instances" and for RETURNING of an
    insert into it. */
#define S_INSTANCE_JSON                                                      \
    "json_build_object("                                                     \
    " 'id', id, 'name', name, 'provider', provider, 'base_url', base_url,"   \
    " 'phone_number_id', phone_number_id, 'api_version', api_version,"       \
    " 'rate_per_second', rate_per_second, 'hourly_cap', hourly_cap,"         \
    " 'daily_cap', daily_cap, 'enabled', enabled, 'health', health,"         \
    " 'health_at', " RCD_API_TS ("health_at") ","                            \
    " 'circuit_state', circuit_state,"                                       \
    " 'circuit_until', " RCD_API_TS ("circuit_until") ","                    \
    " 'circuit_reason', circuit_reason,"                                     \
    " 'circuit_opened_at', " RCD_API_TS ("circuit_opened_at") ","            \
    " 'paused_until', " RCD_API_TS ("paused_until") ","                      \
    " 'usage', json_build_object("                                           \
    "   'hour', CASE WHEN hour_start = date_trunc('hour', now(), 'UTC')"            \
    "                THEN hour_used ELSE 0 END,"                             \
    "   'day', CASE WHEN day_start = date_trunc('day', now(),"               \
    "                 (SELECT t.timezone FROM tenants t"                     \
    "                   WHERE t.id = instances.tenant_id))"                  \
    "               THEN day_used ELSE 0 END),"                              \
    " 'created_at', " RCD_API_TS ("created_at") ")"

/*  A tenant's settings, as GET and PATCH /v1/tenant answer them. */
#define S_TENANT_JSON                                                        \
    "json_build_object("                                                     \
    " 'id', id, 'name', name, 'timezone', timezone,"                         \
    " 'business_hours', business_hours,"                                     \
    " 'webhook_token', webhook_token,"                                       \
    " 'generic_template', generic_template,"                                 \
    " 'optout_keywords', optout_keywords,"                                   \
    " 'default_offsets_days', default_offsets_days,"                         \
    " 'reminder_time', to_char(reminder_time, 'HH24:MI'),"                   \
    " 'created_at', " RCD_API_TS ("created_at") ")"

int
rcd_api_tenants_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* The zone is checked against the IANA names PostgreSQL knows: no row
       comes back for an unknown one. NULL takes the column's default. */
    rc |= rcd_db_prepare (db, "tenant_insert",
        "INSERT INTO tenants (name, timezone, business_hours, api_key_hash,"
        "                     webhook_token)"
        "SELECT $1::text, COALESCE($2::text, 'America/Sao_Paulo'),"
        "       $3::jsonb, decode($4::text, 'hex'), $5::text"
        " WHERE $2::text IS NULL"
        "    OR EXISTS (SELECT 1 FROM pg_timezone_names"
        "                WHERE name = $2::text)"
        "RETURNING id, timezone");
    rc |= rcd_db_prepare (db, "tenant_get",
        "SELECT " S_TENANT_JSON "::text FROM tenants WHERE id = $1::bigint");
    /* One statement: every field changes or none does. A NULL parameter
       keeps the column ($3/$5 are nullable columns, so flags $4/$6 say
       whether they were sent); an unknown zone matches no row. Keywords
       are stored trimmed, upper-cased and without repeats, in the order
       first given. */
    rc |= rcd_db_prepare (db, "tenant_patch",
        "UPDATE tenants SET"
        "  timezone = COALESCE($2::text, timezone),"
        "  business_hours = CASE WHEN $4::boolean THEN $3::jsonb"
        "                        ELSE business_hours END,"
        "  generic_template = CASE WHEN $6::boolean THEN $5::text"
        "                          ELSE generic_template END,"
        "  optout_keywords = COALESCE(("
        "    SELECT array_agg(k ORDER BY first)"
        "      FROM (SELECT upper(btrim(k)) AS k, min(ord) AS first"
        "              FROM unnest($7::text[]) WITH ORDINALITY AS u(k, ord)"
        "             GROUP BY 1) kw), optout_keywords),"
        "  default_offsets_days = COALESCE($8::int[], default_offsets_days),"
        "  reminder_time = COALESCE($9::time, reminder_time)"
        " WHERE id = $1::bigint"
        "   AND ($2::text IS NULL"
        "        OR EXISTS (SELECT 1 FROM pg_timezone_names"
        "                    WHERE name = $2::text))"
        "RETURNING " S_TENANT_JSON "::text");
    rc |= rcd_db_prepare (db, "instance_insert",
        "INSERT INTO instances (tenant_id, name, provider, base_url, api_key,"
        "                       access_token, phone_number_id, app_secret,"
        "                       verify_token, api_version, rate_per_second,"
        "                       hourly_cap, daily_cap, enabled)"
        "VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text,"
        "        $6::text, $7::text, $8::text, $9::text,"
        "        COALESCE($10::text, 'v21.0'), $11::double precision,"
        "        $12::int, $13::int, COALESCE($14::boolean, true))"
        "RETURNING " S_INSTANCE_JSON "::text");
    /* One statement: every field changes or none does. A NULL parameter
       keeps the column; the caps are nullable, so flags $6/$8 say whether
       they were sent. Credentials of the other provider match no row in
       "changed" while "target" still finds the instance, which tells a
       refused field (provider answered, no document) from another
       tenant's or a missing id (no row; the session's row-level security
       hides other tenants' rows too). Circuit, health and usage are not
       touched: re-enabling keeps the circuit as the senders left it. */
    rc |= rcd_db_prepare (db, "instance_patch",
        "WITH target AS ("
        "  SELECT provider FROM instances"
        "   WHERE id = $1::bigint AND tenant_id = $2::bigint),"
        " changed AS ("
        "  UPDATE instances SET"
        "    enabled = COALESCE($3::boolean, enabled),"
        "    rate_per_second = COALESCE($4::double precision,"
        "                               rate_per_second),"
        "    hourly_cap = CASE WHEN $6::boolean THEN $5::int"
        "                      ELSE hourly_cap END,"
        "    daily_cap = CASE WHEN $8::boolean THEN $7::int"
        "                     ELSE daily_cap END,"
        "    base_url = COALESCE($9::text, base_url),"
        "    api_key = COALESCE($10::text, api_key),"
        "    access_token = COALESCE($11::text, access_token),"
        "    app_secret = COALESCE($12::text, app_secret),"
        "    verify_token = COALESCE($13::text, verify_token)"
        "   WHERE id = $1::bigint AND tenant_id = $2::bigint"
        "     AND ($10::text IS NULL OR provider = 'evolution')"
        "     AND (($11::text IS NULL AND $12::text IS NULL"
        "           AND $13::text IS NULL) OR provider = 'meta')"
        "  RETURNING " S_INSTANCE_JSON "::text AS doc)"
        "SELECT provider, (SELECT doc FROM changed) FROM target");
    rc |= rcd_db_prepare (db, "instance_list",
        "SELECT json_build_object("
        "         'items', COALESCE(json_agg(" S_INSTANCE_JSON " ORDER BY id),"
        "                           '[]'::json))::text"
        "  FROM instances WHERE tenant_id = $1::bigint");
    return rc ? -1 : 0;
}

/* clang-format on */

/*  --- tenants --- */

static const rcd_api_field_t s_tenant_fields[] = {
    {"name", RCD_API_STRING, true},
    {"timezone", RCD_API_STRING, false},
    {"business_hours", RCD_API_ANY, false},
    {NULL, RCD_API_ANY, false},
};

void
rcd_api_tenant_create (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    char *hours = NULL;
    rcd_db_res_t *res = NULL;
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, s_tenant_fields, "", &err) != 0)
        goto invalid;
    const char *name = rcd_api_string (body, "name");
    size_t name_len = rcd_api_utf8_length (name);
    if (name_len < 1 || name_len > 200) {
        rcd_api_fail (&err, 400, "invalid_field", "name",
                      "must be 1 to 200 characters");
        goto invalid;
    }
    const char *timezone = rcd_api_string (body, "timezone");
    if (timezone && (!*timezone || strlen (timezone) > 64)) {
        rcd_api_fail (&err, 400, "invalid_field", "timezone",
                      "must be an IANA time zone name such as "
                      "America/Sao_Paulo");
        goto invalid;
    }
    json_t *bh = json_object_get (body, "business_hours");
    if (rcd_api_check_business_hours (bh, &err) != 0)
        goto invalid;
    if (bh && !json_is_null (bh)) {
        hours = json_dumps (bh, JSON_COMPACT);
        if (!hours)
            goto internal;
    }

    /* the key is shown once; only its hash is kept */
    char api_key[4 + 48 + 1], webhook_token[48 + 1], hash[65];
    if (rcd_crypto_token ("rcd_", 24, api_key, sizeof api_key) != 0 ||
        rcd_crypto_token (NULL, 24, webhook_token, sizeof webhook_token) != 0 ||
        rcd_crypto_sha256_hex (api_key, hash) != 0)
        goto internal;
    const char *params[] = {name, timezone, hours, hash, webhook_token};
    if (rcd_db_run (req->db, "tenant_insert", 5, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "tenant_insert");
        goto cleanup;
    }
    if (rcd_db_res_rows (res) != 1) {
        rcd_api_fail (&err, 400, "invalid_field", "timezone",
                      "unknown time zone (use an IANA name such as "
                      "America/Sao_Paulo)");
        goto invalid;
    }
    int64_t id = rcd_db_res_int64 (res, 0, 0);
    rcd_api_reply_json (reply, 201,
                        json_pack ("{s:I, s:s, s:s, s:O?, s:s, s:s}", "id",
                                   (json_int_t)id, "name", name, "timezone",
                                   rcd_db_res_value (res, 0, 1),
                                   "business_hours", bh, "api_key", api_key,
                                   "webhook_token", webhook_token));
    reply->created = 1;
    rcd_log_info ("tenant created", "{s:I}", "tenant_id", (json_int_t)id);
    goto cleanup;

invalid:
    rcd_api_reply_error (reply, &err);
    goto cleanup;
internal:
    rcd_api_reply_fail (reply, 500, "internal_error", NULL, "internal error");
cleanup:
    rcd_db_res_destroy (&res);
    free (hours);
    json_decref (body);
}

void
rcd_api_tenant_get (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char id[24];
    snprintf (id, sizeof id, "%lld", (long long)req->tenant_id);
    const char *params[] = {id};
    rcd_api_reply_document (req, reply, "tenant_get", 1, params,
                            "no such tenant");
}

/*  Settings PATCH /v1/tenant may change; null is allowed only where the
    column is nullable (business_hours, generic_template). */
static const rcd_api_field_t s_tenant_patch_fields[] = {
    {"timezone", RCD_API_STRING, false},
    {"business_hours", RCD_API_ANY, false},
    {"generic_template", RCD_API_STRING, false},
    {"optout_keywords", RCD_API_ARRAY, false},
    {"default_offsets_days", RCD_API_ARRAY, false},
    {"reminder_time", RCD_API_STRING, false},
    {NULL, RCD_API_ANY, false},
};

/*  Limits of the list settings. */
#define S_KEYWORDS_MAX     20
#define S_KEYWORD_CHARS    32
#define S_TEMPLATE_KEY_MAX 100

/*  True when text is only spaces and tabs (or empty). */
static bool
s_blank (const char *text)
{
    return text[strspn (text, " \t")] == 0;
}

/*  Checks optout_keywords and builds its array literal into *arr. */
static int
s_check_keywords (json_t *list, char **arr, rcd_api_error_t *err)
{
    size_t n = json_array_size (list), len = 0, cap = 0;
    if (n < 1 || n > S_KEYWORDS_MAX)
        return rcd_api_fail (err, 400, "invalid_field", "optout_keywords",
                             "must hold 1 to %d keywords", S_KEYWORDS_MAX);
    size_t i;
    json_t *v;
    json_array_foreach (list, i, v)
    {
        char path[64];
        snprintf (path, sizeof path, "optout_keywords[%zu]", i);
        const char *kw = json_string_value (v);
        if (!kw || s_blank (kw) || rcd_api_utf8_length (kw) > S_KEYWORD_CHARS ||
            rcd_api_has_control (kw))
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be a non-blank string of at most %d "
                                 "characters",
                                 S_KEYWORD_CHARS);
        if (rcd_db_text_array_append (arr, &len, &cap, kw) != 0)
            return -1;
    }
    return 0;
}

static int
s_int_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/*  Checks default_offsets_days and builds its sorted, unique array
    literal into *arr (a repeat is harmless in a setting). */
static int
s_check_offsets (json_t *list, char **arr, rcd_api_error_t *err)
{
    int days[RCD_API_OFFSETS_MAX];
    int64_t sorted[RCD_API_OFFSETS_MAX];
    size_t n = 0;
    if (rcd_api_check_offsets (list, "default_offsets_days", true, days, &n,
                               err) != 0)
        return -2;
    for (size_t i = 0; i < n; i++)
        sorted[i] = days[i];
    qsort (sorted, n, sizeof sorted[0], s_int_compare);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (unique == 0 || sorted[unique - 1] != sorted[i])
            sorted[unique++] = sorted[i];
    *arr = rcd_db_int64_array (sorted, unique);
    return *arr ? 0 : -1;
}

/*  The checks that need no database; the zone is checked by the UPDATE.
    Returns 0, -2 with err filled, or -1 when out of memory. */
static int
s_check_patch (json_t *body, char **hours, char **keywords, char **offsets,
               rcd_api_error_t *err)
{
    static const char *const not_null[] = {
        "timezone", "optout_keywords", "default_offsets_days", "reminder_time"};
    for (size_t i = 0; i < sizeof not_null / sizeof not_null[0]; i++)
        if (json_is_null (json_object_get (body, not_null[i])))
            return rcd_api_fail (err, 400, "invalid_field", not_null[i],
                                 "cannot be null");
    const char *timezone = rcd_api_string (body, "timezone");
    if (timezone && (!*timezone || strlen (timezone) > 64))
        return rcd_api_fail (err, 400, "invalid_field", "timezone",
                             "must be an IANA time zone name such as "
                             "America/Sao_Paulo");
    json_t *bh = json_object_get (body, "business_hours");
    if (rcd_api_check_business_hours (bh, err) != 0)
        return -2;
    if (bh && !json_is_null (bh) && !(*hours = json_dumps (bh, JSON_COMPACT)))
        return -1;
    const char *key = rcd_api_string (body, "generic_template");
    if (key && (!*key || strlen (key) > S_TEMPLATE_KEY_MAX ||
                strspn (key, "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
                    strlen (key)))
        return rcd_api_fail (err, 400, "invalid_field", "generic_template",
                             "must be a template key of 1 to %d letters, "
                             "digits, '_', '.' or '-', or null",
                             S_TEMPLATE_KEY_MAX);
    json_t *list = json_object_get (body, "optout_keywords");
    int rc = 0;
    if (list && (rc = s_check_keywords (list, keywords, err)) != 0)
        return rc;
    list = json_object_get (body, "default_offsets_days");
    if (list && (rc = s_check_offsets (list, offsets, err)) != 0)
        return rc;
    const char *at = rcd_api_string (body, "reminder_time");
    if (at && rcd_api_parse_clock (at, false) < 0)
        return rcd_api_fail (err, 400, "invalid_field", "reminder_time",
                             "must be \"HH:MM\" from 00:00 to 23:59");
    return 0;
}

void
rcd_api_tenant_patch (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    char *hours = NULL, *keywords = NULL, *offsets = NULL;
    rcd_db_res_t *res = NULL;
    int rc = rcd_api_parse_body (req, &body, &err);
    if (rc == 0)
        rc = rcd_api_check_fields (body, s_tenant_patch_fields, "", &err);
    if (rc == 0)
        rc = s_check_patch (body, &hours, &keywords, &offsets, &err);
    if (rc == -2) {
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    if (rc != 0) {
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "internal error");
        goto cleanup;
    }
    char id[24];
    snprintf (id, sizeof id, "%lld", (long long)req->tenant_id);
    const char *params[] = {
        id,
        rcd_api_string (body, "timezone"),
        hours,
        json_object_get (body, "business_hours") ? "true" : "false",
        rcd_api_string (body, "generic_template"),
        json_object_get (body, "generic_template") ? "true" : "false",
        keywords,
        offsets,
        rcd_api_string (body, "reminder_time"),
    };
    if (rcd_db_run (req->db, "tenant_patch", 9, params, &res) != 0)
        rcd_api_reply_db_error (reply, req->db, "tenant_patch");
    else if (rcd_db_res_rows (res) != 1)
        /* the tenant exists (its key was just found): the zone is unknown */
        rcd_api_reply_fail (reply, 400, "invalid_field", "timezone",
                            "unknown time zone (use an IANA name such as "
                            "America/Sao_Paulo)");
    else {
        rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
        rcd_log_info ("tenant settings changed", "{s:I}", "tenant_id",
                      (json_int_t)req->tenant_id);
    }
cleanup:
    rcd_db_res_destroy (&res);
    free (hours);
    free (keywords);
    free (offsets);
    json_decref (body);
}

/*  --- instances --- */

static const rcd_api_field_t s_instance_fields[] = {
    {"name", RCD_API_STRING, true},
    {"provider", RCD_API_STRING, true},
    {"base_url", RCD_API_STRING, true},
    {"api_key", RCD_API_STRING, false},
    {"access_token", RCD_API_STRING, false},
    {"phone_number_id", RCD_API_STRING, false},
    {"app_secret", RCD_API_STRING, false},
    {"verify_token", RCD_API_STRING, false},
    {"api_version", RCD_API_STRING, false},
    {"rate_per_second", RCD_API_NUMBER, false},
    {"hourly_cap", RCD_API_INTEGER, false},
    {"daily_cap", RCD_API_INTEGER, false},
    {"enabled", RCD_API_BOOLEAN, false},
    {NULL, RCD_API_ANY, false},
};

/*  Which optional fields each provider needs or refuses. */
typedef struct {
    const char *provider;
    const char *required[4]; /* NULL-ended */
    const char *refused[6];  /* NULL-ended */
    double default_rate;     /* messages/second */
} s_provider_t;

static const s_provider_t s_providers[] = {
    {"evolution",
     {"api_key", NULL},
     {"access_token", "phone_number_id", "app_secret", "verify_token",
      "api_version", NULL},
     1.0},
    {"meta",
     {"access_token", "phone_number_id", NULL},
     {"api_key", NULL},
     80.0},
};

/*  Checks base_url: http(s), no whitespace, no user:password@. Writes it
    without trailing slashes into out. */
static int
s_check_base_url (const char *url, char *out, size_t out_size,
                  rcd_api_error_t *err)
{
    size_t len = strlen (url);
    const char *rest = NULL;
    if (strncmp (url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp (url, "https://", 8) == 0)
        rest = url + 8;
    if (!rest || !*rest || *rest == '/' || len >= out_size)
        return rcd_api_fail (err, 400, "invalid_field", "base_url",
                             "must be an http:// or https:// URL of at most "
                             "%zu bytes",
                             out_size - 1);
    for (const char *p = url; *p; p++)
        if (*p == ' ' || (unsigned char)*p < 0x21 || *p == 0x7f)
            return rcd_api_fail (err, 400, "invalid_field", "base_url",
                                 "must not contain spaces");
    size_t host_len = strcspn (rest, "/?#");
    if (memchr (rest, '@', host_len))
        return rcd_api_fail (err, 400, "invalid_field", "base_url",
                             "must not carry credentials; use api_key or "
                             "access_token");
    memcpy (out, url, len + 1);
    while (len > 0 && out[len - 1] == '/')
        out[--len] = 0;
    return 0;
}

/*  Provider rules, credential sizes and limits. */
static int
s_check_instance (json_t *body, const s_provider_t **provider_p,
                  rcd_api_error_t *err)
{
    const char *name = rcd_api_string (body, "name");
    size_t name_len = rcd_api_utf8_length (name);
    if (name_len < 1 || name_len > 100 || rcd_api_has_control (name))
        return rcd_api_fail (err, 400, "invalid_field", "name",
                             "must be 1 to 100 characters without control "
                             "characters");
    const char *provider = rcd_api_string (body, "provider");
    const s_provider_t *p = NULL;
    for (size_t i = 0; i < sizeof s_providers / sizeof s_providers[0]; i++)
        if (strcmp (s_providers[i].provider, provider) == 0)
            p = &s_providers[i];
    if (!p)
        return rcd_api_fail (err, 400, "invalid_field", "provider",
                             "must be \"evolution\" or \"meta\"");
    for (int i = 0; p->required[i]; i++)
        if (!rcd_api_string (body, p->required[i]))
            return rcd_api_fail (err, 400, "missing_field", p->required[i],
                                 "is required for %s instances", p->provider);
    for (int i = 0; p->refused[i]; i++)
        if (rcd_api_string (body, p->refused[i]))
            return rcd_api_fail (err, 400, "invalid_field", p->refused[i],
                                 "is not used by %s instances", p->provider);
    static const char *const secrets[] = {"api_key",         "access_token",
                                          "phone_number_id", "app_secret",
                                          "verify_token",    "api_version"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        const char *v = rcd_api_string (body, secrets[i]);
        if (v && (!*v || strlen (v) > 4096 || rcd_api_has_control (v)))
            return rcd_api_fail (err, 400, "invalid_field", secrets[i],
                                 "must be 1 to 4096 bytes without control "
                                 "characters");
    }
    json_t *rate = json_object_get (body, "rate_per_second");
    if (rate && !json_is_null (rate) &&
        (json_number_value (rate) <= 0 || json_number_value (rate) > 10000))
        return rcd_api_fail (err, 400, "invalid_field", "rate_per_second",
                             "must be above 0 and at most 10000");
    static const char *const caps[] = {"hourly_cap", "daily_cap"};
    for (size_t i = 0; i < 2; i++) {
        json_t *cap = json_object_get (body, caps[i]);
        if (cap && !json_is_null (cap) &&
            (json_integer_value (cap) < 1 ||
             json_integer_value (cap) > 1000000000))
            return rcd_api_fail (err, 400, "invalid_field", caps[i],
                                 "must be 1 to 1000000000");
    }
    *provider_p = p;
    return 0;
}

void
rcd_api_instance_create (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    rcd_db_res_t *res = NULL;
    const s_provider_t *provider = NULL;
    char base_url[2049];
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, s_instance_fields, "", &err) != 0 ||
        s_check_instance (body, &provider, &err) != 0 ||
        s_check_base_url (rcd_api_string (body, "base_url"), base_url,
                          sizeof base_url, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    assert (provider); /* s_check_instance set it */
    char tenant[24], rate[32], hourly[24], daily[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    json_t *v = json_object_get (body, "rate_per_second");
    snprintf (rate, sizeof rate, "%.17g",
              v && !json_is_null (v) ? json_number_value (v)
                                     : provider->default_rate);
    v = json_object_get (body, "hourly_cap");
    snprintf (hourly, sizeof hourly, "%lld", (long long)json_integer_value (v));
    bool has_hourly = json_is_integer (v);
    v = json_object_get (body, "daily_cap");
    snprintf (daily, sizeof daily, "%lld", (long long)json_integer_value (v));
    bool has_daily = json_is_integer (v);
    v = json_object_get (body, "enabled");
    const char *enabled =
        json_is_boolean (v) ? (json_is_true (v) ? "true" : "false") : NULL;
    const char *params[] = {
        tenant,
        rcd_api_string (body, "name"),
        provider->provider,
        base_url,
        rcd_api_string (body, "api_key"),
        rcd_api_string (body, "access_token"),
        rcd_api_string (body, "phone_number_id"),
        rcd_api_string (body, "app_secret"),
        rcd_api_string (body, "verify_token"),
        rcd_api_string (body, "api_version"),
        rate,
        has_hourly ? hourly : NULL,
        has_daily ? daily : NULL,
        enabled,
    };
    if (rcd_db_run (req->db, "instance_insert", 14, params, &res) != 0) {
        if (rcd_db_error_is (req->db, RCD_SQLSTATE_UNIQUE_VIOLATION)) {
            bool phone =
                strstr (rcd_db_error (req->db), "instances_meta_phone") != NULL;
            rcd_api_reply_fail (reply, 409, "conflict",
                                phone ? "phone_number_id" : "name",
                                phone ? "another instance already uses this "
                                        "phone_number_id"
                                      : "an instance with this name exists");
        }
        else
            rcd_api_reply_db_error (reply, req->db, "instance_insert");
        goto cleanup;
    }
    rcd_api_reply_text (reply, 201, rcd_db_res_value (res, 0, 0));
    reply->created = 1;
    rcd_log_info ("instance created", "{s:I, s:s}", "tenant_id",
                  (json_int_t)req->tenant_id, "provider", provider->provider);
cleanup:
    rcd_db_res_destroy (&res);
    json_decref (body);
}

void
rcd_api_instance_list (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant};
    rcd_api_reply_document (req, reply, "instance_list", 1, params,
                            "no listing");
}

/*  What PATCH /v1/instances/{id} may change. Caps may be null (no cap);
    the other fields may not. */
static const rcd_api_field_t s_instance_patch_fields[] = {
    {"enabled", RCD_API_BOOLEAN, false},
    {"rate_per_second", RCD_API_NUMBER, false},
    {"hourly_cap", RCD_API_INTEGER, false},
    {"daily_cap", RCD_API_INTEGER, false},
    {"base_url", RCD_API_STRING, false},
    {"api_key", RCD_API_STRING, false},
    {"access_token", RCD_API_STRING, false},
    {"app_secret", RCD_API_STRING, false},
    {"verify_token", RCD_API_STRING, false},
    {NULL, RCD_API_ANY, false},
};

/*  Credentials PATCH rotates, in the order of instance_patch's $10.., and
    the provider each belongs to. */
static const struct {
    const char *name;
    const char *provider;
} s_patch_secrets[] = {
    {"api_key", "evolution"},
    {"access_token", "meta"},
    {"app_secret", "meta"},
    {"verify_token", "meta"},
};

#define S_PATCH_SECRETS (sizeof s_patch_secrets / sizeof s_patch_secrets[0])

/*  Most messages a second PATCH accepts for an instance. */
#define S_PATCH_RATE_MAX 10000 /* as POST */

/*  The checks of PATCH that need no database; which provider a credential
    belongs to is checked by the UPDATE. base_url is written without
    trailing slashes into base_url. Returns 0 or -2 with err filled. */
static int
s_check_instance_patch (json_t *body, char *base_url, size_t base_url_size,
                        rcd_api_error_t *err)
{
    if (json_object_size (body) == 0)
        return rcd_api_fail (err, 400, "missing_field", NULL,
                             "give at least one of enabled, rate_per_second, "
                             "hourly_cap, daily_cap, base_url, api_key, "
                             "access_token, app_secret, verify_token");
    for (const rcd_api_field_t *f = s_instance_patch_fields; f->name; f++)
        if (f->type != RCD_API_INTEGER &&
            json_is_null (json_object_get (body, f->name)))
            return rcd_api_fail (err, 400, "invalid_field", f->name,
                                 "cannot be null");
    json_t *rate = json_object_get (body, "rate_per_second");
    if (rate && (json_number_value (rate) <= 0 ||
                 json_number_value (rate) > S_PATCH_RATE_MAX))
        return rcd_api_fail (err, 400, "invalid_field", "rate_per_second",
                             "must be above 0 and at most %d",
                             S_PATCH_RATE_MAX);
    static const char *const caps[] = {"hourly_cap", "daily_cap"};
    for (size_t i = 0; i < 2; i++) {
        json_t *cap = json_object_get (body, caps[i]);
        if (cap && !json_is_null (cap) &&
            (json_integer_value (cap) < 1 ||
             json_integer_value (cap) > 1000000000))
            return rcd_api_fail (err, 400, "invalid_field", caps[i],
                                 "must be 1 to 1000000000, or null for no "
                                 "cap");
    }
    const char *url = rcd_api_string (body, "base_url");
    if (url && s_check_base_url (url, base_url, base_url_size, err) != 0)
        return -2;
    for (size_t i = 0; i < S_PATCH_SECRETS; i++) {
        const char *v = rcd_api_string (body, s_patch_secrets[i].name);
        if (v && (!*v || strlen (v) > 4096 || rcd_api_has_control (v)))
            return rcd_api_fail (err, 400, "invalid_field",
                                 s_patch_secrets[i].name,
                                 "must be 1 to 4096 bytes without control "
                                 "characters");
    }
    return 0;
}

/*  The names of the fields body changes, comma-separated, for the log
    (never a value: some are credentials). */
static void
s_patch_field_names (json_t *body, char *out, size_t out_size)
{
    size_t len = 0;
    out[0] = 0;
    for (const rcd_api_field_t *f = s_instance_patch_fields; f->name; f++)
        if (json_object_get (body, f->name) && len < out_size) {
            int n = snprintf (out + len, out_size - len, "%s%s", len ? "," : "",
                              f->name);
            len += n > 0 ? (size_t)n : 0;
        }
}

void
rcd_api_instance_patch (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    rcd_db_res_t *res = NULL;
    char base_url[2049];
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, s_instance_patch_fields, "", &err) != 0 ||
        s_check_instance_patch (body, base_url, sizeof base_url, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        goto cleanup;
    }
    char id[24], tenant[24], rate[32], hourly[24], daily[24];
    snprintf (id, sizeof id, "%lld", (long long)req->id);
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    json_t *v = json_object_get (body, "enabled");
    const char *enabled =
        json_is_boolean (v) ? (json_is_true (v) ? "true" : "false") : NULL;
    json_t *rate_v = json_object_get (body, "rate_per_second");
    snprintf (rate, sizeof rate, "%.17g", json_number_value (rate_v));
    json_t *hourly_v = json_object_get (body, "hourly_cap");
    snprintf (hourly, sizeof hourly, "%lld",
              (long long)json_integer_value (hourly_v));
    json_t *daily_v = json_object_get (body, "daily_cap");
    snprintf (daily, sizeof daily, "%lld",
              (long long)json_integer_value (daily_v));
    const char *params[] = {
        id,
        tenant,
        enabled,
        rate_v ? rate : NULL,
        json_is_integer (hourly_v) ? hourly : NULL,
        hourly_v ? "true" : "false",
        json_is_integer (daily_v) ? daily : NULL,
        daily_v ? "true" : "false",
        rcd_api_string (body, "base_url") ? base_url : NULL,
        rcd_api_string (body, s_patch_secrets[0].name),
        rcd_api_string (body, s_patch_secrets[1].name),
        rcd_api_string (body, s_patch_secrets[2].name),
        rcd_api_string (body, s_patch_secrets[3].name),
    };
    if (rcd_db_run (req->db, "instance_patch", 13, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "instance_patch");
        goto cleanup;
    }
    if (rcd_db_res_rows (res) != 1) {
        rcd_api_reply_fail (reply, 404, "not_found", NULL, "no such instance");
        goto cleanup;
    }
    if (rcd_db_res_isnull (res, 0, 1)) {
        /* the instance is there: a credential of the other provider */
        const char *provider = rcd_db_res_value (res, 0, 0);
        for (size_t i = 0; i < S_PATCH_SECRETS; i++)
            if (rcd_api_string (body, s_patch_secrets[i].name) &&
                strcmp (s_patch_secrets[i].provider, provider) != 0) {
                rcd_api_reply_fail (reply, 400, "invalid_field",
                                    s_patch_secrets[i].name,
                                    "is not used by %s instances", provider);
                goto cleanup;
            }
        rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                            "internal error");
        goto cleanup;
    }
    rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 1));
    char fields[256];
    s_patch_field_names (body, fields, sizeof fields);
    rcd_log_info ("instance changed", "{s:I, s:I, s:s}", "tenant_id",
                  (json_int_t)req->tenant_id, "instance_id",
                  (json_int_t)req->id, "fields", fields);
cleanup:
    rcd_db_res_destroy (&res);
    json_decref (body);
}

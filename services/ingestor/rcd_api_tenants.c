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

/*  The columns an instance is answered with: never a credential. */
#define S_INSTANCE_JSON                                                      \
    "json_build_object("                                                     \
    " 'id', id, 'name', name, 'provider', provider, 'base_url', base_url,"   \
    " 'phone_number_id', phone_number_id, 'api_version', api_version,"       \
    " 'rate_per_second', rate_per_second, 'hourly_cap', hourly_cap,"         \
    " 'daily_cap', daily_cap, 'enabled', enabled, 'health', health,"         \
    " 'health_at', " RCD_API_TS ("health_at") ","                            \
    " 'circuit_state', circuit_state,"                                       \
    " 'circuit_until', " RCD_API_TS ("circuit_until") ","                    \
    " 'paused_until', " RCD_API_TS ("paused_until") ","                      \
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
        "SELECT json_build_object("
        "         'id', id, 'name', name, 'timezone', timezone,"
        "         'business_hours', business_hours,"
        "         'webhook_token', webhook_token,"
        "         'generic_template', generic_template,"
        "         'optout_keywords', optout_keywords,"
        "         'default_offsets_days', default_offsets_days,"
        "         'reminder_time', to_char(reminder_time, 'HH24:MI'),"
        "         'created_at', " RCD_API_TS ("created_at") ")::text"
        "  FROM tenants WHERE id = $1::bigint");
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
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "tenant_get", 1, params, &res) != 0)
        rcd_api_reply_db_error (reply, req->db, "tenant_get");
    else if (rcd_db_res_rows (res) != 1)
        rcd_api_reply_fail (reply, 404, "not_found", NULL, "no such tenant");
    else
        rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);
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

/*  True when text holds a control character (names end up in URLs and
    logs). */
static bool
s_has_control (const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

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
    if (name_len < 1 || name_len > 100 || s_has_control (name))
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
        if (v && (!*v || strlen (v) > 4096 || s_has_control (v)))
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
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "instance_list", 1, params, &res) != 0)
        rcd_api_reply_db_error (reply, req->db, "instance_list");
    else
        rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);
}

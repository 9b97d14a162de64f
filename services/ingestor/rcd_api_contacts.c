/*  rcd_api_contacts.c - a tenant's contacts: upsert, show, opt out.

    A contact is keyed by its E.164 phone (rcd_phone_normalize with the
    configured default country), so every way of writing one number is
    the same row. Uploads change name and vars but never opted_out: once
    a person opted out, no spreadsheet brings them back. Opting out blocks
    the contact's pending messages in the same statement, with a history
    row each, so no message slips out between the two. last_reply is the
    contact's latest inbound text, written by the gateway webhooks.
*/
#include "rcd_api.h"
#include "rcd_log.h"
#include "rcd_phone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Longest contact name, in characters. */
#define S_NAME_CHARS 200

/*  SQL reads better laid out as SQL. */
/* clang-format off */

/*  A contact as every route answers it. */
#define S_CONTACT_JSON                                                       \
    "json_build_object("                                                     \
    " 'phone', phone, 'name', name, 'vars', vars,"                           \
    " 'opted_out', opted_out,"                                               \
    " 'opted_out_at', " RCD_API_TS ("opted_out_at") ","                      \
    " 'last_reply', last_reply,"                                             \
    " 'last_reply_at', " RCD_API_TS ("last_reply_at") ","                    \
    " 'updated_at', " RCD_API_TS ("updated_at") ")"

int
rcd_api_contacts_prepare (rcd_db_t *db)
{
    int rc = 0;
    /* $4/$6 say whether name/vars were sent: an absent field keeps what
       is stored, null clears it. opted_out is not in the statement. */
    rc |= rcd_db_prepare (db, "contact_upsert",
        "INSERT INTO contacts AS c (tenant_id, phone, name, vars)"
        "VALUES ($1::bigint, $2::text, $3::text,"
        "        COALESCE($5::jsonb, '{}'::jsonb))"
        "ON CONFLICT (tenant_id, phone) DO UPDATE SET"
        "  name = CASE WHEN $4::boolean THEN EXCLUDED.name ELSE c.name END,"
        "  vars = CASE WHEN $6::boolean THEN EXCLUDED.vars ELSE c.vars END,"
        "  updated_at = CASE"
        "    WHEN ($4::boolean AND EXCLUDED.name IS DISTINCT FROM c.name)"
        "      OR ($6::boolean AND EXCLUDED.vars IS DISTINCT FROM c.vars)"
        "    THEN now() ELSE c.updated_at END "
        "RETURNING " S_CONTACT_JSON "::text");
    rc |= rcd_db_prepare (db, "contact_get",
        "SELECT " S_CONTACT_JSON "::text FROM contacts"
        " WHERE tenant_id = $1::bigint AND phone = $2::text");
    /* rcd_opt_out (migrations/0007): the flag and the blocking in one
       statement, so one transaction, shared with opt-out replies. */
    rc |= rcd_db_prepare (db, "contact_opt_out",
        "SELECT rcd_opt_out($1::bigint, $2::text, 'contact opted out')");
    return rc ? -1 : 0;
}

/* clang-format on */

static const rcd_api_field_t s_contact_fields[] = {
    {"name", RCD_API_STRING, false},
    {"vars", RCD_API_OBJECT, false},
    {NULL, RCD_API_ANY, false},
};

/*  Normalises the {phone} path segment into phone. Returns 0 or -2 with
    err filled (invalid_phone, field "phone", saying why). */
static int
s_phone (const rcd_api_req_t *req, char *phone, size_t phone_size,
         rcd_api_error_t *err)
{
    const char *why = NULL;
    if (!req->arg || rcd_phone_normalize (req->arg, req->default_country, phone,
                                          phone_size, &why) != 0)
        return rcd_api_fail (err, 400, "invalid_phone", "phone",
                             "not a usable phone number: %s",
                             why ? why : "invalid");
    return 0;
}

void
rcd_api_contact_put (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    json_t *body = NULL;
    char *vars = NULL;
    rcd_db_res_t *res = NULL;
    char phone[RCD_PHONE_MAX];
    if (s_phone (req, phone, sizeof phone, &err) != 0 ||
        rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, s_contact_fields, "", &err) != 0)
        goto invalid;
    const char *name = rcd_api_string (body, "name");
    size_t name_len = name ? rcd_api_utf8_length (name) : 1;
    if (name_len < 1 || name_len > S_NAME_CHARS ||
        (name && rcd_api_has_control (name))) {
        rcd_api_fail (&err, 400, "invalid_field", "name",
                      "must be 1 to %d characters without control "
                      "characters, or null",
                      S_NAME_CHARS);
        goto invalid;
    }
    json_t *v = json_object_get (body, "vars");
    if (json_is_object (v)) {
        if (rcd_api_check_vars (v, "", &err) != 0)
            goto invalid;
        vars = json_dumps (v, JSON_COMPACT);
        if (!vars) {
            rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                                "internal error");
            goto cleanup;
        }
    }
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {
        tenant, phone,
        name,   json_object_get (body, "name") ? "true" : "false",
        vars,   v ? "true" : "false", /* null: back to {} */
    };
    if (rcd_db_run (req->db, "contact_upsert", 6, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "contact_upsert");
        goto cleanup;
    }
    rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
    goto cleanup;

invalid:
    rcd_api_reply_error (reply, &err);
cleanup:
    rcd_db_res_destroy (&res);
    free (vars);
    json_decref (body);
}

void
rcd_api_contact_get (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    char phone[RCD_PHONE_MAX];
    if (s_phone (req, phone, sizeof phone, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        return;
    }
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant, phone};
    rcd_api_reply_document (req, reply, "contact_get", 2, params,
                            "no contact with this phone");
}

void
rcd_api_contact_opt_out (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    rcd_api_error_t err;
    char phone[RCD_PHONE_MAX];
    if (s_phone (req, phone, sizeof phone, &err) != 0) {
        rcd_api_reply_error (reply, &err);
        return;
    }
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant, phone};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, "contact_opt_out", 2, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "contact_opt_out");
        goto cleanup;
    }
    int64_t blocked = rcd_db_res_int64 (res, 0, 0);
    rcd_api_reply_json (reply, 200,
                        json_pack ("{s:s, s:b, s:I}", "phone", phone,
                                   "opted_out", 1, "blocked",
                                   (json_int_t)blocked));
    char masked[40];
    rcd_log_info ("contact opted out", "{s:I, s:s, s:I}", "tenant_id",
                  (json_int_t)req->tenant_id, "phone",
                  rcd_log_mask_phone (phone, masked, sizeof masked), "blocked",
                  (json_int_t)blocked);
cleanup:
    rcd_db_res_destroy (&res);
}

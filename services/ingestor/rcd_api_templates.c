/*  rcd_api_templates.c - a tenant's templates, and rendering messages
    from them.

    Text is rendered once, at ingest, and stored as the message body: a
    retry sends exactly what the first attempt sent, the sender needs no
    template, and a placeholder without a value is the uploader's
    invalid_field, never a gap in a message a customer reads. The
    variation is variations[id % n] of the message id, which spreads
    consecutive messages evenly over the variations and gives one message
    the same text however often it is rendered.
*/
#include "rcd_api.h"
#include "rcd_log.h"
#include "rcd_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Limits of a template. */
#define S_KEY_CHARS       100
#define S_VARIATIONS_MAX  20
#define S_VARIATION_CHARS 4096 /* WhatsApp's text limit */
/*  Largest rendered text, in bytes (the body column's limit). */
#define S_BODY_MAX 65536

/*  SQL reads better laid out as SQL. */
/* clang-format off */

#define S_TEMPLATE_JSON                                                      \
    "json_build_object('key', key, 'variations', variations,"                \
    " 'created_at', " RCD_API_TS ("created_at") ","                          \
    " 'updated_at', " RCD_API_TS ("updated_at") ")"

int
rcd_api_templates_prepare (rcd_db_t *db)
{
    int rc = 0;
    rc |= rcd_db_prepare (db, "template_put",
        "INSERT INTO templates AS t (tenant_id, key, variations)"
        "VALUES ($1::bigint, $2::text, $3::text[])"
        "ON CONFLICT (tenant_id, key) DO UPDATE SET"
        "  variations = EXCLUDED.variations,"
        "  updated_at = CASE WHEN EXCLUDED.variations = t.variations"
        "                    THEN t.updated_at ELSE now() END "
        "RETURNING " S_TEMPLATE_JSON "::text");
    rc |= rcd_db_prepare (db, "template_list",
        "SELECT json_build_object('items', COALESCE(json_agg("
        S_TEMPLATE_JSON " ORDER BY key), '[]'::json))::text"
        "  FROM templates WHERE tenant_id = $1::bigint");
    /* Everything rendering a chunk of messages needs, in one round trip:
       the templates it names and the generic one, the stored contacts of
       its phones, and fresh message ids (the variation depends on the
       id, so ids are drawn before the text exists). */
    rc |= rcd_db_prepare (db, "render_load",
        "SELECT json_build_object("
        "  'generic', t.generic_template,"
        "  'templates', COALESCE((SELECT json_object_agg(x.key, x.variations)"
        "     FROM templates x WHERE x.tenant_id = t.id"
        "      AND (x.key = ANY($2::text[]) OR x.key = t.generic_template)),"
        "     '{}'::json),"
        /* driven by the phones, one primary-key probe each: a plan
           made while the table was small would otherwise filter every
           contact of the tenant through "= ANY" */
        "  'contacts', COALESCE((SELECT json_object_agg(p.phone, p.contact)"
        "     FROM (SELECT q.phone, (SELECT json_build_object('name', c.name,"
        "                                                'vars', c.vars)"
        "                              FROM contacts c"
        "                             WHERE c.tenant_id = $1::bigint"
        "                               AND c.phone = q.phone) AS contact"
        "             FROM (SELECT DISTINCT unnest($3::text[]) AS phone) q"
        "            WHERE q.phone IS NOT NULL) p"
        "    WHERE p.contact IS NOT NULL), '{}'::json),"
        "  'ids', COALESCE((SELECT json_agg(nextval('messages_id_seq'))"
        "     FROM generate_series(1, $4::int)), '[]'::json))::text"
        "  FROM tenants t WHERE t.id = $1::bigint");
    return rc ? -1 : 0;
}

/* clang-format on */

/*  --- routes --- */

/*  True when key is 1 to S_KEY_CHARS letters, digits, '_', '-' or '.'. */
static bool
s_valid_key (const char *key)
{
    size_t len = key ? strlen (key) : 0;
    return len >= 1 && len <= S_KEY_CHARS &&
           strspn (key, "abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == len;
}

void
rcd_api_template_put (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    static const rcd_api_field_t fields[] = {
        {"variations", RCD_API_ARRAY, true},
        {NULL, RCD_API_ANY, false},
    };
    rcd_api_error_t err;
    json_t *body = NULL;
    char *array = NULL;
    size_t len = 0, cap = 0;
    rcd_db_res_t *res = NULL;
    if (!s_valid_key (req->arg)) {
        rcd_api_fail (&err, 400, "invalid_field", "key",
                      "a template key is 1 to %d letters, digits, '_', '-' "
                      "or '.'",
                      S_KEY_CHARS);
        goto invalid;
    }
    if (rcd_api_parse_body (req, &body, &err) != 0 ||
        rcd_api_check_fields (body, fields, "", &err) != 0)
        goto invalid;
    json_t *variations = json_object_get (body, "variations");
    size_t n = json_array_size (variations);
    if (n < 1 || n > S_VARIATIONS_MAX) {
        rcd_api_fail (&err, 400, "invalid_field", "variations",
                      "must hold 1 to %d texts", S_VARIATIONS_MAX);
        goto invalid;
    }
    for (size_t i = 0; i < n; i++) {
        char field[40];
        snprintf (field, sizeof field, "variations[%zu]", i);
        json_t *v = json_array_get (variations, i);
        const char *text = json_string_value (v);
        size_t chars = text ? rcd_api_utf8_length (text) : 0;
        const char *why = NULL;
        if (chars < 1 || chars > S_VARIATION_CHARS) {
            rcd_api_fail (&err, 400, "invalid_field", field,
                          "must be a text of 1 to %d characters",
                          S_VARIATION_CHARS);
            goto invalid;
        }
        if (rcd_template_check (text, &why) != 0) {
            rcd_api_fail (&err, 400, "invalid_field", field, "%s", why);
            goto invalid;
        }
        if (rcd_db_text_array_append (&array, &len, &cap, text) != 0) {
            rcd_api_reply_fail (reply, 500, "internal_error", NULL,
                                "out of memory");
            goto cleanup;
        }
    }
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant, req->arg, array};
    if (rcd_db_run (req->db, "template_put", 3, params, &res) != 0) {
        rcd_api_reply_db_error (reply, req->db, "template_put");
        goto cleanup;
    }
    rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
    goto cleanup;

invalid:
    rcd_api_reply_error (reply, &err);
cleanup:
    rcd_db_res_destroy (&res);
    free (array);
    json_decref (body);
}

void
rcd_api_template_list (rcd_api_req_t *req, rcd_api_reply_t *reply)
{
    char tenant[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)req->tenant_id);
    const char *params[] = {tenant};
    rcd_api_reply_document (req, reply, "template_list", 1, params,
                            "no listing");
}

/*  --- rendering --- */

struct rcd_api_render {
    json_t *doc;       /* the render_load document */
    json_t *templates; /* key -> [variation, ...]; borrowed from doc */
    json_t *contacts;  /* phone -> {name, vars}; borrowed from doc */
    const char *generic;
    json_t *ids; /* fresh message ids; borrowed from doc */
    size_t next_id;
};

int
rcd_api_render_load (rcd_db_t *db, int64_t tenant_id, const char *const *keys,
                     const char *const *phones, size_t n, size_t nids,
                     rcd_api_render_t **self_p)
{
    char *key_array = NULL, *phone_array = NULL;
    size_t klen = 0, kcap = 0, plen = 0, pcap = 0;
    rcd_db_res_t *res = NULL;
    rcd_api_render_t *self = NULL;
    int rc = -1;
    *self_p = NULL;
    /* a first NULL element (it matches nothing) keeps each array a
       literal even when there is nothing to look up */
    if (rcd_db_text_array_append (&key_array, &klen, &kcap, NULL) != 0 ||
        rcd_db_text_array_append (&phone_array, &plen, &pcap, NULL) != 0)
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        if ((keys && keys[i] &&
             rcd_db_text_array_append (&key_array, &klen, &kcap, keys[i])) ||
            (phones && phones[i] &&
             rcd_db_text_array_append (&phone_array, &plen, &pcap, phones[i])))
            goto cleanup;
    char tenant[24], count[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)tenant_id);
    snprintf (count, sizeof count, "%zu", nids);
    const char *params[] = {tenant, key_array, phone_array, count};
    if (rcd_db_run (db, "render_load", 4, params, &res) != 0 ||
        rcd_db_res_rows (res) != 1)
        goto cleanup;
    self = calloc (1, sizeof *self);
    if (!self)
        goto cleanup;
    self->doc = json_loads (rcd_db_res_value (res, 0, 0), 0, NULL);
    self->templates = json_object_get (self->doc, "templates");
    self->contacts = json_object_get (self->doc, "contacts");
    self->generic = json_string_value (json_object_get (self->doc, "generic"));
    self->ids = json_object_get (self->doc, "ids");
    if (!json_is_object (self->templates) || !json_is_object (self->contacts) ||
        json_array_size (self->ids) != nids)
        goto cleanup;
    *self_p = self;
    self = NULL;
    rc = 0;
cleanup:
    rcd_api_render_destroy (&self);
    rcd_db_res_destroy (&res);
    free (key_array);
    free (phone_array);
    return rc;
}

void
rcd_api_render_destroy (rcd_api_render_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    json_decref ((*self_p)->doc);
    free (*self_p);
    *self_p = NULL;
}

int64_t
rcd_api_render_next_id (rcd_api_render_t *self)
{
    json_t *id = json_array_get (self->ids, self->next_id);
    if (!json_is_integer (id))
        return 0;
    self->next_id++;
    return (int64_t)json_integer_value (id);
}

bool
rcd_api_render_has_template (rcd_api_render_t *self, const char *key)
{
    json_t *variations = key ? json_object_get (self->templates, key) : NULL;
    if (!json_array_size (variations) && self->generic)
        variations = json_object_get (self->templates, self->generic);
    return json_array_size (variations) > 0;
}

json_t *
rcd_api_render_contact (rcd_api_render_t *self, const char *phone)
{
    return json_object_get (self->contacts, phone);
}

int
rcd_api_render_text (rcd_api_render_t *self, const char *key, int64_t id,
                     json_t *const *scopes, size_t nscopes, const char *prefix,
                     char **out_p, rcd_api_error_t *err)
{
    char field[160];
    const char *used = key;
    json_t *variations = key ? json_object_get (self->templates, key) : NULL;
    if (!json_array_size (variations) && self->generic) {
        used = self->generic;
        variations = json_object_get (self->templates, self->generic);
    }
    size_t n = json_array_size (variations);
    if (n == 0) {
        snprintf (field, sizeof field, "%stemplate", prefix);
        if (key)
            return rcd_api_fail (err, 400, "invalid_field", field,
                                 "no template \"%.100s\" and no generic "
                                 "template to fall back to (PUT "
                                 "/v1/templates/{key}, PATCH /v1/tenant "
                                 "generic_template)",
                                 key);
        return rcd_api_fail (err, 400, "missing_field", field,
                             "is required: the tenant has no generic "
                             "template to fall back to");
    }
    const char *text =
        json_string_value (json_array_get (variations, (size_t)id % n));
    char missing[RCD_TEMPLATE_NAME_MAX + 1] = "";
    int rc = text ? rcd_template_render (text, scopes, nscopes, out_p, missing,
                                         sizeof missing)
                  : -1;
    if (rc == -2) {
        snprintf (field, sizeof field, "%svars.%s", prefix, missing);
        return rcd_api_fail (err, 400, "invalid_field", field,
                             "template \"%.100s\" uses {{%s}}, which has no "
                             "value in vars, the contact's vars or the "
                             "built-ins",
                             used, missing);
    }
    if (rc != 0)
        return rcd_api_fail (err, 500, "internal_error", NULL, "out of memory");
    size_t len = strlen (*out_p);
    if (len < 1 || len > S_BODY_MAX) {
        free (*out_p);
        *out_p = NULL;
        snprintf (field, sizeof field, "%svars", prefix);
        return rcd_api_fail (err, 400, "invalid_field", field,
                             "the text rendered from template \"%.100s\" "
                             "must be 1 to %d bytes",
                             used, S_BODY_MAX);
    }
    return 0;
}

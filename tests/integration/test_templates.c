/*  test_templates.c - message templates (PUT/GET /v1/templates) and
    messages rendered from them at ingest, against a real PostgreSQL over
    real HTTP on loopback.

    The ingestor actor runs in process on a free port with a fresh
    database, as in test_contacts.c. Tenant a has a generic template
    (set by the fallback test); tenant b never has one, so "no template
    to fall back to" is checked there. Every refused request is checked
    to have stored nothing by counting rows before and after.
*/
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"

typedef struct {
    rcd_test_ingestor_t ing; /* the ingestor, its database and port */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
} fixture_t;

static fixture_t s_fx;

/*  --- helpers --- */

/*  rcd_test_api_expect on this test's ingestor. */
static json_t *
s_expect (long expected, const char *method, const char *path, const char *key,
          const char *body)
{
    return rcd_test_api_expect (s_fx.ing.port, expected, method, path, key,
                                body);
}

/*  rcd_test_api_expect_error of a 400 on this test's ingestor. */
static void
s_expect_error (const char *method, const char *path, const char *key,
                const char *body, const char *code, const char *field)
{
    rcd_test_api_expect_error (s_fx.ing.port, 400, method, path, key, body,
                               code, field);
}

/*  Rows of messages, message_history and templates, all tenants: a
    refused request must leave all three as they were. */
typedef struct {
    long long messages, history, templates;
} s_rows_t;

static s_rows_t
s_rows (void)
{
    s_rows_t rows;
    rows.messages = rcd_test_sql_int (s_fx.ing.url,
                                      "SELECT count(*) FROM messages", 0, NULL);
    rows.history = rcd_test_sql_int (
        s_fx.ing.url, "SELECT count(*) FROM message_history", 0, NULL);
    rows.templates = rcd_test_sql_int (
        s_fx.ing.url, "SELECT count(*) FROM templates", 0, NULL);
    return rows;
}

static void
s_assert_rows (s_rows_t before, long long messages, long long templates)
{
    s_rows_t after = s_rows ();
    assert_int_equal (after.messages, before.messages + messages);
    /* each stored message has its one 'accepted' history row */
    assert_int_equal (after.history, before.history + messages);
    assert_int_equal (after.templates, before.templates + templates);
}

/*  Stores a template, asserting 200; frees the answer. */
static void
s_put_template (const char *key, const char *tenant_key, const char *variations)
{
    char path[160], body[8192];
    snprintf (path, sizeof path, "/v1/templates/%s", key);
    snprintf (body, sizeof body, "{\"variations\":%s}", variations);
    json_decref (s_expect (200, "PUT", path, tenant_key, body));
}

/*  The stored body of message id as GET /v1/messages/{id} shows it.
    Caller frees. */
static char *
s_text_of (long long id, const char *tenant_key)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    json_t *a = s_expect (200, "GET", path, tenant_key, NULL);
    assert_non_null (rcd_test_str (a, "text"));
    char *text = strdup (rcd_test_str (a, "text"));
    json_decref (a);
    return text;
}

/*  Posts one message, asserting 202; answers its id. */
static long long
s_post (const char *tenant_key, const char *body)
{
    json_t *a = s_expect (202, "POST", "/v1/messages", tenant_key, body);
    long long id = json_integer_value (json_object_get (a, "id"));
    assert_true (id > 0);
    json_decref (a);
    return id;
}

/*  Posts one message and asserts its stored text. */
static void
s_post_renders (const char *tenant_key, const char *body, const char *expected)
{
    long long id = s_post (tenant_key, body);
    char *text = s_text_of (id, tenant_key);
    if (strcmp (text, expected) != 0)
        fail_msg ("%s: expected text \"%s\", got \"%s\"", body, expected, text);
    free (text);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    rcd_test_ingestor_start (&s_fx.ing, "templates", ADMIN_KEY, 4);
    s_fx.key_a = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant a",
                                         &s_fx.tenant_a);
    s_fx.key_b = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant b",
                                         &s_fx.tenant_b);
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    free (s_fx.key_a);
    free (s_fx.key_b);
    curl_global_cleanup ();
    return 0;
}

/*  --- PUT / GET --- */

static void
test_put_creates_replaces_and_lists_per_tenant (void **state)
{
    (void)state;
    json_t *a =
        s_expect (200, "PUT", "/v1/templates/billing.v1-x_Y", s_fx.key_a,
                  "{\"variations\":[\"Olá {{name}}\","
                  "\"Oi {{ name }}, tudo bem?\"]}");
    assert_string_equal (rcd_test_str (a, "key"), "billing.v1-x_Y");
    json_t *v = json_object_get (a, "variations");
    assert_int_equal (json_array_size (v), 2);
    assert_string_equal (json_string_value (json_array_get (v, 0)),
                         "Olá {{name}}");
    assert_string_equal (json_string_value (json_array_get (v, 1)),
                         "Oi {{ name }}, tudo bem?");
    assert_non_null (rcd_test_str (a, "created_at"));
    assert_non_null (rcd_test_str (a, "updated_at"));
    char *created = strdup (rcd_test_str (a, "created_at"));
    json_decref (a);

    /* replacing keeps one row and its created_at */
    s_rows_t before = s_rows ();
    a = s_expect (200, "PUT", "/v1/templates/billing.v1-x_Y", s_fx.key_a,
                  "{\"variations\":[\"Só uma {{name}}\"]}");
    v = json_object_get (a, "variations");
    assert_int_equal (json_array_size (v), 1);
    assert_string_equal (json_string_value (json_array_get (v, 0)),
                         "Só uma {{name}}");
    assert_string_equal (rcd_test_str (a, "created_at"), created);
    assert_true (strcmp (rcd_test_str (a, "updated_at"), created) >= 0);
    json_decref (a);
    s_assert_rows (before, 0, 0);
    free (created);

    /* boundaries: a 100-character key, 20 variations, 4096 characters
       (multi-byte: characters, not bytes, count); text with braces that
       open no placeholder is fine */
    char key[101];
    memset (key, 'k', 100);
    key[100] = '\0';
    char path[160];
    snprintf (path, sizeof path, "/v1/templates/%s", key);
    json_t *vars = json_array ();
    for (int i = 0; i < 19; i++)
        json_array_append_new (vars, json_sprintf ("v%d {x} }} {{n%d}}", i, i));
    char *long_text = malloc (4096 * 2 + 1);
    assert_non_null (long_text);
    for (int i = 0; i < 4096; i++)
        memcpy (long_text + 2 * i, "é", 2);
    long_text[4096 * 2] = '\0';
    json_array_append_new (vars, json_string (long_text));
    free (long_text);
    json_t *body = json_pack ("{s:o}", "variations", vars);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    a = s_expect (200, "PUT", path, s_fx.key_a, text);
    free (text);
    assert_int_equal (json_array_size (json_object_get (a, "variations")), 20);
    json_decref (a);

    /* the listing, sorted by key; tenant b sees none of it */
    s_put_template ("aaa", s_fx.key_a, "[\"primeiro\"]");
    a = s_expect (200, "GET", "/v1/templates", s_fx.key_a, NULL);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 3);
    assert_string_equal (rcd_test_str (json_array_get (items, 0), "key"),
                         "aaa");
    assert_string_equal (rcd_test_str (json_array_get (items, 1), "key"),
                         "billing.v1-x_Y");
    assert_string_equal (rcd_test_str (json_array_get (items, 2), "key"), key);
    json_t *first = json_array_get (items, 0);
    assert_string_equal (json_string_value (json_array_get (
                             json_object_get (first, "variations"), 0)),
                         "primeiro");
    assert_non_null (rcd_test_str (first, "created_at"));
    json_decref (a);
    a = s_expect (200, "GET", "/v1/templates", s_fx.key_b, NULL);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 0);
    json_decref (a);
}

static void
test_put_refuses_every_invalid_input_and_keeps_the_old (void **state)
{
    (void)state;
    s_put_template ("kept", s_fx.key_a, "[\"antes {{name}}\"]");
    char long_key[102];
    memset (long_key, 'k', 101);
    long_key[101] = '\0';
    char long_path[160];
    snprintf (long_path, sizeof long_path, "/v1/templates/%s", long_key);
    /* 4097 characters, 21 variations */
    char *oversize = malloc (4097 + 32);
    assert_non_null (oversize);
    strcpy (oversize, "{\"variations\":[\"");
    size_t at = strlen (oversize);
    memset (oversize + at, 'a', 4097);
    strcpy (oversize + at + 4097, "\"]}");
    json_t *many = json_array ();
    for (int i = 0; i < 21; i++)
        json_array_append_new (many, json_sprintf ("v%d", i));
    json_t *many_body = json_pack ("{s:o}", "variations", many);
    char *too_many = json_dumps (many_body, JSON_COMPACT);
    json_decref (many_body);
    char name65[160];
    snprintf (name65, sizeof name65, "{\"variations\":[\"{{%065d}}\"]}", 0);
    const struct {
        const char *path, *body, *code, *field;
    } cases[] = {
        {"/v1/templates/bad%20key", "{\"variations\":[\"x\"]}", "invalid_field",
         "key"},
        {"/v1/templates/caf%C3%A9", "{\"variations\":[\"x\"]}", "invalid_field",
         "key"},
        {"/v1/templates/a%2Cb", "{\"variations\":[\"x\"]}", "invalid_field",
         "key"},
        {long_path, "{\"variations\":[\"x\"]}", "invalid_field", "key"},
        {"/v1/templates/kept", "", "invalid_json", NULL},
        {"/v1/templates/kept", "{\"variations\":", "invalid_json", NULL},
        {"/v1/templates/kept", "[\"x\"]", "invalid_json", NULL},
        {"/v1/templates/kept", "{}", "missing_field", "variations"},
        {"/v1/templates/kept", "{\"variations\":null}", "missing_field",
         "variations"},
        {"/v1/templates/kept", "{\"variations\":\"Olá\"}", "invalid_field",
         "variations"},
        {"/v1/templates/kept", "{\"variations\":{\"0\":\"Olá\"}}",
         "invalid_field", "variations"},
        {"/v1/templates/kept", "{\"variations\":[]}", "invalid_field",
         "variations"},
        {"/v1/templates/kept", too_many, "invalid_field", "variations"},
        {"/v1/templates/kept", "{\"variations\":[\"ok\",\"\"]}",
         "invalid_field", "variations[1]"},
        {"/v1/templates/kept", "{\"variations\":[\"ok\",5]}", "invalid_field",
         "variations[1]"},
        {"/v1/templates/kept", "{\"variations\":[null]}", "invalid_field",
         "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[true]}", "invalid_field",
         "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[[\"Olá\"]]}", "invalid_field",
         "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[{\"text\":\"Olá\"}]}",
         "invalid_field", "variations[0]"},
        {"/v1/templates/kept", oversize, "invalid_field", "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[\"Olá {{\"]}", "invalid_field",
         "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[\"ok\",\"a {{ }} b\"]}",
         "invalid_field", "variations[1]"},
        {"/v1/templates/kept", "{\"variations\":[\"a {{a b}} c\"]}",
         "invalid_field", "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[\"a {{x} c\"]}",
         "invalid_field", "variations[0]"},
        {"/v1/templates/kept",
         "{\"variations\":[\"a {{x}}\",\"b\",\"{{y}} {{\"]}", "invalid_field",
         "variations[2]"},
        {"/v1/templates/kept", "{\"variations\":[\"{{na-me}}\"]}",
         "invalid_field", "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[\"{{}}\"]}", "invalid_field",
         "variations[0]"},
        {"/v1/templates/kept", name65, "invalid_field", "variations[0]"},
        {"/v1/templates/kept", "{\"variations\":[\"x\"],\"language\":\"pt\"}",
         "invalid_field", "language"},
    };
    s_rows_t before = s_rows ();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_expect_error ("PUT", cases[i].path, s_fx.key_a, cases[i].body,
                        cases[i].code, cases[i].field);
    s_assert_rows (before, 0, 0);
    free (too_many);
    free (oversize);

    /* the stored template is untouched */
    char *stored =
        rcd_test_sql (s_fx.ing.url,
                      "SELECT array_to_json(variations)::text FROM templates"
                      " WHERE key = 'kept'",
                      0, NULL);
    assert_string_equal (stored, "[\"antes {{name}}\"]");
    free (stored);

    /* no key, no tenant */
    json_decref (s_expect (401, "PUT", "/v1/templates/kept", NULL,
                           "{\"variations\":[]}"));
}

/*  --- rendering messages --- */

static void
test_message_text_is_rendered_at_ingest (void **state)
{
    (void)state;
    s_put_template ("lembrete", s_fx.key_a,
                    "[\"Olá {{name}}, seu plano {{plan}} vence {{ dia }}.\"]");
    json_decref (s_expect (200, "PUT", "/v1/contacts/%2B5511998760101",
                           s_fx.key_a,
                           "{\"name\":\"Ana\",\"vars\":{\"plan\":\"gold\"}}"));
    s_rows_t before = s_rows ();
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+55 11 99876-0101\",\"template\":\"lembrete\","
                    "\"vars\":{\"dia\":\"amanhã\"}}",
                    "Olá Ana, seu plano gold vence amanhã.");
    /* the stored row holds the rendered text, not the template */
    char *body = rcd_test_sql (
        s_fx.ing.url,
        "SELECT body FROM messages WHERE to_phone = '+5511998760101'", 0, NULL);
    assert_string_equal (body, "Olá Ana, seu plano gold vence amanhã.");
    free (body);
    s_assert_rows (before, 1, 0);

    /* numbers are written in decimal; text around is copied as is */
    s_put_template ("numeros", s_fx.key_a,
                    "[\"{x} n={{n}} v={{v}} }} {{s}}\"]");
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760102\",\"template\":\"numeros\","
                    "\"vars\":{\"n\":3,\"v\":159.9,\"s\":\"ok\"}}",
                    "{x} n=3 v=159.9 }} ok");
    /* a template without placeholders needs no vars */
    s_put_template ("fixo", s_fx.key_a, "[\"Texto fixo\"]");
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760102\",\"template\":\"fixo\"}",
                    "Texto fixo");
}

static void
test_message_vars_beat_contact_vars_beat_the_name (void **state)
{
    (void)state;
    s_put_template ("prec", s_fx.key_a, "[\"{{name}}|{{plan}}|{{x}}\"]");
    json_decref (s_expect (200, "PUT", "/v1/contacts/%2B5511998760201",
                           s_fx.key_a,
                           "{\"name\":\"Ana\",\"vars\":{\"plan\":\"gold\","
                           "\"x\":\"do contato\"}}"));
    /* built-in name, contact vars, message vars */
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760201\",\"template\":\"prec\","
                    "\"vars\":{\"x\":\"da mensagem\"}}",
                    "Ana|gold|da mensagem");
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760201\",\"template\":\"prec\"}",
                    "Ana|gold|do contato");
    /* message vars beat everything, the name included */
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760201\",\"template\":\"prec\","
                    "\"vars\":{\"name\":\"Bia\",\"plan\":\"silver\"}}",
                    "Bia|silver|do contato");
    /* a contact var named "name" beats the contact's name */
    json_decref (s_expect (
        200, "PUT", "/v1/contacts/%2B5511998760201", s_fx.key_a,
        "{\"vars\":{\"name\":\"Sra. Ana\",\"plan\":\"gold\",\"x\":\"c\"}}"));
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760201\",\"template\":\"prec\"}",
                    "Sra. Ana|gold|c");
    /* a var null in the message is no value: the contact's is used */
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760201\",\"template\":\"prec\","
                    "\"vars\":null}",
                    "Sra. Ana|gold|c");
    /* another contact's vars are not used: x has no value for it */
    s_rows_t before = s_rows ();
    json_decref (s_expect (200, "PUT", "/v1/contacts/%2B5511998760202",
                           s_fx.key_a, "{\"name\":\"Caio\"}"));
    s_expect_error ("POST", "/v1/messages", s_fx.key_a,
                    "{\"to\":\"+5511998760202\",\"template\":\"prec\","
                    "\"vars\":{\"plan\":\"p\"}}",
                    "invalid_field", "vars.x");
    s_assert_rows (before, 0, 0);
}

static void
test_variation_is_chosen_by_message_id_and_spread_evenly (void **state)
{
    (void)state;
    s_put_template (
        "tri", s_fx.key_a,
        "[\"tri-0 {{name}}\",\"tri-1 {{name}}\",\"tri-2 {{name}}\"]");
    json_t *items = json_array ();
    for (int i = 0; i < 300; i++)
        json_array_append_new (items, json_pack ("{s:s, s:s, s:{s:o}}", "to",
                                                 "+5511998760301", "template",
                                                 "tri", "vars", "name",
                                                 json_sprintf ("N%d", i)));
    json_t *req = json_pack ("{s:o}", "items", items);
    char *text = json_dumps (req, JSON_COMPACT);
    json_decref (req);
    json_t *a = s_expect (207, "POST", "/v1/messages/batch", s_fx.key_a, text);
    free (text);
    json_t *answers = json_object_get (a, "items");
    assert_int_equal (json_array_size (answers), 300);
    /* each item's text is variations[id % 3], with its own vars */
    for (size_t i = 0; i < 300; i++) {
        json_t *item = json_array_get (answers, i);
        assert_null (json_object_get (item, "error"));
        long long id = json_integer_value (json_object_get (item, "id"));
        assert_true (id > 0);
        char expected[64], p[24];
        snprintf (expected, sizeof expected, "tri-%lld N%zu", id % 3, i);
        snprintf (p, sizeof p, "%lld", id);
        const char *params[] = {p};
        char *body = rcd_test_sql (
            s_fx.ing.url, "SELECT body FROM messages WHERE id = $1::bigint", 1,
            params);
        assert_non_null (body);
        if (strcmp (body, expected) != 0)
            fail_msg ("item %zu id %lld: expected \"%s\", got \"%s\"", i, id,
                      expected, body);
        free (body);
    }
    /* 100 each */
    for (int v = 0; v < 3; v++) {
        char like[16];
        snprintf (like, sizeof like, "tri-%d %%", v);
        const char *params[] = {like};
        assert_int_equal (
            rcd_test_sql_int (
                s_fx.ing.url,
                "SELECT count(*) FROM messages WHERE body LIKE $1", 1, params),
            100);
    }
    /* GET shows the same text */
    long long id = json_integer_value (
        json_object_get (json_array_get (answers, 7), "id"));
    char expected[64];
    snprintf (expected, sizeof expected, "tri-%lld N7", id % 3);
    char *got = s_text_of (id, s_fx.key_a);
    assert_string_equal (got, expected);
    free (got);
    json_decref (a);

    /* a retry with the same idempotency key answers the stored message,
       with the text it was first given */
    const char *retry =
        "{\"to\":\"+5511998760302\",\"template\":\"tri\","
        "\"vars\":{\"name\":\"R\"},\"idempotency_key\":\"k-1\"}";
    long long first = s_post (s_fx.key_a, retry);
    char *text1 = s_text_of (first, s_fx.key_a);
    a = s_expect (200, "POST", "/v1/messages", s_fx.key_a, retry);
    assert_int_equal (json_integer_value (json_object_get (a, "id")), first);
    json_decref (a);
    char *text2 = s_text_of (first, s_fx.key_a);
    assert_string_equal (text1, text2);
    snprintf (expected, sizeof expected, "tri-%lld R", first % 3);
    assert_string_equal (text1, expected);
    free (text1);
    free (text2);
}

static void
test_unknown_template_falls_back_to_the_generic_one (void **state)
{
    (void)state;
    /* no generic yet: an unknown template is refused, nothing stored */
    s_rows_t before = s_rows ();
    s_expect_error ("POST", "/v1/messages", s_fx.key_b,
                    "{\"to\":\"+5511998760401\",\"template\":\"nao-existe\"}",
                    "invalid_field", "template");
    /* tenant a's templates are not tenant b's */
    s_expect_error ("POST", "/v1/messages", s_fx.key_b,
                    "{\"to\":\"+5511998760401\",\"template\":\"lembrete\","
                    "\"vars\":{\"dia\":\"x\",\"plan\":\"y\",\"name\":\"z\"}}",
                    "invalid_field", "template");
    /* a generic key naming no stored template is no fallback either */
    json_decref (s_expect (200, "PATCH", "/v1/tenant", s_fx.key_b,
                           "{\"generic_template\":\"generico\"}"));
    s_expect_error ("POST", "/v1/messages", s_fx.key_b,
                    "{\"to\":\"+5511998760401\",\"template\":\"nao-existe\"}",
                    "invalid_field", "template");
    json_decref (s_expect (200, "PATCH", "/v1/tenant", s_fx.key_b,
                           "{\"generic_template\":null}"));
    s_assert_rows (before, 0, 0);

    /* with a generic template: an unknown key renders the generic one */
    s_put_template ("generico", s_fx.key_a,
                    "[\"Mensagem geral para {{name}}\"]");
    json_decref (s_expect (200, "PATCH", "/v1/tenant", s_fx.key_a,
                           "{\"generic_template\":\"generico\"}"));
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760402\",\"template\":\"nao-existe\","
                    "\"vars\":{\"name\":\"Duda\"}}",
                    "Mensagem geral para Duda");
    /* a known key still renders itself */
    s_post_renders (s_fx.key_a,
                    "{\"to\":\"+5511998760402\",\"template\":\"fixo\"}",
                    "Texto fixo");
    /* the generic one's placeholders need values too, named as usual */
    before = s_rows ();
    s_expect_error ("POST", "/v1/messages", s_fx.key_a,
                    "{\"to\":\"+5511998760403\",\"template\":\"nao-existe\"}",
                    "invalid_field", "vars.name");
    s_assert_rows (before, 0, 0);
}

static void
test_a_placeholder_without_value_stores_nothing (void **state)
{
    (void)state;
    s_put_template ("falta", s_fx.key_a,
                    "[\"{{saudacao}} {{name}}, valor {{valor}}\"]");
    s_rows_t before = s_rows ();
    s_expect_error ("POST", "/v1/messages", s_fx.key_a,
                    "{\"to\":\"+5511998760501\",\"template\":\"falta\","
                    "\"vars\":{\"name\":\"Eva\",\"valor\":\"R$ 1,00\"}}",
                    "invalid_field", "vars.saudacao");
    s_expect_error ("POST", "/v1/messages", s_fx.key_a,
                    "{\"to\":\"+5511998760501\",\"template\":\"falta\","
                    "\"vars\":{\"saudacao\":\"Oi\",\"name\":\"Eva\"}}",
                    "invalid_field", "vars.valor");
    /* no contact stored: the built-in name has no value */
    s_expect_error ("POST", "/v1/messages", s_fx.key_a,
                    "{\"to\":\"+5511998760501\",\"template\":\"falta\","
                    "\"vars\":{\"saudacao\":\"Oi\",\"valor\":\"1\"}}",
                    "invalid_field", "vars.name");
    s_assert_rows (before, 0, 0);

    /* in a batch, that item gets the error and the others are stored */
    json_t *a = s_expect (
        207, "POST", "/v1/messages/batch", s_fx.key_a,
        "{\"items\":["
        "{\"to\":\"+5511998760502\",\"template\":\"falta\","
        "\"vars\":{\"saudacao\":\"Oi\",\"name\":\"A\",\"valor\":\"1\"}},"
        "{\"to\":\"+5511998760503\",\"template\":\"falta\","
        "\"vars\":{\"saudacao\":\"Oi\",\"name\":\"B\"}},"
        "{\"to\":\"+5511998760504\",\"text\":\"texto livre\"},"
        "{\"to\":\"+5511998760505\",\"template\":\"falta\","
        "\"vars\":{\"saudacao\":\"Olá\",\"name\":\"C\",\"valor\":3}},"
        "{\"to\":\"+5511998760506\",\"template\":\"falta\","
        "\"vars\":{\"name\":\"D\",\"valor\":3}}"
        "]}");
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), 5);
    const char *expected[] = {"Oi A, valor 1", NULL, "texto livre",
                              "Olá C, valor 3", NULL};
    const char *fields[] = {NULL, "items[1].vars.valor", NULL, NULL,
                            "items[4].vars.saudacao"};
    for (size_t i = 0; i < 5; i++) {
        json_t *item = json_array_get (items, i);
        assert_int_equal (json_integer_value (json_object_get (item, "index")),
                          i);
        if (fields[i]) {
            assert_null (json_object_get (item, "id"));
            rcd_test_assert_api_error (item, "invalid_field", fields[i]);
            continue;
        }
        assert_null (json_object_get (item, "error"));
        long long id = json_integer_value (json_object_get (item, "id"));
        char *text = s_text_of (id, s_fx.key_a);
        assert_string_equal (text, expected[i]);
        free (text);
    }
    json_decref (a);
    s_assert_rows (before, 3, 0);
}

static void
test_template_and_vars_are_checked_with_the_message (void **state)
{
    (void)state;
    s_rows_t before = s_rows ();
    const struct {
        const char *body, *code, *field;
    } cases[] = {
        {"{\"to\":\"+5511998760601\",\"text\":\"oi\",\"template\":\"fixo\"}",
         "invalid_field", "template"},
        {"{\"to\":\"+5511998760601\",\"text\":\"oi\",\"vars\":{\"a\":\"b\"}}",
         "invalid_field", "vars"},
        {"{\"to\":\"+5511998760601\",\"vars\":{\"a\":\"b\"}}", "missing_field",
         "text"},
        {"{\"to\":\"+5511998760601\"}", "missing_field", "text"},
        {"{\"to\":\"+5511998760601\",\"template\":\"\"}", "invalid_field",
         "template"},
        {"{\"to\":\"+5511998760601\",\"template\":5}", "invalid_field",
         "template"},
        {"{\"to\":\"+5511998760601\",\"template\":[\"fixo\"]}", "invalid_field",
         "template"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\",\"vars\":\"a=b\"}",
         "invalid_field", "vars"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\",\"vars\":[1]}",
         "invalid_field", "vars"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\","
         "\"vars\":{\"a\":[1]}}",
         "invalid_field", "vars.a"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\","
         "\"vars\":{\"a\":{\"b\":1}}}",
         "invalid_field", "vars.a"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\","
         "\"vars\":{\"a\":true}}",
         "invalid_field", "vars.a"},
        {"{\"to\":\"+5511998760601\",\"template\":\"fixo\","
         "\"vars\":{\"nome completo\":\"x\"}}",
         "invalid_field", "vars"},
        {"{\"to\":\"not a phone\",\"template\":\"fixo\"}", "invalid_phone",
         "to"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_expect_error ("POST", "/v1/messages", s_fx.key_a, cases[i].body,
                        cases[i].code, cases[i].field);
    s_assert_rows (before, 0, 0);

    /* the same in a batch, each item named; the good one is stored */
    json_t *items = json_array ();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        json_array_append_new (items, json_loads (cases[i].body, 0, NULL));
    json_array_append_new (
        items,
        json_pack ("{s:s, s:s}", "to", "+5511998760602", "template", "fixo"));
    json_t *req = json_pack ("{s:o}", "items", items);
    char *text = json_dumps (req, JSON_COMPACT);
    json_decref (req);
    json_t *a = s_expect (207, "POST", "/v1/messages/batch", s_fx.key_a, text);
    free (text);
    json_t *answers = json_object_get (a, "items");
    size_t n = sizeof cases / sizeof cases[0];
    assert_int_equal (json_array_size (answers), n + 1);
    for (size_t i = 0; i < n; i++) {
        char field[64];
        snprintf (field, sizeof field, "items[%zu].%s", i, cases[i].field);
        rcd_test_assert_api_error (json_array_get (answers, i), cases[i].code,
                                   field);
    }
    long long id = json_integer_value (
        json_object_get (json_array_get (answers, n), "id"));
    assert_true (id > 0);
    char *got = s_text_of (id, s_fx.key_a);
    assert_string_equal (got, "Texto fixo");
    free (got);
    json_decref (a);
    s_assert_rows (before, 1, 0);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_put_creates_replaces_and_lists_per_tenant),
        cmocka_unit_test (
            test_put_refuses_every_invalid_input_and_keeps_the_old),
        cmocka_unit_test (test_message_text_is_rendered_at_ingest),
        cmocka_unit_test (test_message_vars_beat_contact_vars_beat_the_name),
        cmocka_unit_test (
            test_variation_is_chosen_by_message_id_and_spread_evenly),
        cmocka_unit_test (test_unknown_template_falls_back_to_the_generic_one),
        cmocka_unit_test (test_a_placeholder_without_value_stores_nothing),
        cmocka_unit_test (test_template_and_vars_are_checked_with_the_message),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

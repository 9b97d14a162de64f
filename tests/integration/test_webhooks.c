/*  test_webhooks.c - gateway webhooks (issue 5): Evolution API v2 and Meta
    Cloud API events posted to the ingestor over real HTTP on loopback,
    their effects read back through the API and from PostgreSQL.

    The payloads are the files of tests/fixtures/webhooks (its README says
    where each shape comes from and what the placeholders are), filled in
    per test. Messages in the state an event needs (sent with a provider
    id, unknown, pending) are put in place with SQL, as the sender would
    leave them. Every id and phone number is unique to its test, so the
    tests share one database and one ingestor.

    Three tenants: a and b each have an Evolution and a Meta instance, c
    an Evolution instance and its own opt-out keywords; a also has
    "evo-conn" for the connection events.
*/
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef RCD_WEBHOOK_FIXTURES
#error "RCD_WEBHOOK_FIXTURES must name the folder tests/fixtures/webhooks"
#endif

#define ADMIN_KEY "test-admin-key"
#define S_SHOTS   50 /* concurrent deliveries of one event */

enum { TA, TB, TC, N_TENANTS }; /* the tenants' indexes */

/*  What the instances are called and hold (indexed by tenant). */
static const char *const s_evo_name[N_TENANTS] = {"evo-a", "evo-b", "evo-c"};
static const char *const s_evo_key[N_TENANTS] = {"evo-key-a", "evo-key-b",
                                                 "evo-key-c"};
static const char *const s_meta_name[2] = {"meta-a", "meta-b"};
static const char *const s_pnid[2] = {"106540352242922", "106540352242933"};
static const char *const s_secret[2] = {"app-secret-a", "app-secret-b"};
static const char *const s_verify_token[2] = {"verify-token-a",
                                              "verify-token-b"};
#define S_OWNER_JID "5511940028922@s.whatsapp.net"

typedef struct {
    rcd_test_ingestor_t ing;     /* the ingestor, its database and port */
    char *key[N_TENANTS];        /* tenants' API keys */
    long long tenant[N_TENANTS]; /* tenants' ids */
    char *token[N_TENANTS];      /* tenants' webhook tokens */
    long long evo[N_TENANTS];    /* Evolution instance ids */
    long long meta[2];           /* Meta instance ids of a and b */
    long long conn;              /* a's "evo-conn" */
    int seq;                     /* last unique suffix handed out */
} fixture_t;

static fixture_t s_fx;

/*  --- unique values --- */

/*  v as decimal text in buf. */
static const char *
s_ll (char *buf, long long v)
{
    snprintf (buf, 24, "%lld", v);
    return buf;
}
#define S_LL(v) s_ll ((char[24]){0}, (v))

/*  A fresh mobile number of São Paulo, "+5511987650001"-like: the eight
    digits after the 9 start with 8, so the number without its ninth
    digit is still a mobile. */
static void
s_phone (char out[20])
{
    snprintf (out, 20, "+55119%08d", 87650000 + ++s_fx.seq);
}

/*  The jid of phone ("+55..."), with or without the ninth digit. */
static void
s_jid (char out[48], const char *phone)
{
    snprintf (out, 48, "%s@s.whatsapp.net", phone + 1);
}

static void
s_jid_without_nine (char out[48], const char *phone)
{
    /* "+55" "11" "9" "87650001" */
    snprintf (out, 48, "%.4s%s@s.whatsapp.net", phone + 1, phone + 6);
}

/*  A fresh Evolution key id, the form sendText answers (3EB0 + hex). */
static void
s_key_id (char out[48])
{
    snprintf (out, 48, "3EB0%04X%032X", (unsigned)getpid () & 0xffff,
              (unsigned)++s_fx.seq);
}

/*  A fresh Meta message id. */
static void
s_wamid (char out[80])
{
    snprintf (out, 80, "wamid.HBgNNTUxMTk4NzY1%06u%08uFQIAERgSQUJD",
              (unsigned)getpid () % 1000000u, (unsigned)++s_fx.seq);
}

/*  --- fixtures --- */

/*  The values of one event's placeholders; NULL takes the default of
    s_var (or fails the test for the ones without a default). */
typedef struct {
    const char *instance;        /* {{INSTANCE}} */
    const char *apikey;          /* {{APIKEY}} */
    const char *key_id;          /* {{KEY_ID}} */
    const char *phone_jid;       /* {{PHONE_JID}} */
    const char *lid_jid;         /* {{LID_JID}} */
    const char *group_jid;       /* {{GROUP_JID}} */
    const char *text;            /* {{TEXT}} */
    const char *push_name;       /* {{PUSH_NAME}} */
    const char *phone_number_id; /* {{PHONE_NUMBER_ID}} */
    const char *wamid;           /* {{WAMID}} */
    const char *wa_id;           /* {{WA_ID}} */
} s_vars_t;

static const char *
s_var (const s_vars_t *v, const char *name)
{
    static char now[24];
    snprintf (now, sizeof now, "%lld", (long long)time (NULL));
    static const struct {
        const char *name;
        size_t offset;
        const char *fallback;
    } table[] = {
        {"INSTANCE", offsetof (s_vars_t, instance), "evo-a"},
        {"APIKEY", offsetof (s_vars_t, apikey), "evo-key-a"},
        {"KEY_ID", offsetof (s_vars_t, key_id), NULL},
        {"PHONE_JID", offsetof (s_vars_t, phone_jid), NULL},
        {"LID_JID", offsetof (s_vars_t, lid_jid), "201234567890123@lid"},
        {"GROUP_JID", offsetof (s_vars_t, group_jid),
         "120363041234567890@g.us"},
        {"TEXT", offsetof (s_vars_t, text), NULL},
        {"PUSH_NAME", offsetof (s_vars_t, push_name), "Cliente Teste"},
        {"PHONE_NUMBER_ID", offsetof (s_vars_t, phone_number_id),
         "106540352242922"},
        {"WAMID", offsetof (s_vars_t, wamid), NULL},
        {"WA_ID", offsetof (s_vars_t, wa_id), NULL},
    };
    if (strcmp (name, "OWNER_JID") == 0)
        return S_OWNER_JID;
    if (strcmp (name, "TS") == 0)
        return now;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp (table[i].name, name) == 0) {
            const char *value =
                *(const char *const *)((const char *)v + table[i].offset);
            return value ? value : table[i].fallback;
        }
    return NULL;
}

typedef struct {
    char *data;
    size_t len, cap;
} s_buf_t;

static void
s_buf_add (s_buf_t *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc (b->data, b->cap);
        assert_non_null (b->data);
    }
    memcpy (b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

/*  Appends s as the inside of a JSON string. */
static void
s_buf_add_escaped (s_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            s_buf_add (b, esc, 2);
        }
        else if (*p < 0x20) {
            snprintf (esc, sizeof esc, "\\u%04x", *p);
            s_buf_add (b, esc, 6);
        }
        else
            s_buf_add (b, (const char *)p, 1);
    }
}

/*  The fixture file with its placeholders filled from v (README: {{X}}
    inside a string is replaced JSON-escaped, "{{#X}}" with its quotes by
    the bare number). Caller frees. */
static char *
s_fill (const char *file, const s_vars_t *v)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s", RCD_WEBHOOK_FIXTURES, file);
    FILE *f = fopen (path, "rb");
    if (!f)
        fail_msg ("cannot open fixture %s", path);
    s_buf_t text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread (chunk, 1, sizeof chunk, f)) > 0)
        s_buf_add (&text, chunk, n);
    fclose (f);
    assert_non_null (text.data);

    s_buf_t out = {0};
    const char *p = text.data;
    while (*p) {
        bool number = strncmp (p, "\"{{#", 4) == 0;
        if (!number && strncmp (p, "{{", 2) != 0) {
            s_buf_add (&out, p++, 1);
            continue;
        }
        const char *name = p + (number ? 4 : 2);
        const char *end = strstr (name, "}}");
        char key[40];
        if (!end || end - name >= (long)sizeof key)
            fail_msg ("%s: unterminated placeholder", file);
        memcpy (key, name, (size_t)(end - name));
        key[end - name] = 0;
        const char *value = s_var (v, key);
        if (!value)
            fail_msg ("%s: no value for placeholder %s", file, key);
        p = end + 2;
        if (number) {
            if (*p != '"')
                fail_msg ("%s: \"{{#%s}}\" must be a whole string", file, key);
            p++;
            s_buf_add (&out, value, strlen (value));
        }
        else
            s_buf_add_escaped (&out, value);
    }
    free (text.data);
    /* what the test sends must be JSON */
    json_error_t error;
    json_t *check = json_loads (out.data, 0, &error);
    if (!check)
        fail_msg ("%s filled is not JSON: %s", file, error.text);
    json_decref (check);
    return out.data;
}

/*  s_fill, parsed, for tests that change a member before sending. Caller
    decrefs. */
static json_t *
s_fill_json (const char *file, const s_vars_t *v)
{
    char *text = s_fill (file, v);
    json_t *doc = json_loads (text, 0, NULL);
    free (text);
    assert_non_null (doc);
    return doc;
}

static char *
s_dump (json_t *doc)
{
    char *text = json_dumps (doc, JSON_COMPACT);
    assert_non_null (text);
    return text;
}

/*  --- HTTP --- */

typedef struct {
    long status;  /* 0: the request failed */
    json_t *json; /* the answer parsed, or NULL */
} s_answer_t;

static s_answer_t
s_http (const char *method, const char *path, const char *body,
        const char *const *headers)
{
    char url[1024];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", s_fx.ing.port, path);
    rcd_test_http_t res = rcd_test_http (method, url, NULL, body, headers);
    s_answer_t a = {res.status,
                    res.size ? json_loadb (res.body, res.size, 0, NULL) : NULL};
    rcd_test_http_free (&res);
    return a;
}

/*  How an Evolution post carries the webhook token. */
typedef enum { S_HEADER, S_QUERY, S_NO_TOKEN } s_token_how_t;

/*  POSTs body to /v1/webhooks/evolution/{tenant_id} with token. */
static s_answer_t
s_evo_post_as (long long tenant_id, const char *token, s_token_how_t how,
               const char *body)
{
    char path[512], header[512];
    if (how == S_QUERY)
        snprintf (path, sizeof path, "/v1/webhooks/evolution/%lld?token=%s",
                  tenant_id, token);
    else
        snprintf (path, sizeof path, "/v1/webhooks/evolution/%lld", tenant_id);
    snprintf (header, sizeof header, "X-Webhook-Token: %s", token);
    const char *headers[] = {header, NULL};
    return s_http ("POST", path, body, how == S_HEADER ? headers : NULL);
}

/*  The X-Hub-Signature-256 header line of body signed with secret,
    computed here with libcrypto (not with the ingestor's own helper). */
static void
s_signature (char out[128], const char *secret, const char *body)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    assert_non_null (HMAC (EVP_sha256 (), secret, (int)strlen (secret),
                           (const unsigned char *)body, strlen (body), mac,
                           &len));
    int n = snprintf (out, 128, "X-Hub-Signature-256: sha256=");
    for (unsigned int i = 0; i < len; i++)
        n += snprintf (out + n, (size_t)(128 - n), "%02x", mac[i]);
}

/*  POSTs body to /v1/webhooks/meta with header (one line or NULL). */
static s_answer_t
s_meta_post_with (const char *body, const char *header)
{
    const char *headers[] = {header, NULL};
    return s_http ("POST", "/v1/webhooks/meta", body, header ? headers : NULL);
}

/*  Asserts a 200 webhook answer with every count present; frees nothing.
    what names the request in the failure. */
static void
s_assert_ok (s_answer_t *a, const char *what)
{
    if (a->status != 200) {
        char *text = a->json ? json_dumps (a->json, JSON_COMPACT) : NULL;
        fail_msg ("%s: expected 200, got %ld: %.400s", what, a->status,
                  text ? text : "");
    }
    static const char *const counts[] = {"received", "applied", "duplicates",
                                         "unmatched", "ignored"};
    for (size_t i = 0; i < 5; i++)
        if (!json_is_integer (json_object_get (a->json, counts[i])))
            fail_msg ("%s: the answer has no integer \"%s\"", what, counts[i]);
}

/*  Asserts the counts of a webhook answer; -1 leaves one unchecked.
    "applied" counts the events newly stored that found what they speak
    of, whatever they did to it (applied, settled, stale, known,
    opted_out, no_phone): the outcome itself is read from webhook_events.
*/
static void
s_counts (json_t *a, long received, long applied, long duplicates,
          long unmatched, long ignored)
{
    static const char *const names[] = {"received", "applied", "duplicates",
                                        "unmatched", "ignored"};
    long want[] = {received, applied, duplicates, unmatched, ignored};
    for (size_t i = 0; i < 5; i++) {
        long got = (long)json_integer_value (json_object_get (a, names[i]));
        if (want[i] >= 0 && got != want[i]) {
            char *text = json_dumps (a, JSON_COMPACT);
            fail_msg ("\"%s\" is %ld, expected %ld in %s", names[i], got,
                      want[i], text);
        }
    }
}

/*  POSTs body for tenant t with its token in the header, asserting 200;
    returns the answer (caller decrefs). */
static json_t *
s_evo_ok (int t, const char *body)
{
    s_answer_t a =
        s_evo_post_as (s_fx.tenant[t], s_fx.token[t], S_HEADER, body);
    s_assert_ok (&a, body);
    return a.json;
}

/*  Fills file for tenant t (instance and apikey default to t's Evolution
    instance) and posts it; returns the 200 answer (caller decrefs). */
static json_t *
s_evo_file (int t, const char *file, const s_vars_t *v)
{
    s_vars_t w = *v;
    if (!w.instance)
        w.instance = s_evo_name[t];
    if (!w.apikey)
        w.apikey = s_evo_key[t];
    char *body = s_fill (file, &w);
    json_t *a = s_evo_ok (t, body);
    free (body);
    return a;
}

/*  POSTs body signed with Meta instance m's app secret, asserting 200;
    returns the answer (caller decrefs). */
static json_t *
s_meta_ok (int m, const char *body)
{
    char header[128];
    s_signature (header, s_secret[m], body);
    s_answer_t a = s_meta_post_with (body, header);
    s_assert_ok (&a, body);
    return a.json;
}

/*  Fills file for Meta instance m (phone_number_id defaults to m's) and
    posts it signed; returns the 200 answer (caller decrefs). */
static json_t *
s_meta_file (int m, const char *file, const s_vars_t *v)
{
    s_vars_t w = *v;
    if (!w.phone_number_id)
        w.phone_number_id = s_pnid[m];
    char *body = s_fill (file, &w);
    json_t *a = s_meta_ok (m, body);
    free (body);
    return a;
}

/*  Asserts a refusal: the status, the API.md error body with code and,
    when field is not NULL, that field. Frees the answer. */
static void
s_refused (s_answer_t a, long status, const char *code, const char *field,
           const char *what)
{
    char *text = a.json ? json_dumps (a.json, JSON_COMPACT) : NULL;
    if (a.status != status)
        fail_msg ("%s: expected %ld, got %ld: %.300s", what, status, a.status,
                  text ? text : "");
    json_t *err = json_object_get (a.json, "error");
    const char *got = json_string_value (json_object_get (err, "code"));
    if (!got || strcmp (got, code) != 0)
        fail_msg ("%s: expected error %s: %.300s", what, code,
                  text ? text : "");
    const char *message = json_string_value (json_object_get (err, "message"));
    if (!message || !*message)
        fail_msg ("%s: no error message: %.300s", what, text ? text : "");
    if (field) {
        const char *f = json_string_value (json_object_get (err, "field"));
        if (!f || strcmp (f, field) != 0)
            fail_msg ("%s: expected field %s: %.300s", what, field,
                      text ? text : "");
    }
    free (text);
    json_decref (a.json);
}

/*  --- database and API reads --- */

static long long
s_int (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql_int (s_fx.ing.url, sql, n, params);
}

static char *
s_text (const char *sql, int n, ...)
{
    const char *params[8];
    va_list ap;
    va_start (ap, n);
    for (int i = 0; i < n; i++)
        params[i] = va_arg (ap, const char *);
    va_end (ap);
    return rcd_test_sql (s_fx.ing.url, sql, n, params);
}

/*  A message of tenant t to phone with text, in status, through instance
    (0: none) with provider id (NULL: none), as the sender would leave
    it: an attempt made unless pending, sent_at a minute ago once sent. */
static long long
s_message (int t, long long instance, const char *phone, const char *status,
           const char *provider_id, const char *text)
{
    long long id = s_int (
        "INSERT INTO messages (tenant_id, to_phone, body, status, instance_id,"
        "                      provider_message_id, attempts, sent_at)"
        "VALUES ($1::bigint, $2, $3, $4, NULLIF($5::bigint, 0), $6,"
        "        CASE WHEN $4 = 'pending' THEN 0 ELSE 1 END,"
        "        CASE WHEN $4 IN ('sent', 'delivered', 'read')"
        "             THEN now() - interval '1 minute' END)"
        "RETURNING id",
        6, S_LL (s_fx.tenant[t]), phone,
        text ? text : "Sua fatura vence amanhã", status, S_LL (instance),
        provider_id);
    assert_true (id > 0);
    return id;
}

/*  Column col (an SQL expression of this test) of message id as text;
    NULL for SQL NULL. Caller frees. */
static char *
s_column (long long id, const char *col)
{
    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT (%s)::text FROM messages WHERE id = $1::bigint", col);
    return s_text (sql, 1, S_LL (id));
}

static void
s_assert_column (long long id, const char *col, const char *expected)
{
    char *value = s_column (id, col);
    if (!expected && value)
        fail_msg ("message %lld: %s is %s, expected NULL", id, col, value);
    if (expected && (!value || strcmp (value, expected) != 0))
        fail_msg ("message %lld: %s is %s, expected %s", id, col,
                  value ? value : "NULL", expected);
    free (value);
}
#define s_assert_status(id, status) s_assert_column ((id), "status", (status))

/*  History rows of message id in status. */
static long long
s_history (long long id, const char *status)
{
    return s_int ("SELECT count(*) FROM message_history"
                  " WHERE message_id = $1::bigint AND status = $2",
                  2, S_LL (id), status);
}

static long long
s_history_all (long long id)
{
    return s_int ("SELECT count(*) FROM message_history"
                  " WHERE message_id = $1::bigint",
                  1, S_LL (id));
}

static long long
s_dead_letters (long long id)
{
    return s_int ("SELECT count(*) FROM dead_letters"
                  " WHERE message_id = $1::bigint",
                  1, S_LL (id));
}

/*  The outcomes of tenant t's stored events that name id (a key id or
    wamid), oldest first, comma separated ("" for none). Caller frees. */
static char *
s_outcomes (int t, const char *id)
{
    char *text = s_text (
        "SELECT COALESCE(string_agg(outcome, ',' ORDER BY received_at), '')"
        "  FROM webhook_events"
        " WHERE tenant_id = $1::bigint"
        "   AND (provider_message_id = $2"
        "        OR strpos(event_key, $2) > 0"
        "        OR strpos(payload::text, $2) > 0)",
        2, S_LL (s_fx.tenant[t]), id);
    assert_non_null (text);
    return text;
}

static void
s_assert_outcomes (int t, const char *id, const char *expected)
{
    char *got = s_outcomes (t, id);
    if (strcmp (got, expected) != 0)
        fail_msg ("events naming %s: outcomes \"%s\", expected \"%s\"", id, got,
                  expected);
    free (got);
}

static long long
s_events_total (void)
{
    return s_int ("SELECT count(*) FROM webhook_events", 0);
}

/*  GET /v1/messages/{id} as tenant t. Caller decrefs. */
static json_t *
s_api_message (int t, long long id)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/messages/%lld", id);
    return rcd_test_api_expect (s_fx.ing.port, 200, "GET", path, s_fx.key[t],
                                NULL);
}

/*  The statuses of a message's history through the API, comma separated.
    Caller frees. */
static char *
s_api_history (int t, long long id)
{
    json_t *m = s_api_message (t, id);
    s_buf_t out = {0};
    s_buf_add (&out, "", 0);
    json_t *h;
    size_t i;
    json_array_foreach (json_object_get (m, "history"), i, h)
    {
        const char *status = rcd_test_str (h, "status");
        if (i > 0)
            s_buf_add (&out, ",", 1);
        s_buf_add (&out, status ? status : "?", strlen (status ? status : "?"));
    }
    json_decref (m);
    return out.data;
}

/*  GET /v1/contacts/{phone} as tenant t: the contact, or NULL on 404.
    Caller decrefs. */
static json_t *
s_contact (int t, const char *phone)
{
    char path[64];
    snprintf (path, sizeof path, "/v1/contacts/%s", phone + 1);
    long status = 0;
    json_t *a =
        rcd_test_api (s_fx.ing.port, "GET", path, s_fx.key[t], NULL, &status);
    if (status == 404) {
        json_decref (a);
        return NULL;
    }
    if (status != 200)
        fail_msg ("GET %s: %ld", path, status);
    return a;
}

/*  Whether tenant t's contact phone is opted out (false when there is no
    such contact). */
static bool
s_opted_out (int t, const char *phone)
{
    json_t *c = s_contact (t, phone);
    bool out = c && json_is_true (json_object_get (c, "opted_out"));
    json_decref (c);
    return out;
}

/*  Asserts tenant t's contact phone has last_reply text and a
    last_reply_at. */
static void
s_assert_last_reply (int t, const char *phone, const char *text)
{
    json_t *c = s_contact (t, phone);
    if (!c)
        fail_msg ("no contact %s after a reply", phone);
    const char *got = rcd_test_str (c, "last_reply");
    if (!got || strcmp (got, text) != 0)
        fail_msg ("contact %s: last_reply \"%s\", expected \"%s\"", phone,
                  got ? got : "(none)", text);
    assert_non_null (rcd_test_str (c, "last_reply_at"));
    json_decref (c);
}

/*  PUTs tenant t's contact phone with a name. */
static void
s_put_contact (int t, const char *phone, const char *name)
{
    char path[64], body[128];
    snprintf (path, sizeof path, "/v1/contacts/%s", phone + 1);
    snprintf (body, sizeof body, "{\"name\":\"%s\"}", name);
    json_decref (rcd_test_api_expect (s_fx.ing.port, 200, "PUT", path,
                                      s_fx.key[t], body));
}

/*  The health GET /v1/instances shows for instance id of tenant t.
    Caller frees. */
static char *
s_health (int t, long long id)
{
    json_t *list = rcd_test_api_expect (s_fx.ing.port, 200, "GET",
                                        "/v1/instances", s_fx.key[t], NULL);
    json_t *item;
    size_t i;
    char *health = NULL;
    json_array_foreach (json_object_get (list, "items"), i, item)
    {
        const char *h = rcd_test_str (item, "health");
        if (json_integer_value (json_object_get (item, "id")) == id && h)
            health = strdup (h);
    }
    json_decref (list);
    if (!health)
        fail_msg ("instance %lld is not listed with a health", id);
    return health;
}

/*  --- setup --- */

static long long
s_create_instance (int t, const char *body)
{
    json_t *a = rcd_test_api_expect (s_fx.ing.port, 201, "POST",
                                     "/v1/instances", s_fx.key[t], body);
    long long id = json_integer_value (json_object_get (a, "id"));
    json_decref (a);
    assert_true (id > 0);
    return id;
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    rcd_test_ingestor_start (&s_fx.ing, "webhooks", ADMIN_KEY, 8);
    static const char *const names[N_TENANTS] = {"tenant a", "tenant b",
                                                 "tenant c"};
    char body[512];
    for (int t = 0; t < N_TENANTS; t++) {
        s_fx.key[t] = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY,
                                              names[t], &s_fx.tenant[t]);
        json_t *settings = rcd_test_api_expect (
            s_fx.ing.port, 200, "GET", "/v1/tenant", s_fx.key[t], NULL);
        const char *token = rcd_test_str (settings, "webhook_token");
        assert_non_null (token);
        assert_true (strlen (token) >= 16);
        s_fx.token[t] = strdup (token);
        json_decref (settings);
        snprintf (body, sizeof body,
                  "{\"name\":\"%s\",\"provider\":\"evolution\","
                  "\"base_url\":\"http://127.0.0.1:9\",\"api_key\":\"%s\"}",
                  s_evo_name[t], s_evo_key[t]);
        s_fx.evo[t] = s_create_instance (t, body);
    }
    for (int m = 0; m < 2; m++) {
        snprintf (body, sizeof body,
                  "{\"name\":\"%s\",\"provider\":\"meta\","
                  "\"base_url\":\"http://127.0.0.1:9\","
                  "\"access_token\":\"meta-token-%d\","
                  "\"phone_number_id\":\"%s\",\"app_secret\":\"%s\","
                  "\"verify_token\":\"%s\"}",
                  s_meta_name[m], m, s_pnid[m], s_secret[m], s_verify_token[m]);
        s_fx.meta[m] = s_create_instance (m, body);
    }
    s_fx.conn = s_create_instance (
        TA,
        "{\"name\":\"evo-conn\",\"provider\":\"evolution\","
        "\"base_url\":\"http://127.0.0.1:9\",\"api_key\":\"evo-key-conn\"}");
    assert_true (strcmp (s_fx.token[TA], s_fx.token[TB]) != 0);
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    for (int t = 0; t < N_TENANTS; t++) {
        free (s_fx.key[t]);
        free (s_fx.token[t]);
    }
    curl_global_cleanup ();
    return 0;
}

/*  --- receipts --- */

static void
test_evolution_receipts_move_a_sent_message_forward (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    s_vars_t v = {.key_id = key, .phone_jid = jid};

    json_t *a =
        s_evo_file (TA, "evolution_messages_update_delivery_ack.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m, "delivered");
    s_assert_column (m, "delivered_at IS NOT NULL", "true");
    s_assert_column (m, "read_at IS NULL", "true");

    /* the token in the query does as well as the header */
    char *body = s_fill ("evolution_messages_update_read.json",
                         &(s_vars_t){.key_id = key, .phone_jid = jid});
    s_answer_t r =
        s_evo_post_as (s_fx.tenant[TA], s_fx.token[TA], S_QUERY, body);
    s_assert_ok (&r, "READ with ?token=");
    s_counts (r.json, 1, 1, 0, 0, 0);
    json_decref (r.json);
    free (body);

    /* the API shows it all */
    json_t *doc = s_api_message (TA, m);
    assert_string_equal (rcd_test_str (doc, "status"), "read");
    assert_string_equal (rcd_test_str (doc, "provider_message_id"), key);
    assert_non_null (rcd_test_str (doc, "delivered_at"));
    assert_non_null (rcd_test_str (doc, "read_at"));
    assert_string_equal (rcd_test_str (doc, "instance"), "evo-a");
    json_decref (doc);
    char *history = s_api_history (TA, m);
    assert_string_equal (history, "delivered,read");
    free (history);

    /* both stored, as receipts of this instance and message */
    s_assert_outcomes (TA, key, "applied,applied");
    assert_int_equal (
        s_int ("SELECT count(*) FROM webhook_events"
               " WHERE tenant_id = $1::bigint AND instance_id = $2::bigint"
               "   AND provider = 'evolution' AND kind = 'receipt'"
               "   AND message_id = $3::bigint AND provider_message_id = $4"
               "   AND payload IS NOT NULL AND received_at IS NOT NULL",
               4, S_LL (s_fx.tenant[TA]), S_LL (s_fx.evo[TA]), S_LL (m), key),
        2);

    /* PLAYED (a voice note heard) counts as read */
    char key2[48];
    s_key_id (key2);
    long long m2 = s_message (TA, s_fx.evo[TA], phone, "delivered", key2, NULL);
    a = s_evo_file (TA, "evolution_messages_update_played.json",
                    &(s_vars_t){.key_id = key2, .phone_jid = jid});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m2, "read");
    assert_int_equal (s_history (m2, "read"), 1);

    /* the event name in Evolution's enum form, and an apikey that is null
       or absent (EXPOSE_IN_FETCH_INSTANCES off) */
    char key3[48];
    s_key_id (key3);
    long long m3 = s_message (TA, s_fx.evo[TA], phone, "sent", key3, NULL);
    json_t *ev = s_fill_json ("evolution_messages_update_delivery_ack.json",
                              &(s_vars_t){.instance = "evo-a",
                                          .apikey = "evo-key-a",
                                          .key_id = key3,
                                          .phone_jid = jid});
    json_object_set_new (ev, "event", json_string ("MESSAGES_UPDATE"));
    json_object_set_new (ev, "apikey", json_null ());
    body = s_dump (ev);
    a = s_evo_ok (TA, body);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    free (body);
    json_decref (ev);
    s_assert_status (m3, "delivered");

    ev = s_fill_json ("evolution_messages_update_read.json",
                      &(s_vars_t){.instance = "evo-a",
                                  .apikey = "evo-key-a",
                                  .key_id = key3,
                                  .phone_jid = jid});
    json_object_set_new (ev, "event", json_string ("Messages_Update"));
    json_object_del (ev, "apikey");
    body = s_dump (ev);
    a = s_evo_ok (TA, body);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    free (body);
    json_decref (ev);
    s_assert_status (m3, "read");
}

static void
test_server_ack_settles_the_one_unknown_message_to_that_number (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "unknown", NULL, NULL);
    json_t *a = s_evo_file (TA, "evolution_messages_update_server_ack.json",
                            &(s_vars_t){.key_id = key, .phone_jid = jid});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m, "sent");
    s_assert_column (m, "provider_message_id", key);
    s_assert_column (m, "sent_at IS NOT NULL", "true");
    assert_int_equal (s_history (m, "sent"), 1);
    s_assert_outcomes (TA, key, "settled");

    /* two unknown messages to one number: the receipt cannot tell which,
       so neither is settled and the receipt waits as unmatched */
    char phone2[20], jid2[48], key2[48];
    s_phone (phone2);
    s_jid (jid2, phone2);
    s_key_id (key2);
    long long u1 = s_message (TA, s_fx.evo[TA], phone2, "unknown", NULL, "um");
    long long u2 =
        s_message (TA, s_fx.evo[TA], phone2, "unknown", NULL, "dois");
    a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json",
                    &(s_vars_t){.key_id = key2, .phone_jid = jid2});
    s_counts (a, 1, 0, 0, 1, 0);
    json_decref (a);
    s_assert_status (u1, "unknown");
    s_assert_status (u2, "unknown");
    s_assert_column (u1, "provider_message_id", NULL);
    s_assert_column (u2, "provider_message_id", NULL);
    s_assert_outcomes (TA, key2, "unmatched");

    /* an unknown message of another tenant to the same number is not
       settled by a's receipt */
    char phone3[20], jid3[48], key3[48];
    s_phone (phone3);
    s_jid (jid3, phone3);
    s_key_id (key3);
    long long other =
        s_message (TB, s_fx.evo[TB], phone3, "unknown", NULL, NULL);
    a = s_evo_file (TA, "evolution_messages_update_server_ack.json",
                    &(s_vars_t){.key_id = key3, .phone_jid = jid3});
    s_counts (a, 1, 0, 0, 1, 0);
    json_decref (a);
    s_assert_status (other, "unknown");

    /* SERVER_ACK for a message already sent changes nothing */
    char key4[48];
    s_key_id (key4);
    long long sent = s_message (TA, s_fx.evo[TA], phone, "sent", key4, NULL);
    a = s_evo_file (TA, "evolution_messages_update_server_ack.json",
                    &(s_vars_t){.key_id = key4, .phone_jid = jid});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (sent, "sent");
    assert_int_equal (s_history_all (sent), 0);
    s_assert_outcomes (TA, key4, "stale");
}

static void
test_evolution_error_fails_a_sent_message_into_the_dead_letters (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    json_t *a = s_evo_file (TA, "evolution_messages_update_error.json",
                            &(s_vars_t){.key_id = key, .phone_jid = jid});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);

    json_t *doc = s_api_message (TA, m);
    assert_string_equal (rcd_test_str (doc, "status"), "failed");
    const char *error = rcd_test_str (doc, "last_error");
    assert_non_null (error);
    assert_true (strlen (error) > 0);
    json_decref (doc);
    assert_int_equal (s_history (m, "failed"), 1);
    assert_int_equal (s_dead_letters (m), 1);
    s_assert_outcomes (TA, key, "applied");

    /* the dead letter is listed with its reason */
    json_t *list =
        rcd_test_api_expect (s_fx.ing.port, 200, "GET",
                             "/v1/dead-letters?limit=500", s_fx.key[TA], NULL);
    json_t *item, *found = NULL;
    size_t i;
    json_array_foreach (json_object_get (list, "items"), i, item)
    {
        if (json_integer_value (json_object_get (item, "message_id")) == m)
            found = item;
    }
    assert_non_null (found);
    const char *reason = rcd_test_str (found, "reason");
    assert_non_null (reason);
    assert_true (strlen (reason) > 0);
    assert_string_equal (
        rcd_test_str (json_object_get (found, "message"), "status"), "failed");
    json_decref (list);
}

static void
test_meta_statuses_move_messages_and_failed_ones_dead_letter (void **state)
{
    (void)state;
    char phone[20], w1[80], w2[80], w3[80];
    s_phone (phone);
    s_wamid (w1);
    long long m1 = s_message (TA, s_fx.meta[TA], phone, "sent", w1, NULL);
    s_vars_t v = {.wamid = w1, .wa_id = phone + 1};
    json_t *a = s_meta_file (0, "meta_status_delivered.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m1, "delivered");
    a = s_meta_file (0, "meta_status_read.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    json_t *doc = s_api_message (TA, m1);
    assert_string_equal (rcd_test_str (doc, "status"), "read");
    assert_non_null (rcd_test_str (doc, "delivered_at"));
    assert_non_null (rcd_test_str (doc, "read_at"));
    assert_string_equal (rcd_test_str (doc, "instance"), "meta-a");
    json_decref (doc);
    char *history = s_api_history (TA, m1);
    assert_string_equal (history, "delivered,read");
    free (history);
    s_assert_outcomes (TA, w1, "applied,applied");
    assert_int_equal (
        s_int ("SELECT count(*) FROM webhook_events"
               " WHERE tenant_id = $1::bigint AND instance_id = $2::bigint"
               "   AND provider = 'meta' AND kind = 'receipt'"
               "   AND message_id = $3::bigint AND provider_message_id = $4",
               4, S_LL (s_fx.tenant[TA]), S_LL (s_fx.meta[TA]), S_LL (m1), w1),
        2);

    /* failed with Meta's error: the reason is kept, a dead letter made */
    char phone2[20];
    s_phone (phone2);
    s_wamid (w2);
    long long m2 = s_message (TA, s_fx.meta[TA], phone2, "sent", w2, NULL);
    a = s_meta_file (0, "meta_status_failed.json",
                     &(s_vars_t){.wamid = w2, .wa_id = phone2 + 1});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m2, "failed");
    char *error = s_column (m2, "last_error");
    assert_non_null (error);
    if (!strstr (error, "131026") && !strstr (error, "ndeliverable"))
        fail_msg ("last_error \"%s\" does not carry Meta's reason", error);
    free (error);
    assert_int_equal (s_dead_letters (m2), 1);
    assert_int_equal (s_history (m2, "failed"), 1);

    /* sent settles the one unknown message to that number */
    char phone3[20];
    s_phone (phone3);
    s_wamid (w3);
    long long m3 = s_message (TA, s_fx.meta[TA], phone3, "unknown", NULL, NULL);
    a = s_meta_file (0, "meta_status_sent.json",
                     &(s_vars_t){.wamid = w3, .wa_id = phone3 + 1});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m3, "sent");
    s_assert_column (m3, "provider_message_id", w3);
    s_assert_outcomes (TA, w3, "settled");

    /* Meta batches: two statuses in one request are two events */
    char w4[80], w5[80], phone4[20];
    s_phone (phone4);
    s_wamid (w4);
    s_wamid (w5);
    long long m4 = s_message (TA, s_fx.meta[TA], phone4, "sent", w4, "um");
    long long m5 = s_message (TA, s_fx.meta[TA], phone4, "sent", w5, "dois");
    json_t *ev = s_fill_json ("meta_status_delivered.json",
                              &(s_vars_t){.phone_number_id = s_pnid[0],
                                          .wamid = w4,
                                          .wa_id = phone4 + 1});
    json_t *statuses = json_object_get (
        json_object_get (
            json_array_get (
                json_object_get (
                    json_array_get (json_object_get (ev, "entry"), 0),
                    "changes"),
                0),
            "value"),
        "statuses");
    json_t *second = json_deep_copy (json_array_get (statuses, 0));
    json_object_set_new (second, "id", json_string (w5));
    json_array_append_new (statuses, second);
    char *body = s_dump (ev);
    a = s_meta_ok (0, body);
    s_counts (a, 2, 2, 0, 0, 0);
    json_decref (a);
    free (body);
    json_decref (ev);
    s_assert_status (m4, "delivered");
    s_assert_status (m5, "delivered");
}

/*  --- inbound --- */

static void
test_inbound_replies_are_recorded_on_the_contact (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_put_contact (TA, phone, "Ana");
    long long pending = s_message (TA, 0, phone, "pending", NULL, NULL);

    s_key_id (key);
    json_t *a = s_evo_file (TA, "evolution_messages_upsert_conversation.json",
                            &(s_vars_t){.key_id = key,
                                        .phone_jid = jid,
                                        .text = "Oi, já paguei ontem à tarde"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone, "Oi, já paguei ontem à tarde");
    assert_false (s_opted_out (TA, phone));
    s_assert_status (pending, "pending");
    s_assert_outcomes (TA, key, "applied");
    assert_int_equal (
        s_int ("SELECT count(*) FROM webhook_events"
               " WHERE tenant_id = $1::bigint AND kind = 'inbound'"
               "   AND provider = 'evolution' AND phone = $2"
               "   AND strpos(payload::text, $3) > 0",
               3, S_LL (s_fx.tenant[TA]), phone, key),
        1);

    /* a reply quoting our message comes as extendedTextMessage */
    s_key_id (key);
    a = s_evo_file (TA, "evolution_messages_upsert_extended_text.json",
                    &(s_vars_t){.key_id = key,
                                .phone_jid = jid,
                                .text = "Pode mandar o boleto de novo?"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone, "Pode mandar o boleto de novo?");

    /* a linked-id sender with its phone in remoteJidAlt */
    char phone2[20], jid2[48];
    s_phone (phone2);
    s_jid (jid2, phone2);
    s_put_contact (TA, phone2, "Bruno");
    s_key_id (key);
    a = s_evo_file (TA, "evolution_messages_upsert_lid.json",
                    &(s_vars_t){.key_id = key,
                                .phone_jid = jid2,
                                .lid_jid = "201234567890123@lid",
                                .text = "Recebi, obrigado"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone2, "Recebi, obrigado");

    /* and one without a phone: kept, nothing to apply it to */
    long long contacts = s_int ("SELECT count(*) FROM contacts", 0);
    s_key_id (key);
    a = s_evo_file (TA, "evolution_messages_upsert_lid_no_phone.json",
                    &(s_vars_t){.key_id = key,
                                .lid_jid = "209876543210987@lid",
                                .text = "SAIR"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_outcomes (TA, key, "no_phone");
    assert_int_equal (s_int ("SELECT count(*) FROM contacts", 0), contacts);

    /* Meta: text, a template's quick-reply button, an interactive reply */
    char phone3[20], w[80];
    s_phone (phone3);
    s_put_contact (TA, phone3, "Carla");
    s_wamid (w);
    a = s_meta_file (0, "meta_message_text.json",
                     &(s_vars_t){.wamid = w,
                                 .wa_id = phone3 + 1,
                                 .text = "Qual é o valor?"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone3, "Qual é o valor?");
    s_assert_outcomes (TA, w, "applied");
    s_wamid (w);
    a = s_meta_file (0, "meta_message_button.json",
                     &(s_vars_t){.wamid = w,
                                 .wa_id = phone3 + 1,
                                 .text = "Falar com atendente"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone3, "Falar com atendente");
    s_wamid (w);
    a = s_meta_file (
        0, "meta_message_interactive.json",
        &(s_vars_t){.wamid = w, .wa_id = phone3 + 1, .text = "Já paguei"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone3, "Já paguei");

    /* the other tenant's contact with the same number hears nothing */
    assert_null (s_contact (TB, phone3));
}

static void
test_groups_broadcasts_and_other_events_are_ignored (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_put_contact (TA, phone, "Dora");
    long long pending = s_message (TA, 0, phone, "pending", NULL, NULL);
    static const char *const chats[] = {"120363041234567890@g.us",
                                        "status@broadcast",
                                        "120363401234567890@newsletter"};
    for (size_t i = 0; i < 3; i++) {
        s_key_id (key);
        json_t *a = s_evo_file (TA, "evolution_messages_upsert_group.json",
                                &(s_vars_t){.key_id = key,
                                            .group_jid = chats[i],
                                            .phone_jid = jid,
                                            .text = "SAIR"});
        s_counts (a, 1, 0, 0, 0, 1);
        json_decref (a);
    }
    assert_false (s_opted_out (TA, phone));
    s_assert_status (pending, "pending");
    json_t *c = s_contact (TA, phone);
    assert_non_null (c);
    assert_null (rcd_test_str (c, "last_reply"));
    json_decref (c);

    /* events recado does not handle */
    static const char *const others[] = {"presence.update", "chats.upsert",
                                         "contacts.update", "qrcode.updated",
                                         "CALL"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        s_key_id (key);
        json_t *ev = s_fill_json ("evolution_messages_upsert_conversation.json",
                                  &(s_vars_t){.instance = "evo-a",
                                              .apikey = "evo-key-a",
                                              .key_id = key,
                                              .phone_jid = jid,
                                              .text = "SAIR"});
        json_object_set_new (ev, "event", json_string (others[i]));
        char *body = s_dump (ev);
        json_t *a = s_evo_ok (TA, body);
        s_counts (a, 1, 0, 0, 0, 1);
        json_decref (a);
        free (body);
        json_decref (ev);
    }
    assert_false (s_opted_out (TA, phone));
    s_assert_status (pending, "pending");

    /* receipts that are not about our sends: of the contact's own message
       (fromMe false, Evolution's read receipt of a reply), a deletion, a
       status recado does not track */
    char sent_key[48];
    s_key_id (sent_key);
    long long sent =
        s_message (TA, s_fx.evo[TA], phone, "sent", sent_key, NULL);
    static const struct {
        const char *status;
        bool from_me;
    } receipts[] = {{"READ", false},
                    {"DELIVERY_ACK", false},
                    {"DELETED", true},
                    {"PENDING", true}};
    for (size_t i = 0; i < 4; i++) {
        json_t *ev = s_fill_json ("evolution_messages_update_read.json",
                                  &(s_vars_t){.instance = "evo-a",
                                              .apikey = "evo-key-a",
                                              .key_id = sent_key,
                                              .phone_jid = jid});
        json_t *data = json_object_get (ev, "data");
        json_object_set_new (data, "status", json_string (receipts[i].status));
        json_object_set_new (data, "fromMe",
                             json_boolean (receipts[i].from_me));
        char *body = s_dump (ev);
        json_t *a = s_evo_ok (TA, body);
        s_counts (a, 1, 0, 0, 0, 1);
        json_decref (a);
        free (body);
        json_decref (ev);
    }
    s_assert_status (sent, "sent");
    assert_int_equal (s_history_all (sent), 0);
}

/*  --- duplicates --- */

typedef struct {
    const char *url;            /* where to post */
    const char *body;           /* what */
    const char *header;         /* one header line */
    pthread_barrier_t *barrier; /* all start together */
    long status;                /* the answer */
    long applied, duplicates;
} s_shot_t;

static void *
s_shoot (void *arg)
{
    s_shot_t *s = arg;
    const char *headers[] = {s->header, NULL};
    pthread_barrier_wait (s->barrier);
    rcd_test_http_t res =
        rcd_test_http ("POST", s->url, NULL, s->body, headers);
    s->status = res.status;
    json_t *a = res.size ? json_loadb (res.body, res.size, 0, NULL) : NULL;
    s->applied = (long)json_integer_value (json_object_get (a, "applied"));
    s->duplicates =
        (long)json_integer_value (json_object_get (a, "duplicates"));
    json_decref (a);
    rcd_test_http_free (&res);
    return NULL;
}

/*  Posts body to path S_SHOTS times at once with header; asserts every
    answer is 200 and returns the sums of applied and duplicates. */
static void
s_fire (const char *path, const char *body, const char *header, long *applied,
        long *duplicates)
{
    char url[512];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", s_fx.ing.port, path);
    pthread_barrier_t barrier;
    assert_int_equal (pthread_barrier_init (&barrier, NULL, S_SHOTS), 0);
    pthread_t threads[S_SHOTS];
    s_shot_t shots[S_SHOTS];
    for (int i = 0; i < S_SHOTS; i++) {
        shots[i] = (s_shot_t){url, body, header, &barrier, 0, 0, 0};
        assert_int_equal (
            pthread_create (&threads[i], NULL, s_shoot, &shots[i]), 0);
    }
    for (int i = 0; i < S_SHOTS; i++)
        pthread_join (threads[i], NULL);
    pthread_barrier_destroy (&barrier);
    *applied = *duplicates = 0;
    for (int i = 0; i < S_SHOTS; i++) {
        if (shots[i].status != 200)
            fail_msg ("delivery %d of %d answered %ld", i, S_SHOTS,
                      shots[i].status);
        *applied += shots[i].applied;
        *duplicates += shots[i].duplicates;
    }
}

static void
test_the_same_event_fifty_times_at_once_is_applied_once (void **state)
{
    (void)state;
    /* an Evolution receipt */
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    char *body = s_fill ("evolution_messages_update_delivery_ack.json",
                         &(s_vars_t){.key_id = key, .phone_jid = jid});
    char path[128], header[512];
    snprintf (path, sizeof path, "/v1/webhooks/evolution/%lld",
              s_fx.tenant[TA]);
    snprintf (header, sizeof header, "X-Webhook-Token: %s", s_fx.token[TA]);
    long applied = 0, duplicates = 0;
    s_fire (path, body, header, &applied, &duplicates);
    free (body);
    assert_int_equal (applied, 1);
    assert_int_equal (duplicates, S_SHOTS - 1);
    s_assert_status (m, "delivered");
    assert_int_equal (s_history (m, "delivered"), 1);
    assert_int_equal (s_history_all (m), 1);
    s_assert_outcomes (TA, key, "applied");

    /* a Meta status */
    char phone2[20], w[80];
    s_phone (phone2);
    s_wamid (w);
    long long m2 = s_message (TA, s_fx.meta[TA], phone2, "sent", w, NULL);
    body = s_fill ("meta_status_read.json",
                   &(s_vars_t){.phone_number_id = s_pnid[0],
                               .wamid = w,
                               .wa_id = phone2 + 1});
    char signature[128];
    s_signature (signature, s_secret[0], body);
    s_fire ("/v1/webhooks/meta", body, signature, &applied, &duplicates);
    free (body);
    assert_int_equal (applied, 1);
    assert_int_equal (duplicates, S_SHOTS - 1);
    s_assert_status (m2, "read");
    assert_int_equal (s_history (m2, "read"), 1);
    assert_int_equal (s_history_all (m2), 1);
    s_assert_outcomes (TA, w, "applied");

    /* an Evolution opt-out */
    char phone3[20], jid3[48];
    s_phone (phone3);
    s_jid (jid3, phone3);
    s_key_id (key);
    long long p = s_message (TA, 0, phone3, "pending", NULL, NULL);
    body = s_fill ("evolution_messages_upsert_conversation.json",
                   &(s_vars_t){.instance = "evo-a",
                               .apikey = "evo-key-a",
                               .key_id = key,
                               .phone_jid = jid3,
                               .text = "PARAR"});
    s_fire (path, body, header, &applied, &duplicates);
    free (body);
    assert_int_equal (duplicates, S_SHOTS - 1);
    assert_true (s_opted_out (TA, phone3));
    s_assert_status (p, "blocked");
    assert_int_equal (s_history (p, "blocked"), 1);
    s_assert_outcomes (TA, key, "opted_out");
}

static void
test_a_second_delivery_is_a_duplicate (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    s_vars_t v = {.key_id = key, .phone_jid = jid};
    json_t *a =
        s_evo_file (TA, "evolution_messages_update_delivery_ack.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json", &v);
    s_counts (a, 1, 0, 1, 0, 0);
    json_decref (a);
    /* the same receipt with another status is another event */
    a = s_evo_file (TA, "evolution_messages_update_read.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m, "read");
    assert_int_equal (s_history_all (m), 2);

    /* the same key id on another tenant's instance is its own event */
    char key2[48];
    s_key_id (key2);
    long long ma = s_message (TA, s_fx.evo[TA], phone, "sent", key2, NULL);
    long long mb = s_message (TB, s_fx.evo[TB], phone, "sent", key2, NULL);
    v.key_id = key2;
    a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (ma, "delivered");
    s_assert_status (mb, "sent");
    a = s_evo_file (TB, "evolution_messages_update_delivery_ack.json", &v);
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (mb, "delivered");
    assert_int_equal (s_history_all (ma), 1);
}

/*  --- order --- */

static void
test_receipts_out_of_order_end_in_read (void **state)
{
    (void)state;
    /* Evolution: READ first, then DELIVERY_ACK, then SERVER_ACK, then an
       ERROR */
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    s_vars_t v = {.key_id = key, .phone_jid = jid};
    static const char *const evo_files[] = {
        "evolution_messages_update_read.json",
        "evolution_messages_update_delivery_ack.json",
        "evolution_messages_update_server_ack.json",
        "evolution_messages_update_error.json"};
    for (size_t i = 0; i < 4; i++) {
        json_t *a = s_evo_file (TA, evo_files[i], &v);
        s_counts (a, 1, 1, 0, 0, 0);
        json_decref (a);
        s_assert_status (m, "read");
    }
    s_assert_column (m, "delivered_at IS NOT NULL", "true");
    s_assert_column (m, "read_at IS NOT NULL", "true");
    s_assert_column (m, "last_error", NULL);
    char *history = s_api_history (TA, m);
    assert_string_equal (history, "read");
    free (history);
    assert_int_equal (s_dead_letters (m), 0);
    s_assert_outcomes (TA, key, "applied,stale,stale,stale");

    /* PLAYED after READ: both mean read, so it is taken as the READ again
       (a duplicate) or as a stale receipt; either way nothing moves */
    char key2[48];
    s_key_id (key2);
    long long m2 = s_message (TA, s_fx.evo[TA], phone, "sent", key2, NULL);
    v.key_id = key2;
    json_decref (
        s_evo_file (TA, "evolution_messages_update_delivery_ack.json", &v));
    json_decref (s_evo_file (TA, "evolution_messages_update_read.json", &v));
    char *read_at = s_column (m2, "read_at");
    json_t *a = s_evo_file (TA, "evolution_messages_update_played.json", &v);
    s_counts (a, 1, -1, -1, 0, 0);
    assert_int_equal (
        json_integer_value (json_object_get (a, "applied")) +
            json_integer_value (json_object_get (a, "duplicates")),
        1);
    json_decref (a);
    s_assert_status (m2, "read");
    s_assert_column (m2, "read_at", read_at);
    free (read_at);
    history = s_api_history (TA, m2);
    assert_string_equal (history, "delivered,read");
    free (history);

    /* Meta: read, delivered, sent, failed */
    char phone3[20], w[80];
    s_phone (phone3);
    s_wamid (w);
    long long m3 = s_message (TA, s_fx.meta[TA], phone3, "sent", w, NULL);
    s_vars_t mv = {.wamid = w, .wa_id = phone3 + 1};
    static const char *const meta_files[] = {
        "meta_status_read.json", "meta_status_delivered.json",
        "meta_status_sent.json", "meta_status_failed.json"};
    for (size_t i = 0; i < 4; i++) {
        a = s_meta_file (0, meta_files[i], &mv);
        s_counts (a, 1, 1, 0, 0, 0);
        json_decref (a);
        s_assert_status (m3, "read");
    }
    s_assert_column (m3, "delivered_at IS NOT NULL", "true");
    s_assert_column (m3, "last_error", NULL);
    history = s_api_history (TA, m3);
    assert_string_equal (history, "read");
    free (history);
    assert_int_equal (s_dead_letters (m3), 0);
    s_assert_outcomes (TA, w, "applied,stale,stale,stale");
}

/*  --- refusals --- */

/*  A JSON body of size bytes (one long string in it). Caller frees. */
static char *
s_big_body (size_t size)
{
    const char *head = "{\"event\":\"messages.update\",\"instance\":\"evo-a\","
                       "\"data\":{\"pad\":\"";
    const char *tail = "\"}}";
    char *body = malloc (size + 1);
    assert_non_null (body);
    size_t h = strlen (head), t = strlen (tail);
    memcpy (body, head, h);
    memset (body + h, 'x', size - h - t);
    memcpy (body + size - t, tail, t);
    body[size] = 0;
    return body;
}

static void
test_bad_evolution_requests_are_refused_and_change_nothing (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long m = s_message (TA, s_fx.evo[TA], phone, "sent", key, NULL);
    s_vars_t v = {.instance = "evo-a",
                  .apikey = "evo-key-a",
                  .key_id = key,
                  .phone_jid = jid};
    char *body = s_fill ("evolution_messages_update_delivery_ack.json", &v);
    long long before = s_events_total ();
    long long a_id = s_fx.tenant[TA];

    s_refused (s_evo_post_as (a_id, "", S_NO_TOKEN, body), 401, "unauthorized",
               NULL, "no token");
    s_refused (s_evo_post_as (a_id, "not-the-token", S_HEADER, body), 401,
               "unauthorized", NULL, "wrong token in the header");
    s_refused (s_evo_post_as (a_id, "not-the-token", S_QUERY, body), 401,
               "unauthorized", NULL, "wrong token in the query");
    s_refused (s_evo_post_as (a_id, s_fx.token[TB], S_HEADER, body), 401,
               "unauthorized", NULL, "another tenant's token");
    s_refused (s_evo_post_as (999999999, s_fx.token[TA], S_HEADER, body), 401,
               "unauthorized", NULL, "a tenant that does not exist");
    /* a token with a character more or less is wrong too */
    char longer[256];
    snprintf (longer, sizeof longer, "%sa", s_fx.token[TA]);
    s_refused (s_evo_post_as (a_id, longer, S_HEADER, body), 401,
               "unauthorized", NULL, "token plus one character");
    char shorter[256];
    snprintf (shorter, sizeof shorter, "%.*s", (int)strlen (s_fx.token[TA]) - 1,
              s_fx.token[TA]);
    s_refused (s_evo_post_as (a_id, shorter, S_HEADER, body), 401,
               "unauthorized", NULL, "token minus one character");
    free (body);

    /* the instance's apikey, when Evolution sends it, must be its own */
    v.apikey = "evo-key-b";
    body = s_fill ("evolution_messages_update_delivery_ack.json", &v);
    s_refused (s_evo_post_as (a_id, s_fx.token[TA], S_HEADER, body), 401,
               "unauthorized", "apikey", "wrong apikey");
    free (body);

    /* the instance must be one of this tenant's Evolution instances */
    static const char *const instances[] = {"evo-b", "no-such-instance",
                                            "meta-a"};
    static const char *const apikeys[] = {"evo-key-b", "evo-key-a",
                                          "evo-key-a"};
    for (size_t i = 0; i < 3; i++) {
        v.instance = instances[i];
        v.apikey = apikeys[i];
        body = s_fill ("evolution_messages_update_delivery_ack.json", &v);
        char what[64];
        snprintf (what, sizeof what, "instance %s", instances[i]);
        s_refused (s_evo_post_as (a_id, s_fx.token[TA], S_HEADER, body), 403,
                   "forbidden", "instance", what);
        free (body);
    }

    static const char *const garbage[] = {
        "{\"event\": \"messages.update\", \"instance\": \"evo-a\",", "not json",
        "{\"event\": \"messages.update\"} trailing"};
    for (size_t i = 0; i < 3; i++)
        s_refused (s_evo_post_as (a_id, s_fx.token[TA], S_HEADER, garbage[i]),
                   400, "invalid_json", NULL, garbage[i]);

    body = s_big_body (5 * 1024 * 1024);
    s_refused (s_evo_post_as (a_id, s_fx.token[TA], S_HEADER, body), 413,
               "payload_too_large", NULL, "a 5 MB body");
    free (body);

    assert_int_equal (s_events_total (), before);
    s_assert_status (m, "sent");
    assert_int_equal (s_history_all (m), 0);
    s_assert_column (m, "delivered_at", NULL);

    /* a webhook is not a tenant API call: a bearer key is no way in */
    body = s_fill ("evolution_messages_update_delivery_ack.json",
                   &(s_vars_t){.instance = "evo-a",
                               .apikey = "evo-key-a",
                               .key_id = key,
                               .phone_jid = jid});
    char path[128];
    snprintf (path, sizeof path, "/v1/webhooks/evolution/%lld", a_id);
    long status = 0;
    json_t *a =
        rcd_test_api (s_fx.ing.port, "POST", path, s_fx.key[TA], body, &status);
    s_refused ((s_answer_t){status, a}, 401, "unauthorized", NULL,
               "the tenant's API key as bearer");
    free (body);
    assert_int_equal (s_events_total (), before);
    s_assert_status (m, "sent");
}

/*  GET /v1/webhooks/meta?query: the status, the Content-Type and the body
    (caller frees both). */
static long
s_verify (const char *query, char **content_type, char **body)
{
    char url[512];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/webhooks/meta?%s",
              s_fx.ing.port, query);
    CURL *curl = curl_easy_init ();
    assert_non_null (curl);
    FILE *out = NULL;
    size_t size = 0;
    *body = NULL;
    out = open_memstream (body, &size);
    assert_non_null (out);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    char *type = NULL;
    if (curl_easy_perform (curl) == CURLE_OK) {
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo (curl, CURLINFO_CONTENT_TYPE, &type);
    }
    *content_type = type ? strdup (type) : NULL;
    curl_easy_cleanup (curl);
    fclose (out);
    return status;
}

static void
test_bad_meta_requests_are_refused_and_change_nothing (void **state)
{
    (void)state;
    char phone[20], w[80];
    s_phone (phone);
    s_wamid (w);
    long long m = s_message (TA, s_fx.meta[TA], phone, "sent", w, NULL);
    char *body = s_fill ("meta_status_delivered.json",
                         &(s_vars_t){.phone_number_id = s_pnid[0],
                                     .wamid = w,
                                     .wa_id = phone + 1});
    long long before = s_events_total ();
    char header[128];

    s_refused (s_meta_post_with (body, NULL), 401, "unauthorized", NULL,
               "no signature");
    s_refused (s_meta_post_with (
                   body, "X-Hub-Signature-256: sha256=0000000000000000"
                         "000000000000000000000000000000000000000000000000"),
               401, "unauthorized", NULL, "a wrong signature");
    s_signature (header, s_secret[1], body);
    s_refused (s_meta_post_with (body, header), 401, "unauthorized", NULL,
               "signed with another instance's secret");
    /* the right signature of another body */
    char *other = s_fill ("meta_status_read.json",
                          &(s_vars_t){.phone_number_id = s_pnid[0],
                                      .wamid = w,
                                      .wa_id = phone + 1});
    s_signature (header, s_secret[0], other);
    s_refused (s_meta_post_with (body, header), 401, "unauthorized", NULL,
               "the signature of another body");
    free (other);
    /* a body changed after signing: one space more */
    s_signature (header, s_secret[0], body);
    size_t len = strlen (body);
    char *spaced = malloc (len + 2);
    assert_non_null (spaced);
    memcpy (spaced, body, len);
    spaced[len] = ' ';
    spaced[len + 1] = 0;
    s_refused (s_meta_post_with (spaced, header), 401, "unauthorized", NULL,
               "a body changed after signing");
    free (spaced);
    free (body);

    /* a phone_number_id no instance has */
    body = s_fill ("meta_status_delivered.json",
                   &(s_vars_t){.phone_number_id = "999999999999999",
                               .wamid = w,
                               .wa_id = phone + 1});
    s_signature (header, s_secret[0], body);
    s_refused (s_meta_post_with (body, header), 403, "forbidden", NULL,
               "an unknown phone_number_id");
    free (body);

    const char *garbage = "{\"object\": \"whatsapp_business_account\", [";
    s_signature (header, s_secret[0], garbage);
    s_refused (s_meta_post_with (garbage, header), 400, "invalid_json", NULL,
               "malformed JSON");

    body = s_big_body (5 * 1024 * 1024);
    s_signature (header, s_secret[0], body);
    s_refused (s_meta_post_with (body, header), 413, "payload_too_large", NULL,
               "a 5 MB body");
    free (body);

    assert_int_equal (s_events_total (), before);
    s_assert_status (m, "sent");
    assert_int_equal (s_history_all (m), 0);

    /* the verification handshake */
    char *type = NULL, *text = NULL;
    char query[256];
    for (int i = 0; i < 2; i++) {
        snprintf (query, sizeof query,
                  "hub.mode=subscribe&hub.verify_token=%s"
                  "&hub.challenge=1158201444%d",
                  s_verify_token[i], i);
        assert_int_equal (s_verify (query, &type, &text), 200);
        char expected[32];
        snprintf (expected, sizeof expected, "1158201444%d", i);
        assert_string_equal (text, expected);
        assert_non_null (type);
        assert_true (strncmp (type, "text/plain", 10) == 0);
        free (type);
        free (text);
    }
    static const char *const bad[] = {
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=42",
        "hub.mode=subscribe&hub.challenge=42",
        "hub.mode=subscribe&hub.verify_token=&hub.challenge=42",
        "hub.mode=subscribe&hub.verify_token=evo-key-a&hub.challenge=42",
        "hub.mode=subscribe&hub.verify_token=verify-token-a0&hub.challenge=42",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long status = s_verify (bad[i], &type, &text);
        if (status != 403)
            fail_msg ("GET /v1/webhooks/meta?%s: %ld, expected 403", bad[i],
                      status);
        if (text && strstr (text, "42") && !strstr (text, "error"))
            fail_msg ("a refused verification echoed the challenge: %s", text);
        free (type);
        free (text);
    }
}

/*  --- opt-out --- */

/*  The due date 30 days ahead in São Paulo, "YYYY-MM-DD". Caller frees. */
static char *
s_due_date (void)
{
    return s_text ("SELECT ((now() AT TIME ZONE 'America/Sao_Paulo')::date"
                   "        + 30)::text",
                   0);
}

static void
test_an_opt_out_keyword_blocks_the_contacts_pending_messages (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_put_contact (TA, phone, "Elisa");
    long long p1 = s_message (TA, 0, phone, "pending", NULL, "um");
    long long p2 = s_message (TA, s_fx.evo[TA], phone, "pending", NULL, "dois");
    char sent_key[48];
    s_key_id (sent_key);
    long long sent =
        s_message (TA, s_fx.evo[TA], phone, "sent", sent_key, NULL);
    long long other_tenant = s_message (TB, 0, phone, "pending", NULL, NULL);
    /* a billing cycle's reminders, all still ahead */
    char *due = s_due_date ();
    char cycle[512];
    snprintf (cycle, sizeof cycle,
              "{\"external_billing_id\":\"INV-WH-%d-%d\","
              "\"contact\":{\"phone\":\"%s\",\"name\":\"Elisa\"},"
              "\"amount_cents\":15990,\"currency\":\"BRL\","
              "\"due_date\":\"%s\",\"template\":\"cobranca\","
              "\"offsets_days\":[-3,0,3]}",
              (int)getpid (), ++s_fx.seq, phone, due);
    free (due);
    json_decref (rcd_test_api_expect (
        s_fx.ing.port, 200, "PUT", "/v1/templates/cobranca", s_fx.key[TA],
        "{\"variations\":[\"Olá {{name}}, sua fatura de {{amount}} vence em "
        "{{due_date}}.\"]}"));
    json_t *c = rcd_test_api_expect (s_fx.ing.port, 201, "POST",
                                     "/v1/billing-cycles", s_fx.key[TA], cycle);
    long long cycle_id = json_integer_value (json_object_get (c, "id"));
    json_decref (c);
    const char *reminders = "SELECT count(*) FROM messages"
                            " WHERE billing_cycle_id = $1::bigint"
                            "   AND status = $2";
    assert_int_equal (s_int (reminders, 2, S_LL (cycle_id), "pending"), 3);

    s_key_id (key);
    json_t *a = s_evo_file (
        TA, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid, .text = "  Sair! "});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_outcomes (TA, key, "opted_out");

    assert_true (s_opted_out (TA, phone));
    json_t *contact = s_contact (TA, phone);
    assert_string_equal (rcd_test_str (contact, "name"), "Elisa");
    assert_non_null (rcd_test_str (contact, "opted_out_at"));
    json_decref (contact);
    s_assert_status (p1, "blocked");
    s_assert_status (p2, "blocked");
    assert_int_equal (s_int (reminders, 2, S_LL (cycle_id), "blocked"), 3);
    s_assert_status (sent, "sent");
    assert_int_equal (s_history (p1, "blocked"), 1);
    assert_int_equal (s_history (p2, "blocked"), 1);
    assert_int_equal (
        s_int ("SELECT count(*) FROM message_history h JOIN messages m"
               "    ON m.id = h.message_id"
               " WHERE m.billing_cycle_id = $1::bigint"
               "   AND h.status = 'blocked'",
               1, S_LL (cycle_id)),
        3);
    assert_int_equal (s_history_all (sent), 0);
    /* the other tenant's message to the same number still goes */
    s_assert_status (other_tenant, "pending");
    assert_false (s_opted_out (TB, phone));

    /* a message accepted afterwards is blocked at once */
    char body[128];
    snprintf (body, sizeof body, "{\"to\":\"%s\",\"text\":\"fatura\"}", phone);
    json_t *r = rcd_test_api_expect (s_fx.ing.port, 202, "POST", "/v1/messages",
                                     s_fx.key[TA], body);
    assert_string_equal (rcd_test_str (r, "status"), "blocked");
    json_decref (r);
}

static void
test_the_number_without_the_ninth_digit_is_the_same_contact (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid_without_nine (jid, phone);
    /* "+5511987650007" writes "551187650007@s.whatsapp.net" */
    s_put_contact (TA, phone, "Fabio");
    long long p = s_message (TA, 0, phone, "pending", NULL, NULL);

    s_key_id (key);
    json_t *a = s_evo_file (TA, "evolution_messages_upsert_conversation.json",
                            &(s_vars_t){.key_id = key,
                                        .phone_jid = jid,
                                        .text = "Vou pagar na sexta"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_last_reply (TA, phone, "Vou pagar na sexta");

    /* DESCADASTRAR is one of the default keywords */
    s_key_id (key);
    a = s_evo_file (
        TA, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid, .text = "DESCADASTRAR"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone));
    s_assert_status (p, "blocked");
    /* one contact, under the canonical number */
    assert_int_equal (s_int ("SELECT count(*) FROM contacts"
                             " WHERE tenant_id = $1::bigint"
                             "   AND phone LIKE '%' || $2",
                             2, S_LL (s_fx.tenant[TA]), phone + 6),
                      1);

    /* Meta's wa_id without the ninth digit too */
    char phone2[20], w[80];
    s_phone (phone2);
    long long p2 = s_message (TA, 0, phone2, "pending", NULL, NULL);
    char wa_id[20];
    snprintf (wa_id, sizeof wa_id, "%.4s%s", phone2 + 1, phone2 + 6);
    s_wamid (w);
    a = s_meta_file (0, "meta_message_text.json",
                     &(s_vars_t){.wamid = w, .wa_id = wa_id, .text = "Stop"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone2));
    s_assert_status (p2, "blocked");

    /* Belo Horizonte (DDD 31), where Evolution drops the 9 itself */
    char phone3[20], jid3[48];
    snprintf (phone3, sizeof phone3, "+55319%08d", 87650000 + ++s_fx.seq);
    s_jid_without_nine (jid3, phone3);
    long long p3 = s_message (TA, 0, phone3, "pending", NULL, NULL);
    s_key_id (key);
    a = s_evo_file (
        TA, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid3, .text = "sair"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone3));
    s_assert_status (p3, "blocked");
}

static void
test_a_number_never_seen_saying_sair_is_recorded_opted_out (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    assert_null (s_contact (TA, phone));
    s_key_id (key);
    json_t *a = s_evo_file (
        TA, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid, .text = "SAIR"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone));
    s_assert_outcomes (TA, key, "opted_out");
    /* and a message to it is blocked, not sent */
    char body[128];
    snprintf (body, sizeof body, "{\"to\":\"%s\",\"text\":\"oferta\"}", phone);
    json_t *r = rcd_test_api_expect (s_fx.ing.port, 202, "POST", "/v1/messages",
                                     s_fx.key[TA], body);
    assert_string_equal (rcd_test_str (r, "status"), "blocked");
    json_decref (r);
    assert_null (s_contact (TB, phone));

    /* Meta: a template's quick-reply button "Parar" */
    char phone2[20], w[80];
    s_phone (phone2);
    s_wamid (w);
    a = s_meta_file (
        0, "meta_message_button.json",
        &(s_vars_t){.wamid = w, .wa_id = phone2 + 1, .text = "Parar"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone2));
    s_assert_outcomes (TA, w, "opted_out");

    /* Meta lands on b when b's phone_number_id is the one written */
    char phone3[20];
    s_phone (phone3);
    s_wamid (w);
    a = s_meta_file (
        1, "meta_message_text.json",
        &(s_vars_t){.wamid = w, .wa_id = phone3 + 1, .text = "cancelar"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TB, phone3));
    assert_null (s_contact (TA, phone3));
}

static void
test_only_a_whole_keyword_opts_out (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_put_contact (TA, phone, "Gil");
    long long p = s_message (TA, 0, phone, "pending", NULL, NULL);
    /* not the keywords: a sentence with one in it, PARA for PARAR, a
       keyword of no tenant */
    static const char *const not_keywords[] = {
        "sair do grupo", "pára",        "Quero sair", "SAIR SAIR",
        "S A I R",       "DESCADASTRE", "unsubscribe"};
    for (size_t i = 0; i < sizeof not_keywords / sizeof not_keywords[0]; i++) {
        s_key_id (key);
        json_t *a = s_evo_file (
            TA, "evolution_messages_upsert_conversation.json",
            &(s_vars_t){
                .key_id = key, .phone_jid = jid, .text = not_keywords[i]});
        s_counts (a, 1, 1, 0, 0, 0);
        json_decref (a);
        if (s_opted_out (TA, phone))
            fail_msg ("\"%s\" opted the contact out", not_keywords[i]);
        s_assert_last_reply (TA, phone, not_keywords[i]);
    }
    s_assert_status (p, "pending");

    /* case, accents, spaces and punctuation around a keyword do not
       matter */
    s_key_id (key);
    json_t *a = s_evo_file (TA, "evolution_messages_upsert_conversation.json",
                            &(s_vars_t){.key_id = key,
                                        .phone_jid = jid,
                                        .text = "\t cÁnCeLaR...?! \n"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TA, phone));
    s_assert_status (p, "blocked");
}

static void
test_a_tenants_own_keywords_replace_the_defaults (void **state)
{
    (void)state;
    json_decref (rcd_test_api_expect (
        s_fx.ing.port, 200, "PATCH", "/v1/tenant", s_fx.key[TC],
        "{\"optout_keywords\":[\"CHEGA\",\"NÃO QUERO\"]}"));
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    long long p = s_message (TC, 0, phone, "pending", NULL, NULL);

    /* SAIR is not one of c's keywords any more */
    s_key_id (key);
    json_t *a = s_evo_file (
        TC, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid, .text = "SAIR"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    assert_false (s_opted_out (TC, phone));
    s_assert_status (p, "pending");

    s_key_id (key);
    a = s_evo_file (
        TC, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid, .text = "Não quero!"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    assert_true (s_opted_out (TC, phone));
    s_assert_status (p, "blocked");

    /* without the accent, and the other keyword */
    static const char *const texts[] = {"nao quero", "chega."};
    for (size_t i = 0; i < 2; i++) {
        char phone2[20], jid2[48];
        s_phone (phone2);
        s_jid (jid2, phone2);
        long long p2 = s_message (TC, 0, phone2, "pending", NULL, NULL);
        s_key_id (key);
        a = s_evo_file (
            TC, "evolution_messages_upsert_conversation.json",
            &(s_vars_t){.key_id = key, .phone_jid = jid2, .text = texts[i]});
        s_counts (a, 1, -1, 0, 0, 0);
        json_decref (a);
        if (!s_opted_out (TC, phone2))
            fail_msg ("\"%s\" did not opt out", texts[i]);
        s_assert_status (p2, "blocked");
    }
    /* a's keywords did not change */
    char phone3[20], jid3[48];
    s_phone (phone3);
    s_jid (jid3, phone3);
    s_key_id (key);
    a = s_evo_file (
        TA, "evolution_messages_upsert_conversation.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid3, .text = "chega"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    assert_false (s_opted_out (TA, phone3));
}

/*  --- echoes --- */

static void
test_an_echo_settles_the_unknown_message_it_repeats (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    const char *text = "Olá Ana, sua fatura de R$ 159,90 vence em 05/12.";
    long long m = s_message (TA, s_fx.evo[TA], phone, "unknown", NULL, text);
    json_t *a =
        s_evo_file (TA, "evolution_send_message.json",
                    &(s_vars_t){.key_id = key, .phone_jid = jid, .text = text});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    json_t *doc = s_api_message (TA, m);
    assert_string_equal (rcd_test_str (doc, "status"), "sent");
    assert_string_equal (rcd_test_str (doc, "provider_message_id"), key);
    assert_non_null (rcd_test_str (doc, "sent_at"));
    json_decref (doc);
    assert_int_equal (s_history (m, "sent"), 1);
    s_assert_outcomes (TA, key, "settled");
    /* Evolution sending it again is a duplicate */
    a = s_evo_file (TA, "evolution_send_message.json",
                    &(s_vars_t){.key_id = key, .phone_jid = jid, .text = text});
    s_counts (a, 1, 0, 1, 0, 0);
    json_decref (a);
    assert_int_equal (s_history_all (m), 1);
    /* and its receipts now find it */
    a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json",
                    &(s_vars_t){.key_id = key, .phone_jid = jid});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m, "delivered");

    /* another text does not settle it */
    char phone2[20], jid2[48];
    s_phone (phone2);
    s_jid (jid2, phone2);
    long long m2 =
        s_message (TA, s_fx.evo[TA], phone2, "unknown", NULL, "Texto enviado");
    s_key_id (key);
    a = s_evo_file (
        TA, "evolution_send_message.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid2, .text = "Outro texto"});
    json_decref (a);
    s_assert_status (m2, "unknown");
    s_assert_column (m2, "provider_message_id", NULL);
    assert_int_equal (s_history_all (m2), 0);
    char *outcomes = s_outcomes (TA, key);
    assert_true (strstr (outcomes, "settled") == NULL);
    free (outcomes);
    /* nor the same text through another instance */
    s_key_id (key);
    a = s_evo_file (TA, "evolution_send_message.json",
                    &(s_vars_t){.instance = "evo-conn",
                                .apikey = "evo-key-conn",
                                .key_id = key,
                                .phone_jid = jid2,
                                .text = "Texto enviado"});
    json_decref (a);
    s_assert_status (m2, "unknown");

    /* messages.upsert with fromMe is an echo as well */
    char phone3[20], jid3[48];
    s_phone (phone3);
    s_jid (jid3, phone3);
    long long m3 = s_message (TA, s_fx.evo[TA], phone3, "unknown", NULL,
                              "Lembrete: boleto vence hoje");
    s_key_id (key);
    a = s_evo_file (TA, "evolution_messages_upsert_from_me.json",
                    &(s_vars_t){.key_id = key,
                                .phone_jid = jid3,
                                .text = "Lembrete: boleto vence hoje"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m3, "sent");
    s_assert_column (m3, "provider_message_id", key);
    /* and it is not a reply of the contact */
    json_t *c = s_contact (TA, phone3);
    if (c)
        assert_null (rcd_test_str (c, "last_reply"));
    json_decref (c);
    assert_false (s_opted_out (TA, phone3));

    /* the echo of a message already sent changes nothing */
    char phone4[20], jid4[48];
    s_phone (phone4);
    s_jid (jid4, phone4);
    s_key_id (key);
    long long m4 = s_message (TA, s_fx.evo[TA], phone4, "sent", key, "Já foi");
    a = s_evo_file (
        TA, "evolution_send_message.json",
        &(s_vars_t){.key_id = key, .phone_jid = jid4, .text = "Já foi"});
    s_counts (a, 1, 1, 0, 0, 0);
    json_decref (a);
    s_assert_status (m4, "sent");
    assert_int_equal (s_history_all (m4), 0);
    s_assert_outcomes (TA, key, "known");
}

/*  --- unmatched --- */

static void
test_a_receipt_for_an_unknown_id_is_kept_unmatched (void **state)
{
    (void)state;
    char phone[20], jid[48], key[48], w[80];
    s_phone (phone);
    s_jid (jid, phone);
    s_key_id (key);
    long long messages = s_int ("SELECT count(*) FROM messages", 0);
    json_t *a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json",
                            &(s_vars_t){.key_id = key, .phone_jid = jid});
    s_counts (a, 1, 0, 0, 1, 0);
    json_decref (a);
    s_assert_outcomes (TA, key, "unmatched");
    assert_int_equal (
        s_int ("SELECT count(*) FROM webhook_events"
               " WHERE tenant_id = $1::bigint AND provider_message_id = $2"
               "   AND message_id IS NULL AND kind = 'receipt'",
               2, S_LL (s_fx.tenant[TA]), key),
        1);

    s_wamid (w);
    a = s_meta_file (0, "meta_status_delivered.json",
                     &(s_vars_t){.wamid = w, .wa_id = phone + 1});
    s_counts (a, 1, 0, 0, 1, 0);
    json_decref (a);
    s_assert_outcomes (TA, w, "unmatched");
    assert_int_equal (s_int ("SELECT count(*) FROM messages", 0), messages);

    /* a's receipt naming b's message id finds nothing of a's */
    char key2[48];
    s_key_id (key2);
    long long mb = s_message (TB, s_fx.evo[TB], phone, "sent", key2, NULL);
    a = s_evo_file (TA, "evolution_messages_update_delivery_ack.json",
                    &(s_vars_t){.key_id = key2, .phone_jid = jid});
    s_counts (a, 1, 0, 0, 1, 0);
    json_decref (a);
    s_assert_status (mb, "sent");
}

/*  --- connection --- */

/*  Posts a connection.update of instance name for tenant t, in state
    with reason; each call a distinct event (its own date_time). */
static void
s_connection (int t, const char *name, const char *apikey, const char *state,
              int reason)
{
    json_t *ev = s_fill_json ("evolution_connection_update_close_logged_out."
                              "json",
                              &(s_vars_t){.instance = name, .apikey = apikey});
    json_t *data = json_object_get (ev, "data");
    json_object_set_new (data, "state", json_string (state));
    json_object_set_new (data, "statusReason", json_integer (reason));
    char when[40];
    snprintf (when, sizeof when, "2026-03-10T11:%02d:%02d.%03dZ",
              (s_fx.seq / 60) % 60, s_fx.seq % 60, s_fx.seq % 1000);
    s_fx.seq++;
    json_object_set_new (ev, "date_time", json_string (when));
    char *body = s_dump (ev);
    json_t *a = s_evo_ok (t, body);
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    free (body);
    json_decref (ev);
}

static void
s_assert_health (int t, long long id, const char *expected)
{
    char *health = s_health (t, id);
    if (strcmp (health, expected) != 0)
        fail_msg ("instance %lld: health %s, expected %s", id, health,
                  expected);
    free (health);
}

static void
test_connection_updates_set_the_instance_health (void **state)
{
    (void)state;
    char *b_before = s_health (TB, s_fx.evo[TB]);
    /* the fixtures as they are */
    json_t *a = s_evo_file (
        TA, "evolution_connection_update_close_logged_out.json",
        &(s_vars_t){.instance = "evo-conn", .apikey = "evo-key-conn"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_health (TA, s_fx.conn, "logged_out");
    a = s_evo_file (
        TA, "evolution_connection_update_open.json",
        &(s_vars_t){.instance = "evo-conn", .apikey = "evo-key-conn"});
    s_counts (a, 1, -1, 0, 0, 0);
    json_decref (a);
    s_assert_health (TA, s_fx.conn, "open");

    /* every state; the codes that mean a person must pair again */
    static const struct {
        const char *state;
        int reason;
        const char *health;
    } steps[] = {
        {"connecting", 200, "connecting"},
        {"close", 428, "close"},
        {"open", 200, "open"},
        {"close", 402, "logged_out"},
        {"close", 408, "close"},
        {"close", 403, "logged_out"},
        {"refused", 428, "refused"},
        {"close", 406, "logged_out"},
        {"close", 515, "close"},
        {"open", 200, "open"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        s_connection (TA, "evo-conn", "evo-key-conn", steps[i].state,
                      steps[i].reason);
        char *health = s_health (TA, s_fx.conn);
        if (strcmp (health, steps[i].health) != 0)
            fail_msg ("%s %d: health %s, expected %s", steps[i].state,
                      steps[i].reason, health, steps[i].health);
        free (health);
    }
    /* the other instances are untouched */
    char *b_after = s_health (TB, s_fx.evo[TB]);
    assert_string_equal (b_before, b_after);
    free (b_before);
    free (b_after);
    char *a_evo = s_health (TA, s_fx.evo[TA]);
    assert_string_equal (a_evo, "unknown");
    free (a_evo);
    assert_int_equal (
        s_int ("SELECT count(*) FROM webhook_events"
               " WHERE instance_id = $1::bigint AND kind = 'connection'",
               1, S_LL (s_fx.conn)),
        12);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_evolution_receipts_move_a_sent_message_forward),
        cmocka_unit_test (
            test_server_ack_settles_the_one_unknown_message_to_that_number),
        cmocka_unit_test (
            test_evolution_error_fails_a_sent_message_into_the_dead_letters),
        cmocka_unit_test (
            test_meta_statuses_move_messages_and_failed_ones_dead_letter),
        cmocka_unit_test (test_inbound_replies_are_recorded_on_the_contact),
        cmocka_unit_test (test_groups_broadcasts_and_other_events_are_ignored),
        cmocka_unit_test (
            test_the_same_event_fifty_times_at_once_is_applied_once),
        cmocka_unit_test (test_a_second_delivery_is_a_duplicate),
        cmocka_unit_test (test_receipts_out_of_order_end_in_read),
        cmocka_unit_test (
            test_bad_evolution_requests_are_refused_and_change_nothing),
        cmocka_unit_test (
            test_bad_meta_requests_are_refused_and_change_nothing),
        cmocka_unit_test (
            test_an_opt_out_keyword_blocks_the_contacts_pending_messages),
        cmocka_unit_test (
            test_the_number_without_the_ninth_digit_is_the_same_contact),
        cmocka_unit_test (
            test_a_number_never_seen_saying_sair_is_recorded_opted_out),
        cmocka_unit_test (test_only_a_whole_keyword_opts_out),
        cmocka_unit_test (test_a_tenants_own_keywords_replace_the_defaults),
        cmocka_unit_test (test_an_echo_settles_the_unknown_message_it_repeats),
        cmocka_unit_test (test_a_receipt_for_an_unknown_id_is_kept_unmatched),
        cmocka_unit_test (test_connection_updates_set_the_instance_health),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}

/*  test_rcd_gateway.c - request building and answer classification for
    Evolution API v2 and Meta's Cloud API, with the answer shapes of
    API.md "Gateways" (and those the simulator serves). */
#include "rcd_gateway.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*  --------------------------------------------------------------------
    Classification table */

typedef struct {
    const char *name; /* what the row shows */
    rcd_gateway_provider_t provider;
    long status;
    const char *body;
    rcd_http_error_t error;
    int retry_after_s;        /* Retry-After given */
    rcd_gateway_kind_t kind;  /* expected */
    const char *reason;       /* expected */
    const char *message_id;   /* expected, NULL: "" */
    const char *wa_id;        /* expected, NULL: "" */
    int expect_retry_after_s; /* expected */
    bool throttled;           /* expected */
    bool unrecognised;        /* expected: no rule names the answer */
} s_case_t;

#define EVO  RCD_GATEWAY_EVOLUTION
#define META RCD_GATEWAY_META
#define NONE RCD_HTTP_ERR_NONE

static const char s_evo_sent_201[] =
    "{\"key\":{\"remoteJid\":\"5511912345678@s.whatsapp.net\",\"fromMe\":true,"
    "\"id\":\"3EB0C431C26A1916E07E\"},\"pushName\":\"\",\"status\":\"PENDING\","
    "\"message\":{\"conversation\":\"ola\"},\"messageType\":\"conversation\","
    "\"messageTimestamp\":1732240000,\"instanceId\":\"abc\","
    "\"source\":\"unknown\"}";
static const char s_evo_sent_string_ts[] =
    "{\"key\":{\"remoteJid\":\"5511912345678@s.whatsapp.net\",\"fromMe\":true,"
    "\"id\":\"BAE5F4C3D2E1\"},\"status\":\"PENDING\","
    "\"messageTimestamp\":\"1732240000\"}";
static const char s_evo_not_on_whatsapp[] =
    "{\"status\":400,\"error\":\"Bad Request\",\"response\":{\"message\":"
    "[{\"jid\":\"5511912345678@s.whatsapp.net\",\"exists\":false,"
    "\"number\":\"5511912345678\"}]}}";
static const char s_evo_schema[] =
    "{\"status\":400,\"error\":\"Bad Request\",\"response\":{\"message\":"
    "[[\"instance requires property \\\"number\\\"\"]]}}";
static const char s_evo_threw[] =
    "{\"status\":400,\"error\":\"Bad Request\",\"response\":{\"message\":"
    "[\"Connection Closed\"]}}";
static const char s_evo_unauthorized[] =
    "{\"status\":401,\"error\":\"Unauthorized\",\"response\":{\"message\":"
    "\"Unauthorized\"}}";
static const char s_evo_not_found[] =
    "{\"status\":404,\"error\":\"Not Found\",\"response\":{\"message\":"
    "[\"The \\\"x\\\" instance does not exist\"]}}";
static const char s_evo_429[] =
    "{\"status\":429,\"error\":\"Too Many Requests\",\"response\":"
    "{\"message\":[\"Too Many Requests\"]}}";
static const char s_evo_503[] =
    "{\"status\":503,\"error\":\"Service Unavailable\",\"response\":"
    "{\"message\":[\"Service Unavailable\"]}}";

static const char s_meta_sent[] =
    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":"
    "\"5531987654321\",\"wa_id\":\"553187654321\"}],\"messages\":[{\"id\":"
    "\"wamid.HBgMNTUzMTg3NjU0MzIxFQIAERgSQzQ5\"}]}";
static const char s_meta_no_messages[] =
    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"1\","
    "\"wa_id\":\"1\"}]}";

/*  A Meta error body with code (and subcode when not 0). */
#define META_ERR(code)                                                         \
    "{\"error\":{\"message\":\"(#" #code ") x\",\"type\":\"OAuthException\","  \
    "\"code\":" #code ",\"error_data\":{\"messaging_product\":\"whatsapp\","   \
    "\"details\":\"d\"},\"fbtrace_id\":\"AbCdEf\"}}"
#define META_ERR_SUB(code, sub)                                                \
    "{\"error\":{\"message\":\"m\",\"type\":\"OAuthException\","               \
    "\"code\":" #code ",\"error_subcode\":" #sub                               \
    ",\"fbtrace_id\":\"AbCdEf\"}}"

static const s_case_t s_cases[] = {
    /* Evolution answers */
    {"evo 201 sent", EVO, 201, s_evo_sent_201, NONE, 0, RCD_GATEWAY_SUCCESS,
     "sent", "3EB0C431C26A1916E07E", NULL, 0, false, false},
    {"evo 200 sent, string timestamp", EVO, 200, s_evo_sent_string_ts, NONE, 0,
     RCD_GATEWAY_SUCCESS, "sent", "BAE5F4C3D2E1", NULL, 0, false, false},
    {"evo 201 without key.id", EVO, 201, "{\"status\":\"PENDING\"}", NONE, 0,
     RCD_GATEWAY_UNKNOWN, "success_without_id", NULL, NULL, 0, false, true},
    {"evo 201 with an empty body", EVO, 201, "", NONE, 0, RCD_GATEWAY_UNKNOWN,
     "success_without_id", NULL, NULL, 0, false, true},
    {"evo 400 not on whatsapp", EVO, 400, s_evo_not_on_whatsapp, NONE, 0,
     RCD_GATEWAY_PERMANENT, "not_on_whatsapp", NULL, NULL, 0, false, false},
    {"evo 400 schema error", EVO, 400, s_evo_schema, NONE, 0,
     RCD_GATEWAY_PERMANENT, "bad_request", NULL, NULL, 0, false, false},
    {"evo 400 send threw", EVO, 400, s_evo_threw, NONE, 0, RCD_GATEWAY_UNKNOWN,
     "send_error", NULL, NULL, 0, false, false},
    {"evo 400 exists:true is not a verdict", EVO, 400,
     "{\"response\":{\"message\":[{\"exists\":true}]}}", NONE, 0,
     RCD_GATEWAY_TRANSIENT, "http_400", NULL, NULL, 0, false, true},
    {"evo 400 html", EVO, 400, "<html>bad</html>", NONE, 0,
     RCD_GATEWAY_TRANSIENT, "http_400", NULL, NULL, 0, false, true},
    {"evo 401 unauthorized", EVO, 401, s_evo_unauthorized, NONE, 0,
     RCD_GATEWAY_INSTANCE, "unauthorized", NULL, NULL, 0, false, false},
    {"evo 403 forbidden", EVO, 403, "{}", NONE, 0, RCD_GATEWAY_INSTANCE,
     "forbidden", NULL, NULL, 0, false, false},
    {"evo 404 unknown instance", EVO, 404, s_evo_not_found, NONE, 0,
     RCD_GATEWAY_INSTANCE, "instance_not_found", NULL, NULL, 0, false, false},
    {"evo 413 too large", EVO, 413, "", NONE, 0, RCD_GATEWAY_PERMANENT,
     "http_413", NULL, NULL, 0, false, false},
    {"evo 429 with Retry-After", EVO, 429, s_evo_429, NONE, 7,
     RCD_GATEWAY_TRANSIENT, "http_429", NULL, NULL, 7, true, false},
    {"evo 503", EVO, 503, s_evo_503, NONE, 0, RCD_GATEWAY_TRANSIENT, "http_503",
     NULL, NULL, 0, false, false},
    {"evo 500 no body", EVO, 500, NULL, NONE, 0, RCD_GATEWAY_TRANSIENT,
     "http_500", NULL, NULL, 0, false, false},
    {"evo 302 redirect", EVO, 302, "", NONE, 0, RCD_GATEWAY_TRANSIENT,
     "http_302", NULL, NULL, 0, false, true},

    /* Meta answers: error.code decides, not the HTTP status */
    {"meta 200 sent, wa_id differs", META, 200, s_meta_sent, NONE, 0,
     RCD_GATEWAY_SUCCESS, "sent", "wamid.HBgMNTUzMTg3NjU0MzIxFQIAERgSQzQ5",
     "553187654321", 0, false, false},
    {"meta 200 without messages", META, 200, s_meta_no_messages, NONE, 0,
     RCD_GATEWAY_UNKNOWN, "success_without_id", NULL, NULL, 0, false, true},
    {"meta 130429 throughput", META, 400, META_ERR (130429), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_130429", NULL, NULL, 0, true, false},
    {"meta 131048 spam limit waits a minute", META, 400, META_ERR (131048),
     NONE, 0, RCD_GATEWAY_TRANSIENT, "meta_131048", NULL, NULL, 60, true,
     false},
    {"meta 131048 keeps a longer Retry-After", META, 400, META_ERR (131048),
     NONE, 120, RCD_GATEWAY_TRANSIENT, "meta_131048", NULL, NULL, 120, true,
     false},
    {"meta 131056 pair rate", META, 400, META_ERR (131056), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_131056", NULL, NULL, 6, false, false},
    {"meta 4 app limit, 429 with Retry-After", META, 429, META_ERR (4), NONE,
     10, RCD_GATEWAY_TRANSIENT, "meta_4", NULL, NULL, 10, true, false},
    {"meta 80007 waba limit", META, 400, META_ERR (80007), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_80007", NULL, NULL, 0, true, false},
    {"meta 131026 undeliverable", META, 400, META_ERR (131026), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_131026", NULL, NULL, 0, false, false},
    {"meta 131047 outside window", META, 400, META_ERR (131047), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_131047", NULL, NULL, 0, false, false},
    {"meta 100 invalid parameter", META, 400, META_ERR (100), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_100", NULL, NULL, 0, false, false},
    {"meta 100/33 unknown phone_number_id", META, 400, META_ERR_SUB (100, 33),
     NONE, 0, RCD_GATEWAY_INSTANCE, "meta_100_33", NULL, NULL, 0, false, false},
    {"meta 132000 template params", META, 400, META_ERR (132000), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_132000", NULL, NULL, 0, false, false},
    {"meta 132001 template missing", META, 404, META_ERR (132001), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_132001", NULL, NULL, 0, false, false},
    {"meta 190 token expired", META, 401, META_ERR_SUB (190, 463), NONE, 0,
     RCD_GATEWAY_INSTANCE, "meta_190_463", NULL, NULL, 0, false, false},
    {"meta 368 policy block", META, 403, META_ERR (368), NONE, 0,
     RCD_GATEWAY_INSTANCE, "meta_368", NULL, NULL, 0, false, false},
    {"meta 131031 account locked", META, 400, META_ERR (131031), NONE, 0,
     RCD_GATEWAY_INSTANCE, "meta_131031", NULL, NULL, 0, false, false},
    {"meta 131000 something went wrong", META, 500, META_ERR (131000), NONE, 0,
     RCD_GATEWAY_UNKNOWN, "meta_131000", NULL, NULL, 0, false, false},
    {"meta 2 temporarily unavailable", META, 503, META_ERR (2), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_2", NULL, NULL, 0, false, false},
    {"meta error code wins over a 200", META, 200, META_ERR (131026), NONE, 0,
     RCD_GATEWAY_PERMANENT, "meta_131026", NULL, NULL, 0, false, false},
    {"meta unlisted code", META, 400, META_ERR (131009), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_131009", NULL, NULL, 0, false, true},
    {"meta 502 html", META, 502, "<html>Bad Gateway</html>", NONE, 0,
     RCD_GATEWAY_TRANSIENT, "http_502", NULL, NULL, 0, false, false},
    {"meta 429 without body", META, 429, "", NONE, 3, RCD_GATEWAY_TRANSIENT,
     "http_429", NULL, NULL, 3, true, false},
    {"meta 1 unknown api error", META, 500, META_ERR (1), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_1", NULL, NULL, 0, false, false},
    {"meta 131016 overloaded", META, 503, META_ERR (131016), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_131016", NULL, NULL, 0, false, false},
    {"meta 133004 server unavailable", META, 503, META_ERR (133004), NONE, 0,
     RCD_GATEWAY_TRANSIENT, "meta_133004", NULL, NULL, 0, false, false},
    {"meta 418 without error object", META, 418, "{\"teapot\":true}", NONE, 0,
     RCD_GATEWAY_TRANSIENT, "http_418", NULL, NULL, 0, false, true},
    {"evo 418", EVO, 418, "{}", NONE, 0, RCD_GATEWAY_TRANSIENT, "http_418",
     NULL, NULL, 0, false, true},

    /* No answer: what matters is whether the request went out */
    {"connect refused", EVO, 0, NULL, RCD_HTTP_ERR_CONNECT, 0,
     RCD_GATEWAY_TRANSIENT, "connect_failed", NULL, NULL, 0, false, false},
    {"timeout before send", META, 0, NULL, RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND, 0,
     RCD_GATEWAY_TRANSIENT, "timeout_before_send", NULL, NULL, 0, false, false},
    {"timeout after send", EVO, 0, NULL, RCD_HTTP_ERR_TIMEOUT_AFTER_SEND, 0,
     RCD_GATEWAY_UNKNOWN, "timeout_after_send", NULL, NULL, 0, false, false},
    {"meta timeout after send", META, 0, NULL, RCD_HTTP_ERR_TIMEOUT_AFTER_SEND,
     0, RCD_GATEWAY_UNKNOWN, "timeout_after_send", NULL, NULL, 0, false, false},
    {"reset before send", EVO, 0, NULL, RCD_HTTP_ERR_RESET_BEFORE_SEND, 0,
     RCD_GATEWAY_TRANSIENT, "reset_before_send", NULL, NULL, 0, false, false},
    {"reset after send", META, 0, NULL, RCD_HTTP_ERR_RESET_AFTER_SEND, 0,
     RCD_GATEWAY_UNKNOWN, "reset_after_send", NULL, NULL, 0, false, false},
    {"other transport error", EVO, 0, NULL, RCD_HTTP_ERR_OTHER, 0,
     RCD_GATEWAY_TRANSIENT, "transport_error", NULL, NULL, 0, false, false},
};

static void
test_classify_table (void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        const s_case_t *c = &s_cases[i];
        rcd_gateway_outcome_t out;
        memset (&out, 0x5a, sizeof out); /* classify must fill it all */
        rcd_gateway_classify (c->provider, c->status, c->body, c->error,
                              c->retry_after_s, &out);
        if (out.kind != c->kind || strcmp (out.reason, c->reason) != 0 ||
            strcmp (out.provider_message_id,
                    c->message_id ? c->message_id : "") != 0 ||
            strcmp (out.wa_id, c->wa_id ? c->wa_id : "") != 0 ||
            out.retry_after_s != c->expect_retry_after_s ||
            out.throttled != c->throttled ||
            out.unrecognised != c->unrecognised)
            fail_msg ("case \"%s\": got kind %s reason %s id '%s' wa_id '%s' "
                      "retry %d throttled %d unrecognised %d",
                      c->name, rcd_gateway_kind_name (out.kind), out.reason,
                      out.provider_message_id, out.wa_id, out.retry_after_s,
                      out.throttled, out.unrecognised);
    }
}

/*  An id longer than we store is not a success we could match receipts
    to: it must not pass as one. */
static void
test_classify_rejects_oversize_id (void **state)
{
    (void)state;
    char body[512];
    char id[300];
    memset (id, 'A', sizeof id - 1);
    id[sizeof id - 1] = 0;
    snprintf (body, sizeof body, "{\"key\":{\"id\":\"%s\"}}", id);
    rcd_gateway_outcome_t out;
    rcd_gateway_classify (EVO, 201, body, NONE, 0, &out);
    assert_int_equal (out.kind, RCD_GATEWAY_UNKNOWN);
}

/*  --------------------------------------------------------------------
    Request building */

static json_t *
s_parse_body (const rcd_gateway_request_t *req)
{
    assert_int_equal (strlen (req->body), req->body_len);
    json_error_t err;
    json_t *doc = json_loads (req->body, 0, &err);
    if (!doc)
        fail_msg ("body is not JSON: %s (%s)", err.text, req->body);
    return doc;
}

static const rcd_gateway_instance_t s_evo = {
    .provider = RCD_GATEWAY_EVOLUTION,
    .name = "cobranca-01",
    .base_url = "http://127.0.0.1:8081/",
    .api_key = "k3y-evo",
};

static const rcd_gateway_instance_t s_meta = {
    .provider = RCD_GATEWAY_META,
    .name = "meta-main",
    .base_url = "https://graph.facebook.com",
    .access_token = "EAAG-token",
    .phone_number_id = "106540352242922",
    .api_version = "v20.0",
};

static void
test_build_evolution_send (void **state)
{
    (void)state;
    rcd_gateway_request_t req = {0};
    assert_int_equal (rcd_gateway_build_send (&s_evo, "+5511912345678",
                                              "Olá \"Ana\"\nsua fatura", 1200,
                                              &req),
                      0);
    assert_string_equal (req.url,
                         "http://127.0.0.1:8081/message/sendText/cobranca-01");
    assert_string_equal (req.headers[0], "Content-Type: application/json");
    assert_string_equal (req.headers[1], "apikey: k3y-evo");
    assert_null (req.headers[2]);
    assert_int_equal (req.typing_ms, 1200);
    assert_int_equal (req.total_timeout_ms, 1200 + 30000);
    json_t *doc = s_parse_body (&req);
    assert_int_equal (json_object_size (doc), 3);
    assert_string_equal (json_string_value (json_object_get (doc, "number")),
                         "5511912345678");
    assert_string_equal (json_string_value (json_object_get (doc, "text")),
                         "Olá \"Ana\"\nsua fatura");
    assert_int_equal (json_integer_value (json_object_get (doc, "delay")),
                      1200);
    json_decref (doc);

    /* No delay: no "delay" key, and the buffer is reused. */
    assert_int_equal (
        rcd_gateway_build_send (&s_evo, "+5511912345678", "oi", 0, &req), 0);
    doc = s_parse_body (&req);
    assert_int_equal (json_object_size (doc), 2);
    assert_null (json_object_get (doc, "delay"));
    assert_int_equal (req.total_timeout_ms, 30000);
    json_decref (doc);
    rcd_gateway_request_clear (&req);
    assert_null (req.body);
}

static void
test_build_evolution_encodes_instance_name (void **state)
{
    (void)state;
    rcd_gateway_instance_t evo = s_evo;
    evo.name = "Loja Centro/2";
    evo.base_url = "https://evo.example.com///";
    rcd_gateway_request_t req = {0};
    assert_int_equal (
        rcd_gateway_build_send (&evo, "+5511912345678", "x", 0, &req), 0);
    assert_string_equal (
        req.url, "https://evo.example.com/message/sendText/Loja%20Centro%2F2");
    rcd_gateway_request_clear (&req);
}

static void
test_build_meta_send (void **state)
{
    (void)state;
    rcd_gateway_request_t req = {0};
    assert_int_equal (rcd_gateway_build_send (&s_meta, "+5531987654321",
                                              "Seu boleto vence hoje", 3000,
                                              &req),
                      0);
    assert_string_equal (
        req.url, "https://graph.facebook.com/v20.0/106540352242922/messages");
    assert_string_equal (req.headers[0], "Content-Type: application/json");
    assert_string_equal (req.headers[1], "Authorization: Bearer EAAG-token");
    assert_null (req.headers[2]);
    assert_int_equal (req.typing_ms, 0); /* Meta has no typing delay */
    assert_int_equal (req.total_timeout_ms, 30000);
    json_t *doc = s_parse_body (&req);
    assert_string_equal (
        json_string_value (json_object_get (doc, "messaging_product")),
        "whatsapp");
    assert_string_equal (
        json_string_value (json_object_get (doc, "recipient_type")),
        "individual");
    assert_string_equal (json_string_value (json_object_get (doc, "to")),
                         "5531987654321");
    assert_string_equal (json_string_value (json_object_get (doc, "type")),
                         "text");
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "text"), "body")),
                         "Seu boleto vence hoje");
    assert_int_equal (json_object_size (doc), 5);
    json_decref (doc);
    rcd_gateway_request_clear (&req);
}

static void
test_build_meta_default_version (void **state)
{
    (void)state;
    rcd_gateway_instance_t meta = s_meta;
    meta.api_version = NULL;
    rcd_gateway_request_t req = {0};
    assert_int_equal (
        rcd_gateway_build_send (&meta, "+5531987654321", "x", 0, &req), 0);
    assert_string_equal (
        req.url, "https://graph.facebook.com/v21.0/106540352242922/messages");
    rcd_gateway_request_clear (&req);
}

/*  A long text grows the body buffer and survives intact. */
static void
test_build_long_text (void **state)
{
    (void)state;
    size_t n = 20000;
    char *text = malloc (n + 1);
    assert_non_null (text);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + i % 26);
    text[n] = 0;
    rcd_gateway_request_t req = {0};
    assert_int_equal (
        rcd_gateway_build_send (&s_meta, "+5531987654321", text, 0, &req), 0);
    json_t *doc = s_parse_body (&req);
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "text"), "body")),
                         text);
    json_decref (doc);
    rcd_gateway_request_clear (&req);
    free (text);
}

static void
test_build_rejects_bad_input (void **state)
{
    (void)state;
    rcd_gateway_request_t req = {0};
    /* numbers that are not E.164 */
    assert_int_equal (
        rcd_gateway_build_send (&s_evo, "5511912345678", "x", 0, &req), -2);
    assert_int_equal (
        rcd_gateway_build_send (&s_evo, "+55 11 91234", "x", 0, &req), -2);
    assert_int_equal (rcd_gateway_build_send (&s_evo, "+1234567", "x", 0, &req),
                      -2);
    assert_int_equal (
        rcd_gateway_build_send (&s_evo, "+1234567890123456", "x", 0, &req), -2);
    assert_int_equal (rcd_gateway_build_send (&s_evo, NULL, "x", 0, &req), -2);
    /* text that is not UTF-8 */
    assert_int_equal (
        rcd_gateway_build_send (&s_evo, "+5511912345678", "\xff\xfe", 0, &req),
        -2);
    /* missing or unsafe credentials */
    rcd_gateway_instance_t evo = s_evo;
    evo.api_key = NULL;
    assert_int_equal (
        rcd_gateway_build_send (&evo, "+5511912345678", "x", 0, &req), -2);
    evo.api_key = "k\r\nX-Injected: 1";
    assert_int_equal (
        rcd_gateway_build_send (&evo, "+5511912345678", "x", 0, &req), -2);
    evo = s_evo;
    evo.name = "";
    assert_int_equal (
        rcd_gateway_build_send (&evo, "+5511912345678", "x", 0, &req), -2);
    rcd_gateway_instance_t meta = s_meta;
    meta.access_token = "";
    assert_int_equal (
        rcd_gateway_build_send (&meta, "+5511912345678", "x", 0, &req), -2);
    meta = s_meta;
    meta.phone_number_id = NULL;
    assert_int_equal (
        rcd_gateway_build_send (&meta, "+5511912345678", "x", 0, &req), -2);
    meta = s_meta;
    meta.base_url = "/";
    assert_int_equal (
        rcd_gateway_build_send (&meta, "+5511912345678", "x", 0, &req), -2);
    /* a URL that does not fit */
    char long_url[RCD_GATEWAY_URL_MAX + 10];
    memset (long_url, 'h', sizeof long_url - 1);
    long_url[sizeof long_url - 1] = 0;
    meta = s_meta;
    meta.base_url = long_url;
    assert_int_equal (
        rcd_gateway_build_send (&meta, "+5511912345678", "x", 0, &req), -2);
    rcd_gateway_request_clear (&req);
}

/*  Whatever bytes a gateway sends, what we store is valid UTF-8 that fits
    the limit without a cut character. */
static void
test_excerpt_is_valid_utf8 (void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        size_t max;
        const char *out;
    } cases[] = {
        {"plain ascii", 11, 100, "plain ascii"},
        {"truncated", 9, 4, "trun"},
        {"ol\xc3\xa1 mundo", 11, 100, "ol\xc3\xa1 mundo"},
        /* a 2-byte character cut by the limit is left out whole */
        {"ol\xc3\xa1", 4, 3, "ol"},
        /* a 4-byte emoji cut by the limit */
        {"a\xf0\x9f\x98\x80", 5, 4, "a"},
        {"a\xf0\x9f\x98\x80", 5, 5, "a\xf0\x9f\x98\x80"},
        /* stray continuation, invalid lead, overlong, surrogate */
        {"x\x80y", 3, 10, "x?y"},
        {"x\xffy", 3, 10, "x?y"},
        {"\xc0\xafz", 3, 10, "??z"},
        {"\xed\xa0\x80!", 4, 10, "\x3f\x3f\x3f!"}, /* no trigraph */
        /* embedded NUL dropped */
        {"a\0b", 3, 10, "ab"},
        {"", 0, 10, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out =
            rcd_gateway_excerpt (cases[i].in, cases[i].len, cases[i].max);
        assert_non_null (out);
        if (strcmp (out, cases[i].out) != 0)
            fail_msg ("case %zu: got '%s'", i, out);
        assert_true (strlen (out) <= cases[i].max);
        free (out);
    }
    assert_null (rcd_gateway_excerpt (NULL, 0, 10));
}

/*  Bodies logged for unrecognised answers: every digit run that may be a
    phone is masked, the rest is kept. */
static void
test_log_excerpt_masks_phones (void **state)
{
    (void)state;
    static const char body[] =
        "{\"to\":\"+5511912345678\",\"jid\":\"5531987654321@s.whatsapp.net\","
        "\"code\":131009,\"short\":\"12345678\",\"trace\":\"AbC\","
        "\"long\":\"123456789012345678901234567890123456\"}";
    char *out = rcd_gateway_log_excerpt (body, strlen (body), 4096);
    assert_non_null (out);
    assert_string_equal (
        out,
        "{\"to\":\"+5511*****5678\",\"jid\":\"5531*****4321@s.whatsapp.net\","
        "\"code\":131009,\"short\":\"****\",\"trace\":\"AbC\","
        "\"long\":\"************************************\"}");
    assert_null (strstr (out, "912345"));
    free (out);
    /* the limit applies before masking; a number cut by it is masked */
    out = rcd_gateway_log_excerpt (body, strlen (body), 16);
    assert_non_null (out);
    assert_string_equal (out, "{\"to\":\"+****");
    free (out);
    assert_null (rcd_gateway_log_excerpt (NULL, 0, 10));
}

static void
test_provider_names (void **state)
{
    (void)state;
    rcd_gateway_provider_t p;
    assert_true (rcd_gateway_provider_parse ("meta", &p));
    assert_int_equal (p, RCD_GATEWAY_META);
    assert_true (rcd_gateway_provider_parse ("evolution", &p));
    assert_int_equal (p, RCD_GATEWAY_EVOLUTION);
    assert_false (rcd_gateway_provider_parse ("twilio", &p));
    assert_false (rcd_gateway_provider_parse (NULL, &p));
    assert_string_equal (rcd_gateway_provider_name (RCD_GATEWAY_META), "meta");
    assert_string_equal (rcd_gateway_kind_name (RCD_GATEWAY_INSTANCE),
                         "instance");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_classify_table),
        cmocka_unit_test (test_classify_rejects_oversize_id),
        cmocka_unit_test (test_build_evolution_send),
        cmocka_unit_test (test_build_evolution_encodes_instance_name),
        cmocka_unit_test (test_build_meta_send),
        cmocka_unit_test (test_build_meta_default_version),
        cmocka_unit_test (test_build_long_text),
        cmocka_unit_test (test_build_rejects_bad_input),
        cmocka_unit_test (test_excerpt_is_valid_utf8),
        cmocka_unit_test (test_log_excerpt_masks_phones),
        cmocka_unit_test (test_provider_names),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

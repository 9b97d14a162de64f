/*  =========================================================================
    test_gwsim - the gateway simulator answers like the real gateways

    Starts rcd_gwsim in process on a free port and talks to it over real
    loopback HTTP with libcurl: success shapes, counting, each injected
    failure, held and hung answers, the control endpoints, and the
    webhooks it calls back (a small libmicrohttpd receiver in this file
    records them: shapes, Meta's signature, duplicates, failures, timing). Waits poll for
    a condition with a deadline; nothing sleeps to synchronise.
    =========================================================================
*/

#include "rcd_crypto.h"
#include "rcd_gwsim.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <cmocka.h>

#define S_APIKEY "test-key"
#define S_TOKEN  "EAAGtest"

//  One HTTP exchange as the test sees it.
typedef struct {
    CURLcode rc;          //  transport outcome
    long status;          //  HTTP status, 0 when none arrived
    char *body;           //  answer body, NUL-terminated
    size_t size;          //  bytes in body
    char retry_after[32]; //  Retry-After header value, if any
    int64_t elapsed_ms;   //  wall time of the exchange
    long connects;        //  new connections curl opened for it
} s_reply_t;

//  A request to run on another thread while the test does other things.
typedef struct {
    char url[256];    //  full URL
    char header[128]; //  one extra header line
    char body[256];   //  POST body
    long timeout_ms;  //  client timeout
    s_reply_t reply;  //  filled by the thread
    pthread_t thread; //  the thread
} s_async_t;

//  Monotonic milliseconds, to time answers.
static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Short pause between polls of a condition (never used to synchronise).
static void
s_pause_poll (void)
{
    struct timespec ts = {0, 2000000L};
    nanosleep (&ts, NULL);
}

//  Collect the answer body.
static size_t
s_on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    s_reply_t *reply = arg;
    size_t len = size * nmemb;
    char *body = realloc (reply->body, reply->size + len + 1);
    if (!body)
        return 0;
    memcpy (body + reply->size, data, len);
    reply->body = body;
    reply->size += len;
    reply->body[reply->size] = '\0';
    return len;
}

//  Remember Retry-After, the one header tests check.
static size_t
s_on_header (char *data, size_t size, size_t nmemb, void *arg)
{
    s_reply_t *reply = arg;
    size_t len = size * nmemb;
    if (len > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        size_t value_len = len - 12;
        if (value_len >= sizeof reply->retry_after)
            value_len = sizeof reply->retry_after - 1;
        char value[sizeof reply->retry_after];
        memcpy (value, data + 12, value_len);
        value[value_len] = '\0';
        sscanf (value, " %31[^\r\n]", reply->retry_after);
    }
    return len;
}

//  Run one exchange on curl (reused for keep-alive when given, else a
//  fresh handle). body NULL means GET. header is one extra header or NULL.
static s_reply_t
s_exchange (CURL *curl, const char *url, const char *header, const char *body,
            size_t body_len, long timeout_ms)
{
    s_reply_t reply;
    memset (&reply, 0, sizeof reply);
    CURL *own = curl ? NULL : curl_easy_init ();
    CURL *easy = curl ? curl : own;
    struct curl_slist *headers = NULL;
    headers = curl_slist_append (headers, "Content-Type: application/json");
    if (!header || strncasecmp (header, "Expect:", 7) != 0)
        headers = curl_slist_append (headers, "Expect:");
    if (header)
        headers = curl_slist_append (headers, header);
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, &reply);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt (easy, CURLOPT_POST, 1L);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t)body_len);
    }
    else
        curl_easy_setopt (easy, CURLOPT_HTTPGET, 1L);
    int64_t start = s_now_ms ();
    reply.rc = curl_easy_perform (easy);
    reply.elapsed_ms = s_now_ms () - start;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &reply.status);
    curl_easy_getinfo (easy, CURLINFO_NUM_CONNECTS, &reply.connects);
    if (!reply.body)
        reply.body = strdup ("");
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all (headers);
    if (own)
        curl_easy_cleanup (own);
    return reply;
}

//  Build a URL from the simulator's base and a printf-style path.
static void
s_make_url (rcd_gwsim_t *sim, char *url, size_t url_size, const char *path)
{
    snprintf (url, url_size, "%s%s", rcd_gwsim_url (sim), path);
}

//  GET a path on the simulator.
static s_reply_t
s_get (rcd_gwsim_t *sim, const char *path, const char *header)
{
    char url[256];
    s_make_url (sim, url, sizeof url, path);
    return s_exchange (NULL, url, header, NULL, 0, 5000);
}

//  POST a body to a path on the simulator.
static s_reply_t
s_post (rcd_gwsim_t *sim, const char *path, const char *header,
        const char *body, long timeout_ms)
{
    char url[256];
    s_make_url (sim, url, sizeof url, path);
    return s_exchange (NULL, url, header, body, strlen (body), timeout_ms);
}

//  An Evolution sendText body.
static char *
s_evolution_body (const char *number, const char *text, int delay_ms)
{
    json_t *doc = json_pack ("{s:s, s:s}", "number", number, "text", text);
    if (delay_ms)
        json_object_set_new (doc, "delay", json_integer (delay_ms));
    char *body = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    return body;
}

//  Evolution sendText on instance "inst" with the test apikey.
static s_reply_t
s_send_evolution (rcd_gwsim_t *sim, const char *number, const char *text)
{
    char *body = s_evolution_body (number, text, 0);
    s_reply_t reply =
        s_post (sim, "/message/sendText/inst", "apikey: " S_APIKEY, body, 5000);
    free (body);
    return reply;
}

//  Meta text send from phone_number_id 1099 with the test token.
static s_reply_t
s_send_meta (rcd_gwsim_t *sim, const char *to, const char *text)
{
    json_t *doc =
        json_pack ("{s:s, s:s, s:s, s:s, s:{s:s}}", "messaging_product",
                   "whatsapp", "recipient_type", "individual", "to", to, "type",
                   "text", "text", "body", text);
    char *body = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    s_reply_t reply = s_post (sim, "/v21.0/1099/messages",
                              "Authorization: Bearer " S_TOKEN, body, 5000);
    free (body);
    return reply;
}

//  Parse an answer body; the test fails when it is not JSON.
static json_t *
s_parse (const s_reply_t *reply)
{
    json_error_t err;
    json_t *doc = json_loads (reply->body, 0, &err);
    if (!doc)
        fprintf (stderr, "not JSON: '%s'\n", reply->body);
    assert_non_null (doc);
    return doc;
}

//  Free what an exchange allocated.
static void
s_reply_free (s_reply_t *reply)
{
    free (reply->body);
    reply->body = NULL;
}

//  Configure the simulator in process; the test fails on a bad document.
static void
s_configure (rcd_gwsim_t *sim, const char *json)
{
    assert_int_equal (rcd_gwsim_configure (sim, json), 0);
}

//  Integer at a dotted path ("error.code") inside a parsed answer.
static json_int_t
s_int_at (json_t *doc, const char *first, const char *second)
{
    json_t *value = json_object_get (doc, first);
    if (second)
        value = json_object_get (value, second);
    assert_true (json_is_integer (value));
    return json_integer_value (value);
}

//  Body of the thread that runs an s_async_t.
static void *
s_run_async (void *arg)
{
    s_async_t *async = arg;
    async->reply = s_exchange (NULL, async->url, async->header, async->body,
                               strlen (async->body), async->timeout_ms);
    return NULL;
}

//  Start an Evolution send on its own thread.
static void
s_start_async (s_async_t *async, rcd_gwsim_t *sim, const char *number,
               const char *text, int delay_ms, long timeout_ms)
{
    memset (async, 0, sizeof *async);
    s_make_url (sim, async->url, sizeof async->url, "/message/sendText/inst");
    snprintf (async->header, sizeof async->header, "apikey: %s", S_APIKEY);
    char *body = s_evolution_body (number, text, delay_ms);
    snprintf (async->body, sizeof async->body, "%s", body);
    free (body);
    async->timeout_ms = timeout_ms;
    assert_int_equal (pthread_create (&async->thread, NULL, s_run_async, async),
                      0);
}

//  Wait until the simulator holds at least n answers, or fail after 5 s.
static void
s_wait_held (rcd_gwsim_t *sim, size_t n)
{
    int64_t deadline = s_now_ms () + 5000;
    while (rcd_gwsim_held (sim) < n && s_now_ms () < deadline)
        s_pause_poll ();
    assert_true (rcd_gwsim_held (sim) >= n);
}

//  --------------------------------------------------------------------------
//  Fixture: a fresh simulator per test

static int
s_setup (void **state)
{
    rcd_gwsim_t *sim = rcd_gwsim_new ("127.0.0.1", 0);
    if (!sim)
        return -1;
    *state = sim;
    return 0;
}

static int
s_teardown (void **state)
{
    rcd_gwsim_t *sim = *state;
    rcd_gwsim_destroy (&sim);
    assert_null (sim);
    return 0;
}

//  --------------------------------------------------------------------------
//  Tests

static void
test_evolution_send_answers_201_with_a_fresh_key (void **state)
{
    rcd_gwsim_t *sim = *state;
    assert_true (rcd_gwsim_port (sim) > 0);
    s_reply_t first = s_send_evolution (sim, "+55 11 91234-5678", "olá");
    s_reply_t second = s_send_evolution (sim, "5511912345678", "second");
    assert_int_equal (first.rc, CURLE_OK);
    assert_int_equal (first.status, 201);
    json_t *doc = s_parse (&first);
    json_t *key = json_object_get (doc, "key");
    assert_string_equal (json_string_value (json_object_get (key, "remoteJid")),
                         "5511912345678@s.whatsapp.net");
    assert_true (json_is_true (json_object_get (key, "fromMe")));
    const char *id = json_string_value (json_object_get (key, "id"));
    assert_non_null (id);
    assert_int_equal (strlen (id), 20);
    assert_memory_equal (id, "3EB0", 4);
    assert_int_equal (strspn (id, "0123456789ABCDEF"), 20);
    assert_string_equal (json_string_value (json_object_get (doc, "status")),
                         "PENDING");
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "message"), "conversation")),
                         "olá");
    assert_string_equal (
        json_string_value (json_object_get (doc, "messageType")),
        "conversation");
    json_int_t stamp = s_int_at (doc, "messageTimestamp", NULL);
    assert_true (stamp > 1700000000 && stamp <= time (NULL) + 1);
    assert_non_null (json_string_value (json_object_get (doc, "instanceId")));
    assert_string_equal (json_string_value (json_object_get (doc, "source")),
                         "unknown");
    assert_string_equal (json_string_value (json_object_get (doc, "pushName")),
                         "");

    json_t *other = s_parse (&second);
    assert_int_equal (second.status, 201);
    assert_string_not_equal (id, json_string_value (json_object_get (
                                     json_object_get (other, "key"), "id")));
    assert_int_equal (rcd_gwsim_count (sim, "inst", "+55 11 91234-5678", "olá"),
                      1);
    json_decref (other);
    json_decref (doc);
    s_reply_free (&first);
    s_reply_free (&second);
}

static void
test_meta_send_answers_200_with_a_wamid (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_reply_t reply = s_send_meta (sim, "+5511912345678", "hello");
    assert_int_equal (reply.status, 200);
    json_t *doc = s_parse (&reply);
    assert_string_equal (
        json_string_value (json_object_get (doc, "messaging_product")),
        "whatsapp");
    json_t *contact = json_array_get (json_object_get (doc, "contacts"), 0);
    assert_string_equal (json_string_value (json_object_get (contact, "input")),
                         "+5511912345678");
    assert_string_equal (json_string_value (json_object_get (contact, "wa_id")),
                         "5511912345678");
    json_t *message = json_array_get (json_object_get (doc, "messages"), 0);
    const char *wamid = json_string_value (json_object_get (message, "id"));
    assert_non_null (wamid);
    assert_memory_equal (wamid, "wamid.", 6);
    assert_int_equal (rcd_gwsim_count (sim, "1099", "+5511912345678", "hello"),
                      1);
    json_decref (doc);
    s_reply_free (&reply);

    const char *template_body =
        "{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\","
        "\"to\":\"5511912345678\",\"type\":\"template\",\"template\":{\"name\":"
        "\"billing_reminder\",\"language\":{\"code\":\"pt_BR\"}}}";
    reply = s_post (sim, "/v21.0/1099/messages",
                    "Authorization: Bearer " S_TOKEN, template_body, 5000);
    assert_int_equal (reply.status, 200);
    assert_int_equal (rcd_gwsim_count (sim, "1099", "5511912345678",
                                       "template:billing_reminder"),
                      1);
    s_reply_free (&reply);
}

static void
test_counts_report_totals_distinct_and_duplicates (void **state)
{
    rcd_gwsim_t *sim = *state;
    const char *texts[] = {"a", "a", "b"};
    for (int i = 0; i < 3; i++) {
        s_reply_t reply = s_send_evolution (sim, "5511900000001", texts[i]);
        assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    assert_int_equal (rcd_gwsim_total (sim), 3);
    assert_int_equal (rcd_gwsim_distinct (sim), 2);
    assert_int_equal (rcd_gwsim_duplicates (sim), 1);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000001", "a"), 2);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000001", "c"), 0);
    assert_int_equal (rcd_gwsim_count (sim, "other", "5511900000001", "a"), 0);

    s_reply_t reply = s_get (sim, "/_sim/counts", NULL);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "total", NULL), 3);
    assert_int_equal (s_int_at (doc, "distinct", NULL), 2);
    assert_int_equal (s_int_at (doc, "duplicates", NULL), 1);
    assert_null (json_object_get (doc, "items"));
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_get (sim, "/_sim/counts?items=1", NULL);
    doc = s_parse (&reply);
    json_t *items = json_object_get (doc, "items");
    assert_int_equal (json_array_size (items), 2);
    json_t *first = json_array_get (items, 0);
    assert_string_equal (
        json_string_value (json_object_get (first, "instance")), "inst");
    assert_string_equal (json_string_value (json_object_get (first, "number")),
                         "5511900000001");
    assert_string_equal (json_string_value (json_object_get (first, "text")),
                         "a");
    assert_int_equal (s_int_at (first, "count", NULL), 2);
    json_decref (doc);
    s_reply_free (&reply);
}

static void
test_sends_without_valid_credentials_are_401 (void **state)
{
    rcd_gwsim_t *sim = *state;
    const char *body = "{\"number\":\"5511900000002\",\"text\":\"x\"}";
    s_reply_t reply = s_post (sim, "/message/sendText/inst", NULL, body, 5000);
    assert_int_equal (reply.status, 401);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "status", NULL), 401);
    assert_string_equal (json_string_value (json_object_get (doc, "error")),
                         "Unauthorized");
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "response"), "message")),
                         "Unauthorized");
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_post (sim, "/message/sendText/inst", "apikey:", body, 5000);
    assert_int_equal (reply.status, 401);
    s_reply_free (&reply);

    s_configure (sim, "{\"instances\":{\"inst\":{\"apikey\":\"right\"}}}");
    reply = s_post (sim, "/message/sendText/inst", "apikey: wrong", body, 5000);
    assert_int_equal (reply.status, 401);
    s_reply_free (&reply);
    reply = s_post (sim, "/message/sendText/inst", "apikey: right", body, 5000);
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);

    const char *meta = "{\"messaging_product\":\"whatsapp\",\"to\":\"551190\","
                       "\"type\":\"text\",\"text\":{\"body\":\"x\"}}";
    reply = s_post (sim, "/v21.0/1099/messages", NULL, meta, 5000);
    assert_int_equal (reply.status, 401);
    doc = s_parse (&reply);
    json_t *error = json_object_get (doc, "error");
    assert_int_equal (s_int_at (error, "code", NULL), 190);
    assert_string_equal (json_string_value (json_object_get (error, "type")),
                         "OAuthException");
    assert_non_null (json_string_value (json_object_get (error, "fbtrace_id")));
    json_decref (doc);
    s_reply_free (&reply);

    assert_int_equal (rcd_gwsim_total (sim), 1);
    assert_int_equal (rcd_gwsim_errors (sim, "unauthorized"), 4);
}

static void
test_number_errors_force_each_kind_on_evolution (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"retry_after_s\": 7, \"number_errors\": {"
                      "\"5511000000001\": \"5xx\", \"5511000000002\": \"429\","
                      "\"5511000000003\": \"meta_130429\","
                      "\"5511000000004\": \"not_on_whatsapp\","
                      "\"5511000000005\": \"unknown_400\","
                      "\"5511000000006\": \"reset\"}}");
    s_reply_t reply = s_send_evolution (sim, "5511000000001", "t");
    assert_int_equal (reply.status, 503);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "status", NULL), 503);
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "5511000000002", "t");
    assert_int_equal (reply.status, 429);
    assert_string_equal (reply.retry_after, "7");
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "5511000000003", "t");
    assert_int_equal (reply.status, 429);
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "+55 11 0000-00004", "t");
    assert_int_equal (reply.status, 400);
    doc = s_parse (&reply);
    json_t *entry = json_array_get (
        json_object_get (json_object_get (doc, "response"), "message"), 0);
    assert_true (json_is_false (json_object_get (entry, "exists")));
    assert_string_equal (json_string_value (json_object_get (entry, "jid")),
                         "5511000000004@s.whatsapp.net");
    assert_string_equal (json_string_value (json_object_get (entry, "number")),
                         "+55 11 0000-00004");
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "5511000000005", "maybe sent");
    assert_int_equal (reply.status, 400);
    doc = s_parse (&reply);
    assert_string_equal (
        json_string_value (json_array_get (
            json_object_get (json_object_get (doc, "response"), "message"), 0)),
        "Connection Closed");
    json_decref (doc);
    s_reply_free (&reply);
    assert_int_equal (
        rcd_gwsim_count (sim, "inst", "5511000000005", "maybe sent"), 1);

    reply = s_send_evolution (sim, "5511000000006", "t");
    assert_true (reply.rc == CURLE_GOT_NOTHING || reply.rc == CURLE_RECV_ERROR);
    s_reply_free (&reply);

    assert_int_equal (rcd_gwsim_total (sim), 1);
    const char *kinds[] = {
        "5xx", "429", "meta_130429", "not_on_whatsapp", "unknown_400", "reset"};
    for (int i = 0; i < 6; i++)
        assert_int_equal (rcd_gwsim_errors (sim, kinds[i]), 1);
}

//  {"kind", "nth"} fails only the nth send to the number from when it is
//  set (the 3rd part of a long text), and the sends around it succeed.
static void
test_number_errors_nth_fails_only_that_send (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"number_errors\": {\"5511000000001\": "
                      "{\"kind\": \"5xx\", \"nth\": 3}}}");
    const char *texts[] = {"p1", "p2", "p3", "p3", "p4"};
    const long expected[] = {201, 201, 503, 201, 201};
    for (int i = 0; i < 5; i++) {
        s_reply_t reply = s_send_evolution (sim, "5511000000001", texts[i]);
        assert_int_equal (reply.status, expected[i]);
        s_reply_free (&reply);
    }
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511000000001", "p3"), 1);
    assert_int_equal (rcd_gwsim_total (sim), 4);
    assert_int_equal (rcd_gwsim_errors (sim, "5xx"), 1);
    /* another number is untouched */
    s_reply_t reply = s_send_evolution (sim, "5511000000002", "x");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);
    /* setting the entry again starts counting again */
    s_configure (sim, "{\"number_errors\": {\"5511000000001\": "
                      "{\"kind\": \"5xx\", \"nth\": 1}}}");
    reply = s_send_evolution (sim, "5511000000001", "again");
    assert_int_equal (reply.status, 503);
    s_reply_free (&reply);
}

static void
test_number_errors_force_each_kind_on_meta (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"number_errors\": {"
                      "\"5511000000001\": \"5xx\", \"5511000000002\": \"429\","
                      "\"5511000000003\": \"meta_130429\","
                      "\"5511000000004\": \"not_on_whatsapp\","
                      "\"5511000000005\": \"unknown_400\","
                      "\"5511000000006\": \"reset\"}}");
    struct {
        const char *to;
        long status;
        int code;
    } cases[] = {{"5511000000001", 503, 2},
                 {"5511000000002", 429, 4},
                 {"5511000000003", 400, 130429},
                 {"5511000000004", 400, 131026},
                 {"5511000000005", 500, 131000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_reply_t reply = s_send_meta (sim, cases[i].to, "t");
        assert_int_equal (reply.status, cases[i].status);
        json_t *doc = s_parse (&reply);
        assert_int_equal (s_int_at (doc, "error", "code"), cases[i].code);
        json_decref (doc);
        s_reply_free (&reply);
    }
    s_reply_t reply = s_send_meta (sim, "5511000000006", "t");
    assert_true (reply.rc == CURLE_GOT_NOTHING || reply.rc == CURLE_RECV_ERROR);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_count (sim, "1099", "5511000000005", "t"), 1);
    assert_int_equal (rcd_gwsim_total (sim), 1);
}

static void
test_delay_holds_answers_without_blocking_the_server (void **state)
{
    rcd_gwsim_t *sim = *state;
    //  More held answers than server threads: a blocking hold would stall
    s_async_t slow[3];
    for (int i = 0; i < 3; i++)
        s_start_async (&slow[i], sim, "5511900000003", "slow", 400, 10000);
    s_wait_held (sim, 3);
    s_reply_t fast = s_send_evolution (sim, "5511900000004", "fast");
    assert_int_equal (fast.status, 201);
    assert_true (fast.elapsed_ms < 300);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000004", "fast"),
                      1);
    s_reply_free (&fast);
    for (int i = 0; i < 3; i++) {
        pthread_join (slow[i].thread, NULL);
        assert_int_equal (slow[i].reply.status, 201);
        assert_true (slow[i].reply.elapsed_ms >= 400);
        s_reply_free (&slow[i].reply);
    }
    assert_int_equal (rcd_gwsim_held (sim), 0);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000003", "slow"),
                      3);
}

static void
test_latency_holds_every_answer (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"latency_ms\": 150, \"latency_jitter_ms\": 50}");
    s_reply_t reply = s_send_evolution (sim, "5511900000005", "late");
    assert_int_equal (reply.status, 201);
    assert_true (reply.elapsed_ms >= 150);
    s_reply_free (&reply);
    reply = s_send_meta (sim, "5511900000005", "late");
    assert_int_equal (reply.status, 200);
    assert_true (reply.elapsed_ms >= 150);
    s_reply_free (&reply);
}

static void
test_hang_times_out_the_client_while_others_are_served (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"number_errors\": {\"5511900000006\": \"hang\"}}");
    s_async_t hung;
    s_start_async (&hung, sim, "5511900000006", "never", 0, 300);
    s_wait_held (sim, 1);
    for (int i = 0; i < 5; i++) {
        s_reply_t reply = s_send_evolution (sim, "5511900000007", "meanwhile");
        assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    pthread_join (hung.thread, NULL);
    assert_int_equal (hung.reply.rc, CURLE_OPERATION_TIMEDOUT);
    //  libcurl times out on its own clock, which can run a few ms ahead
    //  of ours (seen once in a dozen runs on a loaded machine): what
    //  matters is that the client was held, not the exact millisecond
    assert_true (hung.reply.elapsed_ms >= 250);
    s_reply_free (&hung.reply);
    assert_int_equal (rcd_gwsim_errors (sim, "hang"), 1);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000006", "never"),
                      0);
    assert_int_equal (rcd_gwsim_total (sim), 5);
    //  Still held: destroy in teardown must release it
    assert_int_equal (rcd_gwsim_held (sim), 1);
}

static void
test_hang_closes_the_connection_after_hang_ms (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"hang_ms\": 200, \"error_rates\": {\"hang\": 1}}");
    s_reply_t reply = s_send_meta (sim, "5511900000008", "x");
    assert_true (reply.rc == CURLE_GOT_NOTHING || reply.rc == CURLE_RECV_ERROR);
    assert_true (reply.elapsed_ms >= 200);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_held (sim), 0);
}

//  Meta's spam rate limit (131048) is a throttle: Meta answers 400 with
//  the code, Evolution (which has no such code) a plain 429 with
//  Retry-After, both for number_errors and for error_rates.
static void
test_meta_131048_is_a_throttle_on_both_gateways (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"retry_after_s\": 3, \"number_errors\": "
                      "{\"5511000000007\": \"meta_131048\"}}");
    s_reply_t reply = s_send_meta (sim, "5511000000007", "spam");
    assert_int_equal (reply.status, 400);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "error", "code"), 131048);
    assert_non_null (strstr (json_string_value (json_object_get (
                                 json_object_get (doc, "error"), "message")),
                             "131048"));
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "5511000000007", "spam");
    assert_int_equal (reply.status, 429);
    assert_string_equal (reply.retry_after, "3");
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_errors (sim, "meta_131048"), 2);
    assert_int_equal (rcd_gwsim_total (sim), 0);

    //  drawn from error_rates: every send of a rate-1 kind gets it
    s_configure (sim, "{\"number_errors\": {\"5511000000007\": null},"
                      "\"error_rates\": {\"meta_131048\": 1}}");
    for (int i = 0; i < 3; i++) {
        reply = s_send_meta (sim, "5511000000008", "drawn");
        assert_int_equal (reply.status, 400);
        doc = s_parse (&reply);
        assert_int_equal (s_int_at (doc, "error", "code"), 131048);
        json_decref (doc);
        s_reply_free (&reply);
    }
    assert_int_equal (rcd_gwsim_errors (sim, "meta_131048"), 5);
    assert_int_equal (rcd_gwsim_total (sim), 0);

    //  the control API names it and reads it back
    reply = s_get (sim, "/_sim/config", NULL);
    doc = s_parse (&reply);
    assert_true (json_is_real (
        json_object_get (json_object_get (doc, "error_rates"), "meta_131048")));
    json_decref (doc);
    s_reply_free (&reply);
}

//  "Gateway down for a while, then back": down answers every send with
//  503 on both gateways and counts nothing; switching it off (without a
//  reset) serves the same messages again, each counted once.
static void
test_down_then_back_serves_again (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"down\": true}");
    for (int i = 0; i < 3; i++) {
        s_reply_t reply = s_send_evolution (sim, "5511900000020", "retry me");
        assert_int_equal (reply.status, 503);
        s_reply_free (&reply);
        reply = s_send_meta (sim, "5511900000020", "retry me");
        assert_int_equal (reply.status, 503);
        json_t *doc = s_parse (&reply);
        assert_int_equal (s_int_at (doc, "error", "code"), 2);
        json_decref (doc);
        s_reply_free (&reply);
    }
    assert_int_equal (rcd_gwsim_errors (sim, "down"), 6);
    assert_int_equal (rcd_gwsim_total (sim), 0);

    s_configure (sim, "{\"down\": false}");
    s_reply_t reply = s_send_evolution (sim, "5511900000020", "retry me");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);
    reply = s_send_meta (sim, "5511900000020", "retry me");
    assert_int_equal (reply.status, 200);
    s_reply_free (&reply);
    assert_int_equal (
        rcd_gwsim_count (sim, "inst", "5511900000020", "retry me"), 1);
    assert_int_equal (
        rcd_gwsim_count (sim, "1099", "5511900000020", "retry me"), 1);
    assert_int_equal (rcd_gwsim_total (sim), 2);
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);
    //  the earlier refusals stay counted as such
    assert_int_equal (rcd_gwsim_errors (sim, "down"), 6);
}

//  A hang with a hang_ms above the client's timeout is a client timeout
//  (what a sender sees as "no answer"), and the connection is let go
//  after hang_ms.
static void
test_short_hang_is_a_client_timeout (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"hang_ms\": 1500, \"number_errors\": "
                      "{\"5511900000021\": \"hang\"}}");
    s_async_t hung;
    s_start_async (&hung, sim, "5511900000021", "hung", 0, 300);
    pthread_join (hung.thread, NULL);
    assert_int_equal (hung.reply.rc, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal (hung.reply.status, 0);
    assert_true (hung.reply.elapsed_ms >= 250);
    assert_true (hung.reply.elapsed_ms < 1500);
    s_reply_free (&hung.reply);
    assert_int_equal (rcd_gwsim_errors (sim, "hang"), 1);
    assert_int_equal (rcd_gwsim_total (sim), 0);
    //  released by the simulator once hang_ms has passed
    int64_t deadline = s_now_ms () + 5000;
    while (rcd_gwsim_held (sim) > 0 && s_now_ms () < deadline)
        s_pause_poll ();
    assert_int_equal (rcd_gwsim_held (sim), 0);
}

static void
test_connection_state_follows_the_instance_config (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_reply_t reply =
        s_get (sim, "/instance/connectionState/inst", "apikey: " S_APIKEY);
    assert_int_equal (reply.status, 200);
    json_t *doc = s_parse (&reply);
    json_t *instance = json_object_get (doc, "instance");
    assert_string_equal (
        json_string_value (json_object_get (instance, "instanceName")), "inst");
    assert_string_equal (
        json_string_value (json_object_get (instance, "state")), "open");
    json_decref (doc);
    s_reply_free (&reply);

    s_configure (sim, "{\"instances\": {\"inst\": {\"state\": \"close\"},"
                      "\"ghost\": {\"unknown\": true}}}");
    reply = s_get (sim, "/instance/connectionState/inst", "apikey: " S_APIKEY);
    doc = s_parse (&reply);
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "instance"), "state")),
                         "close");
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_send_evolution (sim, "5511900000009", "closed");
    assert_int_equal (reply.status, 400);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_total (sim), 0);
    assert_int_equal (rcd_gwsim_errors (sim, "instance_closed"), 1);

    reply = s_get (sim, "/instance/connectionState/ghost", "apikey: " S_APIKEY);
    assert_int_equal (reply.status, 404);
    s_reply_free (&reply);
    reply = s_post (sim, "/message/sendText/ghost", "apikey: " S_APIKEY,
                    "{\"number\":\"1\",\"text\":\"x\"}", 5000);
    assert_int_equal (reply.status, 404);
    doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "status", NULL), 404);
    json_decref (doc);
    s_reply_free (&reply);
    reply = s_get (sim, "/instance/connectionState/inst", NULL);
    assert_int_equal (reply.status, 401);
    s_reply_free (&reply);
}

static void
test_log_pages_arrivals_in_order (void **state)
{
    rcd_gwsim_t *sim = *state;
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf (text, sizeof text, "m%d", i);
        s_reply_t reply = s_send_evolution (sim, "5511900000010", text);
        assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    s_reply_t reply = s_get (sim, "/_sim/log?since_seq=0&limit=2", NULL);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "next_seq", NULL), 2);
    json_t *entries = json_object_get (doc, "entries");
    assert_int_equal (json_array_size (entries), 2);
    json_t *entry = json_array_get (entries, 1);
    assert_int_equal (json_integer_value (json_array_get (entry, 0)), 1);
    assert_string_equal (json_string_value (json_array_get (entry, 2)), "inst");
    assert_string_equal (json_string_value (json_array_get (entry, 3)),
                         "5511900000010");
    assert_string_equal (json_string_value (json_array_get (entry, 4)), "m1");
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_get (sim, "/_sim/log?since_seq=2", NULL);
    doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "next_seq", NULL), 5);
    entries = json_object_get (doc, "entries");
    assert_int_equal (json_array_size (entries), 3);
    json_int_t previous = 0;
    for (size_t i = 0; i < 3; i++) {
        entry = json_array_get (entries, i);
        char text[16];
        snprintf (text, sizeof text, "m%zu", i + 2);
        assert_string_equal (json_string_value (json_array_get (entry, 4)),
                             text);
        json_int_t recv_ms = json_integer_value (json_array_get (entry, 1));
        assert_true (recv_ms >= previous);
        previous = recv_ms;
    }
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_get (sim, "/_sim/log?since_seq=5", NULL);
    doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "next_seq", NULL), 5);
    assert_int_equal (json_array_size (json_object_get (doc, "entries")), 0);
    json_decref (doc);
    s_reply_free (&reply);
}

static void
test_reset_endpoint_clears_counts_and_config (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_reply_t reply = s_send_evolution (sim, "5511900000011", "before");
    s_reply_free (&reply);
    reply = s_post (sim, "/_sim/config", NULL, "{\"down\": true}", 5000);
    assert_int_equal (reply.status, 200);
    s_reply_free (&reply);
    reply = s_send_evolution (sim, "5511900000011", "down");
    assert_int_equal (reply.status, 503);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_errors (sim, "down"), 1);

    reply = s_post (sim, "/_sim/reset", NULL, "", 5000);
    assert_int_equal (reply.status, 200);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_total (sim), 0);
    assert_int_equal (rcd_gwsim_errors (sim, "down"), 0);
    reply = s_send_evolution (sim, "5511900000011", "after");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);

    reply = s_get (sim, "/_sim/counts", NULL);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "total", NULL), 1);
    json_decref (doc);
    s_reply_free (&reply);
    //  The log keeps numbering across a reset
    reply = s_get (sim, "/_sim/log", NULL);
    doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "next_seq", NULL), 2);
    assert_int_equal (json_array_size (json_object_get (doc, "entries")), 1);
    json_decref (doc);
    s_reply_free (&reply);
}

static void
test_oversize_body_is_413 (void **state)
{
    rcd_gwsim_t *sim = *state;
    size_t size = RCD_GWSIM_MAX_BODY + 1;
    char *body = malloc (size + 1);
    assert_non_null (body);
    memset (body, 'x', size);
    body[size] = '\0';
    //  Sent at once: read, discarded, then refused
    s_reply_t reply = s_post (sim, "/message/sendText/inst",
                              "apikey: " S_APIKEY, body, 10000);
    assert_int_equal (reply.rc, CURLE_OK);
    assert_int_equal (reply.status, 413);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "status", NULL), 413);
    json_decref (doc);
    s_reply_free (&reply);
    //  Announced with Expect: 100-continue: refused before it is sent
    reply = s_post (sim, "/v21.0/1099/messages", "Expect: 100-continue", body,
                    10000);
    assert_int_equal (reply.rc, CURLE_OK);
    assert_int_equal (reply.status, 413);
    s_reply_free (&reply);
    free (body);
    assert_int_equal (rcd_gwsim_errors (sim, "too_large"), 2);
    reply = s_send_evolution (sim, "5511900000012", "still serving");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);
}

static void
test_bad_bodies_are_400 (void **state)
{
    rcd_gwsim_t *sim = *state;
    const char *bodies[] = {"{not json", "{\"text\":\"no number\"}"};
    for (int i = 0; i < 2; i++) {
        s_reply_t reply = s_post (sim, "/message/sendText/inst",
                                  "apikey: " S_APIKEY, bodies[i], 5000);
        assert_int_equal (reply.status, 400);
        json_t *doc = s_parse (&reply);
        json_t *message =
            json_object_get (json_object_get (doc, "response"), "message");
        assert_string_equal (
            json_string_value (json_array_get (json_array_get (message, 0), 0)),
            "instance requires property \"number\"");
        json_decref (doc);
        s_reply_free (&reply);
    }
    s_reply_t reply =
        s_post (sim, "/v21.0/1099/messages", "Authorization: Bearer " S_TOKEN,
                "{\"messaging_product\":\"whatsapp\",\"type\":\"text\"}", 5000);
    assert_int_equal (reply.status, 400);
    json_t *doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "error", "code"), 100);
    json_decref (doc);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_errors (sim, "bad_request"), 3);
    assert_int_equal (rcd_gwsim_total (sim), 0);
}

static void
test_rate_cap_throttles_a_busy_number (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"per_number_rate_cap\": 2}");
    //  Five sends take well under a second, so they span at most two
    //  one-second windows: at most four pass
    int throttled = 0;
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf (text, sizeof text, "r%d", i);
        s_reply_t reply = s_send_evolution (sim, "5511900000013", text);
        if (reply.status == 429) {
            throttled++;
            assert_string_equal (reply.retry_after, "1");
        }
        else
            assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    assert_true (throttled >= 1);
    assert_int_equal (rcd_gwsim_errors (sim, "rate_cap"), (size_t)throttled);
    s_reply_t reply = s_send_meta (sim, "5511900000013", "meta");
    if (reply.status != 200) {
        json_t *doc = s_parse (&reply);
        assert_int_equal (s_int_at (doc, "error", "code"), 131056);
        json_decref (doc);
    }
    s_reply_free (&reply);
    //  Another number is not affected
    reply = s_send_evolution (sim, "5511900000014", "other");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);
}

static void
test_error_rates_inject_failures_at_the_configured_rate (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_configure (sim, "{\"seed\": 42, \"error_rates\": {\"5xx\": 0.3}}");
    CURL *curl = curl_easy_init ();
    char url[256];
    s_make_url (sim, url, sizeof url, "/message/sendText/inst");
    int failed = 0;
    for (int i = 0; i < 400; i++) {
        char body[96];
        snprintf (body, sizeof body,
                  "{\"number\":\"5511900000015\","
                  "\"text\":\"e%d\"}",
                  i);
        s_reply_t reply = s_exchange (curl, url, "apikey: " S_APIKEY, body,
                                      strlen (body), 5000);
        assert_true (reply.status == 201 || reply.status == 503);
        failed += reply.status == 503;
        s_reply_free (&reply);
    }
    curl_easy_cleanup (curl);
    //  Expected 120, standard deviation about 9
    assert_in_range (failed, 70, 170);
    assert_int_equal (rcd_gwsim_errors (sim, "5xx"), (size_t)failed);
    assert_int_equal (rcd_gwsim_total (sim), (size_t)(400 - failed));
    assert_int_equal (rcd_gwsim_duplicates (sim), 0);

    s_configure (sim, "{\"error_rates\": {\"5xx\": 1}}");
    s_reply_t reply = s_send_meta (sim, "5511900000015", "always");
    assert_int_equal (reply.status, 503);
    s_reply_free (&reply);
}

static void
test_config_rejects_bad_documents_and_changes_nothing (void **state)
{
    rcd_gwsim_t *sim = *state;
    const char *bad[] = {"not json",
                         "[1]",
                         "{\"latency_ms\": -1}",
                         "{\"latency_ms\": \"5\"}",
                         "{\"error_rates\": {\"5xx\": 1.5}}",
                         "{\"error_rates\": {\"teapot\": 0.1}}",
                         "{\"error_rates\": {\"5xx\": 0.6, \"429\": 0.6}}",
                         "{\"number_errors\": {\"1\": \"teapot\"}}",
                         "{\"number_errors\": {\"1\": {\"kind\": \"5xx\"}}}",
                         "{\"number_errors\": {\"1\": {\"kind\": \"5xx\", "
                         "\"nth\": 0}}}",
                         "{\"instances\": {\"a\": {\"colour\": \"red\"}}}",
                         "{\"down\": true, \"typo\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal (rcd_gwsim_configure (sim, bad[i]), -2);

    s_reply_t reply =
        s_post (sim, "/_sim/config", NULL, "{\"latency_ms\": -5}", 5000);
    assert_int_equal (reply.status, 400);
    json_t *doc = s_parse (&reply);
    assert_string_equal (json_string_value (json_object_get (
                             json_object_get (doc, "error"), "code")),
                         "invalid_field");
    json_decref (doc);
    s_reply_free (&reply);

    reply = s_get (sim, "/_sim/config", NULL);
    doc = s_parse (&reply);
    assert_int_equal (s_int_at (doc, "latency_ms", NULL), 0);
    assert_true (json_is_false (json_object_get (doc, "down")));
    assert_int_equal (json_object_size (json_object_get (doc, "error_rates")),
                      0);
    json_decref (doc);
    s_reply_free (&reply);

    //  Maps merge, and null removes a key
    s_configure (sim, "{\"number_errors\": {\"1\": \"5xx\", \"2\": \"429\"}}");
    s_configure (sim, "{\"number_errors\": {\"1\": null}}");
    reply = s_get (sim, "/_sim/config", NULL);
    doc = s_parse (&reply);
    json_t *errors = json_object_get (doc, "number_errors");
    assert_int_equal (json_object_size (errors), 1);
    assert_string_equal (json_string_value (json_object_get (errors, "2")),
                         "429");
    json_decref (doc);
    s_reply_free (&reply);
}

static void
test_keep_alive_reuses_one_connection (void **state)
{
    rcd_gwsim_t *sim = *state;
    CURL *curl = curl_easy_init ();
    char url[256];
    s_make_url (sim, url, sizeof url, "/message/sendText/inst");
    const char *body = "{\"number\":\"5511900000016\",\"text\":\"k\"}";
    for (int i = 0; i < 3; i++) {
        s_reply_t reply = s_exchange (curl, url, "apikey: " S_APIKEY, body,
                                      strlen (body), 5000);
        assert_int_equal (reply.status, 201);
        assert_int_equal (reply.connects, i == 0 ? 1 : 0);
        s_reply_free (&reply);
    }
    curl_easy_cleanup (curl);
    assert_int_equal (rcd_gwsim_count (sim, "inst", "5511900000016", "k"), 3);
    assert_int_equal (rcd_gwsim_duplicates (sim), 2);
}

static void
test_unknown_paths_are_404 (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_reply_t reply = s_get (sim, "/nothing/here", NULL);
    assert_int_equal (reply.status, 404);
    s_reply_free (&reply);
    reply = s_get (sim, "/message/sendText/inst", "apikey: " S_APIKEY);
    assert_int_equal (reply.status, 404);
    s_reply_free (&reply);
}

//  --------------------------------------------------------------------------
//  Webhooks: a tiny receiver in the test records what the simulator posts

#define S_HOOKS_MAX 64

//  One POST the receiver got.
typedef struct {
    char *path;         //  URL path and query
    char *body;         //  raw body
    char *signature;    //  X-Hub-Signature-256, or NULL
    char *token;        //  X-Webhook-Token, or NULL
    char *content_type; //  Content-Type, or NULL
    int64_t at_ms;      //  monotonic arrival time
} s_hook_t;

//  A webhook endpoint on a free port: records every POST and answers
//  status after answer_ms.
typedef struct {
    struct MHD_Daemon *daemon;   //  the server
    int port;                    //  bound port
    char url[96];                //  http://127.0.0.1:port/hook
    pthread_mutex_t lock;        //  guards hooks and count
    s_hook_t hooks[S_HOOKS_MAX]; //  what arrived, in order
    size_t count;                //  entries in hooks
    atomic_int status;           //  answer status
    atomic_int answer_ms;        //  how long each answer waits
} s_receiver_t;

//  Per-request body buffer of the receiver.
typedef struct {
    char *body;
    size_t size;
} s_upload_t;

//  Copy a header value, or NULL when absent.
static char *
s_header_copy (struct MHD_Connection *conn, const char *name)
{
    const char *value =
        MHD_lookup_connection_value (conn, MHD_HEADER_KIND, name);
    return value ? strdup (value) : NULL;
}

//  The receiver's handler: collect the body, record it, answer.
static enum MHD_Result
s_receiver_access (void *cls, struct MHD_Connection *conn, const char *url,
                   const char *method, const char *version,
                   const char *upload_data, size_t *upload_data_size,
                   void **con_cls)
{
    (void)method;
    (void)version;
    s_receiver_t *receiver = cls;
    s_upload_t *upload = *con_cls;
    if (!upload) {
        upload = calloc (1, sizeof *upload);
        *con_cls = upload;
        return upload ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size) {
        char *body =
            realloc (upload->body, upload->size + *upload_data_size + 1);
        if (!body)
            return MHD_NO;
        memcpy (body + upload->size, upload_data, *upload_data_size);
        upload->body = body;
        upload->size += *upload_data_size;
        upload->body[upload->size] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *query =
        MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "token");
    char path[256];
    snprintf (path, sizeof path, "%s%s%s", url, query ? "?token=" : "",
              query ? query : "");
    pthread_mutex_lock (&receiver->lock);
    if (receiver->count < S_HOOKS_MAX) {
        s_hook_t *hook = &receiver->hooks[receiver->count++];
        hook->path = strdup (path);
        hook->body = upload->body ? upload->body : strdup ("");
        upload->body = NULL;
        hook->signature = s_header_copy (conn, "X-Hub-Signature-256");
        hook->token = s_header_copy (conn, "X-Webhook-Token");
        hook->content_type = s_header_copy (conn, "Content-Type");
        hook->at_ms = s_now_ms ();
    }
    pthread_mutex_unlock (&receiver->lock);
    //  a slow endpoint: this thread is the receiver's own (one per
    //  connection), never the simulator's
    int answer_ms = atomic_load (&receiver->answer_ms);
    if (answer_ms > 0) {
        struct timespec ts = {answer_ms / 1000, (answer_ms % 1000) * 1000000L};
        nanosleep (&ts, NULL);
    }
    const char *text = "{\"received\":1}";
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response (
        conn, (unsigned int)atomic_load (&receiver->status), response);
    MHD_destroy_response (response);
    return rc;
}

//  Free the receiver's per-request buffer.
static void
s_receiver_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    s_upload_t *upload = *con_cls;
    if (upload) {
        free (upload->body);
        free (upload);
        *con_cls = NULL;
    }
}

static s_receiver_t *
s_receiver_new (void)
{
    s_receiver_t *receiver = calloc (1, sizeof *receiver);
    assert_non_null (receiver);
    pthread_mutex_init (&receiver->lock, NULL);
    atomic_init (&receiver->status, 200);
    atomic_init (&receiver->answer_ms, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    receiver->daemon = MHD_start_daemon (
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
        NULL, NULL, s_receiver_access, receiver, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
        s_receiver_completed, receiver, MHD_OPTION_END);
    assert_non_null (receiver->daemon);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (receiver->daemon, MHD_DAEMON_INFO_BIND_PORT);
    receiver->port = info->port;
    snprintf (receiver->url, sizeof receiver->url, "http://127.0.0.1:%d/hook",
              receiver->port);
    return receiver;
}

static void
s_receiver_destroy (s_receiver_t **receiver_p)
{
    s_receiver_t *receiver = *receiver_p;
    MHD_stop_daemon (receiver->daemon);
    for (size_t i = 0; i < receiver->count; i++) {
        s_hook_t *hook = &receiver->hooks[i];
        free (hook->path);
        free (hook->body);
        free (hook->signature);
        free (hook->token);
        free (hook->content_type);
    }
    pthread_mutex_destroy (&receiver->lock);
    free (receiver);
    *receiver_p = NULL;
}

static size_t
s_receiver_count (s_receiver_t *receiver)
{
    pthread_mutex_lock (&receiver->lock);
    size_t count = receiver->count;
    pthread_mutex_unlock (&receiver->lock);
    return count;
}

//  Wait until the receiver holds n posts and the simulator has nothing
//  pending, or fail after 5 s.
static void
s_wait_hooks (rcd_gwsim_t *sim, s_receiver_t *receiver, size_t n)
{
    int64_t deadline = s_now_ms () + 5000;
    while ((s_receiver_count (receiver) < n ||
            rcd_gwsim_webhooks (sim, "pending") > 0) &&
           s_now_ms () < deadline)
        s_pause_poll ();
    assert_int_equal (s_receiver_count (receiver), n);
    assert_int_equal (rcd_gwsim_webhooks (sim, "pending"), 0);
}

//  The body of post i, parsed (caller decrefs).
static json_t *
s_hook_json (s_receiver_t *receiver, size_t i)
{
    assert_true (i < receiver->count);
    json_t *doc = json_loads (receiver->hooks[i].body, 0, NULL);
    assert_non_null (doc);
    return doc;
}

//  String at key of obj; the test fails when it is not a string.
static const char *
s_str_at (json_t *obj, const char *key)
{
    const char *value = json_string_value (json_object_get (obj, key));
    if (!value)
        fail_msg ("no string '%s'", key);
    return value;
}

//  Point the simulator's webhooks at the receiver with extra settings.
static void
s_configure_hooks (rcd_gwsim_t *sim, s_receiver_t *receiver, const char *extra)
{
    char doc[1024];
    snprintf (doc, sizeof doc,
              "{\"webhook\": {\"evolution_url\": \"%s?token=tk\", "
              "\"meta_url\": \"%s\", \"meta_app_secret\": \"app-secret\"%s%s}}",
              receiver->url, receiver->url, extra ? ", " : "",
              extra ? extra : "");
    s_configure (sim, doc);
}

static void
test_webhooks_follow_an_evolution_send (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    s_configure_hooks (sim, receiver,
                       "\"evolution_headers\": {\"X-Webhook-Token\": \"tk\"}");
    s_reply_t reply = s_send_evolution (sim, "5511912345678", "olá");
    assert_int_equal (reply.status, 201);
    json_t *answer = s_parse (&reply);
    s_reply_free (&reply);
    const char *id = s_str_at (json_object_get (answer, "key"), "id");
    s_wait_hooks (sim, receiver, 4);

    //  the echo first in the queue, then one receipt per status; several
    //  in flight at once may arrive in any order, as from the real one
    bool seen[4] = {false};
    static const char *statuses[] = {"SERVER_ACK", "DELIVERY_ACK", "READ"};
    for (size_t i = 0; i < 4; i++) {
        s_hook_t *hook = &receiver->hooks[i];
        assert_string_equal (hook->path, "/hook?token=tk");
        assert_string_equal (hook->token, "tk");
        assert_non_null (strstr (hook->content_type, "application/json"));
        assert_null (hook->signature);
        json_t *doc = s_hook_json (receiver, i);
        assert_string_equal (s_str_at (doc, "instance"), "inst");
        assert_string_equal (s_str_at (doc, "apikey"), S_APIKEY);
        assert_string_equal (s_str_at (doc, "server_url"), rcd_gwsim_url (sim));
        assert_non_null (strstr (s_str_at (doc, "destination"), "/hook"));
        assert_non_null (strchr (s_str_at (doc, "date_time"), 'Z'));
        assert_non_null (strstr (s_str_at (doc, "sender"), "@s.whatsapp.net"));
        json_t *data = json_object_get (doc, "data");
        const char *event = s_str_at (doc, "event");
        if (strcmp (event, "send.message") == 0) {
            assert_false (seen[0]);
            seen[0] = true;
            json_t *key = json_object_get (data, "key");
            assert_string_equal (s_str_at (key, "id"), id);
            assert_string_equal (s_str_at (key, "remoteJid"),
                                 "5511912345678@s.whatsapp.net");
            assert_true (json_is_true (json_object_get (key, "fromMe")));
            assert_string_equal (
                s_str_at (json_object_get (data, "message"), "conversation"),
                "olá");
            assert_string_equal (s_str_at (data, "status"), "PENDING");
            assert_int_equal (s_int_at (data, "messageTimestamp", NULL),
                              s_int_at (answer, "messageTimestamp", NULL));
            assert_string_equal (s_str_at (data, "instanceId"),
                                 s_str_at (answer, "instanceId"));
        }
        else {
            assert_string_equal (event, "messages.update");
            assert_string_equal (s_str_at (data, "keyId"), id);
            assert_string_equal (s_str_at (data, "remoteJid"),
                                 "5511912345678@s.whatsapp.net");
            assert_true (json_is_true (json_object_get (data, "fromMe")));
            assert_string_equal (s_str_at (data, "instanceId"),
                                 s_str_at (answer, "instanceId"));
            assert_int_equal (strlen (s_str_at (data, "messageId")), 25);
            int which = -1;
            for (int s = 0; s < 3; s++)
                if (strcmp (s_str_at (data, "status"), statuses[s]) == 0)
                    which = s;
            assert_true (which >= 0);
            assert_false (seen[1 + which]);
            seen[1 + which] = true;
        }
        json_decref (doc);
    }
    json_decref (answer);
    assert_int_equal (rcd_gwsim_webhooks (sim, "scheduled"), 4);
    assert_int_equal (rcd_gwsim_webhooks (sim, "posted"), 4);
    assert_int_equal (rcd_gwsim_webhooks (sim, "failed"), 0);
    assert_int_equal (rcd_gwsim_webhooks (sim, "rejected"), 0);

    reply = s_get (sim, "/_sim/stats", NULL);
    json_t *stats = s_parse (&reply);
    json_t *webhooks = json_object_get (stats, "webhooks");
    assert_int_equal (s_int_at (webhooks, "posted", NULL), 4);
    assert_int_equal (s_int_at (webhooks, "pending", NULL), 0);
    assert_int_equal (
        s_int_at (json_object_get (webhooks, "by_status"), "200", NULL), 4);
    assert_true (json_is_null (json_object_get (webhooks, "last_error")));
    assert_int_equal (s_int_at (stats, "total", NULL), 1);
    json_decref (stats);
    s_reply_free (&reply);
    s_receiver_destroy (&receiver);
}

//  HMAC-SHA256 of body with secret, as Meta's header carries it.
static void
s_meta_signature (const char *secret, const char *body, char *out,
                  size_t out_size)
{
    char mac[65];
    assert_int_equal (
        rcd_crypto_hmac_sha256_hex (secret, body, strlen (body), mac), 0);
    snprintf (out, out_size, "sha256=%s", mac);
}

static void
test_webhooks_follow_a_meta_send_signed (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    s_configure_hooks (sim, receiver, NULL);
    s_reply_t reply = s_send_meta (sim, "+5511912345678", "hello");
    assert_int_equal (reply.status, 200);
    json_t *answer = s_parse (&reply);
    s_reply_free (&reply);
    const char *wamid = s_str_at (
        json_array_get (json_object_get (answer, "messages"), 0), "id");
    s_wait_hooks (sim, receiver, 3);

    bool seen[3] = {false};
    static const char *statuses[] = {"sent", "delivered", "read"};
    for (size_t i = 0; i < 3; i++) {
        s_hook_t *hook = &receiver->hooks[i];
        assert_string_equal (hook->path, "/hook");
        char expected[80];
        s_meta_signature ("app-secret", hook->body, expected, sizeof expected);
        assert_non_null (hook->signature);
        assert_string_equal (hook->signature, expected);
        json_t *doc = s_hook_json (receiver, i);
        assert_string_equal (s_str_at (doc, "object"),
                             "whatsapp_business_account");
        json_t *entry = json_array_get (json_object_get (doc, "entry"), 0);
        assert_non_null (json_string_value (json_object_get (entry, "id")));
        json_t *change = json_array_get (json_object_get (entry, "changes"), 0);
        assert_string_equal (s_str_at (change, "field"), "messages");
        json_t *value = json_object_get (change, "value");
        assert_string_equal (s_str_at (value, "messaging_product"), "whatsapp");
        assert_string_equal (
            s_str_at (json_object_get (value, "metadata"), "phone_number_id"),
            "1099");
        json_t *statuses_json = json_object_get (value, "statuses");
        assert_int_equal (json_array_size (statuses_json), 1);
        json_t *status = json_array_get (statuses_json, 0);
        assert_string_equal (s_str_at (status, "id"), wamid);
        assert_string_equal (s_str_at (status, "recipient_id"),
                             "5511912345678");
        const char *stamp = s_str_at (status, "timestamp");
        assert_int_equal (strspn (stamp, "0123456789"), strlen (stamp));
        assert_true (atoll (stamp) >= time (NULL) - 5);
        int which = -1;
        for (int s = 0; s < 3; s++)
            if (strcmp (s_str_at (status, "status"), statuses[s]) == 0)
                which = s;
        assert_true (which >= 0);
        assert_false (seen[which]);
        seen[which] = true;
        //  read carries no pricing; sent and delivered do
        assert_true ((json_object_get (status, "pricing") == NULL) ==
                     (which == 2));
        json_decref (doc);
    }
    json_decref (answer);

    //  an instance's own app secret wins over the setting
    s_configure (sim, "{\"instances\": {\"1099\": {\"app_secret\": \"own\"}},"
                      "\"webhook\": {\"receipts\": [\"read\"]}}");
    reply = s_send_meta (sim, "+5511912345678", "again");
    assert_int_equal (reply.status, 200);
    s_reply_free (&reply);
    s_wait_hooks (sim, receiver, 4);
    char expected[80];
    s_meta_signature ("own", receiver->hooks[3].body, expected,
                      sizeof expected);
    assert_string_equal (receiver->hooks[3].signature, expected);
    s_receiver_destroy (&receiver);
}

static void
test_webhooks_follow_unknown_400_sends (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    s_configure_hooks (sim, receiver,
                       "\"receipts\": [\"sent\"], \"strip_ninth_digit\": true,"
                       " \"evolution_apikey\": false");
    s_configure (sim, "{\"number_errors\": {\"5511912345678\": "
                      "\"unknown_400\", \"5511900000001\": \"5xx\"}}");
    //  a plain failure calls nothing back
    s_reply_t reply = s_send_evolution (sim, "5511900000001", "lost");
    assert_int_equal (reply.status, 503);
    s_reply_free (&reply);
    reply = s_send_evolution (sim, "5511912345678", "maybe");
    assert_int_equal (reply.status, 400);
    s_reply_free (&reply);
    s_wait_hooks (sim, receiver, 2);
    bool echo_seen = false;
    for (size_t i = 0; i < 2; i++) {
        json_t *doc = s_hook_json (receiver, i);
        assert_true (json_is_null (json_object_get (doc, "apikey")));
        json_t *data = json_object_get (doc, "data");
        if (strcmp (s_str_at (doc, "event"), "send.message") == 0) {
            json_t *key = json_object_get (data, "key");
            //  an old account: the jid has no ninth digit
            assert_string_equal (s_str_at (key, "remoteJid"),
                                 "551112345678@s.whatsapp.net");
            assert_string_equal (
                s_str_at (json_object_get (data, "message"), "conversation"),
                "maybe");
            echo_seen = true;
        }
        else
            assert_string_equal (s_str_at (data, "status"), "SERVER_ACK");
        json_decref (doc);
    }
    assert_true (echo_seen);

    reply = s_send_meta (sim, "5511912345678", "maybe");
    assert_int_equal (reply.status, 500);
    s_reply_free (&reply);
    s_wait_hooks (sim, receiver, 3);
    json_t *doc = s_hook_json (receiver, 2);
    json_t *status = json_array_get (
        json_object_get (
            json_object_get (
                json_array_get (
                    json_object_get (
                        json_array_get (json_object_get (doc, "entry"), 0),
                        "changes"),
                    0),
                "value"),
            "statuses"),
        0);
    assert_string_equal (s_str_at (status, "status"), "sent");
    assert_string_equal (s_str_at (status, "recipient_id"), "551112345678");
    assert_memory_equal (s_str_at (status, "id"), "wamid.", 6);
    json_decref (doc);
    s_receiver_destroy (&receiver);
}

static void
test_webhooks_duplicate_every_posts_twice (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    s_configure_hooks (sim, receiver,
                       "\"echo\": false, \"receipts\": [\"read\"], "
                       "\"duplicate_every\": 2");
    for (int i = 0; i < 4; i++) {
        char text[16];
        snprintf (text, sizeof text, "m%d", i);
        s_reply_t reply = s_send_evolution (sim, "5511900000002", text);
        assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    s_wait_hooks (sim, receiver, 6);
    assert_int_equal (rcd_gwsim_webhooks (sim, "duplicated"), 2);
    assert_int_equal (rcd_gwsim_webhooks (sim, "scheduled"), 6);
    assert_int_equal (rcd_gwsim_webhooks (sim, "posted"), 6);
    //  two key ids arrive twice, byte for byte, two once
    int twice = 0, once = 0;
    for (size_t i = 0; i < 6; i++) {
        int same = 0;
        for (size_t j = 0; j < 6; j++)
            same +=
                strcmp (receiver->hooks[i].body, receiver->hooks[j].body) == 0;
        twice += same == 2;
        once += same == 1;
    }
    assert_int_equal (twice, 4);
    assert_int_equal (once, 2);
    s_receiver_destroy (&receiver);
}

static void
test_webhook_failures_are_counted_and_retried (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    atomic_store (&receiver->status, 503);
    s_configure_hooks (sim, receiver,
                       "\"echo\": false, \"receipts\": [\"sent\"], "
                       "\"retries\": 2, \"retry_ms\": 20");
    s_reply_t reply = s_send_evolution (sim, "5511900000003", "x");
    s_reply_free (&reply);
    //  three attempts, all answered 503
    s_wait_hooks (sim, receiver, 3);
    assert_int_equal (rcd_gwsim_webhooks (sim, "rejected"), 3);
    assert_int_equal (rcd_gwsim_webhooks (sim, "retried"), 2);
    assert_int_equal (rcd_gwsim_webhooks (sim, "posted"), 0);

    //  a 4xx is not retried
    atomic_store (&receiver->status, 401);
    reply = s_send_evolution (sim, "5511900000003", "y");
    s_reply_free (&reply);
    s_wait_hooks (sim, receiver, 4);
    assert_int_equal (rcd_gwsim_webhooks (sim, "rejected"), 4);
    assert_int_equal (rcd_gwsim_webhooks (sim, "retried"), 2);

    reply = s_get (sim, "/_sim/stats", NULL);
    json_t *stats = s_parse (&reply);
    json_t *webhooks = json_object_get (stats, "webhooks");
    json_t *by_status = json_object_get (webhooks, "by_status");
    assert_int_equal (s_int_at (by_status, "503", NULL), 3);
    assert_int_equal (s_int_at (by_status, "401", NULL), 1);
    assert_non_null (strstr (s_str_at (webhooks, "last_error"), "401"));
    json_decref (stats);
    s_reply_free (&reply);

    //  nobody listening: no answer, counted as failed after its retries
    char closed[64];
    int port = receiver->port;
    s_receiver_destroy (&receiver);
    snprintf (closed, sizeof closed,
              "{\"webhook\": {\"evolution_url\": \"http://127.0.0.1:%d/x\"}}",
              port);
    s_configure (sim, closed);
    reply = s_send_evolution (sim, "5511900000003", "z");
    s_reply_free (&reply);
    int64_t deadline = s_now_ms () + 5000;
    while (rcd_gwsim_webhooks (sim, "failed") < 3 && s_now_ms () < deadline)
        s_pause_poll ();
    assert_int_equal (rcd_gwsim_webhooks (sim, "failed"), 3);
    assert_int_equal (rcd_gwsim_webhooks (sim, "retried"), 4);
    assert_int_equal (rcd_gwsim_webhooks (sim, "posted"), 0);
}

static void
test_webhook_delay_and_step_space_the_posts (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    s_configure_hooks (sim, receiver, "\"delay_ms\": 300, \"step_ms\": 150");
    int64_t sent_ms = s_now_ms ();
    s_reply_t reply = s_send_evolution (sim, "5511900000004", "slow");
    assert_int_equal (reply.status, 201);
    s_reply_free (&reply);
    s_wait_hooks (sim, receiver, 4);
    static const char *order[] = {"PENDING", "SERVER_ACK", "DELIVERY_ACK",
                                  "READ"};
    for (size_t i = 0; i < 4; i++) {
        json_t *doc = s_hook_json (receiver, i);
        assert_string_equal (s_str_at (json_object_get (doc, "data"), "status"),
                             order[i]);
        json_decref (doc);
        assert_true (receiver->hooks[i].at_ms - sent_ms >=
                     300 + 150 * (int64_t)i - 5);
        if (i)
            assert_true (
                receiver->hooks[i].at_ms - receiver->hooks[i - 1].at_ms >= 100);
    }
    s_receiver_destroy (&receiver);
}

static void
test_a_slow_webhook_endpoint_never_slows_sends (void **state)
{
    rcd_gwsim_t *sim = *state;
    s_receiver_t *receiver = s_receiver_new ();
    atomic_store (&receiver->answer_ms, 1500);
    s_configure_hooks (sim, receiver, NULL);
    int64_t start = s_now_ms ();
    for (int i = 0; i < 10; i++) {
        char text[16];
        snprintf (text, sizeof text, "fast %d", i);
        s_reply_t reply = s_send_evolution (sim, "5511900000005", text);
        assert_int_equal (reply.status, 201);
        s_reply_free (&reply);
    }
    //  ten sends while 40 webhooks queue behind an endpoint that takes
    //  1.5 s per answer
    assert_true (s_now_ms () - start < 1000);
    assert_true (rcd_gwsim_webhooks (sim, "pending") > 0);
    //  destroy abandons what is queued or in flight without waiting
    s_reply_t reply = s_post (sim, "/_sim/reset", NULL, "", 5000);
    assert_int_equal (reply.status, 200);
    s_reply_free (&reply);
    assert_int_equal (rcd_gwsim_webhooks (sim, "scheduled"), 0);
    s_receiver_destroy (&receiver);
}

static void
test_webhook_settings_validate_merge_and_reset (void **state)
{
    rcd_gwsim_t *sim = *state;
    const char *bad[] = {
        "{\"webhook\": 5}",
        "{\"webhook\": {\"evolution_url\": \"ftp://x\"}}",
        "{\"webhook\": {\"meta_url\": \"http://a b\"}}",
        "{\"webhook\": {\"receipts\": [\"sent\", \"sent\"]}}",
        "{\"webhook\": {\"receipts\": [\"played\"]}}",
        "{\"webhook\": {\"retries\": 11}}",
        "{\"webhook\": {\"duplicate_every\": -1}}",
        "{\"webhook\": {\"echo\": 1}}",
        "{\"webhook\": {\"evolution_headers\": {\"Bad Name\": \"x\"}}}",
        "{\"webhook\": {\"colour\": \"red\"}}",
        "{\"webhook\": {\"delay_ms\": 10}, \"typo\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rcd_gwsim_configure (sim, bad[i]) != -2)
            fail_msg ("accepted %s", bad[i]);

    s_configure (sim, "{\"webhook\": {\"evolution_url\": \"http://h/x\","
                      " \"delay_ms\": 7}}");
    s_configure (sim, "{\"webhook\": {\"step_ms\": 3, \"delay_ms\": null}}");
    s_reply_t reply = s_get (sim, "/_sim/config", NULL);
    json_t *doc = s_parse (&reply);
    json_t *webhook = json_object_get (doc, "webhook");
    assert_string_equal (s_str_at (webhook, "evolution_url"), "http://h/x");
    assert_true (json_is_null (json_object_get (webhook, "meta_url")));
    assert_int_equal (s_int_at (webhook, "delay_ms", NULL), 0);
    assert_int_equal (s_int_at (webhook, "step_ms", NULL), 3);
    assert_int_equal (json_array_size (json_object_get (webhook, "receipts")),
                      3);
    assert_true (json_is_true (json_object_get (webhook, "echo")));
    json_decref (doc);
    s_reply_free (&reply);

    s_configure (sim, "{\"webhook\": null}");
    reply = s_get (sim, "/_sim/config", NULL);
    doc = s_parse (&reply);
    webhook = json_object_get (doc, "webhook");
    assert_true (json_is_null (json_object_get (webhook, "evolution_url")));
    assert_int_equal (s_int_at (webhook, "step_ms", NULL), 0);
    json_decref (doc);
    s_reply_free (&reply);

    s_configure (sim, "{\"webhook\": {\"meta_url\": \"http://h/m\"}}");
    rcd_gwsim_reset (sim);
    reply = s_get (sim, "/_sim/config", NULL);
    doc = s_parse (&reply);
    assert_true (json_is_null (
        json_object_get (json_object_get (doc, "webhook"), "meta_url")));
    json_decref (doc);
    s_reply_free (&reply);
}

int
main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (
            test_evolution_send_answers_201_with_a_fresh_key, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_meta_send_answers_200_with_a_wamid, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_counts_report_totals_distinct_and_duplicates, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_sends_without_valid_credentials_are_401, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_number_errors_force_each_kind_on_evolution, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_number_errors_force_each_kind_on_meta, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_number_errors_nth_fails_only_that_send, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_delay_holds_answers_without_blocking_the_server, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (test_latency_holds_every_answer,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_hang_times_out_the_client_while_others_are_served, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_hang_closes_the_connection_after_hang_ms, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_meta_131048_is_a_throttle_on_both_gateways, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (test_down_then_back_serves_again,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_short_hang_is_a_client_timeout,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_connection_state_follows_the_instance_config, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (test_log_pages_arrivals_in_order,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_reset_endpoint_clears_counts_and_config, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_oversize_body_is_413, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_bodies_are_400, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_rate_cap_throttles_a_busy_number,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_error_rates_inject_failures_at_the_configured_rate, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_config_rejects_bad_documents_and_changes_nothing, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (test_keep_alive_reuses_one_connection,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_unknown_paths_are_404, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_webhooks_follow_an_evolution_send,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_webhooks_follow_a_meta_send_signed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_webhooks_follow_unknown_400_sends,
                                         s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_webhooks_duplicate_every_posts_twice, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_webhook_failures_are_counted_and_retried, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_webhook_delay_and_step_space_the_posts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_a_slow_webhook_endpoint_never_slows_sends, s_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown (
            test_webhook_settings_validate_merge_and_reset, s_setup,
            s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    curl_global_cleanup ();
    return failed;
}

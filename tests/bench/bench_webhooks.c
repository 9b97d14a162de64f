/*  bench_webhooks - the gateways' webhooks through the real ingestor
    binary: requests paced at a fixed rate, latency counted from each
    request's scheduled send, then every event checked in SQL. Prints
    table rows; never gates CI.

      bench_webhooks [RATE] [SECONDS] [CONNECTIONS]

    RATE (1000) requests a second for SECONDS (10), one event each, over
    at most CONNECTIONS (32) keep-alive connections driven by one curl
    multi handle. The mix, interleaved evenly:
      70 %  Evolution messages.update receipts: DELIVERY_ACK, then READ
            for four messages in five; every tenth of these requests is
            the previous one again, byte for byte (Evolution delivers
            some events twice);
      15 %  Meta statuses (delivered, then read for four in five), signed
            X-Hub-Signature-256 with the instance's app secret;
      15 %  Evolution messages.upsert replies from the contacts messaged,
            "ok", and "SAIR" (an opt-out keyword) one time in twenty.
    The messages the receipts speak of are inserted as sent, with their
    provider ids, before the clock starts; so are all the bodies and
    signatures. Half a second of the same mix warms the ingestor up (not
    measured, but checked).

    Latency runs from the time a request was scheduled to leave, not from
    when it left, so a stalled server is charged for the requests queued
    behind it (no coordinated omission). Reports requests, the rate
    achieved (requests over first scheduled send to last answer),
    p50/p99/p99.9/max, answers other than 200, and the p99 of each
    second; then the checks: every distinct event stored exactly once in
    webhook_events, each duplicate answered as one, every message at the
    status its receipts lead to, the replies on the contacts; then the CPU
    of the ingestor, the PostgreSQL cluster, this program and everything
    else on the machine (other programs competing for the cores show
    there, and explain a slow second), the WAL written, and the
    ingestor's peak RSS. Exits 1 when a request failed or a check does
    not hold.

    Needs RECADO_BENCH_PG (conninfo of a PostgreSQL superuser, no dbname)
    and RECADO_BIN_DIR; tests/bench/run sets both. Extra RECADO_* settings
    in the environment (RECADO_HTTP_THREADS) reach the ingestor.
*/
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "rcd_db.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

#define S_DB_NAME    "recado_bench_webhooks"
#define S_EVO_NAME   "evo-bench"
#define S_EVO_APIKEY "B6D711FCDE4D4FD5936544120E713976"
#define S_META_PNID  "106540352242922"
#define S_META_APP   "bench-app-secret-5f1c2e"
/*  Messages per block of receipts: a block's deliveries, then its
    reads. */
#define S_BLOCK 100
/*  Longest answer kept from a request. */
#define S_ANSWER_MAX 256

/*  What a request carries. */
typedef enum { S_EVO_RECEIPT, S_META_STATUS, S_REPLY } s_kind_t;

/*  One planned request and what became of it. */
typedef struct {
    s_kind_t kind;
    char *body;                 /* owned */
    struct curl_slist *headers; /* owned for Meta (its signature) */
    int64_t due_us;             /* monotonic, scheduled send */
    int64_t done_us;            /* monotonic, answer received */
    long status;                /* HTTP status, 0: transport failure */
    char answer[S_ANSWER_MAX];  /* the answer's start */
    size_t answer_size;
} s_req_t;

/*  The whole workload and what it should leave in the database. */
typedef struct {
    s_req_t *reqs;
    int count;
    char *expected_keys; /* PostgreSQL text[] literal of distinct keys */
    long distinct;       /* distinct events */
    long duplicates;     /* duplicate requests */
    int evo_messages, meta_messages;
    char *evo_status;  /* text[] literal: status of each Evolution message */
    char *meta_status; /* the same for Meta */
    long evo_read, evo_delivered, meta_read, meta_delivered;
    long replies_ok, replies_stop;
} s_plan_t;

static pid_t s_ingestor;
static char s_db_url[512];
static char s_api_url[64];
static char s_evo_url[128], s_meta_url[128];
static struct curl_slist *s_evo_headers;

static void
s_die (const char *what, const char *detail)
{
    fprintf (stderr, "bench_webhooks: %s%s%s\n", what, detail ? ": " : "",
             detail ? detail : "");
    if (s_ingestor > 0)
        rcd_test_stop (s_ingestor, SIGKILL, 2000);
    exit (1);
}

static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static rcd_db_t *
s_db (void)
{
    rcd_db_t *db = rcd_db_new (s_db_url);
    if (!db || !rcd_db_connected (db))
        s_die ("cannot connect", db ? rcd_db_error (db) : NULL);
    return db;
}

/*  The first column of the first row of sql as an integer. */
static int64_t
s_query_int (rcd_db_t *db, const char *sql, int nparams, const char **params)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        s_die (sql, rcd_db_error (db));
    int64_t v = rcd_db_res_rows (res) > 0 ? rcd_db_res_int64 (res, 0, 0) : 0;
    rcd_db_res_destroy (&res);
    return v;
}

/*  CPU seconds the whole machine has spent busy (every core, every
    process: /proc/stat's first line less idle and iowait), so that the
    load of other programs during a run shows. */
static double
s_machine_cpu (void)
{
    FILE *f = fopen ("/proc/stat", "r");
    char line[512] = "";
    if (!f || !fgets (line, sizeof line, f) || strncmp (line, "cpu ", 4) != 0)
        line[0] = 0;
    if (f)
        fclose (f);
    /* user nice system idle iowait irq softirq steal */
    unsigned long long busy = 0;
    char *p = line[0] ? line + 4 : NULL;
    for (int i = 0; p && i < 8; i++) {
        unsigned long long v = strtoull (p, &p, 10);
        if (i != 3 && i != 4)
            busy += v;
    }
    return (double)busy / (double)sysconf (_SC_CLK_TCK);
}

static double
s_self_cpu (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*  Calls the API; dies unless the status is the expected one. Returns
    the parsed answer (caller decrefs). */
static json_t *
s_api (const char *method, const char *path, const char *key, const char *body,
       long expected)
{
    bool ok;
    json_t *answer =
        bench_api (s_api_url, method, path, key, body, expected, &ok);
    if (!ok)
        s_die ("unexpected answer", path);
    if (!answer)
        s_die ("answer is not JSON", path);
    return answer;
}

/*  A fresh database, the ingestor on a free port, a tenant with one
    Evolution and one Meta instance. *tenant_id, *evo_id and *meta_id
    receive their ids. */
static void
s_prepare (int64_t *tenant_id, int64_t *evo_id, int64_t *meta_id)
{
    const char *why =
        bench_fresh_database (S_DB_NAME, s_db_url, sizeof s_db_url);
    if (why)
        s_die (why, NULL);
    s_ingestor = bench_start_ingestor (s_db_url, "bench-admin", s_api_url,
                                       sizeof s_api_url);
    if (s_ingestor <= 0)
        s_die ("cannot start recado-ingestor", NULL);

    json_t *t = s_api ("POST", "/v1/tenants", "bench-admin",
                       "{\"name\":\"bench webhooks\"}", 201);
    const char *key = json_string_value (json_object_get (t, "api_key"));
    const char *token =
        json_string_value (json_object_get (t, "webhook_token"));
    *tenant_id = json_integer_value (json_object_get (t, "id"));
    if (!key || !token || *tenant_id <= 0)
        s_die ("tenant", NULL);
    char header[128];
    snprintf (header, sizeof header, "X-Webhook-Token: %s", token);
    s_evo_headers = curl_slist_append (NULL, header);
    s_evo_headers =
        curl_slist_append (s_evo_headers, "Content-Type: application/json");
    s_evo_headers = curl_slist_append (s_evo_headers, "Expect:");
    json_t *i = s_api ("POST", "/v1/instances", key,
                       "{\"name\":\"" S_EVO_NAME "\",\"provider\":"
                       "\"evolution\",\"base_url\":\"http://127.0.0.1:9\","
                       "\"api_key\":\"" S_EVO_APIKEY "\"}",
                       201);
    *evo_id = json_integer_value (json_object_get (i, "id"));
    json_decref (i);
    i = s_api ("POST", "/v1/instances", key,
               "{\"name\":\"meta-bench\",\"provider\":\"meta\","
               "\"base_url\":\"http://127.0.0.1:9\",\"access_token\":"
               "\"EAAbench\",\"phone_number_id\":\"" S_META_PNID "\","
               "\"app_secret\":\"" S_META_APP "\",\"verify_token\":"
               "\"bench-verify\"}",
               201);
    *meta_id = json_integer_value (json_object_get (i, "id"));
    json_decref (i);
    json_decref (t);
    if (*evo_id <= 0 || *meta_id <= 0)
        s_die ("instances", NULL);
    snprintf (s_evo_url, sizeof s_evo_url, "%s/v1/webhooks/evolution/%lld",
              s_api_url, (long long)*tenant_id);
    snprintf (s_meta_url, sizeof s_meta_url, "%s/v1/webhooks/meta", s_api_url);
}

/*  --- the workload --- */

/*  A growable string. */
typedef struct {
    char *data;
    size_t size, cap;
} s_buf_t;

static void
s_buf_add (s_buf_t *buf, const char *text)
{
    size_t n = strlen (text);
    if (buf->size + n + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap * 2 : 4096;
        while (cap < buf->size + n + 1)
            cap *= 2;
        char *grown = realloc (buf->data, cap);
        if (!grown)
            s_die ("out of memory", NULL);
        buf->data = grown;
        buf->cap = cap;
    }
    memcpy (buf->data + buf->size, text, n + 1);
    buf->size += n;
}

static char *
s_strdup (const char *text)
{
    char *copy = strdup (text);
    if (!copy)
        s_die ("out of memory", NULL);
    return copy;
}

/*  Provider ids and phones, the same as the SQL that inserts the
    messages (s_insert_messages) makes them. */
static void
s_evo_id (int m, char *out, size_t size)
{
    snprintf (out, size, "3EB0%016X", (unsigned)m);
}

static void
s_meta_id (int m, char *out, size_t size)
{
    snprintf (out, size, "wamid.HBgNBENCH%012d", m);
}

/*  The WhatsApp address of message m's contact in area code ddd: with
    the ninth digit for even m, without it (as older accounts are known)
    for odd m. */
static void
s_wa_number (int ddd, int m, char *out, size_t size)
{
    if (m % 2 == 0)
        snprintf (out, size, "55%d9%08d", ddd, 80000000 + m);
    else
        snprintf (out, size, "55%d%08d", ddd, 80000000 + m);
}

/*  The bench's send time, as Evolution writes date_time. */
static void
s_date_time (char *out, size_t size)
{
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    strftime (out, size, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

static char *
s_evo_receipt_body (int m, const char *status)
{
    char id[32], number[24], when[40], body[1024];
    s_evo_id (m, id, sizeof id);
    s_wa_number (11, m, number, sizeof number);
    s_date_time (when, sizeof when);
    snprintf (body, sizeof body,
              "{\"event\":\"messages.update\",\"instance\":\"" S_EVO_NAME
              "\",\"data\":{\"keyId\":\"%s\",\"remoteJid\":\"%s@s.whatsapp."
              "net\",\"fromMe\":true,\"status\":\"%s\",\"instanceId\":"
              "\"7c1e2a9b-3f4d-4c8e-9b1a-5d6e7f8a9b0c\",\"messageId\":"
              "\"cm8q2x7vz%016x\"},\"destination\":\"https://recado.example."
              "com/v1/webhooks/evolution\",\"date_time\":\"%s\",\"sender\":"
              "\"5511940028922@s.whatsapp.net\",\"server_url\":\"http://"
              "evolution.example.com:8080\",\"apikey\":\"" S_EVO_APIKEY "\"}",
              id, number, status, (unsigned)m, when);
    return s_strdup (body);
}

static char *
s_meta_status_body (int m, const char *status)
{
    char id[40], number[24], body[2048];
    s_meta_id (m, id, sizeof id);
    s_wa_number (21, m, number, sizeof number);
    long long ts = (long long)time (NULL);
    /* the first status of a conversation carries its pricing */
    const char *pricing =
        strcmp (status, "delivered") == 0
            ? ",\"conversation\":{\"id\":\"6ceb9d929c9d6a48b9a1a8e6d3b4e2f1\","
              "\"origin\":{\"type\":\"utility\"}},\"pricing\":{\"billable\":"
              "true,\"pricing_model\":\"PMP\",\"category\":\"utility\","
              "\"type\":\"regular\"}"
            : "";
    snprintf (body, sizeof body,
              "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":"
              "\"102290129340398\",\"changes\":[{\"value\":{\"messaging_"
              "product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":"
              "\"5511940028922\",\"phone_number_id\":\"" S_META_PNID "\"},"
              "\"statuses\":[{\"id\":\"%s\",\"status\":\"%s\",\"timestamp\":"
              "\"%lld\",\"recipient_id\":\"%s\"%s}]},\"field\":\"messages\"}]"
              "}]}",
              id, status, ts, number, pricing);
    return s_strdup (body);
}

static char *
s_reply_body (int k, int m, const char *text)
{
    char number[24], when[40], body[2048];
    s_wa_number (11, m, number, sizeof number);
    s_date_time (when, sizeof when);
    long long ts = (long long)time (NULL);
    snprintf (
        body, sizeof body,
        "{\"event\":\"messages.upsert\",\"instance\":\"" S_EVO_NAME "\","
        "\"data\":{\"key\":{\"remoteJid\":\"%s@s.whatsapp.net\",\"fromMe\":"
        "false,\"id\":\"3AF1%016X\"},\"pushName\":\"Cliente %d\",\"message\":"
        "{\"conversation\":\"%s\",\"messageContextInfo\":{"
        "\"deviceListMetadata\":{\"senderKeyHash\":\"Q2Y5bS1rZXktaGFzaA==\","
        "\"senderTimestamp\":\"1741590000\",\"recipientKeyHash\":"
        "\"cmVjaXBpZW50LWhhc2g=\",\"recipientTimestamp\":\"1741600000\"},"
        "\"deviceListMetadataVersion\":2,\"messageSecret\":"
        "\"c2VjcmV0LW9mLXRoZS1tZXNzYWdlLTMyLWJ5dGVzISE=\"}},\"messageType\":"
        "\"conversation\",\"messageTimestamp\":%lld,\"source\":\"android\","
        "\"instanceId\":\"7c1e2a9b-3f4d-4c8e-9b1a-5d6e7f8a9b0c\"},"
        "\"destination\":\"https://recado.example.com/v1/webhooks/evolution\","
        "\"date_time\":\"%s\",\"sender\":\"5511940028922@s.whatsapp.net\","
        "\"server_url\":\"http://evolution.example.com:8080\",\"apikey\":"
        "\"" S_EVO_APIKEY "\"}",
        number, (unsigned)k + 1, m, text, ts, when);
    return s_strdup (body);
}

/*  The header lines of a Meta request: its body's HMAC-SHA256 with the
    app secret. */
static struct curl_slist *
s_meta_headers (const char *body)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (!HMAC (EVP_sha256 (), S_META_APP, (int)strlen (S_META_APP),
               (const unsigned char *)body, strlen (body), mac, &size))
        s_die ("HMAC failed", NULL);
    char line[128] = "X-Hub-Signature-256: sha256=";
    size_t len = strlen (line);
    for (unsigned int i = 0; i < size; i++)
        len += (size_t)snprintf (line + len, sizeof line - len, "%02x", mac[i]);
    struct curl_slist *headers = curl_slist_append (NULL, line);
    headers = curl_slist_append (headers, "Content-Type: application/json");
    return curl_slist_append (headers, "Expect:");
}

/*  One source of receipts: blocks of S_BLOCK messages, each block's
    deliveries, then the reads of four messages in five. */
typedef struct {
    int block;      /* current block, from 0 */
    int step;       /* position in it: deliveries, then reads */
    int messages;   /* highest message numbered so far */
    char *expected; /* per message (1-based): 0 none, 1 delivered, 2 read */
    int cap;
} s_receipts_t;

/*  The next receipt: message *m and its status (1 delivered, 2 read). */
static void
s_receipts_next (s_receipts_t *r, int *m, int *status)
{
    int read_count = S_BLOCK / 5 * 4;
    for (;;) {
        if (r->step < S_BLOCK) {
            *m = r->block * S_BLOCK + r->step + 1;
            *status = 1;
            r->step++;
            break;
        }
        if (r->step < S_BLOCK + read_count) {
            int j = r->step - S_BLOCK;
            /* every message but each fifth one (offset 0, 5, 10 ...) */
            *m = r->block * S_BLOCK + j / 4 * 5 + j % 4 + 2;
            *status = 2;
            r->step++;
            break;
        }
        r->block++;
        r->step = 0;
    }
    if (*m >= r->cap) {
        int cap = r->cap ? r->cap * 2 : 1024;
        while (cap <= *m)
            cap *= 2;
        char *grown = realloc (r->expected, (size_t)cap);
        if (!grown)
            s_die ("out of memory", NULL);
        memset (grown + r->cap, 0, (size_t)(cap - r->cap));
        r->expected = grown;
        r->cap = cap;
    }
    if (*status > r->expected[*m])
        r->expected[*m] = (char)*status;
    if (*m > r->messages)
        r->messages = *m;
}

/*  The expected statuses as a text[] literal, with the counts. */
static char *
s_receipts_expected (const s_receipts_t *r, long *read, long *delivered)
{
    s_buf_t buf = {0};
    s_buf_add (&buf, "{");
    for (int m = 1; m <= r->messages; m++) {
        s_buf_add (&buf, m > 1 ? "," : "");
        s_buf_add (&buf, r->expected[m] == 2   ? "read"
                         : r->expected[m] == 1 ? "delivered"
                                               : "sent");
        *read += r->expected[m] == 2;
        *delivered += r->expected[m] == 1;
    }
    s_buf_add (&buf, "}");
    return buf.data;
}

/*  Plans count requests: the mix in the header, spread evenly over each
    twenty requests (14 Evolution receipts, 3 Meta, 3 replies). */
static void
s_plan (s_plan_t *plan, int count)
{
    static const char pattern[] = "EEMEEEIEEMEEEIEEMEEI";
    memset (plan, 0, sizeof *plan);
    plan->reqs = calloc ((size_t)count, sizeof *plan->reqs);
    if (!plan->reqs)
        s_die ("out of memory", NULL);
    plan->count = count;
    s_receipts_t evo = {0}, meta = {0};
    s_buf_t keys = {0};
    char key[128], id[40];
    int evo_seen = 0, replies = 0;
    s_buf_add (&keys, "{");
    /* receipts first: the replies come from the contacts messaged */
    for (int i = 0; i < count; i++) {
        s_req_t *req = &plan->reqs[i];
        char c = pattern[i % (sizeof pattern - 1)];
        int m, status;
        if (c == 'E' && evo_seen++ % 10 == 9) {
            /* the previous Evolution receipt, delivered again */
            int prev = i - 1;
            while (plan->reqs[prev].kind != S_EVO_RECEIPT)
                prev--;
            req->kind = S_EVO_RECEIPT;
            req->body = s_strdup (plan->reqs[prev].body);
            plan->duplicates++;
        }
        else if (c == 'E') {
            s_receipts_next (&evo, &m, &status);
            req->kind = S_EVO_RECEIPT;
            req->body =
                s_evo_receipt_body (m, status == 2 ? "READ" : "DELIVERY_ACK");
            s_evo_id (m, id, sizeof id);
            snprintf (key, sizeof key, "%sreceipt:%s:%s",
                      plan->distinct ? "," : "", id,
                      status == 2 ? "read" : "delivered");
            s_buf_add (&keys, key);
            plan->distinct++;
        }
        else if (c == 'M') {
            s_receipts_next (&meta, &m, &status);
            req->kind = S_META_STATUS;
            req->body =
                s_meta_status_body (m, status == 2 ? "read" : "delivered");
            req->headers = s_meta_headers (req->body);
            s_meta_id (m, id, sizeof id);
            snprintf (key, sizeof key, "%sreceipt:%s:%s",
                      plan->distinct ? "," : "", id,
                      status == 2 ? "read" : "delivered");
            s_buf_add (&keys, key);
            plan->distinct++;
        }
        else {
            req->kind = S_REPLY;
            replies++;
        }
    }
    /* each reply from a different contact, so that its last reply is
       known */
    if (replies > evo.messages)
        s_die ("too few messages for the replies (raise RATE x SECONDS)", NULL);
    int k = 0;
    for (int i = 0; i < count; i++) {
        s_req_t *req = &plan->reqs[i];
        if (req->kind != S_REPLY)
            continue;
        bool stop = k % 20 == 19;
        req->body = s_reply_body (k, k + 1, stop ? "SAIR" : "ok");
        snprintf (key, sizeof key, "%sinbound:3AF1%016X",
                  plan->distinct ? "," : "", (unsigned)k + 1);
        s_buf_add (&keys, key);
        plan->distinct++;
        plan->replies_stop += stop;
        plan->replies_ok += !stop;
        k++;
    }
    s_buf_add (&keys, "}");
    plan->expected_keys = keys.data;
    plan->evo_messages = evo.messages;
    plan->meta_messages = meta.messages;
    plan->evo_status =
        s_receipts_expected (&evo, &plan->evo_read, &plan->evo_delivered);
    plan->meta_status =
        s_receipts_expected (&meta, &plan->meta_read, &plan->meta_delivered);
    free (evo.expected);
    free (meta.expected);
}

static void
s_plan_free (s_plan_t *plan)
{
    for (int i = 0; i < plan->count; i++) {
        free (plan->reqs[i].body);
        curl_slist_free_all (plan->reqs[i].headers);
    }
    free (plan->reqs);
    free (plan->expected_keys);
    free (plan->evo_status);
    free (plan->meta_status);
}

/*  The messages the receipts speak of, as sent, in one statement per
    instance. */
static void
s_insert_messages (rcd_db_t *db, int64_t tenant_id, int64_t evo_id,
                   int64_t meta_id, const s_plan_t *plan)
{
    char tenant[24], evo[24], meta[24], nevo[24], nmeta[24];
    snprintf (tenant, sizeof tenant, "%lld", (long long)tenant_id);
    snprintf (evo, sizeof evo, "%lld", (long long)evo_id);
    snprintf (meta, sizeof meta, "%lld", (long long)meta_id);
    snprintf (nevo, sizeof nevo, "%d", plan->evo_messages);
    snprintf (nmeta, sizeof nmeta, "%d", plan->meta_messages);
    const char *p[] = {tenant, evo, meta, nevo, nmeta};
    if (rcd_db_exec (db,
                     "INSERT INTO messages (tenant_id, to_phone, body, status, "
                     "instance_id, provider_message_id, attempts, sent_at) "
                     "SELECT $1::bigint, '+55119' || (80000000 + g)::text, "
                     "'Olá, sua fatura vence amanhã.', 'sent', $2::bigint, "
                     "'3EB0' || lpad(upper(to_hex(g)), 16, '0'), 1, now() "
                     "FROM generate_series(1, $4::int) g "
                     "UNION ALL "
                     "SELECT $1::bigint, '+55219' || (80000000 + g)::text, "
                     "'Olá, sua fatura vence amanhã.', 'sent', $3::bigint, "
                     "'wamid.HBgNBENCH' || lpad(g::text, 12, '0'), 1, now() "
                     "FROM generate_series(1, $5::int) g",
                     5, p, NULL) != 0)
        s_die ("insert messages", rcd_db_error (db));
    if (rcd_db_script (db, "VACUUM ANALYZE messages") != 0)
        s_die ("vacuum", rcd_db_error (db));
}

/*  --- sending --- */

static size_t
s_collect (char *data, size_t size, size_t nmemb, void *arg)
{
    s_req_t *req = arg;
    size_t n = size * nmemb;
    size_t room = S_ANSWER_MAX - 1 - req->answer_size;
    size_t copy = n < room ? n : room;
    memcpy (req->answer + req->answer_size, data, copy);
    req->answer_size += copy;
    req->answer[req->answer_size] = 0;
    return n;
}

/*  Sends reqs[from .. to) at rate a second, due times from now, on
    multi (whose connections stay open from one call to the next), at
    most conns at a time; returns when every answer is in. A request due
    while every connection is busy waits here, its clock running, rather
    than in curl's pending list (which curl walks on every call, so an
    overloaded server would make the bench itself spin). A timerfd wakes
    the loop at each due time (curl_multi_poll's own timeout has only
    millisecond steps). */
static void
s_send (CURLM *multi, s_plan_t *plan, int from, int to, int rate, int conns)
{
    int tfd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CURL **idle = calloc ((size_t)(to - from), sizeof *idle);
    if (tfd < 0 || !idle)
        s_die ("cannot set up the sender", NULL);
    int nidle = 0, next = from, done = 0, running = 0, in_flight = 0;
    int64_t start = s_now_us () + 2000;
    for (int i = from; i < to; i++)
        plan->reqs[i].due_us = start + (int64_t)(i - from) * 1000000 / rate;
    while (done < to - from) {
        int64_t now = s_now_us ();
        for (; next < to && plan->reqs[next].due_us <= now && in_flight < conns;
             next++, in_flight++) {
            s_req_t *req = &plan->reqs[next];
            CURL *easy = nidle ? idle[--nidle] : curl_easy_init ();
            if (!easy)
                s_die ("curl_easy_init", NULL);
            bool meta = req->kind == S_META_STATUS;
            curl_easy_setopt (easy, CURLOPT_URL, meta ? s_meta_url : s_evo_url);
            curl_easy_setopt (easy, CURLOPT_HTTPHEADER,
                              meta ? req->headers : s_evo_headers);
            curl_easy_setopt (easy, CURLOPT_POSTFIELDS, req->body);
            curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE,
                              (long)strlen (req->body));
            curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_collect);
            curl_easy_setopt (easy, CURLOPT_WRITEDATA, req);
            curl_easy_setopt (easy, CURLOPT_PRIVATE, req);
            curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, 30000L);
            curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
            curl_multi_add_handle (multi, easy);
        }
        curl_multi_perform (multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            s_req_t *req = NULL;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE,
                               (char **)&req);
            req->done_us = s_now_us ();
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo (msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                   &req->status);
            curl_multi_remove_handle (multi, msg->easy_handle);
            idle[nidle++] = msg->easy_handle;
            done++;
            in_flight--;
        }
        if (done == to - from)
            break;
        if (next < to && in_flight < conns) {
            int64_t due = plan->reqs[next].due_us;
            struct itimerspec at = {.it_value = {(time_t)(due / 1000000),
                                                 (long)(due % 1000000) * 1000}};
            timerfd_settime (tfd, TFD_TIMER_ABSTIME, &at, NULL);
        }
        struct curl_waitfd wake = {.fd = tfd, .events = CURL_WAIT_POLLIN};
        curl_multi_poll (multi, &wake, 1, 100, NULL);
        uint64_t expirations;
        if (read (tfd, &expirations, sizeof expirations) < 0) {
            /* not expired yet: woken by a socket */
        }
    }
    for (int i = 0; i < nidle; i++)
        curl_easy_cleanup (idle[i]);
    free (idle);
    close (tfd);
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*  --- checking --- */

/*  Sums of the answers' counts. */
typedef struct {
    long received, applied, duplicates, unmatched, ignored, unreadable;
} s_sums_t;

static void
s_sum_answers (const s_plan_t *plan, s_sums_t *sums)
{
    memset (sums, 0, sizeof *sums);
    for (int i = 0; i < plan->count; i++) {
        json_t *a = json_loads (plan->reqs[i].answer, 0, NULL);
        if (!json_is_object (a))
            sums->unreadable++;
        sums->received += json_integer_value (json_object_get (a, "received"));
        sums->applied += json_integer_value (json_object_get (a, "applied"));
        sums->duplicates +=
            json_integer_value (json_object_get (a, "duplicates"));
        sums->unmatched +=
            json_integer_value (json_object_get (a, "unmatched"));
        sums->ignored += json_integer_value (json_object_get (a, "ignored"));
        json_decref (a);
    }
}

/*  Messages of one instance whose status is not the one expected of
    them (expected: text[] literal, element m for message m); prints the
    first few. */
static long
s_status_mismatches (rcd_db_t *db, const char *label, const char *id_sql,
                     const char *expected)
{
    char sql[1024];
    snprintf (sql, sizeof sql,
              "SELECT m.provider_message_id, e.status, m.status, "
              "m.delivered_at IS NOT NULL, m.read_at IS NOT NULL "
              "FROM unnest($1::text[]) WITH ORDINALITY AS e(status, n) "
              "LEFT JOIN messages m ON m.provider_message_id = %s "
              "WHERE m.id IS NULL OR m.status <> e.status "
              "OR (e.status IN ('delivered', 'read')) <> "
              "(m.delivered_at IS NOT NULL) "
              "OR (e.status = 'read') <> (m.read_at IS NOT NULL) "
              "ORDER BY e.n",
              id_sql);
    const char *p[] = {expected};
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, 1, p, &res) != 0)
        s_die ("status check", rcd_db_error (db));
    long rows = rcd_db_res_rows (res);
    for (int r = 0; r < rows && r < 10; r++)
        fprintf (stderr,
                 "mismatch %s %s: expected %s, is %s (delivered_at %s, "
                 "read_at %s)\n",
                 label, rcd_db_res_value (res, r, 0),
                 rcd_db_res_value (res, r, 1), rcd_db_res_value (res, r, 2),
                 rcd_db_res_value (res, r, 3), rcd_db_res_value (res, r, 4));
    rcd_db_res_destroy (&res);
    return rows;
}

/*  Checks the database against the plan and prints what it finds.
    Returns the number of problems. */
static long
s_check (rcd_db_t *db, const s_plan_t *plan)
{
    long problems = 0;
    const char *keys[] = {plan->expected_keys};
    int64_t stored =
        s_query_int (db, "SELECT count(*) FROM webhook_events", 0, NULL);
    int64_t twice =
        s_query_int (db,
                     "SELECT count(*) - count(DISTINCT (instance_id, "
                     "event_key)) FROM webhook_events",
                     0, NULL);
    int64_t missing = s_query_int (
        db,
        "SELECT count(*) FROM unnest($1::text[]) k(key) WHERE NOT EXISTS "
        "(SELECT 1 FROM webhook_events w WHERE w.event_key = k.key)",
        1, keys);
    int64_t unexpected = s_query_int (db,
                                      "SELECT count(*) FROM webhook_events "
                                      "WHERE event_key <> ALL ($1::text[])",
                                      1, keys);
    s_sums_t sums;
    s_sum_answers (plan, &sums);
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT string_agg(kind || ' ' || outcome || ' ' || n, "
                     "', ' ORDER BY kind, outcome) FROM (SELECT kind, "
                     "outcome, count(*) AS n FROM webhook_events GROUP BY 1, "
                     "2) o",
                     0, NULL, &res) != 0)
        s_die ("outcomes", rcd_db_error (db));
    char outcomes[512];
    snprintf (outcomes, sizeof outcomes, "%s", rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);
    int64_t unmatched =
        s_query_int (db,
                     "SELECT count(*) FROM webhook_events WHERE outcome NOT IN "
                     "('applied', 'stale', 'opted_out')",
                     0, NULL);
    int64_t opted = s_query_int (
        db, "SELECT count(*) FROM webhook_events WHERE outcome = 'opted_out'",
        0, NULL);
    /* every applied receipt wrote its history row */
    int64_t history_gap = s_query_int (
        db,
        "SELECT (SELECT count(*) FROM webhook_events WHERE kind = 'receipt' "
        "AND outcome = 'applied') - (SELECT count(*) FROM message_history "
        "WHERE detail = 'receipt')",
        0, NULL);
    problems += stored != plan->distinct || twice || missing || unexpected;
    problems += sums.duplicates != plan->duplicates;
    problems += sums.received != plan->count || sums.ignored ||
                sums.unreadable || sums.unmatched;
    problems += unmatched != 0 || opted != plan->replies_stop;
    problems += history_gap != 0;
    printf ("| webhook events stored | %lld of %ld distinct (missing %lld, "
            "unexpected %lld, stored twice %lld); duplicates answered %ld of "
            "%ld; answers: received %ld, applied %ld, unmatched %ld, "
            "ignored %ld, unreadable %ld; outcomes: %s; history gap %lld |\n",
            (long long)stored, plan->distinct, (long long)missing,
            (long long)unexpected, (long long)twice, sums.duplicates,
            plan->duplicates, sums.received, sums.applied, sums.unmatched,
            sums.ignored, sums.unreadable, outcomes, (long long)history_gap);

    long evo_bad = s_status_mismatches (
        db, "evolution", "'3EB0' || lpad(upper(to_hex(e.n)), 16, '0')",
        plan->evo_status);
    long meta_bad = s_status_mismatches (
        db, "meta", "'wamid.HBgNBENCH' || lpad(e.n::text, 12, '0')",
        plan->meta_status);
    int64_t ok = s_query_int (
        db,
        "SELECT count(*) FROM contacts WHERE last_reply = 'ok' AND NOT "
        "opted_out AND last_reply_at IS NOT NULL",
        0, NULL);
    int64_t stop = s_query_int (
        db,
        "SELECT count(*) FROM contacts WHERE last_reply = 'SAIR' AND "
        "opted_out",
        0, NULL);
    int64_t contacts =
        s_query_int (db, "SELECT count(*) FROM contacts", 0, NULL);
    problems += evo_bad + meta_bad;
    problems += ok != plan->replies_ok || stop != plan->replies_stop ||
                contacts != plan->replies_ok + plan->replies_stop;
    printf ("| messages and contacts after the webhooks | Evolution %d "
            "messages (%ld read, %ld delivered), Meta %d (%ld read, %ld "
            "delivered): %ld not as expected; contacts replied ok %lld of "
            "%ld, SAIR and opted out %lld of %ld, contacts %lld |\n",
            plan->evo_messages, plan->evo_read, plan->evo_delivered,
            plan->meta_messages, plan->meta_read, plan->meta_delivered,
            evo_bad + meta_bad, (long long)ok, plan->replies_ok,
            (long long)stop, plan->replies_stop, (long long)contacts);
    return problems;
}

/*  Argument i as a number, dflt when absent, -1 when not a number. */
static int
s_arg (int argc, char **argv, int i, int dflt)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol (argv[i], &end, 10);
    return *argv[i] && !*end && v >= 0 && v <= 1000000 ? (int)v : -1;
}

int
main (int argc, char **argv)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    int rate = s_arg (argc, argv, 1, 1000);
    int seconds = s_arg (argc, argv, 2, 10);
    int conns = s_arg (argc, argv, 3, 32);
    if (rate < 20 || rate > 20000 || seconds < 1 || seconds > 40 || conns < 1 ||
        conns > 1000) {
        fprintf (stderr, "usage: bench_webhooks [RATE 20..20000] "
                         "[SECONDS 1..40] [CONNECTIONS 1..1000]\n");
        return 64;
    }
    curl_global_init (CURL_GLOBAL_ALL);
    int64_t tenant_id, evo_id, meta_id;
    s_prepare (&tenant_id, &evo_id, &meta_id);
    int warm = rate / 2, measured = rate * seconds;
    s_plan_t plan;
    s_plan (&plan, warm + measured);
    rcd_db_t *db = s_db ();
    s_insert_messages (db, tenant_id, evo_id, meta_id, &plan);

    /* Warm-up, not measured: connections, plans, caches. */
    CURLM *multi = curl_multi_init ();
    if (!multi)
        s_die ("curl_multi_init", NULL);
    curl_multi_setopt (multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
    curl_multi_setopt (multi, CURLMOPT_MAXCONNECTS, (long)conns);
    s_send (multi, &plan, 0, warm, rate, conns);
    int64_t wal0 =
        s_query_int (db, "SELECT pg_current_wal_lsn() - '0/0'", 0, NULL);
    double ingestor_cpu0 = bench_cpu_seconds (s_ingestor, NULL);
    double pg_cpu0 = bench_postgres_cpu ();
    double self_cpu0 = s_self_cpu ();
    double machine_cpu0 = s_machine_cpu ();
    s_send (multi, &plan, warm, warm + measured, rate, conns);
    double ingestor_cpu = bench_cpu_seconds (s_ingestor, NULL) - ingestor_cpu0;
    double pg_cpu = bench_postgres_cpu () - pg_cpu0;
    double self_cpu = s_self_cpu () - self_cpu0;
    double machine_cpu = s_machine_cpu () - machine_cpu0;
    long rss_kb = bench_peak_rss_kb (s_ingestor);
    curl_multi_cleanup (multi);
    int64_t wal =
        s_query_int (db, "SELECT pg_current_wal_lsn() - '0/0'", 0, NULL) - wal0;

    double *lat = calloc ((size_t)measured, sizeof *lat);
    if (!lat)
        s_die ("out of memory", NULL);
    long failed = 0;
    int64_t first = plan.reqs[warm].due_us, last = first;
    for (int i = 0; i < plan.count; i++) {
        s_req_t *req = &plan.reqs[i];
        if (req->status != 200 && failed++ < 10)
            fprintf (stderr, "request %d: %ld %s\n", i, req->status,
                     req->answer);
        if (i < warm)
            continue;
        lat[i - warm] = (double)(req->done_us - req->due_us) / 1000.0;
        if (req->done_us > last)
            last = req->done_us;
    }
    /* the p99 of each second's requests: a slow stretch shows apart from
       a slow server */
    char per_second[512] = "";
    size_t used = 0;
    for (int sec = 0; sec < seconds; sec++) {
        double *slice = lat + (size_t)sec * (size_t)rate;
        qsort (slice, (size_t)rate, sizeof *slice, s_cmp_double);
        used += (size_t)snprintf (per_second + used, sizeof per_second - used,
                                  " %.1f", slice[(int)((rate - 1) * 0.99)]);
        if (used >= sizeof per_second)
            break;
    }
    qsort (lat, (size_t)measured, sizeof *lat, s_cmp_double);
    double span_s = (double)(last - first) / 1e6;
    printf ("| webhooks at %d req/s for %d s, %d connections (70 %% "
            "Evolution receipts, a tenth of them sent twice; 15 %% Meta "
            "statuses, signed; 15 %% replies) | %d requests, %.0f req/s "
            "achieved; from the scheduled send: p50 %.2f ms, p99 %.2f ms, "
            "p99.9 %.2f ms, max %.2f ms; not 200: %ld |\n",
            rate, seconds, conns, measured, (double)measured / span_s,
            lat[measured / 2], lat[(int)((measured - 1) * 0.99)],
            lat[(int)((measured - 1) * 0.999)], lat[measured - 1], failed);
    printf ("| webhooks p99 of each second, ms |%s |\n", per_second);
    free (lat);

    long problems = s_check (db, &plan);
    double others = machine_cpu - ingestor_cpu - pg_cpu - self_cpu;
    printf ("| CPU during webhooks | ingestor %.2f s, PostgreSQL %.2f s, "
            "bench %.2f s, other programs %.2f s, over %.2f s on %ld "
            "cores; WAL %.1f MiB (%.1f KiB a request) |\n",
            ingestor_cpu, pg_cpu, self_cpu, others > 0 ? others : 0, span_s,
            sysconf (_SC_NPROCESSORS_ONLN), (double)wal / 1048576.0,
            (double)wal / 1024.0 / measured);
    printf ("| peak RSS recado-ingestor (webhooks) | %.1f MiB |\n",
            (double)rss_kb / 1024.0);

    rcd_test_stop (s_ingestor, SIGTERM, 30000);
    s_ingestor = 0;
    rcd_db_destroy (&db);
    s_plan_free (&plan);
    curl_slist_free_all (s_evo_headers);
    curl_global_cleanup ();
    if (problems)
        fprintf (stderr, "bench_webhooks: %ld check(s) failed\n", problems);
    return failed == 0 && problems == 0 ? 0 : 1;
}

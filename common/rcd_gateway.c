/*  rcd_gateway.c - requests for, and answers from, Evolution API v2 and
    Meta's WhatsApp Cloud API (API.md "Gateways").

    The rules of classification, in one place:

      no answer     connect / timeout or reset before the request was fully
                    sent: TRANSIENT (nothing reached the gateway).
                    timeout or reset after it was sent: UNKNOWN (it may
                    have gone out; never resend blindly).
      Evolution     200/201 with key.id: SUCCESS (2xx without it: UNKNOWN,
                    since something was accepted).
                    400 response.message = [{exists:false}]: PERMANENT
                    (not on WhatsApp); [[...]]: PERMANENT (schema error);
                    ["text"]: UNKNOWN (the send threw, maybe after going
                    out). 401/403/404: INSTANCE. 413/414/422: PERMANENT.
                    429: TRANSIENT, throttled. 5xx: TRANSIENT.
                    Anything else: TRANSIENT, unrecognised.
      Meta          error.code decides, whatever the HTTP status:
                    130429, 131048, 4, 80007: TRANSIENT, throttled (131048
                    waits at least a minute); 131056 (pair rate): TRANSIENT
                    after at least 6 s; 1, 2, 131016, 133004 (Meta's
                    own trouble): TRANSIENT; 131026, 131047, 100, 132000,
                    132001:
                    PERMANENT, except 100 with subcode 33 (the
                    phone_number_id does not exist): INSTANCE; 190, 368,
                    131031: INSTANCE; 131000 ("something went wrong", may
                    have been sent): UNKNOWN; other codes: TRANSIENT,
                    unrecognised.
                    No error object: 2xx with messages[0].id: SUCCESS (2xx
                    without it: UNKNOWN); 429: TRANSIENT, throttled; 5xx:
                    TRANSIENT; anything else: TRANSIENT, unrecognised.

    "Unrecognised" (an answer no rule above names, including a 2xx
    without an id) is flagged in the outcome so the sender logs the body,
    phones masked (rcd_gateway_log_excerpt): that is how a new error shape
    of a gateway gets noticed and given a rule here.
*/
#include "rcd_gateway.h"
#include "rcd_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Meta's default when an instance names no Graph API version. */
#define S_META_DEFAULT_VERSION "v21.0"
/*  Minimum waits for Meta's own rate limits (API.md: back off long on the
    spam limit; one message per ~6 s per recipient). */
#define S_META_SPAM_WAIT_S 60
#define S_META_PAIR_WAIT_S 6

const char *
rcd_gateway_provider_name (rcd_gateway_provider_t provider)
{
    return provider == RCD_GATEWAY_META ? "meta" : "evolution";
}

bool
rcd_gateway_provider_parse (const char *name, rcd_gateway_provider_t *provider)
{
    if (name && strcmp (name, "evolution") == 0) {
        *provider = RCD_GATEWAY_EVOLUTION;
        return true;
    }
    if (name && strcmp (name, "meta") == 0) {
        *provider = RCD_GATEWAY_META;
        return true;
    }
    return false;
}

const char *
rcd_gateway_kind_name (rcd_gateway_kind_t kind)
{
    switch (kind) {
        case RCD_GATEWAY_SUCCESS:
            return "success";
        case RCD_GATEWAY_TRANSIENT:
            return "transient";
        case RCD_GATEWAY_PERMANENT:
            return "permanent";
        case RCD_GATEWAY_INSTANCE:
            return "instance";
        case RCD_GATEWAY_UNKNOWN:
            return "unknown";
    }
    return "unknown";
}

/*  --------------------------------------------------------------------
    Requests */

/*  True for a usable string: present, not empty, no CR/LF/NUL tricks
    that could split a header line. */
static bool
s_header_safe (const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

/*  Appends to buf at *len, failing (-2) when it would not fit. */
__attribute__ ((format (printf, 4, 5))) static int
s_append (char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (buf + *len, size - *len, fmt, ap);
    va_end (ap);
    if (n < 0 || (size_t)n >= size - *len)
        return -2;
    *len += (size_t)n;
    return 0;
}

/*  Appends one percent-encoded URL path segment (RFC 3986 unreserved
    characters stay as they are). */
static int
s_append_segment (char *buf, size_t size, size_t *len, const char *segment)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!segment || !*segment)
        return -2;
    for (const unsigned char *p = (const unsigned char *)segment; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                     *p == '_' || *p == '~';
        if (*len + (plain ? 1 : 3) >= size)
            return -2;
        if (plain)
            buf[(*len)++] = (char)*p;
        else {
            buf[(*len)++] = '%';
            buf[(*len)++] = hex[*p >> 4];
            buf[(*len)++] = hex[*p & 15];
        }
    }
    buf[*len] = 0;
    return 0;
}

/*  The base URL without trailing slashes. */
static int
s_append_base (char *buf, size_t size, size_t *len, const char *base)
{
    if (!base)
        return -2;
    size_t n = strlen (base);
    while (n && base[n - 1] == '/')
        n--;
    if (n == 0 || !s_header_safe (base))
        return -2;
    return s_append (buf, size, len, "%.*s", (int)n, base);
}

/*  E.164 without the '+': 8 to 15 digits. */
static const char *
s_digits (const char *e164)
{
    if (!e164 || e164[0] != '+')
        return NULL;
    size_t n = 0;
    for (const char *p = e164 + 1; *p; p++, n++)
        if (*p < '0' || *p > '9')
            return NULL;
    return n >= 8 && n <= 15 ? e164 + 1 : NULL;
}

/*  Serialises doc into req->body, reusing its buffer. */
static int
s_dump_body (json_t *doc, rcd_gateway_request_t *req)
{
    size_t need = json_dumpb (doc, req->body, req->body_cap, JSON_COMPACT);
    if (need == 0)
        return -1;
    if (need + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 512;
        while (cap < need + 1)
            cap *= 2;
        char *body = realloc (req->body, cap);
        if (!body)
            return -1;
        req->body = body;
        req->body_cap = cap;
        need = json_dumpb (doc, req->body, req->body_cap, JSON_COMPACT);
        if (need == 0 || need + 1 > req->body_cap)
            return -1;
    }
    req->body[need] = 0;
    req->body_len = need;
    return 0;
}

int
rcd_gateway_build_send (const rcd_gateway_instance_t *instance,
                        const char *to_e164, const char *text,
                        uint32_t delay_ms, rcd_gateway_request_t *req)
{
    const char *digits = s_digits (to_e164);
    if (!instance || !digits || !text)
        return -2;
    size_t len = 0, alen = 0;
    json_t *doc = NULL;
    req->url[0] = 0;
    req->typing_ms = 0;
    if (s_append_base (req->url, sizeof req->url, &len, instance->base_url) !=
        0)
        return -2;
    if (instance->provider == RCD_GATEWAY_EVOLUTION) {
        if (!s_header_safe (instance->api_key) ||
            s_append (req->url, sizeof req->url, &len, "/message/sendText/") !=
                0 ||
            s_append_segment (req->url, sizeof req->url, &len,
                              instance->name) != 0 ||
            s_append (req->auth, sizeof req->auth, &alen, "apikey: %s",
                      instance->api_key) != 0)
            return -2;
        doc = json_pack ("{s:s, s:s}", "number", digits, "text", text);
        if (doc && delay_ms > 0)
            json_object_set_new (doc, "delay", json_integer (delay_ms));
        req->typing_ms = (long)delay_ms;
    }
    else {
        const char *version = instance->api_version && *instance->api_version
                                  ? instance->api_version
                                  : S_META_DEFAULT_VERSION;
        if (!s_header_safe (instance->access_token) ||
            s_append (req->url, sizeof req->url, &len, "/") != 0 ||
            s_append_segment (req->url, sizeof req->url, &len, version) != 0 ||
            s_append (req->url, sizeof req->url, &len, "/") != 0 ||
            s_append_segment (req->url, sizeof req->url, &len,
                              instance->phone_number_id) != 0 ||
            s_append (req->url, sizeof req->url, &len, "/messages") != 0 ||
            s_append (req->auth, sizeof req->auth, &alen,
                      "Authorization: Bearer %s", instance->access_token) != 0)
            return -2;
        doc = json_pack ("{s:s, s:s, s:s, s:s, s:{s:s}}", "messaging_product",
                         "whatsapp", "recipient_type", "individual", "to",
                         digits, "type", "text", "text", "body", text);
    }
    /* json_pack fails on invalid UTF-8 as well as on memory. */
    if (!doc)
        return -2;
    int rc = s_dump_body (doc, req);
    json_decref (doc);
    if (rc != 0)
        return -1;
    req->headers[0] = "Content-Type: application/json";
    req->headers[1] = req->auth;
    req->headers[2] = NULL;
    req->total_timeout_ms = req->typing_ms + RCD_GATEWAY_TIMEOUT_MARGIN_MS;
    return 0;
}

void
rcd_gateway_request_clear (rcd_gateway_request_t *req)
{
    if (!req)
        return;
    free (req->body);
    memset (req, 0, sizeof *req);
}

/*  --------------------------------------------------------------------
    Answers */

__attribute__ ((format (printf, 3, 4))) static void
s_set (rcd_gateway_outcome_t *out, rcd_gateway_kind_t kind,
       const char *reason_fmt, ...)
{
    out->kind = kind;
    va_list ap;
    va_start (ap, reason_fmt);
    vsnprintf (out->reason, sizeof out->reason, reason_fmt, ap);
    va_end (ap);
}

/*  Copies a string id into dst; false when absent, empty or too long. */
static bool
s_copy_id (char *dst, size_t size, json_t *value)
{
    const char *s = json_string_value (value);
    if (!s || !*s || strlen (s) >= size)
        return false;
    memcpy (dst, s, strlen (s) + 1);
    return true;
}

static void
s_classify_evolution (long status, json_t *doc, rcd_gateway_outcome_t *out)
{
    if (status >= 200 && status < 300) {
        json_t *id = json_object_get (json_object_get (doc, "key"), "id");
        if (s_copy_id (out->provider_message_id,
                       sizeof out->provider_message_id, id))
            s_set (out, RCD_GATEWAY_SUCCESS, "sent");
        else {
            s_set (out, RCD_GATEWAY_UNKNOWN, "success_without_id");
            out->unrecognised = true;
        }
        return;
    }
    if (status == 400) {
        json_t *message =
            json_object_get (json_object_get (doc, "response"), "message");
        json_t *first = json_array_get (message, 0);
        if (json_is_object (first) &&
            json_is_false (json_object_get (first, "exists")))
            s_set (out, RCD_GATEWAY_PERMANENT, "not_on_whatsapp");
        else if (json_is_array (first))
            s_set (out, RCD_GATEWAY_PERMANENT, "bad_request");
        else if (json_is_string (first))
            s_set (out, RCD_GATEWAY_UNKNOWN, "send_error");
        else {
            s_set (out, RCD_GATEWAY_TRANSIENT, "http_400");
            out->unrecognised = true;
        }
        return;
    }
    switch (status) {
        case 401:
            s_set (out, RCD_GATEWAY_INSTANCE, "unauthorized");
            return;
        case 403:
            s_set (out, RCD_GATEWAY_INSTANCE, "forbidden");
            return;
        case 404:
            s_set (out, RCD_GATEWAY_INSTANCE, "instance_not_found");
            return;
        case 413:
        case 414:
        case 422:
            s_set (out, RCD_GATEWAY_PERMANENT, "http_%ld", status);
            return;
        case 429:
            s_set (out, RCD_GATEWAY_TRANSIENT, "http_429");
            out->throttled = true;
            return;
        default:
            s_set (out, RCD_GATEWAY_TRANSIENT, "http_%ld", status);
            out->unrecognised = status < 500 || status > 599;
            return;
    }
}

static void
s_classify_meta (long status, json_t *doc, rcd_gateway_outcome_t *out)
{
    json_t *error = json_object_get (doc, "error");
    if (json_is_object (error)) {
        json_int_t code = json_integer_value (json_object_get (error, "code"));
        json_int_t subcode =
            json_integer_value (json_object_get (error, "error_subcode"));
        rcd_gateway_kind_t kind;
        switch (code) {
            case 130429:
            case 131048:
            case 4:
            case 80007:
                kind = RCD_GATEWAY_TRANSIENT;
                out->throttled = true;
                if (code == 131048 && out->retry_after_s < S_META_SPAM_WAIT_S)
                    out->retry_after_s = S_META_SPAM_WAIT_S;
                break;
            case 131056:
                kind = RCD_GATEWAY_TRANSIENT;
                if (out->retry_after_s < S_META_PAIR_WAIT_S)
                    out->retry_after_s = S_META_PAIR_WAIT_S;
                break;
            case 131026:
            case 131047:
            case 132000:
            case 132001:
                kind = RCD_GATEWAY_PERMANENT;
                break;
            case 100:
                kind = subcode == 33 ? RCD_GATEWAY_INSTANCE
                                     : RCD_GATEWAY_PERMANENT;
                break;
            case 190:
            case 368:
            case 131031:
                kind = RCD_GATEWAY_INSTANCE;
                break;
            case 131000:
                kind = RCD_GATEWAY_UNKNOWN;
                break;
            case 1:      /* unknown API error */
            case 2:      /* service temporarily unavailable */
            case 131016: /* service overloaded */
            case 133004: /* server temporarily unavailable */
                kind = RCD_GATEWAY_TRANSIENT;
                break;
            default:
                kind = RCD_GATEWAY_TRANSIENT;
                out->unrecognised = true;
                break;
        }
        if (subcode)
            s_set (out, kind, "meta_%lld_%lld", (long long)code,
                   (long long)subcode);
        else
            s_set (out, kind, "meta_%lld", (long long)code);
        return;
    }
    if (status >= 200 && status < 300) {
        json_t *id = json_object_get (
            json_array_get (json_object_get (doc, "messages"), 0), "id");
        if (!s_copy_id (out->provider_message_id,
                        sizeof out->provider_message_id, id)) {
            s_set (out, RCD_GATEWAY_UNKNOWN, "success_without_id");
            out->unrecognised = true;
            return;
        }
        json_t *wa_id = json_object_get (
            json_array_get (json_object_get (doc, "contacts"), 0), "wa_id");
        s_copy_id (out->wa_id, sizeof out->wa_id, wa_id);
        s_set (out, RCD_GATEWAY_SUCCESS, "sent");
        return;
    }
    s_set (out, RCD_GATEWAY_TRANSIENT, "http_%ld", status);
    if (status == 429)
        out->throttled = true;
    else if (status < 500 || status > 599)
        out->unrecognised = true;
}

char *
rcd_gateway_excerpt (const char *src, size_t len, size_t max)
{
    if (!src)
        return NULL;
    if (len > max)
        len = max;
    char *out = malloc (len + 1);
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t need = c < 0x80             ? 1
                      : (c & 0xE0) == 0xC0 ? 2
                      : (c & 0xF0) == 0xE0 ? 3
                      : (c & 0xF8) == 0xF0 ? 4
                                           : 0;
        bool ok = need > 0 && i + need <= len;
        for (size_t k = 1; ok && k < need; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && need == 2 && c < 0xC2)
            ok = false; /* overlong */
        if (ok && need == 3) {
            unsigned cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) |
                          (s[i + 2] & 0x3Fu);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && need == 4) {
            unsigned cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
                          ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            if (i + (need ? need : 1) > len && need > 1)
                break; /* a character cut by the limit: stop before it */
            out[n++] = '?';
            i++;
            continue;
        }
        if (c == 0) {
            i++;
            continue;
        }
        memcpy (out + n, s + i, need);
        n += need;
        i += need;
    }
    out[n] = 0;
    return out;
}

char *
rcd_gateway_log_excerpt (const char *src, size_t len, size_t max)
{
    char *out = rcd_gateway_excerpt (src, len, max);
    if (!out)
        return NULL;
    /* Masking never lengthens a run, so it is done in place: w <= r. */
    size_t r = 0, w = 0;
    while (out[r]) {
        size_t run = 0;
        while (out[r + run] >= '0' && out[r + run] <= '9')
            run++;
        if (run >= 8 && run < 32) {
            /* as a number without '+' (a '+' before it was copied
               already): the first four digits and the last four stay */
            char phone[32], masked[40];
            memcpy (phone, out + r, run);
            phone[run] = 0;
            rcd_log_mask_phone (phone, masked, sizeof masked);
            size_t m = strlen (masked);
            memmove (out + w, masked, m);
            w += m;
            r += run;
            continue;
        }
        if (run >= 32) /* no phone, but may hide one: all masked */
            memset (out + r, '*', run);
        if (run == 0)
            run = 1;
        memmove (out + w, out + r, run);
        w += run;
        r += run;
    }
    out[w] = 0;
    return out;
}

void
rcd_gateway_classify (rcd_gateway_provider_t provider, long http_status,
                      const char *body, rcd_http_error_t error,
                      int retry_after_s, rcd_gateway_outcome_t *out)
{
    memset (out, 0, sizeof *out);
    out->retry_after_s = retry_after_s > 0 ? retry_after_s : 0;
    switch (error) {
        case RCD_HTTP_ERR_NONE:
            break;
        case RCD_HTTP_ERR_CONNECT:
            s_set (out, RCD_GATEWAY_TRANSIENT, "connect_failed");
            return;
        case RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND:
        case RCD_HTTP_ERR_RESET_BEFORE_SEND:
            s_set (out, RCD_GATEWAY_TRANSIENT, "%s",
                   rcd_http_error_name (error));
            return;
        case RCD_HTTP_ERR_TIMEOUT_AFTER_SEND:
        case RCD_HTTP_ERR_RESET_AFTER_SEND:
            s_set (out, RCD_GATEWAY_UNKNOWN, "%s", rcd_http_error_name (error));
            return;
        case RCD_HTTP_ERR_OTHER:
        default:
            s_set (out, RCD_GATEWAY_TRANSIENT, "transport_error");
            return;
    }
    json_t *doc = body && *body ? json_loads (body, 0, NULL) : NULL;
    if (provider == RCD_GATEWAY_META)
        s_classify_meta (http_status, doc, out);
    else
        s_classify_evolution (http_status, doc, out);
    json_decref (doc);
}

/*  rcd_gateway.h - what the WhatsApp gateways want and what their answers
    mean (API.md "Gateways"), for Evolution API v2 and Meta's Cloud API.

    Pure functions, no I/O: rcd_gateway_build_send turns one text message
    into an HTTP request; rcd_gateway_classify turns the answer (or the
    lack of one) into an outcome the sender records. The transport itself
    is rcd_http's job.
*/
#ifndef RCD_GATEWAY_H_INCLUDED
#define RCD_GATEWAY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcd_http.h"

/*  Margin beyond Evolution's typing delay (which blocks the call). */
#define RCD_GATEWAY_TIMEOUT_MARGIN_MS 30000
#define RCD_GATEWAY_URL_MAX           1024
#define RCD_GATEWAY_AUTH_MAX          2048
#define RCD_GATEWAY_ID_MAX            128
#define RCD_GATEWAY_REASON_MAX        64

typedef enum {
    RCD_GATEWAY_EVOLUTION = 0,
    RCD_GATEWAY_META
} rcd_gateway_provider_t;

/*  One sender number as configured (an instances row). Strings are
    borrowed; NULL where the provider does not use them. */
typedef struct {
    rcd_gateway_provider_t provider;
    const char *name;            /* Evolution instance name (URL segment) */
    const char *base_url;        /* e.g. "https://evo.example.com" */
    const char *api_key;         /* Evolution header apikey */
    const char *access_token;    /* Meta bearer token */
    const char *phone_number_id; /* Meta sender id (URL segment) */
    const char *api_version;     /* Meta, e.g. "v21.0" */
} rcd_gateway_instance_t;

/*  A request ready for rcd_http_post. Reuse one across calls: the body
    buffer is kept and grown; free it with rcd_gateway_request_clear. */
typedef struct {
    char url[RCD_GATEWAY_URL_MAX];   /* full URL */
    char auth[RCD_GATEWAY_AUTH_MAX]; /* "apikey: .." or "Authorization: .." */
    const char *headers[3];          /* NULL-terminated; point into this */
    char *body;                      /* JSON, NUL-terminated; owned */
    size_t body_len;                 /* bytes in body */
    size_t body_cap;                 /* bytes allocated */
    long typing_ms;                  /* how long the gateway holds the call
                                        on purpose (Evolution delay) */
    long total_timeout_ms;           /* typing_ms + the 30 s margin */
} rcd_gateway_request_t;

/*  What an answer means for the message. */
typedef enum {
    RCD_GATEWAY_SUCCESS = 0, /* accepted; provider_message_id is set */
    RCD_GATEWAY_TRANSIENT,   /* nothing sent (or a throttle): retry later */
    RCD_GATEWAY_PERMANENT,   /* will never work for this message */
    RCD_GATEWAY_INSTANCE,    /* the sender number is broken: permanent for
                                the message, open the instance's circuit */
    RCD_GATEWAY_UNKNOWN      /* may or may not have gone out: hold for
                                reconciliation, never resend blindly */
} rcd_gateway_kind_t;

typedef struct {
    rcd_gateway_kind_t kind;
    char reason[RCD_GATEWAY_REASON_MAX];          /* short snake_case, e.g.
                                            "not_on_whatsapp", "http_503",
                                            "meta_131026" */
    char provider_message_id[RCD_GATEWAY_ID_MAX]; /* SUCCESS only */
    char wa_id[32];    /* Meta contacts[0].wa_id, "" when absent */
    int retry_after_s; /* advised wait, 0 when none */
    bool throttled;    /* the gateway throttles the whole instance */
    bool unrecognised; /* the answer matched no rule (its kind is the
                          default, TRANSIENT, or UNKNOWN for a 2xx
                          without an id): worth logging with its body */
} rcd_gateway_outcome_t;

/*  Builds the send request for a text message to to_e164 ("+55..."),
    with Evolution's typing delay delay_ms (ignored by Meta). Returns 0,
    -2 when the number, instance or text cannot make a valid request (a
    URL or header too long, a missing credential: retrying will not help),
    or -1 when out of memory. */
int
rcd_gateway_build_send (const rcd_gateway_instance_t *instance,
                        const char *to_e164, const char *text,
                        uint32_t delay_ms, rcd_gateway_request_t *req)
    __attribute__ ((warn_unused_result));

/*  Frees the request's body buffer and zeroes it. */
void
rcd_gateway_request_clear (rcd_gateway_request_t *req);

/*  Classifies an answer: HTTP status and body (NUL-terminated, may be
    NULL) when error is RCD_HTTP_ERR_NONE, else the transport error.
    retry_after_s is the Retry-After header (0: none). Always fills out. */
void
rcd_gateway_classify (rcd_gateway_provider_t provider, long http_status,
                      const char *body, rcd_http_error_t error,
                      int retry_after_s, rcd_gateway_outcome_t *out);

/*  At most max bytes of a gateway's answer (len bytes at src) as valid
    UTF-8 for storing: invalid bytes become '?', NULs are dropped and a
    character is never cut in half, so a gateway's garbage cannot make a
    database write fail. NULL for NULL src or no memory. Caller frees. */
char *
rcd_gateway_excerpt (const char *src, size_t len, size_t max);

/*  Like rcd_gateway_excerpt, for a log line: every run of 8 or more
    digits (a phone number, a JID's user part) is masked as
    rcd_log_mask_phone does, keeping a '+' before it. NULL for NULL src
    or no memory. Caller frees. */
char *
rcd_gateway_log_excerpt (const char *src, size_t len, size_t max);

/*  "evolution" or "meta"; parses the same (false when neither). */
const char *
rcd_gateway_provider_name (rcd_gateway_provider_t provider);
bool
rcd_gateway_provider_parse (const char *name, rcd_gateway_provider_t *provider);

/*  "success", "transient", "permanent", "instance", "unknown". */
const char *
rcd_gateway_kind_name (rcd_gateway_kind_t kind);

#endif

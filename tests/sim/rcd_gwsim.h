/*  =========================================================================
    rcd_gwsim - loopback simulator of the WhatsApp gateways' send endpoints

    Speaks Evolution API v2 (POST /message/sendText/{instance}, GET
    /instance/connectionState/{instance}) and Meta's Cloud API (POST
    /{version}/{phone_number_id}/messages) as the real gateways answer
    (API.md "Gateways"), counts every accepted send by (instance or
    phone_number_id, number, text), and injects the failures a sender must
    survive: latency, 5xx, 429, throttle codes, not-on-WhatsApp, outcome
    unknown, hangs and connection resets. After a send it counts, it calls
    the client's webhooks back as the gateway would (Evolution's
    send.message echo and messages.update receipts, Meta's signed
    statuses) when the "webhook" knob names a URL. A JSON control API under
    /_sim/ configures it and reads the counts, the webhook counters and the
    arrival log; the methods below do the same in process. README.md in
    this folder has the contract.

    The server runs on libmicrohttpd's own threads and the webhooks are
    posted from a thread of their own: nothing here blocks the caller
    except new (bind) and destroy (drain).
    =========================================================================
*/

#ifndef RCD_GWSIM_H_INCLUDED
#define RCD_GWSIM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rcd_gwsim rcd_gwsim_t;

//  Largest request body accepted; larger bodies are answered 413.
#define RCD_GWSIM_MAX_BODY ((size_t)1024 * 1024)

//  Start a simulator listening on bind_addr (IPv4 or IPv6 literal; NULL
//  means 127.0.0.1) and port (0 picks a free port). Returns NULL when the
//  address is invalid or cannot be bound. Caller owns the result.
rcd_gwsim_t *
rcd_gwsim_new (const char *bind_addr, int port)
    __attribute__ ((warn_unused_result));

//  Stop listening: send the answers being delayed at once (waiting up to
//  1 s for them), close hung requests and every connection, and free
//  everything. Safe on NULL; sets *self_p to NULL.
void
rcd_gwsim_destroy (rcd_gwsim_t **self_p);

//  The TCP port actually bound (useful after new with port 0).
int
rcd_gwsim_port (rcd_gwsim_t *self);

//  Base URL, e.g. "http://127.0.0.1:40123", with no trailing slash.
//  Borrowed; do not free.
const char *
rcd_gwsim_url (rcd_gwsim_t *self);

//  Apply a control document, exactly like POST /_sim/config. Returns 0 on
//  success, -2 when the document is not valid JSON or names an unknown or
//  out-of-range knob (nothing is changed then).
int
rcd_gwsim_configure (rcd_gwsim_t *self, const char *json)
    __attribute__ ((warn_unused_result));

//  Clear counts, the log, error counters and the configuration, like POST
//  /_sim/reset. Connections being held stay held.
void
rcd_gwsim_reset (rcd_gwsim_t *self);

//  Sends counted since the last reset (successes plus unknown_400, which a
//  real gateway may have delivered).
size_t
rcd_gwsim_total (rcd_gwsim_t *self);

//  Distinct (instance, number, text) keys counted.
size_t
rcd_gwsim_distinct (rcd_gwsim_t *self);

//  Sends beyond the first for each key: total - distinct. Zero means no
//  message reached the gateway twice.
size_t
rcd_gwsim_duplicates (rcd_gwsim_t *self);

//  How many times one key was counted. instance is the Evolution instance
//  name or the Meta phone_number_id; text is the body text, or
//  "template:<name>" for a Meta template.
size_t
rcd_gwsim_count (rcd_gwsim_t *self, const char *instance, const char *number,
                 const char *text);

//  How many sends were answered with one error kind ("5xx", "429",
//  "meta_130429", "meta_131048", "not_on_whatsapp", "unknown_400", "hang",
//  "reset", "rate_cap", "down", "instance_closed", "unauthorized",
//  "bad_request", "not_found", "too_large"). Unknown kinds count 0.
size_t
rcd_gwsim_errors (rcd_gwsim_t *self, const char *kind);

//  One webhook counter (README.md "Webhooks"): "scheduled" (webhooks
//  queued, copies included), "posted" (answered 2xx), "rejected"
//  (answered with another status), "failed" (no answer: refused, timed
//  out, reset), "dropped" (queue full), "duplicated" (extra copies made
//  by duplicate_every), "retried" (extra attempts), "pending" (queued or
//  in flight now). posted + rejected + failed counts attempts. Unknown
//  names count 0.
size_t
rcd_gwsim_webhooks (rcd_gwsim_t *self, const char *counter);

//  Answers being held right now (delay, latency or hang), so a test can
//  wait until a request has reached the simulator.
size_t
rcd_gwsim_held (rcd_gwsim_t *self);

#ifdef __cplusplus
}
#endif

#endif

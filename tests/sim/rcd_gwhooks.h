/*  =========================================================================
    rcd_gwhooks - the gateway simulator's webhook caller

    After the simulator accepts a send, the real gateways call the
    client's webhook back: Evolution API v2 posts its send.message echo
    and messages.update receipts, Meta posts signed statuses. This class
    builds those bodies (the shapes of tests/fixtures/webhooks, README.md
    "Webhooks") and posts them from one thread of its own (rcd_http, a
    libcurl multi handle), at most S_INFLIGHT_MAX at a time, so the
    simulator's request handlers only queue work and never wait on the
    network. The queue is bounded: a job that does not fit is dropped and
    counted, never blocks.

    The settings are one JSON object (the "webhook" knob of POST
    /_sim/config), validated and merged by rcd_gwhooks_merge and installed
    by rcd_gwhooks_set_settings; rcd_gwsim owns the lock that makes a
    control document apply all or nothing.
    =========================================================================
*/

#ifndef RCD_GWHOOKS_H_INCLUDED
#define RCD_GWHOOKS_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rcd_gwhooks rcd_gwhooks_t;

//  One Evolution send the simulator counted (a 201, or an unknown_400
//  that the real gateway may have sent). Every pointer is borrowed for
//  the duration of the call only.
typedef struct {
    const char *instance;    //  instance name (envelope "instance")
    const char *instance_id; //  Evolution's UUID of the instance
    const char *apikey;      //  apikey header of the send, NULL when none
    const char *number;      //  number as the client sent it
    const char *text;        //  text sent
    const char *key_id;      //  WhatsApp message id (key.id of the 201)
    int64_t timestamp;       //  messageTimestamp, Unix seconds
    int typing_ms;           //  the send's "delay": the message leaves then
    const char *server_url;  //  the simulator's base URL (server_url)
} rcd_gwhooks_evolution_t;

//  One Meta send the simulator counted. Borrowed as above.
typedef struct {
    const char *phone_number_id; //  routes the event at the receiver
    const char *app_secret;      //  the instance's, or NULL: the setting's
    const char *to;              //  number as the client sent it
    const char *wamid;           //  message id of the 200, or a fresh one
} rcd_gwhooks_meta_t;

//  Start the webhook thread with webhooks off (no URL set). Returns NULL
//  when out of memory or the thread cannot start. Caller owns the result.
rcd_gwhooks_t *
rcd_gwhooks_new (void) __attribute__ ((warn_unused_result));

//  Stop the thread, abandon what is queued or in flight (counted nowhere)
//  and free everything. Safe on NULL; sets *self_p to NULL.
void
rcd_gwhooks_destroy (rcd_gwhooks_t **self_p);

//  The default settings as a full JSON object. Caller owns the result;
//  NULL when out of memory.
json_t *
rcd_gwhooks_defaults (void);

//  Merge patch (an object of settings; a null member restores that
//  setting's default) into current (a full settings object, borrowed)
//  and store the result in *merged (caller owns it). Returns 0, -2 with
//  err filled when the patch is invalid, -1 when out of memory.
int
rcd_gwhooks_merge (json_t *current, json_t *patch, json_t **merged, char *err,
                   size_t err_size) __attribute__ ((warn_unused_result));

//  Install a full settings object produced by rcd_gwhooks_merge or
//  rcd_gwhooks_defaults (borrowed). Applies to sends from now on; queued
//  jobs keep what they were built with. Returns 0, or -1 when out of
//  memory (the old settings stay).
int
rcd_gwhooks_set_settings (rcd_gwhooks_t *self, json_t *settings)
    __attribute__ ((warn_unused_result));

//  Forget the counters and every queued job, and go back to the default
//  settings. Posts in flight finish uncounted.
void
rcd_gwhooks_reset (rcd_gwhooks_t *self);

//  Queue the webhooks of one accepted Evolution send: the send.message
//  echo when "echo" is on, then one messages.update per receipt. Does
//  nothing when no evolution_url is set.
void
rcd_gwhooks_evolution_sent (rcd_gwhooks_t *self,
                            const rcd_gwhooks_evolution_t *send);

//  Queue the statuses of one accepted Meta send, one signed POST per
//  receipt. Does nothing when no meta_url is set.
void
rcd_gwhooks_meta_sent (rcd_gwhooks_t *self, const rcd_gwhooks_meta_t *send);

//  One counter by name: "scheduled", "posted", "rejected", "failed",
//  "dropped", "duplicated", "retried", "pending". Unknown names count 0.
size_t
rcd_gwhooks_counter (rcd_gwhooks_t *self, const char *name);

//  Every counter, the answers by HTTP status and the last failure, as
//  GET /_sim/stats shows them under "webhooks". Caller owns the result.
json_t *
rcd_gwhooks_stats (rcd_gwhooks_t *self);

#ifdef __cplusplus
}
#endif

#endif

/*  rcd_alerts.h - the alert state table: each alert fires once and
    resolves once.

    An alert is one (rule, subject) pair; the subject is a key the rule
    chooses (e.g. "scheduler/host:42"). Rules report on every evaluation
    whether their condition holds for each subject they look at; the
    table turns those observations into transitions:
      - condition true for for_ms without a break: the alert fires
        (publish is called once with state "firing");
      - condition false while firing: it resolves (publish once with
        state "resolved") and leaves the table;
      - condition false before for_ms elapsed: forgotten silently.
    A subject a rule no longer reports at all (a replica forgotten, an
    instance deleted) is resolved by rcd_alerts_sweep, so nothing fires
    for ever.

    Published frames (API.md, "Alert subscribers"): topic
    "alert.<severity>.<rule>" and the JSON body {"rule", "severity",
    "state", "since", "summary", "labels"}; "since" is when the alert
    entered that state (RFC 3339). Not thread-safe.
*/
#ifndef RCD_ALERTS_H_INCLUDED
#define RCD_ALERTS_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcd_alerts rcd_alerts_t;

/*  Receives each transition: topic and body are borrowed for the call. */
typedef void (rcd_alerts_publish_fn) (const char *topic, const char *body,
                                      const char *rule, const char *state,
                                      void *arg);

/*  Creates an empty table that reports transitions to publish. Caller
    owns the result. */
rcd_alerts_t *
rcd_alerts_new (rcd_alerts_publish_fn *publish, void *arg);

void
rcd_alerts_destroy (rcd_alerts_t **self_p);

/*  Reports whether rule's condition holds now (now_ms monotonic) for
    subject key. labels (a JSON object; borrowed, copied when kept) and
    summary describe the subject; the latest ones are kept while the
    alert is active and used in its next frame. Returns 0, or -1 when
    out of memory. */
int
rcd_alerts_observe (rcd_alerts_t *self, const char *rule, const char *severity,
                    int64_t for_ms, const char *key, bool active,
                    json_t *labels, const char *summary, int64_t now_ms);

/*  Resolves (or drops, when pending) every alert of rule not observed
    since the previous sweep of that rule, with summary as the reason. */
void
rcd_alerts_sweep (rcd_alerts_t *self, const char *rule, const char *summary);

/*  Whether the alert (rule, key) is firing now. */
bool
rcd_alerts_is_firing (rcd_alerts_t *self, const char *rule, const char *key);

/*  Number of firing alerts of rule (all rules when rule is NULL). */
size_t
rcd_alerts_firing (rcd_alerts_t *self, const char *rule);

/*  The firing alerts as a JSON array of alert bodies, ordered by rule
    and subject. Caller owns the result (json_decref). */
json_t *
rcd_alerts_json (rcd_alerts_t *self);

/*  Formats unix ms as RFC 3339 UTC with milliseconds and an explicit
    offset ("2026-11-22T12:00:00.000+00:00") into buf (at least 32). */
char *
rcd_alerts_time (int64_t unix_ms, char *buf, size_t size);

#endif

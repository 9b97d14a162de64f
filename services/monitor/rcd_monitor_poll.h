/*  rcd_monitor_poll.h - the gauges the monitor reads from PostgreSQL.

    One poll is a handful of cheap read-only statements in one READ ONLY
    REPEATABLE READ transaction (so the numbers agree with each other)
    under a statement timeout no longer than the poll period:
      - messages by status and priority;
      - due pending messages: how many (counted up to
        RCD_MONITOR_BACKLOG_CAP), and the oldest one's age, through the
        partial due index;
      - 'sending' rows past their lease, and past lease + lease_margin_ms;
      - stuck messages: due and pending, or 'unknown' without a change,
        for stuck_ms;
      - dead letters: how many, and the highest id, whose growth between
        polls gives the rate per minute over dead_letters_window_ms (an
        id sequence only grows, so retention deleting rows cannot hide
        new ones);
      - every instance's state: enabled, health, circuit, pause left,
        hour and day usage against the caps (usage of another hour or
        day reads 0, as the scheduler counts it);
      - claim-to-outcome times: message_history rows written since the
        last poll (at most RCD_MONITOR_HISTORY_BATCH a poll) whose
        previous row for the same message is the claim ('sending'),
        bucketed in SQL by rcd_monitor_claim_bounds;
      - campaigns: how many in each state, and the open ones (scheduled,
        running, paused; at most RCD_MONITOR_MAX_CAMPAIGNS, the most
        recently created) with their total and remaining messages, the
        latter counted through messages_campaign_open (one index range
        per campaign, never the messages table). A 'scheduled' campaign
        whose send_at has passed reads 'running', as GET /v1/campaigns
        answers it. Messages sent in the last minute are not read: no
        index leads to them by sent_at, and a campaign's sent messages
        are its whole audience;
      - every db_slow_poll_ms only, being hourly numbers: billing cycles
        created and webhook events still 'unmatched' received in the
        last hour.
    The monitor only reads: nothing here writes. A failed poll keeps the
    previous numbers and marks the database down until a poll succeeds
    (rcd_db reconnects by itself). Not thread-safe.
*/
#ifndef RCD_MONITOR_POLL_H_INCLUDED
#define RCD_MONITOR_POLL_H_INCLUDED

#include "rcd_monitor_server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  messages.status values in life-cycle order, and messages.priority
    0, 1, 2 by name. */
#define RCD_MONITOR_STATUS_COUNT   12
#define RCD_MONITOR_PRIORITY_COUNT 3
extern const char *const rcd_monitor_statuses[RCD_MONITOR_STATUS_COUNT];
extern const char *const rcd_monitor_priorities[RCD_MONITOR_PRIORITY_COUNT];

/*  Instances listed per poll, due messages counted at most, history
    rows read per poll. */
#define RCD_MONITOR_MAX_INSTANCES 500
#define RCD_MONITOR_BACKLOG_CAP   1000000
#define RCD_MONITOR_HISTORY_BATCH 20000

/*  campaigns.state values in life-cycle order, and how many open
    campaigns a poll reads at most. */
#define RCD_MONITOR_CAMPAIGN_STATE_COUNT 6
#define RCD_MONITOR_MAX_CAMPAIGNS        50
extern const char
    *const rcd_monitor_campaign_states[RCD_MONITOR_CAMPAIGN_STATE_COUNT];

/*  One open campaign as the last poll saw it. */
typedef struct {
    int64_t id;
    int64_t tenant_id;
    char name[801];    /* campaigns.name: 200 characters of UTF-8 */
    char state[16];    /* scheduled, running, paused */
    int64_t total;     /* campaigns.messages: stored for it */
    int64_t remaining; /* its open messages (pending, paused, sending,
                          unknown) */
} rcd_monitor_campaign_t;

/*  Upper bounds (seconds) of the claim-to-outcome histogram. */
#define RCD_MONITOR_CLAIM_BOUNDS 12
extern const double rcd_monitor_claim_bounds[RCD_MONITOR_CLAIM_BOUNDS];

/*  One instance as the last poll saw it. */
typedef struct {
    int64_t id;
    int64_t tenant_id;
    char name[101];          /* instances.name */
    char provider[16];       /* evolution, meta */
    bool enabled;            /* instances.enabled */
    char health[33];         /* gateway state word (recovery, webhooks) */
    char circuit_state[16];  /* closed, open, half_open */
    char circuit_reason[97]; /* why it opened, "" when none */
    double circuit_open_s;   /* since circuit_opened_at, 0 when closed */
    double paused_s;         /* throttle pause left, 0 when none */
    int64_t hour_used;       /* messages claimed this UTC hour */
    int64_t hourly_cap;      /* -1: no cap */
    int64_t day_used;        /* this day in the tenant's time zone */
    int64_t daily_cap;       /* -1: no cap */
} rcd_monitor_instance_t;

/*  What the polls saw. Numbers are those of the last good poll. */
typedef struct {
    bool up;           /* the last poll succeeded */
    int64_t polls;     /* polls attempted */
    int64_t errors;    /* polls failed */
    char detail[256];  /* "connected", "not polled yet" or the error */
    int64_t polled_ms; /* unix ms of the last good poll, 0: none yet */
    int64_t counts[RCD_MONITOR_STATUS_COUNT][RCD_MONITOR_PRIORITY_COUNT];
    int64_t due_backlog;         /* due pending messages (capped) */
    double oldest_due_s;         /* age of the oldest due pending message */
    int64_t leases_expired;      /* 'sending' past lease_until */
    int64_t leases_stuck;        /* 'sending' past lease_until + margin */
    double oldest_stuck_lease_s; /* how far past its lease the oldest is */
    int64_t stuck_pending;       /* due and pending for stuck_ms */
    int64_t stuck_unknown;       /* 'unknown' unchanged for stuck_ms */
    int64_t dead_letters;        /* rows */
    int64_t dead_letters_last_id;
    double dead_letters_per_min;       /* created, over the configured window */
    bool hourly_valid;                 /* the slow counts below were read */
    int64_t cycles_last_hour;          /* billing cycles created */
    int64_t unmatched_last_hour;       /* webhook events still unmatched */
    rcd_monitor_instance_t *instances; /* ninstances, by id */
    size_t ninstances;
    /* campaigns by rcd_monitor_campaign_states */
    int64_t campaign_states[RCD_MONITOR_CAMPAIGN_STATE_COUNT];
    /* open ones, newest first */
    rcd_monitor_campaign_t campaigns[RCD_MONITOR_MAX_CAMPAIGNS];
    size_t ncampaigns;
} rcd_monitor_db_state_t;

typedef struct rcd_monitor_poll rcd_monitor_poll_t;

/*  Whether an instance is offline: enabled, and its gateway state known
    and not open ("unknown" is Meta's usual state: it has none). */
bool
rcd_monitor_instance_offline (const rcd_monitor_instance_t *inst);

/*  Claim-to-outcome observations of one poll, bucketed. */
typedef struct {
    double counts[RCD_MONITOR_CLAIM_BOUNDS + 1]; /* last one: +Inf */
    double sums[RCD_MONITOR_CLAIM_BOUNDS + 1];   /* seconds per bucket */
} rcd_monitor_claims_t;

/*  Creates the poller on database_url (connecting lazily, by rcd_db).
    cfg is borrowed and must outlive it. Returns NULL when out of memory.
    Caller owns the result. */
rcd_monitor_poll_t *
rcd_monitor_poll_new (const rcd_monitor_config_t *cfg);

void
rcd_monitor_poll_destroy (rcd_monitor_poll_t **self_p);

/*  Runs one poll at mono_ms (monotonic). On success the state is
    replaced and claims (zeroed first) gets the claim-to-outcome times
    seen since the previous poll. Returns 0, or -1 when the poll failed
    (state keeps its numbers, up becomes false). */
int
rcd_monitor_poll_run (rcd_monitor_poll_t *self, int64_t mono_ms,
                      rcd_monitor_claims_t *claims);

/*  The state. Borrowed; valid until the next poll. */
const rcd_monitor_db_state_t *
rcd_monitor_poll_state (rcd_monitor_poll_t *self);

#endif

/*  rcd_fleet.h - every service replica the monitor has heard from, by
    heartbeat.

    A replica is known from its first heartbeat. rcd_fleet_sweep decides
    which are up (a heartbeat within the timeout), which went silent, and
    forgets those silent for longer than forget_ms so restarts (a new
    "host:pid" each time) cannot grow the table without bound. A replica
    whose last heartbeat carried the state "stopped" said goodbye: it is
    neither up nor down, and is forgotten after the timeout.
    Replicas are kept sorted by (service, replica). Not thread-safe.
*/
#ifndef RCD_FLEET_H_INCLUDED
#define RCD_FLEET_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcd_fleet rcd_fleet_t;

/*  What the fleet knows of one replica. Read-only for callers. */
typedef struct {
    char service[33];   /* service name from the heartbeat */
    char replica[65];   /* "host:pid", unique per process */
    char state[33];     /* the heartbeat's state word, "" when none */
    uint64_t seq;       /* last heartbeat sequence */
    uint64_t uptime_ms; /* the replica's own uptime */
    int64_t first_ms;   /* monotonic ms of the first heartbeat */
    int64_t last_ms;    /* monotonic ms of the last heartbeat */
    int64_t heartbeats; /* heartbeats received */
    bool up;            /* as of the last sweep */
    bool stopped;       /* last heartbeat said "stopped" */
} rcd_fleet_replica_t;

/*  Called for each replica a sweep forgets, just before it goes. */
typedef void (rcd_fleet_forget_fn) (const rcd_fleet_replica_t *replica,
                                    void *arg);

/*  Creates an empty fleet of at most max_replicas. Caller owns it. */
rcd_fleet_t *
rcd_fleet_new (size_t max_replicas);

void
rcd_fleet_destroy (rcd_fleet_t **self_p);

/*  Records a heartbeat at now_ms (monotonic); the replica is up at once.
    state may be NULL. Returns 1 for a replica not known before, 0 for a
    known one, -1 when the fleet is full (the heartbeat is dropped). */
int
rcd_fleet_heartbeat (rcd_fleet_t *self, const char *service,
                     const char *replica, const char *state, uint64_t seq,
                     uint64_t uptime_ms, int64_t now_ms);

/*  Recomputes up flags at now_ms and forgets replicas silent longer than
    forget_ms (stopped ones: longer than timeout_ms), calling forget (may
    be NULL) for each. */
void
rcd_fleet_sweep (rcd_fleet_t *self, int64_t now_ms, int64_t timeout_ms,
                 int64_t forget_ms, rcd_fleet_forget_fn *forget, void *arg);

/*  Number of replicas and the i-th in (service, replica) order.
    Borrowed; valid until the next heartbeat or sweep. */
size_t
rcd_fleet_size (rcd_fleet_t *self);
const rcd_fleet_replica_t *
rcd_fleet_at (rcd_fleet_t *self, size_t index);

#endif

/*  rcd_fleet.c - replicas known by heartbeat. */
#include "rcd_fleet.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rcd_fleet {
    rcd_fleet_replica_t *replicas; /* sorted by (service, replica) */
    size_t size;                   /* replicas in use */
    size_t max;                    /* capacity, allocated up front */
};

rcd_fleet_t *
rcd_fleet_new (size_t max_replicas)
{
    assert (max_replicas > 0);
    rcd_fleet_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->replicas = calloc (max_replicas, sizeof *self->replicas);
    if (!self->replicas) {
        free (self);
        return NULL;
    }
    self->max = max_replicas;
    return self;
}

void
rcd_fleet_destroy (rcd_fleet_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_fleet_t *self = *self_p;
    free (self->replicas);
    free (self);
    *self_p = NULL;
}

static int
s_compare (const char *service, const char *replica,
           const rcd_fleet_replica_t *r)
{
    int rc = strcmp (service, r->service);
    return rc ? rc : strcmp (replica, r->replica);
}

/*  Binary search: index of the replica, or where it would go (*found
    false). */
static size_t
s_fleet_find (rcd_fleet_t *self, const char *service, const char *replica,
              bool *found)
{
    size_t lo = 0, hi = self->size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int rc = s_compare (service, replica, &self->replicas[mid]);
        if (rc == 0) {
            *found = true;
            return mid;
        }
        if (rc < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

int
rcd_fleet_heartbeat (rcd_fleet_t *self, const char *service,
                     const char *replica, const char *state, uint64_t seq,
                     uint64_t uptime_ms, int64_t now_ms)
{
    assert (self && service && replica);
    /* Names longer than our fields would alias after truncation; proto/
       bounds them (32 and 64 bytes), so this only guards a change there. */
    if (strlen (service) >= sizeof self->replicas[0].service ||
        strlen (replica) >= sizeof self->replicas[0].replica)
        return -1;
    bool found = false;
    size_t at = s_fleet_find (self, service, replica, &found);
    if (!found) {
        if (self->size == self->max)
            return -1;
        memmove (&self->replicas[at + 1], &self->replicas[at],
                 (self->size - at) * sizeof *self->replicas);
        self->size++;
        rcd_fleet_replica_t *r = &self->replicas[at];
        memset (r, 0, sizeof *r);
        snprintf (r->service, sizeof r->service, "%s", service);
        snprintf (r->replica, sizeof r->replica, "%s", replica);
        r->first_ms = now_ms;
    }
    rcd_fleet_replica_t *r = &self->replicas[at];
    snprintf (r->state, sizeof r->state, "%s", state ? state : "");
    r->seq = seq;
    r->uptime_ms = uptime_ms;
    r->last_ms = now_ms;
    r->heartbeats++;
    r->stopped = strcmp (r->state, "stopped") == 0;
    r->up = !r->stopped;
    return found ? 0 : 1;
}

void
rcd_fleet_sweep (rcd_fleet_t *self, int64_t now_ms, int64_t timeout_ms,
                 int64_t forget_ms, rcd_fleet_forget_fn *forget, void *arg)
{
    assert (self);
    size_t kept = 0;
    for (size_t i = 0; i < self->size; i++) {
        rcd_fleet_replica_t *r = &self->replicas[i];
        int64_t age = now_ms - r->last_ms;
        r->up = !r->stopped && age <= timeout_ms;
        bool gone = r->stopped ? age > timeout_ms : age > forget_ms;
        if (gone) {
            if (forget)
                forget (r, arg);
            continue;
        }
        if (kept != i)
            self->replicas[kept] = *r;
        kept++;
    }
    self->size = kept;
}

size_t
rcd_fleet_size (rcd_fleet_t *self)
{
    assert (self);
    return self->size;
}

const rcd_fleet_replica_t *
rcd_fleet_at (rcd_fleet_t *self, size_t index)
{
    assert (self);
    return index < self->size ? &self->replicas[index] : NULL;
}

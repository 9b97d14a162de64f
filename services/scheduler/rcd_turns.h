/*  rcd_turns.h - which stream of due work the scheduler's claims served
    last, so that they take turns.

    A stream is a tenant's campaign (its id) or the tenant's messages
    outside campaigns (minus the tenant's id). Each claim is a round,
    numbered from 1; the claim orders the due messages of one priority by
    their turn in their stream and then by the round their stream was
    last served in, least recent first (s_claim_sql, migration 0011), and
    records here every stream it took from.

    Kept in memory only, at most max streams: past that, the less
    recently served half is forgotten, and a forgotten stream counts as
    never served (round 0), which is nearly what it is. A scheduler taking
    over starts with every stream equal, so its first turns go in
    due-time order.
*/
#ifndef RCD_TURNS_H_INCLUDED
#define RCD_TURNS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct rcd_turns rcd_turns_t;

/*  A record of at most max streams (at least 2). NULL when out of
    memory. */
rcd_turns_t *
rcd_turns_new (size_t max);

void
rcd_turns_destroy (rcd_turns_t **self_p);

/*  Starts the next round; answers its number (1, 2, ...). */
int64_t
rcd_turns_next_round (rcd_turns_t *self);

/*  Records that the current round took from stream. */
void
rcd_turns_served (rcd_turns_t *self, int64_t stream);

/*  The round stream was last served in; 0 when never or forgotten. */
int64_t
rcd_turns_round_of (const rcd_turns_t *self, int64_t stream);

/*  How many streams are remembered. */
size_t
rcd_turns_size (const rcd_turns_t *self);

/*  The claim's parameters: the streams and their rounds as two
    PostgreSQL array literals, in the same order. The caller frees both.
    Returns 0, or -1 when out of memory (nothing to free then). */
int
rcd_turns_params (const rcd_turns_t *self, char **streams, char **rounds);

#endif

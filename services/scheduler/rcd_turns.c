/*  rcd_turns.c - the streams the claims served, sorted by stream. */
#include "rcd_turns.h"
#include "rcd_db.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t stream;
    int64_t round;
} s_entry_t;

struct rcd_turns {
    s_entry_t *entries; /* sorted by stream */
    size_t count, max;
    int64_t round; /* the current round; 0 before the first */
};

rcd_turns_t *
rcd_turns_new (size_t max)
{
    rcd_turns_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max = max < 2 ? 2 : max;
    self->entries = calloc (self->max, sizeof *self->entries);
    if (!self->entries) {
        free (self);
        return NULL;
    }
    return self;
}

void
rcd_turns_destroy (rcd_turns_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->entries);
    free (*self_p);
    *self_p = NULL;
}

int64_t
rcd_turns_next_round (rcd_turns_t *self)
{
    return ++self->round;
}

/*  Where stream is, or would be inserted. */
static size_t
s_find (const rcd_turns_t *self, int64_t stream, bool *found)
{
    size_t lo = 0, hi = self->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->entries[mid].stream == stream) {
            *found = true;
            return mid;
        }
        if (self->entries[mid].stream < stream)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int
s_by_round_desc (const void *a, const void *b)
{
    int64_t x = ((const s_entry_t *)a)->round;
    int64_t y = ((const s_entry_t *)b)->round;
    return (x < y) - (x > y);
}

static int
s_by_stream (const void *a, const void *b)
{
    int64_t x = ((const s_entry_t *)a)->stream;
    int64_t y = ((const s_entry_t *)b)->stream;
    return (x > y) - (x < y);
}

void
rcd_turns_served (rcd_turns_t *self, int64_t stream)
{
    bool found;
    size_t at = s_find (self, stream, &found);
    if (found) {
        self->entries[at].round = self->round;
        return;
    }
    if (self->count == self->max) {
        /* keep the more recently served half */
        qsort (self->entries, self->count, sizeof *self->entries,
               s_by_round_desc);
        self->count = self->max / 2;
        qsort (self->entries, self->count, sizeof *self->entries, s_by_stream);
        at = s_find (self, stream, &found);
    }
    memmove (&self->entries[at + 1], &self->entries[at],
             (self->count - at) * sizeof *self->entries);
    self->entries[at] = (s_entry_t){.stream = stream, .round = self->round};
    self->count++;
}

int64_t
rcd_turns_round_of (const rcd_turns_t *self, int64_t stream)
{
    bool found;
    size_t at = s_find (self, stream, &found);
    return found ? self->entries[at].round : 0;
}

size_t
rcd_turns_size (const rcd_turns_t *self)
{
    return self->count;
}

int
rcd_turns_params (const rcd_turns_t *self, char **streams, char **rounds)
{
    int64_t *values = malloc ((self->count + 1) * sizeof *values);
    if (!values)
        return -1;
    for (size_t i = 0; i < self->count; i++)
        values[i] = self->entries[i].stream;
    *streams = rcd_db_int64_array (values, self->count);
    for (size_t i = 0; i < self->count; i++)
        values[i] = self->entries[i].round;
    *rounds = rcd_db_int64_array (values, self->count);
    free (values);
    if (!*streams || !*rounds) {
        free (*streams);
        free (*rounds);
        *streams = *rounds = NULL;
        return -1;
    }
    return 0;
}

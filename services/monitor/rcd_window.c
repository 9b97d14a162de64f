/*  rcd_window.c - per-second counts over the last hour. */
#include "rcd_window.h"

#include <assert.h>
#include <stdlib.h>

/*  One second's count. */
typedef struct {
    int64_t second; /* monotonic second it belongs to; -1: never used */
    double count;
} s_slot_t;

struct rcd_window {
    s_slot_t slots[RCD_WINDOW_SPAN_S]; /* indexed by second % span */
};

rcd_window_t *
rcd_window_new (void)
{
    rcd_window_t *self = malloc (sizeof *self);
    if (!self)
        return NULL;
    for (size_t i = 0; i < RCD_WINDOW_SPAN_S; i++) {
        self->slots[i].second = -1;
        self->slots[i].count = 0;
    }
    return self;
}

void
rcd_window_destroy (rcd_window_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

/*  The count of one second, 0 when its slot holds another lap's. */
static double
s_window_at (const rcd_window_t *self, int64_t second)
{
    if (second < 0)
        return 0;
    const s_slot_t *slot = &self->slots[second % RCD_WINDOW_SPAN_S];
    return slot->second == second ? slot->count : 0;
}

void
rcd_window_add (rcd_window_t *self, int64_t now_ms, double count)
{
    assert (self && now_ms >= 0);
    int64_t second = now_ms / 1000;
    s_slot_t *slot = &self->slots[second % RCD_WINDOW_SPAN_S];
    if (slot->second != second) {
        slot->second = second;
        slot->count = 0;
    }
    slot->count += count;
}

double
rcd_window_sum (rcd_window_t *self, int64_t now_ms, int64_t span_ms)
{
    assert (self);
    int64_t span_s = (span_ms + 999) / 1000;
    if (span_s > RCD_WINDOW_SPAN_S)
        span_s = RCD_WINDOW_SPAN_S;
    int64_t second = now_ms / 1000;
    double sum = 0;
    for (int64_t k = 0; k < span_s; k++)
        sum += s_window_at (self, second - k);
    return sum;
}

void
rcd_window_series (rcd_window_t *self, int64_t now_ms, int bucket_s, size_t n,
                   double *out)
{
    assert (self && bucket_s > 0 && (n == 0 || out));
    int64_t second = now_ms / 1000;
    for (size_t b = 0; b < n; b++) {
        /* bucket b ends (n - 1 - b) buckets before the current one */
        int64_t last = second - (int64_t)(n - 1 - b) * bucket_s;
        double sum = 0;
        for (int k = 0; k < bucket_s; k++)
            if (second - (last - k) < RCD_WINDOW_SPAN_S)
                sum += s_window_at (self, last - k);
        out[b] = sum;
    }
}

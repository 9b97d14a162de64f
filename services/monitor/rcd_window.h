/*  rcd_window.h - how often something happened, per second, over the
    last hour: the monitor's sliding windows (1 m, 5 m, 1 h, the error
    rate's window) and the dashboard's recent history.

    A ring of one-second slots stamped with their second, so a slot left
    over from an older lap of the ring reads as 0 and no timer is needed
    to age counts out. Times are monotonic milliseconds. The second in
    progress counts in every window, so a "1 minute" window spans between
    59 and 60 s. Fixed size (about 56 KiB). Not thread-safe.
*/
#ifndef RCD_WINDOW_H_INCLUDED
#define RCD_WINDOW_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

/*  The longest span a window remembers, in seconds. */
#define RCD_WINDOW_SPAN_S 3600

typedef struct rcd_window rcd_window_t;

/*  Creates an empty window. Returns NULL when out of memory. Caller
    owns the result. */
rcd_window_t *
rcd_window_new (void);

void
rcd_window_destroy (rcd_window_t **self_p);

/*  Counts count occurrences at now_ms. */
void
rcd_window_add (rcd_window_t *self, int64_t now_ms, double count);

/*  Occurrences in the span_ms (capped at an hour) up to now_ms. */
double
rcd_window_sum (rcd_window_t *self, int64_t now_ms, int64_t span_ms);

/*  Fills out[0..n-1] with the occurrences in n consecutive buckets of
    bucket_s seconds, oldest first, the last one ending at now_ms. Buckets
    older than an hour read 0. */
void
rcd_window_series (rcd_window_t *self, int64_t now_ms, int bucket_s, size_t n,
                   double *out);

#endif

/*  rcd_clock.h - wall and monotonic time in milliseconds.

    Wall time is used for anything stored or compared with PostgreSQL;
    monotonic time for timeouts and periods inside a process.
*/
#ifndef RCD_CLOCK_H_INCLUDED
#define RCD_CLOCK_H_INCLUDED

#include <stdint.h>

/*  Unix time in milliseconds. */
int64_t
rcd_clock_now_ms (void);

/*  Unix time in microseconds. */
int64_t
rcd_clock_now_us (void);

/*  Monotonic milliseconds since an arbitrary start. */
int64_t
rcd_clock_mono_ms (void);

/*  Monotonic microseconds since an arbitrary start. */
int64_t
rcd_clock_mono_us (void);

#endif

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

#ifdef RECADO_TEST_HOOKS
/*  Test builds only: moves this process's wall clock (rcd_clock_now_*)
    by offset_ms. Statements that take their "now" from the caller see
    the moved clock; production builds have no such knob. */
void
rcd_clock_test_shift_ms (int64_t offset_ms);
#endif

/*  Monotonic milliseconds since an arbitrary start. */
int64_t
rcd_clock_mono_ms (void);

/*  Monotonic microseconds since an arbitrary start. */
int64_t
rcd_clock_mono_us (void);

#endif

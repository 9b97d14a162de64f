/*  rcd_clock.c - clock_gettime wrappers. */
#include "rcd_clock.h"

#include <time.h>

#ifdef RECADO_TEST_HOOKS
#include <stdatomic.h>
static _Atomic int64_t s_offset_ms;

void
rcd_clock_test_shift_ms (int64_t offset_ms)
{
    atomic_store (&s_offset_ms, offset_ms);
}
#define S_OFFSET_MS atomic_load (&s_offset_ms)
#else
#define S_OFFSET_MS 0
#endif

int64_t
rcd_clock_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + S_OFFSET_MS;
}

int64_t
rcd_clock_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 +
           S_OFFSET_MS * 1000;
}

int64_t
rcd_clock_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
rcd_clock_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*  bench_common.h - what the benchmark programs share. */
#ifndef BENCH_COMMON_H_INCLUDED
#define BENCH_COMMON_H_INCLUDED

#include <sys/types.h>

/*  User + system CPU seconds of a process (fields 14 and 15 of
    /proc/PID/stat); *ppid (may be NULL) receives its parent. 0 when the
    process is gone. */
double
bench_cpu_seconds (pid_t pid, pid_t *ppid);

/*  CPU seconds of the bench cluster (RECADO_BENCH_PG's host= folder): its
    postmaster and every child of it. */
double
bench_postgres_cpu (void);

#endif

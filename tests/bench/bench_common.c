/*  bench_common.c - what the benchmark programs share. */
#include "bench_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  User + system CPU seconds of a process (fields 14 and 15 of stat);
    *ppid receives its parent. */
double
bench_cpu_seconds (pid_t pid, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    char state;
    int parent;
    unsigned long utime = 0, stime = 0;
    if (sscanf (p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                &state, &parent, &utime, &stime) != 4)
        return 0;
    if (ppid)
        *ppid = parent;
    return (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
}

/*  CPU seconds of the bench cluster's postmaster and all its children. */
double
bench_postgres_cpu (void)
{
    const char *base = getenv ("RECADO_BENCH_PG");
    const char *host = base ? strstr (base, "host=") : NULL;
    if (!host)
        return 0;
    char dir[400], path[512];
    snprintf (dir, sizeof dir, "%.*s", (int)strcspn (host + 5, " "), host + 5);
    char *run = strstr (dir, "/run");
    if (run)
        *run = 0;
    snprintf (path, sizeof path, "%s/data/postmaster.pid", dir);
    FILE *f = fopen (path, "r");
    int postmaster = 0;
    if (!f || fscanf (f, "%d", &postmaster) != 1)
        postmaster = 0;
    if (f)
        fclose (f);
    double total = postmaster ? bench_cpu_seconds (postmaster, NULL) : 0;
    DIR *proc = postmaster ? opendir ("/proc") : NULL;
    struct dirent *entry;
    while (proc && (entry = readdir (proc))) {
        pid_t pid = (pid_t)atoi (entry->d_name);
        pid_t parent = 0;
        double cpu = pid > 0 ? bench_cpu_seconds (pid, &parent) : 0;
        if (parent == postmaster)
            total += cpu;
    }
    if (proc)
        closedir (proc);
    return total;
}
